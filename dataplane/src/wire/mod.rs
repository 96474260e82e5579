//! HVNCP frames on the wire.
//!
//! ```text
//! Ethernet II:  dst MAC (6) | src MAC (6) | EtherType 0x0600 (2) | HVNCP header (8) | payload (len) | padding
//! ```
//!
//! Contract (smoltcp's, kept on purpose):
//!
//! - [`HvncpPacket::new_checked`] (or [`HvncpPacket::check_len`]) is the only way to view
//!   untrusted bytes. After it returned `Ok`, no accessor of the view panics.
//! - [`HvncpRepr::parse`] never panics once the view is checked, and validates
//!   everything a receiver relies on: version, checksum, flag combinations.
//! - [`HvncpRepr::emit`] never panics as long as the buffer is at least
//!   [`HvncpRepr::buffer_len`] bytes long. Never use `new_checked` on a buffer being
//!   written: it is not a valid packet yet.
//! - Parsing never allocates. [`Frame::parse`] is the one call a receiver makes per frame.
//!
//! Errors are one small `Copy` enum, [`Error`], so that every drop reason maps to a
//! counter without allocation.

mod ethernet;
mod frame;
mod hvncp;

pub use ethernet::{ETHERNET_HEADER_LEN, EthernetView, MIN_FRAME_LEN, MacAddr};
pub use frame::{Frame, FrameBuilder};
pub use hvncp::{
    Flags, HEADER_LEN, Packet as HvncpPacket, Repr as HvncpRepr, VERSION, Version, checksum,
};

/// The HVNCP EtherType by default: 1536, as logged by the host monitor (seed 004 L8349).
pub const DEFAULT_ETHERTYPE: u16 = 0x0600;

/// Largest payload in one packet on a standard 1500-byte MTU: `1500 - 8`.
pub const DEFAULT_MAX_PAYLOAD: u16 = 1492;

/// Why a frame was refused. Each variant is a drop counter in the daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The frame is shorter than an Ethernet header plus the 8-byte HVNCP header.
    #[error("frame truncated: {len} bytes, need at least {need}")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The header's payload length runs past the end of the frame.
    #[error("payload length {len} runs past the {available} bytes present")]
    LengthBeyondFrame {
        /// Payload length announced in the header.
        len: u16,
        /// Payload bytes actually present after the header.
        available: usize,
    },
    /// The EtherType is not the one HVNCP runs on.
    #[error("EtherType {found:#06x} is not HVNCP ({expected:#06x})")]
    WrongEtherType {
        /// EtherType in the frame.
        found: u16,
        /// EtherType configured for HVNCP.
        expected: u16,
    },
    /// The major version differs from ours.
    #[error("HVNCP version {major}.{minor} is not supported (major must be {ours})")]
    BadVersion {
        /// Major version in the packet.
        major: u8,
        /// Minor version in the packet.
        minor: u8,
        /// Our major version.
        ours: u8,
    },
    /// The 8-bit checksum does not match.
    #[error("checksum {found:#04x} does not match computed {computed:#04x}")]
    BadChecksum {
        /// Checksum carried by the packet.
        found: u8,
        /// Checksum computed over header and payload.
        computed: u8,
    },
    /// A combination of flags that no correct sender produces.
    #[error("invalid flags {flags}: {why}")]
    InvalidFlags {
        /// The flags byte.
        flags: Flags,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// The payload is longer than one packet may carry on this link.
    #[error("payload of {len} bytes exceeds the {max}-byte packet limit")]
    Oversized {
        /// Payload length.
        len: usize,
        /// Largest payload allowed.
        max: usize,
    },
    /// An output buffer is too small for the frame to be emitted.
    #[error("buffer of {len} bytes too small, need {need}")]
    BufferTooSmall {
        /// Buffer length.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
}

/// Result of wire parsing and emission.
pub type Result<T> = core::result::Result<T, Error>;
