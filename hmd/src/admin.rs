//! The admin UNIX socket: one line in (`status`, `stats`, `vms`, `metrics`), text out;
//! and, when `metrics_listen` is set, `GET /metrics` over HTTP for Prometheus.
//!
//! Each listener is served by its own thread with its own `mio` poll, and every
//! connection is non-blocking: a client that sends nothing, sends one byte a second or
//! sends garbage holds one slot and a small buffer, never another client's time.
//!
//! - At most [`MAX_CONNECTIONS`] connections per listener (the admin socket and the
//!   HTTP port have separate budgets, so a scrape flood never locks out `hmd ctl`).
//! - A full listener makes room for a new connection by closing the one that has been
//!   silent the longest (it gets an error line, or `503` over HTTP, first), unless every
//!   open connection is waiting for the dataplane's answer: then the new one is refused
//!   with the same message. An operator's `hmd ctl` is served even while the slots are
//!   full of idle clients; idle clients cannot keep it out by arriving first.
//! - A request must be complete within [`REQUEST_TIMEOUT`] of the connection
//!   (a slow sender is cut at that point, however it paces its bytes), within
//!   [`MAX_LINE`] bytes (a command) or [`MAX_HTTP_HEAD`] bytes (an HTTP request head).
//! - A reply the client does not read is dropped after [`WRITE_STALL`] without progress.
//!
//! The threads only relay: they hand the command to the dataplane thread (which owns
//! all the state) and write back its answer, so nothing is shared or locked on the
//! per-frame path.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError, bounded};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::runtime::AdminRequest;

/// Connections served at once on each listener (admin socket, HTTP port).
pub const MAX_CONNECTIONS: usize = 32;
/// Longest command line accepted on the admin socket.
pub const MAX_LINE: usize = 64;
/// Longest HTTP request head accepted.
pub const MAX_HTTP_HEAD: usize = 8192;
/// A request must be complete this long after its connection was accepted.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The dataplane thread must answer within this long.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// A reply is dropped when the client has read nothing of it for this long.
pub const WRITE_STALL: Duration = Duration::from_secs(5);

/// Capacity of the request channel toward the dataplane: every connection of both
/// listeners may have one request in flight, so a send never finds it full.
pub const REQUEST_QUEUE: usize = 2 * MAX_CONNECTIONS;

/// What one listener did, for `stats` and `metrics`.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Requests answered (including error answers).
    pub answered: AtomicU64,
    /// Connections closed to make room for a newer one (silent the longest).
    pub evicted: AtomicU64,
    /// Connections refused because every slot had a request in flight.
    pub refused: AtomicU64,
    /// Connections closed because the request was incomplete after
    /// [`REQUEST_TIMEOUT`] or the reply stalled for [`WRITE_STALL`].
    pub timed_out: AtomicU64,
    /// Requests longer than the limit.
    pub too_long: AtomicU64,
}

/// Counter name and help text of every [`ListenerStats`] field.
const COUNTERS: [(&str, &str); 6] = [
    ("accepted", "Connections accepted."),
    ("answered", "Requests answered, error answers included."),
    (
        "evicted",
        "Connections closed, silent the longest, to make room for a newer one.",
    ),
    (
        "refused",
        "Connections refused because every slot had a request in flight.",
    ),
    (
        "timed_out",
        "Connections closed because the request was incomplete in time or the reply stalled.",
    ),
    ("too_long", "Requests longer than the limit."),
];

