//! Bad frames against a real `hmd`: one monitor in namespace A, one real `vmmd` in
//! namespace B, a veth pair between them (MTU 9000, so that oversized frames can be
//! carried at all). Once the VM is DETECTED, a test thread that joined namespace B
//! opens its own raw socket on B's interface and sends the monitor, in turn:
//!
//! 1. truncated frames (shorter than 22 bytes, or whose payload length runs past the
//!    frame) → `drop_truncated`;
//! 2. bad checksums → `drop_checksum`;
//! 3. another major version → `drop_version`;
//! 4. payloads longer than `max_payload` (1492), from a peer with an open session →
//!    `drop_oversized`;
//! 5. a fragment flood from a forged agent that first completed a real handshake:
//!    messages never completed, grown past `max_message`, then thousands of poisoned
//!    fragments → `drop_reassembly`, and hmd's anonymous memory does not follow;
//! 6. agent SYNs from other MACs claiming the real VM's UUID → `syn_refused` and a
//!    `SYN_REFUSED` event in the HSDB.
//!
//! Each counter must grow by exactly what was sent (the wire checks and the session
//! checks count each refused frame once, under one reason), the real VM must stay
//! DETECTED throughout (its HSDB row is never rewritten), hmd must keep counting its
//! heartbeats, still run at the end, stop cleanly, and leave a sound HSDB.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use dataplane::endpoint::{Endpoint, EndpointConfig, EndpointEvent};
use dataplane::io::{InterfaceName, RawSocket, RxMode};
use dataplane::message::{AgentSyn, Uuid};
use dataplane::wire::{
    self, DEFAULT_ETHERTYPE, ETHERNET_HEADER_LEN, Flags, Frame, FrameBuilder, HEADER_LEN,
    HvncpRepr, MIN_FRAME_LEN, MacAddr, VERSION,
};
use hsdb::{HeartbeatState, Hsdb, Options, VmHmRow};
use hvha_e2e::{FAST_TIMERS, Lab, hmd_toml, wait_for};

const HM_UUID: &str = "5c3196a3-c41f-4b5c-9861-dee6077081d1";
const VM_UUID: &str = "61be20f0-09a8-4753-b5e5-564f8a545ee1";
/// The VM the flooding agent claims to be (a new one, so the monitor accepts it).
const FLOOD_VM_UUID: &str = "61be20f0-09a8-4753-b5e5-564f8a545ee2";
const HM_IF: &str = "bfm0";
const VM_IF: &str = "bfa0";
const ETHERTYPE: u16 = DEFAULT_ETHERTYPE;
/// Source of the frames the wire layer refuses (no session needed).
const JUNK_MAC: MacAddr = MacAddr([0x02, 0xba, 0xd0, 0, 0, 0x01]);
/// The forged agent that completes a real handshake, then misbehaves.
const FLOOD_MAC: MacAddr = MacAddr([0x02, 0xba, 0xd0, 0, 0, 0x02]);
/// Agents claiming the real VM's UUID.
const SPOOF_MACS: [MacAddr; 3] = [
    MacAddr([0x02, 0xba, 0xd0, 0, 0, 0x10]),
    MacAddr([0x02, 0xba, 0xd0, 0, 0, 0x11]),
    MacAddr([0x02, 0xba, 0xd0, 0, 0, 0x12]),
];
/// hmd's defaults (`session::Config::default()`): the daemon does not change them.
const MAX_PAYLOAD: usize = 1492;
const MAX_MESSAGE: usize = 65_536;
const MAX_FRAGMENTS: u8 = 48;
/// Poisoned fragments per priority in the flood.
const POISONED: usize = 4000;
/// Anonymous memory hmd may gain during the oversized frames and the flood (which
/// carries about 12 MB of payload).
const MAX_RSS_GROWTH_KB: u64 = 4096;

fn uuid(s: &str) -> Uuid {
    Uuid::parse(s.as_bytes()).expect("uuid")
}

type Stats = HashMap<String, u64>;

/// The monitor under attack, seen from outside: admin socket, HSDB, process.
struct Target<'a> {
    lab: &'a Lab,
    admin: PathBuf,
    hsdb: PathBuf,
    pid: u32,
}

