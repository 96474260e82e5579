//! Relocation policies (schema v7, docs/hsdb.md "Policies"): named VM sets
//! (collocation, anticollocation, workgroup) of one host group with their members in
//! order, per-VM host exclusions, and flexible capacity per host group and priority.
//!
//! Every change is ONE write transaction through [`Hsdb::policy_change`]. On PostgreSQL
//! it first takes the transaction-scoped advisory lock [`POLICY_LOCK`], so policy
//! writers are serialised (SQLite's `BEGIN IMMEDIATE` does that already), and locks the
//! rows it changes (`FOR UPDATE`: the set's row, the VM's row). After its writes, still
//! inside the transaction, it reads the whole [`PolicyView`] as it would be committed and
//! hands it to the caller's check: a refusal rolls everything back, so a rule the
//! control plane enforces (`controlplane::policy`) is checked against exactly what
//! would be stored, and two operators cannot both pass the check with changes that
//! conflict.
//!
//! The store checks only what it must to stay consistent: the set exists (or does not),
//! each VM appears once in a set, a VM or host named by an exclusion exists, a
//! percentage is 1..=100. Everything else is the control plane's rule.

use core::fmt;

use hvha_identity::Uuid;

use crate::codec::{Columns, UuidText};
use crate::db::{Conn, params};
use crate::error::{Error, Result};
use crate::model::{HostId, HostRecord, Priority, VmRow};
use crate::store::{Hsdb, host_row, vm_row};

/// The PostgreSQL advisory lock (transaction-scoped) every policy change takes first:
/// `"HVHA"` then 3.
pub(crate) const POLICY_LOCK: i64 = 0x4856_4841_0000_0003;

text_enum! {
    /// The kind of a named VM set.
    PolicyKind {
        /// VMs placed on one host after a relocation, together or not at all (seed 004
        /// L15730-15765).
        Collocation => "COLLOCATION",
        /// VMs never placed on one host after a relocation (seed 004 L15766-15800).
        Anticollocation => "ANTICOLLOCATION",
        /// VMs restarted as one unit of work (seed 004 L15801-15835).
        Workgroup => "WORKGROUP",
    }
}

impl PolicyKind {
    /// The kind as the operator writes it: `collocation`, `anticollocation`, `workgroup`.
    pub const fn word(self) -> &'static str {
        match self {
            PolicyKind::Collocation => "collocation",
            PolicyKind::Anticollocation => "anticollocation",
            PolicyKind::Workgroup => "workgroup",
        }
    }

    /// The kind the operator wrote (`collocation`, …, any case).
    pub fn from_word(word: &str) -> Option<PolicyKind> {
        PolicyKind::ALL
            .iter()
            .copied()
            .find(|k| k.word().eq_ignore_ascii_case(word))
    }
}

/// A named VM set as stored (`policy` + `policy_member`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    /// Its id (never reused).
    pub id: i64,
    /// Collocation, anticollocation or workgroup.
    pub kind: PolicyKind,
    /// The operator's name, unique per kind.
    pub name: String,
    /// The host group it belongs to.
    pub host_group: String,
    /// Its VMs in the operator's order; a VM whose row is gone stays listed.
    pub members: Vec<Uuid>,
    /// When it was added, ms since the Unix epoch.
    pub created_ms: i64,
    /// When it was last changed.
    pub updated_ms: i64,
}

/// A host VM `vm` is never relocated to (`vm_host_exclusion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Exclusion {
    /// The VM.
    pub vm: Uuid,
    /// The excluded host.
    pub host: HostId,
}

/// Flexible capacity of one host group for one priority (`flexible_capacity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlexRow {
    /// The host group.
    pub host_group: String,
    /// The priority it applies to.
    pub priority: Priority,
    /// Percent of the nominal CPU, 1..=100.
    pub cpu_pct: u8,
    /// Percent of the nominal memory, 1..=100.
    pub memory_pct: u8,
}

/// Everything the policy rules are judged on, read in one snapshot: every host, every
/// VM, every set, every exclusion and every flexible capacity row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyView {
    /// Every host, by id.
    pub hosts: Vec<HostRecord>,
    /// Every VM, by UUID.
    pub vms: Vec<VmRow>,
    /// Every named set, by kind then name.
    pub sets: Vec<PolicyRow>,
    /// Every exclusion, by VM then host.
    pub exclusions: Vec<Exclusion>,
    /// Every flexible capacity row, by host group then priority (HIGH, MEDIUM, LOW).
    pub flexible: Vec<FlexRow>,
}