impl ListenerStats {
    fn values(&self) -> [u64; 6] {
        [
            &self.accepted,
            &self.answered,
            &self.evicted,
            &self.refused,
            &self.timed_out,
            &self.too_long,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

/// The counters of both listeners; each listener appends them to the dataplane's
/// answer to `stats` and `metrics`.
#[derive(Debug, Default)]
pub struct EndpointStats {
    /// The admin socket.
    pub admin: ListenerStats,
    /// The HTTP metrics port.
    pub metrics: ListenerStats,
}

impl EndpointStats {
    /// The counters as `stats` lines (`- admin_<name> <value>`) or as Prometheus text
    /// (`hvha_hmd_endpoint_<name>_total{listener="admin"}`).
    fn append(&self, out: &mut String, prometheus: bool) {
        use std::fmt::Write as _;
        let (admin, metrics) = (self.admin.values(), self.metrics.values());
        if prometheus {
            let mut page = crate::metrics::Page::default();
            for (i, (name, help)) in COUNTERS.iter().enumerate() {
                page.family(
                    &format!("endpoint_{name}"),
                    crate::metrics::Kind::Counter,
                    &format!("Admin socket and metrics port: {help}"),
                    [
                        ([("listener", "admin")], admin[i]),
                        ([("listener", "metrics")], metrics[i]),
                    ],
                );
            }
            out.push_str(&page.finish());
            return;
        }
        for (i, (name, _)) in COUNTERS.iter().enumerate() {
            let _ = writeln!(out, "- admin_{name} {}", admin[i]);
            let _ = writeln!(out, "- metrics_{name} {}", metrics[i]);
        }
    }
}

/// Where the listeners hand requests to the dataplane thread.
#[derive(Clone)]
pub struct Relay {
    /// Requests toward the dataplane thread.
    pub requests: Sender<AdminRequest>,
    /// The dataplane thread's waker, once it runs.
    pub waker: Arc<Mutex<Option<Arc<Waker>>>>,
}

impl Relay {
    /// Hand `command` to the dataplane thread and wake it; the answer comes on the
    /// returned channel. An immediate error answer when the request cannot be queued.
    fn ask(&self, command: String) -> Result<Receiver<String>, String> {
        let (tx, rx) = bounded(1);
        let request = AdminRequest { command, reply: tx };
        match self.requests.try_send(request) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err("error: the monitor has too many requests in flight\n".into());
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err("error: the monitor is stopping\n".into());
            }
        }
        if let Ok(guard) = self.waker.lock()
            && let Some(w) = guard.as_ref()
        {
            let _ = w.wake();
        }
        Ok(rx)
    }
}

/// Bind the admin socket (replacing a stale one, mode 0600) and serve it on a thread.
pub fn serve(path: &Path, relay: Relay, stats: Arc<EndpointStats>) -> std::io::Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            // A typo must not delete a file: only a stale socket is replaced.
            return Err(std::io::Error::new(
                ErrorKind::AlreadyExists,
                "exists and is not a socket (hmd replaces only a stale socket)",
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                ErrorKind::AddrInUse,
                "another hmd answers on it",
            ));
        }
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    spawn("admin", Listener::Unix(listener), relay, stats)
}

/// Serve `GET /metrics` (Prometheus text format 0.0.4) on `addr`, on a thread. Binding
/// errors are returned (a taken port stops the daemon with a clear message); everything
/// after is counted and logged.
pub fn serve_metrics(
    addr: SocketAddr,
    relay: Relay,
    stats: Arc<EndpointStats>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    spawn("metrics", Listener::Tcp(listener), relay, stats)?;
    Ok(bound)
}

fn spawn(
    name: &'static str,
    listener: Listener,
    relay: Relay,
    stats: Arc<EndpointStats>,
) -> std::io::Result<()> {
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut SourceFd(&listener.fd()), LISTENER, Interest::READABLE)?;
    let server = Server {
        name,
        listener,
        poll,
        relay,
        all: stats,
        conns: (0..MAX_CONNECTIONS).map(|_| None).collect(),
        warned: None,
        suppressed: 0,
    };
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || server.run())?;
    Ok(())
}

const LISTENER: Token = Token(usize::MAX);

/// The counters of the listener speaking `protocol`.
fn mine(all: &EndpointStats, protocol: Protocol) -> &ListenerStats {
    match protocol {
        Protocol::Line => &all.admin,
        Protocol::Http => &all.metrics,
    }
}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    fn fd(&self) -> RawFd {
        match self {
            Listener::Unix(l) => l.as_raw_fd(),
            Listener::Tcp(l) => l.as_raw_fd(),
        }
    }
    fn accept(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Listener::Unix(l) => Stream::Unix(l.accept()?.0),
            Listener::Tcp(l) => Stream::Tcp(l.accept()?.0),
        })
    }
    fn protocol(&self) -> Protocol {
        match self {
            Listener::Unix(_) => Protocol::Line,
            Listener::Tcp(_) => Protocol::Http,
        }
    }
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn fd(&self) -> RawFd {
        match self {
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tcp(s) => s.as_raw_fd(),
        }
    }
    fn set_nonblocking(&self) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_nonblocking(true),
            Stream::Tcp(s) => s.set_nonblocking(true),
        }
    }
    fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).read(buf),
            Stream::Tcp(s) => (&*s).read(buf),
        }
    }
    fn write(&self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).write(buf),
            Stream::Tcp(s) => (&*s).write(buf),
        }
    }
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// One command line, the answer, close.
    Line,
    /// One HTTP/1.x request, one response, close.
    Http,
}

