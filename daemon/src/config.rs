//! Helpers for the daemons' configuration files.

use std::path::{Path, PathBuf};

use crate::log::{FILTER_ALLOWED, FORMAT_ALLOWED, LogFilter, LogFormat};

/// Default configuration file of `hmd`.
pub const HMD_CONFIG: &str = "/etc/hvha/hmd.toml";
/// Default configuration file of `vmmd`.
pub const VMMD_CONFIG: &str = "/etc/hvha/vmmd.toml";

/// EtherTypes registered to other protocols, with their names. HVNCP frames carrying
/// one of these would be taken by the kernel or the switch for that protocol (or that
/// protocol's frames for HVNCP), so a configuration naming one is refused. HVNCP's own
/// default, 0x0600, is not in the list; the IEEE local experimental EtherTypes 0x88b5
/// and 0x88b6 are free for private protocols and allowed.
pub const OTHER_PROTOCOL_ETHERTYPES: &[(u16, &str)] = &[
    (0x0800, "IPv4"),
    (0x0806, "ARP"),
    (0x0842, "Wake-on-LAN"),
    (0x22f0, "AVTP"),
    (0x22f3, "TRILL"),
    (0x6003, "DECnet Phase IV"),
    (0x8035, "RARP"),
    (0x809b, "AppleTalk"),
    (0x80f3, "AARP"),
    (0x8100, "IEEE 802.1Q VLAN tag"),
    (0x8137, "IPX"),
    (0x86dd, "IPv6"),
    (0x8808, "Ethernet flow control (PAUSE)"),
    (0x8809, "slow protocols (LACP, OAM)"),
    (0x8847, "MPLS unicast"),
    (0x8848, "MPLS multicast"),
    (0x8863, "PPPoE discovery"),
    (0x8864, "PPPoE session"),
    (0x886d, "Intel ANS probes"),
    (0x888e, "IEEE 802.1X (EAPOL)"),
    (0x8892, "PROFINET"),
    (0x88a2, "ATA over Ethernet"),
    (0x88a4, "EtherCAT"),
    (0x88a8, "IEEE 802.1ad service VLAN tag (QinQ)"),
    (0x88ab, "Ethernet Powerlink"),
    (0x88b8, "IEC 61850 GOOSE"),
    (0x88ba, "IEC 61850 sampled values"),
    (0x88cc, "LLDP"),
    (0x88cd, "SERCOS III"),
    (0x88e1, "HomePlug AV"),
    (0x88e3, "Media Redundancy Protocol"),
    (0x88e5, "MACsec"),
    (0x88e7, "IEEE 802.1ah backbone service tag (PBB)"),
    (0x88f7, "PTP (IEEE 1588)"),
    (0x88f8, "NC-SI"),
    (0x88fb, "Parallel Redundancy Protocol"),
    (0x8902, "IEEE 802.1ag CFM"),
    (0x8906, "FCoE"),
    (0x8914, "FCoE initialization"),
    (0x8915, "RoCE"),
    (0x892f, "HSR"),
    (0x9000, "Ethernet configuration testing (loopback)"),
    (0x9100, "VLAN double tagging (pre-802.1ad QinQ)"),
    (0x9200, "VLAN double tagging (pre-802.1ad QinQ)"),
    (0x9300, "VLAN double tagging (pre-802.1ad QinQ)"),
];

/// The protocol that owns `ethertype`, if it is one of [`OTHER_PROTOCOL_ETHERTYPES`].
pub fn ethertype_owner(ethertype: u16) -> Option<&'static str> {
    OTHER_PROTOCOL_ETHERTYPES
        .iter()
        .find(|(e, _)| *e == ethertype)
        .map(|(_, name)| *name)
}

/// Check an EtherType from a configuration file: at least 0x0600 (smaller values are
/// 802.3 lengths) and not another protocol's. `Err` is the reason, for the message.
pub fn check_ethertype(ethertype: i64) -> Result<u16, String> {
    let Some(e) = u16::try_from(ethertype).ok().filter(|e| *e >= 0x0600) else {
        return Err("0x0600..=0xffff".to_owned());
    };
    match ethertype_owner(e) {
        Some(owner) => Err(format!(
            "an EtherType of no other protocol: {e:#06x} is {owner} (HVNCP's default is \
             0x0600; 0x88b5 and 0x88b6 are free for local experiments)"
        )),
        None => Ok(e),
    }
}

/// A configuration value refused: the value as an error message shows it and what is
/// allowed instead. Each daemon adds the key, the line and the file to make its error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The value as written (strings quoted as in TOML, EtherTypes in hexadecimal).
    pub value: String,
    /// What the key allows, in words.
    pub allowed: String,
}

