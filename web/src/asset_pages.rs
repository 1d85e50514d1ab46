//! The console's pages for assets and the vault (issue 4): a company's Assets and Credentials
//! tabs, the asset page (details, edit, status, assignment, credentials, history), the
//! credential page (reveal with the current TOTP code, share links), and the public page a
//! share link opens. Forms post back with htmx; every one also works as a plain page.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::PathRejection;
use axum::extract::{Form, Path, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use domain::asset::AssetStatus;
use domain::authz::Action;
use domain::credential::Credential;
use domain::ValidationError;
use projections::assets::{self, AssetQuery, AssetRow};
use projections::companies::{self, CompanyRow};
use projections::contacts::{self, ContactRow};
use projections::credentials::{self, CredentialRow, ShareRow};
use projections::history;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::{self, Principal};
use crate::console::two_ids;
use crate::console::{
    capitalise, company_for_tab, csrf_refusal, display_time, error_page, form_done, internal_page,
    not_found_page, path_uuid, redirect_with_flash, CompanyTab, CompanyTabs, Cookies, FormParts,
};
use crate::credentials::{self as vault, CredentialBody, RevealedJson};
use crate::documents;
use crate::equipment::{self, AssetBody};
use crate::error::ApiError;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/companies/{id}/assets",
            get(company_assets).post(create_asset),
        )
        .route(
            "/companies/{id}/credentials",
            get(company_credentials).post(add_company_credential),
        )
        .route("/assets", get(assets_page))
        .route("/assets/{id}", get(asset_page).post(edit_asset))
        .route("/assets/{id}/credentials", post(add_asset_credential))
        .route(
            "/assets/{id}/documents",
            post(attach_document).layer(axum::extract::DefaultBodyLimit::max(
                documents::MAX_DOCUMENT_BYTES + 64 * 1024,
            )),
        )
        .route(
            "/assets/{id}/documents/{document_id}",
            get(download_document),
        )
        .route(
            "/assets/{id}/documents/{document_id}/remove",
            post(remove_document),
        )
        .route("/credentials/{id}", get(credential_page))
        .route("/credentials/{id}/reveal", post(reveal_in_console))
        .route("/credentials/{id}/shares", post(share_in_console))
        .route(
            "/credentials/{id}/shares/{share_id}/revoke",
            post(revoke_in_console),
        )
        .route("/credentials/{id}/remove", post(remove_in_console))
        .route("/s/{token}", get(shared_page).post(shared_reveal))
}

/// The values of the asset form, as typed.
#[derive(Debug, Default, Deserialize, Clone)]
struct AssetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    make: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    serial_number: String,
    #[serde(default)]
    mac_address: String,
    #[serde(default)]
    ip_address: String,
    #[serde(default)]
    operating_system: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    purchase_date: String,
    #[serde(default)]
    warranty_end: String,
    #[serde(default)]
    vendor: String,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    contact_id: String,
}

impl AssetForm {
    fn of(row: &AssetRow) -> Self {
        let date = |d: Option<chrono::NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
        Self {
            csrf: String::new(),
            name: row.name.clone(),
            category: row.category.clone(),
            make: row.make.clone(),
            model: row.model.clone(),
            serial_number: row.serial_number.clone(),
            mac_address: row.mac_address.clone(),
            ip_address: row.ip_address.clone(),
            operating_system: row.operating_system.clone(),
            location: row.location.clone(),
            purchase_date: date(row.purchase_date),
            warranty_end: date(row.warranty_end),
            vendor: row.vendor.clone(),
            notes: row.notes.clone(),
            status: row.status.clone(),
            contact_id: row.contact_id.map(|c| c.to_string()).unwrap_or_default(),
        }
    }

    fn body(&self, company_id: Option<Uuid>) -> Result<AssetBody, ValidationError> {
        let contact_id = match self.contact_id.trim() {
            "" => None,
            id => Some(Uuid::parse_str(id).map_err(|_| {
                ValidationError::new("contact_id", "must be one of the company's contacts")
            })?),
        };
        let value = serde_json::json!({
            "company_id": company_id,
            "name": self.name, "category": self.category, "make": self.make,
            "model": self.model, "serial_number": self.serial_number,
            "mac_address": self.mac_address, "ip_address": self.ip_address,
            "operating_system": self.operating_system, "location": self.location,
            "purchase_date": self.purchase_date, "warranty_end": self.warranty_end,
            "vendor": self.vendor, "notes": self.notes,
            "status": if self.status.is_empty() { "active" } else { self.status.as_str() },
            "contact_id": contact_id,
        });
        let mut value = value;
        if company_id.is_none() {
            value.as_object_mut().map(|o| o.remove("company_id"));
        }
        serde_json::from_value(value).map_err(|e| ValidationError::new("name", e.to_string()))
    }
}

struct Field {
    name: &'static str,
    label: &'static str,
    kind: &'static str,
    value: String,
    error: Option<String>,
}

