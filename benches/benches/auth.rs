//! What authenticated frames cost (`docs/hvncp.md` §7), next to the plain frame, in the
//! same run.
//!
//! Group `auth_heartbeat`, per heartbeat (60-byte frame, `HB:`):
//! - `plain_parse`: [`Frame::parse`] of the plain frame (checksum included): what a
//!   monitor pays per heartbeat without authentication;
//! - `open_parse`: [`Authenticator::open`] of the sealed frame (tag, constant-time
//!   compare, replay window) then [`Frame::parse`] of what it returns: what it pays with
//!   `auth = require`;
//! - `plain_emit` / `emit_seal`: [`FrameBuilder::emit`](dataplane::wire::FrameBuilder::emit)
//!   of the heartbeat, without and with [`Authenticator::seal`]: what an agent pays per
//!   heartbeat sent.
//!
//! Group `auth_mac`, the candidates for the tag over the 34 bytes a heartbeat's tag
//! covers and over a full 1514-byte frame (how the MAC was chosen, `docs/perf.md`):
//! HMAC-SHA256 (`hmac` + `sha2`, key pads precomputed: what [`Key::tag`] does),
//! keyed BLAKE3 (`blake3`), BLAKE2s-MAC (`blake2`), and Poly1305 with a one-time key from
//! a ChaCha20 block per frame (`chacha20` + `poly1305`, as in ChaCha20-Poly1305 with an
//! empty plaintext; Poly1305 alone must never reuse a key).
//!
//! `cargo bench -p hvncp-benches --bench auth`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use blake2::digest::{KeyInit as _, Mac as _};
use chacha20::cipher::{KeyIvInit as _, StreamCipher as _};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataplane::auth::{AuthMode, Authenticator, Key, Keyring};
use dataplane::wire::{DEFAULT_ETHERTYPE, Frame, MIN_FRAME_LEN};
use hvncp_benches::{
    AGENT_MAC, HEARTBEAT, MONITOR_MAC, builder, heartbeat_frame, heartbeat_header,
};

const SECRET: [u8; 32] = [0x5a; 32];
/// Sealed heartbeats opened in a row before the receiver starts afresh (their counters
/// would be replays the second time round).
const RING: usize = 4096;

fn authenticator() -> Authenticator {
    let keys = Keyring::new(Key::new(1, &SECRET), None).expect("one key");
    Authenticator::new(
        AuthMode::Require,
        Some(keys),
        1_556_303_548_719_328_000,
        1024,
    )
    .expect("valid")
}

fn heartbeat(c: &mut Criterion) {
    let plain = heartbeat_frame(AGENT_MAC, MONITOR_MAC, 7);
    let mut tx = authenticator();
    let sealed: Vec<[u8; MIN_FRAME_LEN]> = (0..RING)
        .map(|_| {
            let mut f = plain;
            let n = tx.seal(&mut f, MIN_FRAME_LEN).expect("room");
            assert_eq!(n, MIN_FRAME_LEN);
            f
        })
        .collect();
    // The bench measures what it claims: every sealed frame opens to the plain one.
    let mut check = authenticator();
    for f in &sealed {
        let opened = check.open(f).expect("verifies");
        let parsed = Frame::parse(opened, DEFAULT_ETHERTYPE).expect("valid");
        assert_eq!(parsed.payload, HEARTBEAT);
    }

    let mut g = c.benchmark_group("auth_heartbeat");
    g.throughput(Throughput::Elements(1));
    g.bench_function("plain_parse", |b| {
        b.iter(|| Frame::parse(black_box(&plain), DEFAULT_ETHERTYPE))
    });
    g.bench_function("open_parse", |b| {
        b.iter_custom(|iters| {
            let mut rx = authenticator();
            let mut refused = 0u64;
            let start = Instant::now();
            for i in 0..iters {
                let i = usize::try_from(i).unwrap_or(0) % RING;
                if i == 0 {
                    // A fresh receiver every RING frames: one small table per 4096.
                    rx = authenticator();
                }
                match rx.open(black_box(&sealed[i])) {
                    Ok(f) => {
                        black_box(Frame::parse(f, DEFAULT_ETHERTYPE).is_ok());
                    }
                    Err(_) => refused += 1,
                }
            }
            let took = start.elapsed();
            assert_eq!(refused, 0, "every sealed heartbeat opens");
            took
        })
    });
    let builder = builder(AGENT_MAC, MONITOR_MAC);
    let header = heartbeat_header(7);
    let mut buf = [0u8; MIN_FRAME_LEN];
    g.bench_function("plain_emit", |b| {
        b.iter(|| {
            builder.emit(
                black_box(&mut buf),
                black_box(&header),
                black_box(HEARTBEAT),
            )
        })
    });
    let mut tx = authenticator();
    g.bench_function("emit_seal", |b| {
        b.iter(|| {
            let n = builder
                .emit(
                    black_box(&mut buf),
                    black_box(&header),
                    black_box(HEARTBEAT),
                )
                .expect("fits");
            tx.seal(black_box(&mut buf), n)
        })
    });
    g.finish();
}

fn candidates(c: &mut Criterion) {
    let mut covered = heartbeat_frame(AGENT_MAC, MONITOR_MAC, 7).to_vec();
    covered.truncate(14 + 8 + 3 + 9);
    let full: Vec<u8> = (0..1514u32).map(|i| (i % 251) as u8).collect();
    let hmac_key = Key::new(1, &SECRET);
    let blake2 = blake2::Blake2sMac256::new_from_slice(&SECRET).expect("32-byte key");
    let mut g = c.benchmark_group("auth_mac");
    for (name, data) in [("34", &covered[..]), ("1514", &full[..])] {
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(format!("hmac_sha256_{name}"), |b| {
            b.iter(|| hmac_key.tag(black_box(data)))
        });
        g.bench_function(format!("blake3_keyed_{name}"), |b| {
            b.iter(|| blake3::keyed_hash(&SECRET, black_box(data)))
        });
        g.bench_function(format!("blake2s_mac_{name}"), |b| {
            b.iter(|| {
                let mut m = blake2.clone();
                m.update(black_box(data));
                m.finalize().into_bytes()
            })
        });
        g.bench_function(format!("chacha20_poly1305_{name}"), |b| {
            let mut counter = 0u64;
            b.iter(|| {
                counter += 1;
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&counter.to_be_bytes());
                let mut one_time = [0u8; 32];
                chacha20::ChaCha20::new(&SECRET.into(), &nonce.into())
                    .apply_keystream(&mut one_time);
                poly1305::Poly1305::new(&one_time.into()).compute_unpadded(black_box(data))
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = heartbeat, candidates
}
criterion_main!(benches);
