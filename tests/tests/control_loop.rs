//! The whole loop with real daemons: three hosts, two `hmd` each (a host has two I/O
//! partitions), all writing one SQLite HSDB; real agents (`vmmd` in a namespace per VM,
//! and `hvncp-loadgen` on both HA networks of each host); `hactl run` in the fast
//! profile on libvirt's test hypervisor, whose per-host files describe the same VMs (same
//! UUIDs) as the agents. Each `vmmd` VM has a management address in its own namespace,
//! so the control plane's ping probe is real: a "hung" VM is an agent stopped with
//! SIGSTOP in a namespace that ignores ICMP echo (`net.ipv4.icmp_echo_ignore_all`, per
//! namespace).

use std::process::Command;
use std::time::Duration;

use controlplane::params::GroupParams;
use hsdb::{DetectionSpeed, HeartbeatState, HostId};
use hvha_e2e::group::{
    HOSTS, PING_TIMEOUT_MS, REAL_VMS, VM_MISS_AFTER_MS, build, check_moved, check_policies, hactl,
    hm_uuid, real_vm, set_policies, start_vmmd, vms_of,
};
use hvha_e2e::{binary, unix_ms, uuid, wait_for};

#[test]
fn hung_vm_and_failed_host_are_recovered_and_nothing_else_moves() {
    let Some(mut g) = build("loop") else {
        return;
    };
    assert!(
        wait_for(Duration::from_secs(30), || g.all_detected().then_some(())).is_some(),
        "every VM DETECTED by both monitors of its host within 30 s\n{}",
        g.logs()
    );
    // Placement policies, set with hactl as an operator would: the hung VM of host-a
    // never goes to host-c (so it goes to host-b); host-c's VMs have an exclusion, a
    // collocation and an anticollocation (group::set_policies).
    hactl(
        &g.hsdb,
        &[
            "modify",
            "vm",
            "vm-0-1",
            "blacklist_hosts=host-c",
            "policy=add",
        ],
    );
    set_policies(&g, 2);
    let config = g.hactl_config.display().to_string();
    let ctl_ns = g.ctl_ns.clone();
    g.lab
        .spawn("hactl", &ctl_ns, "hactl", &["--config", &config, "run"]);
    let sock = g.lab.dir.join("hactl.sock");
    assert!(
        wait_for(Duration::from_secs(10), || {
            Command::new(binary("hactl"))
                .args(["--config", &config, "status"])
                .output()
                .ok()
                .filter(|o| o.status.success())
        })
        .is_some(),
        "hactl run answers on {}\n{}",
        sock.display(),
        g.logs()
    );

    // The bounds, from the parameters hactl runs with (the fast profile; seed 004
    // L4793-4798 for VMFDT) and the monitors' timers.
    let p = GroupParams::fast("hg1");
    let na_cycle = p.na_every as i64 * p.scan_interval_ms;
    // Actions on the test hypervisor take milliseconds; each of the two rounds of
    // commands to the monitors (stop, start monitoring) takes at most hmd's poll period
    // plus a commit, bounded by command_timeout when a monitor is gone.
    let actions = 2 * p.command_timeout_ms + p.probe_timeout_ms;
    let vm_bound = VM_MISS_AFTER_MS
        + p.vmfdt_ms(DetectionSpeed::Normal)
        + na_cycle
        // the decision's ping, and the executor's last one before the stop
        + 2 * PING_TIMEOUT_MS
        + actions;
    // Each VM of the failed host is pinged before its restart (host_failure_ping_vms).
    let host_bound = REAL_VMS as i64 * PING_TIMEOUT_MS
        + p.hm_silent_after_ms
        + p.host_fdt_ms
        + 2 * p.scan_interval_ms
        + p.probe_timeout_ms
        + actions;

    // 1. A hung VM (agent stopped, no ping answer) on host-a; another one that resumes
    //    before its VMFDT; a third one whose agent stops but whose OS still answers ping.
    let fault = unix_ms();
    g.hang(0, 1, true);
    g.hang(0, 2, true);
    g.hang(1, 1, false);
    std::thread::sleep(Duration::from_millis(
        u64::try_from(p.vmfdt_ms(DetectionSpeed::Normal) / 2).unwrap_or(0),
    ));
    g.resume(0, 2);
    let hung = uuid(&real_vm(0, 1));
    let r = g
        .wait_relocated(
            &hung,
            Duration::from_millis(u64::try_from(vm_bound).unwrap_or(0) + 10_000),
        )
        .unwrap_or_else(|| panic!("VM {hung} never relocated\n{}", g.logs()));
    let took = check_moved(&r, 0, fault, vm_bound).unwrap_or_else(|e| panic!("{e}\n{}", g.logs()));
    eprintln!("hung VM relocated in {took} ms (bound {vm_bound} ms)");
    assert_eq!(
        r.to_host,
        Some(HostId(HOSTS[1].1)),
        "vm-0-1 excludes host-c: it goes to host-b\n{}",
        g.logs()
    );
    // The VM boots on its new host: its agent pairs with that host's monitors.
    let to = HOSTS
        .iter()
        .position(|(_, id)| Some(HostId(*id)) == r.to_host)
        .expect("a host");
    g.lab.kill_9("vmmd-0-1");
    let spare = g.spare_ns[to].clone();
    start_vmmd(&mut g.lab, "vmmd-moved", &spare, &real_vm(0, 1));
    assert!(
        wait_for(Duration::from_secs(10), || {
            let db = g.db()?;
            let vm = db.vm(&hung).ok()??;
            (vm.current_host == r.to_host
                && (1..=2).all(|m| {
                    db.vm_hm(&hung, &uuid(&hm_uuid(to, m)))
                        .ok()
                        .flatten()
                        .is_some_and(|row| row.last_state == HeartbeatState::Detected)
                }))
            .then_some(())
        })
        .is_some(),
        "the relocated VM DETECTED on {} by both monitors\n{}",
        HOSTS[to].0,
        g.logs()
    );

    // 2. One monitor of host-b killed. Host-c fails: both monitors and its hypervisor
    //    gone, vm-2-1 and the load generator's VMs dead with it; vm-2-2 cut off from its
    //    monitors but alive and answering ping (a partition): never restarted.
    let fault = unix_ms();
    g.lab.kill_9("hmd-1-1");
    g.fail_host(2, &[2]);
    let partitioned = uuid(&real_vm(2, 2));
    let within = Duration::from_millis(u64::try_from(host_bound).unwrap_or(0) + 10_000);
    let mut moves = Vec::new();
    for (name, vm) in vms_of(2) {
        if vm == partitioned {
            continue;
        }
        let r = g.wait_relocated(&vm, within).unwrap_or_else(|| {
            panic!(
                "{name} ({vm}) of the failed host never relocated\n{}",
                g.logs()
            )
        });
        let took = check_moved(&r, 2, fault, host_bound)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", g.logs()));
        eprintln!("{name} relocated off the failed host in {took} ms (bound {host_bound} ms)");
        moves.push((name, r));
    }
    check_policies(2, &moves).unwrap_or_else(|e| panic!("{e}\n{}", g.logs()));

    // 3. Nothing else moved: not the VM that resumed in time, not the pingable one, not
    //    host-b's VMs with one monitor left, not host-a's others, not the partitioned VM
    //    of the failed host.
    std::thread::sleep(Duration::from_millis(u64::try_from(na_cycle).unwrap_or(0)));
    for h in 0..3 {
        for (name, vm) in vms_of(h) {
            if vm == hung || (h == 2 && vm != partitioned) {
                continue;
            }
            let moved = g.relocations(&vm);
            assert!(
                moved.is_empty(),
                "{name} ({vm}) was alive but moved: {moved:?}\n{}",
                g.logs()
            );
        }
    }
    g.resume(1, 1);
    let _ = g.spare_ns.len();
}
