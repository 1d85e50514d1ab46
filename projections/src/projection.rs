//! What a projection is.

use async_trait::async_trait;
use sqlx::PgConnection;

use crate::StoredEvent;

/// The physical names of a projection's tables: the live ones, or a rebuild's shadows.
#[derive(Debug, Clone)]
pub struct Tables {
    names: Vec<String>,
}

impl Tables {
    pub fn live(tables: &[&str]) -> Self {
        Self {
            names: tables.iter().map(|t| t.to_string()).collect(),
        }
    }

    pub fn with_suffix(tables: &[&str], suffix: &str) -> Self {
        Self {
            names: tables.iter().map(|t| format!("{t}{suffix}")).collect(),
        }
    }

    /// The physical name of the projection's `index`-th table (in `Projection::tables` order).
    pub fn get(&self, index: usize) -> &str {
        &self.names[index]
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }
}

/// Why a batch could not be applied. `index` points at the failing event when known.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApplyError {
    pub index: Option<usize>,
    pub message: String,
}

impl ApplyError {
    pub fn at(index: usize, message: impl Into<String>) -> Self {
        Self {
            index: Some(index),
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for ApplyError {
    fn from(error: sqlx::Error) -> Self {
        Self {
            index: None,
            message: error.to_string(),
        }
    }
}

/// A read model fed from the log. `apply` must depend only on the events (never on the clock
/// or on other tables), so a rebuild of the same log gives the same rows.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Bump when the rows it writes change shape or meaning: the runner then rebuilds it.
    fn version(&self) -> i32;
    /// The tables it owns (created by migrations).
    fn tables(&self) -> &'static [&'static str];
    /// Applies a batch of events, in order, inside the caller's transaction.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        tables: &Tables,
        events: &[StoredEvent],
    ) -> Result<(), ApplyError>;
}
