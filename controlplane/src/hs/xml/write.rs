//! The writer: replies and requests in the seed's layout, byte for byte where the seed is
//! consistent (element and attribute names and order, line breaks, the seed's mix of `"`
//! and `'` quotes, hex as `0x00000040` / `0x28`).
//!
//! Attribute text is escaped for any conforming parser: `& < > " '` as entities, tab,
//! line feed and carriage return as character references (a conforming parser would turn
//! a literal line break in an attribute into a space), and a character XML 1.0 cannot carry
//! at all (NUL, other C0 controls, U+FFFE, U+FFFF) as U+FFFD.

use core::fmt::Write as _;

use hsdb::Uuid;

use super::{SEED_NAMESPACE, is_xml_char};
use crate::hs::{
    NeedsAttEntry, NeedsAttention, NodeData, QuickQuery, Reply, Request, RequestKind, ViosStat,
    ViosStatus, VmStat,
};

/// Bytes a reply needs per monitor / VM / host, to size the output once.
const PER_VIOS: usize = 190;
const PER_VM: usize = 170;
const PER_HOST: usize = 160;

/// `text` escaped for an attribute value (either quote style).
pub(crate) fn push_attr_text(out: &mut String, text: &str) {
    let plain =
        |c: char| is_xml_char(c) && !matches!(c, '&' | '<' | '>' | '"' | '\'' | '\t' | '\n' | '\r');
    if text.chars().all(plain) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if is_xml_char(c) => out.push(c),
            _ => out.push('\u{fffd}'),
        }
    }
}

/// ` name="text"`.
fn attr(out: &mut String, name: &str, text: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    push_attr_text(out, text);
    out.push('"');
}

/// ` name="<uuid>"`.
fn attr_uuid(out: &mut String, name: &str, uuid: &Uuid) {
    let text = uuid.to_text();
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    // The text form is ASCII hex and hyphens.
    out.extend(text.iter().map(|&b| char::from(b)));
    out.push('"');
}

/// ` name="value"` or ` name='value'` for a value that needs no escaping (numbers,
/// fixed words): the seed's quote for that attribute.
fn attr_raw(out: &mut String, name: &str, quote: char, value: impl core::fmt::Display) {
    // Writing into a String cannot fail.
    let _ = write!(out, " {name}={quote}{value}{quote}");
}

fn bool_digit(b: bool) -> u8 {
    u8::from(b)
}

/// `machine_type="…" model="…" serial="…"` of a host.
fn host_attrs(out: &mut String, host: &crate::hs::HostKey) {
    attr(out, "machine_type", &host.machine_type);
    attr(out, "model", &host.model);
    attr(out, "serial", &host.serial);
}

/// `<viosStat … />` (seed 004 L12284-12285: its quote of each attribute).
fn vios_stat(out: &mut String, s: &ViosStat) {
    out.push_str("<viosStat");
    attr_uuid(out, "uuid", &s.uuid);
    attr_raw(out, "state", '"', s.state.as_str());
    attr_raw(out, "hmResponsive", '"', bool_digit(s.hm_responsive));
    attr_raw(out, "hmResponseSec", '\'', s.hm_response_sec);
    attr_raw(out, "hasData", '\'', bool_digit(s.has_data));
    attr_raw(out, "reason", '\'', format_args!("0x{:08x}", s.reason));
    attr_raw(out, "syncMsg", '"', s.sync_msg);
    out.push_str(" />\n");
}

/// `<viosStatList><viosStatus …>` … `</viosStatus></viosStatList>`.
fn vios_status(out: &mut String, status: &ViosStatus) {
    out.push_str("<viosStatList><viosStatus");
    host_attrs(out, &status.host);
    out.push_str(">\n");
    for s in &status.stats {
        vios_stat(out, s);
    }
    out.push_str("</viosStatus></viosStatList>\n");
}

/// `<vmStat uuid><VM …>[<discoveryInfo/>]</VM></vmStat>` (seed 004 L13016-13037: the
/// space before `>` and the line breaks are the seed's).
fn vm_stat(out: &mut String, vm: &VmStat) {
    out.push_str("<vmStat");
    attr_uuid(out, "uuid", &vm.uuid);
    out.push_str("><VM");
    attr_raw(out, "state", '"', vm.state.as_str());
    if vm.state_chg {
        attr_raw(out, "stateChg", '\'', 1);
    }
    if let Some(missed) = vm.missed_hb {
        attr_raw(out, "missedHb", '\'', missed);
    }
    if let Some(short) = vm.short_msg {
        attr_raw(out, "shortMsg", '"', format_args!("0x{short:x}"));
    }
    if let Some(hm) = &vm.missed_hm_entry {
        attr_uuid(out, "missedHMEntry", hm);
    }
    out.push_str(" >\n");
    if let Some(d) = vm.discovery {
        out.push_str("<discoveryInfo");
        attr_raw(out, "type", '\'', d.as_str());
        out.push_str("/>\n");
    }
    out.push_str("</VM>\n</vmStat>\n");
}

