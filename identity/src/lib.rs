//! The identity types of hvha, shared by the dataplane, the HSDB and whatever reads it.
//!
//! - [`Uuid`]: a VM or monitor UUID (the text form HVNCP carries in SYN payloads);
//! - [`MacAddr`]: a 48-bit Ethernet address;
//! - [`HelloId`]: the identifier a monitor broadcasts in its Hellos, one per monitor start;
//! - [`Version`]: an HVNCP protocol version `MAJOR.MINOR`;
//! - [`text`]: the digit parsers behind them, shared with `dataplane`'s message codec.
//!
//! This crate depends on `std` alone, so that a program that only reads or writes the HSDB
//! (the control plane) compiles and links no socket code. `dataplane` re-exports the
//! types where they always were (`dataplane::message::{Uuid, HelloId}`,
//! `dataplane::wire::{MacAddr, Version}`), and `hsdb` at its root.
//!
//! Parsers take untrusted bytes, never panic and never allocate; a refusal is an
//! [`IdentityError`] saying where the text breaks the format.

mod error;
mod hello;
mod mac;
pub mod text;
mod uuid;
mod version;

pub use self::error::IdentityError;
pub use self::hello::HelloId;
pub use self::mac::MacAddr;
pub use self::uuid::Uuid;
pub use self::version::Version;