/// One change of the policies ([`Hsdb::policy_change`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyChange {
    /// Add set `name` of `kind` in `host_group` with `members` (in order).
    AddSet {
        /// Its kind.
        kind: PolicyKind,
        /// Its name (not empty; unique per kind).
        name: String,
        /// Its host group.
        host_group: String,
        /// Its VMs, each once.
        members: Vec<Uuid>,
    },
    /// Replace the members of set `name` of `kind`.
    SetMembers {
        /// Its kind.
        kind: PolicyKind,
        /// Its name.
        name: String,
        /// Its VMs from now on, each once.
        members: Vec<Uuid>,
    },
    /// Delete set `name` of `kind`.
    DeleteSet {
        /// Its kind.
        kind: PolicyKind,
        /// Its name.
        name: String,
    },
    /// Exclude `hosts` for VM `vm` (those excluded already stay).
    AddExclusions {
        /// The VM.
        vm: Uuid,
        /// The hosts.
        hosts: Vec<HostId>,
    },
    /// Allow `hosts` again for VM `vm` (those not excluded are ignored).
    DeleteExclusions {
        /// The VM.
        vm: Uuid,
        /// The hosts.
        hosts: Vec<HostId>,
    },
    /// Set the flexible capacity of `host_group` for `priority`: each `Some` percent
    /// replaces the stored one; a new row starts at 100 % for the other.
    SetFlexible {
        /// The host group.
        host_group: String,
        /// The priority.
        priority: Priority,
        /// Percent of the nominal CPU, 1..=100.
        cpu_pct: Option<u8>,
        /// Percent of the nominal memory, 1..=100.
        memory_pct: Option<u8>,
    },
    /// Remove the flexible capacity of `host_group` for `priority` (100 % again).
    UnsetFlexible {
        /// The host group.
        host_group: String,
        /// The priority.
        priority: Priority,
    },
}

/// The columns [`policy_row`] decodes (members come separately).
const POLICY_SELECT: &str = "SELECT id, kind, name, host_group, created_ms, updated_ms FROM policy";

impl Hsdb {
    /// Apply `change` in one write transaction, then read the resulting
    /// [`PolicyView`] inside it and call `check`: `Ok(Err(e))` when `check` refused
    /// (everything rolled back, nothing stored); `Ok(Ok(n))` with the number of rows the
    /// change added, replaced or deleted once committed. `check` may run more than once
    /// (a transaction PostgreSQL rolled back for contention is run again).
    ///
    /// Errors: a set that exists already ([`Error::Exists`]) or does not
    /// ([`Error::NotFound`]); an empty set name, a VM twice in one set, a percent outside
    /// 1..=100, an empty host group ([`Error::Options`]); an exclusion naming a VM or
    /// host that does not exist ([`Error::NotFound`]).
    pub fn policy_change<E>(
        &mut self,
        change: &PolicyChange,
        at: i64,
        mut check: impl FnMut(&PolicyView) -> std::result::Result<(), E>,
    ) -> Result<std::result::Result<usize, E>> {
        const OP: &str = "policy_change";
        validate_change(change)?;
        let mut refused: Option<E> = None;
        let outcome = self.write(OP, |tx| {
            if tx.is_pg() {
                tx.query_opt(
                    OP,
                    "",
                    "SELECT pg_advisory_xact_lock(?1)",
                    params![POLICY_LOCK],
                    |_| Ok(()),
                )?;
            }
            let n = apply_change(tx, change, at)?;
            let view = read_view(tx, OP)?;
            match check(&view) {
                Ok(()) => Ok(n),
                Err(e) => {
                    refused = Some(e);
                    Err(Error::Refused { op: OP })
                }
            }
        });
        match outcome {
            Ok(n) => Ok(Ok(n)),
            Err(Error::Refused { .. }) if refused.is_some() => match refused {
                Some(e) => Ok(Err(e)),
                None => Err(Error::Refused { op: OP }),
            },
            Err(e) => Err(e),
        }
    }

