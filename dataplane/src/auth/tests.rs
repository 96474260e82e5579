use std::time::Duration;

use super::*;
use crate::endpoint::{Endpoint, EndpointConfig, Outcome};
use crate::message::{HelloId, Uuid};
use crate::time::Instant;
use crate::wire::{DEFAULT_ETHERTYPE, Frame, FrameBuilder, HvncpRepr, VERSION};

const HM: MacAddr = MacAddr([0x6a, 0x6a, 0x08, 0x84, 0xee, 0x11]);
const VM: MacAddr = MacAddr([0x6a, 0x6a, 0x0f, 0xfd, 0xf7, 0x07]);
/// The seed's Hello time, 1556303548.719328000 s, in nanoseconds.
const COUNTER: u64 = 1_556_303_548_719_328_000;

fn secret(first: u8) -> [u8; KEY_LEN] {
    std::array::from_fn(|i| first.wrapping_add(u8::try_from(i).expect("small")))
}

fn keys(id: u8, first: u8) -> Keyring {
    Keyring::new(Key::new(id, &secret(first)), None).expect("one key")
}

fn auth(mode: AuthMode, keys: Keyring) -> Authenticator {
    Authenticator::new(mode, Some(keys), COUNTER, 1024).expect("valid")
}

/// The seed's heartbeat (`docs/hvncp.md` §2.1) in a 60-byte buffer padded with 0xee, so
/// that sealing must clear the padding itself.
fn heartbeat(src: MacAddr, number: u8) -> ([u8; 128], usize) {
    let mut buf = [0xeeu8; 128];
    let header = HvncpRepr {
        version: VERSION,
        number,
        flags: Flags::BEG | Flags::END,
        frag_index: 0,
        payload_len: 3,
    };
    let len = FrameBuilder {
        dst: HM,
        src,
        ethertype: DEFAULT_ETHERTYPE,
    }
    .emit(&mut buf, &header, b"HB:")
    .expect("fits");
    (buf, len)
}

/// The test vector of `docs/hvncp.md` §7.8: the tag computed by an independent HMAC-SHA256
/// (Python's `hmac` module), not by this crate.
#[test]
fn test_seal_golden() {
    let mut a = auth(AuthMode::Accept, keys(1, 0));
    let (mut buf, len) = heartbeat(VM, 1);
    assert_eq!(len, 60);
    let sealed = a.seal(&mut buf, len).expect("room");
    assert_eq!(
        sealed, 60,
        "a heartbeat with its trailer still fits the minimum frame"
    );
    let expected: [u8; 60] = [
        0x6a, 0x6a, 0x08, 0x84, 0xee, 0x11, 0x6a, 0x6a, 0x0f, 0xfd, 0xf7, 0x07, // MACs
        0x06, 0x00, // EtherType
        0x02, 0x00, 0x01, 0x31, 0xfb, 0x00, 0x00, 0x03, // header: BEG|END|Rsv, checksum + 1
        0x48, 0x42, 0x3a, // "HB:"
        0x01, // key id
        0x15, 0x99, 0x19, 0xd4, 0xf8, 0x18, 0x6b, 0x00, // counter
        0x3b, 0x72, 0xfb, 0x68, 0x8c, 0x81, 0x33, 0x27, 0xe3, 0xcc, 0x20, 0xf1, 0x46, 0x06, 0x9b,
        0x92, // tag
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];
    assert_eq!(buf[..60], expected);
    assert_eq!(buf[60], 0xee, "nothing written past the frame");
    assert_eq!(a.next_counter(), COUNTER + 1);
    assert_eq!(a.counters().auth_sealed, 1);
}

#[test]
fn sealed_frame_is_a_valid_2_0_frame() {
    let mut a = auth(AuthMode::Require, keys(1, 0));
    let (mut buf, len) = heartbeat(VM, 1);
    let sealed = a.seal(&mut buf, len).expect("room");
    // A peer without authentication: Rsv ignored, trailer read as padding.
    let plain = Frame::parse(&buf[..sealed], DEFAULT_ETHERTYPE).expect("valid 2.0 frame");
    assert_eq!(plain.payload, b"HB:");
    assert_eq!(plain.header.flags, Flags::BEG | Flags::END);
    // `off` lets it through unchanged, trailer and all.
    assert_eq!(
        Authenticator::off().open(&buf[..sealed]),
        Ok(&buf[..sealed])
    );
}

