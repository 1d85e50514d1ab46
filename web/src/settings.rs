//! The organisation's settings: name, currency (ISO 4217) and time zone (IANA). Everyone signed
//! in may read them (pages format money and times with them); only owners change them.
//! Console `/settings`, API `GET/PATCH /api/v1/tenant`.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use commands::{CommandError, ConflictPolicy};
use domain::authz::Action;
use domain::identity::{Currency, TimeZone};
use domain::tenant::{Tenant, TenantCommand};
use domain::ValidationError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::{command_meta, ApiJson};
use crate::auth::Principal;
use crate::console::{csrf_refusal, internal_page, redirect_with_flash, Cookies};
use crate::error::ApiError;
use crate::openapi::{
    BadRequest, Forbidden, InternalError, PayloadTooLarge, Unauthorized, Unprocessable,
    UnsupportedMediaType,
};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/settings", get(settings_page).post(save_settings))
        .route("/api/v1/tenant", get(get_tenant).patch(update_tenant))
}

/// The organisation (tenant) the token's person belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantJson {
    id: Uuid,
    name: String,
    /// ISO 4217 code.
    #[schema(example = "USD")]
    currency: String,
    /// IANA time zone name.
    #[schema(example = "America/New_York")]
    time_zone: String,
    /// The prefix of new asset tags (`ACME` gives `ACME-00042`).
    #[schema(example = "ACME")]
    asset_tag_prefix: String,
    /// Asset categories the organisation added to the built-in ones.
    asset_categories: Vec<String>,
}

fn tenant_json(id: Uuid, tenant: &Tenant) -> TenantJson {
    TenantJson {
        id,
        name: tenant.name.clone(),
        currency: tenant.currency.map(|c| c.to_string()).unwrap_or_default(),
        time_zone: tenant.time_zone.map(|t| t.to_string()).unwrap_or_default(),
        asset_tag_prefix: tenant.tag_prefix(),
        asset_categories: tenant.asset_categories.clone(),
    }
}

async fn load(state: &AppState, me: &Principal) -> Result<(Tenant, usize), String> {
    state
        .store
        .load::<Tenant>(me.tenant_id, &me.tenant_id.to_string())
        .await
        .map_err(|e| e.to_string())
}

/// Changes to the organisation's settings; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenantBody {
    name: Option<String>,
    #[schema(example = "EUR")]
    currency: Option<String>,
    #[schema(example = "Europe/Paris")]
    time_zone: Option<String>,
    /// 1 to 12 letters or digits; only assets registered from now on get it.
    asset_tag_prefix: Option<String>,
    /// The organisation's own asset categories (replacing the list; built-in ones need not
    /// be listed). A category still used by assets may be dropped: those keep it.
    asset_categories: Option<Vec<String>>,
}

/// The organisation's commands for the given changes, each field checked.
fn commands_for(
    tenant: &Tenant,
    name: Option<&str>,
    currency: Option<&str>,
    time_zone: Option<&str>,
    asset_tag_prefix: Option<&str>,
    asset_categories: Option<&[String]>,
) -> Result<Vec<TenantCommand>, Vec<ValidationError>> {
    let mut errors = Vec::new();
    let prefix = asset_tag_prefix
        .filter(|p| !p.trim().is_empty())
        .and_then(|p| {
            domain::asset::parse_tag_prefix(p)
                .map_err(|e| errors.push(e))
                .ok()
        });
    let categories = asset_categories.map(|list| {
        if list.len() > 50 {
            errors.push(ValidationError::new(
                "asset_categories",
                "may hold at most 50 categories",
            ));
        }
        list.iter()
            .filter(|c| !c.trim().is_empty())
            .filter_map(|c| {
                domain::asset::parse_category_name(c)
                    .map_err(|e| {
                        errors.push(ValidationError::new(
                            "asset_categories",
                            format!("“{}”: {}", c.trim(), e.message),
                        ))
                    })
                    .ok()
            })
            .collect::<Vec<_>>()
    });
    let name = name.map(str::trim).map(|n| {
        if n.is_empty() || n.chars().count() > 200 || n.chars().any(char::is_control) {
            errors.push(ValidationError::new("name", "must be 1 to 200 characters"));
        }
        n.to_owned()
    });
    let currency = currency.and_then(|c| Currency::parse(c).map_err(|e| errors.push(e)).ok());
    let time_zone = time_zone.and_then(|t| TimeZone::parse(t).map_err(|e| errors.push(e)).ok());
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut commands = Vec::new();
    if let Some(name) = name.filter(|n| *n != tenant.name) {
        commands.push(TenantCommand::Rename { name });
    }
    if currency.is_some() || time_zone.is_some() {
        commands.push(TenantCommand::ChangeSettings {
            currency,
            time_zone,
        });
    }
    let tag_prefix = prefix.unwrap_or_else(|| tenant.tag_prefix());
    let mut categories = categories.unwrap_or_else(|| tenant.asset_categories.clone());
    categories.sort();
    categories.dedup();
    categories.retain(|c| !domain::asset::BUILT_IN_CATEGORIES.contains(&c.as_str()));
    if tag_prefix != tenant.tag_prefix() || categories != tenant.asset_categories {
        commands.push(TenantCommand::ChangeAssetSettings {
            tag_prefix,
            categories,
        });
    }
    Ok(commands)
}

