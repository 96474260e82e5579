//! `hvncp-flood`: frames from many distinct forged source MACs, as fast as the machine
//! sends them, to test a host monitor's bounded tables (docs/hvncp.md §6.5).
//!
//! Every MAC sends exactly one frame: an agent's first SYN (SYN+ACKR+BEG with the
//! properties of a random VM) for even-numbered MACs, a heartbeat for odd ones (a
//! monitor opens a session from its side when an unknown MAC heartbeats). With
//! `--spoof-uuid`, every `--spoof-every`-th SYN claims that VM instead: a monitor that
//! knows the VM by another MAC refuses it. MACs are distinct by construction
//! (a bijection of the frame's index), locally administered and unicast.
//!
//! Frames go out with `sendmmsg`, 64 per call; a full transmit queue is retried, never
//! skipped, so `sent` is exact. The socket receives nothing (it is bound to the local
//! experimental EtherType 0x88b5). One line on standard output at the end:
//! `done sent=<frames> syns=<n> heartbeats=<n> spoofed=<n> seconds=<s> rate=<frames/s>`.
//!
//! Example (root; `g0` one end of a veth pair whose other end `hmd` listens on):
//!
//! ```text
//! ip netns exec gen hvncp-flood --interface g0 --macs 1000000
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use dataplane::io::{InterfaceName, RawSocket, RxMode, SocketConfig};
use dataplane::message::{AgentSyn, Uuid};
#[cfg(test)]
use dataplane::wire::DEFAULT_ETHERTYPE;
use dataplane::wire::{Flags, FrameBuilder, HvncpRepr, MacAddr, VERSION};

/// Frames per `sendmmsg`.
const BATCH: usize = 64;
/// Bytes per frame slot (a SYN with its properties is about 120).
const SLOT: usize = 256;
/// Most MACs in one run (2^46 are possible).
const MAX_MACS: u64 = 1 << 32;
/// EtherType the socket is bound to for receiving: IEEE local experimental, which no
/// HVNCP frame uses, so the replies to the forged MACs are not read.
const RECEIVE_NOTHING: u16 = 0x88b5;

#[derive(Parser, Debug)]
#[command(
    name = "hvncp-flood",
    version,
    about = "Send one HVNCP frame (an agent's SYN or a heartbeat) from each of many \
             distinct forged source MACs, as fast as the machine can."
)]
struct Cli {
    /// Interface to send on.
    #[arg(long)]
    interface: String,
    /// Number of distinct source MACs (one frame each).
    #[arg(long, default_value_t = 1_000_000)]
    macs: u64,
    /// Destination MAC (the monitor's, or broadcast).
    #[arg(long, default_value = "ff:ff:ff:ff:ff:ff")]
    dst: String,
    /// HVNCP EtherType.
    #[arg(long, default_value = "0x0600", value_parser = parse_ethertype_arg)]
    ethertype: u16,
    /// Seed of the MAC and UUID sequence.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A VM UUID registered with another MAC: some SYNs claim it (refused by the
    /// monitor).
    #[arg(long)]
    spoof_uuid: Option<String>,
    /// Every how many SYNs one claims `--spoof-uuid`.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    spoof_every: u64,
}

/// `0x0600`-style or decimal, at least 0x0600 (an EtherType, not a length).
fn parse_ethertype_arg(text: &str) -> Result<u16, String> {
    let value = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => text.parse(),
    }
    .map_err(|_| format!("{text:?} is not a 16-bit number"))?;
    if value < 0x0600 {
        return Err(format!(
            "{text} is below 0x0600 (a length, not an EtherType)"
        ));
    }
    Ok(value)
}

/// The `i`-th forged MAC: a bijection of `i` (odd multiplier and XOR modulo 2^46) put
/// in the 46 bits a locally administered unicast MAC leaves free.
fn forged_mac(i: u64, seed: u64) -> MacAddr {
    const MASK: u64 = (1 << 46) - 1;
    let v =
        (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed.wrapping_mul(0xbf58_476d_1ce4_e5b9)) & MASK;
    let first = (((v >> 40) as u8) << 2) | 0x02;
    let rest = (v & ((1 << 40) - 1)).to_be_bytes();
    MacAddr([first, rest[3], rest[4], rest[5], rest[6], rest[7]])
}

/// A random-looking version-4 UUID for the `i`-th MAC.
fn forged_uuid(mac: MacAddr, seed: u64) -> Uuid {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(mac.to_u64() ^ seed).to_be_bytes());
    b[8..].copy_from_slice(
        &mac.to_u64()
            .wrapping_mul(0x94d0_49bb_1331_11eb)
            .to_be_bytes(),
    );
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid(b)
}

/// What a run sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Sent {
    frames: u64,
    syns: u64,
    heartbeats: u64,
    spoofed: u64,
}

