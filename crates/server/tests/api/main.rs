//! Black-box tests of the REST API: each test starts the real server in-process on port 0 with
//! a fresh data directory and talks to it over HTTP.

mod authentication;
mod batch;
mod compute_nodes;
mod console;
mod dedicated_pools;
mod directory;
mod docs;
mod environments;
mod errors;
mod helpers;
mod hostile;
mod idp;
mod oidc;
mod package_index;
mod r_runtime;
mod realtime;
mod sandbox;
mod services;
mod sessions;
mod slapd;
mod snapshots;
mod status;
mod templates;
