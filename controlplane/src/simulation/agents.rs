//! The VM agents (`vmmd`) of the simulation: where each guest runs, whether its agent
//! heartbeats, and when each heartbeat left it toward each of the host's two monitors.
//!
//! This is the part of the ground truth the platform does not hold: a platform knows a
//! VM's power state and whether it answers a ping; only the guest knows whether its agent
//! is heartbeating. Heartbeats are not simulated one by one: an agent heartbeats on a
//! fixed grid (`phase + k × hb_period`, seed 004 L12594-12595: every 10 s) while its path
//! to a monitor is open, and each path keeps the window in which it last flowed, so a
//! monitor can ask "when did the last heartbeat reach me" for any time in O(1).

use hsdb::{HostId, Uuid};

/// One of a host's two monitors (its two I/O partitions, seed 004 L1938-1941).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// The first monitor of the host.
    A,
    /// The second.
    B,
}

impl Side {
    /// Both sides, in order.
    pub const BOTH: [Side; 2] = [Side::A, Side::B];

    /// 0 for A, 1 for B.
    pub const fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// What the guest is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestHealth {
    /// Running; its agent heartbeats once it is ready.
    Up,
    /// The agent process is stuck but the OS runs: no heartbeat, the VM answers pings
    /// (TC-7's shape: a VM that is alive but silent).
    AgentHung,
    /// The agent stopped gracefully (`SHDN`, seed: vioHmVmSuspend): no heartbeat, pingable.
    AgentStopped {
        /// When it stopped.
        at: i64,
    },
    /// The whole VM hangs: no heartbeat, no ping; the platform still says Running.
    Hung,
    /// The kernel panicked (TC-1, TC-2): no heartbeat, no ping, Running with an OS that
    /// had started.
    Crashed,
}

impl GuestHealth {
    /// The VM answers a ping in this state (when it runs on a live host).
    pub const fn pingable(self) -> bool {
        matches!(
            self,
            GuestHealth::Up | GuestHealth::AgentHung | GuestHealth::AgentStopped { .. }
        )
    }

    /// The agent sends heartbeats in this state (when ready and its adapter is up).
    pub const fn heartbeats(self) -> bool {
        matches!(self, GuestHealth::Up)
    }
}

/// A heartbeat path from the agent to one monitor: the guest's HA client adapter on that
/// side, and the windows in which heartbeats flowed.
#[derive(Debug, Clone, Copy)]
struct Path {
    /// The guest's adapter toward this monitor is up (TC-6..TC-9 disable them).
    adapter_up: bool,
    /// Heartbeats flow now.
    flowing: bool,
    /// Since when `flowing` holds.
    since: i64,
    /// The last window in which heartbeats flowed, before the current one.
    last_window: Option<Window>,
}

/// A closed window `[from, to)` in which heartbeats flowed, from the agent run `run` on
/// `host`.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: i64,
    to: i64,
    host: HostId,
    run: u32,
}

impl Path {
    fn new() -> Path {
        Path {
            adapter_up: true,
            flowing: false,
            since: 0,
            last_window: None,
        }
    }
}

/// One VM's guest and agent.
#[derive(Debug, Clone)]
pub struct Agent {
    /// The VM.
    pub vm: Uuid,
    /// The host the guest runs on; `None` while it runs nowhere.
    pub host: Option<HostId>,
    /// Agent run number: a new run at every boot and agent restart; a monitor pairs
    /// again (`Discovered`) with every new run.
    pub run: u32,
    /// When the agent starts answering Hellos after the guest started (boot time).
    pub ready_at: i64,
    /// Heartbeat grid offset in `0..hb_period`.
    pub phase: i64,
    /// What the guest does.
    pub health: GuestHealth,
    /// The VM has an agent at all (an IBM i VM of TC-3 has none: host relocation only).
    pub has_agent: bool,
    paths: [Path; 2],
}

impl Agent {
    /// A VM not running anywhere yet.
    pub fn new(vm: Uuid, phase: i64, has_agent: bool) -> Agent {
        Agent {
            vm,
            host: None,
            run: 0,
            ready_at: 0,
            phase,
            health: GuestHealth::Up,
            has_agent,
            paths: [Path::new(), Path::new()],
        }
    }

    /// The guest started on `host` at `now`; its agent is ready at `ready_at`.
    pub fn boot(&mut self, host: HostId, now: i64, ready_at: i64, hb_period: i64) {
        self.close_paths(now);
        self.host = Some(host);
        self.run = self.run.wrapping_add(1);
        self.ready_at = ready_at;
        self.health = GuestHealth::Up;
        self.paths.iter_mut().for_each(|p| p.adapter_up = true);
        // A fresh boot starts on its own grid offset from the ready time.
        self.phase = ready_at.rem_euclid(hb_period.max(1));
        self.refresh(now);
    }

