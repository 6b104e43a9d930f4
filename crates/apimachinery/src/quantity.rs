//! Kubernetes resource quantities (`500m`, `128Mi`, `1.5G`, `2e3`): parsing, exact
//! arithmetic and the canonical text kube-apiserver writes back (apimachinery's
//! `resource.Quantity`). This is the one implementation every krust component uses.
//!
//! A value is kept as a whole number of nano-units in an `i128`, the finest precision
//! Kubernetes keeps (finer input is rounded up, away from zero, as upstream does), which
//! covers magnitudes up to about 10^29 units; larger inputs are refused as too large.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// How a quantity is written back: the suffix family of the text it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// `m`, ``, `k`, `M`, ... (powers of 1000).
    DecimalSI,
    /// `Ki`, `Mi`, ... (powers of 1024).
    BinarySI,
    /// `e3`, `E-6`, ...
    DecimalExponent,
}

/// Why a quantity string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Format,
    #[error("unable to parse quantity's suffix")]
    Suffix,
    #[error("quantity {0:?} is too large")]
    TooLarge(String),
}

/// An exact quantity with the format it is printed in. Equality, order and hashing are
/// by value: `1Gi` equals `1073741824`.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

const NANO: i128 = 1_000_000_000;

/// Decimal SI suffixes and the power of ten each stands for.
const DECIMAL_SUFFIXES: [(&str, i32); 10] =
    [("n", -9), ("u", -6), ("m", -3), ("", 0), ("k", 3), ("M", 6), ("G", 9), ("T", 12), ("P", 15), ("E", 18)];

/// Binary SI suffixes, each 1024 times the one before.
const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

impl Quantity {
    /// Zero, printed as `0`.
    pub const ZERO: Quantity = Quantity { nanos: 0, format: Format::DecimalSI };

    /// A whole number of units in decimal SI form (`3`, `2k`); saturates beyond the range.
    pub fn from_units(units: i128) -> Self {
        Quantity { nanos: units.saturating_mul(NANO), format: Format::DecimalSI }
    }

    /// Parses the Kubernetes quantity syntax (surrounding whitespace is ignored).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let s = text.trim();
        let bytes = s.as_bytes();
        let (negative, mut i) = match bytes.first() {
            None => return Err(Error::Format),
            Some(b'-') => (true, 1),
            Some(b'+') => (false, 1),
            Some(_) => (false, 0),
        };
        let too_large = || Error::TooLarge(text.into());
        let mut mantissa: i128 = 0;
        let mut frac_digits: i32 = 0;
        let mut digits = 0;
        let mut seen_dot = false;
        while i < bytes.len() {
            match bytes[i] {
                b'0'..=b'9' => {
                    mantissa = mantissa
                        .checked_mul(10)
                        .and_then(|m| m.checked_add((bytes[i] - b'0') as i128))
                        .ok_or_else(too_large)?;
                    digits += 1;
                    if seen_dot {
                        frac_digits += 1;
                    }
                }
                b'.' if !seen_dot => seen_dot = true,
                _ => break,
            }
            i += 1;
        }
        if digits == 0 {
            return Err(Error::Format);
        }
        let suffix = &s[i..];
        let decimal = DECIMAL_SUFFIXES.iter().find(|(name, _)| *name == suffix);
        let binary = BINARY_SUFFIXES.iter().skip(1).position(|name| *name == suffix);
        let (format, exp10, exp1024): (Format, i32, u32) = match (decimal, binary) {
            (Some(&(_, exp10)), _) => (Format::DecimalSI, exp10, 0),
            (None, Some(k)) => (Format::BinarySI, 0, k as u32 + 1),
            (None, None) => {
                // The grammar allows suffix letters, then a signed exponent; text that
                // fits it but names no suffix is a bad suffix, anything else bad format.
                let letters = suffix.trim_start_matches(|c| "eEinumkKMGTP".contains(c));
                let exponent = letters.strip_prefix(['+', '-']).unwrap_or(letters);
                if !exponent.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Error::Format);
                }
                let exp = suffix.strip_prefix(['e', 'E']).ok_or(Error::Suffix)?;
                let unsigned = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Error::Suffix);
                }
                (Format::DecimalExponent, exp.parse().map_err(|_| too_large())?, 0)
            }
        };
        let mut value = mantissa;
        for _ in 0..exp1024 {
            value = value.checked_mul(1024).ok_or_else(too_large)?;
        }
        let shift = exp10.checked_sub(frac_digits).and_then(|e| e.checked_add(9)).ok_or_else(too_large)?;
        let nanos = if shift >= 0 {
            let p = pow10(shift.unsigned_abs()).ok_or_else(too_large)?;
            value.checked_mul(p).ok_or_else(too_large)?
        } else {
            match pow10(shift.unsigned_abs()) {
                // Round up what is finer than a nano-unit.
                Some(p) => ceil_div(value, p),
                None => i128::from(value != 0),
            }
        };
        Ok(Quantity { nanos: if negative { -nanos } else { nanos }, format })
    }

    /// The value in whole units, rounded up (as `Quantity.Value()`).
    pub fn value(&self) -> i128 {
        ceil_div(self.nanos, NANO)
    }

    /// The value in milli-units, rounded up (as `Quantity.MilliValue()`).
    pub fn milli_value(&self) -> i128 {
        ceil_div(self.nanos, 1_000_000)
    }

    /// Rounds up to a whole number of units (as `RoundUp(0)`), keeping the format.
    pub fn round_up_to_units(self) -> Self {
        Quantity { nanos: ceil_div(self.nanos, NANO) * NANO, format: self.format }
    }

    fn write_decimal(&self, f: &mut fmt::Formatter<'_>, exponent_form: bool) -> fmt::Result {
        let mut mantissa = self.nanos;
        let mut exp: i32 = -9;
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exp += 1;
        }
        // Exponents are multiples of three; beyond exa the mantissa grows instead.
        let r = if exponent_form { exp.rem_euclid(3) } else { exp.rem_euclid(3).max(exp - 18) };
        for _ in 0..r {
            mantissa *= 10;
        }
        exp -= r;
        let suffix = DECIMAL_SUFFIXES.iter().find(|(_, e)| *e == exp && !exponent_form);
        match suffix {
            Some((s, _)) => write!(f, "{mantissa}{s}"),
            None if exp == 0 => write!(f, "{mantissa}"),
            None => write!(f, "{mantissa}e{exp}"),
        }
    }
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && a > 0 { q + 1 } else { q }
}

