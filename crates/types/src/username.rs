//! User names: the identity that owns sessions, snapshots and services.

use std::fmt;

/// A validated user name: 1 to 64 characters from letters, digits and `.`, `_`, `-`, `@`.
///
/// The character set is deliberately narrow: names appear in URLs, audit logs and file paths,
/// and directory user principal names (`user@domain`) still fit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

/// Why a text is not a valid user name.
#[derive(Debug, thiserror::Error)]
#[error("invalid user name: {0}")]
pub struct InvalidUsername(&'static str);

impl Username {
    /// The longest accepted user name, in characters.
    pub const MAX_LEN: usize = 64;

    /// Checks `text` and wraps it.
    pub fn parse(text: &str) -> Result<Self, InvalidUsername> {
        if text.is_empty() {
            return Err(InvalidUsername("it is empty"));
        }
        if text.len() > Self::MAX_LEN {
            return Err(InvalidUsername("it is longer than 64 characters"));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
        if !text.chars().all(allowed) {
            return Err(InvalidUsername(
                "only letters, digits and . _ - @ are allowed",
            ));
        }
        Ok(Username(text.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_principal_names() {
        for name in ["admin", "jane.doe", "jane_doe-2", "jane@corp.example"] {
            assert_eq!(Username::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn refuses_empty_long_and_path_like_names() {
        let too_long = "a".repeat(65);
        for name in ["", too_long.as_str(), "../etc", "a/b", "a b", "naïve"] {
            assert!(Username::parse(name).is_err(), "{name:?} was accepted");
        }
    }
}
