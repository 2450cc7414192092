//! Loading an ONNX model into an optimized, shareable plan, and scoring it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tract_onnx::pb::{ModelProto, NodeProto};
use tract_onnx::tract_hir::internal::*;

use crate::columns::{
    ColumnType, InputColumns, ModelInput, ModelOutput, Signature, input_tensors,
    output_column_names, output_columns, row_count,
};
use crate::{RealtimeError, bounds};

/// The first bytes of a model serialized by the reference's `rxSerializeModel`.
const REFERENCE_BLOB_MAGIC: &[u8] = b"blob";

/// The operators that name a classifier's labels, with the attributes holding them.
const CLASSIFIERS: &[(&str, &[&str])] = &[
    (
        "LinearClassifier",
        &["classlabels_ints", "classlabels_strings"],
    ),
    (
        "TreeEnsembleClassifier",
        &["classlabels_int64s", "classlabels_strings"],
    ),
    (
        "SVMClassifier",
        &["classlabels_ints", "classlabels_strings"],
    ),
    ("ZipMap", &["classlabels_int64s", "classlabels_strings"]),
];

/// A loaded model, ready to score from any thread.
#[derive(Debug, Clone)]
pub struct RealtimeModel {
    plan: Arc<TypedSimplePlan>,
    inputs: Vec<ModelInput>,
    outputs: Vec<ModelOutput>,
    /// The time one row takes to score, measured at load; `None` when the probe failed.
    row_cost: Option<Duration>,
    /// The values all the model's tensors hold per row, which bounds a request's rows.
    cells_per_row: u64,
}

/// The rows of the load-time probe that measures a model's cost per row, at most.
const PROBE_ROWS: usize = 64;
/// The most values the model's tensors may hold for the probe: a wide model is probed with
/// fewer rows, and one too wide for a single row is not probed (its cost stays unknown).
const PROBE_CELLS: u64 = 1 << 18;

fn engine() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    crate::ops::register(&mut onnx.op_register);
    onnx
}

impl RealtimeModel {
    /// Reads, checks and optimizes an ONNX model.
    pub fn load(bytes: &[u8]) -> Result<Self, RealtimeError> {
        if bytes.starts_with(REFERENCE_BLOB_MAGIC) {
            return Err(RealtimeError::NotOnnx(
                "models in the reference's `blob` format (from rxSerializeModel or rx_serialize_model) are not supported; \
                 publish an ONNX model instead (for example one exported with skl2onnx)"
                    .to_owned(),
            ));
        }
        let onnx = engine();
        let mut proto = onnx.proto_model_for_read(&mut &bytes[..]).map_err(|err| {
            RealtimeError::NotOnnx(format!("the model is not an ONNX model: {err:#}"))
        })?;
        let graph_is_empty = proto
            .graph
            .as_ref()
            .is_none_or(|graph| graph.node.is_empty() || graph.output.is_empty());
        if proto.ir_version == 0 || graph_is_empty {
            return Err(RealtimeError::NotOnnx(
                "the model is not an ONNX model: it has no version or no graph".to_owned(),
            ));
        }
        check_operators(&onnx, &proto)?;
        bounds::check_shape_constants(&proto)?;
        let class_labels = class_labels(&proto);
        // Columns are named after the outputs as the model declares them, before `ZipMap`s go.
        let output_names: Vec<String> = proto
            .graph
            .iter()
            .flat_map(|graph| &graph.output)
            .map(|output| output.name.clone())
            .collect();
        strip_zipmap(&mut proto)?;
        let graph = proto.graph.as_ref().expect("checked above");

        let mut model = onnx.model_for_proto_model(&proto).map_err(invalid)?;
        batch_inputs(&mut model)?;
        let model = model.into_optimized().map_err(invalid)?;
        let cells_per_row = bounds::cells_per_row(&model, &model.symbols.sym("N"))?;

        let inputs = model_inputs(&model, graph)?;
        let outputs = model_outputs(&model, &output_names, class_labels.as_deref())?;
        let plan = model.into_runnable().map_err(invalid)?;
        let mut model = RealtimeModel {
            plan,
            inputs,
            outputs,
            row_cost: None,
            cells_per_row,
        };
        model.row_cost = model.measure_row_cost();
        Ok(model)
    }

