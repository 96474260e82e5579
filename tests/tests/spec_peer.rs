//! A peer written from HVNCP.md's letter alone, against a real `hmd` over a real link.
//!
//! `hmd` runs in namespace A; a test thread joins namespace B and plays an agent on a raw
//! `AF_PACKET` socket on B's end of the veth pair. Every frame it sends is built byte by
//! byte from HVNCP.md's header table by the small encoder below (Ethernet header, the
//! 8-byte header, the checksum as the wrapping sum of the header bytes but the checksum
//! byte plus the payload bytes), and every frame it reads is decoded by offsets: nothing
//! of `dataplane`'s wire layer or endpoint is used to speak. It does what the letter
//! allows and `vmmd` never does (docs/hvncp.md §10.1): it acknowledges the monitor's SYN
//! and `START_HB` with a plain `ACK n`, writes verbs in lower case, refreshes its open
//! session with a SYN that carries neither ACKR nor properties, and repeats a heartbeat
//! number for longer than `vm_miss_after`. The HSDB must show the VM DETECTED, and keep
//! it so. A second test checks the bare `START_HB` of the default 10 s period and that a
//! handshake that fails is counted and logged with the peer's MAC and the reason.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use dataplane::io::{InterfaceName, RawSocket, RxMode};
use dataplane::message::Uuid;
use hsdb::{HeartbeatState, Hsdb, Options, VmHmRow};
use hvha_e2e::{Lab, wait_for};

const HM_UUID: &str = "5c3196a3-c41f-4b5c-9861-dee6077081f1";
const VM_UUID: &str = "61be20f0-09a8-4753-b5e5-564f8a545ef1";
const SILENT_VM_UUID: &str = "61be20f0-09a8-4753-b5e5-564f8a545ef2";
const HM_IF: &str = "spm0";
const VM_IF: &str = "spa0";
/// The letter agent's MAC (locally administered), and one that never answers.
const AGENT: [u8; 6] = [0x02, 0x5e, 0xc0, 0, 0, 0x01];
const SILENT: [u8; 6] = [0x02, 0x5e, 0xc0, 0, 0, 0x02];
const BROADCAST: [u8; 6] = [0xff; 6];

/// HVNCP.md §2 flag bits.
const ACKR: u8 = 0x80;
const ACK: u8 = 0x40;
const BEG: u8 = 0x20;
const END: u8 = 0x10;
const SYN: u8 = 0x04;
const HEL: u8 = 0x02;

/// An HVNCP v2.0 frame from HVNCP.md §1-§2: destination, source, EtherType 0x0600, then
/// version 2.0, number, flags, checksum, fragment index 0, big-endian payload length, the
/// payload, and zero padding to 60 bytes.
fn encode(dst: [u8; 6], src: [u8; 6], number: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).expect("short payload");
    let [len_hi, len_lo] = len.to_be_bytes();
    let mut header = [2, 0, number, flags, 0, 0, len_hi, len_lo];
    let mut sum = 0u8;
    for (i, b) in header.iter().enumerate() {
        if i != 4 {
            sum = sum.wrapping_add(*b);
        }
    }
    for b in payload {
        sum = sum.wrapping_add(*b);
    }
    header[4] = sum;
    let mut frame = Vec::with_capacity(60);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&[0x06, 0x00]);
    frame.extend_from_slice(&header);
    frame.extend_from_slice(payload);
    frame.resize(frame.len().max(60), 0);
    frame
}

/// A frame as the letter agent reads it, by offsets.
#[derive(Debug, Clone)]
struct Seen {
    dst: [u8; 6],
    src: [u8; 6],
    number: u8,
    flags: u8,
    payload: Vec<u8>,
}

/// An HVNCP frame with a valid checksum, or `None`.
fn decode(frame: &[u8]) -> Option<Seen> {
    if frame.len() < 22 || frame[12..14] != [0x06, 0x00] || frame[14] != 2 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([frame[20], frame[21]]));
    let payload = frame.get(22..22 + len)?.to_vec();
    let mut sum = 0u8;
    for (i, b) in frame[14..22].iter().enumerate() {
        if i != 4 {
            sum = sum.wrapping_add(*b);
        }
    }
    for b in &payload {
        sum = sum.wrapping_add(*b);
    }
    (frame[18] == sum).then(|| Seen {
        dst: frame[..6].try_into().expect("6 bytes"),
        src: frame[6..12].try_into().expect("6 bytes"),
        number: frame[16],
        flags: frame[17],
        payload,
    })
}

