//! A laboratory of network namespaces for end-to-end tests of the daemons.
//!
//! Every test builds its own namespaces (names carry the test process id and the test
//! name, so tests run in parallel), joins them with veth pairs, starts the real `hmd`
//! and `vmmd` binaries inside them with `ip netns exec`, and reads the HSDB file the
//! monitors write. Dropping the [`Lab`] kills the processes and deletes the namespaces,
//! also when the test fails. Without root the tests print why they were skipped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

pub mod browser;
pub mod group;
pub mod pcap;

use hsdb::{HeartbeatCounts, Hsdb, Options, Uuid, VmHmRow};
use netlab::{Netns, VethEnd};

/// Why this machine cannot run the tests, if it cannot: no privilege or no `ip`
/// ([`netlab::missing_capabilities`]), or the daemons are not built.
pub fn cannot_run() -> Option<String> {
    if let Some(why) = netlab::missing_capabilities() {
        return Some(why);
    }
    for bin in ["hmd", "vmmd"] {
        // In CI a missing binary is a build problem, not a reason to skip.
        assert!(
            binary(bin).exists() || std::env::var("CI").as_deref() != Ok("true"),
            "{} not built",
            binary(bin).display()
        );
        if !binary(bin).exists() {
            return Some(format!(
                "{} not built (run the workspace tests: cargo test --workspace)",
                binary(bin).display()
            ));
        }
    }
    None
}

/// Path of a workspace binary in `target/<profile>/`: the parent of the caller's
/// directory when the caller is a test executable in `target/<profile>/deps/`, else the
/// caller's own directory (a binary such as `hvha-demo` in `target/<profile>/`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new(""));
    let dir = if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    dir.join(name)
}

/// Namespaces, links, processes and a scratch directory; all removed on drop.
pub struct Lab {
    /// The test's name, cut to 6 bytes, in every namespace name.
    test: String,
    namespaces: Vec<Netns>,
    children: Vec<(String, Child)>,
    /// Scratch directory for configs, sockets and HSDB files.
    pub dir: PathBuf,
}

impl Lab {
    /// A lab for `test`, or `None` (after printing why) when it cannot run here.
    pub fn new(test: &str) -> Option<Lab> {
        if let Some(why) = cannot_run() {
            eprintln!("SKIPPED e2e::{test}: {why}");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("hvha-e2e-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Some(Lab {
            test: test[..test.len().min(6)].to_owned(),
            namespaces: Vec::new(),
            children: Vec::new(),
            dir,
        })
    }

    /// Create namespace `hve-<pid>-<test>-<name>` with `lo` up (returns its full name).
    pub fn netns(&mut self, name: &str) -> String {
        let ns = Netns::new("hve", &format!("{}-{name}", self.test));
        ns.ip(&["link", "set", "lo", "up"]);
        let full = ns.name().to_owned();
        self.namespaces.push(ns);
        full
    }

    /// A veth pair: `if_a` in `ns_a`, `if_b` in `ns_b`, both up with carrier, no
    /// address.
    pub fn link(&self, ns_a: &str, if_a: &str, ns_b: &str, if_b: &str) {
        netlab::veth(VethEnd::new(ns_a, if_a), VethEnd::new(ns_b, if_b));
        self.wait_carrier(ns_a, if_a);
        self.wait_carrier(ns_b, if_b);
    }

    /// Wait until `iface` in `ns` is operationally up (carrier; the kernel reports it up
    /// to a second after the link is set up, and a daemon started before would see it
    /// come up later). Panics after 10 s.
    pub fn wait_carrier(&self, ns: &str, iface: &str) {
        let up = wait_for(Duration::from_secs(10), || {
            let out = Command::new("ip")
                .args(["-n", ns, "-o", "link", "show", "dev", iface])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains(" state UP ")
                .then_some(())
        });
        assert!(up.is_some(), "{iface} in {ns} never got its carrier");
    }

    /// Bring an interface down or up (a cable pulled on one path).
    pub fn set_link(&self, ns: &str, iface: &str, up: bool) {
        let state = if up { "up" } else { "down" };
        netlab::ip(&["-n", ns, "link", "set", iface, state]);
    }

