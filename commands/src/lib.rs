//! The write side: the event store (postgres-es for append/load and optimistic concurrency),
//! command dispatch with metadata and idempotency, the aggregate registry used by the CLI,
//! and the database wiring (pool, migrations).

pub mod db;
pub mod identity;
pub mod meta;
pub mod outbox;
pub mod registry;
pub mod secrets;
pub mod sessions;
pub mod store;
pub mod throttle;
pub mod totp;
pub mod vault;

pub use meta::{EventMeta, DEFAULT_TENANT_ID};
pub use store::{CommandError, ConflictPolicy, EventStore, Executed, StoredAggregate};
