//! The single HSDB writer: transitions arrive in batches over a bounded channel and are
//! committed in as few transactions as possible.
//!
//! The dataplane thread never touches SQLite. It sends what one wake-up produced; the
//! writer gathers everything that arrives within `flush` and commits it in one
//! transaction (10,000 MISSING rows take ~50 ms with `synchronous=FULL`). A failed
//! commit is retried with the same batch: nothing accepted is dropped, and while the
//! disk is unusable the bounded channel holds the dataplane back instead of losing rows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use hsdb::{Hsdb, Transition};

/// Largest number of transitions committed in one transaction.
const MAX_BATCH: usize = 100_000;

/// What the writer has done; read by the admin socket and the watchdog.
#[derive(Debug)]
pub struct WriterStats {
    /// Transitions handed to the writer (counted before the hand-over).
    pub handed: AtomicU64,
    /// Transitions committed.
    pub transitions: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Commits that failed and were retried.
    pub retries: AtomicU64,
    /// Duration of the last commit, microseconds.
    pub last_commit_us: AtomicU64,
    /// When the writer last made progress, in ms since `origin`: its last commit, or
    /// the hand-over that found it with nothing owed.
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

impl WriterStats {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The writer made progress now.
    fn progressed(&self) {
        self.progress_ms.fetch_max(self.now_ms(), Ordering::Relaxed);
    }

    /// `Some` when the writer owes transitions and has made no progress for longer than
    /// `limit` (blocked on a lock, a failing disk, or gone); `None` when it is caught
    /// up or working.
    pub fn stalled(&self, limit: Duration) -> Option<Stall> {
        // Committed first: a hand-over in between can only make `owed` larger.
        let committed = self.transitions.load(Ordering::Relaxed);
        let owed = self
            .handed
            .load(Ordering::Relaxed)
            .saturating_sub(committed);
        let silent = Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.progress_ms.load(Ordering::Relaxed)),
        );
        (owed > 0 && silent > limit).then_some(Stall { owed, silent })
    }
}

/// Handle on the writer thread.
#[derive(Debug)]
pub struct Writer {
    tx: Option<Sender<Vec<Transition>>>,
    handle: Option<JoinHandle<()>>,
    /// Its counters.
    pub stats: Arc<WriterStats>,
}

impl Writer {
    /// Start the writer on `hsdb`.
    pub fn spawn(hsdb: Hsdb, flush: Duration) -> std::io::Result<Writer> {
        let (tx, rx) = bounded(1024);
        let stats = Arc::new(WriterStats::default());
        let thread_stats = Arc::clone(&stats);
        let handle = std::thread::Builder::new()
            .name("hsdb-writer".into())
            .spawn(move || run(hsdb, &rx, flush, &thread_stats))?;
        Ok(Writer {
            tx: Some(tx),
            handle: Some(handle),
            stats,
        })
    }

    /// Queue a batch; blocks while the writer is a full channel behind.
    pub fn send(&self, batch: Vec<Transition>) {
        if batch.is_empty() {
            return;
        }
        // A writer that owed nothing starts its clock now, not at its last commit.
        let stats = &self.stats;
        if stats.handed.load(Ordering::Relaxed) == stats.transitions.load(Ordering::Relaxed) {
            stats.progressed();
        }
        stats
            .handed
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if let Some(tx) = &self.tx
            && tx.send(batch).is_err()
        {
            tracing::error!("HSDB writer is gone; transitions cannot be recorded");
        }
    }

    /// Commit everything queued, then stop the writer.
    pub fn finish(mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take()
            && h.join().is_err()
        {
            tracing::error!("HSDB writer thread panicked");
        }
    }
}

fn run(mut hsdb: Hsdb, rx: &Receiver<Vec<Transition>>, flush: Duration, stats: &WriterStats) {
    let mut batch: Vec<Transition> = Vec::new();
    while let Ok(v) = rx.recv() {
        batch.extend(v);
        let deadline = std::time::Instant::now() + flush;
        let mut closed = false;
        while batch.len() < MAX_BATCH {
            match rx.recv_deadline(deadline) {
                Ok(v) => batch.extend(v),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        commit(&mut hsdb, &mut batch, stats);
        if closed {
            break;
        }
    }
    // Anything still queued when the sender went away.
    while let Ok(v) = rx.try_recv() {
        batch.extend(v);
    }
    commit(&mut hsdb, &mut batch, stats);
}

fn commit(hsdb: &mut Hsdb, batch: &mut Vec<Transition>, stats: &WriterStats) {
    if batch.is_empty() {
        return;
    }
    let mut delay = Duration::from_millis(100);
    loop {
        let started = std::time::Instant::now();
        match hsdb.apply(batch) {
            Ok(applied) => {
                let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                stats.last_commit_us.store(us, Ordering::Relaxed);
                stats
                    .transitions
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.progressed();
                tracing::debug!(
                    transitions = batch.len(),
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
                batch.clear();
                return;
            }
            Err(e) => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    "HSDB commit of {} transitions failed, retrying in {:?}: {e}",
                    batch.len(),
                    delay
                );
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stall verdict from the counters alone (no thread, no database, no sleep: the
    /// writer's clock origin is set a minute back).
    #[test]
    fn stalled_only_while_owing_and_silent() {
        let minute = Duration::from_secs(60);
        let stats = WriterStats {
            origin: Instant::now()
                .checked_sub(minute)
                .expect("a minute of uptime"),
            ..WriterStats::default()
        };
        let limit = Duration::from_secs(5);
        assert_eq!(stats.stalled(Duration::ZERO), None, "owes nothing");
        stats.handed.store(3, Ordering::Relaxed);
        let stall = stats
            .stalled(limit)
            .expect("owes 3, no progress for a minute");
        assert_eq!(stall.owed, 3);
        assert!(stall.silent >= minute, "{stall:?}");
        stats.progressed();
        assert_eq!(
            stats.stalled(limit),
            None,
            "owes, but made progress just now"
        );
        stats.transitions.store(3, Ordering::Relaxed);
        assert_eq!(stats.stalled(Duration::ZERO), None, "caught up");
    }
}
