//! Command dispatch over the event store.
//!
//! postgres-es does the appending and loading and turns a duplicate `(aggregate, sequence)`
//! into an optimistic-lock conflict. Around it this module adds what cqrs-es's framework does
//! not have: metadata as a JSON object, tenant isolation on load, command idempotency, one
//! retry on conflict where the command allows it, and upcasting on load. cqrs-es's snapshot
//! and aggregate stores are not used (they apply each event twice; see DESIGN.md).
//!
//! Idempotency costs no extra query: the events of an aggregate are loaded anyway, and each
//! carries the id of the command that appended it. A command whose id is already among them
//! was executed before; its first outcome is returned and nothing is appended. Commands that
//! create an aggregate derive the new id from the command id (`EventMeta::new_aggregate_id`),
//! so a retried "create" lands on the aggregate its first attempt made.

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{
    EventUpcaster, PersistedEventRepository, PersistenceError, SerializedEvent,
};
use cqrs_es::{Aggregate, DomainEvent};
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::meta::EventMeta;

/// An aggregate as the store handles it: how to read its old event versions.
pub trait StoredAggregate: Aggregate + Clone {
    /// Upcasters applied, in order, to every stored event of this aggregate type on read.
    fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
        Vec::new()
    }
}

impl StoredAggregate for domain::company::Company {}

/// What to do when another writer appended to the same aggregate first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictPolicy {
    /// Load the new state and decide again, once. For commands whose meaning does not depend
    /// on the state the user saw (rename to X, set the rate to Y).
    RetryOnce,
    /// Report the conflict to the caller.
    Report,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Domain(E),
    /// Another writer changed the aggregate at the same time.
    #[error("the record was changed by someone else at the same time; reload and try again")]
    Conflict,
    /// The aggregate belongs to another tenant.
    #[error("not found")]
    NotFound,
    /// A stored event could not be read back.
    #[error("stored event does not decode: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("event store: {0}")]
    Store(String),
}

/// The outcome of a command.
#[derive(Debug)]
pub struct Executed<A: Aggregate> {
    pub aggregate_id: String,
    /// The events this command appended (on a replayed command: the ones its first run did).
    pub events: Vec<A::Event>,
    /// The aggregate's state right after the command.
    pub state: A,
    /// The sequence of the last event after the command (0: the aggregate has no events).
    pub version: usize,
    /// True when the command id had been seen before and nothing new was appended.
    pub replayed: bool,
}

/// Appends and loads events; the single way commands reach the log.
#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
    repo: std::sync::Arc<PostgresEventRepository>,
    appended: watch::Sender<u64>,
}

/// The channel catch-up runners in other processes listen on.
pub const EVENTS_CHANNEL: &str = "st_events";

impl EventStore {
    pub fn new(pool: PgPool) -> Self {
        let (appended, _) = watch::channel(0);
        let store = Self {
            repo: std::sync::Arc::new(PostgresEventRepository::new(pool.clone())),
            pool,
            appended,
        };
        store.spawn_notifier();
        store
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Wakes when this process appended events: the in-process runners' cheap path.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Tells runners in other processes, outside the command's transaction and coalesced, so
    /// that NOTIFY's commit-time lock never sits on the command path.
    fn spawn_notifier(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut rx = self.appended.subscribe();
        let pool = self.pool.clone();
        runtime.spawn(async move {
            while rx.changed().await.is_ok() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                rx.mark_unchanged();
                if let Err(error) = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(EVENTS_CHANNEL)
                    .execute(&pool)
                    .await
                {
                    tracing::debug!(%error, "could not send NOTIFY; runners will poll");
                }
            }
        });
    }

    /// Loads an aggregate's stored events with upcasters applied.
    pub async fn load_serialized<A: StoredAggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, String> {
        let events = self
            .repo
            .get_events::<A>(aggregate_id)
            .await
            .map_err(|e| e.to_string())?;
        let upcasters = A::upcasters();
        Ok(events
            .into_iter()
            .map(|event| upcast(event, &upcasters))
            .collect())
    }

