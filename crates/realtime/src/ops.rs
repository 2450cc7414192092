//! The ONNX-ML operators o16n adds to tract: `TreeEnsembleClassifier`,
//! `TreeEnsembleRegressor` (with their double-precision `*_as_tensor` attributes) and opset 5's
//! `TreeEnsemble`, evaluated by the native evaluator of `tree.rs` (tract's own is linear in the
//! number of leaves per tree, and it has no regressor); `LinearClassifier`, `LinearRegressor`
//! and `Normalizer`, evaluated by `linear.rs` (tract runs them as about ten generic operators,
//! slower than the arithmetic for a few rows); `SVMClassifier` and `SVMRegressor` (`svm.rs`);
//! and the preprocessing operators tract lacks: `Scaler` (scikit-learn's `StandardScaler`),
//! `Imputer`, `Binarizer`, `FeatureVectorizer` (a pipeline with one input per column),
//! `ArrayFeatureExtractor` (class indices to labels), `OneHotEncoder` (of string or integer
//! categories) and `LabelEncoder`.
//!
//! Each operator is parsed into an inference-level expansion (shape and type rules) that wires
//! one typed operator of ours or, for `Scaler`, tract's own arithmetic. Operators whose ONNX
//! output keeps a double input double (`Imputer`, `Binarizer`) compute in `f64` then.

use std::fmt;
use std::sync::Arc;

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::{NodeProto, TensorProto};
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::tract_core::ops::change_axes::wire_with_rank_broadcast;
use tract_onnx::tract_hir::tract_core::ops::math::{mul, sub};

use crate::RealtimeError;
use crate::linear::{LinearModel, Norm};
use crate::svm::{Kernel, SvmClassifier, SvmClassifierAttributes, SvmRegressor};
use crate::tree::{Aggregate, PostTransform, Real, RootedTrees, TreeAttributes, TreeEnsemble};

/// Puts o16n's operators into tract's ONNX operator register, replacing tract's own.
pub(crate) fn register(register: &mut OnnxOpRegister) {
    register.insert("TreeEnsembleClassifier", tree_classifier);
    register.insert("TreeEnsembleRegressor", tree_regressor);
    register.insert("TreeEnsemble", tree_ensemble);
    register.insert("LinearClassifier", linear_classifier);
    register.insert("LinearRegressor", linear_regressor);
    register.insert("Normalizer", normalizer);
    register.insert("Scaler", scaler);
    register.insert("Imputer", imputer);
    register.insert("Binarizer", binarizer);
    register.insert("FeatureVectorizer", feature_vectorizer);
    register.insert("ArrayFeatureExtractor", array_feature_extractor);
    register.insert("OneHotEncoder", one_hot_encoder);
    register.insert("LabelEncoder", label_encoder);
    register.insert("SVMClassifier", svm_classifier);
    register.insert("SVMRegressor", svm_regressor);
}

/// A value of a request that the model cannot take (a category it was not trained with):
/// the request's fault, answered with a 400.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct InputRejected(String);

/// The message of a load error without its prefix, which the caller adds to the whole chain.
fn plain(err: RealtimeError) -> TractError {
    match err {
        RealtimeError::InvalidModel(message) | RealtimeError::UnsupportedModel(message) => {
            anyhow!(message)
        }
        other => anyhow!(other.to_string()),
    }
}

fn ints(node: &NodeProto, name: &str) -> TractResult<Vec<i64>> {
    Ok(node.get_attr_opt_vec::<i64>(name)?.unwrap_or_default())
}

fn floats(node: &NodeProto, name: &str) -> TractResult<Vec<f32>> {
    Ok(node.get_attr_opt_vec::<f32>(name)?.unwrap_or_default())
}

/// The values of a tensor attribute in precision `T`, or `None` when the node lacks it.
fn tensor_values<T: Real + Datum>(
    ctx: &ParsingContext,
    node: &NodeProto,
    name: &str,
) -> TractResult<Option<Vec<T>>> {
    let Some(proto) = node.get_attr_opt::<&TensorProto>(name)? else {
        return Ok(None);
    };
    let tensor = ctx.load_tensor(proto)?;
    let values = tensor.cast_to::<T>()?;
    let plain = values.try_as_plain_ram()?;
    Ok(Some(plain.as_slice::<T>()?.to_vec()))
}

/// A real-valued attribute of a tree ensemble: its double-precision form `{name}_as_tensor`
/// when the node has one, else its `float` form.
fn reals<T: Real + Datum>(
    ctx: &ParsingContext,
    node: &NodeProto,
    name: &str,
) -> TractResult<Vec<T>> {
    match tensor_values(ctx, node, &format!("{name}_as_tensor"))? {
        Some(values) => Ok(values),
        None => Ok(floats(node, name)?.into_iter().map(Into::into).collect()),
    }
}

/// Whether a tree ensemble has double-precision attributes: then it computes in `f64`.
fn has_double_attributes(node: &NodeProto) -> bool {
    node.attribute
        .iter()
        .any(|attribute| attribute.name.ends_with("_as_tensor"))
}

fn text(node: &NodeProto, name: &str) -> TractResult<Option<String>> {
    node.get_attr_opt::<String>(name)
}

fn tree_attributes<T: Real + Datum>(
    ctx: &ParsingContext,
    node: &NodeProto,
    leaf: &str,
    n_targets: usize,
) -> TractResult<TreeAttributes<T>> {
    let aggregate = match text(node, "aggregate_function")? {
        Some(name) => Aggregate::parse(&name).map_err(plain)?,
        None => Aggregate::Sum,
    };
    let post_transform = post_transform(node)?;
    Ok(TreeAttributes {
        tree_ids: ints(node, "nodes_treeids")?,
        node_ids: ints(node, "nodes_nodeids")?,
        feature_ids: ints(node, "nodes_featureids")?,
        modes: node
            .get_attr_opt_vec::<String>("nodes_modes")?
            .unwrap_or_default(),
        values: reals(ctx, node, "nodes_values")?,
        true_ids: ints(node, "nodes_truenodeids")?,
        false_ids: ints(node, "nodes_falsenodeids")?,
        missing_tracks_true: ints(node, "nodes_missing_value_tracks_true")?,
        leaf_tree_ids: ints(node, &format!("{leaf}_treeids"))?,
        leaf_node_ids: ints(node, &format!("{leaf}_nodeids"))?,
        leaf_targets: ints(node, &format!("{leaf}_ids"))?,
        leaf_weights: reals(ctx, node, &format!("{leaf}_weights"))?,
        base_values: reals(ctx, node, "base_values")?,
        aggregate,
        post_transform,
        n_targets,
    })
}

