//! Tests of [`Message`], and robustness of every parser of the module against arbitrary
//! bytes.

use super::*;

/// Parse, check the value, and re-encode to the identical bytes through both encoders.
#[track_caller]
fn golden(payload: &[u8], expected: Message<'_>) {
    let msg = Message::parse(payload).expect("golden payload parses");
    assert_eq!(msg, expected);
    assert_eq!(msg.encoded_len(), payload.len());
    let mut buf = [0u8; 64];
    let n = msg.encode_into(&mut buf).expect("64 bytes are enough");
    assert_eq!(&buf[..n], payload);
    let mut out = Vec::new();
    msg.encode(&mut out);
    assert_eq!(out, payload);
}

#[test]
fn test_seed_payloads() {
    // The monitor's START_HB, 8 bytes (seed 004 L9021).
    assert_eq!(b"START_HB".len(), 8);
    golden(b"START_HB", Message::StartHb { period_ms: None });
    // The agent's heartbeat, 3 bytes (seed 004).
    golden(b"HB:", Message::Heartbeat { seq: None });
    // The agent's graceful stop, 11 bytes (seed 004 L9097-9102).
    assert_eq!(b"SHDN:DAEMON".len(), 11);
    golden(b"SHDN:DAEMON", Message::Shutdown { reason: b"DAEMON" });
}

#[test]
fn test_canonical_forms() {
    golden(
        b"START_HB:period_ms=10000",
        Message::StartHb {
            period_ms: Some(10_000),
        },
    );
    golden(b"STOP_HB", Message::StopHb);
    golden(b"HB:seq=42", Message::Heartbeat { seq: Some(42) });
    golden(
        b"HB:seq=18446744073709551615",
        Message::Heartbeat {
            seq: Some(u64::MAX),
        },
    );
    golden(b"DBELL:28", Message::Doorbell { vector: 0x28 });
    golden(
        b"DBELL:ffffffffffffffff",
        Message::Doorbell { vector: u64::MAX },
    );
    golden(b"DBELL:0", Message::Doorbell { vector: 0 });
    golden(b"PMSG_REQ:app=db2", Message::PmsgReq { args: b"app=db2" });
    golden(b"PMSG_RSP:a:b=c", Message::PmsgRsp { args: b"a:b=c" });
    golden(b"GMSG:7", Message::Gmsg { args: b"7" });
    golden(b"CLRDB", Message::ClearDb { args: b"" });
    golden(b"CLRDB:all", Message::ClearDb { args: b"all" });
}

#[test]
fn test_verb() {
    let verb = |p: &[u8]| Message::parse(p).expect("valid payload").verb().to_vec();
    assert_eq!(verb(b"HB:"), b"HB");
    assert_eq!(verb(b"START_HB"), b"START_HB");
    assert_eq!(verb(b"SHDN:DAEMON"), b"SHDN");
    assert_eq!(verb(b"CLRDB"), b"CLRDB");
    assert_eq!(verb(b"NEW_VERB2:x"), b"NEW_VERB2");
}

/// Non-canonical spellings of known messages: accepted, re-encoded canonically.
#[test]
fn test_lenient_forms_encode_canonically() {
    for (input, canonical) in [
        (&b"HB"[..], &b"HB:"[..]),
        (b"HB:seq=007", b"HB:seq=7"),
        (b"HB:later=1", b"HB:"),
        (b"START_HB:", b"START_HB"),
        (b"START_HB:x=y:period_ms=0100", b"START_HB:period_ms=100"),
        (b"STOP_HB:", b"STOP_HB"),
        (b"STOP_HB:reason=maintenance", b"STOP_HB"),
        (b"DBELL:0x2A", b"DBELL:2a"),
        (b"DBELL:000000000000000F", b"DBELL:f"),
        (b"CLRDB:", b"CLRDB"),
    ] {
        let msg = Message::parse(input).expect("lenient form parses");
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(out, canonical, "{:?}", String::from_utf8_lossy(input));
        assert_eq!(Message::parse(&out), Ok(msg));
    }
}

