//! The property payloads of the two SYN packets that open a session
//! (seed 004 L11430-11520): the agent introduces its VM, the monitor answers with its own
//! identity and the protocol version it runs.
//!
//! Keys may come in any order and any letter case, and unknown keys are ignored, so a
//! newer peer can add properties; a repeated known key is refused. Emission uses the
//! seed's key order, then the agent's incarnation (ours, docs/hvncp.md §4.2).

use super::Uuid;
use super::error::{MessageError, Result};
use super::text::{
    Digits, Properties, Sink, encode_into_slice, encode_to_vec, parse_hex, parse_version,
    put_version, set_once, version_len,
};
use crate::wire::Version;

/// Longest `ostype` accepted.
pub const MAX_OSTYPE_LEN: usize = 32;

/// The agent's SYN payload:
/// `uuid=<vm uuid>:ostype=<os>:verVmmLower=2.0:verVmmUpper=2.0[:inc=<16 hex digits>]`
/// (84 bytes with `ostype=AIX` and no incarnation, seed 004 L11430-11447).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AgentSyn<'a> {
    /// UUID of the VM the agent runs in.
    pub uuid: Uuid,
    /// Operating system, 1..=32 bytes of `A-Z a-z 0-9 _ . -` (`AIX`, `linux`, …).
    pub ostype: &'a str,
    /// Oldest protocol version the agent speaks.
    pub ver_lower: Version,
    /// Newest protocol version the agent speaks; never below `ver_lower`.
    pub ver_upper: Version,
    /// The agent process's incarnation (`inc`): 64 random bits chosen at its start, so
    /// that a monitor can tell a late SYN of a previous run from the current run's
    /// (docs/hvncp.md §3.8). `None` for agents that do not send it (the seed's).
    pub inc: Option<u64>,
}

impl<'a> AgentSyn<'a> {
    const UUID: &'static str = "uuid";
    const OSTYPE: &'static str = "ostype";
    const LOWER: &'static str = "verVmmLower";
    const UPPER: &'static str = "verVmmUpper";
    const INC: &'static str = "inc";

    /// Parse the payload.
    pub fn parse(payload: &'a [u8]) -> Result<AgentSyn<'a>> {
        let (mut uuid, mut ostype, mut lower, mut upper) = (None, None, None, None);
        let mut inc = None;
        for item in Properties::new(payload) {
            let (key, value) = item?;
            let slot = if key.eq_ignore_ascii_case(Self::UUID.as_bytes()) {
                (&mut uuid, Self::UUID)
            } else if key.eq_ignore_ascii_case(Self::OSTYPE.as_bytes()) {
                (&mut ostype, Self::OSTYPE)
            } else if key.eq_ignore_ascii_case(Self::LOWER.as_bytes()) {
                (&mut lower, Self::LOWER)
            } else if key.eq_ignore_ascii_case(Self::UPPER.as_bytes()) {
                (&mut upper, Self::UPPER)
            } else if key.eq_ignore_ascii_case(Self::INC.as_bytes()) {
                (&mut inc, Self::INC)
            } else {
                continue;
            };
            set_once(slot.0, slot.1, value)?;
        }
        let uuid = uuid.ok_or(MessageError::MissingKey { key: Self::UUID })?;
        let ostype = ostype.ok_or(MessageError::MissingKey { key: Self::OSTYPE })?;
        let lower = lower.ok_or(MessageError::MissingKey { key: Self::LOWER })?;
        let upper = upper.ok_or(MessageError::MissingKey { key: Self::UPPER })?;
        let syn = AgentSyn {
            uuid: Uuid::parse(uuid)?,
            ostype: parse_ostype(ostype)?,
            ver_lower: parse_version(lower, Self::LOWER)?,
            ver_upper: parse_version(upper, Self::UPPER)?,
            inc: inc.map(parse_incarnation).transpose()?,
        };
        if (syn.ver_lower.major, syn.ver_lower.minor) > (syn.ver_upper.major, syn.ver_upper.minor) {
            return Err(MessageError::VersionOrder {
                lower: syn.ver_lower,
                upper: syn.ver_upper,
            });
        }
        Ok(syn)
    }

    /// Length of the payload.
    pub fn encoded_len(&self) -> usize {
        "uuid=".len()
            + Uuid::TEXT_LEN
            + ":ostype=".len()
            + self.ostype.len()
            + ":verVmmLower=".len()
            + version_len(self.ver_lower)
            + ":verVmmUpper=".len()
            + version_len(self.ver_upper)
            + self.inc.map_or(0, |_| ":inc=".len() + INC_DIGITS)
    }

    /// Write the payload into `buf`; returns the bytes written.
    pub fn encode_into(&self, buf: &mut [u8]) -> Result<usize> {
        encode_into_slice(buf, self.encoded_len(), |s| self.emit(s))
    }

    /// Append the payload to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_to_vec(out, self.encoded_len(), |s| self.emit(s));
    }