/// The ensemble of a `TreeEnsembleClassifier` or `TreeEnsembleRegressor`, in double precision
/// when the node has double-precision attributes.
fn trees(
    ctx: &ParsingContext,
    node: &NodeProto,
    leaf: &str,
    n_targets: usize,
    classifier: bool,
) -> TractResult<Scorer> {
    Ok(if has_double_attributes(node) {
        let attributes = tree_attributes::<f64>(ctx, node, leaf, n_targets)?;
        Scorer::DoubleTrees(TreeEnsemble::build(attributes, classifier).map_err(plain)?)
    } else {
        let attributes = tree_attributes::<f32>(ctx, node, leaf, n_targets)?;
        Scorer::Trees(TreeEnsemble::build(attributes, classifier).map_err(plain)?)
    })
}

fn tree_classifier(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let labels = class_labels(node, "classlabels_int64s")?;
    let scorer = trees(ctx, node, "class", labels.len(), true)?;
    Ok((
        expand(NativeScorer {
            scorer: Arc::new(scorer),
            labels: Some(labels.into_arc_tensor()),
            scores_type: DatumType::F32,
        }),
        vec![],
    ))
}

/// A classifier's labels, from the attribute of integer labels or `classlabels_strings`.
fn class_labels(node: &NodeProto, int_attribute: &str) -> TractResult<Tensor> {
    let int_labels = node.get_attr_opt_vec::<i64>(int_attribute)?;
    let string_labels = node.get_attr_opt_vec::<String>("classlabels_strings")?;
    let labels = match (int_labels, string_labels) {
        (Some(labels), None) => tensor1(&labels),
        (None, Some(labels)) => tensor1(&labels),
        _ => bail!(
            "`{}` needs exactly one of {int_attribute} and classlabels_strings",
            node.op_type
        ),
    };
    crate::bounds::dimension(&node.op_type, "a class count of", labels.len() as i64)?;
    Ok(labels)
}

fn post_transform(node: &NodeProto) -> TractResult<PostTransform> {
    match text(node, "post_transform")? {
        Some(name) => PostTransform::parse(&name).map_err(plain),
        None => Ok(PostTransform::None),
    }
}

fn linear_classifier(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let labels = class_labels(node, "classlabels_ints")?;
    let model = LinearModel::new(
        floats(node, "coefficients")?,
        floats(node, "intercepts")?,
        labels.len(),
        true,
        post_transform(node)?,
    )
    .map_err(plain)?;
    Ok((
        expand(NativeScorer {
            scorer: Arc::new(Scorer::Linear(model)),
            labels: Some(labels.into_arc_tensor()),
            scores_type: DatumType::F32,
        }),
        vec![],
    ))
}

fn linear_regressor(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let targets: i64 = node.get_attr_opt("targets")?.unwrap_or(1);
    let targets = usize::try_from(targets)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| anyhow!("targets must be positive"))?;
    let model = LinearModel::new(
        floats(node, "coefficients")?,
        floats(node, "intercepts")?,
        targets,
        false,
        post_transform(node)?,
    )
    .map_err(plain)?;
    Ok((
        expand(NativeScorer {
            scorer: Arc::new(Scorer::Linear(model)),
            labels: None,
            scores_type: DatumType::F32,
        }),
        vec![],
    ))
}

fn n_targets(node: &NodeProto, default: Option<i64>) -> TractResult<usize> {
    let n_targets = match default {
        Some(default) => node.get_attr_opt("n_targets")?.unwrap_or(default),
        None => node.get_attr::<i64>("n_targets")?,
    };
    crate::bounds::dimension(&node.op_type, "n_targets", n_targets)
}

fn tree_regressor(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let scorer = trees(ctx, node, "target", n_targets(node, Some(1))?, false)?;
    Ok((
        expand(NativeScorer {
            scorer: Arc::new(scorer),
            labels: None,
            scores_type: DatumType::F32,
        }),
        vec![],
    ))
}

/// ONNX-ML opset 5's `TreeEnsemble`: scores in the precision of its splits and weights, which
/// is also its output's.
fn tree_ensemble(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let double = ["nodes_splits", "leaf_weights"]
        .into_iter()
        .try_fold(false, |double, name| {
            let proto = node.get_attr::<&TensorProto>(name)?;
            TractResult::Ok(
                double || proto.data_type == tract_onnx::pb::tensor_proto::DataType::Double as i32,
            )
        })?;
    let scorer = if double {
        Scorer::DoubleTrees(rooted_trees::<f64>(ctx, node)?)
    } else {
        Scorer::Trees(rooted_trees::<f32>(ctx, node)?)
    };
    Ok((
        expand(NativeScorer {
            scorer: Arc::new(scorer),
            labels: None,
            scores_type: if double {
                DatumType::F64
            } else {
                DatumType::F32
            },
        }),
        vec![],
    ))
}

