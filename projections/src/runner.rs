//! The catch-up runner: one task per projection, one runner per projection across all
//! processes (a session advisory lock), woken by this process's appends, by NOTIFY from other
//! processes, or by polling.
//!
//! Each batch is applied in one transaction that first locks the projection's checkpoint row
//! and checks it still holds the position the batch starts from (compare-and-set), then writes
//! the rows and the new checkpoint. A rebuild swaps tables under the same row lock, so a batch
//! that raced a swap rolls back and starts again from the swapped-in checkpoint.

use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgListener;
use sqlx::{Acquire, PgConnection, PgPool, Postgres, Row};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::event::{position_from, read_batch};
use crate::{ApplyError, Position, Projection, StoredEvent, Tables};

/// How a runner reads and waits.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub batch_size: i64,
    /// Polling fallback when no wake-up arrives.
    pub poll_interval: Duration,
    /// How long a failed projection waits before it tries its failing event again (doubles up
    /// to `max_retry_interval`).
    pub retry_interval: Duration,
    pub max_retry_interval: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            batch_size: 2_000,
            poll_interval: Duration::from_millis(500),
            retry_interval: Duration::from_secs(1),
            max_retry_interval: Duration::from_secs(30),
        }
    }
}

/// The advisory-lock key of a projection's runner.
pub fn lock_key(name: &str) -> i64 {
    // FNV-1a: stable across builds and processes, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("supporttracker.projection.{name}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// Makes sure the projection has a checkpoint row; returns its position and stored version.
pub async fn ensure_checkpoint(
    conn: &mut PgConnection,
    projection: &dyn Projection,
) -> Result<(Position, i32), sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, version) VALUES ($1, $2)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(projection.name())
    .bind(projection.version())
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query(
        "SELECT tx_id::text, position, version FROM projection_checkpoints WHERE name = $1",
    )
    .bind(projection.name())
    .fetch_one(&mut *conn)
    .await?;
    Ok((
        position_from(row.try_get(0)?, row.try_get(1)?),
        row.try_get(2)?,
    ))
}

/// What happened to a batch.
pub enum BatchOutcome {
    Applied,
    /// The checkpoint moved under us (a rebuild swapped tables): start again from here.
    Moved(Position),
    Failed(ApplyError),
}

/// Applies `events` (which follow `from`) to the live tables and advances the checkpoint, in
/// one transaction guarded by compare-and-set on the checkpoint.
pub async fn apply_batch(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    tables: &Tables,
    from: Position,
    events: &[StoredEvent],
) -> Result<BatchOutcome, sqlx::Error> {
    let Some(last) = events.last() else {
        return Ok(BatchOutcome::Applied);
    };
    let mut tx = conn.begin().await?;
    let row = sqlx::query(
        "SELECT tx_id::text, position FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
    )
    .bind(projection.name())
    .fetch_one(&mut *tx)
    .await?;
    let current = position_from(row.try_get(0)?, row.try_get(1)?);
    if current != from {
        tx.rollback().await?;
        return Ok(BatchOutcome::Moved(current));
    }
    if let Err(error) = projection.apply(&mut tx, tables, events).await {
        tx.rollback().await?;
        return Ok(BatchOutcome::Failed(error));
    }
    sqlx::query(
        "UPDATE projection_checkpoints
            SET tx_id = $2::int8::text::xid8, position = $3, events_applied = events_applied + $4,
                status = 'running', failed_position = NULL, last_error = NULL, failed_at = NULL,
                updated_at = now()
          WHERE name = $1",
    )
    .bind(projection.name())
    .bind(last.position.tx_id)
    .bind(last.position.global_position)
    .bind(events.len() as i64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(BatchOutcome::Applied)
}

/// Records that the projection is stuck at `event`.
async fn record_failure(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    event: &StoredEvent,
    message: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE projection_checkpoints
            SET status = 'failed', failed_position = $2, last_error = $3, failed_at = now(),
                updated_at = now()
          WHERE name = $1",
    )
    .bind(projection.name())
    .bind(event.position.global_position)
    .bind(message)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Result of one catch-up pass.
#[derive(Debug, PartialEq, Eq)]
pub enum CatchUp {
    /// Nothing left to read (for now).
    CaughtUp { applied: u64 },
    /// Stopped at a failing event; everything before it is applied.
    Failed { position: Position, error: String },
}

/// Applies everything readable after the checkpoint, `config.batch_size` events at a time,
/// reading the next batch while the current one is written.
pub async fn catch_up(
    pool: &PgPool,
    conn: &mut PgConnection,
    projection: &dyn Projection,
    config: &RunnerConfig,
) -> Result<CatchUp, sqlx::Error> {
    let tables = Tables::live(projection.tables());
    let (mut from, _) = ensure_checkpoint(conn, projection).await?;
    let mut applied = 0u64;
    let prefetch = |after: Position| {
        let pool = pool.clone();
        let limit = config.batch_size;
        tokio::spawn(async move { read_batch(&pool, after, Position::END, limit).await })
    };
    let mut next: JoinHandle<Result<Vec<StoredEvent>, sqlx::Error>> = prefetch(from);
    loop {
        let batch = next
            .await
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))??;
        let Some(last) = batch.last().map(|e| e.position) else {
            return Ok(CatchUp::CaughtUp { applied });
        };
        next = prefetch(last);
        match apply_batch(conn, projection, &tables, from, &batch).await? {
            BatchOutcome::Applied => {
                applied += batch.len() as u64;
                from = last;
            }
            BatchOutcome::Moved(now) => {
                next.abort();
                from = now;
                next = prefetch(from);
            }
            BatchOutcome::Failed(error) => {
                next.abort();
                // Apply what precedes the failing event, so the projection stops exactly there.
                let failing = match error.index {
                    Some(i) => i,
                    None => find_failing(conn, projection, &tables, &batch).await?,
                };
                if failing > 0 {
                    let before = &batch[..failing];
                    apply_batch(conn, projection, &tables, from, before).await?;
                }
                let event = &batch[failing.min(batch.len() - 1)];
                let message = match error.index {
                    Some(_) => error.message,
                    None => single_error(conn, projection, &tables, event).await?,
                };
                let message = format!(
                    "{} {} #{} ({}) at {}: {message}",
                    event.aggregate_type,
                    event.aggregate_id,
                    event.sequence,
                    event.event_type,
                    event.position
                );
                record_failure(conn, projection, event, &message).await?;
                return Ok(CatchUp::Failed {
                    position: event.position,
                    error: message,
                });
            }
        }
    }
}

