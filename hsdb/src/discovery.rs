//! What discovery found, written in one transaction (schema v11, docs/hsdb.md §11).
//!
//! The control plane asks the platform for its hosts and VMs ([`Found`]) and hands them
//! to [`Hsdb::apply_discovery`], which compares them with the store and writes, all or
//! nothing: hosts the store lacks (added without a group: putting a host in a group is
//! an operator's decision), every host's capacity and every VM's size while they are
//! unset or still what discovery wrote before (an operator's value is never
//! overwritten), the host each VM runs on, VMs new to the store (unmanaged unless
//! `manage_new`), VMs that vanished (marked and reported, never deleted), VMs found again,
//! and an event for each new, vanished or reappeared VM and each added host.

use std::collections::{BTreeMap, BTreeSet};

use hvha_identity::Uuid;

use crate::apply::{OUTBOX_LOCK, PG_OUTBOX_LOCK};
use crate::codec::{UuidText, opt_uuid};
use crate::db::{Conn, params};
use crate::error::Result;
use crate::model::HostId;
use crate::store::Hsdb;

/// Event kind written for a VM discovery found first (the control plane's catalogue
/// has the same name).
pub const EVENT_VM_DISCOVERED: &str = "VM_DISCOVERED";
/// Event kind written for a VM discovery no longer finds on the group's hosts.
pub const EVENT_VM_VANISHED: &str = "VM_VANISHED";
/// Event kind written for a vanished VM found again.
pub const EVENT_VM_REAPPEARED: &str = "VM_REAPPEARED";
/// Event kind written for a host the platform has and the store had not.
pub const EVENT_HOST_DISCOVERED: &str = "HOST_DISCOVERED";

/// A VM as the platform lists it on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundVm {
    /// UUID.
    pub uuid: Uuid,
    /// The platform's name for it.
    pub name: String,
    /// The platform's state, in the seed's words (`Running`, `Not Activated`, …).
    pub power: String,
    /// Running on this host (a VM defined on several hosts runs on at most one).
    pub running: bool,
    /// Its size (thousandths of a CPU, MiB), when the platform was asked for it (always
    /// for a deep discovery and for VMs new to the store); `None` keeps the stored one.
    pub size: Option<(u32, u32)>,
}

/// A host as the platform reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundHost {
    /// Name (the store's `host.name`).
    pub name: String,
    /// CPU capacity, thousandths of a CPU.
    pub cpu_milli: u32,
    /// Memory capacity, MiB.
    pub memory_mb: u32,
    /// The VMs defined on it.
    pub vms: Vec<FoundVm>,
}

/// One discovery's findings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Found {
    /// The hosts that answered, with their VMs.
    pub hosts: Vec<FoundHost>,
    /// New VMs are managed at once (`[discovery] manage_new`).
    pub manage_new: bool,
}

/// One thing discovery changed in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryChange {
    /// A host the store did not have, added without a host group.
    HostAdded {
        /// Its name.
        host: String,
        /// The id given to it.
        id: HostId,
        /// Capacity, thousandths of a CPU.
        cpu_milli: u32,
        /// Capacity, MiB.
        memory_mb: u32,
    },
    /// A known host's capacity followed the platform.
    HostUpdated {
        /// Its name.
        host: String,
        /// What changed (`cpu 16000 → 32000 milli`).
        what: Vec<String>,
    },
    /// A VM the store did not have.
    VmNew {
        /// UUID.
        vm: Uuid,
        /// The platform's name.
        name: String,
        /// Where it is.
        host: Option<String>,
        /// Managed at once (`manage_new`).
        managed: bool,
    },
    /// A known VM's host, size or name followed the platform.
    VmUpdated {
        /// UUID.
        vm: Uuid,
        /// Its name.
        name: String,
        /// What changed (`host host-a → host-b`).
        what: Vec<String>,
    },
    /// A VM discovery no longer finds on the group's hosts (kept, not relocated).
    VmVanished {
        /// UUID.
        vm: Uuid,
        /// Its name.
        name: String,
        /// The host it was last known on.
        last_host: Option<String>,
        /// Managed by the control plane.
        managed: bool,
    },
    /// A vanished VM found again.
    VmReappeared {
        /// UUID.
        vm: Uuid,
        /// Its name.
        name: String,
        /// Where.
        host: Option<String>,
    },
}

