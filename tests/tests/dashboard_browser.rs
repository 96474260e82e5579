//! The dashboard in a real browser against a live lab (issue 12, item 5).
//!
//! The lab is the three-host group of `control_loop.rs` (`group::build`: two real `hmd`
//! per host writing one SQLite HSDB, real `vmmd` agents in namespaces and
//! `hvncp-loadgen` agents, 18 VMs; `hactl run` in the fast profile on libvirt's test
//! hypervisor), with `[dashboard] listen = "127.0.0.1:<free port>"` — plain HTTP on the
//! loopback of the control plane's namespace — and a users file made with
//! `hactl dashboard user add` (an operator and a read-only user; passwords on stdin).
//! Two headless Chromiums (`hvha_e2e::browser`) run in that namespace, one per user
//! (each its own cookies):
//!
//! 1. the operator logs in through the form; the overview and `/vms` list every VM and
//!    the live stream is connected (`document.body.dataset.live`);
//! 2. the read-only user logs in: no page shows it an action form, and a POST of an
//!    action carrying its own valid CSRF token (sent by `fetch` from the page) gets 403;
//! 3. VM `vm-0-1`'s agent is stopped with SIGSTOP and the VM stops answering ping (a
//!    hung VM): on the operator's open `/vms` its row turns `data-health="FAILED"`
//!    within the detection bound the lab's parameters give, without a reload (a marker
//!    set on the page after its load survives); on the read-only user's open
//!    `/relocations` its relocation appears, live, with the decision's reasons naming
//!    the target host; once the VM runs on its new host, the row shows that host;
//! 4. the VM detail, events, activities and move-plan pages are visited;
//! 5. across every page visited by both browsers: no console error, no uncaught
//!    exception, no failed request (but the deliberate 403).
//!
//! Screenshots of the main views go to the artifacts directory on every run
//! (`$HVHA_ARTIFACTS_DIR/dashboard`, else `target/hvha-artifacts/dashboard`; the path is
//! printed); with `HVHA_UPDATE_SCREENSHOTS=1` they are also copied to
//! `docs/img/dashboard-*.png` (README, docs/dashboard.md). Without Chromium the test is
//! skipped, except under `CI=true` where that fails.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use controlplane::params::GroupParams;
use hsdb::{DetectionSpeed, HostId};
use hvha_e2e::browser::{Browser, chromium_missing, png_size};
use hvha_e2e::group::{
    HOSTS, PING_TIMEOUT_MS, VM_MISS_AFTER_MS, build, hactl, real_vm, start_vmmd, vms_of,
};
use hvha_e2e::{binary, in_netns, unix_ms, uuid, wait_for};

/// The operator's account.
const OPERATOR: (&str, &str) = ("olivia", "operator password, long enough");
/// The read-only account.
const READER: (&str, &str) = ("rory", "read-only password, long enough");
/// What the browser adds to the detection bound: the page polled every 100 ms, the
/// live script's update, and scheduling on a loaded two-core machine.
const MARGIN_MS: i64 = 2_000;
/// How often the dashboard sends a changed snapshot to the live pages (contract A: web
/// calls `views::snapshot` once per second).
const SNAPSHOT_PERIOD_MS: i64 = 1_000;
/// Every page of the navigation (contract B).
const PAGES: [&str; 7] = [
    "/",
    "/hosts",
    "/vms",
    "/apps",
    "/events",
    "/relocations",
    "/activities",
];

