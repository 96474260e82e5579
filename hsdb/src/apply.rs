//! [`Hsdb::apply`]: a batch of health transitions in one transaction.
//!
//! This is the monitor's write path: its single writer thread drains the transitions the
//! dataplane produced and applies them, thousands at once after a mass failure. One
//! `BEGIN IMMEDIATE` … `COMMIT` per batch, so the cost of a durable commit (one fsync of
//! the WAL with `synchronous=FULL`) is paid once per batch, not once per VM.
//!
//! Rules every transition follows:
//! - a VM row is created the first time any transition names an unknown VM, with a
//!   pending DISCOVERED item (`Discovered`: state STARTED; `Suspended`: SUSPENDED; others:
//!   UNKNOWN). Refusing would lose the whole batch for one VM the store did not know.
//! - a VM's state change writes a pending STATE_CHANGE; re-applying the same state writes
//!   nothing (idempotent).
//! - a known VM first seen by a monitor on another host than its `current_host` moved
//!   (live migration): pending DISCOVERED with `from_host=<old host>`.
//! - a transition naming an unregistered monitor fails the batch ([`Error::UnknownHm`]):
//!   the monitor registers itself before writing, so this is a bug, not an input.

use hvha_identity::Uuid;
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior};

use crate::codec::{UuidText, bits_from_sql, bits_to_sql, opt_uuid, version_text};
use crate::error::{Context, Error, Result};
use crate::model::{
    Applied, HeartbeatState, HostId, InterfaceState, PendingKind, Transition, VmState,
};
use crate::store::Hsdb;

const VM_STATE: &str = "SELECT state, current_host FROM vm WHERE uuid = ?1";
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
    updated_ms = ?5 WHERE id = ?1";
/// Heartbeats are flowing (DETECTED) or stopped on purpose (SUSPENDED): no miss time.
const VM_HM_HEARD: &str = "INSERT INTO vm_hm (vm, hm, mac, hb_missed_ms, last_state, updated_ms) \
    VALUES (?1, ?2, ?3, NULL, ?4, ?5) ON CONFLICT (vm, hm) DO UPDATE SET \
    mac = COALESCE(excluded.mac, vm_hm.mac), hb_missed_ms = NULL, \
    last_state = excluded.last_state, updated_ms = excluded.updated_ms";
/// Keeps the first miss time (NeedsAttention's missedHb counts from it) and never marks a
/// suspended agent MISSING.
const VM_HM_MISSING: &str = "INSERT INTO vm_hm (vm, hm, mac, hb_missed_ms, last_state, updated_ms) \
    VALUES (?1, ?2, NULL, ?3, 'MISSING', ?3) ON CONFLICT (vm, hm) DO UPDATE SET \
    hb_missed_ms = COALESCE(vm_hm.hb_missed_ms, excluded.hb_missed_ms), \
    last_state = 'MISSING', updated_ms = excluded.updated_ms \
    WHERE vm_hm.last_state <> 'SUSPENDED'";
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
        let mut applied = Applied::default();
        if batch.is_empty() {
            return Ok(applied);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .op("apply")?;
        let mut batch_writer = BatchWriter {
            tx: &tx,
            applied: &mut applied,
            monitors: Vec::new(),
        };
        for (index, transition) in batch.iter().enumerate() {
            batch_writer
                .apply(transition)
                .map_err(|failure| match failure {
                    Failure::UnknownHm(hm) => Error::UnknownHm { index, hm },
                    Failure::Sql(source) => Error::Apply {
                        index,
                        kind: transition.kind(),
                        source,
                    },
                })?;
        }
        tx.commit().op("apply: commit")?;
        Ok(applied)
    }
}

/// Why one transition failed.
enum Failure {
    UnknownHm(Uuid),
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Sql(e)
    }
}

type Step<T = ()> = std::result::Result<T, Failure>;

/// The state of one `apply` call.
struct BatchWriter<'t, 'a> {
    tx: &'t Transaction<'t>,
    applied: &'a mut Applied,
    /// Monitors already looked up in this batch, with their host: usually one or two.
    monitors: Vec<(Uuid, HostId)>,
}

