//! The monitor reports its own health (issue 7, item 9): what the control plane can
//! read in the HSDB about `hmd` itself, with a real `hmd` in a network namespace.
//!
//! - a graceful stop leaves the monitor DOWN with the seed's node-shutdown reason 0x40
//!   (seed 004 L7012-7014) and an `HM_EVENT`; a start brings it back UP;
//! - `kill -9` writes nothing: the row stays UP and only its heartbeat time ages;
//! - an interface losing its carrier under 100 agents: an `ADAPTER_DOWN` event and the
//!   interface DOWN in `hm_interface`, no VM declared MISSING through the dead link; the
//!   carrier back: `ADAPTER_UP`, every live VM DETECTED, and a VM that died during the
//!   outage MISSING only a full `vm_miss_after` after the link returned.

use std::time::Duration;

use hsdb::{HeartbeatState, HmRow, HmState, InterfaceState, PendingKind, PendingRow};
use hvha_e2e::{FAST_TIMERS, MonitorRig, hmd_stats, loadgen_vm, unix_ms, wait_for};

/// `vm_miss_after_ms` of [`FAST_TIMERS`].
const MISS_AFTER_MS: i64 = 1000;
const AGENTS: u32 = 100;

fn setup(test: &str) -> Option<MonitorRig> {
    MonitorRig::new(test, &format!("{FAST_TIMERS}log = \"info\"\n"))
}

fn hm_row(s: &MonitorRig) -> Option<HmRow> {
    s.db()?.hm(&s.hm()).ok()?
}

fn hm_events(s: &MonitorRig) -> Vec<PendingRow> {
    s.db()
        .and_then(|d| d.pending().ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.kind == PendingKind::HmEvent && p.hm == Some(s.hm()))
        .collect()
}

fn interface_state(s: &MonitorRig, name: &str) -> Option<InterfaceState> {
    s.db()?
        .hm_interfaces(&s.hm())
        .ok()?
        .into_iter()
        .find(|r| r.name == name)
        .map(|r| r.state)
}

/// The monitor registered UP with no reason, its interface UP.
fn wait_up(s: &MonitorRig, label: &str) -> HmRow {
    let row = wait_for(Duration::from_secs(10), || {
        hm_row(s).filter(|r| {
            r.state == HmState::Up && interface_state(s, "m0") == Some(InterfaceState::Up)
        })
    });
    row.unwrap_or_else(|| {
        panic!(
            "{label} registered UP with m0 UP: {:?}\n{}",
            hm_row(s),
            s.lab.log(label)
        )
    })
}

#[test]
fn graceful_stop_is_down_with_node_shutdown_and_a_start_is_up() {
    let Some(mut s) = setup("hstop") else {
        return;
    };
    s.start_hmd("hmd1");
    let up = wait_up(&s, "hmd1");
    assert_eq!((up.reason, up.has_data), (0, false));
    assert!(hm_events(&s).is_empty(), "a normal start is no event");

    s.lab.stop_cleanly("hmd1");
    let down = hm_row(&s).expect("row");
    assert_eq!(
        (down.state, down.reason, down.has_data),
        (HmState::Down, 0x40, true),
        "graceful stop: DOWN, reason NODE_SHUTDOWN (0x40)"
    );
    let events = hm_events(&s);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].code, 0x40);
    assert!(
        events[0].data.contains("EVENT_TYPE=NODE_DOWN") && events[0].data.contains("NODE_SHUTDOWN"),
        "{events:?}"
    );

    // A start: UP again, reason cleared; the stop's event stays pending for the
    // controller.
    s.start_hmd("hmd2");
    let again = wait_up(&s, "hmd2");
    assert_eq!(again.reason, 0);
    assert_ne!(again.incarnation, down.incarnation, "a new incarnation");
    assert!(again.has_data, "the stop's event is still unacknowledged");
    assert_eq!(hm_events(&s).len(), 1);
}

#[test]
fn kill_9_writes_no_down() {
    let Some(mut s) = setup("hkill") else {
        return;
    };
    s.start_hmd("hmd1");
    let up = wait_up(&s, "hmd1");
    // The monitor's own heartbeat (every second) moves on while it runs.
    let beating = wait_for(Duration::from_secs(10), || {
        hm_row(&s).filter(|r| r.last_hb_ms > up.last_hb_ms)
    })
    .expect("the monitor heartbeats into the HSDB");
    s.lab.kill_9("hmd1");
    // Give a writer that does not exist any more time to write what it never will.
    std::thread::sleep(Duration::from_millis(1500));
    let after = hm_row(&s).expect("row");
    assert_eq!(
        (after.state, after.reason, after.has_data),
        (HmState::Up, 0, false),
        "kill -9: no DOWN written; silence is what the control plane sees"
    );
    assert!(after.last_hb_ms >= beating.last_hb_ms);
    assert!(
        unix_ms() - after.last_hb_ms >= 1000,
        "its heartbeat time ages: {after:?}"
    );
    assert!(hm_events(&s).is_empty());
}

