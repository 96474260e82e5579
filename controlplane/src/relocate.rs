//! The relocation executor: restarts a VM on a target host in the seed's steps
//! (seed-controlplane.md §4.4, seed 004 L17395-17407, L17548-17563, L17669-17746), as a
//! state machine the engine steps at each tick, so that many restarts proceed at once and
//! a simulation drives them on a virtual clock.
//!
//! Per VM: Stopping HA monitoring (STOP_MONITORING to the source host's monitors through
//! the HSDB command queue; waits for the healthy ones, at most `command_timeout`: a dead
//! host's monitors never answer) → HA monitoring stopped → Shutdown started / completed
//! (`platform.stop` on the source; skipped with a note when the source host is confirmed
//! gone) → Restart started (`platform.start` on the target) → Starting HA monitoring
//! (START_MONITORING to the target's monitors) → HA monitoring started → Restart on target
//! host completed → Configuration cleanup started / completed (`platform.cleanup` on the
//! source and FORGET_VM to its monitors; a failure is recorded and tolerated, gap 16) →
//! the batch summary "N out of M VMs have been successfully restarted".
//!
//! Every step goes to the VM's `relocation` row and to the event outbox. A restart to the
//! same host (application escalation) takes the same steps with target = source and no
//! cleanup. At most `max_per_host` restarts run toward one target; the others wait in
//! priority order. The executor never decides *whether* to restart: the engine does.
//! It never stops a VM it cannot account for: a stop that fails on a live source host
//! ends the restart (starting elsewhere would run the VM twice). A call the fence
//! refused ([`PlatformError::Fenced`]: this controller no longer leads) changes nothing:
//! the restart keeps its phase for the next leader ([`Executor::adopt`]).

use std::collections::HashMap;
use std::fmt;

use std::sync::Arc;

use hsdb::{HostId, Priority, Uuid};

use crate::clock::Clock;
use crate::events::{Event, EventKind};
use crate::platform::{Platform, PlatformError, VmSpec};

mod moves;
#[cfg(test)]
pub(crate) use moves::plan_move_against;
pub use moves::{MoveError, MovePlan, NOT_ASKED, RUNS_THERE, plan_move, plan_move_with};
pub(crate) use moves::{check_target, conclude, shape_move_request};

/// What a monitor is asked to do about one VM (the HSDB command queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MonitorCommand {
    /// Stop watching the VM's heartbeats.
    StopMonitoring,
    /// Start watching the VM's heartbeats.
    StartMonitoring,
    /// Forget the VM: it lives on another host now.
    ForgetVm,
}

/// Writes a restart needs: commands to monitors, the `relocation` row, events, the VM's
/// current host. Implemented for the HSDB; tests use a fake.
pub trait Ledger {
    /// Queue a command for monitor `hm`; returns the command's id.
    fn enqueue_command(
        &mut self,
        hm: &Uuid,
        command: MonitorCommand,
        vm: &Uuid,
        at: i64,
    ) -> hsdb::Result<i64>;
    /// `Some(result)` once the monitor completed command `id`.
    fn command_result(&mut self, id: i64) -> hsdb::Result<Option<String>>;
    /// A new `relocation` row (a restart when `to` is `from`, a move for
    /// [`RestartKind::Move`], else a relocation) for `cause` (a [`RestartKind`] name),
    /// with the decision's explanation `reasons`; returns its id.
    fn relocation_begin(
        &mut self,
        vm: &Uuid,
        from: Option<HostId>,
        to: HostId,
        cause: &str,
        reasons: Option<&str>,
        at: i64,
    ) -> hsdb::Result<i64>;
    /// The row's current phase.
    fn relocation_phase(&mut self, id: i64, phase: &str, at: i64) -> hsdb::Result<()>;
    /// The row's end and result.
    fn relocation_end(&mut self, id: i64, result: &str, at: i64) -> hsdb::Result<()>;
    /// Write events to the outbox.
    fn record_events(&mut self, events: &[Event]) -> hsdb::Result<()>;
}

/// Why a VM is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestartKind {
    /// Its host failed.
    HostFailure,
    /// The VM failed (missed heartbeats, not pingable, platform says so).
    VmFailure,
    /// A critical application failed: restart on the same host (seed 004 L13767-13771).
    AppRestart,
    /// A critical application failed again after the same-host restarts: relocate.
    AppRelocation,
    /// Planned maintenance: `hactl host evacuate` moves the VM off its host (seed 004
    /// §1.2.1). Not a failure.
    Evacuation,
    /// Planned maintenance: `hactl host restore` returns the VM to its home host.
    Return,
    /// An operator moves one VM (`hactl vm move`, the dashboard). Not a failure.
    Move,
}

