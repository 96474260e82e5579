//! `hactl` and the executor: the restart counters in `query vm`, `host evacuate` and
//! `host restore` as an operator runs them.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hsdb::{HostId, HostRecord, Hsdb, Options, RelocationKind, Uuid, VmSettings};
use tempfile::TempDir;

const HACTL: &str = env!("CARGO_BIN_EXE_hactl");

const VM1: &str = "61be20f0-09a8-4753-b5e5-564f8a545ed5";

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

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

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        let config = self.path("hactl.toml");
        Command::new(HACTL)
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap()
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

fn vm1() -> Uuid {
    Uuid::parse(VM1.as_bytes()).unwrap()
}

fn hosts(path: &Path) -> Hsdb {
    let mut db = Hsdb::open(path, &Options::default()).unwrap();
    for (id, name) in [(1, "host-a"), (2, "host-b")] {
        db.upsert_host(&HostRecord {
            id: HostId(id),
            name: name.into(),
            machine_type: "8408".into(),
            model: "E8E".into(),
            serial: format!("S{id}"),
            cpu_milli: 16_000,
            memory_mb: 65_536,
            host_group: "hg1".into(),
        })
        .unwrap();
    }
    db
}

/// One restart row of `vm1` with its cause, begun `ago` ms before now.
fn restart(db: &mut Hsdb, from: i64, to: i64, cause: &str, ago: i64, result: Option<&str>) {
    let at = now_ms() - ago;
    let kind = if from == to {
        RelocationKind::Restart
    } else {
        RelocationKind::Relocate
    };
    let id = db
        .relocation_begin(&vm1(), Some(HostId(from)), Some(HostId(to)), kind, at)
        .unwrap();
    db.relocation_phase(id, &format!("cause {cause}"), at)
        .unwrap();
    if let Some(r) = result {
        db.relocation_end(id, r, at + 10).unwrap();
    }
}

/// `query vm` shows both restart counters: the per-VM budget counted over the group's
/// window from the VM's own failures (not host failures, not failed starts, not older
/// ones), and the same-host ladder since the last relocation.
#[test]
fn query_vm_shows_the_restart_counters() {
    let s = Setup::new("");
    let mut db = hosts(&s.path("hsdb.sqlite"));
    db.set_vm(
        &vm1(),
        &VmSettings {
            managed: Some(true),
            name: Some("web1".into()),
            home_host: Some(HostId(1)),
            ..VmSettings::default()
        },
        now_ms(),
    )
    .unwrap();
    let h = 3_600_000;
    restart(&mut db, 1, 2, "vm_failure", 2 * h, Some("success")); // out of the window
    restart(&mut db, 1, 2, "vm_failure", h / 2, Some("success"));
    restart(&mut db, 2, 1, "host_failure", h / 3, Some("success")); // not the VM's fault
    restart(&mut db, 1, 2, "vm_failure", h / 4, Some("failed: no room")); // restarted nothing
    restart(&mut db, 2, 2, "app_restart", h / 5, Some("success"));
    drop(db);

    let o = s.run(&["query", "vm"]);
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("RESTARTS"), "{out}");
    assert!(out.contains("2/3 in 1h, app 1/3"), "{out}");

    let o = s.run(&["query", "vm", "web1"]);
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("Restarts                    2/3 in 1h"),
        "{out}"
    );
    assert!(out.contains("App_restarts_on_host        1/3"), "{out}");

    let o = s.run(&["query", "vm", "--json"]);
    assert_exit(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["restart_budget"]["used"], 2);
    assert_eq!(v[0]["restart_budget"]["limit"], 3);
    assert_eq!(v[0]["restart_budget"]["window"], "1h");
    assert_eq!(v[0]["restart_budget"]["window_ms"], 3_600_000);
    assert_eq!(v[0]["app_restarts_on_host"]["used"], 1);
    assert_eq!(v[0]["app_restarts_on_host"]["limit"], 3);

    // The group's own limit and window; one more of the VM's failures spends it.
    let o = s.run(&["modify", "host_group", "hg1", "vm_restart_limit=2"]);
    assert_exit(&o, 0);
    let o = s.run(&["query", "vm"]);
    assert!(
        stdout(&o).contains("2/2 in 1h (spent), app 1/3"),
        "{}",
        stdout(&o)
    );
    let o = s.run(&["modify", "host_group", "hg1", "vm_restart_window=20m"]);
    assert_exit(&o, 0);
    let o = s.run(&["query", "vm"]);
    assert!(stdout(&o).contains("1/2 in 20m, app 1/3"), "{}", stdout(&o));
}

