//! Kubernetes resource quantities (`500m`, `128Mi`, `1.5G`, `2e3`): parsing, exact
//! arithmetic and the canonical text the API server writes back (apimachinery's
//! `resource.Quantity`).
//!
//! A value is kept as a whole number of nano-units in an `i128`, the finest precision
//! Kubernetes keeps (finer input is rounded up, away from zero, as upstream does), which
//! covers magnitudes up to about 10^20 units; larger inputs are refused.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Wire;

/// How a quantity is written back: the suffix family of the text it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
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
    #[error("quantity {0:?} is too large")]
    TooLarge(String),
}

/// An exact quantity with the format it is printed in.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    /// Zero, printed as `0`.
    pub const ZERO: Quantity = Quantity { nanos: 0, format: Format::DecimalSI };

    /// A whole number of units in decimal SI form (`3`, `2k`).
    pub fn from_units(units: i64) -> Self {
        Quantity { nanos: units as i128 * NANO, format: Format::DecimalSI }
    }

    /// A number of milli-units in decimal SI form (`250m`).
    pub fn from_milli(milli: i64) -> Self {
        Quantity { nanos: milli as i128 * 1_000_000, format: Format::DecimalSI }
    }

    /// Parses the Kubernetes quantity syntax.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let s = text.trim();
        if s.is_empty() {
            return Err(Error::Format);
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        let negative = match bytes[0] {
            b'-' => {
                i = 1;
                true
            }
            b'+' => {
                i = 1;
                false
            }
            _ => false,
        };
        let mut mantissa: i128 = 0;
        let mut frac_digits: i32 = 0;
        let mut digits = 0;
        let mut seen_dot = false;
        while i < bytes.len() {
            match bytes[i] {
                b'0'..=b'9' => {
                    // Leading zeros and digits beyond i128 precision would overflow; refuse.
                    mantissa = mantissa
                        .checked_mul(10)
                        .and_then(|m| m.checked_add((bytes[i] - b'0') as i128))
                        .ok_or_else(|| Error::TooLarge(text.into()))?;
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
        let (format, exp10, exp1024): (Format, i32, u32) = match suffix {
            "" => (Format::DecimalSI, 0, 0),
            "n" => (Format::DecimalSI, -9, 0),
            "u" => (Format::DecimalSI, -6, 0),
            "m" => (Format::DecimalSI, -3, 0),
            "k" => (Format::DecimalSI, 3, 0),
            "M" => (Format::DecimalSI, 6, 0),
            "G" => (Format::DecimalSI, 9, 0),
            "T" => (Format::DecimalSI, 12, 0),
            "P" => (Format::DecimalSI, 15, 0),
            "E" => (Format::DecimalSI, 18, 0),
            "Ki" => (Format::BinarySI, 0, 1),
            "Mi" => (Format::BinarySI, 0, 2),
            "Gi" => (Format::BinarySI, 0, 3),
            "Ti" => (Format::BinarySI, 0, 4),
            "Pi" => (Format::BinarySI, 0, 5),
            "Ei" => (Format::BinarySI, 0, 6),
            other if other.len() > 1 && (other.starts_with('e') || other.starts_with('E')) => {
                let e: i32 = other[1..].parse().map_err(|_| Error::Format)?;
                if !other[1..].trim_start_matches(['+', '-']).bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Error::Format);
                }
                (Format::DecimalExponent, e, 0)
            }
            _ => return Err(Error::Format),
        };
        let too_large = || Error::TooLarge(text.into());
        let mut value = mantissa;
        for _ in 0..exp1024 {
            value = value.checked_mul(1024).ok_or_else(too_large)?;
        }
        let shift = exp10 - frac_digits + 9;
        let nanos = if shift >= 0 {
            let p = pow10(shift as u32).ok_or_else(too_large)?;
            value.checked_mul(p).ok_or_else(too_large)?
        } else {
            match pow10((-shift) as u32) {
                // Round up what is finer than a nano-unit.
                Some(p) => (value + p - 1) / p,
                None => i128::from(value != 0),
            }
        };
        Ok(Quantity { nanos: if negative { -nanos } else { nanos }, format })
    }

    /// The format this quantity prints in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
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

    /// The k8s-openapi wire form (canonical text).
    pub fn to_wire(&self) -> Wire {
        Wire(self.to_string())
    }

    fn write_decimal(&self, f: &mut fmt::Formatter<'_>, exponent_form: bool) -> fmt::Result {
        let mut mantissa = self.nanos;
        let mut exp: i32 = -9;
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exp += 1;
        }
        let r = exp.rem_euclid(3);
        for _ in 0..r {
            mantissa *= 10;
        }
        exp -= r;
        let suffix = if exponent_form {
            None
        } else {
            match exp {
                -9 => Some("n"),
                -6 => Some("u"),
                -3 => Some("m"),
                0 => Some(""),
                3 => Some("k"),
                6 => Some("M"),
                9 => Some("G"),
                12 => Some("T"),
                15 => Some("P"),
                18 => Some("E"),
                _ => None,
            }
        };
        match suffix {
            Some(s) => write!(f, "{mantissa}{s}"),
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

impl fmt::Display for Quantity {
    /// The canonical form (`CanonicalizeBytes`): binary suffixes only for whole values of at
    /// least 1024 in magnitude, otherwise the largest decimal suffix that keeps the value exact.
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
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][k];
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

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

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

/// Resource name to quantity, as `v1.ResourceList`.
pub type ResourceList = BTreeMap<String, Quantity>;

/// Parses a wire `ResourceList`; entries that do not parse are left out (the API server
/// validates them, so there are none in practice).
pub fn parse_list(list: Option<&BTreeMap<String, Wire>>) -> ResourceList {
    list.into_iter()
        .flatten()
        .filter_map(|(k, v)| Quantity::parse(&v.0).ok().map(|q| (k.clone(), q)))
        .collect()
}

/// The wire form of a `ResourceList`.
pub fn to_wire_list(list: &ResourceList) -> BTreeMap<String, Wire> {
    list.iter().map(|(k, v)| (k.clone(), v.to_wire())).collect()
}

/// Adds `b` into `a`, name by name.
pub fn add_into(a: &mut ResourceList, b: &ResourceList) {
    for (k, v) in b {
        let sum = a.get(k).copied().unwrap_or(Quantity::ZERO) + *v;
        a.insert(k.clone(), sum);
    }
}

/// Element-wise maximum of two lists (a name missing on one side takes the other's value).
pub fn max_of(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        match out.get(k) {
            Some(cur) if cur >= v => {}
            _ => {
                out.insert(k.clone(), *v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Quantity::parse(s).unwrap().to_string()
    }

    #[test]
    fn canonical_forms_match_apimachinery() {
        // (input, canonical) pairs from apimachinery's quantity tests and the docs.
        let cases = [
            ("0", "0"),
            ("0Mi", "0"),
            ("1", "1"),
            ("1000", "1k"),
            ("1500m", "1500m"),
            ("2000m", "2"),
            ("0.5", "500m"),
            ("100m", "100m"),
            ("1Ki", "1Ki"),
            ("1024", "1024"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
            ("1.5Ki", "1536"),
            ("0.1Ki", "102400m"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("129M", "129M"),
            ("1e3", "1e3"),
            ("1E3", "1e3"),
            ("12e1", "120"),
            ("1.1E2", "110"),
            ("1n", "1n"),
            ("0.0000000001", "1n"),
            ("-5m", "-5m"),
            ("+5", "5"),
            (".5", "500m"),
            ("5.", "5"),
            ("1E", "1E"),
            ("2Ei", "2Ei"),
            ("100u", "100u"),
            ("10G", "10G"),
        ];
        for (input, want) in cases {
            assert_eq!(canon(input), want, "canonical form of {input}");
        }
    }

    #[test]
    fn malformed_quantities_are_refused() {
        for bad in ["", "Mi", "1.2.3", "1x", "1 Mi", "e3", "1e", "1Mb", "--1"] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should not parse");
        }
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
    }

    #[test]
    fn comparisons_are_by_value() {
        assert_eq!(Quantity::parse("1Gi").unwrap(), Quantity::parse("1073741824").unwrap());
        assert!(Quantity::parse("1G").unwrap() < Quantity::parse("1Gi").unwrap());
        assert!(Quantity::parse("500Mi").unwrap() < Quantity::parse("1Gi").unwrap());
        assert_eq!(Quantity::parse("1.5").unwrap().value(), 2);
        assert_eq!(Quantity::parse("1.5").unwrap().milli_value(), 1500);
    }
}
