//! Which interfaces carry HVNCP: the configured ones, or every interface that is up,
//! Ethernet, not loopback and has no IP address (seed 004 L8987-8991,
//! L11244-11251). Never one that carries an IP address.
//!
//! The decision is a pure function of interface [`Facts`], so it is tested without
//! root and without real interfaces; the runtime takes a new snapshot every
//! `rescan_ms` and acts on the differences.

use std::fmt;
use std::net::IpAddr;

use dataplane::io::{Interface, InterfaceName};
use dataplane::wire::MacAddr;

use crate::config::InterfaceChoice;

/// What the selection needs to know about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Its name.
    pub name: InterfaceName,
    /// The kernel's index (a new index under the same name is a new interface).
    pub index: u32,
    /// Its hardware address.
    pub mac: MacAddr,
    /// Administratively up.
    pub up: bool,
    /// The loopback interface.
    pub loopback: bool,
    /// Ethernet-framed (NIC, veth, VLAN, bridge).
    pub ethernet: bool,
    /// An IP address it carries, if any (IPv6 link-local addresses do not count).
    pub ip: Option<IpAddr>,
}

impl From<&Interface> for Facts {
    fn from(i: &Interface) -> Facts {
        let ip = if i.has_ip() {
            i.addresses().iter().copied().find(|ip| match ip {
                IpAddr::V4(_) => true,
                IpAddr::V6(v6) => !v6.is_unicast_link_local(),
            })
        } else {
            None
        };
        Facts {
            name: i.name(),
            index: i.index(),
            mac: i.mac(),
            up: i.is_up(),
            loopback: i.is_loopback(),
            ethernet: i.is_ethernet(),
            ip,
        }
    }
}

/// The verdict on one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Carry HVNCP on it.
    Use {
        /// The kernel's index.
        index: u32,
        /// Its MAC: the endpoint's local address.
        mac: MacAddr,
    },
    /// Leave it alone, for this reason.
    Skip(Skip),
}

/// Why an interface is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Configured but absent (it may appear later).
    Missing,
    /// Not administratively up (it may come up later).
    Down,
    /// The loopback interface.
    Loopback,
    /// Not Ethernet.
    NotEthernet,
    /// It carries an IP address.
    HasIp(IpAddr),
}

impl Skip {
    /// True when waiting may cure it (the interface may appear or come up); false when
    /// the interface is of the wrong kind or carries an IP address, so that naming it
    /// in `interfaces` is a mistake.
    pub fn is_transient(&self) -> bool {
        matches!(self, Skip::Missing | Skip::Down)
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::Missing => f.write_str("does not exist (yet)"),
            Skip::Down => f.write_str("is down"),
            Skip::Loopback => f.write_str("is the loopback interface"),
            Skip::NotEthernet => f.write_str("is not an Ethernet interface"),
            Skip::HasIp(ip) => write!(
                f,
                "carries IP address {ip} (HVNCP never uses an interface with an IP address)"
            ),
        }
    }
}

/// One verdict per interface in scope: every interface in `Auto` mode, every configured
/// name (present or not) in `Configured` mode, in that order.
pub fn select(choice: &InterfaceChoice, facts: &[Facts]) -> Vec<(InterfaceName, Verdict)> {
    match choice {
        InterfaceChoice::Auto => facts.iter().map(|f| (f.name, judge(f))).collect(),
        InterfaceChoice::Configured(names) => names
            .iter()
            .map(|name| {
                let verdict = facts
                    .iter()
                    .find(|f| f.name == *name)
                    .map_or(Verdict::Skip(Skip::Missing), judge);
                (*name, verdict)
            })
            .collect(),
    }
}

fn judge(f: &Facts) -> Verdict {
    // Order matters for the message: an interface with an IP is refused for that
    // reason even when it is also down.
    let skip = if f.loopback {
        Skip::Loopback
    } else if !f.ethernet {
        Skip::NotEthernet
    } else if let Some(ip) = f.ip {
        Skip::HasIp(ip)
    } else if !f.up {
        Skip::Down
    } else {
        return Verdict::Use {
            index: f.index,
            mac: f.mac,
        };
    };
    Verdict::Skip(skip)
}

