//! The applications' configuration file (default `/var/lib/vmmd/apps.toml`, `[ame]
//! apps_file` in the agent's configuration): every application and dependency, read at
//! start and by `vmmd ctl sync`, written by `vmmd ctl` on every change.
//!
//! ```toml
//! # written by vmmd ctl
//! version = 1
//!
//! [[app]]
//! name = "app1"
//! monitored = true
//! monitor_script = "/applic/mon1.sh"
//! monitor_period = 30
//! # ... every attribute, defaults included
//!
//! [[dependency]]
//! dependency_type = "start_sequence"
//! dependency_list = "app1,app2"
//! strict = true
//! ```
//!
//! - Reading: the attributes are those of `vmmd ctl` (one table, [`crate::ctl::attrs`]),
//!   then [`AmeConfig::validate`]; an error names the file, the line and the key. A
//!   missing file is an empty configuration (a first start); a file others may write is
//!   refused (its scripts run as root).
//! - Writing is atomic: the text goes to a temporary file in the same directory
//!   (`.<name>.tmp.<pid>`), is flushed to disk (`fsync`), renamed over the file, and the
//!   directory is flushed, so a crash at any point leaves either the old file or the new
//!   one, never a mix. Leftover temporary files of a crashed writer are removed when the
//!   file is next read. Nothing invalid is ever written: [`Store::save`] validates first.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use hvha_daemon::config::line_of;
use serde::Deserialize;
use toml::Spanned;
use tracing::warn;

use super::config::{AmeConfig, ConfigError};
use crate::ctl::attrs::{self, Value};

/// The file format's version, written as `version = 1`.
pub const FORMAT_VERSION: i64 = 1;
/// Largest file read (16 applications take about 12 KiB).
pub const MAX_FILE_LEN: u64 = 1 << 20;

/// Why the file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file exists but cannot be read.
    #[error("apps file {}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Not TOML, or a key of the wrong type (toml's message names the line).
    #[error("apps file {}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// toml's message.
        message: String,
    },
    /// A value or a rule refused.
    #[error("apps file {}{}: {key}: {message}", path.display(), line.map_or(String::new(), |l| format!(" line {l}")))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The line of the value, when known.
        line: Option<usize>,
        /// Where: `app[1] monitor_period`, `dependency[0]`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The file may be written by others.
    #[error(
        "apps file {}: mode {mode:04o} owner uid {uid}: must be owned by root and not writable by group or others (its scripts run as root): chown root and chmod go-w",
        path.display()
    )]
    Unsafe {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// Its owner.
        uid: u32,
    },
    /// A configuration refused by validation: never written.
    #[error("{0}")]
    Refused(ConfigError),
    /// Writing failed; the file on disk is unchanged.
    #[error("apps file {}: cannot {op}: {source} (the file is unchanged)", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// What failed: `create the directory`, `write`, `rename`…
        op: &'static str,
        /// Why.
        source: io::Error,
    },
}

/// The file as written: the applications and dependencies as tables of attribute
/// values, kept with their places for the messages.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileText {
    version: Option<Spanned<i64>>,
    #[serde(default)]
    app: Vec<BTreeMap<String, Spanned<toml::Value>>>,
    #[serde(default)]
    dependency: Vec<BTreeMap<String, Spanned<toml::Value>>>,
}

