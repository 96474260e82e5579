//! The only place in `dataplane` where `unsafe` is allowed: thin wrappers around the
//! Linux calls behind raw Ethernet IO (smoltcp's `phy/sys`, quinn-udp's arrangement).
//!
//! Everything here is `pub(crate)` and safe to call; the safe, documented API is
//! [`crate::io`]. What each file owns:
//!
//! - `socket`: the `AF_PACKET` socket itself — open, options, bind, send (`send`,
//!   `sendmmsg`), one-frame receive (`recvfrom`), `poll`, `PACKET_STATISTICS`; also the
//!   calling thread's CPU time (`getrusage(RUSAGE_THREAD)`) and `setns`. `socket2` makes
//!   the calls it offers (creation, `SO_RCVBUF`, `send`, `SO_ERROR`), `libc` the others.
//! - `mmsg`: a batch of receive buffers for `recvmmsg`, allocated once.
//! - `ring`: a `TPACKET_V3` receive ring (`PACKET_RX_RING` + `mmap`), handed to safe
//!   code one retired block at a time as a byte slice.
//! - `iface`: interface lookups: `if_nametoindex`, `SIOCGIFHWADDR`, `SIOCGIFFLAGS`,
//!   `getifaddrs`.
//!
//! Rules kept here: every `unsafe` block has a `// SAFETY:` comment; no raw pointer
//! leaves this module; everything the kernel writes (lengths, offsets, addresses) is
//! bounds-checked before it is used to form a slice. `docs/io.md` lists every block.
#![allow(unsafe_code)]

pub(crate) mod iface;
pub(crate) mod mmsg;
pub(crate) mod ring;
pub(crate) mod socket;

use std::io;

/// `Err(last OS error)` when a libc call returned -1, else the value.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// As [`cvt`] for calls returning `ssize_t`.
fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

/// `setsockopt` with a plain-old-data value.
fn setsockopt<T: Copy>(
    fd: std::os::fd::BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = socklen_of::<T>();
    // SAFETY: `value` points to a live `T` of `len` bytes for the duration of the call;
    // the kernel only reads it. `fd` is a valid open descriptor (borrowed).
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            len,
        )
    };
    cvt(ret).map(drop)
}

/// Size of `T` as a `socklen_t`; every type used here is a few dozen bytes.
fn socklen_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}
