//! Rebuilding a projection into shadow tables and swapping them in, and verifying a live
//! projection against a fresh rebuild.
//!
//! A rebuild never touches the live tables until the swap: the console keeps reading them
//! while the shadows fill. The swap runs in one transaction that holds the projection's
//! checkpoint row (so the live runner pauses), applies the last events to the shadows, renames
//! the tables and moves the checkpoint. Interrupted at any point, the next rebuild drops the
//! half-built shadows and starts over; the live tables are as they were.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Acquire, PgConnection, PgPool, Row};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::event::{position_from, read_batch};
use crate::runner::ensure_checkpoint;
use crate::{ApplyError, Position, Projection, StoredEvent, Tables};

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

/// Creates empty shadows of the projection's tables with their unique indexes (which upserts
/// need while filling). Returns the statements that create the other indexes: building those
/// once after the fill is much cheaper than updating them row by row.
async fn create_shadows(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    suffix: &str,
) -> Result<(Tables, Vec<String>), sqlx::Error> {
    let mut deferred = Vec::new();
    for table in projection.tables() {
        let shadow = format!("{table}{suffix}");
        sqlx::query(&format!("DROP TABLE IF EXISTS {shadow}"))
            .execute(&mut *conn)
            .await?;
        sqlx::query(&format!(
            "CREATE TABLE {shadow} (LIKE {table} INCLUDING ALL EXCLUDING INDEXES)"
        ))
        .execute(&mut *conn)
        .await?;
        let indexes: Vec<(bool, bool, String)> = sqlx::query_as(
            "SELECT i.indisprimary, i.indisunique,
                    regexp_replace(pg_get_indexdef(i.indexrelid), '^.* USING ', '')
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE i.indrelid = $1::regclass
              ORDER BY c.relname",
        )
        .bind(*table)
        .fetch_all(&mut *conn)
        .await?;
        for (n, (primary, unique, definition)) in indexes.into_iter().enumerate() {
            let name = format!("{shadow}_{n}");
            let create = format!(
                "CREATE {}INDEX {name} ON {shadow} USING {definition}",
                if unique { "UNIQUE " } else { "" }
            );
            if unique {
                sqlx::query(&create).execute(&mut *conn).await?;
                if primary {
                    sqlx::query(&format!(
                        "ALTER TABLE {shadow} ADD CONSTRAINT {name} PRIMARY KEY USING INDEX {name}"
                    ))
                    .execute(&mut *conn)
                    .await?;
                }
            } else {
                deferred.push(create);
            }
        }
    }
    Ok((Tables::with_suffix(projection.tables(), suffix), deferred))
}

/// Builds the deferred indexes, one after the other on one connection (index builds are
/// CPU-bound sorts: running several at once on a small machine only makes each slower).
async fn create_deferred_indexes(
    conn: &mut PgConnection,
    statements: &[String],
) -> Result<(), sqlx::Error> {
    if statements.is_empty() {
        return Ok(());
    }
    // Sort in memory rather than on disk; one index at a time bounds the memory.
    sqlx::query("SET maintenance_work_mem = '256MB'")
        .execute(&mut *conn)
        .await?;
    for statement in statements {
        sqlx::query(statement).execute(&mut *conn).await?;
    }
    sqlx::query("RESET maintenance_work_mem")
        .execute(&mut *conn)
        .await?;
    Ok(())
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

/// Applies one batch to shadow tables in its own transaction.
async fn apply_to_shadow(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    tables: &Tables,
    batch: &[StoredEvent],
) -> Result<(), RebuildError> {
    let mut tx = conn.begin().await?;
    projection
        .apply(&mut tx, tables, batch)
        .await
        .map_err(|error| failed_at(projection, batch, error))?;
    tx.commit().await?;
    Ok(())
}

/// The rebuild error for a batch that failed, naming the failing event when known.
fn failed_at(
    projection: &dyn Projection,
    batch: &[StoredEvent],
    error: ApplyError,
) -> RebuildError {
    let position = error
        .index
        .and_then(|i| batch.get(i))
        .or(batch.last())
        .map_or(Position::START, |e| e.position);
    RebuildError::Apply {
        projection: projection.name(),
        position,
        message: error.message,
    }
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
        if let Err(error) = apply_to_shadow(conn, projection, tables, &batch).await {
            next.abort();
            return Err(error);
        }
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
        projection
            .apply(&mut *conn, tables, &batch)
            .await
            .map_err(|error| failed_at(projection, &batch, error))?;
        applied += batch.len() as u64;
        at = last;
    }
}

