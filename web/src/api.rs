//! The JSON API under `/api/v1`. Money travels as decimal strings, instants as RFC 3339.
//! Authentication arrives with the identity issue; until then every request acts for the
//! default tenant as actor `api`, and the default bind address is loopback only.
//! Each handler and type carries its OpenAPI description (`crate::openapi` collects them).

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use commands::{ConflictPolicy, EventMeta, Executed};
use domain::authz::Action;
use domain::company::{
    normalize_tag, Company, CompanyChanges, CompanyCommand, CompanyProfile, CustomerStatus,
    ProfileChanges, ProfileInput,
};
use domain::values::{Amount, CompanyName};
use domain::ValidationError;
use projections::companies::{self, CompanyRow, Cursor, ListQuery, StatusFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::openapi::{
    BadRequest, Conflict, Forbidden, InternalError, NotFound, PayloadTooLarge, Unauthorized,
    Unprocessable, UnsupportedMediaType,
};
use crate::AppState;

/// Largest JSON body the API reads.
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/companies",
            get(list_companies).post(create_company),
        )
        .route(
            "/api/v1/companies/{id}",
            get(get_company).patch(update_company),
        )
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
}

/// A known path with a method it does not serve: a problem document, like every API error
/// (`crate::router` sets it, through its own fallback, for every route).
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::Rejected {
        status: StatusCode::METHOD_NOT_ALLOWED,
        detail: format!("{method} is not allowed on {}", uri.path()),
    }
}

/// `Json` whose rejections are problem documents.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<Value>::from_request(req, state).await?;
        // serde would also read a struct from an array (`[1, 2]`): only objects are accepted.
        if !value.is_object() {
            return Err(ApiError::Rejected {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                detail: "the body must be a JSON object".into(),
            });
        }
        serde_json::from_value(value)
            .map(ApiJson)
            .map_err(|e| ApiError::Rejected {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                detail: e.to_string(),
            })
    }
}

/// Parses an id from the path, saying so when it is not a UUID.
/// The id in a path segment: a segment that does not decode or is not a UUID is a 400 that
/// says what it should be.
pub fn path_id(path: Result<Path<String>, PathRejection>, what: &str) -> Result<Uuid, ApiError> {
    match path {
        Ok(Path(raw)) => parse_id(&raw, what),
        Err(_) => Err(ApiError::BadRequest(format!(
            "the {what} id is not valid: ids are UUIDs"
        ))),
    }
}

pub fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::BadRequest(format!("{what} id {raw:?} is not valid: ids are UUIDs")))
}

/// A company as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Company)]
pub struct CompanyJson {
    pub id: Uuid,
    #[schema(example = "Acme")]
    pub name: String,
    /// Money: a decimal string with exactly two places.
    #[schema(pattern = r"^\d+\.\d{2}$", example = "500.00")]
    pub monthly_rate: String,
    /// Whether the company is archived: `archived` companies leave the default list and
    /// refuse changes until restored. Its standing as a customer is `customer_status`.
    pub status: CompanyStatus,
    /// The same as `status == "archived"`.
    pub archived: bool,
    pub customer_status: CustomerStatusJson,
    /// Several lines (`\n`); empty when unknown.
    #[schema(example = "Acme Ltd\n1 Main St\nSpringfield")]
    pub billing_address: String,
    /// Where the work happens; several lines; empty when unknown.
    pub site_address: String,
    #[schema(example = "+1 555 0100")]
    pub phone: String,
    /// An `http://` or `https://` address, or empty.
    #[schema(example = "https://acme.example")]
    pub website: String,
    pub notes: String,
    /// Lowercase, sorted.
    #[schema(example = json!(["managed print", "vip"]))]
    pub tags: Vec<String>,
    /// The company's current contacts who receive its invoices (`billing: true`), by name.
    pub billing_contacts: Vec<Uuid>,
    /// The number of events the company has had.
    #[schema(minimum = 1, example = 1)]
    pub version: i64,
    // Null only when the read model lags behind the write just made (see `from_state`).
    /// Null only when the answer to a write could not wait for the lists to catch up.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub created_at: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub updated_at: Option<String>,
}

