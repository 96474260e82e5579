//! Hosts and host monitors: registration, heartbeats, monitor events.

use std::sync::atomic::Ordering;

use super::*;
use crate::{Applied, Error, HmInterfaceRow, HmRow, HmState, InterfaceState, PendingKind};

both!(test_upsert_host);
fn test_upsert_host() {
    let mut f = Fixture::new();
    let a = host(HOST_A, "host-a", "212424W");
    assert_eq!(f.db.host(HOST_A).expect("read"), Some(a.clone()));
    assert_eq!(f.db.host(HostId(7)).expect("read"), None);

    let bigger = HostRecord {
        cpu_milli: 64_000,
        memory_mb: 2_097_152,
        host_group: "hg2".to_string(),
        ..a
    };
    f.db.upsert_host(&bigger).expect("update");
    assert_eq!(f.db.host(HOST_A).expect("read"), Some(bigger));

    // Names are unique.
    let clash = host(HostId(9), "host-a", "999");
    let err = f.db.upsert_host(&clash).expect_err("name taken");
    assert!(err.to_string().starts_with("upsert_host: "), "{err}");
}

both!(test_register_hm);
fn test_register_hm() {
    let f = Fixture::new();
    let row = f.db.hm(&hm1()).expect("read").expect("registered");
    assert_eq!(
        row,
        HmRow {
            uuid: hm1(),
            host: HOST_A,
            mac: MacAddr([0x6a, 0x6a, 0x08, 0x84, 0xee, 0x11]),
            state: HmState::Up,
            reason: 0,
            last_hb_ms: T0,
            incarnation: HelloId::parse(b"1556303548.719328000.38").expect("id"),
            version: V2_0,
            has_data: false,
        }
    );
    let text: (String, String, String) =
        f.db.conn
            .query_opt(
                "test",
                "hm",
                "SELECT uuid, mac, incarnation FROM hm WHERE host_id = 42",
                crate::db::params![],
                |c| Ok((c.text(0)?, c.text(1)?, c.text(2)?)),
            )
            .expect("raw")
            .expect("row");
    assert_eq!(
        text,
        (
            "4e0f6f60-214b-4d2c-a436-0eac46f7f71f".to_string(),
            "6a:6a:08:84:ee:13".to_string(),
            "1556303548.719328000.38".to_string()
        ),
        "stored as text an operator can read"
    );
    assert_eq!(f.db.hm(&vm1()).expect("read"), None);
}

both!(test_register_hm_again_after_event);
fn test_register_hm_again_after_event() {
    // The monitor's node went down (seed 004 L7012-7014), then the monitor restarts: UP,
    // reason cleared, new incarnation, but the event stays pending (hasData='1', seed
    // 004 L7426-7447).
    let mut f = Fixture::new();
    let applied =
        f.db.apply(&[Transition::HmEvent {
            hm: hm1(),
            state: HmState::Down,
            reason: 0x40,
            text: "EVENT_TYPE=NODE_DOWN\nREASON=NODE_SHUTDOWN".to_string(),
            at: T0 + 10,
        }])
        .expect("apply");
    assert_eq!(
        applied,
        Applied {
            hm_events: 1,
            pending_added: 1,
            ..Applied::default()
        }
    );
    let down = f.db.hm(&hm1()).expect("read").expect("row");
    assert_eq!(
        (down.state, down.reason, down.has_data),
        (HmState::Down, 0x40, true)
    );
    let pending = f.db.pending().expect("pending");
    assert_eq!(pending.len(), 1);
    let p = &pending[0];
    assert_eq!(
        (p.kind, p.vm, p.hm, p.code, p.tag, p.created_ms),
        (PendingKind::HmEvent, None, Some(hm1()), 0x40, None, T0 + 10)
    );
    assert_eq!(p.data, "EVENT_TYPE=NODE_DOWN\nREASON=NODE_SHUTDOWN");

    let restarted = HmRecord {
        incarnation: HelloId::parse(b"1556303999.000000001.7").expect("id"),
        version: Version { major: 2, minor: 1 },
        ..hm_record(hm1(), HOST_A, MacAddr([0x6a, 0, 0, 0, 0, 1]), T0 + 20)
    };
    f.db.register_hm(&restarted).expect("register again");
    let up = f.db.hm(&hm1()).expect("read").expect("row");
    assert_eq!(
        up,
        HmRow {
            uuid: hm1(),
            host: HOST_A,
            mac: restarted.mac,
            state: HmState::Up,
            reason: 0,
            last_hb_ms: T0 + 20,
            incarnation: restarted.incarnation,
            version: restarted.version,
            has_data: true,
        }
    );
    assert_eq!(f.db.pending().expect("pending").len(), 1, "still pending");
}

