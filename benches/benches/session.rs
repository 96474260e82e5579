//! What a host monitor pays per frame above the wire layer, and what a large message
//! costs end to end.
//!
//! Cases:
//! - `ingest_heartbeat/10000` and `/100000`: [`Endpoint::handle_frame`] of a heartbeat
//!   from one of N established agents, round robin — parse, checksum, peer lookup by
//!   MAC, duplicate window, message parse, liveness update. Each frame carries a fresh
//!   packet number (two bytes patched per frame: number and checksum).
//! - `fragment_reassemble_64k`: a 64 KiB message through two real sessions on a
//!   perfect in-memory wire — fragmentation, 44 packets, 44 acknowledgements,
//!   reassembly, delivery.
//! - `copy_64k_baseline`: the same 64 KiB copied once into a fresh `Vec` — the floor
//!   any delivery of a message pays, for the ratio in `docs/perf.md`.
//!
//! `cargo bench -p hvncp-benches --bench session`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::endpoint::{Endpoint, EndpointConfig};
use dataplane::message::{HelloId, Uuid};
use dataplane::session::{Config, Event, Priority, Session};
use dataplane::sim::connect_fake_agents;
use dataplane::time::Instant;
use dataplane::wire::{DEFAULT_ETHERTYPE, Frame, MacAddr};

const MONITOR: MacAddr = MacAddr([0x6a, 0x6a, 0x08, 0x84, 0xee, 0x11]);
const AGENT: MacAddr = MacAddr([0x6a, 0x6a, 0x0f, 0xfd, 0xf7, 0x07]);

/// Offsets in a heartbeat frame: Ethernet header (14) + packet number / checksum.
const NUMBER_AT: usize = 14 + 2;
const CHECKSUM_AT: usize = 14 + 4;

fn monitor_with(n: usize) -> (Endpoint, Vec<[u8; 60]>) {
    let hello = HelloId {
        secs: 1_556_303_548,
        nanos: 719_328_000,
        suffix: 38,
    };
    let uuid = Uuid::parse(b"5c3196a3-c41f-4b5c-9861-dee6077081c6").expect("uuid");
    let now = Instant::from_millis(1);
    let mut mon = Endpoint::new(EndpointConfig::monitor(MONITOR, uuid, hello), now).expect("valid");
    let mut agents = connect_fake_agents(&mut mon, now, n, 0x6a6a_0000_0000);
    mon.handle_timeout(now + Duration::from_secs(60));
    let frames = agents
        .iter_mut()
        .map(|a| {
            let mut f = [0u8; 60];
            a.heartbeat(MONITOR, &mut f);
            f
        })
        .collect();
    (mon, frames)
}

fn ingest(c: &mut Criterion) {
    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Elements(1));
    for n in [10_000usize, 100_000] {
        let (mut mon, mut frames) = monitor_with(n);
        let mut i = 0usize;
        let mut now = Instant::from_millis(60_001);
        let mut fed = 0u64;
        g.bench_with_input(BenchmarkId::new("ingest_heartbeat", n), &n, |b, &n| {
            b.iter(|| {
                if i == n {
                    // Next round: every agent's next packet number (and checksum).
                    i = 0;
                    now += Duration::from_millis(1);
                    for f in frames.iter_mut() {
                        f[NUMBER_AT] = f[NUMBER_AT].wrapping_add(1);
                        f[CHECKSUM_AT] = f[CHECKSUM_AT].wrapping_add(1);
                    }
                }
                let out = mon.handle_frame(now, black_box(&frames[i]));
                i += 1;
                fed += 1;
                out
            })
        });
        // The measurement is only meaningful if every frame fed was taken as a fresh
        // heartbeat: nothing dropped, nothing taken for a duplicate.
        let stats = mon.stats();
        assert_eq!(stats.heartbeats_in, fed, "{stats:?}");
        assert_eq!(stats.drops(), 0, "{stats:?}");
        assert_eq!(stats.duplicates, 0, "{stats:?}");
    }
    g.finish();
}

fn pair() -> (Session, Session) {
    let config = Arc::new(Config::default());
    let mut a = Session::new(config.clone(), b"a".as_slice().into(), AGENT, MONITOR, 1);
    let mut m = Session::new(config, b"m".as_slice().into(), MONITOR, AGENT, 9);
    a.connect();
    shuttle(&mut a, &mut m, &mut vec![0u8; 2048]);
    while a.poll_event().is_some() || m.poll_event().is_some() {}
    assert!(a.is_established() && m.is_established());
    (a, m)
}

/// Move frames both ways until both sessions are quiet; returns frames moved.
fn shuttle(a: &mut Session, b: &mut Session, buf: &mut [u8]) -> usize {
    let now = Instant::ZERO;
    let mut moved = 0;
    loop {
        let mut any = false;
        while let Some(n) = a.poll_transmit(now, buf) {
            let f = Frame::parse(&buf[..n], DEFAULT_ETHERTYPE).expect("valid");
            let _ = b.handle_frame(now, &f);
            moved += 1;
            any = true;
        }
        while let Some(n) = b.poll_transmit(now, buf) {
            let f = Frame::parse(&buf[..n], DEFAULT_ETHERTYPE).expect("valid");
            let _ = a.handle_frame(now, &f);
            moved += 1;
            any = true;
        }
        if !any {
            return moved;
        }
    }
}

fn fragmentation(c: &mut Criterion) {
    let (mut a, mut m) = pair();
    let message: Vec<u8> = (0..64 * 1024u32).map(|i| i.to_le_bytes()[0]).collect();
    let mut buf = vec![0u8; 2048];
    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Bytes(message.len() as u64));
    g.bench_function("fragment_reassemble_64k", |b| {
        b.iter(|| {
            m.send(Priority::Normal, black_box(&message)).expect("fits");
            let frames = shuttle(&mut m, &mut a, &mut buf);
            debug_assert_eq!(frames, 88);
            let mut got = 0;
            while let Some(e) = a.poll_event() {
                if let Event::Message { payload, .. } = e {
                    got = payload.len();
                }
            }
            while m.poll_event().is_some() {}
            assert_eq!(got, message.len());
        })
    });
    g.bench_function("copy_64k_baseline", |b| {
        b.iter(|| black_box(&message).to_vec())
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = ingest, fragmentation
}
criterion_main!(benches);