/// Whether a company is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CompanyStatus {
    Active,
    Archived,
}

impl CompanyStatus {
    fn of(archived: bool) -> Self {
        if archived {
            Self::Archived
        } else {
            Self::Active
        }
    }
}

/// Where a company stands as a customer: `prospect` (not a customer yet), `active`,
/// `suspended` (service paused), `former` (no longer a customer). New companies are `active`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = CustomerStatus)]
pub enum CustomerStatusJson {
    Prospect,
    Active,
    Suspended,
    Former,
}

impl From<CustomerStatus> for CustomerStatusJson {
    fn from(status: CustomerStatus) -> Self {
        match status {
            CustomerStatus::Prospect => Self::Prospect,
            CustomerStatus::Active => Self::Active,
            CustomerStatus::Suspended => Self::Suspended,
            CustomerStatus::Former => Self::Former,
        }
    }
}

impl From<CustomerStatusJson> for CustomerStatus {
    fn from(status: CustomerStatusJson) -> Self {
        match status {
            CustomerStatusJson::Prospect => Self::Prospect,
            CustomerStatusJson::Active => Self::Active,
            CustomerStatusJson::Suspended => Self::Suspended,
            CustomerStatusJson::Former => Self::Former,
        }
    }
}

impl From<CompanyRow> for CompanyJson {
    fn from(row: CompanyRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            monthly_rate: format!("{:.2}", row.monthly_rate),
            status: CompanyStatus::of(row.archived),
            archived: row.archived,
            customer_status: CustomerStatus::parse("customer_status", &row.customer_status)
                .unwrap_or_default()
                .into(),
            billing_address: row.billing_address,
            site_address: row.site_address,
            phone: row.phone,
            website: row.website,
            notes: row.notes,
            tags: row.tags,
            billing_contacts: Vec::new(),
            version: row.version,
            created_at: Some(
                row.created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ),
            updated_at: Some(
                row.updated_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ),
        }
    }
}

impl CompanyJson {
    /// The company as the command left it, for when the read model has not caught up within
    /// the read-your-writes wait (a stuck projection must not turn a saved write into an error).
    fn from_state(id: Uuid, state: &Company, version: usize) -> Self {
        Self {
            id,
            name: state.name.clone(),
            monthly_rate: state.monthly_rate.unwrap_or(Amount::ZERO).to_string(),
            status: CompanyStatus::of(state.archived),
            archived: state.archived,
            customer_status: state.customer_status.into(),
            billing_address: state.profile.billing_address.clone(),
            site_address: state.profile.site_address.clone(),
            phone: state.profile.phone.clone(),
            website: state.profile.website.clone(),
            notes: state.profile.notes.clone(),
            tags: state.profile.tags.clone(),
            billing_contacts: Vec::new(),
            version: version as i64,
            created_at: None,
            updated_at: None,
        }
    }
}

fn field_name(value: Option<&Value>) -> Result<Option<CompanyName>, ValidationError> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => CompanyName::parse(s).map(Some),
        Some(_) => Err(ValidationError::new("name", "must be a string")),
    }
}

fn field_rate(value: Option<&Value>) -> Result<Option<Amount>, ValidationError> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Amount::parse("monthly_rate", s).map(Some),
        Some(Value::Number(_)) => Err(ValidationError::new(
            "monthly_rate",
            "must be a decimal string such as \"500.00\", not a JSON number",
        )),
        Some(_) => Err(ValidationError::new(
            "monthly_rate",
            "must be a decimal string such as \"500.00\"",
        )),
    }
}

/// A text field of a request: absent or null is `None`; anything but a string is an error.
fn field_text<'a>(
    field: &'static str,
    value: Option<&'a Value>,
    errors: &mut Vec<ValidationError>,
) -> Option<&'a str> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            errors.push(ValidationError::new(field, "must be a string"));
            None
        }
    }
}

