//! Commands from the control plane to a monitor through the HSDB (issue 8, item 1):
//! STOP_MONITORING, START_MONITORING and FORGET_VM enqueued in the HSDB, picked up by a
//! real `hmd` and acted on, with real agents (`vmmd`) paused with SIGSTOP.
//!
//! One monitor, two agents, each on its own veth pair (so each has its own interface on
//! the monitor, and `hmd ctl stats` counts each one's peers):
//!
//! 1. STOP_MONITORING of VM 1, then VM 1 hangs: never MISSING, however long; its row
//!    is STOPPED in the HSDB.
//! 2. The agent resumes; START_MONITORING: heartbeats again (DETECTED); it hangs again:
//!    MISSING within `vm_miss_after`.
//! 3. VM 2 moves away: it falls silent here and a monitor of another host discovers it.
//!    The store drops this monitor's row for it and queues FORGET_VM; the monitor
//!    removes its peer and stops watching it. Back on this segment, it pairs again.
//! 4. Commands enqueued while the monitor is stopped are carried out when it starts, one
//!    about a VM it never knew included.
//! 5. A stop outlives a restart of the monitor: VM 1 stopped, `hmd` restarted, the VM
//!    re-pairs and then hangs: never MISSING (the new run read the STOPPED row). A START
//!    then watches it again: MISSING within `vm_miss_after` while it hangs.
//!
//! Every command is marked done within the stated bound: `command_poll_ms` +
//! `flush_ms` + two short HSDB transactions (docs/operations.md), measured here from the
//! enqueue to the done time the monitor wrote.

use std::path::Path;
use std::time::Duration;

use hsdb::{
    CommandKind, CommandRow, HeartbeatState, HelloId, HmRecord, HostId, HostRecord, Hsdb, MacAddr,
    Options, Transition, VmHmRow,
};
use hvha_e2e::{
    HM_UUID, Lab, hmd_ctl, hmd_iface_stats, hmd_stats, hmd_toml, unix_ms, uuid, wait_for,
};

const VM: [&str; 2] = [
    "61be20f0-09a8-4753-b5e5-564f8a545e01",
    "61be20f0-09a8-4753-b5e5-564f8a545e02",
];
/// A VM no agent of this test claims.
const STRANGER: &str = "61be20f0-09a8-4753-b5e5-564f8a545eff";
/// A monitor of another host, where VM 2 moves.
const OTHER_HM: &str = "5c3196a3-c41f-4b5c-9861-dee6077081c9";
const HELLO_MS: i64 = 500;
const MISS_AFTER_MS: i64 = 1000;
const POLL_MS: i64 = 200;
const FLUSH_MS: i64 = 10;
/// The bound the monitor promises, and the slack a loaded 2-core machine needs on top
/// (two short SQLite transactions, a busy scheduler).
const BOUND_MS: i64 = POLL_MS + FLUSH_MS;
const SLACK_MS: i64 = 1000;

struct Rig {
    lab: Lab,
    mon_ns: String,
    hsdb: std::path::PathBuf,
    socket: std::path::PathBuf,
    config: String,
}

impl Rig {
    fn new() -> Option<Rig> {
        let mut lab = Lab::new("hsdbcmd")?;
        let mon_ns = lab.netns("mon");
        let mut ifaces = Vec::new();
        for i in 1..=VM.len() {
            let ns = lab.netns(&format!("a{i}"));
            let iface = format!("m{i}");
            lab.link(&ns, "ha1", &mon_ns, &iface);
            ifaces.push(iface);
        }
        let hsdb = lab.dir.join("hsdb.sqlite");
        let socket = lab.dir.join("hmd.sock");
        let names: Vec<&str> = ifaces.iter().map(String::as_str).collect();
        let config = lab
            .write(
                "hmd.toml",
                &hmd_toml(
                    HM_UUID,
                    &hsdb,
                    &socket,
                    &names,
                    &format!(
                        "hello_period_ms = {HELLO_MS}\nhb_period_ms = 200\n\
                         vm_miss_after_ms = {MISS_AFTER_MS}\nhm_heartbeat_period_ms = 1000\n\
                         flush_ms = {FLUSH_MS}\ncommand_poll_ms = {POLL_MS}\nlog = \"info\"\n"
                    ),
                ),
            )
            .display()
            .to_string();
        let mut rig = Rig {
            lab,
            mon_ns,
            hsdb,
            socket,
            config,
        };
        rig.start_hmd("hmd1");
        for (i, vm) in VM.iter().enumerate() {
            let n = i + 1;
            let config = rig
                .lab
                .write(
                    &format!("vmmd{n}.toml"),
                    &format!(
                        "vm_uuid = \"{vm}\"\ninterfaces = [\"ha1\"]\nrescan_ms = 1000\nlog = \"info\"\n{}",
                        hvha_e2e::vmmd_ame_section(&rig.lab.dir, &format!("vmmd{n}"))
                    ),
                )
                .display()
                .to_string();
            let ns = rig.mon_ns.replace("-mon", &format!("-a{n}"));
            rig.lab
                .spawn(&format!("vmmd{n}"), &ns, "vmmd", &["--config", &config]);
        }
        Some(rig)
    }

