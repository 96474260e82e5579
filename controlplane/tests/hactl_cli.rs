//! The `hactl` binary as an operator runs it: exit codes, error messages, output shapes,
//! against a temporary HSDB and configuration.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

const HACTL: &str = env!("CARGO_BIN_EXE_hactl");

/// Run `hactl` with `args`, no environment surprises (no RUST_LOG, no NOTIFY_SOCKET).
fn hactl(args: &[&str]) -> Output {
    Command::new(HACTL)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The exit code, with the output in the message when it is not `want`.
#[track_caller]
fn assert_exit(o: &Output, want: i32) {
    assert_eq!(
        o.status.code(),
        Some(want),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// A directory with a configuration file `hactl.toml` holding `extra` after the paths.
struct Setup {
    dir: TempDir,
}

impl Setup {
    fn new(extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("hsdb = \"hsdb.sqlite\"\nadmin_socket = \"hactl.sock\"\n{extra}");
        std::fs::write(dir.path().join("hactl.toml"), text).unwrap();
        Setup { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("hactl.toml")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `hactl --config <file> args…`.
    fn run(&self, args: &[&str]) -> Output {
        let config = self.config();
        let mut all = vec!["--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        hactl(&all)
    }
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn help_lists_the_commands_the_exit_codes_and_examples() {
    let o = hactl(&["--help"]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    for word in [
        "check-config",
        "status",
        "Exit codes:",
        "Examples:",
        "hactl run",
    ] {
        assert!(text.contains(word), "--help lacks {word:?}:\n{text}");
    }
    let o = hactl(&["--version"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).starts_with("hactl "), "{}", stdout(&o));
}

#[test]
fn usage_errors_exit_2() {
    let o = hactl(&[]);
    assert_exit(&o, 2);
    let o = hactl(&["frobnicate"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("frobnicate"), "{}", stderr(&o));
    let s = Setup::new("");
    let o = s.run(&["--xml", "status"]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("--xml is for qq and na"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_config_prints_the_effective_configuration_or_names_the_bad_value() {
    let s = Setup::new("profile = \"fast\"\n");
    let o = s.run(&["check-config"]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("profile = \"fast\""), "{text}");
    let hsdb = s.path("hsdb.sqlite");
    assert!(
        text.contains(&format!("hsdb = \"{}\"", hsdb.display())),
        "{text}"
    );

    let s = Setup::new("\n[platform]\ndriver = \"libvirt\"\ntimeout_ms = 50\n");
    let o = s.run(&["check-config"]);
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "config file {} line 6: platform.timeout_ms = 50 is invalid: expected 100..=600000 (ms)",
            s.config().display()
        )),
        "{err}"
    );

    let o = hactl(&["--config", "/nonexistent/hactl.toml", "check-config"]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("/nonexistent/hactl.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn status_without_a_daemon_exits_3() {
    let s = Setup::new("");
    let o = s.run(&["status"]);
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert!(err.contains(arg(&s.path("hactl.sock"))), "{err}");
    assert!(err.contains("hactl run"), "{err}");
}
