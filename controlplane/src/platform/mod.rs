//! Platform drivers: how the control plane probes hosts and VMs and acts on them
//! (DESIGN.md §6; the seed's HMC, seed-controlplane.md §3.3-§3.4, §4.4).
//!
//! One trait, [`Platform`], with probes (host alive, ping, power state with "OS started")
//! and actions (stop, start on a host, cleanup). Every call is bounded by the driver's
//! timeout and fails with [`PlatformError::Timeout`] rather than hang: a probe that
//! cannot answer is never taken as evidence of a failure by the caller.
//!
//! Hosts are named by their HSDB `host.name`; VMs by their UUID.

use std::fmt;

use hsdb::Uuid;

pub mod fenced;
pub mod libvirt;
pub mod sim;

/// A VM's power state as the platform reports it: the seed's LPAR states
/// (seed 004 L4822-4841), which the Failure Detection Engine's table is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerState {
    /// Running (libvirt: running, blocked).
    Running,
    /// Not Activated: defined but powered off (libvirt: shut off, crashed).
    NotActivated,
    /// Open Firmware: in the firmware / boot menu.
    OpenFirmware,
    /// Shutting Down.
    ShuttingDown,
    /// Error.
    Error,
    /// Not Available: the platform cannot tell (libvirt: paused, pmsuspended, no state).
    NotAvailable,
    /// Migrating - Running.
    MigratingRunning,
    /// Migrating - Not Activated.
    MigratingNotActivated,
    /// Hardware Discovery.
    HardwareDiscovery,
}

impl PowerState {
    /// The seed's words for the state.
    pub const fn as_str(self) -> &'static str {
        match self {
            PowerState::Running => "Running",
            PowerState::NotActivated => "Not Activated",
            PowerState::OpenFirmware => "Open Firmware",
            PowerState::ShuttingDown => "Shutting Down",
            PowerState::Error => "Error",
            PowerState::NotAvailable => "Not Available",
            PowerState::MigratingRunning => "Migrating - Running",
            PowerState::MigratingNotActivated => "Migrating - Not Activated",
            PowerState::HardwareDiscovery => "Hardware Discovery",
        }
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the platform says about a VM on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmStatus {
    /// Power state.
    pub power: PowerState,
    /// The guest's OS had started (the seed's refcode rule: `0`/empty, `Linux ppc64le`, …
    /// mean the OS is up, seed 004 L4843-4853). A VM that crashed after its OS started
    /// still reads true: that is the VM the engine recovers.
    pub os_started: bool,
}

/// What a start needs to know about the VM (define it on a host that does not have it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// UUID, kept across hosts.
    pub uuid: Uuid,
    /// Name.
    pub name: String,
    /// CPU entitlement, thousandths of a CPU.
    pub cpu_milli: u32,
    /// Memory, MiB.
    pub memory_mb: u32,
}

impl VmSpec {
    /// The VM as the HSDB describes it; a VM without a name is named by its UUID.
    pub fn of_row(vm: &hsdb::VmRow) -> VmSpec {
        VmSpec {
            uuid: vm.uuid,
            name: if vm.name.is_empty() {
                vm.uuid.to_string()
            } else {
                vm.name.clone()
            },
            cpu_milli: vm.cpu_milli,
            memory_mb: vm.memory_mb,
        }
    }
}

/// A host as the platform knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// Name (the HSDB's `host.name`).
    pub name: String,
    /// CPU capacity, thousandths of a CPU.
    pub cpu_milli: u32,
    /// Memory capacity, MiB.
    pub memory_mb: u32,
    /// VMs defined on the host, with their state and size.
    pub vms: Vec<(VmSpec, VmStatus)>,
}

/// A VM in a host's inventory ([`Platform::inventory`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryVm {
    /// UUID, kept across hosts.
    pub uuid: Uuid,
    /// The platform's name for it.
    pub name: String,
    /// Its state on this host.
    pub status: VmStatus,
    /// Its size (thousandths of a CPU, MiB) when asked for: always in a deep inventory,
    /// in a quick one only for the VMs the caller does not know yet.
    pub size: Option<(u32, u32)>,
}

/// One host's inventory: its capacity and the VMs defined on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// Name (the HSDB's `host.name`).
    pub host: String,
    /// CPU capacity, thousandths of a CPU.
    pub cpu_milli: u32,
    /// Memory capacity, MiB.
    pub memory_mb: u32,
    /// The VMs defined on it.
    pub vms: Vec<InventoryVm>,
}

impl Inventory {
    /// The inventory of `info`, every size known.
    pub fn of_host_info(info: HostInfo) -> Inventory {
        Inventory {
            host: info.name,
            cpu_milli: info.cpu_milli,
            memory_mb: info.memory_mb,
            vms: info
                .vms
                .into_iter()
                .map(|(spec, status)| InventoryVm {
                    uuid: spec.uuid,
                    name: spec.name,
                    status,
                    size: Some((spec.cpu_milli, spec.memory_mb)),
                })
                .collect(),
        }
    }
}

