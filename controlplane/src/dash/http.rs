//! HTTP/1.1 for the dashboard, sans IO: a bounded request parser, urlencoded decoding,
//! the response type and its serialisation.
//!
//! [`RequestBuffer`] takes the bytes read from a connection and yields one [`Request`]
//! once its head and body are complete. It never holds more than [`MAX_HEAD`] bytes of
//! head (431 beyond) and [`MAX_BODY`] bytes of body (413), never panics on any input
//! (fuzz target `http_request`), and knows nothing of sockets or clocks: the server
//! (`server.rs`) owns both and closes slow clients.
//!
//! What it refuses: a request target that is not an absolute path (`/…`), a path or a
//! field that is not UTF-8 after percent-decoding or holds control characters,
//! `Transfer-Encoding` (browsers send a `Content-Length` for forms), conflicting
//! `Content-Length`s, a POST body that is not `application/x-www-form-urlencoded`.

use std::fmt::Write as _;

/// Longest request line plus headers, in bytes (431 beyond).
pub const MAX_HEAD: usize = 16 * 1024;
/// Longest body, in bytes (413 beyond).
pub const MAX_BODY: usize = 64 * 1024;
/// Most headers in a request (431 beyond).
pub const MAX_HEADERS: usize = 64;
/// Most `name=value` pairs in a query or a form (400 beyond).
pub const MAX_FIELDS: usize = 256;

/// A request method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// HEAD: a GET without the body.
    Head,
    /// POST.
    Post,
    /// Any other (answered 405).
    Other(String),
}

impl Method {
    fn parse(text: &str) -> Method {
        match text {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            other => Method::Other(other.chars().take(32).collect()),
        }
    }

    /// As on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Other(m) => m,
        }
    }
}

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path, percent-decoded (always starts with `/`).
    pub path: String,
    /// The query's pairs, decoded, in order.
    pub query: Vec<(String, String)>,
    /// The urlencoded POST body's pairs, decoded, in order (empty for other requests).
    pub form: Vec<(String, String)>,
    /// The headers, names in lower case, values as sent (non-UTF-8 bytes replaced).
    pub headers: Vec<(String, String)>,
    /// The client's address (`ip:port`), filled in by the server.
    pub peer: String,
}

impl Request {
    /// The first query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        lookup(&self.query, name)
    }

    /// The first form field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        lookup(&self.form, name)
    }

    /// The first header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        lookup(&self.headers, name)
    }

    /// The cookie `name` from the `Cookie` headers.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "cookie")
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.trim_matches('"'))
    }

    /// The path with its query, encoded again (for a `next` redirect).
    pub fn path_and_query(&self) -> String {
        let mut out = encode_path(&self.path);
        if !self.query.is_empty() {
            out.push('?');
            out.push_str(&encode_pairs(&self.query));
        }
        out
    }
}

fn lookup<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Why a request was refused; [`HttpError::status`] is the answer sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Request line and headers longer than [`MAX_HEAD`] or more than [`MAX_HEADERS`].
    #[error("request head larger than {MAX_HEAD} bytes or {MAX_HEADERS} headers")]
    HeadTooLarge,
    /// A body longer than [`MAX_BODY`].
    #[error("request body of {0} bytes, more than {MAX_BODY}")]
    BodyTooLarge(u64),
    /// Not HTTP/1.x or not well formed.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// `Transfer-Encoding` is not supported.
    #[error("Transfer-Encoding is not supported (send a Content-Length)")]
    TransferEncoding,
    /// A POST body of another type than a urlencoded form.
    #[error("unsupported body type {0:?} (expected application/x-www-form-urlencoded)")]
    MediaType(String),
}

impl HttpError {
    /// The status code answered.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge => 431,
            HttpError::BodyTooLarge(_) => 413,
            HttpError::Malformed(_) => 400,
            HttpError::TransferEncoding => 501,
            HttpError::MediaType(_) => 415,
        }
    }
}

/// The head once parsed: what is needed to know how much body follows.
#[derive(Debug)]
struct Head {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    content_length: usize,
    head_len: usize,
}

