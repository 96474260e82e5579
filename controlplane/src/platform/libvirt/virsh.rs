//! One long-lived `virsh -q -c <uri>` child: commands over its stdin, each followed by
//! `echo <marker>`, its stdout and stderr read through one pipe by a reader thread.
//!
//! Why one child per host: libvirt's test hypervisor keeps its state only for the life of
//! a connection, and a real hypervisor's connection is costly to open; `virsh` keeps one
//! connection for the life of the process.
//!
//! What the stream looks like (virsh 9, stdin not a terminal): for each line read, the
//! prompt and the line itself (`virsh # destroy vm1\n`), then the command's output
//! (stdout and stderr, in order: virsh flushes stdout after each command), and for the
//! marker command `virsh # echo "@@hvha-N""-7@@"\n@@hvha-N-7@@` with no newline. The
//! marker is written with two quoted halves so that the echo of the raw line never
//! contains it; `N` is a per-session nonce so that a domain name cannot forge it.
//!
//! Everything virsh prints is untrusted: reads are capped per command, text is decoded
//! lossily, and a session that timed out, overflowed or died is killed, never reused.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The prompt virsh prints before reading each line.
const PROMPT: &str = "virsh # ";
/// Bytes per read of the reader thread.
const CHUNK: usize = 8 * 1024;
/// Chunks in flight between the reader thread and the caller (then virsh blocks).
const CHANNEL_DEPTH: usize = 16;
/// Longest error text kept from virsh, bytes.
pub(super) const MAX_WHY: usize = 512;

/// Why a virsh exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VirshError {
    /// The virsh program could not be started.
    #[error("cannot run {program}: {why}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        why: String,
    },
    /// virsh started but could not open the connection (it exits at once).
    #[error("cannot connect to {uri}: {why}")]
    Connect {
        /// The URI.
        uri: String,
        /// virsh's words (bounded).
        why: String,
    },
    /// virsh exited during a command.
    #[error("virsh for {uri} exited: {why}")]
    Died {
        /// The URI.
        uri: String,
        /// The last words it printed, if any (bounded).
        why: String,
    },
    /// No marker within the deadline.
    #[error("virsh for {uri} did not answer within {after_ms} ms")]
    Timeout {
        /// The URI.
        uri: String,
        /// The time waited.
        after_ms: u64,
    },
    /// One command printed more than the cap.
    #[error("virsh for {uri} printed more than {max} bytes for one command (allowed: up to {max})")]
    TooLarge {
        /// The URI.
        uri: String,
        /// The cap.
        max: usize,
    },
    /// A command line we were asked to send is not one safe line.
    #[error("refused to send {command:?} to virsh: {why}")]
    BadCommand {
        /// The command.
        command: String,
        /// Why.
        why: &'static str,
    },
}

/// What one command printed: its output lines (prompts and echoed input removed) and the
/// texts of its `error: ` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// Output lines, in order, without the ones starting with `error: `.
    pub lines: Vec<String>,
    /// `error: ` lines, without the prefix.
    pub errors: Vec<String>,
}

impl Reply {
    /// The errors joined, bounded, for a message.
    pub fn why(&self) -> String {
        bounded(&self.errors.join("; "))
    }

    /// Whether any error line contains `needle` (ASCII case-insensitive).
    pub fn error_contains(&self, needle: &str) -> bool {
        let needle = needle.to_ascii_lowercase();
        self.errors
            .iter()
            .any(|e| e.to_ascii_lowercase().contains(&needle))
    }
}

