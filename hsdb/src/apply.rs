//! [`Hsdb::apply`]: a batch of health transitions in one transaction.
//!
//! This is the monitor's write path: its single writer thread drains the transitions the
//! dataplane produced and applies them, thousands at once after a mass failure. One
//! `BEGIN IMMEDIATE` … `COMMIT` per batch, so the cost of a durable commit (one fsync of
//! the WAL with `synchronous=FULL`) is paid once per batch, not once per VM.
//!
//! Rules every transition follows (docs/hsdb.md §3):
//! - a VM row is created the first time any transition names an unknown VM, with a
//!   pending DISCOVERED item (`Suspended`: state SUSPENDED; others, `Discovered` too:
//!   UNKNOWN, an unmanaged VM). Refusing would lose the whole batch for one VM the
//!   store did not know.
//! - a handshake puts a known VM in STARTED if managed, UNKNOWN if not;
//! - a VM's state change writes a pending STATE_CHANGE; re-applying the same state writes
//!   nothing (idempotent); an unreported item of the same VM and kind is updated instead
//!   of a new one added (coalescing);
//! - a known VM first seen by a monitor on another host than its `current_host` moved
//!   (live migration): pending DISCOVERED with `from_host`, its rows on the old host's
//!   monitors deleted and a FORGET_VM command queued for each of them; `Detected`,
//!   `Missing` and `Suspended` from another host than the VM's are ignored;
//! - heartbeats through one monitor end the VM's suspension on the host's others;
//! - a row the controller STOPPED (`StopWatching`) stays STOPPED through everything
//!   the monitor may still write about the VM (`Discovered`, `Detected`, `Suspended`
//!   change the VM, not the row; `Missing` is ignored) until `StartWatching` resumes
//!   it or `Forget` (or a move) deletes it; the suspension rule never touches it;
//! - a transition naming an unregistered monitor fails the batch ([`Error::UnknownHm`]):
//!   the monitor registers itself before writing, so this is a bug, not an input.
//!
//! Concurrent writers (PostgreSQL: several monitors commit at once; SQLite's write lock
//! serialises them). Before the first transition, the batch's new VMs are inserted in
//! one statement in UUID order (`ON CONFLICT (uuid) DO NOTHING RETURNING uuid`: a VM
//! another writer created first is then a known VM), and every VM the batch names is
//! locked (`SELECT … ORDER BY uuid FOR UPDATE`) and its state read, in one statement:
//! every change of a VM's state is decided by one writer at a time, from the committed
//! state, so it is recorded exactly once; batches over overlapping VMs lock them in
//! the same order and do not deadlock each other. An unreported item is coalesced into
//! only while still untagged (NeedsAttention may have tagged it meanwhile; then a new
//! item is added). A deadlock or serialization failure that still happens (with other
//! kinds of writers) rolls the batch back and [`Hsdb::write`] runs it again.
//!
//! Runs written over arrays (PostgreSQL only: every statement is a round trip there).
//! With every VM of the batch locked and its state known in memory, the common cases of
//! a mass failure and of a discovery storm need no reads, so they are written as a few
//! statements over arrays (`unnest`) per chunk instead of several round trips per
//! transition, with the same rules, order and counts as one by one:
//! - a run of `Missing`: one upsert per chunk of distinct (VM, monitor) pairs
//!   ([`BatchWriter::missing_run`]);
//! - `Discovered` and `Detected` of a VM new to the store, `Discovered` of a known VM on
//!   the monitor's host already in its alive state, `Detected` of a known VM on the
//!   monitor's host that is not SUSPENDED, and `Detected` from another host (ignored):
//!   gathered into a chunk of distinct VMs and written as at most four statements —
//!   the new VMs' DISCOVERED items, the agents' fields, the (VM, monitor) rows, the
//!   suspensions ended ([`BatchWriter::gather_heard`]). Any other transition (a move,
//!   a state change, any other kind) first writes the chunk gathered so far, then is
//!   applied alone, so items and commands keep the order of the transitions.

use std::collections::{HashMap, HashSet};

use hvha_identity::Uuid;

use crate::codec::{UuidText, bits_from_sql, bits_to_sql, opt_uuid, version_text};
use crate::control_model::CommandKind;
use crate::db::{Tx, params};
use crate::error::{Error, Result};
use crate::model::{
    Applied, HeartbeatState, HostId, InterfaceState, PendingKind, Transition, VmState,
};
use crate::store::Hsdb;

const VM_STATE: &str = "SELECT state, current_host, managed FROM vm WHERE uuid = ?1";
/// PostgreSQL: create the batch's new VMs in one statement, in UUID order; a VM another
/// writer created (or is creating: the insert waits for it) is left alone and not
/// returned. A VM created by a `Discovered` (`agent` 1) gets its agent's fields at once,
/// as that transition then writes them ([`VM_AGENT`]: same values and time).
const PG_VM_CREATE: &str = "INSERT INTO vm (uuid, current_host, home_host, state, updated_ms, \
    ostype, agent_ver_lower, agent_ver_upper) \
    SELECT n.uuid, n.host, n.host, n.state, n.at, \
    CASE WHEN n.agent = 1 THEN n.ostype END, CASE WHEN n.agent = 1 THEN n.lower END, \
    CASE WHEN n.agent = 1 THEN n.upper END \
    FROM unnest(?1::text[], ?2::bigint[], ?3::text[], ?4::bigint[], ?5::bigint[], ?6::text[], \
    ?7::text[], ?8::text[]) AS n (uuid, host, state, at, agent, ostype, lower, upper) \
    ORDER BY n.uuid COLLATE \"C\" ON CONFLICT (uuid) DO NOTHING RETURNING uuid";
/// PostgreSQL: lock every VM of the batch, in UUID order, and read its state.
const PG_VM_LOCK: &str = "SELECT uuid, state, current_host, managed FROM vm \
    WHERE uuid = ANY (?1::text[]) ORDER BY uuid FOR UPDATE";
/// PostgreSQL: the outbox lock, held to commit (docs/hsdb.md §6).
pub(crate) const PG_OUTBOX_LOCK: &str = "SELECT pg_advisory_xact_lock(?1)";
/// The advisory lock key of the outbox: `"HVHA"` then 2.
pub(crate) const OUTBOX_LOCK: i64 = 0x4856_4841_0000_0002;
const VM_INSERT: &str = "INSERT INTO vm (uuid, current_host, home_host, state, updated_ms) \
    VALUES (?1, ?2, ?2, ?3, ?4)";
