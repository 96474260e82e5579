//! The one error type of the HSDB.

use std::path::PathBuf;

use hvha_identity::Uuid;

/// Why an HSDB operation failed. Every variant that concerns the database file names its
/// path; every variant that concerns a value names it.
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
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The file exists but is not an SQLite database.
    #[error("{} is not an HSDB: not an SQLite database file", path.display())]
    NotADatabase {
        /// The database path.
        path: PathBuf,
    },
    /// The file is an SQLite database of something else: it has tables but no
    /// `schema_version`, and we refuse to add our tables to it.
    #[error("{} is not an HSDB: an SQLite database with tables ({tables}) but no schema_version", path.display())]
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
        /// What SQLite said.
        source: rusqlite::Error,
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
        /// What SQLite said.
        source: rusqlite::Error,
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
    /// `PRAGMA integrity_check` reported problems.
    #[error("HSDB integrity check failed: {report}")]
    Integrity {
        /// What SQLite reported, one problem per line.
        report: String,
    },
    /// Any other SQLite failure, with the operation that hit it.
    #[error("{op}: {source}")]
    Sql {
        /// The operation, e.g. `register_hm`.
        op: &'static str,
        /// What SQLite said.
        source: rusqlite::Error,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach an operation name to a SQLite error.
pub(crate) trait Context<T> {
    fn op(self, op: &'static str) -> Result<T>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn op(self, op: &'static str) -> Result<T> {
        self.map_err(|source| Error::Sql { op, source })
    }
}