impl RestartKind {
    /// The kind named `name` (a `cause <name>` step of a `relocation` row).
    pub fn from_name(name: &str) -> Option<RestartKind> {
        [
            RestartKind::HostFailure,
            RestartKind::VmFailure,
            RestartKind::AppRestart,
            RestartKind::AppRelocation,
            RestartKind::Evacuation,
            RestartKind::Return,
            RestartKind::Move,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }

    /// The name in the `relocation` row.
    pub const fn as_str(self) -> &'static str {
        match self {
            RestartKind::HostFailure => "host_failure",
            RestartKind::VmFailure => "vm_failure",
            RestartKind::AppRestart => "app_restart",
            RestartKind::AppRelocation => "app_relocation",
            RestartKind::Evacuation => "evacuate",
            RestartKind::Return => "restore",
            RestartKind::Move => "move",
        }
    }

    /// A planned move (evacuate, restore, an operator's move), never a failure.
    pub const fn is_planned(self) -> bool {
        matches!(
            self,
            RestartKind::Evacuation | RestartKind::Return | RestartKind::Move
        )
    }
}

/// A host as the executor needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRef {
    /// Id.
    pub id: HostId,
    /// Name (the platform's).
    pub name: String,
}

/// A restart to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartRequest {
    /// The VM, as the target's `start` needs it.
    pub spec: VmSpec,
    /// Its priority (queue order).
    pub priority: Priority,
    /// Why.
    pub kind: RestartKind,
    /// Where it ran.
    pub from: HostRef,
    /// Where it goes (= `from` for a same-host restart).
    pub to: HostRef,
    /// The source host is confirmed gone: no stop, no wait for its monitors.
    pub source_gone: bool,
    /// The source host's monitors, with whether each is healthy (waited for).
    pub source_monitors: Vec<(Uuid, bool)>,
    /// The target host's monitors, with whether each is healthy (waited for).
    pub target_monitors: Vec<(Uuid, bool)>,
    /// The batch it counts in (one per decision: a host failure is one batch).
    pub batch: u64,
    /// Move it by live migration (`platform.migrate`; the VM keeps running) rather than
    /// a stop and a start: planned moves on a platform that can.
    pub live: bool,
    /// The decision's explanation (`Plan::explanation`, the `hactl relocate --dry-run`
    /// text for the VM), kept in the `relocation` row; `None` when there is none
    /// (a restart taken over from an earlier term keeps its row's).
    pub reasons: Option<String>,
}

/// A step of a restart: the seed's progress lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Waiting for a slot toward the target host.
    Queued,
    /// STOP_MONITORING sent; waiting for the source's monitors.
    StoppingMonitoring,
    /// Shutdown on the source (retried until the action bound).
    ShuttingDown,
    /// Start on the target.
    Restarting,
    /// Live migration to the target (planned moves).
    Migrating,
    /// START_MONITORING sent; waiting for the target's monitors.
    StartingMonitoring,
    /// Cleanup on the source.
    CleaningUp,
    /// Finished.
    Done,
}

impl Phase {
    /// The phase named `name` in a `relocation` row, if it is one.
    pub fn from_name(name: &str) -> Option<Phase> {
        [
            Phase::Queued,
            Phase::StoppingMonitoring,
            Phase::ShuttingDown,
            Phase::Restarting,
            Phase::Migrating,
            Phase::StartingMonitoring,
            Phase::CleaningUp,
            Phase::Done,
        ]
        .into_iter()
        .find(|p| p.as_str() == name)
    }

    /// The phase's name in the `relocation` row.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::StoppingMonitoring => "stopping_ha_monitoring",
            Phase::ShuttingDown => "shutting_down",
            Phase::Restarting => "restarting",
            Phase::Migrating => "migrating",
            Phase::StartingMonitoring => "starting_ha_monitoring",
            Phase::CleaningUp => "cleaning_up",
            Phase::Done => "done",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a restart ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Running on the target; `notes` say what was skipped or failed without failing it.
    Restarted,
    /// Not restarted: why. `retry_elsewhere` when another target may succeed (the VM is
    /// stopped on its source and did not start on the target).
    Failed {
        /// Why.
        why: String,
        /// Another target may be tried.
        retry_elsewhere: bool,
    },
}

/// One restart in progress or finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// What was asked.
    pub request: RestartRequest,
    /// The `relocation` row.
    pub relocation_id: i64,
    /// Current step.
    pub phase: Phase,
    /// When it was submitted.
    pub submitted_ms: i64,
    /// Commands being waited for, and until when.
    waiting: Vec<i64>,
    deadline_ms: i64,
    /// First stop attempt, for the action bound.
    stop_first_ms: Option<i64>,
    /// What was skipped or failed without failing the restart.
    pub notes: Vec<String>,
    /// The end, once done.
    pub outcome: Option<Outcome>,
    /// Taken over from an earlier term, which may have started the VM on the target
    /// already: the start asks the target first.
    adopted: bool,
    /// Its start is due: it waits for the step's batch of starts.
    start_due: bool,
    /// The outcome of its start in the step's batch, not yet taken into account.
    start_result: Option<Result<(), PlatformError>>,
}