impl BatchWriter<'_, '_> {
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
                self.enter_state(&vm_text, hm, host, VmState::Started, *at)?;
                self.tx.prepare_cached(VM_AGENT)?.execute((
                    &vm_text,
                    ostype,
                    version_text(*ver_lower),
                    version_text(*ver_upper),
                    at,
                ))?;
                self.heard(
                    &vm_text,
                    hm,
                    Some(mac.to_string()),
                    HeartbeatState::Detected,
                    *at,
                )?;
                self.applied.discovered += 1;
            }
            Transition::Detected { vm, hm, at } => {
                let host = self.host_of(hm)?;
                let vm_text = UuidText::new(vm);
                self.ensure_vm(&vm_text, hm, host, *at)?;
                self.heard(&vm_text, hm, None, HeartbeatState::Detected, *at)?;
                self.applied.detected += 1;
            }
            Transition::Missing { vm, hm, at } => {
                let host = self.host_of(hm)?;
                let vm_text = UuidText::new(vm);
                self.ensure_vm(&vm_text, hm, host, *at)?;
                let changed = self.tx.prepare_cached(VM_HM_MISSING)?.execute((
                    &vm_text,
                    UuidText::new(hm),
                    at,
                ))?;
                self.applied.missing += 1;
                if changed == 0 {
                    self.applied.missing_ignored += 1;
                }
            }
            Transition::Suspended { vm, hm, at } => {
                let host = self.host_of(hm)?;
                let vm_text = UuidText::new(vm);
                self.enter_state(&vm_text, hm, host, VmState::Suspended, *at)?;
                self.heard(&vm_text, hm, None, HeartbeatState::Suspended, *at)?;
                self.applied.suspended += 1;
            }
            Transition::Doorbell { vm, hm, vector, at } => {
                let host = self.host_of(hm)?;
                let vm_text = UuidText::new(vm);
                self.ensure_vm(&vm_text, hm, host, *at)?;
                self.tx.prepare_cached(VM_DOORBELL)?.execute((
                    &vm_text,
                    bits_to_sql(*vector),
                    at,
                ))?;
                self.vm_item(&vm_text, hm, Item::doorbell(*vector), *at)?;
                self.applied.doorbells += 1;
            }
            Transition::HmHeartbeat { hm, at } => {
                self.host_of(hm)?;
                self.tx
                    .prepare_cached(HM_HEARTBEAT)?
                    .execute((UuidText::new(hm), at))?;
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
                self.tx.prepare_cached(HM_EVENT)?.execute((
                    UuidText::new(hm),
                    state.as_str(),
                    i64::from(*reason),
                ))?;
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
                let before: Option<String> = self
                    .tx
                    .prepare_cached(HM_INTERFACE_STATE)?
                    .query_row((UuidText::new(hm), interface), |row| row.get(0))
                    .optional()?;
                let changed = match before.as_deref() {
                    Some(text) => text != state.as_str(),
                    None => true,
                };
                if changed {
                    self.tx.prepare_cached(HM_INTERFACE_SET)?.execute((
                        UuidText::new(hm),
                        interface,
                        state.as_str(),
                        at,
                    ))?;
                }
                // A change is an event for the controller; so is a first row that is
                // DOWN (a monitor starting deaf). A first row UP is the normal start.
                if changed && (before.is_some() || *state == InterfaceState::Down) {
                    let text = format!(
                        "EVENT_TYPE=ADAPTER_{}\nINTERFACE_NAME={interface}\n",
                        state.as_str()
                    );
                    self.tx
                        .prepare_cached(HM_HAS_DATA)?
                        .execute([UuidText::new(hm)])?;
                    self.hm_item(hm, 0, &text, *at)?;
                }
                self.applied.hm_interfaces += 1;
            }
            Transition::Event {
                kind,
                vm,
                hm,
                text,
                at,
            } => {
                self.tx.prepare_cached(EVENT_INSERT)?.execute((
                    kind,
                    opt_uuid(vm.as_ref()),
                    opt_uuid(hm.as_ref()),
                    text,
                    at,
                ))?;
                self.applied.events += 1;
            }
        }
        Ok(())
    }

    /// The host of monitor `hm`; [`Failure::UnknownHm`] if it is not registered.
    fn host_of(&mut self, hm: &Uuid) -> Step<HostId> {
        if let Some((_, host)) = self.monitors.iter().find(|(uuid, _)| uuid == hm) {
            return Ok(*host);
        }
        let host = self
            .tx
            .prepare_cached(HM_HOST)?
            .query_row([UuidText::new(hm)], |row| row.get(0))
            .optional()?
            .map(HostId)
            .ok_or(Failure::UnknownHm(*hm))?;
        self.monitors.push((*hm, host));
        Ok(host)
    }

    /// The VM's state and current host, if the VM is known.
    fn vm_state(&self, vm: &UuidText) -> Step<Option<(String, Option<i64>)>> {
        Ok(self
            .tx
            .prepare_cached(VM_STATE)?
            .query_row([vm], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?)
    }

    /// Create the VM in `state`, with its pending DISCOVERED item.
    fn create_vm(
        &mut self,
        vm: &UuidText,
        hm: &Uuid,
        host: HostId,
        state: VmState,
        at: i64,
    ) -> Step {
        self.tx
            .prepare_cached(VM_INSERT)?
            .execute((vm, host, state.as_str(), at))?;
        self.applied.vms_created += 1;
        self.vm_item(
            vm,
            hm,
            Item::state(PendingKind::Discovered, None, state, None),
            at,
        )
    }

    /// Make sure the VM exists: an unknown one is created UNKNOWN.
    fn ensure_vm(&mut self, vm: &UuidText, hm: &Uuid, host: HostId, at: i64) -> Step {
        if self.vm_state(vm)?.is_none() {
            self.create_vm(vm, hm, host, VmState::Unknown, at)?;
        }
        Ok(())
    }

    /// Move the VM to `state` on `host`, creating it if unknown; pending items as in the
    /// module documentation.
    fn enter_state(
        &mut self,
        vm: &UuidText,
        hm: &Uuid,
        host: HostId,
        state: VmState,
        at: i64,
    ) -> Step {
        let Some((old, old_host)) = self.vm_state(vm)? else {
            return self.create_vm(vm, hm, host, state, at);
        };
        let moved = old_host.is_some_and(|h| h != host.0);
        if old == state.as_str() && !moved {
            return Ok(());
        }
        self.tx
            .prepare_cached(VM_SET_STATE)?
            .execute((vm, state.as_str(), host, at))?;
        let old = VmState::from_text(&old);
        match old_host {
            Some(from) if moved => self.vm_item(
                vm,
                hm,
                Item::state(PendingKind::Discovered, old, state, Some(HostId(from))),
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

    /// Upsert the (VM, monitor) row for heartbeats flowing or stopped on purpose.
    fn heard(
        &mut self,
        vm: &UuidText,
        hm: &Uuid,
        mac: Option<String>,
        state: HeartbeatState,
        at: i64,
    ) -> Step {
        self.tx.prepare_cached(VM_HM_HEARD)?.execute((
            vm,
            UuidText::new(hm),
            mac,
            state.as_str(),
            at,
        ))?;
        Ok(())
    }

    /// A pending item about a VM: coalesced into the VM's unreported item of the same
    /// kind if there is one (the queue stays bounded with no controller running), added
    /// otherwise.
    fn vm_item(&mut self, vm: &UuidText, hm: &Uuid, item: Item, at: i64) -> Step {
        let unreported: Option<(i64, i64)> = self
            .tx
            .prepare_cached(PENDING_UNREPORTED)?
            .query_row((vm, item.kind.as_str()), |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?;
        if let Some((id, code)) = unreported {
            let code = bits_from_sql(code) | item.code;
            let data = if item.kind == PendingKind::Doorbell {
                format!("{code:#x}")
            } else {
                String::new()
            };
            self.tx.prepare_cached(PENDING_COALESCE)?.execute((
                id,
                bits_to_sql(code),
                item.new_state.map(VmState::as_str),
                data,
                at,
            ))?;
            self.applied.pending_coalesced += 1;
            return Ok(());
        }
        let data = if item.kind == PendingKind::Doorbell {
            format!("{:#x}", item.code)
        } else {
            String::new()
        };
        self.tx.prepare_cached(PENDING_INSERT)?.execute((
            Some(vm),
            UuidText::new(hm),
            item.kind.as_str(),
            bits_to_sql(item.code),
            item.old_state.map(VmState::as_str),
            item.new_state.map(VmState::as_str),
            item.from_host,
            data,
            at,
        ))?;
        self.applied.pending_added += 1;
        Ok(())
    }

    /// A monitor event, delivered by node data (never coalesced: each text counts).
    fn hm_item(&mut self, hm: &Uuid, code: u64, text: &str, at: i64) -> Step {
        self.tx.prepare_cached(PENDING_INSERT)?.execute((
            None::<UuidText>,
            UuidText::new(hm),
            PendingKind::HmEvent.as_str(),
            bits_to_sql(code),
            None::<&str>,
            None::<&str>,
            None::<HostId>,
            text,
            at,
        ))?;
        self.applied.pending_added += 1;
        Ok(())
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
