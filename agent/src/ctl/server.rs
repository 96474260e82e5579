//! The ctl socket inside the running vmmd: one thread serves `vmmd ctl`'s requests one
//! after another (docs/agent.md "Applications and vmmd ctl").
//!
//! - The socket's directory is created 0700 when missing and refused when group or
//!   others may write it; the socket is 0600. Each connection's peer credentials are
//!   read from the kernel (`SO_PEERCRED`): only uid 0 is served.
//! - A request is one line of at most [`MAX_REQUEST`] bytes, complete within
//!   [`REQUEST_TIMEOUT`] of the connection however its bytes are paced; otherwise the
//!   client gets an error line and is closed. A response not read within
//!   [`WRITE_TIMEOUT`] is dropped. So a slow or garbage client delays other `vmmd ctl`
//!   calls by at most [`REQUEST_TIMEOUT`], and never the agent's HVNCP loop or the AME,
//!   which run on their own threads.
//! - Every change is validated ([`AmeConfig::validate`]), handed to the AME (which
//!   validates it again) and only then written to the applications' file; if the
//!   write fails the AME gets the previous configuration back, so the file, the AME
//!   and what `vmmd ctl query` shows never disagree.

use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _,
};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::attrs;
use super::proto::{
    Action, AppView, Class, Code, Data, DependencyView, MAX_REQUEST, PROTOCOL_VERSION, Request,
    Response, StatusRow, VmmView,
};
use crate::ame::config::{AmeConfig, Dependency};
use crate::ame::store::{Store, StoreError};

/// A request must be complete this long after the connection was accepted.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// A response the client does not read within this long is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// An operator action on applications (`None` name = every application).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// Suspend monitoring.
    Suspend,
    /// Resume monitoring.
    Resume,
    /// Start (clears FAILURE / ABNORMAL).
    Start,
    /// Stop and suspend monitoring.
    Stop,
}

/// What the ctl server needs of the AME.
pub trait AmeControl: Send + 'static {
    /// Replace the whole configuration; `Err` names what the AME refused.
    fn set_config(&self, config: AmeConfig) -> Result<(), String>;
    /// An operator action; `None` = every application.
    fn command(&self, op: Operator, name: Option<String>) -> Result<(), String>;
    /// The status of every application.
    fn status(&self) -> Vec<StatusRow>;
}

/// The requests' logic: the configuration as persisted, the file and the AME.
pub struct Ctl<A> {
    store: Store,
    /// As persisted: `monitored` follows the operator's suspend, resume, stop, start.
    config: AmeConfig,
    /// As last given to the AME. The AME keeps an unchanged application's state only
    /// if its attributes are unchanged, `monitored` included, while its operator
    /// commands change the state without changing the attributes: so an unchanged
    /// application is given the `monitored` it was given before, and a change of
    /// `monitored` alone is carried out as a suspend or resume command.
    given: AmeConfig,
    ame: A,
    vmm: VmmView,
}

impl<A: AmeControl> Ctl<A> {
    /// `config` is what `store` holds and `ame` runs.
    pub fn new(store: Store, config: AmeConfig, ame: A, vmm: VmmView) -> Self {
        Self {
            store,
            given: config.clone(),
            config,
            ame,
            vmm,
        }
    }

    /// The configuration as persisted.
    #[cfg(test)]
    pub fn config(&self) -> &AmeConfig {
        &self.config
    }

    /// Carry out one request.
    pub fn handle(&mut self, req: Request) -> Response {
        if req.v != PROTOCOL_VERSION {
            return Response::err(
                Code::BadRequest,
                format!(
                    "protocol version {} is not supported: this vmmd speaks version {PROTOCOL_VERSION}",
                    req.v
                ),
            );
        }
        let words = match attrs::split_words(&req.attrs) {
            Ok(w) => w,
            Err(e) => return Response::err(Code::BadRequest, e.to_string()),
        };
        let class = req.class;
        let name = req.name;
        let shape = |ok: bool, usage: &str| {
            if ok {
                None
            } else {
                Some(Response::err(
                    Code::BadRequest,
                    format!("usage: vmmd ctl {usage}"),
                ))
            }
        };
        let usage = match (req.action, class) {
            (Action::Add | Action::Modify, Some(Class::App)) => shape(
                name.is_some() && !words.is_empty(),
                &format!("{} app <name> key=value…", req.action.as_str()),
            ),
            (Action::Delete, Some(Class::App)) => {
                shape(name.is_some() && words.is_empty(), "delete app <name>")
            }
            (Action::Add | Action::Modify | Action::Delete, Some(Class::Dependency)) => shape(
                name.is_none() && !words.is_empty(),
                &format!(
                    "{} dependency dependency_type=… dependency_list=a,b… [strict=yes|no]",
                    req.action.as_str()
                ),
            ),
            (Action::Query, Some(Class::App)) | (Action::Status, Some(Class::App) | None) => shape(
                words.is_empty(),
                &format!("{} app [<name>]", req.action.as_str()),
            ),
            (Action::Query, Some(Class::Dependency | Class::Vmm)) => shape(
                name.is_none() && words.is_empty(),
                "query dependency | query vmm",
            ),
            (
                Action::Suspend | Action::Resume | Action::Start | Action::Stop,
                Some(Class::App) | None,
            ) => shape(
                words.is_empty(),
                &format!("{} app [<name>]", req.action.as_str()),
            ),
            (Action::Sync, None) => shape(name.is_none() && words.is_empty(), "sync"),
            (action, class) => Some(Response::err(
                Code::BadRequest,
                format!(
                    "{} is not an action on {}",
                    action.as_str(),
                    match class {
                        Some(Class::App) => "app",
                        Some(Class::Dependency) => "dependency",
                        Some(Class::Vmm) => "vmm",
                        None => "nothing (give app, dependency or vmm)",
                    }
                ),
            )),
        };
        if let Some(r) = usage {
            return r;
        }
        if let (Some(n), Some(Class::App) | None) = (&name, class)
            && req.action != Action::Add
            && !self.config.apps.iter().any(|a| &a.name == n)
        {
            return Response::err(Code::Unknown, format!("no application named {n}"));
        }
        match (req.action, class) {
            (Action::Add, Some(Class::App)) => self.add_app(name.unwrap_or_default(), &words),
            (Action::Modify, Some(Class::App)) => {
                self.modify_app(&name.unwrap_or_default(), &words)
            }
            (Action::Delete, Some(Class::App)) => self.delete_app(&name.unwrap_or_default()),
            (Action::Query, Some(Class::App)) => self.query_apps(name.as_deref()),
            (Action::Status, _) => self.status(name.as_deref()),
            (Action::Add, Some(Class::Dependency)) => self.add_dependency(&words),
            (Action::Modify, Some(Class::Dependency)) => self.modify_dependency(&words),
            (Action::Delete, Some(Class::Dependency)) => self.delete_dependency(&words),
            (Action::Query, Some(Class::Dependency)) => self.query_dependencies(),
            (Action::Query, Some(Class::Vmm)) => self.query_vmm(),
            (Action::Sync, _) => self.sync(),
            (Action::Suspend, _) => self.operator(Operator::Suspend, name),
            (Action::Resume, _) => self.operator(Operator::Resume, name),
            (Action::Start, _) => self.operator(Operator::Start, name),
            (Action::Stop, _) => self.operator(Operator::Stop, name),
            _ => Response::err(Code::BadRequest, "not an action"),
        }
    }

