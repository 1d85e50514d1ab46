//! The billing console (issue 7): the overview with the billing run (`/billing`: what is owed,
//! preview and run), invoices (`/billing/invoices`: list with filters and "Older" pages, an
//! invoice's page with its lines, payments and credit notes, its PDF, issue, void, credit
//! notes and a payment for it, the ad-hoc invoice form), payments (`/billing/payments`: list,
//! the form that records one, a payment's page with where it went, unapply, refund and
//! reverse), the AR aging report with its bar chart and CSV (`/billing/aging`), a company's
//! Billing tab (`/companies/{id}/billing`: balance, contract billing terms, recent invoices and
//! payments, subscriptions to catalogue services, statements as a page and a PDF), the service
//! catalogue (`/billing/services`: list, add, a service's page that changes or retires it) and
//! the billing settings (`/settings/billing`: seller details, reminders and late fee).
//!
//! Pages need `ViewBilling`; forms `ManageBilling`, the billing run `RunBilling`. Every form
//! runs the operation the API runs (`super::ops`, `super::run`), checks its CSRF token, shows
//! itself again with the messages next to the fields (422) or the refusal on top (409), and
//! redirects with a flash message when it succeeds. Money is shown as invoices print it
//! (`documents::money`) with the organisation's currency; dates as YYYY-MM-DD.

use std::collections::{BTreeSet, HashMap};

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{Duration, NaiveDate};
use commands::ConflictPolicy;
use domain::authz::Action;
use domain::billing::{CatalogueService, LineInput, ServicePeriod};
use domain::company::{BillingTerms, Company};
use domain::ledger::{ledger_id, Ledger, LedgerCommand, Method};
use domain::tenant::{BillingProfile, LateFee, LatePayment, Tenant, TenantCommand};
use domain::ValidationError;
use projections::receivables::{self as read, InvoiceFilter, InvoiceRow, PaymentRow};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::catalogue::{self, ServiceBody, SubscriptionBody};
use super::documents::money;
use super::ops::{self, date, decimal, positive_amount, NewInvoiceInput, NewPayment};
use super::reports::{aging_csv, decode_cursor, encode_cursor, pdf_response};
use super::run;
use crate::auth::Principal;
use crate::console::{
    bad_address_page, capitalise, company_for_tab, csrf_refusal, internal_page, not_found_page,
    path_uuid, percent_encode, redirect_with_flash, CompanyTab, CompanyTabs, Cookies,
};
use crate::error::ApiError;
use crate::AppState;

/// Invoices a page of the list shows.
const PAGE_SIZE: i64 = 50;
/// Payments the payments list shows.
const PAYMENTS_SHOWN: i64 = 100;
/// Invoices and payments a company's Billing tab shows.
const RECENT: i64 = 20;
/// Rows the invoice form starts with, and the most it takes.
const START_ROWS: usize = 3;
const MAX_ROWS: usize = 100;
/// The longest reason or reference a form takes.
const MAX_TEXT: usize = 500;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/billing", get(overview_page))
        .route("/billing/run", post(run_billing))
        .route("/billing/invoices", get(invoices_page).post(create_invoice))
        .route("/billing/invoices/new", get(new_invoice_page))
        .route("/billing/invoices/{id}", get(invoice_page))
        .route("/billing/invoices/{id}/pdf", get(invoice_pdf))
        .route("/billing/invoices/{id}/issue", post(issue_invoice))
        .route("/billing/invoices/{id}/void", post(void_invoice))
        .route("/billing/invoices/{id}/credit-notes", post(credit_invoice))
        .route("/billing/payments", get(payments_page).post(create_payment))
        .route("/billing/payments/new", get(new_payment_page))
        .route("/billing/payments/{id}", get(payment_page))
        .route("/billing/payments/{id}/unapply", post(unapply_payment))
        .route("/billing/payments/{id}/refund", post(refund_payment))
        .route("/billing/payments/{id}/reverse", post(reverse_payment))
        .route("/billing/aging", get(aging_page))
        .route("/billing/aging.csv", get(aging_csv_download))
        .route(
            "/companies/{id}/billing",
            get(company_page).post(save_terms),
        )
        .route("/companies/{id}/billing/stop", post(stop_billing))
        .route("/companies/{id}/statement", get(statement_page))
        .route("/companies/{id}/statement.pdf", get(statement_pdf))
        .route("/settings/billing", get(settings_page).post(save_settings))
        .route("/billing/services", get(services_page).post(create_service))
        .route(
            "/billing/services/{id}",
            get(service_page).post(update_service),
        )
        .route("/companies/{id}/subscriptions", post(subscribe_company))
        .route(
            "/companies/{id}/subscriptions/{subscription_id}/end",
            post(end_subscription),
        )
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

/// The fields of a form or query string as name/value pairs.
type Pairs = Vec<(String, String)>;

fn value<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

fn trimmed(pairs: &[(String, String)], name: &str) -> String {
    value(pairs, name).trim().to_owned()
}

/// The CSRF check and the role check of a form (`Some`: the answer instead).
fn refused(
    me: &Principal,
    cookies: &Cookies,
    headers: &HeaderMap,
    pairs: &[(String, String)],
    action: Action,
) -> Option<Response> {
    if let Some(refused) = csrf_refusal(cookies, headers, value(pairs, "csrf")) {
        return Some(refused);
    }
    me.require(action).err().map(IntoResponse::into_response)
}

/// A field's message as a sentence: "Amount must be more than 0."
fn sentence(label: &str, message: &str) -> String {
    let text = if label.is_empty() {
        capitalise(message)
    } else {
        format!("{label} {message}")
    };
    if text.ends_with('.') {
        text
    } else {
        format!("{text}.")
    }
}

/// Adds a message to a field's messages.
fn join(slot: &mut Option<String>, message: String) {
    *slot = Some(match slot.take() {
        Some(before) => format!("{before} {message}"),
        None => message,
    });
}

/// How the organisation reads money and dates.
struct Books {
    currency: String,
    today: NaiveDate,
}

impl Books {
    fn of(tenant: &Tenant) -> Self {
        Self {
            currency: tenant
                .currency
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default(),
            today: run::today(tenant),
        }
    }

    /// `1,250.00 USD`.
    fn money(&self, amount: Decimal) -> String {
        format!("{} {}", money(amount), self.currency)
            .trim_end()
            .to_owned()
    }
}

async fn tenant_of(state: &AppState, me: &Principal) -> Result<Tenant, ApiError> {
    crate::notify::ops::load_tenant(state, me.tenant_id).await
}

async fn books(state: &AppState, me: &Principal) -> Result<(Tenant, Books), ApiError> {
    let tenant = tenant_of(state, me).await?;
    let books = Books::of(&tenant);
    Ok((tenant, books))
}

fn day(date: Option<NaiveDate>) -> String {
    date.map(|d| d.to_string()).unwrap_or_default()
}

/// Waits (bounded) until the `receivables` read model shows the company's ledger as it is now,
/// so the page a form redirects to shows what it did.
async fn wait_ledger(state: &AppState, me: &Principal, company_id: Uuid) {
    if let Ok((_, version)) = state
        .store
        .load::<Ledger>(me.tenant_id, &ledger_id(company_id))
        .await
    {
        state
            .read_your_writes(&["receivables"], "ledger", &company_id.to_string(), version)
            .await;
    }
}

/// A select's option.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

/// Options from `(value, label)` pairs; a current value not among them stays selected (a bad
/// filter is shown as typed, next to its message).
fn choices(values: Vec<(String, String)>, current: &str) -> Vec<Choice> {
    let mut out: Vec<Choice> = values
        .into_iter()
        .map(|(value, label)| Choice {
            selected: value == current,
            value,
            label,
        })
        .collect();
    if !current.is_empty() && !out.iter().any(|c| c.selected) {
        out.push(Choice {
            value: current.to_owned(),
            label: current.to_owned(),
            selected: true,
        });
    }
    out
}

/// The tenant's companies, by name.
async fn company_names(state: &AppState, tenant_id: Uuid) -> Result<Vec<(Uuid, String)>, ApiError> {
    Ok(sqlx::query_as(
        "SELECT id, name FROM companies WHERE tenant_id = $1 ORDER BY lower(name), id LIMIT 1000",
    )
    .bind(tenant_id)
    .fetch_all(&state.pool)
    .await?)
}

fn company_choices(companies: Vec<(Uuid, String)>, first: &str, current: &str) -> Vec<Choice> {
    let mut values = vec![(String::new(), first.to_owned())];
    values.extend(
        companies
            .into_iter()
            .map(|(id, name)| (id.to_string(), name)),
    );
    choices(values, current)
}

fn method_label(method: &str) -> &'static str {
    match method {
        "check" => "Check",
        "cash" => "Cash",
        "bank_transfer" => "Bank transfer",
        "card" => "Card",
        _ => "Other",
    }
}

fn method_choices(current: &str) -> Vec<Choice> {
    let mut values = vec![(String::new(), "Choose…".to_owned())];
    values.extend(
        Method::ALL
            .iter()
            .map(|m| (m.as_str().to_owned(), method_label(m.as_str()).to_owned())),
    );
    choices(values, current)
}

/// The invoice statuses a list filters by.
const STATUSES: [(&str, &str); 6] = [
    ("open", "Open (still owed)"),
    ("draft", "Draft"),
    ("issued", "Issued"),
    ("partially_paid", "Partly paid"),
    ("paid", "Paid"),
    ("void", "Void"),
];

fn status_label(status: &str) -> &'static str {
    match status {
        "draft" => "Draft",
        "issued" => "Issued",
        "partially_paid" => "Partly paid",
        "paid" => "Paid",
        "void" => "Void",
        _ => "Unknown",
    }
}

fn status_badge(status: &str) -> &'static str {
    match status {
        "paid" => "sla",
        "issued" => "sla sla-met",
        "partially_paid" => "sla sla-warning",
        _ => "sla sla-paused",
    }
}

/// An invoice as lists and its page show it.
struct InvoiceItem {
    id: Uuid,
    /// The number, or "Draft".
    number: String,
    /// "Invoice 12" or "Draft invoice".
    title: String,
    company_id: Uuid,
    company_name: String,
    issue_date: String,
    due_date: String,
    total: String,
    balance: String,
    status: String,
    label: &'static str,
    badge: &'static str,
    /// Still owed after its due date: "Overdue 3 days".
    overdue: Option<String>,
}

impl InvoiceItem {
    fn of(row: &InvoiceRow, books: &Books) -> Self {
        let overdue = row
            .due_date
            .filter(|due| row.balance > Decimal::ZERO && *due < books.today)
            .map(|due| match (books.today - due).num_days() {
                1 => "Overdue 1 day".to_owned(),
                days => format!("Overdue {days} days"),
            });
        Self {
            id: row.id,
            number: row
                .number
                .map_or_else(|| "Draft".to_owned(), |n| n.to_string()),
            title: row
                .number
                .map_or_else(|| "Draft invoice".to_owned(), |n| format!("Invoice {n}")),
            company_id: row.company_id,
            company_name: row.company_name.clone(),
            issue_date: day(row.issue_date),
            due_date: day(row.due_date),
            total: books.money(row.total),
            balance: books.money(row.balance),
            label: status_label(&row.status),
            badge: status_badge(&row.status),
            status: row.status.clone(),
            overdue,
        }
    }
}

/// A payment as lists show it.
struct PaymentItem {
    id: Uuid,
    company_id: Uuid,
    company_name: String,
    received_on: String,
    amount: String,
    method: &'static str,
    reference: String,
    applied: String,
    unapplied: String,
    refunded: String,
    has_refund: bool,
    label: &'static str,
    badge: &'static str,
}

impl PaymentItem {
    fn of(row: &PaymentRow, books: &Books) -> Self {
        let (label, badge) = if row.reversed {
            ("Reversed", "sla sla-breached")
        } else if row.unapplied > Decimal::ZERO {
            ("Credit left", "sla sla-met")
        } else {
            ("Applied", "sla")
        };
        Self {
            id: row.id,
            company_id: row.company_id,
            company_name: row.company_name.clone(),
            received_on: row.received_on.to_string(),
            amount: books.money(row.amount),
            method: method_label(&row.method),
            reference: row.reference.clone(),
            applied: books.money(row.allocated),
            unapplied: books.money(row.unapplied),
            refunded: books.money(row.refunded),
            has_refund: row.refunded > Decimal::ZERO,
            label,
            badge,
        }
    }
}

/// What a refused command becomes on a form: messages for its fields (422), or a refusal on
/// top (409 and the like), or a page of its own (404, 500).
enum Refusal {
    Fields(Vec<ValidationError>),
    Problem(StatusCode, String),
    Page(Response),
}

fn refusal(error: ApiError) -> Refusal {
    match error {
        ApiError::Invalid(errors) => Refusal::Fields(errors),
        ApiError::Rejected { status, detail } => Refusal::Problem(status, sentence("", &detail)),
        ApiError::Conflict(message) => {
            Refusal::Problem(StatusCode::CONFLICT, sentence("", &message))
        }
        ApiError::BadRequest(message) => {
            Refusal::Problem(StatusCode::BAD_REQUEST, sentence("", &message))
        }
        ApiError::NotFound(_) => Refusal::Page(not_found_page()),
        error @ ApiError::Internal(_) => Refusal::Page(internal_page(error)),
    }
}

