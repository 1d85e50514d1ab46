//! The global search: the header's box (suggestions as you type, arrow keys to move, Enter
//! for the full page), the `/search` page grouped by kind, and `GET /api/v1/search`. Records
//! come from the `search` read model (companies, contacts, assets, credential labels), scoped
//! to the tenant and to what the person may see; the team's people come from `users` for
//! those who may see them.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use domain::authz::Action;
use projections::search::{self as index, KINDS};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Principal;
use crate::console::{internal_page, Cookies};
use crate::error::ApiError;
use crate::openapi::{BadRequest, Forbidden, InternalError, Unauthorized};
use crate::AppState;

/// Results shown per kind of record.
const PER_KIND: i64 = 20;
/// Suggestions under the header box, per kind.
const SUGGEST_PER_KIND: i64 = 5;
/// The longest query read.
const MAX_QUERY: usize = 200;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/search", get(search_page))
        .route("/search/suggest", get(suggest))
        .route("/api/v1/search", get(search_api))
}

/// The kinds `me` may find.
fn kinds_for(me: &Principal) -> Vec<&'static str> {
    KINDS
        .iter()
        .copied()
        .filter(|kind| *kind != "credential" || me.may(Action::UseVault))
        .filter(|kind| *kind != "work_order" || me.may(Action::ViewWorkOrders))
        .collect()
}

fn label(kind: &str) -> &'static str {
    match kind {
        "company" => "Companies",
        "contact" => "Contacts",
        "asset" => "Assets",
        "credential" => "Credentials",
        "work_order" => "Work orders",
        _ => "People",
    }
}

struct Hit {
    href: String,
    title: String,
    detail: String,
    inactive: bool,
}

struct Group {
    kind: &'static str,
    label: &'static str,
    hits: Vec<Hit>,
}

#[derive(Template, WebTemplate)]
#[template(path = "search.html")]
struct SearchPage {
    flash: Option<String>,
    q: String,
    groups: Vec<Group>,
}

#[derive(Template, WebTemplate)]
#[template(path = "search_suggest.html")]
struct Suggestions {
    q: String,
    groups: Vec<Group>,
}

#[derive(Debug, Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// What to look for: part of a name, a tag, a serial number, a MAC or IP address, an
    /// email; close misspellings match too.
    q: Option<String>,
}

fn query_of(params: Result<Query<Params>, axum::extract::rejection::QueryRejection>) -> String {
    params
        .map(|Query(p)| p.q.unwrap_or_default())
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_QUERY)
        .collect()
}

/// The grouped results for `q` (records, then the team's people when allowed).
async fn groups(
    state: &AppState,
    me: &Principal,
    q: &str,
    per_kind: i64,
) -> Result<Vec<Group>, sqlx::Error> {
    let kinds = kinds_for(me);
    let hits = index::search(&state.pool, me.tenant_id, q, &kinds, per_kind).await?;
    let mut groups: Vec<Group> = kinds
        .iter()
        .map(|kind| Group {
            kind,
            label: label(kind),
            hits: Vec::new(),
        })
        .collect();
    for hit in hits {
        if let Some(group) = groups.iter_mut().find(|g| g.kind == hit.kind) {
            group.hits.push(Hit {
                href: hit.href,
                title: hit.title,
                detail: hit.detail,
                inactive: hit.inactive,
            });
        }
    }
    if me.may(Action::ViewUsers) {
        let pattern = format!(
            "%{}%",
            q.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let rows: Vec<(Uuid, String, String, String)> = sqlx::query_as(
            "SELECT id, name, email, role FROM users
              WHERE tenant_id = $1 AND member AND (name ILIKE $2 OR email ILIKE $2)
              ORDER BY lower(name), id LIMIT $3",
        )
        .bind(me.tenant_id)
        .bind(&pattern)
        .bind(per_kind)
        .fetch_all(&state.pool)
        .await?;
        groups.push(Group {
            kind: "person",
            label: label("person"),
            hits: rows
                .into_iter()
                .map(|(id, name, email, role)| Hit {
                    href: format!("/team/{id}"),
                    title: if name.is_empty() { email.clone() } else { name },
                    detail: format!("Team · {role} · {email}"),
                    inactive: false,
                })
                .collect(),
        });
    }
    groups.retain(|g| !g.hits.is_empty());
    Ok(groups)
}

async fn search_page(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    let q = query_of(params);
    let groups = if q.is_empty() {
        Vec::new()
    } else {
        match groups(&state, &me, &q, PER_KIND).await {
            Ok(groups) => groups,
            Err(error) => return internal_page(error),
        }
    };
    SearchPage {
        flash: cookies.flash.clone(),
        q,
        groups,
    }
    .into_response()
}

/// The header box's suggestions (an htmx fragment).
async fn suggest(
    State(state): State<AppState>,
    me: Principal,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    let q = query_of(params);
    let groups = if q.is_empty() {
        Vec::new()
    } else {
        match groups(&state, &me, &q, SUGGEST_PER_KIND).await {
            Ok(groups) => groups,
            Err(error) => return internal_page(error),
        }
    };
    Suggestions { q, groups }.into_response()
}

/// One search result.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResult {
    /// `company`, `contact`, `asset`, `credential` or `person`.
    kind: String,
    id: Uuid,
    /// The record's name (an asset's tag and name).
    title: String,
    /// A line about it ("Asset · laptop · SN123").
    detail: String,
    /// The console page that shows it.
    url: String,
    /// Archived, former, retired or lost.
    inactive: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    /// Grouped by kind (companies, contacts, assets, credentials, people), best first.
    results: Vec<SearchResult>,
}

/// Search companies, contacts, assets (tag, serial, MAC, IP, name), credentials' labels and
/// (for owners and admins) the team. Never matches a secret.
#[utoipa::path(
    get,
    path = "/api/v1/search",
    tag = "search",
    operation_id = "search",
    params(Params),
    responses(
        (status = 200, description = "Results grouped by kind", body = SearchResults),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn search_api(
    State(state): State<AppState>,
    me: Principal,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    let outcome = async {
        let raw = params
            .map_err(|e| ApiError::BadRequest(e.body_text()))?
            .0
            .q
            .unwrap_or_default();
        if raw.trim().is_empty() {
            return Err(ApiError::BadRequest(
                "q is required: what to look for".into(),
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err(ApiError::BadRequest(
                "q must not contain control characters".into(),
            ));
        }
        if raw.chars().count() > MAX_QUERY {
            return Err(ApiError::BadRequest(format!(
                "q must be at most {MAX_QUERY} characters"
            )));
        }
        let groups = groups(&state, &me, raw.trim(), PER_KIND).await?;
        Ok(SearchResults {
            results: groups
                .into_iter()
                .flat_map(|g| {
                    let kind = g.kind;
                    g.hits.into_iter().map(move |h| SearchResult {
                        kind: kind.to_owned(),
                        id: h
                            .href
                            .rsplit('/')
                            .next()
                            .and_then(|id| Uuid::parse_str(id).ok())
                            .unwrap_or_default(),
                        title: h.title,
                        detail: h.detail,
                        url: h.href,
                        inactive: h.inactive,
                    })
                })
                .collect(),
        })
    };
    match outcome.await {
        Ok(json) => Json(json).into_response(),
        Err(error) => error.into_response(),
    }
}
