//! The real `hmd` on a PostgreSQL HSDB that is down when it starts and crashes while it
//! runs: it monitors from the start, registers once the database answers (then applies
//! the control plane's stops and declares MISSING the previous run's VMs that did not
//! come back), rides out the crash, and is the same process at the end.
//!
//! Needs root (a network namespace for the HA interface) and PostgreSQL (`pglab`);
//! prints `SKIPPED` and passes without them, except under `CI=true` for PostgreSQL. The
//! daemon reaches the server through its Unix socket, which crosses network namespaces.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hsdb::{HeartbeatState, Hsdb, Transition, Uuid};

thread_local! {
    /// The daemon's log, shown when a wait times out.
    static LOG: std::cell::RefCell<Option<std::path::PathBuf>> = const { std::cell::RefCell::new(None) };
}

const HM: &str = "5c3196a3-c41f-4b5c-9861-dee6077081c6";

fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}\n{}",
            LOG.with(|l| l
                .borrow()
                .as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok()))
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `hmd ctl stats` as (name, value) of the daemon's own counters.
fn stats(socket: &Path) -> Option<Vec<(String, u64)>> {
    let out = Command::new(env!("CARGO_BIN_EXE_hmd"))
        .args(["ctl", "--socket", &socket.display().to_string(), "stats"])
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("- "))
            .filter_map(|l| l.split_once(' '))
            .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
            .collect()
    })
}

fn stat(socket: &Path, name: &str) -> Option<u64> {
    stats(socket)?
        .into_iter()
        .find_map(|(k, v)| (k == name).then_some(v))
}

