//! The 8-byte HVNCP header (two 32-bit words, network byte order).
//!
//! ```text
//!  0               1               2               3
//!  0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//! +---------------+---------------+---------------+-+-+-+-+-+-+-+-+
//! |  ver major    |  ver minor    | packet/ack no |A|A|B|E|P|S|H|R|
//! |               |               |               |C|C|E|N|R|Y|E|s|
//! |               |               |               |K|K|G|D|I|N|L|v|
//! |               |               |               |R| | | | | | | |
//! +---------------+---------------+---------------+-+-+-+-+-+-+-+-+
//! |   checksum    |  frag index   |        payload length         |
//! +---------------+---------------+-------------------------------+
//! ```
//!
//! The seed describes the fields but not their layout (seed 004 L10341-10456); the layout
//! is ours, fixed in `docs/hvncp.md`.

use std::fmt;

use super::{Error, Result};

mod field {
    pub const VER_MAJOR: usize = 0;
    pub const VER_MINOR: usize = 1;
    pub const NUMBER: usize = 2;
    pub const FLAGS: usize = 3;
    pub const CHECKSUM: usize = 4;
    pub const FRAG_INDEX: usize = 5;
    pub const LENGTH: core::ops::Range<usize> = 6..8;
}

/// Length of the HVNCP header.
pub const HEADER_LEN: usize = field::LENGTH.end;

/// The version we speak: 2.0 (seed 004 L8303-8311).
pub const VERSION: Version = Version { major: 2, minor: 0 };

/// Protocol version carried in every header; defined in `hvha-identity`. Only the major
/// number must match.
pub use hvha_identity::Version;

/// The flag byte (seed 004 L10366-10449).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// Acknowledgement requested.
    pub const ACKR: Flags = Flags(0x80);
    /// This packet acknowledges `number`.
    pub const ACK: Flags = Flags(0x40);
    /// First packet of a message; with SYN: open the reverse direction too.
    pub const BEG: Flags = Flags(0x20);
    /// Last packet of a message; with SYN: the answer to a BEG.
    pub const END: Flags = Flags(0x10);
    /// Urgent priority.
    pub const PRI: Flags = Flags(0x08);
    /// Session (re)synchronisation.
    pub const SYN: Flags = Flags(0x04);
    /// Hello broadcast.
    pub const HEL: Flags = Flags(0x02);
    /// Reserved for the authenticated-frame extension; 0 on send, ignored on receipt.
    pub const RSV: Flags = Flags(0x01);
    /// No flag.
    pub const EMPTY: Flags = Flags(0);

    /// Flags from the raw byte.
    pub const fn from_bits(bits: u8) -> Flags {
        Flags(bits)
    }
    /// The raw byte.
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// True if every flag of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    /// True if any flag of `other` is set.
    pub const fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }
    /// Union.
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
    /// `self` without the flags of `other`.
    pub const fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        self.union(rhs)
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(Flags, &str); 8] = [
            (Flags::ACKR, "ACKR"),
            (Flags::ACK, "ACK"),
            (Flags::BEG, "BEG"),
            (Flags::END, "END"),
            (Flags::PRI, "PRI"),
            (Flags::SYN, "SYN"),
            (Flags::HEL, "HEL"),
            (Flags::RSV, "RSV"),
        ];
        let mut first = true;
        for (flag, name) in NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Wrapping 8-bit sum of every header byte except the checksum itself, plus every
/// payload byte (seed 004 L10451-10456; Ethernet header and padding excluded).
#[inline]
pub fn checksum(header: &[u8], payload: &[u8]) -> u8 {
    let sum = match header.first_chunk::<HEADER_LEN>() {
        Some(h) => h[0]
            .wrapping_add(h[1])
            .wrapping_add(h[2])
            .wrapping_add(h[3])
            .wrapping_add(h[5])
            .wrapping_add(h[6])
            .wrapping_add(h[7]),
        None => header
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != field::CHECKSUM)
            .fold(0u8, |s, (_, b)| s.wrapping_add(*b)),
    };
    sum.wrapping_add(payload_sum(payload))
}

