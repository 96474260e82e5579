//! The Hello identifier a host monitor broadcasts (seed 004 L8313).

use core::fmt;

use crate::error::IdentityError;
use crate::text::{Digits, parse_decimal};

/// A Hello identifier: `<unix seconds>.<nanoseconds, exactly 9 digits>.<suffix>`, e.g.
/// `1556303548.719328000.38` (23 bytes, seed 004 L8313).
///
/// The monitor picks it at start; an agent that sees a new id knows the monitor
/// restarted and resynchronises its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HelloId {
    /// Seconds since the Unix epoch when the monitor started.
    pub secs: u64,
    /// Nanoseconds within that second, below 1,000,000,000.
    pub nanos: u32,
    /// Disambiguating suffix chosen by the monitor.
    pub suffix: u32,
}

impl HelloId {
    /// Parse `<secs>.<nanos>.<suffix>`: seconds 1..=20 digits fitting a `u64`,
    /// nanoseconds exactly 9 digits, suffix 1..=10 digits fitting a `u32`. Nothing else:
    /// no sign, no spaces, no fourth part.
    pub fn parse(p: &[u8]) -> Result<HelloId, IdentityError> {
        let bad = |part| IdentityError::BadHelloId { part };
        let mut parts = p.split(|&b| b == b'.');
        let (Some(secs), Some(nanos), Some(suffix), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("layout"));
        };
        let secs = parse_decimal(secs, 20).ok_or(bad("seconds"))?;
        let nanos = if nanos.len() == 9 {
            parse_decimal(nanos, 9)
        } else {
            None
        };
        // Nine digits are always below 1e9.
        let nanos = nanos
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(bad("nanoseconds"))?;
        let suffix = parse_decimal(suffix, 10)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(bad("suffix"))?;
        Ok(HelloId {
            secs,
            nanos,
            suffix,
        })
    }

    /// Length of the text form.
    pub fn encoded_len(&self) -> usize {
        Digits::decimal(self.secs).len() + 1 + 9 + 1 + Digits::decimal(u64::from(self.suffix)).len()
    }

    /// Write the text form into `buf`; returns the bytes written, or `BufferTooSmall`
    /// (and nothing written) if `buf` is shorter than [`encoded_len`](Self::encoded_len).
    pub fn encode_into(&self, buf: &mut [u8]) -> Result<usize, IdentityError> {
        let need = self.encoded_len();
        let len = buf.len();
        let out = buf
            .get_mut(..need)
            .ok_or(IdentityError::BufferTooSmall { len, need })?;
        let mut pos = 0;
        for part in self.parts() {
            let end = pos + part.len();
            if let Some(dst) = out.get_mut(pos..end) {
                dst.copy_from_slice(part.as_bytes());
            }
            pos = end;
        }
        Ok(pos)
    }

    /// Append the text form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        for part in self.parts() {
            out.extend_from_slice(part.as_bytes());
        }
    }

    /// The text form in five pieces: seconds, '.', nanoseconds, '.', suffix.
    fn parts(&self) -> [Part; 5] {
        [
            Part::Digits(Digits::decimal(self.secs)),
            Part::Dot,
            Part::Digits(Digits::decimal_padded(u64::from(self.nanos), 9)),
            Part::Dot,
            Part::Digits(Digits::decimal(u64::from(self.suffix))),
        ]
    }
}

/// A piece of a Hello identifier's text form.
enum Part {
    Digits(Digits),
    Dot,
}

impl Part {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Part::Digits(d) => d.as_bytes(),
            Part::Dot => b".",
        }
    }

    fn len(&self) -> usize {
        self.as_bytes().len()
    }
}

impl fmt::Display for HelloId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}.{}", self.secs, self.nanos, self.suffix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The identifier logged by the monitor at 18:32:28.719 (seed 004 L8313).
    const SEED: &[u8] = b"1556303548.719328000.38";

    #[test]
    fn test_parse() {
        assert_eq!(SEED.len(), 23);
        let id = HelloId::parse(SEED).expect("seed Hello id is valid");
        assert_eq!(
            id,
            HelloId {
                secs: 1_556_303_548,
                nanos: 719_328_000,
                suffix: 38
            }
        );
        assert_eq!(id.to_string().as_bytes(), SEED);
    }

    #[test]
    fn test_emit() {
        let id = HelloId::parse(SEED).expect("seed Hello id is valid");
        assert_eq!(id.encoded_len(), 23);
        let mut buf = [0u8; 32];
        assert_eq!(id.encode_into(&mut buf), Ok(23));
        assert_eq!(&buf[..23], SEED);
        let mut out = b"prefix:".to_vec();
        id.encode(&mut out);
        assert_eq!(&out[7..], SEED, "encode appends");
        assert_eq!(
            id.encode_into(&mut buf[..22]),
            Err(IdentityError::BufferTooSmall { len: 22, need: 23 })
        );
    }

    #[test]
    fn test_nanos_keep_leading_zeros() {
        let id = HelloId {
            secs: 0,
            nanos: 5,
            suffix: 0,
        };
        assert_eq!(id.to_string(), "0.000000005.0");
        let mut out = Vec::new();
        id.encode(&mut out);
        assert_eq!(out, b"0.000000005.0");
        assert_eq!(HelloId::parse(&out), Ok(id));
    }

    #[test]
    fn test_extremes() {
        let id =
            HelloId::parse(b"18446744073709551615.999999999.4294967295").expect("maxima are valid");
        assert_eq!(
            (id.secs, id.nanos, id.suffix),
            (u64::MAX, 999_999_999, u32::MAX)
        );
        let mut out = Vec::new();
        id.encode(&mut out);
        assert_eq!(out, b"18446744073709551615.999999999.4294967295");
        assert_eq!(id.encoded_len(), out.len());
    }

    #[test]
    fn test_malformed() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "layout"),
            (b"1556303548", "layout"),
            (b"1556303548.719328000", "layout"),
            (b"1556303548.719328000.38.1", "layout"),
            (b".719328000.38", "seconds"),
            (b"+1556303548.719328000.38", "seconds"),
            (b" 1556303548.719328000.38", "seconds"),
            (b"18446744073709551616.719328000.38", "seconds"),
            (b"000000000000000000001.719328000.38", "seconds"),
            (b"1556303548.71932800.38", "nanoseconds"),
            (b"1556303548.7193280000.38", "nanoseconds"),
            (b"1556303548.71932800a.38", "nanoseconds"),
            (b"1556303548.719328000.", "suffix"),
            (b"1556303548.719328000.4294967296", "suffix"),
            (b"1556303548.719328000.38 ", "suffix"),
            (b"1556303548.719328000.-38", "suffix"),
        ];
        for &(text, part) in cases {
            assert_eq!(
                HelloId::parse(text),
                Err(IdentityError::BadHelloId { part }),
                "{text:?}"
            );
        }
    }
}
