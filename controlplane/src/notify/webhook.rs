//! The webhook channel: an HTTP/1.1 POST of the event's JSON document to a configured
//! `http://` URL, one connection per attempt (`Connection: close`).
//!
//! - success is a 2xx status (after at most 4 interim 1xx answers); anything else
//!   (another status — a redirect is not followed —, a malformed or truncated answer, a
//!   timeout) is a failed attempt, retried by the worker;
//! - the host name is resolved by the system's resolver before the attempt's deadline
//!   starts (its own timeouts apply: `/etc/resolv.conf`); give an address to avoid it;
//! - the event id is in the body (`"id"`) and in the headers `X-Hvha-Event-Id` and
//!   `Idempotency-Key: hvha-event-<id>`, so a receiver drops a repeated delivery;
//! - the whole attempt (connect, send, answer) is bounded by the notifier's timeout; the
//!   answer's head is read up to 16 KiB and its body up to 4 KiB (shown in the log on a
//!   failure), the rest is never read;
//! - an optional bearer token (`Authorization: Bearer …`) comes from a 0600 file and is
//!   never logged.
//!
//! `https://` is refused by the configuration: hactl links no TLS stack (a TLS client
//! library and its certificate handling would be the largest dependency of the control
//! plane). Deliver to a local TLS-terminating forwarder on 127.0.0.1 (stunnel, nginx,
//! a local relay), or use an exec hook that runs a client of your choice
//! (docs/operators.md).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::{Channel, Deadline, DeliveryError, EventDoc, excerpt, io_error};

/// Longest status line and headers read.
pub const MAX_HEAD: usize = 16 * 1024;
/// Longest body read (shown in the log on failure).
pub const MAX_BODY: usize = 4 * 1024;
/// Longest URL accepted.
pub const MAX_URL: usize = 2048;

