//! Running an application's monitor, start and stop scripts as real child processes.
//!
//! A script is run without a shell: the configured path is the program and it gets no
//! arguments, so nothing from the configuration is ever parsed as a command line. It
//! runs in a process group of its own (`setpgid(0, 0)`), with a clean environment
//! ([`PATH_ENV`], `HVHA_APP`, `HVHA_ACTION`, `HVHA_TIMEOUT`), stdin from `/dev/null`,
//! the working directory `/`, and stdout and stderr on one pipe read by the runner
//! (one pipe, so their lines keep the order they were written in): the last
//! [`OUTPUT_TAIL`] bytes are kept for the log and the status detail, the rest is read
//! and dropped, so a script that floods its output neither blocks on a full pipe nor
//! grows the agent's memory.
//!
//! After its timeout the whole group gets SIGTERM, then SIGKILL [`KILL_GRACE`] later,
//! and the script is reaped. When a monitor or stop script ends, whatever it left
//! running in its group is killed (a monitor must not leave anything behind); a start
//! script's group is left alone when it ends in time, because starting a daemon is its
//! job (a daemon that keeps the pipe open gets a thread that drains it, so it never
//! meets a closed pipe). Processes that leave the group (`setsid`, `setpgid`) escape
//! this clean-up.
//!
//! Before running, the file is checked: it must exist, be a regular file, be
//! executable, be owned by root or the agent's user and be writable by neither group
//! nor others, and its directory must not be writable by group or others unless it is
//! sticky ([`check_script`]). A script that fails the check makes its application
//! ABNORMAL with a message naming the file and the reason (issue 11).

use std::collections::{BTreeMap, VecDeque};
use std::io::PipeReader;
use std::io::{ErrorKind, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, Signal, kill_process_group, pidfd_open};

use super::machine::{Outcome, Script};

/// The only `PATH` a script sees.
pub const PATH_ENV: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// How much of a script's output (stdout and stderr together) is kept: the end of it.
pub const OUTPUT_TAIL: usize = 4096;
/// Between the SIGTERM and the SIGKILL of a timed-out script's process group.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long the runner goes on reading the pipes after a killed group ended: the
/// killed processes close them at once, so this only bounds a pathological case.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// Why a script cannot be run. The message names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// No such file.
    #[error("{path}: no such file")]
    Missing {
        /// The script.
        path: PathBuf,
    },
    /// `stat` failed for another reason.
    #[error("{path}: cannot be examined: {error}")]
    Stat {
        /// The script.
        path: PathBuf,
        /// The system's error.
        error: String,
    },
    /// A directory, device, socket…
    #[error("{path}: not a regular file")]
    NotRegular {
        /// The script.
        path: PathBuf,
    },
    /// No execute permission bit.
    #[error("{path}: not executable (mode {mode:04o})")]
    NotExecutable {
        /// The script.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Anyone but the owner could change what the agent runs as root.
    #[error("{path}: writable by group or others (mode {mode:04o})")]
    Writable {
        /// The script.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Owned by a user that is neither root nor the agent's.
    #[error("{path}: owned by uid {uid}, neither root nor the agent's uid {agent}")]
    Owner {
        /// The script.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// The agent's effective uid.
        agent: u32,
    },
    /// The directory lets others replace the file.
    #[error("{path}: its directory {dir} is writable by group or others (mode {mode:04o})")]
    DirectoryWritable {
        /// The script.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
        /// The directory's permission bits.
        mode: u32,
    },
    /// `execve` refused it (no interpreter line, bad format…).
    #[error("{path}: cannot be started: {error}")]
    Spawn {
        /// The script.
        path: PathBuf,
        /// The system's error.
        error: String,
    },
}

/// Check that `path` may be run as a script (see the module doc).
pub fn check_script(path: &Path) -> Result<(), Unusable> {
    let p = || path.to_path_buf();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => Unusable::Missing { path: p() },
        _ => Unusable::Stat {
            path: p(),
            error: e.to_string(),
        },
    })?;
    if !meta.is_file() {
        return Err(Unusable::NotRegular { path: p() });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o111 == 0 {
        return Err(Unusable::NotExecutable { path: p(), mode });
    }
    if mode & 0o022 != 0 {
        return Err(Unusable::Writable { path: p(), mode });
    }
    let agent = rustix::process::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != agent {
        return Err(Unusable::Owner {
            path: p(),
            uid: meta.uid(),
            agent,
        });
    }
    if let Some(dir) = path.parent()
        && let Ok(dmeta) = std::fs::metadata(dir)
    {
        let dmode = dmeta.permissions().mode() & 0o7777;
        // A sticky directory (/tmp) lets nobody but the owner replace the file.
        if dmode & 0o022 != 0 && dmode & 0o1000 == 0 {
            return Err(Unusable::DirectoryWritable {
                path: p(),
                dir: dir.to_path_buf(),
                mode: dmode,
            });
        }
    }
    Ok(())
}

