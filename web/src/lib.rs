//! The web layer: the staff console (askama), the JSON API under `/api/v1`, `/healthz`, and
//! the wiring of the `supporttracker` binary. Each module owns its `router()`; `router` below
//! only merges them.

pub mod activity;
pub mod api;
pub mod asset_pages;
pub mod assets;
pub mod auth;
pub mod billing;
pub mod config;
pub mod console;
pub mod contacts;
pub mod credentials;
pub mod csv_io;
pub mod documents;
pub mod equipment;
pub mod error;
pub mod health;
pub mod notify;
pub mod openapi;
pub mod pdf;
pub mod scheduler;
pub mod search;
pub mod serve;
pub mod service_settings;
pub mod settings;
pub mod signin;
pub mod state;
pub mod status_links;
pub mod team;
pub mod tokens;
pub mod work_order_pages;
pub mod work_orders;

use axum::http::{HeaderName, Request};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use state::AppState;

/// The header carrying the request id, set when the client did not send one.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .merge(health::router())
        .merge(api::router())
        .merge(console::router())
        .merge(activity::router())
        .merge(signin::router())
        .merge(search::router())
        .merge(settings::router())
        .merge(service_settings::router())
        .merge(contacts::router())
        .merge(equipment::router())
        .merge(asset_pages::router())
        .merge(csv_io::router())
        .merge(credentials::router())
        .merge(team::router())
        .merge(tokens::router())
        .merge(work_orders::router())
        .merge(documents::router())
        .merge(work_order_pages::router())
        .merge(status_links::router())
        .merge(notify::webhook::router())
        .merge(billing::api::router())
        .merge(billing::reports::router())
        .merge(billing::catalogue::router())
        .merge(billing::pages::router())
        .merge(notify::api::router())
        .merge(notify::pages::router())
        .merge(openapi::router())
        .merge(assets::router())
        .fallback(error::not_found_fallback)
        .method_not_allowed_fallback(method_not_allowed)
        // Who is asking (session cookie on the console, bearer token on the API), then the
        // console's CSRF and flash cookies around it.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            console::session_cookies,
        ))
        .with_state(state);
    with_middleware(routes)
}

/// A known path with a method it does not serve: a problem on the API, a page elsewhere.
async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if error::wants_problem(uri.path()) {
        api::method_not_allowed(method, uri).await.into_response()
    } else {
        let mut page = console::not_found_page();
        *page.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
        page
    }
}

/// The middleware around every route, innermost first: a panic becomes a 500 (problem+json
/// or the console's page, never a dropped connection); the request id reaches handlers,
/// pages and problem documents; it is echoed in the response; requests are traced; a request
/// without an id gets one.
pub fn with_middleware(routes: Router) -> Router {
    routes
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(axum::middleware::from_fn(error::request_context))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let request_id = request
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                let path = loggable_path(request.uri().path());
                tracing::info_span!("http", method = %request.method(), path = %path, request_id)
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
}

/// The paths whose segment after these many parts is a secret token (share links, status
/// links, password resets, invitations): `(prefix, index of the token segment)`.
const TOKEN_PATHS: &[(&str, usize)] = &[
    ("/s/", 2),
    ("/l/", 3),
    ("/password-reset/", 3),
    ("/invitation/", 3),
];

/// The request path as the log shows it: a link's token is replaced by `…`, since whoever
/// reads the log must not be able to use the link.
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    let Some((_, index)) = TOKEN_PATHS
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
    else {
        return std::borrow::Cow::Borrowed(path);
    };
    let parts: Vec<&str> = path
        .split('/')
        .enumerate()
        .map(|(i, part)| {
            if i == *index && !part.is_empty() {
                "…"
            } else {
                part
            }
        })
        .collect();
    std::borrow::Cow::Owned(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[test]
    fn tokens_in_link_paths_stay_out_of_the_log() {
        assert_eq!(loggable_path("/s/abcDEF123"), "/s/…");
        assert_eq!(
            loggable_path("/l/0b5c3f8e-2d1a-4c7e-9f3b-6a1d2e4f5a6b/tok-en_1/rate"),
            "/l/0b5c3f8e-2d1a-4c7e-9f3b-6a1d2e4f5a6b/…/rate"
        );
        assert_eq!(loggable_path("/invitation/u1/secret"), "/invitation/u1/…");
        assert_eq!(
            loggable_path("/password-reset/u1/secret"),
            "/password-reset/u1/…"
        );
        assert_eq!(loggable_path("/password-reset"), "/password-reset");
        assert_eq!(loggable_path("/companies/42"), "/companies/42");
    }
    use axum::http::{header, StatusCode};
    use axum::response::Response;
    use axum::routing::get;
    use tower::ServiceExt;

    /// Routes that panic, behind the same middleware as the real ones.
    fn panicking() -> Router {
        async fn boom() -> &'static str {
            panic!("secret detail of the panic")
        }
        with_middleware(
            Router::new()
                .route("/api/v1/boom", get(boom))
                .route("/boom", get(boom))
                .fallback(error::not_found_fallback),
        )
    }

    async fn get_from(router: Router, path: &str, id: Option<&str>) -> (Response, String) {
        let mut request = Request::builder().uri(path);
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        let response = router
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (
            Response::from_parts(parts, Body::empty()),
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    #[tokio::test]
    async fn a_panic_in_the_api_is_a_problem_500_with_the_request_id() {
        let (response, body) = get_from(panicking(), "/api/v1/boom", Some("req-api-1")).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(response.headers()["x-request-id"], "req-api-1");
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["status"], 500);
        assert_eq!(problem["request_id"], "req-api-1");
        assert!(!body.contains("secret"), "{body}");
    }

    #[tokio::test]
    async fn a_panic_in_the_console_is_the_friendly_500_page_with_the_request_id() {
        let (response, body) = get_from(panicking(), "/boom", None).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert!(!id.is_empty());
        assert!(body.contains("Something went wrong"), "{body}");
        assert!(body.contains(&format!("<code>{id}</code>")), "{body}");
        assert!(!body.contains("secret"), "{body}");
    }

    #[tokio::test]
    async fn not_found_answers_carry_the_request_id() {
        let (page, body) = get_from(panicking(), "/nowhere", Some("req-page-404")).await;
        assert_eq!(page.status(), StatusCode::NOT_FOUND);
        assert!(body.contains("Page not found"));
        assert!(body.contains("<code>req-page-404</code>"), "{body}");
        let (problem, body) = get_from(panicking(), "/api/v1/nowhere", Some("req-api-404")).await;
        assert_eq!(problem.status(), StatusCode::NOT_FOUND);
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["request_id"], "req-api-404");
    }

    #[tokio::test]
    async fn the_request_id_extractor_reads_the_id() {
        let router = with_middleware(Router::new().route(
            "/id",
            get(|error::RequestId(id): error::RequestId| async move { id }),
        ));
        let (_, body) = get_from(router, "/id", Some("req-extract")).await;
        assert_eq!(body, "req-extract");
    }
}
