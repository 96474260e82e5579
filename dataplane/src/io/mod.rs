//! Raw Ethernet IO for the daemons: an `AF_PACKET` socket bound to one interface and
//! one EtherType, with a choice of receive path, plus the interface facts a daemon
//! checks before using an interface.
//!
//! This module owns the sockets' safe API; the system calls live in `crate::sys`, the
//! only place with `unsafe`. It never parses frames (that is [`crate::wire`]) and
//! never decides anything about sessions (that is [`crate::endpoint`]): a driver loop
//! waits on the socket ([`RawSocket::wait_readable`], or `mio`'s `SourceFd` on
//! [`AsRawFd`]), calls [`RawSocket::recv`] with a closure that feeds
//! `Endpoint::handle_frame`, and sends what `Endpoint::poll_transmit` produced with
//! [`RawSocket::send`].
//!
//! Receive paths ([`RxMode`]), measured in `docs/io.md`:
//!
//! - [`RxMode::Ring`]: a `TPACKET_V3` ring shared with the kernel; frames are read in
//!   place (zero copy) one retired block at a time. Least CPU per frame; latency up to
//!   the block retire timeout.
//! - [`RxMode::Recvmmsg`]: `recvmmsg` into a batch of buffers allocated once.
//! - [`RxMode::Recv`]: one `recvfrom` per frame; the baseline.
//!
//! Memory is bounded and allocated at open: `batch × 2 KiB` for `Recvmmsg`, 2 KiB for
//! `Recv`, `block_size × block_count` (≤ 256 MiB) for `Ring`. Nothing is allocated per
//! frame, no input panics.

mod error;
mod interface;

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

pub use error::IoError;
pub use interface::{Interface, InterfaceName, MAX_NAME_LEN, has_carrier, interfaces};

use crate::sys::mmsg::RecvBatch;
use crate::sys::ring::{self, Ring};
use crate::sys::socket::{self, PacketSocket};
use crate::wire::ETHERNET_HEADER_LEN;

/// Receive buffer per frame in the `Recv` and `Recvmmsg` modes: a 1500-byte MTU frame
/// with its 14-byte header and two VLAN tags fits. Longer frames are counted as
/// truncated and not delivered.
pub const RECV_FRAME_LEN: usize = 2048;

/// `ETH_P_ALL`: bind to every EtherType (diagnostics; the daemons bind to HVNCP's).
pub const ETH_P_ALL: u16 = 0x0003;

/// How a [`RawSocket`] receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxMode {
    /// One `recvfrom` per frame into one buffer.
    Recv,
    /// `recvmmsg` of up to `batch` frames per call (1..=1024).
    Recvmmsg {
        /// Buffers per call.
        batch: usize,
    },
    /// A `TPACKET_V3` ring of `block_count` blocks of `block_size` bytes; the kernel
    /// hands a block over when it is full or `retire_ms` after its first frame.
    Ring {
        /// Bytes per block: a power of two, from the page size to 64 MiB.
        block_size: usize,
        /// Blocks in the ring, 2..=4096; `block_size × block_count` at most 256 MiB.
        block_count: usize,
        /// Block retire timeout in milliseconds, 1..=10,000: the worst-case delay
        /// before a frame is seen at low rates.
        retire_ms: u32,
    },
}

impl RxMode {
    /// The ring the daemon uses: 256 blocks of 64 KiB (16 MiB), retired after 4 ms.
    ///
    /// At heartbeat rates a block is handed over by its timeout long before it is
    /// full, so the ring absorbs a stall of the reader of about `block_count ×
    /// retire_ms` ≈ 1 s; 16 blocks of 1 MiB, the same memory, absorb only 64 ms and
    /// dropped frames in a 300 ms stall. Measured in `docs/io.md`.
    pub const DAEMON_RING: RxMode = RxMode::Ring {
        block_size: 1 << 16,
        block_count: 256,
        retire_ms: 4,
    };
}