fn rooted_trees<T: Real + Datum>(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<TreeEnsemble<T>> {
    let required = |name: &str| {
        tensor_values::<T>(ctx, node, name)?.ok_or_else(|| anyhow!("`TreeEnsemble` has no {name}"))
    };
    let modes = node.get_attr::<&TensorProto>("nodes_modes")?;
    let modes = ctx.load_tensor(modes)?.cast_to::<i64>()?.into_owned();
    let aggregate = match node.get_attr_opt::<i64>("aggregate_function")?.unwrap_or(1) {
        0 => Aggregate::Average,
        1 => Aggregate::Sum,
        2 => Aggregate::Min,
        3 => Aggregate::Max,
        other => bail!("unknown aggregate_function {other}"),
    };
    let post_transform = match node.get_attr_opt::<i64>("post_transform")?.unwrap_or(0) {
        0 => PostTransform::None,
        1 => PostTransform::Softmax,
        2 => PostTransform::Logistic,
        3 => PostTransform::SoftmaxZero,
        4 => bail!("the post transform PROBIT is not supported"),
        other => bail!("unknown post_transform {other}"),
    };
    let trees = RootedTrees {
        splits: required("nodes_splits")?,
        feature_ids: ints(node, "nodes_featureids")?,
        modes: modes.try_as_plain_ram()?.as_slice::<i64>()?.to_vec(),
        true_ids: ints(node, "nodes_truenodeids")?,
        false_ids: ints(node, "nodes_falsenodeids")?,
        true_leafs: ints(node, "nodes_trueleafs")?,
        false_leafs: ints(node, "nodes_falseleafs")?,
        missing_tracks_true: ints(node, "nodes_missing_value_tracks_true")?,
        leaf_targets: ints(node, "leaf_targetids")?,
        leaf_weights: required("leaf_weights")?,
        roots: ints(node, "tree_roots")?,
        aggregate,
        post_transform,
        n_targets: n_targets(node, None)?,
    };
    let attributes = trees.into_attributes().map_err(plain)?;
    TreeEnsemble::build(attributes, false).map_err(plain)
}

fn svm_kernel(node: &NodeProto) -> TractResult<Kernel> {
    Kernel::parse(
        &text(node, "kernel_type")?.unwrap_or_else(|| "LINEAR".to_owned()),
        &floats(node, "kernel_params")?,
    )
    .map_err(plain)
}

fn svm_classifier(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    if !matches!(post_transform(node)?, PostTransform::None) {
        bail!("`SVMClassifier` with a post_transform is not supported");
    }
    let labels = class_labels(node, "classlabels_ints")?;
    let vectors_per_class = ints(node, "vectors_per_class")?;
    if vectors_per_class.is_empty() {
        bail!("`SVMClassifier` without support vectors (a linear SVM) is not supported");
    }
    let model = SvmClassifier::new(SvmClassifierAttributes {
        kernel: svm_kernel(node)?,
        support_vectors: floats(node, "support_vectors")?,
        vectors_per_class,
        coefficients: floats(node, "coefficients")?,
        rho: floats(node, "rho")?,
        prob_a: floats(node, "prob_a")?,
        prob_b: floats(node, "prob_b")?,
        n_labels: labels.len(),
    })
    .map_err(plain)?;
    Ok((
        expand(NativeScorer {
            scorer: Arc::new(Scorer::SvmClassifier(model)),
            labels: Some(labels.into_arc_tensor()),
            scores_type: DatumType::F32,
        }),
        vec![],
    ))
}

fn svm_regressor(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    if !matches!(post_transform(node)?, PostTransform::None) {
        bail!("`SVMRegressor` with a post_transform is not supported");
    }
    let model = SvmRegressor::new(
        svm_kernel(node)?,
        floats(node, "support_vectors")?,
        node.get_attr_opt::<i64>("n_supports")?.unwrap_or(0),
        floats(node, "coefficients")?,
        &floats(node, "rho")?,
        node.get_attr_opt::<i64>("one_class")?.unwrap_or(0) != 0,
    )
    .map_err(plain)?;
    Ok((
        expand(NativeScorer {
            scorer: Arc::new(Scorer::SvmRegressor(model)),
            labels: None,
            scores_type: DatumType::F32,
        }),
        vec![],
    ))
}

/// A model evaluated natively, row by row.
#[derive(Debug)]
enum Scorer {
    Trees(TreeEnsemble<f32>),
    DoubleTrees(TreeEnsemble<f64>),
    Linear(LinearModel),
    SvmClassifier(SvmClassifier),
    SvmRegressor(SvmRegressor),
}

impl Scorer {
    /// The number of score columns per row.
    fn outputs(&self) -> usize {
        match self {
            Scorer::Trees(ensemble) => ensemble.n_targets(),
            Scorer::DoubleTrees(ensemble) => ensemble.n_targets(),
            Scorer::Linear(model) => model.outputs(),
            Scorer::SvmClassifier(model) => model.outputs(),
            Scorer::SvmRegressor(_) => 1,
        }
    }

    /// Checks that rows of `width` features fit the model.
    fn check_width(&self, width: usize) -> TractResult<()> {
        match self {
            Scorer::Trees(ensemble) => ensure!(
                width >= ensemble.n_features(),
                "the trees use {} features and the input has {width}",
                ensemble.n_features()
            ),
            Scorer::DoubleTrees(ensemble) => ensure!(
                width >= ensemble.n_features(),
                "the trees use {} features and the input has {width}",
                ensemble.n_features()
            ),
            Scorer::Linear(model) => ensure!(
                width == model.features(),
                "the linear model has {} coefficients per target and the input {width} features",
                model.features()
            ),
            Scorer::SvmClassifier(model) => ensure!(
                width == model.n_features(),
                "the support vectors have {} features and the input {width}",
                model.n_features()
            ),
            Scorer::SvmRegressor(model) => ensure!(
                width == model.n_features(),
                "the SVM regressor takes {} features and the input has {width}",
                model.n_features()
            ),
        }
        Ok(())
    }

    /// Scores the rows of `input` (`[rows, width]`), in the model's precision: the scores
    /// `[rows, outputs]`, and with `classes`, each row's class (its highest score, the first
    /// one on a tie, unless the model decides otherwise: an SVM, by its one-versus-one votes).
    fn score(&self, input: &Tensor, classes: bool) -> TractResult<(Tensor, Vec<usize>)> {
        let &[_, width] = input.shape() else {
            bail!("the model needs a 2-D input");
        };
        self.check_width(width)?;
        let outputs = self.outputs();
        match self {
            Scorer::Trees(ensemble) => rows_scored(input, outputs, classes, |features, out| {
                ensemble.score(features, width, out);
                None
            }),
            Scorer::DoubleTrees(ensemble) => {
                rows_scored(input, outputs, classes, |features, out| {
                    ensemble.score(features, width, out);
                    None
                })
            }
            Scorer::Linear(model) => rows_scored(input, outputs, classes, |features, out| {
                model.score(features, out);
                None
            }),
            Scorer::SvmClassifier(model) => {
                rows_scored(input, outputs, classes, |features, out| {
                    Some(model.score(features, width, out))
                })
            }
            Scorer::SvmRegressor(model) => rows_scored(input, outputs, classes, |features, out| {
                model.score(features, width, out);
                None
            }),
        }
    }
}

/// Runs `score` on the rows of `input` in precision `T`; see [`Scorer::score`].
fn rows_scored<T: Real + Datum>(
    input: &Tensor,
    outputs: usize,
    classes: bool,
    score: impl FnOnce(&[T], &mut [T]) -> Option<Vec<usize>>,
) -> TractResult<(Tensor, Vec<usize>)> {
    let rows = input.shape()[0];
    let features = input.cast_to::<T>()?;
    let plain = features.try_as_plain_ram()?;
    let mut scores = vec![T::zero(); rows * outputs];
    let decided = score(plain.as_slice::<T>()?, &mut scores);
    let winners = match decided {
        Some(decided) => decided,
        None if classes => scores
            .chunks_exact(outputs)
            .map(|row| {
                row.iter().enumerate().fold(
                    0,
                    |best, (class, &score)| {
                        if score > row[best] { class } else { best }
                    },
                )
            })
            .collect(),
        None => Vec::new(),
    };
    Ok((Tensor::from_shape(&[rows, outputs], &scores)?, winners))
}

/// A natively evaluated model: a classifier when it has class labels (outputs: labels and
/// probabilities), else a regressor (output: predictions).
#[derive(Clone)]
struct NativeScorer {
    scorer: Arc<Scorer>,
    labels: Option<Arc<Tensor>>,
    /// The type of the scores output: `f32`, except for opset 5's double ensembles.
    scores_type: DatumType,
}

impl fmt::Debug for NativeScorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match *self.scorer {
            Scorer::Trees(_) | Scorer::DoubleTrees(_) => "trees",
            Scorer::Linear(_) => "linear",
            Scorer::SvmClassifier(_) | Scorer::SvmRegressor(_) => "svm",
        };
        write!(f, "NativeScorer({kind}, {} outputs)", self.scorer.outputs())
    }
}