/// Write the `i`-th frame into `buf` (`text`: scratch for a SYN's properties); its
/// length.
fn build(
    i: u64,
    cli: &Cli,
    dst: MacAddr,
    spoof: Option<Uuid>,
    buf: &mut [u8],
    text: &mut Vec<u8>,
    sent: &mut Sent,
) -> usize {
    let src = forged_mac(i, cli.seed);
    let builder = FrameBuilder {
        dst,
        src,
        ethertype: cli.ethertype,
    };
    if i % 2 == 1 {
        sent.heartbeats += 1;
        let header = HvncpRepr {
            version: VERSION,
            number: (i >> 1).to_le_bytes()[0],
            flags: Flags::BEG | Flags::END,
            frag_index: 0,
            payload_len: 3,
        };
        return builder.emit(buf, &header, b"HB:").unwrap_or(0);
    }
    sent.syns += 1;
    let claimed = match spoof {
        Some(uuid) if (i / 2).is_multiple_of(cli.spoof_every) => {
            sent.spoofed += 1;
            uuid
        }
        _ => forged_uuid(src, cli.seed),
    };
    text.clear();
    AgentSyn {
        uuid: claimed,
        ostype: "linux",
        ver_lower: VERSION,
        ver_upper: VERSION,
        inc: None,
    }
    .encode(text);
    let header = HvncpRepr {
        version: VERSION,
        number: (i >> 1).to_le_bytes()[0],
        flags: Flags::SYN | Flags::ACKR | Flags::BEG,
        frag_index: 0,
        payload_len: u16::try_from(text.len()).unwrap_or(0),
    };
    builder.emit(buf, &header, text).unwrap_or(0)
}

fn run(cli: &Cli) -> Result<(Sent, Duration), String> {
    if cli.macs == 0 || cli.macs > MAX_MACS {
        return Err(format!("--macs {}: expected 1..={MAX_MACS}", cli.macs));
    }
    let dst = MacAddr::parse(&cli.dst)
        .ok_or_else(|| format!("--dst {:?}: expected a MAC like 02:00:00:00:00:01", cli.dst))?;
    let spoof = match &cli.spoof_uuid {
        None => None,
        Some(text) => {
            Some(Uuid::parse(text.as_bytes()).map_err(|e| format!("--spoof-uuid {text:?}: {e}"))?)
        }
    };
    let iface = InterfaceName::new(&cli.interface)
        .map_err(|e| format!("--interface {:?}: {e}", cli.interface))?;
    let socket = RawSocket::open_with(&iface, &SocketConfig::new(RECEIVE_NOTHING, RxMode::Recv))
        .map_err(|e| e.to_string())?;
    let mut slots = vec![[0u8; SLOT]; BATCH];
    let mut lens = [0usize; BATCH];
    let mut sent = Sent::default();
    let mut text = Vec::with_capacity(SLOT);
    let start = Instant::now();
    let mut next = 0u64;
    while next < cli.macs {
        let count = usize::try_from((cli.macs - next).min(BATCH as u64)).unwrap_or(BATCH);
        for k in 0..count {
            lens[k] = build(
                next + k as u64,
                cli,
                dst,
                spoof,
                &mut slots[k],
                &mut text,
                &mut sent,
            );
        }
        let frames: Vec<&[u8]> = slots[..count]
            .iter()
            .zip(&lens[..count])
            .map(|(s, &l)| &s[..l])
            .collect();
        let mut done = 0;
        while done < count {
            match socket.send_batch(&frames[done..]) {
                Ok(n) => done += n,
                Err(e) if e.is_would_block() => std::thread::yield_now(),
                Err(e) => return Err(e.to_string()),
            }
        }
        next += count as u64;
    }
    sent.frames = next;
    Ok((sent, start.elapsed()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok((sent, took)) => {
            let secs = took.as_secs_f64();
            println!(
                "done sent={} syns={} heartbeats={} spoofed={} seconds={secs:.3} rate={:.0}",
                sent.frames,
                sent.syns,
                sent.heartbeats,
                sent.spoofed,
                sent.frames as f64 / secs.max(1e-9)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hvncp-flood: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_distinct_local_and_unicast() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..200_000 {
            let mac = forged_mac(i, 7);
            assert_eq!(mac.0[0] & 0x03, 0x02, "{mac}");
            assert!(seen.insert(mac), "{mac} twice");
        }
    }

    #[test]
    fn frames_parse_as_hvncp() {
        let cli = Cli::parse_from([
            "hvncp-flood",
            "--interface",
            "x",
            "--spoof-uuid",
            "61be20f0-09a8-4753-b5e5-564f8a545ed5",
            "--spoof-every",
            "2",
        ]);
        let spoof = Uuid::parse(b"61be20f0-09a8-4753-b5e5-564f8a545ed5").ok();
        let mut sent = Sent::default();
        let mut buf = [0u8; SLOT];
        let mut text = Vec::new();
        for i in 0..8u64 {
            let n = build(
                i,
                &cli,
                MacAddr::BROADCAST,
                spoof,
                &mut buf,
                &mut text,
                &mut sent,
            );
            let frame = dataplane::wire::Frame::parse(&buf[..n], DEFAULT_ETHERTYPE).expect("valid");
            assert_eq!(frame.src, forged_mac(i, cli.seed));
            if i % 2 == 0 {
                assert!(frame.header.flags.contains(Flags::SYN | Flags::BEG));
                let syn = AgentSyn::parse(frame.payload).expect("properties");
                assert_eq!(syn.uuid == spoof.expect("uuid"), (i / 2) % 2 == 0);
            } else {
                assert_eq!(frame.payload, b"HB:");
            }
        }
        assert_eq!(
            sent,
            Sent {
                frames: 0,
                syns: 4,
                heartbeats: 4,
                spoofed: 2
            }
        );
    }
}
