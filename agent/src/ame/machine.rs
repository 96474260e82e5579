//! One application's state machine (seed 004 L16210-16311, states L9784-9802).
//!
//! Sans-IO: inputs are script results, operator commands and the time; outputs are
//! [`Action`]s the runtime carries out. Starting and stopping are gated by the
//! [`Engine`](super::engine::Engine), which applies the dependencies: on entering
//! TO_STOP or TO_START the machine marks a stop or start *pending* and runs it only when
//! the engine calls [`App::grant_stop`] / [`App::grant_start`].
//!
//! Operator Start: of an application that is stopped, in FAILURE or ABNORMAL, it runs
//! the start script (after the stop, if one is running). Of an application believed
//! running (NORMAL or FAILING) it runs the monitor at once instead: healthy, nothing
//! more happens (a second start script could start a second instance); down, the
//! start script runs, as for an application found down at boot. Either way it resumes
//! monitoring and resets the counters.
//!
//! Counters:
//! - monitor failures count successive failed or timed-out monitors and reset on a
//!   successful monitor, a restart and a suspend;
//! - stop (start) failures count successive failed stop (start) runs and reset when one
//!   succeeds or the operator starts the application;
//! - the restart count (`nooftimes_restarted`) counts the restart cycles the
//!   application's own monitor failures caused; it resets on an operator Start or
//!   Resume and after [`STABLE_MONITORS`] successive successful monitors, because the
//!   seed's `max_restart` limits *successive* restart cycles (seed 004 L16270-16272): an
//!   application healthy for that long has ended its series of failures. A restart
//!   forced by a parent's restart does not count: the child did not fail.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::config::AppConfig;

/// Successive successful monitors after which the restart count is reset
/// (10 runs: 5 minutes at the default period). Our choice, see the module doc.
pub const STABLE_MONITORS: u32 = 10;

/// The AME states (seed 004 L9784-9802).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not known yet (before the first monitor), or stopped by the operator.
    Unset,
    /// Healthy.
    Normal,
    /// Monitor failed, fewer than `monitor_failure_threshold` times in a row.
    Failing,
    /// Being stopped (first half of a restart, or an operator stop).
    ToStop,
    /// Being started.
    ToStart,
    /// Local restart is insufficient, or the application cannot be stopped or started.
    Failure,
    /// A script is missing or unusable; needs the operator.
    Abnormal,
}

/// Colour of a state on the control plane (seed 004 L13724-13728).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    /// Stable.
    Green,
    /// Intermediate: restart being attempted.
    Yellow,
    /// Permanent failure.
    Red,
}

impl State {
    /// The state's colour (seed 004 L9784-9802).
    pub fn colour(self) -> Colour {
        match self {
            Self::Normal => Colour::Green,
            Self::Unset | Self::Failing | Self::ToStop | Self::ToStart => Colour::Yellow,
            Self::Failure | Self::Abnormal => Colour::Red,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Unset => "UNSET",
            Self::Normal => "NORMAL",
            Self::Failing => "FAILING",
            Self::ToStop => "TO_STOP",
            Self::ToStart => "TO_START",
            Self::Failure => "FAILURE",
            Self::Abnormal => "ABNORMAL",
        };
        write!(f, "{name} ({:?})", self.colour())
    }
}

/// How a script run ended, as the runtime saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0.
    Ok,
    /// Non-zero exit status or killed by a signal.
    Failed,
    /// Killed after its timeout; counted as failed.
    TimedOut,
}

/// Which script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// `monitor_script`.
    Monitor,
    /// `stop_script`.
    Stop,
    /// `start_script`.
    Start,
}

/// An input to an application's machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The monitor script ended.
    MonitorResult(Outcome),
    /// The stop script ended.
    StopResult(Outcome),
    /// The start script ended.
    StartResult(Outcome),
    /// The runtime could not run a script: missing, not executable, writable by others.
    ScriptUnusable {
        /// Which script.
        script: Script,
        /// Why, naming the file.
        reason: String,
    },
    /// Operator: suspend monitoring.
    Suspend,
    /// Operator: resume monitoring.
    Resume,
    /// Operator: start the application (also clears FAILURE and ABNORMAL).
    Start,
    /// Operator: stop the application and suspend its monitoring.
    Stop,
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run the monitor script, killing it after `timeout`.
    RunMonitor {
        /// `monitor_timeout`.
        timeout: Duration,
    },
    /// Run the stop script, killing it after `timeout`.
    RunStop {
        /// `stop_stabilization_time`.
        timeout: Duration,
    },
    /// Run the start script, killing it after `timeout`.
    RunStart {
        /// `start_stabilization_time`.
        timeout: Duration,
    },
    /// The state changed: tell the control plane (the doorbell).
    ReportState {
        /// The new state.
        state: State,
        /// The restart count at that moment.
        restarts: u32,
        /// Why, for FAILURE and ABNORMAL.
        reason: Option<String>,
    },
}

