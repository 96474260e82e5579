//! `vmmd`, the VM agent daemon: answers the Hellos of the host monitors on the VM's
//! HVNCP interfaces, opens a session with each monitor, heartbeats at the period the
//! monitor commands, re-pairs when a monitor restarts, and sends `SHDN:DAEMON` when it
//! is stopped (seed 004 §2.4-2.6, `docs/hvncp.md` §6.3).
//!
//! Exit codes: 0 after a clean stop, 2 for a bad command line or configuration (the
//! message names the key, the value and the allowed range), 1 for a runtime failure
//! (the message names the interface or the operation).
#![forbid(unsafe_code)]

mod ame;
mod config;
mod ctl;
mod interfaces;
mod monitors;
mod report;
mod runtime;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser};
use hvha_daemon::config::VMMD_CONFIG;
use tracing::{error, info};

use crate::config::{Config, ConfigError, InterfaceChoice};
use crate::interfaces::{Facts, Verdict};

/// VM agent daemon: HVNCP sessions with the host monitors, heartbeats.
///
/// Listens on the VM's HVNCP interfaces (those listed in the configuration, or every
/// interface that is up, Ethernet, not loopback and carries no IP address, looked for
/// again every `rescan_ms`), answers each host monitor's Hello by opening a session,
/// heartbeats at the period the monitor commands, and re-pairs when a monitor restarts.
/// On SIGTERM or SIGINT it sends SHDN:DAEMON to every monitor (the VM becomes
/// SUSPENDED rather than MISSING), waits up to 2 s for the acknowledgements and exits 0.
///
/// Configuration file (TOML):
///
///   vm_uuid = "61be20f0-09a8-4753-b5e5-564f8a545ed5"  # required
///   ostype = "linux"               # default "linux"
///   interfaces = ["eth1", "eth2"]  # default: automatic selection
///   rescan_ms = 5000               # 1000..=60000
///   ethertype = 0x0600             # 0x0600..=0xffff, no other protocol's
///   log = "info"                   # a level or level,target=level…; RUST_LOG wins
///   log_format = "text"            # or "json"
///
///   [ame]
///   socket = "/run/vmmd/ctl.sock"          # vmmd ctl's socket (root only)
///   apps_file = "/var/lib/vmmd/apps.toml"  # the applications, written by vmmd ctl
///
/// Exit codes: 0 clean stop; 1 runtime failure; 2 bad arguments or configuration
/// (the applications' file included).
///
/// `vmmd ctl …` configures and drives the applications of the running agent: see
/// `vmmd ctl --help`.
#[derive(Debug, Parser)]
#[command(name = "vmmd", version, verbatim_doc_comment)]
struct Cli {
    /// Run the agent with this configuration file (for `ctl`: where to find the
    /// socket).
    #[arg(long, value_name = "FILE", default_value = VMMD_CONFIG, global = true)]
    config: PathBuf,
    /// Validate this configuration file (default: --config's) against the machine's
    /// interfaces, print the effective configuration (defaults included) and exit:
    /// 0 valid, 2 invalid.
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    check_config: Option<Option<PathBuf>>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Configure and drive the monitored applications of the running vmmd (the seed's
    /// ksysvmmgr); `vmmd ctl --help` lists the actions and attributes.
    #[command(long_about = CTL_HELP)]
    Ctl(ctl::CtlArgs),
}

/// `vmmd ctl --help`.
const CTL_HELP: &str = r#"Configure and drive the monitored applications of the running vmmd (the seed's
ksysvmmgr).

  vmmd ctl add app NAME monitor_script=… start_script=… stop_script=… [key=value…]
  vmmd ctl add app NAME probe=http probe_port=8080 start_script=… stop_script=…
  vmmd ctl modify app NAME key=value…        vmmd ctl delete app NAME
  vmmd ctl query app [NAME]                  vmmd ctl status [NAME]
  vmmd ctl suspend|resume|start|stop app [NAME]   (no NAME: every application)
  vmmd ctl add|modify|delete dependency dependency_type=start_sequence|stop_sequence|parent_child dependency_list=a,b[,…] [strict=yes|no]
  vmmd ctl query dependency                  vmmd ctl query vmm
  vmmd ctl sync                              (read the applications' file again)

Application attributes: monitor_script, start_script, stop_script, monitored,
monitor_period, monitor_timeout (monitor_period must exceed it),
monitor_failure_threshold, stop_stabilization_time, stop_max_failures,
start_stabilization_time, start_max_failures, max_restart, critical (yes|no),
probe (http|smtp|tcp|none), probe_server, probe_port, probe_interval,
probe_timeout, probe_retries, probe_retry_wait, probe_method (HEAD|GET),
probe_uri, probe_version (1.0|1.1), probe_expect_status (100-599|any).

Exit codes: 0 done; 1 the agent could not carry it out (nothing changed);
2 bad request; 3 the agent cannot be reached; 4 no such application or
dependency."#;

const BAD_CONFIG: u8 = 2;
const RUNTIME_FAILURE: u8 = 1;

fn main() -> ExitCode {
    // Packaging: man pages and completions (docs/install.md), outside clap's grammar.
    if let Some(dir) = hvha_daemon::docs::requested() {
        return hvha_daemon::docs::main(Cli::command(), &dir);
    }
    let cli = Cli::parse();
    if let Some(Command::Ctl(args)) = cli.command {
        if cli.check_config.is_some() {
            eprintln!("vmmd: --check-config and ctl do not go together");
            return ExitCode::from(BAD_CONFIG);
        }
        return ctl::run(args, &cli.config);
    }
    match cli.check_config {
        Some(path) => check_config(&path.unwrap_or(cli.config)),
        None => run(&cli.config),
    }
}

/// Read and validate a configuration file; the error names the file.
fn load(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    let mut config = Config::parse(&text).map_err(|e| e.in_file(path))?;
    // Key files named relative to the configuration file, as in hmd.
    config
        .auth
        .resolve_relative_to(path.parent().unwrap_or(Path::new(".")));
    Ok(config)
}

/// The configured interfaces as they are now; `Err` for one that can never be used as
/// configured (it carries an IP address, or is loopback or not Ethernet).
fn check_interfaces(
    config: &Config,
    facts: &[Facts],
) -> Result<Vec<(dataplane::io::InterfaceName, Verdict)>, ConfigError> {
    let verdicts = interfaces::select(&config.interfaces, facts);
    if let Some((position, name, skip)) = interfaces::misconfigured(&config.interfaces, &verdicts) {
        return Err(ConfigError::Invalid {
            line: None,
            key: format!("interfaces[{position}]"),
            value: format!("\"{name}\""),
            allowed: format!(
                "an Ethernet interface, not loopback, without an IP address; {name} {skip}"
            ),
        });
    }
    Ok(verdicts)
}

fn current_facts() -> Result<Vec<Facts>, dataplane::io::IoError> {
    Ok(dataplane::io::interfaces()?
        .iter()
        .map(Facts::from)
        .collect())
}

fn check_config(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vmmd: {e}");
            return ExitCode::from(BAD_CONFIG);
        }
    };
    print!("# effective configuration of {}\n{config}", path.display());
    match ame::store::Store::new(&config.ame.apps_file).load() {
        Ok(apps) => println!(
            "# apps file {}: {} application(s), {} dependency(ies), valid",
            config.ame.apps_file.display(),
            apps.apps.len(),
            apps.dependencies.len()
        ),
        Err(e) => {
            eprintln!("vmmd: {e}");
            return ExitCode::from(BAD_CONFIG);
        }
    }
    // The key files: readable, private (0600), one key each.
    match config.auth.keyring() {
        Ok(None) => {}
        Ok(Some(keys)) => println!(
            "# auth {}: key {} read{}",
            config.auth.mode,
            keys.primary().id(),
            keys.second()
                .map_or(String::new(), |k| format!(", second key {} read", k.id()))
        ),
        Err(e) => {
            eprintln!("vmmd: config file {}: {e}", path.display());
            return ExitCode::from(BAD_CONFIG);
        }
    }
    let facts = match current_facts() {
        Ok(f) => f,
        Err(e) => {
            println!("# interfaces now: unknown ({e})");
            return ExitCode::SUCCESS;
        }
    };
    match check_interfaces(&config, &facts) {
        Ok(verdicts) => {
            println!("# interfaces now:");
            for (name, verdict) in verdicts {
                match verdict {
                    Verdict::Use { mac, .. } => println!("#   {name} ({mac}): used"),
                    Verdict::Skip(skip) => println!("#   {name}: not used, {skip}"),
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vmmd: {}", e.in_file(path));
            ExitCode::from(BAD_CONFIG)
        }
    }
}

fn run(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vmmd: {e}");
            return ExitCode::from(BAD_CONFIG);
        }
    };
    // A broken applications' file stops the start: running with fewer applications
    // than the operator configured would hide the mistake (docs/agent.md).
    let apps = match ame::store::Store::new(&config.ame.apps_file).load() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("vmmd: {e}");
            return ExitCode::from(BAD_CONFIG);
        }
    };
    hvha_daemon::log::init(&config.log, config.log_format);
    info!(
        file = %config.ame.apps_file.display(),
        apps = apps.apps.len(),
        dependencies = apps.dependencies.len(),
        "applications read"
    );
    info!(
        version = env!("CARGO_PKG_VERSION"),
        vm_uuid = %config.vm_uuid,
        ostype = %config.ostype,
        interfaces = match &config.interfaces {
            InterfaceChoice::Auto => "automatic".to_owned(),
            InterfaceChoice::Configured(names) => {
                names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(",")
            }
        },
        rescan_ms = config.rescan.as_millis(),
        "vmmd starting"
    );
    // A configured interface that carries an IP address is a configuration mistake:
    // refuse it now rather than run without it.
    match current_facts() {
        Ok(facts) => {
            if let Err(e) = check_interfaces(&config, &facts) {
                error!("{}", e.in_file(path));
                return ExitCode::from(BAD_CONFIG);
            }
        }
        Err(e) => {
            error!("{e}");
            return ExitCode::from(RUNTIME_FAILURE);
        }
    }
    // Application monitoring: the AME with the stored applications, and the ctl
    // socket that changes them; both stop after the HVNCP loop has (SIGTERM).
    let ame = match ame::service::Ame::spawn(apps.clone()) {
        Ok(a) => a,
        Err(e) => {
            error!("cannot start application monitoring: {e}");
            return ExitCode::from(RUNTIME_FAILURE);
        }
    };
    let vmm = ctl::proto::VmmView {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        vm_uuid: config.vm_uuid.to_string(),
        ostype: config.ostype.clone(),
        pid: std::process::id(),
        socket: config.ame.socket.display().to_string(),
        apps_file: config.ame.apps_file.display().to_string(),
        apps: 0,
        max_apps: ame::config::MAX_APPS,
        dependencies: 0,
    };
    let store = ame::store::Store::new(&config.ame.apps_file);
    let handler = ctl::server::Ctl::new(store, apps, ame.handle(), vmm);
    let server = match ctl::server::Server::spawn(&config.ame.socket, handler) {
        Ok(s) => s,
        Err(e) => {
            error!("{e}");
            ame.shutdown();
            return ExitCode::from(if e.kind() == std::io::ErrorKind::InvalidInput {
                BAD_CONFIG
            } else {
                RUNTIME_FAILURE
            });
        }
    };
    // The runtime rings the doorbell when the AME's report changes (docs/hvncp.md).
    let result = runtime::Agent::new(config, Box::new(ame.handle())).and_then(runtime::Agent::run);
    server.shutdown();
    ame.shutdown();
    match result {
        Ok(report) => {
            info!(
                shdn_sent = report.sent,
                shdn_acknowledged = report.delivered,
                "vmmd stopped"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("{e}");
            ExitCode::from(RUNTIME_FAILURE)
        }
    }
}