const VM_SET_STATE: &str = "UPDATE vm SET state = ?2, current_host = ?3, \
    home_host = COALESCE(home_host, ?3), updated_ms = ?4 WHERE uuid = ?1";
const VM_AGENT: &str = "UPDATE vm SET ostype = ?2, agent_ver_lower = ?3, agent_ver_upper = ?4, \
    updated_ms = ?5 WHERE uuid = ?1";
const VM_DOORBELL: &str =
    "UPDATE vm SET short_msg = short_msg | ?2, updated_ms = ?3 WHERE uuid = ?1";
const PENDING_INSERT: &str = "INSERT INTO pending (tag, vm, hm, kind, code, old_state, \
    new_state, from_host, data, created_ms, updated_ms) \
    VALUES (NULL, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)";
/// The VM's unreported item of one kind, if any: later transitions coalesce into it.
const PENDING_UNREPORTED: &str =
    "SELECT id, code FROM pending WHERE vm = ?1 AND kind = ?2 AND tag IS NULL";
/// Coalesce into an unreported item: the first `old_state` and `from_host` stay, the
/// last `new_state` wins, doorbell vectors are OR-ed.
const PENDING_COALESCE: &str = "UPDATE pending SET code = ?2, new_state = ?3, data = ?4, \
    updated_ms = ?5 WHERE id = ?1 AND tag IS NULL";
/// Heartbeats are flowing (DETECTED) or stopped on purpose (SUSPENDED): no miss time. A
/// row the controller STOPPED stays STOPPED: only StartWatching resumes it.
const VM_HM_HEARD: &str = "INSERT INTO vm_hm (vm, hm, mac, hb_missed_ms, last_state, updated_ms) \
    VALUES (?1, ?2, ?3, NULL, ?4, ?5) ON CONFLICT (vm, hm) DO UPDATE SET \
    mac = COALESCE(excluded.mac, vm_hm.mac), hb_missed_ms = NULL, \
    last_state = CASE WHEN vm_hm.last_state = 'STOPPED' THEN 'STOPPED' \
        ELSE excluded.last_state END, \
    updated_ms = excluded.updated_ms";
/// Keeps the first miss time (NeedsAttention's missedHb counts from it) and never marks a
/// suspended agent, or a VM whose monitoring the controller stopped, MISSING.
const VM_HM_MISSING: &str = "INSERT INTO vm_hm (vm, hm, mac, hb_missed_ms, last_state, updated_ms) \
    VALUES (?1, ?2, NULL, ?3, 'MISSING', ?3) ON CONFLICT (vm, hm) DO UPDATE SET \
    hb_missed_ms = COALESCE(vm_hm.hb_missed_ms, excluded.hb_missed_ms), \
    last_state = 'MISSING', updated_ms = excluded.updated_ms \
    WHERE vm_hm.last_state NOT IN ('SUSPENDED', 'STOPPED')";
/// PostgreSQL: [`VM_HM_MISSING`] for many (VM, monitor) pairs, all distinct.
const PG_VM_HM_MISSING_MANY: &str = "INSERT INTO vm_hm (vm, hm, mac, hb_missed_ms, last_state, \
    updated_ms) SELECT n.vm, n.hm, NULL, n.at, 'MISSING', n.at \
    FROM unnest(?1::text[], ?2::text[], ?3::bigint[]) AS n (vm, hm, at) \
    ON CONFLICT (vm, hm) DO UPDATE SET \
    hb_missed_ms = COALESCE(vm_hm.hb_missed_ms, excluded.hb_missed_ms), \
    last_state = 'MISSING', updated_ms = excluded.updated_ms \
    WHERE vm_hm.last_state NOT IN ('SUSPENDED', 'STOPPED')";
/// PostgreSQL: the pending DISCOVERED items of VMs new to the store (`old_state` NULL,
/// nothing to coalesce into: the VM was created by this transaction and `pending.vm`
/// references `vm`), in the order given (ids increase as one by one).
const PG_PENDING_DISCOVERED_MANY: &str = "INSERT INTO pending (tag, vm, hm, kind, code, \
    old_state, new_state, from_host, data, created_ms, updated_ms) \
    SELECT NULL, n.vm, n.hm, ?4, 0, NULL, ?5, NULL, '', n.at, n.at \
    FROM unnest(?1::text[], ?2::text[], ?3::bigint[]) WITH ORDINALITY AS n (vm, hm, at, i) \
    ORDER BY n.i";
/// PostgreSQL: [`VM_AGENT`] for many VMs, all distinct.
const PG_VM_AGENT_MANY: &str = "UPDATE vm SET ostype = n.ostype, agent_ver_lower = n.lower, \
    agent_ver_upper = n.upper, updated_ms = n.at \
    FROM unnest(?1::text[], ?2::text[], ?3::text[], ?4::text[], ?5::bigint[]) \
    AS n (uuid, ostype, lower, upper, at) WHERE vm.uuid = n.uuid";
/// PostgreSQL: [`VM_HM_HEARD`] (state DETECTED) for many (VM, monitor) pairs of distinct
/// VMs; an empty MAC is none (`Detected` carries no MAC).
const PG_VM_HM_HEARD_MANY: &str = "INSERT INTO vm_hm (vm, hm, mac, hb_missed_ms, last_state, \
    updated_ms) SELECT n.vm, n.hm, NULLIF(n.mac, ''), NULL, ?5, n.at \
    FROM unnest(?1::text[], ?2::text[], ?3::text[], ?4::bigint[]) AS n (vm, hm, mac, at) \
    ON CONFLICT (vm, hm) DO UPDATE SET \
    mac = COALESCE(excluded.mac, vm_hm.mac), hb_missed_ms = NULL, \
    last_state = CASE WHEN vm_hm.last_state = 'STOPPED' THEN 'STOPPED' \
        ELSE excluded.last_state END, \
    updated_ms = excluded.updated_ms";
/// PostgreSQL: [`VM_HM_END_SUSPENSION`] for many VMs, all distinct (each row of another
/// monitor is matched by one VM only).
const PG_VM_HM_END_SUSPENSION_MANY: &str = "UPDATE vm_hm SET last_state = 'MISSING', \
    hb_missed_ms = n.at, updated_ms = n.at \
    FROM unnest(?1::text[], ?2::text[], ?3::bigint[], ?4::bigint[]) AS n (vm, hm, at, host) \
    WHERE vm_hm.vm = n.vm AND vm_hm.hm <> n.hm AND vm_hm.last_state = 'SUSPENDED' \
    AND vm_hm.hm IN (SELECT uuid FROM hm WHERE host_id = n.host)";
