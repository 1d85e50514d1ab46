//! The web layer: the staff console (askama), the JSON API under `/api/v1`, `/healthz`, and
//! the wiring of the `supporttracker` binary. Each module owns its `router()`; `router` below
//! only merges them.

pub mod api;
pub mod config;
pub mod console;
pub mod error;
pub mod health;
pub mod serve;
pub mod state;

use axum::http::{HeaderName, Request};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use state::AppState;

/// The header carrying the request id, set when the client did not send one.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(api::router())
        .merge(console::router())
        .fallback(error::not_found_fallback)
        .with_state(state)
        .layer(axum::middleware::from_fn(error::render_problems))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let request_id = request
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), request_id)
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
}
