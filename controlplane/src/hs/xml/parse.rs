//! The parser: the seed's requests and replies from untrusted bytes.
//!
//! Standard XML is accepted (quick-xml underneath, namespace-aware): an optional XML
//! declaration (UTF-8 only), comments and processing instructions anywhere, a DOCTYPE
//! without internal subset, either quote style, any white space between elements, the
//! predefined entities and character references, the seed's namespace as default or bound
//! to a prefix. Refused with an [`XmlError`] naming the element, the attribute and the bad
//! value: anything else. The parser is schema-directed and streaming: no tree is built,
//! every element it keeps becomes model data, so memory follows the input, which is capped
//! ([`XmlLimits`]), as are nesting depth, the number of elements and the attributes per
//! element.
//!
//! Unknown attributes are ignored (the seed's schema has some we do not use: `isFenced`,
//! `versionConflict`, seed 004 L12518-12538), as are namespace-qualified ones; unknown
//! elements are refused.

use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

use hsdb::{Uuid, VmState};

use super::error::{XmlError, excerpt, message};
use super::{Document, SEED_NAMESPACE, SEED_VERSION, XmlLimits, is_xml_char};
use crate::hs::{
    DataType, DiscoveryType, HostKey, NeedsAttEntry, NeedsAttention, NodeData, NodeEvent, NodeList,
    QuickQuery, Reply, Request, RequestKind, ViosStat, ViosState, ViosStatus, VmStat,
};

type Result<T> = core::result::Result<T, XmlError>;

/// A start tag as the schema code sees it: local name, unprefixed attributes unescaped.
struct Elem {
    name: String,
    attrs: Vec<(String, String)>,
    offset: u64,
}

impl Elem {
    fn get(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, element: &'static str, attribute: &'static str) -> Result<&str> {
        self.get(attribute).ok_or(XmlError::MissingAttribute {
            offset: self.offset,
            element,
            attribute,
        })
    }

    fn bad(
        &self,
        element: &'static str,
        attribute: &'static str,
        value: &str,
        expected: &'static str,
    ) -> XmlError {
        XmlError::BadValue {
            offset: self.offset,
            element,
            attribute,
            value: excerpt(value),
            expected,
        }
    }

    fn unexpected(&self, parent: &'static str, expected: &'static str) -> XmlError {
        XmlError::UnexpectedElement {
            offset: self.offset,
            element: excerpt(&self.name),
            parent,
            expected,
        }
    }

    // Typed attribute readers: `element` names the element in errors.

    fn uuid(&self, element: &'static str, attribute: &'static str) -> Result<Uuid> {
        let text = self.required(element, attribute)?;
        parse_uuid(text).ok_or_else(|| {
            self.bad(
                element,
                attribute,
                text,
                "a UUID, 8-4-4-4-12 hexadecimal digits",
            )
        })
    }

    fn opt_uuid(&self, element: &'static str, attribute: &'static str) -> Result<Option<Uuid>> {
        match self.get(attribute) {
            None => Ok(None),
            Some(text) => parse_uuid(text).map(Some).ok_or_else(|| {
                self.bad(
                    element,
                    attribute,
                    text,
                    "a UUID, 8-4-4-4-12 hexadecimal digits",
                )
            }),
        }
    }

    fn flag(&self, element: &'static str, attribute: &'static str) -> Result<Option<bool>> {
        match self.get(attribute) {
            None => Ok(None),
            Some(text) => match text.trim_matches(is_xml_space) {
                "1" | "true" => Ok(Some(true)),
                "0" | "false" => Ok(Some(false)),
                _ => Err(self.bad(element, attribute, text, "0, 1, true or false")),
            },
        }
    }

    fn required_flag(&self, element: &'static str, attribute: &'static str) -> Result<bool> {
        self.flag(element, attribute)?
            .ok_or(XmlError::MissingAttribute {
                offset: self.offset,
                element,
                attribute,
            })
    }

