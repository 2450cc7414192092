//! A native evaluator for the ONNX-ML tree ensembles (`TreeEnsembleClassifier` and
//! `TreeEnsembleRegressor`), the operators that scikit-learn's trees, forests and boosted
//! models export to.
//!
//! tract's own tree operator finds each leaf's weights by scanning every leaf of the ensemble,
//! so a 100-tree forest costs hundreds of microseconds a row. Here every node is one entry of
//! a flat array and a leaf points at its own slice of weights, so a row costs one walk from
//! root to leaf per tree.
//!
//! [`TreeEnsemble::build`] checks the structure once, at load time: every tree must be a real
//! tree (one root, every node reached once), so that scoring can never loop or index out of
//! bounds whatever the model file says.
//!
//! An ensemble computes in the precision of its thresholds and weights: `f32` for the usual
//! attributes, `f64` for the double-precision ones (`*_as_tensor`, and ONNX-ML opset 5's
//! `TreeEnsemble` of a double model), so that a row exactly on a double threshold goes the way
//! the training library sends it.

use std::collections::HashMap;
use std::fmt::Debug;
use std::ops::{AddAssign, DivAssign};

use num_traits::Float;

use crate::RealtimeError;

/// The precisions an ensemble computes in: `f32` and `f64`.
pub(crate) trait Real:
    Float + From<f32> + AddAssign + DivAssign + Default + Debug + Send + Sync + 'static
{
}

impl<T> Real for T where
    T: Float + From<f32> + AddAssign + DivAssign + Default + Debug + Send + Sync + 'static
{
}

/// How a branch node compares the feature with its threshold (`nodes_modes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Leaf,
}

impl Mode {
    fn parse(text: &str) -> Result<Self, RealtimeError> {
        Ok(match text {
            "BRANCH_LEQ" => Mode::Leq,
            "BRANCH_LT" => Mode::Lt,
            "BRANCH_GTE" => Mode::Gte,
            "BRANCH_GT" => Mode::Gt,
            "BRANCH_EQ" => Mode::Eq,
            "BRANCH_NEQ" => Mode::Neq,
            "LEAF" => Mode::Leaf,
            other => {
                return Err(RealtimeError::InvalidModel(format!(
                    "unknown tree node mode `{other}`"
                )));
            }
        })
    }
}

/// How the trees' contributions to a target are combined (regressors' `aggregate_function`;
/// classifiers always sum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Aggregate {
    #[default]
    Sum,
    Average,
    Min,
    Max,
}

impl Aggregate {
    pub(crate) fn parse(text: &str) -> Result<Self, RealtimeError> {
        Ok(match text {
            "SUM" => Aggregate::Sum,
            "AVERAGE" => Aggregate::Average,
            "MIN" => Aggregate::Min,
            "MAX" => Aggregate::Max,
            other => {
                return Err(RealtimeError::UnsupportedModel(format!(
                    "the tree aggregate function `{other}` is not supported"
                )));
            }
        })
    }
}

/// What is applied to the aggregated scores (`post_transform`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum PostTransform {
    #[default]
    None,
    Softmax,
    Logistic,
    SoftmaxZero,
}

impl PostTransform {
    pub(crate) fn parse(text: &str) -> Result<Self, RealtimeError> {
        Ok(match text {
            "NONE" => PostTransform::None,
            "SOFTMAX" => PostTransform::Softmax,
            "LOGISTIC" => PostTransform::Logistic,
            "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
            other => {
                return Err(RealtimeError::UnsupportedModel(format!(
                    "the post transform `{other}` is not supported"
                )));
            }
        })
    }

    pub(crate) fn apply<T: Real>(self, scores: &mut [T]) {
        match self {
            PostTransform::None => {}
            PostTransform::Logistic => scores.iter_mut().for_each(|s| *s = sigmoid(*s)),
            PostTransform::Softmax => softmax(scores, false),
            PostTransform::SoftmaxZero => softmax(scores, true),
        }
    }
}

