//! The application-report exchange (docs/hvncp.md "Application reports", issue 11 item
//! 4): FETCH_APP_REPORT and CONFIRM_APP_REPORT enqueued in the HSDB as the control plane
//! does, carried out by a real `hmd` with a VM's agent.
//!
//! - `monitor_carries_out_report_commands`: the agent is a test thread speaking through a
//!   real agent endpoint on a veth pair, scripted to answer as a correct, a slow, a broken
//!   and a confused agent would: a 16-application report in reversed chunks with a
//!   duplicate (REPORT, byte for byte), a report missing its last chunk (TIMEOUT after
//!   15 s), a body that is no report (BAD_REPORT), confirmations (CLEARED; NOT_CLEARED
//!   for a generation the agent never had), bad arguments (BAD_ARG), a VM the monitor
//!   never knew (NO_SESSION), PMSG_RSP / CLRDB answering nothing (counted, dropped), and
//!   more exchanges at once than the monitor holds (BUSY).
//! - `doorbell_fetch_confirm_across_a_monitor_restart`: a real `vmmd` rings its first
//!   doorbell four heartbeat cycles after `START_HB`; an application is added with
//!   `vmmd ctl`, and FETCHes complete with the report until it shows it NORMAL; `hmd` is
//!   killed and restarted before the CONFIRM: the agent rings the new monitor again;
//!   `hmd` is killed again, the CONFIRM enqueued while it is down, and carried out by the
//!   next run once the agent has re-paired: CLEARED, and the doorbell stops.
//! - `application_state_change_rings_and_is_reported`: the real AME in `vmmd` with real
//!   scripts; adding the application, then its failure and local restart, ring the
//!   doorbell; FETCH / CONFIRM cycles as the control plane runs them carry each state to
//!   the HSDB, and once the steady report is confirmed the doorbell stays down.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dataplane::endpoint::{Endpoint, EndpointConfig, EndpointEvent};
use dataplane::io::{InterfaceName, RawSocket, RxMode};
use dataplane::message::Message;
use dataplane::session::Priority;
use dataplane::wire::MacAddr;
use hsdb::{CommandKind, CommandRow, HeartbeatState, Hsdb, Options, PendingKind};
use hvha_appreport::pmsg::{Confirm, PmsgReq, responses};
use hvha_appreport::{AppReport, AppState, AppStatus, MonitorKind};
use hvha_e2e::{HM_UUID, Lab, hmd_stats, hmd_toml, spawn_in_netns, unix_ms, uuid, wait_for};

const VM: &str = "61be20f0-09a8-4753-b5e5-564f8a545ea1";
/// A VM no agent of these tests claims.
const STRANGER: &str = "61be20f0-09a8-4753-b5e5-564f8a545eaf";
const AGENT_MAC: MacAddr = MacAddr([0x02, 0x5e, 0xa9, 0, 0, 0x01]);
const HB_MS: u64 = 200;
const HMD_TIMERS: &str = "hello_period_ms = 500\nhb_period_ms = 200\nvm_miss_after_ms = 1000\n\
                          hm_heartbeat_period_ms = 1000\nflush_ms = 10\ncommand_poll_ms = 200\n\
                          log = \"info\"\n";
/// hmd's exchange timeout (docs/hvncp.md "Application reports").
const EXCHANGE_TIMEOUT_MS: i64 = 15_000;

/// One monitor in namespace `mon` on interface `m1`, the VM's side `ha1` in `vm`.
struct Rig {
    lab: Lab,
    mon_ns: String,
    vm_ns: String,
    hsdb: PathBuf,
    socket: PathBuf,
    config: String,
}

