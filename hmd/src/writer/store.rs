//! The HSDB calls the writer makes, behind two small traits: [`Store`] (one open
//! connection) and [`Connector`] (how to get a new one). The daemon uses the HSDB itself
//! ([`HsdbConnector`]); tests wrap it to make it fail and recover on cue.

use std::fmt;

use hsdb::{Applied, Hsdb, Transition, Uuid};

use crate::commands::{Command, Completion};

/// A failed HSDB call, as the writer sees it: whether the database is unavailable
/// (cannot be reached, or the connection broke: reconnect and retry later) or refused
/// (the call is retried on the same connection), and what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    /// The database cannot be reached or the connection broke.
    pub unavailable: bool,
    /// What went wrong (never holds a password: the HSDB's errors name no secret).
    pub message: String,
}

impl StoreError {
    /// The database cannot be reached: `message` says why.
    #[cfg(test)]
    pub fn unavailable(message: impl Into<String>) -> StoreError {
        StoreError {
            unavailable: true,
            message: message.into(),
        }
    }

    /// The database answered with a refusal.
    #[cfg(test)]
    pub fn refused(message: impl Into<String>) -> StoreError {
        StoreError {
            unavailable: false,
            message: message.into(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StoreError {
    /// `e`, from a PostgreSQL HSDB when `postgres`. Only PostgreSQL is ever
    /// *unavailable* (unreachable, restarting, the connection broke:
    /// [`hsdb::Error::is_unavailable`]): an SQLite file is local, and a lock another
    /// process holds on it for longer than the busy timeout is retried on the same
    /// connection, as it always was (the watchdog restarts a writer stuck that way).
    pub fn from_hsdb(e: &hsdb::Error, postgres: bool) -> StoreError {
        StoreError {
            unavailable: postgres && e.is_unavailable(),
            message: e.to_string(),
        }
    }
}

/// One open connection to the HSDB: the writer's calls.
pub trait Store: Send {
    /// Apply `batch` in one transaction ([`Hsdb::apply`]).
    fn apply(&mut self, batch: &[Transition]) -> Result<Applied, StoreError>;
    /// Monitor `hm`'s open commands with an id above `after`.
    fn commands(&mut self, hm: &Uuid, after: i64) -> Result<Vec<Command>, StoreError>;
    /// Mark `done` done.
    fn complete(&mut self, done: &[Completion]) -> Result<(), StoreError>;
    /// The connection is unusable whatever the last error said: replace it.
    fn is_broken(&self) -> bool {
        false
    }
}

/// How the writer gets a (new) connection.
pub trait Connector: Send + 'static {
    /// The connection.
    type Store: Store + 'static;
    /// Connect (and, on the first success, whatever the monitor owes the HSDB before
    /// its first transition: its registration).
    fn connect(&mut self) -> Result<Self::Store, StoreError>;
    /// What it connects to, for people (never a password).
    fn target(&self) -> String;
}

impl Store for Hsdb {
    fn apply(&mut self, batch: &[Transition]) -> Result<Applied, StoreError> {
        Hsdb::apply(self, batch).map_err(|e| self.store_error(&e))
    }

    fn commands(&mut self, hm: &Uuid, after: i64) -> Result<Vec<Command>, StoreError> {
        crate::commands::read(self, hm, after).map_err(|e| self.store_error(&e))
    }

    fn complete(&mut self, done: &[Completion]) -> Result<(), StoreError> {
        crate::commands::complete(self, done).map_err(|e| self.store_error(&e))
    }

    fn is_broken(&self) -> bool {
        Hsdb::is_broken(self)
    }
}

/// The writer's view of an error of `db`.
trait StoreErrorOf {
    fn store_error(&self, e: &hsdb::Error) -> StoreError;
}

impl StoreErrorOf for Hsdb {
    fn store_error(&self, e: &hsdb::Error) -> StoreError {
        StoreError::from_hsdb(e, self.backend() == hsdb::Backend::Postgres)
    }
}

/// Connects to the HSDB ([`Hsdb::connect`]: an SQLite file or a PostgreSQL database);
/// `on_connect` runs on every new connection before the writer uses it (the monitor's
/// registration, when start-up could not do it).
pub struct HsdbConnector {
    target: hsdb::Target,
    options: hsdb::Options,
    on_connect: OnConnect,
}

/// What runs on each new connection.
pub type OnConnect = Box<dyn FnMut(&mut Hsdb) -> Result<(), hsdb::Error> + Send>;

impl HsdbConnector {
    /// Connect to `target` with `options`.
    pub fn new(
        target: hsdb::Target,
        options: hsdb::Options,
        on_connect: impl FnMut(&mut Hsdb) -> Result<(), hsdb::Error> + Send + 'static,
    ) -> HsdbConnector {
        HsdbConnector {
            target,
            options,
            on_connect: Box::new(on_connect),
        }
    }
}

impl fmt::Debug for HsdbConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The target's Display never shows a password.
        f.debug_struct("HsdbConnector")
            .field("target", &self.target.to_string())
            .finish_non_exhaustive()
    }
}

impl Connector for HsdbConnector {
    type Store = Hsdb;

    fn connect(&mut self) -> Result<Hsdb, StoreError> {
        let postgres = self.target.is_postgres();
        let mut db = Hsdb::connect(&self.target, &self.options)
            .map_err(|e| StoreError::from_hsdb(&e, postgres))?;
        (self.on_connect)(&mut db).map_err(|e| StoreError::from_hsdb(&e, postgres))?;
        Ok(db)
    }

    fn target(&self) -> String {
        self.target.to_string()
    }
}