/// The letter agent's raw socket on B's interface.
struct Wire {
    socket: RawSocket,
    /// Frames read but not consumed yet.
    backlog: Vec<Seen>,
}

impl Wire {
    fn open(ns: &str) -> Wire {
        dataplane::io::enter_network_namespace(ns).expect("enter the VM's namespace");
        let iface = InterfaceName::new(VM_IF).expect("name");
        Wire {
            socket: RawSocket::open(&iface, 0x0600, RxMode::Recv).expect("raw socket on B"),
            backlog: Vec::new(),
        }
    }

    fn send(&self, frame: &[u8]) {
        for _ in 0..1000 {
            match self.socket.send(frame) {
                Ok(()) => return,
                Err(e) if e.is_would_block() => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("send a {}-byte frame: {e}", frame.len()),
            }
        }
        panic!("the socket stayed full");
    }

    /// The first frame (received now or earlier and not consumed) that `want` accepts,
    /// within `within`.
    fn expect(&mut self, within: Duration, mut want: impl FnMut(&Seen) -> bool) -> Option<Seen> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.backlog.iter().position(&mut want) {
                return Some(self.backlog.remove(i));
            }
            if Instant::now() > deadline {
                return None;
            }
            let _ = self.socket.wait_readable(Some(Duration::from_millis(5)));
            let backlog = &mut self.backlog;
            self.socket
                .recv(|f| {
                    if let Some(seen) = decode(f) {
                        backlog.push(seen);
                    }
                })
                .expect("recv");
            // Keep the backlog short: Hellos and retransmissions pile up otherwise.
            if backlog.len() > 256 {
                backlog.drain(..128);
            }
        }
    }
}

fn uuid(s: &str) -> Uuid {
    Uuid::parse(s.as_bytes()).expect("uuid")
}

/// A letter agent's SYN properties (HVNCP.md §4): no incarnation.
fn agent_props(vm: &str) -> Vec<u8> {
    format!("uuid={vm}:ostype=AIX:verVmmLower=2.0:verVmmUpper=2.0").into_bytes()
}

/// The monitor under test, seen from outside.
struct Target {
    admin: PathBuf,
    hsdb: PathBuf,
}

impl Target {
    fn row(&self, vm: &str) -> Option<VmHmRow> {
        let db = Hsdb::open(&self.hsdb, &Options::default()).ok()?;
        db.vm_hm(&uuid(vm), &uuid(HM_UUID)).ok()?
    }

    fn stat(&self, name: &str) -> u64 {
        let stats = hvha_e2e::hmd_stats(&self.admin).unwrap_or_else(|e| panic!("{e}"));
        *stats
            .get(name)
            .unwrap_or_else(|| panic!("hmd has no counter {name}: {stats:?}"))
    }
}

/// hmd in namespace A and namespace B for the letter agent, joined by a veth pair.
fn start(lab: &mut Lab, periods: &str) -> (Target, String) {
    let ns_hm = lab.netns("hm");
    let ns_vm = lab.netns("vm");
    lab.link(&ns_hm, HM_IF, &ns_vm, VM_IF);
    let out = Command::new("ip")
        .args(["-n", &ns_vm, "link", "set", VM_IF, "address"])
        .arg(
            AGENT
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
        )
        .output()
        .expect("ip link set address");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hsdb = lab.dir.join("hsdb.sqlite");
    let admin = lab.dir.join("hmd.sock");
    let config = lab.write(
        "hmd.toml",
        &format!(
            r#"monitor_uuid = "{HM_UUID}"
host_id = 1
host_name = "host1"
hsdb = "{}"
admin_socket = "{}"
interfaces = ["{HM_IF}"]
hello_period_ms = 500
hm_heartbeat_period_ms = 1000
flush_ms = 10
log = "info"
{periods}"#,
            hsdb.display(),
            admin.display(),
        ),
    );
    lab.spawn(
        "hmd",
        &ns_hm,
        "hmd",
        &["--config", &config.display().to_string()],
    );
    (Target { admin, hsdb }, ns_vm)
}

