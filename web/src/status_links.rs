//! The pages a work order's status link opens (issue 5), without signing in: the token in the
//! address is the only key, so it is checked before anything of the order is shown.
//!
//! - `GET /l/{work_order_id}/{token}`: the link must exist, belong to that order, and the
//!   order to the link's tenant; anything else is the same 404 page, so nobody learns which
//!   part was wrong. Opening the page runs `ViewByLink` (a customer link counts a use; a
//!   technician link only checks it is still valid). A technician sees the order and the
//!   status moves the link may make; a customer sees the progress, public comments only, and
//!   once the work is resolved the satisfaction form.
//! - `POST /l/{id}/{token}` (technician links): `SetStatusByLink`, then 303 back.
//! - `POST /l/{id}/{token}/rate` (customer links): `Rate`, then 303 back.
//!
//! Like the credential share page (`/s/{token}`): no session needed, `Cache-Control:
//! no-store`, `Referrer-Policy: no-referrer`, not indexed, expired / used up / revoked links
//! shown as a friendly page that says which (410 / 410 / 404). The forms carry the console's
//! CSRF token (double submit with the `st_csrf` cookie, `SameSite=Lax`), so another site
//! cannot post them. Every command's actor is `link:<link id>`; the token is never logged and
//! never put in an event (only its digest was, when the link was issued).

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use commands::{CommandError, ConflictPolicy, EventMeta, Executed};
use domain::tenant::Tenant;
use domain::workorder::{
    parse_note, LinkKind, Origin, Status, WorkOrder, WorkOrderCommand, WorkOrderError,
    WorkOrderEvent,
};
use domain::{ErrorKind, HasErrorKind};
use projections::work_orders::LinkRow;
use projections::{assets, companies, history, users};
use serde::Deserialize;
use uuid::Uuid;

use crate::console::{capitalise, csrf_refusal, internal_page, Cookies};
use crate::work_orders;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/l/{id}/{token}", get(link_page).post(set_status))
        .route("/l/{id}/{token}/rate", post(rate))
}

/// The longest token accepted (issued ones are 43 characters of URL-safe base64).
const MAX_TOKEN_CHARS: usize = 128;

/// The most events of an order read for its public comments.
const HISTORY_LIMIT: i64 = 10_000;

/// The statuses a technician link may set.
const LINK_STATUSES: [Status; 3] = [Status::InProgress, Status::Resolved, Status::Closed];

/// The steps of the customer's progress bar.
const STEPS: [Status; 5] = [
    Status::New,
    Status::Assigned,
    Status::InProgress,
    Status::Resolved,
    Status::Closed,
];

// ---- Pages

/// A status move the technician may make.
struct Move {
    value: &'static str,
    label: String,
}

/// One step of the progress bar: `done`, `current` or `todo`.
struct Step {
    label: String,
    state: &'static str,
}

/// A public comment as the customer sees it.
struct PublicComment {
    when: String,
    who: String,
    body: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "status_link.html")]
struct LinkPage {
    msp_name: String,
    technician: bool,
    /// `/l/{id}/{token}`: where the forms post.
    path: String,
    csrf: String,
    notice: Option<String>,
    error: Option<String>,
    number: u64,
    title: String,
    status_label: String,
    // The technician's page.
    company: String,
    assets: Vec<String>,
    priority: String,
    description: String,
    moves: Vec<Move>,
    uses_left: u32,
    expires: String,
    // The customer's page.
    steps: Vec<Step>,
    opened: String,
    assignee: Option<String>,
    comments: Vec<PublicComment>,
    rating: Option<u8>,
    rating_comment: String,
    can_rate: bool,
    form_rating: String,
    form_comment: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "status_link_gone.html")]
struct GonePage {
    title: String,
    message: String,
}

/// Every answer of these pages: never cached, never sent as a referrer, never indexed, never
/// framed (so nobody can trick a click on a status button).
fn respond(status: StatusCode, body: impl IntoResponse) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "x-robots-tag",
        HeaderValue::from_static("noindex, nofollow"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    response
}

fn gone_page(status: StatusCode, title: &str, message: &str) -> Response {
    respond(
        status,
        GonePage {
            title: title.to_owned(),
            message: message.to_owned(),
        },
    )
}

