//! [`FencedPlatform`]: the platform as a controller among several sees it. Every call —
//! actions and probes alike — first asks the daemon's leadership board whether this
//! controller may act for the host group now, as the engine of its term; a refused call
//! never reaches the driver and fails with [`PlatformError::Fenced`]. The board counts
//! and logs each refusal. With one controller (SQLite) every call passes.
//!
//! What the check cannot do: a call that passed it is the driver's from then on. If the
//! process is stopped between the check and the moment the call leaves it, the call goes
//! out when the process continues (docs/controlplane.md, "What a stopped leader can
//! still do"). Calls are sequential, so that is at most one call.

use hsdb::Uuid;

use super::{HostInfo, Inventory, Platform, PlatformError, VmSpec, VmStatus};
use crate::daemon::leadership::{Board, OpKind};

/// A platform whose calls are checked against the leadership board.
pub struct FencedPlatform<'a> {
    inner: &'a mut dyn Platform,
    board: &'a Board,
    group: &'a str,
    bound: Option<i64>,
}

impl<'a> FencedPlatform<'a> {
    /// `inner` as the engine of `group`'s term `bound` (`None`: the sole controller's
    /// engine, or whatever term) sees it.
    pub fn new(
        inner: &'a mut dyn Platform,
        board: &'a Board,
        group: &'a str,
        bound: Option<i64>,
    ) -> FencedPlatform<'a> {
        FencedPlatform {
            inner,
            board,
            group,
            bound,
        }
    }

    fn allow(&self, kind: OpKind, op: &dyn Fn() -> String) -> Result<(), PlatformError> {
        match self.board.check(self.group, self.bound, kind, op) {
            Ok(token) => {
                if kind == OpKind::Action {
                    tracing::info!(
                        host_group = self.group,
                        token,
                        holder = self.board.holder(),
                        "platform action: {}",
                        op()
                    );
                }
                Ok(())
            }
            Err(why) => Err(PlatformError::Fenced {
                op: op(),
                why: why.to_string(),
            }),
        }
    }
}

impl Platform for FencedPlatform<'_> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn hosts(&mut self) -> Result<Vec<HostInfo>, PlatformError> {
        self.allow(OpKind::Probe, &|| "hosts".to_owned())?;
        self.inner.hosts()
    }

    fn host_names(&mut self) -> Result<Vec<String>, PlatformError> {
        self.allow(OpKind::Probe, &|| "host_names".to_owned())?;
        self.inner.host_names()
    }

    fn can_discover(&self) -> bool {
        self.inner.can_discover()
    }

    fn inventory(
        &mut self,
        host: &str,
        deep: bool,
        known: &dyn Fn(&Uuid) -> bool,
    ) -> Result<Inventory, PlatformError> {
        self.allow(OpKind::Probe, &|| format!("inventory {host}"))?;
        self.inner.inventory(host, deep, known)
    }

    fn host_alive(&mut self, host: &str) -> Result<bool, PlatformError> {
        self.allow(OpKind::Probe, &|| format!("host_alive {host}"))?;
        self.inner.host_alive(host)
    }

    fn ping(&mut self, vm: &Uuid) -> Result<bool, PlatformError> {
        self.allow(OpKind::Probe, &|| format!("ping {vm}"))?;
        self.inner.ping(vm)
    }

    fn vm_status(&mut self, host: &str, vm: &Uuid) -> Result<VmStatus, PlatformError> {
        self.allow(OpKind::Probe, &|| format!("vm_status {host} {vm}"))?;
        self.inner.vm_status(host, vm)
    }

    fn stop(&mut self, host: &str, vm: &Uuid) -> Result<(), PlatformError> {
        self.allow(OpKind::Action, &|| format!("stop {host} {vm}"))?;
        self.inner.stop(host, vm)
    }

    fn start(&mut self, host: &str, vm: &VmSpec) -> Result<(), PlatformError> {
        self.allow(OpKind::Action, &|| format!("start {host} {}", vm.uuid))?;
        self.inner.start(host, vm)
    }

    fn cleanup(&mut self, host: &str, vm: &Uuid) -> Result<(), PlatformError> {
        self.allow(OpKind::Action, &|| format!("cleanup {host} {vm}"))?;
        self.inner.cleanup(host, vm)
    }

    fn start_many(&mut self, starts: &[(&str, &VmSpec)]) -> Vec<Result<(), PlatformError>> {
        // Each start is checked (and logged with the token) on its own; the ones allowed
        // go to the driver together.
        let mut results: Vec<Option<Result<(), PlatformError>>> = Vec::with_capacity(starts.len());
        let mut allowed = Vec::new();
        for (host, spec) in starts {
            match self.allow(OpKind::Action, &|| format!("start {host} {}", spec.uuid)) {
                Ok(()) => {
                    allowed.push((*host, *spec));
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let mut done = self.inner.start_many(&allowed).into_iter();
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    done.next().unwrap_or_else(|| {
                        Err(PlatformError::Failed {
                            op: "start".to_owned(),
                            why: "the driver returned fewer results than starts".to_owned(),
                        })
                    })
                })
            })
            .collect()
    }

    fn live_migration(&self) -> bool {
        self.inner.live_migration()
    }

    fn migrate(&mut self, from: &str, to: &str, vm: &VmSpec) -> Result<(), PlatformError> {
        self.allow(OpKind::Action, &|| {
            format!("migrate {from} {to} {}", vm.uuid)
        })?;
        self.inner.migrate(from, to, vm)
    }
}
