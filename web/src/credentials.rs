//! The credentials vault (issue 4): the API, and the operations the console shares with it
//! (add, change, reveal, share). Every operation needs `UseVault` (owner, admin, technician).
//! Secrets arrive in request bodies, are sealed into `vault_secrets` and leave only in a
//! reveal's answer; they never reach the log, a read model, a log line or an error message.

use std::collections::BTreeMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use commands::{ConflictPolicy, EventMeta, Executed};
use domain::authz::Action;
use domain::credential::{
    Credential, CredentialCommand, CredentialDetails, SecretRef, MAX_SHARE_DAYS, MAX_SHARE_VIEWS,
};
use domain::ValidationError;
use projections::credentials::{self, CredentialRow};
use projections::{assets, companies};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::{command_meta, parse_id, path_id, ApiJson, IdempotencyKey};
use crate::auth::{self, Principal};
use crate::error::ApiError;
use crate::openapi::{
    BadRequest, Conflict, Forbidden, InternalError, NotFound, PayloadTooLarge, Unauthorized,
    Unprocessable, UnsupportedMediaType,
};
use crate::AppState;

/// The projections a credential page or answer reads.
pub const CREDENTIAL_VIEWS: &[&str] = &["credentials", "search"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/assets/{id}/credentials",
            get(list_for_asset).post(create_for_asset),
        )
        .route(
            "/api/v1/companies/{id}/credentials",
            get(list_for_company).post(create_for_company),
        )
        .route(
            "/api/v1/credentials/{id}",
            get(get_credential)
                .patch(update_credential)
                .delete(remove_credential),
        )
        .route("/api/v1/credentials/{id}/reveal", post(reveal_credential))
        .route("/api/v1/credentials/{id}/shares", post(share_credential))
        .route(
            "/api/v1/credentials/{id}/shares/{share_id}",
            delete(revoke_share),
        )
        .layer(axum::extract::DefaultBodyLimit::max(crate::api::BODY_LIMIT))
}

