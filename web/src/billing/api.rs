//! The billing API: contract terms, billing runs, payments and what can be done to them,
//! ad-hoc invoices, issuing drafts, voids and credit notes. Reads (invoice lists, PDFs, the
//! aging report) are in `reports`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{post, put};
use axum::Router;
use chrono::NaiveDate;
use domain::authz::Action;
use domain::billing::LineInput;
use domain::company::BillingTerms;
use domain::ledger::{LedgerCommand, Method};
use domain::ValidationError;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::ops::{
    self, date, decimal, positive_amount, NewInvoiceInput, NewPayment, PaymentOutcome,
};
use super::run::{self, Billed};
use crate::api::{command_meta, path_id, ApiJson, IdempotencyKey};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::openapi::{
    BadRequest, Conflict, Forbidden, InternalError, NotFound, PayloadTooLarge, Unauthorized,
    Unprocessable, UnsupportedMediaType,
};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/companies/{id}/billing", put(set_billing_api))
        .route("/api/v1/billing/runs", post(run_billing))
        .route("/api/v1/billing/runs/preview", post(preview_billing))
        .route("/api/v1/payments", post(create_payment))
        .route("/api/v1/payments/{id}/unapply", post(unapply_payment))
        .route("/api/v1/payments/{id}/refunds", post(refund_payment))
        .route("/api/v1/payments/{id}/reverse", post(reverse_payment))
        .route("/api/v1/invoices", post(create_invoice_api))
        .route("/api/v1/invoices/{id}/issue", post(issue_invoice))
        .route("/api/v1/invoices/{id}/void", post(void_invoice))
        .route("/api/v1/invoices/{id}/credit-notes", post(credit_invoice))
        .route("/api/v1/billing/apply-credit/{id}", post(apply_credit))
}

fn respond<T: Serialize>(status: StatusCode, outcome: Result<T, ApiError>) -> Response {
    match outcome {
        Ok(json) => (status, Json(json)).into_response(),
        Err(error) => error.into_response(),
    }
}

fn collect<T>(errors: &mut Vec<ValidationError>, result: Result<T, ValidationError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

fn required<'a>(
    errors: &mut Vec<ValidationError>,
    field: &'static str,
    value: &'a Option<String>,
) -> Option<&'a str> {
    match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => Some(v),
        None => {
            errors.push(ValidationError::new(field, "is required"));
            None
        }
    }
}

