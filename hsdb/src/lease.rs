//! The leader lease of a host group (table `leader_lease`, schema v6; docs/hsdb.md §9)
//! and the fence that binds a connection's writes to it.
//!
//! Several `hactl run` may share one PostgreSQL HSDB; per host group one leads. The lease
//! row names the holder, its **fencing token** and when it expires. [`Hsdb::lease_acquire`]
//! takes a free, expired or released lease (a new token: the largest the row ever had,
//! plus one — tokens are never reused, also across releases), renews the caller's own
//! live lease (same token), or says who holds it. Every time is the **database's clock**
//! at the moment of the statement: on PostgreSQL `clock_timestamp()` of the server, so
//! controllers whose clocks disagree still agree on who holds the lease; on SQLite the
//! clock SQLite reads (`julianday('now')`, the machine's system clock — one machine, one
//! controller).
//!
//! **Fencing.** A connection bound to a [`Fence`] ([`Hsdb::set_fence`]) runs, first in
//! every write transaction, the fence's local check (if it has one: the control plane's
//! monotonic deadline) and then
//!
//! ```sql
//! SELECT token FROM leader_lease
//!  WHERE host_group = ?1 AND holder = ?2 AND token = ?3 AND expires_ms > <now>
//!    FOR SHARE                                   -- PostgreSQL
//! ```
//!
//! and fails with [`Error::Fenced`] when no row comes back. The share lock is held until
//! the transaction ends, and a takeover updates the row under `FOR UPDATE`, so the
//! takeover waits for every fenced write in flight to commit or roll back, and a fenced
//! write that begins after the takeover committed sees the new holder: **no write of a
//! fenced connection commits after its lease was taken over**. On SQLite every write
//! transaction holds the database's write lock (`BEGIN IMMEDIATE`), which orders it
//! against an acquisition the same way.

use std::fmt;
use std::sync::Arc;

use crate::Hsdb;
use crate::codec::Columns;
use crate::db::{Conn, params};
use crate::error::{Error, Result};

/// A lease row. Times are the database's, ms since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The host group (any text: the control plane uses `""` for its HSDB-wide duties).
    pub host_group: String,
    /// Who holds (or last held) it.
    pub holder: String,
    /// The fencing token of the holder's term.
    pub token: i64,
    /// When this holder acquired it.
    pub acquired_ms: i64,
    /// When it was last renewed.
    pub renewed_ms: i64,
    /// When it expires unless renewed (at or after this instant it is free).
    pub expires_ms: i64,
}

/// What [`Hsdb::lease_acquire`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// The lease was free, expired or released: the caller holds it now, with a new
    /// token.
    Acquired(Lease),
    /// The caller held it and it had not expired: renewed, same token.
    Renewed(Lease),
    /// Another holder's lease has not expired.
    HeldBy(Lease),
}

impl LeaseOutcome {
    /// The lease in the outcome.
    pub fn lease(&self) -> &Lease {
        match self {
            LeaseOutcome::Acquired(l) | LeaseOutcome::Renewed(l) | LeaseOutcome::HeldBy(l) => l,
        }
    }
}

/// A local check run before each fenced write transaction: `Err(why)` refuses the write
/// without asking the database (the control plane's lease deadline passed).
pub type FenceCheck = Arc<dyn Fn() -> std::result::Result<(), String> + Send + Sync>;

/// What a fenced connection's writes are bound to: the lease of `host_group` held by
/// `holder` with `token`.
#[derive(Clone)]
pub struct Fence {
    /// The host group.
    pub host_group: String,
    /// The holder.
    pub holder: String,
    /// The token of the term the writes belong to.
    pub token: i64,
    /// Asked first, before each write transaction (optional).
    pub check: Option<FenceCheck>,
}

impl fmt::Debug for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fence")
            .field("host_group", &self.host_group)
            .field("holder", &self.holder)
            .field("token", &self.token)
            .field("check", &self.check.is_some())
            .finish()
    }
}

/// The database's clock now, in ms since the Unix epoch, as an SQL expression.
fn now_sql(conn: &Conn) -> &'static str {
    if conn.is_pg() {
        "CAST(floor(extract(epoch FROM clock_timestamp()) * 1000) AS BIGINT)"
    } else {
        "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
    }
}

