//! The AME service on the real clock with real scripts and real local servers.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{BufRead, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::ame::probe::{HttpProbe, ProbeKind};
use crate::ame::run::tests::script;

const S: Duration = Duration::from_secs(1);

/// Every status the AME published, through `on_change`.
type Seen = Arc<Mutex<Vec<(u64, Vec<AppStatus>)>>>;

fn record(h: &AmeHandle) -> Seen {
    let seen: Seen = Arc::new(Mutex::new(vec![h.status()]));
    let (h2, s2) = (h.clone(), seen.clone());
    h.set_on_change(Box::new(move || s2.lock().unwrap().push(h2.status())));
    seen
}

/// The successive distinct states of `app` in what was published.
fn states(seen: &Seen, app: &str) -> Vec<AppState> {
    let mut out: Vec<AppState> = Vec::new();
    for (_, apps) in seen.lock().unwrap().iter() {
        if let Some(a) = apps.iter().find(|a| a.name == app)
            && out.last() != Some(&a.state)
        {
            out.push(a.state);
        }
    }
    out
}

fn wait_for(h: &AmeHandle, what: &str, pred: impl Fn(&[AppStatus]) -> bool) -> Vec<AppStatus> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, apps) = h.status();
        if pred(&apps) {
            return apps;
        }
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}: {apps:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn state_is(app: &'static str, state: AppState) -> impl Fn(&[AppStatus]) -> bool {
    move |apps| apps.iter().any(|a| a.name == app && a.state == state)
}

fn dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o700)).unwrap();
    d
}

/// monitor: healthy while `<dir>/up` exists; start and stop append to `<dir>/log`
/// (the start does not bring the application back).
fn scripted(d: &Path, name: &str) -> AppConfig {
    let up = d.join("up");
    let log = d.join("log");
    let mon = script(
        d,
        "mon",
        &format!("[ -f {} ] || {{ echo not up; exit 1; }}", up.display()),
    );
    let start = script(d, "start", &format!("echo start >> {}", log.display()));
    let stop = script(d, "stop", &format!("echo stop >> {}", log.display()));
    let mut app = AppConfig::new(name, mon, start, stop);
    app.monitor_period = 2 * S;
    app.monitor_timeout = S;
    app.start_stabilization_time = 5 * S;
    app.stop_stabilization_time = 5 * S;
    app
}

fn one(app: AppConfig) -> AmeConfig {
    AmeConfig {
        apps: vec![app],
        dependencies: vec![],
    }
}

fn spawn(config: AmeConfig) -> Ame {
    Ame::spawn_with(config, Duration::from_millis(300)).unwrap()
}

/// Spawned with monitoring suspended, recorded, then resumed: no status is missed.
fn spawn_recorded(mut config: AmeConfig) -> (Ame, AmeHandle, Seen) {
    for app in &mut config.apps {
        app.monitored = false;
    }
    let ame = spawn(config);
    let h = ame.handle();
    let seen = record(&h);
    h.command(OperatorCommand::Resume(None)).unwrap();
    (ame, h, seen)
}

#[test]
fn a_dead_application_is_restarted_then_declared_failed() {
    let d = dir();
    fs::write(d.path().join("up"), "").unwrap();
    let mut app = scripted(d.path(), "web");
    app.monitor_failure_threshold = 2;
    app.max_restart = 1;
    app.critical = true;
    let (ame, h, seen) = spawn_recorded(one(app));
    wait_for(&h, "NORMAL", state_is("web", AppState::Normal));
    fs::remove_file(d.path().join("up")).unwrap();
    let apps = wait_for(&h, "FAILURE", state_is("web", AppState::Failure));
    assert_eq!(
        states(&seen, "web"),
        [
            AppState::Unset,
            AppState::Normal,
            AppState::Failing,
            AppState::ToStop,
            AppState::ToStart,
            AppState::Normal,
            AppState::Failing,
            AppState::Failure,
        ]
    );
    let to_stop: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, a)| a[0].state == AppState::ToStop)
        .map(|(_, a)| a[0].detail.clone())
        .collect();
    assert_eq!(
        to_stop,
        ["lost after first success: monitor script: exit status 1: not up"],
        "why it is being restarted"
    );
    let web = &apps[0];
    assert_eq!((web.restarts, web.max_restart), (1, 1));
    let counters = &h.counters()[0];
    assert_eq!(counters.last_monitor, Some(Outcome::Failed));
    assert_eq!(
        (counters.stop_failures, counters.start_failures),
        (0, 0),
        "the stop and start scripts succeeded"
    );
    // The restart's start script succeeded but the application never answered after
    // it: "never came up" counts from the last start.
    assert!(web.critical && web.monitored);
    assert_eq!(web.monitor, MonitorKind::Script);
    assert!(
        web.detail.starts_with("local restart insufficient: 1 restarts (max_restart 1); last failure: never came up: monitor script: exit status 1: not up"),
        "{}",
        web.detail
    );
    assert_eq!(
        fs::read_to_string(d.path().join("log")).unwrap(),
        "stop\nstart\n"
    );
    let gens: Vec<u64> = seen.lock().unwrap().iter().map(|(g, _)| *g).collect();
    assert!(gens.windows(2).all(|w| w[0] < w[1]), "{gens:?}");
    assert_eq!(gens[0], 1);
    ame.shutdown();
}

