//! Reading virsh's output (`domstate`, `dominfo`, `nodeinfo`, `list --uuid`) and writing
//! the domain XML a start defines. virsh runs with `LC_ALL=C`, so its words are English.
//! Everything read is untrusted: a line that does not parse is a [`ParseError`] naming
//! the command, the field, the value and what was expected.

use hsdb::Uuid;

use super::virsh::bounded;
use crate::platform::{PowerState, VmSpec, VmStatus};

/// virsh printed something we cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A field the command always prints is missing.
    #[error("{command}: no {field:?} line in its output")]
    Missing {
        /// The command.
        command: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A field's value is not what the command prints.
    #[error("{command}: {field} is {value:?}, expected {expected}")]
    Bad {
        /// The command.
        command: &'static str,
        /// The field.
        field: &'static str,
        /// The value (bounded).
        value: String,
        /// What was expected.
        expected: &'static str,
    },
}

fn bad(
    command: &'static str,
    field: &'static str,
    value: &str,
    expected: &'static str,
) -> ParseError {
    ParseError::Bad {
        command,
        field,
        value: bounded(value),
        expected,
    }
}

/// libvirt's domain states as virsh prints them (virshDomainStateToString), mapped to the
/// seed's LPAR states:
///
/// | virsh | PowerState | why |
/// |---|---|---|
/// | running, idle (blocked) | Running | executing |
/// | shut off, crashed | Not Activated | down; `crashed` is a guest that died (the seed relocates a VM found Not Activated without a shutdown reason) |
/// | in shutdown | Shutting Down | |
/// | paused | Not Available | frozen by an operator, a migration or an I/O error: nothing here says it failed; the engine only raises VM_NONRESP_DETECTED (seed 004 L4869-4871), never restarts it |
/// | pmsuspended, no state | Not Available | the platform cannot tell |
///
/// "OS started" is true exactly when the state is Running: libvirt knows nothing of the
/// guest's boot without a guest agent (and the test hypervisor has no guest), so a domain
/// that executes is taken as booted (gap 6). A guest stuck in its boot loader therefore
/// reads as started — it also sent no heartbeat for the whole VMFDT.
pub fn vm_status(state: &str) -> Result<VmStatus, ParseError> {
    let power = match state.trim() {
        "running" | "idle" => PowerState::Running,
        "shut off" | "crashed" => PowerState::NotActivated,
        "in shutdown" => PowerState::ShuttingDown,
        "paused" | "pmsuspended" | "no state" => PowerState::NotAvailable,
        other => {
            return Err(bad(
                "domstate",
                "state",
                other,
                "running, idle, paused, in shutdown, shut off, crashed, pmsuspended or no state",
            ));
        }
    };
    Ok(VmStatus {
        power,
        os_started: power == PowerState::Running,
    })
}

/// The value of `Key:` in `Key:   value` lines.
fn field<'a>(lines: &'a [String], key: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then_some(v.trim())
    })
}

fn required<'a>(
    lines: &'a [String],
    command: &'static str,
    key: &'static str,
) -> Result<&'a str, ParseError> {
    field(lines, key).ok_or(ParseError::Missing {
        command,
        field: key,
    })
}

/// `N KiB` → MiB (rounded down), within u32.
fn kib_to_mib(command: &'static str, key: &'static str, value: &str) -> Result<u32, ParseError> {
    let expected = "a number of KiB below 4 PiB";
    let digits = value
        .strip_suffix("KiB")
        .map(str::trim)
        .ok_or_else(|| bad(command, key, value, expected))?;
    let kib: u64 = digits
        .parse()
        .map_err(|_| bad(command, key, value, expected))?;
    u32::try_from(kib / 1024).map_err(|_| bad(command, key, value, expected))
}

/// CPUs → thousandths of a CPU, within u32.
fn cpus_to_milli(command: &'static str, key: &'static str, value: &str) -> Result<u32, ParseError> {
    let expected = "a number of CPUs from 1 to 4,294,967";
    value
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .and_then(|n| n.checked_mul(1_000))
        .ok_or_else(|| bad(command, key, value, expected))
}

