//! The admin socket and the metrics port of a real `hmd` cannot be blocked by a client:
//! with idle connections, a garbage sender and a slow sender open on both, `hmd ctl
//! status` and `GET /metrics` still answer at once; with more idle connections than a
//! listener serves (32), the ones silent the longest are closed with an error line and
//! `hmd ctl` still works.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use hvha_e2e::{Lab, hmd_ctl, hmd_stats, hmd_toml, http_get, in_netns, spawn_in_netns, wait_for};

/// hmd's connection budget per listener (`admin::MAX_CONNECTIONS`).
const MAX_CONNECTIONS: usize = 32;
/// An answer behind an idle client took at least its 5 s timeout before.
const PROMPT: Duration = Duration::from_secs(2);

/// The line hmd wrote on `s` within `wait`, or "" if none.
fn line_on(s: &UnixStream, wait: Duration) -> String {
    s.set_read_timeout(Some(wait)).expect("timeout");
    let mut line = String::new();
    let _ = BufReader::new(s).read_line(&mut line);
    line
}

fn timed_ctl(socket: &Path, lab: &Lab) -> Duration {
    let asked = Instant::now();
    let status = hmd_ctl(socket, "status").unwrap_or_else(|e| panic!("{e}\n{}", lab.log("hmd")));
    assert!(status.contains("monitor"), "{status}");
    asked.elapsed()
}

#[test]
fn idle_slow_and_garbage_clients_block_neither_ctl_nor_scrapes() {
    let Some(mut lab) = Lab::new("admin") else {
        return;
    };
    let hm = lab.netns("hm");
    let other = lab.netns("x");
    lab.link(&hm, "adm0", &other, "adx0");
    let socket = lab.dir.join("hmd.sock");
    let config = lab.write(
        "hmd.toml",
        &hmd_toml(
            "5c3196a3-c41f-4b5c-9861-dee6077081e1",
            &lab.dir.join("hsdb.sqlite"),
            &socket,
            &["adm0"],
            "metrics_listen = \"127.0.0.1:9464\"\n",
        ),
    );
    lab.spawn(
        "hmd",
        &hm,
        "hmd",
        &["--config", &config.display().to_string()],
    );
    wait_for(Duration::from_secs(20), || hmd_ctl(&socket, "status").ok())
        .unwrap_or_else(|| panic!("hmd did not answer\n{}", lab.log("hmd")));

    // On the admin socket: idle clients, garbage without a newline, a slow sender.
    let idle: Vec<UnixStream> = (0..8)
        .map(|_| UnixStream::connect(&socket).expect("idle"))
        .collect();
    let mut garbage = UnixStream::connect(&socket).expect("garbage");
    garbage.write_all(&[0x5a; 500]).expect("garbage");
    let slow_socket = socket.clone();
    let slow = std::thread::spawn(move || {
        let mut s = UnixStream::connect(slow_socket).expect("slow");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) && s.write_all(b"s").is_ok() {
            std::thread::sleep(Duration::from_millis(300));
        }
        s
    });
    // On the metrics port, the same.
    let (idle_tcp, garbage_tcp) = in_netns(&hm, || {
        let idle: Vec<TcpStream> = (0..8)
            .map(|_| TcpStream::connect("127.0.0.1:9464").expect("idle"))
            .collect();
        let mut garbage = TcpStream::connect("127.0.0.1:9464").expect("garbage");
        garbage.write_all(&[0x00; 3000]).expect("garbage");
        (idle, garbage)
    });
    let slow_tcp = spawn_in_netns(&hm, || {
        let mut s = TcpStream::connect("127.0.0.1:9464").expect("slow");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) && s.write_all(b"G").is_ok() {
            std::thread::sleep(Duration::from_millis(300));
        }
        s
    });
    std::thread::sleep(Duration::from_millis(300));

    for _ in 0..3 {
        let took = timed_ctl(&socket, &lab);
        assert!(
            took < PROMPT,
            "hmd ctl status took {took:?} behind idle clients"
        );
        let (took, scraped) = in_netns(&hm, || {
            let asked = Instant::now();
            let out = http_get("127.0.0.1:9464", "/metrics");
            (asked.elapsed(), out)
        });
        assert!(scraped.starts_with("HTTP/1.1 200 OK\r\n"), "{scraped}");
        assert!(scraped.contains("hvha_hmd_"), "{scraped}");
        assert!(
            took < PROMPT,
            "GET /metrics took {took:?} behind idle clients"
        );
    }

    // More idle clients than the admin socket serves: the oldest are told and closed,
    // the operator's ctl is still served.
    let crowd: Vec<UnixStream> = (0..MAX_CONNECTIONS)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(2));
            UnixStream::connect(&socket).expect("crowd")
        })
        .collect();
    let took = timed_ctl(&socket, &lab);
    assert!(
        took < PROMPT,
        "hmd ctl status took {took:?} with the socket full"
    );
    for s in &idle {
        let line = line_on(s, Duration::from_secs(5));
        assert!(
            line.starts_with("error: too many connections (32 open): this one, silent the longest"),
            "an idle client older than the crowd got {line:?}"
        );
    }
    assert_eq!(
        line_on(&crowd[MAX_CONNECTIONS - 1], Duration::from_millis(200)),
        "",
        "the newest idle client was closed"
    );
    let stats = hmd_stats(&socket).unwrap_or_else(|e| panic!("{e}"));
    assert!(stats["admin_evicted"] >= 8, "{stats:?}");
    assert!(stats["admin_too_long"] >= 1, "{stats:?}");
    assert_eq!(stats["admin_refused"], 0, "{stats:?}");
    assert!(
        stats["metrics_too_long"] == 0 && stats["metrics_answered"] >= 3,
        "{stats:?}"
    );

    // The garbage sender was answered; the slow ones are cut at 5 s.
    let line = line_on(&garbage, Duration::from_secs(5));
    assert_eq!(line, "error: no command line within 64 bytes\n");
    drop((slow.join(), slow_tcp.join(), idle_tcp, garbage_tcp, crowd));
    assert!(
        lab.log("hmd").contains("listener full"),
        "{}",
        lab.log("hmd")
    );
}
