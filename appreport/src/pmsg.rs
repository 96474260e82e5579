//! The arguments of the report exchange's messages (docs/hvncp.md "Application reports").
//!
//! | message | direction | payload |
//! |---|---|---|
//! | `PMSG_REQ` | monitor → agent | `PMSG_REQ:<req>` |
//! | `PMSG_RSP` | agent → monitor | `PMSG_RSP:<req>:<generation>:<index>/<count>:<chunk>` |
//! | `GMSG` | monitor → agent | `GMSG:<req>:<generation>` |
//! | `CLRDB` | agent → monitor | `CLRDB:<req>:<generation>` |
//!
//! `req` is the request id the monitor chose, 1-16 hexadecimal digits of either case
//! (written lowercase, no leading zeros); `generation` the report generation in decimal (1-20
//! digits); `index` 1..=`count`, `count` 1..=[`MAX_CHUNKS`], both decimal; `chunk` the
//! rest of the payload, raw, at most [`MAX_CHUNK`] bytes (it may contain `:`). A body is
//! cut into chunks of [`MAX_CHUNK`] bytes, the last shorter, so that every `PMSG_RSP`
//! fits one HVNCP packet whatever the peer's largest reassembled message.
//!
//! The functions here take the arguments, the bytes after `VERB:` (the dataplane's
//! message codec splits the verb off).

use std::fmt;

use crate::report::{MAX_BODY, hvha_digits, parse_hex};

/// Largest chunk of a body in one `PMSG_RSP`: with the header it stays well inside one
/// 1492-byte HVNCP packet.
pub const MAX_CHUNK: usize = 1024;

/// Most chunks of one body: [`MAX_BODY`] / [`MAX_CHUNK`].
pub const MAX_CHUNKS: usize = MAX_BODY / MAX_CHUNK;

/// Why a message's arguments were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmsgError {
    /// The verb.
    pub verb: &'static str,
    /// What the arguments must be.
    pub rule: &'static str,
}

impl fmt::Display for PmsgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad {} arguments: {}", self.verb, self.rule)
    }
}

impl std::error::Error for PmsgError {}

/// `PMSG_REQ`: the monitor asks for the agent's current report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmsgReq {
    /// The request id, echoed in every answer.
    pub req: u64,
}

impl PmsgReq {
    /// The verb.
    pub const VERB: &'static str = "PMSG_REQ";

    /// Parse `<req>`.
    pub fn parse(args: &[u8]) -> Result<PmsgReq, PmsgError> {
        let req = hex(args).ok_or(PmsgError {
            verb: Self::VERB,
            rule: "<request id: 1-16 hex digits>",
        })?;
        Ok(PmsgReq { req })
    }

    /// The whole payload, `PMSG_REQ:<req>`.
    pub fn encode(&self) -> Vec<u8> {
        format!("{}:{:x}", Self::VERB, self.req).into_bytes()
    }
}

/// `PMSG_RSP`: one chunk of the report answering a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmsgRsp<'a> {
    /// The request answered.
    pub req: u64,
    /// The generation of the report the chunk belongs to.
    pub generation: u64,
    /// 1..=`count`.
    pub index: u16,
    /// How many chunks the body has, 1..=[`MAX_CHUNKS`].
    pub count: u16,
    /// The bytes, at most [`MAX_CHUNK`].
    pub chunk: &'a [u8],
}

impl<'a> PmsgRsp<'a> {
    /// The verb.
    pub const VERB: &'static str = "PMSG_RSP";

