//! Plans in words: built only when asked (a decision line, a dry-run), from the
//! structured verdicts the planner keeps.

use std::fmt::Write as _;

use hsdb::Uuid;

use super::{Choice, HostVerdict, Placement, Plan, PlanRequest, Unplaced};

/// The VM's name, or its UUID when it has none.
fn vm_name(req: &PlanRequest, i: usize) -> String {
    match req.vms.get(i) {
        Some(v) if !v.name.is_empty() => v.name.clone(),
        Some(v) => v.uuid.to_string(),
        None => format!("#{i}"),
    }
}

fn other_name(req: &PlanRequest, uuid: &Uuid) -> String {
    if let Some(n) = req.names.get(uuid).filter(|n| !n.is_empty()) {
        return n.clone();
    }
    match req.vms.iter().find(|v| v.uuid == *uuid) {
        Some(v) if !v.name.is_empty() => v.name.clone(),
        _ => uuid.to_string(),
    }
}

fn set_name(sets: &[super::VmSet], s: u32) -> String {
    sets.get(s as usize)
        .map_or_else(|| format!("#{s}"), |x| x.name.clone())
}

/// High, Medium or Low.
fn prio_word(p: hsdb::Priority) -> &'static str {
    match p {
        hsdb::Priority::High => "High",
        hsdb::Priority::Medium => "Medium",
        hsdb::Priority::Low => "Low",
    }
}

fn pct(part: u64, whole: u64) -> u64 {
    part.saturating_mul(100).checked_div(whole).unwrap_or(0)
}

impl Plan {
    fn unit_of(&self, i: usize) -> Option<&super::Unit> {
        self.vms.get(i).and_then(|p| self.units.get(p.unit))
    }

    /// The CPU and memory the unit of the VM at `i` needs on host `h` (request index).
    fn need_on(&self, req: &PlanRequest, i: usize, h: usize) -> (u64, u64) {
        let Some(host) = req.hosts.get(h) else {
            return (0, 0);
        };
        self.unit_of(i).map_or((0, 0), |u| {
            u.members.iter().fold((0, 0), |(c, m), &v| {
                let (vc, vm) = req.vms[v].size_on(host.id, &req.policies.flexible);
                (c + u64::from(vc), m + u64::from(vm))
            })
        })
    }

    /// The host chosen for the VM at `i` (request host index).
    fn chosen_host(&self, i: usize) -> Option<usize> {
        self.verdicts(i)
            .iter()
            .position(|v| matches!(v, HostVerdict::Chosen { .. }))
    }

    /// Other members of the unit of the VM at `i` ("with a, b"), empty for a single VM.
    fn companions(&self, req: &PlanRequest, i: usize) -> String {
        let me = self.vms.get(i).map(|p| p.vm);
        let Some(u) = self.unit_of(i) else {
            return String::new();
        };
        let others: Vec<String> = u
            .members
            .iter()
            .filter(|m| Some(**m) != me)
            .map(|&m| vm_name(req, m))
            .collect();
        if others.is_empty() {
            String::new()
        } else {
            format!(" with {} (collocated)", others.join(", "))
        }
    }