fn lease_row(c: &Columns<'_, '_>) -> Result<Lease> {
    Ok(Lease {
        host_group: c.text(0)?,
        holder: c.text(1)?,
        token: c.int(2)?,
        acquired_ms: c.int(3)?,
        renewed_ms: c.int(4)?,
        expires_ms: c.int(5)?,
    })
}

const LEASE_COLUMNS: &str =
    "host_group, holder, token, acquired_ms, renewed_ms, expires_ms FROM leader_lease";

fn db_now(conn: &Conn, op: &'static str) -> Result<i64> {
    let sql = format!("SELECT {}", now_sql(conn));
    conn.query_int(op, &sql, params![])?.ok_or(Error::Corrupt {
        table: "leader_lease",
        column: "now",
        value: "NULL".into(),
        expected: "the database's clock",
    })
}

impl Hsdb {
    /// Take the lease of `group` for `holder` for `ttl_ms` from now (the database's
    /// clock), renew it if `holder` holds it and it has not expired, or say who holds
    /// it. One transaction; on PostgreSQL the row is locked (`FOR UPDATE`), so two
    /// candidates never both acquire, and an acquisition waits for the fenced writes of
    /// the holder in flight ([`Fence`]).
    ///
    /// A lease that expired or was released is a new lease even for the same holder:
    /// a new token, so whatever the holder's previous term had in flight is fenced.
    ///
    /// Errors: an empty `holder` or a `ttl_ms` outside `1..=86_400_000` is
    /// [`Error::Options`].
    pub fn lease_acquire(
        &mut self,
        group: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<LeaseOutcome> {
        const OP: &str = "lease_acquire";
        if holder.is_empty() {
            return Err(Error::Options {
                key: "lease holder",
                value: "\"\"".into(),
                allowed: "a non-empty holder id",
            });
        }
        if !(1..=86_400_000).contains(&ttl_ms) {
            return Err(Error::Options {
                key: "lease ttl_ms",
                value: ttl_ms.to_string(),
                allowed: "1..=86400000",
            });
        }
        // The lease is not bound by the fence of this connection (the lease thread has
        // its own connection; renewing must never need the lease).
        self.write_unfenced(OP, |tx| {
            // A placeholder row (expired, token 0, nobody) so that there is always a row
            // to lock; the first real holder gets token 1.
            tx.execute(
                OP,
                "INSERT INTO leader_lease (host_group, holder, token, acquired_ms, \
                 renewed_ms, expires_ms) VALUES (?1, '', 0, 0, 0, 0) \
                 ON CONFLICT (host_group) DO NOTHING",
                params![group],
            )?;
            let lock = if tx.is_pg() { " FOR UPDATE" } else { "" };
            let sql = format!("SELECT {LEASE_COLUMNS} WHERE host_group = ?1{lock}");
            let row = tx
                .query_opt(OP, "leader_lease", &sql, params![group], lease_row)?
                .ok_or_else(|| Error::NotFound {
                    what: "leader_lease",
                    key: group.to_owned(),
                })?;
            // The clock after the lock: an acquisition that waited for a fenced write
            // judges the expiry when it may act.
            let now = db_now(tx, OP)?;
            let live = row.expires_ms > now;
            let expires = now.saturating_add(ttl_ms);
            if live && row.holder != holder {
                return Ok(LeaseOutcome::HeldBy(row));
            }
            if live {
                tx.execute(
                    OP,
                    "UPDATE leader_lease SET renewed_ms = ?2, expires_ms = ?3 \
                     WHERE host_group = ?1",
                    params![group, now, expires],
                )?;
                return Ok(LeaseOutcome::Renewed(Lease {
                    renewed_ms: now,
                    expires_ms: expires,
                    ..row
                }));
            }
            let token = row.token.checked_add(1).ok_or(Error::Corrupt {
                table: "leader_lease",
                column: "token",
                value: row.token.to_string(),
                expected: "a token below the largest BIGINT",
            })?;
            tx.execute(
                OP,
                "UPDATE leader_lease SET holder = ?2, token = ?3, acquired_ms = ?4, \
                 renewed_ms = ?4, expires_ms = ?5 WHERE host_group = ?1",
                params![group, holder, token, now, expires],
            )?;
            Ok(LeaseOutcome::Acquired(Lease {
                host_group: group.to_owned(),
                holder: holder.to_owned(),
                token,
                acquired_ms: now,
                renewed_ms: now,
                expires_ms: expires,
            }))
        })
    }

    /// Give up `holder`'s lease of `group` (its expiry becomes now, the row and its
    /// token stay): the next candidate acquires it at its next attempt, with the next
    /// token. `false` if `holder` did not hold it live.
    pub fn lease_release(&mut self, group: &str, holder: &str) -> Result<bool> {
        const OP: &str = "lease_release";
        self.write_unfenced(OP, |tx| {
            let now = now_sql(tx);
            let sql = format!(
                "UPDATE leader_lease SET expires_ms = {now} \
                 WHERE host_group = ?1 AND holder = ?2 AND expires_ms > {now}"
            );
            Ok(tx.execute(OP, &sql, params![group, holder])? > 0)
        })
    }

    /// The lease of `group`, if anyone ever held it (expired or not: compare
    /// `expires_ms` with [`Hsdb::db_now_ms`]).
    pub fn lease(&self, group: &str) -> Result<Option<Lease>> {
        const OP: &str = "lease";
        let sql = format!("SELECT {LEASE_COLUMNS} WHERE host_group = ?1 AND holder <> ''");
        self.conn
            .query_opt(OP, "leader_lease", &sql, params![group], lease_row)
    }

    /// Every lease ever held, by host group.
    pub fn leases(&self) -> Result<Vec<Lease>> {
        const OP: &str = "leases";
        let sql = format!("SELECT {LEASE_COLUMNS} WHERE holder <> '' ORDER BY host_group");
        self.conn
            .query(OP, "leader_lease", &sql, params![], lease_row)
    }

    /// The database's clock now, ms since the Unix epoch (the clock leases are judged
    /// by).
    pub fn db_now_ms(&self) -> Result<i64> {
        db_now(&self.conn, "db_now")
    }

    /// Bind every later write transaction of this connection to `fence` (`None`:
    /// unbind). See the module documentation.
    pub fn set_fence(&mut self, fence: Option<Fence>) {
        self.fence = fence;
    }

    /// The fence writes are bound to.
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }
}