    /// Parse `<req>:<generation>:<index>/<count>:<chunk>`.
    pub fn parse(args: &'a [u8]) -> Result<PmsgRsp<'a>, PmsgError> {
        let err = |rule| PmsgError {
            verb: Self::VERB,
            rule,
        };
        let mut parts = args.splitn(4, |&b| b == b':');
        let req = parts
            .next()
            .and_then(hex)
            .ok_or(err("<request id: 1-16 hex digits> first"))?;
        let generation = parts
            .next()
            .and_then(dec)
            .ok_or(err("<generation: 1-20 decimal digits> second"))?;
        let position = parts.next().ok_or(err("<index>/<count> third"))?;
        let chunk = parts.next().ok_or(err("<chunk> fourth, after a ':'"))?;
        let mut pos = position.splitn(2, |&b| b == b'/');
        let index = pos.next().and_then(dec);
        let count = pos.next().and_then(dec);
        let (Some(index), Some(count)) = (index, count) else {
            return Err(err("<index>/<count>: two decimal numbers"));
        };
        if count == 0 || count > MAX_CHUNKS as u64 || index == 0 || index > count {
            return Err(err("1 <= index <= count <= 64"));
        }
        if chunk.len() > MAX_CHUNK {
            return Err(err("a chunk of at most 1024 bytes"));
        }
        Ok(PmsgRsp {
            req,
            generation,
            // Both ≤ 64 (checked above).
            index: u16::try_from(index).unwrap_or(u16::MAX),
            count: u16::try_from(count).unwrap_or(u16::MAX),
            chunk,
        })
    }

    /// The whole payload, `PMSG_RSP:<req>:<generation>:<index>/<count>:<chunk>`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!(
            "{}:{:x}:{}:{}/{}:",
            Self::VERB,
            self.req,
            self.generation,
            self.index,
            self.count
        )
        .into_bytes();
        out.extend_from_slice(self.chunk);
        out
    }
}

/// `GMSG` (monitor → agent: the report of this generation reached the control plane) and
/// `CLRDB` (agent → monitor: the cycle is closed) carry the same arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirm {
    /// The request id (the monitor's).
    pub req: u64,
    /// The generation confirmed.
    pub generation: u64,
}

impl Confirm {
    /// The verb monitor → agent.
    pub const GMSG: &'static str = "GMSG";
    /// The verb agent → monitor.
    pub const CLRDB: &'static str = "CLRDB";

    /// Parse `<req>:<generation>` (the arguments of `GMSG` or `CLRDB`, named `verb` in errors).
    pub fn parse(verb: &'static str, args: &[u8]) -> Result<Confirm, PmsgError> {
        let err = PmsgError {
            verb,
            rule: "<request id: 1-16 hex digits>:<generation: 1-20 decimal digits>",
        };
        let mut parts = args.splitn(2, |&b| b == b':');
        let req = parts.next().and_then(hex).ok_or(err.clone())?;
        let generation = parts.next().and_then(dec).ok_or(err)?;
        Ok(Confirm { req, generation })
    }

    /// The whole payload `<verb>:<req>:<generation>` (`verb` [`Confirm::GMSG`] or [`Confirm::CLRDB`]).
    pub fn encode(&self, verb: &str) -> Vec<u8> {
        format!("{verb}:{:x}:{}", self.req, self.generation).into_bytes()
    }
}

fn hex(b: &[u8]) -> Option<u64> {
    parse_hex(std::str::from_utf8(b).ok()?)
}

fn dec(b: &[u8]) -> Option<u64> {
    hvha_digits(std::str::from_utf8(b).ok()?)
}

/// The chunks of `body`: [`MAX_CHUNK`] bytes each, the last shorter; one empty chunk for
/// an empty body. A body longer than [`MAX_BODY`] is refused (`None`).
pub fn split(body: &[u8]) -> Option<Vec<&[u8]>> {
    if body.len() > MAX_BODY {
        return None;
    }
    if body.is_empty() {
        return Some(vec![body]);
    }
    Some(body.chunks(MAX_CHUNK).collect())
}

/// The `PMSG_RSP` payloads answering request `req` with `body` at generation `generation`.
pub fn responses(req: u64, generation: u64, body: &[u8]) -> Option<Vec<Vec<u8>>> {
    let chunks = split(body)?;
    let count = u16::try_from(chunks.len()).ok()?;
    Some(
        chunks
            .iter()
            .zip(1u16..)
            .map(|(chunk, index)| {
                PmsgRsp {
                    req,
                    generation,
                    index,
                    count,
                    chunk,
                }
                .encode()
            })
            .collect(),
    )
}

/// Why reassembly gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReassemblyError {
    /// A chunk answers another request.
    WrongRequest {
        /// The request awaited.
        want: u64,
        /// The chunk's.
        got: u64,
    },
    /// A chunk's generation or count differs from the first chunk's.
    Inconsistent {
        /// What differs.
        what: &'static str,
    },
    /// A chunk arrived again with other bytes.
    Conflict {
        /// Its index.
        index: u16,
    },
}