    fn decimal(&self, element: &'static str, attribute: &'static str) -> Result<Option<u64>> {
        match self.get(attribute) {
            None => Ok(None),
            Some(text) => parse_decimal(text).map(Some).ok_or_else(|| {
                self.bad(
                    element,
                    attribute,
                    text,
                    "a decimal integer 0..=18446744073709551615",
                )
            }),
        }
    }

    fn hex(&self, element: &'static str, attribute: &'static str) -> Result<Option<u64>> {
        match self.get(attribute) {
            None => Ok(None),
            Some(text) => parse_number(text).map(Some).ok_or_else(|| {
                self.bad(
                    element,
                    attribute,
                    text,
                    "0x and 1 to 16 hexadecimal digits, or a decimal integer",
                )
            }),
        }
    }

    fn tag(&self, element: &'static str) -> Result<Option<i64>> {
        match self.get("hsTag") {
            None => Ok(None),
            Some(text) => text
                .trim_matches(is_xml_space)
                .parse::<i64>()
                .map(Some)
                .map_err(|_| self.bad(element, "hsTag", text, "a signed 64-bit decimal integer")),
        }
    }

    fn host(&self, element: &'static str) -> Result<HostKey> {
        Ok(HostKey {
            machine_type: self.required(element, "machine_type")?.to_owned(),
            model: self.required(element, "model")?.to_owned(),
            serial: self.required(element, "serial")?.to_owned(),
        })
    }
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn parse_uuid(text: &str) -> Option<Uuid> {
    Uuid::parse(text.trim_matches(is_xml_space).as_bytes()).ok()
}

fn parse_decimal(text: &str) -> Option<u64> {
    let t = text.trim_matches(is_xml_space);
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// `0x28`, `0X00000040` or decimal.
fn parse_number(text: &str) -> Option<u64> {
    let t = text.trim_matches(is_xml_space);
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => {
            if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u64::from_str_radix(hex, 16).ok()
        }
        None => parse_decimal(t),
    }
}

/// What the cursor yields.
enum Item {
    Start(Elem),
    End,
    Eof,
}

/// The event stream, with the limits enforced and everything that is not an element
/// (white space, comments, processing instructions, the declaration) consumed.
struct Cursor<'i> {
    reader: NsReader<&'i [u8]>,
    limits: XmlLimits,
    depth: usize,
    elements: usize,
    root_seen: bool,
    first_event: bool,
}

