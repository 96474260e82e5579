//! The real `vmmd` binary against a fake host monitor, over a veth pair between two
//! throwaway network namespaces.
//!
//! ```text
//!  namespace hvag-<pid>-a                    namespace hvag-<pid>-m
//!  vmmd (ip netns exec) ── va ═══ veth ═══ vm ── fake monitor: a dataplane monitor
//!                                               Endpoint on a RawSocket, driven by a
//!                                               test thread that joined the namespace
//! ```
//!
//! The fake monitor says Hello every 500 ms and commands heartbeats every 200 ms. The
//! test checks what an operator would: the agent pairs with the configured VM UUID,
//! heartbeats at the commanded period, falls silent while frozen (`SIGSTOP`) and
//! resumes (`SIGCONT`), pairs again with a restarted monitor (new Hello identifier),
//! and on SIGTERM tells the monitor it is shutting down and exits 0.
//!
//! Needs root (`CAP_SYS_ADMIN`, `CAP_NET_ADMIN`, `CAP_NET_RAW`) and iproute2's `ip`;
//! otherwise it prints `SKIPPED` and passes. Guards delete the namespaces and kill the
//! daemon whatever happens.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dataplane::endpoint::{Endpoint, EndpointConfig, EndpointEvent, Outcome, Role};
use dataplane::io::{InterfaceName, RawSocket, RxMode};
use dataplane::message::{HelloId, Uuid};
use dataplane::wire::MacAddr;
use netlab::{Netns, VethEnd};

const VM_UUID: &str = "61be20f0-09a8-4753-b5e5-564f8a545ed5";
const MONITOR_UUID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const MAC_AGENT: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
const MAC_MONITOR: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);
const HELLO_PERIOD: Duration = Duration::from_millis(500);
const HB_PERIOD: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------------
// Guards: namespaces and the daemon

/// Two namespaces `hvag-<pid>-<test>-a` and `-m` joined by a veth pair `va` (agent side)
/// ↔ `vm` (monitor side), both up and without IPv4 addresses, and a third, empty one
/// `-p` to park `va` in (an unplugged interface). Deleted on drop.
struct Namespaces {
    agent: Netns,
    monitor: Netns,
    parking: Netns,
}

impl Namespaces {
    /// `test` keeps the names of tests running in parallel apart.
    fn new(test: &str) -> Namespaces {
        let ns = Namespaces {
            parking: Netns::new("hvag", &format!("{test}-p")),
            agent: Netns::new("hvag", &format!("{test}-a")),
            monitor: Netns::new("hvag", &format!("{test}-m")),
        };
        let (mac_agent, mac_monitor) = (MAC_AGENT.to_string(), MAC_MONITOR.to_string());
        netlab::veth(
            VethEnd::new(ns.agent.name(), "va").with_mac(&mac_agent),
            VethEnd::new(ns.monitor.name(), "vm").with_mac(&mac_monitor),
        );
        ns
    }
}

