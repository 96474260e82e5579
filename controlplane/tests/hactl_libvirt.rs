//! `hactl run` with the libvirt driver on libvirt's built-in test hypervisor: the
//! configuration's hosts and URIs reach the driver, a VM missed on both monitors of its
//! host is relocated through `virsh` to the other host, and the relocation is recorded.
//!
//! Without `virsh` on PATH the test prints `SKIPPED <test>: virsh not found` and passes,
//! except under `CI=true`, where it fails; CI installs it (.ci/run).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use controlplane::platform::libvirt::program_exists;
use hsdb::{HelloId, HmRecord, HostId, HostRecord, Hsdb, MacAddr, Options, Transition, Version};

const HACTL: &str = env!("CARGO_BIN_EXE_hactl");
const HM_A1: &str = "315ce56b-9ba0-46a1-b4bc-da6108574e7e";
const HM_A2: &str = "5ac3e0dc-13fc-4221-9617-8ef61c4cdd83";
const HM_B1: &str = "4e0f6f60-214b-4d2c-a436-0eac46f7f71f";
const HM_B2: &str = "166c89ef-57d8-4e75-815c-aa5b885560b1";
const WEB1: &str = "61be20f0-09a8-4753-b5e5-564f8a545ed5";
const DB1: &str = "57275f1e-3680-4eef-945a-fe7670500310";