impl Target<'_> {
    /// `hmd ctl stats` (one interface: the sums are its counters).
    fn stats(&self) -> Stats {
        hvha_e2e::hmd_stats(&self.admin)
            .unwrap_or_else(|e| panic!("{e}\n--- hmd\n{}", self.lab.log("hmd")))
    }

    /// `hmd ctl vms`.
    fn vms(&self) -> String {
        hvha_e2e::hmd_ctl(&self.admin, "vms").unwrap_or_else(|e| panic!("{e}"))
    }

    /// Wait until counter `name` reaches `want`, then a little longer, so that a frame
    /// counted twice (or under the wrong reason) shows up too.
    fn settle(&self, name: &str, want: u64) -> Stats {
        wait_for(Duration::from_secs(3), || {
            (get(&self.stats(), name) >= want).then_some(())
        });
        std::thread::sleep(Duration::from_millis(150));
        self.stats()
    }

    /// The real VM's row as this monitor wrote it.
    fn real_vm(&self) -> Option<VmHmRow> {
        let db = Hsdb::open(&self.hsdb, &Options::default()).ok()?;
        db.vm_hm(&uuid(VM_UUID), &uuid(HM_UUID)).ok()?
    }

    /// The real VM is still DETECTED and its row was not written since `snapshot`
    /// (no MISSING and back in between).
    fn assert_undisturbed(&self, snapshot: &VmHmRow, after: &str) {
        let now = self.real_vm();
        assert_eq!(
            now.as_ref(),
            Some(snapshot),
            "after {after}: the real VM's HSDB row changed (it must stay DETECTED)\n--- hmd\n{}",
            self.lab.log("hmd")
        );
    }

    /// Anonymous resident memory of hmd, in KiB (the packet ring is not anonymous).
    fn rss_anon_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("hmd's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("RssAnon")
    }

    /// Counter `counter` grew by exactly `sent`, and the drop counters together by
    /// exactly `drops` (every refused frame counted once, under one reason).
    fn assert_counted(&self, what: &str, before: &Stats, counter: &str, sent: u64, drops: u64) {
        let after = self.settle(counter, get(before, counter) + sent);
        let delta = get(&after, counter) - get(before, counter);
        let total = |s: &Stats| -> u64 {
            s.iter()
                .filter(|(k, _)| k.starts_with("drop_"))
                .map(|(_, v)| v)
                .sum()
        };
        let changed = diff(before, &after);
        eprintln!("{what}: sent {sent}, {counter} +{delta}; changed: {changed}");
        assert_eq!(
            delta,
            sent,
            "{what}: {counter} must grow by the {sent} frames sent; changed: {changed}\n--- hmd\n{}",
            self.lab.log("hmd")
        );
        assert_eq!(
            total(&after) - total(before),
            drops,
            "{what}: drop counters together must grow by {drops}; changed: {changed}"
        );
    }
}

fn logs(lab: &Lab) -> String {
    format!("--- hmd\n{}\n--- vmmd\n{}", lab.log("hmd"), lab.log("vmmd"))
}

fn get(stats: &Stats, name: &str) -> u64 {
    *stats
        .get(name)
        .unwrap_or_else(|| panic!("hmd has no counter {name}: {stats:?}"))
}

/// The counters that changed, `name +delta`.
fn diff(before: &Stats, after: &Stats) -> String {
    let mut out: Vec<String> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, v)| {
            let was = before.get(k).copied().unwrap_or(0);
            format!("{k} +{}", v.saturating_sub(was))
        })
        .collect();
    out.sort();
    out.join(", ")
}

/// A well-formed frame, padded to 60 bytes like the ones the daemons send.
fn frame(
    dst: MacAddr,
    src: MacAddr,
    number: u8,
    flags: Flags,
    frag_index: u8,
    payload: &[u8],
) -> Vec<u8> {
    let header = HvncpRepr {
        version: VERSION,
        number,
        flags,
        frag_index,
        payload_len: u16::try_from(payload.len()).expect("payload fits u16"),
    };
    let mut buf = vec![0u8; (ETHERNET_HEADER_LEN + HEADER_LEN + payload.len()).max(MIN_FRAME_LEN)];
    let len = FrameBuilder {
        dst,
        src,
        ethertype: ETHERTYPE,
    }
    .emit(&mut buf, &header, payload)
    .expect("emit");
    buf.truncate(len);
    buf
}

