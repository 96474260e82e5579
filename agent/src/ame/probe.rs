//! Built-in probes, monitoring an application without a monitor script: an HTTP
//! request, an SMTP `NOOP`, or a bare TCP connect (seed 003 L541-687).
//!
//! One [`attempt`] opens one connection with `std::net` and ends within the probe's
//! `timeout` (the seed's response wait, `-r`, seed 003 L565-567): resolving, connecting,
//! writing and every read share that one deadline, so a server that answers slowly,
//! a byte at a time or never, fails the attempt instead of holding it. Replies are read
//! into a bounded buffer: an answer that is too long, not the protocol or never ends is
//! a failure, never a hang or a growing buffer.
//!
//! The retries (`-c`, seed 003 L562-564) and the wait between them are the caller's
//! (the AME service schedules them), so an attempt is always short.
//!
//! What counts as a failure (seed 003 L598-610, L678-684):
//! - HTTP: no connection or no status line within the timeout; an answer that does not
//!   begin with `HTTP/`; a status other than the expected one (default: any 2xx or
//!   3xx — stricter than the seed, which accepts any status for `/`: a server answering
//!   500 is not healthy, whatever the URI);
//! - SMTP: no connection, greeting or `NOOP` reply within the timeout; a greeting that
//!   is not 220; a `NOOP` reply that is not 250 (then `QUIT` is sent, its answer not
//!   awaited);
//! - TCP: no connection within the timeout.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Seed 003's bounds for the interval, the timeout, the retries and the retry wait:
/// 1-10000 (seed 003 L559-567).
pub const SEED_RANGE: std::ops::RangeInclusive<u64> = 1..=10_000;
/// Default probe interval: 60 s (seed 003 L559-561).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Default response wait: 10 s (seed 003 L565-567).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default retries after a failed attempt: 3 (seed 003 L562-564).
pub const DEFAULT_RETRIES: u32 = 3;
/// Default wait between a failed attempt and its retry: 10 s. The seed retries at the
/// interval (seed 003 L1192-1206); a separate, shorter wait finds a dead server sooner.
pub const DEFAULT_RETRY_WAIT: Duration = Duration::from_secs(10);
/// Longest server name and URI: 255 bytes (seed 003 L590).
pub const MAX_TEXT: usize = 255;
/// The longest reply line or SMTP reply read; beyond it the answer is garbage.
pub const MAX_REPLY: usize = 4096;

/// HTTP request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// `HEAD`, the seed's (seed 003 L596).
    Head,
    /// `GET`, for servers that handle HEAD badly; only the status line is read.
    Get,
}

/// HTTP version of the request line (seed 003 L568-569).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    /// `HTTP/1.0`.
    V10,
    /// `HTTP/1.1`, the default.
    V11,
}

/// What an HTTP probe sends and expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    /// Default HEAD.
    pub method: HttpMethod,
    /// Request-URI, default `/` (seed 003 L570-571): starts with `/`, at most 255
    /// bytes, printable ASCII without spaces.
    pub uri: String,
    /// Default 1.1.
    pub version: HttpVersion,
    /// The status that means healthy; `None`: any 2xx or 3xx.
    pub expect_status: Option<u16>,
}

impl Default for HttpProbe {
    fn default() -> Self {
        Self {
            method: HttpMethod::Head,
            uri: "/".to_owned(),
            version: HttpVersion::V11,
            expect_status: None,
        }
    }
}

/// Which protocol a probe speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    /// An HTTP request.
    Http(HttpProbe),
    /// SMTP greeting, `NOOP`, `QUIT`.
    Smtp,
    /// A TCP connect.
    Tcp,
}

impl ProbeKind {
    /// `http`, `smtp`, `tcp`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::Smtp => "smtp",
            Self::Tcp => "tcp",
        }
    }
}

