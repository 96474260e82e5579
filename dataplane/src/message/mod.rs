//! HVNCP payloads as typed values (docs/hvncp.md §4).
//!
//! A payload is ASCII text, `VERB` or `VERB:ARGS`; properties are `key=value` pairs joined
//! by ':' (seed 004 L11430-11520). This module owns the text of every payload HVNCP
//! carries:
//!
//! - [`Message`]: the application messages (`START_HB`, `HB:`, `SHDN:DAEMON`, `DBELL:…`,
//!   the application-report exchange) and any unknown verb, preserved verbatim;
//! - [`AgentSyn`] / [`MonitorSyn`]: the property lists of the two SYN packets;
//! - [`HelloId`]: the identifier a monitor broadcasts in Hello packets;
//! - [`Uuid`], [`Properties`] and [`MessageError`], their building blocks.
//!
//! Everything parsed here comes from untrusted guests. Parsing works on `&[u8]` (a payload
//! need not be UTF-8), borrows from the input, never allocates and never panics; every
//! refusal is a typed [`MessageError`] naming the verb, key or rule at fault. Encoding is
//! `encoded_len` + `encode_into` (a caller's buffer, no allocation) or `encode` (appends
//! to a `Vec`). For every payload that parses, encoding the value gives a payload that
//! parses to the same value, and canonical payloads (those we emit, and any unknown verb)
//! come back byte for byte.
//!
//! Encoding writes fields as they are: a value built by hand that breaks a field rule
//! (say a `Shutdown` reason with a control byte) encodes to a payload peers will refuse.
//!
//! This module knows nothing of sessions, flags or fragmentation: which packet carries
//! which payload is [`session`](crate::session)'s business.

mod error;
mod syn;
mod text;

#[cfg(test)]
mod tests;

use core::ops::RangeInclusive;

pub use self::error::{MessageError, Result};
pub use self::syn::{AgentSyn, MAX_OSTYPE_LEN, MonitorSyn};
pub use self::text::{Properties, Property};
pub use crate::wire::Version;
/// The identity types live in `hvha-identity` (std only, shared with `hsdb`); their
/// parsers' errors convert into [`MessageError`].
pub use hvha_identity::{HelloId, IdentityError, Uuid};

use self::text::{Digits, Sink, encode_into_slice, encode_to_vec, parse_decimal, parse_hex};

/// Longest verb accepted.
pub const MAX_VERB_LEN: usize = 32;

/// Heartbeat periods a monitor may ask for in `START_HB:period_ms=<n>`.
pub const PERIOD_MS_RANGE: RangeInclusive<u32> = 100..=3_600_000;

/// Longest `SHDN` reason accepted.
pub const MAX_REASON_LEN: usize = 32;

/// Most hexadecimal digits in a `DBELL` vector (a `u64`).
const MAX_VECTOR_DIGITS: usize = 16;

/// The verbs of docs/hvncp.md §4, as `&'static str` so that errors can name them.
mod verb {
    pub const START_HB: &str = "START_HB";
    pub const STOP_HB: &str = "STOP_HB";
    pub const HB: &str = "HB";
    pub const SHDN: &str = "SHDN";
    pub const DBELL: &str = "DBELL";
    pub const PMSG_REQ: &str = "PMSG_REQ";
    pub const PMSG_RSP: &str = "PMSG_RSP";
    pub const GMSG: &str = "GMSG";
    pub const CLRDB: &str = "CLRDB";
}

/// True when `payload` is a heartbeat (`HB:` in any case and form, docs/hvncp.md §4.1):
/// what a monitor counts as liveness even when the packet's number was already seen.
pub fn is_heartbeat(payload: &[u8]) -> bool {
    matches!(Message::parse(payload), Ok(Message::Heartbeat { .. }))
}

