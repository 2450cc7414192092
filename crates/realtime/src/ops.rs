//! The ONNX-ML operators o16n adds to tract: `TreeEnsembleClassifier` and
//! `TreeEnsembleRegressor`, evaluated by the native evaluator of `tree.rs` (tract's own is
//! linear in the number of leaves per tree, and it has no regressor), and `Scaler`, which
//! tract lacks and which scikit-learn's `StandardScaler` exports to.
//!
//! Each operator is parsed into an inference-level expansion (shape and type rules) that wires
//! one typed operator (`NativeTrees`) or tract's own arithmetic (`Scaler`).

use std::fmt;
use std::sync::Arc;

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::tract_core::ops::change_axes::wire_with_rank_broadcast;
use tract_onnx::tract_hir::tract_core::ops::math::{mul, sub};

use crate::RealtimeError;
use crate::tree::{Aggregate, PostTransform, TreeAttributes, TreeEnsemble};

/// Puts o16n's operators into tract's ONNX operator register, replacing tract's own.
pub(crate) fn register(register: &mut OnnxOpRegister) {
    register.insert("TreeEnsembleClassifier", tree_classifier);
    register.insert("TreeEnsembleRegressor", tree_regressor);
    register.insert("Scaler", scaler);
}

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
    if node
        .attribute
        .iter()
        .any(|attribute| attribute.name == format!("{name}_as_tensor"))
    {
        bail!(
            "`{}` uses the attribute `{name}_as_tensor` (double precision), which is not supported; export with float inputs",
            node.op_type
        );
    }
    Ok(node.get_attr_opt_vec::<f32>(name)?.unwrap_or_default())
}

fn text(node: &NodeProto, name: &str) -> TractResult<Option<String>> {
    node.get_attr_opt::<String>(name)
}

fn tree_attributes(node: &NodeProto, leaf: &str, n_targets: usize) -> TractResult<TreeAttributes> {
    let aggregate = match text(node, "aggregate_function")? {
        Some(name) => Aggregate::parse(&name).map_err(plain)?,
        None => Aggregate::Sum,
    };
    let post_transform = match text(node, "post_transform")? {
        Some(name) => PostTransform::parse(&name).map_err(plain)?,
        None => PostTransform::None,
    };
    Ok(TreeAttributes {
        tree_ids: ints(node, "nodes_treeids")?,
        node_ids: ints(node, "nodes_nodeids")?,
        feature_ids: ints(node, "nodes_featureids")?,
        modes: node
            .get_attr_opt_vec::<String>("nodes_modes")?
            .unwrap_or_default(),
        values: floats(node, "nodes_values")?,
        true_ids: ints(node, "nodes_truenodeids")?,
        false_ids: ints(node, "nodes_falsenodeids")?,
        missing_tracks_true: ints(node, "nodes_missing_value_tracks_true")?,
        leaf_tree_ids: ints(node, &format!("{leaf}_treeids"))?,
        leaf_node_ids: ints(node, &format!("{leaf}_nodeids"))?,
        leaf_targets: ints(node, &format!("{leaf}_ids"))?,
        leaf_weights: floats(node, &format!("{leaf}_weights"))?,
        base_values: floats(node, "base_values")?,
        aggregate,
        post_transform,
        n_targets,
    })
}

fn tree_classifier(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let int_labels = node.get_attr_opt_vec::<i64>("classlabels_int64s")?;
    let string_labels = node.get_attr_opt_vec::<String>("classlabels_strings")?;
    let labels = match (int_labels, string_labels) {
        (Some(labels), None) => tensor1(&labels),
        (None, Some(labels)) => tensor1(&labels),
        _ => bail!(
            "a tree classifier needs exactly one of classlabels_int64s and classlabels_strings"
        ),
    };
    let attributes = tree_attributes(node, "class", labels.len())?;
    let ensemble = TreeEnsemble::build(attributes, true).map_err(plain)?;
    Ok((
        expand(NativeTrees {
            ensemble: Arc::new(ensemble),
            labels: Some(labels.into_arc_tensor()),
        }),
        vec![],
    ))
}