// Two operators are the same when they share one model: comparing forests value by value
// would be slow and is never needed.
impl PartialEq for NativeScorer {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.scorer, &other.scorer)
    }
}

impl Eq for NativeScorer {}

impl Expansion for NativeScorer {
    fn name(&self) -> StaticName {
        "NativeScorer".into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(if self.labels.is_some() { 2 } else { 1 })
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        s.equals(&inputs[0].rank, 2)?;
        let scores = match &self.labels {
            Some(labels) => {
                check_output_arity(outputs, 2)?;
                s.equals(&outputs[0].datum_type, labels.datum_type())?;
                s.equals(&outputs[0].rank, 1)?;
                s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
                &outputs[1]
            }
            None => {
                check_output_arity(outputs, 1)?;
                &outputs[0]
            }
        };
        s.equals(&scores.datum_type, self.scores_type)?;
        s.equals(&scores.rank, 2)?;
        s.equals(&scores.shape[0], &inputs[0].shape[0])?;
        s.equals(&scores.shape[1], self.scorer.outputs().to_dim())?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, self.clone(), inputs)
    }
}

impl Op for NativeScorer {
    fn name(&self) -> StaticName {
        "NativeScorer".into()
    }

    op_as_typed_op!();
}

impl EvalOp for NativeScorer {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let (scores, winners) = self.scorer.score(&input, self.labels.is_some())?;
        let scores = if scores.datum_type() == self.scores_type {
            scores
        } else {
            scores.cast_to_dt(self.scores_type)?.into_owned()
        }
        .into_tvalue();
        let Some(labels) = &self.labels else {
            return Ok(tvec!(scores));
        };
        let labels_plain = labels.try_as_plain_ram()?;
        let row_labels = if labels.datum_type() == DatumType::String {
            let names = labels_plain.as_slice::<String>()?;
            tensor1(
                &winners
                    .iter()
                    .map(|&c| names[c].clone())
                    .collect::<Vec<_>>(),
            )
        } else {
            let ids = labels_plain.as_slice::<i64>()?;
            tensor1(&winners.iter().map(|&c| ids[c]).collect::<Vec<_>>())
        };
        Ok(tvec!(row_labels.into_tvalue(), scores))
    }
}

impl TypedOp for NativeScorer {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let rows = inputs[0].shape[0].clone();
        if let Ok(width) = inputs[0].shape[1].to_usize() {
            self.scorer.check_width(width)?;
        }
        let scores = TypedFact::dt_shape(
            self.scores_type,
            [rows.clone(), self.scorer.outputs().to_dim()],
        );
        Ok(match &self.labels {
            Some(labels) => tvec!(TypedFact::dt_shape(labels.datum_type(), [rows]), scores),
            None => tvec!(scores),
        })
    }

    as_op!();
}

/// An operator that changes the values of its one input in place, in `f32`, or in `f64` for
/// a double input of an operator whose output keeps its input's type.
trait Elementwise {
    /// Whether a double input gives a double output (ONNX's `Imputer` and `Binarizer`) rather
    /// than `f32` (`Normalizer`).
    const KEEPS_DOUBLE: bool;

    /// Changes `values`, rows of `width` values (at least 1).
    fn apply<T: Real>(&self, values: &mut [T], width: usize) -> TractResult<()>;

    /// Checks, when the model loads, that rows of `width` values fit the operator.
    fn check_width(&self, _width: usize) -> TractResult<()> {
        Ok(())
    }

    /// The output type for an input of type `input`.
    fn output_type(input: DatumType) -> DatumType {
        if Self::KEEPS_DOUBLE && input == DatumType::F64 {
            DatumType::F64
        } else {
            DatumType::F32
        }
    }

    fn eval_in_place(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let output = match Self::output_type(input.datum_type()) {
            DatumType::F64 => self.apply_to::<f64>(&input)?,
            _ => self.apply_to::<f32>(&input)?,
        };
        Ok(tvec!(output.into_tvalue()))
    }

    fn apply_to<T: Real + Datum>(&self, input: &Tensor) -> TractResult<Tensor> {
        let mut output = input.cast_to::<T>()?.into_owned();
        let width = output.shape().last().copied().unwrap_or(1).max(1);
        self.apply(output.try_as_plain_ram_mut()?.as_slice_mut::<T>()?, width)?;
        Ok(output)
    }
}