/// The letter agent pairs: Hello, SYN+BEG+ACKR with its properties, the monitor's SYN
/// acknowledged by a plain ACK, `START_HB` acknowledged by a plain ACK. Returns the
/// monitor's MAC and the `START_HB` payload.
fn pair(wire: &mut Wire, hmd_log: &dyn Fn() -> String) -> ([u8; 6], Vec<u8>) {
    let hello = wire
        .expect(Duration::from_secs(5), |f| {
            f.flags & HEL != 0 && f.dst == BROADCAST
        })
        .unwrap_or_else(|| panic!("no Hello from hmd\n{}", hmd_log()));
    let hm = hello.src;
    wire.send(&encode(
        hm,
        AGENT,
        1,
        SYN | ACKR | BEG,
        &agent_props(VM_UUID),
    ));
    let monitor_syn = wire
        .expect(Duration::from_secs(3), |f| {
            f.dst == AGENT && f.flags & SYN != 0 && f.flags & ACK == 0
        })
        .unwrap_or_else(|| panic!("no SYN from hmd\n{}", hmd_log()));
    assert_eq!(monitor_syn.flags & (ACKR | END), ACKR | END);
    assert!(
        String::from_utf8_lossy(&monitor_syn.payload).contains(&format!("uuid={HM_UUID}")),
        "{monitor_syn:?}"
    );
    wire.expect(Duration::from_secs(3), |f| {
        f.dst == AGENT && f.flags & ACK != 0 && f.number == 1 && f.payload.is_empty()
    })
    .unwrap_or_else(|| panic!("our SYN 1 was not acknowledged\n{}", hmd_log()));
    // The plain ACK of HVNCP.md §2: flags 0x40 and the SYN's number.
    wire.send(&encode(hm, AGENT, monitor_syn.number, ACK, b""));
    let start = wire
        .expect(Duration::from_secs(3), |f| {
            f.dst == AGENT
                && f.flags & ACKR != 0
                && f.payload.len() >= 8
                && f.payload[..8].eq_ignore_ascii_case(b"START_HB")
        })
        .unwrap_or_else(|| {
            panic!(
                "no START_HB after a plain ACK of the monitor's SYN\n{}",
                hmd_log()
            )
        });
    assert_eq!(start.flags, ACKR | BEG | END);
    wire.send(&encode(hm, AGENT, start.number, ACK, b""));
    (hm, start.payload)
}

