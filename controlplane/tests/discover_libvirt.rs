//! Discovery through the real `hactl` binary on libvirt's test hypervisor (docs/operators.md
//! "Discovery"): `hactl discover` finds new VMs, a moved or resized one, a vanished one,
//! changes nothing the second time, refuses what it cannot do with the documented exit
//! codes; virsh output that does not parse writes nothing; `hactl run` carries out its
//! schedule and a requested activity, and fails an activity its dead runner left.
//!
//! Without `virsh` the tests print `SKIPPED <test>: virsh not found` and pass, except under
//! `CI=true`, where they fail (CI installs libvirt-clients, .ci/run).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use controlplane::platform::libvirt::program_exists;
use hsdb::{ActivityKind, ActivityState, HostId, HostRecord, Hsdb, Options, Uuid};

const HACTL: &str = env!("CARGO_BIN_EXE_hactl");
const VM1: &str = "6f1c2a3e-0b7d-4c8e-9a51-000000000001";
const VM2: &str = "6f1c2a3e-0b7d-4c8e-9a51-000000000002";
const VM3: &str = "6f1c2a3e-0b7d-4c8e-9a51-000000000003";

fn uuid(text: &str) -> Uuid {
    Uuid::parse(text.as_bytes()).unwrap()
}

/// Whether virsh is here; else SKIPPED (a failure under CI=true).
fn have_virsh(test: &str) -> bool {
    if program_exists(Path::new("virsh")) {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: virsh not found, and CI=true requires it (apt-get install libvirt-clients)"
    );
    eprintln!("SKIPPED {test}: virsh not found");
    false
}

/// A domain: `state` 1 running, 5 shut off.
fn domain(name: &str, uuid: &str, vcpus: u32, mib: u32, state: u32) -> String {
    format!(
        r#"  <domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0">
    <name>{name}</name>
    <uuid>{uuid}</uuid>
    <memory unit="MiB">{mib}</memory>
    <vcpu>{vcpus}</vcpu>
    <os><type>hvm</type></os>
    <test:runstate>{state}</test:runstate>
  </domain>
"#
    )
}

/// Write host `name`'s file (8 CPUs, 32 GiB) with `domains`; its test:/// URI.
fn host_file(dir: &Path, name: &str, domains: &[String]) -> String {
    let path = dir.join(format!("{name}.xml"));
    let xml = format!(
        "<node>\n  <cpu><nodes>1</nodes><sockets>1</sockets><cores>8</cores><threads>1</threads><mhz>2000</mhz></cpu>\n  <memory>{}</memory>\n{}</node>\n",
        32u64 * 1024 * 1024,
        domains.concat()
    );
    std::fs::write(&path, xml).unwrap();
    format!("test://{}", path.display())
}

struct Lab {
    dir: tempfile::TempDir,
    config: PathBuf,
    hsdb: PathBuf,
}

/// HSDB with host-a, host-b of hg1 (capacity 0: to be discovered); host-a defines vm1
/// (running, 2 vCPUs, 2 GiB) and vm2 (shut off), host-b defines vm3.
fn lab(extra_config: &str, virsh: Option<&Path>) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let hsdb = dir.path().join("hsdb.sqlite");
    let mut db = Hsdb::open(&hsdb, &Options::default()).unwrap();
    for (id, name) in [(1, "host-a"), (2, "host-b")] {
        db.upsert_host(&HostRecord {
            id: HostId(id),
            name: name.into(),
            machine_type: "8408".into(),
            model: "E8E".into(),
            serial: format!("S{id}"),
            cpu_milli: 0,
            memory_mb: 0,
            host_group: "hg1".into(),
        })
        .unwrap();
    }
    drop(db);
    let a = host_file(
        dir.path(),
        "host-a",
        &[
            domain("vm1", VM1, 2, 2048, 1),
            domain("vm two", VM2, 1, 1024, 5),
        ],
    );
    let b = host_file(dir.path(), "host-b", &[domain("vm3", VM3, 1, 512, 1)]);
    let config = dir.path().join("hactl.toml");
    let virsh = virsh.map_or(String::new(), |v| format!("virsh = \"{}\"\n", v.display()));
    std::fs::write(
        &config,
        format!(
            "hsdb = \"hsdb.sqlite\"\nadmin_socket = \"hactl.sock\"\nprofile = \"fast\"\n\
             {extra_config}\n\
             [platform]\ndriver = \"libvirt\"\ntimeout_ms = 10000\n{virsh}\
             [platform.hosts]\nhost-a = \"{a}\"\nhost-b = \"{b}\"\n"
        ),
    )
    .unwrap();
    Lab { dir, config, hsdb }
}