/// A text field of at most `MAX_TEXT` characters.
fn short_text(
    errors: &mut Vec<ValidationError>,
    field: &'static str,
    text: &str,
    max: usize,
) -> String {
    let text = text.trim().to_owned();
    if text.chars().count() > max {
        errors.push(ValidationError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    text
}

/// A required amount of money above zero.
fn required_amount(
    errors: &mut Vec<ValidationError>,
    field: &'static str,
    text: &str,
) -> Option<Decimal> {
    if text.is_empty() {
        errors.push(ValidationError::new(field, "is required"));
        return None;
    }
    positive_amount(field, text)
        .map_err(|e| errors.push(e))
        .ok()
}

/// A date field, `default` when empty.
fn date_or(
    errors: &mut Vec<ValidationError>,
    field: &'static str,
    text: &str,
    default: Option<NaiveDate>,
) -> Option<NaiveDate> {
    if text.trim().is_empty() {
        if default.is_none() {
            errors.push(ValidationError::new(field, "is required"));
        }
        return default;
    }
    date(field, text).map_err(|e| errors.push(e)).ok()
}

// ---------------------------------------------------------------------------------------------
// The overview and the billing run

/// An invoice a preview would make.
struct PreviewRow {
    company_id: Uuid,
    company_name: String,
    period: String,
    issue_date: String,
    due_date: String,
    total: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "billing_overview.html")]
struct OverviewPage {
    flash: Option<String>,
    csrf: String,
    today: String,
    owed: String,
    overdue: String,
    credit: String,
    net: String,
    open_count: i64,
    overdue_count: i64,
    draft_count: i64,
    may_manage: bool,
    may_run: bool,
    as_of: String,
    as_of_error: Option<String>,
    /// A preview's invoices (`None`: no preview asked for).
    preview: Option<Vec<PreviewRow>>,
    preview_as_of: String,
    preview_total: String,
}

async fn overview(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    fill: impl FnOnce(&mut OverviewPage),
    status: StatusCode,
) -> Response {
    let loaded = async {
        let (_, books) = books(state, me).await?;
        let aging = read::aging(&state.pool, me.tenant_id, books.today).await?;
        let counts: (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE balance > 0),
                    count(*) FILTER (WHERE balance > 0 AND due_date < $2),
                    count(*) FILTER (WHERE status = 'draft')
               FROM invoices WHERE tenant_id = $1",
        )
        .bind(me.tenant_id)
        .bind(books.today)
        .fetch_one(&state.pool)
        .await?;
        Ok::<_, ApiError>((books, aging, counts))
    };
    let (books, aging, (open_count, overdue_count, draft_count)) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let t = &aging.totals;
    let overdue = t.days_1_30 + t.days_31_60 + t.days_61_90 + t.days_over_90;
    let mut page = OverviewPage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        today: books.today.to_string(),
        owed: books.money(t.current + overdue),
        overdue: books.money(overdue),
        credit: books.money(t.unapplied_credit),
        net: books.money(t.total),
        open_count,
        overdue_count,
        draft_count,
        may_manage: me.may(Action::ManageBilling),
        may_run: me.may(Action::RunBilling),
        as_of: books.today.to_string(),
        as_of_error: None,
        preview: None,
        preview_as_of: String::new(),
        preview_total: String::new(),
    };
    fill(&mut page);
    (status, page).into_response()
}

async fn overview_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    overview(&state, &me, &cookies, |_| {}, StatusCode::OK).await
}

/// The run form: `action=preview` lists what a run would bill (nothing is appended),
/// `action=run` bills it.
async fn run_billing(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::RunBilling) {
        return refused;
    }
    let preview = value(&pairs, "action") != "run";
    let as_of_text = trimmed(&pairs, "as_of");
    let (tenant, books) = match books(&state, &me).await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let as_of = if as_of_text.is_empty() {
        run::today(&tenant)
    } else {
        match date("as_of", &as_of_text) {
            Ok(d) => d,
            Err(e) => {
                let message = sentence("The date", &e.message);
                return overview(
                    &state,
                    &me,
                    &cookies,
                    |page| {
                        page.as_of = as_of_text;
                        page.as_of_error = Some(message);
                    },
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await;
            }
        }
    };
    let billed = match run::run(&state, me.tenant_id, as_of, preview, &me.actor()).await {
        Ok(billed) => billed,
        Err(error) => return internal_page(error),
    };
    if preview {
        let names: HashMap<Uuid, String> = match company_names(&state, me.tenant_id).await {
            Ok(names) => names.into_iter().collect(),
            Err(error) => return internal_page(error),
        };
        let total: Decimal = billed.iter().map(|b| b.total).sum();
        let rows = billed
            .iter()
            .map(|b| PreviewRow {
                company_id: b.company_id,
                company_name: names.get(&b.company_id).cloned().unwrap_or_default(),
                period: if b.period_start == b.period_end {
                    b.period_start.to_string()
                } else {
                    format!("{} – {}", b.period_start, b.period_end)
                },
                issue_date: b.issue_date.to_string(),
                due_date: b.due_date.to_string(),
                total: books.money(b.total),
            })
            .collect();
        let preview_total = books.money(total);
        return overview(
            &state,
            &me,
            &cookies,
            |page| {
                page.as_of = as_of.to_string();
                page.preview_as_of = as_of.to_string();
                page.preview_total = preview_total;
                page.preview = Some(rows);
            },
            StatusCode::OK,
        )
        .await;
    }
    let companies: BTreeSet<Uuid> = billed.iter().map(|b| b.company_id).collect();
    for company_id in companies {
        wait_ledger(&state, &me, company_id).await;
    }
    let message = match billed.len() {
        0 => format!("No invoices made: nothing was due up to {as_of}."),
        1 => format!("1 invoice made (billing up to {as_of})."),
        n => format!("{n} invoices made (billing up to {as_of})."),
    };
    redirect_with_flash("/billing/invoices", &message)
}

// ---------------------------------------------------------------------------------------------
// The invoice list

#[derive(Debug, Clone, Default)]
struct ListForm {
    company_id: String,
    status: String,
    before: String,
}

impl ListForm {
    fn from_pairs(pairs: &[(String, String)]) -> Self {
        Self {
            company_id: trimmed(pairs, "company_id"),
            status: trimmed(pairs, "status"),
            before: trimmed(pairs, "before"),
        }
    }

    fn filtered(&self) -> bool {
        !(self.company_id.is_empty() && self.status.is_empty())
    }

    /// `/billing/invoices?...` with these filters and, when given, a cursor.
    fn href(&self, before: Option<&str>) -> String {
        let params = [
            ("company_id", self.company_id.as_str()),
            ("status", self.status.as_str()),
            ("before", before.unwrap_or_default()),
        ];
        let query: Vec<String> = params
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect();
        if query.is_empty() {
            "/billing/invoices".to_owned()
        } else {
            format!("/billing/invoices?{}", query.join("&"))
        }
    }
}

#[derive(Debug, Default)]
struct ListErrors {
    company_id: Option<String>,
    status: Option<String>,
    /// About the page link, shown above the table.
    page: Option<String>,
}

impl ListErrors {
    fn any(&self) -> bool {
        self.company_id.is_some() || self.status.is_some() || self.page.is_some()
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "billing_invoices.html")]
struct InvoicesPage {
    flash: Option<String>,
    form: ListForm,
    errors: ListErrors,
    companies: Vec<Choice>,
    statuses: Vec<Choice>,
    rows: Vec<InvoiceItem>,
    older: Option<String>,
    newest: Option<String>,
    may_manage: bool,
}

/// The filters checked: the read model's filter, or the messages.
fn invoice_filter(form: &ListForm) -> Result<InvoiceFilter, ListErrors> {
    let mut errors = ListErrors::default();
    let company_id = match form.company_id.as_str() {
        "" => None,
        text => match Uuid::parse_str(text) {
            Ok(id) => Some(id),
            Err(_) => {
                errors.company_id = Some("Company must be one of the list.".into());
                None
            }
        },
    };
    let status = match form.status.as_str() {
        "" => None,
        s if STATUSES.iter().any(|(v, _)| *v == s) => Some(s.to_owned()),
        _ => {
            errors.status = Some(
                "Status must be one of open, draft, issued, partially_paid, paid, void.".into(),
            );
            None
        }
    };
    let before = match form.before.as_str() {
        "" => None,
        text => match decode_cursor(text) {
            Some(c) => Some(c),
            None => {
                errors.page = Some(
                    "This page link is not valid: start again from the newest invoices.".into(),
                );
                None
            }
        },
    };
    if errors.any() {
        return Err(errors);
    }
    Ok(InvoiceFilter {
        company_id,
        status,
        before,
    })
}

async fn invoices_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    query: Result<Query<Pairs>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let Ok(Query(pairs)) = query else {
        return bad_address_page("The filters in this address cannot be read.");
    };
    let form = ListForm::from_pairs(&pairs);
    let loaded = async {
        let (_, books) = books(&state, &me).await?;
        let companies = company_names(&state, me.tenant_id).await?;
        Ok::<_, ApiError>((books, companies))
    };
    let (books, companies) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let mut statuses = vec![(String::new(), "Any status".to_owned())];
    statuses.extend(
        STATUSES
            .iter()
            .map(|(v, l)| ((*v).to_owned(), (*l).to_owned())),
    );
    let mut page = InvoicesPage {
        flash: cookies.flash.clone(),
        errors: ListErrors::default(),
        companies: company_choices(companies, "All companies", &form.company_id),
        statuses: choices(statuses, &form.status),
        rows: Vec::new(),
        older: None,
        newest: None,
        may_manage: me.may(Action::ManageBilling),
        form,
    };
    let filter = match invoice_filter(&page.form) {
        Ok(filter) => filter,
        Err(errors) => {
            page.errors = errors;
            return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
        }
    };
    let mut rows =
        match read::list_invoices(&state.pool, me.tenant_id, &filter, PAGE_SIZE + 1).await {
            Ok(rows) => rows,
            Err(error) => return internal_page(error),
        };
    if rows.len() as i64 > PAGE_SIZE {
        rows.truncate(PAGE_SIZE as usize);
        page.older = rows
            .last()
            .map(|r| page.form.href(Some(&encode_cursor(r.cursor()))));
    }
    if filter.before.is_some() {
        page.newest = Some(page.form.href(None));
    }
    page.rows = rows.iter().map(|r| InvoiceItem::of(r, &books)).collect();
    page.into_response()
}

// ---------------------------------------------------------------------------------------------
// One invoice

struct LineView {
    description: String,
    quantity: String,
    unit_price: String,
    tax_rate: String,
    net: String,
    tax: String,
}

struct AppliedView {
    payment_id: Uuid,
    received_on: String,
    on_date: String,
    method: &'static str,
    reference: String,
    amount: String,
}

struct CreditNoteView {
    number: i64,
    date: String,
    amount: String,
    reason: String,
}

#[derive(Default)]
struct IssueForm {
    issue_date: String,
    due_date: String,
    issue_date_error: Option<String>,
    due_date_error: Option<String>,
}

#[derive(Default)]
struct VoidForm {
    reason: String,
    reason_error: Option<String>,
}

#[derive(Default)]
struct CreditForm {
    amount: String,
    date: String,
    reason: String,
    amount_error: Option<String>,
    date_error: Option<String>,
    reason_error: Option<String>,
}

/// The payment form (on its own page, and on an invoice's page for that invoice).
#[derive(Default)]
struct PayForm {
    amount: String,
    received_on: String,
    method: String,
    reference: String,
    /// The invoices ticked.
    invoices: Vec<String>,
    amount_error: Option<String>,
    received_on_error: Option<String>,
    method_error: Option<String>,
    reference_error: Option<String>,
    invoices_error: Option<String>,
}

impl PayForm {
    fn absorb(&mut self, errors: Vec<ValidationError>) {
        for e in errors {
            let (slot, label) = match e.field {
                "amount" => (&mut self.amount_error, "The amount"),
                "received_on" => (&mut self.received_on_error, "The date received"),
                "method" => (&mut self.method_error, "The method"),
                "reference" => (&mut self.reference_error, "The reference"),
                _ => (&mut self.invoices_error, ""),
            };
            join(slot, sentence(label, &e.message));
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "billing_invoice.html")]
struct InvoicePage {
    flash: Option<String>,
    csrf: String,
    /// A refusal, shown on top.
    problem: Option<String>,
    invoice: InvoiceItem,
    period: Option<String>,
    subtotal: String,
    tax: String,
    paid: String,
    credited: String,
    reminders: i32,
    lines: Vec<LineView>,
    payments: Vec<AppliedView>,
    credit_notes: Vec<CreditNoteView>,
    may_manage: bool,
    can_issue: bool,
    can_void: bool,
    /// Lines of work-order time and materials (a void may return them to unbilled work).
    work_lines: usize,
    can_credit: bool,
    can_pay: bool,
    terms_days: i64,
    issue: IssueForm,
    void: VoidForm,
    credit: CreditForm,
    pay: PayForm,
    methods: Vec<Choice>,
}

/// An invoice of the tenant with its company and the company's ledger (`None`: no such
/// invoice here).
async fn invoice_books(
    state: &AppState,
    me: &Principal,
    id: Uuid,
) -> Result<Option<(InvoiceRow, Company, Ledger)>, ApiError> {
    let Some(row) = read::get_invoice(&state.pool, me.tenant_id, id).await? else {
        return Ok(None);
    };
    let (company, ledger) = ops::company(state, me, row.company_id).await?;
    Ok(Some((row, company, ledger)))
}

/// An invoice's lines as its ledger has them.
fn lines_of(ledger: &Ledger, id: Uuid) -> Vec<domain::billing::Line> {
    ledger
        .invoices
        .get(&id)
        .map(|i| i.lines.clone())
        .unwrap_or_default()
}

async fn render_invoice(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    id: Uuid,
    status: StatusCode,
    fill: impl FnOnce(&mut InvoicePage),
) -> Response {
    let loaded = async {
        let Some((row, company, ledger)) = invoice_books(state, me, id).await? else {
            return Ok(None);
        };
        let (_, books) = books(state, me).await?;
        let payments = read::invoice_payments(&state.pool, me.tenant_id, id).await?;
        let credit_notes = read::credit_notes_of(&state.pool, me.tenant_id, id).await?;
        Ok::<_, ApiError>(Some((row, books, company, ledger, payments, credit_notes)))
    };
    let (row, books, company, ledger, payments, credit_notes) = match loaded.await {
        Ok(Some(loaded)) => loaded,
        Ok(None) | Err(ApiError::NotFound(_)) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let lines = lines_of(&ledger, id);
    let may_manage = me.may(Action::ManageBilling);
    let issued = row.number.is_some() && row.status != "void";
    let open = issued && row.balance > Decimal::ZERO;
    let today = books.today.to_string();
    let mut page = InvoicePage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        problem: None,
        period: match (row.period_start, row.period_end) {
            (Some(s), Some(e)) => Some(format!("{s} – {e}")),
            _ => None,
        },
        subtotal: books.money(row.subtotal),
        tax: books.money(row.tax),
        paid: books.money(row.paid),
        credited: books.money(row.credited),
        reminders: row.reminders,
        lines: lines
            .iter()
            .map(|l| LineView {
                description: l.description.clone(),
                quantity: l.quantity.normalize().to_string(),
                unit_price: money(l.unit_price),
                tax_rate: l
                    .tax_rate
                    .map(|r| format!("{}%", r.normalize()))
                    .unwrap_or_default(),
                net: money(l.net),
                tax: money(l.tax),
            })
            .collect(),
        payments: payments
            .iter()
            .map(|p| AppliedView {
                payment_id: p.payment_id,
                received_on: p.received_on.to_string(),
                on_date: p.on_date.to_string(),
                method: method_label(&p.method),
                reference: p.reference.clone(),
                amount: books.money(p.amount),
            })
            .collect(),
        credit_notes: credit_notes
            .iter()
            .map(|c| CreditNoteView {
                number: c.number,
                date: c.date.to_string(),
                amount: books.money(c.amount),
                reason: c.reason.clone(),
            })
            .collect(),
        may_manage,
        can_issue: may_manage && row.status == "draft",
        can_void: may_manage && row.status != "void" && row.paid <= Decimal::ZERO,
        work_lines: lines.iter().filter(|l| l.is_work()).count(),
        can_credit: may_manage && open,
        can_pay: may_manage && open,
        terms_days: company
            .billing
            .as_ref()
            .map_or(14, |b| i64::from(b.payment_terms_days)),
        issue: IssueForm {
            issue_date: today.clone(),
            ..Default::default()
        },
        void: VoidForm::default(),
        credit: CreditForm {
            date: today.clone(),
            ..Default::default()
        },
        pay: PayForm {
            amount: row.balance.to_string(),
            received_on: today,
            invoices: vec![id.to_string()],
            ..Default::default()
        },
        methods: Vec::new(),
        invoice: InvoiceItem::of(&row, &books),
    };
    fill(&mut page);
    page.methods = method_choices(&page.pay.method);
    (status, page).into_response()
}

async fn invoice_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let Some(id) = path_uuid(path) else {
        return not_found_page();
    };
    render_invoice(&state, &me, &cookies, id, StatusCode::OK, |_| {}).await
}

