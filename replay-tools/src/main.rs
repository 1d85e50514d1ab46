//! `replay-tools`: the admin and auditor CLI of SupportTracker.
//!
//! Projection status, rebuild and verification, an aggregate's history and its state "as of"
//! a moment, export and import of the whole log as JSON Lines, and a benchmark of the write
//! and read paths.
//!
//! The database is `DATABASE_URL` when set, else the private PostgreSQL cluster under
//! `--data-dir` (started or attached through `pgboot`). Migrations run on start.
//!
//! Exit codes: 0 ok; 1 when `verify` finds problems (or the database fails); 2 for usage and
//! input errors (unknown projection or aggregate type, bad timestamp, missing file, ...), with
//! a one-line message on stderr; 130 when interrupted (Ctrl-C); 141 when stdout was closed
//! early (`| head`).
//!
//! Logs go to stderr, filtered by `ST_LOG` (default `warn`).

/// `println!` that fails (with an `io::Error` the caller propagates) instead of panicking when
/// stdout is gone, as in `replay-tools history ... | head`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod bench;
mod bench_billing;
mod bench_search;
mod common;
mod history;
mod ledger_export;
mod projections_cmd;
mod transfer;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, FixedOffset};
use clap::{Parser, Subcommand};

use crate::common::Usage;

/// Admin and auditor tools for SupportTracker's event log and projections.
#[derive(Debug, Parser)]
#[command(name = "replay-tools", version, about)]
pub struct Cli {
    /// Data directory of the private PostgreSQL cluster (ignored when DATABASE_URL is set).
    #[arg(long, global = true, env = "ST_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Where every projection is: versions, checkpoint, events applied, lag, status, last error.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild a projection (or all of them) from the whole log into shadow tables and swap
    /// them in. Safe to interrupt: the next rebuild drops leftover shadows.
    #[command(
        group(clap::ArgGroup::new("which").required(true).args(["projection", "all"])),
        override_usage = "replay-tools rebuild <PROJECTION>\n       replay-tools rebuild --all"
    )]
    Rebuild {
        /// The projection to rebuild (see `status`).
        projection: Option<String>,
        /// Rebuild every projection.
        #[arg(long)]
        all: bool,
    },
    /// Every event of one aggregate, in sequence order, with upcasters applied.
    History {
        /// Aggregate type, e.g. `company`.
        aggregate_type: String,
        /// Aggregate id.
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The state of one aggregate as of a moment: a fold of its events recorded up to then.
    Replay {
        /// The moment, RFC 3339 (e.g. 2025-03-01T12:00:00Z).
        #[arg(long, value_parser = parse_rfc3339)]
        as_of: DateTime<FixedOffset>,
        /// Aggregate type, e.g. `company`.
        aggregate_type: String,
        /// Aggregate id.
        id: String,
    },
    /// Check the log and the projections: every event decodes, sequences are contiguous,
    /// every projection equals a fresh rebuild. Exit 1 when anything is wrong.
    Verify,
    /// Write the whole log as JSON Lines, in log order (`-`: stdout).
    Export {
        /// Output file, or `-` for stdout.
        file: PathBuf,
    },
    /// Write a tenant's receivables as a plain-text accounting journal (`-`: stdout): one
    /// account per customer, whose balance is its total in the AR aging report.
    ExportLedger {
        /// Journal syntax.
        #[arg(long, value_enum, default_value_t = ledger_export::Format::Hledger)]
        format: ledger_export::Format,
        /// The tenant's id (default: the only tenant).
        #[arg(long)]
        tenant: Option<uuid::Uuid>,
        /// Only facts dated up to this date, YYYY-MM-DD (default: every fact).
        #[arg(long, value_parser = ledger_export::parse_date)]
        as_of: Option<chrono::NaiveDate>,
        /// Output file, or `-` for stdout.
        file: PathBuf,
    },
    /// Load a JSON Lines export into an empty event store, in one transaction.
    Import {
        /// Input file, or `-` for stdin.
        file: PathBuf,
        /// Rebuild every projection after the import.
        #[arg(long)]
        rebuild: bool,
    },
    /// Measure the command path, raw inserts, reads, catch-up and rebuild in a scratch database.
    Bench {
        /// Size of the event log for the read, catch-up and rebuild measurements.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Seconds each append / raw-insert run lasts (each is run twice, the best is kept).
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Also measure the command path's parts: raw load+insert, append without NOTIFY.
        #[arg(long)]
        breakdown: bool,
        /// What the seeded log is made of: `companies` (company events only) or
        /// `work-orders` (about half work-order events, half company events; also measures
        /// the work_orders projection alone).
        #[arg(long, value_enum, default_value_t = bench::Mix::Companies)]
        mix: bench::Mix,
        /// Keep the scratch database (for EXPLAIN by hand) instead of dropping it.
        #[arg(long)]
        keep: bool,
    },
    /// Measure the search box in a scratch database: seed many assets, rebuild `search`, time
    /// realistic queries against raw ceilings (target: under 50 ms each).
    BenchSearch {
        /// Assets of the tenant under test (a second tenant gets a fifth as many).
        #[arg(long, default_value_t = 100_000)]
        assets: u64,
        /// Companies the assets are spread over (2 contacts each).
        #[arg(long, default_value_t = 2_000)]
        companies: u64,
        /// Timed runs of each query (after a warm-up).
        #[arg(long, default_value_t = 50)]
        runs: usize,
        /// Keep the scratch database (for EXPLAIN by hand) instead of dropping it.
        #[arg(long)]
        keep: bool,
    },
}