impl Default for Quantity {
    fn default() -> Self {
        Quantity::ZERO
    }
}

impl fmt::Display for Quantity {
    /// The canonical form: binary suffixes only for whole values of at least 1024 in
    /// magnitude, otherwise the largest decimal suffix that keeps the value exact.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return write!(f, "0");
        }
        match self.format {
            Format::BinarySI if self.nanos % NANO == 0 && self.nanos.abs() >= 1024 * NANO => {
                let mut units = self.nanos / NANO;
                let mut k = 0;
                while k < 6 && units % 1024 == 0 {
                    units /= 1024;
                    k += 1;
                }
                let suffix = BINARY_SUFFIXES[k];
                write!(f, "{units}{suffix}")
            }
            Format::DecimalExponent => self.write_decimal(f, true),
            _ => self.write_decimal(f, false),
        }
    }
}

impl std::ops::Add for Quantity {
    type Output = Quantity;

    /// The sum; it prints in the left quantity's format unless that one is zero, then in
    /// the right's (as upstream `Add`).
    fn add(self, other: Quantity) -> Quantity {
        let format = if self.nanos == 0 { other.format } else { self.format };
        Quantity { nanos: self.nanos.saturating_add(other.nanos), format }
    }
}

impl std::ops::Sub for Quantity {
    type Output = Quantity;

    /// The difference, in the format [`Add`](std::ops::Add) would choose.
    fn sub(self, other: Quantity) -> Quantity {
        let format = if self.nanos == 0 { other.format } else { self.format };
        Quantity { nanos: self.nanos.saturating_sub(other.nanos), format }
    }
}

impl std::iter::Sum for Quantity {
    fn sum<I: Iterator<Item = Quantity>>(iter: I) -> Quantity {
        iter.fold(Quantity::ZERO, |a, b| a + b)
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")).to_string()
    }

