//! The `libvirt` platform driver: each host is a libvirt URI, driven through ONE
//! long-lived `virsh -q -c <uri>` child per host (see [`virsh`]); pings are real ICMP
//! through the system's `ping`.
//!
//! The build needs no libvirt development files: we drive the `virsh` program (Debian
//! package `libvirt-clients`), never link libvirt.
//!
//! Hosts: `host_alive` runs `nodeinfo`. Answered → `Ok(true)`; virsh could not open the
//! URI (it exits at once) → `Ok(false)`, the definite "gone"; no answer within the
//! timeout → `Err(Timeout)`, "cannot tell"; virsh itself cannot be run → `Err(Failed)`
//! (a broken control-plane machine is never evidence against a host). The full truth
//! table is in docs/controlplane.md, "Platform drivers".
//!
//! Actions: stop is `destroy` (already off is Ok); start defines the domain from XML we
//! write (same UUID, name, vCPUs, memory) if the host does not have it, then `start`;
//! cleanup is `destroy` if active, then `undefine`. No migration: libvirt's test
//! hypervisor does not implement it, so a move is define + start on the target and
//! destroy + undefine on the source, which is what the engine asks for anyway.
//!
//! Every call is bounded by [`LibvirtConfig::call_timeout`] (per host for [`Platform::hosts`]).
//! A child that timed out, printed too much or died is killed; the next call opens a new
//! connection. A child found dead in the middle of a call is replaced once within the same
//! call (a test hypervisor forgets every earlier action when that happens; a real one
//! does not).

pub mod parse;
pub mod ping;
pub mod virsh;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hsdb::Uuid;

use self::ping::PingOutcome;
use self::virsh::{Reply, VirshError, VirshSession, bounded};
use crate::platform::{
    HostInfo, Inventory, InventoryVm, Platform, PlatformError, PowerState, VmSpec, VmStatus,
};

/// Default timeout of one call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound of one ping (the seed's failed ping took ~6 s, seed 004 L13484-13492).
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Default cap on what one virsh command may print.
pub const DEFAULT_MAX_OUTPUT: usize = 4 << 20;

/// Allowed call timeouts.
pub const CALL_TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(600);
/// Allowed ping timeouts.
pub const PING_TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(60);
/// Longest ping address (a DNS name is at most 253 bytes).
pub const MAX_PING_ADDRESS: usize = 253;
/// Allowed output caps, bytes.
pub const MAX_OUTPUT_RANGE: std::ops::RangeInclusive<usize> = 4 << 10..=256 << 20;
/// Longest host name, bytes.
pub const MAX_HOST_NAME: usize = 255;

/// One host: its HSDB name and its libvirt URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtHost {
    /// The HSDB's `host.name`.
    pub name: String,
    /// The libvirt URI (`test:///abs/path/host-a.xml`, `qemu+ssh://root@host-a/system`).
    pub uri: String,
}

/// The driver's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtConfig {
    /// The hosts.
    pub hosts: Vec<LibvirtHost>,
    /// Each VM's ping address (an IP address or a DNS name); a VM without one reads
    /// "not pingable".
    pub ping_addresses: BTreeMap<Uuid, String>,
    /// The virsh program.
    pub virsh: PathBuf,
    /// The ping program (iputils).
    pub ping: PathBuf,
    /// Timeout of one call.
    pub call_timeout: Duration,
    /// Bound of one ping: ping waits three quarters of it for the reply (`-W`) and is
    /// killed at the bound.
    pub ping_timeout: Duration,
    /// Most bytes one virsh command may print.
    pub max_output_bytes: usize,
}

impl LibvirtConfig {
    /// The hosts with every other setting at its default.
    pub fn new(hosts: Vec<LibvirtHost>) -> LibvirtConfig {
        LibvirtConfig {
            hosts,
            ping_addresses: BTreeMap::new(),
            virsh: PathBuf::from("virsh"),
            ping: PathBuf::from("ping"),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            max_output_bytes: DEFAULT_MAX_OUTPUT,
        }
    }

