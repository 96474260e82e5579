//! The application report of one VM, and the HVNCP messages that carry it
//! (docs/hvncp.md "Application reports").
//!
//! An agent's Application Monitoring Engine watches up to 16 applications. When any of
//! their states changes, the agent rings the doorbell (`DBELL`) to its host monitors; the
//! control plane then fetches the whole report through a monitor with the seed's
//! exchange — `PMSG_REQ` / `PMSG_RSP` / `GMSG` / `CLRDB` (seed 004 L8177-8195, L9152-9158).
//! This crate owns the texts of that exchange, shared by the three programs that handle
//! them:
//!
//! - [`AppReport`]: the report body, one header line and one line per application
//!   ([`AppStatus`]); the agent encodes it, the control plane parses it. `hmd` carries it
//!   opaque.
//! - [`pmsg`]: the arguments of `PMSG_REQ`, `PMSG_RSP`, `GMSG` and `CLRDB`, the cutting of
//!   a body into `PMSG_RSP` chunks that each fit one HVNCP packet ([`pmsg::split`]), and a
//!   bounded [`pmsg::Reassembler`].
//!
//! Everything parsed here comes from a guest and is untrusted: parsers never panic, bound
//! what they keep, and refuse with an error that says where the text breaks the format.
//! For every value that parses, encoding it gives a text that parses to the same value.
//!
//! std only: the control plane, which links no socket code, parses reports too.

mod report;

pub mod pmsg;

pub use report::{
    AppReport, AppState, AppStatus, Colour, MAX_APPS, MAX_BODY, MAX_DETAIL, MAX_NAME, MonitorKind,
    ReportError, valid_name,
};

/// Doorbell bit: a new application report is available. The seed's first doorbell
/// surfaces as `shortMsg="0x2"` in NeedsAttention (seed 004 L12093-12130).
pub const DBELL_REPORT: u64 = 0x2;

/// Doorbell bit: a critical application is in FAILURE; the control plane escalates
/// (same-host VM restart, then relocation; seed 004 L16188-16208).
pub const DBELL_APP_CRITICAL_FAILURE: u64 = 0x100;
