//! The daemon's loop: every host group's engine scanned when due, on one thread, one
//! HSDB connection and one platform driver.
//!
//! Each engine is ticked at the time it asks for (its next scan, or the next step of a
//! restart in progress); the wait is measured on the monotonic clock, while "now" is read
//! from the injected [`Clock`] (what the HSDB's times are compared with). The first tick
//! of a group runs at once (the seed has no sleep before scan 1, seed 004 L12253-12255).
//! An engine that overran is ticked again at once, never in a burst.
//!
//! A stop request (SIGTERM, SIGINT) is honoured between scans: the scan in progress
//! completes (its decisions are committed, its platform action finished or timed out),
//! then the loop returns and the caller closes the HSDB.
//!
//! Among several controllers (PostgreSQL) the loop asks the leadership
//! [`Board`] at every turn where it stands for each group: a group it
//! does not lead has no engine (nothing is scanned, nothing decided; its status still
//! shows who leads); when it gains a group's lease it builds a fresh engine for that
//! term (the token), which takes over the restarts its predecessor left in the HSDB; when
//! it loses it, the engine is dropped at once, whatever it was doing. The engine ticks
//! with a [`FencedPlatform`], so every platform call of a term that ended — in the middle
//! of a tick, after a `SIGSTOP` — is refused. The after-turn tasks run only in the
//! controller that holds the HSDB-wide duties' lease.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hsdb::Hsdb;
use hvha_notify::{Notifier, WatchdogPacer};

use super::leadership::{Access, Board};
use super::status::{DaemonStatus, GroupStatus};
use crate::clock::{BootClock, Clock};
use crate::lease::HSDB_DUTIES;
use crate::notify::worker::SharedStatuses;
use crate::platform::Platform;
use crate::platform::fenced::FencedPlatform;

/// The longest the loop sleeps before looking at its stop flag again.
pub const STOP_POLL: Duration = Duration::from_millis(100);

/// One host group's detection engine as the loop drives it.
pub trait GroupEngine: Send {
    /// The host group.
    fn host_group(&self) -> &str;

    /// Time between two scans (from the parameters in force).
    fn scan_interval(&self) -> Duration;

    /// Parameters in force below the seed's ranges, one line each (`status` shows them).
    fn below_seed_ranges(&self) -> Vec<String> {
        Vec::new()
    }

    /// The term this engine was built for has begun: this controller leads the group
    /// with `token` (`None`: the sole controller). Called once, before the first tick;
    /// the engine takes over what an earlier term left unfinished in the HSDB. `Err` is
    /// logged; the engine runs anyway.
    fn begin_term(
        &mut self,
        _now_ms: i64,
        _token: Option<i64>,
        _holder: &str,
        _hsdb: &mut Hsdb,
        _platform: &mut dyn Platform,
    ) -> Result<(), String> {
        Ok(())
    }

    /// Do what is due at `now_ms` (a scan, a step of the restarts in progress); record
    /// what was found and decided in `status`. Returns when to be ticked again, ms since
    /// the Unix epoch. `Err` is a tick that could not complete (the HSDB failed), in
    /// words; the loop counts it, logs it and ticks again one scan interval later.
    fn tick(
        &mut self,
        now_ms: i64,
        hsdb: &mut Hsdb,
        platform: &mut dyn Platform,
        status: &mut GroupStatus,
    ) -> Result<i64, String>;
}

/// Something the loop does after every turn (the event log notifier): `Err` is logged and
/// shown by `status`, and the loop goes on.
pub trait AfterTurn: Send {
    /// Called after the scans of a turn, with the HSDB they wrote to.
    fn after_turn(&mut self, hsdb: &mut Hsdb, status: &mut DaemonStatus) -> Result<(), String>;
}

/// Where the loop finds the host groups to serve, and makes their engines.
pub trait GroupSource: Send {
    /// The host groups that should be served now.
    fn groups(&mut self, hsdb: &Hsdb) -> Result<Vec<String>, String>;
    /// An engine for `group`; `Err` (bad parameters, …) is logged and tried again at the
    /// next look.
    fn engine(&mut self, hsdb: &Hsdb, group: &str) -> Result<Box<dyn GroupEngine>, String>;
}

/// How often the loop looks for new host groups.
pub const DISCOVER_EVERY: Duration = Duration::from_secs(10);

/// How often a broken HSDB connection is made again.
pub const RECONNECT_EVERY: Duration = Duration::from_secs(2);

