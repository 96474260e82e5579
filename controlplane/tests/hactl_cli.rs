//! The `hactl` binary as an operator runs it: exit codes, error messages, output shapes,
//! against a temporary HSDB and configuration.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hsdb::{
    HelloId, HmRecord, HostId, HostRecord, Hsdb, MacAddr, Options, RelocationKind, Transition,
    Uuid, Version,
};
use tempfile::TempDir;

const HACTL: &str = env!("CARGO_BIN_EXE_hactl");

/// Run `hactl` with `args`, no environment surprises (no RUST_LOG, no NOTIFY_SOCKET).
fn hactl(args: &[&str]) -> Output {
    Command::new(HACTL)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The exit code, with the output in the message when it is not `want`.
#[track_caller]
fn assert_exit(o: &Output, want: i32) {
    assert_eq!(
        o.status.code(),
        Some(want),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// A directory with a configuration file `hactl.toml` holding `extra` after the paths.
struct Setup {
    dir: TempDir,
}

impl Setup {
    fn new(extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("hsdb = \"hsdb.sqlite\"\nadmin_socket = \"hactl.sock\"\n{extra}");
        std::fs::write(dir.path().join("hactl.toml"), text).unwrap();
        Setup { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("hactl.toml")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `hactl --config <file> args…`.
    fn run(&self, args: &[&str]) -> Output {
        let config = self.config();
        let mut all = vec!["--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        hactl(&all)
    }
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn uuid(text: &str) -> Uuid {
    Uuid::parse(text.as_bytes()).unwrap()
}

/// Monitors: two on host-a (the seed's VIOS UUIDs, seed 004 L12281-12298), two on host-b.
const HM_A1: &str = "315ce56b-9ba0-46a1-b4bc-da6108574e7e";
const HM_A2: &str = "5ac3e0dc-13fc-4221-9617-8ef61c4cdd83";
const HM_B1: &str = "4e0f6f60-214b-4d2c-a436-0eac46f7f71f";
const HM_B2: &str = "166c89ef-57d8-4e75-815c-aa5b885560b1";
/// VMs: web1 on host-a (healthy), db1 on host-a (missed by both monitors 42 s ago),
/// app1 on host-b.
const WEB1: &str = "61be20f0-09a8-4753-b5e5-564f8a545ed5";
const DB1: &str = "57275f1e-3680-4eef-945a-fe7670500310";
const APP1: &str = "31603d8c-5a2f-437c-ba33-f25321415cc4";

/// An HSDB at `path` with a host group `hg1` of two hosts, their monitors heart-beating,
/// three VMs (one missed on both monitors of its host for 42 s), two events and one
/// relocation.
fn populate(path: &Path) {
    let now = now_ms();
    let mut db = Hsdb::open(path, &Options::default()).unwrap();
    for (id, name, serial) in [(1, "host-a", "212424W"), (2, "host-b", "21282FW")] {
        db.upsert_host(&HostRecord {
            id: HostId(id),
            name: name.into(),
            machine_type: "8408".into(),
            model: "E8E".into(),
            serial: serial.into(),
            cpu_milli: 16_000,
            memory_mb: 65_536,
            host_group: "hg1".into(),
        })
        .unwrap();
    }
    let hms = [(HM_A1, 1, 1u8), (HM_A2, 1, 2), (HM_B1, 2, 3), (HM_B2, 2, 4)];
    for (hm, host, n) in hms {
        db.register_hm(&HmRecord {
            uuid: uuid(hm),
            host: HostId(host),
            mac: MacAddr([0x02, 0, 0, 0, 0, n]),
            incarnation: HelloId {
                secs: 1_556_303_548,
                nanos: 719_328_000,
                suffix: u32::from(n),
            },
            version: Version { major: 2, minor: 0 },
            at: now - 60_000,
        })
        .unwrap();
    }
    let mut batch = Vec::new();
    for (vm, monitors, n) in [
        (WEB1, [HM_A1, HM_A2], 1u8),
        (DB1, [HM_A1, HM_A2], 2),
        (APP1, [HM_B1, HM_B2], 3),
    ] {
        for (side, hm) in monitors.iter().enumerate() {
            batch.push(Transition::Discovered {
                vm: uuid(vm),
                hm: uuid(hm),
                mac: MacAddr([0x6a, u8::try_from(side).unwrap(), 0, 0, 0, n]),
                ostype: "Linux".into(),
                ver_lower: Version { major: 2, minor: 0 },
                ver_upper: Version { major: 2, minor: 0 },
                at: now - 50_000,
            });
        }
    }
    for hm in [HM_A1, HM_A2] {
        batch.push(Transition::Missing {
            vm: uuid(DB1),
            hm: uuid(hm),
            at: now - 42_000,
        });
    }
    for (hm, _, _) in hms {
        batch.push(Transition::HmHeartbeat {
            hm: uuid(hm),
            at: now,
        });
    }
    for (kind, text) in [
        ("VIOS_HM_RESP_DETECTED", "monitor responds"),
        ("VM_FAILURE_DETECTED", "db1 missed 42 s"),
    ] {
        batch.push(Transition::Event {
            kind: kind.into(),
            vm: None,
            hm: Some(uuid(HM_A1)),
            text: text.into(),
            at: now - 1_000,
        });
    }
    db.apply(&batch).unwrap();
    let id = db
        .relocation_begin(
            &uuid(APP1),
            Some(HostId(2)),
            Some(HostId(1)),
            RelocationKind::Relocate,
            now - 5_000,
        )
        .unwrap();
    db.relocation_phase(id, "restarting", now - 4_000).unwrap();
}

/// A setup whose HSDB is populated.
fn lab() -> Setup {
    let s = Setup::new("");
    populate(&s.path("hsdb.sqlite"));
    s
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn help_lists_the_commands_the_exit_codes_and_examples() {
    let o = hactl(&["--help"]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    for word in [
        "check-config",
        "status",
        "Exit codes:",
        "Examples:",
        "hactl run",
    ] {
        assert!(text.contains(word), "--help lacks {word:?}:\n{text}");
    }
    let o = hactl(&["--version"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).starts_with("hactl "), "{}", stdout(&o));
}

#[test]
fn usage_errors_exit_2() {
    let o = hactl(&[]);
    assert_exit(&o, 2);
    let o = hactl(&["frobnicate"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("frobnicate"), "{}", stderr(&o));
    let s = Setup::new("");
    let o = s.run(&["--xml", "status"]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("--xml is for qq and na"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_config_prints_the_effective_configuration_or_names_the_bad_value() {
    let s = Setup::new("profile = \"fast\"\n");
    let o = s.run(&["check-config"]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("profile = \"fast\""), "{text}");
    let hsdb = s.path("hsdb.sqlite");
    assert!(
        text.contains(&format!("hsdb = \"{}\"", hsdb.display())),
        "{text}"
    );
    assert!(text.contains("absent (the monitors create it"), "{text}");
    assert!(text.contains("free (created at start)"), "{text}");
    populate(&hsdb);
    let o = s.run(&["check-config"]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("readable; hg1: 2 hosts"),
        "{}",
        stdout(&o)
    );

    let s = Setup::new("\n[platform]\ndriver = \"libvirt\"\ntimeout_ms = 50\n");
    let o = s.run(&["check-config"]);
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "config file {} line 6: platform.timeout_ms = 50 is invalid: expected 100..=600000 (ms)",
            s.config().display()
        )),
        "{err}"
    );

    let o = hactl(&["--config", "/nonexistent/hactl.toml", "check-config"]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("/nonexistent/hactl.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn status_without_a_daemon_exits_3() {
    let s = Setup::new("");
    let o = s.run(&["status"]);
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert!(err.contains(arg(&s.path("hactl.sock"))), "{err}");
    assert!(err.contains("hactl run"), "{err}");
}

#[test]
fn query_reads_hosts_monitors_vms_events_and_relocations() {
    let s = lab();
    let o = s.run(&["query", "host"]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert!(text.starts_with("ID  NAME"), "{text}");
    assert!(text.contains("host-a  hg1"), "{text}");
    assert!(text.contains("2/2"), "monitors up: {text}");

    let o = s.run(&["q", "hm", "--json"]);
    assert_exit(&o, 0);
    let hms = json(&o);
    assert_eq!(hms.as_array().unwrap().len(), 4);
    let a1 = hms
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["uuid"] == HM_A1)
        .unwrap();
    assert_eq!(a1["host"], "host-a");
    assert_eq!(a1["state"], "UP");
    assert_eq!(a1["vms_missing"], 1);
    assert_eq!(a1["vms_detected"], 1);

    let o = s.run(&["query", "vm", "--json"]);
    assert_exit(&o, 0);
    let vms = json(&o);
    let db1 = vms
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["uuid"] == DB1)
        .unwrap();
    let missed = db1["missed_hb_sec"].as_u64().unwrap();
    assert!(
        (42..60).contains(&missed),
        "missedHb from the earliest miss: {missed}"
    );
    assert_eq!(db1["host"], "host-a");
    assert_eq!(db1["monitors"].as_array().unwrap().len(), 2);
    let web1 = vms
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["uuid"] == WEB1)
        .unwrap();
    assert!(web1["missed_hb_sec"].is_null());

    // One VM in detail, by UUID.
    let o = s.run(&["query", "vm", DB1]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("on every monitor of its host"), "{text}");
    assert!(text.contains(HM_A2), "{text}");

    let o = s.run(&["query", "event", "--limit", "1"]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert!(
        text.contains("VM_FAILURE_DETECTED"),
        "the newest event: {text}"
    );
    assert!(!text.contains("VIOS_HM_RESP_DETECTED"), "only one: {text}");
    let o = s.run(&["query", "event", "--after", "0", "--json"]);
    assert_exit(&o, 0);
    assert_eq!(json(&o).as_array().unwrap().len(), 2);

    let o = s.run(&["query", "relocation"]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert!(
        text.contains("RELOCATE  host-b  host-a  restarting"),
        "{text}"
    );
    assert!(text.contains("in progress"), "{text}");
    let o = s.run(&["query", "relocation", "1"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("BEGIN"), "{}", stdout(&o));
}

#[test]
fn query_errors_name_what_is_missing() {
    let s = lab();
    let o = s.run(&["query", "vm", "nosuchvm"]);
    assert_exit(&o, 4);
    assert!(stderr(&o).contains("\"nosuchvm\""), "{}", stderr(&o));
    let o = s.run(&["query", "host", "host-z"]);
    assert_exit(&o, 4);
    let o = s.run(&["query", "hm", "not-a-uuid"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("a UUID like"), "{}", stderr(&o));
    let o = s.run(&["query", "event", "--limit", "0"]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("--limit = 0: expected 1..=100000"),
        "{}",
        stderr(&o)
    );
    // An HSDB that does not exist is never created by a read.
    let missing = s.path("typo.sqlite");
    let o = hactl(&["--hsdb", arg(&missing), "query", "host"]);
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("no such file"), "{}", stderr(&o));
    assert!(!missing.exists());
    // --hsdb without a configuration file works.
    let o = hactl(&["--hsdb", arg(&s.path("hsdb.sqlite")), "query", "host"]);
    assert_exit(&o, 0);
}

#[test]
fn modify_then_query_round_trip() {
    let s = lab();
    let o = s.run(&[
        "modify",
        "vm",
        DB1,
        "managed=yes",
        "priority=High",
        "vm_failure_detection_speed=fast",
        "cpu=1.5",
        "memory=2G",
        "name=db1",
    ]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("priority = High"), "{}", stdout(&o));
    // By its new name now.
    let o = s.run(&["query", "vm", "db1", "--json"]);
    assert_exit(&o, 0);
    let v = &json(&o)[0];
    assert_eq!(v["uuid"], DB1);
    assert_eq!(v["managed"], true);
    assert_eq!(v["priority"], "HIGH");
    assert_eq!(v["vm_failure_detection_speed"], "FAST");
    assert_eq!(v["cpu"], "1.5");
    assert_eq!(v["memory_mb"], 2048);

    let o = s.run(&[
        "modify",
        "host_group",
        "hg1",
        "host_failure_detection_time=120",
        "restart_policy=advisory_mode",
    ]);
    assert_exit(&o, 0);
    let o = s.run(&["modify", "system", "vm_failure_detection_speed=slow"]);
    assert_exit(&o, 0);
    let o = s.run(&["query", "params", "--host-group", "hg1", "--json"]);
    assert_exit(&o, 0);
    let params = json(&o);
    let find = |key: &str| {
        params
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["key"] == key)
            .unwrap()
            .clone()
    };
    assert_eq!(find("host_failure_detection_time")["value"], "2m");
    assert_eq!(find("host_failure_detection_time")["from"], "host_group");
    assert_eq!(find("restart_policy")["value"], "advisory");
    assert_eq!(find("vm_failure_detection_speed")["value"], "slow");
    assert_eq!(find("vm_failure_detection_speed")["from"], "system");
    assert_eq!(find("scan_interval")["from"], "default");
    // The VM's own speed wins over the system's: VMFDT = 120 s + 1 x 50 s.
    let o = s.run(&["query", "params", "--vm", "db1", "--json"]);
    assert_exit(&o, 0);
    assert_eq!(json(&o)["vmfdt_ms"], 170_000);
    // KEY=default removes the setting: inherited again.
    let o = s.run(&["modify", "vm", "db1", "vm_failure_detection_speed=default"]);
    assert_exit(&o, 0);
    let o = s.run(&["query", "params", "--vm", "db1", "--json"]);
    assert_eq!(
        json(&o)["vmfdt_ms"],
        270_000,
        "120 s + 3 x 50 s (system: slow)"
    );

    let o = s.run(&[
        "modify",
        "host",
        "host-b",
        "cpu=64",
        "memory=1T",
        "serial=X1",
    ]);
    assert_exit(&o, 0);
    let o = s.run(&["query", "host", "host-b", "--json"]);
    let h = &json(&o)[0];
    assert_eq!(
        (h["cpu"].as_str(), h["memory_mb"].as_u64()),
        (Some("64"), Some(1_048_576))
    );
    assert_eq!(h["serial"], "X1");
}

#[test]
fn modify_refuses_bad_values_with_the_range_and_changes_nothing() {
    let s = lab();
    for (args, code, want) in [
        (
            &[
                "modify",
                "host_group",
                "hg1",
                "host_failure_detection_time=30",
            ][..],
            2,
            "host_failure_detection_time (at host_group hg1) = \"30\": expected 90s..=10m",
        ),
        (
            &["modify", "vm", DB1, "priority=urgent"],
            2,
            "High, Medium or Low",
        ),
        (
            &["modify", "vm", DB1, "color=blue"],
            2,
            "a key of `modify vm`",
        ),
        (
            &["modify", "vm", DB1, "host_failure_detection_time=120"],
            2,
            "settable at: system, host_group",
        ),
        (&["modify", "vm", "nosuch", "managed=yes"], 4, "no VM"),
        (
            &["modify", "host_group", "hg9", "restart_policy=auto"],
            4,
            "no host group",
        ),
        (&["modify", "host", "host-a", "cpu=0"], 2, "cpu = \"0\""),
        (&["modify", "system", "priority"], 2, "key=value"),
    ] {
        let o = s.run(args);
        assert_exit(&o, code);
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    // One bad value among good ones: nothing written.
    let o = s.run(&["modify", "vm", DB1, "priority=High", "managed=maybe"]);
    assert_exit(&o, 2);
    let o = s.run(&["query", "vm", DB1, "--json"]);
    assert_eq!(json(&o)[0]["priority"], "MEDIUM");
    // The fast profile allows what the standard one refuses.
    let s = Setup::new("profile = \"fast\"\n");
    populate(&s.path("hsdb.sqlite"));
    let o = s.run(&[
        "modify",
        "host_group",
        "hg1",
        "host_failure_detection_time=10s",
    ]);
    assert_exit(&o, 0);
}

#[test]
fn add_host_sets_up_a_host_group_in_a_new_hsdb() {
    let s = Setup::new("");
    let o = s.run(&[
        "add",
        "host",
        "host-a",
        "group=hg1",
        "cpu=32",
        "memory=256G",
        "machine_type=8408",
        "model=E8E",
        "serial=212424W",
    ]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("host_id = 1"), "{}", stdout(&o));
    let o = s.run(&[
        "add",
        "host",
        "host-b",
        "group=hg1",
        "cpu=32",
        "memory=256G",
        "id=7",
    ]);
    assert_exit(&o, 0);
    let o = s.run(&["query", "host", "--json"]);
    let hosts = json(&o);
    assert_eq!(hosts[1]["id"], 7);
    assert_eq!(hosts[0]["memory_mb"], 262_144);
    for (args, want) in [
        (
            &["add", "host", "host-a", "group=hg1", "cpu=1", "memory=1"][..],
            "exists",
        ),
        (
            &["add", "host", "host-c", "cpu=1", "memory=1"],
            "group= is required",
        ),
        (
            &[
                "add",
                "host",
                "host-c",
                "group=hg1",
                "cpu=1",
                "memory=1",
                "id=7",
            ],
            "an id no host has",
        ),
        (
            &["add", "host", "bad name", "group=hg1", "cpu=1", "memory=1"],
            "without spaces",
        ),
    ] {
        let o = s.run(args);
        assert_exit(&o, 2);
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    let o = s.run(&[
        "add",
        "vm",
        WEB1,
        "name=web1",
        "managed=yes",
        "priority=Low",
    ]);
    assert_exit(&o, 0);
    let o = s.run(&["query", "vm", "web1", "--json"]);
    assert_exit(&o, 0);
    assert_eq!(json(&o)[0]["state"], "ADDED");
    assert_eq!(json(&o)[0]["priority"], "LOW");
}

/// Wait up to `secs` for `f` to give `Some`.
fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    None
}

#[test]
fn run_answers_status_and_stops_cleanly_on_sigterm() {
    let s = Setup::new("profile = \"fast\"\nlog = \"info\"\n[platform]\ndriver = \"sim\"\n");
    populate(&s.path("hsdb.sqlite"));
    let o = s.run(&["modify", "vm", DB1, "managed=yes", "name=db1"]);
    assert_exit(&o, 0);
    let config = s.config();
    let mut child = Command::new(HACTL)
        .args(["--config", arg(&config), "run"])
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Status once the engine of hg1 has run its first NeedsAttention (scan 3).
    let status = wait_for(60, || {
        let o = s.run(&["status", "--json"]);
        if o.status.code() != Some(0) {
            return None;
        }
        let v = json(&o);
        (v["groups"][0]["last_na"].is_object()).then_some(v)
    });
    let Some(status) = status else {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "no status with a NeedsAttention: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    assert_eq!(status["state"], "running");
    assert_eq!(status["platform"], "sim");
    assert_eq!(status["profile"], "fast");
    assert_eq!(status["groups"][0]["name"], "hg1");
    assert!(status["scans_total"].as_u64().unwrap() >= 3);
    let below = status["below_seed_ranges"].as_array().unwrap();
    assert!(
        below
            .iter()
            .any(|l| l.as_str().unwrap().contains("host_failure_detection_time")),
        "{below:?}"
    );
    // The human form says it too.
    let o = s.run(&["status"]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("below the seed's ranges"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("hg1"), "{}", stdout(&o));
    // db1 missed on both monitors of its host long past VMFDT, not pingable on the sim
    // platform: the engine detects the failure and writes the event the notifier logs.
    let event = wait_for(60, || {
        let o = s.run(&["query", "event", "--json"]);
        json(&o)
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "VM_FAILURE_DETECTED" && e["vm"] == DB1)
            .cloned()
    });
    assert!(event.is_some(), "no VM_FAILURE_DETECTED for db1");
    // A second daemon on the same SQLite HSDB does not start, whatever its admin
    // socket: with SQLite there is one controller. Nothing of it reaches the socket.
    let o = s.run(&["run"]);
    assert_exit(&o, 1);
    assert!(
        stderr(&o).contains("another hactl run controls it (controller "),
        "{}",
        stderr(&o)
    );
    let other = s.path("other.toml");
    std::fs::write(
        &other,
        "hsdb = \"hsdb.sqlite\"\nadmin_socket = \"other.sock\"\n[platform]\ndriver = \"sim\"\n",
    )
    .unwrap();
    let o = hactl(&["--config", arg(&other), "run"]);
    assert_exit(&o, 1);
    assert!(
        stderr(&o).contains("with an SQLite HSDB there is one controller"),
        "{}",
        stderr(&o)
    );
    assert!(!s.path("other.sock").exists());
    let o = s.run(&["status", "--json"]);
    assert_exit(&o, 0);
    assert_eq!(
        json(&o)["pid"],
        child.id(),
        "the first daemon still answers"
    );
    assert_eq!(json(&o)["groups"][0]["lease"]["role"], "sole");
    // Consuming NeedsAttention by hand under a running engine is refused.
    let o = s.run(&["na", "--consume"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));

    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let code = wait_for(30, || child.try_wait().unwrap());
    let Some(code) = code else {
        let _ = child.kill();
        panic!("hactl run did not stop within 30 s of SIGTERM");
    };
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert_eq!(code.code(), Some(0), "{log}");
    assert!(log.contains("stop requested"), "{log}");
    assert!(
        log.contains("VM_FAILURE_DETECTED"),
        "the log notifier: {log}"
    );
    assert!(
        !s.path("hactl.sock").exists(),
        "the admin socket is removed"
    );
    let o = s.run(&["status"]);
    assert_exit(&o, 3);
    // The HSDB is closed cleanly and readable.
    let o = s.run(&["query", "hm"]);
    assert_exit(&o, 0);
}

#[test]
fn run_refuses_a_missing_hsdb() {
    let s = Setup::new("");
    let o = s.run(&["run"]);
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("no such file"), "{}", stderr(&o));
    assert!(!s.path("hsdb.sqlite").exists(), "never created by run");
}

#[test]
fn remove_hm_retires_a_monitor() {
    let s = lab();
    let o = s.run(&["remove", "hm", HM_A2]);
    assert_exit(&o, 0);
    let o = s.run(&["query", "hm", "--json"]);
    let hms = json(&o);
    assert_eq!(hms.as_array().unwrap().len(), 3);
    assert!(hms.as_array().unwrap().iter().all(|h| h["uuid"] != HM_A2));
    let o = s.run(&["query", "vm", DB1, "--json"]);
    assert_eq!(json(&o)[0]["monitors"].as_array().unwrap().len(), 1);
    let o = s.run(&["remove", "hm", HM_A2]);
    assert_exit(&o, 4);
    let o = s.run(&["remove", "hm", "x"]);
    assert_exit(&o, 2);
}

#[test]
fn qq_lists_every_monitor_as_table_json_and_the_seeds_xml() {
    let s = lab();
    let o = s.run(&["qq"]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert!(text.starts_with("HOST    SERIAL   MONITOR"), "{text}");
    assert!(
        text.contains(&format!("host-a  212424W  {HM_A1}  UP")),
        "{text}"
    );
    assert!(
        text.contains("2 hosts, 4 monitors, 0 DOWN or not responsive"),
        "{text}"
    );
    let o = s.run(&["qq", "--json"]);
    assert_exit(&o, 0);
    let qq = json(&o);
    assert_eq!(qq["hosts"].as_array().unwrap().len(), 2);
    assert_eq!(qq["hosts"][0]["host"]["serial"], "212424W");
    assert_eq!(qq["hosts"][0]["stats"][0]["state"], "UP");
    assert_eq!(qq["hosts"][0]["stats"][0]["hmResponsive"], true);
    let o = s.run(&["qq", "--xml"]);
    assert_exit(&o, 0);
    let xml = stdout(&o);
    assert!(xml.contains("<quickQuery>"), "{xml}");
    assert!(
        xml.contains(r#"<viosStatus machine_type="8408" model="E8E" serial="212424W">"#),
        "{xml}"
    );
    assert!(
        xml.contains(&format!(r#"<viosStat uuid="{HM_A1}" state="UP""#)),
        "{xml}"
    );
    let o = s.run(&["qq", "--host-group", "hg9"]);
    assert_exit(&o, 4);
}

#[test]
fn na_looks_without_tagging_consume_tags_and_ack_clears() {
    let s = lab();
    // A look: db1's missed heartbeat (from the earliest miss) and the discoveries.
    let o = s.run(&["na"]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("VMs needing attention:"), "{text}");
    assert!(text.contains(DB1), "{text}");
    assert!(
        text.contains("would be tagged by the next NeedsAttention"),
        "{text}"
    );
    assert!(!text.contains("hsTag"), "a look carries no tag: {text}");
    let o = s.run(&["na", "--xml"]);
    assert_exit(&o, 0);
    let xml = stdout(&o);
    assert!(xml.contains("<needsAtt>"), "untagged: {xml}");
    assert!(xml.contains(&format!(r#"<vmStat uuid="{DB1}">"#)), "{xml}");
    assert!(xml.contains("missedHb="), "{xml}");
    // Looking twice changes nothing: the real request still finds the items untagged.
    let o = s.run(&["na", "--consume", "--json"]);
    assert_exit(&o, 0);
    let reply = json(&o);
    let tag = reply["hsTag"].as_str().unwrap().to_owned();
    assert!(!reply["entries"].as_array().unwrap().is_empty());
    let o = s.run(&["na", "--consume"]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    // Not acknowledged: reported again under a new tag.
    assert!(text.contains("hsTag "), "{text}");
    assert!(!text.contains(&format!("hsTag {tag}\n")), "{text}");
    let new_tag = text
        .lines()
        .find_map(|l| l.strip_prefix("hsTag "))
        .unwrap()
        .to_owned();
    let o = s.run(&["ack", &new_tag]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("VM items"), "{}", stdout(&o));
    // Acknowledged: the discoveries are gone; db1's miss is never acknowledged.
    let o = s.run(&["na", "--json"]);
    let again = json(&o);
    assert!(again["hsTag"].is_null());
    let text = stdout(&o);
    assert!(text.contains(DB1), "the miss stays: {text}");
    assert!(
        !text.contains(WEB1),
        "web1's discovery was acknowledged: {text}"
    );
    // A repeated acknowledgement clears nothing and is not an error.
    let o = s.run(&["ack", &new_tag]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("nothing to clear"), "{}", stdout(&o));
    let o = s.run(&["ack", "12x"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("signed 64-bit"), "{}", stderr(&o));
    let o = s.run(&["na", "--max-items", "0"]);
    assert_exit(&o, 2);
}

/// `hactl query app`: the applications the agents reported, as a table (every VM, or
/// one), as JSON, and in `query vm VM`; an unknown VM is exit 4.
#[test]
fn query_app_shows_the_reported_applications() {
    use hvha_appreport::{AppReport, AppState, AppStatus, MonitorKind};

    let s = lab();
    let o = s.run(&["query", "app"]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).starts_with("no application reported yet"),
        "{}",
        stdout(&o)
    );
    {
        let mut db = Hsdb::open(s.path("hsdb.sqlite"), &Options::default()).unwrap();
        for (vm, name) in [(WEB1, "web1"), (DB1, "db1"), (APP1, "app1")] {
            let settings = hsdb::VmSettings {
                name: Some(name.into()),
                ..Default::default()
            };
            db.set_vm(&uuid(vm), &settings, now_ms()).unwrap();
        }
        let mut db_app = AppStatus::new("postgres", AppState::Failure);
        db_app.critical = true;
        db_app.restarts = 3;
        db_app.monitor = MonitorKind::Tcp;
        db_app.since_ms = 1_764_536_400_000;
        db_app.detail = "connect 127.0.0.1:5432: refused".into();
        let mut web = AppStatus::new("nginx", AppState::Normal);
        web.monitor = MonitorKind::Http;
        let mut batch = AppStatus::new("batch", AppState::Failing);
        batch.monitored = false;
        let report = AppReport {
            inc: 0x5eed,
            generation: 7,
            apps: vec![db_app, web, batch],
        };
        // Through the text the agent sends, as the control plane stores it.
        let parsed = AppReport::parse(report.encode().as_bytes()).unwrap();
        db.store_app_report(&uuid(WEB1), &parsed, now_ms()).unwrap();
        let other = AppReport {
            inc: 1,
            generation: 1,
            apps: vec![AppStatus::new("cache", AppState::ToStart)],
        };
        db.store_app_report(&uuid(APP1), &other, now_ms()).unwrap();
    }
    let o = s.run(&["query", "app"]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[0].starts_with(
            "NAME      VM    STATE     COLOUR  CRITICAL  RESTARTS  MONITORED  MONITOR  SINCE"
        ),
        "{text}"
    );
    // By VM name (app1 before web1), then application name; every column.
    let cells = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        cells(lines[1]),
        [
            "cache", "app1", "TO_START", "YELLOW", "no", "0/3", "yes", "script", "-", "-"
        ]
    );
    assert_eq!(
        cells(lines[2])[..8],
        [
            "batch", "web1", "FAILING", "YELLOW", "no", "0/3", "no", "script"
        ]
    );
    assert_eq!(
        cells(lines[3])[..8],
        [
            "nginx", "web1", "NORMAL", "GREEN", "no", "0/3", "yes", "http"
        ]
    );
    assert!(
        lines[4].starts_with("postgres  web1  FAILURE   RED     yes       3/3       yes        tcp      2025-11-30 21:00:00"),
        "{text}"
    );
    assert!(
        lines[4].ends_with("connect 127.0.0.1:5432: refused"),
        "{text}"
    );

    // One VM, by name; JSON with the same facts.
    let o = s.run(&["query", "app", "web1", "--json"]);
    assert_exit(&o, 0);
    let apps = json(&o);
    let apps = apps.as_array().unwrap();
    assert_eq!(apps.len(), 3);
    let pg = apps.iter().find(|a| a["name"] == "postgres").unwrap();
    assert_eq!(pg["vm"], WEB1);
    assert_eq!(pg["vm_name"], "web1");
    assert_eq!(pg["state"], "FAILURE");
    assert_eq!(pg["colour"], "RED");
    assert_eq!(pg["critical"], true);
    assert_eq!(pg["restarts"], 3);
    assert_eq!(pg["max_restart"], 3);
    assert_eq!(pg["monitored"], true);
    assert_eq!(pg["monitor"], "tcp");
    assert_eq!(pg["since_ms"], 1_764_536_400_000_i64);
    assert_eq!(pg["report_inc"], "5eed");
    assert_eq!(pg["report_gen"], 7);
    let o = s.run(&["query", "app", APP1]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).lines().count(), 2, "{}", stdout(&o));
    let o = s.run(&["query", "app", DB1]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).starts_with("VM db1 has reported no application"),
        "{}",
        stdout(&o)
    );

    // `query vm VM` lists them too.
    let o = s.run(&["query", "vm", "web1"]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("Applications                3\n"), "{text}");
    assert!(text.contains("\nNAME      STATE    COLOUR"), "{text}");
    assert!(text.contains("postgres  FAILURE  RED     yes"), "{text}");
    let o = s.run(&["query", "vm", "db1"]);
    assert!(stdout(&o).contains("Applications                none reported"));

    // An unknown VM: exit 4, named.
    let o = s.run(&["query", "app", "nosuchvm"]);
    assert_exit(&o, 4);
    assert!(stderr(&o).contains("\"nosuchvm\""), "{}", stderr(&o));
}