fn ctl(socket: &Path, what: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hmd"))
        .args(["ctl", "--socket", &socket.display().to_string(), what])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kills the daemon if the test fails before it stops it.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn hmd_starts_without_postgresql_registers_when_it_answers_and_rides_out_a_crash() {
    if let Some(why) = netlab::missing_capabilities() {
        eprintln!("SKIPPED hmd_starts_without_postgresql: {why}");
        return;
    }
    let Some(server) = pglab::require_owned("hmd_starts_without_postgresql") else {
        return;
    };
    let hm = Uuid::parse(HM.as_bytes()).unwrap();
    let (detected, stopped) = (Uuid([0xd1; 16]), Uuid([0x57; 16]));

    // The previous run's rows: a VM left DETECTED, one the control plane stopped.
    let tcp_url = server.fresh_database("hmd_start");
    let dbname = tcp_url.rsplit('/').next().unwrap().to_owned();
    let tcp = hsdb::Target::parse(&tcp_url).unwrap();
    {
        let mut db = Hsdb::connect(&tcp, &hsdb::Options::default()).unwrap();
        db.upsert_host(&hsdb::HostRecord {
            id: hsdb::HostId(1),
            name: "host1".into(),
            machine_type: String::new(),
            model: String::new(),
            serial: String::new(),
            cpu_milli: 0,
            memory_mb: 0,
            host_group: String::new(),
        })
        .unwrap();
        db.register_hm(&hsdb::HmRecord {
            uuid: hm,
            host: hsdb::HostId(1),
            mac: hsdb::MacAddr::default(),
            incarnation: hsdb::HelloId {
                secs: 1,
                nanos: 0,
                suffix: 1,
            },
            version: dataplane::wire::VERSION,
            at: 1,
        })
        .unwrap();
        let discovered = |vm| Transition::Discovered {
            vm,
            hm,
            mac: hsdb::MacAddr([2, 0, 0, 0, 0, vm.0[0]]),
            ostype: "linux".into(),
            ver_lower: dataplane::wire::VERSION,
            ver_upper: dataplane::wire::VERSION,
            at: 2,
        };
        db.apply(&[
            discovered(detected),
            discovered(stopped),
            Transition::StopWatching {
                vm: stopped,
                hm,
                at: 3,
            },
        ])
        .unwrap();
    }
    server.stop_fast();

    // The daemon in a namespace of its own, its HA interface a veth end there.
    let ns = netlab::Netns::new("hvride", "pgstart");
    ns.ip(&["link", "set", "lo", "up"]);
    netlab::veth(
        netlab::VethEnd::new(ns.name(), "hv0"),
        netlab::VethEnd::new(ns.name(), "hv0peer"),
    );
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("hmd.sock");
    let encoded: String = server
        .dir()
        .display()
        .to_string()
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let url = format!("postgres://hvha@{encoded}:{}/{dbname}", server.port());
    let config = dir.path().join("hmd.toml");
    std::fs::write(
        &config,
        format!(
            "monitor_uuid = \"{HM}\"\nhost_id = 1\nhost_name = \"host1\"\nhsdb = \"{url}\"\n\
             admin_socket = \"{}\"\ninterfaces = [\"hv0\"]\nhello_period_ms = 300\n\
             hb_period_ms = 200\nvm_miss_after_ms = 600\nhm_heartbeat_period_ms = 200\n\
             log = \"info\"\n",
            socket.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("hmd.log");
    LOG.with(|l| *l.borrow_mut() = Some(log.clone()));
    let mut daemon = Daemon(
        Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(env!("CARGO_BIN_EXE_hmd"))
            .args(["--config", &config.display().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let pid = daemon.0.id();

    // Monitoring without the HSDB: the admin socket answers, transitions are held.
    wait_for("hmd answering", Duration::from_secs(30), || {
        (stat(&socket, "hsdb_connected")? == 0 && stat(&socket, "hsdb_backlog")? >= 2).then_some(())
    });
    assert!(logs().contains("HSDB unavailable at start"), "{}", logs());
    assert_eq!(stat(&socket, "hsdb_transitions"), Some(0));
    let status = ctl(&socket, "status");
    assert!(
        status.contains("hsdb state   UNAVAILABLE since"),
        "{status}"
    );
    assert!(!status.contains("s3cret"));
    // The previous run's VM has not paired by its deadline (start + 300 + 600 ms) while
    // the HSDB was down: it is declared MISSING once the registration says it existed.
    std::thread::sleep(Duration::from_millis(1200));

    server.start_again();
    wait_for("registered and caught up", Duration::from_secs(60), || {
        (stat(&socket, "hsdb_connected")? == 1 && stat(&socket, "hsdb_owed")? == 0).then_some(())
    });
    wait_for(
        "the late registration merged",
        Duration::from_secs(30),
        || {
            logs()
                .contains("HSDB registration done after it became available")
                .then_some(())
        },
    );
    let status = ctl(&socket, "status");
    assert!(
        status.contains("monitoring   1 VMs stopped by the control plane"),
        "{status}"
    );
    let row = |vm: &Uuid| {
        let db = Hsdb::connect_read_only(&tcp, &hsdb::Options::default()).ok()?;
        db.vm_hm(vm, &hm).ok()?
    };
    let missing = wait_for("the unpaired VM MISSING", Duration::from_secs(30), || {
        row(&detected).filter(|r| r.last_state == HeartbeatState::Missing)
    });
    assert!(missing.hb_missed_ms.is_some());
    assert_eq!(
        row(&stopped).map(|r| r.last_state),
        Some(HeartbeatState::Stopped),
        "the stop outlives the restart"
    );
    {
        let db = Hsdb::connect_read_only(&tcp, &hsdb::Options::default()).unwrap();
        let me = db.hm(&hm).unwrap().unwrap();
        assert_ne!(me.incarnation.secs, 1, "this run registered itself");
        let ifaces = db.hm_interfaces(&hm).unwrap();
        assert_eq!(ifaces.len(), 1, "{ifaces:?}");
        assert_eq!(ifaces[0].name, "hv0");
    }

    // A crash while it runs: monitoring goes on; back without a restart.
    server.stop_immediate();
    wait_for("the crash noticed", Duration::from_secs(30), || {
        (stat(&socket, "hsdb_connected")? == 0).then_some(())
    });
    let committed = stat(&socket, "hsdb_transitions").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // Healthy: a restart would not bring the database back.
    let health = Command::new(env!("CARGO_BIN_EXE_hmd"))
        .args(["health", "--socket", &socket.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(
        (
            health.status.code(),
            String::from_utf8_lossy(&health.stdout).trim().to_owned()
        ),
        (Some(0), "healthy".to_owned()),
        "{}",
        logs()
    );
    assert!(
        stat(&socket, "hsdb_backlog").unwrap() >= 1,
        "heartbeats held"
    );
    server.start_again();
    wait_for("back and caught up", Duration::from_secs(60), || {
        (stat(&socket, "hsdb_connected")? == 1
            && stat(&socket, "hsdb_owed")? == 0
            && stat(&socket, "hsdb_transitions")? > committed)
            .then_some(())
    });
    assert_eq!(stat(&socket, "hsdb_outages"), Some(2), "{}", logs());
    assert!(logs().contains("HSDB connected after"), "{}", logs());
    assert_eq!(daemon.0.id(), pid);
    assert_eq!(
        daemon.0.try_wait().unwrap(),
        None,
        "still running\n{}",
        logs()
    );

    // A clean stop commits what is held and exits 0.
    netlab::run(&["kill", "-TERM", &pid.to_string()]);
    let code = wait_for("the stop", Duration::from_secs(30), || {
        daemon.0.try_wait().unwrap()
    });
    assert_eq!(code.code(), Some(0), "{}", logs());
    assert!(!logs().contains("s3cret"));
}
