//! Application monitoring end to end (issue 11, item 6): the three-host group of
//! `control_loop.rs` (`group::build`: two real `hmd` per host writing one SQLite HSDB,
//! real `vmmd` agents in namespaces, `hactl run` in the fast profile on libvirt's test
//! hypervisor), with two applications configured in the agent of VM `vm-0-1` on host-a
//! through the real `vmmd ctl`:
//!
//! - `db`, script-monitored and **critical**: its start script launches a small daemon
//!   (a `sleep` of its own, its pid in a file), its monitor script checks that pid, its
//!   stop script kills it; short periods (`monitor_period=2`, one failed monitor
//!   restarts it, `max_restart=1`);
//! - `web`, monitored by the built-in HTTP probe (`probe=http`, every second) against a
//!   real HTTP server the test runs on the loopback of the VM's namespace; not critical.
//!   Its start and stop scripts do nothing: the test is the web server's manager.
//!
//! Then:
//!
//! 1. both applications reach the control plane through the doorbell-and-report path
//!    (`hactl query app`: NORMAL, GREEN, critical as configured);
//! 2. the HTTP server stops: `web` goes to FAILURE in the guest, `hactl query app` shows
//!    it FAILURE / RED / not critical, an APP_FAILURE event notifies it, and the VM is
//!    not touched (no restart row); the server comes back and an operator's
//!    `vmmd ctl start app web` brings it back to NORMAL;
//! 3. `db`'s daemon is killed again and again until the agent's AME gives up (FAILURE
//!    after its one local restart); the control plane restarts the VM on its host, and
//!    after the third same-host restart, at the fourth FAILURE, relocates it to another
//!    host (the ladder, seed 004 L13767-13771), each rung once (no restart more than the
//!    failures: exactly four APP_FAILURE_DETECTED and four restart rows); the events
//!    VM_RESTART_COMPLETED and APP_CRITICAL_FAILURE are in the outbox (the latter when
//!    the FAILURE report's fetch completed before the VM went down: the doorbell's
//!    critical bit alone is enough to climb the ladder), `hactl query app` showed `db`
//!    in FAILURE / RED / critical with its restarts used up, and after each restart it
//!    shows `db` NORMAL again with no restart used, reported by the fresh agent (another
//!    incarnation) — after the relocation, by the agent on the new host.
//!
//! **The test plays the VM.** libvirt's test hypervisor restarts nothing: a "domain" is
//! a line of state in `hactl`'s connection. So the test does what a real VM's reboot
//! does, following the restart's `relocation` row (the executor's phases, written to
//! the HSDB as they happen): once the row is past `stopping_ha_monitoring` (the platform
//! stops the domain next) the VM's `vmmd` is killed with SIGKILL and so is `db`'s daemon
//! (a powered-off VM keeps no process); once the row has ended in success, a fresh
//! `vmmd` starts with the same configuration and applications' file (the VM's disk) in
//! the namespace of the host the row names — the VM's own namespace for a restart on
//! host-a, that host's spare namespace for the relocation — so its AME starts from
//! scratch (counters at zero, `db` found down and started by its start script), as
//! after a real boot. The HTTP server of `web` runs in whichever namespace the VM is in.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use hsdb::{HostId, RelocationKind, RelocationRow};
use hvha_e2e::group::{Group, HOSTS, build, hactl, real_vm};
use hvha_e2e::{binary, spawn_in_netns, uuid, wait_for};

/// The VM under test: `vm-0-1`, host-a's first `vmmd` VM.
const VM_NAME: &str = "vm-0-1";
/// The HTTP server's port on the VM's loopback.
const WEB_PORT: u16 = 8080;
/// Generous bound on any one wait (a loaded 2-core machine).
const WAIT: Duration = Duration::from_secs(60);

