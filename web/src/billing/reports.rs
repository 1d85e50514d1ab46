//! The billing read API: invoices (list, detail, PDF), payments, a company's balance and
//! statement, the AR aging report (JSON and CSV), and the billing settings (seller details,
//! reminders and late fees). Lists read the `receivables` read model; an invoice's lines and
//! its PDF come from the company's ledger.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use chrono::NaiveDate;
use commands::ConflictPolicy;
use domain::authz::Action;
use domain::ledger::{ledger_id, Ledger};
use domain::tenant::{BillingProfile, LateFee, LatePayment, Tenant, TenantCommand};
use domain::ValidationError;
use projections::receivables::{self as read, InvoiceCursor, InvoiceFilter};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::ops::{date, decimal};
use crate::api::{command_meta, path_id, ApiJson};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::openapi::{
    BadRequest, Forbidden, InternalError, NotFound, PayloadTooLarge, Unauthorized, Unprocessable,
    UnsupportedMediaType,
};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/invoices", get(list_invoices))
        .route("/api/v1/invoices/{id}", get(get_invoice))
        .route("/api/v1/invoices/{id}/pdf", get(invoice_pdf))
        .route("/api/v1/payments", get(list_payments))
        .route("/api/v1/payments/{id}", get(get_payment))
        .route("/api/v1/companies/{id}/balance", get(company_balance))
        .route("/api/v1/companies/{id}/statement", get(company_statement))
        .route("/api/v1/reports/ar-aging", get(ar_aging))
        .route("/api/v1/reports/ar-aging.csv", get(ar_aging_csv))
        .route(
            "/api/v1/settings/billing",
            get(get_billing_settings).put(set_billing_settings),
        )
}

fn respond<T: Serialize>(outcome: Result<T, ApiError>) -> Response {
    match outcome {
        Ok(json) => (StatusCode::OK, Json(json)).into_response(),
        Err(error) => error.into_response(),
    }
}

fn invalid(field: &'static str, message: &str) -> ApiError {
    ApiError::Invalid(vec![ValidationError::new(field, message)])
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::BadRequest(format!("bad query string: {}", e.body_text())))
}

/// `YYYY-MM-DD_<number or ->_<id>`, or `draft_-_<id>`: a place in the invoice list.
pub(crate) fn encode_cursor(c: InvoiceCursor) -> String {
    format!(
        "{}_{}_{}",
        c.issue_date
            .map_or_else(|| "draft".to_owned(), |d| d.to_string()),
        c.number.map_or_else(|| "-".to_owned(), |n| n.to_string()),
        c.id
    )
}

pub(crate) fn decode_cursor(text: &str) -> Option<InvoiceCursor> {
    let mut parts = text.splitn(3, '_');
    let date = parts.next()?;
    let number = parts.next()?;
    let id = Uuid::parse_str(parts.next()?).ok()?;
    Some(InvoiceCursor {
        issue_date: if date == "draft" {
            None
        } else {
            Some(NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?)
        },
        number: if number == "-" {
            None
        } else {
            Some(number.parse().ok()?)
        },
        id,
    })
}

/// A JSON object whose fields the endpoint's description lists.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpaqueJson {}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InvoiceQuery {
    /// One company's invoices.
    pub company_id: Option<String>,
    /// draft, issued, partially_paid, paid, void, or open (anything still owed).
    pub status: Option<String>,
    /// The `next` of the previous page.
    pub before: Option<String>,
    /// 1–500 (default 100).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceList {
    #[schema(value_type = Vec<Object>)]
    pub invoices: Vec<read::InvoiceRow>,
    /// Pass as `before` for the next page; null on the last page.
    pub next: Option<String>,
}

