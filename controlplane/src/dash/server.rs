//! The dashboard's server: a listener thread, one thread per connection (at most
//! `max_connections`), one request per connection (`Connection: close`), and the router
//! that puts login, sessions, roles and CSRF in front of the views.
//!
//! A connection has [`Limits::request_timeout`] to deliver its whole request (TLS
//! handshake, head and body); a slow client is answered 408 and closed. Writes time out
//! after [`Limits::write_timeout`] (a client that stops reading). Nothing a client sends
//! makes a thread panic; if a view does, the client gets a 500 and the server goes on.
//!
//! Routes (contract A): `GET /login`, `POST /login`, `POST /logout`, `GET /static/…`
//! (no login needed: the views' CSS and JS), `GET /stream` (SSE), every other `GET` →
//! the views' page, `POST /action/…` → the views' action for an operator with a valid
//! CSRF token. Without a session a `GET` is sent to `/login?next=…`, a `POST` or
//! `/stream` gets 401.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hsdb::{Hsdb, Options, Target};

use super::auth::{self, Active, COOKIE, Login, LoginOutcome, Sessions};
use super::config::DashboardConfig;
use super::http::{self, HttpError, Method, Request, RequestBuffer, Response, escape_html};
use super::sse::{self, Feed};
use super::tls::{self, TlsError};
use super::users::{UserStore, UsersError};
use super::{Ctx, login, views};
use crate::cli::config::Config;
use crate::clock::{Clock, SystemClock};

/// Most idle HSDB connections kept for requests.
const POOL: usize = 4;

/// Timeouts of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The whole request (TLS handshake, head, body) must arrive within this.
    pub request_timeout: Duration,
    /// One write may block this long.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            request_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the dashboard cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DashError {
    /// The address cannot be bound.
    #[error("dashboard listen {addr}: cannot bind: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate or key.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The users file.
    #[error(transparent)]
    Users(#[from] UsersError),
    /// The HSDB setting.
    #[error("dashboard: {0}")]
    Setup(String),
}

/// What `hactl check-config` checks beyond the file's syntax, as `hactl run` would at
/// start: the users file loads (every line good, not writable by others), the
/// certificate and key load and belong together.
pub fn check(dash: &DashboardConfig) -> Result<(), DashError> {
    super::users::load(&dash.users_file)?;
    if let Some(files) = &dash.tls {
        tls::server_config(files)?;
    }
    Ok(())
}

/// What every connection thread shares.
struct Shared {
    config: Config,
    dash: DashboardConfig,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    users: UserStore,
    sessions: Sessions,
    login: Login,
    target: Target,
    options: Options,
    pool: Mutex<Vec<Hsdb>>,
    feed: Feed,
    stop: AtomicBool,
    open: AtomicUsize,
    streams: AtomicUsize,
}

/// The running dashboard; stopped by [`Dashboard::stop`] or when dropped.
pub struct Dashboard {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("addr", &self.addr)
            .finish()
    }
}

/// Counts an open connection (or stream) while it lives.
struct Held<'a>(&'a AtomicUsize);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Dashboard {
    /// Check the users file and the certificate, bind `dash.listen`, start serving.
    pub fn start(config: &Config, dash: &DashboardConfig) -> Result<Dashboard, DashError> {
        Dashboard::start_with(config, dash, Limits::default())
    }