impl PostTransform {
    /// The probabilities `[class 0, class 1]` of a binary classifier that scores only the
    /// second class, as ONNX Runtime builds them: `[1 - p, p]` after the logistic, else
    /// `[1 - s, s]` when every weight is positive and `[-s, s]` when not.
    pub(crate) fn binary<T: Real>(self, score: T, weights_all_positive: bool) -> [T; 2] {
        match self {
            PostTransform::Logistic => {
                let p = sigmoid(score);
                [T::one() - p, p]
            }
            _ if weights_all_positive => [T::one() - score, score],
            _ => [-score, score],
        }
    }

    /// Refuses a softmax over a single score, which has nothing to normalise against.
    pub(crate) fn check_single_score(self, model: &str) -> Result<(), RealtimeError> {
        if matches!(self, PostTransform::Softmax | PostTransform::SoftmaxZero) {
            return Err(RealtimeError::UnsupportedModel(format!(
                "a binary {model} with a single score and a softmax post transform is not supported"
            )));
        }
        Ok(())
    }
}

fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// Softmax over `scores`; with `skip_zeros`, zero scores stay zero and do not take part.
fn softmax<T: Real>(scores: &mut [T], skip_zeros: bool) {
    let counts = |s: &T| !skip_zeros || !s.is_zero();
    let max = scores
        .iter()
        .filter(|s| counts(s))
        .fold(T::neg_infinity(), |a, &b| a.max(b));
    let mut sum = T::zero();
    for score in scores.iter_mut() {
        if counts(score) {
            *score = (*score - max).exp();
            sum += *score;
        }
    }
    if sum > T::zero() {
        for score in scores.iter_mut() {
            if counts(score) {
                *score /= sum;
            }
        }
    }
}

/// One node. A branch goes to `next_true` or `next_false`; a leaf's weights are
/// `weights[next_true..next_false]`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Node<T> {
    threshold: T,
    feature: u32,
    mode: Mode,
    missing_goes_true: bool,
    next_true: u32,
    next_false: u32,
}

/// The attributes of a tree-ensemble operator, as read from the model.
#[derive(Debug, Default)]
pub(crate) struct TreeAttributes<T> {
    pub(crate) tree_ids: Vec<i64>,
    pub(crate) node_ids: Vec<i64>,
    pub(crate) feature_ids: Vec<i64>,
    pub(crate) modes: Vec<String>,
    pub(crate) values: Vec<T>,
    pub(crate) true_ids: Vec<i64>,
    pub(crate) false_ids: Vec<i64>,
    /// Empty means "missing values go the false way".
    pub(crate) missing_tracks_true: Vec<i64>,
    pub(crate) leaf_tree_ids: Vec<i64>,
    pub(crate) leaf_node_ids: Vec<i64>,
    pub(crate) leaf_targets: Vec<i64>,
    pub(crate) leaf_weights: Vec<T>,
    /// Added to the aggregated scores; empty means zeros.
    pub(crate) base_values: Vec<T>,
    pub(crate) aggregate: Aggregate,
    pub(crate) post_transform: PostTransform,
    /// The number of targets (regressors) or classes (classifiers).
    pub(crate) n_targets: usize,
}

/// The attributes of ONNX-ML opset 5's `TreeEnsemble`, which lists branch nodes and leaves
/// apart (a branch names its children by index, in one list or the other) and names each tree
/// by its root. [`RootedTrees::into_attributes`] turns them into the older operators' form.
#[derive(Debug, Default)]
pub(crate) struct RootedTrees<T> {
    pub(crate) splits: Vec<T>,
    pub(crate) feature_ids: Vec<i64>,
    /// 0 `<=`, 1 `<`, 2 `>=`, 3 `>`, 4 `==`, 5 `!=`, 6 set membership.
    pub(crate) modes: Vec<i64>,
    pub(crate) true_ids: Vec<i64>,
    pub(crate) false_ids: Vec<i64>,
    /// Non-zero where `true_ids` names a leaf rather than a branch.
    pub(crate) true_leafs: Vec<i64>,
    pub(crate) false_leafs: Vec<i64>,
    /// Empty means "missing values go the false way".
    pub(crate) missing_tracks_true: Vec<i64>,
    pub(crate) leaf_targets: Vec<i64>,
    pub(crate) leaf_weights: Vec<T>,
    pub(crate) roots: Vec<i64>,
    pub(crate) aggregate: Aggregate,
    pub(crate) post_transform: PostTransform,
    pub(crate) n_targets: usize,
}

