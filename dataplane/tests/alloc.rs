//! Memory on the hot path, measured with a counting global allocator:
//!
//! - receiving a heartbeat allocates nothing (monitor side), and neither does sending
//!   one (agent side);
//! - sealing and opening an authenticated heartbeat allocates nothing, nor does
//!   refusing a replayed one;
//! - an idle established peer costs at most 256 bytes in a 100,000-peer table;
//! - a flood of forged source MACs leaves the table's memory bounded by its limits.
//!
//! Counts are per thread, so the tests of this binary may run in parallel.

// The counting allocator is the one unsafe item here: it forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use dataplane::auth::{AuthMode, Authenticator, Key, Keyring};
use dataplane::endpoint::{Endpoint, EndpointConfig, Outcome};
use dataplane::message::{HelloId, Uuid};
use dataplane::sim::{FakeAgent, connect_fake_agents};
use dataplane::time::Instant;
use dataplane::wire::MacAddr;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static LIVE_BYTES: Cell<i64> = const { Cell::new(0) };
}

fn note(allocs: u64, bytes: i64) {
    // `try_with`: the allocator may run while thread-locals are being torn down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + allocs));
    let _ = LIVE_BYTES.try_with(|c| c.set(c.get() + bytes));
}

fn size(layout: Layout) -> i64 {
    i64::try_from(layout.size()).unwrap_or(i64::MAX)
}

// SAFETY: every method forwards to `System` with the same arguments; the counting has
// no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(1, size(layout));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(1, size(layout));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(0, -size(layout));
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(
            1,
            i64::try_from(new_size).unwrap_or(i64::MAX) - size(layout),
        );
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn live_bytes() -> i64 {
    LIVE_BYTES.with(Cell::get)
}

const MONITOR: MacAddr = MacAddr([0x6a, 0x6a, 0x08, 0x84, 0xee, 0x11]);

fn monitor(now: Instant) -> Endpoint {
    let hello = HelloId {
        secs: 1_556_303_548,
        nanos: 719_328_000,
        suffix: 38,
    };
    let uuid = Uuid::parse(b"5c3196a3-c41f-4b5c-9861-dee6077081c6").expect("uuid");
    Endpoint::new(EndpointConfig::monitor(MONITOR, uuid, hello), now).expect("valid")
}

#[test]
fn receiving_heartbeats_allocates_nothing() {
    let t0 = Instant::from_millis(1);
    let mut mon = monitor(t0);
    let mut agents: Vec<FakeAgent> = connect_fake_agents(&mut mon, t0, 1000, 0x6a6a_0000_0000);
    // Frames are built before counting starts: only the receive path is measured.
    let mut frames = vec![[0u8; 60]; agents.len() * 5];
    for (i, f) in frames.iter_mut().enumerate() {
        let a = &mut agents[i % 1000];
        a.heartbeat(MONITOR, f);
    }
    let before = allocations();
    let mut heartbeats = 0;
    for (i, f) in frames.iter().enumerate() {
        let now = t0 + Duration::from_millis(i as u64);
        if let Outcome::Heartbeat(_) = mon.handle_frame(now, f) {
            heartbeats += 1;
        }
    }
    assert_eq!(heartbeats, frames.len(), "every heartbeat accepted");
    assert_eq!(allocations() - before, 0, "no allocation per heartbeat");
}

