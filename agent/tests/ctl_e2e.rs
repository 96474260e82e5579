//! `vmmd ctl` against the real `vmmd`: the agent runs in a network namespace of its own
//! (no HVNCP interface: it monitors applications all the same), the test drives it
//! with the real `vmmd ctl` over the ctl socket, with real scripts in a temporary
//! directory, and restarts it to show that the configuration persisted.
//!
//! Needs root (`CAP_SYS_ADMIN` for the namespace) and iproute2's `ip`; otherwise it
//! prints `SKIPPED` and passes.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use netlab::Netns;

const VM_UUID: &str = "61be20f0-09a8-4753-b5e5-564f8a545ed5";
/// Generous: a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(30);

struct Lab {
    dir: tempfile::TempDir,
    ns: Netns,
}

impl Lab {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn socket(&self) -> PathBuf {
        self.path("run/ctl.sock")
    }

    /// Start vmmd in the namespace; its log goes to `vmmd-<n>.log`.
    fn start(&self, n: u32) -> Daemon {
        let log = self.path(&format!("vmmd-{n}.log"));
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                self.ns.name(),
                env!("CARGO_BIN_EXE_vmmd"),
                "--config",
            ])
            .arg(self.path("vmmd.toml"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start vmmd");
        let daemon = Daemon { child, log };
        // Ready when the socket answers.
        let deadline = Instant::now() + WAIT;
        loop {
            let out = self.ctl(&["query", "vmm"]);
            if out.status.code() == Some(0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "vmmd's socket never answered: {}\n{}",
                stderr(&out),
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon
    }

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vmmd"))
            .arg("ctl")
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("run vmmd ctl")
    }

    /// `vmmd ctl` that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "vmmd ctl {args:?}: {}",
            stderr(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The status row of `app` (`vmmd ctl status --json`).
    fn status(&self, app: &str) -> serde_json::Value {
        let rows: serde_json::Value =
            serde_json::from_str(&self.ok(&["--json", "status", app])).expect("json");
        rows[0].clone()
    }

    /// Wait until `app`'s status satisfies `check`.
    fn wait_status(
        &self,
        app: &str,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let row = self.status(app);
            if check(&row) {
                return row;
            }
            assert!(Instant::now() < deadline, "{app} never {what}: {row}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; the exit code.
    fn stop(mut self) -> Option<i32> {
        netlab::run(&["kill", "-TERM", &self.child.id().to_string()]);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A TCP listener on 127.0.0.1 inside namespace `ns` that accepts and closes every
/// connection, for the life of the test; its port.
fn tcp_listener_in(ns: &str) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        dataplane::io::enter_network_namespace(&ns).expect("setns");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        tx.send(listener.local_addr().expect("addr").port())
            .expect("send");
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    rx.recv_timeout(WAIT).expect("listener port")
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn vmmd_ctl_drives_the_real_agent_and_the_configuration_survives_a_restart() {
    if let Some(why) = netlab::missing_capabilities() {
        eprintln!("SKIPPED ctl_e2e: {why}; run as root to start vmmd in a namespace");
        return;
    }
    let lab = Lab {
        dir: tempfile::tempdir().expect("temp dir"),
        ns: Netns::new("hvct", "ctl"),
    };
    // The application: "up" while its flag file exists; the scripts log their calls.
    let (flag, calls) = (lab.path("web.up"), lab.path("calls"));
    let (mon, start, stop) = (lab.path("mon"), lab.path("start"), lab.path("stop"));
    script(&mon, &format!("test -f {}", flag.display()));
    script(
        &start,
        &format!(
            "echo start >> {}\ntouch {}",
            calls.display(),
            flag.display()
        ),
    );
    script(
        &stop,
        &format!("echo stop >> {}\nrm -f {}", calls.display(), flag.display()),
    );
    std::fs::write(&flag, "").expect("flag");
    std::fs::write(
        lab.path("vmmd.toml"),
        format!(
            "vm_uuid = \"{VM_UUID}\"\nrescan_ms = 1000\nlog = \"debug\"\n[ame]\nsocket = \"{}\"\napps_file = \"{}\"\n",
            lab.socket().display(),
            lab.path("lib/apps.toml").display()
        ),
    )
    .expect("config");

    let daemon = lab.start(1);
    assert!(
        lab.ok(&["query", "app"])
            .contains("no application configured")
    );
    let (m, s, t) = (
        format!("monitor_script={}", mon.display()),
        format!("start_script={}", start.display()),
        format!("stop_script={}", stop.display()),
    );
    let out = lab.ok(&[
        "add",
        "app",
        "web",
        &m,
        &s,
        &t,
        "monitor_period=2",
        "monitor_timeout=1",
        "critical=yes",
    ]);
    assert_eq!(out, "application web added\n");
    let row = lab.wait_status("web", "NORMAL", |r| r["state"] == "NORMAL");
    assert_eq!(row["colour"], "GREEN");
    assert_eq!(row["result"], "NORMAL");
    assert_eq!(row["critical"], true);
    assert_eq!(row["fail"], serde_json::json!({"cur": 0, "max": 5}));
    assert_eq!(row["restart"], serde_json::json!({"cur": 0, "max": 3}));
    let table = lab.ok(&["status"]);
    assert!(table.starts_with("NAME  STATE   COLOUR  RESULT  MON  CRIT  FAIL  STOP  START  RESTART  MONITOR\nweb   NORMAL  GREEN   NORMAL  yes  yes   0/5   0/3   0/3    0/3      script"), "{table}");

    // Refused changes name the rule and change nothing.
    let out = lab.ctl(&["modify", "app", "web", "monitor_timeout=2"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "vmmd ctl: application web: monitor_period (2 s) must exceed monitor_timeout (2 s)\n"
    );
    let out = lab.ctl(&["stop", "app", "wbe"]);
    assert_eq!(
        (out.status.code(), stderr(&out)),
        (Some(4), "vmmd ctl: no application named wbe\n".to_owned())
    );
    assert!(
        lab.ok(&["query", "app", "web"])
            .contains(" monitor_timeout=1\n")
    );

    // Stop runs the stop script and suspends monitoring; start runs the start script.
    assert_eq!(
        lab.ok(&["stop", "app", "web"]),
        "application web: stopped\n"
    );
    lab.wait_status("web", "stopped", |r| {
        r["monitored"] == false && r["state"] == "UNSET"
    });
    assert!(!flag.exists(), "the stop script ran");
    assert_eq!(
        lab.ok(&["start", "app", "web"]),
        "application web: started\n"
    );
    lab.wait_status("web", "NORMAL again", |r| {
        r["state"] == "NORMAL" && r["monitored"] == true
    });
    assert!(flag.exists(), "the start script ran");
    assert_eq!(
        std::fs::read_to_string(&calls).expect("calls"),
        "stop\nstart\n"
    );

    // A suspended application stays suspended across a restart of the agent.
    assert_eq!(
        lab.ok(&["suspend", "app", "web"]),
        "application web: monitoring suspended\n"
    );
    assert_eq!(daemon.stop(), Some(0), "vmmd exits 0 on SIGTERM");
    assert!(!lab.socket().exists(), "the socket is removed at exit");
    let saved = std::fs::read_to_string(lab.path("lib/apps.toml")).expect("apps file");
    assert!(
        saved.contains("name = \"web\"\nmonitored = false\n"),
        "{saved}"
    );

    let daemon = lab.start(2);
    let query = lab.ok(&["query", "app", "web"]);
    for line in [
        "Application name=web\n",
        " monitored=no\n",
        " monitor_period=2\n",
        " monitor_timeout=1\n",
        " critical=yes\n",
    ] {
        assert!(
            query.contains(line),
            "{line:?} missing after the restart:\n{query}"
        );
    }
    assert_eq!(lab.status("web")["monitored"], false);
    lab.ok(&["resume", "app", "web"]);
    lab.wait_status("web", "NORMAL after the restart", |r| {
        r["state"] == "NORMAL"
    });

    // A built-in probe instead of a monitor script: a TCP listener in the agent's
    // namespace.
    lab.ns.ip(&["link", "set", "lo", "up"]);
    let port = tcp_listener_in(lab.ns.name());
    let out = lab.ok(&[
        "add",
        "app",
        "api",
        "probe=tcp",
        &format!("probe_port={port}"),
        "probe_server=127.0.0.1",
        "probe_interval=1",
        "probe_timeout=1",
        "probe_retries=1",
        "probe_retry_wait=1",
        &s,
        &t,
    ]);
    assert_eq!(out, "application api added\n");
    let row = lab.wait_status("api", "NORMAL by its probe", |r| r["state"] == "NORMAL");
    assert_eq!(
        (row["monitor"].as_str(), row["result"].as_str()),
        (Some("tcp"), Some("NORMAL"))
    );
    let query = lab.ok(&["query", "app", "api"]);
    assert!(
        query.contains(" probe=tcp\n") && query.contains(&format!(" probe_port={port}\n")),
        "{query}"
    );
    assert!(!query.contains("monitor_script"), "{query}");
    let out = lab.ctl(&["modify", "app", "api", "probe_uri=/x"]);
    assert_eq!(
        (out.status.code(), stderr(&out)),
        (
            Some(2),
            "vmmd ctl: probe_uri=/x is invalid: only for probe=http\n".to_owned()
        )
    );
    lab.ok(&["delete", "app", "api"]);

    // Dependencies, then delete.
    let add2 = [
        "add",
        "app",
        "db",
        &m,
        &s,
        &t,
        "monitor_period=2",
        "monitor_timeout=1",
    ];
    lab.ok(&add2);
    lab.ok(&[
        "add",
        "dependency",
        "dependency_type=start_sequence",
        "dependency_list=db,web",
    ]);
    let deps = lab.ok(&["query", "dependency"]);
    assert_eq!(
        deps,
        "Dependency 1\n dependency_type=start_sequence\n dependency_list=db,web\n strict=yes\n"
    );
    let out = lab.ctl(&["delete", "app", "db"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("delete the dependency first"),
        "{}",
        stderr(&out)
    );
    lab.ok(&[
        "delete",
        "dependency",
        "dependency_type=start_sequence",
        "dependency_list=db,web",
    ]);
    lab.ok(&["delete", "app", "db"]);
    assert_eq!(
        lab.ok(&["delete", "app", "web"]),
        "application web deleted\n"
    );
    assert!(
        lab.ok(&["query", "app"])
            .contains("no application configured")
    );
    let vmm = lab.ok(&["query", "vmm"]);
    assert!(
        vmm.contains(&format!(" vm_uuid={VM_UUID}\n")) && vmm.contains(" apps=0/16\n"),
        "{vmm}"
    );
    let log = daemon.log();
    assert_eq!(daemon.stop(), Some(0), "{log}");
}

#[test]
fn a_broken_applications_file_stops_the_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let apps = dir.path().join("apps.toml");
    std::fs::write(&apps, "[[app]]\nname = \"web\"\nmonitor_script = \"/m\"\nstart_script = \"/s\"\nstop_script = \"/t\"\nmax_restart = 0\n").expect("apps");
    let config = dir.path().join("vmmd.toml");
    std::fs::write(
        &config,
        format!(
            "vm_uuid = \"{VM_UUID}\"\n[ame]\nsocket = \"{}\"\napps_file = \"{}\"\n",
            dir.path().join("run/ctl.sock").display(),
            apps.display()
        ),
    )
    .expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_vmmd"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("vmmd");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "vmmd: apps file {} line 6: app[0] (web) max_restart: max_restart=0 is invalid: 1..=1000\n",
            apps.display()
        )
    );
    assert!(!dir.path().join("run").exists(), "nothing opened");
}
