//! Authentication primitives: the password rule, password hashing, access tokens (JWT) and
//! refresh tokens, the mapping of directory groups to roles, and the checking of an OpenID
//! Connect provider's tokens against its keys.
//!
//! This crate does no I/O and knows nothing about HTTP or the database: it turns secrets into
//! hashes and tokens and back. Hashing is deliberately slow (argon2), so callers on an async
//! runtime must run [`hash_password`] and [`PasswordChecker::verify`] on a blocking thread.
//! Start reading at [`tokens`] for how a login session is represented.

mod error;
pub mod oidc;
mod password;
pub mod roles;
pub mod tokens;

pub use error::AuthError;
pub use password::{PasswordChecker, check_password_rule, generate_password, hash_password};