/// Keep at most [`MAX_WHY`] bytes of untrusted text, control characters replaced.
pub(super) fn bounded(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if out.len() + c.len_utf8() > MAX_WHY {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

enum ReadEvent {
    Data(Vec<u8>),
    Eof,
}

/// One running `virsh -q -c <uri>`.
pub struct VirshSession {
    uri: String,
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<ReadEvent>,
    /// Bytes read after the last marker.
    pending: Vec<u8>,
    nonce: String,
    seq: u64,
    max_output: usize,
}

impl std::fmt::Debug for VirshSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirshSession")
            .field("uri", &self.uri)
            .field("pid", &self.child.id())
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl VirshSession {
    /// Start `program -q -c uri` and wait (until `deadline`) for it to answer a first
    /// marker: a URI that cannot be opened makes virsh exit, which reads as
    /// [`VirshError::Connect`].
    pub fn connect(
        program: &Path,
        uri: &str,
        max_output: usize,
        deadline: Instant,
    ) -> Result<VirshSession, VirshError> {
        let (reader, writer) = std::io::pipe().map_err(|e| spawn_error(program, &e))?;
        let writer2 = writer.try_clone().map_err(|e| spawn_error(program, &e))?;
        let mut command = Command::new(program);
        command
            .args(["-q", "-c", uri])
            // virsh's words are parsed: no translations.
            .env("LC_ALL", "C")
            .env("LANG", "C")
            .stdin(Stdio::piped())
            .stdout(writer)
            .stderr(writer2);
        let mut child = spawn(&mut command).map_err(|e| spawn_error(program, &e))?;
        // Our copies of the pipe's write end go with `command`: EOF comes when virsh exits.
        drop(command);
        let Some(stdin) = child.stdin.take() else {
            kill(&mut child);
            return Err(VirshError::Spawn {
                program: program.display().to_string(),
                why: "no stdin pipe".to_owned(),
            });
        };
        let (tx, rx) = sync_channel(CHANNEL_DEPTH);
        let spawned = std::thread::Builder::new()
            .name("virsh-reader".to_owned())
            .spawn(move || read_loop(reader, &tx));
        if let Err(e) = spawned {
            kill(&mut child);
            return Err(spawn_error(program, &e));
        }
        let mut session = VirshSession {
            uri: uri.to_owned(),
            child,
            stdin,
            rx,
            pending: Vec::new(),
            nonce: nonce(),
            seq: 0,
            max_output,
        };
        match session.run("uri", deadline) {
            Ok(_) => Ok(session),
            Err(VirshError::Died { why, .. }) => Err(VirshError::Connect {
                uri: uri.to_owned(),
                why,
            }),
            Err(e) => Err(e),
        }
    }

    /// The child's process id (tests kill or stop it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send one command and read what it printed, until `deadline`. After an error the
    /// session must be dropped (the stream is no longer in step).
    pub fn run(&mut self, command: &str, deadline: Instant) -> Result<Reply, VirshError> {
        if command.contains(['\n', '\r', '\0']) {
            return Err(VirshError::BadCommand {
                command: bounded(command),
                why: "a command is one line",
            });
        }
        self.seq += 1;
        // Not starting with `-`: virsh's echo would take it for an option.
        let marker = format!("@@hvha-{}-{}@@", self.nonce, self.seq);
        let echo = format!("echo \"@@hvha-{}\"\"-{}@@\"", self.nonce, self.seq);
        let line = format!("{command}\n{echo}\n");
        if let Err(e) = self
            .stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.flush())
        {
            return Err(self.died(&format!("writing its stdin: {e}")));
        }
        let marker_bytes = marker.as_bytes();
        let mut searched = 0usize;
        loop {
            let found = find(&self.pending, marker_bytes, searched);
            // Pending holds at most the cap plus one read.
            if found.unwrap_or(self.pending.len()) > self.max_output {
                return Err(VirshError::TooLarge {
                    uri: self.uri.clone(),
                    max: self.max_output,
                });
            }
            if let Some(at) = found {
                let rest = self.pending.split_off(at + marker_bytes.len());
                self.pending.truncate(at);
                let raw = std::mem::replace(&mut self.pending, rest);
                return Ok(clean(&raw, &[command, &echo]));
            }
            // The marker may straddle two reads.
            searched = self.pending.len().saturating_sub(marker_bytes.len());
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(ReadEvent::Data(d)) => self.pending.extend_from_slice(&d),
                Ok(ReadEvent::Eof) | Err(RecvTimeoutError::Disconnected) => {
                    let last = clean(&self.pending, &[command, &echo]);
                    let why = if last.errors.is_empty() {
                        bounded(&last.lines.join("; "))
                    } else {
                        last.why()
                    };
                    return Err(self.died(&why));
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(VirshError::Timeout {
                        uri: self.uri.clone(),
                        after_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
                    });
                }
            }
        }
    }

    fn died(&mut self, why: &str) -> VirshError {
        let status = match self.child.try_wait() {
            Ok(Some(s)) => format!(" ({s})"),
            _ => String::new(),
        };
        VirshError::Died {
            uri: self.uri.clone(),
            why: bounded(&format!("{why}{status}")),
        }
    }
}