fn uuid(text: &str) -> hsdb::Uuid {
    hsdb::Uuid::parse(text.as_bytes()).unwrap()
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

/// Two hosts of hg1, two monitors each heart-beating now; web1 and db1 on host-a, db1
/// managed and missed on both monitors of host-a for 42 s.
fn populate(path: &Path) {
    let now = now_ms();
    let mut db = Hsdb::open(path, &Options::default()).unwrap();
    for (id, name) in [(1, "host-a"), (2, "host-b")] {
        db.upsert_host(&HostRecord {
            id: HostId(id),
            name: name.into(),
            machine_type: "8408".into(),
            model: "E8E".into(),
            serial: format!("S{id}"),
            cpu_milli: 8_000,
            memory_mb: 32_768,
            host_group: "hg1".into(),
        })
        .unwrap();
    }
    let hms = [(HM_A1, 1, 1u8), (HM_A2, 1, 2), (HM_B1, 2, 3), (HM_B2, 2, 4)];
    for (hm, host, n) in hms {
        db.register_hm(&HmRecord {
            uuid: uuid(hm),
            host: HostId(host),
            mac: MacAddr([2, 0, 0, 0, 0, n]),
            incarnation: HelloId {
                secs: 1,
                nanos: 0,
                suffix: u32::from(n),
            },
            version: Version { major: 2, minor: 0 },
            at: now - 10_000,
        })
        .unwrap();
    }
    let mut batch = Vec::new();
    for (vm, n) in [(WEB1, 1u8), (DB1, 2)] {
        for (side, hm) in [HM_A1, HM_A2].iter().enumerate() {
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
    db.apply(&batch).unwrap();
}

fn hactl(config: &Path, args: &[&str]) -> Output {
    Command::new(HACTL)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
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

#[test]
fn run_relocates_a_failed_vm_through_virsh() {
    if !program_exists(Path::new("virsh")) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "virsh not found under CI=true (.ci/run installs libvirt-clients)"
        );
        eprintln!("SKIPPED run_relocates_a_failed_vm_through_virsh: virsh not found");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hsdb = dir.path().join("hsdb.sqlite");
    populate(&hsdb);
    let a = host_file(
        dir.path(),
        "host-a",
        &[domain("web1", WEB1), domain("db1", DB1)],
    );
    let b = host_file(dir.path(), "host-b", &[]);
    let config = dir.path().join("hactl.toml");
    std::fs::write(
        &config,
        format!(
            "hsdb = \"hsdb.sqlite\"\nadmin_socket = \"hactl.sock\"\nprofile = \"fast\"\n\
             [platform]\ndriver = \"libvirt\"\ntimeout_ms = 10000\n\
             [platform.hosts]\nhost-a = \"{a}\"\nhost-b = \"{b}\"\n"
        ),
    )
    .unwrap();
    let o = hactl(
        &config,
        &[
            "modify",
            "vm",
            DB1,
            "managed=yes",
            "name=db1",
            "cpu=1",
            "memory=1024",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let child = Command::new(HACTL)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The relocation of db1 ends (the monitors' confirmations time out: no hmd runs).
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut ended = None;
    while Instant::now() < deadline {
        let o = hactl(&config, &["query", "relocation", "--vm", DB1, "--json"]);
        if o.status.code() == Some(0)
            && let Some(r) = json(&o)
                .as_array()
                .unwrap()
                .iter()
                .find(|r| !r["ended"].is_null())
        {
            ended = Some(r.clone());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = hactl(&config, &["status", "--json"]);
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let Some(r) = ended else {
        panic!("no relocation of db1 ended; log:\n{log}");
    };
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_eq!(json(&status)["platform"], "libvirt");
    assert_eq!(r["kind"], "RELOCATE", "{r}");
    assert_eq!(r["from_host"], "host-a", "{r}");
    assert_eq!(r["to_host"], "host-b", "{r}");
    let steps: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0].as_str().unwrap())
        .collect();
    assert!(steps.contains(&"restarting"), "{steps:?}");
    for phase in ["shutting_down", "cleaning_up", "done"] {
        assert!(steps.contains(&phase), "{phase}: {steps:?}");
    }
    // Shut down on host-a, defined and started on host-b, cleaned up on host-a, all
    // through virsh: a success (the monitors' confirmations are noted as missing).
    let result = r["result"].as_str().unwrap();
    assert!(result.starts_with("success"), "{r}\n{log}");
}

/// `hactl vm move web1 --to host-b --wait` against a real `hactl run` on libvirt's test
/// hypervisor: the plan printed first (stop and start: the driver cannot live-migrate),
/// the MOVE request carried out by the leader through virsh, a MOVE relocation whose
/// reasons are the plan. The test plays the monitors: they heart-beat and complete
/// their commands, so every host stays healthy and nothing is taken for a failure.
#[test]
fn run_moves_a_vm_through_virsh() {
    let test = "run_moves_a_vm_through_virsh";
    if !program_exists(Path::new("virsh")) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: virsh not found (CI installs libvirt-clients)"
        );
        eprintln!("SKIPPED {test}: virsh not found");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hsdb = dir.path().join("hsdb.sqlite");
    populate(&hsdb);
    let a = host_file(
        dir.path(),
        "host-a",
        &[domain("web1", WEB1), domain("db1", DB1)],
    );
    let b = host_file(dir.path(), "host-b", &[]);
    let config = dir.path().join("hactl.toml");
    std::fs::write(
        &config,
        format!(
            "hsdb = \"hsdb.sqlite\"\nadmin_socket = \"hactl.sock\"\nprofile = \"fast\"\n\
             [platform]\ndriver = \"libvirt\"\ntimeout_ms = 10000\n\
             [platform.hosts]\nhost-a = \"{a}\"\nhost-b = \"{b}\"\n"
        ),
    )
    .unwrap();
    // web1 managed (db1, missed by populate, stays unmanaged: no failure relocation).
    let o = hactl(
        &config,
        &[
            "modify",
            "vm",
            WEB1,
            "managed=yes",
            "name=web1",
            "cpu=1",
            "memory=1024",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    // The monitors: a heartbeat every 300 ms, every command completed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let monitors = {
        let stop = std::sync::Arc::clone(&stop);
        let hsdb = hsdb.clone();
        std::thread::spawn(move || {
            let mut db = Hsdb::open(&hsdb, &Options::default()).unwrap();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let now = now_ms();
                let beats: Vec<Transition> = [HM_A1, HM_A2, HM_B1, HM_B2]
                    .iter()
                    .map(|hm| Transition::HmHeartbeat {
                        hm: uuid(hm),
                        at: now,
                    })
                    .collect();
                let _ = db.apply(&beats);
                for hm in [HM_A1, HM_A2, HM_B1, HM_B2] {
                    for c in db.commands_for(&uuid(hm), 0, 100).unwrap_or_default() {
                        let _ = db.complete_command(c.id, "OK", now);
                    }
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    // The plan alone first: nothing written.
    let o = hactl(
        &config,
        &["vm", "move", "web1", "--to", "host-b", "--dry-run"],
    );
    let dry = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let child = Command::new(HACTL)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let moved = hactl(
        &config,
        &["vm", "move", "web1", "--to", "host-b", "--wait", "60"],
    );
    let relocations = hactl(&config, &["query", "relocation", "--vm", "web1", "--json"]);
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    monitors.join().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let printed = String::from_utf8_lossy(&moved.stdout).into_owned();
    assert_eq!(
        moved.status.code(),
        Some(0),
        "{printed}\n{}\nlog:\n{log}",
        String::from_utf8_lossy(&moved.stderr)
    );
    let way = "by stop and start (the platform cannot live-migrate)";
    let head = format!("Plan: move VM web1 (host group hg1) from host host-a to host host-b {way}");
    assert!(dry.starts_with(&head), "{dry}");
    assert!(printed.starts_with(&head), "{printed}");
    assert!(
        printed.contains("    host-a  not eligible: the VM runs there now\n"),
        "{printed}"
    );
    assert!(
        printed.ends_with(&format!(
            "VM web1 moved from host host-a to host host-b {way}\n"
        )),
        "{printed}\nlog:\n{log}"
    );
    let rows = json(&relocations);
    let r = &rows.as_array().unwrap()[0];
    assert_eq!(r["kind"], "MOVE", "{r}");
    assert_eq!(
        (r["from_host"].as_str(), r["to_host"].as_str()),
        (Some("host-a"), Some("host-b"))
    );
    assert!(r["result"].as_str().unwrap().starts_with("success"), "{r}");
    let reasons = r["reasons"].as_str().unwrap();
    assert!(reasons.starts_with("web1: to host-b ("), "{reasons}");
    assert!(reasons.ends_with(&format!("\nmoved {way}")), "{reasons}");
    let steps: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0].as_str().unwrap())
        .collect();
    for phase in ["cause move", "shutting_down", "restarting", "done"] {
        assert!(steps.contains(&phase), "{phase}: {steps:?}");
    }
    assert_eq!(out.status.code(), Some(0), "{log}");
}
