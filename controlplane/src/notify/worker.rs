//! One notifier's thread: the outbox after its offset, in id order, each event filtered,
//! delivered (retried with back-off until it is), and the offset stored after it.
//!
//! The loop, while not stopped:
//! 1. the [`Gate`] says whether this controller delivers now (with PostgreSQL, only the
//!    holder of the HSDB-wide duties' lease does, and its offset writes are fenced with
//!    that lease: two controllers never both deliver for long); when it does not, the
//!    notifier waits;
//! 2. the next events after max(the stored offset, the last id delivered in this run)
//!    are read in pages of [`PAGE`];
//! 3. an event the filter drops advances the offset without delivery; one it passes is
//!    delivered: a failed attempt is logged with the receiver's answer, counted, and
//!    retried after `initial_backoff × 2^(n-1)`, capped at `max_backoff`, with jitter
//!    (a random time between half and all of it) — until it succeeds, the daemon stops,
//!    or this controller loses the duties (then another delivers it);
//! 4. after each delivered event the offset is stored (after a page of filtered ones,
//!    once). An event is never skipped.
//!
//! A stop request ends the loop within one attempt's timeout at most (an exec hook is
//! killed at once); the daemon waits for it a bounded time (see
//! `daemon::NOTIFIER_STOP_GRACE`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hsdb::{EventRow, Fence, Hsdb};
use serde::{Deserialize, Serialize};

use super::{Channel, DeliveryError, EventDoc, Filter, sleep_unless};

/// Events read per page.
pub const PAGE: u32 = 100;
/// How often a notifier with a backlog counts it again (for the status).
pub const LAG_REFRESH: Duration = Duration::from_secs(2);

/// Whether this controller delivers now.
pub trait Gate: Send + Sync {
    /// `Some(fence)`: deliver, binding the offset's writes to `fence` (`None`: no
    /// lease, the sole controller). `None`: another controller delivers.
    fn permit(&self) -> Option<Option<Fence>>;
}

/// The gate of the only controller: always.
#[derive(Debug, Clone, Copy)]
pub struct Always;

impl Gate for Always {
    fn permit(&self) -> Option<Option<Fence>> {
        Some(None)
    }
}

/// A notifier's settings for its thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pacing {
    /// How long to wait when the outbox has nothing new.
    pub poll: Duration,
    /// The first retry's back-off.
    pub initial_backoff: Duration,
    /// The longest back-off.
    pub max_backoff: Duration,
}

impl Default for Pacing {
    fn default() -> Pacing {
        Pacing {
            poll: Duration::from_millis(500),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// What `hactl status` shows of a notifier.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NotifierStatus {
    /// The notifier's name.
    pub name: String,
    /// `webhook`, `exec` or `email`.
    pub kind: String,
    /// Where it delivers (no secret).
    pub target: String,
    /// Its consumer name in the HSDB.
    pub consumer: String,
    /// `starting`, `idle`, `delivering`, `retrying`, `standby` (another controller
    /// holds the duties), `hsdb-error`, `stopped`.
    pub state: String,
    /// The id of the last event handled (its offset).
    pub offset: i64,
    /// Events in the outbox after the offset, at the last look.
    pub lag: u64,
    /// The newest event id in the outbox, at the last look.
    pub newest_id: i64,
    /// Events delivered since start.
    pub delivered: u64,
    /// Events filtered out since start (they advance the offset).
    pub filtered: u64,
    /// Failed attempts since start (each retried).
    pub retries: u64,
    /// The event being retried, if any.
    pub retrying_id: Option<i64>,
    /// The last failure, in words.
    pub last_error: Option<String>,
    /// When it happened, ms since the Unix epoch.
    pub last_error_ms: Option<i64>,
    /// When the last event was delivered.
    pub last_delivered_ms: Option<i64>,
    /// Events the retention bound deleted before this notifier handled them, since start
    /// (counted by the housekeeping pass that deleted them).
    #[serde(default)]
    pub lost: u64,
}

/// The statuses of every notifier, shared by their threads and the daemon's status.
pub type SharedStatuses = Arc<Mutex<Vec<NotifierStatus>>>;

/// One notifier.
pub struct Worker {
    consumer: String,
    name: String,
    channel: Box<dyn Channel>,
    filter: Filter,
    pacing: Pacing,
    gate: Arc<dyn Gate>,
    connect: Box<dyn FnMut() -> hsdb::Result<Hsdb> + Send>,
    db: Option<Hsdb>,
    statuses: SharedStatuses,
    index: usize,
    /// The last id handled in this run (a stale stored offset never makes it deliver
    /// twice).
    last_id: Option<i64>,
    rng: u64,
    now_ms: fn() -> i64,
    /// When the backlog was last counted.
    lag_counted: Option<std::time::Instant>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.name)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What became of one event.
enum Outcome {
    Delivered,
    /// Stopping, or the duties were lost: the event was not delivered.
    Abandoned,
}

impl Worker {
    /// A notifier `name` recording its offset as `consumer`, delivering through
    /// `channel` what `filter` passes, on its own HSDB connection made by `connect`,
    /// while `gate` permits; its status is entry `index` of `statuses` (added here).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        consumer: &str,
        channel: Box<dyn Channel>,
        filter: Filter,
        pacing: Pacing,
        gate: Arc<dyn Gate>,
        connect: Box<dyn FnMut() -> hsdb::Result<Hsdb> + Send>,
        statuses: SharedStatuses,
    ) -> Worker {
        let mut all = statuses.lock().unwrap_or_else(PoisonError::into_inner);
        let index = all.len();
        all.push(NotifierStatus {
            name: name.to_owned(),
            kind: channel.kind().to_owned(),
            target: channel.target(),
            consumer: consumer.to_owned(),
            state: "starting".into(),
            ..NotifierStatus::default()
        });
        drop(all);
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Worker {
            consumer: consumer.to_owned(),
            name: name.to_owned(),
            channel,
            filter,
            pacing,
            gate,
            connect,
            db: None,
            statuses,
            index,
            last_id: None,
            rng: u64::from_le_bytes(seed) | 1,
            now_ms: wall_ms,
            lag_counted: None,
        }
    }

    fn status(&self, f: impl FnOnce(&mut NotifierStatus)) {
        let mut all = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = all.get_mut(self.index) {
            f(s);
        }
    }

    /// The back-off before retry `attempt` (1: the first retry), with jitter: a random
    /// time between half and all of `initial × 2^(attempt-1)` capped at `max`.
    pub fn backoff(&mut self, attempt: u32) -> Duration {
        let base = self
            .pacing
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.pacing.max_backoff);
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let half = base / 2;
        let span = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_micros(r % span)
    }

