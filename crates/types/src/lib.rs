//! The domain vocabulary shared by every o16n crate: validated names, roles, the entities the
//! server keeps (services, contents, batch states), the table of client-visible error codes,
//! and the clock that expiries are measured by.
//!
//! Nothing here does I/O and nothing here knows about HTTP, SQL or processes. Types are "parse,
//! don't validate": a [`Username`] or [`Role`] that exists has already been checked, so the
//! crates above never re-validate them.

mod clock;
mod code;
mod entities;
mod names;
mod role;
mod runtime_type;
mod service;
mod username;

pub use clock::Clock;
pub use code::{Code, ErrorCode, error_chain};
pub use entities::{BatchState, Content, ParseBatchStateError, Service};
pub use names::{FileName, InvalidName, ObjectName};
pub use role::{ParseRoleError, Role};
pub use runtime_type::{ParseRuntimeTypeError, RuntimeType, ServiceRuntime};
pub use service::{
    DedicatedPoolSize, InvalidPoolSize, InvalidServiceIdentifier, ParameterDefinition,
    ParameterType, ParseParameterTypeError, ServiceName, ServiceVersion,
};
pub use username::{InvalidUsername, Username};