/// Where every rebuild starts: the transactions that committed before it, and how many events
/// the log held (for progress).
struct Start {
    /// Every transaction below this xid must be in the rebuild, even if an older one elsewhere
    /// on the cluster still holds the reader's horizon back.
    committed_before: i64,
    total: u64,
    started: Instant,
}

async fn start(conn: &mut PgConnection) -> Result<Start, sqlx::Error> {
    let committed_before: i64 =
        sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::int8")
            .fetch_one(&mut *conn)
            .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut *conn)
        .await?;
    Ok(Start {
        committed_before,
        total: total as u64,
        started: Instant::now(),
    })
}

/// A projection's shadow tables, filled up to `at`.
struct Shadow {
    tables: Tables,
    deferred_indexes: Vec<String>,
    at: Position,
    applied: u64,
}

async fn prepare(
    conn: &mut PgConnection,
    projection: &dyn Projection,
) -> Result<Shadow, sqlx::Error> {
    ensure_checkpoint(conn, projection).await?;
    let (tables, deferred_indexes) = create_shadows(conn, projection, REBUILD_SUFFIX).await?;
    Ok(Shadow {
        tables,
        deferred_indexes,
        at: Position::START,
        applied: 0,
    })
}

/// Builds the deferred indexes, takes in what older transactions still held back, and swaps
/// the shadows in: in one transaction holding the checkpoint row (the live runner waits), the
/// events that arrived meanwhile are applied, the tables renamed, the checkpoint moved.
async fn finish(
    pool: &PgPool,
    conn: &mut PgConnection,
    projection: &dyn Projection,
    mut shadow: Shadow,
    start: &Start,
    batch_size: i64,
) -> Result<RebuildReport, RebuildError> {
    let indexing = Instant::now();
    create_deferred_indexes(conn, &shadow.deferred_indexes).await?;
    tracing::info!(
        projection = projection.name(),
        filled_after = ?start.started.elapsed().saturating_sub(indexing.elapsed()),
        indexes = shadow.deferred_indexes.len(),
        indexing = ?indexing.elapsed(),
        "rebuild: shadow filled and indexed"
    );
    if wait_for_horizon(conn, start.committed_before).await? {
        let span = Span {
            from: shadow.at,
            until: Position::END,
            batch_size,
        };
        let (at, tail) = fill(pool, conn, projection, &shadow.tables, span, &mut |_| {}).await?;
        shadow.at = at;
        shadow.applied += tail;
    }
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT 1 FROM projection_checkpoints WHERE name = $1 FOR UPDATE")
        .bind(projection.name())
        .execute(&mut *tx)
        .await?;
    let (at, tail) = fill_in_tx(
        &mut tx,
        projection,
        &shadow.tables,
        shadow.at,
        Position::END,
        batch_size,
    )
    .await?;
    let applied = shadow.applied + tail;
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
    Ok(RebuildReport {
        events: applied,
        position: at,
        elapsed: start.started.elapsed(),
    })
}

/// Rebuilds `projection` from the whole log and swaps it in. `progress(done, total)` is called
/// after every batch (`total` is the number of events when the rebuild started).
pub async fn rebuild(
    pool: &PgPool,
    projection: &dyn Projection,
    options: &RebuildOptions,
    mut progress: impl FnMut(u64, u64) + Send,
) -> Result<RebuildReport, RebuildError> {
    let mut conn = pool.acquire().await?;
    let mut shadow = prepare(&mut conn, projection).await?;
    let start = start(&mut conn).await?;
    let span = Span {
        from: Position::START,
        until: Position::END,
        batch_size: options.batch_size,
    };
    let total = start.total;
    (shadow.at, shadow.applied) = fill(
        pool,
        &mut conn,
        projection,
        &shadow.tables,
        span,
        &mut |done| progress(done, total.max(done)),
    )
    .await?;
    let report = finish(
        pool,
        &mut conn,
        projection,
        shadow,
        &start,
        options.batch_size,
    )
    .await?;
    progress(report.events, total.max(report.events));
    Ok(report)
}