/// Collects a request's bytes (push what was read) until the request is complete.
#[derive(Debug, Default)]
pub struct RequestBuffer {
    buf: Vec<u8>,
    head: Option<Head>,
}

impl RequestBuffer {
    /// An empty buffer.
    pub fn new() -> RequestBuffer {
        RequestBuffer::default()
    }

    /// How many bytes it holds.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Add bytes read from the connection; `Ok(Some)` once the request is complete
    /// (bytes after it are ignored: every response closes the connection).
    pub fn push(&mut self, data: &[u8]) -> Result<Option<Request>, HttpError> {
        if self.head.is_none() {
            // Never keep more than one head's worth plus what was just read.
            if self.buf.len() + data.len() > MAX_HEAD + MAX_BODY {
                return Err(HttpError::HeadTooLarge);
            }
            self.buf.extend_from_slice(data);
            match parse_head(&self.buf)? {
                None if self.buf.len() > MAX_HEAD => return Err(HttpError::HeadTooLarge),
                None => return Ok(None),
                Some(head) => self.head = Some(head),
            }
        } else {
            let Some(head) = &self.head else {
                return Ok(None);
            };
            let want = head.head_len + head.content_length;
            let room = want.saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&data[..data.len().min(room)]);
        }
        let Some(head) = &self.head else {
            return Ok(None);
        };
        let end = head.head_len + head.content_length;
        if self.buf.len() < end {
            return Ok(None);
        }
        let body = &self.buf[head.head_len..end];
        let form = if head.method == Method::Post && !body.is_empty() {
            let ctype = lookup(&head.headers, "content-type").unwrap_or("");
            let essence = ctype.split(';').next().unwrap_or("").trim();
            if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
                return Err(HttpError::MediaType(ctype.chars().take(80).collect()));
            }
            let text = std::str::from_utf8(body)
                .map_err(|_| HttpError::Malformed("form body is not UTF-8".into()))?;
            decode_pairs(text)?
        } else {
            Vec::new()
        };
        Ok(Some(Request {
            method: head.method.clone(),
            path: head.path.clone(),
            query: head.query.clone(),
            form,
            headers: head.headers.clone(),
            peer: String::new(),
        }))
    }
}

/// Parse a whole request held in `bytes` (the fuzz target's entry): `Ok(None)` when it
/// is incomplete.
pub fn parse_request(bytes: &[u8]) -> Result<Option<Request>, HttpError> {
    let mut buf = RequestBuffer::new();
    let mut last = Ok(None);
    // Fed in pieces as a socket would deliver them.
    for chunk in bytes.chunks(4096) {
        last = buf.push(chunk);
        if !matches!(last, Ok(None)) {
            break;
        }
    }
    last
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(e) => return Err(HttpError::Malformed(e.to_string())),
    };
    if head_len > MAX_HEAD {
        return Err(HttpError::HeadTooLarge);
    }
    let method = Method::parse(req.method.unwrap_or(""));
    let target = req.path.unwrap_or("");
    if !target.starts_with('/') {
        return Err(HttpError::Malformed(format!(
            "request target {:?} is not an absolute path",
            shorten(target)
        )));
    }
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let path = percent_decode(raw_path, false)
        .ok_or_else(|| HttpError::Malformed(format!("bad path {:?}", shorten(raw_path))))?;
    let query = decode_pairs(raw_query)?;
    let mut list = Vec::with_capacity(req.headers.len());
    let mut content_length: Option<u64> = None;
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(h.value).trim().to_owned();
        match name.as_str() {
            "transfer-encoding" => return Err(HttpError::TransferEncoding),
            "content-length" => {
                let n = parse_length(&value)?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(HttpError::Malformed("conflicting Content-Length".into()));
                }
                content_length = Some(n);
            }
            _ => {}
        }
        list.push((name, value));
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY as u64 {
        return Err(HttpError::BodyTooLarge(content_length));
    }
    Ok(Some(Head {
        method,
        path,
        query,
        headers: list,
        content_length: usize::try_from(content_length).unwrap_or(MAX_BODY),
        head_len,
    }))
}

