//! A host group on PostgreSQL: three hosts, two `hmd` each, real agents (`vmmd` and
//! `hvncp-loadgen`), every monitor and controller sharing one PostgreSQL HSDB (the lab of
//! `tests/control_loop.rs`, see `hvha_e2e::group`).
//!
//! - a failed host's VMs move (the whole loop on the shared database);
//! - PostgreSQL restarted mid-run, then stopped for 30 s while VMs hang, resume and
//!   agents die: every monitor keeps monitoring, holds what it could not commit, and
//!   once the database is back its rows say exactly what the monitor saw — no transition
//!   lost, no monitor restarted;
//! - two `hactl run`: the leader is stopped with SIGSTOP past its lease while a VM it
//!   was watching hangs; the other takes over and relocates the VM; the old leader,
//!   continued with SIGCONT, acts on nothing (fencing) and the VM was acted on once.
//!
//! PostgreSQL comes from `pglab`: the server `.ci/run` starts (`HVHA_PG_URL`), or a
//! throw-away cluster of this test process; without PostgreSQL the tests say SKIPPED
//! (and fail under `CI=true`).

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use controlplane::params::GroupParams;
use hsdb::HeartbeatState;
use hvha_e2e::group::{
    Group, HOSTS, PING_TIMEOUT_MS, REAL_VMS, Store, build_on, check_moved, check_policies, hm_uuid,
    real_vm, set_policies, vms_of,
};
use hvha_e2e::{binary, hmd_ctl, hmd_stats, unix_ms, uuid, wait_for};

