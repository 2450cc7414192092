//! Optional TLS between web nodes and compute nodes, from PEM files named by the
//! configuration: a compute node's certificate chain and key, and the certificate authorities a
//! web node trusts for `https://` compute node endpoints.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {reason}", path.display())]
pub struct TlsError {
    what: &'static str,
    path: PathBuf,
    reason: String,
}

fn read_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let failed = |reason: String| TlsError {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|err| failed(err.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| failed(err.to_string()))?;
    if certificates.is_empty() {
        return Err(failed("it holds no PEM certificate".to_owned()));
    }
    Ok(certificates)
}

/// A compute node's TLS identity.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
}

impl ServerTls {
    /// Loads the certificate chain and its private key.
    pub fn load(certificate: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        let chain = read_certificates("the TLS certificate", certificate)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|err| TlsError {
            what: "the TLS key",
            path: key.to_path_buf(),
            reason: err.to_string(),
        })?;
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|err| TlsError {
                what: "the TLS certificate",
                path: certificate.to_path_buf(),
                reason: err.to_string(),
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

/// The certificate authorities a web node trusts for `https://` compute nodes, besides the
/// system's.
#[derive(Clone, Default)]
pub struct ClientTls {
    pub(crate) authorities: Vec<CertificateDer<'static>>,
}

impl ClientTls {
    /// Loads the certificate authorities of a PEM file.
    pub fn load(ca_certificate: &Path) -> Result<ClientTls, TlsError> {
        Ok(ClientTls {
            authorities: read_certificates("the certificate authority", ca_certificate)?,
        })
    }
}