/// One application-level message (docs/hvncp.md §4), borrowing from its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Monitor → agent: start sending heartbeats, every `period_ms` if given.
    /// `START_HB` or `START_HB:period_ms=<n>`, n in [`PERIOD_MS_RANGE`].
    StartHb {
        /// Requested heartbeat period in milliseconds; `None`: the agent's default.
        period_ms: Option<u32>,
    },
    /// Monitor → agent: monitoring of this VM stopped. `STOP_HB`.
    StopHb,
    /// Agent → monitor: the liveness signal. `HB:` as the seed sends it, or `HB:seq=<n>`.
    Heartbeat {
        /// Optional sequence number; `None` encodes as `HB:`.
        seq: Option<u64>,
    },
    /// Agent → monitor: graceful stop, e.g. `SHDN:DAEMON` (seed 004 L9097-9102); the VM
    /// becomes SUSPENDED, not MISSING.
    Shutdown {
        /// Why the agent stops: 1..=[`MAX_REASON_LEN`] bytes of printable ASCII.
        reason: &'a [u8],
    },
    /// Agent → monitor: application status changed. `DBELL:<hex>`, e.g. `DBELL:28`.
    Doorbell {
        /// The doorbell vector; parsed from 1..=16 hex digits (optional `0x`), emitted in
        /// lowercase without prefix.
        vector: u64,
    },
    /// Application-report request, `PMSG_REQ:<args>` (seed 004 L8177-8195).
    PmsgReq {
        /// Opaque, non-empty arguments.
        args: &'a [u8],
    },
    /// Application-report response, `PMSG_RSP:<args>`.
    PmsgRsp {
        /// Opaque, non-empty arguments.
        args: &'a [u8],
    },
    /// Confirmation that a report arrived, `GMSG:<args>`.
    Gmsg {
        /// Opaque, non-empty arguments.
        args: &'a [u8],
    },
    /// Clear the pending report cycle, `CLRDB` or `CLRDB:<args>`.
    ClearDb {
        /// Opaque arguments, possibly empty.
        args: &'a [u8],
    },
    /// Any other well-formed verb, kept verbatim so that it can be counted, acknowledged
    /// and re-encoded byte for byte.
    Unknown {
        /// The verb: 1..=[`MAX_VERB_LEN`] bytes of `A-Z a-z 0-9 _`, in the sender's case.
        verb: &'a [u8],
        /// Everything after the first ':', if there was one.
        args: Option<&'a [u8]>,
    },
}

/// The part of an encoded message after the verb and separator.
enum Arg<'a> {
    None,
    Bytes(&'a [u8]),
    Number(Digits),
}

impl Arg<'_> {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Arg::None => b"",
            Arg::Bytes(bytes) => bytes,
            Arg::Number(digits) => digits.as_bytes(),
        }
    }
}

impl<'a> Message<'a> {
    /// Parse a payload.
    ///
    /// Verbs are matched in any letter case (`hb:`, `dbell:28` and `Start_HB` are the
    /// known verbs); property keys too. Known verbs with malformed arguments are refused
    /// with an error naming the verb; unknown verbs are returned as [`Message::Unknown`].
    /// `START_HB`, `STOP_HB` and `HB` carry properties: keys this version does not know
    /// are ignored (a newer peer may add some), a repeated known key is refused.
    pub fn parse(payload: &'a [u8]) -> Result<Message<'a>> {
        // The hot path: every heartbeat a monitor receives is exactly this (seed 004).
        if payload == b"HB:" {
            return Ok(Message::Heartbeat { seq: None });
        }
        let (verb, args) = split_verb(payload)?;
        // Offset of the arguments in the payload, for error reports.
        let base = verb.len() + 1;
        // Verbs in any case (seed 004 writes `dbell`); the copy lives on the stack.
        let mut upper = [0u8; MAX_VERB_LEN];
        let upper = match upper.get_mut(..verb.len()) {
            Some(slot) => {
                slot.copy_from_slice(verb);
                slot.make_ascii_uppercase();
                &*slot
            }
            None => verb,
        };
        Ok(match upper {
            b"HB" => Message::Heartbeat {
                seq: match lone_property(verb::HB, b"seq", args, base)? {
                    None => None,
                    Some((offset, value)) => {
                        Some(parse_decimal(value, 20).ok_or(MessageError::BadArgs {
                            verb: verb::HB,
                            offset,
                            why: "seq must be a decimal number below 2^64",
                        })?)
                    }
                },
            },
            b"START_HB" => Message::StartHb {
                period_ms: match lone_property(verb::START_HB, b"period_ms", args, base)? {
                    None => None,
                    Some((offset, value)) => Some(parse_period(value, offset)?),
                },
            },
            b"STOP_HB" => {
                // No key is defined yet; the list must still be well formed. Keys are never
                // empty, so `b""` matches none.
                lone_property(verb::STOP_HB, b"", args, base)?;
                Message::StopHb
            }
            b"SHDN" => Message::Shutdown {
                reason: parse_reason(required(verb::SHDN, args)?, base)?,
            },
            b"DBELL" => Message::Doorbell {
                vector: parse_vector(required(verb::DBELL, args)?, base)?,
            },
            b"PMSG_REQ" => Message::PmsgReq {
                args: required(verb::PMSG_REQ, args)?,
            },
            b"PMSG_RSP" => Message::PmsgRsp {
                args: required(verb::PMSG_RSP, args)?,
            },
            b"GMSG" => Message::Gmsg {
                args: required(verb::GMSG, args)?,
            },
            b"CLRDB" => Message::ClearDb {
                args: args.unwrap_or_default(),
            },
            _ => Message::Unknown { verb, args },
        })
    }

    /// The verb, e.g. `b"HB"`.
    pub fn verb(&self) -> &'a [u8] {
        let known = match self {
            Message::StartHb { .. } => verb::START_HB,
            Message::StopHb => verb::STOP_HB,
            Message::Heartbeat { .. } => verb::HB,
            Message::Shutdown { .. } => verb::SHDN,
            Message::Doorbell { .. } => verb::DBELL,
            Message::PmsgReq { .. } => verb::PMSG_REQ,
            Message::PmsgRsp { .. } => verb::PMSG_RSP,
            Message::Gmsg { .. } => verb::GMSG,
            Message::ClearDb { .. } => verb::CLRDB,
            Message::Unknown { verb, .. } => return verb,
        };
        known.as_bytes()
    }

