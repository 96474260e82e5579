//! The admin UNIX socket: one line in (`status`, `stats`, `vms`, `metrics`), text out;
//! and, when `metrics_listen` is set, `GET /metrics` over HTTP for Prometheus.
//!
//! The listener threads only relay: they hand the command to the dataplane thread (which
//! owns all the state) and write back its answer, so nothing is shared or locked on
//! the per-frame path.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};
use mio::Waker;

use crate::runtime::AdminRequest;

/// Longest command line accepted.
const MAX_LINE: u64 = 64;

/// Bind the socket (replacing a stale one) and serve it on a thread.
pub fn serve(
    path: &Path,
    requests: Sender<AdminRequest>,
    waker: Arc<Mutex<Option<Arc<Waker>>>>,
) -> std::io::Result<()> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by a running hmd", path.display()),
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
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = handle(stream, &requests, &waker) {
                    tracing::debug!("admin connection: {e}");
                }
            }
        })?;
    Ok(())
}

fn handle(
    stream: UnixStream,
    requests: &Sender<AdminRequest>,
    waker: &Mutex<Option<Arc<Waker>>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_LINE)).read_line(&mut line)?;
    let reply = ask(requests, waker, line.trim());
    (&stream).write_all(reply.as_bytes())
}

/// Hand `command` to the dataplane thread, wake it, and wait for its answer.
fn ask(
    requests: &Sender<AdminRequest>,
    waker: &Mutex<Option<Arc<Waker>>>,
    command: &str,
) -> String {
    let (tx, rx) = bounded(1);
    let request = AdminRequest {
        command: command.to_owned(),
        reply: tx,
    };
    if requests.send(request).is_err() {
        return "error: the monitor is stopping\n".into();
    }
    if let Ok(guard) = waker.lock()
        && let Some(w) = guard.as_ref()
    {
        let _ = w.wake();
    }
    rx.recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| "error: the monitor did not answer within 5 s\n".into())
}

/// Longest HTTP request head read.
const MAX_HTTP_HEAD: u64 = 8192;

/// Serve `GET /metrics` (Prometheus text format 0.0.4) on `addr`, one connection at a
/// time, on a thread. Binding errors are returned (a taken port stops the daemon with a
/// clear message); everything after is logged.
pub fn serve_metrics(
    addr: SocketAddr,
    requests: Sender<AdminRequest>,
    waker: Arc<Mutex<Option<Arc<Waker>>>>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = handle_http(&stream, &requests, &waker) {
                    tracing::debug!("metrics connection: {e}");
                }
            }
        })?;
    Ok(bound)
}

fn handle_http(
    stream: &TcpStream,
    requests: &Sender<AdminRequest>,
    waker: &Mutex<Option<Arc<Waker>>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.take(MAX_HTTP_HEAD));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The rest of the head (headers) until the blank line; nothing in it matters here.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            ask(requests, waker, "metrics"),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            format!("hmd serves /metrics only, not {path:?}\n"),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            format!("hmd answers GET /metrics only, not {method:?}\n"),
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        out.push_str(&body);
    }
    (&*stream).write_all(out.as_bytes())
}

/// Client side: send `command` to the daemon at `path` and return its answer.
pub fn request(path: &PathBuf, command: &str) -> std::io::Result<String> {
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
    stream.write_all(format!("{command}\n").as_bytes())?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    Ok(out)
}