/// The company an invoice or payment of the asker's tenant belongs to (404 otherwise).
async fn owner_company(
    state: &AppState,
    me: &Principal,
    table: &'static str,
    id: Uuid,
) -> Result<Uuid, ApiError> {
    let found: Option<Uuid> = sqlx::query_scalar(&format!(
        "SELECT company_id FROM {table} WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(me.tenant_id)
    .bind(id)
    .fetch_optional(&state.pool)
    .await
    .map_err(ApiError::internal)?;
    found.ok_or_else(|| {
        ApiError::NotFound(format!(
            "{} {id} not found",
            if table == "invoices" {
                "invoice"
            } else {
                "payment"
            }
        ))
    })
}

/// Waits (bounded) until the `receivables` read model shows the company's ledger as it is now.
async fn wait_ledger(state: &AppState, me: &Principal, company_id: Uuid) {
    if let Ok((_, version)) = state
        .store
        .load::<domain::ledger::Ledger>(me.tenant_id, &company_id.to_string())
        .await
    {
        state
            .read_your_writes(&["receivables"], "ledger", &company_id.to_string(), version)
            .await;
    }
}

// ---------------------------------------------------------------------------------------------
// Contract billing terms

/// How a company's contract is billed; `null` stops billing it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BillingBody {
    /// 1–31: the day of the month invoices are dated (the month's last day in shorter months).
    #[schema(example = 1)]
    pub billing_day: Option<u32>,
    #[schema(example = "2026-11-01")]
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    /// Days from the invoice date to its due date (0–365; default 14).
    pub payment_terms_days: Option<u32>,
    /// Partial first and last months billed by days of service (default true).
    pub prorate: Option<bool>,
    pub tax_exempt: Option<bool>,
    /// Tax rate of the contract lines, percent (e.g. "20").
    pub tax_rate: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BillingJson {
    pub company_id: Uuid,
    #[schema(value_type = Option<Object>)]
    pub billing: Option<BillingTerms>,
}

/// Set how a company's contract is billed (its rate is the company's monthly rate).
#[utoipa::path(
    put,
    path = "/api/v1/companies/{id}/billing",
    tag = "billing",
    operation_id = "setContractBilling",
    params(("id" = Uuid, Path, description = "The company's id"), IdempotencyKey),
    request_body(content = Option<BillingBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "The billing terms now", body = BillingJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn set_billing_api(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<ApiJson<Option<BillingBody>>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let company_id = path_id(path, "company")?;
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        let terms = match body {
            None => None,
            Some(b) => {
                let mut errors = Vec::new();
                let start = required(&mut errors, "start_date", &b.start_date)
                    .and_then(|s| collect(&mut errors, date("start_date", s)));
                let end = match b.end_date.as_deref().filter(|s| !s.trim().is_empty()) {
                    Some(s) => collect(&mut errors, date("end_date", s)),
                    None => None,
                };
                let tax_rate = match b.tax_rate.as_deref().filter(|s| !s.trim().is_empty()) {
                    Some(s) => collect(&mut errors, decimal("tax_rate", s)),
                    None => None,
                };
                let billing_day = b.billing_day.unwrap_or_else(|| {
                    errors.push(ValidationError::new("billing_day", "is required"));
                    0
                });
                if !errors.is_empty() {
                    return Err(ApiError::Invalid(errors));
                }
                Some(BillingTerms {
                    billing_day,
                    start_date: start.expect("checked"),
                    end_date: end,
                    payment_terms_days: b.payment_terms_days.unwrap_or(14),
                    prorate: b.prorate.unwrap_or(true),
                    tax_exempt: b.tax_exempt.unwrap_or(false),
                    tax_rate,
                })
            }
        };
        let billing = ops::set_billing(&state, &me, &meta, company_id, terms).await?;
        Ok(BillingJson {
            company_id,
            billing,
        })
    };
    respond(StatusCode::OK, outcome.await)
}

// ---------------------------------------------------------------------------------------------
// Billing runs

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// Bill every period due up to and including this date (default: today in the
    /// organisation's time zone).
    #[schema(example = "2026-11-30")]
    pub as_of: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunJson {
    pub as_of: NaiveDate,
    /// The invoices this run made (a preview: would make); empty when nothing was due.
    pub invoices: Vec<Billed>,
}

async fn run_for(
    state: &AppState,
    me: &Principal,
    body: Result<ApiJson<RunBody>, ApiError>,
    preview: bool,
) -> Result<RunJson, ApiError> {
    let ApiJson(body) = body?;
    let tenant = super::super::notify::ops::load_tenant(state, me.tenant_id).await?;
    let as_of = match body.as_of.as_deref() {
        Some(text) => date("as_of", text).map_err(|e| ApiError::Invalid(vec![e]))?,
        None => run::today(&tenant),
    };
    let invoices = run::run(state, me.tenant_id, as_of, preview, &me.actor())
        .await
        .map_err(ApiError::internal)?;
    if let (Some(last), false) = (invoices.last(), preview) {
        // The lists read next show the run's invoices.
        wait_ledger(state, me, last.company_id).await;
    }
    Ok(RunJson { as_of, invoices })
}

/// Bill every contract period due up to `as_of` that is not billed yet. Running it again, or
/// while the scheduler runs, bills nothing twice.
#[utoipa::path(
    post,
    path = "/api/v1/billing/runs",
    tag = "billing",
    operation_id = "runBilling",
    request_body(content = RunBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The invoices made", body = RunJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn run_billing(
    State(state): State<AppState>,
    me: Principal,
    body: Result<ApiJson<RunBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::RunBilling) {
        return refused.into_response();
    }
    respond(StatusCode::CREATED, run_for(&state, &me, body, false).await)
}

/// What a run up to `as_of` would bill, without billing (invoices have no number yet).
#[utoipa::path(
    post,
    path = "/api/v1/billing/runs/preview",
    tag = "billing",
    operation_id = "previewBilling",
    request_body(content = RunBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The invoices a run would make", body = RunJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn preview_billing(
    State(state): State<AppState>,
    me: Principal,
    body: Result<ApiJson<RunBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::RunBilling) {
        return refused.into_response();
    }
    respond(StatusCode::OK, run_for(&state, &me, body, true).await)
}

// ---------------------------------------------------------------------------------------------
// Payments

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentBody {
    pub company_id: Option<Uuid>,
    #[schema(example = "700.00")]
    pub amount: Option<String>,
    #[schema(example = "2026-11-20")]
    pub received_on: Option<String>,
    /// check, cash, bank_transfer or card.
    #[schema(example = "check")]
    pub method: Option<String>,
    #[schema(example = "1234")]
    pub reference: Option<String>,
    /// Pay these invoices (oldest due first among them); absent: all open invoices.
    pub invoice_ids: Option<Vec<Uuid>>,
}

