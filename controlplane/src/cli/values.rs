//! Values typed on the command line: `key=value` assignments, CPU and memory sizes,
//! names, UUIDs, tags. Each parser's error names the argument, the value and what is
//! allowed ([`CliError::BadValue`], exit 2).

use hsdb::{DetectionSpeed, Priority, Uuid};

use super::config::check_name;
use super::error::CliError;

/// Largest CPU count accepted (a host or a VM), in CPUs.
pub const MAX_CPUS: u32 = 100_000;
/// Longest VM name, in bytes.
pub const MAX_VM_NAME: usize = 255;
/// Longest machine type, model or serial, in bytes.
pub const MAX_HOST_KEY: usize = 64;

/// One `key=value` of `hactl modify` / `hactl add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The key, as typed.
    pub key: String,
    /// The value, as typed.
    pub value: String,
}

/// Split `key=value` arguments; each key at most once.
pub fn assignments(args: &[String]) -> Result<Vec<Assignment>, CliError> {
    let mut out: Vec<Assignment> = Vec::with_capacity(args.len());
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(CliError::bad_value(
                "setting",
                format!("{arg:?}"),
                "key=value (e.g. priority=High)",
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(CliError::bad_value(
                "setting",
                format!("{arg:?}"),
                "key=value with a key before '='",
            ));
        }
        if out.iter().any(|a| a.key == key) {
            return Err(CliError::bad_value(
                key,
                format!("{value:?}"),
                "each key once (it is given twice)",
            ));
        }
        out.push(Assignment {
            key: key.to_owned(),
            value: value.trim().to_owned(),
        });
    }
    if out.is_empty() {
        return Err(CliError::Usage(
            "nothing to change: give key=value settings (see --help)".into(),
        ));
    }
    Ok(out)
}

fn quoted(value: &str) -> String {
    format!("{value:?}")
}

/// `yes` / `no` (also `true` / `false`).
pub fn yes_no(key: &str, value: &str) -> Result<bool, CliError> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(CliError::bad_value(key, quoted(value), "yes or no")),
    }
}

/// `enable` / `disable`.
pub fn enable_disable(key: &str, value: &str) -> Result<bool, CliError> {
    match value.to_ascii_lowercase().as_str() {
        "enable" => Ok(true),
        "disable" => Ok(false),
        _ => Err(CliError::bad_value(key, quoted(value), "enable or disable")),
    }
}

/// `High` / `Medium` / `Low`, any letter case (seed 004 L15907-15917).
pub fn priority(key: &str, value: &str) -> Result<Priority, CliError> {
    match value.to_ascii_lowercase().as_str() {
        "high" => Ok(Priority::High),
        "medium" => Ok(Priority::Medium),
        "low" => Ok(Priority::Low),
        _ => Err(CliError::bad_value(
            key,
            quoted(value),
            "High, Medium or Low",
        )),
    }
}

/// `fast` / `normal` / `slow`, any letter case (seed 004 L4763-4785).
pub fn detection_speed(key: &str, value: &str) -> Result<DetectionSpeed, CliError> {
    match value.to_ascii_lowercase().as_str() {
        "fast" => Ok(DetectionSpeed::Fast),
        "normal" => Ok(DetectionSpeed::Normal),
        "slow" => Ok(DetectionSpeed::Slow),
        _ => Err(CliError::bad_value(
            key,
            quoted(value),
            "fast, normal or slow",
        )),
    }
}

/// CPUs as a decimal with at most 3 decimals (`2`, `0.5`, `1.25`), in thousandths;
/// `min_milli..=MAX_CPUS × 1000`.
pub fn cpus(key: &str, value: &str, min_milli: u32) -> Result<u32, CliError> {
    let allowed = || {
        format!(
            "a number of CPUs from {}.{:03} to {MAX_CPUS}, at most 3 decimals (e.g. 2, 0.5, 1.25)",
            min_milli / 1000,
            min_milli % 1000
        )
    };
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    let digits_ok = |s: &str, max: usize| s.len() <= max && s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits_ok(int, 6) || !digits_ok(frac, 3) || value.ends_with('.') {
        return Err(CliError::bad_value(key, quoted(value), allowed()));
    }
    let int: u32 = int
        .parse()
        .map_err(|_| CliError::bad_value(key, quoted(value), allowed()))?;
    let mut frac_milli = 0u32;
    for (i, b) in frac.bytes().enumerate() {
        frac_milli += u32::from(b - b'0') * [100, 10, 1][i];
    }
    let milli = int
        .checked_mul(1000)
        .and_then(|m| m.checked_add(frac_milli))
        .filter(|m| *m >= min_milli && *m <= MAX_CPUS * 1000)
        .ok_or_else(|| CliError::bad_value(key, quoted(value), allowed()))?;
    Ok(milli)
}

/// Memory in MiB: a number, or with a unit `M`, `G`, `T` (binary: 1G = 1024 MiB);
/// `min_mb..=u32::MAX` MiB.
pub fn memory_mb(key: &str, value: &str, min_mb: u32) -> Result<u32, CliError> {
    let allowed = || {
        format!(
            "MiB from {min_mb} to {}, as a number or with a unit M, G or T (e.g. 4096, 4G)",
            u32::MAX
        )
    };
    let upper = value.to_ascii_uppercase();
    let (digits, factor) = match upper.strip_suffix(['M', 'G', 'T']) {
        Some(d) if upper.ends_with('G') => (d, 1024u64),
        Some(d) if upper.ends_with('T') => (d, 1024 * 1024),
        Some(d) => (d, 1),
        None => (upper.as_str(), 1),
    };
    if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CliError::bad_value(key, quoted(value), allowed()));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .and_then(|mb| u32::try_from(mb).ok())
        .filter(|mb| *mb >= min_mb)
        .ok_or_else(|| CliError::bad_value(key, quoted(value), allowed()))
}