/// Finds the first event of `batch` that makes it fail: the shortest failing prefix, by binary
/// search over prefixes applied in rolled-back transactions.
async fn find_failing(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    tables: &Tables,
    batch: &[StoredEvent],
) -> Result<usize, sqlx::Error> {
    // Invariant: the prefix of length `ok` applies, the prefix of length `bad` fails.
    let (mut ok, mut bad) = (0usize, batch.len());
    while bad - ok > 1 {
        let mid = (ok + bad) / 2;
        let mut tx = conn.begin().await?;
        let result = projection.apply(&mut tx, tables, &batch[..mid]).await;
        tx.rollback().await?;
        if result.is_ok() {
            ok = mid;
        } else {
            bad = mid;
        }
    }
    Ok(bad - 1)
}

async fn single_error(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    tables: &Tables,
    event: &StoredEvent,
) -> Result<String, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let result = projection
        .apply(&mut tx, tables, std::slice::from_ref(event))
        .await;
    tx.rollback().await?;
    Ok(result.err().map_or_else(
        || "failed inside its batch but not alone".to_string(),
        |e| e.message,
    ))
}

/// Wake-ups for runners: appends in this process and NOTIFYs from others.
#[derive(Clone)]
pub struct Wakeups {
    local: watch::Receiver<u64>,
    remote: watch::Receiver<u64>,
}

