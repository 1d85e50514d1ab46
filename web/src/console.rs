//! The staff console: server-rendered askama pages with plain forms. Every state-changing form
//! carries a CSRF token (double submit: the `st_csrf` cookie and a hidden field must match).
//! A form with bad input is shown again with the messages next to their fields and the input
//! kept; a success redirects (303) with a flash message.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use commands::{CommandError, ConflictPolicy};
use domain::authz::Action;
use domain::company::{
    split_tags, Company, CompanyChanges, CompanyCommand, CompanyError, CustomerStatus,
    ProfileChanges, ProfileInput, MAX_ADDRESS_CHARS, MAX_NOTES_CHARS, MAX_WEBSITE_CHARS,
};
use domain::values::{Amount, CompanyName};
use domain::{ErrorKind, HasErrorKind, ValidationError};
use projections::companies::{self, CompanyRow, Cursor, ListQuery, StatusFilter};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::cookie;
use crate::auth::Principal;
use crate::AppState;

const CSRF_COOKIE: &str = "st_csrf";
const FLASH_COOKIE: &str = "st_flash";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/companies", get(list_page).post(create))
        .route("/companies/new", get(new_company))
        .route("/companies/{id}", get(company_page))
        .route(
            "/companies/{id}/profile",
            get(profile_form_page).post(save_profile),
        )
        .route("/companies/{id}/work-orders", get(work_orders_tab))
        .route("/companies/{id}/rename", post(rename))
        .route("/companies/{id}/rate", post(set_rate))
        .route("/companies/{id}/archive", post(archive))
        .route("/companies/{id}/restore", post(restore))
}

/// The CSRF token and flash message of this request.
#[derive(Debug, Clone)]
pub(crate) struct Cookies {
    pub(crate) csrf: String,
    pub(crate) flash: Option<String>,
}

fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

tokio::task_local! {
    static CSRF: String;
}

/// The CSRF token of the request being handled (for forms in the layout, such as sign-out).
pub fn current_csrf() -> String {
    CSRF.try_with(Clone::clone).unwrap_or_default()
}

/// Gives every visitor of the console a CSRF token cookie and hands the flash message (shown
/// once) to the page. The API (bearer tokens, no cookies) is left alone.
/// Behind https (see `auth::secure_cookies`) every cookie the console sets is `Secure`.
pub(crate) async fn session_cookies(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if crate::error::wants_problem(request.uri().path()) {
        return next.run(request).await;
    }
    let secure = crate::auth::secure_cookies(&state, request.headers());
    let existing = cookie(request.headers(), CSRF_COOKIE)
        .filter(|t| t.len() == 48 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned);
    let flash = cookie(request.headers(), FLASH_COOKIE).map(percent_decode);
    let csrf = existing.clone().unwrap_or_else(new_token);
    request.extensions_mut().insert(Cookies {
        csrf: csrf.clone(),
        flash: flash.clone(),
    });
    let mut response = CSRF.scope(csrf.clone(), next.run(request)).await;
    let headers = response.headers_mut();
    if existing.is_none() {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{CSRF_COOKIE}={csrf}; Path=/; HttpOnly; SameSite=Lax"
        )) {
            headers.append(header::SET_COOKIE, v);
        }
    }
    let setting_flash = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| v.as_bytes().starts_with(FLASH_COOKIE.as_bytes()));
    if flash.is_some() && !setting_flash {
        headers.append(
            header::SET_COOKIE,
            HeaderValue::from_static("st_flash=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"),
        );
    }
    if secure {
        let cookies: Vec<HeaderValue> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| match v.to_str() {
                Ok(text) if !text.contains("; Secure") => {
                    HeaderValue::from_str(&format!("{text}; Secure")).unwrap_or_else(|_| v.clone())
                }
                _ => v.clone(),
            })
            .collect();
        headers.remove(header::SET_COOKIE);
        for cookie in cookies {
            headers.append(header::SET_COOKIE, cookie);
        }
    }
    response
}

/// Percent-encodes everything but RFC 3986's unreserved characters (query values, cookies).
pub(crate) fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A redirect after a successful form, with a message for the next page.
pub(crate) fn redirect_with_flash(to: &str, message: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{FLASH_COOKIE}={}; Path=/; Max-Age=60; HttpOnly; SameSite=Lax",
        percent_encode(message)
    )) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// The answer to a form that succeeded: a redirect with a flash message; for a form sent by
/// htmx from a dialog, `HX-Redirect` instead (htmx would follow a 303 inside the dialog).
pub(crate) fn form_done(headers: &HeaderMap, to: &str, message: &str) -> Response {
    let mut response = redirect_with_flash(to, message);
    if from_htmx(headers) {
        *response.status_mut() = StatusCode::OK;
        response.headers_mut().remove(header::LOCATION);
        if let Ok(v) = HeaderValue::from_str(to) {
            response.headers_mut().insert("hx-redirect", v);
        }
    }
    response
}