impl Rig {
    fn new(test: &str) -> Option<Rig> {
        let mut lab = Lab::new(test)?;
        let mon_ns = lab.netns("mon");
        let vm_ns = lab.netns("vm");
        lab.link(&vm_ns, "ha1", &mon_ns, "m1");
        let hsdb = lab.dir.join("hsdb.sqlite");
        let socket = lab.dir.join("hmd.sock");
        let config = lab
            .write(
                "hmd.toml",
                &hmd_toml(HM_UUID, &hsdb, &socket, &["m1"], HMD_TIMERS),
            )
            .display()
            .to_string();
        Some(Rig {
            lab,
            mon_ns,
            vm_ns,
            hsdb,
            socket,
            config,
        })
    }

    fn start_hmd(&mut self, label: &str) {
        let (ns, config) = (self.mon_ns.clone(), self.config.clone());
        self.lab.spawn(label, &ns, "hmd", &["--config", &config]);
    }

    fn db(&self) -> Hsdb {
        wait_for(Duration::from_secs(10), || {
            Hsdb::open(&self.hsdb, &Options::default()).ok()
        })
        .expect("the HSDB opens")
    }

    fn detected(&self) -> bool {
        let Ok(db) = Hsdb::open(&self.hsdb, &Options::default()) else {
            return false;
        };
        db.vm_hm(&uuid(VM), &uuid(HM_UUID))
            .ok()
            .flatten()
            .is_some_and(|r| r.last_state == HeartbeatState::Detected)
    }

    fn enqueue(&self, kind: CommandKind, vm: &str, arg: Option<&str>) -> i64 {
        self.db()
            .enqueue_command_arg(&uuid(HM_UUID), kind, &uuid(vm), arg, unix_ms())
            .expect("enqueue a command")
    }

    /// Command `id` once done (within `within`).
    fn wait_done(&self, id: i64, within: Duration, logs: &str) -> CommandRow {
        wait_for(within, || {
            command(&self.hsdb, id).filter(|c| c.done_ms.is_some())
        })
        .unwrap_or_else(|| {
            panic!(
                "command {id} not done within {within:?}: {:?}\n{}",
                command(&self.hsdb, id),
                self.logs(logs)
            )
        })
    }

    /// Wait for command `id`; assert its result starts with `CODE: `; the result.
    fn expect(&self, id: i64, code: &str, within: Duration, logs: &str) -> String {
        let c = self.wait_done(id, within, logs);
        let result = c.result.clone().unwrap_or_default();
        assert!(
            result.starts_with(&format!("{code}: ")),
            "{} {id}: result {:?}, expected {code}\n{}",
            c.kind,
            result.chars().take(300).collect::<String>(),
            self.logs(logs)
        );
        eprintln!(
            "{} {id}: {} after {} ms",
            c.kind,
            result.chars().take(80).collect::<String>(),
            c.done_ms.unwrap_or_default() - c.created_ms
        );
        result
    }

    /// The VM's DOORBELL item in the HSDB (nothing acknowledges it in these tests, so
    /// each ring coalesces into it): its vector and when it was last rung.
    fn doorbell(&self) -> Option<(u64, i64)> {
        let db = Hsdb::open(&self.hsdb, &Options::default()).ok()?;
        db.pending()
            .ok()?
            .into_iter()
            .filter(|p| p.kind == PendingKind::Doorbell && p.vm == Some(uuid(VM)))
            .map(|p| (p.code, p.updated_ms))
            .max_by_key(|(_, t)| *t)
    }

    fn stat(&self, name: &str) -> u64 {
        hmd_stats(&self.socket)
            .ok()
            .and_then(|s| s.get(name).copied())
            .unwrap_or_default()
    }

    fn logs(&self, labels: &str) -> String {
        labels
            .split(',')
            .map(|l| format!("--- {l}\n{}", self.lab.log(l)))
            .collect()
    }
}

fn command(hsdb: &Path, id: i64) -> Option<CommandRow> {
    Hsdb::open(hsdb, &Options::default())
        .ok()?
        .command(id)
        .ok()?
}

