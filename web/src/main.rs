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
    /// Create a tenant with its owner and an API token for the owner; prints
    /// {"tenant_id", "user_id", "api_token"} as JSON. Exit code 2 when the email is taken or an
    /// input is invalid (nothing is created then).
    Bootstrap(BootstrapArgs),
    /// The credentials vault's master key.
    #[command(subcommand)]
    Vault(VaultCommand),
}

#[derive(Debug, Subcommand)]
enum VaultCommand {
    /// Re-seal every stored secret under a new master key, while the service runs. With the
    /// key in a file (ST_MASTER_KEY_FILE or <ST_DATA_DIR>/master.key) a new key is generated
    /// and written first in that file (older keys stay after it, for opening only). With
    /// ST_MASTER_KEY, set the new key there and the old one in ST_MASTER_KEY_PREVIOUS first.
    RotateKey,
    /// Which keys the stored secrets are sealed under, and how many each.
    Status,
}

#[derive(Debug, clap::Args)]
struct BootstrapArgs {
    /// The tenant's (your company's) name.
    #[arg(long)]
    tenant: String,
    /// The owner's sign-in address.
    #[arg(long)]
    email: String,
    /// A file holding the owner's password (one line; `-` reads standard input).
    #[arg(long)]
    password_file: std::path::PathBuf,
    /// The owner's display name (default: the part of the email before the @).
    #[arg(long)]
    name: Option<String>,
    /// ISO 4217 currency of the tenant.
    #[arg(long, default_value = "USD")]
    currency: String,
    /// IANA time zone of the tenant (business dates, SLAs, billing days).
    #[arg(long, default_value = "UTC")]
    time_zone: String,
}

/// An error that is the user's to fix: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn read_password(path: &std::path::Path) -> Result<String, UsageError> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|e| UsageError(format!("--password-file {}: {e}", path.display())))?;
    // The first line, without its line break; other white space is part of the password.
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

fn parse_bootstrap(args: &BootstrapArgs) -> Result<commands::identity::NewTenant, UsageError> {
    use domain::identity::{Currency, Email, TimeZone};
    let invalid = |e: domain::ValidationError| {
        UsageError(format!("--{}: {}", e.field.replace('_', "-"), e.message))
    };
    let email = Email::parse(&args.email).map_err(invalid)?;
    let password = read_password(&args.password_file)?;
    commands::identity::check_password(&password)
        .map_err(|e| UsageError(format!("the password {}", e.message)))?;
    Ok(commands::identity::NewTenant {
        tenant_name: args.tenant.clone(),
        owner_name: args.name.clone().unwrap_or_else(|| {
            email
                .as_str()
                .split('@')
                .next()
                .unwrap_or_default()
                .to_owned()
        }),
        email,
        password,
        currency: Currency::parse(&args.currency).map_err(invalid)?,
        time_zone: TimeZone::parse(&args.time_zone).map_err(invalid)?,
    })
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
        Err(error) if error.downcast_ref::<UsageError>().is_some() => {
            eprintln!("supporttracker: {error}");
            std::process::ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("supporttracker: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    // Check the input before starting anything.
    let bootstrap = match &cli.command {
        Command::Bootstrap(args) => Some(parse_bootstrap(args)?),
        _ => None,
    };
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
            Command::Bootstrap(_) => {
                let pool = commands::db::connect(&url, 2).await?;
                commands::db::migrate(&pool).await?;
                let store = commands::EventStore::new(pool);
                let new = bootstrap.expect("parsed above");
                let result = commands::identity::bootstrap(&store, new).await;
                store.notify_now().await;
                match result {
                    Ok(done) => {
                        println!("{}", serde_json::to_string(&done)?);
                        Ok(())
                    }
                    Err(commands::identity::BootstrapError::Failed(e)) => Err(anyhow::anyhow!(e)),
                    Err(usage) => Err(UsageError(usage.to_string()).into()),
                }
            }
            Command::Vault(command) => {
                let pool = commands::db::connect(&url, 2).await?;
                commands::db::migrate(&pool).await?;
                let vault = commands::secrets::Vault::load(&config.keys)
                    .map_err(|e| anyhow::anyhow!("vault: {e}"))?;
                match command {
                    VaultCommand::RotateKey => {
                        let (key_id, count) = vault
                            .rotate(&pool)
                            .await
                            .map_err(|e| anyhow::anyhow!("vault: {e}"))?;
                        println!(
                            "vault: {count} secret value(s) re-sealed under key {key_id} (from {})",
                            vault.source()
                        );
                    }
                    VaultCommand::Status => {
                        vault
                            .check(&pool)
                            .await
                            .map_err(|e| anyhow::anyhow!("vault: {e}"))?;
                        println!(
                            "current key: {} (from {})",
                            vault.current_key_id(),
                            vault.source()
                        );
                        for (key_id, count) in commands::secrets::Vault::usage(&pool).await? {
                            println!("{key_id}: {count} secret value(s)");
                        }
                    }
                }
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
