//! The writer against an HSDB that goes away and comes back: a real SQLite file behind
//! a switch that makes every call fail as an unreachable database would (and the
//! connection it broke unusable), or refuse a number of times.

use std::sync::Mutex;

use super::*;

/// The switch the tests turn.
#[derive(Debug, Clone, Default)]
struct Switch {
    /// The database cannot be reached.
    down: Arc<AtomicBool>,
    /// The next calls to refuse (as a full disk would).
    refusals: Arc<AtomicU64>,
    /// Successful connections.
    connects: Arc<AtomicU64>,
    /// What the writer asked for, in order: `connect`, `apply N`, `commands`.
    calls: Arc<Mutex<Vec<String>>>,
}

impl Switch {
    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
    fn log(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(
                "error connecting to server: Connection refused (os error 111)",
            ));
        }
        if self
            .refusals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::refused("disk I/O error"));
        }
        Ok(())
    }
}

struct Flaky {
    path: PathBuf,
    switch: Switch,
}

struct FlakyStore {
    db: Hsdb,
    switch: Switch,
    broken: bool,
}

impl Connector for Flaky {
    type Store = FlakyStore;
    fn connect(&mut self) -> Result<FlakyStore, StoreError> {
        self.switch.check()?;
        let db = Hsdb::open(&self.path, &hsdb::Options::default())
            .map_err(|e| StoreError::from_hsdb(&e, false))?;
        self.switch.connects.fetch_add(1, Ordering::SeqCst);
        self.switch.log("connect".into());
        Ok(FlakyStore {
            db,
            switch: self.switch.clone(),
            broken: false,
        })
    }
    fn target(&self) -> String {
        format!("flaky {}", self.path.display())
    }
}

impl FlakyStore {
    fn check(&mut self) -> Result<(), StoreError> {
        if self.broken {
            return Err(StoreError::unavailable("connection closed"));
        }
        let r = self.switch.check();
        if r.as_ref().is_err_and(|e| e.unavailable) {
            self.broken = true;
        }
        r
    }
}

impl Store for FlakyStore {
    fn apply(&mut self, batch: &[Transition]) -> Result<hsdb::Applied, StoreError> {
        self.check()?;
        self.switch.log(format!("apply {}", batch.len()));
        Store::apply(&mut self.db, batch)
    }
    fn commands(&mut self, hm: &hsdb::Uuid, after: i64) -> Result<Vec<Command>, StoreError> {
        self.check()?;
        self.switch.log("commands".into());
        Store::commands(&mut self.db, hm, after)
    }
    fn complete(&mut self, done: &[Completion]) -> Result<(), StoreError> {
        self.check()?;
        Store::complete(&mut self.db, done)
    }
    fn is_broken(&self) -> bool {
        self.broken
    }
}

const HM: hsdb::Uuid = hsdb::Uuid([1; 16]);

fn note(n: u64) -> Transition {
    Transition::Event {
        kind: "NOTE".into(),
        vm: None,
        hm: Some(HM),
        text: n.to_string(),
        at: i64::try_from(n).unwrap(),
    }
}

fn fast() -> WriterSettings {
    WriterSettings {
        flush: Duration::from_millis(2),
        backlog_limit: 1_000_000,
        backoff: Backoff {
            first: Duration::from_millis(5),
            max: Duration::from_millis(40),
        },
        stop_grace: Duration::from_millis(300),
    }
}

/// Wait (generously: the machine may be loaded) until `done` holds.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The notes in the store, in commit order.
fn notes(path: &Path) -> Vec<u64> {
    let db = Hsdb::open_read_only(path, &hsdb::Options::default()).unwrap();
    db.events_after(0, u32::MAX)
        .unwrap()
        .into_iter()
        .map(|e| e.text.parse().unwrap())
        .collect()
}

