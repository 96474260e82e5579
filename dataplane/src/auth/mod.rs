//! Authenticated frames (`docs/hvncp.md` §7): a frame-level layer between the socket
//! and the [`Endpoint`](crate::endpoint::Endpoint), so that neither the endpoint nor the
//! sessions know about it.
//!
//! ```text
//! socket ──recv──▶ Authenticator::open ──▶ Endpoint::handle_frame
//! Endpoint::poll_transmit ──▶ Authenticator::seal ──send──▶ socket
//! ```
//!
//! [`Authenticator::seal`] sets the reserved flag bit (`Rsv` 0x01), fixes the checksum
//! (which covers the flags byte) and appends a [`trailer`](Trailer) after the payload:
//! key id, a 64-bit send counter and a 16-byte HMAC-SHA256 tag over everything from the
//! Ethernet header to the counter. The header's `len` still covers the payload only, so
//! a peer without authentication reads the trailer as padding: the frame stays a valid
//! 2.0 frame. [`Authenticator::open`] checks the trailer according to the
//! [`AuthMode`] and returns the frame without it.
//!
//! Per frame: no allocation, no lock, no clock. The only state is the send counter and
//! the [replay windows](REPLAY_WINDOW), created only by frames whose tag verified.

mod key;
mod replay;
mod trailer;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use subtle::ConstantTimeEq as _;

pub use key::{KEY_LEN, Key, KeyFileError, KeySyntax, KeySyntaxError, MAX_KEY_FILE_LEN};
pub use replay::REPLAY_WINDOW;
pub use trailer::{TAG_LEN, TAGGED_TRAILER_LEN, TRAILER_LEN, Trailer, TrailerRepr};

use crate::time::Instant;
use crate::wire::{ETHERNET_HEADER_LEN, Flags, HEADER_LEN, HvncpPacket, MIN_FRAME_LEN, MacAddr};
use replay::{Replay, ReplayTable};

/// Offset of the flags byte in a frame.
const FLAGS_AT: usize = ETHERNET_HEADER_LEN + 3;
/// Offset of the payload length in a frame.
const LEN_AT: usize = ETHERNET_HEADER_LEN + 6;
/// Ethernet and HVNCP headers.
const HEADERS_LEN: usize = ETHERNET_HEADER_LEN + HEADER_LEN;

/// Default bound of the replay table: the monitor's default `max_peers`, so that every
/// peer a monitor can hold also keeps its window.
pub const DEFAULT_MAX_SENDERS: usize = 131_072;

/// What a host group does with authentication; lets a group migrate without downtime
/// (off → accept on every host → require on every host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AuthMode {
    /// Never send a trailer, never check one: the `Rsv` bit and trailers are ignored,
    /// as by a 2.0 peer.
    #[default]
    Off,
    /// Send authenticated frames; accept unauthenticated ones and authenticated ones that
    /// verify; drop authenticated frames that do not (forged, unknown key, replayed,
    /// truncated trailer).
    Accept,
    /// Send authenticated frames; accept only authenticated frames that verify.
    Require,
}

impl AuthMode {
    /// The configuration spelling: `off`, `accept` or `require`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Off => "off",
            AuthMode::Accept => "accept",
            AuthMode::Require => "require",
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authentication mode that is not `off`, `accept` or `require`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("auth mode {0:?} is not one of off, accept, require")]
pub struct AuthModeError(pub String);

impl FromStr for AuthMode {
    type Err = AuthModeError;
    fn from_str(s: &str) -> Result<AuthMode, AuthModeError> {
        match s {
            "off" => Ok(AuthMode::Off),
            "accept" => Ok(AuthMode::Accept),
            "require" => Ok(AuthMode::Require),
            other => Err(AuthModeError(other.to_owned())),
        }
    }
}

/// The keys of a host group on one host: the primary signs what we send; it and, during
/// a rotation, a second key are accepted.
#[derive(Debug, Clone)]
pub struct Keyring {
    primary: Key,
    second: Option<Key>,
}