// ---- host evacuate / restore against `hactl run` on libvirt's test hypervisor ------------

const DB1: &str = "57275f1e-3680-4eef-945a-fe7670500310";
const HMS: [(&str, i64, u8); 4] = [
    ("315ce56b-9ba0-46a1-b4bc-da6108574e7e", 1, 1),
    ("5ac3e0dc-13fc-4221-9617-8ef61c4cdd83", 1, 2),
    ("4e0f6f60-214b-4d2c-a436-0eac46f7f71f", 2, 3),
    ("166c89ef-57d8-4e75-815c-aa5b885560b1", 2, 4),
];

fn uuid(text: &str) -> Uuid {
    Uuid::parse(text.as_bytes()).unwrap()
}

fn domain(name: &str, uuid: &str) -> String {
    format!(
        r#"  <domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0">
    <name>{name}</name>
    <uuid>{uuid}</uuid>
    <memory unit="MiB">1024</memory>
    <vcpu>1</vcpu>
    <os><type>hvm</type></os>
    <test:runstate>1</test:runstate>
  </domain>
"#
    )
}

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

/// The monitors of both hosts heart-beat every 300 ms, and complete their commands,
/// until `stop`.
fn heartbeats(path: PathBuf, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let mut db = Hsdb::open(&path, &Options::default()).unwrap();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let now = now_ms();
        let batch: Vec<hsdb::Transition> = HMS
            .iter()
            .map(|(hm, _, _)| hsdb::Transition::HmHeartbeat {
                hm: uuid(hm),
                at: now,
            })
            .collect();
        let _ = db.apply(&batch);
        // And carry out the controller's commands, as `hmd` does.
        for (hm, _, _) in HMS {
            for c in db.commands_for(&uuid(hm), 0, 100).unwrap_or_default() {
                let _ = db.complete_command(c.id, "OK", now);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// `hactl host evacuate` and `restore` as an operator runs them against `hactl run` with
/// the libvirt driver (no live migration: every move is a stop and a start, and says
/// so): refused with the VM's reason while the plan is incomplete (exit 5, nothing
/// moved), then done (exit 0), the host in maintenance; restore
/// returns the home VMs (exit 0). An unknown host is exit 4; `--no-wait` returns at
/// once with the request's number.
#[test]
fn host_evacuate_and_restore_through_virsh() {
    if !controlplane::platform::libvirt::program_exists(Path::new("virsh")) {
        eprintln!("SKIPPED host_evacuate_and_restore_through_virsh: virsh not found");
        return;
    }
    let s = Setup::new("");
    let hsdb = s.path("hsdb.sqlite");
    let mut db = hosts(&hsdb);
    let now = now_ms();
    for (hm, host, n) in HMS {
        db.register_hm(&hsdb::HmRecord {
            uuid: uuid(hm),
            host: HostId(host),
            mac: hsdb::MacAddr([2, 0, 0, 0, 0, n]),
            incarnation: hsdb::HelloId {
                secs: 1,
                nanos: 0,
                suffix: u32::from(n),
            },
            version: hsdb::Version { major: 2, minor: 0 },
            at: now - 10_000,
        })
        .unwrap();
    }
    for (vm, name) in [(VM1, "web1"), (DB1, "db1")] {
        db.set_vm(
            &uuid(vm),
            &VmSettings {
                managed: Some(true),
                name: Some(name.into()),
                cpu_milli: Some(1000),
                memory_mb: Some(if name == "db1" { 70_000 } else { 1024 }),
                home_host: Some(HostId(1)),
                ..VmSettings::default()
            },
            now,
        )
        .unwrap();
    }
    drop(db);
    let a = host_file(
        s.dir.path(),
        "host-a",
        &[domain("web1", VM1), domain("db1", DB1)],
    );
    let b = host_file(s.dir.path(), "host-b", &[]);
    std::fs::write(
        s.path("hactl.toml"),
        format!(
            "hsdb = \"hsdb.sqlite\"\nadmin_socket = \"hactl.sock\"\nprofile = \"fast\"\n\
             [platform]\ndriver = \"libvirt\"\ntimeout_ms = 10000\n\
             [platform.hosts]\nhost-a = \"{a}\"\nhost-b = \"{b}\"\n"
        ),
    )
    .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let beats = {
        let stop = stop.clone();
        let path = hsdb.clone();
        std::thread::spawn(move || heartbeats(path, stop))
    };
    let child = Command::new(HACTL)
        .arg("--config")
        .arg(s.path("hactl.toml"))
        .arg("run")
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    let o = s.run(&["host", "evacuate", "no-such-host"]);
    assert_exit(&o, 4);
    // db1 needs 70,000 MiB: host-b has 65,536. Refused, nothing moved.
    let o = s.run(&["host", "evacuate", "host-a", "--timeout", "60"]);
    let refused_out = (stdout(&o), stderr(&o));
    let refused_code = o.status.code();
    // Room for it now: evacuated by stop and start.
    let o = s.run(&["modify", "vm", "db1", "memory=1024"]);
    assert_exit(&o, 0);
    let evacuated = s.run(&["host", "evacuate", "host-a", "--timeout", "90"]);
    let in_maintenance = Hsdb::open(&hsdb, &Options::default())
        .unwrap()
        .hosts_in_maintenance()
        .unwrap();
    let rows = Hsdb::open(&hsdb, &Options::default())
        .unwrap()
        .relocations(None, 10)
        .unwrap();
    let hosts_during = s.run(&["query", "host", "--json"]);
    // `hactl status` names the host in maintenance (once the daemon's status caught up).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status_maintenance = loop {
        let o = s.run(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        let m = v["groups"][0]["maintenance"].clone();
        if m.as_array().is_some_and(|a| !a.is_empty()) || std::time::Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let status_text = stdout(&s.run(&["status"]));
    let restored = s.run(&["host", "restore", "host-a", "--timeout", "90"]);
    let hosts_after = s.run(&["query", "host"]);
    let no_wait = s.run(&["host", "restore", "host-a", "--no-wait"]);
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    beats.join().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);

    assert_eq!(refused_code, Some(5), "{refused_out:?}\n{log}");
    assert!(
        refused_out
            .1
            .contains("the plan is incomplete, nothing moved"),
        "{refused_out:?}"
    );
    assert!(refused_out.1.contains("VM db1:"), "{refused_out:?}");
    assert!(!refused_out.1.contains("VM web1:"), "{refused_out:?}");

    assert_exit(&evacuated, 0);
    let text = stdout(&evacuated);
    assert!(
        text.contains("evacuate host host-a (host group hg1)"),
        "{text}"
    );
    assert!(
        text.contains("host host-a evacuated: 2 VM(s) moved by stop and start"),
        "{text}\n{log}"
    );
    assert_eq!(in_maintenance.len(), 1);
    assert_eq!(in_maintenance[0].0, HostId(1));
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        assert_eq!((r.from_host, r.to_host), (Some(HostId(1)), Some(HostId(2))));
        let result = r.result.as_deref().unwrap();
        assert!(
            result.starts_with("success (moved by stop and start"),
            "{result}"
        );
    }

    assert_eq!(status_maintenance, serde_json::json!(["host-a"]));
    assert!(
        status_text.contains("hg1: hosts in maintenance: host-a"),
        "{status_text}"
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&hosts_during)).unwrap();
    let a = v
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "host-a")
        .unwrap();
    assert!(a["maintenance_since"].is_string(), "{a}");
    let b = v
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "host-b")
        .unwrap();
    assert!(b["maintenance_since"].is_null(), "{b}");
    assert!(
        !stdout(&hosts_after).contains("since "),
        "{}",
        stdout(&hosts_after)
    );
    assert_exit(&restored, 0);
    assert!(
        stdout(&restored).contains("maintenance ended, 2 VM(s) returned home by stop and start"),
        "{}\n{log}",
        stdout(&restored)
    );
    assert_exit(&no_wait, 0);
    assert!(
        stdout(&no_wait).contains("not waiting"),
        "{}",
        stdout(&no_wait)
    );
    assert_eq!(out.status.code(), Some(0), "{log}");
}