#[test]
fn test_unknown_verb_preserved() {
    for (payload, verb, args) in [
        (&b"FUTURE"[..], &b"FUTURE"[..], None),
        (b"FUTURE:", b"FUTURE", Some(&b""[..])),
        (b"X:\xff\x00:=:", b"X", Some(&b"\xff\x00:=:"[..])),
        (b"HB2:seq=x", b"HB2", Some(&b"seq=x"[..])),
        (b"A_1:HB:", b"A_1", Some(&b"HB:"[..])),
    ] {
        let msg = Message::parse(payload).expect("unknown verbs parse");
        assert_eq!(msg, Message::Unknown { verb, args });
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(out, payload, "byte for byte");
        assert_eq!(msg.encoded_len(), payload.len());
    }
    // Exactly MAX_VERB_LEN bytes is still a verb.
    let longest = [b'Z'; MAX_VERB_LEN];
    assert!(matches!(
        Message::parse(&longest),
        Ok(Message::Unknown { .. })
    ));
}

/// Verbs and property keys in any letter case (the seed writes `dbell`, seed 004
/// L8177-8195); they encode back in the canonical upper case. Unknown verbs keep theirs.
#[test]
fn test_verbs_in_any_case() {
    for (payload, expected) in [
        (&b"hb:"[..], Message::Heartbeat { seq: None }),
        (b"Hb", Message::Heartbeat { seq: None }),
        (b"hb:SEQ=7", Message::Heartbeat { seq: Some(7) }),
        (b"start_hb", Message::StartHb { period_ms: None }),
        (
            b"Start_Hb:Period_MS=2500",
            Message::StartHb {
                period_ms: Some(2500),
            },
        ),
        (b"stop_hb", Message::StopHb),
        (b"shdn:daemon", Message::Shutdown { reason: b"daemon" }),
        (b"dbell:28", Message::Doorbell { vector: 0x28 }),
        (b"DBell:2A", Message::Doorbell { vector: 0x2a }),
        (b"pmsg_req:x", Message::PmsgReq { args: b"x" }),
        (b"clrdb", Message::ClearDb { args: b"" }),
    ] {
        assert_eq!(
            Message::parse(payload),
            Ok(expected),
            "{}",
            payload.escape_ascii()
        );
    }
    let mut out = Vec::new();
    Message::parse(b"dbell:28").expect("valid").encode(&mut out);
    assert_eq!(out, b"DBELL:28");
    assert!(is_heartbeat(b"hb:"));
    assert!(is_heartbeat(b"HB:seq=1"));
    assert!(!is_heartbeat(b"HBX:"));
    assert!(!is_heartbeat(b"SHDN:DAEMON"));
    assert_eq!(
        Message::parse(b"future_verb:x"),
        Ok(Message::Unknown {
            verb: b"future_verb",
            args: Some(b"x")
        })
    );
    assert_eq!(
        Message::parse(b"hb:seq=1:Seq=2"),
        Err(MessageError::BadArgs {
            verb: "HB",
            offset: 9,
            why: "property repeated"
        })
    );
}

#[test]
fn test_bad_verb() {
    assert_eq!(Message::parse(b""), Err(MessageError::EmptyVerb));
    assert_eq!(Message::parse(b":"), Err(MessageError::EmptyVerb));
    assert_eq!(Message::parse(b":HB"), Err(MessageError::EmptyVerb));
    assert_eq!(
        Message::parse(b"h\xe9:"),
        Err(MessageError::BadVerb {
            offset: 1,
            byte: 0xe9
        })
    );
    assert_eq!(
        Message::parse(b"HB :"),
        Err(MessageError::BadVerb {
            offset: 2,
            byte: b' '
        })
    );
    assert_eq!(
        Message::parse(b"START-HB"),
        Err(MessageError::BadVerb {
            offset: 5,
            byte: b'-'
        })
    );
    assert_eq!(
        Message::parse(b"HB\xff"),
        Err(MessageError::BadVerb {
            offset: 2,
            byte: 0xff
        })
    );
    // A Hello identifier is not a message.
    assert_eq!(
        Message::parse(b"1556303548.719328000.38"),
        Err(MessageError::BadVerb {
            offset: 10,
            byte: b'.'
        })
    );
    let long = [b'A'; MAX_VERB_LEN + 1];
    assert_eq!(
        Message::parse(&long),
        Err(MessageError::VerbTooLong { len: 33, max: 32 })
    );
    let long_with_args = [&long[..], b":x"].concat();
    assert_eq!(
        Message::parse(&long_with_args),
        Err(MessageError::VerbTooLong { len: 33, max: 32 })
    );
}

