//! `status` and `rebuild`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use projections::rebuild::RebuildOptions;
use projections::status::{ProjectionStatus, LAG_COUNT_CAP};
use projections::Projection;
use sqlx::PgPool;

use crate::common::Usage;

pub async fn status(pool: &PgPool, json: bool) -> anyhow::Result<u8> {
    let statuses = projections::status::all(pool)
        .await
        .context("reading projection status")?;
    if json {
        out!("{}", serde_json::to_string_pretty(&statuses)?);
    } else {
        out!("{}", status_table(&statuses).trim_end());
    }
    Ok(0)
}

fn status_table(statuses: &[ProjectionStatus]) -> String {
    let header = [
        "PROJECTION",
        "VERSION",
        "STORED",
        "CHECKPOINT",
        "APPLIED",
        "LAG",
        "STATUS",
        "LAST ERROR",
    ];
    let rows: Vec<[String; 8]> = statuses
        .iter()
        .map(|s| {
            let stored = match s.stored_version {
                Some(v) if v != s.version => format!("{v} (rebuild due)"),
                Some(v) => v.to_string(),
                None => "-".to_string(),
            };
            let lag = if s.lag >= LAG_COUNT_CAP {
                format!(">={}", s.lag)
            } else {
                s.lag.to_string()
            };
            let error = match (&s.last_error, s.failed_position) {
                (Some(e), Some(p)) => format!("at position {p}: {e}"),
                (Some(e), None) => e.clone(),
                (None, _) => "-".to_string(),
            };
            [
                s.name.clone(),
                s.version.to_string(),
                stored,
                s.checkpoint.to_string(),
                s.events_applied.to_string(),
                lag,
                s.status.clone(),
                error,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(&header);
    for row in &rows {
        out.push_str(&line(&row.each_ref().map(String::as_str)));
    }
    out
}

/// The projections to rebuild: one by name, or every one.
pub fn select(name: Option<&str>, all: bool) -> Result<Vec<Arc<dyn Projection>>, Usage> {
    if all {
        return Ok(projections::all());
    }
    let name = name.unwrap_or_default();
    projections::find(name).map(|p| vec![p]).ok_or_else(|| {
        Usage::new(format!(
            "unknown projection {name:?} (known: {})",
            known_projections()
        ))
    })
}

pub fn known_projections() -> String {
    projections::all()
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn rebuild(pool: &PgPool, name: Option<&str>, all: bool) -> anyhow::Result<u8> {
    let selected = select(name, all)?;
    rebuild_all(pool, &selected, true).await?;
    Ok(0)
}

/// Rebuilds `selected` in one pass over the log (each batch read once and applied to every
/// projection at the same time), with a progress bar when `show_progress`, and prints a
/// summary line per projection (and a total for several).
pub async fn rebuild_all(
    pool: &PgPool,
    selected: &[Arc<dyn Projection>],
    show_progress: bool,
) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let names = selected
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ");
    let bar = if show_progress {
        progress_bar(&names)
    } else {
        ProgressBar::hidden()
    };
    let on_progress = {
        let bar = bar.clone();
        move |done: u64, total: u64| {
            bar.set_length(total);
            bar.set_position(done);
        }
    };
    let reports =
        projections::rebuild::rebuild_all(pool, selected, &RebuildOptions::default(), on_progress)
            .await
            .with_context(|| format!("rebuilding {names}"));
    bar.finish_and_clear();
    let reports = reports?;
    let mut events = 0;
    for (name, report) in &reports {
        let seconds = report.elapsed.as_secs_f64();
        out!(
            "{name}: rebuilt from {} events in {:.2} s ({:.0} events/s), checkpoint {}",
            report.events,
            seconds,
            report.events as f64 / seconds.max(1e-9),
            report.position
        );
        events = events.max(report.events);
    }
    let elapsed = started.elapsed();
    if selected.len() > 1 {
        out!(
            "all {} projections: {} events in {:.2} s ({:.0} events/s)",
            selected.len(),
            events,
            elapsed.as_secs_f64(),
            events as f64 / elapsed.as_secs_f64().max(1e-9)
        );
    }
    Ok((events, elapsed))
}

fn progress_bar(name: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} events ({rate}, eta {eta})",
        )
        .expect("valid template")
        .with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0} events/s", state.per_sec());
        }),
    );
    bar.set_prefix(name.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_projection_lists_the_known_ones() {
        let error = select(Some("nope"), false).err().unwrap();
        assert!(error.0.contains("\"nope\""), "{error}");
        assert!(error.0.contains("companies"), "{error}");
        assert_eq!(select(Some("companies"), false).unwrap().len(), 1);
        assert_eq!(select(None, true).unwrap().len(), projections::all().len());
    }

    #[test]
    fn the_table_aligns_columns() {
        let status = ProjectionStatus {
            name: "companies".into(),
            version: 1,
            stored_version: Some(1),
            checkpoint: projections::Position::START,
            events_applied: 12,
            lag: 0,
            status: "running".into(),
            failed_position: None,
            last_error: None,
            updated_at: None,
        };
        let table = status_table(&[status]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].find("STATUS"), lines[1].find("running"));
    }
}