/// The order in which a company request's field errors are listed (the order of the fields).
const COMPANY_FIELDS: [&str; 10] = [
    "name",
    "monthly_rate",
    "archived",
    "customer_status",
    "billing_address",
    "site_address",
    "phone",
    "website",
    "notes",
    "tags",
];

/// A company request's field errors in the order of its fields.
fn in_field_order(mut errors: Vec<ValidationError>) -> Vec<ValidationError> {
    errors.sort_by_key(|e| COMPANY_FIELDS.iter().position(|f| *f == e.field));
    errors
}

/// The customer status and profile fields of a create or change request, checked together:
/// every problem lands in `errors`.
fn profile_fields<'a>(
    fields: &ProfileFields<'a>,
    errors: &mut Vec<ValidationError>,
) -> (Option<CustomerStatus>, ProfileChanges) {
    let status = field_text("customer_status", fields.customer_status, errors).and_then(|s| {
        match CustomerStatus::parse("customer_status", s) {
            Ok(status) => Some(status),
            Err(e) => {
                errors.push(e);
                None
            }
        }
    });
    let tags = match fields.tags {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            Some(items.iter().filter_map(Value::as_str).collect())
        }
        Some(_) => {
            errors.push(ValidationError::new("tags", "must be an array of strings"));
            None
        }
    };
    let input = ProfileInput {
        billing_address: field_text("billing_address", fields.billing_address, errors),
        site_address: field_text("site_address", fields.site_address, errors),
        phone: field_text("phone", fields.phone, errors),
        website: field_text("website", fields.website, errors),
        notes: field_text("notes", fields.notes, errors),
        tags,
    };
    let changes = ProfileChanges::parse(&input).unwrap_or_else(|mut e| {
        errors.append(&mut e);
        ProfileChanges::default()
    });
    (status, changes)
}

/// A new company. Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateCompany, example = json!({"name": "Acme", "monthly_rate": "500.00"}))]
pub struct CreateCompanyBody {
    /// 1 to 200 characters once trimmed, no control characters.
    #[schema(value_type = String, min_length = 1, max_length = 200, example = "Acme")]
    name: Option<Value>,
    /// Money as a decimal string (not a JSON number): at most 2 decimal places, not negative,
    /// at most 999999999.99. Absent or null: `"0.00"`.
    #[schema(value_type = Option<String>, pattern = r"^\d+(\.\d{1,2})?$", example = "500.00")]
    monthly_rate: Option<Value>,
    /// `prospect`, `active`, `suspended` or `former`. Absent or null: `active`.
    #[schema(value_type = Option<CustomerStatusJson>, example = "active")]
    customer_status: Option<Value>,
    /// Several lines, at most 500 characters; no control characters but line breaks.
    #[schema(value_type = Option<String>, max_length = 500, example = "Acme Ltd\n1 Main St")]
    billing_address: Option<Value>,
    /// Several lines, at most 500 characters.
    #[schema(value_type = Option<String>, max_length = 500)]
    site_address: Option<Value>,
    /// Digits with `+ - . ( ) /` and spaces, 3 to 30 characters, an extension after `x` or
    /// `ext`; empty for none.
    #[schema(value_type = Option<String>, max_length = 30, example = "+1 555 0100 x12")]
    phone: Option<Value>,
    /// An `http://` or `https://` address (a bare host gets `https://`), at most 300
    /// characters; empty for none.
    #[schema(value_type = Option<String>, max_length = 300, example = "https://acme.example")]
    website: Option<Value>,
    /// At most 4000 characters, several lines.
    #[schema(value_type = Option<String>, max_length = 4000)]
    notes: Option<Value>,
    /// The company's tags: at most 20, each 1 to 40 letters, digits, spaces, `-` or `_`; stored lowercase,
    /// sorted, without duplicates.
    #[schema(value_type = Option<Vec<String>>, max_items = 20, example = json!(["vip", "managed print"]))]
    tags: Option<Value>,
}