/// A built-in probe replacing the monitor script (seed 003 L541-574, L630-662).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    /// What to speak.
    pub kind: ProbeKind,
    /// Host name or address, default `localhost` (seed 003 L554-556): at most 255 bytes,
    /// letters, digits, `.`, `-`, `_`, `:` (an IPv6 address in brackets is accepted).
    pub server: String,
    /// TCP port: 80 for HTTP, 25 for SMTP by default (seed 003 L557-558, L647-648).
    pub port: u16,
    /// Between the starts of two probes: 1-10000 s, default 60 (seed 003 L559-561).
    pub interval: Duration,
    /// Response wait of one attempt: 1-10000 s, default 10 (seed 003 L565-567).
    pub timeout: Duration,
    /// Attempts after a failed one before the probe fails: 1-10000, default 3
    /// (seed 003 L562-564).
    pub retries: u32,
    /// Between a failed attempt and its retry: 1-10000 s, default 10.
    pub retry_wait: Duration,
}

impl ProbeConfig {
    /// A probe of this kind with every attribute at its default.
    pub fn new(kind: ProbeKind) -> Self {
        let port = match kind {
            ProbeKind::Smtp => 25,
            _ => 80,
        };
        Self {
            kind,
            server: "localhost".to_owned(),
            port,
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            retry_wait: DEFAULT_RETRY_WAIT,
        }
    }

    /// Check every attribute against seed 003's ranges; the error names the
    /// attribute and the rule.
    pub fn validate(&self) -> Result<(), ProbeConfigError> {
        for (attribute, value) in [
            ("probe_interval", self.interval),
            ("probe_timeout", self.timeout),
            ("probe_retry_wait", self.retry_wait),
        ] {
            let whole = value.subsec_nanos() == 0;
            if !whole || !SEED_RANGE.contains(&value.as_secs()) {
                return Err(ProbeConfigError::OutOfRange {
                    attribute,
                    value: format!("{} s", value.as_secs_f64()),
                });
            }
        }
        if !SEED_RANGE.contains(&u64::from(self.retries)) {
            return Err(ProbeConfigError::OutOfRange {
                attribute: "probe_retries",
                value: self.retries.to_string(),
            });
        }
        if self.port == 0 {
            return Err(ProbeConfigError::Port);
        }
        let server_ok = !self.server.is_empty()
            && self.server.len() <= MAX_TEXT
            && self.server.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']')
            });
        if !server_ok {
            return Err(ProbeConfigError::Server {
                value: self.server.clone(),
            });
        }
        if let ProbeKind::Http(http) = &self.kind {
            let uri_ok = http.uri.starts_with('/')
                && http.uri.len() <= MAX_TEXT
                && http.uri.bytes().all(|b| b.is_ascii_graphic());
            if !uri_ok {
                return Err(ProbeConfigError::Uri {
                    value: http.uri.clone(),
                });
            }
            if let Some(code) = http.expect_status
                && !(100..=599).contains(&code)
            {
                return Err(ProbeConfigError::Status { code });
            }
        }
        Ok(())
    }

    /// The `host[:port]` of the HTTP Host header.
    fn host_header(&self) -> String {
        if self.port == 80 {
            self.server.clone()
        } else {
            format!("{}:{}", self.server, self.port)
        }
    }
}

/// A probe attribute out of its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeConfigError {
    /// A duration or count outside 1-10000.
    #[error("{attribute} = {value}: must be a whole number from 1 to 10000 (seed 003 ranges)")]
    OutOfRange {
        /// The attribute.
        attribute: &'static str,
        /// The refused value.
        value: String,
    },
    /// Port 0.
    #[error("probe_port must be from 1 to 65535")]
    Port,
    /// A bad server name.
    #[error(
        "probe_server = {value:?}: must be 1-255 bytes of letters, digits, . - _ : [ ] (a host name or address)"
    )]
    Server {
        /// The refused value.
        value: String,
    },
    /// A bad URI.
    #[error(
        "probe_uri = {value:?}: must start with /, be at most 255 bytes, printable ASCII without spaces"
    )]
    Uri {
        /// The refused value.
        value: String,
    },
    /// An expected status that is not an HTTP status.
    #[error("probe_expect_status = {code}: must be from 100 to 599")]
    Status {
        /// The refused value.
        code: u16,
    },
}