/// The first configured interface that can never be used as it is (wrong kind, or
/// carries an IP address), with its position in `interfaces`: a configuration
/// mistake, refused at start. Absent or down interfaces are waited for.
pub fn misconfigured(
    choice: &InterfaceChoice,
    verdicts: &[(InterfaceName, Verdict)],
) -> Option<(usize, InterfaceName, Skip)> {
    if !matches!(choice, InterfaceChoice::Configured(_)) {
        return None;
    }
    verdicts
        .iter()
        .enumerate()
        .find_map(|(i, (name, verdict))| match verdict {
            Verdict::Skip(skip) if !skip.is_transient() => Some((i, *name, *skip)),
            _ => None,
        })
}

/// Verdicts in `new` that differ from `old` (or are new), and names in `old` that
/// vanished from scope (`None`): what is worth a log line after a rescan.
pub fn changes<'a>(
    old: &'a [(InterfaceName, Verdict)],
    new: &'a [(InterfaceName, Verdict)],
) -> impl Iterator<Item = (InterfaceName, Option<Verdict>)> + 'a {
    let changed = new
        .iter()
        .filter(move |(name, v)| !old.iter().any(|(n, o)| n == name && o == v))
        .map(|(name, v)| (*name, Some(*v)));
    let gone = old
        .iter()
        .filter(move |(name, _)| !new.iter().any(|(n, _)| n == name))
        .map(|(name, _)| (*name, None));
    changed.chain(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> InterfaceName {
        InterfaceName::new(s).expect("valid")
    }

    fn eth(n: &str, index: u32) -> Facts {
        Facts {
            name: name(n),
            index,
            mac: MacAddr([2, 0, 0, 0, 0, u8::try_from(index).unwrap_or(0)]),
            up: true,
            loopback: false,
            ethernet: true,
            ip: None,
        }
    }

    fn machine() -> Vec<Facts> {
        let lo = Facts {
            loopback: true,
            ethernet: false,
            ip: Some("127.0.0.1".parse().expect("ip")),
            ..eth("lo", 1)
        };
        let eth0 = Facts {
            ip: Some("10.0.0.5".parse().expect("ip")),
            ..eth("eth0", 2)
        };
        let down = Facts {
            up: false,
            ..eth("eth3", 5)
        };
        let tun = Facts {
            ethernet: false,
            ..eth("tun0", 6)
        };
        vec![lo, eth0, eth("eth1", 3), eth("eth2", 4), down, tun]
    }

    fn used(verdicts: &[(InterfaceName, Verdict)]) -> Vec<&str> {
        verdicts
            .iter()
            .filter(|(_, v)| matches!(v, Verdict::Use { .. }))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    #[test]
    fn auto_uses_up_ethernet_interfaces_without_ip() {
        let verdicts = select(&InterfaceChoice::Auto, &machine());
        assert_eq!(used(&verdicts), ["eth1", "eth2"]);
        let skip = |n: &str| {
            verdicts
                .iter()
                .find(|(name, _)| name.as_str() == n)
                .map(|(_, v)| *v)
        };
        assert_eq!(skip("lo"), Some(Verdict::Skip(Skip::Loopback)));
        assert_eq!(
            skip("eth0"),
            Some(Verdict::Skip(Skip::HasIp("10.0.0.5".parse().expect("ip"))))
        );
        assert_eq!(skip("eth3"), Some(Verdict::Skip(Skip::Down)));
        assert_eq!(skip("tun0"), Some(Verdict::Skip(Skip::NotEthernet)));
        assert_eq!(
            skip("eth1"),
            Some(Verdict::Use {
                index: 3,
                mac: MacAddr([2, 0, 0, 0, 0, 3])
            })
        );
        assert_eq!(misconfigured(&InterfaceChoice::Auto, &verdicts), None);
    }

    #[test]
    fn facts_of_real_interfaces_agree_with_dataplane() {
        // getifaddrs works unprivileged; every namespace has `lo`.
        let all = dataplane::io::interfaces().expect("list interfaces");
        assert!(!all.is_empty());
        for i in &all {
            let f = Facts::from(i);
            assert_eq!(f.ip.is_some(), i.has_ip(), "{i:?}");
            assert_eq!((f.name, f.index, f.mac), (i.name(), i.index(), i.mac()));
            if f.loopback {
                assert_eq!(judge(&f), Verdict::Skip(Skip::Loopback));
            }
        }
    }

    #[test]
    fn configured_restricts_and_reports_every_name() {
        let choice = InterfaceChoice::Configured(vec![name("eth2"), name("eth7"), name("eth3")]);
        let verdicts = select(&choice, &machine());
        let names: Vec<&str> = verdicts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["eth2", "eth7", "eth3"]);
        assert_eq!(used(&verdicts), ["eth2"]);
        assert_eq!(verdicts[1].1, Verdict::Skip(Skip::Missing));
        assert_eq!(verdicts[2].1, Verdict::Skip(Skip::Down));
        // Missing and down are waited for, not refused.
        assert_eq!(misconfigured(&choice, &verdicts), None);
    }

    #[test]
    fn configured_interface_with_an_ip_is_refused() {
        let choice = InterfaceChoice::Configured(vec![name("eth1"), name("eth0")]);
        let verdicts = select(&choice, &machine());
        assert_eq!(used(&verdicts), ["eth1"]);
        let (position, iface, skip) = misconfigured(&choice, &verdicts).expect("refused");
        assert_eq!((position, iface.as_str()), (1, "eth0"));
        assert_eq!(
            skip.to_string(),
            "carries IP address 10.0.0.5 (HVNCP never uses an interface with an IP address)"
        );
        // Down and with an IP: the IP is the reason given.
        let mut facts = machine();
        facts[1].up = false;
        let verdicts = select(&choice, &facts);
        assert!(matches!(verdicts[1].1, Verdict::Skip(Skip::HasIp(_))));
        for bad in ["lo", "tun0"] {
            let choice = InterfaceChoice::Configured(vec![name(bad)]);
            let verdicts = select(&choice, &machine());
            assert!(misconfigured(&choice, &verdicts).is_some(), "{bad}");
        }
    }

    #[test]
    fn an_interface_that_gains_an_ip_is_dropped_and_taken_back_when_it_loses_it() {
        let mut facts = machine();
        let before = select(&InterfaceChoice::Auto, &facts);
        facts[2].ip = Some("192.168.1.9".parse().expect("ip"));
        let during = select(&InterfaceChoice::Auto, &facts);
        assert_eq!(used(&during), ["eth2"]);
        facts[2].ip = None;
        assert_eq!(
            used(&select(&InterfaceChoice::Auto, &facts)),
            ["eth1", "eth2"]
        );
        let changed: Vec<_> = changes(&before, &during).collect();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].0.as_str(), "eth1");
    }

    #[test]
    fn changes_report_new_changed_and_vanished_interfaces_only() {
        let before = select(&InterfaceChoice::Auto, &machine());
        assert_eq!(changes(&before, &before).count(), 0);
        let mut facts = machine();
        facts.retain(|f| f.name.as_str() != "eth2"); // unplugged
        facts.push(eth("eth8", 8)); // hot-plugged
        let mut renumbered = eth("eth1", 30); // deleted and re-created under the same name
        renumbered.mac = MacAddr([2, 0, 0, 0, 0, 3]);
        facts[2] = renumbered;
        let after = select(&InterfaceChoice::Auto, &facts);
        let mut changed: Vec<(String, bool)> = changes(&before, &after)
            .map(|(n, v)| (n.to_string(), v.is_some()))
            .collect();
        changed.sort();
        assert_eq!(
            changed,
            [
                ("eth1".to_owned(), true),
                ("eth2".to_owned(), false),
                ("eth8".to_owned(), true)
            ]
        );
    }
}
