//! The admin UNIX socket: one line in (`status`, `stats`, `vms`, `metrics`), text out.
//!
//! The listener thread only relays: it hands the command to the dataplane thread (which
//! owns all the state) and writes back its answer, so nothing is shared or locked on
//! the per-frame path.

use std::io::{BufRead, BufReader, Read, Write};
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
    let command = line.trim().to_owned();
    let (tx, rx) = bounded(1);
    let reply = if requests.send(AdminRequest { command, reply: tx }).is_ok() {
        if let Ok(guard) = waker.lock()
            && let Some(w) = guard.as_ref()
        {
            let _ = w.wake();
        }
        rx.recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| "error: the monitor did not answer within 5 s\n".into())
    } else {
        "error: the monitor is stopping\n".into()
    };
    (&stream).write_all(reply.as_bytes())
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