/// The applications' file.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// The store at `path` (nothing is opened).
    pub fn new(path: impl Into<PathBuf>) -> Store {
        Store { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read and validate the file; a missing file is an empty configuration. Removes
    /// the temporary files a crashed writer left.
    pub fn load(&self) -> Result<AmeConfig, StoreError> {
        self.remove_leftovers();
        let read = |source| StoreError::Read {
            path: self.path.clone(),
            source,
        };
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(AmeConfig::default()),
            Err(e) => return Err(read(e)),
        };
        let meta = file.metadata().map_err(read)?;
        let euid = rustix::process::geteuid().as_raw();
        if meta.mode() & 0o022 != 0 || (meta.uid() != 0 && meta.uid() != euid) {
            return Err(StoreError::Unsafe {
                path: self.path.clone(),
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
            });
        }
        if meta.len() > MAX_FILE_LEN {
            return Err(read(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} bytes, more than {MAX_FILE_LEN}", meta.len()),
            )));
        }
        let mut text = String::new();
        io::Read::read_to_string(&mut io::Read::take(file, MAX_FILE_LEN), &mut text)
            .map_err(read)?;
        parse(&text).map_err(|e| e.in_file(&self.path))
    }

    /// Validate `config` and write it atomically (temporary file, fsync, rename, fsync
    /// of the directory). An invalid configuration is refused and nothing is written;
    /// on a failure the file keeps its previous content.
    pub fn save(&self, config: &AmeConfig) -> Result<(), StoreError> {
        config.validate().map_err(StoreError::Refused)?;
        let text = render(config);
        // What we write must read back as what we were given.
        match parse(&text) {
            Ok(back) if back == *config => {}
            _ => {
                return Err(StoreError::Write {
                    path: self.path.clone(),
                    op: "render the configuration",
                    source: io::Error::new(io::ErrorKind::InvalidData, "does not read back"),
                });
            }
        }
        self.write_atomically(text.as_bytes())
    }

    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    fn temp_prefix(&self) -> String {
        let name = self
            .path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        format!(".{name}.tmp.")
    }

    /// The temporary file this process writes.
    pub fn temp_path(&self) -> PathBuf {
        self.dir()
            .join(format!("{}{}", self.temp_prefix(), std::process::id()))
    }

    fn write_atomically(&self, bytes: &[u8]) -> Result<(), StoreError> {
        let dir = self.dir().to_owned();
        let fail = |op: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Write { path, op, source }
        };
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(fail("create the directory", &dir))?;
        }
        let tmp = self.temp_path();
        let result = (|| {
            // A leftover of an earlier process with our pid: not ours to keep.
            let _ = fs::remove_file(&tmp);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(fail("create the temporary file", &tmp))?;
            f.write_all(bytes).map_err(fail("write", &tmp))?;
            f.sync_all().map_err(fail("flush (fsync)", &tmp))?;
            drop(f);
            fs::rename(&tmp, &self.path).map_err(fail("rename the temporary file over", &self.path))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        // The rename is durable once the directory is.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(fail("flush (fsync) the directory", &dir))
    }

    fn remove_leftovers(&self) {
        let prefix = self.temp_prefix();
        let Ok(entries) = fs::read_dir(self.dir()) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let path = entry.path();
                match fs::remove_file(&path) {
                    Ok(()) => warn!(
                        file = %path.display(),
                        "removed a temporary apps file left by an interrupted write \
                         (the apps file itself is whole: it is only ever replaced by a rename)"
                    ),
                    Err(e) => {
                        warn!(file = %path.display(), "cannot remove a leftover temporary apps file: {e}")
                    }
                }
            }
        }
    }
}

impl StoreError {
    fn in_file(self, path: &Path) -> StoreError {
        match self {
            StoreError::Syntax { message, .. } => StoreError::Syntax {
                path: path.to_owned(),
                message,
            },
            StoreError::Invalid {
                line, key, message, ..
            } => StoreError::Invalid {
                path: path.to_owned(),
                line,
                key,
                message,
            },
            other => other,
        }
    }
}

fn toml_value(v: &Value) -> String {
    match v {
        Value::Text(s) => toml::Value::String(s.clone()).to_string(),
        Value::Int(n) => n.to_string(),
        Value::Flag(b) => b.to_string(),
    }
}

