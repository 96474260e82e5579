//! Digits in and out, without allocating. [`hex_value`] and [`parse_decimal`] are also
//! what `dataplane`'s message codec parses numbers with.

/// The value of one hexadecimal digit of either case.
pub fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A decimal number of 1..=`max_digits` ASCII digits (leading zeros allowed) that fits
/// a `u64`. No sign, no spaces.
pub fn parse_decimal(text: &[u8], max_digits: usize) -> Option<u64> {
    if text.is_empty() || text.len() > max_digits {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// A number in decimal on the stack: at most 20 digits.
#[derive(Clone, Copy)]
pub(crate) struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    /// `n` in decimal, without leading zeros.
    pub(crate) fn decimal(mut n: u64) -> Digits {
        let mut d = Digits {
            buf: [b'0'; 20],
            start: 20,
        };
        loop {
            d.start -= 1;
            if let Some(slot) = d.buf.get_mut(d.start) {
                // `n % 10` < 10: the cast cannot truncate.
                *slot = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 {
                return d;
            }
        }
    }

    /// `n` in decimal, left-padded with zeros to `width` digits (at most 20).
    pub(crate) fn decimal_padded(n: u64, width: usize) -> Digits {
        let mut d = Digits::decimal(n);
        // The buffer starts as all '0', so padding is moving the start.
        d.start = d.start.min(20usize.saturating_sub(width));
        d
    }

    /// The digits.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// Number of digits.
    pub(crate) fn len(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_digits() {
        assert_eq!(Digits::decimal(0).as_bytes(), b"0");
        assert_eq!(Digits::decimal(1_556_303_548).as_bytes(), b"1556303548");
        assert_eq!(
            Digits::decimal(u64::MAX).as_bytes(),
            b"18446744073709551615"
        );
        assert_eq!(Digits::decimal(u64::MAX).len(), 20);
        assert_eq!(Digits::decimal_padded(5, 9).as_bytes(), b"000000005");
        assert_eq!(Digits::decimal_padded(0, 9).len(), 9);
        assert_eq!(
            Digits::decimal_padded(719_328_000, 9).as_bytes(),
            b"719328000"
        );
        assert_eq!(
            Digits::decimal_padded(1_234_567_890, 9).as_bytes(),
            b"1234567890"
        );
        assert_eq!(
            Digits::decimal_padded(7, 40).len(),
            20,
            "never past the buffer"
        );
    }

    #[test]
    fn test_parse_decimal() {
        assert_eq!(parse_decimal(b"007", 3), Some(7));
        assert_eq!(parse_decimal(b"0007", 3), None);
        assert_eq!(parse_decimal(b"", 3), None);
        assert_eq!(parse_decimal(b"1a", 3), None);
        assert_eq!(parse_decimal(b"18446744073709551616", 20), None);
        assert_eq!(hex_value(b'F'), Some(15));
        assert_eq!(hex_value(b'g'), None);
    }
}
