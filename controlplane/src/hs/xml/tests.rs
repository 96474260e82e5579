//! The XML writer and parser: the seed's examples, the round trip on random values, and
//! every refusal.

#![allow(clippy::unwrap_used)]

use hsdb::{Uuid, VmState};

use super::*;
use crate::hs::{
    DataType, DiscoveryType, HostKey, NeedsAttEntry, NeedsAttention, NodeData, NodeEvent, NodeList,
    QuickQuery, RequestKind, ViosStat, ViosState, ViosStatus, VmStat,
};

/// The seed's examples (controlplane/tests/hs_seed/README.md).
macro_rules! seed {
    ($name:literal) => {
        include_str!(concat!("../../../tests/hs_seed/", $name, ".xml"))
    };
}

const SEED_DOCS: [(&str, &str); 16] = [
    ("request_quick_query", seed!("request_quick_query")),
    ("request_needs_attention", seed!("request_needs_attention")),
    ("request_acknowledge", seed!("request_acknowledge")),
    ("request_query_node_data", seed!("request_query_node_data")),
    ("qq_healthy", seed!("qq_healthy")),
    ("qq_unhealthy", seed!("qq_unhealthy")),
    ("na_healthy_one_host", seed!("na_healthy_one_host")),
    ("na_healthy_two_hosts", seed!("na_healthy_two_hosts")),
    ("na_missed_hb", seed!("na_missed_hb")),
    ("na_moved", seed!("na_moved")),
    ("na_started", seed!("na_started")),
    ("na_doorbell_0x2", seed!("na_doorbell_0x2")),
    ("na_doorbell_0x28", seed!("na_doorbell_0x28")),
    ("na_vios_only", seed!("na_vios_only")),
    ("na_mixed", seed!("na_mixed")),
    ("node_data", seed!("node_data")),
];

fn limits() -> XmlLimits {
    XmlLimits::default()
}

fn uuid(s: &str) -> Uuid {
    Uuid::parse(s.as_bytes()).unwrap()
}

fn reply(text: &str) -> Reply {
    parse_reply(text.as_bytes(), &limits()).unwrap()
}

fn err(text: &str) -> XmlError {
    parse_document(text.as_bytes(), &limits()).unwrap_err()
}

fn host(machine_type: &str, model: &str, serial: &str) -> HostKey {
    HostKey {
        machine_type: machine_type.into(),
        model: model.into(),
        serial: serial.into(),
    }
}

#[test]
fn test_parse_every_seed_example() {
    for (name, text) in SEED_DOCS {
        let doc = parse_document(text.as_bytes(), &limits())
            .unwrap_or_else(|e| panic!("seed example {name}: {e}"));
        // And the round trip from there.
        let again = parse_document(write_document(&doc).as_bytes(), &limits()).unwrap();
        assert_eq!(again, doc, "{name}");
    }
}

#[test]
fn test_parse_seed_requests() {
    let get = |text: &str| parse_request(text.as_bytes(), &limits()).unwrap();
    let qq = get(seed!("request_quick_query"));
    assert_eq!(qq, Request::seed(RequestKind::QuickQuery));
    let na = get(seed!("request_needs_attention"));
    assert_eq!(
        na,
        Request::seed(RequestKind::NeedsAttention {
            data_type: DataType::Global
        })
    );
    let ack = get(seed!("request_acknowledge"));
    assert_eq!(
        ack,
        Request::seed(RequestKind::Acknowledge {
            tag: -6_630_805_255_682_309_212
        })
    );
    let nd = get(seed!("request_query_node_data"));
    assert_eq!(nd, Request::seed(RequestKind::QueryNodeData));
}

#[test]
fn test_write_seed_requests_exactly() {
    // The digest shows requests with its own indentation; ours is the same.
    for (kind, text) in [
        (RequestKind::QuickQuery, seed!("request_quick_query")),
        (
            RequestKind::NeedsAttention {
                data_type: DataType::Global,
            },
            seed!("request_needs_attention"),
        ),
        (
            RequestKind::Acknowledge {
                tag: -6_630_805_255_682_309_212,
            },
            seed!("request_acknowledge"),
        ),
        (RequestKind::QueryNodeData, seed!("request_query_node_data")),
    ] {
        assert_eq!(write_request(&Request::seed(kind)), text);
    }
}