async fn invoice_pdf(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let Some(id) = path_uuid(path) else {
        return not_found_page();
    };
    let row = match read::get_invoice(&state.pool, me.tenant_id, id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    match super::documents::invoice_file(&state, me.tenant_id, row.company_id, id).await {
        Ok(Some((name, bytes))) => pdf_response(&name, bytes),
        Ok(None) => not_found_page(),
        Err(error) => internal_page(error),
    }
}

/// The invoice a form acts on (`Err`: the page to answer instead).
async fn invoice_of(
    state: &AppState,
    me: &Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<InvoiceRow, Response> {
    let Some(id) = path_uuid(path) else {
        return Err(not_found_page());
    };
    match read::get_invoice(&state.pool, me.tenant_id, id).await {
        Ok(Some(row)) => Ok(row),
        Ok(None) => Err(not_found_page()),
        Err(error) => Err(internal_page(error)),
    }
}

async fn issue_invoice(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::ManageBilling) {
        return refused;
    }
    let row = match invoice_of(&state, &me, path).await {
        Ok(row) => row,
        Err(page) => return page,
    };
    let loaded = async {
        let (_, books) = books(&state, &me).await?;
        let (company, _) = ops::company(&state, &me, row.company_id).await?;
        Ok::<_, ApiError>((books, company))
    };
    let (books, company) = match loaded.await {
        Ok(loaded) => loaded,
        Err(ApiError::NotFound(_)) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let form = IssueForm {
        issue_date: trimmed(&pairs, "issue_date"),
        due_date: trimmed(&pairs, "due_date"),
        ..Default::default()
    };
    let mut errors = Vec::new();
    let issue_date = date_or(
        &mut errors,
        "issue_date",
        &form.issue_date,
        Some(books.today),
    );
    // Empty: the company's payment terms after the issue date.
    let due_date = match form.due_date.as_str() {
        "" => None,
        text => date("due_date", text).map_err(|e| errors.push(e)).ok(),
    };
    let outcome = match (issue_date, errors.is_empty()) {
        (Some(issue_date), true) => {
            let due_date = due_date.unwrap_or_else(|| {
                let terms = company
                    .billing
                    .as_ref()
                    .map_or(14, |b| i64::from(b.payment_terms_days));
                issue_date + Duration::days(terms)
            });
            if due_date < issue_date {
                Err(ApiError::Invalid(vec![ValidationError::new(
                    "due_date",
                    "must not be before the issue date",
                )]))
            } else {
                ops::issue_draft(
                    &state,
                    &me.meta(),
                    row.company_id,
                    row.id,
                    issue_date,
                    due_date,
                )
                .await
            }
        }
        _ => Err(ApiError::Invalid(errors)),
    };
    match outcome {
        Ok(ledger) => {
            wait_ledger(&state, &me, row.company_id).await;
            let number = ledger
                .invoices
                .get(&row.id)
                .and_then(|i| i.number)
                .unwrap_or_default();
            redirect_with_flash(
                &format!("/billing/invoices/{}", row.id),
                &format!("Invoice {number} issued."),
            )
        }
        Err(error) => {
            let (status, problem, errors) = match refusal(error) {
                Refusal::Fields(errors) => (StatusCode::UNPROCESSABLE_ENTITY, None, errors),
                Refusal::Problem(status, message) => (status, Some(message), Vec::new()),
                Refusal::Page(page) => return page,
            };
            render_invoice(&state, &me, &cookies, row.id, status, |page| {
                page.problem = problem;
                page.issue = form;
                for e in errors {
                    let (slot, label) = match e.field {
                        "issue_date" => (&mut page.issue.issue_date_error, "The issue date"),
                        _ => (&mut page.issue.due_date_error, "The due date"),
                    };
                    join(slot, sentence(label, &e.message));
                }
            })
            .await
        }
    }
}

async fn void_invoice(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::ManageBilling) {
        return refused;
    }
    let row = match invoice_of(&state, &me, path).await {
        Ok(row) => row,
        Err(page) => return page,
    };
    let (_, books) = match books(&state, &me).await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let mut errors = Vec::new();
    let reason = short_text(&mut errors, "reason", value(&pairs, "reason"), MAX_TEXT);
    let outcome = if errors.is_empty() {
        ops::on_ledger(
            &state,
            &me.meta(),
            row.company_id,
            LedgerCommand::VoidInvoice {
                invoice_id: row.id,
                on: books.today,
                reason: reason.clone(),
                // An unticked box sends nothing: `work_shown` says the form offered it.
                release_work: value(&pairs, "work_shown") != "1"
                    || value(&pairs, "release_work") == "on",
            },
        )
        .await
    } else {
        Err(ApiError::Invalid(errors))
    };
    match outcome {
        Ok(_) => {
            wait_ledger(&state, &me, row.company_id).await;
            let name = row
                .number
                .map_or_else(|| "The draft".to_owned(), |n| format!("Invoice {n}"));
            redirect_with_flash(
                &format!("/billing/invoices/{}", row.id),
                &format!("{name} is void. To bill it again corrected, use Copy to a new invoice."),
            )
        }
        Err(error) => {
            let (status, problem, errors) = match refusal(error) {
                Refusal::Fields(errors) => (StatusCode::UNPROCESSABLE_ENTITY, None, errors),
                Refusal::Problem(status, message) => (status, Some(message), Vec::new()),
                Refusal::Page(page) => return page,
            };
            render_invoice(&state, &me, &cookies, row.id, status, |page| {
                page.problem = problem;
                page.void.reason = reason;
                for e in errors {
                    join(
                        &mut page.void.reason_error,
                        sentence("The reason", &e.message),
                    );
                }
            })
            .await
        }
    }
}

async fn credit_invoice(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::ManageBilling) {
        return refused;
    }
    let row = match invoice_of(&state, &me, path).await {
        Ok(row) => row,
        Err(page) => return page,
    };
    let (_, books) = match books(&state, &me).await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let form = CreditForm {
        amount: trimmed(&pairs, "amount"),
        date: trimmed(&pairs, "date"),
        reason: value(&pairs, "reason").to_owned(),
        ..Default::default()
    };
    let mut errors = Vec::new();
    let amount = required_amount(&mut errors, "amount", &form.amount);
    let on = date_or(&mut errors, "date", &form.date, Some(books.today));
    let reason = short_text(&mut errors, "reason", &form.reason, MAX_TEXT);
    let outcome = match (amount, on, errors.is_empty()) {
        (Some(amount), Some(on), true) => {
            ops::credit_note(
                &state,
                &me.meta(),
                row.company_id,
                row.id,
                amount,
                on,
                reason,
            )
            .await
        }
        _ => Err(ApiError::Invalid(errors)),
    };
    match outcome {
        Ok((credit_note_id, ledger)) => {
            wait_ledger(&state, &me, row.company_id).await;
            let number = ledger
                .credit_notes
                .get(&credit_note_id)
                .map_or(0, |c| c.number);
            redirect_with_flash(
                &format!("/billing/invoices/{}", row.id),
                &format!(
                    "Credit note {number} of {} issued.",
                    books.money(amount.unwrap_or_default())
                ),
            )
        }
        Err(error) => {
            let (status, problem, errors) = match refusal(error) {
                Refusal::Fields(errors) => (StatusCode::UNPROCESSABLE_ENTITY, None, errors),
                // Too large, too precise: about the amount.
                Refusal::Problem(StatusCode::UNPROCESSABLE_ENTITY, message) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    None,
                    vec![ValidationError::new("amount", message)],
                ),
                Refusal::Problem(status, message) => (status, Some(message), Vec::new()),
                Refusal::Page(page) => return page,
            };
            render_invoice(&state, &me, &cookies, row.id, status, |page| {
                page.problem = problem;
                page.credit = form;
                for e in errors {
                    let (slot, label) = match e.field {
                        "amount" if e.message.starts_with(char::is_uppercase) => {
                            (&mut page.credit.amount_error, "")
                        }
                        "amount" => (&mut page.credit.amount_error, "The amount"),
                        "date" => (&mut page.credit.date_error, "The date"),
                        _ => (&mut page.credit.reason_error, "The reason"),
                    };
                    join(slot, sentence(label, &e.message));
                }
            })
            .await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The ad-hoc invoice form

/// One line of the invoice form as typed.
#[derive(Default)]
struct LineRow {
    index: usize,
    description: String,
    quantity: String,
    unit_price: String,
    tax_rate: String,
    error: Option<String>,
}

impl LineRow {
    fn blank(&self) -> bool {
        self.description.trim().is_empty()
            && self.quantity.trim().is_empty()
            && self.unit_price.trim().is_empty()
            && self.tax_rate.trim().is_empty()
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "billing_invoice_new.html")]
struct InvoiceFormPage {
    flash: Option<String>,
    csrf: String,
    problem: Option<String>,
    companies: Vec<Choice>,
    company_id: String,
    company_error: Option<String>,
    rows: Vec<LineRow>,
    lines_error: Option<String>,
    issue_date: String,
    due_date: String,
    issue_date_error: Option<String>,
    due_date_error: Option<String>,
    /// Add the company's billable time and materials not invoiced yet.
    unbilled_work: bool,
    unbilled_error: Option<String>,
    currency: String,
    /// Where the lines came from, when the form copies an invoice.
    copied: Option<String>,
}

impl InvoiceFormPage {
    fn row_count(&self) -> usize {
        self.rows.len()
    }
}

async fn invoice_form(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    status: StatusCode,
    fill: impl FnOnce(&mut InvoiceFormPage),
) -> Response {
    let loaded = async {
        let (_, books) = books(state, me).await?;
        let companies = company_names(state, me.tenant_id).await?;
        Ok::<_, ApiError>((books, companies))
    };
    let (books, companies) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let mut page = InvoiceFormPage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        problem: None,
        companies: Vec::new(),
        company_id: String::new(),
        company_error: None,
        rows: (0..START_ROWS)
            .map(|index| LineRow {
                index,
                ..Default::default()
            })
            .collect(),
        lines_error: None,
        issue_date: books.today.to_string(),
        due_date: String::new(),
        issue_date_error: None,
        due_date_error: None,
        unbilled_work: false,
        unbilled_error: None,
        currency: books.currency.clone(),
        copied: None,
    };
    fill(&mut page);
    // An address naming no company of the tenant's starts with none chosen.
    if !companies
        .iter()
        .any(|(id, _)| id.to_string() == page.company_id)
    {
        page.company_id.clear();
    }
    page.companies = company_choices(companies, "Choose a company…", &page.company_id);
    (status, page).into_response()
}

async fn new_invoice_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    query: Result<Query<Pairs>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageBilling) {
        return refused.into_response();
    }
    let Ok(Query(pairs)) = query else {
        return bad_address_page("The address of this form cannot be read.");
    };
    let copy_of = trimmed(&pairs, "copy_of");
    if !copy_of.is_empty() {
        return copy_invoice_form(&state, &me, &cookies, &copy_of).await;
    }
    let company_id = trimmed(&pairs, "company_id");
    // From "Unbilled work": the company's waiting time and materials ticked.
    let unbilled_work = value(&pairs, "unbilled_work") == "on";
    invoice_form(&state, &me, &cookies, StatusCode::OK, |page| {
        page.company_id = company_id;
        page.unbilled_work = unbilled_work;
    })
    .await
}

