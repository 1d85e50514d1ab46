//! What a company's monthly contract covers, and how a stretch of work is charged (issue 5).
//!
//! A time entry is `contract` (covered by the monthly fee) or `billable` (invoiced as ad-hoc
//! work). The default comes from the company's coverage: work of a covered type is contract
//! work while the month's included hours last; what goes past them is billable — one entry
//! that crosses the limit becomes two. After-hours work is billable at the after-hours rate
//! unless the contract covers after-hours work. People may override the default per entry.
//!
//! The hourly rate of billable work is the company's own rate when it has one, else the work
//! type's rate, else the tenant's default; after hours, the company's after-hours rate
//! replaces it when set.

use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use crate::values::Amount;
use crate::workorder::Billing;
use crate::ValidationError;

/// A company's contract coverage. The default (nothing covered) makes all work billable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Work types the monthly fee covers (`repair`, `network`, ...).
    #[serde(default)]
    pub covered_work_types: Vec<String>,
    /// Minutes of covered work included per calendar month (tenant's time zone);
    /// `None`: unlimited.
    #[serde(default)]
    pub included_minutes: Option<u32>,
    /// Whether covered work done outside business hours is covered too.
    #[serde(default)]
    pub covers_after_hours: bool,
    /// The company's hourly rate for billable work, replacing the work type's and the
    /// tenant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly_rate: Option<Amount>,
    /// The hourly rate of billable work outside business hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_hours_rate: Option<Amount>,
}

/// The most included hours a month may have (the month's every hour).
pub const MAX_INCLUDED_MINUTES: u32 = 31 * 24 * 60;

impl Coverage {
    /// Checks the covered types against the tenant's `work_types`; `included_hours` is a
    /// decimal number of hours (empty: unlimited). All problems at once.
    pub fn parse(
        covered_work_types: &[String],
        included_hours: &str,
        covers_after_hours: bool,
        hourly_rate: &str,
        after_hours_rate: &str,
        work_types: &[String],
    ) -> Result<Self, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let mut covered = Vec::new();
        for raw in covered_work_types {
            let name = raw.trim().to_lowercase();
            if !work_types.contains(&name) {
                errors.push(ValidationError::new(
                    "covered_work_types",
                    format!(
                        "{name:?} is not a work type; the work types are {}",
                        work_types.join(", ")
                    ),
                ));
            } else if !covered.contains(&name) {
                covered.push(name);
            }
        }
        covered.sort();
        let included_minutes = match included_hours.trim() {
            "" => None,
            text => match Amount::parse("included_hours", text) {
                Ok(hours) => {
                    let minutes = hours.value() * rust_decimal::Decimal::from(60);
                    let whole = minutes.fract().is_zero() && minutes <= MAX_INCLUDED_MINUTES.into();
                    if let Some(m) = whole.then(|| minutes.to_u32()).flatten() {
                        Some(m)
                    } else {
                        errors.push(ValidationError::new(
                            "included_hours",
                            "must be whole minutes (such as 10 or 7.5) and at most 744 hours",
                        ));
                        None
                    }
                }
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
        };
        let rate = |field: &'static str, text: &str, errors: &mut Vec<ValidationError>| match text
            .trim()
        {
            "" => None,
            text => Amount::parse(field, text).map_err(|e| errors.push(e)).ok(),
        };
        let hourly_rate = rate("hourly_rate", hourly_rate, &mut errors);
        let after_hours_rate = rate("after_hours_rate", after_hours_rate, &mut errors);
        if errors.is_empty() {
            Ok(Self {
                covered_work_types: covered,
                included_minutes,
                covers_after_hours,
                hourly_rate,
                after_hours_rate,
            })
        } else {
            Err(errors)
        }
    }

    /// Included hours as people write them (`7.5`), or empty for unlimited.
    pub fn included_hours(&self) -> String {
        self.included_minutes.map_or_else(String::new, |m| {
            (rust_decimal::Decimal::from(m) / rust_decimal::Decimal::from(60))
                .normalize()
                .to_string()
        })
    }