    /// Scores a probe of zeros (or empty strings, or `false`) a few times and keeps the
    /// fastest time per row. A model that fails on the probe has no known cost.
    fn measure_row_cost(&self) -> Option<Duration> {
        let probe_rows = usize::try_from(PROBE_CELLS / self.cells_per_row.max(1))
            .unwrap_or(PROBE_ROWS)
            .min(PROBE_ROWS);
        if probe_rows == 0 {
            return None;
        }
        let probe: Map<String, Value> = self
            .inputs
            .iter()
            .flat_map(|input| {
                let value = match ColumnType::of(input.datum_type) {
                    Some(ColumnType::String) => Value::from(""),
                    Some(ColumnType::Boolean) => Value::from(false),
                    _ => Value::from(0),
                };
                let column = Value::Array(vec![value; probe_rows]);
                let names: Vec<String> = if input.rank == 2 && input.width > 1 {
                    (0..input.width)
                        .map(|j| format!("{}_{j}", input.name))
                        .collect()
                } else {
                    vec![input.name.clone()]
                };
                names.into_iter().map(move |name| (name, column.clone()))
            })
            .collect();
        (0..3)
            .map(|_| {
                let started = Instant::now();
                self.score(&probe).ok().map(|_| started.elapsed())
            })
            .min()
            .flatten()
            .map(|fastest| fastest / probe_rows as u32)
    }

    /// About how long scoring `input_data` takes, from the load-time probe; `None` when the
    /// model's cost is unknown.
    pub fn estimated_cost(&self, input_data: &Map<String, Value>) -> Option<Duration> {
        let rows = input_data
            .values()
            .next()
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        self.row_cost.map(|per_row| per_row * rows.max(1) as u32)
    }

    /// Scores every row of `inputData` in one run of the model and returns `outputData`.
    pub fn score(
        &self,
        input_data: &Map<String, Value>,
    ) -> Result<Map<String, Value>, RealtimeError> {
        bounds::check_request(row_count(input_data)?, self.cells_per_row)?;
        let tensors = input_tensors(&self.inputs, input_data)?;
        let rows = tensors[0].shape()[0];
        let outputs = self.plan.run(tensors).map_err(|err| {
            // A value the model was not made for is the request's fault, not the server's.
            match err
                .chain()
                .find_map(|cause| cause.downcast_ref::<crate::ops::InputRejected>())
            {
                Some(rejected) => RealtimeError::InvalidInput(rejected.to_string()),
                None => RealtimeError::Scoring(format!("{err:#}")),
            }
        })?;
        output_columns(&self.outputs, &outputs, rows)
    }

    /// What the model takes and returns, as columns.
    pub fn signature(&self) -> Signature {
        let inputs = match &self.inputs[..] {
            [input] if input.rank == 2 && input.width != 1 => InputColumns::Ordered {
                count: input.width,
                kind: ColumnType::of(input.datum_type).unwrap_or(ColumnType::Number),
            },
            inputs => InputColumns::Named(
                inputs
                    .iter()
                    .map(|input| {
                        (
                            input.name.clone(),
                            ColumnType::of(input.datum_type).unwrap_or(ColumnType::Number),
                        )
                    })
                    .collect(),
            ),
        };
        let outputs = self
            .outputs
            .iter()
            .flat_map(|output| {
                output
                    .columns
                    .iter()
                    .flatten()
                    .map(|column| (column.clone(), output.kind))
            })
            .collect();
        Signature { inputs, outputs }
    }
}