fn asset_fields(form: &AssetForm, errors: &[ValidationError]) -> Vec<Field> {
    let error = |name: &str, label: &str| {
        errors
            .iter()
            .find(|e| e.field == name)
            .map(|e| format!("{label} {}.", e.message))
    };
    let f = |name: &'static str, label: &'static str, kind: &'static str, value: &str| Field {
        name,
        label,
        kind,
        value: value.to_owned(),
        error: error(name, label),
    };
    vec![
        f("name", "Name", "text", &form.name),
        f("make", "Make", "text", &form.make),
        f("model", "Model", "text", &form.model),
        f(
            "serial_number",
            "Serial number",
            "text",
            &form.serial_number,
        ),
        f("mac_address", "MAC address", "text", &form.mac_address),
        f("ip_address", "IP address", "text", &form.ip_address),
        f(
            "operating_system",
            "Operating system",
            "text",
            &form.operating_system,
        ),
        f("location", "Location", "text", &form.location),
        f(
            "purchase_date",
            "Purchase date",
            "date",
            &form.purchase_date,
        ),
        f("warranty_end", "Warranty end", "date", &form.warranty_end),
        f("vendor", "Vendor", "text", &form.vendor),
        f("notes", "Notes", "textarea", &form.notes),
    ]
}

/// A select's option.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

fn choices(values: &[(String, String)], current: &str) -> Vec<Choice> {
    values
        .iter()
        .map(|(value, label)| Choice {
            selected: value == current,
            value: value.clone(),
            label: label.clone(),
        })
        .collect()
}

fn status_choices(current: &str) -> Vec<Choice> {
    let all: Vec<(String, String)> = AssetStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), capitalise(s.label())))
        .collect();
    choices(&all, current)
}

fn contact_choices(people: &[ContactRow], current: &str) -> Vec<Choice> {
    let mut all = vec![(String::new(), "Nobody".to_owned())];
    all.extend(
        people
            .iter()
            .filter(|c| !c.former || c.id.to_string() == current)
            .map(|c| (c.id.to_string(), c.name.clone())),
    );
    choices(&all, current)
}

/// The form's error for a field, if any.
fn error_of(errors: &[ValidationError], field: &str, label: &str) -> Option<String> {
    errors
        .iter()
        .find(|e| e.field == field)
        .map(|e| format!("{label} {}.", e.message))
}

#[derive(Template, WebTemplate)]
#[template(path = "company_assets.html")]
struct CompanyAssetsPage {
    flash: Option<String>,
    csrf: String,
    tabs: CompanyTabs,
    company: CompanyRow,
    assets: Vec<AssetLine>,
    may_edit: bool,
    fields: Vec<Field>,
    categories: Vec<Choice>,
    category_error: Option<String>,
    statuses: Vec<Choice>,
    contacts: Vec<Choice>,
    contact_error: Option<String>,
    next_tag: String,
    open_form: bool,
}

struct AssetLine {
    row: AssetRow,
    contact: String,
}

#[allow(clippy::too_many_arguments)]
async fn render_company_assets(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    (company, tabs): (CompanyRow, CompanyTabs),
    form: &AssetForm,
    errors: &[ValidationError],
    status: StatusCode,
) -> Response {
    let loaded = async {
        let rows = assets::list(
            &state.pool,
            me.tenant_id,
            &AssetQuery {
                company_id: Some(company.id),
                limit: 1000,
                ..AssetQuery::default()
            },
        )
        .await?;
        let people = contacts::of_company(&state.pool, me.tenant_id, company.id).await?;
        let (prefix, categories) = equipment::asset_settings(state, me.tenant_id)
            .await
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        Ok::<_, sqlx::Error>((rows, people, prefix, categories))
    };
    let (rows, people, prefix, categories) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let name_of = |id: Option<Uuid>| {
        id.and_then(|id| people.iter().find(|c| c.id == id))
            .map(|c| c.name.clone())
            .unwrap_or_default()
    };
    let categories: Vec<(String, String)> = categories
        .iter()
        .map(|c| (c.clone(), capitalise(c)))
        .collect();
    let page = CompanyAssetsPage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        may_edit: me.may(Action::EditAssets) && !company.archived,
        assets: rows
            .into_iter()
            .map(|row| AssetLine {
                contact: name_of(row.contact_id),
                row,
            })
            .collect(),
        fields: asset_fields(form, errors),
        categories: choices(&categories, &form.category),
        category_error: error_of(errors, "category", "Category"),
        statuses: status_choices(if form.status.is_empty() {
            "active"
        } else {
            &form.status
        }),
        contacts: contact_choices(&people, &form.contact_id),
        contact_error: error_of(errors, "contact_id", "Assigned to"),
        next_tag: format!("{prefix}-…"),
        open_form: !errors.is_empty(),
        tabs,
        company,
    };
    (status, page).into_response()
}