/// The refusal of a form whose token does not match the cookie (`None`: the form may go on).
pub(crate) fn csrf_refusal(
    cookies: &Cookies,
    headers: &HeaderMap,
    submitted: &str,
) -> Option<Response> {
    let from_cookie = cookie(headers, CSRF_COOKIE).unwrap_or_default();
    let same = !from_cookie.is_empty()
        && from_cookie.len() == submitted.len()
        && from_cookie
            .bytes()
            .zip(submitted.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        None
    } else {
        Some(error_page(
            StatusCode::FORBIDDEN,
            cookies,
            "This form has expired",
            "The form was not sent from this console or has expired. Reload the page and try again.",
        ))
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    flash: Option<String>,
    title: &'a str,
    message: &'a str,
}

pub(crate) fn error_page(
    status: StatusCode,
    cookies: &Cookies,
    title: &str,
    message: &str,
) -> Response {
    (
        status,
        ErrorPage {
            flash: cookies.flash.clone(),
            title,
            message,
        },
    )
        .into_response()
}

/// The console's 404 page.
pub fn not_found_page() -> Response {
    (
        StatusCode::NOT_FOUND,
        ErrorPage {
            flash: None,
            title: "Page not found",
            message: "There is nothing at this address. It may have been mistyped, or the record may belong to someone else.",
        },
    )
        .into_response()
}

/// A request whose address no page can take (e.g. a NUL character in the query string).
pub fn bad_address_page(message: &'static str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        ErrorPage {
            flash: None,
            title: "This address cannot be read",
            message,
        },
    )
        .into_response()
}

pub(crate) fn internal_page(error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "internal error");
    server_error_page()
}

/// The console's 403 page.
pub fn forbidden_page() -> Response {
    (
        StatusCode::FORBIDDEN,
        ErrorPage {
            flash: None,
            title: "Not allowed",
            message: "Your role does not allow this page or action. Ask an owner or administrator of your organisation if you need it.",
        },
    )
        .into_response()
}

/// The console's 500 page (the cause is logged by the caller).
pub fn server_error_page() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorPage {
            flash: None,
            title: "Something went wrong",
            message:
                "The server could not complete this request. It has been logged; please try again.",
        },
    )
        .into_response()
}

pub(crate) fn display_time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A company row prepared for display.
struct CompanyView {
    id: Uuid,
    name: String,
    monthly_rate: String,
    archived: bool,
    customer_status: CustomerStatus,
    updated_at: String,
    updated: String,
    created: String,
    billing_address: String,
    site_address: String,
    phone: String,
    website: String,
    notes: String,
    tags: Vec<String>,
}

/// The customer status of a read-model row (`active` if the row holds something unknown).
pub(crate) fn customer_status_of(row: &CompanyRow) -> CustomerStatus {
    CustomerStatus::parse("customer_status", &row.customer_status).unwrap_or_default()
}

impl From<CompanyRow> for CompanyView {
    fn from(row: CompanyRow) -> Self {
        Self {
            id: row.id,
            customer_status: customer_status_of(&row),
            name: row.name,
            monthly_rate: format!("{:.2}", row.monthly_rate),
            archived: row.archived,
            updated_at: row.updated_at.to_rfc3339(),
            updated: display_time(&row.updated_at),
            created: display_time(&row.created_at),
            billing_address: row.billing_address,
            site_address: row.site_address,
            phone: row.phone,
            website: row.website,
            notes: row.notes,
            tags: row.tags,
        }
    }
}

/// The sections of a company's pages, one tab each (`company_tabs.html`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompanyTab {
    Overview,
    Contacts,
    Assets,
    Credentials,
    WorkOrders,
    Billing,
}

impl CompanyTab {
    pub const ALL: [CompanyTab; 6] = [
        CompanyTab::Overview,
        CompanyTab::Contacts,
        CompanyTab::Assets,
        CompanyTab::Credentials,
        CompanyTab::WorkOrders,
        CompanyTab::Billing,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Overview => "Overview",
            Self::Contacts => "Contacts",
            Self::Assets => "Assets",
            Self::Credentials => "Credentials",
            Self::WorkOrders => "Work orders",
            Self::Billing => "Billing",
        }
    }

    /// The tab's path below `/companies/{id}`.
    pub fn path(self) -> &'static str {
        match self {
            Self::Overview => "",
            Self::Contacts => "/contacts",
            Self::Assets => "/assets",
            Self::Credentials => "/credentials",
            Self::WorkOrders => "/work-orders",
            Self::Billing => "/billing",
        }
    }
}

/// One link of the tab bar.
pub struct TabLink {
    pub label: &'static str,
    pub href: String,
    pub current: bool,
}

