//! Kubernetes resource quantities (`500m`, `2`, `16Gi`, `1e3`, `128974848`, `129M`), parsed
//! exactly.
//!
//! The grammar is the apimachinery one:
//!
//! ```text
//! quantity  = [sign] number [suffix]
//! number    = digits | digits "." [digits] | "." digits
//! suffix    = binarySI | decimalSI | ("e" | "E") [sign] digits
//! binarySI  = Ki | Mi | Gi | Ti | Pi | Ei          (powers of 1024)
//! decimalSI = n | u | m | k | M | G | T | P | E    (powers of 1000; "E" alone is exa)
//! ```
//!
//! Values are held as a count of nano-units in an `i128`, so every quantity Kubernetes
//! accepts up to `8Ei` with 9 decimal places is exact. Digits below a nano-unit round up,
//! as apimachinery does.

use std::fmt;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::{Error, Result};

const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// A parsed quantity: an exact amount in nano-units.
///
/// ```
/// use rlaunch_gpu::QuantityValue;
/// assert_eq!(QuantityValue::parse("16Gi").unwrap().value(), 16 * 1024 * 1024 * 1024);
/// assert_eq!(QuantityValue::parse("129M").unwrap().value(), 129_000_000);
/// assert_eq!(QuantityValue::parse("500m").unwrap().milli_value(), 500);
/// assert!(!QuantityValue::parse("1.5").unwrap().is_integer());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct QuantityValue {
    nanos: i128,
}

impl QuantityValue {
    /// Zero.
    pub const ZERO: Self = Self { nanos: 0 };

    /// A whole number of units.
    pub fn from_units(units: i64) -> Self {
        Self {
            nanos: i128::from(units) * NANOS_PER_UNIT,
        }
    }

    /// Parses a quantity string.
    pub fn parse(text: &str) -> Result<Self> {
        parse(text).map_err(|reason| Error::InvalidQuantity {
            value: text.to_owned(),
            reason,
        })
    }

    /// Parses a k8s-openapi [`Quantity`].
    pub fn from_k8s(quantity: &Quantity) -> Result<Self> {
        Self::parse(&quantity.0)
    }

    /// The amount in nano-units.
    pub fn nanos(self) -> i128 {
        self.nanos
    }

    /// The amount in whole units, rounded up (apimachinery `Value()`).
    pub fn value(self) -> i128 {
        ceil_div(self.nanos, NANOS_PER_UNIT)
    }

    /// The amount in milli-units, rounded up (apimachinery `MilliValue()`).
    pub fn milli_value(self) -> i128 {
        ceil_div(self.nanos, 1_000_000)
    }

    /// Whether the amount is a whole number of units (`2`, `1k`, `2000m`; not `1.5` or `500m`).
    pub fn is_integer(self) -> bool {
        self.nanos % NANOS_PER_UNIT == 0
    }

    /// Whether the amount is below zero.
    pub fn is_negative(self) -> bool {
        self.nanos < 0
    }
}

impl fmt::Display for QuantityValue {
    /// A canonical form that parses back to the same value: an integer, an integer with a
    /// binary suffix when exact (`16Gi`), or milli/nano units.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos % NANOS_PER_UNIT == 0 {
            let units = self.nanos / NANOS_PER_UNIT;
            for (suffix, shift) in [
                ("Ei", 60),
                ("Pi", 50),
                ("Ti", 40),
                ("Gi", 30),
                ("Mi", 20),
                ("Ki", 10),
            ] {
                let size = 1_i128 << shift;
                if units != 0 && units % size == 0 {
                    return write!(f, "{}{suffix}", units / size);
                }
            }
            write!(f, "{units}")
        } else if self.nanos % 1_000_000 == 0 {
            write!(f, "{}m", self.nanos / 1_000_000)
        } else {
            write!(f, "{}n", self.nanos)
        }
    }
}

fn ceil_div(numerator: i128, denominator: i128) -> i128 {
    let quotient = numerator / denominator;
    if numerator % denominator > 0 {
        quotient + 1
    } else {
        quotient
    }
}

fn pow10(exponent: u32) -> Option<i128> {
    10_i128.checked_pow(exponent)
}

type Parsed<T> = std::result::Result<T, &'static str>;

fn parse(text: &str) -> Parsed<QuantityValue> {
    if text.is_empty() {
        return Err("it is empty");
    }
    if text.trim() != text {
        return Err("it has surrounding whitespace");
    }
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, fraction_digits, suffix) = parse_number(unsigned)?;
    let nanos = match binary_shift(suffix) {
        Some(shift) => binary_nanos(mantissa, fraction_digits, shift)?,
        None => decimal_nanos(mantissa, fraction_digits, decimal_exponent(suffix)?)?,
    };
    Ok(QuantityValue {
        nanos: if negative { -nanos } else { nanos },
    })
}

/// The digits (as an integer), how many of them follow the point, and the rest (the suffix).
fn parse_number(text: &str) -> Parsed<(i128, u32, &str)> {
    let mut mantissa: i128 = 0;
    let mut fraction_digits: u32 = 0;
    let mut digit_count = 0;
    let mut seen_point = false;
    let mut index = 0;
    for &byte in text.as_bytes() {
        match byte {
            b'0'..=b'9' => {
                digit_count += 1;
                mantissa = mantissa
                    .checked_mul(10)
                    .and_then(|m| m.checked_add(i128::from(byte - b'0')))
                    .ok_or("it has too many digits")?;
                if seen_point {
                    fraction_digits += 1;
                }
            }
            b'.' if !seen_point => seen_point = true,
            _ => break,
        }
        index += 1;
    }
    if digit_count == 0 {
        return Err("it does not start with a number");
    }
    Ok((mantissa, fraction_digits, &text[index..]))
}