    /// Why the VM at `i` (in [`Plan::vms`]) goes where it goes, or nowhere: one line.
    pub fn why(&self, req: &PlanRequest, i: usize) -> String {
        let Some(p) = self.vms.get(i) else {
            return String::new();
        };
        match p.placement {
            Placement::Host {
                host,
                cpu_milli,
                memory_mb,
                wave,
                why,
            } => {
                let v = &req.vms[p.vm];
                let mut s = match why {
                    Choice::Home => "home host".to_owned(),
                    Choice::Pinned { set } => format!(
                        "collocation {}: its other VMs run there",
                        set_name(&req.policies.collocations, set)
                    ),
                    Choice::BestFit => {
                        let mut s = "best fit".to_owned();
                        if let Some(h) = self.chosen_host(i)
                            && let HostVerdict::Chosen { cpu_left, mem_left } = self.verdicts(i)[h]
                        {
                            let hl = &req.hosts[h];
                            let _ = write!(
                                s,
                                ": leaves cpu {cpu_left} milli ({}%) / memory {mem_left} MiB ({}%) free",
                                pct(cpu_left, hl.cpu_milli),
                                pct(mem_left, hl.memory_mb)
                            );
                        }
                        s
                    }
                };
                s.push_str(&self.companions(req, i));
                if (cpu_milli, memory_mb) != (v.cpu_milli, v.memory_mb) {
                    let f = req.policies.flexible.of(v.priority);
                    let _ = write!(
                        s,
                        "; flexible capacity ({} away from home: cpu {}%, memory {}%): \
                         cpu {cpu_milli} of {} milli, memory {memory_mb} of {} MiB",
                        prio_word(v.priority),
                        f.cpu_pct,
                        f.memory_pct,
                        v.cpu_milli,
                        v.memory_mb
                    );
                }
                if wave > 0 {
                    let name = req
                        .hosts
                        .iter()
                        .find(|h| h.id == host)
                        .map_or_else(|| host.to_string(), |h| h.name.clone());
                    let _ = write!(
                        s,
                        "; wave {wave}: waits for {} of the restarts before it toward \
                         {name} to end (max_restarts_per_host {})",
                        u64::from(wave) * u64::from(req.max_per_host),
                        req.max_per_host
                    );
                }
                s
            }
            Placement::Nowhere(why) => self.why_nowhere(req, i, why),
        }
    }

    /// [`Plan::why`] in one short line: for a VM no host can take, the hosts counted by
    /// reason ("no host can take it (of 12 hosts: 1 failed, 9 no room, 2
    /// anticollocated)") instead of every host's.
    pub fn why_brief(&self, req: &PlanRequest, i: usize) -> String {
        match self.vms.get(i).map(|p| p.placement) {
            Some(Placement::Nowhere(Unplaced::NoHost))
                if !req.hosts.is_empty() && !self.verdicts(i).is_empty() =>
            {
                let mut counts: Vec<(&str, usize)> = Vec::new();
                for v in self.verdicts(i) {
                    let k = match v {
                        HostVerdict::Failed => "failed",
                        HostVerdict::Source { .. } => "its source",
                        HostVerdict::Excluded { .. } => "a start failed there",
                        HostVerdict::Policy { .. } => "on an exclusion list",
                        HostVerdict::NotEligible => "not eligible",
                        HostVerdict::Pinned { .. } => "pinned elsewhere",
                        HostVerdict::Anticollocated { .. } => "anticollocated",
                        HostVerdict::NoRoom { .. } => "no room",
                        _ => "other",
                    };
                    match counts.iter_mut().find(|(x, _)| *x == k) {
                        Some(c) => c.1 += 1,
                        None => counts.push((k, 1)),
                    }
                }
                let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
                format!(
                    "no host can take it{} (of {} hosts: {})",
                    self.companions(req, i),
                    req.hosts.len(),
                    parts.join(", ")
                )
            }
            _ => self.why(req, i),
        }
    }

