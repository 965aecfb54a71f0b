//! Kubernetes resource quantities (`500m`, `1.5Gi`, `2e3`): parsing into exact integers.
//!
//! The API server stores quantities as fixed-point decimals and rounds *up* when a value
//! has more precision than asked for (`0.1m` CPU is `1m`). We keep the value as an exact
//! rational `mantissa * base^exp` long enough to round once, in `i128`, so nothing here
//! uses floating point.

use std::fmt;

/// A parsed quantity: an exact value in units of 10^-9 (nano-units), enough for every
/// suffix Kubernetes accepts (`n` is the smallest) and, in `i128`, for `8Ei`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity {
    nanos: i128,
}

/// Why a quantity string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityError {
    /// The text that was given.
    pub text: String,
}

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "quantity {:?} is not of the form <number><suffix> (suffixes: n u m k M G T P E Ki Mi Gi Ti Pi Ei, or e<exp>)",
            self.text
        )
    }
}

impl std::error::Error for QuantityError {}

const NANO: i128 = 1_000_000_000;
/// Kubernetes caps quantities at 2^63-1 of their unit; bigger is refused here.
const MAX_NANOS: i128 = (i64::MAX as i128) * NANO;

impl Quantity {
    /// Parses a quantity exactly as `resource.ParseQuantity` accepts it.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let err = || QuantityError {
            text: text.to_owned(),
        };
        let s = text.trim();
        if s.is_empty() || s.len() > 64 {
            return Err(err());
        }
        let (negative, body) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (number, suffix) = body.split_at(num_end);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
            return Err(err());
        }
        // digits as one integer, scaled by 10^-len(frac)
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return Err(err());
        }
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| err())?
        };
        let mut dec_exp: i32 = -(frac_part.len() as i32);
        let mut binary_pow: u32 = 0;
        match suffix {
            "" => {}
            "n" => dec_exp -= 9,
            "u" => dec_exp -= 6,
            "m" => dec_exp -= 3,
            "k" => dec_exp += 3,
            "M" => dec_exp += 6,
            "G" => dec_exp += 9,
            "T" => dec_exp += 12,
            "P" => dec_exp += 15,
            "E" => dec_exp += 18,
            "Ki" => binary_pow = 10,
            "Mi" => binary_pow = 20,
            "Gi" => binary_pow = 30,
            "Ti" => binary_pow = 40,
            "Pi" => binary_pow = 50,
            "Ei" => binary_pow = 60,
            exp if exp.starts_with(['e', 'E']) => {
                let e: i32 = exp[1..].parse().map_err(|_| err())?;
                if !(-40..=40).contains(&e) {
                    return Err(err());
                }
                dec_exp += e;
            }
            _ => return Err(err()),
        }
        // value in nanos = mantissa * 2^binary_pow * 10^(dec_exp + 9), rounded up.
        let mut value = mantissa.checked_mul(1i128 << binary_pow).ok_or_else(err)?;
        let shift = dec_exp + 9;
        if shift >= 0 {
            for _ in 0..shift {
                value = value.checked_mul(10).ok_or_else(err)?;
                if value > MAX_NANOS {
                    return Err(err());
                }
            }
        } else {
            let mut divisor: i128 = 1;
            for _ in 0..(-shift) {
                divisor = divisor.checked_mul(10).ok_or_else(err)?;
            }
            value = (value + divisor - 1) / divisor;
        }
        if value > MAX_NANOS {
            return Err(err());
        }
        Ok(Quantity {
            nanos: if negative { -value } else { value },
        })
    }

    /// The value in thousandths, rounded up (`MilliValue()`): CPU in millicores.
    pub fn milli_value(&self) -> i64 {
        ceil_div(self.nanos, 1_000_000)
    }

    /// The value in whole units, rounded up (`Value()`): memory in bytes.
    pub fn value(&self) -> i64 {
        ceil_div(self.nanos, NANO)
    }

    /// True when the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }
}

fn ceil_div(n: i128, d: i128) -> i64 {
    let q = if n >= 0 { (n + d - 1) / d } else { n / d };
    i64::try_from(q).unwrap_or(if q > 0 { i64::MAX } else { i64::MIN })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_suffix_form_exactly() {
        let table: &[(&str, i64, i64)] = &[
            // text, milli, value
            ("1", 1000, 1),
            ("100m", 100, 1),
            ("0.5", 500, 1),
            ("1.5", 1500, 2),
            ("250m", 250, 1),
            ("0.1m", 1, 1),
            ("128Mi", 128 * 1024 * 1024 * 1000, 128 * 1024 * 1024),
            ("1Gi", (1 << 30) * 1000, 1 << 30),
            ("1.5Gi", 1_610_612_736_000, 1_610_612_736),
            ("1k", 1_000_000, 1000),
            ("2e3", 2_000_000, 2000),
            ("1E2", 100_000, 100),
            ("500n", 1, 1),
            ("0", 0, 0),
            ("+4", 4000, 4),
            ("-1", -1000, -1),
        ];
        for (text, milli, value) in table {
            let q = Quantity::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(q.milli_value(), *milli, "{text} milli");
            assert_eq!(q.value(), *value, "{text} value");
        }
    }

    #[test]
    fn refuses_malformed_quantities() {
        for text in [
            "",
            "abc",
            "1x",
            "1.2.3",
            "Mi",
            ".",
            "1e999",
            "99999999999999999999999999Ei",
            "--1",
            "1 Gi",
        ] {
            assert!(Quantity::parse(text).is_err(), "{text:?} should be refused");
        }
    }
}