impl Drop for VirshSession {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

fn kill(child: &mut Child) {
    // Already gone is fine; a stopped process dies of SIGKILL too.
    let _ = child.kill();
    let _ = child.wait();
}

/// `command.spawn()`, retried a few times on ETXTBSY: a program file just written (a
/// wrapper script) can be briefly held open by a child another thread is forking.
pub(super) fn spawn(command: &mut Command) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match command.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn spawn_error(program: &Path, e: &std::io::Error) -> VirshError {
    VirshError::Spawn {
        program: program.display().to_string(),
        why: e.to_string(),
    }
}

fn read_loop(mut reader: std::io::PipeReader, tx: &SyncSender<ReadEvent>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = tx.send(ReadEvent::Eof);
                return;
            }
            Ok(n) => {
                // The session was dropped: stop reading (virsh is being killed).
                if tx.send(ReadEvent::Data(buf[..n].to_vec())).is_err() {
                    return;
                }
            }
        }
    }
}

/// A nonce for one session's markers: process id, wall-clock nanoseconds and a counter,
/// mixed. Not secret; only unlikely to appear in a domain's name by chance.
fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // The low 64 bits are the ones that vary.
    let low = u64::try_from(nanos & u128::from(u64::MAX)).unwrap_or(0);
    let mut x = low
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // SplitMix64's finaliser.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("{:016x}", x ^ (x >> 31))
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Split what virsh printed for one command into output and error lines: prompts
/// stripped, the echo of the lines we sent dropped, empty lines dropped.
pub(super) fn clean(raw: &[u8], sent: &[&str]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let mut reply = Reply::default();
    for line in text.split('\n') {
        let mut line = line.trim_end_matches('\r');
        while let Some(rest) = line.strip_prefix(PROMPT) {
            line = rest;
        }
        // A bare prompt (virsh printed it without the trailing space at the end).
        if line.is_empty() || line == PROMPT.trim_end() || sent.contains(&line) {
            continue;
        }
        if let Some(e) = line.strip_prefix("error: ") {
            reply.errors.push(e.to_owned());
        } else {
            reply.lines.push(line.to_owned());
        }
    }
    reply
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn test_clean_strips_prompts_and_echoes() {
        let raw = b"virsh # list --all\n 1   vm1   running\n -   vm2   shut off\nvirsh # echo \"@@hvha-ab\"\"-1@@\"\n";
        let r = clean(raw, &["list --all", "echo \"@@hvha-ab\"\"-1@@\""]);
        assert_eq!(r.lines, [" 1   vm1   running", " -   vm2   shut off"]);
        assert!(r.errors.is_empty());
    }

    #[test]
    fn test_clean_separates_errors_and_survives_garbage() {
        let raw = b"virsh # destroy vm2\nerror: Failed to destroy domain 'vm2'\nerror: Requested operation is not valid: domain is not running\n\xff\xfe\nvirsh # ";
        let r = clean(raw, &["destroy vm2"]);
        assert_eq!(
            r.errors,
            [
                "Failed to destroy domain 'vm2'",
                "Requested operation is not valid: domain is not running"
            ]
        );
        assert!(r.error_contains("NOT RUNNING"));
        assert_eq!(r.lines, ["\u{fffd}\u{fffd}"]);
    }

    #[test]
    fn test_bounded_cuts_and_removes_control_characters() {
        assert_eq!(bounded("a\tb\u{1b}c"), "a b c");
        let long = "x".repeat(2 * MAX_WHY);
        let b = bounded(&long);
        assert!(b.len() <= MAX_WHY + '…'.len_utf8());
        assert!(b.ends_with('…'));
    }

    #[test]
    fn test_find_from_offset() {
        assert_eq!(find(b"abcabc", b"bc", 0), Some(1));
        assert_eq!(find(b"abcabc", b"bc", 2), Some(4));
        assert_eq!(find(b"ab", b"abc", 0), None);
        assert_eq!(find(b"ab", b"b", 9), None);
    }

    #[test]
    fn test_nonces_differ() {
        assert_ne!(nonce(), nonce());
        assert_eq!(nonce().len(), 16);
    }
}
