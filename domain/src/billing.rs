//! Billing rules (issue 7), pure: contract terms, billing dates and periods, proration, invoice
//! line arithmetic and the allocation of payments to invoices.
//!
//! **Billing dates.** A contract bills each month in advance on its billing day (1–31). In a
//! month shorter than the day, the bill goes out on the month's last day, and the next month is
//! billed on the day again: day 31 gives Jan 31, Feb 28 (29), Mar 31, Apr 30 — it never drifts.
//!
//! **Periods.** The period billed on a billing date runs from that date to the day before the
//! next billing date. A contract that starts between billing dates gets a first, partial period
//! from its start to the day before the next billing date, billed on its start date; one that
//! ends within a period gets a last, partial period ending on its end date.
//!
//! **Proration.** A partial period is billed `monthly rate × days of service / days of the full
//! period it lies in`, rounded half-up to the cent; without proration, partial periods are
//! billed in full.
//!
//! **Allocation.** A payment pays the open invoices with the oldest due date first (then the
//! oldest issue date, then the lowest number); whatever is left stays as unapplied credit.

use chrono::{Datelike, Duration, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ValidationError;

/// Money rounded to the cent, half away from zero.
pub fn cents(value: Decimal) -> Decimal {
    let mut v = value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    v.rescale(2);
    v
}

/// The last day of a month.
pub fn last_day(year: i32, month: u32) -> NaiveDate {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1).expect("a valid month") - Duration::days(1)
}

/// The billing date of `billing_day` in a month: the day, or the month's last day when the
/// month is shorter.
pub fn billing_date(year: i32, month: u32, billing_day: u32) -> NaiveDate {
    let last = last_day(year, month);
    NaiveDate::from_ymd_opt(year, month, billing_day.min(last.day())).unwrap_or(last)
}

fn next_month(date: NaiveDate) -> (i32, u32) {
    if date.month() == 12 {
        (date.year() + 1, 1)
    } else {
        (date.year(), date.month() + 1)
    }
}

fn previous_month(date: NaiveDate) -> (i32, u32) {
    if date.month() == 1 {
        (date.year() - 1, 12)
    } else {
        (date.year(), date.month() - 1)
    }
}

/// The billing date on or before `date`.
pub fn billing_date_on_or_before(date: NaiveDate, billing_day: u32) -> NaiveDate {
    let this = billing_date(date.year(), date.month(), billing_day);
    if this <= date {
        this
    } else {
        let (y, m) = previous_month(date);
        billing_date(y, m, billing_day)
    }
}

/// The first billing date after `date`.
pub fn billing_date_after(date: NaiveDate, billing_day: u32) -> NaiveDate {
    let this = billing_date(date.year(), date.month(), billing_day);
    if this > date {
        this
    } else {
        let (y, m) = next_month(date);
        billing_date(y, m, billing_day)
    }
}

/// A company's contract: what it pays each month and how it is billed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractTerms {
    #[serde(with = "rust_decimal::serde::str")]
    pub monthly_rate: Decimal,
    /// 1–31.
    pub billing_day: u32,
    pub start_date: NaiveDate,
    pub end_date: Option<NaiveDate>,
    /// Days from the invoice date to its due date (0–365).
    pub payment_terms_days: u32,
    /// Partial first and last periods billed by days of service (else in full).
    pub prorate: bool,
}