// ---- several controllers on PostgreSQL -------------------------------------------------

const VM2: &str = "10000000-0000-4000-8000-000000000002";

fn hm_pg(n: u8) -> Uuid {
    Uuid::parse(format!("00000000-0000-4000-8000-00000000000{n}").as_bytes()).unwrap()
}

/// hg1 on PostgreSQL: host-a (web1, home host-a) and host-b (vm2), two monitors each.
fn populate_pg(target: &hsdb::Target) {
    let now = now_ms();
    let mut db = Hsdb::connect(target, &Options::default()).unwrap();
    for (id, name) in [(1, "host-a"), (2, "host-b")] {
        db.upsert_host(&HostRecord {
            id: HostId(id),
            name: name.into(),
            machine_type: "8408".into(),
            model: "E8E".into(),
            serial: format!("S{id}"),
            cpu_milli: 16_000,
            memory_mb: 65_536,
            host_group: "hg1".into(),
        })
        .unwrap();
    }
    let mut batch = Vec::new();
    for n in 1..=4u8 {
        db.register_hm(&hsdb::HmRecord {
            uuid: hm_pg(n),
            host: HostId(i64::from(n.div_ceil(2))),
            mac: hsdb::MacAddr([0x02, 0, 0, 0, 0, n]),
            incarnation: hsdb::HelloId {
                secs: 1_556_303_548,
                nanos: 0,
                suffix: u32::from(n),
            },
            version: hsdb::Version { major: 2, minor: 0 },
            at: now,
        })
        .unwrap();
        let vm = if n <= 2 { vm1() } else { uuid(VM2) };
        batch.push(hsdb::Transition::Discovered {
            vm,
            hm: hm_pg(n),
            mac: hsdb::MacAddr([0x6a, 0, 0, 0, 0, n]),
            ostype: "Linux".into(),
            ver_lower: hsdb::Version { major: 2, minor: 0 },
            ver_upper: hsdb::Version { major: 2, minor: 0 },
            at: now,
        });
        batch.push(hsdb::Transition::HmHeartbeat {
            hm: hm_pg(n),
            at: now,
        });
    }
    db.apply(&batch).unwrap();
    for (vm, name, home) in [(vm1(), "web1", 1), (uuid(VM2), "vm2", 2)] {
        db.set_vm(
            &vm,
            &VmSettings {
                managed: Some(true),
                name: Some(name.into()),
                cpu_milli: Some(1000),
                memory_mb: Some(1024),
                home_host: Some(HostId(home)),
                ..VmSettings::default()
            },
            now,
        )
        .unwrap();
    }
}

