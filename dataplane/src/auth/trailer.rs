//! The authentication trailer: 25 bytes right after the payload of an authenticated
//! frame (`docs/hvncp.md` §7).
//!
//! ```text
//! Ethernet (14) | HVNCP header (8, Rsv set) | payload (len) | trailer (25) | padding
//!
//!  0               1                                               9
//! +---------------+-----------------------------------------------+
//! |    key id     |          send counter (64 bits, big-endian)   |
//! +---------------+-----------------------------------------------+
//! |                 tag (16 bytes): HMAC-SHA256 truncated          |
//! |     over every byte from the Ethernet destination to the      |
//! |                 last byte of the counter                      |
//! +---------------------------------------------------------------+
//! ```
//!
//! The header's `len` covers the payload only, so a 2.0 peer without authentication
//! reads the trailer as Ethernet padding, and ignores the `Rsv` bit: an authenticated
//! frame stays a valid 2.0 frame.
//!
//! Same contract as [`crate::wire`]: [`Trailer::new_checked`] is the only way to view
//! untrusted bytes; after it, no accessor panics.

use super::AuthDrop;

mod field {
    pub const KEY_ID: usize = 0;
    pub const COUNTER: core::ops::Range<usize> = 1..9;
    pub const TAG: core::ops::Range<usize> = 9..25;
}

/// Bytes of the trailer: key id, counter, tag.
pub const TRAILER_LEN: usize = field::TAG.end;

/// Bytes of the truncated tag.
pub const TAG_LEN: usize = field::TAG.end - field::TAG.start;

/// Bytes of the trailer the tag covers (key id and counter).
pub const TAGGED_TRAILER_LEN: usize = field::TAG.start;

/// A zero-copy view of a trailer.
#[derive(Debug, Clone)]
pub struct Trailer<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Trailer<T> {
    /// View `buffer` without any check. Accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Trailer<T> {
        Trailer { buffer }
    }

    /// View `buffer`, checking that the whole trailer is present.
    pub fn new_checked(buffer: T) -> Result<Trailer<T>, AuthDrop> {
        let t = Self::new_unchecked(buffer);
        t.check_len()?;
        Ok(t)
    }

    /// [`AuthDrop::Truncated`] unless the buffer holds [`TRAILER_LEN`] bytes. Bytes after
    /// them (padding) are allowed.
    pub fn check_len(&self) -> Result<(), AuthDrop> {
        let len = self.buffer.as_ref().len();
        if len < TRAILER_LEN {
            return Err(AuthDrop::Truncated {
                len,
                need: TRAILER_LEN,
            });
        }
        Ok(())
    }

    /// Key id.
    pub fn key_id(&self) -> u8 {
        self.buffer.as_ref()[field::KEY_ID]
    }

    /// Send counter.
    pub fn counter(&self) -> u64 {
        let b = self.buffer.as_ref();
        let mut c = [0u8; 8];
        c.copy_from_slice(&b[field::COUNTER]);
        u64::from_be_bytes(c)
    }

    /// The truncated tag.
    pub fn tag(&self) -> [u8; TAG_LEN] {
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(&self.buffer.as_ref()[field::TAG]);
        t
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Trailer<T> {
    /// Set the key id.
    pub fn set_key_id(&mut self, id: u8) {
        self.buffer.as_mut()[field::KEY_ID] = id;
    }
    /// Set the counter.
    pub fn set_counter(&mut self, counter: u64) {
        self.buffer.as_mut()[field::COUNTER].copy_from_slice(&counter.to_be_bytes());
    }
    /// Set the tag.
    pub fn set_tag(&mut self, tag: &[u8; TAG_LEN]) {
        self.buffer.as_mut()[field::TAG].copy_from_slice(tag);
    }
}

/// The meaning of a trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrailerRepr {
    /// Which key made the tag.
    pub key_id: u8,
    /// The sender's counter; never repeats for one sender MAC and key.
    pub counter: u64,
    /// The first 16 bytes of HMAC-SHA256.
    pub tag: [u8; TAG_LEN],
}

impl TrailerRepr {
    /// Read a checked trailer. Never fails: every byte value is a valid field; whether
    /// the tag is right is [`super::Authenticator::open`]'s business.
    pub fn parse<T: AsRef<[u8]>>(t: &Trailer<T>) -> TrailerRepr {
        TrailerRepr {
            key_id: t.key_id(),
            counter: t.counter(),
            tag: t.tag(),
        }
    }

    /// Bytes needed to emit the trailer.
    pub const fn buffer_len(&self) -> usize {
        TRAILER_LEN
    }

    /// Write the trailer into a view of at least [`TRAILER_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, t: &mut Trailer<T>) {
        t.set_key_id(self.key_id);
        t.set_counter(self.counter);
        t.set_tag(&self.tag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BYTES: [u8; 27] = [
        0x07, // key id
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // counter
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, // tag
        0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, //
        0x00, 0x00, // padding
    ];

    fn repr() -> TrailerRepr {
        TrailerRepr {
            key_id: 7,
            counter: 0x0102_0304_0506_0708,
            tag: [
                0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad,
                0xae, 0xaf,
            ],
        }
    }

    #[test]
    fn test_parse() {
        let t = Trailer::new_checked(&BYTES[..]).expect("long enough");
        assert_eq!(TrailerRepr::parse(&t), repr());
    }

    #[test]
    fn test_emit() {
        let mut buf = [0u8; 27];
        repr().emit(&mut Trailer::new_unchecked(&mut buf[..]));
        assert_eq!(buf, BYTES);
        assert_eq!(repr().buffer_len(), TRAILER_LEN);
    }

    #[test]
    fn test_truncated() {
        for len in 0..TRAILER_LEN {
            assert_eq!(
                Trailer::new_checked(&BYTES[..len]).map(|_| ()),
                Err(AuthDrop::Truncated {
                    len,
                    need: TRAILER_LEN
                })
            );
        }
        assert!(Trailer::new_checked(&BYTES[..TRAILER_LEN]).is_ok());
    }
}
