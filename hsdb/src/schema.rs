//! The schema and its migrations.
//!
//! Migrations are an ordered list of SQL scripts. Each runs in its own `BEGIN IMMEDIATE`
//! transaction together with the `schema_version` row that records it, so a crash leaves
//! the database at the previous version, and two processes opening a fresh file at once
//! do not both migrate: the second waits for the first and then finds nothing to do.
//!
//! Never edit a released migration: append a new one.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};

/// One step of the schema's history.
pub(crate) struct Migration {
    /// Version the database has after this script.
    pub(crate) version: i64,
    /// What the step does, recorded in `schema_version.name`.
    pub(crate) name: &'static str,
    /// The script.
    pub(crate) sql: &'static str,
}

/// Every migration, in order; versions are 1, 2, 3, ….
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial schema",
        sql: include_str!("schema/v1.sql"),
    },
    Migration {
        version: 2,
        name: "index vm_hm by monitor and state",
        sql: include_str!("schema/v2.sql"),
    },
    Migration {
        version: 3,
        name: "state of each monitor interface",
        sql: include_str!("schema/v3.sql"),
    },
    Migration {
        version: 4,
        name: "control plane: pending columns, commands, parameters, relocation steps",
        sql: include_str!("schema/v4.sql"),
    },
    Migration {
        version: 5,
        name: "vm_hm.last_state STOPPED: monitoring stopped by the controller",
        sql: include_str!("schema/v5.sql"),
    },
];

/// The schema version this build writes: that of the last migration.
pub const SCHEMA_VERSION: i64 = 5;

/// Bring the database at `path` to [`SCHEMA_VERSION`].
///
/// Refuses a database newer than this build, and an SQLite database of something else
/// (tables but no `schema_version`).
///
/// A database already at [`SCHEMA_VERSION`] is only read: opening an up-to-date file
/// takes no write lock, so readers (the control plane, operators, tests) never compete
/// with the monitors' writers just by opening it (a monitor restarting next to a
/// process polling the file failed to start with "database is locked" before). A
/// migration's write lock is waited for up to `busy_timeout`, also retrying an
/// `SQLITE_BUSY` that comes back before that time (seen under lock races).
pub(crate) fn migrate(conn: &mut Connection, path: &Path, busy_timeout: Duration) -> Result<()> {
    if current_version(conn, path)? == SCHEMA_VERSION {
        return Ok(());
    }
    let started = std::time::Instant::now();
    for migration in MIGRATIONS {
        let sql_err = |source| Error::Migration {
            path: path.to_path_buf(),
            version: migration.version,
            source,
        };
        let tx = loop {
            match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
                Ok(tx) => break tx,
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && started.elapsed() < busy_timeout =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(open_error(path, e)),
            }
        };
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
        tx.execute_batch(migration.sql).map_err(sql_err)?;
        tx.prepare_cached("INSERT INTO schema_version (version, name) VALUES (?1, ?2)")
            .and_then(|mut stmt| stmt.execute((migration.version, migration.name)))
            .map_err(sql_err)?;
        tx.commit().map_err(sql_err)?;
    }
    // Also when there was nothing to migrate: a newer file must be refused.
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

/// The version recorded in the database; 0 for an empty database.
///
/// Whether `schema_version` exists and which other tables there are is read in ONE
/// statement, so both come from the same snapshot: read apart, another process could
/// commit the first migration in between and a fresh file would look like some other
/// program's database ("tables but no schema_version").
pub(crate) fn current_version(conn: &Connection, path: &Path) -> Result<i64> {
    let mut has_table = false;
    let mut tables = Vec::new();
    {
        let mut stmt = conn
            .prepare_cached(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' \
                 ORDER BY name = 'schema_version' DESC, name LIMIT 6",
            )
            .map_err(|e| open_error(path, e))?;
        let mut rows = stmt.query([]).map_err(|e| open_error(path, e))?;
        while let Some(row) = rows.next().map_err(|e| open_error(path, e))? {
            let name: String = row.get(0).map_err(|e| open_error(path, e))?;
            if name == "schema_version" {
                has_table = true;
                break;
            }
            tables.push(name);
        }
    }
    if !has_table {
        if !tables.is_empty() {
            tables.truncate(5);
            return Err(Error::ForeignDatabase {
                path: path.to_path_buf(),
                tables: tables.join(", "),
            });
        }
        return Ok(0);
    }
    conn.prepare_cached("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .map_err(|e| open_error(path, e))
}

/// Classify a failure while opening: not a database, read-only, or anything else.
pub(crate) fn open_error(path: &Path, source: rusqlite::Error) -> Error {
    use rusqlite::ffi::ErrorCode;
    let path = path.to_path_buf();
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => Error::NotADatabase { path },
        Some(ErrorCode::ReadOnly) => Error::ReadOnly { path },
        _ => Error::Open { path, source },
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
