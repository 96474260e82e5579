//! The HSDB writer: transitions arrive in batches over a bounded channel, wait in the
//! [`Backlog`], and are committed in order, in as few transactions as possible.
//!
//! Two threads, so that the dataplane never waits for the database:
//! - `hsdb-intake` drains the channel into the backlog as fast as batches come, whatever
//!   the database does (the backlog supersedes and, past its bound, drops: counted and
//!   logged, `backlog.rs`);
//! - `hsdb-writer` owns the connection: it gathers what arrives within `flush` and
//!   commits it in one transaction (10,000 MISSING rows take ~50 ms on SQLite with
//!   `synchronous=FULL`), oldest first, at most [`MAX_BATCH`] at a time.
//!
//! When the HSDB is unavailable (PostgreSQL down or restarting, the network cut: an
//! error for which [`StoreError::unavailable`] holds, or a broken connection) the writer
//! drops the connection, says so once at warn, and reconnects with a jittered
//! exponential back-off ([`Backoff`]); when it is back it says so at info, commits the
//! backlog in order and only then reads commands again. Any other failed commit is a
//! refusal and is retried on the same connection, the same batch, with the same
//! back-off, as it always was; while that lasts the writer makes no progress and the
//! watchdog notices (`supervise.rs`). A transition is counted committed only once the
//! database acknowledged its transaction.
//!
//! The writer also owns the command path from the control plane (`commands.rs`): every
//! `command_poll` it reads this monitor's open commands, hands the new ones to the
//! dataplane thread (waking it), and marks each one done once the dataplane has acted
//! and the transitions of that action are committed.

mod commit;
pub mod report;
mod store;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use hsdb::Transition;
use mio::Waker;

use crate::backlog::{Backlog, BacklogCounts, KINDS};
use crate::commands::{Command, Completion};

pub use store::{Connector, HsdbConnector, OnConnect, Store, StoreError};

/// Largest number of transitions committed in one transaction.
pub const MAX_BATCH: usize = 100_000;

/// Default bound of the backlog, in transitions (docs/operations.md sizes it).
pub const DEFAULT_BACKLOG_LIMIT: usize = 200_000;

/// Reconnection (and refusal retry) delays: `first`, doubling up to `max`; each wait is
/// drawn between half the delay and the delay, so that the monitors of a host group do
/// not all knock at once when the database comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub first: Duration,
    /// The longest.
    pub max: Duration,
}

impl Backoff {
    /// 100 ms doubling to 5 s.
    pub const DEFAULT: Backoff = Backoff {
        first: Duration::from_millis(100),
        max: Duration::from_secs(5),
    };
}

/// How the writer works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterSettings {
    /// How long it gathers transitions into one transaction.
    pub flush: Duration,
    /// The backlog's bound, in transitions.
    pub backlog_limit: usize,
    /// Reconnection and retry delays.
    pub backoff: Backoff,
    /// At a stop, how long it goes on trying to commit what it holds while the HSDB is
    /// unavailable or refuses, before giving up (and saying what it gives up).
    pub stop_grace: Duration,
}

impl WriterSettings {
    /// The defaults with `flush`.
    pub fn new(flush: Duration) -> WriterSettings {
        WriterSettings {
            flush,
            backlog_limit: DEFAULT_BACKLOG_LIMIT,
            backoff: Backoff::DEFAULT,
            stop_grace: Duration::from_secs(10),
        }
    }
}

/// The last failed HSDB call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// What it said.
    pub message: String,
}

