//! A laboratory of network namespaces for end-to-end tests of the daemons.
//!
//! Every test builds its own namespaces (names carry the test process id and the test
//! name, so tests run in parallel), joins them with veth pairs, starts the real `hmd`
//! and `vmmd` binaries inside them with `ip netns exec`, and reads the HSDB file the
//! monitors write. Dropping the [`Lab`] kills the processes and deletes the namespaces,
//! also when the test fails. Without root the tests print why they were skipped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

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
}

/// A running `hvncp-loadgen` ([`Lab::loadgen`]): commands in, event lines out.
pub struct Loadgen {
    commands: ChildStdin,
    lines: Receiver<String>,
}

impl Lab {
    /// Start `hvncp-loadgen args…` in `ns` (stderr in `<dir>/<label>.log`), or `None`
    /// after printing why when it is not built (a build problem in CI: then it panics).
    pub fn loadgen(&mut self, label: &str, ns: &str, args: &[&str]) -> Option<Loadgen> {
        let bin = binary("hvncp-loadgen");
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
            return None;
        }
        let (commands, stdout) = self.spawn_piped(label, ns, "hvncp-loadgen", args);
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Some(Loadgen { commands, lines })
    }
}

impl Loadgen {
    /// Send one command line (`pause 7-9`, `resume all`, `quit`…).
    pub fn command(&mut self, line: &str) {
        writeln!(self.commands, "{line}").expect("loadgen stdin");
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
                Err(e) => panic!("loadgen: no {prefix:?} line within {within:?}: {e}"),
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
