//! The UUID carried in SYN payloads (VM uuid, monitor uuid; seed 004 L11430, L11511).
//!
//! Our own 16-byte type rather than the `uuid` crate: the only operations HVNCP needs are
//! parsing the hyphenated text form and printing it back.

use core::fmt;

use crate::error::IdentityError;
use crate::text::hex_value;

/// A UUID, e.g. `61be20f0-09a8-4753-b5e5-564f8a545ed5` (seed 004 L11447).
///
/// Parsed from 8-4-4-4-12 hexadecimal digits of either case; printed lowercase. `Debug`
/// prints the same text as `Display`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uuid(pub [u8; 16]);

/// Offsets of the four hyphens in the 36-byte text form.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];

impl Uuid {
    /// Length of the text form.
    pub const TEXT_LEN: usize = 36;

    /// Parse the hyphenated text form. Nothing else is accepted: no braces, no `urn:`
    /// prefix, no surrounding spaces.
    pub fn parse(s: &[u8]) -> Result<Uuid, IdentityError> {
        let len = s.len();
        let bad = |offset| IdentityError::BadUuid { offset, len };
        let mut bytes = [0u8; 16];
        let mut nibbles = 0usize;
        for (i, &b) in s.iter().enumerate() {
            if i >= Self::TEXT_LEN {
                return Err(bad(i));
            }
            if HYPHENS.contains(&i) {
                if b != b'-' {
                    return Err(bad(i));
                }
                continue;
            }
            let v = hex_value(b).ok_or(bad(i))?;
            if let Some(byte) = bytes.get_mut(nibbles / 2) {
                *byte = (*byte << 4) | v;
            }
            nibbles += 1;
        }
        if len < Self::TEXT_LEN {
            return Err(bad(len));
        }
        Ok(Uuid(bytes))
    }

    /// The hyphenated lowercase text form.
    pub fn to_text(&self) -> [u8; 36] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'-'; 36];
        let mut pos = 0;
        for byte in self.0 {
            if HYPHENS.contains(&pos) {
                pos += 1;
            }
            for nibble in [byte >> 4, byte & 0x0f] {
                if let (Some(slot), Some(&digit)) = (out.get_mut(pos), HEX.get(usize::from(nibble)))
                {
                    *slot = digit;
                }
                pos += 1;
            }
        }
        out
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.to_text();
        // The text form is ASCII by construction.
        f.write_str(core::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: &[u8] = b"61be20f0-09a8-4753-b5e5-564f8a545ed5"; // seed 004 L11447

    #[test]
    fn test_parse() {
        let u = Uuid::parse(VM).expect("seed uuid is valid");
        assert_eq!(
            u.0,
            [
                0x61, 0xbe, 0x20, 0xf0, 0x09, 0xa8, 0x47, 0x53, 0xb5, 0xe5, 0x56, 0x4f, 0x8a, 0x54,
                0x5e, 0xd5
            ]
        );
        assert_eq!(&u.to_text(), VM);
        assert_eq!(u.to_string().as_bytes(), VM);
        assert_eq!(format!("{u:?}").as_bytes(), VM);
    }

    #[test]
    fn test_parse_either_case() {
        let upper =
            Uuid::parse(b"61BE20F0-09A8-4753-B5E5-564F8A545ED5").expect("upper case is valid");
        assert_eq!(upper, Uuid::parse(VM).expect("seed uuid is valid"));
        assert_eq!(upper.to_string().as_bytes(), VM, "printed lowercase");
    }

    #[test]
    fn test_extremes_and_order() {
        let zero = Uuid::parse(b"00000000-0000-0000-0000-000000000000").expect("nil uuid");
        let max = Uuid::parse(b"ffffffff-ffff-ffff-ffff-ffffffffffff").expect("max uuid");
        assert_eq!(zero, Uuid([0; 16]));
        assert_eq!(max, Uuid([0xff; 16]));
        assert!(zero < max);
    }

    #[test]
    fn test_malformed() {
        let bad = |s: &[u8], offset| {
            (
                s.to_vec(),
                IdentityError::BadUuid {
                    offset,
                    len: s.len(),
                },
            )
        };
        for (text, err) in [
            bad(b"", 0),
            bad(b"61be20f0-09a8-4753-b5e5-564f8a545ed", 35),
            bad(b"61be20f0-09a8-4753-b5e5-564f8a545ed5a", 36),
            bad(b"61be20f0009a8-4753-b5e5-564f8a545ed5", 8),
            bad(b"61be20f-009a8-4753-b5e5-564f8a545ed5", 7),
            bad(b"61be20f0-09a8-4753-b5e5-564f8a545edg", 35),
            bad(b"{1be20f0-09a8-4753-b5e5-564f8a545ed5", 0),
            bad(b" 61be20f0-09a8-4753-b5e5-564f8a545ed5", 0),
            bad(b"61be20f009a84753b5e5564f8a545ed5", 8),
        ] {
            assert_eq!(Uuid::parse(&text), Err(err), "{text:?}");
        }
    }
}
