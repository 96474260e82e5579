//! `hvha-demo`: the real daemons in network namespaces, and the HSDB rows they write.
//!
//! One namespace holds a host monitor (`hmd`, writing an SQLite HSDB in the lab's scratch
//! directory); three more each hold a VM agent (`vmmd`) joined to the monitor by a veth
//! pair. With a 200 ms heartbeat period and `vm_miss_after` of 1 s the demo then:
//! (a) waits until every VM is DETECTED, (b) stops agent 2 with `SIGSTOP` and waits for
//! MISSING, (c) resumes it with `SIGCONT` and waits for DETECTED, (d) stops agent 3 with
//! `SIGTERM` and waits for SUSPENDED, (e) prints `hmd ctl status` and the HSDB's queues,
//! stops `hmd` and removes everything. After each step it prints the HSDB rows.
//!
//! Needs root (namespaces, veth pairs, raw sockets). Exit codes: 0 every step happened,
//! 1 a step did not happen within its deadline (the message names it, and the daemons'
//! logs follow), 2 bad arguments or this machine cannot run it, 130 interrupted.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dataplane::message::Uuid;
use hsdb::{HeartbeatState, Hsdb, Options, VmHmRow, VmRow};
use hvha_e2e::Lab;

const USAGE: &str = "\
hvha-demo — the real hmd and three vmmd in network namespaces, and the HSDB rows they write

Usage: hvha-demo [--keep] | --help | --version

Builds one host-monitor namespace running hmd (SQLite HSDB in a scratch directory) and
three agent namespaces each running vmmd on a veth pair to it (heartbeat every 200 ms,
MISSING after 1 s of silence), then, printing the HSDB rows after each step:
  (a) waits until every VM is DETECTED
  (b) pauses agent 2 (kill -STOP) and waits until its row is MISSING
  (c) resumes it (kill -CONT) and waits until it is DETECTED again
  (d) stops agent 3 (SIGTERM: SHDN to the monitor) and waits until it is SUSPENDED
  (e) prints `hmd ctl status` and the HSDB queues, stops hmd, removes everything
Each wait has a 10 s deadline. Needs root. Takes about 3 s.

Options:
  --keep      after (e)'s report, leave the lab running until Ctrl-C (inspect it with
              `hmd ctl`, `ip netns exec`, `sqlite3`), then clean up
  -h, --help  this text
  -V, --version  the version

