//! Work orders (issue 5): the operations the API and the console share — raise, change,
//! assign, move, comment, log time, timers, status links — and the JSON API under
//! `/api/v1/work-orders`. The console's pages are in `work_order_pages`, the pages of status
//! links in `status_links`.
//!
//! Each operation checks its input against the read models (company, contact, assets,
//! technicians of the asker's tenant; all problems at once), decides the billing of time
//! from the company's coverage (`domain::coverage`), loads the tenant's business hours and
//! SLA policy, and runs one or a few commands with ids derived from the request's command id,
//! so a retried request appends nothing new.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use commands::{ConflictPolicy, EventMeta, Executed};
use domain::asset::{Asset, AssetCommand, AssetStatus};
use domain::authz::Action;
use domain::company::Company;
use domain::coverage::{self, Rates};
use domain::identity::Role;
use domain::tenant::Tenant;
use domain::values::Amount;
use domain::workorder::{
    parse_comment, Billing, Changes, Comment, LinkKind, Origin, Priority, Status, TimeEntry,
    WorkOrder, WorkOrderCommand, WorkOrderDetails,
};
use domain::ValidationError;
use projections::work_orders::{self as read, Filter, WorkOrderRow};
use projections::{assets, companies};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::api::{command_meta, parse_id, path_id, ApiJson, IdempotencyKey};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::openapi::{
    BadRequest, Conflict, Forbidden, InternalError, NotFound, PayloadTooLarge, Unauthorized,
    Unprocessable, UnsupportedMediaType,
};
use crate::AppState;

/// The projections a work order's page or answer reads.
pub const VIEWS: &[&str] = &["work_orders"];

/// The number sequence of work orders (`#1042`).
pub const SEQUENCE: &str = "work-order";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/work-orders",
            get(list_work_orders).post(create_work_order),
        )
        .route(
            "/api/v1/work-orders/{id}",
            get(get_work_order).patch(update_work_order),
        )
        .route("/api/v1/work-orders/{id}/comments", post(add_comment))
        .route(
            "/api/v1/work-orders/{id}/time-entries",
            get(list_time_entries).post(add_time_entry),
        )
        .route(
            "/api/v1/work-orders/{id}/time-entries/{entry_id}",
            delete(remove_time_entry_api),
        )
        .route(
            "/api/v1/work-orders/{id}/timer/start",
            post(start_timer_api),
        )
        .route("/api/v1/work-orders/{id}/timer/stop", post(stop_timer_api))
        .route("/api/v1/work-orders/{id}/links", post(issue_link_api))
        .route(
            "/api/v1/work-orders/{id}/links/{link_id}",
            delete(revoke_link_api),
        )
        .route(
            "/api/v1/work-orders/{id}/materials",
            get(list_materials_api).post(add_material_api),
        )
        .route(
            "/api/v1/work-orders/{id}/materials/{material_id}",
            delete(remove_material_api),
        )
        .route("/api/v1/unbilled-work", get(unbilled_api))
        .layer(axum::extract::DefaultBodyLimit::max(crate::api::BODY_LIMIT))
}

// ---------------------------------------------------------------------------------------------
// Shared operations
// ---------------------------------------------------------------------------------------------

/// What the service desk settings of a tenant are, for one decision.
pub async fn tenant(state: &AppState, tenant_id: Uuid) -> Result<Tenant, ApiError> {
    Ok(state
        .store
        .load::<Tenant>(tenant_id, &tenant_id.to_string())
        .await?
        .0)
}

/// The order `id` of the asker's tenant, or 404.
pub async fn load(state: &AppState, me: &Principal, id: Uuid) -> Result<WorkOrder, ApiError> {
    let (order, _) = state
        .store
        .load::<WorkOrder>(me.tenant_id, &id.to_string())
        .await?;
    if order.exists {
        Ok(order)
    } else {
        Err(ApiError::NotFound(format!("work order {id} not found")))
    }
}

/// The fields of a new work order, as the API and the console's form give them.
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    pub company_id: Option<Uuid>,
    #[schema(example = "Printer on 2nd floor jams")]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// `low`, `normal` (default), `high` or `urgent`.
    pub priority: Option<String>,
    /// One of the tenant's work types (`repair`, `install`, ...).
    #[serde(rename = "type")]
    #[schema(example = "repair")]
    pub work_type: Option<String>,
    #[serde(default)]
    pub asset_ids: Option<Vec<Uuid>>,
    pub contact_id: Option<Uuid>,
    /// Put the assets in repair while the order is open (default false).
    pub holds_assets: Option<bool>,
    /// Owners and admins importing history: when the order was really opened (RFC 3339, not
    /// in the future). SLA due times count from it.
    pub opened_at: Option<DateTime<Utc>>,
    /// Assign at once (a staff member of the tenant).
    pub assignee_id: Option<Uuid>,
}

/// Checks that each asset is one of `company_id`'s.
async fn check_assets(
    state: &AppState,
    tenant_id: Uuid,
    company_id: Uuid,
    asset_ids: &[Uuid],
    errors: &mut Vec<ValidationError>,
) -> Result<(), ApiError> {
    for id in asset_ids {
        match assets::get(&state.pool, tenant_id, *id).await? {
            Some(a) if a.company_id == company_id => {}
            _ => errors.push(ValidationError::new(
                "asset_ids",
                format!("{id} is not one of the company's assets"),
            )),
        }
    }
    Ok(())
}

/// Checks that `user_id` is an active staff member who may work on orders.
fn check_technician(
    tenant: &Tenant,
    field: &'static str,
    user_id: Uuid,
) -> Result<(), ValidationError> {
    match tenant.active_role(user_id) {
        Some(role) if domain::authz::allows(role, Action::EditWorkOrders) => Ok(()),
        _ => Err(ValidationError::new(
            field,
            "must be an active owner, admin or technician of your organisation",
        )),
    }
}

