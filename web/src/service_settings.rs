//! The service desk's settings (issue 5): business hours, SLA policies, work types and their
//! rates, the staff's labour costs, and a company's contract coverage.
//!
//! Everyone signed in reads the tenant's settings (`OwnAccount`); owners and admins change them
//! (`ServiceSettings`). A company's coverage is read with `ViewCompanies` and changed with
//! `SetCompanyRate`. Console `/settings/service-desk` and `/companies/{id}/coverage`; API
//! `/api/v1/settings/{business-hours,sla-policies,work-types}`,
//! `/api/v1/users/{id}/labour-cost` and `/api/v1/companies/{id}/coverage`. Every answer is read
//! from the aggregate itself, so a change is visible at once.

use std::collections::BTreeMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use commands::{CommandError, ConflictPolicy, EventMeta, Executed};
use domain::authz::Action;
use domain::business_hours::{BusinessHours, BusinessHoursInput, DAY_KEYS};
use domain::company::{Company, CompanyCommand, CompanyError};
use domain::coverage::{parse_work_type_name, Coverage, WorkType};
use domain::identity::{Role, TimeZone};
use domain::tenant::{Tenant, TenantCommand, TenantError};
use domain::values::Amount;
use domain::workorder::{parse_sla_policies, Priority, SlaPolicy, SlaPolicyInput};
use domain::ValidationError;
use projections::users::{self, UserRow};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::{command_meta, path_id, ApiJson, IdempotencyKey};
use crate::auth::Principal;
use crate::console::{
    company_for_tab, csrf_refusal, internal_page, not_found_page, redirect_with_flash, CompanyTab,
    CompanyTabs, Cookies,
};
use crate::error::ApiError;
use crate::openapi::{
    BadRequest, Conflict, Forbidden, InternalError, NotFound, PayloadTooLarge, Unauthorized,
    Unprocessable, UnsupportedMediaType,
};
use crate::AppState;

/// The console page of the service desk's settings.
const PAGE: &str = "/settings/service-desk";

/// The most work types a tenant may define.
const MAX_WORK_TYPES: usize = 100;

/// The most opening intervals the console form takes per day.
const MAX_SLOTS: usize = 8;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/settings/business-hours",
            get(get_business_hours).put(set_business_hours),
        )
        .route(
            "/api/v1/settings/sla-policies",
            get(get_sla_policies).put(set_sla_policies),
        )
        .route(
            "/api/v1/settings/work-types",
            get(get_work_types).put(set_work_types),
        )
        .route("/api/v1/users/{id}/labour-cost", put(set_labour_cost))
        .route(
            "/api/v1/companies/{id}/coverage",
            get(get_coverage).put(set_coverage),
        )
        .route(PAGE, get(service_desk_page))
        .route("/settings/service-desk/business-hours", post(save_hours))
        .route("/settings/service-desk/sla-policies", post(save_sla))
        .route("/settings/service-desk/work-types", post(save_work))
        .route("/settings/service-desk/labour-costs", post(save_costs))
        .route(
            "/companies/{id}/coverage",
            get(coverage_page).post(save_coverage),
        )
        .layer(DefaultBodyLimit::max(crate::api::BODY_LIMIT))
}

// ---------------------------------------------------------------------------------------------
// Shapes of the API

/// A tenant's business hours: local wall-clock intervals per weekday (`mon` to `sun`, `HH:MM`,
/// `24:00` ending a day; a day left out is closed) in an IANA time zone, and holidays
/// (`YYYY-MM-DD`, closed all day). SLA targets count business minutes inside them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BusinessHours, example = json!({
    "time_zone": "America/New_York",
    "week": {"mon": [["09:00", "12:00"], ["13:00", "17:00"]], "tue": [["09:00", "17:00"]]},
    "holidays": ["2026-11-26"]
}))]
pub struct BusinessHoursJson {
    /// IANA time zone name.
    #[serde(default)]
    #[schema(required = true, example = "America/New_York")]
    time_zone: String,
    /// Day (`mon`..`sun`) → its `[start, end]` intervals, sorted, not overlapping. At least one
    /// interval a week.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Vec<Vec<String>>>)]
    week: BTreeMap<String, Vec<[String; 2]>>,
    /// Local dates without business hours, at most 500.
    #[serde(default)]
    #[schema(example = json!(["2026-11-26", "2026-12-25"]))]
    holidays: Vec<String>,
}

/// The first-response and resolution targets of one priority, in business minutes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SlaPolicyEntry)]
pub struct SlaPolicyJson {
    /// `low`, `normal`, `high` or `urgent`; each at most once.
    #[schema(example = "urgent")]
    priority: String,
    /// 1 to 525600 business minutes.
    #[schema(minimum = 1, maximum = 525600, example = 60)]
    response_minutes: i64,
    /// 1 to 525600 business minutes, not shorter than the response target.
    #[schema(minimum = 1, maximum = 525600, example = 240)]
    resolution_minutes: i64,
}

/// The SLA policies: a priority without a policy has no SLA. The whole set is replaced.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SlaPolicies, example = json!({
    "policies": [
        {"priority": "urgent", "response_minutes": 60, "resolution_minutes": 240},
        {"priority": "normal", "response_minutes": 480, "resolution_minutes": 2400}
    ],
    "escalate_to": null
}))]
pub struct SlaPoliciesJson {
    #[serde(default)]
    policies: Vec<SlaPolicyJson>,
    /// The staff member who hears of SLA warnings and breaches besides the assignee: an
    /// active staff member's id, or null for nobody.
    #[serde(default)]
    #[schema(value_type = Option<Uuid>)]
    escalate_to: Option<Value>,
}

/// A work type and its own hourly rate (null: the tenant's default rate applies).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkTypeEntry)]
pub struct WorkTypeJson {
    /// 1 to 40 letters, digits, spaces or dashes; stored lower case.
    #[schema(example = "repair")]
    name: String,
    /// Money as a decimal string, or null.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = r"^\d+(\.\d{1,2})?$", example = "95.00")]
    hourly_rate: Option<Value>,
}

/// The work types (the whole list is replaced) and the default hourly rate of billable work.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkTypeSettings, example = json!({
    "work_types": [{"name": "repair", "hourly_rate": "95.00"}, {"name": "install", "hourly_rate": null}],
    "default_hourly_rate": "100.00"
}))]
pub struct WorkTypesJson {
    /// At least one, at most 100, each name once.
    #[serde(default)]
    work_types: Vec<WorkTypeJson>,
    /// Money as a decimal string; required on `PUT`, null until first set.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = r"^\d+(\.\d{1,2})?$", example = "100.00")]
    default_hourly_rate: Option<Value>,
}

