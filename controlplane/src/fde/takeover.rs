//! A new term takes over what the last one left unfinished.
//!
//! An engine is built for one term: this controller leads its host group with one
//! token (or is the only controller). Its predecessor — another controller that lost
//! the lease, or this daemon before a restart — may have left restarts half done: their
//! `relocation` rows have no end. Before its first scan the new engine
//! ([`Fde::take_over`]) reads them and, for each VM of its group:
//!
//! - goes on from the last phase the row recorded, toward the row's own target, through
//!   [`Executor::adopt`](crate::relocate::Executor::adopt): every step from a recorded
//!   phase is safe to do again (commands to monitors are idempotent; a stop of a VM
//!   already off, a start of a VM already running on that host, a cleanup of what is
//!   gone are all Ok), so a step the predecessor did before it stopped is not done a
//!   second time in effect, and no second copy can start elsewhere;
//! - closes a row whose steps ended but whose result was never written (`done` without
//!   an end), saying so;
//! - closes, without acting, a row idle longer than [`TAKE_OVER_MAX_AGE_MS`]: what
//!   happened to its VM since is not the engine's to guess (the operator reads the row).
//!
//! The VM is then locked (in the executor) like any VM being restarted, so the new
//! engine's own decisions never start a second restart of it.

use std::collections::HashSet;

use hsdb::{HostId, Uuid};

use super::{Fde, FdeError, HealthStore, Subject, Verdict};
use crate::platform::{Platform, VmSpec};
use crate::relocate::{HostRef, Phase, RestartKind, RestartRequest};

/// An unfinished row older than this (since its last phase) is closed, not resumed.
pub const TAKE_OVER_MAX_AGE_MS: i64 = 3_600_000;

/// A `relocation` row without an end, with its steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRelocation {
    /// The row.
    pub id: i64,
    /// The VM.
    pub vm: Uuid,
    /// The host it left.
    pub from: Option<HostId>,
    /// The host it goes to.
    pub to: Option<HostId>,
    /// When its last phase was entered (or it began).
    pub last_ms: i64,
    /// Every phase it went through, in order (`cause vm_failure`, `by …`, `queued`, …).
    pub steps: Vec<String>,
}

impl OpenRelocation {
    /// Why it was begun, from its `cause …` step.
    pub fn cause(&self) -> Option<RestartKind> {
        self.steps
            .iter()
            .find_map(|s| s.strip_prefix("cause "))
            .and_then(RestartKind::from_name)
    }

    /// The last executor phase it recorded (other steps — `by …`, `taken over …` — are
    /// notes).
    pub fn phase(&self) -> Option<Phase> {
        self.steps.iter().rev().find_map(|s| Phase::from_name(s))
    }
}

/// What [`Fde::take_over`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TakeOver {
    /// Restarts resumed.
    pub resumed: usize,
    /// Rows closed without acting.
    pub closed: usize,
}

impl Fde {
    /// Who acts, written in every `relocation` row this engine begins or takes over
    /// (`ctl-a:4242:1716… (token 7)`).
    pub fn set_actor(&mut self, actor: String) {
        self.executor.actor = Some(actor);
    }

    /// Take over the restarts of this group that an earlier term left unfinished (see
    /// the module documentation). Call once, before the first tick.
    pub fn take_over(
        &mut self,
        now_ms: i64,
        store: &mut dyn HealthStore,
        platform: &mut dyn Platform,
    ) -> Result<TakeOver, FdeError> {
        let mut done = TakeOver::default();
        let open = store.open_relocations()?;
        if open.is_empty() {
            return Ok(done);
        }
        self.hosts = store.quick_query(now_ms, &self.params.group)?;
        let ours: HashSet<HostId> = self.hosts.iter().map(|h| h.id).collect();
        let by = self
            .executor
            .actor
            .clone()
            .unwrap_or_else(|| "this controller".to_owned());
        for o in open {
            let (Some(from), Some(to)) = (o.from, o.to) else {
                continue;
            };
            if !ours.contains(&from) && !ours.contains(&to) {
                continue;
            }
            if self.is_busy(&o.vm) {
                continue;
            }
            let vm = store.vm(&o.vm)?;
            let subject = Subject::Vm {
                uuid: o.vm,
                name: vm
                    .as_ref()
                    .map_or_else(|| o.vm.to_string(), super::vm::display_name),
            };
            let phase = o.phase();
            let close = |why: String| format!("closed by {by}: {why}");
            let idle = now_ms.saturating_sub(o.last_ms);
            let closing = match (&vm, phase) {
                (None, _) => Some(close("the VM is no longer in the HSDB".into())),
                (_, Some(Phase::Done)) => Some(close(
                    "the earlier term ended its steps but not its record; the outcome is \
                     in the events"
                        .into(),
                )),
                _ if idle > TAKE_OVER_MAX_AGE_MS => Some(close(format!(
                    "left unfinished in phase {} {} ago, too old to go on from; check the VM",
                    phase.map_or("(none)", Phase::as_str),
                    crate::params::show_ms(idle)
                ))),
                _ => None,
            };
            if let Some(result) = closing {
                store.relocation_end(o.id, &result, now_ms)?;
                self.decide(
                    now_ms,
                    subject,
                    Verdict::TakenOver,
                    format!("relocation {}: {result}", o.id),
                );
                done.closed += 1;
                continue;
            }
            let Some(vm) = vm else { continue };
            let kind = o.cause().unwrap_or(RestartKind::VmFailure);
            let from_ref = HostRef {
                id: from,
                name: self.host_name(from),
            };
            // A host failure's source was confirmed gone; it stays so unless it answers
            // now (then its VM is stopped there first, as for any live source).
            let source_gone = kind == RestartKind::HostFailure
                && !matches!(platform.host_alive(&from_ref.name), Ok(true));
            let monitors = |id: HostId| self.monitors_of(id);
            let request = RestartRequest {
                spec: VmSpec::of_row(&vm),
                priority: vm.priority,
                kind,
                to: HostRef {
                    id: to,
                    name: self.host_name(to),
                },
                source_gone,
                source_monitors: monitors(from),
                target_monitors: monitors(to),
                from: from_ref,
                batch: 0,
                live: o.steps.iter().any(|s| s == "move by live migration"),
                // The row keeps the reasons its term wrote.
                reasons: None,
            };
            let resume = phase.unwrap_or(Phase::Queued);
            self.executor.adopt(request, o.id, resume, now_ms, store)?;
            self.decide(
                now_ms,
                subject,
                Verdict::TakenOver,
                format!(
                    "relocation {} ({}) left unfinished in phase {resume} by an earlier \
                     term: going on from there toward host {}",
                    o.id,
                    kind.as_str(),
                    self.host_name(to)
                ),
            );
            done.resumed += 1;
        }
        Ok(done)
    }
}