    /// Write a file in the scratch directory; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write scratch file");
        path
    }

    /// Start `binary args…` inside `ns`; stderr goes to `<dir>/<label>.log`. Returns its pid.
    pub fn spawn(&mut self, label: &str, ns: &str, bin: &str, args: &[&str]) -> u32 {
        self.spawn_with_env(label, ns, bin, args, &[])
    }

    /// As [`Lab::spawn`], with `env` added to the environment (`ip netns exec` passes it
    /// on and execs the binary, so the pid is the daemon's).
    pub fn spawn_with_env(
        &mut self,
        label: &str,
        ns: &str,
        bin: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> u32 {
        let log = std::fs::File::create(self.dir.join(format!("{label}.log"))).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(binary(bin))
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let pid = child.id();
        self.children.push((label.to_owned(), child));
        pid
    }

    /// Start `binary args…` inside `ns` with its standard input and output piped to the
    /// caller (for programs driven by commands, such as `hvncp-loadgen`); stderr goes to
    /// `<dir>/<label>.log`. The process is killed with the lab.
    pub fn spawn_piped(
        &mut self,
        label: &str,
        ns: &str,
        bin: &str,
        args: &[&str],
    ) -> (ChildStdin, ChildStdout) {
        let log = std::fs::File::create(self.dir.join(format!("{label}.log"))).expect("log");
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(binary(bin))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        self.children.push((label.to_owned(), child));
        (stdin, stdout)
    }

    /// Send `signal` (`STOP`, `CONT`, `TERM`, `KILL`) to the process labelled `label`.
    pub fn signal(&self, label: &str, signal: &str) {
        let pid = self.pid(label);
        netlab::run(&["kill", &format!("-{signal}"), &pid.to_string()]);
    }

    /// Pid of the process labelled `label`.
    pub fn pid(&self, label: &str) -> u32 {
        self.children
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, c)| c.id())
            .unwrap_or_else(|| panic!("no process {label}"))
    }

    /// Wait for the process labelled `label` to exit; its exit code.
    pub fn wait_exit(&mut self, label: &str, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        let index = self.children.iter().position(|(l, _)| l == label)?;
        loop {
            if let Ok(Some(status)) = self.children[index].1.try_wait() {
                self.children.remove(index);
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A process's log so far (for assertion messages).
    pub fn log(&self, label: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{label}.log"))).unwrap_or_default()
    }

    /// Stop the process labelled `label` with SIGTERM; panics unless it exits with
    /// status 0 within 10 s.
    pub fn stop_cleanly(&mut self, label: &str) {
        self.signal(label, "TERM");
        assert_eq!(
            self.wait_exit(label, Duration::from_secs(10)),
            Some(0),
            "{label} stops cleanly on SIGTERM\n{}",
            self.log(label)
        );
    }

    /// Kill the process labelled `label` with SIGKILL and wait until it is gone.
    pub fn kill_9(&mut self, label: &str) {
        let pid = self.pid(label);
        self.signal(label, "KILL");
        self.wait_exit(label, Duration::from_secs(5));
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{label} ({pid}) is gone after SIGKILL"
        );
    }
}

/// A running tool driven through its standard input and read through its standard
/// output, such as `hvncp-loadgen` or `hvncp-flood` ([`Lab::tool`]): commands in, event
/// lines out.
pub struct Tool {
    commands: ChildStdin,
    lines: Receiver<String>,
}

/// A running `hvncp-loadgen` ([`Lab::loadgen`]).
pub type Loadgen = Tool;

impl Lab {
    /// Whether every tool in `tools` (workspace binaries such as `hvncp-loadgen`) is
    /// built; if one is not, prints why the test is skipped and returns `false` (a build
    /// problem in CI: then it panics).
    pub fn tools_built(&self, tools: &[&str]) -> bool {
        for tool in tools {
            let bin = binary(tool);
            if !bin.exists() {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "{} not built",
                    bin.display()
                );
                eprintln!(
                    "SKIPPED e2e::{}: {} not built (cargo test --workspace builds it)",
                    self.test,
                    bin.display()
                );
                return false;
            }
        }
        true
    }

    /// Start the tool `bin args…` in `ns` (stderr in `<dir>/<label>.log`), or `None`
    /// when it is not built ([`Lab::tools_built`]).
    pub fn tool(&mut self, label: &str, ns: &str, bin: &str, args: &[&str]) -> Option<Tool> {
        if !self.tools_built(&[bin]) {
            return None;
        }
        let (commands, stdout) = self.spawn_piped(label, ns, bin, args);
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Some(Tool { commands, lines })
    }

    /// Start `hvncp-loadgen args…` in `ns` ([`Lab::tool`]).
    pub fn loadgen(&mut self, label: &str, ns: &str, args: &[&str]) -> Option<Loadgen> {
        self.tool(label, ns, "hvncp-loadgen", args)
    }

    /// Start `count` agents simulated by `hvncp-loadgen` on `iface` in `ns`, each
    /// heartbeating every `period_ms`, with `extra` arguments; wait (30 s at most) until
    /// they are ready. `None` when the load generator is not built.
    pub fn agents(
        &mut self,
        ns: &str,
        iface: &str,
        count: u64,
        period_ms: u64,
        extra: &[&str],
    ) -> Option<Loadgen> {
        let (count, period_ms) = (count.to_string(), period_ms.to_string());
        let mut args = vec![
            "--interface",
            iface,
            "--agents",
            &count,
            "--period-ms",
            &period_ms,
            "--report-ms",
            "0",
        ];
        args.extend_from_slice(extra);
        let agents = self.loadgen("loadgen", ns, &args)?;
        agents.wait_line("ready", Duration::from_secs(30));
        Some(agents)
    }
}

