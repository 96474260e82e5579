//! Notifications end to end: real receivers on 127.0.0.1 written here (an HTTP server,
//! an SMTP sink), a real exec hook (a shell script), a real HSDB, the notifier threads of
//! `controlplane::notify` configured from `hactl.toml` text.
//!
//! One test keeps the webhook's receiver down for a minute in the middle of a burst
//! (the issue asks for it); the others take seconds.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use controlplane::cli::config::Config;
use controlplane::events::{Event, EventKind, record};
use controlplane::notify::config::NotifierConfig;
use controlplane::notify::worker::{Always, Gate, NotifierStatus, SharedStatuses};
use hsdb::{Fence, Hsdb, Options, Target};

// ---------------------------------------------------------------------------------------
// The HTTP receiver.

/// How the receiver answers the next requests (then `Ok`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    Status500,
    Garbage,
    Hang,
    /// `100 Continue`, then 200.
    Continue,
}

#[derive(Default)]
struct Got {
    /// (event id from the header, the body's JSON) per request answered 2xx.
    delivered: Vec<(i64, serde_json::Value)>,
    /// Every request seen, with the id in its header.
    requests: Vec<i64>,
    idempotency: Vec<String>,
    authorization: Vec<String>,
}

struct Receiver {
    port: u16,
    got: Arc<Mutex<Got>>,
    script: Arc<Mutex<Vec<Answer>>>,
    up: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut r = Receiver {
            port,
            got: Arc::default(),
            script: Arc::default(),
            up: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        r.serve(listener);
        r
    }

    fn serve(&mut self, listener: TcpListener) {
        listener.set_nonblocking(true).unwrap();
        self.up.store(true, Ordering::SeqCst);
        let (got, script, up) = (self.got.clone(), self.script.clone(), self.up.clone());
        self.thread = Some(std::thread::spawn(move || {
            while up.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let answer = {
                            let mut s = script.lock().unwrap();
                            if s.is_empty() {
                                Answer::Ok
                            } else {
                                s.remove(0)
                            }
                        };
                        let (got, up) = (got.clone(), up.clone());
                        std::thread::spawn(move || http_one(stream, answer, &got, &up));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            // The listener is dropped here: connections are refused.
        }));
    }

