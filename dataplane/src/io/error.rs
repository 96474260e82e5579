//! The one error type of the IO layer.

use std::io;

use super::InterfaceName;

/// Why an IO operation failed. Every message names the interface (or namespace) and the
/// operation, so a daemon can log it as is.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The interface name is not one Linux accepts.
    #[error("invalid interface name {name:?}: {why}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// No interface has this name (in the caller's network namespace).
    #[error("interface {iface} not found")]
    NotFound {
        /// The interface looked for.
        iface: InterfaceName,
    },
    /// An interface query (`SIOCGIFHWADDR`, `SIOCGIFFLAGS`, …) failed.
    #[error("cannot read the {what} of interface {iface}: {}", os(.source))]
    Query {
        /// The interface.
        iface: InterfaceName,
        /// What was being read.
        what: &'static str,
        /// The system's reason.
        source: io::Error,
    },
    /// `getifaddrs` failed.
    #[error("cannot list network interfaces: {}", os(.source))]
    List {
        /// The system's reason.
        source: io::Error,
    },
    /// A socket setting is out of range; nothing was opened.
    #[error("invalid {what} {value} for the socket on {iface}: allowed {allowed}")]
    InvalidConfig {
        /// The interface the socket was for.
        iface: InterfaceName,
        /// Which setting.
        what: &'static str,
        /// The value given.
        value: u64,
        /// The allowed range, in words.
        allowed: &'static str,
    },
    /// `socket(AF_PACKET, …)` itself failed (typically: not root / no `CAP_NET_RAW`).
    #[error("cannot open AF_PACKET socket on {iface}: {}{}", os(.source), privilege_hint(.source))]
    Open {
        /// The interface the socket was for.
        iface: InterfaceName,
        /// The system's reason.
        source: io::Error,
    },
    /// A step after `socket()` failed: an option, the ring, the mapping, or `bind`.
    #[error("cannot set up AF_PACKET socket on {iface} ({step}): {}{}", os(.source), privilege_hint(.source))]
    Setup {
        /// The interface the socket was for.
        iface: InterfaceName,
        /// The step, e.g. `"PACKET_RX_RING"` or `"bind"`.
        step: &'static str,
        /// The system's reason.
        source: io::Error,
    },
    /// Receiving failed (e.g. `ENETDOWN` after the interface went down).
    #[error("receive on {iface} failed: {}", os(.source))]
    Recv {
        /// The socket's interface.
        iface: InterfaceName,
        /// The system's reason.
        source: io::Error,
    },
    /// Sending failed. `WouldBlock` / `ENOBUFS` mean the transmit queue is full: see
    /// [`IoError::is_would_block`].
    #[error("send on {iface} failed: {}", os(.source))]
    Send {
        /// The socket's interface.
        iface: InterfaceName,
        /// The system's reason.
        source: io::Error,
    },
    /// A frame was refused before reaching the kernel.
    #[error("cannot send a {len}-byte frame on {iface}: {why}")]
    BadFrame {
        /// The socket's interface.
        iface: InterfaceName,
        /// Length of the frame given.
        len: usize,
        /// Why it was refused.
        why: &'static str,
    },
    /// `poll` failed.
    #[error("cannot wait for frames on {iface}: {}", os(.source))]
    Wait {
        /// The socket's interface.
        iface: InterfaceName,
        /// The system's reason.
        source: io::Error,
    },
    /// `PACKET_STATISTICS` could not be read.
    #[error("cannot read packet statistics on {iface}: {}", os(.source))]
    Stats {
        /// The socket's interface.
        iface: InterfaceName,
        /// The system's reason.
        source: io::Error,
    },
    /// The named network namespace could not be entered.
    #[error("cannot enter network namespace {name}: {}{}", os(.source), privilege_hint(.source))]
    Namespace {
        /// The namespace name or path.
        name: String,
        /// The system's reason.
        source: io::Error,
    },
    /// `getrusage(RUSAGE_THREAD)` failed.
    #[error("cannot read this thread's CPU time: {}", os(.source))]
    CpuTime {
        /// The system's reason.
        source: io::Error,
    },
}

impl IoError {
    /// True when a send failed only because the transmit queue is full right now
    /// (`EAGAIN` or `ENOBUFS`): retry later, nothing is wrong with the socket.
    pub fn is_would_block(&self) -> bool {
        match self {
            IoError::Send { source, .. } | IoError::Recv { source, .. } => {
                source.kind() == io::ErrorKind::WouldBlock
                    || source.raw_os_error() == Some(libc::ENOBUFS)
            }
            _ => false,
        }
    }

    /// True when the failure is a missing privilege (`EPERM` / `EACCES`).
    pub fn is_permission_denied(&self) -> bool {
        match self {
            IoError::Open { source, .. }
            | IoError::Setup { source, .. }
            | IoError::Namespace { source, .. } => is_permission(source),
            _ => false,
        }
    }
}

fn is_permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

/// The system's message without Rust's " (os error N)" suffix.
fn os(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) if e.raw_os_error().is_some() => text[..at].to_owned(),
        _ => text,
    }
}

fn privilege_hint(e: &io::Error) -> &'static str {
    if is_permission(e) {
        " (are you root?)"
    } else {
        ""
    }
}