impl DiscoveryChange {
    /// One line for a person.
    pub fn describe(&self) -> String {
        match self {
            DiscoveryChange::HostAdded {
                host,
                id,
                cpu_milli,
                memory_mb,
            } => format!(
                "host {host} added (id {id}, {cpu_milli} milli-CPU, {memory_mb} MiB, no host group yet)"
            ),
            DiscoveryChange::HostUpdated { host, what } => {
                format!("host {host}: {}", what.join(", "))
            }
            DiscoveryChange::VmNew {
                vm,
                name,
                host,
                managed,
            } => format!(
                "new VM {name} ({vm}) on {}, {}",
                host.as_deref().unwrap_or("no host"),
                if *managed { "managed" } else { "unmanaged" }
            ),
            DiscoveryChange::VmUpdated { vm, name, what } => {
                format!("VM {name} ({vm}): {}", what.join(", "))
            }
            DiscoveryChange::VmVanished {
                vm,
                name,
                last_host,
                managed,
            } => format!(
                "VM {name} ({vm}) vanished from {} ({})",
                last_host.as_deref().unwrap_or("its host"),
                if *managed { "managed" } else { "unmanaged" }
            ),
            DiscoveryChange::VmReappeared { vm, name, host } => format!(
                "VM {name} ({vm}) found again on {}",
                host.as_deref().unwrap_or("no single host")
            ),
        }
    }
}

/// What [`Hsdb::apply_discovery`] did and noticed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscoveryReport {
    /// What changed in the store.
    pub changes: Vec<DiscoveryChange>,
    /// What was noticed but left alone: an operator's value that differs from the
    /// platform's, a VM running on two hosts, a VM skipped while it is being restarted.
    pub notes: Vec<String>,
    /// Hosts that answered.
    pub hosts: usize,
    /// VMs found (each counted once).
    pub vms: usize,
}

/// What the store has of a VM discovery found.
struct KnownVm {
    name: String,
    current_host: Option<HostId>,
    cpu_milli: i64,
    memory_mb: i64,
    disc_host: Option<HostId>,
    disc_cpu: Option<i64>,
    disc_mem: Option<i64>,
    vanished: bool,
    has_disc: bool,
    relocating: bool,
}

const KNOWN_VM: &str = "SELECT v.name, v.current_host, v.managed, v.cpu_milli, v.memory_mb, \
    d.host, d.cpu_milli, d.memory_mb, d.vanished_ms, d.vm, \
    (SELECT COUNT(*) FROM relocation r WHERE r.vm = v.uuid AND r.ended_ms IS NULL) \
    FROM vm v LEFT JOIN vm_discovery d ON d.vm = v.uuid WHERE v.uuid = ?1";

fn known_vm(tx: &Conn, op: &'static str, vm: &Uuid) -> Result<Option<KnownVm>> {
    tx.query_opt(op, "vm", KNOWN_VM, params![UuidText::new(vm)], |c| {
        Ok(KnownVm {
            name: c.text(0)?,
            current_host: c.opt_int(1)?.map(HostId),
            cpu_milli: c.int(3)?,
            memory_mb: c.int(4)?,
            disc_host: c.opt_int(5)?.map(HostId),
            disc_cpu: c.opt_int(6)?,
            disc_mem: c.opt_int(7)?,
            vanished: c.opt_int(8)?.is_some(),
            has_disc: c.opt_text(9)?.is_some(),
            relocating: c.int(10)? > 0,
        })
    })
}

fn event(
    tx: &Conn,
    op: &'static str,
    kind: &str,
    vm: Option<&Uuid>,
    text: &str,
    at: i64,
) -> Result<()> {
    if tx.is_pg() {
        tx.exists(op, PG_OUTBOX_LOCK, params![OUTBOX_LOCK])?;
    }
    tx.execute(
        op,
        "INSERT INTO event (kind, vm, hm, text, created_ms) VALUES (?1, ?2, NULL, ?3, ?4)",
        params![kind, opt_uuid(vm), text, at],
    )?;
    Ok(())
}

/// Follow the platform's value unless an operator set one: `stored` is followed when it
/// is 0 or equal to what discovery wrote before (`previous`).
fn follows(stored: i64, previous: Option<i64>, platform: i64) -> bool {
    stored != platform && (stored == 0 || previous == Some(stored))
}

