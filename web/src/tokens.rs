//! API tokens: the console page `/account/tokens` (one's own tokens; every token of the tenant
//! for owners and admins), the API under `/api/v1/tokens`, and `POST /api/v1/sign-in`, which
//! trades an email and password for a new token.
//!
//! A token's secret exists only in the answer that creates it: the log and the read model
//! hold its SHA-256 digest (`commands::identity::create_api_token`). A token acts as its person
//! with that person's current role (`auth::authenticate`); a revoke waits until the read model
//! has it, so the token stops working on the very next request.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::PathRejection;
use axum::extract::{Form, FromRequest, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use commands::identity::{self as ident, SignInError};
use commands::{CommandError, ConflictPolicy, EventMeta};
use domain::authz::{self, Action};
use domain::user::{User, UserCommand, UserError};
use domain::HasErrorKind;
use projections::users::{self, TokenRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgExecutor;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::{command_meta, ApiJson, IdempotencyKey, BODY_LIMIT};
use crate::auth::{self, Principal};
use crate::console::{
    csrf_refusal, display_time, error_page, internal_page, not_found_page, redirect_with_flash,
    Cookies,
};
use crate::error::ApiError;
use crate::openapi::{
    BadRequest, Conflict, Forbidden, InternalError, NotFound, PayloadTooLarge, Unauthorized,
    Unprocessable, UnsupportedMediaType,
};
use crate::AppState;

/// Longest token name (the domain's rule).
const NAME_MAX_CHARS: usize = 100;

pub fn router() -> Router<AppState> {
    let api = Router::new()
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
        .route("/api/v1/sign-in", post(sign_in))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT));
    Router::new()
        .route("/account/tokens", get(tokens_page).post(create_in_console))
        .route("/account/tokens/{id}/revoke", post(revoke_in_console))
        .merge(api)
}

/// The token name as the domain will keep it (trimmed), or what is wrong with it.
fn checked_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        Err("must not be empty".into())
    } else if name.chars().count() > NAME_MAX_CHARS {
        Err(format!("must be at most {NAME_MAX_CHARS} characters"))
    } else if name.chars().any(char::is_control) {
        Err("must not contain control characters".into())
    } else {
        Ok(name.to_owned())
    }
}

fn rfc3339(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One token of a tenant with its person, for owners and admins.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantTokenRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub person_name: String,
    pub person_email: String,
}

/// Every API token of a tenant with its person: active ones first, then by person and age.
pub async fn tokens_of_tenant<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
) -> Result<Vec<TenantTokenRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.id, t.user_id, t.name, t.created_at, t.revoked_at,
                u.name AS person_name, u.email AS person_email
           FROM api_tokens t JOIN users u ON u.id = t.user_id AND u.tenant_id = t.tenant_id
          WHERE t.tenant_id = $1
          ORDER BY t.revoked_at IS NOT NULL, lower(u.name), u.id, t.created_at DESC, t.id
          LIMIT 1000",
    )
    .bind(tenant_id)
    .fetch_all(db)
    .await
}

/// When a token was created: from the read model, else (it lags) from the person's events.
async fn created_at_of(state: &AppState, me_tenant: Uuid, user_id: Uuid, token_id: Uuid) -> String {
    if let Ok(Some(row)) = users::token(&state.pool, me_tenant, token_id).await {
        return rfc3339(&row.created_at);
    }
    match state
        .store
        .load::<User>(me_tenant, &user_id.to_string())
        .await
    {
        Ok((user, _)) => user
            .api_tokens
            .get(&token_id)
            .map_or_else(|| rfc3339(&Utc::now()), |t| rfc3339(&t.created_at)),
        Err(_) => rfc3339(&Utc::now()),
    }
}

// ---------------------------------------------------------------------------------------------
// The console
// ---------------------------------------------------------------------------------------------

struct TokenView {
    id: Uuid,
    name: String,
    created_at: String,
    created: String,
    active: bool,
}

impl From<TokenRow> for TokenView {
    fn from(row: TokenRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            created_at: rfc3339(&row.created_at),
            created: display_time(&row.created_at),
            active: row.revoked_at.is_none(),
        }
    }
}