    /// [`Dashboard::start`] with other timeouts (tests).
    pub fn start_with(
        config: &Config,
        dash: &DashboardConfig,
        limits: Limits,
    ) -> Result<Dashboard, DashError> {
        let users = UserStore::open(&dash.users_file)?;
        let tls = match &dash.tls {
            Some(files) => Some(tls::server_config(files)?),
            None => None,
        };
        let target = config
            .hsdb
            .target(config.hsdb_password_file.as_deref())
            .map_err(|e| DashError::Setup(e.to_string()))?;
        let options = Options {
            synchronous: config.synchronous,
            ..Options::default()
        };
        let login = Login::new().map_err(DashError::Setup)?;
        let listener = TcpListener::bind(dash.listen).map_err(|source| DashError::Bind {
            addr: dash.listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| DashError::Bind {
            addr: dash.listen,
            source,
        })?;
        let shared = Arc::new(Shared {
            config: config.clone(),
            dash: dash.clone(),
            limits,
            tls,
            users,
            sessions: Sessions::new(dash.session_idle),
            login,
            target,
            options,
            pool: Mutex::new(Vec::new()),
            feed: Feed::default(),
            stop: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            streams: AtomicUsize::new(0),
        });
        let spawn_err = |e: std::io::Error| DashError::Setup(format!("cannot start a thread: {e}"));
        let accept_shared = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("dash-accept".into())
            .spawn(move || accept(&accept_shared, &listener))
            .map_err(spawn_err)?;
        let tick_shared = Arc::clone(&shared);
        let ticker = std::thread::Builder::new()
            .name("dash-snapshot".into())
            .spawn(move || {
                let s = &tick_shared;
                sse::ticker(&s.feed, &s.streams, &s.stop, &|| {
                    Hsdb::connect_read_only(&s.target, &s.options)
                });
            })
            .map_err(spawn_err)?;
        tracing::info!(
            listen = %addr,
            scheme = dash.scheme(),
            users_file = %dash.users_file.display(),
            users = shared.users.accounts().len(),
            session_idle_s = dash.session_idle.as_secs(),
            max_connections = dash.max_connections,
            "dashboard serving"
        );
        Ok(Dashboard {
            addr,
            shared,
            threads: vec![acceptor, ticker],
        })
    }

    /// The address it listens on (the port chosen when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop: no new connection; open streams end; requests in progress get up to two
    /// seconds.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if self.shared.stop.swap(true, Ordering::Relaxed) {
            return;
        }
        self.shared.feed.stop();
        // Wake the blocking accept.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let end = Instant::now() + Duration::from_secs(2);
        while self.shared.open.load(Ordering::Relaxed) > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::info!(
            listen = %self.addr,
            still_open = self.shared.open.load(Ordering::Relaxed),
            "dashboard stopped"
        );
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.halt();
    }
}

fn accept(shared: &Arc<Shared>, listener: &TcpListener) {
    let mut refused_logged = Instant::now() - Duration::from_secs(60);
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let tcp = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("dashboard accept: {e}");
                // Out of descriptors: give the others time to close.
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let open = shared.open.fetch_add(1, Ordering::Relaxed) + 1;
        if open > shared.dash.max_connections {
            shared.open.fetch_sub(1, Ordering::Relaxed);
            if refused_logged.elapsed() >= Duration::from_secs(10) {
                tracing::warn!(
                    max_connections = shared.dash.max_connections,
                    "dashboard connection refused: max_connections open"
                );
                refused_logged = Instant::now();
            }
            if shared.tls.is_none() {
                let _ = tcp.set_nonblocking(true);
                let _ = (&tcp).write_all(
                    &Response::text(503, "too many connections\n".into())
                        .with_header("Retry-After", "5")
                        .serialize(false),
                );
            }
            continue;
        }
        let s = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name("dash-conn".into())
            .spawn(move || {
                let _held = Held(&s.open);
                connection(&s, tcp);
            });
        if let Err(e) = spawned {
            shared.open.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!("dashboard: cannot start a connection thread: {e}");
        }
    }
}

/// A connection, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }

    fn finish(&mut self) {
        if let Conn::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        let _ = self.tcp().shutdown(std::net::Shutdown::Write);
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// How reading a request ended badly.
enum ReadError {
    /// Refused: answer with its status.
    Http(HttpError),
    /// Too slow.
    Timeout,
    /// Closed or broken (nothing to answer).
    Gone,
}

fn read_request(conn: &mut Conn, deadline: Instant) -> Result<Request, ReadError> {
    let mut buf = RequestBuffer::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Timeout);
        }
        let _ = conn.tcp().set_read_timeout(Some(left));
        let n = match conn.read(&mut chunk) {
            Ok(0) => return Err(ReadError::Gone),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ReadError::Timeout);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(ReadError::Gone),
        };
        match buf.push(&chunk[..n]) {
            Ok(Some(req)) => return Ok(req),
            Ok(None) => {}
            Err(e) => return Err(ReadError::Http(e)),
        }
    }
}

