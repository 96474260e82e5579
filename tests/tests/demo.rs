//! The demo that `scripts/demo` runs: it succeeds, and what it prints shows the HSDB rows
//! changing — agent 2 MISSING when paused, DETECTED again when resumed, agent 3 SUSPENDED
//! when stopped.

use std::process::Command;

/// The part of the demo's output under the heading `== (<step>)`.
fn section<'a>(out: &'a str, step: &str) -> &'a str {
    let start = out
        .find(&format!("\n== ({step})"))
        .unwrap_or_else(|| panic!("no step ({step}) in the output:\n{out}"));
    let rest = &out[start + 1..];
    rest.find("\n== ").map_or(rest, |end| &rest[..end])
}

/// The HSDB table row of `agent` in `section`.
fn row<'a>(section: &'a str, agent: &str) -> &'a str {
    section
        .lines()
        .find(|l| l.starts_with(&format!("  {agent} ")))
        .unwrap_or_else(|| panic!("no HSDB row for {agent} in:\n{section}"))
}

#[test]
fn demo_shows_missing_detected_and_suspended() {
    if let Some(why) = hvha_e2e::cannot_run() {
        eprintln!("SKIPPED e2e::demo: {why}");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_hvha-demo"))
        .output()
        .expect("run hvha-demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "hvha-demo failed ({}):\n{stdout}\n{stderr}",
        out.status
    );

    // The steps, in order, each with its result line.
    let steps: Vec<usize> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|step| {
            stdout
                .find(&format!("\n== ({step})"))
                .unwrap_or_else(|| panic!("no step ({step}) in the output:\n{stdout}"))
        })
        .collect();
    assert!(steps.is_sorted(), "steps out of order:\n{stdout}");
    for (step, result) in [
        ("a", "result: vmmd1 DETECTED"),
        ("a", "result: vmmd2 DETECTED"),
        ("a", "result: vmmd3 DETECTED"),
        ("b", "result: vmmd2 MISSING"),
        ("c", "result: vmmd2 DETECTED"),
        ("d", "result: vmmd3 SUSPENDED"),
    ] {
        let text = section(&stdout, step);
        assert!(
            text.contains(result),
            "{result:?} not in step ({step}):\n{text}"
        );
    }

    // The HSDB rows printed after each step.
    for agent in ["vmmd1", "vmmd2", "vmmd3"] {
        assert!(row(section(&stdout, "a"), agent).contains("DETECTED"));
    }
    let b = section(&stdout, "b");
    assert!(row(b, "vmmd2").contains("MISSING"), "{b}");
    assert!(row(b, "vmmd1").contains("DETECTED"), "{b}");
    let c = section(&stdout, "c");
    assert!(row(c, "vmmd2").contains("DETECTED"), "{c}");
    let d = section(&stdout, "d");
    assert!(row(d, "vmmd3").contains("SUSPENDED"), "{d}");
    assert!(row(d, "vmmd2").contains("DETECTED"), "{d}");
    let e = section(&stdout, "e");
    assert!(
        e.contains("1 suspended"),
        "hmd ctl status counts the stopped agent:\n{e}"
    );
    assert!(stdout.contains("HSDB integrity check: ok"), "{stdout}");
    // The `pending` listing shows each VM state item's old and new state (columns since
    // schema v4, printed by `PendingRow::describe`): agent 3's graceful stop.
    assert!(
        stdout.contains(":new=SUSPENDED"),
        "pending items name their states:\n{stdout}"
    );
}

/// `scripts/demo --help` answers at once: it prints its help and builds nothing (a
/// `cargo` first on the PATH would leave a mark if it were called).
#[test]
fn demo_script_help_builds_nothing() {
    let fake_bin = std::env::temp_dir().join(format!("hvha-demo-help-{}", std::process::id()));
    std::fs::create_dir_all(&fake_bin).expect("scratch dir");
    let mark = fake_bin.join("cargo-was-called");
    let cargo = fake_bin.join("cargo");
    std::fs::write(
        &cargo,
        format!("#!/bin/sh\ntouch '{}'\nexit 1\n", mark.display()),
    )
    .expect("fake cargo");
    std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/demo");
    for flag in ["--help", "-h"] {
        let out = Command::new("bash")
            .arg(script)
            .args(["--keep", flag])
            .env(
                "PATH",
                format!("{}:/usr/local/bin:/usr/bin:/bin", fake_bin.display()),
            )
            .output()
            .expect("run scripts/demo");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(stdout.contains("Usage: scripts/demo [--keep]"), "{stdout}");
        assert!(!mark.exists(), "scripts/demo {flag} ran cargo");
    }
    let _ = std::fs::remove_dir_all(&fake_bin);
}

/// The programs of this crate answer `--version` (and need no root for it).
#[test]
fn demo_and_bench_print_their_version() {
    for (bin, name) in [
        (env!("CARGO_BIN_EXE_hvha-demo"), "hvha-demo"),
        (env!("CARGO_BIN_EXE_hvha-e2e-bench"), "hvha-e2e-bench"),
        (env!("CARGO_BIN_EXE_hvha-ame-bench"), "hvha-ame-bench"),
    ] {
        for flag in ["--version", "-V"] {
            let out = Command::new(bin).arg(flag).output().expect("run");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{name} {flag}: {stdout}");
            assert_eq!(stdout, format!("{name} {}\n", env!("CARGO_PKG_VERSION")));
        }
    }
}