/// Implements tract's `Op` and an `Expansion` that wires the operator as it is, for one of our
/// typed operators: its inference rules are its own `inference_rules`, or for an `elementwise`
/// one (its output has its input's shape, in the type `Elementwise::output_type` says) the
/// rules, `EvalOp` and `TypedOp` all follow from its `Elementwise` implementation.
macro_rules! native_operator {
    ($op:ident, elementwise) => {
        native_operator!(@impl $op, |_this, s, inputs, outputs| {
            check_input_arity(inputs, 1)?;
            check_output_arity(outputs, 1)?;
            s.equals(&inputs[0].shape, &outputs[0].shape)?;
            s.given(&inputs[0].datum_type, move |s, input| {
                s.equals(&outputs[0].datum_type, <$op as Elementwise>::output_type(input))
            })
        });

        impl EvalOp for $op {
            op_out_of_plan!();

            fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
                self.eval_in_place(inputs)
            }
        }

        impl TypedOp for $op {
            fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
                if let Some(width) = inputs[0].shape.last()
                    && let Ok(width) = width.to_usize()
                {
                    self.check_width(width)?;
                }
                Ok(tvec!(TypedFact::dt_shape(
                    Self::output_type(inputs[0].datum_type),
                    inputs[0].shape.clone()
                )))
            }

            as_op!();
        }
    };
    ($op:ident) => {
        native_operator!(@impl $op, |this, s, inputs, outputs| this.inference_rules(s, inputs, outputs));
    };
    (@impl $op:ident, |$this:ident, $s:ident, $inputs:ident, $outputs:ident| $rules:expr) => {
        impl Expansion for $op {
            fn name(&self) -> StaticName {
                stringify!($op).into()
            }

            fn rules<'r, 'p: 'r, 's: 'r>(
                &'s self,
                $s: &mut Solver<'r>,
                $inputs: &'p [TensorProxy],
                $outputs: &'p [TensorProxy],
            ) -> InferenceResult {
                let $this = self;
                $rules
            }

            fn wire(
                &self,
                prefix: &str,
                model: &mut TypedModel,
                inputs: &[OutletId],
            ) -> TractResult<TVec<OutletId>> {
                model.wire_node(prefix, self.clone(), inputs)
            }
        }

        impl Op for $op {
            fn name(&self) -> StaticName {
                stringify!($op).into()
            }

            op_as_typed_op!();
        }
    };
}

/// The rules of a one-input operator whose output is its input's shape in `f32`.
fn same_shape_in_f32<'r, 'p: 'r>(
    s: &mut Solver<'r>,
    inputs: &'p [TensorProxy],
    outputs: &'p [TensorProxy],
) -> InferenceResult {
    check_input_arity(inputs, 1)?;
    check_output_arity(outputs, 1)?;
    s.equals(&outputs[0].datum_type, DatumType::F32)?;
    s.equals(&inputs[0].shape, &outputs[0].shape)?;
    Ok(())
}

fn scaler(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let offset = floats(node, "offset")?;
    let scale = floats(node, "scale")?;
    Ok((expand(Scaler { offset, scale }), vec![]))
}

/// `(x - offset) * scale`, per column (or for all columns when given once).
#[derive(Debug, Clone, PartialEq)]
struct Scaler {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

impl Expansion for Scaler {
    fn name(&self) -> StaticName {
        "Scaler".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        same_shape_in_f32(s, inputs, outputs)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let mut x = inputs[0];
        if model.outlet_fact(x)?.datum_type != f32::datum_type() {
            x = model.wire_node(
                format!("{prefix}.to_f32"),
                tract_onnx::tract_hir::tract_core::ops::cast::cast(f32::datum_type()),
                &[x],
            )?[0];
        }
        let offset = if self.offset.is_empty() {
            vec![0.0]
        } else {
            self.offset.clone()
        };
        let scale = if self.scale.is_empty() {
            vec![1.0]
        } else {
            self.scale.clone()
        };
        let offset = model.add_const(format!("{prefix}.offset"), tensor1(&offset))?;
        let scale = model.add_const(format!("{prefix}.scale"), tensor1(&scale))?;
        let centred =
            wire_with_rank_broadcast(format!("{prefix}.sub"), model, sub(), &[x, offset])?;
        wire_with_rank_broadcast(format!("{prefix}.mul"), model, mul(), &[centred[0], scale])
    }
}

fn normalizer(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let norm =
        Norm::parse(&text(node, "norm")?.unwrap_or_else(|| "MAX".to_owned())).map_err(plain)?;
    Ok((expand(NativeNormalizer { norm }), vec![]))
}

/// Each row divided by its norm.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NativeNormalizer {
    norm: Norm,
}

native_operator!(NativeNormalizer, elementwise);

impl Elementwise for NativeNormalizer {
    const KEEPS_DOUBLE: bool = false;

    fn apply<T: Real>(&self, values: &mut [T], width: usize) -> TractResult<()> {
        self.norm.apply(values, width);
        Ok(())
    }
}

fn imputer(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    if node
        .attribute
        .iter()
        .any(|attribute| attribute.name == "imputed_value_int64s")
    {
        bail!("`Imputer` with integer values is not supported; impute float columns");
    }
    let values = floats(node, "imputed_value_floats")?;
    if values.is_empty() {
        bail!("`Imputer` has no imputed_value_floats");
    }
    let replaced = node
        .get_attr_opt::<f32>("replaced_value_float")?
        .unwrap_or(0.0);
    Ok((expand(NativeImputer { values, replaced }), vec![]))
}

/// Replaces the missing value (`replaced`, which may be NaN) of each column with its imputed
/// value (one for every column, or one per column).
#[derive(Debug, Clone)]
struct NativeImputer {
    values: Vec<f32>,
    replaced: f32,
}

/// Operators are compared by their bits: NaN, the usual missing value, equals itself here.
impl PartialEq for NativeImputer {
    fn eq(&self, other: &Self) -> bool {
        self.replaced.to_bits() == other.replaced.to_bits()
            && self
                .values
                .iter()
                .map(|value| value.to_bits())
                .eq(other.values.iter().map(|value| value.to_bits()))
    }
}

impl Eq for NativeImputer {}

native_operator!(NativeImputer, elementwise);

impl Elementwise for NativeImputer {
    const KEEPS_DOUBLE: bool = true;