/// Offsets in a frame of the HVNCP header fields changed below.
const VER_MAJOR: usize = ETHERNET_HEADER_LEN;
const CHECKSUM: usize = ETHERNET_HEADER_LEN + 4;
const LENGTH: usize = ETHERNET_HEADER_LEN + 6;

/// Recompute the checksum of a frame whose header or payload was changed.
fn fix_checksum(f: &mut [u8]) {
    let h = ETHERNET_HEADER_LEN;
    let len = usize::from(u16::from_be_bytes([f[LENGTH], f[LENGTH + 1]]));
    f[CHECKSUM] = wire::checksum(
        &f[h..h + HEADER_LEN],
        &f[h + HEADER_LEN..h + HEADER_LEN + len],
    );
}

fn agent_syn_payload(vm: &str) -> Vec<u8> {
    let mut out = Vec::new();
    AgentSyn {
        uuid: uuid(vm),
        ostype: "linux",
        ver_lower: VERSION,
        ver_upper: VERSION,
        inc: None,
    }
    .encode(&mut out);
    out
}

/// The attacker's raw socket on B's interface, with its clock.
struct Wire {
    socket: RawSocket,
    clock: dataplane::time::MonotonicClock,
    sent: u64,
}

impl Wire {
    fn now(&self) -> dataplane::time::Instant {
        self.clock.now()
    }