/// The heading and tab bar of a company's pages. A page that shows them has a field
/// `tabs: CompanyTabs` and `{% include "company_tabs.html" %}` where they go; the handler gets
/// both the company and its tabs from `company_for_tab` (404 for anything not the asker's):
///
/// ```ignore
/// async fn assets_tab(State(state): State<AppState>, me: Principal,
///     Extension(cookies): Extension<Cookies>, path: Result<Path<String>, PathRejection>,
/// ) -> Response {
///     if let Err(refused) = me.require(Action::ViewCompanies) {
///         return refused.into_response();
///     }
///     let (company, tabs) = match company_for_tab(&state, &me, path, CompanyTab::Assets).await {
///         Ok(found) => found,
///         Err(page) => return page,
///     };
///     AssetsTab { flash: cookies.flash.clone(), tabs, /* … */ }.into_response()
/// }
/// ```
#[derive(Debug, Clone)]
pub struct CompanyTabs {
    pub id: Uuid,
    pub name: String,
    pub customer_status: CustomerStatus,
    pub archived: bool,
    pub active: CompanyTab,
}

impl CompanyTabs {
    pub fn new(company: &CompanyRow, active: CompanyTab) -> Self {
        Self {
            id: company.id,
            name: company.name.clone(),
            customer_status: customer_status_of(company),
            archived: company.archived,
            active,
        }
    }

    pub fn links(&self) -> Vec<TabLink> {
        CompanyTab::ALL
            .into_iter()
            .map(|tab| TabLink {
                label: tab.label(),
                href: format!("/companies/{}{}", self.id, tab.path()),
                current: tab == self.active,
            })
            .collect()
    }
}

/// The company of a company page (`/companies/{id}/…`) with its tab bar, or the page to
/// answer instead: 404 when the id is not a UUID or not one of the asker's tenant's companies.
/// The caller checks the role first.
pub(crate) async fn company_for_tab(
    state: &AppState,
    me: &Principal,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    active: CompanyTab,
) -> Result<(CompanyRow, CompanyTabs), Response> {
    let Some(id) = path_uuid(path) else {
        return Err(not_found_page());
    };
    match companies::get(&state.pool, me.tenant_id, id).await {
        Ok(Some(row)) => {
            let tabs = CompanyTabs::new(&row, active);
            Ok((row, tabs))
        }
        Ok(None) => Err(not_found_page()),
        Err(error) => Err(internal_page(error)),
    }
}

/// A multipart form read whole (an upload): each part's name → its file name (empty for a
/// plain field) and bytes. A form that cannot be read is the page to answer instead, with
/// `limit` (what the form accepts) in its message.
pub(crate) struct FormParts(std::collections::HashMap<String, (String, axum::body::Bytes)>);

impl FormParts {
    pub(crate) async fn read(
        mut multipart: axum::extract::Multipart,
        cookies: &Cookies,
        limit: &str,
    ) -> Result<Self, Response> {
        let mut parts = std::collections::HashMap::new();
        loop {
            match multipart.next_field().await {
                Ok(Some(field)) => {
                    let name = field.name().unwrap_or("").to_owned();
                    let file_name = field.file_name().unwrap_or("").to_owned();
                    match field.bytes().await {
                        Ok(data) => {
                            parts.insert(name, (file_name, data));
                        }
                        Err(e) => {
                            return Err(error_page(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                cookies,
                                "The upload could not be read",
                                &format!("{} {limit}", e.body_text()),
                            ))
                        }
                    }
                }
                Ok(None) => return Ok(Self(parts)),
                Err(e) => {
                    return Err(error_page(
                        e.status(),
                        cookies,
                        "The upload could not be read",
                        &format!("{} {limit}", e.body_text()),
                    ))
                }
            }
        }
    }

    /// A plain field's text (empty when absent).
    pub(crate) fn text(&self, name: &str) -> String {
        self.0
            .get(name)
            .map(|(_, data)| String::from_utf8_lossy(data).into_owned())
            .unwrap_or_default()
    }

    /// A file part: its file name and bytes (empty when absent).
    pub(crate) fn file(&self, name: &str) -> (String, axum::body::Bytes) {
        self.0.get(name).cloned().unwrap_or_default()
    }
}

/// The values and messages of a company form.
#[derive(Default)]
struct CompanyFormView {
    name: String,
    monthly_rate: String,
    /// The new company form's customer status (empty: active).
    customer_status: String,
    name_error: Option<String>,
    rate_error: Option<String>,
    status_error: Option<String>,
}

impl CompanyFormView {
    fn statuses(&self) -> Vec<StatusOption> {
        let current = match self.customer_status.as_str() {
            "" => "active",
            other => other,
        };
        status_options(current)
    }
}

