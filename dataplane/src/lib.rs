//! HVNCP — the raw-Ethernet protocol between a host monitor (`hmd`) and the VM agents
//! (`vmmd`). The protocol itself is pure code (no sockets, no threads, no clock); the
//! raw sockets that carry it live apart, in [`io`] (safe API) over [`sys`] (the only
//! `unsafe` code).
//!
//! - [`wire`]: the Ethernet II frame and the 8-byte HVNCP header, as zero-copy views
//!   plus owned `Repr`s (smoltcp style). Parsing never allocates and never panics.
//! - [`message`]: the text payloads (`HB:`, `START_HB:period_ms=…`, SYN properties, the
//!   Hello identifier) as typed values.
//! - [`session`]: one reliable session with one peer: handshake, acknowledgements,
//!   retransmission, duplicates, fragmentation and reassembly, urgent preemption.
//! - [`endpoint`]: the table of sessions of one local interface, keyed by peer MAC, with
//!   the role behaviour of a host monitor or an agent (Hello, `START_HB`, heartbeats).
//! - [`heartbeat`] over [`wheel`]: the host monitor's miss detection — which VMs
//!   heartbeat, which went silent — on a hashed timing wheel (the monitor core, pure and
//!   clock-injected like the rest; `docs/architecture.md` says why it lives here).
//! - [`ratelimit`]: a rate limit for repeated log lines, counting what it suppresses.
//! - [`sim`]: a simulated link with loss, duplication, reordering and delay on a
//!   virtual clock, for deterministic tests, examples and benches.
//!
//! - [`auth`]: authenticated frames (`auth = off | accept | require`): a trailer with a
//!   key id, a send counter and an HMAC-SHA256 tag, sealed after `poll_transmit` and
//!   opened before `handle_frame`, with replay windows per sender.
//!
//! - [`io`] / [`sys`]: `AF_PACKET` sockets bound to an interface and the HVNCP
//!   EtherType, batched receive (`recvmmsg` or a TPACKET_V3 ring), kernel drop counters,
//!   interface facts.
//!
//! Time is always a parameter ([`time::Instant`]); the caller owns the clock.
//! The protocol itself is specified in `docs/hvncp.md`.

pub mod auth;
pub mod endpoint;
pub mod heartbeat;
pub mod io;
pub mod message;
pub mod ratelimit;
pub mod session;
pub mod sim;
pub mod stats;
pub mod sys;
pub mod time;
pub mod wheel;
pub mod wire;
