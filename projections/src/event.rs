//! Events as the read side sees them, and the guarded reader that never skips one.

use chrono::{DateTime, Utc};
use commands::EventMeta;
use serde_json::value::RawValue;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgExecutor, Row};

/// A place in the log: events are ordered by the transaction that wrote them, then by
/// position. `Position::START` is before every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct Position {
    pub tx_id: i64,
    pub global_position: i64,
}

impl Position {
    pub const START: Position = Position {
        tx_id: 0,
        global_position: 0,
    };
    pub const END: Position = Position {
        tx_id: i64::MAX,
        global_position: i64::MAX,
    };
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.tx_id, self.global_position)
    }
}

/// One stored event, with its payload kept as raw JSON so each projection decodes only the
/// events it handles, straight into their types.
#[derive(Debug)]
pub struct StoredEvent {
    pub position: Position,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Box<RawValue>,
    /// The metadata, or why it does not decode (which stops a projection at this event rather
    /// than failing the whole read).
    pub meta: Result<EventMeta, String>,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    /// The cqrs-es form, for upcasters.
    pub fn to_serialized(&self) -> Result<cqrs_es::persist::SerializedEvent, serde_json::Error> {
        Ok(cqrs_es::persist::SerializedEvent::new(
            self.aggregate_id.clone(),
            self.sequence as usize,
            self.aggregate_type.clone(),
            self.event_type.clone(),
            self.event_version.clone(),
            serde_json::from_str(self.payload.get())?,
            serde_json::to_value(self.meta.as_ref().ok())?,
        ))
    }

    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            position: Position {
                tx_id: row.try_get(0)?,
                global_position: row.try_get(1)?,
            },
            aggregate_type: row.try_get(2)?,
            aggregate_id: row.try_get(3)?,
            sequence: row.try_get(4)?,
            event_type: row.try_get(5)?,
            event_version: row.try_get(6)?,
            payload: row.try_get::<Json<Box<RawValue>>, _>(7)?.0,
            meta: row
                .try_get::<Json<EventMeta>, _>(8)
                .map(|m| m.0)
                .map_err(|e| format!("metadata does not decode: {e}")),
            recorded_at: row.try_get(9)?,
        })
    }
}

/// Reads up to `limit` events after `after` and not after `until`.
///
/// Only transactions older than the oldest one still running are read
/// (`tx_id < pg_snapshot_xmin(pg_current_snapshot())`): a transaction that commits later always
/// has a larger `tx_id` than everything returned here, so a checkpoint never jumps over an
/// event that was still in flight. `global_position > last` alone does skip such events.
pub async fn read_batch<'e>(
    executor: impl PgExecutor<'e>,
    after: Position,
    until: Position,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows = sqlx::query(
        // ORDER BY names the table's columns: a bare `tx_id` would mean the output column
        // (the int8 cast), which no index serves, and every batch would sort the whole tail.
        "SELECT e.tx_id::text::int8 AS tx, e.global_position, e.aggregate_type, e.aggregate_id,
                e.sequence, e.event_type, e.event_version, e.payload, e.metadata, e.recorded_at
           FROM events e
          WHERE (e.tx_id, e.global_position) > ($1::int8::text::xid8, $2)
            AND (e.tx_id, e.global_position) <= ($3::int8::text::xid8, $4)
            AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY e.tx_id, e.global_position
          LIMIT $5",
    )
    .bind(after.tx_id)
    .bind(after.global_position)
    .bind(until.tx_id)
    .bind(until.global_position)
    .bind(limit)
    .fetch_all(executor)
    .await?;
    rows.iter().map(StoredEvent::from_row).collect()
}

/// Parses a row of `projection_checkpoints`-style text xid8 into a position.
pub fn position_from(tx_id: &str, global_position: i64) -> Position {
    Position {
        tx_id: tx_id.parse().unwrap_or(0),
        global_position,
    }
}
