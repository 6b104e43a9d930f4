//! Resource quantities (`100m`, `1.5Gi`, `2e3`): parsing into exact milli-units for
//! arithmetic and comparison, and formatting back in Kubernetes' canonical style.

use std::cmp::Ordering;
use std::fmt;

/// A quantity as thousandths of its unit (so `100m` CPU is 100 and `1Ki` is 1,024,000).
/// Values below a thousandth round up, as Kubernetes' `MilliValue` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity(pub i128);

/// A string that is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}")]
pub struct Error(pub String);

fn suffix_factor(s: &str) -> Option<(i128, i32)> {
    // (multiplier, decimal exponent)
    Some(match s {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        _ => {
            let exp = s.strip_prefix('e').or_else(|| s.strip_prefix('E'))?;
            (1, exp.parse::<i32>().ok()?)
        }
    })
}

impl Quantity {
    /// Parses a quantity string.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let t = text.trim();
        let err = || Error(text.to_string());
        let split = t
            .char_indices()
            .find(|(i, c)| !(c.is_ascii_digit() || *c == '.' || ((*c == '+' || *c == '-') && *i == 0)))
            .map(|(i, _)| i)
            .unwrap_or(t.len());
        let (num, suffix) = t.split_at(split);
        if num.is_empty() || num == "+" || num == "-" {
            return Err(err());
        }
        let (mult, exp10) = suffix_factor(suffix).ok_or_else(err)?;
        let negative = num.starts_with('-');
        let digits = num.trim_start_matches(['+', '-']);
        let (int_part, frac_part) = match digits.split_once('.') {
            Some((a, b)) => (a, b),
            None => (digits, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
            return Err(err());
        }
        // value = (int.frac) * mult * 10^exp10 * 1000, kept exact in i128 where possible.
        let mantissa: i128 = format!("{int_part}{frac_part}").parse().map_err(|_| err())?;
        let scale = exp10 + 3 - frac_part.len() as i32;
        let mut v = mantissa.checked_mul(mult).ok_or_else(err)?;
        if scale >= 0 {
            v = v.checked_mul(10i128.checked_pow(scale as u32).ok_or_else(err)?).ok_or_else(err)?;
        } else {
            let d = 10i128.checked_pow((-scale) as u32).unwrap_or(i128::MAX);
            v = (v + d - 1) / d;
        }
        Ok(Quantity(if negative { -v } else { v }))
    }

    /// Parses, treating anything unparsable as zero (for reading stored objects).
    pub fn parse_or_zero(text: &str) -> Self {
        Self::parse(text).unwrap_or_default()
    }

    /// The value in whole units, rounded up (bytes, cores, counts).
    pub fn value(self) -> i128 {
        (self.0 + 999).div_euclid(1000)
    }

    pub fn milli(self) -> i128 {
        self.0
    }

    pub fn from_milli(m: i128) -> Self {
        Quantity(m)
    }

    pub fn from_value(v: i128) -> Self {
        Quantity(v * 1000)
    }
}

impl std::ops::Add for Quantity {
    type Output = Quantity;
    fn add(self, o: Quantity) -> Quantity {
        Quantity(self.0.saturating_add(o.0))
    }
}

impl std::ops::Sub for Quantity {
    type Output = Quantity;
    fn sub(self, o: Quantity) -> Quantity {
        Quantity(self.0.saturating_sub(o.0))
    }
}

impl std::iter::Sum for Quantity {
    fn sum<I: Iterator<Item = Quantity>>(iter: I) -> Quantity {
        iter.fold(Quantity(0), |a, b| a + b)
    }
}

impl fmt::Display for Quantity {
    /// Canonical-ish form: milli-units as `Nm` when fractional, binary suffixes when the
    /// value is a multiple of 1024 and at least 1Ki, else a plain number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 % 1000 != 0 {
            return write!(f, "{}m", self.0);
        }
        let v = self.0 / 1000;
        if v != 0 {
            for (suffix, m) in [
                ("Ei", 1i128 << 60),
                ("Pi", 1 << 50),
                ("Ti", 1 << 40),
                ("Gi", 1 << 30),
                ("Mi", 1 << 20),
                ("Ki", 1 << 10),
            ] {
                if v % m == 0 {
                    return write!(f, "{}{suffix}", v / m);
                }
            }
        }
        write!(f, "{v}")
    }
}

/// Compares two quantity strings numerically (unparsable ones as zero).
pub fn compare(a: &str, b: &str) -> Ordering {
    Quantity::parse_or_zero(a).cmp(&Quantity::parse_or_zero(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_into_exact_milli_units() {
        let cases = [
            ("100m", 100),
            ("1", 1000),
            ("0.5", 500),
            ("1.5", 1500),
            ("1Ki", 1024 * 1000),
            ("1Mi", (1 << 20) * 1000),
            ("1G", 1_000_000_000_000),
            ("2e3", 2_000_000),
            ("1E2", 100_000),
            ("1n", 1),
            ("-2", -2000),
            ("128974848", 128_974_848_000),
        ];
        for (s, want) in cases {
            assert_eq!(Quantity::parse(s).unwrap().0, want, "{s}");
        }
        for bad in ["", "abc", "1.2.3", "1Qi", "m"] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quantities_compare_and_print() {
        assert_eq!(compare("1Gi", "1024Mi"), Ordering::Equal);
        assert_eq!(compare("500m", "1"), Ordering::Less);
        assert_eq!(Quantity::parse("1024Mi").unwrap().to_string(), "1Gi");
        assert_eq!(Quantity::parse("250m").unwrap().to_string(), "250m");
        assert_eq!(Quantity::parse("3").unwrap().to_string(), "3");
        assert_eq!((Quantity::parse("1").unwrap() + Quantity::parse("500m").unwrap()).to_string(), "1500m");
    }
}