impl Protocol {
    fn limit(self) -> usize {
        match self {
            Protocol::Line => MAX_LINE,
            Protocol::Http => MAX_HTTP_HEAD,
        }
    }

    /// What to do with the bytes received so far (`eof`: the client closed its side).
    fn parse(self, buf: &[u8], eof: bool) -> Parsed {
        match self {
            Protocol::Line => parse_line(buf, eof),
            Protocol::Http => parse_http(buf, eof),
        }
    }

    /// The reply carrying the dataplane's answer `text`.
    fn wrap(self, text: &str, head_only: bool) -> Vec<u8> {
        match self {
            Protocol::Line => text.as_bytes().to_vec(),
            Protocol::Http if text.starts_with("error:") => http(
                "503 Service Unavailable",
                "text/plain; charset=utf-8",
                text,
                head_only,
            ),
            Protocol::Http => http(
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                text,
                head_only,
            ),
        }
    }

    /// The reply to a connection closed because the listener is full: `evicted`, to
    /// make room for a newer one (it was silent the longest), else refused (every slot
    /// waits for the dataplane's answer).
    fn busy(self, evicted: bool) -> Vec<u8> {
        let why = if evicted {
            "this one, silent the longest, was closed to serve a newer one"
        } else {
            "every one waits for the monitor's answer; try again"
        };
        let text = format!("error: too many connections ({MAX_CONNECTIONS} open): {why}\n");
        match self {
            Protocol::Line => text.into_bytes(),
            Protocol::Http => http("503 Service Unavailable", "text/plain", &text, false),
        }
    }

    /// The reply to a request that did not complete in time.
    fn timeout(self) -> Vec<u8> {
        let text = format!(
            "error: no complete request within {} s\n",
            REQUEST_TIMEOUT.as_secs()
        );
        match self {
            Protocol::Line => text.into_bytes(),
            Protocol::Http => http("408 Request Timeout", "text/plain", &text, false),
        }
    }
}

/// The result of reading a request so far.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// Wait for more bytes.
    More,
    /// Ask the dataplane `command`; `head_only`: an HTTP `HEAD` (headers, no body).
    Ask { command: String, head_only: bool },
    /// Reply this at once, ask nothing.
    Reply(Vec<u8>),
    /// The client closed without sending anything: close silently.
    Nothing,
}

/// A command line: the bytes up to the first newline (or to the end, when the client
/// closed its side), trimmed. Garbage that is not UTF-8 is passed on with replacement
/// characters, so the answer names it as an unknown command.
fn parse_line(buf: &[u8], eof: bool) -> Parsed {
    let line = match buf.iter().position(|&b| b == b'\n') {
        Some(end) => &buf[..end],
        None if buf.len() > MAX_LINE => {
            return Parsed::Reply(
                format!("error: no command line within {MAX_LINE} bytes\n").into_bytes(),
            );
        }
        None if eof && buf.is_empty() => return Parsed::Nothing,
        None if eof => buf,
        None => return Parsed::More,
    };
    Parsed::Ask {
        command: String::from_utf8_lossy(line).trim().to_owned(),
        head_only: false,
    }
}

