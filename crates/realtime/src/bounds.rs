//! The limits that keep a hostile model from making the server allocate what it asks for.
//!
//! A model is a few bytes that can name huge sizes: `n_targets = 2^40`, an input dimension of a
//! billion, an `Expand` or `ConstantOfShape` to a shape of trillions. Rust aborts the whole
//! process when an allocation fails, so every size taken from a model is checked against a
//! fixed maximum before anything is allocated for it, and refused at publish with the operator
//! named: [`dimension`] for sizes read from attributes, [`check_shape_constants`] for the shapes
//! that operators take from constant tensors (folded while the model is optimized), and
//! [`cells_per_row`] for the widths of every tensor of the optimized model. A request's rows
//! times the model's cells per row must then fit [`MAX_REQUEST_CELLS`], or it is a 400.

use std::collections::HashMap;

use tract_onnx::pb::{ModelProto, TensorProto};
use tract_onnx::tract_hir::internal::*;

use crate::RealtimeError;

/// The largest size taken from a model: a count of targets, classes or columns, or one
/// dimension of a tensor.
pub(crate) const MAX_DIMENSION: usize = 1 << 20;
/// The most cells one tensor a model builds from constants may have, and the most cells all of
/// a model's tensors may have per row.
pub(crate) const MAX_CELLS: u64 = 1 << 26;
/// The most cells all of a model's tensors may have for one request (rows times cells per row):
/// 2^28 cells of at most 8 bytes is 2 GiB at the very worst.
pub(crate) const MAX_REQUEST_CELLS: u64 = 1 << 28;

/// Checks a size read from a model's attribute.
pub(crate) fn dimension(operator: &str, what: &str, value: i64) -> TractResult<usize> {
    usize::try_from(value)
        .ok()
        .filter(|&value| value > 0 && value <= MAX_DIMENSION)
        .ok_or_else(|| {
            anyhow!("`{operator}` has {what} {value}; it must be between 1 and {MAX_DIMENSION}")
        })
}

/// The operators whose output shape is one of their inputs (by position), or is a product with
/// it, and so comes from the model's constants.
const SHAPE_INPUTS: &[(&str, usize)] = &[
    ("ConstantOfShape", 0),
    ("Expand", 1),
    ("Tile", 1),
    ("Reshape", 1),
    ("Resize", 3),
    ("Upsample", 1),
    ("OneHot", 1),
    ("Range", 1),
];

/// Refuses a model whose constant shapes, repeats or sizes make a tensor of more than
/// [`MAX_CELLS`] cells.
pub(crate) fn check_shape_constants(proto: &ModelProto) -> Result<(), RealtimeError> {
    let Some(graph) = proto.graph.as_ref() else {
        return Ok(());
    };
    // The constants by name, found once: a model may have many nodes and many constants.
    let constants: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|tensor| (tensor.name.as_str(), tensor))
        .chain(
            graph
                .node
                .iter()
                .filter(|node| node.op_type == "Constant")
                .filter_map(|node| {
                    let tensor = node
                        .attribute
                        .iter()
                        .find_map(|attribute| attribute.t.as_ref())?;
                    Some((node.output.first()?.as_str(), tensor))
                }),
        )
        .collect();
    for node in &graph.node {
        let Some(&(_, position)) = SHAPE_INPUTS.iter().find(|(op, _)| *op == node.op_type) else {
            continue;
        };
        let Some(tensor) = node
            .input
            .get(position)
            .and_then(|name| constants.get(name.as_str()))
        else {
            continue;
        };
        let cells = integer_values(tensor).and_then(|values| {
            values.iter().try_fold(1_u64, |product, &value| {
                // `Reshape` keeps a dimension with 0 and infers one with -1: those add nothing.
                let value = u64::try_from(value).unwrap_or(1).max(1);
                product
                    .checked_mul(value)
                    .filter(|&cells| cells <= MAX_CELLS)
            })
        });
        if cells.is_none() {
            return Err(RealtimeError::UnsupportedModel(format!(
                "`{}` (node `{}`) asks for a tensor of more than {MAX_CELLS} cells from its \
                 constant input; o16n refuses such models",
                node.op_type, node.name
            )));
        }
    }
    Ok(())
}