/// The fence check at the start of a write transaction on `conn` (the hook in
/// [`Hsdb::write`]): the local check, then the lease row, share-locked on PostgreSQL.
pub(crate) fn check_fence(conn: &Conn, fence: &Fence, op: &'static str) -> Result<()> {
    let refused = |why: String| Error::Fenced {
        host_group: fence.host_group.clone(),
        token: fence.token,
        why,
    };
    if let Some(check) = &fence.check {
        check().map_err(refused)?;
    }
    let now = now_sql(conn);
    let share = if conn.is_pg() { " FOR SHARE" } else { "" };
    let sql = format!(
        "SELECT token FROM leader_lease WHERE host_group = ?1 AND holder = ?2 \
         AND token = ?3 AND expires_ms > {now}{share}"
    );
    if conn.exists(
        op,
        &sql,
        params![fence.host_group, fence.holder, fence.token],
    )? {
        return Ok(());
    }
    // Say why, from the row as it is now.
    let sql = format!("SELECT {LEASE_COLUMNS} WHERE host_group = ?1");
    let row = conn.query_opt(
        op,
        "leader_lease",
        &sql,
        params![fence.host_group],
        lease_row,
    )?;
    let db_now = db_now(conn, op)?;
    Err(refused(match row {
        None => "no lease row for the group".to_owned(),
        Some(l) if l.holder != fence.holder || l.token != fence.token => format!(
            "the lease is {} by {} with token {}",
            if l.expires_ms > db_now {
                "held"
            } else {
                "last held"
            },
            if l.holder.is_empty() {
                "nobody"
            } else {
                &l.holder
            },
            l.token
        ),
        Some(l) => format!(
            "the lease expired {} ms ago on the database's clock",
            db_now.saturating_sub(l.expires_ms)
        ),
    }))
}

#[cfg(test)]
mod tests;
