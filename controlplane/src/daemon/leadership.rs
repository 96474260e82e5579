//! Leadership in `hactl run`: the board every part of the daemon asks "may I act for
//! this host group now?", and the thread that keeps it true.
//!
//! - [`Board::sole`]: SQLite. One controller, no lease: every check says yes (a second
//!   `hactl run` on the same file is refused at start, see [`super::SoleLock`]).
//! - [`Board::leased`]: PostgreSQL. One [`Leadership`] per host group, plus one for the
//!   HSDB-wide duties ([`HSDB_DUTIES`]: event log, housekeeping, notifiers). [`Board::spawn`]
//!   starts the lease thread: it owns its own store connection and acquires or renews
//!   every lease every `renew_every`, so a scan that waits seconds on the platform never
//!   delays a renewal; it is woken early when a check finds a deadline passed.
//!
//! Checks ([`Board::check`]) run on the engine loop's thread before every platform call
//! ([`crate::platform::fenced::FencedPlatform`]) and before every HSDB write (the
//! database fence, docs/hsdb.md): a refusal is logged at warn with what was refused and
//! why, and counted per host group (actions, probes, writes), which `hactl status`
//! shows. Changes of role are logged with the token: `leading host group hg1 (token 7)`,
//! `no longer leading host group hg1 (token 7): taken over by …`.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Monotonic;
use crate::lease::{
    HSDB_DUTIES, Leadership, Lease, LeaseEvent, LeaseOutcome, LeaseSettings, LeaseStore, Refusal,
    lease_name,
};

/// What a check is about, for the counters and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// A platform action that changes something (stop, start, cleanup).
    Action,
    /// A platform probe (ping, power state, host alive, inventory).
    Probe,
    /// An HSDB write transaction.
    Write,
}

/// May this controller act for a host group?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The only controller (SQLite): always.
    Sole,
    /// It leads with this token (its local deadline has not passed).
    Lead {
        /// The fencing token.
        token: i64,
    },
    /// It does not lead.
    Follow {
        /// The lease last seen (the leader's, or the last holder's).
        leader: Option<Lease>,
    },
}

/// Refusals counted for one host group since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Refusals {
    /// Platform actions refused (stop, start, cleanup).
    pub actions: u64,
    /// Platform probes refused.
    pub probes: u64,
    /// HSDB writes refused.
    pub writes: u64,
}

/// A host group's lease as `hactl status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LeaseView {
    /// `sole` (SQLite), `leader`, `follower` (another leads), or `candidate` (nobody
    /// leads that this controller knows of).
    pub role: String,
    /// The holder of the lease last seen (this controller's id when it leads).
    pub leader: Option<String>,
    /// Its token.
    pub token: Option<i64>,
    /// When it expires, ms since the Unix epoch on the database's clock.
    pub expires_ms: Option<i64>,
    /// While leading: how long until the local deadline, ms.
    pub deadline_in_ms: Option<u64>,
    /// Times this controller gained or lost the lease since start.
    pub role_changes: u64,
    /// What was refused since start.
    pub refused: Refusals,
    /// The last refusal, in words.
    pub last_refusal: Option<String>,
    /// The last failed acquisition or renewal, while failing.
    pub last_error: Option<String>,
}

struct Entry {
    leadership: Leadership,
    refused: Refusals,
    last_refusal: Option<String>,
    role_changes: u64,
}

struct State {
    groups: BTreeMap<String, Entry>,
    stop: bool,
}

enum Mode {
    Sole,
    Leased(LeaseSettings),
}

/// The shared board (see the module documentation).
pub struct Board {
    holder: String,
    mode: Mode,
    mono: Arc<dyn Monotonic>,
    state: Mutex<State>,
    wake: Condvar,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("holder", &self.holder)
            .field("leased", &matches!(self.mode, Mode::Leased(_)))
            .finish_non_exhaustive()
    }
}