/// A host or host group name ([`check_name`]).
pub fn name(key: &str, value: &str) -> Result<String, CliError> {
    check_name(value)
        .map(|()| value.to_owned())
        .map_err(|allowed| CliError::bad_value(key, quoted(value), allowed))
}

/// A VM name: 1..=255 bytes without control characters.
pub fn vm_name(key: &str, value: &str) -> Result<String, CliError> {
    if value.is_empty() || value.len() > MAX_VM_NAME || value.chars().any(char::is_control) {
        return Err(CliError::bad_value(
            key,
            quoted(value),
            format!("a name of 1..={MAX_VM_NAME} bytes without control characters"),
        ));
    }
    Ok(value.to_owned())
}

/// A machine type, model or serial: 0..=64 letters, digits, '-', '_', '.'.
pub fn host_key(key: &str, value: &str) -> Result<String, CliError> {
    if value.len() > MAX_HOST_KEY
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(CliError::bad_value(
            key,
            quoted(value),
            format!(
                "0..={MAX_HOST_KEY} letters, digits, '-', '_' or '.' (e.g. 8408, E8E, 212424W)"
            ),
        ));
    }
    Ok(value.to_owned())
}

/// A UUID in its hyphenated form.
pub fn uuid(key: &str, value: &str) -> Result<Uuid, CliError> {
    Uuid::parse(value.as_bytes()).map_err(|_| {
        CliError::bad_value(
            key,
            quoted(value),
            "a UUID like 61be20f0-09a8-4753-b5e5-564f8a545ed5",
        )
    })
}

/// An `hsTag`: a signed 64-bit decimal (seed 004 L7571-7575: `hsTag="-6630805255682309212"`).
pub fn tag(key: &str, value: &str) -> Result<i64, CliError> {
    let ok = !value.is_empty()
        && value.len() <= 20
        && value
            .strip_prefix('-')
            .unwrap_or(value)
            .bytes()
            .all(|b| b.is_ascii_digit());
    ok.then(|| value.parse::<i64>().ok())
        .flatten()
        .ok_or_else(|| {
            CliError::bad_value(
                key,
                quoted(value),
                "a signed 64-bit decimal, as printed in hsTag (e.g. -6630805255682309212)",
            )
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bad(r: Result<impl std::fmt::Debug, CliError>) -> String {
        match r {
            Err(e @ CliError::BadValue { .. }) => e.to_string(),
            other => panic!("expected a bad value, got {other:?}"),
        }
    }

    #[test]
    fn assignments_split_once_and_refuse_repeats() {
        let args: Vec<String> = ["priority=High", "name=a=b"].map(String::from).to_vec();
        let a = assignments(&args).unwrap();
        assert_eq!(a[1].key, "name");
        assert_eq!(a[1].value, "a=b");
        let e = bad(assignments(&["priority".to_owned()]));
        assert!(e.contains("key=value"), "{e}");
        let e = bad(assignments(&["cpu=1".to_owned(), "cpu=2".to_owned()]));
        assert!(e.contains("given twice"), "{e}");
        assert!(matches!(assignments(&[]), Err(CliError::Usage(_))));
    }

    #[test]
    fn cpus_and_memory() {
        assert_eq!(cpus("cpu", "2", 1).unwrap(), 2000);
        assert_eq!(cpus("cpu", "0.5", 1).unwrap(), 500);
        assert_eq!(cpus("cpu", "1.25", 1).unwrap(), 1250);
        assert_eq!(cpus("cpu", "0.001", 1).unwrap(), 1);
        for v in ["", "0", "-1", "1.2345", "1.", ".5", "1e3", "100001", "x"] {
            let e = bad(cpus("cpu", v, 1));
            assert!(e.starts_with(&format!("cpu = {v:?}: expected")), "{e}");
        }
        assert_eq!(cpus("cpu", "0", 0).unwrap(), 0);
        assert_eq!(memory_mb("memory", "4096", 1).unwrap(), 4096);
        assert_eq!(memory_mb("memory", "4G", 1).unwrap(), 4096);
        assert_eq!(memory_mb("memory", "2t", 1).unwrap(), 2 * 1024 * 1024);
        assert_eq!(memory_mb("memory", "512M", 1).unwrap(), 512);
        for v in ["", "0", "4096T", "4 G", "-1", "1.5G", "99999999999"] {
            let e = bad(memory_mb("memory", v, 1));
            assert!(e.contains("MiB from 1"), "{e}");
        }
    }

    #[test]
    fn words_tags_and_names() {
        assert_eq!(priority("priority", "HIGH").unwrap(), Priority::High);
        assert!(bad(priority("priority", "urgent")).contains("High, Medium or Low"));
        assert_eq!(detection_speed("s", "Slow").unwrap(), DetectionSpeed::Slow);
        assert!(yes_no("managed", "yes").unwrap());
        assert!(!enable_disable("ha_monitor", "disable").unwrap());
        assert!(bad(enable_disable("ha_monitor", "off")).contains("enable or disable"));
        assert_eq!(
            tag("TAG", "-6630805255682309212").unwrap(),
            -6_630_805_255_682_309_212
        );
        for v in ["", "-", "1x", "99999999999999999999", "+5", "0x10"] {
            assert!(bad(tag("TAG", v)).contains("signed 64-bit"), "{v}");
        }
        assert!(bad(name("host_group", "a b")).contains("without spaces"));
        assert!(bad(vm_name("name", "a\nb")).contains("control"));
        assert!(bad(host_key("serial", "21 24")).contains("letters, digits"));
        assert!(bad(uuid("VM", "xyz")).contains("a UUID like"));
    }
}
