//! Any bytes as an HVNCP payload, through every parser of `dataplane::message`.
//!
//! The first byte picks the parser, the rest is the payload:
//!
//! | `data[0] % 6` | parser |
//! |---|---|
//! | 0 | [`Message::parse`] |
//! | 1 | [`HelloId::parse`] |
//! | 2 | [`AgentSyn::parse`] |
//! | 3 | [`MonitorSyn::parse`] |
//! | 4 | [`Properties`] |
//! | 5 | [`Uuid::parse`] |
//!
//! Never a panic. For every value a parser accepts:
//!
//! - `encoded_len()` is the length `encode_into` writes and `encode` appends; a buffer one
//!   byte short is refused with `BufferTooSmall`; bytes past the encoding and before the
//!   appended part are left untouched;
//! - the encoding parses back to the same value, and encodes again to the same bytes
//!   (the encoding is canonical: a fixed point);
//! - payloads that are canonical come back byte for byte: every unknown verb, and every
//!   verb whose arguments are opaque (`SHDN`, `PMSG_REQ`, `PMSG_RSP`, `GMSG`, `CLRDB:…`);
//!   Hello ids without leading zeros;
//! - the value keeps the field rules of `docs/hvncp.md` §4 (verb alphabet and length,
//!   `SHDN` reason, period range, `ostype` alphabet, version order), and an unknown verb
//!   is never one of the known ones.
//!
//! For every refusal the error displays, and offsets it reports lie inside the input.

#![no_main]

use dataplane::message::{
    AgentSyn, HelloId, MAX_OSTYPE_LEN, MAX_REASON_LEN, MAX_VERB_LEN, Message, MessageError,
    MonitorSyn, PERIOD_MS_RANGE, Properties, Uuid,
};
use libfuzzer_sys::fuzz_target;

/// Written around encodings to catch a write outside the reported length.
const SENTINEL: u8 = 0xa5;

/// The verbs `Message::parse` knows; an `Unknown` verb is never one of them.
const KNOWN_VERBS: [&[u8]; 9] = [
    b"START_HB",
    b"STOP_HB",
    b"HB",
    b"SHDN",
    b"DBELL",
    b"PMSG_REQ",
    b"PMSG_RSP",
    b"GMSG",
    b"CLRDB",
];

fuzz_target!(|data: &[u8]| {
    let Some((&route, payload)) = data.split_first() else {
        return;
    };
    match route % 6 {
        0 => message(payload),
        1 => hello(payload),
        2 => agent_syn(payload),
        3 => monitor_syn(payload),
        4 => properties(payload),
        _ => uuid(payload),
    }
});

/// The codec checks every payload type shares; evaluates to the encoding.
///
/// `$parse` parses, `$value` is a value it returned. A macro rather than a generic
/// function: the re-parsed value borrows from the encoding, with a shorter lifetime.
macro_rules! roundtrip {
    ($parse:expr, $value:expr) => {{
        let value = $value;
        let len = value.encoded_len();

        let mut buf = vec![SENTINEL; len + 8];
        assert_eq!(value.encode_into(&mut buf), Ok(len), "{value:?}");
        assert!(
            buf[len..].iter().all(|&b| b == SENTINEL),
            "encode_into wrote past encoded_len: {value:?}"
        );
        if len > 0 {
            let mut short = vec![SENTINEL; len - 1];
            assert_eq!(
                value.encode_into(&mut short).map_err(MessageError::from),
                Err(MessageError::BufferTooSmall {
                    len: len - 1,
                    need: len
                }),
                "{value:?}"
            );
        }
        buf.truncate(len);

        let mut appended = vec![SENTINEL; 3];
        value.encode(&mut appended);
        assert_eq!(&appended[..3], &[SENTINEL; 3], "encode appends");
        assert_eq!(&appended[3..], &buf[..], "encode and encode_into agree");

        let reparsed = $parse(&buf[..]).unwrap_or_else(|e| {
            panic!(
                "encoding {:?} of {value:?} does not parse: {e}",
                buf.escape_ascii()
            )
        });
        assert_eq!(reparsed, value, "{:?}", buf.escape_ascii());
        let mut again = Vec::new();
        reparsed.encode(&mut again);
        assert_eq!(again, buf, "encoding is not a fixed point");
        buf
    }};
}

