//! Interface lookups: index, hardware address, flags, and the addresses configured on
//! each interface.

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Socket, Type};

use super::cvt;

/// `if_nametoindex(3)`: `Ok(None)` when no such interface exists.
pub(crate) fn index_of(name: &CStr) -> io::Result<Option<u32>> {
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index != 0 {
        return Ok(Some(index));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENODEV | libc::ENXIO) => Ok(None),
        _ => Err(err),
    }
}

/// A datagram socket to carry interface ioctls; needs no privilege.
fn ioctl_socket() -> io::Result<Socket> {
    // Close-on-exec: `Socket::new` sets `SOCK_CLOEXEC` on Linux.
    Socket::new(Domain::IPV4, Type::DGRAM, None)
}

/// An `ifreq` naming `name`, or `EINVAL` if the name does not fit.
fn ifreq_for(name: &CStr) -> io::Result<libc::ifreq> {
    let bytes = name.to_bytes();
    if bytes.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `ifreq` is plain old data (a name array and a union of plain structs and
    // integers); all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { MaybeUninit::zeroed().assume_init() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = libc::c_char::from_ne_bytes([src]);
    }
    Ok(req)
}

/// `ioctl(request)` on an `ifreq` for `name`.
fn ifreq_ioctl(name: &CStr, request: libc::c_ulong) -> io::Result<libc::ifreq> {
    let sock = ioctl_socket()?;
    let mut req = ifreq_for(name)?;
    // SAFETY: both requests used here (SIOCGIFHWADDR, SIOCGIFFLAGS) take a pointer to one
    // `ifreq`, read its NUL-terminated name and write inside its union; `req` is a live
    // local of that type.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), request, &raw mut req) })?;
    Ok(req)
}

/// `SIOCGIFHWADDR`: the ARP hardware type and the first six bytes of the address.
pub(crate) fn hw_addr(name: &CStr) -> io::Result<(u16, [u8; 6])> {
    let req = ifreq_ioctl(name, libc::SIOCGIFHWADDR)?;
    // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` member of the union; every member
    // is plain data, so reading it is defined in any case.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, &src) in mac.iter_mut().zip(&sa.sa_data) {
        *dst = u8::from_ne_bytes(src.to_ne_bytes());
    }
    Ok((sa.sa_family, mac))
}

/// `SIOCGIFFLAGS`: the interface flags (`IFF_UP`, `IFF_RUNNING`, …).
pub(crate) fn flags(name: &CStr) -> io::Result<u32> {
    let req = ifreq_ioctl(name, libc::SIOCGIFFLAGS)?;
    // SAFETY: SIOCGIFFLAGS filled `ifru_flags`; union members are plain data.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    // The kernel's flags are an unsigned 16-bit field in this ioctl.
    Ok(u32::from(u16::from_ne_bytes(flags.to_ne_bytes())))
}

/// One entry of `getifaddrs(3)`, copied out.
#[derive(Debug, Clone)]
pub(crate) struct IfAddr {
    pub(crate) name: String,
    pub(crate) flags: u32,
    pub(crate) kind: IfAddrKind,
}

/// What an [`IfAddr`] entry carries.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IfAddrKind {
    /// The link itself (`AF_PACKET`): index, hardware type and address.
    Link {
        index: u32,
        hatype: u16,
        mac: [u8; 6],
    },
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// Another family, or no address.
    Other,
}

/// Every entry of `getifaddrs(3)`, copied into owned values.
pub(crate) fn if_addrs() -> io::Result<Vec<IfAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a live out-pointer; on success the C library stores a list that
    // we free below with `freeifaddrs`.
    cvt(unsafe { libc::getifaddrs(&raw mut head) })?;
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null node of the list getifaddrs returned, which stays
        // valid until `freeifaddrs` below.
        let entry = unsafe { &*cur };
        let name = if entry.ifa_name.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null `ifa_name` is a NUL-terminated string owned by the list.
            unsafe { CStr::from_ptr(entry.ifa_name) }
                .to_string_lossy()
                .into_owned()
        };
        out.push(IfAddr {
            name,
            flags: entry.ifa_flags,
            kind: addr_kind(entry.ifa_addr),
        });
        cur = entry.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed exactly once; no
    // reference into the list survives (everything was copied).
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// Decode one `ifa_addr`.
fn addr_kind(sa: *const libc::sockaddr) -> IfAddrKind {
    if sa.is_null() {
        return IfAddrKind::Other;
    }
    // SAFETY: a non-null `ifa_addr` points to a socket address at least as large as
    // `sockaddr`'s family field.
    let family = libc::c_int::from(unsafe { (*sa).sa_family });
    match family {
        libc::AF_PACKET => {
            // SAFETY: for AF_PACKET entries glibc stores a `sockaddr_ll`; it may be
            // under-aligned in the list's buffer, hence the unaligned read.
            let ll = unsafe { sa.cast::<libc::sockaddr_ll>().read_unaligned() };
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&ll.sll_addr[..6]);
            IfAddrKind::Link {
                index: u32::try_from(ll.sll_ifindex).unwrap_or(0),
                hatype: ll.sll_hatype,
                mac,
            }
        }
        libc::AF_INET => {
            // SAFETY: AF_INET entries are `sockaddr_in`; unaligned read as above.
            let sin = unsafe { sa.cast::<libc::sockaddr_in>().read_unaligned() };
            IfAddrKind::Ip(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: AF_INET6 entries are `sockaddr_in6`; unaligned read as above.
            let sin6 = unsafe { sa.cast::<libc::sockaddr_in6>().read_unaligned() };
            IfAddrKind::Ip(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => IfAddrKind::Other,
    }
}

/// `name` as a C string, or `None` if it holds a NUL byte.
pub(crate) fn c_name(name: &str) -> Option<CString> {
    CString::new(name).ok()
}
