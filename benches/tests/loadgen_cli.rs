//! The load generator and the do-nothing receiver refuse bad arguments with an error
//! naming the value, before touching the network.

use std::process::Command;

fn run(bin: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(bin).args(args).output().expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

const LOADGEN: &str = env!("CARGO_BIN_EXE_hvncp-loadgen");
const SINK: &str = env!("CARGO_BIN_EXE_hvncp-sink");

#[test]
fn loadgen_rejects_bad_arguments() {
    for (args, expected) in [
        (&["--interface", "lo", "--agents", "0"][..], "--agents 0"),
        (
            &["--interface", "lo", "--first-mac", "zz"],
            "--first-mac \"zz\"",
        ),
        (
            &["--interface", "lo", "--first-mac", "01:00:5e:00:00:01"],
            "multicast",
        ),
        (
            &[
                "--interface",
                "lo",
                "--first-mac",
                "fe:ff:ff:ff:ff:00",
                "--agents",
                "1000",
            ],
            "run past",
        ),
        (&["--interface", "lo", "--rate", "0"], "rate \"0\""),
        (&["--interface", "lo", "--period-ms", "1"], "period \"1\""),
        (
            &["--interface", "lo", "--ethertype", "0x05ff"],
            "--ethertype",
        ),
        (&["--interface", "lo", "--seconds", "0"], "--seconds 0"),
        (&["--interface", "bad/name"], "--interface \"bad/name\""),
        (
            &["--interface", "lo", "--auth-key", "/nonexistent/auth.key"],
            "--auth-key: auth_key_file: cannot read key file /nonexistent/auth.key",
        ),
        (
            &["--interface", "lo", "--auth-key", "/k", "--auth", "maybe"],
            "--auth: auth mode \"maybe\"",
        ),
    ] {
        let (code, text) = run(LOADGEN, args);
        assert_eq!(code, 1, "{args:?}: {text}");
        assert!(
            text.contains(expected),
            "{args:?}: {text:?} lacks {expected:?}"
        );
    }
    let (code, text) = run(
        LOADGEN,
        &["--interface", "lo", "--rate", "5", "--period-ms", "100"],
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("cannot be used with"), "{text}");
}

#[test]
fn help_says_what_the_programs_do() {
    let (code, text) = run(LOADGEN, &["--help"]);
    assert_eq!(code, 0);
    for word in ["--agents", "--rate", "--period-ms", "--syn-rate", "silence"] {
        assert!(text.contains(word), "loadgen --help lacks {word}: {text}");
    }
    let (code, text) = run(SINK, &["--help"]);
    assert_eq!(code, 0);
    assert!(text.contains("do nothing"), "{text}");
}

#[test]
fn sink_rejects_bad_arguments() {
    let (code, text) = run(SINK, &["--interface", "lo", "--report-ms", "5"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("--report-ms 5"), "{text}");
    let (code, text) = run(SINK, &["--interface", "x/y"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("--interface \"x/y\""), "{text}");
}

#[test]
fn every_tool_prints_its_version() {
    for (bin, name) in [
        (LOADGEN, "hvncp-loadgen"),
        (SINK, "hvncp-sink"),
        (CORPUS, "hvncp-corpus"),
    ] {
        let (code, text) = run(bin, &["--version"]);
        assert_eq!(code, 0, "{name}: {text}");
        assert_eq!(text, format!("{name} {}\n", env!("CARGO_PKG_VERSION")));
    }
}

const CORPUS: &str = env!("CARGO_BIN_EXE_hvncp-corpus");

/// `hvncp-corpus --help` prints help and writes nothing (it once wrote its seeds into a
/// folder named `--help`); a missing directory argument is an error, not a default.
#[test]
fn corpus_help_writes_nothing() {
    let dir = std::env::temp_dir().join(format!("hvncp-corpus-help-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    for args in [&["--help"][..], &["-h"], &["--version"]] {
        let out = Command::new(CORPUS)
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run");
        assert!(out.status.success(), "{args:?}");
        let written: Vec<_> = std::fs::read_dir(&dir).expect("list").collect();
        assert!(written.is_empty(), "{args:?} wrote {written:?}");
    }
    let (code, text) = run(CORPUS, &["--help"]);
    assert_eq!(code, 0);
    assert!(text.contains("Usage: hvncp-corpus <DIR>"), "{text}");
    let out = Command::new(CORPUS)
        .current_dir(&dir)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(std::fs::read_dir(&dir).expect("list").next().is_none());
    let _ = std::fs::remove_dir_all(&dir);
}
