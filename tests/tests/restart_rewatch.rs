//! A monitor restart forgets no VM (issue 7, item 10; the seed's `vioHmRestartVMs`,
//! seed 004 L8365-8367).
//!
//! Ten agents (`hvncp-loadgen`) heartbeat to a real `hmd`; `hmd` is stopped; three of
//! the agents die (`pause`: they send and answer nothing); `hmd` is started again on the
//! same HSDB. The seven live ones re-pair and stay DETECTED; the three dead ones, which
//! the previous run left DETECTED, are declared MISSING one Hello period plus
//! `vm_miss_after` after the start — not before, and not much later.

use std::collections::BTreeMap;
use std::time::Duration;

use hsdb::{HeartbeatState, Uuid, VmHmRow};
use hvha_e2e::{MonitorRig, loadgen_vm, unix_ms, wait_for};

const AGENTS: u8 = 10;
const DEAD: [u8; 3] = [2, 5, 9];
const HELLO_MS: i64 = 500;
const MISS_AFTER_MS: i64 = 1000;

/// The VM UUID `hvncp-loadgen` gives agent `i`.
fn agent_vm(i: u8) -> Uuid {
    loadgen_vm(u32::from(i))
}

fn rows(rig: &MonitorRig) -> Option<BTreeMap<Uuid, VmHmRow>> {
    Some(rig.rows()?.into_iter().map(|r| (r.vm, r)).collect())
}

#[test]
fn restarted_monitor_declares_the_vms_that_died_meanwhile_missing() {
    let Some(mut rig) = MonitorRig::new(
        "rewatch",
        &format!(
            "hello_period_ms = {HELLO_MS}\nhb_period_ms = 200\nvm_miss_after_ms = {MISS_AFTER_MS}\n\
             hm_heartbeat_period_ms = 1000\nflush_ms = 10\nlog = \"info\"\n"
        ),
    ) else {
        return;
    };
    rig.start_hmd("hmd1");
    let Some(mut agents) = rig.agents(u64::from(AGENTS), 200, &[]) else {
        return;
    };
    let all_detected = wait_for(Duration::from_secs(20), || {
        rows(&rig).filter(|r| {
            (0..AGENTS).all(|i| {
                r.get(&agent_vm(i))
                    .is_some_and(|row| row.last_state == HeartbeatState::Detected)
            })
        })
    });
    assert!(
        all_detected.is_some(),
        "all {AGENTS} VMs DETECTED before the stop: {:?}\n{}",
        rows(&rig),
        rig.lab.log("hmd1")
    );

    // Stop the monitor; three VMs die while it is down.
    rig.lab.stop_cleanly("hmd1");
    let dead: Vec<String> = DEAD.iter().map(u8::to_string).collect();
    agents.command(&format!("pause {}", dead.join(",")));
    agents.wait_line("paused", Duration::from_secs(10));
    let before = rows(&rig).expect("rows after the stop");
    for i in DEAD {
        assert_eq!(
            before[&agent_vm(i)].last_state,
            HeartbeatState::Detected,
            "the stopped monitor left VM {i} DETECTED (what the restart must not trust)"
        );
    }

    // Restart on the same HSDB.
    let restarted_ms = unix_ms();
    rig.start_hmd("hmd2");
    let settled = wait_for(Duration::from_secs(30), || {
        rows(&rig).filter(|r| {
            DEAD.iter()
                .all(|&i| r[&agent_vm(i)].last_state == HeartbeatState::Missing)
        })
    });
    let after = settled.unwrap_or_else(|| {
        panic!(
            "the 3 dead VMs MISSING after the restart: {:?}\n{}",
            rows(&rig),
            rig.lab.log("hmd2")
        )
    });
    let owed = HELLO_MS + MISS_AFTER_MS;
    for i in DEAD {
        let row = &after[&agent_vm(i)];
        let missed = row.hb_missed_ms.expect("a MISSING row has its miss time");
        let after_start = missed - restarted_ms;
        // Not before a Hello period plus vm_miss_after from the start (the daemon
        // starts after `restarted_ms`), and not much later (slack for a loaded machine).
        assert!(
            after_start >= owed,
            "VM {i} declared MISSING {after_start} ms after the restart, before the {owed} ms it is owed"
        );
        assert!(
            after_start <= owed + 5000,
            "VM {i} declared MISSING only {after_start} ms after the restart\n{}",
            rig.lab.log("hmd2")
        );
    }
    // The live ones re-paired with the new run (a new row time) and stay DETECTED past
    // the deadline, as does the verdict on the dead ones.
    std::thread::sleep(Duration::from_millis(
        u64::try_from(owed).expect("positive"),
    ));
    let last = rows(&rig).expect("rows");
    for i in 0..AGENTS {
        let row = &last[&agent_vm(i)];
        if DEAD.contains(&i) {
            assert_eq!(row.last_state, HeartbeatState::Missing, "dead VM {i}");
        } else {
            assert_eq!(
                row.last_state,
                HeartbeatState::Detected,
                "live VM {i}\n{}",
                rig.lab.log("hmd2")
            );
            assert!(
                row.updated_ms >= restarted_ms,
                "live VM {i} re-paired with the restarted monitor: {row:?}"
            );
        }
    }
    assert!(
        rig.lab
            .log("hmd2")
            .lines()
            .any(|l| l.contains("did not re-pair: MISSING") && l.contains("count=3")),
        "one summary line for the VMs given up on\n{}",
        rig.lab.log("hmd2")
    );
    agents.command("quit");
}