/// An `http://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// The host as written (name, IPv4, or `[IPv6]`).
    pub host: String,
    /// The port (80 when not written).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parse an `http://` URL; the error says what is wrong (and why `https://` is not
    /// accepted).
    pub fn parse(text: &str) -> Result<HttpUrl, String> {
        if text.len() > MAX_URL {
            return Err(format!("a URL of at most {MAX_URL} bytes"));
        }
        if !text.chars().all(|c| c.is_ascii_graphic()) {
            return Err("a URL of printable ASCII without spaces (percent-encode the rest)".into());
        }
        let Some(rest) = text.strip_prefix("http://") else {
            if text.starts_with("https://") {
                return Err(
                    "an http:// URL: https:// is not supported (hactl links no TLS \
                     stack); point the webhook at a local TLS-terminating forwarder on \
                     127.0.0.1 or use an exec hook (docs/operators.md, Notifications)"
                        .into(),
                );
            }
            return Err("an http://HOST[:PORT]/PATH URL".into());
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        if path.contains('#') {
            return Err("a URL without a #fragment".into());
        }
        if authority.contains('@') {
            return Err("a URL without user or password (use bearer_token_file)".into());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((addr, after)) = v6.split_once(']') else {
                return Err("an IPv6 host in brackets: http://[::1]:8080/".into());
            };
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("an IPv6 address in brackets, not [{addr}]"));
            }
            (format!("[{addr}]"), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            }
        };
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("a port 1..=65535, not {p:?}"))?,
        };
        let host_ok = !host.is_empty()
            && (host.starts_with('[')
                || host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c)));
        if !host_ok {
            return Err("a host name or address after http://".into());
        }
        Ok(HttpUrl { host, port, path })
    }

    fn connect_host(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.port == 80 {
            write!(f, "http://{}{}", self.host, self.path)
        } else {
            write!(f, "http://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

/// The webhook channel.
pub struct Webhook {
    url: HttpUrl,
    token: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url.to_string())
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// A webhook posting to `url`, each attempt bounded by `timeout`, with a bearer
    /// token if given.
    pub fn new(url: HttpUrl, token: Option<String>, timeout: Duration) -> Webhook {
        Webhook {
            url,
            token,
            timeout,
        }
    }

    fn connect(&self, deadline: &Deadline) -> Result<TcpStream, DeliveryError> {
        let target = format!("{}:{}", self.url.host, self.url.port);
        let addrs: Vec<SocketAddr> = (self.url.connect_host(), self.url.port)
            .to_socket_addrs()
            .map_err(|source| DeliveryError::Connect {
                target: target.clone(),
                source,
            })?
            .collect();
        let mut last = None;
        for addr in addrs {
            let left = deadline.left(&|| format!("connecting to {target}"))?;
            match TcpStream::connect_timeout(&addr, left) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(DeliveryError::Connect {
            target,
            source: last.unwrap_or_else(|| std::io::Error::other("no address")),
        })
    }

    fn request(&self, doc: &EventDoc) -> Vec<u8> {
        let body = doc.to_json();
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hactl/{}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\
             X-Hvha-Event-Id: {}\r\nIdempotency-Key: hvha-event-{}\r\nConnection: close\r\n",
            self.url.path,
            if self.url.port == 80 {
                self.url.host.clone()
            } else {
                format!("{}:{}", self.url.host, self.url.port)
            },
            env!("CARGO_PKG_VERSION"),
            body.len(),
            doc.id,
            doc.id,
        );
        if let Some(t) = &self.token {
            head.push_str("Authorization: Bearer ");
            head.push_str(t);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        bytes
    }
}

/// The answer's status code and reason, and the start of its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The body's first bytes (at most [`MAX_BODY`]).
    pub body: Vec<u8>,
}

/// Parse an answer's head from `bytes` (everything read so far): `None` while the head
/// is incomplete; `Err` when it is not HTTP.
pub fn parse_head(bytes: &[u8]) -> Result<Option<(u16, String, usize)>, String> {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        if bytes.len() >= MAX_HEAD {
            return Err(format!("no end of headers within {MAX_HEAD} bytes"));
        }
        // A status line that cannot be HTTP is refused early.
        if bytes.len() >= 5 && !bytes.starts_with(b"HTTP/") {
            return Err(format!("not HTTP: {:?}", excerpt(bytes, 60)));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&bytes[..end])
        .map_err(|_| format!("headers not UTF-8: {:?}", excerpt(&bytes[..end], 60)))?;
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    let reason = parts.next().unwrap_or_default();
    if !(version == "HTTP/1.1" || version == "HTTP/1.0") {
        return Err(format!(
            "not an HTTP/1.x status line: {:?}",
            excerpt(line.as_bytes(), 60)
        ));
    }
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|c| (100..=599).contains(c) && code.len() == 3)
        .ok_or_else(|| format!("bad status code in {:?}", excerpt(line.as_bytes(), 60)))?;
    Ok(Some((status, excerpt(reason.as_bytes(), 80), end + 4)))
}

impl Channel for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn target(&self) -> String {
        self.url.to_string()
    }

    fn deliver(&mut self, doc: &EventDoc, _stop: &AtomicBool) -> Result<String, DeliveryError> {
        let deadline = Deadline::after(self.timeout);
        let url = self.url.to_string();
        let mut stream = self.connect(&deadline)?;
        let request = self.request(doc);
        stream
            .set_write_timeout(Some(deadline.left(&|| format!("sending to {url}"))?))
            .map_err(|e| io_error(format!("sending to {url}"), e, &deadline))?;
        stream
            .write_all(&request)
            .map_err(|e| io_error(format!("sending to {url}"), e, &deadline))?;
        // The head, then what is needed of the body.
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 2048];
        let mut interim = 0;
        let (status, reason, body_at) = loop {
            if let Some(head) = parse_head(&buf).map_err(DeliveryError::Garbled)? {
                // An interim answer (100 Continue, 102, 103) is followed by the final
                // one: skipped, a few at most.
                if (100..200).contains(&head.0) && interim < 4 {
                    interim += 1;
                    buf.drain(..head.2);
                    continue;
                }
                break head;
            }
            let left = deadline.left(&|| format!("waiting for {url}'s answer"))?;
            stream
                .set_read_timeout(Some(left))
                .map_err(|e| io_error(format!("reading {url}'s answer"), e, &deadline))?;
            let want = chunk.len().min(MAX_HEAD + 4 - buf.len().min(MAX_HEAD));
            let n = stream
                .read(&mut chunk[..want.max(1)])
                .map_err(|e| io_error(format!("reading {url}'s answer"), e, &deadline))?;
            if n == 0 {
                return Err(DeliveryError::Garbled(if buf.is_empty() {
                    format!("{url} closed the connection without an answer")
                } else {
                    format!(
                        "{url} closed the connection in the answer's head: {:?}",
                        excerpt(&buf, 60)
                    )
                }));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        if (200..300).contains(&status) {
            return Ok(format!("HTTP {status} {reason}").trim_end().to_owned());
        }
        // A failure: read a little of the body for the log, within the deadline.
        let mut body: Vec<u8> = buf[body_at..].to_vec();
        while body.len() < MAX_BODY {
            let Ok(left) = deadline.left(&String::new) else {
                break;
            };
            if stream.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match stream.read(&mut chunk[..(MAX_BODY - body.len()).min(2048)]) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        body.truncate(MAX_BODY);
        Err(DeliveryError::Refused(format!(
            "{url} answered HTTP {status} {reason}: {:?}",
            excerpt(&body, 200)
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn test_urls() {
        let u = HttpUrl::parse("http://hooks.example:8080/a/b?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("hooks.example", 8080, "/a/b?x=1")
        );
        assert_eq!(u.to_string(), "http://hooks.example:8080/a/b?x=1");
        let u = HttpUrl::parse("http://127.0.0.1").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        let u = HttpUrl::parse("http://[::1]:9/h").unwrap();
        assert_eq!((u.connect_host(), u.port), ("::1", 9));
        for bad in [
            "https://x/",
            "ftp://x/",
            "http://",
            "http://x:0/",
            "http://x:99999/",
            "http://u:p@x/",
            "http://x/ y",
            "http://x/#f",
            "http://[zz]/",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(HttpUrl::parse("https://x/").unwrap_err().contains("TLS"));
    }

    #[test]
    fn test_heads() {
        assert_eq!(parse_head(b"HTTP/1.1 20").unwrap(), None);
        assert_eq!(
            parse_head(b"HTTP/1.1 204 No Content\r\nA: b\r\n\r\nrest").unwrap(),
            Some((204, "No Content".into(), 33))
        );
        assert_eq!(
            parse_head(b"HTTP/1.0 500 \r\n\r\n").unwrap(),
            Some((500, String::new(), 17))
        );
        assert!(parse_head(b"garbage garbage\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 2000 OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/2 200 OK\r\n\r\n").is_err());
        assert!(parse_head(&vec![b'H'; MAX_HEAD]).is_err());
        assert!(
            parse_head(b"SMTP 220").is_err(),
            "refused before the end of headers"
        );
    }
}