/// The form filled with another invoice's company and lines ("Copy to a new invoice"), to
/// correct and issue: the way to bill again what a voided invoice billed, contract periods
/// included. Time and materials are not copied as text (each is billed once, through the
/// unbilled-work box): the box is ticked instead when the invoice had some.
async fn copy_invoice_form(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    copy_of: &str,
) -> Response {
    let Ok(id) = Uuid::parse_str(copy_of) else {
        return bad_address_page("The invoice to copy is not an invoice id.");
    };
    let (row, ledger) = match invoice_books(state, me, id).await {
        Ok(Some((row, _, ledger))) => (row, ledger),
        Ok(None) | Err(ApiError::NotFound(_)) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let lines = lines_of(&ledger, id);
    let (work, other): (Vec<_>, Vec<_>) = lines.into_iter().partition(|l| l.is_work());
    let skipped = other.len().saturating_sub(MAX_ROWS);
    let mut rows: Vec<LineRow> = other
        .iter()
        .take(MAX_ROWS)
        .enumerate()
        .map(|(index, l)| LineRow {
            index,
            description: l.description.clone(),
            quantity: l.quantity.normalize().to_string(),
            unit_price: l.unit_price.to_string(),
            tax_rate: l
                .tax_rate
                .map(|r| r.normalize().to_string())
                .unwrap_or_default(),
            error: None,
        })
        .collect();
    if rows.len() < MAX_ROWS {
        rows.push(LineRow {
            index: rows.len(),
            ..Default::default()
        });
    }
    let title = row.number.map_or_else(
        || "the draft invoice".to_owned(),
        |n| format!("invoice {n}"),
    );
    let void = row.status == "void";
    let plural = |n: usize, one: &'static str, many: &'static str| if n == 1 { one } else { many };
    let mut copied = format!("Copied from {title}{}", if void { " (void)" } else { "" });
    if other.is_empty() {
        copied.push_str(": it has no line to copy other than time and materials.");
    } else {
        copied.push_str(&format!(
            ": {} line{}. Check {}, then issue the new invoice.",
            other.len(),
            plural(other.len(), "", "s"),
            plural(other.len(), "it", "them")
        ));
    }
    if skipped > 0 {
        copied.push_str(&format!(
            " The form takes {MAX_ROWS} lines: the last {skipped} were left out."
        ));
    }
    // Time and materials are billed once: a void may have returned them to the unbilled work,
    // which the box adds; an invoice still standing bills them itself.
    if !work.is_empty() {
        copied.push_str(&format!(
            " Its {} line{} of time and materials {} not copied: {}",
            work.len(),
            plural(work.len(), "", "s"),
            plural(work.len(), "is", "are"),
            if void {
                "the box below adds the company's unbilled work, which has them again if the \
                 void returned them."
            } else {
                "each is billed once, by that invoice."
            }
        ));
    }
    let company_id = row.company_id.to_string();
    let tick = void && !work.is_empty();
    invoice_form(state, me, cookies, StatusCode::OK, move |page| {
        page.company_id = company_id;
        page.rows = rows;
        page.unbilled_work = tick;
        page.copied = Some(copied);
    })
    .await
}

/// The invoice form as sent, with its messages, to show again.
#[derive(Default)]
struct InvoiceAgain {
    company_id: String,
    issue_date: String,
    due_date: String,
    rows: Vec<LineRow>,
    problem: Option<String>,
    company_error: Option<String>,
    lines_error: Option<String>,
    issue_date_error: Option<String>,
    due_date_error: Option<String>,
    unbilled_work: bool,
    unbilled_error: Option<String>,
}

impl InvoiceAgain {
    fn any_error(&self) -> bool {
        self.company_error.is_some()
            || self.lines_error.is_some()
            || self.issue_date_error.is_some()
            || self.due_date_error.is_some()
            || self.unbilled_error.is_some()
            || self.rows.iter().any(|r| r.error.is_some())
    }

    async fn show(
        self,
        state: &AppState,
        me: &Principal,
        cookies: &Cookies,
        status: StatusCode,
    ) -> Response {
        invoice_form(state, me, cookies, status, move |page| {
            page.company_id = self.company_id;
            page.issue_date = self.issue_date;
            page.due_date = self.due_date;
            page.rows = self.rows;
            page.problem = self.problem;
            page.company_error = self.company_error;
            page.lines_error = self.lines_error;
            page.issue_date_error = self.issue_date_error;
            page.due_date_error = self.due_date_error;
            page.unbilled_work = self.unbilled_work;
            page.unbilled_error = self.unbilled_error;
        })
        .await
    }
}

async fn create_invoice(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::ManageBilling) {
        return refused;
    }
    let count = trimmed(&pairs, "rows")
        .parse::<usize>()
        .unwrap_or(START_ROWS)
        .clamp(1, MAX_ROWS);
    let mut form = InvoiceAgain {
        company_id: trimmed(&pairs, "company_id"),
        issue_date: trimmed(&pairs, "issue_date"),
        due_date: trimmed(&pairs, "due_date"),
        unbilled_work: value(&pairs, "unbilled_work") == "on",
        rows: (0..count)
            .map(|index| LineRow {
                index,
                description: value(&pairs, &format!("description_{index}")).to_owned(),
                quantity: trimmed(&pairs, &format!("quantity_{index}")),
                unit_price: trimmed(&pairs, &format!("unit_price_{index}")),
                tax_rate: trimmed(&pairs, &format!("tax_rate_{index}")),
                error: None,
            })
            .collect(),
        ..Default::default()
    };
    let action = value(&pairs, "action");
    if action == "add_line" {
        if form.rows.len() < MAX_ROWS {
            form.rows.push(LineRow {
                index: form.rows.len(),
                ..Default::default()
            });
        }
        return form.show(&state, &me, &cookies, StatusCode::OK).await;
    }
    let draft = action == "draft";
    let company_id = match form.company_id.as_str() {
        "" => {
            form.company_error = Some("Choose the company to invoice.".to_owned());
            None
        }
        text => match Uuid::parse_str(text) {
            Ok(id) => Some(id),
            Err(_) => return not_found_page(),
        },
    };
    // The lines typed, each with the row it came from.
    let mut inputs: Vec<(usize, LineInput)> = Vec::new();
    for row in form.rows.iter_mut().filter(|r| !r.blank()) {
        let quantity = if row.quantity.is_empty() {
            Ok(Decimal::ONE)
        } else {
            decimal("quantity", &row.quantity)
        };
        let price = if row.unit_price.is_empty() {
            Err(ValidationError::new("unit_price", "is required"))
        } else {
            decimal("unit_price", &row.unit_price)
        };
        let tax = match row.tax_rate.trim_end_matches('%').trim() {
            "" => Ok(None),
            text => decimal("tax_rate", text).map(Some),
        };
        match (quantity, price, tax) {
            (Ok(quantity), Ok(unit_price), Ok(tax_rate)) => inputs.push((
                row.index,
                LineInput {
                    description: row.description.clone(),
                    quantity,
                    unit_price,
                    tax_rate,
                },
            )),
            (q, p, t) => {
                for e in [q.err(), p.err(), t.err()].into_iter().flatten() {
                    let label = match e.field {
                        "quantity" => "The quantity",
                        "unit_price" => "The unit price",
                        _ => "The tax rate",
                    };
                    join(&mut row.error, sentence(label, &e.message));
                }
            }
        }
    }
    if form.rows.iter().all(LineRow::blank) && !form.unbilled_work {
        form.lines_error = Some(
            "An invoice needs at least one line (or tick the unbilled work to add it).".to_owned(),
        );
    }
    if draft && form.unbilled_work {
        form.unbilled_error = Some(
            "Unbilled work is billed when the invoice is issued: issue it now, or untick it to save a draft."
                .to_owned(),
        );
    }
    let mut errors = Vec::new();
    let issue_date = if draft {
        None
    } else {
        date_or(&mut errors, "issue_date", &form.issue_date, None)
    };
    let due_date = if draft || form.due_date.is_empty() {
        None
    } else {
        date("due_date", &form.due_date)
            .map_err(|e| errors.push(e))
            .ok()
    };
    for e in errors {
        let (slot, label) = match e.field {
            "issue_date" => (&mut form.issue_date_error, "The issue date"),
            _ => (&mut form.due_date_error, "The due date"),
        };
        join(slot, sentence(label, &e.message));
    }
    let (Some(company_id), false) = (company_id, form.any_error()) else {
        return form
            .show(&state, &me, &cookies, StatusCode::UNPROCESSABLE_ENTITY)
            .await;
    };
    let outcome = ops::create_invoice(
        &state,
        &me,
        &me.meta(),
        NewInvoiceInput {
            company_id,
            lines: inputs.iter().map(|(_, l)| l.clone()).collect(),
            issue_date,
            due_date,
            unbilled_work: form.unbilled_work,
        },
    )
    .await;
    match outcome {
        Ok((id, ledger)) => {
            wait_ledger(&state, &me, company_id).await;
            let message = match ledger.invoices.get(&id).and_then(|i| i.number) {
                Some(n) => format!("Invoice {n} issued."),
                None => "Draft saved: issue it when it is ready.".to_owned(),
            };
            redirect_with_flash(&format!("/billing/invoices/{id}"), &message)
        }
        Err(error) => {
            let (status, errors) = match refusal(error) {
                Refusal::Fields(errors) => (StatusCode::UNPROCESSABLE_ENTITY, errors),
                Refusal::Problem(status, message) => {
                    form.problem = Some(message);
                    (status, Vec::new())
                }
                Refusal::Page(page) => return page,
            };
            for e in errors {
                match e.field {
                    "lines" => {
                        // "line N: field message", N counting the lines sent.
                        let row = e
                            .message
                            .strip_prefix("line ")
                            .and_then(|rest| rest.split_once(": "))
                            .and_then(|(n, rest)| {
                                let n: usize = n.parse().ok()?;
                                let (index, _) = inputs.get(n.checked_sub(1)?)?;
                                Some((*index, rest.replace('_', " ")))
                            });
                        match row.and_then(|(index, m)| Some((form.rows.get_mut(index)?, m))) {
                            Some((r, message)) => join(&mut r.error, sentence("", &message)),
                            None => join(&mut form.lines_error, sentence("", &e.message)),
                        }
                    }
                    "due_date" => join(
                        &mut form.due_date_error,
                        sentence("The due date", &e.message),
                    ),
                    "unbilled_work" => join(&mut form.unbilled_error, sentence("", &e.message)),
                    _ => join(&mut form.lines_error, sentence("", &e.message)),
                }
            }
            form.show(&state, &me, &cookies, status).await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Payments

#[derive(Template, WebTemplate)]
#[template(path = "billing_payments.html")]
struct PaymentsPage {
    flash: Option<String>,
    company_id: String,
    company_error: Option<String>,
    companies: Vec<Choice>,
    rows: Vec<PaymentItem>,
    /// More payments than the page shows.
    more: bool,
    may_manage: bool,
}

async fn payments_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    query: Result<Query<Pairs>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let Ok(Query(pairs)) = query else {
        return bad_address_page("The filters in this address cannot be read.");
    };
    let company_text = trimmed(&pairs, "company_id");
    let loaded = async {
        let (_, books) = books(&state, &me).await?;
        let companies = company_names(&state, me.tenant_id).await?;
        Ok::<_, ApiError>((books, companies))
    };
    let (books, companies) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let mut page = PaymentsPage {
        flash: cookies.flash.clone(),
        companies: company_choices(companies, "All companies", &company_text),
        company_id: company_text,
        company_error: None,
        rows: Vec::new(),
        more: false,
        may_manage: me.may(Action::ManageBilling),
    };
    let company_id = match page.company_id.as_str() {
        "" => None,
        text => match Uuid::parse_str(text) {
            Ok(id) => Some(id),
            Err(_) => {
                page.company_error = Some("Company must be one of the list.".into());
                return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
            }
        },
    };
    let mut rows = match read::list_payments(
        &state.pool,
        me.tenant_id,
        company_id,
        PAYMENTS_SHOWN + 1,
    )
    .await
    {
        Ok(rows) => rows,
        Err(error) => return internal_page(error),
    };
    page.more = rows.len() as i64 > PAYMENTS_SHOWN;
    rows.truncate(PAYMENTS_SHOWN as usize);
    page.rows = rows.iter().map(|r| PaymentItem::of(r, &books)).collect();
    page.into_response()
}

/// An open invoice the payment form offers.
struct OpenInvoice {
    id: String,
    number: String,
    issue_date: String,
    due_date: String,
    balance: String,
    checked: bool,
    overdue: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "billing_payment_new.html")]
struct PaymentFormPage {
    flash: Option<String>,
    csrf: String,
    problem: Option<String>,
    /// The company paying; `None`: the page asks for it first.
    company: Option<(Uuid, String)>,
    companies: Vec<Choice>,
    form: PayForm,
    methods: Vec<Choice>,
    open: Vec<OpenInvoice>,
    currency: String,
}

async fn payment_form(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    company_id: Option<Uuid>,
    status: StatusCode,
    fill: impl FnOnce(&mut PaymentFormPage),
) -> Response {
    let loaded = async {
        let (_, books) = books(state, me).await?;
        let companies = company_names(state, me.tenant_id).await?;
        let open = match company_id {
            Some(company_id) => {
                read::list_invoices(
                    &state.pool,
                    me.tenant_id,
                    &InvoiceFilter {
                        company_id: Some(company_id),
                        status: Some("open".into()),
                        before: None,
                    },
                    500,
                )
                .await?
            }
            None => Vec::new(),
        };
        Ok::<_, ApiError>((books, companies, open))
    };
    let (books, companies, mut open) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let company = match company_id {
        Some(id) => match companies.iter().find(|(c, _)| *c == id) {
            Some((_, name)) => Some((id, name.clone())),
            None => return not_found_page(),
        },
        None => None,
    };
    // Oldest due first, as payments are applied.
    open.retain(|i| i.balance > Decimal::ZERO);
    open.sort_by_key(|i| (i.due_date, i.issue_date, i.number));
    let mut page = PaymentFormPage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        problem: None,
        company,
        companies: company_choices(companies, "Choose a company…", ""),
        form: PayForm {
            received_on: books.today.to_string(),
            ..Default::default()
        },
        methods: Vec::new(),
        open: Vec::new(),
        currency: books.currency.clone(),
    };
    fill(&mut page);
    page.methods = method_choices(&page.form.method);
    page.open = open
        .iter()
        .map(|i| OpenInvoice {
            id: i.id.to_string(),
            number: i.number.map(|n| n.to_string()).unwrap_or_default(),
            issue_date: day(i.issue_date),
            due_date: day(i.due_date),
            balance: books.money(i.balance),
            checked: page.form.invoices.contains(&i.id.to_string()),
            overdue: i.due_date.is_some_and(|d| d < books.today),
        })
        .collect();
    (status, page).into_response()
}

