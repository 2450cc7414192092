//! LDAP and Active Directory sign-in (`auth.ldap`): the reference's flow of a service account
//! that finds the user's entry, a bind as that entry with the user's password, and the user's
//! groups read from `memberOf` and from the groups that list them as a member.
//!
//! Every sign-in uses a fresh connection that lives only as long as the sign-in, under one
//! time limit for the whole exchange, so a directory that is down or hangs costs the caller
//! at most that limit and leaves nothing behind.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, SearchOptions};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};

use crate::{Directory, DirectoryError, DirectoryUser};

/// How to reach and search the directory (`auth.ldap`).
#[derive(Debug, Clone)]
pub struct LdapSettings {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// Whether a plain `ldap://` connection is upgraded with StartTLS before anything is sent.
    pub start_tls: bool,
    /// A PEM file of certificate authorities trusted for LDAP-S and StartTLS, besides the
    /// system's.
    pub ca_certificate: Option<PathBuf>,
    /// The service account that searches for users.
    pub query_user_dn: String,
    /// The service account's password.
    pub query_user_password: SecretString,
    /// Where users are searched for.
    pub search_base: String,
    /// The filter that finds a user, with `{0}` where the (escaped) user name goes.
    pub search_filter: String,
    /// The attribute whose value o16n knows the user by (`uid`, `sAMAccountName`,
    /// `userPrincipalName`, ...). Do not change it once users own services.
    pub unique_user_identifier_attribute: String,
    /// The attribute with the user's display name.
    pub display_name_attribute: String,
    /// The attribute with the user's e-mail address.
    pub email_attribute: String,
    /// The longest a whole sign-in (connect, binds, searches) may take.
    pub timeout: Duration,
}

/// An LDAP server or Active Directory domain that users sign in with.
pub struct LdapDirectory {
    settings: LdapSettings,
    tls: Arc<rustls::ClientConfig>,
}

/// The result code of a bind with a wrong password (RFC 4511).
const INVALID_CREDENTIALS: u32 = 49;

/// A user entry found by the service account.
struct FoundEntry {
    dn: String,
    attributes: SearchEntry,
}

impl LdapDirectory {
    /// Checks the settings and loads the certificate authorities.
    pub fn new(settings: LdapSettings) -> Result<LdapDirectory, DirectoryError> {
        let scheme_ok = settings.url.starts_with("ldap://") || settings.url.starts_with("ldaps://");
        if !scheme_ok {
            return Err(DirectoryError::Misconfigured(format!(
                "auth.ldap.url must start with ldap:// or ldaps://, not {:?}",
                settings.url
            )));
        }
        if settings.start_tls && settings.url.starts_with("ldaps://") {
            return Err(DirectoryError::Misconfigured(
                "auth.ldap.start_tls is for ldap:// URLs; an ldaps:// connection is already TLS"
                    .to_owned(),
            ));
        }
        if !settings.search_filter.contains("{0}") {
            return Err(DirectoryError::Misconfigured(format!(
                "auth.ldap.search_filter must contain {{0}} where the user name goes, as in (uid={{0}}); it is {:?}",
                settings.search_filter
            )));
        }
        let tls = Arc::new(client_tls(settings.ca_certificate.as_ref())?);
        if settings.url.starts_with("ldap://")
            && !settings.start_tls
            && !crate::on_this_machine(&settings.url)
        {
            tracing::warn!(
                url = %settings.url,
                "users' passwords go to the directory unencrypted: use ldaps:// or auth.ldap.start_tls"
            );
        }
        Ok(LdapDirectory { settings, tls })
    }

