//! Who is asking: login against the users file, sessions, CSRF tokens, throttling.
//!
//! - Login verifies the password with argon2id; an unknown user costs the same work
//!   (a dummy hash is verified), so timing does not tell which names exist.
//! - Repeated failures are throttled per user and per client address: after
//!   [`FREE_FAILURES_USER`] (user) or [`FREE_FAILURES_ADDR`] (address) failures in a row,
//!   each further attempt must wait, starting at [`FIRST_DELAY`] and doubling up to
//!   [`MAX_DELAY`]; attempts during the wait are refused without checking the password.
//!   A success clears the user's count and the address's. No permanent lockout: an
//!   attacker cannot lock an operator out for longer than [`MAX_DELAY`].
//! - A session is a 256-bit random token in the cookie `hvha_session` (HttpOnly,
//!   SameSite=Strict, Path=/, Secure under TLS), kept in memory only: a restart of
//!   `hactl run` logs everyone out. It ends after `session_idle` without a request, at
//!   logout, or when its user leaves the users file; its role is the file's current one.
//!   At most [`MAX_SESSIONS`]: the least recently used goes first.
//! - Each session has its own 256-bit CSRF token, compared in constant time.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::users::{self, UserStore};
use super::{Role, User};

/// The session cookie's name.
pub const COOKIE: &str = "hvha_session";
/// Most sessions at once.
pub const MAX_SESSIONS: usize = 4096;
/// Failures in a row a user gets before throttling.
pub const FREE_FAILURES_USER: u32 = 5;
/// Failures in a row an address gets before throttling.
pub const FREE_FAILURES_ADDR: u32 = 20;
/// The first wait.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest wait.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Failures are forgotten this long after the last one.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(30 * 60);
/// Most users and addresses remembered (the oldest are forgotten first).
pub const MAX_TRACKED: usize = 10_000;
/// Most password verifications at once (each takes 19 MiB for a moment).
pub const MAX_VERIFYING: usize = 4;

/// 32 random bytes in hex.
pub fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Equal, in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A session.
#[derive(Debug, Clone)]
struct Session {
    user: String,
    csrf: String,
    last_used: Instant,
}

/// A session found by its token: the user as the users file says now, its CSRF token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    /// The user.
    pub user: User,
    /// The session's CSRF token.
    pub csrf: String,
}

/// The sessions, in memory.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    idle: Duration,
}

impl Sessions {
    /// No session yet; each ends after `idle` unused.
    pub fn new(idle: Duration) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            idle,
        }
    }

    /// A new session for `user`: its token (`None` without randomness).
    pub fn create(&self, user: &str) -> Option<String> {
        let token = random_token()?;
        let csrf = random_token()?;
        let mut map = self.map.lock().ok()?;
        let idle = self.idle;
        map.retain(|_, s| s.last_used.elapsed() < idle);
        while map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(t, _)| t.clone())?;
            if let Some(s) = map.remove(&oldest) {
                tracing::warn!(user = %s.user, "{MAX_SESSIONS} sessions: the least recently used ended");
            }
        }
        map.insert(
            token.clone(),
            Session {
                user: user.to_owned(),
                csrf,
                last_used: Instant::now(),
            },
        );
        Some(token)
    }

    /// The session of `token`, if it is alive and its user still exists (`touch`: the
    /// request counts as use).
    pub fn get(&self, token: &str, users: &UserStore, touch: bool) -> Option<Active> {
        if token.len() != 64 {
            return None;
        }
        let mut map = self.map.lock().ok()?;
        let session = map.get_mut(token)?;
        if session.last_used.elapsed() >= self.idle {
            tracing::info!(user = %session.user, "session expired (idle)");
            map.remove(token);
            return None;
        }
        let Some(account) = users.find(&session.user) else {
            tracing::info!(user = %session.user, "session ended: the user left the users file");
            map.remove(token);
            return None;
        };
        if touch {
            session.last_used = Instant::now();
        }
        Some(Active {
            user: User {
                name: account.name,
                role: account.role,
            },
            csrf: session.csrf.clone(),
        })
    }

    /// End the session of `token`.
    pub fn remove(&self, token: &str) -> Option<String> {
        self.map.lock().ok()?.remove(token).map(|s| s.user)
    }

    /// How many sessions there are.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Failures in a row of one user or address.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Throttling of failed logins.
#[derive(Debug, Default)]
pub struct Throttle {
    users: Mutex<HashMap<String, Failures>>,
    addrs: Mutex<HashMap<String, Failures>>,
}

fn wait_left(f: &Failures, free: u32) -> Option<Duration> {
    if f.last.elapsed() >= FAILURE_MEMORY || f.count < free {
        return None;
    }
    let doublings = (f.count - free).min(20);
    let delay = FIRST_DELAY.saturating_mul(1u32 << doublings).min(MAX_DELAY);
    delay.checked_sub(f.last.elapsed()).filter(|d| !d.is_zero())
}