impl fmt::Display for ReassemblyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReassemblyError::WrongRequest { want, got } => {
                write!(f, "chunk for request {got:x} while awaiting {want:x}")
            }
            ReassemblyError::Inconsistent { what } => {
                write!(f, "chunk's {what} differs from the first chunk's")
            }
            ReassemblyError::Conflict { index } => {
                write!(f, "chunk {index} arrived twice with different bytes")
            }
        }
    }
}

impl std::error::Error for ReassemblyError {}

/// Collects the chunks answering one request, in any order; holds at most
/// [`MAX_BODY`] bytes. A chunk arriving twice with the same bytes is ignored.
#[derive(Debug, Clone)]
pub struct Reassembler {
    req: u64,
    first: Option<(u64, u16)>,
    chunks: Vec<Option<Vec<u8>>>,
    missing: usize,
}

impl Reassembler {
    /// Await the answer to request `req`.
    pub fn new(req: u64) -> Reassembler {
        Reassembler {
            req,
            first: None,
            chunks: Vec::new(),
            missing: 0,
        }
    }

    /// The request awaited.
    pub fn req(&self) -> u64 {
        self.req
    }

    /// The generation of the chunks received, once one has been.
    pub fn generation(&self) -> Option<u64> {
        self.first.map(|(generation, _)| generation)
    }

    /// Chunks still missing, once the first has arrived.
    pub fn missing(&self) -> Option<usize> {
        self.first.map(|_| self.missing)
    }