/// An option of a customer-status select.
struct StatusOption {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

fn status_options(current: &str) -> Vec<StatusOption> {
    CustomerStatus::ALL
        .into_iter()
        .map(|s| StatusOption {
            value: s.as_str(),
            label: s.label(),
            selected: s.as_str() == current,
        })
        .collect()
}

#[derive(Template, WebTemplate)]
#[template(path = "companies.html")]
struct CompaniesPage {
    flash: Option<String>,
    q: String,
    status: &'static str,
    customer_status: String,
    statuses: Vec<StatusOption>,
    tag: String,
    /// The tags in use, offered by the tag filter.
    tags: Vec<String>,
    filtered: bool,
    rows: Vec<CompanyView>,
    /// The link to the next page, if there is one.
    next: Option<String>,
    /// The link to the first page, when this is not it.
    first: Option<String>,
}

/// Companies a console list page shows.
const PAGE_SIZE: i64 = 50;

/// The "new company" form: a fragment for the modal (htmx), or a page of its own.
#[derive(Template, WebTemplate)]
#[template(path = "company_new_form.html")]
struct NewCompanyForm {
    csrf: String,
    form: CompanyFormView,
}

#[derive(Template, WebTemplate)]
#[template(path = "company_new.html")]
struct NewCompanyPage {
    flash: Option<String>,
    csrf: String,
    form: CompanyFormView,
}

/// True for a request htmx sent (it wants a fragment, not a page).
/// The id in a console path (`None`: not a UUID, so nothing there: the 404 page).
/// The two ids of a console path such as `/assets/{id}/documents/{document_id}`; `None` when
/// either is not a UUID (the caller answers with the 404 page).
pub(crate) fn two_ids(
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Option<(Uuid, Uuid)> {
    let Path((first, second)) = path.ok()?;
    Some((
        Uuid::parse_str(&first).ok()?,
        Uuid::parse_str(&second).ok()?,
    ))
}

pub(crate) fn path_uuid(
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Option<Uuid> {
    path.ok().and_then(|Path(raw)| Uuid::parse_str(&raw).ok())
}

pub(crate) fn from_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

fn new_company_form(
    cookies: &Cookies,
    headers: &HeaderMap,
    form: CompanyFormView,
    status: StatusCode,
) -> Response {
    let csrf = cookies.csrf.clone();
    if from_htmx(headers) {
        (status, NewCompanyForm { csrf, form }).into_response()
    } else {
        (
            status,
            NewCompanyPage {
                flash: cookies.flash.clone(),
                csrf,
                form,
            },
        )
            .into_response()
    }
}

async fn new_company(
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = me.require(Action::EditCompanies) {
        return refused.into_response();
    }
    new_company_form(
        &cookies,
        &headers,
        CompanyFormView::default(),
        StatusCode::OK,
    )
}

#[derive(Debug, Deserialize, Default)]
struct ListParams {
    q: Option<String>,
    status: Option<String>,
    customer_status: Option<String>,
    tag: Option<String>,
    after: Option<String>,
}

fn status_filter(raw: Option<&str>) -> (StatusFilter, &'static str) {
    match raw {
        Some("archived") => (StatusFilter::Archived, "archived"),
        Some("all") => (StatusFilter::All, "all"),
        _ => (StatusFilter::Active, "active"),
    }
}

async fn render_list(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    params: &ListParams,
    status_code: StatusCode,
) -> Response {
    let (filter, status) = status_filter(params.status.as_deref());
    let q = params.q.clone().unwrap_or_default();
    let customer_status = params
        .customer_status
        .as_deref()
        .and_then(|s| CustomerStatus::parse("customer_status", s).ok());
    let tag = domain::company::normalize_tag(params.tag.as_deref().unwrap_or_default());
    let after = params.after.as_deref().and_then(Cursor::decode);
    let page = companies::list(
        &state.pool,
        me.tenant_id,
        &ListQuery {
            search: Some(q.as_str()),
            status: filter,
            customer_status: customer_status.map(CustomerStatus::as_str),
            tag: Some(tag.as_str()).filter(|t| !t.is_empty()),
            limit: PAGE_SIZE,
            after: after.clone(),
        },
    )
    .await;
    let tags = companies::tags_in_use(&state.pool, me.tenant_id).await;
    let (page, tags) = match (page, tags) {
        (Ok(page), Ok(tags)) => (page, tags),
        (Err(error), _) | (_, Err(error)) => return internal_page(error),
    };
    let customer_status = customer_status.map_or("", CustomerStatus::as_str);
    let link = |after: Option<&Cursor>| {
        let mut query = vec![("status", status.to_owned())];
        for (key, value) in [
            ("q", q.trim()),
            ("customer_status", customer_status),
            ("tag", &tag),
        ] {
            if !value.is_empty() {
                query.push((key, value.to_owned()));
            }
        }
        if let Some(after) = after {
            query.push(("after", after.encode()));
        }
        let query: Vec<String> = query
            .into_iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(&v)))
            .collect();
        format!("/companies?{}", query.join("&"))
    };
    (
        status_code,
        CompaniesPage {
            flash: cookies.flash.clone(),
            filtered: !q.trim().is_empty() || !customer_status.is_empty() || !tag.is_empty(),
            next: page.next.as_ref().map(|c| link(Some(c))),
            first: after.as_ref().map(|_| link(None)),
            q,
            status,
            customer_status: customer_status.to_owned(),
            statuses: status_options(customer_status),
            tag,
            tags,
            rows: page.rows.into_iter().map(CompanyView::from).collect(),
        },
    )
        .into_response()
}

async fn list_page(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    let params = params.map(|Query(p)| p).unwrap_or_default();
    render_list(&state, &me, &cookies, &params, StatusCode::OK).await
}

#[derive(Debug, Deserialize)]
struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    monthly_rate: String,
    /// Empty: active.
    #[serde(default)]
    customer_status: String,
}