async fn company_assets(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    match company_for_tab(&state, &me, path, CompanyTab::Assets).await {
        Ok(page) => {
            render_company_assets(
                &state,
                &me,
                &cookies,
                page,
                &AssetForm::default(),
                &[],
                StatusCode::OK,
            )
            .await
        }
        Err(answer) => answer,
    }
}

async fn create_asset(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<AssetForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::EditAssets) {
        return refused.into_response();
    }
    let page = match company_for_tab(&state, &me, path, CompanyTab::Assets).await {
        Ok(page) => page,
        Err(answer) => return answer,
    };
    let company_id = page.0.id;
    let body = match form.body(Some(company_id)) {
        Ok(body) => body,
        Err(e) => {
            return render_company_assets(
                &state,
                &me,
                &cookies,
                page,
                &form,
                &[e],
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    };
    match equipment::create_from_console(&state, &me, company_id, &body).await {
        Ok(done) => form_done(
            &headers,
            &format!("/assets/{}", done.aggregate_id),
            &format!("Registered {}.", done.state.tag),
        ),
        Err(ApiError::Invalid(errors)) => {
            render_company_assets(
                &state,
                &me,
                &cookies,
                page,
                &form,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(error) => api_error_page(&cookies, error),
    }
}

/// The two ids of a path such as `/credentials/{id}/shares/{share_id}` (`None`: not UUIDs).
/// A refusal from the shared operations, as a console page.
fn api_error_page(cookies: &Cookies, error: ApiError) -> Response {
    match error {
        ApiError::NotFound(_) => not_found_page(),
        ApiError::Conflict(message) | ApiError::BadRequest(message) => error_page(
            StatusCode::CONFLICT,
            cookies,
            "That cannot be done now",
            &format!("{}.", capitalise(message.trim_end_matches('.'))),
        ),
        ApiError::Invalid(errors) => error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            cookies,
            "Please check the form",
            &errors
                .iter()
                .map(|e| format!("{} {}.", e.field, e.message))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        other => internal_page(other),
    }
}

// ---- All the tenant's assets, filtered, in tag order.

#[derive(Template, WebTemplate)]
#[template(path = "assets.html")]
struct AssetsPage {
    flash: Option<String>,
    assets: Vec<(AssetRow, String)>,
    statuses: Vec<Choice>,
    categories: Vec<Choice>,
    companies: Vec<Choice>,
    next: Option<String>,
    query: String,
}

#[derive(Debug, Default, Deserialize)]
struct AssetsParams {
    #[serde(default)]
    status: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    company_id: String,
    #[serde(default)]
    after: String,
}

/// Rows per page of the assets list.
const ASSETS_PAGE: i64 = 100;

async fn assets_page(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    params: Result<axum::extract::Query<AssetsParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    let p = params.map(|q| q.0).unwrap_or_default();
    let status = AssetStatus::parse(&p.status).ok();
    let company_id = Uuid::parse_str(&p.company_id).ok();
    let loaded = async {
        let (_, categories) = equipment::asset_settings(&state, me.tenant_id)
            .await
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        let category = categories.iter().find(|c| **c == p.category).cloned();
        let mut rows = assets::list(
            &state.pool,
            me.tenant_id,
            &AssetQuery {
                company_id,
                status: status.map(|s| s.as_str().to_owned()),
                category: category.clone(),
                after: p.after.parse().ok(),
                limit: ASSETS_PAGE + 1,
                ..AssetQuery::default()
            },
        )
        .await?;
        let companies: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, name FROM companies WHERE tenant_id = $1 ORDER BY lower(name), id",
        )
        .bind(me.tenant_id)
        .fetch_all(&state.pool)
        .await?;
        let next = (rows.len() as i64 > ASSETS_PAGE).then(|| {
            rows.truncate(ASSETS_PAGE as usize);
            rows.last()
                .map(|r| r.number.to_string())
                .unwrap_or_default()
        });
        Ok::<_, sqlx::Error>((rows, companies, categories, category, next))
    };
    let (rows, companies, categories, category, next) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let names: std::collections::HashMap<Uuid, String> = companies.iter().cloned().collect();
    let mut company_choices = vec![(String::new(), "All companies".to_owned())];
    company_choices.extend(
        companies
            .iter()
            .map(|(id, name)| (id.to_string(), name.clone())),
    );
    let mut status_choices = vec![(String::new(), "Any status".to_owned())];
    status_choices.extend(
        AssetStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), capitalise(s.label()))),
    );
    let mut category_choices = vec![(String::new(), "Any category".to_owned())];
    category_choices.extend(categories.iter().map(|c| (c.clone(), capitalise(c))));
    let query = format!(
        "status={}&category={}&company_id={}",
        status.map(|s| s.as_str()).unwrap_or(""),
        crate::console::percent_encode(category.as_deref().unwrap_or("")),
        company_id.map(|c| c.to_string()).unwrap_or_default()
    );
    AssetsPage {
        flash: cookies.flash.clone(),
        assets: rows
            .into_iter()
            .map(|row| {
                let company = names.get(&row.company_id).cloned().unwrap_or_default();
                (row, company)
            })
            .collect(),
        statuses: choices(&status_choices, status.map(|s| s.as_str()).unwrap_or("")),
        categories: choices(&category_choices, category.as_deref().unwrap_or("")),
        companies: choice_of_company(&company_choices, company_id),
        next,
        query,
    }
    .into_response()
}

