#![allow(clippy::unwrap_used)]

use super::*;
use hsdb::{HostId, Hsdb, InterfaceState, MacAddr, Version};

const A: Uuid = Uuid([0xa; 16]);
const B: Uuid = Uuid([0xb; 16]);
const C: Uuid = Uuid([0xc; 16]);

fn vm(n: u8) -> Uuid {
    Uuid([n; 16])
}

fn disc(v: u8, hm: Uuid, mac: u8, os: &str, at: i64) -> Transition {
    Transition::Discovered {
        vm: vm(v),
        hm,
        mac: MacAddr([2, 0, 0, 0, 0, mac]),
        ostype: os.into(),
        ver_lower: Version { major: 1, minor: 0 },
        ver_upper: Version {
            major: 1,
            minor: u8::try_from(at % 7).unwrap(),
        },
        at,
    }
}
fn det(v: u8, at: i64) -> Transition {
    Transition::Detected {
        vm: vm(v),
        hm: A,
        at,
    }
}
fn miss(v: u8, at: i64) -> Transition {
    Transition::Missing {
        vm: vm(v),
        hm: A,
        at,
    }
}
fn susp(v: u8, at: i64) -> Transition {
    Transition::Suspended {
        vm: vm(v),
        hm: A,
        at,
    }
}
fn bell(v: u8, vector: u64, at: i64) -> Transition {
    Transition::Doorbell {
        vm: vm(v),
        hm: A,
        vector,
        at,
    }
}
fn hb(hm: Uuid, at: i64) -> Transition {
    Transition::HmHeartbeat { hm, at }
}
fn event(text: &str, at: i64) -> Transition {
    Transition::Event {
        kind: "SYN_REFUSED".into(),
        vm: None,
        hm: Some(A),
        text: text.into(),
        at,
    }
}
fn iface(name: &str, up: bool, at: i64) -> Transition {
    Transition::HmInterface {
        hm: A,
        interface: name.into(),
        state: if up {
            InterfaceState::Up
        } else {
            InterfaceState::Down
        },
        at,
    }
}

fn held(b: &Backlog) -> Vec<Transition> {
    b.iter().cloned().collect()
}

fn pushed(ts: impl IntoIterator<Item = Transition>) -> Backlog {
    let mut b = Backlog::new(1_000_000);
    for t in ts {
        b.push(t);
    }
    b
}

#[test]
fn a_missing_goes_when_the_vm_is_heard_again() {
    let b = pushed([miss(1, 10), det(1, 20)]);
    assert_eq!(held(&b), [det(1, 20)]);
    assert_eq!(b.counts().superseded, 1);
    let b = pushed([miss(1, 10), disc(1, A, 1, "linux", 20)]);
    assert_eq!(held(&b), [disc(1, A, 1, "linux", 20)]);
}

#[test]
fn a_repeated_state_adds_nothing_and_the_first_time_stays() {
    // The store keeps the first miss time: the second Missing goes, not the first.
    assert_eq!(held(&pushed([miss(1, 10), miss(1, 20)])), [miss(1, 10)]);
    assert_eq!(held(&pushed([det(1, 10), det(1, 20)])), [det(1, 10)]);
    assert_eq!(held(&pushed([susp(1, 10), susp(1, 20)])), [susp(1, 10)]);
    assert_eq!(
        held(&pushed([disc(1, A, 1, "x", 10), det(1, 20)])),
        [disc(1, A, 1, "x", 10)]
    );
}

#[test]
fn a_discovered_keeps_its_place_and_time_and_takes_the_newer_facts() {
    let b = pushed([
        disc(1, A, 1, "old-os", 10),
        det(2, 11),
        disc(1, A, 9, "new-os", 20),
    ]);
    let mut want = disc(1, A, 9, "new-os", 20);
    if let Transition::Discovered { at, .. } = &mut want {
        *at = 10;
    }
    assert_eq!(held(&b), [want, det(2, 11)]);
}

