//! [`Hsdb`]: opening the database (an SQLite file or a PostgreSQL database), registration
//! writes and every read.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hvha_identity::MacAddr;
use hvha_identity::Uuid;
use rusqlite::{Connection, OpenFlags};

use crate::codec::{Columns, UuidText, bits_from_sql, version_text};
use crate::db::{Backend, Conn, PgConn, Tx, TxKind, params};
use crate::error::{Error, Result};
use crate::model::{
    DetectionSpeed, EventRow, HeartbeatCounts, HeartbeatState, HmInterfaceRow, HmRecord, HmRow,
    HmState, HostId, HostRecord, InterfaceState, PendingKind, PendingRow, Priority, VmHmRow, VmRow,
    VmState,
};
use crate::options::Options;
use crate::schema::{self, open_error};

/// Statements kept prepared per SQLite connection; more than the crate has, so none is
/// ever re-prepared.
const STATEMENT_CACHE: usize = 96;

/// How many times a write transaction runs when PostgreSQL rolls it back for a deadlock
/// or a serialization failure before [`Error::Contended`] is returned.
pub(crate) const WRITE_ATTEMPTS: u32 = 8;

/// Every table of the schema (the integrity check on PostgreSQL looks for each).
const TABLES: &[&str] = &[
    "schema_version",
    "host",
    "hm",
    "vm",
    "vm_hm",
    "pending",
    "app",
    "event",
    "event_consumer",
    "relocation",
    "policy",
    "hm_interface",
    "hm_command",
    "param",
    "relocation_step",
    "leader_lease",
    "policy_member",
    "vm_host_exclusion",
    "flexible_capacity",
];

/// An open Health Status Database.
///
/// One connection, to an SQLite file or a PostgreSQL database ([`Hsdb::backend`]);
/// `Send`, so it can live on the writer thread that owns it. Writes take `&mut self` and
/// each is one transaction.
#[derive(Debug)]
pub struct Hsdb {
    pub(crate) conn: Conn,
    path: PathBuf,
    /// How long a write waits for the write lock (`Options::busy_timeout`).
    busy_timeout: Duration,
    /// The leader lease every write transaction is checked against (`lease.rs`).
    pub(crate) fence: Option<crate::lease::Fence>,
}

