//! The reference's three roles, ordered by power: Owner > Contributor > Reader.

use std::fmt;
use std::str::FromStr;

/// A user's role. The derived order is the order of power, so `role >= Role::Contributor`
/// reads as "at least a Contributor".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// May list and consume services; may not publish, update or delete.
    Reader,
    /// May publish, and update or delete what it published.
    Contributor,
    /// May do anything, to anyone's resources.
    Owner,
}

impl Role {
    /// The canonical spelling, as the reference and the CLI use it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "Reader",
            Role::Contributor => "Contributor",
            Role::Owner => "Owner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of `Owner`, `Contributor`, `Reader`.
#[derive(Debug, thiserror::Error)]
#[error("unknown role `{0}`: expected Owner, Contributor or Reader")]
pub struct ParseRoleError(String);

impl FromStr for Role {
    type Err = ParseRoleError;

    /// Roles are matched case-insensitively because operators type them by hand.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "owner" => Ok(Role::Owner),
            "contributor" => Ok(Role::Contributor),
            "reader" => Ok(Role::Reader),
            _ => Err(ParseRoleError(text.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Owner > Role::Contributor);
        assert!(Role::Contributor > Role::Reader);
    }

    #[test]
    fn roles_parse_case_insensitively_and_round_trip() {
        for role in [Role::Owner, Role::Contributor, Role::Reader] {
            assert_eq!(role.as_str().to_uppercase().parse::<Role>().unwrap(), role);
        }
        assert!("admin".parse::<Role>().is_err());
    }
}
