//! The Failure Detection Engine's parameters: what each one means, where it may be set,
//! its allowed range, and how the settings of the system, a host group, a host and a VM
//! resolve into the values one engine runs with — the most specific level wins
//! (seed 004 L15473-15477, the HA-monitor inheritance rule, applied to every key).
//!
//! Settings are stored as text in the HSDB's params table (scopes System / HostGroup /
//! Host / Vm); this module parses and checks them. Every error names the key, the bad
//! value and the allowed range.
//!
//! Two profiles:
//! - `standard` (default): the seed's values and ranges (`host_failure_detection_time`
//!   90 s, 90-600; VMFDT = hostFDT + k × 50 s; a scan every 20 s).
//! - `fast`: seconds instead of minutes, for tests, demos and operators who want it
//!   (scan 1 s, hostFDT 6 s, VM threshold 2 s → VMFDT 8/10/12 s). Its ranges go below the
//!   seed's; a resolution that uses any value outside the seed's ranges says so
//!   ([`GroupParams::below_seed_ranges`]) and `hactl` prints it.
//!
//! This module never reads the store or a clock: it is handed the settings.

use std::collections::HashMap;
use std::fmt;

use hsdb::{DetectionSpeed, HostId, Uuid, VmRow};

/// The seed's hard-coded VM threshold: VMFDT = hostFDT + k × 50 s (seed 004 L4788-4795).
pub const SEED_VM_THRESHOLD_MS: i64 = 50_000;

/// Where a setting applies: the store's scopes (System / HostGroup / Host / Vm).
pub use hsdb::ParamScope as Scope;

/// One stored setting: a key's text value at a scope (the store's `param` row).
pub use hsdb::ParamRow as Setting;

/// The level of a scope.
pub const fn level_of(scope: &Scope) -> Level {
    match scope {
        Scope::System => Level::System,
        Scope::HostGroup(_) => Level::HostGroup,
        Scope::Host(_) => Level::Host,
        Scope::Vm(_) => Level::Vm,
    }
}

/// A level of the hierarchy, least specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// Built into the engine (the profile's default).
    Default,
    /// System-wide.
    System,
    /// Host group.
    HostGroup,
    /// Host.
    Host,
    /// VM.
    Vm,
}

impl Level {
    /// The level's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Default => "default",
            Level::System => "system",
            Level::HostGroup => "host_group",
            Level::Host => "host",
            Level::Vm => "vm",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parameter set a group runs with: `standard` (the seed's) or `fast`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// The seed's values and ranges.
    Standard,
    /// Seconds instead of minutes; ranges below the seed's.
    Fast,
}

impl Profile {
    /// The name, as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Profile::Standard => "standard",
            Profile::Fast => "fast",
        }
    }
}

/// What the engine does about a failure it decided (seed 004 L15547-15565).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestartPolicy {
    /// Restart / relocate automatically, and notify.
    Auto,
    /// Only notify (the seed's `advisory_mode`); the operator acts.
    Advisory,
}

impl RestartPolicy {
    /// The name, as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Auto => "auto",
            RestartPolicy::Advisory => "advisory",
        }
    }
}

/// Why a setting or a resolution was refused. Each names the key, the value and what is
/// allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// No such key.
    #[error("unknown parameter {key:?}; known: {known}")]
    UnknownKey {
        /// The key given.
        key: String,
        /// Every known key.
        known: String,
    },
    /// The key cannot be set at that level.
    #[error("parameter {key} cannot be set at {scope}; it can be set at: {allowed}")]
    WrongScope {
        /// The key.
        key: String,
        /// The scope given.
        scope: String,
        /// Levels where it can be set.
        allowed: String,
    },
    /// The value does not parse or is out of range.
    #[error("{key}={value:?} at {scope} is not allowed: {allowed}")]
    BadValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// Where it was set.
        scope: String,
        /// What is allowed (a range with its unit, or the words).
        allowed: String,
    },
    /// Two values that must be ordered are not.
    #[error("{what}")]
    Inconsistent {
        /// The keys, values and the rule.
        what: String,
    },
}

/// Every parameter the engine reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// `profile`: `standard` or `fast`.
    Profile,
    /// `scan_interval`: time between two requests (QuickQuery or NeedsAttention).
    ScanInterval,
    /// `host_failure_detection_time`: how long every monitor of a host must be unhealthy.
    HostFailureDetectionTime,
    /// `vm_failure_detection_speed`: k in VMFDT.
    VmFailureDetectionSpeed,
    /// `vm_threshold`: the 50 s step of VMFDT (seed: hard-coded).
    VmThreshold,
    /// `restart_policy`: `auto` or `advisory`.
    RestartPolicy,
    /// `ha_monitor`: `enable` or `disable`.
    HaMonitor,
    /// `hm_silent_after`: a monitor whose last heartbeat is older counts as silent.
    HmSilentAfter,
    /// `probe_timeout`: bound of one probe (host alive, ping, power state).
    ProbeTimeout,
    /// `action_timeout`: bound of one action (stop, start, cleanup).
    ActionTimeout,
    /// `command_timeout`: how long a restart waits for monitors to confirm a
    /// stop / start of HA monitoring.
    CommandTimeout,
    /// `max_restarts_per_host`: restarts running at once toward one target host.
    MaxRestartsPerHost,
    /// `na_every`: NeedsAttention every Nth scan.
    NaEvery,
    /// `na_max_items`: items one NeedsAttention reply carries at most.
    NaMaxItems,
    /// `host_failure_ping_vms`: ping a failed host's VMs before restarting them.
    HostFailurePingVms,
    /// `vm_restart_limit`: restarts of one VM (for its own failures) within
    /// `vm_restart_window` before it is no longer restarted.
    VmRestartLimit,
    /// `vm_restart_window`: the window `vm_restart_limit` counts in.
    VmRestartWindow,
    /// `verify_interval`: how often the engine plans the loss of each host in turn.
    VerifyInterval,
}

