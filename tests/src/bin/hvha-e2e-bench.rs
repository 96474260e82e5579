//! `hvha-e2e-bench`: the end-to-end benchmark of `hmd` on a real link.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/hvha-e2e-bench [--seconds 5] [--reps 3] [--rates 20000,100000,400000,max]
//!                               [--agents 10000] [--big-agents 100000] [--silent 10000]
//!                               [--phases sweep,scale,auth] [--syn-rate 10000]
//!                               [--max-half-open N] [--pg-url postgres://USER@HOST:PORT/DB]
//! ```
//!
//! Root. Two network namespaces joined by a veth pair: `hvncp-loadgen` simulates the
//! agents in one, `hmd` (with its SQLite HSDB on the local disk) or the do-nothing
//! receiver `hvncp-sink` listens in the other. Everything is deleted at the end, also on
//! failure. Phases:
//!
//! 1. **Ingest sweep**, `--reps` times: `hmd` with `--agents` VMs paired; for each rate
//!    of `--rates`, the loadgen offers that rate, 1 s to settle, then `--seconds` measured:
//!    offered rate (loadgen), ingest rate (`hmd`'s `heartbeats_in`), kernel drops of
//!    `hmd`'s socket, `hmd`'s CPU (every thread, from `/proc/<pid>/task/*/schedstat`)
//!    and RSS. Then `hmd` stops and `hvncp-sink` takes its place for the same rates with
//!    the same loadgen: its receive rate is the ceiling. Medians over the repetitions.
//! 2. **Scale**: a fresh `hmd` (`max_half_open` from `--max-half-open`, else its
//!    default) and `--big-agents` VMs, paired at `--syn-rate` handshakes a second
//!    (10,000 by default; 1,000,000 is every agent answering the first Hello at once,
//!    as after a monitor restart): the pairing time, `hmd`'s and the loadgen's pairing
//!    counters (docs/hvncp.md §6.5) and the load average; then the VMs heartbeat at
//!    20,000/s in total: CPU and RSS of `hmd`.
//! 3. **Mass miss**: `--silent` of those VMs go silent at once (the loadgen sends each a
//!    last heartbeat in one burst, then nothing); the HSDB is polled every 5 ms until it
//!    holds that many MISSING rows for the monitor. Latency = when the last of them was
//!    seen committed − (the latest last-heartbeat send time + `vm_miss_after`): an upper
//!    bound of the latency after each VM's own miss deadline, since a deadline counts
//!    from the heartbeat's arrival, which is after its sending. Then checks that no
//!    other VM was declared MISSING, and counts the lines `hmd` logged from the silence
//!    until 2 s after the last commit: more than 10 fails the benchmark.
//! 4. **Authentication** (docs/hvncp.md §7), `--reps` times: `hmd` with `--agents` VMs
//!    at 20,000 heartbeats/s, once with `auth = "off"` and once with `auth = "require"`
//!    (the loadgen sealing every frame with `--auth-key`), in alternating order; `hmd`'s
//!    CPU over `--seconds` for each, medians and their ratio.
//! 5. **Backends** (`--phases backends --pg-url …`), `--reps` times in alternating
//!    order: phases 2 and 3 (`--big-agents` VMs at 20,000 heartbeats/s, then `--silent`
//!    of them silent at once) with `hmd` on an SQLite file and on a fresh database of the
//!    PostgreSQL server: `hmd`'s CPU and the mass miss's commit latency side by side,
//!    medians and their ratio.
//!
//! Output: one line per measurement, then the Markdown tables `docs/perf.md` quotes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant, SystemTime};

use dataplane::message::Uuid;
use hsdb::{Hsdb, Options};
use hvha_e2e::Lab;

const HM_UUID: &str = "5c3196a3-c41f-4b5c-9861-dee6077081c6";

struct Args {
    seconds: f64,
    reps: usize,
    rates: Vec<Option<u64>>,
    agents: u32,
    big_agents: u32,
    silent: u32,
    miss_after_ms: u64,
    phases: Vec<String>,
    /// Handshakes the loadgen starts per second.
    syn_rate: u64,
    /// `max_half_open` of the scale phase's `hmd` (its default when `None`).
    max_half_open: Option<u64>,
    /// A PostgreSQL server for the `backends` phase (`postgres://user@host:port/db`; a
    /// fresh database is created on it for every run).
    pg_url: Option<String>,
}

