//! An aggregate's own events, straight from the log, for history tabs and audits.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HistoryItem {
    pub sequence: i64,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub actor: String,
    pub recorded_at: DateTime<Utc>,
}

/// The events of one aggregate of `tenant_id`, oldest first (at most `limit`, newest kept).
pub async fn for_aggregate(
    pool: &PgPool,
    tenant_id: Uuid,
    aggregate_type: &str,
    aggregate_id: &str,
    limit: i64,
) -> Result<Vec<HistoryItem>, sqlx::Error> {
    let mut items: Vec<HistoryItem> = sqlx::query_as(
        "SELECT sequence, event_type, payload, coalesce(metadata->>'actor', '?') AS actor, recorded_at
           FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND metadata->>'tenant_id' = $3
          ORDER BY sequence DESC
          LIMIT $4",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(tenant_id.to_string())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    items.reverse();
    Ok(items)
}