impl ContractTerms {
    /// Checks the terms; every problem at once.
    pub fn check(&self) -> Result<(), Vec<ValidationError>> {
        let mut errors = Vec::new();
        if !(1..=31).contains(&self.billing_day) {
            errors.push(ValidationError::new("billing_day", "must be from 1 to 31"));
        }
        if self.payment_terms_days > 365 {
            errors.push(ValidationError::new(
                "payment_terms_days",
                "must be from 0 to 365",
            ));
        }
        if self.monthly_rate.is_sign_negative() || self.monthly_rate.scale() > 2 {
            errors.push(ValidationError::new(
                "monthly_rate",
                "must be a non-negative amount with at most 2 decimals",
            ));
        }
        if let Some(end) = self.end_date {
            if end < self.start_date {
                errors.push(ValidationError::new(
                    "end_date",
                    "must not be before the start date",
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Every period whose billing date is on or before `as_of`, oldest first.
    pub fn periods_until(&self, as_of: NaiveDate) -> Vec<Period> {
        let mut periods = Vec::new();
        let mut start = self.start_date;
        while start <= as_of && self.end_date.is_none_or(|end| start <= end) {
            let full_start = billing_date_on_or_before(start, self.billing_day);
            let next = billing_date_after(start, self.billing_day);
            let full_end = next - Duration::days(1);
            let end = match self.end_date {
                Some(e) if e < full_end => e,
                _ => full_end,
            };
            let service_days = (end - start).num_days() + 1;
            let full_days = (full_end - full_start).num_days() + 1;
            let amount = if self.prorate && service_days < full_days {
                cents(self.monthly_rate * Decimal::from(service_days) / Decimal::from(full_days))
            } else {
                cents(self.monthly_rate)
            };
            periods.push(Period {
                start,
                end,
                billing_date: start,
                amount,
                full: service_days == full_days,
            });
            start = next;
        }
        periods
    }
}

/// One billed period of a contract. Its `start` identifies it (`key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub start: NaiveDate,
    /// Inclusive.
    pub end: NaiveDate,
    /// The invoice's date: the period's start (billed in advance).
    pub billing_date: NaiveDate,
    /// The contract's charge for it (prorated when partial).
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub full: bool,
}

impl Period {
    /// The period's key in a company's ledger (deterministic ids derive from it).
    pub fn key(&self) -> String {
        format!("contract/{}", self.start)
    }
}

/// How often a catalogue service is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServicePeriod {
    Monthly,
    Quarterly,
    Yearly,
}

impl ServicePeriod {
    pub const ALL: [ServicePeriod; 3] = [Self::Monthly, Self::Quarterly, Self::Yearly];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Monthly => "monthly",
            Self::Quarterly => "quarterly",
            Self::Yearly => "yearly",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text.trim())
    }

    /// Billing dates between two bills of this period.
    pub fn months(self) -> u32 {
        match self {
            Self::Monthly => 1,
            Self::Quarterly => 3,
            Self::Yearly => 12,
        }
    }
}

/// A service of the tenant's catalogue (a resold product: backup, licences, phone lines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogueService {
    pub name: String,
    /// premium, standard, free… (free text).
    pub tier: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub price: Decimal,
    pub period: ServicePeriod,
    pub retired: bool,
}