/// A small HTTP/1.1 server on `127.0.0.1:port` in a namespace: `200 OK` to every
/// request; stopping it closes its listening socket (the probe's connection is refused).
struct HttpServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    fn start(ns: &str, port: u16) -> HttpServer {
        let listener = spawn_in_netns(ns, move || TcpListener::bind(("127.0.0.1", port)))
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("HTTP server on 127.0.0.1:{port}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut head = Vec::new();
                        let mut buf = [0u8; 512];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                            match stream.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        let _ = stream.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            // The listener drops here: the port is closed.
        });
        HttpServer {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The applications' scripts in `<lab>/app` (0755: the AME refuses a directory or a
/// script others may write). Returns the daemon's pid file.
fn write_scripts(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let app = dir.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pidfile = app.join("db.pid");
    let pid = pidfile.display();
    // The AME runs scripts with a clean environment and its own PATH, never through a
    // shell string: these are files with a #! line.
    write_script(
        &app.join("db-start"),
        &format!(
            "#!/bin/sh\n# The database daemon: a process of its own, detached from the\n\
             # script's output, its pid in the pid file.\n\
             sleep 100000 </dev/null >/dev/null 2>&1 &\necho $! > {pid}\nexit 0\n"
        ),
    );
    write_script(
        &app.join("db-monitor"),
        &format!("#!/bin/sh\nkill -0 \"$(cat {pid} 2>/dev/null)\" 2>/dev/null\n"),
    );
    write_script(
        &app.join("db-stop"),
        &format!("#!/bin/sh\nkill \"$(cat {pid} 2>/dev/null)\" 2>/dev/null\nexit 0\n"),
    );
    write_script(&app.join("web-start"), "#!/bin/sh\nexit 0\n");
    write_script(&app.join("web-stop"), "#!/bin/sh\nexit 0\n");
    pidfile
}

/// `vmmd --config <config> ctl args…`: its standard output; panics unless it succeeds.
fn vmmd_ctl(config: &Path, args: &[&str]) -> String {
    let out = Command::new(binary("vmmd"))
        .arg("--config")
        .arg(config)
        .arg("ctl")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vmmd ctl {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The state of application `name` in `vmmd ctl status` (its second column), if the
/// agent answers.
fn guest_state(config: &Path, name: &str) -> Option<String> {
    let out = Command::new(binary("vmmd"))
        .arg("--config")
        .arg(config)
        .args(["ctl", "status", name])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some(name)).then(|| w.next().unwrap_or_default().to_owned())
    })
}

/// One application as `hactl query app VM --json` shows it.
#[derive(Debug, Clone)]
struct AppSeen {
    state: String,
    colour: String,
    critical: bool,
    restarts: u64,
    max_restart: u64,
    monitor: String,
    report_inc: String,
}