#[test]
fn a_monitor_failing_twice_then_recovering_is_not_restarted() {
    let d = dir();
    let count = d.path().join("count");
    fs::write(&count, "0").unwrap();
    let mut app = scripted(d.path(), "db");
    // Runs 0 and 3.. succeed, runs 1 and 2 fail.
    app.monitor_script = script(
        d.path(),
        "mon2",
        &format!(
            "n=$(cat {c}); echo $((n+1)) > {c}\nif [ $n -eq 1 ] || [ $n -eq 2 ]; then echo failing run $n; exit 1; fi",
            c = count.display()
        ),
    );
    app.monitor_failure_threshold = 3;
    // A run killed at its timeout would be a third failure (a restart) and fail the test
    // for the wrong reason: on a loaded machine a shell script may take over 1 s to start.
    app.monitor_period = 4 * S;
    app.monitor_timeout = 3 * S;
    let (_ame, h, seen) = spawn_recorded(one(app));
    wait_for(&h, "the fourth run", |_| {
        fs::read_to_string(&count).unwrap().trim() == "4"
    });
    let apps = wait_for(&h, "NORMAL again", state_is("db", AppState::Normal));
    assert_eq!(
        states(&seen, "db"),
        [
            AppState::Unset,
            AppState::Normal,
            AppState::Failing,
            AppState::Normal
        ]
    );
    let details: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, a)| a[0].state == AppState::Failing)
        .map(|(_, a)| a[0].detail.clone())
        .collect();
    assert_eq!(
        details,
        [
            "lost after first success: monitor script: exit status 1: failing run 1",
            "lost after first success: monitor script: exit status 1: failing run 2"
        ]
    );
    assert_eq!(apps[0].restarts, 0);
    assert_eq!(apps[0].detail, "", "NORMAL has no detail");
    let counters = h.counters();
    assert_eq!(counters[0].name, "db");
    assert_eq!(counters[0].last_monitor, Some(Outcome::Ok));
    assert_eq!(counters[0].monitor_failures, 0);
    assert!(
        !d.path().join("log").exists(),
        "neither stopped nor started"
    );
}