/// Gives every input a fixed element type and shape, with the unknown first dimension as the
/// number of rows `N`, so that one plan scores any number of rows.
fn batch_inputs(model: &mut InferenceModel) -> Result<(), RealtimeError> {
    let rows = model.symbols.sym("N");
    for index in 0..model.inputs.len() {
        let fact = model.input_fact(index).map_err(invalid)?.clone();
        let datum_type = fact.datum_type.concretize().ok_or_else(|| {
            RealtimeError::InvalidModel(format!("input {index} has no element type"))
        })?;
        let dims = fact
            .shape
            .dims()
            .enumerate()
            .map(|(axis, dim)| match dim.concretize() {
                Some(dim) => Ok(dim),
                None if axis == 0 => Ok(TDim::from(rows.clone())),
                None => Err(RealtimeError::UnsupportedModel(format!(
                    "input {index} has an unknown dimension {axis}"
                ))),
            });
        let dims: Vec<TDim> = dims.collect::<Result<_, _>>()?;
        if fact.shape.is_open() {
            return Err(RealtimeError::UnsupportedModel(format!(
                "input {index} has no known rank"
            )));
        }
        model
            .set_input_fact(index, InferenceFact::dt_shape(datum_type, dims))
            .map_err(invalid)?;
    }
    Ok(())
}

fn invalid(err: TractError) -> RealtimeError {
    RealtimeError::InvalidModel(format!("{err:#}"))
}

/// Refuses a model that uses operators the engine does not know, naming all of them.
fn check_operators(onnx: &tract_onnx::Onnx, proto: &ModelProto) -> Result<(), RealtimeError> {
    let graph = proto.graph.as_ref().expect("checked by the caller");
    let unknown: BTreeSet<String> = graph
        .node
        .iter()
        .filter(|node| node.op_type != "ZipMap" && !onnx.op_register.0.contains_key(&node.op_type))
        .map(|node| match node.domain.as_str() {
            "" | "ai.onnx" => format!("`{}`", node.op_type),
            domain => format!("`{}` ({domain})", node.op_type),
        })
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(RealtimeError::UnsupportedModel(format!(
        "the model uses operators that o16n cannot run: {}",
        unknown.into_iter().collect::<Vec<_>>().join(", ")
    )))
}

fn labels_of(node: &NodeProto, attributes: &[&str]) -> Option<Vec<String>> {
    node.attribute
        .iter()
        .find(|attribute| attributes.contains(&attribute.name.as_str()))
        .map(|attribute| {
            if attribute.ints.is_empty() {
                attribute
                    .strings
                    .iter()
                    .map(|label| String::from_utf8_lossy(label).into_owned())
                    .collect()
            } else {
                attribute.ints.iter().map(i64::to_string).collect()
            }
        })
}

/// The class labels of the model's classifier, when it has exactly one list of them.
fn class_labels(proto: &ModelProto) -> Option<Vec<String>> {
    let graph = proto.graph.as_ref()?;
    let mut found: Vec<Vec<String>> = graph
        .node
        .iter()
        .filter_map(|node| {
            let (_, attributes) = CLASSIFIERS
                .iter()
                .find(|(op_type, _)| *op_type == node.op_type)?;
            labels_of(node, attributes)
        })
        .collect();
    found.dedup();
    match <[Vec<String>; 1]>::try_from(found) {
        Ok([labels]) => Some(labels),
        Err(_) => None,
    }
}

/// skl2onnx ends classifiers with `ZipMap` by default, turning probabilities into a list of
/// maps, a type that is not a tensor. A `ZipMap` that produces a graph output is removed and
/// the output renamed to its input (the probabilities tensor); the class labels it carried name
/// the columns instead.
fn strip_zipmap(proto: &mut ModelProto) -> Result<(), RealtimeError> {
    let graph = proto.graph.as_mut().expect("checked by the caller");
    let zipmaps: Vec<NodeProto> = graph
        .node
        .iter()
        .filter(|node| node.op_type == "ZipMap")
        .cloned()
        .collect();
    for zipmap in zipmaps {
        let (Some(input), Some(output)) = (zipmap.input.first(), zipmap.output.first()) else {
            return Err(RealtimeError::InvalidModel(
                "a ZipMap has no input or output".to_owned(),
            ));
        };
        let Some(graph_output) = graph.output.iter_mut().find(|value| &value.name == output) else {
            return Err(RealtimeError::UnsupportedModel(
                "the model uses `ZipMap` inside its graph, which o16n cannot run".to_owned(),
            ));
        };
        graph_output.name = input.clone();
        graph_output.r#type = None;
        graph.node.retain(|node| node != &zipmap);
    }
    Ok(())
}