fn usage() -> &'static str {
    "usage: hvha-e2e-bench [--seconds S] [--reps N] [--rates 20000,100000,max] \
     [--agents N] [--big-agents N] [--silent N] [--miss-after-ms MS] \
     [--phases sweep,scale,auth,backends] [--syn-rate N] [--max-half-open N] \
     [--pg-url postgres://USER@HOST:PORT/DB] | --version"
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        seconds: 5.0,
        reps: 3,
        rates: vec![Some(20_000), Some(100_000), Some(400_000), None],
        agents: 10_000,
        big_agents: 100_000,
        silent: 10_000,
        miss_after_ms: 10_000,
        phases: vec!["sweep".into(), "scale".into(), "auth".into()],
        syn_rate: 10_000,
        max_half_open: None,
        pg_url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{}", usage());
            std::process::exit(0);
        }
        if flag == "--version" || flag == "-V" {
            println!("hvha-e2e-bench {}", env!("CARGO_PKG_VERSION"));
            std::process::exit(0);
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag}: needs a value\n{}", usage()))?;
        let num = |lo: u64, hi: u64| -> Result<u64, String> {
            value
                .parse::<u64>()
                .ok()
                .filter(|v| (lo..=hi).contains(v))
                .ok_or_else(|| format!("{flag} {value:?}: expected {lo}..={hi}"))
        };
        match flag.as_str() {
            "--seconds" => {
                a.seconds = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| (0.5..=600.0).contains(s))
                    .ok_or_else(|| format!("--seconds {value:?}: expected 0.5..=600"))?;
            }
            "--reps" => a.reps = usize::try_from(num(1, 20)?).unwrap_or(1),
            "--agents" => a.agents = u32::try_from(num(1, 1_000_000)?).unwrap_or(1),
            "--big-agents" => a.big_agents = u32::try_from(num(0, 1_000_000)?).unwrap_or(0),
            "--silent" => a.silent = u32::try_from(num(0, 1_000_000)?).unwrap_or(0),
            "--miss-after-ms" => a.miss_after_ms = num(1000, 600_000)?,
            "--syn-rate" => a.syn_rate = num(1, 1_000_000)?,
            "--max-half-open" => a.max_half_open = Some(num(1, 16_777_216)?),
            "--pg-url" => {
                let target = hsdb::Target::parse(&value).map_err(|e| format!("--pg-url: {e}"))?;
                if !target.is_postgres() {
                    return Err(format!("--pg-url {value:?}: not a postgres:// URL"));
                }
                a.pg_url = Some(value);
            }
            "--rates" => {
                a.rates = value
                    .split(',')
                    .map(|r| {
                        if r == "max" {
                            Ok(None)
                        } else {
                            r.parse::<u64>()
                                .ok()
                                .filter(|v| (1..=10_000_000).contains(v))
                                .map(Some)
                                .ok_or_else(|| format!("--rates: {r:?} is not 1..=10000000 or max"))
                        }
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--phases" => {
                a.phases = value.split(',').map(str::to_owned).collect();
                if let Some(p) = a
                    .phases
                    .iter()
                    .find(|p| !["sweep", "scale", "auth", "backends"].contains(&p.as_str()))
                {
                    return Err(format!(
                        "--phases: {p:?} is not sweep, scale, auth or backends"
                    ));
                }
            }
            _ => return Err(format!("unknown option {flag}\n{}", usage())),
        }
    }
    if a.phases.iter().any(|p| p == "backends") && a.pg_url.is_none() {
        return Err("--phases backends needs --pg-url".to_owned());
    }
    if a.silent > a.big_agents {
        return Err(format!(
            "--silent {} is more than --big-agents {}",
            a.silent, a.big_agents
        ));
    }
    Ok(a)
}

/// A child started with `ip netns exec` (which execs: the pid is the program's), its
/// stdout lines on a channel, stderr in a log file. Killed on drop.
struct Proc {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Proc {
    fn spawn(
        dir: &Path,
        label: &str,
        ns: &str,
        bin: &Path,
        args: &[String],
    ) -> Result<Proc, String> {
        let log = std::fs::File::create(dir.join(format!("{label}.log")))
            .map_err(|e| format!("{label}.log: {e}"))?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Proc {
            label: label.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{line}").map_err(|e| format!("{}: {line}: {e}", self.label))
    }

    /// The next stdout line starting with `prefix` (others are skipped).
    fn wait_line(&mut self, prefix: &str, within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "{}: no {prefix:?} line within {within:?}",
                        self.label
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("{}: exited before printing {prefix:?}", self.label));
                }
            }
        }
    }

    /// The last stdout line starting with `prefix` printed so far, waiting for one.
    fn latest_line(&mut self, prefix: &str, within: Duration) -> Result<String, String> {
        let mut last = None;
        while let Ok(line) = self.lines.try_recv() {
            if line.starts_with(prefix) {
                last = Some(line);
            }
        }
        match last {
            Some(l) => Ok(l),
            None => self.wait_line(prefix, within),
        }
    }

    /// SIGTERM, then wait (SIGKILL after `within`).
    fn stop(mut self, within: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .output();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `key=value` pairs of a line.
fn fields(line: &str) -> HashMap<&str, f64> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| v.parse::<f64>().ok().map(|v| (k, v)))
        .collect()
}

fn field(line: &str, key: &str) -> Result<f64, String> {
    fields(line)
        .get(key)
        .copied()
        .ok_or_else(|| format!("no {key} in {line:?}"))
}

/// CPU time of every thread of `pid`, and of its main thread (`hmd`'s dataplane
/// thread), from the scheduler (ns resolution).
fn cpu_time(pid: u32) -> (Duration, Duration) {
    let read = |path: PathBuf| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut total = 0u64;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            total += read(task.path().join("schedstat"));
        }
    }
    let main = read(PathBuf::from(format!("/proc/{pid}/task/{pid}/schedstat")));
    (Duration::from_nanos(total), Duration::from_nanos(main))
}

/// (VmRSS, VmHWM) of `pid` in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Bench {
    lab: Lab,
    gen_ns: String,
    mon_ns: String,
    bins: PathBuf,
    miss_after_ms: u64,
    syn_rate: u64,
    runs: u32,
}