/// Changes to a company; absent (or null) fields stay as they are. Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateCompany, example = json!({"name": "Acme Corp", "monthly_rate": "650.50"}))]
pub struct UpdateCompanyBody {
    /// 1 to 200 characters once trimmed, no control characters.
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200, example = "Acme Corp")]
    name: Option<Value>,
    /// Money as a decimal string (not a JSON number): at most 2 decimal places, not negative,
    /// at most 999999999.99.
    #[schema(value_type = Option<String>, pattern = r"^\d+(\.\d{1,2})?$", example = "650.50")]
    monthly_rate: Option<Value>,
    /// `true` archives the company, `false` restores it.
    #[schema(value_type = Option<bool>)]
    archived: Option<Value>,
    /// `prospect`, `active`, `suspended` or `former`.
    #[schema(value_type = Option<CustomerStatusJson>, example = "active")]
    customer_status: Option<Value>,
    /// Several lines, at most 500 characters; no control characters but line breaks.
    #[schema(value_type = Option<String>, max_length = 500, example = "Acme Ltd\n1 Main St")]
    billing_address: Option<Value>,
    /// Several lines, at most 500 characters.
    #[schema(value_type = Option<String>, max_length = 500)]
    site_address: Option<Value>,
    /// Digits with `+ - . ( ) /` and spaces, 3 to 30 characters, an extension after `x` or
    /// `ext`; empty for none.
    #[schema(value_type = Option<String>, max_length = 30, example = "+1 555 0100 x12")]
    phone: Option<Value>,
    /// An `http://` or `https://` address (a bare host gets `https://`), at most 300
    /// characters; empty for none.
    #[schema(value_type = Option<String>, max_length = 300, example = "https://acme.example")]
    website: Option<Value>,
    /// At most 4000 characters, several lines.
    #[schema(value_type = Option<String>, max_length = 4000)]
    notes: Option<Value>,
    /// Replaces all the tags: at most 20, each 1 to 40 letters, digits, spaces, `-` or `_`; stored lowercase,
    /// sorted, without duplicates.
    #[schema(value_type = Option<Vec<String>>, max_items = 20, example = json!(["vip", "managed print"]))]
    tags: Option<Value>,
}

/// The customer status and profile fields of a create or change request.
struct ProfileFields<'a> {
    customer_status: Option<&'a Value>,
    billing_address: Option<&'a Value>,
    site_address: Option<&'a Value>,
    phone: Option<&'a Value>,
    website: Option<&'a Value>,
    notes: Option<&'a Value>,
    tags: Option<&'a Value>,
}

impl ProfileFields<'_> {
    /// True when any of them is given (not absent, not null).
    fn any(&self) -> bool {
        [
            self.customer_status,
            self.billing_address,
            self.site_address,
            self.phone,
            self.website,
            self.notes,
            self.tags,
        ]
        .iter()
        .any(|f| !matches!(f, None | Some(Value::Null)))
    }
}

macro_rules! profile_fields_of {
    ($body:ty) => {
        impl $body {
            fn profile(&self) -> ProfileFields<'_> {
                ProfileFields {
                    customer_status: self.customer_status.as_ref(),
                    billing_address: self.billing_address.as_ref(),
                    site_address: self.site_address.as_ref(),
                    phone: self.phone.as_ref(),
                    website: self.website.as_ref(),
                    notes: self.notes.as_ref(),
                    tags: self.tags.as_ref(),
                }
            }
        }
    };
}
profile_fields_of!(CreateCompanyBody);
profile_fields_of!(UpdateCompanyBody);

/// The `Idempotency-Key` header, as the OpenAPI document describes it (`command_meta` reads it).
#[derive(IntoParams)]
#[into_params(names("Idempotency-Key"), parameter_in = Header)]
#[allow(dead_code)] // a description only
pub struct IdempotencyKey(
    /// Makes a retried request a no-op: a request with the same key answers with the first
    /// request's outcome and appends nothing. 1 to 200 visible ASCII characters.
    #[param(value_type = String, required = false, min_length = 1, max_length = 200,
        example = "7d2c9a40-invoice-run-2026-05")]
    Option<String>,
);

