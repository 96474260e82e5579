//! `hvha-ame-bench`: what application monitoring costs `vmmd` (issue 11's acceptance).
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/hvha-ame-bench [--seconds 600] [--window 60] [--warmup 20] [--apps 16]
//!                               [--variants baseline,probes,scripts] [--reps 1]
//! ```
//!
//! Root. Two network namespaces joined by a veth pair: `vmmd` (the binary beside this
//! one, so the release build) in the VM's namespace on its HA interface `ha1`, paired
//! with a real `hmd` (default timers, SQLite HSDB) in the monitor's namespace, as in a
//! VM. The VM's namespace also holds the applications this harness serves on its
//! loopback: `--apps / 2` HTTP servers (a 200 to every request) and as many plain TCP
//! listeners, each counting the connections it accepts. Variants, each a fresh `vmmd`
//! with its own applications' file, measured one after the other on the same machine in
//! the same run (`--reps` rounds of them):
//!
//! - `baseline`: no application at all (the agent and its heartbeats alone);
//! - `probes`: `--apps` applications with built-in probes (`probe=http` and
//!   `probe=tcp`, `probe_interval=1`: each probed every second), all healthy;
//! - `scripts`: `--apps` applications with a monitor script (`/bin/sh` running a
//!   three-line script that appends a byte to a file) every 2 s (`monitor_period=2`,
//!   the shortest the rule `monitor_period > monitor_timeout` allows with whole seconds).
//!
//! Each variant: `--warmup` seconds for the applications to come up, then `--seconds`
//! measured in windows of `--window` seconds. Per window, `vmmd`'s own CPU from
//! `/proc/<pid>/stat` (`utime + stime`: every thread of the process, alive or exited,
//! and none of its children) as a percentage of one core, and its children's
//! (`cutime + cstime`: the scripts it ran and reaped); `VmRSS` and its anonymous part
//! `RssAnon` (heap and stacks, where a leak would show; the rest is file pages of the
//! binary and the libraries, faulted in as code paths first run) from
//! `/proc/<pid>/status` every second. Output: one line per window, then per variant the
//! median of the windows' CPU, both RSS figures at the start and the end of the
//! measurement and their maximum, the probes
//! the listeners saw (or the script runs) per second — proof that the monitoring ran at
//! the stated rate — and the applications' states by `vmmd ctl status` at the end; then
//! the Markdown table `docs/perf.md` quotes, with each variant's difference to the
//! baseline.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hvha_e2e::{HM_UUID, Lab, binary, hmd_toml, spawn_in_netns, wait_for};

struct Args {
    seconds: u64,
    window: u64,
    warmup: u64,
    apps: u16,
    variants: Vec<Variant>,
    reps: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Baseline,
    Probes,
    Scripts,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Baseline => "baseline",
            Variant::Probes => "probes",
            Variant::Scripts => "scripts",
        }
    }
}

fn usage() -> &'static str {
    "usage: hvha-ame-bench [--seconds S] [--window S] [--warmup S] [--apps N] \
     [--variants baseline,probes,scripts] [--reps N] | --version"
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        seconds: 600,
        window: 60,
        warmup: 20,
        apps: 16,
        variants: vec![Variant::Baseline, Variant::Probes, Variant::Scripts],
        reps: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{}", usage());
            std::process::exit(0);
        }
        if flag == "--version" || flag == "-V" {
            println!("hvha-ame-bench {}", env!("CARGO_PKG_VERSION"));
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
            "--seconds" => a.seconds = num(1, 86_400)?,
            "--window" => a.window = num(1, 3_600)?,
            "--warmup" => a.warmup = num(1, 600)?,
            // 16 is the AME's limit; an even count splits into HTTP and TCP.
            "--apps" => a.apps = u16::try_from(num(2, 16)?).map_err(|e| e.to_string())? & !1,
            "--reps" => a.reps = usize::try_from(num(1, 100)?).map_err(|e| e.to_string())?,
            "--variants" => {
                a.variants = value
                    .split(',')
                    .map(|v| match v {
                        "baseline" => Ok(Variant::Baseline),
                        "probes" => Ok(Variant::Probes),
                        "scripts" => Ok(Variant::Scripts),
                        _ => Err(format!(
                            "--variants: {v:?} is not baseline, probes or scripts"
                        )),
                    })
                    .collect::<Result<_, _>>()?;
            }
            _ => return Err(format!("unknown argument {flag:?}\n{}", usage())),
        }
    }
    if a.window > a.seconds {
        return Err(format!(
            "--window {} is longer than --seconds {}",
            a.window, a.seconds
        ));
    }
    Ok(a)
}