/// Why one attempt failed. Short, for the status detail and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    /// The name did not resolve.
    Resolve(String),
    /// Connecting failed (refused, unreachable…).
    Connect(String),
    /// No complete answer within the timeout.
    Timeout(&'static str),
    /// The server closed the connection before answering.
    Closed(&'static str),
    /// Reading or writing failed.
    Io(String),
    /// The answer is not the protocol.
    Garbage(String),
    /// HTTP status not the expected one.
    HttpStatus {
        /// The status received.
        code: u16,
        /// What was expected.
        expected: String,
    },
    /// An SMTP reply code that is not the expected one.
    SmtpReply {
        /// `greeting` or `NOOP`.
        stage: &'static str,
        /// The reply's first line, bounded.
        reply: String,
    },
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resolve(e) => write!(f, "cannot resolve the server: {e}"),
            Self::Connect(e) => write!(f, "cannot connect: {e}"),
            Self::Timeout(what) => write!(f, "no {what} within the timeout"),
            Self::Closed(what) => write!(f, "connection closed before the {what}"),
            Self::Io(e) => write!(f, "{e}"),
            Self::Garbage(e) => write!(f, "not a valid answer: {e}"),
            Self::HttpStatus { code, expected } => {
                write!(f, "HTTP status {code}, expected {expected}")
            }
            Self::SmtpReply { stage, reply } => write!(f, "SMTP {stage} reply {reply:?}"),
        }
    }
}

/// One probe attempt: `Ok` if the application answered as expected within
/// `config.timeout`.
pub fn attempt(config: &ProbeConfig) -> Result<(), ProbeError> {
    let deadline = Instant::now() + config.timeout;
    let mut stream = connect(config, deadline)?;
    match &config.kind {
        ProbeKind::Tcp => Ok(()),
        ProbeKind::Http(http) => http_exchange(&mut stream, config, http, deadline),
        ProbeKind::Smtp => smtp_exchange(&mut stream, deadline),
    }
}

fn connect(config: &ProbeConfig, deadline: Instant) -> Result<TcpStream, ProbeError> {
    let host = config.server.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (host, config.port)
        .to_socket_addrs()
        .map_err(|e| ProbeError::Resolve(e.to_string()))?
        .collect();
    let mut last = ProbeError::Resolve("no address".to_owned());
    for addr in addrs {
        let Some(left) = remaining(deadline) else {
            return Err(ProbeError::Timeout("connection"));
        };
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) if e.kind() == ErrorKind::TimedOut => last = ProbeError::Timeout("connection"),
            Err(e) => last = ProbeError::Connect(format!("{addr}: {e}")),
        }
    }
    Err(last)
}

fn remaining(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
}

fn send(stream: &mut TcpStream, data: &[u8], deadline: Instant) -> Result<(), ProbeError> {
    let left = remaining(deadline).ok_or(ProbeError::Timeout("answer"))?;
    stream
        .set_write_timeout(Some(left))
        .map_err(|e| ProbeError::Io(e.to_string()))?;
    stream.write_all(data).map_err(|e| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => ProbeError::Timeout("answer"),
        _ => ProbeError::Io(format!("cannot send: {e}")),
    })
}

/// Reads lines from the connection into one bounded buffer, each read within the
/// attempt's deadline.
struct LineReader {
    buf: Vec<u8>,
    what: &'static str,
}

impl LineReader {
    fn new(what: &'static str) -> Self {
        Self {
            buf: Vec::with_capacity(512),
            what,
        }
    }

    /// The next line without its CRLF (or LF).
    fn line(&mut self, stream: &mut TcpStream, deadline: Instant) -> Result<String, ProbeError> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.buf.len() >= MAX_REPLY {
                return Err(ProbeError::Garbage(format!(
                    "no end of line in the first {MAX_REPLY} bytes"
                )));
            }
            let left = remaining(deadline).ok_or(ProbeError::Timeout(self.what))?;
            stream
                .set_read_timeout(Some(left))
                .map_err(|e| ProbeError::Io(e.to_string()))?;
            let mut chunk = [0u8; 1024];
            let room = (MAX_REPLY - self.buf.len()).min(chunk.len());
            match stream.read(&mut chunk[..room]) {
                Ok(0) => return Err(ProbeError::Closed(self.what)),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(ProbeError::Timeout(self.what));
                }
                // A server that closes without reading the request resets instead.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                    ) =>
                {
                    return Err(ProbeError::Closed(self.what));
                }
                Err(e) => return Err(ProbeError::Io(format!("cannot read: {e}"))),
            }
        }
    }
}