impl CatalogueService {
    pub fn check(&self) -> Result<(), Vec<ValidationError>> {
        let mut errors = Vec::new();
        if self.name.trim().is_empty() || self.name.chars().count() > 200 {
            errors.push(ValidationError::new("name", "must be 1 to 200 characters"));
        }
        if self.tier.chars().count() > 50 {
            errors.push(ValidationError::new(
                "tier",
                "must be at most 50 characters",
            ));
        }
        if self.price.is_sign_negative() || self.price.normalize().scale() > 2 {
            errors.push(ValidationError::new(
                "price",
                "must be 0 or more with at most 2 decimals",
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// A company's subscription to a catalogue service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub service_id: Uuid,
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
    pub start_date: NaiveDate,
    pub end_date: Option<NaiveDate>,
    /// A price for this company instead of the catalogue's.
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub price: Option<Decimal>,
}

impl Subscription {
    pub fn check(&self) -> Result<(), Vec<ValidationError>> {
        let mut errors = Vec::new();
        if self.quantity <= Decimal::ZERO || self.quantity.normalize().scale() > 4 {
            errors.push(ValidationError::new(
                "quantity",
                "must be more than 0 with at most 4 decimals",
            ));
        }
        if self.end_date.is_some_and(|end| end < self.start_date) {
            errors.push(ValidationError::new(
                "end_date",
                "must not be before the start date",
            ));
        }
        if let Some(price) = self.price {
            if price.is_sign_negative() || price.normalize().scale() > 2 {
                errors.push(ValidationError::new(
                    "price",
                    "must be 0 or more with at most 2 decimals",
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Whether the subscription is billed on the period starting `period_start`: it is active
    /// that day, and (quarterly, yearly) a whole number of periods has passed since the first
    /// billing date on or after its start.
    pub fn billed_on(
        &self,
        period_start: NaiveDate,
        months: u32,
        first_billing: NaiveDate,
    ) -> bool {
        if period_start < self.start_date || self.end_date.is_some_and(|end| period_start > end) {
            return false;
        }
        let elapsed = (period_start.year() - first_billing.year()) * 12
            + period_start.month() as i32
            - first_billing.month() as i32;
        elapsed >= 0 && (elapsed as u32).is_multiple_of(months.max(1))
    }
}

/// A line of an invoice as given: quantity × unit price, optional tax rate (percent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineInput {
    pub description: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub unit_price: Decimal,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub tax_rate: Option<Decimal>,
}

/// A line with its amounts: `net` = quantity × unit price rounded to the cent, `tax` = net ×
/// rate / 100 rounded to the cent (zero for tax-exempt companies); totals are sums of lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub description: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub unit_price: Decimal,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub tax_rate: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::str")]
    pub net: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub tax: Decimal,
    /// What the line bills: a contract period, a time entry… (for the PDF and exactly-once).
    #[serde(default)]
    pub source: Option<LineSource>,
}

impl Line {
    /// Whether the line bills a work order's time or materials (billed once through the
    /// ledger, returned by a void), not a period, a service, a fee or typed text.
    pub fn is_work(&self) -> bool {
        matches!(
            self.source,
            Some(LineSource::TimeEntry { .. } | LineSource::Material { .. })
        )
    }
}

/// What an invoice line bills.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LineSource {
    Contract {
        period_start: NaiveDate,
        period_end: NaiveDate,
    },
    TimeEntry {
        work_order_id: Uuid,
        entry_id: Uuid,
    },
    /// Parts or consumables used on a work order.
    Material {
        work_order_id: Uuid,
        material_id: Uuid,
    },
    LateFee {
        invoice_id: Uuid,
        rule: String,
    },
}

/// The most lines one invoice may have.
pub const MAX_LINES: usize = 500;

/// Checks and prices lines; every problem at once, named `lines[i].field`.
pub fn price_lines(
    inputs: &[LineInput],
    tax_exempt: bool,
) -> Result<Vec<Line>, Vec<ValidationError>> {
    let mut errors = Vec::new();
    if inputs.is_empty() {
        errors.push(ValidationError::new(
            "lines",
            "an invoice needs at least one line",
        ));
    }
    if inputs.len() > MAX_LINES {
        errors.push(ValidationError::new(
            "lines",
            format!("an invoice has at most {MAX_LINES} lines"),
        ));
    }
    let mut lines = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let mut bad = |field: &str, message: &str| {
            errors.push(ValidationError::new(
                "lines",
                format!("line {}: {field} {message}", i + 1),
            ))
        };
        let description = input.description.trim();
        if description.is_empty() || description.chars().count() > 500 {
            bad("description", "must be 1 to 500 characters");
        }
        if input.quantity.is_sign_negative()
            || input.quantity.is_zero()
            || input.quantity.scale() > 4
        {
            bad("quantity", "must be more than 0, with at most 4 decimals");
        }
        if input.unit_price.is_sign_negative() || input.unit_price.scale() > 4 {
            bad("unit_price", "must be 0 or more, with at most 4 decimals");
        }
        if let Some(rate) = input.tax_rate {
            if rate.is_sign_negative() || rate > Decimal::from(100) || rate.scale() > 3 {
                bad("tax_rate", "must be a percentage from 0 to 100");
            }
        }
        let net = cents(input.quantity * input.unit_price);
        let tax = match input.tax_rate {
            Some(rate) if !tax_exempt => cents(net * rate / Decimal::from(100)),
            _ => cents(Decimal::ZERO),
        };
        lines.push(Line {
            description: description.to_owned(),
            quantity: input.quantity.normalize(),
            unit_price: input.unit_price,
            tax_rate: if tax_exempt { None } else { input.tax_rate },
            net,
            tax,
            source: None,
        });
    }
    if errors.is_empty() {
        Ok(lines)
    } else {
        Err(errors)
    }
}

/// An invoice's totals.
pub fn totals(lines: &[Line]) -> (Decimal, Decimal, Decimal) {
    let net: Decimal = lines.iter().map(|l| l.net).sum();
    let tax: Decimal = lines.iter().map(|l| l.tax).sum();
    (cents(net), cents(tax), cents(net + tax))
}

/// An open invoice as allocation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub invoice_id: Uuid,
    pub due_date: NaiveDate,
    pub issue_date: NaiveDate,
    pub number: u64,
    pub balance: Decimal,
}

/// Spreads `amount` over `open` invoices, oldest due date first, never more than an
/// invoice's balance; returns the allocations (invoice, amount) and what is left.
pub fn allocate(mut open: Vec<Open>, amount: Decimal) -> (Vec<(Uuid, Decimal)>, Decimal) {
    open.sort_by(|a, b| {
        (a.due_date, a.issue_date, a.number, a.invoice_id).cmp(&(
            b.due_date,
            b.issue_date,
            b.number,
            b.invoice_id,
        ))
    });
    let mut left = amount;
    let mut out = Vec::new();
    for invoice in open {
        if left <= Decimal::ZERO {
            break;
        }
        if invoice.balance <= Decimal::ZERO {
            continue;
        }
        let take = invoice.balance.min(left);
        out.push((invoice.invoice_id, take));
        left -= take;
    }
    (out, left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::from_str(s).unwrap()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn only_time_and_materials_are_work() {
        let line = |source| Line {
            description: "x".into(),
            quantity: Decimal::ONE,
            unit_price: Decimal::ONE,
            tax_rate: None,
            net: Decimal::ONE,
            tax: Decimal::ZERO,
            source,
        };
        let id = Uuid::nil();
        assert!(line(Some(LineSource::TimeEntry {
            work_order_id: id,
            entry_id: id
        }))
        .is_work());
        assert!(line(Some(LineSource::Material {
            work_order_id: id,
            material_id: id
        }))
        .is_work());
        assert!(!line(Some(LineSource::Contract {
            period_start: d("2026-01-01"),
            period_end: d("2026-01-31")
        }))
        .is_work());
        assert!(!line(Some(LineSource::LateFee {
            invoice_id: id,
            rule: "r".into()
        }))
        .is_work());
        assert!(!line(None).is_work());
    }

    fn terms(day: u32, start: &str, end: Option<&str>, prorate: bool) -> ContractTerms {
        ContractTerms {
            monthly_rate: dec("300.00"),
            billing_day: day,
            start_date: d(start),
            end_date: end.map(d),
            payment_terms_days: 14,
            prorate,
        }
    }

    #[test]
    fn billing_day_31_never_drifts_through_the_year() {
        let c = terms(31, "2026-01-31", None, true);
        let dates: Vec<String> = c
            .periods_until(d("2026-12-31"))
            .iter()
            .map(|p| p.billing_date.to_string())
            .collect();
        assert_eq!(
            dates,
            [
                "2026-01-31",
                "2026-02-28",
                "2026-03-31",
                "2026-04-30",
                "2026-05-31",
                "2026-06-30",
                "2026-07-31",
                "2026-08-31",
                "2026-09-30",
                "2026-10-31",
                "2026-11-30",
                "2026-12-31"
            ]
        );
        assert!(c
            .periods_until(d("2026-12-31"))
            .iter()
            .all(|p| p.full && p.amount == dec("300.00")));
        // A leap year's February.
        let leap = terms(31, "2028-01-31", None, true);
        assert_eq!(
            leap.periods_until(d("2028-03-01"))[1].billing_date,
            d("2028-02-29")
        );
        // Periods cover every day once: each ends the day before the next starts.
        let periods = c.periods_until(d("2026-12-31"));
        for pair in periods.windows(2) {
            assert_eq!(pair[0].end + Duration::days(1), pair[1].start);
        }
    }

    #[test]
    fn partial_first_and_last_periods_are_prorated_by_days() {
        // Starts on the 16th of a 30-day period (Nov 1 – Nov 30): 15 days of 30.
        let c = terms(1, "2026-11-16", Some("2027-01-10"), true);
        let periods = c.periods_until(d("2027-12-31"));
        assert_eq!(periods.len(), 3);
        assert_eq!(
            (periods[0].start, periods[0].end),
            (d("2026-11-16"), d("2026-11-30"))
        );
        assert_eq!(periods[0].amount, dec("150.00"));
        assert_eq!(periods[0].billing_date, d("2026-11-16"));
        assert_eq!(periods[1].amount, dec("300.00"));
        // January: 10 of 31 days = 96.774… → 96.77.
        assert_eq!(
            (periods[2].start, periods[2].end),
            (d("2027-01-01"), d("2027-01-10"))
        );
        assert_eq!(periods[2].amount, dec("96.77"));
        // Without proration the partial periods are billed in full.
        let full = terms(1, "2026-11-16", Some("2027-01-10"), false);
        assert!(full
            .periods_until(d("2027-12-31"))
            .iter()
            .all(|p| p.amount == dec("300.00")));
    }

    #[test]
    fn nothing_is_due_before_the_start_or_after_the_end() {
        let c = terms(15, "2026-11-15", Some("2026-11-20"), true);
        assert!(c.periods_until(d("2026-11-14")).is_empty());
        assert_eq!(c.periods_until(d("2027-05-01")).len(), 1);
    }

    #[test]
    fn lines_round_per_line_and_totals_are_sums() {
        let lines = price_lines(
            &[
                LineInput {
                    description: "Support".into(),
                    quantity: dec("1.5"),
                    unit_price: dec("85.333"),
                    tax_rate: Some(dec("20")),
                },
                LineInput {
                    description: "Cable".into(),
                    quantity: dec("3"),
                    unit_price: dec("0.335"),
                    tax_rate: None,
                },
            ],
            false,
        )
        .unwrap();
        assert_eq!(lines[0].net, dec("128.00")); // 127.9995 → 128.00
        assert_eq!(lines[0].tax, dec("25.60"));
        assert_eq!(lines[1].net, dec("1.01")); // 1.005 → 1.01 (half away from zero)
        assert_eq!(totals(&lines), (dec("129.01"), dec("25.60"), dec("154.61")));
        let exempt = price_lines(
            &[LineInput {
                description: "Support".into(),
                quantity: dec("1"),
                unit_price: dec("100"),
                tax_rate: Some(dec("20")),
            }],
            true,
        )
        .unwrap();
        assert_eq!(exempt[0].tax, dec("0.00"));
        let errors = price_lines(
            &[LineInput {
                description: " ".into(),
                quantity: dec("0"),
                unit_price: dec("-1"),
                tax_rate: Some(dec("101")),
            }],
            false,
        )
        .unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
    }

    #[test]
    fn allocation_pays_the_oldest_due_first_and_keeps_the_rest() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        let open = vec![
            Open {
                invoice_id: b,
                due_date: d("2026-03-01"),
                issue_date: d("2026-02-01"),
                number: 2,
                balance: dec("100.00"),
            },
            Open {
                invoice_id: a,
                due_date: d("2026-02-01"),
                issue_date: d("2026-01-01"),
                number: 1,
                balance: dec("60.00"),
            },
        ];
        let (alloc, left) = allocate(open.clone(), dec("100.00"));
        assert_eq!(alloc, vec![(a, dec("60.00")), (b, dec("40.00"))]);
        assert_eq!(left, dec("0.00"));
        let (alloc, left) = allocate(open, dec("200.00"));
        assert_eq!(alloc.len(), 2);
        assert_eq!(left, dec("40.00"));
    }
}
