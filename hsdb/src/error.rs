//! The one error type of the HSDB.

use std::path::PathBuf;

use hvha_identity::Uuid;

use crate::db::DbError;

/// Why an HSDB operation failed. Every variant that concerns the database names it (the
/// SQLite file's path, or the PostgreSQL target without its password); every variant
/// that concerns a value names it.
///
/// [`Error::is_unavailable`] tells a database that cannot be reached now (retry later,
/// on a new connection) from a refusal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option is outside its allowed range.
    #[error("hsdb options: {key} = {value} is out of range ({allowed})")]
    Options {
        /// The offending option.
        key: &'static str,
        /// Its value, as text.
        value: String,
        /// The allowed range.
        allowed: &'static str,
    },
    /// The file could not be opened or created (missing directory, a directory in the
    /// way, no permission, …).
    #[error("cannot open HSDB {}: {source}", path.display())]
    Open {
        /// The database path.
        path: PathBuf,
        /// What the database said.
        source: DbError,
    },
    /// The file exists but is not an SQLite database.
    #[error("{} is not an HSDB: not an SQLite database file", path.display())]
    NotADatabase {
        /// The database path.
        path: PathBuf,
    },
    /// The database is something else's: it has tables (in PostgreSQL: in the current
    /// schema) but no `schema_version`, and we refuse to add our tables to it.
    #[error("{} is not an HSDB: a database with tables ({tables}) but no schema_version", path.display())]
    ForeignDatabase {
        /// The database path.
        path: PathBuf,
        /// Some of the tables it holds, comma-separated.
        tables: String,
    },
    /// The database can only be opened read-only; an HSDB must be writable.
    #[error("HSDB {} is read-only (file or directory not writable)", path.display())]
    ReadOnly {
        /// The database path.
        path: PathBuf,
    },
    /// The database was written by a newer version of this software.
    #[error(
        "HSDB {} has schema version {found}, newer than version {supported} that this \
         build knows; use a newer build",
        path.display()
    )]
    TooNew {
        /// The database path.
        path: PathBuf,
        /// Schema version found in the file.
        found: i64,
        /// Newest schema version this build knows.
        supported: i64,
    },
    /// A read-only opener found a file whose schema is older than this build's: it
    /// never migrates, so a writer (a monitor, `hactl`) must open the file first.
    #[error(
        "HSDB {} has schema version {found}, older than version {supported} that this \
         build reads; open it read-write once (start hmd or hactl) to migrate it",
        path.display()
    )]
    TooOld {
        /// The database path.
        path: PathBuf,
        /// Schema version found in the file (0: empty or not an HSDB yet).
        found: i64,
        /// The schema version this build reads.
        supported: i64,
    },
    /// A row the operation needs does not exist.
    #[error("no {what} {key} in the HSDB")]
    NotFound {
        /// What kind of row: `host`, `vm`, `host monitor`, `relocation`.
        what: &'static str,
        /// Its key, as text.
        key: String,
    },
    /// A row the operation would add exists already.
    #[error("{what} {key} exists already in the HSDB")]
    Exists {
        /// What kind of row: `collocation`, `anticollocation`, `workgroup`.
        what: &'static str,
        /// Its key, as text.
        key: String,
    },
    /// The caller's check refused the change ([`Hsdb::policy_change`](crate::Hsdb::policy_change));
    /// the transaction was rolled back, nothing written.
    #[error("{op}: refused by the caller's check; nothing written")]
    Refused {
        /// The operation.
        op: &'static str,
    },
    /// SQLite would not switch the file to write-ahead logging.
    #[error("HSDB {}: journal_mode is {mode}, expected wal", path.display())]
    NoWal {
        /// The database path.
        path: PathBuf,
        /// The journal mode SQLite reported.
        mode: String,
    },
    /// A migration script failed; its transaction was rolled back.
    #[error("HSDB {}: migration to schema version {version} failed: {source}", path.display())]
    Migration {
        /// The database path.
        path: PathBuf,
        /// The version the migration leads to.
        version: i64,
        /// What the database said.
        source: DbError,
    },
    /// A transition names a host monitor that was never registered; the whole batch was
    /// rolled back.
    #[error(
        "transition {index} names host monitor {hm}, which is not registered \
         (register_hm first); batch rolled back"
    )]
    UnknownHm {
        /// Position of the transition in the batch.
        index: usize,
        /// The monitor's UUID.
        hm: Uuid,
    },
    /// A host monitor is registered on a host that does not exist.
    #[error("host monitor {hm}: host {host} does not exist (upsert_host first)")]
    UnknownHost {
        /// The monitor's UUID.
        hm: Uuid,
        /// The missing host id.
        host: i64,
    },
    /// A transition failed in SQLite; the whole batch was rolled back.
    #[error("transition {index} ({kind}) failed, batch rolled back: {source}")]
    Apply {
        /// Position of the transition in the batch.
        index: usize,
        /// The transition's kind.
        kind: &'static str,
        /// What the database said.
        source: DbError,
    },
    /// A value read from the database is not valid for its column (edited by hand, or
    /// written by something else).
    #[error("HSDB value {table}.{column} = {value:?} is not a valid {expected}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The value, as text.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The integrity check reported problems (SQLite: `PRAGMA integrity_check`;
    /// PostgreSQL: missing tables, invalid indexes or constraints).
    #[error("HSDB integrity check failed: {report}")]
    Integrity {
        /// What SQLite reported, one problem per line.
        report: String,
    },
    /// Cannot connect to the PostgreSQL HSDB (or set up the session).
    #[error("cannot connect to the HSDB {target}: {source}")]
    Connect {
        /// The target, without any password.
        target: String,
        /// What the client or the server said.
        source: DbError,
    },
    /// A write transaction kept failing on deadlocks or serialization failures with
    /// concurrent writers (PostgreSQL) and was given up after `attempts` tries.
    #[error(
        "{op}: gave up after {attempts} attempts, each rolled back by a deadlock or serialization failure; last: {source}"
    )]
    Contended {
        /// The operation.
        op: &'static str,
        /// How many times the transaction ran.
        attempts: u32,
        /// The last failure.
        source: Box<Error>,
    },
    /// This connection's writes are bound to a leader lease
    /// ([`Hsdb::set_fence`](crate::Hsdb::set_fence)) that it no longer holds: the lease was taken over,
    /// expired or released, or the writer's own check refused. Nothing was written.
    #[error("fenced: host group {host_group:?}, token {token}: {why}; nothing written")]
    Fenced {
        /// The lease's host group.
        host_group: String,
        /// The token the writes were bound to.
        token: i64,
        /// Why, in words (who holds the lease now, or the local reason).
        why: String,
    },
    /// Any other database failure, with the operation that hit it.
    #[error("{op}: {source}")]
    Sql {
        /// The operation, e.g. `register_hm`.
        op: &'static str,
        /// What the database said.
        source: DbError,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The database cannot be reached, the connection broke, or the server cannot serve
    /// now: retry later, on a new connection ([`Hsdb::is_broken`](crate::Hsdb::is_broken)
    /// says whether this one is dead). As opposed to a refusal (bad data, a schema too
    /// new, a foreign database), which a retry does not cure.
    ///
    /// PostgreSQL: the connection refused, closed or reset, any I/O error, a connect
    /// timeout, SQLSTATE class 08 (connection exception) and 53 (insufficient
    /// resources: too many connections, disk full), 57P01-57P03 (shutting down,
    /// starting up), 57014 (a statement cancelled by `statement_timeout`), 55P03 (a lock
    /// not granted within `lock_timeout`), and contention that outlived the retries
    /// ([`Error::Contended`]). SQLite: the database stayed locked (`SQLITE_BUSY`,
    /// `SQLITE_LOCKED`) for longer than `busy_timeout`.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Open { source, .. }
            | Error::Migration { source, .. }
            | Error::Apply { source, .. }
            | Error::Connect { source, .. }
            | Error::Sql { source, .. } => source.is_unavailable(),
            Error::Contended { .. } => true,
            _ => false,
        }
    }

    /// The database error under this one, if any.
    pub fn db_error(&self) -> Option<&DbError> {
        match self {
            Error::Open { source, .. }
            | Error::Migration { source, .. }
            | Error::Apply { source, .. }
            | Error::Connect { source, .. }
            | Error::Sql { source, .. } => Some(source),
            Error::Contended { source, .. } => source.db_error(),
            _ => None,
        }
    }

    /// A deadlock or serialization failure: the whole transaction may be run again.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Error::Apply { source, .. } | Error::Sql { source, .. } => source.is_retryable(),
            _ => false,
        }
    }
}
