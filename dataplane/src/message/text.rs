//! Building blocks shared by every payload: the `key=value` property list, decimal and
//! hexadecimal numbers, `MAJOR.MINOR` versions, and the output sinks of the encoders.
//!
//! Parsers here take `&[u8]` and return `None` or an error, never panic; the encoders
//! format numbers on the stack.

use core::iter::FusedIterator;

use super::error::{MessageError, Result};
use crate::wire::Version;

/// One `key=value` item: the key (never empty) and the value.
pub type Property<'a> = (&'a [u8], &'a [u8]);

/// Iterator over the `key=value` items of a property list separated by ':'
/// (seed 004 L11430-11520).
///
/// The value is everything after the first '=' and may itself contain '='. An empty list
/// yields nothing; an item without '=' or with an empty key is an error item (offsets are
/// relative to the list). Iteration continues after an error item.
#[derive(Debug, Clone)]
pub struct Properties<'a> {
    rest: &'a [u8],
    offset: usize,
    done: bool,
}

impl<'a> Properties<'a> {
    /// Iterate over the properties in `args`.
    pub fn new(args: &'a [u8]) -> Self {
        Properties {
            rest: args,
            offset: 0,
            done: args.is_empty(),
        }
    }

    /// The next item with its offset in the list.
    pub(super) fn next_with_offset(&mut self) -> Option<(usize, Result<Property<'a>>)> {
        if self.done {
            return None;
        }
        let offset = self.offset;
        let item = match self.rest.iter().position(|&b| b == b':') {
            Some(colon) => {
                let (item, tail) = self.rest.split_at(colon);
                self.rest = tail.get(1..).unwrap_or_default();
                self.offset += colon + 1;
                item
            }
            None => {
                self.done = true;
                self.rest
            }
        };
        let parsed = match item.iter().position(|&b| b == b'=') {
            None => Err(MessageError::PropertyWithoutEquals { offset }),
            Some(0) => Err(MessageError::EmptyKey { offset }),
            Some(eq) => {
                let (key, value) = item.split_at(eq);
                Ok((key, value.get(1..).unwrap_or_default()))
            }
        };
        Some((offset, parsed))
    }
}

impl<'a> Iterator for Properties<'a> {
    type Item = Result<Property<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with_offset().map(|(_, item)| item)
    }
}

impl FusedIterator for Properties<'_> {}

/// Store `value` in `slot`, refusing a second occurrence of `key`.
pub(super) fn set_once<'a>(
    slot: &mut Option<&'a [u8]>,
    key: &'static str,
    value: &'a [u8],
) -> Result<()> {
    if slot.replace(value).is_some() {
        return Err(MessageError::DuplicateKey { key });
    }
    Ok(())
}

pub(super) use hvha_identity::text::{hex_value, parse_decimal};

/// A hexadecimal number of 1..=16 digits of either case, no prefix.
pub(super) fn parse_hex(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| {
        let digit = hex_value(b)?;
        Some((acc << 4) | u64::from(digit))
    })
}

/// A version `MAJOR.MINOR`, each part a decimal `u8` (seed 004 L11430: `2.0`).
pub(super) fn parse_version(text: &[u8], key: &'static str) -> Result<Version> {
    let bad = MessageError::BadVersion { key };
    let dot = text.iter().position(|&b| b == b'.').ok_or(bad)?;
    let (major, minor) = text.split_at(dot);
    let minor = minor.get(1..).unwrap_or_default();
    let part = |t: &[u8]| parse_decimal(t, 3).and_then(|n| u8::try_from(n).ok());
    Ok(Version {
        major: part(major).ok_or(bad)?,
        minor: part(minor).ok_or(bad)?,
    })
}

/// Bytes of the text form of `v`.
pub(super) fn version_len(v: Version) -> usize {
    Digits::decimal(u64::from(v.major)).len() + 1 + Digits::decimal(u64::from(v.minor)).len()
}