/// Everything [`RawSocket::open_with`] needs besides the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketConfig {
    /// EtherType to receive and send, host order ([`crate::wire::DEFAULT_ETHERTYPE`] for
    /// HVNCP; [`ETH_P_ALL`] receives everything).
    pub ethertype: u16,
    /// Receive path.
    pub rx: RxMode,
    /// Socket receive buffer for `Recv` / `Recvmmsg`, 64 KiB..=256 MiB
    /// (`SO_RCVBUFFORCE`, else `SO_RCVBUF` capped by `net.core.rmem_max`). The ring
    /// has its own memory and ignores this.
    pub rcvbuf_bytes: usize,
    /// Ask the kernel not to queue frames this host sends (`PACKET_IGNORE_OUTGOING`).
    /// When false, or when the kernel refuses (before Linux 4.20), the socket drops
    /// them itself by their `PACKET_OUTGOING` mark. Only sockets bound to [`ETH_P_ALL`]
    /// see outgoing frames at all.
    pub kernel_ignore_outgoing: bool,
}

impl SocketConfig {
    /// `ethertype` and `rx` with a 4 MiB receive buffer and kernel-side filtering of
    /// outgoing frames.
    pub fn new(ethertype: u16, rx: RxMode) -> SocketConfig {
        SocketConfig {
            ethertype,
            rx,
            rcvbuf_bytes: 4 << 20,
            kernel_ignore_outgoing: true,
        }
    }
}

/// Counters of one socket. Kernel counters are accumulated across reads (the kernel
/// resets them every time they are read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Frames that reached the socket in the kernel, dropped ones included
    /// (`tp_packets`).
    pub kernel_packets: u64,
    /// Frames the kernel dropped because the buffer or ring was full (`tp_drops`).
    pub kernel_drops: u64,
    /// Ring only: times the ring froze because user space held every block
    /// (`tp_freeze_q_cnt`).
    pub kernel_freezes: u64,
    /// Frames handed to a `recv` callback.
    pub delivered: u64,
    /// Frames longer than the receive buffer, not delivered.
    pub truncated: u64,
    /// Frames this host sent, seen and skipped in user space.
    pub outgoing_skipped: u64,
    /// Ring only: frames a block announced but whose headers were out of bounds
    /// (should stay 0).
    pub malformed: u64,
}

/// How one socket receives, with the memory it owns.
enum Rx {
    Single(Box<[u8]>),
    Batch(RecvBatch),
    Ring(Ring),
}

/// An `AF_PACKET` socket bound to one interface and one EtherType: non-blocking,
/// close-on-exec, not receiving its host's own transmissions.
///
/// Owned by one thread (the interface's receive thread); `send` takes `&self` so the
/// same thread can interleave both.
pub struct RawSocket {
    // Field order matters: `rx` (the ring mapping) is dropped before `sock` closes the
    // descriptor, as the kernel wants.
    rx: Rx,
    sock: PacketSocket,
    iface: InterfaceName,
    ifindex: u32,
    config: SocketConfig,
    filter_outgoing: bool,
    rcvbuf: usize,
    stats: SocketStats,
}

impl std::fmt::Debug for RawSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSocket")
            .field("iface", &self.iface)
            .field("ifindex", &self.ifindex)
            .field("fd", &self.sock.as_fd().as_raw_fd())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Upper bounds on what one `recv` call drains, so a flood cannot starve the caller's
/// timers: frames for `Recv`, batches for `Recvmmsg`, blocks for the ring. A whole pass
/// over the daemon's ring (256 blocks, some 130,000 small frames) kept `hmd` from its
/// timers and its admin socket for seconds in a debug build under a flood; 16 blocks
/// are about 8,000 frames.
const DRAIN_FRAMES: usize = 1024;
const DRAIN_BATCHES: usize = 16;
const DRAIN_BLOCKS: usize = 16;

