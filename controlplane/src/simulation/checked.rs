//! The platform as the engine sees it in the simulation: the `sim` driver, with every
//! action checked against the invariants at the instant it begins, every call's time
//! charged to the other open failures, and the rest of the world brought up to the
//! clock before each call (the monitors do not wait for the engine).

use hsdb::Uuid;

use super::invariants::Rule;
use super::run::SimState;
use crate::clock::Clock;
use crate::platform::sim::{Call, SimPlatform};
use crate::platform::{HostInfo, Platform, PlatformError, VmSpec, VmStatus};

/// The simulation's platform during one engine turn.
pub struct CheckedPlatform<'a> {
    state: &'a mut SimState,
}

impl<'a> CheckedPlatform<'a> {
    /// Wrap the simulation's platform for one engine turn.
    pub fn new(state: &'a mut SimState) -> CheckedPlatform<'a> {
        CheckedPlatform { state }
    }

    /// Run one call: the world catches up to the clock first; the call's duration is
    /// charged to every open failure but `subject`'s; an action is followed into the
    /// agents at once.
    fn call<T>(
        &mut self,
        subject: Option<&Uuid>,
        action: bool,
        call: impl FnOnce(&mut SimPlatform) -> Result<T, PlatformError>,
    ) -> Result<T, PlatformError> {
        let before = self.state.clock.now_ms();
        self.state.catch_up(before);
        let result = call(&mut self.state.platform);
        let after = self.state.clock.now_ms();
        self.state.checker.engine_spent(subject, after - before);
        if action {
            self.state.follow_platform("fde");
        }
        result
    }

    /// The engine just looked at `vm`: note whether it was alive then.
    fn probed(&mut self, vm: &Uuid) {
        let world = self.state.platform.world();
        let (alive, now) = (world.vm_alive(vm), world.clock().now_ms());
        drop(world);
        self.state.checker.probed(*vm, alive, now);
    }

    /// The invariants an action must not break, checked as it begins.
    fn check(&mut self, call: Call, host: &str, vm: &Uuid) {
        let now = self.state.clock.now_ms();
        self.state.catch_up(now);
        let st = &mut *self.state;
        let world = st.platform.world();
        // Still booting from a start: its agent is not ready yet.
        let booting = st
            .ground
            .agents
            .get(vm)
            .is_some_and(|a| a.host.is_some() && a.ready_at > now);
        let races = st.checker.races().len();
        st.checker
            .before_action(&world, call, host, vm, booting, now);
        if st.checker.races().len() > races {
            drop(world);
            st.note_race(now, vm, call, host);
            return self.check_planned(call, host, vm, now);
        }
        drop(world);
        self.check_planned(call, host, vm, now);
    }

    /// No start of a VM of a host in planned shutdown (a planned shutdown is not a
    /// failure), unless the VM had failed before it began. A stop or cleanup there is
    /// harmless (the host is off) and may be a restart decided before the shutdown.
    fn check_planned(&mut self, call: Call, host: &str, vm: &Uuid, now: i64) {
        let st = &mut *self.state;
        let world = st.platform.world();
        let home = st
            .ground
            .agents
            .get(vm)
            .and_then(|a| a.host)
            .and_then(|h| st.ground.host_name(h));
        // Powered off with its host and running nowhere else.
        let defined_on_planned = world.vm_running_on(vm).is_empty()
            && world
                .vm_defined_on(vm)
                .iter()
                .any(|h| st.planned.contains(h));
        if call == Call::Start
            && !st.failed_before_shutdown.contains(vm)
            && (defined_on_planned || home.is_some_and(|h| st.planned.iter().any(|p| p == h)))
        {
            st.checker.violate(
                Rule::PlannedShutdownActedOn,
                Some(*vm),
                now,
                format!(
                    "{} {host} {vm}: the VM belongs to a host in planned shutdown ({:?})",
                    call.as_str(),
                    st.planned
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
        self.call(None, false, |p| p.hosts())
    }

    fn host_alive(&mut self, host: &str) -> Result<bool, PlatformError> {
        self.call(None, false, |p| p.host_alive(host))
    }

    fn ping(&mut self, vm: &Uuid) -> Result<bool, PlatformError> {
        let result = self.call(Some(vm), false, |p| p.ping(vm));
        self.probed(vm);
        result
    }

    fn vm_status(&mut self, host: &str, vm: &Uuid) -> Result<VmStatus, PlatformError> {
        let result = self.call(Some(vm), false, |p| p.vm_status(host, vm));
        self.probed(vm);
        result
    }

    fn stop(&mut self, host: &str, vm: &Uuid) -> Result<(), PlatformError> {
        self.check(Call::Stop, host, vm);
        self.call(Some(vm), true, |p| p.stop(host, vm))
    }

    fn start(&mut self, host: &str, vm: &VmSpec) -> Result<(), PlatformError> {
        self.check(Call::Start, host, &vm.uuid);
        let result = self.call(Some(&vm.uuid), true, |p| p.start(host, vm));
        let world = self.state.platform.world();
        if world.vm_running_on(&vm.uuid).iter().any(|h| h == host) {
            let now = world.clock().now_ms();
            drop(world);
            self.state.checker.started(&vm.uuid, now);
        }
        result
    }

    /// The batch concurrently, as the sim driver runs it: every start checked as it
    /// begins (all at the same instant), the batch's duration charged to the other open
    /// failures, each VM that runs on its target afterwards noted as started at the
    /// batch's end.
    fn start_many(&mut self, starts: &[(&str, &VmSpec)]) -> Vec<Result<(), PlatformError>> {
        for (host, vm) in starts {
            self.check(Call::Start, host, &vm.uuid);
        }
        let before = self.state.clock.now_ms();
        self.state.catch_up(before);
        let results = self.state.platform.start_many(starts);
        let after = self.state.clock.now_ms();
        self.state.checker.engine_spent(None, after - before);
        self.state.follow_platform("fde");
        for (host, vm) in starts {
            let world = self.state.platform.world();
            if world.vm_running_on(&vm.uuid).iter().any(|h| h == host) {
                let now = world.clock().now_ms();
                drop(world);
                self.state.checker.started(&vm.uuid, now);
            }
        }
        results
    }

    fn cleanup(&mut self, host: &str, vm: &Uuid) -> Result<(), PlatformError> {
        self.check(Call::Cleanup, host, vm);
        self.call(Some(vm), true, |p| p.cleanup(host, vm))
    }

    fn live_migration(&self) -> bool {
        self.state.platform.live_migration()
    }

    fn migrate(&mut self, from: &str, to: &str, vm: &VmSpec) -> Result<(), PlatformError> {
        self.check(Call::Migrate, to, &vm.uuid);
        self.call(Some(&vm.uuid), true, |p| p.migrate(from, to, vm))
    }
}
