//! `verify`: every stored event decodes, every aggregate's sequences are contiguous, every
//! projection equals a fresh rebuild.

use std::time::Instant;

use anyhow::Context;
use cqrs_es::persist::SerializedEvent;
use sqlx::{PgConnection, PgPool, Row};

/// Events read per batch.
pub const BATCH: i64 = 10_000;
/// Problems listed per check (all are counted).
const SHOWN: usize = 20;

/// What one check found: how many problems, and the first few described.
#[derive(Debug, Default)]
pub struct Findings {
    pub count: u64,
    pub shown: Vec<String>,
}

impl Findings {
    fn add(&mut self, problem: impl FnOnce() -> String) {
        self.count += 1;
        if self.shown.len() < SHOWN {
            self.shown.push(problem());
        }
    }

    fn print(&self) -> std::io::Result<()> {
        for problem in &self.shown {
            out!("    {problem}");
        }
        if self.count > self.shown.len() as u64 {
            out!("    ... and {} more", self.count - self.shown.len() as u64);
        }
        Ok(())
    }
}

/// Checks one event: known aggregate type, metadata is an `EventMeta`, payload decodes after
/// upcasting. Returns what is wrong.
pub fn check_event(event: SerializedEvent) -> Result<(), String> {
    let Some(kind) = commands::registry::find(&event.aggregate_type) else {
        return Err(format!(
            "{} {} #{}: unknown aggregate type {:?} (known: {})",
            event.aggregate_type,
            event.aggregate_id,
            event.sequence,
            event.aggregate_type,
            crate::common::known_aggregate_types()
        ));
    };
    commands::store::read_meta(&event)?;
    (kind.check)(event)
}

/// Check 1: streams the whole log in batches (keyset on the `(tx_id, global_position)` index)
/// and checks every event. The ORDER BY names `events.` columns: a bare `tx_id` would mean the
/// output column `tx_id::text::int8`, which no index serves (a sort of the rest of the table
/// per batch). Returns the findings and the number of events read.
async fn check_events(conn: &mut PgConnection) -> anyhow::Result<(Findings, u64)> {
    let mut findings = Findings::default();
    let mut after = (0i64, 0i64);
    let mut read = 0u64;
    loop {
        let rows = sqlx::query(
            "SELECT tx_id::text::int8, global_position, aggregate_type, aggregate_id, sequence,
                    event_type, event_version, payload, metadata
               FROM events
              WHERE (tx_id, global_position) > ($1::int8::text::xid8, $2)
              ORDER BY events.tx_id, events.global_position
              LIMIT $3",
        )
        .bind(after.0)
        .bind(after.1)
        .bind(BATCH)
        .fetch_all(&mut *conn)
        .await
        .context("reading the events")?;
        let Some(last) = rows.last() else { break };
        after = (last.try_get(0)?, last.try_get(1)?);
        read += rows.len() as u64;
        for row in &rows {
            let position: i64 = row.try_get(1)?;
            let event = SerializedEvent::new(
                row.try_get(3)?,
                row.try_get::<i64, _>(4)? as usize,
                row.try_get(2)?,
                row.try_get(5)?,
                row.try_get(6)?,
                row.try_get(7)?,
                row.try_get(8)?,
            );
            // Every problem names the event (type, id, sequence) itself.
            if let Err(problem) = check_event(event) {
                findings.add(|| format!("position {position}: {problem}"));
            }
        }
    }
    Ok((findings, read))
}

/// Check 2: every aggregate's sequences are 1..n, in one query. Returns the findings and the
/// number of aggregates.
async fn check_sequences(conn: &mut PgConnection) -> anyhow::Result<(Findings, i64)> {
    let rows = sqlx::query(
        "WITH steps AS (
             SELECT aggregate_type, aggregate_id, sequence,
                    sequence - lag(sequence, 1, 0::bigint)
                        OVER (PARTITION BY aggregate_type, aggregate_id ORDER BY sequence) AS step
               FROM events),
         per_aggregate AS (
             SELECT aggregate_type, aggregate_id, count(*) AS events, max(sequence) AS last,
                    min(sequence - step + 1) FILTER (WHERE step <> 1) AS first_missing
               FROM steps
              GROUP BY aggregate_type, aggregate_id),
         offenders AS (
             SELECT *, count(*) OVER () AS offenders,
                    (SELECT count(*) FROM per_aggregate) AS aggregates
               FROM per_aggregate WHERE first_missing IS NOT NULL)
         SELECT aggregate_type, aggregate_id, events, last, first_missing, offenders, aggregates
           FROM offenders
          UNION ALL
         SELECT NULL, NULL, NULL, NULL, NULL, 0, count(*) FROM per_aggregate
          ORDER BY 6 DESC, 1, 2
          LIMIT $1",
    )
    .bind(SHOWN as i64)
    .fetch_all(&mut *conn)
    .await
    .context("checking sequences")?;
    let mut findings = Findings::default();
    let mut aggregates = 0;
    for row in &rows {
        aggregates = row.try_get(6)?;
        let Some(aggregate_type) = row.try_get::<Option<String>, _>(0)? else {
            continue;
        };
        findings.count = row.try_get::<i64, _>(5)? as u64;
        let aggregate_id: String = row.try_get(1)?;
        let events: i64 = row.try_get(2)?;
        let last: i64 = row.try_get(3)?;
        let first_missing: i64 = row.try_get(4)?;
        findings.shown.push(format!(
            "{aggregate_type} {aggregate_id}: {events} events, last #{last}, #{first_missing} missing"
        ));
    }
    Ok((findings, aggregates))
}

