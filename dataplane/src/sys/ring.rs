//! A `TPACKET_V3` receive ring: the kernel writes frames into fixed-size blocks of a
//! buffer shared with us by `mmap`, and hands over a whole block at a time (when it is
//! full or when `retire_blk_tov` expires). We read frames in place, then give the
//! block back. One system call per block instead of one per frame or batch.
//!
//! ```text
//! block:  tpacket_block_desc (status, num_pkts, offset_to_first_pkt, …)
//!         ├─ tpacket3_hdr (next_offset, snaplen, len, mac, …) | sockaddr_ll | frame
//!         ├─ tpacket3_hdr …                                   | sockaddr_ll | frame
//!         └─ …
//! ```
//!
//! Ownership protocol (Documentation/networking/packet_mmap.rst): a block whose
//! `block_status` has `TP_STATUS_USER` belongs to user space and the kernel neither
//! reads its frames nor writes to it until we store `TP_STATUS_KERNEL` back. Blocks are
//! filled and must be consumed in order.

use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, AsRawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::setsockopt;
use super::socket::PacketSocket;

/// Offset of `block_status` in a block (`tpacket_block_desc.hdr.bh1.block_status`).
const BLOCK_STATUS: usize =
    offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, block_status);
const NUM_PKTS: usize =
    offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, num_pkts);
const FIRST_PKT: usize = offset_of!(libc::tpacket_block_desc, hdr)
    + offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt);

/// Offsets inside one frame header (`tpacket3_hdr`).
const NEXT_OFFSET: usize = offset_of!(libc::tpacket3_hdr, tp_next_offset);
const SNAPLEN: usize = offset_of!(libc::tpacket3_hdr, tp_snaplen);
const LEN: usize = offset_of!(libc::tpacket3_hdr, tp_len);
const MAC: usize = offset_of!(libc::tpacket3_hdr, tp_mac);
/// The `sockaddr_ll` follows the header, aligned to `TPACKET_ALIGNMENT`.
const SLL: usize = size_of::<libc::tpacket3_hdr>().next_multiple_of(libc::TPACKET_ALIGNMENT);
const SLL_PKTTYPE: usize = SLL + offset_of!(libc::sockaddr_ll, sll_pkttype);
const FRAME_HDR_END: usize = SLL + size_of::<libc::sockaddr_ll>();

/// The system page size (`sysconf(_SC_PAGESIZE)`), 4096 if unknown.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf with a constant name reads no memory of ours.
    let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(ps).ok().filter(|&p| p > 0).unwrap_or(4096)
}

/// The mapped ring. Must be dropped before the socket is closed (the kernel refuses to
/// free a ring that is still mapped).
pub(crate) struct Ring {
    base: NonNull<u8>,
    block_size: usize,
    block_count: usize,
    /// Index of the block we expect the kernel to hand over next.
    next: usize,
}

// SAFETY: the mapping is owned by this struct alone (no other Rust value points into
// it) and is accessed only through `&mut self`; the kernel side does not care which
// thread reads it.
unsafe impl Send for Ring {}

impl Ring {
    /// Ask the kernel for a ring of `block_count` blocks of `block_size` bytes
    /// (`PACKET_RX_RING`) and map it. The socket must be `TPACKET_V3` and not yet bound.
    /// `frame_size` only sizes the kernel's bookkeeping; frames are packed in V3.
    pub(crate) fn new(
        sock: &PacketSocket,
        block_size: usize,
        block_count: usize,
        frame_size: usize,
        retire_ms: u32,
    ) -> io::Result<Ring> {
        let invalid = || io::Error::from_raw_os_error(libc::EINVAL);
        let total = block_size.checked_mul(block_count).ok_or_else(invalid)?;
        if block_size == 0 || block_count == 0 || frame_size == 0 || block_size < frame_size {
            return Err(invalid());
        }
        let uint = |v: usize| libc::c_uint::try_from(v).map_err(|_| invalid());
        let req = libc::tpacket_req3 {
            tp_block_size: uint(block_size)?,
            tp_block_nr: uint(block_count)?,
            tp_frame_size: uint(frame_size)?,
            tp_frame_nr: uint((block_size / frame_size) * block_count)?,
            tp_retire_blk_tov: retire_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(sock.as_fd(), libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
        // SAFETY: a fresh shared mapping of the ring the kernel just allocated for this
        // socket, `total` bytes from offset 0 as packet_mmap requires; no existing
        // memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                sock.as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(invalid)?;
        Ok(Ring {
            base,
            block_size,
            block_count,
            next: 0,
        })
    }

    /// Blocks in the ring.
    pub(crate) fn block_count(&self) -> usize {
        self.block_count
    }

    /// The next block if the kernel has handed it over, else `None`.
    pub(crate) fn next_block(&mut self) -> Option<Block<'_>> {
        let status = self.status(self.next).load(Ordering::Acquire);
        if status & libc::TP_STATUS_USER == 0 {
            return None;
        }
        Some(Block { ring: self })
    }

    /// The `block_status` word of block `i` (< `block_count`), as an atomic.
    fn status(&self, i: usize) -> &AtomicU32 {
        let offset = (i % self.block_count) * self.block_size + BLOCK_STATUS;
        // SAFETY: `offset + 4 <= block_count * block_size`, the mapped length (blocks are
        // at least a page). Blocks start on page boundaries and `BLOCK_STATUS` is a
        // multiple of 4, so the pointer is aligned for `u32`. The word is shared with
        // the kernel, which stores it with plain aligned 32-bit writes after a write
        // barrier; from our side it is only ever accessed atomically, except inside a
        // `Block`'s byte view, which exists only while the block is user-owned and the
        // kernel leaves the word alone.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset).cast::<u32>()) }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region `new` mapped; no `Block` (which borrows
        // `self`) can be alive here.
        unsafe {
            libc::munmap(
                self.base.as_ptr().cast(),
                self.block_size * self.block_count,
            );
        }
    }
}

/// A block the kernel handed to us. Dropping it gives the block back to the kernel.
pub(crate) struct Block<'a> {
    ring: &'a mut Ring,
}