/// The `vmmd` process, its configuration and its log; killed on drop if still running.
struct Daemon {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Start vmmd in `namespace` with a configuration of the test UUID, a 1 s rescan,
    /// debug logs and `extra`.
    fn start(namespace: &str, extra: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("vmmd.toml");
        std::fs::write(
            &config,
            // A ctl socket and applications' file of its own: tests run side by side.
            format!(
                "vm_uuid = \"{VM_UUID}\"\nrescan_ms = 1000\nlog = \"debug\"\n{extra}\n\
                 [ame]\nsocket = \"{}\"\napps_file = \"{}\"\n",
                dir.path().join("ctl.sock").display(),
                dir.path().join("apps.toml").display()
            ),
        )
        .expect("write config");
        let log = dir.path().join("vmmd.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        // `ip netns exec` execs the command in place: the child's pid is vmmd's.
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                namespace,
                env!("CARGO_BIN_EXE_vmmd"),
                "--config",
            ])
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start vmmd");
        Daemon {
            child,
            log,
            _dir: dir,
        }
    }

    fn signal(&self, signal: &str) {
        netlab::run(&["kill", signal, &self.child.id().to_string()]);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status, waiting at most `within`.
    fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill(); // SIGKILL works on a stopped process too
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------
// The fake monitor

/// What the fake monitor saw.
#[derive(Debug, Clone)]
enum Seen {
    /// A heartbeat from the agent.
    Heartbeat,
    /// An endpoint event.
    Event(EndpointEvent),
    /// The monitor restarted: later entries come from the new endpoint.
    Restarted,
}

enum Command_ {
    /// Replace the endpoint by a new one with this Hello identifier.
    Restart(HelloId),
    Stop,
}

fn monitor_config(hello: HelloId) -> EndpointConfig {
    let uuid = Uuid::parse(MONITOR_UUID.as_bytes()).expect("uuid");
    let mut config = EndpointConfig::monitor(MAC_MONITOR, uuid, hello);
    config.role = Role::Monitor {
        hello,
        hello_period: HELLO_PERIOD,
        hb_period: HB_PERIOD,
    };
    config
}

/// Drive a monitor endpoint over a raw socket on `vm`, inside `namespace`, until told
/// to stop. Reports what it sees with the time it saw it.
fn fake_monitor(
    namespace: String,
    seen: Sender<(Instant, Seen)>,
    commands: Receiver<Command_>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        dataplane::io::enter_network_namespace(&namespace).expect("setns");
        let iface = InterfaceName::new("vm").expect("name");
        let mut socket = RawSocket::open(&iface, 0x0600, RxMode::Recv).expect("open vm");
        let monotonic = dataplane::time::MonotonicClock::new();
        let clock = || monotonic.now();
        let first = HelloId {
            secs: 1_556_303_548,
            nanos: 719_328_000,
            suffix: 38,
        };
        let mut endpoint = Endpoint::new(monitor_config(first), clock()).expect("endpoint");
        let mut buf = [0u8; 1514];
        loop {
            match commands.try_recv() {
                Ok(Command_::Restart(hello)) => {
                    endpoint = Endpoint::new(monitor_config(hello), clock()).expect("endpoint");
                    let _ = seen.send((Instant::now(), Seen::Restarted));
                }
                Ok(Command_::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                Err(mpsc::TryRecvError::Empty) => {}
            }
            let now = clock();
            let wait = endpoint
                .poll_timeout()
                .map_or(Duration::from_millis(5), |t| {
                    t.saturating_duration_since(now)
                })
                .min(Duration::from_millis(5));
            socket.wait_readable(Some(wait)).expect("wait");
            let now = clock();
            socket
                .recv(|frame| {
                    if let Outcome::Heartbeat(_) = endpoint.handle_frame(now, frame) {
                        let _ = seen.send((Instant::now(), Seen::Heartbeat));
                    }
                })
                .expect("recv");
            if endpoint.poll_timeout().is_some_and(|t| t <= now) {
                endpoint.handle_timeout(now);
            }
            while let Some(len) = endpoint.poll_transmit(now, &mut buf) {
                // While `va` is unplugged `vm` has no carrier and sends fail; a real
                // monitor carries on too.
                let _ = socket.send(&buf[..len]);
            }
            while let Some(event) = endpoint.poll_event() {
                let _ = seen.send((Instant::now(), Seen::Event(event)));
            }
        }
    })
}

/// The test's view of the fake monitor: everything it reported, in order.
struct Monitor {
    seen: Receiver<(Instant, Seen)>,
    commands: Sender<Command_>,
    thread: Option<JoinHandle<()>>,
    history: Vec<(Instant, Seen)>,
    epoch: Instant,
}

impl Monitor {
    fn start(namespace: &str) -> Monitor {
        let (seen_tx, seen) = mpsc::channel();
        let (commands, commands_rx) = mpsc::channel();
        let thread = fake_monitor(namespace.to_owned(), seen_tx, commands_rx);
        Monitor {
            seen,
            commands,
            thread: Some(thread),
            history: Vec::new(),
            epoch: Instant::now(),
        }
    }

