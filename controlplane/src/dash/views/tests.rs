//! The pages, the snapshot and the actions on a real SQLite HSDB populated through the
//! hsdb API: contract-B attributes, escaping, filters, the rows actions write, refusals.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use hsdb::{
    HelloId, HmRecord, HostId, HostRecord, Hsdb, MacAddr, Options, PolicyChange, PolicyKind,
    Priority, RelocationKind, RequestKind, Transition, Uuid, Version, VmSettings,
};

use super::{action, page, snapshot};
use crate::cli::config::Config;
use crate::dash::{Ctx, Method, Request, Response, Role, User};

const T0: i64 = 1_764_547_200_000; // 2025-12-01 00:00:00 UTC
const HOST_A: HostId = HostId(1);
const HOST_B: HostId = HostId(2);
const EVIL: &str = "<script>alert(1)</script>";

fn uuid(n: u8) -> Uuid {
    Uuid([n; 16])
}

fn hm_a() -> Uuid {
    uuid(0xa1)
}
fn hm_b() -> Uuid {
    uuid(0xb1)
}
fn vm_web() -> Uuid {
    uuid(1)
}
fn vm_db() -> Uuid {
    uuid(2)
}
fn vm_evil() -> Uuid {
    uuid(3)
}

const V2: Version = Version { major: 2, minor: 0 };

struct Lab {
    _dir: tempfile::TempDir,
    db: Hsdb,
    config: Config,
}

fn host(id: HostId, name: &str) -> HostRecord {
    HostRecord {
        id,
        name: name.to_owned(),
        machine_type: "8408".to_owned(),
        model: "E8E".to_owned(),
        serial: format!("SN{}", id.0),
        cpu_milli: 32_000,
        memory_mb: 262_144,
        host_group: "hg1".to_owned(),
    }
}

fn discovered(vm: Uuid, hm: Uuid, mac: u8, at: i64) -> Transition {
    Transition::Discovered {
        vm,
        hm,
        mac: MacAddr([0x52, 0x54, 0, 0, 0, mac]),
        ostype: "linux".to_owned(),
        ver_lower: V2,
        ver_upper: V2,
        at,
    }
}

/// Two hosts of group hg1, one monitor each, VMs web and db on host A and a VM named
/// like a script on host B, a collocation, an exclusion, a flexible capacity.
fn lab() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Hsdb::open(dir.path().join("hsdb.sqlite"), &Options::default()).unwrap();
    db.upsert_host(&host(HOST_A, "host-a")).unwrap();
    db.upsert_host(&host(HOST_B, "host-b")).unwrap();
    for (hm, h, m) in [(hm_a(), HOST_A, 0xa1), (hm_b(), HOST_B, 0xb1)] {
        db.register_hm(&HmRecord {
            uuid: hm,
            host: h,
            mac: MacAddr([2, 0, 0, 0, 0, m]),
            incarnation: HelloId::parse(b"1556303548.719328000.38").unwrap(),
            version: V2,
            at: T0,
        })
        .unwrap();
    }
    db.apply(&[
        discovered(vm_web(), hm_a(), 1, T0),
        discovered(vm_db(), hm_a(), 2, T0),
        discovered(vm_evil(), hm_b(), 3, T0),
    ])
    .unwrap();
    for (vm, name, home) in [
        (vm_web(), "web1", HOST_A),
        (vm_db(), "db1", HOST_A),
        (vm_evil(), EVIL, HOST_B),
    ] {
        db.set_vm(
            &vm,
            &VmSettings {
                managed: Some(true),
                name: Some(name.to_owned()),
                home_host: Some(home),
                priority: Some(Priority::High),
                ..VmSettings::default()
            },
            T0,
        )
        .unwrap();
    }
    let ok = |_: &hsdb::PolicyView| Ok::<(), String>(());
    db.policy_change(
        &PolicyChange::AddSet {
            kind: PolicyKind::Collocation,
            name: "pair".to_owned(),
            host_group: "hg1".to_owned(),
            members: vec![vm_web(), vm_db()],
        },
        T0,
        ok,
    )
    .unwrap()
    .unwrap();
    db.policy_change(
        &PolicyChange::AddExclusions {
            vm: vm_web(),
            hosts: vec![HOST_B],
        },
        T0,
        ok,
    )
    .unwrap()
    .unwrap();
    db.policy_change(
        &PolicyChange::SetFlexible {
            host_group: "hg1".to_owned(),
            priority: Priority::Low,
            cpu_pct: Some(50),
            memory_pct: Some(60),
        },
        T0,
        ok,
    )
    .unwrap()
    .unwrap();
    let config = Config::parse(
        &format!("hsdb = \"{}\"\n", dir.path().join("hsdb.sqlite").display()),
        Path::new("/etc/hvha/hactl.toml"),
    )
    .unwrap();
    Lab {
        _dir: dir,
        db,
        config,
    }
}

fn operator() -> User {
    User {
        name: "alice".to_owned(),
        role: Role::Operator,
    }
}

fn reader() -> User {
    User {
        name: "bob".to_owned(),
        role: Role::ReadOnly,
    }
}