/// One script to run.
#[derive(Debug, Clone)]
pub struct ScriptRun<'a> {
    /// The application (the `HVHA_APP` variable).
    pub app: &'a str,
    /// Which script (the `HVHA_ACTION` variable: `monitor`, `start`, `stop`).
    pub script: Script,
    /// The program.
    pub path: &'a Path,
    /// After this the process group is terminated and the run counts as timed out.
    pub timeout: Duration,
    /// Between SIGTERM and SIGKILL ([`KILL_GRACE`] in the daemon).
    pub grace: Duration,
    /// Where the running script's group is registered while it runs, if anywhere.
    pub groups: Option<&'a RunningGroups>,
}

/// The process groups of the scripts running now, so that the AME can kill them all
/// when it stops. A group leaves the set before its script is reaped, so a signal
/// sent through the set never reaches a recycled process id.
#[derive(Debug, Default)]
pub struct RunningGroups {
    inner: Mutex<Groups>,
}

#[derive(Debug, Default)]
struct Groups {
    /// Process group → application and script.
    pids: BTreeMap<i32, (String, Script)>,
    closed: bool,
}

impl RunningGroups {
    fn lock(&self) -> std::sync::MutexGuard<'_, Groups> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// SIGKILL every running script's group; scripts started from now on are killed
    /// at once.
    pub fn kill_all(&self) {
        let mut g = self.lock();
        g.closed = true;
        for &pid in g.pids.keys() {
            if let Some(pid) = Pid::from_raw(pid) {
                signal_group(pid, Signal::KILL);
            }
        }
    }

    /// SIGKILL the group of `app`'s monitor script if one runs (its application is
    /// being stopped: its verdict no longer matters); `true` if there was one.
    pub fn kill_monitor(&self, app: &str) -> bool {
        let g = self.lock();
        let mut found = false;
        for (&pid, (name, script)) in &g.pids {
            if name == app
                && *script == Script::Monitor
                && let Some(pid) = Pid::from_raw(pid)
            {
                signal_group(pid, Signal::KILL);
                found = true;
            }
        }
        found
    }

    /// How many scripts run now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().pids.len()
    }

    /// Register a started script; `false` if the set is closed.
    fn enter(&self, pid: Pid, app: &str, script: Script) -> bool {
        let mut g = self.lock();
        g.pids
            .insert(pid.as_raw_nonzero().get(), (app.to_owned(), script));
        !g.closed
    }

    fn leave(&self, pid: Pid) {
        self.lock().pids.remove(&pid.as_raw_nonzero().get());
    }
}