    fn start_hmd(&mut self, label: &str) {
        let (ns, config) = (self.mon_ns.clone(), self.config.clone());
        self.lab.spawn(label, &ns, "hmd", &["--config", &config]);
    }

    fn db(&self) -> Hsdb {
        wait_for(Duration::from_secs(10), || {
            Hsdb::open(&self.hsdb, &Options::default()).ok()
        })
        .expect("the HSDB opens")
    }

    fn row(&self, vm: usize) -> Option<VmHmRow> {
        let db = Hsdb::open(&self.hsdb, &Options::default()).ok()?;
        db.vm_hm(&uuid(VM[vm]), &uuid(HM_UUID)).ok()?
    }

    fn state(&self, vm: usize) -> Option<HeartbeatState> {
        self.row(vm).map(|r| r.last_state)
    }

    fn wait_state(&self, vm: usize, want: HeartbeatState, within: Duration) -> bool {
        wait_for(within, || (self.state(vm) == Some(want)).then_some(())).is_some()
    }

    fn enqueue(&self, kind: CommandKind, vm: &str) -> i64 {
        self.db()
            .enqueue_command(&uuid(HM_UUID), kind, &uuid(vm), unix_ms())
            .expect("enqueue a command")
    }

    /// The command once the monitor marked it done (20 s at most).
    fn wait_done(&self, id: i64, label: &str) -> CommandRow {
        wait_for(Duration::from_secs(20), || {
            command(&self.hsdb, id).filter(|c| c.done_ms.is_some())
        })
        .unwrap_or_else(|| {
            panic!(
                "command {id} never done: {:?}\n{}",
                command(&self.hsdb, id),
                self.logs(label)
            )
        })
    }

    /// Wait until command `id` is done; assert it was within the bound and its result
    /// starts with `code`.
    fn assert_done(&self, id: i64, code: &str, label: &str) -> CommandRow {
        let c = self.wait_done(id, label);
        let took = c.done_ms.unwrap_or(i64::MAX) - c.created_ms;
        assert!(
            took <= BOUND_MS + SLACK_MS,
            "{} done {took} ms after it was enqueued; bound {BOUND_MS} ms + {SLACK_MS} ms slack\n{}",
            c.kind,
            self.logs(label)
        );
        eprintln!(
            "{} of {}: done {took} ms after it was enqueued",
            c.kind, c.vm
        );
        let result = c.result.clone().unwrap_or_default();
        assert!(
            result.starts_with(&format!("{code}: ")),
            "{} of {}: result {result:?}, expected {code}\n{}",
            c.kind,
            c.vm,
            self.logs(label)
        );
        c
    }

    fn logs(&self, hmd: &str) -> String {
        [hmd, "vmmd1", "vmmd2"]
            .iter()
            .map(|l| format!("--- {l}\n{}", self.lab.log(l)))
            .collect()
    }

    /// A daemon-wide counter of `hmd ctl stats`.
    fn stat(&self, name: &str) -> Option<u64> {
        hmd_stats(&self.socket).ok()?.get(name).copied()
    }