fn message(payload: &[u8]) {
    let m = match Message::parse(payload) {
        Ok(m) => m,
        Err(e) => return refused(payload, e),
    };
    assert_eq!(Message::parse(payload), Ok(m), "parse is deterministic");
    let encoded = roundtrip!(Message::parse, m);

    let verb = m.verb();
    assert!(
        payload
            .get(..verb.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(verb)),
        "the verb comes from the payload, in any letter case"
    );
    assert!(encoded.starts_with(verb));
    assert!(!verb.is_empty() && verb.len() <= MAX_VERB_LEN, "{m:?}");
    assert!(
        verb.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_'),
        "{m:?}"
    );
    // Every payload is `VERB` or `VERB:…`.
    assert!(payload.len() == verb.len() || payload.get(verb.len()) == Some(&b':'));
    // Verbs are matched in any letter case (docs/hvncp.md §10.1): the same payload with
    // its verb upper-cased is the same kind of message.
    let mut upper = payload.to_vec();
    upper[..verb.len()].make_ascii_uppercase();
    if let Ok(u) = Message::parse(&upper) {
        assert_eq!(
            std::mem::discriminant(&u),
            std::mem::discriminant(&m),
            "verb case changed the message kind: {m:?}"
        );
    } else {
        panic!("upper-casing the verb made {m:?} unparsable");
    }

    let exact = match m {
        Message::Unknown { verb, .. } => {
            assert!(
                !KNOWN_VERBS.contains(&verb),
                "known verb parsed as unknown: {m:?}"
            );
            true
        }
        Message::Shutdown { reason } => {
            assert!(
                (1..=MAX_REASON_LEN).contains(&reason.len()),
                "SHDN reason length: {m:?}"
            );
            assert!(reason.iter().all(|b| (b' '..=b'~').contains(b)), "{m:?}");
            true
        }
        Message::PmsgReq { args } | Message::PmsgRsp { args } | Message::Gmsg { args } => {
            assert!(!args.is_empty(), "{m:?}");
            true
        }
        // `CLRDB` and `CLRDB:` are the same value; only the first is canonical.
        Message::ClearDb { args } => !args.is_empty(),
        Message::StartHb {
            period_ms: Some(ms),
        } => {
            assert!(PERIOD_MS_RANGE.contains(&ms), "{m:?}");
            false
        }
        Message::StartHb { period_ms: None }
        | Message::StopHb
        | Message::Heartbeat { .. }
        | Message::Doorbell { .. } => false,
    };
    if exact {
        // Byte for byte, except that a known verb is written in its canonical (upper)
        // case whatever case it arrived in; an unknown verb keeps the sender's case.
        let n = verb.len();
        assert!(
            encoded.len() == payload.len()
                && encoded[..n].eq_ignore_ascii_case(&payload[..n])
                && encoded[n..] == payload[n..],
            "{m:?} must encode byte for byte: {:?} -> {:?}",
            payload.escape_ascii(),
            encoded.escape_ascii()
        );
        if matches!(m, Message::Unknown { .. }) {
            assert_eq!(encoded, payload, "an unknown verb keeps the sender's case");
        }
    }
}

fn hello(payload: &[u8]) {
    let id = match HelloId::parse(payload) {
        Ok(id) => id,
        Err(e) => return refused(payload, e.into()),
    };
    assert!(id.nanos < 1_000_000_000, "{id:?}");
    let encoded = roundtrip!(HelloId::parse, id);
    assert_eq!(
        encoded,
        id.to_string().as_bytes(),
        "Display is the text form"
    );
    // Leading zeros in the seconds or the suffix are the only non-canonical spelling.
    let parts: Vec<&[u8]> = payload.split(|&b| b == b'.').collect();
    let canonical = |p: &[u8]| p.len() == 1 || p.first() != Some(&b'0');
    if parts.len() == 3 && canonical(parts[0]) && canonical(parts[2]) {
        assert_eq!(
            encoded, payload,
            "canonical Hello id must round-trip exactly"
        );
    } else {
        assert!(encoded.len() < payload.len(), "{id:?}");
    }
}