    pub fn covers(&self, work_type: &str) -> bool {
        self.covered_work_types.iter().any(|t| t == work_type)
    }
}

/// A tenant's work type and its own hourly rate, if it has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkType {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly_rate: Option<Amount>,
}

/// The work types a tenant has until it defines its own.
pub const DEFAULT_WORK_TYPES: [&str; 6] = [
    "repair",
    "install",
    "maintenance",
    "network",
    "phone service",
    "consulting",
];

/// A work type's name: lower case, 1 to 40 letters, digits, spaces or `-`.
pub fn parse_work_type_name(text: &str) -> Result<String, ValidationError> {
    let name = text.trim().to_lowercase();
    if (1..=40).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || c == '-')
    {
        Ok(name)
    } else {
        Err(ValidationError::new(
            "work_types",
            format!(
                "{:?}: a work type is 1 to 40 letters, digits, spaces or dashes",
                text.trim()
            ),
        ))
    }
}

/// One part of a decided entry: how many minutes, charged how, at which hourly rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub minutes: u32,
    pub billing: Billing,
    pub rate: Amount,
}

/// What the rate lookup needs from the tenant.
#[derive(Debug, Clone, Copy)]
pub struct Rates<'a> {
    pub work_types: &'a [WorkType],
    pub default_rate: Amount,
}

impl Rates<'_> {
    /// The hourly rate of billable work of `work_type` for a company with `coverage`.
    pub fn hourly(&self, coverage: &Coverage, work_type: &str, after_hours: bool) -> Amount {
        if after_hours {
            if let Some(rate) = coverage.after_hours_rate {
                return rate;
            }
        }
        coverage
            .hourly_rate
            .or_else(|| {
                self.work_types
                    .iter()
                    .find(|t| t.name == work_type)
                    .and_then(|t| t.hourly_rate)
            })
            .unwrap_or(self.default_rate)
    }
}

