//! Contacts, a customer company's people (issue 4): the API. Seeing them follows
//! `ViewCompanies`; adding and changing them needs `EditContacts`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use commands::{ConflictPolicy, Executed};
use domain::authz::Action;
use domain::contact::{Contact, ContactCommand, ContactDetails, ContactInput};
use projections::companies;
use projections::contacts::{self, ContactRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::{command_meta, parse_id, ApiJson, IdempotencyKey};
use crate::auth::Principal;
use crate::error::ApiError;
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

fn path_id(path: Result<Path<String>, PathRejection>, what: &str) -> Result<Uuid, ApiError> {
    let Path(raw) = path?;
    parse_id(&raw, what)
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
            let meta = meta
                .clone()
                .with_command_id(Uuid::new_v5(&meta.command_id, &[i as u8]));
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