    /// The next report, if one comes before `deadline`.
    fn next(&mut self, deadline: Instant) -> Option<(Instant, Seen)> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.seen.recv_timeout(timeout) {
            Ok(entry) => {
                self.history.push(entry.clone());
                Some(entry)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                panic!("the fake monitor thread died (see its panic above)")
            }
        }
    }

    /// Wait up to `within` for a report matching `want`; `None` if none came.
    fn wait_for(
        &mut self,
        within: Duration,
        want: impl Fn(&Seen) -> bool,
    ) -> Option<(Instant, Seen)> {
        let deadline = Instant::now() + within;
        while let Some(entry) = self.next(deadline) {
            if want(&entry.1) {
                return Some(entry);
            }
        }
        None
    }

    /// The times of the heartbeats that arrive during `period`.
    fn heartbeats_during(&mut self, period: Duration) -> Vec<Instant> {
        let deadline = Instant::now() + period;
        let mut beats = Vec::new();
        while let Some((at, seen)) = self.next(deadline) {
            if matches!(seen, Seen::Heartbeat) {
                beats.push(at);
            }
        }
        beats
    }

    /// Everything seen so far, one line each, with milliseconds since the start.
    fn transcript(&self) -> String {
        let mut out = String::new();
        for (at, seen) in &self.history {
            let ms = at.saturating_duration_since(self.epoch).as_millis();
            out.push_str(&format!("  {ms:>6} ms  {seen:?}\n"));
        }
        out
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.commands.send(Command_::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Intervals between consecutive heartbeats, sorted.
fn sorted_intervals(beats: &[Instant]) -> Vec<Duration> {
    let mut gaps: Vec<Duration> = beats.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    gaps
}

// ---------------------------------------------------------------------------------
// The tests

/// One test's world. Fields drop in order: the daemon first, the namespaces last.
struct Rig {
    daemon: Daemon,
    monitor: Monitor,
    namespaces: Namespaces,
    vm_uuid: Uuid,
}

impl Rig {
    /// `None` (after printing why) when the machine cannot run the test.
    fn new(test: &str, config: &str) -> Option<Rig> {
        if let Some(why) = netlab::missing_capabilities() {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED vmmd_e2e::{test}: {why}; run as root to exercise vmmd over a veth pair"
            );
            return None;
        }
        let namespaces = Namespaces::new(test);
        let monitor = Monitor::start(namespaces.monitor.name());
        let daemon = Daemon::start(namespaces.agent.name(), config);
        Some(Rig {
            daemon,
            monitor,
            namespaces,
            vm_uuid: Uuid::parse(VM_UUID.as_bytes()).expect("uuid"),
        })
    }

    /// Panic with `what`, the fake monitor's transcript and vmmd's log.
    #[track_caller]
    fn check(&self, ok: bool, what: impl FnOnce() -> String) {
        assert!(
            ok,
            "{}\n--- fake monitor saw:\n{}--- vmmd log:\n{}",
            what(),
            self.monitor.transcript(),
            self.daemon.log()
        );
    }

    /// vmmd pairs with the monitor within `within` (SYN with our UUID from `va`,
    /// session established) and its first heartbeat follows within 1 s.
    #[track_caller]
    fn expect_pairing(&mut self, within: Duration) {
        let syn = self.monitor.wait_for(within, |s| {
            matches!(s, Seen::Event(EndpointEvent::AgentSyn { .. }))
        });
        self.check(syn.is_some(), || {
            format!("no SYN from vmmd within {within:?}")
        });
        if let Some((
            _,
            Seen::Event(EndpointEvent::AgentSyn {
                uuid, mac, ostype, ..
            }),
        )) = syn
        {
            self.check(uuid == self.vm_uuid, || {
                format!("SYN carries {uuid}, configured {}", self.vm_uuid)
            });
            self.check(mac == MAC_AGENT, || {
                format!("SYN from {mac}, expected va's {MAC_AGENT}")
            });
            self.check(ostype == "linux", || format!("ostype {ostype}"));
        }
        let established = self.monitor.wait_for(Duration::from_secs(2), |s| {
            matches!(s, Seen::Event(EndpointEvent::Established { .. }))
        });
        self.check(established.is_some(), || {
            "session not established within 2 s of the SYN".to_owned()
        });
        let first = self
            .monitor
            .wait_for(Duration::from_secs(1), |s| matches!(s, Seen::Heartbeat));
        self.check(first.is_some(), || {
            "no heartbeat within 1 s of START_HB".to_owned()
        });
    }

    /// No heartbeat arrives during `quiet` (after `settle` for any in flight).
    #[track_caller]
    fn expect_silence(&mut self, settle: Duration, quiet: Duration, why: &str) {
        self.monitor.heartbeats_during(settle);
        let beats = self.monitor.heartbeats_during(quiet);
        self.check(beats.is_empty(), || {
            format!("{} heartbeats in {quiet:?} {why}", beats.len())
        });
    }

    /// SIGTERM: the monitor gets SHDN and vmmd exits 0 within 3 s.
    #[track_caller]
    fn expect_graceful_stop(&mut self) {
        let term = Instant::now();
        self.daemon.signal("-TERM");
        let shutdown = self.monitor.wait_for(Duration::from_secs(2), |s| {
            matches!(s, Seen::Event(EndpointEvent::Shutdown { .. }))
        });
        self.check(shutdown.is_some(), || {
            "the monitor got no SHDN within 2 s of SIGTERM".to_owned()
        });
        let status = self
            .daemon
            .wait(Duration::from_secs(3).saturating_sub(term.elapsed()));
        self.check(status.is_some(), || {
            "vmmd still running 3 s after SIGTERM".to_owned()
        });
        self.check(status.and_then(|s| s.code()) == Some(0), || {
            format!("vmmd exited with {status:?}")
        });
        let log = self.daemon.log();
        self.check(log.contains("SHDN:DAEMON acknowledged"), || {
            "vmmd did not log the acknowledgement".to_owned()
        });
        self.check(log.contains("shdn_sent=1 shdn_acknowledged=1"), || {
            "vmmd's stop summary is missing".to_owned()
        });
    }

    /// `ip -n <agent namespace> args…`.
    fn ip_agent(&self, args: &[&str]) {
        self.namespaces.agent.ip(args);
    }
}

#[test]
fn vmmd_pairs_heartbeats_survives_a_freeze_repairs_and_stops_gracefully() {
    let started = Instant::now();
    // No `interfaces`: vmmd must find `va` itself (up, Ethernet, no IP) and leave `lo`
    // alone.
    let Some(mut rig) = Rig::new("pair", "") else {
        return;
    };

    // 1. vmmd answers a Hello with a SYN carrying the configured VM UUID; the session
    //    opens and heartbeats start.
    rig.expect_pairing(Duration::from_secs(5));

    // 2. Heartbeats at the commanded 200 ms.
    let beats = rig.monitor.heartbeats_during(Duration::from_millis(1200));
    rig.check((4..=8).contains(&beats.len()), || {
        format!("{} heartbeats in 1.2 s at a 200 ms period", beats.len())
    });
    let gaps = sorted_intervals(&beats);
    let median = gaps[gaps.len() / 2];
    rig.check(
        (Duration::from_millis(150)..=Duration::from_millis(260)).contains(&median),
        || format!("median heartbeat interval {median:?}, commanded 200 ms ({gaps:?})"),
    );

    // 3. Frozen: no heartbeat. Thawed: they resume.
    rig.daemon.signal("-STOP");
    rig.expect_silence(
        Duration::from_millis(100),
        Duration::from_millis(900),
        "while vmmd was stopped",
    );
    rig.daemon.signal("-CONT");
    let thawed = rig.monitor.heartbeats_during(Duration::from_millis(1000));
    rig.check(thawed.len() >= 3, || {
        format!("{} heartbeats in the second after SIGCONT", thawed.len())
    });

    // 4. The monitor restarts (new Hello identifier): vmmd pairs again.
    let second = HelloId {
        secs: 1_556_303_999,
        nanos: 1,
        suffix: 39,
    };
    let _ = rig.monitor.commands.send(Command_::Restart(second));
    let restarted = rig
        .monitor
        .wait_for(Duration::from_secs(1), |s| matches!(s, Seen::Restarted));
    rig.check(restarted.is_some(), || {
        "the fake monitor did not restart".to_owned()
    });
    rig.expect_pairing(Duration::from_secs(3));
    let after = rig.monitor.heartbeats_during(Duration::from_millis(800));
    rig.check(after.len() >= 3, || {
        format!(
            "{} heartbeats to the restarted monitor in 0.8 s",
            after.len()
        )
    });
    rig.check(rig.daemon.log().contains("host monitor restarted"), || {
        "vmmd did not log the monitor's restart".to_owned()
    });

    // 5. SIGTERM: SHDN:DAEMON reaches the monitor and vmmd exits 0 within 3 s.
    rig.expect_graceful_stop();
    rig.check(started.elapsed() < Duration::from_secs(15), || {
        format!("the test took {:?}", started.elapsed())
    });
}

#[test]
fn vmmd_never_uses_an_interface_with_an_ip_and_takes_back_one_that_returns() {
    let started = Instant::now();
    let Some(mut rig) = Rig::new("iface", "interfaces = [\"va\"]\n") else {
        return;
    };
    rig.expect_pairing(Duration::from_secs(5));

    // 1. `va` gets an IP address: at the next rescan (1 s) vmmd drops it, and with it
    //    the session: heartbeats stop.
    rig.ip_agent(&["addr", "add", "192.0.2.1/24", "dev", "va"]);
    rig.expect_silence(
        Duration::from_millis(1300),
        Duration::from_millis(700),
        "after va got an IP address",
    );
    rig.check(
        rig.daemon
            .log()
            .contains("configured interface carries IP address 192.0.2.1"),
        || "vmmd did not say why it dropped va".to_owned(),
    );

    // 2. The address goes: vmmd takes `va` back and pairs again on the next Hello.
    rig.ip_agent(&["addr", "del", "192.0.2.1/24", "dev", "va"]);
    rig.expect_pairing(Duration::from_secs(3));

    // 3. `va` is unplugged (moved to another namespace): dropped. Plugged back (a new
    //    interface index, down until set up): taken back.
    let parking = rig.namespaces.parking.name();
    rig.ip_agent(&["link", "set", "va", "netns", parking]);
    rig.expect_silence(
        Duration::from_millis(1300),
        Duration::from_millis(500),
        "after va was unplugged",
    );
    let agent = rig.namespaces.agent.name();
    rig.namespaces
        .parking
        .ip(&["link", "set", "va", "netns", agent]);
    rig.ip_agent(&["link", "set", "va", "up"]);
    rig.expect_pairing(Duration::from_secs(3));
    let log = rig.daemon.log();
    rig.check(log.contains("interface does not exist (yet)"), || {
        "vmmd did not notice va vanish".to_owned()
    });

    rig.expect_graceful_stop();
    rig.check(started.elapsed() < Duration::from_secs(15), || {
        format!("the test took {:?}", started.elapsed())
    });
}