fn model_inputs(
    model: &TypedModel,
    graph: &tract_onnx::pb::GraphProto,
) -> Result<Vec<ModelInput>, RealtimeError> {
    let initializers: BTreeSet<&str> = graph
        .initializer
        .iter()
        .map(|tensor| tensor.name.as_str())
        .collect();
    let names: Vec<&str> = graph
        .input
        .iter()
        .map(|input| input.name.as_str())
        .filter(|name| !initializers.contains(name))
        .collect();
    if names.len() != model.inputs.len() || names.is_empty() {
        return Err(RealtimeError::UnsupportedModel(format!(
            "the model has {} inputs after loading and {} in its graph",
            model.inputs.len(),
            names.len()
        )));
    }
    names
        .into_iter()
        .enumerate()
        .map(|(index, name)| {
            let fact = model.input_fact(index).map_err(invalid)?;
            let unsupported = |why: &str| {
                RealtimeError::UnsupportedModel(format!(
                    "input `{name}` ({:?}) cannot be fed from columns: {why}",
                    fact
                ))
            };
            if ColumnType::of(fact.datum_type).is_none() {
                return Err(unsupported(
                    "its element type is not a number, string or boolean",
                ));
            }
            let width = match fact.rank() {
                1 => 1,
                2 => fact.shape[1]
                    .to_usize()
                    .ok()
                    .filter(|&width| width <= bounds::MAX_DIMENSION)
                    .ok_or_else(|| {
                        unsupported("its number of features is not fixed, or is over 1048576")
                    })?,
                _ => return Err(unsupported("it must have one or two dimensions")),
            };
            Ok(ModelInput {
                name: name.to_owned(),
                datum_type: fact.datum_type,
                rank: fact.rank(),
                width,
            })
        })
        .collect()
}

fn model_outputs(
    model: &TypedModel,
    names: &[String],
    class_labels: Option<&[String]>,
) -> Result<Vec<ModelOutput>, RealtimeError> {
    if names.len() != model.outputs.len() {
        return Err(RealtimeError::InvalidModel(format!(
            "the model has {} outputs after loading and {} in its graph",
            model.outputs.len(),
            names.len()
        )));
    }
    names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let fact = model.output_fact(index).map_err(invalid)?;
            let kind = ColumnType::of(fact.datum_type).ok_or_else(|| {
                RealtimeError::UnsupportedModel(format!(
                    "output `{name}` has elements of type {:?}, which cannot be returned as columns",
                    fact.datum_type
                ))
            })?;
            let columns = match fact.rank() {
                1 => Some(vec![name.clone()]),
                2 => match fact.shape[1].to_usize() {
                    Ok(width) if width > bounds::MAX_DIMENSION => {
                        return Err(RealtimeError::UnsupportedModel(format!(
                            "output `{name}` has {width} columns, more than the {} allowed",
                            bounds::MAX_DIMENSION
                        )));
                    }
                    Ok(width) => Some(output_column_names(name, width, class_labels)),
                    Err(_) => None,
                },
                rank => {
                    return Err(RealtimeError::UnsupportedModel(format!(
                        "output `{name}` has {rank} dimensions; realtime outputs must have one row per input row and at most one more dimension"
                    )));
                }
            };
            Ok(ModelOutput {
                name: name.clone(),
                kind,
                columns,
            })
        })
        .collect()
}