/// Raises a work order. Staff raise orders for any company; a client only for their own, with
/// the company's assets, and without the staff-only fields.
pub async fn open(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    body: &OpenBody,
) -> Result<Executed<WorkOrder>, ApiError> {
    let tenant = tenant(state, me.tenant_id).await?;
    let client = me.role == Role::Client;
    let mut errors = Vec::new();
    let company_id = if client {
        me.company_id
    } else {
        body.company_id
    };
    let Some(company_id) = company_id else {
        return Err(ApiError::Invalid(vec![ValidationError::new(
            "company_id",
            "is required",
        )]));
    };
    if client && body.company_id.is_some_and(|c| Some(c) != me.company_id) {
        errors.push(ValidationError::new(
            "company_id",
            "you can ask for work for your own company only",
        ));
    }
    match companies::get(&state.pool, me.tenant_id, company_id).await? {
        None => errors.push(ValidationError::new(
            "company_id",
            "is not one of your companies",
        )),
        Some(c) if c.archived => errors.push(ValidationError::new(
            "company_id",
            "is archived: restore it before raising work orders",
        )),
        Some(_) => {}
    }
    let priority = match body.priority.as_deref() {
        None | Some("") => Some(Priority::Normal),
        Some(p) => Priority::parse("priority", p)
            .map_err(|e| errors.push(e))
            .ok(),
    };
    let work_types = tenant.work_type_names();
    let work_type = body
        .work_type
        .clone()
        .unwrap_or_else(|| work_types.first().cloned().unwrap_or_default());
    let asset_ids = body.asset_ids.clone().unwrap_or_default();
    check_assets(state, me.tenant_id, company_id, &asset_ids, &mut errors).await?;
    if let Err(e) =
        crate::equipment::check_contact(state, me.tenant_id, company_id, body.contact_id).await
    {
        errors.push(e);
    }
    let details = WorkOrderDetails::parse(
        body.title.as_deref().unwrap_or(""),
        body.description.as_deref().unwrap_or(""),
        &work_type,
        body.contact_id,
        asset_ids,
        &work_types,
    )
    .map_err(|e| errors.extend(e))
    .ok();
    let now = Utc::now();
    let opened_at = match body.opened_at {
        None => now,
        Some(_) if !matches!(me.role, Role::Owner | Role::Admin) => {
            errors.push(ValidationError::new(
                "opened_at",
                "only owners and admins may back-date a work order (importing history)",
            ));
            now
        }
        Some(at) if at > now + chrono::Duration::minutes(5) => {
            errors.push(ValidationError::new(
                "opened_at",
                "must not be in the future",
            ));
            now
        }
        Some(at) => at,
    };
    if client && (body.assignee_id.is_some() || body.holds_assets.is_some()) {
        errors.push(ValidationError::new(
            "assignee_id",
            "assignment and holding assets are for staff",
        ));
    }
    if let Some(user_id) = body.assignee_id {
        if let Err(e) = check_technician(&tenant, "assignee_id", user_id) {
            errors.push(e);
        }
    }
    let (Some(details), Some(priority), true) = (details, priority, errors.is_empty()) else {
        return Err(ApiError::Invalid(errors));
    };
    let hours = tenant.business_hours();
    let policy = tenant.sla_policy(priority);
    let id = meta.new_aggregate_id();
    let origin = if client {
        Origin::Customer
    } else {
        Origin::Staff
    };
    let holds_assets = body.holds_assets.unwrap_or(false);
    let mut done = state
        .store
        .create_numbered::<WorkOrder>(
            &id.to_string(),
            SEQUENCE,
            |number| WorkOrderCommand::Open {
                number,
                company_id,
                details: details.clone(),
                priority,
                origin,
                holds_assets,
                opened_at,
                policy,
                hours: hours.clone(),
            },
            &(),
            meta,
        )
        .await?;
    if let Some(assignee_id) = body.assignee_id {
        done = state
            .store
            .execute::<WorkOrder>(
                &done.aggregate_id,
                WorkOrderCommand::Assign {
                    assignee_id: Some(assignee_id),
                    now,
                },
                &(),
                &meta.derived(b"assign"),
                ConflictPolicy::Busy,
            )
            .await?;
    }
    sync_assets(state, meta, id, &done.state).await;
    Ok(done)
}

/// Puts the assets of an open order that holds them in repair, and gives them back (active)
/// when it is finished and no other open order holds them. Best effort: an asset's status is
/// not money, and a failure is logged and shown by the asset still being in repair.
pub async fn sync_assets(state: &AppState, meta: &EventMeta, order_id: Uuid, order: &WorkOrder) {
    if !order.holds_assets {
        return;
    }
    for asset_id in &order.details.asset_ids {
        let outcome = async {
            let (asset, _) = state
                .store
                .load::<Asset>(meta.tenant_id, &asset_id.to_string())
                .await?;
            let wanted = if order.status.is_open() {
                (asset.status == AssetStatus::Active).then_some(AssetStatus::InRepair)
            } else if asset.status == AssetStatus::InRepair {
                let holders =
                    read::open_orders_holding_asset(&state.pool, meta.tenant_id, *asset_id).await?;
                let others = holders.iter().filter(|id| **id != order_id).count();
                (others == 0).then_some(AssetStatus::Active)
            } else {
                None
            };
            if let Some(status) = wanted {
                let step = format!("asset:{asset_id}:{}", status.as_str());
                state
                    .store
                    .execute::<Asset>(
                        &asset_id.to_string(),
                        AssetCommand::SetStatus { status },
                        &(),
                        &meta.derived(step.as_bytes()),
                        ConflictPolicy::RetryOnce,
                    )
                    .await?;
            }
            Ok::<_, ApiError>(())
        };
        if let Err(error) = outcome.await {
            tracing::warn!(%asset_id, %error, "could not change the asset's repair status");
        }
    }
}

/// Runs one command on order `id` and, when the status changed, gives assets back or holds
/// them. Orders are busy records (several people, the scheduler): a command that loses a race
/// is decided again on the new state, which the aggregate checks whole.
pub async fn run(
    state: &AppState,
    meta: &EventMeta,
    id: Uuid,
    command: WorkOrderCommand,
) -> Result<Executed<WorkOrder>, ApiError> {
    let done = state
        .store
        .execute::<WorkOrder>(&id.to_string(), command, &(), meta, ConflictPolicy::Busy)
        .await?;
    let moved = done.events.iter().any(|e| {
        matches!(
            e,
            domain::workorder::WorkOrderEvent::WorkOrderStatusChanged { .. }
        )
    });
    if moved {
        sync_assets(state, meta, id, &done.state).await;
    }
    Ok(done)
}

/// Changes to an order (PATCH): only the fields present change.
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    pub title: Option<String>,
    pub description: Option<String>,
    pub priority: Option<String>,
    #[serde(rename = "type")]
    pub work_type: Option<String>,
    pub asset_ids: Option<Vec<Uuid>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Uuid>)]
    pub contact_id: Option<Option<Uuid>>,
    /// A staff member, or null to unassign.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Uuid>)]
    pub assignee_id: Option<Option<Uuid>>,
    /// `in_progress`, `waiting_on_customer`, `resolved`, `closed`, `reopened`, `cancelled`,
    /// `no_fix` (`assigned` and `new` follow from assigning and unassigning).
    pub status: Option<String>,
}

/// Reads `"field": null` as "clear" and an absent field as "unchanged".
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Uuid>>, D::Error> {
    Option::<Uuid>::deserialize(d).map(Some)
}

/// Applies a PATCH: details and priority, then assignment, then status — each a command with
/// an id derived from the request's. `None` when nothing changed.
pub async fn change(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    id: Uuid,
    body: &ChangeBody,
) -> Result<Option<Executed<WorkOrder>>, ApiError> {
    let order = load(state, me, id).await?;
    let tenant = tenant(state, me.tenant_id).await?;
    let mut errors = Vec::new();
    let priority = body
        .priority
        .as_deref()
        .map(|p| Priority::parse("priority", p))
        .transpose()
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let status = body
        .status
        .as_deref()
        .map(|s| Status::parse("status", s))
        .transpose()
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    if matches!(status, Some(Status::Assigned | Status::New)) {
        errors.push(ValidationError::new(
            "status",
            "assigned and new follow from assigning (assignee_id) and unassigning",
        ));
    }
    let d = &order.details;
    let asset_ids = body
        .asset_ids
        .clone()
        .unwrap_or_else(|| d.asset_ids.clone());
    if body.asset_ids.is_some() {
        check_assets(
            state,
            me.tenant_id,
            order.company_id,
            &asset_ids,
            &mut errors,
        )
        .await?;
    }
    let contact_id = body.contact_id.unwrap_or(d.contact_id);
    if body.contact_id.is_some() {
        if let Err(e) =
            crate::equipment::check_contact(state, me.tenant_id, order.company_id, contact_id).await
        {
            errors.push(e);
        }
    }
    let mut work_types = tenant.work_type_names();
    if !work_types.contains(&d.work_type) {
        // A type the tenant removed since stays valid on the orders that have it.
        work_types.push(d.work_type.clone());
    }
    let details = WorkOrderDetails::parse(
        body.title.as_deref().unwrap_or(&d.title),
        body.description.as_deref().unwrap_or(&d.description),
        body.work_type.as_deref().unwrap_or(&d.work_type),
        contact_id,
        asset_ids,
        &work_types,
    )
    .map_err(|e| errors.extend(e))
    .ok();
    if let Some(Some(user_id)) = body.assignee_id {
        if let Err(e) = check_technician(&tenant, "assignee_id", user_id) {
            errors.push(e);
        }
    }
    let Some(details) = details.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Invalid(errors));
    };
    let now = Utc::now();
    let hours = tenant.business_hours();
    let mut commands = Vec::new();
    let new_priority = priority.unwrap_or(order.priority);
    if details != order.details || new_priority != order.priority {
        commands.push(WorkOrderCommand::Change {
            changes: Changes {
                details: Some(details),
                priority,
            },
            policy: tenant.sla_policy(new_priority),
            hours: hours.clone(),
        });
    }
    // Reopen before reassigning; assign before starting work.
    if status == Some(Status::Reopened) {
        commands.push(set_status(Status::Reopened, now, &hours));
    }
    if let Some(assignee_id) = body.assignee_id {
        commands.push(WorkOrderCommand::Assign { assignee_id, now });
    }
    if let Some(status) = status.filter(|s| *s != Status::Reopened) {
        commands.push(set_status(status, now, &hours));
    }
    let mut last = None;
    for (i, command) in commands.into_iter().enumerate() {
        last = Some(run(state, &meta.derived(&[i as u8]), id, command).await?);
    }
    Ok(last.filter(|done| !done.events.is_empty() || done.replayed))
}