impl<T: Real> RootedTrees<T> {
    /// The same trees as the older operators describe them: every branch and leaf reached
    /// from a root becomes a node of that root's tree (branch `i` is node `i`, leaf `l` node
    /// `branches + l`). A node reached twice, from one tree or from two, is refused, so the
    /// result is never larger than the model.
    pub(crate) fn into_attributes(self) -> Result<TreeAttributes<T>, RealtimeError> {
        let invalid = |message: String| RealtimeError::InvalidModel(message);
        let branches = self.splits.len();
        let leaves = self.leaf_weights.len();
        let branch_lengths = [
            self.feature_ids.len(),
            self.modes.len(),
            self.true_ids.len(),
            self.false_ids.len(),
            self.true_leafs.len(),
            self.false_leafs.len(),
        ];
        if branch_lengths.iter().any(|&len| len != branches)
            || (!self.missing_tracks_true.is_empty() && self.missing_tracks_true.len() != branches)
        {
            return Err(invalid(
                "the tree node attributes are of different lengths".to_owned(),
            ));
        }
        if self.leaf_targets.len() != leaves || leaves == 0 {
            return Err(invalid(
                "the leaf attributes are empty or of different lengths".to_owned(),
            ));
        }
        let checked = |id: i64, count: usize, what: &str| {
            usize::try_from(id)
                .ok()
                .filter(|&id| id < count)
                .ok_or_else(|| invalid(format!("{what} {id} does not exist")))
        };
        let mut attrs = TreeAttributes {
            aggregate: self.aggregate,
            post_transform: self.post_transform,
            n_targets: self.n_targets,
            ..TreeAttributes::default()
        };
        let mut branch_seen = vec![false; branches];
        let mut leaf_seen = vec![false; leaves];
        for (tree, &root) in self.roots.iter().enumerate() {
            let tree = tree as i64;
            let root = checked(root, branches, "tree root")?;
            // A tree that is a single leaf is a root whose both ways go to that leaf.
            let single_leaf = self.true_leafs[root] != 0
                && self.false_leafs[root] != 0
                && self.true_ids[root] == self.false_ids[root];
            let mut stack = vec![if single_leaf {
                (self.true_ids[root], true)
            } else {
                (root as i64, false)
            }];
            while let Some((id, is_leaf)) = stack.pop() {
                attrs.tree_ids.push(tree);
                if is_leaf {
                    let leaf = checked(id, leaves, "leaf")?;
                    if std::mem::replace(&mut leaf_seen[leaf], true) {
                        return Err(invalid(format!("leaf {leaf} is reached twice")));
                    }
                    let node = (branches + leaf) as i64;
                    attrs.node_ids.push(node);
                    attrs.feature_ids.push(0);
                    attrs.modes.push("LEAF".to_owned());
                    attrs.values.push(T::zero());
                    attrs.true_ids.push(0);
                    attrs.false_ids.push(0);
                    attrs.missing_tracks_true.push(0);
                    attrs.leaf_tree_ids.push(tree);
                    attrs.leaf_node_ids.push(node);
                    attrs.leaf_targets.push(self.leaf_targets[leaf]);
                    attrs.leaf_weights.push(self.leaf_weights[leaf]);
                    continue;
                }
                let at = checked(id, branches, "node")?;
                if std::mem::replace(&mut branch_seen[at], true) {
                    return Err(invalid(format!("node {at} is reached twice")));
                }
                let mode = match self.modes[at] {
                    0 => "BRANCH_LEQ",
                    1 => "BRANCH_LT",
                    2 => "BRANCH_GTE",
                    3 => "BRANCH_GT",
                    4 => "BRANCH_EQ",
                    5 => "BRANCH_NEQ",
                    6 => {
                        return Err(RealtimeError::UnsupportedModel(
                            "set membership splits (`BRANCH_MEMBER`) are not supported".to_owned(),
                        ));
                    }
                    other => return Err(invalid(format!("unknown tree node mode {other}"))),
                };
                let child = |id: i64, leaf: i64| {
                    if leaf != 0 {
                        (branches as i64).saturating_add(id)
                    } else {
                        id
                    }
                };
                attrs.node_ids.push(at as i64);
                attrs.feature_ids.push(self.feature_ids[at]);
                attrs.modes.push(mode.to_owned());
                attrs.values.push(self.splits[at]);
                attrs
                    .true_ids
                    .push(child(self.true_ids[at], self.true_leafs[at]));
                attrs
                    .false_ids
                    .push(child(self.false_ids[at], self.false_leafs[at]));
                attrs
                    .missing_tracks_true
                    .push(self.missing_tracks_true.get(at).copied().unwrap_or(0));
                stack.push((self.true_ids[at], self.true_leafs[at] != 0));
                stack.push((self.false_ids[at], self.false_leafs[at] != 0));
            }
        }
        Ok(attrs)
    }
}

