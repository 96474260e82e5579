//! The `hmd` binary's command line: configuration errors name the key and the range,
//! `--check-config` prints the effective values, `ctl` without a daemon says so.

use std::process::Command;

fn hmd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hmd"))
        .args(args)
        .output()
        .expect("run hmd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config(dir: &tempfile::TempDir, extra: &str) -> String {
    let path = dir.path().join("hmd.toml");
    std::fs::write(
        &path,
        format!(
            r#"monitor_uuid = "5c3196a3-c41f-4b5c-9861-dee6077081c6"
host_id = 1
host_name = "host1"
hsdb = "{0}/hsdb.sqlite"
admin_socket = "{0}/hmd.sock"
interfaces = ["hm0"]
{extra}"#,
            dir.path().display()
        ),
    )
    .expect("write config");
    path.display().to_string()
}

#[test]
fn check_config_prints_effective_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out, err) = hmd(&["--check-config", &config(&dir, "")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("vm_miss_after: 20s"), "{out}");
    assert!(out.contains("hello_period: 30s"), "{out}");
}

#[test]
fn bad_values_exit_2_naming_key_and_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, err) = hmd(&["--config", &config(&dir, "hb_period_ms = 5\n")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("hb_period_ms = 5 is invalid: expected 100..=3600000 (ms)"),
        "{err}"
    );
    let (code, _, err) = hmd(&["--config", "/nonexistent/hmd.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/hmd.toml"), "{err}");
}

#[test]
fn missing_interface_is_a_clear_runtime_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config(&dir, "");
    let text = std::fs::read_to_string(&path)
        .expect("read")
        .replace("\"hm0\"", "\"nosuchif9\"");
    std::fs::write(&path, text).expect("write");
    let (code, _, err) = hmd(&["--config", &path]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nosuchif9"), "{err}");
}

#[test]
fn ctl_without_a_daemon_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("none.sock").display().to_string();
    let (code, _, err) = hmd(&["ctl", "--socket", &sock, "status"]);
    assert_eq!(code, 1);
    assert!(err.contains("is hmd running?"), "{err}");
}