/// Reads a present `null` as `Some(Value::Null)`, so an absent field can be told apart.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A staff member's hourly labour cost: what an hour of their time costs the business, kept
/// apart from what it is charged.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LabourCost)]
pub struct LabourCostJson {
    /// Money as a decimal string, or null for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, required = true, pattern = r"^\d+(\.\d{1,2})?$", example = "35.00")]
    hourly_cost: Option<Value>,
}

/// What a company's monthly contract covers, and its own rates.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CompanyCoverage, example = json!({
    "covered_work_types": ["repair"], "included_hours": "10", "covers_after_hours": false,
    "hourly_rate": "90.00", "after_hours_rate": "150.00"
}))]
pub struct CoverageJson {
    /// Work types of the tenant the monthly fee covers.
    #[serde(default)]
    covered_work_types: Vec<String>,
    /// Hours of covered work included per calendar month, as a decimal string of whole
    /// minutes (`"7.5"`), at most 744; null: unlimited.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "10")]
    included_hours: Option<Value>,
    /// Whether covered work done outside business hours is covered too.
    #[serde(default)]
    covers_after_hours: bool,
    /// The company's own hourly rate for billable work (replaces the work type's and the
    /// tenant's); null for none.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = r"^\d+(\.\d{1,2})?$", example = "90.00")]
    hourly_rate: Option<Value>,
    /// The hourly rate of billable work outside business hours; null for none.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = r"^\d+(\.\d{1,2})?$", example = "150.00")]
    after_hours_rate: Option<Value>,
}

fn money_value(amount: Option<Amount>) -> Option<Value> {
    amount.map(|a| Value::String(a.to_string()))
}

fn sla_json(tenant: &Tenant) -> SlaPoliciesJson {
    SlaPoliciesJson {
        policies: tenant
            .sla_policies
            .iter()
            .map(|p| SlaPolicyJson {
                priority: p.priority.as_str().to_owned(),
                response_minutes: p.response_minutes.into(),
                resolution_minutes: p.resolution_minutes.into(),
            })
            .collect(),
        escalate_to: tenant
            .sla_escalate_to
            .map(|id| Value::String(id.to_string())),
    }
}

fn work_json(tenant: &Tenant) -> WorkTypesJson {
    WorkTypesJson {
        work_types: tenant
            .work_types()
            .into_iter()
            .map(|t| WorkTypeJson {
                name: t.name,
                hourly_rate: Some(money_value(t.hourly_rate).unwrap_or(Value::Null)),
            })
            .collect(),
        default_hourly_rate: money_value(tenant.default_hourly_rate),
    }
}

fn coverage_json(coverage: &Coverage) -> CoverageJson {
    let hours = coverage.included_hours();
    CoverageJson {
        covered_work_types: coverage.covered_work_types.clone(),
        included_hours: (!hours.is_empty()).then_some(Value::String(hours)),
        covers_after_hours: coverage.covers_after_hours,
        hourly_rate: money_value(coverage.hourly_rate),
        after_hours_rate: money_value(coverage.after_hours_rate),
    }
}

// ---------------------------------------------------------------------------------------------
// Checking input (shared by the API and the console)

/// The text of an optional JSON string field (`None`: absent or null); anything else is an
/// error on `field`.
fn text_of(
    field: &'static str,
    value: Option<&Value>,
    errors: &mut Vec<ValidationError>,
) -> Option<String> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(_)) => {
            errors.push(ValidationError::new(
                field,
                "must be a decimal string such as \"100.00\", not a JSON number",
            ));
            None
        }
        Some(_) => {
            errors.push(ValidationError::new(field, "must be a string or null"));
            None
        }
    }
}

/// The SLA policies and the escalation person, checked against the tenant (all at once).
fn checked_sla(
    tenant: &Tenant,
    policies: &[SlaPolicyInput],
    escalate_to: Option<&str>,
) -> Result<(Vec<SlaPolicy>, Option<Uuid>), Vec<ValidationError>> {
    let mut errors = Vec::new();
    let policies = parse_sla_policies(policies)
        .map_err(|e| errors.extend(e))
        .ok();
    let escalate_to = match escalate_to.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => match Uuid::parse_str(text) {
            Ok(id) if tenant.active_role(id).is_some_and(Role::is_staff) => Some(id),
            Ok(_) => {
                errors.push(ValidationError::new(
                    "escalate_to",
                    "must be an active staff member of your organisation",
                ));
                None
            }
            Err(_) => {
                errors.push(ValidationError::new(
                    "escalate_to",
                    "must be a person's id (a UUID) or null",
                ));
                None
            }
        },
    };
    match policies {
        Some(policies) if errors.is_empty() => Ok((policies, escalate_to)),
        _ => Err(errors),
    }
}

/// Work types (`name`, optional rate text) and the default rate, checked all at once.
fn checked_work(
    types: &[(String, Option<String>)],
    default_rate: Option<&str>,
) -> Result<(Vec<WorkType>, Amount), Vec<ValidationError>> {
    let mut errors = Vec::new();
    let mut work_types: Vec<WorkType> = Vec::new();
    if types.is_empty() {
        errors.push(ValidationError::new(
            "work_types",
            "must list at least one work type",
        ));
    }
    if types.len() > MAX_WORK_TYPES {
        errors.push(ValidationError::new(
            "work_types",
            format!("may hold at most {MAX_WORK_TYPES} work types"),
        ));
    }
    for (name, rate) in types {
        let name = match parse_work_type_name(name) {
            Ok(name) => name,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let hourly_rate = match rate.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
            None => None,
            Some(text) => match Amount::parse("work_types", text) {
                Ok(rate) => Some(rate),
                Err(e) => {
                    errors.push(ValidationError::new(
                        "work_types",
                        format!("{name:?}: the hourly rate {}", e.message),
                    ));
                    None
                }
            },
        };
        if work_types.iter().any(|t| t.name == name) {
            errors.push(ValidationError::new(
                "work_types",
                format!("{name:?} is listed more than once"),
            ));
            continue;
        }
        work_types.push(WorkType { name, hourly_rate });
    }
    let default_rate = match default_rate.map(str::trim).filter(|r| !r.is_empty()) {
        None => {
            errors.push(ValidationError::new("default_hourly_rate", "is required"));
            None
        }
        Some(text) => Amount::parse("default_hourly_rate", text)
            .map_err(|e| errors.push(e))
            .ok(),
    };
    match default_rate {
        Some(rate) if errors.is_empty() => Ok((work_types, rate)),
        _ => Err(errors),
    }
}

