//! What `hactl run` tells `hactl status`: a snapshot the loop publishes after every turn,
//! served as JSON on the admin socket and rendered by the client.

use serde::{Deserialize, Serialize};

use super::leadership::LeaseView;
use crate::notify::worker::NotifierStatus;

/// Decisions kept per host group for `status` (the full history is in the HSDB's
/// `event` and `relocation` tables).
pub const KEPT_DECISIONS: usize = 20;

/// The daemon as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// `hactl`'s version.
    pub version: String,
    /// The daemon's process id.
    pub pid: u32,
    /// When it started, ms since the Unix epoch.
    pub started_ms: i64,
    /// When this snapshot was published.
    pub now_ms: i64,
    /// `starting`, `running` or `stopping`.
    pub state: String,
    /// The HSDB file.
    pub hsdb: String,
    /// The platform driver (`sim`, `libvirt`).
    pub platform: String,
    /// The parameter profile (`default`, `fast`).
    pub profile: String,
    /// Parameters in force that are below the seed's ranges, each with its value and the
    /// seed's range (non-empty in the fast profile): the daemon may act on outages the
    /// seed's product would have waited out.
    pub below_seed_ranges: Vec<String>,
    /// Scans done since start, all host groups.
    pub scans_total: u64,
    /// One entry per host group served.
    pub groups: Vec<GroupStatus>,
    /// Events written to the log by the log notifier since start.
    pub events_logged: u64,
    /// Id of the last event it logged (its offset in the outbox).
    pub last_event_id: i64,
    /// The last error outside a host group's scan (HSDB, notifier), if any.
    pub last_error: Option<String>,
    /// This controller's id: the holder it writes in the leader lease (the
    /// `controller_id` setting, or host name, process id and start time).
    #[serde(default)]
    pub controller_id: String,
    /// The lease's timings; `None` with SQLite (one controller, no lease).
    #[serde(default)]
    pub lease: Option<LeaseTimings>,
    /// The lease of the HSDB-wide duties (event log, housekeeping, notifiers): only the
    /// controller that holds it runs them.
    #[serde(default)]
    pub duties: LeaseView,
    /// Each notifier: offset, lag, deliveries, retries, last error (docs/operators.md,
    /// Notifications).
    #[serde(default)]
    pub notifiers: Vec<NotifierStatus>,
}

/// The leader lease's timings, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTimings {
    /// Lease duration.
    pub ttl_ms: u64,
    /// Attempts every.
    pub renew_every_ms: u64,
    /// Taken off the local deadline.
    pub margin_ms: u64,
    /// The longest a host group goes without a leader after its leader died:
    /// ttl + renew_every + the longest scan interval of the groups served.
    pub takeover_bound_ms: u64,
}

impl DaemonStatus {
    /// The status before the first scan.
    pub fn starting(hsdb: &str, platform: &str, profile: &str, now_ms: i64) -> DaemonStatus {
        DaemonStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            started_ms: now_ms,
            now_ms,
            state: "starting".to_owned(),
            hsdb: hsdb.to_owned(),
            platform: platform.to_owned(),
            profile: profile.to_owned(),
            below_seed_ranges: Vec::new(),
            scans_total: 0,
            groups: Vec::new(),
            events_logged: 0,
            last_event_id: 0,
            last_error: None,
            controller_id: String::new(),
            lease: None,
            duties: LeaseView::default(),
            notifiers: Vec::new(),
        }
    }
}

/// One host group's engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// The host group.
    pub name: String,
    /// Scans done (the engine's scan counter: NA when it is a multiple of 3).
    pub scans: u64,
    /// Time between scans.
    pub scan_interval_ms: u64,
    /// When the next scan is due, ms since the Unix epoch.
    pub next_scan_ms: i64,
    /// The last QuickQuery.
    pub last_qq: Option<RequestSummary>,
    /// The last NeedsAttention.
    pub last_na: Option<RequestSummary>,
    /// Restarts and relocations in progress.
    pub in_flight: Vec<InFlight>,
    /// The last decisions, oldest first, at most [`KEPT_DECISIONS`].
    pub last_decisions: Vec<Decision>,
    /// Scans that failed (HSDB or platform error) since start.
    pub errors: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Who leads the group, with what token, and what this controller refused.
    #[serde(default)]
    pub lease: LeaseView,
    /// The placement policies the engine runs with, and their problems.
    #[serde(default)]
    pub policies: PolicyStatus,
    /// Hosts in planned maintenance (`hactl host evacuate`), by name.
    #[serde(default)]
    pub maintenance: Vec<String>,
    /// The operator request being carried out (`request 7: evacuate host-a, 1 of 2 VM(s)
    /// moved`).
    #[serde(default)]
    pub operator_request: Option<String>,
    /// The last periodic verify's finding: each host whose loss would leave VMs without
    /// a place (`host-a: 5 VM(s)`); empty when the group can absorb any one host's loss.
    #[serde(default)]
    pub capacity_short: Vec<String>,
}

/// The placement policies of a group as its engine last loaded them from the HSDB
/// (`controlplane::policy::load_checked`, docs/operators.md "Policies").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// Collocations handed to the planner.
    pub collocations: u64,
    /// Anticollocations handed to the planner.
    pub anticollocations: u64,
    /// Workgroups handed to the planner.
    pub workgroups: u64,
    /// VMs with host exclusions.
    pub vms_with_exclusions: u64,
    /// When they were last loaded, ms since the Unix epoch (0: never).
    pub loaded_ms: i64,
    /// The problems of the stored policies, each with what the planner got.
    pub problems: Vec<String>,
    /// The last load that failed (the previous policies stay in force), if the last one did.
    pub last_error: Option<String>,
}

impl GroupStatus {
    /// A group not scanned yet.
    pub fn new(name: &str, scan_interval_ms: u64, next_scan_ms: i64) -> GroupStatus {
        GroupStatus {
            name: name.to_owned(),
            scans: 0,
            scan_interval_ms,
            next_scan_ms,
            last_qq: None,
            last_na: None,
            in_flight: Vec::new(),
            last_decisions: Vec::new(),
            errors: 0,
            last_error: None,
            lease: LeaseView::default(),
            policies: PolicyStatus::default(),
            maintenance: Vec::new(),
            operator_request: None,
            capacity_short: Vec::new(),
        }
    }
}

/// What one QuickQuery or NeedsAttention found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSummary {
    /// The scan number.
    pub scan: u64,
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// Hosts in the reply.
    pub hosts: u64,
    /// Monitors in the reply.
    pub monitors: u64,
    /// Monitors DOWN or not responsive.
    pub monitors_unhealthy: u64,
    /// Decisions the scan took (each with its reason in `last_decisions` and the log).
    pub decisions: u64,
    /// The `hsTag` the scan acknowledged (NeedsAttention), if any.
    pub tag: Option<i64>,
}

/// A restart or relocation in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// The VM.
    pub vm: String,
    /// The host it was on.
    pub from_host: String,
    /// The host it goes to, once chosen.
    pub to_host: Option<String>,
    /// The current phase.
    pub phase: String,
    /// Since when, ms since the Unix epoch.
    pub since_ms: i64,
}

/// One decision, with its reason and the numbers behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// The scan that took it.
    pub scan: u64,
    /// What was decided and why.
    pub text: String,
}