    /// Length of the encoded payload.
    pub fn encoded_len(&self) -> usize {
        let (sep, arg) = self.tail();
        self.verb().len() + sep.len() + arg.as_bytes().len()
    }

    /// Write the payload into `buf`, without allocating; returns the bytes written.
    pub fn encode_into(&self, buf: &mut [u8]) -> Result<usize> {
        encode_into_slice(buf, self.encoded_len(), |s| self.emit(s))
    }

    /// Append the payload to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_to_vec(out, self.encoded_len(), |s| self.emit(s));
    }

    fn emit<S: Sink>(&self, s: &mut S) -> Result<()> {
        let (sep, arg) = self.tail();
        s.put(self.verb())?;
        s.put(sep)?;
        s.put(arg.as_bytes())
    }

    /// What follows the verb: the separator (with the key, for properties) and the value.
    /// The one place that defines the canonical text of each message.
    fn tail(&self) -> (&'static [u8], Arg<'a>) {
        match *self {
            // `CLRDB` and an unknown verb without arguments have no ':' either.
            Message::StartHb { period_ms: None }
            | Message::StopHb
            | Message::ClearDb { args: [] }
            | Message::Unknown { args: None, .. } => (b"", Arg::None),
            Message::StartHb {
                period_ms: Some(ms),
            } => (b":period_ms=", Arg::Number(Digits::decimal(u64::from(ms)))),
            // `HB:` with the colon, as the seed's agents send it.
            Message::Heartbeat { seq: None } => (b":", Arg::None),
            Message::Heartbeat { seq: Some(seq) } => (b":seq=", Arg::Number(Digits::decimal(seq))),
            Message::Doorbell { vector } => (b":", Arg::Number(Digits::hex(vector))),
            Message::Shutdown { reason: args }
            | Message::PmsgReq { args }
            | Message::PmsgRsp { args }
            | Message::Gmsg { args }
            | Message::ClearDb { args }
            | Message::Unknown {
                args: Some(args), ..
            } => (b":", Arg::Bytes(args)),
        }
    }
}