#[test]
fn carrier_loss_under_100_agents_withholds_misses_and_is_reported() {
    let Some(mut s) = setup("hlink") else {
        return;
    };
    s.start_hmd("hmd");
    let Some(mut agents) = s.agents(u64::from(AGENTS), 200, &[]) else {
        return;
    };
    s.assert_all_detected(u64::from(AGENTS), "hmd");

    // The cable is pulled on the monitor's side.
    let mon_ns = s.mon_ns.clone();
    s.lab.set_link(&mon_ns, "m0", false);
    assert!(
        wait_for(Duration::from_secs(5), || {
            (interface_state(&s, "m0") == Some(InterfaceState::Down)).then_some(())
        })
        .is_some(),
        "m0 DOWN in hm_interface\n{}",
        s.lab.log("hmd")
    );
    let events = hm_events(&s);
    assert!(
        events
            .iter()
            .any(|e| e.data.contains("EVENT_TYPE=ADAPTER_DOWN")
                && e.data.contains("INTERFACE_NAME=m0")),
        "{events:?}"
    );
    let row = hm_row(&s).expect("row");
    assert_eq!(
        (row.state, row.has_data),
        (HmState::Up, true),
        "the monitor runs; its interface is deaf"
    );
    // VM 0 dies during the outage; the others live on behind the dead link.
    agents.command("pause 0");
    agents.wait_line("paused", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(
        3 * u64::try_from(MISS_AFTER_MS).expect("positive"),
    ));
    let during = s.counts().expect("counts");
    assert_eq!(
        (during.missing, during.detected),
        (0, u64::from(AGENTS)),
        "no VM declared MISSING through a dead link\n{}",
        s.lab.log("hmd")
    );
    let stats = hmd_stats(&s.socket).expect("hmd ctl stats");
    assert_eq!(stats.get("link_up"), Some(&0), "{stats:?}");
    assert!(
        stats.get("vm_misses_withheld").copied().unwrap_or(0) >= u64::from(AGENTS),
        "every VM's miss came due and was withheld: {stats:?}"
    );

    // The cable is back.
    let back_ms = unix_ms();
    s.lab.set_link(&mon_ns, "m0", true);
    assert!(
        wait_for(Duration::from_secs(5), || {
            (interface_state(&s, "m0") == Some(InterfaceState::Up)).then_some(())
        })
        .is_some(),
        "m0 UP again in hm_interface\n{}",
        s.lab.log("hmd")
    );
    assert!(
        hm_events(&s)
            .iter()
            .any(|e| e.data.contains("EVENT_TYPE=ADAPTER_UP")),
        "an ADAPTER_UP event"
    );
    let dead = loadgen_vm(0);
    let missed = wait_for(Duration::from_secs(10), || {
        s.db()?
            .vm_hm(&dead, &s.hm())
            .ok()?
            .filter(|r| r.last_state == HeartbeatState::Missing)
    })
    .unwrap_or_else(|| panic!("VM 0 MISSING after the link returned\n{}", s.lab.log("hmd")));
    let after_return = missed.hb_missed_ms.expect("miss time") - back_ms;
    assert!(
        after_return >= MISS_AFTER_MS,
        "VM 0 declared MISSING {after_return} ms after the link returned: owed a full vm_miss_after"
    );
    assert!(
        after_return <= MISS_AFTER_MS + 5000,
        "VM 0 declared MISSING only {after_return} ms after the link returned"
    );
    // The 99 live VMs were never MISSING and stay DETECTED.
    std::thread::sleep(Duration::from_millis(
        2 * u64::try_from(MISS_AFTER_MS).expect("positive"),
    ));
    let last = s.counts().expect("counts");
    assert_eq!(
        (last.missing, last.detected),
        (1, u64::from(AGENTS) - 1),
        "{}",
        s.lab.log("hmd")
    );
    let log = s.lab.log("hmd");
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("interface lost its carrier"))
            .count(),
        1,
        "one line for the loss\n{log}"
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("interface has its carrier again"))
            .count(),
        1,
        "one line for the return\n{log}"
    );
    agents.command("quit");
}