    /// Check every value against its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = BTreeSet::new();
        for h in &self.hosts {
            if h.name.is_empty()
                || h.name.len() > MAX_HOST_NAME
                || h.name.chars().any(char::is_control)
            {
                return Err(ConfigError::BadHostName {
                    name: bounded(&h.name),
                });
            }
            if !seen.insert(h.name.as_str()) {
                return Err(ConfigError::DuplicateHost {
                    name: h.name.clone(),
                });
            }
            if h.uri.is_empty() || h.uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(ConfigError::BadUri {
                    host: h.name.clone(),
                    uri: bounded(&h.uri),
                });
            }
        }
        if !CALL_TIMEOUT_RANGE.contains(&self.call_timeout) {
            return Err(ConfigError::CallTimeout {
                value: self.call_timeout,
            });
        }
        if !PING_TIMEOUT_RANGE.contains(&self.ping_timeout) {
            return Err(ConfigError::PingTimeout {
                value: self.ping_timeout,
            });
        }
        for (vm, address) in &self.ping_addresses {
            check_ping_address(vm, address)?;
        }
        if !MAX_OUTPUT_RANGE.contains(&self.max_output_bytes) {
            return Err(ConfigError::MaxOutput {
                value: self.max_output_bytes,
            });
        }
        Ok(())
    }
}

/// A configuration value out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A host name that is empty, too long or holds control characters.
    #[error(
        "host name {name:?} is not allowed (allowed: 1-{MAX_HOST_NAME} bytes, no control characters)"
    )]
    BadHostName {
        /// The name (bounded).
        name: String,
    },
    /// Two hosts of one name.
    #[error("host {name} is configured twice (allowed: each name once)")]
    DuplicateHost {
        /// The name.
        name: String,
    },
    /// A URI that is empty or holds spaces or control characters.
    #[error(
        "host {host}: libvirt URI {uri:?} is not allowed (allowed: a non-empty URI without spaces or control characters)"
    )]
    BadUri {
        /// The host.
        host: String,
        /// The URI (bounded).
        uri: String,
    },
    /// Call timeout out of range.
    #[error("call timeout {value:?} is out of range (allowed: 100ms to 600s)")]
    CallTimeout {
        /// The value.
        value: Duration,
    },
    /// Ping timeout out of range.
    #[error("ping timeout {value:?} is out of range (allowed: 100ms to 60s)")]
    PingTimeout {
        /// The value.
        value: Duration,
    },
    /// A ping address that is neither an IP address nor a DNS name.
    #[error(
        "VM {vm}: ping address {address:?} is not allowed (allowed: an IP address or a DNS name of up to {MAX_PING_ADDRESS} letters, digits, '.', '-', '_', not starting with '-' or '.')"
    )]
    BadPingAddress {
        /// The VM.
        vm: Uuid,
        /// The address (bounded).
        address: String,
    },
    /// Output cap out of range.
    #[error("virsh output cap {value} bytes is out of range (allowed: 4096 to 268435456)")]
    MaxOutput {
        /// The value.
        value: usize,
    },
}

struct HostConn {
    uri: String,
    session: Option<VirshSession>,
}

/// The libvirt driver: a [`Platform`] over one virsh child per host.
pub struct LibvirtPlatform {
    config: LibvirtConfig,
    hosts: BTreeMap<String, HostConn>,
    /// VMs for which "no ping address" was already logged.
    warned_no_address: BTreeSet<Uuid>,
}