    fn check_width(&self, width: usize) -> TractResult<()> {
        if self.values.len() != 1 && self.values.len() != width {
            bail!(
                "`Imputer` has {} imputed values for {width} columns",
                self.values.len()
            );
        }
        Ok(())
    }

    fn apply<T: Real>(&self, values: &mut [T], width: usize) -> TractResult<()> {
        self.check_width(width)?;
        let replaced: T = self.replaced.into();
        let is_missing = |value: T| {
            if replaced.is_nan() {
                value.is_nan()
            } else {
                value == replaced
            }
        };
        for (index, value) in values.iter_mut().enumerate() {
            if is_missing(*value) {
                *value = if self.values.len() == 1 {
                    self.values[0]
                } else {
                    self.values[index % width]
                }
                .into();
            }
        }
        Ok(())
    }
}

fn binarizer(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let threshold = node.get_attr_opt::<f32>("threshold")?.unwrap_or(0.0);
    Ok((expand(NativeBinarizer { threshold }), vec![]))
}

/// 1 where a value is above the threshold, else 0.
#[derive(Debug, Clone)]
struct NativeBinarizer {
    threshold: f32,
}

impl PartialEq for NativeBinarizer {
    fn eq(&self, other: &Self) -> bool {
        self.threshold.to_bits() == other.threshold.to_bits()
    }
}

impl Eq for NativeBinarizer {}

native_operator!(NativeBinarizer, elementwise);

impl Elementwise for NativeBinarizer {
    const KEEPS_DOUBLE: bool = true;

    fn apply<T: Real>(&self, values: &mut [T], _width: usize) -> TractResult<()> {
        let threshold: T = self.threshold.into();
        for value in values {
            *value = if *value > threshold {
                T::one()
            } else {
                T::zero()
            };
        }
        Ok(())
    }
}

fn feature_vectorizer(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let dimensions = ints(node, "inputdimensions")?
        .into_iter()
        .map(|dimension| {
            crate::bounds::dimension("FeatureVectorizer", "an input dimension of", dimension)
        })
        .collect::<TractResult<Vec<usize>>>()?;
    let width = dimensions
        .iter()
        .try_fold(0_usize, |width, &dimension| width.checked_add(dimension))
        .filter(|&width| width <= crate::bounds::MAX_DIMENSION);
    if width.is_none() {
        bail!(
            "`FeatureVectorizer`'s input dimensions add up to more than {}",
            crate::bounds::MAX_DIMENSION
        );
    }
    if dimensions.len() != node.input.len() {
        bail!(
            "`FeatureVectorizer` has {} input dimensions for {} inputs",
            dimensions.len(),
            node.input.len()
        );
    }
    Ok((expand(NativeFeatureVectorizer { dimensions }), vec![]))
}

/// The inputs' columns side by side, in `f32`: each input `[rows, dimension]` (or `[rows]` for
/// a dimension of 1).
#[derive(Debug, Clone, PartialEq, Eq)]
struct NativeFeatureVectorizer {
    dimensions: Vec<usize>,
}

impl NativeFeatureVectorizer {
    fn width(&self) -> usize {
        self.dimensions.iter().sum()
    }

    /// The columns of input `index` of `shape`, checked against its declared dimension.
    fn check_input(&self, index: usize, shape: &[usize]) -> TractResult<usize> {
        let columns = match shape {
            [_] => 1,
            [_, columns] => *columns,
            _ => bail!("`FeatureVectorizer` takes 1-D or 2-D inputs"),
        };
        if columns != self.dimensions[index] {
            bail!(
                "input {index} of `FeatureVectorizer` has {columns} columns, not the {} declared",
                self.dimensions[index]
            );
        }
        Ok(columns)
    }
}

native_operator!(NativeFeatureVectorizer);

impl NativeFeatureVectorizer {
    fn inference_rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, self.dimensions.len())?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], self.width().to_dim())?;
        Ok(())
    }
}

impl EvalOp for NativeFeatureVectorizer {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        if inputs.len() != self.dimensions.len() {
            bail!("`FeatureVectorizer` got {} inputs", inputs.len());
        }
        let rows = inputs[0].shape().first().copied().unwrap_or(0);
        let width = self.width();
        let mut output = vec![0f32; rows * width];
        let mut offset = 0;
        for (index, input) in inputs.iter().enumerate() {
            let columns = self.check_input(index, input.shape())?;
            if input.shape()[0] != rows {
                bail!("the inputs of `FeatureVectorizer` have different numbers of rows");
            }
            let values = input.cast_to::<f32>()?;
            let plain = values.try_as_plain_ram()?;
            let values = plain.as_slice::<f32>()?;
            for row in 0..rows {
                output[row * width + offset..row * width + offset + columns]
                    .copy_from_slice(&values[row * columns..(row + 1) * columns]);
            }
            offset += columns;
        }
        Ok(tvec!(
            Tensor::from_shape(&[rows, width], &output)?.into_tvalue()
        ))
    }
}

impl TypedOp for NativeFeatureVectorizer {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        for (index, input) in inputs.iter().enumerate() {
            if let Some(shape) = input.shape.as_concrete() {
                self.check_input(index, shape)?;
            } else if let Some(columns) = input.shape.get(1)
                && let Ok(columns) = columns.to_usize()
                && columns != self.dimensions[index]
            {
                bail!(
                    "input {index} of `FeatureVectorizer` has {columns} columns, not the {} declared",
                    self.dimensions[index]
                );
            }
        }
        Ok(tvec!(f32::fact([
            inputs[0].shape[0].clone(),
            self.width().to_dim()
        ])))
    }

    as_op!();
}

fn array_feature_extractor(
    _ctx: &ParsingContext,
    _node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(NativeArrayFeatureExtractor), vec![]))
}

/// The elements of the last axis of the first input at the indices of the second (which may
/// have any shape), for every position of the other axes; a 1-D input is one row, as ONNX
/// Runtime has it. skl2onnx uses it to turn class indices into labels.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NativeArrayFeatureExtractor;

native_operator!(NativeArrayFeatureExtractor);

