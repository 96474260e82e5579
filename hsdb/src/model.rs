//! The values the HSDB stores and returns: states as enums, rows as structs.
//!
//! Enumerations are stored as their upper-case text (`STARTED`, `MISSING`), the way an
//! operator reading the file with `sqlite3` expects, and are checked by the schema.

use core::fmt;

use hvha_identity::{HelloId, Uuid};
use hvha_identity::{MacAddr, Version};

/// Declare an enumeration stored as text: `as_str`, `from_text`, `Display`.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The text stored in the database.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value stored as `text`, if any.
            pub fn from_text(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// Monitoring state of a VM (seed 004 L13126-13162; the seed stores numbers, of which
    /// only 1 ADDED, 2 STARTING, 3 STARTED are known, seed 004 L10955-10958).
    VmState {
        /// Added by the controller; monitoring not requested yet.
        Added => "ADDED",
        /// The controller asked the monitors to start monitoring.
        Starting => "STARTING",
        /// The agent completed its handshake with a monitor.
        Started => "STARTED",
        /// Monitoring is being stopped.
        Stopping => "STOPPING",
        /// Monitoring stopped.
        Stopped => "STOPPED",
        /// The VM is being removed.
        Removing => "REMOVING",
        /// The agent stopped gracefully (`SHDN`); its silence is not a failure.
        Suspended => "SUSPENDED",
        /// A VM the controller does not manage, seen by a monitor.
        Unknown => "UNKNOWN",
    }
}

text_enum! {
    /// State of a host monitor (seed: CAA node state, seed 004 L6676-6683).
    HmState {
        /// Running.
        Up => "UP",
        /// Down, for the reason in [`HmRow::reason`].
        Down => "DOWN",
    }
}

text_enum! {
    /// State of one HA interface of a monitor (`hm_interface.state`).
    InterfaceState {
        /// Up with carrier: the monitor hears the VMs behind it.
        Up => "UP",
        /// Down or without carrier: the monitor hears nothing there.
        Down => "DOWN",
    }
}

text_enum! {
    /// What one monitor last wrote about one VM's heartbeats (`vm_hm.last_state`).
    HeartbeatState {
        /// Heartbeats arrive (seed 004 L11804).
        Detected => "DETECTED",
        /// Heartbeats stopped; `hb_missed_ms` holds the time of the first miss.
        Missing => "MISSING",
        /// The agent stopped gracefully; it is never MISSING.
        Suspended => "SUSPENDED",
        /// The controller stopped this monitor's HA monitoring of the VM
        /// (`STOP_MONITORING`: the VM is down on purpose, being restarted). Never
        /// MISSING, and no evidence either way in NeedsAttention, until a start
        /// ([`Transition::StartWatching`]) resumes it; a restarted monitor does not
        /// watch it again (schema v5, docs/hsdb.md §3).
        Stopped => "STOPPED",
    }
}

text_enum! {
    /// What a [`PendingRow`] is about (the seed's `trans` opcodes, seed 004 L6684-6687).
    PendingKind {
        /// A VM changed state: `old_state`, `new_state`.
        StateChange => "STATE_CHANGE",
        /// A VM was seen for the first time (`old_state` NULL), or on another host than
        /// the one it was on (`from_host`).
        Discovered => "DISCOVERED",
        /// An application doorbell; `code` is the vector.
        Doorbell => "DOORBELL",
        /// A monitor or cluster event; `code` is the reason, `data` the event text.
        HmEvent => "HM_EVENT",
    }
}

text_enum! {
    /// Relocation priority of a VM.
    Priority {
        /// Relocated first.
        High => "HIGH",
        /// The default.
        Medium => "MEDIUM",
        /// Relocated last.
        Low => "LOW",
    }
}

text_enum! {
    /// How fast a VM failure is declared: k = 1, 2, 3 in `VMFDT = HFDT + k × 50 s`.
    DetectionSpeed {
        /// k = 1.
        Fast => "FAST",
        /// k = 2, the default.
        Normal => "NORMAL",
        /// k = 3.
        Slow => "SLOW",
    }
}