/// A checked, flattened tree ensemble.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TreeEnsemble<T> {
    nodes: Vec<Node<T>>,
    roots: Vec<u32>,
    weights: Vec<(u32, T)>,
    base_values: Vec<T>,
    aggregate: Aggregate,
    post_transform: PostTransform,
    n_targets: usize,
    /// The number of features a row needs (the largest feature index plus one).
    n_features: usize,
    /// A binary classifier whose trees score only the second class: its probabilities are
    /// rebuilt as `[1 - p, p]` (or `[-s, s]` when some weights are negative), as ONNX Runtime
    /// does.
    binary_single_score: bool,
    all_weights_positive: bool,
    /// Every branch is `BRANCH_LEQ` with missing values going the false way.
    only_less_or_equal: bool,
}

fn index(value: i64, what: &str) -> Result<u32, RealtimeError> {
    u32::try_from(value)
        .map_err(|_| RealtimeError::InvalidModel(format!("{what} {value} is out of range")))
}

impl<T: Real> TreeEnsemble<T> {
    /// Checks and flattens the attributes; `classifier` selects the binary-classifier rule.
    pub(crate) fn build(attrs: TreeAttributes<T>, classifier: bool) -> Result<Self, RealtimeError> {
        let invalid = |message: String| RealtimeError::InvalidModel(message);
        let count = attrs.node_ids.len();
        let same_length = [
            attrs.tree_ids.len(),
            attrs.feature_ids.len(),
            attrs.modes.len(),
            attrs.values.len(),
            attrs.true_ids.len(),
            attrs.false_ids.len(),
        ];
        if count == 0 || same_length.iter().any(|&len| len != count) {
            return Err(invalid(
                "the tree node attributes are empty or of different lengths".to_owned(),
            ));
        }
        if !attrs.missing_tracks_true.is_empty() && attrs.missing_tracks_true.len() != count {
            return Err(invalid(
                "nodes_missing_value_tracks_true has the wrong length".to_owned(),
            ));
        }
        let leaves = attrs.leaf_node_ids.len();
        if [
            attrs.leaf_tree_ids.len(),
            attrs.leaf_targets.len(),
            attrs.leaf_weights.len(),
        ]
        .iter()
        .any(|&len| len != leaves)
        {
            return Err(invalid(
                "the leaf weight attributes are of different lengths".to_owned(),
            ));
        }
        if attrs.n_targets == 0 {
            return Err(invalid("the ensemble has no targets".to_owned()));
        }
        if !attrs.base_values.is_empty()
            && attrs.base_values.len() != attrs.n_targets
            && !(classifier && attrs.n_targets == 2 && attrs.base_values.len() == 1)
        {
            return Err(invalid(format!(
                "base_values has {} values for {} targets",
                attrs.base_values.len(),
                attrs.n_targets
            )));
        }

        // Position of every (tree, node) pair.
        let mut position: HashMap<(i64, i64), u32> = HashMap::with_capacity(count);
        for i in 0..count {
            if position
                .insert((attrs.tree_ids[i], attrs.node_ids[i]), i as u32)
                .is_some()
            {
                return Err(invalid(format!(
                    "node {} of tree {} is defined twice",
                    attrs.node_ids[i], attrs.tree_ids[i]
                )));
            }
        }
        // The weights of every leaf, grouped.
        let mut leaf_weights: HashMap<u32, Vec<(u32, T)>> = HashMap::new();
        for i in 0..leaves {
            let at = position
                .get(&(attrs.leaf_tree_ids[i], attrs.leaf_node_ids[i]))
                .ok_or_else(|| {
                    invalid(format!(
                        "a weight names node {} of tree {}, which does not exist",
                        attrs.leaf_node_ids[i], attrs.leaf_tree_ids[i]
                    ))
                })?;
            let target = index(attrs.leaf_targets[i], "target id")?;
            if target as usize >= attrs.n_targets {
                return Err(invalid(format!(
                    "a weight names target {target} of {}",
                    attrs.n_targets
                )));
            }
            leaf_weights
                .entry(*at)
                .or_default()
                .push((target, attrs.leaf_weights[i]));
        }

        let mut nodes = Vec::with_capacity(count);
        let mut weights = Vec::with_capacity(leaves);
        let mut n_features = 0usize;
        for i in 0..count {
            let mode = Mode::parse(&attrs.modes[i])?;
            let tree = attrs.tree_ids[i];
            let node = if mode == Mode::Leaf {
                let start = weights.len() as u32;
                weights.extend(leaf_weights.remove(&(i as u32)).unwrap_or_default());
                Node {
                    threshold: T::zero(),
                    feature: 0,
                    mode,
                    missing_goes_true: false,
                    next_true: start,
                    next_false: weights.len() as u32,
                }
            } else {
                let child = |id: i64| {
                    position.get(&(tree, id)).copied().ok_or_else(|| {
                        invalid(format!(
                            "node {} of tree {tree} branches to node {id}, which does not exist",
                            attrs.node_ids[i]
                        ))
                    })
                };
                let feature = index(attrs.feature_ids[i], "feature id")?;
                n_features = n_features.max(feature as usize + 1);
                Node {
                    threshold: attrs.values[i],
                    feature,
                    mode,
                    missing_goes_true: attrs.missing_tracks_true.get(i).is_some_and(|&v| v != 0),
                    next_true: child(attrs.true_ids[i])?,
                    next_false: child(attrs.false_ids[i])?,
                }
            };
            nodes.push(node);
        }
        if !leaf_weights.is_empty() {
            return Err(invalid("weights are attached to branch nodes".to_owned()));
        }

        let roots = find_roots(&nodes, &attrs.tree_ids)?;
        let all_weights_positive = weights.iter().all(|&(_, weight)| weight >= T::zero());
        let binary_single_score =
            classifier && attrs.n_targets == 2 && weights.iter().all(|&(target, _)| target == 0);
        if binary_single_score {
            attrs.post_transform.check_single_score("tree classifier")?;
        }
        let only_less_or_equal = nodes.iter().all(|node| {
            node.mode == Mode::Leaf || (node.mode == Mode::Leq && !node.missing_goes_true)
        });
        Ok(TreeEnsemble {
            only_less_or_equal,
            nodes,
            roots,
            weights,
            base_values: attrs.base_values,
            aggregate: attrs.aggregate,
            post_transform: attrs.post_transform,
            n_targets: attrs.n_targets,
            n_features,
            binary_single_score,
            all_weights_positive,
        })
    }

