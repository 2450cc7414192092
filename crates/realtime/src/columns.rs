//! The reference's column maps (`{"column": [values...]}`) on the way in and out of a model:
//! how columns map to the model's inputs, how values become tensors, and how output tensors
//! become columns again.

use serde_json::{Map, Value};
use tract_onnx::tract_hir::internal::*;

use crate::RealtimeError;

/// The type of the values of one column, as JSON sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// JSON numbers (`null` is a missing value for floating-point inputs).
    Number,
    /// Whole JSON numbers.
    Integer,
    /// JSON strings.
    String,
    /// JSON booleans.
    Boolean,
}

impl ColumnType {
    pub(crate) fn of(datum_type: DatumType) -> Option<Self> {
        Some(match datum_type {
            DatumType::F16 | DatumType::F32 | DatumType::F64 => ColumnType::Number,
            DatumType::I8
            | DatumType::I16
            | DatumType::I32
            | DatumType::I64
            | DatumType::U8
            | DatumType::U16
            | DatumType::U32
            | DatumType::U64
            // tract may carry int64 tensors (such as labels) as symbolic dimensions.
            | DatumType::TDim => ColumnType::Integer,
            DatumType::String => ColumnType::String,
            DatumType::Bool => ColumnType::Boolean,
            _ => return None,
        })
    }

    /// The swagger (JSON schema) type name.
    pub fn schema_type(self) -> &'static str {
        match self {
            ColumnType::Number => "number",
            ColumnType::Integer => "integer",
            ColumnType::String => "string",
            ColumnType::Boolean => "boolean",
        }
    }
}

/// How the columns of `inputData` feed the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputColumns {
    /// One column per model input, by name.
    Named(Vec<(String, ColumnType)>),
    /// The model has one 2-D input of `count` features: the columns in the order given.
    Ordered {
        /// The number of columns.
        count: usize,
        /// Their type.
        kind: ColumnType,
    },
}

/// What a realtime service takes and returns, for its swagger document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The columns of `inputData`.
    pub inputs: InputColumns,
    /// The columns of `outputData`; empty when their number depends on the request.
    pub outputs: Vec<(String, ColumnType)>,
}

/// One input of the model.
#[derive(Debug, Clone)]
pub(crate) struct ModelInput {
    pub(crate) name: String,
    pub(crate) datum_type: DatumType,
    /// 1 for `[N]`, 2 for `[N, width]`.
    pub(crate) rank: usize,
    /// The number of features of a 2-D input.
    pub(crate) width: usize,
}

/// One output of the model and the names of its columns.
#[derive(Debug, Clone)]
pub(crate) struct ModelOutput {
    pub(crate) name: String,
    pub(crate) kind: ColumnType,
    /// One name per column, or `None` when the width is only known when scoring (columns are
    /// then named `{name}_{index}`).
    pub(crate) columns: Option<Vec<String>>,
}

/// The column names of a `[N, width]` output: the output's own name when it has one column,
/// else one per class when the width matches the model's class labels, else by index.
pub(crate) fn output_column_names(
    name: &str,
    width: usize,
    class_labels: Option<&[String]>,
) -> Vec<String> {
    match class_labels {
        _ if width == 1 => vec![name.to_owned()],
        Some(labels) if labels.len() == width => labels
            .iter()
            .map(|label| format!("{name}_{label}"))
            .collect(),
        _ => (0..width).map(|index| format!("{name}_{index}")).collect(),
    }
}

/// The number of rows of a column map: every column must be an array of the same length.
pub(crate) fn row_count(data: &Map<String, Value>) -> Result<usize, RealtimeError> {
    let mut rows = None;
    for (name, column) in data {
        let Value::Array(values) = column else {
            return Err(RealtimeError::InvalidInput(format!(
                "inputData column `{name}` must be an array of values"
            )));
        };
        match rows {
            None => rows = Some(values.len()),
            Some(expected) if expected != values.len() => {
                return Err(RealtimeError::InvalidInput(format!(
                    "inputData columns have different lengths: column `{name}` has {} values, the columns before it {expected}",
                    values.len()
                )));
            }
            Some(_) => {}
        }
    }
    match rows {
        None => Err(RealtimeError::InvalidInput(
            "inputData has no columns".to_owned(),
        )),
        Some(0) => Err(RealtimeError::InvalidInput(
            "inputData has no rows".to_owned(),
        )),
        Some(rows) => Ok(rows),
    }
}

