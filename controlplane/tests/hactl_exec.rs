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