/// Replies the seed writes consistently come back byte for byte: names, order, quotes,
/// hex, line breaks.
#[test]
fn test_write_seed_replies_byte_for_byte() {
    for name in [
        "qq_healthy",
        "qq_unhealthy",
        "na_healthy_one_host",
        "na_healthy_two_hosts",
        "na_missed_hb",
        "na_moved",
        "na_started",
        "na_doorbell_0x2",
        "na_doorbell_0x28",
        "na_vios_only",
    ] {
        let text = SEED_DOCS.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(write_reply(&reply(text)), text, "{name}");
    }
}

#[test]
fn test_parse_unhealthy_quick_query() {
    let Reply::QuickQuery(qq) = reply(seed!("qq_unhealthy")) else {
        panic!("not a QuickQuery");
    };
    assert_eq!(qq.hosts.len(), 2);
    assert_eq!(qq.hosts[0].host, host("8286", "42A", "21E0B2V"));
    assert_eq!(
        qq.hosts[0].stats[1],
        ViosStat {
            uuid: uuid("315ce56b-9ba0-46a1-b4bc-da6108574e7e"),
            state: ViosState::Down,
            hm_responsive: false,
            hm_response_sec: 206_498,
            has_data: true,
            reason: 0x40,
            sync_msg: 0,
        }
    );
}

#[test]
fn test_parse_needs_attention_items() {
    let Reply::NeedsAttention(na) = reply(seed!("na_moved")) else {
        panic!("not a NeedsAttention");
    };
    assert_eq!(na.tag, Some(-8_403_607_219_422_560_833));
    let NeedsAttEntry::Vms { host: h, vms } = &na.entries[0] else {
        panic!("not a vmList");
    };
    assert_eq!(h, &host("8408", "E8E", "21282FW"));
    assert_eq!(
        vms[0],
        VmStat {
            uuid: uuid("61be20f0-09a8-4753-b5e5-564f8a545ed5"),
            state: VmState::Started,
            state_chg: true,
            missed_hb: None,
            short_msg: None,
            missed_hm_entry: Some(uuid("10875b47-d737-44f9-a745-554f4df4adf8")),
            discovery: Some(DiscoveryType::Moved),
        }
    );
    let Reply::NeedsAttention(na) = reply(seed!("na_doorbell_0x28")) else {
        panic!("not a NeedsAttention");
    };
    let NeedsAttEntry::Vms { vms, .. } = &na.entries[0] else {
        panic!("not a vmList");
    };
    assert_eq!(vms[0].short_msg, Some(0x28));
    let Reply::NeedsAttention(na) = reply(seed!("na_missed_hb")) else {
        panic!("not a NeedsAttention");
    };
    assert_eq!(na.tag, None);
    let NeedsAttEntry::Vms { vms, .. } = &na.entries[1] else {
        panic!("not a vmList");
    };
    assert_eq!(vms[0].missed_hb, Some(42));
    // The mixed reply: a monitor entry, then two VM lists, the seed's duplicates kept.
    let Reply::NeedsAttention(na) = reply(seed!("na_mixed")) else {
        panic!("not a NeedsAttention");
    };
    assert!(
        matches!(&na.entries[0], NeedsAttEntry::Vios(s) if s.stats.len() == 1 && s.stats[0].has_data)
    );
    let NeedsAttEntry::Vms { vms, .. } = &na.entries[2] else {
        panic!("not a vmList");
    };
    assert_eq!(vms.len(), 4);
    assert!(
        vms.iter()
            .all(|v| v.state == VmState::Unknown && v.discovery == Some(DiscoveryType::Unmanaged))
    );
}

