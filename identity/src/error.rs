//! The one error type of the identity parsers and encoders.

use core::fmt;

/// Why an identity's text was refused, or could not be encoded.
///
/// `Copy` and allocation-free, like `dataplane`'s `MessageError`, into which it converts
/// (same variants, same messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityError {
    /// A UUID is not 36 bytes of 8-4-4-4-12 hexadecimal digits and hyphens.
    BadUuid {
        /// Offset of the first byte that breaks the format (`len` if the text is short).
        offset: usize,
        /// Length of the text.
        len: usize,
    },
    /// A Hello identifier is not `<secs>.<nanos>.<suffix>`; `part` names the bad part.
    BadHelloId {
        /// `"seconds"`, `"nanoseconds"`, `"suffix"` or `"layout"` (wrong number of dots).
        part: &'static str,
    },
    /// The output buffer is too small for the encoded text.
    BufferTooSmall {
        /// Buffer length.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IdentityError::BadUuid { offset, len } => write!(
                f,
                "uuid is not 8-4-4-4-12 hex digits (problem at byte {offset} of {len})"
            ),
            IdentityError::BadHelloId { part } => write!(
                f,
                "Hello id is not <1..=20 digit secs>.<9 digit nanos>.<1..=10 digit suffix>: bad {part}"
            ),
            IdentityError::BufferTooSmall { len, need } => {
                write!(f, "buffer of {len} bytes too small, need {need}")
            }
        }
    }
}

impl std::error::Error for IdentityError {}
