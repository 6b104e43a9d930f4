//! Resource quantities in the canonical form of upstream's `resource.Quantity.String()`
//! ("1Gi" for "1024Mi", "500m" for "0.5", "1536Mi" for "1.5Gi").
//!
//! kube-apiserver prints quantities it decoded, so what a client wrote ("1024Mi")
//! shows canonicalized ("1Gi"); printing the JSON string verbatim would differ.

use serde_json::Value;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    DecimalSi,
    BinarySi,
    DecimalExponent,
}

/// The canonical string of a quantity held in JSON (a string, or a bare number).
/// Absent prints "0" (Go's zero `Quantity`); unparsable text prints unchanged.
pub(crate) fn quantity_string(v: Option<&Value>) -> String {
    let text = match v {
        None | Some(Value::Null) => return "0".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => other.to_string(),
    };
    canonical(&text).unwrap_or(text)
}

/// A `*resource.Quantity` field's `String()`: "<nil>" when the pointer is nil.
pub(crate) fn quantity_ptr_string(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "<nil>".to_string(),
        some => quantity_string(some),
    }
}

/// Canonical form of a quantity string, or `None` when it does not parse (or is
/// too large for this implementation's 128-bit arithmetic).
pub(crate) fn canonical(s: &str) -> Option<String> {
    let (mut unscaled, mut scale, format) = parse(s)?;
    if unscaled == 0 {
        return Some("0".to_string());
    }
    // Upstream rounds anything finer than a nano-unit up (away from zero).
    if scale < -9 {
        let k = u32::try_from(-9 - scale).ok()?;
        let q = match 10i128.checked_pow(k) {
            Some(div) => {
                let (q, r) = (unscaled / div, unscaled % div);
                if r != 0 { q + unscaled.signum() } else { q }
            }
            None => unscaled.signum(),
        };
        unscaled = q;
        scale = -9;
    }

    let mut format = format;
    if format == Format::BinarySi {
        let abs = unscaled.checked_abs()?;
        let below_1024 = if scale >= 0 {
            abs.checked_mul(pow10(scale)?).is_some_and(|v| v < 1024)
        } else {
            pow10(-scale).and_then(|p| p.checked_mul(1024)).is_none_or(|limit| abs < limit)
        };
        let integral = scale >= 0 || pow10(-scale).is_some_and(|p| unscaled % p == 0);
        if below_1024 || !integral {
            format = Format::DecimalSi;
        }
    }

    if format == Format::BinarySi {
        let mut v = if scale >= 0 { unscaled.checked_mul(pow10(scale)?)? } else { unscaled / pow10(-scale)? };
        let mut exp = 0;
        while exp < 6 && v % 1024 == 0 {
            v /= 1024;
            exp += 1;
        }
        let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp];
        return Some(format!("{v}{suffix}"));
    }

    let (mut m, mut e) = (unscaled, scale);
    while m % 10 == 0 {
        m /= 10;
        e += 1;
    }
    let r = e.rem_euclid(3);
    m = m.checked_mul(pow10(r)?)?;
    e -= r;
    if format == Format::DecimalExponent {
        return Some(if e == 0 { m.to_string() } else { format!("{m}e{e}") });
    }
    if e > 18 {
        m = m.checked_mul(pow10(e - 18)?)?;
        e = 18;
    }
    let suffix = match e {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        _ => "E",
    };
    Some(format!("{m}{suffix}"))
}

fn pow10(e: i32) -> Option<i128> {
    10i128.checked_pow(u32::try_from(e).ok()?)
}

/// Splits "<sign><digits>[.<digits>]<suffix>" into an unscaled integer, a power-of-ten
/// scale, and the format the suffix selects.
fn parse(s: &str) -> Option<(i128, i32, Format)> {
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(num_end);
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || frac.contains('.') {
        return None;
    }
    let digits = format!("{whole}{frac}");
    let significant = digits.trim_start_matches('0');
    if significant.len() > 36 {
        return None;
    }
    let mut unscaled: i128 = if significant.is_empty() { 0 } else { significant.parse().ok()? };
    let mut scale = -i32::try_from(frac.len()).ok()?;

    let format = match suffix {
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
            let power = match suffix {
                "Ki" => 1,
                "Mi" => 2,
                "Gi" => 3,
                "Ti" => 4,
                "Pi" => 5,
                _ => 6,
            };
            unscaled = unscaled.checked_mul(1024i128.pow(power))?;
            Format::BinarySi
        }
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => {
            scale += match suffix {
                "n" => -9,
                "u" => -6,
                "m" => -3,
                "k" => 3,
                "M" => 6,
                "G" => 9,
                "T" => 12,
                "P" => 15,
                "E" => 18,
                _ => 0,
            };
            Format::DecimalSi
        }
        _ => {
            let exp = suffix.strip_prefix(['e', 'E'])?;
            let digits = exp.trim_start_matches(['+', '-']);
            if digits.is_empty()
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || exp.len() - digits.len() > 1
            {
                return None;
            }
            scale = scale.checked_add(exp.parse::<i32>().ok()?)?;
            Format::DecimalExponent
        }
    };
    if negative {
        unscaled = -unscaled;
    }
    Some((unscaled, scale, format))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_canonicalize_like_upstream() {
        let cases = [
            ("0", "0"),
            ("0Gi", "0"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Mi", "512Ki"),
            ("0.5Ki", "512"),
            ("1.5Ki", "1536"),
            ("1.1Ki", "1126400m"),
            ("100Mi", "100Mi"),
            ("500m", "500m"),
            ("0.5", "500m"),
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("2000000", "2M"),
            ("10G", "10G"),
            ("1e3", "1e3"),
            ("1.5e3", "1500"),
            ("100e-3", "100e-3"),
            ("-1Gi", "-1Gi"),
            ("+2", "2"),
            ("1n", "1n"),
            ("0.0000000001", "1n"),
            ("12u", "12u"),
            ("20", "20"),
            ("8Ei", "8Ei"),
        ];
        for (input, want) in cases {
            assert_eq!(canonical(input).as_deref(), Some(want), "{input}");
        }
    }

    #[test]
    fn garbage_and_absent_quantities() {
        assert_eq!(canonical("abc"), None);
        assert_eq!(canonical("1Zi"), None);
        assert_eq!(canonical(""), None);
        assert_eq!(quantity_string(Some(&Value::from("lots"))), "lots");
        assert_eq!(quantity_string(None), "0");
        assert_eq!(quantity_string(Some(&Value::from(3))), "3");
        assert_eq!(quantity_ptr_string(None), "<nil>");
    }
}