#[test]
fn test_node_data_keeps_the_event_lines() {
    let Reply::NodeData(nd) = reply(seed!("node_data")) else {
        panic!("not node data");
    };
    assert_eq!(nd.tag, Some(378_617_663_756_949_861));
    let first = &nd.hosts[0].nodes[0];
    assert!(
        first
            .event
            .starts_with("BEGIN_EVENT_INFO\nTIME_tvsec=1547996884\n")
    );
    assert!(first.event.contains("\nREASON=NODE_SHUTDOWN\n"));
    assert_eq!(nd.hosts[0].nodes.len(), 3);
    // Written with character references, so a conforming parser keeps the lines too.
    let text = write_node_data(&nd);
    assert!(text.contains("event=\"BEGIN_EVENT_INFO&#10;TIME_tvsec=1547996884&#10;"));
    assert_eq!(reply(&text), Reply::NodeData(nd));
}

#[test]
fn test_empty_reply() {
    assert_eq!(reply(&write_empty_reply()), Reply::Empty);
    assert_eq!(reply("<VIO><Response/></VIO>"), Reply::Empty);
    // Framing with nothing inside is the empty reply too (the canonical form).
    assert_eq!(
        reply("<VIO><Response><needsAtt hsTag='5'></needsAtt></Response></VIO>"),
        Reply::Empty
    );
    assert_eq!(
        reply("<VIO><Response><quickQuery/><quickQuery></quickQuery></Response></VIO>"),
        Reply::Empty
    );
}

/// Every standard spelling of the same reply parses to the same value.
#[test]
fn test_standard_xml_spellings() {
    let plain = reply(seed!("na_doorbell_0x2"));
    let spellings = [
        // Declaration, BOM, comments, processing instructions, DOCTYPE without subset.
        "\u{feff}<?xml version='1.0' encoding='UTF-8' standalone='yes'?>\n<!DOCTYPE VIO>\n<!-- c -->\
         <VIO><?pi x?><Response>\n<!-- c --><needsAtt hsTag=\"1735421413719889094\">\
         <vmStatList><vmList machine_type='8408' model='E8E' serial='212424W'>\
         <vmStat uuid='61BE20F0-09A8-4753-B5E5-564F8A545ED5'><VM state='STARTED' shortMsg='0X2'/></vmStat>\
         </vmList></vmStatList></needsAtt></Response></VIO>\n<!-- trailing -->\n",
        // The seed's namespace as a bound prefix, entities and character references in
        // values, white space around attribute values' numbers, CDATA of white space.
        "<v:VIO xmlns:v='http://ausgsa.austin.ibm.com/projects/v/vios/schema/vioHADR2.00'>\
         <v:Response><![CDATA[  ]]>&#32;<v:needsAtt hsTag=' 1735421413719889094 '>\
         <v:vmStatList><v:vmList machine_type='&#56;408' model='E&#x38;E' serial='212424W'>\
         <v:vmStat uuid='61be20f0-09a8-4753-b5e5-564f8a545ed5'>\
         <v:VM state='STARTED' shortMsg='2' isFenced='0' xsi:nil='false' xmlns:xsi='x'></v:VM>\
         </v:vmStat></v:vmList></v:vmStatList></v:needsAtt></v:Response></v:VIO>",
    ];
    for text in spellings {
        assert_eq!(reply(text), plain, "{text}");
    }
}

#[test]
fn test_attribute_text_escaping() {
    let nasty = "a&b<c>d\"e'f\tg\nh\ri é 𝄞";
    let qq = QuickQuery {
        hosts: vec![ViosStatus {
            host: host(nasty, "42A", "x"),
            stats: vec![],
        }],
    };
    let text = write_quick_query(&qq);
    assert!(text.contains("machine_type=\"a&amp;b&lt;c&gt;d&quot;e&apos;f&#9;g&#10;h&#13;i é 𝄞\""));
    assert_eq!(reply(&text), Reply::QuickQuery(qq));
    // What XML cannot carry becomes U+FFFD.
    let qq = QuickQuery {
        hosts: vec![ViosStatus {
            host: host("a\u{0}b\u{1b}c\u{fffe}", "m", "s"),
            stats: vec![],
        }],
    };
    let Reply::QuickQuery(back) = reply(&write_quick_query(&qq)) else {
        panic!("not a QuickQuery");
    };
    assert_eq!(
        back.hosts[0].host.machine_type,
        "a\u{fffd}b\u{fffd}c\u{fffd}"
    );
}

