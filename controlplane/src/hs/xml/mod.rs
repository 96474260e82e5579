//! The seed's XML for QuickQuery, NeedsAttention, Acknowledge and node data
//! (seed-controlplane.md §2.2-§2.5).
//!
//! - Writing ([`write_reply`], [`write_request`] and one function per reply): the seed's
//!   element and attribute names and order, its line breaks and its quote of each
//!   attribute, hex as the seed writes it (`reason='0x00000040'`, `shortMsg="0x28"`).
//! - Parsing ([`parse_document`], [`parse_request`], [`parse_reply`]): any standard XML
//!   spelling of the same documents, from untrusted bytes: typed errors ([`XmlError`]),
//!   never a panic, memory bounded by [`XmlLimits`].
//!
//! Round trip: for every value `x` the parser can return, `parse(write(x)) == x`
//! (property-tested, and fuzzed by the `xml` fuzz target).

mod error;
mod parse;
mod write;

pub use error::{EXCERPT_CHARS, XmlError};
pub use parse::parse_document;
pub use write::{
    write_empty_reply, write_needs_attention, write_node_data, write_quick_query, write_reply,
    write_request,
};

use crate::hs::{Reply, Request};

/// The seed's request namespace (seed 004 L5256-5261).
pub const SEED_NAMESPACE: &str = "http://ausgsa.austin.ibm.com/projects/v/vios/schema/vioHADR2.00";

/// The schema version requests carry, the only one accepted ("Using 2.00 as vio hadr
/// version", seed 004 L5356-5357).
pub const SEED_VERSION: &str = "2.00";

/// Bounds on what the parser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmlLimits {
    /// Longest document, in bytes (default 16 MiB: a NeedsAttention of 100,000 VM items
    /// is about 17 MB; replies are cut to a configured number of items long before).
    pub max_bytes: usize,
    /// Deepest nesting (default 16; the deepest element of the seed's documents,
    /// `discoveryInfo`, is at depth 8).
    pub max_depth: usize,
    /// Most elements (default 1,000,000).
    pub max_elements: usize,
    /// Most attributes on one element (default 32; `viosStat` has 7).
    pub max_attributes: usize,
}

impl Default for XmlLimits {
    fn default() -> XmlLimits {
        XmlLimits {
            max_bytes: 16 << 20,
            max_depth: 16,
            max_elements: 1_000_000,
            max_attributes: 32,
        }
    }
}

/// A parsed document: a request (`<VIO><Request/>`) or a reply (`<VIO><Response>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    /// `<VIO …><Request action_str …/></VIO>`.
    Request(Request),
    /// `<VIO><Response>…</Response></VIO>`.
    Reply(Reply),
}

/// Write a document.
pub fn write_document(doc: &Document) -> String {
    match doc {
        Document::Request(r) => write_request(r),
        Document::Reply(r) => write_reply(r),
    }
}

/// Parse a request; a reply is refused.
pub fn parse_request(input: &[u8], limits: &XmlLimits) -> Result<Request, XmlError> {
    match parse_document(input, limits)? {
        Document::Request(r) => Ok(r),
        Document::Reply(_) => Err(XmlError::UnexpectedElement {
            offset: 0,
            element: "Response".into(),
            parent: "VIO",
            expected: "<Request>",
        }),
    }
}

/// Parse a reply; a request is refused.
pub fn parse_reply(input: &[u8], limits: &XmlLimits) -> Result<Reply, XmlError> {
    match parse_document(input, limits)? {
        Document::Reply(r) => Ok(r),
        Document::Request(_) => Err(XmlError::UnexpectedElement {
            offset: 0,
            element: "Request".into(),
            parent: "VIO",
            expected: "<Response>",
        }),
    }
}

/// A character XML 1.0 allows in a document (its `Char` production).
pub fn is_xml_char(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r'
        | '\u{20}'..='\u{d7ff}'
        | '\u{e000}'..='\u{fffd}'
        | '\u{10000}'..='\u{10ffff}')
}

#[cfg(test)]
mod tests;