/// Record a payment. It pays the company's open invoices oldest due date first (or the named
/// ones); what is left is credit that pays the next invoices when they are issued.
#[utoipa::path(
    post,
    path = "/api/v1/payments",
    tag = "billing",
    operation_id = "createPayment",
    params(IdempotencyKey),
    request_body(content = PaymentBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The payment and where it went", body = PaymentOutcome),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn create_payment(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    body: Result<ApiJson<PaymentBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        let mut errors = Vec::new();
        if body.company_id.is_none() {
            errors.push(ValidationError::new("company_id", "is required"));
        }
        let amount = required(&mut errors, "amount", &body.amount)
            .and_then(|a| collect(&mut errors, positive_amount("amount", a)));
        let received_on = required(&mut errors, "received_on", &body.received_on)
            .and_then(|d| collect(&mut errors, date("received_on", d)));
        let method = required(&mut errors, "method", &body.method).and_then(|m| {
            let parsed = Method::parse(m);
            if parsed.is_none() {
                errors.push(ValidationError::new(
                    "method",
                    "must be one of check, cash, bank_transfer, card",
                ));
            }
            parsed
        });
        let reference = body.reference.unwrap_or_default().trim().to_owned();
        if reference.chars().count() > 200 {
            errors.push(ValidationError::new(
                "reference",
                "must be at most 200 characters",
            ));
        }
        if !errors.is_empty() {
            return Err(ApiError::Invalid(errors));
        }
        let company_id = body.company_id.expect("checked");
        let outcome = ops::receive_payment(
            &state,
            &me,
            &meta,
            NewPayment {
                company_id,
                amount: amount.expect("checked"),
                received_on: received_on.expect("checked"),
                method: method.expect("checked"),
                reference,
                invoices: body.invoice_ids,
            },
        )
        .await?;
        wait_ledger(&state, &me, company_id).await;
        Ok(outcome)
    };
    respond(StatusCode::CREATED, outcome.await)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnapplyBody {
    /// The invoice to take the payment's allocation off.
    pub invoice_id: Option<Uuid>,
}

async fn payment_command(
    state: &AppState,
    me: &Principal,
    headers: &HeaderMap,
    path: Result<Path<String>, PathRejection>,
    command: impl FnOnce(Uuid) -> Result<LedgerCommand, ApiError>,
) -> Result<PaymentOutcome, ApiError> {
    let payment_id = path_id(path, "payment")?;
    let company_id = owner_company(state, me, "payments", payment_id).await?;
    let meta = command_meta(me, headers)?;
    let ledger = ops::on_ledger(state, &meta, company_id, command(payment_id)?).await?;
    ops::payment_outcome(&ledger, company_id, payment_id)
        .ok_or_else(|| ApiError::internal("the payment is missing from its ledger"))
}

/// Take a payment's allocation off an invoice: the invoice is owed again, the amount becomes
/// credit.
#[utoipa::path(
    post,
    path = "/api/v1/payments/{id}/unapply",
    tag = "billing",
    operation_id = "unapplyPayment",
    params(("id" = Uuid, Path, description = "The payment's id"), IdempotencyKey),
    request_body(content = UnapplyBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The payment now", body = PaymentOutcome),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn unapply_payment(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<ApiJson<UnapplyBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let ApiJson(body) = body?;
        let invoice_id = body.invoice_id.ok_or_else(|| {
            ApiError::Invalid(vec![ValidationError::new("invoice_id", "is required")])
        })?;
        payment_command(&state, &me, &headers, path, |payment_id| {
            Ok(LedgerCommand::Unapply {
                payment_id,
                invoice_id,
            })
        })
        .await
    };
    respond(StatusCode::OK, outcome.await)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    #[schema(example = "100.00")]
    pub amount: Option<String>,
    #[schema(example = "2026-11-21")]
    pub on: Option<String>,
    pub reference: Option<String>,
}