#[test]
fn test_literal_line_ends_normalised() {
    let text = "<VIO><Response><nodeData><nodeList machine_type='a' model='b' serial='c'>\
                <node uuid='315ce56b-9ba0-46a1-b4bc-da6108574e7e' event='x\r\ny\rz&#13;'/>\
                </nodeList></nodeData></Response></VIO>";
    let Reply::NodeData(nd) = reply(text) else {
        panic!("not node data");
    };
    assert_eq!(nd.hosts[0].nodes[0].event, "x\ny\nz\r");
}

/// Each refusal names what is wrong.
#[test]
fn test_errors_name_element_attribute_and_value() {
    let cases: &[(&str, &str)] = &[
        (
            "<VIO><Response><quickQuery><viosStatList><viosStatus machine_type='a' model='b' serial='c'>\
             <viosStat uuid='315ce56b-9ba0-46a1-b4bc-da6108574e7e' state='SIDEWAYS' hmResponsive='1' \
             hmResponseSec='0' hasData='0' reason='0x0'/></viosStatus></viosStatList></quickQuery></Response></VIO>",
            "<viosStat state=\"SIDEWAYS\"> at byte",
        ),
        (
            "<VIO><Response><quickQuery><viosStatList><viosStatus machine_type='a' model='b' serial='c'>\
             <viosStat uuid='315ce56b-9ba0-46a1-b4bc-da6108574e7e' state='UP' hmResponsive='1' \
             hmResponseSec='0' hasData='0' reason='0x1ffffffff'/></viosStatus></viosStatList></quickQuery></Response></VIO>",
            "<viosStat reason=\"0x1ffffffff\">",
        ),
        (
            "<VIO><Response><quickQuery><viosStatList><viosStatus machine_type='a' model='b' serial='c'>\
             <viosStat uuid='315ce56b' state='UP' hmResponsive='1' \
             hmResponseSec='0' hasData='0' reason='0'/></viosStatus></viosStatList></quickQuery></Response></VIO>",
            "<viosStat uuid=\"315ce56b\">",
        ),
        (
            "<VIO><Response><quickQuery><viosStatList><viosStatus machine_type='a' model='b' serial='c'>\
             <viosStat uuid='315ce56b-9ba0-46a1-b4bc-da6108574e7e' state='UP' hmResponsive='yes' \
             hmResponseSec='0' hasData='0' reason='0'/></viosStatus></viosStatList></quickQuery></Response></VIO>",
            "<viosStat hmResponsive=\"yes\">",
        ),
        (
            "<VIO><Response><quickQuery><viosStatList><viosStatus model='b' serial='c'>\
             </viosStatus></viosStatList></quickQuery></Response></VIO>",
            "<viosStatus> at byte 41 has no attribute 'machine_type'",
        ),
        (
            "<VIO><Response><needsAtt><vmStatList><vmList machine_type='a' model='b' serial='c'>\
             <vmStat uuid='61be20f0-09a8-4753-b5e5-564f8a545ed5'><VM state='RUNNING'/></vmStat>\
             </vmList></vmStatList></needsAtt></Response></VIO>",
            "<VM state=\"RUNNING\">",
        ),
        (
            "<VIO><Response><needsAtt><vmStatList><vmList machine_type='a' model='b' serial='c'>\
             <vmStat uuid='61be20f0-09a8-4753-b5e5-564f8a545ed5'><VM state='STARTED' missedHb='-3'/></vmStat>\
             </vmList></vmStatList></needsAtt></Response></VIO>",
            "<VM missedHb=\"-3\">",
        ),
        (
            "<VIO><Response><needsAtt><vmStatList><vmList machine_type='a' model='b' serial='c'>\
             <vmStat uuid='61be20f0-09a8-4753-b5e5-564f8a545ed5'></vmStat>\
             </vmList></vmStatList></needsAtt></Response></VIO>",
            "<vmStat> at byte",
        ),
        (
            "<VIO><Response><needsAtt><vmStatList><vmList machine_type='a' model='b' serial='c'>\
             <vmStat uuid='61be20f0-09a8-4753-b5e5-564f8a545ed5'><VM state='STARTED'>\
             <discoveryInfo type='LOST'/></VM></vmStat></vmList></vmStatList></needsAtt></Response></VIO>",
            "<discoveryInfo type=\"LOST\">",
        ),
        (
            "<VIO><Response><needsAtt hsTag='1'/><needsAtt hsTag='2'/></Response></VIO>",
            "hsTag Some(2), the reply's first has Some(1)",
        ),
        (
            "<VIO><Response><needsAtt hsTag='12x'/></Response></VIO>",
            "<needsAtt hsTag=\"12x\">",
        ),
        (
            "<VIO><Response><needsAtt/><quickQuery/></Response></VIO>",
            "<quickQuery> at byte 26 in a reply of <needsAtt> elements",
        ),
        (
            "<VIO><Response><needsAtt><bogus/></needsAtt></Response></VIO>",
            "unexpected element <bogus> in <needsAtt>",
        ),
        (
            "<VIO><Response>hello</Response></VIO>",
            "unexpected text 'hello' in <Response>",
        ),
        (
            "<VIO version='3.00'><Request action_str='VIO_HS_QUICK_QUERY'/></VIO>",
            "<VIO version=\"3.00\">",
        ),
        (
            "<VIO><Request action_str='VIO_HS_REBOOT'/></VIO>",
            "<Request action_str=\"VIO_HS_REBOOT\">",
        ),
        (
            "<VIO><Request action_str='VIO_HS_NEEDS_ATTENTION' dataType='SOME_DATA'/></VIO>",
            "<Request dataType=\"SOME_DATA\">",
        ),
        (
            "<VIO><Request action_str='VIO_HS_ACKNOWLEDGE'/></VIO>",
            "has no attribute 'hsTag'",
        ),
        (
            "<VIO><Request action_str='VIO_HS_ACKNOWLEDGE' hsTag='99999999999999999999'/></VIO>",
            "<Request hsTag=\"99999999999999999999\">",
        ),
        (
            "<VIO xmlns='urn:other'><Response/></VIO>",
            "namespace 'urn:other'",
        ),
        ("<x:VIO><Response/></x:VIO>", "undeclared prefix 'x'"),
        ("<Other/>", "unexpected element <Other> in <document>"),
        ("", "no root element"),
        (
            "<VIO><Response/></VIO><VIO/>",
            "expected the end after </VIO>",
        ),
        (
            "<VIO><Response/><Response/></VIO>",
            "one <Request> or <Response> only",
        ),
        (
            "<VIO></VIO>",
            "<VIO> at byte 0 has no <Request or Response>",
        ),
        ("<VIO><Response></VIO>", "malformed XML"),
        ("<VIO><Response>", "malformed XML"),
        ("<VIO><Response a='1' a='2'/></VIO>", "malformed XML"),
        ("<VIO><Response a=1/></VIO>", "malformed XML"),
        (
            "<?xml version='1.0' encoding='ISO-8859-1'?><VIO/>",
            "encoding 'ISO-8859-1'",
        ),
        ("<?xml version='2.0'?><VIO/>", "version '2.0'"),
        (" <?xml version='1.0'?><VIO/>", "only at the start"),
        (
            "<!DOCTYPE VIO [<!ENTITY a 'aaaa'><!ENTITY b '&a;&a;&a;&a;'>]><VIO/>",
            "entity declarations are not accepted",
        ),
        (
            "<VIO><Response>&bogus;</Response></VIO>",
            "unknown entity '&bogus;'",
        ),
        (
            "<VIO><Response><nodeData><nodeList machine_type='a&bogus;' model='b' serial='c'/></nodeData></Response></VIO>",
            "in <nodeList machine_type>",
        ),
        (
            "<VIO><Response><nodeData><nodeList machine_type='a&#0;' model='b' serial='c'/></nodeData></Response></VIO>",
            "in <nodeList machine_type>",
        ),
        (
            "<VIO><Response><nodeData><nodeList machine_type='a<b' model='b' serial='c'/></nodeData></Response></VIO>",
            "malformed XML",
        ),
    ];
    for (text, expected) in cases {
        let message = err(text).to_string();
        assert!(
            message.contains(expected),
            "{text}\n  gave: {message}\n  expected to contain: {expected}"
        );
    }
    assert!(matches!(
        parse_document(b"<VIO>\xff</VIO>", &limits()),
        Err(XmlError::NotUtf8 { offset: 5 })
    ));
    // A value quoted in an error is cut.
    let long = "Z".repeat(10_000);
    let message = err(&format!("<VIO><Request action_str='{long}'/></VIO>")).to_string();
    assert!(message.len() < 400, "{message}");
    assert!(message.contains('…'));
}