/// `hmd` counters read through its admin socket.
#[derive(Debug, Clone, Copy)]
struct HmdSnapshot {
    at: Instant,
    heartbeats_in: f64,
    kernel_packets: f64,
    kernel_drops: f64,
    cpu: Duration,
    cpu_dataplane: Duration,
}

impl Bench {
    /// A fresh HSDB for run `name`: an SQLite file in the lab, or a new database on the
    /// PostgreSQL server `pg_url`. Returns the `hsdb` setting.
    fn fresh_hsdb(&self, name: &str, pg_url: Option<&str>) -> Result<String, String> {
        match pg_url {
            None => {
                let hsdb = self.lab.dir.join(format!("{name}.sqlite"));
                let _ = std::fs::remove_file(&hsdb);
                Ok(hsdb.display().to_string())
            }
            Some(url) => {
                let db = format!(
                    "hvha_bench_{}_{}_{}",
                    std::process::id(),
                    name.replace('-', "_"),
                    self.runs
                );
                let mut client = postgres::Client::connect(url, postgres::NoTls)
                    .map_err(|e| format!("PostgreSQL at {url}: {e}"))?;
                client
                    .batch_execute(&format!("CREATE DATABASE {db} TEMPLATE template0"))
                    .map_err(|e| format!("CREATE DATABASE {db}: {e}"))?;
                let mut config: postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
                config.dbname(&db);
                let (user, host, port) = (
                    config.get_user().unwrap_or("postgres").to_owned(),
                    match config.get_hosts().first() {
                        Some(postgres::config::Host::Tcp(h)) => h.clone(),
                        _ => "127.0.0.1".to_owned(),
                    },
                    config.get_ports().first().copied().unwrap_or(5432),
                );
                // hmd runs in a network namespace: through the server's Unix socket.
                hvha_e2e::group::unix_socket_url(&format!("postgres://{user}@{host}:{port}/{db}"))
            }
        }
    }

    fn hmd_config(&self, name: &str, extra: &str) -> PathBuf {
        let hsdb = self.lab.dir.join(format!("{name}.sqlite"));
        let _ = std::fs::remove_file(&hsdb);
        self.hmd_config_on(name, &hsdb.display().to_string(), extra)
    }

    fn hmd_config_on(&self, name: &str, hsdb: &str, extra: &str) -> PathBuf {
        self.lab.write(
            &format!("{name}.toml"),
            &format!(
                r#"monitor_uuid = "{HM_UUID}"
host_id = 1
host_name = "bench-host"
hsdb = "{}"
admin_socket = "{}"
interfaces = ["m0"]
hello_period_ms = 1000
hb_period_ms = 1000
vm_miss_after_ms = {}
hm_heartbeat_period_ms = 1000
flush_ms = 10
log = "info"
{extra}"#,
                hsdb,
                self.lab.dir.join(format!("{name}.sock")).display(),
                self.miss_after_ms,
            ),
        )
    }

    fn start_hmd(&mut self, name: &str) -> Result<(Proc, PathBuf), String> {
        self.start_hmd_with(name, "")
    }

    /// `hmd` with `extra` configuration lines.
    fn start_hmd_with(&mut self, name: &str, extra: &str) -> Result<(Proc, PathBuf), String> {
        let config = self.hmd_config(name, extra);
        self.start_hmd_config(name, &config)
    }

