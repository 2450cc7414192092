//! Sign-in against an organisation's directory: LDAP / Active Directory for user names and
//! passwords ([`LdapDirectory`]), and an OpenID Connect provider such as Azure AD for bearer
//! tokens ([`OidcProvider`]).
//!
//! Both are adapters around network I/O; the decisions (roles from groups, who may sign in,
//! which tokens are issued) are the application's. The application holds an LDAP directory as
//! an `Arc<dyn Directory>`, so that its tests can put a fake in its place.

mod error;
mod ldap;
mod oidc;

pub use error::DirectoryError;
pub use ldap::{LdapDirectory, LdapSettings};
pub use oidc::{OidcProvider, OidcSettings};

/// A directory user who signed in, or was looked up again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    /// The value of the unique user identifier attribute: the name o16n knows the user by.
    pub unique_id: String,
    /// The display name attribute, when the entry has one.
    pub display_name: Option<String>,
    /// The e-mail attribute, when the entry has one.
    pub email: Option<String>,
    /// The plain names (`Administrators`, not a DN) of the groups the user is a member of.
    pub groups: Vec<String>,
}

/// A directory that checks user names and passwords and knows their groups.
#[async_trait::async_trait]
pub trait Directory: Send + Sync {
    /// Checks a user name and password: exactly one entry must match the user name, and the
    /// password must bind as that entry.
    async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<DirectoryUser, DirectoryError>;

    /// Finds a user again by unique id, without their password (to refresh their groups when
    /// a login session is renewed). `None` when the directory no longer has them.
    async fn lookup(&self, unique_id: &str) -> Result<Option<DirectoryUser>, DirectoryError>;

    /// Whether the directory answers and accepts the service account.
    async fn check(&self) -> Result<(), DirectoryError>;
}

/// Whether a URL's host is this machine (a loopback address or `localhost`), where traffic in
/// the clear crosses no network.
fn on_this_machine(url: &str) -> bool {
    let Some(host) = reqwest::Url::parse(url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
    else {
        return false;
    };
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
