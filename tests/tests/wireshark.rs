//! The HVNCP dissector for Wireshark (`dist/wireshark/hvncp.lua`, docs/wireshark.md)
//! read by a real `tshark` (Debian's package), on capture files this test writes:
//!
//! - `golden_frames_dissect_field_by_field`: one frame of every verb and flag combination
//!   the repository has vectors for (docs/hvncp.md §2.1, §3.2, §4, §7.7, §11), a message
//!   in three fragments, a retransmission and a duplicate ACK, a bad checksum, sealed
//!   frames whose tag verifies and one whose tag does not, and malformed frames; each
//!   frame's fields are asserted, the codec of `dataplane` agreeing frame by frame;
//! - `fuzz_seed_corpus_checksums_and_tags_verify`: the fuzz seeds (fuzz/corpus/frame and
//!   fuzz/corpus/auth) — checksum good on every frame, tag good on every sealed one;
//! - `edge_cases_give_expert_items_never_errors`: frames without padding, empty SYN
//!   and Hello payloads, a cut trailer, arguments out of range: expert items, no error;
//! - `mutated_frames_never_raise_errors`: 3,000 mutations of the golden frames, none
//!   raising a Lua error or a dissector fault;
//! - `ethertype_preference_and_heuristic`: a frame on another EtherType is left alone,
//!   dissected with the `ethertype` preference, or with the heuristic switched on;
//! - `real_handshake_captured_from_hmd_and_vmmd` and
//!   `real_authenticated_handshake_captured_from_hmd_and_vmmd`: `dumpcap` on the
//!   monitor's veth while a real `hmd` and `vmmd` (without authentication, and with
//!   `auth = require`) pair, heartbeat, ring the
//!   doorbell, exchange an application report (FETCH and CONFIRM enqueued in the HSDB as
//!   the control plane does) and the agent stops; the capture is asserted frame by frame.
//!
//! Every run also asserts that tshark printed no Lua error and that the dissector raised
//! no internal error. The captures stay on disk for a person to open
//! (`$HVHA_ARTIFACTS_DIR/wireshark/`, else `target/tmp/wireshark/`).
//!
//! Without tshark (or dumpcap) the tests print `SKIPPED` and pass, except under
//! `CI=true`, where they fail.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dataplane::auth::{AuthMode, Authenticator, Key, Keyring};
use dataplane::message::{AgentSyn, Message, MonitorSyn};
use dataplane::wire::{
    DEFAULT_ETHERTYPE, Error as WireError, Flags, Frame, FrameBuilder, HvncpRepr, MacAddr, VERSION,
};
use hsdb::{CommandKind, Hsdb, Options, PendingKind};
use hvha_e2e::pcap::PcapWriter;
use hvha_e2e::{HM_UUID, Lab, hmd_toml, unix_ms, uuid, wait_for};

const HM: MacAddr = MacAddr([0x6a, 0x6a, 0x08, 0x84, 0xee, 0x11]);
const VM: MacAddr = MacAddr([0x6a, 0x6a, 0x0f, 0xfd, 0xf7, 0x07]);
const VM_UUID: &str = "61be20f0-09a8-4753-b5e5-564f8a545ed5";
const HELLO: &str = "1556303548.719328000.38";
/// Key 1 of docs/hvncp.md §7.7: bytes 00 01 … 1f.
const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/// The counter of docs/hvncp.md §7.7.
const COUNTER: u64 = 1_556_303_548_719_328_000;
/// The key the fuzz seeds of fuzz/corpus/auth are sealed with (fuzz/fuzz_targets/auth.rs).
const FUZZ_KEY_HEX: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dissector() -> PathBuf {
    repo().join("dist/wireshark/hvncp.lua")
}

/// Where the captures are kept: `$HVHA_ARTIFACTS_DIR/wireshark`, else
/// `target/tmp/wireshark`.
fn artifacts() -> PathBuf {
    let dir = std::env::var_os("HVHA_ARTIFACTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
        .join("wireshark");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// True when `tool` runs here. Missing: SKIPPED outside CI, a failure under `CI=true`.
fn have(tool: &str, test: &str) -> bool {
    let ok = Command::new(tool)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is not installed (Debian package tshark; .ci/run installs it)"
        );
        eprintln!("SKIPPED wireshark::{test}: {tool} is not installed (apt-get install tshark)");
    }
    ok
}

/// One dissected frame: field name → value(s) as tshark prints them, several
/// occurrences joined by `|`.
type Row = HashMap<String, String>;

/// Runs tshark with the dissector on `pcap` and returns one row per frame with `fields`.
/// Asserts that tshark succeeded, printed no Lua error, and that the dissector raised no
/// internal error (`-V` output checked too).
fn tshark(pcap: &Path, fields: &[&str], prefs: &[String]) -> Vec<Row> {
    tshark_passes(pcap, fields, prefs, true)
}

/// [`tshark`] in two passes (`-2`: the first without a protocol tree, as Wireshark reads
/// a file) or in one.
fn tshark_passes(pcap: &Path, fields: &[&str], prefs: &[String], two_passes: bool) -> Vec<Row> {
    let lua = format!("lua_script:{}", dissector().display());
    let mut args: Vec<String> = vec![
        "-n".into(),
        if two_passes { "-2" } else { "-l" }.into(),
        "-r".into(),
        pcap.display().to_string(),
        "-X".into(),
        lua.clone(),
    ];
    for p in prefs {
        args.push("-o".into());
        args.push(p.clone());
    }
    // The whole tree first: no Lua error anywhere.
    let verbose = Command::new("tshark")
        .args(&args)
        .arg("-V")
        .output()
        .unwrap();
    let tree = String::from_utf8_lossy(&verbose.stdout);
    let stderr = String::from_utf8_lossy(&verbose.stderr);
    assert!(verbose.status.success(), "tshark -V failed: {stderr}");
    check_no_lua_error(&stderr, &tree);
    // The script loaded (tshark ignores `-X lua_script` silently when Lua scripts are
    // disabled for the user, e.g. root with `run_user_scripts_when_superuser = false`).
    let protocols = Command::new("tshark")
        .args(["-G", "protocols", "-X", &lua])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&protocols.stdout)
            .lines()
            .any(|l| l.split('\t').nth(2) == Some("hvncp")),
        "the dissector did not load (Lua scripts disabled for this user? see docs/wireshark.md)\n{}",
        String::from_utf8_lossy(&protocols.stderr)
    );

    let mut cmd = Command::new("tshark");
    cmd.args(&args).args([
        "-T",
        "fields",
        "-E",
        "header=n",
        "-E",
        "separator=/t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=|",
        "-E",
        "quote=n",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark -T fields failed: {stderr}");
    check_no_lua_error(&stderr, "");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let values: Vec<&str> = line.split('\t').collect();
            fields
                .iter()
                .enumerate()
                .map(|(i, f)| ((*f).to_owned(), values.get(i).unwrap_or(&"").to_string()))
                .collect()
        })
        .collect()
}