impl<'i> Cursor<'i> {
    fn new(input: &'i str, limits: XmlLimits) -> Cursor<'i> {
        let mut reader = NsReader::from_str(input);
        let config = reader.config_mut();
        config.expand_empty_elements = true;
        config.check_end_names = true;
        config.check_comments = true;
        config.trim_text(false);
        Cursor {
            reader,
            limits,
            depth: 0,
            elements: 0,
            root_seen: false,
            first_event: true,
        }
    }

    fn syntax(&self, err: impl core::fmt::Display) -> XmlError {
        XmlError::Syntax {
            offset: self.reader.error_position(),
            message: message(&err.to_string()),
        }
    }

    fn text_error(&self, parent: &str, text: &str) -> XmlError {
        XmlError::UnexpectedText {
            offset: self.reader.buffer_position(),
            parent: parent.to_owned(),
            text: excerpt(text),
        }
    }

    /// The next element start or end; `parent` names the open element for errors.
    fn next(&mut self, parent: &'static str) -> Result<Item> {
        loop {
            let offset = self.reader.buffer_position();
            let first = core::mem::replace(&mut self.first_event, false);
            let (ns, event) = match self.reader.read_resolved_event() {
                Ok((ns, event)) => (owned_ns(&ns), event),
                Err(e) => return Err(self.syntax(e)),
            };
            match event {
                Event::Decl(decl) => {
                    if !first {
                        return Err(XmlError::Syntax {
                            offset,
                            message: "an XML declaration is allowed only at the start".into(),
                        });
                    }
                    check_decl(&decl, offset)?;
                }
                Event::DocType(text) => {
                    if self.root_seen {
                        return Err(XmlError::Syntax {
                            offset,
                            message: "DOCTYPE after the root element".into(),
                        });
                    }
                    if text.contains(&b'[') {
                        return Err(XmlError::Doctype { offset });
                    }
                }
                Event::PI(_) | Event::Comment(_) => {}
                Event::Text(text) => {
                    let text = text.decode().map_err(|e| self.syntax(e))?;
                    if !text.chars().all(is_xml_space) {
                        return Err(self.text_error(parent, &text));
                    }
                }
                Event::CData(text) => {
                    let text = text.decode().map_err(|e| self.syntax(e))?;
                    if !text.chars().all(is_xml_space) {
                        return Err(self.text_error(parent, &text));
                    }
                }
                Event::GeneralRef(r) => {
                    let name = r.decode().map_err(|e| self.syntax(e))?.into_owned();
                    match r.resolve_char_ref().map_err(|e| self.syntax(e))? {
                        Some(c) if is_xml_space(c) => {}
                        Some(c) => return Err(self.text_error(parent, &c.to_string())),
                        None if matches!(name.as_str(), "lt" | "gt" | "amp" | "apos" | "quot") => {
                            return Err(self.text_error(parent, &format!("&{name};")));
                        }
                        None => {
                            return Err(XmlError::UnknownEntity {
                                offset,
                                name: excerpt(&name),
                            });
                        }
                    }
                }
                Event::Start(start) => return self.start(&start, ns, offset).map(Item::Start),
                Event::Empty(_) => {
                    // `expand_empty_elements` turns these into Start + End.
                    return Err(XmlError::Syntax {
                        offset,
                        message: "empty element not expanded".into(),
                    });
                }
                Event::End(_) => {
                    self.depth = self.depth.saturating_sub(1);
                    return Ok(Item::End);
                }
                Event::Eof => {
                    if self.depth > 0 {
                        return Err(XmlError::Syntax {
                            offset,
                            message: format!("document ends inside <{parent}>"),
                        });
                    }
                    return Ok(Item::Eof);
                }
            }
        }
    }

    fn start(&mut self, start: &BytesStart<'_>, ns: Ns, offset: u64) -> Result<Elem> {
        let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
        match ns {
            Ns::Unbound => {}
            Ns::Bound(ref uri) if uri == SEED_NAMESPACE => {}
            Ns::Bound(uri) => {
                return Err(XmlError::Namespace {
                    offset,
                    element: excerpt(&name),
                    namespace: excerpt(&uri),
                    expected: SEED_NAMESPACE,
                });
            }
            Ns::Unknown(prefix) => {
                return Err(XmlError::Namespace {
                    offset,
                    element: excerpt(&name),
                    namespace: format!("undeclared prefix '{}'", excerpt(&prefix)),
                    expected: SEED_NAMESPACE,
                });
            }
        }
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(XmlError::TooDeep {
                offset,
                element: excerpt(&name),
                max: self.limits.max_depth,
            });
        }
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(XmlError::TooManyElements {
                offset,
                max: self.limits.max_elements,
            });
        }
        self.root_seen = true;
        let mut attrs = Vec::new();
        for (n, attr) in start.attributes().enumerate() {
            if n >= self.limits.max_attributes {
                return Err(XmlError::TooManyAttributes {
                    offset,
                    element: excerpt(&name),
                    max: self.limits.max_attributes,
                });
            }
            let attr = attr.map_err(|e| XmlError::Syntax {
                offset,
                message: message(&format!("in <{name}>: {e}")),
            })?;
            let key = attr.key.as_ref();
            if key == b"xmlns" || key.contains(&b':') {
                continue;
            }
            let key = String::from_utf8_lossy(key).into_owned();
            let raw = core::str::from_utf8(&attr.value).map_err(|_| XmlError::NotUtf8 {
                offset: usize::try_from(offset).unwrap_or(usize::MAX),
            })?;
            let value = attr_value(raw).map_err(|why| XmlError::Syntax {
                offset,
                message: message(&format!("in <{name} {key}>: {why}")),
            })?;
            attrs.push((key, value));
        }
        Ok(Elem {
            name,
            attrs,
            offset,
        })
    }
}

/// The namespace of an element, owned (the resolver's borrow ends with the event).
enum Ns {
    Unbound,
    Bound(String),
    Unknown(String),
}

