//! The decision log: every decision the engine takes, with its reason and the numbers
//! behind it, kept in memory (bounded) for the daemon to show, and logged through
//! `tracing` as it is taken.

use std::collections::VecDeque;
use std::fmt;

use hsdb::{HostId, Uuid};

/// What a decision is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A host.
    Host {
        /// Id.
        id: HostId,
        /// Name.
        name: String,
    },
    /// A VM.
    Vm {
        /// UUID.
        uuid: Uuid,
        /// Name (the UUID when it has none).
        name: String,
    },
    /// A monitor.
    Monitor {
        /// UUID.
        uuid: Uuid,
    },
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Host { name, .. } => write!(f, "host {name}"),
            Subject::Vm { name, .. } => write!(f, "vm {name}"),
            Subject::Monitor { uuid } => write!(f, "monitor {uuid}"),
        }
    }
}

/// The verdict of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Below a threshold, or not eligible: nothing to do.
    NoAction,
    /// Evidence not counted (a deaf monitor, a host decision pending).
    Withheld,
    /// The VM is already being restarted, or its host's relocation covers it.
    Busy,
    /// A probe failed or timed out: no evidence, decided again at the next scan.
    ProbeFailed,
    /// The VM answers a ping: its missed heartbeats are ignored.
    Pingable,
    /// A VM failure is recovered: a restart is planned.
    Recover,
    /// Advisory policy: the restart is only notified.
    Advised,
    /// No host can take the VM.
    NoHost,
    /// HBoffset set (the VM is Not Activated).
    OffsetSet,
    /// VM_NONRESP_DETECTED.
    NonResponsive,
    /// VM_LPM_HANG_DETECTED.
    LpmHang,
    /// Every monitor of a host unhealthy, not yet for hostFDT.
    Waiting,
    /// Host failure: its managed VMs are relocated.
    HostFailure,
    /// Planned shutdown of a host: not a failure.
    PlannedShutdown,
    /// The host's hypervisor answers: no host failure.
    HostAlive,
    /// A failed host has healthy monitors again.
    HostBack,
    /// A doorbell was handled.
    Doorbell,
    /// A critical application failure escalates to a restart.
    AppEscalation,
    /// An application report was fetched, stored, confirmed, or its fetch failed.
    AppReport,
    /// A managed VM moved (live migration): not a failure.
    Moved,
    /// A restart ended (its outcome in the reason).
    RestartEnded,
    /// A restart an earlier term left unfinished was taken over (or closed).
    TakenOver,
    /// A cleanup owed to a returning host was done, failed, or found unneeded.
    Cleanup,
    /// The VM's restart budget is spent: not restarted.
    BudgetExhausted,
    /// Planned maintenance: an evacuation or restore step, or a host in maintenance.
    Maintenance,
    /// The periodic verify: whether the group can absorb the loss of each host.
    Verify,
}

impl Verdict {
    /// The name shown by `hactl`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::NoAction => "no_action",
            Verdict::Withheld => "withheld",
            Verdict::Busy => "busy",
            Verdict::ProbeFailed => "probe_failed",
            Verdict::Pingable => "pingable",
            Verdict::Recover => "recover",
            Verdict::Advised => "advised",
            Verdict::NoHost => "no_host",
            Verdict::OffsetSet => "hb_offset_set",
            Verdict::NonResponsive => "nonresponsive",
            Verdict::LpmHang => "lpm_hang",
            Verdict::Waiting => "waiting",
            Verdict::HostFailure => "host_failure",
            Verdict::PlannedShutdown => "planned_shutdown",
            Verdict::HostAlive => "host_alive",
            Verdict::HostBack => "host_back",
            Verdict::Doorbell => "doorbell",
            Verdict::AppEscalation => "app_escalation",
            Verdict::AppReport => "app_report",
            Verdict::Moved => "moved",
            Verdict::RestartEnded => "restart_ended",
            Verdict::TakenOver => "taken_over",
            Verdict::Cleanup => "cleanup",
            Verdict::BudgetExhausted => "budget_exhausted",
            Verdict::Maintenance => "maintenance",
            Verdict::Verify => "verify",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Sequence number, from 1, never reused within a run.
    pub seq: u64,
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// The scan that took it.
    pub scan: u64,
    /// About what.
    pub subject: Subject,
    /// What was decided.
    pub verdict: Verdict,
    /// Why, with the numbers.
    pub reason: String,
}

/// The last decisions, at most `capacity`.
#[derive(Debug, Clone)]
pub struct DecisionLog {
    entries: VecDeque<Decision>,
    capacity: usize,
    next_seq: u64,
}

impl DecisionLog {
    /// An empty log keeping at most `capacity` decisions.
    pub fn new(capacity: usize) -> DecisionLog {
        DecisionLog {
            entries: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
            next_seq: 1,
        }
    }

    /// Record a decision and log it.
    pub fn push(
        &mut self,
        at_ms: i64,
        scan: u64,
        subject: Subject,
        verdict: Verdict,
        reason: String,
    ) {
        match verdict {
            Verdict::Recover
            | Verdict::HostFailure
            | Verdict::NoHost
            | Verdict::NonResponsive
            | Verdict::LpmHang
            | Verdict::Advised
            | Verdict::AppEscalation => {
                tracing::warn!(scan, subject = %subject, verdict = verdict.as_str(), "{reason}");
            }
            // The report cycle's steps: its failures and each application's change are
            // logged at warn / info where they happen (fde/app.rs).
            Verdict::NoAction | Verdict::Busy | Verdict::Waiting | Verdict::AppReport => {
                tracing::debug!(scan, subject = %subject, verdict = verdict.as_str(), "{reason}");
            }
            _ => tracing::info!(scan, subject = %subject, verdict = verdict.as_str(), "{reason}"),
        }
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(Decision {
            seq: self.next_seq,
            at_ms,
            scan,
            subject,
            verdict,
            reason,
        });
        self.next_seq += 1;
    }

    /// The decisions kept, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Decision> {
        self.entries.iter()
    }

    /// Decisions with a sequence number above `seq`.
    pub fn since(&self, seq: u64) -> impl Iterator<Item = &Decision> {
        self.entries.iter().filter(move |d| d.seq > seq)
    }

    /// Decisions kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No decision kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decisions taken since the start, including those no longer kept.
    pub fn total(&self) -> u64 {
        self.next_seq - 1
    }
}