/// `<needsAtt[ hsTag]>`.
fn needs_att_open(out: &mut String, tag: Option<i64>) {
    out.push_str("<needsAtt");
    if let Some(tag) = tag {
        attr_raw(out, "hsTag", '"', tag);
    }
    out.push_str(">\n");
}

fn open_reply(capacity: usize) -> String {
    let mut out = String::with_capacity(capacity + 64);
    out.push_str("<VIO><Response>\n");
    out
}

fn close_reply(out: &mut String) {
    out.push_str("</Response></VIO>\n");
}

/// A QuickQuery reply (seed 004 L12281-12298).
pub fn write_quick_query(qq: &QuickQuery) -> String {
    let monitors: usize = qq.hosts.iter().map(|h| h.stats.len()).sum();
    let mut out = open_reply(qq.hosts.len() * PER_HOST + monitors * PER_VIOS);
    for host in &qq.hosts {
        out.push_str("<quickQuery>\n");
        vios_status(&mut out, host);
        out.push_str("</quickQuery>\n");
    }
    close_reply(&mut out);
    out
}

/// A NeedsAttention reply (seed 004 L12600-12607, L13016-13037, L7126-7144).
pub fn write_needs_attention(na: &NeedsAttention) -> String {
    let vms: usize = na
        .entries
        .iter()
        .map(|e| match e {
            NeedsAttEntry::Vms { vms, .. } => vms.len() * PER_VM,
            NeedsAttEntry::Vios(s) => s.stats.len() * PER_VIOS,
        })
        .sum();
    let mut out = open_reply(na.entries.len() * PER_HOST + vms);
    for entry in &na.entries {
        needs_att_open(&mut out, na.tag);
        match entry {
            NeedsAttEntry::Vms { host, vms } => {
                out.push_str("<vmStatList>\n<vmList");
                host_attrs(&mut out, host);
                out.push_str(">\n");
                for vm in vms {
                    vm_stat(&mut out, vm);
                }
                out.push_str("</vmList>\n</vmStatList>\n");
            }
            NeedsAttEntry::Vios(status) => vios_status(&mut out, status),
        }
        out.push_str("</needsAtt>\n");
    }
    close_reply(&mut out);
    out
}

/// A node-data reply (seed 004 L7609-7655): one `<nodeData hsTag>` per host.
pub fn write_node_data(nd: &NodeData) -> String {
    let text: usize = nd
        .hosts
        .iter()
        .flat_map(|h| h.nodes.iter())
        .map(|n| n.event.len() + 64)
        .sum();
    let mut out = open_reply(nd.hosts.len() * PER_HOST + text);
    for host in &nd.hosts {
        out.push_str("<nodeData");
        if let Some(tag) = nd.tag {
            attr_raw(&mut out, "hsTag", '"', tag);
        }
        out.push_str(">\n<nodeList");
        host_attrs(&mut out, &host.host);
        out.push_str(">\n");
        for node in &host.nodes {
            out.push_str("<node");
            attr_uuid(&mut out, "uuid", &node.uuid);
            attr(&mut out, "event", &node.event);
            out.push_str("/>\n");
        }
        out.push_str("</nodeList>\n</nodeData>\n");
    }
    close_reply(&mut out);
    out
}

/// The empty reply (to an acknowledgement, seed 004 L7578).
pub fn write_empty_reply() -> String {
    let mut out = open_reply(0);
    close_reply(&mut out);
    out
}

/// Any reply.
pub fn write_reply(reply: &Reply) -> String {
    match reply {
        Reply::QuickQuery(qq) => write_quick_query(qq),
        Reply::NeedsAttention(na) => write_needs_attention(na),
        Reply::NodeData(nd) => write_node_data(nd),
        Reply::Empty => write_empty_reply(),
    }
}

/// A request (seed 004 L5256-5261, L13567-13572, L7571-7575, L7239-7243).
pub fn write_request(req: &Request) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version=\"1.0\"?>\n<VIO");
    attr(&mut out, "xmlns", SEED_NAMESPACE);
    attr(&mut out, "version", super::SEED_VERSION);
    attr(&mut out, "author", &req.author);
    attr(&mut out, "title", &req.title);
    out.push_str(">\n  <Request");
    attr(&mut out, "action_str", req.request.action_str());
    match req.request {
        RequestKind::NeedsAttention { data_type } => {
            attr(&mut out, "dataType", data_type.as_str());
        }
        RequestKind::Acknowledge { tag } => attr_raw(&mut out, "hsTag", '"', tag),
        RequestKind::QuickQuery | RequestKind::QueryNodeData => {}
    }
    out.push_str("/>\n</VIO>\n");
    out
}
