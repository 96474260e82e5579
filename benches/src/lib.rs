//! Frames shared by the HVNCP benches and the fuzz seed corpus.
//!
//! Everything here is built with the `dataplane` crate's own [`FrameBuilder`], so a bench
//! or a seed is always a frame the protocol engine itself would put on the wire. The
//! `hvncp-corpus` binary writes [`golden_frames`] as the seed corpus of `fuzz/`.

use dataplane::wire::{
    DEFAULT_ETHERTYPE, DEFAULT_MAX_PAYLOAD, Flags, Frame, FrameBuilder, HvncpRepr, MIN_FRAME_LEN,
    MacAddr, VERSION,
};

/// A host monitor's interface, as in the `wire` golden tests.
pub const MONITOR_MAC: MacAddr = MacAddr([0x6a, 0x6a, 0x08, 0x84, 0xee, 0x11]);

/// An agent's interface, as in the `wire` golden tests.
pub const AGENT_MAC: MacAddr = MacAddr([0x6a, 0x6a, 0x0f, 0xfd, 0xf7, 0x07]);

/// The heartbeat an agent sends every period: payload `HB:`, BEG|END, no ACKR, padded
/// to the 60-byte Ethernet minimum. This is the frame a monitor parses most often.
pub fn heartbeat_frame(src: MacAddr, dst: MacAddr, number: u8) -> [u8; MIN_FRAME_LEN] {
    let mut buf = [0u8; MIN_FRAME_LEN];
    builder(src, dst)
        .emit(&mut buf, &heartbeat_header(number), HEARTBEAT)
        .expect("a heartbeat fits in a minimum-size frame");
    buf
}

/// A heartbeat's payload.
pub const HEARTBEAT: &[u8] = b"HB:";

/// The HVNCP header of heartbeat `number` (BEG|END, no ACKR, payload [`HEARTBEAT`]),
/// for benches that emit heartbeats themselves.
pub fn heartbeat_header(number: u8) -> HvncpRepr {
    repr(number, Flags::BEG | Flags::END, 0, HEARTBEAT)
}

/// The builder of frames from `src` to `dst` with HVNCP's default EtherType.
pub fn builder(src: MacAddr, dst: MacAddr) -> FrameBuilder {
    FrameBuilder {
        dst,
        src,
        ethertype: DEFAULT_ETHERTYPE,
    }
}

/// A payload of the largest size one packet carries on a 1500-byte MTU (1492 bytes),
/// printable ASCII like every HVNCP message.
pub fn max_payload() -> Vec<u8> {
    (0..DEFAULT_MAX_PAYLOAD).map(ascii_at).collect()
}

/// One frame of the seed corpus: a name and the frame's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldenFrame {
    /// Short name, used in the seed file name (`seed-<name>.bin`).
    pub name: &'static str,
    /// The whole Ethernet frame, padding included.
    pub bytes: Vec<u8>,
}