#[test]
fn what_the_rules_do_not_cover_stays_in_order() {
    // Detected then Missing: the Detected ended a miss (and a suspension) the Missing
    // does not repeat; Suspended then Detected, Detected then Suspended, Discovered
    // then Missing: each leaves something the other does not.
    for pair in [
        [det(1, 10), miss(1, 20)],
        [susp(1, 10), det(1, 20)],
        [det(1, 10), susp(1, 20)],
        [disc(1, A, 1, "x", 10), miss(1, 20)],
        [susp(1, 10), disc(1, A, 1, "x", 20)],
        [miss(1, 10), susp(1, 20)],
        [det(1, 10), disc(1, A, 1, "x", 20)],
    ] {
        let b = pushed(pair.clone());
        assert_eq!(held(&b), pair, "{pair:?}");
        assert_eq!(b.counts().superseded, 0);
    }
    // Commands' results break a stream: nothing is compared across them.
    let stop = Transition::StopWatching {
        vm: vm(1),
        hm: A,
        at: 15,
    };
    let seq = [miss(1, 10), stop, det(1, 20)];
    assert_eq!(held(&pushed(seq.clone())), seq);
    // Streams are per VM and per monitor.
    let seq = [miss(1, 10), det(2, 20), disc(1, B, 1, "x", 30)];
    assert_eq!(held(&pushed(seq.clone())), seq);
}

#[test]
fn a_flapping_vm_holds_at_most_two_transitions() {
    let mut b = Backlog::new(1000);
    b.push(det(1, 1));
    for i in 0..500 {
        b.push(miss(1, 10 + 2 * i));
        b.push(det(1, 11 + 2 * i));
        assert!(b.len() <= 2);
    }
    // Detected first, then every Missing went with its Detected, every later Detected
    // repeats the first.
    assert_eq!(held(&b), [det(1, 1)]);
    b.push(miss(1, 5000));
    assert_eq!(held(&b), [det(1, 1), miss(1, 5000)]);
    // A VM that reboots again and again (handshake, silence) holds one Discovered.
    let mut b = Backlog::new(1000);
    for i in 0..100 {
        b.push(disc(1, A, 1, "os", 10 * i));
        b.push(miss(1, 10 * i + 5));
    }
    let mut first = disc(1, A, 1, "os", 990);
    if let Transition::Discovered { at, .. } = &mut first {
        *at = 0;
    }
    assert_eq!(held(&b), [first, miss(1, 995)]);
}

#[test]
fn heartbeats_keep_the_latest_time_and_doorbells_or_together() {
    let b = pushed([
        hb(A, 10),
        bell(1, 0b001, 11),
        event("e", 12),
        bell(1, 0b100, 13),
        bell(2, 0b010, 14),
        hb(A, 20),
        hb(B, 21),
    ]);
    assert_eq!(
        held(&b),
        [
            hb(A, 20),
            bell(1, 0b101, 11),
            event("e", 12),
            bell(2, 0b010, 14),
            hb(B, 21)
        ]
    );
    assert_eq!(b.counts().superseded, 2);
}

#[test]
fn events_and_monitor_events_are_never_superseded() {
    let seq = [
        event("a", 1),
        event("a", 1),
        iface("eth1", false, 2),
        iface("eth1", true, 3),
        iface("eth1", false, 4),
    ];
    let b = pushed(seq.clone());
    assert_eq!(held(&b), seq);
    assert_eq!(b.counts().superseded, 0);
}

#[test]
fn overflow_drops_events_first_then_history_then_the_oldest() {
    let mut b = Backlog::new(4);
    // History of VM 1 (the Detected is followed by a Missing), then two events.
    for t in [det(1, 1), miss(1, 2), event("e1", 3), event("e2", 4)] {
        b.push(t);
    }
    assert_eq!(b.counts().dropped_total(), 0);
    b.push(miss(2, 5));
    assert_eq!(
        held(&b),
        [det(1, 1), miss(1, 2), event("e2", 4), miss(2, 5)]
    );
    b.push(miss(3, 6));
    assert_eq!(held(&b), [det(1, 1), miss(1, 2), miss(2, 5), miss(3, 6)]);
    // No event left: the history goes (VM 1's latest state, the Missing, stays).
    b.push(miss(4, 7));
    assert_eq!(held(&b), [miss(1, 2), miss(2, 5), miss(3, 6), miss(4, 7)]);
    // Only latest states left: the oldest goes.
    b.push(miss(5, 8));
    assert_eq!(held(&b), [miss(2, 5), miss(3, 6), miss(4, 7), miss(5, 8)]);
    let mut want = [0u64; KINDS.len()];
    want[kind_index(&event("", 0))] = 2;
    want[kind_index(&det(0, 0))] = 1;
    want[kind_index(&miss(0, 0))] = 1;
    assert_eq!(b.counts().dropped, want);
    assert_eq!(b.len(), 4);
}

