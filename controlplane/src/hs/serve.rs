//! One request in the seed's XML, its reply in the seed's XML: what the seed's VIOS
//! answered through its pass-through interface (seed 004 L5161-5197), answered here from
//! the HSDB, so a user of the seed's tooling can send its requests unchanged.
//!
//! | request | reply |
//! |---|---|
//! | `VIO_HS_QUICK_QUERY` | `<quickQuery>` per host |
//! | `VIO_HS_NEEDS_ATTENTION dataType=GLOBAL_DATA` (or `LOCAL_DATA`, answered the same: one HSDB holds every host, gap 11) | `<needsAtt>` elements, tagged when items must be acknowledged |
//! | `VIO_HS_ACKNOWLEDGE hsTag` | empty (seed 004 L7578); clears the VM items and the monitor events of that tag |
//! | `VIO_HS_QUERY_NODE_DATA` | `<nodeData hsTag>` per host with pending monitor events |
//!
//! A request that does not parse is refused with the parser's error (naming the element,
//! attribute and value); nothing is written to the store for it.

use thiserror::Error;

use hsdb::Hsdb;

use crate::hs::build::{NaConfig, acknowledge, needs_attention, node_data, quick_query};
use crate::hs::tag::{RandomTags, TagSource};
use crate::hs::xml::{
    XmlError, XmlLimits, parse_request, write_empty_reply, write_needs_attention, write_node_data,
    write_quick_query,
};
use crate::hs::{Request, RequestKind};

/// Why a request got no reply.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The request is not one of the seed's.
    #[error("bad request: {0}")]
    Request(#[from] XmlError),
    /// The store failed.
    #[error("HSDB: {0}")]
    Store(#[from] hsdb::Error),
}

/// Answer `request_xml` from `db` at `now_ms` with the default configuration and random
/// tags.
pub fn serve(db: &mut Hsdb, now_ms: i64, request_xml: &[u8]) -> Result<String, ServeError> {
    serve_with(
        db,
        now_ms,
        request_xml,
        &NaConfig::default(),
        &XmlLimits::default(),
        &mut RandomTags,
    )
}

/// Answer `request_xml` with a given configuration, request limits and tag source.
pub fn serve_with(
    db: &mut Hsdb,
    now_ms: i64,
    request_xml: &[u8],
    config: &NaConfig,
    limits: &XmlLimits,
    tags: &mut dyn TagSource,
) -> Result<String, ServeError> {
    let request = parse_request(request_xml, limits)?;
    answer(db, now_ms, &request, config, tags)
}

/// Answer a parsed request.
pub fn answer(
    db: &mut Hsdb,
    now_ms: i64,
    request: &Request,
    config: &NaConfig,
    tags: &mut dyn TagSource,
) -> Result<String, ServeError> {
    tracing::debug!(
        action = request.request.action_str(),
        author = %request.author,
        title = %request.title,
        "request"
    );
    Ok(match request.request {
        RequestKind::QuickQuery => write_quick_query(&quick_query(db, now_ms, config)?),
        RequestKind::NeedsAttention { .. } => {
            let tag = tags.next_tag();
            write_needs_attention(&needs_attention(db, now_ms, config, tag)?.reply)
        }
        RequestKind::Acknowledge { tag } => {
            acknowledge(db, tag)?;
            write_empty_reply()
        }
        RequestKind::QueryNodeData => {
            let tag = tags.next_tag();
            write_node_data(&node_data(db, config, tag)?.reply)
        }
    })
}