impl RawSocket {
    /// Open a socket on `iface` for `ethertype` with the default [`SocketConfig`].
    pub fn open(iface: &InterfaceName, ethertype: u16, rx: RxMode) -> Result<RawSocket, IoError> {
        RawSocket::open_with(iface, &SocketConfig::new(ethertype, rx))
    }

    /// Open a socket on `iface` as `config` says. Checks the configuration first, then
    /// looks the interface up, so a typo is reported as such rather than as a socket
    /// error.
    pub fn open_with(iface: &InterfaceName, config: &SocketConfig) -> Result<RawSocket, IoError> {
        validate(iface, config)?;
        let ifindex = interface::index_of(iface)?;
        let sock = PacketSocket::new().map_err(|source| IoError::Open {
            iface: *iface,
            source,
        })?;
        let setup = |step| {
            move |source| IoError::Setup {
                iface: *iface,
                step,
                source,
            }
        };
        let filter_outgoing =
            !(config.kernel_ignore_outgoing && sock.set_ignore_outgoing().is_ok());
        let (rx, rcvbuf) = match config.rx {
            RxMode::Recv => (
                Rx::Single(vec![0u8; RECV_FRAME_LEN].into_boxed_slice()),
                sock.set_rcvbuf(config.rcvbuf_bytes)
                    .map_err(setup("SO_RCVBUF"))?,
            ),
            RxMode::Recvmmsg { batch } => (
                Rx::Batch(RecvBatch::new(batch, RECV_FRAME_LEN)),
                sock.set_rcvbuf(config.rcvbuf_bytes)
                    .map_err(setup("SO_RCVBUF"))?,
            ),
            RxMode::Ring {
                block_size,
                block_count,
                retire_ms,
            } => {
                sock.set_tpacket_v3()
                    .map_err(setup("PACKET_VERSION TPACKET_V3"))?;
                let ring = Ring::new(&sock, block_size, block_count, RING_FRAME_SIZE, retire_ms)
                    .map_err(setup("PACKET_RX_RING and mmap"))?;
                (Rx::Ring(ring), 0)
            }
        };
        sock.bind(ifindex, config.ethertype)
            .map_err(setup("bind"))?;
        Ok(RawSocket {
            rx,
            sock,
            iface: *iface,
            ifindex,
            config: *config,
            filter_outgoing,
            rcvbuf,
            stats: SocketStats::default(),
        })
    }