struct TeamTokenView {
    id: Uuid,
    name: String,
    person: String,
    mine: bool,
    created_at: String,
    created: String,
    active: bool,
}

/// A token just created, shown once.
struct NewTokenView {
    name: String,
    token: String,
}

/// The create form's value and message.
#[derive(Default)]
struct NameForm {
    name: String,
    error: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "tokens.html")]
struct TokensPage {
    flash: Option<String>,
    csrf: String,
    created: Option<NewTokenView>,
    form: NameForm,
    mine: Vec<TokenView>,
    /// Every token of the tenant (owners and admins only).
    team: Option<Vec<TeamTokenView>>,
}

async fn render_tokens(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    created: Option<NewTokenView>,
    form: NameForm,
    status: StatusCode,
) -> Response {
    let mine = match users::tokens_of(&state.pool, me.tenant_id, me.user_id).await {
        Ok(rows) => rows.into_iter().map(TokenView::from).collect(),
        Err(error) => return internal_page(error),
    };
    let team = if me.may(Action::ManageAllTokens) {
        match tokens_of_tenant(&state.pool, me.tenant_id).await {
            Ok(rows) => Some(
                rows.into_iter()
                    .map(|row| TeamTokenView {
                        id: row.id,
                        name: row.name,
                        person: if row.person_name.is_empty() {
                            row.person_email
                        } else {
                            row.person_name
                        },
                        mine: row.user_id == me.user_id,
                        created_at: rfc3339(&row.created_at),
                        created: display_time(&row.created_at),
                        active: row.revoked_at.is_none(),
                    })
                    .collect(),
            ),
            Err(error) => return internal_page(error),
        }
    } else {
        None
    };
    (
        status,
        TokensPage {
            // The page showing a new token is the answer to a form: no old flash on it.
            flash: if created.is_some() {
                None
            } else {
                cookies.flash.clone()
            },
            csrf: cookies.csrf.clone(),
            created,
            form,
            mine,
            team,
        },
    )
        .into_response()
}

async fn tokens_page(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
) -> Response {
    if let Err(refused) = me.require(Action::OwnTokens) {
        return refused.into_response();
    }
    render_tokens(
        &state,
        &me,
        &cookies,
        None,
        NameForm::default(),
        StatusCode::OK,
    )
    .await
}

#[derive(Debug, Deserialize)]
struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

