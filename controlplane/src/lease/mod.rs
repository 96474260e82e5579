//! Leadership of a host group: which of several `hactl run` acts for it.
//!
//! Per host group one controller leads, by a lease in the HSDB (table `leader_lease`,
//! docs/hsdb.md): a row naming the holder, a **fencing token** and an expiry on the
//! database's clock. Candidates try to take or renew it every `renew_every`; the row
//! changes holder only once it expired, and every change of holder gets a token larger
//! than any before. This module is the sans-IO side (quinn's way): [`Leadership`] is the
//! state machine of one group on one controller, fed with the time of a [`Monotonic`](crate::clock::Monotonic)
//! clock and the outcomes of the store's calls; [`LeaseStore`] is what it needs from a
//! store; [`memory::MemoryLeases`] is a store in memory on a virtual clock for tests.
//! The daemon's driver (a thread, the shared board, the fenced platform) is
//! [`crate::daemon::leadership`].
//!
//! **The local deadline.** A leader counts its lease from the monotonic instant it SENT
//! the renewal that succeeded, not from when the answer came: `deadline = sent + ttl −
//! margin`. The database computed the expiry from its own clock at some instant after
//! the send, so (clocks running at the same rate) the lease cannot expire in the
//! database before the local deadline, whatever the round trip took; `margin` covers
//! rate differences and the moment between a check and the act it allows. Before every
//! platform action and every HSDB write the daemon asks [`Leadership::check`]: past the
//! deadline the answer is no, even if no renewal failed — a process stopped with
//! `SIGSTOP` wakes up past its deadline (the monotonic clock ran on) and acts on
//! nothing until a renewal succeeds again.

pub mod memory;

use std::collections::VecDeque;
use std::fmt;

pub use hsdb::{Lease, LeaseOutcome};

/// The lease name of the duties that concern the whole HSDB rather than a host group:
/// the event log notifier and the housekeeping. Host group names are never empty, so it
/// cannot clash with one.
pub const HSDB_DUTIES: &str = "";

/// A lease's name for people: the host group, or `(hsdb duties)`.
pub fn lease_name(group: &str) -> &str {
    if group == HSDB_DUTIES {
        "(hsdb duties)"
    } else {
        group
    }
}

/// What leadership needs from a store. The HSDB implements it (on PostgreSQL with the
/// database's clock, docs/hsdb.md); [`memory::MemoryLeases`] in memory for tests.
pub trait LeaseStore {
    /// Take the lease of `group` for `holder` if it is free, expired or released, renew
    /// it if `holder` has it, else say who has it. `ttl_ms` from the store's clock.
    fn acquire(&mut self, group: &str, holder: &str, ttl_ms: u64) -> Result<LeaseOutcome, String>;
    /// Give the lease up (at a clean stop, so the next candidate need not wait for the
    /// expiry): `true` if `holder` had it. The row and its token stay.
    fn release(&mut self, group: &str, holder: &str) -> Result<bool, String>;
}

impl LeaseStore for hsdb::Hsdb {
    fn acquire(&mut self, group: &str, holder: &str, ttl_ms: u64) -> Result<LeaseOutcome, String> {
        self.lease_acquire(group, holder, i64::try_from(ttl_ms).unwrap_or(i64::MAX))
            .map_err(|e| e.to_string())
    }

    fn release(&mut self, group: &str, holder: &str) -> Result<bool, String> {
        self.lease_release(group, holder).map_err(|e| e.to_string())
    }
}

/// Default lease duration.
pub const DEFAULT_TTL_MS: u64 = 10_000;
/// Default time between two acquisition or renewal attempts.
pub const DEFAULT_RENEW_EVERY_MS: u64 = 2_000;
/// Default safety margin taken off the local deadline.
pub const DEFAULT_MARGIN_MS: u64 = 1_000;

/// The lease's timing. [`LeaseSettings::check`] gives the ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// How long a lease lasts after its last renewal (on the database's clock).
    pub ttl_ms: u64,
    /// Every candidate tries this often (the leader renews, the others try to acquire).
    pub renew_every_ms: u64,
    /// Taken off the local deadline: rate differences between the clocks, and the time
    /// between a check and the act it allowed.
    pub margin_ms: u64,
}

impl Default for LeaseSettings {
    fn default() -> LeaseSettings {
        LeaseSettings {
            ttl_ms: DEFAULT_TTL_MS,
            renew_every_ms: DEFAULT_RENEW_EVERY_MS,
            margin_ms: DEFAULT_MARGIN_MS,
        }
    }
}

/// A lease setting out of its range: the key, the value and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} = {value} is invalid: expected {allowed}")]
pub struct LeaseSettingError {
    /// The key (`lease.ttl_ms`, …).
    pub key: &'static str,
    /// The value.
    pub value: u64,
    /// What is allowed, given the other settings.
    pub allowed: String,
}