/// StopWatching: the row, if any, becomes STOPPED; a miss it held ends.
const VM_HM_STOP: &str = "UPDATE vm_hm SET last_state = 'STOPPED', hb_missed_ms = NULL, \
    updated_ms = ?3 WHERE vm = ?1 AND hm = ?2 AND last_state <> 'STOPPED'";
/// StartWatching: a STOPPED row is watched again, nothing missed yet.
const VM_HM_START: &str = "UPDATE vm_hm SET last_state = 'DETECTED', hb_missed_ms = NULL, \
    updated_ms = ?3 WHERE vm = ?1 AND hm = ?2 AND last_state = 'STOPPED'";
/// A Detected or Discovered from one monitor of the host ends a suspension: another
/// monitor of that host still SUSPENDED has not heard the agent since it came back, so
/// its row counts as a miss from now (it no longer blocks "missed on every monitor").
const VM_HM_END_SUSPENSION: &str = "UPDATE vm_hm SET last_state = 'MISSING', \
    hb_missed_ms = ?3, updated_ms = ?3 WHERE vm = ?1 AND hm <> ?2 \
    AND last_state = 'SUSPENDED' AND hm IN (SELECT uuid FROM hm WHERE host_id = ?4)";
/// The VM's rows on monitors of other hosts than `?2`: retired after a move.
const VM_HM_ELSEWHERE: &str = "SELECT m.hm FROM vm_hm m JOIN hm h ON h.uuid = m.hm \
    WHERE m.vm = ?1 AND h.host_id <> ?2";
const VM_HM_DELETE: &str = "DELETE FROM vm_hm WHERE vm = ?1 AND hm = ?2";
const HM_HOST: &str = "SELECT host_id FROM hm WHERE uuid = ?1";
const HM_HEARTBEAT: &str = "UPDATE hm SET last_hb_ms = ?2 WHERE uuid = ?1";
const HM_EVENT: &str = "UPDATE hm SET state = ?2, reason = ?3, has_data = 1 WHERE uuid = ?1";
const HM_HAS_DATA: &str = "UPDATE hm SET has_data = 1 WHERE uuid = ?1";
const HM_INTERFACE_STATE: &str = "SELECT state FROM hm_interface WHERE hm = ?1 AND name = ?2";
const HM_INTERFACE_SET: &str = "INSERT INTO hm_interface (hm, name, state, changed_ms) \
    VALUES (?1, ?2, ?3, ?4) ON CONFLICT (hm, name) DO UPDATE SET \
    state = excluded.state, changed_ms = excluded.changed_ms";
const EVENT_INSERT: &str =
    "INSERT INTO event (kind, vm, hm, text, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)";

impl Hsdb {
    /// Apply `batch` in order, in one transaction: all of it or, on error, none of it.
    ///
    /// See the module documentation for the rules; docs/hsdb.md for each transition.
    pub fn apply(&mut self, batch: &[Transition]) -> Result<Applied> {
        if batch.is_empty() {
            return Ok(Applied::default());
        }
        self.write("apply", |tx| {
            let mut applied = Applied::default();
            let mut writer = BatchWriter {
                tx,
                applied: &mut applied,
                monitors: Vec::new(),
                known: None,
                fresh: HashSet::new(),
                outbox_locked: false,
                heard: HeardChunk::default(),
            };
            if tx.is_pg() {
                writer.lock_batch(batch)?;
            }
            let batching = writer.known.is_some() && batching();
            let mut index = 0;
            while let Some(transition) = batch.get(index) {
                if batching {
                    // PostgreSQL: a run of Missing (a mass failure) is written in a few
                    // statements instead of one round trip per VM.
                    if matches!(transition, Transition::Missing { .. }) {
                        writer.flush_heard()?;
                        let run = batch[index..]
                            .iter()
                            .take_while(|t| matches!(t, Transition::Missing { .. }))
                            .count();
                        writer.missing_run(index, &batch[index..index + run])?;
                        index += run;
                        continue;
                    }
                    // So is a run of Discovered / Detected of the common cases (a
                    // discovery storm): gathered, then written per chunk.
                    if writer.gather_heard(index, transition)? {
                        index += 1;
                        continue;
                    }
                    writer.flush_heard()?;
                }
                writer
                    .apply(transition)
                    .map_err(|failure| failure.into_error(index, transition.kind()))?;
                index += 1;
            }
            writer.flush_heard()?;
            Ok(applied)
        })
    }
}

/// Whether runs of transitions are written over arrays on PostgreSQL (always, outside
/// tests; a test may ask for the per-transition path, its reference).
#[cfg(not(test))]
fn batching() -> bool {
    true
}