fn connection(shared: &Shared, tcp: TcpStream) {
    let peer = tcp
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_write_timeout(Some(shared.limits.write_timeout));
    let deadline = Instant::now() + shared.limits.request_timeout;
    let mut conn = match &shared.tls {
        None => Conn::Plain(tcp),
        Some(config) => {
            // A TLS connection starts with a handshake record (0x16); anything else is
            // plain HTTP sent to the HTTPS port: answered in plain text, closed.
            let _ = tcp.set_read_timeout(Some(shared.limits.request_timeout));
            let mut first = [0u8; 1];
            match tcp.peek(&mut first) {
                Ok(1) if first[0] == 0x16 => {}
                Ok(1) => {
                    tracing::debug!(from = %peer, "plain HTTP on the HTTPS port refused");
                    let _ = (&tcp).write_all(
                        &Response::text(400, "this port speaks HTTPS: use https://\n".into())
                            .serialize(false),
                    );
                    let _ = tcp.shutdown(std::net::Shutdown::Both);
                    return;
                }
                _ => return,
            }
            match rustls::ServerConnection::new(Arc::clone(config)) {
                Ok(c) => Conn::Tls(Box::new(rustls::StreamOwned::new(c, tcp))),
                Err(e) => {
                    tracing::warn!("dashboard TLS: {e}");
                    return;
                }
            }
        }
    };
    let mut req = match read_request(&mut conn, deadline) {
        Ok(r) => r,
        Err(ReadError::Gone) => return,
        Err(ReadError::Timeout) => {
            tracing::debug!(from = %peer, "slow client closed (request not complete in time)");
            respond(
                shared,
                &mut conn,
                &Response::text(408, "request too slow\n".into()),
                false,
            );
            return;
        }
        Err(ReadError::Http(e)) => {
            tracing::debug!(from = %peer, "request refused: {e}");
            respond(
                shared,
                &mut conn,
                &Response::text(e.status(), format!("{e}\n")),
                false,
            );
            return;
        }
    };
    req.peer = client_address(shared, &peer, &req);
    let _ = conn
        .tcp()
        .set_read_timeout(Some(shared.limits.write_timeout));
    let routed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| route(shared, &req)));
    let head_only = req.method == Method::Head;
    match routed {
        Ok(Routed::Respond(r)) => respond(shared, &mut conn, &r, head_only),
        Ok(Routed::Stream(token)) => stream(shared, &mut conn, &token),
        Err(_) => {
            tracing::error!(path = %req.path, "dashboard: a page failed (panic): answered 500");
            respond(
                shared,
                &mut conn,
                &Response::text(500, "internal error\n".into()),
                head_only,
            );
        }
    }
}

/// The client's address for logs and throttling: the peer's IP; behind a reverse proxy
/// (plain HTTP, necessarily on loopback) the last address of `X-Forwarded-For`.
fn client_address(shared: &Shared, peer: &str, req: &Request) -> String {
    let ip = peer
        .parse::<SocketAddr>()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| peer.to_owned());
    if shared.tls.is_none()
        && let Some(forwarded) = req.header("x-forwarded-for")
        && let Some(last) = forwarded.rsplit(',').next()
        && let Ok(addr) = last.trim().parse::<std::net::IpAddr>()
    {
        return addr.to_string();
    }
    ip
}

fn security_headers(shared: &Shared, r: &mut Response, page: bool) {
    let mut add = |n: &str, v: &str| r.headers.push((n.to_owned(), v.to_owned()));
    add(
        "Content-Security-Policy",
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    );
    add("X-Content-Type-Options", "nosniff");
    add("Referrer-Policy", "same-origin");
    add("X-Frame-Options", "DENY");
    add(
        "Cache-Control",
        if page {
            "no-store"
        } else {
            "private, max-age=60"
        },
    );
    if shared.tls.is_some() {
        add("Strict-Transport-Security", "max-age=31536000");
    }
}

fn respond(shared: &Shared, conn: &mut Conn, r: &Response, head_only: bool) {
    let mut r = r.clone();
    let is_static = r.header("x-hvha-static").is_some();
    r.headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case("x-hvha-static"));
    security_headers(shared, &mut r, !is_static);
    let _ = conn.write_all(&r.serialize(head_only));
    let _ = conn.flush();
    conn.finish();
}

fn stream(shared: &Shared, conn: &mut Conn, token: &str) {
    let taken = shared.streams.fetch_add(1, Ordering::Relaxed) + 1;
    let _held = Held(&shared.streams);
    if taken > sse::MAX_STREAMS {
        tracing::warn!(
            "dashboard: {} live streams open: one more refused",
            sse::MAX_STREAMS
        );
        respond(
            shared,
            conn,
            &Response::text(503, "too many live streams\n".into()).with_header("Retry-After", "10"),
            false,
        );
        return;
    }
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
         X-Content-Type-Options: nosniff\r\nConnection: close\r\n",
    );
    if shared.tls.is_some() {
        head.push_str("Strict-Transport-Security: max-age=31536000\r\n");
    }
    head.push_str("\r\n");
    let alive = || {
        !shared.stop.load(Ordering::Relaxed)
            && shared.sessions.get(token, &shared.users, false).is_some()
    };
    let _ = sse::serve(conn, &shared.feed, head.as_bytes(), &alive);
    conn.finish();
}