/// The home page's work figures.
struct StatusCount {
    status: &'static str,
    label: String,
    count: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "home.html")]
struct HomePage {
    flash: Option<String>,
    open_total: i64,
    open_by_status: Vec<StatusCount>,
    breaching: i64,
    warning: i64,
    unassigned: i64,
    unbilled_time: String,
    unbilled_amount: String,
    may_edit: bool,
}

/// The first page after sign-in: for staff who see work orders, the work dashboard (open
/// orders by status, SLA trouble, unassigned, unbilled work); else the first thing the
/// person's role may see.
async fn home(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
) -> Response {
    if !me.may(Action::ViewWorkOrders) {
        return if me.may(Action::ViewCompanies) {
            Redirect::to("/companies").into_response()
        } else {
            Redirect::to("/account").into_response()
        };
    }
    let loaded = async {
        let dashboard = projections::work_orders::dashboard(&state.pool, me.tenant_id).await?;
        let tenant = crate::work_orders::tenant(&state, me.tenant_id).await?;
        Ok::<_, crate::error::ApiError>((dashboard, tenant))
    };
    let (dashboard, tenant) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let local = crate::work_order_pages::Local::of(&tenant);
    HomePage {
        flash: cookies.flash.clone(),
        open_total: dashboard.open_total,
        open_by_status: dashboard
            .open_by_status
            .iter()
            .map(|(status, count)| {
                let status = domain::workorder::Status::parse("status", status).unwrap_or_default();
                StatusCount {
                    status: status.as_str(),
                    label: capitalise(status.label()),
                    count: *count,
                }
            })
            .collect(),
        breaching: dashboard.breaching,
        warning: dashboard.warning,
        unassigned: dashboard.unassigned_open,
        unbilled_time: crate::work_order_pages::duration(dashboard.unbilled_minutes),
        unbilled_amount: local.money(dashboard.unbilled_amount),
        may_edit: me.may(Action::EditWorkOrders),
    }
    .into_response()
}

async fn create(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Form(form): Form<CreateForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::EditCompanies) {
        return refused.into_response();
    }
    let name = CompanyName::parse(&form.name);
    let rate = if form.monthly_rate.trim().is_empty() {
        Ok(Amount::ZERO)
    } else {
        Amount::parse("monthly_rate", &form.monthly_rate)
    };
    let status = match form.customer_status.trim() {
        "" => Ok(CustomerStatus::Active),
        raw => CustomerStatus::parse("customer_status", raw),
    };
    let (name, monthly_rate, customer_status) = match (name, rate, status) {
        (Ok(name), Ok(rate), Ok(status)) => (name, rate, status),
        (name, rate, status) => {
            let view = CompanyFormView {
                name: form.name,
                monthly_rate: form.monthly_rate,
                name_error: name.err().map(|e| format!("Name {}", e.message)),
                rate_error: rate.err().map(|e| format!("Monthly rate {}", e.message)),
                status_error: status
                    .err()
                    .map(|e| format!("Customer status {}", e.message)),
                customer_status: form.customer_status,
            };
            return new_company_form(&cookies, &headers, view, StatusCode::UNPROCESSABLE_ENTITY);
        }
    };
    let meta = me.meta();
    let id = meta.new_aggregate_id();
    let result = state
        .store
        .create::<Company>(
            &id.to_string(),
            CompanyCommand::Register {
                name: name.clone(),
                monthly_rate,
                customer_status,
                profile: Default::default(),
            },
            &(),
            &meta,
        )
        .await;
    match result {
        Ok(done) => {
            state
                .read_your_writes(&["companies"], "company", &done.aggregate_id, done.version)
                .await;
            form_done(
                &headers,
                &format!("/companies/{id}"),
                &format!("Added {name}."),
            )
        }
        Err(error) => internal_page(error),
    }
}

/// One line of an entity's History section.
pub(crate) struct HistoryView {
    pub(crate) at: String,
    pub(crate) when: String,
    pub(crate) what: String,
    pub(crate) actor: String,
}

