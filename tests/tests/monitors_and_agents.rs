//! Two host monitors (one per I/O partition) and three agents, real processes on veth
//! pairs in network namespaces, health read back from the monitors' HSDB files.

use std::path::Path;
use std::time::{Duration, Instant};

use hsdb::{HeartbeatState, Hsdb, Options};
use hvha_e2e::{Lab, hmd_toml, http_get, in_netns, uuid, wait_for};

const HM: [&str; 2] = [
    "5c3196a3-c41f-4b5c-9861-dee6077081c6",
    "5c3196a3-c41f-4b5c-9861-dee6077081c7",
];
const MISS_AFTER_MS: u64 = 1000;

fn vm_uuid(i: usize) -> String {
    format!("61be20f0-09a8-4753-b5e5-564f8a545ed{i}")
}

/// What monitor `hm` last wrote about `vm`, if the HSDB can be read yet.
fn state(hsdb: &Path, vm: &str, hm: &str) -> Option<HeartbeatState> {
    let db = Hsdb::open(hsdb, &Options::default()).ok()?;
    db.vm_hm(&uuid(vm), &uuid(hm)).ok()??.last_state.into()
}

fn hmd_config(lab: &Lab, n: usize, interfaces: &[String]) -> std::path::PathBuf {
    let interfaces: Vec<&str> = interfaces.iter().map(String::as_str).collect();
    lab.write(
        &format!("hmd{n}.toml"),
        &hmd_toml(
            HM[n - 1],
            &lab.dir.join(format!("hsdb{n}.sqlite")),
            &lab.dir.join(format!("hmd{n}.sock")),
            &interfaces,
            &format!(
                "hello_period_ms = 500\nhb_period_ms = 200\nvm_miss_after_ms = {MISS_AFTER_MS}\n\
                 hm_heartbeat_period_ms = 1000\nflush_ms = 10\nlog = \"debug\"\n\
                 metrics_listen = \"127.0.0.1:9464\"\n"
            ),
        ),
    )
}

fn vmmd_config(lab: &Lab, i: usize) -> std::path::PathBuf {
    lab.write(
        &format!("vmmd{i}.toml"),
        &format!(
            "vm_uuid = \"{}\"\ninterfaces = [\"ha1\", \"ha2\"]\nrescan_ms = 1000\nlog = \"debug\"\n{}",
            vm_uuid(i),
            hvha_e2e::vmmd_ame_section(&lab.dir, &format!("vmmd{i}"))
        ),
    )
}

struct Setup {
    lab: Lab,
    hm_ns: [String; 2],
    hsdb: [std::path::PathBuf; 2],
}

fn setup(test: &str, agents: usize) -> Option<Setup> {
    let mut lab = Lab::new(test)?;
    let hm_ns = [lab.netns("hm1"), lab.netns("hm2")];
    let mut ifaces: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for i in 1..=agents {
        let ns = lab.netns(&format!("a{i}"));
        for (m, hm) in hm_ns.iter().enumerate() {
            let peer = format!("h{}a{i}", m + 1);
            lab.link(&ns, &format!("ha{}", m + 1), hm, &peer);
            ifaces[m].push(peer);
        }
    }
    for (m, hm) in hm_ns.iter().enumerate() {
        let config = hmd_config(&lab, m + 1, &ifaces[m]);
        let config = config.display().to_string();
        lab.spawn(&format!("hmd{}", m + 1), hm, "hmd", &["--config", &config]);
    }
    for i in 1..=agents {
        let config = vmmd_config(&lab, i).display().to_string();
        let agent_ns = hm_ns[0].replace("-hm1", &format!("-a{i}"));
        lab.spawn(
            &format!("vmmd{i}"),
            &agent_ns,
            "vmmd",
            &["--config", &config],
        );
    }
    let hsdb = [lab.dir.join("hsdb1.sqlite"), lab.dir.join("hsdb2.sqlite")];
    Some(Setup { lab, hm_ns, hsdb })
}

fn wait_state(
    s: &Setup,
    monitor: usize,
    vm: usize,
    want: HeartbeatState,
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    wait_for(within, || {
        (state(&s.hsdb[monitor], &vm_uuid(vm), HM[monitor]) == Some(want))
            .then(|| started.elapsed())
    })
}