    /// VM `vm` discovered by a monitor of host 2, as if it had moved there; the id of
    /// the FORGET_VM the store queues for this monitor.
    fn move_to_other_host(&self, vm: usize) -> i64 {
        let mut db = self.db();
        let last = db
            .enqueue_command(
                &uuid(HM_UUID),
                CommandKind::ForgetVm,
                &uuid(STRANGER),
                unix_ms(),
            )
            .expect("a marker command");
        db.upsert_host(&HostRecord {
            id: HostId(2),
            name: "host2".into(),
            machine_type: String::new(),
            model: String::new(),
            serial: String::new(),
            cpu_milli: 0,
            memory_mb: 0,
            host_group: String::new(),
        })
        .expect("host 2");
        let at = unix_ms();
        db.register_hm(&HmRecord {
            uuid: uuid(OTHER_HM),
            host: HostId(2),
            mac: MacAddr([2, 0, 0, 0, 0, 9]),
            incarnation: HelloId {
                secs: 1,
                nanos: 0,
                suffix: 1,
            },
            version: dataplane::wire::VERSION,
            at,
        })
        .expect("the other host's monitor");
        db.apply(&[Transition::Discovered {
            vm: uuid(VM[vm]),
            hm: uuid(OTHER_HM),
            mac: MacAddr([2, 0, 0, 0, 0, 2]),
            ostype: "Linux".into(),
            ver_lower: dataplane::wire::VERSION,
            ver_upper: dataplane::wire::VERSION,
            at,
        }])
        .expect("discovered on host 2");
        (last + 1..last + 10)
            .find(|&id| {
                db.command(id).ok().flatten().is_some_and(|c| {
                    c.kind == CommandKind::ForgetVm && c.vm == uuid(VM[vm]) && c.hm == uuid(HM_UUID)
                })
            })
            .expect("the store queued FORGET_VM for this monitor")
    }

    /// Peers of interface `m{vm + 1}` (that VM's path) in `hmd ctl stats`.
    fn peers(&self, vm: usize) -> Option<u64> {
        hmd_iface_stats(&self.socket, &format!("m{}", vm + 1))
            .ok()?
            .get("peers")
            .copied()
    }
}

/// Command `id` as stored, if the HSDB can be read.
fn command(path: &Path, id: i64) -> Option<CommandRow> {
    let db = Hsdb::open(path, &Options::default()).ok()?;
    db.command(id).ok()?
}

/// Sleep long enough for any miss to have been declared: three times `vm_miss_after`.
fn well_beyond_the_miss_time() {
    std::thread::sleep(Duration::from_millis(
        u64::try_from(3 * MISS_AFTER_MS).unwrap_or(3000),
    ));
}

