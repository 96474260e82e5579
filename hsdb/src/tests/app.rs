//! Application reports (schema v9): a VM's `app` rows replaced from a report, stale
//! reports ignored, a completed fetch handled once.

use hvha_appreport::{AppReport, AppState, AppStatus, Colour, MonitorKind};

use super::*;
use crate::{AppFetchHandled, AppStored, CommandKind, Error, VmSettings};

fn add_vm(f: &mut Fixture, vm: &Uuid) {
    f.db.set_vm(
        vm,
        &VmSettings {
            managed: Some(true),
            ..VmSettings::default()
        },
        T0,
    )
    .expect("set_vm");
}

fn app(name: &str, state: AppState) -> AppStatus {
    AppStatus::new(name, state)
}

fn report(inc: u64, generation: u64, apps: Vec<AppStatus>) -> AppReport {
    AppReport {
        inc,
        generation,
        apps,
    }
}

both!(test_report_replaces_a_vms_rows);
fn test_report_replaces_a_vms_rows() {
    let mut f = Fixture::new();
    add_vm(&mut f, &vm1());
    add_vm(&mut f, &vm_n(2));
    let mut db_app = app("db", AppState::Normal);
    db_app.critical = true;
    db_app.monitor = MonitorKind::Tcp;
    db_app.since_ms = 1_700_000_000_123;
    db_app.detail = "connect 127.0.0.1:5432 ok, 100 % \u{e9}t\u{e9}".into();
    db_app.restarts = 2;
    db_app.max_restart = 5;
    let web = app("web", AppState::Failing);
    let first = report(0xabc, 1, vec![db_app.clone(), web.clone()]);
    let out = f.db.store_app_report(&vm1(), &first, T0).expect("store");
    let AppStored::Stored {
        changes,
        previous_gen,
    } = out
    else {
        panic!("stored: {out:?}")
    };
    assert_eq!(previous_gen, None);
    assert_eq!(
        changes.iter().map(|c| c.name()).collect::<Vec<_>>(),
        ["db", "web"]
    );
    assert!(
        changes
            .iter()
            .all(|c| c.before.is_none() && c.state_changed())
    );
    let rows = f.db.apps(&vm1()).expect("apps");
    assert_eq!(rows.len(), 2);
    let db = &rows[0];
    assert_eq!(
        (
            db.name.as_str(),
            db.state,
            db.colour,
            db.critical,
            db.monitored,
            db.restarts,
            db.max_restart,
            db.monitor,
        ),
        (
            "db",
            AppState::Normal,
            Colour::Green,
            true,
            true,
            2,
            5,
            MonitorKind::Tcp
        )
    );
    assert_eq!(db.since_ms, Some(1_700_000_000_123));
    assert_eq!(db.detail, db_app.detail);
    assert_eq!(
        (db.report_inc, db.report_gen, db.updated_ms),
        (Some(0xabc), Some(1), T0)
    );
    assert_eq!(
        (rows[1].state, rows[1].colour),
        (AppState::Failing, Colour::Yellow)
    );
    // since_ms 0: the agent did not say.
    assert_eq!(rows[1].since_ms, None);

    // Generation 3: db fails, web is gone, mail is new. Another VM's rows stay.
    f.db.store_app_report(&vm_n(2), &report(7, 1, vec![app("x", AppState::Unset)]), T0)
        .expect("vm 2");
    let mut db_failed = db_app.clone();
    db_failed.state = AppState::Failure;
    let mail = app("mail", AppState::Normal);
    let out =
        f.db.store_app_report(&vm1(), &report(0xabc, 3, vec![mail, db_failed]), T0 + 5)
            .expect("store 3");
    let AppStored::Stored {
        changes,
        previous_gen,
    } = out
    else {
        panic!("stored: {out:?}")
    };
    assert_eq!(previous_gen, Some(1));
    let summary: Vec<(String, Option<AppState>, Option<AppState>)> = changes
        .iter()
        .map(|c| {
            (
                c.name().to_owned(),
                c.before.as_ref().map(|r| r.state),
                c.after.as_ref().map(|r| r.state),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("db".into(), Some(AppState::Normal), Some(AppState::Failure)),
            ("mail".into(), None, Some(AppState::Normal)),
            ("web".into(), Some(AppState::Failing), None),
        ]
    );
    let names: Vec<String> =
        f.db.apps(&vm1())
            .expect("apps")
            .into_iter()
            .map(|r| r.name)
            .collect();
    assert_eq!(names, ["db", "mail"]);
    let db = &f.db.apps(&vm1()).expect("apps")[0];
    assert_eq!(
        (db.colour, db.report_gen, db.updated_ms),
        (Colour::Red, Some(3), T0 + 5)
    );
    let all: Vec<(Uuid, String)> =
        f.db.all_apps()
            .expect("all")
            .into_iter()
            .map(|r| (r.vm, r.name))
            .collect();
    assert_eq!(all.len(), 3);
    assert!(all.contains(&(vm_n(2), "x".to_owned())));

    // An empty report deletes every row.
    let out =
        f.db.store_app_report(&vm1(), &report(0xabc, 4, vec![]), T0 + 6)
            .expect("empty");
    assert!(
        matches!(out, AppStored::Stored { ref changes, .. } if changes.len() == 2),
        "{out:?}"
    );
    assert!(f.db.apps(&vm1()).expect("apps").is_empty());
    assert_eq!(f.db.apps(&vm_n(2)).expect("vm 2").len(), 1);
}

both!(test_stale_report_is_ignored_and_says_so);
fn test_stale_report_is_ignored_and_says_so() {
    let mut f = Fixture::new();
    add_vm(&mut f, &vm1());
    let newer = report(9, 5, vec![app("db", AppState::Failure)]);
    f.db.store_app_report(&vm1(), &newer, T0).expect("gen 5");
    // Same incarnation, lower generation: ignored, nothing written.
    let older = report(
        9,
        4,
        vec![app("db", AppState::Normal), app("web", AppState::Normal)],
    );
    assert_eq!(
        f.db.store_app_report(&vm1(), &older, T0 + 1)
            .expect("gen 4"),
        AppStored::Stale { stored_gen: 5 }
    );
    let rows = f.db.apps(&vm1()).expect("apps");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].state, rows[0].updated_ms), (AppState::Failure, T0));
    // The same generation again: stored, no change.
    assert_eq!(
        f.db.store_app_report(&vm1(), &newer, T0 + 2)
            .expect("gen 5 again"),
        AppStored::Stored {
            changes: vec![],
            previous_gen: Some(5)
        }
    );
    // A new incarnation starts again at 1: it replaces the rows.
    let restarted = report(10, 1, vec![app("db", AppState::Unset)]);
    let out =
        f.db.store_app_report(&vm1(), &restarted, T0 + 3)
            .expect("new inc");
    assert!(
        matches!(out, AppStored::Stored { ref changes, previous_gen: None } if changes.len() == 1),
        "{out:?}"
    );
    assert_eq!(f.db.apps(&vm1()).expect("apps")[0].report_inc, Some(10));
    // A VM without a row.
    assert!(matches!(
        f.db.store_app_report(&vm_n(77), &restarted, T0),
        Err(Error::NotFound { what: "vm", .. })
    ));
}