fn check_no_lua_error(stderr: &str, tree: &str) {
    // tshark as root warns "Running as user "root" …"; anything mentioning Lua is an error
    // (loading, or a dissector failure).
    for line in stderr.lines() {
        assert!(
            !line.contains("Lua") && !line.contains("hvncp.lua"),
            "tshark printed a Lua error: {line}\n{stderr}"
        );
    }
    for needle in ["Lua Error", "Dissector error", "hvncp.lua:"] {
        assert!(
            !tree.contains(needle),
            "dissection raised an error ({needle}):\n{}",
            tree.lines()
                .filter(|l| l.contains(needle))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Asserts `row[field] == value` for each pair, naming the frame.
fn expect(rows: &[Row], frame: usize, name: &str, pairs: &[(&str, &str)]) {
    let row = &rows[frame - 1];
    for (field, want) in pairs {
        let got = row.get(*field).map(String::as_str).unwrap_or("<not asked>");
        assert_eq!(
            got, *want,
            "frame {frame} ({name}): {field} is {got:?}, expected {want:?}\nrow: {row:?}"
        );
    }
}

/// Asserts that `row[field]` contains `needle`.
fn expect_contains(rows: &[Row], frame: usize, name: &str, field: &str, needle: &str) {
    let got = rows[frame - 1].get(field).cloned().unwrap_or_default();
    assert!(
        got.contains(needle),
        "frame {frame} ({name}): {field} is {got:?}, expected it to contain {needle:?}"
    );
}

// ---------------------------------------------------------------------------------
// Golden frames
// ---------------------------------------------------------------------------------

fn frame(
    src: MacAddr,
    dst: MacAddr,
    number: u8,
    flags: Flags,
    frag: u8,
    payload: &[u8],
) -> Vec<u8> {
    let header = HvncpRepr {
        version: VERSION,
        number,
        flags,
        frag_index: frag,
        payload_len: u16::try_from(payload.len()).unwrap(),
    };
    let mut buf = vec![0u8; (14 + 8 + payload.len()).max(60)];
    let len = FrameBuilder {
        dst,
        src,
        ethertype: DEFAULT_ETHERTYPE,
    }
    .emit(&mut buf, &header, payload)
    .unwrap();
    buf.truncate(len);
    buf
}

fn unhex(hex: &str) -> Vec<u8> {
    let hex: String = hex.split_whitespace().collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn test_key() -> Keyring {
    let secret: [u8; 32] = unhex(KEY_HEX).try_into().unwrap();
    Keyring::new(Key::new(1, &secret), None).unwrap()
}

/// `frame` sealed by the codec's `Authenticator` with key 1 of §7.7 and `counter`.
fn sealed(mut bytes: Vec<u8>, counter: u64) -> Vec<u8> {
    let mut auth = Authenticator::new(AuthMode::Require, Some(test_key()), counter, 16).unwrap();
    let len = bytes.len();
    bytes.resize(len.max(60) + 25, 0);
    let n = auth.seal(&mut bytes, len).unwrap();
    bytes.truncate(n);
    bytes
}

const ACKR: Flags = Flags::ACKR;
const ACK: Flags = Flags::ACK;
const BEG: Flags = Flags::BEG;
const END: Flags = Flags::END;
const PRI: Flags = Flags::PRI;
const SYN: Flags = Flags::SYN;
const HEL: Flags = Flags::HEL;
const RSV: Flags = Flags::RSV;

fn agent_syn() -> String {
    format!("uuid={VM_UUID}:ostype=AIX:verVmmLower=2.0:verVmmUpper=2.0:inc=00000000000000ab")
}

fn monitor_syn() -> String {
    format!("uuid={HM_UUID}:verHmRunning=2.0")
}

/// The report body of one chunk (docs/hvncp.md §11.1).
const REPORT: &str = "HVHA-APPS 1 inc=ab gen=7 count=0\n";

/// The payload of the three-fragment message: 1492 + 1492 + 100 bytes.
fn long_message() -> Vec<u8> {
    let mut m = b"NOTE:".to_vec();
    m.extend((0..1492 * 2 + 100 - 5).map(|i| b'a' + u8::try_from(i % 26).unwrap()));
    m
}

/// The golden capture, frame by frame (name, frame, time offset in ms). Each frame is
/// also checked against the `dataplane` codec: the valid ones parse, the broken ones are
/// refused for the reason the dissector reports.
fn golden() -> Vec<(&'static str, Vec<u8>)> {
    let bc = MacAddr::BROADCAST;
    let long = long_message();
    let mut v: Vec<(&'static str, Vec<u8>)> = vec![
        ("hello", frame(HM, bc, 0, HEL, 0, HELLO.as_bytes())),
        (
            "agent SYN",
            frame(VM, HM, 1, ACKR | BEG | SYN, 0, agent_syn().as_bytes()),
        ),
        (
            "monitor SYN",
            frame(HM, VM, 9, ACKR | END | SYN, 0, monitor_syn().as_bytes()),
        ),
        (
            "SYN-ACK of the agent's SYN",
            frame(HM, VM, 1, ACK | SYN, 0, b""),
        ),
        (
            "SYN-ACK of the monitor's SYN",
            frame(VM, HM, 9, ACK | SYN, 0, b""),
        ),
        (
            "START_HB",
            frame(HM, VM, 9, ACKR | BEG | END, 0, b"START_HB"),
        ),
        ("ACK of START_HB", frame(VM, HM, 9, ACK, 0, b"")),
        ("HB:", frame(VM, HM, 1, BEG | END, 0, b"HB:")),
        ("HB:seq=7", frame(VM, HM, 2, BEG | END, 0, b"HB:seq=7")),
        (
            "START_HB:period_ms",
            frame(HM, VM, 10, ACKR | BEG | END, 0, b"START_HB:period_ms=1000"),
        ),
        ("ACK 10", frame(VM, HM, 10, ACK, 0, b"")),
        ("DBELL:2", frame(VM, HM, 3, ACKR | BEG | END, 0, b"DBELL:2")),
        (
            "PMSG_REQ",
            frame(HM, VM, 11, ACKR | BEG | END, 0, b"PMSG_REQ:1f"),
        ),
        (
            "PMSG_RSP",
            frame(
                VM,
                HM,
                4,
                ACKR | BEG | END,
                0,
                format!("PMSG_RSP:1f:7:1/1:{REPORT}").as_bytes(),
            ),
        ),
        ("GMSG", frame(HM, VM, 12, ACKR | BEG | END, 0, b"GMSG:1f:7")),
        (
            "CLRDB",
            frame(VM, HM, 5, ACKR | BEG | END, 0, b"CLRDB:1f:7"),
        ),
        (
            "urgent DBELL",
            frame(VM, HM, 6, ACKR | BEG | END | PRI, 0, b"DBELL:102"),
        ),
        ("urgent ACK", frame(HM, VM, 6, ACK | PRI, 0, b"")),
        (
            "fragment 0",
            frame(HM, VM, 13, ACKR | BEG, 0, &long[..1492]),
        ),
        ("fragment 1", frame(HM, VM, 14, ACKR, 1, &long[1492..2984])),
        (
            "fragment 2",
            frame(HM, VM, 15, ACKR | END, 2, &long[2984..]),
        ),
        (
            "SHDN",
            frame(VM, HM, 7, ACKR | BEG | END, 0, b"SHDN:DAEMON"),
        ),
        (
            "SHDN again",
            frame(VM, HM, 7, ACKR | BEG | END, 0, b"SHDN:DAEMON"),
        ),
        ("ACK 7", frame(HM, VM, 7, ACK, 0, b"")),
        ("ACK 7 again", frame(HM, VM, 7, ACK, 0, b"")),
        (
            "STOP_HB",
            frame(HM, VM, 16, ACKR | BEG | END, 0, b"STOP_HB"),
        ),
        (
            "unknown verb",
            frame(VM, HM, 8, ACKR | BEG | END, 0, b"FOO:bar=1"),
        ),
    ];
    // 28: a bad checksum.
    let mut bad = frame(VM, HM, 9, BEG | END, 0, b"HB:");
    bad[18] = 0x00;
    v.push(("bad checksum", bad));
    // 29: docs/hvncp.md §7.7 byte for byte.
    v.push((
        "sealed HB (§7.7)",
        unhex(
            "6a6a0884ee11 6a6a0ffdf707 0600 02000131fb000003 48423a 01 159919d4f8186b00
             3b72fb688c813327e3cc20f146069b92 00000000000000000000",
        ),
    ));
    // 30, 31: a START_HB sealed by the codec, then the same with one tag byte changed.
    let start = sealed(
        frame(HM, VM, 17, ACKR | BEG | END, 0, b"START_HB"),
        COUNTER + 1,
    );
    let mut forged = start.clone();
    let tag_at = 14 + 8 + 8 + 9;
    forged[tag_at] ^= 0x01;
    v.push(("sealed START_HB", start));
    v.push(("sealed START_HB, tag changed", forged));
    // 32: Rsv set, trailer cut short.
    let mut short = frame(
        VM,
        HM,
        10,
        ACKR | BEG | END | RSV,
        0,
        b"NOTE:a message long enough to need no padding",
    );
    short.extend_from_slice(&[1, 2, 3, 4, 5]);
    v.push(("trailer truncated", short));
    // 33: header cut short (Ethernet header + 5 bytes).
    let hb = frame(VM, HM, 11, BEG | END, 0, b"HB:");
    v.push(("truncated header", hb[..19].to_vec()));
    // 34: len beyond the frame.
    let mut beyond = frame(VM, HM, 12, BEG | END, 0, b"HB:");
    beyond[20..22].copy_from_slice(&200u16.to_be_bytes());
    v.push(("length beyond frame", beyond));
    // 35: major version 3.
    let mut v3 = frame(VM, HM, 13, BEG | END, 0, b"HB:");
    v3[14] = 3;
    v3[18] = v3[18].wrapping_add(1);
    v.push(("version 3", v3));
    v.push(("ACK with payload", frame(HM, VM, 14, ACK, 0, b"x")));
    v.push((
        "continuation at index 0",
        frame(HM, VM, 18, ACKR, 0, b"abc"),
    ));
    v.push((
        "SYN with bad properties",
        frame(VM, HM, 20, ACKR | BEG | SYN, 0, b"uuid=xyz:ostype=AIX"),
    ));
    v.push(("malformed hello", frame(HM, bc, 0, HEL, 0, b"hello")));
    v.push((
        "period out of range",
        frame(HM, VM, 19, ACKR | BEG | END, 0, b"START_HB:period_ms=5"),
    ));
    v.push((
        "binary payload",
        frame(VM, HM, 15, ACKR | BEG | END, 0, &[0xff, 0x00, b':', 0x80]),
    ));
    v.push(("empty message", frame(VM, HM, 16, ACKR | BEG | END, 0, b"")));
    // 43: not HVNCP: another EtherType.
    let mut other = frame(VM, HM, 17, BEG | END, 0, b"HB:");
    other[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    v.push(("other EtherType", other));
    // 44: a SYN without ACKR on an open session: a refresh (docs/hvncp.md §3.2).
    v.push(("SYN refresh", frame(VM, HM, 18, SYN, 0, b"")));
    // 45-48: both sides send packet 22, each acknowledged by the other: the state is
    // per direction.
    v.push((
        "DBELL 22",
        frame(VM, HM, 22, ACKR | BEG | END, 0, b"DBELL:2"),
    ));
    v.push((
        "PMSG_REQ 22",
        frame(HM, VM, 22, ACKR | BEG | END, 0, b"PMSG_REQ:20"),
    ));
    v.push(("ACK 22 of the DBELL", frame(HM, VM, 22, ACK, 0, b"")));
    v.push(("ACK 22 of the PMSG_REQ", frame(VM, HM, 22, ACK, 0, b"")));
    v
}

/// The codec agrees with the golden capture: valid frames parse to the payloads the
/// dissector is asserted on, broken ones are refused for the reason it reports.
fn check_with_codec(frames: &[(&str, Vec<u8>)]) {
    for (i, (name, bytes)) in frames.iter().enumerate() {
        let parsed = Frame::parse(bytes, DEFAULT_ETHERTYPE);
        match *name {
            "bad checksum" => assert!(
                matches!(parsed, Err(WireError::BadChecksum { .. })),
                "{name}"
            ),
            "truncated header" => {
                assert!(matches!(parsed, Err(WireError::Truncated { .. })), "{name}")
            }
            "length beyond frame" => {
                assert!(
                    matches!(parsed, Err(WireError::LengthBeyondFrame { .. })),
                    "{name}"
                )
            }
            "version 3" => assert!(
                matches!(parsed, Err(WireError::BadVersion { .. })),
                "{name}"
            ),
            "ACK with payload" | "continuation at index 0" => {
                assert!(
                    matches!(parsed, Err(WireError::InvalidFlags { .. })),
                    "{name}"
                )
            }
            "other EtherType" => assert!(
                matches!(parsed, Err(WireError::WrongEtherType { .. })),
                "{name}"
            ),
            _ => {
                let f = parsed
                    .unwrap_or_else(|e| panic!("frame {} ({name}) does not parse: {e}", i + 1));
                let payload = f.payload;
                let flags = f.header.flags;
                let valid = !matches!(
                    *name,
                    "SYN with bad properties"
                        | "malformed hello"
                        | "period out of range"
                        | "binary payload"
                        | "empty message"
                        | "unknown verb"
                );
                if flags.contains(Flags::HEL) || flags.contains(Flags::ACK) || !valid {
                    continue;
                }
                if flags.contains(Flags::SYN) {
                    // A SYN without ACKR is a refresh: its payload is not read.
                    if !flags.contains(Flags::ACKR) {
                        continue;
                    }
                    let ok = AgentSyn::parse(payload).is_ok() || MonitorSyn::parse(payload).is_ok();
                    assert!(
                        ok,
                        "frame {} ({name}): SYN properties refused by the codec",
                        i + 1
                    );
                } else if flags.contains(Flags::BEG) && flags.contains(Flags::END)
                    || !flags.contains(Flags::ACKR)
                {
                    Message::parse(payload).unwrap_or_else(|e| {
                        panic!("frame {} ({name}): message refused: {e}", i + 1)
                    });
                }
            }
        }
    }
    // The bad cases the codec refuses above the wire layer.
    assert!(Message::parse(b"START_HB:period_ms=5").is_err());
    assert!(Message::parse(&[0xff, 0x00, b':', 0x80]).is_err());
    assert!(AgentSyn::parse(b"uuid=xyz:ostype=AIX").is_err());
    assert!(matches!(
        Message::parse(b"FOO:bar=1"),
        Ok(Message::Unknown { .. })
    ));
}

fn write_pcap(path: &Path, frames: &[(&str, Vec<u8>)], gaps_ms: &[(usize, u64)]) {
    let mut w = PcapWriter::create(path).unwrap();
    let mut at = Duration::from_secs(1_556_303_548);
    for (i, (_, bytes)) in frames.iter().enumerate() {
        let gap = gaps_ms
            .iter()
            .find(|(f, _)| *f == i + 1)
            .map_or(10, |(_, g)| *g);
        at += Duration::from_millis(gap);
        w.write(at, bytes).unwrap();
    }
    w.finish().unwrap();
}

const GOLDEN_FIELDS: &[&str] = &[
    "frame.protocols",
    "_ws.col.Info",
    "_ws.expert.message",
    "hvncp.version",
    "hvncp.version.major",
    "hvncp.version.minor",
    "hvncp.number",
    "hvncp.seq",
    "hvncp.ack",
    "hvncp.flags",
    "hvncp.flags.str",
    "hvncp.flags.ackr",
    "hvncp.flags.ack",
    "hvncp.flags.beg",
    "hvncp.flags.end",
    "hvncp.flags.pri",
    "hvncp.flags.syn",
    "hvncp.flags.hel",
    "hvncp.flags.rsv",
    "hvncp.checksum",
    "hvncp.checksum.calculated",
    "hvncp.checksum.status",
    "hvncp.frag_index",
    "hvncp.len",
    "hvncp.type",
    "hvncp.from",
    "hvncp.to",
    "hvncp.verb",
    "hvncp.args",
    "hvncp.property.key",
    "hvncp.property.value",
    "hvncp.hello.id",
    "hvncp.hello.secs",
    "hvncp.hello.nanos",
    "hvncp.hello.pid",
    "hvncp.syn.role",
    "hvncp.syn.uuid",
    "hvncp.syn.ostype",
    "hvncp.syn.ver_vmm_lower",
    "hvncp.syn.ver_vmm_upper",
    "hvncp.syn.ver_hm_running",
    "hvncp.syn.inc",
    "hvncp.start_hb.period_ms",
    "hvncp.hb.seq",
    "hvncp.shdn.reason",
    "hvncp.dbell.vector",
    "hvncp.dbell.new_report",
    "hvncp.dbell.critical_failure",
    "hvncp.report.req",
    "hvncp.report.gen",
    "hvncp.report.index",
    "hvncp.report.count",
    "hvncp.report.line",
    "hvncp.fragment.first",
    "hvncp.reassembled_in",
    "hvncp.reassembled.count",
    "hvncp.reassembled.length",
    "hvncp.ack_to",
    "hvncp.retransmission_of",
    "hvncp.duplicate_ack_of",
    "hvncp.auth.key_id",
    "hvncp.auth.counter",
    "hvncp.auth.tag",
    "hvncp.auth.tag.status",
];

#[test]
fn golden_frames_dissect_field_by_field() {
    if !have("tshark", "golden_frames_dissect_field_by_field") {
        return;
    }
    let frames = golden();
    check_with_codec(&frames);
    let pcap = artifacts().join("golden.pcap");
    // "SHDN again" (frame 23) 200 ms after the first: one rto, a retransmission.
    write_pcap(&pcap, &frames, &[(23, 200)]);
    let key = format!("hvncp.auth_keys:1 {KEY_HEX}");
    let rows = tshark(&pcap, GOLDEN_FIELDS, &[key]);
    assert_eq!(rows.len(), frames.len(), "one row per frame");
    assert_eq!(frames.len(), 48);
    let name = |i: usize| frames[i - 1].0;
    let no_expert = ("_ws.expert.message", "");

    // Every HVNCP frame but the broken ones: version 2.0, checksum good.
    for i in 1..=27 {
        expect(
            &rows,
            i,
            name(i),
            &[
                ("frame.protocols", "eth:ethertype:hvncp"),
                ("hvncp.version", "2.0"),
                ("hvncp.version.major", "2"),
                ("hvncp.version.minor", "0"),
                ("hvncp.checksum.status", "1"),
            ],
        );
    }

    // 1: Hello, the checksum of docs/hvncp.md §2.1.
    expect(
        &rows,
        1,
        name(1),
        &[
            ("hvncp.type", "Hello"),
            ("hvncp.from", "monitor"),
            ("hvncp.to", "broadcast"),
            ("hvncp.flags", "0x02"),
            ("hvncp.flags.str", "HEL"),
            ("hvncp.flags.hel", "1"),
            ("hvncp.flags.ackr", "0"),
            ("hvncp.number", "0"),
            ("hvncp.seq", ""),
            ("hvncp.checksum", "0xb8"),
            ("hvncp.checksum.calculated", "0xb8"),
            ("hvncp.len", "23"),
            ("hvncp.hello.id", HELLO),
            ("hvncp.hello.secs", "1556303548"),
            ("hvncp.hello.nanos", "719328000"),
            ("hvncp.hello.pid", "38"),
            ("_ws.col.Info", "Hello 1556303548.719328000.38 [HEL]"),
            no_expert,
        ],
    );
    // 2, 3: the two SYNs and their properties (§4.2).
    expect(
        &rows,
        2,
        name(2),
        &[
            ("hvncp.type", "SYN"),
            ("hvncp.flags", "0xa4"),
            ("hvncp.flags.str", "ACKR,BEG,SYN"),
            ("hvncp.flags.ackr", "1"),
            ("hvncp.flags.beg", "1"),
            ("hvncp.flags.syn", "1"),
            ("hvncp.flags.end", "0"),
            ("hvncp.seq", "1"),
            ("hvncp.len", "105"),
            ("hvncp.syn.role", "agent"),
            ("hvncp.from", "agent"),
            ("hvncp.to", "monitor"),
            ("hvncp.syn.uuid", VM_UUID),
            ("hvncp.syn.ostype", "AIX"),
            ("hvncp.syn.ver_vmm_lower", "2.0"),
            ("hvncp.syn.ver_vmm_upper", "2.0"),
            ("hvncp.syn.inc", "00000000000000ab"),
            (
                "hvncp.property.key",
                "uuid|ostype|verVmmLower|verVmmUpper|inc",
            ),
            (
                "_ws.col.Info",
                &format!(
                    "SYN agent uuid={VM_UUID} ostype=AIX ver=2.0-2.0 inc=00000000000000ab n=1 [ACKR,BEG,SYN]"
                ),
            ),
            no_expert,
        ],
    );
    expect(
        &rows,
        3,
        name(3),
        &[
            ("hvncp.flags", "0x94"),
            ("hvncp.flags.str", "ACKR,END,SYN"),
            ("hvncp.seq", "9"),
            ("hvncp.len", "58"),
            ("hvncp.syn.role", "monitor"),
            ("hvncp.syn.uuid", HM_UUID),
            ("hvncp.syn.ver_hm_running", "2.0"),
            no_expert,
        ],
    );
    // 4, 5, 7: acknowledgements pointing at what they acknowledge (§3.2).
    expect(
        &rows,
        4,
        name(4),
        &[
            ("hvncp.type", "SYN-ACK"),
            ("hvncp.flags", "0x44"),
            ("hvncp.flags.ack", "1"),
            ("hvncp.ack", "1"),
            ("hvncp.seq", ""),
            ("hvncp.len", "0"),
            ("hvncp.checksum", "0x47"),
            ("hvncp.ack_to", "2"),
            ("_ws.col.Info", "SYN-ACK ack=1 [ACK,SYN]"),
            no_expert,
        ],
    );
    expect(
        &rows,
        5,
        name(5),
        &[("hvncp.ack", "9"), ("hvncp.ack_to", "3")],
    );
    // 6: START_HB, the checksum of docs/hvncp.md §2.1.
    expect(
        &rows,
        6,
        name(6),
        &[
            ("hvncp.type", "Message"),
            ("hvncp.flags", "0xb0"),
            ("hvncp.flags.str", "ACKR,BEG,END"),
            ("hvncp.checksum", "0x3a"),
            ("hvncp.seq", "9"),
            ("hvncp.verb", "START_HB"),
            ("hvncp.args", ""),
            ("hvncp.start_hb.period_ms", ""),
            ("_ws.col.Info", "START_HB n=9 [ACKR,BEG,END]"),
            no_expert,
        ],
    );
    expect(
        &rows,
        7,
        name(7),
        &[
            ("hvncp.type", "ACK"),
            ("hvncp.flags", "0x40"),
            ("hvncp.ack", "9"),
            ("hvncp.ack_to", "6"),
            ("_ws.col.Info", "ACK ack=9 [ACK]"),
        ],
    );
    // 8, 9: heartbeats, the seed's `HB:` with the checksum of §2.1.
    expect(
        &rows,
        8,
        name(8),
        &[
            ("hvncp.type", "Datagram"),
            ("hvncp.flags", "0x30"),
            ("hvncp.checksum", "0xfa"),
            ("hvncp.seq", "1"),
            ("hvncp.len", "3"),
            ("hvncp.verb", "HB"),
            ("hvncp.hb.seq", ""),
            ("_ws.col.Info", "HB n=1 [BEG,END]"),
            no_expert,
        ],
    );
    expect(
        &rows,
        9,
        name(9),
        &[
            ("hvncp.verb", "HB"),
            ("hvncp.hb.seq", "7"),
            ("hvncp.property.key", "seq"),
            ("hvncp.property.value", "7"),
            ("_ws.col.Info", "HB seq=7 n=2 [BEG,END]"),
        ],
    );
    expect(
        &rows,
        10,
        name(10),
        &[
            ("hvncp.verb", "START_HB"),
            ("hvncp.args", "period_ms=1000"),
            ("hvncp.start_hb.period_ms", "1000"),
            (
                "_ws.col.Info",
                "START_HB period_ms=1000 n=10 [ACKR,BEG,END]",
            ),
            no_expert,
        ],
    );
    expect(
        &rows,
        11,
        name(11),
        &[("hvncp.ack", "10"), ("hvncp.ack_to", "10")],
    );
    // 12-17: doorbells and the application-report exchange (§11).
    expect(
        &rows,
        12,
        name(12),
        &[
            ("hvncp.verb", "DBELL"),
            ("hvncp.dbell.vector", "0x0000000000000002"),
            ("hvncp.dbell.new_report", "1"),
            ("hvncp.dbell.critical_failure", "0"),
            ("_ws.col.Info", "DBELL 0x2 n=3 [ACKR,BEG,END]"),
            no_expert,
        ],
    );
    expect(
        &rows,
        13,
        name(13),
        &[
            ("hvncp.verb", "PMSG_REQ"),
            ("hvncp.report.req", "1f"),
            ("_ws.col.Info", "PMSG_REQ req=1f n=11 [ACKR,BEG,END]"),
            no_expert,
        ],
    );
    expect(
        &rows,
        14,
        name(14),
        &[
            ("hvncp.verb", "PMSG_RSP"),
            ("hvncp.report.req", "1f"),
            ("hvncp.report.gen", "7"),
            ("hvncp.report.index", "1"),
            ("hvncp.report.count", "1"),
            ("hvncp.report.line", "HVHA-APPS 1 inc=ab gen=7 count=0"),
            (
                "_ws.col.Info",
                "PMSG_RSP req=1f gen=7 chunk 1/1 (33 bytes) n=4 [ACKR,BEG,END]",
            ),
            no_expert,
        ],
    );
    expect(
        &rows,
        15,
        name(15),
        &[
            ("hvncp.verb", "GMSG"),
            ("hvncp.report.req", "1f"),
            ("hvncp.report.gen", "7"),
            ("_ws.col.Info", "GMSG req=1f gen=7 n=12 [ACKR,BEG,END]"),
        ],
    );
    expect(
        &rows,
        16,
        name(16),
        &[
            ("hvncp.verb", "CLRDB"),
            ("hvncp.report.req", "1f"),
            ("hvncp.report.gen", "7"),
            no_expert,
        ],
    );
    expect(
        &rows,
        17,
        name(17),
        &[
            ("hvncp.flags", "0xb8"),
            ("hvncp.flags.pri", "1"),
            ("hvncp.flags.str", "ACKR,BEG,END,PRI"),
            ("hvncp.dbell.vector", "0x0000000000000102"),
            ("hvncp.dbell.new_report", "1"),
            ("hvncp.dbell.critical_failure", "1"),
        ],
    );
    expect(
        &rows,
        18,
        name(18),
        &[
            ("hvncp.flags", "0x48"),
            ("hvncp.flags.pri", "1"),
            ("hvncp.ack", "6"),
            ("hvncp.ack_to", "17"),
        ],
    );
    // 19-21: a message in three fragments (§3.6), reassembled on the last.
    expect(
        &rows,
        19,
        name(19),
        &[
            ("hvncp.type", "Fragment"),
            ("hvncp.flags", "0xa0"),
            ("hvncp.frag_index", "0"),
            ("hvncp.len", "1492"),
            ("hvncp.fragment.first", "19"),
            ("hvncp.reassembled_in", "21"),
            ("hvncp.verb", ""),
            ("_ws.col.Info", "Fragment 0 (first) n=13 [ACKR,BEG]"),
            no_expert,
        ],
    );
    expect(
        &rows,
        20,
        name(20),
        &[
            ("hvncp.flags", "0x80"),
            ("hvncp.frag_index", "1"),
            ("hvncp.fragment.first", "19"),
            ("hvncp.reassembled_in", "21"),
        ],
    );
    expect(
        &rows,
        21,
        name(21),
        &[
            ("hvncp.flags", "0x90"),
            ("hvncp.frag_index", "2"),
            ("hvncp.len", "100"),
            ("hvncp.reassembled_in", "21"),
            ("hvncp.reassembled.count", "3"),
            ("hvncp.reassembled.length", "3084"),
            ("hvncp.verb", "NOTE"),
        ],
    );
    expect_contains(
        &rows,
        21,
        name(21),
        "_ws.expert.message",
        "Unknown verb NOTE",
    );
    expect_contains(
        &rows,
        21,
        name(21),
        "_ws.col.Info",
        "Fragment 2 (last), reassembled: NOTE:abcdefg",
    );
    // 22-25: SHDN, its retransmission, the ACK and a duplicate ACK.
    expect(
        &rows,
        22,
        name(22),
        &[
            ("hvncp.verb", "SHDN"),
            ("hvncp.shdn.reason", "DAEMON"),
            ("hvncp.retransmission_of", ""),
            ("_ws.col.Info", "SHDN DAEMON n=7 [ACKR,BEG,END]"),
            no_expert,
        ],
    );
    expect(
        &rows,
        23,
        name(23),
        &[
            ("hvncp.retransmission_of", "22"),
            (
                "_ws.col.Info",
                "SHDN DAEMON n=7 [ACKR,BEG,END] [retransmission]",
            ),
        ],
    );
    expect_contains(
        &rows,
        23,
        name(23),
        "_ws.expert.message",
        "Retransmission of frame 22",
    );
    expect(
        &rows,
        24,
        name(24),
        &[
            ("hvncp.ack_to", "22"),
            ("hvncp.duplicate_ack_of", ""),
            no_expert,
        ],
    );
    expect(&rows, 25, name(25), &[("hvncp.duplicate_ack_of", "24")]);
    expect_contains(
        &rows,
        25,
        name(25),
        "_ws.expert.message",
        "Duplicate acknowledgement",
    );
    expect(&rows, 26, name(26), &[("hvncp.verb", "STOP_HB"), no_expert]);
    expect(
        &rows,
        27,
        name(27),
        &[
            ("hvncp.verb", "FOO"),
            ("hvncp.args", "bar=1"),
            ("hvncp.property.key", "bar"),
            ("hvncp.property.value", "1"),
            ("_ws.expert.message", "Unknown verb FOO"),
        ],
    );
    // 28: bad checksum: status Bad, expert error, still dissected.
    expect(
        &rows,
        28,
        name(28),
        &[
            ("hvncp.checksum", "0x00"),
            // 02+09+30+03 + 48+42+3a = 0x102
            ("hvncp.checksum.calculated", "0x02"),
            ("hvncp.checksum.status", "0"),
            ("hvncp.verb", "HB"),
            (
                "_ws.expert.message",
                "Bad checksum 0x00, computed 0x02 (a receiver drops it)",
            ),
            ("_ws.col.Info", "HB n=9 [BEG,END] [BAD CHECKSUM]"),
        ],
    );
    // 29-31: authenticated frames (§7): the vector of §7.7, a frame sealed by the codec,
    // and the same with its tag changed.
    expect(
        &rows,
        29,
        name(29),
        &[
            ("hvncp.flags", "0x31"),
            ("hvncp.flags.rsv", "1"),
            ("hvncp.flags.str", "BEG,END,Rsv"),
            ("hvncp.checksum", "0xfb"),
            ("hvncp.checksum.status", "1"),
            ("hvncp.verb", "HB"),
            ("hvncp.auth.key_id", "1"),
            ("hvncp.auth.counter", "1556303548719328000"),
            ("hvncp.auth.tag", "3b72fb688c813327e3cc20f146069b92"),
            ("hvncp.auth.tag.status", "1"),
            (
                "_ws.col.Info",
                "HB n=1 [BEG,END,Rsv] [auth key=1] [tag good]",
            ),
            no_expert,
        ],
    );
    expect(
        &rows,
        30,
        name(30),
        &[
            ("hvncp.flags", "0xb1"),
            ("hvncp.verb", "START_HB"),
            ("hvncp.auth.key_id", "1"),
            ("hvncp.auth.counter", "1556303548719328001"),
            ("hvncp.auth.tag.status", "1"),
            no_expert,
        ],
    );
    expect(
        &rows,
        31,
        name(31),
        &[
            ("hvncp.checksum.status", "1"),
            ("hvncp.auth.tag.status", "0"),
        ],
    );
    expect_contains(
        &rows,
        31,
        name(31),
        "_ws.expert.message",
        "Bad authentication tag",
    );
    expect_contains(&rows, 31, name(31), "_ws.col.Info", "[BAD TAG]");
    expect(
        &rows,
        32,
        name(32),
        &[("hvncp.auth.key_id", ""), ("hvncp.verb", "NOTE")],
    );
    expect_contains(
        &rows,
        32,
        name(32),
        "_ws.expert.message",
        "only 5 of the trailer's 25 bytes",
    );
    // 33-42: malformed frames: expert items, never a Lua error.
    expect(
        &rows,
        33,
        name(33),
        &[
            ("hvncp.version", ""),
            (
                "_ws.expert.message",
                "Frame too short for the HVNCP header: 5 of 8 bytes (a receiver drops it)",
            ),
        ],
    );
    expect(
        &rows,
        34,
        name(34),
        &[("hvncp.len", "200"), ("hvncp.checksum.status", "")],
    );
    expect_contains(
        &rows,
        34,
        name(34),
        "_ws.expert.message",
        "Payload length 200 runs past the 38 bytes present",
    );
    expect(
        &rows,
        35,
        name(35),
        &[
            ("hvncp.version", "3.0"),
            ("hvncp.checksum.status", "1"),
            (
                "_ws.expert.message",
                "Version 3.0: the major must be 2 (a receiver drops it)",
            ),
        ],
    );
    expect(
        &rows,
        36,
        name(36),
        &[(
            "_ws.expert.message",
            "Flag rule broken: an ACK has an empty payload (a receiver drops it)",
        )],
    );
    expect(
        &rows,
        37,
        name(37),
        &[(
            "_ws.expert.message",
            "Flag rule broken: a continuation packet has a fragment index above 0 (a receiver drops it)",
        )],
    );
    expect(
        &rows,
        38,
        name(38),
        &[("hvncp.syn.role", "agent"), ("hvncp.syn.uuid", "xyz")],
    );
    expect_contains(
        &rows,
        38,
        name(38),
        "_ws.expert.message",
        "uuid is not 8-4-4-4-12 hex digits",
    );
    expect_contains(
        &rows,
        38,
        name(38),
        "_ws.expert.message",
        "Missing required property vervmmlower",
    );
    expect_contains(
        &rows,
        39,
        name(39),
        "_ws.expert.message",
        "Hello identifier is not",
    );
    expect(&rows, 40, name(40), &[("hvncp.start_hb.period_ms", "5")]);
    expect_contains(
        &rows,
        40,
        name(40),
        "_ws.expert.message",
        "period_ms must be 100-3600000",
    );
    expect_contains(
        &rows,
        41,
        name(41),
        "_ws.expert.message",
        "Payload is not VERB[:ARGS]",
    );
    expect(
        &rows,
        42,
        name(42),
        &[("_ws.expert.message", "Empty message: no verb")],
    );
    // 43: another EtherType: left alone.
    expect(
        &rows,
        43,
        name(43),
        &[("hvncp.version", ""), ("_ws.expert.message", "")],
    );
    assert!(
        !rows[42]["frame.protocols"].contains("hvncp"),
        "{:?}",
        rows[42]
    );

    expect(
        &rows,
        44,
        name(44),
        &[
            ("hvncp.type", "SYN refresh"),
            ("hvncp.flags", "0x04"),
            ("hvncp.checksum.status", "1"),
            ("_ws.col.Info", "SYN refresh n=18 [SYN]"),
            ("_ws.expert.message", ""),
        ],
    );

    for (i, of) in [(47, "45"), (48, "46")] {
        expect(
            &rows,
            i,
            name(i),
            &[
                ("hvncp.ack_to", of),
                ("hvncp.duplicate_ack_of", ""),
                ("_ws.expert.message", ""),
            ],
        );
    }
    expect(&rows, 46, name(46), &[("hvncp.retransmission_of", "")]);

    // Read in one pass, the same (but earlier fragments cannot name the frame that
    // completes their message yet).
    let fields = [
        "hvncp.ack_to",
        "hvncp.duplicate_ack_of",
        "hvncp.retransmission_of",
        "hvncp.from",
        "hvncp.to",
        "hvncp.fragment.first",
        "hvncp.auth.tag.status",
        "_ws.col.Info",
    ];
    let key = [format!("hvncp.auth_keys:1 {KEY_HEX}")];
    let one = tshark_passes(&pcap, &fields, &key, false);
    let two = tshark_passes(&pcap, &fields, &key, true);
    assert_eq!(one, two, "one pass and two passes agree");

    // Without the key, tags are shown but not verified.
    let rows = tshark(&pcap, &["hvncp.auth.tag.status", "_ws.expert.message"], &[]);
    assert_eq!(
        rows[28]["hvncp.auth.tag.status"], "2",
        "unverified without a key"
    );
    assert!(rows[28]["_ws.expert.message"].contains("no key with id 1"));
}

#[test]
fn fuzz_seed_corpus_checksums_and_tags_verify() {
    if !have("tshark", "fuzz_seed_corpus_checksums_and_tags_verify") {
        return;
    }
    let mut frames = Vec::new();
    for dir in ["frame", "auth"] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(repo().join("fuzz/corpus").join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "bin"))
            .collect();
        paths.sort();
        for p in paths {
            frames.push(("seed", std::fs::read(&p).unwrap()));
        }
    }
    assert!(
        frames.len() >= 16,
        "the fuzz corpus has its seeds: {}",
        frames.len()
    );
    let pcap = artifacts().join("fuzz-corpus.pcap");
    write_pcap(&pcap, &frames, &[]);
    let rows = tshark(
        &pcap,
        &[
            "hvncp.checksum.status",
            "hvncp.flags.rsv",
            "hvncp.auth.tag.status",
            "hvncp.type",
        ],
        &[format!("hvncp.auth_keys:1 {FUZZ_KEY_HEX}")],
    );
    assert_eq!(rows.len(), frames.len());
    let mut sealed = 0;
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["hvncp.checksum.status"], "1", "seed {}: {row:?}", i + 1);
        assert!(!row["hvncp.type"].is_empty());
        if row["hvncp.flags.rsv"] == "1" {
            assert_eq!(row["hvncp.auth.tag.status"], "1", "seed {}: {row:?}", i + 1);
            sealed += 1;
        }
    }
    assert!(sealed >= 8, "sealed seeds verified: {sealed}");
}

#[test]
fn ethertype_preference_and_heuristic() {
    if !have("tshark", "ethertype_preference_and_heuristic") {
        return;
    }
    let mut hb = frame(VM, HM, 1, BEG | END, 0, b"HB:");
    hb[12..14].copy_from_slice(&0x88b6u16.to_be_bytes());
    let pcap = artifacts().join("ethertype-88b6.pcap");
    write_pcap(&pcap, &[("HB on 0x88b6", hb)], &[]);
    let fields = ["frame.protocols", "hvncp.verb"];
    let default = tshark(&pcap, &fields, &[]);
    assert!(
        !default[0]["frame.protocols"].contains("hvncp"),
        "{:?}",
        default[0]
    );
    let pref = tshark(&pcap, &fields, &["hvncp.ethertype:0x88b6".to_owned()]);
    assert_eq!(pref[0]["hvncp.verb"], "HB", "{:?}", pref[0]);
    let heur = tshark(&pcap, &fields, &["hvncp.heuristic:TRUE".to_owned()]);
    assert_eq!(heur[0]["hvncp.verb"], "HB", "{:?}", heur[0]);
    // Decode As (`-d`), offered for every EtherType.
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&pcap)
        .arg("-X")
        .arg(format!("lua_script:{}", dissector().display()))
        .args([
            "-d",
            "ethertype==0x88b6,hvncp",
            "-T",
            "fields",
            "-e",
            "hvncp.verb",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "HB");
}

/// A frame of `payload` without Ethernet padding (as captured on the sending host, or
/// cut short): the dissector must never read past what is there.
fn unpadded(src: MacAddr, dst: MacAddr, flags: Flags, payload: &[u8]) -> Vec<u8> {
    let mut f = frame(src, dst, 1, flags, 0, payload);
    f.truncate(22 + payload.len());
    f
}

#[test]
fn edge_cases_give_expert_items_never_errors() {
    if !have("tshark", "edge_cases_give_expert_items_never_errors") {
        return;
    }
    let mut sealed_short = unpadded(HM, VM, BEG | END | RSV, b"HB:");
    sealed_short.extend_from_slice(&[1, 2]);
    let frames: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "empty SYN, 22 bytes",
            unpadded(VM, HM, ACKR | BEG | SYN, b""),
            "SYN n=1 [ACKR,BEG,SYN]",
            "Missing required property uuid",
        ),
        (
            "empty Hello, 22 bytes",
            unpadded(HM, MacAddr::BROADCAST, HEL, b""),
            "Hello (malformed) [HEL]",
            "Hello identifier is not",
        ),
        (
            "Rsv with 2 trailer bytes",
            sealed_short,
            "HB n=1 [BEG,END,Rsv] [auth: trailer truncated]",
            "only 2 of the trailer's 25 bytes",
        ),
        (
            "empty report chunk",
            unpadded(VM, HM, ACKR | BEG | END, b"PMSG_RSP:1f:7:1/1:"),
            "PMSG_RSP req=1f gen=7 chunk 1/1 (0 bytes) n=1 [ACKR,BEG,END]",
            "",
        ),
        (
            "heartbeat seq above 2^64",
            unpadded(VM, HM, BEG | END, b"HB:seq=99999999999999999999"),
            "HB seq=99999999999999999999 n=1 [BEG,END]",
            "seq is not a decimal below 2^64",
        ),
        (
            "empty period",
            unpadded(HM, VM, ACKR | BEG | END, b"START_HB:period_ms="),
            "START_HB period_ms= n=1 [ACKR,BEG,END]",
            "period_ms must be 100-3600000",
        ),
        (
            "GMSG request id not hex",
            unpadded(HM, VM, ACKR | BEG | END, b"GMSG:zz:1"),
            "GMSG zz:1 n=1 [ACKR,BEG,END]",
            "arguments are not <req hex>:<gen>",
        ),
        (
            "DBELL without digits",
            unpadded(VM, HM, ACKR | BEG | END, b"DBELL:0x"),
            "DBELL 0x n=1 [ACKR,BEG,END]",
            "vector must be 1-16 hex digits",
        ),
        (
            "chunk index out of range",
            unpadded(VM, HM, ACKR | BEG | END, b"PMSG_RSP:1f:7:300/999:x"),
            "PMSG_RSP req=1f gen=7 chunk 300/999 (1 bytes) n=1 [ACKR,BEG,END]",
            "chunk index/count out of 1..count",
        ),
        (
            "property without =",
            unpadded(HM, VM, ACKR | BEG | END, b"STOP_HB:oops"),
            "STOP_HB n=1 [ACKR,BEG,END]",
            "Property without '=': oops",
        ),
    ];
    let pcap = artifacts().join("edge-cases.pcap");
    let named: Vec<(&str, Vec<u8>)> = frames.iter().map(|(n, f, _, _)| (*n, f.clone())).collect();
    write_pcap(&pcap, &named, &[]);
    let rows = tshark(&pcap, &["_ws.col.Info", "_ws.expert.message"], &[]);
    assert_eq!(rows.len(), frames.len());
    for (i, (name, _, info, expert)) in frames.iter().enumerate() {
        expect(&rows, i + 1, name, &[("_ws.col.Info", info)]);
        if expert.is_empty() {
            expect(&rows, i + 1, name, &[("_ws.expert.message", "")]);
        } else {
            expect_contains(&rows, i + 1, name, "_ws.expert.message", expert);
        }
    }
}

