//! Contacts, a customer company's people (issue 4): the API, the company page's Contacts tab,
//! and each contact's own page (`/contacts/{id}`) with its Edit form. Seeing them follows
//! `ViewCompanies`; adding and changing them needs `EditContacts`.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::PathRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use commands::{CommandError, ConflictPolicy, Executed};
use domain::authz::Action;
use domain::contact::{
    Contact, ContactCommand, ContactDetails, ContactError, ContactInput, NotificationPreferences,
};
use projections::companies::{self, CompanyRow};
use projections::contacts::{self, ContactRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::{command_meta, parse_id, path_id, ApiJson, IdempotencyKey};
use crate::auth::Principal;
use crate::console::{
    capitalise, company_for_tab, csrf_refusal, display_time, error_page, form_done, from_htmx,
    history_views, internal_page, not_found_page, redirect_with_flash, CompanyTab, CompanyTabs,
    Cookies, HistoryView,
};
use crate::error::ApiError;
use crate::notify::ops;
use crate::openapi::{
    BadRequest, Conflict, Forbidden, InternalError, NotFound, PayloadTooLarge, Unauthorized,
    Unprocessable, UnsupportedMediaType,
};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/companies/{id}/contacts",
            get(list_contacts).post(create_contact),
        )
        .route(
            "/api/v1/contacts/{id}",
            get(get_contact).patch(update_contact),
        )
        .route("/companies/{id}/contacts/new", get(new_contact_page))
        .route(
            "/companies/{id}/contacts",
            get(contacts_tab).post(add_contact),
        )
        .route("/contacts/{id}", get(contact_page))
        .route(
            "/contacts/{id}/edit",
            get(edit_contact_page).post(edit_contact),
        )
        .route("/contacts/{id}/former", axum::routing::post(mark_former))
        .route("/contacts/{id}/current", axum::routing::post(mark_current))
        .route(
            "/api/v1/contacts/{id}/notifications",
            get(get_preferences).put(set_preferences),
        )
        .route(
            "/contacts/{id}/notifications",
            axum::routing::post(save_preferences),
        )
}

