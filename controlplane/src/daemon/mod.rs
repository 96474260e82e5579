//! `hactl run`: the control plane daemon — one Failure Detection Engine per host group on
//! the wall clock, the admin socket `hactl status` asks, signals, service-manager
//! notifications.
//!
//! - [`admin`]: the admin UNIX socket (server and client).
//! - [`status`]: what the daemon publishes after every turn.
//! - [`render`]: the status as text for a person.
//! - [`runner`]: the loop: each host group's engine scanned when due, stop between scans.

pub mod admin;
pub mod render;
pub mod runner;
pub mod status;
