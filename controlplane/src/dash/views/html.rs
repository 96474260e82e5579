//! HTML writing: escaping, the page frame (head, nav, user, flash), tables, forms.
//!
//! Every value that comes from the HSDB, a request or the configuration goes through
//! [`esc`] (text and attribute values alike: `&`, `<`, `>`, `"`, `'` are replaced), so a
//! VM named `<script>alert(1)</script>` is shown as text. No inline script or style is
//! written: the CSP is `default-src 'self'` (docs/dashboard.md).

use std::fmt::Write as _;

use crate::dash::{Ctx, Role};

/// `text` with the five HTML-special characters replaced: safe in element content and
/// in a quoted attribute value. Control characters other than tab and newline become
/// U+FFFD (they come from outside and mean nothing on a page).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// `segment` percent-encoded for a URL path segment or a query value: everything but
/// unreserved characters (RFC 3986 §2.3) is encoded.
pub fn url_part(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The navigation: path, label, the page key it lights up.
const NAV: &[(&str, &str, &str)] = &[
    ("/", "Overview", "overview"),
    ("/hosts", "Hosts", "hosts"),
    ("/vms", "VMs", "vms"),
    ("/apps", "Applications", "apps"),
    ("/events", "Events", "events"),
    ("/relocations", "Relocations", "relocations"),
    ("/activities", "Discovery & verify", "activities"),
];

/// `read-only` or `operator`, as in `data-role`.
pub fn role_text(role: Role) -> &'static str {
    match role {
        Role::ReadOnly => "read-only",
        Role::Operator => "operator",
    }
}

/// A page being written: its title, the nav key lit, the body's HTML.
pub struct Page {
    title: String,
    key: &'static str,
    /// The body's content (inside `<main>`).
    pub body: String,
}

impl Page {
    /// A page titled `title` (plain text) under nav entry `key`.
    pub fn new(title: impl Into<String>, key: &'static str) -> Page {
        Page {
            title: title.into(),
            key,
            body: String::new(),
        }
    }

    /// Append raw HTML (already escaped).
    pub fn push(&mut self, html: &str) {
        self.body.push_str(html);
    }

    /// `<h1>` with the page's title.
    pub fn heading(&mut self) {
        let t = esc(&self.title);
        let _ = writeln!(self.body, "<h1>{t}</h1>");
    }

    /// The whole document for `ctx`'s user; `flash` is a message shown on top (plain
    /// text, escaped here) with its class (`ok` or `error`).
    pub fn render(self, ctx: &Ctx<'_>, flash: Option<(&str, &str)>) -> String {
        let mut out = String::with_capacity(self.body.len() + 2048);
        let user = esc(&ctx.user.name);
        let role = role_text(ctx.user.role);
        let _ = writeln!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{} · hvha</title>\n\
             <link rel=\"icon\" href=\"/static/favicon.svg\" type=\"image/svg+xml\">\n\
             <link rel=\"stylesheet\" href=\"/static/app.css\">\n\
             <script src=\"/static/app.js\" defer></script>\n</head>\n\
             <body data-user=\"{user}\" data-role=\"{role}\" data-page=\"{}\" \
             data-now-ms=\"{}\">\n<header>\n<a class=\"brand\" href=\"/\">hvha</a>\n<nav>",
            esc(&self.title),
            self.key,
            ctx.now_ms
        );
        for (href, label, key) in NAV {
            let current = if *key == self.key {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = writeln!(out, "<a href=\"{href}\"{current}>{}</a>", esc(label));
        }
        let _ = writeln!(
            out,
            "</nav>\n<span class=\"live-state\" title=\"live updates\">\
             <span class=\"live-dot\"></span><span class=\"live-text\">connecting</span></span>\n\
             <span class=\"who\">{user} <span class=\"role\">{role}</span></span>\n\
             <form class=\"logout\" method=\"post\" action=\"/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Log out</button></form>\n</header>\n<main>",
            esc(ctx.csrf)
        );
        if let Some((class, text)) = flash {
            let _ = writeln!(
                out,
                "<p class=\"flash {}\" role=\"status\">{}</p>",
                esc(class),
                esc(text)
            );
        }
        out.push_str(&self.body);
        out.push_str("</main>\n</body>\n</html>\n");
        out
    }
}

/// An action form for `verb` with hidden `fields` (name, value) and a button labelled
/// `label`, or nothing for a read-only user (contract B: the forms are not rendered).
pub fn action_form(ctx: &Ctx<'_>, verb: &str, fields: &[(&str, &str)], label: &str) -> String {
    if ctx.user.role != Role::Operator {
        return String::new();
    }
    let mut out = format!(
        "<form class=\"action\" method=\"post\" action=\"/action/{}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(verb),
        esc(ctx.csrf)
    );
    for (name, value) in fields {
        let _ = write!(
            out,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(name),
            esc(value)
        );
    }
    let _ = write!(
        out,
        "<button type=\"submit\" data-action=\"{}\">{}</button></form>",
        esc(verb),
        esc(label)
    );
    out
}

/// A `<td>` with `class` holding `text` escaped.
pub fn td(class: &str, text: &str) -> String {
    if class.is_empty() {
        format!("<td>{}</td>", esc(text))
    } else {
        format!("<td class=\"{class}\">{}</td>", esc(text))
    }
}

/// A link to `href` (already a safe URL) showing `text`.
pub fn link(href: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", esc(href), esc(text))
}

/// A `<thead>` row with these headers.
pub fn thead(headers: &[&str]) -> String {
    let mut out = String::from("<thead><tr>");
    for h in headers {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(h));
    }
    out.push_str("</tr></thead>");
    out
}

/// An "age" cell: `12 s ago` now, kept ticking by the page's script from
/// `data-since-ms` (`-` for no time).
pub fn age_td(class: &str, since_ms: Option<i64>, now_ms: i64) -> String {
    match since_ms {
        Some(t) => format!(
            "<td class=\"{class} age\" data-since-ms=\"{t}\">{}</td>",
            esc(&age_text(now_ms.saturating_sub(t)))
        ),
        None => format!("<td class=\"{class}\">-</td>"),
    }
}

/// `0 s`, `42 s`, `3 min 5 s`, `2 h 10 min`, `3 d 4 h`: an age for people.
pub fn age_text(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {} s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    } else {
        format!("{} d {} h", s / 86_400, (s % 86_400) / 3600)
    }
}

/// A time as `2026-12-01 00:31:52 UTC`.
pub fn when(ms: i64) -> String {
    format!("{} UTC", crate::cli::table::utc(ms))
}

/// A `<time>` element for `ms`.
pub fn time_el(ms: i64) -> String {
    format!(
        "<time data-ms=\"{ms}\">{}</time>",
        esc(&crate::cli::table::utc(ms))
    )
}