#[test]
fn open_returns_the_frame_without_trailer_once() {
    let mut tx = auth(AuthMode::Require, keys(1, 0));
    let mut rx = auth(AuthMode::Require, keys(1, 0));
    let (mut buf, len) = heartbeat(VM, 1);
    let sealed = tx.seal(&mut buf, len).expect("room");
    let opened = rx.open(&buf[..sealed]).expect("verifies");
    assert_eq!(opened.len(), 14 + 8 + 3);
    let f = Frame::parse(opened, DEFAULT_ETHERTYPE).expect("valid");
    assert_eq!(f.payload, b"HB:");
    assert_eq!(
        f.header.flags,
        Flags::BEG | Flags::END,
        "Rsv removed by the parser"
    );
    // Replayed: the same bytes again.
    assert_eq!(
        rx.open(&buf[..sealed]),
        Err(AuthDrop::Replayed {
            src: VM,
            id: 1,
            counter: COUNTER
        })
    );
    assert_eq!(rx.counters().auth_verified, 1);
    assert_eq!(rx.counters().auth_drop_replayed, 1);
    assert_eq!(rx.senders(), 1);
}

#[test]
fn forged_frames_are_refused() {
    let mut tx = auth(AuthMode::Require, keys(1, 0));
    let (mut buf, len) = heartbeat(VM, 1);
    let sealed = tx.seal(&mut buf, len).expect("room");
    let frame = buf[..sealed].to_vec();
    for accept in [AuthMode::Accept, AuthMode::Require] {
        let mut rx = auth(accept, keys(1, 0));
        // Every byte the tag covers, and the tag itself, changed one at a time; the
        // checksum is fixed up so that only the tag can notice.
        for i in 0..(14 + 8 + 3 + TRAILER_LEN) {
            if i == 17 {
                continue; // The flags byte: clearing Rsv makes it unauthenticated (below).
            }
            let mut f = frame.clone();
            f[i] ^= 0x40;
            if (14..25).contains(&i) && i != 18 {
                f[18] = f[18].wrapping_sub(0x40);
            }
            let got = rx.open(&f);
            match i {
                // The length moves the trailer past the frame's end.
                20 | 21 => assert!(matches!(got, Err(AuthDrop::Truncated { len: 60, .. }))),
                25 => assert_eq!(got, Err(AuthDrop::UnknownKey { id: 0x41 })),
                _ => assert_eq!(got, Err(AuthDrop::BadTag { id: 1 }), "byte {i} changed"),
            }
        }
        assert_eq!(rx.counters().auth_verified, 0);
        assert_eq!(
            rx.counters().auth_drop_bad_tag,
            (14 + 8 + 3 + TRAILER_LEN - 4) as u64
        );
        assert_eq!(rx.senders(), 0, "nothing that fails creates replay state");
        // The genuine frame still verifies afterwards.
        assert!(rx.open(&frame).is_ok());
    }
}

#[test]
fn stripped_authentication_depends_on_the_mode() {
    let mut tx = auth(AuthMode::Require, keys(1, 0));
    let (mut buf, len) = heartbeat(VM, 1);
    let sealed = tx.seal(&mut buf, len).expect("room");
    // Rsv cleared and the checksum fixed: looks like a plain frame.
    let mut stripped = buf[..sealed].to_vec();
    stripped[17] &= !1;
    stripped[18] = stripped[18].wrapping_sub(1);
    assert!(Frame::parse(&stripped, DEFAULT_ETHERTYPE).is_ok());
    let mut require = auth(AuthMode::Require, keys(1, 0));
    assert_eq!(require.open(&stripped), Err(AuthDrop::Unauthenticated));
    assert_eq!(require.counters().auth_drop_unauthenticated, 1);
    let mut accept = auth(AuthMode::Accept, keys(1, 0));
    assert_eq!(accept.open(&stripped), Ok(&stripped[..]));
    assert_eq!(accept.counters().auth_plain_accepted, 1);
}