/// The file's text for `config`: every attribute written, defaults included.
pub fn render(config: &AmeConfig) -> String {
    let mut out = String::from(
        "# vmmd's applications: written by `vmmd ctl` on every change (atomically).\n\
         # A hand edit takes effect at `vmmd ctl sync` or at the next start of vmmd.\n",
    );
    let _ = writeln!(out, "version = {FORMAT_VERSION}");
    for app in &config.apps {
        let _ = writeln!(out, "\n[[app]]");
        let _ = writeln!(out, "name = {}", toml::Value::String(app.name.clone()));
        for (k, v) in attrs::app_attributes(app) {
            let _ = writeln!(out, "{k} = {}", toml_value(&v));
        }
    }
    for dep in &config.dependencies {
        let _ = writeln!(out, "\n[[dependency]]");
        for (k, v) in attrs::dependency_attributes(dep) {
            let _ = writeln!(out, "{k} = {}", toml_value(&v));
        }
    }
    out
}

/// A TOML value as the attribute text `vmmd ctl` would take.
fn as_attribute_text(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(if *b { "yes" } else { "no" }.to_owned()),
        _ => None,
    }
}

fn invalid(text: &str, span: Option<Range<usize>>, key: String, message: String) -> StoreError {
    StoreError::Invalid {
        path: PathBuf::new(),
        line: span.map(|s| line_of(text, s.start)),
        key,
        message,
    }
}

/// The first place in a table (for an error about the whole entry).
fn first_span(table: &BTreeMap<String, Spanned<toml::Value>>) -> Option<Range<usize>> {
    table.values().map(Spanned::span).min_by_key(|s| s.start)
}