    /// Opens a connection as the service account and runs `work` on it, all within the time
    /// limit. The connection is closed when `work` ends, whatever its outcome.
    async fn with_service_connection<T>(
        &self,
        work: impl AsyncFnOnce(&mut Ldap) -> Result<T, DirectoryError>,
    ) -> Result<T, DirectoryError> {
        let settings = &self.settings;
        let exchange = async {
            let connection = LdapConnSettings::new()
                .set_conn_timeout(settings.timeout)
                .set_starttls(settings.start_tls)
                .set_config(self.tls.clone());
            let (driver, mut ldap) = LdapConnAsync::with_settings(connection, &settings.url)
                .await
                .map_err(|err| {
                    DirectoryError::Unavailable(format!(
                        "cannot reach the directory at {}: {err}",
                        settings.url
                    ))
                })?;
            // The driver moves the connection's messages; it runs beside the work and is
            // dropped with it, which closes the connection. It ends by itself only when the
            // connection fails.
            let driver = driver.drive();
            tokio::pin!(driver);
            let work = async {
                ldap.simple_bind(
                    &settings.query_user_dn,
                    settings.query_user_password.expose_secret(),
                )
                .await
                .and_then(|result| result.success())
                .map_err(|err| match err {
                    LdapError::LdapResult { result } if result.rc == INVALID_CREDENTIALS => {
                        DirectoryError::Unavailable(
                            "the directory refused the service account (auth.ldap.query_user_dn and query_user_password)"
                                .to_owned(),
                        )
                    }
                    other => unavailable(other),
                })?;
                // No unbind at the end: it would end the driver, racing the outcome below, and
                // dropping the driver closes the connection just as well.
                work(&mut ldap).await
            };
            tokio::select! {
                biased;
                outcome = work => outcome,
                ended = &mut driver => Err(DirectoryError::Unavailable(match ended {
                    Ok(()) => "the directory closed the connection".to_owned(),
                    Err(err) => format!("the connection to the directory failed: {err}"),
                })),
            }
        };
        tokio::time::timeout(settings.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(DirectoryError::Unavailable(format!(
                    "the directory at {} did not answer within {} s",
                    settings.url,
                    settings.timeout.as_secs_f64()
                )))
            })
    }

    /// The one entry that `filter` finds, `None` when there is none or more than one.
    async fn find_one(
        &self,
        ldap: &mut Ldap,
        filter: &str,
    ) -> Result<Option<FoundEntry>, DirectoryError> {
        let settings = &self.settings;
        let attributes = vec![
            settings.unique_user_identifier_attribute.as_str(),
            settings.display_name_attribute.as_str(),
            settings.email_attribute.as_str(),
            "memberOf",
        ];
        // Two are enough to tell that the name is ambiguous; asking for no more keeps a
        // filter that matches everyone cheap.
        let result = ldap
            .with_search_options(SearchOptions::new().sizelimit(2))
            .search(&settings.search_base, Scope::Subtree, filter, attributes)
            .await
            .map_err(unavailable)?;
        let (entries, outcome) = (only_entries(result.0), result.1);
        const SIZE_LIMIT_EXCEEDED: u32 = 4;
        const NO_SUCH_OBJECT: u32 = 32;
        match outcome.rc {
            0 => {}
            SIZE_LIMIT_EXCEEDED => {
                tracing::info!("several directory entries match the user name");
                return Ok(None);
            }
            NO_SUCH_OBJECT => {
                return Err(DirectoryError::Unavailable(format!(
                    "the search base {} does not exist in the directory (auth.ldap.search_base)",
                    settings.search_base
                )));
            }
            _ => return Err(unavailable(LdapError::from(outcome))),
        }
        if entries.len() != 1 {
            if entries.len() > 1 {
                tracing::info!("several directory entries match the user name");
            }
            return Ok(None);
        }
        let entry = SearchEntry::construct(entries.into_iter().next().expect("one entry"));
        Ok(Some(FoundEntry {
            dn: entry.dn.clone(),
            attributes: entry,
        }))
    }

    /// The user the entry describes, with the groups that list them as a member.
    async fn user_of(
        &self,
        ldap: &mut Ldap,
        entry: &FoundEntry,
    ) -> Result<DirectoryUser, DirectoryError> {
        let settings = &self.settings;
        let unique_id = first_value(&entry.attributes, &settings.unique_user_identifier_attribute)
            .ok_or_else(|| {
                DirectoryError::Rejected(format!(
                    "the directory entry has no {} attribute (auth.ldap.unique_user_identifier_attribute)",
                    settings.unique_user_identifier_attribute
                ))
            })?;
        let mut groups: Vec<String> = values(&entry.attributes, "memberOf")
            .iter()
            .filter_map(|dn| common_name(dn))
            .collect();
        // Directories without a memberOf attribute (OpenLDAP without its overlay) list
        // members on the groups instead.
        let member = ldap3::ldap_escape(&entry.dn);
        let filter = format!(
            "(|(&(objectClass=groupOfNames)(member={member}))(&(objectClass=groupOfUniqueNames)(uniqueMember={member})))"
        );
        let result = ldap
            .with_search_options(SearchOptions::new().sizelimit(1000))
            .search(&settings.search_base, Scope::Subtree, &filter, vec!["cn"])
            .await
            .map_err(unavailable)?;
        for group in only_entries(result.0) {
            let group = SearchEntry::construct(group);
            if let Some(name) = first_value(&group, "cn") {
                groups.push(name);
            }
        }
        groups.sort_by_key(|group| group.to_lowercase());
        groups.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        Ok(DirectoryUser {
            unique_id,
            display_name: first_value(&entry.attributes, &settings.display_name_attribute),
            email: first_value(&entry.attributes, &settings.email_attribute),
            groups,
        })
    }
}

