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
//!
//! Recently used aggregates are cached in memory (state, version, tenant, command ids), so a
//! command usually costs one append and no load. The cache is only a guess: the append still
//! names the next sequence, so a cache made stale by another process ends in a conflict, and
//! the command is decided again on freshly loaded events (a "free" retry that does not count
//! against the command's conflict policy). Decisions the append cannot check — a refusal or
//! "nothing to change" — are never trusted from the cache: they are made again on fresh events.

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{
    EventUpcaster, PersistedEventRepository, PersistenceError, SerializedEvent,
};
use cqrs_es::{Aggregate, DomainEvent};
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;
use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use uuid::Uuid;

use crate::meta::EventMeta;

/// An aggregate as the store handles it: how to read its old event versions.
pub trait StoredAggregate: Aggregate + Clone + 'static {
    /// Upcasters applied, in order, to every stored event of this aggregate type on read.
    fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
        Vec::new()
    }
}

impl StoredAggregate for domain::asset::Asset {}
impl StoredAggregate for domain::company::Company {}
impl StoredAggregate for domain::contact::Contact {}
impl StoredAggregate for domain::credential::Credential {}
impl StoredAggregate for domain::sequence::NumberSequence {}
impl StoredAggregate for domain::tenant::Tenant {}
impl StoredAggregate for domain::user::User {}
impl StoredAggregate for domain::workorder::WorkOrder {}
impl StoredAggregate for domain::notification::Notification {}
impl StoredAggregate for domain::ledger::Ledger {}

/// What to do when another writer appended to the same aggregate first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictPolicy {
    /// Load the new state and decide again, once. For commands whose meaning does not depend
    /// on the state the user saw (rename to X, set the rate to Y).
    RetryOnce,
    /// Load the new state and decide again as long as others keep appending first (up to
    /// `BUSY_ATTEMPTS` times, with a short random pause). For records many people append to
    /// at once whose commands the aggregate checks whole against its current state (a work
    /// order's comments, time, status moves, the scheduler's SLA checks).
    Busy,
    /// Report the conflict to the caller.
    Report,
}

/// How often a `ConflictPolicy::Busy` command is decided again before it reports a conflict.
pub const BUSY_ATTEMPTS: u32 = 20;

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
    repo: Arc<PostgresEventRepository>,
    appended: watch::Sender<u64>,
    cache: Arc<AggregateCache>,
    sequences: Arc<SequenceSlots>,
}

/// One slot per gapless sequence stream this process numbers from: a lock, so that this
/// process's writers take numbers one after the other instead of colliding on the same one,
/// and the last number this process appended, so that the next needs no query. The number is
/// only a guess for the same reason as the aggregate cache: another process may have taken
/// it, and then the append fails on the sequence's key, the slot is cleared and the number
/// is read again from the log.
#[derive(Default)]
struct SequenceSlots {
    streams: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<i64>>>>>,
}

impl SequenceSlots {
    fn slot(&self, stream: &str) -> Arc<tokio::sync::Mutex<Option<i64>>> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.entry(stream.to_owned()).or_default().clone()
    }
}

/// Aggregates kept in memory by this process, keyed by (aggregate type, id).
struct AggregateCache {
    capacity: usize,
    entries: Mutex<HashMap<(&'static str, String), Cached>>,
}

struct Cached {
    state: Box<dyn Any + Send + Sync>,
    version: usize,
    tenant_id: Uuid,
    command_ids: HashSet<Uuid>,
}

/// Where a command's starting state came from.
enum Start<A> {
    /// Guessed (cache or "new aggregate"); only a successful append confirms it.
    Guess(A, usize),
    /// Loaded from the log just now.
    Loaded(A, usize),
}

/// Default number of aggregates an `EventStore` keeps in memory.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

impl AggregateCache {
    fn get<A: StoredAggregate>(
        &self,
        id: &str,
        meta: &EventMeta,
    ) -> Option<Result<(A, usize), ()>> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(&(A::TYPE, id.to_owned()))?;
        if entry.tenant_id != meta.tenant_id || entry.command_ids.contains(&meta.command_id) {
            // Another tenant's aggregate or a repeated command: the full path answers those.
            return Some(Err(()));
        }
        let state = entry.state.downcast_ref::<A>()?.clone();
        Some(Ok((state, entry.version)))
    }

