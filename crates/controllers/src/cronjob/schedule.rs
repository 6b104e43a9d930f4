//! Cron schedules as Kubernetes reads them: the grammar and the next-time search of
//! robfig/cron v3's `ParseStandard`, which kube-controller-manager uses.
//!
//! Five fields (minute, hour, day of month, month, day of week), each a comma list of
//! `*`, `?`, `N`, `N-M`, with an optional `/step` (`N/step` means `N-max/step`); month
//! and weekday names (`JAN`, `mon`, ...); the descriptors `@yearly`, `@annually`,
//! `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly` and `@every <duration>`; an
//! optional `TZ=<zone> ` or `CRON_TZ=<zone> ` prefix. When neither day field is `*` or
//! `?`, a day matches if either the day of month or the day of week does (the classic
//! cron OR rule); otherwise both must. Weekdays run 0 (Sunday) to 6; `7` is rejected,
//! as robfig rejects it. Errors carry robfig's wording, since users see them in events.

use std::fmt;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// Set on a field written as `*` or `?` (or a `*` with step 1): it takes part in the
/// day-of-month/day-of-week rule.
const STAR: u64 = 1 << 63;

/// Why a schedule does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: Kind,
    /// The zone of a `TZ=` prefix; `None` means the caller's local zone.
    location: Option<TimeZone>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Spec(Spec),
    /// `@every`: a constant delay in whole seconds (at least one).
    Every(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Spec {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MINUTES: Bounds = Bounds { min: 0, max: 59, names: &[] };
const HOURS: Bounds = Bounds { min: 0, max: 23, names: &[] };
const DOM: Bounds = Bounds { min: 1, max: 31, names: &[] };
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[("sun", 0), ("mon", 1), ("tue", 2), ("wed", 3), ("thu", 4), ("fri", 5), ("sat", 6)],
};

fn bits(min: u32, max: u32, step: u32) -> u64 {
    if step == 1 {
        return (!(u64::MAX << (max + 1))) & (u64::MAX << min);
    }
    let mut b = 0;
    let mut i = min;
    while i <= max {
        b |= 1 << i;
        i += step;
    }
    b
}

fn all(r: &Bounds) -> u64 {
    bits(r.min, r.max, 1) | STAR
}

/// Go's `strconv.Atoi` error text, which robfig embeds in its messages.
fn atoi(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing {s:?}: invalid syntax"));
    }
    s.parse::<i64>().map_err(|_| format!("strconv.Atoi: parsing {s:?}: value out of range"))
}

fn must_parse_int(expr: &str) -> Result<u32, Error> {
    let n = atoi(expr).map_err(|e| Error(format!("failed to parse int from {expr}: {e}")))?;
    if n < 0 {
        return Err(Error(format!("negative number ({n}) not allowed: {expr}")));
    }
    // Larger values fail the range check below, as they do upstream.
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

fn parse_int_or_name(expr: &str, r: &Bounds) -> Result<u32, Error> {
    let lower = expr.to_lowercase();
    if let Some((_, v)) = r.names.iter().find(|(n, _)| *n == lower) {
        return Ok(*v);
    }
    must_parse_int(expr)
}

fn get_range(expr: &str, r: &Bounds) -> Result<u64, Error> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end, mut extra);
    if low_and_high[0] == "*" || low_and_high[0] == "?" {
        start = r.min;
        end = r.max;
        extra = STAR;
    } else {
        start = parse_int_or_name(low_and_high[0], r)?;
        end = match low_and_high.len() {
            1 => start,
            2 => parse_int_or_name(low_and_high[1], r)?,
            _ => return Err(Error(format!("too many hyphens: {expr}"))),
        };
        extra = 0;
    }
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = must_parse_int(range_and_step[1])?;
            if single {
                end = r.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(Error(format!("too many slashes: {expr}"))),
    };
    if start < r.min {
        return Err(Error(format!("beginning of range ({start}) below minimum ({}): {expr}", r.min)));
    }
    if end > r.max {
        return Err(Error(format!("end of range ({end}) above maximum ({}): {expr}", r.max)));
    }
    if start > end {
        return Err(Error(format!("beginning of range ({start}) beyond end of range ({end}): {expr}")));
    }
    if step == 0 {
        return Err(Error(format!("step of range should be a positive number: {expr}")));
    }
    Ok(bits(start, end, step) | extra)
}

