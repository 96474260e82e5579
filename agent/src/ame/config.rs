//! Applications and dependencies as the operator declares them, and their validation
//! (seed 004 L16210-16311 for the attributes, L16358-16473 for the dependencies).
//!
//! Validation only: nothing here looks at the scripts on disk (a missing or
//! non-executable script is found by the runtime and makes the application ABNORMAL).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::probe::{ProbeConfig, ProbeConfigError};

/// At most 16 applications per VM (seed 004 L9743).
pub const MAX_APPS: usize = 16;
/// Longest application name.
pub const MAX_NAME_LEN: usize = 64;

/// Default `monitor_period`: 30 s (seed 004 L16240-16241).
pub const DEFAULT_MONITOR_PERIOD: Duration = Duration::from_secs(30);
/// Default `monitor_timeout`. The seed conflicts: the prose says 10 s
/// (seed 004 L16244-16247), the `ksysvmmgr query app` output shows 15 (seed 004 L16172).
/// We take 10: it is the documented default, and a shorter wait leaves more of the
/// 30 s period between the end of one run and the start of the next.
pub const DEFAULT_MONITOR_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `monitor_failure_threshold`: 5 (seed 004 L16173).
pub const DEFAULT_MONITOR_FAILURE_THRESHOLD: u32 = 5;
/// Default `stop_stabilization_time` and `start_stabilization_time`: 25 s
/// (seed 004 L16252, L16261).
pub const DEFAULT_STABILIZATION_TIME: Duration = Duration::from_secs(25);
/// Default `stop_max_failures` and `start_max_failures`: 3 (seed 004 L16257, L16266).
pub const DEFAULT_MAX_FAILURES: u32 = 3;
/// Default `max_restart`: 3 (seed 004 L16270-16272).
pub const DEFAULT_MAX_RESTART: u32 = 3;

/// One monitored application (seed 004 L16210-16311).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    /// Unique name within the VM: 1-64 of `A-Z a-z 0-9 _ - .`, not starting with `-`
    /// or `.` (it becomes part of log lines, file names and command lines).
    pub name: String,
    /// Run every `monitor_period`; exit 0 means healthy. Ignored (and may be empty)
    /// when `probe` is set.
    pub monitor_script: PathBuf,
    /// A built-in probe instead of the monitor script: its `interval` replaces
    /// `monitor_period` and its own timeout and retries bound one monitor run.
    pub probe: Option<ProbeConfig>,
    /// Starts the application (second half of a restart).
    pub start_script: PathBuf,
    /// Stops the application (first half of a restart).
    pub stop_script: PathBuf,
    /// `false`: monitoring suspended (seed `monitored=0`).
    pub monitored: bool,
    /// Time between monitor runs.
    pub monitor_period: Duration,
    /// A monitor run longer than this is killed and counted failed.
    pub monitor_timeout: Duration,
    /// Successive monitor failures before a restart.
    pub monitor_failure_threshold: u32,
    /// A stop script run longer than this is killed and counted failed.
    pub stop_stabilization_time: Duration,
    /// Successive stop failures before the application is deemed unstoppable (FAILURE).
    pub stop_max_failures: u32,
    /// A start script run longer than this is killed and counted failed.
    pub start_stabilization_time: Duration,
    /// Successive start failures before the application is deemed unstartable (FAILURE).
    pub start_max_failures: u32,
    /// Local restart cycles before local restart is deemed insufficient (FAILURE).
    pub max_restart: u32,
    /// A FAILURE of a critical application is escalated to the control plane
    /// (seed 004 L16188-16208).
    pub critical: bool,
}

