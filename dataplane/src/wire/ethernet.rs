//! Ethernet II framing, read through `pnet_packet`.

use std::fmt;

use pnet_packet::Packet as _;
use pnet_packet::ethernet::EthernetPacket;

use super::{Error, Result};

/// Length of the Ethernet II header: two MACs and the EtherType.
pub const ETHERNET_HEADER_LEN: usize = 14;

/// Shortest Ethernet frame on the wire without the FCS; shorter frames are padded.
pub const MIN_FRAME_LEN: usize = 60;

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`, where Hellos go (seed 004 L8371-8377).
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// True for the broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True for group (multicast or broadcast) addresses: bit 0 of the first octet.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// The address as a 64-bit integer (high 16 bits zero); handy for hashing and ids.
    pub fn to_u64(&self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The address whose 48 low bits are those of `v`.
    pub fn from_u64(v: u64) -> MacAddr {
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// Parse `6a:6a:0f:fd:f7:07`, `6a-6a-…` or the seed's bare `6A6A0FFDF707`.
    pub fn parse(s: &str) -> Option<MacAddr> {
        let hex: Vec<u8> = s.bytes().filter(|c| !matches!(c, b':' | b'-')).collect();
        if hex.len() != 12 || s.len() > 17 {
            return None;
        }
        let mut out = [0u8; 6];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = u8::try_from(hi * 16 + lo).ok()?;
        }
        Some(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A checked, zero-copy view of an Ethernet II frame.
pub struct EthernetView<'a> {
    inner: EthernetPacket<'a>,
}

impl<'a> EthernetView<'a> {
    /// View `bytes` as an Ethernet frame; `Truncated` if shorter than the header.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self> {
        match EthernetPacket::new(bytes) {
            Some(inner) => Ok(EthernetView { inner }),
            None => Err(Error::Truncated {
                len: bytes.len(),
                need: ETHERNET_HEADER_LEN,
            }),
        }
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> MacAddr {
        mac_at(self.inner.packet(), 0)
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> MacAddr {
        mac_at(self.inner.packet(), 6)
    }

    /// EtherType.
    pub fn ethertype(&self) -> u16 {
        self.inner.get_ethertype().0
    }

    /// Everything after the 14-byte header, padding included.
    pub fn payload(&self) -> &[u8] {
        self.inner.payload()
    }
}

/// The six bytes at `offset` as an address (one bounds check, not six as pnet's
/// generated getters do; `EthernetPacket::new` already checked the length).
#[inline]
fn mac_at(bytes: &[u8], offset: usize) -> MacAddr {
    bytes
        .get(offset..offset + 6)
        .and_then(|b| <[u8; 6]>::try_from(b).ok())
        .map_or(MacAddr::default(), MacAddr)
}

/// Write an Ethernet II header at the start of `buf` (at least 14 bytes long).
pub(crate) fn emit_header(buf: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: u16) {
    buf[0..6].copy_from_slice(&dst.0);
    buf[6..12].copy_from_slice(&src.0);
    buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_display() {
        let m = MacAddr::parse("6A6A0FFDF707").expect("bare seed form");
        assert_eq!(m.to_string(), "6a:6a:0f:fd:f7:07");
        assert_eq!(MacAddr::parse("6a:6a:0f:fd:f7:07"), Some(m));
        assert_eq!(MacAddr::parse("6a-6a-0f-fd-f7-07"), Some(m));
        assert_eq!(MacAddr::parse("6a:6a:0f:fd:f7"), None);
        assert_eq!(MacAddr::parse("zz:6a:0f:fd:f7:07"), None);
        assert_eq!(MacAddr::parse("é6a:6a:0f:fd:f7:0"), None);
        assert_eq!(MacAddr::from_u64(m.to_u64()), m);
        assert!(MacAddr::BROADCAST.is_broadcast() && MacAddr::BROADCAST.is_multicast());
        assert!(!m.is_multicast());
    }

    #[test]
    fn test_truncated() {
        assert!(matches!(
            EthernetView::new_checked(&[0u8; 13]),
            Err(Error::Truncated { len: 13, need: 14 })
        ));
    }
}
