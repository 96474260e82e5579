//! Deterministic simulation of the whole control loop (issue 8 item 7; docs/controlplane.md,
//! "Simulation").
//!
//! Simulated monitors ([`monitor`]) write real transitions into a real HSDB the way `hmd`
//! does; the Failure Detection Engine ([`engine`]) reads it and acts on the `sim` platform;
//! the platform's world plus the agents ([`ground`], [`agents`]) are the ground truth;
//! faults come from a seeded schedule ([`faults`]); all of it on one virtual clock
//! ([`run`]). Invariants ([`invariants`]) are checked at every step, every platform action
//! is checked the instant it begins ([`checked`]), and everything that happens goes into a
//! hashed trace ([`trace`]): a seed replays its run exactly.

pub mod agents;
pub mod checked;
pub mod engine;
pub mod faults;
pub mod ground;
pub mod invariants;
pub mod monitor;
pub mod rng;
pub mod run;
pub mod setup;
pub mod trace;

#[cfg(test)]
mod tests;