#[cfg(test)]
std::thread_local! {
    static PER_TRANSITION: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static GATHERED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Tests: transitions this thread wrote over arrays so far (runs of `Missing`, of
/// `Discovered` / `Detected`).
#[cfg(test)]
pub(crate) fn gathered() -> usize {
    GATHERED.with(std::cell::Cell::get)
}

/// Count `n` transitions written over arrays (tests).
fn count_gathered(n: usize) {
    #[cfg(test)]
    GATHERED.with(|g| g.set(g.get() + n));
    #[cfg(not(test))]
    let _ = n;
}

#[cfg(test)]
fn batching() -> bool {
    !PER_TRANSITION.with(std::cell::Cell::get)
}

/// Tests: run `f` with every transition applied one by one (no array statements), the
/// reference the batched paths must equal.
#[cfg(test)]
pub(crate) fn per_transition<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            PER_TRANSITION.with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(PER_TRANSITION.with(|p| p.replace(true)));
    f()
}

/// Why one transition failed.
enum Failure {
    UnknownHm(Uuid),
    Db(Error),
}

impl Failure {
    fn into_error(self, index: usize, kind: &'static str) -> Error {
        match self {
            Failure::UnknownHm(hm) => Error::UnknownHm { index, hm },
            Failure::Db(Error::Sql { source, .. }) => Error::Apply {
                index,
                kind,
                source,
            },
            Failure::Db(e) => e,
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Db(e)
    }
}

type Step<T = ()> = std::result::Result<T, Failure>;

const OP: &str = "apply";

/// The state of one `apply` call.
struct BatchWriter<'t, 'c, 'a> {
    tx: &'t Tx<'c>,
    applied: &'a mut Applied,
    /// Monitors already looked up in this batch, with their host: usually one or two.
    monitors: Vec<(Uuid, HostId)>,
    /// PostgreSQL: the state of every VM of the batch, read under its row lock by
    /// [`BatchWriter::lock_batch`] and kept up to date by the batch's own writes; `None`
    /// on SQLite, which reads the row at each transition (its write lock covers all).
    known: Option<HashMap<Uuid, KnownVm>>,
    /// PostgreSQL: VMs [`BatchWriter::lock_batch`] created whose first transition has
    /// not been applied yet (it adds their DISCOVERED item).
    fresh: HashSet<Uuid>,
    /// PostgreSQL: the outbox lock is held.
    outbox_locked: bool,
    /// PostgreSQL: the `Discovered` / `Detected` gathered and not written yet.
    heard: HeardChunk,
}

/// PostgreSQL: what a chunk of `Discovered` / `Detected` of distinct VMs writes, as the
/// columns of array statements ([`BatchWriter::gather_heard`]).
#[derive(Default)]
struct HeardChunk {
    /// The batch index of the first transition gathered (errors name it).
    first: usize,
    /// The kind of that transition.
    kind: &'static str,
    /// The VMs of the chunk: a VM named again starts a new chunk.
    vms: HashSet<Uuid>,
    /// Pending DISCOVERED items of VMs new to the store: VM, monitor, time.
    item_vm: Vec<String>,
    item_hm: Vec<String>,
    item_at: Vec<i64>,
    /// `Discovered`: the agent's fields (VM, ostype, versions, time).
    agent_vm: Vec<String>,
    agent_ostype: Vec<String>,
    agent_lower: Vec<String>,
    agent_upper: Vec<String>,
    agent_at: Vec<i64>,
    /// (VM, monitor) rows heard: VM, monitor, MAC (empty: none), time.
    heard_vm: Vec<String>,
    heard_hm: Vec<String>,
    heard_mac: Vec<String>,
    heard_at: Vec<i64>,
    /// Suspensions ended on the host's other monitors: VM, monitor, time, host.
    end_vm: Vec<String>,
    end_hm: Vec<String>,
    end_at: Vec<i64>,
    end_host: Vec<i64>,
}

impl BatchWriter<'_, '_, '_> {
    /// PostgreSQL, before the first transition: create the batch's new VMs and lock
    /// every VM it names, each in one statement and in UUID order (module docs).
    fn lock_batch(&mut self, batch: &[Transition]) -> Result<()> {
        // The first transition that would create each VM, in batch order.
        let mut creators: HashMap<Uuid, (HostId, VmState, i64, usize)> = HashMap::new();
        let mut named: HashSet<Uuid> = HashSet::new();
        for (index, transition) in batch.iter().enumerate() {
            let (vm, hm, state, at) = match transition {
                Transition::Discovered { vm, hm, at, .. }
                | Transition::Detected { vm, hm, at }
                | Transition::Missing { vm, hm, at }
                | Transition::Doorbell { vm, hm, at, .. } => (vm, hm, VmState::Unknown, *at),
                Transition::Suspended { vm, hm, at } => (vm, hm, VmState::Suspended, *at),
                Transition::StopWatching { vm, hm, .. }
                | Transition::StartWatching { vm, hm, .. }
                | Transition::Forget { vm, hm, .. } => {
                    named.insert(*vm);
                    self.host_of(hm)
                        .map_err(|f| f.into_error(index, transition.kind()))?;
                    continue;
                }
                Transition::HmHeartbeat { hm, .. }
                | Transition::HmEvent { hm, .. }
                | Transition::HmInterface { hm, .. } => {
                    self.host_of(hm)
                        .map_err(|f| f.into_error(index, transition.kind()))?;
                    continue;
                }
                Transition::Event { .. } => continue,
            };
            let host = self
                .host_of(hm)
                .map_err(|f| f.into_error(index, transition.kind()))?;
            named.insert(*vm);
            creators.entry(*vm).or_insert((host, state, at, index));
        }
        let mut uuids = Vec::with_capacity(creators.len());
        let mut hosts = Vec::with_capacity(creators.len());
        let mut states = Vec::with_capacity(creators.len());
        let mut ats = Vec::with_capacity(creators.len());
        let mut agents: Vec<i64> = Vec::with_capacity(creators.len());
        let mut ostypes = Vec::with_capacity(creators.len());
        let mut lowers = Vec::with_capacity(creators.len());
        let mut uppers = Vec::with_capacity(creators.len());
        for (vm, (host, state, at, index)) in &creators {
            uuids.push(vm.to_string());
            hosts.push(host.0);
            states.push(state.as_str().to_owned());
            ats.push(*at);
            if let Some(Transition::Discovered {
                ostype,
                ver_lower,
                ver_upper,
                ..
            }) = batch.get(*index)
            {
                agents.push(1);
                ostypes.push(ostype.clone());
                lowers.push(version_text(*ver_lower));
                uppers.push(version_text(*ver_upper));
            } else {
                agents.push(0);
                ostypes.push(String::new());
                lowers.push(String::new());
                uppers.push(String::new());
            }
        }
        if !uuids.is_empty() {
            let created = self.tx.query(
                OP,
                "vm",
                PG_VM_CREATE,
                params![uuids, hosts, states, ats, agents, ostypes, lowers, uppers],
                |c| c.uuid(0, "uuid"),
            )?;
            self.fresh.extend(created);
        }
        let mut all: Vec<String> = named.iter().map(Uuid::to_string).collect();
        all.sort_unstable();
        let rows = self.tx.query(OP, "vm", PG_VM_LOCK, params![all], |c| {
            Ok((
                c.uuid(0, "uuid")?,
                KnownVm::decode(&c.text(1)?, c.opt_int(2)?, c.int(3)?),
            ))
        })?;
        self.known = Some(rows.into_iter().collect());
        Ok(())
    }

    fn apply(&mut self, transition: &Transition) -> Step {
        match transition {
            Transition::Discovered {
                vm,
                hm,
                mac,
                ostype,
                ver_lower,
                ver_upper,
                at,
            } => {
                let host = self.host_of(hm)?;
                let vm_text = UuidText::new(vm);
                let fresh = match self.vm_state(vm)? {
                    // A VM first seen is not managed yet: UNKNOWN, which NeedsAttention
                    // reports as discoveryInfo UNMANAGED (seed 004 L7533-7564).
                    None => {
                        self.create_vm(vm, hm, host, VmState::Unknown, *at)?;
                        true
                    }
                    Some(known) => {
                        if known.host.is_some_and(|h| h != host) {
                            self.retire_elsewhere(&vm_text, vm, host, *at)?;
                        }
                        self.enter_state(vm, hm, host, &known, known.alive(), *at)?;
                        false
                    }
                };
                self.tx.execute(
                    OP,
                    VM_AGENT,
                    params![
                        vm_text,
                        ostype,
                        version_text(*ver_lower),
                        version_text(*ver_upper),
                        at
                    ],
                )?;
                self.heard(
                    &vm_text,
                    hm,
                    Some(mac.to_string()),
                    HeartbeatState::Detected,
                    *at,
                )?;
                if !fresh {
                    // A new VM has no row on another monitor.
                    self.end_suspension(&vm_text, hm, host, *at)?;
                }
                self.applied.discovered += 1;
            }
            Transition::Detected { vm, hm, at } => {
                let host = self.host_of(hm)?;
                let vm_text = UuidText::new(vm);
                self.applied.detected += 1;
                match self.vm_state(vm)? {
                    None => self.create_vm(vm, hm, host, VmState::Unknown, *at)?,
                    Some(known) if known.elsewhere(host) => {
                        self.applied.elsewhere_ignored += 1;
                        return Ok(());
                    }
                    Some(known) if known.state == VmState::Suspended => {
                        self.enter_state(vm, hm, host, &known, known.alive(), *at)?;
                    }
                    Some(_) => {}
                }
                self.heard(&vm_text, hm, None, HeartbeatState::Detected, *at)?;
                self.end_suspension(&vm_text, hm, host, *at)?;
            }
            Transition::Missing { vm, hm, at } => {
                let host = self.host_of(hm)?;
                let vm_text = UuidText::new(vm);
                self.applied.missing += 1;
                match self.vm_state(vm)? {
                    None => self.create_vm(vm, hm, host, VmState::Unknown, *at)?,
                    Some(known) if known.elsewhere(host) => {
                        self.applied.elsewhere_ignored += 1;
                        return Ok(());
                    }
                    Some(_) => {}
                }
                let changed =
                    self.tx
                        .execute(OP, VM_HM_MISSING, params![vm_text, UuidText::new(hm), at])?;
                if changed == 0 {
                    self.applied.missing_ignored += 1;
                }
            }
            Transition::Suspended { vm, hm, at } => {
                let host = self.host_of(hm)?;
                let vm_text = UuidText::new(vm);
                self.applied.suspended += 1;
                match self.vm_state(vm)? {
                    None => self.create_vm(vm, hm, host, VmState::Suspended, *at)?,
                    // A late SHDN through the host the VM left must not move it back:
                    // only Discovered moves a VM.
                    Some(known) if known.elsewhere(host) => {
                        self.applied.elsewhere_ignored += 1;
                        return Ok(());
                    }
                    Some(known) => {
                        self.enter_state(vm, hm, host, &known, VmState::Suspended, *at)?;
                    }
                }
                self.heard(&vm_text, hm, None, HeartbeatState::Suspended, *at)?;
            }
            Transition::Doorbell { vm, hm, vector, at } => {
                let host = self.host_of(hm)?;
                let vm_text = UuidText::new(vm);
                self.ensure_vm(vm, hm, host, *at)?;
                self.tx
                    .execute(OP, VM_DOORBELL, params![vm_text, bits_to_sql(*vector), at])?;
                self.vm_item(vm, hm, Item::doorbell(*vector), *at)?;
                self.applied.doorbells += 1;
            }
            Transition::HmHeartbeat { hm, at } => {
                self.host_of(hm)?;
                self.tx
                    .execute(OP, HM_HEARTBEAT, params![UuidText::new(hm), at])?;
                self.applied.hm_heartbeats += 1;
            }
            Transition::HmEvent {
                hm,
                state,
                reason,
                text,
                at,
            } => {
                self.host_of(hm)?;
                self.tx.execute(
                    OP,
                    HM_EVENT,
                    params![UuidText::new(hm), state.as_str(), *reason],
                )?;
                self.hm_item(hm, u64::from(*reason), text, *at)?;
                self.applied.hm_events += 1;
            }
            Transition::HmInterface {
                hm,
                interface,
                state,
                at,
            } => {
                self.host_of(hm)?;
                let before: Option<String> = self.tx.query_opt(
                    OP,
                    "hm_interface",
                    HM_INTERFACE_STATE,
                    params![UuidText::new(hm), interface],
                    |c| c.text(0),
                )?;
                let changed = match before.as_deref() {
                    Some(text) => text != state.as_str(),
                    None => true,
                };
                if changed {
                    self.tx.execute(
                        OP,
                        HM_INTERFACE_SET,
                        params![UuidText::new(hm), interface, state.as_str(), at],
                    )?;
                }
                // A change is an event for the controller; so is a first row that is
                // DOWN (a monitor starting deaf). A first row UP is the normal start.
                if changed && (before.is_some() || *state == InterfaceState::Down) {
                    let text = format!(
                        "EVENT_TYPE=ADAPTER_{}\nINTERFACE_NAME={interface}\n",
                        state.as_str()
                    );
                    self.tx
                        .execute(OP, HM_HAS_DATA, params![UuidText::new(hm)])?;
                    self.hm_item(hm, 0, &text, *at)?;
                }
                self.applied.hm_interfaces += 1;
            }
            Transition::StopWatching { vm, hm, at } => {
                self.applied.stop_watching += 1;
                self.applied.watching_stopped += self.set_watching(VM_HM_STOP, vm, hm, *at)?;
            }
            Transition::StartWatching { vm, hm, at } => {
                self.applied.start_watching += 1;
                self.applied.watching_started += self.set_watching(VM_HM_START, vm, hm, *at)?;
            }
            Transition::Forget { vm, hm, at: _ } => {
                self.host_of(hm)?;
                self.applied.forget += 1;
                self.applied.vm_hm_forgotten += self.tx.execute(
                    OP,
                    VM_HM_DELETE,
                    params![UuidText::new(vm), UuidText::new(hm)],
                )?;
            }
            Transition::Event {
                kind,
                vm,
                hm,
                text,
                at,
            } => {
                if self.tx.is_pg() && !self.outbox_locked {
                    self.tx
                        .query_opt(OP, "", PG_OUTBOX_LOCK, params![OUTBOX_LOCK], |_| Ok(()))?;
                    self.outbox_locked = true;
                }
                self.tx.execute(
                    OP,
                    EVENT_INSERT,
                    params![kind, opt_uuid(vm.as_ref()), opt_uuid(hm.as_ref()), text, at],
                )?;
                self.applied.events += 1;
            }
        }
        Ok(())
    }

    /// PostgreSQL: gather `transition` into the chunk of `Discovered` / `Detected` if it
    /// is one of the cases written over arrays; `false` (nothing done) for any other,
    /// which the caller applies one by one after [`BatchWriter::flush_heard`].
    ///
    /// Gathered (each with the counts and writes of [`BatchWriter::apply`]):
    /// - `Discovered` or `Detected` of a VM new to the store (created by
    ///   [`BatchWriter::lock_batch`], this its first transition): its DISCOVERED item
    ///   (the VM has no item to coalesce into), its row on the monitor; no suspension to
    ///   end (it has no other row). (`Discovered`: the agent's fields were written when
    ///   `lock_batch` created the VM.)
    /// - `Discovered` of a known VM on the monitor's host (or on none) already in its
    ///   alive state: the agent's fields, the row, the suspension ended on the host's
    ///   other monitors — no state change, no item;
    /// - `Detected` of a known VM on the monitor's host, not SUSPENDED: the row and the
    ///   suspension ended;
    /// - `Detected` from another host than the VM's: ignored, counted.
    ///
    /// Anything else — a move, a state change, a VM pruned since `lock_batch` — goes one
    /// by one. A chunk holds each VM once (every statement then changes a row at most
    /// once, and the rows of different VMs are independent, so the order of the chunk's
    /// statements is that of each VM's transition); a VM named again ends the chunk.
    fn gather_heard(&mut self, index: usize, transition: &Transition) -> Result<bool> {
        let (vm, hm, at, agent) = match transition {
            Transition::Discovered {
                vm,
                hm,
                mac,
                ostype,
                ver_lower,
                ver_upper,
                at,
            } => (vm, hm, *at, Some((mac, ostype, ver_lower, ver_upper))),
            Transition::Detected { vm, hm, at } => (vm, hm, *at, None),
            _ => return Ok(false),
        };
        let fail = |f: Failure| f.into_error(index, transition.kind());
        let host = self.host_of(hm).map_err(fail)?;
        if self.heard.vms.contains(vm) {
            self.flush_heard()?;
        }
        let fresh = match self.vm_state(vm).map_err(fail)? {
            None if self.fresh.contains(vm) => true,
            None => return Ok(false),
            Some(known) if agent.is_none() && known.elsewhere(host) => {
                self.applied.detected += 1;
                self.applied.elsewhere_ignored += 1;
                return Ok(true);
            }
            Some(known) if known.elsewhere(host) => return Ok(false),
            Some(known) if agent.is_some() && known.state != known.alive() => return Ok(false),
            Some(known) if known.state == VmState::Suspended => return Ok(false),
            Some(_) => false,
        };
        let chunk = &mut self.heard;
        if chunk.vms.is_empty() {
            chunk.first = index;
            chunk.kind = transition.kind();
        }
        chunk.vms.insert(*vm);
        let vm_text = vm.to_string();
        let hm_text = hm.to_string();
        if fresh {
            chunk.item_vm.push(vm_text.clone());
            chunk.item_hm.push(hm_text.clone());
            chunk.item_at.push(at);
        }
        // A new VM's `Discovered` created it (the first transition naming it), with its
        // agent's fields (`PG_VM_CREATE`).
        if let Some((_, ostype, lower, upper)) = agent.filter(|_| !fresh) {
            chunk.agent_vm.push(vm_text.clone());
            chunk.agent_ostype.push(ostype.clone());
            chunk.agent_lower.push(version_text(*lower));
            chunk.agent_upper.push(version_text(*upper));
            chunk.agent_at.push(at);
        }
        chunk.heard_vm.push(vm_text.clone());
        chunk.heard_hm.push(hm_text.clone());
        chunk
            .heard_mac
            .push(agent.map(|(mac, ..)| mac.to_string()).unwrap_or_default());
        chunk.heard_at.push(at);
        if !fresh {
            chunk.end_vm.push(vm_text);
            chunk.end_hm.push(hm_text);
            chunk.end_at.push(at);
            chunk.end_host.push(host.0);
        }
        if fresh {
            // As `create_vm`: the row exists (`lock_batch`), now a known UNKNOWN VM.
            self.fresh.remove(vm);
            self.remember(vm, VmState::Unknown, host, Some(false));
            self.applied.vms_created += 1;
            self.applied.pending_added += 1;
        }
        if agent.is_some() {
            self.applied.discovered += 1;
        } else {
            self.applied.detected += 1;
        }
        count_gathered(1);
        Ok(true)
    }

    /// Write the gathered chunk ([`BatchWriter::gather_heard`]): at most four
    /// statements, in the order one transition writes them.
    fn flush_heard(&mut self) -> Result<()> {
        if self.heard.vms.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.heard);
        let fail = |e: Error| Failure::Db(e).into_error(chunk.first, chunk.kind);
        if !chunk.item_vm.is_empty() {
            self.tx
                .execute(
                    OP,
                    PG_PENDING_DISCOVERED_MANY,
                    params![
                        chunk.item_vm,
                        chunk.item_hm,
                        chunk.item_at,
                        PendingKind::Discovered.as_str(),
                        VmState::Unknown.as_str()
                    ],
                )
                .map_err(fail)?;
        }
        if !chunk.agent_vm.is_empty() {
            self.tx
                .execute(
                    OP,
                    PG_VM_AGENT_MANY,
                    params![
                        chunk.agent_vm,
                        chunk.agent_ostype,
                        chunk.agent_lower,
                        chunk.agent_upper,
                        chunk.agent_at
                    ],
                )
                .map_err(fail)?;
        }
        if !chunk.heard_vm.is_empty() {
            self.tx
                .execute(
                    OP,
                    PG_VM_HM_HEARD_MANY,
                    params![
                        chunk.heard_vm,
                        chunk.heard_hm,
                        chunk.heard_mac,
                        chunk.heard_at,
                        HeartbeatState::Detected.as_str()
                    ],
                )
                .map_err(fail)?;
        }
        if !chunk.end_vm.is_empty() {
            self.applied.suspensions_ended += self
                .tx
                .execute(
                    OP,
                    PG_VM_HM_END_SUSPENSION_MANY,
                    params![chunk.end_vm, chunk.end_hm, chunk.end_at, chunk.end_host],
                )
                .map_err(fail)?;
        }
        Ok(())
    }

    /// PostgreSQL: consecutive `Missing` transitions (`run`, from `first` in the batch)
    /// with the semantics of applying them one by one: VMs created and moves ignored as
    /// usual, then the (VM, monitor) rows upserted in chunks of one statement each
    /// ([`PG_VM_HM_MISSING_MANY`]: [`VM_HM_MISSING`] over arrays), a chunk ending where
    /// a (VM, monitor) pair repeats (one statement may not change a row twice).
    fn missing_run(&mut self, first: usize, run: &[Transition]) -> Result<()> {
        let mut chunk: Vec<(String, String, i64)> = Vec::new();
        let mut pairs: HashSet<(Uuid, Uuid)> = HashSet::new();
        let mut chunk_start = first;
        for (offset, transition) in run.iter().enumerate() {
            let index = first + offset;
            let Transition::Missing { vm, hm, at } = transition else {
                continue;
            };
            let step = |w: &mut Self| -> Step<bool> {
                let host = w.host_of(hm)?;
                w.applied.missing += 1;
                match w.vm_state(vm)? {
                    None => w.create_vm(vm, hm, host, VmState::Unknown, *at)?,
                    Some(known) if known.elsewhere(host) => {
                        w.applied.elsewhere_ignored += 1;
                        return Ok(false);
                    }
                    Some(_) => {}
                }
                Ok(true)
            };
            if !step(self).map_err(|f| f.into_error(index, transition.kind()))? {
                continue;
            }
            if !pairs.insert((*vm, *hm)) {
                self.flush_missing(chunk_start, &mut chunk)?;
                pairs.clear();
                pairs.insert((*vm, *hm));
                chunk_start = index;
            }
            chunk.push((vm.to_string(), hm.to_string(), *at));
            count_gathered(1);
        }
        self.flush_missing(chunk_start, &mut chunk)
    }

    /// Upsert the MISSING rows of `chunk` in one statement; those not changed (the
    /// monitor has the VM SUSPENDED or STOPPED) are counted as ignored.
    fn flush_missing(
        &mut self,
        index: usize,
        chunk: &mut Vec<(String, String, i64)>,
    ) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let (vms, rest): (Vec<String>, Vec<(String, i64)>) =
            chunk.drain(..).map(|(vm, hm, at)| (vm, (hm, at))).unzip();
        let (hms, ats): (Vec<String>, Vec<i64>) = rest.into_iter().unzip();
        let changed = self
            .tx
            .execute(OP, PG_VM_HM_MISSING_MANY, params![vms, hms, ats])
            .map_err(|e| Failure::Db(e).into_error(index, "Missing"))?;
        self.applied.missing_ignored += vms.len().saturating_sub(changed);
        Ok(())
    }

    /// The host of monitor `hm`; [`Failure::UnknownHm`] if it is not registered.
    fn host_of(&mut self, hm: &Uuid) -> Step<HostId> {
        if let Some((_, host)) = self.monitors.iter().find(|(uuid, _)| uuid == hm) {
            return Ok(*host);
        }
        let host = self
            .tx
            .query_int(OP, HM_HOST, params![UuidText::new(hm)])?
            .map(HostId)
            .ok_or(Failure::UnknownHm(*hm))?;
        self.monitors.push((*hm, host));
        Ok(host)
    }

    /// The VM's state, current host and managed flag, if the VM is known.
    fn vm_state(&mut self, vm: &Uuid) -> Step<Option<KnownVm>> {
        if let Some(known) = &self.known {
            // PostgreSQL: read under the row lock before the first transition. A VM
            // created for this batch is unknown until its first transition.
            if self.fresh.contains(vm) {
                return Ok(None);
            }
            return Ok(known.get(vm).copied());
        }
        Ok(self
            .tx
            .query_opt(OP, "vm", VM_STATE, params![UuidText::new(vm)], |c| {
                Ok(KnownVm::decode(&c.text(0)?, c.opt_int(1)?, c.int(2)?))
            })?)
    }

    /// Record what the batch wrote to a VM's row (PostgreSQL's view of the batch).
    fn remember(&mut self, vm: &Uuid, state: VmState, host: HostId, managed: Option<bool>) {
        if let Some(known) = &mut self.known {
            let entry = known.entry(*vm).or_insert(KnownVm {
                state,
                host: Some(host),
                managed: false,
            });
            entry.state = state;
            entry.host = Some(host);
            if let Some(managed) = managed {
                entry.managed = managed;
            }
        }
    }

    /// Create the VM in `state`, with its pending DISCOVERED item. (PostgreSQL: the row
    /// exists already, inserted by [`BatchWriter::lock_batch`].)
    fn create_vm(&mut self, vm: &Uuid, hm: &Uuid, host: HostId, state: VmState, at: i64) -> Step {
        // PostgreSQL: a VM `lock_batch` created exists already. (One that existed then
        // and is gone now, pruned in between, is inserted here like on SQLite.)
        if !self.fresh.remove(vm) {
            self.tx.execute(
                OP,
                VM_INSERT,
                params![UuidText::new(vm), host, state.as_str(), at],
            )?;
        }
        self.remember(vm, state, host, Some(false));
        self.applied.vms_created += 1;
        self.vm_item(
            vm,
            hm,
            Item::state(PendingKind::Discovered, None, state, None),
            at,
        )
    }

    /// Make sure the VM exists: an unknown one is created UNKNOWN.
    fn ensure_vm(&mut self, vm: &Uuid, hm: &Uuid, host: HostId, at: i64) -> Step {
        if self.vm_state(vm)?.is_none() {
            self.create_vm(vm, hm, host, VmState::Unknown, at)?;
        }
        Ok(())
    }

    /// Move the known VM to `state` on `host`; a pending STATE_CHANGE, or DISCOVERED
    /// with `from_host` when the host changed.
    fn enter_state(
        &mut self,
        vm: &Uuid,
        hm: &Uuid,
        host: HostId,
        known: &KnownVm,
        state: VmState,
        at: i64,
    ) -> Step {
        let moved = known.host.is_some_and(|h| h != host);
        if known.state == state && !moved {
            return Ok(());
        }
        self.tx.execute(
            OP,
            VM_SET_STATE,
            params![UuidText::new(vm), state.as_str(), host, at],
        )?;
        self.remember(vm, state, host, None);
        let old = Some(known.state);
        match known.host {
            Some(from) if moved => self.vm_item(
                vm,
                hm,
                Item::state(PendingKind::Discovered, old, state, Some(from)),
                at,
            ),
            _ => self.vm_item(
                vm,
                hm,
                Item::state(PendingKind::StateChange, old, state, None),
                at,
            ),
        }
    }

    /// The VM moved to `host`: its rows on monitors of other hosts go (so their counts
    /// and NeedsAttention no longer see it there), and each of those monitors is told
    /// to forget it (FORGET_VM), in this same transaction.
    fn retire_elsewhere(&mut self, vm: &UuidText, uuid: &Uuid, host: HostId, at: i64) -> Step {
        let others = self
            .tx
            .query_texts(OP, VM_HM_ELSEWHERE, params![vm, host])?;
        for other in others {
            self.tx.execute(OP, VM_HM_DELETE, params![vm, other])?;
            self.applied.vm_hm_retired += 1;
            let Ok(monitor) = Uuid::parse(other.as_bytes()) else {
                continue;
            };
            crate::admin::insert_command(self.tx, &monitor, CommandKind::ForgetVm, uuid, None, at)
                .map_err(|e| match e {
                    Error::NotFound { .. } => Failure::UnknownHm(monitor),
                    e => Failure::Db(e),
                })?;
            self.applied.commands_queued += 1;
        }
        Ok(())
    }

    /// Stop or start monitor `hm`'s watching of `vm` (`sql`: [`VM_HM_STOP`] or
    /// [`VM_HM_START`]) on its existing row; the rows changed.
    fn set_watching(&mut self, sql: &str, vm: &Uuid, hm: &Uuid, at: i64) -> Step<usize> {
        self.host_of(hm)?;
        Ok(self
            .tx
            .execute(OP, sql, params![UuidText::new(vm), UuidText::new(hm), at])?)
    }

    /// Heartbeats from `hm` end the VM's suspension on the other monitors of its host.
    fn end_suspension(&mut self, vm: &UuidText, hm: &Uuid, host: HostId, at: i64) -> Step {
        let n = self.tx.execute(
            OP,
            VM_HM_END_SUSPENSION,
            params![vm, UuidText::new(hm), at, host],
        )?;
        self.applied.suspensions_ended += n;
        Ok(())
    }

    /// Upsert the (VM, monitor) row for heartbeats flowing or stopped on purpose.
    fn heard(
        &mut self,
        vm: &UuidText,
        hm: &Uuid,
        mac: Option<String>,
        state: HeartbeatState,
        at: i64,
    ) -> Step {
        self.tx.execute(
            OP,
            VM_HM_HEARD,
            params![vm, UuidText::new(hm), mac, state.as_str(), at],
        )?;
        Ok(())
    }

    /// A pending item about a VM: coalesced into the VM's unreported item of the same
    /// kind if there is one (the queue stays bounded with no controller running), added
    /// otherwise.
    fn vm_item(&mut self, vm: &Uuid, hm: &Uuid, item: Item, at: i64) -> Step {
        let vm_text = UuidText::new(vm);
        let unreported = self.tx.query_opt(
            OP,
            "pending",
            PENDING_UNREPORTED,
            params![vm_text, item.kind.as_str()],
            |c| Ok((c.int(0)?, c.int(1)?)),
        )?;
        if let Some((id, code)) = unreported {
            let code = bits_from_sql(code) | item.code;
            let data = if item.kind == PendingKind::Doorbell {
                format!("{code:#x}")
            } else {
                String::new()
            };
            // Only while untagged: on PostgreSQL a NeedsAttention may have tagged it
            // since it was read (then it is reported as it was, and this is a new item).
            let coalesced = self.tx.execute(
                OP,
                PENDING_COALESCE,
                params![
                    id,
                    bits_to_sql(code),
                    item.new_state.map(VmState::as_str),
                    data,
                    at
                ],
            )?;
            if coalesced > 0 {
                self.applied.pending_coalesced += 1;
                return Ok(());
            }
        }
        self.insert_item(&vm_text, hm, &item, at)
    }

    /// Add a pending VM item.
    fn insert_item(&mut self, vm: &UuidText, hm: &Uuid, item: &Item, at: i64) -> Step {
        let data = if item.kind == PendingKind::Doorbell {
            format!("{:#x}", item.code)
        } else {
            String::new()
        };
        self.tx.execute(
            OP,
            PENDING_INSERT,
            params![
                Some(vm),
                UuidText::new(hm),
                item.kind.as_str(),
                bits_to_sql(item.code),
                item.old_state.map(VmState::as_str),
                item.new_state.map(VmState::as_str),
                item.from_host,
                data,
                at
            ],
        )?;
        self.applied.pending_added += 1;
        Ok(())
    }

    /// A monitor event, delivered by node data (never coalesced: each text counts).
    fn hm_item(&mut self, hm: &Uuid, code: u64, text: &str, at: i64) -> Step {
        self.tx.execute(
            OP,
            PENDING_INSERT,
            params![
                None::<UuidText>,
                UuidText::new(hm),
                PendingKind::HmEvent.as_str(),
                bits_to_sql(code),
                None::<&str>,
                None::<&str>,
                None::<HostId>,
                text,
                at
            ],
        )?;
        self.applied.pending_added += 1;
        Ok(())
    }
}

