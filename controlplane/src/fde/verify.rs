//! The periodic verify: can the group absorb the loss of any one host? Every
//! `verify_interval` the engine plans the failure of each host in turn against the
//! current state (the same planner, policies, loads and eligibility a real failure would
//! get) and raises GROUP_CAPACITY_SHORT when some host's managed VMs would not all find a
//! place, GROUP_CAPACITY_OK when they would again — once per episode, in the decision log
//! too (docs/controlplane.md "Verify"; `hactl verify` does the same on demand).

use std::collections::BTreeMap;

use hsdb::HostId;

use super::place::names_of;
use super::{Fde, FdeError, HealthStore, Subject, Verdict};
use crate::events::{Event, EventKind};
use crate::planner::{PlanRequest, VmToPlace};
use crate::platform::Platform;

/// VMs named in one host's line of the event; the rest are counted.
const NAMED_PER_HOST: usize = 10;

/// What the verify of one host found: its managed VMs that would find no place, each
/// with why in short (name, reason).
pub(super) type Shortfall = Vec<(String, String)>;

impl Fde {
    /// Verify when due (after the scan's placement). Postponed while restarts are running:
    /// their loads are in flux. A failed host is not verified (its loss happened); its
    /// last finding stands until it is back.
    pub(super) fn maybe_verify(
        &mut self,
        now_ms: i64,
        store: &mut dyn HealthStore,
        platform: &mut dyn Platform,
    ) -> Result<(), FdeError> {
        match self.verify_next_ms {
            // The first one a scan interval after the first scan: every host seen once.
            None => {
                self.verify_next_ms = Some(now_ms + self.params.scan_interval_ms);
                return Ok(());
            }
            Some(t) if now_ms < t => return Ok(()),
            Some(_) => {}
        }
        if !self.executor.restarts().is_empty() {
            return Ok(());
        }
        self.verify_next_ms = Some(now_ms + self.params.verify_interval_ms);
        let infos = match platform.hosts() {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(
                    group = %self.params.group,
                    "verify skipped: cannot read the hosts' capacities ({e}); again in {}",
                    crate::params::show_ms(self.params.verify_interval_ms)
                );
                return Ok(());
            }
        };
        let failed = self.failed_hosts();
        let mut short: BTreeMap<HostId, Shortfall> = BTreeMap::new();
        let hosts: Vec<(HostId, String)> = self
            .hosts
            .iter()
            .map(|h| (h.id, h.name.clone()))
            .filter(|(id, _)| !failed.contains(id))
            .collect();
        for (id, _) in &hosts {
            let vms: Vec<hsdb::VmRow> = self
                .vms_on_host(*id, store)?
                .into_iter()
                .filter(|v| v.managed)
                .collect();
            if vms.is_empty() {
                continue;
            }
            let placing: Vec<hsdb::Uuid> = vms.iter().map(|v| v.uuid).collect();
            let mut lost = failed.clone();
            lost.push(*id);
            let request = PlanRequest {
                vms: vms
                    .iter()
                    .map(|row| {
                        let spec = super::place::spec_of(row, &infos);
                        VmToPlace {
                            uuid: row.uuid,
                            name: super::vm::display_name(row),
                            priority: row.priority,
                            cpu_milli: spec.cpu_milli,
                            memory_mb: spec.memory_mb,
                            home: row.home_host,
                            source: Some(*id),
                            exclude: Vec::new(),
                        }
                    })
                    .collect(),
                hosts: self.host_loads(&infos, &placing),
                failed: lost,
                policies: self.policies.clone(),
                max_per_host: self.params.max_restarts_per_host,
                names: names_of(&infos),
            };
            let plan = self.planner.plan(&request);
            let missing: Shortfall = plan
                .unplaced()
                .map(|(i, p)| (request.vms[p.vm].name.clone(), plan.why_brief(&request, i)))
                .collect();
            if !missing.is_empty() {
                short.insert(*id, missing);
            }
        }
        self.verify_result(now_ms, &hosts, &failed, short);
        Ok(())
    }

    fn verify_result(
        &mut self,
        now_ms: i64,
        hosts: &[(HostId, String)],
        failed: &[HostId],
        short: BTreeMap<HostId, Shortfall>,
    ) {
        let name_of = |id: &HostId| {
            hosts
                .iter()
                .find(|(h, _)| h == id)
                .map_or_else(|| id.to_string(), |(_, n)| n.clone())
        };
        // A failed host keeps its last finding.
        let kept: Vec<(HostId, usize)> = self
            .capacity_short
            .iter()
            .filter(|(id, _)| failed.contains(id))
            .map(|(id, n)| (*id, *n))
            .collect();
        let was: Vec<HostId> = self.capacity_short.keys().copied().collect();
        let now: Vec<HostId> = short
            .keys()
            .copied()
            .chain(kept.iter().map(|(id, _)| *id))
            .collect();
        // Decisions: each host that became short, each that is no longer.
        for (id, missing) in &short {
            if self.capacity_short.get(id) == Some(&missing.len()) {
                continue;
            }
            let text = format!(
                "verify: the loss of host {} would leave {} managed VM(s) without a place: {}",
                name_of(id),
                missing.len(),
                listed(missing)
            );
            self.decide(
                now_ms,
                Subject::Host {
                    id: *id,
                    name: name_of(id),
                },
                Verdict::Verify,
                text,
            );
        }
        for id in was
            .iter()
            .filter(|id| !short.contains_key(id) && !failed.contains(id))
        {
            self.decide(
                now_ms,
                Subject::Host {
                    id: *id,
                    name: name_of(id),
                },
                Verdict::Verify,
                format!(
                    "verify: the loss of host {} can be absorbed again",
                    name_of(id)
                ),
            );
        }
        if was.is_empty() && !now.is_empty() {
            let parts: Vec<String> = short
                .iter()
                .map(|(id, m)| {
                    let mut names: Vec<&str> = m
                        .iter()
                        .take(NAMED_PER_HOST)
                        .map(|(n, _)| n.as_str())
                        .collect();
                    let more = m.len().saturating_sub(NAMED_PER_HOST);
                    let more = if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    };
                    names.sort_unstable();
                    format!(
                        "host {}: {} VM(s) without a place ({}{more})",
                        name_of(id),
                        m.len(),
                        names.join(", ")
                    )
                })
                .collect();
            self.event(Event {
                kind: EventKind::GroupCapacityShort,
                vm: None,
                hm: None,
                text: format!(
                    "group {} cannot absorb the loss of every host: {}; `hactl verify {}` \
                     says why",
                    self.params.group,
                    parts.join("; "),
                    self.params.group
                ),
                at: now_ms,
            });
        } else if !was.is_empty() && now.is_empty() {
            self.event(Event {
                kind: EventKind::GroupCapacityOk,
                vm: None,
                hm: None,
                text: format!(
                    "group {} can absorb the loss of any one host again ({} hosts verified)",
                    self.params.group,
                    hosts.len()
                ),
                at: now_ms,
            });
        }
        self.capacity_short = short
            .iter()
            .map(|(id, m)| (*id, m.len()))
            .chain(kept)
            .collect();
    }

    /// [`Fde::capacity_short`] in words, for `hactl status`: `host-a: 5 VM(s)`.
    pub fn capacity_short_summary(&self) -> Vec<String> {
        self.capacity_short
            .iter()
            .map(|(id, n)| {
                let name = self
                    .hosts
                    .iter()
                    .find(|h| h.id == *id)
                    .map_or_else(|| id.to_string(), |h| h.name.clone());
                format!("{name}: {n} VM(s)")
            })
            .collect()
    }

    /// The hosts whose loss the last verify found the group cannot absorb, with the
    /// number of VMs that would find no place.
    pub fn capacity_short(&self) -> &BTreeMap<HostId, usize> {
        &self.capacity_short
    }
}

/// "a (why); b (why); … and 3 more".
fn listed(missing: &Shortfall) -> String {
    let mut parts: Vec<String> = missing
        .iter()
        .take(NAMED_PER_HOST)
        .map(|(n, why)| format!("{n}: {why}"))
        .collect();
    if missing.len() > NAMED_PER_HOST {
        parts.push(format!("and {} more", missing.len() - NAMED_PER_HOST));
    }
    parts.join("; ")
}