/// Why a platform call failed. Every variant names what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// The call did not answer within the driver's timeout.
    #[error("{op} timed out after {after_ms} ms")]
    Timeout {
        /// The call, with its arguments (`vm_status host-a 6f1c…`).
        op: String,
        /// The timeout.
        after_ms: u64,
    },
    /// The host's hypervisor / management endpoint cannot be reached.
    #[error("host {host} is unreachable: {why}")]
    Unreachable {
        /// The host.
        host: String,
        /// What failed.
        why: String,
    },
    /// The driver has no such host configured.
    #[error("no host named {host} on this platform")]
    NoSuchHost {
        /// The host.
        host: String,
    },
    /// The VM is not defined on that host.
    #[error("VM {vm} is not defined on host {host}")]
    NoSuchVm {
        /// The host.
        host: String,
        /// The VM.
        vm: Uuid,
    },
    /// The platform refused or failed the action.
    #[error("{op} failed: {why}")]
    Failed {
        /// The call, with its arguments.
        op: String,
        /// The platform's words.
        why: String,
    },
    /// Not sent: this controller may not act for the host group now (it does not lead,
    /// or its lease passed its local deadline; [`fenced`]). Nothing happened on the
    /// platform.
    #[error("{op} refused: {why}")]
    Fenced {
        /// The call, with its arguments.
        op: String,
        /// Why this controller may not act.
        why: String,
    },
}

/// A platform driver: probes and actions, each bounded by a timeout.
///
/// Calls take `&mut self`: a driver may hold connections (libvirt: one per host, since the
/// test hypervisor keeps its state only for the life of a connection) and is driven by one
/// thread at a time.
pub trait Platform: Send {
    /// The driver's name for logs (`sim`, `libvirt`).
    fn name(&self) -> &'static str;

    /// Every configured host with its capacity and the VMs defined on it.
    fn hosts(&mut self) -> Result<Vec<HostInfo>, PlatformError>;

    /// The names of the hosts this driver serves (discovery's scope); the default asks
    /// [`Platform::hosts`].
    fn host_names(&mut self) -> Result<Vec<String>, PlatformError> {
        Ok(self.hosts()?.into_iter().map(|h| h.name).collect())
    }

    /// Can discovery trust this driver's inventory as the platform's truth? `libvirt`
    /// and the `sim` world yes; the `sim` platform `hactl run` builds from the HSDB itself
    /// no (it only mirrors the store), so scheduled discovery is off by default there.
    fn can_discover(&self) -> bool {
        false
    }

    /// One host's inventory (discovery, docs/operators.md "Discovery"): its capacity and
    /// every VM defined on it with its state. A `deep` inventory also reads every VM's
    /// details (its size); a quick one reads the size only of the VMs for which `known`
    /// is false. The default takes the host from [`Platform::hosts`], every size known.
    fn inventory(
        &mut self,
        host: &str,
        deep: bool,
        known: &dyn Fn(&Uuid) -> bool,
    ) -> Result<Inventory, PlatformError> {
        let _ = (deep, known);
        self.hosts()?
            .into_iter()
            .find(|h| h.name == host)
            .map(Inventory::of_host_info)
            .ok_or_else(|| PlatformError::NoSuchHost {
                host: host.to_owned(),
            })
    }

    /// Does the host's hypervisor answer? `Ok(false)` is a definite "gone" (the seed's
    /// final sanity check before a host relocation, seed 004 L4735-4753); an error
    /// (timeout) is "cannot tell".
    fn host_alive(&mut self, host: &str) -> Result<bool, PlatformError>;

    /// Does the VM answer a ping (seed 004 L4815-4816)? A pingable VM is never relocated.
    fn ping(&mut self, vm: &Uuid) -> Result<bool, PlatformError>;

    /// The VM's power state on `host`.
    fn vm_status(&mut self, host: &str, vm: &Uuid) -> Result<VmStatus, PlatformError>;

    /// Power the VM off on `host` (the first step of a restart; a VM already off is Ok).
    fn stop(&mut self, host: &str, vm: &Uuid) -> Result<(), PlatformError>;

    /// Start the VM on `host`, defining it there first if the host does not have it. A
    /// VM already running on `host` is Ok: a new leader that takes over a restart whose
    /// start may or may not have happened starts it again on the same host.
    fn start(&mut self, host: &str, vm: &VmSpec) -> Result<(), PlatformError>;

    /// Remove the VM's leftover definition from `host` after it moved away (the seed's
    /// configuration cleanup, seed 004 L17548-17563); a VM not defined there is Ok.
    fn cleanup(&mut self, host: &str, vm: &Uuid) -> Result<(), PlatformError>;

    /// Start several VMs, each on its host (`(host, spec)`), with one result per start in
    /// the same order; each start means what [`Platform::start`] means. The executor hands
    /// a driver every start due in one step (at most `max_restarts_per_host` toward one
    /// target), so a driver whose platform can run them at the same time should: the
    /// default runs them one after another. `sim` models concurrent starts; `libvirt`
    /// runs each host's starts on a thread of their own (docs/controlplane.md, Executor).
    fn start_many(&mut self, starts: &[(&str, &VmSpec)]) -> Vec<Result<(), PlatformError>> {
        starts
            .iter()
            .map(|(host, spec)| self.start(host, spec))
            .collect()
    }

    /// Can this driver move a running VM between hosts without stopping it (the seed's
    /// LPM, seed 004 §1.2.1)? When it cannot, a planned move is a stop and a start, and
    /// is reported as such.
    fn live_migration(&self) -> bool {
        false
    }

    /// Move the running VM from `from` to `to` without stopping it (live migration): it
    /// runs on `to` afterwards and its definition has left `from`. Only called when
    /// [`Platform::live_migration`] is true; a driver without it says so.
    fn migrate(&mut self, from: &str, to: &str, vm: &VmSpec) -> Result<(), PlatformError> {
        Err(PlatformError::Failed {
            op: format!("migrate {from} {to} {}", vm.uuid),
            why: format!("the {} driver cannot live-migrate", self.name()),
        })
    }
}