#[test]
fn sending_heartbeats_allocates_nothing_once_warm() {
    // A real agent endpoint heartbeating to a real monitor endpoint, frames moved by hand
    // through fixed buffers.
    let t0 = Instant::from_millis(1);
    let mut mon = monitor(t0);
    let agent_mac = MacAddr([0x6a, 0x6a, 0x0f, 0xfd, 0xf7, 0x07]);
    let uuid = Uuid::parse(b"61be20f0-09a8-4753-b5e5-564f8a545ed5").expect("uuid");
    let mut agent =
        Endpoint::new(EndpointConfig::agent(agent_mac, uuid, "linux"), t0).expect("valid");
    let mut a_buf = vec![0u8; 2048];
    let mut m_buf = vec![0u8; 2048];
    let mut exchange = |now: Instant, mon: &mut Endpoint, agent: &mut Endpoint| {
        mon.handle_timeout(now);
        agent.handle_timeout(now);
        for _ in 0..8 {
            let mut moved = false;
            while let Some(n) = mon.poll_transmit(now, &mut m_buf) {
                agent.handle_frame(now, &m_buf[..n]);
                moved = true;
            }
            while let Some(n) = agent.poll_transmit(now, &mut a_buf) {
                mon.handle_frame(now, &a_buf[..n]);
                moved = true;
            }
            while mon.poll_event().is_some() || agent.poll_event().is_some() {}
            if !moved {
                break;
            }
        }
    };
    // Handshake, START_HB, and a minute of heartbeats to warm every buffer up.
    let mut now = t0;
    for _ in 0..7 {
        exchange(now, &mut mon, &mut agent);
        now += Duration::from_secs(10);
    }
    let sent_before = agent.stats().heartbeats_out;
    let received_before = mon.stats().heartbeats_in;
    let before = allocations();
    for _ in 0..30 {
        exchange(now, &mut mon, &mut agent);
        now += Duration::from_secs(10);
    }
    let sent = agent.stats().heartbeats_out - sent_before;
    assert_eq!(sent, 30, "one heartbeat per 10 s period");
    assert_eq!(mon.stats().heartbeats_in - received_before, 30);
    assert_eq!(
        allocations() - before,
        0,
        "no allocation to time, send or receive a heartbeat (Hellos included)"
    );
}

#[test]
fn idle_peer_costs_at_most_256_bytes_in_a_100k_table() {
    const PEERS: usize = 100_000;
    let t0 = Instant::from_millis(1);
    let before = live_bytes();
    let mut mon = monitor(t0);
    let agents = connect_fake_agents(&mut mon, t0, PEERS, 0x6a6a_0000_0000);
    // Let every timer of the handshakes fire so no stale entry is left queued.
    mon.handle_timeout(t0 + Duration::from_secs(60));
    let mut buf = [0u8; 2048];
    while mon
        .poll_transmit(t0 + Duration::from_secs(60), &mut buf)
        .is_some()
    {}
    assert_eq!(mon.len(), PEERS);
    let agents_bytes = agents.capacity() * std::mem::size_of::<FakeAgent>();
    let table = live_bytes() - before - i64::try_from(agents_bytes).expect("fits");
    let per_peer = table / i64::try_from(PEERS).expect("fits");
    println!(
        "monitor endpoint with {PEERS} idle established peers: {table} bytes, {per_peer} bytes per peer (table entry {} bytes)",
        Endpoint::PEER_SIZE
    );
    assert!(per_peer <= 256, "{per_peer} bytes per idle peer");
    drop(agents);
}

fn authenticator(mode: AuthMode) -> Authenticator {
    let keys = Keyring::new(Key::new(1, &[7u8; 32]), Some(Key::new(2, &[9u8; 32]))).expect("ids");
    Authenticator::new(mode, Some(keys), 1_556_303_548_719_328_000, 4096).expect("valid")
}

