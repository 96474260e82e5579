//! The dashboard's pages, live snapshot and actions (docs/dashboard.md): what an
//! operator sees and what the buttons write. The transport, login, sessions, CSRF and
//! TLS are `dash`'s ([`crate::dash`]); this module is handed a logged-in [`Ctx`] and a
//! parsed [`Request`] and returns a [`Response`].
//!
//! - [`page`]: every `GET` other than `/login`, `/static/…`, `/stream` — server-rendered
//!   HTML, every value escaped (`html::esc`), the DOM contract of docs/dashboard.md
//!   ("For tests and scripts") kept exactly: the browser tests read it.
//! - [`action`]: every `POST /action/<verb>` (the caller checked login, the operator
//!   role and CSRF): each field validated, the request written through the same HSDB
//!   call the command line uses, `requested_by = "dashboard:<user>"`, then a redirect
//!   back with a message.
//! - [`snapshot`]: the live state as one JSON document, sent to the pages over
//!   server-sent events; `/static/app.js` applies it without a reload.
//! - [`STATIC`]: the script and the style sheet.
//!
//! The seed's GUI (seed 004 L16710-17200) is the model: host group and its policies,
//! hosts with summary and VMs, VM summary with applications and policies, Discovery &
//! Verify with the running activities, events filtered by severity with details, moves.

mod actions;
mod board;
mod catalog;
mod html;
mod moves;
mod pages;
mod records;
mod snapshot;
#[cfg(test)]
mod tests;

use crate::dash::{Ctx, Method, Request, Response};

pub use self::snapshot::snapshot;

/// The static files: name under `/static/`, content type, bytes.
pub static STATIC: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("static/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("static/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("static/favicon.svg"),
    ),
];

/// Longest path segment accepted (a VM name, a host name, an id).
const MAX_SEGMENT: usize = 512;

/// A page for `GET req.path`; 404 for a path that names no page, 400 for a bad
/// parameter, 500 (naming the HSDB error) when the HSDB cannot be read.
pub fn page(ctx: &mut Ctx<'_>, req: &Request) -> Response {
    if !matches!(req.method, Method::Get | Method::Head) {
        return pages::error_page(ctx, 405, "Method not allowed", "Pages are read with GET.");
    }
    let path = req.path.as_str();
    if path == "/favicon.ico" {
        // Browsers ask for it whatever the page links: the same icon, not a 404.
        return Response {
            status: 200,
            content_type: "image/svg+xml",
            body: include_bytes!("static/favicon.svg").to_vec(),
            headers: Vec::new(),
        };
    }
    let (head, rest) = match path.strip_prefix('/').and_then(|p| p.split_once('/')) {
        Some((head, rest)) => (head, Some(rest)),
        None => (path.trim_start_matches('/'), None),
    };
    let rest = match rest.map(check_segment) {
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => return pages::error_page(ctx, 400, "Bad request", &e),
        None => None,
    };
    let outcome = match (head, rest.as_deref()) {
        ("", None) => pages::overview(ctx, req),
        ("hosts", None) => pages::hosts(ctx, req),
        ("host", Some(name)) => pages::host(ctx, req, name),
        ("vms", None) => pages::vms(ctx, req),
        ("vm", Some(given)) => pages::vm(ctx, req, given),
        ("apps", None) => pages::apps(ctx, req),
        ("events", None) => records::events(ctx, req),
        ("event", Some(id)) => records::event(ctx, req, id),
        ("relocations", None) => records::relocations(ctx, req),
        ("relocation", Some(id)) => records::relocation(ctx, req, id),
        ("activities", None) => records::activities(ctx, req),
        _ => {
            return pages::error_page(
                ctx,
                404,
                "Not found",
                &format!("There is no page at {path}."),
            );
        }
    };
    outcome.unwrap_or_else(|e| {
        tracing::warn!(path, "dashboard: page {path} could not be read: {e}");
        pages::error_page(
            ctx,
            500,
            "HSDB error",
            &format!("The HSDB could not be read for {path}: {e}"),
        )
    })
}

/// Carry out `POST /action/<verb>`: validate the fields, write the request, redirect back
/// with a message (docs/dashboard.md, "Actions").
pub fn action(ctx: &mut Ctx<'_>, req: &Request) -> Response {
    actions::action(ctx, req)
}

/// The rest of a path after its first segment (the server decoded it): bounded, without
/// control characters. A VM name may hold `/`: the rest is taken whole.
fn check_segment(rest: &str) -> Result<String, String> {
    if rest.len() > MAX_SEGMENT {
        return Err(format!(
            "The path segment is {} bytes long; at most {MAX_SEGMENT} are accepted.",
            rest.len()
        ));
    }
    if rest.chars().any(char::is_control) {
        return Err(format!("{rest:?} holds a control character."));
    }
    Ok(rest.to_owned())
}