#[test]
fn a_letter_agent_with_plain_acks_lowercase_verbs_refreshes_and_repeated_numbers_is_detected() {
    let Some(mut lab) = Lab::new("specpeer") else {
        return;
    };
    let (target, ns_vm) = start(&mut lab, "hb_period_ms = 200\nvm_miss_after_ms = 1000\n");
    let lab = &lab;
    let hmd_log = || lab.log("hmd");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let mut wire = Wire::open(&ns_vm);
                let (hm, start) = pair(&mut wire, &hmd_log);
                assert_eq!(
                    start, b"START_HB:period_ms=200",
                    "200 ms is not the default"
                );
                // Heartbeats from the SYN's number on, in both letter cases, until the
                // HSDB shows the VM DETECTED.
                let mut number = 1u8;
                let deadline = Instant::now() + Duration::from_secs(10);
                let detected = loop {
                    let text: &[u8] = if number.is_multiple_of(2) {
                        b"hb:"
                    } else {
                        b"HB:"
                    };
                    wire.send(&encode(hm, AGENT, number, BEG | END, text));
                    number = number.wrapping_add(1);
                    if let Some(row) = target
                        .row(VM_UUID)
                        .filter(|r| r.last_state == HeartbeatState::Detected)
                    {
                        break Some(row);
                    }
                    if Instant::now() > deadline {
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                };
                let detected = detected.unwrap_or_else(|| panic!("never DETECTED\n{}", hmd_log()));
                let refreshes = target.stat("syn_refreshes");
                let duplicates = target.stat("heartbeats_duplicate");
                // A refresh: SYN without ACKR and without properties. Nothing breaks.
                wire.send(&encode(hm, AGENT, number, SYN, b""));
                // The same heartbeat number for 3 s, three times vm_miss_after: the
                // first is new, the others were seen already, and all prove the VM
                // alive.
                let repeated = number;
                let started = Instant::now();
                let until = started + Duration::from_secs(3);
                let mut sent = 0u64;
                // The pairing's transitions (a Discovered, then a Detected) may land in
                // two commits: the row is compared from half a second into the repeats,
                // once what the pairing produced is committed.
                let mut settled = None;
                while Instant::now() < until {
                    wire.send(&encode(hm, AGENT, repeated, BEG | END, b"HB:"));
                    sent += 1;
                    std::thread::sleep(Duration::from_millis(100));
                    if settled.is_none() && started.elapsed() >= Duration::from_millis(500) {
                        settled = Some(target.row(VM_UUID).expect("the VM's row"));
                    }
                }
                let settled = settled.expect("a row half a second into the repeats");
                assert_eq!(
                    (settled.last_state, settled.mac, settled.hb_missed_ms),
                    (detected.last_state, detected.mac, detected.hb_missed_ms),
                    "the VM stays DETECTED through a SYN refresh\n{}",
                    hmd_log()
                );
                let row = target.row(VM_UUID).expect("the VM's row");
                assert_eq!(
                    row,
                    settled,
                    "the VM's row changed while its heartbeats repeated a number (it must \
                     stay DETECTED)\n{}",
                    hmd_log()
                );
                assert!(
                    wait_for(Duration::from_secs(2), || {
                        (target.stat("heartbeats_duplicate") >= duplicates + sent - 1).then_some(())
                    })
                    .is_some(),
                    "heartbeats_duplicate {} -> {} for {sent} repeats",
                    duplicates,
                    target.stat("heartbeats_duplicate")
                );
                assert_eq!(target.stat("syn_refreshes"), refreshes + 1);
                // Lowercase reliable verbs: a doorbell, then a graceful stop.
                number = repeated.wrapping_add(1);
                wire.send(&encode(hm, AGENT, number, ACKR | BEG | END, b"dbell:28"));
                wire.expect(Duration::from_secs(3), |f| {
                    f.dst == AGENT && f.flags == ACK && f.number == number
                })
                .unwrap_or_else(|| panic!("dbell:28 not acknowledged\n{}", hmd_log()));
                let short_msg = wait_for(Duration::from_secs(3), || {
                    let db = Hsdb::open(&target.hsdb, &Options::default()).ok()?;
                    db.vm(&uuid(VM_UUID))
                        .ok()?
                        .map(|v| v.short_msg)
                        .filter(|&m| m == 0x28)
                });
                assert_eq!(short_msg, Some(0x28), "{}", hmd_log());
                number = number.wrapping_add(1);
                wire.send(&encode(hm, AGENT, number, ACKR | BEG | END, b"shdn:daemon"));
                wire.expect(Duration::from_secs(3), |f| {
                    f.dst == AGENT && f.flags == ACK && f.number == number
                })
                .unwrap_or_else(|| panic!("shdn:daemon not acknowledged\n{}", hmd_log()));
                let suspended = wait_for(Duration::from_secs(3), || {
                    target
                        .row(VM_UUID)
                        .filter(|r| r.last_state == HeartbeatState::Suspended)
                });
                assert!(suspended.is_some(), "not SUSPENDED\n{}", hmd_log());
                for (name, want) in [
                    ("handshakes_failed", 0),
                    ("drop_flags", 0),
                    ("msg_malformed", 0),
                    ("syn_refused", 0),
                ] {
                    assert_eq!(target.stat(name), want, "{name}\n{}", hmd_log());
                }
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
    });
}

