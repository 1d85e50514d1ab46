//! `history` (every event of one aggregate) and `replay --as-of` (its state at a moment).

use anyhow::Context;
use chrono::{DateTime, FixedOffset, Utc};
use cqrs_es::persist::SerializedEvent;
use serde::Serialize;
use sqlx::{PgPool, Row};

use crate::common::{aggregate_kind, rfc3339, upcast, Usage};

/// One stored event of an aggregate, as read for `history` and `replay`.
struct Loaded {
    global_position: i64,
    tx_id: i64,
    recorded_at: DateTime<Utc>,
    event: SerializedEvent,
}

/// The aggregate's events recorded at or before `until` (all when `None`), by sequence.
async fn load(
    pool: &PgPool,
    aggregate_type: &str,
    id: &str,
    until: Option<DateTime<Utc>>,
) -> anyhow::Result<Vec<Loaded>> {
    let rows = sqlx::query(
        "SELECT global_position, tx_id::text::int8, recorded_at, sequence, event_type,
                event_version, payload, metadata
           FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2
            AND ($3::timestamptz IS NULL OR recorded_at <= $3)
          ORDER BY sequence",
    )
    .bind(aggregate_type)
    .bind(id)
    .bind(until)
    .fetch_all(pool)
    .await
    .with_context(|| format!("reading the events of {aggregate_type} {id}"))?;
    rows.iter()
        .map(|row| {
            let sequence: i64 = row.try_get(3)?;
            Ok(Loaded {
                global_position: row.try_get(0)?,
                tx_id: row.try_get(1)?,
                recorded_at: row.try_get(2)?,
                event: SerializedEvent::new(
                    id.to_string(),
                    sequence as usize,
                    aggregate_type.to_string(),
                    row.try_get(4)?,
                    row.try_get(5)?,
                    row.try_get(6)?,
                    row.try_get(7)?,
                ),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .context("decoding an events row")
}

#[derive(Serialize)]
struct HistoryEntry {
    global_position: i64,
    tx_id: i64,
    recorded_at: String,
    sequence: usize,
    event_type: String,
    event_version: String,
    actor: Option<String>,
    command_id: Option<String>,
    payload: serde_json::Value,
    metadata: serde_json::Value,
}

#[derive(Serialize)]
struct History<'a> {
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    events: Vec<HistoryEntry>,
}

pub async fn history(
    pool: &PgPool,
    aggregate_type: &str,
    id: &str,
    json: bool,
) -> anyhow::Result<u8> {
    aggregate_kind(aggregate_type)?;
    let loaded = load(pool, aggregate_type, id, None).await?;
    if loaded.is_empty() {
        return Err(Usage::new(format!("no events for {aggregate_type} {id}")).into());
    }
    let events: Vec<HistoryEntry> = loaded
        .into_iter()
        .map(|l| {
            let mut event = upcast(l.event);
            commands::registry::redact_secrets(&mut event.payload);
            let meta = serde_json::from_value::<commands::EventMeta>(event.metadata.clone()).ok();
            HistoryEntry {
                global_position: l.global_position,
                tx_id: l.tx_id,
                recorded_at: rfc3339(&l.recorded_at),
                sequence: event.sequence,
                actor: meta.as_ref().map(|m| m.actor.clone()),
                command_id: meta.as_ref().map(|m| m.command_id.to_string()),
                event_type: event.event_type,
                event_version: event.event_version,
                payload: event.payload,
                metadata: event.metadata,
            }
        })
        .collect();
    if json {
        let history = History {
            aggregate_type,
            aggregate_id: id,
            events,
        };
        out!("{}", serde_json::to_string_pretty(&history)?);
        return Ok(0);
    }
    out!("{aggregate_type} {id}: {} events", events.len());
    for e in &events {
        out!(
            "#{:<4} {}  {} v{}  position {} (tx {})  actor {}  command {}",
            e.sequence,
            e.recorded_at,
            e.event_type,
            e.event_version,
            e.global_position,
            e.tx_id,
            e.actor.as_deref().unwrap_or("?"),
            e.command_id.as_deref().unwrap_or("?"),
        );
        out!("      {}", e.payload);
        if e.actor.is_none() {
            out!("      metadata (does not parse): {}", e.metadata);
        }
    }
    Ok(0)
}

#[derive(Serialize)]
struct Replayed<'a> {
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    as_of: String,
    /// Number of events folded.
    events: usize,
    /// Sequence of the last event folded.
    version: usize,
    state: serde_json::Value,
}

pub async fn replay(
    pool: &PgPool,
    as_of: DateTime<FixedOffset>,
    aggregate_type: &str,
    id: &str,
) -> anyhow::Result<u8> {
    let kind = aggregate_kind(aggregate_type)?;
    let as_of = as_of.with_timezone(&Utc);
    let loaded = load(pool, aggregate_type, id, Some(as_of)).await?;
    if loaded.is_empty() {
        let first: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(recorded_at) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(aggregate_type)
        .bind(id)
        .fetch_one(pool)
        .await?;
        return Err(Usage::new(match first {
            Some(first) => format!(
                "{aggregate_type} {id} did not exist yet at {} (its first event was recorded at {})",
                rfc3339(&as_of),
                rfc3339(&first)
            ),
            None => format!("no events for {aggregate_type} {id}"),
        })
        .into());
    }
    let version = loaded.last().map_or(0, |l| l.event.sequence);
    let events = loaded.len();
    let state = (kind.fold)(loaded.into_iter().map(|l| l.event).collect())
        .map_err(|e| anyhow::anyhow!("cannot fold {aggregate_type} {id}: {e}"))?;
    let replayed = Replayed {
        aggregate_type,
        aggregate_id: id,
        as_of: rfc3339(&as_of),
        events,
        version,
        state,
    };
    out!("{}", serde_json::to_string_pretty(&replayed)?);
    Ok(0)
}