    #[test]
    fn canonical_forms_match_apimachinery() {
        // (input, canonical) pairs from apimachinery's quantity tests and the docs.
        let cases = [
            ("0", "0"),
            ("0Mi", "0"),
            ("1", "1"),
            ("20", "20"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("2000000", "2M"),
            ("1500m", "1500m"),
            ("2000m", "2"),
            ("0.5", "500m"),
            ("100m", "100m"),
            ("1Ki", "1Ki"),
            ("1024", "1024"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Mi", "512Ki"),
            ("0.5Ki", "512"),
            ("1.5Ki", "1536"),
            ("0.1Ki", "102400m"),
            ("1.1Ki", "1126400m"),
            ("-1Gi", "-1Gi"),
            ("8Ei", "8Ei"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("129M", "129M"),
            ("1e3", "1e3"),
            ("1E3", "1e3"),
            ("1e+3", "1e3"),
            ("1.5e3", "1500"),
            ("100e-3", "100e-3"),
            ("12e1", "120"),
            ("1.1E2", "110"),
            ("1n", "1n"),
            ("0.0000000001", "1n"),
            ("-5m", "-5m"),
            ("+5", "5"),
            (".5", "500m"),
            ("5.", "5"),
            ("1E", "1E"),
            ("1000E", "1000E"),
            ("2Ei", "2Ei"),
            ("100u", "100u"),
            ("10G", "10G"),
            (" 1Gi ", "1Gi"),
        ];
        for (input, want) in cases {
            assert_eq!(canon(input), want, "canonical form of {input:?}");
        }
    }

    #[test]
    fn malformed_quantities_are_refused() {
        for bad in ["", "m", "Mi", "abc", ".", "1.2.3", "1x", "1Qi", "1 Mi", "e3", "1Mb", "--1", "1e3.5"] {
            assert_eq!(Quantity::parse(bad), Err(Error::Format), "{bad:?} should not parse");
        }
        for bad in ["32MMi", "1kk", "1e", "1e+", "1mi", "1Em"] {
            assert_eq!(Quantity::parse(bad), Err(Error::Suffix), "{bad:?} has a bad suffix");
        }
        assert!(matches!(Quantity::parse("1e40"), Err(Error::TooLarge(_))));
        assert!(matches!(
            Quantity::parse("99999999999999999999999999999999999999999"),
            Err(Error::TooLarge(_))
        ));
    }

    #[test]
    fn values_round_up_like_upstream() {
        // (input, MilliValue, Value)
        let cases: &[(&str, i128, i128)] = &[
            ("100m", 100, 1),
            ("1", 1000, 1),
            ("1.5", 1500, 2),
            ("0.1", 100, 1),
            ("1n", 1, 1),
            ("0", 0, 0),
            ("-2", -2000, -2),
            ("2Gi", 2 * (1 << 30) * 1000, 2 * (1 << 30)),
            ("123Mi", 128_974_848_000, 128_974_848),
            ("500M", 500_000_000_000, 500_000_000),
            ("1e3", 1_000_000, 1000),
            ("1.5Ki", 1_536_000, 1536),
        ];
        for (s, milli, whole) in cases {
            let q = Quantity::parse(s).unwrap();
            assert_eq!(q.milli_value(), *milli, "milli value of {s}");
            assert_eq!(q.value(), *whole, "value of {s}");
        }
        assert_eq!(Quantity::parse("1.2").unwrap().round_up_to_units().to_string(), "2");
    }

    #[test]
    fn sums_keep_the_first_non_zero_format() {
        let sum = Quantity::ZERO + Quantity::parse("64Mi").unwrap() + Quantity::parse("64Mi").unwrap();
        assert_eq!(sum.to_string(), "128Mi");
        let cpu = Quantity::parse("250m").unwrap() + Quantity::parse("1").unwrap();
        assert_eq!(cpu.to_string(), "1250m");
        let mixed = Quantity::parse("1Gi").unwrap() + Quantity::parse("1G").unwrap();
        assert_eq!((mixed - Quantity::parse("1G").unwrap()).to_string(), "1Gi");
        assert_eq!(mixed.to_string(), "2073741824");
        let total: Quantity = ["1", "500m"].iter().map(|s| Quantity::parse(s).unwrap()).sum();
        assert_eq!(total.to_string(), "1500m");
        assert_eq!(Quantity::from_units(2000).to_string(), "2k");
    }

    #[test]
    fn comparisons_are_by_value() {
        assert_eq!(Quantity::parse("1Gi").unwrap(), Quantity::parse("1073741824").unwrap());
        assert_eq!(Quantity::parse("1Gi").unwrap(), Quantity::parse("1024Mi").unwrap());
        assert!(Quantity::parse("1G").unwrap() < Quantity::parse("1Gi").unwrap());
        assert!(Quantity::parse("500Mi").unwrap() < Quantity::parse("1Gi").unwrap());
        assert!(Quantity::parse("500m").unwrap() < Quantity::parse("1").unwrap());
    }
}
