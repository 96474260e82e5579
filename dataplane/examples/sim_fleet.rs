//! A host monitor and a fleet of VM agents on a simulated link, in virtual time.
//!
//! Every node is a real `Endpoint` (the same code `hmd` and `vmmd` run); only the wire
//! and the clock are simulated. The run goes through what an operator cares about:
//! discovery of every VM, steady heartbeating, VMs that hang and come back, graceful
//! agent stops, and a monitor restart, and prints what the monitor saw at each step.
//!
//! ```text
//! cargo run --release -p dataplane --example sim_fleet -- [--agents N] [--loss P] [--seed S]
//! ```

use std::process::ExitCode;
use std::time::Duration;

use dataplane::endpoint::{EndpointConfig, EndpointEvent, Role};
use dataplane::message::{HelloId, Uuid};
use dataplane::sim::{LinkConfig, Network, NodeId};
use dataplane::time::Instant;
use dataplane::wire::MacAddr;

const MONITOR_MAC: MacAddr = MacAddr([0x6a, 0x6a, 0x08, 0x84, 0xee, 0x11]);
const HB_PERIOD: Duration = Duration::from_secs(10);
/// `vm_miss_after`: two heartbeat periods (docs/hvncp.md §5; the seed observed ~19 s,
/// seed 004 L12733).
const MISS_AFTER: Duration = Duration::from_secs(20);

struct Options {
    agents: u64,
    loss: f64,
    seed: u64,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        agents: 1000,
        loss: 0.01,
        seed: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--agents" => {
                let v = value("--agents")?;
                o.agents = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=20_000).contains(n))
                    .ok_or_else(|| format!("--agents {v}: expected a whole number in 1..=20000"))?;
            }
            "--loss" => {
                let v = value("--loss")?;
                o.loss = v
                    .parse()
                    .ok()
                    .filter(|p: &f64| (0.0..=0.5).contains(p))
                    .ok_or_else(|| format!("--loss {v}: expected a probability in 0..=0.5"))?;
            }
            "--seed" => {
                let v = value("--seed")?;
                o.seed = v
                    .parse()
                    .map_err(|_| format!("--seed {v}: expected a whole number"))?;
            }
            "-h" | "--help" => {
                return Err("usage: sim_fleet [--agents N (1..=20000, default 1000)] \
                            [--loss P (0..=0.5, default 0.01)] [--seed S (default 1)]"
                    .into());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(o)
}

fn hello(incarnation: u64) -> HelloId {
    HelloId {
        secs: 1_556_303_548 + incarnation * 60,
        nanos: 719_328_000,
        suffix: 38,
    }
}

fn monitor_config(incarnation: u64) -> EndpointConfig {
    let mut c = EndpointConfig::monitor(
        MONITOR_MAC,
        Uuid::parse(b"5c3196a3-c41f-4b5c-9861-dee6077081c6").expect("constant uuid"),
        hello(incarnation),
    );
    c.role = Role::Monitor {
        hello: hello(incarnation),
        hello_period: Duration::from_secs(30),
        hb_period: HB_PERIOD,
    };
    c
}

fn agent_config(i: u64) -> EndpointConfig {
    let mut uuid = [0u8; 16];
    uuid[..8].copy_from_slice(&0x61be_20f0_09a8_4753u64.to_be_bytes());
    uuid[8..].copy_from_slice(&i.to_be_bytes());
    EndpointConfig::agent(MacAddr::from_u64(0x6a6a_0ffd_0000 + i), Uuid(uuid), "linux")
}

fn secs(t: Instant) -> f64 {
    t.as_nanos() as f64 / 1e9
}

