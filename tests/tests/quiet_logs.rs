//! Quiet logs at scale, against a real `hmd`: 1,000 simulated agents (`hvncp-loadgen`)
//! go silent at once and come back; each wave of 1,000 state changes costs `hmd`'s log at
//! most 10 lines (the first few changes one by one, then one summary with the counts per
//! state and interface), where it used to cost 1,000. The per-VM lines are still there at
//! debug (docs/operations.md, "Logs").

use std::time::Duration;

use hvha_e2e::{FAST_TIMERS, Lab, MonitorRig, wait_for};

const AGENTS: u64 = 1000;
/// Most `hmd` log lines (info level) allowed for a wave of `AGENTS` changes.
const MAX_LINES: usize = 10;

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
    let Some(mut rig) = MonitorRig::new("quiet", &format!("{FAST_TIMERS}log = \"info\"\n")) else {
        return;
    };
    rig.start_hmd_with_env("hmd", &[("RUST_LOG", "info")]);
    let Some(mut commands) = rig.agents(AGENTS, 200, &["--syn-rate", "20000"]) else {
        return;
    };
    let all = |want: fn(&hsdb::HeartbeatCounts) -> u64| {
        rig.wait_counts(Duration::from_secs(30), |c| want(c) == AGENTS)
    };
    assert!(
        all(|c| c.detected).is_some(),
        "all {AGENTS} VMs DETECTED: {:?}\n{}",
        rig.counts(),
        rig.lab.log("hmd")
    );
    // The discovery wave too: summed up once its burst is over (a quiet second).
    std::thread::sleep(Duration::from_millis(1500));
    let startup = lines_since(&rig.lab, 0);
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
        let from = rig.lab.log("hmd").len();
        commands.command(command);
        assert!(
            all(want).is_some(),
            "after {command:?} every VM {state}: {:?}\n{}",
            rig.counts(),
            rig.lab.log("hmd")
        );
        // The burst ends one quiet second after its last change; then its summary.
        let summary = format!("{state} 1000 (m0 1000)");
        let logged = wait_for(Duration::from_secs(10), || {
            let l = lines_since(&rig.lab, from);
            l.iter().any(|l| l.contains(&summary)).then_some(l)
        })
        .unwrap_or_else(|| panic!("no summary {summary:?}:\n{}", rig.lab.log("hmd")));
        // Another second: nothing more trickles in.
        std::thread::sleep(Duration::from_secs(1));
        let logged_after = lines_since(&rig.lab, from);
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