/// Metadata of an API command; `Idempotency-Key` makes a retried request a no-op.
pub fn command_meta(me: &Principal, headers: &HeaderMap) -> Result<EventMeta, ApiError> {
    let meta = me.meta();
    match headers.get("idempotency-key") {
        None => Ok(meta),
        Some(value) => {
            let key = value
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 200)
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "Idempotency-Key must be 1 to 200 visible ASCII characters".into(),
                    )
                })?;
            let id = EventMeta::command_id_for_key(me.tenant_id, key);
            Ok(meta.with_command_id(id).with_correlation(id, None))
        }
    }
}

async fn read_company(state: &AppState, me: &Principal, id: Uuid) -> Result<CompanyJson, ApiError> {
    let row = companies::get(&state.pool, me.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("company {id} not found")))?;
    Ok(with_billing_contacts(state, me, vec![row.into()])
        .await?
        .remove(0))
}

/// Fills in the companies' `billing_contacts` from the contacts read model.
async fn with_billing_contacts(
    state: &AppState,
    me: &Principal,
    mut companies: Vec<CompanyJson>,
) -> Result<Vec<CompanyJson>, ApiError> {
    let ids: Vec<Uuid> = companies.iter().map(|c| c.id).collect();
    let pairs = projections::contacts::billing_of(&state.pool, me.tenant_id, &ids).await?;
    for company in &mut companies {
        company.billing_contacts = pairs
            .iter()
            .filter(|(company_id, _)| *company_id == company.id)
            .map(|(_, contact)| *contact)
            .collect();
    }
    Ok(companies)
}

/// The response after a command: the read model once it shows this command's result, else
/// the command's own outcome.
async fn after_command(
    state: &AppState,
    me: &Principal,
    id: Uuid,
    done: &Executed<Company>,
) -> Result<CompanyJson, ApiError> {
    state
        .read_your_writes(&["companies"], "company", &done.aggregate_id, done.version)
        .await;
    let json = match companies::get(&state.pool, me.tenant_id, id).await? {
        Some(row) if row.version >= done.version as i64 => row.into(),
        _ => CompanyJson::from_state(id, &done.state, done.version),
    };
    Ok(with_billing_contacts(state, me, vec![json])
        .await?
        .remove(0))
}

/// Register a company.
///
/// With an `Idempotency-Key`, a retried request registers nothing more and answers with the
/// company the first request registered.
#[utoipa::path(
    post,
    path = "/api/v1/companies",
    tag = "companies",
    operation_id = "createCompany",
    params(
        IdempotencyKey,
    ),
    request_body(content = CreateCompanyBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = CompanyJson),
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
pub async fn create_company(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateCompanyBody>,
) -> Result<(StatusCode, Json<CompanyJson>), Response> {
    me.require(Action::EditCompanies)
        .map_err(IntoResponse::into_response)?;
    create_company_as(&state, &me, &headers, body)
        .await
        .map_err(IntoResponse::into_response)
}

async fn create_company_as(
    state: &AppState,
    me: &Principal,
    headers: &HeaderMap,
    body: CreateCompanyBody,
) -> Result<(StatusCode, Json<CompanyJson>), ApiError> {
    let name = field_name(body.name.as_ref())
        .and_then(|n| n.ok_or_else(|| ValidationError::new("name", "is required")));
    let rate = field_rate(body.monthly_rate.as_ref()).map(|r| r.unwrap_or(Amount::ZERO));
    let mut errors: Vec<ValidationError> = [name.clone().err(), rate.clone().err()]
        .into_iter()
        .flatten()
        .collect();
    let (customer_status, profile) = profile_fields(&body.profile(), &mut errors);
    let (Ok(name), Ok(monthly_rate), true) = (name, rate, errors.is_empty()) else {
        return Err(ApiError::Invalid(in_field_order(errors)));
    };
    let meta = command_meta(me, headers)?;
    let id = meta.new_aggregate_id();
    let done = state
        .store
        .create::<Company>(
            &id.to_string(),
            CompanyCommand::Register {
                name,
                monthly_rate,
                customer_status: customer_status.unwrap_or_default(),
                profile: profile.applied_to(&CompanyProfile::default()),
            },
            &(),
            &meta,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(after_command(state, me, id, &done).await?),
    ))
}

