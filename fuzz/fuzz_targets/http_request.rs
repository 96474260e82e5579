//! What a browser (or anyone reaching the dashboard's port) sends, through the
//! dashboard's request parser and form decoding (`controlplane::dash::http`): any bytes,
//! delivered whole and in pieces cut where the first byte says.
//!
//! Never a panic. An accepted request has a path starting with `/` without control
//! characters, at most `MAX_FIELDS` query and form pairs and `MAX_HEADERS` headers; a
//! request still incomplete holds less than a head and a body's worth of bytes; the same
//! bytes in pieces give the same answer. Decoded pairs encode and decode back to
//! themselves.

#![no_main]

use controlplane::dash::http::{
    MAX_BODY, MAX_FIELDS, MAX_HEAD, MAX_HEADERS, RequestBuffer, decode_pairs, encode_pairs,
    parse_request,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = parse_request(data);
    match &whole {
        Ok(Some(req)) => {
            assert!(req.path.starts_with('/'), "path {:?}", req.path);
            assert!(
                !req.path.chars().any(char::is_control),
                "path {:?}",
                req.path
            );
            assert!(req.query.len() <= MAX_FIELDS && req.form.len() <= MAX_FIELDS);
            assert!(req.headers.len() <= MAX_HEADERS);
        }
        Ok(None) => assert!(
            data.len() < MAX_HEAD + MAX_BODY,
            "incomplete after {} bytes",
            data.len()
        ),
        Err(e) => assert!([400, 413, 415, 431, 501].contains(&e.status()), "{e}"),
    }
    // The same bytes in pieces of 1 + data[0] % 64 bytes.
    let step = 1 + usize::from(data.first().copied().unwrap_or(0) % 64);
    let mut buf = RequestBuffer::new();
    let mut pieces = Ok(None);
    for chunk in data.chunks(step) {
        pieces = buf.push(chunk);
        if !matches!(pieces, Ok(None)) {
            break;
        }
    }
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "pieces of {step}"),
        // A head cut off early is refused as too large either way; the other errors
        // are the same.
        (Err(a), Err(b)) => assert_eq!(a.status(), b.status(), "{a} / {b}"),
        (a, b) => panic!("whole {a:?}, in pieces of {step} {b:?}"),
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(pairs) = decode_pairs(text)
    {
        assert!(pairs.len() <= MAX_FIELDS);
        let again = decode_pairs(&encode_pairs(&pairs)).expect("encoded pairs decode");
        assert_eq!(again, pairs);
    }
});