impl std::fmt::Debug for LibvirtPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibvirtPlatform")
            .field("hosts", &self.hosts.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What a domain lookup found.
enum Lookup {
    Missing,
    Found(VmStatus, String),
}

impl LibvirtPlatform {
    /// A driver for `config` (checked). Connections open on first use.
    pub fn new(config: LibvirtConfig) -> Result<LibvirtPlatform, ConfigError> {
        config.validate()?;
        let hosts = config
            .hosts
            .iter()
            .map(|h| {
                (
                    h.name.clone(),
                    HostConn {
                        uri: h.uri.clone(),
                        session: None,
                    },
                )
            })
            .collect();
        Ok(LibvirtPlatform {
            config,
            hosts,
            warned_no_address: BTreeSet::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LibvirtConfig {
        &self.config
    }

    /// Set (or with `None` remove) a VM's ping address.
    pub fn set_ping_address(&mut self, vm: Uuid, address: Option<&str>) -> Result<(), ConfigError> {
        match address {
            Some(a) => {
                check_ping_address(&vm, a)?;
                self.config.ping_addresses.insert(vm, a.to_owned());
            }
            None => {
                self.config.ping_addresses.remove(&vm);
            }
        }
        self.warned_no_address.remove(&vm);
        Ok(())
    }

    /// The process id of the host's virsh child, if one is running.
    pub fn connection_pid(&self, host: &str) -> Option<u32> {
        self.hosts
            .get(host)?
            .session
            .as_ref()
            .map(VirshSession::pid)
    }

    /// Close the host's connection (the next call opens a new one).
    pub fn disconnect(&mut self, host: &str) {
        if let Some(c) = self.hosts.get_mut(host) {
            c.session = None;
        }
    }

    /// Run one virsh command on `host`'s connection (raw; for diagnostics and tests).
    /// Commands are one line; what virsh prints is returned cleaned of prompts.
    pub fn virsh(&mut self, host: &str, command: &str) -> Result<Reply, PlatformError> {
        self.known(host)?;
        let deadline = self.deadline();
        self.exec(host, command, deadline)
            .map_err(|e| self.error(host, &format!("virsh {host} {command}"), e))
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.config.call_timeout
    }

    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.config.call_timeout.as_millis()).unwrap_or(u64::MAX)
    }

    /// Run `command` on the host's connection, opening one if needed; a connection found
    /// dead is replaced once.
    fn exec(&mut self, host: &str, command: &str, deadline: Instant) -> Result<Reply, VirshError> {
        let program = self.config.virsh.clone();
        let max = self.config.max_output_bytes;
        let conn = self
            .hosts
            .get_mut(host)
            .ok_or_else(|| VirshError::Connect {
                uri: String::new(),
                why: format!("no host {host}"),
            })?;
        let mut fresh = false;
        loop {
            let session = match conn.session.as_mut() {
                Some(s) => s,
                None => {
                    fresh = true;
                    tracing::debug!(host, uri = %conn.uri, "libvirt: connecting");
                    conn.session
                        .insert(VirshSession::connect(&program, &conn.uri, max, deadline)?)
                }
            };
            match session.run(command, deadline) {
                Ok(reply) => {
                    tracing::trace!(host, command, ?reply, "libvirt: virsh answered");
                    return Ok(reply);
                }
                Err(VirshError::Died { why, .. }) if !fresh => {
                    tracing::warn!(host, uri = %conn.uri, why, "libvirt: virsh exited; reconnecting");
                    conn.session = None;
                }
                Err(e) => {
                    tracing::warn!(host, uri = %conn.uri, error = %e, "libvirt: dropping the connection");
                    conn.session = None;
                    return Err(e);
                }
            }
        }
    }

    fn error(&self, host: &str, op: &str, e: VirshError) -> PlatformError {
        match e {
            VirshError::Timeout { .. } => PlatformError::Timeout {
                op: op.to_owned(),
                after_ms: self.timeout_ms(),
            },
            VirshError::Connect { why, .. } => PlatformError::Unreachable {
                host: host.to_owned(),
                why,
            },
            VirshError::Died { why, .. } => PlatformError::Unreachable {
                host: host.to_owned(),
                why: format!("virsh exited: {why}"),
            },
            e @ (VirshError::Spawn { .. }
            | VirshError::TooLarge { .. }
            | VirshError::BadCommand { .. }) => PlatformError::Failed {
                op: op.to_owned(),
                why: e.to_string(),
            },
        }
    }

    fn known(&self, host: &str) -> Result<(), PlatformError> {
        if self.hosts.contains_key(host) {
            Ok(())
        } else {
            Err(PlatformError::NoSuchHost {
                host: host.to_owned(),
            })
        }
    }

    /// `domstate <uuid>`: the domain's status and virsh's word for it, or Missing.
    fn lookup(
        &mut self,
        host: &str,
        vm: &Uuid,
        op: &str,
        deadline: Instant,
    ) -> Result<Lookup, PlatformError> {
        let reply = self
            .exec(host, &format!("domstate {vm}"), deadline)
            .map_err(|e| self.error(host, op, e))?;
        if is_missing(&reply) {
            return Ok(Lookup::Missing);
        }
        if !reply.errors.is_empty() {
            return Err(failed(op, reply.why()));
        }
        let word = reply
            .lines
            .first()
            .map(|l| l.trim().to_owned())
            .unwrap_or_default();
        let status = parse::vm_status(&word).map_err(|e| failed(op, e.to_string()))?;
        Ok(Lookup::Found(status, word))
    }

    fn define(
        &mut self,
        host: &str,
        spec: &VmSpec,
        op: &str,
        deadline: Instant,
    ) -> Result<(), PlatformError> {
        let uri = self
            .hosts
            .get(host)
            .map(|c| c.uri.clone())
            .unwrap_or_default();
        let domain_type = if uri.starts_with("test:") {
            "test"
        } else {
            "kvm"
        };
        let xml = parse::domain_xml(spec, domain_type).map_err(|e| failed(op, e.to_string()))?;
        let file = DomainFile::write(&spec.uuid, &xml)
            .map_err(|e| failed(op, format!("writing the domain XML: {e}")))?;
        let path = file.path.display().to_string();
        if path.contains(['\'', '\n', '\r']) {
            return Err(failed(
                op,
                format!("temporary path {path:?} cannot be quoted for virsh"),
            ));
        }
        let reply = self
            .exec(host, &format!("define '{path}'"), deadline)
            .map_err(|e| self.error(host, op, e))?;
        if !reply.errors.is_empty() {
            return Err(failed(op, format!("define: {}", reply.why())));
        }
        tracing::info!(host, vm = %spec.uuid, name = %spec.name, "libvirt: domain defined");
        Ok(())
    }
}

/// An IP address, or a DNS name (never an option: it goes on ping's command line).
fn check_ping_address(vm: &Uuid, address: &str) -> Result<(), ConfigError> {
    let name_ok = !address.is_empty()
        && address.len() <= MAX_PING_ADDRESS
        && !address.starts_with(['-', '.'])
        && address
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c));
    if name_ok || address.parse::<std::net::IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(ConfigError::BadPingAddress {
            vm: *vm,
            address: bounded(address),
        })
    }
}