impl LeaseSettings {
    /// Range of `ttl_ms`.
    pub const TTL_RANGE: std::ops::RangeInclusive<u64> = 2_000..=300_000;
    /// Range of `renew_every_ms` (also at most a third of the ttl).
    pub const RENEW_RANGE: std::ops::RangeInclusive<u64> = 100..=60_000;
    /// Range of `margin_ms` (also at most a quarter of the ttl).
    pub const MARGIN_RANGE: std::ops::RangeInclusive<u64> = 50..=60_000;

    /// Check the ranges and how the three relate: a leader gets at least three renewal
    /// attempts before its lease expires (`renew_every ≤ ttl / 3`) and its local
    /// deadline keeps most of the lease (`margin ≤ ttl / 4`).
    pub fn check(&self) -> Result<(), LeaseSettingError> {
        let bad = |key, value, allowed: String| LeaseSettingError {
            key,
            value,
            allowed,
        };
        let range = |r: &std::ops::RangeInclusive<u64>| format!("{}..={} (ms)", r.start(), r.end());
        if !Self::TTL_RANGE.contains(&self.ttl_ms) {
            return Err(bad("lease.ttl_ms", self.ttl_ms, range(&Self::TTL_RANGE)));
        }
        let renew_max = (*Self::RENEW_RANGE.end()).min(self.ttl_ms / 3);
        if !(*Self::RENEW_RANGE.start()..=renew_max).contains(&self.renew_every_ms) {
            return Err(bad(
                "lease.renew_every_ms",
                self.renew_every_ms,
                format!(
                    "{}..={renew_max} (ms; at most a third of lease.ttl_ms = {})",
                    Self::RENEW_RANGE.start(),
                    self.ttl_ms
                ),
            ));
        }
        let margin_max = (*Self::MARGIN_RANGE.end()).min(self.ttl_ms / 4);
        if !(*Self::MARGIN_RANGE.start()..=margin_max).contains(&self.margin_ms) {
            return Err(bad(
                "lease.margin_ms",
                self.margin_ms,
                format!(
                    "{}..={margin_max} (ms; at most a quarter of lease.ttl_ms = {})",
                    Self::MARGIN_RANGE.start(),
                    self.ttl_ms
                ),
            ));
        }
        Ok(())
    }

    /// The longest a host group goes without a leader after its leader died (killed,
    /// stopped, cut off) right after a renewal: the lease runs out (`ttl`), a candidate
    /// tries within `renew_every`, and its engine scans at once — plus that one scan
    /// (`scan_interval_ms`: the engine's first scan runs at once, but a scan that finds
    /// a failure acts at the next one that confirms it, so count one).
    pub fn takeover_bound_ms(&self, scan_interval_ms: u64) -> u64 {
        self.ttl_ms
            .saturating_add(self.renew_every_ms)
            .saturating_add(scan_interval_ms)
    }
}

/// Why a check refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// This controller does not lead the group (another does, or nobody yet).
    NotLeader {
        /// The holder last seen, if any.
        leader: Option<String>,
    },
    /// This controller led with `token` but its local deadline passed without a renewal
    /// (stopped, cut off from the database, or the database slow).
    Expired {
        /// The token it led with.
        token: i64,
        /// How long ago the deadline passed.
        late_by_ms: u64,
    },
    /// The lease this act was bound to (`token`) is not the one held now: the engine that
    /// asked belongs to an earlier term.
    Superseded {
        /// The token it was bound to.
        bound: i64,
        /// The token held now, if any.
        now: Option<i64>,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotLeader { leader: Some(l) } => {
                write!(f, "this controller does not lead ({l} does)")
            }
            Refusal::NotLeader { leader: None } => {
                f.write_str("this controller does not lead (no leader seen yet)")
            }
            Refusal::Expired { token, late_by_ms } => write!(
                f,
                "the lease (token {token}) passed its local deadline {late_by_ms} ms ago \
                 without a renewal"
            ),
            Refusal::Superseded {
                bound,
                now: Some(n),
            } => {
                write!(f, "bound to token {bound}, the lease held now is token {n}")
            }
            Refusal::Superseded { bound, now: None } => {
                write!(f, "bound to token {bound}, no lease held now")
            }
        }
    }
}

/// A change of role, for the log and the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    /// This controller leads now, with `token`.
    Gained {
        /// The token.
        token: i64,
        /// Until when the database holds it (its clock).
        expires_ms: i64,
    },
    /// This controller no longer leads.
    Lost {
        /// The token it led with.
        token: i64,
        /// Why.
        why: LossReason,
    },
    /// Another holder leads now (first seen, or a new token).
    LeaderSeen {
        /// The holder.
        holder: String,
        /// Its token.
        token: i64,
    },
}

