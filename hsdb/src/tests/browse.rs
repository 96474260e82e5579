//! The dashboard's reads: events newest first by kind and VM, one event, relocations in
//! progress, the pending head, and acknowledging one VM's reported items.

use super::*;
use crate::{EventFilter, NaLimits, RelocationKind};

fn event(kind: &str, vm: Option<Uuid>, n: i64) -> Transition {
    Transition::Event {
        kind: kind.to_string(),
        vm,
        hm: None,
        text: format!("event {n}"),
        at: T0 + n,
    }
}

both!(test_events_newest_filtered_and_paged);
fn test_events_newest_filtered_and_paged() {
    let mut f = Fixture::new();
    let mut batch = Vec::new();
    for n in 0..30 {
        let kind = ["A_KIND", "B_KIND", "C_KIND"][usize::try_from(n % 3).unwrap_or(0)];
        batch.push(event(kind, (n % 2 == 0).then(vm1), n));
    }
    f.db.apply(&batch).expect("apply");
    let ids = |rows: &[crate::EventRow]| rows.iter().map(|e| e.id).collect::<Vec<_>>();
    let all = f.db.events_after(0, 100).expect("all");
    let newest =
        f.db.events_newest(&EventFilter {
            limit: 5,
            ..EventFilter::default()
        })
        .expect("newest");
    let expect: Vec<i64> = all.iter().rev().take(5).map(|e| e.id).collect();
    assert_eq!(ids(&newest), expect);
    // The next page starts below the last id.
    let next =
        f.db.events_newest(&EventFilter {
            before: newest.last().map(|e| e.id),
            limit: 5,
            ..EventFilter::default()
        })
        .expect("next");
    let expect: Vec<i64> = all.iter().rev().skip(5).take(5).map(|e| e.id).collect();
    assert_eq!(ids(&next), expect);
    // By kind, in and out.
    let only_a =
        f.db.events_newest(&EventFilter {
            kinds: Some(vec!["A_KIND".into()]),
            limit: 100,
            ..EventFilter::default()
        })
        .expect("a");
    assert_eq!(only_a.len(), 10);
    assert!(only_a.iter().all(|e| e.kind == "A_KIND"));
    let not_a =
        f.db.events_newest(&EventFilter {
            kinds: Some(vec!["A_KIND".into(), "C_KIND".into()]),
            exclude: true,
            limit: 100,
            ..EventFilter::default()
        })
        .expect("not a");
    assert_eq!(not_a.len(), 10);
    assert!(not_a.iter().all(|e| e.kind == "B_KIND"));
    // An empty list selects nothing, or leaves nothing out.
    let none = EventFilter {
        kinds: Some(Vec::new()),
        limit: 100,
        ..EventFilter::default()
    };
    assert!(f.db.events_newest(&none).expect("none").is_empty());
    let every = EventFilter {
        exclude: true,
        ..none
    };
    assert_eq!(f.db.events_newest(&every).expect("every").len(), 30);
    // By VM, with a kind.
    let vm_a =
        f.db.events_newest(&EventFilter {
            kinds: Some(vec!["A_KIND".into()]),
            vm: Some(vm1()),
            limit: 100,
            ..EventFilter::default()
        })
        .expect("vm");
    assert_eq!(vm_a.len(), 5);
    assert!(
        vm_a.iter()
            .all(|e| e.vm == Some(vm1()) && e.kind == "A_KIND")
    );
    assert!(vm_a.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    // One event.
    let one = f.db.event(all[3].id).expect("event");
    assert_eq!(one.as_ref(), Some(&all[3]));
    assert_eq!(f.db.event(1_000_000).expect("none"), None);
}

both!(test_open_relocations_and_pending_head);
fn test_open_relocations_and_pending_head() {
    let mut f = Fixture::new();
    f.db.apply(&[discovered(vm1(), hm1(), mac_n(1, 0), T0)])
        .expect("discovered");
    let a =
        f.db.relocation_begin(&vm1(), Some(HOST_A), None, RelocationKind::Relocate, T0)
            .expect("a");
    let b =
        f.db.relocation_begin(&vm1(), Some(HOST_A), None, RelocationKind::Restart, T0 + 1)
            .expect("b");
    assert_eq!(f.db.open_relocation_ids(10).expect("open"), vec![a, b]);
    f.db.relocation_end(a, "success", T0 + 2).expect("end");
    assert_eq!(f.db.open_relocation_ids(10).expect("open"), vec![b]);
    let (rows, total) = f.db.pending_head(10).expect("pending");
    assert_eq!(total, 1);
    assert_eq!(rows, f.db.pending().expect("all"));
    let (rows, total) = f.db.pending_head(0).expect("none");
    assert!(rows.is_empty());
    assert_eq!(total, 1);
}

both!(test_acknowledge_vm_deletes_only_its_reported_items);
fn test_acknowledge_vm_deletes_only_its_reported_items() {
    let mut f = Fixture::new();
    let vm2 = vm_n(2);
    f.db.apply(&[
        discovered(vm1(), hm1(), mac_n(1, 0), T0),
        discovered(vm2, hm1(), mac_n(2, 0), T0),
    ])
    .expect("discovered");
    f.db.needs_attention(T0, NaLimits::default(), 9)
        .expect("na");
    // A doorbell after the reply: not reported, kept, and its bit stays.
    f.db.apply(&[Transition::Doorbell {
        vm: vm1(),
        hm: hm1(),
        vector: 0x4,
        at: T0 + 1,
    }])
    .expect("doorbell");
    assert_eq!(f.db.acknowledge_vm(&vm1()).expect("ack"), 1);
    let left = f.db.pending().expect("pending");
    assert!(left.iter().any(|p| p.vm == Some(vm2) && p.tag == Some(9)));
    let mine: Vec<_> = left.iter().filter(|p| p.vm == Some(vm1())).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].tag, None);
    assert_eq!(f.db.vm(&vm1()).expect("vm").expect("row").short_msg, 0x4);
    assert_eq!(f.db.acknowledge_vm(&vm1()).expect("again"), 0);
}
