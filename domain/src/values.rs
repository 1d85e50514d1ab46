//! Validated value types shared by the aggregates. Parsing happens at the edge (web, CLI,
//! import); a value of these types is valid by construction.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// The longest name we accept for a company (characters, after trimming).
pub const MAX_NAME_CHARS: usize = 200;

/// A company's display name: trimmed, 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CompanyName(String);

impl CompanyName {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let name = input.trim();
        if name.is_empty() {
            return Err(ValidationError::new("name", "must not be empty"));
        }
        let chars = name.chars().count();
        if chars > MAX_NAME_CHARS {
            return Err(ValidationError::new(
                "name",
                format!("must be at most {MAX_NAME_CHARS} characters (got {chars})"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "name",
                "must not contain control characters (tabs, line breaks, ...)",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CompanyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The largest amount we accept in a money field: well past any real contract rate, and small
/// enough that sums of many of them stay exact in `numeric(14,2)`.
/// 999,999,999.99: the 96-bit mantissa 99,999,999,999 split into its low and middle words.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(1_215_752_191, 23, 0, false, 2);

/// A non-negative amount of money with at most two decimal places (the minor unit of the
/// tenant's currency), held normalised to exactly two places: `"500"` becomes `500.00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Amount(#[serde(with = "rust_decimal::serde::str")] Decimal);

impl Amount {
    pub const ZERO: Amount = Amount(Decimal::from_parts(0, 0, 0, false, 2));

    /// Parses a decimal string such as `"500.00"`; `field` names the input in the error.
    pub fn parse(field: &'static str, input: &str) -> Result<Self, ValidationError> {
        let text = input.trim();
        if text.is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        let unsigned = text.strip_prefix('-').unwrap_or(text);
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        let well_formed = unsigned
            .split_once('.')
            .map_or(digits(unsigned), |(i, f)| digits(i) && digits(f));
        let value = if well_formed {
            Decimal::from_str(text).ok()
        } else {
            None
        };
        let Some(value) = value else {
            return Err(ValidationError::new(
                field,
                format!("must be a decimal amount such as \"500.00\" (got {text:?})"),
            ));
        };
        Self::try_from_decimal(field, value)
    }

    /// Checks sign, precision and range of an already numeric value.
    pub fn try_from_decimal(field: &'static str, value: Decimal) -> Result<Self, ValidationError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(ValidationError::new(field, "must not be negative"));
        }
        let value = value.normalize();
        if value.scale() > 2 {
            return Err(ValidationError::new(
                field,
                "must have at most 2 decimal places",
            ));
        }
        if value > MAX_AMOUNT {
            return Err(ValidationError::new(
                field,
                format!("must be at most {MAX_AMOUNT}"),
            ));
        }
        let mut value = value.abs();
        value.rescale(2);
        Ok(Self(value))
    }

    pub fn value(&self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(CompanyName::parse("  Acme  ").unwrap().as_str(), "Acme");
        assert_eq!(CompanyName::parse("   ").unwrap_err().field, "name");
        assert!(CompanyName::parse(&"x".repeat(200)).is_ok());
        let long = CompanyName::parse(&"x".repeat(201)).unwrap_err();
        assert!(long.message.contains("at most 200"), "{long}");
        assert!(CompanyName::parse("a\nb").is_err());
        // Multi-byte characters count as one each.
        assert!(CompanyName::parse(&"é".repeat(200)).is_ok());
    }

    #[test]
    fn amounts_are_normalised_to_two_places() {
        assert_eq!(Amount::parse("r", "500").unwrap().to_string(), "500.00");
        assert_eq!(Amount::parse("r", "500.5").unwrap().to_string(), "500.50");
        assert_eq!(Amount::parse("r", "0").unwrap().to_string(), "0.00");
        assert_eq!(Amount::parse("r", "-0").unwrap().to_string(), "0.00");
        assert_eq!(Amount::parse("r", "12.300").unwrap().to_string(), "12.30");
        assert_eq!(
            Amount::parse("r", "999999999.99").unwrap().to_string(),
            "999999999.99"
        );
    }

    #[test]
    fn max_amount_is_what_it_says() {
        assert_eq!(MAX_AMOUNT.to_string(), "999999999.99");
    }

    #[test]
    fn bad_amounts_say_what_is_wrong() {
        let msg = |s: &str| Amount::parse("monthly_rate", s).unwrap_err().message;
        assert!(msg("-1").contains("negative"));
        assert!(msg("1.234").contains("2 decimal places"));
        assert!(msg("abc").contains("decimal amount"));
        assert!(msg("1e5").contains("decimal amount"));
        assert!(msg(".5").contains("decimal amount"));
        assert!(msg("5.").contains("decimal amount"));
        assert!(msg("").contains("empty"));
        assert!(msg("1000000000.00").contains("at most"));
        assert!(msg("99999999999999999999999999999999").contains("decimal amount"));
    }
}