fn set_status(
    status: Status,
    now: DateTime<Utc>,
    hours: &domain::business_hours::BusinessHours,
) -> WorkOrderCommand {
    WorkOrderCommand::SetStatus {
        status,
        by_staff: true,
        now,
        hours: hours.clone(),
    }
}

/// Staff comment on an order (public: the customer sees it; internal: staff only).
pub async fn comment(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    id: Uuid,
    body: &str,
    public: bool,
) -> Result<Executed<WorkOrder>, ApiError> {
    let body = parse_comment(body).map_err(|e| ApiError::Invalid(vec![e]))?;
    load(state, me, id).await?;
    let client = me.role == Role::Client;
    let comment = Comment {
        comment_id: Uuid::new_v5(&meta.command_id, b"comment"),
        author_id: Some(me.user_id),
        origin: if client {
            Origin::Customer
        } else {
            Origin::Staff
        },
        public: public || client,
        body,
    };
    run(
        state,
        meta,
        id,
        WorkOrderCommand::Comment {
            comment,
            now: Utc::now(),
        },
    )
    .await
}

/// A stretch of work as the API or the console's form gives it.
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeBody {
    /// 1 to 1440.
    pub minutes: Option<i64>,
    /// The day of the work in the organisation's time zone (`YYYY-MM-DD`, default today);
    /// back-dated entries are fine.
    #[schema(value_type = Option<String>, format = Date)]
    pub work_date: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
    /// `billable` or `contract`; absent: decided from the company's coverage.
    pub billing: Option<String>,
    /// Work done outside business hours (charged at the after-hours rate).
    pub after_hours: Option<bool>,
    /// Owners and admins may log time for another technician (default: oneself).
    pub technician_id: Option<Uuid>,
}

/// The local date of an instant in the tenant's zone.
pub fn local_date(tenant: &Tenant, at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&tenant.business_hours().time_zone.tz())
        .date_naive()
}

/// The first day of `date`'s month and of the next month.
fn month_of(date: NaiveDate) -> (NaiveDate, NaiveDate) {
    let first = date.with_day(1).expect("day 1 exists");
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    }
    .expect("a first of the month exists");
    (first, next)
}

/// The entries of `minutes` of work: billing decided from the company's coverage (split in
/// two when the month's included hours run out within it) unless `billing` says otherwise;
/// rate and labour cost from the settings.
#[allow(clippy::too_many_arguments)]
pub async fn entries_for(
    state: &AppState,
    tenant: &Tenant,
    tenant_id: Uuid,
    order: &WorkOrder,
    meta: &EventMeta,
    technician_id: Uuid,
    work_date: NaiveDate,
    minutes: u32,
    note: String,
    billing: Option<Billing>,
    after_hours: bool,
    span: Option<(DateTime<Utc>, DateTime<Utc>)>,
) -> Result<Vec<TimeEntry>, ApiError> {
    let (company, _) = state
        .store
        .load::<Company>(tenant_id, &order.company_id.to_string())
        .await?;
    let (from, to) = month_of(work_date);
    let used =
        read::contract_minutes_used(&state.pool, tenant_id, order.company_id, from, to).await?;
    let work_types = tenant.work_types();
    let rates = Rates {
        work_types: &work_types,
        default_rate: tenant.default_hourly_rate.unwrap_or(Amount::ZERO),
    };
    let cost_rate = tenant
        .members
        .get(&technician_id)
        .and_then(|m| m.hourly_cost)
        .unwrap_or(Amount::ZERO);
    let parts = coverage::decide(
        &company.coverage,
        rates,
        &order.details.work_type,
        minutes,
        after_hours,
        u32::try_from(used).unwrap_or(u32::MAX),
        billing,
    );
    Ok(parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let mut entry = TimeEntry::new(
                Uuid::new_v5(&meta.command_id, format!("time-entry:{i}").as_bytes()),
                technician_id,
                work_date,
                part.minutes,
                note.clone(),
                part.billing,
                after_hours,
                part.rate,
                cost_rate,
            );
            if let Some((started, ended)) = span {
                entry.started_at = Some(started);
                entry.ended_at = Some(ended);
            }
            entry
        })
        .collect())
}

/// A day of work done (`None` or empty: today), in the organisation's time zone: never after
/// today, at most ten years back. A bad one is reported and today used meanwhile.
fn past_day(
    errors: &mut Vec<ValidationError>,
    field: &'static str,
    text: Option<&str>,
    today: NaiveDate,
) -> NaiveDate {
    let text = text.map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return today;
    }
    let refused = match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(date) if date > today => "must not be after today (in the organisation's time zone)",
        Ok(date) if date < today - chrono::Duration::days(3660) => "is more than ten years ago",
        Ok(date) => return date,
        Err(_) => "must be a date written YYYY-MM-DD",
    };
    errors.push(ValidationError::new(field, refused));
    today
}

