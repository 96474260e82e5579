//! `hvncp-sink`: the do-nothing receiver, the ceiling `hmd` is measured against.
//!
//! Opens the same kind of socket `hmd` does (an `AF_PACKET` socket bound to the
//! interface and the HVNCP EtherType, with `hmd`'s receive ring, `RxMode::DAEMON_RING`),
//! waits the same way (`poll`), drains it the same way (`RawSocket::recv`), and only
//! counts the frames: what it receives is what the host can deliver to a process that
//! does no work. Prints one line per `--report-ms`:
//!
//! ```text
//! report t_s=1.000 unix_ms=… received=20013 rate=20011 kernel_packets=20013 kernel_drops=0 cpu_s=0.004
//! ```
//!
//! `received` and the kernel counters are totals since start; `rate` is over the last
//! interval; `cpu_s` is the receiving thread's user + system CPU. Stops on SIGTERM,
//! SIGINT or after `--seconds`, with a last report.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use clap::Parser;
use dataplane::io::{InterfaceName, RawSocket, RxMode};

#[derive(Parser, Debug)]
#[command(
    name = "hvncp-sink",
    version,
    about = "Receive HVNCP frames on an interface with hmd's socket set-up and do nothing \
             but count them: the ceiling for hmd's ingest rate."
)]
struct Cli {
    /// Interface to receive on, in the current network namespace.
    #[arg(long)]
    interface: String,
    /// Print a report line every this many milliseconds (10..=60000).
    #[arg(long, default_value_t = 1000)]
    report_ms: u64,
    /// Exit after this many seconds (default: on SIGTERM or SIGINT).
    #[arg(long)]
    seconds: Option<f64>,
    /// HVNCP EtherType.
    #[arg(long, default_value_t = dataplane::wire::DEFAULT_ETHERTYPE)]
    ethertype: u16,
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

fn run(cli: &Cli) -> Result<(), String> {
    if !(10..=60_000).contains(&cli.report_ms) {
        return Err(format!(
            "--report-ms {}: expected 10..=60000",
            cli.report_ms
        ));
    }
    if let Some(s) = cli.seconds
        && !(s > 0.0 && s <= 86_400.0)
    {
        return Err(format!("--seconds {s}: expected 0..=86400"));
    }
    let name: InterfaceName = cli
        .interface
        .parse()
        .map_err(|e| format!("--interface {:?}: {e}", cli.interface))?;
    let mut socket =
        RawSocket::open(&name, cli.ethertype, RxMode::DAEMON_RING).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    let start = std::time::Instant::now();
    let end = cli.seconds.map(Duration::from_secs_f64);
    let every = Duration::from_millis(cli.report_ms);
    let mut next_report = every;
    let mut received = 0u64;
    let mut base = (Duration::ZERO, 0u64);
    let mut report = |socket: &mut RawSocket, t: Duration, received: u64| {
        let stats = socket.stats().unwrap_or_default();
        let cpu = dataplane::io::thread_cpu_time()
            .map(|c| c.total().as_secs_f64())
            .unwrap_or(0.0);
        let dt = t.saturating_sub(base.0).as_secs_f64().max(1e-9);
        println!(
            "report t_s={:.3} unix_ms={} received={received} rate={:.0} kernel_packets={} kernel_drops={} cpu_s={cpu:.3}",
            t.as_secs_f64(),
            unix_ms(),
            (received - base.1) as f64 / dt,
            stats.kernel_packets,
            stats.kernel_drops,
        );
        base = (t, received);
    };
    let mut busy = false;
    while !stop.load(Ordering::Relaxed) {
        let t = start.elapsed();
        if end.is_some_and(|e| t >= e) {
            break;
        }
        if t >= next_report {
            report(&mut socket, t, received);
            next_report += every;
        }
        if !busy {
            let wait = next_report
                .saturating_sub(t)
                .min(Duration::from_millis(200));
            socket
                .wait_readable(Some(wait))
                .map_err(|e| e.to_string())?;
        }
        let n = socket.recv(|_| received += 1).map_err(|e| e.to_string())?;
        busy = n > 0;
    }
    report(&mut socket, start.elapsed(), received);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hvncp-sink: {e}");
            ExitCode::from(1)
        }
    }
}