fn failed(op: &str, why: String) -> PlatformError {
    PlatformError::Failed {
        op: op.to_owned(),
        why,
    }
}

/// virsh's words for "no such domain".
fn is_missing(reply: &Reply) -> bool {
    reply.error_contains("failed to get domain") || reply.error_contains("domain not found")
}

/// A domain XML in the temporary directory, private to us, removed on drop.
struct DomainFile {
    path: PathBuf,
}

impl DomainFile {
    fn write(uuid: &Uuid, xml: &str) -> std::io::Result<DomainFile> {
        use std::os::unix::fs::OpenOptionsExt;
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "hvha-domain-{uuid}-{}-{}.xml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let file = DomainFile { path };
        f.write_all(xml.as_bytes())?;
        Ok(file)
    }
}

impl Drop for DomainFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Platform for LibvirtPlatform {
    fn name(&self) -> &'static str {
        "libvirt"
    }

    fn hosts(&mut self) -> Result<Vec<HostInfo>, PlatformError> {
        let names: Vec<String> = self.hosts.keys().cloned().collect();
        let mut out = Vec::new();
        let mut first_error = None;
        for name in names {
            match self.host_info(&name) {
                Ok(info) => out.push(info),
                Err(e) => {
                    tracing::warn!(host = %name, error = %e, "libvirt: host left out of the host list");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    fn host_names(&mut self) -> Result<Vec<String>, PlatformError> {
        Ok(self.hosts.keys().cloned().collect())
    }

    /// Every configured host is a real hypervisor (or a test one): discovery reads it.
    fn can_discover(&self) -> bool {
        true
    }

    fn inventory(
        &mut self,
        host: &str,
        deep: bool,
        known: &dyn Fn(&Uuid) -> bool,
    ) -> Result<Inventory, PlatformError> {
        self.read_inventory(host, deep, known)
    }

    fn host_alive(&mut self, host: &str) -> Result<bool, PlatformError> {
        self.known(host)?;
        let op = format!("host_alive {host}");
        let deadline = self.deadline();
        for attempt in 0..2 {
            match self.exec(host, "nodeinfo", deadline) {
                Ok(reply) if reply.errors.is_empty() => {
                    parse::nodeinfo(&reply.lines).map_err(|e| failed(&op, e.to_string()))?;
                    return Ok(true);
                }
                Ok(reply) => {
                    // An open virsh whose hypervisor went away answers with an error:
                    // a fresh connection tells whether it is still there.
                    tracing::warn!(host, why = %reply.why(), "libvirt: nodeinfo failed; reconnecting");
                    self.disconnect(host);
                    if attempt == 1 {
                        return Err(failed(&op, reply.why()));
                    }
                }
                Err(VirshError::Connect { uri, why }) => {
                    tracing::info!(
                        host,
                        uri,
                        why,
                        "libvirt: host unreachable (connection refused)"
                    );
                    return Ok(false);
                }
                Err(e) => return Err(self.error(host, &op, e)),
            }
        }
        Err(failed(&op, "no answer".to_owned()))
    }

    fn ping(&mut self, vm: &Uuid) -> Result<bool, PlatformError> {
        let Some(addr) = self.config.ping_addresses.get(vm).cloned() else {
            if self.warned_no_address.insert(*vm) {
                tracing::warn!(vm = %vm, "libvirt: no ping address configured; the VM reads as not pingable");
            }
            return Ok(false);
        };
        let op = format!("ping {vm} {addr}");
        let start = Instant::now();
        let outcome = ping::ping(&self.config.ping, &addr, self.config.ping_timeout, start);
        tracing::debug!(vm = %vm, %addr, ?outcome, elapsed_ms = start.elapsed().as_millis(), "libvirt: ping");
        match outcome {
            PingOutcome::Reply => Ok(true),
            PingOutcome::NoReply => Ok(false),
            PingOutcome::Timeout => Err(PlatformError::Timeout {
                op,
                after_ms: u64::try_from(self.config.ping_timeout.as_millis()).unwrap_or(u64::MAX),
            }),
            PingOutcome::Error(why) => Err(failed(&op, why)),
        }
    }

    fn vm_status(&mut self, host: &str, vm: &Uuid) -> Result<VmStatus, PlatformError> {
        self.known(host)?;
        let op = format!("vm_status {host} {vm}");
        let deadline = self.deadline();
        match self.lookup(host, vm, &op, deadline)? {
            Lookup::Found(status, _) => Ok(status),
            Lookup::Missing => Err(PlatformError::NoSuchVm {
                host: host.to_owned(),
                vm: *vm,
            }),
        }
    }

    fn stop(&mut self, host: &str, vm: &Uuid) -> Result<(), PlatformError> {
        self.known(host)?;
        let op = format!("stop {host} {vm}");
        let deadline = self.deadline();
        let reply = self
            .exec(host, &format!("destroy {vm}"), deadline)
            .map_err(|e| self.error(host, &op, e))?;
        if reply.errors.is_empty() || reply.error_contains("domain is not running") {
            tracing::info!(host, vm = %vm, "libvirt: domain stopped");
            Ok(())
        } else if is_missing(&reply) {
            Err(PlatformError::NoSuchVm {
                host: host.to_owned(),
                vm: *vm,
            })
        } else {
            Err(failed(&op, reply.why()))
        }
    }

    fn start(&mut self, host: &str, vm: &VmSpec) -> Result<(), PlatformError> {
        self.known(host)?;
        let op = format!("start {host} {}", vm.uuid);
        let deadline = self.deadline();
        match self.lookup(host, &vm.uuid, &op, deadline)? {
            Lookup::Found(status, _) if status.power == PowerState::Running => return Ok(()),
            Lookup::Found(..) => {}
            Lookup::Missing => self.define(host, vm, &op, deadline)?,
        }
        let reply = self
            .exec(host, &format!("start {}", vm.uuid), deadline)
            .map_err(|e| self.error(host, &op, e))?;
        if reply.errors.is_empty() || reply.error_contains("already active") {
            tracing::info!(host, vm = %vm.uuid, "libvirt: domain started");
            Ok(())
        } else {
            Err(failed(&op, reply.why()))
        }
    }

    fn cleanup(&mut self, host: &str, vm: &Uuid) -> Result<(), PlatformError> {
        self.known(host)?;
        let op = format!("cleanup {host} {vm}");
        let deadline = self.deadline();
        let word = match self.lookup(host, vm, &op, deadline)? {
            Lookup::Missing => return Ok(()),
            Lookup::Found(_, word) => word,
        };
        if word != "shut off" {
            let reply = self
                .exec(host, &format!("destroy {vm}"), deadline)
                .map_err(|e| self.error(host, &op, e))?;
            if !reply.errors.is_empty() && !reply.error_contains("domain is not running") {
                return Err(failed(&op, format!("destroy: {}", reply.why())));
            }
        }
        let reply = self
            .exec(host, &format!("undefine {vm}"), deadline)
            .map_err(|e| self.error(host, &op, e))?;
        if reply.errors.is_empty() || is_missing(&reply) {
            tracing::info!(host, vm = %vm, "libvirt: domain removed");
            Ok(())
        } else {
            Err(failed(&op, format!("undefine: {}", reply.why())))
        }
    }

    /// Each host's starts on a thread of its own, with that host's connection (a host's
    /// own starts one after another, as one virsh session serves one command at a time):
    /// a batch spread over ten targets takes about as long as its longest host's share.
    fn start_many(&mut self, starts: &[(&str, &VmSpec)]) -> Vec<Result<(), PlatformError>> {
        let mut by_host: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, (host, _)) in starts.iter().enumerate() {
            by_host.entry(host).or_default().push(i);
        }
        if by_host.len() <= 1 {
            return starts
                .iter()
                .map(|(host, spec)| self.start(host, spec))
                .collect();
        }
        // A driver per host holding that host's connection alone, lent to its thread and
        // given back after.
        let mut parts: Vec<(LibvirtPlatform, Vec<usize>)> = Vec::new();
        let mut results: Vec<Option<Result<(), PlatformError>>> = vec![None; starts.len()];
        for (host, idx) in by_host {
            let Some(conn) = self.hosts.remove(host) else {
                for i in idx {
                    results[i] = Some(Err(PlatformError::NoSuchHost {
                        host: host.to_owned(),
                    }));
                }
                continue;
            };
            let mut hosts = BTreeMap::new();
            hosts.insert(host.to_owned(), conn);
            parts.push((
                LibvirtPlatform {
                    config: self.config.clone(),
                    hosts,
                    warned_no_address: BTreeSet::new(),
                },
                idx,
            ));
        }
        let done: Vec<Vec<(usize, Result<(), PlatformError>)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = parts
                .iter_mut()
                .map(|(driver, idx)| {
                    let idx = idx.clone();
                    scope.spawn(move || {
                        idx.into_iter()
                            .map(|i| (i, driver.start(starts[i].0, starts[i].1)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for (i, r) in done.into_iter().flatten() {
            results[i] = Some(r);
        }
        for (driver, _) in parts {
            self.hosts.extend(driver.hosts);
        }
        results
            .into_iter()
            .zip(starts)
            .map(|(r, (host, spec))| {
                r.unwrap_or_else(|| {
                    Err(PlatformError::Failed {
                        op: format!("start {host} {}", spec.uuid),
                        why: "its thread ended without an answer".to_owned(),
                    })
                })
            })
            .collect()
    }

    /// No live migration: libvirt's test hypervisor (every connection its own in-memory
    /// host) cannot migrate, and `virsh migrate` between real hosts needs shared storage
    /// and a migration network this driver does not configure. A planned move is then a
    /// stop on the source and a start on the target, reported as such.
    fn live_migration(&self) -> bool {
        false
    }

    fn migrate(&mut self, from: &str, to: &str, vm: &VmSpec) -> Result<(), PlatformError> {
        Err(failed(
            &format!("migrate {from} {to} {}", vm.uuid),
            "the libvirt driver does not live-migrate: the move is a stop and a start".to_owned(),
        ))
    }
}

impl LibvirtPlatform {
    /// A host for [`Platform::hosts`]: its deep inventory.
    fn host_info(&mut self, host: &str) -> Result<HostInfo, PlatformError> {
        let inv = self.inventory(host, true, &|_| false)?;
        Ok(HostInfo {
            name: inv.host,
            cpu_milli: inv.cpu_milli,
            memory_mb: inv.memory_mb,
            vms: inv
                .vms
                .into_iter()
                .map(|v| {
                    let (cpu_milli, memory_mb) = v.size.unwrap_or_default();
                    (
                        VmSpec {
                            uuid: v.uuid,
                            name: v.name,
                            cpu_milli,
                            memory_mb,
                        },
                        v.status,
                    )
                })
                .collect(),
        })
    }

    /// [`Platform::inventory`]: `nodeinfo`, `list --all --uuid --name`, then (quick)
    /// `list --all` for every state and `dominfo` for the VMs not `known`, or (deep)
    /// `dominfo` for every VM. One deadline for the whole host. Every answer is checked:
    /// a line that does not parse fails the host's inventory with the command, the
    /// value and what was expected.
    fn read_inventory(
        &mut self,
        host: &str,
        deep: bool,
        known: &dyn Fn(&Uuid) -> bool,
    ) -> Result<Inventory, PlatformError> {
        self.known(host)?;
        let deadline = self.deadline();
        let op = format!("inventory {host}");
        let run = |me: &mut Self, command: &str| -> Result<Reply, PlatformError> {
            let op = format!("inventory {host} {command}");
            let reply = me
                .exec(host, command, deadline)
                .map_err(|e| me.error(host, &op, e))?;
            if reply.errors.is_empty() {
                Ok(reply)
            } else {
                Err(failed(&op, reply.why()))
            }
        };
        let node = run(self, "nodeinfo")?;
        let (cpu_milli, memory_mb) =
            parse::nodeinfo(&node.lines).map_err(|e| failed(&op, e.to_string()))?;
        let list = run(self, "list --all --uuid --name")?;
        let pairs = parse::uuid_name_list(&list.lines).map_err(|e| failed(&op, e.to_string()))?;
        let states: BTreeMap<String, VmStatus> = if deep || pairs.iter().all(|(u, _)| !known(u)) {
            BTreeMap::new()
        } else {
            let table = run(self, "list --all")?;
            parse::state_list(&table.lines)
                .map_err(|e| failed(&op, e.to_string()))?
                .into_iter()
                .collect()
        };
        let mut vms = Vec::with_capacity(pairs.len());
        for (uuid, name) in pairs {
            if deep || !known(&uuid) {
                let info = run(self, &format!("dominfo {uuid}"))?;
                let (spec, status) =
                    parse::dominfo(&info.lines).map_err(|e| failed(&op, e.to_string()))?;
                if spec.uuid != uuid {
                    return Err(failed(
                        &op,
                        format!(
                            "dominfo {uuid} answered for another domain: UUID {}",
                            spec.uuid
                        ),
                    ));
                }
                vms.push(InventoryVm {
                    uuid,
                    name,
                    status,
                    size: Some((spec.cpu_milli, spec.memory_mb)),
                });
            } else {
                let status = *states.get(&name).ok_or_else(|| {
                    failed(
                        &op,
                        format!(
                            "list --all has no line for domain {name:?} ({uuid}) that \
                             list --all --uuid --name printed"
                        ),
                    )
                })?;
                vms.push(InventoryVm {
                    uuid,
                    name,
                    status,
                    size: None,
                });
            }
        }
        tracing::debug!(host, deep, vms = vms.len(), "libvirt: inventory read");
        Ok(Inventory {
            host: host.to_owned(),
            cpu_milli,
            memory_mb,
            vms,
        })
    }
}

/// Whether `program` can be found: an absolute or relative path that exists, or a name
/// on `PATH` (tests skip when virsh is absent).
pub fn program_exists(program: &Path) -> bool {
    if program.components().count() > 1 {
        return program.is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}
