//! JSON forms of `meta.v1.Time`, `MicroTime` and `Duration`, as Go's
//! `encoding/json` writes them for Kubernetes objects.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Seconds since the Unix epoch of Go's zero `time.Time` (0001-01-01T00:00:00Z), which
/// Kubernetes writes as JSON `null`.
pub(crate) const GO_ZERO_SECONDS: i64 = -62_135_596_800;

/// Formats a timestamp as RFC 3339 in UTC, with six fractional digits when `micro`.
/// Go refuses years outside 0..=9999 in JSON, and so does this.
pub(crate) fn format_time(seconds: i64, nanos: i32, micro: bool) -> Result<String, String> {
    let ts = Timestamp::new(seconds, if micro { nanos } else { 0 })
        .map_err(|_| format!("time {seconds}s {nanos}ns is out of range"))?;
    let dt = ts.to_zoned(TimeZone::UTC).datetime();
    if dt.year() < 0 {
        return Err(format!("time {seconds}s has a year before 0"));
    }
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    if micro {
        out.push_str(&format!(".{:06}", dt.subsec_nanosecond() / 1000));
    }
    out.push('Z');
    Ok(out)
}

/// Parses an RFC 3339 timestamp into seconds and nanoseconds since the Unix epoch.
pub(crate) fn parse_time(s: &str) -> Result<(i64, i32), String> {
    let ts: Timestamp = s.parse().map_err(|e| format!("invalid RFC 3339 time {s:?}: {e}"))?;
    Ok((ts.as_second(), ts.subsec_nanosecond()))
}

/// Formats nanoseconds the way Go's `time.Duration.String` does: `1h0m0s`, `1.5s`, `300ms`, `0s`.
pub(crate) fn format_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let u = nanos.unsigned_abs();
    let mut out = String::new();
    if nanos < 0 {
        out.push('-');
    }
    if u < 1_000_000_000 {
        let (scale, unit) = match u {
            0..1_000 => (1, "ns"),
            1_000..1_000_000 => (1_000, "µs"),
            _ => (1_000_000, "ms"),
        };
        out.push_str(&decimal(u, scale));
        out.push_str(unit);
        return out;
    }
    let hours = u / 3_600_000_000_000;
    let minutes = u % 3_600_000_000_000 / 60_000_000_000;
    let rest = u % 60_000_000_000;
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&decimal(rest, 1_000_000_000));
    out.push('s');
    out
}

/// `value / scale` with the remainder as a decimal fraction, trailing zeros trimmed.
fn decimal(value: u64, scale: u64) -> String {
    let whole = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = scale.ilog10() as usize;
    let frac = format!("{frac:0digits$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// Parses a Go duration string (`1h30m`, `1.5s`, `-300ms`, `0`) into nanoseconds.
pub(crate) fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid duration {s:?}");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad());
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let mut whole: u128 = 0;
        for d in int_part.bytes() {
            whole =
                whole.checked_mul(10).and_then(|w| w.checked_add(u128::from(d - b'0'))).ok_or_else(bad)?;
        }
        let mut part = whole.checked_mul(scale).ok_or_else(bad)?;
        let mut frac_scale = scale;
        for d in frac_part.bytes() {
            if frac_scale < 10 {
                break;
            }
            frac_scale /= 10;
            part = part.checked_add(u128::from(d - b'0') * frac_scale).ok_or_else(bad)?;
        }
        total = total.checked_add(part).ok_or_else(bad)?;
        if total > u128::from(i64::MAX.unsigned_abs()) + u128::from(neg) {
            return Err(bad());
        }
        rest = after;
    }
    let total = total as i128;
    Ok((if neg { -total } else { total }) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_format_like_go() {
        let s = 1_000_000_000;
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (30 * s, "30s"),
            (3 * s / 2, "1.5s"),
            (5 * 60 * s, "5m0s"),
            (3600 * s, "1h0m0s"),
            (5400 * s, "1h30m0s"),
            (61 * s + 1, "1m1.000000001s"),
            (-90 * s, "-1m30s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(format_duration(nanos), want, "{nanos}");
            assert_eq!(parse_duration(want), Ok(nanos), "{want}");
        }
    }

    #[test]
    fn durations_parse_go_spellings() {
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration(".5s"), Ok(500_000_000));
        assert_eq!(parse_duration("100us"), Ok(100_000));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("9999999999999h").is_err());
        assert!(parse_duration("340282366920938463463374607431768211455.9ns").is_err());
    }

    #[test]
    fn times_format_in_utc_with_seconds_or_micros() {
        assert_eq!(format_time(1_136_214_245, 999, false).unwrap(), "2006-01-02T15:04:05Z");
        assert_eq!(format_time(1_136_214_245, 123_456_789, true).unwrap(), "2006-01-02T15:04:05.123456Z");
        assert_eq!(format_time(0, 0, true).unwrap(), "1970-01-01T00:00:00.000000Z");
        assert!(format_time(i64::MAX, 0, false).is_err());
        assert!(format_time(-70_000_000_000, 0, false).is_err());
    }

    #[test]
    fn times_parse_with_offsets_and_fractions() {
        assert_eq!(parse_time("2006-01-02T15:04:05Z"), Ok((1_136_214_245, 0)));
        assert_eq!(parse_time("2006-01-02T16:04:05.5+01:00"), Ok((1_136_214_245, 500_000_000)));
        assert!(parse_time("yesterday").is_err());
    }
}