/// A host's capacity from `nodeinfo`: CPU(s) and Memory size.
pub fn nodeinfo(lines: &[String]) -> Result<(u32, u32), ParseError> {
    const C: &str = "nodeinfo";
    let cpus = cpus_to_milli(C, "CPU(s)", required(lines, C, "CPU(s)")?)?;
    let mem = kib_to_mib(C, "Memory size", required(lines, C, "Memory size")?)?;
    Ok((cpus, mem))
}

/// A domain from `dominfo`: its spec and status.
pub fn dominfo(lines: &[String]) -> Result<(VmSpec, VmStatus), ParseError> {
    const C: &str = "dominfo";
    let name = required(lines, C, "Name")?;
    let uuid_text = required(lines, C, "UUID")?;
    let uuid = Uuid::parse(uuid_text.as_bytes())
        .map_err(|_| bad(C, "UUID", uuid_text, "a UUID (8-4-4-4-12 hex digits)"))?;
    let status = vm_status(required(lines, C, "State")?).map_err(|e| match e {
        ParseError::Bad {
            value, expected, ..
        } => ParseError::Bad {
            command: C,
            field: "State",
            value,
            expected,
        },
        other => other,
    })?;
    let cpu_milli = cpus_to_milli(C, "CPU(s)", required(lines, C, "CPU(s)")?)?;
    let memory_mb = kib_to_mib(C, "Max memory", required(lines, C, "Max memory")?)?;
    Ok((
        VmSpec {
            uuid,
            name: bounded(name),
            cpu_milli,
            memory_mb,
        },
        status,
    ))
}

/// `list --all --uuid`: one UUID per line.
pub fn uuid_list(lines: &[String]) -> Result<Vec<Uuid>, ParseError> {
    lines
        .iter()
        .map(|l| {
            Uuid::parse(l.trim().as_bytes())
                .map_err(|_| bad("list --all --uuid", "line", l, "a UUID per line"))
        })
        .collect()
}

/// `list --all --uuid --name`: `UUID NAME` per line (a name may hold spaces).
pub fn uuid_name_list(lines: &[String]) -> Result<Vec<(Uuid, String)>, ParseError> {
    const C: &str = "list --all --uuid --name";
    lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let line = l.trim();
            let (uuid, name) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let uuid = Uuid::parse(uuid.as_bytes())
                .map_err(|_| bad(C, "line", l, "a UUID and a name per line"))?;
            let name = name.trim();
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(bad(C, "name", l, "a name without control characters"));
            }
            Ok((uuid, bounded(name)))
        })
        .collect()
}

/// The state words `list --all` prints in its last column, longest first so that
/// `shut off` is not read as a name ending in `shut` and the word `off`.
const STATE_WORDS: [&str; 8] = [
    "pmsuspended",
    "in shutdown",
    "shut off",
    "no state",
    "running",
    "crashed",
    "paused",
    "idle",
];

/// `list --all`: `ID NAME STATE` per line (ID `-` when off; a name may hold spaces; the
/// state is one of libvirt's words, see [`vm_status`]). Returns each name with its
/// status.
pub fn state_list(lines: &[String]) -> Result<Vec<(String, VmStatus)>, ParseError> {
    const C: &str = "list --all";
    lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let line = l.trim();
            let expected = "an ID (or -), a name and a state per line";
            let (id, rest) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad(C, "line", l, expected))?;
            if id != "-" && id.parse::<u64>().is_err() {
                return Err(bad(C, "ID", id, "a number or -"));
            }
            let rest = rest.trim();
            let word = STATE_WORDS
                .iter()
                .find(|w| {
                    rest.strip_suffix(*w)
                        .is_some_and(|n| n.ends_with(char::is_whitespace))
                })
                .ok_or_else(|| {
                    bad(
                        C,
                        "state",
                        rest,
                        "running, idle, paused, in shutdown, shut off, crashed, pmsuspended or no state",
                    )
                })?;
            let name = rest[..rest.len() - word.len()].trim_end();
            Ok((bounded(name), vm_status(word)?))
        })
        .collect()
}

/// Why a VM's spec cannot be written as a domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The name is empty, too long, or holds control characters.
    #[error("VM name {name:?} cannot name a domain: {why} (allowed: 1-{max} bytes, no control characters)", max = MAX_NAME)]
    BadName {
        /// The name (bounded).
        name: String,
        /// Why.
        why: &'static str,
    },
    /// No memory.
    #[error("VM {uuid} has {memory_mb} MiB of memory (allowed: 1 MiB or more)")]
    NoMemory {
        /// The VM.
        uuid: Uuid,
        /// Its memory.
        memory_mb: u32,
    },
}

