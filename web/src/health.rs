//! `GET /healthz`: is the database reachable, where is each projection, is any stuck.
//! 200 when healthy, 503 when the database is unreachable or a projection has failed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use projections::status::ProjectionStatus;
use serde::Serialize;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub database: Database,
    pub projections: Vec<ProjectionStatus>,
}

#[derive(Debug, Serialize)]
pub struct Database {
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let statuses = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        projections::status::all(&state.pool),
    )
    .await
    .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut));
    let health = match statuses {
        Ok(projections) => Health {
            status: if projections.iter().all(ProjectionStatus::healthy) {
                "ok"
            } else {
                "unhealthy"
            },
            database: Database {
                reachable: true,
                error: None,
            },
            projections,
        },
        Err(error) => {
            tracing::warn!(%error, "health check: database unreachable");
            Health {
                status: "unhealthy",
                database: Database {
                    reachable: false,
                    error: Some("database unreachable".into()),
                },
                projections: Vec::new(),
            }
        }
    };
    let code = if health.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(health))
}
