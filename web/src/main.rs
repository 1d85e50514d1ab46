//! The `supporttracker` binary.

use clap::{Parser, Subcommand};
use web::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "supporttracker",
    version,
    about = "SupportTracker: service management for MSPs and ISPs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the console, the API and /healthz (ST_LISTEN, default 127.0.0.1:8080).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("supporttracker: configuration: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli, config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("supporttracker: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    // The private cluster (when DATABASE_URL is unset) lives as long as this guard.
    let mut database = pgboot::PgBoot::start(&pgboot::BootOptions::new(&config.data_dir))?;
    let url = database.url().to_owned();
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => web::serve::serve(config, url).await,
            Command::Migrate => {
                let pool = commands::db::connect(&url, 2).await?;
                commands::db::migrate(&pool).await?;
                println!("migrations applied");
                Ok(())
            }
        }
    });
    drop(runtime);
    database.shutdown();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