#[test]
fn test_start_hb_period_range() {
    let period = |p: &[u8]| Message::parse(p).map(|m| m.encoded_len());
    assert_eq!(period(b"START_HB:period_ms=100"), Ok(22));
    assert_eq!(period(b"START_HB:period_ms=3600000"), Ok(26));
    let out_of_range = |value| {
        Err(MessageError::ArgOutOfRange {
            verb: "START_HB",
            key: "period_ms",
            value,
            min: 100,
            max: 3_600_000,
        })
    };
    assert_eq!(period(b"START_HB:period_ms=99"), out_of_range(99));
    assert_eq!(period(b"START_HB:period_ms=0"), out_of_range(0));
    assert_eq!(
        period(b"START_HB:period_ms=3600001"),
        out_of_range(3_600_001)
    );
    assert_eq!(
        period(b"START_HB:period_ms=4294967296"),
        out_of_range(4_294_967_296),
        "above u32 is out of range, not truncated"
    );
    let not_a_number = |offset| {
        Err(MessageError::BadArgs {
            verb: "START_HB",
            offset,
            why: "period_ms must be a decimal number in 100..=3600000",
        })
    };
    assert_eq!(period(b"START_HB:period_ms="), not_a_number(19));
    assert_eq!(period(b"START_HB:period_ms=1s"), not_a_number(19));
    assert_eq!(period(b"START_HB:period_ms=-100"), not_a_number(19));
    assert_eq!(period(b"START_HB:a=b:period_ms=1e3"), not_a_number(23));
    assert_eq!(
        period(b"START_HB:period_ms=99999999999999999999999"),
        not_a_number(19)
    );
}

#[test]
fn test_property_errors_name_verb() {
    let bad = |verb, offset, why| Err(MessageError::BadArgs { verb, offset, why });
    assert_eq!(
        Message::parse(b"START_HB:period_ms=100:period_ms=200"),
        bad("START_HB", 23, "property repeated")
    );
    assert_eq!(
        Message::parse(b"START_HB:10000"),
        bad("START_HB", 9, "property without '='")
    );
    assert_eq!(
        Message::parse(b"HB:seq=1:"),
        bad("HB", 9, "property without '='")
    );
    assert_eq!(
        Message::parse(b"HB:=1"),
        bad("HB", 3, "property with an empty key")
    );
    assert_eq!(
        Message::parse(b"STOP_HB:now"),
        bad("STOP_HB", 8, "property without '='")
    );
    assert_eq!(
        Message::parse(b"HB:seq=x"),
        bad("HB", 7, "seq must be a decimal number below 2^64")
    );
    assert_eq!(
        Message::parse(b"HB:seq=18446744073709551616"),
        bad("HB", 7, "seq must be a decimal number below 2^64")
    );
    assert_eq!(
        Message::parse(b"HB:seq=1:seq=1"),
        bad("HB", 9, "property repeated")
    );
}

#[test]
fn test_shutdown_reason() {
    golden(b"SHDN:A B~!", Message::Shutdown { reason: b"A B~!" });
    let max = [b'R'; MAX_REASON_LEN];
    let payload = [&b"SHDN:"[..], &max].concat();
    assert_eq!(
        Message::parse(&payload),
        Ok(Message::Shutdown { reason: &max })
    );
    let payload = [&payload[..], b"R"].concat();
    assert_eq!(
        Message::parse(&payload),
        Err(MessageError::ArgLength {
            verb: "SHDN",
            len: 33,
            min: 1,
            max: 32
        })
    );
    for payload in [&b"SHDN"[..], b"SHDN:"] {
        assert_eq!(
            Message::parse(payload),
            Err(MessageError::MissingArgs { verb: "SHDN" })
        );
    }
    for (payload, offset) in [
        (&b"SHDN:DAE\x07MON"[..], 8),
        (b"SHDN:\x7f", 5),
        (b"SHDN:\xc3\xa9", 5),
    ] {
        assert_eq!(
            Message::parse(payload),
            Err(MessageError::BadArgs {
                verb: "SHDN",
                offset,
                why: "reason must be printable ASCII"
            })
        );
    }
}

