//! VM transitions: what each one leaves in `vm`, `vm_hm` and `pending`.

use super::*;
use crate::{
    Applied, DetectionSpeed, HeartbeatState, PendingKind, PendingRow, Priority, VmHmRow, VmRow,
    VmState,
};

fn missing(vm: Uuid, hm: Uuid, at: i64) -> Transition {
    Transition::Missing { vm, hm, at }
}
fn detected(vm: Uuid, hm: Uuid, at: i64) -> Transition {
    Transition::Detected { vm, hm, at }
}
fn suspended(vm: Uuid, hm: Uuid, at: i64) -> Transition {
    Transition::Suspended { vm, hm, at }
}

fn vm_hm(f: &Fixture, vm: Uuid, hm: Uuid) -> VmHmRow {
    f.db.vm_hm(&vm, &hm).expect("read").expect("vm_hm row")
}

/// The controller manages `vm` (before or after its discovery).
fn manage(f: &mut Fixture, vm: Uuid) {
    f.db.set_vm(
        &vm,
        &crate::VmSettings {
            managed: Some(true),
            ..crate::VmSettings::default()
        },
        T0,
    )
    .expect("set_vm");
}

/// The controller reads every pending VM item and acknowledges it.
fn ack_all(f: &mut Fixture) {
    let rows =
        f.db.needs_attention(T0, crate::NaLimits::default(), 77)
            .expect("needs attention");
    assert!(!rows.more);
    f.db.acknowledge(77).expect("ack");
}

fn vm_row(f: &Fixture, vm: Uuid) -> VmRow {
    f.db.vm(&vm).expect("read").expect("vm row")
}

/// (kind, vm, data) of every pending row.
fn pending_summary(f: &Fixture) -> Vec<(PendingKind, Option<Uuid>, String)> {
    f.db.pending()
        .expect("pending")
        .into_iter()
        .map(|p| (p.kind, p.vm, p.describe()))
        .collect()
}

both!(test_discovered);
fn test_discovered() {
    let mut f = Fixture::new();
    let mac = MacAddr([0x6a, 0x6a, 0x0f, 0xfd, 0xf7, 0x07]); // seed 004 L11286
    let applied =
        f.db.apply(&[discovered(vm1(), hm1(), mac, T0 + 5)])
            .expect("apply");
    assert_eq!(
        applied,
        Applied {
            discovered: 1,
            vms_created: 1,
            pending_added: 1,
            ..Applied::default()
        }
    );
    assert_eq!(
        vm_row(&f, vm1()),
        VmRow {
            uuid: vm1(),
            name: String::new(),
            current_host: Some(HOST_A),
            home_host: Some(HOST_A),
            state: VmState::Unknown,
            managed: false,
            ha_monitor: true,
            priority: Priority::Medium,
            detection_speed: DetectionSpeed::Normal,
            cpu_milli: 0,
            memory_mb: 0,
            ostype: Some("linux".to_string()),
            agent_versions: Some((V2_0, V2_0)),
            short_msg: 0,
            updated_ms: T0 + 5,
        }
    );
    assert_eq!(
        vm_hm(&f, vm1(), hm1()),
        VmHmRow {
            vm: vm1(),
            hm: hm1(),
            mac: Some(mac),
            hb_missed_ms: None,
            last_state: HeartbeatState::Detected,
            updated_ms: T0 + 5,
        }
    );
    let pending = f.db.pending().expect("pending");
    assert_eq!(
        pending,
        vec![PendingRow {
            id: pending[0].id,
            tag: None,
            vm: Some(vm1()),
            hm: Some(hm1()),
            kind: PendingKind::Discovered,
            code: 0,
            old_state: None,
            new_state: Some(VmState::Unknown),
            from_host: None,
            data: String::new(),
            created_ms: T0 + 5,
            updated_ms: T0 + 5,
        }]
    );
    let stored: (String, String) =
        f.db.conn
            .query_opt(
                "test",
                "vm_hm",
                "SELECT vm, mac FROM vm_hm",
                crate::db::params![],
                |c| Ok((c.text(0)?, c.text(1)?)),
            )
            .expect("raw")
            .expect("row");
    assert_eq!(
        stored,
        (
            "61be20f0-09a8-4753-b5e5-564f8a545ed5".to_string(),
            "6a:6a:0f:fd:f7:07".to_string()
        )
    );
}

