//! `GET /healthz`: is the database reachable, where is each projection, is any stuck.
//! 200 when healthy, 503 when the database is unreachable or a projection has failed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use projections::status::ProjectionStatus;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

/// The health of this instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unhealthy` when the database is unreachable or a projection has failed.
    pub status: HealthStatus,
    pub database: Database,
    /// Every projection this build knows (empty when the database is unreachable).
    #[schema(value_type = Vec<ProjectionStatusSchema>)]
    pub projections: Vec<ProjectionStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Unhealthy,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Database {
    pub reachable: bool,
    /// Why not, when it is not (never the driver's own message).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false, example = "database unreachable")]
    pub error: Option<String>,
}

// The schema of `projections::status::ProjectionStatus` (a test below keeps the two in step).
/// Where one projection (read model) is in the event log.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProjectionStatus)]
pub struct ProjectionStatusSchema {
    #[schema(example = "companies")]
    pub name: String,
    /// The version of the projection's code in this process.
    pub version: i32,
    /// The version the stored rows were built with (null: never started).
    pub stored_version: Option<i32>,
    /// The last event applied, in the log's order.
    pub checkpoint: PositionSchema,
    pub events_applied: i64,
    /// Events in the log after the checkpoint (counted up to 1,000,000).
    pub lag: i64,
    /// `running`, `failed` or `not started`.
    #[schema(example = "running")]
    pub status: String,
    /// The global position of the event the projection stopped at, when it failed.
    pub failed_position: Option<i64>,
    pub last_error: Option<String>,
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A position in the event log: the writing transaction's id and the event's global position.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Position)]
pub struct PositionSchema {
    pub tx_id: i64,
    pub global_position: i64,
}

/// Health of this instance: is the database reachable, where is each projection, is any stuck.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    operation_id = "health",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "The database is unreachable or a projection has failed",
            body = Health),
        (status = 500, response = crate::openapi::InternalError),
    )
)]
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let statuses = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        projections::status::all(&state.pool),
    )
    .await
    .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut));
    let health = match statuses {
        Ok(projections) => Health {
            status: if projections.iter().all(ProjectionStatus::healthy) {
                HealthStatus::Ok
            } else {
                HealthStatus::Unhealthy
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
                status: HealthStatus::Unhealthy,
                database: Database {
                    reachable: false,
                    error: Some("database unreachable".into()),
                },
                projections: Vec::new(),
            }
        }
    };
    let code = if health.status == HealthStatus::Ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(health))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented schema names exactly the fields `ProjectionStatus` serializes.
    #[test]
    fn the_projection_status_schema_matches_the_type() {
        let status = ProjectionStatus {
            name: "companies".into(),
            version: 1,
            stored_version: Some(1),
            checkpoint: projections::Position::START,
            events_applied: 0,
            lag: 0,
            status: "running".into(),
            failed_position: None,
            last_error: None,
            updated_at: None,
        };
        let value = serde_json::to_value(&status).unwrap();
        let keys = |v: &serde_json::Value| {
            let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        let schema =
            serde_json::to_value(<ProjectionStatusSchema as utoipa::PartialSchema>::schema())
                .unwrap();
        assert_eq!(keys(&value), keys(&schema["properties"]));
        let position =
            serde_json::to_value(<PositionSchema as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(keys(&value["checkpoint"]), keys(&position["properties"]));
    }

    #[test]
    fn the_health_status_reads_as_before() {
        assert_eq!(serde_json::to_value(HealthStatus::Ok).unwrap(), "ok");
        assert_eq!(
            serde_json::to_value(HealthStatus::Unhealthy).unwrap(),
            "unhealthy"
        );
    }
}