impl AppConfig {
    /// An application with these scripts and every other attribute at the seed's default.
    pub fn new(
        name: impl Into<String>,
        monitor_script: impl Into<PathBuf>,
        start_script: impl Into<PathBuf>,
        stop_script: impl Into<PathBuf>,
    ) -> Self {
        Self {
            name: name.into(),
            monitor_script: monitor_script.into(),
            probe: None,
            start_script: start_script.into(),
            stop_script: stop_script.into(),
            monitored: true,
            monitor_period: DEFAULT_MONITOR_PERIOD,
            monitor_timeout: DEFAULT_MONITOR_TIMEOUT,
            monitor_failure_threshold: DEFAULT_MONITOR_FAILURE_THRESHOLD,
            stop_stabilization_time: DEFAULT_STABILIZATION_TIME,
            stop_max_failures: DEFAULT_MAX_FAILURES,
            start_stabilization_time: DEFAULT_STABILIZATION_TIME,
            start_max_failures: DEFAULT_MAX_FAILURES,
            max_restart: DEFAULT_MAX_RESTART,
            critical: false,
        }
    }

    /// An application monitored by a built-in probe instead of a monitor script.
    #[cfg(test)]
    pub fn probed(
        name: impl Into<String>,
        probe: ProbeConfig,
        start_script: impl Into<PathBuf>,
        stop_script: impl Into<PathBuf>,
    ) -> Self {
        let mut app = Self::new(name, PathBuf::new(), start_script, stop_script);
        app.probe = Some(probe);
        app
    }

    /// Between two monitor runs: the probe's interval, or `monitor_period`.
    pub fn monitor_interval(&self) -> Duration {
        self.probe
            .as_ref()
            .map_or(self.monitor_period, |p| p.interval)
    }

    /// Check every attribute; the error names the application, the attribute and the rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_name(&self.name)?;
        let app = &self.name;
        if let Some(probe) = &self.probe {
            probe.validate().map_err(|error| ConfigError::Probe {
                app: app.clone(),
                error,
            })?;
        }
        let monitor_script = self
            .probe
            .is_none()
            .then_some(("monitor_script", &self.monitor_script));
        for (attribute, path) in monitor_script.into_iter().chain([
            ("start_script", &self.start_script),
            ("stop_script", &self.stop_script),
        ]) {
            // Relative paths would depend on the agent's working directory.
            if !path.is_absolute() {
                return Err(ConfigError::ScriptNotAbsolute {
                    app: app.clone(),
                    attribute,
                    path: path.clone(),
                });
            }
        }
        for (attribute, value) in [
            ("monitor_period", self.monitor_period),
            ("monitor_timeout", self.monitor_timeout),
            ("stop_stabilization_time", self.stop_stabilization_time),
            ("start_stabilization_time", self.start_stabilization_time),
        ] {
            if value < Duration::from_secs(1) {
                return Err(ConfigError::DurationTooShort {
                    app: app.clone(),
                    attribute,
                });
            }
        }
        // One monitor run must end before the next is due (issue 11, `ksysvmmgr` rule).
        if self.monitor_period <= self.monitor_timeout {
            return Err(ConfigError::PeriodNotAboveTimeout {
                app: app.clone(),
                period: self.monitor_period.as_secs(),
                timeout: self.monitor_timeout.as_secs(),
            });
        }
        for (attribute, value) in [
            ("monitor_failure_threshold", self.monitor_failure_threshold),
            ("stop_max_failures", self.stop_max_failures),
            ("start_max_failures", self.start_max_failures),
            ("max_restart", self.max_restart),
        ] {
            if value == 0 {
                return Err(ConfigError::CountZero {
                    app: app.clone(),
                    attribute,
                });
            }
        }
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), ConfigError> {
    let safe = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if safe {
        Ok(())
    } else {
        Err(ConfigError::BadName {
            name: name.to_owned(),
        })
    }
}

/// The kinds of dependency (seed 004 L16448-16463).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DependencyKind {
    /// The listed applications start in this order.
    StartSequence,
    /// The listed applications stop in this order.
    StopSequence,
    /// `apps[0]` is the parent of `apps[1]`: the parent starts first, the child stops
    /// first, the child follows the parent's stops and restarts.
    ParentChild,
}

impl fmt::Display for DependencyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::StartSequence => "start_sequence",
            Self::StopSequence => "stop_sequence",
            Self::ParentChild => "parent_child",
        })
    }
}

