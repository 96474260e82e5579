//! The `AF_PACKET` socket: open, options, bind, send, receive one frame, wait,
//! statistics. Also the two process-level calls the IO layer needs: the calling
//! thread's CPU time and joining a network namespace.

use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use super::{cvt, cvt_size, setsockopt, socklen_of};

/// At most this many frames go into one `sendmmsg` call (the header arrays live on the
/// stack).
const SEND_BATCH_MAX: usize = 64;

/// An open `AF_PACKET`, `SOCK_RAW` socket, non-blocking and close-on-exec.
///
/// `socket2` does what it can (creation, `SO_RCVBUF`, `send`, `SO_ERROR`); `libc` the
/// rest, which `socket2` does not offer: the `PACKET_*` options, `bind` to a
/// `sockaddr_ll`, `sendmmsg`, `recvfrom` with the packet type, `poll`.
#[derive(Debug)]
pub(crate) struct PacketSocket {
    fd: Socket,
}

/// One frame received by [`PacketSocket::recv_from`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    /// Bytes written into the buffer.
    pub(crate) len: usize,
    /// The frame was longer than the buffer; only `len` bytes were kept.
    pub(crate) truncated: bool,
    /// The kernel marked the frame `PACKET_OUTGOING`: one this host sent.
    pub(crate) outgoing: bool,
}

/// Kernel counters read (and reset) by `PACKET_STATISTICS`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KernelStats {
    /// Frames that reached the socket, dropped ones included (the kernel adds drops).
    pub(crate) packets: u32,
    /// Frames dropped because the receive buffer or ring was full.
    pub(crate) drops: u32,
    /// `TPACKET_V3` only: times the ring was frozen because every block was user-owned.
    pub(crate) freezes: u32,
}

impl PacketSocket {
    /// `socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)`. Protocol 0: the
    /// socket receives nothing until [`PacketSocket::bind`], so no frame of another
    /// interface or EtherType slips in while it is being set up.
    pub(crate) fn new() -> io::Result<PacketSocket> {
        // `Socket::new` adds `SOCK_CLOEXEC` on Linux; `None` is protocol 0.
        let fd = Socket::new(Domain::PACKET, Type::RAW.nonblocking(), None)?;
        Ok(PacketSocket { fd })
    }

    /// `PACKET_IGNORE_OUTGOING` (Linux 4.20+): do not queue frames this host sends.
    pub(crate) fn set_ignore_outgoing(&self) -> io::Result<()> {
        let on: libc::c_int = 1;
        setsockopt(
            self.fd.as_fd(),
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            &on,
        )
    }

    /// Size the receive buffer: `SO_RCVBUFFORCE` (ignores `rmem_max`, needs
    /// `CAP_NET_ADMIN`), else `SO_RCVBUF` (capped by `net.core.rmem_max`). Returns the
    /// size the kernel reports afterwards (it doubles the request for bookkeeping).
    pub(crate) fn set_rcvbuf(&self, bytes: usize) -> io::Result<usize> {
        // socket2 has no `SO_RCVBUFFORCE`.
        let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        let forced = setsockopt(
            self.fd.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &want,
        );
        if forced.is_err() {
            self.fd
                .set_recv_buffer_size(usize::try_from(want).unwrap_or(0))?;
        }
        self.fd.recv_buffer_size()
    }

    /// `PACKET_VERSION = TPACKET_V3`, required before `PACKET_RX_RING`.
    pub(crate) fn set_tpacket_v3(&self) -> io::Result<()> {
        let v3 = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt(self.fd.as_fd(), libc::SOL_PACKET, libc::PACKET_VERSION, &v3)
    }