    /// [`Hsdb::policy_change`] without a check.
    pub fn policy_apply(&mut self, change: &PolicyChange, at: i64) -> Result<usize> {
        match self.policy_change(change, at, |_| Ok::<(), std::convert::Infallible>(()))? {
            Ok(n) => Ok(n),
            Err(never) => match never {},
        }
    }

    /// Every host, VM, set, exclusion and flexible capacity row, in one snapshot.
    pub fn policy_view(&self) -> Result<PolicyView> {
        const OP: &str = "policy_view";
        self.read(OP, |tx| read_view(tx, OP))
    }

    /// The sets (of `host_group`, or all), by kind then name, with their members.
    pub fn policies(&self, host_group: Option<&str>) -> Result<Vec<PolicyRow>> {
        const OP: &str = "policies";
        self.read(OP, |tx| {
            let mut sets = read_sets(tx, OP)?;
            if let Some(group) = host_group {
                sets.retain(|s| s.host_group == group);
            }
            Ok(sets)
        })
    }

    /// Set `name` of `kind`, if it exists.
    pub fn policy(&self, kind: PolicyKind, name: &str) -> Result<Option<PolicyRow>> {
        const OP: &str = "policy";
        self.read(OP, |tx| {
            let sql = format!("{POLICY_SELECT} WHERE kind = ?1 AND name = ?2");
            let Some(mut row) =
                tx.query_opt(OP, "policy", &sql, params![kind.as_str(), name], policy_row)?
            else {
                return Ok(None);
            };
            row.members = members_of(tx, row.id, OP)?;
            Ok(Some(row))
        })
    }

    /// The hosts VM `vm` is excluded from (all VMs' with `None`), by VM then host.
    pub fn exclusions(&self, vm: Option<&Uuid>) -> Result<Vec<Exclusion>> {
        const OP: &str = "exclusions";
        match vm {
            Some(vm) => self.conn.query(
                OP,
                "vm_host_exclusion",
                "SELECT vm, host FROM vm_host_exclusion WHERE vm = ?1 ORDER BY host",
                params![UuidText::new(vm)],
                exclusion_row,
            ),
            None => self.conn.query(
                OP,
                "vm_host_exclusion",
                "SELECT vm, host FROM vm_host_exclusion ORDER BY vm, host",
                params![],
                exclusion_row,
            ),
        }
    }

    /// The flexible capacity rows (of `host_group`, or all), by group then priority.
    pub fn flexible_capacity(&self, host_group: Option<&str>) -> Result<Vec<FlexRow>> {
        const OP: &str = "flexible_capacity";
        let mut rows = read_flexible(&self.conn, OP)?;
        if let Some(group) = host_group {
            rows.retain(|r| r.host_group == group);
        }
        Ok(rows)
    }
}

/// What the store refuses before any transaction.
fn validate_change(change: &PolicyChange) -> Result<()> {
    let members = match change {
        PolicyChange::AddSet {
            name,
            host_group,
            members,
            ..
        } => {
            non_empty("policy name", name)?;
            non_empty("policy host_group", host_group)?;
            Some(members)
        }
        PolicyChange::SetMembers { name, members, .. } => {
            non_empty("policy name", name)?;
            Some(members)
        }
        PolicyChange::SetFlexible {
            host_group,
            cpu_pct,
            memory_pct,
            ..
        } => {
            non_empty("flexible_capacity host_group", host_group)?;
            for (key, pct) in [("cpu_pct", cpu_pct), ("memory_pct", memory_pct)] {
                if let Some(p) = pct
                    && !(1..=100).contains(p)
                {
                    return Err(Error::Options {
                        key,
                        value: p.to_string(),
                        allowed: "1..=100",
                    });
                }
            }
            None
        }
        _ => None,
    };
    if let Some(members) = members {
        let mut seen = std::collections::BTreeSet::new();
        for m in members {
            if !seen.insert(*m) {
                return Err(Error::Options {
                    key: "policy members",
                    value: m.to_string(),
                    allowed: "each VM once",
                });
            }
        }
    }
    Ok(())
}

fn non_empty(key: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::Options {
            key,
            value: "\"\"".into(),
            allowed: "a non-empty name",
        });
    }
    Ok(())
}

