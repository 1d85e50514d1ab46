//! Value types of identity: email addresses, roles, currencies and time zones.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// An email address: trimmed, lower-cased, one `@` with something on both sides and a dot in
/// the domain, at most 254 characters, no spaces or control characters. Deliberately not a
/// full RFC 5322 parser: the invitation mail proves the address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let email = input.trim().to_lowercase();
        let invalid = |why: &str| Err(ValidationError::new("email", why.to_owned()));
        if email.is_empty() {
            return invalid("must not be empty");
        }
        if email.chars().count() > 254 {
            return invalid("must be at most 254 characters");
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid("must not contain spaces");
        }
        match email.split_once('@') {
            Some((local, domain))
                if !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..") =>
            {
                Ok(Self(email))
            }
            _ => invalid("must be an address such as name@example.com"),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a member of a tenant may do (the matrix is in docs/roles.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Technician,
    Accountant,
    /// A customer's person, using the portal; tied to one customer company.
    Client,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Owner,
        Role::Admin,
        Role::Technician,
        Role::Accountant,
        Role::Client,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Technician => "technician",
            Role::Accountant => "accountant",
            Role::Client => "client",
        }
    }

    pub fn is_staff(self) -> bool {
        self != Role::Client
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| {
                ValidationError::new(
                    "role",
                    "must be one of owner, admin, technician, accountant, client",
                )
            })
    }
}

/// ISO 4217 codes of currencies in use, with their minor units (decimal places).
const CURRENCIES: &[(&str, u32)] = &[
    ("AED", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EGP", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("GHS", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("MAD", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("NGN", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PEN", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("SAR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TND", 3),
    ("TRY", 2),
    ("TWD", 2),
    ("UAH", 2),
    ("USD", 2),
    ("UYU", 2),
    ("VND", 0),
    ("ZAR", 2),
];

/// A tenant's currency: an ISO 4217 code we know the minor unit of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(usize);

impl Currency {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let code = input.trim().to_uppercase();
        CURRENCIES
            .iter()
            .position(|(c, _)| *c == code)
            .map(Currency)
            .ok_or_else(|| {
                ValidationError::new(
                    "currency",
                    format!(
                        "{:?} is not an ISO 4217 currency code we support (e.g. USD, EUR, GBP)",
                        input.trim()
                    ),
                )
            })
    }

    pub fn code(&self) -> &'static str {
        CURRENCIES[self.0].0
    }

    /// Every supported code, for pickers.
    pub fn codes() -> impl Iterator<Item = &'static str> {
        CURRENCIES.iter().map(|(code, _)| *code)
    }

    /// Decimal places of the minor unit (2 for USD, 0 for JPY, 3 for KWD).
    pub fn minor_unit(&self) -> u32 {
        CURRENCIES[self.0].1
    }
}

impl TryFrom<String> for Currency {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Currency::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.code().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An IANA time zone name (`Europe/Paris`, `America/New_York`, `UTC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZone(chrono_tz::Tz);

impl TimeZone {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        input.trim().parse::<chrono_tz::Tz>().map(TimeZone).map_err(|_| {
            ValidationError::new(
                "time_zone",
                format!("{:?} is not an IANA time zone name such as Europe/Paris or America/New_York", input.trim()),
            )
        })
    }

    pub fn tz(&self) -> chrono_tz::Tz {
        self.0
    }

    /// Every IANA name, for pickers.
    pub fn names() -> impl Iterator<Item = &'static str> {
        chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
    }
}

impl TryFrom<String> for TimeZone {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TimeZone::parse(&s)
    }
}

impl From<TimeZone> for String {
    fn from(t: TimeZone) -> Self {
        t.0.name().to_owned()
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "a@b@c.com",
            "ann@.com",
            "ann@example.com.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn roles_parse_from_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
        assert!(!Role::Client.is_staff());
    }

    #[test]
    fn currencies_carry_their_minor_unit() {
        assert_eq!(Currency::parse("usd").unwrap().minor_unit(), 2);
        assert_eq!(Currency::parse("JPY").unwrap().minor_unit(), 0);
        assert_eq!(Currency::parse("KWD").unwrap().minor_unit(), 3);
        assert!(Currency::parse("XXX")
            .unwrap_err()
            .message
            .contains("ISO 4217"));
        let json = serde_json::to_string(&Currency::parse("EUR").unwrap()).unwrap();
        assert_eq!(json, "\"EUR\"");
        assert!(serde_json::from_str::<Currency>("\"NOPE\"").is_err());
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(
            TimeZone::parse("Europe/Paris").unwrap().to_string(),
            "Europe/Paris"
        );
        assert!(TimeZone::parse("Mars/Olympus").is_err());
        let json = serde_json::to_string(&TimeZone::parse("UTC").unwrap()).unwrap();
        assert_eq!(json, "\"UTC\"");
    }
}
