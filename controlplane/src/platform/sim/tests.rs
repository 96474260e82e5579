//! The sim driver: probes, actions, faults, timeouts, injected failures, determinism.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::clock::Clock;
use crate::platform::PowerState;

const T0: i64 = 1_556_303_548_719;

fn uuid(n: u8) -> Uuid {
    let mut b = [0u8; 16];
    b[15] = n;
    Uuid(b)
}

fn spec(n: u8, cpu_milli: u32, memory_mb: u32) -> VmSpec {
    VmSpec {
        uuid: uuid(n),
        name: format!("vm{n}"),
        cpu_milli,
        memory_mb,
    }
}

/// Hosts a (4 CPUs, 8 GiB) and b (4 CPUs, 8 GiB); vm1 and vm2 on a, vm3 on b.
fn two_hosts() -> (SimPlatform, ManualClock) {
    let clock = ManualClock::new(T0);
    let p = SimPlatform::empty(clock.clone(), 7);
    {
        let mut w = p.world();
        w.add_host("a", 4_000, 8_192).unwrap();
        w.add_host("b", 4_000, 8_192).unwrap();
        w.add_vm("a", spec(1, 1_000, 2_048)).unwrap();
        w.add_vm("a", spec(2, 1_000, 2_048)).unwrap();
        w.add_vm("b", spec(3, 2_000, 4_096)).unwrap();
    }
    (p, clock)
}

const RUNNING: VmStatus = VmStatus {
    power: PowerState::Running,
    os_started: true,
};
const OFF: VmStatus = VmStatus {
    power: PowerState::NotActivated,
    os_started: false,
};

#[test]
fn test_probes_of_a_healthy_world() {
    let (mut p, clock) = two_hosts();
    assert!(p.host_alive("a").unwrap());
    assert!(p.ping(&uuid(1)).unwrap());
    assert_eq!(p.vm_status("a", &uuid(1)).unwrap(), RUNNING);
    assert_eq!(
        p.vm_status("b", &uuid(1)),
        Err(PlatformError::NoSuchVm {
            host: "b".into(),
            vm: uuid(1)
        })
    );
    assert_eq!(
        p.host_alive("z"),
        Err(PlatformError::NoSuchHost { host: "z".into() })
    );
    let hosts = p.hosts().unwrap();
    let names: Vec<_> = hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(hosts[0].cpu_milli, 4_000);
    let vms: Vec<_> = hosts[0].vms.iter().map(|(s, st)| (s.uuid, *st)).collect();
    assert_eq!(vms, [(uuid(1), RUNNING), (uuid(2), RUNNING)]);
    // host_alive 5 + ping 3 + vm_status 5 + vm_status 5 + hosts 5 (the NoSuchHost error
    // is answered before any latency).
    assert_eq!(clock.now_ms() - T0, 23);
}

#[test]
fn test_ground_truth_queries() {
    let (p, _clock) = two_hosts();
    let w = p.world();
    assert_eq!(w.vms_on_host("a"), [uuid(1), uuid(2)]);
    assert_eq!(w.vm_running_on(&uuid(3)), ["b"]);
    assert_eq!(w.running_hosts_of(&uuid(3)), 1);
    assert!(w.agent_heartbeats(&uuid(1)) && w.vm_answers_ping(&uuid(1)) && w.vm_alive(&uuid(1)));
    assert_eq!(w.free_capacity("a"), Some((2_000, 4_096)));
    assert_eq!(w.host_state("a"), Some(HostState::Up));
}