/// The History section of an entity's page: its last 100 events, oldest first, with who did
/// them by name.
pub(crate) async fn history_views(
    state: &AppState,
    me: &Principal,
    aggregate_type: &str,
    id: &str,
) -> Result<Vec<HistoryView>, sqlx::Error> {
    let names = projections::users::actor_names(&state.pool, me.tenant_id).await?;
    let items =
        projections::history::for_aggregate(&state.pool, me.tenant_id, aggregate_type, id, 100)
            .await?;
    Ok(items
        .into_iter()
        .map(|item| HistoryView {
            at: item.recorded_at.to_rfc3339(),
            when: display_time(&item.recorded_at),
            what: projections::history::summary(aggregate_type, &item.event_type, &item.payload),
            actor: projections::users::actor_label(&names, &item.actor),
        })
        .collect())
}

#[derive(Template, WebTemplate)]
#[template(path = "company.html")]
struct CompanyPage {
    flash: Option<String>,
    csrf: String,
    tabs: CompanyTabs,
    company: CompanyView,
    form: CompanyFormView,
    history: Vec<HistoryView>,
    /// Current contacts marked primary.
    primary: Vec<projections::contacts::ContactRow>,
    /// Current contacts who receive the invoices.
    billing: Vec<projections::contacts::ContactRow>,
}

async fn render_company(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    id: &str,
    form: Option<CompanyFormView>,
    status_code: StatusCode,
) -> Response {
    let Ok(id) = Uuid::parse_str(id) else {
        return not_found_page();
    };
    let row = match companies::get(&state.pool, me.tenant_id, id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let contacts = match projections::contacts::of_company(&state.pool, me.tenant_id, id).await {
        Ok(contacts) => contacts,
        Err(error) => return internal_page(error),
    };
    let history = match history_views(state, me, "company", &id.to_string()).await {
        Ok(history) => history,
        Err(error) => return internal_page(error),
    };
    let (primary, billing) = contacts
        .into_iter()
        .filter(|c| !c.former)
        .filter(|c| c.is_primary || c.billing)
        .fold((Vec::new(), Vec::new()), |(mut p, mut b), c| {
            if c.is_primary {
                p.push(c.clone());
            }
            if c.billing {
                b.push(c);
            }
            (p, b)
        });
    // The page has one form per field: the one not being corrected shows the current value.
    let mut form = form.unwrap_or_default();
    if form.name_error.is_none() {
        form.name = row.name.clone();
    }
    if form.rate_error.is_none() {
        form.monthly_rate = format!("{:.2}", row.monthly_rate);
    }
    (
        status_code,
        CompanyPage {
            flash: cookies.flash.clone(),
            csrf: cookies.csrf.clone(),
            tabs: CompanyTabs::new(&row, CompanyTab::Overview),
            company: row.into(),
            form,
            history,
            primary,
            billing,
        },
    )
        .into_response()
}

async fn company_page(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    Path(id): Path<String>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    render_company(&state, &me, &cookies, &id, None, StatusCode::OK).await
}

#[derive(Debug, Deserialize)]
struct FieldForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    monthly_rate: String,
}

/// Runs a command from a company page: success redirects back with `done`; a refusal shows the
/// page again with the message.
async fn company_command(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    headers: &HeaderMap,
    id: &str,
    command: CompanyCommand,
    done: &str,
) -> Response {
    let Ok(uuid) = Uuid::parse_str(id) else {
        return not_found_page();
    };
    let result = state
        .store
        .execute::<Company>(id, command, &(), &me.meta(), ConflictPolicy::RetryOnce)
        .await;
    match result {
        Ok(executed) => {
            state
                .read_your_writes(&["companies"], "company", id, executed.version)
                .await;
            let done = if executed.events.is_empty() {
                "Nothing changed."
            } else {
                done
            };
            form_done(headers, &format!("/companies/{uuid}"), done)
        }
        Err(CommandError::NotFound) => not_found_page(),
        Err(CommandError::Domain(e)) if e.kind() == ErrorKind::NotFound => not_found_page(),
        Err(CommandError::Domain(e)) => refused(cookies, e),
        Err(CommandError::Conflict) => error_page(
            StatusCode::CONFLICT,
            cookies,
            "Changed by someone else",
            "Someone changed this company at the same moment. Reload the page and try again.",
        ),
        Err(error) => internal_page(error),
    }
}

fn refused(cookies: &Cookies, error: CompanyError) -> Response {
    error_page(
        StatusCode::CONFLICT,
        cookies,
        "That cannot be done now",
        &format!("{}.", capitalise(&error.to_string())),
    )
}

