//! The service manager's watchdog, against real `hmd` and `vmmd` processes: each is
//! started with `NOTIFY_SOCKET` naming a UNIX datagram socket this test binds (a fake
//! systemd) and `WATCHDOG_USEC` = 1 s. READY arrives; `WATCHDOG=1` arrives about every
//! 0.5 s; the pings stop while the process is stopped (`kill -STOP`) and, for `hmd`,
//! while its HSDB writer is blocked by an exclusive lock this test holds on the SQLite
//! file; `hmd health` says why in each case and is clean again afterwards.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hvha_e2e::{HM_UUID, Lab, binary, hmd_toml, wait_for};

const VM: &str = "61be20f0-09a8-4753-b5e5-564f8a545ed5";

/// A fake service manager's notification socket.
struct FakeSystemd {
    socket: UnixDatagram,
    path: PathBuf,
}

impl FakeSystemd {
    fn bind(path: PathBuf) -> FakeSystemd {
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        FakeSystemd { socket, path }
    }

    /// Every message queued now or received during `d`.
    fn collect(&self, d: Duration) -> Vec<String> {
        let deadline = Instant::now() + d;
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.socket.set_nonblocking(true).expect("non-blocking");
                while let Ok(n) = self.socket.recv(&mut buf) {
                    out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
                self.socket.set_nonblocking(false).expect("blocking");
                return out;
            }
            self.socket
                .set_read_timeout(Some(left))
                .expect("read timeout");
            if let Ok(n) = self.socket.recv(&mut buf) {
                out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }

    /// `WATCHDOG=1` messages queued now or received during `d`.
    fn pings(&self, d: Duration) -> usize {
        self.collect(d)
            .iter()
            .filter(|m| *m == "WATCHDOG=1")
            .count()
    }

    /// Wait up to `within` for a message starting with `prefix`; all messages seen.
    fn wait_message(&self, prefix: &str, within: Duration) -> Result<String, Vec<String>> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            for m in self.collect(Duration::from_millis(100)) {
                if m.starts_with(prefix) {
                    return Ok(m);
                }
                seen.push(m);
            }
        }
        Err(seen)
    }
}