/// Longest domain name we define, bytes.
pub const MAX_NAME: usize = 255;

/// The domain XML a start defines on a host that does not have the VM: same UUID and
/// name, `ceil(cpu_milli / 1000)` vCPUs (at least 1), memory in MiB. `domain_type` is
/// `test` for the test hypervisor, `kvm` elsewhere.
pub fn domain_xml(spec: &VmSpec, domain_type: &str) -> Result<String, SpecError> {
    let name = &spec.name;
    let why = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_NAME {
        Some("too long")
    } else if name.chars().any(char::is_control) {
        Some("control characters")
    } else {
        None
    };
    if let Some(why) = why {
        return Err(SpecError::BadName {
            name: bounded(name),
            why,
        });
    }
    if spec.memory_mb == 0 {
        return Err(SpecError::NoMemory {
            uuid: spec.uuid,
            memory_mb: 0,
        });
    }
    let vcpus = spec.cpu_milli.div_ceil(1_000).max(1);
    Ok(format!(
        "<domain type=\"{}\">\n  <name>{}</name>\n  <uuid>{}</uuid>\n  <memory unit=\"MiB\">{}</memory>\n  <vcpu>{vcpus}</vcpu>\n  <os><type>hvm</type></os>\n</domain>\n",
        escape(domain_type),
        escape(name),
        spec.uuid,
        spec.memory_mb,
    ))
}