#[test]
fn a_state_whose_follower_was_dropped_is_the_latest_again() {
    let mut b = Backlog::new(3);
    b.push(det(1, 1));
    b.push(miss(1, 2));
    b.push(event("e", 3));
    // Full: the event goes first.
    b.push(hb(A, 4));
    assert_eq!(held(&b), [det(1, 1), miss(1, 2), hb(A, 4)]);
    // The Detected is history (a Missing follows): it goes, and the Missing stays
    // VM 1's latest: a Detected arriving now still supersedes it.
    b.push(hb(B, 5));
    assert_eq!(held(&b), [miss(1, 2), hb(A, 4), hb(B, 5)]);
    b.push(det(1, 6));
    assert_eq!(held(&b), [hb(A, 4), hb(B, 5), det(1, 6)]);
}

#[test]
fn taking_gives_the_oldest_in_order_and_later_pushes_start_afresh() {
    let mut b = pushed([miss(1, 1), det(2, 2), miss(3, 3)]);
    let start = b.start();
    let mut out = Vec::new();
    b.take(2, &mut out);
    assert_eq!(out, [miss(1, 1), det(2, 2)]);
    assert_eq!(b.start(), start + 2);
    // Taken (being committed): a Detected of VM 1 no longer supersedes its Missing.
    b.push(det(1, 4));
    assert_eq!(held(&b), [miss(3, 3), det(1, 4)]);
    out.clear();
    b.take(10, &mut out);
    assert_eq!(out, [miss(3, 3), det(1, 4)]);
    assert!(b.is_empty());
    assert_eq!(b.start(), b.end());
    b.push(miss(3, 5));
    assert_eq!(held(&b), [miss(3, 5)]);
}

#[test]
fn tombstones_are_swept_and_the_rules_still_hold_after() {
    let mut b = Backlog::new(1_000_000);
    // Many VMs flapping: each flap leaves a tombstone behind.
    for round in 0..20 {
        for v in 0..=255u8 {
            b.push(miss(v, 100 * round + 1));
            b.push(det(v, 100 * round + 2));
        }
    }
    assert_eq!(b.len(), 256);
    assert!(b.slots.len() < 3 * 256 + SWEEP_MIN, "{}", b.slots.len());
    // The index still points at each VM's Detected.
    b.push(miss(7, 10_000));
    b.push(det(7, 10_001));
    assert_eq!(b.len(), 256);
    let all = held(&b);
    assert_eq!(all[0], det(0, 2));
    assert_eq!(all[255], det(255, 2));
    assert_eq!(b.counts().superseded, 20 * 256 * 2 - 256 + 2);
}

#[test]
fn an_entry_costs_what_the_documentation_says() {
    // docs/operations.md sizes `hsdb_backlog_limit` from these.
    assert!(
        std::mem::size_of::<Slot>() <= 112,
        "{}",
        std::mem::size_of::<Slot>()
    );
}

// The rules are exact: the store ends the same with the backlog's transitions as with
// everything the dataplane produced. Checked on a real HSDB over random sequences from
// random starting states.

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

const VMS: u8 = 4;

/// Hosts 1 and 2; monitors A (the one writing) and B on host 1, C on host 2; then a
/// random past for each VM written by the three.
fn store_with_past(seed: u64) -> Hsdb {
    past(Hsdb::open_in_memory().unwrap(), seed)
}