fn choice_of_company(all: &[(String, String)], current: Option<Uuid>) -> Vec<Choice> {
    choices(all, &current.map(|c| c.to_string()).unwrap_or_default())
}

// ---- The asset page.

struct HistoryLine {
    at: String,
    who: String,
    what: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "asset.html")]
struct AssetPage {
    flash: Option<String>,
    csrf: String,
    asset: AssetRow,
    company: CompanyRow,
    contact: Option<ContactRow>,
    status_label: String,
    may_edit: bool,
    may_vault: bool,
    fields: Vec<Field>,
    categories: Vec<Choice>,
    category_error: Option<String>,
    statuses: Vec<Choice>,
    contacts: Vec<Choice>,
    contact_error: Option<String>,
    open_form: bool,
    credentials: Vec<CredentialRow>,
    credential_fields: Vec<CredentialField>,
    credential_open: bool,
    history: Vec<HistoryLine>,
    /// The work orders naming the asset, newest first.
    work_orders: Vec<crate::work_order_pages::OrderLine>,
}

struct CredentialField {
    name: &'static str,
    label: &'static str,
    kind: &'static str,
    value: String,
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct CredentialForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    totp_secret: String,
    #[serde(default)]
    notes: String,
}

impl CredentialForm {
    fn body(&self) -> CredentialBody {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        CredentialBody {
            label: Some(self.label.clone()),
            username: Some(self.username.clone()),
            url: Some(self.url.clone()),
            password: some(&self.password),
            totp_secret: some(&self.totp_secret),
            notes: some(&self.notes),
        }
    }
}

/// The credential form's fields. Secrets typed in a refused form are not sent back.
fn credential_fields(form: &CredentialForm, errors: &[ValidationError]) -> Vec<CredentialField> {
    let f = |name: &'static str, label: &'static str, kind: &'static str, value: &str| {
        CredentialField {
            name,
            label,
            kind,
            value: value.to_owned(),
            error: error_of(errors, name, label),
        }
    };
    vec![
        f("label", "Label", "text", &form.label),
        f("username", "Username", "text", &form.username),
        f("password", "Password", "password", ""),
        f("url", "URL", "text", &form.url),
        f("totp_secret", "TOTP secret", "password", ""),
        f("notes", "Secret notes", "textarea", ""),
    ]
}

/// The asset's history: its own events and those of its credentials (reveals included),
/// newest first, people by name.
async fn asset_history(
    state: &AppState,
    tenant_id: Uuid,
    asset_id: Uuid,
) -> Result<Vec<HistoryLine>, sqlx::Error> {
    let rows: Vec<(String, String, serde_json::Value, String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT e.aggregate_type, e.event_type, e.payload, coalesce(e.metadata->>'actor', '?'), e.recorded_at
           FROM events e
          WHERE e.metadata->>'tenant_id' = $1
            AND ((e.aggregate_type = 'asset' AND e.aggregate_id = $2)
              OR (e.aggregate_type = 'credential' AND e.aggregate_id IN (
                    SELECT id::text FROM credentials WHERE tenant_id = $3 AND asset_id = $4)))
          ORDER BY e.recorded_at DESC, e.global_position DESC
          LIMIT 200",
    )
    .bind(tenant_id.to_string())
    .bind(asset_id.to_string())
    .bind(tenant_id)
    .bind(asset_id)
    .fetch_all(&state.pool)
    .await?;
    let names = projections::users::actor_names(&state.pool, tenant_id).await?;
    Ok(rows
        .into_iter()
        .map(|(kind, event_type, payload, actor, at)| HistoryLine {
            at: display_time(&at),
            who: projections::users::actor_label(&names, &actor),
            what: history::summary(&kind, &event_type, &payload),
        })
        .collect())
}