Exit codes: 0 every step happened; 1 a step did not happen in time (named, with the
daemons' logs); 2 bad arguments or not root; 130 interrupted.
";

/// The monitor's identity.
const HM: &str = "5c3196a3-c41f-4b5c-9861-dee6077081c6";
const AGENTS: usize = 3;
const HB_PERIOD_MS: u64 = 200;
const MISS_AFTER_MS: u64 = 1000;
/// How long each step may take.
const DEADLINE: Duration = Duration::from_secs(10);

type Result<T> = std::result::Result<T, Failure>;

/// Why the demo stopped early.
enum Failure {
    /// A step did not happen; the message names it.
    Step(String),
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

fn vm_uuid_text(agent: usize) -> String {
    format!("61be20f0-09a8-4753-b5e5-564f8a545ed{agent}")
}

fn uuid(text: &str) -> Uuid {
    // The constants above are valid UUIDs; a typo there is a bug, caught by the test.
    Uuid::parse(text.as_bytes()).unwrap_or_else(|e| panic!("bad UUID {text}: {e:?}"))
}

fn epoch_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The lab, what runs in it, and where the demo's clock started.
struct Demo {
    lab: Lab,
    hsdb_path: PathBuf,
    hmd_config: PathBuf,
    db: Option<Hsdb>,
    hm: Uuid,
    vms: Vec<Uuid>,
    started_ms: i64,
    stop: Arc<AtomicBool>,
}

fn main() -> ExitCode {
    let mut keep = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "-V" | "--version" => {
                println!("hvha-demo {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "--keep" => keep = true,
            other => {
                eprintln!("hvha-demo: unknown argument {other:?}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(why) = hvha_e2e::cannot_run() {
        eprintln!(
            "hvha-demo: cannot run here: {why}\n\
             The demo creates network namespaces, veth pairs and raw sockets: run it as root \
             (e.g. `sudo scripts/demo`)."
        );
        return ExitCode::from(2);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            eprintln!("hvha-demo: cannot install the Ctrl-C handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    let Some(lab) = Lab::new("demo") else {
        return ExitCode::from(2);
    };
    let mut demo = Demo {
        hsdb_path: lab.dir.join("hsdb.sqlite"),
        hmd_config: lab.dir.join("hmd.toml"),
        lab,
        db: None,
        hm: uuid(HM),
        vms: (1..=AGENTS).map(|i| uuid(&vm_uuid_text(i))).collect(),
        started_ms: epoch_ms(),
        stop,
    };
    let outcome = demo.run(keep);
    let code = match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Interrupted) => {
            eprintln!("\nhvha-demo: interrupted");
            ExitCode::from(130)
        }
        Err(Failure::Step(what)) => {
            eprintln!("\nhvha-demo: FAILED: {what}");
            for label in ["hmd", "vmmd1", "vmmd2", "vmmd3"] {
                eprintln!("--- last lines of {label}'s log");
                let log = demo.lab.log(label);
                let lines: Vec<&str> = log.lines().collect();
                for line in &lines[lines.len().saturating_sub(15)..] {
                    eprintln!("{line}");
                }
            }
            ExitCode::FAILURE
        }
    };
    println!(
        "\n== cleanup: stopping the daemons, deleting the namespaces and {}",
        demo.lab.dir.display()
    );
    // Lab's Drop kills what still runs and deletes the namespaces and the directory.
    drop(demo);
    println!("done.");
    code
}

impl Demo {
    fn run(&mut self, keep: bool) -> Result<()> {
        let t0 = Instant::now();
        self.start();

        heading("(a) start: hmd and 3 vmmd; waiting until every VM is DETECTED");
        let spawned = Instant::now();
        for agent in 1..=AGENTS {
            self.wait_state(agent, HeartbeatState::Detected)?;
            println!(
                "result: vmmd{agent} DETECTED {} after the daemons started",
                secs(spawned.elapsed())
            );
        }
        self.print_rows()?;

        heading("(b) kill -STOP agent 2 (vmmd2 hangs): waiting until its row is MISSING");
        self.lab.signal("vmmd2", "STOP");
        let stopped_ms = epoch_ms();
        let took = self.wait_state(2, HeartbeatState::Missing)?;
        println!(
            "result: vmmd2 MISSING {} after kill -STOP (seen in the HSDB)",
            secs(took)
        );
        if let Some(row) = self.vm_hm(2)? {
            println!(
                "        hmd wrote MISSING {} ms after the STOP (vm_miss_after_ms = \
                 {MISS_AFTER_MS}, counted from the last heartbeat heard; hb_period_ms = \
                 {HB_PERIOD_MS}); vm_hm.hb_missed_ms = {}",
                row.updated_ms - stopped_ms,
                row.hb_missed_ms.map_or("-".into(), |ms| self.when(ms))
            );
        }
        self.print_rows()?;

        heading("(c) kill -CONT agent 2 (vmmd2 resumes): waiting until it is DETECTED again");
        self.lab.signal("vmmd2", "CONT");
        let took = self.wait_state(2, HeartbeatState::Detected)?;
        println!("result: vmmd2 DETECTED {} after kill -CONT", secs(took));
        self.print_rows()?;

        heading("(d) SIGTERM agent 3 (vmmd3 stops, sends SHDN:DAEMON): waiting until SUSPENDED");
        self.lab.signal("vmmd3", "TERM");
        match self.lab.wait_exit("vmmd3", Duration::from_secs(5)) {
            Some(0) => println!("vmmd3 exited with status 0"),
            Some(code) => {
                return Err(step(format!(
                    "vmmd3 exited with status {code} on SIGTERM, not 0"
                )));
            }
            None => return Err(step("vmmd3 did not exit within 5 s of SIGTERM")),
        }
        let took = self.wait_state(3, HeartbeatState::Suspended)?;
        println!("result: vmmd3 SUSPENDED {} after it exited", secs(took));
        // A stopped agent is silent on purpose: it must stay SUSPENDED, never MISSING.
        let quiet = Duration::from_millis(MISS_AFTER_MS + 2 * HB_PERIOD_MS);
        self.sleep(quiet)?;
        let state = self.vm_hm(3)?.map(|r| r.last_state);
        if state != Some(HeartbeatState::Suspended) {
            return Err(step(format!(
                "vmmd3 went from SUSPENDED to {state:?} within {} of silence",
                secs(quiet)
            )));
        }
        println!(
            "still SUSPENDED after {} of silence (a stopped agent is never MISSING)",
            secs(quiet)
        );
        self.print_rows()?;

        heading("(e) finish: `hmd ctl status` and the HSDB's queues");
        self.print_status()?;
        self.print_queues()?;
        if keep {
            self.keep()?;
        }
        self.lab.signal("hmd", "TERM");
        match self.lab.wait_exit("hmd", Duration::from_secs(5)) {
            Some(0) => {}
            Some(code) => {
                return Err(step(format!(
                    "hmd exited with status {code} on SIGTERM, not 0"
                )));
            }
            None => return Err(step("hmd did not exit within 5 s of SIGTERM")),
        }
        self.db = None;
        let db = Hsdb::open(&self.hsdb_path, &Options::default())
            .map_err(|e| step(format!("cannot reopen the HSDB after hmd stopped: {e}")))?;
        db.integrity_check()
            .map_err(|e| step(format!("HSDB integrity check failed: {e}")))?;
        println!("\nhmd stopped cleanly (exit 0); HSDB integrity check: ok");
        println!("total: {}", secs(t0.elapsed()));
        Ok(())
    }

    /// Namespaces, links, configurations, processes.
    fn start(&mut self) {
        let hm_ns = self.lab.netns("hm");
        println!("lab: {}", self.lab.dir.display());
        println!(
            "  namespace {hm_ns}: hmd, HSDB {}",
            self.hsdb_path.display()
        );
        let mut interfaces = Vec::new();
        for agent in 1..=AGENTS {
            let ns = self.lab.netns(&format!("a{agent}"));
            let peer = format!("vm{agent}");
            self.lab.link(&ns, "ha1", &hm_ns, &peer);
            interfaces.push(format!("{peer:?}"));
            println!(
                "  namespace {ns}: vmmd{agent}, VM {}, ha1 <-veth-> {peer} in {hm_ns}",
                self.vms[agent - 1]
            );
        }
        self.lab.write(
            "hmd.toml",
            &format!(
                r#"monitor_uuid = "{HM}"
host_id = 1
host_name = "demo-host"
hsdb = "{}"
admin_socket = "{}"
interfaces = [{}]
hello_period_ms = 500
hb_period_ms = {HB_PERIOD_MS}
vm_miss_after_ms = {MISS_AFTER_MS}
hm_heartbeat_period_ms = 1000
flush_ms = 10
log = "info"
"#,
                self.hsdb_path.display(),
                self.lab.dir.join("hmd.sock").display(),
                interfaces.join(", ")
            ),
        );
        let config = self.hmd_config.display().to_string();
        self.lab.spawn("hmd", &hm_ns, "hmd", &["--config", &config]);
        for agent in 1..=AGENTS {
            let config = self.lab.write(
                &format!("vmmd{agent}.toml"),
                &format!(
                    "vm_uuid = \"{}\"\ninterfaces = [\"ha1\"]\nlog = \"info\"\n{}",
                    vm_uuid_text(agent),
                    hvha_e2e::vmmd_ame_section(&self.lab.dir, &format!("vmmd{agent}"))
                ),
            );
            let config = config.display().to_string();
            let ns = hm_ns.replace("-hm", &format!("-a{agent}"));
            self.lab
                .spawn(&format!("vmmd{agent}"), &ns, "vmmd", &["--config", &config]);
        }
        println!(
            "  hb_period_ms = {HB_PERIOD_MS}, vm_miss_after_ms = {MISS_AFTER_MS}, \
             hello_period_ms = 500, flush_ms = 10"
        );
    }

    /// The HSDB, once `hmd` has created it and registered itself.
    fn db(&mut self) -> Option<&Hsdb> {
        if self.db.is_none() && self.hsdb_path.exists() {
            let db = Hsdb::open(&self.hsdb_path, &Options::default()).ok()?;
            if db.hm(&self.hm).ok()?.is_some() {
                self.db = Some(db);
            }
        }
        self.db.as_ref()
    }

    /// What `hmd` last wrote about agent `agent`'s VM.
    fn vm_hm(&mut self, agent: usize) -> Result<Option<VmHmRow>> {
        let (vm, hm) = (self.vms[agent - 1], self.hm);
        let Some(db) = self.db() else {
            return Ok(None);
        };
        db.vm_hm(&vm, &hm)
            .map_err(|e| step(format!("cannot read the HSDB: {e}")))
    }

    /// Poll the HSDB until agent `agent`'s row is `want`; how long it took.
    fn wait_state(&mut self, agent: usize, want: HeartbeatState) -> Result<Duration> {
        let started = Instant::now();
        loop {
            if self.vm_hm(agent)?.is_some_and(|row| row.last_state == want) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > DEADLINE {
                let now = self
                    .vm_hm(agent)?
                    .map_or("no row".into(), |r| r.last_state.to_string());
                return Err(step(format!(
                    "vmmd{agent}'s VM {} was not {want} in the HSDB within {} (it is: {now})",
                    self.vms[agent - 1],
                    secs(DEADLINE)
                )));
            }
            self.sleep(Duration::from_millis(20))?;
        }
    }

    /// Sleep, unless Ctrl-C.
    fn sleep(&self, time: Duration) -> Result<()> {
        let until = Instant::now() + time;
        while Instant::now() < until {
            if self.stop.load(Ordering::Relaxed) {
                return Err(Failure::Interrupted);
            }
            std::thread::sleep(Duration::from_millis(10).min(until - Instant::now()));
        }
        Ok(())
    }

    /// Time `ms` (epoch milliseconds) as wall clock and relative to the demo's start.
    fn when(&self, ms: i64) -> String {
        let day = ms.rem_euclid(86_400_000);
        format!(
            "{:02}:{:02}:{:02}.{:03} UTC (+{:.3} s)",
            day / 3_600_000,
            day / 60_000 % 60,
            day / 1000 % 60,
            day % 1000,
            // Milliseconds of a demo run: far inside f64's exact range.
            (ms - self.started_ms) as f64 / 1000.0
        )
    }

    /// Every VM row with what the monitor last wrote about it.
    fn print_rows(&mut self) -> Result<()> {
        let hm = self.hm;
        let vms: Vec<(VmRow, Option<VmHmRow>)> = {
            let Some(db) = self.db() else {
                println!("  (the HSDB is not there yet)");
                return Ok(());
            };
            let read = |e: hsdb::Error| step(format!("cannot read the HSDB: {e}"));
            let mut out = Vec::new();
            for vm in db.vms().map_err(read)? {
                let row = db.vm_hm(&vm.uuid, &hm).map_err(read)?;
                out.push((vm, row));
            }
            out
        };
        println!(
            "\n  HSDB {}: vm JOIN vm_hm (monitor {HM})",
            self.hsdb_path.display()
        );
        println!(
            "  {:<6} {:<36}  {:<17}  {:<10}  {:<9}  last transition (vm_hm.updated_ms)",
            "agent", "vm.uuid", "vm_hm.mac", "last_state", "vm.state"
        );
        for (vm, row) in &vms {
            let agent = self
                .vms
                .iter()
                .position(|u| *u == vm.uuid)
                .map_or("?".into(), |i| format!("vmmd{}", i + 1));
            let (mac, state, at) = match row {
                Some(r) => (
                    r.mac.map_or("-".into(), |m| m.to_string()),
                    r.last_state.to_string(),
                    self.when(r.updated_ms),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            println!(
                "  {agent:<6} {:<36}  {mac:<17}  {state:<10}  {:<9}  {at}",
                vm.uuid.to_string(),
                vm.state.to_string()
            );
        }
        Ok(())
    }

    /// `hmd ctl status`.
    fn print_status(&self) -> Result<()> {
        let config = self.hmd_config.display().to_string();
        println!("$ hmd ctl --config {config} status");
        let out = Command::new(hvha_e2e::binary("hmd"))
            .args(["ctl", "--config", &config, "status"])
            .output()
            .map_err(|e| step(format!("cannot run hmd ctl: {e}")))?;
        if !out.status.success() {
            return Err(step(format!(
                "hmd ctl status failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            println!("  {line}");
        }
        Ok(())
    }

    /// The last items of the `pending` queue (what the control plane will consume) and of
    /// the `event` outbox.
    fn print_queues(&mut self) -> Result<()> {
        let Some(db) = self.db() else {
            return Err(step("the HSDB disappeared"));
        };
        let read = |e: hsdb::Error| step(format!("cannot read the HSDB: {e}"));
        let pending = db.pending().map_err(read)?;
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let page = db.events_after(after, 100).map_err(read)?;
            let Some(last) = page.last() else { break };
            after = last.id;
            events.extend(page);
        }
        const LAST: usize = 10;
        println!(
            "\n  HSDB `pending` (VM state changes for the control plane): last {} of {}",
            pending.len().min(LAST),
            pending.len()
        );
        for p in &pending[pending.len().saturating_sub(LAST)..] {
            println!(
                "  #{:<3} {}  {:<12} vm {}  {}",
                p.id,
                self.when(p.created_ms),
                p.kind.to_string(),
                p.vm.map_or("-".into(), |u| u.to_string()),
                p.describe()
            );
        }
        println!(
            "\n  HSDB `event` outbox (events_after): last {} of {}",
            events.len().min(LAST),
            events.len()
        );
        if events.is_empty() {
            println!("  (none: hmd writes events only for refused SYNs, and none was refused)");
        }
        for e in &events[events.len().saturating_sub(LAST)..] {
            println!(
                "  #{:<3} {}  {}  vm {}  {}",
                e.id,
                self.when(e.created_ms),
                e.kind,
                e.vm.map_or("-".into(), |u| u.to_string()),
                e.text
            );
        }
        Ok(())
    }

    /// Leave the lab running until Ctrl-C.
    fn keep(&self) -> Result<()> {
        let config = self.hmd_config.display();
        println!("\n== --keep: the lab stays up until Ctrl-C. Try:");
        println!(
            "  {} ctl --config {config} vms",
            hvha_e2e::binary("hmd").display()
        );
        println!(
            "  sqlite3 {} 'SELECT * FROM vm_hm'",
            self.hsdb_path.display()
        );
        println!("  ip netns list; logs in {}", self.lab.dir.display());
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
        // hmd shares our terminal's process group: the Ctrl-C reached it too.
        Ok(())
    }
}

fn step(what: impl Into<String>) -> Failure {
    Failure::Step(what.into())
}

fn heading(text: &str) {
    println!("\n== {text}");
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}
