//! Who is asking, and whether they may: sign-in, sessions and bearer tokens; the `Principal`
//! extractor every protected handler takes; the role checks of `domain::authz`.
//!
//! - The console authenticates with the `st_session` cookie (HttpOnly, SameSite=Lax, Secure
//!   behind https), never with a bearer token; `/api/v1/*` authenticates with
//!   `Authorization: Bearer`, never with the cookie (so the API needs no CSRF defence).
//! - `authenticate` (a middleware on every route) resolves the caller once per request from
//!   the `sessions`/`api_tokens` tables joined to the `users` read model, so a role change, a
//!   disabled person or a revoked token counts from the next request on.
//! - A handler takes `Principal` (missing: the console redirects to the sign-in page, the API
//!   answers 401) and calls `require(action)` (refused: 403 page or problem).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, OptionalFromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use domain::authz::{self, Action};
use domain::identity::Role;
use uuid::Uuid;

use crate::error::{wants_problem, ApiError};
use crate::AppState;

pub const SESSION_COOKIE: &str = "st_session";

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A console session (its id).
    Session(Uuid),
    /// An API token (its id).
    Token(Uuid),
}

/// The signed-in person a request acts for.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub role: Role,
    pub name: String,
    pub email: String,
    /// The customer company of a `client`.
    pub company_id: Option<Uuid>,
    pub via: Via,
}

impl Principal {
    /// The actor recorded on the events this person's commands append.
    pub fn actor(&self) -> String {
        self.user_id.to_string()
    }

    /// Metadata for a command of this person.
    pub fn meta(&self) -> commands::EventMeta {
        commands::EventMeta::new(self.tenant_id, self.actor())
    }

    pub fn may(&self, action: Action) -> bool {
        authz::allows(self.role, action)
    }

    /// `Ok` when the person's role allows `action`; else the 403 answer for where they are.
    pub fn require(&self, action: Action) -> Result<(), Forbidden> {
        if self.may(action) {
            Ok(())
        } else {
            Err(self.forbidden())
        }
    }

    /// The 403 answer for this caller (problem on the API, page on the console).
    pub fn forbidden(&self) -> Forbidden {
        Forbidden {
            api: matches!(self.via, Via::Token(_)),
        }
    }

    pub fn session_id(&self) -> Option<Uuid> {
        match self.via {
            Via::Session(id) => Some(id),
            Via::Token(_) => None,
        }
    }
}

/// A refusal for lack of permission.
#[derive(Debug)]
pub struct Forbidden {
    api: bool,
}

impl IntoResponse for Forbidden {
    fn into_response(self) -> Response {
        if self.api {
            ApiError::Rejected {
                status: StatusCode::FORBIDDEN,
                detail: "your role does not allow this; see docs/roles.md".into(),
            }
            .into_response()
        } else {
            crate::console::forbidden_page()
        }
    }
}

/// No (valid) credentials: the console sends the browser to sign in, the API answers 401.
#[derive(Debug)]
pub struct Unauthenticated {
    api: bool,
    next: String,
}

impl IntoResponse for Unauthenticated {
    fn into_response(self) -> Response {
        if self.api {
            let mut response = ApiError::Rejected {
                status: StatusCode::UNAUTHORIZED,
                detail: "a valid API token is required: send `Authorization: Bearer <token>`"
                    .into(),
            }
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"SupportTracker\""),
            );
            response
        } else {
            Redirect::to(&format!(
                "/sign-in?next={}",
                crate::console::percent_encode(&self.next)
            ))
            .into_response()
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Unauthenticated;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| Unauthenticated {
                api: wants_problem(parts.uri.path()),
                next: parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned(),
            })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}

tokio::task_local! {
    static CURRENT: Option<Principal>;
}

/// The person the request being handled acts for (templates use it for the navigation).
pub fn current() -> Option<Principal> {
    CURRENT.try_with(Clone::clone).ok().flatten()
}

/// True when the current person may do `action` (templates hide what they may not do).
pub fn may(action: Action) -> bool {
    current().is_some_and(|p| p.may(action))
}

/// What the navigation shows to the current person.
pub struct Nav {
    pub name: String,
    pub role: &'static str,
    pub staff: bool,
    pub companies: bool,
    pub activity: bool,
    pub team: bool,
    pub tokens: bool,
    pub settings: bool,
}

/// The navigation of the person the request acts for (`None`: not signed in).
pub fn nav() -> Option<Nav> {
    current().map(|p| Nav {
        staff: p.role.is_staff(),
        companies: p.may(Action::ViewCompanies),
        activity: p.may(Action::ViewActivity),
        team: p.may(Action::ViewUsers),
        tokens: p.may(Action::OwnTokens),
        settings: p.may(Action::TenantSettings),
        role: p.role.as_str(),
        name: if p.name.is_empty() { p.email } else { p.name },
    })
}

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty() && t.len() <= 200)
}

#[derive(sqlx::FromRow)]
struct Found {
    via_id: Uuid,
    last_seen_at: Option<chrono::DateTime<chrono::Utc>>,
    tenant_id: Uuid,
    id: Uuid,
    email: String,
    name: String,
    role: String,
    company_id: Option<Uuid>,
}