#[test]
fn sealing_and_opening_heartbeats_allocates_nothing() {
    let t0 = Instant::from_millis(1);
    let mut mon = monitor(t0);
    let mut agents: Vec<FakeAgent> = connect_fake_agents(&mut mon, t0, 1000, 0x6a6a_0000_0000);
    let mut tx = authenticator(AuthMode::Require);
    let mut rx = authenticator(AuthMode::Require);
    // Room for every sender's replay window, as a daemon reserves its peer table.
    rx.reserve(1000);
    let mut frames = vec![[0u8; 128]; agents.len() * 5];
    let before = allocations();
    let mut heartbeats = 0;
    for (i, f) in frames.iter_mut().enumerate() {
        let now = t0 + Duration::from_millis(i as u64);
        let len = agents[i % 1000].heartbeat(MONITOR, f);
        let len = tx.seal(f, len).expect("room for the trailer");
        let Ok(opened) = rx.open(&f[..len]) else {
            panic!("frame {i} refused: {:?}", rx.counters());
        };
        if let Outcome::Heartbeat(_) = mon.handle_frame(now, opened) {
            heartbeats += 1;
        }
    }
    assert_eq!(heartbeats, frames.len(), "every sealed heartbeat accepted");
    assert_eq!(rx.counters().auth_verified, frames.len() as u64);
    assert_eq!(rx.senders(), 1000);
    assert_eq!(
        allocations() - before,
        0,
        "no allocation to seal, open (first window of a sender included) and handle a heartbeat"
    );
    // Refusals allocate nothing either: a replay of every frame.
    let before = allocations();
    for f in &frames {
        assert!(rx.open(f).is_err());
    }
    assert_eq!(rx.counters().auth_drop_replayed, frames.len() as u64);
    assert_eq!(allocations() - before, 0, "no allocation to refuse a frame");
}

/// A frame from a MAC the monitor does not know: an agent's first SYN (even `i`) or a
/// heartbeat (odd `i`).
fn forged_frame(i: u64, buf: &mut [u8]) -> usize {
    let src = MacAddr::from_u64(0x0aff_0000_0000 + i);
    if i % 2 == 1 {
        return FakeAgent {
            mac: src,
            next_number: 1,
        }
        .heartbeat(MONITOR, buf);
    }
    let mut uuid = [0u8; 16];
    uuid[..8].copy_from_slice(&i.to_be_bytes());
    dataplane::sim::forged_syn(src, MONITOR, Uuid(uuid), Some(i), buf).unwrap_or(0)
}

#[test]
fn a_flood_of_forged_macs_leaves_bounded_memory() {
    // 100 real agents, then forged MACs at 1 per 20 µs (4 s in all) with the driver's
    // timer and transmit turns: the memory after 40,000 forged MACs (past the 16,384
    // half-open limit, the table at its largest) and after 200,000 (stale half-open
    // peers displaced since the grace, 3 s, passed) must be the same within the growth
    // of no structure, and within the half-open limit's worth of peers.
    let t0 = Instant::from_millis(1);
    let mut mon = monitor(t0);
    let agents = connect_fake_agents(&mut mon, t0, 100, 0x6a6a_0000_0000);
    let limit = mon.config().max_half_open;
    let mut buf = vec![0u8; 2048];
    let mut now = t0;
    let start = live_bytes();
    let mut at_40k = 0;
    for i in 0..200_000u64 {
        now += Duration::from_micros(20);
        let n = forged_frame(i, &mut buf);
        mon.handle_frame(now, &buf[..n]);
        if i % 256 == 255 {
            if mon.poll_timeout().is_some_and(|t| t <= now) {
                mon.handle_timeout(now);
            }
            while mon.poll_event().is_some() {}
            while mon.poll_transmit(now, &mut buf).is_some() {}
        }
        if i == 40_000 {
            at_40k = live_bytes() - start;
        }
    }
    let at_200k = live_bytes() - start;
    let per_half_open = at_200k / i64::try_from(limit).expect("fits");
    println!(
        "{limit} half-open peers after 200,000 forged MACs: {at_200k} bytes ({per_half_open} per half-open peer); {at_40k} bytes after 40,000"
    );
    assert_eq!(mon.half_open_len(), limit);
    assert!(mon.stats().peers_evicted > 0, "stale peers displaced");
    assert!(
        per_half_open <= 1536,
        "{per_half_open} bytes per half-open peer"
    );
    assert!(
        at_200k <= at_40k + at_40k / 4,
        "memory keeps growing with forged MACs: {at_40k} -> {at_200k} bytes"
    );
    drop(agents);
}