/// The default charging of `minutes` of `work_type` work, given the contract minutes the
/// company already used in the entry's month. `override_billing` (the person's choice) wins
/// and keeps the entry whole.
pub fn decide(
    coverage: &Coverage,
    rates: Rates<'_>,
    work_type: &str,
    minutes: u32,
    after_hours: bool,
    used_contract_minutes: u32,
    override_billing: Option<Billing>,
) -> Vec<Part> {
    let rate = rates.hourly(coverage, work_type, after_hours);
    let whole = |billing| {
        vec![Part {
            minutes,
            billing,
            rate,
        }]
    };
    if let Some(billing) = override_billing {
        return whole(billing);
    }
    let covered = coverage.covers(work_type) && (!after_hours || coverage.covers_after_hours);
    if !covered {
        return whole(Billing::Billable);
    }
    let Some(included) = coverage.included_minutes else {
        return whole(Billing::Contract);
    };
    let left = included.saturating_sub(used_contract_minutes);
    if left >= minutes {
        whole(Billing::Contract)
    } else if left == 0 {
        whole(Billing::Billable)
    } else {
        vec![
            Part {
                minutes: left,
                billing: Billing::Contract,
                rate,
            },
            Part {
                minutes: minutes - left,
                billing: Billing::Billable,
                rate,
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(s: &str) -> Amount {
        Amount::parse("r", s).unwrap()
    }

    fn types() -> Vec<WorkType> {
        vec![
            WorkType {
                name: "repair".into(),
                hourly_rate: Some(amount("90")),
            },
            WorkType {
                name: "install".into(),
                hourly_rate: None,
            },
        ]
    }

    fn coverage(included: Option<u32>) -> Coverage {
        Coverage {
            covered_work_types: vec!["repair".into()],
            included_minutes: included,
            covers_after_hours: false,
            hourly_rate: None,
            after_hours_rate: Some(amount("150")),
        }
    }

    fn rates(t: &[WorkType]) -> Rates<'_> {
        Rates {
            work_types: t,
            default_rate: amount("100"),
        }
    }

    #[test]
    fn rates_come_from_company_then_work_type_then_tenant() {
        let t = types();
        let mut c = coverage(None);
        assert_eq!(rates(&t).hourly(&c, "repair", false), amount("90"));
        assert_eq!(rates(&t).hourly(&c, "install", false), amount("100"));
        assert_eq!(rates(&t).hourly(&c, "install", true), amount("150"));
        c.hourly_rate = Some(amount("80"));
        assert_eq!(rates(&t).hourly(&c, "repair", false), amount("80"));
        c.after_hours_rate = None;
        assert_eq!(rates(&t).hourly(&c, "repair", true), amount("80"));
    }

    #[test]
    fn covered_work_is_contract_until_the_included_hours_run_out() {
        let t = types();
        let c = coverage(Some(600));
        let parts = |used, minutes| decide(&c, rates(&t), "repair", minutes, false, used, None);
        assert_eq!(parts(0, 60)[0].billing, Billing::Contract);
        assert_eq!(parts(540, 60).len(), 1);
        assert_eq!(parts(540, 60)[0].billing, Billing::Contract);
        // 570 of 600 used: a 90-minute entry is 30 contract + 60 billable.
        let split = parts(570, 90);
        assert_eq!(
            split
                .iter()
                .map(|p| (p.minutes, p.billing))
                .collect::<Vec<_>>(),
            [(30, Billing::Contract), (60, Billing::Billable)]
        );
        assert_eq!(parts(600, 15)[0].billing, Billing::Billable);
        assert_eq!(parts(700, 15)[0].billing, Billing::Billable);
    }

    #[test]
    fn uncovered_types_and_after_hours_are_billable_and_overrides_win() {
        let t = types();
        let mut c = coverage(None);
        let one = |c: &Coverage, ty, after, o| decide(c, rates(&t), ty, 60, after, 0, o);
        assert_eq!(
            one(&c, "install", false, None)[0].billing,
            Billing::Billable
        );
        assert_eq!(one(&c, "repair", false, None)[0].billing, Billing::Contract);
        let after = one(&c, "repair", true, None);
        assert_eq!(
            (after[0].billing, after[0].rate),
            (Billing::Billable, amount("150"))
        );
        c.covers_after_hours = true;
        assert_eq!(one(&c, "repair", true, None)[0].billing, Billing::Contract);
        assert_eq!(
            one(&c, "repair", false, Some(Billing::Billable))[0].billing,
            Billing::Billable
        );
        assert_eq!(
            one(&c, "install", false, Some(Billing::Contract))[0].billing,
            Billing::Contract
        );
        // Nothing covered at all: everything billable.
        let none = Coverage::default();
        assert_eq!(
            one(&none, "repair", false, None)[0].billing,
            Billing::Billable
        );
    }

    #[test]
    fn coverage_input_is_checked_all_at_once() {
        let names: Vec<String> = ["repair", "install"].map(String::from).to_vec();
        let ok = Coverage::parse(&["Repair".into()], "7.5", false, "", "120", &names).unwrap();
        assert_eq!(ok.covered_work_types, ["repair"]);
        assert_eq!(ok.included_minutes, Some(450));
        assert_eq!(ok.included_hours(), "7.5");
        assert_eq!(ok.after_hours_rate, Some(amount("120")));
        assert_eq!(
            Coverage::parse(&[], "10", false, "", "", &names)
                .unwrap()
                .included_minutes,
            Some(600)
        );
        assert_eq!(
            Coverage::parse(&[], "", false, "", "", &names)
                .unwrap()
                .included_minutes,
            None
        );
        let errors =
            Coverage::parse(&["paint".into()], "0.01", false, "-1", "x", &names).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "covered_work_types",
                "included_hours",
                "hourly_rate",
                "after_hours_rate"
            ]
        );
        assert!(Coverage::parse(&[], "745", false, "", "", &names).is_err());
    }
}
