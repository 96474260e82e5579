//! What a host monitor pays per frame in the `wire` layer.
//!
//! Cases:
//! - `parse_heartbeat`: [`Frame::parse`] of a 60-byte padded `HB:` frame, checksum
//!   included — the per-frame cost of the monitor's receive path.
//! - `parse_heartbeat_pnet_only`: `pnet_packet`'s `EthernetPacket::new` and
//!   `get_ethertype` on the same frame — the floor that any HVNCP parse sits on.
//! - `checksum_1492`: [`checksum`] over a full 1492-byte payload.
//! - `emit_heartbeat`: [`FrameBuilder::emit`] of a heartbeat into a 60-byte buffer —
//!   the agent's per-period send cost.
//!
//! `cargo bench -p hvncp-benches --bench wire`; compare runs with criterion's
//! `--save-baseline NAME` / `--baseline NAME`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataplane::wire::{
    DEFAULT_ETHERTYPE, DEFAULT_MAX_PAYLOAD, Frame, HEADER_LEN, MIN_FRAME_LEN, checksum,
};
use hvncp_benches::{
    AGENT_MAC, HEARTBEAT, MONITOR_MAC, builder, heartbeat_frame, heartbeat_header, max_payload,
};
use pnet_packet::ethernet::EthernetPacket;

fn parse(c: &mut Criterion) {
    let frame = heartbeat_frame(AGENT_MAC, MONITOR_MAC, 7);
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_heartbeat", |b| {
        b.iter(|| Frame::parse(black_box(&frame), DEFAULT_ETHERTYPE))
    });
    g.bench_function("parse_heartbeat_pnet_only", |b| {
        b.iter(|| EthernetPacket::new(black_box(&frame)).map(|p| p.get_ethertype()))
    });
    g.finish();
}

fn checksum_max(c: &mut Criterion) {
    let payload = max_payload();
    let header = [0x02, 0x00, 0x0b, 0x80, 0x00, 0x01, 0x05, 0xd4];
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Bytes(u64::from(DEFAULT_MAX_PAYLOAD)));
    g.bench_function("checksum_1492", |b| {
        b.iter(|| checksum(black_box(&header[..HEADER_LEN]), black_box(&payload)))
    });
    g.finish();
}

fn emit(c: &mut Criterion) {
    let builder = builder(AGENT_MAC, MONITOR_MAC);
    let header = heartbeat_header(7);
    let mut buf = [0u8; MIN_FRAME_LEN];
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    g.bench_function("emit_heartbeat", |b| {
        b.iter(|| {
            builder.emit(
                black_box(&mut buf),
                black_box(&header),
                black_box(HEARTBEAT),
            )
        })
    });
    g.finish();
}

fn config() -> Criterion {
    // Nanosecond-scale cases settle quickly; keep a full `cargo bench` run short.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = wire;
    config = config();
    targets = parse, checksum_max, emit
}
criterion_main!(wire);
