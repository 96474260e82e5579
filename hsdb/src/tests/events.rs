//! The event outbox and its consumers.

use super::*;
use crate::EventRow;

fn event(n: i64) -> Transition {
    Transition::Event {
        kind: if n % 2 == 0 { "VM_FAILURE" } else { "HM_DOWN" }.to_string(),
        vm: (n % 2 == 0).then(vm1),
        hm: (n % 3 == 0).then(hm1),
        text: format!("event {n}"),
        at: T0 + n,
    }
}

both!(test_event_ids_monotonic_and_paging);
fn test_event_ids_monotonic_and_paging() {
    let mut f = Fixture::new();
    let applied =
        f.db.apply(&(0..10).map(event).collect::<Vec<_>>())
            .expect("apply");
    assert_eq!(applied.events, 10);
    f.db.apply(&(10..25).map(event).collect::<Vec<_>>())
        .expect("apply");

    let all = f.db.events_after(0, 1_000).expect("all");
    assert_eq!(all.len(), 25);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "increasing ids");
    assert_eq!(
        all[0],
        EventRow {
            id: all[0].id,
            kind: "VM_FAILURE".to_string(),
            vm: Some(vm1()),
            hm: Some(hm1()),
            text: "event 0".to_string(),
            created_ms: T0,
        }
    );
    assert_eq!((all[1].vm, all[1].hm), (None, None));
    let texts: Vec<String> = all.iter().map(|e| e.text.clone()).collect();
    let expected: Vec<String> = (0..25).map(|n| format!("event {n}")).collect();
    assert_eq!(texts, expected, "in the order applied");

    // Page by 7 from offset 0, as a notifier does.
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let page = f.db.events_after(offset, 7).expect("page");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        offset = page.last().map_or(offset, |e| e.id);
        seen.extend(page);
    }
    assert_eq!(seen, all);
    assert!(f.db.events_after(offset, 7).expect("after last").is_empty());
    assert!(f.db.events_after(0, 0).expect("limit 0").is_empty());
}

both!(test_event_ids_never_reused);
fn test_event_ids_never_reused() {
    let mut f = Fixture::new();
    f.db.apply(&(0..3).map(event).collect::<Vec<_>>())
        .expect("apply");
    let last =
        f.db.events_after(0, 10)
            .expect("read")
            .last()
            .map(|e| e.id)
            .expect("three events");
    // Old events pruned: a consumer at `last` must not miss the next one.
    f.exec("DELETE FROM event", crate::db::params![]);
    f.db.apply(&[event(3)]).expect("apply");
    let next = f.db.events_after(last, 10).expect("read");
    assert_eq!(next.len(), 1);
    assert!(next[0].id > last);
}

both!(test_consumer_offsets);
fn test_consumer_offsets() {
    let mut f = Fixture::new();
    assert_eq!(f.db.consumer_offset("email").expect("read"), None);
    f.db.set_consumer_offset("email", 12).expect("set");
    f.db.set_consumer_offset("snmp", 3).expect("set");
    assert_eq!(f.db.consumer_offset("email").expect("read"), Some(12));
    assert_eq!(f.db.consumer_offset("snmp").expect("read"), Some(3));
    // Moving back is how a consumer replays.
    f.db.set_consumer_offset("email", 5).expect("set");
    assert_eq!(f.db.consumer_offset("email").expect("read"), Some(5));
    // Negative offsets are refused by the schema.
    assert!(f.db.set_consumer_offset("email", -1).is_err());
    assert_eq!(f.db.consumer_offset("email").expect("read"), Some(5));

    // Offsets survive a restart (store-and-forward after an outage).
    let db = f.reopen(&Options::default());
    drop(f);
    assert_eq!(db.consumer_offset("email").expect("read"), Some(5));
}
