//! The languages code runs in.

use std::fmt;
use std::str::FromStr;

/// The runtime of a session, snapshot or service. The reference defaults to R when a request
/// omits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum RuntimeType {
    /// R, run by `Rscript` workers.
    #[default]
    R,
    /// Python, run by the managed Python environment's workers.
    Python,
}

impl RuntimeType {
    /// The spelling of the reference API (`R`, `Python`).
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeType::R => "R",
            RuntimeType::Python => "Python",
        }
    }
}

impl fmt::Display for RuntimeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not a runtime type.
#[derive(Debug, thiserror::Error)]
#[error("unknown runtimeType `{0}`: expected R or Python")]
pub struct ParseRuntimeTypeError(String);

impl FromStr for RuntimeType {
    type Err = ParseRuntimeTypeError;

    /// Matched case-insensitively, as ASP.NET Core's enum binding in the reference does.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "r" => Ok(RuntimeType::R),
            "python" => Ok(RuntimeType::Python),
            _ => Err(ParseRuntimeTypeError(text.to_owned())),
        }
    }
}

/// What runs a web service: an interpreter, or o16n's native scoring engine for realtime
/// services (which take a model instead of code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceRuntime {
    /// Code run by R or Python workers.
    Interpreted(RuntimeType),
    /// A model scored natively, without an interpreter.
    Realtime,
}

impl ServiceRuntime {
    /// The spelling of the reference API (`R`, `Python`, `Realtime`).
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceRuntime::Interpreted(runtime) => runtime.as_str(),
            ServiceRuntime::Realtime => "Realtime",
        }
    }
}

impl From<RuntimeType> for ServiceRuntime {
    fn from(runtime: RuntimeType) -> Self {
        ServiceRuntime::Interpreted(runtime)
    }
}

impl fmt::Display for ServiceRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServiceRuntime {
    type Err = ParseRuntimeTypeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("realtime") {
            return Ok(ServiceRuntime::Realtime);
        }
        text.parse().map(ServiceRuntime::Interpreted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_runtimes_read_back_as_written() {
        for runtime in [
            ServiceRuntime::Interpreted(RuntimeType::R),
            ServiceRuntime::Interpreted(RuntimeType::Python),
            ServiceRuntime::Realtime,
        ] {
            assert_eq!(runtime.as_str().parse::<ServiceRuntime>().unwrap(), runtime);
        }
        assert!("realtime".parse::<RuntimeType>().is_err());
    }
}
