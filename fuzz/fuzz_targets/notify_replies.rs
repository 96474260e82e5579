//! What a webhook receiver or an SMTP relay answers, and a webhook URL from the
//! configuration, through the notifiers' parsers (`controlplane::notify`): any bytes.
//!
//! Never a panic. An HTTP head is accepted only once complete (its end within the
//! bytes, at most `MAX_HEAD` of them), with a three-digit status; a refusal's message is
//! bounded. An SMTP reply consumes at most the bytes given, has a three-digit code and at
//! most `MAX_REPLY_LINES` lines of at most `MAX_REPLY_LINE` bytes; parsing what follows
//! it goes on from there (a pipeline of replies) and ends. An accepted URL has a path
//! starting with `/` and is no longer than `MAX_URL`.

#![no_main]

use controlplane::notify::email::{MAX_REPLY_LINE, MAX_REPLY_LINES, parse_reply};
use controlplane::notify::webhook::{HttpUrl, MAX_HEAD, MAX_URL, parse_head};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_head(data) {
        Ok(Some((status, reason, consumed))) => {
            assert!((100..=999).contains(&status), "status {status}");
            assert!(
                consumed <= data.len(),
                "consumed {consumed} of {}",
                data.len()
            );
            assert!(consumed <= MAX_HEAD + 4, "a head of {consumed} bytes");
            assert!(reason.len() <= consumed);
        }
        Ok(None) => assert!(data.len() < MAX_HEAD, "incomplete past the bound"),
        Err(why) => assert!(
            why.len() <= 512,
            "an unbounded message: {} bytes",
            why.len()
        ),
    }
    let mut at = 0;
    let mut replies = 0;
    while at < data.len() {
        match parse_reply(&data[at..]) {
            Ok(Some((reply, consumed))) => {
                assert!(consumed > 0 && consumed <= data.len() - at);
                assert!((100..=999).contains(&reply.code), "code {}", reply.code);
                assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_REPLY_LINES);
                assert!(reply.lines.iter().all(|l| l.len() <= MAX_REPLY_LINE));
                at += consumed;
                replies += 1;
                assert!(replies <= data.len(), "more replies than bytes");
            }
            Ok(None) => break,
            Err(why) => {
                assert!(
                    why.len() <= 512,
                    "an unbounded message: {} bytes",
                    why.len()
                );
                break;
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(url) = HttpUrl::parse(text)
    {
        assert!(url.path.starts_with('/'), "path {:?}", url.path);
        assert!(
            text.len() <= MAX_URL,
            "a URL of {} bytes accepted",
            text.len()
        );
        assert!(!url.host.is_empty());
    }
});
