//! Write the fuzz seed corpus: `hvncp-corpus <dir>` creates `<dir>/<target>/seed-<name>.bin`
//! for every fuzz target of `fuzz/`:
//!
//! - `frame`: each golden frame of [`hvncp_benches::golden_frames`];
//! - `message`: a parser selector byte followed by a payload of the seed trace (every
//!   verb, the Hello id, both SYN property lists, a UUID);
//! - `auth`: each golden frame sealed with the target's key (id 1, 32 bytes of 0x5a),
//!   plus the plain heartbeat;
//! - `reassembly`, `session`: short operation sequences (a handshake, fragmented messages
//!   in and out of order, loss, duplication, timeouts, a reconnect...) encoded the way
//!   the targets decode their input;
//! - `wheel`: timer operations (deadlines within and many revolutions beyond the wheel,
//!   in the past, "never"; moves, cancels, stale ids, re-arming expiries).
//!
//! The structured targets read their input with `arbitrary` 1.x (`#[derive]`): the
//! leading fields in order, then the operations until the input ends, each preceded by a
//! byte whose low bit says "one more", each starting with a `u32` that selects the
//! variant (variant `i` of `n` is the range starting at `ceil(i × 2^32 / n)`), then its
//! fields, integers little-endian, `bool` as one byte. [`Ops`] writes that layout; its
//! variant numbers mirror the `Op` enums of `fuzz/fuzz_targets/{reassembly,session,wheel}.rs`
//! and must follow them when those change (a stale seed still decodes, to other ops).
//!
//! Run from the workspace root as `cargo run -p hvncp-benches --bin hvncp-corpus -- fuzz/corpus`.
//! The output is deterministic, so re-running it leaves the committed seeds unchanged.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::{fs, io};

use clap::Parser;