impl Tool {
    /// Send one command line (`pause 7-9`, `resume all`, `quit`…).
    pub fn command(&mut self, line: &str) {
        writeln!(self.commands, "{line}").expect("tool stdin");
    }

    /// The next output line starting with `prefix` (`ready`, `paused`…), skipping the
    /// others; panics after `within`.
    pub fn wait_line(&self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(e) => panic!("no {prefix:?} line within {within:?}: {e}"),
            }
        }
    }

    /// The first output line starting with `prefix` among those already written,
    /// skipping the others; `None` when none is there yet. Panics if the tool closed its
    /// output without writing one.
    pub fn try_line(&self, prefix: &str) -> Option<String> {
        loop {
            match self.lines.try_recv() {
                Ok(line) if line.starts_with(prefix) => return Some(line),
                Ok(_) => {}
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => panic!("the tool exited without {prefix:?}"),
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The namespaces go when the fields drop, after the processes in them.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("e2e: logs kept in {}", self.dir.display());
        }
    }
}

/// Ask a running `hmd` through its admin socket (`hmd ctl --socket <socket> <command>`):
/// its answer, or why there is none. A socket path reaches the daemon from any network
/// namespace.
pub fn hmd_ctl(socket: &Path, command: &str) -> Result<String, String> {
    let out = Command::new(binary("hmd"))
        .args(["ctl", "--socket"])
        .arg(socket)
        .arg(command)
        .output()
        .map_err(|e| format!("cannot run hmd ctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "hmd ctl {command} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `hmd ctl stats` as counter name → value, summed over interfaces (lines
/// `<interface> <name> <value>`; the daemon-wide ones have `-` as interface).
pub fn hmd_stats(socket: &Path) -> Result<HashMap<String, u64>, String> {
    let text = hmd_ctl(socket, "stats")?;
    let mut stats = HashMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some(_), Some(name), Some(value), None) =
            (words.next(), words.next(), words.next(), words.next())
            && let Ok(value) = value.parse::<u64>()
        {
            *stats.entry(name.to_owned()).or_insert(0) += value;
        }
    }
    if stats.contains_key("frames_in") {
        Ok(stats)
    } else {
        Err(format!("unexpected `hmd ctl stats` output:\n{text}"))
    }
}

/// Poll `f` every 50 ms until it returns `Some`, or give up after `within`.
pub fn wait_for<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run `f` on a new thread inside network namespace `ns` (sockets it creates stay
/// there).
pub fn spawn_in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        dataplane::io::enter_network_namespace(&ns).expect("enter the namespace");
        f()
    })
}

/// Run `f` inside network namespace `ns` ([`spawn_in_netns`]) and wait for its result.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_in_netns(ns, f).join().expect("namespace thread")
}

/// `GET path` over HTTP/1.1 from `addr` (such as hmd's `metrics_listen`) in the
/// caller's namespace: the whole response, headers included (read for 10 s at most).
pub fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: hmd\r\n\r\n").expect("request");
    let mut out = String::new();
    stream.read_to_string(&mut out).expect("response");
    out
}