/// Where the screenshots go.
fn artifacts_dir() -> PathBuf {
    let dir = match std::env::var_os("HVHA_ARTIFACTS_DIR") {
        Some(dir) => PathBuf::from(dir).join("dashboard"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hvha-artifacts/dashboard"),
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap_or(dir)
}

/// The screenshots of one run.
struct Shots {
    dir: PathBuf,
    update_docs: bool,
    taken: Vec<String>,
}

impl Shots {
    fn new() -> Shots {
        let dir = artifacts_dir();
        eprintln!("dashboard screenshots: {}", dir.display());
        Shots {
            dir,
            update_docs: std::env::var("HVHA_UPDATE_SCREENSHOTS").as_deref() == Ok("1"),
            taken: Vec::new(),
        }
    }

    /// Screenshot of `b`'s page as `dashboard-<name>.png`.
    fn take(&mut self, b: &mut Browser, name: &str) {
        let file = format!("dashboard-{name}.png");
        let path = self.dir.join(&file);
        let png = b
            .screenshot()
            .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        assert_eq!(png_size(&png), Some((1280, 800)), "screenshot {name} size");
        std::fs::write(&path, &png).unwrap();
        eprintln!("screenshot {} ({} bytes)", path.display(), png.len());
        if self.update_docs {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/img");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(&file), &png).unwrap();
        }
        self.taken.push(file);
    }
}

/// A port nobody listens on in namespace `ns`.
fn free_port(ns: &str) -> u16 {
    in_netns(ns, || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    })
}

/// `hactl --config <config> dashboard user add <name> --role <role>`, the password on
/// its standard input.
fn add_user(config: &Path, name: &str, role: &str, password: &str) {
    let mut child = Command::new(binary("hactl"))
        .arg("--config")
        .arg(config)
        .args(["dashboard", "user", "add", name, "--role", role])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "hactl dashboard user add {name}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Log in as `user` through the login form; the page it lands on is `/`.
fn login(b: &mut Browser, base: &str, (user, password): (&str, &str), role: &str) {
    let t = Duration::from_secs(15);
    b.navigate(&format!("{base}/login"), t).unwrap();
    b.wait_until("document.querySelector('form#login')", t)
        .unwrap();
    b.submit_form(
        "form#login",
        &[("username", user), ("password", password)],
        t,
    )
    .unwrap_or_else(|e| panic!("log in as {user}: {e}"));
    assert_eq!(
        b.url().unwrap(),
        format!("{base}/"),
        "{user} lands on the overview"
    );
    assert_eq!(b.eval_string("document.body.dataset.user").unwrap(), user);
    assert_eq!(b.eval_string("document.body.dataset.role").unwrap(), role);
    let nav = b
        .eval("[...document.querySelectorAll('nav a')].map(a => a.getAttribute('href'))")
        .unwrap();
    for page in PAGES {
        assert!(
            nav.as_array().unwrap().iter().any(|h| h == page),
            "the nav links {page}: {nav}"
        );
    }
}

/// JS: the names among `names` with no `tr[data-vm=NAME]` on the page.
fn missing_rows_js(names: &[String]) -> String {
    format!(
        "{}.filter(n => !document.querySelector(`tr[data-vm=\"${{n}}\"]`))",
        serde_json::to_string(names).unwrap()
    )
}

/// Wait until every VM has its row on the page (the rows the snapshot fills in count).
fn assert_every_vm(b: &mut Browser, names: &[String], page: &str) {
    let js = missing_rows_js(names);
    if b.wait_until(&format!("{js}.length === 0"), Duration::from_secs(10))
        .is_err()
    {
        panic!("{page}: no row for {}", b.eval(&js).unwrap());
    }
    let states = b
        .eval("[...document.querySelectorAll('tr[data-vm]')].filter(r => r.querySelector('td.vm-state') && r.querySelector('td.vm-health') && r.querySelector('td.vm-host')).length")
        .unwrap();
    assert!(
        states.as_u64().unwrap_or(0) >= names.len() as u64,
        "{page}: every VM row has its state, health and host cells ({states})"
    );
}

/// Wait until the page's live stream is connected.
fn assert_live(b: &mut Browser, page: &str) {
    b.wait_until(
        "document.body.dataset.live === 'connected'",
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("{page}: the live stream connects: {e}"));
}

/// The number of action forms on the page.
fn action_forms(b: &mut Browser) -> u64 {
    b.eval("document.querySelectorAll('form[action^=\"/action/\"], [data-action]').length")
        .unwrap()
        .as_u64()
        .unwrap()
}

#[test]
fn dashboard_in_a_real_browser() {
    if chromium_missing("e2e::dashboard_browser").is_some() {
        return;
    }
    let Some(mut g) = build("dashbr") else {
        return;
    };
    let started = Instant::now();
    let t = Duration::from_secs(15);
    let names: Vec<String> = (0..HOSTS.len())
        .flat_map(vms_of)
        .map(|(name, _)| name)
        .collect();
    // The hung VM never goes to host-c (so it goes to host-b, and its reasons say why
    // not host-c), as in control_loop.rs.
    hactl(
        &g.hsdb,
        &[
            "modify",
            "vm",
            "vm-0-1",
            "blacklist_hosts=host-c",
            "policy=add",
        ],
    );
    let port = free_port(&g.ctl_ns);
    let users = g.lab.dir.join("dashboard-users");
    let mut config = std::fs::read_to_string(&g.hactl_config).unwrap();
    config.push_str(&format!(
        "[dashboard]\nlisten = \"127.0.0.1:{port}\"\nusers_file = {:?}\n",
        users.display().to_string()
    ));
    std::fs::write(&g.hactl_config, config).unwrap();
    add_user(&g.hactl_config, OPERATOR.0, "operator", OPERATOR.1);
    add_user(&g.hactl_config, READER.0, "read-only", READER.1);
    assert!(
        wait_for(Duration::from_secs(30), || g.all_detected().then_some(())).is_some(),
        "every VM DETECTED by both monitors of its host within 30 s\n{}",
        g.logs()
    );
    let config = g.hactl_config.display().to_string();
    let ctl_ns = g.ctl_ns.clone();
    g.lab
        .spawn("hactl", &ctl_ns, "hactl", &["--config", &config, "run"]);
    let addr = format!("127.0.0.1:{port}");
    let listening = {
        let addr = addr.clone();
        wait_for(Duration::from_secs(15), || {
            let addr = addr.clone();
            in_netns(&ctl_ns, move || TcpStream::connect(addr).ok())
        })
    };
    assert!(
        listening.is_some(),
        "the dashboard listens on {addr}\n{}",
        g.logs()
    );
    let base = format!("http://{addr}");
    let mut shots = Shots::new();

    // 1. The operator.
    let mut op = Browser::launch(Some(&ctl_ns)).unwrap_or_else(|e| panic!("{e}"));
    op.navigate(&format!("{base}/"), t).unwrap();
    assert!(
        op.url().unwrap().starts_with(&format!("{base}/login")),
        "not logged in: / leads to the login page"
    );
    shots.take(&mut op, "login");
    // A wrong password: the form again, with an error.
    op.submit_form(
        "form#login",
        &[("username", OPERATOR.0), ("password", "not the password")],
        t,
    )
    .unwrap();
    assert!(
        op.eval("!!document.querySelector('form#login') && !!document.querySelector('p.error')")
            .unwrap()
            .as_bool()
            .unwrap(),
        "a wrong password shows the form again with an error"
    );
    // A refused login may answer with an error status: the only thing allowed to go
    // wrong on that page is the login request itself.
    let refused = op.take_problems();
    assert!(
        refused.iter().all(|p| p.url.ends_with("/login")),
        "a wrong password breaks nothing else: {refused:?}"
    );
    login(&mut op, &base, OPERATOR, "operator");
    assert_every_vm(&mut op, &names, "/");
    assert_live(&mut op, "/");
    op.navigate(&format!("{base}/vms"), t).unwrap();
    assert_every_vm(&mut op, &names, "/vms");
    assert_live(&mut op, "/vms");
    op.navigate(&format!("{base}/vm/vm-0-2"), t).unwrap();
    assert!(
        action_forms(&mut op) > 0,
        "the operator sees action forms on /vm/vm-0-2"
    );

    // 2. The read-only user: no action forms anywhere, and its POST refused.
    let mut ro = Browser::launch(Some(&ctl_ns)).unwrap_or_else(|e| panic!("{e}"));
    login(&mut ro, &base, READER, "read-only");
    for page in PAGES.iter().copied().chain(["/vm/vm-0-2"]) {
        ro.navigate(&format!("{base}{page}"), t).unwrap();
        assert_eq!(
            action_forms(&mut ro),
            0,
            "{page}: no action form for the read-only user"
        );
    }
    let token = ro
        .eval_string(
            "(document.querySelector('input[name=csrf]') || {}).value \
             || (document.querySelector('meta[name=csrf]') || {}).content || ''",
        )
        .unwrap();
    assert!(
        !token.is_empty(),
        "the read-only user's page carries its CSRF token"
    );
    let status = ro
        .eval(&format!(
            "fetch('/action/discover', {{method: 'POST', body: new URLSearchParams({{csrf: {}, depth: 'quick', group: 'hg1'}})}}).then(r => r.status)",
            serde_json::to_string(&token).unwrap()
        ))
        .unwrap();
    assert_eq!(
        status, 403,
        "a read-only POST with a valid CSRF token is refused"
    );
    let activities = g.db().unwrap().activities(None, 100).unwrap();
    assert!(
        !activities.iter().any(|a| a.requested_by.contains(READER.0)),
        "the refused POST requested nothing: {activities:?}"
    );
    ro.settle(Duration::from_millis(300)).unwrap();
    let refused = ro.take_problems();
    assert!(
        refused
            .iter()
            .all(|p| p.url.ends_with("/action/discover") && p.text.contains("403")),
        "only the deliberate 403 went wrong: {refused:?}"
    );

    // 3. A hung VM, watched live on /vms (operator) and /relocations (read-only).
    let p = GroupParams::fast("hg1");
    let na_cycle = i64::from(p.na_every) * p.scan_interval_ms;
    // The monitors declare it MISSING, the control plane waits its VMFDT (seed 004
    // L4793-4798), sees it at the next NeedsAttention scan, pings it once (no answer),
    // and the page hears of it with the next snapshot.
    let bound = VM_MISS_AFTER_MS
        + p.vmfdt_ms(DetectionSpeed::Normal)
        + na_cycle
        + PING_TIMEOUT_MS
        + SNAPSHOT_PERIOD_MS;
    let watch = "(() => { window.__hvhaNoReload = 1; window.__hvhaFailedAt = 0;
        const check = () => { const r = document.querySelector('tr[data-vm=\"vm-0-1\"]');
          if (r && r.dataset.health === 'FAILED' && !window.__hvhaFailedAt) window.__hvhaFailedAt = Date.now(); };
        new MutationObserver(check).observe(document.body, {subtree: true, childList: true, attributes: true});
        check(); return 'ok'; })()";
    op.navigate(&format!("{base}/vms"), t).unwrap();
    assert_live(&mut op, "/vms");
    assert_eq!(op.eval_string(watch).unwrap(), "ok");
    assert_eq!(
        op.eval_string("document.querySelector('tr[data-vm=\"vm-0-1\"]').dataset.health")
            .unwrap(),
        "OK",
        "vm-0-1 is healthy before its agent stops"
    );
    ro.navigate(&format!("{base}/relocations"), t).unwrap();
    assert_live(&mut ro, "/relocations");
    ro.eval("window.__hvhaNoReload = 1").unwrap();
    let before = ro
        .eval("document.querySelectorAll('tr[data-relocation][data-vm=\"vm-0-1\"]').length")
        .unwrap();
    assert_eq!(before, 0, "no relocation of vm-0-1 before the fault");

    let fault = unix_ms();
    g.hang(0, 1, true);
    let within = Duration::from_millis(u64::try_from(bound + MARGIN_MS).unwrap() + 10_000);
    op.wait_until("window.__hvhaFailedAt > 0", within)
        .unwrap_or_else(|e| panic!("vm-0-1 never shown FAILED: {e}\n{}", g.logs()));
    let failed_at = op.eval("window.__hvhaFailedAt").unwrap().as_i64().unwrap();
    let took = failed_at - fault;
    eprintln!(
        "vm-0-1 shown FAILED {took} ms after its agent stopped (bound {bound} ms + {MARGIN_MS} ms)"
    );
    assert!(
        took <= bound + MARGIN_MS,
        "vm-0-1 shown FAILED after {took} ms; the bound is {bound} ms + {MARGIN_MS} ms"
    );
    assert_eq!(
        op.eval("window.__hvhaNoReload").unwrap(),
        1,
        "/vms was not reloaded"
    );
    assert_eq!(
        op.eval_string("document.body.dataset.live").unwrap(),
        "connected"
    );
    shots.take(&mut op, "vms");

    // Its relocation, live on /relocations.
    let row = "document.querySelector('tr[data-relocation][data-vm=\"vm-0-1\"]')";
    ro.wait_until(row, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("no relocation of vm-0-1 on /relocations: {e}\n{}", g.logs()));
    assert_eq!(
        ro.eval("window.__hvhaNoReload").unwrap(),
        1,
        "/relocations was not reloaded"
    );
    assert_eq!(
        ro.eval_string("document.body.dataset.live").unwrap(),
        "connected"
    );
    let kind = ro.eval_string(&format!("{row}.dataset.kind")).unwrap();
    assert!(
        ["RESTART", "RELOCATE", "MOVE"].contains(&kind.as_str()),
        "data-kind {kind:?}"
    );
    let hung = uuid(&real_vm(0, 1));
    let r = g
        .wait_relocated(&hung, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("vm-0-1 never relocated\n{}", g.logs()));
    assert_eq!(r.to_host, Some(HostId(HOSTS[1].1)), "vm-0-1 goes to host-b");
    // Its reasons: what the engine stored with the relocation (HSDB
    // `relocation.reasons`), on the page, naming the target host.
    let reasons_js = format!("({row}.querySelector('td.reasons') || {{}}).textContent || ''");
    match r
        .reasons
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(stored) => {
            assert!(
                stored.contains("host-b"),
                "the stored reasons name the target host-b: {stored:?}"
            );
            ro.wait_until(
                &format!("({reasons_js}).includes('host-b')"),
                Duration::from_secs(10),
            )
            .unwrap_or_else(|e| {
                panic!(
                    "the page shows the relocation's reasons naming host-b: {e}; it shows {:?}",
                    ro.eval_string(&reasons_js)
                )
            });
            eprintln!(
                "relocation reasons on the page: {}",
                ro.eval_string(&reasons_js).unwrap()
            );
        }
        None => {
            // Not faked: the engine did not store any (the page shows its placeholder).
            let shown = ro.eval_string(&reasons_js).unwrap();
            eprintln!(
                "NOTE: relocation {} of vm-0-1 has no reasons stored in the HSDB; the page shows {shown:?}",
                r.id
            );
            assert!(
                !shown.contains("host-"),
                "the page shows no reasons the HSDB does not have: {shown:?}"
            );
        }
    }

    // The VM boots on its new host (the test plays it, as in control_loop.rs): the
    // operator's page shows it there, healthy, still without a reload.
    // The screenshot from a fresh load: the row as the server renders it whole.
    ro.reload(t).unwrap();
    // The stream's first snapshot may be up to a tick older than the page: let a fresh
    // one arrive before the picture.
    ro.settle(Duration::from_millis(2500)).unwrap();
    ro.wait_until(&format!("{row}.dataset.phase === 'done'"), t)
        .unwrap_or_else(|e| panic!("/relocations shows the relocation done: {e}"));
    shots.take(&mut ro, "relocations");
    g.lab.kill_9("vmmd-0-1");
    let spare = g.spare_ns[1].clone();
    start_vmmd(&mut g.lab, "vmmd-moved", &spare, &real_vm(0, 1));
    let cells = "(() => { const r = document.querySelector('tr[data-vm=\"vm-0-1\"]');
        return r.querySelector('td.vm-host').textContent.includes('host-b') && r.dataset.health !== 'FAILED'; })()";
    op.wait_until(cells, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("/vms shows vm-0-1 healthy on host-b: {e}\n{}", g.logs()));
    assert_eq!(
        op.eval("window.__hvhaNoReload").unwrap(),
        1,
        "/vms was not reloaded"
    );

    // 4. The other main views.
    op.navigate(&format!("{base}/vm/vm-0-1"), t).unwrap();
    assert!(
        op.eval("!!document.querySelector('tr[data-vm=\"vm-0-1\"]')")
            .unwrap()
            .as_bool()
            .unwrap(),
        "/vm/vm-0-1 shows the VM"
    );
    shots.take(&mut op, "vm");
    op.navigate(&format!("{base}/events"), t).unwrap();
    op.wait_until("document.querySelector('tr[data-event]')", t)
        .unwrap_or_else(|e| panic!("/events lists the events: {e}"));
    shots.take(&mut op, "events");
    op.click_and_wait("tr[data-event] a", t)
        .unwrap_or_else(|e| panic!("an event opens its details: {e}"));
    assert!(op.url().unwrap().contains("/event/"), "event details page");
    op.navigate(&format!("{base}/events?severity=critical"), t)
        .unwrap();
    let other = op
        .eval("[...document.querySelectorAll('tr[data-event]')].filter(r => r.dataset.severity !== 'critical').length")
        .unwrap();
    assert_eq!(
        other, 0,
        "/events?severity=critical lists only critical events"
    );
    // A quick discovery asked for by the operator: its activity appears on the page.
    op.navigate(&format!("{base}/activities"), t).unwrap();
    op.submit_form(
        "form[action=\"/action/discover\"]:has(input[name=depth][value=quick])",
        &[],
        t,
    )
    .unwrap_or_else(|e| panic!("request a quick discovery: {e}"));
    let activity = "document.querySelector('tr[data-activity][data-kind=\"QUICK_DISCOVERY\"]')";
    op.wait_until(activity, t)
        .unwrap_or_else(|e| panic!("the quick discovery on /activities: {e}"));
    // Its leader carries it out (discover's worker in hactl run); shown live.
    let done = op.wait_until(
        &format!("['DONE', 'FAILED'].includes({activity}.dataset.state)"),
        Duration::from_secs(15),
    );
    eprintln!(
        "quick discovery on /activities: {} ({done:?})",
        op.eval_string(&format!("{activity}.dataset.state"))
            .unwrap()
    );
    op.settle(Duration::from_millis(1200)).unwrap();
    shots.take(&mut op, "activities");
    op.navigate(&format!("{base}/vm/vm-0-2"), t).unwrap();
    op.submit_form("form[action=\"/action/move-plan\"]", &[], t)
        .unwrap_or_else(|e| panic!("the move plan of vm-0-2: {e}"));
    assert!(
        op.eval("!!document.querySelector('form[action=\"/action/move\"]')")
            .unwrap()
            .as_bool()
            .unwrap(),
        "the move plan asks for a confirmation"
    );
    // The plan itself: the planner's explanation (contract D), its target first.
    let plan = op.eval_string("document.body.innerText").unwrap();
    assert!(
        plan.contains("vm-0-2: to host-b") || plan.contains("vm-0-2: to host-c"),
        "the move plan names its target and why: {plan}"
    );
    shots.take(&mut op, "move-plan");
    // Hosts and their monitors: every host, both monitors of each, up.
    op.navigate(&format!("{base}/hosts"), t).unwrap();
    for (host, _) in HOSTS {
        assert!(
            op.eval(&format!(
                "!!document.querySelector('tr[data-host=\"{host}\"]')"
            ))
            .unwrap()
            .as_bool()
            .unwrap(),
            "/hosts has a row for {host}"
        );
    }
    let monitors = op
        .eval("[...document.querySelectorAll('tr[data-hm]')].map(r => r.dataset.state)")
        .unwrap();
    let states: Vec<&str> = monitors
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert_eq!(
        states, ["UP"; 6],
        "/hosts shows the six monitors, up: {monitors}"
    );
    op.navigate(&format!("{base}/apps"), t).unwrap();
    op.navigate(&format!("{base}/"), t).unwrap();
    assert_every_vm(&mut op, &names, "/");
    op.settle(Duration::from_millis(1500)).unwrap();
    shots.take(&mut op, "overview");
    op.settle(Duration::from_millis(500)).unwrap();
    ro.settle(Duration::from_millis(500)).unwrap();

    // The read-only user logs out: its session is gone.
    ro.navigate(&format!("{base}/vms"), t).unwrap();
    ro.submit_form("form[action=\"/logout\"]", &[], t)
        .unwrap_or_else(|e| panic!("log out: {e}"));
    ro.navigate(&format!("{base}/vms"), t).unwrap();
    assert!(
        ro.url().unwrap().starts_with(&format!("{base}/login")),
        "after logging out, /vms leads to the login page"
    );

    // 5. Nothing went wrong on any page.
    let problems: Vec<String> = op
        .take_problems()
        .iter()
        .map(|p| format!("operator: {p}"))
        .chain(ro.take_problems().iter().map(|p| format!("read-only: {p}")))
        .collect();
    assert!(
        problems.is_empty(),
        "console errors, exceptions or failed requests:\n{}",
        problems.join("\n")
    );
    eprintln!(
        "dashboard in a real browser: {} screenshots, {:.1} s",
        shots.taken.len(),
        started.elapsed().as_secs_f64()
    );
}