#[test]
fn test_doorbell_vector() {
    let vector = |p: &[u8]| match Message::parse(p) {
        Ok(Message::Doorbell { vector }) => Ok(vector),
        Ok(other) => panic!("not a doorbell: {other:?}"),
        Err(e) => Err(e),
    };
    assert_eq!(vector(b"DBELL:0x28"), Ok(0x28));
    assert_eq!(vector(b"DBELL:DeadBeef"), Ok(0xdead_beef));
    assert_eq!(vector(b"DBELL:0xffffffffffffffff"), Ok(u64::MAX));
    let length = |len| {
        Err(MessageError::ArgLength {
            verb: "DBELL",
            len,
            min: 1,
            max: 16,
        })
    };
    assert_eq!(vector(b"DBELL:0x"), length(0));
    assert_eq!(vector(b"DBELL:10000000000000000"), length(17));
    assert_eq!(vector(b"DBELL:0x10000000000000000"), length(17));
    let not_hex = |offset| {
        Err(MessageError::BadArgs {
            verb: "DBELL",
            offset,
            why: "vector must be hexadecimal digits",
        })
    };
    assert_eq!(vector(b"DBELL:2g"), not_hex(7));
    assert_eq!(vector(b"DBELL:0x0x1"), not_hex(9));
    assert_eq!(vector(b"DBELL:-1"), not_hex(6));
    assert_eq!(vector(b"DBELL: 28"), not_hex(6));
    assert_eq!(
        vector(b"DBELL"),
        Err(MessageError::MissingArgs { verb: "DBELL" })
    );
    assert_eq!(
        vector(b"DBELL:"),
        Err(MessageError::MissingArgs { verb: "DBELL" })
    );
}

#[test]
fn test_report_exchange_needs_args() {
    for verb in ["PMSG_REQ", "PMSG_RSP", "GMSG"] {
        for payload in [verb.to_string(), format!("{verb}:")] {
            assert_eq!(
                Message::parse(payload.as_bytes()),
                Err(MessageError::MissingArgs { verb })
            );
        }
    }
}

#[test]
fn test_emit_buffer_too_small() {
    let msg = Message::StartHb {
        period_ms: Some(10_000),
    };
    let mut buf = [0u8; 23];
    assert_eq!(
        msg.encode_into(&mut buf),
        Err(MessageError::BufferTooSmall { len: 23, need: 24 })
    );
    assert_eq!(
        Message::Heartbeat { seq: None }.encode_into(&mut []),
        Err(MessageError::BufferTooSmall { len: 0, need: 3 })
    );
    let mut out = b"keep".to_vec();
    msg.encode(&mut out);
    assert_eq!(out, b"keepSTART_HB:period_ms=10000", "encode appends");
}

#[test]
fn test_errors_read_well() {
    let text = |p: &[u8]| Message::parse(p).expect_err("invalid payload").to_string();
    assert_eq!(
        text(b"START_HB:period_ms=50"),
        "START_HB: period_ms=50 is outside 100..=3600000"
    );
    assert_eq!(
        text(b"h.b"),
        "byte 0x2e at offset 1 is not allowed in a verb (A-Z, a-z, 0-9, _)"
    );
    assert_eq!(
        text(b"SHDN:\x01"),
        "SHDN: reason must be printable ASCII (at byte 5 of the payload)"
    );
}

