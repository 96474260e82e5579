//! Faults the simulation injects, and the seeded schedule of a campaign.
//!
//! Every fault has a start and, unless it is a failure the engine must act on, an end.
//! [`FaultRates`] draws a schedule from a seed: Poisson arrivals per VM-hour or per
//! host-hour for each kind, targets and durations from the same generator. Host-level
//! faults (host loss, planned shutdown, both monitors of a host killed, hypervisor cut
//! off) never overlap one another, so the group always has a host's worth of spare room
//! and a failure is never mistaken for another (a hypervisor that does not answer while
//! both monitors of its host are dead is indistinguishable from a lost host, for any
//! engine).

use hsdb::Uuid;

use super::agents::Side;
use super::rng::SimRng;

/// What goes wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// The guest hangs (no heartbeat, no ping). `heals_after`: `None` for good (a real
    /// failure), else it recovers by itself after that long.
    VmHang {
        /// The VM.
        vm: Uuid,
        /// Self-recovery, if any.
        heals_after: Option<i64>,
    },
    /// The guest's kernel panics for good (TC-1, TC-2).
    OsCrash {
        /// The VM.
        vm: Uuid,
    },
    /// The agent process dies; the guest answers pings (TC-7's shape). It is restarted
    /// after `heals_after`.
    AgentKill {
        /// The VM.
        vm: Uuid,
        /// Until the agent runs again.
        heals_after: i64,
    },
    /// The agent stops gracefully (SUSPENDED) and starts again after `restarts_after`.
    AgentStop {
        /// The VM.
        vm: Uuid,
        /// Until it starts again.
        restarts_after: i64,
    },
    /// The guest's HA adapter toward `side` (or both) is down for `duration`: heartbeats
    /// stop on that path while the VM runs and answers pings (TC-6, TC-7, TC-9); a short
    /// one near `vm_miss_after` is heartbeat jitter at the threshold.
    AdapterDown {
        /// The VM.
        vm: Uuid,
        /// One side, or `None` for both.
        side: Option<Side>,
        /// How long.
        duration: i64,
    },
    /// One monitor is killed and restarts after `downtime` (new incarnation, re-watch).
    MonitorRestart {
        /// Host index.
        host: usize,
        /// Which monitor.
        side: Side,
        /// Until it runs again.
        downtime: i64,
    },
    /// One monitor's HA link loses its carrier for `duration`.
    MonitorLinkDown {
        /// Host index.
        host: usize,
        /// Which monitor.
        side: Side,
        /// How long.
        duration: i64,
    },
    /// Both monitors of a host are killed while the host and its VMs run on; they
    /// restart after `downtime`. Not a host failure: the platform says the host is up.
    BothMonitorsKilled {
        /// Host index.
        host: usize,
        /// Until they run again.
        downtime: i64,
    },
    /// The host is lost with its VMs (a real failure for each managed VM on it); it
    /// comes back empty after `repaired_after`.
    HostLoss {
        /// Host index.
        host: usize,
        /// Until it is back (its stale definitions powered off).
        repaired_after: i64,
    },
    /// Planned shutdown: agents stop gracefully, monitors report NODE_SHUTDOWN, VMs and
    /// host power off; after `back_after` the host and its VMs start again.
    PlannedShutdown {
        /// Host index.
        host: usize,
        /// Until it is back.
        back_after: i64,
    },
    /// The host's hypervisor does not answer management calls for `duration` while it
    /// and its VMs run on.
    HypervisorCutOff {
        /// Host index.
        host: usize,
        /// How long.
        duration: i64,
    },
    /// Every platform call to the host takes `extra_ms` longer for `duration` (slow
    /// probes and actions; beyond the driver's timeout they time out).
    SlowHost {
        /// Host index.
        host: usize,
        /// Extra latency.
        extra_ms: u64,
        /// How long.
        duration: i64,
    },
    /// The engine's next `count` acknowledgements are lost (the items stay pending and are
    /// reported again under a new tag).
    LostAcks {
        /// How many.
        count: u32,
    },
    /// The agent rings the doorbell (`DBELL`) with `vector` through the first monitor of
    /// its host (an application changed state; bit 0x100 says a critical application is
    /// in FAILURE, `fde::DBELL_APP_CRITICAL_FAILURE`).
    Doorbell {
        /// The VM.
        vm: Uuid,
        /// The doorbell vector.
        vector: u64,
    },
    /// The VM moves to host number `to` by live migration (LPM): the guest and its agent
    /// keep running, the agent pairs with the new host's monitors (TC-13). Not a failure.
    LiveMigration {
        /// The VM.
        vm: Uuid,
        /// Host index it moves to.
        to: usize,
    },
    /// One monitor is stopped on purpose (`HmEvent` DOWN, NODE_SHUTDOWN) and starts again
    /// after `downtime` (TC-12).
    MonitorStop {
        /// Host index.
        host: usize,
        /// Which monitor.
        side: Side,
        /// Until it runs again.
        downtime: i64,
    },
}