/// Refund some of a payment's unapplied credit.
#[utoipa::path(
    post,
    path = "/api/v1/payments/{id}/refunds",
    tag = "billing",
    operation_id = "refundPayment",
    params(("id" = Uuid, Path, description = "The payment's id"), IdempotencyKey),
    request_body(content = RefundBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The payment now", body = PaymentOutcome),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn refund_payment(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<ApiJson<RefundBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let ApiJson(body) = body?;
        let mut errors = Vec::new();
        let amount = required(&mut errors, "amount", &body.amount)
            .and_then(|a| collect(&mut errors, positive_amount("amount", a)));
        let on =
            required(&mut errors, "on", &body.on).and_then(|d| collect(&mut errors, date("on", d)));
        if !errors.is_empty() {
            return Err(ApiError::Invalid(errors));
        }
        payment_command(&state, &me, &headers, path, |payment_id| {
            Ok(LedgerCommand::Refund {
                payment_id,
                amount: amount.expect("checked"),
                on: on.expect("checked"),
                reference: body.reference.unwrap_or_default().trim().to_owned(),
            })
        })
        .await
    };
    respond(StatusCode::OK, outcome.await)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReverseBody {
    #[schema(example = "2026-11-25")]
    pub on: Option<String>,
    #[schema(example = "check returned by the bank")]
    pub reason: Option<String>,
}

/// Reverse a payment (a bounced check): it counts as never received and its invoices are
/// owed again.
#[utoipa::path(
    post,
    path = "/api/v1/payments/{id}/reverse",
    tag = "billing",
    operation_id = "reversePayment",
    params(("id" = Uuid, Path, description = "The payment's id"), IdempotencyKey),
    request_body(content = ReverseBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The payment now", body = PaymentOutcome),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn reverse_payment(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<ApiJson<ReverseBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let ApiJson(body) = body?;
        let on = body
            .on
            .as_deref()
            .ok_or_else(|| ValidationError::new("on", "is required"))
            .and_then(|d| date("on", d))
            .map_err(|e| ApiError::Invalid(vec![e]))?;
        payment_command(&state, &me, &headers, path, |payment_id| {
            Ok(LedgerCommand::ReversePayment {
                payment_id,
                on,
                reason: body.reason.unwrap_or_default().trim().to_owned(),
            })
        })
        .await
    };
    respond(StatusCode::OK, outcome.await)
}

// ---------------------------------------------------------------------------------------------
// Invoices

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineBody {
    pub description: Option<String>,
    #[schema(example = "1.5")]
    pub quantity: Option<String>,
    #[schema(example = "85.00")]
    pub unit_price: Option<String>,
    /// Percent; absent or empty: no tax.
    #[schema(example = "20")]
    pub tax_rate: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoiceBody {
    pub company_id: Option<Uuid>,
    pub lines: Option<Vec<LineBody>>,
    /// Issue it now with this date (numbered); absent: a draft.
    pub issue_date: Option<String>,
    /// Default: the issue date plus the company's payment terms (14 days without a contract).
    pub due_date: Option<String>,
    /// Add the company's billable time and materials not invoiced yet, up to the issue date
    /// (needs `issue_date`; `lines` may then be empty). Each is billed once.
    pub unbilled_work: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceCreated {
    pub id: Uuid,
    pub company_id: Uuid,
    pub number: Option<u64>,
    pub status: String,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "127.50")]
    pub total: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "127.50")]
    pub balance: Decimal,
}

fn created(
    ledger: &domain::ledger::Ledger,
    company_id: Uuid,
    id: Uuid,
) -> Result<InvoiceCreated, ApiError> {
    let invoice = ledger
        .invoices
        .get(&id)
        .ok_or_else(|| ApiError::internal("the invoice is missing from its ledger"))?;
    Ok(InvoiceCreated {
        id,
        company_id,
        number: invoice.number,
        status: invoice.status().as_str().into(),
        total: domain::billing::cents(invoice.total),
        balance: domain::billing::cents(invoice.balance()),
    })
}