    fn put<A: StoredAggregate>(
        &self,
        id: &str,
        state: &A,
        version: usize,
        tenant_id: Uuid,
        command_ids: impl IntoIterator<Item = Uuid>,
    ) {
        if self.capacity == 0 {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let key = (A::TYPE, id.to_owned());
        if !entries.contains_key(&key) && entries.len() >= self.capacity {
            // Evict an arbitrary entry: cheap, and good enough for a cache that only saves a query.
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        let entry = entries.entry(key).or_insert_with(|| Cached {
            state: Box::new(()),
            version: 0,
            tenant_id,
            command_ids: HashSet::new(),
        });
        entry.state = Box::new(state.clone());
        entry.version = version;
        entry.tenant_id = tenant_id;
        entry.command_ids.extend(command_ids);
    }

    fn forget<A: StoredAggregate>(&self, id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&(A::TYPE, id.to_owned()));
        }
    }
}

/// The channel catch-up runners in other processes listen on.
pub const EVENTS_CHANNEL: &str = "st_events";

impl EventStore {
    pub fn new(pool: PgPool) -> Self {
        let (appended, _) = watch::channel(0);
        let store = Self {
            repo: Arc::new(PostgresEventRepository::new(pool.clone())),
            pool,
            appended,
            cache: Arc::new(AggregateCache {
                capacity: DEFAULT_CACHE_CAPACITY,
                entries: Mutex::new(HashMap::new()),
            }),
            sequences: Arc::default(),
        };
        store.spawn_notifier();
        store
    }

