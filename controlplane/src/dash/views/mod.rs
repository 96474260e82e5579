//! A minimal stand-in for the dashboard's pages until the real views land (contract A):
//! a page naming the user, an action that says what it received, a snapshot with the
//! number of VMs. Replaced as a whole by the views module.

use super::http::{Response, encode_component, escape_html};
use super::{Ctx, Request};

/// Static files: name, content type, bytes.
pub static STATIC: &[(&str, &str, &[u8])] = &[(
    "app.js",
    "text/javascript; charset=utf-8",
    b"const s = new EventSource('/stream');\n\
      s.onopen = () => { document.body.dataset.live = 'connected'; };\n\
      s.onerror = () => { document.body.dataset.live = 'lost'; };\n",
)];

/// A page: the user, a logout form.
pub fn page(ctx: &mut Ctx, req: &Request) -> Response {
    if req.path != "/" {
        return Response::html(
            404,
            format!(
                "<!DOCTYPE html><title>not found</title><p>no page {}</p>",
                escape_html(&req.path)
            ),
        );
    }
    let vms = ctx.db.vms().map(|v| v.len()).unwrap_or(0);
    Response::html(
        200,
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>hvha</title>\
             <script src=\"/static/app.js\" defer></script></head>\
             <body data-user=\"{user}\" data-role=\"{role}\"><p>{user} ({role}), {vms} VMs</p>\
             <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\">Log out</button></form></body></html>\n",
            user = escape_html(&ctx.user.name),
            role = ctx.user.role,
            csrf = escape_html(ctx.csrf),
        ),
    )
}

/// An action: back to `/` with what was asked.
pub fn action(ctx: &mut Ctx, req: &Request) -> Response {
    let _ = ctx.now_ms;
    Response::redirect(&format!("/?done={}", encode_component(&req.path)))
}

/// The live state: the number of VMs.
pub fn snapshot(db: &mut hsdb::Hsdb, now_ms: i64) -> Result<String, hsdb::Error> {
    Ok(format!(
        "{{\"now_ms\":{now_ms},\"vms\":{}}}",
        db.vms()?.len()
    ))
}
