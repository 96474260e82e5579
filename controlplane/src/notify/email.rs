//! The email channel: one message per event, sent through a configured SMTP relay
//! (RFC 5321) in one session per attempt: the greeting, `EHLO` (`HELO` when the relay
//! answers 500 or 502 to it), `MAIL FROM` (`BODY=8BITMIME` when announced), one
//! `RCPT TO` per recipient, `DATA` with the message dot-stuffed, `QUIT`.
//!
//! - every reply is parsed strictly: three digits, `-` on every line but the last, the
//!   same code on every line; a line is at most 2,048 bytes and a reply at most 64
//!   lines; anything else is a garbled answer (the attempt fails);
//! - a `4xx`/`5xx` reply fails the attempt and the log shows the command and the reply;
//!   a recipient refused while another is accepted is logged and the message goes to
//!   the accepted ones (one bad address does not hold every event back);
//! - the message: `From`, `To`, `Subject: [hvha <severity>] <kind>: <text>`, `Date`,
//!   `Message-ID: <hvha-event-<id>.<from-domain>>` (a receiver drops a repeated
//!   delivery by it), `X-Hvha-Event-Id`, a text body with the document's fields and the
//!   JSON document; lines are CRLF, at most 998 bytes, a leading `.` doubled;
//! - plain SMTP without TLS or AUTH (hactl links no TLS stack, and AUTH in clear text
//!   would expose the password): send to a local MTA (postfix, exim, msmtpd on
//!   127.0.0.1) that relays on with STARTTLS and authentication (docs/operators.md).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::{Channel, Deadline, DeliveryError, EventDoc, excerpt, io_error};

/// Longest reply line read.
pub const MAX_REPLY_LINE: usize = 2048;
/// Most lines in one reply.
pub const MAX_REPLY_LINES: usize = 64;
/// Longest line of a message (RFC 5322 §2.1.1).
const MAX_LINE: usize = 998;

/// The email channel's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailConfig {
    /// The relay's host name or address.
    pub host: String,
    /// Its port (25).
    pub port: u16,
    /// The envelope and header sender.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
    /// The name sent in `EHLO` (default: this machine's host name).
    pub helo: Option<String>,
}

/// An address as SMTP and the configuration accept it: `local@domain`, printable ASCII,
/// no spaces, brackets, quotes or commas, at most 254 bytes.
pub fn check_address(a: &str) -> Result<(), String> {
    let ok = a.len() <= 254
        && a.chars()
            .all(|c| c.is_ascii_graphic() && !"<>\"(),;:\\[]".contains(c))
        && a.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if ok {
        Ok(())
    } else {
        Err(
            "an address local@domain of at most 254 printable ASCII characters, without \
             spaces, quotes, brackets or commas"
                .into(),
        )
    }
}

/// A reply: its code and its lines' text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line (after the code and separator).
    pub lines: Vec<String>,
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

/// Parse the reply at the start of `buf`: `Ok(None)` while incomplete, `Ok(Some((reply,
/// consumed)))`, or why it is not SMTP.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let mut at = 0;
    let mut code: Option<u16> = None;
    let mut lines = Vec::new();
    loop {
        let rest = &buf[at..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() > MAX_REPLY_LINE {
                return Err(format!("a reply line longer than {MAX_REPLY_LINE} bytes"));
            }
            return Ok(None);
        };
        if nl > MAX_REPLY_LINE {
            return Err(format!("a reply line longer than {MAX_REPLY_LINE} bytes"));
        }
        let line = &rest[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at += nl + 1;
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(format!("not an SMTP reply line: {:?}", excerpt(line, 80)));
        }
        let this = u16::from(line[0] - b'0') * 100
            + u16::from(line[1] - b'0') * 10
            + u16::from(line[2] - b'0');
        if !(200..=599).contains(&this) {
            return Err(format!("reply code {this} out of range"));
        }
        if code.is_some_and(|c| c != this) {
            return Err(format!(
                "a multi-line reply changes its code: {:?}",
                excerpt(line, 80)
            ));
        }
        code = Some(this);
        let last = match line.get(3) {
            None | Some(b' ') => true,
            Some(b'-') => false,
            Some(_) => {
                return Err(format!("not an SMTP reply line: {:?}", excerpt(line, 80)));
            }
        };
        lines.push(excerpt(line.get(4..).unwrap_or_default(), 200));
        if lines.len() > MAX_REPLY_LINES {
            return Err(format!("a reply of more than {MAX_REPLY_LINES} lines"));
        }
        if last {
            return Ok(Some((Reply { code: this, lines }, at)));
        }
    }
}

