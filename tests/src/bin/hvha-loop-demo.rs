//! `hvha-loop-demo`: the whole loop with real daemons, as an operator sees it.
//!
//! Builds the three-host group of [`hvha_e2e::group`] (two `hmd` per host writing one
//! SQLite HSDB, `vmmd` and `hvncp-loadgen` agents, libvirt's test hypervisor with one file
//! per host), starts `hactl run` in the fast profile, then: (a) prints the hosts and VMs as
//! `hactl query` shows them; (b) hangs VM `vm-0-1` (agent stopped, no ping answer) and
//! follows its missed heartbeats until the engine relocates it, printing the relocation's
//! phases; (c) boots it on its new host (its agent pairs with that host's monitors);
//! (d) fails `host-c` (its monitors, VMs and hypervisor gone) and prints the
//! relocations of its VMs; (e) prints the events the engine wrote. Each step has a
//! deadline computed from the parameters.
//!
//! Needs root (namespaces, veth pairs, raw sockets) and `virsh` (Debian package
//! `libvirt-clients`). Exit codes: 0 every step happened; 1 a step did not happen in time
//! (named, with the daemons' logs); 2 bad arguments or this machine cannot run it.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use controlplane::params::GroupParams;
use hsdb::{DetectionSpeed, HostId};
use hvha_e2e::group::{
    Group, HOSTS, PING_TIMEOUT_MS, REAL_VMS, VM_MISS_AFTER_MS, build, check_moved, real_vm,
    start_vmmd, vms_of,
};
use hvha_e2e::{binary, unix_ms, uuid, wait_for};

const USAGE: &str = "\
hvha-loop-demo — the control plane acting on failures seen by real monitors

Usage: hvha-loop-demo [--keep] | --help | --version

Three hosts, each with two hmd (all writing one SQLite HSDB) and VMs whose agents are
real vmmd processes (2 per host) and hvncp-loadgen agents (4 per host); libvirt's test
hypervisor holds one file per host describing the same VMs; hactl run (fast profile:
scans every second, VMFDT 10 s, host failure after 6 s) drives it. Then:
  (a) the group as `hactl query host` / `hactl query vm` show it
  (b) VM vm-0-1 hangs (agent SIGSTOP, ICMP ignored): its missed heartbeats grow until
      the engine relocates it; the relocation's phases
  (c) it boots on its new host: its agent pairs with that host's monitors
  (d) host-c fails (monitors, VMs and hypervisor gone): its VMs relocate
  (e) the events the engine wrote
Needs root and virsh. Takes about 40 s.

Options:
  --keep      after (e), leave the lab running until Ctrl-C (inspect it with
              `hactl --hsdb <file> query …`), then clean up
  -h, --help  this text
  -V, --version  the version