#[test]
fn stop_start_and_forget_reach_the_monitor_through_the_hsdb() {
    let Some(mut rig) = Rig::new() else {
        return;
    };
    for vm in 0..VM.len() {
        assert!(
            rig.wait_state(vm, HeartbeatState::Detected, Duration::from_secs(20)),
            "VM {} DETECTED\n{}",
            vm + 1,
            rig.logs("hmd1")
        );
    }

    // 1. STOP_MONITORING, then the VM hangs: it is down on purpose, never MISSING.
    assert_eq!(rig.stat("vms_watched"), Some(2));
    let stop = rig.enqueue(CommandKind::StopMonitoring, VM[0]);
    rig.assert_done(stop, "STOPPED", "hmd1");
    assert_eq!(rig.stat("vms_watched"), Some(1), "VM 1 no longer watched");
    assert_eq!(rig.stat("vms_stopped"), Some(1));
    rig.lab.signal("vmmd1", "STOP");
    well_beyond_the_miss_time();
    assert_eq!(
        rig.state(0),
        Some(HeartbeatState::Stopped),
        "a stopped VM is never MISSING: its row is STOPPED\n{}",
        rig.logs("hmd1")
    );
    assert_eq!(
        rig.state(1),
        Some(HeartbeatState::Detected),
        "VM 2 untouched"
    );
    // A second STOP is harmless.
    let again = rig.enqueue(CommandKind::StopMonitoring, VM[0]);
    rig.assert_done(again, "ALREADY_STOPPED", "hmd1");

    // 2. The agent resumes (STOP_HB told it not to heartbeat); START_MONITORING: watched
    //    again, heartbeats again, and a new hang is MISSING within vm_miss_after.
    rig.lab.signal("vmmd1", "CONT");
    let start = rig.enqueue(CommandKind::StartMonitoring, VM[0]);
    rig.assert_done(start, "STARTED", "hmd1");
    assert_eq!(rig.stat("vms_watched"), Some(2), "VM 1 watched again");
    assert_eq!(rig.stat("vms_stopped"), Some(0));
    // Heartbeating again: DETECTED in the monitor's table (and never MISSING).
    let detected = wait_for(Duration::from_secs(5), || {
        let vms = hmd_ctl(&rig.socket, "vms").ok()?;
        vms.lines()
            .any(|l| l.starts_with(VM[0]) && l.contains(" DETECTED "))
            .then_some(())
    });
    assert!(
        detected.is_some(),
        "VM 1 heartbeats after START_MONITORING: {:?}\n{}",
        hmd_ctl(&rig.socket, "vms"),
        rig.logs("hmd1")
    );
    rig.lab.signal("vmmd1", "STOP");
    let hung = unix_ms();
    assert!(
        rig.wait_state(0, HeartbeatState::Missing, Duration::from_secs(10)),
        "VM 1 MISSING once watched again\n{}",
        rig.logs("hmd1")
    );
    let missed = rig.row(0).and_then(|r| r.hb_missed_ms).unwrap_or(i64::MAX);
    assert!(
        missed - hung <= MISS_AFTER_MS + SLACK_MS,
        "MISSING {} ms after the hang\n{}",
        missed - hung,
        rig.logs("hmd1")
    );
    rig.lab.signal("vmmd1", "CONT");
    assert!(
        rig.wait_state(0, HeartbeatState::Detected, Duration::from_secs(10)),
        "VM 1 back\n{}",
        rig.logs("hmd1")
    );

    // 3. VM 2 moves away: silent here, discovered by a monitor of host 2. The store drops
    //    this monitor's row and queues FORGET_VM; the monitor drops the peer (its place
    //    in the peer table) and no longer watches the VM.
    assert_eq!(rig.peers(1), Some(1), "{:?}", hmd_ctl(&rig.socket, "stats"));
    rig.lab.signal("vmmd2", "STOP");
    let forget = rig.move_to_other_host(1);
    assert_eq!(rig.row(1), None, "the store dropped this monitor's row");
    rig.assert_done(forget, "FORGOTTEN", "hmd1");
    assert_eq!(rig.peers(1), Some(0), "its peer is gone");
    assert_eq!(rig.stat("vms_watched"), Some(1), "VM 2 no longer watched");
    well_beyond_the_miss_time();
    assert_eq!(rig.row(1), None, "nothing written about it since");
    // Still here after all: it talks to the monitor again and is discovered again (and
    // moves back to this host).
    rig.lab.signal("vmmd2", "CONT");
    assert!(
        rig.wait_state(1, HeartbeatState::Detected, Duration::from_secs(10)),
        "a forgotten VM heard again is discovered again\n{}",
        rig.logs("hmd1")
    );
    assert_eq!(rig.peers(1), Some(1));

    // The log names each command, its VM and its outcome; status counts them (the
    // marker FORGET_VM of a stranger included).
    let log = rig.lab.log("hmd1");
    for (kind, vm, outcome) in [
        ("STOP_MONITORING", VM[0], "STOPPED"),
        ("START_MONITORING", VM[0], "STARTED"),
        ("FORGET_VM", VM[1], "FORGOTTEN"),
        ("FORGET_VM", STRANGER, "UNKNOWN_VM"),
    ] {
        assert!(
            log.lines().any(|l| l.contains(" INFO ")
                && l.contains(&format!("command={kind}"))
                && l.contains(&format!("vm={vm}"))
                && l.contains(&format!("outcome={outcome}"))),
            "an info line for {kind} of {vm}\n{log}"
        );
    }
    let status = hmd_ctl(&rig.socket, "status").expect("status");
    assert!(
        status.contains(
            "commands     5 handled: 2 STOP_MONITORING, 1 START_MONITORING, 2 FORGET_VM (1 about VMs not known here)"
        ),
        "{status}"
    );

    // 4. Commands enqueued while the monitor is down are carried out when it starts,
    //    one about a VM it never knew included.
    rig.lab.stop_cleanly("hmd1");
    let stop = rig.enqueue(CommandKind::StopMonitoring, VM[0]);
    let stranger = rig.enqueue(CommandKind::ForgetVm, STRANGER);
    let started = unix_ms();
    rig.start_hmd("hmd2");
    for (id, code) in [(stop, "STOPPED"), (stranger, "UNKNOWN_VM")] {
        let c = rig.wait_done(id, "hmd2");
        assert!(
            c.result
                .as_deref()
                .is_some_and(|r| r.starts_with(&format!("{code}: "))),
            "{code} expected: {c:?}\n{}",
            rig.logs("hmd2")
        );
        // Read at start: within the bound of the start (plus the start itself).
        assert!(
            c.done_ms.unwrap_or(i64::MAX) - started <= BOUND_MS + SLACK_MS + 2000,
            "picked up at start: {c:?}"
        );
    }
    // VM 1 was DETECTED by the previous run; stopped, it is not owed a re-pairing.
    rig.lab.signal("vmmd1", "STOP");
    std::thread::sleep(Duration::from_millis(
        u64::try_from(HELLO_MS + 2 * MISS_AFTER_MS).unwrap_or(3000),
    ));
    assert_eq!(
        rig.state(0),
        Some(HeartbeatState::Stopped),
        "stopped at start, never MISSING\n{}",
        rig.logs("hmd2")
    );
    let status = hmd_ctl(&rig.socket, "status").expect("status");
    assert!(
        status.contains("commands     2 handled: 1 STOP_MONITORING, 0 START_MONITORING, 1 FORGET_VM (1 about VMs not known here)"),
        "{status}"
    );

    // 5. The stop outlives a restart. VM 1 resumes (its agent re-pairs, not watched),
    //    the monitor restarts, the agent re-pairs with the new run and hangs: the new
    //    run read the STOPPED row, so the VM is neither re-watched nor MISSING.
    rig.lab.signal("vmmd1", "CONT");
    rig.lab.stop_cleanly("hmd2");
    assert_eq!(rig.state(0), Some(HeartbeatState::Stopped));
    rig.start_hmd("hmd3");
    let loaded = wait_for(Duration::from_secs(20), || {
        (rig.stat("vms_stopped") == Some(1)).then_some(())
    });
    assert!(
        loaded.is_some(),
        "the new run knows VM 1 is stopped: {:?}\n{}",
        hmd_ctl(&rig.socket, "status"),
        rig.logs("hmd3")
    );
    let repaired = wait_for(Duration::from_secs(20), || {
        let status = hmd_ctl(&rig.socket, "status").ok()?;
        status.contains("interface    m1 1 sessions").then_some(())
    });
    assert!(
        repaired.is_some(),
        "VM 1's agent re-pairs with the new run: {:?}\n{}",
        hmd_ctl(&rig.socket, "status"),
        rig.logs("hmd3")
    );
    // Paired, but not watched: `hmd ctl vms` lists the heartbeat table.
    let vms = hmd_ctl(&rig.socket, "vms").expect("vms");
    assert!(
        !vms.lines().any(|l| l.starts_with(VM[0])),
        "VM 1 is stopped, not watched: {vms}"
    );
    rig.lab.signal("vmmd1", "STOP");
    std::thread::sleep(Duration::from_millis(
        u64::try_from(HELLO_MS + 3 * MISS_AFTER_MS).unwrap_or(4000),
    ));
    assert_eq!(
        rig.state(0),
        Some(HeartbeatState::Stopped),
        "stopped before the restart, paused after it: never MISSING\n{}",
        rig.logs("hmd3")
    );
    // START: watched again from the command on; the VM still hangs, so MISSING within
    // vm_miss_after of the start.
    let start = rig.enqueue(CommandKind::StartMonitoring, VM[0]);
    let c = rig.assert_done(start, "STARTED", "hmd3");
    assert!(
        rig.wait_state(0, HeartbeatState::Missing, Duration::from_secs(10)),
        "VM 1 MISSING once started again while it hangs\n{}",
        rig.logs("hmd3")
    );
    let missed = rig.row(0).and_then(|r| r.hb_missed_ms).unwrap_or(i64::MAX);
    let done = c.done_ms.unwrap_or(i64::MAX);
    assert!(
        missed >= done && missed - done <= MISS_AFTER_MS + SLACK_MS,
        "MISSING {} ms after the start was carried out\n{}",
        missed.saturating_sub(done),
        rig.logs("hmd3")
    );
    assert_eq!(rig.stat("vms_stopped"), Some(0));
    rig.lab.signal("vmmd1", "CONT");
    assert!(
        rig.wait_state(0, HeartbeatState::Detected, Duration::from_secs(10)),
        "VM 1 back\n{}",
        rig.logs("hmd3")
    );
}
