//! Ethernet II framing, read through `pnet_packet`.

use pnet_packet::Packet as _;
use pnet_packet::ethernet::EthernetPacket;

use super::{Error, Result};

/// Length of the Ethernet II header: two MACs and the EtherType.
pub const ETHERNET_HEADER_LEN: usize = 14;

/// Shortest Ethernet frame on the wire without the FCS; shorter frames are padded.
pub const MIN_FRAME_LEN: usize = 60;

/// A 48-bit Ethernet address; defined in `hvha-identity` (std only, shared with `hsdb`).
pub use hvha_identity::MacAddr;

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
    fn test_truncated() {
        assert!(matches!(
            EthernetView::new_checked(&[0u8; 13]),
            Err(Error::Truncated { len: 13, need: 14 })
        ));
    }
}