fn get(path: &str, query: &[(&str, &str)]) -> Request {
    Request {
        method: Method::Get,
        path: path.to_owned(),
        query: query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        form: Vec::new(),
        headers: Vec::new(),
        peer: "127.0.0.1:40000".to_owned(),
    }
}

fn post(path: &str, form: &[(&str, &str)]) -> Request {
    Request {
        method: Method::Post,
        path: path.to_owned(),
        query: Vec::new(),
        form: form
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        headers: Vec::new(),
        peer: "127.0.0.1:40000".to_owned(),
    }
}

impl Lab {
    fn call(
        &mut self,
        user: &User,
        f: fn(&mut Ctx<'_>, &Request) -> Response,
        req: &Request,
    ) -> Response {
        let mut ctx = Ctx {
            user,
            csrf: "tok3n",
            now_ms: T0 + 60_000,
            db: &mut self.db,
            config: &self.config,
        };
        f(&mut ctx, req)
    }

    fn page(&mut self, user: &User, path: &str, query: &[(&str, &str)]) -> (u16, String) {
        let r = self.call(user, page, &get(path, query));
        (r.status, String::from_utf8(r.body).unwrap())
    }

    fn ok(&mut self, path: &str) -> String {
        let (status, body) = self.page(&operator(), path, &[]);
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    fn act(&mut self, user: &User, verb: &str, form: &[(&str, &str)]) -> Response {
        self.call(user, action, &post(&format!("/action/{verb}"), form))
    }
}

fn location(r: &Response) -> &str {
    r.headers
        .iter()
        .find(|(k, _)| k == "Location")
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// The opening tag of the first element carrying `attr`.
fn tag_with<'a>(body: &'a str, attr: &str) -> &'a str {
    let at = body
        .find(attr)
        .unwrap_or_else(|| panic!("no {attr} in page"));
    let start = body[..at].rfind('<').unwrap();
    let end = at + body[at..].find('>').unwrap();
    &body[start..=end]
}

#[test]
fn every_page_has_the_frame_of_contract_b() {
    let mut lab = lab();
    for path in [
        "/",
        "/hosts",
        "/host/host-a",
        "/vms",
        "/vm/web1",
        "/apps",
        "/events",
        "/relocations",
        "/activities",
    ] {
        let body = lab.ok(path);
        assert!(
            body.contains("<body data-user=\"alice\" data-role=\"operator\""),
            "{path}"
        );
        for nav in [
            "href=\"/\"",
            "href=\"/hosts\"",
            "href=\"/vms\"",
            "href=\"/apps\"",
            "href=\"/events\"",
            "href=\"/relocations\"",
            "href=\"/activities\"",
        ] {
            assert!(body.contains(nav), "{path} lacks {nav}");
        }
        assert!(body.contains("<script src=\"/static/app.js\" defer></script>"));
        // No inline script or style: the CSP is default-src 'self'.
        assert_eq!(body.matches("<script").count(), 1, "{path}");
        assert!(
            !body.contains("<style") && !body.contains(" style=") && !body.contains(" onclick")
        );
    }
    let (_, body) = lab.page(&reader(), "/", &[]);
    assert!(body.contains("data-user=\"bob\" data-role=\"read-only\""));
}

#[test]
fn vm_rows_carry_state_health_and_host() {
    let mut lab = lab();
    for path in ["/", "/vms", "/vm/web1", &format!("/vm/{}", vm_web())] {
        let body = lab.ok(path);
        let row = tag_with(&body, "data-vm=\"web1\"");
        assert!(
            row.contains(&format!("data-uuid=\"{}\"", vm_web())),
            "{path}: {row}"
        );
        assert!(row.contains("data-state=\"STARTED\""), "{row}");
        assert!(row.contains("data-health=\"OK\""), "{row}");
        for class in ["vm-state", "vm-health", "vm-host"] {
            assert!(
                body.contains(&format!("<td class=\"{class}\"")),
                "{path}: {class}"
            );
        }
        assert!(body.contains("<td class=\"vm-host\">host-a</td>"), "{path}");
    }
}

#[test]
fn a_vm_declared_failed_is_failed_until_its_heartbeats_return() {
    let mut lab = lab();
    lab.db
        .apply(&[Transition::Missing {
            vm: vm_web(),
            hm: hm_a(),
            at: T0 + 10_000,
        }])
        .unwrap();
    // Missed on every monitor of its host, no failure declared: MISSING.
    let body = lab.ok("/vms");
    assert!(tag_with(&body, "data-vm=\"web1\"").contains("data-health=\"MISSING\""));
    // The control plane declares it failed: FAILED.
    lab.db
        .record_event(
            "VM_FAILURE_DETECTED",
            Some(&vm_web()),
            None,
            "missed",
            T0 + 20_000,
        )
        .unwrap();
    let body = lab.ok("/vms");
    assert!(tag_with(&body, "data-vm=\"web1\"").contains("data-health=\"FAILED\""));
    let snap: serde_json::Value =
        serde_json::from_str(&snapshot(&mut lab.db, T0).unwrap()).unwrap();
    let web = snap["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "web1")
        .unwrap();
    assert_eq!(web["health"], "FAILED");
    assert_eq!(snap["counts"]["vms_failed"], 1);
    // Heartbeats back: OK again, the old event notwithstanding.
    lab.db
        .apply(&[Transition::Detected {
            vm: vm_web(),
            hm: hm_a(),
            at: T0 + 30_000,
        }])
        .unwrap();
    let body = lab.ok("/vms");
    assert!(tag_with(&body, "data-vm=\"web1\"").contains("data-health=\"OK\""));
}

#[test]
fn a_restart_in_progress_is_failed_and_a_planned_move_is_moving() {
    let mut lab = lab();
    let id = lab
        .db
        .relocation_begin(&vm_db(), Some(HOST_A), None, RelocationKind::Relocate, T0)
        .unwrap();
    lab.db.relocation_phase(id, "cause vm_failure", T0).unwrap();
    let body = lab.ok("/");
    assert!(tag_with(&body, "data-vm=\"db1\"").contains("data-health=\"FAILED\""));
    lab.db.relocation_end(id, "success", T0 + 1).unwrap();
    let id = lab
        .db
        .relocation_begin(
            &vm_db(),
            Some(HOST_A),
            None,
            RelocationKind::Relocate,
            T0 + 2,
        )
        .unwrap();
    lab.db
        .relocation_phase(id, "cause evacuate", T0 + 2)
        .unwrap();
    let body = lab.ok("/");
    assert!(tag_with(&body, "data-vm=\"db1\"").contains("data-health=\"MOVING\""));
}

#[test]
fn values_from_outside_are_escaped_everywhere() {
    let mut lab = lab();
    lab.db
        .record_event("VM_MOVED", Some(&vm_evil()), None, EVIL, T0)
        .unwrap();
    lab.db
        .relocation_begin(
            &vm_evil(),
            Some(HOST_B),
            Some(HOST_A),
            RelocationKind::Relocate,
            T0,
        )
        .unwrap();
    let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;";
    for path in [
        "/".to_owned(),
        "/vms".to_owned(),
        format!("/vm/{}", vm_evil()),
        "/host/host-b".to_owned(),
        "/events".to_owned(),
        "/event/1".to_owned(),
        "/relocations".to_owned(),
    ] {
        let body = lab.ok(&path);
        assert!(!body.contains(EVIL), "{path} shows the name unescaped");
        assert!(body.contains(escaped), "{path} does not show the name");
    }
    // By name (the server hands the path decoded; the name holds a `/`).
    let body = lab.ok(&format!("/vm/{EVIL}"));
    assert!(body.contains(escaped) && !body.contains(EVIL));
    // Unknown names come back escaped in the 404 page.
    let (status, body) = lab.page(&operator(), "/host/<b>x", &[]);
    assert_eq!(status, 404);
    assert!(body.contains("&lt;b&gt;x") && !body.contains("<b>x"));
    // The snapshot is JSON: the name is a string value the script writes as text.
    let snap: serde_json::Value =
        serde_json::from_str(&snapshot(&mut lab.db, T0).unwrap()).unwrap();
    assert!(
        snap["vms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == EVIL)
    );
}

#[test]
fn hosts_and_monitors_carry_their_attributes() {
    let mut lab = lab();
    let body = lab.ok("/hosts");
    assert!(body.contains("<tr data-host=\"host-a\""));
    assert!(body.contains("<tr data-host=\"host-b\""));
    let hm = tag_with(&body, &format!("data-hm=\"{}\"", hm_a()));
    assert!(hm.contains("data-state=\"UP\""), "{hm}");
    assert!(
        body.contains("1556303548.719328000.38"),
        "incarnation shown"
    );
    let body = lab.ok("/host/host-a");
    assert!(body.contains("web1") && body.contains("db1"));
    assert!(body.contains(&format!("data-hm=\"{}\"", hm_a())));
    assert!(!body.contains(&format!("data-hm=\"{}\"", hm_b())));
    let (status, body) = lab.page(&operator(), "/host/nope", &[]);
    assert_eq!(status, 404);
    assert!(body.contains("&quot;nope&quot;"));
}

#[test]
fn the_overview_shows_the_group_policies_and_attention() {
    let mut lab = lab();
    let body = lab.ok("/");
    assert!(body.contains("<section class=\"group\" data-group=\"hg1\">"));
    assert!(body.contains("data-policy=\"pair\" data-kind=\"COLLOCATION\""));
    assert!(body.contains("web1, db1"));
    assert!(body.contains("never on host-b"));
    assert!(body.contains("50 % CPU, 60 % memory"));
    assert!(body.contains("data-param=\"host_failure_detection_time\""));
    assert!(body.contains("Nothing needs attention."));
    lab.act(&operator(), "evacuate", &[("host", "host-b")]);
    let body = lab.ok("/");
    assert!(
        body.contains("evacuate of host host-b by dashboard:alice"),
        "{body}"
    );
    lab.db.set_host_maintenance(HOST_B, Some(T0), None).unwrap();
    let body = lab.ok("/");
    assert!(body.contains("in maintenance since"));
    assert!(!body.contains("Nothing needs attention."));
}

#[test]
fn the_vm_page_shows_heartbeats_budgets_policies_and_apps() {
    let mut lab = lab();
    let body = lab.ok("/vm/web1");
    assert!(body.contains(&format!(
        "data-hm=\"{}\" data-vm-hb=\"{}\"",
        hm_a(),
        vm_web()
    )));
    assert!(body.contains("0/3 in 1h"), "restart budget");
    assert!(body.contains("collocation pair") || body.contains("pair"));
    assert!(body.contains("Never relocated to: host-b"));
    let (status, body) = lab.page(&operator(), "/vm/nope", &[]);
    assert_eq!(status, 404);
    assert!(body.contains("nope"));
}

fn record(lab: &mut Lab, kind: &str, at: i64) -> i64 {
    lab.db
        .record_event(kind, Some(&vm_web()), None, "t", at)
        .unwrap()
}

#[test]
fn events_filter_by_severity_newest_first_with_pages() {
    let mut lab = lab();
    let crit = record(&mut lab, "VM_RESTART_FAILED", T0);
    let warn = record(&mut lab, "HOST_MAINTENANCE_REFUSED", T0 + 1);
    let info = record(&mut lab, "VM_RESTART_COMPLETED", T0 + 2);
    let other = record(&mut lab, "SOMETHING_ELSE", T0 + 3);
    let err = record(&mut lab, "VM_FAILURE_DETECTED", T0 + 4);
    let ids = |body: &str| -> Vec<i64> {
        body.match_indices("<tr data-event=\"")
            .map(|(i, m)| {
                let rest = &body[i + m.len()..];
                rest[..rest.find('"').unwrap()].parse().unwrap()
            })
            .collect()
    };
    let (_, all) = lab.page(&operator(), "/events", &[]);
    assert_eq!(ids(&all), vec![err, other, info, warn, crit]);
    let sev = |lab: &mut Lab, s: &str| {
        let (status, body) = lab.page(&operator(), "/events", &[("severity", s)]);
        assert_eq!(status, 200);
        ids(&body)
    };
    assert_eq!(sev(&mut lab, "critical"), vec![crit]);
    assert_eq!(sev(&mut lab, "error"), vec![err]);
    assert_eq!(sev(&mut lab, "warning"), vec![warn]);
    assert_eq!(sev(&mut lab, "maintenance"), vec![warn]);
    assert_eq!(sev(&mut lab, "info"), vec![other, info]);
    let (_, body) = lab.page(&operator(), "/events", &[("severity", "critical")]);
    assert!(tag_with(&body, "data-event=\"").contains("data-severity=\"critical\""));
    // Paging: two per page.
    let (_, p1) = lab.page(&operator(), "/events", &[("limit", "2")]);
    assert_eq!(ids(&p1), vec![err, other]);
    assert!(p1.contains(&format!("before={other}")));
    let before = other.to_string();
    let (_, p2) = lab.page(
        &operator(),
        "/events",
        &[("limit", "2"), ("before", &before)],
    );
    assert_eq!(ids(&p2), vec![info, warn]);
    // Bad filters name the value.
    let (status, body) = lab.page(&operator(), "/events", &[("severity", "loud")]);
    assert_eq!(status, 400);
    assert!(body.contains("&quot;loud&quot;"));
    for (k, v) in [("before", "x"), ("limit", "0"), ("limit", "501")] {
        let (status, _) = lab.page(&operator(), "/events", &[(k, v)]);
        assert_eq!(status, 400, "{k}={v}");
    }
}

#[test]
fn an_event_without_a_monitor_names_no_host() {
    // The VM's host now is not where it was when the event happened (a failure event
    // would show the relocation's target): no host, rather than a wrong one.
    let mut lab = lab();
    let vm_host = lab.db.vm(&vm_web()).unwrap().and_then(|v| v.current_host);
    assert!(vm_host.is_some(), "the lab's VM has a host");
    let id = record(&mut lab, "VM_FAILURE_DETECTED", T0);
    let (_, body) = lab.page(&operator(), "/events", &[]);
    let at = body.find(&format!("<tr data-event=\"{id}\"")).unwrap();
    let row = &body[at..at + body[at..].find("</tr>").unwrap()];
    assert!(row.contains("/vm/"), "{row}");
    assert!(!row.contains("/host/"), "{row}");
}

#[test]
fn an_event_page_shows_every_field_and_the_json() {
    let mut lab = lab();
    let id = lab
        .db
        .record_event(
            "VM_RESTART_FAILED",
            Some(&vm_web()),
            Some(&hm_a()),
            "no luck",
            T0,
        )
        .unwrap();
    let body = lab.ok(&format!("/event/{id}"));
    assert!(body.contains("VM_RESTART_FAILED"));
    assert!(body.contains("critical"));
    assert!(body.contains("no luck"));
    assert!(body.contains(&vm_web().to_string()));
    assert!(
        body.contains("&quot;kind&quot;: &quot;VM_RESTART_FAILED&quot;"),
        "JSON"
    );
    assert!(body.contains("&quot;host&quot;: &quot;host-a&quot;"));
    let (status, _) = lab.page(&operator(), "/event/999", &[]);
    assert_eq!(status, 404);
    let (status, _) = lab.page(&operator(), "/event/abc", &[]);
    assert_eq!(status, 400);
}

#[test]
fn relocations_newest_first_with_phase_and_reasons_cell() {
    let mut lab = lab();
    let a = lab
        .db
        .relocation_begin(
            &vm_web(),
            Some(HOST_A),
            Some(HOST_B),
            RelocationKind::Relocate,
            T0,
        )
        .unwrap();
    lab.db.relocation_phase(a, "STARTED", T0 + 5).unwrap();
    lab.db.relocation_end(a, "success", T0 + 6).unwrap();
    let b = lab
        .db
        .relocation_begin(
            &vm_db(),
            Some(HOST_A),
            Some(HOST_A),
            RelocationKind::Restart,
            T0 + 7,
        )
        .unwrap();
    let body = lab.ok("/relocations");
    let first = tag_with(&body, "<tr data-relocation=");
    assert!(
        first.contains(&format!("data-relocation=\"{b}\"")),
        "{first}"
    );
    assert!(first.contains("data-kind=\"RESTART\"") && first.contains("data-phase=\"BEGIN\""));
    let row = tag_with(&body, &format!("data-relocation=\"{a}\""));
    assert!(row.contains("data-vm=\"web1\"") && row.contains("data-phase=\"STARTED\""));
    assert!(body.contains("<td class=\"reasons"));
    assert!(body.contains("tbody data-live=\"relocations\""));
    let body = lab.ok(&format!("/relocation/{a}"));
    assert!(body.contains("STARTED"));
}

#[test]
fn the_snapshot_has_the_live_fields() {
    let mut lab = lab();
    let id = lab
        .db
        .relocation_begin(&vm_web(), Some(HOST_A), None, RelocationKind::Relocate, T0)
        .unwrap();
    lab.db.relocation_phase(id, "cause vm_failure", T0).unwrap();
    lab.db.relocation_phase(id, "STOPPING", T0).unwrap();
    lab.db
        .record_event("VM_FAILURE_DETECTED", Some(&vm_web()), None, "x", T0)
        .unwrap();
    let text = snapshot(&mut lab.db, T0).unwrap();
    let snap: serde_json::Value = serde_json::from_str(&text).unwrap();
    for key in [
        "counts",
        "vms",
        "monitors",
        "hosts",
        "relocations",
        "activities",
        "events",
    ] {
        assert!(snap.get(key).is_some(), "no {key} in {text}");
    }
    let web = &snap["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "web1")
        .unwrap();
    for key in ["uuid", "state", "health", "health_why", "host", "heartbeat"] {
        assert!(web.get(key).is_some(), "vm lacks {key}");
    }
    assert_eq!(web["state"], "STARTED");
    assert_eq!(web["host"], "host-a");
    assert_eq!(web["health"], "FAILED");
    // Nothing changes, nothing differs: the document holds no clock.
    assert_eq!(snapshot(&mut lab.db, T0 + 5_000).unwrap(), text);
    // Every monitor hears it: the usual, left out.
    assert!(web.get("monitors").is_none(), "{web}");
    lab.db
        .apply(&[Transition::Missing {
            vm: vm_web(),
            hm: hm_a(),
            at: T0 + 1_000,
        }])
        .unwrap();
    let again: serde_json::Value =
        serde_json::from_str(&snapshot(&mut lab.db, T0).unwrap()).unwrap();
    let web = again["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "web1")
        .unwrap()
        .clone();
    assert_eq!(web["monitors"][0]["hm"], hm_a().to_string());
    assert_eq!(web["monitors"][0]["state"], "MISSING");
    assert_eq!(web["monitors"][0]["missed_since_ms"], T0 + 1_000);
    assert_eq!(web["missed_since_ms"], T0 + 1_000);
    let db1 = again["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "db1")
        .unwrap();
    assert_eq!(db1["health"], "OK");
    assert!(db1.get("health_why").is_none() && db1.get("monitors").is_none());
    assert_eq!(snap["monitors"][0]["state"], "UP");
    assert_eq!(snap["relocations"][0]["id"], id);
    assert_eq!(snap["relocations"][0]["phase"], "STOPPING");
    assert_eq!(snap["relocations"][0]["vm"], "web1");
    assert_eq!(snap["relocations"][0]["cause"], "vm_failure");
    assert_eq!(snap["events"][0]["kind"], "VM_FAILURE_DETECTED");
    assert_eq!(snap["events"][0]["severity"], "error");
    assert_eq!(snap["counts"]["relocations_open"], 1);
}

#[test]
fn evacuate_and_restore_write_operator_requests() {
    let mut lab = lab();
    let r = lab.act(&operator(), "evacuate", &[("host", "host-a")]);
    assert_eq!(r.status, 303);
    assert!(
        location(&r).starts_with("/host/host-a?ok=evacuate&ref="),
        "{}",
        location(&r)
    );
    let reqs = lab.db.operator_requests_of(HOST_A, 10).unwrap();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].kind, RequestKind::Evacuate);
    assert_eq!(reqs[0].requested_by, "dashboard:alice");
    assert_eq!(reqs[0].host_group, "hg1");
    let r = lab.act(&operator(), "restore", &[("host", "host-a")]);
    assert_eq!(r.status, 303);
    assert_eq!(
        lab.db.operator_requests_of(HOST_A, 10).unwrap()[0].kind,
        RequestKind::Restore
    );
    // The flash message after the redirect.
    let (_, body) = lab.page(
        &operator(),
        "/host/host-a",
        &[("ok", "evacuate"), ("ref", "7")],
    );
    assert!(body.contains("Evacuation requested (operator request 7)"));
    // Refusals write nothing.
    let r = lab.act(&operator(), "evacuate", &[("host", "<nope>")]);
    assert_eq!(r.status, 404);
    assert!(
        String::from_utf8(r.body)
            .unwrap()
            .contains("&quot;&lt;nope&gt;&quot;")
    );
    let r = lab.act(&operator(), "evacuate", &[]);
    assert_eq!(r.status, 400);
    let r = lab.act(&reader(), "evacuate", &[("host", "host-a")]);
    assert_eq!(r.status, 403);
    assert_eq!(lab.db.operator_requests_of(HOST_A, 10).unwrap().len(), 2);
}

#[test]
fn ack_by_tag_and_by_vm() {
    let mut lab = lab();
    // A NeedsAttention reply tags the pending discoveries.
    let na = lab
        .db
        .needs_attention(T0, hsdb::NaLimits::default(), 77)
        .unwrap();
    assert_eq!(na.tag, Some(77));
    let (before, _) = lab.db.pending_head(100).unwrap();
    assert!(
        before
            .iter()
            .any(|p| p.vm == Some(vm_web()) && p.tag == Some(77))
    );
    // By VM: only that VM's reported items go.
    let r = lab.act(&operator(), "ack", &[("vm", "web1")]);
    assert_eq!(r.status, 303, "{}", String::from_utf8_lossy(&r.body));
    let (after, _) = lab.db.pending_head(100).unwrap();
    assert!(!after.iter().any(|p| p.vm == Some(vm_web())));
    assert!(after.iter().any(|p| p.vm == Some(vm_db())));
    // By tag: the rest.
    let r = lab.act(&operator(), "ack", &[("tag", "77")]);
    assert_eq!(r.status, 303);
    assert!(location(&r).starts_with("/?ok=ack"));
    let (after, _) = lab.db.pending_head(100).unwrap();
    assert!(after.iter().all(|p| p.tag.is_none()));
    // Refusals.
    assert_eq!(lab.act(&operator(), "ack", &[("tag", "x")]).status, 400);
    assert_eq!(lab.act(&operator(), "ack", &[]).status, 400);
    assert_eq!(lab.act(&operator(), "ack", &[("vm", "ghost")]).status, 404);
}

#[test]
fn actions_validate_their_fields() {
    let mut lab = lab();
    assert_eq!(lab.act(&operator(), "nope", &[]).status, 404);
    assert_eq!(
        lab.act(
            &operator(),
            "discover",
            &[("group", "hg9"), ("depth", "quick")]
        )
        .status,
        404
    );
    assert_eq!(
        lab.act(
            &operator(),
            "discover",
            &[("group", "hg1"), ("depth", "sideways")]
        )
        .status,
        400
    );
    assert_eq!(lab.act(&operator(), "verify", &[]).status, 400);
    assert_eq!(
        lab.act(&operator(), "move-plan", &[("vm", "ghost")]).status,
        404
    );
    assert_eq!(
        lab.act(&operator(), "move", &[("vm", "web1"), ("target", "host-a")])
            .status,
        400,
        "already there"
    );
    assert_eq!(
        lab.act(&operator(), "move", &[("vm", "web1"), ("target", "host-z")])
            .status,
        404
    );
    let long = "x".repeat(600);
    assert_eq!(
        lab.act(&operator(), "evacuate", &[("host", &long)]).status,
        400
    );
    assert_eq!(
        lab.act(&operator(), "evacuate", &[("host", "a\u{0}b")])
            .status,
        400
    );
    assert_eq!(
        lab.call(&operator(), action, &get("/action/evacuate", &[]))
            .status,
        405
    );
}

#[test]
fn read_only_users_see_no_action_forms() {
    let mut lab = lab();
    lab.db
        .needs_attention(T0, hsdb::NaLimits::default(), 5)
        .unwrap();
    for path in ["/", "/hosts", "/host/host-a", "/vm/web1", "/activities"] {
        let (status, body) = lab.page(&reader(), path, &[]);
        assert_eq!(status, 200);
        assert!(
            !body.contains("action=\"/action/"),
            "{path} offers an action to a reader"
        );
        assert!(!body.contains("data-action="), "{path}");
        let body = lab.ok(path);
        assert!(
            body.contains("action=\"/action/"),
            "{path} offers no action to an operator"
        );
        assert!(body.contains("<input type=\"hidden\" name=\"csrf\" value=\"tok3n\">"));
    }
    let body = lab.ok("/");
    for verb in ["discover", "verify", "evacuate", "ack"] {
        assert!(body.contains(&format!("data-action=\"{verb}\"")), "{verb}");
    }
    let body = lab.ok("/vm/web1");
    assert!(body.contains("data-action=\"move-plan\""));
}

#[test]
fn unknown_paths_are_404_and_bad_segments_400() {
    let mut lab = lab();
    assert_eq!(lab.page(&operator(), "/nope", &[]).0, 404);
    assert_eq!(lab.page(&operator(), "/vm/a\u{0}b", &[]).0, 400);
    assert_eq!(
        lab.page(&operator(), &format!("/vm/{}", "a".repeat(600)), &[])
            .0,
        400
    );
}

#[test]
fn the_static_files_are_served_by_name() {
    let names: Vec<&str> = super::STATIC.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(names, ["app.js", "app.css", "favicon.svg"]);
    let js = std::str::from_utf8(super::STATIC[0].2).unwrap();
    assert!(js.contains("new EventSource('/stream')"));
    assert!(js.contains("body.dataset.live = state"));
    assert!(!js.contains("innerHTML"), "values are written as text only");
}

#[test]
fn discover_and_verify_request_activities() {
    let mut lab = lab();
    let r = lab.act(
        &operator(),
        "discover",
        &[("group", "hg1"), ("depth", "quick")],
    );
    assert_eq!(r.status, 303, "{}", String::from_utf8_lossy(&r.body));
    assert!(location(&r).starts_with("/activities?ok=activity&ref="));
    lab.act(
        &operator(),
        "discover",
        &[("group", "hg1"), ("depth", "deep")],
    );
    lab.act(&operator(), "verify", &[("group", "hg1")]);
    let rows = lab.db.activities(Some("hg1"), 10).unwrap();
    let kinds: Vec<_> = rows.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        [
            hsdb::ActivityKind::Verify,
            hsdb::ActivityKind::DeepDiscovery,
            hsdb::ActivityKind::QuickDiscovery
        ]
    );
    assert!(
        rows.iter()
            .all(|a| a.requested_by == "dashboard:alice"
                && a.state == hsdb::ActivityState::Requested)
    );
    let body = lab.ok("/activities");
    let row = tag_with(&body, &format!("data-activity=\"{}\"", rows[0].id));
    assert!(row.contains("data-kind=\"VERIFY\"") && row.contains("data-state=\"REQUESTED\""));
    assert!(body.contains("data-kind=\"QUICK_DISCOVERY\""));
    let snap: serde_json::Value =
        serde_json::from_str(&snapshot(&mut lab.db, T0).unwrap()).unwrap();
    assert_eq!(snap["activities"][0]["kind"], "VERIFY");
    assert_eq!(snap["activities"][0]["state"], "REQUESTED");
    // A read-only user writes nothing.
    assert_eq!(
        lab.act(&reader(), "verify", &[("group", "hg1")]).status,
        403
    );
    assert_eq!(lab.db.activities(None, 10).unwrap().len(), 3);
}

#[test]
fn an_ended_activity_shows_its_summary_not_its_last_progress_line() {
    let mut lab = lab();
    let kind = hsdb::ActivityKind::QuickDiscovery;
    let done = lab
        .db
        .begin_activity("hg1", kind, "cli:root", "c1", T0)
        .unwrap();
    lab.db
        .activity_progress(
            done,
            "3 of 3 hosts answered: writing what was found",
            T0 + 1,
        )
        .unwrap();
    lab.db
        .finish_activity(done, true, "2 new VMs", T0 + 2)
        .unwrap();
    let running = lab
        .db
        .begin_activity("hg1", kind, "cli:root", "c1", T0 + 3)
        .unwrap();
    lab.db
        .activity_progress(running, "1 of 3 hosts answered", T0 + 4)
        .unwrap();
    let body = lab.ok("/activities");
    assert!(!body.contains("writing what was found"), "{body}");
    assert!(body.contains("2 new VMs") && body.contains("1 of 3 hosts answered"));
    let snap: serde_json::Value =
        serde_json::from_str(&snapshot(&mut lab.db, T0).unwrap()).unwrap();
    let by_id = |id: i64| {
        snap["activities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(done)["progress"], "-");
    assert_eq!(by_id(done)["summary"], "2 new VMs");
    assert_eq!(by_id(running)["progress"], "1 of 3 hosts answered");
}

#[test]
fn the_vm_page_shows_what_discovery_found_and_the_overview_a_vanished_vm() {
    let mut lab = lab();
    let found = |vms: Vec<hsdb::FoundVm>| hsdb::Found {
        hosts: vec![hsdb::FoundHost {
            name: "host-a".to_owned(),
            cpu_milli: 32_000,
            memory_mb: 262_144,
            vms,
        }],
        manage_new: false,
    };
    let web = hsdb::FoundVm {
        uuid: vm_web(),
        name: "web1".to_owned(),
        power: "Running".to_owned(),
        running: true,
        size: Some((2_000, 4_096)),
    };
    let db1 = hsdb::FoundVm {
        uuid: vm_db(),
        name: "db1".to_owned(),
        ..web.clone()
    };
    lab.db
        .apply_discovery(&found(vec![web.clone(), db1]), T0)
        .unwrap();
    let body = lab.ok("/vm/web1");
    assert!(
        body.contains("<dt>Power state</dt><dd>Running</dd>"),
        "{body}"
    );
    assert!(body.contains("data-vanished=\"no\""));
    // db1 is no longer listed: vanished.
    lab.db
        .apply_discovery(&found(vec![web]), T0 + 1_000)
        .unwrap();
    let body = lab.ok("/");
    assert!(body.contains("vanished from the platform"), "{body}");
    let body = lab.ok("/vm/db1");
    assert!(body.contains("data-vanished=\"yes\""));
}

#[test]
fn a_move_is_planned_then_confirmed_and_written() {
    let mut lab = lab();
    // web1 may never run on host-b: the plan says so and offers no button.
    let r = lab.act(
        &operator(),
        "move-plan",
        &[("vm", "web1"), ("target", "host-b")],
    );
    assert_eq!(r.status, 200);
    let body = String::from_utf8(r.body).unwrap();
    assert!(body.contains("The move cannot be done now"), "{body}");
    assert!(body.contains("exclusion list"), "{body}");
    assert!(!body.contains("data-action=\"move\""));
    // The VM on host-b has no policy: the plan names the target, how it moves and why.
    let evil = vm_evil().to_string();
    let r = lab.act(
        &operator(),
        "move-plan",
        &[("vm", &evil), ("target", "host-a")],
    );
    assert_eq!(r.status, 200);
    let body = String::from_utf8(r.body).unwrap();
    assert!(body.contains("<h1>Move VM &lt;script&gt;alert(1)&lt;/script&gt;</h1>"));
    assert!(!body.contains(EVIL));
    assert!(body.contains("data-plan-target=\"host-a\""), "{body}");
    assert!(body.contains("<ol class=\"explanation\">"), "{body}");
    assert!(body.contains("action=\"/action/move\""), "{body}");
    assert!(body.contains("<input type=\"hidden\" name=\"target\" value=\"host-a\">"));
    assert!(body.contains("data-action=\"move\""));
    assert!(
        lab.db.move_requests_of(&vm_evil(), 10).unwrap().is_empty(),
        "a plan writes nothing"
    );
    let r = lab.act(&operator(), "move", &[("vm", &evil), ("target", "host-a")]);
    assert_eq!(r.status, 303, "{}", String::from_utf8_lossy(&r.body));
    assert!(location(&r).starts_with(&format!("/vm/{}?ok=move&ref=", vm_evil())));
    let moves = lab.db.move_requests_of(&vm_evil(), 10).unwrap();
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].kind, RequestKind::Move);
    assert_eq!(moves[0].target_host, Some(HOST_A));
    assert_eq!(moves[0].host, HOST_B);
    assert_eq!(moves[0].requested_by, "dashboard:alice");
    // Without a target: the planner's best.
    assert_eq!(lab.act(&operator(), "move", &[("vm", "web1")]).status, 303);
    assert_eq!(
        lab.db.move_requests_of(&vm_web(), 10).unwrap()[0].target_host,
        None
    );
    let body = lab.ok(&format!("/vm/{evil}"));
    assert!(body.contains("Move requests") && body.contains("dashboard:alice"));
    // Read-only: refused, nothing written.
    assert_eq!(
        lab.act(&reader(), "move-plan", &[("vm", &evil)]).status,
        403
    );
    assert_eq!(lab.act(&reader(), "move", &[("vm", &evil)]).status, 403);
    assert_eq!(lab.db.move_requests_of(&vm_evil(), 10).unwrap().len(), 1);
}

#[test]
fn relocation_reasons_are_shown_and_sent_live() {
    let mut lab = lab();
    let why = "target host-b: fits (CPU 2 of 32 free)\nnot host-a: the VM failed there";
    let id = lab
        .db
        .relocation_begin_explained(
            &vm_web(),
            Some(HOST_A),
            Some(HOST_B),
            RelocationKind::Relocate,
            Some(why),
            T0,
        )
        .unwrap();
    let body = lab.ok("/relocations");
    assert!(body.contains("<td class=\"reasons\">target host-b: fits (CPU 2 of 32 free)\nnot host-a: the VM failed there</td>"));
    let body = lab.ok(&format!("/relocation/{id}"));
    assert!(body.contains("<pre class=\"reasons\">target host-b"));
    let snap: serde_json::Value =
        serde_json::from_str(&snapshot(&mut lab.db, T0).unwrap()).unwrap();
    assert_eq!(snap["relocations"][0]["reasons"], why);
}

#[test]
fn the_favicon_is_served_where_browsers_look() {
    let mut lab = lab();
    let r = lab.call(&operator(), page, &get("/favicon.ico", &[]));
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "image/svg+xml");
    assert!(String::from_utf8(r.body).unwrap().starts_with("<svg"));
}

#[test]
fn a_vm_on_no_host_offers_no_move() {
    let mut lab = lab();
    let ghost = uuid(9);
    lab.db
        .set_vm(
            &ghost,
            &VmSettings {
                name: Some("ghost".to_owned()),
                ..VmSettings::default()
            },
            T0,
        )
        .unwrap();
    let body = lab.ok("/vm/ghost");
    assert!(!body.contains("data-action=\"move-plan\""));
    let r = lab.act(&operator(), "move-plan", &[("vm", "ghost")]);
    let body = String::from_utf8(r.body).unwrap();
    assert!(body.contains("runs on no known host") && !body.contains("data-action=\"move\""));
    assert_eq!(lab.act(&operator(), "move", &[("vm", "ghost")]).status, 400);
}