/// `hactl --config <config> status`, if it answers.
fn hactl_status(config: &str) -> Option<String> {
    let out = Command::new(binary("hactl"))
        .args(["--config", config, "status"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The admin socket of monitor `m` of host `h`.
fn hmd_socket(g: &Group, h: usize, m: usize) -> std::path::PathBuf {
    g.lab.dir.join(format!("hmd-{h}-{m}.sock"))
}

/// Every VM's state as monitor `m` of host `h` sees it (`hmd ctl vms`): uuid → state.
fn monitor_view(g: &Group, h: usize, m: usize) -> Result<HashMap<String, String>, String> {
    let text = hmd_ctl(&hmd_socket(g, h, m), "vms")?;
    let mut view = HashMap::new();
    for line in text.lines().skip_while(|l| l.starts_with("ok")) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() >= 4 {
            view.insert(fields[0].to_owned(), fields[3].to_owned());
        }
    }
    Ok(view)
}

fn start_hactl(g: &mut Group, label: &str, config: &str) {
    let ns = g.ctl_ns.clone();
    g.lab
        .spawn(label, &ns, "hactl", &["--config", config, "run"]);
    assert!(
        wait_for(Duration::from_secs(15), || hactl_status(config)).is_some(),
        "{label} answers `hactl status`\n{}",
        g.logs()
    );
}

fn wait_all_detected(g: &Group) {
    assert!(
        wait_for(Duration::from_secs(40), || g.all_detected().then_some(())).is_some(),
        "every VM DETECTED by both monitors of its host within 40 s\n{}",
        g.logs()
    );
}

#[test]
fn pg_failed_host_vms_move_on_the_shared_database() {
    let Some(pg) = pglab::require("e2e::pg_failed_host_vms_move_on_the_shared_database") else {
        return;
    };
    let url = pg.fresh_database("pgmove");
    let Some(mut g) = build_on("pgmove", Store::Postgres(url)) else {
        return;
    };
    wait_all_detected(&g);
    // The six monitors share the one database.
    let db = g.db().expect("the HSDB answers");
    assert_eq!(db.hms().expect("monitors").len(), 6, "{}", g.logs());
    drop(db);
    // Placement policies on the VMs of the host that will fail, set with hactl.
    set_policies(&g, 2);
    let config = g.hactl_config.display().to_string();
    start_hactl(&mut g, "hactl", &config);

    let p = GroupParams::fast("hg1");
    let actions = 2 * p.command_timeout_ms + p.probe_timeout_ms;
    let host_bound = REAL_VMS as i64 * PING_TIMEOUT_MS
        + p.hm_silent_after_ms
        + p.host_fdt_ms
        + 2 * p.scan_interval_ms
        + p.probe_timeout_ms
        + actions;
    let fault = unix_ms();
    g.fail_host(2, &[]);
    let within = Duration::from_millis(u64::try_from(host_bound).unwrap_or(0) + 10_000);
    let mut moves = Vec::new();
    for (name, vm) in vms_of(2) {
        let r = g.wait_relocated(&vm, within).unwrap_or_else(|| {
            panic!(
                "{name} ({vm}) of the failed host never relocated\n{}",
                g.logs()
            )
        });
        let took = check_moved(&r, 2, fault, host_bound)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", g.logs()));
        eprintln!("{name} relocated off the failed host in {took} ms (bound {host_bound} ms)");
        moves.push((name, r));
    }
    check_policies(2, &moves).unwrap_or_else(|e| panic!("{e}\n{}", g.logs()));
    for h in 0..2 {
        for (name, vm) in vms_of(h) {
            assert!(
                g.relocations(&vm).is_empty(),
                "{name} was alive but moved\n{}",
                g.logs()
            );
        }
    }
}

/// Rows of every monitor equal what the monitor sees, for every VM it watches.
fn rows_match_monitors(g: &Group) -> Result<(), String> {
    let db = g.db().ok_or("the HSDB does not answer")?;
    for h in 0..HOSTS.len() {
        for m in 1..=2 {
            let hm = uuid(&hm_uuid(h, m));
            let view = monitor_view(g, h, m)?;
            let rows = db.vm_hms_of(&hm).map_err(|e| e.to_string())?;
            for (vm, state) in &view {
                let row = rows
                    .iter()
                    .find(|r| r.vm.to_string() == *vm)
                    .ok_or(format!("hmd-{h}-{m}: VM {vm} ({state}) has no row"))?;
                let want = match state.as_str() {
                    "DETECTED" => HeartbeatState::Detected,
                    "MISSING" => HeartbeatState::Missing,
                    "SUSPENDED" => HeartbeatState::Suspended,
                    // Awaiting its first heartbeat: nothing to compare yet.
                    _ => continue,
                };
                if row.last_state != want {
                    return Err(format!(
                        "hmd-{h}-{m}: VM {vm} is {state} but its row says {:?}",
                        row.last_state
                    ));
                }
            }
            // No row the monitor does not account for.
            if let Some(extra) = rows.iter().find(|r| !view.contains_key(&r.vm.to_string())) {
                return Err(format!(
                    "hmd-{h}-{m}: a row for VM {} the monitor does not watch",
                    extra.vm
                ));
            }
        }
    }
    Ok(())
}

/// The HSDB writer's counters of monitor `m` of host `h` (`hmd ctl stats`).
fn writer_stats(g: &Group, h: usize, m: usize) -> HashMap<String, u64> {
    hmd_stats(&hmd_socket(g, h, m)).unwrap_or_else(|e| panic!("hmd-{h}-{m} stats: {e}"))
}

/// Every transition a monitor handed to its writer is accounted for: committed, or
/// superseded by a later one of the same VM (the HSDB ends the same without it); none
/// dropped for room, none owed, the backlog empty, connected.
fn writer_settled(g: &Group, h: usize, m: usize) -> Result<HashMap<String, u64>, String> {
    let s = writer_stats(g, h, m);
    let get = |k: &str| s.get(k).copied().unwrap_or(u64::MAX);
    let (handed, committed, superseded) = (
        get("hsdb_handed"),
        get("hsdb_transitions"),
        get("hsdb_superseded"),
    );
    if get("hsdb_connected") != 1
        || get("hsdb_backlog") != 0
        || get("hsdb_owed") != 0
        || get("hsdb_dropped") != 0
        || handed != committed + superseded
    {
        return Err(format!("hmd-{h}-{m} not settled: {s:?}"));
    }
    Ok(s)
}

#[test]
fn pg_outage_loses_no_transition_and_monitors_ride_it_out() {
    let Some(server) = pglab::require_owned("e2e::pg_outage_loses_no_transition") else {
        return;
    };
    let Some(mut g) = build_on("pgout", Store::Postgres(server.fresh_database("pgout"))) else {
        return;
    };
    wait_all_detected(&g);
    let pids: Vec<u32> = (0..HOSTS.len())
        .flat_map(|h| (1..=2).map(move |m| (h, m)))
        .map(|(h, m)| g.lab.pid(&format!("hmd-{h}-{m}")))
        .collect();

    // 1. A restart mid-run while a VM hangs (its MISSING commits across the restart).
    g.hang(0, 1, false);
    server.restart();
    assert!(
        wait_for(Duration::from_secs(20), || rows_match_monitors(&g).ok()).is_some(),
        "after a restart of PostgreSQL the rows match the monitors: {:?}\n{}",
        rows_match_monitors(&g),
        g.logs()
    );

    // 2. Stopped like a crash for 30 s, while agents hang, resume and die.
    server.stop_immediate();
    let outage = Instant::now();
    g.resume(0, 1);
    g.hang(1, 1, false);
    g.hang(2, 2, false);
    g.lab.kill_9("loadgen-1-2");
    std::thread::sleep(Duration::from_secs(5));
    // Every monitor keeps monitoring and says what it holds: those of host-b (a VM
    //    hung, an agent gone) hold transitions.
    for h in 0..HOSTS.len() {
        for m in 1..=2 {
            let status = hmd_ctl(&hmd_socket(&g, h, m), "status")
                .unwrap_or_else(|e| panic!("hmd-{h}-{m} answers during the outage: {e}"));
            assert!(
                status.contains("backlog"),
                "hmd-{h}-{m} status shows its backlog:\n{status}"
            );
            let s = writer_stats(&g, h, m);
            assert_eq!(s.get("hsdb_connected"), Some(&0), "hmd-{h}-{m}: {s:?}");
            if h == 1 {
                assert!(
                    s["hsdb_backlog"] > 0,
                    "hmd-{h}-{m} holds transitions: {s:?}"
                );
            }
        }
    }
    let view = monitor_view(&g, 1, 1).expect("hmd-1-1 answers");
    assert_eq!(
        view.get(&real_vm(1, 1)).map(String::as_str),
        Some("MISSING"),
        "the hung VM is seen MISSING during the outage\n{}",
        g.logs()
    );
    g.resume(2, 2);
    std::thread::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed()));
    server.start_again();

    // 3. Back: everything the monitors saw is in the database, no monitor restarted,
    //    every transition each handed to its writer committed or superseded.
    assert!(
        wait_for(Duration::from_secs(30), || rows_match_monitors(&g).ok()).is_some(),
        "after the outage the rows match the monitors: {:?}\n{}",
        rows_match_monitors(&g),
        g.logs()
    );
    for h in 0..HOSTS.len() {
        for m in 1..=2 {
            let s = wait_for(Duration::from_secs(30), || writer_settled(&g, h, m).ok())
                .unwrap_or_else(|| {
                    panic!("{:?}\n{}", writer_settled(&g, h, m), g.logs());
                });
            let outages = s.get("hsdb_outages").copied().unwrap_or(0);
            assert!(outages >= 1, "hmd-{h}-{m} counted the outage: {s:?}");
            eprintln!(
                "hmd-{h}-{m}: {} transitions handed, {} committed, {} superseded, {} outages",
                s["hsdb_handed"], s["hsdb_transitions"], s["hsdb_superseded"], outages
            );
        }
    }
    for (i, (h, m)) in (0..HOSTS.len())
        .flat_map(|h| (1..=2).map(move |m| (h, m)))
        .enumerate()
    {
        assert_eq!(
            g.lab.pid(&format!("hmd-{h}-{m}")),
            pids[i],
            "hmd-{h}-{m} was not restarted"
        );
    }
    // The hung VM's MISSING and DETECTED through the outage: it was reported missing
    // (a pending item the controller sees) and is DETECTED again.
    let db = g.db().expect("HSDB");
    let vm = uuid(&real_vm(1, 1));
    for m in 1..=2 {
        let row = db
            .vm_hm(&vm, &uuid(&hm_uuid(1, m)))
            .expect("read")
            .expect("row");
        assert_eq!(row.last_state, HeartbeatState::Missing, "{}", g.logs());
    }
}