Exit codes: 0 every step happened; 1 a step did not happen in time (named, with the
daemons' logs); 2 bad arguments or this machine cannot run it.
";

fn hactl_out(g: &Group, args: &[&str]) -> String {
    let out = Command::new(binary("hactl"))
        .arg("--hsdb")
        .arg(&g.hsdb)
        .args(args)
        .output();
    match out {
        Ok(o) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => format!("cannot run hactl: {e}\n"),
    }
}

fn show(g: &Group, args: &[&str]) {
    println!("$ hactl {}", args.join(" "));
    for line in hactl_out(g, args).lines() {
        println!("  {line}");
    }
}

fn step(name: &str, text: &str) {
    println!("\n== ({name}) {text}");
}

fn fail(g: &Group, what: &str) -> ExitCode {
    eprintln!("hvha-loop-demo: step failed: {what}\n{}", g.logs());
    ExitCode::from(1)
}

fn ms(v: i64) -> Duration {
    Duration::from_millis(u64::try_from(v).unwrap_or(0))
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
                println!("hvha-loop-demo {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "--keep" => keep = true,
            other => {
                eprintln!("hvha-loop-demo: unknown argument {other:?} (try --help)");
                return ExitCode::from(2);
            }
        }
    }
    let Some(mut g) = build("ldemo") else {
        return ExitCode::from(2);
    };
    let p = GroupParams::fast("hg1");
    let na_cycle = i64::from(p.na_every) * p.scan_interval_ms;
    let actions = 2 * p.command_timeout_ms + p.probe_timeout_ms;
    let vm_bound = VM_MISS_AFTER_MS
        + p.vmfdt_ms(DetectionSpeed::Normal)
        + na_cycle
        // the decision's ping, and the executor's last one before the stop
        + 2 * PING_TIMEOUT_MS
        + actions;
    // Each VM of the failed host is pinged before its restart (host_failure_ping_vms).
    let host_bound = REAL_VMS as i64 * PING_TIMEOUT_MS
        + p.hm_silent_after_ms
        + p.host_fdt_ms
        + 2 * p.scan_interval_ms
        + p.probe_timeout_ms
        + actions;

    step(
        "a",
        "three hosts, six monitors, 18 VMs: every VM DETECTED by both monitors of its host",
    );
    if wait_for(Duration::from_secs(30), || g.all_detected().then_some(())).is_none() {
        return fail(&g, "(a) every VM DETECTED within 30 s");
    }
    let config = g.hactl_config.display().to_string();
    let ctl_ns = g.ctl_ns.clone();
    g.lab
        .spawn("hactl", &ctl_ns, "hactl", &["--config", &config, "run"]);
    let up = wait_for(Duration::from_secs(10), || {
        Command::new(binary("hactl"))
            .args(["--config", &config, "status"])
            .output()
            .ok()
            .filter(|o| o.status.success())
    });
    if up.is_none() {
        return fail(&g, "(a) hactl run answers `hactl status` within 10 s");
    }
    show(&g, &["query", "host"]);
    show(&g, &["query", "vm"]);

    step(
        "b",
        &format!(
            "vm-0-1 hangs: agent stopped, ping ignored; VMFDT {} s, bound {} s",
            p.vmfdt_ms(DetectionSpeed::Normal) / 1000,
            vm_bound / 1000
        ),
    );
    let hung = uuid(&real_vm(0, 1));
    let fault = unix_ms();
    g.hang(0, 1, true);
    let started = Instant::now();
    let mut last_print = Instant::now() - Duration::from_secs(10);
    let relocated = wait_for(ms(vm_bound + 5_000), || {
        if last_print.elapsed() >= Duration::from_secs(3) {
            last_print = Instant::now();
            let vm = hactl_out(&g, &["query", "vm", "vm-0-1"]);
            let missed = vm
                .lines()
                .find(|l| l.to_ascii_lowercase().contains("missed"))
                .unwrap_or("(no missed heartbeats yet)")
                .trim()
                .to_owned();
            println!("  t+{:>4.1}s  {missed}", started.elapsed().as_secs_f64());
        }
        g.wait_relocated(&hung, Duration::ZERO)
    });
    let Some(r) = relocated else {
        return fail(&g, "(b) vm-0-1 relocated within its bound");
    };
    match check_moved(&r, 0, fault, vm_bound) {
        Ok(took) => println!("  relocated in {:.1} s", took as f64 / 1000.0),
        Err(e) => return fail(&g, &format!("(b) {e}")),
    }
    show(&g, &["query", "relocation", &r.id.to_string()]);

    step(
        "c",
        "vm-0-1 boots on its new host: its agent pairs with that host's monitors",
    );
    let Some(to) = HOSTS
        .iter()
        .position(|(_, id)| Some(HostId(*id)) == r.to_host)
    else {
        return fail(&g, "(c) the relocation names its target host");
    };
    g.lab.kill_9("vmmd-0-1");
    let spare = g.spare_ns[to].clone();
    start_vmmd(&mut g.lab, "vmmd-moved", &spare, &real_vm(0, 1));
    let paired = wait_for(Duration::from_secs(10), || {
        let db = g.db()?;
        let vm = db.vm(&hung).ok()??;
        (vm.current_host == r.to_host).then_some(())
    });
    if paired.is_none() {
        return fail(&g, "(c) vm-0-1 discovered on its new host within 10 s");
    }
    show(&g, &["query", "vm", "vm-0-1"]);

    step(
        "d",
        &format!(
            "host-c fails: its monitors, VMs and hypervisor gone; bound {} s",
            host_bound / 1000
        ),
    );
    let fault = unix_ms();
    g.fail_host(2, &[]);
    for (name, vm) in vms_of(2) {
        let Some(r) = g.wait_relocated(&vm, ms(host_bound + 5_000)) else {
            return fail(&g, &format!("(d) {name} relocated within its bound"));
        };
        if let Err(e) = check_moved(&r, 2, fault, host_bound) {
            return fail(&g, &format!("(d) {name}: {e}"));
        }
    }
    show(&g, &["query", "relocation"]);

    step("e", "the events the engine wrote");
    show(&g, &["query", "event", "--limit", "40"]);
    println!("\nevery step happened");
    if keep {
        println!(
            "lab kept: hactl --hsdb {} query …  (Ctrl-C to clean up)",
            g.hsdb
        );
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let _ = signal_hook::flag::register(signal, stop.clone());
        }
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    ExitCode::SUCCESS
}