impl Restart {
    /// The VM.
    pub fn vm(&self) -> &Uuid {
        &self.request.spec.uuid
    }
}

/// A restart that finished during a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The restart, with its outcome.
    pub restart: Restart,
    /// The source needs a cleanup when it comes back (cleanup failed or was impossible).
    pub cleanup_owed: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Batch {
    total: u32,
    ok: u32,
    failed: u32,
}

/// Runs restarts.
#[derive(Default)]
pub struct Executor {
    restarts: Vec<Restart>,
    batches: HashMap<u64, Batch>,
    next_batch: u64,
    /// Restarts at once toward one target host.
    pub max_per_host: u32,
    /// How long to wait for monitors to confirm a command, ms.
    pub command_timeout_ms: i64,
    /// How long to keep retrying a stop that times out, ms.
    pub action_timeout_ms: i64,
    /// Read after each platform call, so that the steps after a slow call carry the time
    /// they happened (the daemon's wall clock; the simulation's virtual one). Without
    /// it, every step of a tick carries the tick's time.
    pub clock: Option<Arc<dyn Clock>>,
    /// Who acts, written as a step of every `relocation` row this executor begins or
    /// takes over (`by ctl-a:4242:1716… (token 7)`): the HSDB then says which controller,
    /// in which term, did each restart. `None`: nothing written.
    pub actor: Option<String>,
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("restarts", &self.restarts.len())
            .field("batches", &self.batches.len())
            .field("max_per_host", &self.max_per_host)
            .field("clock", &self.clock.is_some())
            .finish_non_exhaustive()
    }
}

/// How a planned move goes, in the `relocation` row and its result.
pub fn move_way(live: bool) -> &'static str {
    if live {
        "by live migration"
    } else {
        "by stop and start (the platform cannot live-migrate)"
    }
}

fn vm_name(spec: &VmSpec) -> String {
    if spec.name.is_empty() {
        spec.uuid.to_string()
    } else {
        spec.name.clone()
    }
}

impl Executor {
    /// An executor with these bounds.
    pub fn new(max_per_host: u32, command_timeout_ms: i64, action_timeout_ms: i64) -> Executor {
        Executor {
            max_per_host: max_per_host.max(1),
            command_timeout_ms,
            action_timeout_ms,
            ..Executor::default()
        }
    }

    /// Open a batch of `total` restarts (the summary is written when all of them ended).
    pub fn open_batch(&mut self, total: u32) -> u64 {
        self.next_batch += 1;
        self.batches.insert(
            self.next_batch,
            Batch {
                total,
                ..Batch::default()
            },
        );
        self.next_batch
    }

    /// A VM is being restarted (the per-VM operation lock).
    pub fn holds(&self, vm: &Uuid) -> bool {
        self.restarts.iter().any(|r| r.vm() == vm)
    }

    /// Restarts in progress, in queue order.
    pub fn restarts(&self) -> &[Restart] {
        &self.restarts
    }

    /// Restarts in progress or queued toward `host` (the planner counts them as load).
    pub fn toward(&self, host: HostId) -> impl Iterator<Item = &Restart> {
        self.restarts
            .iter()
            .filter(move |r| r.request.to.id == host)
    }

    /// Queue a restart: its `relocation` row is written now (phase `queued`).
    pub fn submit(
        &mut self,
        request: RestartRequest,
        now_ms: i64,
        ledger: &mut dyn Ledger,
    ) -> hsdb::Result<()> {
        let from = Some(request.from.id);
        let id = ledger.relocation_begin(
            &request.spec.uuid,
            from,
            request.to.id,
            request.kind.as_str(),
            request.reasons.as_deref(),
            now_ms,
        )?;
        if let Some(actor) = &self.actor {
            ledger.relocation_phase(id, &format!("by {actor}"), now_ms)?;
        }
        let mut notes = Vec::new();
        if request.kind.is_planned() {
            let how = move_way(request.live);
            ledger.relocation_phase(id, &format!("move {how}"), now_ms)?;
            notes.push(format!("moved {how}"));
        }
        ledger.relocation_phase(id, Phase::Queued.as_str(), now_ms)?;
        tracing::info!(
            vm = %request.spec.uuid, name = %vm_name(&request.spec), kind = request.kind.as_str(),
            from = %request.from.name, to = %request.to.name, relocation = id,
            "restart queued"
        );
        self.restarts.push(Restart {
            request,
            relocation_id: id,
            phase: Phase::Queued,
            submitted_ms: now_ms,
            waiting: Vec::new(),
            deadline_ms: 0,
            stop_first_ms: None,
            notes,
            outcome: None,
            adopted: false,
            start_due: false,
            start_result: None,
        });
        // Queue order: priority, then submission.
        self.restarts.sort_by_key(|r| {
            (
                match r.request.priority {
                    Priority::High => 0u8,
                    Priority::Medium => 1,
                    Priority::Low => 2,
                },
                r.submitted_ms,
            )
        });
        Ok(())
    }

