//! The writer against a real PostgreSQL that crashes and comes back (`pglab`): started
//! while the server is down, it registers and commits once the server is up; stopped
//! like a crash mid-stream, the server leaves the dataplane unblocked, and once it is
//! started again everything is committed in order, on a new connection, by the same
//! writer.

use std::sync::atomic::AtomicBool;

use super::*;

const HM: hsdb::Uuid = hsdb::Uuid([3; 16]);

fn note(n: u64) -> Transition {
    Transition::Event {
        kind: "NOTE".into(),
        vm: None,
        hm: Some(HM),
        text: n.to_string(),
        at: i64::try_from(n).unwrap(),
    }
}

/// Register the host and this monitor, as hmd's start-up does.
fn register(db: &mut Hsdb) -> Result<(), hsdb::Error> {
    db.upsert_host(&hsdb::HostRecord {
        id: hsdb::HostId(1),
        name: "host1".into(),
        machine_type: String::new(),
        model: String::new(),
        serial: String::new(),
        cpu_milli: 0,
        memory_mb: 0,
        host_group: String::new(),
    })?;
    db.register_hm(&hsdb::HmRecord {
        uuid: HM,
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
}

/// The notes in the database, in commit order; `None` while it does not answer.
fn notes(target: &hsdb::Target) -> Option<Vec<u64>> {
    let db = Hsdb::connect_read_only(target, &hsdb::Options::default()).ok()?;
    let events = db.events_after(0, u32::MAX).ok()?;
    Some(events.iter().map(|e| e.text.parse().unwrap()).collect())
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_writer_rides_out_postgresql_down_at_start_and_crashing_mid_stream() {
    let Some(server) = pglab::require_owned("writer_rides_out_postgresql") else {
        return;
    };
    let target = hsdb::Target::parse(&server.fresh_database("ride_outage")).unwrap();
    let options = hsdb::Options::default();
    // Down at start: the writer starts without a connection.
    server.stop_fast();
    let connects = Arc::new(AtomicU64::new(0));
    let registered = Arc::new(AtomicU64::new(0));
    let connector = {
        let (connects, registered) = (Arc::clone(&connects), Arc::clone(&registered));
        HsdbConnector::new(target.clone(), options, move |db| {
            if registered.load(Ordering::SeqCst) == 0 {
                register(db)?;
                registered.fetch_add(1, Ordering::SeqCst);
            }
            connects.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    };
    let settings = WriterSettings {
        flush: Duration::from_millis(2),
        backlog_limit: 1_000_000,
        backoff: Backoff {
            first: Duration::from_millis(20),
            max: Duration::from_millis(300),
        },
        stop_grace: Duration::from_secs(30),
    };
    let writer = Arc::new(Writer::spawn(connector, None, settings, None).unwrap());
    let stats = Arc::clone(&writer.stats);
    assert!(!stats.connected.load(Ordering::SeqCst));

    // The dataplane: one note a millisecond, with the monitor's heartbeat now and then
    // (a transition that needs the monitor registered).
    let sending = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU64::new(0));
    let dataplane = {
        let (writer, sending, sent) =
            (Arc::clone(&writer), Arc::clone(&sending), Arc::clone(&sent));
        std::thread::spawn(move || {
            let mut n = 0;
            let mut slowest = Duration::ZERO;
            while sending.load(Ordering::SeqCst) {
                n += 1;
                let mut transitions = vec![note(n)];
                if n % 100 == 0 {
                    transitions.push(Transition::HmHeartbeat {
                        hm: HM,
                        at: i64::try_from(n).unwrap(),
                    });
                }
                let t = Instant::now();
                writer.send_batch(Batch {
                    transitions,
                    completions: Vec::new(),
                });
                slowest = slowest.max(t.elapsed());
                sent.store(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1));
            }
            slowest
        })
    };
    wait_for("notes held while down", || stats.backlog() >= 200);
    assert_eq!(stats.transitions.load(Ordering::SeqCst), 0);
    assert_eq!(registered.load(Ordering::SeqCst), 0);

    server.start_again();
    wait_for("connected and caught up", || {
        stats.connected.load(Ordering::SeqCst) && stats.transitions.load(Ordering::SeqCst) > 500
    });
    assert_eq!(registered.load(Ordering::SeqCst), 1);

    // A crash mid-stream, for a few seconds.
    server.stop_immediate();
    wait_for("the crash noticed", || {
        !stats.connected.load(Ordering::SeqCst)
    });
    let committed_when_down = stats.transitions.load(Ordering::SeqCst);
    let sent_when_down = sent.load(Ordering::SeqCst);
    wait_for("a few seconds of notes held", || {
        sent.load(Ordering::SeqCst) >= sent_when_down + 3000
    });
    assert_eq!(
        stats.transitions.load(Ordering::SeqCst),
        committed_when_down,
        "nothing counted committed while the server is down"
    );
    assert!(stats.reconnect_attempts.load(Ordering::SeqCst) >= 2);
    server.start_again();
    wait_for("reconnected", || stats.connected.load(Ordering::SeqCst));
    std::thread::sleep(Duration::from_millis(300));
    sending.store(false, Ordering::SeqCst);
    let slowest = dataplane.join().unwrap();
    wait_for("everything committed", || stats.owed() == 0);
    let n = sent.load(Ordering::SeqCst);
    let writer = Arc::into_inner(writer).expect("the only handle left");
    writer.finish();

    // Every note, in order; a note may appear twice only if the crash cut a COMMIT the
    // server had done (at least once, never lost).
    let stored = notes(&target).expect("the server answers");
    let mut first_seen = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for v in &stored {
        if seen.insert(*v) {
            first_seen.push(*v);
        }
    }
    assert_eq!(
        first_seen,
        (1..=n).collect::<Vec<_>>(),
        "every note, in order"
    );
    assert!(
        stored.len() - first_seen.len() < 200,
        "{} duplicates",
        stored.len() - first_seen.len()
    );
    // Counted committed: each once, on the commit the server acknowledged.
    let heartbeats = n / 100;
    assert_eq!(
        stats.transitions.load(Ordering::SeqCst) + stats.superseded.load(Ordering::SeqCst),
        n + heartbeats
    );
    assert_eq!(stats.dropped_total(), 0);
    assert_eq!(
        stats.outages.load(Ordering::SeqCst),
        2,
        "down at start, then the crash"
    );
    assert_eq!(
        connects.load(Ordering::SeqCst),
        2,
        "one connection per outage's end"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "the dataplane waited {slowest:?} to hand over a batch"
    );
    let db = Hsdb::connect_read_only(&target, &hsdb::Options::default()).unwrap();
    let hm = db.hm(&HM).unwrap().expect("registered");
    assert_eq!(hm.last_hb_ms, i64::try_from(heartbeats * 100).unwrap());
}
