//! The cluster: web nodes and compute nodes on separate machines.
//!
//! A compute node serves the compute interface ([`o16n_compute::Compute`]) to web nodes over
//! the cluster's internal API ([`server`]): HTTP/2 (cleartext, or TLS with certificate files
//! from the configuration), JSON for control messages and streamed bodies for files and
//! archives, every call proven by the shared cluster secret. A web node reaches each compute
//! node through a [`RemoteNode`] (the same trait, over the network) and holds them all in a
//! [`Fleet`], which health-checks them continuously and picks where work goes.
//!
//! The internal API is the second HTTP surface of the system, besides the REST API of
//! `o16n-api`; it speaks only the compute interface's types, and none of its errors reach a
//! client as they are.

mod client;
#[cfg(test)]
mod contract_tests;
mod fleet;
pub mod server;
mod tls;
mod wire;

pub use client::RemoteNode;
pub use fleet::{Fleet, FleetConfig};
pub use tls::{ClientTls, ServerTls, TlsError};

/// Installs the process-wide TLS crypto provider (ring) once, before any TLS is used.
pub fn install_crypto_provider() {
    // A second installation (another server in the same test binary) is refused harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
