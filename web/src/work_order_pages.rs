//! The technicians' console for work orders (issue 5): the list with its filters, the board,
//! "My work", the form that raises an order, the order's page (SLA, status moves, assignment,
//! timer, time entries, materials, comments, status links, edit, timeline) and the unbilled
//! work (time and materials).
//!
//! Every page reads the `work_orders` read model (the timeline reads the order's events from
//! the log); every form runs one of the operations the API shares (`crate::work_orders`), so a
//! rule lives in one place. A refused form shows the order's page again with the messages
//! next to the fields (422) or the refusal on top (409); a success redirects (303) with a flash
//! message. Times are shown in the organisation's time zone, money with two decimals and the
//! organisation's currency.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use commands::Executed;
use domain::authz::{self, Action};
use domain::identity::{Role, TimeZone};
use domain::tenant::Tenant;
use domain::workorder::{
    Billing, Origin, Priority, Status, WorkOrder, WorkOrderCommand, WorkOrderEvent,
};
use domain::ValidationError;
use projections::assets::{self, AssetQuery, AssetRow};
use projections::companies::{self, CompanyRow};
use projections::contacts::{self, ContactRow};
use projections::history;
use projections::work_orders::{self as read, Filter, MaterialRow, TimeEntryRow, WorkOrderRow};
use rust_decimal::Decimal;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Principal;
use crate::console::{
    capitalise, csrf_refusal, error_page, internal_page, not_found_page, path_uuid, percent_encode,
    redirect_with_flash, Cookies,
};
use crate::error::ApiError;
use crate::work_orders::{self as ops, ChangeBody, MaterialBody, OpenBody, TimeBody, WorkKind};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/work-orders", get(list_page))
        .route("/work-orders/board", get(board_page))
        .route("/work-orders/mine", get(mine_page))
        .route("/work-orders/new", get(new_page).post(create))
        .route("/work-orders/{id}", get(order_page))
        .route("/work-orders/{id}/status", post(move_status))
        .route("/work-orders/{id}/assign", post(assign))
        .route("/work-orders/{id}/timer/start", post(timer_start))
        .route("/work-orders/{id}/timer/stop", post(timer_stop))
        .route("/work-orders/{id}/time", post(add_time))
        .route("/work-orders/{id}/comments", post(add_comment))
        .route("/work-orders/{id}/links", post(issue_link))
        .route(
            "/work-orders/{id}/links/{link_id}/revoke",
            post(revoke_link),
        )
        .route("/work-orders/{id}/edit", post(edit))
        .route(
            "/work-orders/{id}/time/{entry_id}/remove",
            post(remove_entry),
        )
        .route("/work-orders/{id}/materials", post(add_material))
        .route(
            "/work-orders/{id}/materials/{material_id}/remove",
            post(remove_material),
        )
        .route("/unbilled", get(unbilled_page))
        .route("/unbilled/{company_id}", get(unbilled_company_page))
}

/// Orders a list page shows.
const PAGE_SIZE: i64 = 50;
/// Cards an open column of the board shows.
const BOARD_COLUMN: i64 = 100;
/// Resolved orders the board shows.
const BOARD_RESOLVED: i64 = 20;

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

/// How the organisation reads times and money.
pub(crate) struct Local {
    zone: TimeZone,
    currency: String,
}

impl Local {
    pub(crate) fn of(tenant: &Tenant) -> Self {
        Self {
            zone: tenant
                .time_zone
                .unwrap_or_else(|| tenant.business_hours().time_zone),
            currency: tenant
                .currency
                .map(|c| c.code().to_owned())
                .unwrap_or_default(),
        }
    }

    /// `2026-11-16 14:05` in the organisation's zone.
    pub(crate) fn time(&self, at: &DateTime<Utc>) -> String {
        at.with_timezone(&self.zone.tz())
            .format("%Y-%m-%d %H:%M")
            .to_string()
    }

    /// `14:05` in the organisation's zone.
    fn clock(&self, at: &DateTime<Utc>) -> String {
        at.with_timezone(&self.zone.tz())
            .format("%H:%M")
            .to_string()
    }

    /// `71.25 USD`.
    pub(crate) fn money(&self, amount: Decimal) -> String {
        format!("{amount:.2} {}", self.currency)
            .trim_end()
            .to_owned()
    }

    fn zone_name(&self) -> String {
        self.zone.to_string()
    }
}

/// `1 h 30 min`, `45 min`, `2 h`.
pub(crate) fn duration(minutes: i64) -> String {
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

async fn local_of(state: &AppState, tenant_id: Uuid) -> Result<(Tenant, Local), ApiError> {
    let tenant = ops::tenant(state, tenant_id).await?;
    let local = Local::of(&tenant);
    Ok((tenant, local))
}

/// A select's option.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

/// Options from `(value, label)` pairs; a current value not among them stays selected (so a
/// bad filter is shown as it was typed, next to its message).
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

fn priority_choices(current: &str) -> Vec<Choice> {
    choices(
        Priority::ALL
            .iter()
            .map(|p| (p.as_str().to_owned(), capitalise(p.as_str())))
            .collect(),
        current,
    )
}

/// The messages of a refused form, by field, as people read them ("Title must not be empty.").
#[derive(Default)]
struct Errors(Vec<ValidationError>);

fn field_label(field: &str) -> &'static str {
    match field {
        "company_id" => "Company",
        "title" => "Title",
        "description" => "Description",
        "priority" => "Priority",
        "type" => "Type",
        "contact_id" => "Contact",
        "asset_ids" => "Assets",
        "assignee_id" => "Assignee",
        "opened_at" => "Opened at",
        "status" => "Status",
        "minutes" => "Minutes",
        "work_date" => "Date",
        "note" => "Note",
        "billing" => "Billing",
        "technician_id" => "Technician",
        "body" => "Comment",
        "kind" => "Kind",
        "material_description" => "Description",
        "material_sku" => "SKU",
        "material_quantity" => "Quantity",
        "material_unit_price" => "Unit price",
        "material_billing" => "Billing",
        "material_used_on" => "Date used",
        _ => "This field",
    }
}

fn sentence(error: &ValidationError) -> String {
    let text = format!("{} {}", field_label(error.field), error.message);
    if text.ends_with('.') {
        text
    } else {
        format!("{text}.")
    }
}

impl Errors {
    /// The message of `field`, if it has one.
    fn of(&self, field: &str) -> Option<String> {
        let found: Vec<String> = self
            .0
            .iter()
            .filter(|e| e.field == field)
            .map(sentence)
            .collect();
        (!found.is_empty()).then(|| found.join(" "))
    }

    fn any(&self) -> bool {
        !self.0.is_empty()
    }

    /// Messages of fields a form does not show.
    fn others(&self, shown: &[&str]) -> Vec<String> {
        self.0
            .iter()
            .filter(|e| !shown.contains(&e.field))
            .map(sentence)
            .collect()
    }
}

/// One order in a list, on the board or in a company's tab.
pub(crate) struct OrderLine {
    pub(crate) id: Uuid,
    pub(crate) number: i64,
    pub(crate) title: String,
    pub(crate) company_id: Uuid,
    pub(crate) company: String,
    pub(crate) priority: String,
    pub(crate) status: String,
    pub(crate) status_label: String,
    pub(crate) assignee: String,
    pub(crate) opened: String,
    /// none, ok, warning, paused, met or breached.
    pub(crate) sla_state: String,
    /// "ok · due 2026-11-16 14:00", "paused", "" without an SLA.
    pub(crate) sla_text: String,
}

/// When the next SLA target falls due: the response until someone responded, then the
/// resolution.
fn next_due(row: &WorkOrderRow) -> Option<DateTime<Utc>> {
    if row.responded_at.is_none() {
        row.response_due_at.or(row.resolution_due_at)
    } else {
        row.resolution_due_at
    }
}

fn status_label(status: &str) -> String {
    Status::parse("status", status)
        .map(|s| capitalise(s.label()))
        .unwrap_or_else(|_| status.to_owned())
}

impl OrderLine {
    pub(crate) fn new(row: &WorkOrderRow, local: &Local) -> Self {
        let sla_text = match (row.sla_state.as_str(), next_due(row)) {
            ("none", _) => String::new(),
            ("paused", _) => "paused".into(),
            ("met", _) => "met".into(),
            (state, Some(due)) => format!("{state} · due {}", local.time(&due)),
            (state, None) => state.to_owned(),
        };
        Self {
            id: row.id,
            number: row.number,
            title: row.title.clone(),
            company_id: row.company_id,
            company: row.company_name.clone(),
            priority: row.priority.clone(),
            status: row.status.clone(),
            status_label: status_label(&row.status),
            assignee: row.assignee_name.clone().unwrap_or_default(),
            opened: local.time(&row.opened_at),
            sla_state: row.sla_state.clone(),
            sla_text,
        }
    }
}

