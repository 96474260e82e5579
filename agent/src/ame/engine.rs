//! The engine over all applications of the VM: routes inputs to each application's
//! machine and applies the dependencies across them (seed 004 L16358-16473).
//!
//! Rules:
//! - start_sequence: an application's start waits for the previous one in the list; with
//!   `strict`, until that one is NORMAL, otherwise until it is no longer in TO_START
//!   (its start script has succeeded, or it has given up in FAILURE).
//! - stop_sequence: an application's stop waits while the previous one in the list is
//!   still in TO_STOP. It orders stops that happen together; it never stops anything.
//! - parent_child: the child's start waits until the parent is NORMAL (a parent in
//!   FAILURE or ABNORMAL therefore keeps the child stopped); when the parent goes to
//!   TO_STOP, FAILURE or ABNORMAL ("App1 stops because of any reason, App2 stops",
//!   seed 004 L16407-16408), a running child is stopped (before the parent's own stop)
//!   and then waits in TO_START for the parent to be NORMAL again, so a restarted
//!   parent brings the child back.

use std::collections::VecDeque;
use std::time::Instant;

use super::config::{AmeConfig, ConfigError, DependencyKind};
use super::machine::{Action, App, Input, State};

/// An action for the runtime, with the application it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAction {
    /// The application's name.
    pub app: String,
    /// What to do.
    pub action: Action,
}

/// All applications' machines and the dependencies between them.
#[derive(Debug)]
pub struct Engine {
    apps: Vec<App>,
    /// For each application: the applications whose state gates its start, with
    /// whether the gate needs NORMAL (strict sequence, parent) or only a returned start.
    start_after: Vec<Vec<(usize, bool)>>,
    /// For each application: the applications that must be stopped before it.
    stop_after: Vec<Vec<usize>>,
    /// For each application: its children.
    children: Vec<Vec<usize>>,
    actions: VecDeque<AppAction>,
}

impl Engine {
    /// An engine for a validated configuration; every application starts in UNSET.
    pub fn new(config: &AmeConfig, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let index = |name: &str| config.apps.iter().position(|a| a.name == name);
        let n = config.apps.len();
        let mut start_after = vec![Vec::new(); n];
        let mut stop_after = vec![Vec::new(); n];
        let mut children = vec![Vec::new(); n];
        for dep in &config.dependencies {
            // Validation refused unknown names, so every name has an index.
            let ids: Vec<usize> = dep.apps.iter().filter_map(|a| index(a)).collect();
            for w in ids.windows(2) {
                let (first, second) = (w[0], w[1]);
                match dep.kind {
                    DependencyKind::StartSequence => start_after[second].push((first, dep.strict)),
                    DependencyKind::StopSequence => stop_after[second].push(first),
                    DependencyKind::ParentChild => {
                        start_after[second].push((first, true));
                        stop_after[first].push(second);
                        children[first].push(second);
                    }
                }
            }
        }
        let mut engine = Self {
            apps: config
                .apps
                .iter()
                .map(|c| App::new(c.clone(), now))
                .collect(),
            start_after,
            stop_after,
            children,
            actions: VecDeque::new(),
        };
        engine.settle();
        Ok(engine)
    }

    /// Replace the configuration. An application whose name and every attribute but
    /// `critical` are unchanged keeps its machine (state, counters, a script in
    /// flight); the others start afresh in UNSET. Returns the names kept.
    pub fn reconfigure(
        &mut self,
        config: &AmeConfig,
        now: Instant,
    ) -> Result<Vec<String>, ConfigError> {
        let mut fresh = Engine::new(config, now)?;
        let mut old = std::mem::take(&mut self.apps);
        let mut kept = Vec::new();
        for slot in &mut fresh.apps {
            let same = |a: &App| {
                let (x, y) = (a.config(), slot.config());
                let mut x = x.clone();
                x.critical = y.critical;
                x == *y
            };
            if let Some(i) = old.iter().position(same) {
                let mut app = old.swap_remove(i);
                app.set_critical(slot.config().critical);
                kept.push(app.config().name.clone());
                *slot = app;
            }
        }
        fresh.actions = std::mem::take(&mut self.actions);
        *self = fresh;
        self.settle();
        Ok(kept)
    }

