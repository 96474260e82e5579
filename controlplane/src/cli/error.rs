//! `hactl`'s exit codes and the one error type its commands return.

use std::path::PathBuf;
use std::process::ExitCode;

use super::config::ConfigError;
use crate::daemon::admin::AdminError;

/// The exit codes, documented in `hactl --help` and docs/operators.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done (`run`: stopped cleanly on SIGTERM/SIGINT).
    Ok = 0,
    /// 1: the operation failed (HSDB, platform, daemon error); the message says why.
    Failed = 1,
    /// 2: bad usage, a bad value or a bad configuration file; the message names the
    /// value and what is allowed.
    Usage = 2,
    /// 3: no `hactl run` answers on the admin socket.
    NotRunning = 3,
    /// 4: the VM, host, monitor or host group named does not exist.
    NotFound = 4,
    /// 5: the control plane refused the request (`host evacuate`: the plan is
    /// incomplete; the message gives each VM's reason).
    Refused = 5,
    /// 6: no controller finished the request in time; it stays queued.
    Waiting = 6,
    /// 7: `hactl verify` found a host whose loss would leave VMs without a place (the
    /// report is printed as with 0).
    Short = 7,
    /// 8: `hactl discover` wrote what it found, but some hosts did not answer (their VMs
    /// were not checked; the report is printed as with 0).
    Incomplete = 8,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }
}

/// Why a `hactl` command failed. Each variant says which [`Exit`] code it gives.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad value on the command line: names the argument, the value and what is
    /// allowed.
    #[error("{what} = {value}: expected {allowed}")]
    BadValue {
        /// The argument or key (`priority`, `TAG`, `--limit`).
        what: String,
        /// The value as given (quoted when text).
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A usage problem that is not one value (a missing argument, a flag that does not
    /// fit the command).
    #[error("{0}")]
    Usage(String),
    /// The configuration file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The object named does not exist.
    #[error("no {what} {name} in {}", hsdb.display())]
    NotFound {
        /// `VM`, `host`, `monitor`, `host group`.
        what: &'static str,
        /// The name or UUID as given.
        name: String,
        /// The HSDB searched.
        hsdb: PathBuf,
    },
    /// The HSDB file does not exist (a typo must not create an empty database).
    #[error("hsdb {}: no such file ({hint})", path.display())]
    NoHsdb {
        /// The path.
        path: PathBuf,
        /// What creates it.
        hint: &'static str,
    },
    /// The HSDB failed.
    #[error(transparent)]
    Hsdb(#[from] hsdb::Error),
    /// The `hsdb` setting (or `--hsdb`) or its password cannot be used.
    #[error(transparent)]
    Target(#[from] hsdb::TargetError),
    /// The admin socket.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// Anything else that failed while carrying out the command.
    #[error("{0}")]
    Failed(String),
    /// The control plane refused the request; why.
    #[error("{0}")]
    Refused(String),
    /// Not finished in time.
    #[error("{0}")]
    Waiting(String),
    /// The command ran and found a problem it reports: `report` goes to standard
    /// output as a success's would, `summary` to standard error (`hactl verify`).
    #[error("{summary}")]
    Findings {
        /// The full report.
        report: String,
        /// One line.
        summary: String,
    },
    /// The command did its work in part: `report` to standard output, `summary` to
    /// standard error (`hactl discover` with hosts that did not answer).
    #[error("{summary}")]
    Incomplete {
        /// The full report.
        report: String,
        /// One line.
        summary: String,
    },
}

impl CliError {
    /// The exit code this error gives.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::BadValue { .. }
            | CliError::Usage(_)
            | CliError::Config(_)
            | CliError::Target(_) => Exit::Usage,
            CliError::NotFound { .. } => Exit::NotFound,
            CliError::Refused(_) => Exit::Refused,
            CliError::Waiting(_) => Exit::Waiting,
            CliError::Findings { .. } => Exit::Short,
            CliError::Incomplete { .. } => Exit::Incomplete,
            CliError::Admin(AdminError::NotRunning { .. }) => Exit::NotRunning,
            CliError::NoHsdb { .. }
            | CliError::Hsdb(_)
            | CliError::Admin(_)
            | CliError::Failed(_) => Exit::Failed,
        }
    }

    /// A [`CliError::BadValue`].
    pub fn bad_value(
        what: impl Into<String>,
        value: impl Into<String>,
        allowed: impl Into<String>,
    ) -> CliError {
        CliError::BadValue {
            what: what.into(),
            value: value.into(),
            allowed: allowed.into(),
        }
    }
}
