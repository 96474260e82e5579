//! The schema and its migrations, for both backends.
//!
//! Migrations are an ordered list; each step has an SQLite script and a PostgreSQL one
//! (`schema/vN.sql`, `schema/pg/vN.sql`) leading to the same version. Each runs in its
//! own transaction together with the `schema_version` row that records it, so a crash
//! leaves the database at the previous version, and two processes opening a fresh
//! database at once do not both migrate: SQLite's `BEGIN IMMEDIATE` serialises them, on
//! PostgreSQL each migration's transaction first takes the advisory lock
//! [`MIGRATION_LOCK`]; the second waits for the first and then finds nothing to do.
//!
//! Never edit a released migration: append a new one.

use std::path::Path;
use std::time::Duration;

use crate::db::{Conn, DbError, TxKind, params};
use crate::error::{Error, Result};

/// One step of the schema's history.
pub(crate) struct Migration {
    /// Version the database has after this script.
    pub(crate) version: i64,
    /// What the step does, recorded in `schema_version.name`.
    pub(crate) name: &'static str,
    /// The SQLite script.
    pub(crate) sqlite: &'static str,
    /// The PostgreSQL script.
    pub(crate) postgres: &'static str,
}

/// The PostgreSQL advisory lock (transaction-scoped) every migration transaction takes
/// before reading the version: `"HVHA"` then 1.
pub(crate) const MIGRATION_LOCK: i64 = 0x4856_4841_0000_0001;

/// Every migration, in order; versions are 1, 2, 3, ….
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial schema",
        sqlite: include_str!("schema/v1.sql"),
        postgres: include_str!("schema/pg/v1.sql"),
    },
    Migration {
        version: 2,
        name: "index vm_hm by monitor and state",
        sqlite: include_str!("schema/v2.sql"),
        postgres: include_str!("schema/pg/v2.sql"),
    },
    Migration {
        version: 3,
        name: "state of each monitor interface",
        sqlite: include_str!("schema/v3.sql"),
        postgres: include_str!("schema/pg/v3.sql"),
    },
    Migration {
        version: 4,
        name: "control plane: pending columns, commands, parameters, relocation steps",
        sqlite: include_str!("schema/v4.sql"),
        postgres: include_str!("schema/pg/v4.sql"),
    },
    Migration {
        version: 5,
        name: "vm_hm.last_state STOPPED: monitoring stopped by the controller",
        sqlite: include_str!("schema/v5.sql"),
        postgres: include_str!("schema/pg/v5.sql"),
    },
    Migration {
        version: 6,
        name: "leader_lease: the control plane's leader per host group",
        sqlite: include_str!("schema/v6.sql"),
        postgres: include_str!("schema/pg/v6.sql"),
    },
    Migration {
        version: 7,
        name: "relocation policies: VM sets with members, host exclusions, flexible capacity",
        sqlite: include_str!("schema/v7.sql"),
        postgres: include_str!("schema/pg/v7.sql"),
    },
    Migration {
        version: 8,
        name: "owed cleanups, operator requests, hosts in maintenance",
        sqlite: include_str!("schema/v8.sql"),
        postgres: include_str!("schema/pg/v8.sql"),
    },
    Migration {
        version: 9,
        name: "application reports: report commands with an argument, app report columns",
        sqlite: include_str!("schema/v9.sql"),
        postgres: include_str!("schema/pg/v9.sql"),
    },
    Migration {
        version: 10,
        name: "index of the application-report fetches the control plane has not handled",
        sqlite: include_str!("schema/v10.sql"),
        postgres: include_str!("schema/pg/v10.sql"),
    },
    Migration {
        version: 11,
        name: "discovery: activities, what discovery found of each VM and host",
        sqlite: include_str!("schema/v11.sql"),
        postgres: include_str!("schema/pg/v11.sql"),
    },
    Migration {
        version: 12,
        name: "operator requests and relocations of kind MOVE, relocation reasons",
        sqlite: include_str!("schema/v12.sql"),
        postgres: include_str!("schema/pg/v12.sql"),
    },
];

/// The schema version this build writes: that of the last migration.
pub const SCHEMA_VERSION: i64 = 12;