both!(test_completed_fetch_is_handled_once);
fn test_completed_fetch_is_handled_once() {
    let mut f = Fixture::new();
    add_vm(&mut f, &vm1());
    let fetch =
        f.db.enqueue_command(&hm1(), CommandKind::FetchAppReport, &vm1(), T0)
            .expect("fetch");
    assert_eq!(
        f.db.open_app_fetch(&vm1()).expect("open").map(|c| c.id),
        Some(fetch)
    );
    // Still open: nothing to handle, and handling it is refused.
    assert!(
        f.db.app_fetches_done(Some("hg1"), 10)
            .expect("done")
            .is_empty()
    );
    assert_eq!(
        f.db.handle_app_fetch(fetch, None, None, "x", T0)
            .expect("open"),
        AppFetchHandled::AlreadyHandled
    );
    let body = report(3, 2, vec![app("db", AppState::Normal)]).encode();
    f.db.complete_command(fetch, &format!("REPORT: {body}"), T0 + 1)
        .expect("complete");
    assert_eq!(f.db.open_app_fetch(&vm1()).expect("open"), None);
    // Listed for the monitors' group only.
    let done = f.db.app_fetches_done(Some("hg1"), 10).expect("done");
    assert_eq!(done.iter().map(|c| c.id).collect::<Vec<_>>(), [fetch]);
    assert_eq!(
        done[0].result.as_deref(),
        Some(format!("REPORT: {body}").as_str())
    );
    assert!(
        f.db.app_fetches_done(Some("other"), 10)
            .expect("other")
            .is_empty()
    );
    assert_eq!(f.db.app_fetches_done(None, 10).expect("all").len(), 1);

    let parsed = AppReport::parse(body.as_bytes()).expect("parse");
    let out =
        f.db.handle_app_fetch(fetch, Some(&parsed), Some(&hm2()), "stored gen=2", T0 + 2)
            .expect("handle");
    let AppFetchHandled::Done {
        stored: Some(AppStored::Stored { changes, .. }),
        confirm: Some(confirm),
    } = out
    else {
        panic!("handled: {out:?}")
    };
    assert_eq!(changes.len(), 1);
    let c = f.db.command(confirm).expect("confirm").expect("row");
    assert_eq!(
        (c.kind, c.hm, c.vm, c.arg.as_deref(), c.done_ms),
        (CommandKind::ConfirmAppReport, hm2(), vm1(), Some("2"), None)
    );
    assert_eq!(
        f.db.command(fetch)
            .expect("fetch")
            .expect("row")
            .arg
            .as_deref(),
        Some("stored gen=2")
    );
    assert_eq!(f.db.apps(&vm1()).expect("apps").len(), 1);
    // Once: a second handling (another controller, or this one restarted) writes nothing.
    assert_eq!(
        f.db.handle_app_fetch(fetch, Some(&parsed), Some(&hm2()), "again", T0 + 3)
            .expect("again"),
        AppFetchHandled::AlreadyHandled
    );
    assert!(
        f.db.app_fetches_done(None, 10)
            .expect("none left")
            .is_empty()
    );
    assert_eq!(
        f.int(
            "SELECT COUNT(*) FROM hm_command WHERE kind = 'CONFIRM_APP_REPORT'",
            &[]
        ),
        1
    );

    // A failed fetch: marked handled, nothing stored, nothing confirmed.
    let failed =
        f.db.enqueue_command(&hm1(), CommandKind::FetchAppReport, &vm1(), T0 + 4)
            .expect("fetch 2");
    f.db.complete_command(failed, "TIMEOUT: no PMSG_RSP in 15 s", T0 + 20)
        .expect("complete");
    assert_eq!(
        f.db.handle_app_fetch(failed, None, Some(&hm1()), "", T0 + 21)
            .expect("failed"),
        AppFetchHandled::Done {
            stored: None,
            confirm: None
        }
    );
    assert_eq!(
        f.db.command(failed)
            .expect("row")
            .expect("row")
            .arg
            .as_deref(),
        Some("handled")
    );
    // A stale report is not confirmed.
    let stale =
        f.db.enqueue_command(&hm1(), CommandKind::FetchAppReport, &vm1(), T0 + 30)
            .expect("fetch 3");
    f.db.complete_command(stale, "REPORT: …", T0 + 31)
        .expect("complete");
    let old = report(3, 1, vec![]);
    assert_eq!(
        f.db.handle_app_fetch(stale, Some(&old), Some(&hm1()), "stale", T0 + 32)
            .expect("stale"),
        AppFetchHandled::Done {
            stored: Some(AppStored::Stale { stored_gen: 2 }),
            confirm: None
        }
    );
    assert_eq!(f.db.apps(&vm1()).expect("apps").len(), 1);
}

