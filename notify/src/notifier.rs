//! `NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`, and the datagrams.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Longest socket name: `sun_path` is 108 bytes, one of which ends a path (or starts an
/// abstract name).
const MAX_NAME: usize = 107;

/// Why the service manager's variables could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` is neither an absolute path nor `@name`, or too long.
    #[error("NOTIFY_SOCKET={value:?}: {why}")]
    BadSocket {
        /// The value (lossily as text).
        value: String,
        /// What is wrong.
        why: &'static str,
    },
    /// `WATCHDOG_USEC` or `WATCHDOG_PID` is not a positive decimal number.
    #[error("{name}={value:?}: not a positive decimal number")]
    BadNumber {
        /// `WATCHDOG_USEC` or `WATCHDOG_PID`.
        name: &'static str,
        /// The value (lossily as text).
        value: String,
    },
    /// The sending socket could not be created.
    #[error("cannot create the notification socket: {0}")]
    Socket(io::Error),
}

/// Where notifications go, and the watchdog timeout, as the service manager set them.
#[derive(Debug, Default)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
    /// Messages the receiver did not take (full queue, gone).
    dropped: AtomicU64,
}

impl Notifier {
    /// A notifier that sends nothing (no service manager).
    pub fn disabled() -> Notifier {
        Notifier::default()
    }

    /// Read `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment
    /// (left as they are).
    pub fn from_env() -> Result<Notifier, NotifyError> {
        Notifier::from_vars(
            std::env::var_os("NOTIFY_SOCKET").as_deref(),
            std::env::var_os("WATCHDOG_USEC").as_deref(),
            std::env::var_os("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
    }

    /// As [`from_env`](Self::from_env), from the variables' values; `pid` is this
    /// process's id. An unset or empty `NOTIFY_SOCKET` disables notifications; the
    /// watchdog is on when `WATCHDOG_USEC` is set and `WATCHDOG_PID` is unset or `pid`.
    pub fn from_vars(
        notify_socket: Option<&OsStr>,
        watchdog_usec: Option<&OsStr>,
        watchdog_pid: Option<&OsStr>,
        pid: u32,
    ) -> Result<Notifier, NotifyError> {
        let addr = match notify_socket {
            None => None,
            Some(v) if v.is_empty() => None,
            Some(v) => Some(socket_addr(v)?),
        };
        let usec = watchdog_usec
            .map(|v| positive("WATCHDOG_USEC", v))
            .transpose()?;
        let for_us = match watchdog_pid {
            None => true,
            Some(v) => positive("WATCHDOG_PID", v)? == u64::from(pid),
        };
        let watchdog = usec.filter(|_| for_us).map(Duration::from_micros);
        let target = match addr {
            None => None,
            Some(addr) => {
                let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
                // Never hold the daemon's loop on a receiver that does not read.
                socket.set_nonblocking(true).map_err(NotifyError::Socket)?;
                Some((socket, addr))
            }
        };
        Ok(Notifier {
            target,
            watchdog,
            dropped: AtomicU64::new(0),
        })
    }

    /// True when there is a socket to notify.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The service manager's watchdog timeout (`WATCHDOG_USEC`), if it asks for pings.
    pub fn watchdog_timeout(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.is_enabled())
    }

    /// Messages that could not be delivered so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Send `state` (newline-separated `KEY=VALUE` lines) as one datagram. Without a
    /// socket: `Ok(())`, nothing sent. Never blocks: a receiver whose queue is full
    /// makes this fail with `WouldBlock`, and the message is counted as dropped.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        let Some((socket, addr)) = &self.target else {
            return Ok(());
        };
        match socket.send_to_addr(state.as_bytes(), addr) {
            Ok(_) => Ok(()),
            Err(e) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// `READY=1` with a `STATUS=` line: start-up is complete.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    /// `WATCHDOG=1`: still alive.
    pub fn watchdog(&self) -> io::Result<()> {
        self.notify("WATCHDOG=1")
    }

    /// `STOPPING=1`: a graceful stop has begun.
    pub fn stopping(&self) -> io::Result<()> {
        self.notify("STOPPING=1\nSTATUS=stopping")
    }

    /// `STATUS=…`: free text shown by `systemctl status`.
    pub fn status(&self, status: &str) -> io::Result<()> {
        self.notify(&format!("STATUS={}", one_line(status)))
    }
}

/// `status` on one line: a newline would start another assignment.
fn one_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

/// The address named by `NOTIFY_SOCKET`.
fn socket_addr(value: &OsStr) -> Result<SocketAddr, NotifyError> {
    let bytes = value.as_bytes();
    let bad = |why| NotifyError::BadSocket {
        value: value.to_string_lossy().into_owned(),
        why,
    };
    if bytes.len() > MAX_NAME {
        return Err(bad("longer than 107 bytes"));
    }
    match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(value).map_err(|_| bad("not a usable socket path")),
        Some(b'@') => SocketAddr::from_abstract_name(bytes.get(1..).unwrap_or_default())
            .map_err(|_| bad("not a usable abstract socket name")),
        _ => Err(bad(
            "neither an absolute path nor an @abstract name (other transports are not supported)",
        )),
    }
}

