//! Native scoring of ONNX models for realtime web services: no interpreter at consumption time.
//!
//! [`RealtimeModel::load`] reads an ONNX model once, refuses what the engine cannot run (not
//! ONNX, the reference's `blob` format, unknown operators) and prepares an optimized plan;
//! [`RealtimeModel::score`] turns the reference's `inputData` column map into the model's input
//! tensors, runs the plan for all rows at once and returns `outputData` as a column map.
//!
//! The engine is tract (pure Rust) with operators of our own where tract has none or is slow:
//! the tree ensembles (`tree.rs`), the linear models and `Normalizer` (`linear.rs`), the
//! support vector machines (`svm.rs`), and `Scaler` and the preprocessing operators (`ops.rs`).
//! Scoring is
//! synchronous and CPU-bound; callers on an async runtime run it on a blocking thread.
//! Reading order: `model.rs`, `columns.rs`, `ops.rs`, `tree.rs`, `linear.rs`, `svm.rs`.

mod bounds;
mod columns;
mod error;
mod linear;
mod model;
mod ops;
mod svm;
mod tree;

pub use columns::{ColumnType, InputColumns, Signature};
pub use error::RealtimeError;
pub use model::RealtimeModel;