fn cell_error(column: &str, row: usize, expected: &str, value: &Value) -> RealtimeError {
    let found = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    RealtimeError::InvalidInput(format!(
        "inputData column `{column}`, row {row}: expected {expected}, found {found}"
    ))
}

/// Fills a tensor of `shape` whose cell `row * stride + offset` comes from row `row` of each
/// column, for each `(offset, column)`.
fn fill<T: Datum + Clone + Default>(
    shape: &[usize],
    columns: &[(&str, &[Value])],
    expected: &str,
    convert: impl Fn(&Value) -> Option<T>,
) -> Result<Tensor, RealtimeError> {
    let stride = columns.len();
    let rows = shape[0];
    let mut cells = vec![T::default(); rows * stride];
    for (offset, (name, values)) in columns.iter().enumerate() {
        for (row, value) in values.iter().enumerate() {
            cells[row * stride + offset] =
                convert(value).ok_or_else(|| cell_error(name, row, expected, value))?;
        }
    }
    tract_ndarray::Array::from_shape_vec(shape, cells)
        .map(IntoTensor::into_tensor)
        .map_err(|err| RealtimeError::Scoring(err.to_string()))
}

fn whole(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|n| n.fract() == 0.0)
            .map(|n| n as i64)
    })
}

/// One input tensor from its columns.
fn input_tensor(
    input: &ModelInput,
    rows: usize,
    columns: &[(&str, &[Value])],
) -> Result<Tensor, RealtimeError> {
    let shape: Vec<usize> = if input.rank == 1 {
        vec![rows]
    } else {
        vec![rows, columns.len()]
    };
    let tensor = match input.datum_type {
        DatumType::F32 => fill::<f32>(&shape, columns, "a number", |v| match v {
            Value::Null => Some(f32::NAN),
            _ => v.as_f64().map(|n| n as f32),
        })?,
        DatumType::F64 => fill::<f64>(&shape, columns, "a number", |v| match v {
            Value::Null => Some(f64::NAN),
            _ => v.as_f64(),
        })?,
        DatumType::String => fill::<String>(&shape, columns, "a string", |v| {
            v.as_str().map(str::to_owned)
        })?,
        DatumType::Bool => fill::<bool>(&shape, columns, "true or false", Value::as_bool)?,
        DatumType::I64 => fill::<i64>(&shape, columns, "a whole number", whole)?,
        other if other.is_integer() => fill::<i64>(&shape, columns, "a whole number", whole)?
            .cast_to_dt(other)
            .map_err(|err| RealtimeError::InvalidInput(format!("inputData: {err}")))?
            .into_owned(),
        other => {
            return Err(RealtimeError::Scoring(format!(
                "inputs of type {other:?} cannot be fed from columns"
            )));
        }
    };
    Ok(tensor)
}