/// How often a group this controller does not lead is looked at again (only the board:
/// no HSDB, no platform).
pub const FOLLOWER_POLL: Duration = Duration::from_millis(200);

/// A group being served.
struct Slot {
    group: String,
    /// `None` while this controller does not lead the group.
    engine: Option<Box<dyn GroupEngine>>,
    /// The term the engine belongs to (`None`: the sole controller's).
    term: Option<i64>,
    /// The engine was given, not made by the source: it is kept whatever happens.
    given: bool,
    due: Instant,
    status: GroupStatus,
}

/// The loop's state.
pub struct Runner {
    hsdb: Hsdb,
    /// Makes a new connection when the HSDB's breaks (PostgreSQL restarted, network).
    reconnect: Option<Box<dyn FnMut() -> hsdb::Result<Hsdb> + Send>>,
    /// The last reconnection attempt.
    reconnected: Option<Instant>,
    platform: Box<dyn Platform>,
    board: Arc<Board>,
    clock: Arc<dyn Clock>,
    slots: Vec<Slot>,
    after: Vec<Box<dyn AfterTurn>>,
    source: Option<Box<dyn GroupSource>>,
    discovered: Option<Instant>,
    published: Arc<Mutex<DaemonStatus>>,
    status: DaemonStatus,
    notifier: Notifier,
    pacer: Option<WatchdogPacer>,
    origin: Instant,
    /// The notifier threads' statuses, copied into every published status.
    notifiers: Option<SharedStatuses>,
}

impl Runner {
    /// A loop over `hsdb` and `platform`, reading now from `clock`, publishing its status
    /// to `published` (the admin socket serves it), telling the service manager through
    /// `notifier`.
    pub fn new(
        hsdb: Hsdb,
        platform: Box<dyn Platform>,
        clock: Arc<dyn Clock>,
        published: Arc<Mutex<DaemonStatus>>,
        notifier: Notifier,
    ) -> Runner {
        let status = published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let pacer = notifier.watchdog_timeout().map(WatchdogPacer::new);
        Runner {
            hsdb,
            reconnect: None,
            reconnected: None,
            platform,
            board: Arc::new(Board::sole("sole", Arc::new(BootClock::new()))),
            clock,
            slots: Vec::new(),
            after: Vec::new(),
            source: None,
            discovered: None,
            published,
            status,
            notifier,
            pacer,
            origin: Instant::now(),
            notifiers: None,
        }
    }

    /// Show the notifiers' statuses (their threads update them) in the status.
    pub fn show_notifiers(&mut self, statuses: SharedStatuses) {
        self.notifiers = Some(statuses);
    }

    /// Replace the HSDB connection with `connect()`'s when it breaks (at most every
    /// [`RECONNECT_EVERY`]); the engines go on with the new one.
    pub fn reconnect_with(&mut self, connect: Box<dyn FnMut() -> hsdb::Result<Hsdb> + Send>) {
        self.reconnect = Some(connect);
    }

    fn ensure_connected(&mut self) {
        if !self.hsdb.is_broken() {
            return;
        }
        let Some(connect) = self.reconnect.as_mut() else {
            return;
        };
        if self
            .reconnected
            .is_some_and(|t| t.elapsed() < RECONNECT_EVERY)
        {
            return;
        }
        self.reconnected = Some(Instant::now());
        match connect() {
            Ok(db) => {
                tracing::info!("HSDB connection broken: connected again");
                self.hsdb = db;
            }
            Err(e) => {
                tracing::warn!("HSDB connection broken; connecting again failed: {e}");
                self.status.last_error = Some(format!("HSDB: {e}"));
            }
        }
    }

    /// Decide with `board` who acts (the default: the sole controller, always).
    pub fn lead_with(&mut self, board: Arc<Board>) {
        self.status.controller_id = board.holder().to_owned();
        self.board = board;
    }

    /// Serve one more host group with this engine, kept for the life of the loop; its
    /// first scan is due at once.
    pub fn add_group(&mut self, engine: Box<dyn GroupEngine>) {
        let interval = engine.scan_interval();
        let status = GroupStatus::new(
            engine.host_group(),
            u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            self.clock.now_ms(),
        );
        tracing::info!(
            host_group = engine.host_group(),
            scan_interval_ms = status.scan_interval_ms,
            "serving host group"
        );
        self.board.compete(&[engine.host_group().to_owned()]);
        self.slots.push(Slot {
            group: engine.host_group().to_owned(),
            engine: Some(engine),
            term: None,
            given: true,
            due: Instant::now(),
            status,
        });
    }

