//! Shared by the `hs_*` tests: an HSDB file set up through its real API (hosts, monitors,
//! transitions at chosen times), the seed's example replies, and the comparison of two
//! XML documents up to white space, quote style and escaping.

#![allow(clippy::unwrap_used, dead_code)]

use std::fmt::Write as _;

use controlplane::hs::{self, NaConfig, NaReply};
use hsdb::{
    HelloId, HmRecord, HmState, HostId, HostRecord, Hsdb, MacAddr, Options, Synchronous,
    Transition, Uuid, Version,
};
use quick_xml::events::Event;
use tempfile::TempDir;

/// 2019-01-24 02:24:26 UTC (the seed's CAA event time `TIME_tvsec=1548296666`,
/// seed 004 L7626-7652), in ms.
pub const T0: i64 = 1_548_296_666_000;

pub const V2_0: Version = Version { major: 2, minor: 0 };

pub fn uuid(text: &str) -> Uuid {
    Uuid::parse(text.as_bytes()).unwrap()
}

/// A host of the seed's labs: id, machine type, model, serial and its two monitors.
#[derive(Clone, Copy)]
pub struct SeedHost {
    pub id: HostId,
    pub machine_type: &'static str,
    pub model: &'static str,
    pub serial: &'static str,
    pub monitors: [&'static str; 2],
}

// Ids ordered as the seed lists the hosts within each lab (replies list hosts by id).

/// The 2-host lab of chapter 2's CAA exercise (seed 004 L7078-7096) and the FDE lab
/// (seed 004 L13575-13592).
pub const H_21E0B2V: SeedHost = SeedHost {
    id: HostId(10),
    machine_type: "8286",
    model: "42A",
    serial: "21E0B2V",
    monitors: [
        "315ce56b-9ba0-46a1-b4bc-da6108574e7e",
        "5ac3e0dc-13fc-4221-9617-8ef61c4cdd83",
    ],
};
pub const H_2100DEW: SeedHost = SeedHost {
    id: HostId(20),
    machine_type: "8286",
    model: "42A",
    serial: "2100DEW",
    monitors: [
        "4e0f6f60-214b-4d2c-a436-0eac46f7f71f",
        "166c89ef-57d8-4e75-815c-aa5b885560b1",
    ],
};
/// The LPM lab (seed 004 L12600-12686, L13016-13037). The seed names one VIOS of
/// 21282FW (the `missedHMEntry`, seed 004 L13020); the others are ours.
pub const H_21282FW: SeedHost = SeedHost {
    id: HostId(30),
    machine_type: "8408",
    model: "E8E",
    serial: "21282FW",
    monitors: [
        "10875b47-d737-44f9-a745-554f4df4adf8",
        "a2f1c0de-0000-4000-8000-000000000002",
    ],
};
pub const H_212424W: SeedHost = SeedHost {
    id: HostId(40),
    machine_type: "8408",
    model: "E8E",
    serial: "212424W",
    monitors: [
        "b3f1c0de-0000-4000-8000-000000000003",
        "c4f1c0de-0000-4000-8000-000000000004",
    ],
};

/// The seed's VM of the LPM lab (seed 004 L11447).
pub const VM_LPM: &str = "61be20f0-09a8-4753-b5e5-564f8a545ed5";

/// An HSDB file with some of the seed's hosts and their monitors registered at `T0`.
pub struct Lab {
    _dir: TempDir,
    pub db: Hsdb,
    pub config: NaConfig,
    macs: u8,
}

impl Lab {
    pub fn new(hosts: &[SeedHost]) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            synchronous: Synchronous::Normal,
            ..Options::default()
        };
        let mut db = Hsdb::open(dir.path().join("hsdb.sqlite"), &options).unwrap();
        let mut lab_macs = 0u8;
        for h in hosts {
            db.upsert_host(&HostRecord {
                id: h.id,
                name: format!("Server-{}-{}-SN{}", h.machine_type, h.model, h.serial),
                machine_type: h.machine_type.into(),
                model: h.model.into(),
                serial: h.serial.into(),
                cpu_milli: 48_000,
                memory_mb: 1 << 20,
                host_group: "HG_TCHU".into(),
            })
            .unwrap();
            for m in h.monitors {
                lab_macs += 1;
                db.register_hm(&HmRecord {
                    uuid: uuid(m),
                    host: h.id,
                    mac: MacAddr([0x6a, 0x6a, 0, 0, 0, lab_macs]),
                    incarnation: HelloId::parse(b"1556303548.719328000.38").unwrap(),
                    version: V2_0,
                    at: T0,
                })
                .unwrap();
            }
        }
        Lab {
            _dir: dir,
            db,
            config: NaConfig::default(),
            macs: lab_macs,
        }
    }

    pub fn apply(&mut self, batch: &[Transition]) {
        self.db.apply(batch).unwrap();
    }

    /// Every monitor of `hosts` heart-beats at `at`.
    pub fn heartbeat(&mut self, hosts: &[SeedHost], at: i64) {
        let batch: Vec<Transition> = hosts
            .iter()
            .flat_map(|h| h.monitors)
            .map(|m| Transition::HmHeartbeat { hm: uuid(m), at })
            .collect();
        self.apply(&batch);
    }

    pub fn hm_heartbeat(&mut self, hm: &str, at: i64) {
        self.apply(&[Transition::HmHeartbeat { hm: uuid(hm), at }]);
    }

    /// A monitor or cluster event (the seed's CAA row).
    pub fn hm_event(&mut self, hm: &str, state: HmState, reason: u32, text: &str, at: i64) {
        self.apply(&[Transition::HmEvent {
            hm: uuid(hm),
            state,
            reason,
            text: text.into(),
            at,
        }]);
    }

    /// The agent of `vm` completes its handshake with monitor `hm`.
    pub fn discovered(&mut self, vm: &str, hm: &str, at: i64) {
        self.macs = self.macs.wrapping_add(1);
        self.apply(&[Transition::Discovered {
            vm: uuid(vm),
            hm: uuid(hm),
            mac: MacAddr([0x6a, 0x01, 0, 0, 0, self.macs]),
            ostype: "linux".into(),
            ver_lower: V2_0,
            ver_upper: V2_0,
            at,
        }]);
    }

    /// `vm` discovered by both monitors of `host`.
    pub fn discovered_on(&mut self, vm: &str, host: SeedHost, at: i64) {
        for m in host.monitors {
            self.discovered(vm, m, at);
        }
    }

    pub fn missing(&mut self, vm: &str, hm: &str, at: i64) {
        self.apply(&[Transition::Missing {
            vm: uuid(vm),
            hm: uuid(hm),
            at,
        }]);
    }

    pub fn detected(&mut self, vm: &str, hm: &str, at: i64) {
        self.apply(&[Transition::Detected {
            vm: uuid(vm),
            hm: uuid(hm),
            at,
        }]);
    }

    pub fn doorbell(&mut self, vm: &str, hm: &str, vector: u64, at: i64) {
        self.apply(&[Transition::Doorbell {
            vm: uuid(vm),
            hm: uuid(hm),
            vector,
            at,
        }]);
    }

    /// The QuickQuery reply, as XML.
    pub fn qq(&self, now: i64) -> String {
        hs::xml::write_quick_query(&hs::quick_query(&self.db, now, &self.config).unwrap())
    }

    /// A NeedsAttention with tag `tag`: the reply and its XML.
    pub fn na(&mut self, now: i64, tag: i64) -> (NaReply, String) {
        let reply = hs::needs_attention(&mut self.db, now, &self.config, tag).unwrap();
        let xml = hs::xml::write_needs_attention(&reply.reply);
        (reply, xml)
    }

    /// A NeedsAttention, acknowledged when it carries a tag (as the FDE does); its XML.
    pub fn na_ack(&mut self, now: i64, tag: i64) -> String {
        let (reply, xml) = self.na(now, tag);
        if let Some(t) = reply.reply.tag {
            hs::acknowledge(&mut self.db, t).unwrap();
        }
        xml
    }

    /// Everything pending acknowledged: the group's starting point for a test.
    pub fn settle(&mut self, now: i64) {
        for i in 0..100 {
            let (reply, _) = self.na(now, 7_000 + i);
            match reply.reply.tag {
                Some(t) => {
                    hs::acknowledge(&mut self.db, t).unwrap();
                }
                None => return,
            }
        }
        panic!("pending items never drained");
    }
}