impl Hsdb {
    /// Write what one discovery found (see the module's documentation), in one
    /// transaction: a failure writes nothing. `group` limits which VMs can vanish: those
    /// last known on a host of `found` (a host that did not answer is not in `found`, so
    /// its VMs are never called vanished). Returns the changes and notes.
    pub fn apply_discovery(&mut self, found: &Found, at: i64) -> Result<DiscoveryReport> {
        const OP: &str = "apply_discovery";
        self.write(OP, |tx| {
            let mut report = DiscoveryReport {
                hosts: found.hosts.len(),
                ..DiscoveryReport::default()
            };
            // Hosts.
            let mut host_ids: BTreeMap<&str, HostId> = BTreeMap::new();
            for h in &found.hosts {
                let row = tx.query_opt(
                    OP,
                    "host",
                    "SELECT h.id, h.cpu_milli, h.memory_mb, d.cpu_milli, d.memory_mb \
                     FROM host h LEFT JOIN host_discovery d ON d.host = h.id WHERE h.name = ?1",
                    params![h.name],
                    |c| {
                        Ok((
                            HostId(c.int(0)?),
                            c.int(1)?,
                            c.int(2)?,
                            c.opt_int(3)?,
                            c.opt_int(4)?,
                        ))
                    },
                )?;
                let id = match row {
                    None => {
                        let id = HostId(
                            tx.query_int(OP, "SELECT COALESCE(MAX(id), 0) + 1 FROM host", params![])?
                                .unwrap_or(1),
                        );
                        tx.execute(
                            OP,
                            "INSERT INTO host (id, name, machine_type, model, serial, cpu_milli, \
                             memory_mb, host_group) VALUES (?1, ?2, '', '', '', ?3, ?4, '')",
                            params![id, h.name, h.cpu_milli, h.memory_mb],
                        )?;
                        let text = format!(
                            "host {} found on the platform and added to the HSDB (id {id}, \
                             {} milli-CPU, {} MiB) without a host group: put it in one with \
                             `hactl modify host {} host_group=GROUP`",
                            h.name, h.cpu_milli, h.memory_mb, h.name
                        );
                        event(tx, OP, EVENT_HOST_DISCOVERED, None, &text, at)?;
                        report.changes.push(DiscoveryChange::HostAdded {
                            host: h.name.clone(),
                            id,
                            cpu_milli: h.cpu_milli,
                            memory_mb: h.memory_mb,
                        });
                        id
                    }
                    Some((id, cpu, mem, dcpu, dmem)) => {
                        let mut what = Vec::new();
                        let (pcpu, pmem) = (i64::from(h.cpu_milli), i64::from(h.memory_mb));
                        if follows(cpu, dcpu, pcpu) {
                            tx.execute(OP, "UPDATE host SET cpu_milli = ?2 WHERE id = ?1", params![id, pcpu])?;
                            what.push(format!("cpu {cpu} → {pcpu} milli"));
                        } else if cpu != pcpu {
                            report.notes.push(format!(
                                "host {}: the operator's cpu {cpu} milli kept (platform: {pcpu})",
                                h.name
                            ));
                        }
                        if follows(mem, dmem, pmem) {
                            tx.execute(OP, "UPDATE host SET memory_mb = ?2 WHERE id = ?1", params![id, pmem])?;
                            what.push(format!("memory {mem} → {pmem} MiB"));
                        } else if mem != pmem {
                            report.notes.push(format!(
                                "host {}: the operator's memory {mem} MiB kept (platform: {pmem})",
                                h.name
                            ));
                        }
                        if !what.is_empty() {
                            report.changes.push(DiscoveryChange::HostUpdated {
                                host: h.name.clone(),
                                what,
                            });
                        }
                        id
                    }
                };
                let vms = i64::try_from(h.vms.len()).unwrap_or(i64::MAX);
                tx.execute(
                    OP,
                    "INSERT INTO host_discovery (host, cpu_milli, memory_mb, vms, last_seen_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (host) DO UPDATE SET \
                     cpu_milli = excluded.cpu_milli, memory_mb = excluded.memory_mb, \
                     vms = excluded.vms, last_seen_ms = excluded.last_seen_ms",
                    params![id, h.cpu_milli, h.memory_mb, vms, at],
                )?;
                host_ids.insert(h.name.as_str(), id);
            }
            let host_name = |id: Option<HostId>| -> Option<String> {
                let id = id?;
                found
                    .hosts
                    .iter()
                    .find(|h| host_ids.get(h.name.as_str()) == Some(&id))
                    .map(|h| h.name.clone())
            };

            // VMs, each once with every host that has it.
            let mut by_vm: BTreeMap<Uuid, Vec<(&str, &FoundVm)>> = BTreeMap::new();
            for h in &found.hosts {
                for v in &h.vms {
                    by_vm.entry(v.uuid).or_default().push((h.name.as_str(), v));
                }
            }
            report.vms = by_vm.len();
            for (uuid, places) in &by_vm {
                let running: Vec<&str> =
                    places.iter().filter(|(_, v)| v.running).map(|(h, _)| *h).collect();
                let first = places[0].1;
                let known = known_vm(tx, OP, uuid)?;
                // Where it is: the host it runs on; else the only host defining it; else
                // (defined on several, running on none) where the store has it.
                let place: Option<&str> = match running.as_slice() {
                    [one] => Some(one),
                    [] if places.len() == 1 => Some(places[0].0),
                    [] => {
                        let cur = known.as_ref().and_then(|k| k.current_host);
                        places
                            .iter()
                            .map(|(h, _)| *h)
                            .find(|h| host_ids.get(h).copied() == cur)
                    }
                    many => {
                        report.notes.push(format!(
                            "VM {} ({uuid}) runs on {} hosts at once: {}; its host is left as it was",
                            first.name,
                            many.len(),
                            many.join(", ")
                        ));
                        None
                    }
                };
                let place_id = place.and_then(|p| host_ids.get(p).copied());
                let on = places
                    .iter()
                    .find(|(h, _)| Some(*h) == place)
                    .map_or(first, |(_, v)| *v);
                let size = places.iter().find_map(|(_, v)| v.size);
                let Some(k) = known else {
                    let (cpu, mem) = size.unwrap_or((0, 0));
                    let state = if found.manage_new { "ADDED" } else { "UNKNOWN" };
                    tx.execute(
                        OP,
                        "INSERT INTO vm (uuid, name, current_host, state, managed, cpu_milli, \
                         memory_mb, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![
                            UuidText::new(uuid),
                            first.name,
                            place_id,
                            state,
                            found.manage_new,
                            cpu,
                            mem,
                            at
                        ],
                    )?;
                    tx.execute(
                        OP,
                        "INSERT INTO vm_discovery (vm, host, name, power, cpu_milli, memory_mb, \
                         first_seen_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                        params![UuidText::new(uuid), place_id, first.name, on.power, cpu, mem, at],
                    )?;
                    let text = format!(
                        "VM {} ({uuid}) discovered on {} ({}, {cpu} milli-CPU, {mem} MiB), {}",
                        first.name,
                        place.unwrap_or("several hosts"),
                        on.power,
                        if found.manage_new {
                            "managed at once ([discovery] manage_new)".to_owned()
                        } else {
                            format!(
                                "unmanaged: manage it with `hactl modify vm {uuid} managed=yes`"
                            )
                        }
                    );
                    event(tx, OP, EVENT_VM_DISCOVERED, Some(uuid), &text, at)?;
                    report.changes.push(DiscoveryChange::VmNew {
                        vm: *uuid,
                        name: first.name.clone(),
                        host: place.map(str::to_owned),
                        managed: found.manage_new,
                    });
                    continue;
                };
                let shown = if k.name.is_empty() { first.name.clone() } else { k.name.clone() };
                let mut what = Vec::new();
                if k.relocating {
                    report.notes.push(format!(
                        "VM {shown} ({uuid}) skipped: a restart or relocation of it is in progress"
                    ));
                } else {
                    if let Some(pid) = place_id
                        && k.current_host != Some(pid)
                    {
                            tx.execute(
                                OP,
                                "UPDATE vm SET current_host = ?2 WHERE uuid = ?1",
                                params![UuidText::new(uuid), pid],
                            )?;
                            what.push(format!(
                                "host {} → {}",
                                k.current_host.map_or("none".to_owned(), |h| {
                                    host_name(Some(h)).unwrap_or_else(|| format!("id {h}"))
                                }),
                                place.unwrap_or_default()
                            ));
                        }
                    if k.name.is_empty() && !first.name.is_empty() {
                        tx.execute(
                            OP,
                            "UPDATE vm SET name = ?2 WHERE uuid = ?1",
                            params![UuidText::new(uuid), first.name],
                        )?;
                        what.push(format!("name set to {}", first.name));
                    }
                    if let Some((cpu, mem)) = size {
                        let (cpu, mem) = (i64::from(cpu), i64::from(mem));
                        if follows(k.cpu_milli, k.disc_cpu, cpu) {
                            tx.execute(
                                OP,
                                "UPDATE vm SET cpu_milli = ?2 WHERE uuid = ?1",
                                params![UuidText::new(uuid), cpu],
                            )?;
                            what.push(format!("cpu {} → {cpu} milli", k.cpu_milli));
                        } else if k.cpu_milli != cpu {
                            report.notes.push(format!(
                                "VM {shown} ({uuid}): the operator's cpu {} milli kept (platform: {cpu})",
                                k.cpu_milli
                            ));
                        }
                        if follows(k.memory_mb, k.disc_mem, mem) {
                            tx.execute(
                                OP,
                                "UPDATE vm SET memory_mb = ?2 WHERE uuid = ?1",
                                params![UuidText::new(uuid), mem],
                            )?;
                            what.push(format!("memory {} → {mem} MiB", k.memory_mb));
                        } else if k.memory_mb != mem {
                            report.notes.push(format!(
                                "VM {shown} ({uuid}): the operator's memory {} MiB kept (platform: {mem})",
                                k.memory_mb
                            ));
                        }
                    }
                    if !what.is_empty() {
                        tx.execute(
                            OP,
                            "UPDATE vm SET updated_ms = ?2 WHERE uuid = ?1",
                            params![UuidText::new(uuid), at],
                        )?;
                    }
                }
                if k.vanished {
                    let text = format!(
                        "VM {shown} ({uuid}) found again on {}",
                        place.unwrap_or("several hosts")
                    );
                    event(tx, OP, EVENT_VM_REAPPEARED, Some(uuid), &text, at)?;
                    report.changes.push(DiscoveryChange::VmReappeared {
                        vm: *uuid,
                        name: shown.clone(),
                        host: place.map(str::to_owned),
                    });
                }
                if !what.is_empty() {
                    report.changes.push(DiscoveryChange::VmUpdated {
                        vm: *uuid,
                        name: shown.clone(),
                        what,
                    });
                }
                let (dcpu, dmem) = match size {
                    Some((c, m)) => (i64::from(c), i64::from(m)),
                    None => (
                        k.disc_cpu.unwrap_or(k.cpu_milli),
                        k.disc_mem.unwrap_or(k.memory_mb),
                    ),
                };
                let dhost = place_id.or(k.disc_host);
                if k.has_disc {
                    tx.execute(
                        OP,
                        "UPDATE vm_discovery SET host = ?2, name = ?3, power = ?4, cpu_milli = ?5, \
                         memory_mb = ?6, first_seen_ms = COALESCE(first_seen_ms, ?7), \
                         last_seen_ms = ?7, vanished_ms = NULL WHERE vm = ?1",
                        params![UuidText::new(uuid), dhost, on.name, on.power, dcpu, dmem, at],
                    )?;
                } else {
                    tx.execute(
                        OP,
                        "INSERT INTO vm_discovery (vm, host, name, power, cpu_milli, memory_mb, \
                         first_seen_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                        params![UuidText::new(uuid), dhost, on.name, on.power, dcpu, dmem, at],
                    )?;
                }
            }

            // Vanished: known on a host that answered, found on none.
            let answered: BTreeSet<HostId> = host_ids.values().copied().collect();
            let candidates = tx.query(
                OP,
                "vm",
                "SELECT v.uuid, v.name, v.managed, COALESCE(v.current_host, d.host), d.vm, \
                 (SELECT COUNT(*) FROM relocation r WHERE r.vm = v.uuid AND r.ended_ms IS NULL) \
                 FROM vm v LEFT JOIN vm_discovery d ON d.vm = v.uuid \
                 WHERE d.vanished_ms IS NULL AND COALESCE(v.current_host, d.host) IS NOT NULL",
                params![],
                |c| {
                    Ok((
                        c.uuid(0, "uuid")?,
                        c.text(1)?,
                        c.bool(2, "managed")?,
                        c.opt_int(3)?.map(HostId),
                        c.opt_text(4)?.is_some(),
                        c.int(5)? > 0,
                    ))
                },
            )?;
            for (uuid, name, managed, last, has_disc, relocating) in candidates {
                if by_vm.contains_key(&uuid) || !last.is_some_and(|h| answered.contains(&h)) {
                    continue;
                }
                if relocating {
                    report.notes.push(format!(
                        "VM {name} ({uuid}) not found, not called vanished: a restart or relocation of it is in progress"
                    ));
                    continue;
                }
                let last_name = host_name(last);
                if has_disc {
                    tx.execute(
                        OP,
                        "UPDATE vm_discovery SET vanished_ms = ?2 WHERE vm = ?1",
                        params![UuidText::new(&uuid), at],
                    )?;
                } else {
                    tx.execute(
                        OP,
                        "INSERT INTO vm_discovery (vm, host, name, cpu_milli, memory_mb, \
                         vanished_ms) SELECT uuid, ?2, name, cpu_milli, memory_mb, ?3 \
                         FROM vm WHERE uuid = ?1",
                        params![UuidText::new(&uuid), last, at],
                    )?;
                }
                let text = format!(
                    "VM {name} ({uuid}) vanished: no longer defined on {} nor on any other host \
                     discovery heard from; it is kept in the HSDB and not relocated{}",
                    last_name.as_deref().unwrap_or("its host"),
                    if managed {
                        " (managed: check the platform; remove it with `hactl modify vm … managed=no` if it is gone for good)"
                    } else {
                        ""
                    }
                );
                event(tx, OP, EVENT_VM_VANISHED, Some(&uuid), &text, at)?;
                report.changes.push(DiscoveryChange::VmVanished {
                    vm: uuid,
                    name,
                    last_host: last_name,
                    managed,
                });
            }
            Ok(report)
        })
    }

    /// What discovery last found of VM `vm`.
    pub fn vm_discovery(&self, vm: &Uuid) -> Result<Option<VmDiscoveryRow>> {
        self.conn.query_opt(
            "vm_discovery",
            "vm_discovery",
            "SELECT vm, host, name, power, cpu_milli, memory_mb, first_seen_ms, last_seen_ms, \
             vanished_ms FROM vm_discovery WHERE vm = ?1",
            params![UuidText::new(vm)],
            |c| {
                Ok(VmDiscoveryRow {
                    vm: c.uuid(0, "vm")?,
                    host: c.opt_int(1)?.map(HostId),
                    name: c.text(2)?,
                    power: c.text(3)?,
                    cpu_milli: c.u32(4, "cpu_milli")?,
                    memory_mb: c.u32(5, "memory_mb")?,
                    first_seen_ms: c.opt_int(6)?,
                    last_seen_ms: c.opt_int(7)?,
                    vanished_ms: c.opt_int(8)?,
                })
            },
        )
    }

    /// Every VM discovery marked vanished (and not found again), oldest first.
    pub fn vanished_vms(&self) -> Result<Vec<(Uuid, i64)>> {
        self.conn.query(
            "vanished_vms",
            "vm_discovery",
            "SELECT vm, vanished_ms FROM vm_discovery WHERE vanished_ms IS NOT NULL \
             ORDER BY vanished_ms, vm",
            params![],
            |c| Ok((c.uuid(0, "vm")?, c.int(1)?)),
        )
    }
}

/// What discovery last found of a VM (`vm_discovery` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmDiscoveryRow {
    /// The VM.
    pub vm: Uuid,
    /// The host it was found on.
    pub host: Option<HostId>,
    /// The platform's name for it.
    pub name: String,
    /// The platform's state, in the seed's words.
    pub power: String,
    /// Its size on the platform, thousandths of a CPU.
    pub cpu_milli: u32,
    /// Its size on the platform, MiB.
    pub memory_mb: u32,
    /// First found.
    pub first_seen_ms: Option<i64>,
    /// Last found.
    pub last_seen_ms: Option<i64>,
    /// Marked vanished at.
    pub vanished_ms: Option<i64>,
}