/// Raise an ad-hoc invoice: issued at once with `issue_date` (numbered, credit applied), or a
/// draft to issue later.
#[utoipa::path(
    post,
    path = "/api/v1/invoices",
    tag = "billing",
    operation_id = "createInvoice",
    params(IdempotencyKey),
    request_body(content = InvoiceBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The invoice", body = InvoiceCreated),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn create_invoice_api(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    body: Result<ApiJson<InvoiceBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        let mut errors = Vec::new();
        if body.company_id.is_none() {
            errors.push(ValidationError::new("company_id", "is required"));
        }
        let mut lines = Vec::new();
        for (i, line) in body.lines.unwrap_or_default().into_iter().enumerate() {
            let mut bad = |what: &str| {
                errors.push(ValidationError::new(
                    "lines",
                    format!("line {}: {what}", i + 1),
                ))
            };
            let quantity = decimal("quantity", line.quantity.as_deref().unwrap_or("1"));
            let price = decimal("unit_price", line.unit_price.as_deref().unwrap_or(""));
            let tax = match line.tax_rate.as_deref().filter(|t| !t.trim().is_empty()) {
                Some(t) => decimal("tax_rate", t).map(Some),
                None => Ok(None),
            };
            match (quantity, price, tax) {
                (Ok(quantity), Ok(unit_price), Ok(tax_rate)) => lines.push(LineInput {
                    description: line.description.unwrap_or_default(),
                    quantity,
                    unit_price,
                    tax_rate,
                }),
                (q, p, t) => {
                    for e in [q.err(), p.err(), t.err()].into_iter().flatten() {
                        bad(&format!("{} {}", e.field, e.message));
                    }
                }
            }
        }
        let issue_date = match body.issue_date.as_deref() {
            Some(d) => collect(&mut errors, date("issue_date", d)),
            None => None,
        };
        let due_date = match body.due_date.as_deref() {
            Some(d) => collect(&mut errors, date("due_date", d)),
            None => None,
        };
        if !errors.is_empty() {
            return Err(ApiError::Invalid(errors));
        }
        let company_id = body.company_id.expect("checked");
        let (id, ledger) = ops::create_invoice(
            &state,
            &me,
            &meta,
            NewInvoiceInput {
                company_id,
                lines,
                issue_date,
                due_date,
                unbilled_work: body.unbilled_work.unwrap_or(false),
            },
        )
        .await?;
        wait_ledger(&state, &me, company_id).await;
        created(&ledger, company_id, id)
    };
    respond(StatusCode::CREATED, outcome.await)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueBody {
    #[schema(example = "2026-11-21")]
    pub issue_date: Option<String>,
    pub due_date: Option<String>,
}

/// Issue a draft invoice: it gets the next number and pays itself from the company's credit.
#[utoipa::path(
    post,
    path = "/api/v1/invoices/{id}/issue",
    tag = "billing",
    operation_id = "issueInvoice",
    params(("id" = Uuid, Path, description = "The invoice's id"), IdempotencyKey),
    request_body(content = IssueBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The invoice", body = InvoiceCreated),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn issue_invoice(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<ApiJson<IssueBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let invoice_id = path_id(path, "invoice")?;
        let ApiJson(body) = body?;
        let company_id = owner_company(&state, &me, "invoices", invoice_id).await?;
        let meta = command_meta(&me, &headers)?;
        let (company, _) = ops::company(&state, &me, company_id).await?;
        let tenant = crate::notify::ops::load_tenant(&state, me.tenant_id).await?;
        let mut errors = Vec::new();
        let issue_date = match body.issue_date.as_deref() {
            Some(d) => collect(&mut errors, date("issue_date", d)),
            None => Some(run::today(&tenant)),
        };
        let due_date = match body.due_date.as_deref() {
            Some(d) => collect(&mut errors, date("due_date", d)),
            None => None,
        };
        if !errors.is_empty() {
            return Err(ApiError::Invalid(errors));
        }
        let issue_date = issue_date.expect("checked");
        let terms = company
            .billing
            .as_ref()
            .map_or(14, |b| b.payment_terms_days as i64);
        let due_date = due_date.unwrap_or(issue_date + chrono::Duration::days(terms));
        let ledger =
            ops::issue_draft(&state, &meta, company_id, invoice_id, issue_date, due_date).await?;
        created(&ledger, company_id, invoice_id)
    };
    respond(StatusCode::OK, outcome.await)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidBody {
    pub reason: Option<String>,
    /// Default: today in the organisation's time zone.
    pub on: Option<String>,
    /// Return the invoice's time and materials to the unbilled work, to be billed again
    /// (default true); contract periods, subscriptions and fees stay billed.
    pub release_work: Option<bool>,
}