/// `db` with the random past of `seed`.
fn past(mut db: Hsdb, seed: u64) -> Hsdb {
    for host in [1, 2] {
        db.upsert_host(&hsdb::HostRecord {
            id: HostId(host),
            name: format!("host{host}"),
            machine_type: String::new(),
            model: String::new(),
            serial: String::new(),
            cpu_milli: 0,
            memory_mb: 0,
            host_group: String::new(),
        })
        .unwrap();
    }
    for (hm, host) in [(A, 1), (B, 1), (C, 2)] {
        db.register_hm(&hsdb::HmRecord {
            uuid: hm,
            host: HostId(host),
            mac: MacAddr::default(),
            incarnation: hsdb::HelloId {
                secs: 1,
                nanos: 0,
                suffix: 1,
            },
            version: Version { major: 1, minor: 0 },
            at: 0,
        })
        .unwrap();
    }
    let mut rng = Rng(seed | 1);
    let mut past = Vec::new();
    for v in 0..VMS {
        let vmu = vm(v);
        match rng.below(8) {
            0 => {} // unknown to the store
            1 => past.push(disc(v, A, 1, "os", 1)),
            2 => past.push(disc(v, C, 1, "os", 1)), // lives on the other host
            3 => past.extend([disc(v, A, 1, "os", 1), susp(v, 2)]),
            4 => past.extend([
                disc(v, A, 1, "os", 1),
                disc(v, B, 2, "os", 1),
                Transition::Suspended {
                    vm: vmu,
                    hm: B,
                    at: 2,
                },
            ]),
            5 => past.extend([
                disc(v, A, 1, "os", 1),
                Transition::StopWatching {
                    vm: vmu,
                    hm: A,
                    at: 2,
                },
            ]),
            6 => past.extend([disc(v, A, 1, "os", 1), miss(v, 5)]),
            _ => past.extend([disc(v, A, 1, "os", 1), susp(v, 2), disc(v, B, 2, "os", 3)]),
        }
        if rng.below(2) == 0 {
            db.set_vm(
                &vmu,
                &hsdb::VmSettings {
                    managed: Some(true),
                    ..Default::default()
                },
                0,
            )
            .unwrap();
        }
    }
    db.apply(&past).unwrap();
    db
}

fn random_transition(rng: &mut Rng, at: i64) -> Transition {
    let v = u8::try_from(rng.below(u64::from(VMS))).unwrap();
    let vmu = vm(v);
    match rng.below(20) {
        0..=2 => disc(
            v,
            A,
            u8::try_from(rng.below(3)).unwrap(),
            ["linux", "aix"][usize::try_from(rng.below(2)).unwrap()],
            at,
        ),
        3..=6 => det(v, at),
        7..=10 => miss(v, at),
        11..=12 => susp(v, at),
        13 => bell(v, 1 << rng.below(4), at),
        14 => hb(A, at),
        15 => Transition::StopWatching { vm: vmu, hm: A, at },
        16 => Transition::StartWatching { vm: vmu, hm: A, at },
        17 => Transition::Forget { vm: vmu, hm: A, at },
        18 => Transition::Event {
            kind: "NOTE".into(),
            vm: Some(vmu),
            hm: Some(A),
            text: format!("{at}"),
            at,
        },
        _ => iface(
            ["eth1", "eth2"][usize::try_from(rng.below(2)).unwrap()],
            rng.below(2) == 0,
            at,
        ),
    }
}

/// Everything of the store the rules must keep, without the bookkeeping times
/// (`updated_ms`, a pending item's `created_ms`) and with each VM's pending items apart
/// (their interleaving between VMs may change when a superseded transition created a VM).
fn end_state(db: &Hsdb) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for v in db.vms().unwrap() {
        let _ = writeln!(
            out,
            "vm {} host={:?} home={:?} {} managed={} os={:?} ver={:?} msg={:#x}",
            v.uuid,
            v.current_host,
            v.home_host,
            v.state,
            v.managed,
            v.ostype,
            v.agent_versions
                .map(|(l, u)| (l.to_string(), u.to_string())),
            v.short_msg
        );
        for r in db.vm_hms(&v.uuid).unwrap() {
            let _ = writeln!(
                out,
                "  row hm={} mac={:?} missed={:?} {}",
                r.hm,
                r.mac.map(|m| m.to_string()),
                r.hb_missed_ms,
                r.last_state
            );
        }
        for p in db.pending().unwrap() {
            if p.vm == Some(v.uuid) {
                let _ = writeln!(
                    out,
                    "  pending {} code={:#x} {} tag={:?}",
                    p.kind,
                    p.code,
                    p.describe(),
                    p.tag
                );
            }
        }
    }
    for p in db.pending().unwrap() {
        if p.vm.is_none() {
            let _ = writeln!(out, "pending {} {:?} {:?}", p.kind, p.hm, p.data);
        }
    }
    for h in db.hms().unwrap() {
        let _ = writeln!(
            out,
            "hm {} {} reason={} hb={} data={}",
            h.uuid, h.state, h.reason, h.last_hb_ms, h.has_data
        );
        for i in db.hm_interfaces(&h.uuid).unwrap() {
            let _ = writeln!(out, "  iface {} {} at={}", i.name, i.state, i.changed_ms);
        }
        for c in db.commands_for(&h.uuid, 0, 1000).unwrap() {
            let _ = writeln!(out, "  command {} vm={}", c.kind, c.vm);
        }
    }
    for e in db.events_after(0, 10_000).unwrap() {
        let _ = writeln!(
            out,
            "event {} {:?} {:?} {} at={}",
            e.kind, e.vm, e.hm, e.text, e.created_ms
        );
    }
    out
}