fn parse_length(value: &str) -> Result<u64, HttpError> {
    if value.is_empty() || value.len() > 18 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::Malformed(format!(
            "Content-Length {:?} is not a number",
            shorten(value)
        )));
    }
    value
        .parse()
        .map_err(|_| HttpError::Malformed("Content-Length out of range".into()))
}

fn shorten(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Decode `a=1&b=x+y` (a query or a urlencoded form): `+` is a space, `%XX` a byte, the
/// result UTF-8 without control characters; at most [`MAX_FIELDS`] pairs.
pub fn decode_pairs(text: &str) -> Result<Vec<(String, String)>, HttpError> {
    let mut pairs = Vec::new();
    for part in text.split('&').filter(|p| !p.is_empty()) {
        if pairs.len() == MAX_FIELDS {
            return Err(HttpError::Malformed(format!(
                "more than {MAX_FIELDS} fields"
            )));
        }
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let bad = || HttpError::Malformed(format!("bad field {:?}", shorten(part)));
        let name = percent_decode(name, true).ok_or_else(bad)?;
        let value = percent_decode(value, true).ok_or_else(bad)?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// Percent-decode (`plus`: `+` is a space, as in forms); `None` for a bad escape, bytes
/// that are not UTF-8, or a control character (a textarea's line breaks excepted).
pub fn percent_decode(text: &str, plus: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    let s = String::from_utf8(out).ok()?;
    if s.chars()
        .any(|c| c.is_control() && !(plus && (c == '\n' || c == '\r' || c == '\t')))
    {
        return None;
    }
    Some(s)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encode a form or query component (unreserved characters kept).
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Percent-encode a path (its `/` kept).
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_component)
        .collect::<Vec<_>>()
        .join("/")
}

/// `a=1&b=x%20y`.
pub fn encode_pairs(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(n, v)| format!("{}={}", encode_component(n), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A response: status, type, body and extra headers (the server adds the security
/// headers, `Content-Length` and `Connection: close`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
    /// More headers (`Location`, `Set-Cookie`, …).
    pub headers: Vec<(String, String)>,
}

/// `text/html; charset=utf-8`.
pub const HTML: &str = "text/html; charset=utf-8";
/// `text/plain; charset=utf-8`.
pub const TEXT: &str = "text/plain; charset=utf-8";
/// `application/json`.
pub const JSON: &str = "application/json";

impl Response {
    /// An HTML page.
    pub fn html(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: HTML,
            body: body.into_bytes(),
            headers: Vec::new(),
        }
    }

    /// 303 See Other to `location` (a local path).
    pub fn redirect(location: &str) -> Response {
        Response {
            status: 303,
            content_type: TEXT,
            body: format!("see {location}\n").into_bytes(),
            headers: vec![("Location".into(), location.to_owned())],
        }
    }

    /// Plain text.
    pub fn text(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: TEXT,
            body: body.into_bytes(),
            headers: Vec::new(),
        }
    }

    /// A JSON document.
    pub fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: JSON,
            body: body.into_bytes(),
            headers: Vec::new(),
        }
    }

    /// One more header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// The first header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The bytes sent: status line, headers (a header with a line break or a bad name is
    /// dropped: no response splitting), `Content-Length`, `Connection: close`, the body
    /// unless `head_only`.
    pub fn serialize(&self, head_only: bool) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        let _ = write!(head, "Content-Type: {}\r\n", self.content_type);
        let _ = write!(head, "Content-Length: {}\r\n", self.body.len());
        head.push_str("Connection: close\r\n");
        for (name, value) in &self.headers {
            if header_ok(name, value) {
                let _ = write!(head, "{name}: {value}\r\n");
            } else {
                tracing::warn!(header = %name, "response header with a line break dropped");
            }
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// A header name is a token, its value has no control character but tab.
pub fn header_ok(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && value.chars().all(|c| c == '\t' || !c.is_control())
}

/// The reason phrase of a status.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        303 => "See Other",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Escape text for HTML (element content and quoted attributes).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> Result<Option<Request>, HttpError> {
        parse_request(text.as_bytes())
    }

    #[test]
    fn a_get_with_a_query_and_cookies() {
        let r = parse(
            "GET /vm/web%201?next=%2Fhosts&x=a+b&empty HTTP/1.1\r\nHost: h:8080\r\nCookie: a=1; hvha_session=abc\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/vm/web 1");
        assert_eq!(r.param("next"), Some("/hosts"));
        assert_eq!(r.param("x"), Some("a b"));
        assert_eq!(r.param("empty"), Some(""));
        assert_eq!(r.header("host"), Some("h:8080"));
        assert_eq!(r.cookie("hvha_session"), Some("abc"));
        assert_eq!(r.cookie("b"), None);
        assert_eq!(
            r.path_and_query(),
            "/vm/web%201?next=%2Fhosts&x=a%20b&empty="
        );
    }

    #[test]
    fn a_post_form_arrives_in_pieces() {
        let body = "csrf=t0k&vm=web%2B1&note=a%0Ab";
        let text = format!(
            "POST /action/move HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded; charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut buf = RequestBuffer::new();
        let bytes = text.as_bytes();
        for b in &bytes[..bytes.len() - 1] {
            assert_eq!(buf.push(std::slice::from_ref(b)).unwrap(), None);
        }
        let r = buf.push(&bytes[bytes.len() - 1..]).unwrap().unwrap();
        assert_eq!(r.field("csrf"), Some("t0k"));
        assert_eq!(r.field("vm"), Some("web+1"));
        assert_eq!(r.field("note"), Some("a\nb"));
    }

    #[test]
    fn limits_and_refusals() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse(&big), Err(HttpError::HeadTooLarge));
        // An endless head without its blank line is cut off as soon as it is too long.
        let mut buf = RequestBuffer::new();
        let line = "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        buf.push(b"GET / HTTP/1.1\r\n").unwrap();
        let mut refused = None;
        for _ in 0..1000 {
            if let Err(e) = buf.push(line.as_bytes()) {
                refused = Some(e);
                break;
            }
        }
        assert_eq!(refused, Some(HttpError::HeadTooLarge));
        assert!(buf.len() <= MAX_HEAD + line.len());
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("H{i}: v\r\n"))
            .collect();
        assert_eq!(
            parse(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Err(HttpError::HeadTooLarge)
        );
        assert_eq!(
            parse("POST / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n"),
            Err(HttpError::BodyTooLarge(65537))
        );
        assert_eq!(
            parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HttpError::TransferEncoding)
        );
        assert!(matches!(
            parse("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            parse("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            parse(
                "POST / HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            ),
            Err(HttpError::MediaType(_))
        ));
        assert!(matches!(
            parse("GET http://evil/ HTTP/1.1\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            parse("GET /a%00b HTTP/1.1\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            parse("GET /a%ff HTTP/1.1\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            parse("GET /?a=%g1 HTTP/1.1\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
        let fields: String = (0..=MAX_FIELDS).map(|i| format!("f{i}=1&")).collect();
        assert!(matches!(
            parse(&format!("GET /?{fields} HTTP/1.1\r\n\r\n")),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            parse("\x16\x03\x01\x02\x00"),
            Err(HttpError::Malformed(_))
        ));
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(HttpError::HeadTooLarge.status(), 431);
        assert_eq!(HttpError::BodyTooLarge(1).status(), 413);
    }

    #[test]
    fn responses_close_and_refuse_header_splitting() {
        let r = Response::redirect("/x")
            .with_header("Set-Cookie", "a=b")
            .with_header("X-Bad", "a\r\nSet-Cookie: evil=1");
        let text = String::from_utf8(r.serialize(false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 303 See Other\r\n"), "{text}");
        assert!(text.contains("Location: /x\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.contains("Set-Cookie: a=b\r\n"));
        assert!(!text.contains("evil"), "{text}");
        let head = Response::text(200, "body".into()).serialize(true);
        let head = String::from_utf8(head).unwrap();
        assert!(head.contains("Content-Length: 4\r\n") && head.ends_with("\r\n\r\n"));
    }

    #[test]
    fn encoding_round_trips() {
        let pairs = vec![("a b".to_owned(), "x&y=z/é".to_owned())];
        assert_eq!(decode_pairs(&encode_pairs(&pairs)).unwrap(), pairs);
        assert_eq!(
            escape_html("<a href=\"x\">'&'"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;"
        );
    }
}
