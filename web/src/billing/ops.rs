//! The billing operations the API and the console share: contract terms, ad-hoc invoices,
//! payments and what can be done to them, credit notes. Each checks its input whole and
//! appends nothing when it refuses; money is exact (`rust_decimal`), amounts have two places.

use std::str::FromStr;

use chrono::{Duration, NaiveDate};
use commands::{ConflictPolicy, EventMeta};
use domain::billing::{cents, price_lines, ContractTerms, LineInput};
use domain::company::{BillingTerms, Company, CompanyCommand};
use domain::ledger::{ledger_id, Ledger, LedgerCommand, Method};
use domain::ValidationError;
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use super::run::INVOICE_SEQUENCE;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// The number sequence of credit notes.
pub const CREDIT_NOTE_SEQUENCE: &str = "credit-note";

/// A money field: a decimal string with at most two places, more than zero.
pub fn positive_amount(field: &'static str, text: &str) -> Result<Decimal, ValidationError> {
    let amount = domain::values::Amount::parse(field, text)?;
    if amount.value() <= Decimal::ZERO {
        return Err(ValidationError::new(field, "must be more than 0"));
    }
    Ok(amount.value())
}

/// A date field `YYYY-MM-DD`.
pub fn date(field: &'static str, text: &str) -> Result<NaiveDate, ValidationError> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| ValidationError::new(field, "must be a date YYYY-MM-DD"))
}

/// A decimal field (quantities, prices, rates).
pub fn decimal(field: &'static str, text: &str) -> Result<Decimal, ValidationError> {
    Decimal::from_str(text.trim())
        .map_err(|_| ValidationError::new(field, "must be a decimal number such as \"12.50\""))
}

/// A company of the asker's tenant, with its ledger.
pub async fn company(
    state: &AppState,
    me: &Principal,
    company_id: Uuid,
) -> Result<(Company, Ledger), ApiError> {
    let (company, _) = state
        .store
        .load::<Company>(me.tenant_id, &company_id.to_string())
        .await?;
    if !company.registered {
        return Err(ApiError::NotFound(format!(
            "company {company_id} not found"
        )));
    }
    let (ledger, _) = state
        .store
        .load::<Ledger>(me.tenant_id, &ledger_id(company_id))
        .await?;
    Ok((company, ledger))
}

/// Sets (or with `None` stops) how a company's contract is billed.
pub async fn set_billing(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    company_id: Uuid,
    billing: Option<BillingTerms>,
) -> Result<Option<BillingTerms>, ApiError> {
    let (existing, _) = company(state, me, company_id).await?;
    if let Some(b) = &billing {
        let mut errors = ContractTerms {
            monthly_rate: existing.current_rate().value(),
            billing_day: b.billing_day,
            start_date: b.start_date,
            end_date: b.end_date,
            payment_terms_days: b.payment_terms_days,
            prorate: b.prorate,
        }
        .check()
        .err()
        .unwrap_or_default();
        if let Some(rate) = b.tax_rate {
            if rate.is_sign_negative() || rate > Decimal::from(100) || rate.scale() > 3 {
                errors.push(ValidationError::new(
                    "tax_rate",
                    "must be a percentage from 0 to 100",
                ));
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::Invalid(errors));
        }
    }
    let done = state
        .store
        .execute::<Company>(
            &company_id.to_string(),
            CompanyCommand::SetBilling { billing },
            &(),
            meta,
            ConflictPolicy::RetryOnce,
        )
        .await?;
    // A billing run right after sees the contract.
    state
        .read_your_writes(
            &["contracts"],
            "company",
            &company_id.to_string(),
            done.version,
        )
        .await;
    Ok(done.state.billing)
}

/// What a payment did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PaymentOutcome {
    pub id: Uuid,
    pub company_id: Uuid,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "700.00")]
    pub amount: Decimal,
    pub received_on: NaiveDate,
    pub method: String,
    pub reference: String,
    pub allocations: Vec<AllocationJson>,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "0.00")]
    pub unapplied: Decimal,
    pub reversed: bool,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "0.00")]
    pub refunded: Decimal,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AllocationJson {
    pub invoice_id: Uuid,
    pub invoice_number: Option<u64>,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "500.00")]
    pub amount: Decimal,
}

