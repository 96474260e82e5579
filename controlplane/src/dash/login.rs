//! The login page (DOM contract B): `<form id="login" method="post" action="/login">`
//! with `username`, `password` and a submit button; a failed attempt shows the form
//! again with `<p class="error">`. No script; the stylesheets views serve are linked.

use super::http::{Response, escape_html};
use super::views;

/// Whether `next` is a path on this server: `/…`, not `//…` or `/\…` (another host to
/// a browser), no control characters, at most 2 KiB. Anything else goes to `/`.
pub fn local_next(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 2048
        && !next.chars().any(|c| c.is_control() || c == '\\')
        && !next.starts_with("/login")
        && !next.starts_with("/logout");
    ok.then_some(next)
}

/// The login page; `error`: the message shown above the form.
pub fn page(status: u16, next: &str, username: &str, error: Option<&str>) -> Response {
    // The views' stylesheets and icon (a page without an icon makes the browser ask
    // for /favicon.ico).
    let styles: String = views::STATIC
        .iter()
        .filter_map(|(name, ctype, _)| {
            let rel = if ctype.starts_with("text/css") {
                "stylesheet"
            } else if ctype.starts_with("image/") {
                "icon"
            } else {
                return None;
            };
            Some(format!(
                "<link rel=\"{rel}\" href=\"/static/{}\">\n",
                escape_html(name)
            ))
        })
        .collect();
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>\n", escape_html(e)))
        .unwrap_or_default();
    let next = local_next(next).unwrap_or("/");
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>hvha — log in</title>\n{styles}</head>\n<body class=\"login\">\n<main>\n\
         <h1>hvha dashboard</h1>\n{error}\
         <form id=\"login\" method=\"post\" action=\"/login\">\n\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\n\
         <label>User <input name=\"username\" autocomplete=\"username\" required \
         autofocus value=\"{user}\"></label>\n\
         <label>Password <input name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required></label>\n\
         <button type=\"submit\">Log in</button>\n</form>\n</main>\n</body>\n</html>\n",
        next = escape_html(next),
        user = escape_html(username),
    );
    Response::html(status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(local_next("/vms?x=1"), Some("/vms?x=1"));
        for bad in [
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "evil",
            "",
            "/a\r\nSet-Cookie: x",
            "/login",
        ] {
            assert_eq!(local_next(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_form_follows_the_dom_contract_and_escapes() {
        let r = page(200, "/vms", "<al\"ice>", Some("wrong"));
        let html = String::from_utf8(r.body).unwrap_or_default();
        assert!(html.contains("<form id=\"login\" method=\"post\" action=\"/login\">"));
        assert!(html.contains("<input name=\"username\""));
        assert!(html.contains("<input name=\"password\" type=\"password\""));
        assert!(html.contains("<button type=\"submit\">"));
        assert!(html.contains("<p class=\"error\""));
        assert!(html.contains("value=\"&lt;al&quot;ice&gt;\""));
        assert!(!html.contains("<script"));
    }
}