pub(crate) fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// A one-field form of the company page: `decide` turns the form into a command and the
/// message to show after it, or into the form to show again with its error.
#[allow(clippy::too_many_arguments)]
async fn field_form(
    state: &AppState,
    me: &Principal,
    action: Action,
    cookies: &Cookies,
    headers: &HeaderMap,
    id: &str,
    form: FieldForm,
    decide: impl FnOnce(&FieldForm) -> Result<(CompanyCommand, String), Box<CompanyFormView>>,
) -> Response {
    if let Some(refused) = csrf_refusal(cookies, headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(action) {
        return refused.into_response();
    }
    match decide(&form) {
        Ok((command, done)) => {
            company_command(state, me, cookies, headers, id, command, &done).await
        }
        Err(view) => {
            render_company(
                state,
                me,
                cookies,
                id,
                Some(*view),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

async fn rename(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<FieldForm>,
) -> Response {
    field_form(
        &state,
        &me,
        Action::EditCompanies,
        &cookies,
        &headers,
        &id,
        form,
        |form| match CompanyName::parse(&form.name) {
            Ok(name) => Ok((
                CompanyCommand::Rename { name: name.clone() },
                format!("Renamed to {name}."),
            )),
            Err(e) => Err(Box::new(CompanyFormView {
                name: form.name.clone(),
                name_error: Some(format!("Name {}", e.message)),
                ..Default::default()
            })),
        },
    )
    .await
}

async fn set_rate(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<FieldForm>,
) -> Response {
    field_form(
        &state,
        &me,
        Action::SetCompanyRate,
        &cookies,
        &headers,
        &id,
        form,
        |form| match Amount::parse("monthly_rate", &form.monthly_rate) {
            Ok(monthly_rate) => Ok((
                CompanyCommand::SetMonthlyRate { monthly_rate },
                format!("Monthly rate set to {monthly_rate}."),
            )),
            Err(e) => Err(Box::new(CompanyFormView {
                monthly_rate: form.monthly_rate.clone(),
                rate_error: Some(format!("Monthly rate {}", e.message)),
                ..Default::default()
            })),
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    #[serde(default)]
    csrf: String,
}

async fn archive(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::EditCompanies) {
        return refused.into_response();
    }
    company_command(
        &state,
        &me,
        &cookies,
        &headers,
        &id,
        CompanyCommand::Archive,
        "Archived.",
    )
    .await
}

async fn restore(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::EditCompanies) {
        return refused.into_response();
    }
    company_command(
        &state,
        &me,
        &cookies,
        &headers,
        &id,
        CompanyCommand::Restore,
        "Restored.",
    )
    .await
}

#[derive(Template, WebTemplate)]
#[template(path = "company_work_orders.html")]
struct CompanyWorkOrdersPage {
    flash: Option<String>,
    tabs: CompanyTabs,
    orders: Vec<crate::work_order_pages::OrderLine>,
    /// More orders than the tab shows: the full list is a link away.
    more: bool,
    may_raise: bool,
}

/// A company's work orders, newest first, and the button that raises one for it.
async fn work_orders_tab(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    const SHOWN: i64 = 200;
    if let Err(refused) = me.require(Action::ViewWorkOrders) {
        return refused.into_response();
    }
    let (company, tabs) = match company_for_tab(&state, &me, path, CompanyTab::WorkOrders).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let filter = projections::work_orders::Filter {
        company_id: Some(company.id),
        ..Default::default()
    };
    let mut orders =
        match crate::work_order_pages::lines_of(&state, me.tenant_id, &filter, SHOWN + 1).await {
            Ok(orders) => orders,
            Err(error) => return internal_page(error),
        };
    let more = orders.len() as i64 > SHOWN;
    orders.truncate(SHOWN as usize);
    CompanyWorkOrdersPage {
        flash: cookies.flash.clone(),
        tabs,
        orders,
        more,
        may_raise: me.may(Action::EditWorkOrders) && !company.archived,
    }
    .into_response()
}

/// The values and messages of the profile form.
struct ProfileFormView {
    customer_status: String,
    billing_address: String,
    site_address: String,
    phone: String,
    website: String,
    /// Comma-separated.
    tags: String,
    notes: String,
    errors: Vec<ValidationError>,
}

/// One text input or text area of the profile form.
struct ProfileField {
    name: &'static str,
    label: &'static str,
    kind: &'static str,
    /// Rows of a text area; 0 for a one-line input.
    lines: u32,
    max: usize,
    hint: &'static str,
    value: String,
    error: Option<String>,
}

fn profile_label(field: &str) -> &'static str {
    match field {
        "customer_status" => "Customer status",
        "billing_address" => "Billing address",
        "site_address" => "Site address",
        "phone" => "Phone",
        "website" => "Website",
        "tags" => "Tags",
        "notes" => "Notes",
        _ => "This field",
    }
}

impl ProfileFormView {
    fn of(row: &CompanyRow) -> Self {
        Self {
            customer_status: row.customer_status.clone(),
            billing_address: row.billing_address.clone(),
            site_address: row.site_address.clone(),
            phone: row.phone.clone(),
            website: row.website.clone(),
            tags: row.tags.join(", "),
            notes: row.notes.clone(),
            errors: Vec::new(),
        }
    }

    /// The message for `field`, as the form shows it ("Phone must be …").
    fn error(&self, field: &str) -> Option<String> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| format!("{} {}.", profile_label(field), e.message))
    }

    fn statuses(&self) -> Vec<StatusOption> {
        status_options(&self.customer_status)
    }

    fn fields(&self) -> Vec<ProfileField> {
        let field = |name: &'static str, kind, lines, max, hint, value: &str| ProfileField {
            name,
            label: profile_label(name),
            kind,
            lines,
            max,
            hint,
            value: value.to_owned(),
            error: self.error(name),
        };
        vec![
            field(
                "billing_address",
                "text",
                3,
                MAX_ADDRESS_CHARS,
                "",
                &self.billing_address,
            ),
            field(
                "site_address",
                "text",
                3,
                MAX_ADDRESS_CHARS,
                "",
                &self.site_address,
            ),
            field("phone", "tel", 0, 30, "+1 555 0100", &self.phone),
            field(
                "website",
                "url",
                0,
                MAX_WEBSITE_CHARS,
                "https://",
                &self.website,
            ),
            field("tags", "text", 0, 1000, "vip, managed print", &self.tags),
            field("notes", "text", 4, MAX_NOTES_CHARS, "", &self.notes),
        ]
    }
}

/// The "Edit profile" form: a fragment for the dialog (htmx), or a page of its own.
#[derive(Template, WebTemplate)]
#[template(path = "company_profile_form.html")]
struct ProfileForm {
    csrf: String,
    company_id: Uuid,
    company_name: String,
    form: ProfileFormView,
}

#[derive(Template, WebTemplate)]
#[template(path = "company_profile.html")]
struct ProfilePage {
    flash: Option<String>,
    csrf: String,
    company_id: Uuid,
    company_name: String,
    form: ProfileFormView,
}

fn profile_form(
    cookies: &Cookies,
    headers: &HeaderMap,
    company: &CompanyRow,
    form: ProfileFormView,
    status: StatusCode,
) -> Response {
    let (csrf, company_id, company_name) = (cookies.csrf.clone(), company.id, company.name.clone());
    if from_htmx(headers) {
        let form = ProfileForm {
            csrf,
            company_id,
            company_name,
            form,
        };
        (status, form).into_response()
    } else {
        let page = ProfilePage {
            flash: cookies.flash.clone(),
            csrf,
            company_id,
            company_name,
            form,
        };
        (status, page).into_response()
    }
}

async fn profile_form_page(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::EditCompanies) {
        return refused.into_response();
    }
    match company_for_tab(&state, &me, path, CompanyTab::Overview).await {
        Ok((company, _)) => {
            let form = ProfileFormView::of(&company);
            profile_form(&cookies, &headers, &company, form, StatusCode::OK)
        }
        Err(page) => page,
    }
}