/// What follows a successful stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterStop {
    /// Start again (a restart cycle).
    Restart,
    /// Stay stopped (operator stop).
    Halt,
}

/// One application's state machine.
#[derive(Debug)]
pub struct App {
    config: AppConfig,
    state: State,
    monitored: bool,
    /// When the next monitor run is due, while monitoring runs.
    next_monitor: Option<Instant>,
    running: Option<Script>,
    stop_pending: bool,
    start_pending: bool,
    /// An operator Start found the application believed running: the next monitor
    /// decides — healthy, nothing to do; down, the start script runs.
    start_if_down: bool,
    after_stop: AfterStop,
    /// The current cycle counts against `max_restart`.
    counted_cycle: bool,
    monitor_failures: u32,
    stop_failures: u32,
    start_failures: u32,
    restarts: u32,
    stable_monitors: u32,
    actions: VecDeque<Action>,
}

impl App {
    /// A new application in UNSET; if monitored, its first monitor runs at `now`.
    pub fn new(config: AppConfig, now: Instant) -> Self {
        let monitored = config.monitored;
        Self {
            config,
            state: State::Unset,
            monitored,
            next_monitor: monitored.then_some(now),
            running: None,
            stop_pending: false,
            start_pending: false,
            start_if_down: false,
            after_stop: AfterStop::Restart,
            counted_cycle: false,
            monitor_failures: 0,
            stop_failures: 0,
            start_failures: 0,
            restarts: 0,
            stable_monitors: 0,
            actions: VecDeque::new(),
        }
    }

    /// The application's configuration.
    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    /// Change `critical`, the one attribute that does not touch the machine.
    pub fn set_critical(&mut self, critical: bool) {
        self.config.critical = critical;
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Restart cycles counted against `max_restart` (`nooftimes_restarted`).
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Successive failed monitors.
    pub fn monitor_failures(&self) -> u32 {
        self.monitor_failures
    }

    /// Successive failed stop runs.
    pub fn stop_failures(&self) -> u32 {
        self.stop_failures
    }

    /// Successive failed start runs.
    pub fn start_failures(&self) -> u32 {
        self.start_failures
    }

    /// Whether monitoring runs.
    pub fn monitored(&self) -> bool {
        self.monitored
    }

    /// Waiting for the engine's permission to run the stop script.
    pub fn stop_pending(&self) -> bool {
        self.stop_pending
    }

    /// Waiting for the engine's permission to run the start script.
    pub fn start_pending(&self) -> bool {
        self.start_pending
    }

    /// When the machine next needs a [`App::handle_tick`], if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_monitor.filter(|_| self.running.is_none())
    }

    /// The next action for the runtime.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The time passed: run the monitor when due.
    pub fn handle_tick(&mut self, now: Instant) {
        let due = self.next_monitor.is_some_and(|at| at <= now);
        if due && self.running.is_none() && self.watching() {
            self.running = Some(Script::Monitor);
            self.next_monitor = Some(now + self.config.monitor_interval());
            self.actions.push_back(Action::RunMonitor {
                timeout: self.config.monitor_timeout,
            });
        }
    }