fn tree_regressor(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let n_targets: i64 = node.get_attr_opt("n_targets")?.unwrap_or(1);
    let n_targets = usize::try_from(n_targets)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| anyhow!("n_targets must be positive"))?;
    let attributes = tree_attributes(node, "target", n_targets)?;
    let ensemble = TreeEnsemble::build(attributes, false).map_err(plain)?;
    Ok((
        expand(NativeTrees {
            ensemble: Arc::new(ensemble),
            labels: None,
        }),
        vec![],
    ))
}

/// A tree ensemble: a classifier when it has class labels (outputs: labels and probabilities),
/// else a regressor (output: predictions).
#[derive(Clone)]
struct NativeTrees {
    ensemble: Arc<TreeEnsemble>,
    labels: Option<Arc<Tensor>>,
}

impl fmt::Debug for NativeTrees {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NativeTrees({} targets, {} features)",
            self.ensemble.n_targets(),
            self.ensemble.n_features()
        )
    }
}

// Two operators are the same when they share one ensemble: comparing forests value by value
// would be slow and is never needed.
impl PartialEq for NativeTrees {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.ensemble, &other.ensemble)
    }
}

impl Eq for NativeTrees {}

impl Expansion for NativeTrees {
    fn name(&self) -> StaticName {
        "NativeTrees".into()
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
        s.equals(&scores.datum_type, DatumType::F32)?;
        s.equals(&scores.rank, 2)?;
        s.equals(&scores.shape[0], &inputs[0].shape[0])?;
        s.equals(&scores.shape[1], self.ensemble.n_targets().to_dim())?;
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

impl Op for NativeTrees {
    fn name(&self) -> StaticName {
        "NativeTrees".into()
    }

    op_as_typed_op!();
}

impl EvalOp for NativeTrees {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let input = input.cast_to::<f32>()?;
        let &[rows, width] = input.shape() else {
            bail!("a tree ensemble needs a 2-D input");
        };
        ensure!(
            width >= self.ensemble.n_features(),
            "the trees use {} features and the input has {width}",
            self.ensemble.n_features()
        );
        let plain = input.try_as_plain_ram()?;
        let features = plain.as_slice::<f32>()?;
        let n_targets = self.ensemble.n_targets();
        let mut scores = vec![0f32; rows * n_targets];
        self.ensemble.score(features, width, &mut scores);
        let Some(labels) = &self.labels else {
            return Ok(tvec!(
                Tensor::from_shape(&[rows, n_targets], &scores)?.into_tvalue()
            ));
        };
        // The label of a row is its class of highest probability, the first one on a tie.
        let winners: Vec<usize> = scores
            .chunks_exact(n_targets)
            .map(|row| {
                row.iter().enumerate().fold(
                    0,
                    |best, (class, &score)| {
                        if score > row[best] { class } else { best }
                    },
                )
            })
            .collect();
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
        Ok(tvec!(
            row_labels.into_tvalue(),
            Tensor::from_shape(&[rows, n_targets], &scores)?.into_tvalue()
        ))
    }
}

impl TypedOp for NativeTrees {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let rows = inputs[0].shape[0].clone();
        if let Ok(width) = inputs[0].shape[1].to_usize() {
            ensure!(
                width >= self.ensemble.n_features(),
                "the trees use {} features and the input has {width}",
                self.ensemble.n_features()
            );
        }
        let scores = f32::fact([rows.clone(), self.ensemble.n_targets().to_dim()]);
        Ok(match &self.labels {
            Some(labels) => tvec!(TypedFact::dt_shape(labels.datum_type(), [rows]), scores),
            None => tvec!(scores),
        })
    }

    as_op!();
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
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
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