    /// The number of outputs per row: targets, or classes.
    pub(crate) fn n_targets(&self) -> usize {
        self.n_targets
    }

    /// The number of features a row must have at least.
    pub(crate) fn n_features(&self) -> usize {
        self.n_features
    }

    /// Scores `rows` rows of `width` features each (row-major) into `out`, `n_targets` values
    /// per row, with the post transform applied.
    pub(crate) fn score(&self, features: &[T], width: usize, out: &mut [T]) {
        debug_assert!(width >= self.n_features);
        out.fill(T::zero());
        match self.aggregate {
            Aggregate::Sum | Aggregate::Average => self.sum_trees(features, width, out),
            Aggregate::Min | Aggregate::Max => {
                for (row, scores) in features
                    .chunks_exact(width)
                    .zip(out.chunks_exact_mut(self.n_targets))
                {
                    self.extreme_of_trees(row, scores);
                }
            }
        }
        for scores in out.chunks_exact_mut(self.n_targets) {
            self.finish(scores);
        }
    }

    /// Sums the trees' weights, tree by tree over blocks of rows, so that a tree's nodes stay
    /// in the cache while the block's rows walk it.
    fn sum_trees(&self, features: &[T], width: usize, out: &mut [T]) {
        const BLOCK_ROWS: usize = 128;
        for (rows, scores) in features
            .chunks(width * BLOCK_ROWS)
            .zip(out.chunks_mut(self.n_targets * BLOCK_ROWS))
        {
            for &root in &self.roots {
                for (row, row_scores) in rows
                    .chunks_exact(width)
                    .zip(scores.chunks_exact_mut(self.n_targets))
                {
                    let leaf = self.leaf_for(root, row);
                    let (start, end) = (leaf.next_true as usize, leaf.next_false as usize);
                    for &(target, weight) in &self.weights[start..end] {
                        row_scores[target as usize] += weight;
                    }
                }
            }
        }
        if self.aggregate == Aggregate::Average {
            let trees = <T as num_traits::NumCast>::from(self.roots.len()).unwrap_or_else(T::one);
            out.iter_mut().for_each(|s| *s /= trees);
        }
    }