/// The model's input tensors from `inputData`: by name when every input has a column of its
/// name, else, for a model with one 2-D input, the columns in the order given.
pub(crate) fn input_tensors(
    inputs: &[ModelInput],
    data: &Map<String, Value>,
) -> Result<TVec<TValue>, RealtimeError> {
    let rows = row_count(data)?;
    let column = |name: &str| data.get(name).and_then(Value::as_array).map(Vec::as_slice);
    let by_name = inputs.iter().all(|input| data.contains_key(&input.name))
        && (inputs.len() > 1 || inputs[0].rank == 1 || inputs[0].width == 1);
    if by_name {
        if let Some(unknown) = data
            .keys()
            .find(|key| !inputs.iter().any(|input| &input.name == *key))
        {
            return Err(RealtimeError::InvalidInput(format!(
                "inputData column `{unknown}` is not an input of the model, whose inputs are {}",
                names(inputs)
            )));
        }
        return inputs
            .iter()
            .map(|input| {
                let values = column(&input.name).unwrap_or_default();
                input_tensor(input, rows, &[(&input.name, values)]).map(IntoTValue::into_tvalue)
            })
            .collect();
    }
    match inputs {
        [input] if input.rank == 2 => {
            if data.len() != input.width {
                return Err(RealtimeError::InvalidInput(format!(
                    "inputData has {} columns and the model takes {} (given in the order of its features)",
                    data.len(),
                    input.width
                )));
            }
            let columns: Vec<(&str, &[Value])> = data
                .iter()
                .map(|(name, values)| {
                    (
                        name.as_str(),
                        values.as_array().map(Vec::as_slice).unwrap_or_default(),
                    )
                })
                .collect();
            Ok(tvec!(input_tensor(input, rows, &columns)?.into_tvalue()))
        }
        _ => {
            let missing: Vec<&str> = inputs
                .iter()
                .filter(|input| !data.contains_key(&input.name))
                .map(|input| input.name.as_str())
                .collect();
            Err(RealtimeError::InvalidInput(format!(
                "inputData lacks the column(s) {}; the model's inputs are {}",
                missing
                    .iter()
                    .map(|name| format!("`{name}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                names(inputs)
            )))
        }
    }
}

fn names(inputs: &[ModelInput]) -> String {
    inputs
        .iter()
        .map(|input| format!("`{}`", input.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// JSON values of every cell of a tensor, row-major.
fn cells(tensor: &Tensor) -> Result<Vec<Value>, RealtimeError> {
    let fail = |err: TractError| RealtimeError::Scoring(format!("{err:#}"));
    let plain = tensor.try_as_plain_ram().map_err(fail)?;
    Ok(match tensor.datum_type() {
        DatumType::F32 => plain
            .as_slice::<f32>()
            .map_err(fail)?
            .iter()
            .map(|&v| Value::from(f64::from(v)))
            .collect(),
        DatumType::F64 => plain
            .as_slice::<f64>()
            .map_err(fail)?
            .iter()
            .map(|&v| Value::from(v))
            .collect(),
        DatumType::I64 => plain
            .as_slice::<i64>()
            .map_err(fail)?
            .iter()
            .map(|&v| Value::from(v))
            .collect(),
        DatumType::String => plain
            .as_slice::<String>()
            .map_err(fail)?
            .iter()
            .map(|v| Value::from(v.as_str()))
            .collect(),
        DatumType::Bool => plain
            .as_slice::<bool>()
            .map_err(fail)?
            .iter()
            .map(|&v| Value::from(v))
            .collect(),
        other if other.is_integer() || other == DatumType::TDim => {
            let wide = tensor.cast_to::<i64>().map_err(fail)?;
            return cells(&wide);
        }
        other if other.is_float() => {
            let wide = tensor.cast_to::<f64>().map_err(fail)?;
            return cells(&wide);
        }
        other => {
            return Err(RealtimeError::Scoring(format!(
                "outputs of type {other:?} cannot be returned as columns"
            )));
        }
    })
}

/// `outputData`: the columns of every output, in the model's order.
pub(crate) fn output_columns(
    outputs: &[ModelOutput],
    tensors: &[TValue],
    rows: usize,
) -> Result<Map<String, Value>, RealtimeError> {
    let mut data = Map::new();
    for (output, tensor) in outputs.iter().zip(tensors) {
        let shape = tensor.shape();
        let width = match shape {
            [n] if *n == rows => 1,
            [n, width] if *n == rows => *width,
            _ => {
                return Err(RealtimeError::Scoring(format!(
                    "output `{}` has shape {shape:?} for {rows} rows",
                    output.name
                )));
            }
        };
        let names = match &output.columns {
            Some(names) if names.len() == width => names.clone(),
            _ => output_column_names(&output.name, width, None),
        };
        let mut columns: Vec<Vec<Value>> = (0..width).map(|_| Vec::with_capacity(rows)).collect();
        for (index, value) in cells(tensor)?.into_iter().enumerate() {
            columns[index % width].push(value);
        }
        for (name, values) in names.into_iter().zip(columns) {
            data.insert(name, Value::Array(values));
        }
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_arrive_exactly_as_written() {
        // A value exactly on a model's threshold must stay on it: JSON numbers are parsed to
        // the nearest double (serde_json's `float_roundtrip`), not approximately.
        let column: Vec<Value> = serde_json::from_str("[-0.043275771306016404, 0.1]").unwrap();
        let input = ModelInput {
            name: "x".to_owned(),
            datum_type: DatumType::F64,
            rank: 2,
            width: 1,
        };
        let tensor = input_tensor(&input, 2, &[("x", &column)]).unwrap();
        let plain = tensor.try_as_plain_ram().unwrap();
        assert_eq!(
            plain.as_slice::<f64>().unwrap(),
            [-0.043_275_771_306_016_404, 0.1]
        );
    }
}
