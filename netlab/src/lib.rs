//! Throwaway network namespaces and veth pairs for the tests that need root.
//!
//! `dataplane`'s raw-socket tests, `agent`'s vmmd end-to-end test and the `hvha-e2e` lab
//! all build their networks the same way, and this crate is that way: whether this
//! process may do it at all ([`missing_capabilities`]), running `ip` ([`ip`], [`run`]),
//! a namespace that deletes itself ([`Netns`]), the sweep of namespaces left by killed
//! test processes ([`remove_stale`]), and veth pairs ([`veth`]).
//!
//! A namespace is named `<prefix>-<pid>-<test>`: the prefix says which suite made it, the
//! pid keeps test processes apart and tells the sweep whether its owner still lives, the
//! test name keeps the tests of one process apart. Namespace names may be long (they are
//! files under `/run/netns`, up to 255 bytes); interface names may not (15 bytes).
//!
//! These are test helpers: whatever fails panics with the command and its stderr, since
//! a test that cannot build its network has failed. The crate depends on `std` alone, so
//! that `dataplane` can use it as a dev-dependency without a cycle.

use std::process::Command;
use std::sync::{Mutex, PoisonError};

/// The effective capabilities the tests need: bit in `CapEff`, name.
const NEEDED: [(u32, &str); 3] = [
    (12, "CAP_NET_ADMIN"),
    (13, "CAP_NET_RAW"),
    (21, "CAP_SYS_ADMIN"),
];

/// Longest interface name the kernel takes (`IFNAMSIZ` less the NUL).
const IFNAME_MAX: usize = 15;

/// Why this process cannot build network namespaces, or `None` when it can: it lacks
/// one of `CAP_NET_ADMIN`, `CAP_NET_RAW` and `CAP_SYS_ADMIN` ("not root (missing …)"),
/// or iproute2's `ip` is not installed. Tests print the reason and pass.
pub fn missing_capabilities() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(bit, _)| cap_eff & (1 << bit) == 0)
        .map(|(_, name)| *name)
        .collect();
    if !missing.is_empty() {
        return Some(format!("not root (missing {})", missing.join(", ")));
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("iproute2 `ip` not found".to_owned());
    }
    None
}

