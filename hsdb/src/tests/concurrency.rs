//! Concurrent writers on one HSDB (on PostgreSQL several monitors commit at once; on
//! SQLite the write lock serialises them): six monitors applying batches over
//! overlapping VMs, and the outbox read while writers append to it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Barrier, Mutex};

use super::*;
use crate::{Applied, PendingRow, VmHmRow, VmRow};

/// Six monitors: three on host A, three on host B.
fn six_monitors() -> Vec<(Uuid, HostId)> {
    (0..6u8)
        .map(|i| {
            let mut bytes = [0x4d; 16];
            bytes[15] = i;
            (Uuid(bytes), if i < 3 { HOST_A } else { HOST_B })
        })
        .collect()
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What one batch looked like, with its commit-order marker last: an `Event` whose text
/// names the batch. Every batch takes the outbox lock at that event and holds it to its
/// commit, so the events' ids give the order the batches committed in.
fn batch(writer: usize, number: usize, hm: Uuid, rng: &mut Rng, vms: u32) -> Vec<Transition> {
    let base = T0 + i64::try_from(number * 100 + writer).expect("small");
    let mut out = Vec::new();
    for i in 0..24 {
        let vm = vm_n(u32::try_from(rng.below(u64::from(vms))).expect("small"));
        let at = base + i;
        out.push(match rng.below(10) {
            0..=2 => Transition::Discovered {
                vm,
                hm,
                mac: mac_n(7, u8::try_from(writer).expect("six")),
                ostype: "linux".to_string(),
                ver_lower: V2_0,
                ver_upper: V2_0,
                at,
            },
            3..=5 => Transition::Missing { vm, hm, at },
            6 | 7 => Transition::Suspended { vm, hm, at },
            8 => Transition::Detected { vm, hm, at },
            _ => Transition::Doorbell {
                vm,
                hm,
                vector: 1 << rng.below(8),
                at,
            },
        });
    }
    out.push(Transition::HmHeartbeat { hm, at: base + 30 });
    out.push(Transition::Event {
        kind: "BATCH".to_string(),
        vm: None,
        hm: Some(hm),
        text: format!("{writer}:{number}"),
        at: base + 31,
    });
    out
}

/// Everything a batch can change, without the ids the database assigned.
#[derive(Debug, PartialEq)]
struct State {
    vms: Vec<VmRow>,
    vm_hms: Vec<VmHmRow>,
    /// Pending items by VM, in id order, without ids and tags.
    pending: BTreeMap<Option<Uuid>, Vec<PendingRow>>,
    /// Commands by monitor: (kind, VM, created).
    commands: BTreeMap<Uuid, Vec<(crate::CommandKind, Uuid, i64)>>,
    hm_heartbeats: Vec<(Uuid, i64)>,
}

fn state(db: &Hsdb, monitors: &[(Uuid, HostId)]) -> State {
    let vms = db.vms().expect("vms");
    let mut vm_hms = Vec::new();
    for vm in &vms {
        vm_hms.extend(db.vm_hms(&vm.uuid).expect("vm_hms"));
    }
    let mut pending: BTreeMap<Option<Uuid>, Vec<PendingRow>> = BTreeMap::new();
    for mut row in db.pending().expect("pending") {
        row.id = 0;
        row.tag = None;
        pending.entry(row.vm).or_default().push(row);
    }
    let mut commands = BTreeMap::new();
    let mut hm_heartbeats = Vec::new();
    for (hm, _) in monitors {
        let open: Vec<_> = db
            .commands_for(hm, 0, 10_000)
            .expect("commands")
            .into_iter()
            .map(|c| (c.kind, c.vm, c.created_ms))
            .collect();
        commands.insert(*hm, open);
        let row = db.hm(hm).expect("hm").expect("registered");
        hm_heartbeats.push((*hm, row.last_hb_ms));
    }
    State {
        vms,
        vm_hms,
        pending,
        commands,
        hm_heartbeats,
    }
}

fn sum(total: &mut Applied, a: &Applied) {
    total.vms_created += a.vms_created;
    total.pending_added += a.pending_added;
    total.pending_coalesced += a.pending_coalesced;
    total.missing_ignored += a.missing_ignored;
    total.elsewhere_ignored += a.elsewhere_ignored;
    total.suspensions_ended += a.suspensions_ended;
    total.vm_hm_retired += a.vm_hm_retired;
    total.commands_queued += a.commands_queued;
}

both!(test_six_writers_on_overlapping_vms);
fn test_six_writers_on_overlapping_vms() {
    // Six monitors on two hosts write at once about the same 40 VMs: new VMs discovered
    // by several at once, misses, suspensions, heartbeats back, doorbells, and moves
    // between the hosts (a Discovered through the other host). No batch may fail, and
    // the result must be exactly what applying the same batches one after the other,
    // in the order they committed, gives: every VM once, every state change recorded
    // once (coalesced as the rules say), every move's FORGET_VM queued once.
    const WRITERS: usize = 6;
    const BATCHES: usize = 12;
    const VMS: u32 = 40;
    let f = Fixture::new();
    let monitors = six_monitors();
    let mut db = f.reopen(&Options::default());
    for (i, (hm, host)) in monitors.iter().enumerate() {
        let mac = MacAddr([0x6a, 0x6b, 0, 0, 0, u8::try_from(i).expect("six")]);
        db.register_hm(&hm_record(*hm, *host, mac, T0))
            .expect("register");
    }
    let batches: Arc<Mutex<HashMap<String, Vec<Transition>>>> = Arc::default();
    let start = Arc::new(Barrier::new(WRITERS));
    let handles: Vec<_> = monitors
        .iter()
        .enumerate()
        .map(|(writer, &(hm, _))| {
            let mut db = f.reopen(&Options::default());
            let batches = Arc::clone(&batches);
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (writer as u64 + 1));
                let mut total = Applied::default();
                start.wait();
                for number in 0..BATCHES {
                    let b = batch(writer, number, hm, &mut rng, VMS);
                    let applied = db
                        .apply(&b)
                        .unwrap_or_else(|e| panic!("writer {writer} batch {number}: {e}"));
                    sum(&mut total, &applied);
                    batches
                        .lock()
                        .expect("lock")
                        .insert(format!("{writer}:{number}"), b);
                }
                total
            })
        })
        .collect();
    let mut concurrent = Applied::default();
    for h in handles {
        sum(&mut concurrent, &h.join().expect("writer thread"));
    }

    // The commit order, from the outbox.
    let events = f.db.events_after(0, 10_000).expect("events");
    assert_eq!(events.len(), WRITERS * BATCHES, "one event per batch");
    let batches = batches.lock().expect("lock");
    let mut replay = Hsdb::open_in_memory().expect("replay store");
    replay
        .upsert_host(&host(HOST_A, "host-a", "212424W"))
        .expect("host a");
    replay
        .upsert_host(&host(HOST_B, "host-b", "21282FW"))
        .expect("host b");
    let trunk = |last| MacAddr([0x6a, 0x6a, 0x08, 0x84, 0xee, last]);
    for (uuid, host, mac) in [
        (hm1(), HOST_A, trunk(0x11)),
        (hm2(), HOST_A, trunk(0x12)),
        (hm_b(), HOST_B, trunk(0x13)),
    ] {
        replay
            .register_hm(&hm_record(uuid, host, mac, T0))
            .expect("register");
    }
    for (i, (hm, host)) in monitors.iter().enumerate() {
        let mac = MacAddr([0x6a, 0x6b, 0, 0, 0, u8::try_from(i).expect("six")]);
        replay
            .register_hm(&hm_record(*hm, *host, mac, T0))
            .expect("register");
    }
    let mut serial = Applied::default();
    for event in &events {
        let b = batches.get(&event.text).expect("a batch of ours");
        sum(&mut serial, &replay.apply(b).expect("replay"));
    }
    let got = state(&f.db, &monitors);
    let want = state(&replay, &monitors);
    assert_eq!(got.vms.len(), usize::try_from(VMS).expect("small"));
    // Where each VM ends depends on how the writers interleaved (all on one host is
    // possible under load); that moves happened is checked below, from the commands.
    assert_eq!(got.vms, want.vms, "VM rows");
    assert_eq!(got.vm_hms, want.vm_hms, "(VM, monitor) rows");
    assert_eq!(got.pending, want.pending, "pending items");
    assert_eq!(got.commands, want.commands, "FORGET_VM commands");
    assert_eq!(got.hm_heartbeats, want.hm_heartbeats);
    assert_eq!(concurrent, serial, "what each batch reported applying");
    assert!(serial.vms_created == usize::try_from(VMS).expect("small"));
    assert!(serial.commands_queued > 0, "moves happened: {serial:?}");
    assert!(serial.pending_coalesced > 0, "{serial:?}");
}