/// Invoices, newest first (drafts first): `id`, `number`, `issue_date`, `due_date`, `total`,
/// `balance`, `status` and more.
#[utoipa::path(
    get,
    path = "/api/v1/invoices",
    tag = "billing",
    operation_id = "listInvoices",
    params(InvoiceQuery),
    responses(
        (status = 200, description = "A page of invoices", body = InvoiceList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn list_invoices(
    State(state): State<AppState>,
    me: Principal,
    q: Result<Query<InvoiceQuery>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let q = query(q)?;
        let mut errors = Vec::new();
        let company_id = match q.company_id.as_deref().filter(|s| !s.is_empty()) {
            Some(text) => match Uuid::parse_str(text) {
                Ok(id) => Some(id),
                Err(_) => {
                    errors.push(ValidationError::new("company_id", "must be a company id"));
                    None
                }
            },
            None => None,
        };
        let status = q.status.filter(|s| !s.is_empty());
        if let Some(s) = &status {
            if !["draft", "issued", "partially_paid", "paid", "void", "open"].contains(&s.as_str())
            {
                errors.push(ValidationError::new(
                    "status",
                    "must be one of draft, issued, partially_paid, paid, void, open",
                ));
            }
        }
        let before = match q.before.as_deref().filter(|s| !s.is_empty()) {
            Some(text) => match decode_cursor(text) {
                Some(c) => Some(c),
                None => {
                    errors.push(ValidationError::new(
                        "before",
                        "is not a cursor this list gave",
                    ));
                    None
                }
            },
            None => None,
        };
        let limit = q.limit.unwrap_or(100);
        if !(1..=500).contains(&limit) {
            errors.push(ValidationError::new("limit", "must be from 1 to 500"));
        }
        if !errors.is_empty() {
            return Err(ApiError::Invalid(errors));
        }
        let mut invoices = read::list_invoices(
            &state.pool,
            me.tenant_id,
            &InvoiceFilter {
                company_id,
                status,
                before,
            },
            limit + 1,
        )
        .await
        .map_err(ApiError::internal)?;
        let next = if invoices.len() as i64 > limit {
            invoices.truncate(limit as usize);
            invoices.last().map(|i| encode_cursor(i.cursor()))
        } else {
            None
        };
        Ok(InvoiceList { invoices, next })
    };
    respond(outcome.await)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceDetail {
    #[schema(value_type = Object)]
    pub invoice: read::InvoiceRow,
    #[schema(value_type = Vec<Object>)]
    pub lines: Vec<domain::billing::Line>,
    #[schema(value_type = Vec<Object>)]
    pub payments: Vec<read::AllocationRow>,
    #[schema(value_type = Vec<Object>)]
    pub credit_notes: Vec<read::CreditNoteRow>,
}

async fn invoice_of(
    state: &AppState,
    me: &Principal,
    id: Uuid,
) -> Result<read::InvoiceRow, ApiError> {
    read::get_invoice(&state.pool, me.tenant_id, id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::NotFound(format!("invoice {id} not found")))
}

/// One invoice with its lines, the payments applied to it and its credit notes.
#[utoipa::path(
    get,
    path = "/api/v1/invoices/{id}",
    tag = "billing",
    operation_id = "getInvoice",
    params(("id" = Uuid, Path, description = "The invoice's id")),
    responses(
        (status = 200, description = "The invoice", body = InvoiceDetail),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn get_invoice(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "invoice")?;
        let invoice = invoice_of(&state, &me, id).await?;
        let (ledger, _) = state
            .store
            .load::<Ledger>(me.tenant_id, &ledger_id(invoice.company_id))
            .await?;
        let lines = ledger
            .invoices
            .get(&id)
            .map(|i| i.lines.clone())
            .unwrap_or_default();
        Ok(InvoiceDetail {
            payments: read::invoice_payments(&state.pool, me.tenant_id, id)
                .await
                .map_err(ApiError::internal)?,
            credit_notes: read::credit_notes_of(&state.pool, me.tenant_id, id)
                .await
                .map_err(ApiError::internal)?,
            invoice,
            lines,
        })
    };
    respond(outcome.await)
}

/// The invoice as a PDF (generated by the service, text extractable, with the organisation's
/// name and address).
#[utoipa::path(
    get,
    path = "/api/v1/invoices/{id}/pdf",
    tag = "billing",
    operation_id = "getInvoicePdf",
    params(("id" = Uuid, Path, description = "The invoice's id")),
    responses(
        (status = 200, description = "The PDF", content_type = "application/pdf", body = Vec<u8>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn invoice_pdf(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "invoice")?;
        let invoice = invoice_of(&state, &me, id).await?;
        super::documents::invoice_file(&state, me.tenant_id, invoice.company_id, id)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::NotFound(format!("invoice {id} not found")))
    };
    match outcome.await {
        Ok((name, bytes)) => pdf_response(&name, bytes),
        Err(error) => error.into_response(),
    }
}

/// A PDF download.
pub fn pdf_response(name: &str, bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "inline; filename=\"{}\"",
                    name.replace(
                        |c: char| !c.is_ascii_alphanumeric() && c != ' ' && c != '.',
                        "_"
                    )
                ),
            ),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
        ],
        bytes,
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PaymentQuery {
    pub company_id: Option<String>,
    /// 1–500 (default 100).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentList {
    #[schema(value_type = Vec<Object>)]
    pub payments: Vec<read::PaymentRow>,
}