/// The value type of a key, with its allowed range per profile.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Milliseconds: `standard` range, `fast` range.
    Duration {
        standard: (i64, i64),
        fast: (i64, i64),
    },
    /// A count.
    Count { min: u32, max: u32 },
    /// One of words.
    Words(&'static [&'static str]),
}

/// Levels where a key can be set.
const GROUP_LEVELS: &[Level] = &[Level::System, Level::HostGroup];
const VM_LEVELS: &[Level] = &[Level::System, Level::HostGroup, Level::Vm];
const ALL_LEVELS: &[Level] = &[Level::System, Level::HostGroup, Level::Host, Level::Vm];

const S: i64 = 1_000;

impl Key {
    /// Every key, in the order `hactl` lists them.
    pub const ALL: &'static [Key] = &[
        Key::Profile,
        Key::ScanInterval,
        Key::HostFailureDetectionTime,
        Key::VmFailureDetectionSpeed,
        Key::VmThreshold,
        Key::RestartPolicy,
        Key::HaMonitor,
        Key::HmSilentAfter,
        Key::ProbeTimeout,
        Key::ActionTimeout,
        Key::CommandTimeout,
        Key::MaxRestartsPerHost,
        Key::NaEvery,
        Key::NaMaxItems,
        Key::HostFailurePingVms,
        Key::VmRestartLimit,
        Key::VmRestartWindow,
        Key::VerifyInterval,
    ];

    /// The key's name, as stored and typed.
    pub const fn as_str(self) -> &'static str {
        match self {
            Key::Profile => "profile",
            Key::ScanInterval => "scan_interval",
            Key::HostFailureDetectionTime => "host_failure_detection_time",
            Key::VmFailureDetectionSpeed => "vm_failure_detection_speed",
            Key::VmThreshold => "vm_threshold",
            Key::RestartPolicy => "restart_policy",
            Key::HaMonitor => "ha_monitor",
            Key::HmSilentAfter => "hm_silent_after",
            Key::ProbeTimeout => "probe_timeout",
            Key::ActionTimeout => "action_timeout",
            Key::CommandTimeout => "command_timeout",
            Key::MaxRestartsPerHost => "max_restarts_per_host",
            Key::NaEvery => "na_every",
            Key::NaMaxItems => "na_max_items",
            Key::HostFailurePingVms => "host_failure_ping_vms",
            Key::VmRestartLimit => "vm_restart_limit",
            Key::VmRestartWindow => "vm_restart_window",
            Key::VerifyInterval => "verify_interval",
        }
    }

    /// The key named `name`.
    pub fn from_name(name: &str) -> Result<Key, ParamError> {
        Key::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| ParamError::UnknownKey {
                key: name.to_owned(),
                known: Key::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Levels where the key can be set (seed 004 L4759-4785, L15471-15485: detection time
    /// at system and host group; detection speed also per VM; HA monitoring at every level).
    pub const fn levels(self) -> &'static [Level] {
        match self {
            Key::VmFailureDetectionSpeed => VM_LEVELS,
            Key::HaMonitor => ALL_LEVELS,
            _ => GROUP_LEVELS,
        }
    }

    /// One line on what the key means, for `hactl` and the docs.
    pub const fn help(self) -> &'static str {
        match self {
            Key::Profile => {
                "standard (or default): the seed's values and ranges; fast: seconds, below the seed's ranges"
            }
            Key::ScanInterval => "time between two requests; NeedsAttention every na_every-th scan",
            Key::HostFailureDetectionTime => {
                "every monitor of a host unhealthy this long (and the platform confirms) = host failure"
            }
            Key::VmFailureDetectionSpeed => {
                "fast|normal|slow: k in VMFDT = host_failure_detection_time + k * vm_threshold"
            }
            Key::VmThreshold => "the step of VMFDT (the seed hard-codes 50 s)",
            Key::RestartPolicy => "auto: restart failed VMs; advisory: only notify",
            Key::HaMonitor => "enable|disable heartbeat-based VM failure detection",
            Key::HmSilentAfter => "a monitor whose last heartbeat is older is silent (unhealthy)",
            Key::ProbeTimeout => "bound of one probe: host alive, ping, power state",
            Key::ActionTimeout => "bound of one action: stop, start, cleanup",
            Key::CommandTimeout => {
                "how long a restart waits for monitors to confirm stop/start of HA monitoring"
            }
            Key::MaxRestartsPerHost => "restarts in progress at once toward one target host",
            Key::NaEvery => "NeedsAttention every Nth scan (the seed: 3)",
            Key::NaMaxItems => "items one NeedsAttention reply carries at most; the rest come next",
            Key::HostFailurePingVms => {
                "enable: a failed host's VM that answers a ping is alive (a partition) and is not restarted"
            }
            Key::VmRestartLimit => {
                "restarts of one VM for its own failures within vm_restart_window; then it is not restarted"
            }
            Key::VmRestartWindow => "the sliding window vm_restart_limit counts restarts in",
            Key::VerifyInterval => {
                "how often the engine plans the loss of each host in turn (hactl verify); GROUP_CAPACITY_SHORT when one cannot be absorbed"
            }
        }
    }

    const fn kind(self) -> Kind {
        match self {
            Key::Profile => Kind::Words(&["standard", "default", "fast"]),
            // The seed sleeps 20 s between requests (seed 004 L12209-12210) and gives no
            // range; 5-300 s is ours.
            Key::ScanInterval => Kind::Duration {
                standard: (5 * S, 300 * S),
                fast: (100, 300 * S),
            },
            // 90-600 s (seed 004 L4777-4778, L15596).
            Key::HostFailureDetectionTime => Kind::Duration {
                standard: (90 * S, 600 * S),
                fast: (S, 600 * S),
            },
            Key::VmFailureDetectionSpeed => Kind::Words(&["fast", "normal", "slow"]),
            // Hard-coded 50 in the seed (seed 004 L4788-4791): fixed in the standard profile.
            Key::VmThreshold => Kind::Duration {
                standard: (50 * S, 50 * S),
                fast: (S, 50 * S),
            },
            Key::RestartPolicy => Kind::Words(&["auto", "advisory", "advisory_mode"]),
            Key::HaMonitor => Kind::Words(&["enable", "disable"]),
            // Ours: the monitors heartbeat into the HSDB every 30 s by default
            // (docs/operations.md hm_heartbeat_period_ms).
            Key::HmSilentAfter => Kind::Duration {
                standard: (10 * S, 600 * S),
                fast: (500, 600 * S),
            },
            // The seed's failed ping took ~6 s (seed 004 L13484-13492).
            Key::ProbeTimeout => Kind::Duration {
                standard: (S, 60 * S),
                fast: (100, 60 * S),
            },
            Key::ActionTimeout => Kind::Duration {
                standard: (10 * S, 3_600 * S),
                fast: (500, 3_600 * S),
            },
            Key::CommandTimeout => Kind::Duration {
                standard: (5 * S, 600 * S),
                fast: (200, 600 * S),
            },
            // PowerVM's remote restart runs at most 32 at once per destination (seed 004
            // L648-649); the seed's task pool has 128 threads (seed 004 L2796-2799).
            Key::MaxRestartsPerHost => Kind::Count { min: 1, max: 128 },
            Key::NaEvery => Kind::Count { min: 1, max: 10 },
            Key::NaMaxItems => Kind::Count {
                min: 1,
                max: 100_000,
            },
            Key::HostFailurePingVms => Kind::Words(&["enable", "disable"]),
            // vSphere HA's "maximum per-VM resets" (default 3); ours: at most 1,000.
            Key::VmRestartLimit => Kind::Count { min: 1, max: 1_000 },
            // vSphere HA's "maximum resets time window" (default 1 hour); ours: 1 min to
            // 7 days (the fast profile from 1 s, for tests).
            Key::VmRestartWindow => Kind::Duration {
                standard: (60 * S, 7 * 86_400 * S),
                fast: (S, 7 * 86_400 * S),
            },
            // Ours (the seed verifies with each Deep Discovery, once a day, seed 004
            // L4588-4607): 1 min to 1 day, 5 min by default (the fast profile from 1 s).
            Key::VerifyInterval => Kind::Duration {
                standard: (60 * S, 86_400 * S),
                fast: (S, 86_400 * S),
            },
        }
    }

    /// The allowed values in words, for the given profile.
    pub fn allowed(self, profile: Profile) -> String {
        match self.kind() {
            Kind::Words(words) => format!("one of {}", words.join(", ")),
            Kind::Count { min, max } => format!("{min}..={max}"),
            Kind::Duration { standard, fast } => {
                let (lo, hi) = match profile {
                    Profile::Standard => standard,
                    Profile::Fast => fast,
                };
                let mut text = format!(
                    "{}..={} (profile {}; a number of seconds, or with a unit: 1500ms, 90s, 2m)",
                    show_ms(lo),
                    show_ms(hi),
                    profile.as_str()
                );
                if profile == Profile::Standard && fast.0 < standard.0 {
                    text.push_str(&format!(
                        "; profile fast allows down to {}",
                        show_ms(fast.0)
                    ));
                }
                text
            }
        }
    }

    fn seed_range(self) -> Option<(i64, i64)> {
        match self.kind() {
            Kind::Duration { standard, .. } => Some(standard),
            _ => None,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `90s`, `1500ms`, `2m`.
pub fn show_ms(ms: i64) -> String {
    if ms % 60_000 == 0 && ms >= 120_000 {
        format!("{}m", ms / 60_000)
    } else if ms % 1_000 == 0 {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

/// A parsed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    Ms(i64),
    Count(u32),
    Word(&'static str),
}

/// Parse a duration: `90` (seconds), `90s`, `1500ms`, `2m`. `None` when it does not parse.
fn parse_duration(text: &str) -> Option<i64> {
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => t.split_at(at),
        None => (t, "s"),
    };
    if digits.is_empty() || digits.len() > 12 {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// Check one setting: known key, settable at its scope, value parses and lies in the
/// range of `profile`. This is what `hactl modify` calls before it writes.
pub fn check(scope: &Scope, key: &str, value: &str, profile: Profile) -> Result<(), ParamError> {
    let key = Key::from_name(key)?;
    check_key(scope, key, value, profile).map(|_| ())
}

fn check_key(scope: &Scope, key: Key, value: &str, profile: Profile) -> Result<Value, ParamError> {
    if !key.levels().contains(&level_of(scope)) {
        return Err(ParamError::WrongScope {
            key: key.as_str().to_owned(),
            scope: scope.to_string(),
            allowed: key
                .levels()
                .iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let bad = || ParamError::BadValue {
        key: key.as_str().to_owned(),
        value: value.to_owned(),
        scope: scope.to_string(),
        allowed: key.allowed(profile),
    };
    match key.kind() {
        Kind::Words(words) => {
            let v = value.trim().to_ascii_lowercase();
            words
                .iter()
                .find(|w| **w == v)
                .map(|w| Value::Word(w))
                .ok_or_else(bad)
        }
        Kind::Count { min, max } => {
            let t = value.trim();
            if t.is_empty() || t.len() > 10 || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            match t.parse::<u64>() {
                Ok(n) if n >= u64::from(min) && n <= u64::from(max) => {
                    Ok(Value::Count(u32::try_from(n).map_err(|_| bad())?))
                }
                _ => Err(bad()),
            }
        }
        Kind::Duration { standard, fast } => {
            let (lo, hi) = match profile {
                Profile::Standard => standard,
                Profile::Fast => fast,
            };
            match parse_duration(value) {
                Some(ms) if ms >= lo && ms <= hi => Ok(Value::Ms(ms)),
                _ => Err(bad()),
            }
        }
    }
}

/// The parameters one host group's engine runs with, plus the host and VM overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupParams {
    /// The host group.
    pub group: String,
    /// The profile in effect.
    pub profile: Profile,
    /// Time between two requests, ms.
    pub scan_interval_ms: i64,
    /// host_failure_detection_time, ms.
    pub host_fdt_ms: i64,
    /// The group's detection speed (a VM may override it).
    pub detection_speed: DetectionSpeed,
    /// The step of VMFDT, ms (seed: 50 s).
    pub vm_threshold_ms: i64,
    /// Auto restart or advisory.
    pub restart_policy: RestartPolicy,
    /// Heartbeat-based VM failure detection, at group level.
    pub ha_monitor: bool,
    /// A monitor whose last heartbeat is older than this is silent, ms.
    pub hm_silent_after_ms: i64,
    /// Bound of one probe, ms (the daemon configures the platform driver with it).
    pub probe_timeout_ms: i64,
    /// Bound of one action, ms (the daemon configures the platform driver with it).
    pub action_timeout_ms: i64,
    /// How long a restart waits for monitors to confirm stop / start of monitoring, ms.
    pub command_timeout_ms: i64,
    /// Restarts in progress at once toward one target host.
    pub max_restarts_per_host: u32,
    /// NeedsAttention iff scan % na_every == 0.
    pub na_every: u32,
    /// Items one NeedsAttention reply carries at most.
    pub na_max_items: u32,
    /// Ping a failed host's VMs before restarting them; one that answers is not restarted
    /// (ours; the seed's host relocation pings no VM).
    pub host_failure_ping_vms: bool,
    /// Restarts of one VM for its own failures within `vm_restart_window_ms` (the
    /// restart budget; ours, after vSphere HA's maximum per-VM resets).
    pub vm_restart_limit: u32,
    /// The window of the restart budget, ms.
    pub vm_restart_window_ms: i64,
    /// How often the engine verifies that the group can absorb the loss of any one host,
    /// ms.
    pub verify_interval_ms: i64,
    /// Where each key's group value came from.
    pub origins: Vec<(Key, Level)>,
    /// Per-host `ha_monitor`.
    pub host_ha_monitor: HashMap<HostId, bool>,
    /// Per-VM overrides.
    pub vm_overrides: HashMap<Uuid, VmOverride>,
}

/// What a VM-level setting overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VmOverride {
    /// `ha_monitor` at VM level.
    pub ha_monitor: Option<bool>,
    /// `vm_failure_detection_speed` at VM level.
    pub detection_speed: Option<DetectionSpeed>,
}

/// The parameters one VM is judged with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmParams {
    /// Heartbeat-based detection enabled for it.
    pub ha_monitor: bool,
    /// Its detection speed.
    pub detection_speed: DetectionSpeed,
    /// Its VMFDT, ms.
    pub vmfdt_ms: i64,
}

/// k in VMFDT = hostFDT + k × threshold (seed 004 L4793-4795).
pub const fn speed_factor(speed: DetectionSpeed) -> i64 {
    match speed {
        DetectionSpeed::Fast => 1,
        DetectionSpeed::Normal => 2,
        DetectionSpeed::Slow => 3,
    }
}

fn speed_from_word(word: &str) -> DetectionSpeed {
    match word {
        "fast" => DetectionSpeed::Fast,
        "slow" => DetectionSpeed::Slow,
        _ => DetectionSpeed::Normal,
    }
}

impl GroupParams {
    /// The seed's defaults (profile `standard`).
    pub fn standard(group: &str) -> GroupParams {
        GroupParams {
            group: group.to_owned(),
            profile: Profile::Standard,
            scan_interval_ms: 20 * S,
            host_fdt_ms: 90 * S,
            detection_speed: DetectionSpeed::Normal,
            vm_threshold_ms: SEED_VM_THRESHOLD_MS,
            restart_policy: RestartPolicy::Auto,
            ha_monitor: true,
            hm_silent_after_ms: 65 * S,
            probe_timeout_ms: 10 * S,
            action_timeout_ms: 300 * S,
            command_timeout_ms: 30 * S,
            max_restarts_per_host: 32,
            na_every: 3,
            na_max_items: 5_000,
            host_failure_ping_vms: false,
            vm_restart_limit: 3,
            vm_restart_window_ms: 3_600 * S,
            verify_interval_ms: 300 * S,
            origins: Key::ALL.iter().map(|k| (*k, Level::Default)).collect(),
            host_ha_monitor: HashMap::new(),
            vm_overrides: HashMap::new(),
        }
    }

    /// The `fast` profile's defaults: a scan every second, hostFDT 6 s, VM threshold 2 s
    /// (VMFDT 8 / 10 / 12 s), a monitor silent after 3 s (run the monitors with
    /// `hm_heartbeat_period_ms` ≤ 1000).
    pub fn fast(group: &str) -> GroupParams {
        GroupParams {
            profile: Profile::Fast,
            scan_interval_ms: S,
            host_fdt_ms: 6 * S,
            vm_threshold_ms: 2 * S,
            hm_silent_after_ms: 3 * S,
            probe_timeout_ms: 2 * S,
            action_timeout_ms: 10 * S,
            command_timeout_ms: 3 * S,
            na_max_items: 1_000,
            verify_interval_ms: 10 * S,
            ..GroupParams::standard(group)
        }
    }

    /// [`GroupParams::resolve_from`] with the `standard` profile as the base.
    pub fn resolve(group: &str, settings: &[Setting]) -> Result<GroupParams, ParamError> {
        GroupParams::resolve_from(group, Profile::Standard, settings)
    }

    /// Resolve the settings for host group `group`: the profile first (`base`, e.g. from
    /// the daemon's configuration file, then the system's, then the group's `profile`),
    /// then every key from the profile's defaults, the system, the group; host and VM
    /// settings are kept for [`GroupParams::for_vm`]. Settings of other groups are
    /// ignored. Every bad setting is an error naming it.
    pub fn resolve_from(
        group: &str,
        base: Profile,
        settings: &[Setting],
    ) -> Result<GroupParams, ParamError> {
        let applies = |s: &Setting| match &s.scope {
            Scope::HostGroup(g) => g == group,
            _ => true,
        };
        // The profile decides the defaults and the ranges of the rest.
        let mut profile = base;
        let mut profile_level = Level::Default;
        for s in settings.iter().filter(|s| applies(s)) {
            if Key::from_name(&s.key)? == Key::Profile
                && matches!(level_of(&s.scope), Level::System | Level::HostGroup)
                && level_of(&s.scope) >= profile_level
                && let Value::Word(w) = check_key(&s.scope, Key::Profile, &s.value, profile)?
            {
                profile = if w == "fast" {
                    Profile::Fast
                } else {
                    Profile::Standard
                };
                profile_level = level_of(&s.scope);
            }
        }
        let mut p = match profile {
            Profile::Standard => GroupParams::standard(group),
            Profile::Fast => GroupParams::fast(group),
        };
        if profile_level != Level::Default {
            p.set_origin(Key::Profile, profile_level);
        }
        // System first, then the group: the more specific wins.
        let mut ordered: Vec<&Setting> = settings.iter().filter(|s| applies(s)).collect();
        ordered.sort_by_key(|s| level_of(&s.scope));
        for s in ordered {
            let key = Key::from_name(&s.key)?;
            let value = check_key(&s.scope, key, &s.value, profile)?;
            match &s.scope {
                Scope::System | Scope::HostGroup(_) => p.set_group_value(key, value),
                Scope::Host(id) => {
                    if let Value::Word(w) = value {
                        p.host_ha_monitor.insert(*id, w == "enable");
                    }
                }
                Scope::Vm(uuid) => {
                    let o = p.vm_overrides.entry(*uuid).or_default();
                    match (key, value) {
                        (Key::HaMonitor, Value::Word(w)) => o.ha_monitor = Some(w == "enable"),
                        (Key::VmFailureDetectionSpeed, Value::Word(w)) => {
                            o.detection_speed = Some(speed_from_word(w));
                        }
                        _ => {}
                    }
                }
            }
            if matches!(s.scope, Scope::System | Scope::HostGroup(_)) {
                p.set_origin(key, level_of(&s.scope));
            }
        }
        if p.hm_silent_after_ms > p.host_fdt_ms {
            return Err(ParamError::Inconsistent {
                what: format!(
                    "hm_silent_after={} is longer than host_failure_detection_time={}: a host \
                     would be declared failed on monitors not yet counted silent; allowed: \
                     hm_silent_after <= host_failure_detection_time",
                    show_ms(p.hm_silent_after_ms),
                    show_ms(p.host_fdt_ms)
                ),
            });
        }
        Ok(p)
    }

    fn set_origin(&mut self, key: Key, level: Level) {
        if let Some(o) = self.origins.iter_mut().find(|(k, _)| *k == key) {
            o.1 = level;
        }
    }

    fn set_group_value(&mut self, key: Key, value: Value) {
        match (key, value) {
            (Key::ScanInterval, Value::Ms(ms)) => self.scan_interval_ms = ms,
            (Key::HostFailureDetectionTime, Value::Ms(ms)) => self.host_fdt_ms = ms,
            (Key::VmThreshold, Value::Ms(ms)) => self.vm_threshold_ms = ms,
            (Key::HmSilentAfter, Value::Ms(ms)) => self.hm_silent_after_ms = ms,
            (Key::ProbeTimeout, Value::Ms(ms)) => self.probe_timeout_ms = ms,
            (Key::ActionTimeout, Value::Ms(ms)) => self.action_timeout_ms = ms,
            (Key::CommandTimeout, Value::Ms(ms)) => self.command_timeout_ms = ms,
            (Key::MaxRestartsPerHost, Value::Count(n)) => self.max_restarts_per_host = n,
            (Key::NaEvery, Value::Count(n)) => self.na_every = n,
            (Key::NaMaxItems, Value::Count(n)) => self.na_max_items = n,
            (Key::VmRestartLimit, Value::Count(n)) => self.vm_restart_limit = n,
            (Key::VmRestartWindow, Value::Ms(ms)) => self.vm_restart_window_ms = ms,
            (Key::VerifyInterval, Value::Ms(ms)) => self.verify_interval_ms = ms,
            (Key::VmFailureDetectionSpeed, Value::Word(w)) => {
                self.detection_speed = speed_from_word(w);
            }
            (Key::RestartPolicy, Value::Word(w)) => {
                self.restart_policy = if w == "auto" {
                    RestartPolicy::Auto
                } else {
                    RestartPolicy::Advisory
                };
            }
            (Key::HaMonitor, Value::Word(w)) => self.ha_monitor = w == "enable",
            (Key::HostFailurePingVms, Value::Word(w)) => {
                self.host_failure_ping_vms = w == "enable";
            }
            // The profile was applied first; other pairs cannot come out of check_key.
            _ => {}
        }
    }

    /// VMFDT for `speed`: hostFDT + k × threshold, ms (seed 004 L4793-4798: 140 / 190 /
    /// 240 s at the defaults).
    pub const fn vmfdt_ms(&self, speed: DetectionSpeed) -> i64 {
        self.host_fdt_ms + speed_factor(speed) * self.vm_threshold_ms
    }

    /// The parameters `vm` is judged with. Most specific wins: a VM-level setting in the
    /// params table; then the VM row's own column when it differs from the column's
    /// default (`detection_speed` other than NORMAL, `ha_monitor` off — written by
    /// `hactl modify vm`); then the host's `ha_monitor`; then the group's.
    pub fn for_vm(&self, vm: &VmRow) -> VmParams {
        let o = self.vm_overrides.get(&vm.uuid).copied().unwrap_or_default();
        let detection_speed =
            o.detection_speed
                .unwrap_or(if vm.detection_speed == DetectionSpeed::Normal {
                    self.detection_speed
                } else {
                    vm.detection_speed
                });
        let ha_monitor = match (o.ha_monitor, vm.ha_monitor) {
            (Some(v), _) => v,
            (None, false) => false,
            (None, true) => vm
                .current_host
                .and_then(|h| self.host_ha_monitor.get(&h).copied())
                .unwrap_or(self.ha_monitor),
        };
        VmParams {
            ha_monitor,
            detection_speed,
            vmfdt_ms: self.vmfdt_ms(detection_speed),
        }
    }

    /// True when some value in effect lies below the seed's range (only the fast profile
    /// allows it): `hactl` prints a warning with it.
    pub fn below_seed_ranges(&self) -> bool {
        self.below_seed_keys().next().is_some()
    }

    /// The keys whose value lies outside the seed's range.
    pub fn below_seed_keys(&self) -> impl Iterator<Item = Key> + '_ {
        Key::ALL.iter().copied().filter(|k| {
            let (Some((lo, hi)), Some(ms)) = (k.seed_range(), self.duration(*k)) else {
                return false;
            };
            ms < lo || ms > hi
        })
    }

    fn duration(&self, key: Key) -> Option<i64> {
        Some(match key {
            Key::ScanInterval => self.scan_interval_ms,
            Key::HostFailureDetectionTime => self.host_fdt_ms,
            Key::VmThreshold => self.vm_threshold_ms,
            Key::HmSilentAfter => self.hm_silent_after_ms,
            Key::ProbeTimeout => self.probe_timeout_ms,
            Key::ActionTimeout => self.action_timeout_ms,
            Key::CommandTimeout => self.command_timeout_ms,
            Key::VmRestartWindow => self.vm_restart_window_ms,
            Key::VerifyInterval => self.verify_interval_ms,
            _ => return None,
        })
    }

    /// Every group-level key with its value as text and the level it came from, in
    /// [`Key::ALL`] order (what `hactl query host_group` prints).
    pub fn entries(&self) -> Vec<(Key, String, Level)> {
        Key::ALL
            .iter()
            .map(|k| {
                let value = match k {
                    Key::Profile => self.profile.as_str().to_owned(),
                    Key::VmFailureDetectionSpeed => {
                        self.detection_speed.as_str().to_ascii_lowercase()
                    }
                    Key::RestartPolicy => self.restart_policy.as_str().to_owned(),
                    Key::HaMonitor => if self.ha_monitor { "enable" } else { "disable" }.to_owned(),
                    Key::HostFailurePingVms => if self.host_failure_ping_vms {
                        "enable"
                    } else {
                        "disable"
                    }
                    .to_owned(),
                    Key::MaxRestartsPerHost => self.max_restarts_per_host.to_string(),
                    Key::NaEvery => self.na_every.to_string(),
                    Key::NaMaxItems => self.na_max_items.to_string(),
                    Key::VmRestartLimit => self.vm_restart_limit.to_string(),
                    _ => self.duration(*k).map(show_ms).unwrap_or_default(),
                };
                let level = self
                    .origins
                    .iter()
                    .find(|(key, _)| key == k)
                    .map_or(Level::Default, |(_, l)| *l);
                (*k, value, level)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn set(scope: Scope, key: &str, value: &str) -> Setting {
        Setting {
            scope,
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    fn hg(name: &str) -> Scope {
        Scope::HostGroup(name.to_owned())
    }

    fn vm_row(uuid: Uuid) -> VmRow {
        VmRow {
            uuid,
            name: "vm1".into(),
            current_host: Some(HostId(1)),
            home_host: Some(HostId(1)),
            state: hsdb::VmState::Started,
            managed: true,
            ha_monitor: true,
            priority: hsdb::Priority::Medium,
            detection_speed: DetectionSpeed::Normal,
            cpu_milli: 1000,
            memory_mb: 1024,
            ostype: None,
            agent_versions: None,
            short_msg: 0,
            updated_ms: 0,
        }
    }

    fn uuid(n: u8) -> Uuid {
        Uuid([n; 16])
    }

    #[test]
    fn test_seed_defaults_and_vmfdt() {
        let p = GroupParams::resolve("hg", &[]).unwrap();
        assert_eq!(p.scan_interval_ms, 20_000);
        assert_eq!(p.host_fdt_ms, 90_000);
        assert_eq!(p.na_every, 3);
        // seed 004 L4797-4798: 140 / 190 / 240 at hostFDT 90.
        assert_eq!(p.vmfdt_ms(DetectionSpeed::Fast), 140_000);
        assert_eq!(p.vmfdt_ms(DetectionSpeed::Normal), 190_000);
        assert_eq!(p.vmfdt_ms(DetectionSpeed::Slow), 240_000);
        assert!(!p.below_seed_ranges());
        // Range ends: 90 + 50 = 140 and 600 + 150 = 750.
        let max = GroupParams::resolve(
            "hg",
            &[set(Scope::System, "host_failure_detection_time", "600")],
        )
        .unwrap();
        assert_eq!(max.vmfdt_ms(DetectionSpeed::Slow), 750_000);
    }

    #[test]
    fn test_most_specific_level_wins() {
        let v = uuid(7);
        let settings = vec![
            set(hg("hg"), "host_failure_detection_time", "120s"),
            set(Scope::System, "host_failure_detection_time", "100"),
            set(Scope::System, "vm_failure_detection_speed", "slow"),
            set(hg("other"), "host_failure_detection_time", "600"),
            set(Scope::Vm(v), "vm_failure_detection_speed", "fast"),
            set(Scope::Host(HostId(1)), "ha_monitor", "disable"),
        ];
        let p = GroupParams::resolve("hg", &settings).unwrap();
        assert_eq!(
            p.host_fdt_ms, 120_000,
            "group beats system; other groups ignored"
        );
        assert_eq!(p.detection_speed, DetectionSpeed::Slow);
        let vp = p.for_vm(&vm_row(v));
        assert_eq!(vp.detection_speed, DetectionSpeed::Fast);
        assert_eq!(vp.vmfdt_ms, 120_000 + 50_000);
        assert!(!vp.ha_monitor, "host-level disable applies to its VMs");
        let other = p.for_vm(&VmRow {
            current_host: Some(HostId(2)),
            ..vm_row(uuid(8))
        });
        assert!(other.ha_monitor);
        assert_eq!(other.vmfdt_ms, 120_000 + 150_000);
        // VM-level enable beats the host's disable.
        let p = GroupParams::resolve(
            "hg",
            &[
                set(Scope::Host(HostId(1)), "ha_monitor", "disable"),
                set(Scope::Vm(v), "ha_monitor", "enable"),
            ],
        )
        .unwrap();
        assert!(p.for_vm(&vm_row(v)).ha_monitor);
        let origins = p.entries();
        assert!(
            origins
                .iter()
                .all(|(_, _, l)| *l == Level::Default || *l == Level::System)
        );
    }

    #[test]
    fn test_vm_row_columns_count_when_not_default() {
        let p = GroupParams::resolve(
            "hg",
            &[set(Scope::System, "vm_failure_detection_speed", "slow")],
        )
        .unwrap();
        let row = VmRow {
            detection_speed: DetectionSpeed::Fast,
            ..vm_row(uuid(1))
        };
        assert_eq!(p.for_vm(&row).detection_speed, DetectionSpeed::Fast);
        // NORMAL in the column means "inherit".
        assert_eq!(
            p.for_vm(&vm_row(uuid(1))).detection_speed,
            DetectionSpeed::Slow
        );
        let off = VmRow {
            ha_monitor: false,
            ..vm_row(uuid(1))
        };
        assert!(!p.for_vm(&off).ha_monitor);
    }

    #[test]
    fn test_errors_name_key_value_and_range() {
        let e = GroupParams::resolve(
            "hg",
            &[set(Scope::System, "host_failure_detection_time", "60")],
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("host_failure_detection_time"), "{text}");
        assert!(text.contains("\"60\""), "{text}");
        assert!(text.contains("90s..=10m"), "{text}");
        assert!(text.contains("profile fast"), "{text}");

        let e = check(&Scope::System, "scan_intervall", "20", Profile::Standard).unwrap_err();
        assert!(matches!(e, ParamError::UnknownKey { .. }));
        assert!(e.to_string().contains("scan_interval"), "{e}");

        let e = check(
            &Scope::Vm(uuid(1)),
            "host_failure_detection_time",
            "100",
            Profile::Standard,
        )
        .unwrap_err();
        assert!(matches!(e, ParamError::WrongScope { .. }), "{e}");
        assert!(e.to_string().contains("system, host_group"), "{e}");

        for bad in ["", "ten", "10h", "-5", "99999999999999999", "1.5"] {
            let e = check(&Scope::System, "scan_interval", bad, Profile::Standard).unwrap_err();
            assert!(matches!(e, ParamError::BadValue { .. }), "{bad}: {e}");
        }
        let e = check(
            &Scope::System,
            "vm_failure_detection_speed",
            "quick",
            Profile::Standard,
        )
        .unwrap_err();
        assert!(e.to_string().contains("fast, normal, slow"), "{e}");
        let e = check(
            &Scope::System,
            "max_restarts_per_host",
            "0",
            Profile::Standard,
        )
        .unwrap_err();
        assert!(e.to_string().contains("1..=128"), "{e}");
        assert!(check(&Scope::System, "vm_threshold", "50", Profile::Standard).is_ok());
        assert!(check(&Scope::System, "vm_threshold", "20", Profile::Standard).is_err());
        assert!(
            check(
                &Scope::System,
                "restart_policy",
                "ADVISORY_MODE",
                Profile::Standard
            )
            .is_ok()
        );
    }

    #[test]
    fn test_units() {
        assert_eq!(parse_duration("90"), Some(90_000));
        assert_eq!(parse_duration("90s"), Some(90_000));
        assert_eq!(parse_duration("1500ms"), Some(1_500));
        assert_eq!(parse_duration("2m"), Some(120_000));
        assert_eq!(parse_duration(" 3 "), Some(3_000));
        assert_eq!(parse_duration("3 s"), None);
        assert_eq!(show_ms(90_000), "90s");
        assert_eq!(show_ms(600_000), "10m");
        assert_eq!(show_ms(1_500), "1500ms");
    }

    #[test]
    fn test_fast_profile_by_configuration_alone() {
        let p = GroupParams::resolve("hg", &[set(hg("hg"), "profile", "fast")]).unwrap();
        assert_eq!(p.profile, Profile::Fast);
        assert_eq!(p.scan_interval_ms, 1_000);
        assert_eq!(p.host_fdt_ms, 6_000);
        assert_eq!(p.vmfdt_ms(DetectionSpeed::Fast), 8_000);
        assert_eq!(p.vmfdt_ms(DetectionSpeed::Normal), 10_000);
        assert!(p.below_seed_ranges());
        let below: Vec<Key> = p.below_seed_keys().collect();
        assert!(below.contains(&Key::HostFailureDetectionTime), "{below:?}");
        // Below-seed values are accepted in the fast profile only.
        let p = GroupParams::resolve(
            "hg",
            &[
                set(Scope::System, "profile", "fast"),
                set(hg("hg"), "host_failure_detection_time", "3s"),
                set(hg("hg"), "scan_interval", "500ms"),
            ],
        )
        .unwrap();
        assert_eq!(p.host_fdt_ms, 3_000);
        assert_eq!(p.scan_interval_ms, 500);
        // The group's standard beats the system's fast.
        let p = GroupParams::resolve(
            "hg",
            &[
                set(Scope::System, "profile", "fast"),
                set(hg("hg"), "profile", "standard"),
            ],
        )
        .unwrap();
        assert_eq!(p.profile, Profile::Standard);
        assert!(!p.below_seed_ranges());
        // A fast value left behind after switching back to standard is refused by name.
        let e = GroupParams::resolve(
            "hg",
            &[
                set(hg("hg"), "profile", "standard"),
                set(hg("hg"), "host_failure_detection_time", "6s"),
            ],
        )
        .unwrap_err();
        assert!(e.to_string().contains("host_failure_detection_time"), "{e}");
    }

    #[test]
    fn test_configuration_profile_is_the_base() {
        // The daemon's configuration says fast; nothing in the HSDB: fast.
        let p = GroupParams::resolve_from("hg", Profile::Fast, &[]).unwrap();
        assert_eq!(p.host_fdt_ms, 6_000);
        assert_eq!(p.origins[0], (Key::Profile, Level::Default));
        // The HSDB's system or group setting wins over it.
        let p = GroupParams::resolve_from(
            "hg",
            Profile::Fast,
            &[set(Scope::System, "profile", "default")],
        )
        .unwrap();
        assert_eq!(p.profile, Profile::Standard);
        assert_eq!(p.host_fdt_ms, 90_000);
        assert_eq!(p.origins[0], (Key::Profile, Level::System));
    }

    #[test]
    fn test_silent_after_must_not_exceed_host_fdt() {
        let e = GroupParams::resolve("hg", &[set(Scope::System, "hm_silent_after", "120")])
            .unwrap_err();
        assert!(matches!(e, ParamError::Inconsistent { .. }));
        assert!(e.to_string().contains("hm_silent_after=2m"), "{e}");
    }
}