#[allow(clippy::too_many_arguments)]
async fn render_asset(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    id: Uuid,
    form: Option<&AssetForm>,
    errors: &[ValidationError],
    credential_form: Option<(&CredentialForm, &[ValidationError])>,
    status: StatusCode,
) -> Response {
    let loaded = async {
        let Some(asset) = assets::get(&state.pool, me.tenant_id, id).await? else {
            return Ok(None);
        };
        let company = companies::get(&state.pool, me.tenant_id, asset.company_id).await?;
        let people = contacts::of_company(&state.pool, me.tenant_id, asset.company_id).await?;
        let credentials = if me.may(Action::UseVault) {
            credentials::list(&state.pool, me.tenant_id, None, Some(id)).await?
        } else {
            Vec::new()
        };
        let history = asset_history(state, me.tenant_id, id).await?;
        let (_, categories) = equipment::asset_settings(state, me.tenant_id)
            .await
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        Ok::<_, sqlx::Error>(company.map(|c| (asset, c, people, credentials, history, categories)))
    };
    let (asset, company, people, credentials, history, categories) = match loaded.await {
        Ok(Some(loaded)) => loaded,
        Ok(None) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let work_orders = if me.may(Action::ViewWorkOrders) {
        let filter = projections::work_orders::Filter {
            asset_id: Some(id),
            ..Default::default()
        };
        match crate::work_order_pages::lines_of(state, me.tenant_id, &filter, 100).await {
            Ok(lines) => lines,
            Err(error) => return internal_page(error),
        }
    } else {
        Vec::new()
    };
    let current = AssetForm::of(&asset);
    let form = form.unwrap_or(&current);
    let categories: Vec<(String, String)> = categories
        .iter()
        .map(|c| (c.clone(), capitalise(c)))
        .collect();
    let (credential_form, credential_errors) = match credential_form {
        Some((form, errors)) => (Some(form), errors),
        None => (None, &[][..]),
    };
    let page = AssetPage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        contact: asset
            .contact_id
            .and_then(|c| people.iter().find(|p| p.id == c).cloned()),
        status_label: AssetStatus::parse(&asset.status)
            .map(|s| capitalise(s.label()))
            .unwrap_or_else(|_| asset.status.clone()),
        may_edit: me.may(Action::EditAssets),
        may_vault: me.may(Action::UseVault) && !company.archived,
        fields: asset_fields(form, errors),
        categories: choices(&categories, &form.category),
        category_error: error_of(errors, "category", "Category"),
        statuses: status_choices(&form.status),
        contacts: contact_choices(&people, &form.contact_id),
        contact_error: error_of(errors, "contact_id", "Assigned to"),
        open_form: !errors.is_empty(),
        credentials,
        credential_fields: credential_fields(
            credential_form.unwrap_or(&CredentialForm::default()),
            credential_errors,
        ),
        credential_open: !credential_errors.is_empty(),
        history,
        work_orders,
        asset,
        company,
    };
    (status, page).into_response()
}

async fn asset_page(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    let Some(id) = path_uuid(path) else {
        return not_found_page();
    };
    render_asset(&state, &me, &cookies, id, None, &[], None, StatusCode::OK).await
}

