//! Interface names and what a daemon needs to know about an interface before using it
//! for HVNCP: index, MAC, up/running, and whether it carries an IP address (agents
//! never use one that does, seed 004 L11244-11251).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::sys::iface::{self, IfAddrKind};
use crate::wire::MacAddr;

use super::IoError;

/// Longest interface name Linux accepts (`IFNAMSIZ - 1`).
pub const MAX_NAME_LEN: usize = 15;

/// `ARPHRD_ETHER`: the hardware type of Ethernet (and veth) interfaces.
const ARPHRD_ETHER: u16 = 1;

/// A syntactically valid Linux interface name: 1 to 15 bytes, no `/`, `:`, whitespace
/// or NUL, not `.` or `..` (the kernel's `dev_valid_name`). `Copy`, no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceName {
    bytes: [u8; MAX_NAME_LEN],
    len: u8,
}

impl InterfaceName {
    /// Check `name` and keep it.
    pub fn new(name: &str) -> Result<InterfaceName, IoError> {
        let invalid = |why| IoError::InvalidName {
            name: name.to_owned(),
            why,
        };
        if name.is_empty() {
            return Err(invalid("empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid("longer than 15 bytes"));
        }
        if name == "." || name == ".." {
            return Err(invalid("`.` and `..` are not interface names"));
        }
        if name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
        {
            return Err(invalid("contains `/`, `:`, whitespace or NUL"));
        }
        let mut bytes = [0u8; MAX_NAME_LEN];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Ok(InterfaceName {
            bytes,
            len: u8::try_from(name.len()).unwrap_or(0),
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Always valid UTF-8: copied whole from a `&str` in `new`.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl FromStr for InterfaceName {
    type Err = IoError;
    fn from_str(s: &str) -> Result<Self, IoError> {
        InterfaceName::new(s)
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A snapshot of one network interface. Interfaces change under a running daemon
/// (link down, address added): take a new snapshot to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    name: InterfaceName,
    index: u32,
    hardware_type: u16,
    mac: MacAddr,
    flags: u32,
    addresses: Vec<IpAddr>,
}

impl Interface {
    /// Look one interface up by name: `if_nametoindex`, `SIOCGIFHWADDR`,
    /// `SIOCGIFFLAGS`, and its addresses from `getifaddrs`.
    pub fn by_name(name: &InterfaceName) -> Result<Interface, IoError> {
        let index = index_of(name)?;
        let c_name = c_name(name)?;
        let query = |what| {
            move |source| IoError::Query {
                iface: *name,
                what,
                source,
            }
        };
        let (hardware_type, mac) = iface::hw_addr(&c_name).map_err(query("hardware address"))?;
        let flags = iface::flags(&c_name).map_err(query("flags"))?;
        let addresses = iface::if_addrs()
            .map_err(|source| IoError::List { source })?
            .into_iter()
            .filter(|a| a.name == name.as_str())
            .filter_map(|a| match a.kind {
                IfAddrKind::Ip(ip) => Some(ip),
                _ => None,
            })
            .collect();
        Ok(Interface {
            name: *name,
            index,
            hardware_type,
            mac: MacAddr(mac),
            flags,
            addresses,
        })
    }

    /// The interface's name.
    pub fn name(&self) -> InterfaceName {
        self.name
    }

    /// The kernel's interface index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The hardware address; all zeros for interfaces without one (loopback).
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// True for Ethernet-framed interfaces (`ARPHRD_ETHER`: NICs, veth, bridges, VLANs).
    pub fn is_ethernet(&self) -> bool {
        self.hardware_type == ARPHRD_ETHER
    }

    /// True when the interface is administratively up (`IFF_UP`).
    pub fn is_up(&self) -> bool {
        self.flags & libc_flag(libc::IFF_UP) != 0
    }

    /// True when the interface is up and operational (`IFF_RUNNING`: carrier present).
    pub fn is_running(&self) -> bool {
        self.flags & libc_flag(libc::IFF_RUNNING) != 0
    }

    /// True for the loopback interface (`IFF_LOOPBACK`).
    pub fn is_loopback(&self) -> bool {
        self.flags & libc_flag(libc::IFF_LOOPBACK) != 0
    }

    /// Every IPv4 and IPv6 address on the interface, IPv6 link-local ones included.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }

    /// True when the interface carries an IP address, so HVNCP must not use it (seed 004
    /// L11244-11251: "Interface en0 has IP address, discard it"). IPv6 link-local
    /// addresses (`fe80::/10`) do not count: Linux gives one to every interface that
    /// comes up, so counting them would discard every interface; the seed's rule is
    /// about configured addresses.
    pub fn has_ip(&self) -> bool {
        self.addresses.iter().any(|ip| match ip {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => !v6.is_unicast_link_local(),
        })
    }
}

/// Whether interface `name` is up and has carrier (`IFF_UP` and `IFF_RUNNING`), from one
/// `SIOCGIFFLAGS`: cheap enough for a daemon to poll a few times a second (no
/// interface list, no address lookup). An interface that no longer exists is
/// [`IoError::NotFound`].
pub fn has_carrier(name: &InterfaceName) -> Result<bool, IoError> {
    let c_name = c_name(name)?;
    let flags = iface::flags(&c_name).map_err(|source| {
        if source.raw_os_error() == Some(libc::ENODEV) {
            IoError::NotFound { iface: *name }
        } else {
            IoError::Query {
                iface: *name,
                what: "flags",
                source,
            }
        }
    })?;
    let wanted = libc_flag(libc::IFF_UP) | libc_flag(libc::IFF_RUNNING);
    Ok(flags & wanted == wanted)
}

/// Every interface of the caller's network namespace, by index (from one
/// `getifaddrs` call).
pub fn interfaces() -> Result<Vec<Interface>, IoError> {
    let entries = iface::if_addrs().map_err(|source| IoError::List { source })?;
    let mut out: Vec<Interface> = Vec::new();
    for entry in &entries {
        if let IfAddrKind::Link { index, hatype, mac } = entry.kind {
            // A name the kernel gave is valid; skip anything odd rather than fail.
            let Ok(name) = InterfaceName::new(&entry.name) else {
                continue;
            };
            if out.iter().any(|i| i.index == index) {
                continue;
            }
            out.push(Interface {
                name,
                index,
                hardware_type: hatype,
                mac: MacAddr(mac),
                flags: entry.flags,
                addresses: Vec::new(),
            });
        }
    }
    for entry in entries {
        if let IfAddrKind::Ip(ip) = entry.kind
            && let Some(i) = out.iter_mut().find(|i| i.name.as_str() == entry.name)
        {
            i.addresses.push(ip);
        }
    }
    out.sort_by_key(|i| i.index);
    Ok(out)
}

/// The index of `name`, or `NotFound`.
pub(crate) fn index_of(name: &InterfaceName) -> Result<u32, IoError> {
    let c_name = c_name(name)?;
    match iface::index_of(&c_name) {
        Ok(Some(index)) => Ok(index),
        Ok(None) => Err(IoError::NotFound { iface: *name }),
        Err(source) => Err(IoError::Query {
            iface: *name,
            what: "index",
            source,
        }),
    }
}

fn c_name(name: &InterfaceName) -> Result<std::ffi::CString, IoError> {
    // Cannot fail: `InterfaceName` holds no NUL byte.
    iface::c_name(name.as_str()).ok_or_else(|| IoError::InvalidName {
        name: name.as_str().to_owned(),
        why: "contains NUL",
    })
}

fn libc_flag(flag: libc::c_int) -> u32 {
    u32::try_from(flag).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernel_rules() {
        for ok in ["eth0", "veth-hv_1", "a", "enp0s31f6.100", "x23456789012345"] {
            let name = InterfaceName::new(ok).expect(ok);
            assert_eq!(name.as_str(), ok);
            assert_eq!(name.to_string(), ok);
        }
        for (bad, why) in [
            ("", "empty"),
            ("x234567890123456", "longer than 15 bytes"),
            (".", "`.` and `..`"),
            ("..", "`.` and `..`"),
            ("eth0:1", "contains"),
            ("a/b", "contains"),
            ("a b", "contains"),
            ("a\0", "contains"),
        ] {
            let err = InterfaceName::new(bad).expect_err(bad).to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(err.starts_with("invalid interface name"), "{err}");
        }
        // Multi-byte UTF-8 counts in bytes, like the kernel.
        assert!(InterfaceName::new("ééééééééé").is_err());
        assert!(InterfaceName::new("éth0").is_ok());
    }

    #[test]
    fn missing_interface_is_named_in_the_error() {
        let name = InterfaceName::new("hvnope9").expect("valid");
        let err = Interface::by_name(&name).expect_err("no such interface");
        assert_eq!(err.to_string(), "interface hvnope9 not found");
    }

    #[test]
    fn carrier_is_up_and_running() {
        let all = interfaces().expect("getifaddrs works unprivileged");
        let lo = all.iter().find(|i| i.is_loopback()).expect("lo exists");
        assert_eq!(
            has_carrier(&lo.name()).expect("flags of lo"),
            lo.is_up() && lo.is_running()
        );
        let name = InterfaceName::new("hvnope9").expect("valid");
        let err = has_carrier(&name).expect_err("no such interface");
        assert_eq!(err.to_string(), "interface hvnope9 not found");
    }

    #[test]
    fn loopback_is_listed_and_has_an_ip() {
        // Every network namespace has `lo`; in the default one it carries 127.0.0.1.
        let all = interfaces().expect("getifaddrs works unprivileged");
        let lo = all.iter().find(|i| i.is_loopback()).expect("lo exists");
        assert!(!lo.is_ethernet());
        let by_name = Interface::by_name(&lo.name()).expect("lookup");
        assert_eq!(by_name.index(), lo.index());
        assert_eq!(by_name.is_up(), lo.is_up());
        if lo.is_up() {
            assert!(lo.has_ip(), "{lo:?}");
        }
    }
}
