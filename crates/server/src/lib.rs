//! The `o16n` server binary as a library: configuration, the command line, telemetry and the
//! assembly of the one-box server ([`startup::Application`]).
//!
//! This is the only crate that reads the environment, files of configuration and the command
//! line; everything below it receives its settings as typed config structs.

pub mod capacity;
mod capacity_report;
pub mod cli;
pub mod config;
pub mod diagnostic;
pub mod remote;
pub mod startup;
pub mod telemetry;
