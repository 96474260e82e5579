//! The libvirt driver against libvirt's built-in test hypervisor (`test:///path/host.xml`,
//! Debian package libvirt-clients): probes, actions through the one connection per host,
//! a host that disappears, a virsh that hangs, the output cap, and real pings.
//!
//! Without `virsh` on PATH the hypervisor tests print `SKIPPED <test>: virsh not found`
//! and pass, except under `CI=true`, where they fail; CI installs it (.ci/run).

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use controlplane::platform::libvirt::{
    ConfigError, LibvirtConfig, LibvirtHost, LibvirtPlatform, program_exists,
};
use controlplane::platform::{Platform, PlatformError, PowerState, VmSpec, VmStatus};
use hsdb::Uuid;
use tempfile::TempDir;

fn uuid(n: u8) -> Uuid {
    Uuid::parse(format!("6f1c2a3e-0b7d-4c8e-9a51-0000000000{n:02x}").as_bytes()).unwrap()
}

fn virsh_or_skip(test: &str) -> bool {
    if program_exists(Path::new("virsh")) {
        true
    } else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: virsh not found under CI=true (.ci/run installs it)"
        );
        eprintln!("SKIPPED {test}: virsh not found");
        false
    }
}

fn ping_or_skip(test: &str) -> bool {
    if program_exists(Path::new("ping")) {
        true
    } else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: ping not found under CI=true (.ci/run installs it)"
        );
        eprintln!("SKIPPED {test}: ping not found");
        false
    }
}

/// One domain of a host file; `runstate` is the test driver's initial state
/// (1 running, 2 blocked, 3 paused, 4 shutting down, 5 shut off, 6 crashed, 7 pmsuspended).
fn domain(n: u8, vcpus: u32, memory_mib: u32, runstate: u8) -> String {
    format!(
        r#"  <domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0">
    <name>vm{n}</name>
    <uuid>{}</uuid>
    <memory unit="MiB">{memory_mib}</memory>
    <vcpu>{vcpus}</vcpu>
    <os><type>hvm</type></os>
    <test:runstate>{runstate}</test:runstate>
  </domain>
"#,
        uuid(n)
    )
}

/// A host file: `cores` CPUs and `memory_gib` of memory (the test driver reads the node's
/// memory in KiB whatever the unit attribute says), and its domains.
fn host_file(dir: &Path, name: &str, cores: u32, memory_gib: u64, domains: &[String]) -> PathBuf {
    let path = dir.join(format!("{name}.xml"));
    let kib = memory_gib * 1024 * 1024;
    let xml = format!(
        "<node>\n  <cpu><nodes>1</nodes><sockets>1</sockets><cores>{cores}</cores><threads>1</threads><mhz>2000</mhz></cpu>\n  <memory>{kib}</memory>\n{}</node>\n",
        domains.concat()
    );
    std::fs::write(&path, xml).unwrap();
    path
}

/// Host a (8 CPUs, 32 GiB): vm1 running, vm2 running, vm3 paused, vm4 shut off,
/// vm5 crashed, vm6 blocked, vm7 in shutdown, vm8 pmsuspended.
/// Host b (4 CPUs, 16 GiB): vm9 running.
fn two_hosts(dir: &Path) -> LibvirtConfig {
    let a = host_file(
        dir,
        "host-a",
        8,
        32,
        &[
            domain(1, 2, 2048, 1),
            domain(2, 1, 1024, 1),
            domain(3, 1, 512, 3),
            domain(4, 1, 512, 5),
            domain(5, 1, 512, 6),
            domain(6, 1, 512, 2),
            domain(7, 1, 512, 4),
            domain(8, 1, 512, 7),
        ],
    );
    let b = host_file(dir, "host-b", 4, 16, &[domain(9, 2, 4096, 1)]);
    let mut config = LibvirtConfig::new(vec![
        LibvirtHost {
            name: "a".into(),
            uri: format!("test://{}", a.display()),
        },
        LibvirtHost {
            name: "b".into(),
            uri: format!("test://{}", b.display()),
        },
    ]);
    config.call_timeout = Duration::from_secs(10);
    config
}

fn status(power: PowerState) -> VmStatus {
    VmStatus {
        power,
        os_started: power == PowerState::Running,
    }
}

fn spec(n: u8, cpu_milli: u32, memory_mb: u32) -> VmSpec {
    VmSpec {
        uuid: uuid(n),
        name: format!("vm{n}"),
        cpu_milli,
        memory_mb,
    }
}

fn kill(signal: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {signal} {pid}");
}