fn get_field(field: &str, r: &Bounds) -> Result<u64, Error> {
    let mut b = 0;
    for expr in field.split(',').filter(|e| !e.is_empty()) {
        b |= get_range(expr, r)?;
    }
    Ok(b)
}

/// Parses a Go duration (`1h30m`, `90s`, `1.5h`, `300ms`) into nanoseconds, as
/// `time.ParseDuration` does, with its error wording.
fn parse_go_duration(s: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &r[..n];
            rest = &r[n..];
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(invalid());
            }
        } else if int_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {s:?}"));
        }
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("time: unknown unit {unit:?} in duration {s:?}")),
        };
        let whole: i128 = if int_part.is_empty() { 0 } else { int_part.parse().map_err(|_| invalid())? };
        let mut v = whole.checked_mul(scale).ok_or_else(invalid)?;
        let mut f = scale;
        for d in frac_part.bytes().take(30) {
            f /= 10;
            v += (d - b'0') as i128 * f;
        }
        total = total.checked_add(v).ok_or_else(invalid)?;
        if total > i64::MAX as i128 {
            return Err(invalid());
        }
    }
    Ok(if neg { -total } else { total })
}

fn parse_descriptor(descriptor: &str) -> Result<Kind, Error> {
    let spec = |minute, hour, dom, month, dow| Kind::Spec(Spec { minute, hour, dom, month, dow });
    Ok(match descriptor {
        "@yearly" | "@annually" => spec(1, 1, 1 << DOM.min, 1 << MONTHS.min, all(&DOW)),
        "@monthly" => spec(1, 1, 1 << DOM.min, all(&MONTHS), all(&DOW)),
        "@weekly" => spec(1, 1, all(&DOM), all(&MONTHS), 1 << DOW.min),
        "@daily" | "@midnight" => spec(1, 1, all(&DOM), all(&MONTHS), all(&DOW)),
        "@hourly" => spec(1, all(&HOURS), all(&DOM), all(&MONTHS), all(&DOW)),
        _ => {
            if let Some(d) = descriptor.strip_prefix("@every ") {
                let nanos = parse_go_duration(d)
                    .map_err(|e| Error(format!("failed to parse duration {descriptor}: {e}")))?;
                // Below one second becomes one second; the rest rounds down to seconds.
                let secs = (nanos.max(1_000_000_000) / 1_000_000_000) as i64;
                Kind::Every(secs)
            } else {
                return Err(Error(format!("unrecognized descriptor: {descriptor}")));
            }
        }
    })
}

/// Parses a schedule the way `cron.ParseStandard` does.
pub fn parse(spec: &str) -> Result<Schedule, Error> {
    if spec.is_empty() {
        return Err(Error("empty spec string".into()));
    }
    let mut spec = spec;
    let mut location = None;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').unwrap_or(0);
        let Some(sp) = spec.find(' ') else {
            return Err(Error(format!("provided bad location {}: missing schedule", &spec[eq + 1..])));
        };
        let name = &spec[eq + 1..sp];
        location =
            Some(load_location(name).map_err(|e| Error(format!("provided bad location {name}: {e}")))?);
        spec = spec[sp..].trim();
    }
    if spec.starts_with('@') {
        return Ok(Schedule { kind: parse_descriptor(spec)?, location });
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(Error(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        )));
    }
    let s = Spec {
        minute: get_field(fields[0], &MINUTES)?,
        hour: get_field(fields[1], &HOURS)?,
        dom: get_field(fields[2], &DOM)?,
        month: get_field(fields[3], &MONTHS)?,
        dow: get_field(fields[4], &DOW)?,
    };
    Ok(Schedule { kind: Kind::Spec(s), location })
}