async fn new_payment_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    query: Result<Query<Pairs>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageBilling) {
        return refused.into_response();
    }
    let Ok(Query(pairs)) = query else {
        return bad_address_page("The address of this form cannot be read.");
    };
    let company_id = match trimmed(&pairs, "company_id").as_str() {
        "" => None,
        text => match Uuid::parse_str(text) {
            Ok(id) => Some(id),
            Err(_) => return not_found_page(),
        },
    };
    // "Record a payment" of one invoice: that invoice ticked, its balance as the amount.
    let invoice = match Uuid::parse_str(value(&pairs, "invoice_id").trim()) {
        Ok(id) => match read::get_invoice(&state.pool, me.tenant_id, id).await {
            Ok(row) => row.filter(|r| Some(r.company_id) == company_id),
            Err(error) => return internal_page(error),
        },
        Err(_) => None,
    };
    payment_form(&state, &me, &cookies, company_id, StatusCode::OK, |page| {
        if let Some(invoice) = invoice {
            page.form.amount = invoice.balance.to_string();
            page.form.invoices = vec![invoice.id.to_string()];
        }
    })
    .await
}

async fn create_payment(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::ManageBilling) {
        return refused;
    }
    let Ok(company_id) = Uuid::parse_str(value(&pairs, "company_id").trim()) else {
        return not_found_page();
    };
    let mut form = PayForm {
        amount: trimmed(&pairs, "amount"),
        received_on: trimmed(&pairs, "received_on"),
        method: trimmed(&pairs, "method"),
        reference: value(&pairs, "reference").to_owned(),
        invoices: pairs
            .iter()
            .filter(|(k, _)| k == "invoice_ids")
            .map(|(_, v)| v.trim().to_owned())
            .collect(),
        ..Default::default()
    };
    // Sent from an invoice's page: shown again there when refused.
    let back = Uuid::parse_str(value(&pairs, "back").trim()).ok();
    let mut errors = Vec::new();
    let amount = required_amount(&mut errors, "amount", &form.amount);
    let received_on = date_or(&mut errors, "received_on", &form.received_on, None);
    let method = match form.method.as_str() {
        "" => {
            errors.push(ValidationError::new(
                "method",
                "is required: choose how the money came in",
            ));
            None
        }
        text => {
            let method = Method::parse(text);
            if method.is_none() {
                errors.push(ValidationError::new(
                    "method",
                    "must be one of check, cash, bank transfer, card",
                ));
            }
            method
        }
    };
    let reference = short_text(&mut errors, "reference", &form.reference, 200);
    let mut invoices = Vec::new();
    for text in &form.invoices {
        match Uuid::parse_str(text) {
            Ok(id) => invoices.push(id),
            Err(_) => errors.push(ValidationError::new(
                "invoice_ids",
                "The invoices to pay must be among those listed.",
            )),
        }
    }
    let outcome = match (amount, received_on, method, errors.is_empty()) {
        (Some(amount), Some(received_on), Some(method), true) => {
            ops::receive_payment(
                &state,
                &me,
                &me.meta(),
                NewPayment {
                    company_id,
                    amount,
                    received_on,
                    method,
                    reference,
                    invoices: (!invoices.is_empty()).then_some(invoices),
                },
            )
            .await
        }
        _ => Err(ApiError::Invalid(errors)),
    };
    match outcome {
        Ok(done) => {
            wait_ledger(&state, &me, company_id).await;
            let books = match books(&state, &me).await {
                Ok((_, books)) => books,
                Err(error) => return internal_page(error),
            };
            redirect_with_flash(
                &format!("/billing/payments/{}", done.id),
                &format!("Payment of {} recorded.", books.money(done.amount)),
            )
        }
        Err(error) => {
            let (status, problem, errors) = match refusal(error) {
                Refusal::Fields(errors) => (StatusCode::UNPROCESSABLE_ENTITY, None, errors),
                // Invoices not open, amount too precise: next to the fields.
                Refusal::Problem(StatusCode::UNPROCESSABLE_ENTITY, message) => {
                    let field = if message.contains("invoices") {
                        "invoice_ids"
                    } else {
                        "amount"
                    };
                    (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        None,
                        vec![ValidationError::new(field, message)],
                    )
                }
                Refusal::Problem(status, message) => (status, Some(message), Vec::new()),
                Refusal::Page(page) => return page,
            };
            form.absorb(
                errors
                    .into_iter()
                    .map(|e| {
                        // Messages that are sentences already keep their own start.
                        if e.message.starts_with(char::is_uppercase) {
                            ValidationError::new("invoice_ids", e.message)
                        } else {
                            e
                        }
                    })
                    .collect(),
            );
            match back {
                Some(invoice_id) => {
                    render_invoice(&state, &me, &cookies, invoice_id, status, |page| {
                        page.problem = problem;
                        if !page.can_pay {
                            // Paid meanwhile: the form is not shown, its message is.
                            if let Some(message) = form.invoices_error.take() {
                                join(&mut page.problem, message);
                            }
                        }
                        page.pay = form;
                    })
                    .await
                }
                None => {
                    payment_form(&state, &me, &cookies, Some(company_id), status, |page| {
                        page.problem = problem;
                        page.form = form;
                    })
                    .await
                }
            }
        }
    }
}

struct AllocationView {
    invoice_id: Uuid,
    invoice_number: String,
    amount: String,
    on_date: String,
}

#[derive(Default)]
struct RefundForm {
    amount: String,
    on: String,
    reference: String,
    amount_error: Option<String>,
    on_error: Option<String>,
    reference_error: Option<String>,
}

#[derive(Default)]
struct ReverseForm {
    on: String,
    reason: String,
    on_error: Option<String>,
    reason_error: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "billing_payment.html")]
struct PaymentPage {
    flash: Option<String>,
    csrf: String,
    problem: Option<String>,
    payment: PaymentItem,
    reversed: bool,
    allocations: Vec<AllocationView>,
    /// What of it is still credit (0 once reversed).
    has_credit: bool,
    may_manage: bool,
    can_refund: bool,
    can_reverse: bool,
    refund: RefundForm,
    reverse: ReverseForm,
}

async fn render_payment(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    id: Uuid,
    status: StatusCode,
    fill: impl FnOnce(&mut PaymentPage),
) -> Response {
    let loaded = async {
        let (_, books) = books(state, me).await?;
        let detail = read::get_payment(&state.pool, me.tenant_id, id).await?;
        Ok::<_, ApiError>((books, detail))
    };
    let (books, detail) = match loaded.await {
        Ok((books, Some(detail))) => (books, detail),
        Ok((_, None)) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let p = &detail.payment;
    let may_manage = me.may(Action::ManageBilling);
    let today = books.today.to_string();
    let mut page = PaymentPage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        problem: None,
        reversed: p.reversed,
        allocations: detail
            .allocations
            .iter()
            .map(|a| AllocationView {
                invoice_id: a.invoice_id,
                invoice_number: a
                    .invoice_number
                    .map_or_else(|| read::short_id(a.invoice_id), |n| n.to_string()),
                amount: books.money(a.amount),
                on_date: a.on_date.to_string(),
            })
            .collect(),
        has_credit: p.unapplied > Decimal::ZERO,
        may_manage,
        can_refund: may_manage && !p.reversed && p.unapplied > Decimal::ZERO,
        can_reverse: may_manage && !p.reversed && p.refunded <= Decimal::ZERO,
        refund: RefundForm {
            amount: p.unapplied.to_string(),
            on: today.clone(),
            ..Default::default()
        },
        reverse: ReverseForm {
            on: today,
            ..Default::default()
        },
        payment: PaymentItem::of(p, &books),
    };
    fill(&mut page);
    (status, page).into_response()
}

async fn payment_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let Some(id) = path_uuid(path) else {
        return not_found_page();
    };
    render_payment(&state, &me, &cookies, id, StatusCode::OK, |_| {}).await
}

/// The payment a form acts on: its id and company (`Err`: the page to answer instead).
async fn payment_of(
    state: &AppState,
    me: &Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<(Uuid, Uuid), Response> {
    let Some(id) = path_uuid(path) else {
        return Err(not_found_page());
    };
    let found: Result<Option<Uuid>, sqlx::Error> =
        sqlx::query_scalar("SELECT company_id FROM payments WHERE tenant_id = $1 AND id = $2")
            .bind(me.tenant_id)
            .bind(id)
            .fetch_optional(&state.pool)
            .await;
    match found {
        Ok(Some(company_id)) => Ok((id, company_id)),
        Ok(None) => Err(not_found_page()),
        Err(error) => Err(internal_page(error)),
    }
}

/// The answer to a payment form: back to the payment with `done`, or the payment's page again
/// with the refusal (`fill` puts the form and its messages in place).
async fn payment_done(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    (id, company_id): (Uuid, Uuid),
    outcome: Result<Ledger, ApiError>,
    done: &str,
    fill: impl FnOnce(&mut PaymentPage, Vec<ValidationError>),
) -> Response {
    match outcome {
        Ok(_) => {
            wait_ledger(state, me, company_id).await;
            redirect_with_flash(&format!("/billing/payments/{id}"), done)
        }
        Err(error) => {
            let (status, problem, errors) = match refusal(error) {
                Refusal::Fields(errors) => (StatusCode::UNPROCESSABLE_ENTITY, None, errors),
                Refusal::Problem(StatusCode::UNPROCESSABLE_ENTITY, message) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    None,
                    vec![ValidationError::new("amount", message)],
                ),
                Refusal::Problem(status, message) => (status, Some(message), Vec::new()),
                Refusal::Page(page) => return page,
            };
            render_payment(state, me, cookies, id, status, |page| {
                page.problem = problem;
                fill(page, errors);
            })
            .await
        }
    }
}

async fn unapply_payment(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::ManageBilling) {
        return refused;
    }
    let found = match payment_of(&state, &me, path).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let Ok(invoice_id) = Uuid::parse_str(value(&pairs, "invoice_id").trim()) else {
        return not_found_page();
    };
    let outcome = ops::on_ledger(
        &state,
        &me.meta(),
        found.1,
        LedgerCommand::Unapply {
            payment_id: found.0,
            invoice_id,
        },
    )
    .await;
    payment_done(
        &state,
        &me,
        &cookies,
        found,
        outcome,
        "Taken off the invoice: the amount is credit again.",
        |page, errors| {
            for e in errors {
                join(&mut page.problem, sentence("", &e.message));
            }
        },
    )
    .await
}

async fn refund_payment(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::ManageBilling) {
        return refused;
    }
    let found = match payment_of(&state, &me, path).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let (_, books) = match books(&state, &me).await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let form = RefundForm {
        amount: trimmed(&pairs, "amount"),
        on: trimmed(&pairs, "on"),
        reference: value(&pairs, "reference").to_owned(),
        ..Default::default()
    };
    let mut errors = Vec::new();
    let amount = required_amount(&mut errors, "amount", &form.amount);
    let on = date_or(&mut errors, "on", &form.on, Some(books.today));
    let reference = short_text(&mut errors, "reference", &form.reference, 200);
    let outcome = match (amount, on, errors.is_empty()) {
        (Some(amount), Some(on), true) => {
            ops::on_ledger(
                &state,
                &me.meta(),
                found.1,
                LedgerCommand::Refund {
                    payment_id: found.0,
                    amount,
                    on,
                    reference,
                },
            )
            .await
        }
        _ => Err(ApiError::Invalid(errors)),
    };
    let done = format!(
        "Refund of {} recorded.",
        books.money(amount.unwrap_or_default())
    );
    payment_done(
        &state,
        &me,
        &cookies,
        found,
        outcome,
        &done,
        |page, errors| {
            page.refund = form;
            for e in errors {
                let (slot, label) = match e.field {
                    "amount" if e.message.starts_with(char::is_uppercase) => {
                        (&mut page.refund.amount_error, "")
                    }
                    "amount" => (&mut page.refund.amount_error, "The amount"),
                    "on" => (&mut page.refund.on_error, "The date"),
                    _ => (&mut page.refund.reference_error, "The reference"),
                };
                join(slot, sentence(label, &e.message));
            }
        },
    )
    .await
}

