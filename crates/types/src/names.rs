//! Names that users choose and that end up in paths or in an interpreter's namespace: file
//! names in a working directory and workspace object names.

use std::fmt;

/// A file name in a session's working directory: a name, never a path.
///
/// Refused: empty names, `.` and `..`, anything with `/`, `\` or a control character (so no
/// absolute paths, no traversal), and names longer than 255 bytes (the file system's limit).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileName(String);

/// Why a text is not an acceptable file or object name.
#[derive(Debug, thiserror::Error)]
#[error("invalid {kind} `{name}`: {reason}")]
pub struct InvalidName {
    kind: &'static str,
    name: String,
    reason: &'static str,
}

impl FileName {
    /// Checks `text` and wraps it.
    pub fn parse(text: &str) -> Result<Self, InvalidName> {
        let refuse = |reason| {
            Err(InvalidName {
                kind: "file name",
                name: text.chars().take(80).collect(),
                reason,
            })
        };
        if text.is_empty() {
            return refuse("it is empty");
        }
        if text == "." || text == ".." {
            return refuse("it names a directory, not a file");
        }
        if text.len() > 255 {
            return refuse("it is longer than 255 bytes");
        }
        if text.contains(['/', '\\']) {
            return refuse("it must be a plain name, not a path");
        }
        if text.chars().any(char::is_control) {
            return refuse("it contains control characters");
        }
        Ok(FileName(text.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of an object in a session's workspace: a variable name of R or Python.
///
/// Letters, digits, `_` and `.` (R allows dots), not starting with a digit, at most 255
/// characters, and not a Python "dunder" name, which belongs to the interpreter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectName(String);

impl ObjectName {
    /// Checks `text` and wraps it.
    pub fn parse(text: &str) -> Result<Self, InvalidName> {
        let refuse = |reason| {
            Err(InvalidName {
                kind: "object name",
                name: text.chars().take(80).collect(),
                reason,
            })
        };
        if text.is_empty() || text.len() > 255 {
            return refuse("it must have 1 to 255 characters");
        }
        if !text
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
        {
            return refuse("only letters, digits, `_` and `.` are allowed");
        }
        if text.starts_with(|c: char| c.is_ascii_digit()) {
            return refuse("it must not start with a digit");
        }
        if text.starts_with("__") {
            return refuse("names starting with `__` belong to the interpreter");
        }
        Ok(ObjectName(text.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_names_not_paths() {
        for good in ["data.csv", ".RData", "plot 1.png", "résumé.txt", "a..b"] {
            assert!(FileName::parse(good).is_ok(), "{good}");
        }
        let long = "x".repeat(256);
        for bad in [
            "",
            ".",
            "..",
            "../etc/passwd",
            "/etc/passwd",
            "a/b",
            "a\\b",
            "a\0b",
            "a\nb",
            long.as_str(),
        ] {
            assert!(FileName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn object_names_are_variable_names() {
        for good in ["model", "my.df", "_x", "x2", "données"] {
            assert!(ObjectName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "2x",
            "a b",
            "a-b",
            "__builtins__",
            "a/b",
            "os.system('x')",
        ] {
            assert!(ObjectName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
