//! The `vmmd` command line as an operator meets it: exit codes and messages. Needs no
//! privilege: nothing here opens a socket.

use std::process::{Command, Output};

const UUID: &str = "61be20f0-09a8-4753-b5e5-564f8a545ed5";

fn vmmd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmmd"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run vmmd")
}

/// Write `text` to a config file and run `vmmd <flag> <file>`.
fn with_config(flag: &str, text: &str) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("vmmd.toml");
    std::fs::write(&path, text).expect("write config");
    vmmd(&[flag, path.to_str().expect("utf-8 path")])
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let out = with_config("--check-config", &format!("vm_uuid = \"{UUID}\"\n"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        &format!("vm_uuid = \"{UUID}\""),
        "ostype = \"linux\"",
        "rescan_ms = 5000",
        "ethertype = 0x0600",
        "log = \"info\"",
        "# interfaces now:",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    // The loopback interface exists everywhere and is never used.
    assert!(
        text.contains("lo: not used, is the loopback interface"),
        "{text}"
    );
}

#[test]
fn bad_values_exit_2_naming_key_value_and_range() {
    for (config, want) in [
        (
            "rescan_ms = 100",
            "rescan_ms = 100 is invalid: allowed 1000..=60000 (milliseconds)",
        ),
        (
            "ethertype = 0x0800\nethertype = 1",
            "duplicate key", // TOML itself refuses a key given twice
        ),
        (
            "ethertype = 0x0100",
            "ethertype = 0x0100 is invalid: allowed 0x0600..=0xffff",
        ),
        ("colour = \"red\"", "unknown field `colour`"),
    ] {
        for flag in ["--check-config", "--config"] {
            let out = with_config(flag, &format!("vm_uuid = \"{UUID}\"\n{config}\n"));
            assert_eq!(out.status.code(), Some(2), "{flag} {config}");
            let err = stderr(&out);
            assert!(err.contains(want), "{flag} {config}: {err}");
            assert!(err.starts_with("vmmd: config file "), "{err}");
        }
    }
}

#[test]
fn missing_uuid_and_missing_file_exit_2() {
    let out = with_config("--config", "ostype = \"linux\"\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("missing field `vm_uuid`"),
        "{}",
        stderr(&out)
    );
    let out = vmmd(&["--config", "/nonexistent/vmmd.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read config file /nonexistent/vmmd.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_configured_interface_that_can_never_carry_hvncp_is_refused() {
    let config = format!("vm_uuid = \"{UUID}\"\ninterfaces = [\"hvnope7\", \"lo\"]\n");
    for flag in ["--check-config", "--config"] {
        let out = with_config(flag, &config);
        assert_eq!(out.status.code(), Some(2), "{flag}: {}", stderr(&out));
        let err = stderr(&out);
        // `hvnope7` is absent, which is fine (it may appear); `lo` never qualifies.
        assert!(
            err.contains("interfaces[1] = \"lo\" is invalid: allowed an Ethernet interface"),
            "{flag}: {err}"
        );
        assert!(
            err.contains("lo is the loopback interface"),
            "{flag}: {err}"
        );
    }
}

#[test]
fn arguments_are_checked() {
    // Without arguments: the default configuration file.
    let none = vmmd(&[]);
    assert_eq!(none.status.code(), Some(2));
    if !std::path::Path::new("/etc/hvha/vmmd.toml").exists() {
        assert!(
            stderr(&none).contains("cannot read config file /etc/hvha/vmmd.toml"),
            "{}",
            stderr(&none)
        );
    }
    let extra = vmmd(&["--check-config", "a", "b"]);
    assert_eq!(extra.status.code(), Some(2));
    let version = vmmd(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert_eq!(
        stdout(&version),
        format!("vmmd {}\n", env!("CARGO_PKG_VERSION"))
    );
    let help = vmmd(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = stdout(&help);
    for words in ["SHDN:DAEMON", "rescan_ms", "Exit codes", "--check-config"] {
        assert!(text.contains(words), "--help lacks {words:?}:\n{text}");
    }
}

#[test]
fn check_config_output_is_a_configuration_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("vmmd.toml");
    std::fs::write(
        &path,
        format!("vm_uuid = \"{UUID}\"\nlog = \"info,agent=debug\"\nlog_format = \"json\"\n"),
    )
    .expect("write");
    // --check-config without a value checks --config's file.
    let out = vmmd(&["--config", path.to_str().expect("utf-8"), "--check-config"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("# log lines: \"text\""), "{text}");
    assert!(text.contains("log_format = \"json\""), "{text}");
    let again = dir.path().join("again.toml");
    std::fs::write(&again, &text).expect("write");
    let out2 = vmmd(&["--check-config", again.to_str().expect("utf-8")]);
    assert_eq!(out2.status.code(), Some(0), "{}", stderr(&out2));
    let body = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("# effective"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body(&text), body(&stdout(&out2)));
}

#[test]
fn log_filters_ethertypes_and_the_nil_uuid_are_validated_with_the_line() {
    for (config, want) in [
        (
            format!("vm_uuid = \"{UUID}\"\n\nlog = \"warning\"\n"),
            "line 3: log = \"warning\" is invalid: allowed a level",
        ),
        (
            format!("vm_uuid = \"{UUID}\"\nethertype = 0x86dd\n"),
            "line 2: ethertype = 0x86dd is invalid: allowed an EtherType of no other protocol: \
             0x86dd is IPv6",
        ),
        (
            "vm_uuid = \"00000000-0000-0000-0000-000000000000\"\n".to_owned(),
            "line 1: vm_uuid = \"00000000-0000-0000-0000-000000000000\" is invalid",
        ),
    ] {
        for flag in ["--check-config", "--config"] {
            let out = with_config(flag, &config);
            assert_eq!(out.status.code(), Some(2), "{flag} {config}");
            let err = stderr(&out);
            assert!(err.contains(want), "{flag} {config}: {err}");
        }
    }
}

#[test]
fn check_config_reads_the_key_files() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("auth.key");
    std::fs::write(&key, format!("4 {}\n", "cd".repeat(32))).expect("write key");
    let config = dir.path().join("vmmd.toml");
    // A relative key path is taken from the configuration file's directory.
    std::fs::write(
        &config,
        format!("vm_uuid = \"{UUID}\"\nauth = \"require\"\nauth_key_file = \"auth.key\"\n"),
    )
    .expect("write config");
    let check = |mode: u32| {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).expect("chmod");
        vmmd(&["--check-config", config.to_str().expect("utf-8 path")])
    };
    let out = check(0o600);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("# auth require: key 4 read"),
        "{}",
        stdout(&out)
    );
    let out = check(0o640);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("auth_key_file: key file"), "{err}");
    assert!(
        err.contains(&key.display().to_string()) && err.contains("mode 0640"),
        "{err}"
    );
}

#[test]
fn check_config_validates_the_applications_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let apps = dir.path().join("apps.toml");
    let config = dir.path().join("vmmd.toml");
    std::fs::write(
        &config,
        format!(
            "vm_uuid = \"{UUID}\"\n[ame]\napps_file = \"{}\"\n",
            apps.display()
        ),
    )
    .expect("write config");
    let check = || vmmd(&["--check-config", config.to_str().expect("utf-8")]);
    let out = check();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "# apps file {}: 0 application(s), 0 dependency(ies), valid",
            apps.display()
        )),
        "{}",
        stdout(&out)
    );
    std::fs::write(
        &apps,
        "[[app]]\nname = \"web\"\nmonitor_script = \"/m\"\nstart_script = \"/s\"\n\
         stop_script = \"/t\"\nmonitor_timeout = 30\n",
    )
    .expect("write apps");
    let out = check();
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let want = format!(
        "vmmd: apps file {} line 2: app[0] (web) monitor_period: application web: \
         monitor_period (30 s) must exceed monitor_timeout (30 s)",
        apps.display()
    );
    assert!(stderr(&out).starts_with(&want), "{}", stderr(&out));
    // The daemon refuses to start on it too, before opening anything.
    let out = vmmd(&["--config", config.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with(&want), "{}", stderr(&out));
}

#[test]
fn ctl_exit_codes_without_an_agent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("ctl.sock");
    let sock = sock.to_str().expect("utf-8");
    let out = vmmd(&["ctl", "--socket", sock, "status"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with(&format!("vmmd ctl: cannot reach vmmd at {sock}: ")),
        "{}",
        stderr(&out)
    );
    // A bad request is refused before the agent is asked: 2, naming the rule.
    for (args, want) in [
        (
            &["modify", "app", "web", "monitor_timeout=0"][..],
            "vmmd ctl: monitor_timeout=0 is invalid: 1..=86400 (whole seconds)",
        ),
        (
            &["add", "app", "web", "monitor_script=/m"][..],
            "vmmd ctl: start_script=(missing) is invalid: mandatory",
        ),
        (
            &["add", "thing", "web"][..],
            "vmmd ctl: \"thing\" is not a class",
        ),
    ] {
        let mut all = vec!["ctl", "--socket", sock];
        all.extend_from_slice(args);
        let out = vmmd(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).starts_with(want), "{args:?}: {}", stderr(&out));
    }
    let out = vmmd(&["ctl", "explode"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid value 'explode'"),
        "{}",
        stderr(&out)
    );
}