/// The id of set `name` of `kind`, its row locked on PostgreSQL.
fn lock_set(tx: &Conn, kind: PolicyKind, name: &str, op: &'static str) -> Result<i64> {
    let lock = if tx.is_pg() { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT id FROM policy WHERE kind = ?1 AND name = ?2{lock}");
    tx.query_int(op, &sql, params![kind.as_str(), name])?
        .ok_or_else(|| Error::NotFound {
            what: kind.word(),
            key: name.to_owned(),
        })
}

fn insert_members(tx: &Conn, id: i64, members: &[Uuid], op: &'static str) -> Result<()> {
    for (position, vm) in members.iter().enumerate() {
        let position = i64::try_from(position).unwrap_or(i64::MAX);
        tx.execute(
            op,
            "INSERT INTO policy_member (policy, position, vm) VALUES (?1, ?2, ?3)",
            params![id, position, UuidText::new(vm)],
        )?;
    }
    Ok(())
}

fn apply_change(tx: &Conn, change: &PolicyChange, at: i64) -> Result<usize> {
    const OP: &str = "policy_change";
    match change {
        PolicyChange::AddSet {
            kind,
            name,
            host_group,
            members,
        } => {
            let id = tx.query_int(
                OP,
                "INSERT INTO policy (kind, name, host_group, created_ms, updated_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (kind, name) DO NOTHING RETURNING id",
                params![kind.as_str(), name, host_group, at],
            )?;
            let Some(id) = id else {
                return Err(Error::Exists {
                    what: kind.word(),
                    key: name.clone(),
                });
            };
            insert_members(tx, id, members, OP)?;
            Ok(1)
        }
        PolicyChange::SetMembers {
            kind,
            name,
            members,
        } => {
            let id = lock_set(tx, *kind, name, OP)?;
            tx.execute(
                OP,
                "DELETE FROM policy_member WHERE policy = ?1",
                params![id],
            )?;
            insert_members(tx, id, members, OP)?;
            tx.execute(
                OP,
                "UPDATE policy SET updated_ms = ?2 WHERE id = ?1",
                params![id, at],
            )?;
            Ok(1)
        }
        PolicyChange::DeleteSet { kind, name } => {
            let id = lock_set(tx, *kind, name, OP)?;
            tx.execute(OP, "DELETE FROM policy WHERE id = ?1", params![id])
        }
        PolicyChange::AddExclusions { vm, hosts } => {
            lock_vm(tx, vm, OP)?;
            let mut added = 0;
            for host in hosts {
                if !tx.exists(OP, "SELECT 1 FROM host WHERE id = ?1", params![host])? {
                    return Err(Error::NotFound {
                        what: "host",
                        key: host.to_string(),
                    });
                }
                added += tx.execute(
                    OP,
                    "INSERT INTO vm_host_exclusion (vm, host) VALUES (?1, ?2) \
                     ON CONFLICT (vm, host) DO NOTHING",
                    params![UuidText::new(vm), host],
                )?;
            }
            Ok(added)
        }
        PolicyChange::DeleteExclusions { vm, hosts } => {
            lock_vm(tx, vm, OP)?;
            let mut deleted = 0;
            for host in hosts {
                deleted += tx.execute(
                    OP,
                    "DELETE FROM vm_host_exclusion WHERE vm = ?1 AND host = ?2",
                    params![UuidText::new(vm), host],
                )?;
            }
            Ok(deleted)
        }
        PolicyChange::SetFlexible {
            host_group,
            priority,
            cpu_pct,
            memory_pct,
        } => tx.execute(
            OP,
            "INSERT INTO flexible_capacity (host_group, priority, cpu_pct, memory_pct) \
             VALUES (?1, ?2, COALESCE(?3, 100), COALESCE(?4, 100)) \
             ON CONFLICT (host_group, priority) DO UPDATE SET \
             cpu_pct = COALESCE(?3, flexible_capacity.cpu_pct), \
             memory_pct = COALESCE(?4, flexible_capacity.memory_pct)",
            params![
                host_group,
                priority.as_str(),
                cpu_pct.map(i64::from),
                memory_pct.map(i64::from)
            ],
        ),
        PolicyChange::UnsetFlexible {
            host_group,
            priority,
        } => tx.execute(
            OP,
            "DELETE FROM flexible_capacity WHERE host_group = ?1 AND priority = ?2",
            params![host_group, priority.as_str()],
        ),
    }
}

/// The VM's row must exist; locked on PostgreSQL.
fn lock_vm(tx: &Conn, vm: &Uuid, op: &'static str) -> Result<()> {
    let lock = if tx.is_pg() { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT 1 FROM vm WHERE uuid = ?1{lock}");
    if tx.exists(op, &sql, params![UuidText::new(vm)])? {
        Ok(())
    } else {
        Err(Error::NotFound {
            what: "vm",
            key: vm.to_string(),
        })
    }
}

fn read_view(tx: &Conn, op: &'static str) -> Result<PolicyView> {
    Ok(PolicyView {
        hosts: tx.query(
            op,
            "host",
            concat!(crate::store::host_select!(), " ORDER BY id"),
            params![],
            host_row,
        )?,
        vms: tx.query(
            op,
            "vm",
            concat!(crate::store::vm_select!(), " ORDER BY uuid"),
            params![],
            vm_row,
        )?,
        sets: read_sets(tx, op)?,
        exclusions: tx.query(
            op,
            "vm_host_exclusion",
            "SELECT vm, host FROM vm_host_exclusion ORDER BY vm, host",
            params![],
            exclusion_row,
        )?,
        flexible: read_flexible(tx, op)?,
    })
}

fn read_sets(tx: &Conn, op: &'static str) -> Result<Vec<PolicyRow>> {
    let sql = format!("{POLICY_SELECT} ORDER BY kind, name");
    let mut sets = tx.query(op, "policy", &sql, params![], policy_row)?;
    let members = tx.query(
        op,
        "policy_member",
        "SELECT policy, vm FROM policy_member ORDER BY policy, position",
        params![],
        |c| Ok((c.int(0)?, c.uuid(1, "vm")?)),
    )?;
    let mut by_id: std::collections::BTreeMap<i64, Vec<Uuid>> = Default::default();
    for (id, vm) in members {
        by_id.entry(id).or_default().push(vm);
    }
    for set in &mut sets {
        set.members = by_id.remove(&set.id).unwrap_or_default();
    }
    Ok(sets)
}

fn members_of(tx: &Conn, id: i64, op: &'static str) -> Result<Vec<Uuid>> {
    tx.query(
        op,
        "policy_member",
        "SELECT vm FROM policy_member WHERE policy = ?1 ORDER BY position",
        params![id],
        |c| c.uuid(0, "vm"),
    )
}

fn read_flexible(conn: &Conn, op: &'static str) -> Result<Vec<FlexRow>> {
    conn.query(
        op,
        "flexible_capacity",
        "SELECT host_group, priority, cpu_pct, memory_pct FROM flexible_capacity \
         ORDER BY host_group, CASE priority WHEN 'HIGH' THEN 0 WHEN 'MEDIUM' THEN 1 ELSE 2 END",
        params![],
        |c| {
            Ok(FlexRow {
                host_group: c.text(0)?,
                priority: c.enumeration(
                    1,
                    "priority",
                    "HIGH, MEDIUM or LOW",
                    Priority::from_text,
                )?,
                cpu_pct: percent(c, 2, "cpu_pct")?,
                memory_pct: percent(c, 3, "memory_pct")?,
            })
        },
    )
}

fn percent(c: &Columns<'_, '_>, idx: usize, column: &'static str) -> Result<u8> {
    let v = c.int(idx)?;
    u8::try_from(v)
        .ok()
        .filter(|p| (1..=100).contains(p))
        .ok_or_else(|| Error::Corrupt {
            table: "flexible_capacity",
            column,
            value: v.to_string(),
            expected: "percent 1..=100",
        })
}

fn policy_row(c: &Columns<'_, '_>) -> Result<PolicyRow> {
    Ok(PolicyRow {
        id: c.int(0)?,
        kind: c.enumeration(
            1,
            "kind",
            "COLLOCATION, ANTICOLLOCATION or WORKGROUP",
            PolicyKind::from_text,
        )?,
        name: c.text(2)?,
        host_group: c.text(3)?,
        members: Vec::new(),
        created_ms: c.int(4)?,
        updated_ms: c.int(5)?,
    })
}

fn exclusion_row(c: &Columns<'_, '_>) -> Result<Exclusion> {
    Ok(Exclusion {
        vm: c.uuid(0, "vm")?,
        host: HostId(c.int(1)?),
    })
}
