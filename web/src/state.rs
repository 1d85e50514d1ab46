//! What every handler can reach.

use std::sync::Arc;
use std::time::Duration;

use commands::EventStore;
use sqlx::PgPool;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub store: EventStore,
    inner: Arc<Settings>,
}

/// Settings the handlers read.
#[derive(Debug, Clone)]
pub struct Settings {
    pub read_your_writes: Duration,
    /// Where people reach the service (links in invitations and resets), without a final `/`.
    pub public_url: String,
    /// Believe `X-Forwarded-For` / `X-Forwarded-Proto` from a reverse proxy.
    pub trust_proxy: bool,
    /// The credentials vault (keys and sealed secrets).
    pub vault: Arc<commands::secrets::Vault>,
    /// Email and SMS providers of the deployment, retries.
    pub notify: Arc<crate::notify::config::NotifyConfig>,
}

impl Settings {
    /// Settings for tests and tools: a local address, no proxy.
    pub fn local(read_your_writes: Duration) -> Self {
        Self {
            read_your_writes,
            public_url: "http://localhost:8080".into(),
            trust_proxy: false,
            vault: Arc::new(commands::secrets::Vault::ephemeral()),
            notify: Arc::new(crate::notify::config::NotifyConfig::default()),
        }
    }
}

impl AppState {
    pub fn new(pool: PgPool, store: EventStore, settings: Settings) -> Self {
        Self {
            pool,
            store,
            inner: Arc::new(settings),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.inner
    }

    /// Waits (bounded) until `projections` have applied the aggregate's event `version`, so the
    /// page or response that follows shows the change just made.
    pub async fn read_your_writes(
        &self,
        projections: &[&str],
        aggregate_type: &str,
        aggregate_id: &str,
        version: usize,
    ) {
        if version == 0 {
            return;
        }
        match projections::wait::wait_for_event(
            &self.pool,
            projections,
            aggregate_type,
            aggregate_id,
            version,
            self.inner.read_your_writes,
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                aggregate_type,
                aggregate_id,
                version,
                "projections did not catch up in time; answering with older data"
            ),
            Err(error) => tracing::warn!(%error, "read-your-writes wait failed"),
        }
    }
}