/// Run `argv[0]` with the rest of `argv` as its arguments; panic with the command line
/// and its stderr if it cannot start or fails.
pub fn run(argv: &[&str]) {
    let (program, args) = argv.split_first().expect("run: an empty command line");
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", argv.join(" ")));
    assert!(
        out.status.success(),
        "{}: {}",
        argv.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ip args…`, panicking with the command line and its stderr on failure.
pub fn ip(args: &[&str]) {
    let mut argv = vec!["ip"];
    argv.extend_from_slice(args);
    run(&argv);
}

/// A network namespace `<prefix>-<pid>-<test>`, created empty (only `lo`, down, as the
/// kernel makes it) and deleted on drop, also when the test panics. The kernel then
/// removes its interfaces, and the peers of its veths, in the background.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create `<prefix>-<pid>-<test>`. `test` must be unique among the namespaces of this
    /// process alive at once (a test's name, with a suffix when it makes several). The
    /// first namespace of each prefix in a process first sweeps the stale ones of that
    /// prefix ([`remove_stale`]).
    ///
    /// # Panics
    ///
    /// If `prefix` is empty or holds a `-` (the sweep could not tell the pid), or if
    /// `ip netns add` fails (the name exists, no privilege: check
    /// [`missing_capabilities`] first).
    pub fn new(prefix: &str, test: &str) -> Netns {
        assert!(
            !prefix.is_empty() && !prefix.contains('-'),
            "namespace prefix {prefix:?}: must be non-empty and without `-`"
        );
        sweep_once(prefix);
        let name = format!("{prefix}-{}-{test}", std::process::id());
        ip(&["netns", "add", &name]);
        Netns { name }
    }

    /// The namespace's name, for `ip -n`, `ip netns exec` or `setns`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <namespace> args…`, panicking with the command line and its stderr on
    /// failure.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // No panic here: this may run while a failed test unwinds.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Sweep `prefix`'s stale namespaces once per process, before its first namespace.
fn sweep_once(prefix: &str) {
    static SWEPT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut swept = SWEPT.lock().unwrap_or_else(PoisonError::into_inner);
    if !swept.iter().any(|p| p == prefix) {
        remove_stale(prefix);
        swept.push(prefix.to_owned());
    }
}

/// Delete the namespaces `<prefix>-<pid>-…` whose process `<pid>` no longer runs: those
/// of a test process that was killed, so its [`Netns`] guards never ran. Best effort:
/// failures are ignored. [`Netns::new`] calls it once per prefix and process.
pub fn remove_stale(prefix: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // `ip netns list` prints `<name>` or `<name> (id: <n>)`.
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = owner_pid(prefix, name) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

/// The pid in a namespace name `<prefix>-<pid>[-…]`, or `None` for another prefix.
fn owner_pid(prefix: &str, name: &str) -> Option<u32> {
    name.strip_prefix(prefix)?
        .strip_prefix('-')?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// One end of a veth pair.
#[derive(Debug, Clone, Copy)]
pub struct VethEnd<'a> {
    /// The namespace it is created in (a [`Netns::name`]).
    pub netns: &'a str,
    /// The interface's name: at most 15 bytes.
    pub name: &'a str,
    /// Its MAC address (`02:00:00:00:00:0a`), or `None` for a random one.
    pub mac: Option<&'a str>,
}

impl<'a> VethEnd<'a> {
    /// Interface `name` in namespace `netns`, with a random MAC address.
    pub fn new(netns: &'a str, name: &'a str) -> VethEnd<'a> {
        VethEnd {
            netns,
            name,
            mac: None,
        }
    }

    /// The same end with MAC address `mac`.
    pub fn with_mac(self, mac: &'a str) -> VethEnd<'a> {
        VethEnd {
            mac: Some(mac),
            ..self
        }
    }

    /// `<name> [address <mac>] netns <netns>`, as `ip link add` takes it on either side
    /// of `peer`.
    fn args(&self) -> Vec<&'a str> {
        assert!(
            !self.name.is_empty() && self.name.len() <= IFNAME_MAX,
            "interface name {:?}: 1 to {IFNAME_MAX} bytes",
            self.name
        );
        let mut args = vec![self.name];
        if let Some(mac) = self.mac {
            args.extend(["address", mac]);
        }
        args.extend(["netns", self.netns]);
        args
    }
}

/// A veth pair `a` ↔ `b`, both up, without addresses. The ends may be in one namespace or
/// two; the MAC addresses are set before the links come up.
///
/// # Panics
///
/// If an interface name is empty or longer than 15 bytes, or `ip` fails (a name taken,
/// a namespace missing).
pub fn veth(a: VethEnd<'_>, b: VethEnd<'_>) {
    let mut args = vec!["link", "add"];
    args.extend(a.args());
    args.extend(["type", "veth", "peer", "name"]);
    args.extend(b.args());
    ip(&args);
    for end in [a, b] {
        ip(&["-n", end.netns, "link", "set", end.name, "up"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests below that build namespaces: `false` (after saying why) when this
    /// process cannot.
    fn can_run(test: &str) -> bool {
        match missing_capabilities() {
            Some(why) => {
                eprintln!("SKIPPED netlab::{test}: {why}");
                false
            }
            None => true,
        }
    }

    fn exists(name: &str) -> bool {
        let out = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    }

    fn link_show(ns: &str, iface: &str) -> String {
        let out = Command::new("ip")
            .args(["-n", ns, "link", "show", iface])
            .output()
            .expect("ip link show");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The `UP` flag (set up by the administrator) in `ip link show`'s `<…>` list.
    fn admin_up(link_show: &str) -> bool {
        link_show
            .split(['<', '>'])
            .nth(1)
            .is_some_and(|flags| flags.split(',').any(|f| f == "UP"))
    }

    #[test]
    fn owner_pid_reads_only_its_own_prefix() {
        assert_eq!(owner_pid("hvio", "hvio-4242-recv_mode"), Some(4242));
        assert_eq!(owner_pid("hvag", "hvag-17-pair-a"), Some(17));
        assert_eq!(owner_pid("hve", "hve-9-health-hm1"), Some(9));
        assert_eq!(owner_pid("hve", "hvea-9-x"), None, "another prefix");
        assert_eq!(owner_pid("hvio", "hvag-17-pair-a"), None);
        assert_eq!(owner_pid("hvio", "hvio-x17-t"), None, "no pid");
        assert_eq!(owner_pid("hvio", "hvio"), None);
        assert_eq!(owner_pid("hvio", "other"), None);
    }

    #[test]
    #[should_panic(expected = "ip -n hvnl-no-such-namespace link set lo up: ")]
    fn a_failed_command_is_named_with_its_stderr() {
        ip(&["-n", "hvnl-no-such-namespace", "link", "set", "lo", "up"]);
    }

    #[test]
    fn namespace_is_deleted_on_drop_and_on_panic() {
        if !can_run("namespace_is_deleted_on_drop_and_on_panic") {
            return;
        }
        let ns = Netns::new("hvnl", "drop");
        let name = ns.name().to_owned();
        assert_eq!(name, format!("hvnl-{}-drop", std::process::id()));
        assert!(exists(&name));
        let lo = link_show(&name, "lo");
        assert!(
            lo.contains("<LOOPBACK>"),
            "a fresh namespace's lo is down: {lo}"
        );
        drop(ns);
        assert!(!exists(&name));

        let name = format!("hvnl-{}-panic", std::process::id());
        let unwound = std::panic::catch_unwind(|| {
            let _ns = Netns::new("hvnl", "panic");
            panic!("a failing test");
        });
        assert!(unwound.is_err());
        assert!(!exists(&name));
    }

    #[test]
    fn stale_namespaces_of_dead_processes_are_removed() {
        if !can_run("stale_namespaces_of_dead_processes_are_removed") {
            return;
        }
        let alive = Netns::new("hvnls", "alive");
        let mut child = Command::new("true").spawn().expect("spawn true");
        let dead = child.id();
        child.wait().expect("wait true");
        let stale = format!("hvnls-{dead}-killed");
        let other = format!("hvnlsx-{dead}-other");
        ip(&["netns", "add", &stale]);
        ip(&["netns", "add", &other]);
        remove_stale("hvnls");
        let left = (exists(&stale), exists(alive.name()), exists(&other));
        for name in [&stale, &other] {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
        assert_eq!(
            left,
            (false, true, true),
            "(dead pid's, live pid's, other prefix's) namespace still there"
        );
    }

    #[test]
    fn veth_pair_joins_two_namespaces_with_the_given_macs() {
        if !can_run("veth_pair_joins_two_namespaces_with_the_given_macs") {
            return;
        }
        let a = Netns::new("hvnl", "veth-a");
        let b = Netns::new("hvnl", "veth-b");
        veth(
            VethEnd::new(a.name(), "nla").with_mac("02:00:00:00:00:aa"),
            VethEnd::new(b.name(), "nlb"),
        );
        let nla = link_show(a.name(), "nla");
        assert!(nla.contains("link/ether 02:00:00:00:00:aa "), "{nla}");
        assert!(admin_up(&nla), "{nla}");
        let nlb = link_show(b.name(), "nlb");
        assert!(admin_up(&nlb), "{nlb}");
        assert!(link_show(a.name(), "nlb").is_empty(), "nlb is in b only");
        drop(b);
        // The kernel dismantles a deleted namespace in the background.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !link_show(a.name(), "nla").is_empty() {
            assert!(std::time::Instant::now() < deadline, "nla outlived b");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
