//! `hmd`, the host monitor daemon.
//!
//! ```text
//! hmd [--config FILE]                 run (default /etc/hvha/hmd.toml)
//! hmd --check-config [FILE]           check the file and this machine, print the
//!                                     effective configuration as TOML
//! hmd ctl [--config FILE | --socket PATH] status|stats|vms|metrics
//! hmd health [--config FILE | --socket PATH]   exit 0 if healthy, else print why, exit 1
//! ```
//!
//! Exit codes: 0 clean stop (or valid configuration); 1 runtime failure, the message
//! names the key, the value and the cause; 2 bad arguments or configuration.
#![forbid(unsafe_code)]

mod admin;
mod backlog;
mod commands;
mod config;
mod metrics;
mod quiet;
mod refusals;
mod runtime;
mod supervise;
mod writer;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use clap::{CommandFactory as _, Parser, Subcommand};

use hvha_daemon::config::HMD_CONFIG;

use crate::config::Config;

/// Host monitor: HVNCP sessions with every VM agent on this host's HA network,
/// heartbeat miss detection, health transitions written to the HSDB.
///
/// Exit codes: 0 clean stop; 1 runtime failure; 2 bad arguments or configuration.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML); every key is described in docs/operations.md.
    #[arg(long, value_name = "FILE", default_value = HMD_CONFIG)]
    config: PathBuf,
    /// Check the configuration file (default: --config's) and this machine (interfaces,
    /// HSDB directory, admin socket, metrics port) without creating anything, print
    /// the effective configuration as TOML and exit: 0 valid, 2 invalid.
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    check_config: Option<Option<PathBuf>>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ask a running hmd (through its admin socket).
    Ctl {
        /// Admin socket; default: the one named in the configuration file.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Configuration file naming the admin socket (only `admin_socket` is read, so
        /// a mistake in another key does not stop `ctl`).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// status | stats | vms | metrics (Prometheus text).
        what: String,
    },
    /// Exit 0 if the running hmd is healthy; else print why and exit 1 (the HSDB writer
    /// is stuck, an interface is down, or nothing answers: stopped or wedged).
    Health {
        /// Admin socket; default: the one named in the configuration file.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Configuration file naming the admin socket (only `admin_socket` is read).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

const BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    // Packaging: man pages and completions (docs/install.md), outside clap's grammar.
    if let Some(dir) = hvha_daemon::docs::requested() {
        return hvha_daemon::docs::main(Cli::command(), &dir);
    }
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Ctl {
            socket,
            config,
            what,
        }) => ctl(socket, config.unwrap_or(cli.config), &what),
        Some(Command::Health { socket, config }) => {
            match admin_socket(socket, config.unwrap_or(cli.config)) {
                Ok(path) => supervise::check_health(&path),
                Err(code) => code,
            }
        }
        None => match cli.check_config {
            Some(path) => check_config(&path.unwrap_or(cli.config)),
            None => run(&cli.config),
        },
    }
}

/// The admin socket: `--socket`, else the one named in the configuration file.
fn admin_socket(socket: Option<PathBuf>, config: PathBuf) -> Result<PathBuf, ExitCode> {
    match socket {
        Some(p) => Ok(p),
        None => Config::admin_socket_of(&config).map_err(|e| {
            eprintln!("hmd: {e} (or give --config FILE or --socket PATH)");
            ExitCode::from(BAD_CONFIG)
        }),
    }
}

fn ctl(socket: Option<PathBuf>, config: PathBuf, what: &str) -> ExitCode {
    let path = match admin_socket(socket, config) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match admin::request(&path, what) {
        Ok(text) => {
            print!("{text}");
            if text.starts_with("error:") {
                ExitCode::from(BAD_CONFIG)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("hmd ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hmd: {e}");
            return ExitCode::from(BAD_CONFIG);
        }
    };
    print!(
        "# effective configuration of {}, defaults included\n{config}",
        path.display()
    );
    match config.check_machine(path) {
        Ok(check) => {
            println!("# this machine:");
            for note in check.notes {
                println!("#   {note}");
            }
            match config.probe_hsdb(path) {
                Ok(note) => {
                    if let Some(note) = note {
                        println!("#   {note}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("hmd: {e}");
                    ExitCode::from(BAD_CONFIG)
                }
            }
        }
        Err(e) => {
            eprintln!("hmd: {e}");
            ExitCode::from(BAD_CONFIG)
        }
    }
}

/// Run the monitor. Everything that can be checked is checked before anything is
/// created, and what is created is created in the order that leaves least behind on a
/// failure: the metrics port (closed at exit), the admin socket (removed at exit), the
/// interfaces' sockets, and last the HSDB file.
fn run(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hmd: {e}");
            return ExitCode::from(BAD_CONFIG);
        }
    };
    hvha_daemon::log::init(&config.log, config.log_format);
    match config.check_machine(path) {
        Ok(check) if check.running => {
            tracing::error!(
                admin_socket = %config.admin_socket.display(),
                "cannot start: another hmd answers on the admin socket"
            );
            return ExitCode::FAILURE;
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            tracing::error!("cannot install signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    let (admin_tx, admin_rx) = crossbeam_channel::bounded(admin::REQUEST_QUEUE);
    let relay = admin::Relay {
        requests: admin_tx,
        waker: Arc::new(Mutex::new(None)),
    };
    let waker = Arc::clone(&relay.waker);
    let endpoint_stats = Arc::new(admin::EndpointStats::default());
    if let Some(addr) = config.metrics_listen {
        match admin::serve_metrics(addr, relay.clone(), Arc::clone(&endpoint_stats)) {
            Ok(bound) => {
                tracing::info!(url = %format!("http://{bound}/metrics"), "serving Prometheus metrics")
            }
            Err(e) => {
                tracing::error!("cannot start: metrics_listen = \"{addr}\": cannot bind: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(e) = admin::serve(&config.admin_socket, relay, endpoint_stats) {
        tracing::error!(
            "cannot start: admin_socket = \"{}\": {e}",
            config.admin_socket.display()
        );
        return ExitCode::FAILURE;
    }
    let result = runtime::run(&config, &stop, &admin_rx, &waker);
    let _ = std::fs::remove_file(&config.admin_socket);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(runtime::RunError::Hsdb { path, source }) => {
            let cause = config
                .hsdb
                .sqlite_path()
                .map(config::hsdb_cause)
                .unwrap_or_default();
            tracing::error!("hsdb = \"{path}\": {source}{cause}");
            ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
