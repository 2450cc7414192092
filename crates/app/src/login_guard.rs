//! What stands between `POST /login` and the password hash: failed sign-ins limited per client
//! address and per user name, and a bounded number of password checks at once.
//!
//! Every password check runs argon2 (19 MiB and tens of milliseconds of CPU), for unknown users
//! too, so that timing does not reveal who exists. Unbounded, a flood of bad logins needs no
//! account at all to take the server's memory and CPU (400 parallel ones took a server to
//! 7.5 GiB). So:
//! * failures are counted per client address (IPv6 by its /64, which one client usually holds
//!   whole) and per user name with `governor`; a key over its quota is blocked until the quota
//!   lets it try again, and its attempts are answered 429 with `Retry-After` before any hashing;
//! * at most `max_concurrent_checks` passwords are checked at once; an attempt that cannot
//!   start one within `check_wait` is answered 429 as well (a directory's bind is not a local
//!   check, and does not wait for one). The checks reuse as many argon2 buffers, so that the
//!   memory of sign-ins stays that size however many come.
//!
//! Only failures count, so that many people signing in through one proxy are not refused.
//! Blocks are kept in a `moka` cache bounded in size and time, and the failure counters are
//! pruned when they grow, so a spray of addresses or names costs bounded memory.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use o16n_auth::PasswordChecker;
use o16n_types::Username;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::{AppError, run_blocking};

/// The most keys whose failures are counted before idle ones are forgotten.
const MAX_COUNTED_KEYS: usize = 100_000;

/// Limits of sign-in attempts.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Failed sign-ins one client address may make in a burst; they are then allowed again at
    /// this many per `failure_window`.
    pub failures_per_address: u32,
    /// The same per user name.
    pub failures_per_user: u32,
    /// The time in which a key's full allowance of failures comes back.
    pub failure_window: Duration,
    /// Password checks (argon2) at once.
    pub max_concurrent_checks: usize,
    /// How long an attempt waits for a password check to start before it is refused.
    pub check_wait: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            failures_per_address: 30,
            failures_per_user: 10,
            failure_window: Duration::from_secs(60),
            max_concurrent_checks: 2,
            check_wait: Duration::from_secs(2),
        }
    }
}

/// Who is trying to sign in, as far as limits are concerned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    User(String),
}

/// The guard of password checks. Cheap to clone.
#[derive(Clone)]
pub(crate) struct LoginGuard {
    inner: Arc<Inner>,
}

struct Inner {
    per_address: DefaultKeyedRateLimiter<Key>,
    per_user: DefaultKeyedRateLimiter<Key>,
    /// Keys over their quota, with when they may try again.
    blocked: moka::sync::Cache<Key, Instant>,
    checks: Semaphore,
    checker: Arc<PasswordChecker>,
    check_wait: Duration,
}

/// One of the concurrent password checks, held until it is done.
pub(crate) struct PasswordCheck<'a> {
    _permit: SemaphorePermit<'a>,
    checker: Arc<PasswordChecker>,
}

impl PasswordCheck<'_> {
    /// Whether `password` matches `stored_hash`; with no hash (an unknown user), spends the
    /// time of a check and fails, so that timing does not reveal who exists.
    pub(crate) async fn verify(
        self,
        password: String,
        stored_hash: Option<String>,
    ) -> Result<bool, AppError> {
        let checker = self.checker.clone();
        run_blocking(move || match stored_hash {
            Some(stored_hash) => checker.verify(&password, &stored_hash),
            None => {
                checker.verify_against_dummy(&password);
                false
            }
        })
        .await
    }
}

/// A sign-in attempt that was let through: it counts as a failure against its keys if told so.
pub(crate) struct Attempt<'a> {
    guard: &'a LoginGuard,
    keys: Vec<Key>,
}

impl LoginGuard {
    pub(crate) fn new(limits: LoginLimits) -> LoginGuard {
        let quota = |burst: u32| {
            let burst = NonZeroU32::new(burst.max(1)).expect("at least one");
            let period = (limits.failure_window / burst.get()).max(Duration::from_millis(1));
            Quota::with_period(period)
                .expect("a period of at least a millisecond")
                .allow_burst(burst)
        };
        LoginGuard {
            inner: Arc::new(Inner {
                per_address: DefaultKeyedRateLimiter::keyed(quota(limits.failures_per_address)),
                per_user: DefaultKeyedRateLimiter::keyed(quota(limits.failures_per_user)),
                blocked: moka::sync::Cache::builder()
                    .max_capacity(MAX_COUNTED_KEYS as u64)
                    .time_to_live(limits.failure_window.max(Duration::from_secs(1)))
                    .build(),
                checks: Semaphore::new(limits.max_concurrent_checks.max(1)),
                checker: Arc::new(PasswordChecker::new(limits.max_concurrent_checks.max(1))),
                check_wait: limits.check_wait,
            }),
        }
    }