    fn why_nowhere(&self, req: &PlanRequest, i: usize, why: Unplaced) -> String {
        match why {
            Unplaced::Conflict {
                collocation,
                anticollocation,
                a,
                b,
            } => format!(
                "collocation {} puts VMs {} and {} on one host and anticollocation {} keeps \
                 them apart",
                set_name(&req.policies.collocations, collocation),
                vm_name(req, a as usize),
                vm_name(req, b as usize),
                set_name(&req.policies.anticollocations, anticollocation)
            ),
            Unplaced::SplitPin { set } => format!(
                "the VMs of collocation {} already run on different hosts",
                set_name(&req.policies.collocations, set)
            ),
            Unplaced::NoHost if req.hosts.is_empty() => "no host in the group".to_owned(),
            Unplaced::NoHost if self.verdicts(i).is_empty() => format!(
                "no host can take it (each host's reason not kept: the plan has more than {} \
                 VM × host pairs)",
                super::MAX_VERDICTS
            ),
            Unplaced::NoHost => {
                let mut s = String::from("no host can take it");
                let comp = self.companions(req, i);
                if !comp.is_empty() {
                    s.push_str(&comp);
                }
                s.push_str(": ");
                let parts: Vec<String> = self
                    .why_not(req, i)
                    .into_iter()
                    .map(|(h, t)| format!("{h}: {t}"))
                    .collect();
                s.push_str(&parts.join("; "));
                s
            }
        }
    }

    /// For every host but the chosen one, (host name, why not) for the VM at `i`.
    pub fn why_not(&self, req: &PlanRequest, i: usize) -> Vec<(String, String)> {
        self.verdicts(i)
            .iter()
            .enumerate()
            .filter(|(_, v)| !matches!(v, HostVerdict::Chosen { .. }))
            .map(|(h, _)| {
                (
                    req.hosts.get(h).map(|x| x.name.clone()).unwrap_or_default(),
                    self.verdict_text(req, i, h),
                )
            })
            .collect()
    }

    /// Host `h`'s (request index) verdict for the VM at `i`, in words.
    pub fn verdict_text(&self, req: &PlanRequest, i: usize, h: usize) -> String {
        let Some(&v) = self.verdicts(i).get(h) else {
            return String::new();
        };
        let me = self.vms.get(i).map(|p| p.vm);
        let whose = |vm: u32, own: &str, other: &str| -> String {
            if Some(vm as usize) == me {
                own.to_owned()
            } else {
                format!("{other} VM {}", vm_name(req, vm as usize))
            }
        };
        let chosen_name = self
            .chosen_host(i)
            .and_then(|c| req.hosts.get(c))
            .map(|x| x.name.clone())
            .unwrap_or_default();
        match v {
            HostVerdict::Chosen { .. } => format!("chosen: {}", self.why(req, i)),
            HostVerdict::Failed => "failed".to_owned(),
            HostVerdict::Source { vm } => whose(
                vm,
                "the VM's failed source",
                "the failed source of the collocated",
            ),
            HostVerdict::Excluded { vm } => whose(
                vm,
                "a start of the VM failed there",
                "a start failed there of the collocated",
            ),
            HostVerdict::Policy { vm } => whose(
                vm,
                "on the VM's host exclusion list",
                "on the host exclusion list of the collocated",
            ),
            HostVerdict::NotEligible => format!(
                "not eligible: {}",
                req.hosts.get(h).map_or("", |x| x.why_not.as_str())
            ),
            HostVerdict::Pinned { set, host } => format!(
                "collocation {} is pinned to host {}, where its other VMs run",
                set_name(&req.policies.collocations, set),
                req.hosts.get(host as usize).map_or("", |x| x.name.as_str())
            ),
            HostVerdict::Anticollocated { set, vm, with } => {
                let mut s = format!(
                    "anticollocated with VM {} there (anticollocation {})",
                    other_name(req, &with),
                    set_name(&req.policies.anticollocations, set)
                );
                if Some(vm as usize) != me {
                    let _ = write!(
                        s,
                        " through the collocated VM {}",
                        vm_name(req, vm as usize)
                    );
                }
                s
            }
            HostVerdict::NoRoom { free_cpu, free_mem } => {
                let (nc, nm) = self.need_on(req, i, h);
                format!(
                    "no room: free cpu {free_cpu} milli / memory {free_mem} MiB, needs {nc} / {nm}"
                )
            }
            HostVerdict::HomePreferred => {
                format!("would fit; the home host {chosen_name} is preferred")
            }
            HostVerdict::CapReached { count } => format!(
                "would fit; {count} restarts toward it already (max_restarts_per_host {}), \
                 host {chosen_name} is under the cap",
                req.max_per_host
            ),
            HostVerdict::Blocked => "would fit, but the VM can go nowhere (see why)".to_owned(),
            HostVerdict::WorseFit { cpu_left, mem_left } => {
                let hl = req.hosts.get(h);
                let (cpu_pct, mem_pct) = (
                    pct(cpu_left, hl.map_or(0, |x| x.cpu_milli)),
                    pct(mem_left, hl.map_or(0, |x| x.memory_mb)),
                );
                let chosen = self.chosen_host(i).and_then(|c| match self.verdicts(i)[c] {
                    HostVerdict::Chosen {
                        cpu_left: cc,
                        mem_left: cm,
                    } => Some((c, cc, cm)),
                    _ => None,
                });
                match chosen {
                    // The same room left on both, as shares and as amounts: the planner's
                    // last criterion, the lower host id, decided (policy_planner.rs).
                    Some((c, cc, cm))
                        if cc == cpu_left
                            && cm == mem_left
                            && pct(cc, req.hosts[c].cpu_milli) == cpu_pct
                            && pct(cm, req.hosts[c].memory_mb) == mem_pct =>
                    {
                        format!(
                            "as good a fit: would leave cpu {cpu_left} milli ({cpu_pct}%) / \
                             memory {mem_left} MiB ({mem_pct}%) free, as on {chosen_name}; \
                             the tie goes to the lower host id ({} before {})",
                            req.hosts[c].id.0,
                            hl.map_or(0, |x| x.id.0)
                        )
                    }
                    Some((c, cc, cm)) => {
                        let ch = &req.hosts[c];
                        format!(
                            "a worse fit: would leave cpu {cpu_left} milli ({cpu_pct}%) / \
                             memory {mem_left} MiB ({mem_pct}%) free vs {cc} ({}%) / {cm} ({}%) \
                             on {chosen_name}",
                            pct(cc, ch.cpu_milli),
                            pct(cm, ch.memory_mb)
                        )
                    }
                    None => format!(
                        "a worse fit: would leave cpu {cpu_left} milli ({cpu_pct}%) / \
                         memory {mem_left} MiB ({mem_pct}%) free"
                    ),
                }
            }
        }
    }
}

