//! Access and refresh tokens.
//!
//! A *login session* starts at `POST /login` and is renewed by `POST /login/refreshToken`. It
//! has a random id and a *generation* that grows by one at every renewal. The access token is a
//! JWT (HS256) naming the user, their role, the login session and the generation it was issued
//! for; the refresh token is an opaque random string of which only a SHA-256 digest is stored.
//! An access token is valid while its signature and expiry check out *and* its login session
//! still has the same generation and is not revoked: so renewing a pair invalidates the old
//! pair, and revoking a refresh token also invalidates the access tokens issued with it.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::AuthError;

/// The issuer written into and required from every access token.
const ISSUER: &str = "o16n";

/// How long tokens and login sessions live.
#[derive(Debug, Clone, Copy)]
pub struct TokenLifetimes {
    /// Lifetime of an access token from the moment it is issued (reference: 1 hour).
    pub access: Duration,
    /// A refresh token expires when it has not been used for this long (reference: 14 days).
    pub refresh_idle: Duration,
    /// A login session cannot be renewed past this age; the user logs in again
    /// (reference: 90 days).
    pub max_session: Duration,
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    /// The user name.
    pub sub: String,
    /// The user's role when the token was issued.
    pub role: String,
    /// The login session this token belongs to.
    pub sid: String,
    /// The generation of the login session this token was issued for.
    pub generation: i64,
    /// Issued at, in Unix seconds.
    pub iat: i64,
    /// Expires at, in Unix seconds.
    pub exp: i64,
    /// Always [`ISSUER`].
    pub iss: String,
}

/// Signs and verifies access tokens with one shared secret.
///
/// The secret lives in the database so that every web node sharing it accepts the same tokens
/// and tokens survive a restart.
pub struct TokenSigner {
    encoding_key: EncodingKey,
    decoding_key: DecodingKey,
    validation: Validation,
}

impl TokenSigner {
    /// Length of a generated signing secret, in bytes.
    pub const SECRET_LEN: usize = 32;

    /// A signer for the given secret.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is exact: web nodes sharing a database are expected to keep their clocks in
        // sync (NTP), and a configured lifetime of N seconds should mean N seconds.
        validation.leeway = 0;
        // Expiry is checked against the caller's clock (the seam tests move forward), not
        // against the library's reading of the system time.
        validation.validate_exp = false;
        validation.set_issuer(&[ISSUER]);
        validation.validate_aud = false;
        TokenSigner {
            encoding_key: EncodingKey::from_secret(secret),
            decoding_key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// A fresh random signing secret.
    pub fn generate_secret() -> Vec<u8> {
        let mut secret = vec![0u8; Self::SECRET_LEN];
        rand::rng().fill_bytes(&mut secret);
        secret
    }

    /// Builds the claims of a new access token and signs them.
    pub fn issue(
        &self,
        subject: &str,
        role: &str,
        login_session_id: &str,
        generation: i64,
        now_unix: i64,
        lifetime: Duration,
    ) -> Result<(String, AccessClaims), AuthError> {
        let claims = AccessClaims {
            sub: subject.to_owned(),
            role: role.to_owned(),
            sid: login_session_id.to_owned(),
            generation,
            iat: now_unix,
            exp: now_unix + lifetime.as_secs() as i64,
            iss: ISSUER.to_owned(),
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding_key)?;
        Ok((token, claims))
    }

    /// Checks the signature, issuer and expiry (at `now_unix`) of an access token and returns
    /// its claims.
    ///
    /// This does not check revocation; that needs the login session's state.
    pub fn verify(&self, token: &str, now_unix: i64) -> Result<AccessClaims, AuthError> {
        let claims =
            jsonwebtoken::decode::<AccessClaims>(token, &self.decoding_key, &self.validation)
                .map(|data| data.claims)
                .map_err(|_| AuthError::InvalidToken)?;
        if claims.exp <= now_unix {
            return Err(AuthError::InvalidToken);
        }
        Ok(claims)
    }
}

/// A newly generated refresh token: the value handed to the client and the digest to store.
pub struct RefreshToken {
    /// The value the client keeps; never stored.
    pub plain: String,
    /// The SHA-256 digest of `plain`, hex encoded; what the database keeps.
    pub digest: String,
}

impl RefreshToken {
    /// A new random refresh token (256 bits).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let plain = URL_SAFE_NO_PAD.encode(bytes);
        let digest = Self::digest_of(&plain);
        RefreshToken { plain, digest }
    }

    /// The digest under which a refresh token presented by a client is looked up.
    ///
    /// A fast hash is right here: the token has 256 bits of entropy, so there is nothing to
    /// brute-force, and the digest keeps a database leak from yielding usable tokens.
    pub fn digest_of(plain: &str) -> String {
        let digest = Sha256::digest(plain.as_bytes());
        digest.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn an_issued_token_verifies_with_the_same_secret_only() {
        let secret = TokenSigner::generate_secret();
        let signer = TokenSigner::new(&secret);
        let now = 1_900_000_000;
        let (token, claims) = signer
            .issue("admin", "Owner", "sid-1", 3, now, HOUR)
            .unwrap();
        assert_eq!(claims.exp, now + 3600);
        assert_eq!(signer.verify(&token, now).unwrap(), claims);
        let other = TokenSigner::new(&TokenSigner::generate_secret());
        assert!(other.verify(&token, now).is_err());
    }

    #[test]
    fn expired_and_garbled_tokens_are_refused() {
        let signer = TokenSigner::new(&TokenSigner::generate_secret());
        let (token, _) = signer
            .issue("admin", "Owner", "sid", 1, 1_000, HOUR)
            .unwrap();
        assert!(signer.verify(&token, 1_000 + 3599).is_ok());
        assert!(signer.verify(&token, 1_000 + 3600).is_err());
        assert!(signer.verify("not.a.token", 1_000).is_err());
        assert!(signer.verify("", 1_000).is_err());
    }

    #[test]
    fn refresh_tokens_are_random_and_stored_as_digests() {
        let first = RefreshToken::generate();
        let second = RefreshToken::generate();
        assert_ne!(first.plain, second.plain);
        assert_eq!(RefreshToken::digest_of(&first.plain), first.digest);
        assert_eq!(first.digest.len(), 64);
        assert!(!first.digest.contains(&first.plain));
    }
}