fn hactl(config: &Path, args: &[&str]) -> Output {
    Command::new(HACTL)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env("USER", "ann")
        .output()
        .unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn changes(v: &serde_json::Value) -> Vec<(String, String)> {
    v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap().to_owned(),
                c["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn open(path: &Path) -> Hsdb {
    Hsdb::open(path, &Options::default()).unwrap()
}

fn event_kinds(db: &Hsdb) -> Vec<String> {
    db.events_after(0, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[test]
fn discover_through_virsh() {
    if !have_virsh("discover_through_virsh") {
        return;
    }
    let l = lab("", None);
    let o = hactl(&l.config, &["discover", "hg1", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v = json(&o);
    assert_eq!(
        changes(&v),
        [
            ("host_changed".into(), "host-a".into()),
            ("host_changed".into(), "host-b".into()),
            ("new_vm".into(), "vm1".into()),
            ("new_vm".into(), "vm two".into()),
            ("new_vm".into(), "vm3".into()),
        ],
        "{v}"
    );
    assert_eq!(v["hosts_answered"], serde_json::json!(["host-a", "host-b"]));
    let db = open(&l.hsdb);
    let vm1 = db.vm(&uuid(VM1)).unwrap().unwrap();
    assert_eq!(
        (
            vm1.name.as_str(),
            vm1.managed,
            vm1.current_host,
            vm1.cpu_milli,
            vm1.memory_mb
        ),
        ("vm1", false, Some(HostId(1)), 2_000, 2_048)
    );
    assert_eq!(
        db.vm_discovery(&uuid(VM2)).unwrap().unwrap().power,
        "Not Activated"
    );
    let host_a = db.host(HostId(1)).unwrap().unwrap();
    assert_eq!((host_a.cpu_milli, host_a.memory_mb), (8_000, 32_768));
    assert_eq!(event_kinds(&db), ["VM_DISCOVERED"; 3]);
    let acts = {
        let mut db = open(&l.hsdb);
        db.activities(Some("hg1"), 10).unwrap()
    };
    assert_eq!(acts.len(), 1);
    assert_eq!(
        (acts[0].kind, acts[0].state, acts[0].requested_by.as_str()),
        (ActivityKind::QuickDiscovery, ActivityState::Done, "cli:ann")
    );
    assert_eq!(v["activity"], acts[0].id);
    assert!(acts[0].summary.as_deref().unwrap().contains("3 new"));
    drop(db);

    // Idempotent: the second discovery changes nothing.
    let o = hactl(&l.config, &["discover", "hg1"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("No change."), "{text}");

    // The platform changes: vm1 grows to 4 vCPUs, vm3 goes away, vm two moves to host-b.
    host_file(l.dir.path(), "host-a", &[domain("vm1", VM1, 4, 2048, 1)]);
    host_file(l.dir.path(), "host-b", &[domain("vm two", VM2, 1, 1024, 1)]);
    // Quick: the inventory (vm1's size is not read again).
    let v = json(&hactl(&l.config, &["discover", "hg1", "--json"]));
    assert_eq!(
        changes(&v),
        [
            ("vm_changed".into(), "vm two".into()),
            ("vanished".into(), "vm3".into())
        ],
        "{v}"
    );
    // Deep: every VM's details, then the verification.
    let o = hactl(&l.config, &["discover", "hg1", "--deep", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v = json(&o);
    assert_eq!(changes(&v), [("vm_changed".into(), "vm1".into())], "{v}");
    assert_eq!(v["changes"][0]["detail"], "cpu 2000 → 4000 milli");
    assert!(
        v["verify"][0]
            .as_str()
            .unwrap()
            .starts_with("verify: group hg1"),
        "{v}"
    );
    let mut db = open(&l.hsdb);
    assert!(
        db.vm(&uuid(VM3)).unwrap().is_some(),
        "vanished, not deleted"
    );
    assert_eq!(
        event_kinds(&db).last().map(String::as_str),
        Some("VM_VANISHED")
    );
    let acts = db.activities(Some("hg1"), 10).unwrap();
    assert_eq!(acts.len(), 4);
    assert_eq!(acts[0].kind, ActivityKind::DeepDiscovery);
    assert!(acts.iter().all(|a| a.state == ActivityState::Done));
    let listed = json(&hactl(
        &l.config,
        &["query", "activity", "--host-group", "hg1", "--json"],
    ));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[0]["kind"], "DEEP_DISCOVERY");
    assert_eq!(listed[0]["state"], "DONE");
    assert_eq!(listed[3]["requested_by"], "cli:ann");
    let o = hactl(&l.config, &["query", "activity", "--limit", "0"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");

    // Refusals: an unknown group (4), no configuration file (2), XML (2).
    let o = hactl(&l.config, &["discover", "nope"]);
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    let o = Command::new(HACTL)
        .args(["--hsdb"])
        .arg(&l.hsdb)
        .args(["discover", "hg1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("[platform]"),
        "{o:?}"
    );
    assert_eq!(
        db.activities(None, 10).unwrap().len(),
        4,
        "refusals write no activity"
    );
}

/// A virsh that says `dancing` where the real one says `running`, for the hosts whose
/// URI contains `match` (every host when empty).
fn lying_virsh(dir: &Path, pattern: &str) -> Option<PathBuf> {
    if !program_exists(Path::new("python3")) {
        return None;
    }
    let path = dir.join("lying-virsh");
    std::fs::write(
        &path,
        format!(
            r#"#!/usr/bin/env python3
import os, subprocess, sys
args = sys.argv[1:]
lie = any("{pattern}" in a for a in args)
p = subprocess.Popen(["virsh"] + args, stdin=sys.stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
while True:
    b = os.read(p.stdout.fileno(), 65536)
    if not b:
        break
    if lie:
        b = b.replace(b"running\n", b"dancing\n")
    os.write(1, b)
sys.exit(p.wait())
"#
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some(path)
}

#[test]
fn bad_virsh_output_writes_nothing() {
    if !have_virsh("bad_virsh_output_writes_nothing") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let Some(all) = lying_virsh(scratch.path(), "test:") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 missing under CI"
        );
        eprintln!("SKIPPED bad_virsh_output_writes_nothing: python3 not found");
        return;
    };
    // Every host lies: nothing is written, the activity FAILED with the host and value.
    let l = lab("", Some(&all));
    let o = hactl(&l.config, &["discover", "hg1"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nothing written") && err.contains("host-a") && err.contains("dancing"),
        "{err}"
    );
    let mut db = open(&l.hsdb);
    assert!(db.vms().unwrap().is_empty());
    assert_eq!(db.host(HostId(1)).unwrap().unwrap().cpu_milli, 0);
    let acts = db.activities(None, 10).unwrap();
    assert_eq!(acts[0].state, ActivityState::Failed);
    assert!(
        acts[0].summary.as_deref().unwrap().contains("dancing"),
        "{acts:?}"
    );
    assert_eq!(event_kinds(&db), ["ACTIVITY_FAILED"]);
    drop(db);

    // Only host-b lies: host-a's findings are written, host-b is named, exit 8; vm3,
    // which host-b defines, is not called vanished.
    let one = lying_virsh(scratch.path(), "host-b").unwrap();
    let l = lab("", Some(&one));
    let o = hactl(&l.config, &["discover", "hg1", "--json"]);
    assert_eq!(o.status.code(), Some(8), "{o:?}");
    let v = json(&o);
    assert_eq!(v["hosts_answered"], serde_json::json!(["host-a"]));
    assert_eq!(v["hosts_unreachable"][0]["host"], "host-b");
    let why = v["hosts_unreachable"][0]["why"].as_str().unwrap();
    assert!(
        why.contains("inventory host-b") && why.contains("dancing"),
        "{why}"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("host-b did not answer"));
    let db = open(&l.hsdb);
    assert!(db.vm(&uuid(VM1)).unwrap().is_some());
    assert!(db.vm(&uuid(VM3)).unwrap().is_none());
}

#[test]
fn run_schedules_discovery_and_carries_out_requests() {
    if !have_virsh("run_schedules_discovery_and_carries_out_requests") {
        return;
    }
    let l = lab(
        "[discovery]\nquick_interval = \"2s\"\ndeep_interval = \"1h\"\nmanage_new_groups = [\"hg1\"]\n",
        None,
    );
    // A RUNNING activity left by a controller that is gone, and a request from the
    // dashboard, before the daemon starts.
    let (stale, requested) = {
        let mut db = open(&l.hsdb);
        let now = db.db_now_ms().unwrap();
        let stale = db
            .begin_activity(
                "hg1",
                ActivityKind::Verify,
                "schedule",
                "controller:gone:1:1",
                now - 5_000,
            )
            .unwrap();
        let requested = db
            .request_activity("hg1", ActivityKind::DeepDiscovery, "dashboard:ann", now)
            .unwrap();
        (stale, requested)
    };
    let child = Command::new(HACTL)
        .arg("--config")
        .arg(&l.config)
        .arg("run")
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut done = false;
    while Instant::now() < deadline {
        let mut db = Hsdb::open_read_only(&l.hsdb, &Options::default()).unwrap();
        let acts = db.activities(Some("hg1"), 50).unwrap();
        let scheduled_quick = acts.iter().any(|a| {
            a.kind == ActivityKind::QuickDiscovery
                && a.requested_by == "schedule"
                && a.state == ActivityState::Done
        });
        let req_done = acts
            .iter()
            .any(|a| a.id == requested && a.state == ActivityState::Done);
        let stale_failed = acts
            .iter()
            .any(|a| a.id == stale && a.state == ActivityState::Failed);
        if scheduled_quick && req_done && stale_failed {
            done = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let mut db = open(&l.hsdb);
    let acts = db.activities(Some("hg1"), 50).unwrap();
    assert!(done, "activities: {acts:#?}\nlog:\n{log}");
    assert_eq!(out.status.code(), Some(0), "{log}");
    let req = acts.iter().find(|a| a.id == requested).unwrap();
    assert!(
        req.runner.as_deref().unwrap().starts_with("controller:"),
        "{req:?}"
    );
    assert!(
        req.summary
            .as_deref()
            .unwrap()
            .contains("verify: group hg1"),
        "{req:?}"
    );
    let stale_row = acts.iter().find(|a| a.id == stale).unwrap();
    assert!(
        stale_row
            .summary
            .as_deref()
            .unwrap()
            .contains("controller:gone:1:1"),
        "{stale_row:?}"
    );
    // The requested (deep) one ran first and found the VMs: managed (manage_new_groups).
    let vm1 = db.vm(&uuid(VM1)).unwrap().unwrap();
    assert!(vm1.managed, "{vm1:?}");
    // Every scheduled quick discovery after it changed nothing.
    assert_eq!(
        event_kinds(&db)
            .iter()
            .filter(|k| *k == "VM_DISCOVERED")
            .count(),
        3
    );
    // Two scheduled quick ones are at least the interval apart.
    let mut starts: Vec<i64> = acts
        .iter()
        .filter(|a| a.requested_by == "schedule" && a.kind == ActivityKind::QuickDiscovery)
        .filter_map(|a| a.started_ms)
        .collect();
    starts.sort_unstable();
    for w in starts.windows(2) {
        assert!(w[1] - w[0] >= 2_000, "{starts:?}");
    }
}