/// splitmix64: a small deterministic generator, so that a failing mutation is
/// reproduced by the next run.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap()).unwrap()
    }
}

/// Frames are untrusted input: 3,000 mutations of the golden frames (bytes changed,
/// header fields set to extremes, frames cut or extended) are all dissected without a
/// Lua error or a dissector fault.
#[test]
fn mutated_frames_never_raise_errors() {
    if !have("tshark", "mutated_frames_never_raise_errors") {
        return;
    }
    let golden = golden();
    let mut rng = SplitMix(0x4856_4e43_5020_7632);
    let mut frames = Vec::new();
    for _ in 0..3000 {
        let mut f = golden[rng.below(golden.len())].1.clone();
        // Keep the EtherType HVNCP's so the dissector sees every mutation.
        if f.len() >= 14 {
            f[12..14].copy_from_slice(&DEFAULT_ETHERTYPE.to_be_bytes());
        }
        for _ in 0..=rng.below(4) {
            let at = 14 + rng.below(f.len().saturating_sub(14).max(1));
            match rng.below(6) {
                0 if at < f.len() => f[at] = u8::try_from(rng.next() & 0xff).unwrap(),
                1 if f.len() > 22 => f[20..22]
                    .copy_from_slice(&u16::try_from(rng.next() & 0xffff).unwrap().to_be_bytes()),
                2 if f.len() > 17 => f[17] = u8::try_from(rng.next() & 0xff).unwrap(),
                3 => f.truncate(at.min(f.len())),
                4 => f.extend((0..rng.below(40)).map(|_| u8::try_from(rng.next() & 0xff).unwrap())),
                _ if at < f.len() => f[at] = [b':', b'=', b'/', 0, 0xff][rng.below(5)],
                _ => {}
            }
        }
        if f.len() < 14 {
            f.resize(14, 0);
            f[12..14].copy_from_slice(&DEFAULT_ETHERTYPE.to_be_bytes());
        }
        frames.push(("mutation", f));
    }
    let pcap = artifacts().join("mutations.pcap");
    write_pcap(&pcap, &frames, &[]);
    // `tshark` itself asserts: no Lua error, no dissector fault, in the tree of every frame.
    let rows = tshark(
        &pcap,
        &["frame.protocols", "hvncp.checksum.status"],
        &[
            format!("hvncp.auth_keys:1 {KEY_HEX}"),
            "hvncp.heuristic:TRUE".to_owned(),
        ],
    );
    assert_eq!(rows.len(), frames.len());
    let dissected = rows
        .iter()
        .filter(|r| r["frame.protocols"].contains("hvncp"))
        .count();
    assert!(
        dissected >= 2900,
        "frames reaching the dissector: {dissected}"
    );
}