impl NativeArrayFeatureExtractor {
    fn inference_rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
        s.given(&inputs[0].rank, move |s, rank| {
            s.equals(&outputs[0].rank, rank.max(2))
        })
    }

    /// The indices, checked against the `last` elements they index.
    fn positions(indices: &Tensor, last: usize) -> TractResult<Vec<usize>> {
        let indices = indices.cast_to::<i64>()?;
        let plain = indices.try_as_plain_ram()?;
        plain
            .as_slice::<i64>()?
            .iter()
            .map(|&index| {
                usize::try_from(index)
                    .ok()
                    .filter(|&index| index < last)
                    .ok_or_else(|| {
                        TractError::from(InputRejected(format!(
                            "`ArrayFeatureExtractor` index {index} is out of range for {last} elements"
                        )))
                    })
            })
            .collect()
    }

    /// The output shape for data of `shape` and `count` indices.
    fn output_shape<D: DimLike>(shape: &[D], count: D) -> TVec<D> {
        let mut output: TVec<D> = match shape {
            [_] => tvec![D::one()],
            _ => shape[..shape.len() - 1].into(),
        };
        output.push(count);
        output
    }
}

impl EvalOp for NativeArrayFeatureExtractor {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (data, indices) = args_2!(inputs);
        let Some(&last) = data.shape().last() else {
            bail!("`ArrayFeatureExtractor` needs data with at least one axis");
        };
        let positions = Self::positions(&indices, last)?;
        let shape = Self::output_shape(data.shape(), positions.len());
        let axis = data.rank() - 1;
        let output = if positions.is_empty() {
            Tensor::zero_dt(data.datum_type(), &shape)?
        } else {
            let columns = positions
                .iter()
                .map(|&at| data.slice(axis, at, at + 1))
                .collect::<TractResult<Vec<Tensor>>>()?;
            Tensor::stack_tensors(axis, &columns)?.into_shape(&shape)?
        };
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for NativeArrayFeatureExtractor {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        // Constant indices (skl2onnx's) are checked once, when the model is loaded.
        if let (Some(indices), Some(last)) = (&inputs[1].konst, inputs[0].shape.last())
            && let Ok(last) = last.to_usize()
        {
            Self::positions(indices, last)?;
        }
        let count = inputs[1].shape.iter().product::<TDim>();
        let shape = Self::output_shape(&inputs[0].shape.to_tvec(), count);
        Ok(tvec!(TypedFact::dt_shape(inputs[0].datum_type, shape)))
    }

    as_op!();
}

fn one_hot_encoder(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let strings = node.get_attr_opt_vec::<String>("cats_strings")?;
    let integers = node.get_attr_opt_vec::<i64>("cats_int64s")?;
    let categories = match (strings, integers) {
        (Some(strings), None) if !strings.is_empty() => Categories::Strings(strings),
        (None, Some(integers)) if !integers.is_empty() => Categories::Integers(integers),
        _ => bail!("`OneHotEncoder` needs either cats_strings or cats_int64s"),
    };
    let zeros = node.get_attr_opt::<i64>("zeros")?.unwrap_or(1) != 0;
    Ok((expand(NativeOneHotEncoder { categories, zeros }), vec![]))
}

/// The categories of a one-hot encoder, in output order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Categories {
    Strings(Vec<String>),
    Integers(Vec<i64>),
}

impl Categories {
    /// The first few categories, for messages.
    fn describe(&self) -> String {
        let shown: Vec<String> = match self {
            Categories::Strings(names) => names
                .iter()
                .take(10)
                .map(|name| format!("{name:?}"))
                .collect(),
            Categories::Integers(values) => values.iter().take(10).map(i64::to_string).collect(),
        };
        let more = if self.len() > shown.len() {
            ", ..."
        } else {
            ""
        };
        format!("{}{more}", shown.join(", "))
    }

    fn len(&self) -> usize {
        match self {
            Categories::Strings(names) => names.len(),
            Categories::Integers(values) => values.len(),
        }
    }
}

/// One more dimension than the input, of one column per category: 1 where the value is that
/// category. A value of no category is all zeros when `zeros` is set, else an error.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NativeOneHotEncoder {
    categories: Categories,
    zeros: bool,
}

impl NativeOneHotEncoder {
    /// The position of each input value among the categories (`None`: none of them).
    fn positions(&self, input: &Tensor) -> TractResult<Vec<Option<usize>>> {
        match &self.categories {
            Categories::Strings(names) => {
                if input.datum_type() != DatumType::String {
                    bail!("`OneHotEncoder` of string categories needs a string input");
                }
                let index: std::collections::HashMap<&str, usize> = names
                    .iter()
                    .enumerate()
                    .map(|(position, name)| (name.as_str(), position))
                    .collect();
                let plain = input.try_as_plain_ram()?;
                Ok(plain
                    .as_slice::<String>()?
                    .iter()
                    .map(|value| index.get(value.as_str()).copied())
                    .collect())
            }
            Categories::Integers(values) => {
                if input.datum_type() == DatumType::String {
                    bail!("`OneHotEncoder` of integer categories needs a numeric input");
                }
                let index: std::collections::HashMap<i64, usize> = values
                    .iter()
                    .enumerate()
                    .map(|(position, &value)| (value, position))
                    .collect();
                let whole = input.cast_to::<i64>()?;
                let plain = whole.try_as_plain_ram()?;
                Ok(plain
                    .as_slice::<i64>()?
                    .iter()
                    .map(|value| index.get(value).copied())
                    .collect())
            }
        }
    }
}

native_operator!(NativeOneHotEncoder);

impl NativeOneHotEncoder {
    fn inference_rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].rank, inputs[0].rank.bex() + 1)?;
        let width = self.categories.len();
        s.given(&inputs[0].rank, move |s, rank| {
            let rank = rank as usize;
            for axis in 0..rank {
                s.equals(&outputs[0].shape[axis], &inputs[0].shape[axis])?;
            }
            s.equals(&outputs[0].shape[rank], width.to_dim())
        })
    }
}

impl EvalOp for NativeOneHotEncoder {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let width = self.categories.len();
        let positions = self.positions(&input)?;
        let mut output = vec![0f32; positions.len() * width];
        for (row, position) in positions.iter().enumerate() {
            match position {
                Some(column) => output[row * width + column] = 1.0,
                None if self.zeros => {}
                None => {
                    return Err(InputRejected(format!(
                        "row {row} has a value that is not one of the categories the model was trained with ({})",
                        self.categories.describe()
                    ))
                    .into());
                }
            }
        }
        let mut shape: Vec<usize> = input.shape().to_vec();
        shape.push(width);
        Ok(tvec!(Tensor::from_shape(&shape, &output)?.into_tvalue()))
    }
}

