//! Passwords: the reference's rule for passwords a person chooses, argon2 hashing, and a
//! generator for the admin password when none is given.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, PasswordHash};
use rand::Rng;

use crate::AuthError;

/// The special characters the reference accepts in a local password
/// (`configure-admin-cli-local-password.md`).
const SPECIALS: &str = "~!@#$%^&()-_+=|<>\\/;:,.";

/// Checks the reference's rule: 8 to 16 characters with at least one upper-case letter, one
/// lower-case letter, one digit and one special character from its list.
pub fn check_password_rule(password: &str) -> Result<(), AuthError> {
    let length = password.chars().count();
    if !(8..=16).contains(&length) {
        return Err(AuthError::WeakPassword(
            "the password must be 8 to 16 characters long",
        ));
    }
    let has = |pred: fn(char) -> bool| password.chars().any(pred);
    if !has(|c| c.is_ascii_uppercase()) {
        return Err(AuthError::WeakPassword(
            "the password needs at least one upper-case letter",
        ));
    }
    if !has(|c| c.is_ascii_lowercase()) {
        return Err(AuthError::WeakPassword(
            "the password needs at least one lower-case letter",
        ));
    }
    if !has(|c| c.is_ascii_digit()) {
        return Err(AuthError::WeakPassword(
            "the password needs at least one digit",
        ));
    }
    if !has(|c| SPECIALS.contains(c)) {
        return Err(AuthError::WeakPassword(
            "the password needs at least one of ~ ! @ # $ % ^ & ( ) - _ + = | < > \\ / ; : , .",
        ));
    }
    Ok(())
}

/// Generates a 16-character password that satisfies [`check_password_rule`].
pub fn generate_password() -> String {
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const DIGITS: &[u8] = b"23456789";
    // A subset of the allowed specials that needs no quoting in a shell or a URL.
    const SAFE_SPECIALS: &[u8] = b"-_.@%+=";
    let mut rng = rand::rng();
    let mut pick = |set: &[u8]| set[rng.random_range(0..set.len())] as char;
    let mut chars: Vec<char> = vec![pick(UPPER), pick(LOWER), pick(DIGITS), pick(SAFE_SPECIALS)];
    let all: Vec<u8> = [UPPER, LOWER, DIGITS, SAFE_SPECIALS].concat();
    while chars.len() < 16 {
        chars.push(pick(&all));
    }
    // Shuffle so the character classes are not always in the same positions.
    for i in (1..chars.len()).rev() {
        let j = rand::rng().random_range(0..=i);
        chars.swap(i, j);
    }
    chars.into_iter().collect()
}

/// Hashes a password with argon2id and a fresh random salt, as a PHC string.
///
/// This takes tens of milliseconds on purpose; call it on a blocking thread.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|err| AuthError::Hashing(err.to_string()))
}

/// Checks a password against a PHC string made by [`hash_password`].
///
/// A stored hash that cannot be parsed never matches. Slow on purpose; call it on a blocking
/// thread.
pub fn verify_password(password: &str, stored_hash: &str) -> bool {
    match PasswordHash::new(stored_hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spends the same time as [`verify_password`] and always fails.
///
/// Used when the user does not exist, so that the response time of a failed login does not
/// reveal which user names exist.
pub fn verify_against_dummy(password: &str) {
    static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
        hash_password("dummy-password-never-matches").expect("hashing a constant works")
    });
    let _ = verify_password(password, &DUMMY_HASH);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_rule_is_enforced() {
        assert!(check_password_rule("Secret-123").is_ok());
        for weak in [
            "Se-1",
            "Secret-123456789012",
            "secret-123",
            "SECRET-123",
            "Secret-abc",
            "Secret1234",
        ] {
            assert!(check_password_rule(weak).is_err(), "{weak} was accepted");
        }
    }

    #[test]
    fn generated_passwords_satisfy_the_rule_and_differ() {
        let first = generate_password();
        for _ in 0..200 {
            check_password_rule(&generate_password()).unwrap();
        }
        assert_ne!(first, generate_password());
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("Secret-123").unwrap();
        assert!(verify_password("Secret-123", &hash));
        assert!(!verify_password("Secret-124", &hash));
        assert!(!verify_password("Secret-123", "not a phc string"));
    }
}