// ---- XML up to white space, quote style and escaping ----

/// An element: name, attributes in order (values unescaped), children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
    /// Written `<x/>` rather than `<x></x>`.
    pub empty: bool,
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The root element of `text`, read with quick-xml directly (not with the parser under
/// test); white-space text dropped, other text refused.
pub fn tree(text: &str) -> Node {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Node> = vec![Node {
        name: "#document".into(),
        attrs: vec![],
        children: vec![],
        empty: false,
    }];
    loop {
        let event = reader.read_event().unwrap();
        match event {
            Event::Start(e) => stack.push(element(&e)),
            Event::Empty(e) => {
                stack.push(element(&e));
                close(&mut stack, true);
            }
            Event::End(_) => close(&mut stack, false),
            Event::Text(t) => {
                let t = t.decode().unwrap();
                assert!(t.trim().is_empty(), "text in a reply: {t:?}");
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let mut doc = stack.pop().unwrap();
    assert_eq!(doc.children.len(), 1, "one root");
    doc.children.pop().unwrap()
}

fn element(e: &quick_xml::events::BytesStart<'_>) -> Node {
    Node {
        name: String::from_utf8(e.name().as_ref().to_vec()).unwrap(),
        attrs: e
            .attributes()
            .map(|a| {
                let a = a.unwrap();
                (
                    String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                    a.unescape_value().unwrap().into_owned(),
                )
            })
            .collect(),
        children: vec![],
        empty: false,
    }
}

fn close(stack: &mut Vec<Node>, empty: bool) {
    let mut node = stack.pop().unwrap();
    node.empty = empty;
    stack.last_mut().unwrap().children.push(node);
}

/// One line per tag, attributes double-quoted and escaped: the form compared.
pub fn canonical(node: &Node) -> String {
    fn walk(n: &Node, depth: usize, out: &mut String) {
        let _ = write!(out, "{}<{}", "  ".repeat(depth), n.name);
        for (k, v) in &n.attrs {
            let v = v
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('"', "&quot;")
                .replace('\n', "&#10;");
            let _ = write!(out, " {k}=\"{v}\"");
        }
        if n.empty {
            out.push_str("/>\n");
            return;
        }
        out.push_str(">\n");
        for c in &n.children {
            walk(c, depth + 1, out);
        }
        let _ = writeln!(out, "{}</{}>", "  ".repeat(depth), n.name);
    }
    let mut out = String::new();
    walk(node, 0, &mut out);
    out
}

/// Where our reply differs from the seed's text on purpose (docs/controlplane.md,
/// "QuickQuery, NeedsAttention, Acknowledge"), applied to the seed's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deviation {
    /// Monitors of a host are listed by UUID; the seed's order changes from one reply
    /// to the next for the same host (seed 004 L12284-12285 vs L7081-7082).
    MonitorsByUuid,
    /// Each VM once per reply: the seed repeats a `vmStat` (seed 004 L7546-7557) or a
    /// host's `needsAtt` (seed 004 L13016-13037) when several of its rows match.
    EachVmOnce,
}

pub fn apply_deviation(node: &mut Node, d: Deviation) {
    match d {
        Deviation::MonitorsByUuid => {
            if node.name == "viosStatus" {
                node.children
                    .sort_by(|a, b| a.attr("uuid").cmp(&b.attr("uuid")));
            }
        }
        Deviation::EachVmOnce => {
            if node.name == "vmList" {
                let mut seen = Vec::new();
                node.children.retain(|c| {
                    let id = c.attr("uuid").map(str::to_owned);
                    let new = !seen.contains(&id);
                    seen.push(id);
                    new
                });
            }
            if node.name == "Response" {
                // A later needsAtt for a host already listed adds nothing of its own.
                let mut hosts = Vec::new();
                node.children.retain(|c| {
                    let host = c
                        .children
                        .first()
                        .filter(|l| l.name == "vmStatList")
                        .and_then(|l| l.children.first())
                        .and_then(|l| l.attr("serial"))
                        .map(str::to_owned);
                    match host {
                        Some(h) if hosts.contains(&h) => false,
                        Some(h) => {
                            hosts.push(h);
                            true
                        }
                        None => true,
                    }
                });
            }
        }
    }
    for c in &mut node.children {
        apply_deviation(c, d);
    }
}

/// Assert that `ours` is the seed's `seed` text up to white space, quote style and
/// escaping, after the named deviations.
#[track_caller]
pub fn assert_same_xml(ours: &str, seed: &str, deviations: &[Deviation]) {
    let mut expected = tree(seed);
    for &d in deviations {
        apply_deviation(&mut expected, d);
    }
    let expected = canonical(&expected);
    let got = canonical(&tree(ours));
    assert!(
        got == expected,
        "reply differs from the seed's\n--- ours\n{got}--- seed\n{expected}--- ours as written\n{ours}"
    );
}