/// Write the fuzz seed corpus: `<DIR>/<target>/seed-<name>.bin` for every fuzz target
/// (frame, message, reassembly, session). Deterministic: re-running it leaves the
/// committed seeds unchanged.
#[derive(Parser, Debug)]
#[command(name = "hvncp-corpus", version)]
struct Cli {
    /// The corpus directory (normally `fuzz/corpus`); created if absent.
    dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let corpus = cli.dir.as_path();
    let written = write_frame_seeds(corpus)
        .and_then(|()| write_message_seeds(corpus))
        .and_then(|()| write_reassembly_seeds(corpus))
        .and_then(|()| write_session_seeds(corpus))
        .and_then(|()| write_auth_seeds(corpus))
        .and_then(|()| write_wheel_seeds(corpus));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hvncp-corpus: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Write `<corpus>/<target>/seed-<name>.bin` for each seed.
fn write_seeds<'a>(
    corpus: &Path,
    target: &str,
    seeds: impl IntoIterator<Item = (&'a str, Vec<u8>)>,
) -> io::Result<()> {
    let dir = corpus.join(target);
    fs::create_dir_all(&dir)?;
    for (name, bytes) in seeds {
        let path = dir.join(format!("seed-{name}.bin"));
        fs::write(&path, &bytes)?;
        println!("{} ({} bytes)", path.display(), bytes.len());
    }
    Ok(())
}

/// Seeds of the `frame` fuzz target: whole Ethernet frames.
fn write_frame_seeds(corpus: &Path) -> io::Result<()> {
    write_seeds(
        corpus,
        "frame",
        hvncp_benches::golden_frames()
            .into_iter()
            .map(|g| (g.name, g.bytes)),
    )
}

/// Seeds of the `auth` fuzz target: the golden frames sealed with its key, so that its
/// mutations start from frames whose tag verifies, and one plain frame.
fn write_auth_seeds(corpus: &Path) -> io::Result<()> {
    use dataplane::auth::{AuthMode, Authenticator, Key, Keyring, TRAILER_LEN};
    let keys = Keyring::new(Key::new(1, &[0x5a; 32]), None).map_err(io::Error::other)?;
    let mut tx = Authenticator::new(AuthMode::Require, Some(keys), 1_556_303_548_719_328_000, 1)
        .map_err(io::Error::other)?;
    let mut seeds = Vec::new();
    for g in hvncp_benches::golden_frames() {
        let mut bytes = g.bytes.clone();
        bytes.resize(g.bytes.len() + TRAILER_LEN, 0);
        let len = tx
            .seal(&mut bytes, g.bytes.len())
            .map_err(io::Error::other)?;
        bytes.truncate(len);
        seeds.push((g.name, bytes));
    }
    let plain =
        hvncp_benches::heartbeat_frame(hvncp_benches::AGENT_MAC, hvncp_benches::MONITOR_MAC, 1);
    seeds.push(("plain-heartbeat", plain.to_vec()));
    write_seeds(corpus, "auth", seeds)
}

/// Seeds of the `message` fuzz target: the first byte picks the parser (0 `Message`,
/// 1 `HelloId`, 2 `AgentSyn`, 3 `MonitorSyn`, 4 `Properties`, 5 `Uuid`), the rest is
/// the payload.
fn write_message_seeds(corpus: &Path) -> io::Result<()> {
    const AGENT_SYN: &[u8] =
        b"uuid=61be20f0-09a8-4753-b5e5-564f8a545ed5:ostype=AIX:verVmmLower=2.0:verVmmUpper=2.0";
    const MONITOR_SYN: &[u8] = b"uuid=5c3196a3-c41f-4b5c-9861-dee6077081c6:verHmRunning=2.0";
    let seeds: [(&str, u8, &[u8]); 19] = [
        ("hb", 0, b"HB:"),
        ("hb-seq", 0, b"HB:seq=42"),
        ("start-hb", 0, b"START_HB"),
        ("start-hb-period", 0, b"START_HB:period_ms=10000"),
        ("stop-hb", 0, b"STOP_HB"),
        ("shdn", 0, b"SHDN:DAEMON"),
        ("dbell", 0, b"DBELL:28"),
        ("dbell-prefix", 0, b"DBELL:0xFF"),
        ("pmsg-req", 0, b"PMSG_REQ:report=1:x=y"),
        ("pmsg-rsp", 0, b"PMSG_RSP:ok"),
        ("gmsg", 0, b"GMSG:received"),
        ("clrdb", 0, b"CLRDB"),
        ("unknown", 0, b"FUTURE_VERB:a=1:b"),
        ("hello", 1, b"1556303548.719328000.38"),
        ("agent-syn", 2, AGENT_SYN),
        ("monitor-syn", 3, MONITOR_SYN),
        (
            "properties",
            4,
            b"verVmmUpper=2.1:future=x=y:ostype=linux:=bad:noequals",
        ),
        ("uuid", 5, b"61BE20F0-09a8-4753-b5e5-564f8a545ed5"),
        (
            "agent-syn-shuffled",
            2,
            b"verVmmUpper=2.10:ostype=linux:uuid=61be20f0-09a8-4753-b5e5-564f8a545ed5:verVmmLower=2.9",
        ),
    ];
    write_seeds(
        corpus,
        "message",
        seeds.iter().map(|&(name, route, payload)| {
            let mut bytes = vec![route];
            bytes.extend_from_slice(payload);
            (name, bytes)
        }),
    )
}

/// Encoder of an `arbitrary` input: leading fields, then operations.
struct Ops {
    bytes: Vec<u8>,
    /// Number of variants of the target's `Op` enum.
    variants: u32,
}

impl Ops {
    fn new(variants: u32) -> Ops {
        Ops {
            bytes: Vec::new(),
            variants,
        }
    }

    fn u8(&mut self, v: u8) -> &mut Ops {
        self.bytes.push(v);
        self
    }

    fn bool(&mut self, v: bool) -> &mut Ops {
        self.u8(u8::from(v))
    }