impl Keyring {
    /// Keys with distinct ids (a trailer names its key by id).
    pub fn new(primary: Key, second: Option<Key>) -> Result<Keyring, AuthConfigError> {
        if let Some(s) = &second
            && s.id() == primary.id()
        {
            return Err(AuthConfigError::SameKeyId { id: s.id() });
        }
        Ok(Keyring { primary, second })
    }

    /// The key we send with.
    pub fn primary(&self) -> &Key {
        &self.primary
    }

    /// The second accepted key, if any.
    pub fn second(&self) -> Option<&Key> {
        self.second.as_ref()
    }

    #[inline]
    fn find(&self, id: u8) -> Option<&Key> {
        if self.primary.id() == id {
            return Some(&self.primary);
        }
        self.second.as_ref().filter(|k| k.id() == id)
    }
}

/// An authentication configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    /// `accept` or `require` without a key.
    #[error("auth = {mode} needs a key (auth_key_file)")]
    NoKey {
        /// The mode asked for.
        mode: AuthMode,
    },
    /// `auth_second_key_file` without `auth_key_file`.
    #[error("auth_second_key_file needs auth_key_file (the key we send with)")]
    SecondWithoutFirst,
    /// The two keys of a rotation share their id.
    #[error("both keys have id {id}: a rotation needs a new key id")]
    SameKeyId {
        /// The shared id.
        id: u8,
    },
}

/// Authentication settings of a daemon, as configured: `auth`, `auth_key_file`,
/// `auth_second_key_file`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// The mode.
    pub mode: AuthMode,
    /// The primary key: signs what we send, accepted.
    pub key_file: Option<PathBuf>,
    /// A second key accepted during a rotation, never used to send.
    pub second_key_file: Option<PathBuf>,
}

impl AuthConfig {
    /// Checks that need no file: `accept` and `require` need `auth_key_file`; a second
    /// key needs a first.
    pub fn validate(&self) -> Result<(), AuthConfigError> {
        if self.mode != AuthMode::Off && self.key_file.is_none() {
            return Err(AuthConfigError::NoKey { mode: self.mode });
        }
        if self.key_file.is_none() && self.second_key_file.is_some() {
            return Err(AuthConfigError::SecondWithoutFirst);
        }
        Ok(())
    }

    /// Take relative key file paths as relative to `dir` (the configuration file's).
    pub fn resolve_relative_to(&mut self, dir: &std::path::Path) {
        for path in [&mut self.key_file, &mut self.second_key_file]
            .into_iter()
            .flatten()
        {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
    }

    /// Read the key files (none when `off`) and check them (mode 0600, syntax, distinct
    /// ids).
    pub fn keyring(&self) -> Result<Option<Keyring>, AuthSetupError> {
        self.validate()?;
        if self.mode == AuthMode::Off {
            return Ok(None);
        }
        let Some(first) = &self.key_file else {
            return Err(AuthConfigError::NoKey { mode: self.mode }.into());
        };
        let primary = Key::load(first).map_err(|e| AuthSetupError::Key {
            setting: "auth_key_file",
            error: e,
        })?;
        let second = match &self.second_key_file {
            Some(path) => Some(Key::load(path).map_err(|e| AuthSetupError::Key {
                setting: "auth_second_key_file",
                error: e,
            })?),
            None => None,
        };
        Ok(Some(Keyring::new(primary, second)?))
    }
}

/// The authentication settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// Inconsistent settings.
    #[error(transparent)]
    Config(#[from] AuthConfigError),
    /// A key file cannot be used.
    #[error("{setting}: {error}")]
    Key {
        /// Which setting names the file.
        setting: &'static str,
        /// Why.
        error: KeyFileError,
    },
}

/// Why a received frame was refused; each variant is a counter of [`AuthCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthDrop {
    /// The `Rsv` bit is clear, in `require` mode.
    #[error("frame without authentication refused (auth = require)")]
    Unauthenticated,
    /// The `Rsv` bit is set but the trailer is incomplete.
    #[error("authentication trailer truncated: {len} bytes, need {need}")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The trailer names a key we do not hold.
    #[error("authentication key id {id} is not one of ours")]
    UnknownKey {
        /// The key id.
        id: u8,
    },
    /// The tag does not verify: forged, corrupted, or made with another key of that id.
    #[error("authentication tag does not verify under key {id}")]
    BadTag {
        /// The key id.
        id: u8,
    },
    /// The tag verifies but the counter was already accepted, or is older than the
    /// replay window.
    #[error("replayed frame: counter {counter} from {src} under key {id} already seen or too old")]
    Replayed {
        /// The sender MAC.
        src: MacAddr,
        /// The key id.
        id: u8,
        /// The counter.
        counter: u64,
    },
}