    /// Executes `command` against aggregate `aggregate_id` with `meta` stored on every event.
    pub async fn execute<A>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        services: &A::Services,
        meta: &EventMeta,
        policy: ConflictPolicy,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A: StoredAggregate,
        A::Command: Clone,
    {
        let metadata =
            serde_json::to_value(meta).map_err(|e| CommandError::Store(e.to_string()))?;
        let mut retried = false;
        loop {
            let stored = self
                .load_serialized::<A>(aggregate_id)
                .await
                .map_err(CommandError::Store)?;
            let mut state = A::default();
            let mut replay: Option<Executed<A>> = None;
            for event in &stored {
                let event_meta = read_meta(event).map_err(CommandError::Corrupt)?;
                if event_meta.tenant_id != meta.tenant_id {
                    return Err(CommandError::NotFound);
                }
                let payload: A::Event = decode(event).map_err(CommandError::Corrupt)?;
                if event_meta.command_id == meta.command_id {
                    let seen = replay.get_or_insert_with(|| Executed {
                        aggregate_id: aggregate_id.to_owned(),
                        events: Vec::new(),
                        state: A::default(),
                        version: 0,
                        replayed: true,
                    });
                    seen.events.push(payload.clone());
                    seen.version = event.sequence;
                }
                state.apply(payload);
                if let Some(seen) = replay.as_mut().filter(|s| s.version == event.sequence) {
                    seen.state = state.clone();
                }
            }
            if let Some(replayed) = replay {
                return Ok(replayed);
            }
            let version = stored.len();
            let sink = EventSink::default();
            state
                .handle(command.clone(), services, &sink)
                .await
                .map_err(CommandError::Domain)?;
            let events = sink.collect().await;
            if events.is_empty() {
                return Ok(Executed {
                    aggregate_id: aggregate_id.to_owned(),
                    events,
                    state,
                    version,
                    replayed: false,
                });
            }
            let serialized = events
                .iter()
                .enumerate()
                .map(|(i, event)| {
                    Ok(SerializedEvent::new(
                        aggregate_id.to_owned(),
                        version + i + 1,
                        A::TYPE.to_owned(),
                        event.event_type(),
                        event.event_version(),
                        serde_json::to_value(event)?,
                        metadata.clone(),
                    ))
                })
                .collect::<Result<Vec<_>, serde_json::Error>>()
                .map_err(|e| CommandError::Store(e.to_string()))?;
            match self.repo.persist::<A>(&serialized, None).await {
                Ok(()) => {
                    self.appended.send_modify(|n| *n += 1);
                    return Ok(Executed {
                        aggregate_id: aggregate_id.to_owned(),
                        version: version + events.len(),
                        events,
                        state,
                        replayed: false,
                    });
                }
                Err(PersistenceError::OptimisticLockError)
                    if policy == ConflictPolicy::RetryOnce && !retried =>
                {
                    retried = true;
                    tracing::debug!(aggregate_id, "conflict; deciding again on the new state");
                }
                Err(PersistenceError::OptimisticLockError) => {
                    // The other writer may have been this very command (a client retry racing
                    // its first attempt): look once more before calling it a conflict.
                    if !retried {
                        retried = true;
                        let again = self
                            .load_serialized::<A>(aggregate_id)
                            .await
                            .map_err(CommandError::Store)?;
                        if again
                            .iter()
                            .any(|e| read_meta(e).is_ok_and(|m| m.command_id == meta.command_id))
                        {
                            continue;
                        }
                    }
                    return Err(CommandError::Conflict);
                }
                Err(other) => return Err(CommandError::Store(other.to_string())),
            }
        }
    }

    /// The (tx_id, global_position) of an event, for read-your-writes waits.
    pub async fn position_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: usize,
    ) -> Result<Option<(u64, i64)>, sqlx::Error> {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT tx_id::text, global_position FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(sequence as i64)
        .fetch_optional(&self.pool)
        .await
        .map(|row| row.map(|(tx, pos)| (tx.parse().unwrap_or(u64::MAX), pos)))
    }
}

/// Applies the upcasters that match, in order.
pub fn upcast(event: SerializedEvent, upcasters: &[Box<dyn EventUpcaster>]) -> SerializedEvent {
    upcasters.iter().fold(event, |event, upcaster| {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            upcaster.upcast(event)
        } else {
            event
        }
    })
}

/// Reads an event's metadata.
pub fn read_meta(event: &SerializedEvent) -> Result<EventMeta, String> {
    serde_json::from_value(event.metadata.clone()).map_err(|e| {
        format!(
            "{} {} #{}: metadata: {e}",
            event.aggregate_type, event.aggregate_id, event.sequence
        )
    })
}

/// Decodes an (already upcast) event's payload.
pub fn decode<E: DomainEvent>(event: &SerializedEvent) -> Result<E, String> {
    serde_json::from_value(event.payload.clone()).map_err(|e| {
        format!(
            "{} {} #{} ({} v{}): {e}",
            event.aggregate_type,
            event.aggregate_id,
            event.sequence,
            event.event_type,
            event.event_version
        )
    })
}
