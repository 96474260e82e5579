//! The AME service: one thread that drives the [`Engine`] on the real clock, carries
//! out its actions (scripts, probes), feeds their results back, logs every state change
//! with its reason, and publishes every application's status with a report generation.
//!
//! The thread never blocks on a script or a probe: each script run has a thread of its
//! own that runs it to its end ([`run::run`]) and each probe attempt one that makes the
//! attempt (bounded by the probe's timeout); both send their result back over the
//! service's channel. The service thread sleeps until the engine's next deadline, a
//! probe's retry, an operator's request or a result.
//!
//! Status: after every round, the applications' [`AppStatus`] are rebuilt; when any
//! field of any of them changed (or an application came or went), the generation grows
//! by one and the `on_change` callback runs (the runtime rings the doorbell with it).
//!
//! `detail` says why the application is in its state: empty when NORMAL; the last
//! failure while FAILING, stopping or starting (`monitor script: exit status 1: …`,
//! `never came up: cannot connect: …`, `lost after first success: …`); the reason and
//! the last failure in FAILURE and ABNORMAL; the operator's action after a command.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hvha_appreport::{AppState, AppStatus, MAX_DETAIL, MonitorKind};
use tracing::{debug, info, warn};

use super::config::{AmeConfig, AppConfig, ConfigError};
use super::engine::{AppAction, Engine};
use super::machine::{Action, Input, Outcome, Script, State};
use super::probe::{self, ProbeConfig, ProbeError};
use super::run::{self, KILL_GRACE, RunningGroups, ScriptRun, Unusable};

/// An operator's action on one application (`Some(name)`) or on every one (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorCommand {
    /// Suspend monitoring.
    Suspend(Option<String>),
    /// Resume monitoring.
    Resume(Option<String>),
    /// Start (also clears FAILURE and ABNORMAL).
    Start(Option<String>),
    /// Stop and suspend monitoring.
    Stop(Option<String>),
}

impl OperatorCommand {
    fn parts(&self) -> (Option<&str>, Input, &'static str) {
        match self {
            Self::Suspend(a) => (a.as_deref(), Input::Suspend, "suspend"),
            Self::Resume(a) => (a.as_deref(), Input::Resume, "resume"),
            Self::Start(a) => (a.as_deref(), Input::Start, "start"),
            Self::Stop(a) => (a.as_deref(), Input::Stop, "stop"),
        }
    }
}

/// Why an operator's request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmeError {
    /// No application of that name.
    #[error("no application named {name}")]
    UnknownApp {
        /// The name asked for.
        name: String,
    },
    /// The AME thread has stopped.
    #[error("the application monitoring engine is not running")]
    NotRunning,
}

type OnChange = Arc<dyn Fn() + Send + Sync>;

/// The engine's counters of one application, beyond its [`AppStatus`]: what
/// `vmmd ctl status` shows as RESULT, FAIL, STOP and START (seed 004 L9477-9481).
/// Not part of the report: they change on every run and ring no doorbell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCounters {
    /// The application.
    pub name: String,
    /// How the last monitor run ended (a probe run: after its retries); `None`
    /// before the first.
    pub last_monitor: Option<Outcome>,
    /// Successive failed monitor runs (against `monitor_failure_threshold`).
    pub monitor_failures: u32,
    /// Successive failed stop runs (against `stop_max_failures`).
    pub stop_failures: u32,
    /// Successive failed start runs (against `start_max_failures`).
    pub start_failures: u32,
}

struct Shared {
    tx: Sender<Event>,
    status: Mutex<(u64, Vec<AppStatus>)>,
    counters: Mutex<Vec<AppCounters>>,
    config: Mutex<AmeConfig>,
    on_change: Mutex<Option<OnChange>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A handle on the AME: configuration, operator commands, status. Cheap to clone.
#[derive(Clone)]
pub struct AmeHandle {
    shared: Arc<Shared>,
}

impl AmeHandle {
    /// Replace the whole configuration (validated here again). Applications whose name
    /// and monitoring attributes (all but `critical`) are unchanged keep their state
    /// and counters; the others start afresh. Returns once the AME applied it.
    pub fn set_config(&self, config: AmeConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let (tx, rx) = mpsc::channel();
        if self
            .shared
            .tx
            .send(Event::SetConfig(Box::new(config), tx))
            .is_ok()
        {
            // The thread's answer: the engine's own validation (the same rules).
            if let Ok(result) = rx.recv() {
                return result;
            }
        }
        Ok(())
    }

