//! The metadata every event carries: who asked, for which tenant, as part of what.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The tenant every command belongs to until tenants are introduced by the identity issue.
pub const DEFAULT_TENANT_ID: Uuid = Uuid::from_u128(1);

/// Metadata stored with every event a command appends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMeta {
    pub tenant_id: Uuid,
    /// A user id, or a system actor such as `scheduler`, `webhook:stripe`, `cli`.
    pub actor: String,
    /// Identifies the command: sending it again appends nothing and returns the first outcome.
    pub command_id: Uuid,
    /// The request or process this command is part of.
    pub correlation_id: Uuid,
    /// The command or event that caused this command, when there is one.
    #[serde(default)]
    pub causation_id: Option<Uuid>,
}

impl EventMeta {
    /// Metadata for a fresh command: a new command id that also starts a correlation.
    pub fn new(tenant_id: Uuid, actor: impl Into<String>) -> Self {
        let command_id = Uuid::now_v7();
        Self {
            tenant_id,
            actor: actor.into(),
            command_id,
            correlation_id: command_id,
            causation_id: None,
        }
    }

    /// The command id for a client-supplied idempotency key: the same key from the same tenant
    /// always names the same command.
    pub fn command_id_for_key(tenant_id: Uuid, key: &str) -> Uuid {
        Uuid::new_v5(&tenant_id, format!("idempotency-key:{key}").as_bytes())
    }

    pub fn with_command_id(mut self, command_id: Uuid) -> Self {
        self.command_id = command_id;
        self
    }

    pub fn with_correlation(mut self, correlation_id: Uuid, causation_id: Option<Uuid>) -> Self {
        self.correlation_id = correlation_id;
        self.causation_id = causation_id;
        self
    }

    /// Metadata for one step of a request that runs several commands: its command id is
    /// derived from this one and `step`, so a retried request replays every step.
    pub fn derived(&self, step: &[u8]) -> Self {
        self.clone()
            .with_command_id(Uuid::new_v5(&self.command_id, step))
    }

    /// The id of an aggregate created by this command. Deterministic, so a retried "create"
    /// finds the aggregate its first attempt made and appends nothing new.
    pub fn new_aggregate_id(&self) -> Uuid {
        Uuid::new_v5(&self.command_id, b"aggregate")
    }
}
