//! How the daemons print times, durations and untrusted text for people (`hmd ctl
//! status`, `hactl status`, `hactl query`).

/// `text` with control characters replaced by `?` (one line, nothing that moves a
/// terminal's cursor).
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A time in ms since the Unix epoch as UTC `YYYY-MM-DD hh:mm:ss`.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A duration in ms as `1h02m03s`, `4m05s`, `6.5s` or `120ms`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, s % 3600 / 60, s % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if ms >= 1000 {
        format!("{}.{}s", s, ms % 1000 / 100)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_durations_and_text_print_for_people() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        // The seed's Hello time, 2019-04-26 18:32:28 UTC (seed 004 L8313).
        assert_eq!(utc(1_556_303_548_719), "2019-04-26 18:32:28");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(-1000), "1969-12-31 23:59:59");
        assert_eq!(duration(120), "120ms");
        assert_eq!(duration(6_500), "6.5s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(duration(3_723_000), "1h02m03s");
        assert_eq!(printable("a\nb\x1b[2Jc"), "a?b?[2Jc");
    }
}