    /// Lets an attempt to sign in as `username` from `client` go on, unless either is blocked.
    pub(crate) fn admit(
        &self,
        client: Option<IpAddr>,
        username: &str,
    ) -> Result<Attempt<'_>, AppError> {
        let keys = keys(client, username);
        self.refuse_if_blocked(&keys)?;
        Ok(Attempt { guard: self, keys })
    }

    /// Waits for one of the concurrent password checks; refused when none frees up in time.
    pub(crate) async fn password_check(&self) -> Result<PasswordCheck<'_>, AppError> {
        match tokio::time::timeout(self.inner.check_wait, self.inner.checks.acquire()).await {
            Ok(permit) => Ok(PasswordCheck {
                _permit: permit.expect("the semaphore is never closed"),
                checker: self.inner.checker.clone(),
            }),
            Err(_) => Err(AppError::TooManyRequests {
                message: "too many sign-ins are being checked; try again shortly".to_owned(),
                retry_after_seconds: Some(1),
            }),
        }
    }

    fn refuse_if_blocked(&self, keys: &[Key]) -> Result<(), AppError> {
        let now = Instant::now();
        let until = keys
            .iter()
            .filter_map(|key| self.inner.blocked.get(key))
            .filter(|until| *until > now)
            .max();
        match until {
            Some(until) => Err(AppError::TooManyRequests {
                message: "too many failed sign-ins; try again later".to_owned(),
                retry_after_seconds: Some((until - now).as_secs() + 1),
            }),
            None => Ok(()),
        }
    }

    fn record_failure(&self, keys: &[Key]) {
        let clock = DefaultClock::default();
        for key in keys {
            let limiter = match key {
                Key::Address(_) => &self.inner.per_address,
                Key::User(_) => &self.inner.per_user,
            };
            if let Err(not_until) = limiter.check_key(key) {
                let wait = not_until.wait_time_from(clock.now());
                self.inner
                    .blocked
                    .insert(key.clone(), Instant::now() + wait);
            }
            if limiter.len() > MAX_COUNTED_KEYS {
                limiter.retain_recent();
            }
        }
    }
}

impl Attempt<'_> {
    /// Refuses the attempt if one of its keys was blocked since it was admitted (while it
    /// waited for a password check).
    pub(crate) fn still_allowed(&self) -> Result<(), AppError> {
        self.guard.refuse_if_blocked(&self.keys)
    }

    /// Counts a failed sign-in against the client's address and the user name.
    pub(crate) fn failed(self) {
        self.guard.record_failure(&self.keys);
    }
}

/// The keys an attempt counts against: the client's address (IPv6 by its /64) and the user
/// name when it is a valid one (others cannot exist, and are not kept).
fn keys(client: Option<IpAddr>, username: &str) -> Vec<Key> {
    let mut keys = Vec::with_capacity(2);
    if let Some(address) = client {
        let address = match address {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let prefix = u128::from(v6) & !((1_u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
            IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().expect("checked above")),
            v4 => v4,
        };
        keys.push(Key::Address(address));
    }
    if let Ok(username) = Username::parse(username) {
        keys.push(Key::User(username.as_str().to_lowercase()));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LoginLimits {
        LoginLimits {
            failures_per_address: 3,
            failures_per_user: 2,
            failure_window: Duration::from_secs(600),
            max_concurrent_checks: 1,
            check_wait: Duration::from_millis(50),
        }
    }

    fn address(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[tokio::test]
    async fn a_user_name_is_blocked_after_its_failures_from_any_address() {
        let guard = LoginGuard::new(limits());
        for client in ["10.0.0.1", "10.0.0.2"] {
            guard.admit(address(client), "alice").unwrap().failed();
        }
        // Two failures use the burst; the third is counted and blocks the name.
        guard.admit(address("10.0.0.3"), "alice").unwrap().failed();
        let refused = guard.admit(address("10.0.0.4"), "alice");
        assert!(matches!(
            refused,
            Err(AppError::TooManyRequests { retry_after_seconds: Some(seconds), .. }) if seconds > 1
        ));
        // Another user from a fresh address is not affected.
        assert!(guard.admit(address("10.0.0.5"), "bob").is_ok());
    }

    #[tokio::test]
    async fn an_address_is_blocked_whatever_names_it_tries() {
        let guard = LoginGuard::new(limits());
        for name in ["a1", "a2", "a3", "a4"] {
            if let Ok(attempt) = guard.admit(address("2001:db8::1"), name) {
                attempt.failed();
            }
        }
        // Another address of the same /64 is the same client.
        assert!(matches!(
            guard.admit(address("2001:db8::99"), "a5"),
            Err(AppError::TooManyRequests { .. })
        ));
        assert!(guard.admit(address("2001:db9::1"), "a5").is_ok());
    }

    #[tokio::test]
    async fn successes_are_not_counted() {
        let guard = LoginGuard::new(limits());
        for _ in 0..20 {
            drop(guard.admit(address("10.0.0.1"), "alice").unwrap());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_that_cannot_start_a_check_in_time_is_refused() {
        let guard = LoginGuard::new(limits());
        let _running = guard.password_check().await.unwrap();
        assert!(matches!(
            guard.password_check().await,
            Err(AppError::TooManyRequests {
                retry_after_seconds: Some(1),
                ..
            })
        ));
    }
}