/// What `apply` needs to know of a VM already stored.
#[derive(Debug, Clone, Copy)]
struct KnownVm {
    state: VmState,
    host: Option<HostId>,
    managed: bool,
}

impl KnownVm {
    fn decode(state: &str, host: Option<i64>, managed: i64) -> KnownVm {
        KnownVm {
            // A state this build does not know (edited by hand) reads as UNKNOWN: the
            // transition still lands, and the state it writes is valid.
            state: VmState::from_text(state).unwrap_or(VmState::Unknown),
            host: host.map(HostId),
            managed: managed != 0,
        }
    }

    /// The state an agent that handshakes (or heartbeats again after a SHDN) puts the
    /// VM in: STARTED when the controller manages it, UNKNOWN otherwise (the seed's
    /// "unmanaged VM discovered", seed 004 L13126-13162).
    fn alive(&self) -> VmState {
        if self.managed {
            VmState::Started
        } else {
            VmState::Unknown
        }
    }

    /// The VM lives on another host than `host`: a monitor of `host` is talking about
    /// a VM that left (only Discovered may move it).
    fn elsewhere(&self, host: HostId) -> bool {
        self.host.is_some_and(|h| h != host)
    }
}

/// A pending VM item before it is written.
struct Item {
    kind: PendingKind,
    code: u64,
    old_state: Option<VmState>,
    new_state: Option<VmState>,
    from_host: Option<HostId>,
}

impl Item {
    fn state(
        kind: PendingKind,
        old_state: Option<VmState>,
        new_state: VmState,
        from_host: Option<HostId>,
    ) -> Item {
        Item {
            kind,
            code: 0,
            old_state,
            new_state: Some(new_state),
            from_host,
        }
    }

    fn doorbell(vector: u64) -> Item {
        Item {
            kind: PendingKind::Doorbell,
            code: vector,
            old_state: None,
            new_state: None,
            from_host: None,
        }
    }
}