impl TypedOp for NativeOneHotEncoder {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let string_input = inputs[0].datum_type == DatumType::String;
        match &self.categories {
            Categories::Strings(_) if !string_input => {
                bail!("`OneHotEncoder` has string categories for an input of numbers")
            }
            Categories::Integers(_) if string_input => {
                bail!("`OneHotEncoder` has integer categories for an input of strings")
            }
            _ => {}
        }
        let mut shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        shape.push(self.categories.len().to_dim());
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

fn label_encoder(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let keys = labels(node, "keys")?;
    let values = labels(node, "values")?;
    if keys.len() != values.len() {
        bail!(
            "`LabelEncoder` has {} keys and {} values; they must pair up",
            keys.len(),
            values.len()
        );
    }
    if keys.len() == 0 {
        bail!("`LabelEncoder` has no keys");
    }
    let default = match &values {
        Labels::Strings(_) => {
            Label::String(text(node, "default_string")?.unwrap_or_else(|| "_Unused".to_owned()))
        }
        Labels::Integers(_) => {
            Label::Integer(node.get_attr_opt::<i64>("default_int64")?.unwrap_or(-1))
        }
        Labels::Floats(_) => Label::Float(
            node.get_attr_opt::<f32>("default_float")?
                .unwrap_or(-0.0)
                .to_bits(),
        ),
    };
    let mapping = (0..keys.len())
        .map(|index| (keys.get(index), values.get(index)))
        .collect();
    Ok((
        expand(NativeLabelEncoder {
            key_type: keys.datum_type(),
            value_type: values.datum_type(),
            mapping,
            default,
        }),
        vec![],
    ))
}

/// One of a label encoder's key or value lists.
enum Labels {
    Strings(Vec<String>),
    Integers(Vec<i64>),
    Floats(Vec<f32>),
}

/// A key or value of a label encoder (floats by their bits, so that they can be looked up).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Label {
    String(String),
    Integer(i64),
    Float(u32),
}

impl Labels {
    fn len(&self) -> usize {
        match self {
            Labels::Strings(list) => list.len(),
            Labels::Integers(list) => list.len(),
            Labels::Floats(list) => list.len(),
        }
    }

    fn get(&self, index: usize) -> Label {
        match self {
            Labels::Strings(list) => Label::String(list[index].clone()),
            Labels::Integers(list) => Label::Integer(list[index]),
            Labels::Floats(list) => Label::Float(list[index].to_bits()),
        }
    }

    fn datum_type(&self) -> DatumType {
        match self {
            Labels::Strings(_) => DatumType::String,
            Labels::Integers(_) => DatumType::I64,
            Labels::Floats(_) => DatumType::F32,
        }
    }
}

/// The `keys_*` or `values_*` list of a label encoder: exactly one kind.
fn labels(node: &NodeProto, prefix: &str) -> TractResult<Labels> {
    let strings = node.get_attr_opt_vec::<String>(&format!("{prefix}_strings"))?;
    let integers = node.get_attr_opt_vec::<i64>(&format!("{prefix}_int64s"))?;
    let floats = node.get_attr_opt_vec::<f32>(&format!("{prefix}_floats"))?;
    match (strings, integers, floats) {
        (Some(list), None, None) => Ok(Labels::Strings(list)),
        (None, Some(list), None) => Ok(Labels::Integers(list)),
        (None, None, Some(list)) => Ok(Labels::Floats(list)),
        _ => bail!(
            "`LabelEncoder` needs exactly one of {prefix}_strings, {prefix}_int64s and {prefix}_floats"
        ),
    }
}

/// Maps each value through the key-value pairs; a value of no key becomes the default.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NativeLabelEncoder {
    key_type: DatumType,
    value_type: DatumType,
    mapping: std::collections::HashMap<Label, Label>,
    default: Label,
}

impl NativeLabelEncoder {
    fn keys_of(&self, input: &Tensor) -> TractResult<Vec<Label>> {
        Ok(match self.key_type {
            DatumType::String => input
                .try_as_plain_ram()?
                .as_slice::<String>()?
                .iter()
                .map(|value| Label::String(value.clone()))
                .collect(),
            DatumType::I64 => input
                .cast_to::<i64>()?
                .try_as_plain_ram()?
                .as_slice::<i64>()?
                .iter()
                .map(|&value| Label::Integer(value))
                .collect(),
            _ => input
                .cast_to::<f32>()?
                .try_as_plain_ram()?
                .as_slice::<f32>()?
                .iter()
                .map(|&value| Label::Float(value.to_bits()))
                .collect(),
        })
    }
}

native_operator!(NativeLabelEncoder);

impl NativeLabelEncoder {
    fn inference_rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, self.value_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }
}

impl EvalOp for NativeLabelEncoder {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let keys = self.keys_of(&input)?;
        let mapped: Vec<&Label> = keys
            .iter()
            .map(|key| self.mapping.get(key).unwrap_or(&self.default))
            .collect();
        let values = match self.value_type {
            DatumType::String => tensor1(
                &mapped
                    .iter()
                    .map(|label| match label {
                        Label::String(text) => text.clone(),
                        _ => String::new(),
                    })
                    .collect::<Vec<_>>(),
            ),
            DatumType::I64 => tensor1(
                &mapped
                    .iter()
                    .map(|label| match label {
                        Label::Integer(value) => *value,
                        _ => 0,
                    })
                    .collect::<Vec<_>>(),
            ),
            _ => tensor1(
                &mapped
                    .iter()
                    .map(|label| match label {
                        Label::Float(bits) => f32::from_bits(*bits),
                        _ => 0.0,
                    })
                    .collect::<Vec<_>>(),
            ),
        };
        let output = values.into_shape(input.shape())?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for NativeLabelEncoder {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let string_input = inputs[0].datum_type == DatumType::String;
        if string_input != (self.key_type == DatumType::String) {
            bail!(
                "`LabelEncoder` has {:?} keys for an input of {:?}",
                self.key_type,
                inputs[0].datum_type
            );
        }
        Ok(tvec!(TypedFact::dt_shape(
            self.value_type,
            inputs[0].shape.clone()
        )))
    }

    as_op!();
}