both!(test_hm_interface_state_and_events);
fn test_hm_interface_state_and_events() {
    let mut f = Fixture::new();
    let iface = |name: &str, state, at| Transition::HmInterface {
        hm: hm1(),
        interface: name.to_string(),
        state,
        at,
    };
    let row = |name: &str, state, changed_ms| HmInterfaceRow {
        hm: hm1(),
        name: name.to_string(),
        state,
        changed_ms,
    };
    // Start: one interface with carrier (the normal start: a row, no event), one without
    // (a monitor starting deaf there: an event).
    let applied =
        f.db.apply(&[
            iface("ent1", InterfaceState::Up, T0 + 1),
            iface("ent2", InterfaceState::Down, T0 + 1),
        ])
        .expect("apply");
    assert_eq!(
        applied,
        Applied {
            hm_interfaces: 2,
            pending_added: 1,
            ..Applied::default()
        }
    );
    assert_eq!(
        f.db.hm_interfaces(&hm1()).expect("read"),
        [
            row("ent1", InterfaceState::Up, T0 + 1),
            row("ent2", InterfaceState::Down, T0 + 1)
        ]
    );
    assert_eq!(f.db.hm_interfaces(&hm2()).expect("read"), []);
    // The same state again changes nothing, not even the time.
    let applied =
        f.db.apply(&[iface("ent1", InterfaceState::Up, T0 + 2)])
            .expect("apply");
    assert_eq!(applied.pending_added, 0);
    // Carrier lost on ent1, back on ent2: two events, the monitor itself stays UP.
    f.db.apply(&[
        iface("ent1", InterfaceState::Down, T0 + 3),
        iface("ent2", InterfaceState::Up, T0 + 4),
    ])
    .expect("apply");
    assert_eq!(
        f.db.hm_interfaces(&hm1()).expect("read"),
        [
            row("ent1", InterfaceState::Down, T0 + 3),
            row("ent2", InterfaceState::Up, T0 + 4)
        ]
    );
    let hm = f.db.hm(&hm1()).expect("read").expect("row");
    assert_eq!((hm.state, hm.reason, hm.has_data), (HmState::Up, 0, true));
    let events: Vec<(PendingKind, Option<Uuid>, u64, String, i64)> =
        f.db.pending()
            .expect("pending")
            .into_iter()
            .map(|p| (p.kind, p.hm, p.code, p.data, p.created_ms))
            .collect();
    let event = |text: &str, at| (PendingKind::HmEvent, Some(hm1()), 0, text.to_string(), at);
    assert_eq!(
        events,
        [
            event("EVENT_TYPE=ADAPTER_DOWN\nINTERFACE_NAME=ent2\n", T0 + 1),
            event("EVENT_TYPE=ADAPTER_DOWN\nINTERFACE_NAME=ent1\n", T0 + 3),
            event("EVENT_TYPE=ADAPTER_UP\nINTERFACE_NAME=ent2\n", T0 + 4),
        ]
    );
    // An unregistered monitor fails the batch, as for every monitor transition.
    let stranger = Uuid::parse(b"00000000-0000-4000-8000-000000000009").expect("uuid");
    let err =
        f.db.apply(&[Transition::HmInterface {
            hm: stranger,
            interface: "ent1".to_string(),
            state: InterfaceState::Up,
            at: T0,
        }])
        .expect_err("unknown monitor");
    assert!(matches!(err, Error::UnknownHm { index: 0, hm } if hm == stranger));
    // Interfaces no longer configured are forgotten at the next start.
    assert_eq!(
        f.db.retain_hm_interfaces(&hm1(), &["ent2", "ent3"])
            .expect("retain"),
        1
    );
    assert_eq!(
        f.db.hm_interfaces(&hm1()).expect("read"),
        [row("ent2", InterfaceState::Up, T0 + 4)]
    );
    assert_eq!(
        f.db.retain_hm_interfaces(&hm1(), &["ent2"])
            .expect("retain"),
        0
    );
}

