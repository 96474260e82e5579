//! What a daemon tells its service manager, without libsystemd.
//!
//! systemd's `Type=notify` services learn where to report from two environment
//! variables (`sd_notify(3)`, `sd_watchdog_enabled(3)`):
//!
//! - `NOTIFY_SOCKET`: a UNIX datagram socket, an absolute path (`/run/systemd/notify`) or
//!   an abstract name written with a leading `@`. Each message is one datagram of
//!   newline-separated `KEY=VALUE` assignments: `READY=1`, `WATCHDOG=1`, `STOPPING=1`,
//!   `STATUS=…`.
//! - `WATCHDOG_USEC` (and optionally `WATCHDOG_PID`): the service must send `WATCHDOG=1`
//!   at least this often, or be killed (and, with `Restart=on-failure`, restarted).
//!   `WATCHDOG_PID`, when set, names the process meant; another process ignores it.
//!
//! [`Notifier`] reads them once and sends; it never blocks (a full receiver drops the
//! message, which is counted) and never fails the daemon: without `NOTIFY_SOCKET` every
//! send is a no-op. [`WatchdogPacer`] is the schedule: a ping every half of
//! `WATCHDOG_USEC`, as `sd_watchdog_enabled(3)` recommends; it is pure and takes the time
//! as a parameter. *When* a daemon may ping — only after its own loop has completed a
//! turn, and, for `hmd`, only while its HSDB writer makes progress — is the daemon's
//! decision (docs/operations.md, "Running under systemd").

mod notifier;
mod pacer;

pub use self::notifier::{Notifier, NotifyError};
pub use self::pacer::WatchdogPacer;