/// The dataplane sends throughout an outage without ever waiting; every transition
/// reaches the store, in order, once it is back; at no moment does the writer count
/// committed a transition the store does not have.
#[test]
fn no_transition_hmd_reported_committed_is_ever_lost() {
    let dir = tempfile::tempdir().unwrap();
    drop(hsdb_with_monitor(dir.path(), HM));
    let path = dir.path().join("hsdb.sqlite");
    let switch = Switch::default();
    let flaky = Flaky {
        path: path.clone(),
        switch: switch.clone(),
    };
    let first = flaky.switch.clone();
    let store = {
        let mut f = Flaky {
            path: path.clone(),
            switch: first,
        };
        f.connect().unwrap()
    };
    let writer = Writer::spawn(flaky, Some(store), fast(), None).unwrap();
    let stats = Arc::clone(&writer.stats);

    // Committed never exceeds what the store holds, checked all along.
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (stats, path, watching) = (Arc::clone(&stats), path.clone(), Arc::clone(&watching));
        std::thread::spawn(move || {
            let mut checks = 0u64;
            while watching.load(Ordering::SeqCst) {
                let committed = stats.transitions.load(Ordering::SeqCst);
                let stored = notes(&path).len() as u64;
                assert!(
                    committed <= stored,
                    "{committed} counted committed, {stored} in the store"
                );
                checks += 1;
                std::thread::sleep(Duration::from_millis(3));
            }
            checks
        })
    };

    let mut n = 0u64;
    let mut send = |count: u64| {
        for _ in 0..count {
            n += 1;
            writer.send_batch(Batch {
                transitions: vec![note(n)],
                completions: Vec::new(),
            });
        }
    };
    send(200);
    wait_for("the first 200 committed", || {
        stats.transitions.load(Ordering::SeqCst) == 200
    });
    assert!(stats.connected.load(Ordering::SeqCst));

    switch.set_down(true);
    // Far more batches than the channel holds (1024): a writer that waited for the
    // database would block this thread; the test would then time out below.
    let sent = Instant::now();
    send(5000);
    wait_for("the outage noticed", || {
        !stats.connected.load(Ordering::SeqCst)
    });
    wait_for("every batch taken in", || stats.backlog() >= 5000);
    let held_at = stats.transitions.load(Ordering::SeqCst);
    assert!(
        held_at <= 5200,
        "nothing committed while the store is down: {held_at}"
    );
    assert!(
        sent.elapsed() < Duration::from_secs(20),
        "sending took {:?}",
        sent.elapsed()
    );
    wait_for("a few reconnection attempts", || {
        stats.reconnect_attempts.load(Ordering::SeqCst) >= 3
    });
    assert_eq!(stats.outages.load(Ordering::SeqCst), 1);
    // Waiting for the database is no stall, whatever the back-off: the watchdog keeps
    // pinging.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stats.stalled(Duration::ZERO), None);
    assert!(stats.owed() > 0);
    assert!(
        stats
            .last_error()
            .is_some_and(|e| e.message.contains("Connection refused")),
        "{:?}",
        stats.last_error()
    );
    assert_eq!(
        stats.transitions.load(Ordering::SeqCst),
        held_at,
        "no commit while down"
    );

    switch.set_down(false);
    send(300);
    wait_for("everything committed", || stats.owed() == 0);
    assert!(stats.connected.load(Ordering::SeqCst));
    assert_eq!(stats.backlog(), 0);
    writer.finish();
    watching.store(false, Ordering::SeqCst);
    let checks = watcher.join().unwrap();
    assert!(checks > 10, "the watcher checked {checks} times");

    assert_eq!(
        notes(&path),
        (1..=5500).collect::<Vec<_>>(),
        "all, in order"
    );
    assert_eq!(stats.transitions.load(Ordering::SeqCst), 5500);
    assert_eq!(stats.superseded.load(Ordering::SeqCst), 0);
    assert_eq!(stats.dropped_total(), 0);
    // One connection at start, one after the outage: the writer carried on.
    assert_eq!(switch.connects.load(Ordering::SeqCst), 2);
}

/// A refusal is retried on the same connection, with the same batch; it is no outage.
#[test]
fn a_refused_commit_is_retried_on_the_same_connection() {
    let dir = tempfile::tempdir().unwrap();
    drop(hsdb_with_monitor(dir.path(), HM));
    let path = dir.path().join("hsdb.sqlite");
    let switch = Switch::default();
    let mut flaky = Flaky {
        path: path.clone(),
        switch: switch.clone(),
    };
    let store = flaky.connect().unwrap();
    let writer = Writer::spawn(flaky, Some(store), fast(), None).unwrap();
    let stats = Arc::clone(&writer.stats);
    switch.refusals.store(3, Ordering::SeqCst);
    writer.send_batch(Batch {
        transitions: (1..=10).map(note).collect(),
        completions: Vec::new(),
    });
    wait_for("the batch committed", || stats.owed() == 0);
    writer.finish();
    assert_eq!(stats.retries.load(Ordering::SeqCst), 3);
    assert_eq!(stats.outages.load(Ordering::SeqCst), 0);
    assert_eq!(switch.connects.load(Ordering::SeqCst), 1);
    assert_eq!(notes(&path), (1..=10).collect::<Vec<_>>());
    assert_eq!(
        stats.last_error().map(|e| e.message),
        Some("disk I/O error".into())
    );
}