/// Void an invoice that has no payments on it (a correction; nothing is deleted).
#[utoipa::path(
    post,
    path = "/api/v1/invoices/{id}/void",
    tag = "billing",
    operation_id = "voidInvoice",
    params(("id" = Uuid, Path, description = "The invoice's id"), IdempotencyKey),
    request_body(content = VoidBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The invoice", body = InvoiceCreated),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn void_invoice(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<ApiJson<VoidBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let invoice_id = path_id(path, "invoice")?;
        let ApiJson(body) = body?;
        let company_id = owner_company(&state, &me, "invoices", invoice_id).await?;
        let meta = command_meta(&me, &headers)?;
        let on = match body.on.as_deref() {
            Some(d) => date("on", d).map_err(|e| ApiError::Invalid(vec![e]))?,
            None => run::today(&crate::notify::ops::load_tenant(&state, me.tenant_id).await?),
        };
        let ledger = ops::on_ledger(
            &state,
            &meta,
            company_id,
            LedgerCommand::VoidInvoice {
                invoice_id,
                on,
                reason: body.reason.unwrap_or_default().trim().to_owned(),
                release_work: body.release_work.unwrap_or(true),
            },
        )
        .await?;
        created(&ledger, company_id, invoice_id)
    };
    respond(StatusCode::OK, outcome.await)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditBody {
    #[schema(example = "50.00")]
    pub amount: Option<String>,
    pub date: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreditNoteJson {
    pub id: Uuid,
    pub number: u64,
    pub invoice: InvoiceCreated,
}

/// Issue a credit note on an invoice (at most its balance): what the customer owes goes down.
#[utoipa::path(
    post,
    path = "/api/v1/invoices/{id}/credit-notes",
    tag = "billing",
    operation_id = "creditInvoice",
    params(("id" = Uuid, Path, description = "The invoice's id"), IdempotencyKey),
    request_body(content = CreditBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The credit note", body = CreditNoteJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn credit_invoice(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<ApiJson<CreditBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let invoice_id = path_id(path, "invoice")?;
        let ApiJson(body) = body?;
        let company_id = owner_company(&state, &me, "invoices", invoice_id).await?;
        let meta = command_meta(&me, &headers)?;
        let mut errors = Vec::new();
        let amount = required(&mut errors, "amount", &body.amount)
            .and_then(|a| collect(&mut errors, positive_amount("amount", a)));
        let on = match body.date.as_deref() {
            Some(d) => collect(&mut errors, date("date", d)),
            None => None,
        };
        if !errors.is_empty() {
            return Err(ApiError::Invalid(errors));
        }
        let on = match on {
            Some(on) => on,
            None => run::today(&crate::notify::ops::load_tenant(&state, me.tenant_id).await?),
        };
        let (id, ledger) = ops::credit_note(
            &state,
            &meta,
            company_id,
            invoice_id,
            amount.expect("checked"),
            on,
            body.reason.unwrap_or_default().trim().to_owned(),
        )
        .await?;
        let number = ledger.credit_notes.get(&id).map_or(0, |c| c.number);
        Ok(CreditNoteJson {
            id,
            number,
            invoice: created(&ledger, company_id, invoice_id)?,
        })
    };
    respond(StatusCode::CREATED, outcome.await)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyCreditBody {
    /// The date the credit is applied (default: today in the organisation's time zone).
    pub on: Option<String>,
}

/// Apply a company's unapplied credit to its open invoices, oldest due first.
#[utoipa::path(
    post,
    path = "/api/v1/billing/apply-credit/{id}",
    tag = "billing",
    operation_id = "applyCredit",
    params(("id" = Uuid, Path, description = "The company's id"), IdempotencyKey),
    request_body(content = ApplyCreditBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The company's balance now", body = BalanceJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn apply_credit(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<ApiJson<ApplyCreditBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let company_id = path_id(path, "company")?;
        let ApiJson(body) = body?;
        ops::company(&state, &me, company_id).await?;
        let meta = command_meta(&me, &headers)?;
        let on = match body.on.as_deref() {
            Some(d) => date("on", d).map_err(|e| ApiError::Invalid(vec![e]))?,
            None => run::today(&crate::notify::ops::load_tenant(&state, me.tenant_id).await?),
        };
        let ledger =
            ops::on_ledger(&state, &meta, company_id, LedgerCommand::ApplyCredit { on }).await?;
        Ok(BalanceJson::of(company_id, &ledger))
    };
    respond(StatusCode::OK, outcome.await)
}

/// A company's balance from its ledger.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceJson {
    pub company_id: Uuid,
    /// invoices − credit notes − payments + refunds (negative: the company has credit).
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "300.00")]
    pub balance: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "0.00")]
    pub unapplied_credit: Decimal,
}

impl BalanceJson {
    pub fn of(company_id: Uuid, ledger: &domain::ledger::Ledger) -> Self {
        Self {
            company_id,
            balance: domain::billing::cents(ledger.balance()),
            unapplied_credit: domain::billing::cents(ledger.unapplied()),
        }
    }
}