    /// What the AME is given for the persisted `next` (see [`Ctl::given`]), and the
    /// suspend or resume commands that carry out the changes of `monitored` of the
    /// applications it keeps.
    fn for_ame(&self, next: &AmeConfig) -> (AmeConfig, Vec<(Operator, String)>) {
        let mut out = next.clone();
        let mut commands = Vec::new();
        for app in &mut out.apps {
            let Some(given) = self.given.apps.iter().find(|g| g.name == app.name) else {
                continue;
            };
            let mut same = app.clone();
            same.monitored = given.monitored;
            same.critical = given.critical;
            if same != *given {
                continue; // changed: the AME starts it afresh with the persisted flag
            }
            let was = self
                .config
                .apps
                .iter()
                .find(|a| a.name == app.name)
                .is_some_and(|a| a.monitored);
            if app.monitored != was {
                let op = if app.monitored {
                    Operator::Resume
                } else {
                    Operator::Suspend
                };
                commands.push((op, app.name.clone()));
            }
            app.monitored = given.monitored;
        }
        (out, commands)
    }

    /// Give `next` to the AME; `Err` when the AME refused it (nothing changed). The
    /// commands returned carry out its changes of `monitored`: [`Ctl::run`] them once
    /// the change is kept.
    fn give(&mut self, next: &AmeConfig) -> Result<Vec<(Operator, String)>, String> {
        let (for_ame, commands) = self.for_ame(next);
        self.ame.set_config(for_ame.clone())?;
        self.given = for_ame;
        Ok(commands)
    }

    fn run(&self, commands: Vec<(Operator, String)>) {
        for (op, name) in commands {
            if let Err(e) = self.ame.command(op, Some(name.clone())) {
                warn!(app = %name, "cannot carry out monitored={}: {e}", op == Operator::Resume);
            }
        }
    }

    /// Validate `next`, give it to the AME, persist it; roll the AME back if the write
    /// fails.
    fn apply(&mut self, next: AmeConfig, done: String) -> Response {
        if let Err(e) = next.validate() {
            return Response::err(Code::BadRequest, e.to_string());
        }
        let before = self.given.clone();
        let commands = match self.give(&next) {
            Ok(c) => c,
            Err(e) => return Response::err(Code::BadRequest, e),
        };
        if let Err(e) = self.store.save(&next) {
            if let Err(back) = self.ame.set_config(before.clone()) {
                warn!("cannot give the AME its previous configuration back: {back}");
            }
            self.given = before;
            return Response::err(Code::Failed, e.to_string());
        }
        info!(change = %done, file = %self.store.path().display(), "applications' configuration changed");
        self.config = next;
        self.run(commands);
        Response::ok(done, None)
    }

    fn add_app(&mut self, name: String, words: &[(String, String)]) -> Response {
        if self.config.apps.iter().any(|a| a.name == name) {
            return Response::err(
                Code::BadRequest,
                format!("application {name} exists already: use modify app {name}"),
            );
        }
        let app = match attrs::new_app(&name, words) {
            Ok(a) => a,
            Err(e) => return Response::err(Code::BadRequest, e.to_string()),
        };
        let mut next = self.config.clone();
        next.apps.push(app);
        self.apply(next, format!("application {name} added"))
    }

    fn modify_app(&mut self, name: &str, words: &[(String, String)]) -> Response {
        let mut next = self.config.clone();
        let Some(app) = next.apps.iter_mut().find(|a| a.name == name) else {
            return Response::err(Code::Unknown, format!("no application named {name}"));
        };
        if let Err(e) = attrs::set_app_attributes(app, words) {
            return Response::err(Code::BadRequest, e.to_string());
        }
        self.apply(next, format!("application {name} modified"))
    }

    fn delete_app(&mut self, name: &str) -> Response {
        if let Some(dep) = self
            .config
            .dependencies
            .iter()
            .find(|d| d.apps.iter().any(|a| a == name))
        {
            return Response::err(
                Code::BadRequest,
                format!(
                    "application {name} is in the {} dependency {}: delete the dependency first",
                    dep.kind,
                    dep.apps.join(",")
                ),
            );
        }
        let mut next = self.config.clone();
        next.apps.retain(|a| a.name != name);
        self.apply(next, format!("application {name} deleted"))
    }