/// Write the text form of `v`.
pub(super) fn put_version<S: Sink>(s: &mut S, v: Version) -> Result<()> {
    s.put(Digits::decimal(u64::from(v.major)).as_bytes())?;
    s.put(b".")?;
    s.put(Digits::decimal(u64::from(v.minor)).as_bytes())
}

/// A number formatted on the stack: at most 20 decimal or 16 hexadecimal digits.
#[derive(Clone, Copy)]
pub(super) struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    /// `n` in decimal, without leading zeros.
    pub(super) fn decimal(n: u64) -> Digits {
        Digits::radix(n, 10)
    }

    /// `n` in lowercase hexadecimal, without leading zeros or prefix.
    pub(super) fn hex(n: u64) -> Digits {
        Digits::radix(n, 16)
    }

    /// `n` in lowercase hexadecimal, left-padded with zeros to `width` digits
    /// (`width <= 20`).
    pub(super) fn hex_padded(n: u64, width: usize) -> Digits {
        let mut d = Digits::hex(n);
        while d.len() < width && d.start > 0 {
            d.start -= 1;
            if let Some(slot) = d.buf.get_mut(d.start) {
                *slot = b'0';
            }
        }
        d
    }

    fn radix(mut n: u64, radix: u64) -> Digits {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut d = Digits {
            buf: [0; 20],
            start: 20,
        };
        loop {
            d.start -= 1;
            // `n % radix` < 16, so both lookups are in bounds.
            let digit = DIGITS.get(usize::try_from(n % radix).unwrap_or(0));
            if let (Some(slot), Some(&digit)) = (d.buf.get_mut(d.start), digit) {
                *slot = digit;
            }
            n /= radix;
            if n == 0 {
                return d;
            }
        }
    }

    /// The digits.
    pub(super) fn as_bytes(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// Number of digits.
    pub(super) fn len(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// Where an encoder writes: a caller's slice ([`SliceSink`]) or a `Vec`.
pub(super) trait Sink {
    /// Append `bytes`.
    fn put(&mut self, bytes: &[u8]) -> Result<()>;
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// A cursor over a caller's buffer that was checked to hold the whole payload.
pub(super) struct SliceSink<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl<'b> SliceSink<'b> {
    /// A sink over `buf`, or `BufferTooSmall` if it cannot hold `need` bytes.
    pub(super) fn new(buf: &'b mut [u8], need: usize) -> Result<SliceSink<'b>> {
        if buf.len() < need {
            return Err(MessageError::BufferTooSmall {
                len: buf.len(),
                need,
            });
        }
        Ok(SliceSink { buf, pos: 0 })
    }

    /// Bytes written.
    pub(super) fn written(&self) -> usize {
        self.pos
    }
}

impl Sink for SliceSink<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.pos + bytes.len();
        let len = self.buf.len();
        let dst = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(MessageError::BufferTooSmall { len, need: end })?;
        dst.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }
}

/// Shared body of every `encode_into`: check the size up front, then emit.
pub(super) fn encode_into_slice(
    buf: &mut [u8],
    need: usize,
    emit: impl FnOnce(&mut SliceSink<'_>) -> Result<()>,
) -> Result<usize> {
    let mut sink = SliceSink::new(buf, need)?;
    emit(&mut sink)?;
    debug_assert_eq!(sink.written(), need, "encoded_len disagrees with emit");
    Ok(sink.written())
}

/// Shared body of every `encode`: append to a `Vec`, which cannot fail.
pub(super) fn encode_to_vec(
    out: &mut Vec<u8>,
    need: usize,
    emit: impl FnOnce(&mut Vec<u8>) -> Result<()>,
) {
    out.reserve(need);
    let appended = emit(out);
    debug_assert!(appended.is_ok(), "a Vec sink never fails");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(args: &[u8]) -> Vec<Result<(&[u8], &[u8])>> {
        Properties::new(args).collect()
    }

    #[test]
    fn test_properties() {
        assert!(collect(b"").is_empty());
        assert_eq!(
            collect(b"uuid=x:ostype=AIX"),
            vec![
                Ok((&b"uuid"[..], &b"x"[..])),
                Ok((&b"ostype"[..], &b"AIX"[..]))
            ]
        );
        // The value runs to the next ':' and may contain '=' or be empty.
        assert_eq!(
            collect(b"a=b=c:d="),
            vec![Ok((&b"a"[..], &b"b=c"[..])), Ok((&b"d"[..], &b""[..]))]
        );
    }

    #[test]
    fn test_properties_malformed() {
        assert_eq!(
            collect(b"a=1:junk:=2:b=3:"),
            vec![
                Ok((&b"a"[..], &b"1"[..])),
                Err(MessageError::PropertyWithoutEquals { offset: 4 }),
                Err(MessageError::EmptyKey { offset: 9 }),
                Ok((&b"b"[..], &b"3"[..])),
                // A trailing ':' leaves an empty item.
                Err(MessageError::PropertyWithoutEquals { offset: 16 }),
            ]
        );
        assert_eq!(
            collect(b":"),
            vec![
                Err(MessageError::PropertyWithoutEquals { offset: 0 }),
                Err(MessageError::PropertyWithoutEquals { offset: 1 }),
            ]
        );
    }

    #[test]
    fn test_decimal() {
        assert_eq!(parse_decimal(b"0", 20), Some(0));
        assert_eq!(parse_decimal(b"007", 3), Some(7));
        assert_eq!(parse_decimal(b"18446744073709551615", 20), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616", 20), None);
        assert_eq!(parse_decimal(b"1234", 3), None);
        for bad in [&b""[..], b"+1", b"-1", b" 1", b"1 ", b"1a", b"/", b":"] {
            assert_eq!(parse_decimal(bad, 20), None, "{bad:?}");
        }
    }

    #[test]
    fn test_hex() {
        assert_eq!(parse_hex(b"28"), Some(0x28));
        assert_eq!(parse_hex(b"fFfFffffFFFFffff"), Some(u64::MAX));
        assert_eq!(parse_hex(b"10000000000000000"), None);
        assert_eq!(parse_hex(b""), None);
        assert_eq!(parse_hex(b"0x1"), None);
        assert_eq!(parse_hex(b"g"), None);
    }

    #[test]
    fn test_digits() {
        assert_eq!(Digits::decimal(0).as_bytes(), b"0");
        assert_eq!(
            Digits::decimal(u64::MAX).as_bytes(),
            b"18446744073709551615"
        );
        assert_eq!(Digits::hex(0).as_bytes(), b"0");
        assert_eq!(Digits::hex(0xdead_beef).as_bytes(), b"deadbeef");
        assert_eq!(Digits::hex(u64::MAX).as_bytes(), b"ffffffffffffffff");
        assert_eq!(Digits::hex_padded(0xab, 16).as_bytes(), b"00000000000000ab");
        assert_eq!(
            Digits::hex_padded(u64::MAX, 16).as_bytes(),
            b"ffffffffffffffff"
        );
    }

    #[test]
    fn test_version() {
        let v = |major, minor| Version { major, minor };
        assert_eq!(parse_version(b"2.0", "k"), Ok(v(2, 0)));
        assert_eq!(parse_version(b"255.255", "k"), Ok(v(255, 255)));
        let mut out = Vec::new();
        put_version(&mut out, v(255, 7)).expect("a Vec sink never fails");
        assert_eq!(out, b"255.7");
        assert_eq!(version_len(v(255, 7)), 5);
        for bad in [
            &b""[..],
            b"2",
            b"2.",
            b".0",
            b"256.0",
            b"2.256",
            b"2.0.1",
            b"a.b",
            b"-2.0",
            b"2,0",
        ] {
            assert_eq!(
                parse_version(bad, "verX"),
                Err(MessageError::BadVersion { key: "verX" }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn test_slice_sink_too_small() {
        let mut buf = [0u8; 2];
        assert_eq!(
            encode_into_slice(&mut buf, 3, |s| s.put(b"abc")).err(),
            Some(MessageError::BufferTooSmall { len: 2, need: 3 })
        );
    }
}