/// A refusal of the tenant aggregate: its two input rules name their field.
fn tenant_refusal(error: CommandError<TenantError>) -> ApiError {
    match error {
        CommandError::Domain(e @ TenantError::EscalateToStaff) => {
            ApiError::Invalid(vec![ValidationError::new("escalate_to", e.to_string())])
        }
        CommandError::Domain(e @ TenantError::WorkTypes) => {
            ApiError::Invalid(vec![ValidationError::new("work_types", e.to_string())])
        }
        other => other.into(),
    }
}

async fn load_tenant(state: &AppState, tenant_id: Uuid) -> Result<Tenant, ApiError> {
    let (tenant, _) = state
        .store
        .load::<Tenant>(tenant_id, &tenant_id.to_string())
        .await?;
    Ok(tenant)
}

/// Runs tenant commands one after the other; the state after the last (`None`: none ran).
async fn run_tenant(
    state: &AppState,
    meta: &EventMeta,
    commands: Vec<TenantCommand>,
) -> Result<Option<Tenant>, ApiError> {
    let mut last = None;
    for (i, command) in commands.into_iter().enumerate() {
        let done: Executed<Tenant> = state
            .store
            .execute::<Tenant>(
                &meta.tenant_id.to_string(),
                command,
                &(),
                &meta.derived(&[i as u8]),
                ConflictPolicy::RetryOnce,
            )
            .await
            .map_err(tenant_refusal)?;
        last = Some(done.state);
    }
    Ok(last)
}

/// A company of the asker's tenant (404 otherwise), from its own events.
async fn load_company(state: &AppState, me: &Principal, id: Uuid) -> Result<Company, ApiError> {
    let (company, _) = state
        .store
        .load::<Company>(me.tenant_id, &id.to_string())
        .await?;
    if company.registered {
        Ok(company)
    } else {
        Err(ApiError::NotFound(format!("company {id} not found")))
    }
}

/// Checks a coverage for `company` and sets it; the coverage after the command.
async fn change_coverage(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    id: Uuid,
    input: CoverageInput,
) -> Result<Coverage, ApiError> {
    let company = load_company(state, me, id).await?;
    // The aggregate refuses it too; saying so first spares an archived company's form a
    // list of field errors it could not act on.
    if company.archived {
        return Err(ApiError::Conflict(CompanyError::Archived.to_string()));
    }
    let tenant = load_tenant(state, me.tenant_id).await?;
    let mut errors = input.errors;
    let coverage = Coverage::parse(
        &input.covered_work_types,
        &input.included_hours,
        input.covers_after_hours,
        &input.hourly_rate,
        &input.after_hours_rate,
        &tenant.work_type_names(),
    )
    .map_err(|e| errors.extend(e))
    .ok();
    let Some(coverage) = coverage.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Invalid(errors));
    };
    let done = state
        .store
        .execute::<Company>(
            &id.to_string(),
            CompanyCommand::SetCoverage { coverage },
            &(),
            meta,
            ConflictPolicy::RetryOnce,
        )
        .await?;
    Ok(done.state.coverage)
}

/// A coverage as typed (the API's values made text; problems with their types in `errors`).
struct CoverageInput {
    covered_work_types: Vec<String>,
    included_hours: String,
    covers_after_hours: bool,
    hourly_rate: String,
    after_hours_rate: String,
    errors: Vec<ValidationError>,
}

// ---------------------------------------------------------------------------------------------
// API handlers

/// Answers `outcome` as JSON, or its problem.
fn answer<T: Serialize>(outcome: Result<T, ApiError>) -> Response {
    match outcome {
        Ok(json) => Json(json).into_response(),
        Err(error) => error.into_response(),
    }
}