    /// A script result or an operator command.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::MonitorResult(outcome) => self.on_monitor(outcome),
            Input::StopResult(outcome) => self.on_stop(outcome),
            Input::StartResult(outcome) => self.on_start(now, outcome),
            Input::ScriptUnusable { script, reason } => {
                self.start_if_down = false;
                if self.running == Some(script) {
                    self.running = None;
                }
                self.stop_pending = false;
                self.start_pending = false;
                self.next_monitor = None;
                self.set_state(State::Abnormal, Some(reason));
            }
            Input::Suspend => {
                self.start_if_down = false;
                self.monitored = false;
                self.next_monitor = None;
                self.monitor_failures = 0;
            }
            Input::Resume => {
                self.monitored = true;
                self.restarts = 0;
                self.next_monitor = Some(now);
            }
            Input::Start if matches!(self.state, State::Normal | State::Failing) => {
                // Believed running: a second start script could start a second
                // instance. Check it now and start it only if it is down.
                self.monitored = true;
                self.reset_counters();
                self.restarts = 0;
                self.start_if_down = true;
                if self.running.is_none() {
                    self.next_monitor = Some(now);
                }
            }
            Input::Start => {
                self.start_if_down = false;
                self.monitored = true;
                self.reset_counters();
                self.restarts = 0;
                self.counted_cycle = false;
                self.stop_pending = false;
                self.next_monitor = None;
                self.start_pending = self.running.is_none();
                self.set_state(State::ToStart, None);
            }
            Input::Stop => {
                self.monitored = false;
                self.next_monitor = None;
                self.begin_stop(AfterStop::Halt, false);
            }
        }
    }

    /// The engine stops this application because its parent stops: after the stop it
    /// waits in TO_START for the parent (seed 004 L16404-16409).
    pub fn force_restart(&mut self) {
        self.begin_stop(AfterStop::Restart, false);
    }

    /// The engine lets the pending stop run; `true` if it now runs.
    pub fn grant_stop(&mut self) -> bool {
        if !self.stop_pending || self.running.is_some() {
            return false;
        }
        self.stop_pending = false;
        self.running = Some(Script::Stop);
        self.actions.push_back(Action::RunStop {
            timeout: self.config.stop_stabilization_time,
        });
        true
    }

    /// The engine lets the pending start run; `true` if it now runs.
    pub fn grant_start(&mut self) -> bool {
        if !self.start_pending || self.running.is_some() {
            return false;
        }
        self.start_pending = false;
        self.running = Some(Script::Start);
        self.actions.push_back(Action::RunStart {
            timeout: self.config.start_stabilization_time,
        });
        true
    }

    /// Monitoring applies: monitored and in a state that is watched.
    fn watching(&self) -> bool {
        self.monitored && matches!(self.state, State::Unset | State::Normal | State::Failing)
    }

    fn on_monitor(&mut self, outcome: Outcome) {
        if self.running != Some(Script::Monitor) {
            return;
        }
        self.running = None;
        // A result of a run begun before a suspend or a state change is stale.
        if !self.watching() {
            return;
        }
        let start_if_down = std::mem::take(&mut self.start_if_down);
        if outcome == Outcome::Ok {
            self.monitor_failures = 0;
            self.stable_monitors += 1;
            if self.stable_monitors >= STABLE_MONITORS {
                self.restarts = 0;
            }
            self.set_state(State::Normal, None);
            return;
        }
        self.stable_monitors = 0;
        if self.state == State::Unset || start_if_down {
            // Never seen healthy since the agent started: start it, not a restart
            // (rebootappstarttype, seed 004 L16127-16140).
            self.next_monitor = None;
            self.start_pending = true;
            self.counted_cycle = false;
            self.set_state(State::ToStart, None);
            return;
        }
        self.monitor_failures += 1;
        if self.monitor_failures < self.config.monitor_failure_threshold {
            self.set_state(State::Failing, None);
        } else if self.restarts >= self.config.max_restart {
            self.next_monitor = None;
            let reason = format!(
                "local restart insufficient: {} restarts (max_restart {})",
                self.restarts, self.config.max_restart
            );
            self.set_state(State::Failure, Some(reason));
        } else {
            self.begin_stop(AfterStop::Restart, true);
        }
    }

    fn begin_stop(&mut self, after: AfterStop, counted: bool) {
        self.start_if_down = false;
        self.after_stop = after;
        self.counted_cycle = counted;
        self.monitor_failures = 0;
        self.next_monitor = None;
        self.start_pending = false;
        // A monitor still running is abandoned; its result will be ignored.
        if self.running == Some(Script::Monitor) {
            self.running = None;
        }
        self.stop_pending = self.running.is_none();
        self.set_state(State::ToStop, None);
    }

    fn on_stop(&mut self, outcome: Outcome) {
        if self.running != Some(Script::Stop) {
            return;
        }
        self.running = None;
        if self.state != State::ToStop {
            // The operator started it while it was stopping: now the start may run.
            self.start_pending = self.state == State::ToStart;
            return;
        }
        if outcome == Outcome::Ok {
            self.stop_failures = 0;
            match self.after_stop {
                AfterStop::Restart => {
                    self.start_pending = true;
                    self.set_state(State::ToStart, None);
                }
                AfterStop::Halt => self.set_state(State::Unset, None),
            }
            return;
        }
        self.stop_failures += 1;
        if self.stop_failures >= self.config.stop_max_failures {
            let reason = format!(
                "cannot stop: stop_script failed {} times in a row",
                self.stop_failures
            );
            self.set_state(State::Failure, Some(reason));
        } else {
            self.stop_pending = true;
        }
    }

    fn on_start(&mut self, now: Instant, outcome: Outcome) {
        if self.running != Some(Script::Start) {
            return;
        }
        self.running = None;
        if self.state != State::ToStart {
            // The operator stopped it while it was starting: now the stop may run.
            self.stop_pending = self.state == State::ToStop;
            return;
        }
        if outcome == Outcome::Ok {
            self.start_failures = 0;
            if self.counted_cycle {
                self.restarts += 1;
                self.counted_cycle = false;
            }
            self.stable_monitors = 0;
            // Give the application one period to settle before judging it.
            self.next_monitor = self.monitored.then(|| now + self.config.monitor_interval());
            self.set_state(State::Normal, None);
            return;
        }
        self.start_failures += 1;
        if self.start_failures >= self.config.start_max_failures {
            let reason = format!(
                "cannot start: start_script failed {} times in a row",
                self.start_failures
            );
            self.set_state(State::Failure, Some(reason));
        } else {
            self.start_pending = true;
        }
    }

    fn reset_counters(&mut self) {
        self.monitor_failures = 0;
        self.stop_failures = 0;
        self.start_failures = 0;
        self.stable_monitors = 0;
    }

    fn set_state(&mut self, state: State, reason: Option<String>) {
        if state != self.state || reason.is_some() {
            self.state = state;
            self.actions.push_back(Action::ReportState {
                state,
                restarts: self.restarts,
                reason,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// An application on a virtual clock; grants every stop and start as the engine
    /// does without dependencies.
    struct Rig {
        app: App,
        t0: Instant,
        now: Instant,
    }

    impl Rig {
        fn new(config: AppConfig) -> Self {
            let t0 = Instant::now();
            Self {
                app: App::new(config, t0),
                t0,
                now: t0,
            }
        }
        fn default() -> Self {
            Self::new(AppConfig::new("app1", "/m", "/start", "/stop"))
        }
        fn drain(&mut self) -> Vec<Action> {
            self.app.grant_stop();
            self.app.grant_start();
            std::iter::from_fn(|| self.app.poll_action()).collect()
        }
        fn at(&mut self, secs: u64) -> Vec<Action> {
            self.now = self.t0 + S * u32::try_from(secs).unwrap();
            self.app.handle_tick(self.now);
            self.drain()
        }
        fn input(&mut self, input: Input) -> Vec<Action> {
            self.app.handle(self.now, input);
            self.drain()
        }
        /// Due monitor runs and returns `outcome`.
        fn monitor(&mut self, secs: u64, outcome: Outcome) -> Vec<Action> {
            let a = self.at(secs);
            assert!(
                a.contains(&Action::RunMonitor { timeout: 10 * S }),
                "no monitor at {secs}: {a:?}"
            );
            self.input(Input::MonitorResult(outcome))
        }
        /// Healthy from UNSET to NORMAL at t=0.
        fn normal() -> Self {
            let mut rig = Self::default();
            rig.monitor(0, Outcome::Ok);
            assert_eq!(rig.app.state(), State::Normal);
            rig
        }
        /// Fail the monitor until the threshold: the app is then in TO_STOP with a stop run.
        fn fail_to_stop(&mut self, from: u64) -> Vec<Action> {
            let mut last = Vec::new();
            for i in 0..5 {
                last = self.monitor(from + 30 * i, Outcome::Failed);
            }
            last
        }
    }

    fn report(state: State, restarts: u32) -> Action {
        Action::ReportState {
            state,
            restarts,
            reason: None,
        }
    }

    #[test]
    fn colours() {
        assert_eq!(State::Normal.colour(), Colour::Green);
        for s in [State::Unset, State::Failing, State::ToStop, State::ToStart] {
            assert_eq!(s.colour(), Colour::Yellow, "{s}");
        }
        for s in [State::Failure, State::Abnormal] {
            assert_eq!(s.colour(), Colour::Red, "{s}");
        }
        assert_eq!(State::ToStop.to_string(), "TO_STOP (Yellow)");
    }

    #[test]
    fn monitor_runs_every_period_and_unset_becomes_normal() {
        let mut rig = Rig::default();
        assert_eq!(rig.app.state(), State::Unset);
        assert_eq!(rig.app.poll_timeout(), Some(rig.t0));
        assert_eq!(rig.monitor(0, Outcome::Ok), vec![report(State::Normal, 0)]);
        assert_eq!(rig.app.poll_timeout(), Some(rig.t0 + 30 * S));
        assert_eq!(rig.at(29), vec![], "not before the period");
        assert_eq!(
            rig.monitor(30, Outcome::Ok),
            vec![],
            "no report without a change"
        );
        // No second run while one is in flight.
        assert_eq!(rig.at(60), vec![Action::RunMonitor { timeout: 10 * S }]);
        assert_eq!(rig.at(95), vec![]);
    }

    #[test]
    fn failing_then_recovered() {
        let mut rig = Rig::normal();
        assert_eq!(
            rig.monitor(30, Outcome::Failed),
            vec![report(State::Failing, 0)]
        );
        assert_eq!(rig.monitor(60, Outcome::TimedOut), vec![]);
        assert_eq!(rig.app.monitor_failures(), 2);
        assert_eq!(rig.monitor(90, Outcome::Ok), vec![report(State::Normal, 0)]);
        assert_eq!(rig.app.monitor_failures(), 0);
        // The count restarted: four more failures are not yet a restart.
        for i in 0..4 {
            rig.monitor(120 + 30 * i, Outcome::Failed);
        }
        assert_eq!(rig.app.state(), State::Failing);
    }

    #[test]
    fn threshold_failures_restart_and_count() {
        let mut rig = Rig::normal();
        let actions = rig.fail_to_stop(30);
        assert_eq!(
            actions,
            vec![
                report(State::ToStop, 0),
                Action::RunStop { timeout: 25 * S }
            ]
        );
        assert_eq!(rig.at(300), vec![], "no monitoring while stopping");
        let actions = rig.input(Input::StopResult(Outcome::Ok));
        assert_eq!(
            actions,
            vec![
                report(State::ToStart, 0),
                Action::RunStart { timeout: 25 * S }
            ]
        );
        let actions = rig.input(Input::StartResult(Outcome::Ok));
        assert_eq!(actions, vec![report(State::Normal, 1)]);
        assert_eq!(rig.app.restarts(), 1);
        // Monitoring resumes one period after the start.
        assert_eq!(rig.app.poll_timeout(), Some(rig.now + 30 * S));
    }

    #[test]
    fn threshold_of_one_restarts_on_first_failure() {
        let mut config = AppConfig::new("a", "/m", "/start", "/stop");
        config.monitor_failure_threshold = 1;
        let mut rig = Rig::new(config);
        rig.monitor(0, Outcome::Ok);
        let actions = rig.monitor(30, Outcome::Failed);
        assert_eq!(actions[0], report(State::ToStop, 0));
    }

    #[test]
    fn stop_failures_reach_failure() {
        let mut rig = Rig::normal();
        rig.fail_to_stop(30);
        assert_eq!(
            rig.input(Input::StopResult(Outcome::Failed)),
            vec![Action::RunStop { timeout: 25 * S }]
        );
        assert_eq!(
            rig.input(Input::StopResult(Outcome::TimedOut)),
            vec![Action::RunStop { timeout: 25 * S }]
        );
        let actions = rig.input(Input::StopResult(Outcome::Failed));
        assert_eq!(actions.len(), 1);
        assert!(
            matches!(&actions[0], Action::ReportState { state: State::Failure, reason: Some(r), .. } if r.contains("cannot stop"))
        );
        assert_eq!(rig.at(10_000), vec![], "FAILURE is not monitored");
    }

    #[test]
    fn stop_failure_count_resets_on_success() {
        let mut rig = Rig::normal();
        rig.fail_to_stop(30);
        rig.input(Input::StopResult(Outcome::Failed));
        rig.input(Input::StopResult(Outcome::Failed));
        rig.input(Input::StopResult(Outcome::Ok));
        rig.input(Input::StartResult(Outcome::Ok));
        // Second cycle: two failures again are not three in a row.
        rig.fail_to_stop(1000);
        rig.input(Input::StopResult(Outcome::Failed));
        rig.input(Input::StopResult(Outcome::Failed));
        assert_eq!(rig.app.state(), State::ToStop);
    }

    #[test]
    fn start_failures_reach_failure() {
        let mut rig = Rig::normal();
        rig.fail_to_stop(30);
        rig.input(Input::StopResult(Outcome::Ok));
        assert_eq!(
            rig.input(Input::StartResult(Outcome::Failed)),
            vec![Action::RunStart { timeout: 25 * S }]
        );
        rig.input(Input::StartResult(Outcome::TimedOut));
        let actions = rig.input(Input::StartResult(Outcome::Failed));
        assert!(
            matches!(&actions[0], Action::ReportState { state: State::Failure, reason: Some(r), .. } if r.contains("cannot start"))
        );
        assert_eq!(rig.app.restarts(), 0, "a failed cycle is no restart");
    }

    #[test]
    fn more_than_max_restart_cycles_is_failure() {
        let mut rig = Rig::normal();
        let mut t = 30;
        for cycle in 1..=3 {
            rig.fail_to_stop(t);
            rig.input(Input::StopResult(Outcome::Ok));
            rig.input(Input::StartResult(Outcome::Ok));
            assert_eq!(rig.app.restarts(), cycle);
            t += 1000;
        }
        let actions = rig.fail_to_stop(t);
        assert_eq!(rig.app.state(), State::Failure);
        assert!(
            matches!(&actions[..], [Action::ReportState { state: State::Failure, restarts: 3, reason: Some(r) }] if r.contains("local restart insufficient"))
        );
    }

    #[test]
    fn restart_count_resets_after_a_stable_run() {
        let mut rig = Rig::normal();
        rig.fail_to_stop(30);
        rig.input(Input::StopResult(Outcome::Ok));
        rig.input(Input::StartResult(Outcome::Ok));
        assert_eq!(rig.app.restarts(), 1);
        let base = 1000;
        for i in 0..u64::from(STABLE_MONITORS) - 1 {
            rig.monitor(base + 30 * i, Outcome::Ok);
        }
        assert_eq!(rig.app.restarts(), 1, "one run short of stable");
        rig.monitor(base + 30 * u64::from(STABLE_MONITORS), Outcome::Ok);
        assert_eq!(rig.app.restarts(), 0);
    }

    #[test]
    fn a_failure_breaks_the_stable_run() {
        let mut rig = Rig::normal();
        rig.fail_to_stop(30);
        rig.input(Input::StopResult(Outcome::Ok));
        rig.input(Input::StartResult(Outcome::Ok));
        let base = 1000;
        for i in 0..u64::from(STABLE_MONITORS) {
            let outcome = if i == 5 { Outcome::Failed } else { Outcome::Ok };
            rig.monitor(base + 30 * i, outcome);
        }
        assert_eq!(rig.app.restarts(), 1);
    }

    #[test]
    fn unusable_script_is_abnormal_until_operator_start() {
        let mut rig = Rig::normal();
        rig.at(30);
        let reason = "/m: not executable".to_owned();
        let actions = rig.input(Input::ScriptUnusable {
            script: Script::Monitor,
            reason: reason.clone(),
        });
        assert_eq!(
            actions,
            vec![Action::ReportState {
                state: State::Abnormal,
                restarts: 0,
                reason: Some(reason)
            }]
        );
        assert_eq!(rig.at(10_000), vec![], "ABNORMAL is not monitored");
        let actions = rig.input(Input::Start);
        assert_eq!(
            actions,
            vec![
                report(State::ToStart, 0),
                Action::RunStart { timeout: 25 * S }
            ]
        );
        rig.input(Input::StartResult(Outcome::Ok));
        assert_eq!(rig.app.state(), State::Normal);
        assert_eq!(rig.app.restarts(), 0, "an operator start is no restart");
    }

    #[test]
    fn suspend_stops_monitoring_and_resume_restarts_it() {
        let mut rig = Rig::normal();
        rig.monitor(30, Outcome::Failed);
        rig.at(60);
        rig.input(Input::Suspend);
        // The run in flight ends after the suspend: ignored.
        assert_eq!(rig.input(Input::MonitorResult(Outcome::Failed)), vec![]);
        assert_eq!(rig.app.monitor_failures(), 0);
        assert_eq!(rig.app.poll_timeout(), None);
        assert_eq!(rig.at(10_000), vec![]);
        rig.input(Input::Resume);
        assert_eq!(
            rig.app.poll_timeout(),
            Some(rig.now),
            "resume monitors at once"
        );
        assert_eq!(
            rig.monitor(10_000, Outcome::Ok),
            vec![report(State::Normal, 0)]
        );
    }

    #[test]
    fn unmonitored_config_never_runs_the_monitor() {
        let mut config = AppConfig::new("a", "/m", "/start", "/stop");
        config.monitored = false;
        let mut rig = Rig::new(config);
        assert_eq!(rig.at(0), vec![]);
        assert_eq!(rig.app.poll_timeout(), None);
    }

    #[test]
    fn resume_resets_the_restart_count() {
        let mut rig = Rig::normal();
        rig.fail_to_stop(30);
        rig.input(Input::StopResult(Outcome::Ok));
        rig.input(Input::StartResult(Outcome::Ok));
        rig.input(Input::Suspend);
        rig.input(Input::Resume);
        assert_eq!(rig.app.restarts(), 0);
    }

    #[test]
    fn unset_app_failing_first_monitor_is_started_not_restarted() {
        let mut rig = Rig::default();
        let actions = rig.monitor(0, Outcome::Failed);
        assert_eq!(
            actions,
            vec![
                report(State::ToStart, 0),
                Action::RunStart { timeout: 25 * S }
            ]
        );
        rig.input(Input::StartResult(Outcome::Ok));
        assert_eq!(rig.app.state(), State::Normal);
        assert_eq!(rig.app.restarts(), 0);
    }

    #[test]
    fn operator_stop_halts_and_start_brings_back() {
        let mut rig = Rig::normal();
        let actions = rig.input(Input::Stop);
        assert_eq!(
            actions,
            vec![
                report(State::ToStop, 0),
                Action::RunStop { timeout: 25 * S }
            ]
        );
        assert_eq!(
            rig.input(Input::StopResult(Outcome::Ok)),
            vec![report(State::Unset, 0)]
        );
        assert!(!rig.app.monitored());
        assert_eq!(rig.at(10_000), vec![], "a stopped app is not monitored");
        rig.input(Input::Start);
        rig.input(Input::StartResult(Outcome::Ok));
        assert_eq!(rig.app.state(), State::Normal);
        assert!(rig.app.monitored());
    }

    #[test]
    fn operator_start_of_a_healthy_app_runs_no_start_script() {
        let mut rig = Rig::normal();
        rig.monitor(30, Outcome::Failed);
        assert_eq!(rig.app.state(), State::Failing);
        let actions = rig.input(Input::Start);
        assert_eq!(actions, vec![], "no start script, no state change yet");
        assert_eq!(rig.app.monitor_failures(), 0);
        assert_eq!(rig.app.poll_timeout(), Some(rig.now), "checked at once");
        let actions = rig.monitor(40, Outcome::Ok);
        assert_eq!(actions, vec![report(State::Normal, 0)]);
        // The next failure is an ordinary one again.
        assert_eq!(
            rig.monitor(70, Outcome::Failed),
            vec![report(State::Failing, 0)]
        );
    }

    #[test]
    fn operator_start_of_an_app_believed_running_but_down_starts_it() {
        let mut rig = Rig::normal();
        rig.input(Input::Suspend);
        rig.input(Input::Start);
        assert!(rig.app.monitored(), "Start resumes monitoring");
        let actions = rig.monitor(40, Outcome::Failed);
        assert_eq!(
            actions,
            vec![
                report(State::ToStart, 0),
                Action::RunStart { timeout: 25 * S }
            ]
        );
        rig.input(Input::StartResult(Outcome::Ok));
        assert_eq!(rig.app.state(), State::Normal);
        assert_eq!(rig.app.restarts(), 0, "an operator start is no restart");
    }

    #[test]
    fn operator_stop_during_start_waits_for_the_start_script() {
        let mut rig = Rig::normal();
        rig.input(Input::Stop);
        rig.input(Input::StopResult(Outcome::Ok));
        rig.input(Input::Start);
        // Stop while the start script runs: no stop until it returns.
        assert_eq!(rig.input(Input::Stop), vec![report(State::ToStop, 0)]);
        assert_eq!(
            rig.input(Input::StartResult(Outcome::Ok)),
            vec![Action::RunStop { timeout: 25 * S }]
        );
        assert_eq!(rig.app.state(), State::ToStop);
    }
}