    /// The running guest moved to `host` at `now` (live migration): same run, same grid;
    /// its paths close toward the old host and open toward the new one.
    pub fn migrate(&mut self, host: HostId, now: i64) {
        self.close_paths(now);
        self.host = Some(host);
        self.refresh(now);
    }

    /// The guest stopped running (powered off, its host lost).
    pub fn halt(&mut self, now: i64) {
        self.close_paths(now);
        self.host = None;
    }

    /// Change what the guest does at `now`.
    pub fn set_health(&mut self, health: GuestHealth, now: i64) {
        if matches!(health, GuestHealth::Up)
            && matches!(self.health, GuestHealth::AgentStopped { .. })
        {
            // An agent started again after a graceful stop is a new run: it pairs again.
            self.run = self.run.wrapping_add(1);
            self.ready_at = now;
        }
        self.health = health;
        self.refresh(now);
    }

    /// Bring the guest's HA adapter toward `side` up or down at `now`.
    pub fn set_adapter(&mut self, side: Side, up: bool, now: i64) {
        self.paths[side.index()].adapter_up = up;
        self.refresh(now);
    }

    /// The adapter toward `side` is up.
    pub fn adapter_up(&self, side: Side) -> bool {
        self.paths[side.index()].adapter_up
    }

    /// Re-derive whether heartbeats flow on each path at `now`; call after every change
    /// and when `ready_at` passes.
    pub fn refresh(&mut self, now: i64) {
        let base = self.host.is_some()
            && self.has_agent
            && self.health.heartbeats()
            && now >= self.ready_at;
        let (host, run) = (self.host, self.run);
        for path in &mut self.paths {
            let flowing = base && path.adapter_up;
            if flowing != path.flowing {
                if path.flowing
                    && let Some(host) = host
                {
                    path.last_window = Some(Window {
                        from: path.since,
                        to: now,
                        host,
                        run,
                    });
                }
                path.flowing = flowing;
                path.since = now;
            }
        }
    }

    fn close_paths(&mut self, now: i64) {
        let (host, run) = (self.host, self.run);
        for path in &mut self.paths {
            if path.flowing {
                if let Some(host) = host {
                    path.last_window = Some(Window {
                        from: path.since,
                        to: now,
                        host,
                        run,
                    });
                }
                path.flowing = false;
                path.since = now;
            }
        }
    }

    /// The agent would pair with a monitor on `side` now: it runs, is ready, heartbeats,
    /// and its adapter on that side is up.
    pub fn can_pair(&self, side: Side) -> bool {
        self.paths[side.index()].flowing
    }

    /// Since when the path to `side` is open (meaningful when [`Agent::can_pair`]).
    pub fn flowing_since(&self, side: Side) -> i64 {
        self.paths[side.index()].since
    }

    /// The VM answers a ping now (on a live host; the caller checks the host).
    pub fn pingable(&self) -> bool {
        self.host.is_some() && self.health.pingable()
    }

    /// The time of the last heartbeat agent run `run` sent toward the monitor on `side`
    /// of `host` at or before `now`, if any, in the current or the last flowing window.
    pub fn last_heartbeat(
        &self,
        host: HostId,
        run: u32,
        side: Side,
        now: i64,
        hb_period: i64,
    ) -> Option<i64> {
        let path = &self.paths[side.index()];
        if path.flowing
            && self.host == Some(host)
            && self.run == run
            && let Some(t) = last_tick(self.phase, hb_period, path.since, now)
        {
            return Some(t);
        }
        let w = path.last_window?;
        if w.host != host || w.run != run {
            return None;
        }
        // Half-open window: a tick at `to` did not leave.
        last_tick(self.phase, hb_period, w.from, w.to.min(now + 1) - 1)
    }

    /// Heartbeats of run `run` flow toward the monitor on `side` of `host` now.
    pub fn flowing_to(&self, host: HostId, run: u32, side: Side) -> bool {
        self.paths[side.index()].flowing && self.host == Some(host) && self.run == run
    }

    /// The next heartbeat toward `side` strictly after `now`, if heartbeats flow.
    pub fn next_heartbeat(&self, side: Side, now: i64, hb_period: i64) -> Option<i64> {
        let path = &self.paths[side.index()];
        if !path.flowing {
            return None;
        }
        Some(next_tick(self.phase, hb_period, path.since.max(now + 1)))
    }
}

/// The last grid point `phase + k × period` in `[from, to]`, if any.
pub fn last_tick(phase: i64, period: i64, from: i64, to: i64) -> Option<i64> {
    if to < from || period <= 0 {
        return None;
    }
    let k = (to - phase).div_euclid(period);
    let t = phase + k * period;
    (t >= from).then_some(t)
}