#[test]
fn test_limits() {
    let small = XmlLimits {
        max_bytes: 200,
        max_depth: 4,
        max_elements: 6,
        max_attributes: 3,
    };
    let big = format!("<VIO><Response>{}</Response></VIO>", " ".repeat(300));
    assert_eq!(
        parse_document(big.as_bytes(), &small),
        Err(XmlError::TooLarge {
            len: big.len(),
            max: 200
        })
    );
    let deep =
        "<VIO><Response><needsAtt><vmStatList><vmList/></vmStatList></needsAtt></Response></VIO>";
    assert!(matches!(
        parse_document(deep.as_bytes(), &small),
        Err(XmlError::TooDeep { max: 4, .. })
    ));
    let many = "<VIO><Response><quickQuery/><quickQuery/><quickQuery/><quickQuery/><quickQuery/></Response></VIO>";
    assert!(matches!(
        parse_document(many.as_bytes(), &small),
        Err(XmlError::TooManyElements { max: 6, .. })
    ));
    let attrs = "<VIO a='1' b='2' c='3' d='4'><Response/></VIO>";
    assert!(matches!(
        parse_document(attrs.as_bytes(), &small),
        Err(XmlError::TooManyAttributes { max: 3, .. })
    ));
    // Attributes in their thousands never reach quick-xml's quadratic duplicate check.
    let many_attrs: String = (0..20_000).map(|i| format!(" a{i}='1'")).collect();
    let text = format!("<VIO{many_attrs}><Response/></VIO>");
    assert!(matches!(
        parse_document(text.as_bytes(), &limits()),
        Err(XmlError::TooManyAttributes { max: 32, .. })
    ));
}

