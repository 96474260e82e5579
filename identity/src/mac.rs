//! 48-bit Ethernet addresses.

use core::fmt;

use crate::text::hex_value;

/// A 48-bit Ethernet address. Printed `6a:6a:0f:fd:f7:07`; `Debug` prints the same.
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

    /// Parse `6a:6a:0f:fd:f7:07`, `6a-6a-…` or the seed's bare `6A6A0FFDF707`: twelve
    /// hexadecimal digits of either case, with ':' or '-' anywhere between them, at most
    /// 17 bytes. `None` for anything else; never allocates.
    pub fn parse(s: &str) -> Option<MacAddr> {
        if s.len() > 17 {
            return None;
        }
        let mut out = [0u8; 6];
        let mut nibbles = 0usize;
        for b in s.bytes() {
            if matches!(b, b':' | b'-') {
                continue;
            }
            let v = hex_value(b)?;
            let byte = out.get_mut(nibbles / 2)?;
            *byte = (*byte << 4) | v;
            nibbles += 1;
        }
        (nibbles == 12).then_some(MacAddr(out))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_display() {
        let m = MacAddr::parse("6A6A0FFDF707").expect("bare seed form");
        assert_eq!(m.to_string(), "6a:6a:0f:fd:f7:07");
        assert_eq!(format!("{m:?}"), "6a:6a:0f:fd:f7:07");
        assert_eq!(MacAddr::parse("6a:6a:0f:fd:f7:07"), Some(m));
        assert_eq!(MacAddr::parse("6a-6a-0f-fd-f7-07"), Some(m));
        assert_eq!(MacAddr::from_u64(m.to_u64()), m);
        assert_eq!(m.to_u64(), 0x6a6a_0ffd_f707);
        assert!(MacAddr::BROADCAST.is_broadcast() && MacAddr::BROADCAST.is_multicast());
        assert!(!m.is_multicast());
    }

    #[test]
    fn mac_malformed() {
        for text in [
            "",
            "6a:6a:0f:fd:f7",
            "6a:6a:0f:fd:f7:07:00",
            "6a6a0ffdf7070",
            "zz:6a:0f:fd:f7:07",
            "é6a:6a:0f:fd:f7:0",
            "6a:6a:0f:fd:f7:0é",
            "6a::6a::0f::fd::f7::07",
            " 6a:6a:0f:fd:f7:07",
            "+6a6a0ffdf707",
        ] {
            assert_eq!(MacAddr::parse(text), None, "{text:?}");
        }
    }
}