    /// The configuration in force.
    pub fn config(&self) -> AmeConfig {
        lock(&self.shared.config).clone()
    }

    /// An operator's action. Unknown name → an error naming it.
    pub fn command(&self, cmd: OperatorCommand) -> Result<(), AmeError> {
        let (tx, rx) = mpsc::channel();
        self.shared
            .tx
            .send(Event::Command(cmd, tx))
            .map_err(|_| AmeError::NotRunning)?;
        rx.recv().map_err(|_| AmeError::NotRunning)?
    }

    /// The report generation and every application's status. The generation starts
    /// at 1 and grows whenever any field of any status changes.
    pub fn status(&self) -> (u64, Vec<AppStatus>) {
        lock(&self.shared.status).clone()
    }

    /// Every application's counters, as of the last round.
    pub fn counters(&self) -> Vec<AppCounters> {
        lock(&self.shared.counters).clone()
    }

    /// Called from the AME thread after each round in which the generation changed.
    pub fn set_on_change(&self, f: Box<dyn Fn() + Send + Sync>) {
        *lock(&self.shared.on_change) = Some(Arc::from(f));
    }
}

/// The AME thread.
pub struct Ame {
    handle: AmeHandle,
    thread: Option<JoinHandle<()>>,
}

impl Ame {
    /// Validate `config` and start monitoring it.
    pub fn spawn(config: AmeConfig) -> std::io::Result<Ame> {
        Self::spawn_with(config, KILL_GRACE)
    }