    /// Run until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) {
        tracing::info!(
            notifier = %self.name,
            kind = self.channel.kind(),
            target = %self.channel.target(),
            consumer = %self.consumer,
            "notifier started"
        );
        while !stop.load(Ordering::SeqCst) {
            let wait = match self.round(stop) {
                Ok(true) => Duration::ZERO,
                Ok(false) => self.pacing.poll,
                Err(why) => {
                    tracing::error!(notifier = %self.name, "notifier: {why}");
                    let now = (self.now_ms)();
                    self.status(|s| {
                        s.state = "hsdb-error".into();
                        s.last_error = Some(why.clone());
                        s.last_error_ms = Some(now);
                    });
                    if self.db.as_ref().is_some_and(Hsdb::is_broken) {
                        self.db = None;
                    }
                    self.pacing.poll.max(Duration::from_secs(2))
                }
            };
            if !wait.is_zero() && !sleep_unless(stop, wait) {
                break;
            }
        }
        self.status(|s| s.state = "stopped".into());
        tracing::info!(notifier = %self.name, "notifier stopped");
    }

    /// One page: `Ok(true)` when there may be more to do at once.
    fn round(&mut self, stop: &AtomicBool) -> Result<bool, String> {
        let Some(fence) = self.gate.permit() else {
            self.status(|s| s.state = "standby".into());
            // Another controller delivers: what it did is re-read when this one
            // delivers again.
            self.last_id = None;
            return Ok(false);
        };
        if self.db.is_none() {
            self.db = Some((self.connect)().map_err(|e| format!("HSDB connection: {e}"))?);
        }
        let Some(db) = self.db.as_mut() else {
            return Ok(false);
        };
        db.set_fence(fence);
        let stored = db
            .consumer_offset(&self.consumer)
            .map_err(|e| format!("reading offset: {e}"))?
            .unwrap_or(0);
        let from = self.last_id.map_or(stored, |l| l.max(stored));
        let rows = db
            .events_after(from, PAGE)
            .map_err(|e| format!("reading the outbox: {e}"))?;
        if rows.is_empty() {
            self.status(|s| {
                s.state = "idle".into();
                s.retrying_id = None;
                s.offset = from;
                s.lag = 0;
                s.newest_id = s.newest_id.max(from);
            });
            return Ok(false);
        }
        self.status(|s| s.offset = from);
        self.refresh_lag(from);
        let full = rows.len() == PAGE as usize;
        let mut unstored: Option<i64> = None;
        for row in rows {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            if !self.filter.passes(&row.kind) {
                self.last_id = Some(row.id);
                unstored = Some(row.id);
                self.status(|s| {
                    s.filtered += 1;
                    s.offset = row.id;
                    s.lag = s.lag.saturating_sub(1);
                });
                continue;
            }
            match self.deliver(&row, stop) {
                Outcome::Delivered => {
                    self.last_id = Some(row.id);
                    unstored = None;
                    self.store(row.id)?;
                }
                Outcome::Abandoned => {
                    // Filtered events before it are handled — unless the duties moved:
                    // then the new holder decides (the write would be fenced off).
                    if self.gate.permit().is_none() {
                        unstored = None;
                    }
                    break;
                }
            }
        }
        if let Some(id) = unstored {
            self.store(id)?;
        }
        Ok(full)
    }

    /// Count the events after `offset` for the status — at most every
    /// [`LAG_REFRESH`]: counting a large backlog reads all of it, and in between the
    /// count is kept by subtracting what was handled.
    fn refresh_lag(&mut self, offset: i64) {
        if self.lag_counted.is_some_and(|t| t.elapsed() < LAG_REFRESH) {
            return;
        }
        let Some(db) = self.db.as_ref() else { return };
        if let Ok(b) = db.event_backlog(offset) {
            self.lag_counted = Some(std::time::Instant::now());
            self.status(|s| {
                s.lag = b.count;
                s.newest_id = b.newest_id.unwrap_or(s.newest_id);
            });
        }
    }

    fn store(&mut self, id: i64) -> Result<(), String> {
        let Some(db) = self.db.as_mut() else {
            return Ok(());
        };
        db.set_consumer_offset(&self.consumer, id).map_err(|e| {
            format!(
                "event {id} handled but its offset not stored (it may be delivered again \
                 after a restart): {e}"
            )
        })
    }

    /// Deliver `row`, retrying until it is delivered or abandoned.
    fn deliver(&mut self, row: &EventRow, stop: &AtomicBool) -> Outcome {
        let doc = match self.db.as_ref() {
            Some(db) => EventDoc::of_row_in(row, db),
            None => EventDoc::of(row),
        };
        self.status(|s| s.state = "delivering".into());
        let mut attempt = 0u32;
        loop {
            if stop.load(Ordering::SeqCst) {
                return Outcome::Abandoned;
            }
            if attempt > 0 && self.gate.permit().is_none() {
                tracing::info!(
                    notifier = %self.name,
                    event = row.id,
                    "no longer holding the HSDB-wide duties: event {} left to the \
                     controller that holds them",
                    row.id
                );
                return Outcome::Abandoned;
            }
            attempt += 1;
            match self.channel.deliver(&doc, stop) {
                Ok(answer) => {
                    tracing::info!(
                        notifier = %self.name,
                        event = row.id,
                        kind = %row.kind,
                        attempt,
                        "delivered: {answer}"
                    );
                    let now = (self.now_ms)();
                    self.status(|s| {
                        s.delivered += 1;
                        s.offset = row.id;
                        s.lag = s.lag.saturating_sub(1);
                        s.last_delivered_ms = Some(now);
                        s.retrying_id = None;
                        s.state = "delivering".into();
                    });
                    return Outcome::Delivered;
                }
                Err(DeliveryError::Stopped) => return Outcome::Abandoned,
                Err(e) => {
                    let wait = self.backoff(attempt);
                    let why = e.to_string();
                    tracing::warn!(
                        notifier = %self.name,
                        event = row.id,
                        kind = %row.kind,
                        attempt,
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "delivery failed, retried (an event is never skipped): {why}"
                    );
                    let now = (self.now_ms)();
                    // The backlog grows while the receiver is down: shown as it is.
                    self.refresh_lag(row.id - 1);
                    self.status(|s| {
                        s.retries += 1;
                        s.retrying_id = Some(row.id);
                        s.last_error = Some(format!("event {}: {why}", row.id));
                        s.last_error_ms = Some(now);
                        s.state = "retrying".into();
                    });
                    if !sleep_unless(stop, wait) {
                        return Outcome::Abandoned;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    struct Never;
    impl Channel for Never {
        fn kind(&self) -> &'static str {
            "exec"
        }
        fn target(&self) -> String {
            "never".into()
        }
        fn deliver(&mut self, _: &EventDoc, _: &AtomicBool) -> Result<String, DeliveryError> {
            Err(DeliveryError::Refused("no".into()))
        }
    }

    #[test]
    fn test_backoff_doubles_is_capped_and_jittered() {
        let statuses: SharedStatuses = Arc::default();
        let mut w = Worker::new(
            "n",
            "notifier:n",
            Box::new(Never),
            Filter::default(),
            Pacing {
                poll: Duration::from_millis(10),
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(1000),
            },
            Arc::new(Always),
            Box::new(Hsdb::open_in_memory),
            statuses,
        );
        let mut seen = std::collections::BTreeSet::new();
        for attempt in 1..=8u32 {
            let base = (100u64 << (attempt - 1)).min(1000);
            for _ in 0..50 {
                let d = u64::try_from(w.backoff(attempt).as_millis()).unwrap();
                assert!(
                    d >= base / 2 && d <= base,
                    "attempt {attempt}: {d} ms of {base}"
                );
                seen.insert(d);
            }
        }
        assert!(seen.len() > 20, "jittered: {seen:?}");
    }
}