    fn emit<S: Sink>(&self, s: &mut S) -> Result<()> {
        s.put(b"uuid=")?;
        s.put(&self.uuid.to_text())?;
        s.put(b":ostype=")?;
        s.put(self.ostype.as_bytes())?;
        s.put(b":verVmmLower=")?;
        put_version(s, self.ver_lower)?;
        s.put(b":verVmmUpper=")?;
        put_version(s, self.ver_upper)?;
        if let Some(inc) = self.inc {
            s.put(b":inc=")?;
            s.put(Digits::hex_padded(inc, INC_DIGITS).as_bytes())?;
        }
        Ok(())
    }
}

/// Digits of the canonical incarnation (`inc=` then 16 lowercase hexadecimal digits).
const INC_DIGITS: usize = 16;

/// The agent's incarnation: 1..=16 hexadecimal digits of either case.
fn parse_incarnation(value: &[u8]) -> Result<u64> {
    parse_hex(value).ok_or(MessageError::BadIncarnation { len: value.len() })
}

/// The monitor's SYN payload: `uuid=<hm uuid>:verHmRunning=2.0`
/// (58 bytes, seed 004 L11511-11520).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MonitorSyn {
    /// UUID of the host monitor.
    pub uuid: Uuid,
    /// Protocol version the monitor runs.
    pub ver_running: Version,
}

impl MonitorSyn {
    const UUID: &'static str = "uuid";
    const RUNNING: &'static str = "verHmRunning";

    /// Parse the payload.
    pub fn parse(payload: &[u8]) -> Result<MonitorSyn> {
        let (mut uuid, mut running) = (None, None);
        for item in Properties::new(payload) {
            let (key, value) = item?;
            if key.eq_ignore_ascii_case(Self::UUID.as_bytes()) {
                set_once(&mut uuid, Self::UUID, value)?;
            } else if key.eq_ignore_ascii_case(Self::RUNNING.as_bytes()) {
                set_once(&mut running, Self::RUNNING, value)?;
            }
        }
        let uuid = uuid.ok_or(MessageError::MissingKey { key: Self::UUID })?;
        let running = running.ok_or(MessageError::MissingKey { key: Self::RUNNING })?;
        Ok(MonitorSyn {
            uuid: Uuid::parse(uuid)?,
            ver_running: parse_version(running, Self::RUNNING)?,
        })
    }

    /// Length of the payload.
    pub fn encoded_len(&self) -> usize {
        "uuid=".len() + Uuid::TEXT_LEN + ":verHmRunning=".len() + version_len(self.ver_running)
    }

    /// Write the payload into `buf`; returns the bytes written.
    pub fn encode_into(&self, buf: &mut [u8]) -> Result<usize> {
        encode_into_slice(buf, self.encoded_len(), |s| self.emit(s))
    }