enum Routed {
    Respond(Response),
    /// `/stream` for the session of this token.
    Stream(String),
}

fn cookie(shared: &Shared, token: &str) -> String {
    let secure = if shared.tls.is_some() { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}")
}

fn expired_cookie(shared: &Shared) -> String {
    let secure = if shared.tls.is_some() { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}")
}

/// An `Origin` (else `Referer`), when sent, must name this server (the `Host` the
/// browser used). The scheme is not compared: behind a reverse proxy the browser speaks
/// HTTPS to the proxy and the proxy HTTP to us.
pub fn same_origin(req: &Request) -> Result<(), String> {
    let claimed = req
        .header("origin")
        .map(|o| ("Origin", o))
        .or_else(|| req.header("referer").map(|r| ("Referer", r)));
    let Some((which, value)) = claimed else {
        return Ok(());
    };
    let host = req.header("host").unwrap_or("");
    let authority = value
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""));
    match authority {
        Some(a) if !a.is_empty() && !host.is_empty() && a.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(format!(
            "{which} {:?} is not this server (Host {:?})",
            value.chars().take(100).collect::<String>(),
            host
        )),
    }
}

fn forbidden(why: &str) -> Response {
    Response::html(
        403,
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>hvha — \
             forbidden</title></head><body><h1>Forbidden</h1><p class=\"error\">{}</p>\
             <p><a href=\"/\">Back to the overview</a></p></body></html>\n",
            escape_html(why)
        ),
    )
}

fn unauthorized() -> Response {
    Response::text(401, "log in first: /login\n".into())
}

fn now_ms() -> i64 {
    SystemClock.now_ms()
}

fn route(shared: &Shared, req: &Request) -> Routed {
    let token = req.cookie(COOKIE).unwrap_or("");
    let session = |touch| shared.sessions.get(token, &shared.users, touch);
    let get = matches!(req.method, Method::Get | Method::Head);
    let r = match (&req.method, req.path.as_str()) {
        (_, "/login") if get => {
            let next = req.param("next").unwrap_or("/");
            match session(true) {
                Some(_) => Response::redirect(login::local_next(next).unwrap_or("/")),
                None => login::page(200, next, "", None),
            }
        }
        (Method::Post, "/login") => post_login(shared, req),
        (Method::Post, "/logout") => {
            // No session (expired, or the controller restarted): nothing to end.
            let Some(active) = session(false) else {
                return Routed::Respond(
                    Response::redirect("/login").with_header("Set-Cookie", expired_cookie(shared)),
                );
            };
            if let Err(why) = check_csrf(req, &active) {
                tracing::warn!(user = %active.user.name, from = %req.peer, "logout refused: {why}");
                return Routed::Respond(forbidden(&why));
            }
            shared.sessions.remove(token);
            tracing::info!(user = %active.user.name, from = %req.peer, "logout");
            Response::redirect("/login").with_header("Set-Cookie", expired_cookie(shared))
        }
        (_, path) if get && (path.starts_with("/static/") || path == "/favicon.ico") => {
            // Where browsers look for the icon by themselves, on every page including
            // the login page: the views' icon, without a session.
            let name = match path.strip_prefix("/static/") {
                Some(name) => name,
                None => views::STATIC
                    .iter()
                    .find(|(n, _, _)| n.starts_with("favicon."))
                    .map_or("", |(n, _, _)| *n),
            };
            match views::STATIC.iter().find(|(n, _, _)| *n == name) {
                Some((_, ctype, bytes)) => Response {
                    status: 200,
                    content_type: ctype,
                    body: bytes.to_vec(),
                    headers: vec![("X-Hvha-Static".into(), "1".into())],
                },
                None => Response::text(404, "no such file\n".into()),
            }
        }
        (Method::Get, "/stream") => {
            if session(true).is_none() {
                return Routed::Respond(unauthorized());
            }
            return Routed::Stream(token.to_owned());
        }
        (_, _) if get => match session(true) {
            None => Response::redirect(&format!(
                "/login?next={}",
                http::encode_component(&req.path_and_query())
            )),
            Some(active) => with_db(shared, &active, |ctx| views::page(ctx, req)),
        },
        (Method::Post, path) => {
            let Some(active) = session(true) else {
                return Routed::Respond(unauthorized());
            };
            if !path.starts_with("/action/") {
                Response::text(404, "no such action\n".into())
            } else if !auth::may_act(active.user.role) {
                tracing::warn!(
                    user = %active.user.name, from = %req.peer, action = %path,
                    "dashboard action refused: role read-only"
                );
                forbidden("your role is read-only: actions need the operator role")
            } else if let Err(why) = check_csrf(req, &active) {
                tracing::warn!(
                    user = %active.user.name, from = %req.peer, action = %path,
                    "dashboard action refused: {why}"
                );
                forbidden(&why)
            } else {
                let r = with_db(shared, &active, |ctx| views::action(ctx, req));
                tracing::info!(
                    user = %active.user.name,
                    from = %req.peer,
                    action = %path,
                    status = r.status,
                    location = r.header("location").unwrap_or(""),
                    "dashboard action"
                );
                r
            }
        }
        _ => Response::text(405, "method not allowed\n".into())
            .with_header("Allow", "GET, HEAD, POST"),
    };
    Routed::Respond(r)
}