    /// Deliver every frame queued now to `on_frame`, in arrival order, and return how
    /// many were delivered. Never waits. Stops early after 1024 frames
    /// (`Recv`), 16 batches (`Recvmmsg`) or 16 blocks of the ring (at most one pass), so the caller's
    /// timers keep running under a flood. A level-triggered wait
    /// ([`RawSocket::wait_readable`], `poll(2)`) then still reports the socket readable;
    /// an edge-triggered one (`mio`) does not, so a `mio` driver calls `recv` again
    /// without sleeping while the last call delivered frames.
    ///
    /// In ring mode the slice points into the ring itself (zero copy) and is valid only
    /// during the call. Truncated frames and (when filtered here) this host's own
    /// transmissions are counted in [`SocketStats`], not delivered.
    pub fn recv(&mut self, mut on_frame: impl FnMut(&[u8])) -> Result<usize, IoError> {
        let iface = self.iface;
        let recv_err = |source| IoError::Recv { iface, source };
        let filter_outgoing = self.filter_outgoing;
        let stats = &mut self.stats;
        let mut delivered = 0usize;
        let mut deliver = |bytes: &[u8], truncated: bool, outgoing: bool| {
            if truncated {
                stats.truncated += 1;
            } else if outgoing && filter_outgoing {
                stats.outgoing_skipped += 1;
            } else {
                stats.delivered += 1;
                delivered += 1;
                on_frame(bytes);
            }
        };
        match &mut self.rx {
            Rx::Single(buf) => {
                for _ in 0..DRAIN_FRAMES {
                    match self.sock.recv_from(buf) {
                        Ok(r) => deliver(buf.get(..r.len).unwrap_or(&[]), r.truncated, r.outgoing),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(recv_err(e)),
                    }
                }
            }
            Rx::Batch(batch) => {
                for _ in 0..DRAIN_BATCHES {
                    let n = match batch.recv(self.sock.as_fd()) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(recv_err(e)),
                    };
                    for i in 0..n {
                        let (slot, bytes) = batch.slot(i);
                        deliver(bytes, slot.truncated, slot.outgoing);
                    }
                    if n < batch.capacity() {
                        break; // The queue is empty: save the EAGAIN round trip.
                    }
                }
            }
            Rx::Ring(ring) => {
                let mut blocks = 0;
                let mut malformed = 0u64;
                let block_count = ring.block_count();
                while let Some(block) = ring.next_block() {
                    let (claimed, walked) =
                        block.for_each_frame(|f| deliver(f.bytes, f.truncated, f.outgoing));
                    malformed += (claimed - walked) as u64;
                    drop(block);
                    blocks += 1;
                    if blocks >= block_count.min(DRAIN_BLOCKS) {
                        break;
                    }
                }
                stats.malformed += malformed;
                // A ring never returns errors through reads; a pending socket error
                // (e.g. ENETDOWN) would otherwise keep poll() readable forever.
                if blocks == 0
                    && let Some(e) = self.sock.take_error().map_err(recv_err)?
                {
                    return Err(recv_err(e));
                }
            }
        }
        Ok(delivered)
    }

    /// Send one complete frame (Ethernet header included, at least 14 bytes). Fails
    /// with [`IoError::is_would_block`] when the transmit queue is full.
    pub fn send(&self, frame: &[u8]) -> Result<(), IoError> {
        self.check_frame(frame)?;
        self.sock
            .send(frame)
            .map(drop)
            .map_err(|source| IoError::Send {
                iface: self.iface,
                source,
            })
    }

    /// Send frames with `sendmmsg` (64 per system call). Returns how many were sent,
    /// in order; fewer than `frames.len()` when the transmit queue filled up.
    pub fn send_batch(&self, frames: &[&[u8]]) -> Result<usize, IoError> {
        for frame in frames {
            self.check_frame(frame)?;
        }
        self.sock
            .send_batch(frames)
            .map_err(|source| IoError::Send {
                iface: self.iface,
                source,
            })
    }

    fn check_frame(&self, frame: &[u8]) -> Result<(), IoError> {
        if frame.len() < ETHERNET_HEADER_LEN {
            return Err(IoError::BadFrame {
                iface: self.iface,
                len: frame.len(),
                why: "shorter than an Ethernet header (14 bytes)",
            });
        }
        Ok(())
    }

    /// Wait until a frame can be received, or `timeout` passes (`None`: forever).
    /// `Ok(false)` on timeout or signal. In ring mode "readable" means a block was
    /// retired, so this returns at most `retire_ms` after the first frame arrived.
    pub fn wait_readable(&self, timeout: Option<Duration>) -> Result<bool, IoError> {
        self.sock
            .wait_readable(timeout)
            .map_err(|source| IoError::Wait {
                iface: self.iface,
                source,
            })
    }

    /// The socket's counters, reading (and so resetting) the kernel's
    /// `PACKET_STATISTICS` and adding them to the totals kept here.
    pub fn stats(&mut self) -> Result<SocketStats, IoError> {
        let k = self.sock.statistics().map_err(|source| IoError::Stats {
            iface: self.iface,
            source,
        })?;
        self.stats.kernel_packets += u64::from(k.packets);
        self.stats.kernel_drops += u64::from(k.drops);
        self.stats.kernel_freezes += u64::from(k.freezes);
        Ok(self.stats)
    }

    /// The interface the socket is bound to.
    pub fn interface(&self) -> InterfaceName {
        self.iface
    }

    /// That interface's index at open time.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The configuration the socket was opened with.
    pub fn config(&self) -> &SocketConfig {
        &self.config
    }

    /// True when the kernel drops this host's own transmissions for us
    /// (`PACKET_IGNORE_OUTGOING` accepted); false when the socket does it itself.
    pub fn kernel_ignores_outgoing(&self) -> bool {
        !self.filter_outgoing
    }

    /// The socket receive buffer the kernel granted (`Recv`/`Recvmmsg`; 0 for the ring).
    pub fn rcvbuf_bytes(&self) -> usize {
        self.rcvbuf
    }
}