both!(test_outbox_read_while_writers_append);
fn test_outbox_read_while_writers_append() {
    // Four writers append events (in batches whose event comes first, then more work
    // before the commit, and one at a time with record_event) while a reader pages
    // through the outbox by offset, as a notifier does. The reader must see every
    // event exactly once, in increasing id order: an id that committed after a larger
    // one would be skipped for ever.
    const WRITERS: usize = 4;
    const ROUNDS: usize = 60;
    let f = Fixture::new();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(WRITERS + 1));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let mut db = f.reopen(&Options::default());
            let done = Arc::clone(&done);
            let start = Arc::clone(&start);
            let hm = [hm1(), hm2(), hm_b(), hm1()][w];
            std::thread::spawn(move || {
                start.wait();
                for round in 0..ROUNDS {
                    let at = T0 + i64::try_from(round).expect("small");
                    if round % 3 == 0 {
                        db.record_event("ONE", None, Some(&hm), &format!("{w}:{round}"), at)
                            .expect("record_event");
                        continue;
                    }
                    let mut b = vec![Transition::Event {
                        kind: "BATCH".to_string(),
                        vm: None,
                        hm: Some(hm),
                        text: format!("{w}:{round}"),
                        at,
                    }];
                    b.extend((0..20).map(|i| Transition::Missing {
                        vm: vm_n(u32::try_from(w * 1000 + i).expect("small")),
                        hm,
                        at,
                    }));
                    db.apply(&b).expect("apply");
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
        })
        .collect();
    let reader = f.reopen_read_only(&Options::default());
    start.wait();
    let mut offset = 0;
    let mut seen = Vec::new();
    loop {
        let finished = done.load(std::sync::atomic::Ordering::SeqCst) == WRITERS;
        let page = reader.events_after(offset, 7).expect("read");
        for e in &page {
            assert!(e.id > offset, "ids increase: {} after {offset}", e.id);
            offset = e.id;
            seen.push(e.id);
        }
        if page.is_empty() && finished {
            break;
        }
    }
    for w in writers {
        w.join().expect("writer");
    }
    let all: Vec<i64> =
        f.db.events_after(0, 100_000)
            .expect("all")
            .into_iter()
            .map(|e| e.id)
            .collect();
    assert_eq!(all.len(), WRITERS * ROUNDS);
    assert_eq!(seen, all, "the reader saw every event once, in order");
}
