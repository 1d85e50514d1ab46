//! The `activity` read model: the audit trail of every event of a tenant (who, when, which
//! entity, what kind of event), and the queries of the console's Activity page.
//!
//! The table is thin on purpose (see `migrations/0005_activity.sql`): a rebuild of 1,000,000
//! events must stay within its time budget, so each batch is one narrow insert and the
//! one-line summaries are rendered when a page is read, from the page's own events
//! (`history::summary`, payloads upcast first). The page is newest first,
//! `(recorded_at, global_position)` descending, paged by keyset: each filter reads an index
//! that yields its rows in that order, so a page deep in a long history reads only its rows.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::persist::SerializedEvent;
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::{history, ApplyError, Projection, StoredEvent, Tables};

pub struct ActivityProjection;

/// The most rows one page may hold.
pub const MAX_PAGE: i64 = 500;

/// One event of the trail, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivityRow {
    pub global_position: i64,
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    /// What the event did, in a sentence (`history::summary`).
    pub summary: String,
}

impl ActivityRow {
    /// The keyset cursor of the page that starts just after (older than) this row.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            recorded_at: self.recorded_at,
            global_position: self.global_position,
        }
    }
}

/// A place in the trail: `(recorded_at, global_position)` of a row. A page `before` it starts
/// with the next older row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub recorded_at: DateTime<Utc>,
    pub global_position: i64,
}

impl Cursor {
    /// `<microseconds since the epoch>.<global position>`: exact (timestamptz keeps
    /// microseconds) and safe in a URL.
    pub fn encode(&self) -> String {
        format!(
            "{}.{}",
            self.recorded_at.timestamp_micros(),
            self.global_position
        )
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let (micros, position) = text.split_once('.')?;
        Some(Cursor {
            recorded_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            global_position: position.parse().ok()?,
        })
    }
}

#[async_trait]
impl Projection for ActivityProjection {
    fn name(&self) -> &'static str {
        "activity"
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["activity"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        tables: &Tables,
        events: &[StoredEvent],
    ) -> Result<(), ApplyError> {
        if events.is_empty() {
            return Ok(());
        }
        let n = events.len();
        let mut tenant_ids = Vec::with_capacity(n);
        let mut recorded = Vec::with_capacity(n);
        let mut positions = Vec::with_capacity(n);
        let mut actors = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        let mut event_types = Vec::with_capacity(n);
        for (index, event) in events.iter().enumerate() {
            let meta = event
                .meta
                .as_ref()
                .map_err(|e| ApplyError::at(index, e.clone()))?;
            tenant_ids.push(meta.tenant_id);
            recorded.push(event.recorded_at);
            positions.push(event.position.global_position);
            actors.push(meta.actor.as_str());
            types.push(event.aggregate_type.as_str());
            ids.push(event.aggregate_id.as_str());
            event_types.push(event.event_type.as_str());
        }
        sqlx::query(&format!(
            "INSERT INTO {} (tenant_id, recorded_at, global_position, actor, aggregate_type,
                             aggregate_id, event_type)
             SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::int8[], $4::text[],
                                  $5::text[], $6::text[], $7::text[])",
            tables.get(0)
        ))
        .bind(tenant_ids)
        .bind(recorded)
        .bind(positions)
        .bind(actors)
        .bind(types)
        .bind(ids)
        .bind(event_types)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// What the Activity page shows: every filter is optional; rows come newest first.
#[derive(Debug, Clone, Default)]
pub struct ActivityFilter<'a> {
    /// Who did it (`EventMeta::actor`).
    pub actor: Option<&'a str>,
    /// The kind of entity (`company`, ...).
    pub aggregate_type: Option<&'a str>,
    /// One entity; only together with `aggregate_type` (ignored without it).
    pub aggregate_id: Option<&'a str>,
    /// Recorded at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Recorded before this instant (exclusive).
    pub until: Option<DateTime<Utc>>,
    /// Rows per page (1 to `MAX_PAGE`).
    pub limit: i64,
    /// Keyset cursor: this page starts just after (older than) it.
    pub before: Option<Cursor>,
}

