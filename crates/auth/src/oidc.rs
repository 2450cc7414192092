//! Bearer tokens of an OpenID Connect provider (Azure AD or any other): checking one against
//! the provider's published signing keys, and reading who it names and their groups.
//!
//! Fetching the keys is I/O and lives elsewhere (`o16n-directory`); this module only decides,
//! for given keys and a given time, whether a token is good. Expiry and not-before are checked
//! against the time the caller passes, so tests control it.

use std::collections::HashSet;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::AuthError;

/// How a provider's tokens are checked and read (`auth.oidc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcRules {
    /// The `iss` every token must carry: the configured authority.
    pub issuer: String,
    /// The `aud` every token must carry (or contain).
    pub audience: String,
    /// The claim that names the user: `upn`, `preferred_username`, `email` or `sub`.
    pub username_claim: String,
    /// The claim that lists the user's groups (a list of names, or one name).
    pub groups_claim: String,
}

/// Who a provider's token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    /// The value of the configured user name claim.
    pub username: String,
    /// The values of the configured groups claim, empty when it is absent.
    pub groups: Vec<String>,
    /// When the token expires, Unix seconds.
    pub expires_at: i64,
}

/// Tolerated difference between the provider's clock and ours, in seconds.
const CLOCK_SKEW_SECONDS: i64 = 60;

/// The signing algorithms accepted from a provider: public-key ones only, so that a token can
/// never be checked with a public key used as an HMAC secret.
const ACCEPTED_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The id of the key a token says it is signed with, read without checking anything. It tells
/// whether the provider's keys must be fetched again before the token can be checked.
pub fn signing_key_id(token: &str) -> Result<Option<String>, AuthError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| AuthError::InvalidExternalToken("the bearer token is not a JWT"))?;
    Ok(header.kid)
}

/// Whether a token is signed with a shared secret (o16n's own tokens are HS256) rather than a
/// provider's public key.
pub fn is_signed_with_secret(token: &str) -> bool {
    matches!(
        jsonwebtoken::decode_header(token).map(|header| header.alg),
        Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    )
}

