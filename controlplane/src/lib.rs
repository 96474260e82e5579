//! The control plane of hvha (DESIGN.md §5-§6): from the HSDB the host monitors write to a
//! decision to restart or relocate a VM, carried out on a platform.
//!
//! - [`hs`]: QuickQuery, NeedsAttention and Acknowledge — the reply model with the seed's
//!   element and attribute names, its XML and JSON forms (seed-controlplane.md §2).
//! - [`platform`]: the [`platform::Platform`] trait every driver implements (probes and
//!   actions, each with a timeout), and the drivers: `sim` (deterministic, in memory) and
//!   `libvirt`.
//! - [`clock`]: the injectable clock every time-based decision reads.
//!
//! The Failure Detection Engine, the planner, the relocation executor, events and the
//! whole-loop simulation live in modules of their own as they land.

#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod daemon;
pub mod hs;
pub mod platform;
