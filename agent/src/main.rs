//! `vmmd`, the VM agent daemon: answers the Hellos of the host monitors on the VM's
//! HVNCP interfaces, opens a session with each monitor, heartbeats at the period the
//! monitor commands, re-pairs when a monitor restarts, and sends `SHDN:DAEMON` when it
//! is stopped (seed 004 §2.4-2.6, `docs/hvncp.md` §6.3).
//!
//! Exit codes: 0 after a clean stop, 2 for a bad command line or configuration (the
//! message names the key, the value and the allowed range), 1 for a runtime failure
//! (the message names the interface or the operation).
#![forbid(unsafe_code)]

mod config;
mod interfaces;
mod runtime;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

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
///   ethertype = 0x0600             # 0x0600..=0xffff
///   log = "info"                   # off|error|warn|info|debug|trace; RUST_LOG wins
///
/// Exit codes: 0 clean stop; 1 runtime failure; 2 bad arguments or configuration.
#[derive(Debug, Parser)]
#[command(name = "vmmd", version, verbatim_doc_comment)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["config", "check_config"])))]
struct Cli {
    /// Run the agent with this configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate this configuration file against the machine's interfaces, print the
    /// effective configuration (defaults included) and exit: 0 valid, 2 invalid.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
}

const BAD_CONFIG: u8 = 2;
const RUNTIME_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match (cli.config, cli.check_config) {
        (_, Some(path)) => check_config(&path),
        (Some(path), None) => run(&path),
        // clap enforces exactly one of the two.
        (None, None) => ExitCode::from(BAD_CONFIG),
    }
}

/// Read and validate a configuration file; the error names the file.
fn load(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    Config::parse(&text).map_err(|e| format!("config file {}: {e}", path.display()))
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
            eprintln!("vmmd: config file {}: {e}", path.display());
            ExitCode::from(BAD_CONFIG)
        }
    }
}

/// Log to stderr at the configured level; `RUST_LOG`, when set and valid, wins.
fn init_logging(config: &Config) {
    let from_env =
        std::env::var_os(EnvFilter::DEFAULT_ENV).map(|_| EnvFilter::try_from_default_env());
    let (filter, bad_env) = match from_env {
        Some(Ok(filter)) => (filter, None),
        Some(Err(e)) => (EnvFilter::new(&config.log), Some(e)),
        None => (EnvFilter::new(&config.log), None),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in a journal or a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
    if let Some(e) = bad_env {
        warn!("ignoring RUST_LOG ({e}); using log = \"{}\"", config.log);
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
    init_logging(&config);
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
                error!("config file {}: {e}", path.display());
                return ExitCode::from(BAD_CONFIG);
            }
        }
        Err(e) => {
            error!("{e}");
            return ExitCode::from(RUNTIME_FAILURE);
        }
    }
    let result = runtime::Agent::new(config).and_then(runtime::Agent::run);
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