fn owned_ns(ns: &ResolveResult<'_>) -> Ns {
    match ns {
        ResolveResult::Unbound => Ns::Unbound,
        ResolveResult::Bound(uri) => Ns::Bound(String::from_utf8_lossy(uri.as_ref()).into_owned()),
        ResolveResult::Unknown(prefix) => Ns::Unknown(String::from_utf8_lossy(prefix).into_owned()),
    }
}

/// An attribute's raw text as its value: line ends normalised (CR LF and CR to LF, as an
/// XML processor does before parsing), references resolved, every character one XML
/// allows. Literal line breaks are kept, not turned into spaces: the seed writes its
/// multi-line CAA event texts that way (seed 004 L7609-7655).
fn attr_value(raw: &str) -> core::result::Result<String, String> {
    if raw.contains('<') {
        return Err("'<' in an attribute value".into());
    }
    let normalised;
    let raw = if raw.contains('\r') {
        normalised = raw.replace("\r\n", "\n").replace('\r', "\n");
        normalised.as_str()
    } else {
        raw
    };
    let value = quick_xml::escape::unescape(raw).map_err(|e| e.to_string())?;
    if let Some(c) = value.chars().find(|&c| !is_xml_char(c)) {
        return Err(format!(
            "character U+{:04X} is not allowed in XML",
            u32::from(c)
        ));
    }
    Ok(value.into_owned())
}

fn check_decl(decl: &quick_xml::events::BytesDecl<'_>, offset: u64) -> Result<()> {
    let version = decl.version().map_err(|e| XmlError::Syntax {
        offset,
        message: message(&e.to_string()),
    })?;
    let version = String::from_utf8_lossy(&version);
    if version != "1.0" && version != "1.1" {
        return Err(XmlError::XmlVersion {
            version: excerpt(&version),
        });
    }
    if let Some(encoding) = decl.encoding() {
        let encoding = encoding.map_err(|e| XmlError::Syntax {
            offset,
            message: message(&e.to_string()),
        })?;
        let encoding = String::from_utf8_lossy(&encoding);
        if !encoding.eq_ignore_ascii_case("utf-8") && !encoding.eq_ignore_ascii_case("utf8") {
            return Err(XmlError::Encoding {
                encoding: excerpt(&encoding),
            });
        }
    }
    Ok(())
}

