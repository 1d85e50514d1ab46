//! Assets, a customer's equipment (issue 4): the API. Seeing them follows `ViewCompanies`;
//! registering and changing them needs `EditAssets`. The console pages are in `asset_pages`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use commands::{ConflictPolicy, EventMeta, Executed};
use domain::asset::{format_tag, Asset, AssetCommand, AssetDetails, AssetInput, AssetStatus};
use domain::authz::Action;
use domain::tenant::Tenant;
use domain::ValidationError;
use projections::assets::{self, AssetQuery, AssetRow};
use projections::companies;
use projections::contacts;
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

/// The projections an asset page or answer reads.
pub const ASSET_VIEWS: &[&str] = &["assets", "search"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/assets", get(list_assets).post(create_asset))
        .route("/api/v1/assets/{id}", get(get_asset).patch(update_asset))
        .layer(axum::extract::DefaultBodyLimit::max(crate::api::BODY_LIMIT))
}

/// An asset as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Asset)]
pub struct AssetJson {
    id: Uuid,
    company_id: Uuid,
    /// Numbered per tenant without gaps: the tenant's prefix and the number.
    #[schema(example = "ACME-00042")]
    tag: String,
    number: i64,
    name: String,
    /// `computer`, `laptop`, `server`, `printer`, `phone`, `network`, `other`, or one the
    /// tenant defined.
    category: String,
    make: String,
    model: String,
    serial_number: String,
    /// Upper case, colon separated; empty when unknown.
    mac_address: String,
    ip_address: String,
    operating_system: String,
    location: String,
    /// `active`, `in_repair`, `spare`, `retired` or `lost`.
    status: String,
    /// The contact it is assigned to.
    contact_id: Option<Uuid>,
    #[schema(value_type = Option<String>, format = Date)]
    purchase_date: Option<NaiveDate>,
    #[schema(value_type = Option<String>, format = Date)]
    warranty_end: Option<NaiveDate>,
    vendor: String,
    notes: String,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<AssetRow> for AssetJson {
    fn from(row: AssetRow) -> Self {
        Self {
            id: row.id,
            company_id: row.company_id,
            tag: row.tag,
            number: row.number,
            name: row.name,
            category: row.category,
            make: row.make,
            model: row.model,
            serial_number: row.serial_number,
            mac_address: row.mac_address,
            ip_address: row.ip_address,
            operating_system: row.operating_system,
            location: row.location,
            status: row.status,
            contact_id: row.contact_id,
            purchase_date: row.purchase_date,
            warranty_end: row.warranty_end,
            vendor: row.vendor,
            notes: row.notes,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A page of assets in tag order.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssetList {
    items: Vec<AssetJson>,
    /// Pass as `after` for the next page; null on the last page.
    next: Option<String>,
}

/// Reads `"contact_id": null` as "unassign" and an absent field as "unchanged".
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Uuid>>, D::Error> {
    Option::<Uuid>::deserialize(d).map(Some)
}

/// An asset's fields: on `POST`, `company_id`, `name` and `category` are required; on `PATCH`
/// only the fields present change (`"contact_id": null` unassigns).
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetBody {
    company_id: Option<Uuid>,
    #[schema(example = "Reception laptop")]
    name: Option<String>,
    #[schema(example = "laptop")]
    category: Option<String>,
    make: Option<String>,
    model: Option<String>,
    #[schema(example = "5CD1234XYZ")]
    serial_number: Option<String>,
    #[schema(example = "00:1A:2B:3C:4D:5E")]
    mac_address: Option<String>,
    #[schema(example = "192.0.2.10")]
    ip_address: Option<String>,
    operating_system: Option<String>,
    location: Option<String>,
    /// `YYYY-MM-DD`, or empty to clear.
    purchase_date: Option<String>,
    /// `YYYY-MM-DD`, or empty to clear.
    warranty_end: Option<String>,
    vendor: Option<String>,
    notes: Option<String>,
    /// `active` (default), `in_repair`, `spare`, `retired`, `lost`.
    status: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Uuid>)]
    contact_id: Option<Option<Uuid>>,
}

impl AssetBody {
    /// The details after applying this body's fields over `base`, checked.
    fn details(
        &self,
        base: &AssetDetails,
        categories: &[String],
    ) -> Result<AssetDetails, Vec<ValidationError>> {
        let date = |d: &Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
        let pick = |field: &Option<String>, current: &str| {
            field.clone().unwrap_or_else(|| current.to_owned())
        };
        let values = [
            pick(&self.name, &base.name),
            pick(&self.category, &base.category),
            pick(&self.make, &base.make),
            pick(&self.model, &base.model),
            pick(&self.serial_number, &base.serial_number),
            pick(&self.mac_address, &base.mac_address),
            pick(&self.ip_address, &base.ip_address),
            pick(&self.operating_system, &base.operating_system),
            pick(&self.location, &base.location),
            pick(&self.purchase_date, &date(&base.purchase_date)),
            pick(&self.warranty_end, &date(&base.warranty_end)),
            pick(&self.vendor, &base.vendor),
            pick(&self.notes, &base.notes),
        ];
        AssetDetails::parse(&input_of(&values), categories)
    }
}

/// A body for a new asset from the 13 detail values (in `AssetInput`'s order).
pub fn body_of(
    company_id: Uuid,
    v: &[String; 13],
    status: &str,
    contact_id: Option<Uuid>,
) -> AssetBody {
    let some = |s: &String| Some(s.clone());
    AssetBody {
        company_id: Some(company_id),
        name: some(&v[0]),
        category: some(&v[1]),
        make: some(&v[2]),
        model: some(&v[3]),
        serial_number: some(&v[4]),
        mac_address: some(&v[5]),
        ip_address: some(&v[6]),
        operating_system: some(&v[7]),
        location: some(&v[8]),
        purchase_date: some(&v[9]),
        warranty_end: some(&v[10]),
        vendor: some(&v[11]),
        notes: some(&v[12]),
        status: (!status.is_empty()).then(|| status.to_owned()),
        contact_id: Some(contact_id),
    }
}

/// The 13 detail values in `AssetInput`'s order, as an input.
pub fn input_of(v: &[String; 13]) -> AssetInput<'_> {
    AssetInput {
        name: &v[0],
        category: &v[1],
        make: &v[2],
        model: &v[3],
        serial_number: &v[4],
        mac_address: &v[5],
        ip_address: &v[6],
        operating_system: &v[7],
        location: &v[8],
        purchase_date: &v[9],
        warranty_end: &v[10],
        vendor: &v[11],
        notes: &v[12],
    }
}

/// The tenant's asset settings: the next tags' prefix and the categories it may use.
pub async fn asset_settings(
    state: &AppState,
    tenant_id: Uuid,
) -> Result<(String, Vec<String>), ApiError> {
    let (tenant, _) = state
        .store
        .load::<Tenant>(tenant_id, &tenant_id.to_string())
        .await?;
    Ok((tenant.tag_prefix(), tenant.categories()))
}

/// A contact the asset may be assigned to: one of `company_id`'s current people.
pub async fn check_contact(
    state: &AppState,
    tenant_id: Uuid,
    company_id: Uuid,
    contact_id: Option<Uuid>,
) -> Result<(), ValidationError> {
    let Some(contact_id) = contact_id else {
        return Ok(());
    };
    match contacts::get(&state.pool, tenant_id, contact_id).await {
        Ok(Some(c)) if c.company_id == company_id && !c.former => Ok(()),
        Ok(Some(c)) if c.company_id == company_id => Err(ValidationError::new(
            "contact_id",
            "this person has left the company",
        )),
        Ok(_) => Err(ValidationError::new(
            "contact_id",
            "must be one of the company's contacts",
        )),
        Err(error) => {
            tracing::error!(%error, "could not read the contact");
            Err(ValidationError::new(
                "contact_id",
                "could not be checked now; try again",
            ))
        }
    }
}

/// Registers an asset: its tag comes from the tenant's gapless sequence. Does not wait for the
/// read models (an import registers many; the caller waits once when it needs to).
pub async fn register(
    state: &AppState,
    meta: &EventMeta,
    company_id: Uuid,
    details: AssetDetails,
    status: AssetStatus,
    contact_id: Option<Uuid>,
    prefix: &str,
) -> Result<Executed<Asset>, ApiError> {
    let id = meta.new_aggregate_id();
    let done = state
        .store
        .create_numbered::<Asset>(
            &id.to_string(),
            "asset-tag",
            |number| AssetCommand::Register {
                company_id,
                number,
                tag: format_tag(prefix, number),
                details: details.clone(),
                status,
                contact_id,
            },
            &(),
            meta,
        )
        .await?;
    Ok(done)
}

async fn after(
    state: &AppState,
    me: &Principal,
    done: &Executed<Asset>,
) -> Result<AssetJson, ApiError> {
    state
        .read_your_writes(ASSET_VIEWS, "asset", &done.aggregate_id, done.version)
        .await;
    let id = parse_id(&done.aggregate_id, "asset")?;
    assets::get(&state.pool, me.tenant_id, id)
        .await?
        .map(AssetJson::from)
        .ok_or_else(|| ApiError::internal("the assets read model is behind; retry the read"))
}

/// Register an asset for a company; the answer carries its new `tag`.
#[utoipa::path(
    post,
    path = "/api/v1/assets",
    tag = "assets",
    operation_id = "createAsset",
    params(IdempotencyKey),
    request_body(content = AssetBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = AssetJson),
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
pub async fn create_asset(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    body: Result<ApiJson<AssetBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::EditAssets) {
        return refused.into_response();
    }
    let outcome = async {
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        let done = create(&state, &me, &meta, &body).await?;
        after(&state, &me, &done).await
    };
    match outcome.await {
        Ok(json) => (StatusCode::CREATED, Json(json)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Checks a new asset's fields (all problems at once) and registers it.
pub async fn create(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    body: &AssetBody,
) -> Result<Executed<Asset>, ApiError> {
    let (prefix, categories) = asset_settings(state, me.tenant_id).await?;
    let mut errors = Vec::new();
    let details = body
        .details(&AssetDetails::default(), &categories)
        .map_err(|e| errors.extend(e))
        .ok();
    let status = match body.status.as_deref() {
        None => Some(AssetStatus::Active),
        Some(s) => AssetStatus::parse(s).map_err(|e| errors.push(e)).ok(),
    };
    let Some(company_id) = body.company_id else {
        errors.insert(0, ValidationError::new("company_id", "is required"));
        return Err(ApiError::Invalid(errors));
    };
    let company = companies::get(&state.pool, me.tenant_id, company_id).await?;
    match &company {
        None => errors.insert(
            0,
            ValidationError::new("company_id", "is not one of your companies"),
        ),
        Some(c) if c.archived => errors.insert(
            0,
            ValidationError::new("company_id", "is archived: restore it before adding assets"),
        ),
        Some(_) => {}
    }
    let contact_id = body.contact_id.flatten();
    if company.is_some() {
        if let Err(e) = check_contact(state, me.tenant_id, company_id, contact_id).await {
            errors.push(e);
        }
    }
    let (Some(details), Some(status), true) = (details, status, errors.is_empty()) else {
        return Err(ApiError::Invalid(errors));
    };
    register(
        state, meta, company_id, details, status, contact_id, &prefix,
    )
    .await
}

/// The console's "New asset" (the same checks as the API).
pub async fn create_from_console(
    state: &AppState,
    me: &Principal,
    company_id: Uuid,
    body: &AssetBody,
) -> Result<Executed<Asset>, ApiError> {
    let mut body = body.clone();
    body.company_id = Some(company_id);
    let done = create(state, me, &me.meta(), &body).await?;
    // The asset's page comes next: it reads the read models.
    state
        .read_your_writes(ASSET_VIEWS, "asset", &done.aggregate_id, done.version)
        .await;
    Ok(done)
}

/// Applies `body` to asset `id`; `None` when nothing changed.
pub async fn apply(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    id: Uuid,
    body: &AssetBody,
) -> Result<Option<Executed<Asset>>, ApiError> {
    let (asset, _) = state
        .store
        .load::<Asset>(me.tenant_id, &id.to_string())
        .await?;
    if !asset.exists {
        return Err(ApiError::NotFound(format!("asset {id} not found")));
    }
    let commands = changes(state, me.tenant_id, &asset, body).await?;
    let mut last = None;
    for (i, command) in commands.into_iter().enumerate() {
        last = Some(
            state
                .store
                .execute::<Asset>(
                    &id.to_string(),
                    command,
                    &(),
                    &meta.derived(&[i as u8]),
                    ConflictPolicy::RetryOnce,
                )
                .await?,
        );
    }
    if let Some(done) = &last {
        state
            .read_your_writes(ASSET_VIEWS, "asset", &done.aggregate_id, done.version)
            .await;
    }
    Ok(last)
}

/// The console's asset form: true when something changed.
pub async fn change_from_console(
    state: &AppState,
    me: &Principal,
    id: Uuid,
    body: &AssetBody,
) -> Result<bool, ApiError> {
    Ok(apply(state, me, &me.meta(), id, body).await?.is_some())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AssetParams {
    /// Only this company's assets.
    company_id: Option<Uuid>,
    /// Only the assets assigned to this contact.
    contact_id: Option<Uuid>,
    /// `active`, `in_repair`, `spare`, `retired` or `lost`.
    status: Option<String>,
    category: Option<String>,
    /// The `next` of the previous page.
    after: Option<String>,
    /// 1 to 500 (default 100).
    limit: Option<i64>,
}

/// Assets in tag order, filtered, keyset paged.
#[utoipa::path(
    get,
    path = "/api/v1/assets",
    tag = "assets",
    operation_id = "listAssets",
    params(AssetParams),
    responses(
        (status = 200, description = "A page of assets", body = AssetList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn list_assets(
    State(state): State<AppState>,
    me: Principal,
    params: Result<Query<AssetParams>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    let outcome = async {
        let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let status = p
            .status
            .as_deref()
            .map(AssetStatus::parse)
            .transpose()
            .map_err(|e| ApiError::BadRequest(format!("status {}", e.message)))?;
        let after = p
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
        let mut rows = assets::list(
            &state.pool,
            me.tenant_id,
            &AssetQuery {
                company_id: p.company_id,
                contact_id: p.contact_id,
                status: status.map(|s| s.as_str().to_owned()),
                category: p.category.map(|c| c.trim().to_lowercase()),
                after,
                limit: limit + 1,
            },
        )
        .await?;
        let next = (rows.len() as i64 > limit).then(|| {
            rows.truncate(limit as usize);
            rows.last().map(|r| r.number.to_string())
        });
        Ok::<_, ApiError>(AssetList {
            items: rows.into_iter().map(AssetJson::from).collect(),
            next: next.flatten(),
        })
    };
    match outcome.await {
        Ok(list) => Json(list).into_response(),
        Err(error) => error.into_response(),
    }
}

/// One asset.
#[utoipa::path(
    get,
    path = "/api/v1/assets/{id}",
    tag = "assets",
    operation_id = "getAsset",
    params(("id" = Uuid, Path, description = "The asset's id")),
    responses(
        (status = 200, description = "The asset", body = AssetJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn get_asset(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "asset")?;
        assets::get(&state.pool, me.tenant_id, id)
            .await?
            .map(AssetJson::from)
            .ok_or_else(|| ApiError::NotFound(format!("asset {id} not found")))
    };
    match outcome.await {
        Ok(json) => Json(json).into_response(),
        Err(error) => error.into_response(),
    }
}

/// The commands that bring `asset` to what `body` asks (details, status, assignment).
pub async fn changes(
    state: &AppState,
    tenant_id: Uuid,
    asset: &Asset,
    body: &AssetBody,
) -> Result<Vec<AssetCommand>, ApiError> {
    let (_, categories) = asset_settings(state, tenant_id).await?;
    let mut errors = Vec::new();
    if body.company_id.is_some_and(|c| c != asset.company_id) {
        errors.push(ValidationError::new(
            "company_id",
            "an asset stays with its company",
        ));
    }
    let details = body
        .details(&asset.details, &categories)
        .map_err(|e| errors.extend(e))
        .ok();
    let status = body
        .status
        .as_deref()
        .map(AssetStatus::parse)
        .transpose()
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    if let Some(contact_id) = body.contact_id {
        if let Err(e) = check_contact(state, tenant_id, asset.company_id, contact_id).await {
            errors.push(e);
        }
    }
    let Some(details) = details.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Invalid(errors));
    };
    let mut commands = Vec::new();
    // Unassign before retiring, assign after a retired asset comes back.
    let assign = body
        .contact_id
        .filter(|c| *c != asset.contact_id)
        .map(|contact_id| AssetCommand::Assign { contact_id });
    let retiring = status == Some(AssetStatus::Retired);
    if retiring {
        commands.extend(assign.clone());
    }
    if details != asset.details {
        commands.push(AssetCommand::Update { details });
    }
    if let Some(status) = status.filter(|s| *s != asset.status) {
        commands.push(AssetCommand::SetStatus { status });
    }
    if !retiring {
        commands.extend(assign);
    }
    Ok(commands)
}

/// Change an asset: only the fields present change.
#[utoipa::path(
    patch,
    path = "/api/v1/assets/{id}",
    tag = "assets",
    operation_id = "updateAsset",
    params(("id" = Uuid, Path, description = "The asset's id"), IdempotencyKey),
    request_body(content = AssetBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The asset after the change", body = AssetJson),
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
pub async fn update_asset(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<ApiJson<AssetBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::EditAssets) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "asset")?;
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        match apply(&state, &me, &meta, id, &body).await? {
            Some(done) => after(&state, &me, &done).await,
            None => assets::get(&state.pool, me.tenant_id, id)
                .await?
                .map(AssetJson::from)
                .ok_or_else(|| ApiError::NotFound(format!("asset {id} not found"))),
        }
    };
    match outcome.await {
        Ok(json) => Json(json).into_response(),
        Err(error) => error.into_response(),
    }
}