/// The business hours (Monday to Friday 09:00–17:00 in the organisation's time zone until set).
#[utoipa::path(
    get,
    path = "/api/v1/settings/business-hours",
    tag = "settings",
    operation_id = "getBusinessHours",
    responses(
        (status = 200, description = "The business hours", body = BusinessHoursJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn get_business_hours(State(state): State<AppState>, me: Principal) -> Response {
    if let Err(refused) = me.require(Action::OwnAccount) {
        return refused.into_response();
    }
    answer(
        load_tenant(&state, me.tenant_id)
            .await
            .map(|t| t.business_hours().to_input()),
    )
}

/// Replace the business hours (owners and admins). Every problem is reported at once.
#[utoipa::path(
    put,
    path = "/api/v1/settings/business-hours",
    tag = "settings",
    operation_id = "setBusinessHours",
    params(IdempotencyKey),
    request_body(content = BusinessHoursJson, content_type = "application/json"),
    responses(
        (status = 200, description = "The business hours after the change", body = BusinessHoursJson),
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
pub async fn set_business_hours(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    body: Result<ApiJson<BusinessHoursJson>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ServiceSettings) {
        return refused.into_response();
    }
    let outcome = async {
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        let input = BusinessHoursInput {
            time_zone: body.time_zone,
            week: body.week,
            holidays: body.holidays,
        };
        let hours = BusinessHours::parse(&input).map_err(ApiError::Invalid)?;
        let after = run_tenant(
            &state,
            &meta,
            vec![TenantCommand::SetBusinessHours { hours }],
        )
        .await?;
        let tenant = match after {
            Some(tenant) => tenant,
            None => load_tenant(&state, me.tenant_id).await?,
        };
        Ok(tenant.business_hours().to_input())
    };
    answer(outcome.await)
}

/// The SLA policies and who hears of warnings and breaches.
#[utoipa::path(
    get,
    path = "/api/v1/settings/sla-policies",
    tag = "settings",
    operation_id = "getSlaPolicies",
    responses(
        (status = 200, description = "The SLA policies", body = SlaPoliciesJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn get_sla_policies(State(state): State<AppState>, me: Principal) -> Response {
    if let Err(refused) = me.require(Action::OwnAccount) {
        return refused.into_response();
    }
    answer(
        load_tenant(&state, me.tenant_id)
            .await
            .map(|t| sla_json(&t)),
    )
}

/// Replace the SLA policies (owners and admins). New work orders get the targets of their
/// priority; orders already open keep theirs.
#[utoipa::path(
    put,
    path = "/api/v1/settings/sla-policies",
    tag = "settings",
    operation_id = "setSlaPolicies",
    params(IdempotencyKey),
    request_body(content = SlaPoliciesJson, content_type = "application/json"),
    responses(
        (status = 200, description = "The SLA policies after the change", body = SlaPoliciesJson),
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
pub async fn set_sla_policies(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    body: Result<ApiJson<SlaPoliciesJson>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ServiceSettings) {
        return refused.into_response();
    }
    let outcome = async {
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        let tenant = load_tenant(&state, me.tenant_id).await?;
        let mut errors = Vec::new();
        let escalate_to = match &body.escalate_to {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.push(ValidationError::new(
                    "escalate_to",
                    "must be a person's id (a UUID) or null",
                ));
                None
            }
        };
        let inputs: Vec<SlaPolicyInput> = body
            .policies
            .iter()
            .map(|p| SlaPolicyInput {
                priority: p.priority.clone(),
                response_minutes: p.response_minutes,
                resolution_minutes: p.resolution_minutes,
            })
            .collect();
        let checked = checked_sla(&tenant, &inputs, escalate_to.as_deref())
            .map_err(|e| errors.extend(e))
            .ok();
        let Some((policies, escalate_to)) = checked.filter(|_| errors.is_empty()) else {
            return Err(ApiError::Invalid(errors));
        };
        let command = TenantCommand::SetSlaPolicies {
            policies,
            escalate_to,
        };
        let after = run_tenant(&state, &meta, vec![command]).await?;
        Ok(sla_json(&after.unwrap_or(tenant)))
    };
    answer(outcome.await)
}

/// The work types with their rates, and the default hourly rate.
#[utoipa::path(
    get,
    path = "/api/v1/settings/work-types",
    tag = "settings",
    operation_id = "getWorkTypes",
    responses(
        (status = 200, description = "The work types and rates", body = WorkTypesJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn get_work_types(State(state): State<AppState>, me: Principal) -> Response {
    if let Err(refused) = me.require(Action::OwnAccount) {
        return refused.into_response();
    }
    answer(
        load_tenant(&state, me.tenant_id)
            .await
            .map(|t| work_json(&t)),
    )
}

/// Replace the work types and the default hourly rate (owners and admins). A company's own
/// rate wins over a work type's, which wins over the default.
#[utoipa::path(
    put,
    path = "/api/v1/settings/work-types",
    tag = "settings",
    operation_id = "setWorkTypes",
    params(IdempotencyKey),
    request_body(content = WorkTypesJson, content_type = "application/json"),
    responses(
        (status = 200, description = "The work types and rates after the change", body = WorkTypesJson),
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
pub async fn set_work_types(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    body: Result<ApiJson<WorkTypesJson>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ServiceSettings) {
        return refused.into_response();
    }
    let outcome = async {
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        let mut errors = Vec::new();
        let types: Vec<(String, Option<String>)> = body
            .work_types
            .iter()
            .map(|t| {
                let rate = text_of("work_types", t.hourly_rate.as_ref(), &mut errors);
                (t.name.clone(), rate)
            })
            .collect();
        let default_rate = text_of(
            "default_hourly_rate",
            body.default_hourly_rate.as_ref(),
            &mut errors,
        );
        let type_error = errors.clone();
        let checked = checked_work(&types, default_rate.as_deref())
            .map_err(|e| {
                // A rate of the wrong JSON type already said what is wrong with the field.
                errors.extend(e.into_iter().filter(|e| {
                    !(e.field == "default_hourly_rate"
                        && type_error.iter().any(|t| t.field == "default_hourly_rate"))
                }))
            })
            .ok();
        let Some((work_types, default_hourly_rate)) = checked.filter(|_| errors.is_empty()) else {
            return Err(ApiError::Invalid(in_order(
                errors,
                &["work_types", "default_hourly_rate"],
            )));
        };
        let command = TenantCommand::ChangeWorkSettings {
            work_types,
            default_hourly_rate,
        };
        let after = run_tenant(&state, &meta, vec![command]).await?;
        let tenant = match after {
            Some(tenant) => tenant,
            None => load_tenant(&state, me.tenant_id).await?,
        };
        Ok(work_json(&tenant))
    };
    answer(outcome.await)
}

/// Errors sorted by the order of their fields in the request.
fn in_order(mut errors: Vec<ValidationError>, fields: &[&str]) -> Vec<ValidationError> {
    errors.sort_by_key(|e| fields.iter().position(|f| *f == e.field));
    errors
}

/// Set or clear a person's hourly labour cost (owners and admins). It is what their time costs
/// the business, kept apart from what the time is charged.
#[utoipa::path(
    put,
    path = "/api/v1/users/{id}/labour-cost",
    tag = "team",
    operation_id = "setLabourCost",
    params(
        ("id" = Uuid, Path, description = "The person's id"),
        IdempotencyKey,
    ),
    request_body(content = LabourCostJson, content_type = "application/json"),
    responses(
        (status = 200, description = "The labour cost after the change", body = LabourCostJson),
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
pub async fn set_labour_cost(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<ApiJson<LabourCostJson>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ServiceSettings) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "person")?;
        let tenant = load_tenant(&state, me.tenant_id).await?;
        if !tenant.members.contains_key(&id) {
            return Err(ApiError::NotFound(format!("person {id} not found")));
        }
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        let mut errors = Vec::new();
        if body.hourly_cost.is_none() {
            errors.push(ValidationError::new(
                "hourly_cost",
                "is required (null clears it)",
            ));
        }
        let text = text_of("hourly_cost", body.hourly_cost.as_ref(), &mut errors);
        let hourly_cost = match text.as_deref().map(str::trim) {
            None => None,
            Some(text) => Amount::parse("hourly_cost", text)
                .map_err(|e| errors.push(e))
                .ok(),
        };
        if !errors.is_empty() {
            return Err(ApiError::Invalid(errors));
        }
        let command = TenantCommand::SetLabourCost {
            user_id: id,
            hourly_cost,
        };
        let after = run_tenant(&state, &meta, vec![command])
            .await?
            .unwrap_or(tenant);
        Ok(LabourCostJson {
            hourly_cost: Some(
                money_value(after.members.get(&id).and_then(|m| m.hourly_cost))
                    .unwrap_or(Value::Null),
            ),
        })
    };
    answer(outcome.await)
}

/// What a company's contract covers, and its own rates.
#[utoipa::path(
    get,
    path = "/api/v1/companies/{id}/coverage",
    tag = "companies",
    operation_id = "getCoverage",
    params(("id" = Uuid, Path, description = "The company's id")),
    responses(
        (status = 200, description = "The company's coverage", body = CoverageJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn get_coverage(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "company")?;
        let company = load_company(&state, &me, id).await?;
        Ok(coverage_json(&company.coverage))
    };
    answer(outcome.await)
}

/// Replace what a company's contract covers and its rates (owners, admins, accountants).
/// An archived company refuses it (409).
#[utoipa::path(
    put,
    path = "/api/v1/companies/{id}/coverage",
    tag = "companies",
    operation_id = "setCoverage",
    params(
        ("id" = Uuid, Path, description = "The company's id"),
        IdempotencyKey,
    ),
    request_body(content = CoverageJson, content_type = "application/json"),
    responses(
        (status = 200, description = "The coverage after the change", body = CoverageJson),
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
pub async fn set_coverage(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<ApiJson<CoverageJson>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::SetCompanyRate) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "company")?;
        // Another tenant's company is 404 whatever the body holds.
        load_company(&state, &me, id).await?;
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        let mut errors = Vec::new();
        let included_hours = match &body.included_hours {
            Some(Value::Number(n)) => Some(n.to_string()),
            other => text_of("included_hours", other.as_ref(), &mut errors),
        };
        let hourly_rate = text_of("hourly_rate", body.hourly_rate.as_ref(), &mut errors);
        let after_hours_rate = text_of(
            "after_hours_rate",
            body.after_hours_rate.as_ref(),
            &mut errors,
        );
        let input = CoverageInput {
            covered_work_types: body.covered_work_types,
            included_hours: included_hours.unwrap_or_default(),
            covers_after_hours: body.covers_after_hours,
            hourly_rate: hourly_rate.unwrap_or_default(),
            after_hours_rate: after_hours_rate.unwrap_or_default(),
            errors,
        };
        let coverage = change_coverage(&state, &me, &meta, id, input)
            .await
            .map_err(|e| match e {
                ApiError::Invalid(errors) => ApiError::Invalid(in_order(
                    errors,
                    &[
                        "covered_work_types",
                        "included_hours",
                        "covers_after_hours",
                        "hourly_rate",
                        "after_hours_rate",
                    ],
                )),
                other => other,
            })?;
        Ok(coverage_json(&coverage))
    };
    answer(outcome.await)
}

// ---------------------------------------------------------------------------------------------
// Console: the service desk page

/// One opening interval of a day in the form.
struct Slot {
    from: String,
    to: String,
}

/// One weekday of the business-hours form.
struct DayRow {
    key: &'static str,
    label: &'static str,
    open: bool,
    slots: Vec<Slot>,
    error: Option<String>,
}

impl DayRow {
    /// The day as people read it: `09:00–12:00, 13:00–17:00` or `Closed`.
    fn summary(&self) -> String {
        let open: Vec<String> = self
            .slots
            .iter()
            .filter(|s| !s.from.is_empty() || !s.to.is_empty())
            .map(|s| format!("{}–{}", s.from, s.to))
            .collect();
        if !self.open || open.is_empty() {
            "Closed".into()
        } else {
            open.join(", ")
        }
    }
}

const DAY_LABELS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

struct HoursForm {
    days: Vec<DayRow>,
    time_zone: String,
    /// One date per line.
    holidays: String,
    time_zone_error: Option<String>,
    week_error: Option<String>,
    holidays_error: Option<String>,
}

impl HoursForm {
    fn of(input: &BusinessHoursInput) -> Self {
        let days = DAY_KEYS
            .iter()
            .zip(DAY_LABELS)
            .map(|(key, label)| {
                let intervals = input.week.get(*key).cloned().unwrap_or_default();
                let mut slots: Vec<Slot> = intervals
                    .iter()
                    .map(|[from, to]| Slot {
                        from: from.clone(),
                        to: to.clone(),
                    })
                    .collect();
                while slots.len() < 2 {
                    slots.push(Slot {
                        from: String::new(),
                        to: String::new(),
                    });
                }
                DayRow {
                    key,
                    label,
                    open: !intervals.is_empty(),
                    slots,
                    error: None,
                }
            })
            .collect();
        Self {
            days,
            time_zone: input.time_zone.clone(),
            holidays: input.holidays.join("\n"),
            time_zone_error: None,
            week_error: None,
            holidays_error: None,
        }
    }
}

/// One priority of the SLA form.
struct SlaRow {
    key: &'static str,
    label: &'static str,
    response: String,
    resolution: String,
    error: Option<String>,
}

impl SlaRow {
    fn summary(&self) -> String {
        if self.response.is_empty() && self.resolution.is_empty() {
            "No SLA".into()
        } else {
            format!(
                "response {} min, resolution {} min",
                self.response, self.resolution
            )
        }
    }
}

struct SlaForm {
    rows: Vec<SlaRow>,
    /// The chosen person's id, or empty.
    escalate_to: String,
    escalate_error: Option<String>,
}

fn priority_label(priority: Priority) -> &'static str {
    match priority {
        Priority::Urgent => "Urgent",
        Priority::High => "High",
        Priority::Normal => "Normal",
        Priority::Low => "Low",
    }
}

