//! `hmd`, the host monitor daemon.
//!
//! ```text
//! hmd --config /etc/hvha/hmd.toml          run
//! hmd --check-config /etc/hvha/hmd.toml    validate and print the effective configuration
//! hmd ctl --config /etc/hvha/hmd.toml status|stats|vms|metrics
//! hmd health --config /etc/hvha/hmd.toml   exit 0 if healthy, else print why and exit 1
//! ```
#![forbid(unsafe_code)]

mod admin;
mod config;
mod heartbeat;
mod refusals;
mod runtime;
mod supervise;
mod wheel;
mod writer;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand};

use crate::config::Config;

/// Host monitor: HVNCP sessions with every VM agent on this host's HA network,
/// heartbeat miss detection, health transitions written to the HSDB.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML); every key is described in docs/operations.md.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the configuration file, print the effective values and exit.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ask a running hmd (through its admin socket).
    Ctl {
        /// Admin socket; default: the one named in --config.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Configuration file naming the admin socket.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// status | stats | vms | metrics (Prometheus text).
        what: String,
    },
    /// Exit 0 if the running hmd is healthy; else print why and exit 1 (the HSDB writer
    /// is stuck, an interface is down, or nothing answers: stopped or wedged).
    Health {
        /// Admin socket; default: the one named in --config.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Configuration file naming the admin socket.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Health { socket, config }) = &cli.command {
        let path = match (socket, config.as_ref().or(cli.config.as_ref())) {
            (Some(p), _) => p.clone(),
            (None, Some(c)) => match Config::load(c) {
                Ok(c) => c.admin_socket,
                Err(e) => {
                    eprintln!("hmd: {e}");
                    return ExitCode::from(2);
                }
            },
            (None, None) => {
                eprintln!("hmd health: give --socket PATH or --config FILE");
                return ExitCode::from(2);
            }
        };
        return supervise::check_health(&path);
    }
    if let Some(Command::Ctl {
        socket,
        config,
        what,
    }) = cli.command
    {
        let path = match (socket, config.or(cli.config)) {
            (Some(p), _) => p,
            (None, Some(c)) => match Config::load(&c) {
                Ok(c) => c.admin_socket,
                Err(e) => {
                    eprintln!("hmd: {e}");
                    return ExitCode::from(2);
                }
            },
            (None, None) => {
                eprintln!("hmd ctl: give --socket PATH or --config FILE");
                return ExitCode::from(2);
            }
        };
        return match admin::request(&path, &what) {
            Ok(text) => {
                print!("{text}");
                if text.starts_with("error:") {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("hmd ctl: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(path) = cli.check_config {
        return match Config::load(&path) {
            Ok(c) => {
                println!("{c:#?}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hmd: {e}");
                ExitCode::from(2)
            }
        };
    }
    let Some(path) = cli.config else {
        eprintln!("hmd: give --config FILE (or --help)");
        return ExitCode::from(2);
    };
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hmd: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            eprintln!("hmd: cannot install signal handler: {e}");
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
    if let Err(e) = admin::serve(
        &config.admin_socket,
        relay.clone(),
        Arc::clone(&endpoint_stats),
    ) {
        eprintln!("hmd: admin socket {}: {e}", config.admin_socket.display());
        return ExitCode::FAILURE;
    }
    if let Some(addr) = config.metrics_listen {
        match admin::serve_metrics(addr, relay, endpoint_stats) {
            Ok(bound) => tracing::info!("Prometheus metrics on http://{bound}/metrics"),
            Err(e) => {
                eprintln!("hmd: metrics_listen {addr}: {e}");
                let _ = std::fs::remove_file(&config.admin_socket);
                return ExitCode::FAILURE;
            }
        }
    }
    let result = runtime::run(&config, &stop, &admin_rx, &waker);
    let _ = std::fs::remove_file(&config.admin_socket);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hmd: {e}");
            ExitCode::FAILURE
        }
    }
}