/// A tiny xorshift64 generator: deterministic, no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).expect("small n")).expect("below n")
    }

    fn pick(&mut self, set: &[&'static [u8]]) -> &'static [u8] {
        set[self.below(set.len())]
    }
}

/// Every parser of the module on `input`: no panic, and every accepted value encodes to
/// a payload that parses back to it, with `encoded_len` and both encoders agreeing.
fn check_round_trip(input: &[u8]) {
    if let Ok(msg) = Message::parse(input) {
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(out.len(), msg.encoded_len());
        let mut buf = vec![0u8; out.len()];
        assert_eq!(msg.encode_into(&mut buf), Ok(out.len()));
        assert_eq!(buf, out);
        assert_eq!(Message::parse(&out), Ok(msg), "{input:?} -> {out:?}");
        if let Message::Unknown { .. } = msg {
            assert_eq!(out, input, "unknown verbs are preserved");
        }
        // Our own output is canonical: it comes back byte for byte.
        let mut again = Vec::new();
        Message::parse(&out).expect("re-parses").encode(&mut again);
        assert_eq!(again, out);
    }
    if let Ok(id) = HelloId::parse(input) {
        let mut out = Vec::new();
        id.encode(&mut out);
        assert_eq!(out.len(), id.encoded_len());
        assert_eq!(out, id.to_string().as_bytes());
        assert_eq!(HelloId::parse(&out), Ok(id));
    }
    if let Ok(syn) = AgentSyn::parse(input) {
        let mut out = Vec::new();
        syn.encode(&mut out);
        assert_eq!(out.len(), syn.encoded_len());
        assert_eq!(AgentSyn::parse(&out), Ok(syn));
    }
    if let Ok(syn) = MonitorSyn::parse(input) {
        let mut out = Vec::new();
        syn.encode(&mut out);
        assert_eq!(out.len(), syn.encoded_len());
        assert_eq!(MonitorSyn::parse(&out), Ok(syn));
    }
    if let Ok(uuid) = Uuid::parse(input) {
        assert_eq!(Uuid::parse(&uuid.to_text()), Ok(uuid));
    }
    for (key, value) in Properties::new(input).flatten() {
        assert!(!key.is_empty());
        assert!(!key.contains(&b'=') && !key.contains(&b':'));
        assert!(!value.contains(&b':'));
    }
}

#[test]
fn test_all_short_strings() {
    const ALPHABET: &[u8] = b"HBS:=0x9_a\xff ";
    let mut checked = 0;
    let mut accepted = 0;
    for len in 0..=3u32 {
        for mut code in 0..ALPHABET.len().pow(len) {
            let mut input = Vec::new();
            for _ in 0..len {
                input.push(ALPHABET[code % ALPHABET.len()]);
                code /= ALPHABET.len();
            }
            check_round_trip(&input);
            accepted += usize::from(Message::parse(&input).is_ok());
            checked += 1;
        }
    }
    assert_eq!(checked, 1 + 12 + 144 + 1728);
    // "H", "HB", "HB:", "BS", ... : the loop exercises both outcomes.
    assert!(
        accepted > 20 && accepted < checked / 2,
        "{accepted} of {checked}"
    );
}

/// Up to five `key=value` items joined by ':'.
fn properties(
    rng: &mut XorShift,
    out: &mut Vec<u8>,
    keys: &[&'static [u8]],
    values: &[&'static [u8]],
) {
    for i in 0..rng.below(6) {
        if i > 0 {
            out.push(b':');
        }
        out.extend_from_slice(rng.pick(keys));
        out.push(b'=');
        out.extend_from_slice(rng.pick(values));
    }
}

/// A pseudo-random payload: a shape (message, property list, Hello id, token soup) built
/// from fragments that make valid and nearly valid payloads likely, then sometimes
/// mutated at one byte.
fn random_payload(rng: &mut XorShift) -> Vec<u8> {
    const VERBS: &[&[u8]] = &[
        b"HB",
        b"START_HB",
        b"STOP_HB",
        b"SHDN",
        b"DBELL",
        b"PMSG_REQ",
        b"PMSG_RSP",
        b"GMSG",
        b"CLRDB",
        b"FUTURE",
        b"hb",
        b"",
    ];
    const KEYS: &[&[u8]] = &[
        b"period_ms",
        b"seq",
        b"uuid",
        b"ostype",
        b"verVmmLower",
        b"verVmmUpper",
        b"verHmRunning",
        b"x",
        b"",
    ];
    const VALUES: &[&[u8]] = &[
        b"0",
        b"99",
        b"100",
        b"10000",
        b"3600000",
        b"18446744073709551616",
        b"0x2a",
        b"fF",
        b"DAEMON",
        b"AIX",
        b"linux",
        b"2.0",
        b"2.1",
        b"1.9",
        b"256.0",
        b"",
        b"61be20f0-09a8-4753-b5e5-564f8a545ed5",
        b"5C3196A3-C41F-4B5C-9861-DEE6077081C6",
        b"\xff",
        b" ",
        b"=",
    ];
    let mut out = Vec::new();
    match rng.below(5) {
        4 => {
            // A SYN: every key of one kind, shuffled, some repeated or dropped.
            const UUIDS: &[&[u8]] = &[
                b"61be20f0-09a8-4753-b5e5-564f8a545ed5",
                b"5C3196A3-C41F-4B5C-9861-DEE6077081C6",
                b"61be20f0",
            ];
            const VERSIONS: &[&[u8]] = &[b"2.0", b"2.1", b"10.0", b"002.00", b"2"];
            let keys: &[(&[u8], &[&[u8]])] = if rng.below(2) == 0 {
                &[
                    (b"uuid", UUIDS),
                    (b"ostype", &[b"AIX", b"linux", b"x-1.2_b", b""]),
                    (b"verVmmLower", VERSIONS),
                    (b"verVmmUpper", VERSIONS),
                ]
            } else {
                &[
                    (b"uuid", UUIDS),
                    (b"verHmRunning", VERSIONS),
                    (b"extra", &[b"1"]),
                ]
            };
            for i in 0..keys.len() + 1 {
                let (key, values) = keys[(i + rng.below(keys.len())) % keys.len()];
                if i > 0 {
                    out.push(b':');
                }
                out.extend_from_slice(key);
                out.push(b'=');
                out.extend_from_slice(rng.pick(values));
            }
        }
        0 => {
            out.extend_from_slice(rng.pick(VERBS));
            match rng.below(3) {
                0 => {}
                1 => {
                    out.push(b':');
                    out.extend_from_slice(rng.pick(VALUES));
                }
                _ => {
                    out.push(b':');
                    properties(rng, &mut out, KEYS, VALUES);
                }
            }
        }
        1 => properties(rng, &mut out, KEYS, VALUES),
        2 => {
            for part in 0..3 {
                if part > 0 {
                    out.push(b'.');
                }
                for _ in 0..rng.below(12) {
                    out.push(b'0' + u8::try_from(rng.below(10)).expect("a digit"));
                }
            }
        }
        _ => {
            for _ in 0..rng.below(8) {
                let set = if rng.below(2) == 0 { VERBS } else { VALUES };
                out.extend_from_slice(rng.pick(set));
                out.push(b":=."[rng.below(3)]);
            }
        }
    }
    if !out.is_empty() && rng.below(4) == 0 {
        let at = rng.below(out.len());
        out[at] = u8::try_from(rng.next() & 0xff).expect("masked to a byte");
    }
    out
}

#[test]
fn test_random_strings() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    // Errors, unknown verbs, known messages, Hello ids, SYNs.
    let mut seen = [0usize; 5];
    for _ in 0..20_000 {
        let input = random_payload(&mut rng);
        check_round_trip(&input);
        let kind = match Message::parse(&input) {
            Ok(Message::Unknown { .. }) => 1,
            Ok(_) => 2,
            Err(_) => 0,
        };
        seen[kind] += 1;
        seen[3] += usize::from(HelloId::parse(&input).is_ok());
        seen[4] +=
            usize::from(AgentSyn::parse(&input).is_ok() || MonitorSyn::parse(&input).is_ok());
    }
    // The generator reaches every outcome, so the round-trip checks above are exercised.
    assert!(seen.iter().all(|&n| n > 100), "{seen:?}");
}

/// The few inputs built to satisfy the SYN and Hello parsers also round-trip.
#[test]
fn test_round_trip_structured() {
    for input in [
        &b"uuid=61be20f0-09a8-4753-b5e5-564f8a545ed5:ostype=AIX:verVmmLower=2.0:verVmmUpper=2.0"[..],
        b"ostype=x:uuid=61BE20F0-09A8-4753-B5E5-564F8A545ED5:verVmmUpper=02.1:verVmmLower=2.0",
        b"uuid=5c3196a3-c41f-4b5c-9861-dee6077081c6:verHmRunning=2.0",
        b"1556303548.719328000.38",
        b"01.000000000.01",
    ] {
        check_round_trip(input);
    }
}