/// `hmd health --socket <socket>`: exit code and standard output.
fn health(socket: &Path) -> (Option<i32>, String) {
    let out = Command::new(binary("hmd"))
        .args(["health", "--socket"])
        .arg(socket)
        .output()
        .expect("run hmd health");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn pings_stop_when_the_loop_or_the_hsdb_writer_is_stuck() {
    let Some(mut lab) = Lab::new("watchdog") else {
        return;
    };
    let hm = lab.netns("hm");
    let vm = lab.netns("vm");
    lab.link(&vm, "ha1", &hm, "hv0");
    let hsdb = lab.dir.join("hsdb.sqlite");
    let admin = lab.dir.join("hmd.sock");
    // hmd's own heartbeat row every 200 ms: work for the HSDB writer (below).
    let hmd_config = lab.write(
        "hmd.toml",
        &hmd_toml(
            HM_UUID,
            &hsdb,
            &admin,
            &["hv0"],
            "hello_period_ms = 500\nhb_period_ms = 200\nvm_miss_after_ms = 1000\n\
             hm_heartbeat_period_ms = 200\nflush_ms = 10\n",
        ),
    );
    let vmmd_config = lab.write(
        "vmmd.toml",
        &format!(
            "vm_uuid = \"{VM}\"\ninterfaces = [\"ha1\"]\n{}",
            hvha_e2e::vmmd_ame_section(&lab.dir, "vmmd")
        ),
    );
    let hmd_sd = FakeSystemd::bind(lab.dir.join("hmd.notify"));
    let vmmd_sd = FakeSystemd::bind(lab.dir.join("vmmd.notify"));
    for (label, ns, bin, config, sd) in [
        ("hmd", &hm, "hmd", &hmd_config, &hmd_sd),
        ("vmmd", &vm, "vmmd", &vmmd_config, &vmmd_sd),
    ] {
        let config = config.display().to_string();
        let notify = sd.path.display().to_string();
        lab.spawn_with_env(
            label,
            ns,
            bin,
            &["--config", &config],
            &[
                ("NOTIFY_SOCKET", notify.as_str()),
                ("WATCHDOG_USEC", "1000000"),
                ("RUST_LOG", "info"),
            ],
        );
    }
    let logs = |lab: &Lab| format!("--- hmd\n{}--- vmmd\n{}", lab.log("hmd"), lab.log("vmmd"));

    // READY once started, then pings every ~0.5 s (6 expected in 3 s; 3 is the floor
    // on a loaded machine).
    for (name, sd) in [("hmd", &hmd_sd), ("vmmd", &vmmd_sd)] {
        let ready = sd.wait_message("READY=1", Duration::from_secs(20));
        assert!(
            ready.is_ok(),
            "{name}: no READY=1: {ready:?}\n{}",
            logs(&lab)
        );
    }
    let _ = vmmd_sd.collect(Duration::ZERO);
    let hmd_pings = hmd_sd.pings(Duration::from_secs(3));
    let vmmd_pings = vmmd_sd.pings(Duration::ZERO);
    assert!(
        hmd_pings >= 3,
        "hmd: {hmd_pings} pings in 3 s\n{}",
        logs(&lab)
    );
    assert!(
        vmmd_pings >= 3,
        "vmmd: {vmmd_pings} pings in 3 s\n{}",
        logs(&lab)
    );
    assert_eq!(health(&admin), (Some(0), "healthy\n".to_owned()));

    // The HSDB writer blocked: another connection holds the write lock. hmd's own
    // heartbeat row (every 200 ms) gives the writer work it cannot commit; after 1 s
    // without progress the pings stop, while vmmd's go on.
    let lock = rusqlite::Connection::open(&hsdb).expect("open the HSDB");
    lock.execute_batch("BEGIN EXCLUSIVE")
        .expect("take the write lock");
    let before = hmd_sd.pings(Duration::from_millis(2500));
    let during = hmd_sd.pings(Duration::from_secs(3));
    let vmmd_during = vmmd_sd.pings(Duration::ZERO);
    assert_eq!(
        during,
        0,
        "hmd pinged with its writer blocked ({before} pings while it noticed)\n{}",
        logs(&lab)
    );
    assert!(
        vmmd_during >= 3,
        "vmmd stopped pinging: {vmmd_during}\n{}",
        logs(&lab)
    );
    let (code, text) = health(&admin);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.starts_with("unhealthy: HSDB writer stuck: "), "{text}");
    assert!(
        lab.log("hmd").contains("withholding watchdog pings"),
        "{}",
        logs(&lab)
    );
    lock.execute_batch("ROLLBACK").expect("release the lock");
    assert!(
        hmd_sd
            .wait_message("WATCHDOG=1", Duration::from_secs(15))
            .is_ok(),
        "hmd did not resume its pings once the lock was released\n{}",
        logs(&lab)
    );
    assert_eq!(
        wait_for(Duration::from_secs(10), || {
            let h = health(&admin);
            (h.0 == Some(0)).then_some(h)
        }),
        Some((Some(0), "healthy\n".to_owned()))
    );

    // A cable pulled on the agent's side: reported by health, pings go on (a restart
    // would not mend a link).
    lab.set_link(&vm, "ha1", false);
    let report = wait_for(Duration::from_secs(10), || {
        let (code, text) = health(&admin);
        (code == Some(1)).then_some(text)
    });
    assert_eq!(
        report.as_deref(),
        Some("unhealthy: interface hv0 has no carrier\n")
    );
    assert!(hmd_sd.pings(Duration::from_secs(2)) >= 1, "{}", logs(&lab));
    lab.set_link(&vm, "ha1", true);

    // Both processes stopped: no pings; `hmd health` gets no answer (it waits 7 s) and
    // says so. They stay stopped until it has given up.
    lab.signal("hmd", "STOP");
    lab.signal("vmmd", "STOP");
    let _ = hmd_sd.collect(Duration::from_millis(300));
    let _ = vmmd_sd.collect(Duration::ZERO);
    let (code, text) = health(&admin);
    let hmd_stopped = hmd_sd.pings(Duration::ZERO);
    let vmmd_stopped = vmmd_sd.pings(Duration::ZERO);
    lab.signal("hmd", "CONT");
    lab.signal("vmmd", "CONT");
    assert_eq!((hmd_stopped, vmmd_stopped), (0, 0), "pings while stopped");
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.starts_with("unhealthy: no answer from ") && text.contains("stopped or wedged"),
        "{text}"
    );
    for (name, sd) in [("hmd", &hmd_sd), ("vmmd", &vmmd_sd)] {
        assert!(
            sd.wait_message("WATCHDOG=1", Duration::from_secs(10))
                .is_ok(),
            "{name} did not resume its pings after SIGCONT\n{}",
            logs(&lab)
        );
    }
}