/// The person behind a session cookie secret (live session, enabled member).
async fn by_session(state: &AppState, secret: &str) -> Result<Option<Principal>, sqlx::Error> {
    let found: Option<Found> = sqlx::query_as(
        "SELECT s.id AS via_id, s.last_seen_at, u.tenant_id, u.id, u.email, u.name, u.role,
                u.company_id
           FROM sessions s JOIN users u ON u.id = s.user_id AND u.tenant_id = s.tenant_id
          WHERE s.secret_digest = $1 AND s.expires_at > now() AND s.last_seen_at > now() - $2
            AND u.member AND u.enabled",
    )
    .bind(commands::identity::token_digest(secret))
    .bind(commands::sessions::IDLE)
    .fetch_optional(&state.pool)
    .await?;
    let Some(found) = found else { return Ok(None) };
    if let Some(seen) = found.last_seen_at {
        if chrono::Utc::now() - seen >= commands::sessions::TOUCH_EVERY {
            sqlx::query("UPDATE sessions SET last_seen_at = now() WHERE id = $1")
                .bind(found.via_id)
                .execute(&state.pool)
                .await?;
        }
    }
    Ok(principal(found, Via::Session))
}

/// The person behind an API token (not revoked, enabled member, staff).
async fn by_token(state: &AppState, token: &str) -> Result<Option<Principal>, sqlx::Error> {
    let found: Option<Found> = sqlx::query_as(
        "SELECT t.id AS via_id, NULL::timestamptz AS last_seen_at, u.tenant_id, u.id, u.email,
                u.name, u.role, u.company_id
           FROM api_tokens t JOIN users u ON u.id = t.user_id AND u.tenant_id = t.tenant_id
          WHERE t.token_digest = $1 AND t.revoked_at IS NULL AND u.member AND u.enabled",
    )
    .bind(commands::identity::token_digest(token))
    .fetch_optional(&state.pool)
    .await?;
    Ok(found.and_then(|f| principal(f, Via::Token)))
}

fn principal(found: Found, via: fn(Uuid) -> Via) -> Option<Principal> {
    Some(Principal {
        tenant_id: found.tenant_id,
        user_id: found.id,
        role: found.role.parse().ok()?,
        name: found.name,
        email: found.email,
        company_id: found.company_id,
        via: via(found.via_id),
    })
}

/// Resolves the caller of every request (see the module comment) and keeps signed-in console
/// pages out of caches, so the back button after sign-out shows nothing private.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let api = wants_problem(path);
    let resolved = if api {
        match bearer(request.headers()) {
            Some(token) => by_token(&state, token).await,
            None => Ok(None),
        }
    } else if path.starts_with("/static/") || path == "/healthz" {
        Ok(None)
    } else {
        match cookie(request.headers(), SESSION_COOKIE) {
            Some(secret) if secret.len() <= 100 => by_session(&state, secret).await,
            _ => Ok(None),
        }
    };
    let principal = match resolved {
        Ok(principal) => principal,
        Err(error) => {
            tracing::error!(%error, "resolving the caller failed");
            return if api {
                ApiError::internal("the database is unavailable").into_response()
            } else {
                crate::console::server_error_page()
            };
        }
    };
    if let Some(principal) = &principal {
        request.extensions_mut().insert(principal.clone());
    }
    let signed_in = principal.is_some();
    let mut response = CURRENT.scope(principal, next.run(request)).await;
    if signed_in && !api {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The client's address for the sign-in throttle: the peer, or (behind a trusted proxy) the
/// last address the proxy appended to `X-Forwarded-For`.
pub fn client_address(state: &AppState, headers: &HeaderMap, peer: Option<SocketAddr>) -> String {
    if state.settings().trust_proxy {
        if let Some(forwarded) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            return forwarded.chars().take(64).collect();
        }
    }
    peer.map(|p| p.ip().to_string()).unwrap_or_default()
}

/// The peer address when the server was started with connect info (not in router tests).
pub fn peer(request_extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    request_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

/// True when cookies must be `Secure`: the public URL is https, or a trusted proxy says the
/// request came over https.
pub fn secure_cookies(state: &AppState, headers: &HeaderMap) -> bool {
    state.settings().public_url.starts_with("https://")
        || (state.settings().trust_proxy
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("https")))
}

/// The `Set-Cookie` value of a session cookie (`None`: clear it).
pub fn session_cookie(secret: Option<&str>, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = match secret {
        Some(secret) => format!(
            "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            commands::sessions::LIFETIME.num_seconds()
        ),
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A `next` target that stays on this site (no open redirects): a path, not `//host`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.contains(['\r', '\n'])
                && n.len() <= 2000
                && !n.starts_with("/sign-in")
                && !n.starts_with("/sign-out") =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_never_leaves_the_site() {
        assert_eq!(safe_next(Some("/companies?q=a")), "/companies?q=a");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "evil",
            "/sign-out",
            "/x\r\nSet-Cookie: a=b",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer st_abc"),
        );
        assert_eq!(bearer(&headers), Some("st_abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn session_cookies_are_http_only_lax_and_secure_when_asked() {
        let set = session_cookie(Some("ss_x"), true);
        let set = set.to_str().unwrap();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Secure"));
        let clear = session_cookie(None, false);
        assert!(clear.to_str().unwrap().contains("Max-Age=0"));
        assert!(!clear.to_str().unwrap().contains("Secure"));
    }
}