/// Wrapping 8-bit sum of `bytes`: a plain loop for the short payloads of the hot path
/// (heartbeats are 3 bytes), wide lanes for long ones.
#[inline]
fn payload_sum(bytes: &[u8]) -> u8 {
    if bytes.len() <= 16 {
        let mut sum: u8 = 0;
        for &b in bytes {
            sum = sum.wrapping_add(b);
        }
        return sum;
    }
    // u32 lanes: 16 million bytes before overflow, far beyond a packet.
    let wide: u32 = bytes.iter().map(|&b| u32::from(b)).sum();
    wide.to_le_bytes()[0]
}

/// A zero-copy view of an HVNCP packet: header then payload (then, possibly, padding).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// View `buffer` without any check. Accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// View `buffer`, checking that the header and the announced payload are present.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if the header is incomplete, `LengthBeyondFrame` if the payload
    /// length runs past the buffer. After `Ok`, no accessor panics.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated {
                len,
                need: HEADER_LEN,
            });
        }
        let payload_len = self.payload_len();
        if usize::from(payload_len) > len - HEADER_LEN {
            return Err(Error::LengthBeyondFrame {
                len: payload_len,
                available: len - HEADER_LEN,
            });
        }
        Ok(())
    }

    /// Consume the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field.
    pub fn version(&self) -> Version {
        let b = self.buffer.as_ref();
        Version {
            major: b[field::VER_MAJOR],
            minor: b[field::VER_MINOR],
        }
    }
    /// Packet number, or the acknowledged number when ACK is set.
    pub fn number(&self) -> u8 {
        self.buffer.as_ref()[field::NUMBER]
    }
    /// Flag byte.
    pub fn flags(&self) -> Flags {
        Flags(self.buffer.as_ref()[field::FLAGS])
    }
    /// Checksum field.
    pub fn checksum(&self) -> u8 {
        self.buffer.as_ref()[field::CHECKSUM]
    }
    /// Fragment index.
    pub fn frag_index(&self) -> u8 {
        self.buffer.as_ref()[field::FRAG_INDEX]
    }
    /// Payload length field.
    pub fn payload_len(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::LENGTH.start], b[field::LENGTH.start + 1]])
    }
    /// The payload (without padding).
    pub fn payload(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &self.buffer.as_ref()[HEADER_LEN..end]
    }
    /// Recompute the checksum and compare.
    pub fn verify_checksum(&self) -> bool {
        self.computed_checksum() == self.checksum()
    }
    fn computed_checksum(&self) -> u8 {
        checksum(&self.buffer.as_ref()[..HEADER_LEN], self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the version.
    pub fn set_version(&mut self, v: Version) {
        let b = self.buffer.as_mut();
        b[field::VER_MAJOR] = v.major;
        b[field::VER_MINOR] = v.minor;
    }
    /// Set the packet number.
    pub fn set_number(&mut self, n: u8) {
        self.buffer.as_mut()[field::NUMBER] = n;
    }
    /// Set the flags.
    pub fn set_flags(&mut self, flags: Flags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }
    /// Set the checksum field to a raw value (see [`Packet::fill_checksum`]).
    pub fn set_checksum(&mut self, c: u8) {
        self.buffer.as_mut()[field::CHECKSUM] = c;
    }
    /// Set the fragment index.
    pub fn set_frag_index(&mut self, i: u8) {
        self.buffer.as_mut()[field::FRAG_INDEX] = i;
    }
    /// Set the payload length.
    pub fn set_payload_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }
    /// The payload, for writing; its length is the payload length field.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
    /// Compute the checksum over header and payload and store it.
    pub fn fill_checksum(&mut self) {
        let c = self.computed_checksum();
        self.set_checksum(c);
    }
}