fn record(map: &Mutex<HashMap<String, Failures>>, key: &str) {
    let Ok(mut map) = map.lock() else { return };
    if map.len() >= MAX_TRACKED && !map.contains_key(key) {
        map.retain(|_, f| f.last.elapsed() < FAILURE_MEMORY);
        if map.len() >= MAX_TRACKED
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
    let f = map.entry(key.to_owned()).or_insert(Failures {
        count: 0,
        last: Instant::now(),
    });
    if f.last.elapsed() >= FAILURE_MEMORY {
        f.count = 0;
    }
    f.count = f.count.saturating_add(1);
    f.last = Instant::now();
}

impl Throttle {
    /// How long `user` from `addr` must still wait, if at all.
    pub fn wait(&self, user: &str, addr: &str) -> Option<Duration> {
        let u = self
            .users
            .lock()
            .ok()
            .and_then(|m| m.get(user).and_then(|f| wait_left(f, FREE_FAILURES_USER)));
        let a = self
            .addrs
            .lock()
            .ok()
            .and_then(|m| m.get(addr).and_then(|f| wait_left(f, FREE_FAILURES_ADDR)));
        u.max(a)
    }

    /// A failure of `user` from `addr`.
    pub fn failed(&self, user: &str, addr: &str) {
        record(&self.users, user);
        record(&self.addrs, addr);
    }

    /// A success: both counts cleared.
    pub fn succeeded(&self, user: &str, addr: &str) {
        if let Ok(mut m) = self.users.lock() {
            m.remove(user);
        }
        if let Ok(mut m) = self.addrs.lock() {
            m.remove(addr);
        }
    }
}

/// How a login attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// The password is right.
    Ok(User),
    /// Unknown user or wrong password (the same answer for both).
    Failed,
    /// Too many failures: wait this long.
    Throttled(Duration),
}

/// Login: the users file, the throttle, bounded concurrent verification.
#[derive(Debug)]
pub struct Login {
    dummy: String,
    throttle: Throttle,
    verifying: Mutex<usize>,
    slot_free: Condvar,
}

impl Login {
    /// Ready to verify (the dummy hash for unknown users is made now).
    pub fn new() -> Result<Login, String> {
        let secret = random_token().ok_or("no randomness for the dummy hash")?;
        Ok(Login {
            dummy: users::hash_password(&secret)?,
            throttle: Throttle::default(),
            verifying: Mutex::new(0),
            slot_free: Condvar::new(),
        })
    }

    /// Check `name` / `password` from `addr` (an IP address). Logs the outcome.
    pub fn attempt(
        &self,
        users: &UserStore,
        name: &str,
        password: &str,
        addr: &str,
    ) -> LoginOutcome {
        // As logged and as the throttle's key: bounded, no control character (a name
        // with a line break must not forge a log line).
        let shown: String = name
            .chars()
            .take(users::MAX_NAME)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        if let Some(wait) = self.throttle.wait(&shown, addr) {
            tracing::warn!(user = %shown, from = %addr, wait_s = wait.as_secs(), "login throttled");
            return LoginOutcome::Throttled(wait);
        }
        let account = users.find(name);
        let hash = account
            .as_ref()
            .map_or(self.dummy.as_str(), |a| a.hash.as_str());
        let password = if password.len() > users::MAX_PASSWORD {
            ""
        } else {
            password
        };
        let ok = self.verify(password, hash) && account.is_some();
        match account {
            Some(a) if ok => {
                self.throttle.succeeded(&shown, addr);
                tracing::info!(user = %a.name, from = %addr, role = %a.role, "login ok");
                LoginOutcome::Ok(User {
                    name: a.name,
                    role: a.role,
                })
            }
            _ => {
                self.throttle.failed(&shown, addr);
                tracing::warn!(user = %shown, from = %addr, "login failed");
                LoginOutcome::Failed
            }
        }
    }

    fn verify(&self, password: &str, hash: &str) -> bool {
        // At most MAX_VERIFYING at once: a burst of logins waits rather than taking
        // 19 MiB each.
        {
            let Ok(mut n) = self.verifying.lock() else {
                return false;
            };
            while *n >= MAX_VERIFYING {
                n = match self.slot_free.wait(n) {
                    Ok(n) => n,
                    Err(_) => return false,
                };
            }
            *n += 1;
        }
        let ok = users::verify_password(password, hash);
        if let Ok(mut n) = self.verifying.lock() {
            *n = n.saturating_sub(1);
        }
        self.slot_free.notify_one();
        ok
    }
}

/// May `role` act?
pub fn may_act(role: Role) -> bool {
    role == Role::Operator
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn throttling_doubles_and_a_success_clears_it() {
        let t = Throttle::default();
        for _ in 0..FREE_FAILURES_USER - 1 {
            t.failed("alice", "10.0.0.1");
            assert_eq!(t.wait("alice", "10.0.0.1"), None);
        }
        t.failed("alice", "10.0.0.1");
        let w = t.wait("alice", "10.0.0.1").unwrap();
        assert!(w <= FIRST_DELAY && w > Duration::ZERO, "{w:?}");
        t.failed("alice", "10.0.0.1");
        let w = t.wait("alice", "10.0.0.2").unwrap();
        assert!(w > FIRST_DELAY && w <= FIRST_DELAY * 2, "{w:?}");
        // Another user from the same address is not held back yet.
        assert_eq!(t.wait("bob", "10.0.0.3"), None);
        t.succeeded("alice", "10.0.0.1");
        assert_eq!(t.wait("alice", "10.0.0.1"), None);
        let f = Failures {
            count: 100,
            last: Instant::now(),
        };
        assert!(wait_left(&f, 5).unwrap() <= MAX_DELAY);
    }

    #[test]
    fn tokens_are_256_bits_and_compared_whole() {
        let a = random_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, random_token().unwrap());
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &a[..63]));
        assert!(!same("", "x"));
    }
}
