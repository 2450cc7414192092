//! Passwords: the reference's rule for passwords a person chooses, argon2 hashing and checking
//! (with reused memory), and a generator for the admin password when none is given.

use std::sync::{LazyLock, Mutex};

use argon2::password_hash::PasswordHasher;
use argon2::password_hash::phc::Output;
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
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

/// Checks passwords against PHC strings made by [`hash_password`], reusing the working memory
/// of argon2 (19 MiB per check with the default parameters) between checks.
///
/// Allocating that memory afresh for every check made a flood of failed sign-ins grow the
/// server for good: the allocator serves blocks of that size from per-thread arenas that it
/// never returns. With reuse, the memory of checks is at most `kept` buffers plus those of the
/// checks running at once (which the caller bounds).
pub struct PasswordChecker {
    spare: Mutex<Vec<Vec<Block>>>,
    kept: usize,
}

impl PasswordChecker {
    /// A checker that keeps up to `kept` buffers between checks.
    pub fn new(kept: usize) -> PasswordChecker {
        PasswordChecker {
            spare: Mutex::new(Vec::new()),
            kept,
        }
    }

    /// Whether `password` matches `stored_hash`. A stored hash that cannot be parsed never
    /// matches. Slow on purpose; call it on a blocking thread.
    pub fn verify(&self, password: &str, stored_hash: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(stored_hash) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
            return false;
        };
        let (Ok(params), Ok(algorithm)) = (
            Params::try_from(&parsed),
            Algorithm::try_from(parsed.algorithm.as_str()),
        ) else {
            return false;
        };
        let Ok(version) = parsed
            .version
            .map_or(Ok(Version::default()), Version::try_from)
        else {
            return false;
        };
        let mut memory = self.take_memory(params.block_count());
        let mut computed = vec![0u8; expected.len()];
        let hashed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut computed,
            &mut memory[..],
        );
        self.give_back(memory);
        // `Output` compares in constant time.
        hashed.is_ok() && Output::new(&computed).is_ok_and(|computed| computed == *expected)
    }

    /// Spends the same time as [`PasswordChecker::verify`] and always fails.
    ///
    /// Used when the user does not exist, so that the response time of a failed login does not
    /// reveal which user names exist.
    pub fn verify_against_dummy(&self, password: &str) {
        static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
            hash_password("dummy-password-never-matches").expect("hashing a constant works")
        });
        let _ = self.verify(password, &DUMMY_HASH);
    }

    fn take_memory(&self, blocks: usize) -> Vec<Block> {
        let reused = {
            let mut spare = self.spare();
            let found = spare.iter().position(|memory| memory.len() == blocks);
            found.map(|index| spare.swap_remove(index))
        };
        reused.unwrap_or_else(|| vec![Block::default(); blocks])
    }

    fn give_back(&self, memory: Vec<Block>) {
        let mut spare = self.spare();
        if spare.len() < self.kept {
            spare.push(memory);
        }
    }

    fn spare(&self) -> std::sync::MutexGuard<'_, Vec<Vec<Block>>> {
        self.spare
            .lock()
            .expect("password memory lock poisoned. This is a bug.")
    }
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
    fn a_hash_verifies_its_password_only_with_memory_reused() {
        let checker = PasswordChecker::new(1);
        let hash = hash_password("Secret-123").unwrap();
        assert!(checker.verify("Secret-123", &hash));
        assert!(!checker.verify("Secret-124", &hash));
        assert!(!checker.verify("Secret-123", "not a phc string"));
        checker.verify_against_dummy("Secret-123");
        assert_eq!(checker.spare().len(), 1, "one buffer served every check");
        assert!(
            checker.verify("Secret-123", &hash),
            "reused memory gave another hash"
        );
    }

    #[test]
    fn hashes_of_other_parameters_are_checked_too() {
        let params = Params::new(1024, 2, 1, Some(16)).unwrap();
        let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_with_salt(b"Secret-123", b"saltsaltsalt")
            .unwrap()
            .to_string();
        let checker = PasswordChecker::new(2);
        assert!(checker.verify("Secret-123", &hash));
        assert!(!checker.verify("secret-123", &hash));
    }
}