#[test]
fn unusable_scripts_make_the_application_abnormal() {
    let d = dir();
    let adir = d.path().join("a");
    fs::create_dir(&adir).unwrap();
    let a = scripted(&adir, "a");
    fs::set_permissions(&a.monitor_script, fs::Permissions::from_mode(0o644)).unwrap();
    // b's monitor fails at once (no up file): its start runs, and it is group-writable.
    let bdir = d.path().join("b");
    fs::create_dir(&bdir).unwrap();
    let b = scripted(&bdir, "b");
    fs::set_permissions(&b.start_script, fs::Permissions::from_mode(0o775)).unwrap();
    let missing = AppConfig {
        monitor_script: d.path().join("nowhere"),
        ..scripted(d.path(), "c")
    };
    let ame = spawn(AmeConfig {
        apps: vec![a.clone(), b.clone(), missing],
        dependencies: vec![],
    });
    let h = ame.handle();
    let apps = wait_for(&h, "three ABNORMAL", |apps| {
        apps.iter().all(|a| a.state == AppState::Abnormal)
    });
    assert_eq!(
        apps[0].detail,
        format!("{}: not executable (mode 0644)", a.monitor_script.display())
    );
    assert_eq!(
        apps[1].detail,
        format!(
            "{}: writable by group or others (mode 0775)",
            b.start_script.display()
        )
    );
    assert!(
        apps[2].detail.ends_with("nowhere: no such file"),
        "{}",
        apps[2].detail
    );
    // Repaired and started by the operator: it runs again.
    fs::set_permissions(&a.monitor_script, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(adir.join("up"), "").unwrap();
    h.command(OperatorCommand::Start(Some("a".into()))).unwrap();
    wait_for(&h, "a NORMAL", state_is("a", AppState::Normal));
}

/// An HTTP server that answers 200 while `serving`, and otherwise closes every
/// connection at once.
struct Flaky {
    port: u16,
    serving: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Flaky {
    fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let serving = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (sv, st) = (serving.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok((s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                if !sv.load(Ordering::Relaxed) {
                    continue;
                }
                s.set_nonblocking(false).unwrap();
                answer(s);
            }
        });
        Self {
            port,
            serving,
            stop,
        }
    }
}

fn answer(mut s: TcpStream) {
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
        line.clear();
    }
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_probe_tells_never_came_up_from_lost() {
    let d = dir();
    let srv = Flaky::start();
    let mut probe = ProbeConfig::new(ProbeKind::Http(HttpProbe {
        uri: "/health".into(),
        ..HttpProbe::default()
    }));
    probe.server = "127.0.0.1".into();
    probe.port = srv.port;
    probe.interval = S;
    probe.timeout = S;
    probe.retries = 1;
    probe.retry_wait = S;
    let base = scripted(d.path(), "web");
    let mut app = AppConfig::probed("web", probe, base.start_script, base.stop_script);
    app.monitor_failure_threshold = 3;
    let (_ame, h, seen) = spawn_recorded(one(app));
    // Down from the start: after the attempt and its retry, a start.
    let apps = wait_for(&h, "the start", |_| d.path().join("log").exists());
    assert_eq!(apps[0].monitor, MonitorKind::Http);
    let never = seen
        .lock()
        .unwrap()
        .iter()
        .find(|(_, a)| a[0].state == AppState::ToStart)
        .map(|(_, a)| a[0].detail.clone())
        .unwrap();
    assert_eq!(
        never,
        format!(
            "never came up: http probe of 127.0.0.1:{} failed 2 times: connection closed before the HTTP status line",
            srv.port
        )
    );
    srv.serving.store(true, Ordering::Relaxed);
    wait_for(&h, "NORMAL", state_is("web", AppState::Normal));
    // One success after the start, then the server dies.
    std::thread::sleep(Duration::from_millis(2500));
    srv.serving.store(false, Ordering::Relaxed);
    let apps = wait_for(&h, "FAILING", state_is("web", AppState::Failing));
    assert!(
        apps[0]
            .detail
            .starts_with("lost after first success: http probe of 127.0.0.1:"),
        "{}",
        apps[0].detail
    );
}

#[test]
fn operator_commands_and_unknown_names() {
    let d = dir();
    fs::write(d.path().join("up"), "").unwrap();
    let ame = spawn(one(scripted(d.path(), "app1")));
    let h = ame.handle();
    wait_for(&h, "NORMAL", state_is("app1", AppState::Normal));
    assert_eq!(
        h.command(OperatorCommand::Stop(Some("nope".into()))),
        Err(AmeError::UnknownApp {
            name: "nope".into()
        })
    );
    assert_eq!(
        AmeError::UnknownApp {
            name: "nope".into()
        }
        .to_string(),
        "no application named nope"
    );
    // Start of a healthy application runs no start script.
    h.command(OperatorCommand::Start(None)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(!d.path().join("log").exists());
    h.command(OperatorCommand::Stop(Some("app1".into())))
        .unwrap();
    let apps = wait_for(&h, "stopped", |a| {
        a[0].state == AppState::Unset && !a[0].monitored
    });
    assert_eq!(apps[0].detail, "stopped by the operator");
    assert_eq!(fs::read_to_string(d.path().join("log")).unwrap(), "stop\n");
    h.command(OperatorCommand::Start(Some("app1".into())))
        .unwrap();
    let apps = wait_for(&h, "started", state_is("app1", AppState::Normal));
    assert!(apps[0].monitored);
    assert_eq!(
        fs::read_to_string(d.path().join("log")).unwrap(),
        "stop\nstart\n"
    );
    h.command(OperatorCommand::Suspend(None)).unwrap();
    wait_for(&h, "suspended", |a| !a[0].monitored);
    h.command(OperatorCommand::Resume(None)).unwrap();
    wait_for(&h, "resumed", |a| a[0].monitored);
    ame.shutdown();
    assert_eq!(
        h.command(OperatorCommand::Resume(None)),
        Err(AmeError::NotRunning)
    );
}

#[test]
fn set_config_keeps_unchanged_applications() {
    let d = dir();
    fs::write(d.path().join("up"), "").unwrap();
    let a = scripted(d.path(), "a");
    let b = AppConfig {
        name: "b".into(),
        ..a.clone()
    };
    let ame = spawn(AmeConfig {
        apps: vec![a.clone(), b.clone()],
        dependencies: vec![],
    });
    let h = ame.handle();
    let before = wait_for(&h, "both NORMAL", |apps| {
        apps.iter().all(|x| x.state == AppState::Normal)
    });
    let (gen_before, _) = h.status();
    let mut a2 = a.clone();
    a2.critical = true;
    let mut b2 = b.clone();
    b2.monitor_failure_threshold = 2;
    let c = AppConfig {
        name: "c".into(),
        ..a.clone()
    };
    let new = AmeConfig {
        apps: vec![a2, b2, c],
        dependencies: vec![],
    };
    h.set_config(new.clone()).unwrap();
    assert_eq!(h.config(), new);
    let (gen_after, apps) = h.status();
    assert!(gen_after > gen_before);
    assert_eq!(apps.len(), 3);
    assert_eq!(apps[0].state, AppState::Normal, "a kept its state");
    assert_eq!(apps[0].since_ms, before[0].since_ms);
    assert!(apps[0].critical);
    assert_ne!(apps[1].since_ms, 0);
    assert_eq!(apps[1].state, AppState::Unset, "b changed: afresh");
    // An invalid configuration is refused and changes nothing.
    let mut bad = new.clone();
    bad.apps[0].monitor_period = Duration::ZERO;
    let err = h.set_config(bad).unwrap_err();
    assert!(err.to_string().contains("monitor_period"), "{err}");
    assert_eq!(h.config(), new);
    h.set_config(AmeConfig::default()).unwrap();
    assert_eq!(h.status().1, vec![]);
}

#[test]
fn shutdown_kills_running_scripts() {
    let d = dir();
    let pidfile = d.path().join("pid");
    let mut app = scripted(d.path(), "slow");
    app.monitor_script = script(
        d.path(),
        "hang",
        &format!("echo $$ > {}\nexec sleep 600", pidfile.display()),
    );
    app.monitor_timeout = Duration::from_secs(60);
    app.monitor_period = Duration::from_secs(120);
    let ame = spawn(one(app));
    let until = Instant::now() + Duration::from_secs(20);
    while !pidfile.exists() || fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
        assert!(Instant::now() < until, "the monitor never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid: u32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let t0 = Instant::now();
    ame.shutdown();
    let proc_path = PathBuf::from(format!("/proc/{pid}/stat"));
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let gone = fs::read_to_string(&proc_path)
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if gone {
            break;
        }
        assert!(
            Instant::now() < until,
            "the monitor {pid} survived the shutdown"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(t0.elapsed() < Duration::from_secs(10));
}

/// A measurement harness, not a test: the AME's cost with 16 applications TCP-probed
/// every second (the process's CPU time, listener included, and its RSS).
/// `cargo test -p agent measure_ -- --ignored --nocapture`; `HVHA_AME_PERF_SECS`
/// sets the length (default 60 s).
#[test]
#[ignore = "measurement harness, run by hand"]
fn measure_sixteen_tcp_probes_every_second() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
    let d = dir();
    let base = scripted(d.path(), "x");
    let apps = (0..16)
        .map(|i| {
            let mut p = ProbeConfig::new(ProbeKind::Tcp);
            p.server = "127.0.0.1".into();
            p.port = port;
            p.interval = S;
            p.timeout = S;
            AppConfig::probed(
                format!("app{i}"),
                p,
                base.start_script.clone(),
                base.stop_script.clone(),
            )
        })
        .collect();
    let ame = spawn(AmeConfig {
        apps,
        dependencies: vec![],
    });
    let h = ame.handle();
    wait_for(&h, "all NORMAL", |a| {
        a.iter().all(|x| x.state == AppState::Normal)
    });
    let cpu = || {
        let stat = fs::read_to_string("/proc/self/stat").unwrap();
        let f: Vec<u64> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|x| x.parse().unwrap())
            .collect();
        f[0] + f[1]
    };
    let rss = || {
        fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("VmRSS"))
            .unwrap()
            .to_owned()
    };
    std::thread::sleep(Duration::from_secs(5));
    eprintln!("rss at start {}", rss());
    let secs = std::env::var("HVHA_AME_PERF_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let (c0, t0) = (cpu(), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let (c1, el) = (cpu(), t0.elapsed());
    // Clock ticks are 1/100 s (USER_HZ).
    let pct = (c1 - c0) as f64 / el.as_secs_f64();
    eprintln!(
        "16 tcp probes/s: {} ticks in {:?} = {pct:.3} % of a core; gen {}",
        c1 - c0,
        el,
        h.status().0
    );
    eprintln!("rss at end {}", rss());
    assert!(h.status().1.iter().all(|x| x.state == AppState::Normal));
}

#[test]
fn a_start_script_that_always_fails_ends_in_failure_with_its_counter() {
    let d = dir();
    let mut app = scripted(d.path(), "broken");
    app.start_script = script(d.path(), "start-fails", "echo port 80 in use >&2\nexit 2");
    let ame = spawn(one(app));
    let h = ame.handle();
    let apps = wait_for(&h, "FAILURE", state_is("broken", AppState::Failure));
    assert_eq!(
        apps[0].detail,
        "cannot start: start_script failed 3 times in a row; last failure: start script: exit status 2: port 80 in use"
    );
    let c = &h.counters()[0];
    assert_eq!((c.start_failures, c.stop_failures), (3, 0));
    assert_eq!(c.last_monitor, Some(Outcome::Failed), "down at boot");
    assert_eq!(apps[0].restarts, 0, "a start at boot is no restart");
}

#[test]
fn a_stop_kills_the_monitor_it_abandons() {
    let d = dir();
    fs::write(d.path().join("up"), "").unwrap();
    let pidfile = d.path().join("mon.pid");
    let mut app = scripted(d.path(), "app1");
    let up = d.path().join("up");
    // Healthy at first; then hangs while "hang" exists.
    app.monitor_script = script(
        d.path(),
        "mon-hang",
        &format!(
            "if [ -f {hang} ]; then echo $$ > {pid}; exec sleep 600; fi\n[ -f {up} ]",
            hang = d.path().join("hang").display(),
            pid = pidfile.display(),
            up = up.display()
        ),
    );
    app.monitor_timeout = Duration::from_secs(60);
    app.monitor_period = Duration::from_secs(61);
    let ame = spawn(one(app));
    let h = ame.handle();
    wait_for(&h, "NORMAL", state_is("app1", AppState::Normal));
    fs::write(d.path().join("hang"), "").unwrap();
    // Monitor now (an operator Start of a NORMAL application checks it at once).
    h.command(OperatorCommand::Start(Some("app1".into())))
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while fs::read_to_string(&pidfile).map_or(true, |s| s.trim().is_empty()) {
        assert!(Instant::now() < until, "the monitor never hung");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid: u32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    h.command(OperatorCommand::Stop(Some("app1".into())))
        .unwrap();
    wait_for(&h, "stopped", |a| {
        a[0].state == AppState::Unset && !a[0].monitored
    });
    let stat = PathBuf::from(format!("/proc/{pid}/stat"));
    let until = Instant::now() + Duration::from_secs(10);
    while fs::read_to_string(&stat).is_ok_and(|s| {
        !s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    }) {
        assert!(
            Instant::now() < until,
            "the abandoned monitor {pid} still runs"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
