//! What the XML parser refuses, each naming the element, the attribute and the bad value
//! (cut to [`EXCERPT_CHARS`] characters) and where it is (byte offset in the input).

use thiserror::Error;

/// Longest excerpt of an untrusted value quoted in an error, in characters.
pub const EXCERPT_CHARS: usize = 64;

/// An untrusted value as quoted in an error: at most [`EXCERPT_CHARS`] characters and
/// four times as many bytes, control characters escaped, `…` when cut.
pub(crate) fn excerpt(value: &str) -> String {
    excerpt_n(value, EXCERPT_CHARS)
}

/// A reader's message (which may quote the input): at most 160 characters.
pub(crate) fn message(value: &str) -> String {
    excerpt_n(value, 160)
}

fn excerpt_n(value: &str, chars: usize) -> String {
    let mut out = String::new();
    for (n, c) in value.chars().enumerate() {
        if n == chars || out.len() >= 4 * chars {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    out
}

/// A document the parser refuses.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum XmlError {
    /// The document is longer than the configured limit.
    #[error("XML document of {len} bytes is longer than the limit of {max} bytes")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The document is not UTF-8.
    #[error("XML document is not UTF-8 at byte {offset} (only UTF-8 is accepted)")]
    NotUtf8 {
        /// Offset of the first bad byte.
        offset: usize,
    },
    /// The XML declaration names an encoding other than UTF-8.
    #[error("XML declaration names encoding '{encoding}'; only UTF-8 is accepted")]
    Encoding {
        /// The encoding named.
        encoding: String,
    },
    /// The XML declaration names a version other than 1.0 / 1.1.
    #[error("XML declaration names version '{version}'; 1.0 or 1.1 expected")]
    XmlVersion {
        /// The version named.
        version: String,
    },
    /// Not well-formed XML.
    #[error("malformed XML at byte {offset}: {message}")]
    Syntax {
        /// Where the reader stopped.
        offset: u64,
        /// What the reader says.
        message: String,
    },
    /// A document type declaration with an internal subset (entity declarations).
    #[error(
        "DOCTYPE with an internal subset at byte {offset}: entity declarations are not accepted"
    )]
    Doctype {
        /// Where.
        offset: u64,
    },
    /// A reference to an entity XML does not predefine.
    #[error(
        "unknown entity '&{name};' at byte {offset} (only lt, gt, amp, apos, quot and character references)"
    )]
    UnknownEntity {
        /// Where.
        offset: u64,
        /// The entity's name.
        name: String,
    },
    /// Elements nested deeper than the limit.
    #[error("element <{element}> at byte {offset} is nested deeper than the limit of {max}")]
    TooDeep {
        /// Where.
        offset: u64,
        /// The element.
        element: String,
        /// The limit.
        max: usize,
    },
    /// More elements than the limit.
    #[error("more than {max} elements (at byte {offset})")]
    TooManyElements {
        /// Where the limit was passed.
        offset: u64,
        /// The limit.
        max: usize,
    },
    /// An element with more attributes than the limit.
    #[error("element <{element}> at byte {offset} has more than {max} attributes")]
    TooManyAttributes {
        /// Where.
        offset: u64,
        /// The element.
        element: String,
        /// The limit.
        max: usize,
    },
    /// An element in a namespace other than the seed's.
    #[error(
        "element <{element}> at byte {offset} is in namespace '{namespace}'; expected none or '{expected}'"
    )]
    Namespace {
        /// Where.
        offset: u64,
        /// The element.
        element: String,
        /// Its namespace (or the unbound prefix).
        namespace: String,
        /// The seed's namespace.
        expected: &'static str,
    },
    /// An element not allowed where it is.
    #[error("unexpected element <{element}> in <{parent}> at byte {offset}; expected {expected}")]
    UnexpectedElement {
        /// Where.
        offset: u64,
        /// The element found.
        element: String,
        /// Its parent (`document` at the top).
        parent: &'static str,
        /// What is allowed there.
        expected: &'static str,
    },
    /// Text (other than white space) where only elements are allowed.
    #[error(
        "unexpected text '{text}' in <{parent}> at byte {offset}; only elements are allowed there"
    )]
    UnexpectedText {
        /// Where.
        offset: u64,
        /// The element it is in (`document` at the top).
        parent: String,
        /// The text, cut.
        text: String,
    },
    /// A required element is missing.
    #[error("<{parent}> at byte {offset} has no <{element}>")]
    MissingElement {
        /// Where the parent starts.
        offset: u64,
        /// The parent.
        parent: &'static str,
        /// The element missing.
        element: &'static str,
    },
    /// A required attribute is missing.
    #[error("<{element}> at byte {offset} has no attribute '{attribute}'")]
    MissingAttribute {
        /// Where.
        offset: u64,
        /// The element.
        element: &'static str,
        /// The attribute missing.
        attribute: &'static str,
    },
    /// An attribute whose value is not allowed.
    #[error("<{element} {attribute}=\"{value}\"> at byte {offset}: expected {expected}")]
    BadValue {
        /// Where.
        offset: u64,
        /// The element.
        element: &'static str,
        /// The attribute.
        attribute: &'static str,
        /// The value, cut.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// A reply that mixes kinds (`quickQuery`, `needsAtt`, `nodeData`).
    #[error(
        "<{element}> at byte {offset} in a reply of <{first}> elements; a reply holds one kind"
    )]
    MixedReply {
        /// Where.
        offset: u64,
        /// The kind of the first element.
        first: &'static str,
        /// The other kind found.
        element: &'static str,
    },
    /// Elements of one reply with different `hsTag`s (or some with and some without).
    #[error(
        "<{element}> at byte {offset} has hsTag {found:?}, the reply's first has {first:?}; one reply has one tag"
    )]
    TagMismatch {
        /// Where.
        offset: u64,
        /// The element.
        element: &'static str,
        /// The first element's tag.
        first: Option<i64>,
        /// This element's tag.
        found: Option<i64>,
    },
    /// No root element.
    #[error("XML document has no root element")]
    NoRoot,
}