    /// `hmd` with the configuration file `config`.
    fn start_hmd_config(&mut self, name: &str, config: &Path) -> Result<(Proc, PathBuf), String> {
        self.runs += 1;
        let hmd = Proc::spawn(
            &self.lab.dir,
            &format!("{name}-{}", self.runs),
            &self.mon_ns,
            &self.bins.join("hmd"),
            &["--config".into(), config.display().to_string()],
        )?;
        let socket = self.lab.dir.join(format!("{name}.sock"));
        let started = Instant::now();
        while !socket.exists() {
            if started.elapsed() > Duration::from_secs(10) {
                return Err(format!("hmd did not open {}", socket.display()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok((hmd, socket))
    }

    fn hmd_stats(&self, socket: &Path, pid: u32) -> Result<HmdSnapshot, String> {
        let stats = hvha_e2e::hmd_stats(socket)?;
        let get = |name: &str| stats.get(name).copied().unwrap_or(0) as f64;
        let (cpu, cpu_dataplane) = cpu_time(pid);
        Ok(HmdSnapshot {
            at: Instant::now(),
            heartbeats_in: get("heartbeats_in"),
            kernel_packets: get("kernel_packets"),
            kernel_drops: get("kernel_drops"),
            cpu,
            cpu_dataplane,
        })
    }

    fn start_loadgen(&mut self, agents: u32, first_mac: &str, rate: &str) -> Result<Proc, String> {
        self.start_loadgen_with(agents, first_mac, rate, &[])
    }

    /// The loadgen with `extra` arguments.
    fn start_loadgen_with(
        &mut self,
        agents: u32,
        first_mac: &str,
        rate: &str,
        extra: &[String],
    ) -> Result<Proc, String> {
        self.runs += 1;
        Proc::spawn(
            &self.lab.dir,
            &format!("loadgen-{}", self.runs),
            &self.gen_ns,
            &self.bins.join("hvncp-loadgen"),
            &[
                "--interface".into(),
                "g0".into(),
                "--agents".into(),
                agents.to_string(),
                "--first-mac".into(),
                first_mac.into(),
                "--rate".into(),
                rate.into(),
                "--syn-rate".into(),
                self.syn_rate.to_string(),
                "--report-ms".into(),
                "0".into(),
            ]
            .into_iter()
            .chain(extra.iter().cloned())
            .collect::<Vec<_>>(),
        )
    }
}

/// `hmd`'s CPU at 20,000 heartbeats/s, authentication off and on.
#[derive(Debug, Default)]
struct AuthCost {
    /// Per mode (off, on): CPU % of every thread, of the dataplane thread, ingest rate.
    cpu_pct: [Vec<f64>; 2],
    cpu_dataplane_pct: [Vec<f64>; 2],
    ingest: [Vec<f64>; 2],
}

fn auth_cost(b: &mut Bench, args: &Args, rep: usize, cost: &mut AuthCost) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    let key = b.lab.write("auth.key", &format!("1 {}\n", "5a".repeat(32)));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    let modes = if rep.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    };
    for on in modes {
        let (extra, loadgen_args) = if on == 1 {
            (
                format!("auth = \"require\"\nauth_key_file = {:?}\n", key.display()),
                vec!["--auth-key".to_owned(), key.display().to_string()],
            )
        } else {
            (String::new(), Vec::new())
        };
        let (hmd, socket) = b.start_hmd_with("auth", &extra)?;
        let mut loadgen =
            b.start_loadgen_with(args.agents, "02:4c:49:00:00:00", "1000", &loadgen_args)?;
        loadgen.wait_line("ready", Duration::from_secs(120))?;
        loadgen.send("rate 20000")?;
        std::thread::sleep(Duration::from_secs(1));
        let s0 = b.hmd_stats(&socket, hmd.pid())?;
        std::thread::sleep(Duration::from_secs_f64(args.seconds));
        let s1 = b.hmd_stats(&socket, hmd.pid())?;
        let stats = hvha_e2e::hmd_stats(&socket)?;
        let dt = s1.at.duration_since(s0.at).as_secs_f64();
        let cpu = 100.0 * s1.cpu.saturating_sub(s0.cpu).as_secs_f64() / dt;
        let cpu_dp = 100.0
            * s1.cpu_dataplane
                .saturating_sub(s0.cpu_dataplane)
                .as_secs_f64()
            / dt;
        let ingest = (s1.heartbeats_in - s0.heartbeats_in) / dt;
        let verified = stats.get("auth_verified").copied().unwrap_or(0);
        let refused: u64 = stats
            .iter()
            .filter(|(k, _)| k.starts_with("auth_drop_"))
            .map(|(_, v)| v)
            .sum();
        println!(
            "auth  {} ingest={ingest:>8.0}/s cpu={cpu:.2}% (dataplane thread {cpu_dp:.2}%) auth_verified={verified} auth_refused={refused}",
            if on == 1 { "on " } else { "off" }
        );
        if on == 1 && (verified == 0 || refused > 0) {
            return Err(format!(
                "auth on: {verified} frames verified, {refused} refused: the phase measures nothing"
            ));
        }
        cost.cpu_pct[on].push(cpu);
        cost.cpu_dataplane_pct[on].push(cpu_dp);
        cost.ingest[on].push(ingest);
        loadgen.send("quit")?;
        loadgen.stop(Duration::from_secs(5));
        hmd.stop(Duration::from_secs(20));
    }
    Ok(())
}

/// Offered heartbeats so far (loadgen `report` on demand).
fn offered(loadgen: &mut Proc) -> Result<(Instant, f64), String> {
    loadgen.send("report")?;
    let line = loadgen.wait_line("report ", Duration::from_secs(5))?;
    Ok((Instant::now(), field(&line, "offered")?))
}

fn rate_name(r: Option<u64>) -> String {
    r.map_or_else(|| "max".to_owned(), |r| r.to_string())
}

#[derive(Debug, Default, Clone)]
struct Point {
    offered: Vec<f64>,
    ingest: Vec<f64>,
    drops_pct: Vec<f64>,
    cpu_pct: Vec<f64>,
    cpu_dataplane_pct: Vec<f64>,
    rss_mib: Vec<f64>,
    sink_offered: Vec<f64>,
    sink_rate: Vec<f64>,
    sink_drops_pct: Vec<f64>,
    sink_cpu_pct: Vec<f64>,
}

fn ingest_sweep(b: &mut Bench, args: &Args, points: &mut [Point]) -> Result<(), String> {
    let settle = Duration::from_secs(1);
    let window = Duration::from_secs_f64(args.seconds);
    let (hmd, socket) = b.start_hmd("sweep")?;
    let mut loadgen = b.start_loadgen(args.agents, "02:4c:47:00:00:00", "1000")?;
    let ready = loadgen.wait_line("ready", Duration::from_secs(120))?;
    eprintln!("bench: {} agents paired with hmd: {ready}", args.agents);
    for (k, rate) in args.rates.iter().enumerate() {
        loadgen.send(&format!("rate {}", rate_name(*rate)))?;
        std::thread::sleep(settle);
        let (t0, o0) = offered(&mut loadgen)?;
        let s0 = b.hmd_stats(&socket, hmd.pid())?;
        std::thread::sleep(window);
        let (t1, o1) = offered(&mut loadgen)?;
        let s1 = b.hmd_stats(&socket, hmd.pid())?;
        let dt = s1.at.duration_since(s0.at).as_secs_f64();
        let p = &mut points[k];
        let offered_rate = (o1 - o0) / t1.duration_since(t0).as_secs_f64();
        let ingest = (s1.heartbeats_in - s0.heartbeats_in) / dt;
        let packets = (s1.kernel_packets - s0.kernel_packets).max(1.0);
        let drops = 100.0 * (s1.kernel_drops - s0.kernel_drops) / packets;
        let cpu = 100.0 * s1.cpu.saturating_sub(s0.cpu).as_secs_f64() / dt;
        let cpu_dp = 100.0
            * s1.cpu_dataplane
                .saturating_sub(s0.cpu_dataplane)
                .as_secs_f64()
            / dt;
        let rss = rss_kib(hmd.pid()).0 as f64 / 1024.0;
        println!(
            "hmd   rate={:>7} offered={offered_rate:>10.0}/s ingest={ingest:>10.0}/s drops={drops:.4}% cpu={cpu:.2}% (dataplane thread {cpu_dp:.2}%) rss={rss:.1}MiB",
            rate_name(*rate)
        );
        p.cpu_dataplane_pct.push(cpu_dp);
        p.offered.push(offered_rate);
        p.ingest.push(ingest);
        p.drops_pct.push(drops);
        p.cpu_pct.push(cpu);
        p.rss_mib.push(rss);
    }
    // The same loadgen, the same frames, the do-nothing receiver instead of hmd. The
    // agents keep their sessions (heartbeats are not acknowledged).
    loadgen.send("rate 1000")?;
    hmd.stop(Duration::from_secs(10));
    b.runs += 1;
    let mut sink = Proc::spawn(
        &b.lab.dir,
        &format!("sink-{}", b.runs),
        &b.mon_ns,
        &b.bins.join("hvncp-sink"),
        &[
            "--interface".into(),
            "m0".into(),
            "--report-ms".into(),
            "100".into(),
        ],
    )?;
    sink.wait_line("report", Duration::from_secs(5))?;
    for (k, rate) in args.rates.iter().enumerate() {
        loadgen.send(&format!("rate {}", rate_name(*rate)))?;
        std::thread::sleep(settle);
        let (t0, o0) = offered(&mut loadgen)?;
        let a = sink.latest_line("report", Duration::from_secs(2))?;
        std::thread::sleep(window);
        let (t1, o1) = offered(&mut loadgen)?;
        let z = sink.latest_line("report", Duration::from_secs(2))?;
        let dt = field(&z, "t_s")? - field(&a, "t_s")?;
        let offered_rate = (o1 - o0) / t1.duration_since(t0).as_secs_f64();
        let rate_in = (field(&z, "received")? - field(&a, "received")?) / dt;
        let packets = (field(&z, "kernel_packets")? - field(&a, "kernel_packets")?).max(1.0);
        let drops = 100.0 * (field(&z, "kernel_drops")? - field(&a, "kernel_drops")?) / packets;
        let cpu = 100.0 * (field(&z, "cpu_s")? - field(&a, "cpu_s")?) / dt;
        println!(
            "sink  rate={:>7} offered={offered_rate:>10.0}/s received={rate_in:>10.0}/s drops={drops:.4}% cpu={cpu:.2}%",
            rate_name(*rate)
        );
        let p = &mut points[k];
        p.sink_offered.push(offered_rate);
        p.sink_rate.push(rate_in);
        p.sink_drops_pct.push(drops);
        p.sink_cpu_pct.push(cpu);
    }
    sink.stop(Duration::from_secs(5));
    loadgen.send("quit")?;
    loadgen.stop(Duration::from_secs(5));
    Ok(())
}

struct Scale {
    vms: u32,
    pair_s: f64,
    /// hmd's and the loadgen's pairing counters, and the load average.
    pairing: String,
    offered: f64,
    ingest: f64,
    cpu_pct: f64,
    cpu_dataplane_pct: f64,
    rss_mib: f64,
    hwm_mib: f64,
    drops: f64,
    silent: u32,
    burst_ms: f64,
    detect_lat_ms: f64,
    commit_lat_ms: f64,
    commit_lat_first_ms: f64,
    false_missing: u64,
    /// Lines `hmd` logged (at its `info` level) from the silence until 2 s after the
    /// last MISSING row was committed.
    log_lines: usize,
}

/// Most `hmd` log lines allowed for the mass miss (issue 7, item 5).
const MAX_MISS_LOG_LINES: usize = 10;

/// Bytes in `path` (0 if absent).
fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Lines of `path` after byte `from`.
fn lines_after(path: &Path, from: u64) -> Vec<String> {
    let text = std::fs::read(path).unwrap_or_default();
    let from = usize::try_from(from).unwrap_or(usize::MAX);
    String::from_utf8_lossy(text.get(from..).unwrap_or_default())
        .lines()
        .map(str::to_owned)
        .collect()
}

fn scale_and_mass_miss(b: &mut Bench, args: &Args, pg_url: Option<&str>) -> Result<Scale, String> {
    let extra = args
        .max_half_open
        .map_or(String::new(), |n| format!("max_half_open = {n}\n"));
    let name = if pg_url.is_some() {
        "scale-pg"
    } else {
        "scale"
    };
    let hsdb_text = b.fresh_hsdb(name, pg_url)?;
    let config = b.hmd_config_on(name, &hsdb_text, &extra);
    let (hmd, socket) = b.start_hmd_config(name, &config)?;
    let target = hsdb::Target::parse(&hsdb_text).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut loadgen = b.start_loadgen(args.big_agents, "02:4c:48:00:00:00", "20000")?;
    let ready = loadgen.wait_line("ready", Duration::from_secs(300))?;
    let pair_s = started.elapsed().as_secs_f64();
    eprintln!(
        "bench: {} agents paired in {pair_s:.1} s: {ready}",
        args.big_agents
    );
    // How the pairing went on both sides (docs/hvncp.md §6.5), and how loaded the
    // machine was.
    loadgen.send("report")?;
    let report = loadgen.wait_line("report", Duration::from_secs(10))?;
    let stats = hvha_e2e::hmd_stats(&socket)?;
    let hmd_count = |name: &str| stats.get(name).copied().unwrap_or(0);
    let pairing = format!(
        "hmd peers_added={} drop_half_open_full={} peers_evicted={} sessions_reopened={} \
         handshakes_failed={}; loadgen connects={} sessions_closed={} start_hb_missing={}; \
         load average {}",
        hmd_count("peers_added"),
        hmd_count("drop_half_open_full"),
        hmd_count("peers_evicted"),
        hmd_count("sessions_reopened"),
        hmd_count("handshakes_failed"),
        field(&report, "connects")?,
        field(&report, "sessions_closed")?,
        field(&report, "start_hb_missing")?,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
    println!(
        "pairing vms={} pair_s={pair_s:.1} {pairing}",
        args.big_agents
    );
    // Measure steady state: every discovery committed, then a few heartbeat periods.
    let hm = Uuid::parse(HM_UUID.as_bytes()).map_err(|e| e.to_string())?;
    let db = Hsdb::connect_read_only(&target, &Options::default()).map_err(|e| e.to_string())?;
    let give_up = Instant::now() + Duration::from_secs(120);
    loop {
        let c = db.vm_hm_counts(&hm).map_err(|e| e.to_string())?;
        if c.detected == u64::from(args.big_agents) {
            break;
        }
        if Instant::now() > give_up {
            return Err(format!(
                "{} agents ready but the HSDB holds {c:?}",
                args.big_agents
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "bench: all {} VMs DETECTED in the HSDB {:.1} s after the start",
        args.big_agents,
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(3));
    let window = Duration::from_secs_f64(args.seconds.max(5.0));
    let (t0, o0) = offered(&mut loadgen)?;
    let s0 = b.hmd_stats(&socket, hmd.pid())?;
    std::thread::sleep(window);
    let (t1, o1) = offered(&mut loadgen)?;
    let s1 = b.hmd_stats(&socket, hmd.pid())?;
    let dt = s1.at.duration_since(s0.at).as_secs_f64();
    let (rss, hwm) = rss_kib(hmd.pid());
    let mut scale = Scale {
        vms: args.big_agents,
        pair_s,
        pairing,
        offered: (o1 - o0) / t1.duration_since(t0).as_secs_f64(),
        ingest: (s1.heartbeats_in - s0.heartbeats_in) / dt,
        cpu_pct: 100.0 * s1.cpu.saturating_sub(s0.cpu).as_secs_f64() / dt,
        cpu_dataplane_pct: 100.0
            * s1.cpu_dataplane
                .saturating_sub(s0.cpu_dataplane)
                .as_secs_f64()
            / dt,
        rss_mib: rss as f64 / 1024.0,
        hwm_mib: hwm as f64 / 1024.0,
        drops: s1.kernel_drops,
        silent: args.silent,
        burst_ms: f64::NAN,
        detect_lat_ms: f64::NAN,
        commit_lat_ms: f64::NAN,
        commit_lat_first_ms: f64::NAN,
        false_missing: 0,
        log_lines: 0,
    };
    println!(
        "scale vms={} offered={:.0}/s ingest={:.0}/s cpu={:.2}% (dataplane thread {:.2}%) rss={:.1}MiB hwm={:.1}MiB kernel_drops_total={}",
        scale.vms,
        scale.offered,
        scale.ingest,
        scale.cpu_pct,
        scale.cpu_dataplane_pct,
        scale.rss_mib,
        scale.hwm_mib,
        scale.drops
    );
    if args.silent > 0 {
        let before = db.vm_hm_counts(&hm).map_err(|e| e.to_string())?;
        if before.missing != 0 || before.detected != u64::from(args.big_agents) {
            return Err(format!(
                "before the silence the HSDB should hold {} DETECTED rows: {before:?}",
                args.big_agents
            ));
        }
        let hmd_log = b.lab.dir.join(format!("{}.log", hmd.label));
        let log_from = file_len(&hmd_log);
        loadgen.send(&format!("silence 0-{}", args.silent - 1))?;
        let line = loadgen.wait_line("silenced", Duration::from_secs(10))?;
        let first_hb = field(&line, "first_last_hb_unix_ms")?;
        let last_hb = field(&line, "last_last_hb_unix_ms")?;
        let miss_after = b.miss_after_ms as f64;
        let deadline_late = last_hb + miss_after;
        let deadline_early = first_hb + miss_after;
        let give_up = Instant::now() + Duration::from_millis(b.miss_after_ms + 30_000);
        let seen_ms = loop {
            let c = db.vm_hm_counts(&hm).map_err(|e| e.to_string())?;
            if c.missing >= u64::from(args.silent) {
                break unix_ms();
            }
            if Instant::now() > give_up {
                return Err(format!(
                    "only {} of {} MISSING rows committed {} s after the silence",
                    c.missing,
                    args.silent,
                    (b.miss_after_ms + 30_000) / 1000
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // The monitor's own time of the transitions (`updated_ms` of the rows).
        let mut latest_detect = 0i64;
        for i in 0..args.silent {
            let mac = 0x024c_4800_0000u64 + u64::from(i);
            let mut uuid = [
                0x4c, 0x47, 0x4c, 0x47, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0,
            ];
            uuid[10..].copy_from_slice(&mac.to_be_bytes()[2..]);
            let row = db
                .vm_hm(&Uuid(uuid), &hm)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no row for silenced agent {i}"))?;
            if row.last_state != hsdb::HeartbeatState::Missing {
                return Err(format!("silenced agent {i} is {:?}", row.last_state));
            }
            latest_detect = latest_detect.max(row.updated_ms);
        }
        // Two more seconds: nobody else may go MISSING.
        std::thread::sleep(Duration::from_secs(2));
        let after = db.vm_hm_counts(&hm).map_err(|e| e.to_string())?;
        scale.false_missing = after.missing.saturating_sub(u64::from(args.silent));
        // Two seconds after the last commit the burst (one quiet second) is summed up.
        let logged = lines_after(&hmd_log, log_from);
        scale.log_lines = logged.len();
        scale.burst_ms = last_hb - first_hb;
        scale.detect_lat_ms = latest_detect as f64 - deadline_late;
        scale.commit_lat_ms = seen_ms - deadline_late;
        scale.commit_lat_first_ms = seen_ms - deadline_early;
        println!(
            "miss  silent={} burst={:.0}ms all_missing_committed_after_deadline={:.0}ms (bound from the earliest last heartbeat: {:.0}ms) detection_after_deadline={:.0}ms false_missing={} hmd_log_lines={}",
            args.silent,
            scale.burst_ms,
            scale.commit_lat_ms,
            scale.commit_lat_first_ms,
            scale.detect_lat_ms,
            scale.false_missing,
            scale.log_lines
        );
        if scale.log_lines > MAX_MISS_LOG_LINES {
            return Err(format!(
                "hmd logged {} lines for {} misses (at most {MAX_MISS_LOG_LINES} allowed):\n{}",
                scale.log_lines,
                args.silent,
                logged.join("\n")
            ));
        }
        if pg_url.is_none() {
            db.integrity_check().map_err(|e| e.to_string())?;
        }
    }
    loadgen.send("quit")?;
    loadgen.stop(Duration::from_secs(5));
    hmd.stop(Duration::from_secs(20));
    Ok(scale)
}

fn run(args: &Args) -> Result<(), String> {
    let bins = hvha_e2e::binary("hmd")
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for bin in ["hmd", "hvncp-loadgen", "hvncp-sink"] {
        if !bins.join(bin).exists() {
            return Err(format!(
                "{} not built: cargo build --release --workspace --bins",
                bins.join(bin).display()
            ));
        }
    }
    let mut lab = Lab::new("bench").ok_or("cannot run here (see above)")?;
    let gen_ns = lab.netns("gen");
    let mon_ns = lab.netns("mon");
    lab.link(&gen_ns, "g0", &mon_ns, "m0");
    let mut b = Bench {
        lab,
        gen_ns,
        mon_ns,
        bins,
        miss_after_ms: args.miss_after_ms,
        syn_rate: args.syn_rate,
        runs: 0,
    };
    let started = Instant::now();
    let mut points = vec![Point::default(); args.rates.len()];
    let phase = |name: &str| args.phases.iter().any(|p| p == name);
    if phase("sweep") {
        for rep in 1..=args.reps {
            eprintln!("bench: ingest sweep, repetition {rep} of {}", args.reps);
            ingest_sweep(&mut b, args, &mut points)?;
        }
    }
    let mut auth = AuthCost::default();
    if phase("auth") {
        for rep in 1..=args.reps {
            eprintln!(
                "bench: authentication off/on, repetition {rep} of {}",
                args.reps
            );
            auth_cost(&mut b, args, rep, &mut auth)?;
        }
    }
    let scale = if args.big_agents > 0 && phase("scale") {
        Some(scale_and_mass_miss(&mut b, args, None)?)
    } else {
        None
    };
    // The same scale and mass-miss run on SQLite and on PostgreSQL, alternating.
    let mut backends: [Vec<Scale>; 2] = [Vec::new(), Vec::new()];
    if phase("backends") {
        for rep in 1..=args.reps {
            for k in 0..2 {
                // SQLite first in odd repetitions, PostgreSQL first in even ones.
                let i = if rep % 2 == 0 { 1 - k } else { k };
                eprintln!(
                    "bench: backends, repetition {rep} of {}: {}",
                    args.reps,
                    ["SQLite", "PostgreSQL"][i]
                );
                let on = if i == 0 { None } else { args.pg_url.as_deref() };
                backends[i].push(scale_and_mass_miss(&mut b, args, on)?);
            }
        }
    }
    if phase("sweep") {
        println!();
        println!(
            "Ingest sweep: {} VMs, {} s windows, medians of {} repetitions",
            args.agents, args.seconds, args.reps
        );
        println!();
        println!(
            "| offered rate | hmd: offered | hmd: ingest | hmd: kernel drops | hmd: CPU (all threads) | hmd: dataplane thread | hmd: RSS | sink: offered | sink: received | sink: drops | sink: CPU | hmd / sink |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (rate, p) in args.rates.iter().zip(&mut points) {
            let ingest = median(&mut p.ingest);
            let sink = median(&mut p.sink_rate);
            println!(
                "| {} | {:.0}/s | {ingest:.0}/s | {:.3} % | {:.2} % | {:.2} % | {:.1} MiB | {:.0}/s | {sink:.0}/s | {:.3} % | {:.2} % | {:.1} % |",
                rate_name(*rate),
                median(&mut p.offered),
                median(&mut p.drops_pct),
                median(&mut p.cpu_pct),
                median(&mut p.cpu_dataplane_pct),
                median(&mut p.rss_mib),
                median(&mut p.sink_offered),
                median(&mut p.sink_drops_pct),
                median(&mut p.sink_cpu_pct),
                100.0 * ingest / sink
            );
        }
    }
    if phase("auth") {
        let [off, on] = &mut auth.cpu_pct;
        let (off, on) = (median(off), median(on));
        let [dp_off, dp_on] = &mut auth.cpu_dataplane_pct;
        let (dp_off, dp_on) = (median(dp_off), median(dp_on));
        let [in_off, in_on] = &mut auth.ingest;
        println!();
        println!(
            "Authentication: {} VMs at 20000 heartbeats/s, {} s windows, medians of {} repetitions",
            args.agents, args.seconds, args.reps
        );
        println!();
        println!("| auth | ingest | hmd CPU (all threads) | dataplane thread |");
        println!("|---|---|---|---|");
        println!(
            "| off | {:.0}/s | {off:.2} % | {dp_off:.2} % |",
            median(in_off)
        );
        println!(
            "| require | {:.0}/s | {on:.2} % | {dp_on:.2} % |",
            median(in_on)
        );
        println!("| on / off | | {:.2} | {:.2} |", on / off, dp_on / dp_off);
    }
    if let Some(s) = scale {
        println!();
        println!(
            "Pairing: {} VMs in {:.1} s, the loadgen starting {} handshakes/s{}: {}",
            s.vms,
            s.pair_s,
            args.syn_rate,
            args.max_half_open
                .map_or(String::new(), |n| format!(", hmd's max_half_open {n}")),
            s.pairing
        );
        println!(
            "Scale: {} VMs paired in {:.1} s; at {:.0} heartbeats/s offered, {:.0}/s ingested: hmd CPU {:.2} % of a core (dataplane thread {:.2} %), RSS {:.1} MiB (peak {:.1} MiB), kernel drops since start {}",
            s.vms,
            s.pair_s,
            s.offered,
            s.ingest,
            s.cpu_pct,
            s.cpu_dataplane_pct,
            s.rss_mib,
            s.hwm_mib,
            s.drops
        );
        println!(
            "Mass miss: {} VMs silent at once (last heartbeats sent within {:.0} ms): all MISSING rows committed {:.0} ms after the latest miss deadline ({:.0} ms after the earliest); hmd's transition time {:.0} ms after; other VMs declared MISSING: {}; hmd log lines for the whole phase: {} (at most {MAX_MISS_LOG_LINES})",
            s.silent,
            s.burst_ms,
            s.commit_lat_ms,
            s.commit_lat_first_ms,
            s.detect_lat_ms,
            s.false_missing,
            s.log_lines
        );
    }
    if phase("backends") {
        println!();
        println!(
            "Backends: {} VMs at 20000 heartbeats/s, then {} silent at once; {} s windows, medians of {} repetitions (alternating order)",
            args.big_agents,
            args.silent,
            args.seconds.max(5.0),
            args.reps
        );
        println!();
        println!(
            "| HSDB | hmd CPU (all threads) | dataplane thread | all MISSING committed after the latest deadline | after the earliest | pairing |"
        );
        println!("|---|---|---|---|---|---|");
        let mut cpu = [0.0; 2];
        let mut lat = [0.0; 2];
        for (i, runs) in backends.iter().enumerate() {
            let col = |f: fn(&Scale) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
            cpu[i] = col(|s| s.cpu_pct);
            lat[i] = col(|s| s.commit_lat_ms);
            println!(
                "| {} | {:.2} % | {:.2} % | {:.0} ms | {:.0} ms | {:.1} s |",
                ["SQLite", "PostgreSQL"][i],
                cpu[i],
                col(|s| s.cpu_dataplane_pct),
                lat[i],
                col(|s| s.commit_lat_first_ms),
                col(|s| s.pair_s)
            );
        }
        println!(
            "| PostgreSQL / SQLite | {:.2} | | {:.2} | | |",
            cpu[1] / cpu[0],
            lat[1] / lat[0]
        );
    }
    eprintln!("bench: done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hvha-e2e-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hvha-e2e-bench: {e}");
            ExitCode::from(1)
        }
    }
}
