//! A small writer of classic pcap files (the libpcap format every capture tool reads),
//! for captures the tests build frame by frame: the HVNCP golden frames that
//! `tests/tests/wireshark.rs` hands to `tshark`.
//!
//! Format (libpcap's `pcap-savefile(5)`): a 24-byte global header — magic `0xa1b2c3d4`
//! (microsecond timestamps) in the writer's byte order, version 2.4, time zone 0,
//! accuracy 0, snapshot length, link type — then per frame a 16-byte record header
//! (seconds, microseconds, captured length, original length) and the frame's bytes.
//! Little-endian throughout, as on the machines that run the tests; readers detect the
//! byte order from the magic.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Duration;

/// Link type of Ethernet II frames (`LINKTYPE_ETHERNET`).
pub const LINKTYPE_ETHERNET: u32 = 1;

/// Snapshot length written in the header: frames up to this length are whole.
pub const SNAPLEN: u32 = 65_535;

/// Classic pcap magic number for microsecond timestamps.
const MAGIC: u32 = 0xa1b2_c3d4;

/// Writes Ethernet frames into a classic pcap file.
pub struct PcapWriter<W: Write> {
    out: W,
    frames: usize,
}

impl PcapWriter<BufWriter<File>> {
    /// Create (or truncate) `path` and write the global header.
    pub fn create(path: &Path) -> io::Result<Self> {
        PcapWriter::new(BufWriter::new(File::create(path)?))
    }
}

impl<W: Write> PcapWriter<W> {
    /// Write the global header (Ethernet link type) to `out`.
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&MAGIC.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?; // version major
        out.write_all(&4u16.to_le_bytes())?; // version minor
        out.write_all(&0i32.to_le_bytes())?; // time zone offset
        out.write_all(&0u32.to_le_bytes())?; // timestamp accuracy
        out.write_all(&SNAPLEN.to_le_bytes())?;
        out.write_all(&LINKTYPE_ETHERNET.to_le_bytes())?;
        Ok(PcapWriter { out, frames: 0 })
    }

    /// Append one frame captured at `at` (since the Unix epoch). Frames longer than
    /// [`SNAPLEN`] are refused: a test frame is never that long.
    pub fn write(&mut self, at: Duration, frame: &[u8]) -> io::Result<()> {
        let len = u32::try_from(frame.len())
            .ok()
            .filter(|l| *l <= SNAPLEN)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("frame of {} bytes exceeds the snapshot length", frame.len()),
                )
            })?;
        let secs = u32::try_from(at.as_secs()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("timestamp {at:?} does not fit a classic pcap record"),
            )
        })?;
        self.out.write_all(&secs.to_le_bytes())?;
        self.out.write_all(&at.subsec_micros().to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?; // captured length
        self.out.write_all(&len.to_le_bytes())?; // original length
        self.out.write_all(frame)?;
        self.frames += 1;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Flush and return the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The bytes of a one-frame file, field by field (pcap-savefile(5)).
    #[test]
    fn header_and_record_layout() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(Duration::new(1_556_303_548, 719_328_000), &[0xab; 3])
            .unwrap();
        assert_eq!(w.frames(), 1);
        let bytes = w.finish().unwrap();
        let mut expected = vec![
            0xd4, 0xc3, 0xb2, 0xa1, // magic, little-endian
            2, 0, 4, 0, // version 2.4
            0, 0, 0, 0, // time zone
            0, 0, 0, 0, // accuracy
            0xff, 0xff, 0, 0, // snapshot length 65535
            1, 0, 0, 0, // LINKTYPE_ETHERNET
        ];
        expected.extend_from_slice(&1_556_303_548u32.to_le_bytes());
        expected.extend_from_slice(&719_328u32.to_le_bytes());
        expected.extend_from_slice(&[3, 0, 0, 0, 3, 0, 0, 0, 0xab, 0xab, 0xab]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn oversized_frame_is_refused() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let err = w.write(Duration::ZERO, &vec![0; 65_536]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(w.frames(), 0);
    }
}