/// The priorities, most urgent first.
fn priorities() -> impl Iterator<Item = Priority> {
    Priority::ALL.into_iter().rev()
}

impl SlaForm {
    fn of(tenant: &Tenant) -> Self {
        Self {
            rows: priorities()
                .map(|p| {
                    let policy = tenant.sla_policy(p);
                    SlaRow {
                        key: p.as_str(),
                        label: priority_label(p),
                        response: policy
                            .map(|p| p.response_minutes.to_string())
                            .unwrap_or_default(),
                        resolution: policy
                            .map(|p| p.resolution_minutes.to_string())
                            .unwrap_or_default(),
                        error: None,
                    }
                })
                .collect(),
            escalate_to: tenant
                .sla_escalate_to
                .map(|id| id.to_string())
                .unwrap_or_default(),
            escalate_error: None,
        }
    }
}

struct WorkForm {
    /// `name` or `name = rate`, one per line.
    work_types: String,
    default_hourly_rate: String,
    work_types_error: Option<String>,
    rate_error: Option<String>,
}

impl WorkForm {
    fn of(tenant: &Tenant) -> Self {
        Self {
            work_types: tenant
                .work_types()
                .iter()
                .map(|t| match t.hourly_rate {
                    Some(rate) => format!("{} = {rate}", t.name),
                    None => t.name.clone(),
                })
                .collect::<Vec<_>>()
                .join("\n"),
            default_hourly_rate: tenant
                .default_hourly_rate
                .map(|r| r.to_string())
                .unwrap_or_default(),
            work_types_error: None,
            rate_error: None,
        }
    }
}

