//! Web service vocabulary: names, versions and the typed parameters of a service.

use std::fmt;
use std::str::FromStr;

/// Why a service name or version is refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid service {kind} `{text}`: {reason}")]
pub struct InvalidServiceIdentifier {
    kind: &'static str,
    text: String,
    reason: &'static str,
}

fn check_identifier(kind: &'static str, text: &str) -> Result<(), InvalidServiceIdentifier> {
    let refuse = |reason| {
        Err(InvalidServiceIdentifier {
            kind,
            text: text.chars().take(80).collect(),
            reason,
        })
    };
    if text.is_empty() || text.len() > 64 {
        return refuse("it must have 1 to 64 characters");
    }
    if !text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return refuse("only letters, digits, `_`, `-` and `.` are allowed");
    }
    if !text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return refuse("it must start with a letter or a digit");
    }
    Ok(())
}

/// A web service's name: 1 to 64 of letters, digits, `_`, `-`, `.`, starting with a letter or
/// digit. Names appear in URLs (`/api/{name}/{version}`) and in generated client code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(String);

impl ServiceName {
    /// Checks `text` and wraps it.
    pub fn parse(text: &str) -> Result<Self, InvalidServiceIdentifier> {
        check_identifier("name", text).map(|()| ServiceName(text.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A web service's version, chosen by the publisher (`1.0`, `v1.0.0-alpha`) or a GUID: the
/// same characters as a [`ServiceName`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceVersion(String);

impl ServiceVersion {
    /// Checks `text` and wraps it.
    pub fn parse(text: &str) -> Result<Self, InvalidServiceIdentifier> {
        check_identifier("version", text).map(|()| ServiceVersion(text.to_owned()))
    }

    /// The version as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The reference's parameter types (`ParameterDefinition.type`).
/// The size of a service's dedicated pool (9.3): workers with the service loaded, kept warm
/// on every compute node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedicatedPoolSize {
    initial: u32,
    max: u32,
}

/// Why a dedicated pool size is refused.
#[derive(Debug, thiserror::Error)]
pub enum InvalidPoolSize {
    /// The initial size is larger than the maximum.
    #[error("InitialPoolSize ({initial}) must not be larger than MaxPoolSize ({max})")]
    InitialAboveMax {
        /// The initial size asked for.
        initial: u32,
        /// The maximum asked for.
        max: u32,
    },
    /// A size is larger than any compute node could hold.
    #[error("a dedicated pool holds at most {limit} workers per compute node; {0} is too many", limit = DedicatedPoolSize::LIMIT)]
    TooLarge(u32),
}

impl DedicatedPoolSize {
    /// The most workers a dedicated pool may ask for on one compute node.
    pub const LIMIT: u32 = 1_000;

    /// Checks the sizes: `initial <= max <= LIMIT`, where a `max` of 0 means "no maximum of
    /// the pool's own" (the compute node's limit of service workers applies), as the
    /// reference's clients send 0 for both sizes unless told otherwise.
    pub fn new(initial: u32, max: u32) -> Result<Self, InvalidPoolSize> {
        for size in [initial, max] {
            if size > Self::LIMIT {
                return Err(InvalidPoolSize::TooLarge(size));
            }
        }
        if max != 0 && initial > max {
            return Err(InvalidPoolSize::InitialAboveMax { initial, max });
        }
        Ok(DedicatedPoolSize { initial, max })
    }

    /// Workers kept warm with the service loaded.
    pub fn initial(self) -> u32 {
        self.initial
    }

    /// The most workers, or 0 for the compute node's limit.
    pub fn max(self) -> u32 {
        self.max
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParameterType {
    /// `logical`: a boolean.
    Logical,
    /// `numeric`: a floating-point number.
    Numeric,
    /// `integer`: a whole number.
    Integer,
    /// `character`: a string.
    Character,
    /// `vector`: a one-dimensional array.
    Vector,
    /// `matrix`: a two-dimensional array, as an array of rows.
    Matrix,
    /// `data.frame`: a table, as a map of column name to column values.
    DataFrame,
}

impl ParameterType {
    /// The reference's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterType::Logical => "logical",
            ParameterType::Numeric => "numeric",
            ParameterType::Integer => "integer",
            ParameterType::Character => "character",
            ParameterType::Vector => "vector",
            ParameterType::Matrix => "matrix",
            ParameterType::DataFrame => "data.frame",
        }
    }
}

impl fmt::Display for ParameterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not a parameter type.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown parameter type `{0}`: expected logical, numeric, integer, character, vector, matrix or data.frame"
)]
pub struct ParseParameterTypeError(String);

impl FromStr for ParameterType {
    type Err = ParseParameterTypeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "logical" => ParameterType::Logical,
            "numeric" => ParameterType::Numeric,
            "integer" => ParameterType::Integer,
            "character" => ParameterType::Character,
            "vector" => ParameterType::Vector,
            "matrix" => ParameterType::Matrix,
            "data.frame" => ParameterType::DataFrame,
            _ => return Err(ParseParameterTypeError(text.to_owned())),
        })
    }
}

/// A declared input or output of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterDefinition {
    /// The variable name it binds to.
    pub name: String,
    /// Its type.
    pub kind: ParameterType,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions_are_url_safe_identifiers() {
        for good in ["svc", "TxService", "add-2", "v1.0.0-alpha", "1.0", "test_1"] {
            assert!(ServiceName::parse(good).is_ok(), "{good}");
            assert!(ServiceVersion::parse(good).is_ok(), "{good}");
        }
        let long = "a".repeat(65);
        for bad in ["", ".", "..", "-x", "a/b", "a b", "a?b", "é", long.as_str()] {
            assert!(ServiceName::parse(bad).is_err(), "{bad:?}");
            assert!(ServiceVersion::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parameter_types_round_trip() {
        for kind in [
            "logical",
            "numeric",
            "integer",
            "character",
            "vector",
            "matrix",
            "data.frame",
        ] {
            assert_eq!(kind.parse::<ParameterType>().unwrap().as_str(), kind);
        }
        assert!("float".parse::<ParameterType>().is_err());
    }
}