fn binary_shift(suffix: &str) -> Option<u32> {
    Some(match suffix {
        "Ki" => 10,
        "Mi" => 20,
        "Gi" => 30,
        "Ti" => 40,
        "Pi" => 50,
        "Ei" => 60,
        _ => return None,
    })
}

fn decimal_exponent(suffix: &str) -> Parsed<i64> {
    Ok(match suffix {
        "" => 0,
        "n" => -9,
        "u" => -6,
        "m" => -3,
        "k" => 3,
        "M" => 6,
        "G" => 9,
        "T" => 12,
        "P" => 15,
        "E" => 18,
        _ => parse_exponent(suffix)?,
    })
}

/// `mantissa * 2^shift / 10^fraction_digits` units, in nanos, rounded up.
fn binary_nanos(mantissa: i128, fraction_digits: u32, shift: u32) -> Parsed<i128> {
    let scaled = mantissa
        .checked_mul(1_i128 << shift)
        .and_then(|m| m.checked_mul(NANOS_PER_UNIT))
        .ok_or("it is too large")?;
    Ok(ceil_div(
        scaled,
        pow10(fraction_digits).ok_or("it has too many digits")?,
    ))
}

/// `mantissa * 10^(exponent + 9 - fraction_digits)` nanos, rounded up.
fn decimal_nanos(mantissa: i128, fraction_digits: u32, exponent: i64) -> Parsed<i128> {
    let total = exponent + 9 - i64::from(fraction_digits);
    if total >= 0 {
        let power = u32::try_from(total)
            .ok()
            .and_then(pow10)
            .ok_or("it is too large")?;
        mantissa.checked_mul(power).ok_or("it is too large")
    } else {
        let power = u32::try_from(-total)
            .ok()
            .and_then(pow10)
            .ok_or("it has too many digits")?;
        Ok(ceil_div(mantissa, power))
    }
}

fn parse_exponent(suffix: &str) -> Parsed<i64> {
    let rest = suffix
        .strip_prefix('e')
        .or_else(|| suffix.strip_prefix('E'))
        .ok_or(
            "its suffix is not one of n u m k M G T P E Ki Mi Gi Ti Pi Ei or an exponent like e3",
        )?;
    let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 3 {
        return Err("its exponent is not a small integer like e3 or e-3");
    }
    rest.parse::<i64>()
        .map_err(|_| "its exponent is not a small integer like e3 or e-3")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value(text: &str) -> i128 {
        QuantityValue::parse(text).unwrap().value()
    }

    #[test]
    fn decimal_and_binary_suffixes_differ() {
        assert_eq!(value("1k"), 1000);
        assert_eq!(value("1Ki"), 1024);
        assert_eq!(value("129M"), 129_000_000);
        assert_eq!(value("123Mi"), 128_974_848);
        assert_eq!(value("128974848"), 128_974_848);
        assert_eq!(value("16Gi"), 17_179_869_184);
        assert_eq!(value("1G"), 1_000_000_000);
        assert_eq!(value("1E"), 1_000_000_000_000_000_000);
        assert_eq!(value("8Ei"), 8 << 60);
    }

    #[test]
    fn exponents_and_fractions_are_exact() {
        assert_eq!(value("1e3"), 1000);
        assert_eq!(value("1E3"), 1000);
        assert_eq!(value("12e-1"), 2); // 1.2 rounds up
        assert_eq!(
            QuantityValue::parse("1.5Gi").unwrap().value(),
            1_610_612_736
        );
        assert_eq!(QuantityValue::parse("0.5").unwrap().milli_value(), 500);
        assert_eq!(QuantityValue::parse(".5").unwrap().milli_value(), 500);
        assert_eq!(QuantityValue::parse("500m").unwrap().milli_value(), 500);
        assert_eq!(QuantityValue::parse("500m").unwrap().value(), 1);
        assert_eq!(QuantityValue::parse("1n").unwrap().nanos(), 1);
        assert_eq!(
            QuantityValue::parse("0.1n").unwrap().nanos(),
            1,
            "sub-nano rounds up"
        );
        assert_eq!(QuantityValue::parse("-2").unwrap().value(), -2);
    }

    #[test]
    fn integer_check_matches_apimachinery() {
        for (text, integer) in [
            ("2", true),
            ("1k", true),
            ("2000m", true),
            ("1.5", false),
            ("500m", false),
            ("1e-3", false),
        ] {
            assert_eq!(
                QuantityValue::parse(text).unwrap().is_integer(),
                integer,
                "{text}"
            );
        }
    }

    #[test]
    fn malformed_quantities_are_rejected_with_a_reason() {
        for text in [
            "",
            "Gi",
            "1x",
            "1GB",
            "1.2.3",
            " 1",
            "1e",
            "1e1000",
            "1ki",
            "--1",
            "99999999999999999999999999999999999999999",
        ] {
            let error = QuantityValue::parse(text).unwrap_err();
            assert!(
                error.to_string().contains("invalid quantity"),
                "{text}: {error}"
            );
        }
    }

    proptest! {
        #[test]
        fn display_parses_back(nanos in -(1_i128 << 80)..(1_i128 << 80)) {
            let quantity = QuantityValue { nanos };
            prop_assert_eq!(QuantityValue::parse(&quantity.to_string()).unwrap(), quantity);
        }

        #[test]
        fn binary_suffix_is_a_power_of_1024(units in 0_i64..1_000_000, index in 0_usize..4) {
            let suffix = ["Ki", "Mi", "Gi", "Ti"][index];
            let parsed = QuantityValue::parse(&format!("{units}{suffix}")).unwrap();
            prop_assert_eq!(parsed.value(), i128::from(units) << (10 * (index + 1)));
        }
    }
}