/// A staff member: an option of the escalation select and a row of the labour costs.
struct StaffRow {
    id: Uuid,
    name: String,
    role: String,
    /// The cost as typed (or stored).
    cost: String,
    error: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "service_settings.html")]
struct ServiceDeskPage {
    flash: Option<String>,
    csrf: String,
    can_change: bool,
    currency: String,
    hours: HoursForm,
    sla: SlaForm,
    work: WorkForm,
    staff: Vec<StaffRow>,
    /// The escalation person's name (read-only view).
    escalate_name: String,
    time_zones: Vec<&'static str>,
    /// A message above the labour costs (a refusal of the whole form).
    costs_error: Option<String>,
}

/// The page with every form filled from the tenant; the caller swaps in the form it handles.
async fn base_page(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
) -> Result<(ServiceDeskPage, Tenant), String> {
    let tenant = load_tenant(state, me.tenant_id)
        .await
        .map_err(|e| e.to_string())?;
    let rows = users::list(&state.pool, me.tenant_id)
        .await
        .map_err(|e| e.to_string())?;
    let staff: Vec<StaffRow> = rows
        .iter()
        .filter(|u| is_active_staff(u, &tenant))
        .map(|u| StaffRow {
            id: u.id,
            name: u.name.clone(),
            role: u.role.clone(),
            cost: tenant
                .members
                .get(&u.id)
                .and_then(|m| m.hourly_cost)
                .map(|c| c.to_string())
                .unwrap_or_default(),
            error: None,
        })
        .collect();
    let escalate_name = tenant
        .sla_escalate_to
        .map(|id| {
            rows.iter()
                .find(|u| u.id == id)
                .map_or_else(|| id.to_string(), |u| u.name.clone())
        })
        .unwrap_or_default();
    let page = ServiceDeskPage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        can_change: me.may(Action::ServiceSettings),
        currency: tenant.currency.map(|c| c.to_string()).unwrap_or_default(),
        hours: HoursForm::of(&tenant.business_hours().to_input()),
        sla: SlaForm::of(&tenant),
        work: WorkForm::of(&tenant),
        staff,
        escalate_name,
        time_zones: TimeZone::names().collect(),
        costs_error: None,
    };
    Ok((page, tenant))
}

/// An enabled staff member of the tenant (the aggregate decides; the read model names them).
fn is_active_staff(user: &UserRow, tenant: &Tenant) -> bool {
    user.member && tenant.active_role(user.id).is_some_and(Role::is_staff)
}

async fn service_desk_page(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
) -> Response {
    if let Err(refused) = me.require(Action::OwnAccount) {
        return refused.into_response();
    }
    match base_page(&state, &me, &cookies).await {
        Ok((page, _)) => page.into_response(),
        Err(error) => internal_page(error),
    }
}

/// The fields of a form sent as name/value pairs.
type Pairs = Vec<(String, String)>;

fn value<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// The CSRF check and the role check of a service-desk form (`Some`: the answer instead).
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

/// The answer after a form's commands ran.
fn saved(outcome: Result<Option<Tenant>, ApiError>, what: &str) -> Response {
    match outcome {
        Ok(None) => redirect_with_flash(PAGE, "Nothing changed."),
        Ok(Some(_)) => redirect_with_flash(PAGE, &format!("{what} saved.")),
        Err(error) => internal_page(error),
    }
}

/// The form's business hours as typed, and the input to check (with the form's own problems).
fn hours_from_form(pairs: &[(String, String)]) -> (HoursForm, BusinessHoursInput) {
    let mut week = BTreeMap::new();
    let mut days = Vec::new();
    for (key, label) in DAY_KEYS.iter().zip(DAY_LABELS) {
        let open = !value(pairs, &format!("{key}_open")).is_empty();
        let mut slots = Vec::new();
        for i in 0..MAX_SLOTS {
            let from = value(pairs, &format!("{key}_from_{i}")).trim().to_owned();
            let to = value(pairs, &format!("{key}_to_{i}")).trim().to_owned();
            if i < 2 || !from.is_empty() || !to.is_empty() {
                slots.push(Slot { from, to });
            }
        }
        let given: Vec<[String; 2]> = slots
            .iter()
            .filter(|s| !s.from.is_empty() || !s.to.is_empty())
            .map(|s| [s.from.clone(), s.to.clone()])
            .collect();
        let mut error = None;
        if open {
            if given.is_empty() {
                error = Some("Give the opening hours, or untick Open.".to_owned());
            } else {
                week.insert((*key).to_owned(), given);
            }
        }
        days.push(DayRow {
            key,
            label,
            open,
            slots,
            error,
        });
    }
    let holidays: Vec<String> = value(pairs, "holidays")
        .split(['\n', ','])
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .collect();
    let form = HoursForm {
        days,
        time_zone: value(pairs, "time_zone").trim().to_owned(),
        holidays: value(pairs, "holidays").to_owned(),
        time_zone_error: None,
        week_error: None,
        holidays_error: None,
    };
    let input = BusinessHoursInput {
        time_zone: form.time_zone.clone(),
        week,
        holidays,
    };
    (form, input)
}

async fn save_hours(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::ServiceSettings) {
        return refused;
    }
    let (mut form, input) = hours_from_form(&pairs);
    let checked = BusinessHours::parse(&input);
    let form_problem = form.days.iter().any(|d| d.error.is_some());
    match checked {
        Ok(hours) if !form_problem => {
            let command = TenantCommand::SetBusinessHours { hours };
            saved(
                run_tenant(&state, &me.meta(), vec![command]).await,
                "Business hours",
            )
        }
        outcome => {
            for error in outcome.err().unwrap_or_default() {
                match error.field {
                    "time_zone" => {
                        form.time_zone_error = Some(format!("The time zone {}", error.message))
                    }
                    "holidays" => join(&mut form.holidays_error, &error.message),
                    _ => {
                        let day = form
                            .days
                            .iter_mut()
                            .find(|d| error.message.starts_with(&format!("{}:", d.key)));
                        match day {
                            Some(day) => {
                                let message = error.message[day.key.len() + 1..].trim();
                                join(&mut day.error, message);
                            }
                            None => join(&mut form.week_error, &error.message),
                        }
                    }
                }
            }
            let (mut page, _) = match base_page(&state, &me, &cookies).await {
                Ok(page) => page,
                Err(error) => return internal_page(error),
            };
            page.hours = form;
            (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
        }
    }
}