impl Wakeups {
    /// Listens for NOTIFY on the events channel (reconnecting as needed) and combines it with
    /// this process's own appends.
    pub fn start(pool: &PgPool, local: watch::Receiver<u64>) -> Self {
        let (tx, remote) = watch::channel(0u64);
        let pool = pool.clone();
        tokio::spawn(async move {
            loop {
                match PgListener::connect_with(&pool).await {
                    Ok(mut listener) => {
                        if listener
                            .listen(commands::store::EVENTS_CHANNEL)
                            .await
                            .is_ok()
                        {
                            while listener.recv().await.is_ok() {
                                tx.send_modify(|n| *n += 1);
                            }
                        }
                    }
                    Err(error) => tracing::debug!(%error, "LISTEN unavailable; polling"),
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Self { local, remote }
    }

    /// No wake-ups but polling (tests, tools).
    pub fn polling_only() -> Self {
        let (_a, local) = watch::channel(0);
        let (_b, remote) = watch::channel(0);
        Self { local, remote }
    }

    /// Returns on the next wake-up, or after `timeout`.
    pub async fn wait(&mut self, timeout: Duration) {
        tokio::select! {
            _ = self.local.changed() => {}
            _ = self.remote.changed() => {}
            _ = tokio::time::sleep(timeout) => {}
        }
    }
}

/// Starts a runner task per projection. They run until the process ends.
pub fn spawn_all(
    pool: &PgPool,
    projections: Vec<Arc<dyn Projection>>,
    wakeups: Wakeups,
    config: RunnerConfig,
) -> Vec<JoinHandle<()>> {
    projections
        .into_iter()
        .map(|projection| {
            let pool = pool.clone();
            let wakeups = wakeups.clone();
            let config = config.clone();
            tokio::spawn(async move { run(pool, projection, wakeups, config).await })
        })
        .collect()
}

/// One projection's runner: take the lock, catch up, wait, repeat; back off while failed.
pub async fn run(
    pool: PgPool,
    projection: Arc<dyn Projection>,
    mut wakeups: Wakeups,
    config: RunnerConfig,
) {
    let name = projection.name();
    let mut retry = config.retry_interval;
    loop {
        let mut conn = match lock(&pool, name).await {
            Ok(Some(conn)) => conn,
            Ok(None) => {
                // Another process runs this projection; stand by.
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            Err(error) => {
                tracing::warn!(projection = name, %error, "cannot take the runner lock");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tracing::info!(projection = name, "runner started");
        if let Err(error) = upgrade_if_needed(&pool, &mut conn, projection.as_ref()).await {
            tracing::error!(projection = name, %error, "rebuild for new version failed");
        }
        loop {
            match catch_up(&pool, &mut conn, projection.as_ref(), &config).await {
                Ok(CatchUp::CaughtUp { applied }) => {
                    if applied > 0 {
                        tracing::debug!(projection = name, applied, "caught up");
                    }
                    retry = config.retry_interval;
                    if held_back(&pool, name).await {
                        // Committed events wait behind an older transaction still running
                        // somewhere in the cluster: no further wake-up will announce them,
                        // so look again shortly instead of waiting for the poll.
                        tokio::time::sleep(HELD_BACK_RECHECK).await;
                    } else {
                        wakeups.wait(config.poll_interval).await;
                    }
                }
                Ok(CatchUp::Failed { position, error }) => {
                    tracing::error!(projection = name, %position, %error, "projection stopped at a failing event; retrying in {retry:?}");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(config.max_retry_interval);
                }
                Err(error) => {
                    tracing::warn!(projection = name, %error, "runner lost its connection; restarting");
                    // The lock lives in this connection's session: close it rather than give
                    // it back to the pool, or the pool would keep the lock held where no
                    // runner uses it (and this runner, or another process's, could never
                    // take it again).
                    if let Err(error) = conn.close().await {
                        tracing::debug!(projection = name, %error, "closing the runner's connection");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

/// How soon a runner looks again at events held back by an older running transaction.
const HELD_BACK_RECHECK: Duration = Duration::from_millis(25);

/// True when committed events lie after the projection's checkpoint but the guarded reader
/// could not return them yet (an older transaction elsewhere is still running).
async fn held_back(pool: &PgPool, name: &str) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (
            SELECT 1 FROM events e, projection_checkpoints c
             WHERE c.name = $1 AND (e.tx_id, e.global_position) > (c.tx_id, c.position))",
    )
    .bind(name)
    .fetch_one(pool)
    .await
    .unwrap_or(false)
}

/// Takes the projection's session advisory lock on a dedicated connection; `None` when another
/// process holds it.
pub async fn lock(
    pool: &PgPool,
    name: &str,
) -> Result<Option<PoolConnection<Postgres>>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(lock_key(name))
        .fetch_one(&mut *conn)
        .await?;
    if locked {
        Ok(Some(conn))
    } else {
        Ok(None)
    }
}

/// A projection whose stored version differs from the code's is rebuilt before it runs.
async fn upgrade_if_needed(
    pool: &PgPool,
    conn: &mut PgConnection,
    projection: &dyn Projection,
) -> Result<(), sqlx::Error> {
    let (_, stored) = ensure_checkpoint(conn, projection).await?;
    if stored != projection.version() {
        tracing::info!(
            projection = projection.name(),
            from = stored,
            to = projection.version(),
            "projection version changed: rebuilding"
        );
        crate::rebuild::rebuild(
            pool,
            projection,
            &crate::rebuild::RebuildOptions::default(),
            |_, _| {},
        )
        .await
        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    }
    Ok(())
}
