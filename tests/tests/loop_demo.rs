//! The loop demo that `scripts/demo-loop` runs: it succeeds, and what it prints shows the
//! hung VM's missed heartbeats growing, its relocation's phases, the VM on its new host,
//! the failed host's VMs relocated, and the restart summary event.

use std::process::Command;

#[test]
fn loop_demo_relocates_a_hung_vm_and_a_failed_hosts_vms() {
    if let Some(why) = hvha_e2e::cannot_run() {
        eprintln!("SKIPPED e2e::loop_demo: {why}");
        return;
    }
    if Command::new("virsh").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "virsh not installed (.ci/run installs libvirt-clients)"
        );
        eprintln!("SKIPPED e2e::loop_demo: virsh not found");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_hvha-loop-demo"))
        .output()
        .expect("run hvha-loop-demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "hvha-loop-demo failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for want in [
        "== (a)",
        "s on every monitor of its host",
        "relocated in ",
        "stopping_ha_monitoring",
        "starting_ha_monitoring",
        "== (c)",
        "== (d)",
        "6 out of 6 VMs have been successfully restarted",
        "every step happened",
    ] {
        assert!(
            stdout.contains(want),
            "{want:?} missing from the demo's output:\n{stdout}"
        );
    }
}