/// The page's statement, preceded by `prefix` (empty, or an EXPLAIN). Only the filters that are
/// set appear in it, so each combination is its own prepared statement with its own plan (an
/// `($n IS NULL OR col = $n)` statement would get one generic plan for all of them).
///
/// One entity is read from the log itself through its primary key (an entity has few events;
/// they are sorted); everything else from `activity`.
fn page_query<'a>(
    prefix: &str,
    tenant_id: Uuid,
    filter: &ActivityFilter<'a>,
) -> QueryBuilder<'a, Postgres> {
    let mut query = QueryBuilder::new(prefix);
    let entity = filter.aggregate_type.zip(filter.aggregate_id);
    let actor_column = if let Some((aggregate_type, aggregate_id)) = entity {
        query.push(
            "SELECT global_position, recorded_at, coalesce(metadata->>'actor', '') AS actor,
                    aggregate_type, aggregate_id, event_type
               FROM events
              WHERE aggregate_type = ",
        );
        query.push_bind(aggregate_type);
        query.push(" AND aggregate_id = ").push_bind(aggregate_id);
        query
            .push(" AND metadata->>'tenant_id' = ")
            .push_bind(tenant_id.to_string());
        "metadata->>'actor'"
    } else {
        query.push(
            "SELECT global_position, recorded_at, actor, aggregate_type, aggregate_id, event_type
               FROM activity
              WHERE tenant_id = ",
        );
        query.push_bind(tenant_id);
        if let Some(aggregate_type) = filter.aggregate_type {
            query
                .push(" AND aggregate_type = ")
                .push_bind(aggregate_type);
        }
        "actor"
    };
    if let Some(actor) = filter.actor {
        query
            .push(format_args!(" AND {actor_column} = "))
            .push_bind(actor);
    }
    if let Some(from) = filter.from {
        query.push(" AND recorded_at >= ").push_bind(from);
    }
    if let Some(until) = filter.until {
        query.push(" AND recorded_at < ").push_bind(until);
    }
    if let Some(before) = filter.before {
        query
            .push(" AND (recorded_at, global_position) < (")
            .push_bind(before.recorded_at)
            .push(", ")
            .push_bind(before.global_position)
            .push(")");
    }
    // The limit is part of the text, not a parameter: a generic plan with `LIMIT $n` is costed
    // as if a tenth of the rows were wanted, which favours a sort over the index.
    query.push(format_args!(
        " ORDER BY recorded_at DESC, global_position DESC LIMIT {}",
        filter.limit.clamp(1, MAX_PAGE)
    ));
    query
}

/// The text of `page`'s statement for this filter, for checking plans.
pub fn page_sql(filter: &ActivityFilter<'_>) -> String {
    page_query("", Uuid::nil(), filter).sql().to_owned()
}

#[derive(sqlx::FromRow)]
struct ThinRow {
    global_position: i64,
    recorded_at: DateTime<Utc>,
    actor: String,
    aggregate_type: String,
    aggregate_id: String,
    event_type: String,
}

/// A page of `tenant_id`'s activity, newest first, with each row's summary.
pub async fn page(
    db: &mut PgConnection,
    tenant_id: Uuid,
    filter: &ActivityFilter<'_>,
) -> Result<Vec<ActivityRow>, sqlx::Error> {
    let rows: Vec<ThinRow> = page_query("", tenant_id, filter)
        .build_query_as()
        .fetch_all(&mut *db)
        .await?;
    let positions: Vec<i64> = rows.iter().map(|r| r.global_position).collect();
    let mut summaries = summaries(&mut *db, tenant_id, &positions).await?;
    Ok(rows
        .into_iter()
        .map(|r| ActivityRow {
            summary: summaries
                .remove(&r.global_position)
                .unwrap_or_else(|| history::humanize(&r.event_type)),
            global_position: r.global_position,
            recorded_at: r.recorded_at,
            actor: r.actor,
            aggregate_type: r.aggregate_type,
            aggregate_id: r.aggregate_id,
            event_type: r.event_type,
        })
        .collect())
}