    /// Append the payload to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_to_vec(out, self.encoded_len(), |s| self.emit(s));
    }

    fn emit<S: Sink>(&self, s: &mut S) -> Result<()> {
        s.put(b"uuid=")?;
        s.put(&self.uuid.to_text())?;
        s.put(b":verHmRunning=")?;
        put_version(s, self.ver_running)
    }
}

/// `ostype`: 1..=32 bytes of `A-Z a-z 0-9 _ . -`, hence ASCII and a valid `&str`.
fn parse_ostype(value: &[u8]) -> Result<&str> {
    let bad = MessageError::BadOsType {
        len: value.len(),
        max: MAX_OSTYPE_LEN,
    };
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    if value.is_empty() || value.len() > MAX_OSTYPE_LEN || !value.iter().all(allowed) {
        return Err(bad);
    }
    core::str::from_utf8(value).map_err(|_| bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agent's first SYN, 84 bytes (seed 004 L11430-11447).
    const AGENT: &[u8] =
        b"uuid=61be20f0-09a8-4753-b5e5-564f8a545ed5:ostype=AIX:verVmmLower=2.0:verVmmUpper=2.0";
    /// The monitor's answering SYN, 58 bytes (seed 004 L11511-11520).
    const MONITOR: &[u8] = b"uuid=5c3196a3-c41f-4b5c-9861-dee6077081c6:verHmRunning=2.0";

    const V2_0: Version = Version { major: 2, minor: 0 };

    fn agent_with(props: &str) -> Result<AgentSyn<'_>> {
        AgentSyn::parse(props.as_bytes())
    }

    #[test]
    fn test_parse_agent() {
        assert_eq!(AGENT.len(), 84);
        let syn = AgentSyn::parse(AGENT).expect("seed agent SYN is valid");
        assert_eq!(syn.uuid.to_string(), "61be20f0-09a8-4753-b5e5-564f8a545ed5");
        assert_eq!(syn.ostype, "AIX");
        assert_eq!(syn.ver_lower, V2_0);
        assert_eq!(syn.ver_upper, V2_0);
        assert_eq!(syn.inc, None, "the seed's agents send no incarnation");
    }

    #[test]
    fn test_incarnation() {
        let with = [AGENT, b":inc=0123456789abcdef"].concat();
        let syn = AgentSyn::parse(&with).expect("valid");
        assert_eq!(syn.inc, Some(0x0123_4567_89ab_cdef));
        let mut out = Vec::new();
        syn.encode(&mut out);
        assert_eq!(
            out, with,
            "canonical: 16 lowercase digits after the seed's keys"
        );
        assert_eq!(syn.encoded_len(), 84 + 21);
        // Lenient: either case, fewer digits, any position, key in any case.
        let short = [b"INC=AB:", AGENT].concat();
        let syn = AgentSyn::parse(&short).expect("valid");
        assert_eq!(syn.inc, Some(0xab));
        out.clear();
        syn.encode(&mut out);
        assert_eq!(out, [AGENT, b":inc=00000000000000ab"].concat());
        for bad in [&b""[..], b"12345678901234567", b"xyz", b"0x12", b"-1"] {
            let payload = [AGENT, b":inc=", bad].concat();
            assert_eq!(
                AgentSyn::parse(&payload),
                Err(MessageError::BadIncarnation { len: bad.len() }),
                "{}",
                bad.escape_ascii()
            );
        }
        let twice = [AGENT, b":inc=1:inc=2"].concat();
        assert_eq!(
            AgentSyn::parse(&twice),
            Err(MessageError::DuplicateKey { key: "inc" })
        );
    }

    #[test]
    fn test_emit_agent() {
        let syn = AgentSyn::parse(AGENT).expect("seed agent SYN is valid");
        assert_eq!(syn.encoded_len(), 84);
        let mut buf = [0u8; 100];
        assert_eq!(syn.encode_into(&mut buf), Ok(84));
        assert_eq!(&buf[..84], AGENT);
        let mut out = Vec::new();
        syn.encode(&mut out);
        assert_eq!(out, AGENT);
        assert_eq!(
            syn.encode_into(&mut buf[..83]),
            Err(MessageError::BufferTooSmall { len: 83, need: 84 })
        );
    }

    #[test]
    fn test_parse_monitor() {
        assert_eq!(MONITOR.len(), 58);
        let syn = MonitorSyn::parse(MONITOR).expect("seed monitor SYN is valid");
        assert_eq!(syn.uuid.to_string(), "5c3196a3-c41f-4b5c-9861-dee6077081c6");
        assert_eq!(syn.ver_running, V2_0);
    }

    #[test]
    fn test_emit_monitor() {
        let syn = MonitorSyn::parse(MONITOR).expect("seed monitor SYN is valid");
        assert_eq!(syn.encoded_len(), 58);
        let mut buf = [0u8; 58];
        assert_eq!(syn.encode_into(&mut buf), Ok(58));
        assert_eq!(&buf[..], MONITOR);
        let mut out = b"x".to_vec();
        syn.encode(&mut out);
        assert_eq!(&out[1..], MONITOR, "encode appends");
        assert_eq!(
            syn.encode_into(&mut buf[..57]),
            Err(MessageError::BufferTooSmall { len: 57, need: 58 })
        );
    }

    #[test]
    fn test_any_order_unknown_keys_ignored() {
        let shuffled = agent_with(
            "verVmmUpper=2.1:future=x=y:ostype=linux:uuid=61BE20F0-09A8-4753-B5E5-564F8A545ED5:verVmmLower=2.0:future=again",
        )
        .expect("order and unknown keys do not matter");
        assert_eq!(shuffled.ostype, "linux");
        assert_eq!(shuffled.ver_upper, Version { major: 2, minor: 1 });
        let mut out = Vec::new();
        shuffled.encode(&mut out);
        assert_eq!(
            out,
            b"uuid=61be20f0-09a8-4753-b5e5-564f8a545ed5:ostype=linux:verVmmLower=2.0:verVmmUpper=2.1",
            "re-emitted in seed order, uuid lowercase, unknown keys dropped"
        );
        let monitor = MonitorSyn::parse(
            b"verHmRunning=3.7:extra=1:uuid=5c3196a3-c41f-4b5c-9861-dee6077081c6",
        )
        .expect("order and unknown keys do not matter");
        assert_eq!(monitor.ver_running, Version { major: 3, minor: 7 });
    }

    #[test]
    fn test_missing_key() {
        let u = "uuid=61be20f0-09a8-4753-b5e5-564f8a545ed5";
        for (props, key) in [
            (
                "ostype=AIX:verVmmLower=2.0:verVmmUpper=2.0".to_string(),
                "uuid",
            ),
            (format!("{u}:verVmmLower=2.0:verVmmUpper=2.0"), "ostype"),
            (format!("{u}:ostype=AIX:verVmmUpper=2.0"), "verVmmLower"),
            (format!("{u}:ostype=AIX:verVmmLower=2.0"), "verVmmUpper"),
            (String::new(), "uuid"),
        ] {
            assert_eq!(
                agent_with(&props),
                Err(MessageError::MissingKey { key }),
                "{props}"
            );
        }
        assert_eq!(
            MonitorSyn::parse(u.as_bytes()),
            Err(MessageError::MissingKey {
                key: "verHmRunning"
            })
        );
        assert_eq!(
            MonitorSyn::parse(b"verHmRunning=2.0"),
            Err(MessageError::MissingKey { key: "uuid" })
        );
        // Key names are matched in any case; a key in two cases is a repeated key.
        assert_eq!(
            MonitorSyn::parse(b"UUID=5c3196a3-c41f-4b5c-9861-dee6077081c6:VERHMRUNNING=2.0")
                .map(|s| s.ver_running),
            Ok(V2_0)
        );
        assert_eq!(
            MonitorSyn::parse(
                b"uuid=5c3196a3-c41f-4b5c-9861-dee6077081c6:Uuid=5c3196a3-c41f-4b5c-9861-dee6077081c6:verHmRunning=2.0"
            ),
            Err(MessageError::DuplicateKey { key: "uuid" })
        );
    }

    #[test]
    fn test_duplicate_key() {
        let twice = [AGENT, b":ostype=linux"].concat();
        assert_eq!(
            AgentSyn::parse(&twice),
            Err(MessageError::DuplicateKey { key: "ostype" })
        );
        let twice = [MONITOR, b":uuid=5c3196a3-c41f-4b5c-9861-dee6077081c6"].concat();
        assert_eq!(
            MonitorSyn::parse(&twice),
            Err(MessageError::DuplicateKey { key: "uuid" })
        );
    }

    #[test]
    fn test_malformed_property() {
        let trailing = [AGENT, b":"].concat();
        assert_eq!(
            AgentSyn::parse(&trailing),
            Err(MessageError::PropertyWithoutEquals { offset: 85 })
        );
        assert_eq!(
            MonitorSyn::parse(b"=1:uuid=5c3196a3-c41f-4b5c-9861-dee6077081c6:verHmRunning=2.0"),
            Err(MessageError::EmptyKey { offset: 0 })
        );
    }

    #[test]
    fn test_bad_values() {
        let u = "uuid=61be20f0-09a8-4753-b5e5-564f8a545ed5";
        let bad_os = |len| Err(MessageError::BadOsType { len, max: 32 });
        let long_os = "A".repeat(33);
        let max_os = "a-Z_0.9".repeat(4) + "abcd";
        assert_eq!(max_os.len(), 32);
        for (os, expected) in [
            ("", bad_os(0)),
            (long_os.as_str(), bad_os(33)),
            ("A IX", bad_os(4)),
            ("AIX/7", bad_os(5)),
            ("é", bad_os(2)),
            (max_os.as_str(), Ok(max_os.as_str())),
        ] {
            let props = format!("{u}:ostype={os}:verVmmLower=2.0:verVmmUpper=2.0");
            assert_eq!(agent_with(&props).map(|s| s.ostype), expected, "{os:?}");
        }
        assert_eq!(
            agent_with("uuid=61be20f0:ostype=AIX:verVmmLower=2.0:verVmmUpper=2.0"),
            Err(MessageError::BadUuid { offset: 8, len: 8 })
        );
        assert_eq!(
            agent_with(&format!("{u}:ostype=AIX:verVmmLower=2:verVmmUpper=2.0")),
            Err(MessageError::BadVersion { key: "verVmmLower" })
        );
        assert_eq!(
            agent_with(&format!("{u}:ostype=AIX:verVmmLower=2.0:verVmmUpper=2.256")),
            Err(MessageError::BadVersion { key: "verVmmUpper" })
        );
        assert_eq!(
            MonitorSyn::parse(format!("{u}:verHmRunning=v2").as_bytes()),
            Err(MessageError::BadVersion {
                key: "verHmRunning"
            })
        );
    }

    #[test]
    fn test_version_order() {
        let u = "uuid=61be20f0-09a8-4753-b5e5-564f8a545ed5";
        let lower = Version { major: 2, minor: 1 };
        let upper = Version { major: 2, minor: 0 };
        assert_eq!(
            agent_with(&format!("{u}:ostype=AIX:verVmmLower=2.1:verVmmUpper=2.0")),
            Err(MessageError::VersionOrder { lower, upper })
        );
        // Compared as numbers, not text: 2.10 is above 2.9; 10.0 above 9.9.
        assert!(agent_with(&format!("{u}:ostype=AIX:verVmmLower=2.9:verVmmUpper=2.10")).is_ok());
        assert!(agent_with(&format!("{u}:ostype=AIX:verVmmLower=9.9:verVmmUpper=10.0")).is_ok());
        assert!(agent_with(&format!("{u}:ostype=AIX:verVmmLower=10.0:verVmmUpper=9.9")).is_err());
    }
}