/// Identifier of a host, chosen by whoever adds it (like the seed's signed 64-bit `msid`,
/// seed 004 L6482-6498).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostId(pub i64);

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A managed host (`host` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    /// Identifier.
    pub id: HostId,
    /// Name, unique.
    pub name: String,
    /// Machine type, e.g. `8408` (QuickQuery's `machine_type`).
    pub machine_type: String,
    /// Model, e.g. `E8E`.
    pub model: String,
    /// Serial number, e.g. `212424W`.
    pub serial: String,
    /// CPU capacity in thousandths of a CPU.
    pub cpu_milli: u32,
    /// Memory capacity in MiB.
    pub memory_mb: u32,
    /// Host group the host belongs to.
    pub host_group: String,
}

/// What a host monitor registers at start ([`Hsdb::register_hm`](crate::Hsdb::register_hm)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HmRecord {
    /// The monitor's UUID.
    pub uuid: Uuid,
    /// The host it runs on.
    pub host: HostId,
    /// Its MAC on the HA network (the seed's trunk MAC).
    pub mac: MacAddr,
    /// The identifier of this run, broadcast in Hellos; changes at every restart.
    pub incarnation: HelloId,
    /// HVNCP version it runs.
    pub version: Version,
    /// Time of registration, ms since the Unix epoch; becomes `last_hb_ms`.
    pub at: i64,
}

/// A host monitor as stored (`hm` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HmRow {
    /// The monitor's UUID.
    pub uuid: Uuid,
    /// The host it runs on.
    pub host: HostId,
    /// Its MAC on the HA network.
    pub mac: MacAddr,
    /// UP or DOWN.
    pub state: HmState,
    /// Reason code of the last state change (seed: CAA reason, 0x40 = NODE_SHUTDOWN,
    /// seed 004 L7012-7014); 0 when none.
    pub reason: u32,
    /// Last heartbeat the monitor wrote, ms since the Unix epoch (QuickQuery's
    /// `hmResponseSec` counts from it).
    pub last_hb_ms: i64,
    /// Identifier of the monitor's current run.
    pub incarnation: HelloId,
    /// HVNCP version it runs.
    pub version: Version,
    /// True while unacknowledged event data is pending for this monitor (QuickQuery's
    /// `hasData`).
    pub has_data: bool,
}

/// A VM as stored (`vm` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRow {
    /// The VM's UUID.
    pub uuid: Uuid,
    /// Name; empty until the controller sets it.
    pub name: String,
    /// Host the VM last ran on, as its monitors saw it.
    pub current_host: Option<HostId>,
    /// Host the VM belongs to.
    pub home_host: Option<HostId>,
    /// Monitoring state.
    pub state: VmState,
    /// Managed by the controller (restarted / relocated on failure).
    pub managed: bool,
    /// Heartbeat monitoring wanted.
    pub ha_monitor: bool,
    /// Relocation priority.
    pub priority: Priority,
    /// Failure detection speed.
    pub detection_speed: DetectionSpeed,
    /// CPU entitlement in thousandths of a CPU.
    pub cpu_milli: u32,
    /// Memory in MiB.
    pub memory_mb: u32,
    /// Operating system the agent reported.
    pub ostype: Option<String>,
    /// Protocol versions the agent speaks, oldest and newest.
    pub agent_versions: Option<(Version, Version)>,
    /// Doorbell vectors OR-ed together since the last acknowledgement (NeedsAttention's
    /// `shortMsg`).
    pub short_msg: u64,
    /// Last change of this row, ms since the Unix epoch.
    pub updated_ms: i64,
}

