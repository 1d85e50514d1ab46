//! Where each projection is, for `/healthz` and `replay-tools status`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Row};

use crate::event::position_from;
use crate::Position;

/// Lag is counted up to this many events; past it the count says "at least".
pub const LAG_COUNT_CAP: i64 = 1_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    /// The version of the code in this process.
    pub version: i32,
    /// The version the stored rows were built with (`None`: never started).
    pub stored_version: Option<i32>,
    pub checkpoint: Position,
    pub events_applied: i64,
    /// Events in the log after the checkpoint (capped at `LAG_COUNT_CAP`).
    pub lag: i64,
    /// `running`, `failed` or `not started`.
    pub status: String,
    pub failed_position: Option<i64>,
    pub last_error: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl ProjectionStatus {
    pub fn healthy(&self) -> bool {
        self.status != "failed"
    }
}

/// Consumers of the log that are not read models (never rebuilt) but keep a checkpoint in
/// `projection_checkpoints` like projections: name and version.
pub const CONSUMERS: &[(&str, i32)] = &[("notifier", 1)];

/// The status of every projection and consumer this build knows.
pub async fn all(pool: &PgPool) -> Result<Vec<ProjectionStatus>, sqlx::Error> {
    let mut out = Vec::new();
    let names = crate::all()
        .iter()
        .map(|p| (p.name(), p.version()))
        .chain(CONSUMERS.iter().copied())
        .collect::<Vec<_>>();
    for (name, version) in names {
        let row = sqlx::query(
            "SELECT c.version, c.tx_id::text, c.position, c.events_applied, c.status,
                    c.failed_position, c.last_error, c.updated_at,
                    (SELECT count(*) FROM (SELECT 1 FROM events e
                        WHERE (e.tx_id, e.global_position) > (c.tx_id, c.position)
                        LIMIT $2) lagging) AS lag
               FROM projection_checkpoints c WHERE c.name = $1",
        )
        .bind(name)
        .bind(LAG_COUNT_CAP)
        .fetch_optional(pool)
        .await?;
        out.push(match row {
            Some(r) => ProjectionStatus {
                name: name.to_string(),
                version,
                stored_version: Some(r.try_get(0)?),
                checkpoint: position_from(r.try_get(1)?, r.try_get(2)?),
                events_applied: r.try_get(3)?,
                status: r.try_get(4)?,
                failed_position: r.try_get(5)?,
                last_error: r.try_get(6)?,
                updated_at: r.try_get(7)?,
                lag: r.try_get(8)?,
            },
            None => ProjectionStatus {
                name: name.to_string(),
                version,
                stored_version: None,
                checkpoint: Position::START,
                events_applied: 0,
                lag: sqlx::query_scalar("SELECT count(*) FROM (SELECT 1 FROM events LIMIT $1) e")
                    .bind(LAG_COUNT_CAP)
                    .fetch_one(pool)
                    .await?,
                status: "not started".to_string(),
                failed_position: None,
                last_error: None,
                updated_at: None,
            },
        });
    }
    Ok(out)
}
