//! The backend layer: one connection type over SQLite or PostgreSQL, so that every
//! statement of the crate is written once (docs/hsdb.md §6).
//!
//! - [`Conn`]: an SQLite connection or a PostgreSQL client. Reads take `&self` (the
//!   PostgreSQL client sits in a `RefCell`, borrowed for one statement at a time).
//! - SQL is written with SQLite's numbered placeholders `?N`; for PostgreSQL each
//!   statement is translated to `$N` once and prepared once per connection (cached by
//!   its text, as rusqlite's `prepare_cached` does for SQLite).
//! - Parameters are neutral [`Value`]s ([`Param`] for the crate's types, [`params!`]);
//!   on PostgreSQL a value is encoded as whatever type the server inferred for its
//!   placeholder (BIGINT, INTEGER, SMALLINT, TEXT, BOOLEAN…), converting, with an error
//!   on overflow, so an untyped placeholder never fails on a type mismatch.
//! - Rows are read through [`Columns`](crate::codec::Columns), which accepts any integer
//!   type PostgreSQL returns (`COUNT(*)` is BIGINT, a literal `1` INTEGER).
//! - Transactions ([`Tx`]): `BEGIN IMMEDIATE` for writes on SQLite; on PostgreSQL
//!   `BEGIN ISOLATION LEVEL READ COMMITTED` for writes and `REPEATABLE READ, READ ONLY`
//!   for reads that must see one snapshot. The guard rolls back when dropped uncommitted.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql as PgToSql, Type};

use crate::codec::Columns;
use crate::error::{Error, Result};

/// Which database an [`Hsdb`](crate::Hsdb) is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (or an in-memory database): one machine.
    Sqlite,
    /// A PostgreSQL database: the HSDB shared by a host group.
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        })
    }
}

/// What the database said when a statement failed: an SQLite error or a PostgreSQL one.
/// `Display` shows PostgreSQL's SQLSTATE (`ERROR 23505: duplicate key …`).
#[derive(Debug)]
pub enum DbError {
    /// From SQLite.
    Sqlite(rusqlite::Error),
    /// From PostgreSQL or its client (the connection, the protocol, a type).
    Postgres(postgres::Error),
    /// A value the crate cannot bind on this backend (an array on SQLite): a bug.
    Unsupported(&'static str),
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e)
    }
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> Self {
        DbError::Postgres(e)
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Sqlite(e) => write!(f, "{e}"),
            DbError::Postgres(e) => match e.as_db_error() {
                Some(db) => {
                    write!(
                        f,
                        "{} {}: {}",
                        db.severity(),
                        db.code().code(),
                        db.message()
                    )?;
                    if let Some(detail) = db.detail() {
                        write!(f, " ({detail})")?;
                    }
                    Ok(())
                }
                None => {
                    write!(f, "{e}")?;
                    let mut cause = std::error::Error::source(e);
                    while let Some(c) = cause {
                        write!(f, ": {c}")?;
                        cause = c.source();
                    }
                    Ok(())
                }
            },
            DbError::Unsupported(what) => write!(f, "unsupported on this backend: {what}"),
        }
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DbError::Sqlite(e) => Some(e),
            DbError::Postgres(e) => Some(e),
            DbError::Unsupported(_) => None,
        }
    }
}

/// SQLSTATEs after which a whole transaction is retried: deadlock detected and
/// serialization failure.
const RETRY_STATES: [&str; 2] = ["40P01", "40001"];

impl DbError {
    /// PostgreSQL's SQLSTATE, if the server sent one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            DbError::Postgres(e) => e.code().map(|c| c.code()),
            _ => None,
        }
    }

    /// SQLite's primary error code, if SQLite failed.
    pub fn sqlite_code(&self) -> Option<rusqlite::ErrorCode> {
        match self {
            DbError::Sqlite(e) => e.sqlite_error_code(),
            _ => None,
        }
    }

    /// A deadlock or serialization failure: the transaction was rolled back by the
    /// server and running it again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.sqlstate().is_some_and(|s| RETRY_STATES.contains(&s))
    }

    /// The database cannot be reached, the connection broke, or the server cannot
    /// serve now (see [`Error::is_unavailable`]).
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            DbError::Postgres(e) => pg_unavailable(e),
            DbError::Unsupported(_) => false,
        }
    }
}

