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