/// VMs whose last heartbeat is older than `MISS_AFTER` (or that never sent one).
fn missing(net: &Network, monitor: NodeId, agents: &[NodeId]) -> Vec<usize> {
    let now = net.now();
    let mon = net.endpoint(monitor);
    agents
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            mon.peer_by_mac(net.mac(**a))
                .and_then(|p| mon.last_heartbeat(p))
                .is_none_or(|t| now.saturating_duration_since(t) > MISS_AFTER)
        })
        .map(|(i, _)| i)
        .collect()
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sim_fleet: {e}");
            return ExitCode::from(2);
        }
    };
    let n = options.agents;
    let mut link = LinkConfig::lossy(options.loss);
    link.duplicate = options.loss / 2.0;
    let mut net = Network::new(link, options.seed);
    let wall = std::time::Instant::now();

    println!(
        "== {n} agents and one host monitor, {:.1} % loss, {:.1} % duplicates, reordering; \
         Hello every 30 s, heartbeat every 10 s, MISSING after 20 s",
        link.loss * 100.0,
        link.duplicate * 100.0
    );
    let agents: Vec<NodeId> = (1..=n)
        .map(|i| net.add(agent_config(i)).expect("valid agent config"))
        .collect();
    let monitor = net.add(monitor_config(0)).expect("valid monitor config");

    // 1. Discovery: on the first Hello; agents whose Hello was lost on the next one.
    let established = |net: &Network| -> Vec<Instant> {
        net.events()
            .iter()
            .filter(|(node, _, e)| {
                *node == monitor && matches!(e, EndpointEvent::Established { .. })
            })
            .map(|(_, t, _)| *t)
            .collect()
    };
    net.run_for(Duration::from_secs(5));
    let first = established(&net);
    println!(
        "[{:>7.3} s] discovery: {} of {n} VMs established and sent START_HB, the last at {:.3} s",
        secs(net.now()),
        first.len(),
        secs(first.iter().max().copied().unwrap_or(Instant::ZERO))
    );
    net.run_for(Duration::from_secs(30));
    let all = established(&net);
    println!(
        "[{:>7.3} s] discovery: {} of {n} after the second Hello (a lost Hello costs one \
         hello_period), the last at {:.3} s",
        secs(net.now()),
        all.len(),
        secs(all.iter().max().copied().unwrap_or(Instant::ZERO))
    );
    net.take_events();

    // 2. Steady state.
    net.run_for(Duration::from_secs(25));
    let stats = net.endpoint(monitor).stats().clone();
    println!(
        "[{:>7.3} s] steady: {} heartbeats received, {} frames sent by the monitor \
         ({} Hellos, the rest handshakes and START_HB: heartbeats are never acknowledged), \
         MISSING: {}",
        secs(net.now()),
        stats.heartbeats_in,
        stats.frames_out,
        stats.hellos_out,
        missing(&net, monitor, &agents).len()
    );

    // 3. Ten VMs hang (their link goes silent), then recover.
    let hung: Vec<usize> = (0..agents.len())
        .step_by(agents.len().div_ceil(10))
        .collect();
    for &i in &hung {
        net.set_link_up(agents[i], false);
    }
    let hung_at = net.now();
    let mut reported = None;
    for _ in 0..40 {
        net.run_for(Duration::from_secs(1));
        let m = missing(&net, monitor, &agents);
        if m == hung {
            reported = Some(net.now());
            break;
        }
    }
    match reported {
        Some(t) => println!(
            "[{:>7.3} s] {} VMs hung at {:.0} s; the monitor sees exactly those MISSING {:.0} s later \
             (vm_miss_after 20 s after their last heartbeat)",
            secs(t),
            hung.len(),
            secs(hung_at),
            t.saturating_duration_since(hung_at).as_secs_f64()
        ),
        None => println!(
            "[{:>7.3} s] MISSING set differs from the hung VMs: {:?}",
            secs(net.now()),
            missing(&net, monitor, &agents)
        ),
    }
    for &i in &hung {
        net.set_link_up(agents[i], true);
    }
    net.run_for(Duration::from_secs(15));
    println!(
        "[{:>7.3} s] links back: MISSING now {} (heartbeats resumed, DETECTED again)",
        secs(net.now()),
        missing(&net, monitor, &agents).len()
    );
    net.take_events();

    // 4. Five agents stop gracefully.
    let stopping: Vec<NodeId> = agents.iter().rev().take(5).copied().collect();
    for a in &stopping {
        net.shutdown(*a);
    }
    net.run_for(Duration::from_secs(2));
    // Their processes are gone.
    for a in &stopping {
        net.set_link_up(*a, false);
    }
    let shutdowns = net
        .events()
        .iter()
        .filter(|(node, _, e)| *node == monitor && matches!(e, EndpointEvent::Shutdown { .. }))
        .count();
    let acked = net
        .events()
        .iter()
        .filter(|(node, _, e)| {
            stopping.contains(node) && matches!(e, EndpointEvent::Delivered { .. })
        })
        .count();
    println!(
        "[{:>7.3} s] {shutdowns} agents stopped gracefully (SHDN:DAEMON, acknowledged to {acked} of them): \
         SUSPENDED, not MISSING",
        secs(net.now())
    );
    net.take_events();

    // 5. The monitor restarts with a new incarnation.
    let restart_at = net.now();
    net.restart(monitor, monitor_config(1))
        .expect("valid monitor config");
    net.run_for(Duration::from_secs(15));
    // Distinct VMs the new incarnation established, and when the last one was.
    let mut rediscovered = std::collections::BTreeMap::new();
    for (node, t, e) in net.events() {
        if let (true, EndpointEvent::Established { mac, .. }) = (*node == monitor, e) {
            rediscovered.entry(*mac).or_insert(*t);
        }
    }
    let restarted_seen = net
        .events()
        .iter()
        .filter(|(_, _, e)| matches!(e, EndpointEvent::MonitorRestarted { .. }))
        .count();
    println!(
        "[{:>7.3} s] monitor restarted (new Hello id {}): {restarted_seen} agents noticed, \
         {} VMs re-paired, the last {:.3} s after the restart",
        secs(net.now()),
        hello(1),
        rediscovered.len(),
        rediscovered.values().max().map_or(0.0, |t| t
            .saturating_duration_since(restart_at)
            .as_secs_f64())
    );
    net.run_for(Duration::from_secs(30));

    let stats = net.endpoint(monitor).stats();
    let link = net.link_stats();
    println!(
        "== after {:.0} s of virtual time ({:.2} s of real time):",
        secs(net.now()),
        wall.elapsed().as_secs_f64()
    );
    println!(
        "   link: {} frames sent, {} copies delivered, {} lost, {} duplicated",
        link.sent, link.delivered, link.lost, link.duplicated
    );
    println!("   monitor counters since its restart:");
    for (name, value) in stats.iter().filter(|(_, v)| *v > 0) {
        println!("     {name:<22} {value}");
    }
    let ok = reported.is_some() && rediscovered.len() as u64 == n - 5;
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("sim_fleet: the run did not go as expected (see above)");
        ExitCode::FAILURE
    }
}
