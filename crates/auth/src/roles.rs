//! Roles from directory groups: the reference's mapping of group names to Owner, Contributor
//! and Reader (`auth.roles`), with its rules for users whose groups match none.
//!
//! The rules for a user in none of the configured groups are the reference's "role
//! configuration states": nothing configured or Owner only gives Contributor; Contributor
//! configured (with or without Owner) gives Reader; once Reader is configured, a user in none
//! of the groups has no access at all.

use o16n_types::Role;

/// Which groups give which role. Group names are plain names (`Administrators`, not a DN),
/// compared without regard to case, as directories compare them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleMapping {
    owner: Vec<String>,
    contributor: Vec<String>,
    reader: Vec<String>,
}

impl RoleMapping {
    /// A mapping from the configured group names of each role.
    pub fn new(owner: &[String], contributor: &[String], reader: &[String]) -> RoleMapping {
        let normalized = |groups: &[String]| -> Vec<String> {
            groups
                .iter()
                .map(|group| group.trim().to_lowercase())
                .filter(|group| !group.is_empty())
                .collect()
        };
        RoleMapping {
            owner: normalized(owner),
            contributor: normalized(contributor),
            reader: normalized(reader),
        }
    }

    /// The role of a member of `groups`: the highest role any of them gives, else the
    /// reference's default for the configured roles, or `None` when such a user has no access.
    pub fn role_for<'a>(&self, groups: impl IntoIterator<Item = &'a str>) -> Option<Role> {
        let mut best: Option<Role> = None;
        for group in groups {
            let group = group.trim().to_lowercase();
            let role = if self.owner.contains(&group) {
                Role::Owner
            } else if self.contributor.contains(&group) {
                Role::Contributor
            } else if self.reader.contains(&group) {
                Role::Reader
            } else {
                continue;
            };
            best = best.max(Some(role));
        }
        best.or_else(|| self.default_role())
    }

    /// The role of a user in none of the configured groups.
    fn default_role(&self) -> Option<Role> {
        if !self.reader.is_empty() {
            None
        } else if !self.contributor.is_empty() {
            Some(Role::Reader)
        } else {
            Some(Role::Contributor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn the_highest_role_of_any_group_wins_whatever_the_case() {
        let mapping = RoleMapping::new(
            &names(&["Administrators"]),
            &names(&["RProgrammers", "Quality"]),
            &names(&["App developers"]),
        );
        assert_eq!(
            mapping.role_for(["app developers", "QUALITY"]),
            Some(Role::Contributor)
        );
        assert_eq!(
            mapping.role_for(["Quality", "administrators"]),
            Some(Role::Owner)
        );
        assert_eq!(mapping.role_for(["App Developers"]), Some(Role::Reader));
    }

    #[test]
    fn users_in_no_group_follow_the_role_configuration_states() {
        let nothing = RoleMapping::default();
        assert_eq!(nothing.role_for(["anyone"]), Some(Role::Contributor));

        let owner_only = RoleMapping::new(&names(&["Admins"]), &[], &[]);
        assert_eq!(owner_only.role_for(["other"]), Some(Role::Contributor));

        let contributor_only = RoleMapping::new(&[], &names(&["Dev"]), &[]);
        assert_eq!(contributor_only.role_for(["other"]), Some(Role::Reader));

        let owner_and_contributor = RoleMapping::new(&names(&["Admins"]), &names(&["Dev"]), &[]);
        assert_eq!(owner_and_contributor.role_for([]), Some(Role::Reader));

        let with_reader = RoleMapping::new(&names(&["Admins"]), &[], &names(&["Apps"]));
        assert_eq!(with_reader.role_for(["other"]), None);
        assert_eq!(with_reader.role_for(["apps"]), Some(Role::Reader));
    }

    #[test]
    fn blank_group_names_configure_nothing() {
        let mapping = RoleMapping::new(&names(&["  "]), &[], &names(&[""]));
        assert_eq!(mapping, RoleMapping::default());
    }
}