/// Logs time by hand.
pub async fn log_time(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    id: Uuid,
    body: &TimeBody,
) -> Result<Executed<WorkOrder>, ApiError> {
    let order = load(state, me, id).await?;
    let tenant = tenant(state, me.tenant_id).await?;
    let mut errors = Vec::new();
    let minutes = match body.minutes {
        Some(m) if (1..=i64::from(domain::workorder::MAX_ENTRY_MINUTES)).contains(&m) => m as u32,
        Some(_) => {
            errors.push(ValidationError::new("minutes", "must be 1 to 1440"));
            0
        }
        None => {
            errors.push(ValidationError::new("minutes", "is required"));
            0
        }
    };
    let today = local_date(&tenant, Utc::now());
    let work_date = past_day(&mut errors, "work_date", body.work_date.as_deref(), today);
    let note = domain::workorder::parse_note(body.note.as_deref().unwrap_or(""))
        .map_err(|e| errors.push(e))
        .unwrap_or_default();
    let billing = body
        .billing
        .as_deref()
        .filter(|b| !b.trim().is_empty())
        .map(|b| Billing::parse("billing", b))
        .transpose()
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let technician_id = body.technician_id.unwrap_or(me.user_id);
    if technician_id != me.user_id {
        if !matches!(me.role, Role::Owner | Role::Admin) {
            errors.push(ValidationError::new(
                "technician_id",
                "only owners and admins log time for someone else",
            ));
        } else if let Err(e) = check_technician(&tenant, "technician_id", technician_id) {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let entries = entries_for(
        state,
        &tenant,
        me.tenant_id,
        &order,
        meta,
        technician_id,
        work_date,
        minutes,
        note,
        billing,
        body.after_hours.unwrap_or(false),
        None,
    )
    .await?;
    run(state, meta, id, WorkOrderCommand::LogTime { entries }).await
}

/// Removes a time entry: the technician who logged it, or an owner or admin.
pub async fn remove_time(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    id: Uuid,
    entry_id: Uuid,
) -> Result<Executed<WorkOrder>, ApiError> {
    let order = load(state, me, id).await?;
    let entry = order
        .time_entries
        .get(&entry_id)
        .ok_or_else(|| ApiError::NotFound(format!("time entry {entry_id} not found")))?;
    if entry.technician_id != me.user_id && !matches!(me.role, Role::Owner | Role::Admin) {
        return Err(ApiError::Rejected {
            status: StatusCode::FORBIDDEN,
            detail: "only the technician who logged it, an owner or an admin removes a time entry"
                .into(),
        });
    }
    refuse_billed(state, me, &order, &format!("time/{entry_id}"), "this time").await?;
    run(state, meta, id, WorkOrderCommand::RemoveTime { entry_id }).await
}

/// Parts or consumables used on an order, as the API or the console's form gives them.
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaterialBody {
    /// What was used, as it reads on the invoice (1 to 200 characters).
    #[schema(example = "Cat6 patch cable, 2 m")]
    pub description: Option<String>,
    /// Part number or SKU (optional, up to 64 characters).
    #[schema(example = "C6-2M")]
    pub sku: Option<String>,
    /// Units used, a decimal string: more than 0, at most 100000, up to 3 decimals.
    #[schema(example = "3")]
    pub quantity: Option<String>,
    /// Price per unit, a decimal string.
    #[schema(example = "4.50")]
    pub unit_price: Option<String>,
    /// `billable` (default: on the company's next invoice) or `contract` (covered).
    pub billing: Option<String>,
    /// The day it was used in the organisation's time zone (`YYYY-MM-DD`, default today).
    #[schema(value_type = Option<String>, format = Date)]
    pub used_on: Option<String>,
}

/// Records materials used on order `id`; every bad field at once.
pub async fn add_material(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    id: Uuid,
    body: &MaterialBody,
) -> Result<(Executed<WorkOrder>, Uuid), ApiError> {
    load(state, me, id).await?;
    let tenant = tenant(state, me.tenant_id).await?;
    let mut errors = Vec::new();
    let quantity = match body.quantity.as_deref().map(str::trim) {
        None | Some("") => Some(rust_decimal::Decimal::ONE),
        Some(text) => match text.parse::<rust_decimal::Decimal>() {
            Ok(q) => Some(q),
            Err(_) => {
                errors.push(ValidationError::new(
                    "quantity",
                    "must be a number such as 2 or 2.5",
                ));
                None
            }
        },
    };
    let unit_price = match body.unit_price.as_deref().map(str::trim) {
        None | Some("") => {
            errors.push(ValidationError::new("unit_price", "is required"));
            None
        }
        Some(text) => Amount::parse("unit_price", text)
            .map_err(|e| errors.push(e))
            .ok(),
    };
    let billing = match body.billing.as_deref().map(str::trim) {
        None | Some("") => Some(Billing::Billable),
        Some(text) => Billing::parse("billing", text)
            .map_err(|e| errors.push(e))
            .ok(),
    };
    let today = local_date(&tenant, Utc::now());
    let used_on = past_day(&mut errors, "used_on", body.used_on.as_deref(), today);
    let material_id = Uuid::new_v5(&meta.command_id, b"material");
    let material = domain::workorder::Material::new(
        material_id,
        body.description.as_deref().unwrap_or(""),
        body.sku.as_deref().unwrap_or(""),
        quantity.unwrap_or(rust_decimal::Decimal::ONE),
        unit_price.unwrap_or(Amount::ZERO),
        billing.unwrap_or(Billing::Billable),
        used_on,
        me.user_id,
    );
    let material = match material {
        Ok(material) if errors.is_empty() => material,
        Ok(_) => return Err(ApiError::Invalid(errors)),
        Err(mut more) => {
            // In the order of the form's fields.
            more.retain(|e| quantity.is_some() || e.field != "quantity");
            errors.extend(more);
            let order = [
                "description",
                "sku",
                "quantity",
                "unit_price",
                "billing",
                "used_on",
            ];
            errors.sort_by_key(|e| order.iter().position(|f| *f == e.field));
            return Err(ApiError::Invalid(errors));
        }
    };
    let done = run(state, meta, id, WorkOrderCommand::AddMaterial { material }).await?;
    Ok((done, material_id))
}

/// Refuses to remove work the company's ledger has billed (`bill`: `time/<id>` or
/// `material/<id>`): the invoice keeps its line, and is credited instead. Asked of the ledger
/// itself, so a removal right after a billing run is refused before the read models show it.
async fn refuse_billed(
    state: &AppState,
    me: &Principal,
    order: &WorkOrder,
    bill: &str,
    what: &str,
) -> Result<(), ApiError> {
    let (ledger, _) = state
        .store
        .load::<domain::ledger::Ledger>(me.tenant_id, &domain::ledger::ledger_id(order.company_id))
        .await?;
    if !ledger.billed.contains(bill) {
        return Ok(());
    }
    // The invoice that bills it now (a void that kept its work still bills it).
    let number = ledger
        .invoices
        .values()
        .find(|invoice| invoice.bills.iter().any(|b| b == bill))
        .and_then(|invoice| invoice.number);
    Err(ApiError::Rejected {
        status: StatusCode::CONFLICT,
        detail: match number {
            Some(number) => format!(
                "{what} is billed on invoice {number}: credit the invoice instead of removing it"
            ),
            None => format!("{what} is billed: credit its invoice instead of removing it"),
        },
    })
}

/// Removes a material line: who added it, or an owner or admin; not once it is invoiced.
pub async fn remove_material(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    id: Uuid,
    material_id: Uuid,
) -> Result<Executed<WorkOrder>, ApiError> {
    let order = load(state, me, id).await?;
    let material = order
        .materials
        .get(&material_id)
        .ok_or_else(|| ApiError::NotFound(format!("material {material_id} not found")))?;
    if material.added_by != me.user_id && !matches!(me.role, Role::Owner | Role::Admin) {
        return Err(ApiError::Rejected {
            status: StatusCode::FORBIDDEN,
            detail: "only who added it, an owner or an admin removes a material line".into(),
        });
    }
    refuse_billed(
        state,
        me,
        &order,
        &format!("material/{material_id}"),
        "this material",
    )
    .await?;
    run(
        state,
        meta,
        id,
        WorkOrderCommand::RemoveMaterial { material_id },
    )
    .await
}

/// A line of a work order that bills: its time entries and its materials, removed the same
/// way by the API and the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkKind {
    Time,
    Material,
}

impl WorkKind {
    /// What the line is called in messages ("no such time entry").
    pub fn noun(self) -> &'static str {
        match self {
            Self::Time => "time entry",
            Self::Material => "material",
        }
    }

    /// Removes line `line_id` of order `id` (`remove_time` or `remove_material`).
    pub async fn remove(
        self,
        state: &AppState,
        me: &Principal,
        meta: &EventMeta,
        id: Uuid,
        line_id: Uuid,
    ) -> Result<Executed<WorkOrder>, ApiError> {
        match self {
            Self::Time => remove_time(state, me, meta, id, line_id).await,
            Self::Material => remove_material(state, me, meta, id, line_id).await,
        }
    }
}