/// The orders of a company (its Work orders tab) or naming an asset (the asset's page),
/// newest first, as lines.
pub(crate) async fn lines_of(
    state: &AppState,
    tenant_id: Uuid,
    filter: &Filter,
    limit: i64,
) -> Result<Vec<OrderLine>, ApiError> {
    let (_, local) = local_of(state, tenant_id).await?;
    let rows = read::list(&state.pool, tenant_id, filter, None, limit).await?;
    Ok(rows.iter().map(|r| OrderLine::new(r, &local)).collect())
}

/// The tenant's companies by name (archived ones too when `archived`).
async fn company_names(
    state: &AppState,
    tenant_id: Uuid,
    archived: bool,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name FROM companies WHERE tenant_id = $1 AND ($2 OR NOT archived)
          ORDER BY lower(name), id",
    )
    .bind(tenant_id)
    .bind(archived)
    .fetch_all(&state.pool)
    .await
}

/// The staff who may work on orders (enabled members with `EditWorkOrders`), by name.
async fn workers(state: &AppState, tenant_id: Uuid) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    let people = projections::users::list(&state.pool, tenant_id).await?;
    Ok(people
        .into_iter()
        .filter(|u| u.member && u.enabled)
        .filter(|u| {
            u.role()
                .is_some_and(|r| authz::allows(r, Action::EditWorkOrders))
        })
        .map(|u| {
            let name = if u.name.is_empty() { u.email } else { u.name };
            (u.id, name)
        })
        .collect())
}

/// A refusal of the shared operations as a console page (pages without a form of their own).
fn api_error_page(cookies: &Cookies, error: ApiError) -> Response {
    match error {
        ApiError::NotFound(_) => not_found_page(),
        ApiError::Conflict(message) | ApiError::BadRequest(message) => error_page(
            StatusCode::CONFLICT,
            cookies,
            "That cannot be done now",
            &format!("{}.", capitalise(message.trim_end_matches('.'))),
        ),
        ApiError::Rejected { status, detail } => error_page(
            status,
            cookies,
            "That cannot be done now",
            &format!("{}.", capitalise(detail.trim_end_matches('.'))),
        ),
        ApiError::Invalid(errors) => error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            cookies,
            "Please check the form",
            &errors.iter().map(sentence).collect::<Vec<_>>().join(" "),
        ),
        other => internal_page(other),
    }
}

// ---------------------------------------------------------------------------------------------
// Filters (list and board)
// ---------------------------------------------------------------------------------------------

/// The filters as typed in the query string.
#[derive(Debug, Clone, Default)]
struct FilterForm {
    /// `open` (default), `all`, or a status.
    status: String,
    priority: String,
    /// `me`, `unassigned` or a person's id.
    technician: String,
    company: String,
    sla: String,
    before: String,
}

const SLA_STATES: [(&str, &str); 6] = [
    ("ok", "On time"),
    ("warning", "Warning"),
    ("breached", "Breached"),
    ("paused", "Paused"),
    ("met", "Met"),
    ("none", "No SLA"),
];

impl FilterForm {
    fn from_pairs(pairs: &[(String, String)]) -> Self {
        let mut form = Self::default();
        for (key, value) in pairs {
            let value = value.trim().to_owned();
            match key.as_str() {
                "status" => form.status = value,
                "priority" => form.priority = value,
                "technician" | "assignee" => form.technician = value,
                "company" | "company_id" => form.company = value,
                "sla" => form.sla = value,
                "before" => form.before = value,
                _ => {}
            }
        }
        if form.status.is_empty() {
            form.status = "open".into();
        }
        form
    }

    /// The read model's filter, or the message that says what is wrong.
    fn filter(&self, me: &Principal) -> Result<(Filter, Option<i64>), String> {
        let mut problems = Vec::new();
        let status = match self.status.as_str() {
            "all" => None,
            other => Some(other),
        };
        let technician = match self.technician.as_str() {
            "" => None,
            "unassigned" => Some("none"),
            other => Some(other),
        };
        let company_id = match self.company.as_str() {
            "" => None,
            text => match Uuid::parse_str(text) {
                Ok(id) => Some(id),
                Err(_) => {
                    problems.push("Company must be one of your companies.".to_owned());
                    None
                }
            },
        };
        let before = match self.before.as_str() {
            "" => None,
            text => match text.parse::<i64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    problems.push(
                        "The page link is not valid: start again from the first page.".to_owned(),
                    );
                    None
                }
            },
        };
        // One check per field, so every bad value is reported at once.
        let checks = [
            ops::filter_of(me, status, None, None, None, None, None),
            ops::filter_of(me, None, None, technician, None, None, None),
            ops::filter_of(me, None, None, None, Some(&self.priority), None, None),
            ops::filter_of(me, None, None, None, None, None, Some(&self.sla)),
        ];
        for check in checks {
            if let Err(ApiError::BadRequest(message)) = check {
                let message = message
                    .replace("assignee must be", "technician must be")
                    .replace("sla must be", "SLA must be")
                    .replace("a user id, `me` or `none`", "a person, me or unassigned");
                problems.push(format!("{}.", capitalise(&message.replace('`', ""))));
            }
        }
        if !problems.is_empty() {
            return Err(problems.join(" "));
        }
        let filter = ops::filter_of(
            me,
            status,
            company_id,
            technician,
            Some(self.priority.as_str()),
            None,
            Some(self.sla.as_str()),
        )
        .map_err(|e| e.to_string())?;
        Ok((filter, before))
    }

    /// The query string of these filters (without `before`).
    fn query(&self) -> String {
        let pairs = [
            ("status", &self.status),
            ("priority", &self.priority),
            ("technician", &self.technician),
            ("company", &self.company),
            ("sla", &self.sla),
        ];
        pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    fn filtered(&self) -> bool {
        self.status != "open"
            || !self.priority.is_empty()
            || !self.technician.is_empty()
            || !self.company.is_empty()
            || !self.sla.is_empty()
    }
}

/// The selects of the filter form.
struct FilterView {
    statuses: Vec<Choice>,
    priorities: Vec<Choice>,
    technicians: Vec<Choice>,
    companies: Vec<Choice>,
    slas: Vec<Choice>,
}

async fn filter_view(
    state: &AppState,
    me: &Principal,
    form: &FilterForm,
) -> Result<FilterView, sqlx::Error> {
    let companies = company_names(state, me.tenant_id, true).await?;
    let staff = workers(state, me.tenant_id).await?;
    let mut statuses = vec![
        ("open".to_owned(), "Open (work left)".to_owned()),
        ("all".to_owned(), "Any status".to_owned()),
    ];
    statuses.extend(
        Status::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), capitalise(s.label()))),
    );
    let mut priorities = vec![(String::new(), "Any priority".to_owned())];
    priorities.extend(
        Priority::ALL
            .iter()
            .map(|p| (p.as_str().to_owned(), capitalise(p.as_str()))),
    );
    let mut technicians = vec![
        (String::new(), "Anyone".to_owned()),
        ("me".to_owned(), "Me".to_owned()),
        ("unassigned".to_owned(), "Unassigned".to_owned()),
    ];
    technicians.extend(staff.into_iter().map(|(id, name)| (id.to_string(), name)));
    let mut company_choices = vec![(String::new(), "All companies".to_owned())];
    company_choices.extend(
        companies
            .into_iter()
            .map(|(id, name)| (id.to_string(), name)),
    );
    let mut slas = vec![(String::new(), "Any SLA state".to_owned())];
    slas.extend(
        SLA_STATES
            .iter()
            .map(|(v, l)| ((*v).to_owned(), (*l).to_owned())),
    );
    Ok(FilterView {
        statuses: choices(statuses, &form.status),
        priorities: choices(priorities, &form.priority),
        technicians: choices(technicians, &form.technician),
        companies: choices(company_choices, &form.company),
        slas: choices(slas, &form.sla),
    })
}