/// One monitor's view of one VM (`vm_hm` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmHmRow {
    /// The VM.
    pub vm: Uuid,
    /// The monitor.
    pub hm: Uuid,
    /// The VM's MAC on the interface paired with this monitor, once discovered.
    pub mac: Option<MacAddr>,
    /// When this monitor first declared the VM MISSING; `None` while heartbeats arrive.
    pub hb_missed_ms: Option<i64>,
    /// Last transition written.
    pub last_state: HeartbeatState,
    /// Time of that transition, ms since the Unix epoch.
    pub updated_ms: i64,
}

/// One HA interface of a monitor as stored (`hm_interface` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmInterfaceRow {
    /// The monitor.
    pub hm: Uuid,
    /// The interface's name on the monitor's host.
    pub name: String,
    /// UP (carrier) or DOWN.
    pub state: InterfaceState,
    /// When it entered that state, ms since the Unix epoch.
    pub changed_ms: i64,
}

/// How many VMs one monitor reports in each heartbeat state ([`Hsdb::vm_hm_counts`]).
///
/// [`Hsdb::vm_hm_counts`]: crate::Hsdb::vm_hm_counts
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeartbeatCounts {
    /// Rows in `DETECTED`.
    pub detected: u64,
    /// Rows in `MISSING`.
    pub missing: u64,
    /// Rows in `SUSPENDED`.
    pub suspended: u64,
    /// Rows in `STOPPED` (monitoring stopped by the controller).
    pub stopped: u64,
}

impl HeartbeatCounts {
    /// Rows of the monitor, in any state.
    pub fn total(&self) -> u64 {
        self.detected + self.missing + self.suspended + self.stopped
    }
}

/// An item awaiting the controller's acknowledgement (`pending` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRow {
    /// Row id, increasing.
    pub id: i64,
    /// Tag of the NeedsAttention reply that reported this item; `None` until then.
    pub tag: Option<i64>,
    /// The VM concerned, if any.
    pub vm: Option<Uuid>,
    /// The monitor that wrote it, if any.
    pub hm: Option<Uuid>,
    /// What happened.
    pub kind: PendingKind,
    /// DOORBELL: the vector (OR-ed over coalesced doorbells); HM_EVENT: the reason
    /// code; otherwise 0.
    pub code: u64,
    /// STATE_CHANGE / DISCOVERED: the state before (`None` for a new VM).
    pub old_state: Option<VmState>,
    /// STATE_CHANGE / DISCOVERED: the state after.
    pub new_state: Option<VmState>,
    /// DISCOVERED after a move: the host the VM was on.
    pub from_host: Option<HostId>,
    /// DOORBELL: the vector in hex; HM_EVENT: the event text; otherwise empty.
    pub data: String,
    /// When it happened, ms since the Unix epoch.
    pub created_ms: i64,
    /// When a later transition last coalesced into it (= `created_ms` if none did).
    pub updated_ms: i64,
}

impl PendingRow {
    /// One line for people: `old=STARTED:new=SUSPENDED[:from_host=42]` for a VM state
    /// item (`old=NONE` for a new VM), the `data` text otherwise.
    pub fn describe(&self) -> String {
        match (self.kind, self.new_state) {
            (PendingKind::StateChange | PendingKind::Discovered, Some(new)) => {
                let old = self.old_state.map_or("NONE", VmState::as_str);
                match self.from_host {
                    Some(from) => format!("old={old}:new={new}:from_host={from}"),
                    None => format!("old={old}:new={new}"),
                }
            }
            _ => self.data.clone(),
        }
    }
}

/// An event of the durable outbox (`event` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// Id, strictly increasing, never reused.
    pub id: i64,
    /// Event name, e.g. `VM_NONRESP_DETECTED`.
    pub kind: String,
    /// The VM concerned, if any.
    pub vm: Option<Uuid>,
    /// The monitor concerned, if any.
    pub hm: Option<Uuid>,
    /// Free text.
    pub text: String,
    /// When it happened, ms since the Unix epoch.
    pub created_ms: i64,
}