    /// Send one frame, waiting out a full transmit queue; every 32 frames, let the
    /// monitor catch up (a flood faster than the kernel's backlog would be dropped
    /// before hmd sees it, and then nothing could be counted exactly).
    fn send(&mut self, frame: &[u8]) {
        let mut tries = 0;
        loop {
            match self.socket.send(frame) {
                Ok(()) => break,
                Err(e) if e.is_would_block() && tries < 1000 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("send a {}-byte frame: {e}", frame.len()),
            }
        }
        self.sent += 1;
        if self.sent.is_multiple_of(32) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Hand every frame received during `within` to `each`, until it returns true;
    /// true if it did.
    fn receive(&mut self, within: Duration, mut each: impl FnMut(&[u8]) -> bool) -> bool {
        let deadline = Instant::now() + within;
        let mut done = false;
        while !done && Instant::now() < deadline {
            let _ = self.socket.wait_readable(Some(Duration::from_millis(5)));
            self.socket
                .recv(|f| {
                    if !done {
                        done = each(f);
                    }
                })
                .expect("recv");
        }
        done
    }
}

/// The forged agent: a real agent endpoint (MAC `FLOOD_MAC`) answering the monitor's
/// Hello, until the monitor commanded heartbeats and one was sent. Returns the next
/// packet number of its sending direction, so that crafted frames continue its
/// numbering. The endpoint is dropped afterwards: nothing else of it is sent.
fn handshake(wire: &mut Wire, hello: &[u8]) -> u8 {
    let config = EndpointConfig::agent(FLOOD_MAC, uuid(FLOOD_VM_UUID), "linux");
    let mut agent = Endpoint::new(config, wire.now()).expect("agent endpoint");
    agent.handle_frame(wire.now(), hello);
    let mut next: Option<u8> = None;
    let mut established = false;
    let mut heartbeats = 0u32;
    let mut buf = vec![0u8; 9100];
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut done_at: Option<Instant> = None;
    while Instant::now() < deadline && done_at.is_none_or(|t| Instant::now() < t) {
        let now = wire.now();
        if agent.poll_timeout().is_some_and(|t| t <= now) {
            agent.handle_timeout(now);
        }
        while let Some(len) = agent.poll_transmit(now, &mut buf) {
            let f = Frame::parse(&buf[..len], ETHERTYPE).expect("agent frames parse");
            let flags = f.header.flags;
            if flags.contains(Flags::SYN) && !flags.contains(Flags::ACK) {
                next = Some(f.header.number);
            } else if !flags.contains(Flags::ACK) {
                next = Some(f.header.number.wrapping_add(1));
                if f.payload == b"HB:" {
                    heartbeats += 1;
                }
            }
            wire.send(&buf[..len]);
        }
        while let Some(event) = agent.poll_event() {
            if matches!(event, EndpointEvent::Established { .. }) {
                established = true;
            }
        }
        if heartbeats > 0 && done_at.is_none() {
            // Let the monitor receive the first heartbeats (and our last ACK).
            done_at = Some(Instant::now() + Duration::from_millis(300));
        }
        let _ = wire.socket.wait_readable(Some(Duration::from_millis(5)));
        let now = wire.now();
        wire.socket
            .recv(|f| {
                agent.handle_frame(now, f);
            })
            .expect("recv");
    }
    assert!(
        established && heartbeats > 0,
        "the forged agent did not complete its handshake (established {established}, \
         {heartbeats} heartbeats sent): {:?}",
        agent.stats()
    );
    next.expect("the agent sent a SYN")
}

#[test]
fn bad_frames_are_counted_and_the_monitor_keeps_serving() {
    let Some(mut lab) = Lab::new("badframes") else {
        return;
    };
    let ns_hm = lab.netns("hm");
    let ns_vm = lab.netns("vm");
    lab.link(&ns_hm, HM_IF, &ns_vm, VM_IF);
    for (ns, iface) in [(&ns_hm, HM_IF), (&ns_vm, VM_IF)] {
        let out = Command::new("ip")
            .args(["-n", ns, "link", "set", iface, "mtu", "9000"])
            .output()
            .expect("ip link set mtu");
        assert!(
            out.status.success(),
            "mtu 9000 on {iface}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let hsdb = lab.dir.join("hsdb.sqlite");
    let admin = lab.dir.join("hmd.sock");
    let hmd_config = lab.write(
        "hmd.toml",
        &hmd_toml(
            HM_UUID,
            &hsdb,
            &admin,
            &[HM_IF],
            &format!("{FAST_TIMERS}log = \"debug\"\n"),
        ),
    );
    let vmmd_config = lab.write(
        "vmmd.toml",
        &format!(
            "vm_uuid = \"{VM_UUID}\"\ninterfaces = [\"{VM_IF}\"]\nlog = \"debug\"\n{}",
            hvha_e2e::vmmd_ame_section(&lab.dir, "vmmd")
        ),
    );
    let pid = lab.spawn(
        "hmd",
        &ns_hm,
        "hmd",
        &["--config", &hmd_config.display().to_string()],
    );
    lab.spawn(
        "vmmd",
        &ns_vm,
        "vmmd",
        &["--config", &vmmd_config.display().to_string()],
    );
    let target = Target {
        lab: &lab,
        admin,
        hsdb,
        pid,
    };

    // The real VM is discovered and DETECTED; once its first transitions are written,
    // its row must not change any more.
    let detected = wait_for(Duration::from_secs(10), || {
        target
            .real_vm()
            .filter(|r| r.last_state == HeartbeatState::Detected)
    });
    assert!(
        detected.is_some(),
        "the VM was never DETECTED\n{}",
        logs(&lab)
    );
    std::thread::sleep(Duration::from_millis(500));
    let snapshot = target.real_vm().expect("the VM's row");
    assert_eq!(
        snapshot.last_state,
        HeartbeatState::Detected,
        "{}",
        logs(&lab)
    );
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap_or_default()
            .trim(),
        "hmd",
        "the spawned pid is hmd's (ip netns exec execs in place)"
    );
    let registered_mac = Hsdb::open(&target.hsdb, &Options::default())
        .expect("open HSDB")
        .hm(&uuid(HM_UUID))
        .expect("read hm")
        .expect("hmd registered")
        .mac;

    std::thread::scope(|scope| {
        scope
            .spawn(|| attack(&target, &ns_vm, &snapshot, registered_mac))
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
    });

    // The daemon keeps serving: heartbeats still counted, the VM still DETECTED.
    let h0 = get(&target.stats(), "heartbeats_in");
    std::thread::sleep(Duration::from_secs(1));
    let h1 = get(&target.stats(), "heartbeats_in");
    eprintln!("after the attack: heartbeats_in {h0} -> {h1} in 1 s");
    assert!(
        h1 >= h0 + 3,
        "hmd counted {} heartbeats in 1 s after the attack (period 200 ms)\n{}",
        h1 - h0,
        logs(&lab)
    );
    let vms = target.vms();
    assert!(
        vms.lines()
            .any(|l| l.starts_with(VM_UUID) && l.contains(" DETECTED ")),
        "hmd ctl vms:\n{vms}"
    );
    target.assert_undisturbed(&snapshot, "the whole attack");
    assert_eq!(
        lab.wait_exit("hmd", Duration::ZERO),
        None,
        "hmd exited during the attack\n{}",
        logs(&lab)
    );
    lab.signal("hmd", "TERM");
    assert_eq!(
        lab.wait_exit("hmd", Duration::from_secs(5)),
        Some(0),
        "hmd did not stop cleanly\n{}",
        logs(&lab)
    );
    Hsdb::open(lab.dir.join("hsdb.sqlite"), &Options::default())
        .expect("open HSDB")
        .integrity_check()
        .expect("HSDB integrity");
}

/// Everything sent from namespace B, phase by phase, with the monitor's counters
/// checked after each.
fn attack(target: &Target<'_>, ns_vm: &str, snapshot: &VmHmRow, registered_mac: MacAddr) {
    dataplane::io::enter_network_namespace(ns_vm).expect("enter the VM's namespace");
    let iface = InterfaceName::new(VM_IF).expect("name");
    let mut wire = Wire {
        socket: RawSocket::open(&iface, ETHERTYPE, RxMode::Recv).expect("raw socket on B"),
        clock: dataplane::time::MonotonicClock::new(),
        sent: 0,
    };
    // The monitor's Hello (broadcast) tells its MAC; it is kept to start agents with.
    let mut hello = None;
    wire.receive(Duration::from_secs(3), |f| {
        if let Ok(frame) = Frame::parse(f, ETHERTYPE)
            && frame.header.flags.contains(Flags::HEL)
            && frame.dst.is_broadcast()
        {
            hello = Some((frame.src, f.to_vec()));
            return true;
        }
        false
    });
    let (hm, hello) = hello.expect("a Hello from hmd within 3 s");
    assert_eq!(
        hm, registered_mac,
        "the Hello comes from the MAC hmd registered"
    );
    let hb = frame(hm, JUNK_MAC, 1, Flags::BEG | Flags::END, 0, b"HB:");

    // 1. Truncated: 14 to 21 bytes, and payload lengths running past the frame.
    let before = target.stats();
    let mut sent = 0;
    for len in ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + HEADER_LEN {
        wire.send(&hb[..len]);
        sent += 1;
    }
    wire.send(&hb[..ETHERNET_HEADER_LEN + HEADER_LEN + 2]); // "HB:" announced, "HB" present
    let mut long = hb.clone();
    long[LENGTH..LENGTH + 2].copy_from_slice(&39u16.to_be_bytes()); // one byte past 60
    wire.send(&long);
    long[LENGTH..LENGTH + 2].copy_from_slice(&u16::MAX.to_be_bytes());
    wire.send(&long);
    let mut full = frame(
        hm,
        JUNK_MAC,
        1,
        Flags::ACKR | Flags::BEG | Flags::END,
        0,
        &[b'x'; MAX_PAYLOAD],
    );
    full[LENGTH..LENGTH + 2]
        .copy_from_slice(&(u16::try_from(MAX_PAYLOAD + 1).expect("fits")).to_be_bytes());
    wire.send(&full);
    sent += 4;
    target.assert_counted("truncated", &before, "drop_truncated", sent, sent);
    target.assert_undisturbed(snapshot, "truncated frames");

    // 2. Bad checksums: on the checksum byte, on a payload byte, on a SYN, a Hello and
    // a full-size packet.
    let before = target.stats();
    let mut sent = 0;
    for k in 1..=4u8 {
        let mut f = hb.clone();
        f[CHECKSUM] = f[CHECKSUM].wrapping_add(k);
        wire.send(&f);
        sent += 1;
    }
    let mut f = hb.clone();
    f[ETHERNET_HEADER_LEN + HEADER_LEN + 2] = b';';
    wire.send(&f);
    let mut f = frame(
        hm,
        JUNK_MAC,
        7,
        Flags::SYN | Flags::ACKR | Flags::BEG,
        0,
        &agent_syn_payload(FLOOD_VM_UUID),
    );
    f[CHECKSUM] ^= 0x80;
    wire.send(&f);
    let mut f = hello.clone();
    f[6..12].copy_from_slice(&JUNK_MAC.0);
    f[CHECKSUM] ^= 0x01;
    wire.send(&f);
    let mut f = frame(
        hm,
        JUNK_MAC,
        9,
        Flags::ACKR | Flags::BEG,
        0,
        &[0x5a; MAX_PAYLOAD],
    );
    f[ETHERNET_HEADER_LEN + HEADER_LEN + 700] ^= 0x10;
    wire.send(&f);
    sent += 4;
    target.assert_counted("bad checksum", &before, "drop_checksum", sent, sent);
    target.assert_undisturbed(snapshot, "bad checksums");

    // 3. Another major version (checksum recomputed, so only the version is wrong).
    let before = target.stats();
    let mut sent = 0;
    let versioned = |mut f: Vec<u8>, major: u8| {
        f[VER_MAJOR] = major;
        fix_checksum(&mut f);
        f
    };
    for major in [0u8, 1, 3, 255] {
        wire.send(&versioned(hb.clone(), major));
        sent += 1;
    }
    let syn = frame(
        hm,
        JUNK_MAC,
        7,
        Flags::SYN | Flags::ACKR | Flags::BEG,
        0,
        &agent_syn_payload(FLOOD_VM_UUID),
    );
    wire.send(&versioned(syn, 3));
    wire.send(&versioned(frame(hm, JUNK_MAC, 7, Flags::ACK, 0, b""), 1));
    sent += 2;
    target.assert_counted("wrong version", &before, "drop_version", sent, sent);
    target.assert_undisturbed(snapshot, "wrong versions");

    // A forged agent completes a real handshake: the session checks need one.
    let before = target.stats();
    let next = handshake(&mut wire, &hello);
    let after = target.settle(
        "sessions_established",
        get(&before, "sessions_established") + 1,
    );
    assert_eq!(
        get(&after, "sessions_established"),
        get(&before, "sessions_established") + 1,
        "the forged agent's session; changed: {}",
        diff(&before, &after)
    );
    let rss_before = target.rss_anon_kb();

    // 4. Oversized: payloads over max_payload (1492), up to a 9000-byte frame, from the
    // established peer. Refused packets are not recorded, so they can share a number.
    let before = target.stats();
    let a = FLOOD_MAC;
    let payload = |len: usize| vec![0x4f; len];
    let oversized = [
        frame(
            hm,
            a,
            next,
            Flags::ACKR | Flags::BEG | Flags::END,
            0,
            &payload(MAX_PAYLOAD + 1),
        ),
        frame(hm, a, next, Flags::BEG | Flags::END, 0, &payload(4000)),
        frame(
            hm,
            a,
            next,
            Flags::ACKR | Flags::BEG,
            0,
            &payload(9000 - 22),
        ),
        frame(hm, a, next, Flags::ACKR | Flags::PRI, 1, &payload(2000)),
    ];
    assert_eq!(oversized[2].len(), 9000);
    for f in &oversized {
        wire.send(f);
    }
    let n = oversized.len() as u64;
    target.assert_counted("oversized", &before, "drop_oversized", n, n);
    let after = target.stats();
    assert_eq!(
        get(&after, "socket_truncated"),
        get(&before, "socket_truncated"),
        "hmd's socket truncated a frame"
    );
    target.assert_undisturbed(snapshot, "oversized frames");

    // 5. Fragment flood, per priority: a message grown to 43 full fragments (64,156
    // bytes, accepted and held), then refused: a second BEG, a fragment index past the
    // 48 allowed, the fragment that would pass max_message (the message is dropped and
    // the priority poisoned), and POISONED more fragments that never complete anything.
    let before = target.stats();
    let held = MAX_MESSAGE / MAX_PAYLOAD; // 43 fragments fit
    let mut number = next;
    let mut refused = 0u64;
    for pri in [Flags::EMPTY, Flags::PRI] {
        for index in 0..held {
            let index = u8::try_from(index).expect("< 48");
            let flags = if index == 0 {
                Flags::ACKR | Flags::BEG | pri
            } else {
                Flags::ACKR | pri
            };
            wire.send(&frame(hm, a, number, flags, index, &payload(MAX_PAYLOAD)));
            number = number.wrapping_add(1);
        }
        // Refused packets are not recorded in the duplicate window: any number up to
        // 127 ahead of the last accepted one is new, so the flood cycles through 64.
        let base = number;
        let mut k = 0u8;
        let mut refuse = |wire: &mut Wire, flags: Flags, index: u8, len: usize| {
            let n = base.wrapping_add(k % 64);
            k = k.wrapping_add(1);
            wire.send(&frame(hm, a, n, flags | pri, index, &payload(len)));
            refused += 1;
        };
        refuse(&mut wire, Flags::ACKR | Flags::BEG, 0, 10); // index 0 is held
        refuse(&mut wire, Flags::ACKR, MAX_FRAGMENTS, 10); // index 48
        let index = u8::try_from(held).expect("< 48");
        refuse(&mut wire, Flags::ACKR, index, MAX_PAYLOAD); // past max_message: poison
        for i in 0..POISONED {
            let index = index + 1 + u8::try_from(i % 4).expect("small");
            let flags = if i % 4 == 3 {
                Flags::ACKR | Flags::END
            } else {
                Flags::ACKR
            };
            refuse(&mut wire, flags, index, MAX_PAYLOAD);
        }
        number = base;
    }
    target.assert_counted(
        "fragment flood",
        &before,
        "drop_reassembly",
        refused,
        refused,
    );
    let after = target.stats();
    assert_eq!(
        get(&after, "drop_budget"),
        get(&before, "drop_budget"),
        "one session cannot exhaust the 64 MiB budget"
    );
    let rss_after = target.rss_anon_kb();
    let flood_kb = refused * MAX_PAYLOAD as u64 / 1024;
    eprintln!(
        "hmd RssAnon {rss_before} kB -> {rss_after} kB while about {flood_kb} kB of refused fragments arrived"
    );
    assert!(
        rss_after <= rss_before + MAX_RSS_GROWTH_KB,
        "hmd's anonymous memory grew from {rss_before} kB to {rss_after} kB during the flood"
    );
    target.assert_undisturbed(snapshot, "the fragment flood");

    // 6. Other MACs claim the real VM's UUID: each SYN is refused and reported.
    let before = target.stats();
    let last_event = Hsdb::open(&target.hsdb, &Options::default())
        .expect("open HSDB")
        .events_after(0, 100_000)
        .expect("events")
        .last()
        .map_or(0, |e| e.id);
    for mac in SPOOF_MACS {
        let config = EndpointConfig::agent(mac, uuid(VM_UUID), "linux");
        let mut spoof = Endpoint::new(config, wire.now()).expect("spoof endpoint");
        spoof.handle_frame(wire.now(), &hello);
        let mut buf = vec![0u8; 1514];
        let len = spoof.poll_transmit(wire.now(), &mut buf).expect("a SYN");
        let syn = Frame::parse(&buf[..len], ETHERTYPE).expect("parse");
        assert!(syn.header.flags.contains(Flags::SYN | Flags::BEG));
        // Once only: a retransmission would be refused (and counted) again.
        wire.send(&buf[..len]);
    }
    // A refused SYN gets silence (docs/hvncp.md §3.2): no SYN, no acknowledgement.
    let mut answers = Vec::new();
    wire.receive(Duration::from_millis(300), |f| {
        if let Ok(frame) = Frame::parse(f, ETHERTYPE)
            && SPOOF_MACS.contains(&frame.dst)
        {
            answers.push(format!("{} n={}", frame.header.flags, frame.header.number));
        }
        false
    });
    let n = SPOOF_MACS.len() as u64;
    target.assert_counted("spoofed UUID", &before, "syn_refused", n, 0);
    assert!(
        answers.is_empty(),
        "hmd answered the refused SYNs: {answers:?}"
    );
    let refused_events = wait_for(Duration::from_secs(3), || {
        let db = Hsdb::open(&target.hsdb, &Options::default()).ok()?;
        let events: Vec<_> = db
            .events_after(last_event, 1000)
            .ok()?
            .into_iter()
            .filter(|e| e.kind == "SYN_REFUSED")
            .collect();
        (events.len() >= SPOOF_MACS.len()).then_some(events)
    })
    .expect("SYN_REFUSED events in the HSDB");
    assert_eq!(refused_events.len(), SPOOF_MACS.len(), "{refused_events:?}");
    for (event, mac) in refused_events.iter().zip(SPOOF_MACS) {
        assert_eq!(event.vm, Some(uuid(VM_UUID)), "{event:?}");
        assert_eq!(event.hm, Some(uuid(HM_UUID)), "{event:?}");
        assert!(event.text.contains(&mac.to_string()), "{event:?}");
    }
    target.assert_undisturbed(snapshot, "the spoofed SYNs");
}