impl Hsdb {
    /// Open (or create) the database at `path` and bring its schema up to date.
    ///
    /// Errors name the path: [`Error::NotADatabase`] for a file that is not SQLite,
    /// [`Error::ForeignDatabase`] for someone else's SQLite file, [`Error::ReadOnly`] or
    /// [`Error::Open`] when it cannot be written or created, [`Error::TooNew`] for a
    /// schema newer than this build.
    pub fn open(path: impl AsRef<Path>, options: &Options) -> Result<Hsdb> {
        options.validate()?;
        let path = path.as_ref();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, e))?;
        // SQLite silently falls back to read-only when the file is not writable.
        if conn.is_readonly("main").map_err(|e| open_error(path, e))? {
            return Err(Error::ReadOnly {
                path: path.to_path_buf(),
            });
        }
        conn.busy_timeout(options.busy_timeout)
            .map_err(|e| open_error(path, e))?;
        // The first statement that reads the file: a non-database fails here. Switching a
        // fresh file to WAL needs an exclusive lock, and SQLite reports a conflict with
        // another process doing the same as SQLITE_BUSY at once, without its busy
        // handler: retry up to busy_timeout, as the migrations do.
        let started = std::time::Instant::now();
        let mode: String = loop {
            match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
                Ok(mode) => break mode,
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && started.elapsed() < options.busy_timeout =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(open_error(path, e)),
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::NoWal {
                path: path.to_path_buf(),
                mode,
            });
        }
        conn.pragma_update(None, "synchronous", options.synchronous.pragma())
            .map_err(|e| open_error(path, e))?;
        Hsdb::finish_open(conn, path.to_path_buf(), options.busy_timeout)
    }

    /// Open the database at `path` for reading only (the control plane's readers,
    /// operators' queries): `SQLITE_OPEN_READ_ONLY`, so it never creates the file, never
    /// migrates it and never takes the write lock — in WAL mode its reads neither wait
    /// for the monitors' writes nor hold them up. Every write through it fails.
    ///
    /// The schema must be exactly this build's: an older one is [`Error::TooOld`]
    /// (a writer migrates it at its next open), a newer one [`Error::TooNew`].
    pub fn open_read_only(path: impl AsRef<Path>, options: &Options) -> Result<Hsdb> {
        options.validate()?;
        let path = path.as_ref();
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(path, flags).map_err(|e| open_error_read(path, e))?;
        conn.busy_timeout(options.busy_timeout)
            .map_err(|e| open_error_read(path, e))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let conn = Conn::Sqlite(conn);
        check_version_read_only(&conn, path)?;
        // Belt and braces: even a statement that tries cannot write.
        if let Some(c) = conn.sqlite() {
            c.pragma_update(None, "query_only", "ON")
                .map_err(|e| open_error_read(path, e))?;
        }
        Ok(Hsdb {
            conn,
            path: path.to_path_buf(),
            busy_timeout: options.busy_timeout,
            fence: None,
        })
    }

    /// A private database in memory, for tests: same schema, no file, no WAL.
    pub fn open_in_memory() -> Result<Hsdb> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| open_error(&path, e))?;
        Hsdb::finish_open(conn, path, Duration::ZERO)
    }

    fn finish_open(conn: Connection, path: PathBuf, busy_timeout: Duration) -> Result<Hsdb> {
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| open_error(&path, e))?;
        let conn = Conn::Sqlite(conn);
        schema::migrate(&conn, &path, busy_timeout)?;
        Ok(Hsdb {
            conn,
            path,
            busy_timeout,
            fence: None,
        })
    }

    /// Open the HSDB `target` names — the `hsdb` setting of `hmd` and `hactl`, parsed by
    /// [`Target::parse`](crate::Target::parse) (and given its password by
    /// [`Target::with_password`](crate::Target::with_password)) — read-write, bringing
    /// its schema up to date: [`Hsdb::open`] for an SQLite path,
    /// [`Hsdb::connect_config`] for a PostgreSQL URL. Errors name the target without
    /// its password.
    pub fn connect(target: &crate::Target, options: &Options) -> Result<Hsdb> {
        match target {
            crate::Target::Sqlite(path) => Hsdb::open(path, options),
            crate::Target::Postgres(pg) => {
                Hsdb::connect_postgres(&pg.config(), &pg.to_string(), options, false)
            }
        }
    }

    /// Like [`Hsdb::connect`], for reading only: [`Hsdb::open_read_only`] for an SQLite
    /// path, [`Hsdb::connect_config_read_only`] for a PostgreSQL URL.
    pub fn connect_read_only(target: &crate::Target, options: &Options) -> Result<Hsdb> {
        match target {
            crate::Target::Sqlite(path) => Hsdb::open_read_only(path, options),
            crate::Target::Postgres(pg) => {
                Hsdb::connect_postgres(&pg.config(), &pg.to_string(), options, true)
            }
        }
    }

    /// Connect to the PostgreSQL HSDB `config` describes and bring its schema up to
    /// date (creating it in an empty database). [`Hsdb::connect`] with a target parsed
    /// from the `hsdb` setting is the usual way; this is the same for a ready-made
    /// `postgres::Config` (its password, if any, is used and never shown: errors name
    /// the database as `postgres://user@host:port/dbname`).
    ///
    /// Errors: [`Error::Connect`] (unreachable, refused, authentication),
    /// [`Error::ForeignDatabase`] (tables in the current schema but no
    /// `schema_version`), [`Error::TooNew`].
    pub fn connect_config(config: &postgres::Config, options: &Options) -> Result<Hsdb> {
        Hsdb::connect_postgres(config, &describe(config), options, false)
    }

    /// Like [`Hsdb::connect_config`], read-only: never migrates, the schema must be
    /// exactly this build's ([`Error::TooOld`], [`Error::TooNew`]), and the session is
    /// read-only (`default_transaction_read_only = on`): every write through it fails.
    pub fn connect_config_read_only(config: &postgres::Config, options: &Options) -> Result<Hsdb> {
        Hsdb::connect_postgres(config, &describe(config), options, true)
    }

    /// Connect to a PostgreSQL HSDB described by `config` (named `name` in errors: the
    /// target without its password) and bring its schema up to date, or, with
    /// `read_only`, check that it is exactly this build's and make the session read-only
    /// (`default_transaction_read_only`).
    ///
    /// The session gets `statement_timeout` ([`Options::statement_timeout`]),
    /// `lock_timeout` ([`Options::busy_timeout`]) and
    /// `idle_in_transaction_session_timeout` (the statement timeout too: a client paused
    /// inside a transaction does not hold its row locks for ever). No TLS: the HSDB is
    /// reached over a trusted network or a local socket (docs/hsdb.md §6).
    pub(crate) fn connect_postgres(
        config: &postgres::Config,
        name: &str,
        options: &Options,
        read_only: bool,
    ) -> Result<Hsdb> {
        options.validate()?;
        let mut config = config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("hvha");
        }
        config.notice_callback(|notice| {
            tracing::debug!(
                severity = notice.severity(),
                code = notice.code().code(),
                "hsdb: PostgreSQL notice: {}",
                notice.message()
            );
        });
        let connect_err = |source: crate::db::DbError| Error::Connect {
            target: name.to_owned(),
            source,
        };
        let client = config
            .connect(postgres::NoTls)
            .map_err(|e| connect_err(e.into()))?;
        let conn = Conn::Pg(Box::new(RefCell::new(PgConn::new(client))));
        let ms = |d: Duration| d.as_millis();
        let mut session = format!(
            "SET statement_timeout = {}; SET lock_timeout = {}; \
             SET idle_in_transaction_session_timeout = {};",
            ms(options.statement_timeout),
            ms(options.busy_timeout),
            ms(options.statement_timeout),
        );
        if read_only {
            session.push_str(" SET default_transaction_read_only = on;");
        }
        conn.batch_raw(&session).map_err(connect_err)?;
        let path = PathBuf::from(name);
        if read_only {
            check_version_read_only(&conn, &path)?;
        } else {
            schema::migrate(&conn, &path, options.busy_timeout)?;
        }
        Ok(Hsdb {
            conn,
            path,
            busy_timeout: options.busy_timeout,
            fence: None,
        })
    }

    /// The SQLite connection under this handle, for tests that look at the file.
    #[cfg(test)]
    pub(crate) fn raw_sqlite(&self) -> &Connection {
        self.conn.sqlite().expect("an SQLite HSDB")
    }

    /// The same, mutable (commit hooks).
    #[cfg(test)]
    pub(crate) fn raw_sqlite_mut(&mut self) -> &mut Connection {
        match &mut self.conn {
            Conn::Sqlite(c) => c,
            Conn::Pg(_) => panic!("an SQLite HSDB"),
        }
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.conn.backend()
    }

    /// The handle cannot be used any more (the PostgreSQL connection is closed): replace
    /// it with a new connection. Always false for SQLite.
    pub fn is_broken(&self) -> bool {
        match &self.conn {
            Conn::Sqlite(_) => false,
            Conn::Pg(pg) => pg.borrow().client.is_closed(),
        }
    }

    /// Run `f` in a write transaction and commit. On PostgreSQL a transaction rolled
    /// back for a deadlock or a serialization failure (SQLSTATE 40P01, 40001) is run
    /// again, up to [`WRITE_ATTEMPTS`] times in all, with a short growing pause; then
    /// [`Error::Contended`]. `f` must therefore have no effect outside the transaction.
    ///
    /// On a connection bound to a leader lease ([`Hsdb::set_fence`]) the transaction
    /// first checks the lease ([`crate::lease`]): [`Error::Fenced`] if this writer's
    /// term is over, nothing written.
    pub(crate) fn write<T>(
        &mut self,
        op: &'static str,
        f: impl FnMut(&Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        let fence = self.fence.clone();
        self.write_inner(op, fence.as_ref(), f)
    }

    /// [`Hsdb::write`] without the fence (the lease's own writes).
    pub(crate) fn write_unfenced<T>(
        &mut self,
        op: &'static str,
        f: impl FnMut(&Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        self.write_inner(op, None, f)
    }

    fn write_inner<T>(
        &mut self,
        op: &'static str,
        fence: Option<&crate::lease::Fence>,
        mut f: impl FnMut(&Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tx = self.conn.begin(op, TxKind::Write, self.busy_timeout)?;
            let outcome = fence
                .map_or(Ok(()), |fence| crate::lease::check_fence(&tx, fence, op))
                .and_then(|()| f(&tx))
                .and_then(|value| tx.commit(op).map(|()| value));
            match outcome {
                Err(e) if e.is_retryable() && attempt < WRITE_ATTEMPTS => {
                    tracing::debug!(
                        op,
                        attempt,
                        "hsdb: transaction rolled back by contention, running it again: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(u64::from(attempt) * 3));
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(
                        op,
                        attempts = attempt,
                        "hsdb: transaction given up after repeated contention: {e}"
                    );
                    return Err(Error::Contended {
                        op,
                        attempts: attempt,
                        source: Box::new(e),
                    });
                }
                other => return other,
            }
        }
    }

    /// One write statement on its own: autocommitted, or, on a fenced connection, in a
    /// write transaction that checks the fence first.
    pub(crate) fn autocommit(
        &mut self,
        op: &'static str,
        sql: &str,
        params: &[&dyn crate::db::Param],
    ) -> Result<usize> {
        if self.fence.is_some() {
            self.write(op, |tx| tx.execute(op, sql, params))
        } else {
            self.conn.execute(op, sql, params)
        }
    }

    /// Run `f` in a read transaction: one snapshot (PostgreSQL: REPEATABLE READ, READ
    /// ONLY), no write lock.
    pub(crate) fn read<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        let tx = self.conn.begin(op, TxKind::Read, self.busy_timeout)?;
        let value = f(&tx)?;
        // Nothing was written: ending the read transaction either way is the same.
        tx.commit(op)?;
        Ok(value)
    }

    /// The path the database was opened with (`:memory:` for an in-memory one); for
    /// PostgreSQL, the target without its password.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the database: [`SCHEMA_VERSION`](crate::SCHEMA_VERSION)
    /// once open.
    pub fn schema_version(&self) -> Result<i64> {
        schema::current_version(&self.conn, &self.path)
    }

    /// Check the database; a problem is [`Error::Integrity`]. SQLite: `PRAGMA
    /// integrity_check` (anything but `ok`). PostgreSQL (whose storage the server
    /// checks itself): every table of the schema is there, and no index or constraint
    /// is left invalid (an interrupted `CREATE INDEX CONCURRENTLY`, a `NOT VALID`
    /// constraint) — cheap catalogue reads.
    pub fn integrity_check(&self) -> Result<()> {
        const OP: &str = "integrity_check";
        let report = if self.conn.is_pg() {
            let present = self.conn.query_texts(
                OP,
                "SELECT c.relname::text FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')",
                params![],
            )?;
            let mut report: Vec<String> = TABLES
                .iter()
                .filter(|t| !present.iter().any(|p| p == *t))
                .map(|t| format!("table {t} is missing"))
                .collect();
            report.extend(self.conn.query_texts(
                OP,
                "SELECT 'index ' || c.relname::text || ' is not valid' \
                 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND NOT (i.indisvalid AND i.indisready) \
                 UNION ALL \
                 SELECT 'constraint ' || k.conname::text || ' is not validated' \
                 FROM pg_catalog.pg_constraint k \
                 JOIN pg_catalog.pg_namespace n ON n.oid = k.connamespace \
                 WHERE n.nspname = current_schema() AND NOT k.convalidated",
                params![],
            )?);
            if report.is_empty() {
                return Ok(());
            }
            report
        } else {
            let report = self
                .conn
                .query_texts(OP, "PRAGMA integrity_check", params![])?;
            if report.len() == 1 && report.first().is_some_and(|line| line == "ok") {
                return Ok(());
            }
            report
        };
        Err(Error::Integrity {
            report: report.join("\n"),
        })
    }

    /// Add a host or update all its columns.
    pub fn upsert_host(&mut self, host: &HostRecord) -> Result<()> {
        const OP: &str = "upsert_host";
        self.autocommit(
            OP,
            "INSERT INTO host (id, name, machine_type, model, serial, cpu_milli, memory_mb, \
             host_group) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
             machine_type = excluded.machine_type, model = excluded.model, \
             serial = excluded.serial, cpu_milli = excluded.cpu_milli, \
             memory_mb = excluded.memory_mb, host_group = excluded.host_group",
            params![
                host.id,
                host.name,
                host.machine_type,
                host.model,
                host.serial,
                host.cpu_milli,
                host.memory_mb,
                host.host_group,
            ],
        )?;
        Ok(())
    }

    /// The host `id`, if it exists.
    pub fn host(&self, id: HostId) -> Result<Option<HostRecord>> {
        host_by_id(&self.conn, id, "host")
    }

    /// Register a host monitor at its start: insert it, or update host, MAC, incarnation
    /// and version of a known one. Either way it is UP with reason 0 and `last_hb_ms =
    /// at`; `has_data` is kept (unacknowledged events stay pending across restarts).
    pub fn register_hm(&mut self, hm: &HmRecord) -> Result<()> {
        const OP: &str = "register_hm";
        self.write(OP, |tx| {
            if !tx.exists(OP, "SELECT 1 FROM host WHERE id = ?1", params![hm.host])? {
                return Err(Error::UnknownHost {
                    hm: hm.uuid,
                    host: hm.host.0,
                });
            }
            tx.execute(
                OP,
                "INSERT INTO hm (uuid, host_id, mac, state, reason, last_hb_ms, incarnation, \
                 version, has_data) VALUES (?1, ?2, ?3, 'UP', 0, ?4, ?5, ?6, 0) \
                 ON CONFLICT (uuid) DO UPDATE SET host_id = excluded.host_id, \
                 mac = excluded.mac, state = 'UP', reason = 0, \
                 last_hb_ms = excluded.last_hb_ms, incarnation = excluded.incarnation, \
                 version = excluded.version",
                params![
                    UuidText::new(&hm.uuid),
                    hm.host,
                    hm.mac.to_string(),
                    hm.at,
                    hm.incarnation.to_string(),
                    version_text(hm.version),
                ],
            )?;
            Ok(())
        })
    }

    /// The host monitor `uuid`, if registered.
    pub fn hm(&self, uuid: &Uuid) -> Result<Option<HmRow>> {
        self.conn.query_opt(
            "hm",
            "hm",
            concat!(hm_select!(), " WHERE uuid = ?1"),
            params![UuidText::new(uuid)],
            hm_row,
        )
    }

    /// Every HA interface monitor `hm` reported, by name (`hm_interface`).
    pub fn hm_interfaces(&self, hm: &Uuid) -> Result<Vec<HmInterfaceRow>> {
        self.conn.query(
            "hm_interfaces",
            "hm_interface",
            "SELECT hm, name, state, changed_ms FROM hm_interface WHERE hm = ?1 ORDER BY name",
            params![UuidText::new(hm)],
            |c| {
                Ok(HmInterfaceRow {
                    hm: c.uuid(0, "hm")?,
                    name: c.text(1)?,
                    state: c.enumeration(2, "state", "UP or DOWN", InterfaceState::from_text)?,
                    changed_ms: c.int(3)?,
                })
            },
        )
    }

    /// Forget the interfaces of monitor `hm` that are not in `names` (removed from its
    /// configuration): a monitor calls it at start, before reporting the ones it has.
    /// Returns how many rows went.
    pub fn retain_hm_interfaces(&mut self, hm: &Uuid, names: &[&str]) -> Result<usize> {
        const OP: &str = "retain_hm_interfaces";
        self.write(OP, |tx| {
            let stored = tx.query_texts(
                OP,
                "SELECT name FROM hm_interface WHERE hm = ?1",
                params![UuidText::new(hm)],
            )?;
            let mut removed = 0;
            for name in stored.iter().filter(|n| !names.contains(&n.as_str())) {
                removed += tx.execute(
                    OP,
                    "DELETE FROM hm_interface WHERE hm = ?1 AND name = ?2",
                    params![UuidText::new(hm), name],
                )?;
            }
            Ok(removed)
        })
    }

    /// The VM `uuid`, if known.
    pub fn vm(&self, uuid: &Uuid) -> Result<Option<VmRow>> {
        self.conn.query_opt(
            "vm",
            "vm",
            concat!(vm_select!(), " WHERE uuid = ?1"),
            params![UuidText::new(uuid)],
            vm_row,
        )
    }

    /// Every VM, by UUID.
    pub fn vms(&self) -> Result<Vec<VmRow>> {
        self.conn.query(
            "vms",
            "vm",
            concat!(vm_select!(), " ORDER BY uuid"),
            params![],
            vm_row,
        )
    }

    /// The MAC that VM `vm` is registered with on the interface paired with monitor `hm`.
    ///
    /// A monitor calls this on an agent's SYN: if it is `Some` and differs from the SYN's
    /// source MAC, another machine claims that VM's UUID and the SYN is refused
    /// (HVNCP.md §6). `None`: not discovered through this monitor yet.
    pub fn vm_mac(&self, vm: &Uuid, hm: &Uuid) -> Result<Option<MacAddr>> {
        Ok(self
            .conn
            .query_opt(
                "vm_mac",
                "vm_hm",
                "SELECT mac FROM vm_hm WHERE vm = ?1 AND hm = ?2",
                params![UuidText::new(vm), UuidText::new(hm)],
                |c| c.opt_mac(0, "mac"),
            )?
            .flatten())
    }

    /// What monitor `hm` last wrote about VM `vm`.
    pub fn vm_hm(&self, vm: &Uuid, hm: &Uuid) -> Result<Option<VmHmRow>> {
        self.conn.query_opt(
            "vm_hm",
            "vm_hm",
            concat!(vm_hm_select!(), " WHERE vm = ?1 AND hm = ?2"),
            params![UuidText::new(vm), UuidText::new(hm)],
            vm_hm_row,
        )
    }

    /// How many VMs monitor `hm` reports in each heartbeat state: a range count over
    /// the `(hm, last_state)` index, cheap enough to poll.
    pub fn vm_hm_counts(&self, hm: &Uuid) -> Result<HeartbeatCounts> {
        let rows = self.conn.query(
            "vm_hm_counts",
            "vm_hm",
            "SELECT last_state, COUNT(*) FROM vm_hm WHERE hm = ?1 GROUP BY last_state",
            params![UuidText::new(hm)],
            |c| Ok((c.text(0)?, c.int(1)?)),
        )?;
        let mut counts = HeartbeatCounts::default();
        for (state, n) in rows {
            let n = u64::try_from(n).unwrap_or(0);
            match HeartbeatState::from_text(&state) {
                Some(HeartbeatState::Detected) => counts.detected = n,
                Some(HeartbeatState::Missing) => counts.missing = n,
                Some(HeartbeatState::Suspended) => counts.suspended = n,
                Some(HeartbeatState::Stopped) => counts.stopped = n,
                None => {}
            }
        }
        Ok(counts)
    }

    /// Every (VM, monitor) row of VM `vm`, by monitor.
    pub fn vm_hms(&self, vm: &Uuid) -> Result<Vec<VmHmRow>> {
        self.conn.query(
            "vm_hms",
            "vm_hm",
            concat!(vm_hm_select!(), " WHERE vm = ?1 ORDER BY hm"),
            params![UuidText::new(vm)],
            vm_hm_row,
        )
    }

    /// Every row monitor `hm` wrote, one per VM, by VM.
    pub fn vm_hms_of(&self, hm: &Uuid) -> Result<Vec<VmHmRow>> {
        self.conn.query(
            "vm_hms_of",
            "vm_hm",
            concat!(vm_hm_select!(), " WHERE hm = ?1 ORDER BY vm"),
            params![UuidText::new(hm)],
            vm_hm_row,
        )
    }

    /// Every pending item, oldest first.
    pub fn pending(&self) -> Result<Vec<PendingRow>> {
        self.conn.query(
            "pending",
            "pending",
            concat!(pending_select!(), " ORDER BY id"),
            params![],
            pending_row,
        )
    }

    /// Up to `limit` events with an id above `after`, in id order. Page through the
    /// outbox by passing the last id returned: ids become visible in increasing order
    /// on both backends (on PostgreSQL every writer of `event` serialises on the outbox
    /// lock, docs/hsdb.md §6), so a reader that advances its offset to the last id it
    /// saw never skips one.
    pub fn events_after(&self, after: i64, limit: u32) -> Result<Vec<EventRow>> {
        self.conn.query(
            "events_after",
            "event",
            "SELECT id, kind, vm, hm, text, created_ms FROM event WHERE id > ?1 \
             ORDER BY id LIMIT ?2",
            params![after, limit],
            |c| {
                Ok(EventRow {
                    id: c.int(0)?,
                    kind: c.text(1)?,
                    vm: c.opt_uuid(2, "vm")?,
                    hm: c.opt_uuid(3, "hm")?,
                    text: c.text(4)?,
                    created_ms: c.int(5)?,
                })
            },
        )
    }

    /// The id of the last event consumer `name` has handled; `None` for a consumer never
    /// recorded (it decides whether to replay from 0 or start at the end).
    pub fn consumer_offset(&self, name: &str) -> Result<Option<i64>> {
        self.conn.query_int(
            "consumer_offset",
            "SELECT last_id FROM event_consumer WHERE name = ?1",
            params![name],
        )
    }

    /// Record that consumer `name` has handled every event up to id `offset` (at least
    /// 0). Moving back is allowed: that is how a consumer replays.
    pub fn set_consumer_offset(&mut self, name: &str, offset: i64) -> Result<()> {
        self.autocommit(
            "set_consumer_offset",
            "INSERT INTO event_consumer (name, last_id) VALUES (?1, ?2) \
             ON CONFLICT (name) DO UPDATE SET last_id = excluded.last_id",
            params![name, offset],
        )?;
        Ok(())
    }
}

/// A PostgreSQL configuration as `postgres://user@host:port/dbname`, never with its
/// password.
pub(crate) fn describe(config: &postgres::Config) -> String {
    use postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{host}:{port}/{db}")
}

/// Check, without migrating, that the schema is exactly this build's.
fn check_version_read_only(conn: &Conn, path: &Path) -> Result<()> {
    let found = schema::current_version(conn, path)?;
    if found < crate::SCHEMA_VERSION {
        return Err(Error::TooOld {
            path: path.to_path_buf(),
            found,
            supported: crate::SCHEMA_VERSION,
        });
    }
    if found > crate::SCHEMA_VERSION {
        return Err(Error::TooNew {
            path: path.to_path_buf(),
            found,
            supported: crate::SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// The columns [`vm_row`] decodes.
macro_rules! vm_select {
    () => {
        "SELECT uuid, name, current_host, home_host, state, managed, ha_monitor, priority, \
         detection_speed, cpu_milli, memory_mb, ostype, agent_ver_lower, agent_ver_upper, \
         short_msg, updated_ms FROM vm"
    };
}
pub(crate) use vm_select;

pub(crate) fn vm_row(c: &Columns<'_, '_>) -> Result<VmRow> {
    let lower = c.opt_version(12, "agent_ver_lower")?;
    let upper = c.opt_version(13, "agent_ver_upper")?;
    Ok(VmRow {
        uuid: c.uuid(0, "uuid")?,
        name: c.text(1)?,
        current_host: c.opt_int(2)?.map(HostId),
        home_host: c.opt_int(3)?.map(HostId),
        state: c.enumeration(4, "state", "VM state", VmState::from_text)?,
        managed: c.bool(5, "managed")?,
        ha_monitor: c.bool(6, "ha_monitor")?,
        priority: c.enumeration(7, "priority", "HIGH, MEDIUM or LOW", Priority::from_text)?,
        detection_speed: c.enumeration(
            8,
            "detection_speed",
            "FAST, NORMAL or SLOW",
            DetectionSpeed::from_text,
        )?,
        cpu_milli: c.u32(9, "cpu_milli")?,
        memory_mb: c.u32(10, "memory_mb")?,
        ostype: c.opt_text(11)?,
        agent_versions: lower.zip(upper),
        short_msg: bits_from_sql(c.int(14)?),
        updated_ms: c.int(15)?,
    })
}

/// The columns [`vm_hm_row`] decodes.
macro_rules! vm_hm_select {
    () => {
        "SELECT vm, hm, mac, hb_missed_ms, last_state, updated_ms FROM vm_hm"
    };
}
pub(crate) use vm_hm_select;

pub(crate) fn vm_hm_row(c: &Columns<'_, '_>) -> Result<VmHmRow> {
    Ok(VmHmRow {
        vm: c.uuid(0, "vm")?,
        hm: c.uuid(1, "hm")?,
        mac: c.opt_mac(2, "mac")?,
        hb_missed_ms: c.opt_int(3)?,
        last_state: c.enumeration(
            4,
            "last_state",
            "DETECTED, MISSING or SUSPENDED",
            HeartbeatState::from_text,
        )?,
        updated_ms: c.int(5)?,
    })
}

/// The columns [`pending_row`] decodes.
macro_rules! pending_select {
    () => {
        "SELECT id, tag, vm, hm, kind, code, old_state, new_state, from_host, data, \
         created_ms, updated_ms FROM pending"
    };
}
pub(crate) use pending_select;

pub(crate) fn pending_row(c: &Columns<'_, '_>) -> Result<PendingRow> {
    Ok(PendingRow {
        id: c.int(0)?,
        tag: c.opt_int(1)?,
        vm: c.opt_uuid(2, "vm")?,
        hm: c.opt_uuid(3, "hm")?,
        kind: c.enumeration(
            4,
            "kind",
            "STATE_CHANGE, DISCOVERED, DOORBELL or HM_EVENT",
            PendingKind::from_text,
        )?,
        code: bits_from_sql(c.int(5)?),
        old_state: c.opt_enumeration(6, "old_state", "VM state", VmState::from_text)?,
        new_state: c.opt_enumeration(7, "new_state", "VM state", VmState::from_text)?,
        from_host: c.opt_int(8)?.map(HostId),
        data: c.text(9)?,
        created_ms: c.int(10)?,
        updated_ms: c.int(11)?,
    })
}

/// The columns [`host_row`] decodes.
macro_rules! host_select {
    () => {
        "SELECT id, name, machine_type, model, serial, cpu_milli, memory_mb, host_group \
         FROM host"
    };
}
pub(crate) use host_select;

pub(crate) fn host_row(c: &Columns<'_, '_>) -> Result<HostRecord> {
    Ok(HostRecord {
        id: HostId(c.int(0)?),
        name: c.text(1)?,
        machine_type: c.text(2)?,
        model: c.text(3)?,
        serial: c.text(4)?,
        cpu_milli: c.u32(5, "cpu_milli")?,
        memory_mb: c.u32(6, "memory_mb")?,
        host_group: c.text(7)?,
    })
}

/// Host `id`, if it exists, read through `conn` (inside the caller's transaction, if any).
pub(crate) fn host_by_id(conn: &Conn, id: HostId, op: &'static str) -> Result<Option<HostRecord>> {
    conn.query_opt(
        op,
        "host",
        concat!(host_select!(), " WHERE id = ?1"),
        params![id],
        host_row,
    )
}

/// The columns [`hm_row`] decodes.
macro_rules! hm_select {
    () => {
        "SELECT uuid, host_id, mac, state, reason, last_hb_ms, incarnation, version, \
         has_data FROM hm"
    };
}
pub(crate) use hm_select;

pub(crate) fn hm_row(c: &Columns<'_, '_>) -> Result<HmRow> {
    Ok(HmRow {
        uuid: c.uuid(0, "uuid")?,
        host: HostId(c.int(1)?),
        mac: c.mac(2, "mac")?,
        state: c.enumeration(3, "state", "UP or DOWN", HmState::from_text)?,
        reason: c.u32(4, "reason")?,
        last_hb_ms: c.int(5)?,
        incarnation: c.hello(6, "incarnation")?,
        version: c.version(7, "version")?,
        has_data: c.bool(8, "has_data")?,
    })
}

/// Like [`open_error`], for a read-only open: read-only is expected, not a failure.
fn open_error_read(path: &Path, source: rusqlite::Error) -> Error {
    match source.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => Error::NotADatabase {
            path: path.to_path_buf(),
        },
        _ => Error::Open {
            path: path.to_path_buf(),
            source: source.into(),
        },
    }
}
