//! `export` and `import`: the whole log as JSON Lines.
//!
//! One object per line, in log order `(tx_id, global_position)`:
//! `{"aggregate_type","aggregate_id","sequence","event_type","event_version","payload",
//! "metadata","recorded_at"}` with `recorded_at` in RFC 3339 (UTC, microseconds). Payload and
//! metadata are copied verbatim (as stored, not upcast), so an import stores the same events.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use cqrs_es::persist::SerializedEvent;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sqlx::types::Json;
use sqlx::{Acquire, PgConnection, PgPool, Row};

use crate::common::{rfc3339, Usage};

/// Events read per export batch.
const EXPORT_BATCH: i64 = 10_000;
/// Rows per INSERT statement of an import.
pub const IMPORT_BATCH: usize = 5_000;
/// Invalid lines described before an import gives up listing them.
const SHOWN_ERRORS: usize = 10;

#[derive(Serialize)]
struct ExportLine<'a> {
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    sequence: i64,
    event_type: &'a str,
    event_version: &'a str,
    payload: &'a RawValue,
    metadata: &'a RawValue,
    recorded_at: String,
}

/// Writes the whole log to `out`, one event per line; returns the number of events. Reads one
/// consistent snapshot, in batches (keyset on the `(tx_id, global_position)` index).
/// (`events.tx_id` in ORDER BY: the bare name would be the `int8` output column, unindexed.)
pub async fn export_to(conn: &mut PgConnection, out: &mut dyn Write) -> anyhow::Result<u64> {
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let mut after = (0i64, 0i64);
    let mut count = 0u64;
    loop {
        let rows = sqlx::query(
            "SELECT tx_id::text::int8, global_position, aggregate_type, aggregate_id, sequence,
                    event_type, event_version, payload, metadata, recorded_at
               FROM events
              WHERE (tx_id, global_position) > ($1::int8::text::xid8, $2)
              ORDER BY events.tx_id, events.global_position
              LIMIT $3",
        )
        .bind(after.0)
        .bind(after.1)
        .bind(EXPORT_BATCH)
        .fetch_all(&mut *tx)
        .await
        .context("reading the events")?;
        let Some(last) = rows.last() else { break };
        after = (last.try_get(0)?, last.try_get(1)?);
        for row in &rows {
            let payload: Json<Box<RawValue>> = row.try_get(7)?;
            let metadata: Json<Box<RawValue>> = row.try_get(8)?;
            let line = ExportLine {
                aggregate_type: row.try_get(2)?,
                aggregate_id: row.try_get(3)?,
                sequence: row.try_get(4)?,
                event_type: row.try_get(5)?,
                event_version: row.try_get(6)?,
                payload: &payload.0,
                metadata: &metadata.0,
                recorded_at: rfc3339(&row.try_get::<DateTime<Utc>, _>(9)?),
            };
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
        }
        count += rows.len() as u64;
    }
    tx.commit().await?;
    out.flush()?;
    Ok(count)
}

pub async fn export(pool: &PgPool, file: &Path) -> anyhow::Result<u8> {
    let started = Instant::now();
    let mut conn = pool.acquire().await?;
    if file.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
        let count = export_to(&mut conn, &mut out).await?;
        eprintln!(
            "exported {count} events to stdout in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        return Ok(0);
    }
    // Write next to the target and rename at the end: a failed export leaves no partial file.
    let partial = PathBuf::from(format!("{}.partial", file.display()));
    let created = File::create(&partial)
        .map_err(|e| Usage::new(format!("cannot create {}: {e}", partial.display())))?;
    let mut out = BufWriter::with_capacity(1 << 20, created);
    let result = export_to(&mut conn, &mut out).await;
    drop(out);
    let count = match result {
        Ok(count) => count,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
    };
    std::fs::rename(&partial, file)
        .with_context(|| format!("renaming {} to {}", partial.display(), file.display()))?;
    out!(
        "exported {count} events to {} in {:.1} s",
        file.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

/// One line of an export, as read back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Box<RawValue>,
    metadata: Box<RawValue>,
    recorded_at: String,
}

/// Columns of the rows waiting for the next INSERT.
#[derive(Default)]
struct Batch {
    aggregate_type: Vec<String>,
    aggregate_id: Vec<String>,
    sequence: Vec<i64>,
    event_type: Vec<String>,
    event_version: Vec<String>,
    payload: Vec<String>,
    metadata: Vec<String>,
    recorded_at: Vec<DateTime<Utc>>,
}

impl Batch {
    fn len(&self) -> usize {
        self.sequence.len()
    }

    fn push(&mut self, line: ImportLine, recorded_at: DateTime<Utc>) {
        self.aggregate_type.push(line.aggregate_type);
        self.aggregate_id.push(line.aggregate_id);
        self.sequence.push(line.sequence);
        self.event_type.push(line.event_type);
        self.event_version.push(line.event_version);
        self.payload
            .push(String::from(Box::<str>::from(line.payload)));
        self.metadata
            .push(String::from(Box::<str>::from(line.metadata)));
        self.recorded_at.push(recorded_at);
    }

    /// Inserts the rows in order (their `global_position`s follow the file) and empties.
    async fn insert(&mut self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.len() == 0 {
            return Ok(());
        }
        let batch = std::mem::take(self);
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                 payload, metadata, recorded_at)
             SELECT t, i, s, et, ev, p::jsonb, m::jsonb, r
               FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[],
                           $6::text[], $7::text[], $8::timestamptz[])
                    WITH ORDINALITY AS u(t, i, s, et, ev, p, m, r, n)
              ORDER BY n",
        )
        .bind(batch.aggregate_type)
        .bind(batch.aggregate_id)
        .bind(batch.sequence)
        .bind(batch.event_type)
        .bind(batch.event_version)
        .bind(batch.payload)
        .bind(batch.metadata)
        .bind(batch.recorded_at)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// serde_json's message without its " at line 1 column N" (every line is line 1 to it).