both!(test_discovered_is_idempotent);
fn test_discovered_is_idempotent() {
    let mut f = Fixture::new();
    // The same handshake reported twice, then by the second monitor (the VM's other
    // interface), then a re-handshake after a monitor restart.
    let batch = [
        discovered(vm1(), hm1(), mac_n(1, 0), T0),
        discovered(vm1(), hm1(), mac_n(1, 0), T0 + 1),
        discovered(vm1(), hm2(), mac_n(1, 1), T0 + 2),
    ];
    let applied = f.db.apply(&batch).expect("apply");
    assert_eq!(
        (
            applied.discovered,
            applied.vms_created,
            applied.pending_added
        ),
        (3, 1, 1)
    );
    let again =
        f.db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0 + 100)])
            .expect("apply");
    assert_eq!((again.vms_created, again.pending_added), (0, 0));

    assert_eq!(f.db.vms().expect("vms").len(), 1);
    assert_eq!(vm_row(&f, vm1()).state, VmState::Unknown, "not managed");
    assert_eq!(f.db.pending().expect("pending").len(), 1);
    let rows = f.db.vm_hms(&vm1()).expect("vm_hms");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].mac, Some(mac_n(1, 0)));
    assert_eq!(rows[1].mac, Some(mac_n(1, 1)));
    f.db.integrity_check().expect("integrity");
}

both!(test_vm_mac);
fn test_vm_mac() {
    let mut f = Fixture::new();
    assert_eq!(
        f.db.vm_mac(&vm1(), &hm1()).expect("read"),
        None,
        "unknown VM"
    );
    f.db.apply(&[
        discovered(vm1(), hm1(), mac_n(1, 0), T0),
        // A VM known to hm2 only through a miss has no MAC there yet.
        missing(vm1(), hm2(), T0),
    ])
    .expect("apply");
    assert_eq!(
        f.db.vm_mac(&vm1(), &hm1()).expect("read"),
        Some(mac_n(1, 0))
    );
    assert_eq!(f.db.vm_mac(&vm1(), &hm2()).expect("read"), None);
    assert_eq!(f.db.vm_mac(&vm1(), &hm_b()).expect("read"), None);
    // Detected and Missing keep the MAC a discovery recorded.
    f.db.apply(&[
        missing(vm1(), hm1(), T0 + 1),
        detected(vm1(), hm1(), T0 + 2),
    ])
    .expect("apply");
    assert_eq!(
        f.db.vm_mac(&vm1(), &hm1()).expect("read"),
        Some(mac_n(1, 0))
    );
}

both!(test_missing_twice_keeps_first_time);
fn test_missing_twice_keeps_first_time() {
    let mut f = Fixture::new();
    f.db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0)])
        .expect("apply");
    f.db.apply(&[missing(vm1(), hm1(), T0 + 19_000)])
        .expect("first miss"); // ~19 s after the last heartbeat, seed 004 L12714
    f.db.apply(&[missing(vm1(), hm1(), T0 + 40_000)])
        .expect("second miss");
    let row = vm_hm(&f, vm1(), hm1());
    assert_eq!(row.hb_missed_ms, Some(T0 + 19_000));
    assert_eq!(row.last_state, HeartbeatState::Missing);
    assert_eq!(row.updated_ms, T0 + 40_000);
    // Both in one batch, too.
    f.db.apply(&[
        missing(vm1(), hm2(), T0 + 50),
        missing(vm1(), hm2(), T0 + 60),
    ])
    .expect("apply");
    assert_eq!(vm_hm(&f, vm1(), hm2()).hb_missed_ms, Some(T0 + 50));
    // A miss changes no VM state and needs no acknowledgement (seed 004 L12561-12571).
    assert_eq!(vm_row(&f, vm1()).state, VmState::Unknown);
    assert_eq!(
        f.db.pending().expect("pending").len(),
        1,
        "only the discovery"
    );
}

both!(test_detected_clears);
fn test_detected_clears() {
    let mut f = Fixture::new();
    f.db.apply(&[
        discovered(vm1(), hm1(), mac_n(1, 0), T0),
        missing(vm1(), hm1(), T0 + 19_000),
        detected(vm1(), hm1(), T0 + 25_000),
    ])
    .expect("apply");
    let row = vm_hm(&f, vm1(), hm1());
    assert_eq!(row.hb_missed_ms, None);
    assert_eq!(row.last_state, HeartbeatState::Detected);
    assert_eq!(row.updated_ms, T0 + 25_000);
    // A later miss counts from its own time, not the old one.
    f.db.apply(&[missing(vm1(), hm1(), T0 + 90_000)])
        .expect("apply");
    assert_eq!(vm_hm(&f, vm1(), hm1()).hb_missed_ms, Some(T0 + 90_000));
}