impl AsFd for RawSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl AsRawFd for RawSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_fd().as_raw_fd()
    }
}

/// Size the kernel uses to account ring frames (V3 packs frames, this is bookkeeping).
const RING_FRAME_SIZE: usize = RECV_FRAME_LEN;

/// Ring memory cap: bounded memory whatever the configuration says.
const RING_MAX_BYTES: usize = 256 << 20;

fn validate(iface: &InterfaceName, config: &SocketConfig) -> Result<(), IoError> {
    let invalid = |what, value: usize, allowed| IoError::InvalidConfig {
        iface: *iface,
        what,
        value: value as u64,
        allowed,
    };
    if config.ethertype == 0 {
        return Err(invalid("EtherType", 0, "1..=0xffff"));
    }
    match config.rx {
        RxMode::Recv => {}
        RxMode::Recvmmsg { batch } => {
            if !(1..=1024).contains(&batch) {
                return Err(invalid("recvmmsg batch", batch, "1..=1024"));
            }
        }
        RxMode::Ring {
            block_size,
            block_count,
            retire_ms,
        } => {
            let page = ring::page_size();
            if !block_size.is_power_of_two() || block_size < page || block_size > 64 << 20 {
                return Err(invalid(
                    "ring block size",
                    block_size,
                    "a power of two from the page size (4096) to 64 MiB",
                ));
            }
            if !(2..=4096).contains(&block_count) {
                return Err(invalid("ring block count", block_count, "2..=4096"));
            }
            if block_size.saturating_mul(block_count) > RING_MAX_BYTES {
                return Err(invalid(
                    "ring size (bytes)",
                    block_size.saturating_mul(block_count),
                    "at most 256 MiB",
                ));
            }
            if !(1..=10_000).contains(&retire_ms) {
                return Err(invalid(
                    "ring retire timeout (ms)",
                    retire_ms as usize,
                    "1..=10000",
                ));
            }
        }
    }
    if !matches!(config.rx, RxMode::Ring { .. })
        && !(64 << 10..=256 << 20).contains(&config.rcvbuf_bytes)
    {
        return Err(invalid(
            "receive buffer (bytes)",
            config.rcvbuf_bytes,
            "64 KiB..=256 MiB",
        ));
    }
    Ok(())
}

/// CPU time consumed so far by the calling thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadCpuTime {
    /// In user space.
    pub user: Duration,
    /// In the kernel on the thread's behalf (system calls, not softirqs it did not run).
    pub system: Duration,
}

impl ThreadCpuTime {
    /// `user + system`.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }
}

/// The calling thread's CPU time (`getrusage(RUSAGE_THREAD)`), for the receive
/// thread's own accounting (the daemon's CPU budget is per receive thread).
pub fn thread_cpu_time() -> Result<ThreadCpuTime, IoError> {
    let (user, system) = socket::thread_cpu_time().map_err(|source| IoError::CpuTime { source })?;
    Ok(ThreadCpuTime { user, system })
}