/// Payments, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/payments",
    tag = "billing",
    operation_id = "listPayments",
    params(PaymentQuery),
    responses(
        (status = 200, description = "Payments", body = PaymentList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn list_payments(
    State(state): State<AppState>,
    me: Principal,
    q: Result<Query<PaymentQuery>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let q = query(q)?;
        let company_id = match q.company_id.as_deref().filter(|s| !s.is_empty()) {
            Some(text) => Some(
                Uuid::parse_str(text).map_err(|_| invalid("company_id", "must be a company id"))?,
            ),
            None => None,
        };
        let limit = q.limit.unwrap_or(100);
        if !(1..=500).contains(&limit) {
            return Err(invalid("limit", "must be from 1 to 500"));
        }
        Ok(PaymentList {
            payments: read::list_payments(&state.pool, me.tenant_id, company_id, limit)
                .await
                .map_err(ApiError::internal)?,
        })
    };
    respond(outcome.await)
}

/// One payment with where it went.
#[utoipa::path(
    get,
    path = "/api/v1/payments/{id}",
    tag = "billing",
    operation_id = "getPayment",
    params(("id" = Uuid, Path, description = "The payment's id")),
    responses(
        (status = 200, description = "The payment", body = OpaqueJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn get_payment(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "payment")?;
        read::get_payment(&state.pool, me.tenant_id, id)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::NotFound(format!("payment {id} not found")))
    };
    respond(outcome.await)
}

async fn company_of(state: &AppState, me: &Principal, id: Uuid) -> Result<(), ApiError> {
    super::ops::company(state, me, id).await.map(|_| ())
}

/// A company's balance: its open invoices, its unapplied credit, and the difference.
#[utoipa::path(
    get,
    path = "/api/v1/companies/{id}/balance",
    tag = "billing",
    operation_id = "getCompanyBalance",
    params(("id" = Uuid, Path, description = "The company's id")),
    responses(
        (status = 200, description = "The balance", body = OpaqueJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn company_balance(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "company")?;
        company_of(&state, &me, id).await?;
        read::company_balance(&state.pool, me.tenant_id, id)
            .await
            .map_err(ApiError::internal)
    };
    respond(outcome.await)
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatementQuery {
    /// First day (default: 90 days before `to`).
    pub from: Option<String>,
    /// Last day (default: today in the organisation's time zone).
    pub to: Option<String>,
    /// `pdf` for the statement as a PDF.
    pub format: Option<String>,
}

/// A customer statement: opening balance, every movement with the running balance, closing
/// balance; `format=pdf` for the document.
#[utoipa::path(
    get,
    path = "/api/v1/companies/{id}/statement",
    tag = "billing",
    operation_id = "getStatement",
    params(("id" = Uuid, Path, description = "The company's id"), StatementQuery),
    responses(
        (status = 200, description = "The statement (JSON, or a PDF with format=pdf)", body = OpaqueJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn company_statement(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<StatementQuery>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "company")?;
        let q = query(q)?;
        let (company, _) = super::ops::company(&state, &me, id).await?;
        let tenant = crate::notify::ops::load_tenant(&state, me.tenant_id).await?;
        let mut errors = Vec::new();
        let to = match q.to.as_deref().filter(|s| !s.is_empty()) {
            Some(d) => date("to", d).map_err(|e| errors.push(e)).ok(),
            None => Some(super::run::today(&tenant)),
        };
        let from = match q.from.as_deref().filter(|s| !s.is_empty()) {
            Some(d) => date("from", d).map_err(|e| errors.push(e)).ok(),
            None => to.map(|t| t - chrono::Duration::days(90)),
        };
        let pdf = match q.format.as_deref() {
            None | Some("") | Some("json") => false,
            Some("pdf") => true,
            Some(_) => {
                errors.push(ValidationError::new("format", "must be json or pdf"));
                false
            }
        };
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                errors.push(ValidationError::new("from", "must not be after to"));
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::Invalid(errors));
        }
        let (from, to) = (from.expect("checked"), to.expect("checked"));
        let statement = read::statement(&state.pool, me.tenant_id, id, from, to)
            .await
            .map_err(ApiError::internal)?;
        if !pdf {
            return Ok(Json(statement).into_response());
        }
        let aging = read::aging(&state.pool, me.tenant_id, to)
            .await
            .map_err(ApiError::internal)?;
        let row = aging.customers.iter().find(|c| c.company_id == id);
        let money = super::documents::money;
        let document = crate::pdf::StatementDocument {
            seller: crate::pdf::Party {
                name: tenant.name.clone(),
                address_lines: tenant
                    .billing_profile
                    .address
                    .lines()
                    .map(str::to_owned)
                    .collect(),
                extra_lines: vec![tenant.billing_profile.tax_id.clone()]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect(),
            },
            buyer: crate::pdf::Party {
                name: company.name.clone(),
                address_lines: company
                    .profile
                    .billing_address
                    .lines()
                    .map(str::to_owned)
                    .collect(),
                extra_lines: Vec::new(),
            },
            as_of: to.to_string(),
            currency: tenant.currency.map(|c| c.to_string()).unwrap_or_default(),
            rows: std::iter::once(crate::pdf::StatementRow {
                date: from.to_string(),
                description: "Opening balance".into(),
                debit: String::new(),
                credit: String::new(),
                balance: money(statement.opening_balance),
            })
            .chain(statement.lines.iter().map(|l| crate::pdf::StatementRow {
                date: l.date.to_string(),
                description: l.description.clone(),
                debit: if l.debit.is_zero() {
                    String::new()
                } else {
                    money(l.debit)
                },
                credit: if l.credit.is_zero() {
                    String::new()
                } else {
                    money(l.credit)
                },
                balance: money(l.balance),
            }))
            .collect(),
            aging: row
                .map(|r| {
                    vec![
                        ("Current".to_owned(), money(r.current)),
                        ("1–30 days".to_owned(), money(r.days_1_30)),
                        ("31–60 days".to_owned(), money(r.days_31_60)),
                        ("61–90 days".to_owned(), money(r.days_61_90)),
                        ("Over 90 days".to_owned(), money(r.days_over_90)),
                    ]
                })
                .unwrap_or_default(),
            balance: money(statement.closing_balance),
        };
        Ok(pdf_response(
            &format!("Statement {} {to}.pdf", company.name),
            crate::pdf::statement_pdf(&document),
        ))
    };
    match outcome.await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AgingQuery {
    /// The report's date (default: today in the organisation's time zone). For a past date
    /// it shows what was owed then: invoices issued and payments received up to that date.
    pub as_of: Option<String>,
}

