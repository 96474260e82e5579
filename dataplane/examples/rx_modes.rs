//! Which receive mode should `hmd` use? Measures `dataplane::io`'s three receive paths
//! on a veth pair between two network namespaces, with heartbeat-sized frames.
//!
//! ```text
//! cargo run --release -p dataplane --example rx_modes -- [--seconds 5] [--reps 3]
//!     [--rates 20000,100000,max] [--modes recv,mmsg64,ring1ms,ring4ms,ring64k]
//!     [--stall-ms N]
//! ```
//!
//! Needs root. Creates namespaces `hvgen-<pid>` and `hvmon-<pid>` joined by a veth pair
//! (`g0` ↔ `m0`) and deletes them at the end. Per point: a sender thread in `hvgen`
//! sends `rate × seconds` 60-byte frames (EtherType 0x0600), paced by the clock (it
//! wakes, sends what is due with `sendmmsg`, sleeps ~50 µs; `max` sends 64-frame
//! batches back to back); a receiver thread in `hvmon` waits with `poll` and drains
//! with `RawSocket::recv`, counting frames and sampling the latency of every 16th
//! (send → callback, one process, one monotonic clock). Reported per point: frames
//! received per second, frames lost (sent − received) and kernel drops
//! (`PACKET_STATISTICS`), the receiver thread's CPU time (`getrusage(RUSAGE_THREAD)`,
//! user + system) per frame and as a share of one core, and latency p50 / p99.
//! `recv` — one `recvfrom` per frame, a callback that only counts — is the
//! do-nothing baseline. `--stall-ms N` makes the receiver stop reading for N ms once,
//! one second in, to measure how long a stall each buffer absorbs without drops.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dataplane::io::{
    InterfaceName, RawSocket, RxMode, SocketConfig, enter_network_namespace, thread_cpu_time,
};

const ETHERTYPE: u16 = 0x0600;
const FRAME_LEN: usize = 60;
const SAMPLE_EVERY: u64 = 16;

#[derive(Clone, Copy)]
struct Mode {
    label: &'static str,
    rx: RxMode,
}

const MODES: [Mode; 5] = [
    Mode {
        label: "recv",
        rx: RxMode::Recv,
    },
    Mode {
        label: "mmsg64",
        rx: RxMode::Recvmmsg { batch: 64 },
    },
    Mode {
        label: "ring1ms",
        rx: RxMode::Ring {
            block_size: 1 << 20,
            block_count: 16,
            retire_ms: 1,
        },
    },
    Mode {
        label: "ring4ms",
        rx: RxMode::Ring {
            block_size: 1 << 20,
            block_count: 16,
            retire_ms: 4,
        },
    },
    Mode {
        label: "ring64k",
        rx: RxMode::Ring {
            block_size: 1 << 16,
            block_count: 256,
            retire_ms: 4,
        },
    },
];

#[derive(Clone, Copy, Debug)]
enum Rate {
    Paced(u64),
    Max,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::Paced(r) => write!(f, "{r}"),
            Rate::Max => f.write_str("max"),
        }
    }
}