/// One dependency between applications (seed 004 L16358-16473).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// What the list means.
    pub kind: DependencyKind,
    /// The applications, in order (for `ParentChild`: parent, child).
    pub apps: Vec<String>,
    /// For a start sequence: the next application starts only once the previous one
    /// is started and NORMAL; otherwise as soon as the previous one's start has ended
    /// (succeeded, or given up in FAILURE). Ignored by the other kinds
    /// (seed 004 L16468-16473).
    pub strict: bool,
}

/// Every application of the VM and the dependencies between them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmeConfig {
    /// The applications, each with a unique name.
    pub apps: Vec<AppConfig>,
    /// The dependencies between them.
    pub dependencies: Vec<Dependency>,
}

impl AmeConfig {
    /// Check every application and dependency. Refuses more than [`MAX_APPS`]
    /// applications, duplicate names, sequences of fewer than two applications,
    /// parent_child lists that are not exactly two, a child that is itself a parent or
    /// has two parents (one level only, seed 004 L16402), unknown names, and an order
    /// that contradicts itself (a cycle among the start or the stop constraints).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.apps.len() > MAX_APPS {
            return Err(ConfigError::TooManyApps {
                count: self.apps.len(),
            });
        }
        let mut names = BTreeSet::new();
        for app in &self.apps {
            app.validate()?;
            if !names.insert(app.name.as_str()) {
                return Err(ConfigError::DuplicateApp {
                    name: app.name.clone(),
                });
            }
        }
        let mut parent_of: BTreeMap<&str, &str> = BTreeMap::new();
        for dep in &self.dependencies {
            let kind = dep.kind;
            if let Some(name) = dep.apps.iter().find(|n| !names.contains(n.as_str())) {
                return Err(ConfigError::UnknownApp {
                    kind,
                    name: name.clone(),
                });
            }
            let mut seen = BTreeSet::new();
            if let Some(name) = dep.apps.iter().find(|n| !seen.insert(n.as_str())) {
                return Err(ConfigError::RepeatedApp {
                    kind,
                    name: name.clone(),
                });
            }
            match kind {
                DependencyKind::StartSequence | DependencyKind::StopSequence => {
                    if dep.apps.len() < 2 {
                        return Err(ConfigError::SequenceTooShort { kind });
                    }
                }
                DependencyKind::ParentChild => {
                    let [parent, child] = dep.apps.as_slice() else {
                        return Err(ConfigError::ParentChildNotTwo {
                            count: dep.apps.len(),
                        });
                    };
                    if let Some(first) = parent_of.insert(child, parent) {
                        return Err(ConfigError::TwoParents {
                            child: child.clone(),
                            first: first.to_owned(),
                            second: parent.clone(),
                        });
                    }
                }
            }
        }
        for (child, parent) in &parent_of {
            if let Some(grandparent) = parent_of.get(parent) {
                return Err(ConfigError::NestedParentChild {
                    app: (*parent).to_owned(),
                    parent: (*grandparent).to_owned(),
                    child: (*child).to_owned(),
                });
            }
        }
        // Start order: sequence neighbours, parent before child. Stop order: sequence
        // neighbours, child before parent (seed 004 L16460-16462).
        for (order, seq, parent_first) in [
            ("start", DependencyKind::StartSequence, true),
            ("stop", DependencyKind::StopSequence, false),
        ] {
            let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
            for dep in &self.dependencies {
                let pairs = dep.apps.windows(2);
                if dep.kind == seq {
                    for w in pairs {
                        edges.entry(&w[0]).or_default().insert(&w[1]);
                    }
                } else if dep.kind == DependencyKind::ParentChild {
                    for w in pairs {
                        let (a, b) = if parent_first {
                            (&w[0], &w[1])
                        } else {
                            (&w[1], &w[0])
                        };
                        edges.entry(a).or_default().insert(b);
                    }
                }
            }
            if let Some(cycle) = find_cycle(&edges) {
                return Err(ConfigError::Cycle { order, cycle });
            }
        }
        Ok(())
    }
}