#[test]
fn test_vm_hang_and_os_crash_look_running_to_the_platform() {
    for fault in [GuestFault::Hang, GuestFault::OsCrash] {
        let (mut p, _clock) = two_hosts();
        match fault {
            GuestFault::Hang => p.world().vm_hang(&uuid(1)).unwrap(),
            _ => p.world().vm_os_crash(&uuid(1)).unwrap(),
        }
        {
            let w = p.world();
            assert!(!w.agent_heartbeats(&uuid(1)));
            assert!(!w.vm_answers_ping(&uuid(1)));
            assert!(!w.vm_alive(&uuid(1)));
            assert_eq!(w.vm_fault(&uuid(1)), Some(fault));
            // The others are untouched.
            assert!(w.agent_heartbeats(&uuid(2)));
        }
        assert!(!p.ping(&uuid(1)).unwrap());
        assert_eq!(p.vm_status("a", &uuid(1)).unwrap(), RUNNING);
        p.world().vm_repair(&uuid(1)).unwrap();
        assert!(p.ping(&uuid(1)).unwrap());
        assert!(p.world().agent_heartbeats(&uuid(1)));
    }
}

#[test]
fn test_agent_kill_keeps_the_vm_pingable_and_alive() {
    let (mut p, _clock) = two_hosts();
    p.world().vm_agent_kill(&uuid(2)).unwrap();
    assert!(!p.world().agent_heartbeats(&uuid(2)));
    assert!(p.world().vm_alive(&uuid(2)));
    assert!(p.ping(&uuid(2)).unwrap());
}

#[test]
fn test_a_vm_without_ping_address_reads_not_pingable() {
    let (mut p, _clock) = two_hosts();
    p.world().set_ping_address(&uuid(2), false).unwrap();
    assert!(p.world().vm_answers_ping(&uuid(2)));
    assert!(!p.ping(&uuid(2)).unwrap());
    // An unknown VM reads the same: no address.
    assert!(!p.ping(&uuid(99)).unwrap());
}

#[test]
fn test_host_loss_and_restore() {
    let (mut p, clock) = two_hosts();
    p.world().host_loss("a").unwrap();
    {
        let w = p.world();
        assert_eq!(w.host_state("a"), Some(HostState::Lost));
        assert!(w.vms_on_host("a").is_empty());
        assert_eq!(w.running_hosts_of(&uuid(1)), 0);
        assert!(!w.agent_heartbeats(&uuid(1)) && !w.vm_alive(&uuid(1)));
        // Definitions survive the loss.
        assert_eq!(w.vms_defined_on("a"), [uuid(1), uuid(2)]);
    }
    assert!(!p.host_alive("a").unwrap());
    assert!(p.host_alive("b").unwrap());
    assert!(matches!(
        p.vm_status("a", &uuid(1)),
        Err(PlatformError::Unreachable { .. })
    ));
    assert!(matches!(
        p.stop("a", &uuid(1)),
        Err(PlatformError::Unreachable { .. })
    ));
    let hosts: Vec<_> = p.hosts().unwrap().into_iter().map(|h| h.name).collect();
    assert_eq!(hosts, ["b"], "an unreachable host is left out of hosts()");
    assert!(!p.ping(&uuid(1)).unwrap());
    // A ping with no reply takes the no-reply wait.
    let before = clock.now_ms();
    assert!(!p.ping(&uuid(1)).unwrap());
    assert_eq!(clock.now_ms() - before, 1_000);

    p.world().host_restore("a").unwrap();
    assert!(p.host_alive("a").unwrap());
    assert_eq!(p.vm_status("a", &uuid(1)).unwrap(), OFF);
}

#[test]
fn test_planned_power_off_stops_the_vms() {
    let (mut p, _clock) = two_hosts();
    p.world().host_power_off("b").unwrap();
    assert_eq!(p.world().host_state("b"), Some(HostState::PoweredOff));
    assert!(!p.host_alive("b").unwrap());
    assert_eq!(p.world().running_hosts_of(&uuid(3)), 0);
    p.world().host_restore("b").unwrap();
    assert_eq!(p.vm_status("b", &uuid(3)).unwrap(), OFF);
}

#[test]
fn test_unreachable_hypervisor_keeps_the_vms_running() {
    let (mut p, _clock) = two_hosts();
    p.world().set_hypervisor_reachable("a", false).unwrap();
    // As libvirt answers a failed connection: a definite "no".
    assert!(!p.host_alive("a").unwrap());
    assert!(matches!(
        p.vm_status("a", &uuid(1)),
        Err(PlatformError::Unreachable { .. })
    ));
    // But the VMs run on: starting one elsewhere runs it twice, and the world sees it.
    assert!(p.world().vm_alive(&uuid(1)));
    p.start("b", &spec(1, 1_000, 2_048)).unwrap();
    let w = p.world();
    assert_eq!(w.running_hosts_of(&uuid(1)), 2);
    assert_eq!(w.violations().len(), 1);
    assert_eq!(w.violations()[0].running_on, ["a", "b"]);
}