async fn aging_for(
    state: &AppState,
    me: &Principal,
    q: Result<Query<AgingQuery>, QueryRejection>,
) -> Result<read::Aging, ApiError> {
    let q = query(q)?;
    let as_of = match q.as_of.as_deref().filter(|s| !s.is_empty()) {
        Some(d) => date("as_of", d).map_err(|e| ApiError::Invalid(vec![e]))?,
        None => super::run::today(&crate::notify::ops::load_tenant(state, me.tenant_id).await?),
    };
    read::aging(&state.pool, me.tenant_id, as_of)
        .await
        .map_err(ApiError::internal)
}

/// The accounts-receivable aging report: per customer, what is owed by days past due, the
/// unapplied credit, and the net total; with totals.
#[utoipa::path(
    get,
    path = "/api/v1/reports/ar-aging",
    tag = "billing",
    operation_id = "getArAging",
    params(AgingQuery),
    responses(
        (status = 200, description = "The report", body = OpaqueJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn ar_aging(
    State(state): State<AppState>,
    me: Principal,
    q: Result<Query<AgingQuery>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    respond(aging_for(&state, &me, q).await)
}

/// The aging report as CSV (one row per customer, then a totals row).
#[utoipa::path(
    get,
    path = "/api/v1/reports/ar-aging.csv",
    tag = "billing",
    operation_id = "getArAgingCsv",
    params(AgingQuery),
    responses(
        (status = 200, description = "The report", content_type = "text/csv", body = String),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn ar_aging_csv(
    State(state): State<AppState>,
    me: Principal,
    q: Result<Query<AgingQuery>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    match aging_for(&state, &me, q).await {
        Ok(aging) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"ar-aging-{}.csv\"", aging.as_of),
                ),
            ],
            aging_csv(&aging),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

/// The report as CSV; names that a spreadsheet would run as formulas are quoted with `'`.
pub fn aging_csv(aging: &read::Aging) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    let _ = out.write_record([
        "company_id",
        "company_name",
        "current",
        "days_1_30",
        "days_31_60",
        "days_61_90",
        "days_over_90",
        "unapplied_credit",
        "total",
    ]);
    for c in &aging.customers {
        let name = if c.company_name.starts_with(['=', '+', '-', '@']) {
            format!("'{}", c.company_name)
        } else {
            c.company_name.clone()
        };
        let _ = out.write_record([
            c.company_id.to_string(),
            name,
            c.current.to_string(),
            c.days_1_30.to_string(),
            c.days_31_60.to_string(),
            c.days_61_90.to_string(),
            c.days_over_90.to_string(),
            c.unapplied_credit.to_string(),
            c.total.to_string(),
        ]);
    }
    let t = &aging.totals;
    let _ = out.write_record([
        String::new(),
        format!("Total as of {}", aging.as_of),
        t.current.to_string(),
        t.days_1_30.to_string(),
        t.days_31_60.to_string(),
        t.days_61_90.to_string(),
        t.days_over_90.to_string(),
        t.unapplied_credit.to_string(),
        t.total.to_string(),
    ]);
    String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// The organisation's billing settings.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BillingSettings {
    /// The seller's postal address on invoices (lines separated by newlines).
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub tax_id: String,
    /// Printed on every invoice (bank details, how to pay).
    #[serde(default)]
    pub payment_instructions: String,
    #[serde(default)]
    pub contact: String,
    /// Days past due at which billing contacts are reminded (e.g. [7, 30]).
    #[serde(default)]
    pub reminder_days: Vec<u32>,
    /// A late fee, charged once per invoice: `{"after_days": 30, "amount": "25.00"}` or
    /// `{"after_days": 30, "percent": "1.5"}`; null for none.
    #[schema(value_type = Option<Object>)]
    pub late_fee: Option<LateFeeBody>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LateFeeBody {
    pub after_days: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<String>,
}

fn settings_of(tenant: &Tenant) -> BillingSettings {
    let p = &tenant.billing_profile;
    BillingSettings {
        address: p.address.clone(),
        tax_id: p.tax_id.clone(),
        payment_instructions: p.payment_instructions.clone(),
        contact: p.contact.clone(),
        reminder_days: tenant.late_payment.reminder_days.clone(),
        late_fee: tenant.late_payment.fee.as_ref().map(|f| LateFeeBody {
            after_days: f.after_days,
            amount: (!f.percent).then(|| f.amount.to_string()),
            percent: f.percent.then(|| f.amount.normalize().to_string()),
        }),
    }
}

/// The organisation's billing settings: seller details, reminders, late fee.
#[utoipa::path(
    get,
    path = "/api/v1/settings/billing",
    tag = "billing",
    operation_id = "getBillingSettings",
    responses(
        (status = 200, description = "The settings", body = BillingSettings),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn get_billing_settings(State(state): State<AppState>, me: Principal) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let tenant = crate::notify::ops::load_tenant(&state, me.tenant_id).await?;
        Ok(settings_of(&tenant))
    };
    respond(outcome.await)
}

/// Set the organisation's billing settings (all fields at once).
#[utoipa::path(
    put,
    path = "/api/v1/settings/billing",
    tag = "billing",
    operation_id = "setBillingSettings",
    request_body(content = BillingSettings, content_type = "application/json"),
    responses(
        (status = 200, description = "The settings now", body = BillingSettings),
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
pub async fn set_billing_settings(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    body: Result<ApiJson<BillingSettings>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        let profile = BillingProfile {
            address: body.address.trim().to_owned(),
            tax_id: body.tax_id.trim().to_owned(),
            payment_instructions: body.payment_instructions.trim().to_owned(),
            contact: body.contact.trim().to_owned(),
        };
        let mut errors = profile.check().err().unwrap_or_default();
        let fee = match body.late_fee {
            None => None,
            Some(f) => match (f.amount.as_deref(), f.percent.as_deref()) {
                (Some(a), None) => decimal("fee_amount", a)
                    .map_err(|e| errors.push(e))
                    .ok()
                    .map(|amount| LateFee {
                        after_days: f.after_days,
                        amount,
                        percent: false,
                    }),
                (None, Some(p)) => decimal("fee_amount", p)
                    .map_err(|e| errors.push(e))
                    .ok()
                    .map(|amount| LateFee {
                        after_days: f.after_days,
                        amount,
                        percent: true,
                    }),
                _ => {
                    errors.push(ValidationError::new(
                        "late_fee",
                        "give either amount or percent",
                    ));
                    None
                }
            },
        };
        let policy = LatePayment {
            reminder_days: body.reminder_days,
            fee,
        };
        if let Err(more) = policy.check() {
            errors.extend(more);
        }
        if !errors.is_empty() {
            return Err(ApiError::Invalid(errors));
        }
        let id = me.tenant_id.to_string();
        state
            .store
            .execute::<Tenant>(
                &id,
                TenantCommand::SetBillingProfile { profile },
                &(),
                &meta,
                ConflictPolicy::RetryOnce,
            )
            .await?;
        let done = state
            .store
            .execute::<Tenant>(
                &id,
                TenantCommand::SetLatePayment { policy },
                &(),
                &meta.derived(b"late-payment"),
                ConflictPolicy::RetryOnce,
            )
            .await?;
        Ok(settings_of(&done.state))
    };
    respond(outcome.await)
}