/// Bring the database to [`SCHEMA_VERSION`]; `path` names it in errors (the SQLite
/// file, or the PostgreSQL target without its password).
///
/// Refuses a database newer than this build, and a database of something else (tables
/// but no `schema_version`).
///
/// A database already at [`SCHEMA_VERSION`] is only read: opening an up-to-date file
/// takes no write lock, so readers (the control plane, operators, tests) never compete
/// with the monitors' writers just by opening it (a monitor restarting next to a
/// process polling the file failed to start with "database is locked" before). A
/// migration's write lock is waited for up to `busy_timeout`, also retrying an
/// `SQLITE_BUSY` that comes back before that time (seen under lock races).
pub(crate) fn migrate(conn: &Conn, path: &Path, busy_timeout: Duration) -> Result<()> {
    if current_version(conn, path)? == SCHEMA_VERSION {
        return Ok(());
    }
    for migration in MIGRATIONS {
        let sql_err = |source| Error::Migration {
            path: path.to_path_buf(),
            version: migration.version,
            source,
        };
        let tx = conn
            .begin("migrate", TxKind::Write, busy_timeout)
            .map_err(|e| classify(path, e))?;
        if tx.is_pg() {
            tx.query_opt(
                "migrate",
                "",
                "SELECT pg_advisory_xact_lock(?1)",
                params![MIGRATION_LOCK],
                |_| Ok(()),
            )
            .map_err(|e| classify(path, e))?;
        }
        // Read the version inside the write transaction: another process may have
        // migrated while we waited for the lock.
        let current = current_version(&tx, path)?;
        if current > SCHEMA_VERSION {
            return Err(Error::TooNew {
                path: path.to_path_buf(),
                found: current,
                supported: SCHEMA_VERSION,
            });
        }
        if current >= migration.version {
            continue;
        }
        let script = if tx.is_pg() {
            migration.postgres
        } else {
            migration.sqlite
        };
        tx.batch_raw(script).map_err(sql_err)?;
        tx.execute_raw(
            "INSERT INTO schema_version (version, name) VALUES (?1, ?2)",
            params![migration.version, migration.name],
        )
        .map_err(sql_err)?;
        tx.commit("migrate").map_err(|e| match e {
            Error::Sql { source, .. } => sql_err(source),
            e => e,
        })?;
    }
    // Also when there was nothing to migrate: a newer database must be refused.
    let current = current_version(conn, path)?;
    if current > SCHEMA_VERSION {
        return Err(Error::TooNew {
            path: path.to_path_buf(),
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// The tables of the database (PostgreSQL: of its current schema), `schema_version`
/// first if it exists, then by name; at most 6.
const SQLITE_TABLES: &str = "SELECT name FROM sqlite_master WHERE type = 'table' \
    AND name NOT LIKE 'sqlite_%' \
    ORDER BY name = 'schema_version' DESC, name LIMIT 6";
const PG_TABLES: &str = "SELECT c.relname::text FROM pg_catalog.pg_class c \
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') \
    ORDER BY c.relname = 'schema_version' DESC, c.relname LIMIT 6";

/// The version recorded in the database; 0 for an empty database.
///
/// Whether `schema_version` exists and which other tables there are is read in ONE
/// statement, so both come from the same snapshot: read apart, another process could
/// commit the first migration in between and a fresh database would look like some
/// other program's ("tables but no schema_version").
pub(crate) fn current_version(conn: &Conn, path: &Path) -> Result<i64> {
    let sql = if conn.is_pg() {
        PG_TABLES
    } else {
        SQLITE_TABLES
    };
    let names = conn
        .query_texts("schema_version", sql, params![])
        .map_err(|e| classify(path, e))?;
    if names.first().map(String::as_str) != Some("schema_version") {
        if !names.is_empty() {
            let mut tables = names;
            tables.truncate(5);
            return Err(Error::ForeignDatabase {
                path: path.to_path_buf(),
                tables: tables.join(", "),
            });
        }
        return Ok(0);
    }
    Ok(conn
        .query_int(
            "schema_version",
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            params![],
        )
        .map_err(|e| classify(path, e))?
        .unwrap_or(0))
}

/// An SQLite failure while opening, classified: not a database, read-only, or anything
/// else; other errors unchanged.
pub(crate) fn classify(path: &Path, e: Error) -> Error {
    match e {
        Error::Sql {
            source: DbError::Sqlite(source),
            ..
        } => open_error(path, source),
        e => e,
    }
}

/// Classify a failure while opening: not a database, read-only, or anything else.
pub(crate) fn open_error(path: &Path, source: rusqlite::Error) -> Error {
    use rusqlite::ffi::ErrorCode;
    let path = path.to_path_buf();
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => Error::NotADatabase { path },
        Some(ErrorCode::ReadOnly) => Error::ReadOnly { path },
        _ => Error::Open {
            path,
            source: source.into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_versions_are_consecutive() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i64::try_from(i + 1).expect("few migrations"));
        }
        assert_eq!(
            MIGRATIONS.last().map(|m| m.version),
            Some(SCHEMA_VERSION),
            "SCHEMA_VERSION is the last migration's"
        );
    }
}