fn parse_rfc3339(s: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map_err(|e| format!("{e}; expected an RFC 3339 timestamp such as 2025-03-01T12:00:00Z"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let broken_pipe = error.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                // The reader went away (`| head`): nothing to say, like other Unix tools.
                ExitCode::from(141)
            } else if let Some(usage) = error.downcast_ref::<Usage>() {
                eprintln!("replay-tools: {usage}");
                ExitCode::from(2)
            } else {
                eprintln!("replay-tools: {error:#}");
                ExitCode::from(1)
            }
        }
    }
}

/// Logs to stderr, filtered by `ST_LOG` (default `warn`; sqlx's slow-statement warnings, which
/// rebuilds and bulk work trigger by design, only when `ST_LOG` asks for them).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,sqlx::query=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    // Input errors that need no database come first.
    match &cli.command {
        Command::Import { file, .. } if file.as_os_str() != "-" && !file.is_file() => {
            return Err(Usage::new(format!("cannot read {}: no such file", file.display())).into());
        }
        Command::Bench {
            events, seconds, ..
        } if *events == 0 || !(seconds.is_finite() && *seconds > 0.0) => {
            return Err(Usage::new("bench needs --events > 0 and --seconds > 0").into());
        }
        Command::BenchSearch {
            assets,
            companies,
            runs,
            ..
        } if *assets == 0 || *companies == 0 || *runs == 0 => {
            return Err(
                Usage::new("bench-search needs --assets, --companies and --runs > 0").into(),
            );
        }
        _ => {}
    }

    let mut boot = pgboot::PgBoot::start(&pgboot::BootOptions::new(&cli.data_dir))
        .context("starting PostgreSQL")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async {
        // `rebuild --all` holds one connection per projection while a reader and the swap
        // need more: size the pool by the number of projections.
        let connections = projections::all().len() as u32 + 3;
        let pool = commands::db::connect(boot.url(), connections.max(4))
            .await
            .context("connecting to PostgreSQL")?;
        commands::db::migrate(&pool)
            .await
            .context("migrating the database")?;
        // `bench` and `bench-search` handle Ctrl-C themselves: it must drop its scratch database on the way out.
        let interruptible = !matches!(
            cli.command,
            Command::Bench { .. } | Command::BenchSearch { .. }
        );
        let work = dispatch(cli.command, &pool, &boot);
        tokio::pin!(work);
        let result = tokio::select! {
            result = &mut work => result,
            _ = tokio::signal::ctrl_c(), if interruptible => {
                eprintln!("replay-tools: interrupted");
                Ok(130)
            }
        };
        // A connection dropped mid-query (Ctrl-C) can make a graceful close wait forever.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), pool.close()).await;
        result
    });
    // Stop background tasks (prefetches, the notifier) before the cluster goes away.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    boot.shutdown();
    result
}

async fn dispatch(
    command: Command,
    pool: &sqlx::PgPool,
    boot: &pgboot::PgBoot,
) -> anyhow::Result<u8> {
    match command {
        Command::Status { json } => projections_cmd::status(pool, json).await,
        Command::Rebuild { projection, all } => {
            projections_cmd::rebuild(pool, projection.as_deref(), all).await
        }
        Command::History {
            aggregate_type,
            id,
            json,
        } => history::history(pool, &aggregate_type, &id, json).await,
        Command::Replay {
            as_of,
            aggregate_type,
            id,
        } => history::replay(pool, as_of, &aggregate_type, &id).await,
        Command::Verify => verify::verify(pool).await,
        Command::Export { file } => transfer::export(pool, &file).await,
        Command::ExportLedger {
            format,
            tenant,
            as_of,
            file,
        } => {
            let options = ledger_export::Options {
                tenant,
                as_of,
                format,
                file,
            };
            ledger_export::export_ledger(pool, options).await
        }
        Command::Import { file, rebuild } => transfer::import(pool, &file, rebuild).await,
        Command::Bench {
            events,
            seconds,
            breakdown,
            mix,
            keep,
        } => bench::bench(boot, events, seconds, breakdown, mix, keep).await,
        Command::BenchSearch {
            assets,
            companies,
            runs,
            keep,
        } => {
            let options = bench_search::Options {
                assets,
                companies,
                runs,
                keep,
            };
            bench_search::bench_search(boot, options).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rebuild_needs_a_projection_or_all() {
        assert!(Cli::try_parse_from(["replay-tools", "rebuild"]).is_err());
        assert!(Cli::try_parse_from(["replay-tools", "rebuild", "companies", "--all"]).is_err());
        assert!(Cli::try_parse_from(["replay-tools", "rebuild", "--all"]).is_ok());
        assert!(Cli::try_parse_from(["replay-tools", "rebuild", "companies"]).is_ok());
    }

    #[test]
    fn replay_rejects_a_bad_timestamp_as_a_usage_error() {
        let error = Cli::try_parse_from([
            "replay-tools",
            "replay",
            "--as-of",
            "yesterday",
            "company",
            "x",
        ])
        .unwrap_err();
        assert_eq!(error.exit_code(), 2);
        let ok = Cli::try_parse_from([
            "replay-tools",
            "replay",
            "--as-of",
            "2025-03-01T12:00:00+02:00",
            "company",
            "x",
        ])
        .unwrap();
        match ok.command {
            Command::Replay { as_of, .. } => {
                assert_eq!(as_of.to_rfc3339(), "2025-03-01T12:00:00+02:00")
            }
            other => panic!("{other:?}"),
        }
    }
}