    /// Take over a restart an earlier term left unfinished in its `relocation` row `id`,
    /// going on from `phase` (one of [`Phase::Queued`], [`Phase::ShuttingDown`],
    /// [`Phase::Restarting`], [`Phase::CleaningUp`]: each step from there is safe to do
    /// again — commands to monitors are idempotent, a stop of a VM already off and a
    /// start of a VM already running on the target are Ok, a cleanup of what is gone is
    /// Ok). The row gets a step `taken over by <actor> from <phase>`; the target is the
    /// row's, never another, so a start the earlier term had sent lands on the same
    /// host. It counts in a batch of its own.
    pub fn adopt(
        &mut self,
        mut request: RestartRequest,
        relocation_id: i64,
        phase: Phase,
        now_ms: i64,
        ledger: &mut dyn Ledger,
    ) -> hsdb::Result<()> {
        let by = self
            .actor
            .clone()
            .unwrap_or_else(|| "this controller".to_owned());
        ledger.relocation_phase(
            relocation_id,
            &format!("taken over by {by} from {phase}"),
            now_ms,
        )?;
        request.batch = self.open_batch(1);
        tracing::warn!(
            vm = %request.spec.uuid, name = %vm_name(&request.spec), relocation = relocation_id,
            from = %request.from.name, to = %request.to.name, %phase,
            "restart left unfinished by an earlier term: taken over"
        );
        // Resuming at a monitor wait means sending the commands again: from the phase
        // that sends them.
        let phase = match phase {
            Phase::StoppingMonitoring => Phase::Queued,
            Phase::StartingMonitoring if request.live => Phase::Migrating,
            Phase::StartingMonitoring => Phase::Restarting,
            p => p,
        };
        self.restarts.push(Restart {
            request,
            relocation_id,
            phase,
            submitted_ms: now_ms,
            waiting: Vec::new(),
            deadline_ms: 0,
            stop_first_ms: None,
            notes: vec![format!("taken over by {by}")],
            outcome: None,
            adopted: true,
            start_due: false,
            start_result: None,
        });
        Ok(())
    }

    /// `missing` VMs of a batch will not be restarted (they fit nowhere, or the policy
    /// is advisory): they count as not restarted in its summary.
    pub fn batch_shortfall(
        &mut self,
        batch: u64,
        missing: u32,
        now_ms: i64,
        ledger: &mut dyn Ledger,
    ) -> hsdb::Result<()> {
        self.settle(batch, 0, missing, now_ms, ledger)
    }

    /// Advance every restart as far as it goes now. Returns the restarts that finished.
    ///
    /// The starts due in this step go to the platform together
    /// ([`Platform::start_many`]): every restart is first advanced until it waits or its
    /// start is due, then the due starts are sent as one batch, then those restarts go on
    /// with their outcomes (and restarts let out of the queue by slots freed meanwhile
    /// follow, batch after batch). A driver that starts VMs concurrently thus runs as many
    /// at once as the per-target cap lets through, instead of one after another.
    pub fn step(
        &mut self,
        now_ms: i64,
        ledger: &mut dyn Ledger,
        platform: &mut dyn Platform,
    ) -> hsdb::Result<Vec<Finished>> {
        let mut finished = Vec::new();
        let clock_handle = self.clock.clone();
        let mut clock = Now {
            ms: now_ms,
            clock: clock_handle.as_deref(),
        };
        self.pass(&mut clock, ledger, platform, &mut finished)?;
        loop {
            let due: Vec<usize> = (0..self.restarts.len())
                .filter(|&i| self.restarts[i].start_due)
                .collect();
            if due.is_empty() {
                break;
            }
            let starts: Vec<(&str, &VmSpec)> = due
                .iter()
                .map(|&i| {
                    let r = &self.restarts[i].request;
                    (r.to.name.as_str(), &r.spec)
                })
                .collect();
            tracing::debug!(starts = starts.len(), "starting VMs as one batch");
            let mut results = platform.start_many(&starts).into_iter();
            for i in due {
                let r = &mut self.restarts[i];
                r.start_due = false;
                r.start_result = Some(results.next().unwrap_or_else(|| {
                    Err(PlatformError::Failed {
                        op: format!("start {} {}", r.request.to.name, r.request.spec.uuid),
                        why: format!(
                            "the {} driver returned fewer results than starts",
                            platform.name()
                        ),
                    })
                }));
            }
            self.pass(&mut clock, ledger, platform, &mut finished)?;
        }
        Ok(finished)
    }