/// A health transition written by a host monitor. Times (`at`) are milliseconds since
/// the Unix epoch, from the caller's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// An agent completed its handshake (seed: vioHmVmDiscover, seed 004 L11668-11737).
    /// The VM becomes STARTED, the (VM, monitor) pair records the MAC and heartbeats.
    Discovered {
        /// The VM.
        vm: Uuid,
        /// The monitor that saw it.
        hm: Uuid,
        /// The VM's MAC on the interface paired with this monitor.
        mac: MacAddr,
        /// Operating system from the agent's SYN.
        ostype: String,
        /// Oldest protocol version the agent speaks.
        ver_lower: Version,
        /// Newest protocol version the agent speaks.
        ver_upper: Version,
        /// When.
        at: i64,
    },
    /// Heartbeats (re)started (seed: vioHmHbDetected, seed 004 L11801-11808).
    Detected {
        /// The VM.
        vm: Uuid,
        /// The monitor.
        hm: Uuid,
        /// When.
        at: i64,
    },
    /// Heartbeats stopped (seed: vioHmClientMissed, seed 004 L12714-12735).
    Missing {
        /// The VM.
        vm: Uuid,
        /// The monitor.
        hm: Uuid,
        /// When the monitor declared the miss.
        at: i64,
    },
    /// The agent stopped gracefully (`SHDN`; seed: vioHmVmSuspend).
    Suspended {
        /// The VM.
        vm: Uuid,
        /// The monitor.
        hm: Uuid,
        /// When.
        at: i64,
    },
    /// An application doorbell (`DBELL`): the vector is OR-ed into the VM's short message.
    Doorbell {
        /// The VM.
        vm: Uuid,
        /// The monitor.
        hm: Uuid,
        /// The doorbell vector.
        vector: u64,
        /// When.
        at: i64,
    },
    /// The monitor's own heartbeat (seed: vioHmHb).
    HmHeartbeat {
        /// The monitor.
        hm: Uuid,
        /// When.
        at: i64,
    },
    /// A monitor or cluster event: sets the monitor's state and reason and leaves the
    /// event text pending for the controller (seed: the CAA `trans` row, opcode 9,
    /// seed 004 L6936-6953).
    HmEvent {
        /// The monitor.
        hm: Uuid,
        /// Its new state.
        state: HmState,
        /// Reason code, e.g. 0x40 for a node shutdown.
        reason: u32,
        /// Event text.
        text: String,
        /// When.
        at: i64,
    },
    /// One of the monitor's HA interfaces is up with carrier, or is not: its
    /// `hm_interface` row. A change of state (or a first row that is DOWN) also leaves an
    /// `HM_EVENT` pending for the controller, in the seed's CAA adapter-event form
    /// (`EVENT_TYPE=ADAPTER_DOWN` / `ADAPTER_UP`, `INTERFACE_NAME=…`, seed 004 L6644-6667,
    /// L7337-7339); the monitor's own state is untouched.
    HmInterface {
        /// The monitor.
        hm: Uuid,
        /// The interface's name.
        interface: String,
        /// Its state.
        state: InterfaceState,
        /// When.
        at: i64,
    },
    /// The monitor carried out the controller's `STOP_MONITORING` for the VM: its row
    /// becomes STOPPED with no miss time (a miss it held ends), the VM's own state is
    /// untouched and nothing is left pending. Only an existing row changes: a monitor
    /// with no row for the VM has nothing to stop, and an unknown VM is not created.
    StopWatching {
        /// The VM.
        vm: Uuid,
        /// The monitor.
        hm: Uuid,
        /// When the monitor stopped watching.
        at: i64,
    },
    /// The monitor carried out `START_MONITORING`: a STOPPED row becomes DETECTED (watched,
    /// nothing missed yet: MISSING follows if no heartbeat comes). A row in any other
    /// state is left as it is (a start never clears a miss); the VM's state is untouched.
    StartWatching {
        /// The VM.
        vm: Uuid,
        /// The monitor.
        hm: Uuid,
        /// When the monitor resumed watching.
        at: i64,
    },
    /// The monitor carried out `FORGET_VM`: its row for the VM is deleted (the VM left
    /// this host, or the controller removed it). The VM row and its other monitors' rows
    /// stay. A move already deleted the row (docs/hsdb.md §3): then nothing changes.
    Forget {
        /// The VM.
        vm: Uuid,
        /// The monitor.
        hm: Uuid,
        /// When the monitor forgot it (nothing stores it: the row is gone).
        at: i64,
    },
    /// An entry of the event outbox.
    Event {
        /// Event name.
        kind: String,
        /// The VM concerned, if any.
        vm: Option<Uuid>,
        /// The monitor concerned, if any.
        hm: Option<Uuid>,
        /// Free text.
        text: String,
        /// When.
        at: i64,
    },
}