/// The `HVHA_ACTION` value of a script.
pub fn action_name(script: Script) -> &'static str {
    match script {
        Script::Monitor => "monitor",
        Script::Start => "start",
        Script::Stop => "stop",
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Finished {
    /// What the state machine is told.
    pub outcome: Outcome,
    /// The exit status (after a timeout: the status of the killed script).
    pub status: ExitStatus,
    /// The script's process id (also its process group id).
    pub pid: u32,
    /// The last [`OUTPUT_TAIL`] bytes of stdout and stderr, in the order read.
    pub output: Vec<u8>,
    /// Bytes of output read in all.
    pub output_len: u64,
    /// From spawn to reaping.
    pub elapsed: Duration,
}

impl Finished {
    /// One line for the log and the status detail: how it ended and the last line of
    /// its output, at most about 200 bytes.
    pub fn summary(&self, timeout: Duration) -> String {
        let how = match (self.outcome, self.status.code(), self.status.signal()) {
            (Outcome::TimedOut, _, _) => format!("timed out after {} s", timeout.as_secs_f64()),
            (_, Some(code), _) => format!("exit status {code}"),
            (_, None, Some(sig)) => format!("killed by signal {sig}"),
            _ => "ended".to_owned(),
        };
        let text = String::from_utf8_lossy(&self.output);
        let last = text
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        if last.is_empty() {
            how
        } else {
            let mut cut = last.len().min(160);
            while !last.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{how}: {}", &last[..cut])
        }
    }
}

/// The end of a stream, at most `cap` bytes.
struct Tail {
    buf: VecDeque<u8>,
    cap: usize,
    total: u64,
}

impl Tail {
    fn new(cap: usize) -> Self {
        Self {
            buf: VecDeque::with_capacity(cap),
            cap,
            total: 0,
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let data = &data[data.len().saturating_sub(self.cap)..];
        let over = (self.buf.len() + data.len()).saturating_sub(self.cap);
        self.buf.drain(..over);
        self.buf.extend(data);
    }
}

/// The script's output pipe (stdout and stderr), until its end of file.
struct Pipe(PipeReader);

impl Pipe {
    /// Read what is there; `false` at end of file or on an error.
    fn read_into(&mut self, scratch: &mut [u8], tail: &mut Tail) -> bool {
        match self.0.read(scratch) {
            Ok(0) => false,
            Ok(n) => {
                tail.push(&scratch[..n]);
                true
            }
            Err(e) => e.kind() == ErrorKind::Interrupted,
        }
    }
}

/// Run a script to its end (see the module doc). `Err` only when it cannot be run;
/// a script that fails, crashes or times out is an `Ok` with that outcome.
pub fn run(req: &ScriptRun<'_>) -> Result<Finished, Unusable> {
    check_script(req.path)?;
    let started = Instant::now();
    let mut tries = 0;
    let (reader, writer) = std::io::pipe().map_err(|e| Unusable::Spawn {
        path: req.path.to_path_buf(),
        error: format!("cannot create a pipe: {e}"),
    })?;
    let mut child = loop {
        match spawn(req, &writer) {
            // Written at this very moment (an editor saving it, or another thread's
            // fork still holding it open): try again a little later.
            Err(e) if e.kind() == ErrorKind::ExecutableFileBusy && tries < 3 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            r => {
                break r.map_err(|e| Unusable::Spawn {
                    path: req.path.to_path_buf(),
                    error: e.to_string(),
                })?;
            }
        }
    };
    // Only the script holds the write end now: its end of file is the script's (and
    // its children's) last close.
    drop(writer);
    let pid = Pid::from_child(&child);
    if let Some(groups) = req.groups
        && !groups.enter(pid, req.app, req.script)
    {
        signal_group(pid, Signal::KILL);
    }
    let mut pipes = vec![Pipe(reader)];
    let mut tail = Tail::new(OUTPUT_TAIL);
    let mut scratch = vec![0u8; 16 * 1024];
    // A pidfd becomes readable when the script exits, before it is reaped: the group
    // can still be signalled then without the risk of a recycled process id.
    let pidfd = pidfd_open(pid, PidfdFlags::empty()).ok();

    let deadline = started + req.timeout;
    let mut kill_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let wake = kill_at.unwrap_or(deadline);
        if now >= wake {
            if kill_at.is_none() {
                signal_group(pid, Signal::TERM);
                kill_at = Some(now + req.grace);
                continue;
            }
            // The grace is over: SIGKILL cannot be ignored, the wait below is short.
            break;
        }
        let mut wait = wake - now;
        if pidfd.is_none() {
            // No pidfd (kernel before 5.3): look at the child every 20 ms.
            wait = wait.min(Duration::from_millis(20));
        }
        let exited = wait_events(&mut pipes, pidfd.as_ref(), wait, &mut scratch, &mut tail);
        let exited = match &pidfd {
            Some(_) => exited,
            None => matches!(child.try_wait(), Ok(Some(_))),
        };
        if exited {
            break;
        }
    }
    let timed_out = kill_at.is_some();
    // What the script left in its group: gone, except a start script's daemon.
    let clean_up = timed_out || req.script != Script::Start;
    if clean_up {
        signal_group(pid, Signal::KILL);
    }
    if let Some(groups) = req.groups {
        groups.leave(pid);
    }
    let status = reap(&mut child);
    if clean_up {
        let until = Instant::now() + DRAIN_AFTER_EXIT;
        while !pipes.is_empty() {
            let now = Instant::now();
            if now >= until {
                break;
            }
            wait_events(&mut pipes, None, until - now, &mut scratch, &mut tail);
        }
    } else {
        // The daemon may hold the pipe: take what is there now, then leave the rest to
        // a thread that reads and drops it until the daemon closes it, so that the
        // daemon never writes into a closed pipe (SIGPIPE would kill it).
        wait_events(&mut pipes, None, Duration::ZERO, &mut scratch, &mut tail);
        for pipe in pipes.drain(..) {
            drain_in_background(pipe);
        }
    }
    let outcome = if timed_out {
        Outcome::TimedOut
    } else if status.success() {
        Outcome::Ok
    } else {
        Outcome::Failed
    };
    Ok(Finished {
        outcome,
        status,
        pid: child.id(),
        output: tail.buf.into_iter().collect(),
        output_len: tail.total,
        elapsed: started.elapsed(),
    })
}

/// Start the script: no shell, no arguments, clean environment, own process group.
fn spawn(req: &ScriptRun<'_>, output: &std::io::PipeWriter) -> std::io::Result<Child> {
    Command::new(req.path)
        .env_clear()
        .env("PATH", PATH_ENV)
        .env("HVHA_APP", req.app)
        .env("HVHA_ACTION", action_name(req.script))
        .env("HVHA_TIMEOUT", req.timeout.as_secs().to_string())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(output.try_clone()?))
        .stderr(Stdio::from(output.try_clone()?))
        .process_group(0)
        .spawn()
}