    fn spawn_with(config: AmeConfig, grace: Duration) -> std::io::Result<Ame> {
        let now = Instant::now();
        let engine = Engine::new(&config, now)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            tx: tx.clone(),
            status: Mutex::new((1, Vec::new())),
            counters: Mutex::new(Vec::new()),
            config: Mutex::new(config.clone()),
            on_change: Mutex::new(None),
        });
        let mut service = Service {
            engine,
            apps: BTreeMap::new(),
            config,
            tx,
            shared: shared.clone(),
            groups: Arc::new(RunningGroups::default()),
            grace,
            next_epoch: 0,
        };
        service.adopt_apps(&[]);
        // Generation 1 is the first status, every application UNSET.
        let first = service.statuses();
        lock(&shared.status).1 = first;
        *lock(&shared.counters) = service.counters();
        let thread = std::thread::Builder::new()
            .name("ame".to_owned())
            .spawn(move || service.run(&rx))?;
        Ok(Ame {
            handle: AmeHandle { shared },
            thread: Some(thread),
        })
    }

    /// A handle for the runtime and the ctl server.
    pub fn handle(&self) -> AmeHandle {
        self.handle.clone()
    }

    /// Stop the thread and kill the process groups of the scripts running now. Stop
    /// scripts are not run: the applications keep running while the agent is away.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Ame {
    fn drop(&mut self) {
        let _ = self.handle.shared.tx.send(Event::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

enum Event {
    SetConfig(Box<AmeConfig>, Sender<Result<(), ConfigError>>),
    Command(OperatorCommand, Sender<Result<(), AmeError>>),
    ScriptDone {
        app: String,
        epoch: u64,
        run: u64,
        script: Script,
        timeout: Duration,
        result: Result<run::Finished, Unusable>,
    },
    ProbeDone {
        app: String,
        epoch: u64,
        run: u64,
        result: Result<(), ProbeError>,
    },
    Shutdown,
}

/// One application's runtime side.
struct AppRun {
    /// Results of runs started under another epoch (before a reconfiguration that
    /// replaced the application) are dropped.
    epoch: u64,
    /// The current monitor run; results of an abandoned one are dropped.
    monitor_run: u64,
    /// Attempts made in the current probe run.
    attempts: u32,
    /// The next attempt of the current probe run, after a failed one.
    retry_at: Option<Instant>,
    /// A monitor run has succeeded since monitoring began or the last start.
    ever_up: bool,
    since_ms: u64,
    detail: String,
    /// The last failed run, for FAILURE's detail.
    last_failure: String,
    /// How the last monitor run ended.
    last_monitor: Option<Outcome>,
}

impl AppRun {
    fn new(epoch: u64) -> Self {
        Self {
            epoch,
            monitor_run: 0,
            attempts: 0,
            retry_at: None,
            ever_up: false,
            since_ms: now_ms(),
            detail: String::new(),
            last_failure: String::new(),
            last_monitor: None,
        }
    }
}

struct Service {
    engine: Engine,
    apps: BTreeMap<String, AppRun>,
    config: AmeConfig,
    tx: Sender<Event>,
    shared: Arc<Shared>,
    groups: Arc<RunningGroups>,
    grace: Duration,
    next_epoch: u64,
}

/// With nothing due, wake this often anyway (a cheap safety net).
const IDLE_WAKE: Duration = Duration::from_secs(60);

impl Service {
    fn run(mut self, rx: &Receiver<Event>) {
        info!(
            apps = self.config.apps.len(),
            "application monitoring engine started"
        );
        loop {
            let now = Instant::now();
            let wake = self
                .engine
                .poll_timeout()
                .into_iter()
                .chain(self.apps.values().filter_map(|a| a.retry_at))
                .min()
                .map_or(IDLE_WAKE, |at| at.saturating_duration_since(now));
            let mut events = Vec::new();
            match rx.recv_timeout(wake) {
                Ok(ev) => events.push(ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            events.extend(rx.try_iter());
            let mut stop = false;
            for ev in events {
                stop |= self.handle(ev);
            }
            if stop {
                break;
            }
            let now = Instant::now();
            self.engine.handle_tick(now);
            self.retry_probes(now);
            self.carry_out();
            self.publish();
        }
        self.groups.kill_all();
        info!("application monitoring engine stopped");
    }

    /// `true` on shutdown.
    fn handle(&mut self, ev: Event) -> bool {
        let now = Instant::now();
        match ev {
            Event::Shutdown => return true,
            // The status the caller reads next already shows the change.
            Event::SetConfig(config, reply) => {
                let result = self.reconfigure(*config, now);
                self.carry_out();
                self.publish();
                let _ = reply.send(result);
            }
            Event::Command(cmd, reply) => {
                let result = self.command(&cmd, now);
                self.carry_out();
                self.publish();
                let _ = reply.send(result);
            }
            Event::ScriptDone {
                app,
                epoch,
                run,
                script,
                timeout,
                result,
            } => self.script_done(&app, epoch, run, script, timeout, result, now),
            Event::ProbeDone {
                app,
                epoch,
                run,
                result,
            } => self.probe_done(&app, epoch, run, result, now),
        }
        false
    }

    fn reconfigure(&mut self, config: AmeConfig, now: Instant) -> Result<(), ConfigError> {
        let kept = self.engine.reconfigure(&config, now)?;
        info!(
            apps = config.apps.len(),
            kept = kept.len(),
            "application configuration replaced"
        );
        *lock(&self.shared.config) = config.clone();
        self.config = config;
        self.apps.retain(|name, _| kept.contains(name));
        self.adopt_apps(&kept);
        Ok(())
    }

    /// An `AppRun` for every configured application not in `kept`.
    fn adopt_apps(&mut self, kept: &[String]) {
        for app in &self.config.apps {
            if !kept.contains(&app.name) {
                self.next_epoch += 1;
                self.apps
                    .insert(app.name.clone(), AppRun::new(self.next_epoch));
            }
        }
    }

    fn command(&mut self, cmd: &OperatorCommand, now: Instant) -> Result<(), AmeError> {
        let (target, input, verb) = cmd.parts();
        let detail = match input {
            Input::Suspend => "monitoring suspended by the operator",
            Input::Resume => "monitoring resumed by the operator",
            Input::Start => "started by the operator",
            _ => "stopped by the operator",
        };
        let names: Vec<String> = match target {
            Some(name) => {
                if self.engine.app(name).is_none() {
                    return Err(AmeError::UnknownApp {
                        name: name.to_owned(),
                    });
                }
                self.engine.handle(now, name, input.clone());
                vec![name.to_owned()]
            }
            None => {
                self.engine.handle_every(now, &input);
                self.config.apps.iter().map(|a| a.name.clone()).collect()
            }
        };
        for name in &names {
            info!(app = %name, command = verb, "operator command");
            if let Some(run) = self.apps.get_mut(name) {
                run.detail = detail.to_owned();
                if matches!(input, Input::Resume | Input::Start) {
                    // Monitoring begins again: "never came up" counts from here.
                    run.ever_up = false;
                }
            }
        }
        Ok(())
    }

    fn app_config(&self, name: &str) -> Option<AppConfig> {
        self.engine.app(name).map(|a| a.config().clone())
    }

    /// Carry out what the engine asks.
    fn carry_out(&mut self) {
        while let Some(AppAction { app, action }) = self.engine.poll_action() {
            let Some(config) = self.app_config(&app) else {
                continue;
            };
            match action {
                Action::RunMonitor { timeout } => match &config.probe {
                    Some(probe) => self.start_probe_run(&app, probe),
                    None => self.spawn_script(&config, Script::Monitor, timeout),
                },
                Action::RunStop { timeout } => {
                    self.cancel_probe_run(&app);
                    // A monitor the stop abandoned (the engine ignores its result)
                    // must not hold on to the application while it is stopped.
                    if self.groups.kill_monitor(&app) {
                        info!(app = %app, "abandoned monitor script killed before the stop");
                    }
                    self.spawn_script(&config, Script::Stop, timeout);
                }
                Action::RunStart { timeout } => {
                    self.cancel_probe_run(&app);
                    if let Some(run) = self.apps.get_mut(&app) {
                        run.ever_up = false;
                    }
                    self.spawn_script(&config, Script::Start, timeout);
                }
                Action::ReportState {
                    state,
                    restarts,
                    reason,
                } => self.state_changed(&config, state, restarts, reason),
            }
        }
    }

    fn state_changed(
        &mut self,
        config: &AppConfig,
        state: State,
        restarts: u32,
        reason: Option<String>,
    ) {
        let Some(run) = self.apps.get_mut(&config.name) else {
            return;
        };
        run.since_ms = now_ms();
        match (&reason, state) {
            (Some(reason), _) if !run.last_failure.is_empty() && state == State::Failure => {
                run.detail = format!("{reason}; last failure: {}", run.last_failure);
            }
            (Some(reason), _) => run.detail = reason.clone(),
            (None, State::Normal) => run.detail.clear(),
            // The failure or command that caused the change has set the detail.
            (None, _) => {}
        }
        let app = config.name.as_str();
        let detail = run.detail.as_str();
        match state {
            State::Failure | State::Abnormal => {
                warn!(app, %state, restarts, max_restart = config.max_restart, critical = config.critical, reason = detail, "application state changed");
            }
            State::Failing | State::ToStop => {
                warn!(app, %state, restarts, reason = detail, "application state changed");
            }
            _ => info!(app, %state, restarts, reason = detail, "application state changed"),
        }
    }

    fn spawn_script(&mut self, config: &AppConfig, script: Script, timeout: Duration) {
        let Some(run) = self.apps.get_mut(&config.name) else {
            return;
        };
        if script == Script::Monitor {
            run.monitor_run += 1;
        }
        let (epoch, run_id) = (run.epoch, run.monitor_run);
        let path = match script {
            Script::Monitor => config.monitor_script.clone(),
            Script::Start => config.start_script.clone(),
            Script::Stop => config.stop_script.clone(),
        };
        debug!(app = %config.name, action = run::action_name(script), path = %path.display(), "running script");
        let app = config.name.clone();
        let script_path = path.clone();
        let tx = self.tx.clone();
        let groups = self.groups.clone();
        let grace = self.grace;
        let spawned = std::thread::Builder::new()
            .name(format!("ame-{}", run::action_name(script)))
            .spawn(move || {
                let result = run::run(&ScriptRun {
                    app: &app,
                    script,
                    path: &path,
                    timeout,
                    grace,
                    groups: Some(&groups),
                });
                let _ = tx.send(Event::ScriptDone {
                    app,
                    epoch,
                    run: run_id,
                    script,
                    timeout,
                    result,
                });
            });
        if let Err(e) = spawned {
            // No thread: count it as a failed run rather than wait for ever.
            warn!(app = %config.name, error = %e, "cannot start a thread to run a script");
            let _ = self.tx.send(Event::ScriptDone {
                app: config.name.clone(),
                epoch,
                run: run_id,
                script,
                timeout,
                result: Err(Unusable::Spawn {
                    path: script_path,
                    error: format!("no thread: {e}"),
                }),
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn script_done(
        &mut self,
        app: &str,
        epoch: u64,
        run_id: u64,
        script: Script,
        timeout: Duration,
        result: Result<run::Finished, Unusable>,
        now: Instant,
    ) {
        let Some(run) = self.apps.get_mut(app) else {
            return;
        };
        if run.epoch != epoch || (script == Script::Monitor && run.monitor_run != run_id) {
            debug!(
                app,
                action = run::action_name(script),
                "result of an abandoned run dropped"
            );
            return;
        }
        let action = run::action_name(script);
        let input = match result {
            Err(unusable) => {
                let reason = unusable.to_string();
                run.last_failure = format!("{action} script: {reason}");
                Input::ScriptUnusable { script, reason }
            }
            Ok(finished) => {
                let summary = finished.summary(timeout);
                debug!(app, action, pid = finished.pid, output_bytes = finished.output_len, elapsed_ms = u64::try_from(finished.elapsed.as_millis()).unwrap_or(u64::MAX), result = %summary, "script ended");
                if finished.outcome == Outcome::Ok {
                    if script == Script::Monitor {
                        run.ever_up = true;
                    }
                } else {
                    let failure = match script {
                        Script::Monitor => {
                            up_or_never(run.ever_up, &format!("monitor script: {summary}"))
                        }
                        _ => format!("{action} script: {summary}"),
                    };
                    info!(app, action, result = %failure, "script failed");
                    run.last_failure = failure.clone();
                    run.detail = failure;
                }
                match script {
                    Script::Monitor => {
                        run.last_monitor = Some(finished.outcome);
                        self.monitor_verdict(now, app, finished.outcome);
                        return;
                    }
                    Script::Stop => Input::StopResult(finished.outcome),
                    Script::Start => Input::StartResult(finished.outcome),
                }
            }
        };
        self.engine.handle(now, app, input);
    }

    fn start_probe_run(&mut self, app: &str, probe: &ProbeConfig) {
        let Some(run) = self.apps.get_mut(app) else {
            return;
        };
        run.monitor_run += 1;
        run.attempts = 0;
        run.retry_at = None;
        self.attempt(app, probe);
    }

    fn cancel_probe_run(&mut self, app: &str) {
        if let Some(run) = self.apps.get_mut(app) {
            run.monitor_run += 1;
            run.retry_at = None;
        }
    }

    /// Start the retries that are due.
    fn retry_probes(&mut self, now: Instant) {
        let due: Vec<String> = self
            .apps
            .iter()
            .filter(|(_, r)| r.retry_at.is_some_and(|at| at <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for app in due {
            if let Some(run) = self.apps.get_mut(&app) {
                run.retry_at = None;
            }
            if let Some(probe) = self.app_config(&app).and_then(|c| c.probe) {
                self.attempt(&app, &probe);
            }
        }
    }

    fn attempt(&mut self, app: &str, probe: &ProbeConfig) {
        let Some(run) = self.apps.get_mut(app) else {
            return;
        };
        run.attempts += 1;
        let (epoch, run_id) = (run.epoch, run.monitor_run);
        let tx = self.tx.clone();
        let name = app.to_owned();
        let probe = probe.clone();
        let spawned = std::thread::Builder::new()
            .name("ame-probe".to_owned())
            .spawn(move || {
                let result = probe::attempt(&probe);
                let _ = tx.send(Event::ProbeDone {
                    app: name,
                    epoch,
                    run: run_id,
                    result,
                });
            });
        if let Err(e) = spawned {
            let _ = self.tx.send(Event::ProbeDone {
                app: app.to_owned(),
                epoch,
                run: run_id,
                result: Err(ProbeError::Io(format!("no thread for the probe: {e}"))),
            });
        }
    }

    fn probe_done(
        &mut self,
        app: &str,
        epoch: u64,
        run_id: u64,
        result: Result<(), ProbeError>,
        now: Instant,
    ) {
        let Some(probe) = self.app_config(app).and_then(|c| c.probe) else {
            return;
        };
        let Some(run) = self.apps.get_mut(app) else {
            return;
        };
        if run.epoch != epoch || run.monitor_run != run_id {
            return;
        }
        let outcome = match result {
            Ok(()) => {
                run.ever_up = true;
                Outcome::Ok
            }
            Err(error) if run.attempts <= probe.retries => {
                debug!(app, attempt = run.attempts, retries = probe.retries, %error, "probe attempt failed; retrying");
                run.retry_at = Some(now + probe.retry_wait);
                return;
            }
            Err(error) => {
                let failure = up_or_never(
                    run.ever_up,
                    &format!(
                        "{} probe of {}:{} failed {} times: {error}",
                        probe.kind.name(),
                        probe.server,
                        probe.port,
                        run.attempts
                    ),
                );
                info!(app, result = %failure, "probe failed");
                run.last_failure = failure.clone();
                run.detail = failure;
                Outcome::Failed
            }
        };
        run.last_monitor = Some(outcome);
        self.monitor_verdict(now, app, outcome);
    }

    /// Hand a monitor run's outcome to the engine and log what it decided, and why.
    fn monitor_verdict(&mut self, now: Instant, app: &str, outcome: Outcome) {
        let before = self.engine.app(app).map(|a| a.state());
        self.engine.handle(now, app, Input::MonitorResult(outcome));
        if outcome == Outcome::Ok {
            return;
        }
        let Some(a) = self.engine.app(app) else {
            return;
        };
        let c = a.config();
        let (threshold, restarts, max_restart) =
            (c.monitor_failure_threshold, a.restarts(), c.max_restart);
        match (before, a.state()) {
            (_, State::Failing) => info!(
                app,
                "monitor failed {} of {threshold} times in a row: restart at {threshold}",
                a.monitor_failures()
            ),
            (Some(State::Unset), State::ToStart) => info!(
                app,
                "down at its first check: starting it (not counted as a restart)"
            ),
            (_, State::ToStop) => warn!(
                app,
                "monitor failed {threshold} times in a row: restart {} of max_restart {max_restart}",
                restarts + 1
            ),
            (_, State::Failure) => warn!(
                app,
                "monitor failed {threshold} times in a row after {restarts} restarts (max_restart {max_restart}): local restart insufficient"
            ),
            _ => {}
        }
    }

    fn statuses(&self) -> Vec<AppStatus> {
        self.engine
            .apps()
            .iter()
            .map(|app| {
                let c = app.config();
                let run = self.apps.get(&c.name);
                AppStatus {
                    name: c.name.clone(),
                    state: app_state(app.state()),
                    critical: c.critical,
                    monitored: app.monitored(),
                    restarts: app.restarts(),
                    max_restart: c.max_restart,
                    monitor: match c.probe.as_ref().map(|p| &p.kind) {
                        None => MonitorKind::Script,
                        Some(probe::ProbeKind::Http(_)) => MonitorKind::Http,
                        Some(probe::ProbeKind::Smtp) => MonitorKind::Smtp,
                        Some(probe::ProbeKind::Tcp) => MonitorKind::Tcp,
                    },
                    since_ms: run.map_or(0, |r| r.since_ms),
                    detail: run.map_or_else(String::new, |r| bounded(&r.detail)),
                }
            })
            .collect()
    }

    fn counters(&self) -> Vec<AppCounters> {
        self.engine
            .apps()
            .iter()
            .map(|app| AppCounters {
                name: app.config().name.clone(),
                last_monitor: self
                    .apps
                    .get(&app.config().name)
                    .and_then(|r| r.last_monitor),
                monitor_failures: app.monitor_failures(),
                stop_failures: app.stop_failures(),
                start_failures: app.start_failures(),
            })
            .collect()
    }

    /// A new generation if anything changed, and the callback.
    fn publish(&mut self) {
        *lock(&self.shared.counters) = self.counters();
        let apps = self.statuses();
        let changed = {
            let mut status = lock(&self.shared.status);
            if status.1 == apps {
                false
            } else {
                status.0 += 1;
                status.1 = apps;
                true
            }
        };
        if changed {
            let callback = lock(&self.shared.on_change).clone();
            if let Some(f) = callback {
                f();
            }
        }
    }
}

fn up_or_never(ever_up: bool, failure: &str) -> String {
    if ever_up {
        format!("lost after first success: {failure}")
    } else {
        format!("never came up: {failure}")
    }
}

fn app_state(state: State) -> AppState {
    match state {
        State::Unset => AppState::Unset,
        State::Normal => AppState::Normal,
        State::Failing => AppState::Failing,
        State::ToStop => AppState::ToStop,
        State::ToStart => AppState::ToStart,
        State::Failure => AppState::Failure,
        State::Abnormal => AppState::Abnormal,
    }
}

/// At most [`MAX_DETAIL`] bytes, cut at a character boundary.
fn bounded(text: &str) -> String {
    let mut cut = text.len().min(MAX_DETAIL);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_owned()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