async fn create_in_console(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Form(form): Form<CreateForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::OwnTokens) {
        return refused.into_response();
    }
    let again = |error: String| NameForm {
        name: form.name.clone(),
        error: Some(error),
    };
    let name = match checked_name(&form.name) {
        Ok(name) => name,
        Err(error) => {
            let form = again(format!("The name {error}."));
            return render_tokens(
                &state,
                &me,
                &cookies,
                None,
                form,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let created = match ident::create_api_token(&state.store, &me.meta(), me.user_id, &name).await {
        Ok(created) => created,
        Err(CommandError::Domain(UserError::InvalidTokenName)) => {
            let form = again("The name must be 1 to 100 characters.".into());
            return render_tokens(
                &state,
                &me,
                &cookies,
                None,
                form,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
        Err(error) => return internal_page(error),
    };
    // The token must work on the very next request.
    state
        .read_your_writes(&["users"], "user", &me.user_id.to_string(), created.version)
        .await;
    let Some(token) = created.token else {
        // A fresh command id is never a replay; say so rather than show nothing.
        return internal_page("a new token command was taken for a replay");
    };
    tracing::info!(user_id = %me.user_id, token_id = %created.token_id, "API token created");
    render_tokens(
        &state,
        &me,
        &cookies,
        Some(NewTokenView { name, token }),
        NameForm::default(),
        StatusCode::OK,
    )
    .await
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn revoke_in_console(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::OwnTokens) {
        return refused.into_response();
    }
    let Some(id) = crate::console::path_uuid(id) else {
        return not_found_page();
    };
    let row = match users::token(&state.pool, me.tenant_id, id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    if row.user_id != me.user_id {
        if let Err(refused) = me.require(Action::ManageAllTokens) {
            return refused.into_response();
        }
    }
    match revoke(&state, &me.meta(), &row).await {
        Ok(()) => redirect_with_flash(
            "/account/tokens",
            &format!("The token “{}” is revoked: it no longer works.", row.name),
        ),
        Err(CommandError::Domain(UserError::AlreadyRevoked)) => redirect_with_flash(
            "/account/tokens",
            &format!("The token “{}” was already revoked.", row.name),
        ),
        Err(CommandError::Domain(e)) if e.kind() == domain::ErrorKind::NotFound => not_found_page(),
        Err(CommandError::NotFound) => not_found_page(),
        Err(CommandError::Conflict) => error_page(
            StatusCode::CONFLICT,
            &cookies,
            "Changed by someone else",
            "This person's tokens changed at the same moment. Reload the page and try again.",
        ),
        Err(error) => internal_page(error),
    }
}

/// Revokes `row` (on its person's aggregate, with `meta`'s actor) and waits until the read
/// model has it, so the token stops working at once.
async fn revoke(
    state: &AppState,
    meta: &EventMeta,
    row: &TokenRow,
) -> Result<(), CommandError<UserError>> {
    let owner = row.user_id.to_string();
    let done = state
        .store
        .execute::<User>(
            &owner,
            UserCommand::RevokeApiToken { token_id: row.id },
            &(),
            meta,
            ConflictPolicy::RetryOnce,
        )
        .await?;
    state
        .read_your_writes(&["users"], "user", &owner, done.version)
        .await;
    tracing::info!(token_id = %row.id, user_id = %row.user_id, actor = %meta.actor, "API token revoked");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------------------------------

/// An API token as its person sees it: never its secret, which is not stored.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ApiToken)]
pub struct TokenJson {
    pub id: Uuid,
    #[schema(example = "deploy script")]
    pub name: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    /// Null while the token works.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub revoked_at: Option<String>,
}

impl From<TokenRow> for TokenJson {
    fn from(row: TokenRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            created_at: rfc3339(&row.created_at),
            revoked_at: row.revoked_at.as_ref().map(rfc3339),
        }
    }
}

/// The caller's own API tokens, newest first (revoked ones too).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ApiTokenList)]
pub struct TokenList {
    pub items: Vec<TokenJson>,
}

/// A token just created, with its secret: shown this once, stored only as a digest.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NewApiToken)]
pub struct NewTokenJson {
    pub id: Uuid,
    #[schema(example = "deploy script")]
    pub name: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    /// The secret to send as `Authorization: Bearer <token>`. It is not shown again.
    #[schema(example = "st_q3Vb0x1rW2m4tYpZ8kL6nA9sD7fG5hJ3eR1uI0oP2cX")]
    pub token: String,
}

/// A new token of the caller. Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateApiToken, example = json!({"name": "deploy script"}))]
pub struct CreateTokenBody {
    /// What the token is for: 1 to 100 characters once trimmed, no control characters.
    #[schema(value_type = String, min_length = 1, max_length = 100, example = "deploy script")]
    name: Option<Value>,
}

/// An email and password traded for a new API token. Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SignIn, example = json!({
    "email": "ann@example.com", "password": "correct horse battery staple",
    "token_name": "laptop CLI"
}))]
pub struct SignInBody {
    #[schema(value_type = String, example = "ann@example.com")]
    email: Option<Value>,
    #[schema(value_type = String, format = Password)]
    password: Option<Value>,
    /// The new token's name: 1 to 100 characters once trimmed, no control characters.
    #[schema(value_type = String, min_length = 1, max_length = 100, example = "laptop CLI")]
    token_name: Option<Value>,
}

/// A required string field of a body, or its validation error.
fn string_field(
    field: &'static str,
    value: Option<&Value>,
) -> Result<String, domain::ValidationError> {
    match value {
        None | Some(Value::Null) => Err(domain::ValidationError::new(field, "is required")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(domain::ValidationError::new(field, "must be a string")),
    }
}

/// A token name field, trimmed and checked.
fn name_field(
    field: &'static str,
    value: Option<&Value>,
) -> Result<String, domain::ValidationError> {
    string_field(field, value)
        .and_then(|s| checked_name(&s).map_err(|m| domain::ValidationError::new(field, m)))
}

fn invalid(errors: impl IntoIterator<Item = Option<domain::ValidationError>>) -> ApiError {
    ApiError::Invalid(errors.into_iter().flatten().collect())
}

/// The caller's API tokens.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    operation_id = "listTokens",
    responses(
        (status = 200, description = "The caller's tokens, newest first", body = TokenList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    me: Principal,
) -> Result<Json<TokenList>, Response> {
    me.require(Action::OwnTokens)
        .map_err(IntoResponse::into_response)?;
    let rows = users::tokens_of(&state.pool, me.tenant_id, me.user_id)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    Ok(Json(TokenList {
        items: rows.into_iter().map(TokenJson::from).collect(),
    }))
}

/// Create an API token for the caller.
///
/// The answer carries the token's secret, this once: only its digest is stored. With an
/// `Idempotency-Key`, a retried request creates nothing more and answers 409, since the
/// secret cannot be shown again (revoke that token if it was lost, and create another).
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    operation_id = "createToken",
    params(IdempotencyKey),
    request_body(content = CreateTokenBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; `token` is shown this once", body = NewTokenJson),
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
pub async fn create_token(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateTokenBody>,
) -> Result<(StatusCode, Json<NewTokenJson>), Response> {
    me.require(Action::OwnTokens)
        .map_err(IntoResponse::into_response)?;
    create_token_as(&state, &me, &headers, body)
        .await
        .map_err(IntoResponse::into_response)
}

async fn create_token_as(
    state: &AppState,
    me: &Principal,
    headers: &HeaderMap,
    body: CreateTokenBody,
) -> Result<(StatusCode, Json<NewTokenJson>), ApiError> {
    let name = name_field("name", body.name.as_ref()).map_err(|e| invalid([Some(e)]))?;
    let meta = command_meta(me, headers)?;
    let created = ident::create_api_token(&state.store, &meta, me.user_id, &name).await?;
    state
        .read_your_writes(&["users"], "user", &me.user_id.to_string(), created.version)
        .await;
    let Some(token) = created.token else {
        return Err(ApiError::Conflict(format!(
            "a token was already created with this Idempotency-Key (id {}); its secret was \
             shown once and cannot be shown again: revoke it if it was lost and create another",
            created.token_id
        )));
    };
    let created_at = created_at_of(state, me.tenant_id, me.user_id, created.token_id).await;
    Ok((
        StatusCode::CREATED,
        Json(NewTokenJson {
            id: created.token_id,
            name,
            created_at,
            token,
        }),
    ))
}

/// Revoke an API token: one's own, or (owners and admins) any of the tenant's.
///
/// The token stops working at once. A token that is already revoked answers 409.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    operation_id = "revokeToken",
    params(
        ("id" = Uuid, Path, description = "The token's id"),
        IdempotencyKey,
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
pub async fn revoke_token(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::OwnTokens) {
        return refused.into_response();
    }
    let id = match crate::api::path_id(id, "token") {
        Ok(id) => id,
        Err(error) => return error.into_response(),
    };
    let row = match users::token(&state.pool, me.tenant_id, id).await {
        Ok(Some(row)) => row,
        Ok(None) => return ApiError::NotFound(format!("token {id} not found")).into_response(),
        Err(error) => return ApiError::from(error).into_response(),
    };
    if row.user_id != me.user_id {
        if let Err(refused) = me.require(Action::ManageAllTokens) {
            return refused.into_response();
        }
    }
    let meta = match command_meta(&me, &headers) {
        Ok(meta) => meta,
        Err(error) => return error.into_response(),
    };
    match revoke(&state, &meta, &row).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// Sign in with an email and password and get a new API token for that person.
///
/// No bearer token is needed. Failed sign-ins are throttled per account and per client
/// address (429 with `Retry-After`). Portal (client) accounts cannot have API tokens (403).
/// The answer carries the token's secret, this once.
#[utoipa::path(
    post,
    path = "/api/v1/sign-in",
    tag = "tokens",
    operation_id = "signIn",
    request_body(content = SignInBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Signed in; `token` is shown this once", body = NewTokenJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 429, description = "Too many failed sign-ins for this account or from this \
            address; `Retry-After` says how many seconds to wait",
            body = crate::error::Problem, content_type = "application/problem+json",
            headers(
                ("Retry-After" = u64, description = "Seconds to wait before trying again"),
                ("x-request-id" = String, description = "The request's id, also in the problem's `request_id`"),
            ),
            example = json!({"type": "about:blank", "title": "Too Many Requests", "status": 429,
                "detail": "too many failed sign-ins; try again in 30 s",
                "request_id": "0b5c3f8e-2d1a-4c7e-9f3b-6a1d2e4f5a6b"})),
        (status = 500, response = InternalError),
    ),
    security(()),
)]
pub async fn sign_in(State(state): State<AppState>, request: Request) -> Response {
    let peer = auth::peer(request.extensions());
    let headers = request.headers().clone();
    let body = match ApiJson::<SignInBody>::from_request(request, &state).await {
        Ok(ApiJson(body)) => body,
        Err(error) => return error.into_response(),
    };
    let email = string_field("email", body.email.as_ref());
    let password = string_field("password", body.password.as_ref());
    let name = name_field("token_name", body.token_name.as_ref());
    let (email, password, name) = match (email, password, name) {
        (Ok(e), Ok(p), Ok(n)) => (e, p, n),
        (e, p, n) => return invalid([e.err(), p.err(), n.err()]).into_response(),
    };
    let address = auth::client_address(&state, &headers, peer);
    let rejected = |status: StatusCode, detail: String| ApiError::Rejected { status, detail };
    let signed_in = match ident::sign_in(&state.store, &email, &password, &address).await {
        Ok(signed_in) => signed_in,
        Err(SignInError::WrongCredentials) => {
            tracing::info!(address, "API sign-in refused: wrong email or password");
            let mut response = rejected(StatusCode::UNAUTHORIZED, "wrong email or password".into())
                .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"SupportTracker\""),
            );
            return response;
        }
        Err(SignInError::Throttled(wait)) => {
            tracing::warn!(address, "API sign-in throttled");
            let seconds = wait.num_seconds().max(1);
            let mut response = rejected(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed sign-ins; try again in {seconds} s"),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            return response;
        }
        Err(SignInError::Disabled) => {
            return rejected(
                StatusCode::FORBIDDEN,
                "this account is disabled; ask an administrator of your organisation".into(),
            )
            .into_response()
        }
        Err(SignInError::Failed(error)) => return ApiError::internal(error).into_response(),
    };
    if !authz::allows(signed_in.role, Action::OwnTokens) {
        return rejected(
            StatusCode::FORBIDDEN,
            "this account cannot have API tokens (see docs/roles.md)".into(),
        )
        .into_response();
    }
    let meta = EventMeta::new(signed_in.tenant_id, signed_in.user_id.to_string());
    let created = match ident::create_api_token(&state.store, &meta, signed_in.user_id, &name).await
    {
        Ok(created) => created,
        Err(error) => return ApiError::from(error).into_response(),
    };
    state
        .read_your_writes(
            &["users"],
            "user",
            &signed_in.user_id.to_string(),
            created.version,
        )
        .await;
    let Some(token) = created.token else {
        return ApiError::internal("a new token command was taken for a replay").into_response();
    };
    tracing::info!(user_id = %signed_in.user_id, token_id = %created.token_id, "signed in through the API");
    let created_at = created_at_of(
        &state,
        signed_in.tenant_id,
        signed_in.user_id,
        created.token_id,
    )
    .await;
    (
        StatusCode::CREATED,
        Json(NewTokenJson {
            id: created.token_id,
            name,
            created_at,
            token,
        }),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_names_follow_the_domain_rule() {
        assert_eq!(checked_name("  deploy  ").unwrap(), "deploy");
        assert!(checked_name("   ").is_err());
        assert!(checked_name(&"x".repeat(101)).is_err());
        assert!(checked_name(&"é".repeat(100)).is_ok());
        assert!(checked_name("a\nb").is_err());
    }
}