/// A credential as the API shows it: never a secret, only which ones it holds.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Credential)]
pub struct CredentialJson {
    id: Uuid,
    company_id: Uuid,
    asset_id: Option<Uuid>,
    label: String,
    username: String,
    url: String,
    has_password: bool,
    has_totp: bool,
    has_notes: bool,
    /// How many times its secrets were revealed.
    reveals: i64,
    last_revealed_at: Option<DateTime<Utc>>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<CredentialRow> for CredentialJson {
    fn from(row: CredentialRow) -> Self {
        Self {
            id: row.id,
            company_id: row.company_id,
            asset_id: row.asset_id,
            label: row.label,
            username: row.username,
            url: row.url,
            has_password: row.has_password,
            has_totp: row.has_totp,
            has_notes: row.has_notes,
            reveals: row.reveals,
            last_revealed_at: row.last_revealed_at,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialList {
    items: Vec<CredentialJson>,
}

/// A credential's fields. `label` is required on creation; on `PATCH` only the fields present
/// change, and an empty secret removes it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialBody {
    #[schema(example = "Router admin")]
    pub label: Option<String>,
    #[schema(example = "admin")]
    pub username: Option<String>,
    /// Sealed at once; never returned but by `reveal`.
    pub password: Option<String>,
    #[schema(example = "https://192.0.2.1")]
    pub url: Option<String>,
    /// Sealed like the password (recovery codes and the like belong here).
    pub notes: Option<String>,
    /// Base32, or an `otpauth://totp/...` URI; sealed.
    pub totp_secret: Option<String>,
}

/// What a reveal shows.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevealedJson {
    pub username: String,
    pub password: Option<String>,
    pub totp_secret: Option<String>,
    pub notes: Option<String>,
    /// The current TOTP code, when there is a TOTP secret.
    pub totp_code: Option<String>,
    /// Seconds the code stays valid.
    pub totp_valid_for: Option<i64>,
}

/// The most characters of a password, a TOTP secret or the secret notes.
const SECRET_MAX: usize = 10_000;

/// The secrets of a body checked: (field, plaintext) for each present one.
fn secrets_of(body: &CredentialBody) -> Result<Vec<(&'static str, String)>, Vec<ValidationError>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for (field, value) in [
        ("password", &body.password),
        ("totp_secret", &body.totp_secret),
        ("notes", &body.notes),
    ] {
        let Some(value) = value else { continue };
        if value.chars().count() > SECRET_MAX {
            errors.push(ValidationError::new(
                field,
                format!("must be at most {SECRET_MAX} characters"),
            ));
            continue;
        }
        let value = if field == "totp_secret" && !value.trim().is_empty() {
            match commands::totp::parse_secret(value) {
                Ok(canonical) => canonical,
                Err(message) => {
                    errors.push(ValidationError::new(field, message));
                    continue;
                }
            }
        } else {
            value.clone()
        };
        out.push((field, value));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Seals `secrets` as a new set for `credential_id`; its id comes from the command, so a
/// retried command seals nothing twice.
async fn seal_set(
    state: &AppState,
    meta: &EventMeta,
    credential_id: Uuid,
    secrets: &BTreeMap<String, String>,
) -> Result<SecretRef, ApiError> {
    let secret_id = Uuid::new_v5(&meta.command_id, b"secret");
    let fields: Vec<(&str, &str)> = secrets
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    state
        .settings()
        .vault
        .store(
            &state.pool,
            meta.tenant_id,
            credential_id,
            secret_id,
            &fields,
        )
        .await
        .map_err(|e| ApiError::internal(format!("could not store the secret: {e}")))?;
    let has = |f: &str| secrets.get(f).is_some_and(|v| !v.is_empty());
    Ok(SecretRef {
        secret_id,
        has_password: has("password"),
        has_totp: has("totp_secret"),
        has_notes: has("notes"),
    })
}

/// Adds a credential to a company, or to one of its assets.
pub async fn add(
    state: &AppState,
    meta: &EventMeta,
    company_id: Uuid,
    asset_id: Option<Uuid>,
    body: &CredentialBody,
) -> Result<Executed<Credential>, ApiError> {
    let mut errors = Vec::new();
    let details = CredentialDetails::parse(
        body.label.as_deref().unwrap_or(""),
        body.username.as_deref().unwrap_or(""),
        body.url.as_deref().unwrap_or(""),
    )
    .map_err(|e| errors.extend(e))
    .ok();
    let secrets = secrets_of(body).map_err(|e| errors.extend(e)).ok();
    let (Some(details), Some(secrets)) = (details, secrets) else {
        return Err(ApiError::Invalid(errors));
    };
    let id = meta.new_aggregate_id();
    let secrets: BTreeMap<String, String> = secrets
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let secret = seal_set(state, meta, id, &secrets).await?;
    let done = state
        .store
        .create::<Credential>(
            &id.to_string(),
            CredentialCommand::Add {
                company_id,
                asset_id,
                details,
                secret,
            },
            &(),
            meta,
        )
        .await?;
    state
        .read_your_writes(
            CREDENTIAL_VIEWS,
            "credential",
            &done.aggregate_id,
            done.version,
        )
        .await;
    Ok(done)
}

/// Loads a live credential of `tenant_id`.
pub async fn load(state: &AppState, tenant_id: Uuid, id: Uuid) -> Result<Credential, ApiError> {
    let (credential, _) = state
        .store
        .load::<Credential>(tenant_id, &id.to_string())
        .await?;
    if !credential.exists || credential.removed {
        return Err(ApiError::NotFound(format!("credential {id} not found")));
    }
    Ok(credential)
}

/// Records the reveal (who, when, from where), then opens the secrets.
pub async fn reveal(
    state: &AppState,
    meta: &EventMeta,
    id: Uuid,
    address: String,
) -> Result<RevealedJson, ApiError> {
    let done = state
        .store
        .execute::<Credential>(
            &id.to_string(),
            CredentialCommand::Reveal { address },
            &(),
            meta,
            ConflictPolicy::RetryOnce,
        )
        .await?;
    let credential = done.state;
    open(state, meta.tenant_id, &credential).await
}

/// Opens a credential's secrets (the caller has recorded why).
pub async fn open(
    state: &AppState,
    tenant_id: Uuid,
    credential: &Credential,
) -> Result<RevealedJson, ApiError> {
    let mut secrets = state
        .settings()
        .vault
        .open_set(&state.pool, tenant_id, credential.secret.secret_id)
        .await
        .map_err(|e| ApiError::internal(format!("could not open the secret: {e}")))?;
    let totp_secret = secrets.remove("totp_secret");
    let code = totp_secret
        .as_deref()
        .and_then(|s| commands::totp::code_at(s, Utc::now().timestamp()));
    Ok(RevealedJson {
        username: credential.details.username.clone(),
        password: secrets.remove("password"),
        notes: secrets.remove("notes"),
        totp_secret,
        totp_code: code.as_ref().map(|(c, _)| c.clone()),
        totp_valid_for: code.map(|(_, s)| s),
    })
}

/// Applies a change: new details, and a new sealed set when a secret changed (the secrets
/// not in the body are carried over from the current set).
pub async fn change(
    state: &AppState,
    meta: &EventMeta,
    id: Uuid,
    body: &CredentialBody,
) -> Result<Option<Executed<Credential>>, ApiError> {
    let credential = load(state, meta.tenant_id, id).await?;
    let mut errors = Vec::new();
    let d = &credential.details;
    let details = CredentialDetails::parse(
        body.label.as_deref().unwrap_or(&d.label),
        body.username.as_deref().unwrap_or(&d.username),
        body.url.as_deref().unwrap_or(&d.url),
    )
    .map_err(|e| errors.extend(e))
    .ok();
    let secrets = secrets_of(body).map_err(|e| errors.extend(e)).ok();
    let (Some(details), Some(new_secrets)) = (details, secrets) else {
        return Err(ApiError::Invalid(errors));
    };
    let mut commands = Vec::new();
    if details != credential.details {
        commands.push(CredentialCommand::Update { details });
    }
    if !new_secrets.is_empty() {
        let mut merged = state
            .settings()
            .vault
            .open_set(&state.pool, meta.tenant_id, credential.secret.secret_id)
            .await
            .map_err(|e| ApiError::internal(format!("could not open the secret: {e}")))?;
        let before = merged.clone();
        for (field, value) in new_secrets {
            if value.is_empty() {
                merged.remove(field);
            } else {
                merged.insert(field.to_owned(), value);
            }
        }
        if merged != before {
            let secret = seal_set(state, &meta.derived(b"secret"), id, &merged).await?;
            commands.push(CredentialCommand::ChangeSecret { secret });
        }
    }
    let mut last = None;
    for (i, command) in commands.into_iter().enumerate() {
        last = Some(
            state
                .store
                .execute::<Credential>(
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
        // The sets this credential no longer uses are deleted: nothing keeps old secrets.
        commands::secrets::Vault::forget(
            &state.pool,
            meta.tenant_id,
            id,
            Some(done.state.secret.secret_id),
        )
        .await?;
        state
            .read_your_writes(
                CREDENTIAL_VIEWS,
                "credential",
                &done.aggregate_id,
                done.version,
            )
            .await;
    }
    Ok(last)
}

/// A new share link: the token is shown once, only its digest is kept.
pub struct NewShare {
    pub share_id: Uuid,
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub max_views: u32,
}

pub async fn share(
    state: &AppState,
    meta: &EventMeta,
    id: Uuid,
    expires_in_hours: i64,
    max_views: u32,
) -> Result<NewShare, ApiError> {
    let (token, digest) = commands::identity::new_token("");
    let share_id = Uuid::new_v5(&meta.command_id, b"share");
    let now = Utc::now();
    let expires_at = now + chrono::Duration::hours(expires_in_hours);
    let done = state
        .store
        .execute::<Credential>(
            &id.to_string(),
            CredentialCommand::Share {
                share_id,
                token_digest: digest,
                expires_at,
                max_views,
                now,
            },
            &(),
            meta,
            ConflictPolicy::RetryOnce,
        )
        .await?;
    if done.replayed {
        return Err(ApiError::Conflict(
            "this share link was already made; its link was shown once and cannot be shown again"
                .into(),
        ));
    }
    state
        .read_your_writes(
            &["credentials"],
            "credential",
            &done.aggregate_id,
            done.version,
        )
        .await;
    Ok(NewShare {
        share_id,
        token,
        expires_at,
        max_views,
    })
}

fn share_url(state: &AppState, token: &str) -> String {
    format!("{}/s/{token}", state.settings().public_url)
}

async fn owner_of_asset(
    state: &AppState,
    me: &Principal,
    asset_id: Uuid,
) -> Result<Uuid, ApiError> {
    assets::get(&state.pool, me.tenant_id, asset_id)
        .await?
        .map(|a| a.company_id)
        .ok_or_else(|| ApiError::NotFound(format!("asset {asset_id} not found")))
}

async fn live_company(state: &AppState, me: &Principal, company_id: Uuid) -> Result<(), ApiError> {
    match companies::get(&state.pool, me.tenant_id, company_id).await? {
        None => Err(ApiError::NotFound(format!(
            "company {company_id} not found"
        ))),
        Some(c) if c.archived => Err(ApiError::Conflict(
            "the company is archived: restore it before adding credentials".into(),
        )),
        Some(_) => Ok(()),
    }
}

async fn answer(state: &AppState, me: &Principal, id: Uuid) -> Result<CredentialJson, ApiError> {
    credentials::get(&state.pool, me.tenant_id, id)
        .await?
        .filter(|c| !c.removed)
        .map(CredentialJson::from)
        .ok_or_else(|| ApiError::NotFound(format!("credential {id} not found")))
}

/// Add a credential to an asset. The answer never contains a secret.
#[utoipa::path(
    post,
    path = "/api/v1/assets/{id}/credentials",
    tag = "credentials",
    operation_id = "createAssetCredential",
    params(("id" = Uuid, Path, description = "The asset's id"), IdempotencyKey),
    request_body(content = CredentialBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Added", body = CredentialJson),
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
pub async fn create_for_asset(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<ApiJson<CredentialBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::UseVault) {
        return refused.into_response();
    }
    let outcome = async {
        let asset_id = path_id(path, "asset")?;
        let ApiJson(body) = body?;
        let company_id = owner_of_asset(&state, &me, asset_id).await?;
        live_company(&state, &me, company_id).await?;
        let meta = command_meta(&me, &headers)?;
        let done = add(&state, &meta, company_id, Some(asset_id), &body).await?;
        answer(&state, &me, parse_id(&done.aggregate_id, "credential")?).await
    };
    match outcome.await {
        Ok(json) => (StatusCode::CREATED, Json(json)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Add a credential to a company (not tied to one asset: a portal, a mailbox, Wi-Fi).
#[utoipa::path(
    post,
    path = "/api/v1/companies/{id}/credentials",
    tag = "credentials",
    operation_id = "createCompanyCredential",
    params(("id" = Uuid, Path, description = "The company's id"), IdempotencyKey),
    request_body(content = CredentialBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Added", body = CredentialJson),
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
pub async fn create_for_company(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<ApiJson<CredentialBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::UseVault) {
        return refused.into_response();
    }
    let outcome = async {
        let company_id = path_id(path, "company")?;
        let ApiJson(body) = body?;
        live_company(&state, &me, company_id).await?;
        let meta = command_meta(&me, &headers)?;
        let done = add(&state, &meta, company_id, None, &body).await?;
        answer(&state, &me, parse_id(&done.aggregate_id, "credential")?).await
    };
    match outcome.await {
        Ok(json) => (StatusCode::CREATED, Json(json)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// An asset's credentials (labels and usernames; never secrets).
#[utoipa::path(
    get,
    path = "/api/v1/assets/{id}/credentials",
    tag = "credentials",
    operation_id = "listAssetCredentials",
    params(("id" = Uuid, Path, description = "The asset's id")),
    responses(
        (status = 200, description = "The asset's credentials", body = CredentialList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn list_for_asset(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::UseVault) {
        return refused.into_response();
    }
    let outcome = async {
        let asset_id = path_id(path, "asset")?;
        owner_of_asset(&state, &me, asset_id).await?;
        let rows = credentials::list(&state.pool, me.tenant_id, None, Some(asset_id)).await?;
        Ok::<_, ApiError>(CredentialList {
            items: rows.into_iter().map(CredentialJson::from).collect(),
        })
    };
    match outcome.await {
        Ok(json) => Json(json).into_response(),
        Err(error) => error.into_response(),
    }
}

/// A company's credentials, its assets' included.
#[utoipa::path(
    get,
    path = "/api/v1/companies/{id}/credentials",
    tag = "credentials",
    operation_id = "listCompanyCredentials",
    params(("id" = Uuid, Path, description = "The company's id")),
    responses(
        (status = 200, description = "The company's credentials", body = CredentialList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn list_for_company(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::UseVault) {
        return refused.into_response();
    }
    let outcome = async {
        let company_id = path_id(path, "company")?;
        companies::get(&state.pool, me.tenant_id, company_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("company {company_id} not found")))?;
        let rows = credentials::list(&state.pool, me.tenant_id, Some(company_id), None).await?;
        Ok::<_, ApiError>(CredentialList {
            items: rows.into_iter().map(CredentialJson::from).collect(),
        })
    };
    match outcome.await {
        Ok(json) => Json(json).into_response(),
        Err(error) => error.into_response(),
    }
}

/// One credential (never its secrets).
#[utoipa::path(
    get,
    path = "/api/v1/credentials/{id}",
    tag = "credentials",
    operation_id = "getCredential",
    params(("id" = Uuid, Path, description = "The credential's id")),
    responses(
        (status = 200, description = "The credential", body = CredentialJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn get_credential(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::UseVault) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "credential")?;
        answer(&state, &me, id).await
    };
    match outcome.await {
        Ok(json) => Json(json).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Change a credential: only the fields present change; an empty secret removes it.
#[utoipa::path(
    patch,
    path = "/api/v1/credentials/{id}",
    tag = "credentials",
    operation_id = "updateCredential",
    params(("id" = Uuid, Path, description = "The credential's id"), IdempotencyKey),
    request_body(content = CredentialBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The credential after the change", body = CredentialJson),
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
pub async fn update_credential(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<ApiJson<CredentialBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::UseVault) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "credential")?;
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        change(&state, &meta, id, &body).await?;
        answer(&state, &me, id).await
    };
    match outcome.await {
        Ok(json) => Json(json).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Remove a credential; its sealed secrets are deleted (the history keeps that it existed).
#[utoipa::path(
    delete,
    path = "/api/v1/credentials/{id}",
    tag = "credentials",
    operation_id = "removeCredential",
    params(("id" = Uuid, Path, description = "The credential's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn remove_credential(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = me.require(Action::UseVault) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "credential")?;
        remove(&state, &command_meta(&me, &headers)?, id).await
    };
    match outcome.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    }
}

pub async fn remove(state: &AppState, meta: &EventMeta, id: Uuid) -> Result<(), ApiError> {
    load(state, meta.tenant_id, id).await?;
    let done = state
        .store
        .execute::<Credential>(
            &id.to_string(),
            CredentialCommand::Remove,
            &(),
            meta,
            ConflictPolicy::RetryOnce,
        )
        .await?;
    commands::secrets::Vault::forget(&state.pool, meta.tenant_id, id, None).await?;
    state
        .read_your_writes(
            CREDENTIAL_VIEWS,
            "credential",
            &done.aggregate_id,
            done.version,
        )
        .await;
    Ok(())
}

/// Reveal a credential's secrets. The reveal is recorded first (who, when, from which
/// address): it shows in the asset's history and the audit trail.
#[utoipa::path(
    post,
    path = "/api/v1/credentials/{id}/reveal",
    tag = "credentials",
    operation_id = "revealCredential",
    params(("id" = Uuid, Path, description = "The credential's id")),
    responses(
        (status = 200, description = "The secrets", body = RevealedJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn reveal_credential(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    if let Err(refused) = me.require(Action::UseVault) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "credential")?;
        load(&state, me.tenant_id, id).await?;
        let address = auth::client_address(&state, &headers, auth::peer(&extensions));
        // Each reveal is its own event: no idempotency key here.
        reveal(&state, &me.meta(), id, address).await
    };
    match outcome.await {
        Ok(json) => (
            [(axum::http::header::CACHE_CONTROL, "no-store")],
            Json(json),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

/// A share link to make: its lifetime and how many views it allows.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareBody {
    /// 1 to 720 (30 days); default 24.
    expires_in_hours: Option<i64>,
    /// 1 to 100; default 1.
    max_views: Option<u32>,
}

/// A new share link. `url` is shown once: only a digest of its token is stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShareJson {
    id: Uuid,
    url: String,
    expires_at: DateTime<Utc>,
    max_views: u32,
}

/// Make a share link that shows the secrets to someone without an account.
#[utoipa::path(
    post,
    path = "/api/v1/credentials/{id}/shares",
    tag = "credentials",
    operation_id = "shareCredential",
    params(("id" = Uuid, Path, description = "The credential's id"), IdempotencyKey),
    request_body(content = ShareBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The link (shown once)", body = ShareJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn share_credential(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<ApiJson<ShareBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::UseVault) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "credential")?;
        let ApiJson(body) = body?;
        let hours = body.expires_in_hours.unwrap_or(24);
        let views = body.max_views.unwrap_or(1);
        let mut errors = Vec::new();
        if !(1..=MAX_SHARE_DAYS * 24).contains(&hours) {
            errors.push(ValidationError::new(
                "expires_in_hours",
                format!("must be from 1 to {}", MAX_SHARE_DAYS * 24),
            ));
        }
        if !(1..=MAX_SHARE_VIEWS).contains(&views) {
            errors.push(ValidationError::new(
                "max_views",
                format!("must be from 1 to {MAX_SHARE_VIEWS}"),
            ));
        }
        if !errors.is_empty() {
            return Err(ApiError::Invalid(errors));
        }
        load(&state, me.tenant_id, id).await?;
        let made = share(&state, &command_meta(&me, &headers)?, id, hours, views).await?;
        Ok(ShareJson {
            id: made.share_id,
            url: share_url(&state, &made.token),
            expires_at: made.expires_at,
            max_views: made.max_views,
        })
    };
    match outcome.await {
        Ok(json) => (
            StatusCode::CREATED,
            [(axum::http::header::CACHE_CONTROL, "no-store")],
            Json(json),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

/// Revoke a share link: it stops working at once.
#[utoipa::path(
    delete,
    path = "/api/v1/credentials/{id}/shares/{share_id}",
    tag = "credentials",
    operation_id = "revokeShare",
    params(
        ("id" = Uuid, Path, description = "The credential's id"),
        ("share_id" = Uuid, Path, description = "The share link's id"),
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
pub async fn revoke_share(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::UseVault) {
        return refused.into_response();
    }
    let outcome = async {
        let Path((id, share_id)) =
            path.map_err(|_| ApiError::BadRequest("ids are UUIDs".into()))?;
        let (id, share_id) = (parse_id(&id, "credential")?, parse_id(&share_id, "share")?);
        revoke(&state, &me.meta(), id, share_id).await
    };
    match outcome.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    }
}

pub async fn revoke(
    state: &AppState,
    meta: &EventMeta,
    id: Uuid,
    share_id: Uuid,
) -> Result<(), ApiError> {
    load(state, meta.tenant_id, id).await?;
    let done = state
        .store
        .execute::<Credential>(
            &id.to_string(),
            CredentialCommand::RevokeShare { share_id },
            &(),
            meta,
            ConflictPolicy::RetryOnce,
        )
        .await?;
    state
        .read_your_writes(
            &["credentials"],
            "credential",
            &done.aggregate_id,
            done.version,
        )
        .await;
    Ok(())
}