/// How the scripted agent answers the next `PMSG_REQ`.
#[derive(Debug, Clone)]
enum Answer {
    /// Every chunk of `body` at generation `generation`, last first, chunk 2 twice.
    Reversed { generation: u64, body: Vec<u8> },
    /// Every chunk but the last.
    Partial { generation: u64, body: Vec<u8> },
    /// One chunk that is no report.
    Garbage,
}

/// What the test and the scripted agent share.
#[derive(Debug, Default)]
struct Script {
    answers: VecDeque<Answer>,
    /// The report messages the agent received, as text.
    received: Vec<String>,
    /// Payloads to send the monitor as they are.
    inject: Vec<Vec<u8>>,
    established: bool,
}

/// The scripted agent: a real agent endpoint on `ha1` in the VM's namespace, answering
/// `PMSG_REQ` from `script.answers` and `GMSG:<req>:<gen>` with `CLRDB:<req>:<gen>`
/// for generations up to 8 (`CLRDB:<req>:0` above: "never had it").
fn scripted_agent(
    ns: &str,
    script: Arc<Mutex<Script>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    spawn_in_netns(ns, move || {
        let iface = InterfaceName::new("ha1").expect("name");
        let mut socket = RawSocket::open(&iface, 0x0600, RxMode::Recv).expect("raw socket");
        let clock = dataplane::time::MonotonicClock::new();
        let config = EndpointConfig::agent(AGENT_MAC, uuid(VM), "linux");
        let mut agent = Endpoint::new(config, clock.now()).expect("agent endpoint");
        let mut buf = vec![0u8; 9100];
        let mut monitor = None;
        while !stop.load(Ordering::Relaxed) {
            let _ = socket.wait_readable(Some(Duration::from_millis(5)));
            let now = clock.now();
            socket
                .recv(|f| {
                    agent.handle_frame(now, f);
                })
                .expect("recv");
            if agent.poll_timeout().is_some_and(|t| t <= now) {
                agent.handle_timeout(now);
            }
            let mut out: Vec<Vec<u8>> = Vec::new();
            while let Some(event) = agent.poll_event() {
                match event {
                    EndpointEvent::Established { peer, .. } => {
                        monitor = Some(peer);
                        script.lock().expect("script").established = true;
                    }
                    EndpointEvent::Message { payload, .. } => {
                        let mut s = script.lock().expect("script");
                        s.received
                            .push(String::from_utf8_lossy(&payload).into_owned());
                        match Message::parse(&payload) {
                            Ok(Message::PmsgReq { args }) => {
                                let req = PmsgReq::parse(args).expect("PMSG_REQ args").req;
                                // Unscripted requests go unanswered.
                                if let Some(answer) = s.answers.pop_front() {
                                    out.extend(answer_payloads(req, &answer));
                                }
                            }
                            Ok(Message::Gmsg { args }) => {
                                let c = Confirm::parse(Confirm::GMSG, args).expect("GMSG args");
                                let generation = if c.generation <= 8 { c.generation } else { 0 };
                                out.push(
                                    Confirm {
                                        req: c.req,
                                        generation,
                                    }
                                    .encode(Confirm::CLRDB),
                                );
                            }
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
            out.append(&mut script.lock().expect("script").inject);
            if let Some(peer) = monitor {
                for payload in out {
                    agent
                        .send(now, peer, Priority::Normal, &payload)
                        .expect("queue a report message");
                }
            }
            while let Some(len) = agent.poll_transmit(now, &mut buf) {
                let _ = socket.send(&buf[..len]);
            }
        }
    })
}

fn answer_payloads(req: u64, answer: &Answer) -> Vec<Vec<u8>> {
    match answer {
        Answer::Reversed { generation, body } => {
            let mut chunks = responses(req, *generation, body).expect("chunks");
            assert!(chunks.len() > 2, "a report of several chunks");
            let second = chunks[1].clone();
            chunks.reverse();
            chunks.push(second);
            chunks
        }
        Answer::Partial { generation, body } => {
            let mut chunks = responses(req, *generation, body).expect("chunks");
            chunks.pop();
            chunks
        }
        Answer::Garbage => {
            vec![format!("PMSG_RSP:{req:x}:3:1/1:hello, this is no report").into_bytes()]
        }
    }
}

/// A report of 16 applications with long details: many chunks.
fn big_report(generation: u64) -> Vec<u8> {
    let apps = (0..16)
        .map(|i| AppStatus {
            critical: i == 0,
            restarts: 3,
            monitor: MonitorKind::Http,
            since_ms: 1_556_303_548_719 + i,
            detail: format!(
                "app {i}: GET /health answered 503 Service Unavailable; é: {}",
                "x".repeat(150)
            ),
            ..AppStatus::new(
                format!("app{i}"),
                if i == 0 {
                    AppState::Failure
                } else {
                    AppState::Normal
                },
            )
        })
        .collect();
    AppReport {
        inc: 0x5eed,
        generation,
        apps,
    }
    .encode()
    .into_bytes()
}

#[test]
fn monitor_carries_out_report_commands() {
    let Some(mut rig) = Rig::new("appreport") else {
        return;
    };
    rig.start_hmd("hmd");
    let script = Arc::new(Mutex::new(Script::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let agent = scripted_agent(&rig.vm_ns.clone(), Arc::clone(&script), Arc::clone(&stop));
    assert!(
        wait_for(Duration::from_secs(20), || rig.detected().then_some(())).is_some(),
        "the scripted agent is discovered\n{}",
        rig.logs("hmd")
    );
    let received = |text: &str| {
        script
            .lock()
            .expect("script")
            .received
            .iter()
            .any(|r| r == text)
    };
    let secs = Duration::from_secs;

    // 1. A report missing its last chunk: TIMEOUT after 15 s (meanwhile, the rest).
    let body = big_report(4);
    script
        .lock()
        .expect("script")
        .answers
        .push_back(Answer::Partial {
            generation: 4,
            body: body.clone(),
        });
    let partial = rig.enqueue(CommandKind::FetchAppReport, VM, None);
    assert!(
        wait_for(secs(10), || received(&format!("PMSG_REQ:{partial:x}"))
            .then_some(()))
        .is_some(),
        "PMSG_REQ:<command id> reaches the agent\n{}",
        rig.logs("hmd")
    );

    // 2. A whole report, in reversed chunks with a duplicate: REPORT, byte for byte.
    let body = big_report(5);
    script
        .lock()
        .expect("script")
        .answers
        .push_back(Answer::Reversed {
            generation: 5,
            body: body.clone(),
        });
    let fetch = rig.enqueue(CommandKind::FetchAppReport, VM, None);
    let result = rig.expect(fetch, "REPORT", secs(10), "hmd");
    eprintln!(
        "a report of {} bytes in {} PMSG_RSP chunks",
        body.len(),
        responses(1, 5, &body).map_or(0, |c| c.len())
    );
    assert_eq!(
        result.as_bytes().get(8..),
        Some(&body[..]),
        "the body as the agent sent it"
    );
    let report = AppReport::parse(&body).expect("parses");
    assert_eq!((report.generation, report.apps.len()), (5, 16));

    // 3. A body that is no report.
    script
        .lock()
        .expect("script")
        .answers
        .push_back(Answer::Garbage);
    let garbage = rig.enqueue(CommandKind::FetchAppReport, VM, None);
    let result = rig.expect(garbage, "BAD_REPORT", secs(10), "hmd");
    assert!(result.contains("does not parse"), "{result}");

    // 4. Confirmations: GMSG:<id>:<gen>, CLEARED; a generation the agent never had,
    //    NOT_CLEARED; bad arguments refused without a word to the agent.
    let confirm = rig.enqueue(CommandKind::ConfirmAppReport, VM, Some("5"));
    assert_eq!(
        rig.expect(confirm, "CLEARED", secs(10), "hmd"),
        "CLEARED: gen=5"
    );
    assert!(received(&format!("GMSG:{confirm:x}:5")));
    let never = rig.enqueue(CommandKind::ConfirmAppReport, VM, Some("9"));
    let result = rig.expect(never, "NOT_CLEARED", secs(10), "hmd");
    assert!(result.contains("gen=9"), "{result}");
    for bad in [Some("five"), Some("0"), None] {
        let id = rig.enqueue(CommandKind::ConfirmAppReport, VM, bad);
        rig.expect(id, "BAD_ARG", secs(10), "hmd");
        assert!(!received(&format!("GMSG:{id:x}:5")));
    }

    // 5. A VM this monitor never knew: NO_SESSION at once.
    let stranger = rig.enqueue(CommandKind::FetchAppReport, STRANGER, None);
    rig.expect(stranger, "NO_SESSION", secs(10), "hmd");

    // 6. Answers to nothing, and answers that do not parse: counted, dropped.
    script.lock().expect("script").inject.extend([
        b"PMSG_RSP:ffff:1:1/1:x".to_vec(),
        b"CLRDB:fffe:1".to_vec(),
        format!("CLRDB:{confirm:x}:5").into_bytes(),
        b"PMSG_RSP:zz".to_vec(),
    ]);
    assert!(
        wait_for(secs(10), || (rig.stat("report_messages_unexpected") >= 3
            && rig.stat("report_messages_malformed") >= 1)
            .then_some(()))
        .is_some(),
        "unexpected {} malformed {}\n{}",
        rig.stat("report_messages_unexpected"),
        rig.stat("report_messages_malformed"),
        rig.logs("hmd")
    );

    // 7. At most 256 exchanges at once: with the partial one still waiting, 255 more
    //    (that the agent leaves unanswered) fill the table, the next is BUSY.
    let silent: Vec<i64> = {
        let mut db = rig.db();
        (0..256)
            .map(|_| {
                db.enqueue_command_arg(
                    &uuid(HM_UUID),
                    CommandKind::FetchAppReport,
                    &uuid(VM),
                    None,
                    unix_ms(),
                )
                .expect("enqueue")
            })
            .collect()
    };
    let busy = *silent.last().expect("256 ids");
    let result = rig.expect(busy, "BUSY", secs(10), "hmd");
    assert!(
        result.contains("256 report exchanges in progress"),
        "{result}"
    );
    assert!(
        command(&rig.hsdb, silent[0]).is_some_and(|c| c.done_ms.is_none()),
        "the first 255 wait for their answers"
    );

    // 1 again: the report missing a chunk timed out, naming what was missing.
    let c = rig.wait_done(partial, secs(30), "hmd");
    let result = c.result.unwrap_or_default();
    assert!(
        result.starts_with("TIMEOUT: 1 chunk(s) of generation 4"),
        "{result}"
    );
    let took = c.done_ms.unwrap_or_default() - c.created_ms;
    assert!(
        (EXCHANGE_TIMEOUT_MS..EXCHANGE_TIMEOUT_MS + 5_000).contains(&took),
        "timed out {took} ms after the enqueue"
    );

    // 7 again: the 255 time out in their turn.
    for id in &silent[..255] {
        let c = rig.wait_done(*id, secs(30), "hmd");
        let result = c.result.unwrap_or_default();
        assert!(result.starts_with("TIMEOUT: no PMSG_RSP"), "{result}");
    }

    // The monitor says what it did.
    for (name, want) in [
        ("reports_received", 1),
        ("reports_cleared", 1),
        ("reports_not_cleared", 1),
        ("report_timeouts", 256),
        ("report_bad", 1),
        ("report_refused", 4),
        ("report_exchanges_open", 0),
        ("report_requests_sent", 258),
        ("commands_fetch_app_report", 260),
        ("commands_confirm_app_report", 5),
    ] {
        assert_eq!(rig.stat(name), want, "{name}\n{}", rig.logs("hmd"));
    }
    assert!(rig.detected(), "the VM stayed DETECTED throughout");
    stop.store(true, Ordering::Relaxed);
    agent.join().expect("agent thread");
    rig.lab.stop_cleanly("hmd");
}

#[test]
fn doorbell_fetch_confirm_across_a_monitor_restart() {
    let Some(mut rig) = Rig::new("appring") else {
        return;
    };
    rig.start_hmd("hmd1");
    let vm_config = rig
        .lab
        .write(
            "vmmd.toml",
            &format!(
                "vm_uuid = \"{VM}\"\ninterfaces = [\"ha1\"]\nrescan_ms = 1000\nlog = \"info\"\n{}",
                hvha_e2e::vmmd_ame_section(&rig.lab.dir, "vmmd")
            ),
        )
        .display()
        .to_string();
    let vm_ns = rig.vm_ns.clone();
    rig.lab
        .spawn("vmmd", &vm_ns, "vmmd", &["--config", &vm_config]);
    let secs = Duration::from_secs;

    // The first doorbell: four heartbeat cycles after START_HB (seed 004 L11752).
    assert!(
        wait_for(secs(20), || rig.detected().then_some(())).is_some(),
        "vmmd is discovered\n{}",
        rig.logs("hmd1,vmmd")
    );
    let (vector, first) = wait_for(secs(10), || rig.doorbell())
        .unwrap_or_else(|| panic!("no doorbell\n{}", rig.logs("hmd1,vmmd")));
    assert_eq!(vector, hvha_appreport::DBELL_REPORT);
    // Discovered when the session opened, START_HB with it; both times are the monitor's.
    let discovered = rig
        .db()
        .pending()
        .expect("pending")
        .into_iter()
        .find(|p| p.kind == PendingKind::Discovered && p.vm == Some(uuid(VM)))
        .expect("the discovery item")
        .created_ms;
    let after = first - discovered;
    let four_cycles = i64::try_from(4 * HB_MS).unwrap_or_default();
    assert!(
        after >= four_cycles - 100,
        "the first doorbell came {after} ms after the discovery: before four heartbeat cycles"
    );

    // FETCH: the agent's report (no application configured yet: the first, empty).
    let fetch = rig.enqueue(CommandKind::FetchAppReport, VM, None);
    let result = rig.expect(fetch, "REPORT", secs(10), "hmd1,vmmd");
    let report = AppReport::parse(result.as_bytes().get(8..).unwrap_or_default())
        .unwrap_or_else(|e| panic!("the report parses: {e}\n{result}"));
    assert!(report.inc != 0);
    assert!(report.apps.is_empty());
    // The AME's first generation, offset by the incarnation's top 40 bits (docs/hvncp.md
    // §11.1).
    assert_eq!(report.generation, (report.inc >> 24) + 1);

    // An application is added: its state changes ring; FETCH (not confirmed yet) until
    // the report shows it NORMAL.
    add_web_app(&rig);
    let deadline = std::time::Instant::now() + secs(30);
    let report = loop {
        let fetch = rig.enqueue(CommandKind::FetchAppReport, VM, None);
        let result = rig.expect(fetch, "REPORT", secs(10), "hmd1,vmmd");
        let report = AppReport::parse(result.as_bytes().get(8..).unwrap_or_default())
            .unwrap_or_else(|e| panic!("the report parses: {e}\n{result}"));
        if report
            .apps
            .iter()
            .any(|a| a.name == "web" && a.state == AppState::Normal)
        {
            break report;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "web never NORMAL: {report:?}\n{}",
            rig.logs("hmd1,vmmd")
        );
        std::thread::sleep(Duration::from_millis(300));
    };

    // The monitor dies before the CONFIRM: the agent keeps ringing, the new monitor too.
    rig.lab.kill_9("hmd1");
    let restarted = unix_ms();
    rig.start_hmd("hmd2");
    assert!(
        wait_for(secs(20), || rig
            .doorbell()
            .filter(|(_, at)| *at > restarted)
            .map(|_| ()))
        .is_some(),
        "the agent rings the restarted monitor too\n{}",
        rig.logs("hmd2,vmmd")
    );

    // The monitor dies again; the control plane's CONFIRM waits for it in the HSDB and
    // is carried out by the next run as soon as the agent has re-paired.
    rig.lab.kill_9("hmd2");
    let confirm = rig.enqueue(
        CommandKind::ConfirmAppReport,
        VM,
        Some(&report.generation.to_string()),
    );
    rig.start_hmd("hmd3");
    assert_eq!(
        rig.expect(confirm, "CLEARED", secs(20), "hmd3,vmmd"),
        format!("CLEARED: gen={}", report.generation)
    );

    // The doorbell is down: no ring for longer than its 10 s repeat.
    let (_, last) = rig.doorbell().expect("the doorbell item");
    std::thread::sleep(secs(12));
    let (_, now_last) = rig.doorbell().expect("the doorbell item");
    assert_eq!(
        now_last,
        last,
        "no doorbell after the confirmation\n{}",
        rig.logs("hmd3,vmmd")
    );
    rig.lab.stop_cleanly("vmmd");
    let log = rig.lab.log("vmmd");
    assert!(
        log.contains("report confirmed (GMSG): doorbell down"),
        "{log}"
    );
    rig.lab.stop_cleanly("hmd3");
}

/// Add application `web` to the running agent with `vmmd ctl`: up while `web.up` (in
/// the lab's directory, created now) exists; its monitor script tests for the file, its
/// stop script removes it, its start script creates it — real scripts the AME runs as
/// child processes; monitored every 5 s, one failure stops it, 1 s stabilisations.
/// Returns the file's path.
fn add_web_app(rig: &Rig) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = &rig.lab.dir;
    let up = dir.join("web.up");
    std::fs::write(&up, "").expect("the application is up");
    let up_text = up.display().to_string();
    let script = |name: &str, body: &str| {
        let path = rig.lab.write(name, &format!("#!/bin/sh\n{body}\n"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path.display().to_string()
    };
    let monitor = script("web.mon", &format!("test -e '{up_text}'"));
    let start = script("web.start", &format!(": > '{up_text}'"));
    let stop = script("web.stop", &format!("/bin/rm -f '{up_text}'"));
    let socket = dir.join("vmmd.ctl.sock").display().to_string();
    let ctl = std::process::Command::new(hvha_e2e::binary("vmmd"))
        .args([
            "ctl",
            "--socket",
            &socket,
            "add",
            "app",
            "web",
            &format!("monitor_script={monitor}"),
            &format!("start_script={start}"),
            &format!("stop_script={stop}"),
            // A timeout generous for `test -e` on a loaded machine: a spurious one would
            // be a state change, and ring.
            "monitor_period=5",
            "monitor_timeout=4",
            "monitor_failure_threshold=1",
            "stop_stabilization_time=1",
            "start_stabilization_time=1",
        ])
        .output()
        .expect("vmmd ctl runs");
    assert!(
        ctl.status.success(),
        "vmmd ctl add app: {}{}",
        String::from_utf8_lossy(&ctl.stdout),
        String::from_utf8_lossy(&ctl.stderr)
    );
    up
}

/// FETCH then CONFIRM, as the control plane does, until a report satisfies `want`
/// (each report fetched is confirmed, as the control plane confirms what it stored);
/// the report, or a panic after `within`.
fn fetch_until(
    rig: &Rig,
    within: Duration,
    logs: &str,
    want: impl Fn(&AppReport) -> bool,
) -> AppReport {
    let deadline = std::time::Instant::now() + within;
    loop {
        let fetch = rig.enqueue(CommandKind::FetchAppReport, VM, None);
        let result = rig.expect(fetch, "REPORT", Duration::from_secs(20), logs);
        let report = AppReport::parse(result.as_bytes().get(8..).unwrap_or_default())
            .unwrap_or_else(|e| panic!("the report parses: {e}\n{result}"));
        let confirm = rig.enqueue(
            CommandKind::ConfirmAppReport,
            VM,
            Some(&report.generation.to_string()),
        );
        assert_eq!(
            rig.expect(confirm, "CLEARED", Duration::from_secs(20), logs),
            format!("CLEARED: gen={}", report.generation)
        );
        if want(&report) {
            return report;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no report as wanted within {within:?}; the last: {report:?}\n{}",
            rig.logs(logs)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn application_state_change_rings_and_is_reported() {
    let Some(mut rig) = Rig::new("appstate") else {
        return;
    };
    let dir = rig.lab.dir.clone();
    rig.start_hmd("hmd");
    let vm_config = rig
        .lab
        .write(
            "vmmd.toml",
            &format!(
                "vm_uuid = \"{VM}\"\ninterfaces = [\"ha1\"]\nrescan_ms = 1000\nlog = \"info\"\n{}",
                hvha_e2e::vmmd_ame_section(&dir, "vmmd")
            ),
        )
        .display()
        .to_string();
    let vm_ns = rig.vm_ns.clone();
    rig.lab
        .spawn("vmmd", &vm_ns, "vmmd", &["--config", &vm_config]);
    let secs = Duration::from_secs;
    let logs = "hmd,vmmd";
    assert!(
        wait_for(secs(20), || rig.detected().then_some(())).is_some(),
        "vmmd is discovered\n{}",
        rig.logs(logs)
    );
    // The first report: no application yet. Fetched and confirmed: the doorbell is down.
    assert!(
        wait_for(secs(10), || rig.doorbell()).is_some(),
        "the first doorbell\n{}",
        rig.logs(logs)
    );
    let empty = fetch_until(&rig, secs(30), logs, |r| r.apps.is_empty());
    let (_, before) = rig.doorbell().expect("the doorbell item");

    // The operator adds the application: its state changes (UNSET, then NORMAL once its
    // monitor succeeded), and the agent rings at once.
    let up = add_web_app(&rig);
    assert!(
        wait_for(secs(10), || rig
            .doorbell()
            .filter(|(_, at)| *at > before)
            .map(|_| ()))
        .is_some(),
        "adding an application rings the doorbell\n{}",
        rig.logs(logs)
    );
    let normal = fetch_until(&rig, secs(30), logs, |r| {
        r.apps
            .iter()
            .any(|a| a.name == "web" && a.state == AppState::Normal)
    });
    assert_eq!(normal.inc, empty.inc, "the same agent process");
    assert!(normal.generation > empty.generation);

    // The application dies: its monitor fails, the AME stops and starts it again (one
    // local restart); each change rings, and the report says so.
    let (_, before) = rig.doorbell().expect("the doorbell item");
    std::fs::remove_file(&up).expect("the application dies");
    assert!(
        wait_for(secs(20), || rig
            .doorbell()
            .filter(|(_, at)| *at > before)
            .map(|_| ()))
        .is_some(),
        "the failure rings the doorbell\n{}",
        rig.logs(logs)
    );
    let restarted = fetch_until(&rig, secs(60), logs, |r| {
        r.apps
            .iter()
            .any(|a| a.name == "web" && a.state == AppState::Normal && a.restarts >= 1)
    });
    let web = restarted
        .apps
        .iter()
        .find(|a| a.name == "web")
        .expect("web");
    assert_eq!((web.monitor, web.critical), (MonitorKind::Script, false));
    assert!(up.exists(), "the start script ran");

    // Confirmed and steady: the doorbell stays down longer than its 10 s repeat.
    let (_, last) = rig.doorbell().expect("the doorbell item");
    std::thread::sleep(secs(12));
    assert_eq!(
        rig.doorbell().map(|(_, at)| at),
        Some(last),
        "no doorbell once the steady report is confirmed\n{}",
        rig.logs(logs)
    );
    rig.lab.stop_cleanly("vmmd");
    rig.lab.stop_cleanly("hmd");
}