    fn status_of(&self) -> Vec<StatusRow> {
        self.ame.status()
    }

    fn query_apps(&self, name: Option<&str>) -> Response {
        let status = self.status_of();
        let views = self
            .config
            .apps
            .iter()
            .filter(|a| name.is_none_or(|n| n == a.name))
            .map(|a| AppView {
                name: a.name.clone(),
                attributes: attrs::app_attributes(a)
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_string()))
                    .collect(),
                restarts: status
                    .iter()
                    .find(|s| s.name == a.name)
                    .map_or(0, |s| s.restart.cur),
                status: status.iter().find(|s| s.name == a.name).map_or_else(
                    || "UNKNOWN".to_owned(),
                    |s| format!("{} ({})", s.state, s.colour),
                ),
            })
            .collect();
        Response::ok("", Some(Data::Apps(views)))
    }

    fn status(&self, name: Option<&str>) -> Response {
        let rows = self
            .status_of()
            .into_iter()
            .filter(|s| name.is_none_or(|n| n == s.name))
            .collect();
        Response::ok("", Some(Data::Status(rows)))
    }

    /// The dependency `words` name: same type and list.
    fn find_dependency(
        &self,
        words: &[(String, String)],
    ) -> Result<(usize, Dependency), Box<Response>> {
        let dep = attrs::new_dependency(words)
            .map_err(|e| Box::new(Response::err(Code::BadRequest, e.to_string())))?;
        match self
            .config
            .dependencies
            .iter()
            .position(|d| d.kind == dep.kind && d.apps == dep.apps)
        {
            Some(i) => Ok((i, dep)),
            None => Err(Box::new(Response::err(
                Code::Unknown,
                format!(
                    "no {} dependency with dependency_list={}",
                    dep.kind,
                    dep.apps.join(",")
                ),
            ))),
        }
    }

    fn add_dependency(&mut self, words: &[(String, String)]) -> Response {
        let dep = match attrs::new_dependency(words) {
            Ok(d) => d,
            Err(e) => return Response::err(Code::BadRequest, e.to_string()),
        };
        if self
            .config
            .dependencies
            .iter()
            .any(|d| d.kind == dep.kind && d.apps == dep.apps)
        {
            return Response::err(
                Code::BadRequest,
                format!(
                    "the {} dependency {} exists already",
                    dep.kind,
                    dep.apps.join(",")
                ),
            );
        }
        let done = format!("{} dependency {} added", dep.kind, dep.apps.join(","));
        let mut next = self.config.clone();
        next.dependencies.push(dep);
        self.apply(next, done)
    }

    fn modify_dependency(&mut self, words: &[(String, String)]) -> Response {
        if !words.iter().any(|(k, _)| k == "strict") {
            return Response::err(
                Code::BadRequest,
                "modify dependency changes strict only: give dependency_type, dependency_list \
                 and strict=yes|no (to change the list, delete and add)",
            );
        }
        let (i, dep) = match self.find_dependency(words) {
            Ok(found) => found,
            Err(r) => return *r,
        };
        let done = format!("{} dependency {} modified", dep.kind, dep.apps.join(","));
        let mut next = self.config.clone();
        next.dependencies[i] = dep;
        self.apply(next, done)
    }

    fn delete_dependency(&mut self, words: &[(String, String)]) -> Response {
        if let Some((k, v)) = words.iter().find(|(k, _)| k == "strict") {
            return Response::err(
                Code::BadRequest,
                format!(
                    "{k}={v} is invalid: delete names a dependency by dependency_type and dependency_list only"
                ),
            );
        }
        let (i, dep) = match self.find_dependency(words) {
            Ok(found) => found,
            Err(r) => return *r,
        };
        let mut next = self.config.clone();
        next.dependencies.remove(i);
        self.apply(
            next,
            format!("{} dependency {} deleted", dep.kind, dep.apps.join(",")),
        )
    }

    fn query_dependencies(&self) -> Response {
        let views = self
            .config
            .dependencies
            .iter()
            .map(|d| DependencyView {
                attributes: attrs::dependency_attributes(d)
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_string()))
                    .collect(),
            })
            .collect();
        Response::ok("", Some(Data::Dependencies(views)))
    }

    fn query_vmm(&self) -> Response {
        let mut vmm = self.vmm.clone();
        vmm.apps = self.config.apps.len();
        vmm.dependencies = self.config.dependencies.len();
        Response::ok("", Some(Data::Vmm(vmm)))
    }

    fn sync(&mut self) -> Response {
        let next = match self.store.load() {
            Ok(c) => c,
            Err(e @ StoreError::Read { .. }) => return Response::err(Code::Failed, e.to_string()),
            Err(e) => return Response::err(Code::BadRequest, format!("{e} (nothing applied)")),
        };
        let commands = match self.give(&next) {
            Ok(c) => c,
            Err(e) => return Response::err(Code::BadRequest, format!("{e} (nothing applied)")),
        };
        let done = format!(
            "{} read again: {} application(s), {} dependency(ies) applied",
            self.store.path().display(),
            next.apps.len(),
            next.dependencies.len()
        );
        info!(file = %self.store.path().display(), apps = next.apps.len(), "applications' file read again (sync)");
        self.config = next;
        self.run(commands);
        Response::ok(done, None)
    }

    fn operator(&mut self, op: Operator, name: Option<String>) -> Response {
        if let Err(e) = self.ame.command(op, name.clone()) {
            return Response::err(Code::Failed, e);
        }
        // Suspending and stopping are kept across restarts: monitored=no in the file
        // (and yes again for resume and start).
        let monitored = matches!(op, Operator::Resume | Operator::Start);
        let mut next = self.config.clone();
        for app in &mut next.apps {
            if name.as_ref().is_none_or(|n| *n == app.name) {
                app.monitored = monitored;
            }
        }
        let which = name.map_or_else(
            || "every application".to_owned(),
            |n| format!("application {n}"),
        );
        let word = match op {
            Operator::Suspend => "monitoring suspended",
            Operator::Resume => "monitoring resumed",
            Operator::Start => "started",
            Operator::Stop => "stopped",
        };
        if next != self.config {
            if let Err(e) = self.store.save(&next) {
                return Response::err(
                    Code::Failed,
                    format!(
                        "{which} {word}, but monitored={} could not be kept: {e}",
                        if monitored { "yes" } else { "no" }
                    ),
                );
            }
            self.config = next;
        }
        info!(apps = %which, "operator: {word}");
        Response::ok(format!("{which}: {word}"), None)
    }
}