    /// Bind to one interface and one EtherType (host order; `ETH_P_ALL` = 3 for all).
    ///
    /// Through `libc`: socket2 can only make a `SockAddr` for another family with
    /// `unsafe` code of its own (`SockAddr::new`), which would save nothing.
    pub(crate) fn bind(&self, ifindex: u32, ethertype: u16) -> io::Result<()> {
        let ifindex = libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
        let addr = libc::sockaddr_ll {
            sll_family: libc::c_ushort::try_from(libc::AF_PACKET).unwrap_or(0),
            sll_protocol: ethertype.to_be(),
            sll_ifindex: ifindex,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        // SAFETY: `addr` is a fully initialised `sockaddr_ll` whose size is passed; the
        // kernel only reads it.
        let ret = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                std::ptr::from_ref(&addr).cast(),
                socklen_of::<libc::sockaddr_ll>(),
            )
        };
        cvt(ret).map(drop)
    }

    /// Send one complete frame (Ethernet header included) on the bound interface.
    pub(crate) fn send(&self, frame: &[u8]) -> io::Result<usize> {
        self.fd.send_with_flags(frame, libc::MSG_DONTWAIT)
    }

    /// Send frames with `sendmmsg`, at most [`SEND_BATCH_MAX`] per call. Returns how
    /// many were sent: fewer than `frames.len()` when the kernel queue filled up
    /// (`Ok(0)` if not even the first fitted: would block).
    pub(crate) fn send_batch(&self, frames: &[&[u8]]) -> io::Result<usize> {
        let mut sent = 0;
        for chunk in frames.chunks(SEND_BATCH_MAX) {
            let mut iovs = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; SEND_BATCH_MAX];
            // SAFETY: `mmsghdr` is plain old data; all-zero is a valid value (null
            // pointers, zero lengths).
            let mut hdrs: [libc::mmsghdr; SEND_BATCH_MAX] = unsafe { std::mem::zeroed() };
            for ((frame, iov), hdr) in chunk.iter().zip(&mut iovs).zip(&mut hdrs) {
                // The kernel only reads through `iov_base` on send; the cast to `*mut`
                // is what the C struct wants.
                iov.iov_base = frame.as_ptr().cast_mut().cast();
                iov.iov_len = frame.len();
                hdr.msg_hdr.msg_iov = std::ptr::from_mut(iov);
                hdr.msg_hdr.msg_iovlen = 1;
            }
            let n = libc::c_uint::try_from(chunk.len()).unwrap_or(0);
            // SAFETY: the first `n` headers each point to one iovec describing a live,
            // readable frame borrowed from `frames`; all of them outlive the call.
            let ret = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    n,
                    libc::MSG_DONTWAIT,
                )
            };
            match cvt(ret) {
                Ok(done) => {
                    let done = usize::try_from(done).unwrap_or(0);
                    sent += done;
                    if done < chunk.len() {
                        return Ok(sent);
                    }
                }
                Err(e) if sent > 0 && is_transient(&e) => return Ok(sent),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(sent),
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    /// Receive one frame without waiting (`MSG_DONTWAIT | MSG_TRUNC`).
    pub(crate) fn recv_from(&self, buf: &mut [u8]) -> io::Result<Received> {
        let mut addr = MaybeUninit::<libc::sockaddr_ll>::zeroed();
        let mut addr_len = socklen_of::<libc::sockaddr_ll>();
        // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes; `addr` has room
        // for a `sockaddr_ll` and `addr_len` says so. The kernel writes at most those
        // sizes. With MSG_TRUNC the return value is the frame's real length, which may
        // exceed `buf.len()` but nothing beyond `buf.len()` is written.
        let ret = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                addr.as_mut_ptr().cast(),
                &raw mut addr_len,
            )
        };
        let real = cvt_size(ret)?;
        // SAFETY: the zeroed `sockaddr_ll` was a valid value before the call and the
        // kernel only stored plain integers in it.
        let addr = unsafe { addr.assume_init() };
        Ok(Received {
            len: real.min(buf.len()),
            truncated: real > buf.len(),
            outgoing: addr.sll_pkttype == libc::PACKET_OUTGOING,
        })
    }

    /// `poll(2)` for input. `Ok(true)` when readable (or in error: the next receive
    /// reports it), `Ok(false)` on timeout or signal. `None` waits forever.
    pub(crate) fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let ms = match timeout {
            None => -1,
            // Round up so that a 0.5 ms wait does not become a busy spin.
            Some(t) => {
                libc::c_int::try_from(t.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX)
            }
        };
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one live, initialised `pollfd`, and we pass a count of 1.
        let ret = unsafe { libc::poll(&raw mut pfd, 1, ms) };
        match cvt(ret) {
            Ok(n) => Ok(n > 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Read and reset `PACKET_STATISTICS`.
    pub(crate) fn statistics(&self) -> io::Result<KernelStats> {
        let mut st = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = socklen_of::<libc::tpacket_stats_v3>();
        // SAFETY: `st` has room for a `tpacket_stats_v3` and `len` says so; the kernel
        // writes at most `len` bytes (a `tpacket_stats`, 8, unless the socket is
        // TPACKET_V3) and stores the length written.
        let ret = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                std::ptr::from_mut(&mut st).cast(),
                &raw mut len,
            )
        };
        cvt(ret)?;
        let v3 =
            usize::try_from(len).is_ok_and(|l| l >= std::mem::size_of::<libc::tpacket_stats_v3>());
        Ok(KernelStats {
            packets: st.tp_packets,
            drops: st.tp_drops,
            freezes: if v3 { st.tp_freeze_q_cnt } else { 0 },
        })
    }
}

impl PacketSocket {
    /// Take the pending socket error (`SO_ERROR`), if any, clearing it.
    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.fd.take_error()
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Errors a full transmit queue produces on a non-blocking packet socket.
fn is_transient(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

/// User and system CPU time consumed so far by the calling thread
/// (`getrusage(RUSAGE_THREAD)`).
pub(crate) fn thread_cpu_time() -> io::Result<(Duration, Duration)> {
    let mut ru = MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` has room for one `rusage`, which the kernel fills in.
    cvt(unsafe { libc::getrusage(libc::RUSAGE_THREAD, ru.as_mut_ptr()) })?;
    // SAFETY: zero-initialised then filled by the kernel: every field is a plain integer.
    let ru = unsafe { ru.assume_init() };
    Ok((timeval(ru.ru_utime), timeval(ru.ru_stime)))
}

fn timeval(tv: libc::timeval) -> Duration {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u32::try_from(tv.tv_usec).unwrap_or(0).min(999_999);
    Duration::new(secs, micros * 1000)
}

/// Move the calling thread into the network namespace `ns` (an open
/// `/run/netns/<name>` or `/proc/<pid>/ns/net`). Other threads are not affected.
pub(crate) fn enter_netns(ns: &File) -> io::Result<()> {
    // SAFETY: `ns` is an open descriptor for the duration of the call; setns(2) only
    // changes the calling thread's namespace, which no Rust invariant depends on.
    cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }).map(drop)
}
