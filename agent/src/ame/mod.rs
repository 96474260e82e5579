//! The Application Monitoring Engine (AME): watches the applications inside the VM
//! through their monitor scripts and restarts them locally with their stop and start
//! scripts, in the order their dependencies ask (seed 004 L16022-16474).
//!
//! This module is pure: it never runs a script, reads a clock or opens a socket. The
//! runtime feeds it script results and the time and carries out the actions it returns.
//! `config` owns the applications' attributes and their validation, `machine` one
//! application's state machine, `engine` the dependencies across applications.

pub mod config;
pub mod engine;
pub mod machine;
pub mod probe;
pub mod run;
pub mod store;