/// RFC 5322 date of `ms` since the Unix epoch, in UTC: `Mon, 30 Nov 2026 18:30:22 +0000`.
pub fn rfc5322_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let weekday = WEEKDAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)];
    let month = MONTHS[usize::try_from(month - 1).unwrap_or(0).min(11)];
    format!(
        "{weekday}, {day:02} {month} {year} {:02}:{:02}:{:02} +0000",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// One header value: control characters replaced, at most `max` characters.
fn header_value(text: &str, max: usize) -> String {
    let mut v: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        v.push('…');
    }
    v
}

/// The message of `doc`, CRLF lines, dot-stuffed, ending with the `.` line. Non-ASCII
/// text is replaced by `?` when the relay does not announce 8BITMIME.
pub fn message(cfg: &EmailConfig, doc: &EventDoc, eight_bit: bool) -> Vec<u8> {
    let domain = cfg.from.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let subject = header_value(
        &format!("[hvha {}] {}: {}", doc.severity, doc.kind, doc.text),
        150,
    );
    let mut lines: Vec<String> = vec![
        format!("From: {}", cfg.from),
        format!("To: {}", cfg.to.join(", ")),
        format!("Subject: {subject}"),
        format!("Date: {}", rfc5322_date(doc.created_ms)),
        format!("Message-ID: <hvha-event-{}.{domain}>", doc.id),
        format!("X-Hvha-Event-Id: {}", doc.id),
        "MIME-Version: 1.0".to_owned(),
        "Content-Type: text/plain; charset=utf-8".to_owned(),
        format!(
            "Content-Transfer-Encoding: {}",
            if eight_bit { "8bit" } else { "7bit" }
        ),
        String::new(),
    ];
    let field = |name: &str, v: &Option<String>| format!("{name}: {}", v.as_deref().unwrap_or("-"));
    lines.push(format!("Event {} ({}, {})", doc.id, doc.kind, doc.severity));
    lines.push(format!("Time: {}", rfc5322_date(doc.created_ms)));
    lines.push(field("Host group", &doc.host_group));
    lines.push(field("Host", &doc.host));
    lines.push(field("VM", &doc.vm));
    lines.push(field("Host monitor", &doc.hm));
    lines.push(String::new());
    lines.extend(doc.text.lines().map(str::to_owned));
    lines.push(String::new());
    lines.push(doc.to_json());
    let mut out = Vec::new();
    for line in lines {
        let line: String = if eight_bit {
            line.replace('\r', " ")
        } else {
            line.chars()
                .map(|c| if c.is_ascii() && c != '\r' { c } else { '?' })
                .collect()
        };
        // Lines of at most 998 bytes, cut at a character boundary.
        let mut rest = line.as_str();
        loop {
            let mut cut = rest.len().min(MAX_LINE);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (part, tail) = rest.split_at(cut);
            if part.starts_with('.') {
                out.push(b'.');
            }
            out.extend_from_slice(part.as_bytes());
            out.extend_from_slice(b"\r\n");
            if tail.is_empty() {
                break;
            }
            rest = tail;
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The email channel.
#[derive(Debug)]
pub struct Email {
    cfg: EmailConfig,
    helo: String,
    timeout: Duration,
}

impl Email {
    /// An email channel, each attempt (the whole session) bounded by `timeout`.
    pub fn new(cfg: EmailConfig, timeout: Duration) -> Email {
        let helo = cfg.helo.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
                .unwrap_or_else(|| "localhost".to_owned())
        });
        Email { cfg, helo, timeout }
    }
}

/// One SMTP session.
struct Session<'a> {
    stream: TcpStream,
    buf: Vec<u8>,
    deadline: Deadline,
    relay: &'a str,
}