/// Split `VERB[:ARGS]` at the first ':' and check the verb.
fn split_verb(payload: &[u8]) -> Result<(&[u8], Option<&[u8]>)> {
    let (verb, args) = match payload.iter().position(|&b| b == b':') {
        Some(colon) => {
            let (verb, rest) = payload.split_at(colon);
            (verb, Some(rest.get(1..).unwrap_or_default()))
        }
        None => (payload, None),
    };
    if verb.is_empty() {
        return Err(MessageError::EmptyVerb);
    }
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    if let Some(offset) = verb.iter().take(MAX_VERB_LEN + 1).position(|b| !allowed(b)) {
        let byte = verb.get(offset).copied().unwrap_or_default();
        return Err(MessageError::BadVerb { offset, byte });
    }
    if verb.len() > MAX_VERB_LEN {
        return Err(MessageError::VerbTooLong {
            len: verb.len(),
            max: MAX_VERB_LEN,
        });
    }
    Ok((verb, args))
}

/// Non-empty arguments of `verb`.
fn required<'a>(verb: &'static str, args: Option<&'a [u8]>) -> Result<&'a [u8]> {
    match args {
        Some(args) if !args.is_empty() => Ok(args),
        _ => Err(MessageError::MissingArgs { verb }),
    }
}

/// The value of `key` in the property list `args` of `verb`, with its offset in the
/// payload (`base` is the offset of `args`). Other keys are ignored.
fn lone_property<'a>(
    verb: &'static str,
    key: &[u8],
    args: Option<&'a [u8]>,
    base: usize,
) -> Result<Option<(usize, &'a [u8])>> {
    let mut found = None;
    let mut props = Properties::new(args.unwrap_or_default());
    while let Some((offset, item)) = props.next_with_offset() {
        let offset = base + offset;
        let bad = |why| MessageError::BadArgs { verb, offset, why };
        match item {
            Err(MessageError::EmptyKey { .. }) => return Err(bad("property with an empty key")),
            Err(_) => return Err(bad("property without '='")),
            Ok((k, value)) if k.eq_ignore_ascii_case(key) => {
                if found.is_some() {
                    return Err(bad("property repeated"));
                }
                // The value starts after `key=`.
                found = Some((offset + k.len() + 1, value));
            }
            Ok(_) => {}
        }
    }
    Ok(found)
}

/// `period_ms` of `START_HB`, within [`PERIOD_MS_RANGE`].
fn parse_period(value: &[u8], offset: usize) -> Result<u32> {
    let n = parse_decimal(value, 20).ok_or(MessageError::BadArgs {
        verb: verb::START_HB,
        offset,
        why: "period_ms must be a decimal number in 100..=3600000",
    })?;
    u32::try_from(n)
        .ok()
        .filter(|ms| PERIOD_MS_RANGE.contains(ms))
        .ok_or(MessageError::ArgOutOfRange {
            verb: verb::START_HB,
            key: "period_ms",
            value: n,
            min: u64::from(*PERIOD_MS_RANGE.start()),
            max: u64::from(*PERIOD_MS_RANGE.end()),
        })
}

/// The `SHDN` reason: 1..=[`MAX_REASON_LEN`] bytes of printable ASCII (space included).
fn parse_reason(reason: &[u8], base: usize) -> Result<&[u8]> {
    if reason.len() > MAX_REASON_LEN {
        return Err(MessageError::ArgLength {
            verb: verb::SHDN,
            len: reason.len(),
            min: 1,
            max: MAX_REASON_LEN,
        });
    }
    if let Some(i) = reason.iter().position(|b| !matches!(b, b' '..=b'~')) {
        return Err(MessageError::BadArgs {
            verb: verb::SHDN,
            offset: base + i,
            why: "reason must be printable ASCII",
        });
    }
    Ok(reason)
}

/// The `DBELL` vector: 1..=16 hex digits of either case, optionally prefixed by `0x`.
fn parse_vector(text: &[u8], base: usize) -> Result<u64> {
    let (digits, base) = match text.strip_prefix(b"0x") {
        Some(digits) => (digits, base + 2),
        None => (text, base),
    };
    if digits.is_empty() || digits.len() > MAX_VECTOR_DIGITS {
        return Err(MessageError::ArgLength {
            verb: verb::DBELL,
            len: digits.len(),
            min: 1,
            max: MAX_VECTOR_DIGITS,
        });
    }
    parse_hex(digits).ok_or_else(|| MessageError::BadArgs {
        verb: verb::DBELL,
        offset: base
            + digits
                .iter()
                .position(|b| !b.is_ascii_hexdigit())
                .unwrap_or(0),
        why: "vector must be hexadecimal digits",
    })
}