    /// Advance every restart that can move until it waits, ends, or its start is due.
    fn pass(
        &mut self,
        clock: &mut Now<'_>,
        ledger: &mut dyn Ledger,
        platform: &mut dyn Platform,
        finished: &mut Vec<Finished>,
    ) -> hsdb::Result<()> {
        let mut active: HashMap<HostId, u32> = HashMap::new();
        for r in &self.restarts {
            if r.phase != Phase::Queued && r.phase != Phase::Done {
                *active.entry(r.request.to.id).or_default() += 1;
            }
        }
        let mut i = 0;
        while i < self.restarts.len() {
            let r = &mut self.restarts[i];
            if r.start_due {
                i += 1;
                continue;
            }
            if r.phase == Phase::Queued {
                let n = active.entry(r.request.to.id).or_default();
                if *n >= self.max_per_host {
                    i += 1;
                    continue;
                }
                *n += 1;
            }
            let mut events = Vec::new();
            clock.refresh();
            let cleanup_owed = advance(
                r,
                clock,
                self.command_timeout_ms,
                self.action_timeout_ms,
                ledger,
                platform,
                &mut events,
            )?;
            let now_ms = clock.ms;
            ledger.record_events(&events)?;
            if r.phase == Phase::Done {
                let restart = self.restarts.remove(i);
                if let Some(n) = active.get_mut(&restart.request.to.id) {
                    *n = n.saturating_sub(1);
                }
                self.count_in_batch(&restart, now_ms, ledger)?;
                finished.push(Finished {
                    restart,
                    cleanup_owed,
                });
                // A slot freed: look at the queue from the start again.
                i = 0;
                continue;
            }
            i += 1;
        }
        Ok(())
    }

    fn count_in_batch(
        &mut self,
        restart: &Restart,
        now_ms: i64,
        ledger: &mut dyn Ledger,
    ) -> hsdb::Result<()> {
        match restart.outcome {
            Some(Outcome::Restarted) => self.settle(restart.request.batch, 1, 0, now_ms, ledger),
            // A restart that may be tried on another target stays open in its batch: the
            // engine submits it again or reports it as a shortfall.
            Some(Outcome::Failed {
                retry_elsewhere: true,
                ..
            }) => Ok(()),
            _ => self.settle(restart.request.batch, 0, 1, now_ms, ledger),
        }
    }

    fn settle(
        &mut self,
        batch: u64,
        ok: u32,
        failed: u32,
        now_ms: i64,
        ledger: &mut dyn Ledger,
    ) -> hsdb::Result<()> {
        let Some(b) = self.batches.get_mut(&batch) else {
            return Ok(());
        };
        b.ok += ok;
        b.failed += failed;
        if b.ok + b.failed < b.total {
            return Ok(());
        }
        let text = format!(
            "{} out of {} VMs have been successfully restarted",
            b.ok, b.total
        );
        tracing::info!(batch, ok = b.ok, total = b.total, "{text}");
        self.batches.remove(&batch);
        ledger.record_events(&[Event {
            kind: EventKind::RestartSummary,
            vm: None,
            hm: None,
            text,
            at: now_ms,
        }])
    }

    /// When the executor next needs a step: the earliest wait deadline, or a short poll
    /// while monitors are being waited for. `None` when idle.
    pub fn next_wake(&self, now_ms: i64) -> Option<i64> {
        let poll = (self.command_timeout_ms / 10).clamp(50, 1_000);
        self.restarts
            .iter()
            .filter(|r| {
                matches!(
                    r.phase,
                    Phase::StoppingMonitoring | Phase::StartingMonitoring | Phase::ShuttingDown
                )
            })
            .map(|r| r.deadline_ms.min(now_ms + poll))
            .min()
    }
}

fn progress(r: &Restart, text: String, now_ms: i64, events: &mut Vec<Event>) {
    tracing::info!(vm = %r.vm(), relocation = r.relocation_id, "{text}");
    events.push(Event {
        kind: EventKind::VmRestartProgress,
        vm: Some(*r.vm()),
        hm: None,
        text,
        at: now_ms,
    });
}

/// Move one restart forward until it waits or ends. Returns whether the source is owed a
/// cleanup.
/// The time inside a step: the tick's, moved forward after each platform call when a
/// clock is given.
struct Now<'a> {
    ms: i64,
    clock: Option<&'a dyn Clock>,
}

impl Now<'_> {
    fn refresh(&mut self) -> i64 {
        if let Some(c) = self.clock {
            self.ms = self.ms.max(c.now_ms());
        }
        self.ms
    }
}

