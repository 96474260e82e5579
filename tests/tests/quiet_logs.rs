//! Quiet logs at scale, against a real `hmd`: 1,000 simulated agents (`hvncp-loadgen`)
//! go silent at once and come back; each wave of 1,000 state changes costs `hmd`'s log at
//! most 10 lines (the first few changes one by one, then one summary with the counts per
//! state and interface), where it used to cost 1,000. The per-VM lines are still there at
//! debug (docs/operations.md, "Logs").

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use dataplane::message::Uuid;
use hsdb::{Hsdb, Options};
use hvha_e2e::{Lab, binary, wait_for};

const HM: &str = "5c3196a3-c41f-4b5c-9861-dee6077081c6";
const AGENTS: u64 = 1000;
/// Most `hmd` log lines (info level) allowed for a wave of `AGENTS` changes.
const MAX_LINES: usize = 10;

fn counts(path: &Path) -> Option<hsdb::HeartbeatCounts> {
    let hm = Uuid::parse(HM.as_bytes()).ok()?;
    Hsdb::open(path, &Options::default())
        .ok()?
        .vm_hm_counts(&hm)
        .ok()
}

fn wait_line(lines: &Receiver<String>, prefix: &str, within: Duration) -> String {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.starts_with(prefix) => return line,
            Ok(_) => {}
            Err(e) => panic!("loadgen: no {prefix:?} line: {e}"),
        }
    }
}

/// The lines `hmd` logged after byte `from` of its log.
fn lines_since(lab: &Lab, from: usize) -> Vec<String> {
    let log = lab.log("hmd");
    log.get(from..)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_thousand_changes_at_once_cost_at_most_ten_log_lines() {
    let Some(mut lab) = Lab::new("quiet") else {
        return;
    };
    if !binary("hvncp-loadgen").exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "hvncp-loadgen not built"
        );
        eprintln!("SKIPPED e2e::quiet: hvncp-loadgen not built (cargo test --workspace builds it)");
        return;
    }
    let gen_ns = lab.netns("gen");
    let mon_ns = lab.netns("mon");
    lab.link(&gen_ns, "g0", &mon_ns, "m0");
    let hsdb = lab.dir.join("hsdb.sqlite");
    let config = lab
        .write(
            "hmd.toml",
            &format!(
                r#"monitor_uuid = "{HM}"
host_id = 1
host_name = "host1"
hsdb = "{}"
admin_socket = "{}"
interfaces = ["m0"]
hello_period_ms = 500
hb_period_ms = 200
vm_miss_after_ms = 1000
hm_heartbeat_period_ms = 1000
flush_ms = 10
log = "info"
"#,
                hsdb.display(),
                lab.dir.join("hmd.sock").display(),
            ),
        )
        .display()
        .to_string();
    lab.spawn_with_env(
        "hmd",
        &mon_ns,
        "hmd",
        &["--config", &config],
        &[("RUST_LOG", "info")],
    );
    let (mut commands, stdout) = lab.spawn_piped(
        "loadgen",
        &gen_ns,
        "hvncp-loadgen",
        &[
            "--interface",
            "g0",
            "--agents",
            &AGENTS.to_string(),
            "--period-ms",
            "200",
            "--syn-rate",
            "20000",
            "--report-ms",
            "0",
        ],
    );
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    wait_line(&lines, "ready", Duration::from_secs(30));
    let all = |want: fn(&hsdb::HeartbeatCounts) -> u64| {
        wait_for(Duration::from_secs(30), || {
            counts(&hsdb).filter(|c| want(c) == AGENTS)
        })
    };
    assert!(
        all(|c| c.detected).is_some(),
        "all {AGENTS} VMs DETECTED: {:?}\n{}",
        counts(&hsdb),
        lab.log("hmd")
    );
    // The discovery wave too: summed up once its burst is over (a quiet second).
    std::thread::sleep(Duration::from_millis(1500));
    let startup = lines_since(&lab, 0);
    let discovered = startup.iter().filter(|l| l.contains("discovered")).count();
    assert!(
        discovered <= 3
            && startup
                .iter()
                .any(|l| l.contains("DISCOVERED 1000 (m0 1000)")),
        "{} start-up lines:\n{}",
        startup.len(),
        startup.join("\n")
    );

    for (command, state, want) in [
        (
            "silence 0-999",
            "MISSING",
            (|c| c.missing) as fn(&hsdb::HeartbeatCounts) -> u64,
        ),
        ("resume all", "DETECTED", |c| c.detected),
    ] {
        let from = lab.log("hmd").len();
        writeln!(commands, "{command}").expect("loadgen command");
        assert!(
            all(want).is_some(),
            "after {command:?} every VM {state}: {:?}\n{}",
            counts(&hsdb),
            lab.log("hmd")
        );
        // The burst ends one quiet second after its last change; then its summary.
        let summary = format!("{state} 1000 (m0 1000)");
        let logged = wait_for(Duration::from_secs(10), || {
            let l = lines_since(&lab, from);
            l.iter().any(|l| l.contains(&summary)).then_some(l)
        })
        .unwrap_or_else(|| panic!("no summary {summary:?}:\n{}", lab.log("hmd")));
        // Another second: nothing more trickles in.
        std::thread::sleep(Duration::from_secs(1));
        let logged_after = lines_since(&lab, from);
        println!(
            "{command}: {} hmd log lines for {AGENTS} changes to {state}",
            logged_after.len()
        );
        assert!(logged.len() <= logged_after.len());
        assert!(
            logged_after.len() <= MAX_LINES,
            "{} lines for {AGENTS} changes:\n{}",
            logged_after.len(),
            logged_after.join("\n")
        );
        let one_by_one = logged_after
            .iter()
            .filter(|l| l.contains("VM state changed") && l.contains(&format!("state={state}")))
            .count();
        assert_eq!(one_by_one, 3, "{}", logged_after.join("\n"));
    }
}