/// What the writer has done; read by the admin socket and the watchdog.
#[derive(Debug)]
pub struct WriterStats {
    /// Transitions handed to the writer (counted before the hand-over).
    pub handed: AtomicU64,
    /// Transitions committed: in a transaction the database acknowledged.
    pub transitions: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Commits that failed and were retried (refusals and outages alike).
    pub retries: AtomicU64,
    /// Duration of the last commit, microseconds.
    pub last_commit_us: AtomicU64,
    /// Commands read from the HSDB and handed to the dataplane thread.
    pub commands_read: AtomicU64,
    /// Commands marked done in the HSDB.
    pub commands_done: AtomicU64,
    /// Reads of the command queue or completions that failed (retried).
    pub command_errors: AtomicU64,
    /// A connection to the HSDB is open.
    pub connected: AtomicBool,
    /// When `connected` last changed (or the writer started), ms since the Unix epoch.
    pub connected_changed_ms: AtomicU64,
    /// Times the HSDB became unavailable (a start without it included).
    pub outages: AtomicU64,
    /// Attempts to connect after it did.
    pub reconnect_attempts: AtomicU64,
    /// Transitions in the backlog, not yet taken for a commit.
    pub held: AtomicU64,
    /// Transitions taken for the commit under way (or to be retried).
    pub in_flight: AtomicU64,
    /// The backlog's bound.
    pub backlog_limit: AtomicU64,
    /// Transitions the backlog superseded (the store ends the same without them).
    pub superseded: AtomicU64,
    /// Transitions dropped because the backlog was full, by kind (`backlog::KINDS`).
    pub dropped: [AtomicU64; KINDS.len()],
    /// The last failed HSDB call.
    last_error: Mutex<Option<LastError>>,
    /// Between two attempts to reach an unavailable HSDB: waiting, not stuck.
    waiting: AtomicBool,
    /// When the writer last made progress, in ms since `origin`: its last commit, an
    /// attempt to reconnect, or the hand-over that found it with nothing owed.
    progress_ms: AtomicU64,
    origin: Instant,
}

impl Default for WriterStats {
    fn default() -> WriterStats {
        WriterStats {
            handed: AtomicU64::new(0),
            transitions: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            last_commit_us: AtomicU64::new(0),
            commands_read: AtomicU64::new(0),
            commands_done: AtomicU64::new(0),
            command_errors: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            connected_changed_ms: AtomicU64::new(epoch_ms()),
            outages: AtomicU64::new(0),
            reconnect_attempts: AtomicU64::new(0),
            held: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            backlog_limit: AtomicU64::new(DEFAULT_BACKLOG_LIMIT as u64),
            superseded: AtomicU64::new(0),
            dropped: Default::default(),
            last_error: Mutex::new(None),
            waiting: AtomicBool::new(false),
            progress_ms: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }
}

/// A writer that owes transitions and has not committed for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// Transitions handed over and not committed.
    pub owed: u64,
    /// Time since the writer last made progress.
    pub silent: Duration,
}

/// Now, in ms since the Unix epoch.
pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl WriterStats {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The writer made progress now.
    fn progressed(&self) {
        self.progress_ms.fetch_max(self.now_ms(), Ordering::Relaxed);
    }

    /// Transitions dropped for room, every kind.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|d| d.load(Ordering::Relaxed)).sum()
    }

    /// Transitions held: in the backlog and in the commit under way.
    pub fn backlog(&self) -> u64 {
        self.held.load(Ordering::Relaxed) + self.in_flight.load(Ordering::Relaxed)
    }

    /// Transitions handed over and neither committed nor superseded nor dropped.
    pub fn owed(&self) -> u64 {
        // Accounted first: a hand-over in between can only make `owed` larger.
        let accounted = self.transitions.load(Ordering::Relaxed)
            + self.superseded.load(Ordering::Relaxed)
            + self.dropped_total();
        self.handed
            .load(Ordering::Relaxed)
            .saturating_sub(accounted)
    }

    /// The last failed HSDB call, if any.
    pub fn last_error(&self) -> Option<LastError> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn set_last_error(&self, message: &str) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(LastError {
                at_ms: epoch_ms(),
                message: message.to_owned(),
            });
        }
    }

    fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        self.connected_changed_ms
            .store(epoch_ms(), Ordering::Relaxed);
    }

    /// The backlog's counts, as the intake thread last saw them.
    fn publish(&self, backlog: &Backlog) {
        let counts = backlog.counts();
        self.held.store(backlog.len() as u64, Ordering::Relaxed);
        self.superseded.store(counts.superseded, Ordering::Relaxed);
        for (d, n) in self.dropped.iter().zip(counts.dropped) {
            d.store(n, Ordering::Relaxed);
        }
    }

    /// `Some` when the writer owes transitions and has made no progress for longer than
    /// `limit` (blocked on a lock, a failing disk, a refusing database, or gone); `None`
    /// when it is caught up or working — waiting for an unavailable HSDB to come back
    /// is working: every attempt to reconnect is progress.
    pub fn stalled(&self, limit: Duration) -> Option<Stall> {
        if self.waiting.load(Ordering::Relaxed) {
            return None;
        }
        let owed = self.owed();
        let silent = Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.progress_ms.load(Ordering::Relaxed)),
        );
        (owed > 0 && silent > limit).then_some(Stall { owed, silent })
    }
}