fn json_error(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let message = match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message,
    };
    format!("column {}: {message}", error.column())
}

/// Validates one line. `last_sequence` tracks each aggregate's last sequence so far.
fn validate(
    text: &str,
    last_sequence: &mut HashMap<(String, String), i64>,
) -> Result<(ImportLine, DateTime<Utc>), String> {
    let line: ImportLine = serde_json::from_str(text).map_err(|e| json_error(&e))?;
    let recorded_at = DateTime::parse_from_rfc3339(&line.recorded_at)
        .map_err(|e| format!("recorded_at {:?} is not RFC 3339: {e}", line.recorded_at))?
        .with_timezone(&Utc);
    if line.event_type.is_empty() || line.event_version.is_empty() {
        return Err("event_type and event_version must not be empty".to_string());
    }
    let key = (line.aggregate_type.clone(), line.aggregate_id.clone());
    let expected = last_sequence.get(&key).map_or(1, |s| s + 1);
    if line.sequence != expected {
        // Judge this aggregate's next lines against this one: one gap, one error.
        last_sequence.insert(key, line.sequence);
        return Err(format!(
            "{} {}: sequence {} where {expected} was expected (each aggregate's events must \
             come in order, from 1, without gaps)",
            line.aggregate_type, line.aggregate_id, line.sequence
        ));
    }
    let payload: serde_json::Value =
        serde_json::from_str(line.payload.get()).map_err(|e| format!("payload: {e}"))?;
    let metadata: serde_json::Value =
        serde_json::from_str(line.metadata.get()).map_err(|e| format!("metadata: {e}"))?;
    crate::verify::check_event(SerializedEvent::new(
        line.aggregate_id.clone(),
        line.sequence as usize,
        line.aggregate_type.clone(),
        line.event_type.clone(),
        line.event_version.clone(),
        payload,
        metadata,
    ))?;
    last_sequence.insert(key, line.sequence);
    Ok((line, recorded_at))
}

/// What an import did.
pub struct Imported {
    pub events: u64,
    pub aggregates: usize,
}

/// Validates every line of `input` and inserts them all in one transaction, or nothing.
pub async fn import_from(
    conn: &mut PgConnection,
    input: &mut dyn BufRead,
) -> anyhow::Result<Imported> {
    let mut tx = conn.begin().await?;
    let result = import_in_tx(&mut tx, input).await;
    match result {
        Ok(imported) => {
            tx.commit().await.context("committing the import")?;
            Ok(imported)
        }
        Err(error) => {
            tx.rollback().await?;
            Err(error)
        }
    }
}

async fn import_in_tx(
    conn: &mut PgConnection,
    input: &mut dyn BufRead,
) -> anyhow::Result<Imported> {
    // Keep writers out until the import commits; readers may go on.
    sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
        .execute(&mut *conn)
        .await?;
    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut *conn)
        .await?;
    if existing > 0 {
        return Err(Usage::new(format!(
            "the event store already holds {existing} events; import needs an empty events table"
        ))
        .into());
    }
    let mut last_sequence: HashMap<(String, String), i64> = HashMap::new();
    let mut batch = Batch::default();
    let mut errors: Vec<String> = Vec::new();
    let mut invalid = 0u64;
    let mut events = 0u64;
    let mut text = String::new();
    let mut number = 0u64;
    loop {
        text.clear();
        number += 1;
        let read = match input.read_line(&mut text) {
            Ok(read) => read,
            Err(e) => {
                return Err(Usage::new(format!(
                    "line {number}: cannot read: {e}; nothing imported"
                ))
                .into())
            }
        };
        if read == 0 {
            break;
        }
        let trimmed = text.trim();
        if trimmed.is_empty() {
            continue;
        }
        match validate(trimmed, &mut last_sequence) {
            Ok((line, recorded_at)) if invalid == 0 => {
                batch.push(line, recorded_at);
                events += 1;
                if batch.len() >= IMPORT_BATCH {
                    batch.insert(conn).await.context("inserting events")?;
                }
            }
            Ok(_) => {}
            Err(error) => {
                invalid += 1;
                if errors.len() < SHOWN_ERRORS {
                    errors.push(format!("line {number}: {error}"));
                }
            }
        }
    }
    if invalid > 0 {
        if invalid == 1 {
            return Err(Usage::new(format!("{}; nothing imported", errors[0])).into());
        }
        for error in &errors {
            eprintln!("replay-tools: {error}");
        }
        return Err(Usage::new(format!(
            "{invalid} invalid lines{}; nothing imported",
            if invalid > errors.len() as u64 {
                " (the first ones above)"
            } else {
                " (above)"
            }
        ))
        .into());
    }
    batch.insert(conn).await.context("inserting events")?;
    Ok(Imported {
        events,
        aggregates: last_sequence.len(),
    })
}