async fn reverse_payment(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::ManageBilling) {
        return refused;
    }
    let found = match payment_of(&state, &me, path).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let form = ReverseForm {
        on: trimmed(&pairs, "on"),
        reason: value(&pairs, "reason").to_owned(),
        ..Default::default()
    };
    let mut errors = Vec::new();
    let on = date_or(&mut errors, "on", &form.on, None);
    let reason = short_text(&mut errors, "reason", &form.reason, MAX_TEXT);
    let outcome = match (on, errors.is_empty()) {
        (Some(on), true) => {
            ops::on_ledger(
                &state,
                &me.meta(),
                found.1,
                LedgerCommand::ReversePayment {
                    payment_id: found.0,
                    on,
                    reason,
                },
            )
            .await
        }
        _ => Err(ApiError::Invalid(errors)),
    };
    payment_done(
        &state,
        &me,
        &cookies,
        found,
        outcome,
        "Payment reversed: its invoices are owed again.",
        |page, errors| {
            page.reverse = form;
            for e in errors {
                let (slot, label) = match e.field {
                    "on" => (&mut page.reverse.on_error, "The date"),
                    _ => (&mut page.reverse.reason_error, "The reason"),
                };
                join(slot, sentence(label, &e.message));
            }
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// AR aging

/// An amount of the aging table (zeros are shown muted).
struct Cell {
    text: String,
    zero: bool,
}

/// One line of the aging table: current, 1–30, 31–60, 61–90, over 90, credit; then the total.
struct AgingView {
    company_id: Uuid,
    name: String,
    cells: Vec<Cell>,
    total: String,
}

/// One bar of the chart: a bucket's share of what is owed.
struct Bar {
    label: &'static str,
    amount: String,
    /// `42.5` (percent of the buckets' sum).
    percent: String,
    class: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "billing_aging.html")]
struct AgingPage {
    flash: Option<String>,
    as_of: String,
    as_of_error: Option<String>,
    rows: Vec<AgingView>,
    totals: Option<AgingView>,
    bars: Vec<Bar>,
    csv_href: String,
}

fn aging_view(company_id: Uuid, name: String, a: [Decimal; 7], books: &Books) -> AgingView {
    let [cells @ .., total] = a;
    AgingView {
        company_id,
        name,
        cells: cells
            .iter()
            .map(|v| Cell {
                text: books.money(*v),
                zero: v.is_zero(),
            })
            .collect(),
        total: books.money(total),
    }
}

/// `as_of` of an aging address: the date, or today when absent.
fn as_of_of(pairs: &[(String, String)], books: &Books) -> Result<NaiveDate, String> {
    match trimmed(pairs, "as_of").as_str() {
        "" => Ok(books.today),
        text => date("as_of", text).map_err(|e| sentence("The date", &e.message)),
    }
}

async fn aging_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    query: Result<Query<Pairs>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let Ok(Query(pairs)) = query else {
        return bad_address_page("The date in this address cannot be read.");
    };
    let (_, books) = match books(&state, &me).await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let mut page = AgingPage {
        flash: cookies.flash.clone(),
        as_of: trimmed(&pairs, "as_of"),
        as_of_error: None,
        rows: Vec::new(),
        totals: None,
        bars: Vec::new(),
        csv_href: String::new(),
    };
    let as_of = match as_of_of(&pairs, &books) {
        Ok(as_of) => as_of,
        Err(message) => {
            page.as_of_error = Some(message);
            return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
        }
    };
    let aging = match read::aging(&state.pool, me.tenant_id, as_of).await {
        Ok(aging) => aging,
        Err(error) => return internal_page(error),
    };
    page.as_of = as_of.to_string();
    page.csv_href = format!("/billing/aging.csv?as_of={as_of}");
    page.rows = aging
        .customers
        .iter()
        .map(|c| {
            aging_view(
                c.company_id,
                if c.company_name.is_empty() {
                    read::short_id(c.company_id)
                } else {
                    c.company_name.clone()
                },
                [
                    c.current,
                    c.days_1_30,
                    c.days_31_60,
                    c.days_61_90,
                    c.days_over_90,
                    c.unapplied_credit,
                    c.total,
                ],
                &books,
            )
        })
        .collect();
    let t = &aging.totals;
    if !page.rows.is_empty() {
        page.totals = Some(aging_view(
            Uuid::nil(),
            "Total".into(),
            [
                t.current,
                t.days_1_30,
                t.days_31_60,
                t.days_61_90,
                t.days_over_90,
                t.unapplied_credit,
                t.total,
            ],
            &books,
        ));
    }
    let buckets = [
        ("Current", t.current, "aging-current"),
        ("1–30 days", t.days_1_30, "aging-30"),
        ("31–60 days", t.days_31_60, "aging-60"),
        ("61–90 days", t.days_61_90, "aging-90"),
        ("Over 90 days", t.days_over_90, "aging-over"),
    ];
    let sum: Decimal = buckets
        .iter()
        .map(|(_, v, _)| (*v).max(Decimal::ZERO))
        .sum();
    page.bars = buckets
        .into_iter()
        .map(|(label, amount, class)| {
            let share = if sum > Decimal::ZERO {
                (amount.max(Decimal::ZERO) * Decimal::from(100) / sum).round_dp(1)
            } else {
                Decimal::ZERO
            };
            Bar {
                label,
                amount: books.money(amount),
                percent: format!("{share:.1}"),
                class,
            }
        })
        .collect();
    page.into_response()
}

async fn aging_csv_download(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    query: Result<Query<Pairs>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let Ok(Query(pairs)) = query else {
        return bad_address_page("The date in this address cannot be read.");
    };
    let (_, books) = match books(&state, &me).await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let as_of = match as_of_of(&pairs, &books) {
        Ok(as_of) => as_of,
        Err(message) => {
            let page = AgingPage {
                flash: cookies.flash.clone(),
                as_of: trimmed(&pairs, "as_of"),
                as_of_error: Some(message),
                rows: Vec::new(),
                totals: None,
                bars: Vec::new(),
                csv_href: String::new(),
            };
            return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
        }
    };
    match read::aging(&state.pool, me.tenant_id, as_of).await {
        Ok(aging) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"ar-aging-{as_of}.csv\""),
                ),
                (header::CACHE_CONTROL, "private, no-store".to_owned()),
            ],
            aging_csv(&aging),
        )
            .into_response(),
        Err(error) => internal_page(error),
    }
}

// ---------------------------------------------------------------------------------------------
// A company's Billing tab and statements

/// The contract billing terms form.
#[derive(Default)]
struct TermsForm {
    billing_day: String,
    start_date: String,
    end_date: String,
    payment_terms_days: String,
    prorate: bool,
    tax_exempt: bool,
    tax_rate: String,
    billing_day_error: Option<String>,
    start_date_error: Option<String>,
    end_date_error: Option<String>,
    payment_terms_days_error: Option<String>,
    tax_rate_error: Option<String>,
    /// About the contract as a whole (its rate).
    other_error: Option<String>,
}

impl TermsForm {
    fn of(terms: Option<&BillingTerms>, today: NaiveDate) -> Self {
        match terms {
            Some(t) => Self {
                billing_day: t.billing_day.to_string(),
                start_date: t.start_date.to_string(),
                end_date: day(t.end_date),
                payment_terms_days: t.payment_terms_days.to_string(),
                prorate: t.prorate,
                tax_exempt: t.tax_exempt,
                tax_rate: t
                    .tax_rate
                    .map(|r| r.normalize().to_string())
                    .unwrap_or_default(),
                ..Default::default()
            },
            None => Self {
                billing_day: "1".into(),
                start_date: today.to_string(),
                payment_terms_days: "14".into(),
                prorate: true,
                ..Default::default()
            },
        }
    }

    fn from_pairs(pairs: &[(String, String)]) -> Self {
        Self {
            billing_day: trimmed(pairs, "billing_day"),
            start_date: trimmed(pairs, "start_date"),
            end_date: trimmed(pairs, "end_date"),
            payment_terms_days: trimmed(pairs, "payment_terms_days"),
            prorate: !value(pairs, "prorate").is_empty(),
            tax_exempt: !value(pairs, "tax_exempt").is_empty(),
            tax_rate: trimmed(pairs, "tax_rate"),
            ..Default::default()
        }
    }

    /// The terms typed, or the messages.
    fn terms(&self) -> Result<BillingTerms, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let billing_day = match self.billing_day.parse::<u32>() {
            Ok(d) => Some(d),
            Err(_) if self.billing_day.is_empty() => {
                errors.push(ValidationError::new("billing_day", "is required"));
                None
            }
            Err(_) => {
                errors.push(ValidationError::new("billing_day", "must be from 1 to 31"));
                None
            }
        };
        let start_date = date_or(&mut errors, "start_date", &self.start_date, None);
        let end_date = match self.end_date.as_str() {
            "" => None,
            text => date("end_date", text).map_err(|e| errors.push(e)).ok(),
        };
        let payment_terms_days = match self.payment_terms_days.as_str() {
            "" => Some(14),
            text => text
                .parse::<u32>()
                .map_err(|_| {
                    errors.push(ValidationError::new(
                        "payment_terms_days",
                        "must be from 0 to 365",
                    ))
                })
                .ok(),
        };
        let tax_rate = match self.tax_rate.trim_end_matches('%').trim() {
            "" => None,
            text => decimal("tax_rate", text).map_err(|e| errors.push(e)).ok(),
        };
        match (
            billing_day,
            start_date,
            payment_terms_days,
            errors.is_empty(),
        ) {
            (Some(billing_day), Some(start_date), Some(payment_terms_days), true) => {
                Ok(BillingTerms {
                    billing_day,
                    start_date,
                    end_date,
                    payment_terms_days,
                    prorate: self.prorate,
                    tax_exempt: self.tax_exempt,
                    tax_rate,
                })
            }
            _ => Err(errors),
        }
    }

    fn absorb(&mut self, errors: Vec<ValidationError>) {
        for e in errors {
            let (slot, label) = match e.field {
                "billing_day" => (&mut self.billing_day_error, "The billing day"),
                "start_date" => (&mut self.start_date_error, "The start date"),
                "end_date" => (&mut self.end_date_error, "The end date"),
                "payment_terms_days" => (&mut self.payment_terms_days_error, "The payment terms"),
                "tax_rate" => (&mut self.tax_rate_error, "The tax rate"),
                "monthly_rate" => (
                    &mut self.other_error,
                    "The company's monthly rate (set on its Overview tab)",
                ),
                _ => (&mut self.other_error, ""),
            };
            join(slot, sentence(label, &e.message));
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "billing_company.html")]
struct CompanyBillingPage {
    flash: Option<String>,
    csrf: String,
    problem: Option<String>,
    tabs: CompanyTabs,
    open: String,
    credit: String,
    net: String,
    in_credit: bool,
    monthly_rate: String,
    /// The contract is billed.
    billed: bool,
    terms: TermsForm,
    /// "Day 1 of each month, from 2026-11-01, due 14 days after"
    summary: Option<String>,
    invoices: Vec<InvoiceItem>,
    more_invoices: bool,
    payments: Vec<PaymentItem>,
    more_payments: bool,
    may_manage: bool,
    statement_from: String,
    statement_to: String,
    subscriptions: Vec<SubscriptionItem>,
    /// The form that adds one, and the services it offers (not retired ones).
    subscription: SubscriptionForm,
    service_choices: Vec<Choice>,
}

async fn render_company(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    path: Result<Path<String>, PathRejection>,
    status: StatusCode,
    fill: impl FnOnce(&mut CompanyBillingPage),
) -> Response {
    let (row, tabs) = match company_for_tab(state, me, path, CompanyTab::Billing).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let id = row.id;
    let loaded = async {
        let (tenant, books) = books(state, me).await?;
        let (company, _) = ops::company(state, me, id).await?;
        let balance = read::company_balance(&state.pool, me.tenant_id, id).await?;
        let invoices = read::list_invoices(
            &state.pool,
            me.tenant_id,
            &InvoiceFilter {
                company_id: Some(id),
                ..Default::default()
            },
            RECENT + 1,
        )
        .await?;
        let payments = read::list_payments(&state.pool, me.tenant_id, Some(id), RECENT + 1).await?;
        Ok::<_, ApiError>((tenant, books, company, balance, invoices, payments))
    };
    let (tenant, books, company, balance, mut invoices, mut payments) = match loaded.await {
        Ok(loaded) => loaded,
        Err(ApiError::NotFound(_)) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let more_invoices = invoices.len() as i64 > RECENT;
    invoices.truncate(RECENT as usize);
    let more_payments = payments.len() as i64 > RECENT;
    payments.truncate(RECENT as usize);
    let summary = company.billing.as_ref().map(|b| {
        format!(
            "Billed on day {} of each month from {}{}, due {} days after the invoice date{}.",
            b.billing_day,
            b.start_date,
            b.end_date.map(|e| format!(" to {e}")).unwrap_or_default(),
            b.payment_terms_days,
            if b.tax_exempt {
                ", tax exempt".to_owned()
            } else {
                b.tax_rate
                    .map(|r| format!(", tax {}%", r.normalize()))
                    .unwrap_or_default()
            }
        )
    });
    let mut page = CompanyBillingPage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        problem: None,
        tabs,
        open: books.money(balance.open),
        credit: books.money(balance.unapplied_credit),
        net: books.money(balance.balance),
        in_credit: balance.balance < Decimal::ZERO,
        monthly_rate: books.money(company.current_rate().value()),
        billed: company.billing.is_some(),
        terms: TermsForm::of(company.billing.as_ref(), books.today),
        summary,
        invoices: invoices
            .iter()
            .map(|r| InvoiceItem::of(r, &books))
            .collect(),
        more_invoices,
        payments: payments
            .iter()
            .map(|r| PaymentItem::of(r, &books))
            .collect(),
        more_payments,
        may_manage: me.may(Action::ManageBilling),
        statement_from: (books.today - Duration::days(90)).to_string(),
        statement_to: books.today.to_string(),
        subscriptions: subscription_items(&company, &tenant, &books),
        subscription: SubscriptionForm::blank(books.today),
        service_choices: Vec::new(),
    };
    fill(&mut page);
    let mut offered = vec![(String::new(), "Choose…".to_owned())];
    offered.extend(
        service_items(&tenant, &books)
            .into_iter()
            .filter(|s| !s.retired)
            .map(|s| {
                let tier = if s.tier.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", s.tier)
                };
                (
                    s.id.to_string(),
                    format!("{}{tier}: {} {}", s.name, s.price, s.period.to_lowercase()),
                )
            }),
    );
    page.service_choices = choices(offered, &page.subscription.service_id);
    (status, page).into_response()
}

async fn company_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    render_company(&state, &me, &cookies, path, StatusCode::OK, |_| {}).await
}