/// Loads an IANA zone as Go's `time.LoadLocation` does (`""` and `UTC` are UTC).
pub fn load_location(name: &str) -> Result<TimeZone, String> {
    match name {
        "" | "UTC" => Ok(TimeZone::UTC),
        _ => TimeZone::get(name).map_err(|_| format!("unknown time zone {name}")),
    }
}

impl Schedule {
    /// The zone of a `TZ=`/`CRON_TZ=` prefix, if the schedule had one.
    pub fn location(&self) -> Option<&TimeZone> {
        self.location.as_ref()
    }

    /// The first activation strictly after `after`, on whole seconds; `local` is the zone
    /// of a schedule without `TZ=`. `None` when nothing matches within five years (a
    /// schedule like `0 0 30 2 *`), where robfig returns the zero time.
    pub fn next(&self, after: Timestamp, local: &TimeZone) -> Option<Timestamp> {
        let floor = after.as_second() - i64::from(after.subsec_nanosecond() < 0);
        match &self.kind {
            Kind::Every(secs) => Timestamp::from_second(floor.checked_add(*secs)?).ok(),
            Kind::Spec(spec) => {
                let tz = self.location.as_ref().unwrap_or(local);
                next_spec(spec, floor + 1, tz).and_then(|s| Timestamp::from_second(s).ok())
            }
        }
    }

