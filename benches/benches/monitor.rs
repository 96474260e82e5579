//! The host monitor's core at 100,000 VMs: what miss detection
//! ([`dataplane::heartbeat`] over [`dataplane::wheel`]) costs per heartbeat, per timer
//! re-arm and per expiry.
//!
//! Cases (group `monitor`, 100,000 VMs on one interface, `vm_miss_after` 20 s):
//! - `heartbeat_store`: [`HeartbeatTable::heartbeat`] of one of the VMs, round robin,
//!   every VM already DETECTED — the per-frame cost after the endpoint.
//! - `hashmap_insert_baseline`: `HashMap<SessionKey, Instant>::insert` over the same keys,
//!   round robin (each an overwrite) — the baseline for the ratio in `docs/perf.md`: the
//!   cheapest obvious way to remember "last heard at".
//! - `wheel_rearm`: [`TimerWheel::reschedule`] of one of 100,000 pending timers to a
//!   deadline 20 s later than its last, round robin.
//! - `expire_missing`: one [`HeartbeatTable::expire`] call when every VM is due at once:
//!   100,000 MISSING changes (throughput per VM).
//! - `expire_rearm`: one [`HeartbeatTable::expire`] call when every timer is due but every
//!   VM heartbeated since: each timer moves to its new deadline (the steady state: one
//!   wheel operation per VM per `vm_miss_after`, whatever the heartbeat rate).
//!
//! `cargo bench -p hvncp-benches --bench monitor`.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::endpoint::PeerId;
use dataplane::heartbeat::{Change, HbState, HeartbeatTable, SessionKey};
use dataplane::message::Uuid;
use dataplane::time::Instant;
use dataplane::wheel::{TimerId, TimerWheel};

const VMS: u32 = 100_000;
const MISS_AFTER: Duration = Duration::from_secs(20);

fn key(i: u32) -> SessionKey {
    SessionKey {
        iface: 0,
        peer: PeerId(i),
    }
}

fn uuid(i: u32) -> Uuid {
    let mut bytes = [0x5c; 16];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    Uuid(bytes)
}

/// A table watching [`VMS`] VMs since `t0`, each DETECTED by one heartbeat at `t0`.
fn detected_table(t0: Instant) -> HeartbeatTable {
    let mut table = HeartbeatTable::new(1, MISS_AFTER);
    for i in 0..VMS {
        table.watch(key(i), uuid(i), t0);
        let change = table.heartbeat(key(i), t0);
        assert_eq!(change.map(|c| c.state), Some(HbState::Detected));
    }
    assert_eq!(table.len(), VMS as usize);
    table
}

fn store(c: &mut Criterion) {
    let mut g = c.benchmark_group("monitor");
    g.throughput(Throughput::Elements(1));

    let t0 = Instant::from_millis(1);
    let mut table = detected_table(t0);
    let mut i = 0u32;
    let mut now = t0;
    let mut stored = 0u64;
    g.bench_function(BenchmarkId::new("heartbeat_store", VMS), |b| {
        b.iter(|| {
            if i == VMS {
                i = 0;
                now += Duration::from_millis(1);
            }
            let change = table.heartbeat(black_box(key(i)), now);
            i += 1;
            stored += 1;
            change
        });
    });
    // Every heartbeat landed on a DETECTED VM: no change, and none went MISSING (the
    // bench runs well within 20 s of virtual time).
    let mut changes = Vec::new();
    table.expire(now, &mut changes);
    assert!(changes.is_empty(), "{} changes", changes.len());
    assert!(stored > 0);

    let mut map: HashMap<SessionKey, Instant> = (0..VMS).map(|i| (key(i), t0)).collect();
    let mut i = 0u32;
    let mut now = t0;
    g.bench_function(BenchmarkId::new("hashmap_insert_baseline", VMS), |b| {
        b.iter(|| {
            if i == VMS {
                i = 0;
                now += Duration::from_millis(1);
            }
            let old = map.insert(black_box(key(i)), now);
            i += 1;
            old
        });
    });
    assert_eq!(map.len(), VMS as usize);

    let mut wheel: TimerWheel<SessionKey> =
        TimerWheel::new(dataplane::heartbeat::TICK, dataplane::heartbeat::BUCKETS);
    let mut ids: Vec<(TimerId, Instant)> = (0..VMS)
        .map(|i| {
            let deadline = t0 + MISS_AFTER + Duration::from_micros(u64::from(i));
            (wheel.insert(deadline, key(i)), deadline)
        })
        .collect();
    let mut i = 0usize;
    g.bench_function(BenchmarkId::new("wheel_rearm", VMS), |b| {
        b.iter(|| {
            if i == ids.len() {
                i = 0;
            }
            let (id, deadline) = &mut ids[i];
            *deadline += MISS_AFTER;
            let moved = wheel.reschedule(black_box(*id), *deadline);
            i += 1;
            moved
        });
    });
    assert_eq!(wheel.len(), VMS as usize);
    g.finish();
}

fn expiry(c: &mut Criterion) {
    let mut g = c.benchmark_group("monitor");
    g.throughput(Throughput::Elements(u64::from(VMS)));
    g.sample_size(20);
    let t0 = Instant::from_millis(1);
    let due = t0 + MISS_AFTER;

    g.bench_function(BenchmarkId::new("expire_missing", VMS), |b| {
        b.iter_batched(
            || {
                (
                    detected_table(t0),
                    Vec::<Change>::with_capacity(VMS as usize),
                )
            },
            |(mut table, mut changes)| {
                table.expire(due, &mut changes);
                assert_eq!(changes.len(), VMS as usize);
                (table, changes)
            },
            BatchSize::PerIteration,
        );
    });

    g.bench_function(BenchmarkId::new("expire_rearm", VMS), |b| {
        b.iter_batched(
            || {
                let mut table = detected_table(t0);
                let later = t0 + Duration::from_secs(10);
                for i in 0..VMS {
                    assert!(table.heartbeat(key(i), later).is_none());
                }
                (table, Vec::<Change>::new())
            },
            |(mut table, mut changes)| {
                table.expire(due, &mut changes);
                assert!(changes.is_empty());
                // Every timer moved to its VM's new deadline, 10 s on.
                let next = table.next_deadline().expect("every VM still watched");
                assert!(next > due && next <= t0 + Duration::from_secs(10) + MISS_AFTER);
                (table, changes)
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

criterion_group!(benches, store, expiry);
criterion_main!(benches);