fn advance(
    r: &mut Restart,
    clock: &mut Now<'_>,
    command_timeout_ms: i64,
    action_timeout_ms: i64,
    ledger: &mut dyn Ledger,
    platform: &mut dyn Platform,
    events: &mut Vec<Event>,
) -> hsdb::Result<bool> {
    let name = vm_name(&r.request.spec);
    let vm = *r.vm();
    loop {
        let now_ms = clock.ms;
        match r.phase {
            Phase::Queued if r.request.live => {
                progress(
                    r,
                    format!(
                        "Live migration of VM {name} from host {} to host {} has started",
                        r.request.from.name, r.request.to.name
                    ),
                    now_ms,
                    events,
                );
                set_phase(r, Phase::Migrating, now_ms, ledger)?;
            }
            Phase::Migrating => {
                // Taken over: the earlier term may have moved it already.
                let there = |platform: &mut dyn Platform| {
                    matches!(
                        platform.vm_status(&r.request.to.name, &vm),
                        Ok(s) if s.power == crate::platform::PowerState::Running
                    )
                };
                let moved = if r.adopted && there(platform) {
                    r.adopted = false;
                    Ok(())
                } else {
                    r.adopted = false;
                    platform.migrate(&r.request.from.name, &r.request.to.name, &r.request.spec)
                };
                let now_ms = clock.refresh();
                match moved {
                    Ok(()) => {}
                    Err(e @ PlatformError::Fenced { .. }) => return fenced(r, &e),
                    // An answer lost on the way: it may have moved all the same.
                    Err(PlatformError::Timeout { .. }) if there(platform) => {}
                    Err(e) => {
                        // The VM still runs on the source, watched as before.
                        let why = format!(
                            "could not live-migrate VM {name} from host {} to host {}: {e}; it \
                             stays on {}",
                            r.request.from.name, r.request.to.name, r.request.from.name
                        );
                        return fail(r, why, false, now_ms, ledger, events).map(|()| false);
                    }
                }
                progress(
                    r,
                    format!(
                        "Live migration of VM {name} to host {} has completed",
                        r.request.to.name
                    ),
                    now_ms,
                    events,
                );
                r.waiting.clear();
                for (hm, healthy) in r.request.target_monitors.clone() {
                    let id = ledger.enqueue_command(
                        &hm,
                        MonitorCommand::StartMonitoring,
                        &vm,
                        now_ms,
                    )?;
                    if healthy {
                        r.waiting.push(id);
                    }
                }
                r.deadline_ms = now_ms + command_timeout_ms;
                set_phase(r, Phase::StartingMonitoring, now_ms, ledger)?;
            }
            Phase::Queued => {
                progress(
                    r,
                    format!("Stopping HA monitoring for VM {name}"),
                    now_ms,
                    events,
                );
                r.waiting.clear();
                for (hm, healthy) in r.request.source_monitors.clone() {
                    let id =
                        ledger.enqueue_command(&hm, MonitorCommand::StopMonitoring, &vm, now_ms)?;
                    if healthy && !r.request.source_gone {
                        r.waiting.push(id);
                    }
                }
                r.deadline_ms = now_ms + command_timeout_ms;
                set_phase(r, Phase::StoppingMonitoring, now_ms, ledger)?;
            }
            Phase::StoppingMonitoring | Phase::StartingMonitoring => {
                let mut still = Vec::new();
                for id in r.waiting.clone() {
                    if ledger.command_result(id)?.is_none() {
                        still.push(id);
                    }
                }
                r.waiting = still;
                if !r.waiting.is_empty() && now_ms < r.deadline_ms {
                    return Ok(false);
                }
                let stopping = r.phase == Phase::StoppingMonitoring;
                if !r.waiting.is_empty() {
                    let note = format!(
                        "{} monitor(s) did not confirm {} within {} ms",
                        r.waiting.len(),
                        if stopping {
                            "STOP_MONITORING"
                        } else {
                            "START_MONITORING"
                        },
                        command_timeout_ms
                    );
                    tracing::warn!(vm = %vm, relocation = r.relocation_id, "{note}; going on");
                    r.notes.push(note);
                    r.waiting.clear();
                }
                if stopping {
                    progress(
                        r,
                        format!("HA monitoring for VM {name} stopped"),
                        now_ms,
                        events,
                    );
                    progress(
                        r,
                        format!("Shutdown has started for VM {name}"),
                        now_ms,
                        events,
                    );
                    set_phase(r, Phase::ShuttingDown, now_ms, ledger)?;
                } else {
                    progress(
                        r,
                        format!("HA monitoring for VM {name} started"),
                        now_ms,
                        events,
                    );
                    let text = if r.request.kind.is_planned() {
                        format!(
                            "Move to host {} has completed for VM {name} ({})",
                            r.request.to.name,
                            move_way(r.request.live)
                        )
                    } else {
                        format!(
                            "Restart on Target host {} has completed for VM {name}",
                            r.request.to.name
                        )
                    };
                    tracing::info!(vm = %vm, relocation = r.relocation_id, "{text}");
                    events.push(Event {
                        kind: EventKind::VmRestartCompleted,
                        vm: Some(vm),
                        hm: None,
                        text,
                        at: now_ms,
                    });
                    if r.request.to.id == r.request.from.id {
                        r.notes.push("same host: no configuration cleanup".into());
                        return finish(r, Outcome::Restarted, now_ms, ledger).map(|()| false);
                    }
                    progress(
                        r,
                        format!("Configuration cleanup started for VM {name}"),
                        now_ms,
                        events,
                    );
                    set_phase(r, Phase::CleaningUp, now_ms, ledger)?;
                }
            }
            Phase::ShuttingDown => {
                if r.request.source_gone {
                    r.notes.push(format!(
                        "host {} is gone: shutdown skipped",
                        r.request.from.name
                    ));
                } else {
                    // A VM judged failed may have come back while its monitors were told
                    // to stop watching it: ask once more, at the last moment before the
                    // stop (the decision's ping can be seconds old). One that answers is
                    // alive and stays where it is; a probe that cannot answer is no
                    // evidence either way, and the restart goes on.
                    if r.request.kind == RestartKind::VmFailure
                        && r.stop_first_ms.is_none()
                        && matches!(platform.ping(&vm), Ok(true))
                    {
                        let now_ms = clock.refresh();
                        for (hm, _) in r.request.source_monitors.clone() {
                            ledger.enqueue_command(
                                &hm,
                                MonitorCommand::StartMonitoring,
                                &vm,
                                now_ms,
                            )?;
                        }
                        let why = format!(
                            "VM {name} answers ping again just before its shutdown: alive, \
                             not restarted; HA monitoring on {} restarted",
                            r.request.from.name
                        );
                        return fail(r, why, false, now_ms, ledger, events).map(|()| false);
                    }
                    let now_ms = clock.refresh();
                    let first_attempt = r.stop_first_ms.is_none();
                    let first = *r.stop_first_ms.get_or_insert(now_ms);
                    let stopped = platform.stop(&r.request.from.name, &vm);
                    let now_ms = clock.refresh();
                    match stopped {
                        Ok(()) | Err(PlatformError::NoSuchVm { .. }) => {}
                        Err(e @ PlatformError::Fenced { .. }) => {
                            // Nothing was sent: the restart stays where it is, for this
                            // engine's next step or the next leader (with its last ping).
                            if first_attempt {
                                r.stop_first_ms = None;
                            }
                            return fenced(r, &e);
                        }
                        Err(e @ PlatformError::Timeout { .. })
                            if now_ms - first < action_timeout_ms =>
                        {
                            tracing::warn!(vm = %vm, relocation = r.relocation_id, error = %e,
                                "stop timed out; retrying at the next step");
                            r.deadline_ms = first + action_timeout_ms;
                            return Ok(false);
                        }
                        Err(e) => {
                            // The VM stays where it is: its monitors watch it again.
                            for (hm, _) in r.request.source_monitors.clone() {
                                ledger.enqueue_command(
                                    &hm,
                                    MonitorCommand::StartMonitoring,
                                    &vm,
                                    now_ms,
                                )?;
                            }
                            let why = format!(
                                "could not stop VM {name} on host {}: {e}; not started elsewhere \
                                 (it could run twice); HA monitoring on {} restarted",
                                r.request.from.name, r.request.from.name
                            );
                            return fail(r, why, false, now_ms, ledger, events).map(|()| false);
                        }
                    }
                }
                progress(
                    r,
                    format!("Shutdown has completed for VM {name}"),
                    now_ms,
                    events,
                );
                progress(
                    r,
                    format!("Restart has started for VM {name}"),
                    now_ms,
                    events,
                );
                set_phase(r, Phase::Restarting, now_ms, ledger)?;
            }
            Phase::Restarting => {
                // Taken over: the earlier term may have started it there already. One
                // running there is not started again (it may still be booting).
                if r.adopted {
                    match platform.vm_status(&r.request.to.name, &vm) {
                        Ok(s) if s.power == crate::platform::PowerState::Running => {
                            r.notes.push(format!(
                                "already running on {} when taken over: not started again",
                                r.request.to.name
                            ));
                            r.adopted = false;
                            r.phase = Phase::StartingMonitoring;
                            r.waiting.clear();
                            for (hm, healthy) in r.request.target_monitors.clone() {
                                let id = ledger.enqueue_command(
                                    &hm,
                                    MonitorCommand::StartMonitoring,
                                    &vm,
                                    now_ms,
                                )?;
                                if healthy {
                                    r.waiting.push(id);
                                }
                            }
                            r.deadline_ms = now_ms + command_timeout_ms;
                            set_phase(r, Phase::StartingMonitoring, now_ms, ledger)?;
                            continue;
                        }
                        Err(e @ PlatformError::Fenced { .. }) => return fenced(r, &e),
                        // Not there, not running, or cannot tell: the start (a start of a
                        // VM running there is Ok for every driver).
                        _ => r.adopted = false,
                    }
                }
                // The start goes out with the step's batch (Executor::step); its outcome
                // comes back here.
                let Some(started) = r.start_result.take() else {
                    r.start_due = true;
                    return Ok(false);
                };
                let now_ms = clock.refresh();
                if let Err(e @ PlatformError::Fenced { .. }) = &started {
                    return fenced(r, e);
                }
                if let Err(e) = started {
                    let why = format!(
                        "could not start VM {name} on host {}: {e}",
                        r.request.to.name
                    );
                    let retry = r.request.to.id != r.request.from.id;
                    return fail(r, why, retry, now_ms, ledger, events).map(|()| false);
                }
                progress(
                    r,
                    format!("Starting HA monitoring for VM {name}"),
                    now_ms,
                    events,
                );
                r.waiting.clear();
                for (hm, healthy) in r.request.target_monitors.clone() {
                    let id = ledger.enqueue_command(
                        &hm,
                        MonitorCommand::StartMonitoring,
                        &vm,
                        now_ms,
                    )?;
                    if healthy {
                        r.waiting.push(id);
                    }
                }
                r.deadline_ms = now_ms + command_timeout_ms;
                set_phase(r, Phase::StartingMonitoring, now_ms, ledger)?;
            }
            Phase::CleaningUp => {
                for (hm, _) in r.request.source_monitors.clone() {
                    ledger.enqueue_command(&hm, MonitorCommand::ForgetVm, &vm, now_ms)?;
                }
                // A source the platform said is gone is not called: the call would only
                // wait out the driver's timeout (1,000 VMs of a dead host, one timeout
                // each, one after another), and the cleanup is owed to it either way.
                let cleaned = if r.request.source_gone {
                    Err(PlatformError::Unreachable {
                        host: r.request.from.name.clone(),
                        why: "gone since its failure was decided; not called".to_owned(),
                    })
                } else {
                    platform.cleanup(&r.request.from.name, &vm)
                };
                let now_ms = clock.refresh();
                if let Err(e @ PlatformError::Fenced { .. }) = &cleaned {
                    return fenced(r, e);
                }
                let owed = match cleaned {
                    Ok(()) | Err(PlatformError::NoSuchVm { .. }) => {
                        progress(
                            r,
                            format!("Configuration cleanup completed for VM {name}"),
                            now_ms,
                            events,
                        );
                        false
                    }
                    Err(e) => {
                        // seed 004 L17716-17746: the restart still counts (gap 16); the
                        // cleanup is owed to the source when it is back.
                        let text = format!(
                            "ERROR: Restart has encountered an error for VM {name} during \
                             Configuration Cleanup: {e}"
                        );
                        tracing::warn!(vm = %vm, relocation = r.relocation_id, "{text}");
                        r.notes
                            .push(format!("cleanup on {} failed: {e}", r.request.from.name));
                        events.push(Event {
                            kind: EventKind::VmRestartStepFailed,
                            vm: Some(vm),
                            hm: None,
                            text,
                            at: now_ms,
                        });
                        true
                    }
                };
                finish(r, Outcome::Restarted, now_ms, ledger)?;
                return Ok(owed);
            }
            Phase::Done => return Ok(false),
        }
    }
}