impl Board {
    /// The board of the only controller (SQLite): every check passes, no lease.
    pub fn sole(holder: &str, mono: Arc<dyn Monotonic>) -> Board {
        Board {
            holder: holder.to_owned(),
            mode: Mode::Sole,
            mono,
            state: Mutex::new(State {
                groups: BTreeMap::new(),
                stop: false,
            }),
            wake: Condvar::new(),
        }
    }

    /// The board of one controller among several, as `holder`, with these lease timings
    /// measured on `mono`. It competes for the HSDB-wide duties at once, and for each
    /// host group once [`compete`](Self::compete) names it.
    pub fn leased(holder: &str, settings: LeaseSettings, mono: Arc<dyn Monotonic>) -> Board {
        let board = Board {
            holder: holder.to_owned(),
            mode: Mode::Leased(settings),
            mono,
            state: Mutex::new(State {
                groups: BTreeMap::new(),
                stop: false,
            }),
            wake: Condvar::new(),
        };
        board.compete(&[]);
        board
    }

    /// This controller's id (the lease's holder).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The lease timings, when leased.
    pub fn settings(&self) -> Option<LeaseSettings> {
        match self.mode {
            Mode::Sole => None,
            Mode::Leased(s) => Some(s),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Compete for these host groups too (those already competed for stay).
    pub fn compete(&self, groups: &[String]) {
        let Mode::Leased(settings) = self.mode else {
            return;
        };
        let now = self.mono.mono_ms();
        let mut state = self.lock();
        let mut added = false;
        for g in std::iter::once(HSDB_DUTIES).chain(groups.iter().map(String::as_str)) {
            if !state.groups.contains_key(g) {
                state.groups.insert(
                    g.to_owned(),
                    Entry {
                        leadership: Leadership::new(g, &self.holder, settings, now),
                        refused: Refusals::default(),
                        last_refusal: None,
                        role_changes: 0,
                    },
                );
                tracing::info!(
                    host_group = lease_name(g),
                    holder = %self.holder,
                    "candidate for the lease"
                );
                added = true;
            }
        }
        drop(state);
        if added {
            self.wake.notify_all();
        }
    }

    /// Where this controller stands for `group` now.
    pub fn access(&self, group: &str) -> Access {
        if matches!(self.mode, Mode::Sole) {
            return Access::Sole;
        }
        let now = self.mono.mono_ms();
        let mut state = self.lock();
        let Some(e) = state.groups.get_mut(group) else {
            return Access::Follow { leader: None };
        };
        e.leadership.handle_timeout(now);
        log_events(e);
        match e.leadership.check(now) {
            Ok(token) => Access::Lead { token },
            Err(_) => Access::Follow {
                leader: e.leadership.seen().cloned(),
            },
        }
    }

    /// May this controller do `what` (of `kind`) for `group` now, as the engine of the
    /// term `bound` (`None`: whatever term)? `Ok(token)` (`None` for the sole
    /// controller); a refusal is counted, logged, and wakes the lease thread so that a
    /// lease whose deadline passed is renewed at once if nobody took it.
    pub fn check(
        &self,
        group: &str,
        bound: Option<i64>,
        kind: OpKind,
        what: &dyn Fn() -> String,
    ) -> Result<Option<i64>, Refusal> {
        if matches!(self.mode, Mode::Sole) {
            return Ok(None);
        }
        let now = self.mono.mono_ms();
        let mut state = self.lock();
        let Some(e) = state.groups.get_mut(group) else {
            return Err(Refusal::NotLeader { leader: None });
        };
        // The verdict before the deadline is handled, so that a refusal says "passed its
        // deadline" rather than "does not lead".
        let verdict = e.leadership.check(now);
        e.leadership.handle_timeout(now);
        log_events(e);
        let verdict = match verdict {
            Ok(token) if bound.is_none_or(|b| b == token) => return Ok(Some(token)),
            Ok(token) => Refusal::Superseded {
                bound: bound.unwrap_or(token),
                now: Some(token),
            },
            Err(r) => r,
        };
        if matches!(verdict, Refusal::Expired { .. }) {
            e.leadership.expedite(now);
        }
        match kind {
            OpKind::Action => e.refused.actions += 1,
            OpKind::Probe => e.refused.probes += 1,
            OpKind::Write => e.refused.writes += 1,
        }
        let text = format!("{}: {verdict}", what());
        tracing::warn!(
            host_group = lease_name(group),
            kind = ?kind,
            "refused (fencing): {text}"
        );
        e.last_refusal = Some(text);
        drop(state);
        self.wake.notify_all();
        Err(verdict)
    }

    /// The lease of `group` for the status.
    pub fn view(&self, group: &str) -> LeaseView {
        if matches!(self.mode, Mode::Sole) {
            return LeaseView {
                role: "sole".into(),
                leader: Some(self.holder.clone()),
                ..LeaseView::default()
            };
        }
        let now = self.mono.mono_ms();
        let mut state = self.lock();
        let Some(e) = state.groups.get_mut(group) else {
            return LeaseView {
                role: "candidate".into(),
                ..LeaseView::default()
            };
        };
        e.leadership.handle_timeout(now);
        log_events(e);
        let l = &e.leadership;
        let seen = l.seen();
        let leading = l.check(now).is_ok();
        let role = if leading {
            "leader"
        } else if seen.is_some_and(|s| s.holder != self.holder) {
            "follower"
        } else {
            "candidate"
        };
        LeaseView {
            role: role.into(),
            leader: seen.map(|s| s.holder.clone()),
            token: seen.map(|s| s.token),
            expires_ms: seen.map(|s| s.expires_ms),
            deadline_in_ms: l
                .deadline_ms()
                .filter(|_| leading)
                .map(|d| d.saturating_sub(now)),
            role_changes: e.role_changes,
            refused: e.refused,
            last_refusal: e.last_refusal.clone(),
            last_error: l.last_error().map(str::to_owned),
        }
    }

    /// One pass of the lease thread: every due attempt sent to `store` (outside the
    /// board's lock: a slow database never blocks a check), every deadline looked at.
    /// Returns when the next pass is due (monotonic ms).
    pub fn run_once(&self, store: &mut dyn LeaseStore) -> u64 {
        let Mode::Leased(settings) = self.mode else {
            return u64::MAX;
        };
        let now = self.mono.mono_ms();
        let due: Vec<(String, crate::lease::Attempt)> = {
            let mut state = self.lock();
            state
                .groups
                .iter_mut()
                .filter_map(|(g, e)| {
                    let a = e.leadership.poll_attempt(now);
                    log_events(e);
                    a.map(|a| (g.clone(), a))
                })
                .collect()
        };
        for (group, attempt) in due {
            let outcome = store.acquire(&group, &self.holder, settings.ttl_ms);
            if let Err(why) = &outcome {
                tracing::warn!(
                    host_group = lease_name(&group),
                    "lease attempt failed: {why}"
                );
            }
            let now = self.mono.mono_ms();
            let mut state = self.lock();
            if let Some(e) = state.groups.get_mut(&group) {
                e.leadership.handle_outcome(attempt, outcome, now);
                log_events(e);
            }
        }
        let now = self.mono.mono_ms();
        let mut state = self.lock();
        state
            .groups
            .values_mut()
            .map(|e| {
                e.leadership.handle_timeout(now);
                log_events(e);
                e.leadership.poll_timeout()
            })
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Give up every lease held (a clean stop: the other controllers need not wait for
    /// the expiry).
    pub fn release_all(&self, store: &mut dyn LeaseStore) {
        let held: Vec<String> = {
            let mut state = self.lock();
            state
                .groups
                .iter_mut()
                .filter(|(_, e)| e.leadership.token().is_some())
                .map(|(g, e)| {
                    e.leadership.step_down();
                    log_events(e);
                    g.clone()
                })
                .collect()
        };
        for g in held {
            match store.release(&g, &self.holder) {
                Ok(true) => tracing::info!(host_group = lease_name(&g), "lease released"),
                Ok(false) => {}
                Err(why) => tracing::warn!(
                    host_group = lease_name(&g),
                    "cannot release the lease ({why}): the others take over when it expires"
                ),
            }
        }
    }

    /// Start the lease thread over `store` (its own connection). It runs until
    /// [`stop`](Self::stop), then releases what it holds.
    pub fn spawn(
        self: &Arc<Self>,
        mut store: Box<dyn LeaseStore + Send>,
    ) -> std::io::Result<JoinHandle<()>> {
        let board = Arc::clone(self);
        std::thread::Builder::new()
            .name("lease".into())
            .spawn(move || {
                loop {
                    let next = board.run_once(store.as_mut());
                    let state = board.lock();
                    if state.stop {
                        drop(state);
                        board.release_all(store.as_mut());
                        return;
                    }
                    let wait = next.saturating_sub(board.mono.mono_ms()).min(1_000);
                    if wait > 0 {
                        let _ = board
                            .wake
                            .wait_timeout(state, Duration::from_millis(wait))
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                }
            })
    }

    /// Ask the lease thread to release and end.
    pub fn stop(&self) {
        self.lock().stop = true;
        self.wake.notify_all();
    }

    /// The fence that binds an HSDB connection's writes to `group`'s term `token`: the
    /// database checks the lease row in every write transaction, after this board's
    /// own check (the local deadline; a refusal is counted as a refused write).
    pub fn fence(self: &Arc<Self>, group: &str, token: i64) -> hsdb::Fence {
        let board = Arc::clone(self);
        let name = group.to_owned();
        hsdb::Fence {
            host_group: group.to_owned(),
            holder: self.holder.clone(),
            token,
            check: Some(Arc::new(move || {
                board
                    .check(&name, Some(token), OpKind::Write, &|| {
                        "an HSDB write".to_owned()
                    })
                    .map(|_| ())
                    .map_err(|r| r.to_string())
            })),
        }
    }
}

/// The lease thread's store: its own HSDB connection (never the engine loop's, so a
/// renewal never waits for a scan), made again when it breaks.
pub struct HsdbLeases {
    target: hsdb::Target,
    options: hsdb::Options,
    db: Option<hsdb::Hsdb>,
}

impl HsdbLeases {
    /// A store connecting to `target` on first use.
    pub fn new(target: hsdb::Target, options: hsdb::Options) -> HsdbLeases {
        HsdbLeases {
            target,
            options,
            db: None,
        }
    }

    fn db(&mut self) -> Result<&mut hsdb::Hsdb, String> {
        if self.db.as_ref().is_some_and(hsdb::Hsdb::is_broken) {
            tracing::warn!("lease connection broken: connecting again");
            self.db = None;
        }
        if self.db.is_none() {
            let db = hsdb::Hsdb::connect(&self.target, &self.options)
                .map_err(|e| format!("lease connection: {e}"))?;
            self.db = Some(db);
        }
        self.db
            .as_mut()
            .ok_or_else(|| "lease connection: none".to_owned())
    }
}

impl LeaseStore for HsdbLeases {
    fn acquire(&mut self, group: &str, holder: &str, ttl_ms: u64) -> Result<LeaseOutcome, String> {
        self.db()?.acquire(group, holder, ttl_ms)
    }

    fn release(&mut self, group: &str, holder: &str) -> Result<bool, String> {
        self.db()?.release(group, holder)
    }
}

/// Log the entry's changes of role.
fn log_events(e: &mut Entry) {
    let group = e.leadership.group().to_owned();
    let name = lease_name(&group);
    while let Some(event) = e.leadership.poll_event() {
        match event {
            LeaseEvent::Gained { token, expires_ms } => {
                e.role_changes += 1;
                tracing::info!(
                    host_group = name,
                    token,
                    expires_ms,
                    holder = e.leadership.holder(),
                    "leading host group {name} (token {token})"
                );
            }
            LeaseEvent::Lost { token, why } => {
                e.role_changes += 1;
                tracing::warn!(
                    host_group = name,
                    token,
                    "no longer leading host group {name} (token {token}): {why}; acting \
                     stops, restarts in progress are left to the next leader"
                );
            }
            LeaseEvent::LeaderSeen { holder, token } => {
                tracing::info!(
                    host_group = name,
                    token,
                    leader = %holder,
                    "host group {name} is led by {holder} (token {token})"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::lease::memory::MemoryLeases;

    const S: LeaseSettings = LeaseSettings {
        ttl_ms: 10_000,
        renew_every_ms: 2_000,
        margin_ms: 1_000,
    };

    fn boards() -> (ManualClock, MemoryLeases, Board, Board) {
        let clock = ManualClock::new(5_000_000);
        let store = MemoryLeases::new(Arc::new(clock.clone()));
        let a = Board::leased("a", S, Arc::new(clock.clone()));
        let b = Board::leased("b", S, Arc::new(clock.clone()));
        a.compete(&["hg1".into()]);
        b.compete(&["hg1".into()]);
        (clock, store, a, b)
    }

    fn nothing() -> String {
        "stop host-a vm1".into()
    }

    #[test]
    fn the_sole_controller_always_acts() {
        let board = Board::sole("x", Arc::new(ManualClock::new(0)));
        assert_eq!(board.access("hg1"), Access::Sole);
        assert_eq!(board.check("hg1", None, OpKind::Action, &nothing), Ok(None));
        assert_eq!(board.view("hg1").role, "sole");
    }

    #[test]
    fn one_board_leads_the_other_follows_and_refuses_counting_each_kind() {
        let (clock, store, a, b) = boards();
        let (mut sa, mut sb) = (store.clone(), store.clone());
        a.run_once(&mut sa);
        b.run_once(&mut sb);
        assert_eq!(a.access("hg1"), Access::Lead { token: 1 });
        assert_eq!(a.access(HSDB_DUTIES), Access::Lead { token: 1 });
        assert!(matches!(b.access("hg1"), Access::Follow { leader: Some(l) } if l.holder == "a"));
        assert_eq!(
            a.check("hg1", Some(1), OpKind::Action, &nothing),
            Ok(Some(1))
        );
        assert!(b.check("hg1", None, OpKind::Action, &nothing).is_err());
        assert!(b.check("hg1", None, OpKind::Probe, &nothing).is_err());
        assert!(b.check("hg1", None, OpKind::Write, &nothing).is_err());
        let v = b.view("hg1");
        assert_eq!(v.role, "follower");
        assert_eq!(v.leader.as_deref(), Some("a"));
        assert_eq!(v.token, Some(1));
        assert_eq!(
            v.refused,
            Refusals {
                actions: 1,
                probes: 1,
                writes: 1
            }
        );
        assert!(
            v.last_refusal
                .as_deref()
                .unwrap()
                .starts_with("stop host-a vm1: this controller does not lead (a does)"),
            "{v:?}"
        );
        let va = a.view("hg1");
        assert_eq!(va.role, "leader");
        assert_eq!(va.deadline_in_ms, Some(9_000));
        assert_eq!(va.role_changes, 1);
        // An engine bound to an older term is refused even while the board leads.
        clock.advance(1);
        assert!(matches!(
            a.check("hg1", Some(0), OpKind::Action, &nothing),
            Err(Refusal::Superseded {
                bound: 0,
                now: Some(1)
            })
        ));
    }

    #[test]
    fn a_stopped_board_wakes_refusing_and_the_other_has_taken_over() {
        let (clock, store, a, b) = boards();
        let (mut sa, mut sb) = (store.clone(), store.clone());
        a.run_once(&mut sa);
        b.run_once(&mut sb);
        // a is stopped: neither its lease thread nor its loop runs for 15 s; b's does.
        for _ in 0..30 {
            clock.advance(500);
            b.run_once(&mut sb);
        }
        assert_eq!(b.access("hg1"), Access::Lead { token: 2 });
        // a continues: its loop was in the middle of a restart and asks before its stop.
        match a.check("hg1", Some(1), OpKind::Action, &nothing) {
            Err(Refusal::Expired { token: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(a.view("hg1").refused.actions, 1);
        // Its lease thread runs next: it sees b, and a follows.
        a.run_once(&mut sa);
        assert!(
            matches!(a.access("hg1"), Access::Follow { leader: Some(l) } if l.holder == "b" && l.token == 2)
        );
        assert_eq!(a.view("hg1").role_changes, 2);
    }

    #[test]
    fn the_fence_refuses_hsdb_writes_past_the_local_deadline_and_counts_them() {
        let (clock, store, a, _b) = boards();
        let mut sa = store.clone();
        a.run_once(&mut sa);
        let a = Arc::new(a);
        // The HSDB's own lease row (its clock is the real one): held by a for a minute,
        // so the database's check passes and only the local deadline can refuse.
        let mut db = hsdb::Hsdb::open_in_memory().unwrap();
        assert!(matches!(
            db.lease_acquire("hg1", "a", 60_000).unwrap(),
            hsdb::LeaseOutcome::Acquired(hsdb::Lease { token: 1, .. })
        ));
        db.set_fence(Some(a.fence("hg1", 1)));
        db.set_consumer_offset("log", 1).unwrap();
        // Stopped for 15 s on the board's clock: the next write is refused before the
        // database is asked, and counted.
        clock.advance(15_000);
        match db.set_consumer_offset("log", 2) {
            Err(hsdb::Error::Fenced {
                host_group,
                token,
                why,
            }) => {
                assert_eq!((host_group.as_str(), token), ("hg1", 1));
                assert!(why.contains("passed its local deadline"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let v = a.view("hg1");
        assert_eq!(v.refused.writes, 1);
        assert_eq!(v.refused.actions, 0);
        assert!(v.last_refusal.unwrap().starts_with("an HSDB write: "));
        db.set_fence(None);
        assert_eq!(
            db.consumer_offset("log").unwrap(),
            Some(1),
            "nothing written"
        );
    }

    #[test]
    fn release_all_hands_the_leases_over_at_once() {
        let (_clock, store, a, b) = boards();
        let (mut sa, mut sb) = (store.clone(), store.clone());
        a.run_once(&mut sa);
        b.run_once(&mut sb);
        a.release_all(&mut sa);
        assert!(matches!(a.access("hg1"), Access::Follow { .. }));
        // b's next attempt (it is due at once after a check woke it, or at its schedule).
        b.lock()
            .groups
            .get_mut("hg1")
            .unwrap()
            .leadership
            .expedite(0);
        b.run_once(&mut sb);
        assert_eq!(b.access("hg1"), Access::Lead { token: 2 });
    }

    #[test]
    fn the_lease_thread_renews_in_the_background_and_releases_at_stop() {
        let clock = ManualClock::new(1_000);
        let store = MemoryLeases::new(Arc::new(clock.clone()));
        let board = Arc::new(Board::leased(
            "a",
            S,
            Arc::new(crate::clock::BootClock::new()),
        ));
        board.compete(&["hg1".into()]);
        let thread = board.spawn(Box::new(store.clone())).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while board.access("hg1") != (Access::Lead { token: 1 }) {
            assert!(std::time::Instant::now() < deadline, "never led");
            std::thread::sleep(Duration::from_millis(10));
        }
        board.stop();
        thread.join().unwrap();
        let lease = store.lease("hg1").unwrap();
        assert_eq!(lease.holder, "a");
        assert!(lease.expires_ms <= clock.now_ms(), "released: {lease:?}");
    }
}
