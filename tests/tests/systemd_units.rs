//! The shipped systemd units (dist/systemd/: hmd, vmmd, hactl): `systemd-analyze verify` accepts them
//! without a single warning (with `ExecStart` pointed at the built binaries), and they
//! keep the watchdog, restart and hardening settings docs/operations.md describes.
//! Skipped, with a message, where `systemd-analyze` is not installed.

use std::path::Path;
use std::process::Command;

use hvha_e2e::binary;

/// The unit's text with `ExecStart` pointing at the binary built here.
fn unit(name: &str, bin: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dist/systemd")
        .join(format!("{name}.service"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.replace(
        &format!("/usr/bin/{bin} "),
        &format!("{} ", binary(bin).display()),
    )
}

/// The value of `key=` in the unit (last one wins, as in systemd).
fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .next_back()
}

#[test]
fn units_keep_their_watchdog_restart_and_hardening() {
    for (name, caps) in [
        ("hmd", "CAP_NET_RAW CAP_NET_ADMIN"),
        ("vmmd", "CAP_NET_RAW"),
    ] {
        let text = unit(name, name);
        for (key, want) in [
            ("Type", "notify"),
            ("NotifyAccess", "main"),
            ("WatchdogSec", "30s"),
            ("Restart", "on-failure"),
            ("RestartPreventExitStatus", "2"),
            ("CapabilityBoundingSet", caps),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
        ] {
            assert_eq!(value(&text, key), Some(want), "{name}.service {key}");
        }
        assert!(
            value(&text, "RestrictAddressFamilies").is_some_and(|v| v.contains("AF_PACKET")),
            "{name}.service must allow raw sockets"
        );
        assert_eq!(
            value(&text, "PrivateNetwork"),
            None,
            "{name} needs the host's links"
        );
    }
    let hmd = unit("hmd", "hmd");
    assert_eq!(
        value(&hmd, "StateDirectory"),
        Some("hvha"),
        "HSDB directory writable"
    );
    assert_eq!(
        value(&hmd, "RuntimeDirectory"),
        Some("hvha"),
        "admin socket directory"
    );
    // hactl run: notify + watchdog + no restart after a configuration error, the HSDB
    // and admin socket where the unit lets it write; /run/hvha kept when either unit
    // of a machine running both stops.
    let hactl = unit("hactl", "hactl");
    for (key, want) in [
        ("Type", "notify"),
        (
            "ExecStart",
            "/usr/bin/hactl --config /etc/hvha/hactl.toml run",
        ),
        ("WatchdogSec", "60s"),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", "2"),
        ("StateDirectory", "hvha"),
        ("RuntimeDirectory", "hvha"),
        ("NoNewPrivileges", "yes"),
    ] {
        let text = if key == "ExecStart" {
            std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/systemd/hactl.service"),
            )
            .expect("hactl.service")
        } else {
            hactl.clone()
        };
        assert_eq!(value(&text, key), Some(want), "hactl.service {key}");
    }
    for text in [&hmd, &hactl] {
        assert_eq!(value(text, "RuntimeDirectoryPreserve"), Some("yes"));
    }
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED systemd_units: systemd-analyze is not installed");
        return;
    };
    assert!(version.status.success());
    for bin in ["hmd", "vmmd", "hactl"] {
        if !binary(bin).exists() {
            eprintln!("SKIPPED systemd_units: {} not built", binary(bin).display());
            return;
        }
    }
    let dir = tempfile_dir();
    let mut paths = Vec::new();
    for name in ["hmd", "vmmd", "hactl"] {
        let path = dir.join(format!("{name}.service"));
        std::fs::write(&path, unit(name, name)).expect("write unit");
        paths.push(path);
    }
    // The units name their man pages (man:hmd(8), …), which the packages install
    // (tests/tests/packages.rs checks them there): not looked for on this machine.
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(&paths)
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Warnings (unknown keys, unparsable values) leave the exit status 0: any line
    // naming one of our files is a failure.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains(".service")).collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    assert!(ours.is_empty(), "systemd-analyze verify warns:\n{stderr}");
}

/// A fresh scratch directory.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hvha-units-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}
