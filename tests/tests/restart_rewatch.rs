//! A monitor restart forgets no VM (issue 7, item 10; the seed's `vioHmRestartVMs`,
//! seed 004 L8365-8367).
//!
//! Ten agents (`hvncp-loadgen`) heartbeat to a real `hmd`; `hmd` is stopped; three of
//! the agents die (`pause`: they send and answer nothing); `hmd` is started again on the
//! same HSDB. The seven live ones re-pair and stay DETECTED; the three dead ones, which
//! the previous run left DETECTED, are declared MISSING one Hello period plus
//! `vm_miss_after` after the start — not before, and not much later.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use dataplane::message::Uuid;
use hsdb::{HeartbeatState, Hsdb, Options, VmHmRow};
use hvha_e2e::{Lab, wait_for};

const HM: &str = "5c3196a3-c41f-4b5c-9861-dee6077081c6";
const AGENTS: u8 = 10;
const DEAD: [u8; 3] = [2, 5, 9];
const HELLO_MS: i64 = 500;
const MISS_AFTER_MS: i64 = 1000;

fn hm() -> Uuid {
    Uuid::parse(HM.as_bytes()).expect("uuid")
}

/// The VM UUID `hvncp-loadgen` gives agent `i` (default first MAC 02:4c:47:00:00:00).
fn agent_vm(i: u8) -> Uuid {
    Uuid([
        0x4c, 0x47, 0x4c, 0x47, 0, 0, 0x40, 0, 0x80, 0, 0x02, 0x4c, 0x47, 0, 0, i,
    ])
}

fn rows(path: &Path) -> Option<BTreeMap<Uuid, VmHmRow>> {
    let rows = Hsdb::open(path, &Options::default())
        .ok()?
        .vm_hms_of(&hm())
        .ok()?;
    Some(rows.into_iter().map(|r| (r.vm, r)).collect())
}

fn unix_ms() -> i64 {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_millis()).expect("ms fit")
}

#[test]
fn restarted_monitor_declares_the_vms_that_died_meanwhile_missing() {
    let Some(mut lab) = Lab::new("rewatch") else {
        return;
    };
    let gen_ns = lab.netns("gen");
    let mon_ns = lab.netns("mon");
    lab.link(&gen_ns, "g0", &mon_ns, "m0");
    let hsdb_path = lab.dir.join("hsdb.sqlite");
    let config = lab.write(
        "hmd.toml",
        &format!(
            r#"monitor_uuid = "{HM}"
host_id = 1
host_name = "host1"
hsdb = "{}"
admin_socket = "{}"
interfaces = ["m0"]
hello_period_ms = {HELLO_MS}
hb_period_ms = 200
vm_miss_after_ms = {MISS_AFTER_MS}
hm_heartbeat_period_ms = 1000
flush_ms = 10
log = "info"
"#,
            hsdb_path.display(),
            lab.dir.join("hmd.sock").display(),
        ),
    );
    let config = config.display().to_string();
    lab.spawn("hmd1", &mon_ns, "hmd", &["--config", &config]);
    let Some(mut agents) = lab.loadgen(
        "loadgen",
        &gen_ns,
        &[
            "--interface",
            "g0",
            "--agents",
            &AGENTS.to_string(),
            "--period-ms",
            "200",
            "--report-ms",
            "0",
        ],
    ) else {
        return;
    };
    agents.wait_line("ready", Duration::from_secs(30));
    let all_detected = wait_for(Duration::from_secs(20), || {
        rows(&hsdb_path).filter(|r| {
            (0..AGENTS).all(|i| {
                r.get(&agent_vm(i))
                    .is_some_and(|row| row.last_state == HeartbeatState::Detected)
            })
        })
    });
    assert!(
        all_detected.is_some(),
        "all {AGENTS} VMs DETECTED before the stop: {:?}\n{}",
        rows(&hsdb_path),
        lab.log("hmd1")
    );

    // Stop the monitor; three VMs die while it is down.
    lab.signal("hmd1", "TERM");
    assert_eq!(
        lab.wait_exit("hmd1", Duration::from_secs(10)),
        Some(0),
        "hmd stops cleanly\n{}",
        lab.log("hmd1")
    );
    let dead: Vec<String> = DEAD.iter().map(u8::to_string).collect();
    agents.command(&format!("pause {}", dead.join(",")));
    agents.wait_line("paused", Duration::from_secs(10));
    let before = rows(&hsdb_path).expect("rows after the stop");
    for i in DEAD {
        assert_eq!(
            before[&agent_vm(i)].last_state,
            HeartbeatState::Detected,
            "the stopped monitor left VM {i} DETECTED (what the restart must not trust)"
        );
    }

    // Restart on the same HSDB.
    let restarted_ms = unix_ms();
    lab.spawn("hmd2", &mon_ns, "hmd", &["--config", &config]);
    let settled = wait_for(Duration::from_secs(30), || {
        rows(&hsdb_path).filter(|r| {
            DEAD.iter()
                .all(|&i| r[&agent_vm(i)].last_state == HeartbeatState::Missing)
        })
    });
    let after = settled.unwrap_or_else(|| {
        panic!(
            "the 3 dead VMs MISSING after the restart: {:?}\n{}",
            rows(&hsdb_path),
            lab.log("hmd2")
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
            lab.log("hmd2")
        );
    }
    // The live ones re-paired with the new run (a new row time) and stay DETECTED past
    // the deadline, as does the verdict on the dead ones.
    std::thread::sleep(Duration::from_millis(
        u64::try_from(owed).expect("positive"),
    ));
    let last = rows(&hsdb_path).expect("rows");
    for i in 0..AGENTS {
        let row = &last[&agent_vm(i)];
        if DEAD.contains(&i) {
            assert_eq!(row.last_state, HeartbeatState::Missing, "dead VM {i}");
        } else {
            assert_eq!(
                row.last_state,
                HeartbeatState::Detected,
                "live VM {i}\n{}",
                lab.log("hmd2")
            );
            assert!(
                row.updated_ms >= restarted_ms,
                "live VM {i} re-paired with the restarted monitor: {row:?}"
            );
        }
    }
    assert!(
        lab.log("hmd2")
            .lines()
            .any(|l| l.contains("did not re-pair: MISSING") && l.contains("count=3")),
        "one summary line for the VMs given up on\n{}",
        lab.log("hmd2")
    );
    agents.command("quit");
}