/// Adds `message` to a field's messages.
fn join(messages: &mut Option<String>, message: &str) {
    let message = upper_first(message);
    *messages = Some(match messages.take() {
        Some(before) => format!("{before} {message}"),
        None => message,
    });
    if let Some(m) = messages.as_mut() {
        if !m.ends_with('.') {
            m.push('.');
        }
    }
}

fn upper_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

async fn save_sla(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::ServiceSettings) {
        return refused;
    }
    let (mut page, tenant) = match base_page(&state, &me, &cookies).await {
        Ok(page) => page,
        Err(error) => return internal_page(error),
    };
    let mut rows = Vec::new();
    let mut inputs = Vec::new();
    for priority in priorities() {
        let key = priority.as_str();
        let response = value(&pairs, &format!("{key}_response")).trim().to_owned();
        let resolution = value(&pairs, &format!("{key}_resolution"))
            .trim()
            .to_owned();
        let mut error = None;
        if !(response.is_empty() && resolution.is_empty()) {
            match (response.parse::<i64>(), resolution.parse::<i64>()) {
                (Ok(response_minutes), Ok(resolution_minutes)) => {
                    let input = SlaPolicyInput {
                        priority: key.to_owned(),
                        response_minutes,
                        resolution_minutes,
                    };
                    // Checked alone, so each message lands on its own row.
                    if let Err(errors) = parse_sla_policies(std::slice::from_ref(&input)) {
                        for e in errors {
                            let message = e
                                .message
                                .split_once("): ")
                                .map_or(e.message.as_str(), |(_, rest)| rest)
                                .replace("response_minutes", "the response target")
                                .replace("resolution_minutes", "the resolution target");
                            join(&mut error, &message);
                        }
                    }
                    inputs.push(input);
                }
                _ if response.is_empty() || resolution.is_empty() => {
                    error = Some(
                        "Give both targets in minutes, or leave both empty for no SLA.".into(),
                    );
                }
                _ => error = Some("The targets are whole numbers of minutes.".into()),
            }
        }
        rows.push(SlaRow {
            key,
            label: priority_label(priority),
            response,
            resolution,
            error,
        });
    }
    let escalate_to = value(&pairs, "escalate_to").trim().to_owned();
    let checked = checked_sla(&tenant, &inputs, Some(&escalate_to));
    let row_problem = rows.iter().any(|r| r.error.is_some());
    match checked {
        Ok((policies, escalate_to)) if !row_problem => {
            let command = TenantCommand::SetSlaPolicies {
                policies,
                escalate_to,
            };
            saved(
                run_tenant(&state, &me.meta(), vec![command]).await,
                "SLA policies",
            )
        }
        outcome => {
            let mut escalate_error = None;
            for e in outcome.err().unwrap_or_default() {
                if e.field == "escalate_to" {
                    join(&mut escalate_error, &format!("The person {}", e.message));
                }
            }
            page.sla = SlaForm {
                rows,
                escalate_to,
                escalate_error,
            };
            (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
        }
    }
}

async fn save_work(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::ServiceSettings) {
        return refused;
    }
    let text = value(&pairs, "work_types");
    let types: Vec<(String, Option<String>)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| match line.split_once('=') {
            Some((name, rate)) => (name.trim().to_owned(), Some(rate.trim().to_owned())),
            None => (line.to_owned(), None),
        })
        .collect();
    let default_rate = value(&pairs, "default_hourly_rate");
    match checked_work(&types, Some(default_rate)) {
        Ok((work_types, default_hourly_rate)) => {
            let command = TenantCommand::ChangeWorkSettings {
                work_types,
                default_hourly_rate,
            };
            saved(
                run_tenant(&state, &me.meta(), vec![command]).await,
                "Work types and rates",
            )
        }
        Err(errors) => {
            let mut form = WorkForm {
                work_types: text.to_owned(),
                default_hourly_rate: default_rate.to_owned(),
                work_types_error: None,
                rate_error: None,
            };
            for e in errors {
                match e.field {
                    "default_hourly_rate" => join(
                        &mut form.rate_error,
                        &format!("The default rate {}", e.message),
                    ),
                    _ => join(&mut form.work_types_error, &e.message),
                }
            }
            let (mut page, _) = match base_page(&state, &me, &cookies).await {
                Ok(page) => page,
                Err(error) => return internal_page(error),
            };
            page.work = form;
            (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
        }
    }
}

async fn save_costs(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::ServiceSettings) {
        return refused;
    }
    let (mut page, tenant) = match base_page(&state, &me, &cookies).await {
        Ok(page) => page,
        Err(error) => return internal_page(error),
    };
    let mut commands = Vec::new();
    let mut problem = false;
    for row in &mut page.staff {
        let Some((_, typed)) = pairs.iter().find(|(k, _)| *k == format!("cost_{}", row.id)) else {
            continue;
        };
        row.cost = typed.trim().to_owned();
        let hourly_cost = match row.cost.as_str() {
            "" => None,
            text => match Amount::parse("hourly_cost", text) {
                Ok(cost) => Some(cost),
                Err(e) => {
                    row.error = Some(upper_first(&format!("the cost {}", e.message)));
                    problem = true;
                    continue;
                }
            },
        };
        let current = tenant.members.get(&row.id).and_then(|m| m.hourly_cost);
        if hourly_cost != current {
            commands.push(TenantCommand::SetLabourCost {
                user_id: row.id,
                hourly_cost,
            });
        }
    }
    if problem {
        return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
    }
    saved(
        run_tenant(&state, &me.meta(), commands).await,
        "Labour costs",
    )
}

// ---------------------------------------------------------------------------------------------
// Console: a company's coverage

/// A work type the coverage may include.
struct TypeOption {
    name: String,
    checked: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "company_coverage.html")]