/// Calls `f` for each child element of the element just opened, until its end.
fn children(
    cur: &mut Cursor<'_>,
    parent: &'static str,
    mut f: impl FnMut(&mut Cursor<'_>, Elem) -> Result<()>,
) -> Result<()> {
    loop {
        match cur.next(parent)? {
            Item::Start(e) => f(cur, e)?,
            Item::End => return Ok(()),
            // `next` refuses an end of document inside an element.
            Item::Eof => {
                return Err(XmlError::Syntax {
                    offset: cur.reader.buffer_position(),
                    message: format!("document ends inside <{parent}>"),
                });
            }
        }
    }
}

/// The element just opened has no child element.
fn leaf(cur: &mut Cursor<'_>, name: &'static str) -> Result<()> {
    children(
        cur,
        name,
        |_, e| Err(e.unexpected(name, "no child element")),
    )
}

/// Parse a request or a reply.
pub fn parse_document(input: &[u8], limits: &XmlLimits) -> Result<Document> {
    if input.len() > limits.max_bytes {
        return Err(XmlError::TooLarge {
            len: input.len(),
            max: limits.max_bytes,
        });
    }
    let input = input.strip_prefix(b"\xef\xbb\xbf").unwrap_or(input);
    let text = core::str::from_utf8(input).map_err(|e| XmlError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let mut cur = Cursor::new(text, *limits);
    let root = match cur.next("document")? {
        Item::Start(e) => e,
        Item::End | Item::Eof => return Err(XmlError::NoRoot),
    };
    if root.name != "VIO" {
        return Err(root.unexpected("document", "<VIO>"));
    }
    if let Some(version) = root.get("version")
        && version.trim_matches(is_xml_space) != SEED_VERSION
    {
        return Err(root.bad("VIO", "version", version, "2.00"));
    }
    let mut doc = None;
    children(&mut cur, "VIO", |cur, e| {
        if doc.is_some() {
            return Err(e.unexpected("VIO", "one <Request> or <Response> only"));
        }
        doc = Some(match e.name.as_str() {
            "Request" => Document::Request(request(cur, &root, &e)?),
            "Response" => Document::Reply(response(cur)?),
            _ => return Err(e.unexpected("VIO", "<Request> or <Response>")),
        });
        Ok(())
    })?;
    let doc = doc.ok_or(XmlError::MissingElement {
        offset: root.offset,
        parent: "VIO",
        element: "Request or Response",
    })?;
    match cur.next("document")? {
        Item::Eof => Ok(doc),
        Item::Start(e) => Err(e.unexpected("document", "the end after </VIO>")),
        Item::End => Err(XmlError::Syntax {
            offset: cur.reader.buffer_position(),
            message: "end tag after </VIO>".into(),
        }),
    }
}

fn request(cur: &mut Cursor<'_>, root: &Elem, e: &Elem) -> Result<Request> {
    const EL: &str = "Request";
    let action = e.required(EL, "action_str")?;
    let kind = match action.trim_matches(is_xml_space) {
        "VIO_HS_QUICK_QUERY" => RequestKind::QuickQuery,
        "VIO_HS_NEEDS_ATTENTION" => {
            let data_type = match e.get("dataType").map(|t| t.trim_matches(is_xml_space)) {
                None | Some("GLOBAL_DATA") => DataType::Global,
                Some("LOCAL_DATA") => DataType::Local,
                Some(_) => {
                    return Err(e.bad(
                        EL,
                        "dataType",
                        e.get("dataType").unwrap_or_default(),
                        "GLOBAL_DATA or LOCAL_DATA",
                    ));
                }
            };
            RequestKind::NeedsAttention { data_type }
        }
        "VIO_HS_ACKNOWLEDGE" => RequestKind::Acknowledge {
            tag: e.tag(EL)?.ok_or(XmlError::MissingAttribute {
                offset: e.offset,
                element: EL,
                attribute: "hsTag",
            })?,
        },
        "VIO_HS_QUERY_NODE_DATA" => RequestKind::QueryNodeData,
        _ => {
            return Err(e.bad(
                EL,
                "action_str",
                action,
                "VIO_HS_QUICK_QUERY, VIO_HS_NEEDS_ATTENTION, VIO_HS_ACKNOWLEDGE or VIO_HS_QUERY_NODE_DATA",
            ));
        }
    };
    leaf(cur, EL)?;
    Ok(Request {
        author: root.get("author").unwrap_or_default().to_owned(),
        title: root.get("title").unwrap_or_default().to_owned(),
        request: kind,
    })
}

/// The kind of reply the first child of `<Response>` fixed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    QuickQuery,
    NeedsAtt,
    NodeData,
}

impl Kind {
    fn element(self) -> &'static str {
        match self {
            Kind::QuickQuery => "quickQuery",
            Kind::NeedsAtt => "needsAtt",
            Kind::NodeData => "nodeData",
        }
    }
}

