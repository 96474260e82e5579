//! Any bytes as a received frame: `Frame::parse` never panics, and what it accepts
//! emits back to the same bytes and parses back to the same frame.
//!
//! The one field parse does not keep is the reserved flag bit (0x01), which a receiver
//! ignores; emit writes it as 0, so the flags byte loses that bit and the checksum, a
//! plain byte sum, drops by exactly one.

#![no_main]

use dataplane::wire::{DEFAULT_ETHERTYPE, ETHERNET_HEADER_LEN, Flags, Frame, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

/// Offsets of the flags and checksum bytes in the whole frame.
const FLAGS_AT: usize = ETHERNET_HEADER_LEN + 3;
const CHECKSUM_AT: usize = ETHERNET_HEADER_LEN + 4;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = Frame::parse(data, DEFAULT_ETHERTYPE) else {
        return;
    };
    let covered = ETHERNET_HEADER_LEN + HEADER_LEN + frame.payload.len();
    assert_eq!(usize::from(frame.header.payload_len), frame.payload.len());
    assert!(!frame.header.flags.contains(Flags::RSV));

    let mut buf = vec![0xa5u8; frame.buffer_len()];
    let len = frame
        .emit(&mut buf, DEFAULT_ETHERTYPE)
        .expect("a parsed frame emits into buffer_len() bytes");
    assert_eq!(len, buf.len());
    assert!(buf[covered..].iter().all(|&b| b == 0), "padding is zeroed");

    let reparsed = Frame::parse(&buf, DEFAULT_ETHERTYPE).expect("an emitted frame parses");
    assert_eq!(reparsed, frame);

    let mut expected = data[..covered].to_vec();
    if expected[FLAGS_AT] & Flags::RSV.bits() != 0 {
        expected[FLAGS_AT] &= !Flags::RSV.bits();
        expected[CHECKSUM_AT] = expected[CHECKSUM_AT].wrapping_sub(Flags::RSV.bits());
    }
    assert_eq!(&buf[..covered], &expected[..]);
});