/// `GET path` from hmd's Prometheus listener, inside the monitor's namespace.
fn metrics_get(ns: &str, path: &str) -> String {
    let path = path.to_owned();
    in_netns(ns, move || http_get("127.0.0.1:9464", &path))
}

fn logs(s: &Setup) -> String {
    ["hmd1", "hmd2", "vmmd1", "vmmd2", "vmmd3"]
        .iter()
        .map(|l| format!("--- {l}\n{}", s.lab.log(l)))
        .collect()
}

#[test]
fn discovery_missing_detected_suspended_on_both_monitors() {
    let Some(mut s) = setup("health", 3) else {
        return;
    };
    // Discovery and first heartbeats, on both monitors.
    for m in 0..2 {
        for vm in 1..=3 {
            assert!(
                wait_state(&s, m, vm, HeartbeatState::Detected, Duration::from_secs(10)).is_some(),
                "monitor {} never saw VM {vm} DETECTED\n{}",
                m + 1,
                logs(&s)
            );
        }
    }
    // Prometheus scrapes the counters over HTTP.
    let scrape = metrics_get(&s.hm_ns[0], "/metrics");
    assert!(scrape.starts_with("HTTP/1.1 200 OK\r\n"), "{scrape}");
    assert!(
        scrape.contains("Content-Type: text/plain; version=0.0.4"),
        "{scrape}"
    );
    let heartbeats: u64 = scrape
        .lines()
        .find_map(|l| l.strip_prefix("hvha_hmd_heartbeats_in_total{interface=\"h1a1\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no heartbeats_in_total for h1a1 in\n{scrape}"));
    assert!(heartbeats > 0, "{scrape}");
    for line in [
        "# TYPE hvha_hmd_heartbeats_in_total counter",
        "# HELP hvha_hmd_heartbeats_in_total Heartbeats received and accepted.",
        "hvha_hmd_kernel_drops_total{interface=\"h1a1\"} 0",
        "# TYPE hvha_hmd_vms gauge",
        "hvha_hmd_vms{interface=\"h1a1\",state=\"detected\"} 1",
        "hvha_hmd_vms{interface=\"h1a2\",state=\"missing\"} 0",
        "hvha_hmd_sessions{interface=\"h1a3\"} 1",
        "# TYPE hvha_hmd_vms_watched gauge",
        "hvha_hmd_vms_watched 3",
    ] {
        assert!(
            scrape.contains(&format!("\n{line}\n")),
            "no {line:?} in\n{scrape}"
        );
    }
    assert_prometheus_text(scrape.split("\r\n\r\n").nth(1).unwrap_or(""));
    let missing = metrics_get(&s.hm_ns[0], "/nope");
    assert!(missing.starts_with("HTTP/1.1 404 Not Found"), "{missing}");
    // The agent of VM 1 hangs: MISSING on both monitors within vm_miss_after + a tick.
    s.lab.signal("vmmd1", "STOP");
    for m in 0..2 {
        let took = wait_state(&s, m, 1, HeartbeatState::Missing, Duration::from_secs(5));
        let took = took
            .unwrap_or_else(|| panic!("monitor {} never saw VM 1 MISSING\n{}", m + 1, logs(&s)));
        assert!(
            took <= Duration::from_millis(MISS_AFTER_MS + 700),
            "MISSING after {took:?}, expected within vm_miss_after ({MISS_AFTER_MS} ms) + 1 heartbeat + commit"
        );
    }
    // The MISSING line names the interface and how long the VM was silent.
    let vm1 = vm_uuid(1);
    let missing = |label: &str| {
        s.lab
            .log(label)
            .lines()
            .find(|l| l.contains(&format!("vm={vm1}")) && l.contains("state=MISSING"))
            .map(str::to_owned)
    };
    let line = missing("hmd1").unwrap_or_else(|| panic!("no MISSING line\n{}", logs(&s)));
    assert!(line.contains("iface=h1a1"), "{line}");
    let silent_ms: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("silent_ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no silent_ms in {line}"));
    assert!(
        (MISS_AFTER_MS..MISS_AFTER_MS + 1000).contains(&silent_ms),
        "{line}"
    );
    // It resumes: DETECTED again.
    s.lab.signal("vmmd1", "CONT");
    for m in 0..2 {
        assert!(
            wait_state(&s, m, 1, HeartbeatState::Detected, Duration::from_secs(5)).is_some(),
            "monitor {} never saw VM 1 DETECTED again\n{}",
            m + 1,
            logs(&s)
        );
    }
    // VM 2's agent stops gracefully: SUSPENDED, and never MISSING afterwards.
    s.lab.stop_cleanly("vmmd2");
    for m in 0..2 {
        assert!(
            wait_state(&s, m, 2, HeartbeatState::Suspended, Duration::from_secs(5)).is_some(),
            "monitor {} never saw VM 2 SUSPENDED\n{}",
            m + 1,
            logs(&s)
        );
    }
    // `hmd ctl status` no longer counts VM 2's session.
    let status = hvha_e2e::hmd_ctl(&s.lab.dir.join("hmd1.sock"), "status").expect("status");
    assert!(
        status.contains("interface    h1a2 0 sessions, 0 opening, 1 shut down by their agent\n"),
        "{status}"
    );
    assert!(
        status.contains("interface    h1a1 1 sessions, 0 opening, 0 shut down by their agent\n"),
        "{status}"
    );
    std::thread::sleep(Duration::from_millis(2 * MISS_AFTER_MS));
    for (db, hm) in s.hsdb.iter().zip(HM) {
        assert_eq!(
            state(db, &vm_uuid(2), hm),
            Some(HeartbeatState::Suspended),
            "a stopped agent is never MISSING"
        );
    }
    // Monitor 1's interface to VM 3 loses its carrier: monitor 1 is deaf there, so it
    // withholds the miss (docs/architecture.md, "Link loss") and reports the interface
    // DOWN; monitor 2 still hears VM 3.
    s.lab.set_link(&s.hm_ns[0], "h1a3", false);
    let deaf = wait_for(Duration::from_secs(5), || {
        let db = Hsdb::open(&s.hsdb[0], &Options::default()).ok()?;
        db.hm_interfaces(&uuid(HM[0]))
            .ok()?
            .into_iter()
            .find(|r| r.name == "h1a3" && r.state == hsdb::InterfaceState::Down)
    });
    assert!(
        deaf.is_some(),
        "h1a3 DOWN in monitor 1's HSDB\n{}",
        logs(&s)
    );
    std::thread::sleep(Duration::from_millis(3 * MISS_AFTER_MS));
    for (db, hm) in s.hsdb.iter().zip(HM) {
        assert_eq!(
            state(db, &vm_uuid(3), hm),
            Some(HeartbeatState::Detected),
            "no miss declared through a dead link ({hm})"
        );
    }
    s.lab.set_link(&s.hm_ns[0], "h1a3", true);
    // One path lost while every carrier stays up: VM 3 stops using its interface to
    // monitor 1 (an address on it makes vmmd drop it at its next rescan, seed 004
    // L11244-11251). That monitor alone reports the miss.
    std::thread::sleep(Duration::from_millis(MISS_AFTER_MS));
    let agent_ns = s.hm_ns[0].replace("-hm1", "-a3");
    netlab::ip(&["-n", &agent_ns, "addr", "add", "192.0.2.3/24", "dev", "ha1"]);
    assert!(
        wait_state(&s, 0, 3, HeartbeatState::Missing, Duration::from_secs(10)).is_some(),
        "{}",
        logs(&s)
    );
    assert_eq!(
        state(&s.hsdb[1], &vm_uuid(3), HM[1]),
        Some(HeartbeatState::Detected)
    );
    // Monitors stop cleanly and leave a sound database.
    for m in ["hmd1", "hmd2"] {
        s.lab.stop_cleanly(m);
    }
    for db in &s.hsdb {
        Hsdb::open(db, &Options::default())
            .expect("open")
            .integrity_check()
            .expect("integrity");
    }
    // Every line, debug ones included (both daemons run at `log = "debug"`), is
    // key=value fields: no Rust struct (`Name { field: … }`) printed into a log.
    for label in ["hmd1", "hmd2", "vmmd1", "vmmd2", "vmmd3"] {
        let log = s.lab.log(label);
        assert!(log.lines().count() > 10, "{label} logged at debug\n{log}");
        let dumps: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" { ") || l.contains("{ ") && l.contains(": "))
            .collect();
        assert!(dumps.is_empty(), "{label}: {dumps:#?}");
    }
}

