//! The Health Status Database (HSDB): the store the host monitor (`hmd`) writes health
//! *transitions* into and the control plane (`hactl`) reads QuickQuery and
//! NeedsAttention from (DESIGN.md §4-§5; the seed's HSDB, seed 004 L6432-6450).
//!
//! - [`Hsdb`]: one connection to an SQLite file in WAL mode, `synchronous=FULL` unless
//!   [`Options`] say otherwise, foreign keys on, schema migrated at open — or to a
//!   PostgreSQL database shared by a host group ([`Hsdb::connect`] with a [`Target`];
//!   [`Backend`]); the same API and semantics on both (docs/hsdb.md §6).
//! - [`Hsdb::apply`]: a batch of [`Transition`]s (Discovered, Detected, Missing,
//!   Suspended, Doorbell, monitor heartbeat and events) in one transaction.
//! - reads: [`Hsdb::hm`], [`Hsdb::vm`], [`Hsdb::vm_hm`], [`Hsdb::vms`],
//!   [`Hsdb::pending`], [`Hsdb::events_after`], consumer offsets.
//! - the control plane's side: [`Hsdb::open_read_only`], [`Hsdb::quick_query`],
//!   [`Hsdb::needs_attention`] (reads and tags in one transaction), [`Hsdb::acknowledge`],
//!   [`Hsdb::node_data`], administrative writes ([`Hsdb::set_vm`], parameters,
//!   relocations), commands to monitors ([`Hsdb::enqueue_command`]), pruning.
//! - application reports ([`Hsdb::store_app_report`], [`Hsdb::apps`],
//!   [`Hsdb::handle_app_fetch`]): the `app` table, replaced from an agent's report.
//! - discovery and activities ([`Hsdb::apply_discovery`], [`Hsdb::request_activity`],
//!   [`Hsdb::activities`]): what the platform has, written in one transaction; the
//!   quick / deep discoveries and verifications an operator or the schedule asks for.
//! - for the dashboard ([`Hsdb::events_newest`], [`Hsdb::acknowledge_vm`], …): events
//!   newest first by kind, relocations in progress, one VM's reported items acknowledged.
//! - relocation policies ([`Hsdb::policy_change`], [`Hsdb::policy_view`]): named VM sets,
//!   per-VM host exclusions, flexible capacity.
//!
//! The crate never reads a clock: every time is passed in by the caller, in milliseconds
//! since the Unix epoch. SQL is written once, portable (upserts with `ON CONFLICT … DO
//! UPDATE`, ids by `RETURNING`), and run by the backend layer on either database. The
//! schema, every transition's semantics, the durability choices and what PostgreSQL
//! changes (locks, isolation, the outbox lock) are in `docs/hsdb.md`.

#![forbid(unsafe_code)]

#[macro_use]
mod model;
mod activity;
mod admin;
mod app;
mod apply;
mod browse;
mod codec;
mod control;
mod control_model;
mod db;
mod discovery;
mod error;
mod lease;
mod ops;
mod options;
mod outbox;
mod policy;
mod schema;
mod store;
pub mod target;

#[cfg(test)]
mod tests;

pub use activity::{ActivityKind, ActivityRow, ActivityState, MAX_ACTIVITY_TEXT};
pub use admin::{REASONS_MAX, cap_reasons};
pub use app::{AppChange, AppFetchHandled, AppRow, AppStored};
pub use browse::{EventFilter, MAX_FILTER_KINDS};
pub use control_model::{
    CommandDone, CommandKind, CommandRow, DiscoveryKind, EventPrune, HmStatus, NaLimits, NaRows,
    NaVm, NodeDataRows, NodeEvent, ParamRow, ParamScope, QqHost, RelocationKind, RelocationRow,
    RelocationStep, VmSettings,
};
pub use db::{Backend, DbError};
pub use discovery::{
    DiscoveryChange, DiscoveryReport, EVENT_HOST_DISCOVERED, EVENT_VM_DISCOVERED,
    EVENT_VM_REAPPEARED, EVENT_VM_VANISHED, Found, FoundHost, FoundVm, VmDiscoveryRow,
};
pub use error::{Error, Result};
pub use hvha_identity::{HelloId, Uuid};
pub use hvha_identity::{MacAddr, Version};
pub use lease::{Fence, FenceCheck, Lease, LeaseOutcome};
pub use model::{
    Applied, DetectionSpeed, EventRow, HeartbeatCounts, HeartbeatState, HmInterfaceRow, HmRecord,
    HmRow, HmState, HostId, HostRecord, InterfaceState, PendingKind, PendingRow, Priority,
    Transition, VmHmRow, VmRow, VmState,
};
pub use ops::{OperatorRequest, OwedCleanup, RequestKind, RequestState, RestartRecord};
pub use options::{Options, Synchronous};
pub use outbox::{ConsumerLoss, EventBacklog, EventConsumer, EventPruned};
pub use policy::{Exclusion, FlexRow, PolicyChange, PolicyKind, PolicyRow, PolicyView};
pub use schema::SCHEMA_VERSION;
pub use store::Hsdb;
pub use target::{PASSWORD_ENV, PgTarget, Target, TargetError};