/// An HTTP request head: only `GET`/`HEAD /metrics` asks the dataplane.
fn parse_http(buf: &[u8], eof: bool) -> Parsed {
    let end = find(buf, b"\r\n\r\n").or_else(|| find(buf, b"\n\n"));
    if end.is_none() {
        if buf.len() > MAX_HTTP_HEAD {
            let text = format!("request head longer than {MAX_HTTP_HEAD} bytes\n");
            return Parsed::Reply(http(
                "431 Request Header Fields Too Large",
                "text/plain; charset=utf-8",
                &text,
                false,
            ));
        }
        if !eof {
            return Parsed::More;
        }
        if buf.is_empty() {
            return Parsed::Nothing;
        }
    }
    let head = String::from_utf8_lossy(buf);
    let request_line = head.lines().next().unwrap_or("");
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => Parsed::Ask {
            command: "metrics".into(),
            head_only,
        },
        ("GET" | "HEAD", _) => Parsed::Reply(http(
            "404 Not Found",
            "text/plain; charset=utf-8",
            &format!("hmd serves /metrics only, not {path:?}\n"),
            head_only,
        )),
        _ => Parsed::Reply(http(
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            &format!("hmd answers GET /metrics only, not {method:?}\n"),
            false,
        )),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn http(status: &str, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(body);
    }
    out.into_bytes()
}

enum Phase {
    /// Receiving the request.
    Reading { buf: Vec<u8> },
    /// Waiting for the dataplane's answer.
    Answering {
        rx: Receiver<String>,
        head_only: bool,
        since: Instant,
        /// `stats` (`Some(false)`) or `metrics` (`Some(true)`): append the listeners'
        /// counters to the answer.
        counters: Option<bool>,
    },
    /// Sending the reply.
    Writing { out: Vec<u8>, sent: usize },
}

struct Conn {
    stream: Stream,
    phase: Phase,
    accepted: Instant,
    /// Last byte received or sent.
    active: Instant,
}

/// What became of a connection after it was driven.
enum Next {
    Keep,
    Close,
}

struct Server {
    name: &'static str,
    listener: Listener,
    poll: Poll,
    relay: Relay,
    all: Arc<EndpointStats>,
    conns: Vec<Option<Conn>>,
    /// When the last "listener full" warning was logged, and how many were not since.
    warned: Option<Instant>,
    suppressed: u64,
}

impl Server {
    fn run(mut self) {
        let mut events = Events::with_capacity(MAX_CONNECTIONS + 1);
        loop {
            let timeout = self.timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    tracing::error!(listener = self.name, error = %e, "poll failed");
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
            let now = Instant::now();
            for event in &events {
                if event.token() != LISTENER {
                    self.drive(event.token().0, now);
                }
            }
            self.accept_all();
            self.sweep(now);
        }
    }

    /// How long the poll may sleep: until the earliest deadline; briefly while an
    /// answer is awaited from the dataplane (its channel cannot wake this poll).
    fn timeout(&self, now: Instant) -> Duration {
        let mut next = now + Duration::from_secs(1);
        for conn in self.conns.iter().flatten() {
            let due = match &conn.phase {
                Phase::Reading { .. } => conn.accepted + REQUEST_TIMEOUT,
                Phase::Answering { .. } => return Duration::from_millis(1),
                Phase::Writing { .. } => conn.active + WRITE_STALL,
            };
            next = next.min(due);
        }
        next.saturating_duration_since(now)
            .max(Duration::from_millis(1))
    }