impl Session<'_> {
    fn reply(&mut self, after: &str) -> Result<Reply, DeliveryError> {
        let mut chunk = [0u8; 1024];
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(why) => {
                    return Err(DeliveryError::Garbled(format!(
                        "{} after {after}: {why}",
                        self.relay
                    )));
                }
            }
            let what = || format!("{} after {after}", self.relay);
            let left = self.deadline.left(&what)?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| io_error(what(), e, &self.deadline))?;
            let n = self
                .stream
                .read(&mut chunk)
                .map_err(|e| io_error(what(), e, &self.deadline))?;
            if n == 0 {
                return Err(DeliveryError::Garbled(format!(
                    "{} closed the connection after {after}",
                    self.relay
                )));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn send(&mut self, bytes: &[u8], what: &str) -> Result<(), DeliveryError> {
        let w = || format!("sending {what} to {}", self.relay);
        let left = self.deadline.left(&w)?;
        self.stream
            .set_write_timeout(Some(left))
            .map_err(|e| io_error(w(), e, &self.deadline))?;
        self.stream
            .write_all(bytes)
            .map_err(|e| io_error(w(), e, &self.deadline))
    }

    /// Send a command and read its reply, whatever its code.
    fn exchange(&mut self, line: &str) -> Result<Reply, DeliveryError> {
        self.send(format!("{line}\r\n").as_bytes(), line)?;
        self.reply(line)
    }

    /// Send a command and expect one of the `ok` codes.
    fn command(&mut self, line: &str, ok: &[u16]) -> Result<Reply, DeliveryError> {
        let shown = line.to_owned();
        let reply = self.exchange(line)?;
        if ok.contains(&reply.code) {
            Ok(reply)
        } else {
            Err(DeliveryError::Refused(format!(
                "{} answered {shown} with {reply}",
                self.relay
            )))
        }
    }
}

impl Channel for Email {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn target(&self) -> String {
        format!(
            "smtp://{}:{} → {}",
            self.cfg.host,
            self.cfg.port,
            self.cfg.to.join(", ")
        )
    }

