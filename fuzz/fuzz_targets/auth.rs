//! Any bytes as a received frame through the authentication layer (`dataplane::auth`):
//!
//! - `open` never panics in any mode; `off` returns the bytes unchanged, `accept`
//!   returns a frame without the `Rsv` bit unchanged; whatever `open` accepts with the
//!   bit set is the frame up to its payload, the trailer fully present after it;
//! - the trailer view parses any 25 bytes and emits them back unchanged;
//! - a frame that parses, once sealed, opens again to the same frame, and a sealed
//!   frame with one byte changed among those the tag covers (or the tag) never opens.
//!
//! Seeds (fuzz/corpus/auth, from `hvncp-corpus`) are frames sealed with [`SECRET`] as
//! key 1, so that mutations start from frames whose tag verifies.

#![no_main]

use dataplane::auth::{AuthMode, Authenticator, Key, Keyring, TRAILER_LEN, Trailer, TrailerRepr};
use dataplane::wire::{DEFAULT_ETHERTYPE, ETHERNET_HEADER_LEN, Flags, Frame, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

/// The key of the seeds: `hvncp-corpus` seals them with it, as key 1.
const SECRET: [u8; 32] = [0x5a; 32];
const FLAGS_AT: usize = ETHERNET_HEADER_LEN + 3;
const HEADERS: usize = ETHERNET_HEADER_LEN + HEADER_LEN;

fn authenticator(mode: AuthMode) -> Authenticator {
    let keys =
        Keyring::new(Key::new(1, &SECRET), Some(Key::new(2, &[0xa5; 32]))).expect("distinct ids");
    Authenticator::new(mode, Some(keys), 1, 64).expect("valid")
}

fuzz_target!(|data: &[u8]| {
    assert_eq!(Authenticator::off().open(data), Ok(data));
    let rsv = data
        .get(FLAGS_AT)
        .is_some_and(|f| f & Flags::RSV.bits() != 0);
    for mode in [AuthMode::Accept, AuthMode::Require] {
        let mut rx = authenticator(mode);
        let opened = rx.open(data);
        match opened {
            Ok(f) if rsv && data.len() >= HEADERS => {
                let len = usize::from(u16::from_be_bytes([data[20], data[21]]));
                assert_eq!(f, &data[..HEADERS + len]);
                assert!(data.len() >= HEADERS + len + TRAILER_LEN);
                assert_eq!(rx.counters().auth_verified, 1);
                // The same bytes again are a replay.
                assert!(rx.open(data).is_err());
            }
            Ok(f) => {
                assert_eq!(
                    mode,
                    AuthMode::Accept,
                    "require accepts only verified frames"
                );
                assert_eq!(f, data);
            }
            Err(_) => assert_eq!(rx.counters().drops(), 1),
        }
    }

    if let Ok(t) = Trailer::new_checked(data) {
        let repr = TrailerRepr::parse(&t);
        let mut out = [0u8; TRAILER_LEN];
        repr.emit(&mut Trailer::new_unchecked(&mut out[..]));
        assert_eq!(&out[..], &data[..TRAILER_LEN]);
    }

    let Ok(frame) = Frame::parse(data, DEFAULT_ETHERTYPE) else {
        return;
    };
    let mut buf = vec![0u8; frame.buffer_len() + TRAILER_LEN + 64];
    let Ok(len) = frame.emit(&mut buf, DEFAULT_ETHERTYPE) else {
        return;
    };
    let mut tx = authenticator(AuthMode::Require);
    let sealed = tx.seal(&mut buf, len).expect("room for the trailer");
    let mut rx = authenticator(AuthMode::Require);
    let opened = rx.open(&buf[..sealed]).expect("a sealed frame opens");
    let reparsed = Frame::parse(opened, DEFAULT_ETHERTYPE).expect("and parses");
    assert_eq!(reparsed, frame);
    // One changed byte where the tag looks: never accepted.
    let covered = HEADERS + frame.payload.len() + TRAILER_LEN;
    let at = usize::from(data[0]) % covered;
    let flip = data[1] | 1;
    buf[at] ^= flip;
    let mut rx = authenticator(AuthMode::Require);
    assert!(
        rx.open(&buf[..sealed]).is_err(),
        "byte {at} changed by {flip:#04x} still opens"
    );
});