#[async_trait::async_trait]
impl Directory for LdapDirectory {
    async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<DirectoryUser, DirectoryError> {
        // A bind with a DN and an empty password is an "unauthenticated bind" (RFC 4513),
        // which some servers answer with success: it must never reach the directory.
        if password.is_empty() || username.is_empty() || username.len() > 256 {
            return Err(DirectoryError::InvalidCredentials);
        }
        let filter = self
            .settings
            .search_filter
            .replace("{0}", &ldap3::ldap_escape(username));
        self.with_service_connection(async |ldap: &mut Ldap| {
            let Some(entry) = self.find_one(ldap, &filter).await? else {
                return Err(DirectoryError::InvalidCredentials);
            };
            // Groups are read as the service account, which may read them; the user's own
            // rights may not reach that far.
            let user = self.user_of(ldap, &entry).await?;
            match ldap
                .simple_bind(&entry.dn, password)
                .await
                .and_then(|result| result.success())
            {
                Ok(_) => Ok(user),
                Err(LdapError::LdapResult { result }) => {
                    tracing::info!(rc = result.rc, "the directory refused the user's bind");
                    Err(DirectoryError::InvalidCredentials)
                }
                Err(other) => Err(unavailable(other)),
            }
        })
        .await
    }

    async fn lookup(&self, unique_id: &str) -> Result<Option<DirectoryUser>, DirectoryError> {
        let filter = format!(
            "({}={})",
            self.settings.unique_user_identifier_attribute,
            ldap3::ldap_escape(unique_id)
        );
        self.with_service_connection(async |ldap: &mut Ldap| {
            match self.find_one(ldap, &filter).await? {
                Some(entry) => Ok(Some(self.user_of(ldap, &entry).await?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn check(&self) -> Result<(), DirectoryError> {
        self.with_service_connection(async |_: &mut Ldap| Ok(()))
            .await
    }
}

/// The entries of a search's answer without its continuation references: Active Directory
/// answers a search from a domain's root with references to its other partitions
/// (`DomainDnsZones`, `Configuration`, ...), which are not entries.
fn only_entries(answer: Vec<ldap3::ResultEntry>) -> Vec<ldap3::ResultEntry> {
    answer
        .into_iter()
        .filter(|entry| !entry.is_ref() && !entry.is_intermediate())
        .collect()
}

fn unavailable(err: LdapError) -> DirectoryError {
    DirectoryError::Unavailable(format!("the directory failed: {err}"))
}

/// The values of an attribute, whatever the case of its name in the answer.
fn values<'a>(entry: &'a SearchEntry, attribute: &str) -> &'a [String] {
    entry
        .attrs
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(attribute))
        .map_or(&[], |(_, values)| values.as_slice())
}

fn first_value(entry: &SearchEntry, attribute: &str) -> Option<String> {
    values(entry, attribute)
        .first()
        .filter(|value| !value.is_empty())
        .cloned()
}

/// The value of a DN's first component when it is a `CN`: the plain group name that roles are
/// configured with (`CN=Administrators,OU=Groups,DC=corp` gives `Administrators`).
fn common_name(dn: &str) -> Option<String> {
    let mut value = String::new();
    let mut chars = dn.chars();
    let (name, _) = dn.split_once('=')?;
    if !name.trim().eq_ignore_ascii_case("cn") {
        return None;
    }
    chars.by_ref().take(name.len() + 1).for_each(drop);
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => value.push(escaped),
                None => break,
            },
            ',' | '+' => break,
            other => value.push(other),
        }
    }
    let value = value.trim().to_owned();
    (!value.is_empty()).then_some(value)
}