    fn deliver(&mut self, doc: &EventDoc, _stop: &AtomicBool) -> Result<String, DeliveryError> {
        let deadline = Deadline::after(self.timeout);
        let relay = format!("{}:{}", self.cfg.host, self.cfg.port);
        let addrs: Vec<SocketAddr> = (self.cfg.host.as_str(), self.cfg.port)
            .to_socket_addrs()
            .map_err(|source| DeliveryError::Connect {
                target: relay.clone(),
                source,
            })?
            .collect();
        let mut stream = None;
        let mut last = None;
        for addr in addrs {
            let left = deadline.left(&|| format!("connecting to {relay}"))?;
            match TcpStream::connect_timeout(&addr, left) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(stream) = stream else {
            return Err(DeliveryError::Connect {
                target: relay,
                source: last.unwrap_or_else(|| std::io::Error::other("no address")),
            });
        };
        let mut s = Session {
            stream,
            buf: Vec::new(),
            deadline,
            relay: &relay,
        };
        let greeting = s.reply("connecting")?;
        if greeting.code != 220 {
            return Err(DeliveryError::Refused(format!(
                "{relay} greeted with {greeting}"
            )));
        }
        // A relay that does not know EHLO (500, 502) is greeted the old way: no
        // extensions, so a 7-bit message.
        let ehlo_line = format!("EHLO {}", self.helo);
        let ehlo = s.exchange(&ehlo_line)?;
        let eight_bit = match ehlo.code {
            250 => ehlo
                .lines
                .iter()
                .any(|l| l.eq_ignore_ascii_case("8BITMIME")),
            500 | 502 => {
                s.command(&format!("HELO {}", self.helo), &[250])?;
                false
            }
            _ => {
                return Err(DeliveryError::Refused(format!(
                    "{relay} answered {ehlo_line} with {ehlo}"
                )));
            }
        };
        let mail = if eight_bit {
            format!("MAIL FROM:<{}> BODY=8BITMIME", self.cfg.from)
        } else {
            format!("MAIL FROM:<{}>", self.cfg.from)
        };
        s.command(&mail, &[250])?;
        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        for to in &self.cfg.to {
            match s.command(&format!("RCPT TO:<{to}>"), &[250, 251]) {
                Ok(_) => accepted.push(to.as_str()),
                Err(DeliveryError::Refused(why)) => refused.push(why),
                Err(e) => return Err(e),
            }
        }
        if accepted.is_empty() {
            let _ = s.command("RSET", &[250]);
            return Err(DeliveryError::Refused(format!(
                "every recipient refused: {}",
                refused.join("; ")
            )));
        }
        for why in &refused {
            tracing::error!(
                event = doc.id,
                "email: a recipient refused (the others get the message): {why}"
            );
        }
        s.command("DATA", &[354])?;
        s.send(&message(&self.cfg, doc, eight_bit), "the message")?;
        let done = s.reply("the message")?;
        if done.code != 250 {
            return Err(DeliveryError::Refused(format!(
                "{relay} refused the message: {done}"
            )));
        }
        // The message is accepted: a failing QUIT changes nothing.
        let _ = s.command("QUIT", &[221]);
        Ok(format!(
            "{relay} accepted it for {}: {done}",
            accepted.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::events::Severity;

    #[test]
    fn test_replies_are_parsed_strictly() {
        assert_eq!(
            parse_reply(b"220 ready").unwrap(),
            None,
            "no end of line yet"
        );
        let (r, used) = parse_reply(b"250-mx\r\n250-8BITMIME\r\n250 SIZE 1\r\nX")
            .unwrap()
            .unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, ["mx", "8BITMIME", "SIZE 1"]);
        assert_eq!(used, 34);
        assert_eq!(parse_reply(b"250\r\n").unwrap().unwrap().0.code, 250);
        for bad in [
            &b"hello\r\n"[..],
            b"25 x\r\n",
            b"250-a\r\n251 b\r\n",
            b"250_x\r\n",
            b"999 x\r\n",
            b"100 x\r\n",
        ] {
            assert!(
                parse_reply(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = vec![b'2'; MAX_REPLY_LINE + 10];
        assert!(parse_reply(&long).is_err());
        let many = b"250-x\r\n".repeat(MAX_REPLY_LINES + 1);
        assert!(parse_reply(&many).is_err());
    }

    #[test]
    fn test_dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_556_303_548_719),
            "Fri, 26 Apr 2019 18:32:28 +0000"
        );
        assert_eq!(
            rfc5322_date(1_709_164_800_000),
            "Thu, 29 Feb 2024 00:00:00 +0000"
        );
    }

    #[test]
    fn test_message_is_dot_stuffed_and_headers_are_one_line() {
        let cfg = EmailConfig {
            host: "127.0.0.1".into(),
            port: 25,
            from: "hvha@ops.example".into(),
            to: vec!["a@ops.example".into(), "b@ops.example".into()],
            helo: None,
        };
        let doc = EventDoc {
            v: 1,
            id: 7,
            kind: "VM_RESTART_FAILED".into(),
            severity: Severity::Critical,
            vm: None,
            hm: None,
            host: Some("host-a".into()),
            host_group: Some("hg1".into()),
            text: "line one\r\nSubject: injected\n.\n..two\nünï".into(),
            created_ms: 0,
        };
        let m = String::from_utf8(message(&cfg, &doc, true)).unwrap();
        assert!(m.contains("\r\nSubject: [hvha critical] VM_RESTART_FAILED: line one  Subject: injected . ..two ünï\r\n"), "{m}");
        assert!(m.contains("\r\nMessage-ID: <hvha-event-7.ops.example>\r\n"));
        assert!(m.contains("\r\n..\r\n...two\r\n"), "dot-stuffed: {m}");
        assert!(m.ends_with("\r\n.\r\n"));
        assert!(!m.replace("\r\n", "").contains('\n'), "only CRLF");
        assert_eq!(m.matches("\r\n.\r\n").count(), 1, "one end");
        let m7 = String::from_utf8(message(&cfg, &doc, false)).unwrap();
        assert!(m7.is_ascii());
        let mut long = doc.clone();
        long.text = "x".repeat(3000);
        let m = String::from_utf8(message(&cfg, &long, true)).unwrap();
        assert!(m.split("\r\n").all(|l| l.len() <= 998));
        assert!(check_address("a@b").is_ok());
        for bad in ["a", "@b", "a@", "a b@c", "<a@b>", "a@b@c", "a,b@c"] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }
}
