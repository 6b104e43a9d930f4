//! Relative times the way kubectl shows them ("5s", "3m2s", "2d3h", "<invalid>").

use jiff::{SignedDuration, Timestamp};

/// Formats a duration with two or three significant figures, exactly as upstream's
/// `duration.HumanDuration`: seconds below 2 minutes, minutes and seconds below 10
/// minutes, minutes below 3 hours, hours and minutes below 8 hours, hours below 2
/// days, days and hours below 8 days, days below 2 years, years and days below 8 years,
/// then years.
///
/// A negative duration of less than two seconds prints "0s" (clock skew between
/// machines); a larger one "<invalid>" (a time in the future). Durations beyond about
/// 292 years saturate there, as Go's `time.Duration` does.
pub fn human_duration(d: SignedDuration) -> String {
    let secs = clamp_to_go(d).as_secs();
    if secs < -1 {
        return "<invalid>".to_string();
    }
    if secs < 0 {
        return "0s".to_string();
    }
    if secs < 60 * 2 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        let years = hours / 24 / 365;
        return if dy == 0 { format!("{years}y") } else { format!("{years}y{dy}d") };
    }
    format!("{}y", hours / 24 / 365)
}

/// Go's `time.Duration` is an int64 of nanoseconds and `Time.Sub` saturates at its
/// bounds; jiff's range is wider.
fn clamp_to_go(d: SignedDuration) -> SignedDuration {
    let max = SignedDuration::from_nanos(i64::MAX);
    let min = SignedDuration::from_nanos(i64::MIN);
    d.clamp(min, max)
}

/// `now - then`, as Go's `time.Since(then)` at `now`.
pub(crate) fn since(now: Timestamp, then: Timestamp) -> SignedDuration {
    now.duration_since(then)
}

/// Upstream's `translateTimestampSince`: "<unknown>" for an unset time, else the
/// human duration since it.
pub(crate) fn translate_since(then: Option<Timestamp>, now: Timestamp) -> String {
    match then {
        None => "<unknown>".to_string(),
        Some(t) => human_duration(since(now, t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: i64) -> SignedDuration {
        SignedDuration::from_secs(s)
    }

    #[test]
    fn human_duration_matches_upstream_at_every_boundary() {
        const MIN: i64 = 60;
        const HOUR: i64 = 3600;
        const DAY: i64 = 24 * HOUR;
        const YEAR: i64 = 365 * DAY;
        let cases: &[(SignedDuration, &str)] = &[
            (SignedDuration::from_millis(-2500), "<invalid>"),
            (secs(-2), "<invalid>"),
            (SignedDuration::from_millis(-1999), "0s"),
            (secs(-1), "0s"),
            (SignedDuration::from_millis(-500), "0s"),
            (secs(0), "0s"),
            (SignedDuration::from_millis(999), "0s"),
            (secs(1), "1s"),
            (secs(59), "59s"),
            (secs(60), "60s"),
            (secs(119), "119s"),
            (secs(2 * MIN), "2m"),
            (secs(2 * MIN + 1), "2m1s"),
            (secs(3 * MIN + 2), "3m2s"),
            (secs(10 * MIN - 1), "9m59s"),
            (secs(10 * MIN), "10m"),
            (secs(10 * MIN + 59), "10m"),
            (secs(3 * HOUR - 1), "179m"),
            (secs(3 * HOUR), "3h"),
            (secs(3 * HOUR + 59), "3h"),
            (secs(3 * HOUR + 60), "3h1m"),
            (secs(8 * HOUR - 1), "7h59m"),
            (secs(8 * HOUR), "8h"),
            (secs(48 * HOUR - 1), "47h"),
            (secs(48 * HOUR), "2d"),
            (secs(2 * DAY + 3 * HOUR), "2d3h"),
            (secs(8 * DAY - 1), "7d23h"),
            (secs(8 * DAY), "8d"),
            (secs(2 * YEAR - 1), "729d"),
            (secs(2 * YEAR), "2y"),
            (secs(2 * YEAR + 10 * DAY), "2y10d"),
            (secs(5 * YEAR), "5y"),
            (secs(8 * YEAR - 1), "7y364d"),
            (secs(8 * YEAR), "8y"),
            (secs(100 * YEAR), "100y"),
            (secs(1000 * YEAR), "292y"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(*d), *want, "duration {d:?}");
        }
    }

    #[test]
    fn unset_time_is_unknown_and_future_time_is_invalid() {
        let now: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        assert_eq!(translate_since(None, now), "<unknown>");
        let future: Timestamp = "2024-05-01T12:00:05Z".parse().unwrap();
        assert_eq!(translate_since(Some(future), now), "<invalid>");
        let past: Timestamp = "2024-04-29T09:00:00Z".parse().unwrap();
        assert_eq!(translate_since(Some(past), now), "2d3h");
    }
}