    /// The minimum or maximum of the trees' weights per target, for one row.
    fn extreme_of_trees(&self, row: &[T], scores: &mut [T]) {
        // Minimum and maximum start from the first contribution, not from zero.
        let mut contributed = vec![false; scores.len()];
        for &root in &self.roots {
            let leaf = self.leaf_for(root, row);
            let (start, end) = (leaf.next_true as usize, leaf.next_false as usize);
            for &(target, weight) in &self.weights[start..end] {
                let target = target as usize;
                let current = &mut scores[target];
                *current = if !contributed[target] {
                    weight
                } else if self.aggregate == Aggregate::Min {
                    current.min(weight)
                } else {
                    current.max(weight)
                };
                contributed[target] = true;
            }
        }
    }

    /// Adds the base values and applies the post transform to one row's aggregated scores.
    fn finish(&self, scores: &mut [T]) {
        if self.binary_single_score {
            let score = scores[0] + self.base_values.first().copied().unwrap_or_else(T::zero);
            scores.copy_from_slice(&self.post_transform.binary(score, self.all_weights_positive));
            return;
        }
        for (score, base) in scores.iter_mut().zip(&self.base_values) {
            *score += *base;
        }
        self.post_transform.apply(scores);
    }

    #[inline]
    fn leaf_for(&self, root: u32, row: &[T]) -> &Node<T> {
        let mut node = &self.nodes[root as usize];
        if self.only_less_or_equal {
            // scikit-learn's trees: one comparison per node, and a missing value (NaN) fails
            // it, which is the false way that such trees send missing values.
            while node.mode != Mode::Leaf {
                let next = if row[node.feature as usize] <= node.threshold {
                    node.next_true
                } else {
                    node.next_false
                };
                node = &self.nodes[next as usize];
            }
            return node;
        }
        while node.mode != Mode::Leaf {
            let value = row[node.feature as usize];
            let goes_true = if value.is_nan() {
                node.missing_goes_true
            } else {
                match node.mode {
                    Mode::Leq => value <= node.threshold,
                    Mode::Lt => value < node.threshold,
                    Mode::Gte => value >= node.threshold,
                    Mode::Gt => value > node.threshold,
                    Mode::Eq => value == node.threshold,
                    Mode::Neq => value != node.threshold,
                    Mode::Leaf => unreachable!("the walk stops at leaves"),
                }
            };
            node = &self.nodes[if goes_true {
                node.next_true
            } else {
                node.next_false
            } as usize];
        }
        node
    }
}

