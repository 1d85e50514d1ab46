//! Read-your-writes: after a command, the web layer waits (bounded) until the projections it
//! is about to read have applied the command's last event.

use std::time::{Duration, Instant};

use sqlx::PgPool;

/// Waits until every projection in `projections` has passed event `sequence` of the given
/// aggregate. Returns false when `timeout` ran out first (the caller then shows what it has).
pub async fn wait_for_event(
    pool: &PgPool,
    projections: &[&str],
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: usize,
    timeout: Duration,
) -> Result<bool, sqlx::Error> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        let passed: Option<bool> = sqlx::query_scalar(
            "SELECT bool_and((c.tx_id, c.position) >= (e.tx_id, e.global_position))
                    AND count(*) = cardinality($1::text[])
               FROM projection_checkpoints c, events e
              WHERE c.name = ANY($1)
                AND e.aggregate_type = $2 AND e.aggregate_id = $3 AND e.sequence = $4",
        )
        .bind(projections)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(sequence as i64)
        .fetch_one(pool)
        .await?;
        if passed == Some(true) {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