/// A fault at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledFault {
    /// Virtual time, ms since the epoch.
    pub at: i64,
    /// The fault.
    pub kind: FaultKind,
}

/// Rates of each fault, per VM-hour (VM faults) or per host-hour (host and monitor
/// faults), and the durations drawn for them. All times in ms.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRates {
    /// Guest hangs for good.
    pub vm_hang: f64,
    /// Guest hangs that recover by themselves.
    pub vm_hang_transient: f64,
    /// Kernel panics.
    pub os_crash: f64,
    /// Agent killed, guest alive.
    pub agent_kill: f64,
    /// Agent stopped gracefully.
    pub agent_stop: f64,
    /// Both HA adapters down for a long time (guest alive).
    pub adapters_down: f64,
    /// One HA adapter down.
    pub adapter_down: f64,
    /// Heartbeat gaps near the miss threshold.
    pub jitter: f64,
    /// Monitor restarts, per monitor-hour.
    pub monitor_restart: f64,
    /// Monitor link losses, per monitor-hour.
    pub monitor_link_down: f64,
    /// Host-level faults (loss, planned shutdown, both monitors killed, hypervisor cut
    /// off), per host-hour.
    pub host_fault: f64,
    /// Slow hosts, per host-hour.
    pub slow_host: f64,
    /// Lost acknowledgements, per hour of the run.
    pub lost_acks: f64,
    /// The shortest real-failure detection the engine may do (no transient fault
    /// that must be left alone lasts longer than this minus a margin): `vm_miss_after +
    /// VMFDT`.
    pub detect_min: i64,
    /// The monitors' `vm_miss_after` (jitter is drawn around it).
    pub miss_after: i64,
    /// The heartbeat period.
    pub hb_period: i64,
    /// The host-failure bound (a lost host stays lost at least twice this long).
    pub host_bound: i64,
}

impl FaultRates {
    /// A mix where every kind occurs often enough to meet the others in a few thousand
    /// VM-hours, with the timing of `miss_after`, `hb_period`, `detect_min` and
    /// `host_bound`.
    pub fn mix(miss_after: i64, hb_period: i64, detect_min: i64, host_bound: i64) -> FaultRates {
        FaultRates {
            vm_hang: 0.02,
            vm_hang_transient: 0.03,
            os_crash: 0.02,
            agent_kill: 0.03,
            agent_stop: 0.03,
            adapters_down: 0.02,
            adapter_down: 0.03,
            jitter: 0.2,
            monitor_restart: 0.03,
            monitor_link_down: 0.03,
            host_fault: 0.05,
            slow_host: 0.02,
            lost_acks: 0.5,
            detect_min,
            miss_after,
            hb_period,
            host_bound,
        }
    }

    /// No faults at all.
    pub fn none(miss_after: i64, hb_period: i64, detect_min: i64, host_bound: i64) -> FaultRates {
        FaultRates {
            vm_hang: 0.0,
            vm_hang_transient: 0.0,
            os_crash: 0.0,
            agent_kill: 0.0,
            agent_stop: 0.0,
            adapters_down: 0.0,
            adapter_down: 0.0,
            jitter: 0.0,
            monitor_restart: 0.0,
            monitor_link_down: 0.0,
            host_fault: 0.0,
            slow_host: 0.0,
            lost_acks: 0.0,
            ..FaultRates::mix(miss_after, hb_period, detect_min, host_bound)
        }
    }