// ---- the round trip on random values ----

/// SplitMix64: a small deterministic generator for the property below.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }

    fn len(&mut self, max: u64) -> usize {
        usize::try_from(self.below(max + 1)).unwrap()
    }

    /// Text of XML characters, with every character the writer must escape.
    fn text(&mut self) -> String {
        const ALPHABET: [char; 20] = [
            'a', 'Z', '0', ' ', '&', '<', '>', '"', '\'', '\t', '\n', '\r', ';', '#', 'é',
            '\u{fffd}', '𝄞', '\u{e000}', '=', '/',
        ];
        let n = self.len(12);
        (0..n)
            .map(|_| ALPHABET[usize::try_from(self.below(20)).unwrap()])
            .collect()
    }

    fn uuid(&mut self) -> Uuid {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next().to_le_bytes());
        b[8..].copy_from_slice(&self.next().to_le_bytes());
        Uuid(b)
    }

    fn i64(&mut self) -> i64 {
        i64::from_ne_bytes(self.next().to_ne_bytes())
    }

    fn u32(&mut self) -> u32 {
        u32::try_from(self.next() >> 32).unwrap()
    }

    fn host(&mut self) -> HostKey {
        HostKey {
            machine_type: self.text(),
            model: self.text(),
            serial: self.text(),
        }
    }

    fn vios_stat(&mut self) -> ViosStat {
        ViosStat {
            uuid: self.uuid(),
            state: if self.chance(2) {
                ViosState::Up
            } else {
                ViosState::Down
            },
            hm_responsive: self.chance(2),
            hm_response_sec: if self.chance(4) {
                self.next()
            } else {
                self.below(300)
            },
            has_data: self.chance(2),
            reason: self.u32(),
            sync_msg: self.u32(),
        }
    }

    fn vios_status(&mut self) -> ViosStatus {
        let n = self.len(3);
        ViosStatus {
            host: self.host(),
            stats: (0..n).map(|_| self.vios_stat()).collect(),
        }
    }

    fn vm_stat(&mut self) -> VmStat {
        let states = VmState::ALL;
        VmStat {
            uuid: self.uuid(),
            state: states[usize::try_from(self.below(states.len() as u64)).unwrap()],
            state_chg: self.chance(2),
            missed_hb: self.chance(2).then(|| self.next()),
            short_msg: self.chance(2).then(|| self.next()),
            missed_hm_entry: self.chance(3).then(|| self.uuid()),
            discovery: self
                .chance(2)
                .then(|| DiscoveryType::ALL[usize::try_from(self.below(4)).unwrap()]),
        }
    }

    fn reply(&mut self) -> Reply {
        match self.below(3) {
            0 => {
                let n = 1 + self.len(3);
                Reply::QuickQuery(QuickQuery {
                    hosts: (0..n).map(|_| self.vios_status()).collect(),
                })
            }
            1 => {
                let n = 1 + self.len(4);
                Reply::NeedsAttention(NeedsAttention {
                    tag: self.chance(2).then(|| self.i64()),
                    entries: (0..n)
                        .map(|_| {
                            if self.chance(3) {
                                NeedsAttEntry::Vios(self.vios_status())
                            } else {
                                let k = self.len(4);
                                NeedsAttEntry::Vms {
                                    host: self.host(),
                                    vms: (0..k).map(|_| self.vm_stat()).collect(),
                                }
                            }
                        })
                        .collect(),
                })
            }
            _ => {
                let n = 1 + self.len(3);
                Reply::NodeData(NodeData {
                    tag: self.chance(2).then(|| self.i64()),
                    hosts: (0..n)
                        .map(|_| {
                            let k = self.len(3);
                            NodeList {
                                host: self.host(),
                                nodes: (0..k)
                                    .map(|_| NodeEvent {
                                        uuid: self.uuid(),
                                        event: self.text(),
                                    })
                                    .collect(),
                            }
                        })
                        .collect(),
                })
            }
        }
    }

    fn request(&mut self) -> Request {
        let kind = match self.below(4) {
            0 => RequestKind::QuickQuery,
            1 => RequestKind::NeedsAttention {
                data_type: if self.chance(2) {
                    DataType::Global
                } else {
                    DataType::Local
                },
            },
            2 => RequestKind::Acknowledge { tag: self.i64() },
            _ => RequestKind::QueryNodeData,
        };
        Request {
            author: self.text(),
            title: self.text(),
            request: kind,
        }
    }
}

#[test]
fn test_round_trip_random_values() {
    let mut rng = Rng(0x5eed);
    for i in 0..3_000 {
        let doc = if rng.chance(4) {
            Document::Request(rng.request())
        } else {
            Document::Reply(rng.reply())
        };
        let text = write_document(&doc);
        let back = parse_document(text.as_bytes(), &limits())
            .unwrap_or_else(|e| panic!("case {i}: {e}\n{text}"));
        assert_eq!(back, doc, "case {i}\n{text}");
        // And the JSON form.
        let json = crate::hs::json::to_json(&match &doc {
            Document::Reply(r) => serde_json::to_value(r).unwrap(),
            Document::Request(r) => serde_json::to_value(r).unwrap(),
        })
        .unwrap();
        match &doc {
            Document::Reply(r) => {
                assert_eq!(
                    &crate::hs::json::from_json::<Reply>(&json).unwrap(),
                    r,
                    "{json}"
                );
            }
            Document::Request(r) => {
                assert_eq!(
                    &crate::hs::json::from_json::<Request>(&json).unwrap(),
                    r,
                    "{json}"
                );
            }
        }
    }
}