/// The query string's pairs (`None`: it cannot be read, e.g. bad percent-encoding).
fn query_pairs(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Option<Vec<(String, String)>> {
    query.map(|Query(pairs)| pairs).ok()
}

fn unreadable_query() -> Response {
    crate::console::bad_address_page("The filters in this address cannot be read.")
}

// ---------------------------------------------------------------------------------------------
// The list
// ---------------------------------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "work_orders.html")]
struct ListPage {
    flash: Option<String>,
    problem: Option<String>,
    form: FilterForm,
    filters: FilterView,
    rows: Vec<OrderLine>,
    next: Option<String>,
    first: Option<String>,
    time_zone: String,
    may_edit: bool,
}

async fn list_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewWorkOrders) {
        return refused.into_response();
    }
    let Some(pairs) = query_pairs(query) else {
        return unreadable_query();
    };
    let form = FilterForm::from_pairs(&pairs);
    let loaded = async {
        let (_, local) = local_of(&state, me.tenant_id).await?;
        let filters = filter_view(&state, &me, &form).await?;
        Ok::<_, ApiError>((local, filters))
    };
    let (local, filters) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let mut page = ListPage {
        flash: cookies.flash.clone(),
        problem: None,
        filters,
        rows: Vec::new(),
        next: None,
        first: None,
        time_zone: local.zone_name(),
        may_edit: me.may(Action::EditWorkOrders),
        form,
    };
    let (filter, before) = match page.form.filter(&me) {
        Ok(parsed) => parsed,
        Err(message) => {
            page.problem = Some(message);
            return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
        }
    };
    let mut rows = match read::list(&state.pool, me.tenant_id, &filter, before, PAGE_SIZE + 1).await
    {
        Ok(rows) => rows,
        Err(error) => return internal_page(error),
    };
    let query = page.form.query();
    if rows.len() as i64 > PAGE_SIZE {
        rows.truncate(PAGE_SIZE as usize);
        page.next = rows
            .last()
            .map(|r| format!("/work-orders?{query}&before={}", r.number));
    }
    if before.is_some() {
        page.first = Some(format!("/work-orders?{query}"));
    }
    page.rows = rows.iter().map(|r| OrderLine::new(r, &local)).collect();
    page.into_response()
}

// ---------------------------------------------------------------------------------------------
// The board
// ---------------------------------------------------------------------------------------------

struct Column {
    status: &'static str,
    label: String,
    cards: Vec<OrderLine>,
}

#[derive(Template, WebTemplate)]
#[template(path = "work_order_board.html")]
struct BoardPage {
    flash: Option<String>,
    problem: Option<String>,
    form: FilterForm,
    filters: FilterView,
    columns: Vec<Column>,
    time_zone: String,
    may_edit: bool,
}

async fn board_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewWorkOrders) {
        return refused.into_response();
    }
    let Some(pairs) = query_pairs(query) else {
        return unreadable_query();
    };
    let mut form = FilterForm::from_pairs(&pairs);
    // The board's columns are the statuses: a status filter does not apply.
    form.status = "open".into();
    form.before.clear();
    let loaded = async {
        let (_, local) = local_of(&state, me.tenant_id).await?;
        let filters = filter_view(&state, &me, &form).await?;
        Ok::<_, ApiError>((local, filters))
    };
    let (local, filters) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let mut page = BoardPage {
        flash: cookies.flash.clone(),
        problem: None,
        filters,
        columns: Vec::new(),
        time_zone: local.zone_name(),
        may_edit: me.may(Action::EditWorkOrders),
        form,
    };
    let filter = match page.form.filter(&me) {
        Ok((filter, _)) => filter,
        Err(message) => {
            page.problem = Some(message);
            return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
        }
    };
    let mut wanted: Vec<(Status, i64)> = read::OPEN_STATUSES
        .iter()
        .filter_map(|s| Status::parse("status", s).ok())
        .map(|s| (s, BOARD_COLUMN))
        .collect();
    wanted.push((Status::Resolved, BOARD_RESOLVED));
    for (status, limit) in wanted {
        let column_filter = Filter {
            status: vec![status.as_str().to_owned()],
            ..filter.clone()
        };
        let rows = match read::list(&state.pool, me.tenant_id, &column_filter, None, limit).await {
            Ok(rows) => rows,
            Err(error) => return internal_page(error),
        };
        page.columns.push(Column {
            status: status.as_str(),
            label: capitalise(status.label()),
            cards: rows.iter().map(|r| OrderLine::new(r, &local)).collect(),
        });
    }
    page.into_response()
}

// ---------------------------------------------------------------------------------------------
// My work
// ---------------------------------------------------------------------------------------------

struct TimerLine {
    order_id: Uuid,
    number: i64,
    title: String,
    since: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "work_order_mine.html")]
struct MinePage {
    flash: Option<String>,
    rows: Vec<OrderLine>,
    timers: Vec<TimerLine>,
    time_zone: String,
}

async fn mine_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewWorkOrders) {
        return refused.into_response();
    }
    let loaded = async {
        let (_, local) = local_of(&state, me.tenant_id).await?;
        let filter = Filter {
            status: vec!["open".into()],
            assignee_id: Some(me.user_id),
            ..Filter::default()
        };
        let rows = read::list(&state.pool, me.tenant_id, &filter, None, 500).await?;
        let timers = read::running_timers(&state.pool, me.tenant_id, me.user_id).await?;
        Ok::<_, ApiError>((local, rows, timers))
    };
    let (local, rows, timers) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    MinePage {
        flash: cookies.flash.clone(),
        rows: rows.iter().map(|r| OrderLine::new(r, &local)).collect(),
        timers: timers
            .into_iter()
            .map(|t| TimerLine {
                order_id: t.work_order_id,
                number: t.work_order_number,
                title: t.work_order_title,
                since: local.time(&t.started_at),
            })
            .collect(),
        time_zone: local.zone_name(),
    }
    .into_response()
}

// ---------------------------------------------------------------------------------------------
// Raising an order
// ---------------------------------------------------------------------------------------------

/// The new order form as typed.
#[derive(Debug, Default, Clone)]
struct NewForm {
    company_id: String,
    title: String,
    description: String,
    priority: String,
    work_type: String,
    contact_id: String,
    asset_ids: Vec<String>,
    assign_me: bool,
    holds_assets: bool,
}

impl NewForm {
    fn from_pairs(pairs: &[(String, String)]) -> (Self, String) {
        let mut form = Self::default();
        let mut csrf = String::new();
        for (key, value) in pairs {
            match key.as_str() {
                "csrf" => csrf = value.clone(),
                "company_id" => form.company_id = value.trim().to_owned(),
                "title" => form.title = value.clone(),
                "description" => form.description = value.clone(),
                "priority" => form.priority = value.trim().to_owned(),
                "type" => form.work_type = value.trim().to_owned(),
                "contact_id" => form.contact_id = value.trim().to_owned(),
                "asset_id" | "asset_ids" => {
                    let v = value.trim().to_owned();
                    if !v.is_empty() && !form.asset_ids.contains(&v) {
                        form.asset_ids.push(v);
                    }
                }
                "assign_me" => form.assign_me = !value.is_empty(),
                "holds_assets" => form.holds_assets = !value.is_empty(),
                _ => {}
            }
        }
        (form, csrf)
    }

    /// The body of `work_orders::open`, or the messages of the ids that are not ids.
    fn body(&self, me: &Principal) -> Result<OpenBody, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let company_id = match self.company_id.as_str() {
            "" => {
                errors.push(ValidationError::new("company_id", "is required"));
                None
            }
            text => Uuid::parse_str(text)
                .map_err(|_| {
                    errors.push(ValidationError::new(
                        "company_id",
                        "is not one of your companies",
                    ))
                })
                .ok(),
        };
        let contact_id = match self.contact_id.as_str() {
            "" => None,
            text => Uuid::parse_str(text)
                .map_err(|_| {
                    errors.push(ValidationError::new(
                        "contact_id",
                        "must be one of the company's contacts",
                    ))
                })
                .ok(),
        };
        let mut asset_ids = Vec::new();
        for text in &self.asset_ids {
            match Uuid::parse_str(text) {
                Ok(id) => asset_ids.push(id),
                Err(_) => errors.push(ValidationError::new(
                    "asset_ids",
                    "must be the company's assets",
                )),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(OpenBody {
            company_id,
            title: Some(self.title.clone()),
            description: Some(self.description.clone()),
            priority: Some(self.priority.clone()).filter(|p| !p.is_empty()),
            work_type: Some(self.work_type.clone()).filter(|t| !t.is_empty()),
            asset_ids: Some(asset_ids),
            contact_id,
            holds_assets: Some(self.holds_assets),
            opened_at: None,
            assignee_id: self.assign_me.then_some(me.user_id),
        })
    }
}

struct AssetChoice {
    id: Uuid,
    label: String,
    checked: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "work_order_new.html")]