/// Why a leader stopped leading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LossReason {
    /// The local deadline passed without a successful renewal.
    DeadlinePassed {
        /// The failed attempts since the last success.
        failed_attempts: u64,
    },
    /// A renewal found the lease held by another (ours had expired in the database).
    TakenOver {
        /// The new holder.
        holder: String,
        /// Its token.
        token: i64,
    },
    /// A renewal came back too late to be of use: its own deadline had passed already.
    RenewalTooLate {
        /// How long the attempt took.
        took_ms: u64,
    },
    /// The lease lapsed in the database and this controller acquired it again, with a
    /// new token: what the old token's engine did is the past of another term.
    Lapsed {
        /// The new token.
        new_token: i64,
    },
    /// Released at a clean stop.
    Released,
}

impl fmt::Display for LossReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LossReason::DeadlinePassed { failed_attempts } => write!(
                f,
                "local deadline passed without a renewal ({failed_attempts} attempt(s) failed)"
            ),
            LossReason::TakenOver { holder, token } => {
                write!(f, "taken over by {holder} (token {token})")
            }
            LossReason::RenewalTooLate { took_ms } => write!(
                f,
                "the renewal took {took_ms} ms and came back past its own deadline"
            ),
            LossReason::Lapsed { new_token } => write!(
                f,
                "the lease lapsed in the database; acquired again as token {new_token}"
            ),
            LossReason::Released => f.write_str("released"),
        }
    }
}

/// An attempt in flight: when it was sent (monotonic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// Monotonic ms when the request was sent.
    pub sent_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Leading {
    token: i64,
    /// Monotonic local deadline.
    deadline_ms: u64,
    /// The database's expiry, for the status.
    expires_ms: i64,
}

/// One controller's leadership of one host group, sans IO: the caller asks
/// [`poll_attempt`](Self::poll_attempt) when to call the store, gives back the outcome
/// with [`handle_outcome`](Self::handle_outcome), calls
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout), and
/// drains [`poll_event`](Self::poll_event).
#[derive(Debug, Clone)]
pub struct Leadership {
    group: String,
    holder: String,
    settings: LeaseSettings,
    leading: Option<Leading>,
    /// The lease last seen (ours or another's).
    seen: Option<Lease>,
    next_attempt_ms: u64,
    in_flight: Option<Attempt>,
    failed_attempts: u64,
    last_error: Option<String>,
    events: VecDeque<LeaseEvent>,
}

impl Leadership {
    /// A candidate for `group` as `holder`; its first attempt is due at `now_ms`.
    pub fn new(group: &str, holder: &str, settings: LeaseSettings, now_ms: u64) -> Leadership {
        Leadership {
            group: group.to_owned(),
            holder: holder.to_owned(),
            settings,
            leading: None,
            seen: None,
            next_attempt_ms: now_ms,
            in_flight: None,
            failed_attempts: 0,
            last_error: None,
            events: VecDeque::new(),
        }
    }

    /// The host group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// This controller's holder id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The settings.
    pub fn settings(&self) -> LeaseSettings {
        self.settings
    }

    /// The token this controller leads with, if it leads (deadline not checked: see
    /// [`check`](Self::check)).
    pub fn token(&self) -> Option<i64> {
        self.leading.map(|l| l.token)
    }

