//! `hvha-ame-bench` (the harness behind docs/perf.md's application-monitoring figures)
//! in its short mode: a real `vmmd` with 16 applications probed every second by its
//! built-in HTTP and TCP probes against the harness's listeners, and the same agent
//! with none. The harness itself fails unless every application was NORMAL at the end
//! (`vmmd ctl status`) and the listeners saw about 16 probes a second, so this test
//! shows the measured set-up really monitors what the figures claim; it measures
//! nothing (the figures come from the release build, docs/perf.md).

use std::process::Command;

#[test]
fn short_run_monitors_sixteen_probed_applications() {
    if let Some(why) = hvha_e2e::cannot_run() {
        eprintln!("SKIPPED e2e::ame_bench: {why}");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_hvha-ame-bench"))
        .args([
            "--seconds",
            "4",
            "--window",
            "2",
            "--warmup",
            "4",
            "--variants",
            "baseline,probes",
        ])
        .output()
        .expect("run hvha-ame-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    for want in ["| baseline |", "| probes |", "16/16"] {
        assert!(stdout.contains(want), "{want:?} in\n{stdout}");
    }
}