async fn save_terms(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::ManageBilling) {
        return refused;
    }
    let Some(id) = path
        .as_ref()
        .ok()
        .and_then(|Path(raw)| Uuid::parse_str(raw).ok())
    else {
        return not_found_page();
    };
    let mut form = TermsForm::from_pairs(&pairs);
    let outcome = match form.terms() {
        Ok(terms) => ops::set_billing(&state, &me, &me.meta(), id, Some(terms)).await,
        Err(errors) => Err(ApiError::Invalid(errors)),
    };
    let (status, problem, errors) = match outcome {
        Ok(_) => {
            return redirect_with_flash(
                &format!("/companies/{id}/billing"),
                "Contract billing terms saved.",
            )
        }
        Err(error) => match refusal(error) {
            Refusal::Fields(errors) => (StatusCode::UNPROCESSABLE_ENTITY, None, errors),
            Refusal::Problem(status, message) => (status, Some(message), Vec::new()),
            Refusal::Page(page) => return page,
        },
    };
    form.absorb(errors);
    render_company(&state, &me, &cookies, path, status, |page| {
        page.problem = problem;
        page.terms = form;
    })
    .await
}

async fn stop_billing(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::ManageBilling) {
        return refused;
    }
    let Some(id) = path_uuid(path) else {
        return not_found_page();
    };
    match ops::set_billing(&state, &me, &me.meta(), id, None).await {
        Ok(_) => redirect_with_flash(
            &format!("/companies/{id}/billing"),
            "Billing stopped: no more contract invoices are made for this company.",
        ),
        Err(ApiError::NotFound(_)) => not_found_page(),
        Err(ApiError::Conflict(message)) => crate::console::error_page(
            StatusCode::CONFLICT,
            &cookies,
            "That cannot be done now",
            &sentence("", &message),
        ),
        Err(error) => internal_page(error),
    }
}

/// A statement's dates from its address (`from` defaults to 90 days before `to`, `to` to
/// today), or the messages.
fn statement_dates(
    pairs: &[(String, String)],
    books: &Books,
) -> Result<(NaiveDate, NaiveDate), (Option<String>, Option<String>)> {
    let mut errors = Vec::new();
    let to = date_or(&mut errors, "to", value(pairs, "to"), Some(books.today));
    let from = date_or(
        &mut errors,
        "from",
        value(pairs, "from"),
        Some(to.unwrap_or(books.today) - Duration::days(90)),
    );
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            errors.push(ValidationError::new(
                "from",
                "must not be after the end date",
            ));
        }
    }
    if errors.is_empty() {
        return Ok((from.expect("checked"), to.expect("checked")));
    }
    let (mut from_error, mut to_error) = (None, None);
    for e in errors {
        match e.field {
            "from" => join(&mut from_error, sentence("The start date", &e.message)),
            _ => join(&mut to_error, sentence("The end date", &e.message)),
        }
    }
    Err((from_error, to_error))
}

struct StatementRow {
    date: String,
    description: String,
    href: Option<String>,
    debit: String,
    credit: String,
    balance: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "billing_statement.html")]
struct StatementPage {
    flash: Option<String>,
    tabs: CompanyTabs,
    from: String,
    to: String,
    from_error: Option<String>,
    to_error: Option<String>,
    opening: String,
    closing: String,
    rows: Vec<StatementRow>,
    pdf_href: String,
    shown: bool,
}

async fn statement_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Pairs>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let (row, tabs) = match company_for_tab(&state, &me, path, CompanyTab::Billing).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let Ok(Query(pairs)) = query else {
        return bad_address_page("The dates in this address cannot be read.");
    };
    let (_, books) = match books(&state, &me).await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let mut page = StatementPage {
        flash: cookies.flash.clone(),
        tabs,
        from: trimmed(&pairs, "from"),
        to: trimmed(&pairs, "to"),
        from_error: None,
        to_error: None,
        opening: String::new(),
        closing: String::new(),
        rows: Vec::new(),
        pdf_href: String::new(),
        shown: false,
    };
    let (from, to) = match statement_dates(&pairs, &books) {
        Ok(dates) => dates,
        Err((from_error, to_error)) => {
            page.from_error = from_error;
            page.to_error = to_error;
            return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
        }
    };
    let statement = match read::statement(&state.pool, me.tenant_id, row.id, from, to).await {
        Ok(statement) => statement,
        Err(error) => return internal_page(error),
    };
    let blank_zero = |v: Decimal| {
        if v.is_zero() {
            String::new()
        } else {
            books.money(v)
        }
    };
    page.from = from.to_string();
    page.to = to.to_string();
    page.pdf_href = format!("/companies/{}/statement.pdf?from={from}&to={to}", row.id);
    page.opening = books.money(statement.opening_balance);
    page.closing = books.money(statement.closing_balance);
    page.shown = true;
    page.rows = statement
        .lines
        .iter()
        .map(|l| StatementRow {
            date: l.date.to_string(),
            description: l.description.clone(),
            href: match (l.payment_id, l.invoice_id, l.kind.as_str()) {
                (Some(p), _, "received" | "refunded" | "reversed") => {
                    Some(format!("/billing/payments/{p}"))
                }
                (_, Some(i), _) => Some(format!("/billing/invoices/{i}")),
                (Some(p), None, _) => Some(format!("/billing/payments/{p}")),
                _ => None,
            },
            debit: blank_zero(l.debit),
            credit: blank_zero(l.credit),
            balance: books.money(l.balance),
        })
        .collect();
    page.into_response()
}

/// The statement as a PDF: the read API's document (`reports::company_statement`), after the
/// console's own checks (404 page, dates shown again with their messages).
async fn statement_pdf(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Pairs>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let (row, tabs) = match company_for_tab(&state, &me, path, CompanyTab::Billing).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let Ok(Query(pairs)) = query else {
        return bad_address_page("The dates in this address cannot be read.");
    };
    let (_, books) = match books(&state, &me).await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let (from, to) = match statement_dates(&pairs, &books) {
        Ok(dates) => dates,
        Err((from_error, to_error)) => {
            let page = StatementPage {
                flash: cookies.flash.clone(),
                tabs,
                from: trimmed(&pairs, "from"),
                to: trimmed(&pairs, "to"),
                from_error,
                to_error,
                opening: String::new(),
                closing: String::new(),
                rows: Vec::new(),
                pdf_href: String::new(),
                shown: false,
            };
            return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
        }
    };
    super::reports::company_statement(
        State(state),
        me,
        Ok(Path(row.id.to_string())),
        Ok(Query(super::reports::StatementQuery {
            from: Some(from.to_string()),
            to: Some(to.to_string()),
            format: Some("pdf".into()),
        })),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// The service catalogue and companies' subscriptions

fn period_label(period: ServicePeriod) -> &'static str {
    match period {
        ServicePeriod::Monthly => "Monthly",
        ServicePeriod::Quarterly => "Quarterly",
        ServicePeriod::Yearly => "Yearly",
    }
}

fn period_choices(current: &str) -> Vec<Choice> {
    choices(
        ServicePeriod::ALL
            .iter()
            .map(|p| (p.as_str().to_owned(), period_label(*p).to_owned()))
            .collect(),
        current,
    )
}

/// A catalogue service as the catalogue lists it.
struct ServiceItem {
    id: Uuid,
    name: String,
    tier: String,
    price: String,
    period: &'static str,
    retired: bool,
}

fn service_items(tenant: &Tenant, books: &Books) -> Vec<ServiceItem> {
    let mut items: Vec<ServiceItem> = tenant
        .services
        .iter()
        .map(|(id, s)| ServiceItem {
            id: *id,
            name: s.name.clone(),
            tier: s.tier.clone(),
            price: books.money(domain::billing::cents(s.price)),
            period: period_label(s.period),
            retired: s.retired,
        })
        .collect();
    items.sort_by_key(|s| (s.retired, s.name.to_lowercase(), s.id));
    items
}

/// The service form (adding one, or changing one on its page).
#[derive(Default)]
struct ServiceForm {
    name: String,
    tier: String,
    price: String,
    period: String,
    retired: bool,
    name_error: Option<String>,
    tier_error: Option<String>,
    price_error: Option<String>,
    period_error: Option<String>,
}

impl ServiceForm {
    fn blank() -> Self {
        Self {
            period: ServicePeriod::Monthly.as_str().into(),
            ..Default::default()
        }
    }

    fn of(service: &CatalogueService) -> Self {
        Self {
            name: service.name.clone(),
            tier: service.tier.clone(),
            price: domain::billing::cents(service.price).to_string(),
            period: service.period.as_str().into(),
            retired: service.retired,
            ..Default::default()
        }
    }

    fn from_pairs(pairs: &[(String, String)]) -> Self {
        Self {
            name: trimmed(pairs, "name"),
            tier: trimmed(pairs, "tier"),
            price: trimmed(pairs, "price"),
            period: trimmed(pairs, "period"),
            retired: !value(pairs, "retired").is_empty(),
            ..Default::default()
        }
    }

    /// The service typed, checked as the API checks it.
    fn service(&self) -> Result<CatalogueService, ApiError> {
        let filled = |text: &str| Some(text.to_owned()).filter(|t| !t.is_empty());
        catalogue::parse_service(ServiceBody {
            name: Some(self.name.clone()),
            tier: Some(self.tier.clone()),
            price: filled(&self.price),
            period: filled(&self.period),
            retired: Some(self.retired),
        })
    }

    fn absorb(&mut self, errors: Vec<ValidationError>) {
        for e in errors {
            let (slot, label) = match e.field {
                "name" => (&mut self.name_error, "The name"),
                "tier" => (&mut self.tier_error, "The tier"),
                "period" => (&mut self.period_error, "The period"),
                _ => (&mut self.price_error, "The price"),
            };
            join(slot, sentence(label, &e.message));
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "billing_services.html")]
struct ServicesPage {
    flash: Option<String>,
    csrf: String,
    problem: Option<String>,
    may_manage: bool,
    currency: String,
    services: Vec<ServiceItem>,
    form: ServiceForm,
    periods: Vec<Choice>,
}

#[derive(Template, WebTemplate)]
#[template(path = "billing_service.html")]
struct ServicePage {
    flash: Option<String>,
    csrf: String,
    problem: Option<String>,
    may_manage: bool,
    currency: String,
    id: Uuid,
    /// The name it has now (the heading).
    title: String,
    price: String,
    period: &'static str,
    form: ServiceForm,
    periods: Vec<Choice>,
}

async fn render_services(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    status: StatusCode,
    problem: Option<String>,
    form: ServiceForm,
) -> Response {
    let (tenant, books) = match books(state, me).await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let page = ServicesPage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        problem,
        may_manage: me.may(Action::ManageBilling),
        services: service_items(&tenant, &books),
        currency: books.currency,
        periods: period_choices(&form.period),
        form,
    };
    (status, page).into_response()
}

async fn services_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    render_services(
        &state,
        &me,
        &cookies,
        StatusCode::OK,
        None,
        ServiceForm::blank(),
    )
    .await
}

async fn create_service(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::ManageBilling) {
        return refused;
    }
    let mut form = ServiceForm::from_pairs(&pairs);
    let outcome = match form.service() {
        Ok(service) => catalogue::define_service(&state, &me, &me.meta(), None, service).await,
        Err(error) => Err(error),
    };
    let (status, problem) = match outcome {
        Ok(service) => {
            return redirect_with_flash(
                "/billing/services",
                &format!("Service \"{}\" added to the catalogue.", service.name),
            )
        }
        Err(error) => match refusal(error) {
            Refusal::Fields(errors) => {
                form.absorb(errors);
                (StatusCode::UNPROCESSABLE_ENTITY, None)
            }
            Refusal::Problem(status, message) => (status, Some(message)),
            Refusal::Page(page) => return page,
        },
    };
    render_services(&state, &me, &cookies, status, problem, form).await
}

async fn render_service(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    id: Uuid,
    status: StatusCode,
    fill: impl FnOnce(&mut ServicePage),
) -> Response {
    let (tenant, books) = match books(state, me).await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let Some(service) = tenant.services.get(&id) else {
        return not_found_page();
    };
    let mut page = ServicePage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        problem: None,
        may_manage: me.may(Action::ManageBilling),
        id,
        title: service.name.clone(),
        price: books.money(domain::billing::cents(service.price)),
        period: period_label(service.period),
        form: ServiceForm::of(service),
        periods: Vec::new(),
        currency: books.currency,
    };
    fill(&mut page);
    page.periods = period_choices(&page.form.period);
    (status, page).into_response()
}

async fn service_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let Some(id) = path_uuid(path) else {
        return not_found_page();
    };
    render_service(&state, &me, &cookies, id, StatusCode::OK, |_| {}).await
}

async fn update_service(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::ManageBilling) {
        return refused;
    }
    let Some(id) = path_uuid(path) else {
        return not_found_page();
    };
    let mut form = ServiceForm::from_pairs(&pairs);
    let outcome = match form.service() {
        Ok(service) => catalogue::define_service(&state, &me, &me.meta(), Some(id), service).await,
        Err(error) => Err(error),
    };
    let (status, problem) = match outcome {
        Ok(service) => {
            return redirect_with_flash(
                "/billing/services",
                &format!("Service \"{}\" saved.", service.name),
            )
        }
        Err(error) => match refusal(error) {
            Refusal::Fields(errors) => {
                form.absorb(errors);
                (StatusCode::UNPROCESSABLE_ENTITY, None)
            }
            Refusal::Problem(status, message) => (status, Some(message)),
            Refusal::Page(page) => return page,
        },
    };
    render_service(&state, &me, &cookies, id, status, |page| {
        page.problem = problem;
        page.form = form;
    })
    .await
}

/// A company's subscription as its Billing tab lists it.
struct SubscriptionItem {
    id: Uuid,
    service_name: String,
    quantity: String,
    price: String,
    period: &'static str,
    start_date: String,
    end_date: String,
    /// Its end date has passed.
    ended: bool,
    /// The end form's date, and its message.
    end_value: String,
    end_error: Option<String>,
}