    /// The local deadline, monotonic ms, while leading.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.leading.map(|l| l.deadline_ms)
    }

    /// The lease last seen: ours while leading, else the leader's (or the last holder's).
    pub fn seen(&self) -> Option<&Lease> {
        self.seen.as_ref()
    }

    /// The last attempt's error, if the last attempt failed.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Attempts failed since the last success.
    pub fn failed_attempts(&self) -> u64 {
        self.failed_attempts
    }

    /// May this controller act for the group now? `Ok(token)` while it leads and its
    /// local deadline has not passed.
    pub fn check(&self, now_ms: u64) -> Result<i64, Refusal> {
        match self.leading {
            Some(l) if now_ms < l.deadline_ms => Ok(l.token),
            Some(l) => Err(Refusal::Expired {
                token: l.token,
                late_by_ms: now_ms - l.deadline_ms,
            }),
            None => Err(Refusal::NotLeader {
                leader: self
                    .seen
                    .as_ref()
                    .filter(|l| l.holder != self.holder)
                    .map(|l| l.holder.clone()),
            }),
        }
    }

    /// When the caller must come back: the next attempt, or the local deadline if it
    /// comes first.
    pub fn poll_timeout(&self) -> u64 {
        let next = if self.in_flight.is_some() {
            u64::MAX
        } else {
            self.next_attempt_ms
        };
        self.leading.map_or(next, |l| next.min(l.deadline_ms))
    }

    /// An attempt is due: the caller sends it to the store now and gives the outcome to
    /// [`handle_outcome`](Self::handle_outcome). `None`: not due, or one is in flight.
    pub fn poll_attempt(&mut self, now_ms: u64) -> Option<Attempt> {
        // A deadline that passed before the attempt is the reason of the loss, whatever
        // the attempt finds.
        self.handle_timeout(now_ms);
        if self.in_flight.is_some() || now_ms < self.next_attempt_ms {
            return None;
        }
        let attempt = Attempt { sent_ms: now_ms };
        self.in_flight = Some(attempt);
        self.next_attempt_ms = now_ms.saturating_add(self.settings.renew_every_ms);
        Some(attempt)
    }

    /// Try again at once (a check found the deadline passed: a renewal may still save
    /// the lease if nobody took it).
    pub fn expedite(&mut self, now_ms: u64) {
        self.next_attempt_ms = self.next_attempt_ms.min(now_ms);
    }

    /// The store answered `attempt` (or failed) at `now_ms`.
    pub fn handle_outcome(
        &mut self,
        attempt: Attempt,
        outcome: Result<LeaseOutcome, String>,
        now_ms: u64,
    ) {
        if self.in_flight == Some(attempt) {
            self.in_flight = None;
        }
        let lease = match outcome {
            Err(why) => {
                self.failed_attempts += 1;
                self.last_error = Some(why);
                self.handle_timeout(now_ms);
                return;
            }
            Ok(o) => o,
        };
        self.failed_attempts = 0;
        self.last_error = None;
        match lease {
            LeaseOutcome::Acquired(l) | LeaseOutcome::Renewed(l) if l.holder == self.holder => {
                let deadline_ms = attempt
                    .sent_ms
                    .saturating_add(self.settings.ttl_ms)
                    .saturating_sub(self.settings.margin_ms);
                let token = l.token;
                let expires_ms = l.expires_ms;
                self.seen = Some(l);
                if now_ms >= deadline_ms {
                    // Useless already: acting on it would act past the deadline.
                    if let Some(old) = self.leading.take() {
                        self.events.push_back(LeaseEvent::Lost {
                            token: old.token,
                            why: LossReason::RenewalTooLate {
                                took_ms: now_ms - attempt.sent_ms,
                            },
                        });
                    }
                    return;
                }
                match self.leading {
                    Some(old) if old.token == token => {
                        self.leading = Some(Leading {
                            token,
                            deadline_ms: deadline_ms.max(old.deadline_ms),
                            expires_ms,
                        });
                    }
                    old => {
                        if let Some(old) = old {
                            self.events.push_back(LeaseEvent::Lost {
                                token: old.token,
                                why: LossReason::Lapsed { new_token: token },
                            });
                        }
                        self.leading = Some(Leading {
                            token,
                            deadline_ms,
                            expires_ms,
                        });
                        self.events
                            .push_back(LeaseEvent::Gained { token, expires_ms });
                    }
                }
            }
            LeaseOutcome::Acquired(l) | LeaseOutcome::Renewed(l) | LeaseOutcome::HeldBy(l) => {
                // Held by another (a store answering Acquired for another holder is
                // treated the same: it is not ours).
                if let Some(old) = self.leading.take() {
                    self.events.push_back(LeaseEvent::Lost {
                        token: old.token,
                        why: LossReason::TakenOver {
                            holder: l.holder.clone(),
                            token: l.token,
                        },
                    });
                }
                let new_leader = self
                    .seen
                    .as_ref()
                    .is_none_or(|s| s.holder != l.holder || s.token != l.token);
                if new_leader && l.holder != self.holder {
                    self.events.push_back(LeaseEvent::LeaderSeen {
                        holder: l.holder.clone(),
                        token: l.token,
                    });
                }
                self.seen = Some(l);
            }
        }
    }

    /// Step down if the local deadline has passed.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if let Some(l) = self.leading
            && now_ms >= l.deadline_ms
        {
            self.leading = None;
            self.events.push_back(LeaseEvent::Lost {
                token: l.token,
                why: LossReason::DeadlinePassed {
                    failed_attempts: self.failed_attempts,
                },
            });
        }
    }

    /// Give the lease up locally (the caller releases it in the store).
    pub fn step_down(&mut self) {
        if let Some(l) = self.leading.take() {
            self.events.push_back(LeaseEvent::Lost {
                token: l.token,
                why: LossReason::Released,
            });
        }
    }

    /// The next change of role, oldest first.
    pub fn poll_event(&mut self) -> Option<LeaseEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests;