fn executable(dir: &Path, name: &str, script: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn libvirt_probes_power_states_and_hosts() {
    if !virsh_or_skip("libvirt_probes_power_states_and_hosts") {
        return;
    }
    let dir = TempDir::new().unwrap();
    let mut p = LibvirtPlatform::new(two_hosts(dir.path())).unwrap();
    assert_eq!(p.name(), "libvirt");
    assert_eq!(p.host_alive("a"), Ok(true));
    assert_eq!(p.host_alive("b"), Ok(true));
    let expected = [
        (1, PowerState::Running),
        (2, PowerState::Running),
        (3, PowerState::NotAvailable),
        (4, PowerState::NotActivated),
        (5, PowerState::NotActivated),
        (6, PowerState::Running),
        (7, PowerState::ShuttingDown),
        (8, PowerState::NotAvailable),
    ];
    for (n, power) in expected {
        assert_eq!(p.vm_status("a", &uuid(n)), Ok(status(power)), "vm{n}");
    }
    assert_eq!(
        p.vm_status("b", &uuid(1)),
        Err(PlatformError::NoSuchVm {
            host: "b".into(),
            vm: uuid(1)
        })
    );
    assert_eq!(
        p.vm_status("zz", &uuid(1)),
        Err(PlatformError::NoSuchHost { host: "zz".into() })
    );

    let hosts = p.hosts().unwrap();
    assert_eq!(hosts.len(), 2);
    let a = &hosts[0];
    assert_eq!(
        (a.name.as_str(), a.cpu_milli, a.memory_mb),
        ("a", 8_000, 32_768)
    );
    assert_eq!(a.vms.len(), 8);
    let vm1 = a.vms.iter().find(|(s, _)| s.uuid == uuid(1)).unwrap();
    assert_eq!(vm1.0, spec(1, 2_000, 2_048));
    assert_eq!(vm1.1, status(PowerState::Running));
    let b = &hosts[1];
    assert_eq!(
        (b.name.as_str(), b.cpu_milli, b.memory_mb),
        ("b", 4_000, 16_384)
    );
    assert_eq!(
        b.vms,
        [(spec(9, 2_000, 4_096), status(PowerState::Running))]
    );
}

#[test]
fn libvirt_actions_go_through_one_connection_per_host() {
    if !virsh_or_skip("libvirt_actions_go_through_one_connection_per_host") {
        return;
    }
    let dir = TempDir::new().unwrap();
    let mut p = LibvirtPlatform::new(two_hosts(dir.path())).unwrap();
    let pid_a = {
        p.host_alive("a").unwrap();
        p.connection_pid("a").unwrap()
    };

    // Stop: seen by the next probe (the same connection: a new one would re-read the file).
    p.stop("a", &uuid(1)).unwrap();
    assert_eq!(
        p.vm_status("a", &uuid(1)),
        Ok(status(PowerState::NotActivated))
    );
    p.stop("a", &uuid(1)).unwrap();
    assert_eq!(
        p.stop("b", &uuid(1)),
        Err(PlatformError::NoSuchVm {
            host: "b".into(),
            vm: uuid(1)
        })
    );

    // Start elsewhere: defined on b with the same UUID, name and size.
    p.start("b", &spec(1, 1_500, 2_048)).unwrap();
    assert_eq!(p.vm_status("b", &uuid(1)), Ok(status(PowerState::Running)));
    let info = p.virsh("b", &format!("dominfo {}", uuid(1))).unwrap();
    assert!(info.errors.is_empty(), "{info:?}");
    let line = |key: &str| {
        info.lines
            .iter()
            .find(|l| l.starts_with(key))
            .map(|l| l[key.len()..].trim().to_owned())
            .unwrap()
    };
    assert_eq!(line("UUID:"), uuid(1).to_string());
    assert_eq!(line("Name:"), "vm1");
    assert_eq!(line("CPU(s):"), "2");
    assert_eq!(line("Max memory:"), "2097152 KiB");
    // Starting it again is Ok and changes nothing.
    p.start("b", &spec(1, 1_500, 2_048)).unwrap();

    // Cleanup on the source removes the definition; twice is Ok.
    p.cleanup("a", &uuid(1)).unwrap();
    assert_eq!(
        p.vm_status("a", &uuid(1)),
        Err(PlatformError::NoSuchVm {
            host: "a".into(),
            vm: uuid(1)
        })
    );
    p.cleanup("a", &uuid(1)).unwrap();
    // Cleanup of a running domain destroys it first.
    p.cleanup("a", &uuid(2)).unwrap();
    assert!(matches!(
        p.vm_status("a", &uuid(2)),
        Err(PlatformError::NoSuchVm { .. })
    ));

    // Start of a defined, powered-off domain on its own host.
    p.start("a", &spec(4, 1_000, 512)).unwrap();
    assert_eq!(p.vm_status("a", &uuid(4)), Ok(status(PowerState::Running)));

    let hosts = p.hosts().unwrap();
    let on = |h: usize| -> Vec<Uuid> {
        let mut v: Vec<Uuid> = hosts[h].vms.iter().map(|(s, _)| s.uuid).collect();
        v.sort();
        v
    };
    assert_eq!(on(0), [3, 4, 5, 6, 7, 8].map(uuid));
    assert_eq!(on(1), [uuid(1), uuid(9)]);
    // Every call went through the one child.
    assert_eq!(p.connection_pid("a"), Some(pid_a));

    // A bad name is refused before virsh sees it.
    let mut bad = spec(20, 1_000, 512);
    bad.name = "a\nundefine vm9".into();
    assert!(matches!(
        p.start("b", &bad),
        Err(PlatformError::Failed { .. })
    ));
    assert_eq!(p.vm_status("b", &uuid(9)), Ok(status(PowerState::Running)));
}

#[test]
fn libvirt_host_alive_false_once_the_host_is_gone() {
    if !virsh_or_skip("libvirt_host_alive_false_once_the_host_is_gone") {
        return;
    }
    let dir = TempDir::new().unwrap();
    let mut p = LibvirtPlatform::new(two_hosts(dir.path())).unwrap();
    assert_eq!(p.host_alive("a"), Ok(true));
    let file = dir.path().join("host-a.xml");
    let away = dir.path().join("host-a.gone");
    std::fs::rename(&file, &away).unwrap();
    // The open connection still answers: the file is read once per connection.
    assert_eq!(p.host_alive("a"), Ok(true));
    let pid = p.connection_pid("a").unwrap();
    kill("-KILL", pid);
    // The dead child is replaced, the new connection cannot open the URI: gone.
    assert_eq!(p.host_alive("a"), Ok(false));
    assert!(matches!(
        p.vm_status("a", &uuid(1)),
        Err(PlatformError::Unreachable { .. })
    ));
    assert!(matches!(
        p.start("a", &spec(9, 1_000, 512)),
        Err(PlatformError::Unreachable { .. })
    ));
    assert_eq!(p.host_alive("b"), Ok(true));
    let hosts: Vec<String> = p.hosts().unwrap().into_iter().map(|h| h.name).collect();
    assert_eq!(hosts, ["b"]);
    // Back.
    std::fs::rename(&away, &file).unwrap();
    assert_eq!(p.host_alive("a"), Ok(true));
    assert_ne!(p.connection_pid("a"), Some(pid));
}

#[test]
fn libvirt_hanging_virsh_times_out_and_the_next_call_recovers() {
    if !virsh_or_skip("libvirt_hanging_virsh_times_out_and_the_next_call_recovers") {
        return;
    }
    let dir = TempDir::new().unwrap();
    let flag = dir.path().join("hang");
    let fake = executable(
        dir.path(),
        "virsh",
        &format!(
            "#!/bin/sh\nif [ -e '{}' ]; then exec sleep 60; fi\nexec virsh \"$@\"\n",
            flag.display()
        ),
    );
    let mut config = two_hosts(dir.path());
    config.virsh = fake;
    config.call_timeout = Duration::from_secs(1);
    let mut p = LibvirtPlatform::new(config).unwrap();

    // A virsh that never answers its first marker.
    std::fs::write(&flag, b"").unwrap();
    let t = Instant::now();
    let r = p.host_alive("a");
    let took = t.elapsed();
    assert_eq!(
        r,
        Err(PlatformError::Timeout {
            op: "host_alive a".into(),
            after_ms: 1_000
        })
    );
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(p.connection_pid("a"), None, "the hung child is dropped");
    std::fs::remove_file(&flag).unwrap();
    assert_eq!(p.host_alive("a"), Ok(true));

    // A connection that stops answering in the middle of its life.
    p.stop("a", &uuid(1)).unwrap();
    let pid = p.connection_pid("a").unwrap();
    kill("-STOP", pid);
    let t = Instant::now();
    assert!(matches!(
        p.vm_status("a", &uuid(1)),
        Err(PlatformError::Timeout {
            after_ms: 1_000,
            ..
        })
    ));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // The stopped child was killed and reaped.
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    // The next call opens a new connection (the test hypervisor re-reads its file: the
    // stop above is forgotten, a real hypervisor would remember it).
    assert_eq!(p.vm_status("a", &uuid(1)), Ok(status(PowerState::Running)));
    assert_ne!(p.connection_pid("a"), Some(pid));
}

#[test]
fn libvirt_output_is_capped_per_command() {
    if !virsh_or_skip("libvirt_output_is_capped_per_command") {
        return;
    }
    let dir = TempDir::new().unwrap();
    // 200 domains: `list --all --uuid` prints 7,400 bytes.
    let many: Vec<String> = (0..200u8).map(|n| domain(n, 1, 16, 5)).collect();
    let big = host_file(dir.path(), "big", 4, 16, &many);
    let mut config = LibvirtConfig::new(vec![LibvirtHost {
        name: "big".into(),
        uri: format!("test://{}", big.display()),
    }]);
    config.max_output_bytes = 4096;
    let mut p = LibvirtPlatform::new(config).unwrap();
    let Err(err) = p.hosts() else {
        panic!("hosts() read more than the cap");
    };
    assert!(
        matches!(&err, PlatformError::Failed { why, .. } if why.contains("more than 4096 bytes")),
        "{err}"
    );
    // The overflowing connection was dropped; small answers still work.
    assert_eq!(p.host_alive("big"), Ok(true));
    assert_eq!(
        p.vm_status("big", &uuid(7)),
        Ok(status(PowerState::NotActivated))
    );
}

/// Needs no virsh: a missing virsh program says nothing about the host.
#[test]
fn libvirt_missing_virsh_is_not_a_dead_host() {
    let mut config = LibvirtConfig::new(vec![LibvirtHost {
        name: "a".into(),
        uri: "test:///default".into(),
    }]);
    config.virsh = PathBuf::from("/nonexistent/virsh");
    let mut p = LibvirtPlatform::new(config).unwrap();
    let err = p.host_alive("a").unwrap_err();
    assert!(
        matches!(&err, PlatformError::Failed { why, .. } if why.contains("cannot run /nonexistent/virsh")),
        "{err}"
    );
}

#[test]
fn libvirt_config_is_checked() {
    let host = |name: &str, uri: &str| LibvirtHost {
        name: name.into(),
        uri: uri.into(),
    };
    let dup = LibvirtConfig::new(vec![host("a", "test:///default"), host("a", "test:///x")]);
    assert_eq!(
        LibvirtPlatform::new(dup).unwrap_err(),
        ConfigError::DuplicateHost { name: "a".into() }
    );
    let bad_uri = LibvirtConfig::new(vec![host("a", "test:///a b")]);
    assert!(matches!(
        LibvirtPlatform::new(bad_uri),
        Err(ConfigError::BadUri { .. })
    ));
    let empty = LibvirtConfig::new(vec![host("", "test:///default")]);
    assert!(matches!(
        LibvirtPlatform::new(empty),
        Err(ConfigError::BadHostName { .. })
    ));
    let mut fast = LibvirtConfig::new(vec![host("a", "test:///default")]);
    fast.call_timeout = Duration::from_millis(10);
    let err = LibvirtPlatform::new(fast.clone()).unwrap_err();
    assert!(err.to_string().contains("allowed: 100ms to 600s"), "{err}");
    fast.call_timeout = Duration::from_secs(1);
    fast.ping_timeout = Duration::from_secs(61);
    assert!(matches!(
        LibvirtPlatform::new(fast.clone()),
        Err(ConfigError::PingTimeout { .. })
    ));
    fast.ping_timeout = Duration::from_secs(1);
    for bad in ["-f", "", ".x", "a b", "a;b"] {
        let mut c = fast.clone();
        c.ping_addresses.insert(uuid(1), bad.to_owned());
        assert!(
            matches!(
                LibvirtPlatform::new(c),
                Err(ConfigError::BadPingAddress { .. })
            ),
            "{bad:?}"
        );
    }
    for good in ["10.0.0.1", "fe80::1", "vm-1.example.org"] {
        let mut c = fast.clone();
        c.ping_addresses.insert(uuid(1), good.to_owned());
        assert!(LibvirtPlatform::new(c).is_ok(), "{good:?}");
    }
    fast.max_output_bytes = 10;
    assert!(matches!(
        LibvirtPlatform::new(fast),
        Err(ConfigError::MaxOutput { value: 10 })
    ));
}

fn ping_platform(ping: Option<PathBuf>, timeout: Duration) -> LibvirtPlatform {
    let mut config = LibvirtConfig::new(vec![]);
    config.ping_timeout = timeout;
    if let Some(p) = ping {
        config.ping = p;
    }
    config
        .ping_addresses
        .insert(uuid(1), "127.0.0.1".to_owned());
    // TEST-NET-2 (RFC 5737): nothing answers there (TEST-NET-1's 192.0.2.1 is the
    // gateway on some machines of this project's kind).
    config
        .ping_addresses
        .insert(uuid(2), "198.51.100.1".to_owned());
    LibvirtPlatform::new(config).unwrap()
}

#[test]
fn libvirt_ping_is_real_icmp() {
    if !ping_or_skip("libvirt_ping_is_real_icmp") {
        return;
    }
    let mut p = ping_platform(None, Duration::from_secs(4));
    assert_eq!(p.ping(&uuid(1)), Ok(true));
    let t = Instant::now();
    // Ok(false), not a Timeout: ping's own wait (-W 3) ends before the 4 s bound.
    assert_eq!(p.ping(&uuid(2)), Ok(false));
    assert!(
        t.elapsed() < Duration::from_millis(4_500),
        "{:?}",
        t.elapsed()
    );
    // No address: not pingable, and not an error that would hold recovery back.
    assert_eq!(p.ping(&uuid(3)), Ok(false));
    p.set_ping_address(uuid(3), Some("127.0.0.1")).unwrap();
    assert!(matches!(
        p.set_ping_address(uuid(3), Some("-c9")),
        Err(ConfigError::BadPingAddress { .. })
    ));
    assert_eq!(p.ping(&uuid(3)), Ok(true));
}

#[test]
fn libvirt_ping_that_hangs_or_fails() {
    let dir = TempDir::new().unwrap();
    let hang = executable(dir.path(), "ping-hang", "#!/bin/sh\nexec sleep 60\n");
    let mut p = ping_platform(Some(hang), Duration::from_secs(2));
    let t = Instant::now();
    assert!(matches!(
        p.ping(&uuid(1)),
        Err(PlatformError::Timeout {
            after_ms: 2_000,
            ..
        })
    ));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1_900) && took < Duration::from_secs(7),
        "{took:?}"
    );

    let broken = executable(
        dir.path(),
        "ping-broken",
        "#!/bin/sh\necho 'ping: socket: Operation not permitted' >&2\nexit 2\n",
    );
    let mut p = ping_platform(Some(broken), Duration::from_secs(2));
    let err = p.ping(&uuid(1)).unwrap_err();
    assert!(
        matches!(&err, PlatformError::Failed { why, .. } if why.contains("Operation not permitted")),
        "{err}"
    );
    let unroutable = executable(
        dir.path(),
        "ping-unroutable",
        "#!/bin/sh\necho 'ping: connect: Network is unreachable' >&2\nexit 2\n",
    );
    let mut p = ping_platform(Some(unroutable), Duration::from_secs(2));
    assert_eq!(p.ping(&uuid(1)), Ok(false));
}