/// XML text escaping.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_owned).collect()
    }

    #[test]
    fn test_list_tables() {
        let pairs = uuid_name_list(&lines(
            "6f1c2a3e-0b7d-4c8e-9a51-000000000001 vm one\n\n6f1c2a3e-0b7d-4c8e-9a51-000000000002 vm2\n",
        ))
        .unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].1, "vm one");
        let states = state_list(&lines(
            " 1   vm one   running\n -   vm2      shut off\n 3   x in shutdown   in shutdown\n",
        ))
        .unwrap();
        assert_eq!(
            states
                .iter()
                .map(|(n, s)| (n.as_str(), s.power))
                .collect::<Vec<_>>(),
            [
                ("vm one", PowerState::Running),
                ("vm2", PowerState::NotActivated),
                ("x in shutdown", PowerState::ShuttingDown)
            ]
        );
        // Untrusted: each bad line is an error naming the value.
        for (bad_table, needle) in [
            (" 1   vm2   dancing", "dancing"),
            (" x   vm2   running", "\"x\""),
            ("lonely", "lonely"),
            (" 1 running", "running"),
        ] {
            let err = state_list(&lines(bad_table)).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad_table}: {err}");
        }
        for (bad_list, needle) in [
            ("not-a-uuid vm1", "not-a-uuid"),
            ("6f1c2a3e-0b7d-4c8e-9a51-000000000001", "name"),
        ] {
            let err = uuid_name_list(&lines(bad_list)).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad_list}: {err}");
        }
    }

    #[test]
    fn test_state_table() {
        let cases = [
            ("running", PowerState::Running, true),
            ("idle", PowerState::Running, true),
            ("shut off", PowerState::NotActivated, false),
            ("crashed", PowerState::NotActivated, false),
            ("in shutdown", PowerState::ShuttingDown, false),
            ("paused", PowerState::NotAvailable, false),
            ("pmsuspended", PowerState::NotAvailable, false),
            ("no state", PowerState::NotAvailable, false),
        ];
        for (text, power, os_started) in cases {
            assert_eq!(
                vm_status(text).unwrap(),
                VmStatus { power, os_started },
                "{text}"
            );
        }
        let err = vm_status("dancing").unwrap_err();
        assert!(err.to_string().contains("\"dancing\""), "{err}");
    }

    #[test]
    fn test_nodeinfo() {
        let out = lines(
            "CPU model:           i686\nCPU(s):              8\nCPU frequency:       2000 MHz\nMemory size:         16777216 KiB",
        );
        assert_eq!(nodeinfo(&out).unwrap(), (8_000, 16_384));
        assert_eq!(
            nodeinfo(&lines("CPU(s): 8")).unwrap_err(),
            ParseError::Missing {
                command: "nodeinfo",
                field: "Memory size"
            }
        );
        for bad_line in [
            "CPU(s): -1",
            "CPU(s): 0",
            "CPU(s): 99999999",
            "CPU(s): eight",
        ] {
            let out = lines(&format!("{bad_line}\nMemory size: 1024 KiB"));
            assert!(
                matches!(
                    nodeinfo(&out),
                    Err(ParseError::Bad {
                        field: "CPU(s)",
                        ..
                    })
                ),
                "{bad_line}"
            );
        }
        for mem in ["1024", "1024 MiB", "99999999999999999999 KiB", "-5 KiB"] {
            let out = lines(&format!("CPU(s): 1\nMemory size: {mem}"));
            assert!(
                matches!(
                    nodeinfo(&out),
                    Err(ParseError::Bad {
                        field: "Memory size",
                        ..
                    })
                ),
                "{mem}"
            );
        }
    }

    #[test]
    fn test_dominfo() {
        let out = lines(
            "Id:             -\nName:           vm: four\nUUID:           6f1c2a3e-0b7d-4c8e-9a51-000000000004\nOS Type:        linux\nState:          shut off\nCPU(s):         2\nMax memory:     1048576 KiB\nUsed memory:    1048576 KiB",
        );
        let (spec, status) = dominfo(&out).unwrap();
        // The first colon splits: a name with a colon survives.
        assert_eq!(spec.name, "vm: four");
        assert_eq!(
            spec.uuid.to_string(),
            "6f1c2a3e-0b7d-4c8e-9a51-000000000004"
        );
        assert_eq!((spec.cpu_milli, spec.memory_mb), (2_000, 1_024));
        assert_eq!(status.power, PowerState::NotActivated);
        let broken = lines("Name: x\nUUID: nope\nState: running\nCPU(s): 1\nMax memory: 1 KiB");
        assert!(matches!(
            dominfo(&broken),
            Err(ParseError::Bad { field: "UUID", .. })
        ));
        let odd = lines(
            "Name: x\nUUID: 6f1c2a3e-0b7d-4c8e-9a51-000000000004\nState: weird\nCPU(s): 1\nMax memory: 1 KiB",
        );
        assert!(matches!(
            dominfo(&odd),
            Err(ParseError::Bad {
                command: "dominfo",
                field: "State",
                ..
            })
        ));
    }

    #[test]
    fn test_uuid_list() {
        let out =
            lines("6f1c2a3e-0b7d-4c8e-9a51-000000000001\n6f1c2a3e-0b7d-4c8e-9a51-000000000002");
        assert_eq!(uuid_list(&out).unwrap().len(), 2);
        assert!(uuid_list(&lines("6f1c2a3e-0b7d-4c8e-9a51-000000000001\nwarning: x")).is_err());
    }

    #[test]
    fn test_domain_xml_escapes_and_rounds_up() {
        let spec = VmSpec {
            uuid: Uuid::parse(b"6f1c2a3e-0b7d-4c8e-9a51-000000000009").unwrap(),
            name: "a<b>&\"c'".to_owned(),
            cpu_milli: 1_500,
            memory_mb: 512,
        };
        let xml = domain_xml(&spec, "test").unwrap();
        assert!(
            xml.contains("<name>a&lt;b&gt;&amp;&quot;c&apos;</name>"),
            "{xml}"
        );
        assert!(xml.contains("<vcpu>2</vcpu>"));
        assert!(xml.contains("<memory unit=\"MiB\">512</memory>"));
        assert!(xml.contains("<uuid>6f1c2a3e-0b7d-4c8e-9a51-000000000009</uuid>"));
        let zero_cpu = VmSpec {
            cpu_milli: 0,
            ..spec.clone()
        };
        assert!(
            domain_xml(&zero_cpu, "test")
                .unwrap()
                .contains("<vcpu>1</vcpu>")
        );
        for name in ["", "a\nb", &"x".repeat(256)] {
            let bad_spec = VmSpec {
                name: name.to_owned(),
                ..spec.clone()
            };
            assert!(matches!(
                domain_xml(&bad_spec, "test"),
                Err(SpecError::BadName { .. })
            ));
        }
        let no_mem = VmSpec {
            memory_mb: 0,
            ..spec
        };
        assert!(matches!(
            domain_xml(&no_mem, "test"),
            Err(SpecError::NoMemory { .. })
        ));
    }
}