/// Unknown, revoked, malformed, or not this order's: one answer for all.
fn not_found() -> Response {
    gone_page(
        StatusCode::NOT_FOUND,
        "Link not available",
        "This link does not exist or was revoked. Ask for a new one.",
    )
}

/// The page of a refusal that concerns the link itself (`None`: another refusal).
fn link_refusal(error: &WorkOrderError) -> Option<Response> {
    match error {
        WorkOrderError::LinkNotFound => Some(not_found()),
        WorkOrderError::LinkExpired => Some(gone_page(
            StatusCode::GONE,
            "Link expired",
            "This link has expired. Ask for a new one.",
        )),
        WorkOrderError::LinkUsedUp => Some(gone_page(
            StatusCode::GONE,
            "Link used up",
            "This link has been used as many times as it allows. Ask for a new one.",
        )),
        WorkOrderError::LinkNotAllowed => Some(not_allowed()),
        _ => None,
    }
}

fn not_allowed() -> Response {
    gone_page(
        StatusCode::CONFLICT,
        "Not possible with this link",
        "This link does not allow that.",
    )
}

fn form_expired() -> Response {
    gone_page(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "The form was not sent from this page or has expired. Open the link again and retry.",
    )
}

fn sentence(text: &str) -> String {
    let text = capitalise(text);
    if text.ends_with('.') {
        text
    } else {
        format!("{text}.")
    }
}

// ---- Finding the link

/// A link found by its token, for the order named in the path.
struct Found {
    link: LinkRow,
    digest: String,
    /// `/l/{id}/{token}`.
    path: String,
}

impl Found {
    fn order_id(&self) -> Uuid {
        self.link.work_order_id
    }

    fn kind(&self) -> Option<LinkKind> {
        match self.link.kind.as_str() {
            "technician" => Some(LinkKind::Technician),
            "customer" => Some(LinkKind::Customer),
            _ => None,
        }
    }

    /// The metadata of a command made through this link.
    fn meta(&self) -> EventMeta {
        EventMeta::new(self.link.tenant_id, format!("link:{}", self.link.id))
    }
}