/// The statement that reads a page's events for their summaries: one probe per row of the
/// `events_tenant` index (tenant, global_position).
const SUMMARIES_SQL: &str =
    "SELECT global_position, aggregate_type, aggregate_id, sequence, event_type,
        event_version, payload
   FROM events
  WHERE metadata->>'tenant_id' = $1 AND global_position = ANY($2)";

/// What a summary is rendered from.
#[derive(sqlx::FromRow)]
struct SummarySource {
    global_position: i64,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Value,
}

/// The summaries of `tenant_id`'s events at `positions`, their payloads upcast first.
async fn summaries(
    db: &mut PgConnection,
    tenant_id: Uuid,
    positions: &[i64],
) -> Result<HashMap<i64, String>, sqlx::Error> {
    if positions.is_empty() {
        return Ok(HashMap::new());
    }
    let events: Vec<SummarySource> = sqlx::query_as(SUMMARIES_SQL)
        .bind(tenant_id.to_string())
        .bind(positions)
        .fetch_all(&mut *db)
        .await?;
    Ok(events
        .into_iter()
        .map(|e| {
            let event = SerializedEvent::new(
                e.aggregate_id,
                e.sequence.max(0) as usize,
                e.aggregate_type,
                e.event_type,
                e.event_version,
                e.payload,
                Value::Null,
            );
            let event = match commands::registry::find(&event.aggregate_type) {
                Some(kind) => (kind.upcast)(event),
                None => event,
            };
            (
                e.global_position,
                history::summary(&event.aggregate_type, &event.event_type, &event.payload),
            )
        })
        .collect())
}

/// Everyone who appears in `tenant_id`'s activity, sorted (at most `limit`), for the page's
/// "person" list: a loose scan of `activity_by_actor`, one index probe per person.
pub async fn actors<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH RECURSIVE people(actor) AS (
             (SELECT actor FROM activity WHERE tenant_id = $1 ORDER BY actor LIMIT 1)
             UNION ALL
             SELECT (SELECT a.actor FROM activity a
                      WHERE a.tenant_id = $1 AND a.actor > p.actor
                      ORDER BY a.actor LIMIT 1)
               FROM people p
              WHERE p.actor IS NOT NULL
         )
         SELECT actor FROM people WHERE actor IS NOT NULL LIMIT $2",
    )
    .bind(tenant_id)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The kinds of entity in `tenant_id`'s activity, sorted: a loose scan of `activity_by_type`.
pub async fn aggregate_types<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH RECURSIVE kinds(kind) AS (
             (SELECT aggregate_type FROM activity WHERE tenant_id = $1
               ORDER BY aggregate_type LIMIT 1)
             UNION ALL
             SELECT (SELECT a.aggregate_type FROM activity a
                      WHERE a.tenant_id = $1 AND a.aggregate_type > k.kind
                      ORDER BY a.aggregate_type LIMIT 1)
               FROM kinds k
              WHERE k.kind IS NOT NULL
         )
         SELECT kind FROM kinds WHERE kind IS NOT NULL",
    )
    .bind(tenant_id)
    .fetch_all(db)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let cursor = Cursor {
            recorded_at: DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap(),
            global_position: 42,
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("nonsense"), None);
        assert_eq!(Cursor::decode("1.x"), None);
        assert_eq!(Cursor::decode(""), None);
    }

    #[test]
    fn one_entity_reads_the_log_and_the_rest_reads_the_trail() {
        let entity = page_sql(&ActivityFilter {
            aggregate_type: Some("company"),
            aggregate_id: Some("x"),
            actor: Some("a"),
            limit: 50,
            ..Default::default()
        });
        assert!(entity.contains("FROM events"), "{entity}");
        assert!(entity.contains("metadata->>'actor' = "), "{entity}");
        let kind = page_sql(&ActivityFilter {
            aggregate_type: Some("company"),
            limit: 50,
            ..Default::default()
        });
        assert!(kind.contains("FROM activity"), "{kind}");
        assert!(!kind.contains("OFFSET"), "{kind}");
        assert!(kind.ends_with("LIMIT 50"), "{kind}");
    }
}