/// One frame of each kind a session exchanges, taken from the handshake and the
/// messages of `docs/hvncp.md` §3–4 (payloads as in the seed trace).
pub fn golden_frames() -> Vec<GoldenFrame> {
    // The middle packet of a message split in three full packets.
    let middle = max_payload();
    let frames: [(&'static str, MacAddr, MacAddr, HvncpRepr, &[u8]); 8] = [
        (
            "hello",
            MONITOR_MAC,
            MacAddr::BROADCAST,
            repr(0, Flags::HEL, 0, HELLO),
            HELLO,
        ),
        (
            "agent-syn",
            AGENT_MAC,
            MONITOR_MAC,
            repr(1, Flags::ACKR | Flags::BEG | Flags::SYN, 0, AGENT_SYN),
            AGENT_SYN,
        ),
        (
            "monitor-syn",
            MONITOR_MAC,
            AGENT_MAC,
            repr(9, Flags::ACKR | Flags::END | Flags::SYN, 0, MONITOR_SYN),
            MONITOR_SYN,
        ),
        (
            "syn-ack",
            MONITOR_MAC,
            AGENT_MAC,
            repr(1, Flags::ACK | Flags::SYN, 0, b""),
            b"",
        ),
        (
            "start-hb",
            MONITOR_MAC,
            AGENT_MAC,
            repr(9, Flags::ACKR | Flags::BEG | Flags::END, 0, b"START_HB"),
            b"START_HB",
        ),
        (
            "hb",
            AGENT_MAC,
            MONITOR_MAC,
            repr(2, Flags::BEG | Flags::END, 0, b"HB:"),
            b"HB:",
        ),
        (
            "shdn",
            AGENT_MAC,
            MONITOR_MAC,
            repr(3, Flags::ACKR | Flags::BEG | Flags::END, 0, b"SHDN:DAEMON"),
            b"SHDN:DAEMON",
        ),
        (
            "fragment-middle",
            MONITOR_MAC,
            AGENT_MAC,
            repr(11, Flags::ACKR, 1, &middle),
            &middle,
        ),
    ];
    frames
        .into_iter()
        .map(|(name, src, dst, header, payload)| {
            let frame = Frame {
                dst,
                src,
                header,
                payload,
            };
            let mut bytes = vec![0u8; frame.buffer_len()];
            frame
                .emit(&mut bytes, DEFAULT_ETHERTYPE)
                .expect("buffer sized for the frame");
            GoldenFrame { name, bytes }
        })
        .collect()
}

/// The Hello identifier of the seed trace: `<sec>.<nsec>.<pid>`.
const HELLO: &[u8] = b"1556303548.719328000.38";
const AGENT_SYN: &[u8] =
    b"uuid=61be20f0-09a8-4753-b5e5-564f8a545ed5:ostype=AIX:verVmmLower=2.0:verVmmUpper=2.0";
const MONITOR_SYN: &[u8] = b"uuid=5c3196a3-c41f-4b5c-9861-dee6077081c6:verHmRunning=2.0";

fn repr(number: u8, flags: Flags, frag_index: u8, payload: &[u8]) -> HvncpRepr {
    HvncpRepr {
        version: VERSION,
        number,
        flags,
        frag_index,
        payload_len: u16::try_from(payload.len()).expect("payloads here are short"),
    }
}

/// Printable ASCII `' '..='~'`, cycling.
fn ascii_at(i: u16) -> u8 {
    b' ' + u8::try_from(i % 95).expect("below 95")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_frames_parse_back_to_what_was_built() {
        let frames = golden_frames();
        assert_eq!(frames.len(), 8);
        for g in &frames {
            let f = Frame::parse(&g.bytes, DEFAULT_ETHERTYPE)
                .unwrap_or_else(|e| panic!("{}: {e}", g.name));
            assert_eq!(g.bytes.len(), f.buffer_len(), "{}", g.name);
        }
        let hello = Frame::parse(&frames[0].bytes, DEFAULT_ETHERTYPE).expect("valid");
        assert!(hello.dst.is_broadcast());
        assert_eq!(hello.payload, HELLO);
        let middle = Frame::parse(&frames[7].bytes, DEFAULT_ETHERTYPE).expect("valid");
        assert_eq!(middle.header.frag_index, 1);
        assert_eq!(frames[7].bytes.len(), 1514);
    }

    #[test]
    fn heartbeat_is_a_padded_hb() {
        let bytes = heartbeat_frame(AGENT_MAC, MONITOR_MAC, 42);
        let f = Frame::parse(&bytes, DEFAULT_ETHERTYPE).expect("valid");
        assert_eq!(f.payload, b"HB:");
        assert_eq!(f.header.number, 42);
        assert_eq!(f.src, AGENT_MAC);
        assert!(bytes[25..].iter().all(|&b| b == 0), "zero padding");
    }
}