pub async fn verify(pool: &PgPool) -> anyhow::Result<u8> {
    let mut ok = true;

    // Checks 1 and 2 read one consistent snapshot (read-only: it holds back no runner).
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let started = Instant::now();
    let (events, read) = check_events(&mut tx).await?;
    out!(
        "events: {read} read in {:.1} s, {} do not decode",
        started.elapsed().as_secs_f64(),
        events.count
    );
    events.print()?;
    ok &= events.count == 0;

    let started = Instant::now();
    let (sequences, aggregates) = check_sequences(&mut tx).await?;
    tx.commit().await?;
    out!(
        "sequences: {aggregates} aggregates checked in {:.1} s, {} not contiguous from #1",
        started.elapsed().as_secs_f64(),
        sequences.count
    );
    sequences.print()?;
    ok &= sequences.count == 0;

    // Check 3: every projection against a fresh rebuild up to its checkpoint.
    let statuses = projections::status::all(pool).await?;
    for projection in projections::all() {
        let started = Instant::now();
        let status = statuses.iter().find(|s| s.name == projection.name());
        match projections::rebuild::verify(pool, projection.as_ref()).await {
            Ok(report) => {
                out!(
                    "projection {}: {} at checkpoint {} ({} events{}): {} live rows, {} rebuilt, {:.1} s",
                    report.projection,
                    if report.matches() { "matches a rebuild" } else { "DIFFERS from a rebuild" },
                    report.checkpoint,
                    report.events,
                    status
                        .filter(|s| s.lag > 0)
                        .map(|s| format!("; {} more in the log not applied yet", s.lag))
                        .unwrap_or_default(),
                    report.live_rows,
                    report.rebuilt_rows,
                    started.elapsed().as_secs_f64()
                );
                for difference in &report.differences {
                    out!("    {difference}");
                }
                ok &= report.matches();
            }
            Err(error) => {
                out!(
                    "projection {}: cannot rebuild for comparison: {error}",
                    projection.name()
                );
                ok = false;
            }
        }
        if let Some(status) = status.filter(|s| !s.healthy()) {
            out!(
                "    projection {} is {} at position {}: {}",
                status.name,
                status.status,
                status.failed_position.unwrap_or_default(),
                status.last_error.as_deref().unwrap_or("?")
            );
            ok = false;
        }
        if let Some(status) = status.filter(|s| s.stored_version.is_some_and(|v| v != s.version)) {
            out!(
                "    note: projection {} was built by version {} and this build has version {} \
                 (its runner rebuilds it on start)",
                status.name,
                status.stored_version.unwrap_or_default(),
                status.version
            );
        }
    }

    if ok {
        out!("verify: OK");
        Ok(0)
    } else {
        out!("verify: PROBLEMS FOUND");
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(
        aggregate_type: &str,
        payload: serde_json::Value,
        metadata: serde_json::Value,
    ) -> SerializedEvent {
        SerializedEvent::new(
            "a".into(),
            1,
            aggregate_type.into(),
            "CompanyRegistered".into(),
            "1".into(),
            payload,
            metadata,
        )
    }

    fn meta() -> serde_json::Value {
        serde_json::to_value(commands::EventMeta::new(
            commands::DEFAULT_TENANT_ID,
            "test",
        ))
        .unwrap()
    }

    #[test]
    fn checks_type_metadata_and_payload() {
        let good = json!({"CompanyRegistered": {"name": "Acme", "monthly_rate": "500.00"}});
        assert_eq!(check_event(event("company", good.clone(), meta())), Ok(()));
        let unknown = check_event(event("spaceship", good.clone(), meta())).unwrap_err();
        assert!(unknown.contains("unknown aggregate type"), "{unknown}");
        let bad_meta = check_event(event("company", good, json!({"actor": "x"}))).unwrap_err();
        assert!(bad_meta.contains("metadata"), "{bad_meta}");
        let bad_payload = check_event(event("company", json!({"Nope": {}}), meta())).unwrap_err();
        assert!(bad_payload.contains("company a #1"), "{bad_payload}");
    }
}