    /// A group whose engine the source makes when this controller leads it.
    fn add_sourced(&mut self, group: String) {
        tracing::info!(host_group = %group, "host group found; serving it when leading it");
        self.board.compete(std::slice::from_ref(&group));
        self.slots.push(Slot {
            status: GroupStatus::new(&group, 0, self.clock.now_ms()),
            group,
            engine: None,
            term: None,
            given: false,
            due: Instant::now(),
        });
    }

    /// The host groups served (led or not).
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| s.group.as_str())
    }

    /// Look for host groups in `source` at every turn (at most every
    /// [`DISCOVER_EVERY`]) and serve the new ones.
    pub fn discover_groups(&mut self, source: Box<dyn GroupSource>) {
        self.source = Some(source);
        self.discovered = None;
    }

    fn discover(&mut self) {
        if self
            .discovered
            .is_some_and(|t| t.elapsed() < DISCOVER_EVERY)
        {
            return;
        }
        self.discovered = Some(Instant::now());
        let Some(source) = self.source.as_mut() else {
            return;
        };
        let groups = match source.groups(&self.hsdb) {
            Ok(g) => g,
            Err(why) => {
                tracing::error!("cannot list the host groups: {why}");
                self.status.last_error = Some(why);
                return;
            }
        };
        for group in groups {
            if !self.slots.iter().any(|s| s.group == group) {
                self.add_sourced(group);
            }
        }
    }

    /// Make the slot's engine agree with where this controller stands: build one for a
    /// new term, drop it when the term ended. Returns the term to tick in, or `None`:
    /// not leading, no tick.
    fn settle(&mut self, i: usize, now: Instant) -> Option<Option<i64>> {
        let slot = &mut self.slots[i];
        let access = self.board.access(&slot.group);
        slot.status.lease = self.board.view(&slot.group);
        let term = match access {
            Access::Sole => None,
            Access::Lead { token } => Some(token),
            Access::Follow { .. } => {
                if !slot.given && slot.engine.take().is_some() {
                    tracing::warn!(
                        host_group = %slot.group,
                        term = slot.term,
                        "not leading host group {} any more: its engine is dropped; \
                         restarts in progress stay in the HSDB for the leader",
                        slot.group
                    );
                    slot.status.in_flight.clear();
                }
                slot.term = None;
                slot.due = now + FOLLOWER_POLL;
                return None;
            }
        };
        if slot.given {
            slot.term = term;
            return Some(term);
        }
        if slot.engine.is_some() && slot.term == term {
            return Some(term);
        }
        // A new term: a fresh engine, whatever the last one knew.
        slot.engine = None;
        let source = self.source.as_mut()?;
        let mut engine = match source.engine(&self.hsdb, &slot.group) {
            Ok(engine) => engine,
            Err(why) => {
                tracing::error!(host_group = %slot.group, "cannot serve: {why}");
                slot.status.last_error = Some(why.clone());
                self.status.last_error = Some(why);
                slot.due = now + DISCOVER_EVERY;
                return None;
            }
        };
        let interval = engine.scan_interval();
        slot.status.scan_interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        tracing::info!(
            host_group = %slot.group,
            term,
            scan_interval_ms = slot.status.scan_interval_ms,
            "serving host group {} (term {})",
            slot.group,
            term.map_or_else(|| "sole".to_owned(), |t| t.to_string())
        );
        let now_ms = self.clock.now_ms();
        self.hsdb
            .set_fence(term.map(|t| self.board.fence(&slot.group, t)));
        let mut platform =
            FencedPlatform::new(self.platform.as_mut(), &self.board, &slot.group, term);
        let begun = engine.begin_term(
            now_ms,
            term,
            self.board.holder(),
            &mut self.hsdb,
            &mut platform,
        );
        self.hsdb.set_fence(None);
        if let Err(why) = begun {
            tracing::error!(host_group = %slot.group, "taking over the earlier term: {why}");
            slot.status.last_error = Some(why);
        }
        slot.engine = Some(engine);
        slot.term = term;
        slot.due = now;
        Some(term)
    }

    /// Run `task` after every turn.
    pub fn after_turn(&mut self, task: Box<dyn AfterTurn>) {
        self.after.push(task);
    }

    /// The status as it will next be published (for the caller to amend before
    /// [`run`](Self::run): parameters below the seed's ranges, …).
    pub fn status_mut(&mut self) -> &mut DaemonStatus {
        &mut self.status
    }

    /// The HSDB connection (for the caller's setup and for tests).
    pub fn hsdb_mut(&mut self) -> &mut Hsdb {
        &mut self.hsdb
    }

    /// Every tick due at `now`, then the after-turn tasks, then publish the status.
    /// Returns when the next tick is due (`None`: no group served).
    pub fn turn(&mut self, now: Instant) -> Option<Instant> {
        self.ensure_connected();
        self.discover();
        for i in 0..self.slots.len() {
            let Some(term) = self.settle(i, now) else {
                continue;
            };
            let slot = &mut self.slots[i];
            let Some(engine) = slot.engine.as_mut() else {
                continue;
            };
            if slot.due > now {
                continue;
            }
            let now_ms = self.clock.now_ms();
            // Every write of the tick is bound to the term: checked locally, then in the
            // database (docs/hsdb.md, the leader lease).
            self.hsdb
                .set_fence(term.map(|t| self.board.fence(&slot.group, t)));
            let mut platform =
                FencedPlatform::new(self.platform.as_mut(), &self.board, &slot.group, term);
            let result = engine.tick(now_ms, &mut self.hsdb, &mut platform, &mut slot.status);
            self.hsdb.set_fence(None);
            slot.status.lease = self.board.view(&slot.group);
            let interval = engine.scan_interval();
            slot.status.scan_interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
            let after_ms = self.clock.now_ms();
            let wake_ms = match result {
                Ok(wake_ms) => wake_ms,
                Err(why) => {
                    slot.status.errors += 1;
                    tracing::error!(
                        host_group = %slot.group,
                        scan = slot.status.scans,
                        "tick failed: {why}"
                    );
                    slot.status.last_error = Some(why);
                    after_ms.saturating_add(i64::try_from(interval.as_millis()).unwrap_or(i64::MAX))
                }
            };
            // The wait is measured on the monotonic clock; at most one interval, so a
            // wall clock that jumps ahead cannot park an engine.
            let wait_ms = u64::try_from(wake_ms.saturating_sub(after_ms)).unwrap_or(0);
            let wait = Duration::from_millis(wait_ms).min(interval);
            slot.due = Instant::now() + wait;
            slot.status.next_scan_ms =
                after_ms.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        }
        self.status.scans_total = self.slots.iter().map(|s| s.status.scans).sum();
        self.status.below_seed_ranges = self
            .slots
            .iter()
            .filter_map(|s| s.engine.as_ref())
            .flat_map(|e| e.below_seed_ranges())
            .collect();
        let duties = self.board.access(HSDB_DUTIES);
        self.status.duties = self.board.view(HSDB_DUTIES);
        let fence = match duties {
            Access::Sole => Some(None),
            Access::Lead { token } => Some(Some(self.board.fence(HSDB_DUTIES, token))),
            Access::Follow { .. } => None,
        };
        if let Some(fence) = fence {
            self.hsdb.set_fence(fence);
            for task in &mut self.after {
                if let Err(why) = task.after_turn(&mut self.hsdb, &mut self.status) {
                    tracing::error!("{why}");
                    self.status.last_error = Some(why);
                }
            }
            self.hsdb.set_fence(None);
        }
        self.publish("running");
        self.slots.iter().map(|s| s.due).min()
    }

    /// Copy the status to where the admin socket reads it.
    fn publish(&mut self, state: &str) {
        if let (Some(timings), Some(settings)) = (&mut self.status.lease, self.board.settings()) {
            let longest = self
                .slots
                .iter()
                .map(|s| s.status.scan_interval_ms)
                .max()
                .unwrap_or(0);
            timings.takeover_bound_ms = settings.takeover_bound_ms(longest);
        }
        self.status.state = state.to_owned();
        self.status.now_ms = self.clock.now_ms();
        self.status.groups = self.slots.iter().map(|s| s.status.clone()).collect();
        if let Some(n) = &self.notifiers {
            self.status.notifiers = n.lock().unwrap_or_else(PoisonError::into_inner).clone();
        }
        *self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = self.status.clone();
    }

    /// Turn until `stop` is set: tell the service manager READY after the first turn,
    /// ping its watchdog after every turn, STOPPING at the end. Returns the HSDB
    /// connection, to be closed by the caller.
    pub fn run(mut self, stop: &AtomicBool) -> Hsdb {
        let mut ready = false;
        while !stop.load(Ordering::SeqCst) {
            let next = self.turn(Instant::now());
            if !ready {
                let groups: Vec<&str> = self.groups().collect();
                let text = format!(
                    "serving {} host group(s): {}",
                    groups.len(),
                    groups.join(", ")
                );
                if let Err(e) = self.notifier.ready(&text) {
                    tracing::warn!("cannot tell the service manager READY=1: {e}");
                }
                tracing::info!("{text}");
                ready = true;
            }
            self.ping_watchdog();
            // Sleep until the next scan, the next watchdog ping or a stop request.
            loop {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let now = Instant::now();
                let mut until = next.unwrap_or(now + STOP_POLL);
                if let Some(p) = &self.pacer {
                    until = until.min(self.origin + p.next_due());
                }
                if until <= now {
                    break;
                }
                std::thread::sleep(until.saturating_duration_since(now).min(STOP_POLL));
                if self.pacer.is_some() {
                    self.ping_watchdog();
                }
                if next.is_none() {
                    // No group served: turn again now and then (after-turn tasks).
                    break;
                }
            }
        }
        tracing::info!(
            scans = self.status.scans_total,
            "stop requested: the scan in progress has completed; closing the HSDB"
        );
        let _ = self.notifier.stopping();
        self.publish("stopping");
        self.hsdb
    }

    fn ping_watchdog(&mut self) {
        let now = self.origin.elapsed();
        if let Some(p) = &mut self.pacer
            && p.is_due(now)
        {
            match self.notifier.watchdog() {
                Ok(()) => p.pinged(now),
                Err(e) => tracing::debug!("watchdog ping not delivered: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::clock::ManualClock;
    use crate::daemon::status::Decision;
    use crate::platform::{HostInfo, PlatformError, VmSpec, VmStatus};
    use hsdb::Uuid;

    /// A platform that is never called by these engines.
    struct NoPlatform;

    impl Platform for NoPlatform {
        fn name(&self) -> &'static str {
            "none"
        }
        fn hosts(&mut self) -> Result<Vec<HostInfo>, PlatformError> {
            Ok(Vec::new())
        }
        fn host_alive(&mut self, _: &str) -> Result<bool, PlatformError> {
            Ok(true)
        }
        fn ping(&mut self, _: &Uuid) -> Result<bool, PlatformError> {
            Ok(true)
        }
        fn vm_status(&mut self, host: &str, vm: &Uuid) -> Result<VmStatus, PlatformError> {
            Err(PlatformError::NoSuchVm {
                host: host.to_owned(),
                vm: *vm,
            })
        }
        fn stop(&mut self, _: &str, _: &Uuid) -> Result<(), PlatformError> {
            Ok(())
        }
        fn start(&mut self, _: &str, _: &VmSpec) -> Result<(), PlatformError> {
            Ok(())
        }
        fn cleanup(&mut self, _: &str, _: &Uuid) -> Result<(), PlatformError> {
            Ok(())
        }
    }

    /// Counts its scans, records the time it was given, fails every `fail_every`th scan,
    /// and takes `slow` per scan.
    struct Counting {
        name: String,
        interval: Duration,
        times: Arc<Mutex<Vec<i64>>>,
        fail_every: u64,
        slow: Duration,
    }

    impl GroupEngine for Counting {
        fn host_group(&self) -> &str {
            &self.name
        }
        fn scan_interval(&self) -> Duration {
            self.interval
        }
        fn tick(
            &mut self,
            now_ms: i64,
            _: &mut Hsdb,
            _: &mut dyn Platform,
            status: &mut GroupStatus,
        ) -> Result<i64, String> {
            std::thread::sleep(self.slow);
            self.times.lock().unwrap().push(now_ms);
            status.scans += 1;
            status.last_decisions.push(Decision {
                at_ms: now_ms,
                scan: status.scans,
                text: "nothing to do".into(),
            });
            if self.fail_every > 0 && status.scans.is_multiple_of(self.fail_every) {
                return Err(format!("scan {} failed", status.scans));
            }
            Ok(now_ms + i64::try_from(self.interval.as_millis()).unwrap_or(i64::MAX))
        }
    }

    fn runner(clock: &ManualClock) -> (Runner, Arc<Mutex<DaemonStatus>>) {
        let published = Arc::new(Mutex::new(DaemonStatus::starting(
            ":memory:", "none", "default", 0,
        )));
        let runner = Runner::new(
            Hsdb::open_in_memory().unwrap(),
            Box::new(NoPlatform),
            Arc::new(clock.clone()),
            Arc::clone(&published),
            Notifier::disabled(),
        );
        (runner, published)
    }

    #[test]
    fn first_scan_at_once_then_every_interval_and_failures_are_counted() {
        let clock = ManualClock::new(5_000);
        let (mut r, published) = runner(&clock);
        let times = Arc::new(Mutex::new(Vec::new()));
        r.add_group(Box::new(Counting {
            name: "hg1".into(),
            interval: Duration::from_secs(20),
            times: Arc::clone(&times),
            fail_every: 2,
            slow: Duration::ZERO,
        }));
        let t0 = Instant::now();
        let next = r.turn(t0).unwrap();
        assert_eq!(*times.lock().unwrap(), [5_000], "scan 1 runs at once");
        assert!(next >= t0 + Duration::from_secs(19), "next in about 20 s");
        // Not due yet: nothing happens.
        clock.advance(1_000);
        r.turn(t0 + Duration::from_secs(1));
        assert_eq!(times.lock().unwrap().len(), 1);
        // Due: scan 2, which fails; the loop goes on.
        clock.advance(19_000);
        r.turn(next);
        assert_eq!(*times.lock().unwrap(), [5_000, 25_000]);
        let s = published.lock().unwrap().clone();
        assert_eq!(s.state, "running");
        assert_eq!(s.scans_total, 2);
        assert_eq!(s.groups.len(), 1);
        assert_eq!(s.groups[0].scans, 2);
        assert_eq!(s.groups[0].errors, 1);
        assert_eq!(s.groups[0].last_error.as_deref(), Some("scan 2 failed"));
        assert_eq!(s.groups[0].scan_interval_ms, 20_000);
    }

    #[test]
    fn stop_lets_the_scan_in_progress_complete() {
        let clock = ManualClock::new(0);
        let (mut r, published) = runner(&clock);
        let times = Arc::new(Mutex::new(Vec::new()));
        r.add_group(Box::new(Counting {
            name: "hg1".into(),
            interval: Duration::from_millis(10),
            times: Arc::clone(&times),
            fail_every: 0,
            slow: Duration::from_millis(300),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let setter = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                stop.store(true, Ordering::SeqCst);
            })
        };
        let started = Instant::now();
        let hsdb = r.run(&stop);
        setter.join().unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "the scan finished"
        );
        assert_eq!(
            times.lock().unwrap().len(),
            1,
            "no scan after the stop request"
        );
        assert_eq!(published.lock().unwrap().state, "stopping");
        // The connection comes back usable, for the caller to close.
        assert!(hsdb.schema_version().unwrap() > 0);
    }

    #[test]
    fn without_groups_the_loop_still_turns_and_stops() {
        struct Tally(Arc<Mutex<u32>>);
        impl AfterTurn for Tally {
            fn after_turn(&mut self, _: &mut Hsdb, s: &mut DaemonStatus) -> Result<(), String> {
                *self.0.lock().unwrap() += 1;
                s.events_logged += 1;
                Err("notifier failed".into())
            }
        }
        let clock = ManualClock::new(0);
        let (mut r, published) = runner(&clock);
        let turns = Arc::new(Mutex::new(0));
        r.after_turn(Box::new(Tally(Arc::clone(&turns))));
        let stop = Arc::new(AtomicBool::new(false));
        let setter = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(350));
                stop.store(true, Ordering::SeqCst);
            })
        };
        r.run(&stop);
        setter.join().unwrap();
        let n = *turns.lock().unwrap();
        assert!(n >= 2, "turned {n} times in 350 ms");
        let s = published.lock().unwrap().clone();
        assert_eq!(s.last_error.as_deref(), Some("notifier failed"));
        assert_eq!(s.events_logged, u64::from(n));
    }

    /// A platform that records every call it receives, as "runner:call".
    struct Recording {
        who: &'static str,
        calls: Arc<Mutex<Vec<String>>>,
    }

    impl Platform for Recording {
        fn name(&self) -> &'static str {
            "recording"
        }
        fn hosts(&mut self) -> Result<Vec<HostInfo>, PlatformError> {
            Ok(Vec::new())
        }
        fn host_alive(&mut self, _: &str) -> Result<bool, PlatformError> {
            Ok(true)
        }
        fn ping(&mut self, vm: &Uuid) -> Result<bool, PlatformError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("{}:ping {vm}", self.who));
            Ok(false)
        }
        fn vm_status(&mut self, host: &str, vm: &Uuid) -> Result<VmStatus, PlatformError> {
            Err(PlatformError::NoSuchVm {
                host: host.to_owned(),
                vm: *vm,
            })
        }
        fn stop(&mut self, host: &str, _: &Uuid) -> Result<(), PlatformError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("{}:stop {host}", self.who));
            Ok(())
        }
        fn start(&mut self, host: &str, _: &VmSpec) -> Result<(), PlatformError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("{}:start {host}", self.who));
            Ok(())
        }
        fn cleanup(&mut self, _: &str, _: &Uuid) -> Result<(), PlatformError> {
            Ok(())
        }
    }

    /// Each tick: ping, stop on host-a, (a pause of `pause_ms` on the shared clock: the
    /// process stopped in the middle of a tick), start on host-b. Records its term.
    struct Acting {
        clock: ManualClock,
        pause_ms: Arc<Mutex<i64>>,
        terms: Arc<Mutex<Vec<Option<i64>>>>,
    }

    impl GroupEngine for Acting {
        fn host_group(&self) -> &str {
            "hg1"
        }
        fn scan_interval(&self) -> Duration {
            Duration::ZERO
        }
        fn begin_term(
            &mut self,
            _: i64,
            token: Option<i64>,
            _: &str,
            _: &mut Hsdb,
            _: &mut dyn Platform,
        ) -> Result<(), String> {
            self.terms.lock().unwrap().push(token);
            Ok(())
        }
        fn tick(
            &mut self,
            now_ms: i64,
            _: &mut Hsdb,
            platform: &mut dyn Platform,
            status: &mut GroupStatus,
        ) -> Result<i64, String> {
            status.scans += 1;
            let vm = Uuid::parse(b"00000000-0000-0000-0000-000000000007").unwrap();
            let _ = platform.ping(&vm);
            let _ = platform.stop("host-a", &vm);
            let pause = std::mem::take(&mut *self.pause_ms.lock().unwrap());
            self.clock.advance(pause);
            let spec = VmSpec {
                uuid: vm,
                name: "vm7".into(),
                cpu_milli: 1,
                memory_mb: 1,
            };
            if let Err(e) = platform.start("host-b", &spec) {
                return Err(e.to_string());
            }
            Ok(now_ms)
        }
    }

    struct OneGroup {
        clock: ManualClock,
        pause_ms: Arc<Mutex<i64>>,
        terms: Arc<Mutex<Vec<Option<i64>>>>,
    }

    impl GroupSource for OneGroup {
        fn groups(&mut self, _: &Hsdb) -> Result<Vec<String>, String> {
            Ok(vec!["hg1".into()])
        }
        fn engine(&mut self, _: &Hsdb, _: &str) -> Result<Box<dyn GroupEngine>, String> {
            Ok(Box::new(Acting {
                clock: self.clock.clone(),
                pause_ms: Arc::clone(&self.pause_ms),
                terms: Arc::clone(&self.terms),
            }))
        }
    }

    const LEASE: crate::lease::LeaseSettings = crate::lease::LeaseSettings {
        ttl_ms: 10_000,
        renew_every_ms: 2_000,
        margin_ms: 1_000,
    };

    struct Controller {
        runner: Runner,
        board: Arc<Board>,
        store: crate::lease::memory::MemoryLeases,
        published: Arc<Mutex<DaemonStatus>>,
        pause_ms: Arc<Mutex<i64>>,
        terms: Arc<Mutex<Vec<Option<i64>>>>,
    }

    impl Controller {
        fn new(
            who: &'static str,
            clock: &ManualClock,
            store: &crate::lease::memory::MemoryLeases,
            calls: &Arc<Mutex<Vec<String>>>,
        ) -> Controller {
            let published = Arc::new(Mutex::new(DaemonStatus::starting(
                ":memory:",
                "recording",
                "default",
                0,
            )));
            let mut runner = Runner::new(
                Hsdb::open_in_memory().unwrap(),
                Box::new(Recording {
                    who,
                    calls: Arc::clone(calls),
                }),
                Arc::new(clock.clone()),
                Arc::clone(&published),
                Notifier::disabled(),
            );
            let board = Arc::new(Board::leased(who, LEASE, Arc::new(clock.clone())));
            runner.lead_with(Arc::clone(&board));
            let pause_ms = Arc::new(Mutex::new(0));
            let terms = Arc::new(Mutex::new(Vec::new()));
            runner.discover_groups(Box::new(OneGroup {
                clock: clock.clone(),
                pause_ms: Arc::clone(&pause_ms),
                terms: Arc::clone(&terms),
            }));
            // The first turn finds the group (and makes the board a candidate for it).
            runner.turn(Instant::now());
            Controller {
                runner,
                board,
                store: store.clone(),
                published,
                pause_ms,
                terms,
            }
        }

        /// What the lease thread and the loop do when both run.
        fn turn(&mut self) {
            self.board.run_once(&mut self.store);
            self.runner.turn(Instant::now());
        }

        fn status(&self) -> DaemonStatus {
            self.published.lock().unwrap().clone()
        }
    }

    fn by(calls: &Arc<Mutex<Vec<String>>>, who: &str) -> Vec<String> {
        calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.starts_with(who))
            .cloned()
            .collect()
    }

    #[test]
    fn of_two_controllers_only_the_leader_acts_and_a_stopped_one_acts_on_nothing_after() {
        let clock = ManualClock::new(1_700_000_000_000);
        let store = crate::lease::memory::MemoryLeases::new(Arc::new(clock.clone()));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut a = Controller::new("a", &clock, &store, &calls);
        let mut b = Controller::new("b", &clock, &store, &calls);
        a.turn();
        b.turn();
        assert_eq!(by(&calls, "a:").len(), 3, "{calls:?}");
        assert!(by(&calls, "b:").is_empty(), "the follower acts on nothing");
        assert_eq!(*a.terms.lock().unwrap(), [Some(1)]);
        let sa = a.status();
        assert_eq!(sa.controller_id, "a");
        assert_eq!(sa.groups[0].lease.role, "leader");
        assert_eq!(sa.groups[0].lease.token, Some(1));
        assert_eq!(sa.duties.role, "leader");
        let sb = b.status();
        assert_eq!(sb.groups[0].lease.role, "follower");
        assert_eq!(sb.groups[0].lease.leader.as_deref(), Some("a"));
        assert_eq!(sb.groups[0].scans, 0);
        // a is stopped (kill -STOP) for 15 s: b's lease thread and loop run on.
        let before = by(&calls, "a:").len();
        for _ in 0..30 {
            clock.advance(500);
            b.turn();
        }
        assert_eq!(
            *b.terms.lock().unwrap(),
            [Some(2)],
            "b took over with token 2"
        );
        assert!(!by(&calls, "b:").is_empty());
        // a continues (kill -CONT): its loop runs before its lease thread. Nothing is
        // sent: the engine of term 1 is dropped before it ticks.
        a.runner.turn(Instant::now());
        assert_eq!(by(&calls, "a:").len(), before, "{calls:?}");
        let sa = a.status();
        assert_eq!(sa.groups[0].lease.role, "candidate");
        assert!(sa.groups[0].in_flight.is_empty());
        a.turn();
        let sa = a.status();
        assert_eq!(sa.groups[0].lease.role, "follower");
        assert_eq!(sa.groups[0].lease.leader.as_deref(), Some("b"));
        assert_eq!(sa.groups[0].lease.token, Some(2));
        assert_eq!(sa.duties.leader.as_deref(), Some("b"));
        assert_eq!(by(&calls, "a:").len(), before);
    }

    #[test]
    fn a_leader_stopped_in_the_middle_of_a_tick_sends_no_further_call() {
        let clock = ManualClock::new(1_700_000_000_000);
        let store = crate::lease::memory::MemoryLeases::new(Arc::new(clock.clone()));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut a = Controller::new("a", &clock, &store, &calls);
        // Stopped for 12 s between its stop and its start.
        *a.pause_ms.lock().unwrap() = 12_000;
        a.turn();
        assert_eq!(
            by(&calls, "a:"),
            [
                "a:ping 00000000-0000-0000-0000-000000000007",
                "a:stop host-a"
            ],
            "the start after the pause was not sent"
        );
        let s = a.status();
        let lease = &s.groups[0].lease;
        assert_eq!(lease.refused.actions, 1);
        assert!(
            lease
                .last_refusal
                .as_deref()
                .unwrap()
                .starts_with("start host-b 00000000-0000-0000-0000-000000000007: the lease (token 1) passed its local deadline"),
            "{lease:?}"
        );
        assert_eq!(s.groups[0].errors, 1, "the tick ended with the refusal");
        // Nobody took the lease meanwhile: the next attempt gets a new one (it lapsed)
        // and a new term's engine, which acts again.
        a.turn();
        assert_eq!(*a.terms.lock().unwrap(), [Some(1), Some(2)]);
        assert_eq!(by(&calls, "a:").len(), 5);
    }
}
