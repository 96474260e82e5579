//! A whole HVNCP frame: Ethernet header, HVNCP header, payload, padding.

use super::ethernet::{ETHERNET_HEADER_LEN, EthernetView, MIN_FRAME_LEN, MacAddr, emit_header};
use super::hvncp::{HEADER_LEN, Packet, Repr};
use super::{Error, Result};

/// A parsed frame borrowing its payload from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Destination MAC.
    pub dst: MacAddr,
    /// Source MAC: the peer.
    pub src: MacAddr,
    /// The validated HVNCP header.
    pub header: Repr,
    /// Payload, `header.payload_len` bytes, padding stripped.
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Parse and validate one received frame. The one call a receiver makes per frame;
    /// never allocates, never panics.
    #[inline]
    pub fn parse(bytes: &'a [u8], ethertype: u16) -> Result<Frame<'a>> {
        if bytes.len() < ETHERNET_HEADER_LEN + HEADER_LEN {
            return Err(Error::Truncated {
                len: bytes.len(),
                need: ETHERNET_HEADER_LEN + HEADER_LEN,
            });
        }
        let eth = EthernetView::new_checked(bytes)?;
        if eth.ethertype() != ethertype {
            return Err(Error::WrongEtherType {
                found: eth.ethertype(),
                expected: ethertype,
            });
        }
        let rest = &bytes[ETHERNET_HEADER_LEN..];
        // `Repr::parse` checks the lengths before touching anything else.
        let header = Repr::parse(&Packet::new_unchecked(rest))?;
        let payload = rest
            .get(HEADER_LEN..HEADER_LEN + usize::from(header.payload_len))
            .unwrap_or_default();
        Ok(Frame {
            dst: eth.dst(),
            src: eth.src(),
            header,
            payload,
        })
    }

    /// Bytes needed to emit this frame, Ethernet padding included.
    pub fn buffer_len(&self) -> usize {
        frame_len(self.payload.len())
    }

    /// Emit this frame into `buf`; returns its length (at least [`MIN_FRAME_LEN`]).
    pub fn emit(&self, buf: &mut [u8], ethertype: u16) -> Result<usize> {
        FrameBuilder {
            dst: self.dst,
            src: self.src,
            ethertype,
        }
        .emit(buf, &self.header, self.payload)
    }
}

/// Length of a frame carrying `payload_len` bytes, padded to the Ethernet minimum.
pub(crate) fn frame_len(payload_len: usize) -> usize {
    (ETHERNET_HEADER_LEN + HEADER_LEN + payload_len).max(MIN_FRAME_LEN)
}

/// Addresses and EtherType shared by the frames a session sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameBuilder {
    /// Destination MAC.
    pub dst: MacAddr,
    /// Source MAC.
    pub src: MacAddr,
    /// EtherType.
    pub ethertype: u16,
}