/// Starts the asker's timer on order `id`.
pub async fn start_timer(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    id: Uuid,
) -> Result<Executed<WorkOrder>, ApiError> {
    load(state, me, id).await?;
    run(
        state,
        meta,
        id,
        WorkOrderCommand::StartTimer {
            technician_id: me.user_id,
            now: Utc::now(),
        },
    )
    .await
}

/// Stops the asker's timer and logs the time it ran (whole minutes, at least one; after
/// hours when it started outside business hours), billing decided as for any entry.
pub async fn stop_timer(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    id: Uuid,
    note: &str,
    billing: Option<Billing>,
) -> Result<Executed<WorkOrder>, ApiError> {
    let order = load(state, me, id).await?;
    let Some(started) = order.timers.get(&me.user_id).copied() else {
        return Err(ApiError::Conflict(
            "no timer of yours is running on this work order".into(),
        ));
    };
    let tenant = tenant(state, me.tenant_id).await?;
    let now = Utc::now();
    let seconds = (now - started).num_seconds().max(0);
    let minutes = u32::try_from(((seconds + 30) / 60).max(1)).unwrap_or(u32::MAX);
    if minutes > domain::workorder::MAX_ENTRY_MINUTES {
        return Err(ApiError::Conflict(format!(
            "this timer has run since {started} ({} hours): cancel it and log the time by hand",
            seconds / 3600
        )));
    }
    let note = domain::workorder::parse_note(note).map_err(|e| ApiError::Invalid(vec![e]))?;
    let after_hours = !tenant.business_hours().is_open(started);
    let entries = entries_for(
        state,
        &tenant,
        me.tenant_id,
        &order,
        meta,
        me.user_id,
        local_date(&tenant, started),
        minutes,
        note,
        billing,
        after_hours,
        Some((started, now)),
    )
    .await?;
    run(
        state,
        meta,
        id,
        WorkOrderCommand::StopTimer {
            technician_id: me.user_id,
            entries,
        },
    )
    .await
}

/// A new status link: the token (shown once) and its address.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedLink {
    pub id: Uuid,
    /// `technician` or `customer`.
    pub kind: String,
    /// The address to send; it is shown once and stored only as a digest.
    pub url: String,
    pub expires_at: DateTime<Utc>,
    pub max_uses: u32,
}

/// Issues a status link for order `id`. A technician link goes to the assignee (or
/// `user_id`); a customer link to whoever the staff member sends it to.
pub async fn issue_link(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    id: Uuid,
    kind: LinkKind,
) -> Result<IssuedLink, ApiError> {
    let order = load(state, me, id).await?;
    let user_id = match kind {
        LinkKind::Technician => Some(order.assignee_id.ok_or_else(|| {
            ApiError::Conflict("assign a technician before sending a technician link".into())
        })?),
        LinkKind::Customer => None,
    };
    let (token, digest) = commands::identity::new_token("");
    let link_id = Uuid::new_v5(&meta.command_id, b"status-link");
    let done = run(
        state,
        meta,
        id,
        WorkOrderCommand::IssueLink {
            link_id,
            kind,
            token_digest: digest,
            user_id,
            now: Utc::now(),
        },
    )
    .await?;
    if done.replayed {
        return Err(ApiError::Conflict(
            "this link was already issued by the same request; its address was shown then — issue a new one".into(),
        ));
    }
    let link = done
        .state
        .links
        .get(&link_id)
        .ok_or_else(|| ApiError::internal("the issued link is missing from the order"))?;
    Ok(IssuedLink {
        id: link_id,
        kind: kind.as_str().into(),
        url: format!("{}/l/{id}/{token}", state.settings().public_url),
        expires_at: link.expires_at,
        max_uses: link.max_uses,
    })
}

// ---------------------------------------------------------------------------------------------
// JSON API
// ---------------------------------------------------------------------------------------------

/// The SLA of an order: due times in RFC 3339 (null without a policy for its priority).
#[derive(Debug, Serialize, ToSchema)]
pub struct SlaJson {
    pub response_due_at: Option<DateTime<Utc>>,
    pub resolution_due_at: Option<DateTime<Utc>>,
    /// `none`, `ok`, `warning`, `breached`, `paused` or `met`.
    pub state: String,
    /// Targets in business minutes.
    pub response_minutes: Option<i32>,
    pub resolution_minutes: Option<i32>,
    /// When the clock stopped (waiting on the customer), if it is stopped.
    pub paused_since: Option<DateTime<Utc>>,
    pub responded_at: Option<DateTime<Utc>>,
}

