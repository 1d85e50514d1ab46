//! The JSON API under `/api/v1`. Money travels as decimal strings, instants as RFC 3339.
//! Authentication arrives with the identity issue; until then every request acts for the
//! default tenant as actor `api`, and the default bind address is loopback only.

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use commands::{ConflictPolicy, EventMeta, Executed, DEFAULT_TENANT_ID};
use domain::company::{Company, CompanyChanges, CompanyCommand};
use domain::values::{Amount, CompanyName};
use domain::ValidationError;
use projections::companies::{self, CompanyRow, ListQuery, StatusFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::ApiError;
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
pub fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::BadRequest(format!("{what} id {raw:?} is not valid: ids are UUIDs")))
}

/// A company as the API shows it.
#[derive(Debug, Serialize)]
pub struct CompanyJson {
    pub id: Uuid,
    pub name: String,
    pub monthly_rate: String,
    pub status: &'static str,
    pub archived: bool,
    pub version: i64,
    /// Null only when the read model lags behind the write just made (see `from_state`).
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl From<CompanyRow> for CompanyJson {
    fn from(row: CompanyRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            monthly_rate: format!("{:.2}", row.monthly_rate),
            status: if row.archived { "archived" } else { "active" },
            archived: row.archived,
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
            status: if state.archived { "archived" } else { "active" },
            archived: state.archived,
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

/// Every field error of a request at once, so one response lists them all.
fn invalid(errors: impl IntoIterator<Item = Option<ValidationError>>) -> ApiError {
    ApiError::Invalid(errors.into_iter().flatten().collect())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCompanyBody {
    name: Option<Value>,
    monthly_rate: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCompanyBody {
    name: Option<Value>,
    monthly_rate: Option<Value>,
    archived: Option<Value>,
}

/// Metadata of an API command; `Idempotency-Key` makes a retried request a no-op.
fn command_meta(headers: &HeaderMap) -> Result<EventMeta, ApiError> {
    let meta = EventMeta::new(DEFAULT_TENANT_ID, "api");
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
            let id = EventMeta::command_id_for_key(DEFAULT_TENANT_ID, key);
            Ok(meta.with_command_id(id).with_correlation(id, None))
        }
    }
}

async fn read_company(state: &AppState, id: Uuid) -> Result<CompanyRow, ApiError> {
    companies::get(&state.pool, DEFAULT_TENANT_ID, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("company {id} not found")))
}

/// The response after a command: the read model once it shows this command's result, else
/// the command's own outcome.
async fn after_command(
    state: &AppState,
    id: Uuid,
    done: &Executed<Company>,
) -> Result<CompanyJson, ApiError> {
    state
        .read_your_writes(&["companies"], "company", &done.aggregate_id, done.version)
        .await;
    Ok(
        match companies::get(&state.pool, DEFAULT_TENANT_ID, id).await? {
            Some(row) if row.version >= done.version as i64 => row.into(),
            _ => CompanyJson::from_state(id, &done.state, done.version),
        },
    )
}

async fn create_company(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateCompanyBody>,
) -> Result<(StatusCode, Json<CompanyJson>), ApiError> {
    let name = field_name(body.name.as_ref())
        .and_then(|n| n.ok_or_else(|| ValidationError::new("name", "is required")));
    let rate = field_rate(body.monthly_rate.as_ref()).map(|r| r.unwrap_or(Amount::ZERO));
    let (name, monthly_rate) = match (name, rate) {
        (Ok(name), Ok(rate)) => (name, rate),
        (name, rate) => return Err(invalid([name.err(), rate.err()])),
    };
    let meta = command_meta(&headers)?;
    let id = meta.new_aggregate_id();
    let done = state
        .store
        .create::<Company>(
            &id.to_string(),
            CompanyCommand::Register { name, monthly_rate },
            &(),
            &meta,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(after_command(&state, id, &done).await?),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    q: Option<String>,
    status: Option<StatusFilter>,
    limit: Option<i64>,
    after: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CompanyList {
    items: Vec<CompanyJson>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<Uuid>,
}

async fn list_companies(
    State(state): State<AppState>,
    query: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<CompanyList>, ApiError> {
    let Query(params) = query?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be from 1 to 500".into()));
    }
    let after = match params.after.as_deref() {
        None => None,
        Some(raw) => {
            let id = parse_id(raw, "after")?;
            let row = companies::get(&state.pool, DEFAULT_TENANT_ID, id)
                .await?
                .ok_or_else(|| ApiError::BadRequest(format!("after: company {id} not found")))?;
            Some((row.name.to_lowercase(), row.id))
        }
    };
    let rows = companies::list(
        &state.pool,
        DEFAULT_TENANT_ID,
        &ListQuery {
            search: params.q.as_deref(),
            status: params.status.unwrap_or_default(),
            limit,
            after,
        },
    )
    .await?;
    let next_after = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(Json(CompanyList {
        items: rows.into_iter().map(CompanyJson::from).collect(),
        next_after,
    }))
}

async fn get_company(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CompanyJson>, ApiError> {
    let id = parse_id(&id, "company")?;
    Ok(Json(read_company(&state, id).await?.into()))
}

async fn update_company(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateCompanyBody>,
) -> Result<Json<CompanyJson>, ApiError> {
    let id = parse_id(&id, "company")?;
    let archived = match body.archived {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(ValidationError::new("archived", "must be true or false")),
    };
    let name = field_name(body.name.as_ref());
    let rate = field_rate(body.monthly_rate.as_ref());
    let changes = match (name, rate, archived) {
        (Ok(name), Ok(monthly_rate), Ok(archived)) => CompanyChanges {
            name,
            monthly_rate,
            archived,
        },
        (name, rate, archived) => return Err(invalid([name.err(), rate.err(), archived.err()])),
    };
    let meta = command_meta(&headers)?;
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
    Ok(Json(after_command(&state, id, &done).await?))
}