/// A positive decimal number of at most 20 digits.
fn positive(name: &'static str, value: &OsStr) -> Result<u64, NotifyError> {
    let bytes = value.as_bytes();
    let n = (!bytes.is_empty() && bytes.len() <= 20 && bytes.iter().all(u8::is_ascii_digit))
        .then(|| {
            bytes.iter().try_fold(0u64, |acc, &b| {
                acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
            })
        })
        .flatten()
        .filter(|&n| n > 0);
    n.ok_or_else(|| NotifyError::BadNumber {
        name,
        value: value.to_string_lossy().into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<&OsStr> {
        Some(OsStr::new(s))
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn path_socket_receives_each_message_as_one_datagram() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).expect("bind");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = Notifier::from_vars(
            Some(path.as_os_str()),
            os("2000000"),
            None,
            std::process::id(),
        )
        .expect("valid variables");
        assert!(n.is_enabled());
        assert_eq!(n.watchdog_timeout(), Some(Duration::from_secs(2)));
        n.ready("3 interfaces\nopen").expect("sent");
        assert_eq!(recv(&server), "READY=1\nSTATUS=3 interfaces open");
        n.watchdog().expect("sent");
        assert_eq!(recv(&server), "WATCHDOG=1");
        n.stopping().expect("sent");
        assert_eq!(recv(&server), "STOPPING=1\nSTATUS=stopping");
        assert_eq!(n.dropped(), 0);
    }

    #[test]
    fn abstract_socket_is_written_with_an_at_sign() {
        let name = format!("hvha-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract");
        let server = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = Notifier::from_vars(os(&format!("@{name}")), None, None, 1).expect("valid");
        assert_eq!(n.watchdog_timeout(), None, "no WATCHDOG_USEC, no watchdog");
        n.status("up").expect("sent");
        assert_eq!(recv(&server), "STATUS=up");
    }

    #[test]
    fn a_full_receiver_never_blocks_the_sender() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let _server = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier::from_vars(Some(path.as_os_str()), None, None, 1).expect("valid");
        // Nobody reads: the queue fills (net.unix.max_dgram_qlen, 512 by default) and
        // further sends fail at once instead of waiting.
        let failed = (0..5000).filter(|_| n.watchdog().is_err()).count();
        assert!(failed > 0, "the receiver's queue never filled");
        assert_eq!(n.dropped(), u64::try_from(failed).unwrap_or(0));
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_nothing_fails() {
        for socket in [None, os("")] {
            let n = Notifier::from_vars(socket, os("1000000"), None, 1).expect("valid");
            assert!(!n.is_enabled());
            assert_eq!(n.watchdog_timeout(), None, "no socket to ping");
            n.ready("x").expect("no-op");
            n.watchdog().expect("no-op");
        }
        assert!(!Notifier::disabled().is_enabled());
    }

    #[test]
    fn watchdog_pid_of_another_process_turns_the_watchdog_off() {
        let on = Notifier::from_vars(os("@x"), os("500000"), os("42"), 42).expect("valid");
        assert_eq!(on.watchdog_timeout(), Some(Duration::from_millis(500)));
        let off = Notifier::from_vars(os("@x"), os("500000"), os("43"), 42).expect("valid");
        assert_eq!(off.watchdog_timeout(), None);
    }

    #[test]
    fn bad_values_are_named() {
        let long = format!("/{}", "a".repeat(107));
        for (socket, usec, pid, want) in [
            (
                os("run/notify"),
                None,
                None,
                "NOTIFY_SOCKET=\"run/notify\": neither",
            ),
            (
                os("vsock:2:1"),
                None,
                None,
                "NOTIFY_SOCKET=\"vsock:2:1\": neither",
            ),
            (os(&long), None, None, "longer than 107 bytes"),
            (
                os("@x"),
                os("0"),
                None,
                "WATCHDOG_USEC=\"0\": not a positive",
            ),
            (os("@x"), os("-5"), None, "WATCHDOG_USEC=\"-5\""),
            (os("@x"), os("1e6"), None, "WATCHDOG_USEC=\"1e6\""),
            (os("@x"), os("99999999999999999999"), None, "WATCHDOG_USEC"),
            (os("@x"), os(""), None, "WATCHDOG_USEC=\"\""),
            (os("@x"), os("1000"), os("abc"), "WATCHDOG_PID=\"abc\""),
        ] {
            let e = Notifier::from_vars(socket, usec, pid, 1).expect_err(want);
            assert!(e.to_string().contains(want), "{e} lacks {want:?}");
        }
    }
}