/// A token as issued: URL-safe base64, nothing else.
fn plausible_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_CHARS
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The link of the path's token, if it is a link of the path's order (else the 404 page).
async fn lookup(
    state: &AppState,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Found, Response> {
    let Ok(Path((id, token))) = path else {
        return Err(not_found());
    };
    let Ok(id) = Uuid::parse_str(&id) else {
        return Err(not_found());
    };
    if !plausible_token(&token) {
        return Err(not_found());
    }
    let digest = commands::identity::token_digest(&token);
    let link = projections::work_orders::link_by_digest(&state.pool, &digest)
        .await
        .map_err(internal_page)?;
    match link {
        Some(link) if link.work_order_id == id => Ok(Found {
            link,
            digest,
            path: format!("/l/{id}/{token}"),
        }),
        _ => Err(not_found()),
    }
}

/// Opens the link: `ViewByLink` in the link's tenant (counts a customer's view, checks a
/// technician's link), and the order as it now stands.
async fn view(state: &AppState, found: &Found) -> Result<Executed<WorkOrder>, Response> {
    let done = state
        .store
        .execute::<WorkOrder>(
            &found.order_id().to_string(),
            WorkOrderCommand::ViewByLink {
                link_id: found.link.id,
                now: Utc::now(),
            },
            &(),
            &found.meta(),
            ConflictPolicy::Busy,
        )
        .await;
    match done {
        Ok(done) => {
            let same = done.state.exists
                && done
                    .state
                    .links
                    .get(&found.link.id)
                    .is_some_and(|l| l.token_digest == found.digest);
            if same {
                Ok(done)
            } else {
                Err(not_found())
            }
        }
        Err(CommandError::Domain(error)) => Err(link_refusal(&error).unwrap_or_else(not_found)),
        Err(CommandError::NotFound) => Err(not_found()),
        Err(CommandError::Conflict) => Err(gone_page(
            StatusCode::CONFLICT,
            "Please try again",
            "The work order changed at the same moment. Reload the page.",
        )),
        Err(error) => Err(internal_page(error)),
    }
}

// ---- Rendering

/// What a page shows beside the order.
#[derive(Default)]
struct Extra {
    notice: Option<String>,
    error: Option<String>,
    form_rating: String,
    form_comment: String,
}

fn local_time(tenant: &Tenant, at: DateTime<Utc>) -> String {
    at.with_timezone(&tenant.business_hours().time_zone.tz())
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

/// A person's first name, never an address.
fn first_name(name: &str) -> Option<String> {
    name.split_whitespace()
        .next()
        .filter(|n| !n.contains('@'))
        .map(str::to_owned)
}

async fn first_name_of(
    state: &AppState,
    tenant_id: Uuid,
    user_id: Uuid,
    known: &mut HashMap<Uuid, Option<String>>,
) -> Result<Option<String>, sqlx::Error> {
    if let Some(name) = known.get(&user_id) {
        return Ok(name.clone());
    }
    let name = users::get(&state.pool, tenant_id, user_id)
        .await?
        .and_then(|u| first_name(&u.name));
    known.insert(user_id, name.clone());
    Ok(name)
}

async fn render(
    state: &AppState,
    found: &Found,
    cookies: &Cookies,
    order: &WorkOrder,
    extra: Extra,
    status: StatusCode,
) -> Response {
    match page(state, found, cookies, order, extra).await {
        Ok(page) => respond(status, page),
        Err(error) => internal_page(error),
    }
}

async fn page(
    state: &AppState,
    found: &Found,
    cookies: &Cookies,
    order: &WorkOrder,
    extra: Extra,
) -> Result<LinkPage, crate::error::ApiError> {
    let tenant_id = found.link.tenant_id;
    let tenant = work_orders::tenant(state, tenant_id).await?;
    let link = order
        .links
        .get(&found.link.id)
        .ok_or_else(|| crate::error::ApiError::internal("the link is missing from its order"))?;
    let technician = link.kind == LinkKind::Technician;
    let mut page = LinkPage {
        msp_name: tenant.name.clone(),
        technician,
        path: found.path.clone(),
        csrf: cookies.csrf.clone(),
        notice: extra.notice,
        error: extra.error,
        number: order.number,
        title: order.details.title.clone(),
        status_label: order.status.label().to_owned(),
        company: String::new(),
        assets: Vec::new(),
        priority: String::new(),
        description: String::new(),
        moves: Vec::new(),
        uses_left: link.max_uses.saturating_sub(link.uses),
        expires: local_time(&tenant, link.expires_at),
        steps: Vec::new(),
        opened: order
            .opened_at
            .map(|at| local_time(&tenant, at))
            .unwrap_or_default(),
        assignee: None,
        comments: Vec::new(),
        rating: order.rating,
        rating_comment: String::new(),
        can_rate: false,
        form_rating: extra.form_rating,
        form_comment: extra.form_comment,
    };
    if technician {
        page.company = companies::get(&state.pool, tenant_id, order.company_id)
            .await?
            .map(|c| c.name)
            .unwrap_or_default();
        for asset_id in &order.details.asset_ids {
            if let Some(a) = assets::get(&state.pool, tenant_id, *asset_id).await? {
                page.assets.push(format!("{} · {}", a.tag, a.name));
            }
        }
        page.priority = order.priority.as_str().to_owned();
        page.description = order.details.description.clone();
        page.moves = order
            .status
            .moves()
            .iter()
            .filter(|s| LINK_STATUSES.contains(s))
            .map(|s| Move {
                value: s.as_str(),
                label: format!("Set {}", s.label()),
            })
            .collect();
        return Ok(page);
    }
    if let Some(at) = STEPS.iter().position(|s| *s == order.status) {
        page.steps = STEPS
            .iter()
            .enumerate()
            .map(|(i, s)| Step {
                label: capitalise(s.label()),
                state: match i.cmp(&at) {
                    std::cmp::Ordering::Less => "done",
                    std::cmp::Ordering::Equal => "current",
                    std::cmp::Ordering::Greater => "todo",
                },
            })
            .collect();
    }
    let mut names = HashMap::new();
    if let Some(assignee) = order.assignee_id {
        page.assignee = first_name_of(state, tenant_id, assignee, &mut names).await?;
    }
    let events = history::for_aggregate(
        &state.pool,
        tenant_id,
        "work_order",
        &found.order_id().to_string(),
        HISTORY_LIMIT,
    )
    .await?;
    for item in events {
        match serde_json::from_value::<WorkOrderEvent>(item.payload) {
            Ok(WorkOrderEvent::WorkOrderCommented { comment }) if comment.public => {
                let author = match comment.author_id {
                    Some(id) => first_name_of(state, tenant_id, id, &mut names).await?,
                    None => None,
                };
                let who = author.unwrap_or_else(|| match comment.origin {
                    Origin::Staff => tenant.name.clone(),
                    Origin::Customer => "Customer".to_owned(),
                });
                page.comments.push(PublicComment {
                    when: local_time(&tenant, item.recorded_at),
                    who,
                    body: comment.body,
                });
            }
            Ok(WorkOrderEvent::WorkOrderRated { comment, .. }) => page.rating_comment = comment,
            _ => {}
        }
    }
    page.can_rate =
        matches!(order.status, Status::Resolved | Status::Closed) && order.rating.is_none();
    Ok(page)
}

// ---- Handlers

#[derive(Debug, Default, Deserialize)]
struct Done {
    #[serde(default)]
    done: Option<String>,
}

async fn link_page(
    State(state): State<AppState>,
    axum::Extension(cookies): axum::Extension<Cookies>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<Done>, QueryRejection>,
) -> Response {
    let found = match lookup(&state, path).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let done = match view(&state, &found).await {
        Ok(done) => done,
        Err(answer) => return answer,
    };
    let order = &done.state;
    let after_form = query.is_ok_and(|Query(q)| q.done.is_some());
    let notice = match found.kind() {
        _ if !after_form => None,
        Some(LinkKind::Technician) => Some(format!("Status set to {}.", order.status.label())),
        Some(LinkKind::Customer) if order.rating.is_some() => {
            Some("Thank you for your rating.".to_owned())
        }
        _ => None,
    };
    render(
        &state,
        &found,
        &cookies,
        order,
        Extra {
            notice,
            ..Extra::default()
        },
        StatusCode::OK,
    )
    .await
}

/// Shows the page again with a refusal's message (the link checked and, for a customer,
/// the view counted, as any showing of the page).
async fn refused(
    state: &AppState,
    found: &Found,
    cookies: &Cookies,
    message: String,
    status: StatusCode,
    form: (String, String),
) -> Response {
    let done = match view(state, found).await {
        Ok(done) => done,
        Err(answer) => return answer,
    };
    render(
        state,
        found,
        cookies,
        &done.state,
        Extra {
            notice: None,
            error: Some(message),
            form_rating: form.0,
            form_comment: form.1,
        },
        status,
    )
    .await
}

/// A refusal of the aggregate: about the link → its page; else the order's page with the
/// message (422 for bad input, 409 otherwise).
async fn domain_refusal(
    state: &AppState,
    found: &Found,
    cookies: &Cookies,
    error: WorkOrderError,
    form: (String, String),
) -> Response {
    if let Some(answer) = link_refusal(&error) {
        return answer;
    }
    let status = match error.kind() {
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::NotFound => return not_found(),
        ErrorKind::Conflict => StatusCode::CONFLICT,
    };
    refused(
        state,
        found,
        cookies,
        sentence(&error.to_string()),
        status,
        form,
    )
    .await
}

fn back(found: &Found) -> Response {
    respond(
        StatusCode::SEE_OTHER,
        Redirect::to(&format!("{}?done=1", found.path)),
    )
}

#[derive(Debug, Default, Deserialize)]
struct StatusForm {
    #[serde(default)]
    status: String,
    #[serde(default)]
    csrf: String,
}

async fn set_status(
    State(state): State<AppState>,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    form: Result<Form<StatusForm>, FormRejection>,
) -> Response {
    let found = match lookup(&state, path).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if csrf_refusal(&cookies, &headers, &form.csrf).is_some() {
        return form_expired();
    }
    if found.kind() != Some(LinkKind::Technician) {
        return not_allowed();
    }
    let status = match domain::workorder::Status::parse("status", &form.status) {
        Ok(status) => status,
        Err(e) => {
            return refused(
                &state,
                &found,
                &cookies,
                format!("The status {}.", e.message),
                StatusCode::UNPROCESSABLE_ENTITY,
                Default::default(),
            )
            .await
        }
    };
    let tenant = match work_orders::tenant(&state, found.link.tenant_id).await {
        Ok(tenant) => tenant,
        Err(error) => return internal_page(error),
    };
    let meta = found.meta();
    let done = state
        .store
        .execute::<WorkOrder>(
            &found.order_id().to_string(),
            WorkOrderCommand::SetStatusByLink {
                link_id: found.link.id,
                status,
                now: Utc::now(),
                hours: tenant.business_hours(),
            },
            &(),
            &meta,
            ConflictPolicy::Busy,
        )
        .await;
    match done {
        Ok(done) => {
            let moved = done
                .events
                .iter()
                .any(|e| matches!(e, WorkOrderEvent::WorkOrderStatusChanged { .. }));
            if moved {
                work_orders::sync_assets(&state, &meta, found.order_id(), &done.state).await;
            }
            back(&found)
        }
        Err(CommandError::Domain(error)) => {
            domain_refusal(&state, &found, &cookies, error, Default::default()).await
        }
        Err(CommandError::NotFound) => not_found(),
        Err(CommandError::Conflict) => {
            refused(
                &state,
                &found,
                &cookies,
                "The work order changed at the same moment; please try again.".into(),
                StatusCode::CONFLICT,
                Default::default(),
            )
            .await
        }
        Err(error) => internal_page(error),
    }
}

#[derive(Debug, Default, Deserialize)]
struct RateForm {
    #[serde(default)]
    rating: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    csrf: String,
}

async fn rate(
    State(state): State<AppState>,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    form: Result<Form<RateForm>, FormRejection>,
) -> Response {
    let found = match lookup(&state, path).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if csrf_refusal(&cookies, &headers, &form.csrf).is_some() {
        return form_expired();
    }
    if found.kind() != Some(LinkKind::Customer) {
        return not_allowed();
    }
    let kept = || (form.rating.clone(), form.comment.clone());
    let rating = match form.rating.trim().parse::<u8>() {
        Ok(r) if (1..=5).contains(&r) => r,
        _ => {
            return refused(
                &state,
                &found,
                &cookies,
                "Choose a rating from 1 to 5.".into(),
                StatusCode::UNPROCESSABLE_ENTITY,
                kept(),
            )
            .await
        }
    };
    let comment = match parse_note(&form.comment) {
        Ok(comment) => comment,
        Err(e) => {
            return refused(
                &state,
                &found,
                &cookies,
                format!("The comment {}.", e.message.replace("2000", "2,000")),
                StatusCode::UNPROCESSABLE_ENTITY,
                kept(),
            )
            .await
        }
    };
    let done = state
        .store
        .execute::<WorkOrder>(
            &found.order_id().to_string(),
            WorkOrderCommand::Rate {
                link_id: found.link.id,
                rating,
                comment,
                now: Utc::now(),
            },
            &(),
            &found.meta(),
            ConflictPolicy::Busy,
        )
        .await;
    match done {
        Ok(_) => back(&found),
        Err(CommandError::Domain(error)) => {
            domain_refusal(&state, &found, &cookies, error, kept()).await
        }
        Err(CommandError::NotFound) => not_found(),
        Err(CommandError::Conflict) => {
            refused(
                &state,
                &found,
                &cookies,
                "The work order changed at the same moment; please try again.".into(),
                StatusCode::CONFLICT,
                kept(),
            )
            .await
        }
        Err(error) => internal_page(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_issued_shapes_of_token_are_looked_up() {
        let (token, _) = commands::identity::new_token("");
        assert!(plausible_token(&token));
        for bad in ["", "a\0b", "a/b", "a b", "ä", "a.b", &"x".repeat(129)] {
            assert!(!plausible_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn first_names_never_show_an_address() {
        assert_eq!(first_name("Ann Example").as_deref(), Some("Ann"));
        assert_eq!(first_name("  Bob "), Some("Bob".to_owned()));
        assert_eq!(first_name("ann@example.test"), None);
        assert_eq!(first_name(""), None);
    }
}