/// Poll the pipes (and the pidfd) for up to `wait`, read what is readable, drop the
/// pipes at their end; `true` if the pidfd says the script exited.
fn wait_events(
    pipes: &mut Vec<Pipe>,
    pidfd: Option<&std::os::fd::OwnedFd>,
    wait: Duration,
    scratch: &mut [u8],
    tail: &mut Tail,
) -> bool {
    let ready: Vec<bool>;
    let exited;
    {
        let mut fds: Vec<PollFd<'_>> = pipes
            .iter()
            .map(|p| PollFd::from_borrowed_fd(p.0.as_fd(), PollFlags::IN))
            .collect();
        if let Some(pidfd) = pidfd {
            fds.push(PollFd::new(pidfd, PollFlags::IN));
        }
        if fds.is_empty() {
            std::thread::sleep(wait);
            return false;
        }
        let timeout = Timespec::try_from(wait).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        if poll(&mut fds, Some(&timeout)).is_err() {
            // EINTR: the caller loops with a recomputed wait.
            return false;
        }
        let any = PollFlags::IN | PollFlags::HUP | PollFlags::ERR;
        ready = fds[..pipes.len()]
            .iter()
            .map(|f| f.revents().intersects(any))
            .collect();
        exited = pidfd.is_some() && fds[pipes.len()].revents().intersects(any);
    }
    let mut i = 0;
    pipes.retain_mut(|p| {
        let keep = !ready[i] || p.read_into(scratch, tail);
        i += 1;
        keep
    });
    exited
}

