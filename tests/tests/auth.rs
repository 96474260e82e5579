//! Authenticated frames (docs/hvncp.md §7) between a real `hmd` and real `vmmd`s on veth
//! pairs in network namespaces:
//!
//! - a mixed group under `accept`: an authenticating agent and a plain one are both
//!   DETECTED; an agent sending with a key the monitor does not hold is not, and its
//!   frames are counted as refused;
//! - a key rotation of a running group (second key everywhere, swap everywhere, old key
//!   removed everywhere; every daemon restarted once per step) without a MISSING.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dataplane::message::Uuid;
use hsdb::{HeartbeatState, Hsdb, Options};
use hvha_e2e::{Lab, hmd_ctl, hmd_stats, wait_for};

const HM: &str = "5c3196a3-c41f-4b5c-9861-dee6077081c6";
const MISS_AFTER_MS: u64 = 1000;
const WAIT: Duration = Duration::from_secs(30);

fn vm_uuid(i: usize) -> String {
    format!("61be20f0-09a8-4753-b5e5-564f8a545ed{i}")
}

/// A key file `<id> <64 hex digits>`, mode 0600.
fn key(lab: &Lab, name: &str, id: u8, byte: u8) -> PathBuf {
    let path = lab.write(name, &format!("# test key\n{id} {}\n", hex(byte)));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

fn hex(byte: u8) -> String {
    format!("{byte:02x}").repeat(32)
}

/// Configuration lines for `auth` with a primary and an optional second key.
fn auth(mode: &str, primary: &Path, second: Option<&Path>) -> String {
    let mut s = format!(
        "auth = \"{mode}\"\nauth_key_file = {:?}\n",
        primary.display()
    );
    if let Some(k) = second {
        s += &format!("auth_second_key_file = {:?}\n", k.display());
    }
    s
}

struct Group {
    lab: Lab,
    hm_ns: String,
    agent_ns: Vec<String>,
    hsdb: PathBuf,
    socket: PathBuf,
    /// Restarts so far, to give each process generation its own log.
    generation: usize,
    /// Label of the running process of each name (`hmd`, `vmmd<i>`).
    labels: HashMap<String, String>,
}

impl Group {
    /// One monitor namespace, `agents` agent namespaces each linked to it (`ha1` on the
    /// agent's side, `h1a<i>` on the monitor's); nothing started.
    fn new(test: &str, agents: usize) -> Option<Group> {
        let mut lab = Lab::new(test)?;
        let hm_ns = lab.netns("hm");
        let mut agent_ns = Vec::new();
        for i in 1..=agents {
            let ns = lab.netns(&format!("a{i}"));
            lab.link(&ns, "ha1", &hm_ns, &format!("h1a{i}"));
            agent_ns.push(ns);
        }
        let hsdb = lab.dir.join("hsdb.sqlite");
        let socket = lab.dir.join("hmd.sock");
        Some(Group {
            lab,
            hm_ns,
            agent_ns,
            hsdb,
            socket,
            generation: 0,
            labels: HashMap::new(),
        })
    }

    fn start_hmd(&mut self, auth: &str) {
        let ifaces: Vec<String> = (1..=self.agent_ns.len())
            .map(|i| format!("\"h1a{i}\""))
            .collect();
        let name = format!("hmd-{}.toml", self.generation);
        let config = self.lab.write(
            &name,
            &format!(
                "monitor_uuid = \"{HM}\"\nhost_id = 1\nhost_name = \"host1\"\nhsdb = {:?}\n\
                 admin_socket = {:?}\ninterfaces = [{}]\nhello_period_ms = 500\n\
                 hb_period_ms = 200\nvm_miss_after_ms = {MISS_AFTER_MS}\nflush_ms = 10\n\
                 log = \"debug\"\n{auth}",
                self.hsdb.display(),
                self.socket.display(),
                ifaces.join(", ")
            ),
        );
        let config = config.display().to_string();
        let label = format!("hmd-{}", self.generation);
        self.labels.insert("hmd".to_owned(), label.clone());
        let ns = self.hm_ns.clone();
        self.lab.spawn(&label, &ns, "hmd", &["--config", &config]);
    }

    fn start_vmmd(&mut self, i: usize, auth: &str) {
        let config = self.lab.write(
            &format!("vmmd{i}-{}.toml", self.generation),
            &format!(
                "vm_uuid = \"{}\"\ninterfaces = [\"ha1\"]\nlog = \"debug\"\n{auth}{}",
                vm_uuid(i),
                hvha_e2e::vmmd_ame_section(&self.lab.dir, &format!("vmmd{i}"))
            ),
        );
        let config = config.display().to_string();
        let label = format!("vmmd{i}-{}", self.generation);
        self.labels.insert(format!("vmmd{i}"), label.clone());
        let ns = self.agent_ns[i - 1].clone();
        self.lab.spawn(&label, &ns, "vmmd", &["--config", &config]);
    }

    /// Stop the process of `name` (`hmd` or `vmmd<i>`) gracefully and start the next
    /// generation with `auth`.
    fn restart(&mut self, name: &str, auth: &str) {
        let label = self.labels[name].clone();
        self.lab.signal(&label, "TERM");
        assert_eq!(
            self.lab.wait_exit(&label, WAIT),
            Some(0),
            "{label} stops cleanly\n{}",
            self.lab.log(&label)
        );
        self.generation += 1;
        match name.strip_prefix("vmmd") {
            Some(i) => self.start_vmmd(i.parse().expect("vmmd<i>"), auth),
            None => self.start_hmd(auth),
        }
    }

    /// The VMs `hmd ctl vms` shows DETECTED with a heartbeat younger than `max_age_ms`.
    fn fresh(&self, max_age_ms: u64) -> Vec<String> {
        let Ok(text) = hmd_ctl(&self.socket, "vms") else {
            return Vec::new();
        };
        text.lines()
            .filter(|l| l.contains(" DETECTED "))
            .filter(|l| {
                l.rsplit("last_heartbeat_age_ms=")
                    .next()
                    .and_then(|a| a.trim().parse::<u64>().ok())
                    .is_some_and(|a| a <= max_age_ms)
            })
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    }

    /// Wait until every VM in `vms` is DETECTED with fresh heartbeats.
    fn wait_fresh(&self, vms: &[usize], what: &str) {
        let want: Vec<String> = vms.iter().map(|&i| vm_uuid(i)).collect();
        let ok = wait_for(WAIT, || {
            let fresh = self.fresh(600);
            want.iter().all(|v| fresh.contains(v)).then_some(())
        });
        assert!(
            ok.is_some(),
            "{what}: {want:?} not heartbeating\n{}",
            self.logs()
        );
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(&self.lab.dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(label) = name.strip_suffix(".log") {
                out += &format!("--- {label}\n{}", self.lab.log(label));
            }
        }
        out
    }

    fn state(&self, vm: usize) -> Option<HeartbeatState> {
        let db = Hsdb::open(&self.hsdb, &Options::default()).ok()?;
        let (vm, hm) = (
            Uuid::parse(vm_uuid(vm).as_bytes()).ok()?,
            Uuid::parse(HM.as_bytes()).ok()?,
        );
        db.vm_hm(&vm, &hm).ok()?.map(|r| r.last_state)
    }
}

fn auth_drops(stats: &HashMap<String, u64>) -> u64 {
    stats
        .iter()
        .filter(|(k, _)| k.starts_with("auth_drop_"))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn mixed_group_under_accept() {
    let Some(mut g) = Group::new("authmix", 3) else {
        return;
    };
    let k1 = key(&g.lab, "k1.key", 1, 0x11);
    let other = key(&g.lab, "other.key", 7, 0x77);
    g.start_hmd(&auth("accept", &k1, None));
    g.start_vmmd(1, &auth("accept", &k1, None));
    g.start_vmmd(2, "");
    // Sends with a key the monitor does not hold, accepts the monitor's key (so that
    // its Hellos reach it and it tries to pair).
    g.start_vmmd(3, &auth("accept", &other, Some(&k1)));
    g.wait_fresh(&[1, 2], "an authenticating and a plain agent under accept");
    let stats = wait_for(WAIT, || {
        hmd_stats(&g.socket)
            .ok()
            .filter(|s| s.get("auth_drop_unknown_key").copied().unwrap_or(0) > 0)
    });
    let Some(stats) = stats else {
        panic!(
            "frames sealed with another key are refused and counted\n{}",
            g.logs()
        );
    };
    assert!(stats["auth_verified"] > 0, "{stats:?}");
    assert!(stats["auth_plain_accepted"] > 0, "{stats:?}");
    assert!(stats["auth_sealed"] > 0, "{stats:?}");
    assert_eq!(
        auth_drops(&stats),
        stats["auth_drop_unknown_key"],
        "nothing else refused: {stats:?}"
    );
    assert!(
        !g.fresh(u64::MAX).contains(&vm_uuid(3)),
        "the agent with another key is never DETECTED"
    );
    assert_ne!(g.state(3), Some(HeartbeatState::Detected));
    let log = g.lab.log("hmd-0");
    assert!(
        log.contains("frames refused by authentication")
            && log.contains("key id 7 is not one of ours"),
        "the refusals are logged\n{log}"
    );
}

#[test]
fn rotation_without_a_missing() {
    let Some(mut g) = Group::new("authrot", 2) else {
        return;
    };
    let old = key(&g.lab, "old.key", 1, 0x11);
    let new = key(&g.lab, "new.key", 2, 0x22);
    g.start_hmd(&auth("require", &old, None));
    for i in 1..=2 {
        g.start_vmmd(i, &auth("require", &old, None));
    }
    g.wait_fresh(&[1, 2], "the group on the old key");

    // Any MISSING written to the HSDB during the rotation, seen by a watcher.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, hsdb) = (Arc::clone(&stop), g.hsdb.clone());
        std::thread::spawn(move || {
            let mut missing = Vec::new();
            let hm = Uuid::parse(HM.as_bytes()).expect("uuid");
            while !stop.load(Ordering::Relaxed) {
                if let Ok(db) = Hsdb::open(&hsdb, &Options::default()) {
                    for i in 1..=2 {
                        let vm = Uuid::parse(vm_uuid(i).as_bytes()).expect("uuid");
                        if let Ok(Some(row)) = db.vm_hm(&vm, &hm)
                            && row.last_state == HeartbeatState::Missing
                        {
                            missing.push(i);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            missing
        })
    };

    // 1. The new key as second key everywhere: still sending with the old one.
    // 2. The new key as primary everywhere, the old one still accepted.
    // 3. The old key removed everywhere.
    let steps = [
        auth("require", &old, Some(&new)),
        auth("require", &new, Some(&old)),
        auth("require", &new, None),
    ];
    for (n, step) in steps.iter().enumerate() {
        for name in ["hmd", "vmmd1", "vmmd2"] {
            g.restart(name, step);
            g.wait_fresh(&[1, 2], &format!("step {} after restarting {name}", n + 1));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let missing = watcher.join().expect("watcher");
    assert!(
        missing.is_empty(),
        "VMs {missing:?} turned MISSING\n{}",
        g.logs()
    );

    // The group now runs on the new key alone, every frame verified.
    std::thread::sleep(Duration::from_millis(2 * MISS_AFTER_MS));
    g.wait_fresh(&[1, 2], "on the new key alone");
    let stats = hmd_stats(&g.socket).expect("stats");
    assert!(stats["auth_verified"] > 0, "{stats:?}");
    assert_eq!(auth_drops(&stats), 0, "{stats:?}");
    assert_eq!(
        stats["auth_plain_accepted"], 0,
        "require takes no plain frame"
    );
    for i in 1..=2 {
        assert_eq!(g.state(i), Some(HeartbeatState::Detected), "VM {i}");
    }
    // A MISSING too short for the watcher still leaves its log line.
    for generation in 0..=g.generation {
        let log = g.lab.log(&format!("hmd-{generation}"));
        for line in log.lines() {
            assert!(
                !(line.contains("MISSING") && (1..=2).any(|i| line.contains(&vm_uuid(i)))),
                "MISSING logged: {line}"
            );
        }
    }
}