fn query_app(g: &Group, name: &str) -> Option<AppSeen> {
    let text = hactl(&g.hsdb, &["query", "app", VM_NAME, "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&text).ok()?;
    rows.as_array()?
        .iter()
        .find(|a| a["name"] == name)
        .map(|a| AppSeen {
            state: a["state"].as_str().unwrap_or_default().to_owned(),
            colour: a["colour"].as_str().unwrap_or_default().to_owned(),
            critical: a["critical"].as_bool().unwrap_or_default(),
            restarts: a["restarts"].as_u64().unwrap_or_default(),
            max_restart: a["max_restart"].as_u64().unwrap_or_default(),
            monitor: a["monitor"].as_str().unwrap_or_default().to_owned(),
            report_inc: a["report_inc"].as_str().unwrap_or_default().to_owned(),
        })
}

/// Wait until `hactl query app` shows application `name` as `want` says.
fn wait_app(g: &Group, name: &str, what: &str, mut want: impl FnMut(&AppSeen) -> bool) -> AppSeen {
    wait_for(WAIT, || query_app(g, name).filter(|a| want(a))).unwrap_or_else(|| {
        panic!(
            "hactl query app: {name} never {what}; last seen {:?}\n{}",
            query_app(g, name),
            logs(g)
        )
    })
}

/// The events about the VM in the outbox: (kind, text), oldest first.
fn events(g: &Group) -> Vec<(String, String)> {
    let vm = uuid(&real_vm(0, 1));
    let Some(db) = g.db() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut after = 0;
    while let Ok(page) = db.events_after(after, 1000) {
        let Some(last) = page.last().map(|e| e.id) else {
            break;
        };
        after = last;
        out.extend(
            page.into_iter()
                .filter(|e| e.vm == Some(vm))
                .map(|e| (e.kind, e.text)),
        );
    }
    out
}

fn count(events: &[(String, String)], kind: &str) -> usize {
    events.iter().filter(|(k, _)| k == kind).count()
}

/// The group's logs and the test's own agents' (every boot of the VM).
fn logs(g: &Group) -> String {
    let mut out = g.logs();
    for boot in 1..=8 {
        let label = format!("vm-boot{boot}");
        if g.lab.dir.join(format!("{label}.log")).exists() {
            out.push_str(&format!("--- {label}\n{}", g.lab.log(&label)));
        }
    }
    out
}

fn read_pid(pidfile: &Path) -> Option<u32> {
    std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn kill_pid(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}

/// The restarts of the VM, oldest first.
fn restarts(g: &Group) -> Vec<RelocationRow> {
    g.relocations(&uuid(&real_vm(0, 1)))
}

/// Kill `db`'s daemon until the agent's AME reports `db` in FAILURE (`vmmd ctl status`):
/// each kill is seen by the next monitor run, the AME restarts it (stop, start) while it
/// has restarts left. Returns how many kills it took.
fn kill_until_failure(g: &Group, config: &Path, pidfile: &Path) -> usize {
    for kills in 1..=6 {
        let pid = wait_for(WAIT, || read_pid(pidfile).filter(|p| alive(*p)))
            .unwrap_or_else(|| panic!("db's daemon is not running\n{}", logs(g)));
        kill_pid(pid);
        // Either the AME starts a new daemon (a local restart), or it gives up.
        let next = wait_for(WAIT, || {
            if guest_state(config, "db").as_deref() == Some("FAILURE") {
                return Some(None);
            }
            read_pid(pidfile)
                .filter(|p| *p != pid && alive(*p))
                .map(Some)
        })
        .unwrap_or_else(|| {
            panic!(
                "after kill {kills}, db neither restarted nor in FAILURE: {:?}\n{}",
                guest_state(config, "db"),
                logs(g)
            )
        });
        if next.is_none() {
            return kills;
        }
    }
    panic!("db never reached FAILURE after 6 kills\n{}", logs(g));
}

#[test]
fn critical_app_failures_climb_the_ladder_and_a_non_critical_one_is_only_notified() {
    let Some(mut g) = build("appmon") else {
        return;
    };
    assert!(
        wait_for(Duration::from_secs(30), || g.all_detected().then_some(())).is_some(),
        "every VM DETECTED by both monitors of its host within 30 s\n{}",
        g.logs()
    );
    let config = g.hactl_config.display().to_string();
    let ctl_ns = g.ctl_ns.clone();
    g.lab
        .spawn("hactl", &ctl_ns, "hactl", &["--config", &config, "run"]);
    assert!(
        wait_for(Duration::from_secs(10), || {
            Command::new(binary("hactl"))
                .args(["--config", &config, "status"])
                .output()
                .ok()
                .filter(|o| o.status.success())
        })
        .is_some(),
        "hactl run answers\n{}",
        g.logs()
    );

    // The VM's namespace, its agent's configuration (with its own [ame] socket and
    // applications' file: group::start_vmmd), the applications' scripts.
    let vm_ns = g.ctl_ns.replace("-ctl", "-h0v1");
    let agent_config = g.lab.dir.join("vmmd-0-1.toml");
    let pidfile = write_scripts(&g.lab.dir);
    let app = g.lab.dir.join("app");
    let script = |name: &str| app.join(name).display().to_string();
    let mut web_server = HttpServer::start(&vm_ns, WEB_PORT);

    // The operator configures the applications with vmmd ctl (docs/operators.md).
    vmmd_ctl(
        &agent_config,
        &[
            "add",
            "app",
            "db",
            &format!("monitor_script={}", script("db-monitor")),
            &format!("start_script={}", script("db-start")),
            &format!("stop_script={}", script("db-stop")),
            "monitor_period=2",
            "monitor_timeout=1",
            "monitor_failure_threshold=1",
            "stop_stabilization_time=5",
            "start_stabilization_time=5",
            "max_restart=1",
            "critical=yes",
        ],
    );
    vmmd_ctl(
        &agent_config,
        &[
            "add",
            "app",
            "web",
            "probe=http",
            "probe_server=127.0.0.1",
            &format!("probe_port={WEB_PORT}"),
            "probe_interval=1",
            "probe_timeout=1",
            "probe_retries=1",
            "probe_retry_wait=1",
            "monitor_failure_threshold=1",
            "max_restart=1",
            "stop_stabilization_time=5",
            "start_stabilization_time=5",
            &format!("start_script={}", script("web-start")),
            &format!("stop_script={}", script("web-stop")),
        ],
    );

    // 1. Both reported, healthy.
    let db = wait_app(&g, "db", "NORMAL", |a| a.state == "NORMAL");
    assert_eq!(
        (db.colour.as_str(), db.critical, db.monitor.as_str()),
        ("GREEN", true, "script"),
        "{db:?}"
    );
    let web = wait_app(&g, "web", "NORMAL", |a| a.state == "NORMAL");
    assert_eq!(
        (web.colour.as_str(), web.critical, web.monitor.as_str()),
        ("GREEN", false, "http"),
        "{web:?}"
    );

    // 2. The web server stops: the non-critical application fails, is notified, and
    //    nothing happens to the VM.
    web_server.stop();
    let web = wait_app(&g, "web", "in FAILURE", |a| a.state == "FAILURE");
    assert_eq!(
        (
            web.colour.as_str(),
            web.critical,
            web.restarts,
            web.max_restart
        ),
        ("RED", false, 1, 1),
        "web used its one local restart before FAILURE: {web:?}"
    );
    assert!(
        wait_for(WAIT, || (count(&events(&g), "APP_FAILURE") > 0)
            .then_some(()))
        .is_some(),
        "APP_FAILURE notified for web: {:?}\n{}",
        events(&g),
        logs(&g)
    );
    // Several scans of the fast profile (1 s each) later, still no restart of the VM and
    // no escalation.
    std::thread::sleep(Duration::from_secs(4));
    let ev = events(&g);
    assert!(
        restarts(&g).is_empty(),
        "a non-critical FAILURE restarted the VM: {:?}",
        restarts(&g)
    );
    assert_eq!(count(&ev, "APP_FAILURE_DETECTED"), 0, "{ev:?}");
    assert_eq!(query_app(&g, "db").map(|a| a.state), Some("NORMAL".into()));
    // The server comes back; the operator starts the application again.
    web_server = HttpServer::start(&vm_ns, WEB_PORT);
    vmmd_ctl(&agent_config, &["start", "app", "web"]);
    wait_app(&g, "web", "NORMAL again", |a| a.state == "NORMAL");

    // 3. The critical application fails four times: three restarts on host-a, then a
    //    relocation.
    let mut label = "vmmd-0-1".to_owned();
    let mut ns = vm_ns.clone();
    let mut seen_failure = Vec::new();
    for round in 1..=4 {
        let before = restarts(&g).len();
        let incarnation =
            wait_app(&g, "db", "NORMAL before the kills", |a| a.state == "NORMAL").report_inc;
        let kills = kill_until_failure(&g, &agent_config, &pidfile);
        assert_eq!(
            kills, 2,
            "max_restart=1: the second kill leaves db in FAILURE (round {round})"
        );
        // The control plane's answer: one new restart row.
        let row = wait_for(WAIT, || restarts(&g).get(before).cloned()).unwrap_or_else(|| {
            panic!(
                "round {round}: no restart after db's FAILURE; restarts {:?}\nevents {:?}\n{}",
                restarts(&g),
                events(&g),
                logs(&g)
            )
        });
        // What `hactl query app` shows from here until the fresh agent reports: the
        // FAILURE report, once the control plane stored it (its fetch may complete
        // before the VM goes down, or not).
        let mut seen = None;
        let mut watch = |g: &Group| {
            if let Some(a) = query_app(g, "db").filter(|a| a.state == "FAILURE") {
                seen = Some(a);
            }
        };
        // Play the VM: down once monitoring of it is being stopped and the stop comes...
        let id = row.id;
        let phase_of = |g: &Group| restarts(g).into_iter().find(|r| r.id == id);
        wait_for(WAIT, || {
            watch(&g);
            phase_of(&g).filter(|r| r.phase != "queued" && r.phase != "stopping_ha_monitoring")
        })
        .unwrap_or_else(|| panic!("round {round}: restart {id} stuck\n{}", logs(&g)));
        g.lab.kill_9(&label);
        if let Some(pid) = read_pid(&pidfile) {
            kill_pid(pid);
        }
        // ...and up again, where the platform started it, once the restart is done.
        let done = wait_for(WAIT, || {
            watch(&g);
            phase_of(&g).filter(|r| r.ended_ms.is_some())
        })
        .unwrap_or_else(|| panic!("round {round}: restart {id} never ended\n{}", logs(&g)));
        assert!(
            done.result
                .as_deref()
                .unwrap_or_default()
                .starts_with("success"),
            "round {round}: {done:?}\n{}",
            logs(&g)
        );
        let host_a = Some(HostId(HOSTS[0].1));
        if round <= 3 {
            assert_eq!(
                (done.kind, done.from_host, done.to_host),
                (RelocationKind::Restart, host_a, host_a),
                "round {round}: restart on the same host"
            );
        } else {
            assert_eq!(done.kind, RelocationKind::Relocate, "round 4 relocates");
            assert_eq!(done.from_host, host_a);
            assert!(
                done.to_host.is_some() && done.to_host != host_a,
                "relocated to another host: {done:?}"
            );
            let to = HOSTS
                .iter()
                .position(|(_, id)| Some(HostId(*id)) == done.to_host)
                .unwrap();
            ns = g.spare_ns[to].clone();
            web_server.stop();
            web_server = HttpServer::start(&ns, WEB_PORT);
        }
        label = format!("vm-boot{round}");
        let agent = agent_config.display().to_string();
        g.lab.spawn(&label, &ns, "vmmd", &["--config", &agent]);
        // The fresh agent's report: another incarnation, db found down, started, NORMAL.
        let after = wait_app(&g, "db", "NORMAL after the VM's restart", |a| {
            watch(&g);
            a.state == "NORMAL" && a.report_inc != incarnation
        });
        eprintln!(
            "round {round}: {kills} kills, restart {done:?}, hactl query app showed {seen:?}"
        );
        seen_failure.push(seen);
        assert_eq!(
            (after.restarts, after.colour.as_str()),
            (0, "GREEN"),
            "a fresh AME: {after:?}"
        );
    }

    // Exactly one restart per failure: three on host-a, then the relocation.
    std::thread::sleep(Duration::from_secs(3));
    let rows = restarts(&g);
    assert_eq!(
        rows.len(),
        4,
        "one restart per FAILURE: {rows:?}\n{}",
        logs(&g)
    );
    let ev = events(&g);
    assert_eq!(
        count(&ev, "APP_FAILURE_DETECTED"),
        4,
        "one escalation per FAILURE: {ev:?}"
    );
    // The doorbell's critical bit alone drives the ladder; the FAILURE report itself is
    // stored (APP_CRITICAL_FAILURE) when its fetch completes before the VM goes down.
    let critical = count(&ev, "APP_CRITICAL_FAILURE");
    assert!(
        (1..=4).contains(&critical),
        "{critical} APP_CRITICAL_FAILURE: {ev:?}"
    );
    assert!(count(&ev, "VM_RESTART_COMPLETED") >= 4, "{ev:?}");
    assert!(count(&ev, "APP_STATE_CHANGED") >= 1, "{ev:?}");
    // At least one FAILURE report reached `hactl query app` before the VM went down,
    // with the colour, criticality and restarts of a critical application out of local
    // restarts.
    let failures: Vec<&AppSeen> = seen_failure
        .iter()
        .flatten()
        .filter(|a| a.state == "FAILURE")
        .collect();
    assert!(
        !failures.is_empty(),
        "hactl query app showed db in FAILURE at some rung: {seen_failure:?}"
    );
    for a in failures {
        assert_eq!(
            (a.colour.as_str(), a.critical, a.restarts, a.max_restart),
            ("RED", true, 1, 1),
            "{a:?}"
        );
    }
    let vm = g.db().unwrap().vm(&uuid(&real_vm(0, 1))).unwrap().unwrap();
    assert_eq!(
        vm.current_host, rows[3].to_host,
        "the VM lives on its new host"
    );
    drop(web_server);
}
