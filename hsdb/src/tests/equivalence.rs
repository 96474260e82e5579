//! `apply`'s batched paths on PostgreSQL (runs of `Missing`, of `Discovered` and
//! `Detected`, written over arrays) against its per-transition path: random batches
//! over a small VM set, several monitors on two hosts, moves, pre-existing states —
//! the same store and the same counts, batch after batch.

use crate::apply::{gathered, per_transition};
use crate::{
    Applied, CommandKind, EventRow, HmRow, NaLimits, PendingRow, VmHmRow, VmRow, VmSettings,
};

use super::*;

/// VMs the cases talk about: few, so that batches name the same VM again and again.
const VMS: u32 = 9;
/// Random cases; each is a history, then three batches through both paths.
const CASES: u64 = 48;

/// A second monitor of host B (the fixture has one), so that a suspension can end there.
fn hm_b2() -> Uuid {
    uuid("9d1f5ad2-8c54-4c6e-a1a2-2b8d3f0e9b77")
}

/// The four monitors and their hosts.
fn monitors() -> [(Uuid, HostId); 4] {
    [
        (hm1(), HOST_A),
        (hm2(), HOST_A),
        (hm_b(), HOST_B),
        (hm_b2(), HOST_B),
    ]
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

    fn index(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).expect("small")
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Hosts A and B and the four monitors, on an empty store.
fn populate(db: &mut Hsdb) {
    db.upsert_host(&host(HOST_A, "host-a", "212424W"))
        .expect("host a");
    db.upsert_host(&host(HOST_B, "host-b", "21282FW"))
        .expect("host b");
    for (i, (hm, host)) in monitors().into_iter().enumerate() {
        let mac = MacAddr([0x6a, 0x6a, 0x08, 0x84, 0xee, u8::try_from(i).expect("four")]);
        db.register_hm(&hm_record(hm, host, mac, T0))
            .expect("register");
    }
}

/// A PostgreSQL store emptied of everything a case writes, its monitors registered
/// again (heartbeat times and event flags back).
fn reset(db: &mut Hsdb) {
    db.conn
        .batch(
            "test",
            "DELETE FROM pending; DELETE FROM hm_command; DELETE FROM event; \
             DELETE FROM vm_hm; DELETE FROM vm; UPDATE hm SET has_data = 0",
        )
        .expect("reset");
    populate(db);
}

/// A random batch of `len` transitions from `at` on. `storm`: nearly all `Discovered`
/// and `Detected` from one monitor (agents pairing, a monitor restarting); otherwise a
/// mix of every VM transition through every monitor.
fn random_batch(rng: &mut Rng, len: usize, at: i64, storm: bool) -> Vec<Transition> {
    let monitors = monitors();
    let main = monitors[rng.index(monitors.len())].0;
    let mut out = Vec::with_capacity(len);
    for i in 0..len {
        let at = at + i64::try_from(i).expect("small");
        let n = u32::try_from(rng.below(u64::from(VMS))).expect("small");
        let vm = vm_n(n);
        let hm = if rng.chance(if storm { 90 } else { 60 }) {
            main
        } else {
            monitors[rng.index(monitors.len())].0
        };
        let roll = if storm {
            // Discovered and Detected, with a few of the others between them.
            match rng.below(100) {
                0..=64 => 0,
                65..=89 => 1,
                r => 2 + r % 10,
            }
        } else {
            rng.below(12)
        };
        out.push(match roll {
            0 | 10 => Transition::Discovered {
                vm,
                hm,
                mac: mac_n(n, u8::try_from(rng.below(2)).expect("two")),
                ostype: ["linux", "aix", ""][rng.index(3)].to_string(),
                ver_lower: Version {
                    major: 1,
                    minor: u8::try_from(rng.below(2)).expect("two"),
                },
                ver_upper: V2_0,
                at,
            },
            1 | 11 => Transition::Detected { vm, hm, at },
            2 | 3 => Transition::Missing { vm, hm, at },
            4 => Transition::Suspended { vm, hm, at },
            5 => Transition::StopWatching { vm, hm, at },
            6 => Transition::StartWatching { vm, hm, at },
            7 => Transition::Doorbell {
                vm,
                hm,
                vector: 1 << rng.below(6),
                at,
            },
            8 => Transition::Forget { vm, hm, at },
            _ => {
                if rng.chance(50) {
                    Transition::HmHeartbeat { hm, at }
                } else {
                    Transition::Event {
                        kind: "TEST".to_string(),
                        vm: Some(vm),
                        hm: Some(hm),
                        text: format!("{i}"),
                        at,
                    }
                }
            }
        });
    }
    out
}

/// Everything `apply` can change, without the ids the database assigned (in id order:
/// the order NeedsAttention reports items in, and the outbox's).
#[derive(Debug, PartialEq)]
struct Snapshot {
    vms: Vec<VmRow>,
    vm_hms: Vec<VmHmRow>,
    pending: Vec<PendingRow>,
    commands: Vec<(Uuid, CommandKind, Uuid, i64, Option<i64>)>,
    events: Vec<EventRow>,
    hms: Vec<HmRow>,
}

fn snapshot(db: &Hsdb) -> Snapshot {
    let vms = db.vms().expect("vms");
    let mut vm_hms = Vec::new();
    for vm in &vms {
        vm_hms.extend(db.vm_hms(&vm.uuid).expect("vm_hms"));
    }
    let mut pending = db.pending().expect("pending");
    for row in &mut pending {
        row.id = 0;
    }
    let mut commands = Vec::new();
    for (hm, _) in monitors() {
        commands.extend(
            db.commands_for(&hm, 0, 10_000)
                .expect("commands")
                .into_iter()
                .map(|c| (c.hm, c.kind, c.vm, c.created_ms, c.done_ms)),
        );
    }
    let mut events = db.events_after(0, 10_000).expect("events");
    for row in &mut events {
        row.id = 0;
    }
    Snapshot {
        vms,
        vm_hms,
        pending,
        commands,
        events,
        hms: db.hms().expect("hms"),
    }
}

/// A history before the case's batches: transitions one by one, VMs the controller
/// manages (some not yet seen by any monitor: ADDED, no host), rows left SUSPENDED by
/// an older version while the VM runs, items reported (tagged) and some of those
/// acknowledged — the same on every store.
fn history(rng: &mut Rng, stores: &mut [&mut Hsdb]) {
    let len = rng.index(30);
    let batch = random_batch(rng, len, T0, false);
    let mut managed: Vec<(Uuid, bool)> = Vec::new();
    for n in 0..VMS {
        if rng.chance(30) {
            managed.push((vm_n(n), rng.chance(80)));
        }
    }
    let reported = rng.chance(60).then(|| (1 + rng.index(6), rng.chance(50)));
    // Rows an older version left SUSPENDED after the agent came back through another
    // monitor (before a suspension ended on the host's other monitors).
    let mut left_suspended: Vec<String> = Vec::new();
    for n in 0..VMS {
        if rng.chance(25) {
            left_suspended.push(vm_n(n).to_string());
        }
    }
    for db in stores.iter_mut() {
        per_transition(|| db.apply(&batch)).expect("history");
        for (vm, managed) in &managed {
            let settings = VmSettings {
                managed: Some(*managed),
                ..VmSettings::default()
            };
            db.set_vm(vm, &settings, T0 + 100).expect("set_vm");
        }
        for vm in &left_suspended {
            db.conn
                .execute(
                    "test",
                    "UPDATE vm_hm SET last_state = 'SUSPENDED', hb_missed_ms = NULL \
                     WHERE vm = ?1 AND last_state <> 'STOPPED'",
                    crate::db::params![vm],
                )
                .expect("older rows");
        }
        if let Some((max_items, acknowledged)) = reported {
            let limits = NaLimits {
                max_items,
                ..NaLimits::default()
            };
            db.needs_attention(T0 + 200, limits, 7)
                .expect("needs_attention");
            if acknowledged {
                db.needs_attention(T0 + 201, limits, 8)
                    .expect("needs_attention");
                db.acknowledge(7).expect("acknowledge");
            }
        }
    }
}

/// Sums over all cases of what the batches did: the cases must exercise every rule.
fn add(total: &mut Applied, a: &Applied) {
    total.discovered += a.discovered;
    total.detected += a.detected;
    total.missing += a.missing;
    total.suspended += a.suspended;
    total.doorbells += a.doorbells;
    total.hm_heartbeats += a.hm_heartbeats;
    total.events += a.events;
    total.stop_watching += a.stop_watching;
    total.start_watching += a.start_watching;
    total.forget += a.forget;
    total.vms_created += a.vms_created;
    total.pending_added += a.pending_added;
    total.pending_coalesced += a.pending_coalesced;
    total.missing_ignored += a.missing_ignored;
    total.elsewhere_ignored += a.elsewhere_ignored;
    total.suspensions_ended += a.suspensions_ended;
    total.vm_hm_retired += a.vm_hm_retired;
    total.commands_queued += a.commands_queued;
    total.watching_stopped += a.watching_stopped;
    total.watching_started += a.watching_started;
    total.vm_hm_forgotten += a.vm_hm_forgotten;
}

#[test]
fn test_pg_batched_apply_equals_per_transition() {
    // Three stores: PostgreSQL through the batched paths, PostgreSQL one transition at
    // a time (the reference), and SQLite (always one at a time). Each case starts from
    // a random history, then applies three random batches — storms of Discovered and
    // Detected and mixes of everything — and after each batch the three stores must be
    // equal, and so must the counts each `apply` returned.
    let Some(batched_target) = fresh_postgres("equivalence_batched") else {
        return;
    };
    let reference_target = fresh_postgres("equivalence_reference").expect("PostgreSQL runs");
    let mut batched = Hsdb::connect(&batched_target, &Options::default()).expect("connect");
    let mut reference = Hsdb::connect(&reference_target, &Options::default()).expect("connect");
    populate(&mut batched);
    populate(&mut reference);
    let mut total = Applied::default();
    let gathered_before = gathered();
    for case in 0..CASES {
        let seed = 0x5eed_0000_0000_0001 ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut rng = Rng(seed);
        reset(&mut batched);
        reset(&mut reference);
        let mut sqlite = Hsdb::open_in_memory().expect("sqlite");
        populate(&mut sqlite);
        history(&mut rng, &mut [&mut batched, &mut reference, &mut sqlite]);
        assert_eq!(
            snapshot(&batched),
            snapshot(&reference),
            "case {case}: history"
        );
        for number in 0..3 {
            let storm = rng.chance(50);
            let len = 1 + rng.index(if storm { 60 } else { 40 });
            let at = T0 + 1_000 * (number + 1);
            let batch = random_batch(&mut rng, len, at, storm);
            let got = batched.apply(&batch).expect("batched");
            let want = per_transition(|| reference.apply(&batch)).expect("reference");
            let lite = sqlite.apply(&batch).expect("sqlite");
            let context = format!("case {case} (seed {seed:#x}) batch {number}: {batch:#?}");
            assert_eq!(got, want, "counts, {context}");
            assert_eq!(lite, want, "counts on SQLite, {context}");
            let want_state = snapshot(&reference);
            let got_state = snapshot(&batched);
            assert_eq!(got_state.vms, want_state.vms, "vm rows, {context}");
            assert_eq!(got_state.vm_hms, want_state.vm_hms, "vm_hm rows, {context}");
            assert_eq!(got_state.pending, want_state.pending, "pending, {context}");
            assert_eq!(got_state, want_state, "{context}");
            assert_eq!(snapshot(&sqlite), want_state, "SQLite, {context}");
            add(&mut total, &got);
        }
    }
    // The cases did exercise the batched paths and every rule (else they prove little).
    let gathered = gathered() - gathered_before;
    eprintln!("equivalence: {CASES} cases, {gathered} transitions gathered, {total:?}");
    assert!(
        gathered > 500,
        "transitions written over arrays: {gathered}"
    );
    assert!(total.vms_created > 50, "{total:?}");
    assert!(total.pending_coalesced > 10, "{total:?}");
    assert!(total.suspensions_ended > 10, "{total:?}");
    assert!(
        total.vm_hm_retired > 0 && total.commands_queued > 0,
        "{total:?}"
    );
    assert!(total.elsewhere_ignored > 10, "{total:?}");
    assert!(total.missing_ignored > 0, "{total:?}");
    assert!(total.watching_stopped > 0, "{total:?}");
}