fn subscription_items(company: &Company, tenant: &Tenant, books: &Books) -> Vec<SubscriptionItem> {
    let mut items: Vec<(NaiveDate, SubscriptionItem)> = company
        .subscriptions
        .iter()
        .map(|(id, s)| {
            let service = tenant.services.get(&s.service_id);
            let price = s.price.or(service.map(|x| x.price)).unwrap_or_default();
            let item = SubscriptionItem {
                id: *id,
                service_name: service.map(|x| x.name.clone()).unwrap_or_default(),
                quantity: s.quantity.normalize().to_string(),
                price: books.money(domain::billing::cents(price)),
                period: service.map_or("", |x| period_label(x.period)),
                start_date: s.start_date.to_string(),
                end_date: day(s.end_date),
                ended: s.end_date.is_some_and(|e| e < books.today),
                end_value: s
                    .end_date
                    .unwrap_or_else(|| books.today.max(s.start_date))
                    .to_string(),
                end_error: None,
            };
            (s.start_date, item)
        })
        .collect();
    items.sort_by(|(a, x), (b, y)| (a, &x.service_name, x.id).cmp(&(b, &y.service_name, y.id)));
    items.into_iter().map(|(_, item)| item).collect()
}

/// The form that subscribes a company to a service.
#[derive(Default)]
struct SubscriptionForm {
    service_id: String,
    quantity: String,
    start_date: String,
    end_date: String,
    price: String,
    service_id_error: Option<String>,
    quantity_error: Option<String>,
    start_date_error: Option<String>,
    end_date_error: Option<String>,
    price_error: Option<String>,
}

impl SubscriptionForm {
    fn blank(today: NaiveDate) -> Self {
        Self {
            quantity: "1".into(),
            start_date: today.to_string(),
            ..Default::default()
        }
    }

    fn from_pairs(pairs: &[(String, String)]) -> Self {
        Self {
            service_id: trimmed(pairs, "service_id"),
            quantity: trimmed(pairs, "quantity"),
            start_date: trimmed(pairs, "start_date"),
            end_date: trimmed(pairs, "end_date"),
            price: trimmed(pairs, "price"),
            ..Default::default()
        }
    }

    /// The API's body: an id that cannot be read is one not in the catalogue.
    fn body(&self) -> SubscriptionBody {
        let filled = |text: &str| Some(text.to_owned()).filter(|t| !t.is_empty());
        SubscriptionBody {
            service_id: filled(&self.service_id)
                .map(|id| Uuid::parse_str(&id).unwrap_or(Uuid::nil())),
            quantity: filled(&self.quantity),
            start_date: filled(&self.start_date),
            end_date: filled(&self.end_date),
            price: filled(&self.price),
        }
    }

    fn absorb(&mut self, errors: Vec<ValidationError>) {
        for e in errors {
            let (slot, label) = match e.field {
                "service_id" => (&mut self.service_id_error, "The service"),
                "quantity" => (&mut self.quantity_error, "The quantity"),
                "start_date" => (&mut self.start_date_error, "The start date"),
                "end_date" => (&mut self.end_date_error, "The end date"),
                _ => (&mut self.price_error, "The price"),
            };
            join(slot, sentence(label, &e.message));
        }
    }
}

async fn subscribe_company(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::ManageBilling) {
        return refused;
    }
    let Some(id) = path_uuid(path) else {
        return not_found_page();
    };
    let mut form = SubscriptionForm::from_pairs(&pairs);
    let outcome =
        catalogue::subscribe_with(&state, &me, || Ok(me.meta()), id, None, form.body()).await;
    let (status, problem, errors) = match outcome {
        Ok(subscription) => {
            return redirect_with_flash(
                &format!("/companies/{id}/billing#subscriptions"),
                &format!("Subscribed to \"{}\".", subscription.service_name),
            )
        }
        Err(error) => match refusal(error) {
            Refusal::Fields(errors) => (StatusCode::UNPROCESSABLE_ENTITY, None, errors),
            Refusal::Problem(status, message) => (status, Some(message), Vec::new()),
            Refusal::Page(page) => return page,
        },
    };
    form.absorb(errors);
    render_company(
        &state,
        &me,
        &cookies,
        Ok(Path(id.to_string())),
        status,
        |page| {
            page.problem = problem;
            page.subscription = form;
        },
    )
    .await
}

async fn end_subscription(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::ManageBilling) {
        return refused;
    }
    let Some((id, subscription_id)) = crate::console::two_ids(path) else {
        return not_found_page();
    };
    let company = match ops::company(&state, &me, id).await {
        Ok((company, _)) => company,
        Err(ApiError::NotFound(_)) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let Some(current) = company.subscriptions.get(&subscription_id) else {
        return not_found_page();
    };
    let end_value = trimmed(&pairs, "end_date");
    let outcome = if end_value.is_empty() {
        Err(ApiError::Invalid(vec![ValidationError::new(
            "end_date",
            "is required",
        )]))
    } else {
        let body = SubscriptionBody {
            service_id: Some(current.service_id),
            quantity: Some(current.quantity.to_string()),
            start_date: Some(current.start_date.to_string()),
            end_date: Some(end_value.clone()),
            price: current.price.map(|p| p.to_string()),
        };
        catalogue::subscribe_with(
            &state,
            &me,
            || Ok(me.meta()),
            id,
            Some(subscription_id),
            body,
        )
        .await
    };
    let (status, problem, errors) = match outcome {
        Ok(subscription) => {
            return redirect_with_flash(
                &format!("/companies/{id}/billing#subscriptions"),
                &format!("\"{}\" ends on {}.", subscription.service_name, end_value),
            )
        }
        Err(error) => match refusal(error) {
            Refusal::Fields(errors) => (StatusCode::UNPROCESSABLE_ENTITY, None, errors),
            Refusal::Problem(status, message) => (status, Some(message), Vec::new()),
            Refusal::Page(page) => return page,
        },
    };
    let mut message = None;
    for e in errors {
        let label = if e.field == "end_date" {
            "The end date"
        } else {
            ""
        };
        join(&mut message, sentence(label, &e.message));
    }
    render_company(
        &state,
        &me,
        &cookies,
        Ok(Path(id.to_string())),
        status,
        |page| {
            page.problem = problem;
            if let Some(item) = page
                .subscriptions
                .iter_mut()
                .find(|s| s.id == subscription_id)
            {
                item.end_value = end_value;
                item.end_error = message;
            }
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Billing settings

#[derive(Template, WebTemplate)]
#[template(path = "billing_settings.html")]
struct SettingsPage {
    flash: Option<String>,
    csrf: String,
    can_change: bool,
    currency: String,
    address: String,
    tax_id: String,
    payment_instructions: String,
    contact: String,
    reminder_days: String,
    /// none, flat or percent.
    fee_kind: String,
    fee_amount: String,
    fee_after_days: String,
    address_error: Option<String>,
    tax_id_error: Option<String>,
    payment_instructions_error: Option<String>,
    contact_error: Option<String>,
    reminder_days_error: Option<String>,
    fee_kind_error: Option<String>,
    fee_amount_error: Option<String>,
    fee_after_days_error: Option<String>,
}

impl SettingsPage {
    fn new(cookies: &Cookies, me: &Principal, tenant: &Tenant) -> Self {
        let profile = &tenant.billing_profile;
        let fee = tenant.late_payment.fee.as_ref();
        Self {
            flash: cookies.flash.clone(),
            csrf: cookies.csrf.clone(),
            can_change: me.may(Action::ManageBilling),
            currency: Books::of(tenant).currency,
            address: profile.address.clone(),
            tax_id: profile.tax_id.clone(),
            payment_instructions: profile.payment_instructions.clone(),
            contact: profile.contact.clone(),
            reminder_days: tenant
                .late_payment
                .reminder_days
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            fee_kind: match fee {
                None => "none",
                Some(f) if f.percent => "percent",
                Some(_) => "flat",
            }
            .to_owned(),
            fee_amount: fee
                .map(|f| {
                    if f.percent {
                        f.amount.normalize().to_string()
                    } else {
                        f.amount.to_string()
                    }
                })
                .unwrap_or_default(),
            fee_after_days: fee.map(|f| f.after_days.to_string()).unwrap_or_default(),
            address_error: None,
            tax_id_error: None,
            payment_instructions_error: None,
            contact_error: None,
            reminder_days_error: None,
            fee_kind_error: None,
            fee_amount_error: None,
            fee_after_days_error: None,
        }
    }

    fn reminders(&self) -> Result<Vec<u32>, ValidationError> {
        let mut days = Vec::new();
        for part in self
            .reminder_days
            .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .filter(|p| !p.is_empty())
        {
            match part.parse::<u32>() {
                Ok(d) => days.push(d),
                Err(_) => {
                    return Err(ValidationError::new(
                        "reminder_days",
                        "must be whole numbers of days past due, such as \"7, 30\"",
                    ))
                }
            }
        }
        days.sort_unstable();
        days.dedup();
        Ok(days)
    }
}

async fn settings_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    match tenant_of(&state, &me).await {
        Ok(tenant) => SettingsPage::new(&cookies, &me, &tenant).into_response(),
        Err(error) => internal_page(error),
    }
}

async fn save_settings(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::ManageBilling) {
        return refused;
    }
    let tenant = match tenant_of(&state, &me).await {
        Ok(tenant) => tenant,
        Err(error) => return internal_page(error),
    };
    let mut page = SettingsPage::new(&cookies, &me, &tenant);
    page.address = value(&pairs, "address").trim().to_owned();
    page.tax_id = trimmed(&pairs, "tax_id");
    page.payment_instructions = value(&pairs, "payment_instructions").trim().to_owned();
    page.contact = trimmed(&pairs, "contact");
    page.reminder_days = trimmed(&pairs, "reminder_days");
    page.fee_kind = trimmed(&pairs, "fee_kind");
    page.fee_amount = trimmed(&pairs, "fee_amount");
    page.fee_after_days = trimmed(&pairs, "fee_after_days");
    let profile = BillingProfile {
        address: page.address.clone(),
        tax_id: page.tax_id.clone(),
        payment_instructions: page.payment_instructions.clone(),
        contact: page.contact.clone(),
    };
    let mut errors = profile.check().err().unwrap_or_default();
    let reminder_days = page.reminders().map_err(|e| errors.push(e)).ok();
    let fee = match page.fee_kind.as_str() {
        "" | "none" => None,
        kind @ ("flat" | "percent") => {
            let amount = match page.fee_amount.trim_end_matches('%').trim() {
                "" => {
                    errors.push(ValidationError::new("fee_amount", "is required"));
                    None
                }
                text => decimal("fee_amount", text).map_err(|e| errors.push(e)).ok(),
            };
            let after_days = match page.fee_after_days.parse::<u32>() {
                Ok(d) => Some(d),
                Err(_) => {
                    errors.push(ValidationError::new(
                        "fee_after_days",
                        "must be 1 to 365 days past due",
                    ));
                    None
                }
            };
            match (amount, after_days) {
                (Some(amount), Some(after_days)) => Some(LateFee {
                    after_days,
                    amount,
                    percent: kind == "percent",
                }),
                _ => None,
            }
        }
        _ => {
            errors.push(ValidationError::new(
                "fee_kind",
                "must be none, a flat amount or a percentage",
            ));
            None
        }
    };
    let policy = LatePayment {
        reminder_days: reminder_days.unwrap_or_default(),
        fee,
    };
    if let Err(more) = policy.check() {
        errors.extend(more);
    }
    if !errors.is_empty() {
        for e in errors {
            let (slot, label) = match e.field {
                "address" => (&mut page.address_error, "The address"),
                "tax_id" => (&mut page.tax_id_error, "The tax id"),
                "payment_instructions" => (
                    &mut page.payment_instructions_error,
                    "The payment instructions",
                ),
                "contact" => (&mut page.contact_error, "The contact"),
                "reminder_days" => (&mut page.reminder_days_error, "Reminders"),
                "fee_kind" => (&mut page.fee_kind_error, "The late fee"),
                "fee_amount" => (&mut page.fee_amount_error, "The fee"),
                _ => (&mut page.fee_after_days_error, "The days past due"),
            };
            join(slot, sentence(label, &e.message));
        }
        return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
    }
    let meta = me.meta();
    let id = me.tenant_id.to_string();
    let outcome = async {
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
        state
            .store
            .execute::<Tenant>(
                &id,
                TenantCommand::SetLatePayment { policy },
                &(),
                &meta.derived(b"late-payment"),
                ConflictPolicy::RetryOnce,
            )
            .await?;
        Ok::<_, ApiError>(())
    };
    match outcome.await {
        Ok(()) => redirect_with_flash("/settings/billing", "Billing settings saved."),
        Err(error) => internal_page(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_terms_are_read_from_the_form_with_every_message() {
        let pairs = |items: &[(&str, &str)]| -> Pairs {
            items
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let ok = TermsForm::from_pairs(&pairs(&[
            ("billing_day", "31"),
            ("start_date", "2026-01-31"),
            ("payment_terms_days", ""),
            ("prorate", "on"),
            ("tax_rate", "20%"),
        ]))
        .terms()
        .unwrap();
        assert_eq!(ok.billing_day, 31);
        assert_eq!(ok.payment_terms_days, 14);
        assert!(ok.prorate && !ok.tax_exempt);
        assert_eq!(ok.tax_rate, Some(Decimal::from(20)));
        let errors = TermsForm::from_pairs(&pairs(&[
            ("billing_day", "x"),
            ("start_date", ""),
            ("end_date", "soon"),
            ("payment_terms_days", "-1"),
            ("tax_rate", "lots"),
        ]))
        .terms()
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "billing_day",
                "start_date",
                "end_date",
                "payment_terms_days",
                "tax_rate"
            ]
        );
    }

    #[test]
    fn reminder_days_are_a_list_of_numbers() {
        let mut page = SettingsPage {
            flash: None,
            csrf: String::new(),
            can_change: true,
            currency: String::new(),
            address: String::new(),
            tax_id: String::new(),
            payment_instructions: String::new(),
            contact: String::new(),
            reminder_days: "30, 7 7".into(),
            fee_kind: String::new(),
            fee_amount: String::new(),
            fee_after_days: String::new(),
            address_error: None,
            tax_id_error: None,
            payment_instructions_error: None,
            contact_error: None,
            reminder_days_error: None,
            fee_kind_error: None,
            fee_amount_error: None,
            fee_after_days_error: None,
        };
        assert_eq!(page.reminders().unwrap(), [7, 30]);
        page.reminder_days = "7, a week".into();
        assert!(page.reminders().is_err());
    }
}
