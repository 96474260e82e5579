//! How a database file is opened, validated with ranges.

use std::time::Duration;

use crate::error::{Error, Result};

/// When SQLite waits for the disk (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Every commit is on disk before `apply` returns: no acknowledged transition is lost
    /// on a power cut (DESIGN.md §4). The default.
    #[default]
    Full,
    /// In WAL mode, commits are durable once the WAL is checkpointed: a power cut may lose
    /// the last commits but never corrupts the database. Faster; for tests and benches,
    /// or hosts that accept re-detection after a crash.
    Normal,
}

impl Synchronous {
    /// The `PRAGMA synchronous` value.
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Options of [`Hsdb::open`](crate::Hsdb::open) and [`Hsdb::connect`](crate::Hsdb::connect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// SQLite: durability of commits; [`Synchronous::Full`] by default. (PostgreSQL's
    /// durability is the server's `synchronous_commit`.)
    pub synchronous: Synchronous,
    /// How long a statement waits for another connection's lock before failing: SQLite's
    /// busy timeout ("database is locked"), PostgreSQL's `lock_timeout` (SQLSTATE
    /// 55P03); 5 s by default, 0..=600 s.
    pub busy_timeout: Duration,
    /// PostgreSQL: how long connecting may take when the target sets no
    /// `connect_timeout`; 5 s by default, 1..=600 s.
    pub connect_timeout: Duration,
    /// PostgreSQL: the longest a statement may run (`statement_timeout`, SQLSTATE
    /// 57014), so a write never hangs for ever on a server that stopped answering;
    /// 30 s by default, 1..=3600 s.
    pub statement_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

impl Options {
    /// Longest busy timeout accepted.
    pub const MAX_BUSY_TIMEOUT: Duration = Duration::from_secs(600);

    /// Check every value against its range; the error names the key and the range.
    pub fn validate(&self) -> Result<()> {
        if self.busy_timeout > Self::MAX_BUSY_TIMEOUT {
            return Err(Error::Options {
                key: "busy_timeout",
                value: format!("{:?}", self.busy_timeout),
                allowed: "0..=600 s",
            });
        }
        if self.connect_timeout < Duration::from_secs(1)
            || self.connect_timeout > Self::MAX_BUSY_TIMEOUT
        {
            return Err(Error::Options {
                key: "connect_timeout",
                value: format!("{:?}", self.connect_timeout),
                allowed: "1..=600 s",
            });
        }
        if self.statement_timeout < Duration::from_secs(1)
            || self.statement_timeout > Duration::from_secs(3600)
        {
            return Err(Error::Options {
                key: "statement_timeout",
                value: format!("{:?}", self.statement_timeout),
                allowed: "1..=3600 s",
            });
        }
        Ok(())
    }
}
