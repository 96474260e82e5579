//! The single HSDB writer: transitions arrive in batches over a bounded channel and are
//! committed in as few transactions as possible.
//!
//! The dataplane thread never touches SQLite. It sends what one wake-up produced; the
//! writer gathers everything that arrives within `flush` and commits it in one
//! transaction (10,000 MISSING rows take ~50 ms with `synchronous=FULL`). A failed
//! commit is retried with the same batch: nothing accepted is dropped, and while the
//! disk is unusable the bounded channel holds the dataplane back instead of losing rows.
//!
//! The writer also owns the command path from the control plane (`commands.rs`): every
//! `command_poll` it reads this monitor's open commands, hands the new ones to the
//! dataplane thread (waking it), and marks each one done once the dataplane has acted
//! and the transitions of that action are committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use hsdb::{Hsdb, Transition};
use mio::Waker;

use crate::commands::{Command, Completion};

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
    /// Commands read from the HSDB and handed to the dataplane thread.
    pub commands_read: AtomicU64,
    /// Commands marked done in the HSDB.
    pub commands_done: AtomicU64,
    /// Reads of the command queue or completions that failed (retried).
    pub command_errors: AtomicU64,
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
            commands_read: AtomicU64::new(0),
            commands_done: AtomicU64::new(0),
            command_errors: AtomicU64::new(0),
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
    /// dataplane thread. A failed read or a full channel leaves them for the next poll.
    fn poll(&mut self, hsdb: &Hsdb, stats: &WriterStats) {
        let commands = match crate::commands::read(hsdb, &self.hm, self.after) {
            Ok(c) => c,
            Err(e) => {
                stats.command_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("reading the command queue failed, retrying at the next poll: {e}");
                return;
            }
        };
        let Some(last) = commands.iter().map(|c| c.id).max() else {
            return;
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
    }
}

/// Handle on the writer thread.
#[derive(Debug)]
pub struct Writer {
    tx: Option<Sender<Batch>>,
    handle: Option<JoinHandle<()>>,
    /// Its counters.
    pub stats: Arc<WriterStats>,
}

impl Writer {
    /// Start the writer on `hsdb`; with `commands`, it also reads the command queue.
    pub fn spawn(
        hsdb: Hsdb,
        flush: Duration,
        commands: Option<CommandPoll>,
    ) -> std::io::Result<Writer> {
        let (tx, rx) = bounded(1024);
        let stats = Arc::new(WriterStats::default());
        let thread_stats = Arc::clone(&stats);
        let handle = std::thread::Builder::new()
            .name("hsdb-writer".into())
            .spawn(move || run(hsdb, &rx, flush, &thread_stats, commands))?;
        Ok(Writer {
            tx: Some(tx),
            handle: Some(handle),
            stats,
        })
    }