/// The integer values of a constant tensor, from whichever field holds them; `None` for more
/// than a shape can have (64), which is refused like too many cells.
fn integer_values(tensor: &TensorProto) -> Option<Vec<i64>> {
    const MOST: usize = 64;
    let values: Vec<i64> = if !tensor.int64_data.is_empty() {
        tensor.int64_data.iter().copied().take(MOST + 1).collect()
    } else if !tensor.int32_data.is_empty() {
        tensor
            .int32_data
            .iter()
            .map(|&v| i64::from(v))
            .take(MOST + 1)
            .collect()
    } else if !tensor.float_data.is_empty() {
        tensor
            .float_data
            .iter()
            .map(|&v| v as i64)
            .take(MOST + 1)
            .collect()
    } else {
        raw_integer_values(tensor, MOST + 1)
    };
    (values.len() <= MOST).then_some(values)
}

/// The first `most` values of a constant held as raw little-endian bytes.
fn raw_integer_values(tensor: &TensorProto, most: usize) -> Vec<i64> {
    match tensor.data_type {
        // INT64 and INT32 in raw little-endian bytes.
        7 => tensor
            .raw_data
            .chunks_exact(8)
            .take(most)
            .map(|bytes| i64::from_le_bytes(bytes.try_into().expect("eight bytes")))
            .collect(),
        6 => tensor
            .raw_data
            .chunks_exact(4)
            .take(most)
            .map(|bytes| i64::from(i32::from_le_bytes(bytes.try_into().expect("four bytes"))))
            .collect(),
        // FLOAT (Resize's and Upsample's scales).
        1 => tensor
            .raw_data
            .chunks_exact(4)
            .take(most)
            .map(|bytes| f32::from_le_bytes(bytes.try_into().expect("four bytes")) as i64)
            .collect(),
        _ => Vec::new(),
    }
}

/// The cells of all the optimized model's tensors for one row (the row count `rows` taken as
/// one), refused above [`MAX_CELLS`]; a dimension that cannot be computed counts as the
/// largest allowed.
pub(crate) fn cells_per_row(model: &TypedModel, rows: &Symbol) -> Result<u64, RealtimeError> {
    let one_row = SymbolValues::default().with(rows, 1);
    let mut total = 0_u64;
    for node in model.nodes() {
        for output in &node.outputs {
            let cells = output.fact.shape.iter().try_fold(1_u64, |product, dim| {
                let size = dim
                    .eval(&one_row)
                    .to_i64()
                    .ok()
                    .and_then(|size| u64::try_from(size).ok())
                    .unwrap_or(MAX_DIMENSION as u64);
                product.checked_mul(size.max(1))
            });
            total = cells
                .and_then(|cells| total.checked_add(cells))
                .filter(|&total| total <= MAX_CELLS)
                .ok_or_else(|| {
                    RealtimeError::UnsupportedModel(format!(
                        "`{}` (node `{}`) makes the model's tensors hold more than {MAX_CELLS} \
                         values per row; o16n refuses such models",
                        node.op.name(),
                        node.name
                    ))
                })?;
        }
    }
    Ok(total)
}

/// Refuses a request whose rows make the model's tensors hold more than
/// [`MAX_REQUEST_CELLS`] values.
pub(crate) fn check_request(rows: usize, cells_per_row: u64) -> Result<(), RealtimeError> {
    let cells = (rows as u64).checked_mul(cells_per_row.max(1));
    if cells.is_some_and(|cells| cells <= MAX_REQUEST_CELLS) {
        return Ok(());
    }
    let most = MAX_REQUEST_CELLS / cells_per_row.max(1);
    Err(RealtimeError::InvalidInput(format!(
        "{rows} rows are too many for this model, which holds {cells_per_row} values per row; \
         send at most {most} rows per request"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_from_attributes_are_bounded() {
        assert_eq!(dimension("X", "n_targets", 3).unwrap(), 3);
        for hostile in [0, -1, 1 << 40, i64::MAX] {
            let message = dimension("TreeEnsembleRegressor", "n_targets", hostile)
                .unwrap_err()
                .to_string();
            assert!(
                message.contains("`TreeEnsembleRegressor` has n_targets"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_shape_with_more_entries_than_any_rank_is_refused() {
        let shape = |values: Vec<i64>| TensorProto {
            data_type: 7,
            int64_data: values,
            ..TensorProto::default()
        };
        assert_eq!(integer_values(&shape(vec![2, 3])), Some(vec![2, 3]));
        assert_eq!(integer_values(&shape(vec![1; 65])), None);
    }

    #[test]
    fn a_request_s_rows_are_bounded_by_the_model_s_width() {
        assert!(check_request(1_000_000, 20).is_ok());
        let refused = check_request(16_384, 1 << 20).unwrap_err().to_string();
        assert!(refused.contains("send at most 256 rows"), "{refused}");
        assert!(check_request(usize::MAX, u64::MAX).is_err());
    }
}
