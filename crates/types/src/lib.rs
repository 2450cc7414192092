//! The domain vocabulary shared by every o16n crate: validated names, roles and the table of
//! client-visible error codes.
//!
//! Nothing here does I/O and nothing here knows about HTTP, SQL or processes. Types are "parse,
//! don't validate": a [`Username`] or [`Role`] that exists has already been checked, so the
//! crates above never re-validate them.

mod code;
mod names;
mod role;
mod runtime_type;
mod service;
mod username;

pub use code::{Code, ErrorCode, error_chain};
pub use names::{FileName, InvalidName, ObjectName};
pub use role::{ParseRoleError, Role};
pub use runtime_type::{ParseRuntimeTypeError, RuntimeType, ServiceRuntime};
pub use service::{
    InvalidServiceIdentifier, ParameterDefinition, ParameterType, ParseParameterTypeError,
    ServiceName, ServiceVersion,
};
pub use username::{InvalidUsername, Username};
