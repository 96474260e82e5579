//! A batch of receive buffers for `recvmmsg(2)`, allocated once per socket.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::cvt;

/// `batch` buffers of `frame_len` bytes plus the C headers that point into them.
///
/// The headers hold raw pointers into `bufs`, `addrs` and `iovs`; [`RecvBatch::recv`]
/// sets them afresh before every call, so a stale pointer is never used.
pub(crate) struct RecvBatch {
    bufs: Box<[u8]>,
    addrs: Box<[libc::sockaddr_ll]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    frame_len: usize,
}

// SAFETY: the raw pointers inside `iovs` and `hdrs` point only into heap memory owned
// by this same struct and are rewritten before each use; they are never dereferenced
// by Rust code, only by the kernel during `recv(&mut self)`. Nothing is shared with
// another thread, so moving the struct to one is sound.
unsafe impl Send for RecvBatch {}

/// One slot of a received batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    /// The frame was longer than the buffer and was cut.
    pub(crate) truncated: bool,
    /// The kernel marked the frame `PACKET_OUTGOING`.
    pub(crate) outgoing: bool,
}

impl RecvBatch {
    /// `batch` (≥ 1) buffers of `frame_len` (≥ 1) bytes each.
    pub(crate) fn new(batch: usize, frame_len: usize) -> RecvBatch {
        let batch = batch.max(1);
        let frame_len = frame_len.max(1);
        let zero_addr = libc::sockaddr_ll {
            sll_family: 0,
            sll_protocol: 0,
            sll_ifindex: 0,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        RecvBatch {
            bufs: vec![0u8; batch * frame_len].into_boxed_slice(),
            addrs: vec![zero_addr; batch].into_boxed_slice(),
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                };
                batch
            ]
            .into_boxed_slice(),
            // SAFETY: `mmsghdr` is plain old data; all-zero (null pointers, zero
            // lengths) is a valid value.
            hdrs: (0..batch).map(|_| unsafe { std::mem::zeroed() }).collect(),
            frame_len,
        }
    }

    /// Number of buffers.
    pub(crate) fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// One `recvmmsg(MSG_DONTWAIT)`: how many buffers were filled (≥ 1), or
    /// `WouldBlock` when nothing is queued.
    pub(crate) fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        // Point every header at its buffer and address afresh, from pointers taken now
        // (so no pointer stored by an earlier call is relied upon), and reset the
        // fields the kernel writes.
        let frame_len = self.frame_len;
        let RecvBatch {
            bufs,
            addrs,
            iovs,
            hdrs,
            ..
        } = self;
        for (((buf, addr), iov), hdr) in bufs
            .chunks_exact_mut(frame_len)
            .zip(addrs.iter_mut())
            .zip(iovs.iter_mut())
            .zip(hdrs.iter_mut())
        {
            iov.iov_base = buf.as_mut_ptr().cast();
            iov.iov_len = buf.len();
            hdr.msg_hdr.msg_iov = std::ptr::from_mut(iov);
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_name = std::ptr::from_mut(addr).cast();
            hdr.msg_hdr.msg_namelen = super::socklen_of::<libc::sockaddr_ll>();
            hdr.msg_hdr.msg_control = std::ptr::null_mut();
            hdr.msg_hdr.msg_controllen = 0;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        let n = libc::c_uint::try_from(self.hdrs.len()).unwrap_or(libc::c_uint::MAX);
        // SAFETY: each of the `n` headers was just pointed at one iovec describing
        // `frame_len` writable bytes inside `bufs`, and at one `sockaddr_ll` inside
        // `addrs` with `msg_namelen` set to its size; no control buffer. All of it is
        // owned by `self`, borrowed mutably for the call, so nothing else touches it
        // meanwhile. The kernel writes only within those bounds.
        let ret = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let got = cvt(ret)?;
        Ok(usize::try_from(got).unwrap_or(0).min(self.hdrs.len()))
    }

    /// What the last [`RecvBatch::recv`] put in slot `i`, and the frame's bytes.
    /// Out-of-range `i` gives an empty frame.
    pub(crate) fn slot(&self, i: usize) -> (Slot, &[u8]) {
        let Some(hdr) = self.hdrs.get(i) else {
            return (
                Slot {
                    truncated: false,
                    outgoing: false,
                },
                &[],
            );
        };
        let len = usize::try_from(hdr.msg_len)
            .unwrap_or(0)
            .min(self.frame_len);
        let start = i * self.frame_len;
        let bytes = self.bufs.get(start..start + len).unwrap_or(&[]);
        let outgoing = self
            .addrs
            .get(i)
            .is_some_and(|a| a.sll_pkttype == libc::PACKET_OUTGOING);
        let slot = Slot {
            truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            outgoing,
        };
        (slot, bytes)
    }
}