    fn u16(&mut self, v: u16) -> &mut Ops {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn u32(&mut self, v: u32) -> &mut Ops {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn u64(&mut self, v: u64) -> &mut Ops {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Start operation number `variant` of the enum; its fields follow.
    fn op(&mut self, variant: u32) -> &mut Ops {
        assert!(
            variant < self.variants,
            "variant {variant} of {}",
            self.variants
        );
        // The smallest u32 that `(u64::from(x) * n) >> 32` maps to `variant`.
        let selector = (u64::from(variant) << 32).div_ceil(u64::from(self.variants));
        let selector = u32::try_from(selector).unwrap_or(u32::MAX);
        self.bytes.push(1);
        self.bytes.extend_from_slice(&selector.to_le_bytes());
        self
    }

    fn done(&self) -> Vec<u8> {
        self.bytes.clone()
    }
}

/// Operations of `fuzz/fuzz_targets/reassembly.rs`.
mod reassembly {
    pub const VARIANTS: u32 = 4;
    pub const ADD: u32 = 0;
    pub const ADVANCE: u32 = 1;
    pub const EXPIRE: u32 = 2;
    pub const RESET: u32 = 3;
}

/// `Op::Add { urgent, index, last, len, fill }`.
fn add(o: &mut Ops, urgent: bool, index: u8, last: bool, len: u16, fill: u8) {
    o.op(reassembly::ADD)
        .bool(urgent)
        .u8(index)
        .bool(last)
        .u16(len)
        .u8(fill);
}

/// Seeds of the `reassembly` fuzz target: `Input { budget: u16, first_number: u8, ops }`.
fn write_reassembly_seeds(corpus: &Path) -> io::Result<()> {
    let mut seeds = Vec::new();
    let start = |budget: u16, first: u8| {
        let mut o = Ops::new(reassembly::VARIANTS);
        o.u16(budget).u8(first);
        o
    };

    // A three-fragment message in order, then a single-packet one.
    let mut o = start(u16::MAX, 7);
    add(&mut o, false, 0, false, 1492, 1);
    add(&mut o, false, 1, false, 1492, 2);
    add(&mut o, false, 2, true, 100, 3);
    add(&mut o, false, 0, true, 24, 4);
    seeds.push(("in-order", o.done()));

    // Out of order, an urgent message in between, a duplicate index, an END below a
    // held index.
    let mut o = start(u16::MAX, 250);
    add(&mut o, false, 2, true, 10, 1);
    add(&mut o, true, 1, false, 700, 9);
    add(&mut o, false, 0, false, 1492, 2);
    add(&mut o, false, 0, false, 5, 2);
    add(&mut o, true, 0, false, 1492, 8);
    add(&mut o, true, 0, true, 3, 7);
    add(&mut o, false, 1, false, 1492, 3);
    add(&mut o, true, 3, true, 1, 6);
    add(&mut o, true, 2, true, 64, 5);
    seeds.push(("out-of-order", o.done()));

    // A partial message stalls past the timeout: discarded, then poisoned until reset.
    let mut o = start(u16::MAX, 0);
    add(&mut o, false, 0, false, 1492, 1);
    o.op(reassembly::ADVANCE).u16(500); // 8 s
    o.op(reassembly::EXPIRE);
    o.op(reassembly::ADVANCE).u16(400); // 14.4 s
    o.op(reassembly::EXPIRE);
    add(&mut o, false, 1, true, 10, 2);
    add(&mut o, false, 0, true, 3, 3);
    o.op(reassembly::RESET);
    add(&mut o, false, 0, true, 3, 4);
    seeds.push(("expire-poison-reset", o.done()));

    // A message growing past 64 KiB (45 full fragments).
    let mut o = start(u16::MAX, 1);
    for index in 0..45u8 {
        add(&mut o, false, index, false, 1492, index);
    }
    add(&mut o, false, 45, true, 1, 0);
    seeds.push(("oversized", o.done()));

    // A 6 KiB budget: the fifth full fragment does not fit.
    let mut o = start(1536, 3);
    for index in 0..6u8 {
        add(&mut o, false, index, index == 5, 1492, index);
    }
    o.op(reassembly::RESET);
    add(&mut o, false, 0, false, 1492, 1);
    seeds.push(("budget", o.done()));

    write_seeds(corpus, "reassembly", seeds)
}

/// Operations of `fuzz/fuzz_targets/session.rs`.
mod session {
    pub const VARIANTS: u32 = 12;
    pub const CONNECT_AGENT: u32 = 0;
    pub const SEND: u32 = 1;
    pub const DATAGRAM: u32 = 2;
    pub const DELIVER: u32 = 3;
    pub const DELIVER_ALL: u32 = 4;
    pub const DROP: u32 = 5;
    pub const DUPLICATE: u32 = 6;
    pub const CORRUPT: u32 = 7;
    pub const ADVANCE: u32 = 8;
    pub const CLOSE: u32 = 9;
}

/// `Input { wild, agent_number, monitor_number, ops }` of the session target.
fn session_input(wild: bool, agent: u8, monitor: u8) -> Ops {
    let mut o = Ops::new(session::VARIANTS);
    o.bool(wild).u8(agent).u8(monitor);
    o
}

/// `Op::Send { from_agent, urgent, len, fill }`.
fn send(o: &mut Ops, from_agent: bool, urgent: bool, len: u16, fill: u8) {
    o.op(session::SEND)
        .bool(from_agent)
        .bool(urgent)
        .u16(len)
        .u8(fill);
}

/// `Op::DeliverAll`, `rounds` times.
fn deliver_all(o: &mut Ops, rounds: usize) {
    for _ in 0..rounds {
        o.op(session::DELIVER_ALL);
    }
}

/// Seeds of the `session` fuzz target.
fn write_session_seeds(corpus: &Path) -> io::Result<()> {
    let mut seeds = Vec::new();

    // Handshake, then fragmented messages both ways at both priorities, and datagrams.
    let mut o = session_input(false, 1, 9);
    o.op(session::CONNECT_AGENT);
    deliver_all(&mut o, 4);
    send(&mut o, false, false, 24, b'S');
    send(&mut o, true, false, 700, 1);
    send(&mut o, true, true, 130, 2);
    send(&mut o, false, true, 1024, 3);
    o.op(session::DATAGRAM).bool(true).bool(false).u8(3).u8(0);
    deliver_all(&mut o, 12);
    seeds.push(("exchange", o.done()));

    // A lossy, reordering, duplicating link with retransmissions.
    let mut o = session_input(false, 200, 60);
    o.op(session::CONNECT_AGENT);
    deliver_all(&mut o, 4);
    send(&mut o, true, false, 400, 7);
    send(&mut o, true, false, 200, 8);
    send(&mut o, false, false, 300, 9);
    o.op(session::DROP).bool(false).u8(1);
    o.op(session::DUPLICATE).bool(false).u8(3);
    o.op(session::DELIVER).bool(false).u8(4);
    o.op(session::DELIVER).bool(false).u8(0);
    o.op(session::CORRUPT).bool(false).u8(2).u8(30).u8(0x10);
    o.op(session::DELIVER).bool(true).u8(1);
    o.op(session::ADVANCE).u16(10);
    deliver_all(&mut o, 3);
    o.op(session::ADVANCE).u16(20);
    deliver_all(&mut o, 6);
    seeds.push(("lossy", o.done()));

    // Urgent messages overtaking a long normal one; a window that fills up.
    let mut o = session_input(false, 255, 0);
    o.op(session::CONNECT_AGENT);
    deliver_all(&mut o, 4);
    send(&mut o, false, false, 1024, 1);
    send(&mut o, false, true, 64, 2);
    send(&mut o, false, true, 65, 3);
    o.op(session::DELIVER).bool(true).u8(0);
    o.op(session::DELIVER).bool(true).u8(5);
    deliver_all(&mut o, 10);
    seeds.push(("urgent", o.done()));

    // The agent reconnects in the middle of a message; a side closes; timers run out.
    let mut o = session_input(false, 17, 17);
    o.op(session::CONNECT_AGENT);
    deliver_all(&mut o, 4);
    send(&mut o, true, false, 900, 4);
    o.op(session::DELIVER).bool(false).u8(2);
    o.op(session::CONNECT_AGENT);
    send(&mut o, true, false, 100, 5);
    deliver_all(&mut o, 8);
    o.op(session::CLOSE).bool(false);
    send(&mut o, false, false, 50, 6);
    o.op(session::ADVANCE).u16(1000);
    o.op(session::CONNECT_AGENT);
    deliver_all(&mut o, 8);
    seeds.push(("reconnect", o.done()));

    // The wild link: messages queued before the handshake, a long jump in time.
    let mut o = session_input(true, 128, 127);
    send(&mut o, false, true, 500, 1);
    o.op(session::CONNECT_AGENT);
    o.op(session::DUPLICATE).bool(false).u8(0);
    deliver_all(&mut o, 3);
    o.op(session::ADVANCE).u16(60_000);
    deliver_all(&mut o, 6);
    seeds.push(("wild", o.done()));

    write_seeds(corpus, "session", seeds)
}

/// Operations of `fuzz/fuzz_targets/wheel.rs`.
mod wheel {
    pub const VARIANTS: u32 = 7;
    pub const INSERT: u32 = 0;
    pub const INSERT_AT: u32 = 1;
    pub const RESCHEDULE: u32 = 2;
    pub const CANCEL: u32 = 3;
    pub const STALE: u32 = 4;
    pub const EXPIRE: u32 = 5;
    pub const EXPIRE_AT_NEXT: u32 = 6;
}

/// `Input { tick, buckets_log2, ops }` of the wheel target: ticks of `tick + 1` ns,
/// `2^buckets_log2` buckets.
fn wheel_input(tick: u16, buckets_log2: u8) -> Ops {
    let mut o = Ops::new(wheel::VARIANTS);
    o.u16(tick).u8(buckets_log2);
    o
}

/// `Op::Insert { delay, past }`.
fn insert(o: &mut Ops, delay: u32, past: bool) {
    o.op(wheel::INSERT).u32(delay).bool(past);
}

/// `Op::Expire { advance, rearm, delay }`.
fn expire(o: &mut Ops, advance: u32, rearm: u8, delay: u32) {
    o.op(wheel::EXPIRE).u32(advance).u8(rearm).u32(delay);
}

/// `Op::ExpireAtNext { rearm, delay }`, `times` times.
fn expire_at_next(o: &mut Ops, times: usize, rearm: u8, delay: u32) {
    for _ in 0..times {
        o.op(wheel::EXPIRE_AT_NEXT).u8(rearm).u32(delay);
    }
}

/// Seeds of the `wheel` fuzz target.
fn write_wheel_seeds(corpus: &Path) -> io::Result<()> {
    let mut seeds = Vec::new();

    // 1024 buckets of 10 µs (a 10.24 ms revolution): deadlines in this revolution and
    // in later ones, expired step by step and then at each next deadline.
    let mut o = wheel_input(9_999, 10);
    for delay in [
        5_000, 10_000, 10_001, 2_000_000, 10_240_000, 10_250_000, 90_000_000,
    ] {
        insert(&mut o, delay, false);
    }
    expire(&mut o, 10_000, 0, 0);
    expire(&mut o, 2_000_000, 0, 0);
    expire_at_next(&mut o, 5, 0, 0);
    seeds.push(("revolutions", o.done()));

    // Four buckets of 1 ns: every deadline is many rounds away.
    let mut o = wheel_input(0, 2);
    for delay in [3, 4, 17, 1_000, 1_001, 65_536] {
        insert(&mut o, delay, false);
    }
    expire_at_next(&mut o, 8, 0, 0);
    seeds.push(("tiny-wheel", o.done()));

    // Every fired timer re-armed at `now` (fires at the next call, not in this one),
    // then some re-armed later, the rest dropped.
    let mut o = wheel_input(999, 6);
    for delay in 0..8 {
        insert(&mut o, delay * 700, false);
    }
    expire(&mut o, 6_000, 0xff, 0);
    expire(&mut o, 0, 0x55, 50_000);
    expire_at_next(&mut o, 3, 0, 0);
    seeds.push(("rearm", o.done()));

    // Moves, cancels, and ids that are no longer pending.
    let mut o = wheel_input(99, 4);
    for delay in [100, 200, 300, 400] {
        insert(&mut o, delay, false);
    }
    o.op(wheel::RESCHEDULE).u16(0).u32(5_000);
    o.op(wheel::CANCEL).u16(1);
    o.op(wheel::STALE).u16(0).bool(true).u32(0);
    o.op(wheel::STALE).u16(0).bool(false).u32(10);
    expire(&mut o, 450, 0, 0);
    o.op(wheel::STALE).u16(1).bool(true).u32(0);
    insert(&mut o, 10, false);
    o.op(wheel::CANCEL).u16(0);
    expire_at_next(&mut o, 2, 0, 0);
    seeds.push(("move-cancel-stale", o.done()));

    // Deadlines in the past (fire at the next call) and one that is never due.
    let mut o = wheel_input(4_095, 8);
    expire(&mut o, 1_000_000, 0, 0);
    insert(&mut o, 500_000, true);
    insert(&mut o, 2_000_000, true);
    o.op(wheel::INSERT_AT).u64(u64::MAX);
    o.op(wheel::INSERT_AT).u64(1_000_000);
    expire(&mut o, 0, 0, 0);
    expire_at_next(&mut o, 2, 0, 0);
    seeds.push(("past-and-never", o.done()));

    write_seeds(corpus, "wheel", seeds)
}