/// A work order as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WorkOrder)]
pub struct WorkOrderJson {
    pub id: Uuid,
    /// Numbered per tenant without gaps.
    pub number: i64,
    pub company_id: Uuid,
    pub company_name: String,
    pub contact_id: Option<Uuid>,
    pub title: String,
    pub description: String,
    #[serde(rename = "type")]
    pub work_type: String,
    /// `low`, `normal`, `high`, `urgent`.
    pub priority: String,
    /// `new`, `assigned`, `in_progress`, `waiting_on_customer`, `resolved`, `closed`,
    /// `reopened`, `cancelled`, `no_fix`.
    pub status: String,
    /// `staff` or `customer`.
    pub origin: String,
    pub assignee_id: Option<Uuid>,
    pub assignee_name: Option<String>,
    pub asset_ids: Vec<Uuid>,
    pub holds_assets: bool,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub sla: SlaJson,
    pub billable_minutes: i32,
    pub contract_minutes: i32,
    /// Charged for billable time so far (decimal string).
    #[schema(value_type = String, example = "142.50")]
    #[serde(with = "rust_decimal::serde::str")]
    pub billable_amount: rust_decimal::Decimal,
    pub comments: i32,
    /// The customer's satisfaction rating, 1 to 5.
    pub rating: Option<i16>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<WorkOrderRow> for WorkOrderJson {
    fn from(r: WorkOrderRow) -> Self {
        Self {
            id: r.id,
            number: r.number,
            company_id: r.company_id,
            company_name: r.company_name,
            contact_id: r.contact_id,
            title: r.title,
            description: r.description,
            work_type: r.work_type,
            priority: r.priority,
            status: r.status,
            origin: r.origin,
            assignee_id: r.assignee_id,
            assignee_name: r.assignee_name,
            asset_ids: r.asset_ids,
            holds_assets: r.holds_assets,
            opened_at: r.opened_at,
            resolved_at: r.resolved_at,
            closed_at: r.closed_at,
            sla: SlaJson {
                response_due_at: r.response_due_at,
                resolution_due_at: r.resolution_due_at,
                state: r.sla_state,
                response_minutes: r.response_minutes,
                resolution_minutes: r.resolution_minutes,
                paused_since: r.sla_paused_since,
                responded_at: r.responded_at,
            },
            billable_minutes: r.billable_minutes,
            contract_minutes: r.contract_minutes,
            billable_amount: r.billable_amount,
            comments: r.comments,
            rating: r.rating,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Waits for the read model to show `done`, then reads the order from it.
pub async fn after(
    state: &AppState,
    me: &Principal,
    done: &Executed<WorkOrder>,
) -> Result<WorkOrderJson, ApiError> {
    state
        .read_your_writes(VIEWS, "work_order", &done.aggregate_id, done.version)
        .await;
    let id = parse_id(&done.aggregate_id, "work order")?;
    read_one(state, me, id).await
}

async fn read_one(state: &AppState, me: &Principal, id: Uuid) -> Result<WorkOrderJson, ApiError> {
    read::get(&state.pool, me.tenant_id, id)
        .await?
        .map(WorkOrderJson::from)
        .ok_or_else(|| ApiError::NotFound(format!("work order {id} not found")))
}

fn respond<T: Serialize>(status: StatusCode, outcome: Result<T, ApiError>) -> Response {
    match outcome {
        Ok(json) => (status, Json(json)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Raise a work order. Staff give `company_id`; a client (portal person) raises one for their
/// own company. Owners and admins may pass `opened_at` to import history.
#[utoipa::path(
    post,
    path = "/api/v1/work-orders",
    tag = "work orders",
    operation_id = "createWorkOrder",
    params(IdempotencyKey),
    request_body(content = OpenBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Raised", body = WorkOrderJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn create_work_order(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    body: Result<ApiJson<OpenBody>, ApiError>,
) -> Response {
    if !me.may(Action::EditWorkOrders) {
        if let Err(refused) = me.require(Action::RequestWork) {
            return refused.into_response();
        }
    }
    let outcome = async {
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        let done = open(&state, &me, &meta, &body).await?;
        after(&state, &me, &done).await
    };
    respond(StatusCode::CREATED, outcome.await)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// A status, several separated by commas, or `open` (every status with work left).
    status: Option<String>,
    company_id: Option<Uuid>,
    /// A staff member's id, or `me`, or `none` (unassigned).
    assignee: Option<String>,
    priority: Option<String>,
    /// Orders naming this asset.
    asset_id: Option<Uuid>,
    /// `ok`, `warning`, `breached`, `paused`, `met`, `none`.
    sla: Option<String>,
    /// The `next` of the previous page.
    after: Option<String>,
    /// 1 to 500 (default 100).
    limit: Option<i64>,
}

/// A page of work orders, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkOrderList {
    items: Vec<WorkOrderJson>,
    /// Pass as `after` for the next page; null on the last page.
    next: Option<String>,
}

/// The filter of a list request; the console's list uses the same parsing.
pub fn filter_of(
    me: &Principal,
    status: Option<&str>,
    company_id: Option<Uuid>,
    assignee: Option<&str>,
    priority: Option<&str>,
    asset_id: Option<Uuid>,
    sla: Option<&str>,
) -> Result<Filter, ApiError> {
    let mut filter = Filter {
        company_id,
        asset_id,
        ..Filter::default()
    };
    if let Some(text) = status.map(str::trim).filter(|s| !s.is_empty()) {
        for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if part == "open" {
                filter.status.push("open".into());
            } else {
                let s = Status::parse("status", part)
                    .map_err(|e| ApiError::BadRequest(format!("status {}", e.message)))?;
                filter.status.push(s.as_str().into());
            }
        }
    }
    match assignee.map(str::trim).filter(|s| !s.is_empty()) {
        None => {}
        Some("me") => filter.assignee_id = Some(me.user_id),
        Some("none") => filter.unassigned = true,
        Some(text) => {
            filter.assignee_id = Some(Uuid::parse_str(text).map_err(|_| {
                ApiError::BadRequest("assignee must be a user id, `me` or `none`".into())
            })?)
        }
    }
    if let Some(p) = priority.map(str::trim).filter(|s| !s.is_empty()) {
        let p = Priority::parse("priority", p)
            .map_err(|e| ApiError::BadRequest(format!("priority {}", e.message)))?;
        filter.priority = Some(p.as_str().into());
    }
    if let Some(s) = sla.map(str::trim).filter(|s| !s.is_empty()) {
        if !["ok", "warning", "breached", "paused", "met", "none"].contains(&s) {
            return Err(ApiError::BadRequest(
                "sla must be one of ok, warning, breached, paused, met, none".into(),
            ));
        }
        filter.sla_state = Some(s.into());
    }
    Ok(filter)
}

/// Work orders, newest first, filtered, keyset paged.
#[utoipa::path(
    get,
    path = "/api/v1/work-orders",
    tag = "work orders",
    operation_id = "listWorkOrders",
    params(ListParams),
    responses(
        (status = 200, description = "A page of work orders", body = WorkOrderList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn list_work_orders(
    State(state): State<AppState>,
    me: Principal,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewWorkOrders) {
        return refused.into_response();
    }
    let outcome = async {
        let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let filter = filter_of(
            &me,
            p.status.as_deref(),
            p.company_id,
            p.assignee.as_deref(),
            p.priority.as_deref(),
            p.asset_id,
            p.sla.as_deref(),
        )?;
        let before = p
            .after
            .as_deref()
            .map(|a| a.parse::<i64>())
            .transpose()
            .map_err(|_| {
                ApiError::BadRequest("after must be the `next` of a previous page".into())
            })?;
        let limit = p.limit.unwrap_or(100);
        if !(1..=500).contains(&limit) {
            return Err(ApiError::BadRequest("limit must be from 1 to 500".into()));
        }
        let mut rows = read::list(&state.pool, me.tenant_id, &filter, before, limit + 1).await?;
        let next = (rows.len() as i64 > limit).then(|| {
            rows.truncate(limit as usize);
            rows.last().map(|r| r.number.to_string())
        });
        Ok::<_, ApiError>(WorkOrderList {
            items: rows.into_iter().map(WorkOrderJson::from).collect(),
            next: next.flatten(),
        })
    };
    respond(StatusCode::OK, outcome.await)
}

/// One work order.
#[utoipa::path(
    get,
    path = "/api/v1/work-orders/{id}",
    tag = "work orders",
    operation_id = "getWorkOrder",
    params(("id" = Uuid, Path, description = "The work order's id")),
    responses(
        (status = 200, description = "The work order", body = WorkOrderJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn get_work_order(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewWorkOrders) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "work order")?;
        read_one(&state, &me, id).await
    };
    respond(StatusCode::OK, outcome.await)
}

/// Change a work order: details, priority (SLA due times follow), assignee, status. Only the
/// fields present change; a refused status move says which moves are allowed.
#[utoipa::path(
    patch,
    path = "/api/v1/work-orders/{id}",
    tag = "work orders",
    operation_id = "updateWorkOrder",
    params(("id" = Uuid, Path, description = "The work order's id"), IdempotencyKey),
    request_body(content = ChangeBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The work order after the change", body = WorkOrderJson),
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
pub async fn update_work_order(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<ApiJson<ChangeBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::EditWorkOrders) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "work order")?;
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        match change(&state, &me, &meta, id, &body).await? {
            Some(done) => after(&state, &me, &done).await,
            None => read_one(&state, &me, id).await,
        }
    };
    respond(StatusCode::OK, outcome.await)
}

/// A comment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    #[schema(example = "Replaced the fuser; printing test pages now.")]
    body: String,
    /// Public comments are shown to the customer; internal ones (default) to staff only.
    #[serde(default)]
    public: bool,
}

/// Comment on a work order. A public staff comment is the first response if none was made.
#[utoipa::path(
    post,
    path = "/api/v1/work-orders/{id}/comments",
    tag = "work orders",
    operation_id = "addWorkOrderComment",
    params(("id" = Uuid, Path, description = "The work order's id"), IdempotencyKey),
    request_body(content = CommentBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The work order after the comment", body = WorkOrderJson),
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
pub async fn add_comment(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<ApiJson<CommentBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::EditWorkOrders) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "work order")?;
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        let done = comment(&state, &me, &meta, id, &body.body, body.public).await?;
        after(&state, &me, &done).await
    };
    respond(StatusCode::CREATED, outcome.await)
}