#[test]
fn truncated_tags_are_refused() {
    let mut tx = auth(AuthMode::Require, keys(1, 0));
    // A payload long enough that the frame is not padded: truncation is visible.
    let mut buf = [0u8; 256];
    let header = HvncpRepr {
        version: VERSION,
        number: 4,
        flags: Flags::ACKR | Flags::BEG | Flags::END,
        frag_index: 0,
        payload_len: 40,
    };
    let len = FrameBuilder {
        dst: HM,
        src: VM,
        ethertype: DEFAULT_ETHERTYPE,
    }
    .emit(&mut buf, &header, &[b'x'; 40])
    .expect("fits");
    let sealed = tx.seal(&mut buf, len).expect("room");
    assert_eq!(sealed, 14 + 8 + 40 + TRAILER_LEN);
    let mut rx = auth(AuthMode::Accept, keys(1, 0));
    for cut in 1..=TRAILER_LEN {
        assert_eq!(
            rx.open(&buf[..sealed - cut]),
            Err(AuthDrop::Truncated {
                len: sealed - cut,
                need: sealed
            }),
            "{cut} bytes cut"
        );
    }
    // A heartbeat whose tag was cut to 8 bytes is padded back to 60 on the wire: the
    // zeros do not make a tag.
    let (mut hb, len) = heartbeat(VM, 2);
    let sealed = tx.seal(&mut hb, len).expect("room");
    hb[14 + 8 + 3 + TAGGED_TRAILER_LEN + 8..sealed].fill(0);
    assert_eq!(rx.open(&hb[..sealed]), Err(AuthDrop::BadTag { id: 1 }));
    // Too short for the headers: the endpoint counts it in accept mode; require drops it.
    assert_eq!(rx.open(&hb[..21]), Ok(&hb[..21]));
    let mut require = auth(AuthMode::Require, keys(1, 0));
    assert!(matches!(
        require.open(&hb[..21]),
        Err(AuthDrop::Truncated { len: 21, .. })
    ));
    // A `len` running past the frame leaves no room for a trailer.
    let mut long = hb;
    long[20..22].copy_from_slice(&500u16.to_be_bytes());
    assert!(matches!(
        require.open(&long[..60]),
        Err(AuthDrop::Truncated { len: 60, need }) if need == 14 + 8 + 500 + TRAILER_LEN
    ));
    assert_eq!(rx.counters().auth_drop_truncated, TRAILER_LEN as u64);
    assert_eq!(rx.counters().drops(), TRAILER_LEN as u64 + 1);
}

#[test]
fn wrong_keys_are_refused() {
    let mut tx = auth(AuthMode::Require, keys(1, 0));
    let (mut buf, len) = heartbeat(VM, 1);
    let sealed = tx.seal(&mut buf, len).expect("room");
    // Same id, other secret.
    let mut rx = auth(AuthMode::Accept, keys(1, 100));
    assert_eq!(rx.open(&buf[..sealed]), Err(AuthDrop::BadTag { id: 1 }));
    // Other id.
    let mut rx = auth(AuthMode::Require, keys(2, 0));
    assert_eq!(rx.open(&buf[..sealed]), Err(AuthDrop::UnknownKey { id: 1 }));
    assert_eq!(rx.counters().auth_drop_unknown_key, 1);
}

#[test]
fn rotation_accepts_both_keys_and_sends_with_the_primary() {
    let old = || Key::new(1, &secret(0));
    let new = || Key::new(2, &secret(50));
    let mut receiver = auth(
        AuthMode::Require,
        Keyring::new(old(), Some(new())).expect("distinct ids"),
    );
    let mut before = auth(AuthMode::Require, Keyring::new(old(), None).expect("ok"));
    let mut during = auth(
        AuthMode::Require,
        Keyring::new(new(), Some(old())).expect("ok"),
    );
    for (sender, id) in [(&mut before, 1), (&mut during, 2)] {
        let (mut buf, len) = heartbeat(VM, 1);
        let sealed = sender.seal(&mut buf, len).expect("room");
        assert_eq!(buf[25], id, "sent with the primary");
        assert!(receiver.open(&buf[..sealed]).is_ok(), "key {id} accepted");
    }
    // One window per key: the same counter under the other key is not a replay.
    assert_eq!(receiver.senders(), 2);
    assert_eq!(
        Keyring::new(old(), Some(Key::new(1, &secret(9)))).map(|_| ()),
        Err(AuthConfigError::SameKeyId { id: 1 })
    );
    assert_eq!(
        Authenticator::new(AuthMode::Accept, None, 0, 1).map(|_| ()),
        Err(AuthConfigError::NoKey {
            mode: AuthMode::Accept
        })
    );
}