/// Parse and validate the file's text (no path in the errors: [`Store::load`] adds it).
pub fn parse(text: &str) -> Result<AmeConfig, StoreError> {
    let file: FileText = toml::from_str(text).map_err(|e| StoreError::Syntax {
        path: PathBuf::new(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    if let Some(v) = &file.version
        && *v.get_ref() != FORMAT_VERSION
    {
        return Err(invalid(
            text,
            Some(v.span()),
            "version".to_owned(),
            format!(
                "version = {} is not supported: this vmmd reads version {FORMAT_VERSION}",
                v.get_ref()
            ),
        ));
    }
    let mut config = AmeConfig::default();
    for (i, table) in file.app.iter().enumerate() {
        let name = match table.get("name") {
            Some(n) => match n.get_ref() {
                toml::Value::String(s) => s.clone(),
                _ => {
                    return Err(invalid(
                        text,
                        Some(n.span()),
                        format!("app[{i}] name"),
                        "name must be a string".to_owned(),
                    ));
                }
            },
            None => {
                return Err(invalid(
                    text,
                    first_span(table),
                    format!("app[{i}]"),
                    "name is missing".to_owned(),
                ));
            }
        };
        let mut words = Vec::with_capacity(table.len());
        for (k, v) in table.iter().filter(|(k, _)| *k != "name") {
            let Some(value) = as_attribute_text(v.get_ref()) else {
                return Err(invalid(
                    text,
                    Some(v.span()),
                    format!("app[{i}] ({name}) {k}"),
                    "must be a string, an integer or a boolean".to_owned(),
                ));
            };
            words.push((k.clone(), value));
        }
        let app = attrs::new_app(&name, &words).map_err(|e| {
            invalid(
                text,
                table
                    .get(&e.attribute)
                    .map(Spanned::span)
                    .or(first_span(table)),
                format!("app[{i}] ({name}) {}", e.attribute),
                e.to_string(),
            )
        })?;
        config.apps.push(app);
        // Validate as each application is added, so the error points at the one that
        // breaks a rule (a duplicate name, the 17th application, period ≤ timeout).
        config.validate().map_err(|e| {
            let attribute = attribute_of(&e);
            invalid(
                text,
                table
                    .get(attribute)
                    .map(Spanned::span)
                    .or(first_span(table)),
                format!("app[{i}] ({name}) {attribute}"),
                e.to_string(),
            )
        })?;
    }
    for (i, table) in file.dependency.iter().enumerate() {
        let mut words = Vec::with_capacity(table.len());
        for (k, v) in table {
            let Some(value) = as_attribute_text(v.get_ref()) else {
                return Err(invalid(
                    text,
                    Some(v.span()),
                    format!("dependency[{i}] {k}"),
                    "must be a string or a boolean".to_owned(),
                ));
            };
            words.push((k.clone(), value));
        }
        let dep = attrs::new_dependency(&words).map_err(|e| {
            invalid(
                text,
                table
                    .get(&e.attribute)
                    .map(Spanned::span)
                    .or(first_span(table)),
                format!("dependency[{i}] {}", e.attribute),
                e.to_string(),
            )
        })?;
        config.dependencies.push(dep);
        config.validate().map_err(|e| {
            invalid(
                text,
                table
                    .get("dependency_list")
                    .map(Spanned::span)
                    .or(first_span(table)),
                format!("dependency[{i}] dependency_list"),
                e.to_string(),
            )
        })?;
    }
    Ok(config)
}

/// The attribute a validation error is about, to point at its line.
fn attribute_of(e: &ConfigError) -> &'static str {
    match e {
        ConfigError::ScriptNotAbsolute { attribute, .. }
        | ConfigError::DurationTooShort { attribute, .. }
        | ConfigError::CountZero { attribute, .. } => attribute,
        ConfigError::PeriodNotAboveTimeout { .. } => "monitor_period",
        _ => "name",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt as _;
    use std::time::Duration;

    use super::*;
    use crate::ame::config::{AppConfig, Dependency, DependencyKind};

    fn sample() -> AmeConfig {
        let mut a = AppConfig::new("app1", "/opt/a/mon", "/opt/a/start", "/opt/a/stop");
        a.critical = true;
        a.monitor_period = Duration::from_secs(5);
        a.monitor_timeout = Duration::from_secs(2);
        let mut web = crate::ame::config::AppConfig::probed(
            "web",
            crate::ame::probe::ProbeConfig::new(crate::ame::probe::ProbeKind::Smtp),
            "/opt/w/start",
            "/opt/w/stop",
        );
        if let Some(p) = web.probe.as_mut() {
            p.port = 2525;
        }
        let mut b = AppConfig::new(
            "db-2",
            "/opt/b/mon with space",
            "/opt/b/\"start\"",
            "/opt/b/stop",
        );
        b.monitored = false;
        b.max_restart = 7;
        AmeConfig {
            apps: vec![a, b, web],
            dependencies: vec![Dependency {
                kind: DependencyKind::StartSequence,
                apps: vec!["db-2".into(), "app1".into()],
                strict: false,
            }],
        }
    }

    #[test]
    fn render_and_parse_round_trip() {
        let config = sample();
        let text = render(&config);
        assert!(
            text.contains("\n[[app]]\nname = \"app1\"\nmonitored = true\n"),
            "{text}"
        );
        assert!(text.contains("dependency_list = \"db-2,app1\""), "{text}");
        assert!(
            text.contains("probe = \"smtp\"\nprobe_server = \"localhost\"\nprobe_port = 2525\n"),
            "{text}"
        );
        assert_eq!(parse(&text).unwrap(), config);
        assert_eq!(
            parse(&render(&AmeConfig::default())).unwrap(),
            AmeConfig::default()
        );
        assert_eq!(parse("").unwrap(), AmeConfig::default());
    }

    #[test]
    fn a_minimal_hand_written_file_takes_the_defaults() {
        let text = "[[app]]\nname = \"web\"\nmonitor_script = \"/m\"\nstart_script = \"/s\"\n\
                    stop_script = \"/t\"\ncritical = \"yes\"\n";
        let c = parse(text).unwrap();
        let mut want = AppConfig::new("web", "/m", "/s", "/t");
        want.critical = true;
        assert_eq!(c.apps, vec![want]);
    }

    fn error(text: &str) -> String {
        let e = parse(text)
            .unwrap_err()
            .in_file(Path::new("/var/lib/vmmd/apps.toml"));
        e.to_string()
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_key() {
        let app = "[[app]]\nname = \"app1\"\nmonitor_script = \"/m\"\nstart_script = \"/s\"\nstop_script = \"/t\"\n";
        let cases = [
            (
                format!("{app}monitor_period = 0\n"),
                "apps file /var/lib/vmmd/apps.toml line 6: app[0] (app1) monitor_period: monitor_period=0 is invalid: 1..=86400",
            ),
            (
                format!("{app}monitor_period = 10\n"),
                "apps file /var/lib/vmmd/apps.toml line 6: app[0] (app1) monitor_period: application app1: monitor_period (10 s) must exceed monitor_timeout (10 s)",
            ),
            (
                format!("{app}colour = \"red\"\n"),
                "line 6: app[0] (app1) colour: colour=red is invalid: unknown application attribute",
            ),
            (
                format!("{app}critical = [1]\n"),
                "line 6: app[0] (app1) critical: must be a string, an integer or a boolean",
            ),
            (
                "[[app]]\nname = \"a\"\nmonitor_script = \"/m\"\n".to_owned(),
                "line 2: app[0] (a) start_script: start_script=(missing) is invalid: mandatory",
            ),
            (
                format!("{app}{app}"),
                "line 7: app[1] (app1) name: application app1 is defined twice",
            ),
            (
                format!(
                    "{app}\n[[dependency]]\ndependency_type = \"start_sequence\"\ndependency_list = \"app1,zz\"\n"
                ),
                "line 9: dependency[0] dependency_list: start_sequence dependency names unknown application zz",
            ),
            (
                "version = 2\n".to_owned(),
                "line 1: version: version = 2 is not supported",
            ),
            (
                "[[app]]\nmonitor_script = \"/m\"\n".to_owned(),
                "line 2: app[0]: name is missing",
            ),
        ];
        for (text, want) in cases {
            let got = error(&text);
            assert!(got.contains(want), "{text}\n got: {got}\nwant: {want}");
        }
        let got = error("[[app]\n");
        assert!(
            got.starts_with("apps file /var/lib/vmmd/apps.toml: TOML parse error at line 1"),
            "{got}"
        );
        let got = error("apps = 1\n");
        assert!(got.contains("unknown field `apps`"), "{got}");
    }

    #[test]
    fn seventeen_applications_are_refused_at_the_seventeenth() {
        let mut text = String::new();
        for i in 0..17 {
            let _ = write!(
                text,
                "[[app]]\nname = \"a{i}\"\nmonitor_script = \"/m\"\nstart_script = \"/s\"\nstop_script = \"/t\"\n"
            );
        }
        let got = error(&text);
        assert!(
            got.contains("line 82: app[16] (a16) name: 17 applications: at most 16"),
            "{got}"
        );
    }

    #[test]
    fn save_writes_atomically_and_load_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("sub/apps.toml"));
        assert_eq!(
            store.load().unwrap(),
            AmeConfig::default(),
            "missing file: empty"
        );
        store.save(&sample()).unwrap();
        assert_eq!(store.load().unwrap(), sample());
        let meta = fs::metadata(store.path()).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(dir.path().join("sub")).unwrap().mode() & 0o777,
            0o700
        );
        assert!(!store.temp_path().exists(), "no temporary file left");
        let names: Vec<_> = fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["apps.toml"]);
    }

    #[test]
    fn nothing_invalid_is_saved() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("apps.toml"));
        store.save(&sample()).unwrap();
        let before = fs::read(store.path()).unwrap();
        let mut bad = sample();
        bad.apps[0].monitor_timeout = Duration::from_secs(60);
        let err = store.save(&bad).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Refused(ConfigError::PeriodNotAboveTimeout { .. })
            ),
            "{err}"
        );
        assert_eq!(fs::read(store.path()).unwrap(), before);
        assert!(!store.temp_path().exists());
    }

    #[test]
    fn a_leftover_or_truncated_temporary_file_never_breaks_the_live_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("apps.toml"));
        store.save(&sample()).unwrap();
        // A writer that died mid-write: half a file under the temporary names of two
        // processes.
        let full = render(&sample());
        for pid in [4_000_000, std::process::id()] {
            fs::write(
                dir.path().join(format!(".apps.toml.tmp.{pid}")),
                &full[..full.len() / 2],
            )
            .unwrap();
        }
        assert_eq!(store.load().unwrap(), sample(), "the live file is whole");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["apps.toml"], "the leftovers are removed");
        // A save over a leftover of ours still works.
        fs::write(store.temp_path(), "garbage").unwrap();
        let mut next = sample();
        next.apps.truncate(1);
        next.dependencies.clear();
        store.save(&next).unwrap();
        assert_eq!(store.load().unwrap(), next);
    }

    #[test]
    fn a_failed_write_leaves_the_file_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("apps.toml"));
        store.save(&sample()).unwrap();
        let before = fs::read(store.path()).unwrap();
        // The rename fails: a directory stands where the temporary file would go… no:
        // make the directory read-only is ignored by root, so block the temporary name
        // with a non-empty directory, which neither remove_file nor create_new can pass.
        fs::create_dir(store.temp_path()).unwrap();
        fs::write(store.temp_path().join("x"), "x").unwrap();
        let err = store.save(&AmeConfig::default()).unwrap_err();
        assert!(
            err.to_string().contains("cannot create the temporary file"),
            "{err}"
        );
        assert!(err.to_string().contains("(the file is unchanged)"), "{err}");
        assert_eq!(fs::read(store.path()).unwrap(), before);
    }

    #[test]
    fn a_file_others_may_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("apps.toml"));
        store.save(&sample()).unwrap();
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o666)).unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(
            err.contains("mode 0666") && err.contains("not writable by group or others"),
            "{err}"
        );
    }

    /// A writer killed (SIGKILL) at random moments while it saves two configurations
    /// in turn: the file read afterwards is always one of the two, whole.
    #[test]
    fn a_writer_killed_mid_write_leaves_a_whole_file() {
        if let Ok(path) = std::env::var("HVHA_STORE_WRITER") {
            // The child: save A and B in turn until killed.
            let store = Store::new(path);
            let (a, b) = big_pair();
            loop {
                store.save(&a).unwrap();
                store.save(&b).unwrap();
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apps.toml");
        let store = Store::new(&path);
        let (a, b) = big_pair();
        store.save(&a).unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut seen = (0, 0);
        for round in 0..12u64 {
            let mut child = std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "ame::store::tests::a_writer_killed_mid_write_leaves_a_whole_file",
                    "--nocapture",
                ])
                .env("HVHA_STORE_WRITER", &path)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            // Wait until it has replaced the file at least once (a new inode), then let
            // it write on for a varying time and kill it.
            let before = fs::metadata(&path).unwrap().ino();
            let give_up = std::time::Instant::now() + Duration::from_secs(20);
            while fs::metadata(&path).map(|m| m.ino()).unwrap_or(before) == before {
                assert!(
                    std::time::Instant::now() < give_up,
                    "the writer never wrote"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(round * 7));
            child.kill().unwrap();
            child.wait().unwrap();
            let got = store.load().unwrap();
            if got == a {
                seen.0 += 1;
            } else if got == b {
                seen.1 += 1;
            } else {
                panic!("round {round}: neither A nor B: {got:?}");
            }
            let names: Vec<_> = fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(
                names,
                ["apps.toml"],
                "the killed writer's leftover is removed"
            );
        }
        assert_eq!(seen.0 + seen.1, 12);
    }

    fn big_pair() -> (AmeConfig, AmeConfig) {
        let mk = |tag: &str| AmeConfig {
            apps: (0..16)
                .map(|i| {
                    AppConfig::new(
                        format!("{tag}{i}"),
                        format!("/opt/{tag}/{}/mon", "x".repeat(200)),
                        format!("/opt/{tag}/start"),
                        format!("/opt/{tag}/stop"),
                    )
                })
                .collect(),
            dependencies: Vec::new(),
        };
        (mk("a"), mk("b"))
    }
}