/// `text` as a TOML string: how a string value is shown in messages and in the
/// effective configuration the daemons print.
pub fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// The `ethertype` key: [`check_ethertype`], the value shown in hexadecimal (as
/// written when negative).
pub fn ethertype_value(ethertype: i64) -> Result<u16, Refused> {
    check_ethertype(ethertype).map_err(|allowed| Refused {
        value: if ethertype < 0 {
            ethertype.to_string()
        } else {
            format!("{ethertype:#06x}")
        },
        allowed,
    })
}

/// The `log` key: a filter [`LogFilter::parse`] accepts.
pub fn log_value(text: &str) -> Result<LogFilter, Refused> {
    LogFilter::parse(text).map_err(|why| Refused {
        value: quoted(text),
        allowed: format!("{FILTER_ALLOWED} ({why})"),
    })
}

/// The `log_format` key: `text` or `json`.
pub fn log_format_value(text: &str) -> Result<LogFormat, Refused> {
    LogFormat::parse(text).ok_or_else(|| Refused {
        value: quoted(text),
        allowed: FORMAT_ALLOWED.to_owned(),
    })
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// `path` as the daemon will use it: a relative path is taken from the directory of
/// the configuration file `file` (made absolute), so that `hmd ctl` run from any
/// directory finds the same socket as the daemon.
pub fn resolve(file: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_owned());
    file.parent().unwrap_or(Path::new("/")).join(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_protocols_ethertypes_are_refused_with_their_name() {
        for (e, name) in [(0x0800, "IPv4"), (0x86dd, "IPv6"), (0x88cc, "LLDP")] {
            let why = check_ethertype(e).expect_err("refused");
            assert!(why.contains(name), "{why}");
            assert!(why.contains(&format!("{e:#06x}")), "{why}");
        }
        for e in [
            0x0800, 0x0806, 0x8100, 0x86dd, 0x88a8, 0x88cc, 0x8847, 0x8848, 0x0842, 0x8035, 0x888e,
            0x88e5, 0x88f7, 0x9100,
        ] {
            assert!(check_ethertype(e).is_err(), "{e:#06x}");
        }
        assert_eq!(check_ethertype(0x0600), Ok(0x0600));
        assert_eq!(check_ethertype(0x88b5), Ok(0x88b5));
        assert_eq!(check_ethertype(0x05ff), Err("0x0600..=0xffff".into()));
        assert_eq!(check_ethertype(0x10000), Err("0x0600..=0xffff".into()));
        assert_eq!(check_ethertype(-1), Err("0x0600..=0xffff".into()));
        let mut sorted = OTHER_PROTOCOL_ETHERTYPES.to_vec();
        sorted.sort();
        assert_eq!(sorted, OTHER_PROTOCOL_ETHERTYPES, "kept sorted");
    }

    #[test]
    fn refused_values_are_shown_as_written() {
        assert_eq!(ethertype_value(0x0600), Ok(0x0600));
        let refused = ethertype_value(0x0800).expect_err("IPv4");
        assert_eq!(refused.value, "0x0800");
        assert!(refused.allowed.contains("IPv4"), "{refused:?}");
        assert_eq!(ethertype_value(-1).expect_err("negative").value, "-1");
        assert!(log_value("info,hmd=debug").is_ok());
        let refused = log_value("warning").expect_err("not a level");
        assert_eq!(refused.value, "\"warning\"");
        assert!(refused.allowed.starts_with(FILTER_ALLOWED), "{refused:?}");
        assert_eq!(log_format_value("json"), Ok(LogFormat::Json));
        assert_eq!(
            log_format_value("xml"),
            Err(Refused {
                value: "\"xml\"".to_owned(),
                allowed: FORMAT_ALLOWED.to_owned()
            })
        );
        assert_eq!(quoted("a\"b"), "'a\"b'");
    }

    #[test]
    fn lines_count_from_one() {
        let text = "a = 1\nb = 2\n\nc = 3";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, text.find('b').expect("b")), 2);
        assert_eq!(line_of(text, text.find('c').expect("c")), 4);
        assert_eq!(line_of(text, 999), 4);
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let file = Path::new("/etc/hvha/hmd.toml");
        assert_eq!(
            resolve(file, Path::new("hmd.sock")),
            Path::new("/etc/hvha/hmd.sock")
        );
        assert_eq!(
            resolve(file, Path::new("../run/x")),
            Path::new("/etc/hvha/../run/x")
        );
        assert_eq!(resolve(file, Path::new("/run/x")), Path::new("/run/x"));
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(
            resolve(Path::new("hmd.toml"), Path::new("db")),
            cwd.join("db")
        );
    }
}
