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

impl From<hsdb::Error> for StoreError {
    fn from(e: hsdb::Error) -> StoreError {
        StoreError {
            unavailable: is_unavailable(&e),
            message: e.to_string(),
        }
    }
}

/// Whether `e` says the database cannot be reached (as opposed to a refusal).
fn is_unavailable(_e: &hsdb::Error) -> bool {
    // An SQLite file is never "unavailable": its errors are retried on the same
    // connection, as they always were.
    false
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
        Ok(Hsdb::apply(self, batch)?)
    }

    fn commands(&mut self, hm: &Uuid, after: i64) -> Result<Vec<Command>, StoreError> {
        Ok(crate::commands::read(self, hm, after)?)
    }

    fn complete(&mut self, done: &[Completion]) -> Result<(), StoreError> {
        Ok(crate::commands::complete(self, done)?)
    }
}

/// Opens the HSDB at a path ([`Hsdb::open`]); `on_connect` runs on every new
/// connection before the writer uses it (registration, on the first).
pub struct HsdbConnector {
    path: std::path::PathBuf,
    options: hsdb::Options,
    on_connect: OnConnect,
}

/// What runs on each new connection.
type OnConnect = Box<dyn FnMut(&mut Hsdb) -> Result<(), StoreError> + Send>;

impl HsdbConnector {
    /// Connect to the HSDB at `path` with `options`.
    pub fn new(
        path: std::path::PathBuf,
        options: hsdb::Options,
        on_connect: impl FnMut(&mut Hsdb) -> Result<(), StoreError> + Send + 'static,
    ) -> HsdbConnector {
        HsdbConnector {
            path,
            options,
            on_connect: Box::new(on_connect),
        }
    }
}

impl fmt::Debug for HsdbConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsdbConnector")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Connector for HsdbConnector {
    type Store = Hsdb;

    fn connect(&mut self) -> Result<Hsdb, StoreError> {
        let mut db = Hsdb::open(&self.path, &self.options)?;
        (self.on_connect)(&mut db)?;
        Ok(db)
    }

    fn target(&self) -> String {
        self.path.display().to_string()
    }
}