#[test]
fn counters_never_repeat_across_a_restart() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_556_303_548);
    let first = initial_counter(t0);
    assert_eq!(first, 1_556_303_548_000_000_000);
    // A sender that sent a million frames in its first second and restarted a second
    // later starts above everything it sent.
    assert!(initial_counter(t0 + Duration::from_secs(1)) > first + 1_000_000);
    assert_eq!(
        initial_counter(SystemTime::UNIX_EPOCH - Duration::from_secs(1)),
        0
    );
}

#[test]
fn seal_errors_and_off_mode() {
    let mut off = Authenticator::off();
    let (mut buf, len) = heartbeat(VM, 1);
    let copy = buf;
    assert_eq!(off.seal(&mut buf, len), Ok(len));
    assert_eq!(buf, copy, "off changes nothing");
    assert_eq!(off.overhead(), 0);
    let mut a = auth(AuthMode::Accept, keys(1, 0));
    assert_eq!(a.overhead(), TRAILER_LEN);
    assert_eq!(a.seal(&mut buf, 21), Err(SealError::NotAFrame { len: 21 }));
    assert_eq!(
        a.seal(&mut buf, 200),
        Err(SealError::NotAFrame { len: 200 })
    );
    let mut short = [0u8; 40];
    short.copy_from_slice(&copy[..40]);
    assert_eq!(
        a.seal(&mut short, 40),
        Err(SealError::BufferTooSmall { len: 40, need: 60 })
    );
    assert_eq!(
        a.next_counter(),
        COUNTER,
        "nothing consumed by a failed seal"
    );
    let mut last = Authenticator::new(AuthMode::Accept, Some(keys(1, 0)), u64::MAX, 4).expect("ok");
    assert_eq!(last.seal(&mut buf, len), Err(SealError::CounterExhausted));
    assert_eq!("require".parse(), Ok(AuthMode::Require));
    assert_eq!(
        "on".parse::<AuthMode>(),
        Err(AuthModeError("on".to_owned()))
    );
}

/// A real agent endpoint and a real monitor endpoint, every frame through `seal` and
/// `open`: the handshake completes and heartbeats arrive with the endpoints unchanged.
fn pair(agent_mode: AuthMode, monitor_mode: AuthMode) -> (Endpoint, Authenticator) {
    let t0 = Instant::from_millis(1);
    let hello = HelloId {
        secs: 1_556_303_548,
        nanos: 719_328_000,
        suffix: 38,
    };
    let hm_uuid = Uuid::parse(b"5c3196a3-c41f-4b5c-9861-dee6077081c6").expect("uuid");
    let vm_uuid = Uuid::parse(b"61be20f0-09a8-4753-b5e5-564f8a545ed5").expect("uuid");
    let mut mon = Endpoint::new(EndpointConfig::monitor(HM, hm_uuid, hello), t0).expect("ok");
    let mut agent = Endpoint::new(EndpointConfig::agent(VM, vm_uuid, "linux"), t0).expect("ok");
    let make = |mode| {
        if mode == AuthMode::Off {
            Authenticator::off()
        } else {
            auth(mode, keys(1, 0))
        }
    };
    let (mut mon_auth, mut agent_auth) = (make(monitor_mode), make(agent_mode));
    let mut buf = [0u8; 2048];
    let mut heartbeats = 0;
    for step in 0..400u64 {
        let now = t0 + Duration::from_millis(step * 50);
        mon.handle_timeout(now);
        agent.handle_timeout(now);
        while let Some(n) = mon.poll_transmit(now, &mut buf) {
            let n = mon_auth.seal(&mut buf, n).expect("room");
            if let Ok(f) = agent_auth.open(&buf[..n]) {
                agent.handle_frame(now, f);
            }
        }
        while let Some(n) = agent.poll_transmit(now, &mut buf) {
            let n = agent_auth.seal(&mut buf, n).expect("room");
            if let Ok(f) = mon_auth.open(&buf[..n])
                && let Outcome::Heartbeat(_) = mon.handle_frame(now, f)
            {
                heartbeats += 1;
            }
        }
        while mon.poll_event().is_some() || agent.poll_event().is_some() {}
        if heartbeats >= 2 {
            break;
        }
    }
    assert!(
        heartbeats >= 2,
        "{agent_mode} agent heartbeats reach a {monitor_mode} monitor"
    );
    (mon, mon_auth)
}