/// A platform action refused by the fence: nothing was sent and nothing is written; the
/// restart keeps its phase (in memory and in its `relocation` row) so that whoever leads
/// next takes it over from there.
fn fenced(r: &Restart, e: &PlatformError) -> hsdb::Result<bool> {
    tracing::warn!(vm = %r.vm(), relocation = r.relocation_id, phase = %r.phase,
        "{e}; the restart waits in its phase");
    Ok(false)
}

fn set_phase(
    r: &mut Restart,
    phase: Phase,
    now_ms: i64,
    ledger: &mut dyn Ledger,
) -> hsdb::Result<()> {
    r.phase = phase;
    ledger.relocation_phase(r.relocation_id, phase.as_str(), now_ms)
}

fn finish(
    r: &mut Restart,
    outcome: Outcome,
    now_ms: i64,
    ledger: &mut dyn Ledger,
) -> hsdb::Result<()> {
    let result = match &outcome {
        Outcome::Restarted if r.notes.is_empty() => "success".to_owned(),
        Outcome::Restarted => format!("success ({})", r.notes.join("; ")),
        Outcome::Failed { why, .. } => format!("failed: {why}"),
    };
    set_phase(r, Phase::Done, now_ms, ledger)?;
    ledger.relocation_end(r.relocation_id, &result, now_ms)?;
    r.outcome = Some(outcome);
    Ok(())
}

fn fail(
    r: &mut Restart,
    why: String,
    retry_elsewhere: bool,
    now_ms: i64,
    ledger: &mut dyn Ledger,
    events: &mut Vec<Event>,
) -> hsdb::Result<()> {
    tracing::error!(vm = %r.vm(), relocation = r.relocation_id, retry_elsewhere, "{why}");
    events.push(Event {
        kind: EventKind::VmRestartFailed,
        vm: Some(*r.vm()),
        hm: None,
        text: why.clone(),
        at: now_ms,
    });
    finish(
        r,
        Outcome::Failed {
            why,
            retry_elsewhere,
        },
        now_ms,
        ledger,
    )
}