    /// Queue transitions and the commands acted on; blocks while the writer is a full
    /// channel behind.
    pub fn send_batch(&self, batch: Batch) {
        if batch.transitions.is_empty() && batch.completions.is_empty() {
            return;
        }
        // A writer that owed nothing starts its clock now, not at its last commit.
        let stats = &self.stats;
        if stats.handed.load(Ordering::Relaxed) == stats.transitions.load(Ordering::Relaxed) {
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

fn run(
    mut hsdb: Hsdb,
    rx: &Receiver<Batch>,
    flush: Duration,
    stats: &WriterStats,
    mut commands: Option<CommandPoll>,
) {
    let mut batch: Vec<Transition> = Vec::new();
    let mut done: Vec<Completion> = Vec::new();
    // The first poll at once: commands a previous run left open are acted on at start.
    let mut next_poll = Instant::now();
    loop {
        let first = match &commands {
            Some(_) => rx.recv_deadline(next_poll),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let mut closed = false;
        match first {
            Ok(b) => {
                batch.extend(b.transitions);
                done.extend(b.completions);
                // Gather for `flush`, but never past a due poll.
                let mut deadline = Instant::now() + flush;
                if commands.is_some() {
                    deadline = deadline.min(next_poll.max(Instant::now()));
                }
                while batch.len() < MAX_BATCH {
                    match rx.recv_deadline(deadline) {
                        Ok(b) => {
                            batch.extend(b.transitions);
                            done.extend(b.completions);
                        }
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => closed = true,
        }
        commit(&mut hsdb, &mut batch, stats);
        complete(&mut hsdb, &mut done, stats);
        if closed {
            break;
        }
        if let Some(c) = &mut commands
            && Instant::now() >= next_poll
        {
            c.poll(&hsdb, stats);
            next_poll = Instant::now() + c.period;
        }
    }
    // Anything still queued when the sender went away.
    while let Ok(b) = rx.try_recv() {
        batch.extend(b.transitions);
        done.extend(b.completions);
    }
    commit(&mut hsdb, &mut batch, stats);
    complete(&mut hsdb, &mut done, stats);
}

/// Mark the commands acted on done, once the transitions of their action are
/// committed (the caller commits first). One that cannot be marked stays for the next
/// round; at worst a restart reads it again, and acting twice is harmless.
fn complete(hsdb: &mut Hsdb, done: &mut Vec<Completion>, stats: &WriterStats) {
    if done.is_empty() {
        return;
    }
    match crate::commands::complete(hsdb, done) {
        Ok(()) => {
            stats
                .commands_done
                .fetch_add(done.len() as u64, Ordering::Relaxed);
            done.clear();
        }
        Err(e) => {
            stats.command_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                "marking {} command(s) done failed, retrying: {e}",
                done.len()
            );
        }
    }
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

    /// A registered monitor on a fresh HSDB in `dir`.
    fn hsdb_with_monitor(dir: &std::path::Path, hm: hsdb::Uuid) -> Hsdb {
        let mut db =
            Hsdb::open(dir.join("hsdb.sqlite"), &hsdb::Options::default()).expect("open the HSDB");
        db.upsert_host(&hsdb::HostRecord {
            id: hsdb::HostId(1),
            name: "host1".into(),
            machine_type: String::new(),
            model: String::new(),
            serial: String::new(),
            cpu_milli: 0,
            memory_mb: 0,
            host_group: String::new(),
        })
        .expect("host");
        db.register_hm(&hsdb::HmRecord {
            uuid: hm,
            host: hsdb::HostId(1),
            mac: hsdb::MacAddr::default(),
            incarnation: hsdb::HelloId {
                secs: 1,
                nanos: 0,
                suffix: 1,
            },
            version: dataplane::wire::VERSION,
            at: 0,
        })
        .expect("monitor");
        db
    }

    /// The writer reads the open commands within a poll period, hands them over once,
    /// marks them done with their result after the batch's transitions, and a new
    /// writer (a restart) reads again only those left open.
    #[test]
    fn commands_are_read_handed_over_once_and_marked_done() {
        use crate::commands::{Command, Completion};
        let dir = tempfile::tempdir().expect("temp dir");
        let hm = hsdb::Uuid([1; 16]);
        let (vm1, vm2, vm3) = (
            hsdb::Uuid([2; 16]),
            hsdb::Uuid([3; 16]),
            hsdb::Uuid([4; 16]),
        );
        let mut db = hsdb_with_monitor(dir.path(), hm);
        let stop = db
            .enqueue_command(&hm, hsdb::CommandKind::StopMonitoring, &vm1, 10)
            .expect("enqueue");
        let forget = db
            .enqueue_command(&hm, hsdb::CommandKind::ForgetVm, &vm2, 11)
            .expect("enqueue");

        let spawn = |db: Hsdb| {
            let poll = mio::Poll::new().expect("poll");
            let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).expect("waker"));
            let (tx, rx) = bounded(4);
            let writer = Writer::spawn(
                db,
                Duration::from_millis(5),
                Some(CommandPoll {
                    hm,
                    period: Duration::from_millis(50),
                    tx,
                    waker,
                    after: 0,
                }),
            )
            .expect("writer");
            (writer, rx, poll)
        };
        let (writer, rx, _poll) = spawn(db);
        let first = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the open commands, read at once");
        assert_eq!(
            first,
            vec![
                Command {
                    id: stop,
                    kind: hsdb::CommandKind::StopMonitoring,
                    vm: vm1,
                    created_ms: 10
                },
                Command {
                    id: forget,
                    kind: hsdb::CommandKind::ForgetVm,
                    vm: vm2,
                    created_ms: 11
                },
            ]
        );
        // Handed over once: later polls ask only for newer ones.
        let mut db2 = Hsdb::open(dir.path().join("hsdb.sqlite"), &hsdb::Options::default())
            .expect("second connection");
        let start = db2
            .enqueue_command(&hm, hsdb::CommandKind::StartMonitoring, &vm3, 20)
            .expect("enqueue");
        let second = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the new command, within a poll");
        assert_eq!(second.iter().map(|c| c.id).collect::<Vec<_>>(), [start]);
        // Only the first is acted on before the "crash".
        writer.send_batch(Batch {
            transitions: Vec::new(),
            completions: vec![Completion {
                id: stop,
                result: "STOPPED: test".into(),
                at: 30,
            }],
        });
        writer.finish();
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "nothing handed over twice"
        );
        let done = db2.command(stop).expect("read").expect("exists");
        assert_eq!(done.done_ms, Some(30));
        assert_eq!(done.result.as_deref(), Some("STOPPED: test"));
        assert_eq!(
            db2.command(forget).expect("read").expect("exists").done_ms,
            None
        );

        // A restart reads the two left open again.
        let (writer, rx, _poll) = spawn(db2);
        let again = rx.recv_timeout(Duration::from_secs(10)).expect("reread");
        assert_eq!(
            again.iter().map(|c| c.id).collect::<Vec<_>>(),
            [forget, start]
        );
        writer.finish();
    }
}