struct NewPage {
    flash: Option<String>,
    csrf: String,
    form: NewForm,
    errors: Errors,
    other_errors: Vec<String>,
    companies: Vec<Choice>,
    /// The chosen company: then the rest of the form shows.
    company: Option<CompanyRow>,
    contacts: Vec<Choice>,
    assets: Vec<AssetChoice>,
    priorities: Vec<Choice>,
    types: Vec<Choice>,
}

/// The fields the new order form shows (other messages go on top).
const NEW_FIELDS: [&str; 9] = [
    "company_id",
    "title",
    "description",
    "priority",
    "type",
    "contact_id",
    "asset_ids",
    "assignee_id",
    "opened_at",
];

async fn render_new(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    form: NewForm,
    errors: Vec<ValidationError>,
    status: StatusCode,
) -> Response {
    let company_id = Uuid::parse_str(&form.company_id).ok();
    let loaded = async {
        let tenant = ops::tenant(state, me.tenant_id).await?;
        let companies = company_names(state, me.tenant_id, false).await?;
        let company = match company_id {
            Some(id) => companies::get(&state.pool, me.tenant_id, id)
                .await?
                .filter(|c| !c.archived),
            None => None,
        };
        let (people, equipment) = match &company {
            Some(c) => (
                contacts::of_company(&state.pool, me.tenant_id, c.id).await?,
                assets::list(
                    &state.pool,
                    me.tenant_id,
                    &AssetQuery {
                        company_id: Some(c.id),
                        limit: 500,
                        ..AssetQuery::default()
                    },
                )
                .await?,
            ),
            None => (Vec::new(), Vec::new()),
        };
        Ok::<_, ApiError>((tenant, companies, company, people, equipment))
    };
    let (tenant, companies, company, people, equipment) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let mut errors = errors;
    if company.is_none() && !form.company_id.is_empty() && errors.is_empty() {
        errors.push(ValidationError::new(
            "company_id",
            "is not one of your active companies",
        ));
    }
    let mut contact_choices = vec![(String::new(), "Nobody in particular".to_owned())];
    contact_choices.extend(
        people
            .iter()
            .filter(|c| !c.former)
            .map(|c| (c.id.to_string(), c.name.clone())),
    );
    let mut company_choices = vec![(String::new(), "Choose a company…".to_owned())];
    company_choices.extend(
        companies
            .into_iter()
            .map(|(id, name)| (id.to_string(), name)),
    );
    let work_types = tenant.work_type_names();
    let current_type = if form.work_type.is_empty() {
        work_types.first().cloned().unwrap_or_default()
    } else {
        form.work_type.clone()
    };
    let current_priority = if form.priority.is_empty() {
        "normal".to_owned()
    } else {
        form.priority.clone()
    };
    let errors = Errors(errors);
    let page = NewPage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        other_errors: errors.others(&NEW_FIELDS),
        errors,
        companies: choices(company_choices, &form.company_id),
        contacts: choices(contact_choices, &form.contact_id),
        assets: equipment
            .iter()
            .map(|a| AssetChoice {
                id: a.id,
                label: format!("{} {}", a.tag, a.name),
                checked: form.asset_ids.contains(&a.id.to_string()),
            })
            .collect(),
        priorities: priority_choices(&current_priority),
        types: choices(
            work_types
                .iter()
                .map(|t| (t.clone(), capitalise(t)))
                .collect(),
            &current_type,
        ),
        company,
        form,
    };
    (status, page).into_response()
}

async fn new_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::EditWorkOrders) {
        return refused.into_response();
    }
    let Some(pairs) = query_pairs(query) else {
        return unreadable_query();
    };
    let (form, _) = NewForm::from_pairs(&pairs);
    render_new(&state, &me, &cookies, form, Vec::new(), StatusCode::OK).await
}

