//! A real ICMP echo through the system's `ping` (iputils):
//! `ping -n -q -c 1 -W <s> -- <addr>`, killed if it outlives the call's timeout.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::virsh::{bounded, spawn};

/// How often a running ping is looked at.
const POLL: Duration = Duration::from_millis(5);
/// Bytes of ping's stderr kept for a message.
const MAX_STDERR: u64 = 4 * 1024;

/// What one ping found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingOutcome {
    /// A reply came (exit 0).
    Reply,
    /// No reply within the wait (exit 1), or no route to the address (exit 2 with
    /// "unreachable"): either way the address does not answer from here.
    NoReply,
    /// Still running at the deadline: killed.
    Timeout,
    /// ping could not be run, or failed for another reason (exit 2: bad option, no
    /// permission for a raw socket, …): nothing is known about the address.
    Error(String),
}

/// Ping `addr` (an IP address or a DNS name, checked by the caller) once: ping waits
/// three quarters of `timeout` for the reply (`-W`, fractional seconds) and is killed if
/// it still runs at `start + timeout` (a slow DNS answer, a stuck process).
pub fn ping(program: &Path, addr: &str, timeout: Duration, start: Instant) -> PingOutcome {
    let wait = (timeout * 3 / 4).max(Duration::from_millis(50));
    let deadline = start + timeout;
    let mut command = Command::new(program);
    command
        .args(["-n", "-q", "-c", "1", "-W"])
        .arg(format!("{:.3}", wait.as_secs_f64()))
        // The address is never taken for an option.
        .arg("--")
        .arg(addr)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = match spawn(&mut command) {
        Ok(c) => c,
        Err(e) => return PingOutcome::Error(format!("cannot run {}: {e}", program.display())),
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return PingOutcome::Timeout;
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return PingOutcome::Error(format!("waiting for {}: {e}", program.display()));
            }
        }
    };
    // ping has exited: its stderr pipe is at EOF (unless it left a child holding it,
    // which iputils does not); the read is capped either way.
    let mut stderr = String::new();
    if let Some(pipe) = child.stderr.take() {
        let mut bytes = Vec::new();
        let _ = pipe.take(MAX_STDERR).read_to_end(&mut bytes);
        stderr = bounded(String::from_utf8_lossy(&bytes).trim());
    }
    match status.code() {
        Some(0) => PingOutcome::Reply,
        Some(1) => PingOutcome::NoReply,
        Some(2) if stderr.to_ascii_lowercase().contains("unreachable") => PingOutcome::NoReply,
        _ => PingOutcome::Error(format!(
            "{} exited with {status}: {stderr}",
            program.display()
        )),
    }
}