/// The meaning of an HVNCP header, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Version; [`VERSION`] on everything we send.
    pub version: Version,
    /// Packet number, or acknowledged number when `flags` has ACK.
    pub number: u8,
    /// Flags.
    pub flags: Flags,
    /// Fragment index within the message.
    pub frag_index: u8,
    /// Payload bytes following the header.
    pub payload_len: u16,
}

impl Repr {
    /// Validate a checked packet: version (except on Hellos, whose other fields are
    /// ignored, seed 004 L10443-10449), checksum, and flag rules.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        // One pass over a fixed-size header: this runs for every received frame.
        let buf = packet.buffer.as_ref();
        let Some(h) = buf.first_chunk::<HEADER_LEN>() else {
            return Err(Error::Truncated {
                len: buf.len(),
                need: HEADER_LEN,
            });
        };
        let payload_len = u16::from_be_bytes([h[field::LENGTH.start], h[field::LENGTH.start + 1]]);
        let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + usize::from(payload_len)) else {
            return Err(Error::LengthBeyondFrame {
                len: payload_len,
                available: buf.len() - HEADER_LEN,
            });
        };
        let computed = checksum(h, payload);
        if computed != h[field::CHECKSUM] {
            return Err(Error::BadChecksum {
                found: h[field::CHECKSUM],
                computed,
            });
        }
        let flags = Flags(h[field::FLAGS]).without(Flags::RSV);
        let version = Version {
            major: h[field::VER_MAJOR],
            minor: h[field::VER_MINOR],
        };
        let repr = Repr {
            version,
            number: h[field::NUMBER],
            flags,
            frag_index: h[field::FRAG_INDEX],
            payload_len,
        };
        if flags.contains(Flags::HEL) {
            return Ok(repr);
        }
        if version.major != VERSION.major {
            return Err(Error::BadVersion {
                major: version.major,
                minor: version.minor,
                ours: VERSION.major,
            });
        }
        repr.check_flags()?;
        Ok(repr)
    }

    /// The flag rules of `docs/hvncp.md` §2.2: only what no reading of HVNCP.md allows.
    ///
    /// Everything else a peer following HVNCP.md's letter may send is accepted and given
    /// a meaning by the session (`docs/hvncp.md` §10.1): an ACK carrying `ACKR`, `BEG` or
    /// `END` (ignored), a SYN without `ACKR` (a refresh), a SYN with both `BEG` and `END`
    /// (taken as `BEG`), a packet without `ACKR` whatever its `BEG`/`END` bits and fragment
    /// index (a whole message).
    #[inline]
    fn check_flags(&self) -> Result<()> {
        let f = self.flags;
        let bad = |why| Err(Error::InvalidFlags { flags: f, why });
        if f.contains(Flags::ACK) {
            if self.payload_len != 0 {
                return bad("an ACK has an empty payload");
            }
            return Ok(());
        }
        if f.contains(Flags::SYN) || !f.contains(Flags::ACKR) {
            return Ok(());
        }
        // A fragment of a reliable message: its index places it in the message.
        if f.contains(Flags::BEG) && self.frag_index != 0 {
            return bad("the first packet of a message has fragment index 0");
        }
        if !f.contains(Flags::BEG) && self.frag_index == 0 {
            return bad("a continuation packet has a fragment index above 0");
        }
        Ok(())
    }

    /// Bytes needed to emit header and payload.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len as usize
    }

    /// Write the header into `packet`; the payload must be written afterwards into
    /// [`Packet::payload_mut`], then [`Packet::fill_checksum`] called. Use
    /// [`Repr::emit_with_payload`] to do all three.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version(self.version);
        packet.set_number(self.number);
        packet.set_flags(self.flags);
        packet.set_checksum(0);
        packet.set_frag_index(self.frag_index);
        packet.set_payload_len(self.payload_len);
    }

    /// Write header, `payload` (which must be `payload_len` bytes) and checksum into
    /// `buf`; returns the bytes written.
    pub fn emit_with_payload(&self, buf: &mut [u8], payload: &[u8]) -> Result<usize> {
        let need = self.buffer_len();
        if payload.len() != usize::from(self.payload_len) {
            return Err(Error::LengthBeyondFrame {
                len: self.payload_len,
                available: payload.len(),
            });
        }
        let Some(buf) = buf.get_mut(..need) else {
            return Err(Error::BufferTooSmall {
                len: buf.len(),
                need,
            });
        };
        let mut packet = Packet::new_unchecked(buf);
        self.emit(&mut packet);
        packet.payload_mut().copy_from_slice(payload);
        packet.fill_checksum();
        Ok(need)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // START_HB from the seed trace (seed 004 L11785-11786): packet 9, ACKR, whole message.
    static START_HB_BYTES: [u8; 16] = [
        0x02, 0x00, 0x09, 0xb0, 0x00, 0x00, 0x00, 0x08, b'S', b'T', b'A', b'R', b'T', b'_', b'H',
        b'B',
    ];

    fn start_hb_bytes() -> [u8; 16] {
        let mut b = START_HB_BYTES;
        b[4] = checksum(&b[..8], &b[8..]);
        b
    }

    #[test]
    fn test_deconstruct() {
        let bytes = start_hb_bytes();
        let p = Packet::new_checked(&bytes[..]).expect("valid");
        assert_eq!(p.version(), VERSION);
        assert_eq!(p.number(), 9);
        assert_eq!(p.flags(), Flags::ACKR | Flags::BEG | Flags::END);
        assert_eq!(p.frag_index(), 0);
        assert_eq!(p.payload_len(), 8);
        assert_eq!(p.payload(), b"START_HB");
        assert!(p.verify_checksum());
        // 2+0+9+0xb0+0+8 = 0xc3; "START_HB" sums to 0x277; 0xc3+0x277 = 0x33a -> 0x3a.
        assert_eq!(p.checksum(), 0x3a);
    }

    #[test]
    fn test_construct() {
        let mut buf = [0u8; 16];
        let repr = Repr {
            version: VERSION,
            number: 9,
            flags: Flags::ACKR | Flags::BEG | Flags::END,
            frag_index: 0,
            payload_len: 8,
        };
        assert_eq!(repr.emit_with_payload(&mut buf, b"START_HB"), Ok(16));
        assert_eq!(buf, start_hb_bytes());
    }

    #[test]
    fn test_parse() {
        let bytes = start_hb_bytes();
        let repr = Repr::parse(&Packet::new_checked(&bytes[..]).expect("valid")).expect("valid");
        assert_eq!(repr.number, 9);
        assert_eq!(repr.flags, Flags::ACKR | Flags::BEG | Flags::END);
        assert_eq!(repr.buffer_len(), 16);
    }

    #[test]
    fn test_truncated() {
        let bytes = start_hb_bytes();
        assert_eq!(
            Packet::new_checked(&bytes[..7]).err(),
            Some(Error::Truncated { len: 7, need: 8 })
        );
        assert_eq!(
            Packet::new_checked(&bytes[..12]).err(),
            Some(Error::LengthBeyondFrame {
                len: 8,
                available: 4
            })
        );
    }

    #[test]
    fn bad_checksum_and_version() {
        let mut bytes = start_hb_bytes();
        bytes[4] ^= 0x01;
        let p = Packet::new_checked(&bytes[..]).expect("length ok");
        assert!(matches!(Repr::parse(&p), Err(Error::BadChecksum { .. })));

        let mut bytes = start_hb_bytes();
        bytes[0] = 3;
        bytes[4] = checksum(&bytes[..8], &bytes[8..]);
        let p = Packet::new_checked(&bytes[..]).expect("length ok");
        assert_eq!(
            Repr::parse(&p),
            Err(Error::BadVersion {
                major: 3,
                minor: 0,
                ours: 2
            })
        );
        // A different minor is informational only.
        let mut bytes = start_hb_bytes();
        bytes[1] = 7;
        bytes[4] = checksum(&bytes[..8], &bytes[8..]);
        assert!(Repr::parse(&Packet::new_checked(&bytes[..]).expect("ok")).is_ok());
    }

    fn header(flags: Flags, frag: u8, len: u16) -> Vec<u8> {
        let repr = Repr {
            version: VERSION,
            number: 1,
            flags,
            frag_index: frag,
            payload_len: len,
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        let payload = vec![b'x'; usize::from(len)];
        repr.emit_with_payload(&mut buf, &payload).expect("fits");
        buf
    }

    #[test]
    fn flag_rules() {
        let parse = |b: Vec<u8>| Repr::parse(&Packet::new_checked(&b[..]).expect("len"));
        let invalid = |r: Result<Repr>| matches!(r, Err(Error::InvalidFlags { .. }));
        // An ACK has an empty payload; any other flag on it is tolerated.
        assert!(invalid(parse(header(Flags::ACK, 0, 1))));
        assert!(invalid(parse(header(Flags::ACK | Flags::SYN, 0, 1))));
        for extra in [
            Flags::EMPTY,
            Flags::SYN,
            Flags::ACKR,
            Flags::BEG | Flags::END,
            Flags::PRI,
        ] {
            assert!(
                parse(header(Flags::ACK | extra, 3, 0)).is_ok(),
                "ACK|{extra}"
            );
        }
        // SYNs: with or without ACKR (a refresh), BEG, END, both or neither, any index.
        for extra in [
            Flags::EMPTY,
            Flags::ACKR,
            Flags::ACKR | Flags::BEG,
            Flags::ACKR | Flags::END,
            Flags::ACKR | Flags::BEG | Flags::END,
            Flags::BEG,
        ] {
            assert!(
                parse(header(Flags::SYN | extra, 1, 5)).is_ok(),
                "SYN|{extra}"
            );
        }
        // Without ACKR a packet is a whole message whatever BEG, END and the index say.
        for (flags, index) in [
            (Flags::BEG | Flags::END, 0),
            (Flags::BEG, 0),
            (Flags::END, 4),
            (Flags::EMPTY, 0),
            (Flags::BEG | Flags::END, 7),
        ] {
            assert!(
                parse(header(flags, index, 3)).is_ok(),
                "{flags} index {index}"
            );
        }
        // Fragments of a reliable message: BEG if and only if index 0.
        assert!(invalid(parse(header(Flags::ACKR | Flags::BEG, 2, 3))));
        assert!(invalid(parse(header(
            Flags::ACKR | Flags::BEG | Flags::END,
            1,
            3
        ))));
        assert!(parse(header(Flags::ACKR, 2, 3)).is_ok());
        assert!(invalid(parse(header(Flags::ACKR | Flags::END, 0, 3))));
        assert!(invalid(parse(header(Flags::ACKR, 0, 3))));
        // Reserved bit is ignored; Hello ignores everything else.
        let r = parse(header(Flags::BEG | Flags::END | Flags::RSV, 0, 3)).expect("rsv ignored");
        assert_eq!(r.flags, Flags::BEG | Flags::END);
        let mut hello = header(Flags::HEL | Flags::ACK, 9, 2);
        hello[0] = 9;
        hello[4] = checksum(&hello[..8], &hello[8..]);
        assert!(parse(hello).is_ok());
    }

    #[test]
    fn flags_display() {
        assert_eq!(
            (Flags::SYN | Flags::ACKR | Flags::BEG).to_string(),
            "ACKR|BEG|SYN"
        );
        assert_eq!(Flags::EMPTY.to_string(), "-");
    }
}