/// One random case: transitions of `seed`, applied all and as the backlog keeps them to
/// two stores made by `store` with the same past; their end states must be equal.
/// Returns how many the backlog superseded.
fn same_end(seed: u64, mut store: impl FnMut(u64) -> Hsdb) -> u64 {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let len = 1 + rng.below(40);
    let all: Vec<Transition> = (0..len)
        .map(|i| random_transition(&mut rng, 1000 + i64::try_from(i).unwrap()))
        .collect();
    let mut backlog = Backlog::new(1_000_000);
    for t in all.iter().cloned() {
        backlog.push(t);
    }
    let mut kept = Vec::new();
    backlog.take(usize::MAX, &mut kept);

    let mut full = store(seed);
    let mut lean = store(seed);
    let before = end_state(&full);
    full.apply(&all).unwrap();
    lean.apply(&kept).unwrap();
    assert_eq!(
        end_state(&full),
        end_state(&lean),
        "seed {seed}\nfrom:\n{before}\nall: {all:#?}\nkept: {kept:#?}"
    );
    backlog.counts().superseded
}

#[test]
fn the_store_ends_the_same_with_or_without_what_was_superseded() {
    let superseded: u64 = (1..=250u64)
        .map(|seed| same_end(seed, store_with_past))
        .sum();
    // The rules did something: otherwise this would prove nothing.
    assert!(superseded > 500, "{superseded}");
}

/// The same on PostgreSQL (whose `apply` writes some runs of transitions in bulk): the
/// two stores in two schemas of one fresh database, emptied for each case.
#[test]
fn the_store_ends_the_same_on_postgresql_too() {
    let Some(server) = pglab::require("backlog_same_end_on_postgresql") else {
        return;
    };
    let url = server.fresh_database("backlog_same_end");
    let mut admin = pglab::client(&url);
    let target = |schema: &str| {
        hsdb::Target::parse(&format!("{url}?options=-c%20search_path%3D{schema}")).unwrap()
    };
    for schema in ["every_one", "kept_ones"] {
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .unwrap();
        drop(Hsdb::connect(&target(schema), &hsdb::Options::default()).unwrap());
    }
    let mut n = 0;
    let superseded: u64 = (1..=20u64)
        .map(|seed| {
            same_end(seed, |seed| {
                n += 1;
                let schema = if n % 2 == 1 { "every_one" } else { "kept_ones" };
                let tables: Vec<String> = admin
                    .query(
                        "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 \
                         AND tablename <> 'schema_version'",
                        &[&schema],
                    )
                    .unwrap()
                    .iter()
                    .map(|row| format!("{schema}.{}", row.get::<_, String>(0)))
                    .collect();
                admin
                    .batch_execute(&format!(
                        "TRUNCATE {} RESTART IDENTITY CASCADE",
                        tables.join(", ")
                    ))
                    .unwrap();
                past(
                    Hsdb::connect(&target(schema), &hsdb::Options::default()).unwrap(),
                    seed,
                )
            })
        })
        .sum();
    assert!(superseded > 20, "{superseded}");
}
