//! Rebuilding a projection into shadow tables and swapping them in, and verifying a live
//! projection against a fresh rebuild.
//!
//! A rebuild never touches the live tables until the swap: the console keeps reading them
//! while the shadows fill. The swap runs in one transaction that holds the projection's
//! checkpoint row (so the live runner pauses), applies the last events to the shadows, renames
//! the tables and moves the checkpoint. Interrupted at any point, the next rebuild drops the
//! half-built shadows and starts over; the live tables are as they were.

use std::time::{Duration, Instant};

use sqlx::{Acquire, PgConnection, PgPool, Row};
use tokio::task::JoinHandle;

use crate::event::{position_from, read_batch};
use crate::runner::ensure_checkpoint;
use crate::{Position, Projection, StoredEvent, Tables};

#[derive(Debug, Clone)]
pub struct RebuildOptions {
    pub batch_size: i64,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        Self { batch_size: 10_000 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("projection {projection} fails at {position}: {message}")]
    Apply {
        projection: &'static str,
        position: Position,
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub events: u64,
    pub position: Position,
    pub elapsed: Duration,
}

const REBUILD_SUFFIX: &str = "__rebuild";
const VERIFY_SUFFIX: &str = "__verify";

async fn create_shadows(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    suffix: &str,
) -> Result<Tables, sqlx::Error> {
    for table in projection.tables() {
        sqlx::query(&format!("DROP TABLE IF EXISTS {table}{suffix}"))
            .execute(&mut *conn)
            .await?;
        sqlx::query(&format!(
            "CREATE TABLE {table}{suffix} (LIKE {table} INCLUDING ALL)"
        ))
        .execute(&mut *conn)
        .await?;
    }
    Ok(Tables::with_suffix(projection.tables(), suffix))
}

async fn drop_shadows(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    suffix: &str,
) -> Result<(), sqlx::Error> {
    for table in projection.tables() {
        sqlx::query(&format!("DROP TABLE IF EXISTS {table}{suffix}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A stretch of the log: after `from`, not after `until`, read `batch_size` events at a time.
#[derive(Debug, Clone, Copy)]
struct Span {
    from: Position,
    until: Position,
    batch_size: i64,
}

/// Applies every readable event of `span` to `tables`, reading the next batch while the
/// current one is written. Returns the last position applied and the number of events.
async fn fill(
    pool: &PgPool,
    conn: &mut PgConnection,
    projection: &dyn Projection,
    tables: &Tables,
    span: Span,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<(Position, u64), RebuildError> {
    let Span {
        from,
        until,
        batch_size,
    } = span;
    let prefetch = |after: Position| -> JoinHandle<Result<Vec<StoredEvent>, sqlx::Error>> {
        let pool = pool.clone();
        tokio::spawn(async move { read_batch(&pool, after, until, batch_size).await })
    };
    let mut at = from;
    let mut applied = 0u64;
    let mut next = prefetch(at);
    loop {
        let batch = next
            .await
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))??;
        let Some(last) = batch.last().map(|e| e.position) else {
            return Ok((at, applied));
        };
        next = prefetch(last);
        let mut tx = conn.begin().await?;
        if let Err(error) = projection.apply(&mut tx, tables, &batch).await {
            next.abort();
            let position = error
                .index
                .and_then(|i| batch.get(i))
                .map_or(last, |e| e.position);
            return Err(RebuildError::Apply {
                projection: projection.name(),
                position,
                message: error.message,
            });
        }
        tx.commit().await?;
        applied += batch.len() as u64;
        at = last;
        progress(applied);
    }
}

/// Like `fill`, inside the caller's transaction (no prefetch: the snapshot must be the
/// transaction's own).
async fn fill_in_tx(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    tables: &Tables,
    from: Position,
    until: Position,
    batch_size: i64,
) -> Result<(Position, u64), RebuildError> {
    let mut at = from;
    let mut applied = 0;
    loop {
        let batch = read_batch(&mut *conn, at, until, batch_size).await?;
        let Some(last) = batch.last().map(|e| e.position) else {
            return Ok((at, applied));
        };
        if let Err(error) = projection.apply(&mut *conn, tables, &batch).await {
            return Err(RebuildError::Apply {
                projection: projection.name(),
                position: error
                    .index
                    .and_then(|i| batch.get(i))
                    .map_or(last, |e| e.position),
                message: error.message,
            });
        }
        applied += batch.len() as u64;
        at = last;
    }
}

/// Rebuilds `projection` from the whole log and swaps it in. `progress(done, total)` is called
/// after every batch (`total` is the number of events when the rebuild started).
pub async fn rebuild(
    pool: &PgPool,
    projection: &dyn Projection,
    options: &RebuildOptions,
    mut progress: impl FnMut(u64, u64) + Send,
) -> Result<RebuildReport, RebuildError> {
    let started = Instant::now();
    let mut conn = pool.acquire().await?;
    ensure_checkpoint(&mut conn, projection).await?;
    let tables = create_shadows(&mut conn, projection, REBUILD_SUFFIX).await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut *conn)
        .await?;
    let total = total as u64;
    let span = Span {
        from: Position::START,
        until: Position::END,
        batch_size: options.batch_size,
    };
    let (at, mut applied) = fill(pool, &mut conn, projection, &tables, span, &mut |done| {
        progress(done, total.max(done))
    })
    .await?;

    // The swap: hold the checkpoint row so the live runner waits, apply what came in
    // meanwhile, rename, move the checkpoint.
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT 1 FROM projection_checkpoints WHERE name = $1 FOR UPDATE")
        .bind(projection.name())
        .execute(&mut *tx)
        .await?;
    let (at, tail) = fill_in_tx(
        &mut tx,
        projection,
        &tables,
        at,
        Position::END,
        options.batch_size,
    )
    .await?;
    applied += tail;
    for table in projection.tables() {
        swap_table(&mut tx, table, &format!("{table}{REBUILD_SUFFIX}")).await?;
    }
    sqlx::query(
        "UPDATE projection_checkpoints
            SET tx_id = $2::int8::text::xid8, position = $3, events_applied = $4, version = $5,
                status = 'running', failed_position = NULL, last_error = NULL, failed_at = NULL,
                updated_at = now()
          WHERE name = $1",
    )
    .bind(projection.name())
    .bind(at.tx_id)
    .bind(at.global_position)
    .bind(applied as i64)
    .bind(projection.version())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    progress(applied, total.max(applied));
    Ok(RebuildReport {
        events: applied,
        position: at,
        elapsed: started.elapsed(),
    })
}

/// Replaces `live` by `shadow`, giving the shadow's indexes the live indexes' names.
async fn swap_table(conn: &mut PgConnection, live: &str, shadow: &str) -> Result<(), sqlx::Error> {
    let indexes = |table: String| {
        sqlx::query(
            "SELECT c.relname::text, regexp_replace(pg_get_indexdef(i.indexrelid), '^.* USING ', '')
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE i.indrelid = $1::regclass",
        )
        .bind(table)
    };
    let live_indexes: Vec<(String, String)> = indexes(live.to_string())
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let shadow_indexes: Vec<(String, String)> = indexes(shadow.to_string())
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    sqlx::query(&format!("DROP TABLE {live}"))
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!("ALTER TABLE {shadow} RENAME TO {live}"))
        .execute(&mut *conn)
        .await?;
    for (shadow_name, definition) in shadow_indexes {
        if let Some((live_name, _)) = live_indexes.iter().find(|(_, d)| *d == definition) {
            sqlx::query(&format!("ALTER INDEX {shadow_name} RENAME TO {live_name}"))
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

async fn live_checkpoint(conn: &mut PgConnection, name: &str) -> Result<Position, sqlx::Error> {
    let row =
        sqlx::query("SELECT tx_id::text, position FROM projection_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(conn)
            .await?;
    Ok(row.map_or(Position::START, |r| position_from(r.get(0), r.get(1))))
}

/// How a live projection compares with a fresh rebuild of the same events.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub projection: &'static str,
    pub checkpoint: Position,
    pub events: u64,
    pub live_rows: i64,
    pub rebuilt_rows: i64,
    /// Rows only in the live table (`-`) or only in the rebuild (`+`), at most 10.
    pub differences: Vec<String>,
}

impl VerifyReport {
    pub fn matches(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Rebuilds `projection` into scratch tables up to its live checkpoint and compares.
pub async fn verify(
    pool: &PgPool,
    projection: &dyn Projection,
) -> Result<VerifyReport, RebuildError> {
    let mut conn = pool.acquire().await?;
    let tables = create_shadows(&mut conn, projection, VERIFY_SUFFIX).await?;
    let first = live_checkpoint(&mut conn, projection.name()).await?;
    let result = async {
        let span = Span {
            from: Position::START,
            until: first,
            batch_size: RebuildOptions::default().batch_size,
        };
        let (at, mut events) =
            fill(pool, &mut conn, projection, &tables, span, &mut |_| {}).await?;
        // Pause the live runner and catch the scratch tables up to exactly its checkpoint.
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT 1 FROM projection_checkpoints WHERE name = $1 FOR UPDATE")
            .bind(projection.name())
            .execute(&mut *tx)
            .await?;
        let checkpoint = live_checkpoint(&mut tx, projection.name()).await?;
        let (_, tail) = fill_in_tx(&mut tx, projection, &tables, at, checkpoint, 10_000).await?;
        events += tail;
        let mut report = VerifyReport {
            projection: projection.name(),
            checkpoint,
            events,
            live_rows: 0,
            rebuilt_rows: 0,
            differences: Vec::new(),
        };
        for (live, scratch) in projection.tables().iter().zip(tables.iter()) {
            report.live_rows +=
                sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {live}"))
                    .fetch_one(&mut *tx)
                    .await?;
            report.rebuilt_rows +=
                sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {scratch}"))
                    .fetch_one(&mut *tx)
                    .await?;
            let rows: Vec<String> = sqlx::query_scalar(&format!(
                "(SELECT '{live} - ' || row_to_json(a)::text FROM
                   (SELECT * FROM {live} EXCEPT ALL SELECT * FROM {scratch}) a LIMIT 10)
                 UNION ALL
                 (SELECT '{live} + ' || row_to_json(b)::text FROM
                   (SELECT * FROM {scratch} EXCEPT ALL SELECT * FROM {live}) b LIMIT 10)"
            ))
            .fetch_all(&mut *tx)
            .await?;
            report.differences.extend(rows);
        }
        report.differences.truncate(10);
        tx.rollback().await?;
        Ok::<_, RebuildError>(report)
    }
    .await;
    drop_shadows(&mut conn, projection, VERIFY_SUFFIX).await?;
    result
}