both!(test_suspended_never_leaves_miss_time);
fn test_suspended_never_leaves_miss_time() {
    let mut f = Fixture::new();
    manage(&mut f, vm1());
    f.db.apply(&[
        discovered(vm1(), hm1(), mac_n(1, 0), T0),
        discovered(vm1(), hm2(), mac_n(1, 1), T0),
        missing(vm1(), hm1(), T0 + 19_000),
    ])
    .expect("apply");
    ack_all(&mut f);
    // The agent shuts down gracefully (SHDN to both monitors, seed 004 L9063-9122).
    let applied =
        f.db.apply(&[
            suspended(vm1(), hm1(), T0 + 20_000),
            suspended(vm1(), hm2(), T0 + 20_001),
        ])
        .expect("apply");
    assert_eq!((applied.suspended, applied.pending_added), (2, 1));
    for hm in [hm1(), hm2()] {
        let row = vm_hm(&f, vm1(), hm);
        assert_eq!(row.hb_missed_ms, None);
        assert_eq!(row.last_state, HeartbeatState::Suspended);
    }
    assert_eq!(vm_row(&f, vm1()).state, VmState::Suspended);
    assert_eq!(
        pending_summary(&f),
        vec![(
            PendingKind::StateChange,
            Some(vm1()),
            "old=STARTED:new=SUSPENDED".to_string()
        ),]
    );

    // A late miss timer after the shutdown does not make the agent MISSING.
    let late =
        f.db.apply(&[missing(vm1(), hm1(), T0 + 40_000)])
            .expect("apply");
    assert_eq!((late.missing, late.missing_ignored), (1, 1));
    let row = vm_hm(&f, vm1(), hm1());
    assert_eq!(
        (row.hb_missed_ms, row.last_state),
        (None, HeartbeatState::Suspended)
    );

    // The agent comes back: a new handshake makes it STARTED again (after the
    // controller consumed the items above: unreported ones would coalesce).
    ack_all(&mut f);
    f.db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0 + 60_000)])
        .expect("apply");
    assert_eq!(vm_row(&f, vm1()).state, VmState::Started);
    assert_eq!(
        pending_summary(&f).last(),
        Some(&(
            PendingKind::StateChange,
            Some(vm1()),
            "old=SUSPENDED:new=STARTED".to_string()
        ))
    );
    assert_eq!(vm_hm(&f, vm1(), hm1()).last_state, HeartbeatState::Detected);
}

both!(test_unknown_vm_created_on_the_fly);
fn test_unknown_vm_created_on_the_fly() {
    let mut f = Fixture::new();
    let (a, b, c) = (vm_n(1), vm_n(2), vm_n(3));
    let applied =
        f.db.apply(&[
            detected(a, hm1(), T0),
            missing(b, hm2(), T0 + 1),
            suspended(c, hm_b(), T0 + 2),
            missing(b, hm1(), T0 + 3),
        ])
        .expect("apply");
    assert_eq!(
        applied,
        Applied {
            detected: 1,
            missing: 2,
            suspended: 1,
            vms_created: 3,
            pending_added: 3,
            ..Applied::default()
        }
    );
    assert_eq!(vm_row(&f, a).state, VmState::Unknown);
    assert_eq!(vm_row(&f, b).state, VmState::Unknown);
    assert_eq!(vm_row(&f, c).state, VmState::Suspended);
    assert_eq!(vm_row(&f, c).current_host, Some(HOST_B));
    assert_eq!(vm_row(&f, a).agent_versions, None);
    assert_eq!(vm_hm(&f, b, hm2()).hb_missed_ms, Some(T0 + 1));
    assert_eq!(vm_hm(&f, b, hm1()).hb_missed_ms, Some(T0 + 3));
    assert_eq!(
        pending_summary(&f),
        vec![
            (
                PendingKind::Discovered,
                Some(a),
                "old=NONE:new=UNKNOWN".to_string()
            ),
            (
                PendingKind::Discovered,
                Some(b),
                "old=NONE:new=UNKNOWN".to_string()
            ),
            (
                PendingKind::Discovered,
                Some(c),
                "old=NONE:new=SUSPENDED".to_string()
            ),
        ]
    );
    // Its handshake leaves an unmanaged VM UNKNOWN: nothing new to report.
    f.db.apply(&[discovered(a, hm1(), mac_n(1, 0), T0 + 10)])
        .expect("apply");
    assert_eq!(vm_row(&f, a).state, VmState::Unknown);
    assert_eq!(pending_summary(&f).len(), 3);
    // Managed, its next handshake (after a SHDN) makes it STARTED: a state change.
    manage(&mut f, a);
    assert_eq!(vm_row(&f, a).state, VmState::Started, "managed while heard");
    f.db.apply(&[
        suspended(a, hm1(), T0 + 11),
        discovered(a, hm1(), mac_n(1, 0), T0 + 12),
    ])
    .expect("apply");
    assert_eq!(vm_row(&f, a).state, VmState::Started);
    assert_eq!(
        pending_summary(&f).last(),
        Some(&(
            PendingKind::StateChange,
            Some(a),
            "old=STARTED:new=STARTED".to_string()
        ))
    );
}

