//! The one error type of payload parsing and encoding.

use crate::wire::Version;

/// Why a payload was refused, or could not be encoded.
///
/// `Copy` and allocation-free: every field is a number, a byte or a `&'static str` naming
/// the verb, key or rule involved, so a receiver can count and log drops on its hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The payload is empty or starts with ':', so it has no verb.
    #[error("payload has no verb")]
    EmptyVerb,
    /// The verb contains a byte other than `A-Z`, `a-z`, `0-9` and `_`.
    #[error("byte {byte:#04x} at offset {offset} is not allowed in a verb (A-Z, a-z, 0-9, _)")]
    BadVerb {
        /// Offset of the byte in the payload.
        offset: usize,
        /// The offending byte.
        byte: u8,
    },
    /// The verb is longer than [`MAX_VERB_LEN`](super::MAX_VERB_LEN).
    #[error("verb of {len} bytes is longer than {max}")]
    VerbTooLong {
        /// Length of the verb.
        len: usize,
        /// Longest verb allowed.
        max: usize,
    },
    /// A verb that needs arguments has none (or an empty argument string).
    #[error("{verb}: arguments missing")]
    MissingArgs {
        /// The verb.
        verb: &'static str,
    },
    /// The arguments of a known verb break its grammar; `why` states the rule.
    #[error("{verb}: {why} (at byte {offset} of the payload)")]
    BadArgs {
        /// The verb.
        verb: &'static str,
        /// Offset in the payload where the problem starts.
        offset: usize,
        /// The rule that is broken.
        why: &'static str,
    },
    /// The argument of a known verb has a length outside its allowed range.
    #[error("{verb}: argument of {len} bytes, allowed {min}..={max}")]
    ArgLength {
        /// The verb.
        verb: &'static str,
        /// Length found.
        len: usize,
        /// Shortest allowed.
        min: usize,
        /// Longest allowed.
        max: usize,
    },
    /// A numeric argument of a known verb is outside its allowed range.
    #[error("{verb}: {key}={value} is outside {min}..={max}")]
    ArgOutOfRange {
        /// The verb.
        verb: &'static str,
        /// The property carrying the number.
        key: &'static str,
        /// Value found.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A property item has no '=' separating key and value.
    #[error("property at offset {offset} has no '='")]
    PropertyWithoutEquals {
        /// Offset of the item in the property list.
        offset: usize,
    },
    /// A property item has an empty key (`=value`).
    #[error("property at offset {offset} has an empty key")]
    EmptyKey {
        /// Offset of the item in the property list.
        offset: usize,
    },
    /// A required property is absent.
    #[error("required property '{key}' is missing")]
    MissingKey {
        /// The missing key.
        key: &'static str,
    },
    /// A property appears more than once.
    #[error("property '{key}' appears more than once")]
    DuplicateKey {
        /// The repeated key.
        key: &'static str,
    },
    /// A property value is not a version `MAJOR.MINOR` with decimal parts in 0..=255.
    #[error("'{key}' is not a version MAJOR.MINOR with both parts in 0..=255")]
    BadVersion {
        /// The key of the value.
        key: &'static str,
    },
    /// The agent's incarnation is not 1..=16 hexadecimal digits.
    #[error("inc of {len} bytes is not 1..=16 hexadecimal digits")]
    BadIncarnation {
        /// Length of the value.
        len: usize,
    },
    /// An agent offered a version range whose lower bound is above its upper bound.
    #[error("verVmmLower {lower} is above verVmmUpper {upper}")]
    VersionOrder {
        /// `verVmmLower`.
        lower: Version,
        /// `verVmmUpper`.
        upper: Version,
    },
    /// `ostype` is not 1..=`max` bytes of `A-Z a-z 0-9 _ . -`.
    #[error("ostype of {len} bytes is not 1..={max} bytes of A-Z, a-z, 0-9, '_', '.', '-'")]
    BadOsType {
        /// Length of the value.
        len: usize,
        /// Longest allowed.
        max: usize,
    },
    /// A UUID is not 36 bytes of 8-4-4-4-12 hexadecimal digits and hyphens.
    #[error("uuid is not 8-4-4-4-12 hex digits (problem at byte {offset} of {len})")]
    BadUuid {
        /// Offset of the first byte that breaks the format (`len` if the text is short).
        offset: usize,
        /// Length of the text.
        len: usize,
    },
    /// A Hello identifier is not `<secs>.<nanos>.<suffix>`; `part` names the bad part.
    #[error(
        "Hello id is not <1..=20 digit secs>.<9 digit nanos>.<1..=10 digit suffix>: bad {part}"
    )]
    BadHelloId {
        /// `"seconds"`, `"nanoseconds"`, `"suffix"` or `"layout"` (wrong number of dots).
        part: &'static str,
    },
    /// The output buffer is too small for the encoded payload.
    #[error("buffer of {len} bytes too small, need {need}")]
    BufferTooSmall {
        /// Buffer length.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
}

/// Result of payload parsing and encoding.
pub type Result<T> = core::result::Result<T, MessageError>;

impl From<hvha_identity::IdentityError> for MessageError {
    fn from(e: hvha_identity::IdentityError) -> MessageError {
        use hvha_identity::IdentityError as E;
        match e {
            E::BadUuid { offset, len } => MessageError::BadUuid { offset, len },
            E::BadHelloId { part } => MessageError::BadHelloId { part },
            E::BufferTooSmall { len, need } => MessageError::BufferTooSmall { len, need },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MessageError;
    use hvha_identity::IdentityError;

    /// An identity error becomes the `MessageError` of the same name, saying the same.
    #[test]
    fn identity_errors_convert_word_for_word() {
        for (e, want) in [
            (
                IdentityError::BadUuid { offset: 8, len: 36 },
                MessageError::BadUuid { offset: 8, len: 36 },
            ),
            (
                IdentityError::BadHelloId { part: "suffix" },
                MessageError::BadHelloId { part: "suffix" },
            ),
            (
                IdentityError::BufferTooSmall { len: 3, need: 23 },
                MessageError::BufferTooSmall { len: 3, need: 23 },
            ),
        ] {
            assert_eq!(e.to_string(), want.to_string());
            assert_eq!(MessageError::from(e), want);
        }
    }
}
