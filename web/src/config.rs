//! Configuration: one typed struct read from the environment at start-up. A malformed value
//! stops start-up with a message naming the variable. Every variable is listed in README.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`: an external PostgreSQL; unset means the private cluster.
    pub database_url: Option<String>,
    /// `ST_DATA_DIR` (default `./data`): the private cluster and other local state.
    pub data_dir: PathBuf,
    /// `ST_LISTEN` (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// `ST_LOG` (default `info`): a tracing filter such as `info,projections=debug`.
    pub log: String,
    /// `ST_DB_POOL_SIZE` (default 16): connections for requests and commands; the server adds
    /// one per projection runner (each keeps its lock on its own connection).
    pub pool_size: u32,
    /// `ST_PROJECTION_BATCH` (default 2000): events per projection transaction.
    pub projection_batch: i64,
    /// `ST_PROJECTION_POLL_MS` (default 500): polling fallback of the projection runners.
    pub projection_poll: Duration,
    /// `ST_READ_YOUR_WRITES_MS` (default 2000): how long a request waits for the projections
    /// to show its own change before answering with what they have.
    pub read_your_writes: Duration,
    /// `ST_MIGRATE_ON_START` (default true): `serve` applies pending migrations first.
    pub migrate_on_start: bool,
    /// `ST_SCHEDULER_TICK_SECONDS` (default 60, 1 to 3600): how often the scheduler's jobs
    /// (SLA checks) run.
    pub scheduler_tick: Duration,
    /// `ST_BILLING_TICK_SECONDS` (default 3600, 1 to 86400): how often the billing job bills
    /// the contract periods that have come due (also once at start-up).
    pub billing_tick: Duration,
    /// `ST_PUBLIC_URL` (default `http://` + `ST_LISTEN`): the address people use, for the
    /// links in invitations and password resets. `https://…` makes cookies `Secure`.
    pub public_url: String,
    /// `ST_TRUST_PROXY` (default false): a reverse proxy in front sets `X-Forwarded-For` and
    /// `X-Forwarded-Proto`; believe them (client address for the sign-in throttle, `Secure`
    /// cookies when the proxy says https).
    pub trust_proxy: bool,
    /// The vault's master key: `ST_MASTER_KEY` (base64 of 32 bytes), `ST_MASTER_KEY_PREVIOUS`
    /// (older keys, comma-separated, while rotating), `ST_MASTER_KEY_FILE`; with none of them,
    /// `<ST_DATA_DIR>/master.key`, generated on first start.
    pub keys: commands::secrets::KeyConfig,
    /// `ST_SMTP_*`, `ST_TWILIO_*`, `ST_NOTIFY_*`: see `notify::config::NotifyConfig`.
    pub notify: crate::notify::config::NotifyConfig,
}

#[derive(Debug, thiserror::Error)]
#[error("{var}: {message} (got {value:?})")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub message: String,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse<T: FromStr>(name: &'static str, default: T, what: &str) -> Result<T, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(value) => value.trim().parse().map_err(|_| ConfigError {
            var: name,
            value,
            message: format!("must be {what}"),
        }),
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let pool_size: u32 = parse("ST_DB_POOL_SIZE", 16, "a whole number from 2 to 1000")?;
        if !(2..=1000).contains(&pool_size) {
            return Err(ConfigError {
                var: "ST_DB_POOL_SIZE",
                value: pool_size.to_string(),
                message: "must be a whole number from 2 to 1000".into(),
            });
        }
        let projection_batch: i64 = parse(
            "ST_PROJECTION_BATCH",
            2000,
            "a whole number from 1 to 100000",
        )?;
        if !(1..=100_000).contains(&projection_batch) {
            return Err(ConfigError {
                var: "ST_PROJECTION_BATCH",
                value: projection_batch.to_string(),
                message: "must be a whole number from 1 to 100000".into(),
            });
        }
        let listen: SocketAddr = parse(
            "ST_LISTEN",
            SocketAddr::from(([127, 0, 0, 1], 8080)),
            "an address and port such as 127.0.0.1:8080",
        )?;
        let public_url = match var("ST_PUBLIC_URL") {
            None => format!("http://{listen}"),
            Some(url) => {
                let url = url.trim().trim_end_matches('/').to_owned();
                let rest = url
                    .strip_prefix("https://")
                    .or_else(|| url.strip_prefix("http://"));
                if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
                    return Err(ConfigError {
                        var: "ST_PUBLIC_URL",
                        value: url,
                        message:
                            "must be an http:// or https:// URL such as https://support.example.com"
                                .into(),
                    });
                }
                url
            }
        };
        let data_dir = var("ST_DATA_DIR").map_or_else(|| PathBuf::from("./data"), PathBuf::from);
        let keys = commands::secrets::KeyConfig {
            master_key: var("ST_MASTER_KEY"),
            previous_keys: var("ST_MASTER_KEY_PREVIOUS")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|k| !k.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            key_file: var("ST_MASTER_KEY_FILE").map(PathBuf::from),
            default_file: data_dir.join("master.key"),
        };
        Ok(Self {
            database_url: var("DATABASE_URL"),
            data_dir,
            keys,
            listen,
            log: var("ST_LOG").unwrap_or_else(|| "info".into()),
            pool_size,
            projection_batch,
            projection_poll: Duration::from_millis(parse(
                "ST_PROJECTION_POLL_MS",
                500,
                "a number of milliseconds",
            )?),
            read_your_writes: Duration::from_millis(parse(
                "ST_READ_YOUR_WRITES_MS",
                2000,
                "a number of milliseconds",
            )?),
            migrate_on_start: parse("ST_MIGRATE_ON_START", true, "true or false")?,
            scheduler_tick: {
                let seconds: u64 = parse("ST_SCHEDULER_TICK_SECONDS", 60, "1 to 3600 seconds")?;
                if !(1..=3600).contains(&seconds) {
                    return Err(ConfigError {
                        var: "ST_SCHEDULER_TICK_SECONDS",
                        value: seconds.to_string(),
                        message: "must be 1 to 3600 seconds".into(),
                    });
                }
                Duration::from_secs(seconds)
            },
            billing_tick: {
                let seconds: u64 = parse("ST_BILLING_TICK_SECONDS", 3600, "1 to 86400 seconds")?;
                if !(1..=86_400).contains(&seconds) {
                    return Err(ConfigError {
                        var: "ST_BILLING_TICK_SECONDS",
                        value: seconds.to_string(),
                        message: "must be 1 to 86400 seconds".into(),
                    });
                }
                Duration::from_secs(seconds)
            },
            public_url,
            trust_proxy: parse("ST_TRUST_PROXY", false, "true or false")?,
            notify: crate::notify::config::NotifyConfig::from_env()?,
        })
    }
}