impl Transition {
    /// The transition's name, as used in errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Transition::Discovered { .. } => "Discovered",
            Transition::Detected { .. } => "Detected",
            Transition::Missing { .. } => "Missing",
            Transition::Suspended { .. } => "Suspended",
            Transition::Doorbell { .. } => "Doorbell",
            Transition::HmHeartbeat { .. } => "HmHeartbeat",
            Transition::HmEvent { .. } => "HmEvent",
            Transition::HmInterface { .. } => "HmInterface",
            Transition::StopWatching { .. } => "StopWatching",
            Transition::StartWatching { .. } => "StartWatching",
            Transition::Forget { .. } => "Forget",
            Transition::Event { .. } => "Event",
        }
    }
}

/// What one [`Hsdb::apply`](crate::Hsdb::apply) call wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// `Discovered` transitions.
    pub discovered: usize,
    /// `Detected` transitions.
    pub detected: usize,
    /// `Missing` transitions, including ignored ones.
    pub missing: usize,
    /// `Missing` transitions ignored because that monitor had the VM SUSPENDED.
    pub missing_ignored: usize,
    /// `Suspended` transitions.
    pub suspended: usize,
    /// `Doorbell` transitions.
    pub doorbells: usize,
    /// `HmHeartbeat` transitions.
    pub hm_heartbeats: usize,
    /// `HmEvent` transitions.
    pub hm_events: usize,
    /// `HmInterface` transitions, including those that changed nothing.
    pub hm_interfaces: usize,
    /// `Event` transitions (outbox rows).
    pub events: usize,
    /// VM rows created (by `Discovered`, or on the fly for an unknown VM).
    pub vms_created: usize,
    /// Rows added to `pending`.
    pub pending_added: usize,
    /// VM items merged into the VM's unreported item of the same kind instead of added.
    pub pending_coalesced: usize,
    /// `Detected`, `Missing` or `Suspended` ignored because the VM lives on another host
    /// than the monitor's (it moved; only `Discovered` moves it).
    pub elsewhere_ignored: usize,
    /// Rows of other monitors of the VM's host turned from SUSPENDED to MISSING because
    /// heartbeats came back through this one.
    pub suspensions_ended: usize,
    /// `vm_hm` rows of the monitors of the host a VM left, deleted at its move.
    pub vm_hm_retired: usize,
    /// FORGET_VM commands queued for those monitors.
    pub commands_queued: usize,
    /// `StopWatching` transitions.
    pub stop_watching: usize,
    /// `StartWatching` transitions.
    pub start_watching: usize,
    /// `Forget` transitions.
    pub forget: usize,
    /// Rows that `StopWatching` turned STOPPED (a row STOPPED already, or none, is not
    /// counted).
    pub watching_stopped: usize,
    /// STOPPED rows that `StartWatching` turned DETECTED.
    pub watching_started: usize,
    /// Rows that `Forget` deleted.
    pub vm_hm_forgotten: usize,
}

impl Applied {
    /// Transitions applied, of every kind.
    pub fn total(&self) -> usize {
        self.discovered
            + self.detected
            + self.missing
            + self.suspended
            + self.doorbells
            + self.hm_heartbeats
            + self.hm_events
            + self.hm_interfaces
            + self.stop_watching
            + self.start_watching
            + self.forget
            + self.events
    }
}