/// Is this PostgreSQL failure one of reaching or keeping the server, rather than a
/// refusal of what we sent?
fn pg_unavailable(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(state) = e.code() {
        let s = state.code();
        // 08: connection exception; 53: insufficient resources (too many connections,
        // disk full, out of memory); 57P01-57P03: admin shutdown, crash shutdown,
        // cannot connect now (starting up, recovering); 57014: a statement cancelled
        // by statement_timeout (a server that does not answer in time); 55P03: a lock
        // not granted within lock_timeout; 40001 / 40P01: contention (after retries).
        return s.starts_with("08")
            || s.starts_with("53")
            || matches!(s, "57P01" | "57P02" | "57P03" | "57014" | "55P03")
            || RETRY_STATES.contains(&s);
    }
    // No SQLSTATE: the client's own failures. Connecting, timing out and any I/O error
    // are unavailability; a type or protocol error is not.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        cause = c.source();
    }
    let text = e.to_string();
    text.starts_with("error connecting to server")
        || text.starts_with("timeout waiting for server")
        || text.starts_with("error communicating with the server")
}

/// A value bound to a placeholder.
#[derive(Debug)]
pub(crate) enum Value<'a> {
    Null,
    Int(i64),
    Text(Cow<'a, str>),
    /// PostgreSQL only: a `TEXT[]` (batch locks and inserts).
    TextArray(&'a [String]),
    /// PostgreSQL only: a `BIGINT[]`.
    IntArray(&'a [i64]),
}

/// A Rust value that can be bound to a placeholder.
pub(crate) trait Param {
    fn value(&self) -> Value<'_>;
}

impl Param for i64 {
    fn value(&self) -> Value<'_> {
        Value::Int(*self)
    }
}

impl Param for i32 {
    fn value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}

impl Param for u32 {
    fn value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}

impl Param for bool {
    fn value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}

impl Param for str {
    fn value(&self) -> Value<'_> {
        Value::Text(Cow::Borrowed(self))
    }
}

impl Param for String {
    fn value(&self) -> Value<'_> {
        Value::Text(Cow::Borrowed(self.as_str()))
    }
}

impl Param for [String] {
    fn value(&self) -> Value<'_> {
        Value::TextArray(self)
    }
}

impl Param for Vec<String> {
    fn value(&self) -> Value<'_> {
        Value::TextArray(self)
    }
}

impl Param for Vec<i64> {
    fn value(&self) -> Value<'_> {
        Value::IntArray(self)
    }
}

impl<T: Param + ?Sized> Param for &T {
    fn value(&self) -> Value<'_> {
        (**self).value()
    }
}

impl<T: Param> Param for Option<T> {
    fn value(&self) -> Value<'_> {
        match self {
            Some(v) => v.value(),
            None => Value::Null,
        }
    }
}

/// The parameters of one statement: `params![a, b, c]`.
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::db::Param]
    };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::db::Param),+] as &[&dyn $crate::db::Param]
    };
}
pub(crate) use params;

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::TextArray(_) | Value::IntArray(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "arrays are bound on PostgreSQL only".into(),
                ));
            }
        })
    }
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// Is `ty` a text type a string is sent as?
fn is_text(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    )
}

impl PgToSql for Value<'_> {
    /// Encode as the type the server inferred for the placeholder, converting.
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)
                    .map_err(|_| format!("{v} does not fit a PostgreSQL INTEGER"))?
                    .to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)
                    .map_err(|_| format!("{v} does not fit a PostgreSQL SMALLINT"))?
                    .to_sql(ty, out),
                Type::BOOL => match v {
                    0 => false.to_sql(ty, out),
                    1 => true.to_sql(ty, out),
                    _ => Err(format!("{v} is not a boolean (0 or 1)").into()),
                },
                ref t if is_text(t) => v.to_string().as_str().to_sql(&Type::TEXT, out),
                ref t => Err(format!("an integer cannot be sent as PostgreSQL type {t}").into()),
            },
            Value::Text(s) => match *ty {
                ref t if is_text(t) => s.as_ref().to_sql(&Type::TEXT, out),
                Type::INT8 | Type::INT4 | Type::INT2 => {
                    let v: i64 = s.parse().map_err(|_| format!("{s:?} is not an integer"))?;
                    Value::Int(v).to_sql(ty, out)
                }
                ref t => Err(format!("text cannot be sent as PostgreSQL type {t}").into()),
            },
            Value::TextArray(v) => v.to_sql(ty, out),
            Value::IntArray(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// A PostgreSQL connection and its prepared statements.
pub(crate) struct PgConn {
    pub(crate) client: postgres::Client,
    /// Prepared statements by their SQLite text.
    stmts: HashMap<String, postgres::Statement>,
    /// Tests: transactions committed, counted.
    #[cfg(test)]
    commits: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
}

impl PgConn {
    pub(crate) fn new(client: postgres::Client) -> PgConn {
        PgConn {
            client,
            stmts: HashMap::new(),
            #[cfg(test)]
            commits: None,
        }
    }

    fn statement(&mut self, sql: &str) -> std::result::Result<postgres::Statement, DbError> {
        if let Some(stmt) = self.stmts.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(&placeholders(sql))?;
        self.stmts.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }
}

/// SQLite's `?N` placeholders as PostgreSQL's `$N` (outside quoted strings).
pub(crate) fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => quoted = !quoted,
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push('$');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// One row of a result, from either backend.
pub(crate) enum RowRef<'r, 's> {
    Sqlite(&'r rusqlite::Row<'s>),
    Pg(&'r postgres::Row),
}

/// A connection to the HSDB.
pub(crate) enum Conn {
    Sqlite(rusqlite::Connection),
    /// Boxed: the client and its statement cache are several times an SQLite handle.
    Pg(Box<RefCell<PgConn>>),
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conn::Sqlite(c) => f.debug_tuple("Sqlite").field(c).finish(),
            Conn::Pg(_) => f.write_str("Pg"),
        }
    }
}