struct CoveragePage {
    flash: Option<String>,
    csrf: String,
    tabs: CompanyTabs,
    can_change: bool,
    currency: String,
    types: Vec<TypeOption>,
    included_hours: String,
    covers_after_hours: bool,
    hourly_rate: String,
    after_hours_rate: String,
    /// A refusal of the whole form (an archived company).
    form_error: Option<String>,
    types_error: Option<String>,
    hours_error: Option<String>,
    rate_error: Option<String>,
    after_rate_error: Option<String>,
}

impl CoveragePage {
    /// The covered types as a sentence (read-only view).
    fn covered(&self) -> String {
        let names: Vec<&str> = self
            .types
            .iter()
            .filter(|t| t.checked)
            .map(|t| t.name.as_str())
            .collect();
        if names.is_empty() {
            "Nothing: all work is billable".into()
        } else {
            names.join(", ")
        }
    }
}

/// The coverage page filled from the company's coverage.
async fn coverage_view(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    tabs: CompanyTabs,
) -> Result<CoveragePage, ApiError> {
    let company = load_company(state, me, tabs.id).await?;
    let tenant = load_tenant(state, me.tenant_id).await?;
    let coverage = &company.coverage;
    let mut names = tenant.work_type_names();
    // A covered type the tenant no longer has stays visible (and can be unticked).
    for covered in &coverage.covered_work_types {
        if !names.contains(covered) {
            names.push(covered.clone());
        }
    }
    Ok(CoveragePage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        can_change: me.may(Action::SetCompanyRate),
        currency: tenant.currency.map(|c| c.to_string()).unwrap_or_default(),
        types: names
            .into_iter()
            .map(|name| TypeOption {
                checked: coverage.covers(&name),
                name,
            })
            .collect(),
        included_hours: coverage.included_hours(),
        covers_after_hours: coverage.covers_after_hours,
        hourly_rate: coverage
            .hourly_rate
            .map(|r| r.to_string())
            .unwrap_or_default(),
        after_hours_rate: coverage
            .after_hours_rate
            .map(|r| r.to_string())
            .unwrap_or_default(),
        form_error: None,
        types_error: None,
        hours_error: None,
        rate_error: None,
        after_rate_error: None,
        tabs,
    })
}

async fn coverage_page(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    let (_, tabs) = match company_for_tab(&state, &me, path, CompanyTab::Billing).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    match coverage_view(&state, &me, &cookies, tabs).await {
        Ok(page) => page.into_response(),
        Err(ApiError::NotFound(_)) => not_found_page(),
        Err(error) => internal_page(error),
    }
}

async fn save_coverage(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs, Action::SetCompanyRate) {
        return refused;
    }
    let (_, tabs) = match company_for_tab(&state, &me, path, CompanyTab::Billing).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let id = tabs.id;
    let covered: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "covered")
        .map(|(_, v)| v.clone())
        .collect();
    let input = CoverageInput {
        covered_work_types: covered.clone(),
        included_hours: value(&pairs, "included_hours").to_owned(),
        covers_after_hours: !value(&pairs, "covers_after_hours").is_empty(),
        hourly_rate: value(&pairs, "hourly_rate").to_owned(),
        after_hours_rate: value(&pairs, "after_hours_rate").to_owned(),
        errors: Vec::new(),
    };
    let outcome = change_coverage(&state, &me, &me.meta(), id, input).await;
    let (status, errors, form_error) = match outcome {
        Ok(_) => {
            return redirect_with_flash(&format!("/companies/{id}/coverage"), "Coverage saved.")
        }
        Err(ApiError::Invalid(errors)) => (StatusCode::UNPROCESSABLE_ENTITY, errors, None),
        Err(ApiError::Conflict(message)) => (StatusCode::CONFLICT, Vec::new(), Some(message)),
        Err(ApiError::NotFound(_)) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let mut page = match coverage_view(&state, &me, &cookies, tabs).await {
        Ok(page) => page,
        Err(error) => return internal_page(error),
    };
    for option in &mut page.types {
        option.checked = covered
            .iter()
            .any(|c| c.trim().eq_ignore_ascii_case(&option.name));
    }
    page.included_hours = value(&pairs, "included_hours").to_owned();
    page.covers_after_hours = !value(&pairs, "covers_after_hours").is_empty();
    page.hourly_rate = value(&pairs, "hourly_rate").to_owned();
    page.after_hours_rate = value(&pairs, "after_hours_rate").to_owned();
    page.form_error = form_error.map(|m| upper_first(&m));
    for e in errors {
        let (slot, label) = match e.field {
            "covered_work_types" => (&mut page.types_error, ""),
            "included_hours" => (&mut page.hours_error, "The included hours "),
            "hourly_rate" => (&mut page.rate_error, "The hourly rate "),
            _ => (&mut page.after_rate_error, "The after-hours rate "),
        };
        join(slot, &format!("{label}{}", e.message));
    }
    (status, page).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Pairs {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_hours_form_becomes_the_api_shape() {
        let (form, input) = hours_from_form(&pairs(&[
            ("time_zone", "Europe/Paris"),
            ("mon_open", "on"),
            ("mon_from_0", "09:00"),
            ("mon_to_0", "12:00"),
            ("mon_from_1", "13:00"),
            ("mon_to_1", "17:00"),
            ("tue_from_0", "09:00"),
            ("tue_to_0", "17:00"),
            ("wed_open", "on"),
            ("holidays", "2026-12-25\n\n 2026-12-26 "),
        ]));
        assert_eq!(input.week.len(), 1, "an unticked day is closed: {input:?}");
        assert_eq!(input.week["mon"].len(), 2);
        assert_eq!(input.holidays, ["2026-12-25", "2026-12-26"]);
        assert!(form.days[2].error.is_some(), "open without hours");
        assert!(BusinessHours::parse(&input).is_ok());
    }

    #[test]
    fn work_types_are_checked_all_at_once() {
        let types = vec![
            ("Repair".to_owned(), Some("95".to_owned())),
            ("repair".to_owned(), None),
            ("bad/name".to_owned(), None),
            ("install".to_owned(), Some("-1".to_owned())),
        ];
        let errors = checked_work(&types, Some("x")).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        let (types, rate) = checked_work(
            &[
                ("Repair".into(), Some("95".into())),
                ("install".into(), None),
            ],
            Some("100"),
        )
        .unwrap();
        assert_eq!(types[0].name, "repair");
        assert_eq!(types[0].hourly_rate.unwrap().to_string(), "95.00");
        assert_eq!(rate.to_string(), "100.00");
    }
}