async fn create(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let (form, csrf) = NewForm::from_pairs(&pairs);
    if let Some(refused) = csrf_refusal(&cookies, &headers, &csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::EditWorkOrders) {
        return refused.into_response();
    }
    let body = match form.body(&me) {
        Ok(body) => body,
        Err(errors) => {
            return render_new(
                &state,
                &me,
                &cookies,
                form,
                errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    };
    match ops::open(&state, &me, &me.meta(), &body).await {
        Ok(done) => {
            state
                .read_your_writes(ops::VIEWS, "work_order", &done.aggregate_id, done.version)
                .await;
            redirect_with_flash(
                &format!("/work-orders/{}", done.aggregate_id),
                &format!("Work order #{} raised.", done.state.number),
            )
        }
        Err(ApiError::Invalid(errors)) => {
            render_new(
                &state,
                &me,
                &cookies,
                form,
                errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(error) => api_error_page(&cookies, error),
    }
}

// ---------------------------------------------------------------------------------------------
// The order's page
// ---------------------------------------------------------------------------------------------

/// The SLA panel.
struct SlaView {
    state: String,
    response_due: String,
    resolution_due: String,
    responded: String,
    paused_since: String,
    targets: String,
}

struct MoveButton {
    value: &'static str,
    label: String,
}

struct EntryView {
    date: String,
    technician: String,
    time: String,
    billing: String,
    after_hours: bool,
    rate: String,
    amount: String,
    note: String,
    order_id: Uuid,
    order: String,
    id: Uuid,
    /// The asker may remove it (theirs, or an owner or admin; the order not final).
    removable: bool,
}

struct Totals {
    time: String,
    billable: String,
    contract: String,
    amount: String,
}

/// A material line of an order (its page) or of a company's unbilled work.
struct MaterialView {
    id: Uuid,
    used_on: String,
    description: String,
    sku: String,
    quantity: String,
    unit_price: String,
    billing: String,
    /// The billed amount; a dash for contract lines (the contract covers them).
    amount: String,
    added_by: String,
    order_id: Uuid,
    order: String,
    /// The issued invoice that bills it, and how the line names it ("invoice 12").
    invoice_id: Option<Uuid>,
    invoice: String,
    /// The asker may remove it (theirs, or an owner or admin; the order not final; not
    /// invoiced).
    removable: bool,
}

struct LinkView {
    id: Uuid,
    kind: String,
    holder: String,
    uses: String,
    expires: String,
    state: &'static str,
}

/// A link just issued: its address is shown this once.
struct IssuedView {
    kind: String,
    url: String,
    expires: String,
    max_uses: u32,
}

struct TimelineItem {
    at: String,
    when: String,
    who: String,
    what: String,
    /// A comment's text.
    comment: Option<String>,
    internal: bool,
}

/// The values of the order page's forms: the order's own, or those of a refused form.
#[derive(Debug, Default, Clone, Deserialize)]
struct OrderForms {
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    work_type: String,
    #[serde(default)]
    priority: String,
    #[serde(default)]
    minutes: String,
    #[serde(default)]
    work_date: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    billing: String,
    #[serde(default)]
    after_hours: bool,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    public: bool,
    /// The add material form (its description and billing apart from the order's and the
    /// time form's).
    #[serde(default)]
    material_description: String,
    #[serde(default)]
    sku: String,
    #[serde(default)]
    quantity: String,
    #[serde(default)]
    unit_price: String,
    #[serde(default)]
    material_billing: String,
    #[serde(default)]
    used_on: String,
}

/// Which form of the order page was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Status,
    Assign,
    Timer,
    Time,
    Materials,
    Comment,
    Links,
    Edit,
}

/// What a POST leaves for the page shown again.
struct Outcome {
    section: Section,
    problem: Option<String>,
    errors: Vec<ValidationError>,
    /// Input of a refused form, to show again.
    input: Option<OrderForms>,
    issued: Option<IssuedView>,
}

impl Outcome {
    fn fresh() -> Self {
        Self {
            section: Section::None,
            problem: None,
            errors: Vec::new(),
            input: None,
            issued: None,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "work_order.html")]
struct OrderPage {
    flash: Option<String>,
    csrf: String,
    order: WorkOrderRow,
    line: OrderLine,
    contact: Option<ContactRow>,
    assets: Vec<AssetRow>,
    opened: String,
    resolved: String,
    sla: SlaView,
    moves: Vec<MoveButton>,
    staff: Vec<Choice>,
    may_edit: bool,
    may_log: bool,
    final_status: bool,
    my_timer: Option<String>,
    other_timers: Vec<(String, String)>,
    entries: Vec<EntryView>,
    totals: Totals,
    materials: Vec<MaterialView>,
    /// The billable materials' amount.
    materials_total: String,
    links: Vec<LinkView>,
    issued: Option<IssuedView>,
    timeline: Vec<TimelineItem>,
    problem: Option<String>,
    section: Section,
    errors: Errors,
    other_errors: Vec<String>,
    form: OrderForms,
    types: Vec<Choice>,
    priorities: Vec<Choice>,
    billings: Vec<Choice>,
    material_billings: Vec<Choice>,
    /// The organisation's currency code (the unit price's label).
    currency: String,
    today: String,
    time_zone: String,
}

impl OrderPage {
    fn in_section(&self, name: &str) -> bool {
        let section = match name {
            "status" => Section::Status,
            "assign" => Section::Assign,
            "timer" => Section::Timer,
            "time" => Section::Time,
            "materials" => Section::Materials,
            "comment" => Section::Comment,
            "links" => Section::Links,
            "edit" => Section::Edit,
            _ => Section::None,
        };
        section != Section::None && self.section == section
    }
}

/// The fields the order page's forms show.
const ORDER_FIELDS: [&str; 16] = [
    "title",
    "description",
    "type",
    "priority",
    "minutes",
    "work_date",
    "note",
    "billing",
    "body",
    "assignee_id",
    "material_description",
    "material_sku",
    "material_quantity",
    "material_unit_price",
    "material_billing",
    "material_used_on",
];

/// The material form's fields under names of their own: the page's edit form has a
/// description and the time form a billing, and each message goes next to its own field.
fn material_field(field: &'static str) -> &'static str {
    match field {
        "description" => "material_description",
        "sku" => "material_sku",
        "quantity" => "material_quantity",
        "unit_price" => "material_unit_price",
        "billing" => "material_billing",
        "used_on" => "material_used_on",
        other => other,
    }
}

fn material_billing_choices(current: &str) -> Vec<Choice> {
    choices(
        vec![
            ("billable".to_owned(), "Billable".to_owned()),
            ("contract".to_owned(), "Contract (covered)".to_owned()),
        ],
        current,
    )
}

/// A material line as shown; `invoice` names the invoice that bills it (empty: not billed).
fn material_view(m: &MaterialRow, local: &Local, invoice: String) -> MaterialView {
    MaterialView {
        id: m.id,
        used_on: m.used_on.to_string(),
        description: m.description.clone(),
        sku: m.sku.clone(),
        quantity: m.quantity.to_string(),
        unit_price: local.money(m.unit_price),
        billing: m.billing.clone(),
        amount: if m.billing == "billable" {
            local.money(m.amount)
        } else {
            "–".into()
        },
        added_by: if m.added_by_name.is_empty() {
            "–".into()
        } else {
            m.added_by_name.clone()
        },
        order_id: m.work_order_id,
        order: format!("#{} {}", m.work_order_number, m.work_order_title),
        invoice_id: m.invoice_id,
        invoice,
        removable: false,
    }
}

/// What the billable lines among `materials` come to.
fn billable_materials(materials: &[MaterialRow]) -> Decimal {
    materials
        .iter()
        .filter(|m| m.billing == "billable")
        .map(|m| m.amount)
        .sum()
}

fn billing_choices(current: &str) -> Vec<Choice> {
    choices(
        vec![
            (String::new(), "As the contract says".to_owned()),
            ("billable".to_owned(), "Billable".to_owned()),
            ("contract".to_owned(), "Contract".to_owned()),
        ],
        current,
    )
}

fn entry_view(e: &TimeEntryRow, local: &Local, order: String) -> EntryView {
    EntryView {
        date: e.work_date.to_string(),
        technician: e.technician_name.clone(),
        time: duration(i64::from(e.minutes)),
        billing: e.billing.clone(),
        after_hours: e.after_hours,
        rate: local.money(e.rate),
        amount: if e.billing == "billable" {
            local.money(e.amount)
        } else {
            "–".into()
        },
        note: e.note.clone(),
        order_id: e.work_order_id,
        order,
        id: e.id,
        removable: false,
    }
}

fn totals_of(entries: &[TimeEntryRow], local: &Local) -> Totals {
    let sum = |billing: Option<&str>| -> i64 {
        entries
            .iter()
            .filter(|e| billing.is_none_or(|b| e.billing == b))
            .map(|e| i64::from(e.minutes))
            .sum()
    };
    let amount: Decimal = entries
        .iter()
        .filter(|e| e.billing == "billable")
        .map(|e| e.amount)
        .sum();
    Totals {
        time: duration(sum(None)),
        billable: duration(sum(Some("billable"))),
        contract: duration(sum(Some("contract"))),
        amount: local.money(amount),
    }
}

/// The order's events from the log, oldest first, with names on people and comments' text.
async fn timeline(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
    local: &Local,
) -> Result<Vec<TimelineItem>, sqlx::Error> {
    let names = projections::users::actor_names(&state.pool, tenant_id).await?;
    let items =
        history::for_aggregate(&state.pool, tenant_id, "work_order", &id.to_string(), 5000).await?;
    Ok(items
        .into_iter()
        .map(|item| {
            let event = serde_json::from_value::<WorkOrderEvent>(item.payload.clone()).ok();
            let mut what = match &event {
                Some(event) => history::work_order_event_summary(event, Some(&local.zone)),
                None => history::summary("work_order", &item.event_type, &item.payload),
            };
            for (person, name) in &names {
                if what.contains(person.as_str()) {
                    what = what.replace(person.as_str(), name);
                }
            }
            let (comment, internal) = match event {
                Some(WorkOrderEvent::WorkOrderCommented { comment }) => {
                    let internal = !comment.public && comment.origin == Origin::Staff;
                    (Some(comment.body), internal)
                }
                _ => (None, false),
            };
            TimelineItem {
                at: item.recorded_at.to_rfc3339(),
                when: local.time(&item.recorded_at),
                who: projections::users::actor_label(&names, &item.actor),
                what,
                comment,
                internal,
            }
        })
        .collect())
}

async fn render_order(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    id: Uuid,
    outcome: Outcome,
    status: StatusCode,
) -> Response {
    let loaded = async {
        let Some(order) = read::get(&state.pool, me.tenant_id, id).await? else {
            return Ok(None);
        };
        let (tenant, local) = local_of(state, me.tenant_id).await?;
        let contact = match order.contact_id {
            Some(c) => contacts::get(&state.pool, me.tenant_id, c).await?,
            None => None,
        };
        let mut equipment = Vec::new();
        for asset_id in &order.asset_ids {
            if let Some(a) = assets::get(&state.pool, me.tenant_id, *asset_id).await? {
                equipment.push(a);
            }
        }
        let staff = workers(state, me.tenant_id).await?;
        let entries = read::time_entries(&state.pool, me.tenant_id, id).await?;
        let materials = read::materials(&state.pool, me.tenant_id, id).await?;
        let materials_shown: Vec<MaterialView> = materials
            .iter()
            .map(|m| {
                let invoice = match (m.invoice_id, m.invoice_number) {
                    (Some(_), Some(n)) => format!("invoice {n}"),
                    (Some(_), None) => "invoiced".to_owned(),
                    (None, _) => String::new(),
                };
                material_view(m, &local, invoice)
            })
            .collect();
        let timers = read::timers(&state.pool, me.tenant_id, id).await?;
        let links = read::links(&state.pool, me.tenant_id, id).await?;
        let timeline = timeline(state, me.tenant_id, id, &local).await?;
        let materials_total = local.money(billable_materials(&materials));
        Ok::<_, ApiError>(Some((
            order,
            tenant,
            local,
            contact,
            equipment,
            staff,
            entries,
            (materials, materials_shown, materials_total),
            timers,
            links,
            timeline,
        )))
    };
    let (
        order,
        tenant,
        local,
        contact,
        equipment,
        staff,
        entries,
        (materials, materials_shown, materials_total),
        timers,
        links,
        timeline,
    ) = match loaded.await {
        Ok(Some(loaded)) => loaded,
        Ok(None) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let current = Status::parse("status", &order.status).unwrap_or_default();
    let now = Utc::now();
    let mut staff_choices = vec![(String::new(), "Nobody".to_owned())];
    staff_choices.extend(
        staff
            .iter()
            .map(|(id, name)| (id.to_string(), name.clone())),
    );
    let assignee = order.assignee_id.map(|a| a.to_string()).unwrap_or_default();
    let name_of = |user: Option<Uuid>| {
        user.and_then(|u| staff.iter().find(|(id, _)| *id == u))
            .map(|(_, name)| name.clone())
            .unwrap_or_default()
    };
    let mut work_types = tenant.work_type_names();
    if !work_types.contains(&order.work_type) {
        work_types.push(order.work_type.clone());
    }
    let form = outcome.input.unwrap_or_else(|| OrderForms {
        title: order.title.clone(),
        description: order.description.clone(),
        work_type: order.work_type.clone(),
        priority: order.priority.clone(),
        ..OrderForms::default()
    });
    // The edit form keeps the order's values unless it is the one being corrected.
    let (title, description, work_type, priority) = if outcome.section == Section::Edit {
        (
            form.title.clone(),
            form.description.clone(),
            form.work_type.clone(),
            form.priority.clone(),
        )
    } else {
        (
            order.title.clone(),
            order.description.clone(),
            order.work_type.clone(),
            order.priority.clone(),
        )
    };
    let today = ops::local_date(&tenant, now).to_string();
    let form = OrderForms {
        title,
        description,
        work_type: work_type.clone(),
        priority: priority.clone(),
        work_date: if form.work_date.is_empty() {
            today.clone()
        } else {
            form.work_date.clone()
        },
        // An empty quantity or date means one unit, today: shown as such.
        quantity: if form.quantity.trim().is_empty() {
            "1".to_owned()
        } else {
            form.quantity.clone()
        },
        used_on: if form.used_on.trim().is_empty() {
            today.clone()
        } else {
            form.used_on.clone()
        },
        ..form
    };
    let sla = SlaView {
        state: order.sla_state.clone(),
        response_due: order
            .response_due_at
            .map(|t| local.time(&t))
            .unwrap_or_default(),
        resolution_due: order
            .resolution_due_at
            .map(|t| local.time(&t))
            .unwrap_or_default(),
        responded: order
            .responded_at
            .map(|t| local.time(&t))
            .unwrap_or_default(),
        paused_since: order
            .sla_paused_since
            .map(|t| local.time(&t))
            .unwrap_or_default(),
        targets: match (order.response_minutes, order.resolution_minutes) {
            (Some(r), Some(s)) => format!(
                "respond within {}, resolve within {} (business time)",
                duration(i64::from(r)),
                duration(i64::from(s))
            ),
            _ => String::new(),
        },
    };
    let errors = Errors(outcome.errors);
    let mut other_errors = errors.others(&ORDER_FIELDS);
    if outcome.section == Section::Timer {
        // The timer's note and billing have no messages of their own on the page.
        other_errors = errors.0.iter().map(sentence).collect();
    }
    let page = OrderPage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        line: OrderLine::new(&order, &local),
        contact,
        assets: equipment,
        opened: local.time(&order.opened_at),
        resolved: order
            .resolved_at
            .map(|t| local.time(&t))
            .unwrap_or_default(),
        sla,
        moves: current
            .moves()
            .iter()
            .map(|s| MoveButton {
                value: s.as_str(),
                label: capitalise(s.label()),
            })
            .collect(),
        staff: choices(staff_choices, &assignee),
        may_edit: me.may(Action::EditWorkOrders),
        may_log: me.may(Action::LogTime),
        final_status: current.is_final(),
        my_timer: timers
            .iter()
            .find(|t| t.technician_id == me.user_id)
            .map(|t| local.clock(&t.started_at)),
        other_timers: timers
            .iter()
            .filter(|t| t.technician_id != me.user_id)
            .map(|t| (t.technician_name.clone(), local.time(&t.started_at)))
            .collect(),
        totals: totals_of(&entries, &local),
        entries: entries
            .iter()
            .map(|e| EntryView {
                removable: me.may(Action::LogTime)
                    && !current.is_final()
                    && (e.technician_id == me.user_id
                        || matches!(me.role, Role::Owner | Role::Admin)),
                ..entry_view(e, &local, String::new())
            })
            .collect(),
        materials: materials
            .iter()
            .zip(materials_shown)
            .map(|(m, view)| MaterialView {
                removable: me.may(Action::LogTime)
                    && !current.is_final()
                    && m.invoice_id.is_none()
                    && (m.added_by == me.user_id || matches!(me.role, Role::Owner | Role::Admin)),
                ..view
            })
            .collect(),
        materials_total,
        links: links
            .iter()
            .map(|l| LinkView {
                id: l.id,
                kind: capitalise(&l.kind),
                holder: name_of(l.user_id),
                uses: format!("{} of {}", l.uses, l.max_uses),
                expires: local.time(&l.expires_at),
                state: if l.revoked {
                    "revoked"
                } else if l.expires_at <= now {
                    "expired"
                } else if l.uses >= l.max_uses {
                    "used up"
                } else {
                    "active"
                },
            })
            .collect(),
        issued: outcome.issued,
        timeline,
        problem: outcome.problem,
        section: outcome.section,
        other_errors,
        errors,
        types: choices(
            work_types
                .iter()
                .map(|t| (t.clone(), capitalise(t)))
                .collect(),
            &work_type,
        ),
        priorities: priority_choices(&priority),
        billings: billing_choices(&form.billing),
        material_billings: material_billing_choices(if form.material_billing.is_empty() {
            "billable"
        } else {
            &form.material_billing
        }),
        form,
        currency: local.currency.clone(),
        today,
        time_zone: local.zone_name(),
        order,
    };
    (status, page).into_response()
}

async fn order_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewWorkOrders) {
        return refused.into_response();
    }
    let Some(id) = path_uuid(path) else {
        return not_found_page();
    };
    render_order(&state, &me, &cookies, id, Outcome::fresh(), StatusCode::OK).await
}

/// The first steps of every POST of the order page: the CSRF token, the role, the order's id.
fn admit(
    me: &Principal,
    cookies: &Cookies,
    headers: &HeaderMap,
    csrf: &str,
    action: Action,
    path: Result<Path<String>, PathRejection>,
) -> Result<Uuid, Box<Response>> {
    if let Some(refused) = csrf_refusal(cookies, headers, csrf) {
        return Err(Box::new(refused));
    }
    me.require(action)
        .map_err(|refused| Box::new(refused.into_response()))?;
    path_uuid(path).ok_or_else(|| Box::new(not_found_page()))
}

/// The answer to a POST of the order page: back to the page with `done` as a flash message,
/// or the page again with the refusal.
#[allow(clippy::too_many_arguments)]
async fn finish(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    id: Uuid,
    result: Result<Option<Executed<WorkOrder>>, ApiError>,
    done: &str,
    section: Section,
    input: Option<OrderForms>,
) -> Response {
    match result {
        Ok(Some(executed)) => {
            state
                .read_your_writes(
                    ops::VIEWS,
                    "work_order",
                    &executed.aggregate_id,
                    executed.version,
                )
                .await;
            let message = if executed.events.is_empty() && !executed.replayed {
                "Nothing changed."
            } else {
                done
            };
            redirect_with_flash(&format!("/work-orders/{id}"), message)
        }
        Ok(None) => redirect_with_flash(&format!("/work-orders/{id}"), "Nothing changed."),
        Err(error) => refusal(state, me, cookies, id, error, section, input).await,
    }
}

/// The order's page again with what was refused.
async fn refusal(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    id: Uuid,
    error: ApiError,
    section: Section,
    input: Option<OrderForms>,
) -> Response {
    let mut outcome = Outcome {
        section,
        input,
        ..Outcome::fresh()
    };
    let status = match error {
        ApiError::NotFound(_) => return not_found_page(),
        ApiError::Invalid(errors) => {
            outcome.errors = errors;
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ApiError::Conflict(message) | ApiError::BadRequest(message) => {
            outcome.problem = Some(format!("{}.", capitalise(message.trim_end_matches('.'))));
            StatusCode::CONFLICT
        }
        ApiError::Rejected { status, detail } => {
            outcome.problem = Some(format!("{}.", capitalise(detail.trim_end_matches('.'))));
            status
        }
        other => return internal_page(other),
    };
    render_order(state, me, cookies, id, outcome, status).await
}

#[derive(Debug, Default, Deserialize)]
struct StatusForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    status: String,
}

async fn move_status(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<StatusForm>,
) -> Response {
    let id = match admit(
        &me,
        &cookies,
        &headers,
        &form.csrf,
        Action::EditWorkOrders,
        path,
    ) {
        Ok(id) => id,
        Err(page) => return *page,
    };
    let body = ChangeBody {
        status: Some(form.status.clone()),
        ..ChangeBody::default()
    };
    let result = ops::change(&state, &me, &me.meta(), id, &body).await;
    let done = match Status::parse("status", &form.status) {
        Ok(s) => format!("Status: {}.", s.label()),
        Err(_) => "Saved.".to_owned(),
    };
    finish(
        &state,
        &me,
        &cookies,
        id,
        result,
        &done,
        Section::Status,
        None,
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
struct AssignForm {
    #[serde(default)]
    csrf: String,
    /// A person's id, `me`, or empty for nobody.
    #[serde(default)]
    assignee_id: String,
}

async fn assign(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<AssignForm>,
) -> Response {
    let id = match admit(
        &me,
        &cookies,
        &headers,
        &form.csrf,
        Action::EditWorkOrders,
        path,
    ) {
        Ok(id) => id,
        Err(page) => return *page,
    };
    let assignee = match form.assignee_id.trim() {
        "" => None,
        "me" => Some(me.user_id),
        text => match Uuid::parse_str(text) {
            Ok(user) => Some(user),
            Err(_) => {
                let error = ApiError::Invalid(vec![ValidationError::new(
                    "assignee_id",
                    "must be a member of your organisation who works on orders",
                )]);
                return refusal(&state, &me, &cookies, id, error, Section::Assign, None).await;
            }
        },
    };
    let body = ChangeBody {
        assignee_id: Some(assignee),
        ..ChangeBody::default()
    };
    let result = ops::change(&state, &me, &me.meta(), id, &body).await;
    let done = match assignee {
        Some(user) if user == me.user_id => "Assigned to you.".to_owned(),
        Some(_) => "Assigned.".to_owned(),
        None => "Unassigned.".to_owned(),
    };
    finish(
        &state,
        &me,
        &cookies,
        id,
        result,
        &done,
        Section::Assign,
        None,
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn timer_start(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let id = match admit(&me, &cookies, &headers, &form.csrf, Action::LogTime, path) {
        Ok(id) => id,
        Err(page) => return *page,
    };
    let result = ops::start_timer(&state, &me, &me.meta(), id)
        .await
        .map(Some);
    finish(
        &state,
        &me,
        &cookies,
        id,
        result,
        "Timer started.",
        Section::Timer,
        None,
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
struct StopForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
    /// Empty: as the contract says.
    #[serde(default)]
    billing: String,
}

async fn timer_stop(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<StopForm>,
) -> Response {
    let id = match admit(&me, &cookies, &headers, &form.csrf, Action::LogTime, path) {
        Ok(id) => id,
        Err(page) => return *page,
    };
    let result = async {
        let billing = match form.billing.trim() {
            "" => None,
            text => Some(Billing::parse("billing", text).map_err(|e| ApiError::Invalid(vec![e]))?),
        };
        ops::stop_timer(&state, &me, &me.meta(), id, &form.note, billing).await
    }
    .await;
    let done = match &result {
        Ok(done) => {
            let minutes: u32 = done
                .events
                .iter()
                .filter_map(|e| match e {
                    WorkOrderEvent::TimeLogged { entry } => Some(entry.minutes),
                    _ => None,
                })
                .sum();
            format!("Timer stopped: {} logged.", duration(i64::from(minutes)))
        }
        Err(_) => String::new(),
    };
    finish(
        &state,
        &me,
        &cookies,
        id,
        result.map(Some),
        &done,
        Section::Timer,
        None,
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
struct TimeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    minutes: String,
    #[serde(default)]
    work_date: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    billing: String,
    #[serde(default)]
    after_hours: Option<String>,
}

async fn add_time(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<TimeForm>,
) -> Response {
    let id = match admit(&me, &cookies, &headers, &form.csrf, Action::LogTime, path) {
        Ok(id) => id,
        Err(page) => return *page,
    };
    // A number that is not one reads as 0, which the shared check refuses with the range.
    let minutes = match form.minutes.trim() {
        "" => None,
        text => Some(text.parse::<i64>().unwrap_or(0)),
    };
    let body = TimeBody {
        minutes,
        work_date: Some(form.work_date.clone()),
        note: Some(form.note.clone()),
        billing: Some(form.billing.clone()),
        after_hours: Some(form.after_hours.is_some()),
        technician_id: None,
    };
    let result = ops::log_time(&state, &me, &me.meta(), id, &body).await;
    let input = OrderForms {
        minutes: form.minutes.clone(),
        work_date: form.work_date.clone(),
        note: form.note.clone(),
        billing: form.billing.clone(),
        after_hours: form.after_hours.is_some(),
        ..OrderForms::default()
    };
    let done = format!(
        "{} logged.",
        duration(minutes.unwrap_or_default().clamp(0, 1440))
    );
    finish(
        &state,
        &me,
        &cookies,
        id,
        result.map(Some),
        &done,
        Section::Time,
        Some(input),
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
struct CommentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    public: Option<String>,
}

async fn add_comment(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<CommentForm>,
) -> Response {
    let id = match admit(
        &me,
        &cookies,
        &headers,
        &form.csrf,
        Action::EditWorkOrders,
        path,
    ) {
        Ok(id) => id,
        Err(page) => return *page,
    };
    let public = form.public.is_some();
    let result = ops::comment(&state, &me, &me.meta(), id, &form.body, public).await;
    let input = OrderForms {
        comment: form.body.clone(),
        public,
        ..OrderForms::default()
    };
    let done = if public {
        "Public comment added: the customer sees it."
    } else {
        "Internal comment added."
    };
    finish(
        &state,
        &me,
        &cookies,
        id,
        result.map(Some),
        done,
        Section::Comment,
        Some(input),
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
struct LinkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
}

async fn issue_link(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<LinkForm>,
) -> Response {
    let id = match admit(
        &me,
        &cookies,
        &headers,
        &form.csrf,
        Action::EditWorkOrders,
        path,
    ) {
        Ok(id) => id,
        Err(page) => return *page,
    };
    let issued = async {
        let kind = ops::parse_link_kind(&form.kind)?;
        ops::issue_link(&state, &me, &me.meta(), id, kind).await
    }
    .await;
    match issued {
        Ok(link) => {
            // The list of links shows the new one: wait for the read model to have it.
            if let Ok((_, version)) = state
                .store
                .load::<WorkOrder>(me.tenant_id, &id.to_string())
                .await
            {
                state
                    .read_your_writes(ops::VIEWS, "work_order", &id.to_string(), version)
                    .await;
            }
            let local = match local_of(&state, me.tenant_id).await {
                Ok((_, local)) => local,
                Err(error) => return internal_page(error),
            };
            let outcome = Outcome {
                issued: Some(IssuedView {
                    kind: link.kind.clone(),
                    url: link.url,
                    expires: local.time(&link.expires_at),
                    max_uses: link.max_uses,
                }),
                ..Outcome::fresh()
            };
            render_order(&state, &me, &cookies, id, outcome, StatusCode::OK).await
        }
        Err(error) => refusal(&state, &me, &cookies, id, error, Section::Links, None).await,
    }
}

async fn revoke_link(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::EditWorkOrders) {
        return refused.into_response();
    }
    let ids = crate::console::two_ids(path);
    let Some((id, link_id)) = ids else {
        return not_found_page();
    };
    let result = async {
        ops::load(&state, &me, id).await?;
        ops::run(
            &state,
            &me.meta(),
            id,
            WorkOrderCommand::RevokeLink { link_id },
        )
        .await
    }
    .await;
    finish(
        &state,
        &me,
        &cookies,
        id,
        result.map(Some),
        "Link revoked: it no longer works.",
        Section::Links,
        None,
    )
    .await
}

async fn remove_entry(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    Form(form): Form<CsrfForm>,
) -> Response {
    remove_line(&state, &me, &cookies, &headers, path, &form, WorkKind::Time).await
}

/// The Remove button of a time entry or a material line.
async fn remove_line(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    headers: &HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    form: &CsrfForm,
    line: WorkKind,
) -> Response {
    if let Some(refused) = csrf_refusal(cookies, headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::LogTime) {
        return refused.into_response();
    }
    let Some((id, line_id)) = crate::console::two_ids(path) else {
        return not_found_page();
    };
    let result = line.remove(state, me, &me.meta(), id, line_id).await;
    let (message, section) = match line {
        WorkKind::Time => ("Time entry removed.", Section::Time),
        WorkKind::Material => ("Material removed.", Section::Materials),
    };
    finish(
        state,
        me,
        cookies,
        id,
        result.map(Some),
        message,
        section,
        None,
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
struct MaterialForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    sku: String,
    #[serde(default)]
    quantity: String,
    #[serde(default)]
    unit_price: String,
    #[serde(default)]
    billing: String,
    #[serde(default)]
    used_on: String,
}

async fn add_material(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<MaterialForm>,
) -> Response {
    let id = match admit(&me, &cookies, &headers, &form.csrf, Action::LogTime, path) {
        Ok(id) => id,
        Err(page) => return *page,
    };
    let body = MaterialBody {
        description: Some(form.description.clone()),
        sku: Some(form.sku.clone()),
        quantity: Some(form.quantity.clone()),
        unit_price: Some(form.unit_price.clone()),
        billing: Some(form.billing.clone()),
        used_on: Some(form.used_on.clone()),
    };
    let result = match ops::add_material(&state, &me, &me.meta(), id, &body).await {
        Ok((done, _)) => Ok(Some(done)),
        Err(ApiError::Invalid(errors)) => Err(ApiError::Invalid(
            errors
                .into_iter()
                .map(|e| ValidationError {
                    field: material_field(e.field),
                    ..e
                })
                .collect(),
        )),
        Err(error) => Err(error),
    };
    let input = OrderForms {
        material_description: form.description.clone(),
        sku: form.sku.clone(),
        quantity: form.quantity.clone(),
        unit_price: form.unit_price.clone(),
        material_billing: form.billing.clone(),
        used_on: form.used_on.clone(),
        ..OrderForms::default()
    };
    // "Material added: 3 × Cat6 patch cable, 13.50 USD." (contract lines have no amount).
    let added = result
        .as_ref()
        .ok()
        .and_then(Option::as_ref)
        .and_then(|done| {
            done.events.iter().find_map(|e| match e {
                WorkOrderEvent::MaterialAdded { material, .. } => Some(material.clone()),
                _ => None,
            })
        });
    let done = match added {
        Some(m) => {
            let amount = match m.billing {
                Billing::Billable => match local_of(&state, me.tenant_id).await {
                    Ok((_, local)) => format!(", {}", local.money(m.amount)),
                    Err(_) => String::new(),
                },
                Billing::Contract => ", covered by the contract".to_owned(),
            };
            format!(
                "Material added: {} × {}{amount}.",
                m.quantity.normalize(),
                m.description
            )
        }
        None => "Material added.".to_owned(),
    };
    finish(
        &state,
        &me,
        &cookies,
        id,
        result,
        &done,
        Section::Materials,
        Some(input),
    )
    .await
}

async fn remove_material(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    Form(form): Form<CsrfForm>,
) -> Response {
    remove_line(
        &state,
        &me,
        &cookies,
        &headers,
        path,
        &form,
        WorkKind::Material,
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
struct EditForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default, rename = "type")]
    work_type: String,
    #[serde(default)]
    priority: String,
}

async fn edit(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<EditForm>,
) -> Response {
    let id = match admit(
        &me,
        &cookies,
        &headers,
        &form.csrf,
        Action::EditWorkOrders,
        path,
    ) {
        Ok(id) => id,
        Err(page) => return *page,
    };
    let body = ChangeBody {
        title: Some(form.title.clone()),
        description: Some(form.description.clone()),
        work_type: Some(form.work_type.clone()),
        priority: Some(form.priority.clone()),
        ..ChangeBody::default()
    };
    let result = ops::change(&state, &me, &me.meta(), id, &body).await;
    let input = OrderForms {
        title: form.title.clone(),
        description: form.description.clone(),
        work_type: form.work_type.clone(),
        priority: form.priority.clone(),
        ..OrderForms::default()
    };
    finish(
        &state,
        &me,
        &cookies,
        id,
        result,
        "Saved.",
        Section::Edit,
        Some(input),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Unbilled work
// ---------------------------------------------------------------------------------------------

struct UnbilledLine {
    company_id: Uuid,
    company: String,
    entries: i64,
    time: String,
    amount: String,
    materials: i64,
    materials_amount: String,
    total: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "unbilled.html")]
struct UnbilledPage {
    flash: Option<String>,
    rows: Vec<UnbilledLine>,
    total_time: String,
    total_amount: String,
    total_materials: String,
    total: String,
}

async fn unbilled_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewWorkOrders) {
        return refused.into_response();
    }
    let loaded = async {
        let (_, local) = local_of(&state, me.tenant_id).await?;
        let rows = read::unbilled_by_company(&state.pool, me.tenant_id).await?;
        Ok::<_, ApiError>((local, rows))
    };
    let (local, rows) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let total_minutes: i64 = rows.iter().map(|r| r.minutes).sum();
    let total_amount: Decimal = rows.iter().map(|r| r.amount).sum();
    let total_materials: Decimal = rows.iter().map(|r| r.materials_amount).sum();
    let total: Decimal = rows.iter().map(|r| r.total).sum();
    UnbilledPage {
        flash: cookies.flash.clone(),
        rows: rows
            .iter()
            .map(|r| UnbilledLine {
                company_id: r.company_id,
                company: r.company_name.clone(),
                entries: r.entries,
                time: duration(r.minutes),
                amount: local.money(r.amount),
                materials: r.materials,
                materials_amount: local.money(r.materials_amount),
                total: local.money(r.total),
            })
            .collect(),
        total_time: duration(total_minutes),
        total_amount: local.money(total_amount),
        total_materials: local.money(total_materials),
        total: local.money(total),
    }
    .into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "work_order_unbilled.html")]
struct UnbilledCompanyPage {
    flash: Option<String>,
    company: CompanyRow,
    entries: Vec<EntryView>,
    totals: Totals,
    materials: Vec<MaterialView>,
    materials_total: String,
    /// Time and materials.
    total: String,
    /// The asker may raise the invoice that bills this work (`ManageBilling`).
    may_invoice: bool,
}

async fn unbilled_company_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewWorkOrders) {
        return refused.into_response();
    }
    let Some(company_id) = path_uuid(path) else {
        return not_found_page();
    };
    let loaded = async {
        let Some(company) = companies::get(&state.pool, me.tenant_id, company_id).await? else {
            return Ok(None);
        };
        let (_, local) = local_of(&state, me.tenant_id).await?;
        let entries = read::unbilled_entries(&state.pool, me.tenant_id, company_id).await?;
        let materials = read::unbilled_materials(&state.pool, me.tenant_id, company_id).await?;
        Ok::<_, ApiError>(Some((company, local, entries, materials)))
    };
    let (company, local, entries, materials) = match loaded.await {
        Ok(Some(loaded)) => loaded,
        Ok(None) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let time_amount: Decimal = entries
        .iter()
        .filter(|e| e.billing == "billable")
        .map(|e| e.amount)
        .sum();
    let materials_amount = billable_materials(&materials);
    UnbilledCompanyPage {
        flash: cookies.flash.clone(),
        totals: totals_of(&entries, &local),
        materials: materials
            .iter()
            .map(|m| material_view(m, &local, String::new()))
            .collect(),
        materials_total: local.money(materials_amount),
        total: local.money(time_amount + materials_amount),
        may_invoice: me.may(Action::ManageBilling),
        entries: entries
            .iter()
            .map(|e| {
                let order = format!("#{} {}", e.work_order_number, e.work_order_title);
                entry_view(e, &local, order)
            })
            .collect(),
        company,
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_hours_and_minutes() {
        assert_eq!(duration(0), "0 min");
        assert_eq!(duration(45), "45 min");
        assert_eq!(duration(60), "1 h");
        assert_eq!(duration(90), "1 h 30 min");
    }

    #[test]
    fn form_errors_read_as_sentences_by_field() {
        let errors = Errors(vec![
            ValidationError::new("title", "must not be empty"),
            ValidationError::new("type", "must be one of repair, install"),
            ValidationError::new("opened_at", "is odd."),
        ]);
        assert_eq!(
            errors.of("title").as_deref(),
            Some("Title must not be empty.")
        );
        assert_eq!(
            errors.of("type").as_deref(),
            Some("Type must be one of repair, install.")
        );
        assert_eq!(errors.others(&["title", "type"]), vec!["Opened at is odd."]);
        assert!(errors.any());
    }

    #[test]
    fn material_messages_have_fields_of_their_own() {
        // The edit form's description and the time form's billing must not take them.
        let errors = Errors(
            [
                ValidationError::new("description", "must say what was used"),
                ValidationError::new("unit_price", "is required"),
                ValidationError::new("billing", "must be billable or contract"),
            ]
            .into_iter()
            .map(|e| ValidationError {
                field: material_field(e.field),
                ..e
            })
            .collect(),
        );
        assert_eq!(errors.of("description"), None);
        assert_eq!(errors.of("billing"), None);
        assert_eq!(
            errors.of("material_description").as_deref(),
            Some("Description must say what was used.")
        );
        assert_eq!(
            errors.of("material_unit_price").as_deref(),
            Some("Unit price is required.")
        );
        assert!(errors.others(&ORDER_FIELDS).is_empty());
    }

    #[test]
    fn filters_keep_their_values_and_default_to_open() {
        let form = FilterForm::from_pairs(&[
            ("technician".into(), "me".into()),
            ("sla".into(), "breached".into()),
        ]);
        assert_eq!(form.status, "open");
        assert_eq!(form.query(), "status=open&technician=me&sla=breached");
        assert!(form.filtered());
    }
}