    /// The next activation after `after` as a duration from `after`.
    pub fn until_next(&self, after: Timestamp, local: &TimeZone) -> Option<SignedDuration> {
        self.next(after, local).map(|t| t.duration_since(after))
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (month 1-12).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Go's `time.Date` in `tz`: normalizes an overflowing month or day, and resolves a
/// wall time in a gap or fold the way Go does (the offset found at the wall time read
/// as UTC, corrected once if that instant falls outside its period).
fn go_date(tz: &TimeZone, year: i64, month: i64, day: i64, hour: i64, min: i64, sec: i64) -> Option<i64> {
    let m0 = month - 1;
    let year = year + m0.div_euclid(12);
    let month = m0.rem_euclid(12) + 1;
    let local = (days_from_civil(year, month, 1) + day - 1) * 86_400 + hour * 3_600 + min * 60 + sec;
    let offset_at = |s: i64| Timestamp::from_second(s).ok().map(|t| i64::from(tz.to_offset(t).seconds()));
    let first = offset_at(local)?;
    if first == 0 {
        return Some(local);
    }
    let utc = local - first;
    let offset = if offset_at(utc)? == first { first } else { offset_at(utc)? };
    Some(local - offset)
}

fn civil(tz: &TimeZone, s: i64) -> Option<DateTime> {
    Timestamp::from_second(s).ok().map(|t| tz.to_datetime(t))
}

fn day_matches(s: &Spec, c: &DateTime) -> bool {
    let dom = (1u64 << c.day()) & s.dom != 0;
    let dow = (1u64 << c.weekday().to_sunday_zero_offset()) & s.dow != 0;
    if s.dom & STAR != 0 || s.dow & STAR != 0 { dom && dow } else { dom || dow }
}

/// robfig's `SpecSchedule.Next`, over Unix seconds; `t` is the first candidate second.
fn next_spec(s: &Spec, mut t: i64, tz: &TimeZone) -> Option<i64> {
    let mut added = false;
    let year_limit = i64::from(civil(tz, t)?.year()) + 5;
    'wrap: loop {
        let c = civil(tz, t)?;
        if i64::from(c.year()) > year_limit {
            return None;
        }
        while (1u64 << civil(tz, t)?.month()) & s.month == 0 {
            let c = civil(tz, t)?;
            if !added {
                added = true;
                t = go_date(tz, c.year().into(), c.month().into(), 1, 0, 0, 0)?;
            }
            let c = civil(tz, t)?;
            t = go_date(
                tz,
                c.year().into(),
                i64::from(c.month()) + 1,
                c.day().into(),
                c.hour().into(),
                c.minute().into(),
                c.second().into(),
            )?;
            if civil(tz, t)?.month() == 1 {
                continue 'wrap;
            }
        }
        while !day_matches(s, &civil(tz, t)?) {
            let c = civil(tz, t)?;
            if !added {
                added = true;
                t = go_date(tz, c.year().into(), c.month().into(), c.day().into(), 0, 0, 0)?;
            }
            let c = civil(tz, t)?;
            t = go_date(
                tz,
                c.year().into(),
                c.month().into(),
                i64::from(c.day()) + 1,
                c.hour().into(),
                c.minute().into(),
                c.second().into(),
            )?;
            // A DST change can move midnight: step back to it.
            let h = i64::from(civil(tz, t)?.hour());
            if h != 0 {
                t += if h > 12 { (24 - h) * 3_600 } else { -h * 3_600 };
            }
            if civil(tz, t)?.day() == 1 {
                continue 'wrap;
            }
        }
        while (1u64 << civil(tz, t)?.hour()) & s.hour == 0 {
            if !added {
                added = true;
                let c = civil(tz, t)?;
                t = go_date(tz, c.year().into(), c.month().into(), c.day().into(), c.hour().into(), 0, 0)?;
            }
            t += 3_600;
            if civil(tz, t)?.hour() == 0 {
                continue 'wrap;
            }
        }
        while (1u64 << civil(tz, t)?.minute()) & s.minute == 0 {
            if !added {
                added = true;
                t -= t.rem_euclid(60);
            }
            t += 60;
            if civil(tz, t)?.minute() == 0 {
                continue 'wrap;
            }
        }
        // The seconds field of a standard spec is always 0.
        while civil(tz, t)?.second() != 0 {
            added = true;
            t += 1;
            if civil(tz, t)?.second() == 0 {
                continue 'wrap;
            }
        }
        return Some(t);
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Every(s) => write!(f, "@every {s}s"),
            Kind::Spec(s) => write!(
                f,
                "minute={:#x} hour={:#x} dom={:#x} month={:#x} dow={:#x}",
                s.minute, s.hour, s.dom, s.month, s.dow
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next_utc(spec: &str, after: &str) -> Option<String> {
        parse(spec).unwrap().next(ts(after), &TimeZone::UTC).map(|t| t.to_string())
    }

    #[test]
    fn next_activation_follows_robfig_semantics() {
        // (schedule, after, expected next), times in UTC.
        let cases: &[(&str, &str, &str)] = &[
            // Kubernetes docs (CronJob page): "0 3 * * 1" runs 03:00 every Monday.
            ("0 3 * * 1", "2024-05-01T00:00:00Z", "2024-05-06T03:00:00Z"),
            // Docs: "0 0 13 * 5": the 13th of the month OR every Friday, at midnight.
            ("0 0 13 * 5", "2024-05-01T00:00:00Z", "2024-05-03T00:00:00Z"),
            ("0 0 13 * 5", "2024-05-10T00:00:00Z", "2024-05-13T00:00:00Z"),
            // Docs: "*/1 * * * *" and "* * * * *": every minute.
            ("*/1 * * * *", "2024-05-01T10:00:30Z", "2024-05-01T10:01:00Z"),
            ("* * * * *", "2024-05-01T10:00:00Z", "2024-05-01T10:01:00Z"),
            ("* * * * *", "2024-05-01T10:00:59.999Z", "2024-05-01T10:01:00Z"),
            // Docs table of macros.
            ("@yearly", "2024-05-01T00:00:00Z", "2025-01-01T00:00:00Z"),
            ("@annually", "2024-05-01T00:00:00Z", "2025-01-01T00:00:00Z"),
            ("@monthly", "2024-05-01T00:00:00Z", "2024-06-01T00:00:00Z"),
            ("@weekly", "2024-05-01T00:00:00Z", "2024-05-05T00:00:00Z"),
            ("@daily", "2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z"),
            ("@midnight", "2024-05-01T12:00:00Z", "2024-05-02T00:00:00Z"),
            ("@hourly", "2024-05-01T12:00:00Z", "2024-05-01T13:00:00Z"),
            // Docs: "5 0 * 8 *": 00:05 every day in August.
            ("5 0 * 8 *", "2024-05-01T00:00:00Z", "2024-08-01T00:05:00Z"),
            // Ranges, steps, lists, names.
            ("0 22 * * 1-5", "2024-05-03T22:00:00Z", "2024-05-06T22:00:00Z"),
            ("23 0-20/2 * * *", "2024-05-01T00:30:00Z", "2024-05-01T02:23:00Z"),
            ("23 0-20/2 * * *", "2024-05-01T20:30:00Z", "2024-05-02T00:23:00Z"),
            ("0 0,12 1 */2 *", "2024-05-01T06:00:00Z", "2024-05-01T12:00:00Z"),
            ("0 0,12 1 */2 *", "2024-05-01T12:00:00Z", "2024-07-01T00:00:00Z"),
            ("0 4 8-14 * *", "2024-05-15T00:00:00Z", "2024-06-08T04:00:00Z"),
            ("0 9 * JAN-MAR MON", "2024-05-01T00:00:00Z", "2025-01-06T09:00:00Z"),
            ("0 9 * * sat,SUN", "2024-05-01T00:00:00Z", "2024-05-04T09:00:00Z"),
            ("30 6 ? * wed", "2024-05-01T07:00:00Z", "2024-05-08T06:30:00Z"),
            // "N/step" means N through the maximum.
            ("5/15 * * * *", "2024-05-01T10:06:00Z", "2024-05-01T10:20:00Z"),
            ("5/15 * * * *", "2024-05-01T10:50:00Z", "2024-05-01T11:05:00Z"),
            // Strictly after: the boundary itself is not returned.
            ("0 * * * *", "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z"),
            // Leap day: only in leap years.
            ("0 0 29 2 *", "2024-03-01T00:00:00Z", "2028-02-29T00:00:00Z"),
            // @every: from the whole second before, plus the delay.
            ("@every 1h30m", "2024-05-01T10:00:00.5Z", "2024-05-01T11:30:00Z"),
            ("@every 90s", "2024-05-01T10:00:00Z", "2024-05-01T10:01:30Z"),
            ("@every 1.5s", "2024-05-01T10:00:00Z", "2024-05-01T10:00:01Z"),
            ("@every 100ms", "2024-05-01T10:00:00Z", "2024-05-01T10:00:01Z"),
        ];
        for (spec, after, want) in cases {
            assert_eq!(next_utc(spec, after).as_deref(), Some(*want), "{spec} after {after}");
        }
    }

    #[test]
    fn impossible_dates_have_no_next_activation() {
        assert_eq!(next_utc("0 0 30 2 *", "2024-01-01T00:00:00Z"), None);
        assert_eq!(next_utc("59 23 31 2 *", "2024-01-01T00:00:00Z"), None);
    }

    #[test]
    fn a_star_day_field_makes_both_day_fields_required() {
        // dom "*" (star) with dow 1: Mondays only, not every day.
        assert_eq!(next_utc("0 0 * * 1", "2024-05-01T00:00:00Z").as_deref(), Some("2024-05-06T00:00:00Z"));
        // dom "*/2" has step > 1 so it is not a star: the OR rule applies.
        assert_eq!(next_utc("0 0 */2 * 1", "2024-05-01T00:00:00Z").as_deref(), Some("2024-05-03T00:00:00Z"));
        // dom "*/1" keeps the star.
        assert_eq!(next_utc("0 0 */1 * 1", "2024-05-01T00:00:00Z").as_deref(), Some("2024-05-06T00:00:00Z"));
    }

    #[test]
    fn malformed_schedules_are_rejected_with_robfig_messages() {
        let cases: &[(&str, &str)] = &[
            ("", "empty spec string"),
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            ("* * * * * *", "expected exactly 5 fields, found 6: [* * * * * *]"),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* 24 * * *", "end of range (24) above maximum (23): 24"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("* * * 13 *", "end of range (13) above maximum (12): 13"),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
            ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
            ("*/0 * * * *", "step of range should be a positive number: */0"),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("*/2/3 * * * *", "too many slashes: */2/3"),
            ("x * * * *", "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"),
            ("* * * FOO *", "failed to parse int from FOO: strconv.Atoi: parsing \"FOO\": invalid syntax"),
            ("@sometimes", "unrecognized descriptor: @sometimes"),
            ("@every 5", "failed to parse duration @every 5: time: missing unit in duration \"5\""),
            ("@every 1d", "failed to parse duration @every 1d: time: unknown unit \"d\" in duration \"1d\""),
            ("@Daily", "unrecognized descriptor: @Daily"),
        ];
        for (spec, want) in cases {
            assert_eq!(parse(spec).unwrap_err().to_string(), *want, "{spec:?}");
        }
    }

    #[test]
    fn a_tz_prefix_sets_the_zone() {
        let s = parse("TZ=Europe/Berlin 0 9 * * *").unwrap();
        let next = s.next(ts("2024-05-01T00:00:00Z"), &TimeZone::UTC).unwrap();
        assert_eq!(next.to_string(), "2024-05-01T07:00:00Z");
        let s = parse("CRON_TZ=Asia/Tokyo 0 9 * * *").unwrap();
        assert_eq!(
            s.next(ts("2024-05-01T00:00:00Z"), &TimeZone::UTC).unwrap().to_string(),
            "2024-05-02T00:00:00Z"
        );
        assert!(
            parse("TZ=Nowhere/Land 0 9 * * *").unwrap_err().to_string().starts_with("provided bad location")
        );
    }

    #[test]
    fn the_local_zone_applies_without_a_prefix() {
        let ny = TimeZone::get("America/New_York").unwrap();
        let s = parse("0 9 * * *").unwrap();
        assert_eq!(s.next(ts("2024-05-01T00:00:00Z"), &ny).unwrap().to_string(), "2024-05-01T13:00:00Z");
    }

    #[test]
    fn daylight_saving_changes_follow_go_time_arithmetic() {
        let ny = TimeZone::get("America/New_York").unwrap();
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // 02:30 does not exist on 2024-03-10 in New York; Go's hour stepping lands on
        // 03:00 EDT, then minute 30.
        let s = parse("30 2 * * *").unwrap();
        assert_eq!(s.next(ts("2024-03-10T05:00:00Z"), &ny).unwrap().to_string(), "2024-03-11T06:30:00Z");
        // Daily at 09:00 across the spring change keeps 09:00 wall time.
        let s = parse("0 9 * * *").unwrap();
        assert_eq!(s.next(ts("2024-03-09T15:00:00Z"), &ny).unwrap().to_string(), "2024-03-10T13:00:00Z");
        assert_eq!(s.next(ts("2024-03-30T09:00:00Z"), &berlin).unwrap().to_string(), "2024-03-31T07:00:00Z");
        // 01:30 happens twice on 2024-11-03 in New York; the first (EDT) is taken.
        let s = parse("30 1 * * *").unwrap();
        assert_eq!(s.next(ts("2024-11-03T04:00:00Z"), &ny).unwrap().to_string(), "2024-11-03T05:30:00Z");
    }

    #[test]
    fn go_durations_parse_like_time_parse_duration() {
        let cases: &[(&str, Result<i128, ()>)] = &[
            ("1h", Ok(3_600_000_000_000)),
            ("1h30m", Ok(5_400_000_000_000)),
            ("1.5h", Ok(5_400_000_000_000)),
            ("300ms", Ok(300_000_000)),
            ("2us", Ok(2_000)),
            ("-5m", Ok(-300_000_000_000)),
            ("0", Ok(0)),
            (".5s", Ok(500_000_000)),
            ("", Err(())),
            ("h", Err(())),
            ("1", Err(())),
            ("1x", Err(())),
            (".s", Err(())),
        ];
        for (s, want) in cases {
            assert_eq!(parse_go_duration(s).map_err(|_| ()), *want, "{s:?}");
        }
    }
}