/// At most 80 bytes of a line, for messages.
fn excerpt(line: &str) -> String {
    let mut cut = line.len().min(80);
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    line[..cut].to_owned()
}

fn http_exchange(
    stream: &mut TcpStream,
    config: &ProbeConfig,
    http: &HttpProbe,
    deadline: Instant,
) -> Result<(), ProbeError> {
    let method = match http.method {
        HttpMethod::Head => "HEAD",
        HttpMethod::Get => "GET",
    };
    let version = match http.version {
        HttpVersion::V10 => "1.0",
        HttpVersion::V11 => "1.1",
    };
    let request = format!(
        "{method} {} HTTP/{version}\r\nHost: {}\r\nUser-Agent: hvha-vmmd\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        http.uri,
        config.host_header()
    );
    send(stream, request.as_bytes(), deadline)?;
    let mut reader = LineReader::new("HTTP status line");
    let line = reader.line(stream, deadline)?;
    let code = parse_status_line(&line)?;
    let ok = match http.expect_status {
        Some(want) => code == want,
        None => (200..400).contains(&code),
    };
    if ok {
        Ok(())
    } else {
        Err(ProbeError::HttpStatus {
            code,
            expected: http
                .expect_status
                .map_or_else(|| "2xx or 3xx".to_owned(), |c| c.to_string()),
        })
    }
}

/// `HTTP/1.x NNN reason` → NNN.
fn parse_status_line(line: &str) -> Result<u16, ProbeError> {
    let garbage = || ProbeError::Garbage(format!("status line {:?}", excerpt(line)));
    let rest = line.strip_prefix("HTTP/").ok_or_else(garbage)?;
    let (version, rest) = rest.split_once(' ').ok_or_else(garbage)?;
    if !matches!(version, "1.0" | "1.1") {
        return Err(garbage());
    }
    let code = rest.get(..3).ok_or_else(garbage)?;
    let after = rest.as_bytes().get(3);
    if !code.bytes().all(|b| b.is_ascii_digit()) || after.is_some_and(|&b| b != b' ') {
        return Err(garbage());
    }
    let code: u16 = code.parse().map_err(|_| garbage())?;
    if !(100..=599).contains(&code) {
        return Err(garbage());
    }
    Ok(code)
}

/// One SMTP reply (multi-line `NNN-…` continuation lines, then `NNN …`): its code and
/// first line.
fn smtp_reply(
    reader: &mut LineReader,
    stream: &mut TcpStream,
    deadline: Instant,
) -> Result<(u16, String), ProbeError> {
    let mut first: Option<String> = None;
    // A reply longer than MAX_REPLY in all is garbage, however it is split in lines.
    let mut total = 0usize;
    loop {
        let line = reader.line(stream, deadline)?;
        total += line.len() + 2;
        if total > MAX_REPLY {
            return Err(ProbeError::Garbage(format!(
                "SMTP reply longer than {MAX_REPLY} bytes"
            )));
        }
        let bytes = line.as_bytes();
        let valid = bytes.len() >= 3
            && bytes[..3].iter().all(u8::is_ascii_digit)
            && matches!(bytes.get(3), None | Some(b' ' | b'-'));
        if !valid {
            return Err(ProbeError::Garbage(format!(
                "SMTP reply line {:?}",
                excerpt(&line)
            )));
        }
        let code: u16 = line[..3]
            .parse()
            .map_err(|_| ProbeError::Garbage(excerpt(&line)))?;
        let last = bytes.get(3) != Some(&b'-');
        let first = first.get_or_insert_with(|| excerpt(&line));
        if last {
            return Ok((code, first.clone()));
        }
    }
}