/// Move the calling thread (only it) into a network namespace: a name made by
/// `ip netns add` (opened under `/run/netns/`) or a path such as
/// `/proc/<pid>/ns/net`. Sockets the thread opens afterwards, and interface lookups it
/// makes, belong to that namespace. Needs `CAP_SYS_ADMIN`. Used by the tests and the
/// measurement program to put two ends of a veth pair in separate namespaces.
pub fn enter_network_namespace(name: &str) -> Result<(), IoError> {
    let err = |source| IoError::Namespace {
        name: name.to_owned(),
        source,
    };
    let path = if name.contains('/') {
        std::path::PathBuf::from(name)
    } else if name.is_empty() || name == "." || name == ".." {
        return Err(err(io::Error::from_raw_os_error(libc::EINVAL)));
    } else {
        std::path::Path::new("/run/netns").join(name)
    };
    let file = File::open(&path).map_err(err)?;
    socket::enter_netns(&file).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> InterfaceName {
        InterfaceName::new(s).expect("valid")
    }

    #[test]
    fn bad_configs_are_refused_before_any_socket_is_opened() {
        let lo = name("lo");
        let cases = [
            (
                RxMode::Recvmmsg { batch: 0 },
                "invalid recvmmsg batch 0 for the socket on lo: allowed 1..=1024",
            ),
            (
                RxMode::Ring {
                    block_size: 5000,
                    block_count: 4,
                    retire_ms: 1,
                },
                "invalid ring block size 5000",
            ),
            (
                RxMode::Ring {
                    block_size: 1 << 20,
                    block_count: 1,
                    retire_ms: 1,
                },
                "invalid ring block count 1",
            ),
            (
                RxMode::Ring {
                    block_size: 64 << 20,
                    block_count: 8,
                    retire_ms: 1,
                },
                "invalid ring size (bytes) 536870912",
            ),
            (
                RxMode::Ring {
                    block_size: 1 << 20,
                    block_count: 4,
                    retire_ms: 0,
                },
                "invalid ring retire timeout (ms) 0",
            ),
        ];
        for (rx, want) in cases {
            let err = RawSocket::open(&lo, 0x0600, rx).expect_err("invalid");
            assert!(err.to_string().starts_with(want), "{err}");
        }
        let mut config = SocketConfig::new(0x0600, RxMode::Recv);
        config.rcvbuf_bytes = 1;
        let err = RawSocket::open_with(&lo, &config).expect_err("invalid");
        assert!(
            err.to_string().contains("receive buffer (bytes) 1"),
            "{err}"
        );
    }

    #[test]
    fn missing_interface_is_reported_before_the_socket() {
        let err = RawSocket::open(&name("hvnope9"), 0x0600, RxMode::Recv).expect_err("missing");
        assert_eq!(err.to_string(), "interface hvnope9 not found");
    }

    #[test]
    fn error_messages_strip_the_os_error_suffix_and_hint_at_root() {
        let err = IoError::Open {
            iface: name("veth0"),
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert_eq!(
            err.to_string(),
            "cannot open AF_PACKET socket on veth0: Operation not permitted (are you root?)"
        );
        assert!(err.is_permission_denied());
        let err = IoError::Send {
            iface: name("veth0"),
            source: io::Error::from_raw_os_error(libc::ENOBUFS),
        };
        assert!(err.is_would_block());
        assert_eq!(
            err.to_string(),
            "send on veth0 failed: No buffer space available"
        );
    }

    #[test]
    fn namespace_names_are_checked() {
        let err = enter_network_namespace("hv-no-such-ns-for-test").expect_err("missing");
        assert!(
            err.to_string()
                .starts_with("cannot enter network namespace hv-no-such-ns-for-test: "),
            "{err}"
        );
        assert!(enter_network_namespace("..").is_err());
    }

    #[test]
    fn thread_cpu_time_advances() {
        let before = thread_cpu_time().expect("getrusage");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        let mut now = before;
        // Spin until 10 ms of CPU were charged to this thread; allow a loaded machine
        // two seconds of wall time to give them.
        while now.total() < before.total() + Duration::from_millis(10)
            && start.elapsed() < Duration::from_secs(2)
        {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
            }
            now = thread_cpu_time().expect("getrusage");
        }
        assert!(
            now.total() >= before.total() + Duration::from_millis(10),
            "{before:?} {now:?}"
        );
    }
}
