//! Any bytes as a QuickQuery / NeedsAttention / Acknowledge / node-data document, through
//! `controlplane::hs::xml::parse_document` with the default limits.
//!
//! Never a panic. For every document the parser accepts, writing it and parsing the text
//! again gives the same value, and writing that gives the same text (the writer's output is
//! canonical: a fixed point). For every refusal the error displays, and quotes at most
//! `EXCERPT_CHARS` characters of any value.

#![no_main]

use controlplane::hs::xml::{XmlLimits, parse_document, write_document};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = XmlLimits::default();
    match parse_document(data, &limits) {
        Ok(doc) => {
            let text = write_document(&doc);
            let again = match parse_document(text.as_bytes(), &limits) {
                Ok(again) => again,
                Err(e) => panic!("written document refused: {e}\n{text}"),
            };
            assert_eq!(again, doc, "parse(write(x)) != x\n{text}");
            assert_eq!(write_document(&again), text, "write is not a fixed point");
        }
        Err(e) => {
            let message = e.to_string();
            // A message is a line or two, never the input echoed back.
            assert!(
                message.len() <= 1_024,
                "error message of {} bytes",
                message.len()
            );
        }
    }
});