/// First port of the HTTP servers; the TCP listeners follow at `+100`.
const HTTP_PORT: u16 = 18_000;
const TCP_PORT: u16 = 18_100;

/// The applications' listeners: how many connections each accepted.
struct Listeners {
    accepted: Vec<Arc<AtomicU64>>,
    stop: Arc<AtomicBool>,
}

impl Listeners {
    fn total(&self) -> u64 {
        self.accepted
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }
}

/// `pairs` HTTP servers and `pairs` TCP listeners on the loopback of namespace `ns`.
fn start_listeners(ns: &str, pairs: u16) -> Listeners {
    let stop = Arc::new(AtomicBool::new(false));
    let mut accepted = Vec::new();
    for i in 0..pairs {
        for (port, http) in [(HTTP_PORT + i, true), (TCP_PORT + i, false)] {
            let count = Arc::new(AtomicU64::new(0));
            accepted.push(count.clone());
            let listener = spawn_in_netns(ns, move || TcpListener::bind(("127.0.0.1", port)))
                .join()
                .expect("bind thread")
                .unwrap_or_else(|e| panic!("listen on 127.0.0.1:{port}: {e}"));
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    count.fetch_add(1, Ordering::Relaxed);
                    if http {
                        answer_http(stream);
                    }
                    // A TCP listener only accepts: the probe closes.
                }
            });
        }
    }
    Listeners { accepted, stop }
}

/// Read one request's head and answer `200 OK`.
fn answer_http(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
    );
}

/// `/proc/<pid>/stat`: (own utime + stime, children's cutime + cstime) in clock ticks.
fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11) // state … cmajflt: fields 3-13
        .take(4)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    match fields[..] {
        [utime, stime, cutime, cstime] => Some((utime + stime, cutime + cstime)),
        _ => None,
    }
}

/// `VmRSS` and `RssAnon` of `pid` in KiB: the whole resident set, and its anonymous
/// part (heap, stacks: what a leak grows; the rest is the binary's and the libraries'
/// pages, faulted in as code paths first run).
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("RssAnon:")?))
}