    /// Draw a schedule for `vms` on `hosts` hosts between `from` and `until`.
    pub fn schedule(
        &self,
        rng: &mut SimRng,
        vms: &[Uuid],
        hosts: usize,
        from: i64,
        until: i64,
    ) -> Vec<ScheduledFault> {
        let mut out = Vec::new();
        let hours = (until - from) as f64 / 3_600_000.0;
        let vm_hours = hours * vms.len() as f64;
        let host_hours = hours * hosts as f64;
        let d = self.detect_min;
        let arrivals = |rate: f64, exposure: f64, rng: &mut SimRng| -> Vec<i64> {
            let mut times = Vec::new();
            if rate <= 0.0 || exposure <= 0.0 {
                return times;
            }
            // Arrivals over the whole exposure, mapped onto the run's time line.
            let mean_gap_ms = (until - from) as f64 / (rate * exposure);
            let mut t = from;
            loop {
                t = t.saturating_add(rng.exp_ms(mean_gap_ms));
                if t >= until {
                    return times;
                }
                times.push(t);
            }
        };
        let vm_of = |rng: &mut SimRng| rng.pick(vms).copied();
        let side_of = |rng: &mut SimRng| if rng.chance(0.5) { Side::A } else { Side::B };
        let host_of = |rng: &mut SimRng| usize::try_from(rng.below(hosts as u64)).unwrap_or(0);

        for at in arrivals(self.vm_hang, vm_hours, rng) {
            if let Some(vm) = vm_of(rng) {
                out.push(fault(
                    at,
                    FaultKind::VmHang {
                        vm,
                        heals_after: None,
                    },
                ));
            }
        }
        for at in arrivals(self.vm_hang_transient, vm_hours, rng) {
            if let Some(vm) = vm_of(rng) {
                // Shorter than the fastest possible detection by at least a minute.
                let heals_after = rng.range_i64(1_000, (d - 60_000).max(2_000));
                out.push(fault(
                    at,
                    FaultKind::VmHang {
                        vm,
                        heals_after: Some(heals_after),
                    },
                ));
            }
        }
        for at in arrivals(self.os_crash, vm_hours, rng) {
            if let Some(vm) = vm_of(rng) {
                out.push(fault(at, FaultKind::OsCrash { vm }));
            }
        }
        for at in arrivals(self.agent_kill, vm_hours, rng) {
            if let Some(vm) = vm_of(rng) {
                // From a blip to three times the detection time: alive all along.
                let heals_after = rng.range_i64(1_000, 3 * d);
                out.push(fault(at, FaultKind::AgentKill { vm, heals_after }));
            }
        }
        for at in arrivals(self.agent_stop, vm_hours, rng) {
            if let Some(vm) = vm_of(rng) {
                let restarts_after = rng.range_i64(1_000, 3 * d);
                out.push(fault(at, FaultKind::AgentStop { vm, restarts_after }));
            }
        }
        for at in arrivals(self.adapters_down, vm_hours, rng) {
            if let Some(vm) = vm_of(rng) {
                let duration = rng.range_i64(d / 2, 3 * d);
                out.push(fault(
                    at,
                    FaultKind::AdapterDown {
                        vm,
                        side: None,
                        duration,
                    },
                ));
            }
        }
        for at in arrivals(self.adapter_down, vm_hours, rng) {
            if let Some(vm) = vm_of(rng) {
                let side = Some(side_of(rng));
                let duration = rng.range_i64(1_000, 3 * d);
                out.push(fault(at, FaultKind::AdapterDown { vm, side, duration }));
            }
        }
        for at in arrivals(self.jitter, vm_hours, rng) {
            if let Some(vm) = vm_of(rng) {
                // Gaps around the miss threshold: a heartbeat late by a little less or a
                // little more than vm_miss_after allows.
                let lo = (self.miss_after - self.hb_period).max(1);
                let hi = self.miss_after + self.hb_period;
                let duration = rng.range_i64(lo, hi);
                let side = if rng.chance(0.5) {
                    None
                } else {
                    Some(side_of(rng))
                };
                out.push(fault(at, FaultKind::AdapterDown { vm, side, duration }));
            }
        }
        for at in arrivals(self.monitor_restart, 2.0 * host_hours, rng) {
            let (host, side) = (host_of(rng), side_of(rng));
            let downtime = rng.range_i64(1_000, d);
            out.push(fault(
                at,
                FaultKind::MonitorRestart {
                    host,
                    side,
                    downtime,
                },
            ));
        }
        for at in arrivals(self.monitor_link_down, 2.0 * host_hours, rng) {
            let (host, side) = (host_of(rng), side_of(rng));
            let duration = rng.range_i64(1_000, 2 * d);
            out.push(fault(
                at,
                FaultKind::MonitorLinkDown {
                    host,
                    side,
                    duration,
                },
            ));
        }
        for at in arrivals(self.slow_host, host_hours, rng) {
            let host = host_of(rng);
            let extra_ms = u64::try_from(rng.range_i64(500, 15_000)).unwrap_or(0);
            let duration = rng.range_i64(10_000, d);
            out.push(fault(
                at,
                FaultKind::SlowHost {
                    host,
                    extra_ms,
                    duration,
                },
            ));
        }
        for at in arrivals(self.lost_acks, hours, rng) {
            let count = u32::try_from(rng.range_i64(1, 3)).unwrap_or(1);
            out.push(fault(at, FaultKind::LostAcks { count }));
        }
        // Host-level faults on one time line, never overlapping, each followed by a
        // quiet period long enough for the group to settle.
        let mut t = from;
        if self.host_fault > 0.0 && host_hours > 0.0 {
            let mean_gap = (until - from) as f64 / (self.host_fault * host_hours);
            // The four kinds in turn from a random one: a campaign with four host faults
            // has met each.
            let mut turn = rng.below(4);
            loop {
                t = t.saturating_add(rng.exp_ms(mean_gap));
                if t >= until {
                    break;
                }
                let host = host_of(rng);
                turn = (turn + 1) % 4;
                let (kind, lasts) = match turn {
                    0 => {
                        let repaired_after =
                            rng.range_i64(2 * self.host_bound, 4 * self.host_bound);
                        (
                            FaultKind::HostLoss {
                                host,
                                repaired_after,
                            },
                            repaired_after,
                        )
                    }
                    1 => {
                        let back_after = rng.range_i64(self.host_bound, 4 * self.host_bound);
                        (FaultKind::PlannedShutdown { host, back_after }, back_after)
                    }
                    2 => {
                        let downtime = rng.range_i64(1_000, 2 * self.host_bound);
                        (FaultKind::BothMonitorsKilled { host, downtime }, downtime)
                    }
                    _ => {
                        let duration = rng.range_i64(1_000, 2 * self.host_bound);
                        (FaultKind::HypervisorCutOff { host, duration }, duration)
                    }
                };
                out.push(fault(t, kind));
                t = t.saturating_add(lasts + 2 * self.host_bound);
            }
        }
        out.sort_by_key(|f| f.at);
        out
    }
}