/// The asset form posts here: details, status and assignment in one go.
async fn edit_asset(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<AssetForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::EditAssets) {
        return refused.into_response();
    }
    let Some(id) = path_uuid(path) else {
        return not_found_page();
    };
    let body = match form.body(None) {
        Ok(body) => body,
        Err(e) => {
            return render_asset(
                &state,
                &me,
                &cookies,
                id,
                Some(&form),
                &[e],
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    };
    match equipment::change_from_console(&state, &me, id, &body).await {
        Ok(true) => form_done(&headers, &format!("/assets/{id}"), "Saved."),
        Ok(false) => form_done(&headers, &format!("/assets/{id}"), "Nothing to change."),
        Err(ApiError::Invalid(errors)) => {
            render_asset(
                &state,
                &me,
                &cookies,
                id,
                Some(&form),
                &errors,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(error) => api_error_page(&cookies, error),
    }
}

async fn add_asset_credential(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<CredentialForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::UseVault) {
        return refused.into_response();
    }
    let Some(id) = path_uuid(path) else {
        return not_found_page();
    };
    let asset = match assets::get(&state.pool, me.tenant_id, id).await {
        Ok(Some(asset)) => asset,
        Ok(None) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    match vault::add(&state, &me.meta(), asset.company_id, Some(id), &form.body()).await {
        Ok(_) => redirect_with_flash(
            &format!("/assets/{id}#credentials"),
            &format!("Added {}.", form.label.trim()),
        ),
        Err(ApiError::Invalid(errors)) => {
            render_asset(
                &state,
                &me,
                &cookies,
                id,
                None,
                &[],
                Some((&form, &errors)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(error) => api_error_page(&cookies, error),
    }
}

// ---- A company's Credentials tab.

#[derive(Template, WebTemplate)]
#[template(path = "company_credentials.html")]
struct CompanyCredentialsPage {
    flash: Option<String>,
    csrf: String,
    tabs: CompanyTabs,
    company: CompanyRow,
    credentials: Vec<(CredentialRow, String)>,
    may_add: bool,
    credential_fields: Vec<CredentialField>,
    open_form: bool,
}

async fn render_company_credentials(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    (company, tabs): (CompanyRow, CompanyTabs),
    form: &CredentialForm,
    errors: &[ValidationError],
    status: StatusCode,
) -> Response {
    let loaded = async {
        let rows = credentials::list(&state.pool, me.tenant_id, Some(company.id), None).await?;
        let assets = assets::list(
            &state.pool,
            me.tenant_id,
            &AssetQuery {
                company_id: Some(company.id),
                limit: 5000,
                ..AssetQuery::default()
            },
        )
        .await?;
        Ok::<_, sqlx::Error>((rows, assets))
    };
    let (rows, assets) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let page = CompanyCredentialsPage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        may_add: !company.archived,
        credentials: rows
            .into_iter()
            .map(|row| {
                let on = row
                    .asset_id
                    .and_then(|a| assets.iter().find(|x| x.id == a))
                    .map(|a| format!("{} {}", a.tag, a.name))
                    .unwrap_or_default();
                (row, on)
            })
            .collect(),
        credential_fields: credential_fields(form, errors),
        open_form: !errors.is_empty(),
        tabs,
        company,
    };
    (status, page).into_response()
}

async fn company_credentials(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::UseVault) {
        return refused.into_response();
    }
    match company_for_tab(&state, &me, path, CompanyTab::Credentials).await {
        Ok(page) => {
            render_company_credentials(
                &state,
                &me,
                &cookies,
                page,
                &CredentialForm::default(),
                &[],
                StatusCode::OK,
            )
            .await
        }
        Err(answer) => answer,
    }
}

async fn add_company_credential(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<CredentialForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::UseVault) {
        return refused.into_response();
    }
    let page = match company_for_tab(&state, &me, path, CompanyTab::Credentials).await {
        Ok(page) => page,
        Err(answer) => return answer,
    };
    let company_id = page.0.id;
    match vault::add(&state, &me.meta(), company_id, None, &form.body()).await {
        Ok(_) => redirect_with_flash(
            &format!("/companies/{company_id}/credentials"),
            &format!("Added {}.", form.label.trim()),
        ),
        Err(ApiError::Invalid(errors)) => {
            render_company_credentials(
                &state,
                &me,
                &cookies,
                page,
                &form,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(error) => api_error_page(&cookies, error),
    }
}

// ---- The credential page, reveal and share links.

#[derive(Template, WebTemplate)]
#[template(path = "credential.html")]
struct CredentialPage {
    flash: Option<String>,
    csrf: String,
    credential: CredentialRow,
    company: CompanyRow,
    asset: Option<AssetRow>,
    shares: Vec<ShareLine>,
    new_link: Option<String>,
    last_revealed: String,
}

struct ShareLine {
    made: String,
    row: ShareRow,
    state: String,
    live: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "credential_revealed.html")]
struct Revealed {
    secrets: RevealedJson,
}

async fn render_credential(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    id: Uuid,
    new_link: Option<String>,
) -> Response {
    let loaded = async {
        let Some(credential) = credentials::get(&state.pool, me.tenant_id, id)
            .await?
            .filter(|c| !c.removed)
        else {
            return Ok(None);
        };
        let company = companies::get(&state.pool, me.tenant_id, credential.company_id).await?;
        let asset = match credential.asset_id {
            Some(a) => assets::get(&state.pool, me.tenant_id, a).await?,
            None => None,
        };
        let shares = credentials::shares(&state.pool, me.tenant_id, id).await?;
        let names = projections::users::actor_names(&state.pool, me.tenant_id).await?;
        Ok::<_, sqlx::Error>(company.map(|c| (credential, c, asset, shares, names)))
    };
    let (credential, company, asset, shares, names) = match loaded.await {
        Ok(Some(loaded)) => loaded,
        Ok(None) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let now = chrono::Utc::now();
    let last_revealed = match (&credential.last_revealed_at, &credential.last_revealed_by) {
        (Some(at), Some(by)) => format!(
            "{} by {}",
            display_time(at),
            projections::users::actor_label(&names, by)
        ),
        _ => "never".into(),
    };
    CredentialPage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        shares: shares
            .into_iter()
            .map(|row| {
                let (state, live) = if row.revoked {
                    ("revoked".to_owned(), false)
                } else if row.expires_at <= now {
                    ("expired".to_owned(), false)
                } else if row.views >= row.max_views {
                    ("used up".to_owned(), false)
                } else {
                    (format!("expires {}", display_time(&row.expires_at)), true)
                };
                ShareLine {
                    made: display_time(&row.created_at),
                    row,
                    state,
                    live,
                }
            })
            .collect(),
        credential,
        company,
        asset,
        new_link,
        last_revealed,
    }
    .into_response()
}

async fn credential_page(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::UseVault) {
        return refused.into_response();
    }
    let Some(id) = path_uuid(path) else {
        return not_found_page();
    };
    render_credential(&state, &me, &cookies, id, None).await
}

#[derive(Debug, Default, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Reveal from the console: an htmx fragment in place (or a page without JavaScript).
async fn reveal_in_console(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    extensions: Extensions,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::UseVault) {
        return refused.into_response();
    }
    let Some(id) = path_uuid(path) else {
        return not_found_page();
    };
    if let Err(error) = vault::load(&state, me.tenant_id, id).await {
        return api_error_page(&cookies, error);
    }
    let address = auth::client_address(&state, &headers, auth::peer(&extensions));
    match vault::reveal(&state, &me.meta(), id, address).await {
        Ok(secrets) => (
            [(axum::http::header::CACHE_CONTROL, "no-store")],
            Revealed { secrets },
        )
            .into_response(),
        Err(error) => api_error_page(&cookies, error),
    }
}

#[derive(Debug, Default, Deserialize)]
struct ShareForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    hours: String,
    #[serde(default)]
    views: String,
}

async fn share_in_console(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<ShareForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::UseVault) {
        return refused.into_response();
    }
    let Some(id) = path_uuid(path) else {
        return not_found_page();
    };
    let hours: i64 = form.hours.trim().parse().unwrap_or(0);
    let views: u32 = form.views.trim().parse().unwrap_or(0);
    if !(1..=domain::credential::MAX_SHARE_DAYS * 24).contains(&hours)
        || !(1..=domain::credential::MAX_SHARE_VIEWS).contains(&views)
    {
        return error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &cookies,
            "Please check the link's limits",
            &format!(
                "A share link lives 1 to {} hours and allows 1 to {} views.",
                domain::credential::MAX_SHARE_DAYS * 24,
                domain::credential::MAX_SHARE_VIEWS
            ),
        );
    }
    if let Err(error) = vault::load(&state, me.tenant_id, id).await {
        return api_error_page(&cookies, error);
    }
    match vault::share(&state, &me.meta(), id, hours, views).await {
        Ok(made) => {
            let link = format!("{}/s/{}", state.settings().public_url, made.token);
            render_credential(&state, &me, &cookies, id, Some(link)).await
        }
        Err(error) => api_error_page(&cookies, error),
    }
}