/// One of a customer company's people.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Contact)]
pub struct ContactJson {
    id: Uuid,
    company_id: Uuid,
    name: String,
    email: Option<String>,
    office_phone: String,
    cell_phone: String,
    department: String,
    position: String,
    /// The company's main contact.
    primary: bool,
    /// Receives the company's invoices.
    billing: bool,
    notes: String,
    /// `current`, or `former` once they left the company.
    status: String,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ContactRow> for ContactJson {
    fn from(row: ContactRow) -> Self {
        Self {
            id: row.id,
            company_id: row.company_id,
            name: row.name,
            email: row.email,
            office_phone: row.office_phone,
            cell_phone: row.cell_phone,
            department: row.department,
            position: row.position,
            primary: row.is_primary,
            billing: row.billing,
            notes: row.notes,
            status: if row.former { "former" } else { "current" }.into(),
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A company's contacts, current ones first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactList {
    items: Vec<ContactJson>,
}

/// A new contact: only `name` is required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactBody {
    #[schema(example = "Ann Example")]
    name: Option<String>,
    #[schema(example = "ann@example.com")]
    email: Option<String>,
    #[schema(example = "+1 555 0100 x12")]
    office_phone: Option<String>,
    cell_phone: Option<String>,
    department: Option<String>,
    position: Option<String>,
    primary: Option<bool>,
    billing: Option<bool>,
    notes: Option<String>,
    /// `current` or `former` (changes only).
    status: Option<String>,
}

impl ContactBody {
    /// The details after applying this body's fields over `base`.
    fn details(&self, base: &ContactDetails) -> Result<ContactDetails, ApiError> {
        let email = base
            .email
            .as_ref()
            .map(|e| e.as_str().to_owned())
            .unwrap_or_default();
        let pick = |field: &Option<String>, current: &str| {
            field.clone().unwrap_or_else(|| current.to_owned())
        };
        let (name, email, office, cell, department, position, notes) = (
            pick(&self.name, &base.name),
            pick(&self.email, &email),
            pick(&self.office_phone, &base.office_phone),
            pick(&self.cell_phone, &base.cell_phone),
            pick(&self.department, &base.department),
            pick(&self.position, &base.position),
            pick(&self.notes, &base.notes),
        );
        ContactDetails::parse(&ContactInput {
            name: &name,
            email: &email,
            office_phone: &office,
            cell_phone: &cell,
            department: &department,
            position: &position,
            primary: self.primary.unwrap_or(base.primary),
            billing: self.billing.unwrap_or(base.billing),
            notes: &notes,
        })
        .map_err(ApiError::Invalid)
    }
}

/// The response after a command: the read model once it shows the change.
async fn after(
    state: &AppState,
    me: &Principal,
    done: &Executed<Contact>,
) -> Result<ContactJson, ApiError> {
    state
        .read_your_writes(&["contacts"], "contact", &done.aggregate_id, done.version)
        .await;
    let id = parse_id(&done.aggregate_id, "contact")?;
    contacts::get(&state.pool, me.tenant_id, id)
        .await?
        .map(ContactJson::from)
        .ok_or_else(|| ApiError::internal("the contacts read model is behind; retry the read"))
}

/// Add a contact to a company.
#[utoipa::path(
    post,
    path = "/api/v1/companies/{id}/contacts",
    tag = "contacts",
    operation_id = "createContact",
    params(("id" = Uuid, Path, description = "The company's id"), IdempotencyKey),
    request_body(content = ContactBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Added", body = ContactJson),
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
pub async fn create_contact(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<ApiJson<ContactBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::EditContacts) {
        return refused.into_response();
    }
    let outcome = async {
        let company_id = path_id(path, "company")?;
        let ApiJson(body) = body?;
        let company = companies::get(&state.pool, me.tenant_id, company_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("company {company_id} not found")))?;
        if body.status.is_some() {
            return Err(ApiError::Invalid(vec![domain::ValidationError::new(
                "status",
                "a new contact is current; change it afterwards",
            )]));
        }
        let details = body.details(&ContactDetails::default())?;
        if company.archived {
            return Err(ApiError::Conflict(
                "the company is archived: restore it before adding contacts".into(),
            ));
        }
        let meta = command_meta(&me, &headers)?;
        let id = meta.new_aggregate_id();
        let done = state
            .store
            .create::<Contact>(
                &id.to_string(),
                ContactCommand::Add {
                    company_id,
                    details,
                },
                &(),
                &meta,
            )
            .await?;
        after(&state, &me, &done).await
    };
    match outcome.await {
        Ok(json) => (StatusCode::CREATED, Json(json)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// A company's contacts.
#[utoipa::path(
    get,
    path = "/api/v1/companies/{id}/contacts",
    tag = "contacts",
    operation_id = "listContacts",
    params(("id" = Uuid, Path, description = "The company's id")),
    responses(
        (status = 200, description = "The company's contacts", body = ContactList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn list_contacts(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    let outcome = async {
        let company_id = path_id(path, "company")?;
        companies::get(&state.pool, me.tenant_id, company_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("company {company_id} not found")))?;
        let rows = contacts::of_company(&state.pool, me.tenant_id, company_id).await?;
        Ok::<_, ApiError>(ContactList {
            items: rows.into_iter().map(ContactJson::from).collect(),
        })
    };
    match outcome.await {
        Ok(list) => Json(list).into_response(),
        Err(error) => error.into_response(),
    }
}

/// One contact.
#[utoipa::path(
    get,
    path = "/api/v1/contacts/{id}",
    tag = "contacts",
    operation_id = "getContact",
    params(("id" = Uuid, Path, description = "The contact's id")),
    responses(
        (status = 200, description = "The contact", body = ContactJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn get_contact(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "contact")?;
        contacts::get(&state.pool, me.tenant_id, id)
            .await?
            .map(ContactJson::from)
            .ok_or_else(|| ApiError::NotFound(format!("contact {id} not found")))
    };
    match outcome.await {
        Ok(json) => Json(json).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Change a contact: only the fields present change; `status` marks them former or current.
#[utoipa::path(
    patch,
    path = "/api/v1/contacts/{id}",
    tag = "contacts",
    operation_id = "updateContact",
    params(("id" = Uuid, Path, description = "The contact's id"), IdempotencyKey),
    request_body(content = ContactBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The contact after the change", body = ContactJson),
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
pub async fn update_contact(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<ApiJson<ContactBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::EditContacts) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "contact")?;
        let ApiJson(body) = body?;
        let former = match body.status.as_deref() {
            None => None,
            Some("current") => Some(false),
            Some("former") => Some(true),
            Some(_) => {
                return Err(ApiError::Invalid(vec![domain::ValidationError::new(
                    "status",
                    "must be current or former",
                )]))
            }
        };
        let (contact, _) = state
            .store
            .load::<Contact>(me.tenant_id, &id.to_string())
            .await?;
        if !contact.exists {
            return Err(ApiError::NotFound(format!("contact {id} not found")));
        }
        let details = body.details(&contact.details)?;
        let meta = command_meta(&me, &headers)?;
        let mut commands = Vec::new();
        if former == Some(false) && contact.former {
            commands.push(ContactCommand::MarkCurrent);
        }
        if details != contact.details {
            commands.push(ContactCommand::Update { details });
        }
        if former == Some(true) && !contact.former {
            commands.push(ContactCommand::MarkFormer);
        }
        let mut last = None;
        for (i, command) in commands.into_iter().enumerate() {
            let meta = meta.derived(&[i as u8]);
            last = Some(
                state
                    .store
                    .execute::<Contact>(
                        &id.to_string(),
                        command,
                        &(),
                        &meta,
                        ConflictPolicy::RetryOnce,
                    )
                    .await?,
            );
        }
        match last {
            Some(done) => after(&state, &me, &done).await,
            None => contacts::get(&state.pool, me.tenant_id, id)
                .await?
                .map(ContactJson::from)
                .ok_or_else(|| ApiError::NotFound(format!("contact {id} not found"))),
        }
    };
    match outcome.await {
        Ok(json) => Json(json).into_response(),
        Err(error) => error.into_response(),
    }
}

// ---- Console: the company's Contacts tab, the "Add contact" and "Edit" forms (an htmx modal,
// or a page of its own without JavaScript), a contact's page, "left the company" and back.

/// One input of the contact form.
struct FieldView {
    name: &'static str,
    label: &'static str,
    kind: &'static str,
    autocomplete: &'static str,
    value: String,
    error: Option<String>,
}

/// What a contact form is for: adding a contact to a company, or editing one.
struct FormPurpose {
    heading: String,
    action: String,
    submit: &'static str,
    /// The contact being edited (id, name), for the page's crumbs.
    contact: Option<(Uuid, String)>,
}

impl FormPurpose {
    fn add(company: &CompanyRow) -> Self {
        Self {
            heading: format!("Add a contact to {}", company.name),
            action: format!("/companies/{}/contacts", company.id),
            submit: "Add contact",
            contact: None,
        }
    }

    fn edit(contact: &ContactRow) -> Self {
        Self {
            heading: format!("Edit {}", contact.name),
            action: format!("/contacts/{}/edit", contact.id),
            submit: "Save",
            contact: Some((contact.id, contact.name.clone())),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "contact_form.html")]
struct ContactForm {
    csrf: String,
    heading: String,
    action: String,
    submit: &'static str,
    fields: Vec<FieldView>,
    primary: bool,
    billing: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "contact_form_page.html")]
struct ContactPage {
    flash: Option<String>,
    csrf: String,
    company_id: Uuid,
    company_name: String,
    contact: Option<(Uuid, String)>,
    heading: String,
    action: String,
    submit: &'static str,
    fields: Vec<FieldView>,
    primary: bool,
    billing: bool,
}

/// The form's submitted values (all optional: an empty form is shown again with messages).
#[derive(Debug, Default, Deserialize)]
struct ContactFormInput {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    office_phone: String,
    #[serde(default)]
    cell_phone: String,
    #[serde(default)]
    department: String,
    #[serde(default)]
    position: String,
    #[serde(default)]
    notes: String,
    primary: Option<String>,
    billing: Option<String>,
}

impl ContactFormInput {
    /// The details the form says (a form sends every field).
    fn details(&self) -> Result<ContactDetails, Vec<domain::ValidationError>> {
        ContactDetails::parse(&ContactInput {
            name: &self.name,
            email: &self.email,
            office_phone: &self.office_phone,
            cell_phone: &self.cell_phone,
            department: &self.department,
            position: &self.position,
            primary: self.primary.is_some(),
            billing: self.billing.is_some(),
            notes: &self.notes,
        })
    }

    /// The form filled in with a contact's current details.
    fn of(contact: &ContactRow) -> Self {
        let flag = |on: bool| on.then(|| "on".to_owned());
        Self {
            csrf: String::new(),
            name: contact.name.clone(),
            email: contact.email.clone().unwrap_or_default(),
            office_phone: contact.office_phone.clone(),
            cell_phone: contact.cell_phone.clone(),
            department: contact.department.clone(),
            position: contact.position.clone(),
            notes: contact.notes.clone(),
            primary: flag(contact.is_primary),
            billing: flag(contact.billing),
        }
    }
}

fn fields(input: &ContactFormInput, errors: &[domain::ValidationError]) -> Vec<FieldView> {
    let error = |name: &str, label: &str| {
        errors
            .iter()
            .find(|e| e.field == name)
            .map(|e| format!("{label} {}.", e.message))
    };
    let field =
        |name: &'static str, label: &'static str, kind, autocomplete, value: &str| FieldView {
            name,
            label,
            kind,
            autocomplete,
            value: value.to_owned(),
            error: error(name, label),
        };
    vec![
        field("name", "Name", "text", "off", &input.name),
        field("email", "Email", "email", "off", &input.email),
        field(
            "office_phone",
            "Office phone",
            "tel",
            "off",
            &input.office_phone,
        ),
        field("cell_phone", "Cell phone", "tel", "off", &input.cell_phone),
        field("department", "Department", "text", "off", &input.department),
        field("position", "Position", "text", "off", &input.position),
        field("notes", "Notes", "text", "off", &input.notes),
    ]
}

fn contact_form(
    cookies: &Cookies,
    headers: &HeaderMap,
    company: &CompanyRow,
    purpose: FormPurpose,
    input: &ContactFormInput,
    errors: &[domain::ValidationError],
    status: StatusCode,
) -> Response {
    let csrf = cookies.csrf.clone();
    let (primary, billing) = (input.primary.is_some(), input.billing.is_some());
    if from_htmx(headers) {
        (
            status,
            ContactForm {
                csrf,
                heading: purpose.heading,
                action: purpose.action,
                submit: purpose.submit,
                fields: fields(input, errors),
                primary,
                billing,
            },
        )
            .into_response()
    } else {
        (
            status,
            ContactPage {
                flash: cookies.flash.clone(),
                csrf,
                company_id: company.id,
                company_name: company.name.clone(),
                contact: purpose.contact,
                heading: purpose.heading,
                action: purpose.action,
                submit: purpose.submit,
                fields: fields(input, errors),
                primary,
                billing,
            },
        )
            .into_response()
    }
}

/// The company of a console path (`None`: not one of the asker's companies).
async fn console_company(
    state: &AppState,
    me: &Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Option<CompanyRow>, sqlx::Error> {
    let Some(id) = crate::console::path_uuid(path) else {
        return Ok(None);
    };
    companies::get(&state.pool, me.tenant_id, id).await
}

async fn new_contact_page(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::EditContacts) {
        return refused.into_response();
    }
    match console_company(&state, &me, path).await {
        Ok(Some(company)) => contact_form(
            &cookies,
            &headers,
            &company,
            FormPurpose::add(&company),
            &ContactFormInput::default(),
            &[],
            StatusCode::OK,
        ),
        Ok(None) => not_found_page(),
        Err(error) => internal_page(error),
    }
}

async fn add_contact(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(input): Form<ContactFormInput>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &input.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::EditContacts) {
        return refused.into_response();
    }
    let company = match console_company(&state, &me, path).await {
        Ok(Some(company)) => company,
        Ok(None) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let details = match input.details() {
        Ok(details) => details,
        Err(errors) => {
            return contact_form(
                &cookies,
                &headers,
                &company,
                FormPurpose::add(&company),
                &input,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
    };
    if company.archived {
        return error_page(
            StatusCode::CONFLICT,
            &cookies,
            "That cannot be done now",
            "The company is archived: restore it before adding contacts.",
        );
    }
    let meta = me.meta();
    let id = meta.new_aggregate_id();
    let name = details.name.clone();
    let result = state
        .store
        .create::<Contact>(
            &id.to_string(),
            ContactCommand::Add {
                company_id: company.id,
                details,
            },
            &(),
            &meta,
        )
        .await;
    match result {
        Ok(done) => {
            state
                .read_your_writes(&["contacts"], "contact", &done.aggregate_id, done.version)
                .await;
            form_done(
                &headers,
                &format!("/companies/{}/contacts", company.id),
                &format!("Added {name}."),
            )
        }
        Err(error) => internal_page(error),
    }
}

#[derive(Debug, Deserialize)]
struct MarkForm {
    #[serde(default)]
    csrf: String,
    /// `contact` when sent from the contact's own page (the answer goes back there).
    #[serde(default)]
    from: String,
}

async fn mark(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    headers: &HeaderMap,
    path: Result<Path<String>, PathRejection>,
    form: &MarkForm,
    command: ContactCommand,
) -> Response {
    if let Some(refused) = csrf_refusal(cookies, headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::EditContacts) {
        return refused.into_response();
    }
    let Some(id) = crate::console::path_uuid(path) else {
        return not_found_page();
    };
    let result = state
        .store
        .execute::<Contact>(
            &id.to_string(),
            command,
            &(),
            &me.meta(),
            ConflictPolicy::RetryOnce,
        )
        .await;
    match result {
        Ok(done) => {
            state
                .read_your_writes(&["contacts"], "contact", &done.aggregate_id, done.version)
                .await;
            let message = if done.state.former {
                format!(
                    "{} is marked as having left the company.",
                    done.state.details.name
                )
            } else {
                format!("{} is current again.", done.state.details.name)
            };
            let back = if form.from == "contact" {
                format!("/contacts/{}", done.aggregate_id)
            } else {
                format!("/companies/{}/contacts", done.state.company_id)
            };
            redirect_with_flash(&back, &message)
        }
        Err(CommandError::NotFound) | Err(CommandError::Domain(ContactError::NotFound)) => {
            not_found_page()
        }
        Err(CommandError::Domain(error)) => error_page(
            StatusCode::CONFLICT,
            cookies,
            "That cannot be done now",
            &format!("{}.", capitalise(&error.to_string())),
        ),
        Err(error) => internal_page(error),
    }
}

async fn mark_former(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<MarkForm>,
) -> Response {
    mark(
        &state,
        &me,
        &cookies,
        &headers,
        path,
        &form,
        ContactCommand::MarkFormer,
    )
    .await
}

async fn mark_current(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<MarkForm>,
) -> Response {
    mark(
        &state,
        &me,
        &cookies,
        &headers,
        path,
        &form,
        ContactCommand::MarkCurrent,
    )
    .await
}

#[derive(Template, WebTemplate)]
#[template(path = "company_contacts.html")]
struct ContactsTab {
    flash: Option<String>,
    csrf: String,
    tabs: CompanyTabs,
    contacts: Vec<ContactRow>,
}

/// The company's Contacts tab: its people, current ones first.
async fn contacts_tab(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    let (company, tabs) = match company_for_tab(&state, &me, path, CompanyTab::Contacts).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    match contacts::of_company(&state.pool, me.tenant_id, company.id).await {
        Ok(contacts) => ContactsTab {
            flash: cookies.flash.clone(),
            csrf: cookies.csrf.clone(),
            tabs,
            contacts,
        }
        .into_response(),
        Err(error) => internal_page(error),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "contact.html")]
struct ContactView {
    flash: Option<String>,
    csrf: String,
    contact: ContactRow,
    company: CompanyRow,
    updated: String,
    history: Vec<HistoryView>,
    /// The assets assigned to them.
    assets: Vec<projections::assets::AssetRow>,
    /// Which messages they get.
    notifications: NotificationPreferences,
}

/// A contact of the asker's tenant and their company (`None`: no such contact here).
async fn contact_and_company(
    state: &AppState,
    me: &Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Option<(ContactRow, CompanyRow)>, sqlx::Error> {
    let Some(id) = crate::console::path_uuid(path) else {
        return Ok(None);
    };
    let Some(contact) = contacts::get(&state.pool, me.tenant_id, id).await? else {
        return Ok(None);
    };
    let company = companies::get(&state.pool, me.tenant_id, contact.company_id).await?;
    Ok(company.map(|company| (contact, company)))
}

/// A contact's own page: every detail, the company, Edit, left the company / mark current.
async fn contact_page(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    let (contact, company) = match contact_and_company(&state, &me, path).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let history = match history_views(&state, &me, "contact", &contact.id.to_string()).await {
        Ok(history) => history,
        Err(error) => return internal_page(error),
    };
    let assets = projections::assets::list(
        &state.pool,
        me.tenant_id,
        &projections::assets::AssetQuery {
            contact_id: Some(contact.id),
            limit: 500,
            ..Default::default()
        },
    )
    .await;
    let assets = match assets {
        Ok(assets) => assets,
        Err(error) => return internal_page(error),
    };
    let notifications = match ops::contact_preferences(&state, &me, contact.id).await {
        Ok(preferences) => preferences,
        Err(ApiError::NotFound(_)) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    ContactView {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        updated: display_time(&contact.updated_at),
        contact,
        company,
        history,
        assets,
        notifications,
    }
    .into_response()
}

async fn edit_contact_page(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::EditContacts) {
        return refused.into_response();
    }
    match contact_and_company(&state, &me, path).await {
        Ok(Some((contact, company))) => contact_form(
            &cookies,
            &headers,
            &company,
            FormPurpose::edit(&contact),
            &ContactFormInput::of(&contact),
            &[],
            StatusCode::OK,
        ),
        Ok(None) => not_found_page(),
        Err(error) => internal_page(error),
    }
}

/// Saves the Edit form (the contact's `Update` command): bad fields show the form again with
/// the messages in place; a success goes back to the contact's page.
async fn edit_contact(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(input): Form<ContactFormInput>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &input.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::EditContacts) {
        return refused.into_response();
    }
    let (contact, company) = match contact_and_company(&state, &me, path).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let details = match input.details() {
        Ok(details) => details,
        Err(errors) => {
            return contact_form(
                &cookies,
                &headers,
                &company,
                FormPurpose::edit(&contact),
                &input,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
    };
    let result = state
        .store
        .execute::<Contact>(
            &contact.id.to_string(),
            ContactCommand::Update { details },
            &(),
            &me.meta(),
            ConflictPolicy::RetryOnce,
        )
        .await;
    match result {
        Ok(done) => {
            state
                .read_your_writes(&["contacts"], "contact", &done.aggregate_id, done.version)
                .await;
            let message = if done.events.is_empty() {
                "Nothing changed.".to_owned()
            } else {
                format!("Saved {}.", done.state.details.name)
            };
            form_done(&headers, &format!("/contacts/{}", contact.id), &message)
        }
        Err(CommandError::NotFound) | Err(CommandError::Domain(ContactError::NotFound)) => {
            not_found_page()
        }
        Err(CommandError::Domain(error)) => error_page(
            StatusCode::CONFLICT,
            &cookies,
            "That cannot be done now",
            &format!("{}.", capitalise(&error.to_string())),
        ),
        Err(error) => internal_page(error),
    }
}

// ---- A contact's notification preferences (issue 6): which channels they get messages on,
// and whether they opted out of messages about work orders, invoices and payments.

/// Which messages a contact gets: by email and by SMS (each when they have an address for
/// it); `opted_out` stops every message about work orders, invoices and payments.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ContactNotifications, example = json!({"email": true, "sms": false, "opted_out": false}))]
pub struct PreferencesJson {
    email: bool,
    sms: bool,
    opted_out: bool,
}

impl From<NotificationPreferences> for PreferencesJson {
    fn from(p: NotificationPreferences) -> Self {
        Self {
            email: p.email,
            sms: p.sms,
            opted_out: p.opted_out,
        }
    }
}

/// A contact's notification preferences: all three are required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ContactNotificationsBody, example = json!({"email": true, "sms": false, "opted_out": false}))]
pub struct PreferencesBody {
    #[serde(default)]
    #[schema(value_type = bool, required = true)]
    email: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(value_type = bool, required = true)]
    sms: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(value_type = bool, required = true)]
    opted_out: Option<serde_json::Value>,
}

impl PreferencesBody {
    /// The preferences, or each field that is not `true` or `false`.
    fn preferences(&self) -> Result<NotificationPreferences, ApiError> {
        let mut errors = Vec::new();
        let mut flag = |field: &'static str, value: &Option<serde_json::Value>| match value {
            Some(serde_json::Value::Bool(b)) => *b,
            _ => {
                errors.push(domain::ValidationError::new(
                    field,
                    "is required: true or false",
                ));
                false
            }
        };
        let preferences = NotificationPreferences {
            email: flag("email", &self.email),
            sms: flag("sms", &self.sms),
            opted_out: flag("opted_out", &self.opted_out),
        };
        if errors.is_empty() {
            Ok(preferences)
        } else {
            Err(ApiError::Invalid(errors))
        }
    }
}

/// A contact's notification preferences.
#[utoipa::path(
    get,
    path = "/api/v1/contacts/{id}/notifications",
    tag = "contacts",
    operation_id = "getContactNotifications",
    params(("id" = Uuid, Path, description = "The contact's id")),
    responses(
        (status = 200, description = "The contact's preferences", body = PreferencesJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn get_preferences(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "contact")?;
        ops::contact_preferences(&state, &me, id).await
    };
    match outcome.await {
        Ok(preferences) => Json(PreferencesJson::from(preferences)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Set which channels a contact gets messages on, or opt them out.
#[utoipa::path(
    put,
    path = "/api/v1/contacts/{id}/notifications",
    tag = "contacts",
    operation_id = "setContactNotifications",
    params(("id" = Uuid, Path, description = "The contact's id"), IdempotencyKey),
    request_body(content = PreferencesBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The preferences after the change", body = PreferencesJson),
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
pub async fn set_preferences(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<ApiJson<PreferencesBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::EditContacts) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "contact")?;
        // Another tenant's contact is 404 whatever the body holds.
        ops::contact_preferences(&state, &me, id).await?;
        let ApiJson(body) = body?;
        let preferences = body.preferences()?;
        let meta = command_meta(&me, &headers)?;
        ops::set_contact_preferences(&state, &meta, id, preferences).await
    };
    match outcome.await {
        Ok(preferences) => Json(PreferencesJson::from(preferences)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// The preferences form of a contact's page.
#[derive(Debug, Deserialize)]
struct PreferencesForm {
    #[serde(default)]
    csrf: String,
    email: Option<String>,
    sms: Option<String>,
    opted_out: Option<String>,
}

/// Saves the contact page's notification preferences.
async fn save_preferences(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<PreferencesForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::EditContacts) {
        return refused.into_response();
    }
    let (contact, _) = match contact_and_company(&state, &me, path).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let preferences = NotificationPreferences {
        email: form.email.is_some(),
        sms: form.sms.is_some(),
        opted_out: form.opted_out.is_some(),
    };
    match ops::set_contact_preferences(&state, &me.meta(), contact.id, preferences).await {
        Ok(_) => redirect_with_flash(
            &format!("/contacts/{}", contact.id),
            "Notification preferences saved.",
        ),
        Err(ApiError::NotFound(_)) => not_found_page(),
        Err(error) => internal_page(error),
    }
}