// ---------------------------------------------------------------------------------
// A real handshake
// ---------------------------------------------------------------------------------

/// `dumpcap` running in a namespace; interrupted (and waited for) on drop.
struct Dumpcap {
    child: Child,
    log: PathBuf,
}

impl Dumpcap {
    fn start(ns: &str, iface: &str, out: &Path, log: &Path) -> Dumpcap {
        let _ = std::fs::remove_file(out);
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "dumpcap",
                "-i",
                iface,
                "-P",
                "-f",
                "ether proto 0x0600",
                "-w",
            ])
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let d = Dumpcap {
            child,
            log: log.to_owned(),
        };
        let started = wait_for(Duration::from_secs(10), || {
            std::fs::read_to_string(&d.log)
                .ok()
                .filter(|l| l.contains("Capturing on"))
                .map(|_| ())
        });
        assert!(started.is_some(), "dumpcap did not start: {}", d.log_text());
        d
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGINT (dumpcap closes its file), then wait.
    fn stop(&mut self) {
        // `ip netns exec` execs dumpcap: the child's pid is dumpcap's.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dumpcap {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

fn command_result(hsdb: &Path, id: i64) -> Option<String> {
    Hsdb::open(hsdb, &Options::default())
        .ok()?
        .command(id)
        .ok()??
        .result
}

const REAL_FIELDS: &[&str] = &[
    "frame.number",
    "eth.src",
    "eth.dst",
    "_ws.col.Info",
    "_ws.expert.message",
    "hvncp.version",
    "hvncp.type",
    "hvncp.flags",
    "hvncp.flags.rsv",
    "hvncp.from",
    "hvncp.to",
    "hvncp.seq",
    "hvncp.ack",
    "hvncp.checksum.status",
    "hvncp.verb",
    "hvncp.hello.id",
    "hvncp.syn.role",
    "hvncp.syn.uuid",
    "hvncp.syn.ver_vmm_lower",
    "hvncp.syn.ver_hm_running",
    "hvncp.syn.inc",
    "hvncp.start_hb.period_ms",
    "hvncp.dbell.vector",
    "hvncp.shdn.reason",
    "hvncp.report.req",
    "hvncp.report.gen",
    "hvncp.report.index",
    "hvncp.report.count",
    "hvncp.report.line",
    "hvncp.ack_to",
    "hvncp.ack_rtt",
    "hvncp.retransmission_of",
    "hvncp.auth.key_id",
    "hvncp.auth.tag.status",
];

#[test]
fn real_handshake_captured_from_hmd_and_vmmd() {
    real_capture("real_handshake_captured_from_hmd_and_vmmd", false);
}

#[test]
fn real_authenticated_handshake_captured_from_hmd_and_vmmd() {
    real_capture(
        "real_authenticated_handshake_captured_from_hmd_and_vmmd",
        true,
    );
}

/// A real `hmd` and `vmmd` pair, heartbeat, ring, exchange a report and stop while
/// `dumpcap` captures the monitor's interface; the capture is then read by the
/// dissector. With `sealed`, both run `auth = require` and every tag is verified.
fn real_capture(test: &str, sealed: bool) {
    if !have("tshark", test) || !have("dumpcap", test) {
        return;
    }
    let Some(mut lab) = Lab::new(if sealed { "wsauth" } else { "wshark" }) else {
        return;
    };
    let mon = lab.netns("mon");
    let vm = lab.netns("vm");
    lab.link(&vm, "ha1", &mon, "m1");
    let key_file = lab.write("auth.key", &format!("# test key\n1 {KEY_HEX}\n"));
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let auth = if sealed {
        format!(
            "auth = \"require\"\nauth_key_file = {:?}\n",
            key_file.display().to_string()
        )
    } else {
        String::new()
    };
    let hsdb = lab.dir.join("hsdb.sqlite");
    let socket = lab.dir.join("hmd.sock");
    let hmd_config = lab.write(
        "hmd.toml",
        &hmd_toml(
            HM_UUID,
            &hsdb,
            &socket,
            &["m1"],
            &format!(
                "hello_period_ms = 1000\nhb_period_ms = 200\nvm_miss_after_ms = 1000\n\
                 hm_heartbeat_period_ms = 1000\nflush_ms = 10\ncommand_poll_ms = 100\n\
                 log = \"info\"\n{auth}"
            ),
        ),
    );
    let vmmd_config = lab.write(
        "vmmd.toml",
        &format!(
            "vm_uuid = \"{VM_UUID}\"\ninterfaces = [\"ha1\"]\nlog = \"info\"\n{auth}{}",
            hvha_e2e::vmmd_ame_section(&lab.dir, "vmmd")
        ),
    );
    let pcap = artifacts().join(if sealed {
        "handshake-auth.pcap"
    } else {
        "handshake.pcap"
    });
    // Flag bytes on the wire: with authentication, Rsv (0x01) on every frame.
    let rsv = u8::from(sealed);
    let hex = |flags: u8| format!("0x{:02x}", flags | rsv);
    let tail = if sealed {
        " [BEG,END,Rsv] [auth key=1] [tag good]"
    } else {
        " [BEG,END]"
    };
    let mut dumpcap = Dumpcap::start(&mon, "m1", &pcap, &lab.dir.join("dumpcap.log"));

    lab.spawn(
        "hmd",
        &mon,
        "hmd",
        &["--config", &hmd_config.display().to_string()],
    );
    lab.spawn(
        "vmmd",
        &vm,
        "vmmd",
        &["--config", &vmmd_config.display().to_string()],
    );
    let logs = |lab: &Lab| format!("{}\n{}", lab.log("hmd"), lab.log("vmmd"));
    let enqueue = |kind, arg: Option<&str>| {
        wait_for(Duration::from_secs(10), || {
            Hsdb::open(&hsdb, &Options::default())
                .ok()?
                .enqueue_command_arg(&uuid(HM_UUID), kind, &uuid(VM_UUID), arg, unix_ms())
                .ok()
        })
        .expect("enqueue a command")
    };
    // The first doorbell rings four heartbeat periods (800 ms) after START_HB; a FETCH
    // and a CONFIRM as the control plane sends them once it has seen it.
    wait_for(Duration::from_secs(20), || {
        Hsdb::open(&hsdb, &Options::default())
            .ok()?
            .pending()
            .ok()?
            .into_iter()
            .find(|p| p.kind == PendingKind::Doorbell && p.vm == Some(uuid(VM_UUID)))
    })
    .unwrap_or_else(|| panic!("no doorbell\n{}", logs(&lab)));
    let fetch = enqueue(CommandKind::FetchAppReport, None);
    let report = wait_for(Duration::from_secs(20), || {
        command_result(&hsdb, fetch).filter(|r| r.starts_with("REPORT: "))
    })
    .unwrap_or_else(|| {
        panic!(
            "no report: {:?}\n{}",
            command_result(&hsdb, fetch),
            logs(&lab)
        )
    });
    let generation = report
        .split_whitespace()
        .find_map(|w| w.strip_prefix("gen="))
        .unwrap()
        .to_owned();
    let confirm = enqueue(CommandKind::ConfirmAppReport, Some(&generation));
    wait_for(Duration::from_secs(10), || {
        command_result(&hsdb, confirm).filter(|r| r.starts_with("CLEARED: "))
    })
    .unwrap_or_else(|| {
        panic!(
            "not cleared: {:?}\n{}",
            command_result(&hsdb, confirm),
            logs(&lab)
        )
    });
    // A few more heartbeats, then the agent stops: SHDN:DAEMON and its ACK.
    std::thread::sleep(Duration::from_millis(1200));
    lab.stop_cleanly("vmmd");
    std::thread::sleep(Duration::from_millis(300));
    dumpcap.stop();
    eprintln!(
        "capture: {} ({})",
        pcap.display(),
        dumpcap.log_text().trim()
    );

    let rows = tshark(
        &pcap,
        REAL_FIELDS,
        &[format!("hvncp.auth_keys:1 {KEY_HEX}")],
    );
    let summary: String = rows
        .iter()
        .map(|r| {
            format!(
                "{:>4} {} {}\n",
                r["frame.number"], r["eth.src"], r["_ws.col.Info"]
            )
        })
        .collect();
    eprintln!("{summary}");
    assert!(
        rows.len() >= 12,
        "a handshake and heartbeats: {} frames\n{summary}",
        rows.len()
    );
    // Every frame: HVNCP 2.0, checksum good, sealed with key 1 and its tag good; no
    // expert item but retransmissions and duplicate ACKs, which a loaded machine may
    // cause.
    for r in &rows {
        let n = &r["frame.number"];
        assert_eq!(r["hvncp.version"], "2.0", "frame {n}: {r:?}");
        assert_eq!(r["hvncp.checksum.status"], "1", "frame {n}: {r:?}");
        if sealed {
            assert_eq!(r["hvncp.flags.rsv"], "1", "frame {n}: {r:?}");
            assert_eq!(r["hvncp.auth.key_id"], "1", "frame {n}: {r:?}");
            assert_eq!(r["hvncp.auth.tag.status"], "1", "frame {n}: {r:?}");
        } else {
            assert_eq!(r["hvncp.flags.rsv"], "0", "frame {n}: {r:?}");
            assert_eq!(r["hvncp.auth.key_id"], "", "frame {n}: {r:?}");
        }
        for m in r["_ws.expert.message"].split('|').filter(|m| !m.is_empty()) {
            assert!(
                m.starts_with("Retransmission") || m.starts_with("Duplicate acknowledgement"),
                "frame {n}: unexpected expert item {m:?}\n{summary}"
            );
        }
    }
    let find = |what: &str, pred: &dyn Fn(&Row) -> bool| -> usize {
        rows.iter()
            .position(pred)
            .unwrap_or_else(|| panic!("no {what} in the capture\n{summary}"))
    };
    let is = |r: &Row, field: &str, value: &str| r[field] == value;

    // The Hello, broadcast by the monitor.
    let hello = find("Hello", &|r| is(r, "hvncp.type", "Hello"));
    assert_eq!(rows[hello]["eth.dst"], "ff:ff:ff:ff:ff:ff");
    let monitor_mac = rows[hello]["eth.src"].clone();
    assert!(rows[hello]["hvncp.hello.id"].split('.').count() == 3);
    // The agent's SYN (SYN|ACKR|BEG|Rsv) with its properties.
    let agent_syn = find("agent SYN", &|r| {
        is(r, "hvncp.type", "SYN") && is(r, "hvncp.syn.role", "agent")
    });
    let a = &rows[agent_syn];
    assert_eq!(a["hvncp.flags"], hex(0xa4), "{a:?}");
    assert_eq!(a["hvncp.syn.uuid"], VM_UUID);
    assert_eq!(a["hvncp.syn.ver_vmm_lower"], "2.0");
    assert_eq!(
        a["hvncp.syn.inc"].len(),
        16,
        "the agent's incarnation: {a:?}"
    );
    assert!(agent_syn > hello, "the agent answers a Hello\n{summary}");
    let agent_mac = a["eth.src"].clone();
    assert_eq!(a["eth.dst"], monitor_mac);
    // The monitor's SYN (SYN|ACKR|END|Rsv), then the acknowledgements of both SYNs.
    let monitor_syn = find("monitor SYN", &|r| is(r, "hvncp.syn.role", "monitor"));
    let m = &rows[monitor_syn];
    assert_eq!(m["hvncp.flags"], hex(0x94), "{m:?}");
    assert_eq!(m["hvncp.syn.uuid"], HM_UUID);
    assert_eq!(m["hvncp.syn.ver_hm_running"], "2.0");
    assert!(monitor_syn > agent_syn);
    let ack_of = |syn: usize, from: &str| {
        find("SYN-ACK", &|r| {
            is(r, "hvncp.type", "SYN-ACK")
                && r["eth.src"] == from
                && r["hvncp.ack"] == rows[syn]["hvncp.seq"]
        })
    };
    let ack_agent = ack_of(agent_syn, &monitor_mac);
    assert_eq!(
        rows[ack_agent]["hvncp.ack_to"],
        rows[agent_syn]["frame.number"]
    );
    let ack_monitor = ack_of(monitor_syn, &agent_mac);
    assert_eq!(
        rows[ack_monitor]["hvncp.ack_to"],
        rows[monitor_syn]["frame.number"]
    );
    // START_HB with the configured 200 ms period, sent with the monitor's SYN's number
    // (a SYN consumes none) and acknowledged.
    let start = find("START_HB", &|r| is(r, "hvncp.verb", "START_HB"));
    let s = &rows[start];
    assert_eq!(s["hvncp.start_hb.period_ms"], "200");
    assert_eq!(
        (s["hvncp.from"].as_str(), s["hvncp.to"].as_str()),
        ("monitor", "agent")
    );
    assert_eq!(s["hvncp.flags"], hex(0xb0));
    assert_eq!(
        s["hvncp.seq"], m["hvncp.seq"],
        "the first packet after a SYN takes its number"
    );
    assert!(start > ack_monitor);
    let start_ack = find("ACK of START_HB", &|r| {
        is(r, "hvncp.type", "ACK") && r["hvncp.ack_to"] == s["frame.number"]
    });
    assert_eq!(rows[start_ack]["eth.src"], agent_mac);
    let rtt: f64 = rows[start_ack]["hvncp.ack_rtt"].parse().unwrap();
    assert!(
        (0.0..5.0).contains(&rtt),
        "START_HB acknowledged after {rtt} s"
    );
    // Heartbeats: datagrams from the agent, numbers increasing by one per packet the
    // agent sends (other messages take numbers too).
    let hbs: Vec<&Row> = rows.iter().filter(|r| is(r, "hvncp.verb", "HB")).collect();
    assert!(hbs.len() >= 5, "heartbeats: {}\n{summary}", hbs.len());
    let first_hb = &hbs[0];
    assert_eq!(first_hb["hvncp.type"], "Datagram");
    assert_eq!(
        (
            first_hb["hvncp.from"].as_str(),
            first_hb["hvncp.to"].as_str()
        ),
        ("agent", "monitor")
    );
    assert_eq!(
        first_hb["hvncp.seq"], a["hvncp.seq"],
        "the agent's first packet after its SYN"
    );
    for pair in hbs.windows(2) {
        let (x, y): (u8, u8) = (
            pair[0]["hvncp.seq"].parse().unwrap(),
            pair[1]["hvncp.seq"].parse().unwrap(),
        );
        let step = y.wrapping_sub(x);
        assert!(
            (1..=8).contains(&step),
            "heartbeat numbers {x} then {y}\n{summary}"
        );
    }
    assert_eq!(
        first_hb["_ws.col.Info"],
        format!("HB n={}{tail}", first_hb["hvncp.seq"])
    );
    // The doorbell, and the report exchange under the commands' ids.
    let dbell = find("DBELL", &|r| is(r, "hvncp.verb", "DBELL"));
    assert_eq!(rows[dbell]["hvncp.dbell.vector"], "0x0000000000000002");
    assert_eq!(rows[dbell]["eth.src"], agent_mac);
    let req = format!("{fetch:x}");
    let pmsg_req = find("PMSG_REQ", &|r| is(r, "hvncp.verb", "PMSG_REQ"));
    assert_eq!(rows[pmsg_req]["hvncp.report.req"], req);
    assert_eq!(rows[pmsg_req]["eth.src"], monitor_mac);
    let rsp = find("PMSG_RSP", &|r| is(r, "hvncp.verb", "PMSG_RSP"));
    let p = &rows[rsp];
    assert_eq!(p["hvncp.report.req"], req);
    assert_eq!(p["hvncp.report.gen"], generation);
    assert_eq!(p["hvncp.report.index"], "1");
    assert_eq!(p["hvncp.report.count"], "1");
    assert!(
        p["hvncp.report.line"].starts_with("HVHA-APPS 1 inc="),
        "{p:?}"
    );
    assert!(rsp > pmsg_req);
    let gmsg = find("GMSG", &|r| is(r, "hvncp.verb", "GMSG"));
    assert_eq!(rows[gmsg]["hvncp.report.req"], format!("{confirm:x}"));
    assert_eq!(rows[gmsg]["hvncp.report.gen"], generation);
    let clrdb = find("CLRDB", &|r| is(r, "hvncp.verb", "CLRDB"));
    assert_eq!(rows[clrdb]["hvncp.report.gen"], generation);
    assert!(clrdb > gmsg);
    // The agent's graceful stop, acknowledged by the monitor.
    let shdn = find("SHDN", &|r| is(r, "hvncp.verb", "SHDN"));
    assert_eq!(rows[shdn]["hvncp.shdn.reason"], "DAEMON");
    find("ACK of SHDN", &|r| {
        is(r, "hvncp.type", "ACK") && r["hvncp.ack_to"] == rows[shdn]["frame.number"]
    });
    drop(lab);
    let mut head = [0u8; 4];
    std::fs::File::open(&pcap)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    assert_eq!(
        head,
        [0xd4, 0xc3, 0xb2, 0xa1],
        "dumpcap -P wrote a classic pcap file"
    );
}