/// The first grid point `phase + k × period` at or after `at`.
pub fn next_tick(phase: i64, period: i64, at: i64) -> i64 {
    if period <= 0 {
        return at;
    }
    let k = (at - phase + period - 1).div_euclid(period);
    phase + k * period
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm() -> Uuid {
        Uuid([7; 16])
    }

    #[test]
    fn test_grid_points() {
        assert_eq!(last_tick(3, 10, 0, 25), Some(23));
        assert_eq!(last_tick(3, 10, 24, 25), None);
        assert_eq!(last_tick(3, 10, 23, 23), Some(23));
        assert_eq!(next_tick(3, 10, 23), 23);
        assert_eq!(next_tick(3, 10, 24), 33);
        assert_eq!(next_tick(3, 10, -5), -7 + 10);
    }

    #[test]
    fn test_heartbeats_flow_after_ready_and_stop_on_a_hang() {
        let mut a = Agent::new(vm(), 0, true);
        a.boot(HostId(1), 1_000, 5_000, 10_000);
        assert!(!a.can_pair(Side::A), "not ready yet");
        let h = HostId(1);
        let run = a.run;
        assert_eq!(a.last_heartbeat(h, run, Side::A, 4_000, 10_000), None);
        a.refresh(5_000);
        assert!(a.can_pair(Side::A));
        // Grid offset = ready time mod period: ticks at 5 000, 15 000, …
        assert_eq!(
            a.last_heartbeat(h, run, Side::A, 14_999, 10_000),
            Some(5_000)
        );
        assert_eq!(a.next_heartbeat(Side::A, 5_000, 10_000), Some(15_000));
        a.set_health(GuestHealth::Hung, 31_000);
        assert_eq!(
            a.last_heartbeat(h, run, Side::A, 90_000, 10_000),
            Some(25_000)
        );
        assert_eq!(a.next_heartbeat(Side::A, 90_000, 10_000), None);
        assert!(!a.pingable());
        // A tick exactly at the hang instant did not leave.
        a.set_health(GuestHealth::Up, 95_000);
        assert_eq!(a.next_heartbeat(Side::A, 95_000, 10_000), Some(105_000));
        // The tick at the resume instant left; the one at the crash instant did not.
        a.set_health(GuestHealth::Crashed, 105_000);
        assert_eq!(
            a.last_heartbeat(h, run, Side::A, 200_000, 10_000),
            Some(95_000)
        );
        // Another run, another host: nothing of this window.
        assert_eq!(
            a.last_heartbeat(HostId(2), run, Side::A, 200_000, 10_000),
            None
        );
        a.halt(210_000);
        a.boot(HostId(2), 210_000, 215_000, 10_000);
        a.refresh(215_000);
        // The old run's last heartbeat is still known (its monitors may not have
        // stepped since); the new run's flow is another.
        assert_eq!(
            a.last_heartbeat(h, run, Side::A, 300_000, 10_000),
            Some(95_000)
        );
        assert_eq!(a.last_heartbeat(h, run + 1, Side::A, 300_000, 10_000), None);
        assert!(a.flowing_to(HostId(2), run + 1, Side::A));
    }

    #[test]
    fn test_one_adapter_down_silences_one_side_only() {
        let mut a = Agent::new(vm(), 0, true);
        a.boot(HostId(1), 0, 0, 10_000);
        let run = a.run;
        a.set_adapter(Side::B, false, 12_000);
        let h = HostId(1);
        assert_eq!(
            a.last_heartbeat(h, run, Side::B, 50_000, 10_000),
            Some(10_000)
        );
        assert_eq!(
            a.last_heartbeat(h, run, Side::A, 50_000, 10_000),
            Some(50_000)
        );
        assert!(a.pingable());
    }

    #[test]
    fn test_agent_restart_after_graceful_stop_is_a_new_run() {
        let mut a = Agent::new(vm(), 0, true);
        a.boot(HostId(1), 0, 0, 10_000);
        let run = a.run;
        a.set_health(GuestHealth::AgentStopped { at: 5_000 }, 5_000);
        assert!(a.pingable());
        assert!(!a.can_pair(Side::A));
        a.set_health(GuestHealth::Up, 9_000);
        assert_eq!(a.run, run + 1);
        assert!(a.can_pair(Side::A));
    }

    #[test]
    fn test_no_agent_never_heartbeats() {
        let mut a = Agent::new(vm(), 0, false);
        a.boot(HostId(1), 0, 0, 10_000);
        assert!(!a.can_pair(Side::A));
        assert!(a.pingable());
    }
}
