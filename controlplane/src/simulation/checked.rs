//! The platform as the engine sees it in the simulation: the `sim` driver, with every
//! action checked against the invariants at the instant it begins.

use hsdb::Uuid;

use super::ground::Ground;
use super::invariants::Checker;
use crate::clock::Clock;
use crate::platform::sim::{Call, SimPlatform};
use crate::platform::{HostInfo, Platform, PlatformError, VmSpec, VmStatus};

/// A [`SimPlatform`] whose actions are checked before they run.
pub struct CheckedPlatform<'a> {
    inner: &'a mut SimPlatform,
    ground: &'a Ground,
    checker: &'a mut Checker,
    /// Hosts in a planned shutdown (the engine must leave their VMs alone).
    planned: &'a [String],
}

impl<'a> CheckedPlatform<'a> {
    /// Wrap `inner` for one engine call.
    pub fn new(
        inner: &'a mut SimPlatform,
        ground: &'a Ground,
        checker: &'a mut Checker,
        planned: &'a [String],
    ) -> CheckedPlatform<'a> {
        CheckedPlatform {
            inner,
            ground,
            checker,
            planned,
        }
    }

    fn check(&mut self, call: Call, host: &str, vm: &Uuid) {
        let world = self.inner.world();
        let now = world.clock().now_ms();
        // Still booting from a start: its agent is not ready yet.
        let booting = self
            .ground
            .agents
            .get(vm)
            .is_some_and(|a| a.host.is_some() && a.ready_at > now);
        self.checker
            .before_action(&world, call, host, vm, booting, now);
        let home = self
            .ground
            .agents
            .get(vm)
            .and_then(|a| a.host)
            .and_then(|h| self.ground.host_name(h));
        // Powered off with its host and running nowhere else.
        let defined_on_planned = world.vm_running_on(vm).is_empty()
            && world
                .vm_defined_on(vm)
                .iter()
                .any(|h| self.planned.contains(h));
        if call != Call::Cleanup
            && (defined_on_planned || home.is_some_and(|h| self.planned.iter().any(|p| p == h)))
        {
            self.checker.violate(
                super::invariants::Rule::PlannedShutdownActedOn,
                Some(*vm),
                now,
                format!(
                    "{} {host} {vm}: the VM belongs to a host in planned shutdown ({:?})",
                    call.as_str(),
                    self.planned
                ),
            );
        }
    }
}

impl Platform for CheckedPlatform<'_> {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn hosts(&mut self) -> Result<Vec<HostInfo>, PlatformError> {
        self.inner.hosts()
    }

    fn host_alive(&mut self, host: &str) -> Result<bool, PlatformError> {
        self.inner.host_alive(host)
    }

    fn ping(&mut self, vm: &Uuid) -> Result<bool, PlatformError> {
        self.inner.ping(vm)
    }

    fn vm_status(&mut self, host: &str, vm: &Uuid) -> Result<VmStatus, PlatformError> {
        self.inner.vm_status(host, vm)
    }

    fn stop(&mut self, host: &str, vm: &Uuid) -> Result<(), PlatformError> {
        self.check(Call::Stop, host, vm);
        self.inner.stop(host, vm)
    }

    fn start(&mut self, host: &str, vm: &VmSpec) -> Result<(), PlatformError> {
        self.check(Call::Start, host, &vm.uuid);
        let result = self.inner.start(host, vm);
        let world = self.inner.world();
        if world.vm_running_on(&vm.uuid).iter().any(|h| h == host) {
            let now = world.clock().now_ms();
            drop(world);
            self.checker.started(&vm.uuid, now);
        }
        result
    }

    fn cleanup(&mut self, host: &str, vm: &Uuid) -> Result<(), PlatformError> {
        self.check(Call::Cleanup, host, vm);
        self.inner.cleanup(host, vm)
    }
}