/// A cycle in a directed graph, as the list of its nodes with the first repeated at
/// the end, or `None`.
fn find_cycle(edges: &BTreeMap<&str, BTreeSet<&str>>) -> Option<Vec<String>> {
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[at..].iter().map(|n| (*n).to_owned()).collect();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

/// Why an application or dependency was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The name is not 1-64 of the safe characters.
    #[error(
        "application name {name:?} is invalid: 1-{MAX_NAME_LEN} characters of A-Z a-z 0-9 _ - ., not starting with - or ."
    )]
    BadName {
        /// The refused name.
        name: String,
    },
    /// A script path is relative.
    #[error("application {app}: {attribute} = {path:?} must be an absolute path")]
    ScriptNotAbsolute {
        /// Application.
        app: String,
        /// Which script attribute.
        attribute: &'static str,
        /// The refused path.
        path: PathBuf,
    },
    /// A probe attribute out of its rule.
    #[error("application {app}: {error}")]
    Probe {
        /// Application.
        app: String,
        /// Which attribute and rule.
        error: ProbeConfigError,
    },
    /// A duration under a second.
    #[error("application {app}: {attribute} must be at least 1 second")]
    DurationTooShort {
        /// Application.
        app: String,
        /// Which duration attribute.
        attribute: &'static str,
    },
    /// `monitor_period` ≤ `monitor_timeout`.
    #[error(
        "application {app}: monitor_period ({period} s) must exceed monitor_timeout ({timeout} s)"
    )]
    PeriodNotAboveTimeout {
        /// Application.
        app: String,
        /// `monitor_period` in seconds.
        period: u64,
        /// `monitor_timeout` in seconds.
        timeout: u64,
    },
    /// A count of 0.
    #[error("application {app}: {attribute} must be at least 1")]
    CountZero {
        /// Application.
        app: String,
        /// Which count attribute.
        attribute: &'static str,
    },
    /// More than 16 applications.
    #[error("{count} applications: at most {MAX_APPS} per VM")]
    TooManyApps {
        /// How many were given.
        count: usize,
    },
    /// Two applications with one name.
    #[error("application {name} is defined twice: names must be unique")]
    DuplicateApp {
        /// The repeated name.
        name: String,
    },
    /// A dependency names an application that is not defined.
    #[error("{kind} dependency names unknown application {name}")]
    UnknownApp {
        /// Kind of the dependency.
        kind: DependencyKind,
        /// The unknown name.
        name: String,
    },
    /// A dependency lists one application twice.
    #[error("{kind} dependency lists application {name} twice")]
    RepeatedApp {
        /// Kind of the dependency.
        kind: DependencyKind,
        /// The repeated name.
        name: String,
    },
    /// A sequence of fewer than two applications.
    #[error("{kind} dependency_list must have more than one application")]
    SequenceTooShort {
        /// Kind of the dependency.
        kind: DependencyKind,
    },
    /// A parent_child list that is not exactly two applications.
    #[error(
        "parent_child dependency_list must have exactly two applications (parent, child), not {count}"
    )]
    ParentChildNotTwo {
        /// How many were given.
        count: usize,
    },
    /// A child with two parents.
    #[error("parent_child: application {child} has two parents, {first} and {second}")]
    TwoParents {
        /// The child.
        child: String,
        /// Its first parent.
        first: String,
        /// Its second parent.
        second: String,
    },
    /// Parent-child nested two levels deep.
    #[error(
        "parent_child: only one level is allowed, but {app} is the child of {parent} and the parent of {child}"
    )]
    NestedParentChild {
        /// The application in the middle.
        app: String,
        /// Its parent.
        parent: String,
        /// Its child.
        child: String,
    },
    /// The dependencies order the applications in a circle.
    #[error("dependencies make a cycle in the {order} order: {}", cycle.join(" -> "))]
    Cycle {
        /// `start` or `stop`.
        order: &'static str,
        /// The applications of the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn app(name: &str) -> AppConfig {
        AppConfig::new(name, "/opt/a/mon", "/opt/a/start", "/opt/a/stop")
    }

    fn deps(apps: &[&str], deps: Vec<Dependency>) -> AmeConfig {
        AmeConfig {
            apps: apps.iter().map(|n| app(n)).collect(),
            dependencies: deps,
        }
    }

    fn dep(kind: DependencyKind, apps: &[&str]) -> Dependency {
        Dependency {
            kind,
            apps: apps.iter().map(|s| (*s).to_owned()).collect(),
            strict: true,
        }
    }

    #[test]
    fn defaults_are_the_seeds() {
        let a = app("app1");
        assert_eq!(a.monitor_period, Duration::from_secs(30));
        assert_eq!(a.monitor_timeout, Duration::from_secs(10));
        assert_eq!(a.monitor_failure_threshold, 5);
        assert_eq!(a.stop_stabilization_time, Duration::from_secs(25));
        assert_eq!(a.start_stabilization_time, Duration::from_secs(25));
        assert_eq!((a.stop_max_failures, a.start_max_failures), (3, 3));
        assert_eq!(a.max_restart, 3);
        assert!(!a.critical);
        assert!(a.monitored);
        assert_eq!(a.validate(), Ok(()));
    }

    #[test]
    fn period_must_exceed_timeout() {
        let mut a = app("app1");
        a.monitor_timeout = Duration::from_secs(30);
        let err = a.validate().unwrap_err();
        assert!(matches!(
            err,
            ConfigError::PeriodNotAboveTimeout {
                period: 30,
                timeout: 30,
                ..
            }
        ));
        let text = err.to_string();
        assert!(
            text.contains("monitor_period") && text.contains("must exceed monitor_timeout"),
            "{text}"
        );
        a.monitor_timeout = Duration::from_secs(29);
        assert_eq!(a.validate(), Ok(()));
    }

    #[test]
    fn counts_must_be_at_least_one() {
        for attribute in [
            "monitor_failure_threshold",
            "stop_max_failures",
            "start_max_failures",
            "max_restart",
        ] {
            let mut a = app("app1");
            match attribute {
                "monitor_failure_threshold" => a.monitor_failure_threshold = 0,
                "stop_max_failures" => a.stop_max_failures = 0,
                "start_max_failures" => a.start_max_failures = 0,
                _ => a.max_restart = 0,
            }
            let text = a.validate().unwrap_err().to_string();
            assert!(
                text.contains(attribute) && text.contains("at least 1"),
                "{text}"
            );
        }
    }

    #[test]
    fn durations_and_script_paths_are_checked() {
        let mut a = app("app1");
        a.stop_stabilization_time = Duration::ZERO;
        assert!(
            a.validate()
                .unwrap_err()
                .to_string()
                .contains("stop_stabilization_time")
        );
        let mut a = app("app1");
        a.start_script = PathBuf::from("start.sh");
        let text = a.validate().unwrap_err().to_string();
        assert!(
            text.contains("start_script") && text.contains("absolute"),
            "{text}"
        );
    }

    #[test]
    fn a_probed_app_needs_no_monitor_script_and_its_probe_is_checked() {
        use crate::ame::probe::{ProbeConfig, ProbeKind};
        let mut probe = ProbeConfig::new(ProbeKind::Tcp);
        probe.interval = Duration::from_secs(5);
        let mut a = AppConfig::probed("web", probe, "/opt/w/start", "/opt/w/stop");
        assert_eq!(a.validate(), Ok(()));
        assert_eq!(a.monitor_interval(), Duration::from_secs(5));
        if let Some(p) = a.probe.as_mut() {
            p.retries = 0;
        }
        let text = a.validate().unwrap_err().to_string();
        assert!(
            text.starts_with("application web: probe_retries = 0"),
            "{text}"
        );
        // Without a probe the empty monitor_script is refused.
        a.probe = None;
        let text = a.validate().unwrap_err().to_string();
        assert!(text.contains("monitor_script"), "{text}");
    }

    #[test]
    fn names_use_a_safe_charset() {
        for good in ["app1", "db-2", "web_front.v2", &"a".repeat(64)] {
            assert_eq!(app(good).validate(), Ok(()), "{good}");
        }
        for bad in [
            "",
            "a b",
            "a;rm",
            "-x",
            ".hidden",
            "a/b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(
                matches!(app(bad).validate(), Err(ConfigError::BadName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn at_most_sixteen_apps_and_unique_names() {
        let names: Vec<String> = (0..17).map(|i| format!("app{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(deps(&refs[..16], vec![]).validate(), Ok(()));
        assert_eq!(
            deps(&refs, vec![]).validate(),
            Err(ConfigError::TooManyApps { count: 17 })
        );
        assert!(matches!(
            deps(&["a", "a"], vec![]).validate(),
            Err(ConfigError::DuplicateApp { .. })
        ));
    }

    #[test]
    fn dependency_shapes() {
        use DependencyKind::*;
        let ok = deps(
            &["a", "b", "c", "d", "e"],
            vec![
                dep(StartSequence, &["a", "b", "c"]),
                dep(StopSequence, &["a", "b", "c"]),
                dep(ParentChild, &["d", "e"]),
            ],
        );
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(
            deps(&["a"], vec![dep(StartSequence, &["a"])]).validate(),
            Err(ConfigError::SequenceTooShort {
                kind: StartSequence
            })
        );
        assert_eq!(
            deps(&["a"], vec![dep(StopSequence, &["a"])]).validate(),
            Err(ConfigError::SequenceTooShort { kind: StopSequence })
        );
        assert_eq!(
            deps(&["a", "b", "c"], vec![dep(ParentChild, &["a", "b", "c"])]).validate(),
            Err(ConfigError::ParentChildNotTwo { count: 3 })
        );
        let err = deps(&["a", "b"], vec![dep(StartSequence, &["a", "x"])])
            .validate()
            .unwrap_err();
        assert_eq!(
            err,
            ConfigError::UnknownApp {
                kind: StartSequence,
                name: "x".into()
            }
        );
        assert!(err.to_string().contains("unknown application x"));
        assert!(matches!(
            deps(&["a", "b"], vec![dep(StopSequence, &["a", "b", "a"])]).validate(),
            Err(ConfigError::RepeatedApp { .. })
        ));
        // One level only: b cannot be both a child and a parent.
        assert!(matches!(
            deps(
                &["a", "b", "c"],
                vec![dep(ParentChild, &["a", "b"]), dep(ParentChild, &["b", "c"])]
            )
            .validate(),
            Err(ConfigError::NestedParentChild { .. })
        ));
        assert!(matches!(
            deps(
                &["a", "b", "c"],
                vec![dep(ParentChild, &["a", "c"]), dep(ParentChild, &["b", "c"])]
            )
            .validate(),
            Err(ConfigError::TwoParents { .. })
        ));
    }

    #[test]
    fn cycles_are_refused_and_named() {
        use DependencyKind::*;
        let err = deps(
            &["a", "b", "c"],
            vec![
                dep(StartSequence, &["a", "b", "c"]),
                dep(StartSequence, &["c", "a"]),
            ],
        )
        .validate()
        .unwrap_err();
        assert_eq!(
            err,
            ConfigError::Cycle {
                order: "start",
                cycle: vec!["a".into(), "b".into(), "c".into(), "a".into()]
            }
        );
        assert!(
            err.to_string().contains("start order: a -> b -> c -> a"),
            "{err}"
        );
        // The parent starts before the child, so a start sequence child-first is a cycle.
        let err = deps(
            &["p", "c"],
            vec![
                dep(ParentChild, &["p", "c"]),
                dep(StartSequence, &["c", "p"]),
            ],
        )
        .validate()
        .unwrap_err();
        assert!(
            matches!(err, ConfigError::Cycle { order: "start", .. }),
            "{err}"
        );
        // The child stops before the parent, so a stop sequence parent-first is a cycle.
        let err = deps(
            &["p", "c"],
            vec![
                dep(ParentChild, &["p", "c"]),
                dep(StopSequence, &["p", "c"]),
            ],
        )
        .validate()
        .unwrap_err();
        assert!(
            matches!(err, ConfigError::Cycle { order: "stop", .. }),
            "{err}"
        );
        // Same list as start and stop sequence is no cycle: two different orders.
        assert_eq!(
            deps(
                &["a", "b"],
                vec![
                    dep(StartSequence, &["a", "b"]),
                    dep(StopSequence, &["b", "a"])
                ]
            )
            .validate(),
            Ok(())
        );
    }
}