/// The running ctl server: its thread and its socket.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Bind the socket at `path` (directory 0700, socket 0600) and serve `ctl` on a
    /// thread of its own.
    pub fn spawn<A: AmeControl>(path: &Path, ctl: Ctl<A>) -> io::Result<Server> {
        let listener = bind(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ctl".into())
            .spawn(move || serve(&listener, ctl, &flag))?;
        info!(socket = %path.display(), "vmmd ctl socket listening (root only)");
        Ok(Server {
            path: path.to_owned(),
            stop,
            thread: Some(thread),
        })
    }

    /// Stop serving (a request being served is finished first) and remove the socket.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            warn!("the ctl thread panicked");
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_now();
        }
    }
}

/// Create the directory (0700) if missing, refuse one others may write, remove a stale
/// socket (refuse if another vmmd answers on it), bind, chmod 0600.
fn bind(path: &Path) -> io::Result<UnixListener> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let named = |what: String| io::Error::other(format!("ctl socket {}: {what}", path.display()));
    // A mistake in the configuration rather than in the machine's state.
    let misconfigured = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("ctl socket {}: {what}", path.display()),
        )
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                named(format!(
                    "cannot create the directory {}: {e}",
                    dir.display()
                ))
            })?;
    }
    let meta =
        std::fs::metadata(dir).map_err(|e| named(format!("directory {}: {e}", dir.display())))?;
    if meta.mode() & 0o022 != 0 {
        return Err(misconfigured(format!(
            "the directory {} (mode {:04o}) may be written by group or others: give the socket a directory of its own (it is created 0700)",
            dir.display(),
            meta.mode() & 0o7777
        )));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(named("another vmmd answers on it".to_owned()));
            }
            std::fs::remove_file(path)
                .map_err(|e| named(format!("cannot remove the stale socket: {e}")))?;
        }
        Ok(_) => return Err(misconfigured("exists and is not a socket".to_owned())),
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(|e| named(format!("cannot bind: {e}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| named(format!("cannot chmod 0600: {e}")))?;
    Ok(listener)
}

fn serve<A: AmeControl>(listener: &UnixListener, mut ctl: Ctl<A>, stop: &AtomicBool) {
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((stream, _)) => serve_one(stream, &mut ctl),
            Err(e) => {
                warn!("ctl socket: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn respond(stream: &mut UnixStream, response: &Response) {
    let mut line = serde_json::to_string(response).unwrap_or_else(|e| {
        format!(
            "{{\"code\":\"failed\",\"message\":\"cannot encode the response: {e}\",\"data\":null}}"
        )
    });
    line.push('\n');
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    if let Err(e) = stream.write_all(line.as_bytes()) {
        debug!("ctl client went away before its response: {e}");
    }
}

/// Serve one connection: check the peer, read one bounded request within the time
/// allowed, answer it, close.
fn serve_one<A: AmeControl>(mut stream: UnixStream, ctl: &mut Ctl<A>) {
    match rustix::net::sockopt::socket_peercred(&stream) {
        Ok(cred) if cred.uid.is_root() => {}
        Ok(cred) => {
            warn!(
                uid = cred.uid.as_raw(),
                pid = cred.pid.as_raw_nonzero().get(),
                "ctl request refused: not root"
            );
            respond(
                &mut stream,
                &Response::err(
                    Code::BadRequest,
                    format!(
                        "permission denied: vmmd ctl is for root only (you are uid {})",
                        cred.uid.as_raw()
                    ),
                ),
            );
            return;
        }
        Err(e) => {
            warn!("ctl request refused: cannot read the peer's credentials: {e}");
            return;
        }
    }
    let request = match read_request(&mut stream) {
        Ok(r) => r,
        Err(message) => {
            warn!("ctl request refused: {message}");
            respond(&mut stream, &Response::err(Code::BadRequest, message));
            return;
        }
    };
    debug!(?request, "ctl request");
    let response = ctl.handle(request);
    respond(&mut stream, &response);
}

fn read_request(stream: &mut UnixStream) -> Result<Request, String> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let line_end = loop {
        if let Some(at) = buf.iter().position(|&b| b == b'\n') {
            break at;
        }
        if buf.len() > MAX_REQUEST {
            return Err(format!("request longer than {MAX_REQUEST} bytes"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no complete request within {} s",
                REQUEST_TIMEOUT.as_secs()
            ));
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Err("connection closed without a request".to_owned()),
            Ok(0) => break buf.len(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "no complete request within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read the request: {e}")),
        }
    };
    if line_end > MAX_REQUEST {
        return Err(format!("request longer than {MAX_REQUEST} bytes"));
    }
    serde_json::from_slice(&buf[..line_end]).map_err(|e| format!("not a ctl request: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::process::CommandExt as _;
    use std::sync::Mutex;

    use super::*;
    use crate::ctl::client;
    use crate::ctl::proto::Counter;

    /// What the server asked of the AME, for the assertions; answers like a real one
    /// (validates, knows only configured names).
    #[derive(Clone, Default)]
    struct Recorder {
        seen: Arc<Mutex<Vec<String>>>,
        config: Arc<Mutex<AmeConfig>>,
        refuse_next: Arc<AtomicBool>,
    }

    impl AmeControl for Recorder {
        fn set_config(&self, config: AmeConfig) -> Result<(), String> {
            if self.refuse_next.swap(false, Ordering::SeqCst) {
                return Err("refused by the AME".into());
            }
            config.validate().map_err(|e| e.to_string())?;
            self.seen
                .lock()
                .unwrap()
                .push(format!("set_config {}", config.apps.len()));
            *self.config.lock().unwrap() = config;
            Ok(())
        }
        fn command(&self, op: Operator, name: Option<String>) -> Result<(), String> {
            self.seen.lock().unwrap().push(format!("{op:?} {name:?}"));
            Ok(())
        }
        fn status(&self) -> Vec<StatusRow> {
            self.config
                .lock()
                .unwrap()
                .apps
                .iter()
                .map(|a| StatusRow {
                    name: a.name.clone(),
                    state: "NORMAL".into(),
                    colour: "GREEN".into(),
                    result: Some("NORMAL".into()),
                    monitored: a.monitored,
                    critical: a.critical,
                    monitor: "script".into(),
                    fail: Some(Counter {
                        cur: 0,
                        max: a.monitor_failure_threshold,
                    }),
                    stop: None,
                    start: None,
                    restart: Counter {
                        cur: 0,
                        max: a.max_restart,
                    },
                    since_ms: 0,
                    detail: String::new(),
                })
                .collect()
        }
    }

    fn vmm() -> VmmView {
        VmmView {
            version: "test".into(),
            vm_uuid: "61be20f0-09a8-4753-b5e5-564f8a545ed5".into(),
            ostype: "linux".into(),
            pid: std::process::id(),
            socket: String::new(),
            apps_file: String::new(),
            apps: 0,
            max_apps: crate::ame::config::MAX_APPS,
            dependencies: 0,
        }
    }

    fn req(action: Action, words: &[&str]) -> Request {
        let words: Vec<String> = words.iter().map(|s| (*s).to_owned()).collect();
        crate::ctl::request(action, &words).unwrap()
    }

    fn ctl(dir: &Path) -> (Ctl<Recorder>, Recorder) {
        let rec = Recorder::default();
        let store = Store::new(dir.join("apps.toml"));
        (
            Ctl::new(store, AmeConfig::default(), rec.clone(), vmm()),
            rec,
        )
    }

    const ADD: &[&str] = &[
        "app",
        "app1",
        "monitor_script=/a/mon",
        "start_script=/a/start",
        "stop_script=/a/stop",
    ];

    #[test]
    fn changes_are_validated_applied_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ctl, rec) = ctl(dir.path());
        let store = Store::new(dir.path().join("apps.toml"));
        let r = ctl.handle(req(Action::Add, ADD));
        assert_eq!(r.code, Code::Ok, "{r:?}");
        assert_eq!(r.message, "application app1 added");
        assert_eq!(store.load().unwrap(), *ctl.config());
        assert_eq!(*rec.config.lock().unwrap(), *ctl.config());
        // The seed's KSYSVMMGR-057 rule: refused, nothing changed anywhere.
        let before = std::fs::read(store.path()).unwrap();
        let r = ctl.handle(req(Action::Modify, &["app", "app1", "monitor_timeout=30"]));
        assert_eq!(r.code, Code::BadRequest);
        assert_eq!(
            r.message,
            "application app1: monitor_period (30 s) must exceed monitor_timeout (30 s)"
        );
        assert_eq!(std::fs::read(store.path()).unwrap(), before);
        assert_eq!(
            rec.config.lock().unwrap().apps[0].monitor_timeout,
            Duration::from_secs(10)
        );
        // Refused by the AME: not persisted.
        rec.refuse_next.store(true, Ordering::SeqCst);
        let r = ctl.handle(req(Action::Modify, &["app", "app1", "critical=yes"]));
        assert_eq!(
            (r.code, r.message.as_str()),
            (Code::BadRequest, "refused by the AME")
        );
        assert_eq!(std::fs::read(store.path()).unwrap(), before);
        let r = ctl.handle(req(
            Action::Modify,
            &[
                "app",
                "app1",
                "critical=yes",
                "monitor_period=60",
                "monitor_timeout=30",
            ],
        ));
        assert_eq!(r.code, Code::Ok, "{r:?}");
        let saved = store.load().unwrap();
        assert!(saved.apps[0].critical);
        assert_eq!(saved.apps[0].monitor_period, Duration::from_secs(60));
        // Unknown names, duplicates.
        let r = ctl.handle(req(Action::Modify, &["app", "nope", "critical=no"]));
        assert_eq!(
            (r.code, r.message.as_str()),
            (Code::Unknown, "no application named nope")
        );
        let r = ctl.handle(req(Action::Add, ADD));
        assert_eq!(r.code, Code::BadRequest);
        assert!(r.message.contains("exists already"), "{}", r.message);
    }

    #[test]
    fn a_failed_write_gives_the_ame_its_previous_configuration_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ctl, rec) = ctl(dir.path());
        assert_eq!(ctl.handle(req(Action::Add, ADD)).code, Code::Ok);
        // Block the temporary file's name so the next write fails.
        let tmp = Store::new(dir.path().join("apps.toml")).temp_path();
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(tmp.join("x"), "x").unwrap();
        let r = ctl.handle(req(Action::Modify, &["app", "app1", "critical=yes"]));
        assert_eq!(r.code, Code::Failed);
        assert!(
            r.message.contains("cannot create the temporary file"),
            "{}",
            r.message
        );
        assert!(!rec.config.lock().unwrap().apps[0].critical, "rolled back");
        assert!(!ctl.config().apps[0].critical);
    }

    #[test]
    fn dependencies_delete_sync_and_operator_actions() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ctl, rec) = ctl(dir.path());
        let store = Store::new(dir.path().join("apps.toml"));
        assert_eq!(ctl.handle(req(Action::Add, ADD)).code, Code::Ok);
        let add2 = [
            "app",
            "app2",
            "monitor_script=/b/mon",
            "start_script=/b/start",
            "stop_script=/b/stop",
        ];
        assert_eq!(ctl.handle(req(Action::Add, &add2)).code, Code::Ok);
        let dep = [
            "dependency",
            "dependency_type=start_sequence",
            "dependency_list=app1,app2",
        ];
        let r = ctl.handle(req(Action::Add, &dep));
        assert_eq!(
            (r.code, r.message.as_str()),
            (Code::Ok, "start_sequence dependency app1,app2 added")
        );
        let r = ctl.handle(req(Action::Add, &dep));
        assert!(r.message.contains("exists already"), "{r:?}");
        let r = ctl.handle(req(
            Action::Add,
            &[
                "dependency",
                "dependency_type=start_sequence",
                "dependency_list=app2,app1",
            ],
        ));
        assert_eq!(r.code, Code::BadRequest);
        assert!(
            r.message.contains("cycle in the start order"),
            "{}",
            r.message
        );
        let r = ctl.handle(req(Action::Delete, &["app", "app1"]));
        assert_eq!(r.code, Code::BadRequest);
        assert!(
            r.message.contains("delete the dependency first"),
            "{}",
            r.message
        );
        let r = ctl.handle(req(
            Action::Modify,
            &[
                "dependency",
                "dependency_type=start_sequence",
                "dependency_list=app1,app2",
                "strict=no",
            ],
        ));
        assert_eq!(r.code, Code::Ok, "{r:?}");
        assert!(!store.load().unwrap().dependencies[0].strict);
        let r = ctl.handle(req(
            Action::Delete,
            &[
                "dependency",
                "dependency_type=stop_sequence",
                "dependency_list=app1,app2",
            ],
        ));
        assert_eq!(
            (r.code, r.message.as_str()),
            (
                Code::Unknown,
                "no stop_sequence dependency with dependency_list=app1,app2"
            )
        );
        let r = ctl.handle(req(Action::Delete, &dep));
        assert_eq!(r.code, Code::Ok, "{r:?}");
        assert_eq!(
            ctl.handle(req(Action::Delete, &["app", "app1"])).code,
            Code::Ok
        );
        assert_eq!(store.load().unwrap().apps.len(), 1);

        // Operator actions reach the AME and keep monitored in the file.
        let r = ctl.handle(req(Action::Stop, &["app", "app2"]));
        assert_eq!(
            (r.code, r.message.as_str()),
            (Code::Ok, "application app2: stopped")
        );
        assert!(!store.load().unwrap().apps[0].monitored);
        let r = ctl.handle(req(Action::Resume, &["app"]));
        assert_eq!(r.message, "every application: monitoring resumed");
        assert!(store.load().unwrap().apps[0].monitored);
        let r = ctl.handle(req(Action::Suspend, &["ghost"]));
        assert_eq!(r.code, Code::Unknown);
        assert_eq!(
            rec.seen
                .lock()
                .unwrap()
                .iter()
                .filter(|s| !s.starts_with("set_config"))
                .collect::<Vec<_>>(),
            ["Stop Some(\"app2\")", "Resume None"]
        );

        // A hand edit applied by sync; a broken one refused with the line, nothing applied.
        let mut hand = store.load().unwrap();
        hand.apps[0].max_restart = 9;
        store.save(&hand).unwrap();
        let r = ctl.handle(req(Action::Sync, &[]));
        assert_eq!(r.code, Code::Ok, "{r:?}");
        assert_eq!(rec.config.lock().unwrap().apps[0].max_restart, 9);
        let text = std::fs::read_to_string(store.path())
            .unwrap()
            .replace("max_restart = 9", "max_restart = 0");
        std::fs::write(store.path(), text).unwrap();
        let r = ctl.handle(req(Action::Sync, &[]));
        assert_eq!(r.code, Code::BadRequest);
        assert!(
            r.message.contains("max_restart=0 is invalid")
                && r.message.contains("(nothing applied)"),
            "{}",
            r.message
        );
        assert_eq!(rec.config.lock().unwrap().apps[0].max_restart, 9);
    }

    #[test]
    fn monitored_changes_keep_the_ames_state() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ctl, rec) = ctl(dir.path());
        let store = Store::new(dir.path().join("apps.toml"));
        assert_eq!(ctl.handle(req(Action::Add, ADD)).code, Code::Ok);
        assert_eq!(
            ctl.handle(req(Action::Stop, &["app", "app1"])).code,
            Code::Ok
        );
        assert!(!store.load().unwrap().apps[0].monitored, "kept in the file");
        let ame_app1 = |rec: &Recorder| rec.config.lock().unwrap().apps[0].clone();
        let commands = |rec: &Recorder| -> Vec<String> {
            rec.seen
                .lock()
                .unwrap()
                .iter()
                .filter(|s| !s.starts_with("set_config"))
                .cloned()
                .collect()
        };
        // Another change: app1 is given to the AME as before (unchanged, its state kept).
        let add2 = [
            "app",
            "app2",
            "monitor_script=/b/mon",
            "start_script=/b/start",
            "stop_script=/b/stop",
        ];
        assert_eq!(ctl.handle(req(Action::Add, &add2)).code, Code::Ok);
        assert!(ame_app1(&rec).monitored, "unchanged for the AME");
        assert!(!store.load().unwrap().apps[0].monitored);
        // monitored alone changed: a command, the AME's attributes unchanged.
        assert_eq!(
            ctl.handle(req(Action::Modify, &["app", "app1", "monitored=yes"]))
                .code,
            Code::Ok
        );
        assert_eq!(
            commands(&rec),
            ["Stop Some(\"app1\")", "Resume Some(\"app1\")"]
        );
        assert!(store.load().unwrap().apps[0].monitored);
        // A real change with it: the AME starts app1 afresh with the persisted flag.
        let r = ctl.handle(req(
            Action::Modify,
            &["app", "app1", "monitored=no", "monitor_period=60"],
        ));
        assert_eq!(r.code, Code::Ok);
        assert!(!ame_app1(&rec).monitored);
        assert_eq!(
            commands(&rec).len(),
            2,
            "no command for a fresh application"
        );
    }

    #[test]
    fn queries() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ctl, _rec) = ctl(dir.path());
        assert_eq!(ctl.handle(req(Action::Add, ADD)).code, Code::Ok);
        let r = ctl.handle(req(Action::Query, &["app"]));
        let Some(Data::Apps(apps)) = &r.data else {
            panic!("{r:?}")
        };
        assert_eq!(apps[0].status, "NORMAL (GREEN)");
        let text = crate::ctl::render(&r, false);
        assert!(text.starts_with("Application name=app1\n monitored=yes\n monitor_script=/a/mon\n monitor_period=30\n monitor_timeout=10\n"), "{text}");
        assert!(
            text.ends_with(
                " critical=no\n probe=none\n nooftimes_restarted=0\n status=NORMAL (GREEN)\n"
            ),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&crate::ctl::render(&r, true)).unwrap();
        assert_eq!(json[0]["attributes"]["monitor_failure_threshold"], "5");
        let r = ctl.handle(req(Action::Status, &[]));
        let text = crate::ctl::render(&r, false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with(
                "NAME  STATE   COLOUR  RESULT  MON  CRIT  FAIL  STOP  START  RESTART  MONITOR"
            ),
            "{text}"
        );
        assert!(
            lines[1].starts_with(
                "app1  NORMAL  GREEN   NORMAL  yes  no    0/5   -     -      0/3      script"
            ),
            "{text}"
        );
        let r = ctl.handle(req(Action::Query, &["vmm"]));
        let Some(Data::Vmm(v)) = &r.data else {
            panic!("{r:?}")
        };
        assert_eq!((v.apps, v.max_apps), (1, 16));
        let r = ctl.handle(req(Action::Query, &["app", "zzz"]));
        assert_eq!(r.code, Code::Unknown);
        let bad = Request {
            v: 2,
            ..req(Action::Sync, &[])
        };
        assert!(
            ctl.handle(bad)
                .message
                .contains("protocol version 2 is not supported")
        );
        let bad = Request {
            class: Some(Class::Vmm),
            ..req(Action::Add, ADD)
        };
        assert_eq!(ctl.handle(bad).message, "add is not an action on vmm");
    }

    /// Random request lines (bytes, then JSON-shaped ones with random words) never
    /// panic the handler, and every answer is one of the four codes with a message.
    #[test]
    fn random_requests_get_an_answer_and_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ctl, _) = ctl(dir.path());
        assert_eq!(ctl.handle(req(Action::Add, ADD)).code, Code::Ok);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let words = [
            "app",
            "app1",
            "dependency",
            "vmm",
            "=",
            "monitor_period=",
            "monitor_period=5",
            "critical=yes",
            "probe=http",
            "probe_port=0",
            "dependency_type=parent_child",
            "dependency_list=app1,app1",
            "strict=no",
            "\u{0}",
            "é=é",
            "a=b=c",
        ];
        let actions = [
            "add", "modify", "delete", "query", "status", "suspend", "resume", "start", "stop",
            "sync",
        ];
        let mut answered = 0;
        for round in 0..3000 {
            let line: Vec<u8> = if round % 2 == 0 {
                let len = usize::try_from(next() % 200).unwrap();
                (0..len).map(|_| next().to_le_bytes()[0]).collect()
            } else {
                let pick = |n: u64, of: usize| usize::try_from(n).unwrap() % of;
                let attrs: Vec<&str> = (0..next() % 4)
                    .map(|_| words[pick(next(), words.len())])
                    .collect();
                let class = ["\"app\"", "\"dependency\"", "\"vmm\"", "null"][pick(next(), 4)];
                let name = ["\"app1\"", "null", "\"zz\"", "\"\""][pick(next(), 4)];
                format!(
                    r#"{{"v":1,"action":"{}","class":{class},"name":{name},"attrs":{}}}"#,
                    actions[pick(next(), actions.len())],
                    serde_json::to_string(&attrs).unwrap()
                )
                .into_bytes()
            };
            if let Ok(request) = serde_json::from_slice::<Request>(&line) {
                let r = ctl.handle(request);
                assert!(!r.message.is_empty() || r.data.is_some(), "{r:?}");
                answered += 1;
            }
        }
        assert!(
            answered > 1000,
            "most JSON-shaped requests parse: {answered}"
        );
        // Whatever they did, the file still reads back as what the handler holds.
        assert_eq!(
            Store::new(dir.path().join("apps.toml")).load().unwrap(),
            *ctl.config()
        );
    }

    /// A real server on a socket in a private temporary directory.
    fn server(dir: &Path) -> (Server, PathBuf) {
        let (ctl, _) = ctl(dir);
        let sock = dir.join("run/ctl.sock");
        (Server::spawn(&sock, ctl).unwrap(), sock)
    }

    fn raw(sock: &Path, bytes: &[u8]) -> String {
        let mut s = UnixStream::connect(sock).unwrap();
        s.write_all(bytes).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = String::new();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn the_socket_is_private_and_serves_requests() {
        let dir = tempfile::tempdir().unwrap();
        let (srv, sock) = server(dir.path());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&sock), 0o600);
        assert_eq!(mode(&dir.path().join("run")), 0o700);
        let r = client::call(&sock, &req(Action::Add, ADD)).unwrap();
        assert_eq!(r.code, Code::Ok, "{r:?}");
        let r = client::call(&sock, &req(Action::Status, &[])).unwrap();
        assert!(
            matches!(&r.data, Some(Data::Status(rows)) if rows.len() == 1),
            "{r:?}"
        );
        // A second server on the same socket is refused while the first answers.
        let (ctl2, _) = ctl(dir.path());
        let err = Server::spawn(&sock, ctl2).err().unwrap().to_string();
        assert!(err.contains("another vmmd answers on it"), "{err}");
        srv.shutdown();
        assert!(!sock.exists(), "the socket is removed at shutdown");
        let err = client::call(&sock, &req(Action::Status, &[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("cannot reach vmmd at {}", sock.display())),
            "{err}"
        );
        // A stale socket (no one listening) is replaced.
        let stale = UnixListener::bind(&sock).unwrap();
        drop(stale);
        let (srv, sock) = server(dir.path());
        assert_eq!(
            client::call(&sock, &req(Action::Status, &[])).unwrap().code,
            Code::Ok
        );
        srv.shutdown();
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let (ctl, _) = ctl(dir.path());
        let err = Server::spawn(&dir.path().join("ctl.sock"), ctl)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("mode 1777") && err.contains("may be written by group or others"),
            "{err}"
        );
    }

    #[test]
    fn garbage_oversized_and_slow_clients_get_an_error_and_never_hold_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let (srv, sock) = server(dir.path());
        let answer = |text: &str| -> Response { serde_json::from_str(text.trim_end()).unwrap() };
        let r = answer(&raw(&sock, b"hello\n"));
        assert_eq!(r.code, Code::BadRequest);
        assert!(
            r.message.starts_with("not a ctl request: "),
            "{}",
            r.message
        );
        let r = answer(&raw(&sock, b"{\"v\":1,\"action\":\"explode\"}\n"));
        assert!(
            r.message.contains("unknown variant `explode`"),
            "{}",
            r.message
        );
        let r = answer(&raw(&sock, &[0xff, 0x00, 0x10, b'\n']));
        assert_eq!(r.code, Code::BadRequest);
        // Oversized: a megabyte without a newline is cut at the limit.
        let mut s = UnixStream::connect(&sock).unwrap();
        let big = vec![b'x'; 1 << 20];
        let _ = s.set_write_timeout(Some(Duration::from_secs(20)));
        let _ = s.write_all(&big); // the server stops reading: the write may fail
        let mut out = String::new();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = s.read_to_string(&mut out);
        assert!(
            out.contains(&format!("request longer than {MAX_REQUEST} bytes")),
            "{out}"
        );
        // A client that sends half a request and then nothing is cut after
        // REQUEST_TIMEOUT, and one that says nothing at all likewise; meanwhile a
        // good client is served as soon as they are cut.
        let mut slow = UnixStream::connect(&sock).unwrap();
        slow.write_all(b"{\"v\":1,").unwrap();
        let silent = UnixStream::connect(&sock).unwrap();
        let started = Instant::now();
        let r = client::call(&sock, &req(Action::Status, &[])).unwrap();
        assert_eq!(r.code, Code::Ok);
        let waited = started.elapsed();
        assert!(
            waited >= REQUEST_TIMEOUT,
            "served after the slow ones were cut: {waited:?}"
        );
        assert!(
            waited < REQUEST_TIMEOUT * 2 + Duration::from_secs(10),
            "{waited:?}"
        );
        let mut out = String::new();
        slow.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        slow.read_to_string(&mut out).unwrap();
        assert!(out.contains("no complete request within 2 s"), "{out}");
        drop(silent);
        // A client that drips a byte at a time is cut at the same deadline.
        let mut drip = UnixStream::connect(&sock).unwrap();
        let started = Instant::now();
        let mut out = Vec::new();
        drip.set_nonblocking(true).unwrap();
        loop {
            if drip.write_all(b" ").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
            let mut buf = [0u8; 256];
            match drip.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
            assert!(started.elapsed() < Duration::from_secs(30), "never cut");
        }
        assert!(
            String::from_utf8_lossy(&out).contains("no complete request within 2 s"),
            "{out:?}"
        );
        srv.shutdown();
    }

    /// The client side of [`non_root_clients_are_refused`], run in a child process
    /// that runs as uid 65534: connect, send a status request, print what happens.
    #[test]
    fn non_root_client_child() {
        let Ok(sock) = std::env::var("HVHA_CTL_CHILD_SOCKET") else {
            return;
        };
        match client::call(Path::new(&sock), &req(Action::Status, &[])) {
            Ok(r) => println!("ANSWER {} {}", r.code.exit_code(), r.message),
            Err(e) => println!("ERROR {e}"),
        }
    }

    #[test]
    fn non_root_clients_are_refused() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: needs root to run a client as another user");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // Let uid 65534 reach the directory (the test binary is world-readable).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (srv, sock) = server(dir.path());
        std::fs::set_permissions(
            dir.path().join("run"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let as_nobody = || {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "ctl::server::tests::non_root_client_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("HVHA_CTL_CHILD_SOCKET", &sock)
                .uid(65534)
                .gid(65534)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        // The socket is 0600: the kernel refuses the connection.
        let out = as_nobody();
        assert!(
            out.contains("ERROR cannot reach vmmd") && out.contains("ermission denied"),
            "{out}"
        );
        // Even when the file's mode lets it connect, the peer's uid is checked.
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
        let out = as_nobody();
        assert!(
            out.contains(
                "ANSWER 2 permission denied: vmmd ctl is for root only (you are uid 65534)"
            ),
            "{out}"
        );
        // Root is still served.
        assert_eq!(
            client::call(&sock, &req(Action::Status, &[])).unwrap().code,
            Code::Ok
        );
        srv.shutdown();
    }
}
