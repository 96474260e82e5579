//! The Application Monitoring Engine (AME): watches the applications inside the VM
//! through their monitor scripts and restarts them locally with their stop and start
//! scripts, in the order their dependencies ask (seed 004 L16022-16474).
//!
//! `config` owns the applications' attributes and their validation, `machine` one
//! application's state machine, `engine` the dependencies across applications: these
//! three are pure (no script, no clock, no socket) and tested on virtual time. `run`
//! runs a script as a child process, `probe` makes one HTTP / SMTP / TCP probe attempt,
//! and `service` is the AME thread that drives the engine on the real clock with them.

pub mod config;
pub mod engine;
pub mod machine;
pub mod probe;
pub mod run;
pub mod service;
pub mod store;