/// Read and drop what a started daemon writes on the start script's pipe, until it
/// closes it (when it exits, or redirects its output). One blocked thread per such
/// daemon; none if the start script's children did not keep the pipe.
fn drain_in_background(mut pipe: Pipe) {
    let spawned = std::thread::Builder::new()
        .name("ame-drain".to_owned())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match pipe.0.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
    // Without a thread the pipe is closed: the daemon's next write fails.
    drop(spawned);
}

fn signal_group(pid: Pid, sig: Signal) {
    // ESRCH: the group is already empty.
    let _ = kill_process_group(pid, sig);
}

/// Reap the script; after SIGKILL of its group the wait is short.
fn reap(child: &mut Child) -> ExitStatus {
    loop {
        match child.wait() {
            Ok(status) => return status,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // ECHILD cannot happen for our own child; report it as a crash.
            Err(_) => return ExitStatus::from_raw(0x7f00),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::fs;
    use std::io::Write;

    /// Write an executable script (mode 0700) into `dir`.
    pub(crate) fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        let mut f = fs::File::create(&path).unwrap();
        writeln!(f, "#!/bin/sh\n{body}").unwrap();
        drop(f);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
        path
    }

    fn go(path: &Path, script: Script, timeout_ms: u64) -> Result<Finished, Unusable> {
        run(&ScriptRun {
            app: "app1",
            script,
            path,
            timeout: Duration::from_millis(timeout_ms),
            grace: Duration::from_millis(300),
            groups: None,
        })
    }

    /// Whether a process is gone: no /proc entry, or a zombie waiting for its reaper.
    fn gone(pid: u32) -> bool {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    fn wait_gone(pid: u32) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if gone(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    #[test]
    fn exit_status_and_output_and_clean_environment() {
        let d = dir();
        let p = script(
            d.path(),
            "mon",
            "echo \"app=$HVHA_APP action=$HVHA_ACTION path=$PATH home=${HOME:-none} pwd=$(pwd)\"\necho oops >&2\nexit 3",
        );
        let f = go(&p, Script::Monitor, 5000).unwrap();
        assert_eq!(f.outcome, Outcome::Failed);
        assert_eq!(f.status.code(), Some(3));
        let out = String::from_utf8(f.output.clone()).unwrap();
        assert!(
            out.contains(&format!(
                "app=app1 action=monitor path={PATH_ENV} home=none pwd=/"
            )),
            "{out}"
        );
        assert!(out.contains("oops"), "stderr is kept too: {out}");
        assert_eq!(f.summary(Duration::from_secs(5)), "exit status 3: oops");
        let ok = script(d.path(), "ok", "exit 0");
        assert_eq!(go(&ok, Script::Monitor, 5000).unwrap().outcome, Outcome::Ok);
    }

    #[test]
    fn the_path_is_the_program_never_a_shell_line() {
        let d = dir();
        // A name a shell would split into two commands is one program here.
        let marker = d.path().join("pwned");
        let odd = script(d.path(), "mon; touch pwned", "echo ran-as-one");
        let f = go(&odd, Script::Monitor, 5000).unwrap();
        assert_eq!(f.outcome, Outcome::Ok);
        assert_eq!(f.output, b"ran-as-one\n");
        assert!(!marker.exists());
    }

    #[test]
    fn a_hung_script_and_its_grandchild_are_killed_with_the_group() {
        let d = dir();
        let pidfile = d.path().join("grandchild.pid");
        // The grandchild ignores SIGTERM: only the SIGKILL of the group ends it.
        let p = script(
            d.path(),
            "hang",
            &format!(
                "(trap '' TERM; sleep 600) &\necho $! > {}\ntrap '' TERM\nsleep 600",
                pidfile.display()
            ),
        );
        let t0 = Instant::now();
        let f = go(&p, Script::Monitor, 500).unwrap();
        assert_eq!(f.outcome, Outcome::TimedOut);
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "timeout + grace, not the sleep: {:?}",
            t0.elapsed()
        );
        assert!(
            f.summary(Duration::from_millis(500))
                .starts_with("timed out after 0.5 s")
        );
        let grandchild: u32 = fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(wait_gone(grandchild), "grandchild {grandchild} survived");
        assert!(gone(f.pid), "the script itself is reaped");
    }

    #[test]
    fn a_monitor_scripts_leftovers_are_killed_but_a_start_scripts_daemon_stays() {
        let d = dir();
        let pidfile = d.path().join("left.pid");
        let body = format!(
            "sleep 600 >/dev/null 2>&1 &\necho $! > {}\nexit 0",
            pidfile.display()
        );
        let mon = script(d.path(), "mon", &body);
        let f = go(&mon, Script::Monitor, 5000).unwrap();
        assert_eq!(f.outcome, Outcome::Ok);
        let left: u32 = fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(wait_gone(left), "monitor leftover {left} survived");

        let start = script(d.path(), "start", &body);
        let f = go(&start, Script::Start, 5000).unwrap();
        assert_eq!(f.outcome, Outcome::Ok);
        let daemon: u32 = fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(!gone(daemon), "the started daemon must keep running");
        // Clean up the daemon (its group is the start script's pid).
        signal_group(
            Pid::from_raw(i32::try_from(f.pid).unwrap()).unwrap(),
            Signal::KILL,
        );
        assert!(wait_gone(daemon));
    }

    #[test]
    fn a_start_script_whose_daemon_keeps_the_pipe_open_still_returns() {
        let d = dir();
        let pidfile = d.path().join("d.pid");
        // The daemon inherits stdout, never closes it, and writes to it later.
        let p = script(
            d.path(),
            "start",
            &format!(
                "(sleep 0.5; echo late; echo later >&2; sleep 600) &\necho $! > {}\necho started",
                pidfile.display()
            ),
        );
        let t0 = Instant::now();
        let f = go(&p, Script::Start, 5000).unwrap();
        assert_eq!(f.outcome, Outcome::Ok);
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        assert_eq!(f.output, b"started\n");
        let daemon: u32 = fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Its late writes went into a pipe still read: no SIGPIPE.
        std::thread::sleep(Duration::from_millis(1500));
        assert!(!gone(daemon), "the daemon died writing its output");
        signal_group(
            Pid::from_raw(i32::try_from(f.pid).unwrap()).unwrap(),
            Signal::KILL,
        );
        assert!(wait_gone(daemon));
    }

    #[test]
    fn kill_all_ends_every_running_group_and_whatever_starts_after() {
        let d = dir();
        let groups = RunningGroups::default();
        let p = script(d.path(), "hang", "sleep 600");
        let t0 = Instant::now();
        let f = std::thread::scope(|s| {
            let h = s.spawn(|| {
                run(&ScriptRun {
                    app: "app1",
                    script: Script::Start,
                    path: &p,
                    timeout: Duration::from_secs(60),
                    grace: Duration::from_secs(1),
                    groups: Some(&groups),
                })
            });
            while groups.len() == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
            groups.kill_all();
            h.join().unwrap().unwrap()
        });
        assert_eq!(f.outcome, Outcome::Failed);
        assert_eq!(f.status.signal(), Some(9));
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert_eq!(groups.len(), 0);
        let f = run(&ScriptRun {
            app: "app1",
            script: Script::Monitor,
            path: &p,
            timeout: Duration::from_secs(60),
            grace: Duration::from_secs(1),
            groups: Some(&groups),
        })
        .unwrap();
        assert_eq!(f.status.signal(), Some(9), "closed: killed at once");
    }

    #[test]
    fn a_flooding_script_is_drained_and_only_its_tail_kept() {
        let d = dir();
        // 8 MiB on stdout and 1 MiB on stderr, far beyond any pipe buffer.
        let p = script(
            d.path(),
            "flood",
            "head -c 8388608 /dev/zero | tr '\\0' x\nhead -c 1048576 /dev/zero | tr '\\0' y >&2\necho the-end",
        );
        let f = go(&p, Script::Monitor, 20_000).unwrap();
        assert_eq!(f.outcome, Outcome::Ok, "{}", f.summary(Duration::ZERO));
        assert_eq!(f.output_len, 8_388_608 + 1_048_576 + 8);
        assert_eq!(f.output.len(), OUTPUT_TAIL);
        assert!(f.output.ends_with(b"the-end\n"));
    }

    #[test]
    fn a_flood_that_never_ends_is_cut_at_the_timeout() {
        let d = dir();
        let p = script(d.path(), "yes", "exec yes");
        let f = go(&p, Script::Monitor, 500).unwrap();
        assert_eq!(f.outcome, Outcome::TimedOut);
        assert!(f.output_len > OUTPUT_TAIL as u64);
        assert_eq!(f.output.len(), OUTPUT_TAIL);
    }

    #[test]
    fn unusable_scripts_are_named_with_the_reason() {
        let d = dir();
        let missing = d.path().join("nope");
        let err = go(&missing, Script::Monitor, 1000).unwrap_err();
        assert!(matches!(err, Unusable::Missing { .. }));
        assert!(err.to_string().contains("nope: no such file"), "{err}");

        let p = script(d.path(), "noexec", "exit 0");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let err = go(&p, Script::Monitor, 1000).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: not executable (mode 0644)", p.display())
        );

        fs::set_permissions(&p, fs::Permissions::from_mode(0o775)).unwrap();
        let err = go(&p, Script::Monitor, 1000).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: writable by group or others (mode 0775)", p.display())
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o757)).unwrap();
        assert!(matches!(
            go(&p, Script::Monitor, 1000),
            Err(Unusable::Writable { mode: 0o757, .. })
        ));

        let err = go(d.path(), Script::Monitor, 1000).unwrap_err();
        assert!(matches!(err, Unusable::NotRegular { .. }), "{err}");

        // No interpreter line: execve refuses it.
        let bin = d.path().join("garbage");
        fs::write(&bin, b"\x7fELF-not-really").unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o700)).unwrap();
        let err = go(&bin, Script::Monitor, 1000).unwrap_err();
        assert!(matches!(err, Unusable::Spawn { .. }), "{err}");

        // A directory others may write into lets them swap the script.
        let open = d.path().join("open");
        fs::create_dir(&open).unwrap();
        let s = script(&open, "mon", "exit 0");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let err = go(&s, Script::Monitor, 1000).unwrap_err();
        assert!(
            matches!(err, Unusable::DirectoryWritable { mode: 0o777, .. }),
            "{err}"
        );
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(go(&s, Script::Monitor, 1000).unwrap().outcome, Outcome::Ok);
    }

    #[test]
    fn owner_must_be_root_or_the_agent() {
        if rustix::process::geteuid().as_raw() != 0 {
            // chown needs root; CI runs the tests as root.
            return;
        }
        let d = dir();
        let p = script(d.path(), "mon", "exit 0");
        std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
        let err = go(&p, Script::Monitor, 1000).unwrap_err();
        assert!(
            matches!(
                err,
                Unusable::Owner {
                    uid: 65534,
                    agent: 0,
                    ..
                }
            ),
            "{err}"
        );
    }
}