/// The root of every tree, in tree order, after checking that every tree is a tree: exactly
/// one node that no other node branches to, from which every node of the tree is reached
/// exactly once.
fn find_roots<T: Real>(nodes: &[Node<T>], tree_ids: &[i64]) -> Result<Vec<u32>, RealtimeError> {
    let invalid = |message: String| RealtimeError::InvalidModel(message);
    let mut trees: Vec<i64> = tree_ids.to_vec();
    trees.sort_unstable();
    trees.dedup();
    let mut is_child = vec![false; nodes.len()];
    for node in nodes.iter().filter(|node| node.mode != Mode::Leaf) {
        is_child[node.next_true as usize] = true;
        is_child[node.next_false as usize] = true;
    }
    let mut roots = Vec::with_capacity(trees.len());
    let mut visited = vec![false; nodes.len()];
    for tree in trees {
        let candidates: Vec<u32> = (0..nodes.len())
            .filter(|&i| tree_ids[i] == tree && !is_child[i])
            .map(|i| i as u32)
            .collect();
        let [root] = candidates[..] else {
            return Err(invalid(format!(
                "tree {tree} has {} roots instead of one",
                candidates.len()
            )));
        };
        let mut stack = vec![root];
        while let Some(at) = stack.pop() {
            if std::mem::replace(&mut visited[at as usize], true) {
                return Err(invalid(format!(
                    "tree {tree} is not a tree: a node is reached twice"
                )));
            }
            let node = nodes[at as usize];
            if node.mode != Mode::Leaf {
                stack.push(node.next_true);
                stack.push(node.next_false);
            }
        }
        roots.push(root);
    }
    if let Some(orphan) = visited.iter().position(|seen| !seen) {
        return Err(invalid(format!(
            "node {orphan} of the ensemble cannot be reached from its tree's root"
        )));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One stump on feature 0 at 0.5: left leaf gives target 0 weight 1, right leaf target 1
    /// weight 2.
    fn stump<T: Real>() -> TreeAttributes<T> {
        TreeAttributes {
            tree_ids: vec![0, 0, 0],
            node_ids: vec![0, 1, 2],
            feature_ids: vec![0, 0, 0],
            modes: vec!["BRANCH_LEQ".into(), "LEAF".into(), "LEAF".into()],
            values: vec![0.5.into(), T::zero(), T::zero()],
            true_ids: vec![1, 0, 0],
            false_ids: vec![2, 0, 0],
            missing_tracks_true: vec![1, 0, 0],
            leaf_tree_ids: vec![0, 0],
            leaf_node_ids: vec![1, 2],
            leaf_targets: vec![0, 1],
            leaf_weights: vec![T::one(), 2.0.into()],
            n_targets: 2,
            ..TreeAttributes::default()
        }
    }

    #[test]
    fn a_stump_scores_each_side_and_sends_missing_values_the_tracked_way() {
        let ensemble = TreeEnsemble::build(stump(), false).unwrap();
        let mut out = vec![0.0; 6];
        ensemble.score(&[0.2, 0.9, f32::NAN], 1, &mut out);
        assert_eq!(out, [1.0, 0.0, 0.0, 2.0, 1.0, 0.0]);
    }

    #[test]
    fn a_cycle_or_a_missing_child_is_refused() {
        let mut cyclic = stump::<f32>();
        cyclic.modes[1] = "BRANCH_LEQ".into();
        cyclic.true_ids[1] = 0;
        cyclic.false_ids[1] = 2;
        assert!(TreeEnsemble::build(cyclic, false).is_err());
        let mut dangling = stump::<f32>();
        dangling.false_ids[0] = 7;
        let err = TreeEnsemble::build(dangling, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("node 7"), "{err}");
    }

    #[test]
    fn a_binary_single_score_classifier_gives_both_probabilities() {
        let mut attrs = stump::<f32>();
        attrs.leaf_targets = vec![0, 0];
        attrs.post_transform = PostTransform::Logistic;
        let ensemble = TreeEnsemble::build(attrs, true).unwrap();
        let mut out = vec![0.0; 2];
        ensemble.score(&[0.9], 1, &mut out);
        let p = sigmoid(2.0f32);
        assert!((out[0] - (1.0 - p)).abs() < 1e-7 && (out[1] - p).abs() < 1e-7);
    }

    #[test]
    fn a_double_threshold_is_compared_in_double_precision() {
        // 0.1 + 1e-9 rounds to the same f32 as 0.1: only a double comparison sees it above.
        let mut attrs = stump::<f64>();
        attrs.values[0] = 0.1;
        attrs.leaf_targets = vec![0, 0];
        attrs.n_targets = 1;
        attrs.base_values = vec![0.5];
        let ensemble = TreeEnsemble::build(attrs, false).unwrap();
        let mut out = vec![0.0; 2];
        ensemble.score(&[0.1, 0.1 + 1e-9], 1, &mut out);
        assert_eq!(out, [1.5, 2.5]);
    }

    /// The stump of `stump()` in opset 5's form: one branch, two leaves.
    fn rooted_stump() -> RootedTrees<f32> {
        RootedTrees {
            splits: vec![0.5],
            feature_ids: vec![0],
            modes: vec![0],
            true_ids: vec![0],
            false_ids: vec![1],
            true_leafs: vec![1],
            false_leafs: vec![1],
            missing_tracks_true: vec![1],
            leaf_targets: vec![0, 1],
            leaf_weights: vec![1.0, 2.0],
            roots: vec![0],
            n_targets: 2,
            ..RootedTrees::default()
        }
    }

    #[test]
    fn opset_5_trees_score_as_the_older_form() {
        let attrs = rooted_stump().into_attributes().unwrap();
        let ensemble = TreeEnsemble::build(attrs, false).unwrap();
        let mut out = vec![0.0; 6];
        ensemble.score(&[0.2, 0.9, f32::NAN], 1, &mut out);
        assert_eq!(out, [1.0, 0.0, 0.0, 2.0, 1.0, 0.0]);

        // A second tree that is a single leaf (target 1, weight 2) adds to every row.
        let mut trees = rooted_stump();
        trees.splits.push(0.0);
        trees.feature_ids.push(0);
        trees.modes.push(0);
        trees.true_ids.push(2);
        trees.false_ids.push(2);
        trees.true_leafs.push(1);
        trees.false_leafs.push(1);
        trees.missing_tracks_true.push(0);
        trees.leaf_targets.push(1);
        trees.leaf_weights.push(2.0);
        trees.roots.push(1);
        let ensemble = TreeEnsemble::build(trees.into_attributes().unwrap(), false).unwrap();
        ensemble.score(&[0.2, 0.9, f32::NAN], 1, &mut out);
        assert_eq!(out, [1.0, 2.0, 0.0, 4.0, 1.0, 2.0]);
    }

    #[test]
    fn opset_5_trees_that_share_or_lose_nodes_are_refused() {
        let mut shared = rooted_stump();
        shared.roots = vec![0, 0];
        let err = shared.into_attributes().unwrap_err().to_string();
        assert!(err.contains("reached twice"), "{err}");
        let mut looping = rooted_stump();
        looping.true_leafs = vec![0];
        assert!(looping.into_attributes().is_err());
        let mut dangling = rooted_stump();
        dangling.false_ids = vec![9];
        let err = dangling.into_attributes().unwrap_err().to_string();
        assert!(err.contains("leaf 9"), "{err}");
        let mut member = rooted_stump();
        member.modes = vec![6];
        assert!(member.into_attributes().is_err());
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut scores = [1.0f32, 2.0, 3.0];
        softmax(&mut scores, false);
        assert!((scores.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(scores[2] > scores[1] && scores[1] > scores[0]);
    }
}