    fn accept_all(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors or similar: try again at the next wake.
                    tracing::warn!(listener = self.name, error = %e, "accept failed");
                    return;
                }
            };
            let now = Instant::now();
            mine(&self.all, self.listener.protocol())
                .accepted
                .fetch_add(1, Ordering::Relaxed);
            if stream.set_nonblocking().is_err() {
                continue;
            }
            let slot = match self.conns.iter().position(Option::is_none) {
                Some(slot) => slot,
                None => {
                    match self.victim() {
                        Some(slot) => {
                            mine(&self.all, self.listener.protocol())
                                .evicted
                                .fetch_add(1, Ordering::Relaxed);
                            self.close_busy(slot);
                            slot
                        }
                        None => {
                            // Every slot has a request in flight: refuse the newcomer.
                            mine(&self.all, self.listener.protocol())
                                .refused
                                .fetch_add(1, Ordering::Relaxed);
                            let _ = stream.write(&self.listener.protocol().busy(false));
                            self.warn_full(now, "refused a new connection: every slot waits for the monitor's answer");
                            continue;
                        }
                    }
                }
            };
            if self
                .poll
                .registry()
                .register(
                    &mut SourceFd(&stream.fd()),
                    Token(slot),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                continue;
            }
            self.conns[slot] = Some(Conn {
                stream,
                phase: Phase::Reading {
                    buf: Vec::with_capacity(128),
                },
                accepted: now,
                active: now,
            });
            // Its request may already be here (hmd ctl writes as soon as it connects).
            self.drive(slot, now);
        }
    }

    /// The slot to free for a new connection: the one silent the longest among those
    /// not waiting for the dataplane.
    fn victim(&self) -> Option<usize> {
        self.conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
            .filter(|(_, c)| !matches!(c.phase, Phase::Answering { .. }))
            .min_by_key(|(_, c)| c.active)
            .map(|(i, _)| i)
    }

    /// Close `slot` to make room, telling its client why when it is still sending.
    fn close_busy(&mut self, slot: usize) {
        if let Some(conn) = &self.conns[slot]
            && matches!(conn.phase, Phase::Reading { .. })
        {
            let _ = conn.stream.write(&self.listener.protocol().busy(true));
        }
        self.close(slot);
        self.warn_full(
            Instant::now(),
            "closed the connection silent the longest to serve a new one",
        );
    }

    /// "Listener full" at most once a minute, with the count of the ones not logged.
    fn warn_full(&mut self, now: Instant, what: &'static str) {
        if self
            .warned
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(60))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            listener = self.name,
            max_connections = MAX_CONNECTIONS,
            suppressed = self.suppressed,
            "listener full: {what}"
        );
        self.warned = Some(now);
        self.suppressed = 0;
    }

    fn close(&mut self, slot: usize) {
        if let Some(conn) = self.conns[slot].take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&conn.stream.fd()));
        }
    }

    /// Read or write what the socket allows now.
    fn drive(&mut self, slot: usize, now: Instant) {
        let protocol = self.listener.protocol();
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let next = match conn.phase {
            Phase::Reading { .. } => read_request(conn, protocol, &self.relay, &self.all, now),
            Phase::Answering { .. } => Next::Keep,
            Phase::Writing { .. } => write_reply(conn, now),
        };
        if let Next::Close = next {
            self.close(slot);
        }
    }

    /// Collect the dataplane's answers and enforce the deadlines.
    fn sweep(&mut self, now: Instant) {
        let protocol = self.listener.protocol();
        for slot in 0..self.conns.len() {
            let Some(conn) = self.conns[slot].as_mut() else {
                continue;
            };
            let next = match &conn.phase {
                Phase::Reading { .. } if now >= conn.accepted + REQUEST_TIMEOUT => {
                    mine(&self.all, self.listener.protocol())
                        .timed_out
                        .fetch_add(1, Ordering::Relaxed);
                    let _ = conn.stream.write(&protocol.timeout());
                    Next::Close
                }
                Phase::Reading { .. } => Next::Keep,
                Phase::Answering {
                    rx,
                    head_only,
                    since,
                    counters,
                } => {
                    let text = match rx.try_recv() {
                        Ok(mut text) => {
                            if let Some(prometheus) = *counters
                                && !text.starts_with("error:")
                            {
                                self.all.append(&mut text, prometheus);
                            }
                            Some(text)
                        }
                        Err(TryRecvError::Disconnected) => {
                            Some("error: the monitor is stopping\n".to_owned())
                        }
                        Err(TryRecvError::Empty) if now >= *since + ANSWER_TIMEOUT => {
                            Some(format!(
                                "error: the monitor did not answer within {} s\n",
                                ANSWER_TIMEOUT.as_secs()
                            ))
                        }
                        Err(TryRecvError::Empty) => None,
                    };
                    match text {
                        Some(text) => {
                            mine(&self.all, self.listener.protocol())
                                .answered
                                .fetch_add(1, Ordering::Relaxed);
                            conn.phase = Phase::Writing {
                                out: protocol.wrap(&text, *head_only),
                                sent: 0,
                            };
                            write_reply(conn, now)
                        }
                        None => Next::Keep,
                    }
                }
                Phase::Writing { .. } if now >= conn.active + WRITE_STALL => {
                    mine(&self.all, self.listener.protocol())
                        .timed_out
                        .fetch_add(1, Ordering::Relaxed);
                    Next::Close
                }
                Phase::Writing { .. } => Next::Keep,
            };
            if let Next::Close = next {
                self.close(slot);
            }
        }
    }
}

