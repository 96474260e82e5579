//! The exec hook channel: a configured command (an argv array, never a shell line built
//! from the event) run once per event with the event's JSON document on stdin.
//!
//! - the environment is clean: `PATH=/usr/sbin:/usr/bin:/sbin:/bin`, `LANG=C.UTF-8`,
//!   and `HVHA_EVENT_ID`, `HVHA_EVENT_KIND`, `HVHA_EVENT_SEVERITY`,
//!   `HVHA_EVENT_CREATED_MS`, and when known `HVHA_EVENT_VM`, `HVHA_EVENT_HM`,
//!   `HVHA_EVENT_HOST`, `HVHA_EVENT_HOST_GROUP` (the text is only in the document);
//! - the hook runs in its own process group; past the notifier's timeout, or when the
//!   daemon stops, the whole group is killed (SIGKILL) and the attempt failed;
//! - exit status 0 is delivered; anything else is a failed attempt, retried;
//! - its stdout and stderr are read up to 4 KiB each (the rest is drained and dropped)
//!   and logged; a hook that leaves a child holding its output open is not waited for
//!   more than a second after it exited.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Channel, DeliveryError, EventDoc, excerpt};

/// Output kept per stream.
pub const MAX_OUTPUT: usize = 4 * 1024;
/// How long the output of an exited hook is waited for.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);
/// The `PATH` a hook sees.
pub const HOOK_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// The exec hook channel.
#[derive(Debug)]
pub struct ExecHook {
    argv: Vec<String>,
    timeout: Duration,
}

impl ExecHook {
    /// A hook running `argv` (`argv[0]` an absolute path), each run bounded by `timeout`.
    pub fn new(argv: Vec<String>, timeout: Duration) -> ExecHook {
        ExecHook { argv, timeout }
    }
}

/// Read a stream, keeping at most [`MAX_OUTPUT`] bytes and draining the rest.
fn reader(mut r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        let _ = tx.send(kept);
    });
    rx
}

fn kill_group(child: &Child) {
    let pid = rustix::process::Pid::from_child(child);
    // Never a broadcast: a process group id is a child's pid, above 1.
    if pid.as_raw_nonzero().get() > 1 {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

impl Channel for ExecHook {
    fn kind(&self) -> &'static str {
        "exec"
    }

    fn target(&self) -> String {
        self.argv.join(" ")
    }

    fn deliver(&mut self, doc: &EventDoc, stop: &AtomicBool) -> Result<String, DeliveryError> {
        let program = self.argv.first().cloned().unwrap_or_default();
        let mut cmd = Command::new(&program);
        cmd.args(&self.argv[1..])
            .env_clear()
            .env("PATH", HOOK_PATH)
            .env("LANG", "C.UTF-8")
            .env("HVHA_EVENT_ID", doc.id.to_string())
            .env("HVHA_EVENT_KIND", &doc.kind)
            .env("HVHA_EVENT_SEVERITY", doc.severity.as_str())
            .env("HVHA_EVENT_CREATED_MS", doc.created_ms.to_string())
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        for (key, value) in [
            ("HVHA_EVENT_VM", &doc.vm),
            ("HVHA_EVENT_HM", &doc.hm),
            ("HVHA_EVENT_HOST", &doc.host),
            ("HVHA_EVENT_HOST_GROUP", &doc.host_group),
        ] {
            if let Some(v) = value {
                cmd.env(key, v);
            }
        }
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|source| DeliveryError::Spawn {
            program: program.clone(),
            source,
        })?;
        // The document on stdin from a thread: a hook that does not read it cannot
        // block the notifier.
        if let Some(mut stdin) = child.stdin.take() {
            let json = doc.to_json();
            std::thread::spawn(move || {
                let _ = stdin.write_all(json.as_bytes());
                let _ = stdin.write_all(b"\n");
            });
        }
        let out = child.stdout.take().map(reader);
        let err = child.stderr.take().map(reader);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => {
                    kill_group(&child);
                    let _ = child.wait();
                    return Err(DeliveryError::Io {
                        what: format!("waiting for {program}"),
                        source: e,
                    });
                }
            }
            let stopping = stop.load(Ordering::SeqCst);
            if stopping || started.elapsed() >= self.timeout {
                // The whole group: the hook and whatever it started.
                kill_group(&child);
                let _ = child.wait();
                if stopping {
                    return Err(DeliveryError::Stopped);
                }
                let output = collect(out, err);
                return Err(DeliveryError::Timeout {
                    what: format!("{program} (killed with its process group{output})"),
                    after: self.timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let output = collect(out, err);
        if status.success() {
            Ok(format!("{program} exited 0{output}"))
        } else {
            Err(DeliveryError::Refused(format!(
                "{program} {}{output}",
                match status.code() {
                    Some(code) => format!("exited {code}"),
                    None => "was killed by a signal".to_owned(),
                }
            )))
        }
    }
}

/// The output of both streams for a log line: `, stdout: "…", stderr: "…"`.
fn collect(out: Option<mpsc::Receiver<Vec<u8>>>, err: Option<mpsc::Receiver<Vec<u8>>>) -> String {
    let until = Instant::now() + OUTPUT_GRACE;
    let mut text = String::new();
    for (name, rx) in [("stdout", out), ("stderr", err)] {
        let Some(rx) = rx else { continue };
        let left = until.saturating_duration_since(Instant::now());
        if let Ok(bytes) = rx.recv_timeout(left)
            && !bytes.is_empty()
        {
            text.push_str(&format!(", {name}: {:?}", excerpt(&bytes, 300)));
        }
    }
    text
}