    /// The same store keeping at most `capacity` aggregates in memory (0: none).
    pub fn with_cache_capacity(mut self, capacity: usize) -> Self {
        self.cache = Arc::new(AggregateCache {
            capacity,
            entries: Mutex::new(HashMap::new()),
        });
        self
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
                // Coalesce: one NOTIFY per 20 ms at most, whatever the append rate.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
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

    /// Tells runners in other processes now that events were appended (for a short-lived
    /// process such as the CLI, which may exit before its coalesced NOTIFY goes out).
    pub async fn notify_now(&self) {
        if let Err(error) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(EVENTS_CHANNEL)
            .execute(&self.pool)
            .await
        {
            tracing::debug!(%error, "could not send NOTIFY; runners will poll");
        }
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

    /// An aggregate's current state and version, read from the log (not the cache), for
    /// decisions outside a command such as checking a password at sign-in. Another tenant's
    /// aggregate is `NotFound`; one with no events is the default state at version 0.
    pub async fn load<A: StoredAggregate>(
        &self,
        tenant_id: Uuid,
        aggregate_id: &str,
    ) -> Result<(A, usize), CommandError<A::Error>> {
        // A fresh command id, so nothing counts as a replay.
        let meta = EventMeta::new(tenant_id, "load");
        Ok(match self.load_for::<A>(aggregate_id, &meta).await? {
            Ok(loaded) => loaded,
            Err(replayed) => (replayed.state, replayed.version),
        })
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
        self.run(aggregate_id, command, services, meta, policy, false)
            .await
    }

    /// Executes a command that creates the aggregate (its id freshly derived from the command
    /// id): it is decided on the empty state without loading anything first. Should the
    /// aggregate exist after all, the append conflicts and the command is decided again on the
    /// loaded events, so a retried create still returns its first outcome.
    pub async fn create<A>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        services: &A::Services,
        meta: &EventMeta,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A: StoredAggregate,
        A::Command: Clone,
    {
        self.run(
            aggregate_id,
            command,
            services,
            meta,
            ConflictPolicy::Report,
            true,
        )
        .await
    }

    /// Creates an aggregate that receives the next number of the tenant's gapless sequence
    /// `sequence` (asset tags, work-order numbers): `command(number)` is decided on the empty
    /// state, and its events are appended together with the sequence's `NumberIssued` at that
    /// number, in one statement. A retried command (same id) returns its first outcome, with
    /// its first number. See `execute_numbered` for how numbers are taken.
    pub async fn create_numbered<A>(
        &self,
        aggregate_id: &str,
        sequence: &str,
        command: impl Fn(u64) -> A::Command,
        services: &A::Services,
        meta: &EventMeta,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A: StoredAggregate,
    {
        self.numbered(aggregate_id, sequence, command, services, meta, true)
            .await
    }

    /// Runs `command(number)` on an existing (or new) aggregate with the next number of the
    /// tenant's gapless sequence `sequence` (invoice and credit-note numbers, given when a
    /// document is issued): the aggregate's events and the sequence's `NumberIssued` are
    /// appended in one statement, so a number is stored only together with its record and
    /// none is skipped. A command that appends nothing takes no number; a retried command
    /// (same id) returns its first outcome.
    ///
    /// The writers of this process take a sequence's numbers one after the other, under the
    /// sequence's lock, and the number after the last one this process appended needs no
    /// query. Another process may have taken that number, or appended to the aggregate
    /// first: the append then fails on a key, and the command is decided again on the fresh
    /// log with the number read again (up to 200 times, with short random pauses).
    pub async fn execute_numbered<A>(
        &self,
        aggregate_id: &str,
        sequence: &str,
        command: impl Fn(u64) -> A::Command,
        services: &A::Services,
        meta: &EventMeta,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A: StoredAggregate,
    {
        self.numbered(aggregate_id, sequence, command, services, meta, false)
            .await
    }

    async fn numbered<A>(
        &self,
        aggregate_id: &str,
        sequence: &str,
        command: impl Fn(u64) -> A::Command,
        services: &A::Services,
        meta: &EventMeta,
        create: bool,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A: StoredAggregate,
    {
        use domain::sequence::{sequence_id, NumberSequence, SequenceEvent};
        /// Writers of several processes racing for numbers: enough for dozens at once.
        const ATTEMPTS: u32 = 200;
        let metadata =
            serde_json::to_value(meta).map_err(|e| CommandError::Store(e.to_string()))?;
        let stream = sequence_id(meta.tenant_id, sequence);
        let slot = self.sequences.slot(&stream);
        // The first attempt starts from the cache (or, creating, from nothing); only an append
        // confirms that guess.
        let mut guess = match self.cache.get::<A>(aggregate_id, meta) {
            Some(Err(())) => None,
            // Appended at sequence 1, so it fails when the record exists after all.
            _ if create => Some((A::default(), 0)),
            Some(Ok(cached)) => Some(cached),
            None => None,
        };
        for attempt in 0..ATTEMPTS {
            if attempt > 2 {
                let pause = rand::random::<u64>() % (attempt.min(20) as u64 * 500);
                tokio::time::sleep(std::time::Duration::from_micros(pause)).await;
            }
            let (mut state, version, guessed) = match guess.take() {
                Some((state, version)) => (state, version, true),
                None => match self.load_for::<A>(aggregate_id, meta).await? {
                    Err(replayed) => return Ok(replayed),
                    Ok((state, version)) => (state, version, false),
                },
            };
            if create && version > 0 && !guessed {
                // Made by another command: the aggregate decides (it refuses).
                let sink = EventSink::default();
                state
                    .handle(command(0), services, &sink)
                    .await
                    .map_err(CommandError::Domain)?;
                return Err(CommandError::Conflict);
            }
            let mut last = slot.lock().await;
            let number = match *last {
                Some(number) => number,
                None => self.last_number(&stream).await?,
            } as u64
                + 1;
            let sink = EventSink::default();
            let decided = state.handle(command(number), services, &sink).await;
            let events = sink.collect().await;
            if guessed && (decided.is_err() || events.is_empty()) {
                // A refusal or a no-op is never trusted from a guess: decide on the log.
                continue;
            }
            decided.map_err(CommandError::Domain)?;
            if events.is_empty() {
                return Ok(Executed {
                    aggregate_id: aggregate_id.to_owned(),
                    events,
                    state,
                    version,
                    replayed: false,
                });
            }
            let issued = SequenceEvent::NumberIssued {
                number,
                aggregate_type: A::TYPE.to_owned(),
                aggregate_id: aggregate_id.to_owned(),
            };
            let mut rows = vec![(
                NumberSequence::TYPE,
                stream.clone(),
                number as i64,
                issued.event_type(),
                issued.event_version(),
                serde_json::to_value(&issued).map_err(|e| CommandError::Store(e.to_string()))?,
            )];
            for (i, event) in events.iter().enumerate() {
                rows.push((
                    A::TYPE,
                    aggregate_id.to_owned(),
                    (version + i + 1) as i64,
                    event.event_type(),
                    event.event_version(),
                    serde_json::to_value(event).map_err(|e| CommandError::Store(e.to_string()))?,
                ));
            }
            match self.insert_rows(&rows, &metadata).await {
                Ok(()) => {
                    *last = Some(number as i64);
                    drop(last);
                    self.appended.send_modify(|n| *n += 1);
                    let new_version = version + events.len();
                    self.cache.put(
                        aggregate_id,
                        &state,
                        new_version,
                        meta.tenant_id,
                        [meta.command_id],
                    );
                    return Ok(Executed {
                        aggregate_id: aggregate_id.to_owned(),
                        version: new_version,
                        events,
                        state,
                        replayed: false,
                    });
                }
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
                    // The number or the aggregate's next sequence was taken elsewhere.
                    *last = None;
                    self.cache.forget::<A>(aggregate_id);
                    tracing::debug!(sequence, number, "number or record taken; deciding again");
                }
                Err(other) => {
                    // The statement may or may not have been applied: read the log next time.
                    *last = None;
                    self.cache.forget::<A>(aggregate_id);
                    return Err(CommandError::Store(other.to_string()));
                }
            }
        }
        Err(CommandError::Conflict)
    }

    /// The last number of a sequence stream in the log (0: none yet), from one index entry at
    /// the end of the stream (`max()` may be planned as a scan of the whole stream while the
    /// statistics think it short).
    async fn last_number<E: std::error::Error>(
        &self,
        stream: &str,
    ) -> Result<i64, CommandError<E>> {
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT sequence FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
              ORDER BY sequence DESC LIMIT 1",
        )
        .bind(domain::sequence::NumberSequence::TYPE)
        .bind(stream)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| CommandError::Store(e.to_string()))?;
        Ok(last.unwrap_or(0))
    }

    /// Appends events of several aggregates in one statement (all or none, and one round
    /// trip: no BEGIN and COMMIT around it).
    async fn insert_rows(
        &self,
        rows: &[(&str, String, i64, String, String, serde_json::Value)],
        metadata: &serde_json::Value,
    ) -> Result<(), sqlx::Error> {
        use std::fmt::Write;
        let mut sql = String::from(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                event_version, payload, metadata) VALUES ",
        );
        for i in 0..rows.len() {
            let p = 2 + i * 6;
            let _ = write!(
                sql,
                "{}(${}, ${}, ${}, ${}, ${}, ${}, $1)",
                if i == 0 { "" } else { ", " },
                p,
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5
            );
        }
        let mut query = sqlx::query(&sql).bind(metadata);
        for (aggregate_type, aggregate_id, sequence, event_type, event_version, payload) in rows {
            query = query
                .bind(aggregate_type)
                .bind(aggregate_id)
                .bind(sequence)
                .bind(event_type)
                .bind(event_version)
                .bind(payload);
        }
        query.execute(&self.pool).await.map(|_| ())
    }

    async fn run<A>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        services: &A::Services,
        meta: &EventMeta,
        policy: ConflictPolicy,
        assume_new: bool,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A: StoredAggregate,
        A::Command: Clone,
    {
        let metadata =
            serde_json::to_value(meta).map_err(|e| CommandError::Store(e.to_string()))?;
        let mut retried = false;
        let mut busy_retries = 0u32;
        let mut guess = match self.cache.get::<A>(aggregate_id, meta) {
            Some(Ok((state, version))) => Some((state, version)),
            Some(Err(())) => None,
            None if assume_new => Some((A::default(), 0)),
            None => None,
        };
        loop {
            let start = match guess.take() {
                Some((state, version)) => Start::Guess(state, version),
                None => match self.load_for::<A>(aggregate_id, meta).await? {
                    Ok((state, version)) => Start::Loaded(state, version),
                    Err(replayed) => return Ok(replayed),
                },
            };
            let (mut state, version, guessed) = match start {
                Start::Guess(state, version) => (state, version, true),
                Start::Loaded(state, version) => (state, version, false),
            };
            let sink = EventSink::default();
            let decided = state.handle(command.clone(), services, &sink).await;
            let events = sink.collect().await;
            if guessed && (decided.is_err() || events.is_empty()) {
                // Only an append can confirm a guess: decide refusals and no-ops on the log.
                continue;
            }
            decided.map_err(CommandError::Domain)?;
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
                    let version = version + events.len();
                    self.cache.put(
                        aggregate_id,
                        &state,
                        version,
                        meta.tenant_id,
                        [meta.command_id],
                    );
                    return Ok(Executed {
                        aggregate_id: aggregate_id.to_owned(),
                        version,
                        events,
                        state,
                        replayed: false,
                    });
                }
                Err(PersistenceError::OptimisticLockError) if guessed => {
                    // The guess was stale: decide again on the log, at no cost to the policy.
                    self.cache.forget::<A>(aggregate_id);
                }
                Err(PersistenceError::OptimisticLockError)
                    if policy == ConflictPolicy::Busy && busy_retries < BUSY_ATTEMPTS =>
                {
                    busy_retries += 1;
                    self.cache.forget::<A>(aggregate_id);
                    // Spread the writers out a little so they stop colliding.
                    let pause = rand::random::<u64>() % (2 * u64::from(busy_retries)) + 1;
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                    tracing::debug!(
                        aggregate_id,
                        busy_retries,
                        "conflict; deciding again on the new state"
                    );
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
                    self.cache.forget::<A>(aggregate_id);
                    return Err(CommandError::Conflict);
                }
                Err(other) => {
                    self.cache.forget::<A>(aggregate_id);
                    return Err(CommandError::Store(other.to_string()));
                }
            }
        }
    }

    /// Loads and folds an aggregate for `meta`'s command: `Ok(Err(executed))` when that command
    /// was already executed (its first outcome), `Ok(Ok((state, version)))` otherwise.
    async fn load_for<A: StoredAggregate>(
        &self,
        aggregate_id: &str,
        meta: &EventMeta,
    ) -> Result<Result<(A, usize), Executed<A>>, CommandError<A::Error>> {
        let stored = self
            .load_serialized::<A>(aggregate_id)
            .await
            .map_err(CommandError::Store)?;
        let mut state = A::default();
        let mut replay: Option<Executed<A>> = None;
        let mut command_ids = Vec::with_capacity(stored.len());
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
            command_ids.push(event_meta.command_id);
            state.apply(payload);
            if let Some(seen) = replay.as_mut().filter(|s| s.version == event.sequence) {
                seen.state = state.clone();
            }
        }
        self.cache.put(
            aggregate_id,
            &state,
            stored.len(),
            meta.tenant_id,
            command_ids,
        );
        Ok(match replay {
            Some(replayed) => Err(replayed),
            None => Ok((state, stored.len())),
        })
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