#[test]
fn a_bare_start_hb_for_the_default_period_and_a_failed_handshake_logged_once() {
    let Some(mut lab) = Lab::new("specdef") else {
        return;
    };
    // The default heartbeat period (10 s): no hb_period_ms.
    let (target, ns_vm) = start(&mut lab, "");
    let lab = &lab;
    let hmd_log = || lab.log("hmd");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let mut wire = Wire::open(&ns_vm);
                let (hm, start) = pair(&mut wire, &hmd_log);
                assert_eq!(start, b"START_HB", "bare, as the seed's monitor sends it");
                wire.send(&encode(hm, AGENT, 1, BEG | END, b"HB:"));
                assert!(
                    wait_for(Duration::from_secs(5), || {
                        target
                            .row(VM_UUID)
                            .filter(|r| r.last_state == HeartbeatState::Detected)
                    })
                    .is_some(),
                    "never DETECTED\n{}",
                    hmd_log()
                );
                // Another MAC sends its SYN and never acknowledges anything: after the
                // 12.6 s retransmission span the handshake fails, once.
                wire.send(&encode(
                    hm,
                    SILENT,
                    7,
                    SYN | ACKR | BEG,
                    &agent_props(SILENT_VM_UUID),
                ));
                let silent = format!(
                    "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    SILENT[0], SILENT[1], SILENT[2], SILENT[3], SILENT[4], SILENT[5]
                );
                let line = wait_for(Duration::from_secs(25), || {
                    hmd_log()
                        .lines()
                        .find(|l| l.contains("handshake failed"))
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| panic!("no handshake failure logged\n{}", hmd_log()));
                assert!(line.contains(&silent), "the peer's MAC: {line}");
                assert!(line.contains("SYN"), "the reason: {line}");
                assert!(line.contains("WARN"), "a warning: {line}");
                assert_eq!(target.stat("handshakes_failed"), 1);
                std::thread::sleep(Duration::from_millis(500));
                let lines = hmd_log()
                    .lines()
                    .filter(|l| l.contains("handshake failed"))
                    .count();
                assert_eq!(lines, 1, "logged once\n{}", hmd_log());
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
    });
}

/// `vmmd` announces its incarnation in its SYN (`inc=`, 16 hexadecimal digits), a new
/// one at every start (docs/hvncp.md §3.8). A raw socket plays the monitor: its Hello
/// draws the agent's SYN, which is read and never answered.
#[test]
fn vmmd_announces_a_new_incarnation_at_every_start() {
    let Some(mut lab) = Lab::new("specinc") else {
        return;
    };
    const MONITOR: [u8; 6] = [0x02, 0x5e, 0xc0, 0, 0, 0x10];
    let ns_hm = lab.netns("hm");
    let ns_vm = lab.netns("vm");
    lab.link(&ns_hm, HM_IF, &ns_vm, VM_IF);
    let config = lab.write(
        "vmmd.toml",
        &format!(
            "vm_uuid = \"{VM_UUID}\"\ninterfaces = [\"{VM_IF}\"]\nlog = \"debug\"\n{}",
            hvha_e2e::vmmd_ame_section(&lab.dir, "vmmd")
        ),
    );
    let config = config.display().to_string();
    let mut incarnations = Vec::new();
    for run in 0..2 {
        lab.spawn("vmmd", &ns_vm, "vmmd", &["--config", &config]);
        let lab_ref = &lab;
        let ns = ns_hm.clone();
        let syn = std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    dataplane::io::enter_network_namespace(&ns).expect("enter");
                    let iface = InterfaceName::new(HM_IF).expect("name");
                    let mut wire = Wire {
                        socket: RawSocket::open(&iface, 0x0600, RxMode::Recv).expect("socket"),
                        backlog: Vec::new(),
                    };
                    let hello = encode(BROADCAST, MONITOR, 0, HEL, b"1556303548.719328000.38");
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while Instant::now() < deadline {
                        wire.send(&hello);
                        if let Some(syn) = wire.expect(Duration::from_millis(200), |f| {
                            f.dst == MONITOR && f.flags & SYN != 0 && f.flags & ACK == 0
                        }) {
                            return syn;
                        }
                    }
                    panic!("no SYN from vmmd (run {run})\n{}", lab_ref.log("vmmd"));
                })
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e))
        });
        assert_eq!(syn.flags, SYN | ACKR | BEG);
        let text = String::from_utf8(syn.payload).expect("ASCII");
        assert!(
            text.starts_with(&format!("uuid={VM_UUID}:ostype=")),
            "{text}"
        );
        let inc = text
            .split(':')
            .find_map(|p| p.strip_prefix("inc="))
            .unwrap_or_else(|| panic!("no incarnation in {text}"))
            .to_owned();
        assert_eq!(inc.len(), 16, "{text}");
        assert!(inc.bytes().all(|b| b.is_ascii_hexdigit()), "{text}");
        incarnations.push(inc);
        let pid = lab.pid("vmmd");
        lab.signal("vmmd", "KILL");
        // Killed: no exit code; reaped all the same.
        lab.wait_exit("vmmd", Duration::from_secs(5));
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "vmmd {pid} still runs"
        );
    }
    assert_ne!(
        incarnations[0], incarnations[1],
        "a restarted vmmd is a new incarnation"
    );
}