    /// Take one chunk. `Ok(Some((generation, body)))` when the body is complete.
    pub fn push(&mut self, rsp: &PmsgRsp<'_>) -> Result<Option<(u64, Vec<u8>)>, ReassemblyError> {
        if rsp.req != self.req {
            return Err(ReassemblyError::WrongRequest {
                want: self.req,
                got: rsp.req,
            });
        }
        match self.first {
            None => {
                self.first = Some((rsp.generation, rsp.count));
                self.chunks = vec![None; usize::from(rsp.count)];
                self.missing = usize::from(rsp.count);
            }
            Some((generation, _)) if generation != rsp.generation => {
                return Err(ReassemblyError::Inconsistent { what: "generation" });
            }
            Some((_, count)) if count != rsp.count => {
                return Err(ReassemblyError::Inconsistent { what: "count" });
            }
            Some(_) => {}
        }
        let slot = usize::from(rsp.index)
            .checked_sub(1)
            .and_then(|i| self.chunks.get_mut(i))
            .ok_or(ReassemblyError::Inconsistent { what: "index" })?;
        match slot {
            Some(held) if held.as_slice() == rsp.chunk => return Ok(None),
            Some(_) => return Err(ReassemblyError::Conflict { index: rsp.index }),
            None => {
                *slot = Some(rsp.chunk.to_vec());
                self.missing -= 1;
            }
        }
        if self.missing > 0 {
            return Ok(None);
        }
        let body: Vec<u8> = self.chunks.drain(..).flatten().flatten().collect();
        let generation = self.first.map(|(g, _)| g).unwrap_or_default();
        Ok(Some((generation, body)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{AppReport, AppState, AppStatus};

    #[test]
    fn requests_and_confirmations_round_trip() {
        let r = PmsgReq { req: 0x1f };
        assert_eq!(r.encode(), b"PMSG_REQ:1f");
        assert_eq!(PmsgReq::parse(b"1F").unwrap(), r);
        assert_eq!(PmsgReq::parse(b"001f").unwrap(), r);
        let c = Confirm {
            req: 0xab,
            generation: 12,
        };
        assert_eq!(c.encode(Confirm::GMSG), b"GMSG:ab:12");
        assert_eq!(c.encode(Confirm::CLRDB), b"CLRDB:ab:12");
        assert_eq!(Confirm::parse(Confirm::GMSG, b"AB:012").unwrap(), c);
        for bad in [&b""[..], b"g", b"12345678901234567", b"1 "] {
            assert!(PmsgReq::parse(bad).is_err(), "{bad:?}");
        }
        for bad in [&b""[..], b"ab", b"ab:", b":1", b"ab:1:2", b"ab:x"] {
            let e = Confirm::parse(Confirm::CLRDB, bad).unwrap_err();
            assert_eq!(e.verb, "CLRDB", "{bad:?}");
        }
    }

    #[test]
    fn a_long_report_is_cut_into_chunks_that_reassemble_in_any_order() {
        let apps = (0..16)
            .map(|i| {
                let mut a = AppStatus::new(format!("app-{i}"), AppState::Failing);
                a.detail = format!(
                    "monitor script /opt/app-{i}/monitor.sh exited 3: {}",
                    "x".repeat(150)
                );
                a
            })
            .collect();
        let report = AppReport {
            inc: 0xfeed,
            generation: 42,
            apps,
        };
        let body = report.encode();
        let payloads = responses(0x7, 42, body.as_bytes()).unwrap();
        assert!(payloads.len() > 2, "{} chunks", payloads.len());
        assert!(payloads.iter().all(|p| p.len() <= MAX_CHUNK + 40));
        let mut r = Reassembler::new(7);
        let mut done = None;
        // Reversed, with a duplicate of the last chunk sent first.
        let mut order: Vec<&Vec<u8>> = payloads.iter().rev().collect();
        order.insert(1, payloads.last().unwrap());
        for p in order {
            let args = p.strip_prefix(b"PMSG_RSP:").unwrap();
            let rsp = PmsgRsp::parse(args).unwrap();
            assert!(done.is_none());
            done = r.push(&rsp).unwrap();
        }
        let (generation, got) = done.unwrap();
        assert_eq!(generation, 42);
        assert_eq!(AppReport::parse(&got).unwrap(), report);
    }

    #[test]
    fn a_chunk_may_hold_colons_and_the_empty_body_is_one_empty_chunk() {
        let p = PmsgRsp::parse(b"1:2:1/1:a:b:c").unwrap();
        assert_eq!(p.chunk, b"a:b:c");
        let payloads = responses(1, 1, b"").unwrap();
        assert_eq!(payloads, vec![b"PMSG_RSP:1:1:1/1:".to_vec()]);
        let mut r = Reassembler::new(1);
        let rsp = PmsgRsp::parse(b"1:1:1/1:").unwrap();
        assert_eq!(r.push(&rsp).unwrap(), Some((1, vec![])));
    }

    #[test]
    fn bad_chunks_are_refused_with_the_rule() {
        for (args, rule) in [
            (&b"x:1:1/1:a"[..], "request id"),
            (b"1:x:1/1:a", "generation"),
            (b"1:1:1-1:a", "two decimal"),
            (b"1:1:0/1:a", "1 <= index"),
            (b"1:1:2/1:a", "1 <= index"),
            (b"1:1:1/65:a", "1 <= index"),
            (b"1:1:1/1", "chunk"),
        ] {
            let e = PmsgRsp::parse(args).unwrap_err();
            assert!(e.rule.contains(rule), "{args:?}: {e}");
        }
        let mut big = b"1:1:1/1:".to_vec();
        big.extend(vec![b'a'; MAX_CHUNK + 1]);
        assert!(PmsgRsp::parse(&big).is_err());
        assert!(split(&vec![0; MAX_BODY + 1]).is_none());
        assert_eq!(split(&vec![0; MAX_BODY]).unwrap().len(), MAX_CHUNKS);
    }

    #[test]
    fn reassembly_refuses_mixed_answers() {
        let mut r = Reassembler::new(5);
        let a = PmsgRsp::parse(b"5:1:1/2:aa").unwrap();
        assert_eq!(r.push(&a).unwrap(), None);
        assert_eq!(r.missing(), Some(1));
        let other = PmsgRsp::parse(b"6:1:2/2:bb").unwrap();
        assert!(matches!(
            r.push(&other),
            Err(ReassemblyError::WrongRequest { .. })
        ));
        let newer = PmsgRsp::parse(b"5:2:2/2:bb").unwrap();
        assert!(matches!(
            r.push(&newer),
            Err(ReassemblyError::Inconsistent { what: "generation" })
        ));
        let count = PmsgRsp::parse(b"5:1:2/3:bb").unwrap();
        assert!(matches!(
            r.push(&count),
            Err(ReassemblyError::Inconsistent { what: "count" })
        ));
        let changed = PmsgRsp::parse(b"5:1:1/2:ab").unwrap();
        assert!(matches!(
            r.push(&changed),
            Err(ReassemblyError::Conflict { index: 1 })
        ));
        let last = PmsgRsp::parse(b"5:1:2/2:bb").unwrap();
        assert_eq!(r.push(&last).unwrap(), Some((1, b"aabb".to_vec())));
    }
}
