//! [`Hsdb`]: opening the file, registration writes and every read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hvha_identity::MacAddr;
use hvha_identity::Uuid;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::codec::{Columns, UuidText, bits_from_sql, version_text};
use crate::error::{Context, Error, Result};
use crate::model::{
    DetectionSpeed, EventRow, HeartbeatCounts, HeartbeatState, HmInterfaceRow, HmRecord, HmRow,
    HmState, HostId, HostRecord, InterfaceState, PendingKind, PendingRow, Priority, VmHmRow, VmRow,
    VmState,
};
use crate::options::Options;
use crate::schema::{self, open_error};

/// Statements kept prepared per connection; more than the crate has, so none is ever
/// re-prepared.
const STATEMENT_CACHE: usize = 64;

/// An open Health Status Database.
///
/// One connection; `Send`, so it can live on the writer thread that owns it. Writes take
/// `&mut self` and each is one transaction.
#[derive(Debug)]
pub struct Hsdb {
    pub(crate) conn: Connection,
    path: PathBuf,
    /// How long a write waits for the write lock (`Options::busy_timeout`).
    busy_timeout: Duration,
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
        let found = schema::current_version(&conn, path)?;
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
        // Belt and braces: even a statement that tries cannot write.
        conn.pragma_update(None, "query_only", "ON")
            .map_err(|e| open_error_read(path, e))?;
        Ok(Hsdb {
            conn,
            path: path.to_path_buf(),
            busy_timeout: options.busy_timeout,
        })
    }

    /// A private database in memory, for tests: same schema, no file, no WAL.
    pub fn open_in_memory() -> Result<Hsdb> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| open_error(&path, e))?;
        Hsdb::finish_open(conn, path, Duration::ZERO)
    }

    fn finish_open(mut conn: Connection, path: PathBuf, busy_timeout: Duration) -> Result<Hsdb> {
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| open_error(&path, e))?;
        schema::migrate(&mut conn, &path, busy_timeout)?;
        Ok(Hsdb {
            conn,
            path,
            busy_timeout,
        })
    }

    /// Begin a write transaction (`BEGIN IMMEDIATE`): the write lock up front, waited
    /// for up to `busy_timeout` by SQLite's busy handler; an SQLITE_BUSY that still
    /// comes back before `busy_timeout` has passed (seen in the migrations under lock
    /// races, `schema::migrate`) is retried here until then.
    pub(crate) fn write_tx(&mut self, op: &'static str) -> Result<rusqlite::Transaction<'_>> {
        let started = std::time::Instant::now();
        let busy_timeout = self.busy_timeout;
        let tx = loop {
            // `new_unchecked` borrows the connection shared, so the loop can retry; the
            // `&mut self` of this method keeps transactions from nesting.
            match rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate) {
                Ok(tx) => break tx,
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && started.elapsed() < busy_timeout =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(source) => return Err(Error::Sql { op, source }),
            }
        };
        Ok(tx)
    }

    /// The path the database was opened with (`:memory:` for an in-memory one).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the database: [`SCHEMA_VERSION`](crate::SCHEMA_VERSION)
    /// once open.
    pub fn schema_version(&self) -> Result<i64> {
        schema::current_version(&self.conn, &self.path)
    }

    /// Run `PRAGMA integrity_check`; anything but `ok` is [`Error::Integrity`].
    pub fn integrity_check(&self) -> Result<()> {
        const OP: &str = "integrity_check";
        let mut stmt = self.conn.prepare_cached("PRAGMA integrity_check").op(OP)?;
        let mut rows = stmt.query([]).op(OP)?;
        let mut report = Vec::new();
        while let Some(row) = rows.next().op(OP)? {
            report.push(row.get::<_, String>(0).op(OP)?);
        }
        if report.len() == 1 && report.first().is_some_and(|line| line == "ok") {
            Ok(())
        } else {
            Err(Error::Integrity {
                report: report.join("\n"),
            })
        }
    }

    /// Add a host or update all its columns.
    pub fn upsert_host(&mut self, host: &HostRecord) -> Result<()> {
        const OP: &str = "upsert_host";
        self.conn
            .prepare_cached(
                "INSERT INTO host (id, name, machine_type, model, serial, cpu_milli, memory_mb, \
                 host_group) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
                 machine_type = excluded.machine_type, model = excluded.model, \
                 serial = excluded.serial, cpu_milli = excluded.cpu_milli, \
                 memory_mb = excluded.memory_mb, host_group = excluded.host_group",
            )
            .op(OP)?
            .execute((
                host.id,
                &host.name,
                &host.machine_type,
                &host.model,
                &host.serial,
                i64::from(host.cpu_milli),
                i64::from(host.memory_mb),
                &host.host_group,
            ))
            .op(OP)?;
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
        let tx = self.write_tx(OP)?;
        let host_known = tx
            .prepare_cached("SELECT 1 FROM host WHERE id = ?1")
            .op(OP)?
            .query_row([hm.host], |_| Ok(()))
            .optional()
            .op(OP)?
            .is_some();
        if !host_known {
            return Err(Error::UnknownHost {
                hm: hm.uuid,
                host: hm.host.0,
            });
        }
        tx.prepare_cached(
            "INSERT INTO hm (uuid, host_id, mac, state, reason, last_hb_ms, incarnation, \
             version, has_data) VALUES (?1, ?2, ?3, 'UP', 0, ?4, ?5, ?6, 0) \
             ON CONFLICT (uuid) DO UPDATE SET host_id = excluded.host_id, mac = excluded.mac, \
             state = 'UP', reason = 0, last_hb_ms = excluded.last_hb_ms, \
             incarnation = excluded.incarnation, version = excluded.version",
        )
        .op(OP)?
        .execute((
            UuidText::new(&hm.uuid),
            hm.host,
            hm.mac.to_string(),
            hm.at,
            hm.incarnation.to_string(),
            version_text(hm.version),
        ))
        .op(OP)?;
        tx.commit().op(OP)
    }

    /// The host monitor `uuid`, if registered.
    pub fn hm(&self, uuid: &Uuid) -> Result<Option<HmRow>> {
        const OP: &str = "hm";
        let mut stmt = self
            .conn
            .prepare_cached(concat!(hm_select!(), " WHERE uuid = ?1"))
            .op(OP)?;
        let mut rows = stmt.query([UuidText::new(uuid)]).op(OP)?;
        match rows.next().op(OP)? {
            Some(row) => Ok(Some(hm_row(&Columns::new(row, "hm", OP))?)),
            None => Ok(None),
        }
    }

    /// Every HA interface monitor `hm` reported, by name (`hm_interface`).
    pub fn hm_interfaces(&self, hm: &Uuid) -> Result<Vec<HmInterfaceRow>> {
        const OP: &str = "hm_interfaces";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT hm, name, state, changed_ms FROM hm_interface WHERE hm = ?1 \
                 ORDER BY name",
            )
            .op(OP)?;
        let mut rows = stmt.query([UuidText::new(hm)]).op(OP)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().op(OP)? {
            let c = Columns::new(row, "hm_interface", OP);
            out.push(HmInterfaceRow {
                hm: c.uuid(0, "hm")?,
                name: c.text(1)?,
                state: c.enumeration(2, "state", "UP or DOWN", InterfaceState::from_text)?,
                changed_ms: c.int(3)?,
            });
        }
        Ok(out)
    }

    /// Forget the interfaces of monitor `hm` that are not in `names` (removed from its
    /// configuration): a monitor calls it at start, before reporting the ones it has.
    /// Returns how many rows went.
    pub fn retain_hm_interfaces(&mut self, hm: &Uuid, names: &[&str]) -> Result<usize> {
        const OP: &str = "retain_hm_interfaces";
        let tx = self.write_tx(OP)?;
        let stored: Vec<String> = tx
            .prepare_cached("SELECT name FROM hm_interface WHERE hm = ?1")
            .op(OP)?
            .query_map([UuidText::new(hm)], |row| row.get(0))
            .op(OP)?
            .collect::<rusqlite::Result<_>>()
            .op(OP)?;
        let mut removed = 0;
        for name in stored.iter().filter(|n| !names.contains(&n.as_str())) {
            removed += tx
                .prepare_cached("DELETE FROM hm_interface WHERE hm = ?1 AND name = ?2")
                .op(OP)?
                .execute((UuidText::new(hm), name))
                .op(OP)?;
        }
        tx.commit().op(OP)?;
        Ok(removed)
    }

    /// The VM `uuid`, if known.
    pub fn vm(&self, uuid: &Uuid) -> Result<Option<VmRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(concat!(vm_select!(), " WHERE uuid = ?1"))
            .op("vm")?;
        let mut rows = stmt.query([UuidText::new(uuid)]).op("vm")?;
        match rows.next().op("vm")? {
            Some(row) => Ok(Some(vm_row(&Columns::new(row, "vm", "vm"))?)),
            None => Ok(None),
        }
    }

    /// Every VM, by UUID.
    pub fn vms(&self) -> Result<Vec<VmRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(concat!(vm_select!(), " ORDER BY uuid"))
            .op("vms")?;
        let mut rows = stmt.query([]).op("vms")?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().op("vms")? {
            out.push(vm_row(&Columns::new(row, "vm", "vms"))?);
        }
        Ok(out)
    }

    /// The MAC that VM `vm` is registered with on the interface paired with monitor `hm`.
    ///
    /// A monitor calls this on an agent's SYN: if it is `Some` and differs from the SYN's
    /// source MAC, another machine claims that VM's UUID and the SYN is refused
    /// (HVNCP.md §6). `None`: not discovered through this monitor yet.
    pub fn vm_mac(&self, vm: &Uuid, hm: &Uuid) -> Result<Option<MacAddr>> {
        const OP: &str = "vm_mac";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT mac FROM vm_hm WHERE vm = ?1 AND hm = ?2")
            .op(OP)?;
        let mut rows = stmt.query((UuidText::new(vm), UuidText::new(hm))).op(OP)?;
        match rows.next().op(OP)? {
            Some(row) => Columns::new(row, "vm_hm", OP).opt_mac(0, "mac"),
            None => Ok(None),
        }
    }

    /// What monitor `hm` last wrote about VM `vm`.
    pub fn vm_hm(&self, vm: &Uuid, hm: &Uuid) -> Result<Option<VmHmRow>> {
        const OP: &str = "vm_hm";
        let mut stmt = self
            .conn
            .prepare_cached(concat!(vm_hm_select!(), " WHERE vm = ?1 AND hm = ?2"))
            .op(OP)?;
        let mut rows = stmt.query((UuidText::new(vm), UuidText::new(hm))).op(OP)?;
        match rows.next().op(OP)? {
            Some(row) => Ok(Some(vm_hm_row(&Columns::new(row, "vm_hm", OP))?)),
            None => Ok(None),
        }
    }

    /// How many VMs monitor `hm` reports in each heartbeat state: a range count over
    /// the `(hm, last_state)` index, cheap enough to poll.
    pub fn vm_hm_counts(&self, hm: &Uuid) -> Result<HeartbeatCounts> {
        const OP: &str = "vm_hm_counts";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT last_state, COUNT(*) FROM vm_hm WHERE hm = ?1 GROUP BY last_state",
            )
            .op(OP)?;
        let mut rows = stmt.query([UuidText::new(hm)]).op(OP)?;
        let mut counts = HeartbeatCounts::default();
        while let Some(row) = rows.next().op(OP)? {
            let state: String = row.get(0).op(OP)?;
            let n: i64 = row.get(1).op(OP)?;
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
        const OP: &str = "vm_hms";
        let mut stmt = self
            .conn
            .prepare_cached(concat!(vm_hm_select!(), " WHERE vm = ?1 ORDER BY hm"))
            .op(OP)?;
        let mut rows = stmt.query([UuidText::new(vm)]).op(OP)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().op(OP)? {
            out.push(vm_hm_row(&Columns::new(row, "vm_hm", OP))?);
        }
        Ok(out)
    }

    /// Every row monitor `hm` wrote, one per VM, by VM.
    pub fn vm_hms_of(&self, hm: &Uuid) -> Result<Vec<VmHmRow>> {
        const OP: &str = "vm_hms_of";
        let mut stmt = self
            .conn
            .prepare_cached(concat!(vm_hm_select!(), " WHERE hm = ?1 ORDER BY vm"))
            .op(OP)?;
        let mut rows = stmt.query([UuidText::new(hm)]).op(OP)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().op(OP)? {
            out.push(vm_hm_row(&Columns::new(row, "vm_hm", OP))?);
        }
        Ok(out)
    }

    /// Every pending item, oldest first.
    pub fn pending(&self) -> Result<Vec<PendingRow>> {
        const OP: &str = "pending";
        let mut stmt = self
            .conn
            .prepare_cached(concat!(pending_select!(), " ORDER BY id"))
            .op(OP)?;
        let mut rows = stmt.query([]).op(OP)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().op(OP)? {
            out.push(pending_row(&Columns::new(row, "pending", OP))?);
        }
        Ok(out)
    }

    /// Up to `limit` events with an id above `after`, in id order. Page through the
    /// outbox by passing the last id returned.
    pub fn events_after(&self, after: i64, limit: u32) -> Result<Vec<EventRow>> {
        const OP: &str = "events_after";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, kind, vm, hm, text, created_ms FROM event WHERE id > ?1 \
                 ORDER BY id LIMIT ?2",
            )
            .op(OP)?;
        let mut rows = stmt.query((after, i64::from(limit))).op(OP)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().op(OP)? {
            let c = Columns::new(row, "event", OP);
            out.push(EventRow {
                id: c.int(0)?,
                kind: c.text(1)?,
                vm: c.opt_uuid(2, "vm")?,
                hm: c.opt_uuid(3, "hm")?,
                text: c.text(4)?,
                created_ms: c.int(5)?,
            });
        }
        Ok(out)
    }

    /// The id of the last event consumer `name` has handled; `None` for a consumer never
    /// recorded (it decides whether to replay from 0 or start at the end).
    pub fn consumer_offset(&self, name: &str) -> Result<Option<i64>> {
        const OP: &str = "consumer_offset";
        self.conn
            .prepare_cached("SELECT last_id FROM event_consumer WHERE name = ?1")
            .op(OP)?
            .query_row([name], |row| row.get(0))
            .optional()
            .op(OP)
    }

    /// Record that consumer `name` has handled every event up to id `offset` (at least
    /// 0). Moving back is allowed: that is how a consumer replays.
    pub fn set_consumer_offset(&mut self, name: &str, offset: i64) -> Result<()> {
        const OP: &str = "set_consumer_offset";
        self.conn
            .prepare_cached(
                "INSERT INTO event_consumer (name, last_id) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET last_id = excluded.last_id",
            )
            .op(OP)?
            .execute((name, offset))
            .op(OP)?;
        Ok(())
    }
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
        ostype: c.get(11)?,
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
pub(crate) fn host_by_id(
    conn: &Connection,
    id: HostId,
    op: &'static str,
) -> Result<Option<HostRecord>> {
    let mut stmt = conn
        .prepare_cached(concat!(host_select!(), " WHERE id = ?1"))
        .op(op)?;
    let mut rows = stmt.query([id]).op(op)?;
    match rows.next().op(op)? {
        Some(row) => Ok(Some(host_row(&Columns::new(row, "host", op))?)),
        None => Ok(None),
    }
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
            source,
        },
    }
}