/// The monitors heart-beat and complete their commands every 300 ms until `stop`.
fn heartbeats_pg(target: hsdb::Target, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let mut db = Hsdb::connect(&target, &Options::default()).unwrap();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let now = now_ms();
        let batch: Vec<hsdb::Transition> = (1..=4)
            .map(|n| hsdb::Transition::HmHeartbeat {
                hm: hm_pg(n),
                at: now,
            })
            .collect();
        let _ = db.apply(&batch);
        for n in 1..=4 {
            for c in db.commands_for(&hm_pg(n), 0, 100).unwrap_or_default() {
                let _ = db.complete_command(c.id, "OK", now);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

struct Ctl {
    config: PathBuf,
    log: PathBuf,
    child: std::process::Child,
}

impl Ctl {
    fn start(dir: &Path, name: &str, url: &str) -> Ctl {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "hsdb = \"{url}\"\nadmin_socket = \"{name}.sock\"\ncontroller_id = \"{name}\"\n\
                 profile = \"fast\"\nlog = \"info\"\n\
                 [lease]\nttl_ms = 2000\nrenew_every_ms = 500\nmargin_ms = 200\n\
                 [platform]\ndriver = \"sim\"\n"
            ),
        )
        .unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(HACTL)
            .args(["--config", config.to_str().unwrap(), "run"])
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Ctl { config, log, child }
    }

    fn hactl(&self, args: &[&str]) -> Output {
        Command::new(HACTL)
            .args(["--config", self.config.to_str().unwrap()])
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }

    fn role(&self) -> Option<String> {
        let o = self.hactl(&["status", "--json"]);
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        s["groups"]
            .as_array()?
            .iter()
            .find(|g| g["name"] == "hg1")
            .and_then(|g| g["lease"]["role"].as_str().map(str::to_owned))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(mut self) -> (Option<i32>, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let code = self.child.wait().ok().and_then(|s| s.code());
        (code, self.log())
    }
}

fn wait_role(c: &Ctl, role: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while c.role().as_deref() != Some(role) {
        assert!(
            std::time::Instant::now() < deadline,
            "not {role} within 60 s:\n{}",
            c.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Two `hactl run` on one PostgreSQL HSDB: an evacuation asked through the follower's
/// configuration is carried out once, by the leader alone (live migration on the sim),
/// and so is the restore.
#[test]
fn host_evacuate_with_two_controllers_on_postgres_runs_once_on_the_leader() {
    let Some(server) = pglab::require("host_evacuate_two_controllers") else {
        return;
    };
    let url = server.fresh_database("host_evacuate_two_controllers");
    let target = hsdb::Target::parse(&url).unwrap();
    populate_pg(&target);
    let dir = tempfile::tempdir().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let beats = {
        let (stop, target) = (stop.clone(), target.clone());
        std::thread::spawn(move || heartbeats_pg(target, stop))
    };
    let a = Ctl::start(dir.path(), "ctl-a", &url);
    wait_role(&a, "leader");
    let b = Ctl::start(dir.path(), "ctl-b", &url);
    wait_role(&b, "follower");

    let evacuated = b.hactl(&["host", "evacuate", "host-a", "--timeout", "60"]);
    let db = Hsdb::connect_read_only(&target, &Options::default()).unwrap();
    let in_maintenance = db.hosts_in_maintenance().unwrap();
    let rows = db.relocations(None, 10).unwrap();
    let steps: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            db.relocation_steps(r.id)
                .unwrap()
                .into_iter()
                .map(|s| s.phase)
                .collect()
        })
        .collect();
    let restored = b.hactl(&["host", "restore", "host-a", "--timeout", "60"]);
    let rows_after = db.relocations(None, 10).unwrap();
    let (code_b, log_b) = b.stop();
    let (code_a, log_a) = a.stop();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    beats.join().unwrap();

    assert_exit(&evacuated, 0);
    assert!(
        stdout(&evacuated).contains("host host-a evacuated: 1 VM(s) moved by live migration"),
        "{}\n{log_a}",
        stdout(&evacuated)
    );
    assert_eq!(in_maintenance.len(), 1);
    assert_eq!(rows.len(), 1, "once: {rows:?}");
    assert_eq!(rows[0].vm, vm1());
    assert!(steps[0].contains(&"cause evacuate".to_owned()), "{steps:?}");
    assert!(
        steps[0].contains(&"move by live migration".to_owned()),
        "{steps:?}"
    );
    assert!(
        steps[0].iter().any(|s| s.starts_with("by ctl-a")),
        "the leader moved it: {steps:?}"
    );
    assert_exit(&restored, 0);
    assert!(
        stdout(&restored).contains("1 VM(s) returned home by live migration"),
        "{}",
        stdout(&restored)
    );
    assert_eq!(rows_after.len(), 2);
    assert!(
        log_a.contains("platform action: migrate host-a host-b"),
        "{log_a}"
    );
    assert!(
        !log_b.contains("platform action:"),
        "the follower acts on nothing: {log_b}"
    );
    assert_eq!((code_a, code_b), (Some(0), Some(0)));
}

/// Without a controller the request waits: `--timeout 1` gives up after a second (exit 6)
/// and says the request stays; a bad `--timeout` or `--json` is a usage error (exit 2);
/// the request written by the first is still PENDING for whichever controller leads.
#[test]
fn host_evacuate_without_a_controller_times_out_and_bad_usage_is_refused() {
    let s = Setup::new("");
    drop(hosts(&s.path("hsdb.sqlite")));
    let o = s.run(&["host", "evacuate", "host-a", "--timeout", "1"]);
    assert_exit(&o, 6);
    let err = stderr(&o);
    assert!(err.contains("request 1 not finished after 1 s"), "{err}");
    assert!(err.contains("no controller has picked it up"), "{err}");
    assert_exit(
        &s.run(&["host", "evacuate", "host-a", "--timeout", "999999"]),
        2,
    );
    assert_exit(&s.run(&["--json", "host", "restore", "host-a"]), 2);
    assert_exit(&s.run(&["host", "restore"]), 2);
    let db = Hsdb::open(s.path("hsdb.sqlite"), &Options::default()).unwrap();
    let open = db.open_operator_requests("hg1").unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].state, hsdb::RequestState::Pending);
    assert!(
        open[0].requested_by.contains("@hactl (pid "),
        "{:?}",
        open[0]
    );
}