fn response(cur: &mut Cursor<'_>) -> Result<Reply> {
    let mut kind: Option<Kind> = None;
    // The tag of the first needsAtt / nodeData, once seen.
    let mut tag: Option<Option<i64>> = None;
    let mut qq = QuickQuery::default();
    let mut na = NeedsAttention::default();
    let mut nd = NodeData::default();
    children(cur, "Response", |cur, e| {
        let this = match e.name.as_str() {
            "quickQuery" => Kind::QuickQuery,
            "needsAtt" => Kind::NeedsAtt,
            "nodeData" => Kind::NodeData,
            _ => {
                return Err(e.unexpected("Response", "<quickQuery>, <needsAtt> or <nodeData>"));
            }
        };
        match kind {
            Some(first) if first != this => {
                return Err(XmlError::MixedReply {
                    offset: e.offset,
                    first: first.element(),
                    element: this.element(),
                });
            }
            _ => kind = Some(this),
        }
        if this != Kind::QuickQuery {
            let found = e.tag(this.element())?;
            match tag {
                Some(first) if first != found => {
                    return Err(XmlError::TagMismatch {
                        offset: e.offset,
                        element: this.element(),
                        first,
                        found,
                    });
                }
                _ => tag = Some(found),
            }
        }
        match this {
            Kind::QuickQuery => quick_query(cur, &mut qq),
            Kind::NeedsAtt => needs_att(cur, &mut na.entries),
            Kind::NodeData => node_data(cur, &mut nd.hosts),
        }
    })?;
    let tag = tag.flatten();
    // A reply with nothing in it is the empty reply, whatever elements framed the nothing:
    // the canonical form, so that writing and parsing again gives the same value.
    Ok(match kind {
        Some(Kind::QuickQuery) if !qq.hosts.is_empty() => Reply::QuickQuery(qq),
        Some(Kind::NeedsAtt) if !na.entries.is_empty() => {
            na.tag = tag;
            Reply::NeedsAttention(na)
        }
        Some(Kind::NodeData) if !nd.hosts.is_empty() => {
            nd.tag = tag;
            Reply::NodeData(nd)
        }
        _ => Reply::Empty,
    })
}

fn quick_query(cur: &mut Cursor<'_>, qq: &mut QuickQuery) -> Result<()> {
    children(cur, "quickQuery", |cur, e| {
        if e.name != "viosStatList" {
            return Err(e.unexpected("quickQuery", "<viosStatList>"));
        }
        vios_stat_list(cur, &mut qq.hosts)
    })
}

fn vios_stat_list(cur: &mut Cursor<'_>, out: &mut Vec<ViosStatus>) -> Result<()> {
    children(cur, "viosStatList", |cur, e| {
        if e.name != "viosStatus" {
            return Err(e.unexpected("viosStatList", "<viosStatus>"));
        }
        let mut status = ViosStatus {
            host: e.host("viosStatus")?,
            stats: Vec::new(),
        };
        children(cur, "viosStatus", |cur, e| {
            if e.name != "viosStat" {
                return Err(e.unexpected("viosStatus", "<viosStat>"));
            }
            status.stats.push(vios_stat(&e)?);
            leaf(cur, "viosStat")
        })?;
        out.push(status);
        Ok(())
    })
}

fn vios_stat(e: &Elem) -> Result<ViosStat> {
    const EL: &str = "viosStat";
    let state_text = e.required(EL, "state")?;
    let state = match state_text.trim_matches(is_xml_space) {
        "UP" => ViosState::Up,
        "DOWN" => ViosState::Down,
        _ => return Err(e.bad(EL, "state", state_text, "UP or DOWN")),
    };
    let reason = e.hex(EL, "reason")?.ok_or(XmlError::MissingAttribute {
        offset: e.offset,
        element: EL,
        attribute: "reason",
    })?;
    let reason = u32::try_from(reason).map_err(|_| {
        e.bad(
            EL,
            "reason",
            e.get("reason").unwrap_or_default(),
            "a 32-bit code, 0x00000000..=0xffffffff",
        )
    })?;
    let sync = e.decimal(EL, "syncMsg")?.unwrap_or(0);
    let sync = u32::try_from(sync).map_err(|_| {
        e.bad(
            EL,
            "syncMsg",
            e.get("syncMsg").unwrap_or_default(),
            "0..=4294967295",
        )
    })?;
    Ok(ViosStat {
        uuid: e.uuid(EL, "uuid")?,
        state,
        hm_responsive: e.required_flag(EL, "hmResponsive")?,
        hm_response_sec: e
            .decimal(EL, "hmResponseSec")?
            .ok_or(XmlError::MissingAttribute {
                offset: e.offset,
                element: EL,
                attribute: "hmResponseSec",
            })?,
        has_data: e.required_flag(EL, "hasData")?,
        reason,
        sync_msg: sync,
    })
}