pub fn payment_outcome(
    ledger: &Ledger,
    company_id: Uuid,
    payment_id: Uuid,
) -> Option<PaymentOutcome> {
    let p = ledger.payments.get(&payment_id)?;
    let mut allocations: Vec<AllocationJson> = p
        .allocations
        .iter()
        .map(|(invoice_id, amount)| AllocationJson {
            invoice_id: *invoice_id,
            invoice_number: ledger.invoices.get(invoice_id).and_then(|i| i.number),
            amount: cents(*amount),
        })
        .collect();
    // In the order they were paid: oldest due first.
    allocations.sort_by_key(|a| {
        let invoice = ledger.invoices.get(&a.invoice_id);
        (
            invoice.and_then(|i| i.due_date),
            invoice.and_then(|i| i.number),
            a.invoice_id,
        )
    });
    Some(PaymentOutcome {
        id: payment_id,
        company_id,
        amount: cents(p.amount),
        received_on: p.received_on,
        method: p.method.as_str().into(),
        reference: p.reference.clone(),
        allocations,
        unapplied: cents(p.unapplied()),
        reversed: p.reversed,
        refunded: cents(p.refunded),
    })
}

/// A payment as given.
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub company_id: Uuid,
    pub amount: Decimal,
    pub received_on: NaiveDate,
    pub method: Method,
    pub reference: String,
    pub invoices: Option<Vec<Uuid>>,
}

/// Records a payment and applies it (oldest due first, or to the named invoices).
pub async fn receive_payment(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    payment: NewPayment,
) -> Result<PaymentOutcome, ApiError> {
    company(state, me, payment.company_id).await?;
    let payment_id = meta.new_aggregate_id();
    let done = state
        .store
        .execute::<Ledger>(
            &ledger_id(payment.company_id),
            LedgerCommand::ReceivePayment {
                company_id: payment.company_id,
                payment_id,
                amount: payment.amount,
                received_on: payment.received_on,
                method: payment.method,
                reference: payment.reference,
                invoices: payment.invoices,
            },
            &(),
            meta,
            ConflictPolicy::Busy,
        )
        .await?;
    payment_outcome(&done.state, payment.company_id, payment_id)
        .ok_or_else(|| ApiError::internal("the payment is missing from its ledger"))
}

/// Runs a command on the ledger of the company a payment or invoice belongs to.
pub async fn on_ledger(
    state: &AppState,
    meta: &EventMeta,
    company_id: Uuid,
    command: LedgerCommand,
) -> Result<Ledger, ApiError> {
    Ok(state
        .store
        .execute::<Ledger>(
            &ledger_id(company_id),
            command,
            &(),
            meta,
            ConflictPolicy::Busy,
        )
        .await?
        .state)
}

/// An ad-hoc invoice: priced lines, issued now (numbered) or kept as a draft.
pub struct NewInvoiceInput {
    pub company_id: Uuid,
    pub lines: Vec<LineInput>,
    /// `None`: a draft.
    pub issue_date: Option<NaiveDate>,
    pub due_date: Option<NaiveDate>,
    /// Add the company's billable time and materials not invoiced yet, up to the issue date
    /// (issued invoices only: work is billed when an invoice is issued).
    pub unbilled_work: bool,
}