pub async fn import(pool: &PgPool, file: &Path, rebuild: bool) -> anyhow::Result<u8> {
    let started = Instant::now();
    let mut input: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(BufReader::with_capacity(1 << 20, std::io::stdin()))
    } else {
        let opened = File::open(file)
            .map_err(|e| Usage::new(format!("cannot read {}: {e}", file.display())))?;
        Box::new(BufReader::with_capacity(1 << 20, opened))
    };
    let mut conn = pool.acquire().await?;
    let imported = import_from(&mut conn, &mut input).await?;
    drop(conn);
    out!(
        "imported {} events of {} aggregates in {:.1} s",
        imported.events,
        imported.aggregates,
        started.elapsed().as_secs_f64()
    );
    if rebuild {
        crate::projections_cmd::rebuild_all(pool, &projections::all(), true).await?;
    } else {
        out!("the read models do not show them yet: run `replay-tools rebuild --all` (or import with --rebuild)");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sequence: i64, payload: &str) -> String {
        let meta =
            serde_json::to_string(&commands::EventMeta::new(commands::DEFAULT_TENANT_ID, "t"))
                .unwrap();
        format!(
            r#"{{"aggregate_type":"company","aggregate_id":"c1","sequence":{sequence},"event_type":"CompanyRegistered","event_version":"1","payload":{payload},"metadata":{meta},"recorded_at":"2025-01-02T03:04:05.123456Z"}}"#
        )
    }

    const REGISTERED: &str = r#"{"CompanyRegistered":{"name":"Acme","monthly_rate":"500.00"}}"#;

    #[test]
    fn a_valid_line_passes_and_keeps_payload_verbatim() {
        let mut seen = HashMap::new();
        let (parsed, at) = validate(&line(1, REGISTERED), &mut seen).unwrap();
        assert_eq!(parsed.payload.get(), REGISTERED);
        assert_eq!(rfc3339(&at), "2025-01-02T03:04:05.123456Z");
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn sequences_must_be_contiguous_per_aggregate() {
        let mut seen = HashMap::new();
        let error = validate(&line(2, REGISTERED), &mut seen).err().unwrap();
        assert!(error.contains("sequence 2 where 1 was expected"), "{error}");
        let mut seen = HashMap::new();
        validate(&line(1, REGISTERED), &mut seen).unwrap();
        let error = validate(&line(1, REGISTERED), &mut seen).err().unwrap();
        assert!(error.contains("sequence 1 where 2 was expected"), "{error}");
        // A gap is reported once; the aggregate's next lines are judged after it.
        let mut seen = HashMap::new();
        validate(&line(1, REGISTERED), &mut seen).unwrap();
        assert!(validate(&line(3, REGISTERED), &mut seen).is_err());
        let error = validate(&line(3, REGISTERED), &mut seen).err().unwrap();
        assert!(error.contains("sequence 3 where 4 was expected"), "{error}");
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let mut seen = HashMap::new();
        let error = validate(r#"{"aggregate_type":"company"}"#, &mut seen)
            .err()
            .unwrap();
        assert!(error.contains("missing field"), "{error}");
        assert!(!error.contains("at line"), "{error}");
        let error = validate(&line(1, r#"{"Nope":{}}"#), &mut seen)
            .err()
            .unwrap();
        assert!(error.contains("company c1 #1"), "{error}");
        let bad_time = line(1, REGISTERED).replace("2025-01-02T03:04:05.123456Z", "yesterday");
        let error = validate(&bad_time, &mut seen).err().unwrap();
        assert!(error.contains("recorded_at"), "{error}");
        let extra =
            line(1, REGISTERED).replace("{\"aggregate_type\"", "{\"x\":1,\"aggregate_type\"");
        let error = validate(&extra, &mut seen).err().unwrap();
        assert!(error.contains("unknown field"), "{error}");
        assert!(seen.is_empty());
    }
}