/// The profile form's fields (a form sends them all).
#[derive(Debug, Deserialize)]
struct ProfileFormInput {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    customer_status: String,
    #[serde(default)]
    billing_address: String,
    #[serde(default)]
    site_address: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    website: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    notes: String,
}

async fn save_profile(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    Form(input): Form<ProfileFormInput>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &input.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::EditCompanies) {
        return refused.into_response();
    }
    let company = match company_for_tab(&state, &me, path, CompanyTab::Overview).await {
        Ok((company, _)) => company,
        Err(page) => return page,
    };
    let mut errors = Vec::new();
    let status = CustomerStatus::parse("customer_status", &input.customer_status)
        .map_err(|e| errors.push(e))
        .ok();
    let profile = ProfileChanges::parse(&ProfileInput {
        billing_address: Some(&input.billing_address),
        site_address: Some(&input.site_address),
        phone: Some(&input.phone),
        website: Some(&input.website),
        notes: Some(&input.notes),
        tags: Some(split_tags(&input.tags)),
    })
    .map_err(|mut e| errors.append(&mut e))
    .ok();
    let (Some(status), Some(profile)) = (status, profile) else {
        let view = ProfileFormView {
            customer_status: input.customer_status,
            billing_address: input.billing_address,
            site_address: input.site_address,
            phone: input.phone,
            website: input.website,
            tags: input.tags,
            notes: input.notes,
            errors,
        };
        return profile_form(
            &cookies,
            &headers,
            &company,
            view,
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    };
    let command = CompanyCommand::Update(CompanyChanges {
        customer_status: Some(status),
        profile,
        ..Default::default()
    });
    company_command(
        &state,
        &me,
        &cookies,
        &headers,
        &company.id.to_string(),
        command,
        "Profile saved.",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_messages_survive_the_cookie() {
        for message in [
            "Added Acme & Sons, Ltd.",
            "Renamed to Ünïcode; “quotes” 100%",
            "",
            "%",
            "%é1",
        ] {
            assert_eq!(percent_decode(&percent_encode(message)), message);
        }
    }
}
