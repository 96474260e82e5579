#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use super::*;
use hsdb::Hsdb;

mod outage;
mod postgres;

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
            connector(dir.path()),
            Some(db),
            WriterSettings::new(Duration::from_millis(5)),
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
                arg: None,
                created_ms: 10
            },
            Command {
                id: forget,
                kind: hsdb::CommandKind::ForgetVm,
                vm: vm2,
                arg: None,
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

/// Reconnects to the test's HSDB file; nothing to register.
fn connector(dir: &Path) -> HsdbConnector {
    HsdbConnector::new(
        hsdb::Target::Sqlite(dir.join("hsdb.sqlite")),
        hsdb::Options::default(),
        |_| Ok(()),
    )
}