/// The lease's fence covers the writes: a controller whose term ended stores nothing.
#[test]
fn test_app_writes_are_fenced() {
    let mut f = Fixture::new();
    add_vm(&mut f, &vm1());
    let r = report(1, 1, vec![app("db", AppState::Normal)]);
    let fence = crate::Fence {
        host_group: "hg1".into(),
        holder: "ctl-a".into(),
        token: 7,
        check: None,
    };
    f.db.set_fence(Some(fence));
    let err = f.db.store_app_report(&vm1(), &r, T0).expect_err("no lease");
    assert!(matches!(err, Error::Fenced { .. }), "{err}");
    f.db.set_fence(None);
    assert!(f.db.apps(&vm1()).expect("apps").is_empty());
}

both!(test_two_controllers_handle_a_fetch_once);
/// Two connections (two controllers, or a leader and its successor) handle the same
/// completed fetch at the same moment: one stores and confirms it, the other writes
/// nothing.
fn test_two_controllers_handle_a_fetch_once() {
    let mut f = Fixture::new();
    add_vm(&mut f, &vm1());
    let r = report(4, 9, vec![app("db", AppState::Normal)]);
    let mut fetches = Vec::new();
    for i in 0..5 {
        let id =
            f.db.enqueue_command(&hm1(), CommandKind::FetchAppReport, &vm1(), T0 + i)
                .expect("fetch");
        f.db.complete_command(id, &format!("REPORT: {}", r.encode()), T0 + i)
            .expect("complete");
        fetches.push(id);
    }
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let mut db = f.reopen(&Options::default());
            let barrier = std::sync::Arc::clone(&barrier);
            let (r, fetches) = (r.clone(), fetches.clone());
            std::thread::spawn(move || {
                barrier.wait();
                fetches
                    .iter()
                    .filter(|&&id| {
                        let out = db
                            .handle_app_fetch(id, Some(&r), Some(&hm1()), "stored", T0 + 100)
                            .expect("handle");
                        matches!(out, AppFetchHandled::Done { .. })
                    })
                    .count()
            })
        })
        .collect();
    let done: usize = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    assert_eq!(done, fetches.len(), "each fetch handled exactly once");
    assert_eq!(
        f.int(
            "SELECT COUNT(*) FROM hm_command WHERE kind = 'CONFIRM_APP_REPORT'",
            &[]
        ),
        i64::try_from(fetches.len()).expect("few")
    );
    assert_eq!(f.db.apps(&vm1()).expect("apps").len(), 1);
}

/// The poll for fetches to handle reads the partial index of v10, not every command
/// kept (SQLite's plan for the query `app_fetches_done` runs).
#[test]
fn test_unhandled_fetches_are_read_through_their_index() {
    let f = Fixture::new();
    let raw = f.raw();
    let sql = format!(
        "EXPLAIN QUERY PLAN {} ORDER BY c.id LIMIT 64",
        crate::app::UNHANDLED_FETCHES_SQL
    );
    let plan: Vec<String> = raw
        .prepare(&sql)
        .expect("prepare")
        .query_map([], |r| r.get::<_, String>(3))
        .expect("plan")
        .collect::<std::result::Result<_, _>>()
        .expect("rows");
    assert!(
        plan.iter()
            .any(|p| p.contains("hm_command_fetch_unhandled")),
        "{plan:?}"
    );
}