impl Plan {
    /// The decision for the VM at `i` (in [`Plan::vms`]) in lines, as `hactl relocate
    /// --dry-run` prints it and as a `relocation` row keeps it (`reasons`): first
    /// `NAME: to HOST (cpu C milli, memory M MiB, wave W) — why` (or `NAME: nowhere —
    /// why`), then one line per other host, `    HOST  why not`, the host names
    /// padded to one width.
    pub fn explanation(&self, req: &PlanRequest, i: usize) -> Vec<String> {
        let Some(p) = self.vms.get(i) else {
            return Vec::new();
        };
        let name = vm_name(req, p.vm);
        let head = match p.placement {
            Placement::Host {
                host,
                cpu_milli,
                memory_mb,
                wave,
                ..
            } => {
                let to = req
                    .hosts
                    .iter()
                    .find(|h| h.id == host)
                    .map_or_else(|| host.to_string(), |h| h.name.clone());
                format!(
                    "{name}: to {to} (cpu {cpu_milli} milli, memory {memory_mb} MiB, wave \
                     {wave}) — {}",
                    self.why(req, i)
                )
            }
            Placement::Nowhere(_) => format!("{name}: nowhere — {}", self.why_brief(req, i)),
        };
        let others = self.why_not(req, i);
        let width = others
            .iter()
            .map(|(h, _)| h.chars().count())
            .max()
            .unwrap_or(0);
        let mut lines = Vec::with_capacity(others.len() + 1);
        lines.push(head);
        for (host, why) in others {
            lines.push(format!("    {host:<width$}  {why}"));
        }
        lines
    }
}