impl FrameBuilder {
    /// Emit `header` + `payload` into `buf` with zero padding up to 60 bytes; returns the
    /// frame length. `header.payload_len` must equal `payload.len()`.
    pub fn emit(&self, buf: &mut [u8], header: &Repr, payload: &[u8]) -> Result<usize> {
        let len = frame_len(payload.len());
        let Some(buf) = buf.get_mut(..len) else {
            return Err(Error::BufferTooSmall {
                len: buf.len(),
                need: len,
            });
        };
        emit_header(buf, self.dst, self.src, self.ethertype);
        let used = header.emit_with_payload(&mut buf[ETHERNET_HEADER_LEN..], payload)?;
        buf[ETHERNET_HEADER_LEN + used..].fill(0);
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{DEFAULT_ETHERTYPE, Flags, VERSION};

    const HM: MacAddr = MacAddr([0x6a, 0x6a, 0x08, 0x84, 0xee, 0x11]);
    const VM: MacAddr = MacAddr([0x6a, 0x6a, 0x0f, 0xfd, 0xf7, 0x07]);

    fn hb_repr(number: u8) -> Repr {
        Repr {
            version: VERSION,
            number,
            flags: Flags::BEG | Flags::END,
            frag_index: 0,
            payload_len: 3,
        }
    }

    /// The seed's 3-byte heartbeat (seed 004 L11802) in a padded 60-byte frame.
    #[test]
    fn test_emit_heartbeat_golden() {
        let b = FrameBuilder {
            dst: HM,
            src: VM,
            ethertype: DEFAULT_ETHERTYPE,
        };
        let mut buf = [0xaau8; 128];
        let len = b.emit(&mut buf, &hb_repr(1), b"HB:").expect("fits");
        assert_eq!(len, 60);
        let mut expected = vec![
            0x6a, 0x6a, 0x08, 0x84, 0xee, 0x11, // dst
            0x6a, 0x6a, 0x0f, 0xfd, 0xf7, 0x07, // src
            0x06, 0x00, // EtherType 1536
            0x02, 0x00, 0x01, 0x30, 0x00, 0x00, 0x00, 0x03, // header, checksum below
            b'H', b'B', b':',
        ];
        // 2+1+0x30+3 = 0x36; 'H'+'B'+':' = 0x48+0x42+0x3a = 0xc4; 0x36+0xc4 = 0xfa.
        expected[18] = 0xfa;
        expected.resize(60, 0);
        assert_eq!(&buf[..len], &expected[..]);
        assert!(
            buf[len..].iter().all(|&x| x == 0xaa),
            "nothing written past the frame"
        );
    }

    #[test]
    fn test_parse_strips_padding() {
        let b = FrameBuilder {
            dst: HM,
            src: VM,
            ethertype: DEFAULT_ETHERTYPE,
        };
        let mut buf = [0u8; 60];
        b.emit(&mut buf, &hb_repr(7), b"HB:").expect("fits");
        let f = Frame::parse(&buf, DEFAULT_ETHERTYPE).expect("valid");
        assert_eq!(f.src, VM);
        assert_eq!(f.dst, HM);
        assert_eq!(f.header, hb_repr(7));
        assert_eq!(f.payload, b"HB:");
        // Padding that is not zero does not matter either: it is outside the checksum.
        buf[40] = 0x55;
        assert_eq!(
            Frame::parse(&buf, DEFAULT_ETHERTYPE)
                .expect("valid")
                .payload,
            b"HB:"
        );
    }

    #[test]
    fn test_truncated_and_foreign() {
        let b = FrameBuilder {
            dst: HM,
            src: VM,
            ethertype: DEFAULT_ETHERTYPE,
        };
        let mut buf = [0u8; 60];
        b.emit(&mut buf, &hb_repr(7), b"HB:").expect("fits");
        assert_eq!(
            Frame::parse(&buf[..21], DEFAULT_ETHERTYPE),
            Err(Error::Truncated { len: 21, need: 22 })
        );
        assert_eq!(
            Frame::parse(&buf[..24], DEFAULT_ETHERTYPE),
            Err(Error::LengthBeyondFrame {
                len: 3,
                available: 2
            })
        );
        assert_eq!(
            Frame::parse(&buf, 0x88b5),
            Err(Error::WrongEtherType {
                found: 0x0600,
                expected: 0x88b5
            })
        );
        let mut small = [0u8; 59];
        assert_eq!(
            b.emit(&mut small, &hb_repr(1), b"HB:"),
            Err(Error::BufferTooSmall { len: 59, need: 60 })
        );
    }

    #[test]
    fn emit_parse_round_trip_long_payload() {
        let payload: Vec<u8> = (0..1492u32).map(|i| (i % 251) as u8).collect();
        let repr = Repr {
            version: VERSION,
            number: 200,
            flags: Flags::ACKR | Flags::PRI,
            frag_index: 3,
            payload_len: 1492,
        };
        let f = Frame {
            dst: VM,
            src: HM,
            header: repr,
            payload: &payload,
        };
        let mut buf = vec![0u8; f.buffer_len()];
        assert_eq!(f.emit(&mut buf, DEFAULT_ETHERTYPE), Ok(1514));
        assert_eq!(Frame::parse(&buf, DEFAULT_ETHERTYPE), Ok(f));
    }

    /// The seed trace's frames (seed 004 L11334-11865), byte for byte: header fields as
    /// `docs/hvncp.md` lays them out, checksums computed independently of this crate.
    #[test]
    fn test_emit_seed_frames() {
        /// Source, destination, number, flags, payload, expected checksum.
        type Case = (MacAddr, MacAddr, u8, Flags, &'static [u8], u8);
        let cases: [Case; 5] = [
            // Hello, 23-byte identifier (seed 004 L8313, L11363-11364).
            (HM, MacAddr::BROADCAST, 0, Flags::HEL, b"1556303548.719328000.38", 0xb8),
            // Agent SYN+BEG, 84 bytes (seed 004 L11430-11447).
            (
                VM,
                HM,
                1,
                Flags::ACKR | Flags::BEG | Flags::SYN,
                b"uuid=61be20f0-09a8-4753-b5e5-564f8a545ed5:ostype=AIX:verVmmLower=2.0:verVmmUpper=2.0",
                0x23,
            ),
            // Monitor SYN+END, 58 bytes (seed 004 L11511-11520).
            (
                HM,
                VM,
                9,
                Flags::ACKR | Flags::END | Flags::SYN,
                b"uuid=5c3196a3-c41f-4b5c-9861-dee6077081c6:verHmRunning=2.0",
                0xd2,
            ),
            // The 0-byte SYN acknowledgement (seed 004 L11515-11523).
            (HM, VM, 1, Flags::ACK | Flags::SYN, b"", 0x47),
            // SHDN:DAEMON, 11 bytes (seed 004 L9097-9102).
            (VM, HM, 2, Flags::ACKR | Flags::BEG | Flags::END, b"SHDN:DAEMON", 0xda),
        ];
        for (src, dst, number, flags, payload, checksum) in cases {
            let header = Repr {
                version: VERSION,
                number,
                flags,
                frag_index: 0,
                payload_len: u16::try_from(payload.len()).expect("short"),
            };
            let mut buf = [0u8; 128];
            let len = FrameBuilder {
                dst,
                src,
                ethertype: DEFAULT_ETHERTYPE,
            }
            .emit(&mut buf, &header, payload)
            .expect("fits");
            assert_eq!(len, (22 + payload.len()).max(60));
            let mut expected = Vec::new();
            expected.extend_from_slice(&dst.0);
            expected.extend_from_slice(&src.0);
            expected.extend_from_slice(&[0x06, 0x00, 2, 0, number, flags.bits(), checksum, 0]);
            expected.extend_from_slice(&u16::try_from(payload.len()).expect("short").to_be_bytes());
            expected.extend_from_slice(payload);
            expected.resize(len, 0);
            assert_eq!(&buf[..len], &expected[..], "{flags}");
            let parsed = Frame::parse(&buf[..len], DEFAULT_ETHERTYPE).expect("parses back");
            assert_eq!(parsed.payload, payload);
            assert_eq!(parsed.header, header);
        }
    }
}