/// A batch of starts over two hosts: each host's on a thread of its own with that host's
/// connection (kept: the state a start leaves is seen by the next probe, on the same
/// virsh process); the results in the batch's order; a start of an unknown host fails
/// alone.
#[test]
fn libvirt_start_many_runs_each_hosts_starts_on_its_connection() {
    if !virsh_or_skip("libvirt_start_many_runs_each_hosts_starts_on_its_connection") {
        return;
    }
    let dir = TempDir::new().unwrap();
    let mut p = LibvirtPlatform::new(two_hosts(dir.path())).unwrap();
    p.host_alive("a").unwrap();
    p.host_alive("b").unwrap();
    let (pid_a, pid_b) = (
        p.connection_pid("a").unwrap(),
        p.connection_pid("b").unwrap(),
    );
    // vm4 (a, shut off) starts on a; vm20 and vm21 are new to b; vm22 names no host.
    let (s4, s20, s21, s22) = (
        spec(4, 1_000, 512),
        spec(20, 1_000, 512),
        spec(21, 2_000, 1_024),
        spec(22, 1_000, 512),
    );
    let results = p.start_many(&[("b", &s20), ("a", &s4), ("nowhere", &s22), ("b", &s21)]);
    assert_eq!(results.len(), 4);
    assert_eq!(results[0], Ok(()));
    assert_eq!(results[1], Ok(()));
    assert_eq!(
        results[2],
        Err(PlatformError::NoSuchHost {
            host: "nowhere".into()
        })
    );
    assert_eq!(results[3], Ok(()));
    assert_eq!(p.connection_pid("a"), Some(pid_a), "the same connection");
    assert_eq!(p.connection_pid("b"), Some(pid_b), "the same connection");
    for (host, n) in [("a", 4), ("b", 20), ("b", 21)] {
        assert_eq!(
            p.vm_status(host, &uuid(n)),
            Ok(status(PowerState::Running)),
            "vm{n} on {host}"
        );
    }
}