/// What the dataplane thread hands over in one go: transitions, and the commands it
/// has acted on (marked done once the transitions are committed).
#[derive(Debug, Default)]
pub struct Batch {
    /// Transitions, in order.
    pub transitions: Vec<Transition>,
    /// Commands acted on.
    pub completions: Vec<Completion>,
}

/// The command queue reader: whose commands, how often, and where they go.
#[derive(Debug)]
pub struct CommandPoll {
    /// This monitor.
    pub hm: hsdb::Uuid,
    /// Time between two reads of the queue.
    pub period: Duration,
    /// To the dataplane thread.
    pub tx: Sender<Vec<Command>>,
    /// Wakes the dataplane thread when commands were sent.
    pub waker: Arc<Waker>,
    /// The highest command id handed over: later reads ask only for newer ones (after a
    /// restart, 0: every open command is read again).
    pub after: i64,
}

impl CommandPoll {
    /// Read the open commands newer than the last handed over and hand them to the
    /// dataplane thread. A full channel leaves them for the next poll; a failed read is
    /// the caller's.
    fn poll(&mut self, store: &mut impl Store, stats: &WriterStats) -> Result<(), StoreError> {
        let commands = store.commands(&self.hm, self.after)?;
        let Some(last) = commands.iter().map(|c| c.id).max() else {
            return Ok(());
        };
        let n = commands.len() as u64;
        match self.tx.try_send(commands) {
            Ok(()) => {
                self.after = last;
                stats.commands_read.fetch_add(n, Ordering::Relaxed);
                if let Err(e) = self.waker.wake() {
                    tracing::warn!("cannot wake the dataplane thread for commands: {e}");
                }
            }
            Err(TrySendError::Full(_)) => {
                tracing::warn!(
                    commands = n,
                    "the dataplane thread has not taken the previous commands yet; reading them again at the next poll"
                );
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
        Ok(())
    }
}

/// What the two threads share.
#[derive(Debug)]
struct Shared {
    held: Mutex<Held>,
    /// Signalled when something was added or the channel closed.
    wake: Condvar,
}

#[derive(Debug)]
struct Held {
    backlog: Backlog,
    /// Commands acted on, each with the backlog position after its batch's
    /// transitions: marked done once everything before that is committed.
    completions: std::collections::VecDeque<(u64, Completion)>,
    /// The dataplane hung up: commit what is held, then stop.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Held> {
        // A panic elsewhere does not make the backlog wrong: keep using it.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Handle on the writer threads.
#[derive(Debug)]
pub struct Writer {
    tx: Option<Sender<Batch>>,
    handles: Vec<JoinHandle<()>>,
    /// Its counters.
    pub stats: Arc<WriterStats>,
}

impl Writer {
    /// Start the writer: on `store` if one is open already, else it connects through
    /// `connector` as soon as it can (and again whenever the HSDB was unavailable). With
    /// `commands`, it also reads the command queue.
    pub fn spawn<C: Connector>(
        connector: C,
        store: Option<C::Store>,
        settings: WriterSettings,
        commands: Option<CommandPoll>,
    ) -> std::io::Result<Writer> {
        let (tx, rx) = bounded(1024);
        let stats = Arc::new(WriterStats::default());
        stats
            .backlog_limit
            .store(settings.backlog_limit as u64, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            held: Mutex::new(Held {
                backlog: Backlog::new(settings.backlog_limit),
                completions: Default::default(),
                closed: false,
            }),
            wake: Condvar::new(),
        });
        let intake = {
            let (shared, stats) = (Arc::clone(&shared), Arc::clone(&stats));
            std::thread::Builder::new()
                .name("hsdb-intake".into())
                .spawn(move || intake(&rx, &shared, &stats))?
        };
        let committer = commit::Committer::new(connector, store, shared, &stats, settings);
        let writer = std::thread::Builder::new()
            .name("hsdb-writer".into())
            .spawn(move || committer.run(commands))?;
        Ok(Writer {
            tx: Some(tx),
            handles: vec![intake, writer],
            stats,
        })
    }

    /// Queue transitions and the commands acted on. Blocks only while the intake thread
    /// is a full channel behind (it never waits for the database).
    pub fn send_batch(&self, batch: Batch) {
        if batch.transitions.is_empty() && batch.completions.is_empty() {
            return;
        }
        // A writer that owed nothing starts its clock now, not at its last commit.
        let stats = &self.stats;
        if stats.owed() == 0 {
            stats.progressed();
        }
        stats
            .handed
            .fetch_add(batch.transitions.len() as u64, Ordering::Relaxed);
        if let Some(tx) = &self.tx
            && tx.send(batch).is_err()
        {
            tracing::error!("HSDB writer is gone; transitions cannot be recorded");
        }
    }

    /// Commit everything queued (giving up after the stop grace if the HSDB is
    /// unavailable), then stop the writer.
    pub fn finish(mut self) {
        self.tx = None;
        for h in self.handles.drain(..) {
            if h.join().is_err() {
                tracing::error!("HSDB writer thread panicked");
            }
        }
    }
}

/// How often a backlog that keeps overflowing is logged.
const OVERFLOW_LOG_EVERY: Duration = Duration::from_secs(10);

/// The intake thread: everything the dataplane sends goes into the backlog, at once.
fn intake(rx: &Receiver<Batch>, shared: &Shared, stats: &WriterStats) {
    let mut overflow = OverflowLog::default();
    loop {
        let first = match rx.recv_timeout(OVERFLOW_LOG_EVERY) {
            Ok(b) => b,
            Err(RecvTimeoutError::Timeout) => {
                let held = shared.lock();
                overflow.report(held.backlog.counts(), held.backlog.limit());
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                shared.lock().closed = true;
                shared.wake.notify_all();
                return;
            }
        };
        let mut held = shared.lock();
        hold(&mut held, first);
        while let Ok(b) = rx.try_recv() {
            hold(&mut held, b);
        }
        stats.publish(&held.backlog);
        overflow.report(held.backlog.counts(), held.backlog.limit());
        drop(held);
        shared.wake.notify_all();
    }
}

fn hold(held: &mut Held, batch: Batch) {
    for t in batch.transitions {
        held.backlog.push(t);
    }
    let mark = held.backlog.end();
    held.completions
        .extend(batch.completions.into_iter().map(|c| (mark, c)));
}

/// Overflow is logged at warn when it starts, then at most every
/// [`OVERFLOW_LOG_EVERY`] while it goes on, with the counts.
#[derive(Debug, Default)]
struct OverflowLog {
    reported: u64,
    last: Option<Instant>,
}

impl OverflowLog {
    fn report(&mut self, counts: &BacklogCounts, limit: usize) {
        let total = counts.dropped_total();
        if total == self.reported || self.last.is_some_and(|t| t.elapsed() < OVERFLOW_LOG_EVERY) {
            return;
        }
        let by_kind: Vec<String> = KINDS
            .iter()
            .zip(counts.dropped)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        tracing::warn!(
            limit,
            dropped = total - self.reported,
            dropped_total = total,
            by_kind = %by_kind.join(", "),
            "HSDB backlog full: transitions dropped to make room (events first, then history a later \
             transition of the same VM follows, then the oldest); hsdb_backlog_limit bounds it"
        );
        self.reported = total;
        self.last = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests;