async fn revoke_in_console(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::UseVault) {
        return refused.into_response();
    }
    let Some((id, share_id)) = two_ids(path) else {
        return not_found_page();
    };
    match vault::revoke(&state, &me.meta(), id, share_id).await {
        Ok(()) => redirect_with_flash(&format!("/credentials/{id}"), "The link is revoked."),
        Err(error) => api_error_page(&cookies, error),
    }
}

async fn remove_in_console(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::UseVault) {
        return refused.into_response();
    }
    let Some(id) = path_uuid(path) else {
        return not_found_page();
    };
    let credential = match vault::load(&state, me.tenant_id, id).await {
        Ok(c) => c,
        Err(error) => return api_error_page(&cookies, error),
    };
    match vault::remove(&state, &me.meta(), id).await {
        Ok(()) => {
            let back = match credential.asset_id {
                Some(asset) => format!("/assets/{asset}#credentials"),
                None => format!("/companies/{}/credentials", credential.company_id),
            };
            redirect_with_flash(&back, &format!("Removed {}.", credential.details.label))
        }
        Err(error) => api_error_page(&cookies, error),
    }
}

// ---- The public page of a share link (no account: the token is the only key).

#[derive(Template, WebTemplate)]
#[template(path = "shared.html")]
struct SharedPage {
    flash: Option<String>,
    label: String,
    message: Option<String>,
    secrets: Option<RevealedJson>,
    views_left: i32,
}

fn shared_response(page: SharedPage, status: StatusCode) -> Response {
    (
        status,
        [
            (axum::http::header::CACHE_CONTROL, "no-store"),
            (axum::http::header::REFERRER_POLICY, "no-referrer"),
        ],
        page,
    )
        .into_response()
}

async fn shared_lookup(
    state: &AppState,
    token: &str,
) -> Result<Option<(ShareRow, Credential)>, ApiError> {
    let digest = commands::identity::token_digest(token);
    let Some(share) = credentials::share_by_digest(&state.pool, &digest).await? else {
        return Ok(None);
    };
    let (credential, _) = state
        .store
        .load::<Credential>(share.tenant_id, &share.credential_id.to_string())
        .await?;
    Ok((credential.exists && !credential.removed).then_some((share, credential)))
}

fn gone(message: &str) -> Response {
    shared_response(
        SharedPage {
            flash: None,
            label: String::new(),
            message: Some(message.to_owned()),
            secrets: None,
            views_left: 0,
        },
        StatusCode::NOT_FOUND,
    )
}

async fn shared_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    // Opening the link shows nothing secret and counts nothing: link previews and mail
    // scanners fetch pages; only the button below reveals (and counts a view).
    match shared_lookup(&state, &token).await {
        Ok(Some((share, credential))) => {
            let live = credential.shares.get(&share.id).filter(|s| {
                !s.revoked && s.expires_at > chrono::Utc::now() && s.views < s.max_views
            });
            match live {
                Some(s) => shared_response(
                    SharedPage {
                        flash: None,
                        label: credential.details.label.clone(),
                        message: None,
                        secrets: None,
                        views_left: (s.max_views - s.views) as i32,
                    },
                    StatusCode::OK,
                ),
                None => gone("This link has expired, was used as many times as it allows, or was revoked. Ask for a new one."),
            }
        }
        Ok(None) => gone("This link does not exist or was revoked."),
        Err(error) => internal_page(error),
    }
}

