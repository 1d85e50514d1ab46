//! Start-up of `supporttracker serve`: database, migrations, projection runners, HTTP.

use std::time::Duration;

use commands::EventStore;
use projections::runner::{RunnerConfig, Wakeups};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::state::{AppState, Settings};

/// Connects, migrates (unless told not to), starts the runners and serves until SIGINT or
/// SIGTERM. Prints `listening on http://ADDR` on stdout once the socket is bound.
pub async fn serve(config: Config, database_url: String) -> anyhow::Result<()> {
    // Each projection runner keeps one connection for its lock: on top of the requests' pool.
    let runners = projections::all().len() as u32 + crate::notify::LOCK_CONNECTIONS;
    let pool = commands::db::connect(&database_url, config.pool_size + runners).await?;
    if config.migrate_on_start {
        commands::db::migrate(&pool).await?;
    }
    let vault = load_vault(&config, &pool).await?;
    let store = EventStore::new(pool.clone());
    let wakeups = Wakeups::start(&pool, store.subscribe());
    let runner_tasks = projections::runner::spawn_all(
        &pool,
        projections::all(),
        wakeups.clone(),
        RunnerConfig {
            batch_size: config.projection_batch,
            poll_interval: config.projection_poll,
            ..RunnerConfig::default()
        },
    );
    let housekeeping = tokio::spawn(housekeeping(pool.clone()));
    let state = AppState::new(
        pool.clone(),
        store,
        Settings {
            read_your_writes: config.read_your_writes,
            public_url: config.public_url.clone(),
            trust_proxy: config.trust_proxy,
            vault: std::sync::Arc::new(vault),
            notify: std::sync::Arc::new(config.notify.clone()),
        },
    );
    let notifier = crate::notify::start(state.clone(), wakeups);
    let scheduler =
        crate::scheduler::start(state.clone(), config.scheduler_tick, config.billing_tick)
            .await
            .map_err(|e| anyhow::anyhow!("scheduler: {e}"))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("ST_LISTEN {}: cannot listen: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    println!("listening on http://{addr}");
    let app = crate::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    for task in runner_tasks.into_iter().chain(notifier) {
        task.abort();
    }
    housekeeping.abort();
    let mut scheduler = scheduler;
    if let Err(error) = scheduler.shutdown().await {
        tracing::warn!(%error, "scheduler did not stop cleanly");
    }
    tokio::time::timeout(Duration::from_secs(5), pool.close())
        .await
        .ok();
    Ok(())
}

/// The vault's keys, checked against the database: a key that cannot open what the database
/// holds stops the start-up with a message naming key ids (never keys).
pub async fn load_vault(
    config: &Config,
    pool: &sqlx::PgPool,
) -> anyhow::Result<commands::secrets::Vault> {
    let vault =
        commands::secrets::Vault::load(&config.keys).map_err(|e| anyhow::anyhow!("vault: {e}"))?;
    vault
        .check(pool)
        .await
        .map_err(|e| anyhow::anyhow!("vault: {e}"))?;
    match vault.source() {
        commands::vault::KeySource::Generated(path) => {
            tracing::warn!(path = %path.display(), key_id = %vault.current_key_id(),
                "vault: no master key was configured, so one was generated; back this file up \
                 with the database (without it the stored passwords cannot be read)");
            println!(
                "vault: generated a master key in {} (key id {}); back it up with the database",
                path.display(),
                vault.current_key_id()
            );
        }
        source => {
            tracing::info!(key_id = %vault.current_key_id(), from = %source, "vault: master key loaded")
        }
    }
    Ok(vault)
}

/// Every 10 minutes: deletes ended sessions, stale sign-in throttle keys and scheduler claims
/// older than 30 days (none is ever used again; this only keeps the tables small).
async fn housekeeping(pool: sqlx::PgPool) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tick.tick().await;
        match commands::sessions::purge(&pool).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "ended sessions deleted"),
            Err(error) => tracing::warn!(%error, "could not delete ended sessions"),
        }
        if let Err(error) = commands::throttle::purge(&pool).await {
            tracing::warn!(%error, "could not purge the sign-in throttle");
        }
        if let Err(error) = crate::scheduler::purge(&pool).await {
            tracing::warn!(%error, "could not delete old scheduler claims");
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail on Unix");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