pub async fn create_invoice(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    input: NewInvoiceInput,
) -> Result<(Uuid, Ledger), ApiError> {
    let (company, _) = company(state, me, input.company_id).await?;
    let tax_exempt = company.billing.as_ref().is_some_and(|b| b.tax_exempt);
    let mut inputs = input.lines;
    let mut sources = vec![None; inputs.len()];
    let mut bills = Vec::new();
    if input.unbilled_work {
        let Some(issue_date) = input.issue_date else {
            return Err(ApiError::Invalid(vec![ValidationError::new(
                "issue_date",
                "is required to bill unbilled work: work is billed when the invoice is issued",
            )]));
        };
        let (ledger, _) = state
            .store
            .load::<Ledger>(me.tenant_id, &ledger_id(input.company_id))
            .await?;
        let tax_rate = company.billing.as_ref().and_then(|b| b.tax_rate);
        let work = crate::billing::run::unbilled_work(
            state,
            me.tenant_id,
            input.company_id,
            issue_date,
            &ledger,
            tax_rate,
        )
        .await
        .map_err(ApiError::internal)?;
        if work.is_empty() && inputs.is_empty() {
            return Err(ApiError::Invalid(vec![ValidationError::new(
                "unbilled_work",
                format!(
                    "{} has no billable time or materials up to {issue_date} waiting to be invoiced",
                    company.name
                ),
            )]));
        }
        // As many as the invoice has room for, oldest first; the rest waits for the next.
        let room = domain::billing::MAX_LINES.saturating_sub(inputs.len());
        for item in work.into_iter().take(room) {
            inputs.push(item.input);
            sources.push(Some(item.source));
            bills.push(item.bill);
        }
    }
    let mut lines = price_lines(&inputs, tax_exempt).map_err(ApiError::Invalid)?;
    for (line, source) in lines.iter_mut().zip(sources) {
        line.source = source;
    }
    let invoice_id = meta.new_aggregate_id();
    let ledger = match input.issue_date {
        None => {
            on_ledger(
                state,
                meta,
                input.company_id,
                LedgerCommand::DraftInvoice {
                    company_id: input.company_id,
                    invoice_id,
                    lines,
                },
            )
            .await?
        }
        Some(issue_date) => {
            let terms = company
                .billing
                .as_ref()
                .map_or(14, |b| b.payment_terms_days as i64);
            let due_date = input.due_date.unwrap_or(issue_date + Duration::days(terms));
            if due_date < issue_date {
                return Err(ApiError::Invalid(vec![ValidationError::new(
                    "due_date",
                    "must not be before the issue date",
                )]));
            }
            let company_id = input.company_id;
            state
                .store
                .execute_numbered::<Ledger>(
                    &ledger_id(company_id),
                    INVOICE_SEQUENCE,
                    |number| LedgerCommand::IssueInvoice {
                        company_id,
                        invoice: domain::ledger::NewInvoice {
                            invoice_id,
                            number,
                            issue_date,
                            due_date,
                            lines: lines.clone(),
                            bills: bills.clone(),
                            note: String::new(),
                        },
                    },
                    &(),
                    meta,
                )
                .await?
                .state
        }
    };
    Ok((invoice_id, ledger))
}

/// Issues a draft (numbered now).
pub async fn issue_draft(
    state: &AppState,
    meta: &EventMeta,
    company_id: Uuid,
    invoice_id: Uuid,
    issue_date: NaiveDate,
    due_date: NaiveDate,
) -> Result<Ledger, ApiError> {
    Ok(state
        .store
        .execute_numbered::<Ledger>(
            &ledger_id(company_id),
            INVOICE_SEQUENCE,
            |number| LedgerCommand::IssueDraft {
                invoice_id,
                number,
                issue_date,
                due_date,
            },
            &(),
            meta,
        )
        .await?
        .state)
}

/// Issues a credit note on an invoice (numbered from its own sequence).
pub async fn credit_note(
    state: &AppState,
    meta: &EventMeta,
    company_id: Uuid,
    invoice_id: Uuid,
    amount: Decimal,
    date: NaiveDate,
    reason: String,
) -> Result<(Uuid, Ledger), ApiError> {
    let credit_note_id = meta.new_aggregate_id();
    let ledger = state
        .store
        .execute_numbered::<Ledger>(
            &ledger_id(company_id),
            CREDIT_NOTE_SEQUENCE,
            |number| LedgerCommand::IssueCreditNote {
                credit_note_id,
                number,
                invoice_id,
                amount,
                date,
                reason: reason.clone(),
            },
            &(),
            meta,
        )
        .await?
        .state;
    Ok((credit_note_id, ledger))
}