fn needs_att(cur: &mut Cursor<'_>, entries: &mut Vec<NeedsAttEntry>) -> Result<()> {
    children(cur, "needsAtt", |cur, e| match e.name.as_str() {
        "vmStatList" => children(cur, "vmStatList", |cur, e| {
            if e.name != "vmList" {
                return Err(e.unexpected("vmStatList", "<vmList>"));
            }
            let host = e.host("vmList")?;
            let mut vms = Vec::new();
            children(cur, "vmList", |cur, e| {
                if e.name != "vmStat" {
                    return Err(e.unexpected("vmList", "<vmStat>"));
                }
                vms.push(vm_stat(cur, &e)?);
                Ok(())
            })?;
            entries.push(NeedsAttEntry::Vms { host, vms });
            Ok(())
        }),
        "viosStatList" => {
            let mut hosts = Vec::new();
            vios_stat_list(cur, &mut hosts)?;
            entries.extend(hosts.into_iter().map(NeedsAttEntry::Vios));
            Ok(())
        }
        _ => Err(e.unexpected("needsAtt", "<vmStatList> or <viosStatList>")),
    })
}

fn vm_stat(cur: &mut Cursor<'_>, e: &Elem) -> Result<VmStat> {
    let uuid = e.uuid("vmStat", "uuid")?;
    let mut vm = None;
    children(cur, "vmStat", |cur, e| {
        if e.name != "VM" {
            return Err(e.unexpected("vmStat", "<VM>"));
        }
        if vm.is_some() {
            return Err(e.unexpected("vmStat", "one <VM> only"));
        }
        vm = Some(vm_element(cur, &e, uuid)?);
        Ok(())
    })?;
    vm.ok_or(XmlError::MissingElement {
        offset: e.offset,
        parent: "vmStat",
        element: "VM",
    })
}

fn vm_element(cur: &mut Cursor<'_>, e: &Elem, uuid: Uuid) -> Result<VmStat> {
    const EL: &str = "VM";
    let state_text = e.required(EL, "state")?;
    let state = VmState::from_text(state_text.trim_matches(is_xml_space)).ok_or_else(|| {
        e.bad(
            EL,
            "state",
            state_text,
            "ADDED, STARTING, STARTED, STOPPING, STOPPED, REMOVING, SUSPENDED or UNKNOWN",
        )
    })?;
    let mut vm = VmStat {
        uuid,
        state,
        state_chg: e.flag(EL, "stateChg")?.unwrap_or(false),
        missed_hb: e.decimal(EL, "missedHb")?,
        short_msg: e.hex(EL, "shortMsg")?,
        missed_hm_entry: e.opt_uuid(EL, "missedHMEntry")?,
        discovery: None,
    };
    children(cur, EL, |cur, e| {
        if e.name != "discoveryInfo" {
            return Err(e.unexpected(EL, "<discoveryInfo>"));
        }
        if vm.discovery.is_some() {
            return Err(e.unexpected(EL, "one <discoveryInfo> only"));
        }
        let text = e.required("discoveryInfo", "type")?;
        vm.discovery = Some(
            DiscoveryType::from_text(text.trim_matches(is_xml_space)).ok_or_else(|| {
                e.bad(
                    "discoveryInfo",
                    "type",
                    text,
                    "MOVED, MANAGED, UNMANAGED or CANNOT_MANAGE",
                )
            })?,
        );
        leaf(cur, "discoveryInfo")
    })?;
    Ok(vm)
}

fn node_data(cur: &mut Cursor<'_>, hosts: &mut Vec<NodeList>) -> Result<()> {
    children(cur, "nodeData", |cur, e| {
        if e.name != "nodeList" {
            return Err(e.unexpected("nodeData", "<nodeList>"));
        }
        let mut list = NodeList {
            host: e.host("nodeList")?,
            nodes: Vec::new(),
        };
        children(cur, "nodeList", |cur, e| {
            if e.name != "node" {
                return Err(e.unexpected("nodeList", "<node>"));
            }
            list.nodes.push(NodeEvent {
                uuid: e.uuid("node", "uuid")?,
                event: e.get("event").unwrap_or_default().to_owned(),
            });
            leaf(cur, "node")
        })?;
        hosts.push(list);
        Ok(())
    })
}
