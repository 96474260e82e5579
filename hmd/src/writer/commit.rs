//! The `hsdb-writer` thread: owns the connection, commits the backlog in order, rides
//! out the HSDB's outages (reconnecting with back-off) and carries the command path.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hsdb::Transition;

use super::{CommandPoll, Connector, MAX_BATCH, Shared, Store, StoreError, WriterSettings};
use super::{WriterStats, epoch_ms};
use crate::commands::Completion;

/// While the HSDB stays unavailable, a line at info this often.
const REMIND_EVERY: Duration = Duration::from_secs(60);

/// An outage under way.
#[derive(Debug)]
struct Outage {
    since: Instant,
    /// Attempts to connect so far.
    attempts: u64,
    /// The current back-off delay.
    delay: Duration,
    /// When to try next.
    next: Instant,
    /// When it was last reported at info.
    reminded: Instant,
    /// A refusal was logged at error this outage.
    refusal_logged: bool,
}

impl Outage {
    /// Starting `now`, first attempt at once.
    fn new(now: Instant, delay: Duration) -> Outage {
        Outage {
            since: now,
            attempts: 0,
            delay,
            next: now,
            reminded: now,
            refusal_logged: false,
        }
    }
}

pub(super) struct Committer<C: Connector> {
    connector: C,
    store: Option<C::Store>,
    shared: Arc<Shared>,
    stats: Arc<WriterStats>,
    settings: WriterSettings,
    /// Taken from the backlog, committed next (retried as it is after a failure).
    batch: Vec<Transition>,
    /// Commands whose transitions are committed, to be marked done.
    done: Vec<Completion>,
    outage: Option<Outage>,
    /// The delay before retrying a refused commit.
    refusal_delay: Duration,
    /// When the dataplane hung up.
    closed_at: Option<Instant>,
    /// Jitter source (xorshift; quality is not the point, spreading is).
    rng: u64,
}

impl<C: Connector> Committer<C> {
    pub(super) fn new(
        connector: C,
        store: Option<C::Store>,
        shared: Arc<Shared>,
        stats: &Arc<WriterStats>,
        settings: WriterSettings,
    ) -> Committer<C> {
        let now = Instant::now();
        let connected = store.is_some();
        stats.set_connected(connected);
        if !connected {
            stats.outages.fetch_add(1, Ordering::Relaxed);
        }
        let seed = epoch_ms() ^ (u64::from(std::process::id()) << 32);
        Committer {
            connector,
            store,
            shared,
            stats: Arc::clone(stats),
            settings,
            batch: Vec::new(),
            done: Vec::new(),
            outage: (!connected).then(|| Outage::new(now, settings.backoff.first)),
            refusal_delay: settings.backoff.first,
            closed_at: None,
            rng: seed | 1,
        }
    }

    pub(super) fn run(mut self, mut commands: Option<CommandPoll>) {
        // The first poll at once: commands a previous run left open are acted on at start.
        let mut next_poll = Instant::now();
        loop {
            if self.store.is_none() {
                if self.give_up() {
                    return;
                }
                let due = self.outage.as_ref().map_or(Instant::now(), |o| o.next);
                if Instant::now() >= due {
                    self.connect();
                }
                if self.store.is_none() {
                    let due = self.outage.as_ref().map_or(Instant::now(), |o| o.next);
                    // Waiting for the database is what the writer should do now, however
                    // long the back-off: no stall (an attempt that hangs is one).
                    self.stats.waiting.store(true, Ordering::Relaxed);
                    self.wait_until(due);
                    self.stats.waiting.store(false, Ordering::Relaxed);
                    self.stats.progressed();
                    continue;
                }
            }
            if self.batch.is_empty() {
                self.gather(commands.as_ref().map(|_| next_poll));
            }
            if !self.batch.is_empty() && !self.commit() {
                if self.give_up() {
                    return;
                }
                continue;
            }
            if !self.done.is_empty() && !self.complete() {
                continue;
            }
            // Commands only once caught up: a backlog left by an outage first.
            if let Some(c) = &mut commands
                && Instant::now() >= next_poll
                && self.caught_up()
                && let Some(store) = &mut self.store
            {
                let read = c.poll(store, &self.stats);
                next_poll = Instant::now() + c.period;
                if let Err(e) = read {
                    self.stats.command_errors.fetch_add(1, Ordering::Relaxed);
                    self.failed("reading the command queue", e);
                    continue;
                }
            }
            if self.finished() {
                return;
            }
        }
    }