fn check_csrf(req: &Request, active: &Active) -> Result<(), String> {
    match req.field("csrf") {
        None => return Err("the form has no CSRF token: reload the page".into()),
        Some(t) if !auth::same(t, &active.csrf) => {
            return Err("the form's CSRF token is not this session's: reload the page".into());
        }
        Some(_) => {}
    }
    same_origin(req)
}

fn post_login(shared: &Shared, req: &Request) -> Response {
    let next = req.field("next").unwrap_or("/");
    let username = req.field("username").unwrap_or("");
    if let Err(why) = same_origin(req) {
        tracing::warn!(from = %req.peer, "login refused: {why}");
        return forbidden(&why);
    }
    let password = req.field("password").unwrap_or("");
    if username.is_empty() || password.is_empty() {
        return login::page(400, next, username, Some("user name and password, please"));
    }
    match shared
        .login
        .attempt(&shared.users, username, password, &req.peer)
    {
        LoginOutcome::Ok(user) => match shared.sessions.create(&user.name) {
            Some(token) => Response::redirect(login::local_next(next).unwrap_or("/"))
                .with_header("Set-Cookie", cookie(shared, &token)),
            None => Response::text(500, "no randomness for a session\n".into()),
        },
        LoginOutcome::Failed => {
            login::page(401, next, username, Some("wrong user name or password"))
        }
        LoginOutcome::Throttled(wait) => login::page(
            429,
            next,
            username,
            Some(&format!(
                "too many failed logins: try again in {} s",
                wait.as_secs().max(1)
            )),
        )
        .with_header("Retry-After", wait.as_secs().max(1).to_string()),
    }
}

fn with_db(shared: &Shared, active: &Active, f: impl FnOnce(&mut Ctx) -> Response) -> Response {
    let pooled = shared.pool.lock().ok().and_then(|mut p| p.pop());
    let mut db = match pooled {
        Some(db) => db,
        None => match Hsdb::connect(&shared.target, &shared.options) {
            Ok(db) => db,
            Err(e) => {
                tracing::warn!("dashboard: HSDB unavailable: {e}");
                return Response::html(
                    503,
                    format!(
                        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
                         <title>hvha — HSDB unavailable</title></head><body><h1>HSDB \
                         unavailable</h1><p class=\"error\">{}</p></body></html>\n",
                        escape_html(&e.to_string())
                    ),
                );
            }
        },
    };
    let mut ctx = Ctx {
        user: &active.user,
        csrf: &active.csrf,
        now_ms: now_ms(),
        db: &mut db,
        config: &shared.config,
    };
    let r = f(&mut ctx);
    if let Ok(mut p) = shared.pool.lock()
        && p.len() < POOL
    {
        p.push(db);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request {
        Request {
            method: Method::Post,
            path: "/action/x".into(),
            query: vec![],
            form: vec![],
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            peer: String::new(),
        }
    }

    #[test]
    fn origin_must_be_this_server_when_sent() {
        assert!(same_origin(&req(&[("host", "h:8443")])).is_ok());
        assert!(same_origin(&req(&[("host", "h:8443"), ("origin", "https://h:8443")])).is_ok());
        assert!(same_origin(&req(&[("host", "h:8443"), ("origin", "https://evil:8443")])).is_err());
        assert!(same_origin(&req(&[("host", "h:8443"), ("origin", "null")])).is_err());
        assert!(
            same_origin(&req(&[
                ("host", "h:8443"),
                ("referer", "https://h:8443/vms?x")
            ]))
            .is_ok()
        );
        assert!(
            same_origin(&req(&[
                ("host", "h:8443"),
                ("referer", "https://h:8443.evil/")
            ]))
            .is_err()
        );
        assert!(same_origin(&req(&[("origin", "https://h:8443")])).is_err());
    }
}