/// Read what has arrived; once the request is complete, ask or reply.
fn read_request(
    conn: &mut Conn,
    protocol: Protocol,
    relay: &Relay,
    all: &EndpointStats,
    now: Instant,
) -> Next {
    let stats = mine(all, protocol);
    let Phase::Reading { buf } = &mut conn.phase else {
        return Next::Keep;
    };
    let mut chunk = [0u8; 1024];
    let mut eof = false;
    loop {
        // Never hold more than the limit and one byte (enough to know it was passed).
        let room = (protocol.limit() + 1).saturating_sub(buf.len());
        if room == 0 {
            break;
        }
        match conn.stream.read(&mut chunk[..room.min(1024)]) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                conn.active = now;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
    let out = match protocol.parse(buf, eof) {
        Parsed::More => return Next::Keep,
        Parsed::Nothing => return Next::Close,
        Parsed::Reply(out) => {
            if buf.len() > protocol.limit() {
                stats.too_long.fetch_add(1, Ordering::Relaxed);
            }
            stats.answered.fetch_add(1, Ordering::Relaxed);
            out
        }
        Parsed::Ask { command, head_only } => {
            let counters = match command.as_str() {
                "stats" => Some(false),
                "metrics" => Some(true),
                _ => None,
            };
            match relay.ask(command) {
                Ok(rx) => {
                    conn.phase = Phase::Answering {
                        rx,
                        head_only,
                        since: now,
                        counters,
                    };
                    return Next::Keep;
                }
                Err(text) => {
                    stats.answered.fetch_add(1, Ordering::Relaxed);
                    protocol.wrap(&text, head_only)
                }
            }
        }
    };
    conn.phase = Phase::Writing { out, sent: 0 };
    write_reply(conn, now)
}

/// Send what the socket takes; close once everything is sent.
fn write_reply(conn: &mut Conn, now: Instant) -> Next {
    let Phase::Writing { out, sent } = &mut conn.phase else {
        return Next::Keep;
    };
    while *sent < out.len() {
        match conn.stream.write(&out[*sent..]) {
            Ok(0) => return Next::Close,
            Ok(n) => {
                *sent += n;
                conn.active = now;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Keep,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
    Next::Close
}

/// Client side: send `command` to the daemon at `path` and return its answer.
pub fn request(path: &Path, command: &str) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot connect to {}: {e} (is hmd running?)",
                path.display()
            ),
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    // A full daemon answers and closes at once, maybe before the command is written:
    // its answer is still there to read.
    let sent = stream.write_all(format!("{command}\n").as_bytes());
    let mut out = String::new();
    let read = stream.read_to_string(&mut out);
    if out.is_empty() {
        sent?;
        read?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    #[test]
    fn a_command_line_ends_at_newline_or_eof() {
        let ask = |c: &str| Parsed::Ask {
            command: c.into(),
            head_only: false,
        };
        assert_eq!(parse_line(b"stat", false), Parsed::More);
        assert_eq!(parse_line(b"status\n", false), ask("status"));
        assert_eq!(parse_line(b" vms \r\nmore", false), ask("vms"));
        assert_eq!(parse_line(b"stats", true), ask("stats"));
        assert_eq!(parse_line(b"", true), Parsed::Nothing);
        assert_eq!(parse_line(b"\xff\xfe\n", false), ask("\u{fffd}\u{fffd}"));
        let Parsed::Reply(out) = parse_line(&[b'x'; MAX_LINE + 1], false) else {
            panic!("a line over the limit is answered at once");
        };
        assert_eq!(out, b"error: no command line within 64 bytes\n");
        assert_eq!(parse_line(&[b'x'; MAX_LINE], false), Parsed::More);
    }

    #[test]
    fn only_get_or_head_metrics_asks_the_dataplane() {
        assert_eq!(
            parse_http(b"GET /metrics HTTP/1.1\r\nHost: x\r\n", false),
            Parsed::More
        );
        assert_eq!(
            parse_http(b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", false),
            Parsed::Ask {
                command: "metrics".into(),
                head_only: false
            }
        );
        assert_eq!(
            parse_http(b"HEAD /metrics HTTP/1.0\n\n", false),
            Parsed::Ask {
                command: "metrics".into(),
                head_only: true
            }
        );
        let reply = |buf: &[u8]| match parse_http(buf, false) {
            Parsed::Reply(out) => String::from_utf8(out).expect("text"),
            other => panic!("{other:?}"),
        };
        assert!(reply(b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(
            reply(b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 Method Not Allowed")
        );
        let long = reply(&[b'a'; MAX_HTTP_HEAD + 1]);
        assert!(long.starts_with("HTTP/1.1 431 "), "{long}");
        assert_eq!(parse_http(b"", true), Parsed::Nothing);
    }

    /// A fake dataplane: answers every request with `ok <command>` unless `hold` is
    /// set, in which case requests wait until it is cleared.
    fn dataplane(hold: Arc<std::sync::atomic::AtomicBool>) -> Relay {
        let (tx, rx) = bounded::<AdminRequest>(REQUEST_QUEUE);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            loop {
                match rx.recv_timeout(Duration::from_millis(5)) {
                    Ok(r) => held.push(r),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(_) => return,
                }
                if !hold.load(Ordering::Relaxed) {
                    for r in held.drain(..) {
                        let _ = r.reply.send(format!("ok {}\n", r.command));
                    }
                }
            }
        });
        Relay {
            requests: tx,
            waker: Arc::new(Mutex::new(None)),
        }
    }

    struct Endpoints {
        _dir: tempfile::TempDir,
        socket: std::path::PathBuf,
        http: SocketAddr,
        stats: Arc<EndpointStats>,
        hold: Arc<std::sync::atomic::AtomicBool>,
    }

    fn endpoints() -> Endpoints {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("hmd.sock");
        let hold = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let relay = dataplane(Arc::clone(&hold));
        let stats = Arc::new(EndpointStats::default());
        serve(&socket, relay.clone(), Arc::clone(&stats)).expect("serve admin");
        let http = serve_metrics(
            "127.0.0.1:0".parse().expect("addr"),
            relay,
            Arc::clone(&stats),
        )
        .expect("serve metrics");
        Endpoints {
            _dir: dir,
            socket,
            http,
            stats,
            hold,
        }
    }

    fn scrape(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: hmd\r\n\r\n")
            .expect("request");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("response");
        out
    }

    /// What the server sent on `s` within `wait` (empty if nothing).
    fn pending_reply(s: &UnixStream, wait: Duration) -> String {
        s.set_read_timeout(Some(wait)).expect("timeout");
        let mut line = String::new();
        let _ = std::io::BufReader::new(s).read_line(&mut line);
        line
    }

    #[test]
    fn idle_slow_and_garbage_clients_delay_no_one() {
        let e = endpoints();
        let idle_unix: Vec<UnixStream> = (0..8)
            .map(|_| UnixStream::connect(&e.socket).expect("idle"))
            .collect();
        let idle_tcp: Vec<TcpStream> = (0..8)
            .map(|_| TcpStream::connect(e.http).expect("idle"))
            .collect();
        // Garbage without a newline, and an HTTP head that never ends.
        let mut garbage = UnixStream::connect(&e.socket).expect("garbage");
        garbage
            .write_all(&[0xa5; 4 * MAX_LINE])
            .expect("send garbage");
        let mut garbage_http = TcpStream::connect(e.http).expect("garbage");
        garbage_http
            .write_all(b"GET /metrics HTTP/1.1\r\nX: ")
            .expect("send");
        // A slow sender: one byte every 200 ms, never a newline.
        let socket = e.socket.clone();
        let slow = std::thread::spawn(move || {
            let started = Instant::now();
            let mut s = UnixStream::connect(socket).expect("slow");
            while s.write_all(b"s").is_ok() && started.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(200));
            }
            // Cut off at REQUEST_TIMEOUT, however it paces its bytes.
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            (started.elapsed(), answer)
        });
        std::thread::sleep(Duration::from_millis(300));

        for _ in 0..3 {
            let asked = Instant::now();
            let answer = request(&e.socket, "status").expect("ctl status");
            assert_eq!(answer, "ok status\n");
            // Below the 5 s a client stuck behind an idle one would wait, with room for
            // a loaded machine.
            assert!(
                asked.elapsed() < Duration::from_secs(4),
                "status took {:?} behind idle clients",
                asked.elapsed()
            );
            let asked = Instant::now();
            let answer = scrape(e.http);
            assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
            assert!(answer.contains("ok metrics\n"), "{answer}");
            assert!(
                answer.contains("hvha_hmd_endpoint_accepted_total{listener=\"metrics\"}"),
                "{answer}"
            );
            assert!(
                asked.elapsed() < Duration::from_secs(4),
                "scrape took {:?} behind idle clients",
                asked.elapsed()
            );
        }
        assert_eq!(
            pending_reply(&garbage, Duration::from_secs(5)),
            "error: no command line within 64 bytes\n"
        );
        let (took, answer) = slow.join().expect("slow client");
        assert_eq!(answer, "error: no complete request within 5 s\n");
        assert!(took >= REQUEST_TIMEOUT, "cut after {took:?}");
        // The idle ones were cut at the same deadline and counted.
        for s in &idle_unix {
            assert_eq!(
                pending_reply(s, Duration::from_secs(5)),
                "error: no complete request within 5 s\n"
            );
        }
        let stats = request(&e.socket, "stats").expect("stats");
        assert!(stats.contains("- admin_too_long 1\n"), "{stats}");
        assert!(stats.contains("- admin_timed_out 9\n"), "{stats}");
        // The metrics listener's idle and garbage clients (9) reach the same deadline;
        // nothing reads them here, so their cut may be counted a moment after the
        // control socket's were answered: wait for it, bounded.
        let counted = Instant::now();
        while e.stats.metrics.timed_out.load(Ordering::Relaxed) < 9
            && counted.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            e.stats.metrics.timed_out.load(Ordering::Relaxed) >= 9,
            "metrics clients timed out: {}",
            e.stats.metrics.timed_out.load(Ordering::Relaxed)
        );
        drop((idle_tcp, garbage_http));
    }

    #[test]
    fn a_full_listener_closes_the_connection_silent_the_longest() {
        let e = endpoints();
        let extra = 3;
        let idle: Vec<UnixStream> = (0..MAX_CONNECTIONS + extra)
            .map(|_| {
                let s = UnixStream::connect(&e.socket).expect("idle");
                // Accepted in order: each one is newer than the one before.
                std::thread::sleep(Duration::from_millis(5));
                s
            })
            .collect();
        for s in &idle[..extra] {
            let reply = pending_reply(s, Duration::from_secs(5));
            assert!(reply.starts_with("error: too many connections"), "{reply}");
        }
        assert_eq!(pending_reply(&idle[extra], Duration::from_millis(200)), "");
        // The operator still gets an answer (and the oldest idle client makes room).
        assert_eq!(request(&e.socket, "status").expect("ctl"), "ok status\n");
        let reply = pending_reply(&idle[extra], Duration::from_secs(5));
        assert!(reply.starts_with("error: too many connections"), "{reply}");
        assert_eq!(
            e.stats.admin.evicted.load(Ordering::Relaxed),
            u64::try_from(extra + 1).expect("small")
        );
        assert_eq!(e.stats.admin.refused.load(Ordering::Relaxed), 0);
        // The HTTP port has its own slots.
        assert!(scrape(e.http).starts_with("HTTP/1.1 200 OK"));
    }

    #[test]
    fn every_slot_waiting_for_the_dataplane_refuses_the_newest() {
        let e = endpoints();
        e.hold.store(true, Ordering::Relaxed);
        let waiting: Vec<UnixStream> = (0..MAX_CONNECTIONS)
            .map(|_| {
                let mut s = UnixStream::connect(&e.socket).expect("connect");
                s.write_all(b"vms\n").expect("ask");
                s
            })
            .collect();
        // Wait until every request is in flight (the server has read them all).
        let deadline = Instant::now() + Duration::from_secs(10);
        while e.stats.admin.accepted.load(Ordering::Relaxed) < MAX_CONNECTIONS as u64
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        let late = request(&e.socket, "status").expect("refused cleanly");
        assert!(late.starts_with("error: too many connections"), "{late}");
        assert_eq!(e.stats.admin.refused.load(Ordering::Relaxed), 1);
        e.hold.store(false, Ordering::Relaxed);
        for s in &waiting {
            assert_eq!(pending_reply(s, Duration::from_secs(5)), "ok vms\n");
        }
        assert_eq!(request(&e.socket, "status").expect("ctl"), "ok status\n");
    }
}