/// Started without the HSDB: monitoring goes on, the registration runs on the first
/// connection and before any transition, then the backlog is committed.
#[test]
fn a_start_without_the_hsdb_registers_on_connect_then_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hsdb.sqlite");
    let switch = Switch::default();
    switch.set_down(true);
    let registered = Arc::new(AtomicU64::new(0));
    // The registration of this monitor, as start-up would do it.
    struct Registering {
        inner: Flaky,
        dir: PathBuf,
        registered: Arc<AtomicU64>,
    }
    impl Connector for Registering {
        type Store = FlakyStore;
        fn connect(&mut self) -> Result<FlakyStore, StoreError> {
            self.inner.switch.check()?;
            if self.registered.load(Ordering::SeqCst) == 0 {
                drop(hsdb_with_monitor(&self.dir, HM));
                self.inner.switch.log("register".into());
                self.registered.fetch_add(1, Ordering::SeqCst);
            }
            self.inner.connect()
        }
        fn target(&self) -> String {
            self.inner.target()
        }
    }
    let connector = Registering {
        inner: Flaky {
            path: path.clone(),
            switch: switch.clone(),
        },
        dir: dir.path().to_owned(),
        registered: Arc::clone(&registered),
    };
    let writer = Writer::spawn(connector, None, fast(), None).unwrap();
    let stats = Arc::clone(&writer.stats);
    assert!(!stats.connected.load(Ordering::SeqCst));
    assert_eq!(stats.outages.load(Ordering::SeqCst), 1);
    for n in 1..=50 {
        writer.send_batch(Batch {
            transitions: vec![note(n)],
            completions: Vec::new(),
        });
    }
    wait_for("held", || stats.backlog() == 50);
    wait_for("attempts", || {
        stats.reconnect_attempts.load(Ordering::SeqCst) >= 2
    });
    assert_eq!(registered.load(Ordering::SeqCst), 0);
    switch.set_down(false);
    wait_for("committed", || stats.owed() == 0);
    writer.finish();
    assert_eq!(registered.load(Ordering::SeqCst), 1);
    assert_eq!(notes(&path), (1..=50).collect::<Vec<_>>());
    let calls = switch.calls.lock().unwrap().clone();
    assert_eq!(calls[..2], ["register", "connect"], "{calls:?}");
    assert!(calls[2].starts_with("apply"), "{calls:?}");
}

/// A stop while the HSDB is unavailable gives up after the grace, and says so; it does
/// not count as committed what was not.
#[test]
fn a_stop_during_an_outage_ends_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    drop(hsdb_with_monitor(dir.path(), HM));
    let path = dir.path().join("hsdb.sqlite");
    let switch = Switch::default();
    switch.set_down(true);
    let flaky = Flaky {
        path: path.clone(),
        switch: switch.clone(),
    };
    let writer = Writer::spawn(flaky, None, fast(), None).unwrap();
    let stats = Arc::clone(&writer.stats);
    writer.send_batch(Batch {
        transitions: vec![note(1), note(2)],
        completions: Vec::new(),
    });
    let stopping = Instant::now();
    writer.finish();
    let took = stopping.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(20),
        "{took:?}"
    );
    assert_eq!(stats.transitions.load(Ordering::SeqCst), 0);
    assert_eq!(stats.owed(), 2);
    assert!(notes(&path).is_empty());
}

/// Across an outage: a command's completion is marked only after its transitions are
/// committed, and the queue is read again only once the backlog is committed.
#[test]
fn commands_wait_for_the_backlog() {
    use crate::commands::Completion;
    let dir = tempfile::tempdir().unwrap();
    let mut db = hsdb_with_monitor(dir.path(), HM);
    let vm = hsdb::Uuid([7; 16]);
    let id = db
        .enqueue_command(&HM, hsdb::CommandKind::StopMonitoring, &vm, 1)
        .unwrap();
    drop(db);
    let path = dir.path().join("hsdb.sqlite");
    let switch = Switch::default();
    let mut flaky = Flaky {
        path: path.clone(),
        switch: switch.clone(),
    };
    let store = flaky.connect().unwrap();
    let poll = mio::Poll::new().unwrap();
    let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
    let (tx, rx) = bounded(4);
    let writer = Writer::spawn(
        flaky,
        Some(store),
        fast(),
        Some(CommandPoll {
            hm: HM,
            period: Duration::from_millis(20),
            tx,
            waker,
            after: 0,
        }),
    )
    .unwrap();
    let stats = Arc::clone(&writer.stats);
    let read = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(read[0].id, id);
    switch.set_down(true);
    writer.send_batch(Batch {
        transitions: (1..=20).map(note).collect(),
        completions: vec![Completion {
            id,
            result: "STOPPED: test".into(),
            at: 2,
        }],
    });
    wait_for("the outage noticed", || {
        !stats.connected.load(Ordering::SeqCst)
    });
    switch.calls.lock().unwrap().clear();
    switch.set_down(false);
    wait_for("marked done", || {
        stats.commands_done.load(Ordering::SeqCst) == 1
    });
    wait_for("the queue read again", || {
        switch.calls.lock().unwrap().iter().any(|c| c == "commands")
    });
    writer.finish();
    let calls = switch.calls.lock().unwrap().clone();
    let apply = calls.iter().position(|c| c == "apply 20").unwrap();
    let read = calls.iter().position(|c| c == "commands").unwrap();
    assert!(apply < read, "the backlog before the commands: {calls:?}");
    let db = Hsdb::open_read_only(&path, &hsdb::Options::default()).unwrap();
    assert_eq!(db.command(id).unwrap().unwrap().done_ms, Some(2));
    assert_eq!(notes(&path).len(), 20);
}