/// `hmd ctl stats` of one interface: counter name → value.
pub fn hmd_iface_stats(socket: &Path, iface: &str) -> Result<HashMap<String, u64>, String> {
    let text = hmd_ctl(socket, "stats")?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut w = line.split_whitespace();
            match (w.next(), w.next(), w.next()) {
                (Some(i), Some(name), Some(v)) if i == iface => {
                    Some((name.to_owned(), v.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect())
}

/// The `[ame]` section of a `vmmd` configuration file for the agent labelled `label`:
/// its `vmmd ctl` socket and its applications' file in `dir` (the lab's directory), so
/// agents running side by side (and tests running in parallel) never share the
/// defaults `/run/vmmd/ctl.sock` and `/var/lib/vmmd/apps.toml` — a second agent on one
/// socket is refused (docs/agent.md) — nor read the machine's own applications. Goes
/// last in the file (a TOML table ends the top-level keys).
pub fn vmmd_ame_section(dir: &Path, label: &str) -> String {
    format!(
        "[ame]\nsocket = {:?}\napps_file = {:?}\n",
        dir.join(format!("{label}.ctl.sock")).display().to_string(),
        dir.join(format!("{label}.apps.toml")).display().to_string()
    )
}

/// The monitor UUID the tests give `hmd` unless they need another.
pub const HM_UUID: &str = "5c3196a3-c41f-4b5c-9861-dee6077081c6";

/// `text` as a UUID (a test's constant: panics if it is not one).
pub fn uuid(text: &str) -> Uuid {
    Uuid::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?} is not a UUID: {e}"))
}

/// The wall clock in milliseconds since the Unix epoch, as the HSDB's times.
pub fn unix_ms() -> i64 {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_millis()).expect("ms fit")
}

/// The VM UUID `hvncp-loadgen` gives its agent number `i` with the default first MAC
/// (02:4c:47:00:00:00): `4c474c47-0000-4000-8000-<the agent's MAC>`.
pub fn loadgen_vm(i: u32) -> Uuid {
    let mac = 0x024c_4700_0000_u64 + u64::from(i);
    let mut uuid = [
        0x4c, 0x47, 0x4c, 0x47, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0,
    ];
    uuid[10..].copy_from_slice(&mac.to_be_bytes()[2..]);
    Uuid(uuid)
}

/// Timers of a monitor that declares a silent VM MISSING after a second: Hellos every
/// 0.5 s, heartbeats every 0.2 s, the monitor's own heartbeat every second, the HSDB
/// writer flushing after 10 ms. `key = value` lines for [`hmd_toml`].
pub const FAST_TIMERS: &str = "hello_period_ms = 500
hb_period_ms = 200
vm_miss_after_ms = 1000
hm_heartbeat_period_ms = 1000
flush_ms = 10
";

/// The text of an `hmd` configuration file: monitor `monitor_uuid` on host 1
/// (`host1`), its HSDB, admin socket and interfaces, then `rest` (more `key = value`
/// lines, such as [`FAST_TIMERS`]).
pub fn hmd_toml(
    monitor_uuid: &str,
    hsdb: &Path,
    admin_socket: &Path,
    interfaces: &[&str],
    rest: &str,
) -> String {
    let interfaces: Vec<String> = interfaces.iter().map(|i| format!("{i:?}")).collect();
    format!(
        "monitor_uuid = \"{monitor_uuid}\"\nhost_id = 1\nhost_name = \"host1\"\nhsdb = {:?}\n\
         admin_socket = {:?}\ninterfaces = [{}]\n{rest}",
        hsdb.display().to_string(),
        admin_socket.display().to_string(),
        interfaces.join(", "),
    )
}

/// The rows monitor `hm` wrote into the HSDB at `path`, if it can be read yet.
pub fn vm_rows(path: &Path, hm: &Uuid) -> Option<Vec<VmHmRow>> {
    Hsdb::open(path, &Options::default())
        .ok()?
        .vm_hms_of(hm)
        .ok()
}

/// How many VMs monitor `hm` has in each state in the HSDB at `path`, if it can be read
/// yet.
pub fn vm_counts(path: &Path, hm: &Uuid) -> Option<HeartbeatCounts> {
    Hsdb::open(path, &Options::default())
        .ok()?
        .vm_hm_counts(hm)
        .ok()
}

/// One monitor and many simulated agents: a monitor namespace (`mon`, interface `m0`)
/// joined by a veth pair to a namespace for `hvncp-loadgen` (`gen`, interface `g0`), and
/// an `hmd` configuration for monitor [`HM_UUID`] on `m0` (`hmd.toml`, HSDB
/// `hsdb.sqlite`, admin socket `hmd.sock` in the lab's directory).
pub struct MonitorRig {
    /// The lab holding it all.
    pub lab: Lab,
    /// The agents' namespace.
    pub gen_ns: String,
    /// The monitor's namespace.
    pub mon_ns: String,
    /// The monitor's HSDB.
    pub hsdb: PathBuf,
    /// The monitor's admin socket.
    pub socket: PathBuf,
    /// The monitor's configuration file.
    pub config: String,
}

impl MonitorRig {
    /// The rig for `test`, `hmd` not started yet; `keys` are the configuration's lines
    /// after the identity, paths and interface ([`hmd_toml`]). `None` (after printing
    /// why) when it cannot run here.
    pub fn new(test: &str, keys: &str) -> Option<MonitorRig> {
        let mut lab = Lab::new(test)?;
        let gen_ns = lab.netns("gen");
        let mon_ns = lab.netns("mon");
        lab.link(&gen_ns, "g0", &mon_ns, "m0");
        let hsdb = lab.dir.join("hsdb.sqlite");
        let socket = lab.dir.join("hmd.sock");
        let config = lab
            .write(
                "hmd.toml",
                &hmd_toml(HM_UUID, &hsdb, &socket, &["m0"], keys),
            )
            .display()
            .to_string();
        Some(MonitorRig {
            lab,
            gen_ns,
            mon_ns,
            hsdb,
            socket,
            config,
        })
    }

    /// The monitor's UUID.
    pub fn hm(&self) -> Uuid {
        uuid(HM_UUID)
    }

    /// Start `hmd` with the rig's configuration, as process `label`; its pid.
    pub fn start_hmd(&mut self, label: &str) -> u32 {
        self.start_hmd_with_env(label, &[])
    }

    /// As [`MonitorRig::start_hmd`], with `env` added to its environment.
    pub fn start_hmd_with_env(&mut self, label: &str, env: &[(&str, &str)]) -> u32 {
        let config = self.config.clone();
        let ns = self.mon_ns.clone();
        self.lab
            .spawn_with_env(label, &ns, "hmd", &["--config", &config], env)
    }

    /// [`Lab::agents`] on `g0`.
    pub fn agents(&mut self, count: u64, period_ms: u64, extra: &[&str]) -> Option<Loadgen> {
        let ns = self.gen_ns.clone();
        self.lab.agents(&ns, "g0", count, period_ms, extra)
    }

    /// The HSDB, if it can be opened yet.
    pub fn db(&self) -> Option<Hsdb> {
        Hsdb::open(&self.hsdb, &Options::default()).ok()
    }

    /// The monitor's VM rows ([`vm_rows`]).
    pub fn rows(&self) -> Option<Vec<VmHmRow>> {
        vm_rows(&self.hsdb, &self.hm())
    }

    /// The monitor's VMs per state ([`vm_counts`]).
    pub fn counts(&self) -> Option<HeartbeatCounts> {
        vm_counts(&self.hsdb, &self.hm())
    }

    /// Wait up to `within` until the monitor's counts satisfy `want`.
    pub fn wait_counts(
        &self,
        within: Duration,
        want: impl Fn(&HeartbeatCounts) -> bool,
    ) -> Option<HeartbeatCounts> {
        wait_for(within, || self.counts().filter(|c| want(c)))
    }

    /// Wait (30 s at most) until the HSDB has `count` VMs DETECTED by the monitor;
    /// panics with the counts and the log of process `label` if it does not.
    pub fn assert_all_detected(&self, count: u64, label: &str) {
        assert!(
            self.wait_counts(Duration::from_secs(30), |c| c.detected == count)
                .is_some(),
            "all {count} VMs DETECTED in the HSDB: {:?}\n{}",
            self.counts(),
            self.lab.log(label)
        );
    }
}