    /// Every application, in the configuration's order.
    pub fn apps(&self) -> &[App] {
        &self.apps
    }

    /// The application of this name.
    pub fn app(&self, name: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.config().name == name)
    }

    /// An input for one application; `false` if no application has that name.
    pub fn handle(&mut self, now: Instant, app: &str, input: Input) -> bool {
        let Some(app) = self.apps.iter_mut().find(|a| a.config().name == app) else {
            return false;
        };
        app.handle(now, input);
        self.settle();
        true
    }

    /// The same input for every application at once, so that the dependencies order
    /// them (an operator stop or start of all applications).
    pub fn handle_every(&mut self, now: Instant, input: &Input) {
        for app in &mut self.apps {
            app.handle(now, input.clone());
        }
        self.settle();
    }

    /// The time passed: run the monitors that are due.
    pub fn handle_tick(&mut self, now: Instant) {
        for app in &mut self.apps {
            app.handle_tick(now);
        }
        self.settle();
    }

    /// When the engine next needs a tick, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.apps.iter().filter_map(App::poll_timeout).min()
    }

    /// The next action for the runtime.
    pub fn poll_action(&mut self) -> Option<AppAction> {
        self.actions.pop_front()
    }

    /// Apply the dependencies until nothing changes, then collect the actions.
    fn settle(&mut self) {
        loop {
            let mut changed = false;
            for parent in 0..self.apps.len() {
                if !matches!(
                    self.apps[parent].state(),
                    State::ToStop | State::Failure | State::Abnormal
                ) {
                    continue;
                }
                for &child in &self.children[parent] {
                    let c = &self.apps[child];
                    let up = matches!(c.state(), State::Normal | State::Failing)
                        || (c.state() == State::Unset && c.monitored());
                    if up {
                        self.apps[child].force_restart();
                        changed = true;
                    }
                }
            }
            for i in 0..self.apps.len() {
                if self.apps[i].stop_pending() && self.may_stop(i) {
                    changed |= self.apps[i].grant_stop();
                }
                if self.apps[i].start_pending() && self.may_start(i) {
                    changed |= self.apps[i].grant_start();
                }
            }
            if !changed {
                break;
            }
        }
        for app in &mut self.apps {
            while let Some(action) = app.poll_action() {
                self.actions.push_back(AppAction {
                    app: app.config().name.clone(),
                    action,
                });
            }
        }
    }

    fn may_stop(&self, i: usize) -> bool {
        self.stop_after[i]
            .iter()
            .all(|&before| self.apps[before].state() != State::ToStop)
    }

    fn may_start(&self, i: usize) -> bool {
        self.start_after[i].iter().all(|&(before, needs_normal)| {
            let state = self.apps[before].state();
            if needs_normal {
                state == State::Normal
            } else {
                state != State::ToStart
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use crate::ame::config::{AppConfig, Dependency};
    use crate::ame::machine::Outcome;

    const S: Duration = Duration::from_secs(1);

    struct Rig {
        engine: Engine,
        t0: Instant,
        now: Instant,
    }

    impl Rig {
        fn new(apps: &[&str], deps: Vec<Dependency>) -> Self {
            let config = AmeConfig {
                apps: apps
                    .iter()
                    .map(|n| AppConfig::new(*n, "/m", "/start", "/stop"))
                    .collect(),
                dependencies: deps,
            };
            let t0 = Instant::now();
            Self {
                engine: Engine::new(&config, t0).unwrap(),
                t0,
                now: t0,
            }
        }
        /// Scripts asked for since the last call, without the reports.
        fn runs(&mut self) -> Vec<(String, &'static str)> {
            std::iter::from_fn(|| self.engine.poll_action())
                .filter_map(|a| {
                    let kind = match a.action {
                        Action::RunMonitor { .. } => "monitor",
                        Action::RunStop { .. } => "stop",
                        Action::RunStart { .. } => "start",
                        Action::ReportState { .. } => return None,
                    };
                    Some((a.app, kind))
                })
                .collect()
        }
        fn at(&mut self, secs: u64) {
            self.now = self.t0 + S * u32::try_from(secs).unwrap();
            self.engine.handle_tick(self.now);
        }
        fn input(&mut self, app: &str, input: Input) {
            assert!(self.engine.handle(self.now, app, input));
        }
        fn state(&self, app: &str) -> State {
            self.engine.app(app).unwrap().state()
        }
        /// Every app's first monitor at t=0 with these results.
        fn boot(&mut self, results: &[(&str, Outcome)]) {
            self.at(0);
            for (app, outcome) in results {
                self.input(app, Input::MonitorResult(*outcome));
            }
        }
    }

    fn dep(kind: DependencyKind, apps: &[&str], strict: bool) -> Dependency {
        Dependency {
            kind,
            apps: apps.iter().map(|s| (*s).to_owned()).collect(),
            strict,
        }
    }

    fn r(app: &str, kind: &'static str) -> (String, &'static str) {
        (app.to_owned(), kind)
    }

    const DOWN: Outcome = Outcome::Failed;
    const UP: Outcome = Outcome::Ok;

    #[test]
    fn without_dependencies_everything_starts_at_once() {
        let mut rig = Rig::new(&["a", "b"], vec![]);
        rig.boot(&[("a", DOWN), ("b", DOWN)]);
        let runs = rig.runs();
        assert!(
            runs.contains(&r("a", "start")) && runs.contains(&r("b", "start")),
            "{runs:?}"
        );
        assert!(
            !rig.engine.handle(rig.now, "zz", Input::Start),
            "unknown app"
        );
    }

    #[test]
    fn strict_start_sequence_waits_for_normal() {
        let seq = dep(DependencyKind::StartSequence, &["a", "b", "c"], true);
        let mut rig = Rig::new(&["a", "b", "c"], vec![seq]);
        rig.boot(&[("c", DOWN), ("b", DOWN), ("a", DOWN)]);
        let runs = rig.runs();
        assert!(runs.contains(&r("a", "start")), "{runs:?}");
        assert!(
            !runs.iter().any(|x| x.0 != "a" && x.1 == "start"),
            "{runs:?}"
        );
        rig.input("a", Input::StartResult(UP));
        assert_eq!(rig.runs(), vec![r("b", "start")]);
        rig.input("b", Input::StartResult(UP));
        assert_eq!(rig.runs(), vec![r("c", "start")]);
    }

    #[test]
    fn strict_sequence_stops_at_an_app_that_cannot_start() {
        let seq = dep(DependencyKind::StartSequence, &["a", "b"], true);
        let mut rig = Rig::new(&["a", "b"], vec![seq]);
        rig.boot(&[("a", DOWN), ("b", DOWN)]);
        rig.runs();
        for _ in 0..3 {
            rig.input("a", Input::StartResult(DOWN));
        }
        assert_eq!(rig.state("a"), State::Failure);
        assert!(!rig.runs().contains(&r("b", "start")));
        assert_eq!(rig.state("b"), State::ToStart);
    }

    #[test]
    fn loose_sequence_starts_the_next_once_the_previous_start_returned() {
        let seq = dep(DependencyKind::StartSequence, &["a", "b"], false);
        let mut rig = Rig::new(&["a", "b"], vec![seq]);
        rig.boot(&[("a", DOWN), ("b", DOWN)]);
        assert!(
            !rig.runs().contains(&r("b", "start")),
            "b waits for a's start"
        );
        for _ in 0..3 {
            rig.input("a", Input::StartResult(DOWN));
        }
        assert_eq!(rig.state("a"), State::Failure);
        let runs = rig.runs();
        assert_eq!(
            runs.last(),
            Some(&r("b", "start")),
            "not strict: a's state does not matter"
        );
        assert_eq!(
            runs.iter().filter(|x| x.0 == "b").count(),
            1,
            "b only after a's last try: {runs:?}"
        );
    }

    #[test]
    fn start_sequence_does_not_hold_a_restart_of_a_later_app_whose_predecessors_are_normal() {
        let seq = dep(DependencyKind::StartSequence, &["a", "b"], true);
        let mut rig = Rig::new(&["a", "b"], vec![seq]);
        rig.boot(&[("a", UP), ("b", UP)]);
        rig.runs();
        for i in 1..=5 {
            rig.at(30 * i);
            rig.input("b", Input::MonitorResult(DOWN));
            rig.input("a", Input::MonitorResult(UP));
        }
        assert_eq!(rig.runs().last(), Some(&r("b", "stop")));
        rig.input("b", Input::StopResult(UP));
        assert_eq!(rig.runs(), vec![r("b", "start")]);
    }

    #[test]
    fn stop_sequence_orders_stops_that_happen_together() {
        let seq = dep(DependencyKind::StopSequence, &["a", "b"], true);
        let mut rig = Rig::new(&["a", "b"], vec![seq]);
        rig.boot(&[("a", UP), ("b", UP)]);
        rig.runs();
        rig.engine.handle_every(rig.now, &Input::Stop);
        assert_eq!(rig.runs(), vec![r("a", "stop")]);
        rig.input("a", Input::StopResult(UP));
        assert_eq!(rig.runs(), vec![r("b", "stop")]);
    }

    #[test]
    fn stop_sequence_holds_a_stop_while_the_previous_app_is_stopping() {
        let seq = dep(DependencyKind::StopSequence, &["a", "b"], true);
        let mut rig = Rig::new(&["a", "b"], vec![seq]);
        rig.boot(&[("a", UP), ("b", UP)]);
        rig.runs();
        rig.input("a", Input::Stop);
        rig.input("b", Input::Stop);
        assert_eq!(rig.runs(), vec![r("a", "stop")]);
        rig.input("a", Input::StopResult(DOWN));
        assert_eq!(rig.runs(), vec![r("a", "stop")], "a retries; b still waits");
        rig.input("a", Input::StopResult(UP));
        assert_eq!(rig.runs(), vec![r("b", "stop")]);
    }

    #[test]
    fn operator_start_of_every_app_follows_the_start_sequence() {
        let seq = dep(DependencyKind::StartSequence, &["b", "a"], true);
        let mut rig = Rig::new(&["a", "b"], vec![seq]);
        rig.boot(&[("a", UP), ("b", UP)]);
        rig.engine.handle_every(rig.now, &Input::Stop);
        rig.input("a", Input::StopResult(UP));
        rig.input("b", Input::StopResult(UP));
        rig.runs();
        rig.engine.handle_every(rig.now, &Input::Start);
        assert_eq!(rig.runs(), vec![r("b", "start")]);
        rig.input("b", Input::StartResult(UP));
        assert_eq!(rig.runs(), vec![r("a", "start")]);
    }

    #[test]
    fn stop_sequence_never_stops_anything_by_itself() {
        let seq = dep(DependencyKind::StopSequence, &["a", "b"], true);
        let mut rig = Rig::new(&["a", "b"], vec![seq]);
        rig.boot(&[("a", UP), ("b", UP)]);
        rig.runs();
        rig.input("a", Input::Stop);
        rig.input("a", Input::StopResult(UP));
        assert_eq!(rig.runs(), vec![r("a", "stop")]);
        assert_eq!(rig.state("b"), State::Normal);
    }

    #[test]
    fn parent_starts_first() {
        let pc = dep(DependencyKind::ParentChild, &["p", "c"], true);
        let mut rig = Rig::new(&["c", "p"], vec![pc]);
        rig.boot(&[("c", DOWN), ("p", DOWN)]);
        assert_eq!(
            rig.runs()
                .iter()
                .filter(|x| x.1 == "start")
                .collect::<Vec<_>>(),
            vec![&r("p", "start")]
        );
        rig.input("p", Input::StartResult(UP));
        assert_eq!(rig.runs(), vec![r("c", "start")]);
    }

    #[test]
    fn child_does_not_start_when_the_parent_cannot() {
        let pc = dep(DependencyKind::ParentChild, &["p", "c"], true);
        let mut rig = Rig::new(&["p", "c"], vec![pc]);
        rig.boot(&[("p", DOWN), ("c", DOWN)]);
        rig.runs();
        for _ in 0..3 {
            rig.input("p", Input::StartResult(DOWN));
        }
        assert_eq!(rig.state("p"), State::Failure);
        assert!(!rig.runs().iter().any(|x| x.0 == "c"));
        // Even an operator start of the child waits for the parent.
        rig.input("c", Input::Start);
        assert!(!rig.runs().contains(&r("c", "start")));
    }

    #[test]
    fn parent_restart_stops_the_child_first_and_restarts_it_after() {
        let pc = dep(DependencyKind::ParentChild, &["p", "c"], true);
        let mut rig = Rig::new(&["p", "c"], vec![pc]);
        rig.boot(&[("p", UP), ("c", UP)]);
        rig.runs();
        for i in 1..=5 {
            rig.at(30 * i);
            rig.input("p", Input::MonitorResult(DOWN));
            rig.input("c", Input::MonitorResult(UP));
        }
        let runs = rig.runs();
        assert_eq!(runs.last(), Some(&r("c", "stop")), "child first: {runs:?}");
        assert!(!runs.contains(&r("p", "stop")), "{runs:?}");
        assert_eq!(rig.state("c"), State::ToStop);
        rig.input("c", Input::StopResult(UP));
        assert_eq!(rig.runs(), vec![r("p", "stop")]);
        assert_eq!(rig.state("c"), State::ToStart, "child waits for the parent");
        rig.input("p", Input::StopResult(UP));
        assert_eq!(rig.runs(), vec![r("p", "start")]);
        rig.input("p", Input::StartResult(UP));
        assert_eq!(rig.runs(), vec![r("c", "start")]);
        rig.input("c", Input::StartResult(UP));
        assert_eq!(rig.state("p"), State::Normal);
        assert_eq!(rig.state("c"), State::Normal);
        assert_eq!(rig.engine.app("p").unwrap().restarts(), 1);
        assert_eq!(
            rig.engine.app("c").unwrap().restarts(),
            0,
            "the child did not fail"
        );
    }

    #[test]
    fn operator_stop_of_the_parent_stops_the_child_until_the_parent_is_back() {
        let pc = dep(DependencyKind::ParentChild, &["p", "c"], true);
        let mut rig = Rig::new(&["p", "c"], vec![pc]);
        rig.boot(&[("p", UP), ("c", UP)]);
        rig.runs();
        rig.input("p", Input::Stop);
        assert_eq!(rig.runs(), vec![r("c", "stop")]);
        rig.input("c", Input::StopResult(UP));
        assert_eq!(rig.runs(), vec![r("p", "stop")]);
        rig.input("p", Input::StopResult(UP));
        assert_eq!(rig.state("p"), State::Unset);
        rig.at(10_000);
        assert!(
            !rig.runs().iter().any(|x| x.1 == "start"),
            "nothing starts on its own"
        );
        rig.input("p", Input::Start);
        assert_eq!(rig.runs(), vec![r("p", "start")]);
        rig.input("p", Input::StartResult(UP));
        assert_eq!(rig.runs(), vec![r("c", "start")]);
    }

    #[test]
    fn a_parent_going_abnormal_or_to_failure_stops_its_child() {
        let pc = dep(DependencyKind::ParentChild, &["p", "c"], true);
        let mut rig = Rig::new(&["p", "c"], vec![pc]);
        rig.boot(&[("p", UP), ("c", UP)]);
        rig.runs();
        rig.at(30);
        rig.input(
            "p",
            Input::ScriptUnusable {
                script: crate::ame::machine::Script::Monitor,
                reason: "/m: no such file".into(),
            },
        );
        assert_eq!(rig.state("p"), State::Abnormal);
        let runs = rig.runs();
        assert!(runs.contains(&r("c", "stop")), "{runs:?}");
        rig.input("c", Input::MonitorResult(UP));
        rig.input("c", Input::StopResult(UP));
        assert_eq!(rig.state("c"), State::ToStart, "waits for its parent");
        rig.at(10_000);
        assert!(!rig.runs().iter().any(|x| x.0 == "c"), "stays stopped");
        // The operator repairs and starts the parent: the child follows.
        rig.input("p", Input::Start);
        assert_eq!(rig.runs(), vec![r("p", "start")]);
        rig.input("p", Input::StartResult(UP));
        assert_eq!(rig.runs(), vec![r("c", "start")]);

        // Local restarts exhausted: the parent goes from FAILING to FAILURE without a
        // stop, and the child is stopped all the same.
        let mut config = AmeConfig {
            apps: vec![
                AppConfig::new("p", "/m", "/start", "/stop"),
                AppConfig::new("c", "/m", "/start", "/stop"),
            ],
            dependencies: vec![dep(DependencyKind::ParentChild, &["p", "c"], true)],
        };
        config.apps[0].max_restart = 1;
        config.apps[0].monitor_failure_threshold = 1;
        let mut rig = Rig {
            engine: Engine::new(&config, rig.t0).unwrap(),
            t0: rig.t0,
            now: rig.t0,
        };
        rig.boot(&[("p", UP), ("c", UP)]);
        rig.at(30);
        rig.input("p", Input::MonitorResult(DOWN));
        rig.input("c", Input::MonitorResult(UP));
        rig.input("c", Input::StopResult(UP));
        rig.input("p", Input::StopResult(UP));
        rig.input("p", Input::StartResult(UP));
        rig.input("c", Input::StartResult(UP));
        assert_eq!(rig.engine.app("p").unwrap().restarts(), 1);
        rig.runs();
        rig.at(1000);
        rig.input("c", Input::MonitorResult(UP));
        rig.input("p", Input::MonitorResult(DOWN));
        assert_eq!(rig.state("p"), State::Failure);
        let runs = rig.runs();
        assert_eq!(runs.last(), Some(&r("c", "stop")), "{runs:?}");
        assert!(!runs.contains(&r("p", "stop")), "{runs:?}");
    }

    #[test]
    fn a_child_stopped_by_the_operator_is_left_alone_when_the_parent_stops() {
        let pc = dep(DependencyKind::ParentChild, &["p", "c"], true);
        let mut rig = Rig::new(&["p", "c"], vec![pc]);
        rig.boot(&[("p", UP), ("c", UP)]);
        rig.input("c", Input::Stop);
        rig.input("c", Input::StopResult(UP));
        rig.runs();
        rig.input("p", Input::Stop);
        assert_eq!(rig.runs(), vec![r("p", "stop")]);
    }

    #[test]
    fn state_changes_are_reported_with_the_app() {
        let mut rig = Rig::new(&["a"], vec![]);
        rig.at(0);
        rig.input("a", Input::MonitorResult(UP));
        let reports: Vec<AppAction> = std::iter::from_fn(|| rig.engine.poll_action())
            .filter(|a| matches!(a.action, Action::ReportState { .. }))
            .collect();
        assert_eq!(
            reports,
            vec![AppAction {
                app: "a".into(),
                action: Action::ReportState {
                    state: State::Normal,
                    restarts: 0,
                    reason: None
                }
            }]
        );
    }

    #[test]
    fn reconfigure_keeps_unchanged_apps_and_resets_changed_ones() {
        let mut rig = Rig::new(&["a", "b", "c"], vec![]);
        rig.boot(&[("a", UP), ("b", UP), ("c", UP)]);
        rig.runs();
        let mut config = AmeConfig {
            apps: ["a", "b", "d"]
                .iter()
                .map(|n| AppConfig::new(*n, "/m", "/start", "/stop"))
                .collect(),
            dependencies: vec![dep(DependencyKind::StartSequence, &["a", "d"], true)],
        };
        config.apps[0].critical = true;
        config.apps[1].monitor_failure_threshold = 2;
        let kept = rig.engine.reconfigure(&config, rig.now).unwrap();
        assert_eq!(kept, vec!["a".to_owned()]);
        assert_eq!(rig.state("a"), State::Normal);
        assert!(rig.engine.app("a").unwrap().config().critical);
        assert_eq!(rig.state("b"), State::Unset, "changed: afresh");
        assert_eq!(rig.state("d"), State::Unset);
        assert!(rig.engine.app("c").is_none(), "removed");
        // The new dependency applies: d's start waits for a only (NORMAL).
        rig.at(1);
        rig.input("d", Input::MonitorResult(DOWN));
        assert!(rig.runs().contains(&r("d", "start")));
        let mut bad = config.clone();
        bad.apps.push(AppConfig::new("a", "/m", "/start", "/stop"));
        assert!(rig.engine.reconfigure(&bad, rig.now).is_err());
        assert_eq!(
            rig.state("a"),
            State::Normal,
            "a refused configuration changes nothing"
        );
    }

    #[test]
    fn engine_refuses_an_invalid_configuration() {
        let config = AmeConfig {
            apps: vec![AppConfig::new("a", "/m", "/start", "/stop")],
            dependencies: vec![dep(DependencyKind::StartSequence, &["a", "b"], true)],
        };
        assert!(matches!(
            Engine::new(&config, Instant::now()),
            Err(ConfigError::UnknownApp { .. })
        ));
    }
}
