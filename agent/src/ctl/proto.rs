//! The ctl protocol: one request line of JSON from `vmmd ctl`, one response line back,
//! then the agent closes the connection (docs/agent.md "Applications and vmmd ctl").
//!
//! ```text
//! → {"v":1,"action":"add","class":"app","name":"app1","attrs":["monitor_script=/a/mon", …]}
//! ← {"code":"ok","message":"application app1 added","data":null}
//! ```
//!
//! The agent parses the attributes itself (the client's own check is only a courtesy):
//! a request is at most [`MAX_REQUEST`] bytes and must arrive within
//! [`REQUEST_TIMEOUT`](super::server::REQUEST_TIMEOUT).

use serde::{Deserialize, Serialize};

/// The protocol's version, `v` in every request.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest request line, newline included.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Longest response line the client reads (16 applications' status is about 8 KiB).
pub const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// What to do (the seed's actions, seed 004 L16055-16060).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Add an application or a dependency.
    Add,
    /// Change attributes of an application or a dependency's `strict`.
    Modify,
    /// Delete an application or a dependency.
    Delete,
    /// Show the configuration (`q` for short).
    #[value(alias = "q")]
    Query,
    /// Show the state and counters of the applications.
    Status,
    /// Suspend the monitoring (kept across restarts: `monitored=no`).
    Suspend,
    /// Resume the monitoring (`monitored=yes`).
    Resume,
    /// Start the application (clears FAILURE and ABNORMAL) and monitor it.
    Start,
    /// Stop the application and suspend its monitoring.
    Stop,
    /// Read the applications' file again and apply it.
    Sync,
}

impl Action {
    /// The word on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Modify => "modify",
            Action::Delete => "delete",
            Action::Query => "query",
            Action::Status => "status",
            Action::Suspend => "suspend",
            Action::Resume => "resume",
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Sync => "sync",
        }
    }
}

/// What the action is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Applications.
    App,
    /// Dependencies between applications.
    Dependency,
    /// The agent itself (`query vmm`).
    Vmm,
}

impl Class {
    /// Parse a class word; `None` when it is none of them.
    pub fn parse(word: &str) -> Option<Class> {
        match word {
            "app" | "application" => Some(Class::App),
            "dependency" | "dep" => Some(Class::Dependency),
            "vmm" => Some(Class::Vmm),
            _ => None,
        }
    }
}

/// One request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// [`PROTOCOL_VERSION`].
    pub v: u32,
    /// What to do.
    pub action: Action,
    /// What it is about (`None` for `sync`).
    pub class: Option<Class>,
    /// The application, when the action names one; `None` = every application.
    pub name: Option<String>,
    /// `key=value` attributes as given.
    #[serde(default)]
    pub attrs: Vec<String>,
}

/// How a request ended; `vmmd ctl`'s exit code follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// Done (exit 0).
    Ok,
    /// Malformed, invalid or refused by a rule (exit 2).
    BadRequest,
    /// No such application or dependency (exit 4).
    Unknown,
    /// Valid, but the agent could not carry it out (exit 1), e.g. the file could not
    /// be written: nothing changed.
    Failed,
}

impl Code {
    /// `vmmd ctl`'s exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Code::Ok => 0,
            Code::Failed => 1,
            Code::BadRequest => 2,
            Code::Unknown => 4,
        }
    }
}

/// One response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    /// How it ended.
    pub code: Code,
    /// What was done, or why not.
    pub message: String,
    /// What `query` and `status` show.
    #[serde(default)]
    pub data: Option<Data>,
}

impl Response {
    /// Done.
    pub fn ok(message: impl Into<String>, data: Option<Data>) -> Response {
        Response {
            code: Code::Ok,
            message: message.into(),
            data,
        }
    }

    /// Not done.
    pub fn err(code: Code, message: impl Into<String>) -> Response {
        Response {
            code,
            message: message.into(),
            data: None,
        }
    }
}

/// What `query` and `status` return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "items")]
pub enum Data {
    /// `query app`.
    Apps(Vec<AppView>),
    /// `query dependency`.
    Dependencies(Vec<DependencyView>),
    /// `status`.
    Status(Vec<StatusRow>),
    /// `query vmm`.
    Vmm(VmmView),
}

/// An application's configuration as `query app` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppView {
    /// Its name.
    pub name: String,
    /// Every attribute with its value, in the order shown.
    pub attributes: Vec<(String, String)>,
    /// Restart cycles counted now (the seed's read-only `nooftimes_restarted`).
    pub restarts: u32,
    /// State and colour, e.g. `NORMAL (GREEN)`.
    pub status: String,
}

/// A dependency as `query dependency` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencyView {
    /// Every attribute with its value.
    pub attributes: Vec<(String, String)>,
}

/// A current and a maximum count (the seed's status table `cur/max`, seed 004 L9477-9481).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// Now.
    pub cur: u32,
    /// The limit.
    pub max: u32,
}

/// One row of `status` (the seed's status table, seed 004 L9477-9481, L9494-9496).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRow {
    /// The application.
    pub name: String,
    /// UNSET, NORMAL, FAILING, TO_STOP, TO_START, FAILURE, ABNORMAL.
    pub state: String,
    /// GREEN, YELLOW, RED.
    pub colour: String,
    /// The last script's outcome: NORMAL, ABNORM, TIMOUT, or NOTSET before any
    /// (seed 004 L9480, L9536, L9819); `None` when the engine does not say.
    pub result: Option<String>,
    /// Monitoring on.
    pub monitored: bool,
    /// A FAILURE is escalated.
    pub critical: bool,
    /// script, http, smtp or tcp.
    pub monitor: String,
    /// Successive monitor failures / `monitor_failure_threshold`.
    pub fail: Option<Counter>,
    /// Successive stop failures / `stop_max_failures`.
    pub stop: Option<Counter>,
    /// Successive start failures / `start_max_failures`.
    pub start: Option<Counter>,
    /// Restart cycles / `max_restart`.
    pub restart: Counter,
    /// When the state last changed, ms since the Unix epoch.
    pub since_ms: u64,
    /// Why: the last failure or message.
    pub detail: String,
}

/// The agent, as `query vmm` shows it (seed 004 L16092-16137).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmmView {
    /// vmmd's version.
    pub version: String,
    /// This VM's UUID.
    pub vm_uuid: String,
    /// The OS type it announces.
    pub ostype: String,
    /// vmmd's process id.
    pub pid: u32,
    /// The ctl socket.
    pub socket: String,
    /// The applications' file.
    pub apps_file: String,
    /// Applications configured.
    pub apps: usize,
    /// At most this many.
    pub max_apps: usize,
    /// Dependencies configured.
    pub dependencies: usize,
}