/// Checks a provider's token against its keys at `now` (Unix seconds) and reads its identity.
///
/// [`AuthError::UnknownSigningKey`] means the token names a key that `keys` does not hold: the
/// caller may fetch the keys again (the provider may have rotated them) and retry.
pub fn verify_external_token(
    token: &str,
    keys: &JwkSet,
    rules: &OidcRules,
    now: i64,
) -> Result<ExternalIdentity, AuthError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| AuthError::InvalidExternalToken("the bearer token is not a JWT"))?;
    if !ACCEPTED_ALGORITHMS.contains(&header.alg) {
        return Err(AuthError::InvalidExternalToken(
            "the token is not signed with an algorithm the identity provider uses",
        ));
    }
    let jwk = match &header.kid {
        Some(kid) => keys.find(kid),
        // A provider with a single key may leave the key id out.
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
    .ok_or(AuthError::UnknownSigningKey)?;
    let key = DecodingKey::from_jwk(jwk)
        .map_err(|_| AuthError::InvalidExternalToken("the provider's signing key is unusable"))?;

    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[rules.issuer.as_str()]);
    validation.set_audience(&[rules.audience.as_str()]);
    // Times are checked below against the caller's clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.required_spec_claims = HashSet::from(["exp", "iss", "aud"].map(str::to_owned));
    let claims = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation)
        .map_err(|err| {
            use jsonwebtoken::errors::ErrorKind;
            AuthError::InvalidExternalToken(match err.kind() {
                ErrorKind::InvalidIssuer => "the token was issued by another issuer",
                ErrorKind::InvalidAudience => "the token is meant for another audience",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks exp, iss or aud",
                ErrorKind::InvalidSignature => "the token's signature is not valid",
                ErrorKind::InvalidAlgorithm => {
                    "the token's algorithm does not match the provider's key"
                }
                _ => "the bearer token is malformed",
            })
        })?
        .claims;

    let time = |name: &str| claims.get(name).and_then(Value::as_i64);
    let expires_at = time("exp").ok_or(AuthError::InvalidExternalToken(
        "the token's exp is not a number",
    ))?;
    if expires_at + CLOCK_SKEW_SECONDS <= now {
        return Err(AuthError::InvalidExternalToken("the token has expired"));
    }
    if time("nbf").is_some_and(|not_before| not_before - CLOCK_SKEW_SECONDS > now) {
        return Err(AuthError::InvalidExternalToken(
            "the token is not valid yet",
        ));
    }
    let username = claims
        .get(&rules.username_claim)
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .ok_or(AuthError::InvalidExternalToken(
            "the token lacks the configured user name claim (auth.oidc.username_claim)",
        ))?
        .to_owned();
    let groups = match claims.get(&rules.groups_claim) {
        Some(Value::Array(values)) => values
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    };
    Ok(ExternalIdentity {
        username,
        groups,
        expires_at: expires_at + CLOCK_SKEW_SECONDS,
    })
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_800_000_000;

    struct Provider {
        key: EncodingKey,
        keys: JwkSet,
    }

    impl Provider {
        fn new(kid: &str) -> Provider {
            let der = rcgen::KeyPair::generate().unwrap().serialize_der();
            let key = EncodingKey::from_ec_der(&der);
            let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
            jwk.common.key_id = Some(kid.to_owned());
            Provider {
                key,
                keys: JwkSet { keys: vec![jwk] },
            }
        }

        fn sign(&self, kid: &str, claims: serde_json::Value) -> String {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some(kid.to_owned());
            jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
        }
    }

    fn rules() -> OidcRules {
        OidcRules {
            issuer: "https://idp.example/tenant".to_owned(),
            audience: "o16n".to_owned(),
            username_claim: "upn".to_owned(),
            groups_claim: "groups".to_owned(),
        }
    }

    fn claims() -> serde_json::Value {
        json!({
            "iss": "https://idp.example/tenant", "aud": "o16n", "upn": "jane@corp.example",
            "groups": ["Quality", "RProgrammers"], "exp": NOW + 600, "nbf": NOW - 10,
        })
    }

    fn failure(token: &str, keys: &JwkSet) -> String {
        verify_external_token(token, keys, &rules(), NOW)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_good_token_names_its_user_and_groups() {
        let provider = Provider::new("k1");
        let token = provider.sign("k1", claims());
        let identity = verify_external_token(&token, &provider.keys, &rules(), NOW).unwrap();
        assert_eq!(identity.username, "jane@corp.example");
        assert_eq!(identity.groups, ["Quality", "RProgrammers"]);
        assert!(!is_signed_with_secret(&token));
        assert_eq!(signing_key_id(&token).unwrap().as_deref(), Some("k1"));
    }

    #[test]
    fn foreign_expired_and_early_tokens_are_refused_with_the_reason() {
        let provider = Provider::new("k1");
        let with = |field: &str, value: serde_json::Value| {
            let mut claims = claims();
            claims[field] = value;
            provider.sign("k1", claims)
        };
        let cases = [
            (with("iss", json!("https://evil.example")), "another issuer"),
            (with("aud", json!("someone-else")), "another audience"),
            (with("exp", json!(NOW - 61)), "expired"),
            (with("nbf", json!(NOW + 61)), "not valid yet"),
            (with("upn", json!(null)), "user name claim"),
        ];
        for (token, reason) in cases {
            let message = failure(&token, &provider.keys);
            assert!(message.contains(reason), "{message}");
        }
        // Within the tolerated clock skew a token is still good.
        let token = with("exp", json!(NOW - 30));
        assert!(verify_external_token(&token, &provider.keys, &rules(), NOW).is_ok());
    }

    #[test]
    fn a_token_of_another_key_or_a_secret_signed_token_is_refused() {
        let provider = Provider::new("k1");
        let stranger = Provider::new("k2");
        let unknown = stranger.sign("k2", claims());
        assert!(matches!(
            verify_external_token(&unknown, &provider.keys, &rules(), NOW),
            Err(AuthError::UnknownSigningKey)
        ));
        // The stranger's token relabelled with the provider's key id has a bad signature.
        let relabelled = stranger.sign("k1", claims());
        assert!(failure(&relabelled, &provider.keys).contains("signature"));

        let hmac = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"a public key used as a secret"),
        )
        .unwrap();
        assert!(is_signed_with_secret(&hmac));
        assert!(failure(&hmac, &provider.keys).contains("algorithm"));
        assert!(failure("not a token", &provider.keys).contains("not a JWT"));
    }

    #[test]
    fn a_single_group_may_be_a_plain_string() {
        let provider = Provider::new("k1");
        let mut claims = claims();
        claims["groups"] = json!("Quality");
        let token = provider.sign("k1", claims);
        let identity = verify_external_token(&token, &provider.keys, &rules(), NOW).unwrap();
        assert_eq!(identity.groups, ["Quality"]);
    }
}