#[test]
fn endpoints_pair_through_the_layer() {
    for (agent, monitor) in [
        (AuthMode::Require, AuthMode::Require),
        (AuthMode::Accept, AuthMode::Require),
        (AuthMode::Off, AuthMode::Accept),
        (AuthMode::Accept, AuthMode::Off),
        (AuthMode::Require, AuthMode::Accept),
    ] {
        let (mon, mon_auth) = pair(agent, monitor);
        assert_eq!(mon.stats().drops(), 0, "{agent} → {monitor}");
        assert_eq!(mon_auth.counters().drops(), 0, "{agent} → {monitor}");
        let c = mon_auth.counters();
        match (agent, monitor) {
            (_, AuthMode::Off) => assert_eq!(c, &AuthCounters::default()),
            (AuthMode::Off, _) => assert!(c.auth_plain_accepted > 0 && c.auth_verified == 0),
            _ => assert!(c.auth_verified > 0 && c.auth_plain_accepted == 0),
        }
    }
}

#[test]
fn config_loads_keys_and_names_the_setting() {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("dir");
    let write = |name: &str, id: u8, mode: u32| {
        let path = dir.path().join(name);
        let mut f = std::fs::File::create(&path).expect("create");
        writeln!(f, "{id} {}", "ab".repeat(32)).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    };
    let (k1, k2, open) = (
        write("k1", 1, 0o600),
        write("k2", 2, 0o400),
        write("k3", 3, 0o644),
    );
    let off = AuthConfig::default();
    assert!(off.keyring().expect("off needs nothing").is_none());
    let cfg = AuthConfig {
        mode: AuthMode::Require,
        key_file: Some(k1.clone()),
        second_key_file: Some(k2.clone()),
    };
    let ring = cfg.keyring().expect("valid").expect("keys");
    assert_eq!(
        (ring.primary().id(), ring.second().map(Key::id)),
        (1, Some(2))
    );
    let bad = AuthConfig {
        second_key_file: Some(open.clone()),
        ..cfg.clone()
    };
    let msg = bad.keyring().expect_err("0644").to_string();
    assert!(msg.starts_with("auth_second_key_file: key file "), "{msg}");
    assert!(msg.contains("0644"), "{msg}");
    let same = AuthConfig {
        second_key_file: Some(k1.clone()),
        ..cfg.clone()
    };
    assert!(matches!(
        same.keyring(),
        Err(AuthSetupError::Config(AuthConfigError::SameKeyId { id: 1 }))
    ));
    let none = AuthConfig {
        mode: AuthMode::Accept,
        ..AuthConfig::default()
    };
    assert_eq!(
        none.validate(),
        Err(AuthConfigError::NoKey {
            mode: AuthMode::Accept
        })
    );
    let second_only = AuthConfig {
        second_key_file: Some(k2),
        ..AuthConfig::default()
    };
    assert_eq!(
        second_only.validate(),
        Err(AuthConfigError::SecondWithoutFirst)
    );
}

#[test]
fn refusals_are_logged_once_per_interval_with_a_count() {
    let mut rx = auth(AuthMode::Require, keys(1, 0));
    let mut log = RefusalLog::new(Duration::from_secs(60));
    let t0 = Instant::from_millis(1);
    assert_eq!(log.poll(t0, &rx), None, "nothing refused yet");
    let (hb, len) = heartbeat(VM, 1);
    assert!(rx.open(&hb[..len]).is_err());
    assert_eq!(log.poll(t0, &rx), Some((1, AuthDrop::Unauthenticated)));
    for _ in 0..5 {
        assert!(rx.open(&hb[..len]).is_err());
    }
    assert_eq!(log.poll(t0 + Duration::from_secs(59), &rx), None);
    assert_eq!(
        log.poll(t0 + Duration::from_secs(60), &rx),
        Some((5, AuthDrop::Unauthenticated))
    );
    assert_eq!(
        log.poll(t0 + Duration::from_secs(200), &rx),
        None,
        "no new refusal"
    );
}