fn agent_syn(payload: &[u8]) {
    let syn = match AgentSyn::parse(payload) {
        Ok(syn) => syn,
        Err(e) => return refused(payload, e),
    };
    check_ostype(syn.ostype);
    assert!(
        (syn.ver_lower.major, syn.ver_lower.minor) <= (syn.ver_upper.major, syn.ver_upper.minor),
        "{syn:?}"
    );
    let encoded = roundtrip!(AgentSyn::parse, syn);
    // The incarnation is optional and, when present, last (docs/hvncp.md §4.2).
    if syn.inc.is_some() {
        check_properties(
            &encoded,
            &["uuid", "ostype", "verVmmLower", "verVmmUpper", "inc"],
        );
    } else {
        check_properties(&encoded, &["uuid", "ostype", "verVmmLower", "verVmmUpper"]);
    }
}

fn monitor_syn(payload: &[u8]) {
    let syn = match MonitorSyn::parse(payload) {
        Ok(syn) => syn,
        Err(e) => return refused(payload, e),
    };
    let encoded = roundtrip!(MonitorSyn::parse, syn);
    check_properties(&encoded, &["uuid", "verHmRunning"]);
}

/// `ostype`: 1..=32 bytes of `A-Z a-z 0-9 _ . -`.
fn check_ostype(ostype: &str) {
    assert!((1..=MAX_OSTYPE_LEN).contains(&ostype.len()), "{ostype:?}");
    assert!(
        ostype
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')),
        "{ostype:?}"
    );
}

/// An encoded SYN is exactly the `keys`, in that order, each once, as a clean list.
fn check_properties(encoded: &[u8], keys: &[&str]) {
    let items: Vec<(&[u8], &[u8])> = Properties::new(encoded)
        .map(|item| item.expect("an encoded SYN is a well-formed property list"))
        .collect();
    let found: Vec<&[u8]> = items.iter().map(|(k, _)| *k).collect();
    let expected: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    assert_eq!(found, expected, "{:?}", encoded.escape_ascii());
}

fn properties(list: &[u8]) {
    let mut props = Properties::new(list);
    let mut rebuilt = Vec::with_capacity(list.len());
    let mut count = 0usize;
    let mut all_ok = true;
    for item in props.by_ref() {
        count += 1;
        match item {
            Ok((key, value)) => {
                assert!(!key.is_empty(), "keys are never empty");
                assert!(!key.contains(&b'=') && !key.contains(&b':'), "{key:?}");
                assert!(!value.contains(&b':'), "{value:?}");
                if count > 1 {
                    rebuilt.push(b':');
                }
                rebuilt.extend_from_slice(key);
                rebuilt.push(b'=');
                rebuilt.extend_from_slice(value);
            }
            Err(e) => {
                all_ok = false;
                match e {
                    MessageError::PropertyWithoutEquals { offset }
                    | MessageError::EmptyKey { offset } => {
                        assert!(offset <= list.len(), "{e:?} in {} bytes", list.len());
                        // An item starts at the list's start or right after a ':'.
                        assert!(offset == 0 || list[offset - 1] == b':', "{e:?}");
                    }
                    other => panic!("unexpected property error {other:?}"),
                }
                let _ = e.to_string();
            }
        }
    }
    assert!(props.next().is_none(), "fused");
    // One item per ':'-separated part; the empty list has none.
    let parts = if list.is_empty() {
        0
    } else {
        list.iter().filter(|&&b| b == b':').count() + 1
    };
    assert_eq!(count, parts);
    if all_ok {
        assert_eq!(rebuilt, list, "items join back into the list");
    }
}

fn uuid(text: &[u8]) {
    let id = match Uuid::parse(text) {
        Ok(id) => id,
        Err(e) => return refused(text, e.into()),
    };
    let canonical = id.to_text();
    assert_eq!(canonical.as_slice(), text.to_ascii_lowercase(), "{id}");
    assert_eq!(Uuid::parse(&canonical), Ok(id));
    assert_eq!(id.to_string().as_bytes(), canonical.as_slice());
}

/// A refusal displays, and the offsets it names lie inside the input.
fn refused(input: &[u8], e: MessageError) {
    let _ = e.to_string();
    match e {
        MessageError::BadVerb { offset, byte } => {
            assert_eq!(input.get(offset), Some(&byte), "{e:?}");
        }
        MessageError::BadArgs { offset, .. }
        | MessageError::PropertyWithoutEquals { offset }
        | MessageError::EmptyKey { offset } => {
            assert!(offset <= input.len(), "{e:?} in {} bytes", input.len());
        }
        MessageError::BadUuid { offset, len } => assert!(offset <= len, "{e:?}"),
        MessageError::BufferTooSmall { .. } => panic!("parsing never needs a buffer: {e:?}"),
        _ => {}
    }
}
