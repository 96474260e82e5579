//! Commands from the control plane to this monitor, through the HSDB (docs/operations.md,
//! "Commands from the control plane").
//!
//! The control plane enqueues a command for one monitor (`hm_command`): stop or start
//! HA monitoring of a VM, forget a VM that moved to another host, or fetch or confirm a
//! VM's application report (docs/hvncp.md "Application reports"; those complete when the
//! agent has answered, `runtime/reports.rs`). The HSDB writer
//! thread reads this monitor's open commands every `command_poll_ms` and hands them to
//! the dataplane thread, which owns the sessions and the heartbeat table and acts
//! (`runtime/commands.rs`); the writer then marks each one done with its result, after
//! the transitions of the action are committed. This module holds the types both
//! threads share and the two HSDB calls.
//!
//! A result is `CODE: detail`, `CODE` one of [`Code`]; the control plane decides on the
//! code, an operator reads the detail.

use core::fmt;

use hsdb::{CommandKind, Hsdb, Uuid};

/// Index of a command kind in [`CommandKind::ALL`], for per-kind counters.
pub fn kind_index(kind: CommandKind) -> usize {
    CommandKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default()
}

/// One open command for this monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Its id in the HSDB (increasing).
    pub id: i64,
    /// What it asks.
    pub kind: CommandKind,
    /// The VM.
    pub vm: Uuid,
    /// Its argument (CONFIRM_APP_REPORT: the generation in decimal).
    pub arg: Option<String>,
    /// When the control plane enqueued it, ms since the Unix epoch.
    pub created_ms: i64,
}

/// The outcome of a command, the first word of its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// STOP_MONITORING: the VM is no longer watched.
    Stopped,
    /// STOP_MONITORING of a VM whose monitoring was stopped already.
    AlreadyStopped,
    /// START_MONITORING: the VM's sessions are watched again.
    Started,
    /// START_MONITORING of a VM watched already.
    AlreadyMonitored,
    /// START_MONITORING of a known VM without a session now: watched once it pairs,
    /// MISSING if it does not within a Hello period plus `vm_miss_after`.
    AwaitingPairing,
    /// FORGET_VM: its peers and sessions dropped, no longer watched or awaited.
    Forgotten,
    /// The monitor never knew the VM (no session, no row, not awaited). For
    /// START_MONITORING the VM is awaited all the same, as for `AWAITING_PAIRING`.
    UnknownVm,
    /// FETCH_APP_REPORT: the agent's report follows the code (`REPORT: <body>`).
    Report,
    /// CONFIRM_APP_REPORT: the agent confirmed the generation (`CLEARED: gen=<n>`).
    Cleared,
    /// CONFIRM_APP_REPORT: the agent never had that generation (it restarted since).
    NotCleared,
    /// A report command for a VM without an established session with this monitor.
    NoSession,
    /// The agent did not answer a report command in time.
    Timeout,
    /// The agent's report does not parse, or its chunks do not fit together.
    BadReport,
    /// The command's argument is missing or invalid.
    BadArg,
    /// Too many report exchanges in progress.
    Busy,
}

impl Code {
    /// The code as written in the result.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Stopped => "STOPPED",
            Code::AlreadyStopped => "ALREADY_STOPPED",
            Code::Started => "STARTED",
            Code::AlreadyMonitored => "ALREADY_MONITORED",
            Code::AwaitingPairing => "AWAITING_PAIRING",
            Code::Forgotten => "FORGOTTEN",
            Code::UnknownVm => "UNKNOWN_VM",
            Code::Report => "REPORT",
            Code::Cleared => "CLEARED",
            Code::NotCleared => "NOT_CLEARED",
            Code::NoSession => "NO_SESSION",
            Code::Timeout => "TIMEOUT",
            Code::BadReport => "BAD_REPORT",
            Code::BadArg => "BAD_ARG",
            Code::Busy => "BUSY",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command acted on, to be marked done: its id, `CODE: detail`, and when it was acted
/// on (ms since the Unix epoch).
pub use hsdb::CommandDone as Completion;

/// Most commands read in one poll; the rest come at the next ones.
pub const READ_LIMIT: u32 = 4096;

/// This monitor's open commands with an id above `after`, in id order, at most
/// [`READ_LIMIT`].
pub fn read(hsdb: &Hsdb, hm: &Uuid, after: i64) -> hsdb::Result<Vec<Command>> {
    Ok(hsdb
        .commands_for(hm, after, READ_LIMIT)?
        .into_iter()
        .map(|row| Command {
            id: row.id,
            kind: row.kind,
            vm: row.vm,
            arg: row.arg,
            created_ms: row.created_ms,
        })
        .collect())
}

/// Mark `done` done, each with its result, in one transaction. One already marked (by
/// an earlier run that stopped before it knew) keeps its first result.
pub fn complete(hsdb: &mut Hsdb, done: &[Completion]) -> hsdb::Result<()> {
    let completed = hsdb.complete_commands(done)?;
    if completed < done.len() {
        tracing::debug!(
            commands = done.len(),
            already_done = done.len() - completed,
            "some commands were marked done already"
        );
    }
    Ok(())
}