/// The query string of the companies list. Unknown parameters are refused (400).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Part of the name, case-insensitive; close misspellings match too.
    q: Option<String>,
    /// Which companies to list by archiving (default `active`: not archived).
    #[param(inline, value_type = Option<CompanyStatusFilter>)]
    status: Option<StatusFilter>,
    /// Only companies with this customer status.
    #[param(value_type = Option<CustomerStatusJson>)]
    customer_status: Option<CustomerStatusJson>,
    /// Only companies with this tag (compared case-insensitively).
    #[param(max_length = 40, example = "vip")]
    tag: Option<String>,
    /// How many companies a page holds (default 100).
    #[param(minimum = 1, maximum = 500, default = 100)]
    limit: Option<i64>,
    /// Where the page starts: the `next` of the previous page (an opaque cursor), or the
    /// `next_after` company id of earlier versions of this API.
    #[param(value_type = Option<String>)]
    after: Option<String>,
}

// The values of `projections::companies::StatusFilter`, for the OpenAPI document.
/// Which companies a list shows.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a description only
pub enum CompanyStatusFilter {
    Active,
    Archived,
    All,
}

/// One page of companies, ordered by name (case-insensitive), then id.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompanyList {
    items: Vec<CompanyJson>,
    /// Pass as `after` for the next page; null on the last page. Opaque: it keeps its place
    /// even when companies are renamed, added or archived meanwhile.
    #[schema(value_type = Option<String>, required = true)]
    next: Option<String>,
    /// The id of the page's last company when there is a next page (absent on the last page);
    /// kept for clients of earlier versions: `after=<next_after>` still works.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Uuid, required = false)]
    next_after: Option<Uuid>,
}