async fn shared_reveal(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    Path(token): Path<String>,
) -> Response {
    let (share, credential) = match shared_lookup(&state, &token).await {
        Ok(Some(found)) => found,
        Ok(None) => return gone("This link does not exist or was revoked."),
        Err(error) => return internal_page(error),
    };
    let address = auth::client_address(&state, &headers, auth::peer(&extensions));
    let meta = commands::EventMeta::new(share.tenant_id, format!("share:{}", share.id));
    let viewed = state
        .store
        .execute::<Credential>(
            &share.credential_id.to_string(),
            domain::credential::CredentialCommand::ViewShare {
                share_id: share.id,
                address,
                now: chrono::Utc::now(),
            },
            &(),
            &meta,
            commands::ConflictPolicy::RetryOnce,
        )
        .await;
    match viewed {
        Ok(done) => {
            let left = done
                .state
                .shares
                .get(&share.id)
                .map(|s| (s.max_views - s.views) as i32)
                .unwrap_or(0);
            match vault::open(&state, share.tenant_id, &credential).await {
                Ok(secrets) => shared_response(
                    SharedPage {
                        flash: None,
                        label: credential.details.label.clone(),
                        message: None,
                        secrets: Some(secrets),
                        views_left: left,
                    },
                    StatusCode::OK,
                ),
                Err(error) => internal_page(error),
            }
        }
        Err(commands::CommandError::Domain(error)) => {
            gone(&format!("{}.", capitalise(&error.to_string())))
        }
        Err(error) => internal_page(error),
    }
}

// ---- Documents kept with an asset (stored and served by `documents`): the bytes in
// `asset_document_blobs` (by SHA-256, once per tenant), the events name, type, size and hash.

async fn attach_document(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    multipart: axum::extract::Multipart,
) -> Response {
    let form = match FormParts::read(multipart, &cookies, "A document is at most 10 MB.").await {
        Ok(form) => form,
        Err(answer) => return answer,
    };
    let csrf = form.text("csrf");
    let (file_name, bytes) = form.file("file");
    if let Some(refused) = csrf_refusal(&cookies, &headers, &csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::EditAssets) {
        return refused.into_response();
    }
    let Some(id) = path_uuid(path) else {
        return not_found_page();
    };
    let meta = me.meta();
    let document = match documents::store(
        &state,
        me.tenant_id,
        &cookies,
        Uuid::new_v5(&meta.command_id, b"document"),
        &file_name,
        &bytes,
    )
    .await
    {
        Ok(document) => document,
        Err(page) => return page,
    };
    let name = document.file_name.clone();
    let result = state
        .store
        .execute::<domain::asset::Asset>(
            &id.to_string(),
            domain::asset::AssetCommand::AttachDocument { document },
            &(),
            &meta,
            commands::ConflictPolicy::RetryOnce,
        )
        .await;
    match result {
        Ok(done) => {
            state
                .read_your_writes(
                    equipment::ASSET_VIEWS,
                    "asset",
                    &done.aggregate_id,
                    done.version,
                )
                .await;
            redirect_with_flash(
                &format!("/assets/{id}#documents"),
                &format!("Attached {name}."),
            )
        }
        Err(error) => api_error_page(&cookies, error.into()),
    }
}

async fn download_document(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    let Some((id, document_id)) = two_ids(path) else {
        return not_found_page();
    };
    let asset = match assets::get(&state.pool, me.tenant_id, id).await {
        Ok(Some(asset)) => asset,
        Ok(None) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let Some(document) = asset.documents.0.iter().find(|d| d.id == document_id) else {
        return not_found_page();
    };
    documents::download(&state, me.tenant_id, document).await
}

async fn remove_document(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::EditAssets) {
        return refused.into_response();
    }
    let Some((id, document_id)) = two_ids(path) else {
        return not_found_page();
    };
    let result = state
        .store
        .execute::<domain::asset::Asset>(
            &id.to_string(),
            domain::asset::AssetCommand::RemoveDocument { document_id },
            &(),
            &me.meta(),
            commands::ConflictPolicy::RetryOnce,
        )
        .await;
    match result {
        Ok(done) => {
            state
                .read_your_writes(
                    equipment::ASSET_VIEWS,
                    "asset",
                    &done.aggregate_id,
                    done.version,
                )
                .await;
            redirect_with_flash(&format!("/assets/{id}#documents"), "Document removed.")
        }
        Err(error) => api_error_page(&cookies, error.into()),
    }
}