fn smtp_exchange(stream: &mut TcpStream, deadline: Instant) -> Result<(), ProbeError> {
    let mut reader = LineReader::new("SMTP greeting");
    let (code, reply) = smtp_reply(&mut reader, stream, deadline)?;
    if code != 220 {
        return Err(ProbeError::SmtpReply {
            stage: "greeting",
            reply,
        });
    }
    send(stream, b"NOOP\r\n", deadline)?;
    reader.what = "SMTP NOOP reply";
    let (code, reply) = smtp_reply(&mut reader, stream, deadline)?;
    // Polite, not awaited: the verdict is already known.
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = stream.write_all(b"QUIT\r\n");
    if code == 250 {
        Ok(())
    } else {
        Err(ProbeError::SmtpReply {
            stage: "NOOP",
            reply,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread::JoinHandle;

    /// A real local server: accepts connections and hands each to `serve`, until
    /// dropped. `stop` makes it close its listening socket (the port then refuses).
    pub(crate) struct Server {
        pub port: u16,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<Vec<String>>>,
    }

    impl Server {
        pub fn start(serve: impl Fn(TcpStream) -> Option<String> + Send + 'static) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let port = listener.local_addr().unwrap().port();
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            let thread = std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            s.set_nonblocking(false).unwrap();
                            if let Some(req) = serve(s) {
                                seen.push(req);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                seen
            });
            Self {
                port,
                stop,
                thread: Some(thread),
            }
        }

        /// Stop listening; the requests it saw.
        pub fn stop(mut self) -> Vec<String> {
            self.stop.store(true, Ordering::Relaxed);
            self.thread.take().unwrap().join().unwrap()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Read an HTTP request head; answer `reply`.
    pub(crate) fn http_answer(reply: &'static [u8]) -> impl Fn(TcpStream) -> Option<String> {
        move |mut s: TcpStream| {
            let mut head = String::new();
            let mut r = std::io::BufReader::new(s.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let _ = s.write_all(reply);
            Some(head)
        }
    }

    fn http(port: u16, uri: &str) -> ProbeConfig {
        let mut c = ProbeConfig::new(ProbeKind::Http(HttpProbe {
            uri: uri.to_owned(),
            ..HttpProbe::default()
        }));
        c.server = "127.0.0.1".to_owned();
        c.port = port;
        c.timeout = Duration::from_secs(5);
        c
    }

    /// A port nothing listens on.
    fn closed_port() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    #[test]
    fn defaults_and_ranges_are_seed_003s() {
        let h = ProbeConfig::new(ProbeKind::Http(HttpProbe::default()));
        assert_eq!((h.port, h.server.as_str()), (80, "localhost"));
        assert_eq!(h.interval, Duration::from_secs(60));
        assert_eq!(h.timeout, Duration::from_secs(10));
        assert_eq!(h.retries, 3);
        assert_eq!(h.validate(), Ok(()));
        assert_eq!(ProbeConfig::new(ProbeKind::Smtp).port, 25);

        let bad = |f: &dyn Fn(&mut ProbeConfig)| {
            let mut c = h.clone();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        let e = bad(&|c| c.interval = Duration::from_secs(10_001));
        assert!(
            e.contains("probe_interval") && e.contains("1 to 10000"),
            "{e}"
        );
        let e = bad(&|c| c.interval = Duration::from_millis(1500));
        assert!(e.contains("probe_interval = 1.5 s"), "{e}");
        let e = bad(&|c| c.timeout = Duration::ZERO);
        assert!(e.contains("probe_timeout"), "{e}");
        let e = bad(&|c| c.retries = 0);
        assert!(e.contains("probe_retries = 0"), "{e}");
        let e = bad(&|c| c.retries = 10_001);
        assert!(e.contains("probe_retries"), "{e}");
        let e = bad(&|c| c.retry_wait = Duration::from_secs(10_001));
        assert!(e.contains("probe_retry_wait"), "{e}");
        let e = bad(&|c| c.port = 0);
        assert!(e.contains("probe_port"), "{e}");
        let e = bad(&|c| c.server = "a".repeat(256));
        assert!(
            e.contains("probe_server") && e.contains("1-255 bytes"),
            "{e}"
        );
        let e = bad(&|c| c.server = "host\r\nX-Injected: 1".to_owned());
        assert!(e.contains("probe_server"), "{e}");
        let uri = |u: String| {
            move |c: &mut ProbeConfig| {
                c.kind = ProbeKind::Http(HttpProbe {
                    uri: u.clone(),
                    ..HttpProbe::default()
                })
            }
        };
        let e = bad(&uri(format!("/{}", "a".repeat(255))));
        assert!(e.contains("probe_uri") && e.contains("255 bytes"), "{e}");
        assert!(bad(&uri("/a b".to_owned())).contains("probe_uri"));
        assert!(bad(&uri("index.html".to_owned())).contains("must start with /"));
        let mut ok = h.clone();
        ok.kind = ProbeKind::Http(HttpProbe {
            uri: format!("/{}", "a".repeat(254)),
            ..HttpProbe::default()
        });
        ok.server = "a".repeat(255);
        ok.interval = Duration::from_secs(10_000);
        ok.retries = 10_000;
        assert_eq!(ok.validate(), Ok(()), "the upper bounds are allowed");
        let e = bad(&|c| {
            c.kind = ProbeKind::Http(HttpProbe {
                expect_status: Some(600),
                ..HttpProbe::default()
            })
        });
        assert!(e.contains("probe_expect_status = 600"), "{e}");
    }

    #[test]
    fn http_head_with_host_header_and_2xx_3xx() {
        let srv = Server::start(http_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        let mut c = http(srv.port, "/health");
        assert_eq!(attempt(&c), Ok(()));
        c.kind = ProbeKind::Http(HttpProbe {
            version: HttpVersion::V10,
            method: HttpMethod::Get,
            ..HttpProbe::default()
        });
        assert_eq!(attempt(&c), Ok(()));
        let seen = srv.stop();
        assert_eq!(
            seen[0],
            format!(
                "HEAD /health HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: hvha-vmmd\r\nAccept: */*\r\nConnection: close\r\n",
                c.port
            )
        );
        assert!(
            seen[1].starts_with("GET / HTTP/1.0\r\nHost: 127.0.0.1:"),
            "{}",
            seen[1]
        );

        let srv = Server::start(http_answer(b"HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n"));
        assert_eq!(attempt(&http(srv.port, "/")), Ok(()));
    }

    #[test]
    fn http_500_and_404_fail_and_an_expected_status_is_exact() {
        let srv = Server::start(http_answer(b"HTTP/1.1 500 Internal Server Error\r\n\r\n"));
        assert_eq!(
            attempt(&http(srv.port, "/app")),
            Err(ProbeError::HttpStatus {
                code: 500,
                expected: "2xx or 3xx".into()
            })
        );
        let srv = Server::start(http_answer(b"HTTP/1.1 404 Not Found\r\n\r\n"));
        let err = attempt(&http(srv.port, "/missing")).unwrap_err();
        assert_eq!(err.to_string(), "HTTP status 404, expected 2xx or 3xx");
        let mut c = http(srv.port, "/missing");
        c.kind = ProbeKind::Http(HttpProbe {
            uri: "/missing".into(),
            expect_status: Some(404),
            ..HttpProbe::default()
        });
        assert_eq!(attempt(&c), Ok(()), "an expected 404 is healthy");
        let srv = Server::start(http_answer(b"HTTP/1.1 204 No Content\r\n\r\n"));
        let mut c = http(srv.port, "/");
        c.kind = ProbeKind::Http(HttpProbe {
            expect_status: Some(200),
            ..HttpProbe::default()
        });
        assert!(matches!(
            attempt(&c),
            Err(ProbeError::HttpStatus { code: 204, .. })
        ));
    }

    #[test]
    fn http_garbage_and_silence_and_a_slow_drip_fail_within_the_timeout() {
        let srv = Server::start(http_answer(b"SSH-2.0-OpenSSH_9.2\r\n"));
        let err = attempt(&http(srv.port, "/")).unwrap_err();
        assert!(matches!(err, ProbeError::Garbage(_)), "{err}");
        assert!(err.to_string().contains("SSH-2.0"), "{err}");
        for bad in [
            &b"HTTP/1.1 2000 OK\r\n"[..],
            b"HTTP/2 200\r\n",
            b"HTTP/1.1 abc\r\n",
            b"HTTP/1.1 099 x\r\n",
        ] {
            let l = String::from_utf8_lossy(bad);
            assert!(parse_status_line(l.trim_end()).is_err(), "{l}");
        }
        // Endless answer without a line end: bounded, then garbage.
        let srv = Server::start(|mut s: TcpStream| {
            let _ = s.write_all(&[b'x'; 64 * 1024]);
            None
        });
        let err = attempt(&http(srv.port, "/")).unwrap_err();
        assert!(err.to_string().contains("no end of line"), "{err}");
        // Closed without a word.
        let srv = Server::start(http_answer(b""));
        assert_eq!(
            attempt(&http(srv.port, "/")),
            Err(ProbeError::Closed("HTTP status line"))
        );

        // Accepts, then answers a byte every 300 ms: each read alone would be in
        // time, the attempt as a whole is not.
        let srv = Server::start(|mut s: TcpStream| {
            std::thread::spawn(move || {
                for b in b"HTTP/1.1 200 OK\r\n\r\n" {
                    std::thread::sleep(Duration::from_millis(300));
                    if s.write_all(&[*b]).is_err() {
                        break;
                    }
                }
            });
            None
        });
        let mut c = http(srv.port, "/");
        c.timeout = Duration::from_secs(1);
        let t0 = Instant::now();
        assert_eq!(attempt(&c), Err(ProbeError::Timeout("HTTP status line")));
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[test]
    fn nothing_listening_is_a_connect_failure() {
        let port = closed_port();
        let mut c = http(port, "/");
        let err = attempt(&c).unwrap_err();
        assert!(matches!(err, ProbeError::Connect(_)), "{err}");
        c.kind = ProbeKind::Tcp;
        assert!(matches!(attempt(&c), Err(ProbeError::Connect(_))));
        c.server = "no-such-host.invalid".into();
        assert!(matches!(attempt(&c), Err(ProbeError::Resolve(_))));
    }

    #[test]
    fn localhost_tries_every_address_it_resolves_to() {
        // Listening on IPv4 only: "localhost" may resolve to ::1 first, refused, and
        // the attempt goes on to 127.0.0.1.
        let srv = Server::start(http_answer(b"HTTP/1.1 200 OK\r\n\r\n"));
        let mut c = http(srv.port, "/");
        c.server = "localhost".into();
        assert_eq!(attempt(&c), Ok(()));
        let seen = srv.stop();
        assert!(
            seen[0].contains(&format!("Host: localhost:{}\r\n", c.port)),
            "{}",
            seen[0]
        );
    }

    #[test]
    fn tcp_connect_succeeds_while_listening() {
        let srv = Server::start(|_s| None);
        let mut c = http(srv.port, "/");
        c.kind = ProbeKind::Tcp;
        assert_eq!(attempt(&c), Ok(()));
        drop(srv);
        assert!(attempt(&c).is_err(), "the port is closed now");
    }

    /// An SMTP server: greeting, then answers NOOP with `noop`, QUIT with 221.
    fn smtp(greeting: &'static str, noop: &'static str) -> Server {
        Server::start(move |mut s: TcpStream| {
            s.write_all(greeting.as_bytes()).ok()?;
            let mut r = std::io::BufReader::new(s.try_clone().ok()?);
            let mut seen = String::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                seen.push_str(&line);
                let answer = match line.trim_end() {
                    "NOOP" => noop,
                    "QUIT" => "221 bye\r\n",
                    _ => "500 what\r\n",
                };
                let _ = s.write_all(answer.as_bytes());
                if line.starts_with("QUIT") {
                    break;
                }
            }
            Some(seen)
        })
    }

    fn smtp_config(port: u16) -> ProbeConfig {
        let mut c = ProbeConfig::new(ProbeKind::Smtp);
        c.server = "127.0.0.1".into();
        c.port = port;
        c.timeout = Duration::from_secs(5);
        c
    }

    #[test]
    fn smtp_noop_after_the_greeting() {
        let srv = smtp(
            "220-mail.example ESMTP\r\n220 ready\r\n",
            "250 2.0.0 OK\r\n",
        );
        assert_eq!(attempt(&smtp_config(srv.port)), Ok(()));
        let seen = srv.stop();
        assert_eq!(seen, vec!["NOOP\r\nQUIT\r\n".to_owned()]);
    }

    #[test]
    fn smtp_error_replies_fail() {
        let srv = smtp("220 ready\r\n", "421 4.3.2 shutting down\r\n");
        let err = attempt(&smtp_config(srv.port)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "SMTP NOOP reply \"421 4.3.2 shutting down\""
        );
        let srv = smtp("554 no service\r\n", "250 OK\r\n");
        assert!(matches!(
            attempt(&smtp_config(srv.port)),
            Err(ProbeError::SmtpReply {
                stage: "greeting",
                ..
            })
        ));
        let srv = smtp("HTTP/1.1 400 Bad\r\n", "250 OK\r\n");
        assert!(matches!(
            attempt(&smtp_config(srv.port)),
            Err(ProbeError::Garbage(_))
        ));
        // An endless multi-line greeting is cut.
        let srv = Server::start(|mut s: TcpStream| {
            for _ in 0..10_000 {
                if s.write_all(b"220-more\r\n").is_err() {
                    break;
                }
            }
            None
        });
        let err = attempt(&smtp_config(srv.port)).unwrap_err();
        assert!(err.to_string().contains("longer than"), "{err}");
    }

    #[test]
    fn random_answers_never_panic_and_fail_unless_valid() {
        // Deterministic xorshift: 200 answers of 0-300 bytes, some starting like the
        // protocol, most not.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let prefixes: [&[u8]; 4] = [b"", b"HTTP/1.1 2", b"220", b"220 ok\r\n250"];
        let answers: Vec<Vec<u8>> = (0..200)
            .map(|_| {
                let mut a = prefixes[(next() % 4) as usize].to_vec();
                let len = (next() % 300) as usize;
                a.extend((0..len).map(|_| {
                    let b = (next() & 0xff) as u8;
                    // Plenty of line ends and digits.
                    match b % 8 {
                        0 => b'\n',
                        1 => b'\r',
                        2 => b'0' + b % 10,
                        _ => b,
                    }
                }));
                a
            })
            .collect();
        let queue = Arc::new(std::sync::Mutex::new(answers.clone()));
        let q = queue.clone();
        let srv = Server::start(move |mut s: TcpStream| {
            let answer = q.lock().unwrap().pop().unwrap_or_default();
            let _ = s.write_all(&answer);
            let _ = s.shutdown(std::net::Shutdown::Write);
            // Let the client read before the socket closes.
            std::thread::sleep(Duration::from_millis(2));
            None
        });
        for answer in answers.iter().rev() {
            let mut c = if answer.starts_with(b"2") {
                smtp_config(srv.port)
            } else {
                http(srv.port, "/")
            };
            c.timeout = Duration::from_secs(2);
            let r = attempt(&c);
            if let Ok(()) = r {
                // Only a real status line or a 220 greeting then 250 can pass.
                assert!(
                    answer.starts_with(b"HTTP/1.1 2") || answer.starts_with(b"220"),
                    "{answer:?}"
                );
            }
        }
    }

    #[test]
    fn smtp_silent_server_times_out() {
        // Accepts and holds the connection without a greeting.
        let srv = Server::start(|s: TcpStream| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(3));
                drop(s);
            });
            None
        });
        let mut c = smtp_config(srv.port);
        c.timeout = Duration::from_secs(1);
        assert_eq!(attempt(&c), Err(ProbeError::Timeout("SMTP greeting")));
    }
}