/// A time entry as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimeEntryJson {
    id: Uuid,
    work_order_id: Uuid,
    technician_id: Uuid,
    technician_name: String,
    #[schema(value_type = String, format = Date)]
    work_date: NaiveDate,
    minutes: i32,
    note: String,
    /// `billable` or `contract`.
    billing: String,
    after_hours: bool,
    /// Hourly rate charged (decimal string).
    #[schema(value_type = String, example = "95.00")]
    #[serde(with = "rust_decimal::serde::str")]
    rate: rust_decimal::Decimal,
    #[schema(value_type = String, example = "142.50")]
    #[serde(with = "rust_decimal::serde::str")]
    amount: rust_decimal::Decimal,
    /// Set once the entry is on an invoice.
    invoice_id: Option<Uuid>,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
}

impl From<read::TimeEntryRow> for TimeEntryJson {
    fn from(r: read::TimeEntryRow) -> Self {
        Self {
            id: r.id,
            work_order_id: r.work_order_id,
            technician_id: r.technician_id,
            technician_name: r.technician_name,
            work_date: r.work_date,
            minutes: r.minutes,
            note: r.note,
            billing: r.billing,
            after_hours: r.after_hours,
            rate: r.rate,
            amount: r.amount,
            invoice_id: r.invoice_id,
            started_at: r.started_at,
            ended_at: r.ended_at,
        }
    }
}

/// The time entries a request logged.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimeEntries {
    /// One entry, or two when the company's included hours ran out within it.
    items: Vec<TimeEntryJson>,
}

async fn entries_of(
    state: &AppState,
    me: &Principal,
    done: &Executed<WorkOrder>,
) -> Result<TimeEntries, ApiError> {
    state
        .read_your_writes(VIEWS, "work_order", &done.aggregate_id, done.version)
        .await;
    let id = parse_id(&done.aggregate_id, "work order")?;
    let logged: Vec<Uuid> = done
        .events
        .iter()
        .filter_map(|e| match e {
            domain::workorder::WorkOrderEvent::TimeLogged { entry } => Some(entry.entry_id),
            _ => None,
        })
        .collect();
    let mut rows: Vec<read::TimeEntryRow> = read::time_entries(&state.pool, me.tenant_id, id)
        .await?
        .into_iter()
        .filter(|r| logged.contains(&r.id))
        .collect();
    // In the order they were logged (the contract part of a split entry first).
    rows.sort_by_key(|r| logged.iter().position(|id| *id == r.id));
    Ok(TimeEntries {
        items: rows.into_iter().map(TimeEntryJson::from).collect(),
    })
}

/// Log time on a work order. Billing follows the company's coverage unless `billing` is
/// given; an entry that crosses the month's included hours is split in two.
#[utoipa::path(
    post,
    path = "/api/v1/work-orders/{id}/time-entries",
    tag = "work orders",
    operation_id = "addTimeEntry",
    params(("id" = Uuid, Path, description = "The work order's id"), IdempotencyKey),
    request_body(content = TimeBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The entries logged", body = TimeEntries),
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
pub async fn add_time_entry(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<ApiJson<TimeBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::LogTime) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "work order")?;
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        let done = log_time(&state, &me, &meta, id, &body).await?;
        entries_of(&state, &me, &done).await
    };
    respond(StatusCode::CREATED, outcome.await)
}

/// The time logged on a work order, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/work-orders/{id}/time-entries",
    tag = "work orders",
    operation_id = "listTimeEntries",
    params(("id" = Uuid, Path, description = "The work order's id")),
    responses(
        (status = 200, description = "The entries", body = TimeEntries),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn list_time_entries(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewWorkOrders) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "work order")?;
        read_one(&state, &me, id).await?;
        let rows = read::time_entries(&state.pool, me.tenant_id, id).await?;
        Ok::<_, ApiError>(TimeEntries {
            items: rows.into_iter().map(TimeEntryJson::from).collect(),
        })
    };
    respond(StatusCode::OK, outcome.await)
}

/// Remove a time entry (the technician who logged it, or an owner or admin).
#[utoipa::path(
    delete,
    path = "/api/v1/work-orders/{id}/time-entries/{entry_id}",
    tag = "work orders",
    operation_id = "removeTimeEntry",
    params(
        ("id" = Uuid, Path, description = "The work order's id"),
        ("entry_id" = Uuid, Path, description = "The time entry's id"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn remove_time_entry_api(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    remove_line_api(&state, &me, path, &headers, WorkKind::Time).await
}

/// `DELETE /api/v1/work-orders/{id}/{time-entries|materials}/{line_id}`: 204 once the read
/// models show it.
async fn remove_line_api(
    state: &AppState,
    me: &Principal,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: &HeaderMap,
    line: WorkKind,
) -> Response {
    if let Err(refused) = me.require(Action::LogTime) {
        return refused.into_response();
    }
    let outcome = async {
        let Path((id, line_id)) =
            path.map_err(|_| ApiError::NotFound(format!("no such {}", line.noun())))?;
        let id = parse_id(&id, "work order")?;
        let line_id = parse_id(&line_id, line.noun())?;
        let meta = command_meta(me, headers)?;
        let done = line.remove(state, me, &meta, id, line_id).await?;
        state
            .read_your_writes(VIEWS, "work_order", &done.aggregate_id, done.version)
            .await;
        Ok::<_, ApiError>(())
    };
    match outcome.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    }
}

/// A material line as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MaterialJson {
    id: Uuid,
    work_order_id: Uuid,
    description: String,
    sku: String,
    #[schema(value_type = String, example = "3")]
    #[serde(with = "rust_decimal::serde::str")]
    quantity: rust_decimal::Decimal,
    #[schema(value_type = String, example = "4.50")]
    #[serde(with = "rust_decimal::serde::str")]
    unit_price: rust_decimal::Decimal,
    /// `billable` or `contract`.
    billing: String,
    /// Quantity × unit price, rounded half-up to the cent; 0.00 when covered by the contract.
    #[schema(value_type = String, example = "13.50")]
    #[serde(with = "rust_decimal::serde::str")]
    amount: rust_decimal::Decimal,
    #[schema(value_type = String, format = Date)]
    used_on: NaiveDate,
    added_by: Uuid,
    added_by_name: String,
    /// Set once the line is on an invoice.
    invoice_id: Option<Uuid>,
}

impl From<read::MaterialRow> for MaterialJson {
    fn from(r: read::MaterialRow) -> Self {
        Self {
            id: r.id,
            work_order_id: r.work_order_id,
            description: r.description,
            sku: r.sku,
            quantity: r.quantity,
            unit_price: r.unit_price,
            billing: r.billing,
            amount: r.amount,
            used_on: r.used_on,
            added_by: r.added_by,
            added_by_name: r.added_by_name,
            invoice_id: r.invoice_id,
        }
    }
}

/// An order's materials.
#[derive(Debug, Serialize, ToSchema)]
pub struct Materials {
    items: Vec<MaterialJson>,
}

/// Record parts or consumables used on a work order. Billable lines go on the company's next
/// invoice (the billing run's, or an ad-hoc one with `unbilled_work`), each once.
#[utoipa::path(
    post,
    path = "/api/v1/work-orders/{id}/materials",
    tag = "work orders",
    operation_id = "addMaterial",
    params(("id" = Uuid, Path, description = "The work order's id"), IdempotencyKey),
    request_body(content = MaterialBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The line recorded", body = MaterialJson),
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
pub async fn add_material_api(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<ApiJson<MaterialBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::LogTime) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "work order")?;
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        let (done, material_id) = add_material(&state, &me, &meta, id, &body).await?;
        state
            .read_your_writes(VIEWS, "work_order", &done.aggregate_id, done.version)
            .await;
        // A retried request answers with the line its first attempt recorded.
        let material_id = done
            .events
            .iter()
            .find_map(|e| match e {
                domain::workorder::WorkOrderEvent::MaterialAdded { material, .. } => {
                    Some(material.material_id)
                }
                _ => None,
            })
            .unwrap_or(material_id);
        read::materials(&state.pool, me.tenant_id, id)
            .await?
            .into_iter()
            .find(|m| m.id == material_id)
            .map(MaterialJson::from)
            .ok_or_else(|| ApiError::NotFound(format!("material {material_id} not found")))
    };
    respond(StatusCode::CREATED, outcome.await)
}