both!(test_discovered_on_another_host_is_a_move);
fn test_discovered_on_another_host_is_a_move() {
    // After live migration the VM's agent handshakes with the target host's monitor
    // (NeedsAttention then says discoveryInfo MOVED, seed 004 L13016-13037).
    let mut f = Fixture::new();
    manage(&mut f, vm1());
    f.db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0)])
        .expect("apply");
    ack_all(&mut f);
    let applied =
        f.db.apply(&[discovered(vm1(), hm_b(), mac_n(1, 0), T0 + 1_000)])
            .expect("apply");
    assert_eq!(applied.pending_added, 1);
    let vm = vm_row(&f, vm1());
    assert_eq!(vm.current_host, Some(HOST_B));
    assert_eq!(vm.home_host, Some(HOST_A), "home host stays");
    assert_eq!(
        pending_summary(&f).last(),
        Some(&(
            PendingKind::Discovered,
            Some(vm1()),
            format!("old=STARTED:new=STARTED:from_host={}", HOST_A.0)
        ))
    );
}

both!(test_doorbell_ors_vectors);
fn test_doorbell_ors_vectors() {
    let mut f = Fixture::new();
    f.db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0)])
        .expect("apply");
    let applied =
        f.db.apply(&[
            Transition::Doorbell {
                vm: vm1(),
                hm: hm1(),
                vector: 0x2, // the initial DBELL, seed 004 L12107-12117
                at: T0 + 40_000,
            },
            Transition::Doorbell {
                vm: vm1(),
                hm: hm2(),
                vector: 0x28, // seed 004 L13575-13592
                at: T0 + 40_001,
            },
        ])
        .expect("apply");
    // Unreported doorbells of one VM coalesce: one item, vectors OR-ed.
    assert_eq!(
        (
            applied.doorbells,
            applied.pending_added,
            applied.pending_coalesced
        ),
        (2, 1, 1)
    );
    let vm = vm_row(&f, vm1());
    assert_eq!(vm.short_msg, 0x2a);
    assert_eq!(vm.updated_ms, T0 + 40_001);
    let bells: Vec<(u64, String, Option<Uuid>)> =
        f.db.pending()
            .expect("pending")
            .into_iter()
            .filter(|p| p.kind == PendingKind::Doorbell)
            .map(|p| (p.code, p.data, p.hm))
            .collect();
    assert_eq!(bells, vec![(0x2a, "0x2a".to_string(), Some(hm1()))]);

    // All 64 bits survive the signed BIGINT (in a new item once the others were
    // consumed).
    ack_all(&mut f);
    assert_eq!(vm_row(&f, vm1()).short_msg, 0, "acknowledged");
    f.db.apply(&[Transition::Doorbell {
        vm: vm1(),
        hm: hm1(),
        vector: 1 << 63,
        at: T0 + 50_000,
    }])
    .expect("apply");
    assert_eq!(vm_row(&f, vm1()).short_msg, 1 << 63);
    assert_eq!(
        f.db.pending().expect("pending").last().map(|p| p.code),
        Some(1 << 63)
    );
}

