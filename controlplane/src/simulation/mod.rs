//! Deterministic simulation of the whole control loop (issue 8 item 7; docs/controlplane.md,
//! "Simulation").
//!
//! Simulated monitors write real transitions into a real HSDB, the Failure Detection
//! Engine reads it and acts on the `sim` platform, all on one virtual clock, while faults
//! are injected from a seeded schedule. Invariants are checked at every step.

pub mod agents;
pub mod checked;
pub mod faults;
pub mod ground;
pub mod invariants;
pub mod monitor;
pub mod rng;
pub mod run;
pub mod trace;

#[cfg(test)]
mod tests;