/// hg1's lease as controller `config` reports it (`hactl status --json`).
fn lease_of(config: &str) -> Option<serde_json::Value> {
    let out = Command::new(binary("hactl"))
        .args(["--config", config, "status", "--json"])
        .output()
        .ok()?;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    status["groups"]
        .as_array()?
        .iter()
        .find(|g| g["name"] == "hg1")
        .map(|g| g["lease"].clone())
}

/// The platform actions controller `label` logged (`platform action: …`, each with its
/// token).
fn actions_logged(g: &Group, label: &str) -> Vec<String> {
    g.lab
        .log(label)
        .lines()
        .filter(|l| l.contains("platform action:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn pg_two_controllers_paused_leader_is_fenced() {
    let Some(pg) = pglab::require("e2e::pg_two_controllers_paused_leader_is_fenced") else {
        return;
    };
    let url = pg.fresh_database("pgfence");
    let Some(mut g) = build_on("pgfence", Store::Postgres(url)) else {
        return;
    };
    wait_all_detected(&g);
    // Two controllers of hg1 with a short lease: a dead leader is replaced within
    // ttl + renew_every + one scan (docs/controlplane.md).
    let text = std::fs::read_to_string(&g.hactl_config).expect("hactl.toml");
    let with = |id: &str| {
        text.replace("hactl.sock", &format!("{id}.sock")).replacen(
            "[platform]",
            &format!(
                "controller_id = \"{id}\"\n[lease]\nttl_ms = 2000\nrenew_every_ms = 500\n\
                 margin_ms = 200\n[platform]"
            ),
            1,
        )
    };
    let first = g
        .lab
        .write("ctl-a.toml", &with("ctl-a"))
        .display()
        .to_string();
    let second = g
        .lab
        .write("ctl-b.toml", &with("ctl-b"))
        .display()
        .to_string();
    start_hactl(&mut g, "ctl-a", &first);
    let lease = wait_for(Duration::from_secs(20), || {
        lease_of(&first).filter(|l| l["role"] == "leader")
    })
    .unwrap_or_else(|| panic!("ctl-a leads\n{}", g.logs()));
    assert_eq!(lease["leader"], "ctl-a");
    start_hactl(&mut g, "ctl-b", &second);
    assert!(
        wait_for(Duration::from_secs(20), || {
            lease_of(&second).filter(|l| l["role"] == "follower")
        })
        .is_some(),
        "ctl-b follows\n{}",
        g.logs()
    );

    // A VM hangs (agent stopped, deaf to ping). Once the monitors have declared it
    // missing the leader knows its failure has begun: then it is stopped, before its
    // detection time has passed.
    let hung = uuid(&real_vm(0, 1));
    g.hang(0, 1, true);
    assert!(
        wait_for(Duration::from_secs(10), || {
            let db = g.db()?;
            (1..=2)
                .all(|m| {
                    db.vm_hm(&hung, &uuid(&hm_uuid(0, m)))
                        .ok()
                        .flatten()
                        .is_some_and(|r| r.last_state == HeartbeatState::Missing)
                })
                .then_some(())
        })
        .is_some(),
        "the hung VM MISSING on both monitors\n{}",
        g.logs()
    );
    g.lab.signal("ctl-a", "STOP");
    let actions_before = actions_logged(&g, "ctl-a");

    // ctl-b takes over and relocates it, once.
    let r = g
        .wait_relocated(&hung, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("ctl-b relocated the hung VM\n{}", g.logs()));
    assert!(
        r.result.as_deref().unwrap_or("").starts_with("success"),
        "{r:?}\n{}",
        g.logs()
    );
    let lease = lease_of(&second).expect("ctl-b answers");
    assert_eq!(lease["role"], "leader", "{lease}");
    assert!(
        !actions_logged(&g, "ctl-b").is_empty(),
        "ctl-b logged its actions\n{}",
        g.logs()
    );

    // The old leader continues: it follows and does nothing.
    g.lab.signal("ctl-a", "CONT");
    let lease = wait_for(Duration::from_secs(20), || {
        lease_of(&first).filter(|l| l["role"] == "follower")
    })
    .unwrap_or_else(|| panic!("ctl-a follows after SIGCONT\n{}", g.logs()));
    assert_eq!(lease["leader"], "ctl-b", "{lease}");
    let log = g.lab.log("ctl-a");
    assert!(
        log.contains("leading host group hg1 (token 1)")
            && log.contains("no longer leading host group hg1 (token 1)"),
        "ctl-a logged the term it lost\n{log}"
    );
    // Several of its scan periods later: still no action of its own, and the VM was
    // acted on once.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        actions_logged(&g, "ctl-a"),
        actions_before,
        "ctl-a acted after losing its lease\n{}",
        g.logs()
    );
    let rows = g.relocations(&hung);
    assert_eq!(
        rows.len(),
        1,
        "the VM was acted on once: {rows:?}\n{}",
        g.logs()
    );
    eprintln!(
        "ctl-a: {} platform actions before SIGSTOP, none after; refused: {}",
        actions_before.len(),
        lease["refused"]
    );
}
