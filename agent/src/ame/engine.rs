//! The engine over all applications of the VM: routes inputs to each application's
//! machine and applies the dependencies across them (seed 004 L16358-16473).
//!
//! Rules:
//! - start_sequence: an application's start waits for the previous one in the list; with
//!   `strict`, until that one is NORMAL, otherwise until it is no longer in TO_START
//!   (its start script has returned, whatever the result).
//! - stop_sequence: an application's stop waits while the previous one in the list is
//!   still in TO_STOP. It orders stops that happen together; it never stops anything.
//! - parent_child: the child's start waits until the parent is NORMAL (a parent in
//!   FAILURE or ABNORMAL therefore keeps the child stopped); when the parent goes to
//!   TO_STOP, a running child is stopped first and then waits in TO_START for the parent
//!   to be NORMAL again, so a restarted parent brings the child back.

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
                if self.apps[parent].state() != State::ToStop {
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
                    self.apps[i].grant_stop();
                    changed = true;
                }
                if self.apps[i].start_pending() && self.may_start(i) {
                    self.apps[i].grant_start();
                    changed = true;
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