#[test]
fn monitor_killed_and_restarted_agents_pair_with_the_new_incarnation() {
    let Some(mut s) = setup("restart", 2) else {
        return;
    };
    for vm in 1..=2 {
        assert!(
            wait_state(&s, 0, vm, HeartbeatState::Detected, Duration::from_secs(10)).is_some(),
            "{}",
            logs(&s)
        );
    }
    let before = Hsdb::open(&s.hsdb[0], &Options::default())
        .expect("open")
        .hm(&uuid(HM[0]))
        .expect("read")
        .expect("registered");
    // Let the agents hear a few Hellos (every 500 ms): the interval between two is the
    // period they judge a monitor's silence by.
    std::thread::sleep(Duration::from_millis(1500));
    s.lab.kill_9("hmd1");
    // Inside the VMs, the silence of monitor 1 is logged (once), naming the interface.
    for vm in 1..=2 {
        let label = format!("vmmd{vm}");
        assert!(
            wait_for(Duration::from_secs(10), || log_has(
                &s,
                &label,
                "host monitor silent: no Hello for 3 periods"
            ))
            .is_some(),
            "{label} did not notice that the monitor went away\n{}",
            logs(&s)
        );
        let log = s.lab.log(&label);
        let silent: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("host monitor silent"))
            .collect();
        assert_eq!(silent.len(), 1, "{log}");
        assert!(
            silent[0].contains("iface=ha1") && silent[0].contains("silent_ms="),
            "{log}"
        );
    }
    let config = s.lab.dir.join("hmd1.toml").display().to_string();
    let ns = s.hm_ns[0].clone();
    s.lab.spawn("hmd1b", &ns, "hmd", &["--config", &config]);
    // The new incarnation registers, and both VMs pair with it and heartbeat.
    let after = wait_for(Duration::from_secs(10), || {
        let db = Hsdb::open(&s.hsdb[0], &Options::default()).ok()?;
        let hm = db.hm(&uuid(HM[0])).ok()??;
        (hm.incarnation != before.incarnation).then_some(hm)
    });
    assert!(
        after.is_some(),
        "the restarted monitor registered a new incarnation"
    );
    let log = s.lab.log("hmd1b");
    for vm in 1..=2 {
        assert!(
            wait_for(Duration::from_secs(10), || {
                let uuid = vm_uuid(vm);
                s.lab
                    .log("hmd1b")
                    .lines()
                    .any(|l| {
                        l.contains("VM state changed")
                            && l.contains(&format!("vm={uuid}"))
                            && l.contains("state=DETECTED")
                    })
                    .then_some(())
            })
            .is_some(),
            "VM {vm} did not pair with the new incarnation\n{log}\n{}",
            logs(&s)
        );
    }
    for vm in 1..=2 {
        let label = format!("vmmd{vm}");
        assert!(
            wait_for(Duration::from_secs(10), || log_has(
                &s,
                &label,
                "host monitor heard again"
            ))
            .is_some(),
            "{label} did not log the monitor's return\n{}",
            logs(&s)
        );
    }
    Hsdb::open(&s.hsdb[0], &Options::default())
        .expect("open")
        .integrity_check()
        .expect("the HSDB survived kill -9");
}

/// A Prometheus text page as the format requires it: every sample's family announced
/// once by `# HELP` and `# TYPE` before its samples, which come together; counters end
/// in `_total`.
fn assert_prometheus_text(page: &str) {
    let mut seen = std::collections::HashSet::new();
    let mut current = String::new();
    let mut kind = String::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            current = words.next().unwrap_or("").to_owned();
            kind = words.next().unwrap_or("").to_owned();
            assert!(seen.insert(current.clone()), "{current} announced twice");
            if kind == "counter" {
                assert!(
                    current.ends_with("_total"),
                    "counter {current} lacks _total"
                );
            }
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let name = line.split(['{', ' ']).next().unwrap_or("");
        assert_eq!(name, current, "sample {line:?} outside its family");
        assert!(matches!(kind.as_str(), "counter" | "gauge"), "{line}");
    }
    assert!(seen.len() > 10, "{page}");
}

fn log_has(s: &Setup, label: &str, text: &str) -> Option<()> {
    s.lab.log(label).contains(text).then_some(())
}