fn clock_ticks_per_second() -> Result<u64, String> {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .map_err(|e| format!("getconf CLK_TCK: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("getconf CLK_TCK: {e}"))
}

/// The measurement of one variant.
struct Measured {
    variant: Variant,
    /// Per window: (own CPU %, children's CPU %) of one core.
    windows: Vec<(f64, f64)>,
    /// `VmRSS` at the start, the end, and its maximum.
    rss_kib: [u64; 3],
    /// `RssAnon` at the start, the end, and its maximum.
    anon_kib: [u64; 3],
    /// Probes the listeners accepted, or script runs, per second over the measurement.
    monitor_rate: f64,
    /// `vmmd ctl status` at the end: (NORMAL applications, every application).
    normal: (usize, usize),
}

fn median(mut v: Vec<f64>) -> f64 {
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

impl Measured {
    fn own(&self) -> f64 {
        median(self.windows.iter().map(|w| w.0).collect())
    }
    fn children(&self) -> f64 {
        median(self.windows.iter().map(|w| w.1).collect())
    }
}

/// The applications' file of `variant` (`None`: no file, no application).
fn apps_file(variant: Variant, pairs: u16, scripts: &Path) -> Option<String> {
    let start = scripts.join("start.sh").display().to_string();
    let stop = scripts.join("stop.sh").display().to_string();
    let monitor = scripts.join("monitor.sh").display().to_string();
    let mut text = String::from("version = 1\n");
    match variant {
        Variant::Baseline => return None,
        Variant::Probes => {
            for i in 0..pairs {
                text.push_str(&format!(
                    "\n[[app]]\nname = \"web{i}\"\nprobe = \"http\"\nprobe_server = \"127.0.0.1\"\n\
                     probe_port = {}\nprobe_interval = 1\nprobe_timeout = 1\nprobe_retries = 1\n\
                     probe_retry_wait = 1\nstart_script = {start:?}\nstop_script = {stop:?}\n\
                     \n[[app]]\nname = \"tcp{i}\"\nprobe = \"tcp\"\nprobe_server = \"127.0.0.1\"\n\
                     probe_port = {}\nprobe_interval = 1\nprobe_timeout = 1\nprobe_retries = 1\n\
                     probe_retry_wait = 1\nstart_script = {start:?}\nstop_script = {stop:?}\n",
                    HTTP_PORT + i,
                    TCP_PORT + i
                ));
            }
        }
        Variant::Scripts => {
            for i in 0..2 * pairs {
                text.push_str(&format!(
                    "\n[[app]]\nname = \"app{i}\"\nmonitor_script = {monitor:?}\n\
                     monitor_period = 2\nmonitor_timeout = 1\nstart_script = {start:?}\n\
                     stop_script = {stop:?}\n"
                ));
            }
        }
    }
    Some(text)
}

fn write_exec(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `vmmd ctl status` through the agent's socket: (NORMAL applications, applications),
/// counting the lines that name an application.
fn ctl_status(config: &Path) -> Result<(usize, usize), String> {
    let out = Command::new(binary("vmmd"))
        .arg("--config")
        .arg(config)
        .args(["ctl", "status"])
        .output()
        .map_err(|e| format!("vmmd ctl status: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "vmmd ctl status: {}: {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let apps: Vec<&str> = text
        .lines()
        .filter(|l| {
            [
                "NORMAL", "FAILING", "TO_STOP", "TO_START", "FAILURE", "ABNORMAL", "UNSET",
            ]
            .iter()
            .any(|s| {
                l.split_whitespace()
                    .any(|w| w == *s || w == format!("state={s}"))
            })
        })
        .collect();
    let normal = apps
        .iter()
        .filter(|l| {
            l.split_whitespace()
                .any(|w| w == "NORMAL" || w == "state=NORMAL")
        })
        .count();
    Ok((normal, apps.len()))
}

struct Rig {
    lab: Lab,
    vm_ns: String,
    listeners: Listeners,
    tck: u64,
}

fn measure(rig: &mut Rig, args: &Args, variant: Variant, rep: usize) -> Result<Measured, String> {
    let label = format!("vmmd-{}-{rep}", variant.name());
    let scripts = rig.lab.dir.join("scripts");
    let runs = rig.lab.dir.join(format!("runs-{label}"));
    let apps_path = rig.lab.dir.join(format!("{label}-apps.toml"));
    if let Some(text) = apps_file(variant, args.apps / 2, &scripts) {
        write_private(&apps_path, &text)?;
    }
    // The monitor script writes where this variant counts.
    write_exec(
        &scripts.join("monitor.sh"),
        &format!("#!/bin/sh\nprintf x >> {}\nexit 0\n", runs.display()),
    )?;
    let config = rig.lab.write(
        &format!("{label}.toml"),
        &format!(
            "vm_uuid = \"61be20f0-09a8-4753-b5e5-00000000a11e\"\ninterfaces = [\"ha1\"]\n\
             log = \"info\"\n[ame]\nsocket = {:?}\napps_file = {:?}\n",
            rig.lab
                .dir
                .join(format!("{label}.sock"))
                .display()
                .to_string(),
            apps_path.display().to_string()
        ),
    );
    let ns = rig.vm_ns.clone();
    let pid = rig.lab.spawn(
        &label,
        &ns,
        "vmmd",
        &["--config", &config.display().to_string()],
    );
    std::thread::sleep(Duration::from_secs(args.warmup));
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(format!(
            "{label} exited during the warm-up:\n{}",
            rig.lab.log(&label)
        ));
    }
    let started = Instant::now();
    let probes0 = rig.listeners.total();
    let runs0 = std::fs::metadata(&runs).map_or(0, |m| m.len());
    let (mut own0, mut kids0) = cpu_ticks(pid).ok_or("vmmd's /proc/<pid>/stat")?;
    let (rss_start, anon_start) = rss_kib(pid).ok_or("vmmd's VmRSS")?;
    let (mut rss_end, mut rss_max) = (rss_start, rss_start);
    let (mut anon_end, mut anon_max) = (anon_start, anon_start);
    let mut windows = Vec::new();
    let mut window_start = Instant::now();
    let tck = rig.tck as f64;
    while started.elapsed() < Duration::from_secs(args.seconds) {
        std::thread::sleep(Duration::from_secs(1));
        (rss_end, anon_end) =
            rss_kib(pid).ok_or_else(|| format!("{label} exited:\n{}", rig.lab.log(&label)))?;
        rss_max = rss_max.max(rss_end);
        anon_max = anon_max.max(anon_end);
        if window_start.elapsed() >= Duration::from_secs(args.window) {
            let (own, kids) = cpu_ticks(pid).ok_or("vmmd's /proc/<pid>/stat")?;
            let s = window_start.elapsed().as_secs_f64();
            let w = (
                (own - own0) as f64 / tck / s * 100.0,
                (kids - kids0) as f64 / tck / s * 100.0,
            );
            println!(
                "window {} {:>2}: {s:5.1} s  vmmd {:6.3} % of a core  scripts {:6.3} %  rss {} KiB (anon {})",
                variant.name(),
                windows.len() + 1,
                w.0,
                w.1,
                rss_end,
                anon_end
            );
            windows.push(w);
            (own0, kids0) = (own, kids);
            window_start = Instant::now();
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let monitor_rate = match variant {
        Variant::Probes => (rig.listeners.total() - probes0) as f64 / seconds,
        Variant::Scripts => {
            (std::fs::metadata(&runs).map_or(0, |m| m.len()) - runs0) as f64 / seconds
        }
        Variant::Baseline => 0.0,
    };
    let normal = if variant == Variant::Baseline {
        (0, 0)
    } else {
        ctl_status(&config).unwrap_or_else(|e| {
            eprintln!("{label}: {e}");
            (0, 0)
        })
    };
    rig.lab.signal(&label, "TERM");
    rig.lab.wait_exit(&label, Duration::from_secs(10));
    Ok(Measured {
        variant,
        windows,
        rss_kib: [rss_start, rss_end, rss_max],
        anon_kib: [anon_start, anon_end, anon_max],
        monitor_rate,
        normal,
    })
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} × {cpu}, Linux {}", kernel.trim())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn run(args: &Args) -> Result<(), String> {
    let tck = clock_ticks_per_second()?;
    let mut lab = Lab::new("amebch").ok_or("cannot run here (see above)")?;
    let vm_ns = lab.netns("vm");
    let mon_ns = lab.netns("mon");
    lab.link(&vm_ns, "ha1", &mon_ns, "m0");
    let scripts = lab.dir.join("scripts");
    std::fs::create_dir_all(&scripts).map_err(|e| e.to_string())?;
    write_exec(&scripts.join("start.sh"), "#!/bin/sh\nexit 0\n")?;
    write_exec(&scripts.join("stop.sh"), "#!/bin/sh\nexit 0\n")?;
    let hsdb = lab.dir.join("hsdb.sqlite");
    let hmd_config = lab.write(
        "hmd.toml",
        &hmd_toml(HM_UUID, &hsdb, &lab.dir.join("hmd.sock"), &["m0"], ""),
    );
    lab.spawn(
        "hmd",
        &mon_ns,
        "hmd",
        &["--config", &hmd_config.display().to_string()],
    );
    let listeners = start_listeners(&vm_ns, args.apps / 2);
    // The listeners answer before any vmmd starts.
    let ready = wait_for(Duration::from_secs(5), || {
        let ns = vm_ns.clone();
        spawn_in_netns(&ns, || TcpStream::connect(("127.0.0.1", HTTP_PORT)).is_ok())
            .join()
            .ok()
            .filter(|ok| *ok)
    });
    if ready.is_none() {
        return Err("the listeners do not answer".into());
    }
    let mut rig = Rig {
        lab,
        vm_ns,
        listeners,
        tck,
    };
    println!(
        "hvha-ame-bench: {} applications, {} s measured in {} s windows after {} s of warm-up, \
         {} round(s); machine: {}; load average {}",
        args.apps,
        args.seconds,
        args.window,
        args.warmup,
        args.reps,
        machine(),
        loadavg()
    );
    let mut results = Vec::new();
    for rep in 0..args.reps {
        for &variant in &args.variants {
            let m = measure(&mut rig, args, variant, rep)?;
            println!(
                "{} (round {}): vmmd {:.3} % of a core (median of {} windows), scripts {:.3} %, \
                 rss {} -> {} KiB (max {}), anon {} -> {} KiB (max {}), monitoring {:.2}/s, ctl status: {}/{} NORMAL; load average {}",
                variant.name(),
                rep + 1,
                m.own(),
                m.windows.len(),
                m.children(),
                m.rss_kib[0],
                m.rss_kib[1],
                m.rss_kib[2],
                m.anon_kib[0],
                m.anon_kib[1],
                m.anon_kib[2],
                m.monitor_rate,
                m.normal.0,
                m.normal.1,
                loadavg()
            );
            results.push(m);
        }
    }
    rig.listeners.stop.store(true, Ordering::Relaxed);
    print_table(args, &results);
    check(args, &results)
}

/// A figure is only worth quoting if the monitoring it prices ran: every application
/// NORMAL at the end, and the probes (script runs) at 90 % or more of the configured
/// rate (one per application per second; one per 2 s).
fn check(args: &Args, results: &[Measured]) -> Result<(), String> {
    let apps = usize::from(args.apps);
    let mut wrong = Vec::new();
    for m in results {
        let expected = match m.variant {
            Variant::Baseline => continue,
            Variant::Probes => f64::from(args.apps),
            Variant::Scripts => f64::from(args.apps) / 2.0,
        };
        if m.normal != (apps, apps) {
            wrong.push(format!(
                "{}: {}/{} applications NORMAL at the end (vmmd ctl status), not {apps}/{apps}",
                m.variant.name(),
                m.normal.0,
                m.normal.1
            ));
        }
        if m.monitor_rate < 0.9 * expected {
            wrong.push(format!(
                "{}: monitoring ran {:.2} times a second, not about {expected}",
                m.variant.name(),
                m.monitor_rate
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the measurement does not price what it claims:\n{}",
            wrong.join("\n")
        ))
    }
}

fn print_table(args: &Args, results: &[Measured]) {
    let baseline = median(
        results
            .iter()
            .filter(|m| m.variant == Variant::Baseline)
            .map(Measured::own)
            .collect(),
    );
    println!();
    println!(
        "| variant | vmmd CPU, % of a core (median of {} s windows) | minus baseline | scripts' CPU | RSS start → end (max), KiB | of which anonymous | monitoring rate | NORMAL at the end |",
        args.window
    );
    println!("|---|---|---|---|---|---|---|---|");
    for m in results {
        let rate = match m.variant {
            Variant::Baseline => "—".to_owned(),
            Variant::Probes => format!("{:.2} probes/s", m.monitor_rate),
            Variant::Scripts => format!("{:.2} script runs/s", m.monitor_rate),
        };
        let normal = if m.variant == Variant::Baseline {
            "—".to_owned()
        } else {
            format!("{}/{}", m.normal.0, m.normal.1)
        };
        let diff = if m.variant == Variant::Baseline || baseline.is_nan() {
            "—".to_owned()
        } else {
            format!("{:+.3}", m.own() - baseline)
        };
        println!(
            "| {} | {:.3} | {} | {:.3} | {} → {} ({}) | {} → {} ({}) | {} | {} |",
            m.variant.name(),
            m.own(),
            diff,
            m.children(),
            m.rss_kib[0],
            m.rss_kib[1],
            m.rss_kib[2],
            m.anon_kib[0],
            m.anon_kib[1],
            m.anon_kib[2],
            rate,
            normal
        );
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hvha-ame-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hvha-ame-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