/// Runs the commands; returns the state after them.
async fn apply(
    state: &AppState,
    meta: commands::EventMeta,
    commands: Vec<TenantCommand>,
) -> Result<Option<Tenant>, String> {
    let mut last = None;
    for (i, command) in commands.into_iter().enumerate() {
        let meta = meta.derived(&[i as u8]);
        let done = state
            .store
            .execute::<Tenant>(
                &meta.tenant_id.to_string(),
                command,
                &(),
                &meta,
                ConflictPolicy::RetryOnce,
            )
            .await
            .map_err(|e: CommandError<_>| e.to_string())?;
        last = Some(done.state);
    }
    Ok(last)
}

/// The organisation's settings.
#[utoipa::path(
    get,
    path = "/api/v1/tenant",
    tag = "settings",
    operation_id = "getTenant",
    responses(
        (status = 200, description = "The organisation", body = TenantJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn get_tenant(State(state): State<AppState>, me: Principal) -> Response {
    if let Err(refused) = me.require(Action::OwnAccount) {
        return refused.into_response();
    }
    match load(&state, &me).await {
        Ok((tenant, _)) => Json(tenant_json(me.tenant_id, &tenant)).into_response(),
        Err(error) => ApiError::internal(error).into_response(),
    }
}

/// Change the organisation's name, currency or time zone (owners only).
#[utoipa::path(
    patch,
    path = "/api/v1/tenant",
    tag = "settings",
    operation_id = "updateTenant",
    params(crate::api::IdempotencyKey),
    request_body(content = UpdateTenantBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The organisation after the change", body = TenantJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn update_tenant(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    body: Result<ApiJson<UpdateTenantBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::TenantSettings) {
        return refused.into_response();
    }
    let ApiJson(body) = match body {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let meta = match command_meta(&me, &headers) {
        Ok(meta) => meta,
        Err(error) => return error.into_response(),
    };
    let (tenant, _) = match load(&state, &me).await {
        Ok(loaded) => loaded,
        Err(error) => return ApiError::internal(error).into_response(),
    };
    let commands = match commands_for(
        &tenant,
        body.name.as_deref(),
        body.currency.as_deref(),
        body.time_zone.as_deref(),
        body.asset_tag_prefix.as_deref(),
        body.asset_categories.as_deref(),
    ) {
        Ok(commands) => commands,
        Err(errors) => return ApiError::Invalid(errors).into_response(),
    };
    match apply(&state, meta, commands).await {
        Ok(after) => Json(tenant_json(me.tenant_id, &after.unwrap_or(tenant))).into_response(),
        Err(error) => ApiError::internal(error).into_response(),
    }
}

#[derive(Default)]
struct SettingsForm {
    name: String,
    currency: String,
    time_zone: String,
    asset_tag_prefix: String,
    /// One per line.
    asset_categories: String,
    name_error: Option<String>,
    currency_error: Option<String>,
    time_zone_error: Option<String>,
    prefix_error: Option<String>,
    categories_error: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "settings.html")]
struct SettingsPage {
    flash: Option<String>,
    csrf: String,
    can_change: bool,
    form: SettingsForm,
    currencies: Vec<&'static str>,
    time_zones: Vec<&'static str>,
}

fn page(me: &Principal, cookies: &Cookies, form: SettingsForm) -> SettingsPage {
    SettingsPage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        can_change: me.may(Action::TenantSettings),
        form,
        currencies: Currency::codes().collect(),
        time_zones: TimeZone::names().collect(),
    }
}

async fn settings_page(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
) -> Response {
    if let Err(refused) = me.require(Action::OwnAccount) {
        return refused.into_response();
    }
    let (tenant, _) = match load(&state, &me).await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let json = tenant_json(me.tenant_id, &tenant);
    page(
        &me,
        &cookies,
        SettingsForm {
            name: json.name,
            currency: json.currency,
            time_zone: json.time_zone,
            asset_tag_prefix: json.asset_tag_prefix,
            asset_categories: json.asset_categories.join("\n"),
            ..Default::default()
        },
    )
    .into_response()
}

#[derive(Debug, Deserialize)]
struct SettingsInput {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    asset_tag_prefix: String,
    /// One per line (or separated by commas).
    #[serde(default)]
    asset_categories: String,
}

async fn save_settings(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Form(input): Form<SettingsInput>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &input.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::TenantSettings) {
        return refused.into_response();
    }
    let (tenant, _) = match load(&state, &me).await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let commands = match commands_for(
        &tenant,
        Some(&input.name),
        Some(&input.currency),
        Some(&input.time_zone),
        Some(&input.asset_tag_prefix),
        Some(
            &input
                .asset_categories
                .split(['\n', ','])
                .map(|c| c.trim().to_owned())
                .collect::<Vec<_>>(),
        ),
    ) {
        Ok(commands) => commands,
        Err(errors) => {
            let message = |field: &str, label: &str| {
                errors
                    .iter()
                    .find(|e| e.field == field)
                    .map(|e| format!("{label} {}", e.message))
            };
            let form = SettingsForm {
                name_error: message("name", "The name"),
                currency_error: message("currency", "The currency:"),
                time_zone_error: message("time_zone", "The time zone:"),
                prefix_error: message("asset_tag_prefix", "The tag prefix"),
                categories_error: message("asset_categories", "Category"),
                name: input.name,
                currency: input.currency,
                time_zone: input.time_zone,
                asset_tag_prefix: input.asset_tag_prefix,
                asset_categories: input.asset_categories,
            };
            return (StatusCode::UNPROCESSABLE_ENTITY, page(&me, &cookies, form)).into_response();
        }
    };
    if commands.is_empty() {
        return redirect_with_flash("/settings", "Nothing changed.");
    }
    match apply(&state, me.meta(), commands).await {
        Ok(_) => redirect_with_flash("/settings", "Settings saved."),
        Err(error) => internal_page(error),
    }
}