#[test]
fn test_restart_elsewhere_stop_start_cleanup() {
    let (mut p, clock) = two_hosts();
    p.world().vm_hang(&uuid(1)).unwrap();
    let t = clock.now_ms();
    p.stop("a", &uuid(1)).unwrap();
    assert_eq!(clock.now_ms() - t, 2_000);
    // Already off is Ok.
    p.stop("a", &uuid(1)).unwrap();
    assert_eq!(p.vm_status("a", &uuid(1)).unwrap(), OFF);
    p.start("b", &spec(1, 1_000, 2_048)).unwrap();
    assert_eq!(p.vm_status("b", &uuid(1)).unwrap(), RUNNING);
    {
        let w = p.world();
        assert_eq!(w.vm_running_on(&uuid(1)), ["b"]);
        assert_eq!(w.vm_defined_on(&uuid(1)), ["a", "b"]);
        // A fresh boot clears the hang.
        assert!(w.agent_heartbeats(&uuid(1)));
        assert!(w.violations().is_empty());
    }
    p.cleanup("a", &uuid(1)).unwrap();
    p.cleanup("a", &uuid(1)).unwrap();
    assert_eq!(p.world().vm_defined_on(&uuid(1)), ["b"]);
    assert!(matches!(
        p.vm_status("a", &uuid(1)),
        Err(PlatformError::NoSuchVm { .. })
    ));
    let w = p.world();
    let calls: Vec<_> = w
        .history()
        .iter()
        .map(|r| {
            (
                r.call,
                r.host.clone().unwrap(),
                r.vm_alive_before,
                r.error.is_none(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            (Call::Stop, "a".to_owned(), Some(false), true),
            (Call::Stop, "a".to_owned(), Some(false), true),
            (Call::Start, "b".to_owned(), Some(false), true),
            (Call::Cleanup, "a".to_owned(), Some(true), true),
            (Call::Cleanup, "a".to_owned(), Some(true), true),
        ]
    );
    assert_eq!(w.history()[0].start_ms, t);
    assert_eq!(w.history()[0].end_ms, t + 2_000);
}

#[test]
fn test_stop_of_a_live_vm_is_recorded_as_such() {
    let (mut p, _clock) = two_hosts();
    p.stop("a", &uuid(2)).unwrap();
    assert_eq!(p.world().history()[0].vm_alive_before, Some(true));
    assert!(matches!(
        p.stop("b", &uuid(2)),
        Err(PlatformError::NoSuchVm { .. })
    ));
}

#[test]
fn test_start_refused_without_room_unless_capacity_ignored() {
    let (mut p, _clock) = two_hosts();
    let big = spec(9, 3_000, 1_024);
    let err = p.start("b", &big).unwrap_err();
    assert!(
        matches!(&err, PlatformError::Failed { why, .. } if why.contains("free 2000 mCPU")),
        "{err}"
    );
    assert_eq!(p.world().running_hosts_of(&uuid(9)), 0);
    p.world().set_enforce_capacity(false);
    p.start("b", &big).unwrap();
    assert_eq!(p.world().vm_running_on(&uuid(9)), ["b"]);
}

#[test]
fn test_boot_time_delays_heartbeats_and_os_started() {
    let (mut p, clock) = two_hosts();
    p.world().set_boot_ms(30_000);
    p.stop("a", &uuid(1)).unwrap();
    p.start("a", &spec(1, 1_000, 2_048)).unwrap();
    assert_eq!(
        p.vm_status("a", &uuid(1)).unwrap(),
        VmStatus {
            power: PowerState::Running,
            os_started: false
        }
    );
    assert!(!p.world().agent_heartbeats(&uuid(1)));
    assert!(!p.ping(&uuid(1)).unwrap());
    clock.advance(30_000);
    assert!(p.world().agent_heartbeats(&uuid(1)));
    assert_eq!(p.vm_status("a", &uuid(1)).unwrap(), RUNNING);
}

#[test]
fn test_slow_probe_times_out_after_exactly_the_timeout() {
    let (mut p, clock) = two_hosts();
    {
        let mut w = p.world();
        w.set_timeout_ms(4_000);
        w.set_host_latency("a", 4_000).unwrap();
    }
    let t = clock.now_ms();
    assert_eq!(
        p.vm_status("a", &uuid(1)),
        Err(PlatformError::Timeout {
            op: format!("vm_status a {}", uuid(1)),
            after_ms: 4_000
        })
    );
    assert_eq!(clock.now_ms() - t, 4_000);
    // Host b is not slow.
    assert_eq!(p.vm_status("b", &uuid(3)).unwrap(), RUNNING);
    // A ping with no reply longer than the timeout: Timeout, not "not pingable".
    p.world().vm_hang(&uuid(3)).unwrap();
    p.world().set_ping_no_reply_ms(6_000);
    assert!(matches!(
        p.ping(&uuid(3)),
        Err(PlatformError::Timeout {
            after_ms: 4_000,
            ..
        })
    ));
}

#[test]
fn test_timed_out_action_applied_or_not() {
    for (effect, runs) in [(TimeoutEffect::Applied, 1), (TimeoutEffect::NotApplied, 0)] {
        let (mut p, _clock) = two_hosts();
        {
            let mut w = p.world();
            w.set_latency(Call::Start, 20_000);
            w.set_timeout_effect(effect);
        }
        assert!(matches!(
            p.start("b", &spec(7, 100, 100)),
            Err(PlatformError::Timeout {
                after_ms: 10_000,
                ..
            })
        ));
        assert_eq!(p.world().running_hosts_of(&uuid(7)), runs, "{effect:?}");
    }
}

#[test]
fn test_injected_failures_match_count_and_target() {
    let (mut p, clock) = two_hosts();
    p.world().inject_failure(FailureRule {
        call: Call::Start,
        host: Some("b".into()),
        vm: None,
        times: 2,
        error: InjectedError::Failed,
    });
    p.world().inject_failure(FailureRule {
        call: Call::HostAlive,
        host: None,
        vm: None,
        times: 1,
        error: InjectedError::Timeout,
    });
    p.stop("a", &uuid(1)).unwrap();
    // Start on a is not targeted.
    p.start("a", &spec(1, 1_000, 2_048)).unwrap();
    p.stop("a", &uuid(1)).unwrap();
    for _ in 0..2 {
        assert!(matches!(
            p.start("b", &spec(1, 1_000, 2_048)),
            Err(PlatformError::Failed { .. })
        ));
    }
    assert_eq!(p.world().running_hosts_of(&uuid(1)), 0);
    p.start("b", &spec(1, 1_000, 2_048)).unwrap();
    let t = clock.now_ms();
    assert!(matches!(
        p.host_alive("b"),
        Err(PlatformError::Timeout { .. })
    ));
    assert_eq!(clock.now_ms() - t, 10_000);
    assert!(p.host_alive("b").unwrap());
}

#[test]
fn test_set_vm_power_for_the_state_table() {
    let (mut p, _clock) = two_hosts();
    let st = VmStatus {
        power: PowerState::MigratingRunning,
        os_started: true,
    };
    p.world().set_vm_power("a", &uuid(1), st).unwrap();
    assert_eq!(p.vm_status("a", &uuid(1)).unwrap(), st);
    assert_eq!(
        p.world().set_vm_power("b", &uuid(1), st),
        Err(SimError::NotDefined("b".into(), uuid(1)))
    );
    p.world().vm_power_off(&uuid(2)).unwrap();
    assert_eq!(p.vm_status("a", &uuid(2)).unwrap(), OFF);
}

#[test]
fn test_building_errors() {
    let (p, _clock) = two_hosts();
    let mut w = p.world();
    assert_eq!(
        w.add_host("a", 1, 1),
        Err(SimError::DuplicateHost("a".into()))
    );
    assert_eq!(
        w.add_vm("a", spec(1, 1, 1)),
        Err(SimError::DuplicateVm(uuid(1)))
    );
    assert_eq!(
        w.add_vm("q", spec(5, 1, 1)),
        Err(SimError::NoSuchHost("q".into()))
    );
    assert_eq!(w.vm_hang(&uuid(5)), Err(SimError::NoSuchVm(uuid(5))));
}

/// A run of random failures replays exactly from its seed, and another seed differs.
#[test]
fn test_random_failures_replay_from_the_seed() {
    fn run(seed: u64) -> Vec<bool> {
        let clock = ManualClock::new(T0);
        let mut p = SimPlatform::empty(clock, seed);
        p.world().add_host("a", 1_000, 1_000).unwrap();
        p.world().set_random_failures(Call::HostAlive, 300_000);
        (0..200).map(|_| p.host_alive("a").is_ok()).collect()
    }
    let a = run(1);
    assert_eq!(a, run(1));
    assert_ne!(a, run(2));
    let failed = a.iter().filter(|ok| !**ok).count();
    // 30 % of 200, loosely.
    assert!((30..=90).contains(&failed), "{failed}");
}

#[test]
fn test_probes_recorded_on_request() {
    let (mut p, _clock) = two_hosts();
    p.ping(&uuid(1)).unwrap();
    assert!(p.world().history().is_empty());
    p.world().set_record_probes(true);
    p.ping(&uuid(1)).unwrap();
    let w = p.world();
    assert_eq!(w.history().len(), 1);
    assert_eq!(w.history()[0].call, Call::Ping);
    assert_eq!(w.history()[0].vm_alive_before, None);
}

#[test]
fn test_clones_share_the_world() {
    let (p, _clock) = two_hosts();
    let mut q = p.clone();
    p.world().vm_hang(&uuid(1)).unwrap();
    assert!(!q.ping(&uuid(1)).unwrap());
    assert_eq!(q.name(), "sim");
}

#[test]
fn test_operator_power_on_outside_the_control_plane() {
    let (mut p, _clock) = two_hosts();
    p.world().vm_hang(&uuid(1)).unwrap();
    p.world().vm_power_off(&uuid(1)).unwrap();
    assert_eq!(p.world().running_hosts_of(&uuid(1)), 0);
    p.world().vm_power_on("a", &uuid(1)).unwrap();
    {
        let w = p.world();
        assert!(w.agent_heartbeats(&uuid(1)), "a fresh boot clears the hang");
        assert!(w.history().is_empty());
        assert!(w.violations().is_empty());
    }
    assert_eq!(p.vm_status("a", &uuid(1)).unwrap(), RUNNING);
    assert_eq!(
        p.world().vm_power_on("b", &uuid(1)),
        Err(SimError::NotDefined("b".into(), uuid(1)))
    );
    // Defined on b too (a stale copy), then powered on there by hand: a double run.
    p.stop("a", &uuid(1)).unwrap();
    p.start("b", &spec(1, 1_000, 2_048)).unwrap();
    p.world().vm_power_on("a", &uuid(1)).unwrap();
    let w = p.world();
    assert_eq!(w.violations().len(), 1);
    assert_eq!(w.violations()[0].running_on, ["a", "b"]);
}

/// Live migration: the VM keeps running (same guest: no reboot, its fault kept) and moves
/// with its definition; it takes the call's latency; refused when the VM does not run on
/// the source, when the target has no room, when a host does not answer, and when live
/// migration is off. Never two copies.
#[test]
fn test_live_migration_moves_a_running_vm() {
    let (mut p, clock) = two_hosts();
    assert!(p.live_migration());
    p.world().set_boot_ms(60_000);
    let booted_before = p.world().vm_booted(&uuid(1));
    let t = clock.now_ms();
    p.migrate("a", "b", &spec(1, 1_000, 2_048)).unwrap();
    assert_eq!(clock.now_ms() - t, 3_000);
    {
        let w = p.world();
        assert_eq!(w.vm_running_on(&uuid(1)), ["b"]);
        assert_eq!(w.vm_defined_on(&uuid(1)), ["b"]);
        assert_eq!(w.vm_booted(&uuid(1)), booted_before, "no reboot");
        assert!(w.agent_heartbeats(&uuid(1)));
        assert!(w.violations().is_empty());
        assert_eq!(w.history().last().unwrap().call, Call::Migrate);
    }
    // Not running on the source.
    let e = p.migrate("a", "b", &spec(1, 1_000, 2_048)).unwrap_err();
    assert!(e.to_string().contains("is not running on a"), "{e}");
    // No room: b has 1,000 mCPU left after vm1 and vm3.
    let e = p.migrate("a", "b", &spec(2, 2_000, 2_048));
    assert!(e.is_err());
    assert_eq!(p.world().vm_running_on(&uuid(2)), ["a"]);
    // The source does not answer.
    p.world().host_loss("a").unwrap();
    assert!(matches!(
        p.migrate("a", "b", &spec(2, 1_000, 2_048)),
        Err(PlatformError::Unreachable { .. })
    ));
    p.world().host_restore("a").unwrap();
    // Off.
    p.world().set_live_migration(false);
    assert!(!p.live_migration());
    let e = p.migrate("b", "a", &spec(1, 1_000, 2_048)).unwrap_err();
    assert!(e.to_string().contains("live migration is off"), "{e}");
    assert_eq!(p.world().vm_running_on(&uuid(1)), ["b"]);
}

/// A batch of starts runs concurrently: each begins at the batch's start and ends its own
/// latency later (a slow host's later), the clock ends at the longest, not the sum; a
/// start that fails fails alone; the history shows every start beginning at once.
#[test]
fn test_start_many_is_concurrent() {
    let (mut p, clock) = two_hosts();
    {
        let mut w = p.world();
        w.set_host_latency("b", 3_000).unwrap();
        w.inject_failure(FailureRule {
            call: Call::Start,
            host: None,
            vm: Some(uuid(12)),
            times: 1,
            error: InjectedError::Failed,
        });
        w.clear_history();
    }
    let start_ms = p.world().latency(Call::Start);
    let (s10, s11, s12, s13) = (
        spec(10, 500, 512),
        spec(11, 500, 512),
        spec(12, 500, 512),
        spec(13, 500, 512),
    );
    let t0 = clock.now_ms();
    let results = p.start_many(&[("b", &s10), ("a", &s11), ("a", &s12), ("a", &s13)]);
    assert_eq!(results[0], Ok(()));
    assert_eq!(results[1], Ok(()));
    assert!(matches!(results[2], Err(PlatformError::Failed { .. })));
    assert_eq!(results[3], Ok(()));
    let longest = i64::try_from(start_ms).unwrap() + 3_000;
    assert_eq!(
        clock.now_ms() - t0,
        longest,
        "the longest start, not the sum"
    );
    let w = p.world();
    assert_eq!(w.vm_running_on(&uuid(10)), ["b"]);
    assert_eq!(w.vm_running_on(&uuid(11)), ["a"]);
    assert!(w.vm_running_on(&uuid(12)).is_empty());
    assert_eq!(w.vm_running_on(&uuid(13)), ["a"]);
    let starts: Vec<(i64, i64, Uuid)> = w
        .history()
        .iter()
        .filter(|c| c.call == Call::Start)
        .map(|c| (c.start_ms - t0, c.end_ms - t0, c.vm.unwrap()))
        .collect();
    let base = i64::try_from(start_ms).unwrap();
    assert_eq!(
        starts,
        [
            (0, base, uuid(11)),
            (0, base, uuid(12)),
            (0, base, uuid(13)),
            (0, longest, uuid(10)),
        ],
        "carried out in the order they end"
    );
    drop(w);
    // A start after the batch is an ordinary call again.
    p.start("a", &spec(14, 100, 100)).unwrap();
    assert_eq!(clock.now_ms() - t0, longest + base);
}