/// The materials used on a work order, by day used.
#[utoipa::path(
    get,
    path = "/api/v1/work-orders/{id}/materials",
    tag = "work orders",
    operation_id = "listMaterials",
    params(("id" = Uuid, Path, description = "The work order's id")),
    responses(
        (status = 200, description = "The materials", body = Materials),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn list_materials_api(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewWorkOrders) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "work order")?;
        read_one(&state, &me, id).await?;
        let rows = read::materials(&state.pool, me.tenant_id, id).await?;
        Ok::<_, ApiError>(Materials {
            items: rows.into_iter().map(MaterialJson::from).collect(),
        })
    };
    respond(StatusCode::OK, outcome.await)
}

/// Remove a material line (who added it, or an owner or admin); not once it is invoiced.
#[utoipa::path(
    delete,
    path = "/api/v1/work-orders/{id}/materials/{material_id}",
    tag = "work orders",
    operation_id = "removeMaterial",
    params(
        ("id" = Uuid, Path, description = "The work order's id"),
        ("material_id" = Uuid, Path, description = "The material line's id"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn remove_material_api(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    remove_line_api(&state, &me, path, &headers, WorkKind::Material).await
}

/// What to do when stopping a timer.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopBody {
    #[serde(default)]
    note: String,
    /// `billable` or `contract`; absent: decided from the company's coverage.
    billing: Option<String>,
}

/// Start your timer on a work order.
#[utoipa::path(
    post,
    path = "/api/v1/work-orders/{id}/timer/start",
    tag = "work orders",
    operation_id = "startTimer",
    params(("id" = Uuid, Path, description = "The work order's id"), IdempotencyKey),
    responses(
        (status = 200, description = "The work order", body = WorkOrderJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn start_timer_api(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = me.require(Action::LogTime) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "work order")?;
        let meta = command_meta(&me, &headers)?;
        let done = start_timer(&state, &me, &meta, id).await?;
        after(&state, &me, &done).await
    };
    respond(StatusCode::OK, outcome.await)
}

/// Stop your timer on a work order and log the time it ran.
#[utoipa::path(
    post,
    path = "/api/v1/work-orders/{id}/timer/stop",
    tag = "work orders",
    operation_id = "stopTimer",
    params(("id" = Uuid, Path, description = "The work order's id"), IdempotencyKey),
    request_body(content = StopBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The entries logged", body = TimeEntries),
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
pub async fn stop_timer_api(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<ApiJson<StopBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::LogTime) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "work order")?;
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        let billing = body
            .billing
            .as_deref()
            .map(|b| Billing::parse("billing", b))
            .transpose()
            .map_err(|e| ApiError::Invalid(vec![e]))?;
        let done = stop_timer(&state, &me, &meta, id, &body.note, billing).await?;
        entries_of(&state, &me, &done).await
    };
    respond(StatusCode::CREATED, outcome.await)
}

/// Which link to issue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    /// `technician` (the assignee sets in progress, resolved or closed without signing in;
    /// 72 hours) or `customer` (follow progress and rate the work; 7 days, 50 uses).
    kind: String,
}

/// Issue a status link. The answer holds its address once; only a digest is stored.
#[utoipa::path(
    post,
    path = "/api/v1/work-orders/{id}/links",
    tag = "work orders",
    operation_id = "issueStatusLink",
    params(("id" = Uuid, Path, description = "The work order's id")),
    request_body(content = LinkBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The link", body = IssuedLink),
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
pub async fn issue_link_api(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
    body: Result<ApiJson<LinkBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::EditWorkOrders) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "work order")?;
        let ApiJson(body) = body?;
        let kind = parse_link_kind(&body.kind)?;
        issue_link(&state, &me, &me.meta(), id, kind).await
    };
    respond(StatusCode::CREATED, outcome.await)
}

pub fn parse_link_kind(text: &str) -> Result<LinkKind, ApiError> {
    match text.trim() {
        "technician" => Ok(LinkKind::Technician),
        "customer" => Ok(LinkKind::Customer),
        _ => Err(ApiError::Invalid(vec![ValidationError::new(
            "kind",
            "must be technician or customer",
        )])),
    }
}

/// Revoke a status link: it stops working at once.
#[utoipa::path(
    delete,
    path = "/api/v1/work-orders/{id}/links/{link_id}",
    tag = "work orders",
    operation_id = "revokeStatusLink",
    params(
        ("id" = Uuid, Path, description = "The work order's id"),
        ("link_id" = Uuid, Path, description = "The link's id"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn revoke_link_api(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::EditWorkOrders) {
        return refused.into_response();
    }
    let outcome = async {
        let Path((id, link_id)) =
            path.map_err(|_| ApiError::NotFound("no such work order link".into()))?;
        let id = parse_id(&id, "work order")?;
        let link_id = parse_id(&link_id, "link")?;
        load(&state, &me, id).await?;
        let done = run(
            &state,
            &me.meta(),
            id,
            WorkOrderCommand::RevokeLink { link_id },
        )
        .await?;
        state
            .read_your_writes(VIEWS, "work_order", &done.aggregate_id, done.version)
            .await;
        Ok::<_, ApiError>(())
    };
    match outcome.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    }
}

/// Billable time not invoiced yet, per company.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnbilledJson {
    company_id: Uuid,
    company_name: String,
    /// Time entries, their minutes and amount.
    entries: i64,
    minutes: i64,
    #[schema(value_type = String, example = "475.00")]
    #[serde(with = "rust_decimal::serde::str")]
    amount: rust_decimal::Decimal,
    /// Material lines and their amount.
    materials: i64,
    #[schema(value_type = String, example = "13.50")]
    #[serde(with = "rust_decimal::serde::str")]
    materials_amount: rust_decimal::Decimal,
    /// Time and materials.
    #[schema(value_type = String, example = "488.50")]
    #[serde(with = "rust_decimal::serde::str")]
    total: rust_decimal::Decimal,
}

/// The unbilled work of every company.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnbilledList {
    items: Vec<UnbilledJson>,
}

/// Billable time and materials not yet invoiced, per company (the billing run, or an ad-hoc
/// invoice with `unbilled_work`, invoices each once).
#[utoipa::path(
    get,
    path = "/api/v1/unbilled-work",
    tag = "work orders",
    operation_id = "listUnbilledWork",
    responses(
        (status = 200, description = "Unbilled work per company", body = UnbilledList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn unbilled_api(State(state): State<AppState>, me: Principal) -> Response {
    if let Err(refused) = me.require(Action::ViewWorkOrders) {
        return refused.into_response();
    }
    let outcome = async {
        let rows = read::unbilled_by_company(&state.pool, me.tenant_id).await?;
        Ok::<_, ApiError>(UnbilledList {
            items: rows
                .into_iter()
                .map(|r| UnbilledJson {
                    company_id: r.company_id,
                    company_name: r.company_name,
                    entries: r.entries,
                    minutes: r.minutes,
                    amount: r.amount,
                    materials: r.materials,
                    materials_amount: r.materials_amount,
                    total: r.total,
                })
                .collect(),
        })
    };
    respond(StatusCode::OK, outcome.await)
}
