//! Session parameters, validated with ranges.

use std::time::Duration;

use crate::wire::{DEFAULT_ETHERTYPE, DEFAULT_MAX_PAYLOAD};

/// Parameters shared by every session of an endpoint.
///
/// Defaults come from `docs/hvncp.md` §3–5: RTO 200 ms doubling per retry, 5 retries,
/// a window of 32 packets, 64 KiB messages. The reassembly timeout is 13 s rather than
/// HVNCP.md's 2 s: with those retransmission defaults a sender keeps retransmitting a
/// fragment for 12.6 s, and a message must not be discarded while it can still arrive
/// (`docs/hvncp.md` §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// EtherType of HVNCP frames (default 0x0600, seed 004 L8349).
    pub ethertype: u16,
    /// Largest payload per packet: MTU − 8 (1492 on a 1500-byte MTU).
    pub max_payload: u16,
    /// First retransmission timeout; doubles per retry.
    pub rto: Duration,
    /// Ceiling of the doubled retransmission timeout.
    pub rto_max: Duration,
    /// Retransmissions of one packet before the session fails.
    pub max_retries: u8,
    /// Acknowledgement-requested packets outstanding per session.
    pub window: u8,
    /// Largest message, in bytes, sent or reassembled.
    pub max_message: usize,
    /// An incomplete message with no new fragment for this long is discarded. At least
    /// the sender's retransmission span: while the sender may still be retransmitting a
    /// missing fragment, discarding would fail a message that can still arrive.
    pub reassembly_timeout: Duration,
    /// Bytes of messages queued for sending per session before `send` refuses more.
    pub max_queued_bytes: usize,
    /// An initiator whose SYN was acknowledged but who has not received the peer's SYN
    /// after this long gives up and starts over.
    pub handshake_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ethertype: DEFAULT_ETHERTYPE,
            max_payload: DEFAULT_MAX_PAYLOAD,
            rto: Duration::from_millis(200),
            rto_max: Duration::from_millis(6_400),
            max_retries: 5,
            window: 32,
            max_message: 64 * 1024,
            reassembly_timeout: Duration::from_secs(13),
            max_queued_bytes: 256 * 1024,
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// A configuration value outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("session config: {key} = {value} is out of range ({allowed})")]
pub struct ConfigError {
    /// The offending key.
    pub key: &'static str,
    /// Its value, as text.
    pub value: String,
    /// The allowed range.
    pub allowed: &'static str,
}

/// Most fragments in one message: keeps a message's packets well inside the receiver's
/// 64-number duplicate window (see `docs/hvncp.md` §3.6).
pub const MAX_FRAGMENTS: usize = 48;

impl Config {
    /// Check every value against its range; the error names the key and the range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn err(key: &'static str, value: impl ToString, allowed: &'static str) -> ConfigError {
            ConfigError {
                key,
                value: value.to_string(),
                allowed,
            }
        }
        // At least a SYN's properties (134 bytes at most: UUID, a 32-byte OS type, both
        // versions and the incarnation) must fit one packet.
        if !(160..=9000 - 8).contains(&self.max_payload) {
            return Err(err("max_payload", self.max_payload, "160..=8992 bytes"));
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&self.rto) {
            return Err(err("rto", format!("{:?}", self.rto), "1 ms..=60 s"));
        }
        if self.rto_max < self.rto || self.rto_max > Duration::from_secs(600) {
            return Err(err("rto_max", format!("{:?}", self.rto_max), "rto..=600 s"));
        }
        if !(1..=30).contains(&self.max_retries) {
            return Err(err("max_retries", self.max_retries, "1..=30"));
        }
        if !(1..=48).contains(&self.window) {
            return Err(err("window", self.window, "1..=48"));
        }
        if self.max_message == 0 || self.max_message > MAX_FRAGMENTS * usize::from(self.max_payload)
        {
            return Err(err(
                "max_message",
                self.max_message,
                "1..=48 × max_payload bytes",
            ));
        }
        if self.reassembly_timeout < self.retransmission_span()
            || self.reassembly_timeout > Duration::from_secs(3600)
        {
            return Err(err(
                "reassembly_timeout",
                format!("{:?}", self.reassembly_timeout),
                "the retransmission span (rto × 2^0 + … + rto × 2^max_retries, capped by \
                 rto_max; 12.6 s by default)..=1 h",
            ));
        }
        if self.max_queued_bytes < self.max_message {
            return Err(err(
                "max_queued_bytes",
                self.max_queued_bytes,
                "at least max_message",
            ));
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(3600))
            .contains(&self.handshake_timeout)
        {
            return Err(err(
                "handshake_timeout",
                format!("{:?}", self.handshake_timeout),
                "10 ms..=1 h",
            ));
        }
        Ok(())
    }

    /// Retransmission timeout before retry number `retry` (0 = first transmission).
    pub fn rto_for(&self, retry: u8) -> Duration {
        let factor = 1u32 << retry.min(20);
        self.rto.saturating_mul(factor).min(self.rto_max)
    }

    /// How long a sender keeps retransmitting one packet before giving up.
    pub fn retransmission_span(&self) -> Duration {
        (0..=self.max_retries).map(|r| self.rto_for(r)).sum()
    }

    /// How long duplicate detection remembers packet numbers after the last packet
    /// received: a retransmission can come no later than the sender's full span.
    pub fn dedup_horizon(&self) -> Duration {
        self.retransmission_span() + self.rto
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_spans_follow() {
        let c = Config::default();
        c.validate().expect("defaults valid");
        // 200 + 400 + 800 + 1600 + 3200 + 6400 ms.
        assert_eq!(c.retransmission_span(), Duration::from_millis(12_600));
        assert_eq!(c.rto_for(0), Duration::from_millis(200));
        assert_eq!(c.rto_for(9), Duration::from_millis(6_400));
    }

    #[test]
    fn errors_name_key_and_range() {
        let c = Config {
            window: 0,
            ..Config::default()
        };
        let e = c.validate().expect_err("window 0");
        assert_eq!(e.key, "window");
        assert_eq!(
            e.to_string(),
            "session config: window = 0 is out of range (1..=48)"
        );
        let c = Config {
            max_message: 1_000_000,
            ..Config::default()
        };
        assert_eq!(c.validate().expect_err("too big").key, "max_message");
        let c = Config {
            rto_max: Duration::from_millis(100),
            ..Config::default()
        };
        assert_eq!(c.validate().expect_err("rto_max < rto").key, "rto_max");
        let c = Config {
            reassembly_timeout: Duration::from_secs(2),
            ..Config::default()
        };
        let e = c
            .validate()
            .expect_err("shorter than the sender keeps trying");
        assert_eq!(e.key, "reassembly_timeout");
        assert!(e.to_string().contains("12.6 s"), "{e}");
    }
}