/// A frame could not be sealed; a bug of the caller, not of the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The bytes are not a frame with its headers and announced payload.
    #[error("cannot seal {len} bytes: not a whole HVNCP frame")]
    NotAFrame {
        /// Frame length given.
        len: usize,
    },
    /// No room for the trailer.
    #[error("buffer of {len} bytes too small for the sealed frame of {need}")]
    BufferTooSmall {
        /// Buffer length.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The send counter would wrap (not before the year 2554 when started from the clock).
    #[error("send counter exhausted: change the key")]
    CounterExhausted,
}

macro_rules! auth_counters {
    ($( $(#[doc = $doc:literal])* $name:ident ),* $(,)?) => {
        /// Counters of one authenticator. Names match the Prometheus metrics and
        /// `docs/hvncp.md` §7.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct AuthCounters {
            $( $(#[doc = $doc])* pub $name: u64, )*
        }

        impl AuthCounters {
            /// Every counter with its name, in declaration order.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
                [$( (stringify!($name), self.$name) ),*].into_iter()
            }

            /// Every counter's name and description (its documentation, for the
            /// `# HELP` line of a metrics page), in declaration order.
            pub const HELP: &'static [(&'static str, &'static str)] =
                &[$( (stringify!($name), concat!($($doc),*)) ),*];
        }
    };
}

auth_counters! {
    /// Frames sealed (trailer appended) for sending.
    auth_sealed,
    /// Authenticated frames received whose tag and counter verified.
    auth_verified,
    /// Frames without authentication let through in `accept` mode.
    auth_plain_accepted,
    /// Frames without authentication dropped in `require` mode.
    auth_drop_unauthenticated,
    /// Authenticated frames whose trailer is incomplete.
    auth_drop_truncated,
    /// Authenticated frames naming a key id we do not hold.
    auth_drop_unknown_key,
    /// Authenticated frames whose tag does not verify (forged).
    auth_drop_bad_tag,
    /// Authenticated frames whose counter was already seen or is too old (replayed).
    auth_drop_replayed,
    /// Replay windows forgotten because the table was full.
    auth_replay_evictions,
}

impl AuthCounters {
    fn count(&mut self, d: AuthDrop) {
        let c = match d {
            AuthDrop::Unauthenticated => &mut self.auth_drop_unauthenticated,
            AuthDrop::Truncated { .. } => &mut self.auth_drop_truncated,
            AuthDrop::UnknownKey { .. } => &mut self.auth_drop_unknown_key,
            AuthDrop::BadTag { .. } => &mut self.auth_drop_bad_tag,
            AuthDrop::Replayed { .. } => &mut self.auth_drop_replayed,
        };
        *c += 1;
    }

    /// Sum of every `auth_drop_*` counter.
    pub fn drops(&self) -> u64 {
        self.iter()
            .filter(|(name, _)| name.starts_with("auth_drop_"))
            .map(|(_, v)| v)
            .sum()
    }
}

/// The first send counter of a sender starting at `now`: nanoseconds since the Unix
/// epoch. A sender increments it once per frame, far less than once per nanosecond, so
/// a restarted sender starts above every counter it sent before, without any state on
/// disk, as long as the clock has not gone back across the restart (`docs/hvncp.md` §7).
pub fn initial_counter(now: SystemTime) -> u64 {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Seals what an endpoint sends and opens what it receives (see the module
/// documentation). One per local interface, owned by the thread of its endpoint.
#[derive(Debug)]
pub struct Authenticator {
    mode: AuthMode,
    keys: Option<Keyring>,
    next_counter: u64,
    replay: ReplayTable,
    counters: AuthCounters,
    last_drop: Option<AuthDrop>,
}

impl Authenticator {
    /// An authenticator in `mode`. `accept` and `require` need `keys`; `first_counter`
    /// is the counter of the first frame sealed (see [`initial_counter`]);
    /// `max_senders` bounds the replay table (at least 1).
    pub fn new(
        mode: AuthMode,
        keys: Option<Keyring>,
        first_counter: u64,
        max_senders: usize,
    ) -> Result<Authenticator, AuthConfigError> {
        if mode != AuthMode::Off && keys.is_none() {
            return Err(AuthConfigError::NoKey { mode });
        }
        Ok(Authenticator {
            mode,
            keys: if mode == AuthMode::Off { None } else { keys },
            next_counter: first_counter,
            replay: ReplayTable::new(max_senders),
            counters: AuthCounters::default(),
            last_drop: None,
        })
    }

    /// `auth = off`: frames pass through unchanged both ways.
    pub fn off() -> Authenticator {
        Authenticator {
            mode: AuthMode::Off,
            keys: None,
            next_counter: 0,
            replay: ReplayTable::new(1),
            counters: AuthCounters::default(),
            last_drop: None,
        }
    }

    /// The mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The keys (none when `off`).
    pub fn keys(&self) -> Option<&Keyring> {
        self.keys.as_ref()
    }

    /// The counters.
    pub fn counters(&self) -> &AuthCounters {
        &self.counters
    }

    /// The last refusal, if any.
    pub fn last_drop(&self) -> Option<AuthDrop> {
        self.last_drop
    }

    /// The counter the next sealed frame will carry.
    pub fn next_counter(&self) -> u64 {
        self.next_counter
    }

    /// Sender MACs and keys with a replay window.
    pub fn senders(&self) -> usize {
        self.replay.len()
    }

    /// Make room for `additional` senders in the replay table, so that their first
    /// frames do not reallocate it.
    pub fn reserve(&mut self, additional: usize) {
        self.replay.reserve(additional);
    }

    /// Bytes a sealed frame adds after the payload: [`TRAILER_LEN`], or 0 when `off`.
    /// A sender's largest payload must leave room for it within the link's MTU.
    pub fn overhead(&self) -> usize {
        if self.keys.is_some() { TRAILER_LEN } else { 0 }
    }

    /// Seal the frame `buf[..len]` that [`Endpoint::poll_transmit`] wrote: set `Rsv`,
    /// recompute the checksum, append the trailer after the payload (overwriting the
    /// padding) and pad to 60 bytes. Returns the new length; `len` unchanged when `off`.
    ///
    /// [`Endpoint::poll_transmit`]: crate::endpoint::Endpoint::poll_transmit
    pub fn seal(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SealError> {
        let Some(keys) = &self.keys else {
            return Ok(len);
        };
        let Some(frame) = buf.get(..len).filter(|f| f.len() >= HEADERS_LEN) else {
            return Err(SealError::NotAFrame { len });
        };
        let payload_len = usize::from(u16::from_be_bytes([frame[LEN_AT], frame[LEN_AT + 1]]));
        let at = HEADERS_LEN + payload_len;
        if at > len {
            return Err(SealError::NotAFrame { len });
        }
        let end = at + TRAILER_LEN;
        let sealed_len = end.max(MIN_FRAME_LEN);
        if buf.len() < sealed_len {
            return Err(SealError::BufferTooSmall {
                len: buf.len(),
                need: sealed_len,
            });
        }
        let counter = self.next_counter;
        self.next_counter = counter.checked_add(1).ok_or(SealError::CounterExhausted)?;
        let mut packet = HvncpPacket::new_unchecked(&mut buf[ETHERNET_HEADER_LEN..at]);
        packet.set_flags(packet.flags() | Flags::RSV);
        packet.fill_checksum();
        let key = keys.primary();
        let mut trailer = Trailer::new_unchecked(&mut buf[at..end]);
        trailer.set_key_id(key.id());
        trailer.set_counter(counter);
        let tag = key.tag(&buf[..at + TAGGED_TRAILER_LEN]);
        Trailer::new_unchecked(&mut buf[at..end]).set_tag(&tag);
        buf[end..sealed_len].fill(0);
        self.counters.auth_sealed += 1;
        Ok(sealed_len)
    }

    /// Check a received frame according to the mode; on success return it without its
    /// trailer (unchanged if it had none), ready for
    /// [`Endpoint::handle_frame`](crate::endpoint::Endpoint::handle_frame). A refusal is
    /// counted by its reason. Frames too short to carry the headers are let through in
    /// `off` and `accept` modes, for the endpoint to count as truncated.
    #[inline]
    pub fn open<'a>(&mut self, frame: &'a [u8]) -> Result<&'a [u8], AuthDrop> {
        let opened = self.check(frame);
        if let Err(d) = opened {
            self.counters.count(d);
            self.last_drop = Some(d);
        }
        opened
    }

    #[inline]
    fn check<'a>(&mut self, frame: &'a [u8]) -> Result<&'a [u8], AuthDrop> {
        let Some(keys) = &self.keys else {
            return Ok(frame);
        };
        let require = self.mode == AuthMode::Require;
        let Some(&flags) = frame.get(FLAGS_AT).filter(|_| frame.len() >= HEADERS_LEN) else {
            if require {
                return Err(AuthDrop::Truncated {
                    len: frame.len(),
                    need: HEADERS_LEN + TRAILER_LEN,
                });
            }
            return Ok(frame);
        };
        if !Flags::from_bits(flags).contains(Flags::RSV) {
            if require {
                return Err(AuthDrop::Unauthenticated);
            }
            self.counters.auth_plain_accepted += 1;
            return Ok(frame);
        }
        let payload_len = usize::from(u16::from_be_bytes([frame[LEN_AT], frame[LEN_AT + 1]]));
        let at = HEADERS_LEN + payload_len;
        let truncated = AuthDrop::Truncated {
            len: frame.len(),
            need: at + TRAILER_LEN,
        };
        let trailer = frame
            .get(at..)
            .and_then(|t| Trailer::new_checked(t).ok())
            .ok_or(truncated)?;
        let id = trailer.key_id();
        let key = keys.find(id).ok_or(AuthDrop::UnknownKey { id })?;
        let expected = key.tag(&frame[..at + TAGGED_TRAILER_LEN]);
        if !bool::from(expected.ct_eq(&trailer.tag())) {
            return Err(AuthDrop::BadTag { id });
        }
        let src = MacAddr([frame[6], frame[7], frame[8], frame[9], frame[10], frame[11]]);
        let counter = trailer.counter();
        let before = self.replay.evicted;
        let accepted = self.replay.accept(src, id, counter);
        self.counters.auth_replay_evictions += self.replay.evicted - before;
        if let Err(Replay::Duplicate | Replay::TooOld) = accepted {
            return Err(AuthDrop::Replayed { src, id, counter });
        }
        self.counters.auth_verified += 1;
        Ok(&frame[..at])
    }
}

/// Rate limit of the log line a daemon writes about refused frames: the first refusal
/// at once, then at most one line per interval with the number refused since the
/// previous line, so that a peer with the wrong key is visible in the log without a
/// line per frame.
#[derive(Debug, Clone)]
pub struct RefusalLog {
    interval: Duration,
    reported: u64,
    next: Option<Instant>,
}

impl RefusalLog {
    /// At most one line per `interval`.
    pub fn new(interval: Duration) -> RefusalLog {
        RefusalLog {
            interval,
            reported: 0,
            next: None,
        }
    }

    /// Whether to log now: the frames refused since the last line and the last reason.
    pub fn poll(&mut self, now: Instant, auth: &Authenticator) -> Option<(u64, AuthDrop)> {
        let drops = auth.counters().drops();
        if drops <= self.reported || self.next.is_some_and(|t| now < t) {
            return None;
        }
        let n = drops - self.reported;
        self.reported = drops;
        self.next = Some(now + self.interval);
        auth.last_drop().map(|d| (n, d))
    }
}

#[cfg(test)]
mod tests;
