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

/// Options of [`Hsdb::open`](crate::Hsdb::open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Durability of commits; [`Synchronous::Full`] by default.
    pub synchronous: Synchronous,
    /// How long a statement waits for another connection's lock before failing with
    /// "database is locked"; 5 s by default, 0..=600 s.
    pub busy_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
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
        Ok(())
    }
}