    /// Stop listening (connections refused) until [`Receiver::restart`].
    fn stop(&mut self) {
        self.up.store(false, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    fn restart(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        self.serve(listener);
    }

    fn delivered_ids(&self) -> Vec<i64> {
        self.got
            .lock()
            .unwrap()
            .delivered
            .iter()
            .map(|d| d.0)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn http_one(stream: TcpStream, answer: Answer, got: &Mutex<Got>, up: &AtomicBool) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("POST /hook HTTP/1.1"), "{line}");
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(": ").unwrap();
        headers.insert(k.to_ascii_lowercase(), v.to_owned());
    }
    let len: usize = headers["content-length"].parse().unwrap();
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let id: i64 = headers["x-hvha-event-id"].parse().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["id"], id, "the id in the body and in the header");
    got.lock().unwrap().requests.push(id);
    let mut out = stream;
    match answer {
        Answer::Ok => {
            let mut g = got.lock().unwrap();
            g.delivered.push((id, json));
            g.idempotency
                .push(headers.get("idempotency-key").cloned().unwrap_or_default());
            g.authorization
                .push(headers.get("authorization").cloned().unwrap_or_default());
            drop(g);
            let _ = out.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
        Answer::Status500 => {
            let _ = out.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 9\r\n\r\ndb is down",
            );
        }
        Answer::Continue => {
            got.lock().unwrap().delivered.push((id, json));
            let _ = out.write_all(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            );
        }
        Answer::Garbage => {
            let _ = out.write_all(b"\x00\x01 this is not HTTP at all \r\n\r\n");
        }
        Answer::Hang => {
            // Never answer (until the test ends).
            while up.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The SMTP sink.

#[derive(Debug, Clone, Default)]
struct Mail {
    from: String,
    rcpt: Vec<String>,
    /// The message with dot-stuffing undone, CRLF kept.
    data: String,
}

struct SmtpSink {
    port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    /// Answer the next MAIL FROM with 451 this many times.
    fail_mail: Arc<Mutex<u32>>,
    /// Answer EHLO with 502 (a relay that knows only HELO).
    helo_only: Arc<AtomicBool>,
    up: Arc<AtomicBool>,
}

impl SmtpSink {
    fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let sink = SmtpSink {
            port,
            mails: Arc::default(),
            fail_mail: Arc::default(),
            helo_only: Arc::default(),
            up: Arc::new(AtomicBool::new(true)),
        };
        let (mails, fail, up) = (sink.mails.clone(), sink.fail_mail.clone(), sink.up.clone());
        let helo_only = sink.helo_only.clone();
        std::thread::spawn(move || {
            while up.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (mails, fail) = (mails.clone(), fail.clone());
                        let helo_only = helo_only.load(Ordering::SeqCst);
                        std::thread::spawn(move || smtp_session(s, &mails, &fail, helo_only));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        sink
    }

    fn ids(&self) -> Vec<i64> {
        self.mails
            .lock()
            .unwrap()
            .iter()
            .map(|m| {
                header(&m.data, "X-Hvha-Event-Id")
                    .parse()
                    .unwrap_or_else(|_| panic!("no event id in {:?}", m.data))
            })
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.up.store(false, Ordering::SeqCst);
    }
}

fn header(data: &str, name: &str) -> String {
    data.split("\r\n")
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
        .unwrap_or_default()
}

fn smtp_session(stream: TcpStream, mails: &Mutex<Vec<Mail>>, fail: &Mutex<u32>, helo_only: bool) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut say = |s: &str| out.write_all(format!("{s}\r\n").as_bytes());
    say("220 sink.test ESMTP ready").unwrap();
    let mut mail = Mail::default();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        assert!(line.ends_with("\r\n"), "commands end with CRLF: {line:?}");
        let cmd = line.trim_end();
        if cmd.starts_with("EHLO ") && helo_only {
            say("502 5.5.1 EHLO not implemented").unwrap();
        } else if cmd.starts_with("HELO ") {
            say("250 sink.test").unwrap();
        } else if cmd.starts_with("EHLO ") {
            say("250-sink.test\r\n250-8BITMIME\r\n250 SIZE 10000000").unwrap();
        } else if let Some(from) = cmd.strip_prefix("MAIL FROM:") {
            let mut f = fail.lock().unwrap();
            if *f > 0 {
                *f -= 1;
                say("451 4.3.0 try again later").unwrap();
                continue;
            }
            mail.from = from.to_owned();
            say("250 2.1.0 ok").unwrap();
        } else if let Some(to) = cmd.strip_prefix("RCPT TO:") {
            if to.contains("nobody@") {
                say("550 5.1.1 no such user").unwrap();
            } else {
                mail.rcpt.push(to.to_owned());
                say("250 2.1.5 ok").unwrap();
            }
        } else if cmd == "DATA" {
            say("354 go ahead").unwrap();
            let mut data = String::new();
            loop {
                let mut l = String::new();
                r.read_line(&mut l).unwrap();
                if l == ".\r\n" {
                    break;
                }
                assert!(l.ends_with("\r\n"), "message lines end with CRLF: {l:?}");
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
            }
            mail.data = data;
            mails.lock().unwrap().push(std::mem::take(&mut mail));
            say("250 2.0.0 queued").unwrap();
        } else if cmd == "RSET" {
            mail = Mail::default();
            say("250 ok").unwrap();
        } else if cmd == "QUIT" {
            say("221 bye").unwrap();
            return;
        } else {
            say("500 what?").unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The exec hook.

/// A hook script writing each event's document to `dir/<id>.json` and its id to
/// `dir/ids`; with `dir/hang` present it removes it, starts a child and sleeps (the
/// child's pid in `dir/child.pid`); with `dir/fail` present it exits 3.
fn hook_script(dir: &Path) -> PathBuf {
    let path = dir.join("hook.sh");
    let d = dir.display();
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n\
             if [ -e {d}/hang ]; then rm {d}/hang; sleep 60 & echo $! > {d}/child.pid; sleep 60; fi\n\
             if [ -e {d}/fail ]; then echo 'cannot open ticket' >&2; exit 3; fi\n\
             cat > {d}/$HVHA_EVENT_ID.json\n\
             env > {d}/$HVHA_EVENT_ID.env\n\
             echo $HVHA_EVENT_ID >> {d}/ids\n\
             echo ticket opened\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn hook_ids(dir: &Path) -> Vec<i64> {
    std::fs::read_to_string(dir.join("ids"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------
// The HSDB, the notifiers.

struct Store {
    _dir: Option<tempfile::TempDir>,
    target: Target,
}

impl Store {
    fn sqlite() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hsdb.sqlite");
        drop(Hsdb::open(&path, &Options::default()).unwrap());
        Store {
            target: Target::Sqlite(path),
            _dir: Some(dir),
        }
    }

    fn postgres(hint: &str) -> Option<Store> {
        let server = pglab::require(hint)?;
        let url = server.fresh_database(hint);
        Some(Store {
            target: Target::parse(&url).unwrap(),
            _dir: None,
        })
    }

    fn db(&self) -> Hsdb {
        Hsdb::connect(&self.target, &Options::default()).unwrap()
    }
}

fn notifiers(toml: &str) -> Vec<NotifierConfig> {
    let text = format!("hsdb = \"/nonexistent/hsdb.sqlite\"\n{toml}");
    Config::parse(&text, Path::new("/etc/hvha/hactl.toml"))
        .unwrap()
        .notifiers
}

struct Running {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    statuses: SharedStatuses,
}

impl Running {
    fn start(store: &Store, configs: &[NotifierConfig], gate: Arc<dyn Gate>) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let statuses: SharedStatuses = Arc::default();
        let mut threads = Vec::new();
        for cfg in configs {
            // As the daemon does before its first turn: a new notifier is registered.
            store
                .db()
                .register_consumer(&cfg.consumer(), cfg.start_at_end)
                .unwrap();
            let target = store.target.clone();
            let worker = controlplane::notify::worker(
                cfg,
                Duration::from_millis(50),
                gate.clone(),
                Box::new(move || Hsdb::connect(&target, &Options::default())),
                statuses.clone(),
            )
            .unwrap();
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || worker.run(&stop)));
        }
        Running {
            stop,
            threads,
            statuses,
        }
    }

    fn status(&self, name: &str) -> NotifierStatus {
        self.statuses
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .unwrap()
    }

    /// Stop, and how long the threads took to end.
    fn stop(mut self) -> Duration {
        let t = Instant::now();
        self.stop.store(true, Ordering::SeqCst);
        for th in self.threads.drain(..) {
            th.join().unwrap();
        }
        t.elapsed()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn write_events(db: &mut Hsdb, kinds: &[EventKind]) -> Vec<i64> {
    let before = db.event_backlog(0).unwrap().newest_id.unwrap_or(0);
    let events: Vec<Event> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| Event {
            kind: *k,
            vm: None,
            hm: None,
            text: format!("event {i} of the test\n.a line starting with a dot"),
            at: now_ms() + i64::try_from(i).unwrap(),
        })
        .collect();
    record(db, &events).unwrap();
    db.events_after(before, 10_000)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// The tests.

fn webhook_delivers_in_order_once_and_filters(store: &Store) {
    let rx = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfgs = notifiers(&format!(
        "[[notifier]]\nname = \"all\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\n\
         bearer_token_file = {:?}\n\
         [[notifier]]\nname = \"errors\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\n\
         min_severity = \"error\"\n",
        rx.port,
        token.display().to_string(),
        rx.port
    ));
    let run = Running::start(store, &cfgs, Arc::new(Always));
    let mut db = store.db();
    let kinds: Vec<EventKind> = (0..30)
        .map(|i| match i % 3 {
            0 => EventKind::VmRestartProgress,   // info
            1 => EventKind::VmFailureDetected,   // error
            _ => EventKind::HostFailureDetected, // critical
        })
        .collect();
    let ids = write_events(&mut db, &kinds);
    let errors: Vec<i64> = ids
        .iter()
        .zip(&kinds)
        .filter(|(_, k)| k.severity() >= controlplane::events::Severity::Error)
        .map(|(id, _)| *id)
        .collect();
    wait_until("both notifiers done", 60, || {
        run.status("all").offset == *ids.last().unwrap()
            && run.status("errors").offset == *ids.last().unwrap()
    });
    let got = rx.got.lock().unwrap();
    // Each event to "all" once, in order; the errors to "errors" once, in order; the
    // two streams interleave but each is ordered.
    let mut all = Vec::new();
    let mut errs = Vec::new();
    for (d, auth) in got.delivered.iter().zip(&got.authorization) {
        if auth.is_empty() {
            errs.push(d.0);
        } else {
            assert_eq!(auth, "Bearer s3cret-token");
            all.push(d.0);
        }
    }
    assert_eq!(all, ids, "every event once, in order");
    assert_eq!(errs, errors, "the severity filter: error and critical only");
    for (id, key) in got.delivered.iter().map(|d| d.0).zip(&got.idempotency) {
        assert_eq!(key, &format!("hvha-event-{id}"));
    }
    let first = &got
        .delivered
        .iter()
        .zip(&got.authorization)
        .find(|(_, a)| !a.is_empty())
        .unwrap()
        .0
        .1;
    assert_eq!(first["kind"], "VM_RESTART_PROGRESS");
    assert_eq!(first["severity"], "info");
    assert_eq!(
        first["text"],
        "event 0 of the test\n.a line starting with a dot"
    );
    drop(got);
    let s = run.status("errors");
    assert_eq!((s.delivered, s.filtered, s.retries), (20, 10, 0));
    assert_eq!(s.lag, 0);
    // The offsets are stored.
    assert_eq!(
        db.consumer_offset("notifier:errors").unwrap(),
        ids.last().copied()
    );
    run.stop();
}

#[test]
fn webhook_delivers_every_event_once_in_order_and_filters_by_severity_sqlite() {
    webhook_delivers_in_order_once_and_filters(&Store::sqlite());
}

#[test]
fn webhook_delivers_every_event_once_in_order_and_filters_by_severity_postgres() {
    if let Some(store) = Store::postgres("notify_webhook") {
        webhook_delivers_in_order_once_and_filters(&store);
    }
}

#[test]
fn a_receiver_answering_500_garbage_or_hanging_gets_retries_and_no_event_is_skipped() {
    let store = Store::sqlite();
    let rx = Receiver::start();
    *rx.script.lock().unwrap() = vec![
        Answer::Status500,
        Answer::Garbage,
        Answer::Hang,
        Answer::Ok,
        Answer::Status500,
        Answer::Continue,
    ];
    let cfgs = notifiers(&format!(
        "[[notifier]]\nname = \"flaky\"\nkind = \"webhook\"\n\
         url = \"http://127.0.0.1:{}/hook\"\ntimeout_ms = 500\n\
         initial_backoff_ms = 20\nmax_backoff_ms = 100\n",
        rx.port
    ));
    let run = Running::start(&store, &cfgs, Arc::new(Always));
    let ids = write_events(
        &mut store.db(),
        &[EventKind::VmMoved, EventKind::VmMoved, EventKind::VmMoved],
    );
    wait_until("delivered", 30, || rx.delivered_ids().len() == 3);
    assert_eq!(rx.delivered_ids(), ids, "once each, in order");
    // The first event was tried 4 times (500, garbage, hang, ok), the second twice.
    let requests = rx.got.lock().unwrap().requests.clone();
    assert_eq!(
        requests,
        [ids[0], ids[0], ids[0], ids[0], ids[1], ids[1], ids[2]]
    );
    let s = run.status("flaky");
    assert_eq!(s.retries, 4);
    assert_eq!(s.delivered, 3);
    let last = s.last_error.unwrap();
    assert!(
        last.contains("HTTP 500") && last.contains("db is down"),
        "{last}"
    );
    run.stop();
}

#[test]
fn an_exec_hook_gets_the_document_a_clean_environment_and_is_killed_with_its_group_on_timeout() {
    let store = Store::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let script = hook_script(dir.path());
    std::fs::write(dir.path().join("hang"), "").unwrap();
    let cfgs = notifiers(&format!(
        "[[notifier]]\nname = \"hook\"\nkind = \"exec\"\ncommand = [{:?}, \"--queue\", \"ha; rm -rf /\"]\n\
         timeout_ms = 700\ninitial_backoff_ms = 20\nmax_backoff_ms = 50\n\
         kinds = [\"HOST_FAILURE_DETECTED\", \"VM_MOVED\"]\n",
        script.display().to_string()
    ));
    let run = Running::start(&store, &cfgs, Arc::new(Always));
    let ids = write_events(
        &mut store.db(),
        &[
            EventKind::HostFailureDetected,
            EventKind::VmRestartProgress,
            EventKind::VmMoved,
        ],
    );
    wait_until("hook ran twice", 30, || hook_ids(dir.path()).len() == 2);
    assert_eq!(hook_ids(dir.path()), [ids[0], ids[2]], "the kinds filter");
    // The first attempt hung: killed on timeout with its child, then retried.
    let s = run.status("hook");
    assert_eq!(s.retries, 1, "{s:?}");
    assert!(s.last_error.as_deref().unwrap().contains("killed"), "{s:?}");
    let child: u32 = std::fs::read_to_string(dir.path().join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_until("the hook's child killed too", 10, || {
        // Gone, or a zombie waiting for init to reap it.
        std::fs::read_to_string(format!("/proc/{child}/stat"))
            .map_or(true, |st| st.split(' ').nth(2) == Some("Z"))
    });
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(format!("{}.json", ids[0]))).unwrap(),
    )
    .unwrap();
    assert_eq!(doc["id"], ids[0]);
    assert_eq!(doc["kind"], "HOST_FAILURE_DETECTED");
    assert_eq!(doc["severity"], "critical");
    let env = std::fs::read_to_string(dir.path().join(format!("{}.env", ids[0]))).unwrap();
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|p| p.0))
        .filter(|n| !matches!(*n, "PWD" | "SHLVL" | "_" | "OLDPWD"))
        .collect();
    let mut names = names;
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "HVHA_EVENT_CREATED_MS",
            "HVHA_EVENT_ID",
            "HVHA_EVENT_KIND",
            "HVHA_EVENT_SEVERITY",
            "LANG",
            "PATH"
        ],
        "a clean environment"
    );
    assert!(env.contains(&format!("HVHA_EVENT_ID={}\n", ids[0])));
    // A failing hook (exit 3) is retried, its stderr in the error.
    std::fs::write(dir.path().join("fail"), "").unwrap();
    let more = write_events(&mut store.db(), &[EventKind::VmMoved]);
    wait_until("a failure seen", 30, || run.status("hook").retries >= 3);
    let s = run.status("hook");
    assert!(
        s.last_error
            .as_deref()
            .unwrap()
            .contains("exited 3, stderr: \"cannot open ticket\""),
        "{s:?}"
    );
    assert_eq!(s.retrying_id, Some(more[0]));
    std::fs::remove_file(dir.path().join("fail")).unwrap();
    wait_until("delivered after the fix", 30, || {
        hook_ids(dir.path()).len() == 3
    });
    assert_eq!(hook_ids(dir.path())[2], more[0]);
    run.stop();
}

#[test]
fn email_goes_through_an_smtp_relay_with_retries_on_4xx_and_a_refused_recipient() {
    let store = Store::sqlite();
    let sink = SmtpSink::start();
    *sink.fail_mail.lock().unwrap() = 2;
    let cfgs = notifiers(&format!(
        "[[notifier]]\nname = \"mail\"\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\n\
         smtp_port = {}\nfrom = \"hvha@ops.example\"\n\
         to = [\"oncall@ops.example\", \"nobody@ops.example\"]\nhelo = \"ctl.test\"\n\
         initial_backoff_ms = 20\nmax_backoff_ms = 50\nmin_severity = \"warning\"\n",
        sink.port
    ));
    let run = Running::start(&store, &cfgs, Arc::new(Always));
    let ids = write_events(
        &mut store.db(),
        &[
            EventKind::VmRestartFailed,
            EventKind::VmRestartProgress,
            EventKind::ViosHmNonrespDetected,
        ],
    );
    wait_until("two mails", 30, || sink.ids().len() == 2);
    assert_eq!(sink.ids(), [ids[0], ids[2]], "in order, info filtered out");
    let mails = sink.mails.lock().unwrap().clone();
    let m = &mails[0];
    assert_eq!(m.from, "<hvha@ops.example> BODY=8BITMIME");
    assert_eq!(
        m.rcpt,
        ["<oncall@ops.example>"],
        "the refused recipient left out"
    );
    assert_eq!(
        header(&m.data, "Subject"),
        "[hvha critical] VM_RESTART_FAILED: event 0 of the test .a line starting with a dot"
    );
    assert_eq!(
        header(&m.data, "Message-ID"),
        format!("<hvha-event-{}.ops.example>", ids[0])
    );
    assert!(header(&m.data, "Date").ends_with("+0000"));
    // The body's text line starting with a dot arrives as written (stuffed, unstuffed).
    assert!(
        m.data.contains("\r\n.a line starting with a dot\r\n"),
        "{}",
        m.data
    );
    let s = run.status("mail");
    assert_eq!(s.retries, 2, "two 451s, retried");
    assert_eq!((s.delivered, s.filtered), (2, 1));
    // A relay that knows only HELO: greeted so, and sent a 7-bit message.
    sink.helo_only.store(true, Ordering::SeqCst);
    let more = write_events(&mut store.db(), &[EventKind::VmRestartFailed]);
    wait_until("a third mail", 30, || sink.ids().len() == 3);
    assert_eq!(sink.ids()[2], more[0]);
    let m = sink.mails.lock().unwrap()[2].clone();
    assert_eq!(m.from, "<hvha@ops.example>", "no BODY=8BITMIME");
    assert!(m.data.is_ascii());
    assert_eq!(run.status("mail").retries, 2, "no retry needed");
    run.stop();
}

#[test]
fn a_restart_resumes_from_the_stored_offset_and_a_lost_offset_write_repeats_one_id() {
    let store = Store::sqlite();
    let rx = Receiver::start();
    let cfgs = notifiers(&format!(
        "[[notifier]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\n",
        rx.port
    ));
    let mut db = store.db();
    // Written before the notifier first started: start = "end" does not deliver them.
    write_events(&mut db, &[EventKind::VmMoved; 3]);
    let run = Running::start(&store, &cfgs, Arc::new(Always));
    let a = write_events(&mut db, &[EventKind::VmMoved; 4]);
    wait_until("4 delivered", 30, || rx.delivered_ids().len() == 4);
    assert_eq!(
        rx.delivered_ids(),
        a,
        "only what was written after the first start"
    );
    run.stop();
    // Written while no notifier runs.
    let b = write_events(&mut db, &[EventKind::VmMoved; 2]);
    // A crash after a[3] was delivered but before its offset was stored.
    db.set_consumer_offset("notifier:w", a[2]).unwrap();
    let run = Running::start(&store, &cfgs, Arc::new(Always));
    wait_until("3 more", 30, || rx.delivered_ids().len() == 7);
    let got = rx.delivered_ids();
    assert_eq!(
        got,
        [&a[..], &a[3..], &b[..]].concat(),
        "a[3] again, same id"
    );
    // A receiver that drops an id it has seen gets each event once, in order.
    let mut seen = std::collections::BTreeSet::new();
    let deduped: Vec<i64> = got.into_iter().filter(|id| seen.insert(*id)).collect();
    assert_eq!(deduped, [&a[..], &b[..]].concat());
    run.stop();
}

#[test]
fn a_hanging_receiver_delays_the_stop_by_one_timeout_at_most() {
    let store = Store::sqlite();
    let rx = Receiver::start();
    *rx.script.lock().unwrap() = vec![Answer::Hang; 100];
    let dir = tempfile::tempdir().unwrap();
    let script = hook_script(dir.path());
    std::fs::write(dir.path().join("hang"), "").unwrap();
    let cfgs = notifiers(&format!(
        "[[notifier]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\n\
         timeout_ms = 2000\n\
         [[notifier]]\nname = \"x\"\nkind = \"exec\"\ncommand = [{:?}]\ntimeout_ms = 60000\n",
        rx.port,
        script.display().to_string()
    ));
    let run = Running::start(&store, &cfgs, Arc::new(Always));
    write_events(&mut store.db(), &[EventKind::VmMoved]);
    wait_until("both attempting", 30, || {
        !rx.got.lock().unwrap().requests.is_empty() && dir.path().join("child.pid").exists()
    });
    let took = run.stop();
    // The webhook's attempt ends within its 2 s timeout; the hook (60 s) is killed at once.
    assert!(took < Duration::from_millis(2500), "stop took {took:?}");
    let child: u32 = std::fs::read_to_string(dir.path().join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_until("the hook's group killed at the stop", 10, || {
        std::fs::read_to_string(format!("/proc/{child}/stat"))
            .map_or(true, |st| st.split(' ').nth(2) == Some("Z"))
    });
}

/// A gate opened and closed by the test (another controller holds the duties while it
/// is closed).
struct Switch(AtomicBool);

impl Gate for Switch {
    fn permit(&self) -> Option<Option<Fence>> {
        self.0.load(Ordering::SeqCst).then_some(None)
    }
}

#[test]
fn a_controller_that_does_not_hold_the_duties_delivers_nothing() {
    let store = Store::sqlite();
    let rx = Receiver::start();
    let cfgs = notifiers(&format!(
        "[[notifier]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\n",
        rx.port
    ));
    let gate = Arc::new(Switch(AtomicBool::new(false)));
    let run = Running::start(&store, &cfgs, gate.clone());
    let ids = write_events(&mut store.db(), &[EventKind::VmMoved; 3]);
    wait_until("standby", 30, || run.status("w").state == "standby");
    std::thread::sleep(Duration::from_millis(300));
    assert!(rx.delivered_ids().is_empty());
    // Another controller (the holder) delivered the first one meanwhile.
    store
        .db()
        .set_consumer_offset("notifier:w", ids[0])
        .unwrap();
    gate.0.store(true, Ordering::SeqCst);
    wait_until("delivered", 30, || rx.delivered_ids().len() == 2);
    assert_eq!(rx.delivered_ids(), ids[1..], "from the holder's offset on");
    run.stop();
}

/// The outage: a burst of events over about 70 s, the webhook's receiver down
/// for a minute in the middle; the email and exec notifiers go on meanwhile; when the
/// receiver returns it gets every event once, in order.
#[test]
fn a_receiver_down_for_a_minute_mid_burst_gets_every_event_once_in_order_and_others_are_not_delayed()
 {
    let store = Store::sqlite();
    let mut rx = Receiver::start();
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let script = hook_script(dir.path());
    let cfgs = notifiers(&format!(
        "[[notifier]]\nname = \"web\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\n\
         timeout_ms = 1000\ninitial_backoff_ms = 100\nmax_backoff_ms = 2000\n\
         [[notifier]]\nname = \"mail\"\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\n\
         smtp_port = {}\nfrom = \"hvha@ops.example\"\nto = [\"oncall@ops.example\"]\n\
         [[notifier]]\nname = \"hook\"\nkind = \"exec\"\ncommand = [{:?}]\n",
        rx.port,
        sink.port,
        script.display().to_string()
    ));
    let run = Running::start(&store, &cfgs, Arc::new(Always));
    let mut db = store.db();
    let mut ids = Vec::new();
    // The first part of the burst, all delivered.
    ids.extend(write_events(&mut db, &[EventKind::VmMoved; 10]));
    wait_until("first part", 30, || rx.delivered_ids().len() == 10);
    rx.stop();
    let down = Instant::now();
    // A minute of events while the receiver is down: 2 a second.
    let mut during = 0u64;
    while down.elapsed() < Duration::from_secs(60) {
        ids.extend(write_events(&mut db, &[EventKind::HostFailureDetected]));
        during += 1;
        std::thread::sleep(Duration::from_millis(500));
        // The others are not delayed: within seconds of each event.
        if during.is_multiple_of(20) {
            let want = ids.len();
            wait_until("mail keeps up", 10, || sink.ids().len() == want);
            wait_until("hook keeps up", 10, || hook_ids(dir.path()).len() == want);
        }
    }
    assert_eq!(rx.delivered_ids().len(), 10, "nothing delivered while down");
    let web = run.status("web");
    assert!(web.retries >= 10, "retried meanwhile: {web:?}");
    assert_eq!(web.state, "retrying");
    // The lag shown grows with the outage (read at each retry, every 2 s at most).
    assert!(web.lag + 8 >= during, "{during} written: {web:?}");
    rx.restart();
    // The end of the burst.
    ids.extend(write_events(&mut db, &[EventKind::VmMoved; 10]));
    wait_until("caught up", 60, || rx.delivered_ids().len() == ids.len());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.delivered_ids(), ids, "every event once, in order");
    wait_until("mail and hook too", 30, || {
        sink.ids().len() == ids.len() && hook_ids(dir.path()).len() == ids.len()
    });
    assert_eq!(sink.ids(), ids);
    assert_eq!(hook_ids(dir.path()), ids);
    let s = run.status("web");
    assert_eq!(s.lag, 0);
    assert_eq!(s.offset, *ids.last().unwrap());
    run.stop();
}

// ---------------------------------------------------------------------------------------
// `hactl run` with notifiers, as an operator runs it.

const HACTL: &str = env!("CARGO_BIN_EXE_hactl");

fn hactl(config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(HACTL)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap()
}

#[test]
fn hactl_run_delivers_the_outbox_shows_its_notifiers_and_stops_promptly() {
    let rx = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let hook_dir = dir.path().join("hook");
    std::fs::create_dir(&hook_dir).unwrap();
    let script = hook_script(&hook_dir);
    // The hook hangs on its first event: the stop must kill it, not wait 60 s.
    std::fs::write(hook_dir.join("hang"), "").unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.path().join("hactl.toml");
    std::fs::write(
        &config,
        format!(
            "hsdb = \"hsdb.sqlite\"\nadmin_socket = \"hactl.sock\"\nlog = \"info\"\n\
             [platform]\ndriver = \"sim\"\n\
             [[notifier]]\nname = \"web\"\nkind = \"webhook\"\n\
             url = \"http://127.0.0.1:{}/hook\"\nbearer_token_file = \"token\"\n\
             [[notifier]]\nname = \"hook\"\nkind = \"exec\"\ncommand = [{:?}]\n\
             timeout_ms = 60000\n",
            rx.port,
            script.display().to_string()
        ),
    )
    .unwrap();
    let hsdb_path = dir.path().join("hsdb.sqlite");
    let mut db = Hsdb::open(&hsdb_path, &Options::default()).unwrap();
    // Written before the first start: not delivered (start = "end").
    write_events(&mut db, &[EventKind::VmMoved]);
    let o = hactl(&config, &["check-config"]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("[[notifier]]\nname = \"web\""), "{text}");
    assert!(text.contains("bearer token file"), "{text}");
    assert!(text.contains("readable, private"), "{text}");
    assert!(!text.contains("tok\n"), "never the secret: {text}");
    let mut child = std::process::Command::new(HACTL)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The consumers are registered before the first turn.
    wait_until("registered", 30, || {
        db.event_consumers().unwrap().len() >= 2
    });
    let ids = write_events(&mut db, &[EventKind::HostFailureDetected; 5]);
    wait_until("the webhook got them", 30, || rx.delivered_ids().len() == 5);
    assert_eq!(rx.delivered_ids(), ids);
    let status = loop {
        let o = hactl(&config, &["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        let web = v["notifiers"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["name"] == "web").cloned());
        if web.as_ref().is_some_and(|w| w["delivered"] == 5) {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let hook = status["notifiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "hook")
        .unwrap();
    assert_eq!(
        hook["state"], "delivering",
        "the hook hangs on its first: {hook}"
    );
    let o = hactl(&config, &["status"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.contains("NOTIFIER") && text.contains("webhook"),
        "{text}"
    );
    let o = hactl(&config, &["query", "notifier", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let web = v
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["consumer"] == "notifier:web")
        .unwrap();
    assert_eq!(web["offset"], *ids.last().unwrap());
    assert_eq!(web["lag"], 0);
    let child_pid: u32 = {
        wait_until("the hook's child", 30, || {
            hook_dir.join("child.pid").exists()
        });
        std::thread::sleep(Duration::from_millis(100));
        std::fs::read_to_string(hook_dir.join("child.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let t = Instant::now();
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let code = loop {
        if let Some(c) = child.try_wait().unwrap() {
            break c;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code.code(), Some(0));
    // A turn may be in progress; the hanging hook is killed at once, not waited for.
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "stop took {:?}",
        t.elapsed()
    );
    wait_until("the hook's group killed", 10, || {
        std::fs::read_to_string(format!("/proc/{child_pid}/stat"))
            .map_or(true, |st| st.split(' ').nth(2) == Some("Z"))
    });
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(log.contains("notifier configured"), "{log}");
    assert!(
        !log.contains("tok\n") && !log.contains("Bearer"),
        "never the token: {log}"
    );
    // The hook's event is delivered after the restart: its offset was not stored.
    assert_eq!(
        db.consumer_offset("notifier:hook").unwrap(),
        Some(ids[0] - 1),
        "the hook handled nothing"
    );
    // A notifier removed from the configuration is forgotten on request.
    let o = hactl(&config, &["notifier", "forget", "hook"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(db.consumer_offset("notifier:hook").unwrap().is_none());
    let o = hactl(&config, &["notifier", "forget", "hook"]);
    assert_eq!(o.status.code(), Some(4));
}

/// Two `hactl run` on one PostgreSQL HSDB, each configured with the same webhook: only
/// the holder of the HSDB-wide duties delivers (the other shows `standby`); when it
/// stops, the other takes the duties over and goes on from the stored offset — every
/// event once, in order.
#[test]
fn two_controllers_on_postgresql_deliver_each_event_once_through_the_duties_holder() {
    let Some(store) = Store::postgres("notify_two_controllers") else {
        return;
    };
    let Target::Postgres(pg) = &store.target else {
        unreachable!("a PostgreSQL store");
    };
    let url = pg.to_string();
    let rx = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let mut db = store.db();
    let mut children = Vec::new();
    let mut configs = Vec::new();
    for name in ["ctl-a", "ctl-b"] {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "hsdb = \"{url}\"\nadmin_socket = \"{name}.sock\"\ncontroller_id = \"{name}\"\n\
                 log = \"info\"\n[lease]\nttl_ms = 2000\nrenew_every_ms = 500\nmargin_ms = 200\n\
                 [platform]\ndriver = \"sim\"\n\
                 [[notifier]]\nname = \"web\"\nkind = \"webhook\"\n\
                 url = \"http://127.0.0.1:{}/hook\"\n",
                rx.port
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
        children.push(
            std::process::Command::new(HACTL)
                .arg("--config")
                .arg(&config)
                .arg("run")
                .env_remove("RUST_LOG")
                .env_remove("NOTIFY_SOCKET")
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        configs.push(config);
    }
    let notifier_state = |config: &Path| {
        let o = hactl(config, &["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v["notifiers"][0]["state"].as_str().map(str::to_owned)
    };
    // One delivers, the other stands by.
    let mut leader = None;
    wait_until("one holds the duties, the other stands by", 60, || {
        let states: Vec<Option<String>> = configs.iter().map(|c| notifier_state(c)).collect();
        let standby = states
            .iter()
            .filter(|s| s.as_deref() == Some("standby"))
            .count();
        let active = states.iter().position(|s| {
            s.as_deref()
                .is_some_and(|s| s != "standby" && s != "starting")
        });
        leader = active;
        standby == 1 && active.is_some()
    });
    let leader = leader.unwrap();
    let follower = 1 - leader;
    let mut ids = write_events(&mut db, &[EventKind::HostFailureDetected; 5]);
    wait_until("5 delivered", 30, || rx.delivered_ids().len() == 5);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rx.delivered_ids(), ids, "once each, by one controller");
    // The holder stops (its leases released); the other takes the duties over.
    let pid = children[leader].id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let t = Instant::now();
    while children[leader].try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(20), "no stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    ids.extend(write_events(&mut db, &[EventKind::VmMoved; 5]));
    wait_until("the other delivers", 30, || rx.delivered_ids().len() >= 10);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rx.delivered_ids(), ids, "every event once, in order");
    assert_ne!(
        notifier_state(&configs[follower]).as_deref(),
        Some("standby")
    );
    let pid = children[follower].id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    for mut c in children {
        let t = Instant::now();
        while c.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(20) {
                let _ = c.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A receiver failing at random (a quarter of the requests: 500, garbage, a hang past
/// the timeout), events written while it fails: it gets every event, in order, never
/// skipped; a repeat can only be of the event just delivered (an answer slower than the
/// timeout on a loaded machine: at least once), never of an older one.
#[test]
fn random_failures_never_reorder_skip_or_repeat_a_delivered_event() {
    let store = Store::sqlite();
    let rx = Receiver::start();
    // A fixed pseudo-random script (xorshift), the same every run.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut script = Vec::new();
    for _ in 0..400 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        script.push(match x % 12 {
            0 | 1 => Answer::Status500,
            2 => Answer::Garbage,
            3 => Answer::Hang,
            _ => Answer::Ok,
        });
    }
    let failures = script.iter().filter(|a| **a != Answer::Ok).count();
    *rx.script.lock().unwrap() = script;
    let cfgs = notifiers(&format!(
        "[[notifier]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\n\
         timeout_ms = 300\ninitial_backoff_ms = 10\nmax_backoff_ms = 40\n",
        rx.port
    ));
    let run = Running::start(&store, &cfgs, Arc::new(Always));
    let mut db = store.db();
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.extend(write_events(&mut db, &[EventKind::VmMoved; 10]));
        std::thread::sleep(Duration::from_millis(30));
    }
    wait_until("all delivered", 120, || {
        run.status("w").offset == *ids.last().unwrap()
    });
    let mut deduped = rx.delivered_ids();
    deduped.dedup();
    assert_eq!(
        deduped, ids,
        "in order, none skipped, a repeat only of the one just delivered"
    );
    let s = run.status("w");
    assert_eq!(s.delivered, 100);
    // Every failed attempt was retried: requests = deliveries + failures seen.
    let requests = rx.got.lock().unwrap().requests.len();
    assert_eq!(u64::try_from(requests).unwrap(), s.delivered + s.retries);
    assert!(
        s.retries > 15,
        "the script failed often: {s:?} ({failures} failures in 400)"
    );
    run.stop();
}