/// The kind of transaction [`Conn::begin`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxKind {
    /// A write: SQLite `BEGIN IMMEDIATE` (the write lock up front); PostgreSQL READ
    /// COMMITTED (rows are locked where the crate needs them, §6).
    Write,
    /// A read of one snapshot: SQLite `BEGIN` (deferred, a WAL snapshot at the first
    /// read); PostgreSQL `REPEATABLE READ, READ ONLY`.
    Read,
}

fn sql_err(op: &'static str) -> impl Fn(DbError) -> Error {
    move |source| Error::Sql { op, source }
}

impl Conn {
    /// The backend of this connection.
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Pg(_) => Backend::Postgres,
        }
    }

    pub(crate) fn is_pg(&self) -> bool {
        matches!(self, Conn::Pg(_))
    }

    /// The SQLite connection, if this is one (tests, SQLite-only pragmas).
    pub(crate) fn sqlite(&self) -> Option<&rusqlite::Connection> {
        match self {
            Conn::Sqlite(c) => Some(c),
            Conn::Pg(_) => None,
        }
    }

    /// Run `sql` (no parameters, possibly several statements): DDL, pragmas,
    /// transaction control.
    pub(crate) fn batch(&self, op: &'static str, sql: &str) -> Result<()> {
        self.batch_raw(sql).map_err(sql_err(op))
    }

    pub(crate) fn batch_raw(&self, sql: &str) -> std::result::Result<(), DbError> {
        match self {
            Conn::Sqlite(c) => c.execute_batch(sql).map_err(DbError::from),
            Conn::Pg(pg) => pg
                .borrow_mut()
                .client
                .batch_execute(sql)
                .map_err(DbError::from),
        }
    }

    /// Execute one statement; the number of rows it changed.
    pub(crate) fn execute(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<usize> {
        self.execute_raw(sql, params).map_err(sql_err(op))
    }

    pub(crate) fn execute_raw(
        &self,
        sql: &str,
        params: &[&dyn Param],
    ) -> std::result::Result<usize, DbError> {
        let values: Vec<Value<'_>> = params.iter().map(|p| p.value()).collect();
        match self {
            Conn::Sqlite(c) => Ok(c
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(values.iter()))?),
            Conn::Pg(pg) => {
                let mut pg = pg.borrow_mut();
                let stmt = pg.statement(sql)?;
                let refs: Vec<&(dyn PgToSql + Sync)> =
                    values.iter().map(|v| v as &(dyn PgToSql + Sync)).collect();
                let n = pg.client.execute(&stmt, &refs)?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }
    }

    /// Run a query; `f` decodes each row (errors name `table`).
    pub(crate) fn query<T>(
        &self,
        op: &'static str,
        table: &'static str,
        sql: &str,
        params: &[&dyn Param],
        mut f: impl FnMut(&Columns<'_, '_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let values: Vec<Value<'_>> = params.iter().map(|p| p.value()).collect();
        let mut out = Vec::new();
        match self {
            Conn::Sqlite(c) => {
                let err = |e: rusqlite::Error| Error::Sql {
                    op,
                    source: e.into(),
                };
                let mut stmt = c.prepare_cached(sql).map_err(err)?;
                let mut rows = stmt
                    .query(rusqlite::params_from_iter(values.iter()))
                    .map_err(err)?;
                while let Some(row) = rows.next().map_err(err)? {
                    out.push(f(&Columns::new(RowRef::Sqlite(row), table, op))?);
                }
            }
            Conn::Pg(_) => {
                let rows = self.pg_query(sql, &values).map_err(sql_err(op))?;
                for row in &rows {
                    out.push(f(&Columns::new(RowRef::Pg(row), table, op))?);
                }
            }
        }
        Ok(out)
    }

    fn pg_query(
        &self,
        sql: &str,
        values: &[Value<'_>],
    ) -> std::result::Result<Vec<postgres::Row>, DbError> {
        let Conn::Pg(pg) = self else {
            return Err(DbError::Unsupported("a PostgreSQL query on SQLite"));
        };
        let mut pg = pg.borrow_mut();
        let stmt = pg.statement(sql)?;
        let refs: Vec<&(dyn PgToSql + Sync)> =
            values.iter().map(|v| v as &(dyn PgToSql + Sync)).collect();
        Ok(pg.client.query(&stmt, &refs)?)
    }

    /// The first row of a query, decoded by `f`, if there is one.
    pub(crate) fn query_opt<T>(
        &self,
        op: &'static str,
        table: &'static str,
        sql: &str,
        params: &[&dyn Param],
        f: impl FnOnce(&Columns<'_, '_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let values: Vec<Value<'_>> = params.iter().map(|p| p.value()).collect();
        match self {
            Conn::Sqlite(c) => {
                let err = |e: rusqlite::Error| Error::Sql {
                    op,
                    source: e.into(),
                };
                let mut stmt = c.prepare_cached(sql).map_err(err)?;
                let mut rows = stmt
                    .query(rusqlite::params_from_iter(values.iter()))
                    .map_err(err)?;
                match rows.next().map_err(err)? {
                    Some(row) => Ok(Some(f(&Columns::new(RowRef::Sqlite(row), table, op))?)),
                    None => Ok(None),
                }
            }
            Conn::Pg(_) => {
                let rows = self.pg_query(sql, &values).map_err(sql_err(op))?;
                match rows.first() {
                    Some(row) => Ok(Some(f(&Columns::new(RowRef::Pg(row), table, op))?)),
                    None => Ok(None),
                }
            }
        }
    }

    /// Does the query return a row?
    pub(crate) fn exists(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<bool> {
        Ok(self.query_opt(op, "", sql, params, |_| Ok(()))?.is_some())
    }

    /// One integer (or NULL) from the first row's first column.
    pub(crate) fn query_int(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<Option<i64>> {
        Ok(self
            .query_opt(op, "", sql, params, |c| c.opt_int(0))?
            .flatten())
    }

    /// The first column of every row, as text.
    pub(crate) fn query_texts(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<Vec<String>> {
        self.query(op, "", sql, params, |c| c.text(0))
    }

    /// Open a transaction of `kind`. On SQLite a write waits up to `busy_timeout` for
    /// the write lock (its busy handler, then retries of an SQLITE_BUSY that comes back
    /// earlier, seen under lock races).
    pub(crate) fn begin(
        &self,
        op: &'static str,
        kind: TxKind,
        busy_timeout: Duration,
    ) -> Result<Tx<'_>> {
        let sql = match (self, kind) {
            (Conn::Sqlite(_), TxKind::Write) => "BEGIN IMMEDIATE",
            (Conn::Sqlite(_), TxKind::Read) => "BEGIN",
            (Conn::Pg(_), TxKind::Write) => "BEGIN ISOLATION LEVEL READ COMMITTED",
            (Conn::Pg(_), TxKind::Read) => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        };
        let started = Instant::now();
        loop {
            match self.batch_raw(sql) {
                Ok(()) => {
                    return Ok(Tx {
                        conn: self,
                        open: true,
                    });
                }
                Err(e)
                    if e.sqlite_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && started.elapsed() < busy_timeout =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(source) => return Err(Error::Sql { op, source }),
            }
        }
    }
}

/// An open transaction; rolled back when dropped without [`Tx::commit`].
pub(crate) struct Tx<'c> {
    conn: &'c Conn,
    open: bool,
}

impl Tx<'_> {
    pub(crate) fn commit(mut self, op: &'static str) -> Result<()> {
        self.open = false;
        self.conn.batch(op, "COMMIT")?;
        #[cfg(test)]
        if let Conn::Pg(pg) = self.conn
            && let Some(commits) = &pg.borrow().commits
        {
            commits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }
}

#[cfg(test)]
impl Conn {
    /// Tests: count the transactions committed on this PostgreSQL connection.
    pub(crate) fn count_commits(&self, counter: std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        if let Conn::Pg(pg) = self {
            pg.borrow_mut().commits = Some(counter);
        }
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        match self.conn {
            // A failed COMMIT or statement may have ended the transaction already.
            Conn::Sqlite(c) if c.is_autocommit() => {}
            Conn::Pg(pg) if pg.borrow().client.is_closed() => {}
            // Nothing to report to: the caller is returning the error that made it
            // give up; a connection that cannot even roll back is broken and its next
            // use says so.
            _ => {
                let _ = self.conn.batch_raw("ROLLBACK");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_placeholders() {
        assert_eq!(
            placeholders("SELECT a FROM t WHERE b = ?1 AND c IN ('?2', ?12) LIMIT ?3"),
            "SELECT a FROM t WHERE b = $1 AND c IN ('?2', $12) LIMIT $3"
        );
        assert_eq!(
            placeholders("SELECT 'it''s ?1', ?2"),
            "SELECT 'it''s ?1', $2"
        );
    }
}
