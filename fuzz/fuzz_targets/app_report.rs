//! An application report and the report exchange's arguments, as a guest could send them
//! (`hvha_appreport`): any bytes.
//!
//! Never a panic. A report that parses has at most `MAX_APPS` applications with unique,
//! valid names and details of at most `MAX_DETAIL` bytes, and encoding it gives a text
//! that parses to the same report. `PMSG_RSP` arguments that parse have
//! 1 <= index <= count <= `MAX_CHUNKS` and a chunk of at most `MAX_CHUNK` bytes. The
//! bytes cut at every newline, read as a series of `PMSG_RSP` arguments for one request,
//! never make the reassembler hold more than `MAX_BODY` bytes.

#![no_main]

use hvha_appreport::pmsg::{Confirm, MAX_CHUNK, MAX_CHUNKS, PmsgReq, PmsgRsp, Reassembler};
use hvha_appreport::{AppReport, MAX_APPS, MAX_BODY, MAX_DETAIL, valid_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = AppReport::parse(data) {
        assert!(report.apps.len() <= MAX_APPS);
        for app in &report.apps {
            assert!(valid_name(&app.name), "name {:?}", app.name);
            // Invalid UTF-8 is replaced, which may grow the text by 2 bytes per byte.
            assert!(
                app.detail.len() <= MAX_DETAIL * 3,
                "detail of {}",
                app.detail.len()
            );
        }
        let text = report.encode();
        let again = AppReport::parse(text.as_bytes()).expect("an encoded report parses");
        assert_eq!(again.apps.len(), report.apps.len());
        assert_eq!(again.encode(), text, "encoding is stable");
    }
    let _ = PmsgReq::parse(data);
    let _ = Confirm::parse(Confirm::GMSG, data);
    if let Ok(rsp) = PmsgRsp::parse(data) {
        assert!(rsp.index >= 1 && rsp.index <= rsp.count);
        assert!(usize::from(rsp.count) <= MAX_CHUNKS);
        assert!(rsp.chunk.len() <= MAX_CHUNK);
    }
    let mut r = Reassembler::new(1);
    for line in data.split(|&b| b == b'\n') {
        if let Ok(rsp) = PmsgRsp::parse(line)
            && let Ok(Some((_, body))) = r.push(&rsp)
        {
            assert!(body.len() <= MAX_BODY);
            r = Reassembler::new(1);
        }
    }
});
