//! The control plane of hvha (DESIGN.md §5-§6): from the HSDB the host monitors write to a
//! decision to restart or relocate a VM, carried out on a platform.
//!
//! - [`hs`]: QuickQuery, NeedsAttention and Acknowledge — the reply model with the seed's
//!   element and attribute names, its XML and JSON forms (seed-controlplane.md §2).
//! - [`platform`]: the [`platform::Platform`] trait every driver implements (probes and
//!   actions, each with a timeout), and the drivers: `sim` (deterministic, in memory) and
//!   `libvirt`.
//! - [`clock`]: the injectable clock every time-based decision reads.
//! - [`params`]: the engine's parameters, their levels and ranges, the fast profile.
//! - [`fde`]: the Failure Detection Engine, one per host group.
//! - [`planner`]: where a VM to restart goes ([`planner::PolicyPlanner`]).
//! - [`policy`]: the relocation policies of a host group from the HSDB, checked, for the
//!   planner.
//! - [`relocate`]: the restart executor, a state machine stepped by the engine.
//! - [`events`]: the event catalogue, the outbox writes, the log notifier.
//! - [`notify`]: the notifiers (webhook, exec hook, email) reading the outbox, each with
//!   its own offset, in order, with retries.
//! - [`dash`]: the web dashboard `hactl run` serves (opt-in): HTTP(S), login, sessions,
//!   CSRF, live updates, and the pages.
//! - [`lease`]: leadership of a host group among several controllers (the leader lease
//!   and its fencing token), sans IO.

#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod daemon;
pub mod dash;
pub mod discover;
pub mod events;
pub mod fde;
pub mod hs;
pub mod lease;
pub mod notify;
pub mod params;
pub mod planner;
pub mod platform;
pub mod policy;
pub mod relocate;
pub mod simulation;
