//! No data loss: `kill -9` of `hmd` while it commits a stream of transitions for
//! thousands of VMs leaves every committed transition in the HSDB, and the file passes
//! `PRAGMA integrity_check`; a restarted `hmd` carries on with the same file.
//!
//! `hvncp-loadgen` simulates 3,000 agents on one veth end; groups of 300 go silent for
//! 1.3 s in turn (MISSING after the 1 s `vm_miss_after`, DETECTED when they resume), so
//! the writer commits batch after batch. An observer thread reads every row of the
//! monitor over and over through its own connection (what a reader sees is committed);
//! `hmd` is killed with SIGKILL in the middle of the stream. Afterwards every row the
//! observer last saw must be there, unchanged or newer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hsdb::{HeartbeatState, Hsdb, Options, Uuid, VmHmRow};
use hvha_e2e::{FAST_TIMERS, MonitorRig};

const AGENTS: u32 = 3000;
const GROUP: u32 = 300;

#[test]
fn kill_9_mid_burst_loses_no_committed_transition() {
    let Some(mut rig) = MonitorRig::new("kill9", &format!("{FAST_TIMERS}log = \"info\"\n")) else {
        return;
    };
    let (hm, hsdb_path) = (rig.hm(), rig.hsdb.clone());
    rig.start_hmd("hmd1");
    let Some(mut commands) = rig.agents(u64::from(AGENTS), 200, &["--syn-rate", "20000"]) else {
        return;
    };
    rig.assert_all_detected(u64::from(AGENTS), "hmd1");

    // The observer: the latest complete view of the monitor's rows.
    let seen: Arc<Mutex<Option<Vec<VmHmRow>>>> = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let observer = {
        let (seen, stop, path) = (Arc::clone(&seen), Arc::clone(&stop), hsdb_path.clone());
        std::thread::spawn(move || {
            let db = Hsdb::open(&path, &Options::default()).expect("observer connection");
            let mut views = 0u32;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(rows) = db.vm_hms_of(&hm) {
                    *seen.lock().expect("lock") = Some(rows);
                    views += 1;
                }
            }
            views
        })
    };

    // The stream: every 100 ms one group goes silent and the one silenced 1.3 s ago
    // resumes; kill -9 after 2.45 s, while MISSING and DETECTED batches keep coming.
    let groups = AGENTS / GROUP;
    let range = |g: u32| format!("{}-{}", g * GROUP, g * GROUP + GROUP - 1);
    let mut missing_seen_before_kill = 0;
    for step in 0..25u32 {
        commands.command(&format!("silence {}", range(step % groups)));
        if step >= 13 {
            commands.command(&format!("resume {}", range((step - 13) % groups)));
        }
        std::thread::sleep(Duration::from_millis(100));
        if let Some(rows) = seen.lock().expect("lock").as_ref() {
            missing_seen_before_kill = missing_seen_before_kill.max(
                rows.iter()
                    .filter(|r| r.last_state == HeartbeatState::Missing)
                    .count(),
            );
        }
    }
    std::thread::sleep(Duration::from_millis(45));
    // Take the observer's latest complete view, then kill at once: whatever it holds
    // was committed before the kill.
    let before_kill = seen.lock().expect("lock").clone().expect("a view");
    rig.lab.kill_9("hmd1");
    stop.store(true, Ordering::Relaxed);
    let views = observer.join().expect("observer");
    assert!(
        missing_seen_before_kill > 0,
        "the stream produced MISSING rows before the kill ({views} views)"
    );

    // Every committed row is there, unchanged or newer; the file is sound.
    let db = Hsdb::open(&hsdb_path, &Options::default()).expect("reopen after kill -9");
    db.integrity_check().expect("integrity_check after kill -9");
    let after: HashMap<Uuid, VmHmRow> = db
        .vm_hms_of(&hm)
        .expect("rows")
        .into_iter()
        .map(|r| (r.vm, r))
        .collect();
    assert_eq!(before_kill.len(), AGENTS as usize);
    assert_eq!(after.len(), AGENTS as usize);
    let mut changed_since = 0;
    for row in &before_kill {
        let now = after
            .get(&row.vm)
            .unwrap_or_else(|| panic!("VM {} lost its row", row.vm));
        assert!(
            now.updated_ms >= row.updated_ms,
            "row went back in time: seen {row:?}, now {now:?}"
        );
        if now.updated_ms == row.updated_ms {
            assert_eq!(now, row, "same time, different row");
        } else {
            changed_since += 1;
        }
    }
    let vms = db.vms().expect("vms");
    assert_eq!(
        vms.len(),
        AGENTS as usize,
        "every discovered VM is still there"
    );
    drop(db);
    eprintln!(
        "kill -9: {views} observer views; {} MISSING at most before the kill; {changed_since} rows committed after the last view",
        missing_seen_before_kill
    );

    // A new hmd on the same file: a new incarnation, every agent re-pairs.
    commands.command("resume all");
    rig.start_hmd("hmd2");
    rig.assert_all_detected(u64::from(AGENTS), "hmd2");
    let rows = rig.rows().expect("rows");
    assert!(
        rows.iter()
            .all(|r| r.last_state == HeartbeatState::Detected)
    );
    Hsdb::open(&hsdb_path, &Options::default())
        .expect("open")
        .integrity_check()
        .expect("integrity_check after the restart");
    commands.command("quit");
}