both!(test_doorbell_for_unknown_vm);
fn test_doorbell_for_unknown_vm() {
    let mut f = Fixture::new();
    f.db.apply(&[Transition::Doorbell {
        vm: vm1(),
        hm: hm1(),
        vector: 0x8,
        at: T0,
    }])
    .expect("apply");
    assert_eq!(vm_row(&f, vm1()).state, VmState::Unknown);
    assert_eq!(vm_row(&f, vm1()).short_msg, 0x8);
    let kinds: Vec<PendingKind> =
        f.db.pending()
            .expect("pending")
            .into_iter()
            .map(|p| p.kind)
            .collect();
    assert_eq!(kinds, vec![PendingKind::Discovered, PendingKind::Doorbell]);
}

both!(test_mixed_batch_counts);
fn test_mixed_batch_counts() {
    let mut f = Fixture::new();
    let batch = vec![
        discovered(vm1(), hm1(), mac_n(1, 0), T0),
        discovered(vm1(), hm2(), mac_n(1, 1), T0),
        detected(vm1(), hm1(), T0 + 10_000),
        missing(vm1(), hm2(), T0 + 19_000),
        Transition::Doorbell {
            vm: vm1(),
            hm: hm1(),
            vector: 2,
            at: T0 + 20_000,
        },
        Transition::HmHeartbeat {
            hm: hm1(),
            at: T0 + 30_000,
        },
        Transition::Event {
            kind: "VM_HB_MISSED".to_string(),
            vm: Some(vm1()),
            hm: Some(hm2()),
            text: "missed on one monitor".to_string(),
            at: T0 + 19_000,
        },
        suspended(vm_n(9), hm2(), T0 + 40_000),
    ];
    let applied = f.db.apply(&batch).expect("apply");
    assert_eq!(
        applied,
        Applied {
            discovered: 2,
            detected: 1,
            missing: 1,
            missing_ignored: 0,
            suspended: 1,
            doorbells: 1,
            hm_heartbeats: 1,
            hm_events: 0,
            hm_interfaces: 0,
            events: 1,
            vms_created: 2,
            pending_added: 3,
            pending_coalesced: 0,
            ..Applied::default()
        }
    );
    assert_eq!(applied.total(), batch.len());
    assert_eq!(f.db.apply(&[]).expect("empty batch"), Applied::default());
    f.db.integrity_check().expect("integrity");
}

both!(test_vm_hm_counts_per_monitor_and_state);
fn test_vm_hm_counts_per_monitor_and_state() {
    let mut f = Fixture::new();
    let mut batch = Vec::new();
    for i in 0..5 {
        batch.push(discovered(vm_n(i), hm1(), mac_n(i, 0), T0));
        batch.push(discovered(vm_n(i), hm2(), mac_n(i, 1), T0));
    }
    batch.push(missing(vm_n(0), hm1(), T0 + 1));
    batch.push(missing(vm_n(1), hm1(), T0 + 1));
    batch.push(suspended(vm_n(2), hm1(), T0 + 2));
    batch.push(missing(vm_n(3), hm2(), T0 + 3));
    f.db.apply(&batch).expect("apply");
    let c1 = f.db.vm_hm_counts(&hm1()).expect("counts");
    assert_eq!((c1.detected, c1.missing, c1.suspended), (2, 2, 1));
    let c2 = f.db.vm_hm_counts(&hm2()).expect("counts");
    // SUSPENDED reached only the monitor that heard the SHDN.
    assert_eq!((c2.detected, c2.missing, c2.suspended), (4, 1, 0));
    assert_eq!(c2.total(), 5);
    // A monitor with no rows.
    let other = Uuid::parse(b"00000000-0000-4000-8000-000000000009").expect("uuid");
    assert_eq!(f.db.vm_hm_counts(&other).expect("counts").total(), 0);
    assert_eq!(f.db.vm_hms_of(&other).expect("rows"), []);
    // The rows behind the counts.
    let rows = f.db.vm_hms_of(&hm1()).expect("rows");
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r.hm == hm1()));
    let missing: Vec<Uuid> = rows
        .iter()
        .filter(|r| r.last_state == HeartbeatState::Missing)
        .map(|r| r.vm)
        .collect();
    let mut expected = vec![vm_n(0), vm_n(1)];
    expected.sort_by_key(|u| u.to_text());
    assert_eq!(missing, expected);
}