/// One frame in a block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingFrame<'a> {
    /// The frame's bytes as captured (`tp_snaplen` of them).
    pub(crate) bytes: &'a [u8],
    /// The frame on the wire was longer than what the ring kept.
    pub(crate) truncated: bool,
    /// The kernel marked the frame `PACKET_OUTGOING`.
    pub(crate) outgoing: bool,
}

impl Block<'_> {
    /// The whole block as bytes (header, frame headers, frames).
    fn bytes(&self) -> &[u8] {
        let start = self.ring.next * self.ring.block_size;
        // SAFETY: `start .. start + block_size` lies inside the mapping. The block's
        // status has `TP_STATUS_USER` (checked with Acquire in `next_block`), so the
        // kernel has finished writing it and will not touch it until `Drop` stores
        // `TP_STATUS_KERNEL`; `Drop` needs `&mut self`, so this shared view has ended by
        // then. The mapping is readable and initialised (kernel-zeroed pages).
        unsafe {
            std::slice::from_raw_parts(self.ring.base.as_ptr().add(start), self.ring.block_size)
        }
    }

    /// Call `f` for every frame in the block, in arrival order. Frames whose headers
    /// point outside the block (never seen; it would be a kernel bug) end the walk.
    /// Returns how many frames the block claimed and how many of them were walked.
    pub(crate) fn for_each_frame(&self, mut f: impl FnMut(RingFrame<'_>)) -> (usize, usize) {
        let block = self.bytes();
        let claimed = read_u32(block, NUM_PKTS).map_or(0, |n| n as usize);
        let mut offset = read_u32(block, FIRST_PKT).map_or(0, |o| o as usize);
        let mut walked = 0;
        while walked < claimed {
            let Some(frame) = frame_at(block, offset) else {
                break;
            };
            f(frame);
            walked += 1;
            match read_u32(block, offset + NEXT_OFFSET) {
                Some(0) | None => break,
                Some(next) => offset += next as usize,
            }
        }
        (claimed, walked)
    }
}

impl Drop for Block<'_> {
    fn drop(&mut self) {
        let ring = &mut *self.ring;
        // Release: our reads of the block happen before the kernel may reuse it.
        ring.status(ring.next)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        ring.next = (ring.next + 1) % ring.block_count;
    }
}

/// The frame whose `tpacket3_hdr` starts at `offset`, if everything it points to lies
/// inside `block`.
fn frame_at(block: &[u8], offset: usize) -> Option<RingFrame<'_>> {
    if offset.checked_add(FRAME_HDR_END)? > block.len() {
        return None;
    }
    let snaplen = read_u32(block, offset + SNAPLEN)? as usize;
    let len = read_u32(block, offset + LEN)? as usize;
    let mac = usize::from(read_u16(block, offset + MAC)?);
    let start = offset.checked_add(mac)?;
    let bytes = block.get(start..start.checked_add(snaplen)?)?;
    Some(RingFrame {
        bytes,
        truncated: len > snaplen,
        outgoing: *block.get(offset + SLL_PKTTYPE)? == libc::PACKET_OUTGOING,
    })
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
