//! Team administration: the tenant's people, their roles and whether they may sign in, on the
//! console (`/team`, `/team/{id}`) and the API (`/api/v1/users`).
//!
//! - Seeing the team needs `ViewUsers`; every change needs `ManageUsers` and, record by
//!   record, `authz::may_manage_member` (only owners make, change, disable or remove owners).
//!   The member's current role is read from the tenant aggregate, not the read model, so a
//!   lagging list cannot let an admin touch someone who just became owner.
//! - The tenant aggregate decides the rest (the last enabled owner can be neither demoted,
//!   disabled nor removed; a portal person stays a portal person): its refusals are 409.
//! - Nobody disables or removes themselves here (they would lock themselves out); changing
//!   one's own role is allowed, so an owner can step down once someone else is owner.
//! - Disabling or removing a person ends their console sessions at once; their API tokens stop
//!   with the `users` read model, which the answer waits for (read-your-writes).
//! - A person of another tenant, a removed person or an unknown id is "not found" (404).
//! - An invitation's link goes to the outbox only, never into a page or an API answer.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::PathRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::SecondsFormat;
use commands::identity::{self as ident, InviteError, NewPerson};
use commands::{sessions, CommandError, ConflictPolicy, EventMeta};
use domain::authz::{self, Action};
use domain::identity::{Email, Role};
use domain::tenant::{Member, Tenant, TenantCommand, TenantError};
use domain::user::User;
use domain::{ErrorKind, HasErrorKind, ValidationError};
use projections::companies::{self, ListQuery, StatusFilter};
use projections::users::{self, UserRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::{command_meta, ApiJson, IdempotencyKey};
use crate::auth::Principal;
use crate::console::{
    capitalise, csrf_refusal, display_time, internal_page, not_found_page, redirect_with_flash,
    Cookies,
};
use crate::error::ApiError;
use crate::openapi::{
    BadRequest, Conflict, Forbidden, InternalError, NotFound, PayloadTooLarge, Unauthorized,
    Unprocessable, UnsupportedMediaType,
};
use crate::AppState;

/// Most customer companies offered in the invitation form's select.
const MAX_COMPANIES: i64 = 500;

pub fn router() -> Router<AppState> {
    let console = Router::new()
        .route("/team", get(team_page).post(invite_form))
        .route("/team/{id}", get(member_page))
        .route("/team/{id}/role", post(role_form))
        .route("/team/{id}/disable", post(disable_form))
        .route("/team/{id}/enable", post(enable_form))
        .route("/team/{id}/remove", post(remove_form))
        .route("/team/{id}/invitation", post(invitation_form));
    let api = Router::new()
        .route("/api/v1/users", get(list_users).post(invite_user))
        .route(
            "/api/v1/users/{id}",
            get(get_user).patch(update_user).delete(remove_user),
        )
        .layer(axum::extract::DefaultBodyLimit::max(crate::api::BODY_LIMIT));
    console.merge(api)
}

// ---------------------------------------------------------------------------------------------
// Rules shared by the console and the API
// ---------------------------------------------------------------------------------------------

/// Why a team command was not carried out.
#[derive(Debug)]
enum Refused {
    /// No such member in the asker's tenant.
    NotFound,
    /// The role of the asker does not allow it (for this member).
    Forbidden,
    /// The tenant's state refuses it (a message for people, lower-case like domain errors).
    Conflict(String),
    /// Bad input.
    Invalid(Vec<ValidationError>),
    Internal(String),
}

impl Refused {
    fn api(self, me: &Principal, id: Uuid) -> Response {
        match self {
            Refused::NotFound => {
                ApiError::NotFound(format!("person {id} not found")).into_response()
            }
            Refused::Forbidden => me.forbidden().into_response(),
            Refused::Conflict(message) => ApiError::Conflict(message).into_response(),
            Refused::Invalid(errors) => ApiError::Invalid(errors).into_response(),
            Refused::Internal(error) => ApiError::internal(error).into_response(),
        }
    }
}

impl From<CommandError<TenantError>> for Refused {
    fn from(error: CommandError<TenantError>) -> Self {
        match error {
            CommandError::NotFound => Refused::NotFound,
            CommandError::Domain(e) if e.kind() == ErrorKind::NotFound => Refused::NotFound,
            CommandError::Domain(e) if e.kind() == ErrorKind::Invalid => {
                Refused::Invalid(vec![ValidationError::new("role", e.to_string())])
            }
            CommandError::Domain(e) => Refused::Conflict(e.to_string()),
            CommandError::Conflict => Refused::Conflict(error.to_string()),
            other => Refused::Internal(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for Refused {
    fn from(error: sqlx::Error) -> Self {
        Refused::Internal(error.to_string())
    }
}

/// A change to one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Role(Role),
    Disable,
    Enable,
    Remove,
}

impl Change {
    fn command(self, user_id: Uuid) -> TenantCommand {
        match self {
            Change::Role(role) => TenantCommand::ChangeRole { user_id, role },
            Change::Disable => TenantCommand::DisableMember { user_id },
            Change::Enable => TenantCommand::EnableMember { user_id },
            Change::Remove => TenantCommand::RemoveMember { user_id },
        }
    }

    fn ends_sessions(self) -> bool {
        matches!(self, Change::Disable | Change::Remove)
    }
}

/// The membership of `user_id` in the asker's tenant, from the tenant aggregate (the truth
/// the command will be decided on).
async fn load_member(state: &AppState, me: &Principal, user_id: Uuid) -> Result<Member, Refused> {
    let (tenant, _) = state
        .store
        .load::<Tenant>(me.tenant_id, &me.tenant_id.to_string())
        .await?;
    tenant
        .members
        .get(&user_id)
        .cloned()
        .ok_or(Refused::NotFound)
}

/// Whether `me` may make `change` to `member` (role matrix, owners by owners, not oneself).
fn authorize(
    me: &Principal,
    user_id: Uuid,
    member: &Member,
    change: Change,
) -> Result<(), Refused> {
    let new_role = match change {
        Change::Role(role) => Some(role),
        _ => None,
    };
    if !authz::may_manage_member(me.role, member.role, new_role) {
        return Err(Refused::Forbidden);
    }
    if user_id == me.user_id {
        match change {
            Change::Disable => {
                return Err(Refused::Conflict(
                    "you cannot disable your own account; ask another owner or administrator"
                        .into(),
                ))
            }
            Change::Remove => {
                return Err(Refused::Conflict(
                    "you cannot remove yourself from the team; ask another owner or administrator"
                        .into(),
                ))
            }
            Change::Role(_) | Change::Enable => {}
        }
    }
    Ok(())
}

/// Runs an authorized change: the tenant command, the end of the person's sessions when they
/// lose access, and the wait for the `users` read model. Returns the tenant's version.
async fn run_change(
    state: &AppState,
    me: &Principal,
    user_id: Uuid,
    change: Change,
    meta: &EventMeta,
) -> Result<usize, Refused> {
    let tenant_id = me.tenant_id.to_string();
    let done = state
        .store
        .execute::<Tenant>(
            &tenant_id,
            change.command(user_id),
            &(),
            meta,
            ConflictPolicy::RetryOnce,
        )
        .await?;
    if change.ends_sessions() {
        let ended = sessions::end_all(&state.pool, user_id, None).await?;
        tracing::info!(%user_id, ended, "sessions ended: the person lost access");
    }
    state
        .read_your_writes(&["users"], "tenant", &tenant_id, done.version)
        .await;
    Ok(done.version)
}

/// One member, from the read model (`None`: not a member of the asker's tenant).
async fn read_member(
    state: &AppState,
    me: &Principal,
    id: Uuid,
) -> Result<Option<UserRow>, sqlx::Error> {
    Ok(users::get(&state.pool, me.tenant_id, id)
        .await?
        .filter(|row| row.member))
}

/// A new person, checked.
struct Invitee {
    email: Email,
    name: String,
    role: Role,
    company_id: Option<Uuid>,
}

/// The name of a person: 1 to 200 characters once trimmed, no control characters (as the
/// user aggregate requires; checked first so a bad name never adds a member).
fn check_name(name: Option<&str>) -> Result<String, ValidationError> {
    let name = name.map(str::trim).unwrap_or_default();
    if name.is_empty() {
        Err(ValidationError::new("name", "is required"))
    } else if name.chars().count() > 200 {
        Err(ValidationError::new(
            "name",
            "must be at most 200 characters",
        ))
    } else if name.chars().any(char::is_control) {
        Err(ValidationError::new(
            "name",
            "must not contain control characters",
        ))
    } else {
        Ok(name.to_owned())
    }
}

/// Checks an invitation's fields (all errors at once). `Err(None)`: `me` may not give `role`.
async fn check_invitee(
    state: &AppState,
    me: &Principal,
    email: Option<&str>,
    name: Option<&str>,
    role: Option<&str>,
    company_id: Option<&str>,
) -> Result<Invitee, Refused> {
    let email = match email.map(str::trim).filter(|e| !e.is_empty()) {
        None => Err(ValidationError::new("email", "is required")),
        Some(e) => Email::parse(e),
    };
    let name = check_name(name);
    let role = match role.map(str::trim).filter(|r| !r.is_empty()) {
        None => Err(ValidationError::new("role", "is required")),
        Some(r) => r.parse::<Role>(),
    };
    if let Ok(role) = role {
        if !authz::may_manage_member(me.role, role, Some(role)) {
            return Err(Refused::Forbidden);
        }
    }
    let company_id = company_id.map(str::trim).filter(|c| !c.is_empty());
    let company = match (&role, company_id) {
        (Ok(Role::Client), None) => Err(ValidationError::new(
            "company_id",
            "is required for a client: choose the customer company they belong to",
        )),
        (Ok(Role::Client), Some(raw)) => match Uuid::parse_str(raw) {
            Err(_) => Err(ValidationError::new("company_id", "is not a company id")),
            Ok(id) => match companies::get(&state.pool, me.tenant_id, id).await? {
                None => Err(ValidationError::new(
                    "company_id",
                    "is not a customer company",
                )),
                Some(row) if row.archived => Err(ValidationError::new(
                    "company_id",
                    "is an archived company: restore it first",
                )),
                Some(_) => Ok(Some(id)),
            },
        },
        (Ok(_), Some(_)) => Err(ValidationError::new(
            "company_id",
            "must be empty: only a client belongs to a customer company",
        )),
        (_, _) => Ok(None),
    };
    match (email, name, role, company) {
        (Ok(email), Ok(name), Ok(role), Ok(company_id)) => Ok(Invitee {
            email,
            name,
            role,
            company_id,
        }),
        (email, name, role, company) => Err(Refused::Invalid(
            [email.err(), name.err(), role.err(), company.err()]
                .into_iter()
                .flatten()
                .collect(),
        )),
    }
}

/// Role names as the forms show them.
fn role_label(role: Role) -> &'static str {
    match role {
        Role::Owner => "Owner",
        Role::Admin => "Admin",
        Role::Technician => "Technician",
        Role::Accountant => "Accountant",
        Role::Client => "Client (customer portal)",
    }
}

// ---------------------------------------------------------------------------------------------
// Console
// ---------------------------------------------------------------------------------------------

/// A person as the pages show them.
struct PersonView {
    id: Uuid,
    name: String,
    email: String,
    role: String,
    status: &'static str,
    is_me: bool,
    created: String,
    created_at: String,
}

impl PersonView {
    fn of(row: &UserRow, me: &Principal) -> Self {
        Self {
            id: row.id,
            name: if row.name.is_empty() {
                row.email.clone()
            } else {
                row.name.clone()
            },
            email: row.email.clone(),
            role: row.role.clone(),
            status: row.status(),
            is_me: row.id == me.user_id,
            created: display_time(&row.created_at),
            created_at: row.created_at.to_rfc3339(),
        }
    }
}

/// An option of a select.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

/// The values and messages of the invitation form.
#[derive(Default)]
struct InviteFormView {
    email: String,
    name: String,
    role: String,
    company_id: String,
    email_error: Option<String>,
    name_error: Option<String>,
    role_error: Option<String>,
    company_error: Option<String>,
}

impl InviteFormView {
    /// Puts each error next to its field.
    fn with_errors(mut self, errors: &[ValidationError]) -> Self {
        for error in errors {
            let (slot, label) = match error.field {
                "email" => (&mut self.email_error, "Email"),
                "name" => (&mut self.name_error, "Name"),
                "role" => (&mut self.role_error, "Role"),
                _ => (&mut self.company_error, "Customer company"),
            };
            *slot = Some(format!("{label} {}.", error.message));
        }
        self
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "team.html")]
struct TeamPage {
    flash: Option<String>,
    csrf: String,
    people: Vec<PersonView>,
    manage: bool,
    form: InviteFormView,
    roles: Vec<Choice>,
    companies: Vec<Choice>,
}

async fn render_team(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    form: InviteFormView,
    status: StatusCode,
) -> Response {
    let rows = match users::list(&state.pool, me.tenant_id).await {
        Ok(rows) => rows,
        Err(error) => return internal_page(error),
    };
    let manage = me.may(Action::ManageUsers);
    let companies = if manage {
        match companies::list(
            &state.pool,
            me.tenant_id,
            &ListQuery {
                search: None,
                status: StatusFilter::Active,
                limit: MAX_COMPANIES,
                ..Default::default()
            },
        )
        .await
        {
            Ok(page) => page
                .rows
                .into_iter()
                .map(|c| Choice {
                    selected: form.company_id == c.id.to_string(),
                    value: c.id.to_string(),
                    label: c.name,
                })
                .collect(),
            Err(error) => return internal_page(error),
        }
    } else {
        Vec::new()
    };
    let chosen = if form.role.is_empty() {
        "technician"
    } else {
        form.role.as_str()
    };
    let roles = Role::ALL
        .into_iter()
        .filter(|r| authz::may_manage_member(me.role, *r, Some(*r)))
        .map(|r| Choice {
            value: r.as_str().to_owned(),
            label: role_label(r).to_owned(),
            selected: r.as_str() == chosen,
        })
        .collect();
    (
        status,
        TeamPage {
            flash: cookies.flash.clone(),
            csrf: cookies.csrf.clone(),
            people: rows.iter().map(|row| PersonView::of(row, me)).collect(),
            manage,
            form,
            roles,
            companies,
        },
    )
        .into_response()
}

async fn team_page(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewUsers) {
        return refused.into_response();
    }
    render_team(
        &state,
        &me,
        &cookies,
        InviteFormView::default(),
        StatusCode::OK,
    )
    .await
}

#[derive(Debug, Deserialize)]
struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    company_id: String,
}

async fn invite_form(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Form(form): Form<InviteForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::ManageUsers) {
        return refused.into_response();
    }
    let view = InviteFormView {
        email: form.email.clone(),
        name: form.name.clone(),
        role: form.role.clone(),
        company_id: form.company_id.clone(),
        ..Default::default()
    };
    let checked = check_invitee(
        &state,
        &me,
        Some(&form.email),
        Some(&form.name),
        Some(&form.role),
        Some(&form.company_id),
    )
    .await;
    let invitee = match checked {
        Ok(invitee) => invitee,
        Err(Refused::Invalid(errors)) => {
            return render_team(
                &state,
                &me,
                &cookies,
                view.with_errors(&errors),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(Refused::Forbidden) => return me.forbidden().into_response(),
        Err(other) => return internal_page(format!("{other:?}")),
    };
    let email = invitee.email.clone();
    let invited = ident::invite(
        &state.store,
        &state.settings().vault,
        &me.meta(),
        NewPerson {
            email: invitee.email,
            name: invitee.name,
            role: invitee.role,
            company_id: invitee.company_id,
        },
        &state.settings().public_url,
    )
    .await;
    match invited {
        Ok(invitation) => {
            state
                .read_your_writes(&["users"], "user", &invitation.user_id.to_string(), 1)
                .await;
            redirect_with_flash(
                "/team",
                &format!(
                    "Invitation sent to {email} (the link is in the outbox until email is set up). It works until {}.",
                    display_time(&invitation.expires_at)
                ),
            )
        }
        Err(InviteError::EmailTaken(_)) => {
            render_team(
                &state,
                &me,
                &cookies,
                view.with_errors(&[ValidationError::new(
                    "email",
                    "is already in use by another account",
                )]),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(InviteError::Refused(message)) => {
            let mut view = view;
            view.email_error = Some(format!("{}.", capitalise(&message)));
            render_team(&state, &me, &cookies, view, StatusCode::CONFLICT).await
        }
        Err(InviteError::Failed(error)) => internal_page(error),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "team_member.html")]
struct MemberPage {
    flash: Option<String>,
    csrf: String,
    person: PersonView,
    company: Option<String>,
    /// `me` may change this person at all (role matrix and "owners by owners").
    manage: bool,
    /// The roles this person may be given by `me` (empty: no role form).
    roles: Vec<Choice>,
    role_error: Option<String>,
    /// A refusal of the last action, shown at the top.
    problem: Option<String>,
}

/// The member page, with an optional refusal (`problem`) or role error.
async fn render_member(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    id: Uuid,
    problem: Option<String>,
    role_error: Option<String>,
    status: StatusCode,
) -> Response {
    let row = match read_member(state, me, id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let company = match row.company_id {
        None => None,
        Some(company_id) => match companies::get(&state.pool, me.tenant_id, company_id).await {
            Ok(found) => Some(found.map_or_else(|| company_id.to_string(), |c| c.name)),
            Err(error) => return internal_page(error),
        },
    };
    let member_role = row.role();
    let manage = me.may(Action::ManageUsers)
        && member_role.is_some_and(|r| authz::may_manage_member(me.role, r, None));
    let roles = match member_role {
        Some(current) if manage && current.is_staff() => Role::ALL
            .into_iter()
            .filter(|r| r.is_staff() && authz::may_manage_member(me.role, current, Some(*r)))
            .map(|r| Choice {
                value: r.as_str().to_owned(),
                label: role_label(r).to_owned(),
                selected: r == current,
            })
            .collect(),
        _ => Vec::new(),
    };
    (
        status,
        MemberPage {
            flash: cookies.flash.clone(),
            csrf: cookies.csrf.clone(),
            person: PersonView::of(&row, me),
            company,
            manage,
            roles,
            role_error,
            problem: problem.map(|p| format!("{}.", capitalise(&p))),
        },
    )
        .into_response()
}

async fn member_page(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewUsers) {
        return refused.into_response();
    }
    let Some(id) = crate::console::path_uuid(id) else {
        return not_found_page();
    };
    render_member(&state, &me, &cookies, id, None, None, StatusCode::OK).await
}

#[derive(Debug, Deserialize)]
struct MemberForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    role: String,
}

/// A form of the member page: `decide` turns the form into the change (or a field error).
async fn member_form(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    headers: &HeaderMap,
    id: Result<Path<String>, PathRejection>,
    form: MemberForm,
    decide: impl FnOnce(&MemberForm) -> Result<Change, ValidationError>,
) -> Response {
    if let Some(refused) = csrf_refusal(cookies, headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::ManageUsers) {
        return refused.into_response();
    }
    let Some(user_id) = crate::console::path_uuid(id) else {
        return not_found_page();
    };
    let change = match decide(&form) {
        Ok(change) => change,
        Err(error) => {
            return render_member(
                state,
                me,
                cookies,
                user_id,
                None,
                Some(format!("Role {}.", error.message)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    };
    let outcome = async {
        let member = load_member(state, me, user_id).await?;
        authorize(me, user_id, &member, change)?;
        let unchanged = matches!(change, Change::Role(role) if role == member.role);
        run_change(state, me, user_id, change, &me.meta()).await?;
        Ok::<_, Refused>(unchanged)
    }
    .await;
    match outcome {
        Ok(unchanged) => {
            let name = match read_member(state, me, user_id).await {
                Ok(Some(row)) if !row.name.is_empty() => row.name,
                Ok(Some(row)) => row.email,
                _ => "The person".to_owned(),
            };
            let (to, message) = match change {
                _ if unchanged => (format!("/team/{user_id}"), "Nothing changed.".to_owned()),
                Change::Role(role) => (
                    format!("/team/{user_id}"),
                    format!("{name} is now {}.", role_label(role).to_lowercase()),
                ),
                Change::Disable => (
                    format!("/team/{user_id}"),
                    format!("{name} is disabled: their sessions are signed out and their API tokens stop working."),
                ),
                Change::Enable => (
                    format!("/team/{user_id}"),
                    format!("{name} is enabled again."),
                ),
                Change::Remove => (
                    "/team".to_owned(),
                    "The person is removed from the team and signed out.".to_owned(),
                ),
            };
            redirect_with_flash(&to, &message)
        }
        Err(Refused::NotFound) => not_found_page(),
        Err(Refused::Forbidden) => me.forbidden().into_response(),
        Err(Refused::Conflict(message)) => {
            render_member(
                state,
                me,
                cookies,
                user_id,
                Some(message),
                None,
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(Refused::Invalid(errors)) => {
            let message = errors
                .first()
                .map(|e| format!("Role {}.", e.message))
                .unwrap_or_default();
            render_member(
                state,
                me,
                cookies,
                user_id,
                None,
                Some(message),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(Refused::Internal(error)) => internal_page(error),
    }
}

async fn role_form(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    Form(form): Form<MemberForm>,
) -> Response {
    member_form(&state, &me, &cookies, &headers, id, form, |form| {
        form.role.parse::<Role>().map(Change::Role)
    })
    .await
}

async fn disable_form(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    Form(form): Form<MemberForm>,
) -> Response {
    member_form(&state, &me, &cookies, &headers, id, form, |_| {
        Ok(Change::Disable)
    })
    .await
}

async fn enable_form(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    Form(form): Form<MemberForm>,
) -> Response {
    member_form(&state, &me, &cookies, &headers, id, form, |_| {
        Ok(Change::Enable)
    })
    .await
}

async fn remove_form(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    Form(form): Form<MemberForm>,
) -> Response {
    member_form(&state, &me, &cookies, &headers, id, form, |_| {
        Ok(Change::Remove)
    })
    .await
}

/// "Send the invitation again": a new link (the old one stops working), only while invited.
async fn invitation_form(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    Form(form): Form<MemberForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::ManageUsers) {
        return refused.into_response();
    }
    let Some(user_id) = crate::console::path_uuid(id) else {
        return not_found_page();
    };
    let row = match read_member(&state, &me, user_id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let member = match load_member(&state, &me, user_id).await {
        Ok(member) => member,
        Err(Refused::NotFound) => return not_found_page(),
        Err(other) => return internal_page(format!("{other:?}")),
    };
    if !authz::may_manage_member(me.role, member.role, None) {
        return me.forbidden().into_response();
    }
    let again = |message: &str| {
        render_member(
            &state,
            &me,
            &cookies,
            user_id,
            Some(message.to_owned()),
            None,
            StatusCode::CONFLICT,
        )
    };
    if row.status() != "invited" {
        return again("this person has already accepted the invitation (or is disabled): there is nothing to send").await;
    }
    match ident::renew_invitation(
        &state.store,
        &state.settings().vault,
        &me.meta(),
        user_id,
        &state.settings().public_url,
    )
    .await
    {
        Ok(invitation) => redirect_with_flash(
            &format!("/team/{user_id}"),
            &format!(
                "A new invitation was sent to {} (the link is in the outbox until email is set up). The previous link no longer works; the new one works until {}.",
                row.email,
                display_time(&invitation.expires_at)
            ),
        ),
        Err(InviteError::Refused(message)) => again(&message).await,
        Err(InviteError::EmailTaken(message) | InviteError::Failed(message)) => {
            internal_page(message)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// API
// ---------------------------------------------------------------------------------------------

/// A person of the team as the API shows them.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserJson {
    pub id: Uuid,
    #[schema(example = "ann@example.com")]
    pub email: String,
    #[schema(example = "Ann Example")]
    pub name: String,
    #[schema(value_type = UserRole)]
    pub role: String,
    pub status: UserStatus,
    /// The customer company of a `client`; null for staff.
    pub company_id: Option<Uuid>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    /// When the invitation link stops working: only in the answer to an invitation. The link
    /// itself is never sent in the API; it goes to the person (the outbox until email is set
    /// up).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = DateTime, required = false)]
    pub invitation_expires_at: Option<String>,
}

// The values of `domain::identity::Role`, for the OpenAPI document.
/// A person's role (see docs/roles.md).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a description only
pub enum UserRole {
    Owner,
    Admin,
    Technician,
    Accountant,
    Client,
}

/// Whether a person can sign in: `invited` (has not chosen a password yet), `active`,
/// `disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Invited,
    Active,
    Disabled,
}

impl From<&UserRow> for UserJson {
    fn from(row: &UserRow) -> Self {
        Self {
            id: row.id,
            email: row.email.clone(),
            name: row.name.clone(),
            role: row.role.clone(),
            status: match row.status() {
                "invited" => UserStatus::Invited,
                "active" => UserStatus::Active,
                _ => UserStatus::Disabled,
            },
            company_id: row.company_id,
            created_at: row.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            invitation_expires_at: None,
        }
    }
}

/// The people of the team, by name.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    items: Vec<UserJson>,
}

/// An invitation. Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = InviteUser, example = json!({"email": "ann@example.com", "name": "Ann Example", "role": "technician"}))]
pub struct InviteUserBody {
    /// The person's sign-in address; not in use by any other account.
    #[schema(value_type = String, example = "ann@example.com")]
    email: Option<Value>,
    /// 1 to 200 characters once trimmed.
    #[schema(value_type = String, min_length = 1, max_length = 200, example = "Ann Example")]
    name: Option<Value>,
    /// Only an owner may invite an owner.
    #[schema(value_type = UserRole)]
    role: Option<Value>,
    /// The customer company of a `client` (required for a client, absent or null for staff).
    #[schema(value_type = Option<Uuid>)]
    company_id: Option<Value>,
}

/// Changes to a person; absent (or null) fields stay as they are. Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateUser, example = json!({"role": "accountant", "enabled": true}))]
pub struct UpdateUserBody {
    /// The new role. Staff stay staff and clients stay clients; only an owner gives or takes
    /// the owner role; the last enabled owner keeps it.
    #[schema(value_type = Option<UserRole>)]
    role: Option<Value>,
    /// `false` disables the person (their sessions end, their API tokens stop working);
    /// `true` enables them again. Nobody disables themselves.
    #[schema(value_type = Option<bool>)]
    enabled: Option<Value>,
}

/// A JSON string field as text; `None` when absent or null.
fn text<'a>(
    field: &'static str,
    value: Option<&'a Value>,
) -> Result<Option<&'a str>, ValidationError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ValidationError::new(field, "must be a string")),
    }
}

async fn user_json(state: &AppState, me: &Principal, id: Uuid) -> Result<UserJson, ApiError> {
    read_member(state, me, id)
        .await?
        .map(|row| UserJson::from(&row))
        .ok_or_else(|| ApiError::NotFound(format!("person {id} not found")))
}

/// List the people of the team, by name (removed people are not listed).
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "team",
    operation_id = "listUsers",
    responses(
        (status = 200, description = "The team", body = UserList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn list_users(
    State(state): State<AppState>,
    me: Principal,
) -> Result<Json<UserList>, Response> {
    me.require(Action::ViewUsers)
        .map_err(IntoResponse::into_response)?;
    let rows = users::list(&state.pool, me.tenant_id)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    Ok(Json(UserList {
        items: rows.iter().map(UserJson::from).collect(),
    }))
}

/// Invite a person.
///
/// The person gets an email (kept in the outbox until email is set up) with a one-time link
/// to choose their password; the link is never part of this answer. A `client` needs
/// `company_id`, staff must not have one; only an owner invites an owner (403). An address
/// already in use is 409. With an `Idempotency-Key`, a retried request invites nobody more
/// and answers with the person the first request invited.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "team",
    operation_id = "inviteUser",
    params(IdempotencyKey),
    request_body(content = InviteUserBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Invited", body = UserJson),
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
pub async fn invite_user(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    ApiJson(body): ApiJson<InviteUserBody>,
) -> Result<(StatusCode, Json<UserJson>), Response> {
    me.require(Action::ManageUsers)
        .map_err(IntoResponse::into_response)?;
    let fields = [
        text("email", body.email.as_ref()),
        text("name", body.name.as_ref()),
        text("role", body.role.as_ref()),
        text("company_id", body.company_id.as_ref()),
    ];
    let type_errors: Vec<ValidationError> = fields
        .iter()
        .filter_map(|f| f.as_ref().err().cloned())
        .collect();
    if !type_errors.is_empty() {
        return Err(ApiError::Invalid(type_errors).into_response());
    }
    let [email, name, role, company_id] = fields.map(|f| f.ok().flatten());
    let meta = command_meta(&me, &headers).map_err(IntoResponse::into_response)?;
    let invitee = check_invitee(&state, &me, email, name, role, company_id)
        .await
        .map_err(|refused| refused.api(&me, Uuid::nil()))?;
    invite_as(&state, &me, &meta, invitee)
        .await
        .map(|user| (StatusCode::CREATED, Json(user)))
        .map_err(IntoResponse::into_response)
}

async fn invite_as(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    invitee: Invitee,
) -> Result<UserJson, ApiError> {
    // A retried request (same Idempotency-Key) finds the person its first run invited.
    let user_id = meta.new_aggregate_id();
    let (existing, _) = state
        .store
        .load::<User>(me.tenant_id, &user_id.to_string())
        .await
        .map_err(|e| match e {
            CommandError::NotFound => {
                ApiError::Conflict("this Idempotency-Key was used for something else".into())
            }
            other => ApiError::internal(other),
        })?;
    let expires_at = if existing.exists {
        existing.invitation.map(|link| link.expires_at)
    } else {
        let invitation = ident::invite(
            &state.store,
            &state.settings().vault,
            meta,
            NewPerson {
                email: invitee.email.clone(),
                name: invitee.name.clone(),
                role: invitee.role,
                company_id: invitee.company_id,
            },
            &state.settings().public_url,
        )
        .await
        .map_err(|e| match e {
            InviteError::EmailTaken(email) => {
                ApiError::Conflict(format!("{email} is already in use by another account"))
            }
            InviteError::Refused(message) => ApiError::Conflict(message),
            InviteError::Failed(error) => ApiError::internal(error),
        })?;
        Some(invitation.expires_at)
    };
    state
        .read_your_writes(&["users"], "user", &user_id.to_string(), 1)
        .await;
    let mut user = match read_member(state, me, user_id).await? {
        Some(row) => UserJson::from(&row),
        // The read model did not catch up in time: what the command decided.
        None => UserJson {
            id: user_id,
            email: invitee.email.to_string(),
            name: invitee.name,
            role: invitee.role.as_str().to_owned(),
            status: UserStatus::Invited,
            company_id: invitee.company_id,
            created_at: chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
            invitation_expires_at: None,
        },
    };
    user.invitation_expires_at =
        expires_at.map(|at| at.to_rfc3339_opts(SecondsFormat::Micros, true));
    Ok(user)
}

/// One person of the team.
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}",
    tag = "team",
    operation_id = "getUser",
    params(("id" = Uuid, Path, description = "The person's id")),
    responses(
        (status = 200, description = "The person", body = UserJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn get_user(
    State(state): State<AppState>,
    me: Principal,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<UserJson>, Response> {
    me.require(Action::ViewUsers)
        .map_err(IntoResponse::into_response)?;
    let found = async {
        let id = crate::api::path_id(id, "person")?;
        user_json(&state, &me, id).await
    };
    found.await.map(Json).map_err(IntoResponse::into_response)
}

/// Change a person's role, or disable or enable them.
///
/// Only the fields present change (an `enabled` equal to the current state changes nothing).
/// Only an owner changes an owner or gives the owner role (403); the last enabled owner can be
/// neither demoted nor disabled, a client cannot become staff nor staff a client, and nobody
/// disables themselves (409). Disabling ends the person's sessions and stops their API tokens.
#[utoipa::path(
    patch,
    path = "/api/v1/users/{id}",
    tag = "team",
    operation_id = "updateUser",
    params(
        ("id" = Uuid, Path, description = "The person's id"),
        IdempotencyKey,
    ),
    request_body(content = UpdateUserBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The person after the change", body = UserJson),
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
pub async fn update_user(
    State(state): State<AppState>,
    me: Principal,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateUserBody>,
) -> Result<Json<UserJson>, Response> {
    me.require(Action::ManageUsers)
        .map_err(IntoResponse::into_response)?;
    let user_id = crate::api::path_id(id, "person").map_err(IntoResponse::into_response)?;
    let role = match text("role", body.role.as_ref()) {
        Ok(None) => Ok(None),
        Ok(Some(raw)) => raw.parse::<Role>().map(Some),
        Err(e) => Err(e),
    };
    let enabled = match body.enabled {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(ValidationError::new("enabled", "must be true or false")),
    };
    let (role, enabled) = match (role, enabled) {
        (Ok(role), Ok(enabled)) => (role, enabled),
        (role, enabled) => {
            return Err(ApiError::Invalid(
                [role.err(), enabled.err()].into_iter().flatten().collect(),
            )
            .into_response())
        }
    };
    let meta = command_meta(&me, &headers).map_err(IntoResponse::into_response)?;
    let changed = async {
        let member = load_member(&state, &me, user_id).await?;
        let mut changes = Vec::new();
        if let Some(role) = role {
            changes.push(Change::Role(role));
        }
        match enabled {
            Some(false) if member.enabled => changes.push(Change::Disable),
            Some(true) if !member.enabled => changes.push(Change::Enable),
            _ => {}
        }
        // Every change is authorized before any is made.
        for change in &changes {
            authorize(&me, user_id, &member, *change)?;
        }
        for change in changes {
            // Distinct command ids per change, so an Idempotency-Key replays each one.
            let part: &[u8] = match change {
                Change::Role(_) => b"role",
                _ => b"enabled",
            };
            run_change(&state, &me, user_id, change, &meta.derived(part)).await?;
        }
        Ok::<_, Refused>(())
    }
    .await;
    if let Err(refused) = changed {
        return Err(refused.api(&me, user_id));
    }
    user_json(&state, &me, user_id)
        .await
        .map(Json)
        .map_err(IntoResponse::into_response)
}

/// Remove a person from the team.
///
/// Their sessions end and their API tokens stop working; their past work stays in the audit
/// trail. Only an owner removes an owner (403); the last enabled owner cannot be removed and
/// nobody removes themselves (409).
#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}",
    tag = "team",
    operation_id = "removeUser",
    params(("id" = Uuid, Path, description = "The person's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn remove_user(
    State(state): State<AppState>,
    me: Principal,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, Response> {
    me.require(Action::ManageUsers)
        .map_err(IntoResponse::into_response)?;
    let user_id = crate::api::path_id(id, "person").map_err(IntoResponse::into_response)?;
    let removed = async {
        let member = load_member(&state, &me, user_id).await?;
        authorize(&me, user_id, &member, Change::Remove)?;
        run_change(&state, &me, user_id, Change::Remove, &me.meta()).await
    }
    .await;
    match removed {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(refused) => Err(refused.api(&me, user_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_like_the_user_aggregate_does() {
        assert_eq!(check_name(Some("  Ann ")).unwrap(), "Ann");
        assert!(check_name(None).is_err());
        assert!(check_name(Some("   ")).is_err());
        assert!(check_name(Some(&"x".repeat(201))).is_err());
        assert!(check_name(Some("a\u{7}b")).is_err());
    }

    #[test]
    fn errors_land_next_to_their_fields() {
        let view = InviteFormView::default().with_errors(&[
            ValidationError::new("email", "must not be empty"),
            ValidationError::new("company_id", "is required for a client"),
        ]);
        assert_eq!(
            view.email_error.as_deref(),
            Some("Email must not be empty.")
        );
        assert!(view
            .company_error
            .unwrap()
            .starts_with("Customer company is required"));
        assert!(view.name_error.is_none());
    }
}