    /// Wait for transitions (or completions, or the hang-up) until `poll_at`, gather
    /// for `flush`, and take the oldest ones (at most [`MAX_BATCH`]) as the next batch,
    /// with the completions whose transitions are all committed.
    fn gather(&mut self, poll_at: Option<Instant>) {
        let shared = Arc::clone(&self.shared);
        let mut held = shared.lock();
        loop {
            let ready = held
                .completions
                .front()
                .is_some_and(|(mark, _)| *mark <= held.backlog.start());
            if !held.backlog.is_empty() || held.closed || ready || !self.done.is_empty() {
                break;
            }
            match poll_at {
                Some(t) => {
                    let now = Instant::now();
                    if now >= t {
                        break;
                    }
                    held = shared
                        .wake
                        .wait_timeout(held, t - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                None => {
                    held = shared.wake.wait(held).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
        // Gather for `flush`, but never past a due poll nor beyond a full batch.
        if !held.backlog.is_empty() && !held.closed {
            let now = Instant::now();
            let mut until = now + self.settings.flush;
            if let Some(t) = poll_at {
                until = until.min(t.max(now));
            }
            while held.backlog.len() < MAX_BATCH && !held.closed {
                let now = Instant::now();
                if now >= until {
                    break;
                }
                held = shared
                    .wake
                    .wait_timeout(held, until - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        // Everything before `start` was taken and, no batch being under way, committed.
        let start = held.backlog.start();
        while held
            .completions
            .front()
            .is_some_and(|(mark, _)| *mark <= start)
        {
            if let Some((_, c)) = held.completions.pop_front() {
                self.done.push(c);
            }
        }
        held.backlog.take(MAX_BATCH, &mut self.batch);
        self.stats
            .held
            .store(held.backlog.len() as u64, Ordering::Relaxed);
        self.stats
            .in_flight
            .store(self.batch.len() as u64, Ordering::Relaxed);
        if held.closed && self.closed_at.is_none() {
            self.closed_at = Some(Instant::now());
        }
    }

    /// Commit the batch; `false` when it failed (handled: reconnect or retry later).
    fn commit(&mut self) -> bool {
        let Some(store) = self.store.as_mut() else {
            return false;
        };
        let started = Instant::now();
        match store.apply(&self.batch) {
            Ok(applied) => {
                let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                let stats = &self.stats;
                stats.last_commit_us.store(us, Ordering::Relaxed);
                stats
                    .transitions
                    .fetch_add(self.batch.len() as u64, Ordering::Relaxed);
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.in_flight.store(0, Ordering::Relaxed);
                stats.progressed();
                tracing::debug!(
                    transitions = self.batch.len(),
                    us,
                    discovered = applied.discovered,
                    detected = applied.detected,
                    missing = applied.missing,
                    missing_ignored = applied.missing_ignored,
                    suspended = applied.suspended,
                    doorbells = applied.doorbells,
                    hm_heartbeats = applied.hm_heartbeats,
                    hm_events = applied.hm_events,
                    hm_interfaces = applied.hm_interfaces,
                    events = applied.events,
                    vms_created = applied.vms_created,
                    pending_added = applied.pending_added,
                    "HSDB commit"
                );
                self.batch.clear();
                self.refusal_delay = self.settings.backoff.first;
                true
            }
            Err(e) => {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                let what = format!("commit of {} transitions", self.batch.len());
                self.failed(&what, e);
                false
            }
        }
    }

    /// Mark the commands acted on done, once the transitions of their action are
    /// committed (the caller commits first); `false` when it failed. One that cannot be
    /// marked stays for the next round; at worst a restart reads it again, and acting
    /// twice is harmless.
    fn complete(&mut self) -> bool {
        let Some(store) = self.store.as_mut() else {
            return false;
        };
        match store.complete(&self.done) {
            Ok(()) => {
                self.stats
                    .commands_done
                    .fetch_add(self.done.len() as u64, Ordering::Relaxed);
                self.done.clear();
                true
            }
            Err(e) => {
                self.stats.command_errors.fetch_add(1, Ordering::Relaxed);
                let what = format!("marking {} command(s) done", self.done.len());
                self.failed(&what, e);
                false
            }
        }
    }

    /// A call failed: an unavailable HSDB (or a broken connection) starts an outage; a
    /// refusal is retried after the back-off delay, on the same connection.
    fn failed(&mut self, what: &str, e: StoreError) {
        self.stats.set_last_error(&e.message);
        let broken = e.unavailable || self.store.as_ref().is_some_and(|s| s.is_broken());
        if broken {
            self.lost(what, &e);
            return;
        }
        let delay = self.refusal_delay;
        tracing::error!("HSDB {what} failed, retrying in {delay:?}: {e}");
        self.wait_until(Instant::now() + delay);
        self.refusal_delay = (delay * 2).min(self.settings.backoff.max);
    }

    /// The HSDB became unavailable: drop the connection, say so once, reconnect later.
    fn lost(&mut self, what: &str, e: &StoreError) {
        self.store = None;
        let now = Instant::now();
        let stats = &self.stats;
        stats.set_connected(false);
        stats.outages.fetch_add(1, Ordering::Relaxed);
        stats.progressed();
        let mut outage = Outage::new(now, self.settings.backoff.first);
        outage.next = now + self.jitter(outage.delay);
        self.outage = Some(outage);
        tracing::warn!(
            hsdb = %self.connector.target(),
            backlog = self.stats.backlog(),
            limit = self.settings.backlog_limit,
            "HSDB unavailable ({what} failed: {e}): monitoring goes on, transitions are held and \
             committed in order once it is back; reconnecting with back-off"
        );
    }

    /// One attempt to (re)connect.
    fn connect(&mut self) {
        self.stats
            .reconnect_attempts
            .fetch_add(1, Ordering::Relaxed);
        self.stats.progressed();
        let result = self.connector.connect();
        self.stats.progressed();
        let now = Instant::now();
        match result {
            Ok(store) => {
                self.store = Some(store);
                self.stats.set_connected(true);
                let outage = self.outage.take();
                let (down, attempts) =
                    outage.map_or((Duration::ZERO, 0), |o| (now - o.since, o.attempts + 1));
                tracing::info!(
                    hsdb = %self.connector.target(),
                    unavailable_ms = u64::try_from(down.as_millis()).unwrap_or(u64::MAX),
                    attempts,
                    backlog = self.stats.backlog(),
                    dropped = self.stats.dropped_total(),
                    "HSDB connected after {:.1} s unavailable: committing the backlog, oldest first",
                    down.as_secs_f64()
                );
            }
            Err(e) => {
                self.stats.set_last_error(&e.message);
                let mut o = self
                    .outage
                    .take()
                    .unwrap_or_else(|| Outage::new(now, self.settings.backoff.first));
                o.attempts += 1;
                o.delay = (o.delay * 2).min(self.settings.backoff.max);
                let wait = self.jitter(o.delay);
                o.next = now + wait;
                let target = self.connector.target();
                if !e.unavailable && !o.refusal_logged {
                    o.refusal_logged = true;
                    tracing::error!(
                        hsdb = %target,
                        "HSDB refused the connection, retrying with back-off while monitoring goes on: {e}"
                    );
                }
                tracing::debug!(
                    attempt = o.attempts,
                    retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "HSDB still unavailable: {e}"
                );
                if now - o.reminded >= REMIND_EVERY {
                    o.reminded = now;
                    tracing::info!(
                        hsdb = %target,
                        attempts = o.attempts,
                        backlog = self.stats.backlog(),
                        dropped = self.stats.dropped_total(),
                        "HSDB still unavailable after {:.0} s: {e}",
                        (now - o.since).as_secs_f64()
                    );
                }
                self.outage = Some(o);
            }
        }
    }

    /// A delay drawn between half of `delay` and `delay`.
    fn jitter(&mut self, delay: Duration) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = delay / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(self.rng % nanos.max(1))
    }

    /// Sleep until `until`, or until the dataplane hangs up.
    fn wait_until(&mut self, until: Instant) {
        let shared = Arc::clone(&self.shared);
        let mut held = shared.lock();
        loop {
            if held.closed {
                if self.closed_at.is_none() {
                    self.closed_at = Some(Instant::now());
                }
                // Stopping: wait no longer than the grace left.
                if self.grace_over() {
                    return;
                }
            }
            let now = Instant::now();
            if now >= until {
                return;
            }
            let mut wait = until - now;
            if let Some(closed) = self.closed_at {
                wait = wait.min((closed + self.settings.stop_grace).saturating_duration_since(now));
            }
            held = shared
                .wake
                .wait_timeout(held, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            if self.closed_at.is_some() && self.grace_over() {
                return;
            }
        }
    }

    fn grace_over(&self) -> bool {
        self.closed_at
            .is_some_and(|c| c.elapsed() >= self.settings.stop_grace)
    }

    /// Stopping and the grace is over while the HSDB is unavailable or refusing: say
    /// what is given up, and stop.
    fn give_up(&mut self) -> bool {
        if !self.grace_over() {
            return false;
        }
        let held = self.shared.lock().backlog.len();
        tracing::error!(
            hsdb = %self.connector.target(),
            not_committed = held + self.batch.len(),
            commands_not_marked_done = self.done.len(),
            "stopping with transitions not committed: the HSDB did not take them within {:?}",
            self.settings.stop_grace
        );
        true
    }

    /// Within a batch of the present: no outage's backlog left to commit first.
    fn caught_up(&self) -> bool {
        self.batch.is_empty() && self.shared.lock().backlog.len() < MAX_BATCH
    }

    /// The dataplane hung up and everything it sent is committed and marked.
    fn finished(&self) -> bool {
        if self.closed_at.is_none() || !self.batch.is_empty() || !self.done.is_empty() {
            return false;
        }
        let held = self.shared.lock();
        held.closed && held.backlog.is_empty() && held.completions.is_empty()
    }
}