both!(test_register_hm_unknown_host);
fn test_register_hm_unknown_host() {
    let mut f = Fixture::new();
    let err =
        f.db.register_hm(&hm_record(vm1(), HostId(99), MacAddr([2; 6]), T0))
            .expect_err("no such host");
    assert!(
        matches!(err, Error::UnknownHost { host: 99, hm } if hm == vm1()),
        "{err:?}"
    );
    assert_eq!(f.db.hm(&vm1()).expect("read"), None);
}

both!(test_hm_heartbeat);
fn test_hm_heartbeat() {
    let mut f = Fixture::new();
    let applied =
        f.db.apply(&[
            Transition::HmHeartbeat {
                hm: hm1(),
                at: T0 + 30_000,
            },
            Transition::HmHeartbeat {
                hm: hm2(),
                at: T0 + 30_001,
            },
            Transition::HmHeartbeat {
                hm: hm1(),
                at: T0 + 60_000,
            },
        ])
        .expect("apply");
    assert_eq!(applied.hm_heartbeats, 3);
    assert_eq!(applied.total(), 3);
    let last = |hm| f.db.hm(&hm).expect("read").map(|r| r.last_hb_ms);
    assert_eq!(last(hm1()), Some(T0 + 60_000));
    assert_eq!(last(hm2()), Some(T0 + 30_001));
    assert_eq!(last(hm_b()), Some(T0));
}

both!(test_unknown_hm_rolls_back_batch);
fn test_unknown_hm_rolls_back_batch() {
    let mut f = Fixture::new();
    let commits = f.count_commits();
    let stranger = uuid("166c89ef-57d8-4e75-815c-aa5b885560b1");
    let err =
        f.db.apply(&[
            discovered(vm1(), hm1(), mac_n(1, 0), T0),
            Transition::Event {
                kind: "VM_DISCOVERED".to_string(),
                vm: Some(vm1()),
                hm: None,
                text: String::new(),
                at: T0,
            },
            Transition::Missing {
                vm: vm_n(2),
                hm: stranger,
                at: T0,
            },
        ])
        .expect_err("unregistered monitor");
    assert!(
        matches!(err, Error::UnknownHm { index: 2, hm } if hm == stranger),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "transition 2 names host monitor 166c89ef-57d8-4e75-815c-aa5b885560b1, which is not \
         registered (register_hm first); batch rolled back"
    );
    assert_eq!(commits.load(Ordering::SeqCst), 0);
    assert!(
        f.db.vms().expect("vms").is_empty(),
        "Discovered rolled back"
    );
    assert!(f.db.pending().expect("pending").is_empty());
    assert!(f.db.events_after(0, 10).expect("events").is_empty());
    f.db.integrity_check().expect("integrity");

    // The store is still usable.
    f.db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0)])
        .expect("apply");
    assert_eq!(commits.load(Ordering::SeqCst), 1);
}

both!(test_hm_transitions_need_registration);
fn test_hm_transitions_need_registration() {
    let mut f = Fixture::new();
    let stranger = vm1();
    for t in [
        Transition::HmHeartbeat {
            hm: stranger,
            at: T0,
        },
        Transition::HmEvent {
            hm: stranger,
            state: HmState::Down,
            reason: 1,
            text: String::new(),
            at: T0,
        },
        Transition::Doorbell {
            vm: vm1(),
            hm: stranger,
            vector: 2,
            at: T0,
        },
    ] {
        let kind = t.kind();
        assert!(
            matches!(f.db.apply(&[t]), Err(Error::UnknownHm { index: 0, .. })),
            "{kind}"
        );
    }
    // An outbox event may name any monitor, registered or not.
    f.db.apply(&[Transition::Event {
        kind: "HM_GONE".to_string(),
        vm: None,
        hm: Some(stranger),
        text: "decommissioned".to_string(),
        at: T0,
    }])
    .expect("event");
}
