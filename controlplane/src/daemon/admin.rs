//! The admin UNIX socket of `hactl run`: one command line in, the answer out, close.
//!
//! Commands: `status` (the daemon's [`DaemonStatus`] as one JSON document; `hactl status`
//! renders it) and `ping` (`pong`). The answer is built from a snapshot the daemon's loop
//! publishes after every scan, so the socket never waits for a scan in progress (a scan
//! may wait seconds on a platform probe) and never touches the HSDB.
//!
//! Bounds, so a misbehaving client costs little and never blocks another: at most
//! [`MAX_CONNECTIONS`] served at once (the next is answered `error: busy` and closed),
//! a command of at most [`MAX_LINE`] bytes complete within [`REQUEST_TIMEOUT`], a reply
//! written within [`WRITE_TIMEOUT`]. The socket is mode 0600: status is for the operator
//! who runs the daemon.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::status::DaemonStatus;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// Longest command line.
pub const MAX_LINE: usize = 64;
/// A command must be complete this long after the connection was accepted.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// A reply must be written within this long.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the accept loop looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(50);
/// Longest answer a client reads (a status of many host groups is a few hundred KiB).
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// Why the admin socket could not be served or asked.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Another daemon answers on the socket.
    #[error("admin_socket {}: another hactl run answers on it", path.display())]
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// The path exists and is not a socket: never deleted.
    #[error("admin_socket {}: exists and is not a socket (only a stale socket is replaced)", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Nothing listens on the socket: the daemon is not running.
    #[error("no hactl run answers on {}: {why} (is the daemon running? start it with `hactl run`)", path.display())]
    NotRunning {
        /// The socket.
        path: PathBuf,
        /// What connecting said.
        why: String,
    },
    /// The daemon answered with an error line.
    #[error("the daemon answered: {0}")]
    Refused(String),
    /// Any other socket failure.
    #[error("admin_socket {}: {source}", path.display())]
    Io {
        /// The socket.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// The status the daemon publishes and the socket serves.
pub type SharedStatus = Arc<Mutex<DaemonStatus>>;

/// The serving thread; stopped (and the socket removed) on drop.
#[derive(Debug)]
pub struct AdminServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Bind `path` (replacing a stale socket, creating its directory, mode 0600) and
    /// serve `status` on a thread.
    pub fn start(path: &Path, status: SharedStatus) -> Result<AdminServer, AdminError> {
        let io = |source| AdminError::Io {
            path: path.to_owned(),
            source,
        };
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(AdminError::NotASocket {
                    path: path.to_owned(),
                });
            }
            if UnixStream::connect(path).is_ok() {
                return Err(AdminError::InUse {
                    path: path.to_owned(),
                });
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("admin".into())
                .spawn(move || accept_loop(&listener, &status, &stop))
                .map_err(io)?
        };
        Ok(AdminServer {
            path: path.to_owned(),
            stop,
            thread: Some(thread),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: &UnixListener, status: &SharedStatus, stop: &AtomicBool) {
    let busy = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                if busy.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    busy.fetch_sub(1, Ordering::SeqCst);
                    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
                    let _ = (&stream).write_all(
                        format!(
                            "error: busy ({MAX_CONNECTIONS} connections being served); try again\n"
                        )
                        .as_bytes(),
                    );
                    continue;
                }
                let status = Arc::clone(status);
                let busy_conn = Arc::clone(&busy);
                let spawned =
                    std::thread::Builder::new()
                        .name("admin-conn".into())
                        .spawn(move || {
                            serve_one(stream, &status);
                            busy_conn.fetch_sub(1, Ordering::SeqCst);
                        });
                if let Err(e) = spawned {
                    busy.fetch_sub(1, Ordering::SeqCst);
                    tracing::warn!("admin socket: cannot serve a connection: {e}");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("admin socket: accept failed: {e}");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

/// Read one command line from `stream` within the bounds, answer it.
fn serve_one(stream: UnixStream, status: &SharedStatus) {
    let accepted = Instant::now();
    if stream.set_nonblocking(false).is_err()
        || stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err()
    {
        return;
    }
    let mut buf = Vec::with_capacity(MAX_LINE);
    let mut chunk = [0u8; MAX_LINE];
    let line = loop {
        let left = REQUEST_TIMEOUT.saturating_sub(accepted.elapsed());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break Err(format!(
                "error: no complete command within {} s\n",
                REQUEST_TIMEOUT.as_secs()
            ));
        }
        match (&stream).read(&mut chunk) {
            Ok(0) if buf.is_empty() => return,
            Ok(0) => break Ok(buf),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                    buf.truncate(end);
                    break Ok(buf);
                }
                if buf.len() > MAX_LINE {
                    break Err(format!("error: no command line within {MAX_LINE} bytes\n"));
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                break Err(format!(
                    "error: no complete command within {} s\n",
                    REQUEST_TIMEOUT.as_secs()
                ));
            }
        }
    };
    let answer = match line {
        Ok(line) => answer(String::from_utf8_lossy(&line).trim(), status),
        Err(e) => e,
    };
    let _ = (&stream).write_all(answer.as_bytes());
}

/// The answer to one command.
fn answer(command: &str, status: &SharedStatus) -> String {
    match command {
        "status" => {
            let snapshot = match status.lock() {
                Ok(s) => s.clone(),
                // The loop panicked while publishing: what it last wrote is still the
                // best account.
                Err(poisoned) => poisoned.into_inner().clone(),
            };
            match serde_json::to_string(&snapshot) {
                Ok(mut json) => {
                    json.push('\n');
                    json
                }
                Err(e) => format!("error: cannot encode the status: {e}\n"),
            }
        }
        "ping" => "pong\n".to_owned(),
        other => {
            let shown: String = other.chars().take(MAX_LINE).collect();
            format!("error: unknown command {shown:?}; commands: status, ping\n")
        }
    }
}

/// Send `command` to the daemon on `path` and return its answer. An answer starting
/// with `error:` is [`AdminError::Refused`]; nothing listening is
/// [`AdminError::NotRunning`].
pub fn request(path: &Path, command: &str, timeout: Duration) -> Result<String, AdminError> {
    let io = |source| AdminError::Io {
        path: path.to_owned(),
        source,
    };
    let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => AdminError::NotRunning {
            path: path.to_owned(),
            why: e.to_string(),
        },
        _ => AdminError::Io {
            path: path.to_owned(),
            source: e,
        },
    })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    // A busy daemon answers and closes at once, maybe before the command is written:
    // its answer is still there to read.
    let sent = (&stream).write_all(format!("{command}\n").as_bytes());
    let mut out = String::new();
    let read = (&stream).take(MAX_ANSWER).read_to_string(&mut out);
    if out.is_empty() {
        sent.map_err(io)?;
        read.map_err(io)?;
        return Err(AdminError::Refused(
            "nothing (closed without answering)".into(),
        ));
    }
    if let Some(error) = out.strip_prefix("error: ") {
        return Err(AdminError::Refused(error.trim_end().to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn status() -> SharedStatus {
        Arc::new(Mutex::new(DaemonStatus::starting(
            "/x/hsdb.sqlite",
            "sim",
            "default",
            1_000,
        )))
    }

    #[test]
    fn status_is_served_as_json_and_the_socket_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/hactl.sock");
        let shared = status();
        let server = AdminServer::start(&path, Arc::clone(&shared)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        shared.lock().unwrap().scans_total = 7;
        let text = request(&path, "status", Duration::from_secs(10)).unwrap();
        let back: DaemonStatus = serde_json::from_str(&text).unwrap();
        assert_eq!(back.scans_total, 7);
        assert_eq!(back.hsdb, "/x/hsdb.sqlite");
        assert_eq!(
            request(&path, "ping", Duration::from_secs(10)).unwrap(),
            "pong\n"
        );
        match request(&path, "reboot", Duration::from_secs(10)) {
            Err(AdminError::Refused(why)) => assert!(why.contains("\"reboot\""), "{why}"),
            other => panic!("{other:?}"),
        }
        // A second daemon on the same socket is refused; the first keeps it.
        match AdminServer::start(&path, status()) {
            Err(AdminError::InUse { .. }) => {}
            other => panic!("{other:?}"),
        }
        drop(server);
        assert!(!path.exists());
        match request(&path, "status", Duration::from_secs(10)) {
            Err(AdminError::NotRunning { .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_file_in_the_way_is_never_deleted_and_a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hactl.sock");
        std::fs::write(&path, "precious").unwrap();
        match AdminServer::start(&path, status()) {
            Err(AdminError::NotASocket { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
        std::fs::remove_file(&path).unwrap();
        // A socket nobody listens on (a daemon killed with SIGKILL).
        drop(UnixListener::bind(&path).unwrap());
        let _server = AdminServer::start(&path, status()).unwrap();
        assert!(request(&path, "ping", Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn a_silent_or_flooding_client_is_cut_and_others_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hactl.sock");
        let _server = AdminServer::start(&path, status()).unwrap();
        // Silent: the connection is answered with an error after REQUEST_TIMEOUT.
        let silent = UnixStream::connect(&path).unwrap();
        silent.set_read_timeout(Some(REQUEST_TIMEOUT * 10)).unwrap();
        // Flooding: more than a line without a newline.
        let mut flood = UnixStream::connect(&path).unwrap();
        flood.write_all(&[b'x'; MAX_LINE * 2]).unwrap();
        let mut answer = String::new();
        flood.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("error: no command line within"),
            "{answer}"
        );
        // Meanwhile another client is served.
        assert!(request(&path, "status", Duration::from_secs(10)).is_ok());
        let mut answer = String::new();
        (&silent).read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("error: no complete command"), "{answer}");
    }
}