/// List companies, ordered by name, a page at a time (keyset paging: follow `next`).
#[utoipa::path(
    get,
    path = "/api/v1/companies",
    tag = "companies",
    operation_id = "listCompanies",
    params(ListParams),
    responses(
        (status = 200, description = "One page of companies", body = CompanyList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn list_companies(
    State(state): State<AppState>,
    me: Principal,
    query: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<CompanyList>, Response> {
    me.require(Action::ViewCompanies)
        .map_err(IntoResponse::into_response)?;
    list_companies_as(&state, &me, query)
        .await
        .map_err(IntoResponse::into_response)
}

async fn list_companies_as(
    state: &AppState,
    me: &Principal,
    query: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<CompanyList>, ApiError> {
    let Query(params) = query?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be from 1 to 500".into()));
    }
    let after = match params.after.as_deref() {
        None => None,
        Some(raw) => Some(list_cursor(state, me, raw).await?),
    };
    let tag = params.tag.as_deref().map(normalize_tag);
    let customer_status = params.customer_status.map(CustomerStatus::from);
    let page = companies::list(
        &state.pool,
        me.tenant_id,
        &ListQuery {
            search: params.q.as_deref(),
            status: params.status.unwrap_or_default(),
            customer_status: customer_status.map(CustomerStatus::as_str),
            tag: tag.as_deref().filter(|t| !t.is_empty()),
            limit,
            after,
        },
    )
    .await?;
    let items = page.rows.into_iter().map(CompanyJson::from).collect();
    Ok(Json(CompanyList {
        items: with_billing_contacts(state, me, items).await?,
        next_after: page.next.as_ref().map(|c| c.id),
        next: page.next.as_ref().map(Cursor::encode),
    }))
}

/// The `after` of a list request: a cursor from `next`, or (earlier clients) a company id.
async fn list_cursor(state: &AppState, me: &Principal, raw: &str) -> Result<Cursor, ApiError> {
    if let Ok(id) = Uuid::parse_str(raw) {
        return companies::cursor_after(&state.pool, me.tenant_id, id)
            .await?
            .ok_or_else(|| ApiError::BadRequest(format!("after: company {id} not found")));
    }
    Cursor::decode(raw).ok_or_else(|| {
        ApiError::BadRequest(
            "after must be the `next` of a previous page (or a company id, as in `next_after`)"
                .into(),
        )
    })
}

/// One company.
#[utoipa::path(
    get,
    path = "/api/v1/companies/{id}",
    tag = "companies",
    operation_id = "getCompany",
    params(("id" = Uuid, Path, description = "The company's id")),
    responses(
        (status = 200, description = "The company", body = CompanyJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn get_company(
    State(state): State<AppState>,
    me: Principal,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<CompanyJson>, Response> {
    me.require(Action::ViewCompanies)
        .map_err(IntoResponse::into_response)?;
    let found = async {
        let id = path_id(id, "company")?;
        read_company(&state, &me, id).await
    };
    Ok(Json(found.await.map_err(IntoResponse::into_response)?))
}

/// Change a company: rename it, set its monthly rate, archive or restore it.
///
/// Only the fields present change; an archived company refuses every change but a restore
/// (409). With an `Idempotency-Key`, repeating the request changes nothing more.
#[utoipa::path(
    patch,
    path = "/api/v1/companies/{id}",
    tag = "companies",
    operation_id = "updateCompany",
    params(
        ("id" = Uuid, Path, description = "The company's id"),
        IdempotencyKey,
    ),
    request_body(content = UpdateCompanyBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The company after the change", body = CompanyJson),
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
pub async fn update_company(
    State(state): State<AppState>,
    me: Principal,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateCompanyBody>,
) -> Result<Json<CompanyJson>, Response> {
    let id = path_id(id, "company").map_err(IntoResponse::into_response)?;
    if body.name.is_some() || body.archived.is_some() || body.profile().any() {
        me.require(Action::EditCompanies)
            .map_err(IntoResponse::into_response)?;
    }
    if body.monthly_rate.is_some() {
        me.require(Action::SetCompanyRate)
            .map_err(IntoResponse::into_response)?;
    }
    if !me.may(Action::EditCompanies) && !me.may(Action::SetCompanyRate) {
        return Err(me.forbidden().into_response());
    }
    update_company_as(&state, &me, id, &headers, body)
        .await
        .map_err(IntoResponse::into_response)
}

async fn update_company_as(
    state: &AppState,
    me: &Principal,
    id: Uuid,
    headers: &HeaderMap,
    body: UpdateCompanyBody,
) -> Result<Json<CompanyJson>, ApiError> {
    let archived = match body.archived {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(ValidationError::new("archived", "must be true or false")),
    };
    let name = field_name(body.name.as_ref());
    let rate = field_rate(body.monthly_rate.as_ref());
    let mut errors: Vec<ValidationError> = [
        name.clone().err(),
        rate.clone().err(),
        archived.clone().err(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let (customer_status, profile) = profile_fields(&body.profile(), &mut errors);
    let changes = match (name, rate, archived, errors.is_empty()) {
        (Ok(name), Ok(monthly_rate), Ok(archived), true) => CompanyChanges {
            name,
            monthly_rate,
            archived,
            customer_status,
            profile,
        },
        _ => return Err(ApiError::Invalid(in_field_order(errors))),
    };
    let meta = command_meta(me, headers)?;
    let done = state
        .store
        .execute::<Company>(
            &id.to_string(),
            CompanyCommand::Update(changes),
            &(),
            &meta,
            ConflictPolicy::RetryOnce,
        )
        .await?;
    Ok(Json(after_command(state, me, id, &done).await?))
}
