//! The service catalogue (resold services with a tier, a price and a billing period) and
//! companies' subscriptions to it, billed with their contracts by the billing run.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, put};
use axum::Router;
use chrono::NaiveDate;
use commands::{ConflictPolicy, EventMeta};
use domain::authz::Action;
use domain::billing::{CatalogueService, ServicePeriod, Subscription};
use domain::company::{Company, CompanyCommand};
use domain::tenant::{Tenant, TenantCommand};
use domain::ValidationError;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::ops::{date, decimal};
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
        .route("/api/v1/services", get(list_services).post(create_service))
        .route("/api/v1/services/{id}", put(update_service))
        .route(
            "/api/v1/companies/{id}/subscriptions",
            get(list_subscriptions).post(create_subscription),
        )
        .route(
            "/api/v1/companies/{id}/subscriptions/{subscription_id}",
            put(update_subscription),
        )
}

fn respond<T: Serialize>(status: StatusCode, outcome: Result<T, ApiError>) -> Response {
    match outcome {
        Ok(json) => (status, Json(json)).into_response(),
        Err(error) => error.into_response(),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceBody {
    #[schema(example = "Cloud backup")]
    pub name: Option<String>,
    /// premium, standard, free…
    #[schema(example = "premium")]
    pub tier: Option<String>,
    #[schema(example = "29.00")]
    pub price: Option<String>,
    /// monthly, quarterly or yearly.
    #[schema(example = "monthly")]
    pub period: Option<String>,
    /// No longer offered for new subscriptions (existing ones go on).
    pub retired: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceJson {
    pub id: Uuid,
    pub name: String,
    pub tier: String,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "29.00")]
    pub price: Decimal,
    pub period: String,
    pub retired: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceList {
    pub services: Vec<ServiceJson>,
}

fn service_json(id: Uuid, s: &CatalogueService) -> ServiceJson {
    ServiceJson {
        id,
        name: s.name.clone(),
        tier: s.tier.clone(),
        price: domain::billing::cents(s.price),
        period: s.period.as_str().into(),
        retired: s.retired,
    }
}

/// A service as typed (the API's body, or the console's form), or the messages.
pub(crate) fn parse_service(body: ServiceBody) -> Result<CatalogueService, ApiError> {
    let mut errors = Vec::new();
    let price = match body.price.as_deref() {
        Some(p) => decimal("price", p).map_err(|e| errors.push(e)).ok(),
        None => {
            errors.push(ValidationError::new("price", "is required"));
            None
        }
    };
    let period = match body.period.as_deref() {
        Some(p) => ServicePeriod::parse(p).or_else(|| {
            errors.push(ValidationError::new(
                "period",
                "must be monthly, quarterly or yearly",
            ));
            None
        }),
        None => Some(ServicePeriod::Monthly),
    };
    let service = CatalogueService {
        name: body.name.unwrap_or_default().trim().to_owned(),
        tier: body.tier.unwrap_or_default().trim().to_owned(),
        price: price.unwrap_or_default(),
        period: period.unwrap_or(ServicePeriod::Monthly),
        retired: body.retired.unwrap_or(false),
    };
    if let Err(more) = service.check() {
        errors.extend(
            more.into_iter()
                .filter(|e| e.field != "price" || price.is_some()),
        );
    }
    if errors.is_empty() {
        Ok(service)
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// The catalogue: every service, retired ones too.
#[utoipa::path(
    get,
    path = "/api/v1/services",
    tag = "billing",
    operation_id = "listServices",
    responses(
        (status = 200, description = "The catalogue", body = ServiceList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn list_services(State(state): State<AppState>, me: Principal) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let tenant = crate::notify::ops::load_tenant(&state, me.tenant_id).await?;
        let mut services: Vec<ServiceJson> = tenant
            .services
            .iter()
            .map(|(id, s)| service_json(*id, s))
            .collect();
        services.sort_by_key(|s| (s.name.to_lowercase(), s.id));
        Ok(ServiceList { services })
    };
    respond(StatusCode::OK, outcome.await)
}

async fn define(
    state: &AppState,
    me: &Principal,
    headers: &HeaderMap,
    service_id: Option<Uuid>,
    body: ServiceBody,
) -> Result<ServiceJson, ApiError> {
    let service = parse_service(body)?;
    let meta = command_meta(me, headers)?;
    define_service(state, me, &meta, service_id, service).await
}

/// Adds (`None`) or changes a checked service (`parse_service`); 404 for an unknown id.
pub(crate) async fn define_service(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    service_id: Option<Uuid>,
    service: CatalogueService,
) -> Result<ServiceJson, ApiError> {
    let id = match service_id {
        Some(id) => {
            let tenant = crate::notify::ops::load_tenant(state, me.tenant_id).await?;
            if !tenant.services.contains_key(&id) {
                return Err(ApiError::NotFound(format!("service {id} not found")));
            }
            id
        }
        None => meta.new_aggregate_id(),
    };
    state
        .store
        .execute::<Tenant>(
            &me.tenant_id.to_string(),
            TenantCommand::SetService {
                service_id: id,
                service: service.clone(),
            },
            &(),
            meta,
            ConflictPolicy::RetryOnce,
        )
        .await?;
    Ok(service_json(id, &service))
}

/// Add a service to the catalogue.
#[utoipa::path(
    post,
    path = "/api/v1/services",
    tag = "billing",
    operation_id = "createService",
    params(IdempotencyKey),
    request_body(content = ServiceBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The service", body = ServiceJson),
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
pub async fn create_service(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    body: Result<ApiJson<ServiceBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let ApiJson(body) = body?;
        define(&state, &me, &headers, None, body).await
    };
    respond(StatusCode::CREATED, outcome.await)
}

/// Change a service (all fields); `retired: true` stops offering it.
#[utoipa::path(
    put,
    path = "/api/v1/services/{id}",
    tag = "billing",
    operation_id = "updateService",
    params(("id" = Uuid, Path, description = "The service's id"), IdempotencyKey),
    request_body(content = ServiceBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The service", body = ServiceJson),
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
pub async fn update_service(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<ApiJson<ServiceBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "service")?;
        let ApiJson(body) = body?;
        define(&state, &me, &headers, Some(id), body).await
    };
    respond(StatusCode::OK, outcome.await)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionBody {
    pub service_id: Option<Uuid>,
    /// Default 1.
    #[schema(example = "5")]
    pub quantity: Option<String>,
    #[schema(example = "2026-11-01")]
    pub start_date: Option<String>,
    /// Ends the subscription after this day.
    pub end_date: Option<String>,
    /// This company's price instead of the catalogue's.
    pub price: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionJson {
    pub id: Uuid,
    pub service_id: Uuid,
    pub service_name: String,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "5")]
    pub quantity: Decimal,
    pub start_date: NaiveDate,
    pub end_date: Option<NaiveDate>,
    /// The price billed (the company's own, or the catalogue's).
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "29.00")]
    pub price: Decimal,
    pub period: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionList {
    pub subscriptions: Vec<SubscriptionJson>,
}

fn subscription_json(tenant: &Tenant, id: Uuid, s: &Subscription) -> SubscriptionJson {
    let service = tenant.services.get(&s.service_id);
    SubscriptionJson {
        id,
        service_id: s.service_id,
        service_name: service.map(|x| x.name.clone()).unwrap_or_default(),
        quantity: s.quantity.normalize(),
        start_date: s.start_date,
        end_date: s.end_date,
        price: domain::billing::cents(s.price.or(service.map(|x| x.price)).unwrap_or_default()),
        period: service
            .map(|x| x.period.as_str().to_owned())
            .unwrap_or_default(),
    }
}

async fn company_of(state: &AppState, me: &Principal, id: Uuid) -> Result<Company, ApiError> {
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

/// A company's subscriptions to catalogue services.
#[utoipa::path(
    get,
    path = "/api/v1/companies/{id}/subscriptions",
    tag = "billing",
    operation_id = "listSubscriptions",
    params(("id" = Uuid, Path, description = "The company's id")),
    responses(
        (status = 200, description = "The subscriptions", body = SubscriptionList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn list_subscriptions(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "company")?;
        let company = company_of(&state, &me, id).await?;
        let tenant = crate::notify::ops::load_tenant(&state, me.tenant_id).await?;
        Ok(SubscriptionList {
            subscriptions: company
                .subscriptions
                .iter()
                .map(|(sid, s)| subscription_json(&tenant, *sid, s))
                .collect(),
        })
    };
    respond(StatusCode::OK, outcome.await)
}

async fn subscribe(
    state: &AppState,
    me: &Principal,
    headers: &HeaderMap,
    company_id: Uuid,
    subscription_id: Option<Uuid>,
    body: SubscriptionBody,
) -> Result<SubscriptionJson, ApiError> {
    subscribe_with(
        state,
        me,
        || command_meta(me, headers),
        company_id,
        subscription_id,
        body,
    )
    .await
}

/// Subscribes a company (`None`) or changes one of its subscriptions, with the checks of the
/// API; `meta` gives the command's metadata once the input is valid.
pub(crate) async fn subscribe_with(
    state: &AppState,
    me: &Principal,
    meta: impl FnOnce() -> Result<EventMeta, ApiError>,
    company_id: Uuid,
    subscription_id: Option<Uuid>,
    body: SubscriptionBody,
) -> Result<SubscriptionJson, ApiError> {
    let company = company_of(state, me, company_id).await?;
    let tenant = crate::notify::ops::load_tenant(state, me.tenant_id).await?;
    let mut errors = Vec::new();
    match body.service_id {
        None => errors.push(ValidationError::new("service_id", "is required")),
        Some(id) => match tenant.services.get(&id) {
            None => errors.push(ValidationError::new(
                "service_id",
                "is not in the catalogue",
            )),
            Some(s) if s.retired && subscription_id.is_none() => errors.push(ValidationError::new(
                "service_id",
                "is retired: it is no longer offered",
            )),
            Some(_) => {}
        },
    }
    let quantity = match body.quantity.as_deref() {
        Some(q) => decimal("quantity", q).map_err(|e| errors.push(e)).ok(),
        None => Some(Decimal::ONE),
    };
    let start = match body.start_date.as_deref() {
        Some(d) => date("start_date", d).map_err(|e| errors.push(e)).ok(),
        None => {
            errors.push(ValidationError::new("start_date", "is required"));
            None
        }
    };
    let end = match body.end_date.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => date("end_date", d).map_err(|e| errors.push(e)).ok(),
        None => None,
    };
    let price = match body.price.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => decimal("price", p).map_err(|e| errors.push(e)).ok(),
        None => None,
    };
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let subscription = Subscription {
        service_id: body.service_id.expect("checked"),
        quantity: quantity.expect("checked"),
        start_date: start.expect("checked"),
        end_date: end,
        price,
    };
    subscription.check().map_err(ApiError::Invalid)?;
    let meta = meta()?;
    let id = match subscription_id {
        Some(id) if company.subscriptions.contains_key(&id) => id,
        Some(id) => return Err(ApiError::NotFound(format!("subscription {id} not found"))),
        None => meta.new_aggregate_id(),
    };
    state
        .store
        .execute::<Company>(
            &company_id.to_string(),
            CompanyCommand::SetSubscription {
                subscription_id: id,
                subscription: subscription.clone(),
            },
            &(),
            &meta,
            ConflictPolicy::RetryOnce,
        )
        .await?;
    Ok(subscription_json(&tenant, id, &subscription))
}

/// Subscribe a company to a catalogue service: billed with its contract on each billing date
/// it is active (quarterly and yearly services every 3rd or 12th billing date from the first).
#[utoipa::path(
    post,
    path = "/api/v1/companies/{id}/subscriptions",
    tag = "billing",
    operation_id = "createSubscription",
    params(("id" = Uuid, Path, description = "The company's id"), IdempotencyKey),
    request_body(content = SubscriptionBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The subscription", body = SubscriptionJson),
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
pub async fn create_subscription(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<ApiJson<SubscriptionBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let company_id = path_id(path, "company")?;
        let ApiJson(body) = body?;
        subscribe(&state, &me, &headers, company_id, None, body).await
    };
    respond(StatusCode::CREATED, outcome.await)
}

/// Change a subscription (all fields); an end date ends it.
#[utoipa::path(
    put,
    path = "/api/v1/companies/{id}/subscriptions/{subscription_id}",
    tag = "billing",
    operation_id = "updateSubscription",
    params(
        ("id" = Uuid, Path, description = "The company's id"),
        ("subscription_id" = Uuid, Path, description = "The subscription's id"),
        IdempotencyKey,
    ),
    request_body(content = SubscriptionBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The subscription", body = SubscriptionJson),
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
pub async fn update_subscription(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<ApiJson<SubscriptionBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageBilling) {
        return refused.into_response();
    }
    let outcome = async {
        let (company, subscription) = crate::console::two_ids(path)
            .ok_or_else(|| ApiError::NotFound("subscription not found".into()))?;
        let ApiJson(body) = body?;
        subscribe(&state, &me, &headers, company, Some(subscription), body).await
    };
    respond(StatusCode::OK, outcome.await)
}