fn fault(at: i64, kind: FaultKind) -> ScheduledFault {
    ScheduledFault { at, kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_schedule_is_seeded_sorted_and_host_faults_do_not_overlap() {
        let vms: Vec<Uuid> = (0..50u8).map(|i| Uuid([i; 16])).collect();
        let rates = FaultRates::mix(20_000, 10_000, 160_000, 300_000);
        let h = 3_600_000;
        let a = rates.schedule(&mut SimRng::new(3), &vms, 5, 0, 100 * h);
        let b = rates.schedule(&mut SimRng::new(3), &vms, 5, 0, 100 * h);
        let c = rates.schedule(&mut SimRng::new(4), &vms, 5, 0, 100 * h);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at));
        // 5,000 VM-hours at 0.02 permanent hangs per VM-hour: about 100.
        let hangs = a
            .iter()
            .filter(|f| {
                matches!(
                    f.kind,
                    FaultKind::VmHang {
                        heals_after: None,
                        ..
                    }
                )
            })
            .count();
        assert!((60..140).contains(&hangs), "{hangs}");
        let mut busy_until = 0;
        for f in &a {
            let lasts = match f.kind {
                FaultKind::HostLoss { repaired_after, .. } => repaired_after,
                FaultKind::PlannedShutdown { back_after, .. } => back_after,
                FaultKind::BothMonitorsKilled { downtime, .. } => downtime,
                FaultKind::HypervisorCutOff { duration, .. } => duration,
                _ => continue,
            };
            assert!(f.at >= busy_until, "host faults overlap at {}", f.at);
            busy_until = f.at + lasts;
        }
        // Transient hangs end a minute before the fastest detection.
        for f in &a {
            if let FaultKind::VmHang {
                heals_after: Some(d),
                ..
            } = f.kind
            {
                assert!(d <= 100_000);
            }
        }
    }

    #[test]
    fn test_no_rates_no_faults() {
        let vms = [Uuid([1; 16])];
        let rates = FaultRates::none(20_000, 10_000, 160_000, 300_000);
        assert!(
            rates
                .schedule(&mut SimRng::new(1), &vms, 2, 0, 3_600_000_000)
                .is_empty()
        );
    }
}