struct Args {
    seconds: f64,
    reps: usize,
    rates: Vec<Rate>,
    modes: Vec<Mode>,
    stall: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seconds: 5.0,
        reps: 3,
        rates: vec![Rate::Paced(20_000), Rate::Paced(100_000), Rate::Max],
        modes: MODES.to_vec(),
        stall: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => {
                args.seconds = value
                    .parse()
                    .ok()
                    .filter(|s| (0.1..=600.0).contains(s))
                    .ok_or("--seconds: 0.1..=600")?;
            }
            "--reps" => {
                args.reps = value
                    .parse()
                    .ok()
                    .filter(|r| (1..=100).contains(r))
                    .ok_or("--reps: 1..=100")?;
            }
            "--rates" => {
                args.rates = value
                    .split(',')
                    .map(|r| match r {
                        "max" => Ok(Rate::Max),
                        n => n
                            .parse()
                            .ok()
                            .filter(|n| (1..=10_000_000).contains(n))
                            .map(Rate::Paced)
                            .ok_or(format!("--rates: {n:?} is not 1..=10000000 or max")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--modes" => {
                args.modes = value
                    .split(',')
                    .map(|m| {
                        MODES
                            .iter()
                            .find(|mode| mode.label == m)
                            .copied()
                            .ok_or(format!("--modes: unknown {m:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--stall-ms" => {
                let ms: u64 = value
                    .parse()
                    .ok()
                    .filter(|ms| (1..=10_000).contains(ms))
                    .ok_or("--stall-ms: 1..=10000")?;
                args.stall = Some(Duration::from_millis(ms));
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

/// The two namespaces and the veth pair; deleted on drop.
struct Topology {
    gen_ns: String,
    mon_ns: String,
}

impl Topology {
    fn new() -> Topology {
        let pid = std::process::id();
        let topo = Topology {
            gen_ns: format!("hvgen-{pid}"),
            mon_ns: format!("hvmon-{pid}"),
        };
        ip(&["netns", "add", &topo.gen_ns]);
        ip(&["netns", "add", &topo.mon_ns]);
        ip(&[
            "link",
            "add",
            "g0",
            "netns",
            &topo.gen_ns,
            "type",
            "veth",
            "peer",
            "name",
            "m0",
            "netns",
            &topo.mon_ns,
        ]);
        ip(&["-n", &topo.gen_ns, "link", "set", "g0", "up"]);
        ip(&["-n", &topo.mon_ns, "link", "set", "m0", "up"]);
        topo
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.gen_ns, &self.mon_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run ip: {e}")));
    if !out.status.success() {
        fail(&format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("rx_modes: {msg}");
    std::process::exit(1);
}

fn name(s: &str) -> InterfaceName {
    InterfaceName::new(s).unwrap_or_else(|e| fail(&e.to_string()))
}

/// One measured point.
#[derive(Clone, Copy, Debug, Default)]
struct Point {
    sent: u64,
    received: u64,
    kernel_drops: u64,
    send_secs: f64,
    cpu_secs: f64,
    p50_us: f64,
    p99_us: f64,
}

impl Point {
    fn rx_rate(&self) -> f64 {
        self.received as f64 / self.send_secs
    }
    fn loss_pct(&self) -> f64 {
        100.0 * self.sent.saturating_sub(self.received) as f64 / self.sent.max(1) as f64
    }
    fn cpu_us_per_frame(&self) -> f64 {
        1e6 * self.cpu_secs / self.received.max(1) as f64
    }
    fn cpu_pct(&self) -> f64 {
        100.0 * self.cpu_secs / self.send_secs
    }
}

fn heartbeat(seq: u64, sent_ns: u64) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x0b]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x0a]);
    f[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    f[14..22].copy_from_slice(&seq.to_be_bytes());
    f[22..30].copy_from_slice(&sent_ns.to_be_bytes());
    f
}

fn field(f: &[u8], at: usize) -> u64 {
    f.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// One point. With `stall`, the receiver stops reading for that long once, one second
/// into the run (a scheduling hiccup, a full hand-off channel), to see what the
/// buffer absorbs.
fn measure(
    topo: &Topology,
    mode: Mode,
    rate: Rate,
    seconds: f64,
    stall: Option<Duration>,
) -> Point {
    let epoch = Instant::now();
    let ready = Arc::new(AtomicBool::new(false));
    let sender_done = Arc::new(AtomicBool::new(false));
    let total_sent = Arc::new(AtomicU64::new(0));
    let expected = match rate {
        Rate::Paced(r) => frames_due(r, Duration::from_secs_f64(seconds)),
        Rate::Max => u64::MAX,
    };

    std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            enter_network_namespace(&topo.mon_ns).unwrap_or_else(|e| fail(&e.to_string()));
            let config = SocketConfig {
                rcvbuf_bytes: 8 << 20,
                ..SocketConfig::new(ETHERTYPE, mode.rx)
            };
            let mut sock =
                RawSocket::open_with(&name("m0"), &config).unwrap_or_else(|e| fail(&e.to_string()));
            let mut latencies: Vec<u64> = Vec::with_capacity(4 << 20);
            let mut received = 0u64;
            let cpu0 = thread_cpu_time().unwrap_or_else(|e| fail(&e.to_string()));
            ready.store(true, Ordering::Release);
            let mut quiet_since: Option<Instant> = None;
            let mut stall = stall;
            let started = Instant::now();
            loop {
                if let Some(pause) = stall
                    && started.elapsed() >= Duration::from_secs(1)
                {
                    std::thread::sleep(pause);
                    stall = None;
                }
                let readable = sock
                    .wait_readable(Some(Duration::from_millis(20)))
                    .unwrap_or_else(|e| fail(&e.to_string()));
                let got = if readable {
                    sock.recv(|f| {
                        received += 1;
                        let seq = field(f, 14);
                        if seq.is_multiple_of(SAMPLE_EVERY)
                            && latencies.len() < latencies.capacity()
                        {
                            latencies.push(nanos_since(epoch).saturating_sub(field(f, 22)));
                        }
                    })
                    .unwrap_or_else(|e| fail(&e.to_string()))
                } else {
                    0
                };
                // Stop once the sender is done and the socket has been quiet for
                // 100 ms (longer than any retire timeout measured).
                if sender_done.load(Ordering::Acquire) {
                    if received >= total_sent.load(Ordering::Acquire) {
                        break;
                    }
                    if got == 0 {
                        let since = *quiet_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_millis(100) {
                            break;
                        }
                    } else {
                        quiet_since = None;
                    }
                }
            }
            let cpu1 = thread_cpu_time().unwrap_or_else(|e| fail(&e.to_string()));
            let stats = sock.stats().unwrap_or_else(|e| fail(&e.to_string()));
            latencies.sort_unstable();
            let pct = |per_mille: usize| {
                let i = latencies.len().saturating_sub(1) * per_mille / 1000;
                latencies.get(i).map_or(f64::NAN, |&ns| ns as f64 / 1000.0)
            };
            Point {
                received,
                kernel_drops: stats.kernel_drops,
                cpu_secs: (cpu1.total() - cpu0.total()).as_secs_f64(),
                p50_us: pct(500),
                p99_us: pct(990),
                ..Point::default()
            }
        });

        let sender = s.spawn(|| {
            enter_network_namespace(&topo.gen_ns).unwrap_or_else(|e| fail(&e.to_string()));
            let sock = RawSocket::open(&name("g0"), ETHERTYPE, RxMode::Recv)
                .unwrap_or_else(|e| fail(&e.to_string()));
            while !ready.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut batch = [[0u8; FRAME_LEN]; 64];
            let mut sent = 0u64;
            let start = Instant::now();
            let window = Duration::from_secs_f64(seconds);
            loop {
                let elapsed = start.elapsed();
                if elapsed >= window || sent >= expected {
                    break;
                }
                let due = match rate {
                    Rate::Paced(r) => frames_due(r, elapsed).min(expected) - sent,
                    Rate::Max => 64,
                };
                if due == 0 {
                    std::thread::sleep(Duration::from_micros(50));
                    continue;
                }
                let n = due.min(64) as usize;
                let now = nanos_since(epoch);
                for (i, f) in batch[..n].iter_mut().enumerate() {
                    *f = heartbeat(sent + i as u64, now);
                }
                let refs: Vec<&[u8]> = batch[..n].iter().map(|f| &f[..]).collect();
                match sock.send_batch(&refs) {
                    Ok(k) => sent += k as u64,
                    Err(e) if e.is_would_block() => {}
                    Err(e) => fail(&e.to_string()),
                }
            }
            let secs = start.elapsed().as_secs_f64();
            total_sent.store(sent, Ordering::Release);
            sender_done.store(true, Ordering::Release);
            (sent, secs)
        });

        let (sent, send_secs) = sender
            .join()
            .unwrap_or_else(|_| fail("sender thread panicked"));
        let point = receiver
            .join()
            .unwrap_or_else(|_| fail("receiver thread panicked"));
        Point {
            sent,
            send_secs,
            ..point
        }
    })
}

/// Frames a sender at `rate` per second owes after `elapsed`.
fn frames_due(rate: u64, elapsed: Duration) -> u64 {
    u64::try_from(u128::from(rate) * elapsed.as_nanos() / 1_000_000_000).unwrap_or(u64::MAX)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| fail(&e));
    let topo = Topology::new();
    // Let the kernel activate the veth queues (linkwatch) before measuring.
    let _ = measure(&topo, MODES[0], Rate::Paced(1000), 0.5, None);

    println!(
        "{:<8} {:>7} {:>3} {:>10} {:>10} {:>7} {:>8} {:>8} {:>7} {:>9} {:>9}",
        "mode",
        "rate",
        "rep",
        "sent",
        "rx/s",
        "loss%",
        "kdrops",
        "cpu_us/f",
        "cpu%",
        "p50_us",
        "p99_us"
    );
    let mut summary = Vec::new();
    for &rate in &args.rates {
        for &mode in &args.modes {
            let mut points = Vec::new();
            for rep in 0..args.reps {
                let p = measure(&topo, mode, rate, args.seconds, args.stall);
                println!(
                    "{:<8} {:>7} {:>3} {:>10} {:>10.0} {:>7.3} {:>8} {:>8.3} {:>7.2} {:>9.0} {:>9.0}",
                    mode.label,
                    rate.to_string(),
                    rep + 1,
                    p.sent,
                    p.rx_rate(),
                    p.loss_pct(),
                    p.kernel_drops,
                    p.cpu_us_per_frame(),
                    p.cpu_pct(),
                    p.p50_us,
                    p.p99_us
                );
                points.push(p);
            }
            summary.push((mode, rate, points));
        }
    }

    let stall = args.stall.map_or(String::new(), |d| {
        format!(", receiver stalled {} ms once", d.as_millis())
    });
    println!(
        "\nmedian of {} runs of {} s each{stall}:",
        args.reps, args.seconds
    );
    println!(
        "| mode | offered fps | received fps | % of recv baseline | lost % | kernel drops | CPU µs/frame | CPU % of a core | p50 µs | p99 µs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (mode, rate, points) in &summary {
        let med = |f: fn(&Point) -> f64| median(points.iter().map(f).collect());
        let baseline = summary
            .iter()
            .find(|(m, r, _)| m.label == "recv" && r.to_string() == rate.to_string())
            .map(|(_, _, ps)| median(ps.iter().map(Point::rx_rate).collect()));
        let share = baseline.map_or("—".to_owned(), |b| {
            format!("{:.1}", 100.0 * med(Point::rx_rate) / b)
        });
        println!(
            "| {} | {} | {:.0} | {} | {:.3} | {:.0} | {:.3} | {:.2} | {:.0} | {:.0} |",
            mode.label,
            rate,
            med(Point::rx_rate),
            share,
            med(Point::loss_pct),
            med(|p| p.kernel_drops as f64),
            med(Point::cpu_us_per_frame),
            med(Point::cpu_pct),
            med(|p| p.p50_us),
            med(|p| p.p99_us),
        );
    }
}