/// Rebuilds several projections in one pass over the log: each batch is read once and applied
/// to every projection's shadows at the same time, each on its own connection; then each is
/// swapped in. `progress(done, total)` counts events read.
pub async fn rebuild_all(
    pool: &PgPool,
    projections: &[Arc<dyn Projection>],
    options: &RebuildOptions,
    mut progress: impl FnMut(u64, u64) + Send,
) -> Result<Vec<(&'static str, RebuildReport)>, RebuildError> {
    let mut prepared = Vec::new();
    for projection in projections {
        let mut conn = pool.acquire().await?;
        let shadow = prepare(&mut conn, projection.as_ref()).await?;
        prepared.push((projection.clone(), conn, shadow));
    }
    let Some((_, first, _)) = prepared.first_mut() else {
        return Ok(Vec::new());
    };
    let start = start(first).await?;

    // One worker per projection applies the batches it is sent.
    let mut senders = Vec::new();
    let mut workers = Vec::new();
    for (projection, mut conn, mut shadow) in prepared {
        let (sender, mut batches) = mpsc::channel::<Arc<Vec<StoredEvent>>>(2);
        senders.push(sender);
        workers.push(tokio::spawn(async move {
            while let Some(batch) = batches.recv().await {
                let Some(last) = batch.last().map(|e| e.position) else {
                    continue;
                };
                apply_to_shadow(&mut conn, projection.as_ref(), &shadow.tables, &batch).await?;
                shadow.at = last;
                shadow.applied += batch.len() as u64;
            }
            Ok::<_, RebuildError>((projection, conn, shadow))
        }));
    }
    let prefetch = |after: Position| -> JoinHandle<Result<Vec<StoredEvent>, sqlx::Error>> {
        let pool = pool.clone();
        let limit = options.batch_size;
        tokio::spawn(async move { read_batch(&pool, after, Position::END, limit).await })
    };
    let mut next = prefetch(Position::START);
    let mut read = 0u64;
    loop {
        let batch = next
            .await
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))??;
        let Some(last) = batch.last().map(|e| e.position) else {
            break;
        };
        next = prefetch(last);
        read += batch.len() as u64;
        let batch = Arc::new(batch);
        let mut delivered = true;
        for sender in &senders {
            delivered &= sender.send(batch.clone()).await.is_ok();
        }
        if !delivered {
            // A worker stopped on an error: it is reported below.
            next.abort();
            break;
        }
        progress(read, start.total.max(read));
    }
    drop(senders);
    let mut filled = Vec::new();
    for worker in workers {
        filled.push(
            worker
                .await
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))??,
        );
    }
    let finishing = filled.into_iter().map(|(projection, mut conn, shadow)| {
        let start = &start;
        async move {
            let report = finish(
                pool,
                &mut conn,
                projection.as_ref(),
                shadow,
                start,
                options.batch_size,
            )
            .await?;
            Ok::<_, RebuildError>((projection.name(), report))
        }
    });
    let reports = futures::future::try_join_all(finishing).await?;
    progress(read, start.total.max(read));
    Ok(reports)
}

/// Waits until every transaction older than `xid` has ended, so the guarded reader sees all
/// they wrote. Returns whether it had to wait.
async fn wait_for_horizon(conn: &mut PgConnection, xid: i64) -> Result<bool, sqlx::Error> {
    let mut waited = false;
    loop {
        let horizon: i64 =
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::int8")
                .fetch_one(&mut *conn)
                .await?;
        if horizon >= xid {
            return Ok(waited);
        }
        if !waited {
            tracing::info!(xid, horizon, "rebuild waits for older transactions to end");
        }
        waited = true;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
    // Compared by full scans: the scratch tables need no secondary indexes.
    let (tables, _) = create_shadows(&mut conn, projection, VERIFY_SUFFIX).await?;
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