/// The TLS settings of LDAP-S and StartTLS: the system's certificate authorities and the
/// configured one.
fn client_tls(ca_certificate: Option<&PathBuf>) -> Result<rustls::ClientConfig, DirectoryError> {
    let mut roots = RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        // A system certificate that rustls cannot use is skipped, as every TLS client does.
        let _ = roots.add(certificate);
    }
    if let Some(path) = ca_certificate {
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|certificates| certificates.collect())
            .map_err(|err| {
                DirectoryError::Misconfigured(format!(
                    "cannot read auth.ldap.ca_certificate {}: {err}",
                    path.display()
                ))
            })?;
        if certificates.is_empty() {
            return Err(DirectoryError::Misconfigured(format!(
                "auth.ldap.ca_certificate {} holds no certificate",
                path.display()
            )));
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|err| {
                DirectoryError::Misconfigured(format!(
                    "auth.ldap.ca_certificate {} is not a usable certificate: {err}",
                    path.display()
                ))
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| DirectoryError::Misconfigured(format!("TLS settings: {err}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_the_common_name_of_their_dn() {
        assert_eq!(
            common_name("cn=Administrators,ou=groups,dc=example,dc=org").as_deref(),
            Some("Administrators")
        );
        assert_eq!(
            common_name("CN=App developers,OU=Groups,DC=corp").as_deref(),
            Some("App developers")
        );
        assert_eq!(
            common_name(r"CN=Smith\, Jane's team,DC=corp").as_deref(),
            Some("Smith, Jane's team")
        );
        assert_eq!(common_name("ou=groups,dc=example"), None);
        assert_eq!(common_name("no equals sign"), None);
    }

    fn settings() -> LdapSettings {
        LdapSettings {
            url: "ldap://127.0.0.1:389".to_owned(),
            start_tls: false,
            ca_certificate: None,
            query_user_dn: "cn=query,dc=example".to_owned(),
            query_user_password: SecretString::from("secret"),
            search_base: "dc=example".to_owned(),
            search_filter: "(uid={0})".to_owned(),
            unique_user_identifier_attribute: "uid".to_owned(),
            display_name_attribute: "cn".to_owned(),
            email_attribute: "mail".to_owned(),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn settings_that_cannot_work_are_refused_at_start() {
        let cases = [
            LdapSettings {
                url: "http://directory".to_owned(),
                ..settings()
            },
            LdapSettings {
                url: "ldaps://directory:636".to_owned(),
                start_tls: true,
                ..settings()
            },
            LdapSettings {
                search_filter: "(uid=*)".to_owned(),
                ..settings()
            },
            LdapSettings {
                ca_certificate: Some(PathBuf::from("/nonexistent/ca.pem")),
                ..settings()
            },
        ];
        for case in cases {
            assert!(matches!(
                LdapDirectory::new(case),
                Err(DirectoryError::Misconfigured(_))
            ));
        }
        assert!(LdapDirectory::new(settings()).is_ok());
    }

    #[tokio::test]
    async fn an_empty_password_never_reaches_the_directory() {
        // Nothing listens on the settings' address: an attempt to connect would fail with
        // `Unavailable`, not `InvalidCredentials`.
        let directory = LdapDirectory::new(LdapSettings {
            url: "ldap://127.0.0.1:1".to_owned(),
            ..settings()
        })
        .unwrap();
        assert!(matches!(
            directory.authenticate("alice", "").await,
            Err(DirectoryError::InvalidCredentials)
        ));
        assert!(matches!(
            directory.authenticate("alice", "pw").await,
            Err(DirectoryError::Unavailable(_))
        ));
    }
}
