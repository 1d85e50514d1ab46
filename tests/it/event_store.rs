//! The event store against real PostgreSQL: metadata, idempotency, conflicts, tenants,
//! upcasting.

use std::sync::atomic::{AtomicUsize, Ordering};

use commands::{
    CommandError, ConflictPolicy, EventMeta, EventStore, StoredAggregate, DEFAULT_TENANT_ID,
};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::{Aggregate, DomainEvent};
use domain::company::{Company, CompanyCommand};
use domain::values::{Amount, CompanyName};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};
use st_tests::TestDb;
use uuid::Uuid;

fn register(name: &str) -> CompanyCommand {
    CompanyCommand::Register {
        name: CompanyName::parse(name).unwrap(),
        monthly_rate: Amount::parse("monthly_rate", "100").unwrap(),
        customer_status: Default::default(),
        profile: Default::default(),
    }
}

#[tokio::test]
async fn appended_events_carry_position_transaction_time_and_metadata() {
    let db = TestDb::new().await;
    let store = EventStore::new(db.pool.clone());
    let meta = EventMeta::new(DEFAULT_TENANT_ID, "user:42");
    let id = meta.new_aggregate_id().to_string();
    let done = store
        .execute::<Company>(&id, register("Acme"), &(), &meta, ConflictPolicy::Report)
        .await
        .unwrap();
    assert_eq!(done.version, 1);
    assert!(!done.replayed);
    let row = sqlx::query(
        "SELECT global_position, tx_id::text, recorded_at, metadata, event_type, event_version
           FROM events WHERE aggregate_id = $1",
    )
    .bind(&id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(row.get::<i64, _>(0) > 0);
    assert!(row.get::<String, _>(1).parse::<u64>().unwrap() > 0);
    let metadata: serde_json::Value = row.get(3);
    assert_eq!(metadata["tenant_id"], DEFAULT_TENANT_ID.to_string());
    assert_eq!(metadata["actor"], "user:42");
    assert_eq!(metadata["command_id"], meta.command_id.to_string());
    assert_eq!(metadata["correlation_id"], meta.correlation_id.to_string());
    assert!(metadata.get("causation_id").is_some());
    assert_eq!(row.get::<String, _>(4), "CompanyRegistered");
    assert_eq!(row.get::<String, _>(5), "1");
}

#[tokio::test]
async fn a_command_sent_again_appends_nothing_and_returns_the_first_outcome() {
    let db = TestDb::new().await;
    let store = EventStore::new(db.pool.clone());
    let meta = EventMeta::new(DEFAULT_TENANT_ID, "api");
    let id = meta.new_aggregate_id().to_string();
    let first = store
        .execute::<Company>(&id, register("Acme"), &(), &meta, ConflictPolicy::Report)
        .await
        .unwrap();
    // Same command id, even with a different body: it is the same command.
    let again = store
        .execute::<Company>(&id, register("Other"), &(), &meta, ConflictPolicy::Report)
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.events, first.events);
    assert_eq!(again.state.name, "Acme");
    assert_eq!(again.version, 1);

    // A later command, then the first one again: still nothing new, and the outcome is the
    // state right after the first run, not the current one.
    let rename = EventMeta::new(DEFAULT_TENANT_ID, "api");
    store
        .execute::<Company>(
            &id,
            CompanyCommand::Rename {
                name: CompanyName::parse("Acme 2").unwrap(),
            },
            &(),
            &rename,
            ConflictPolicy::Report,
        )
        .await
        .unwrap();
    let third = store
        .execute::<Company>(&id, register("Acme"), &(), &meta, ConflictPolicy::Report)
        .await
        .unwrap();
    assert!(third.replayed);
    assert_eq!(third.state.name, "Acme");
    assert_eq!(db.count("SELECT count(*) FROM events").await, 2);
}

#[tokio::test]
async fn concurrent_retries_of_one_command_append_once() {
    let db = TestDb::new().await;
    let store = EventStore::new(db.pool.clone());
    let meta = EventMeta::new(DEFAULT_TENANT_ID, "api");
    let id = meta.new_aggregate_id().to_string();
    let attempts = (0..8).map(|_| {
        let store = store.clone();
        let meta = meta.clone();
        let id = id.clone();
        tokio::spawn(async move {
            store
                .execute::<Company>(&id, register("Acme"), &(), &meta, ConflictPolicy::Report)
                .await
        })
    });
    for attempt in futures::future::join_all(attempts).await {
        let done = attempt.unwrap().expect("every retry succeeds");
        assert_eq!(done.version, 1);
    }
    assert_eq!(db.count("SELECT count(*) FROM events").await, 1);
}

#[tokio::test]
async fn another_tenants_aggregate_is_not_found() {
    let db = TestDb::new().await;
    let store = EventStore::new(db.pool.clone());
    let meta = EventMeta::new(DEFAULT_TENANT_ID, "api");
    let id = meta.new_aggregate_id().to_string();
    store
        .execute::<Company>(&id, register("Acme"), &(), &meta, ConflictPolicy::Report)
        .await
        .unwrap();
    let intruder = EventMeta::new(Uuid::new_v4(), "api");
    let result = store
        .execute::<Company>(
            &id,
            CompanyCommand::Archive,
            &(),
            &intruder,
            ConflictPolicy::Report,
        )
        .await;
    assert!(matches!(result, Err(CommandError::NotFound)), "{result:?}");
    assert_eq!(db.count("SELECT count(*) FROM events").await, 1);
}

#[tokio::test]
async fn refused_commands_append_nothing() {
    let db = TestDb::new().await;
    let store = EventStore::new(db.pool.clone());
    let meta = EventMeta::new(DEFAULT_TENANT_ID, "api");
    let result = store
        .execute::<Company>(
            &Uuid::new_v4().to_string(),
            CompanyCommand::Archive,
            &(),
            &meta,
            ConflictPolicy::Report,
        )
        .await;
    assert!(matches!(result, Err(CommandError::Domain(_))));
    assert_eq!(db.count("SELECT count(*) FROM events").await, 0);
}

// A test aggregate whose `handle` lets another writer append first, so conflicts happen on
// purpose rather than by luck.

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Tally {
    total: i64,
    count: i64,
}

#[derive(Debug, Clone)]
struct Add(i64);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum TallyEvent {
    Added { amount: i64 },
}

impl DomainEvent for TallyEvent {
    fn event_type(&self) -> String {
        "Added".into()
    }
    fn event_version(&self) -> String {
        "2".into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

struct Interloper {
    pool: PgPool,
    /// How many more times another writer slips in before our append.
    times: AtomicUsize,
}

impl Aggregate for Tally {
    const TYPE: &'static str = "tally";
    type Command = Add;
    type Event = TallyEvent;
    type Error = Never;
    type Services = Interloper;

    async fn handle(
        &mut self,
        cmd: Add,
        services: &Interloper,
        sink: &EventSink<Self>,
    ) -> Result<(), Never> {
        if services.times.load(Ordering::SeqCst) > 0 {
            services.times.fetch_sub(1, Ordering::SeqCst);
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                 VALUES ('tally', 't', $1, 'Added', '2', '{\"Added\": {\"amount\": 1000}}', $2)",
            )
            .bind(self.count + 1)
            .bind(serde_json::json!({"tenant_id": DEFAULT_TENANT_ID, "actor": "other", "command_id": Uuid::new_v4(), "correlation_id": Uuid::new_v4(), "causation_id": null}))
            .execute(&services.pool)
            .await
            .unwrap();
        }
        sink.write(TallyEvent::Added { amount: cmd.0 }, self).await;
        Ok(())
    }

    fn apply(&mut self, event: TallyEvent) {
        let TallyEvent::Added { amount } = event;
        self.total += amount;
        self.count += 1;
    }
}

/// Version 1 stored `{"Added": {"n": 5}}`; version 2 renamed the field.
struct RenameN;
impl EventUpcaster for RenameN {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        event_type == "Added" && event_version == "1"
    }
    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        let n = event.payload["Added"]["n"].clone();
        event.payload = serde_json::json!({"Added": {"amount": n}});
        event.event_version = "2".into();
        event
    }
}

impl StoredAggregate for Tally {
    fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
        vec![Box::new(RenameN)]
    }
}

#[tokio::test]
async fn a_conflict_is_retried_once_where_allowed_and_reported_otherwise() {
    let db = TestDb::new().await;
    // Without the cache, every command loads first: the interloper then always lands between
    // our load and our append.
    let store = EventStore::new(db.pool.clone()).with_cache_capacity(0);
    let services = Interloper {
        pool: db.pool.clone(),
        times: AtomicUsize::new(1),
    };
    let meta = EventMeta::new(DEFAULT_TENANT_ID, "api");
    let done = store
        .execute::<Tally>("t", Add(1), &services, &meta, ConflictPolicy::RetryOnce)
        .await
        .unwrap();
    // Decided again on the new state: the other writer's 1000 is in it.
    assert_eq!((done.state.total, done.version), (1001, 2));

    services.times.store(1, Ordering::SeqCst);
    let meta = EventMeta::new(DEFAULT_TENANT_ID, "api");
    let reported = store
        .execute::<Tally>("t", Add(1), &services, &meta, ConflictPolicy::Report)
        .await;
    assert!(
        matches!(reported, Err(CommandError::Conflict)),
        "{reported:?}"
    );

    // A writer that wins twice in a row makes even a retried command a conflict.
    services.times.store(2, Ordering::SeqCst);
    let meta = EventMeta::new(DEFAULT_TENANT_ID, "api");
    let twice = store
        .execute::<Tally>("t", Add(1), &services, &meta, ConflictPolicy::RetryOnce)
        .await;
    assert!(matches!(twice, Err(CommandError::Conflict)), "{twice:?}");
    // 2 from the first command, 1 + 2 interlopers: nothing of ours after a reported conflict.
    assert_eq!(
        db.count("SELECT count(*) FROM events WHERE aggregate_type = 'tally'")
            .await,
        5
    );
}

#[tokio::test]
async fn old_event_versions_are_upcast_on_load() {
    let db = TestDb::new().await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('tally', 'old', 1, 'Added', '1', '{\"Added\": {\"n\": 5}}', $1)",
    )
    .bind(serde_json::json!({"tenant_id": DEFAULT_TENANT_ID, "actor": "import", "command_id": Uuid::new_v4(), "correlation_id": Uuid::new_v4()}))
    .execute(&db.pool)
    .await
    .unwrap();
    let store = EventStore::new(db.pool.clone());
    let services = Interloper {
        pool: db.pool.clone(),
        times: AtomicUsize::new(0),
    };
    let done = store
        .execute::<Tally>(
            "old",
            Add(2),
            &services,
            &EventMeta::new(DEFAULT_TENANT_ID, "t"),
            ConflictPolicy::Report,
        )
        .await
        .unwrap();
    assert_eq!(done.state.total, 7);
    // The stored event itself is never rewritten.
    let version: String = sqlx::query_scalar(
        "SELECT event_version FROM events WHERE aggregate_id = 'old' AND sequence = 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(version, "1");
}

#[tokio::test]
async fn a_cache_made_stale_by_another_process_costs_a_reload_not_a_wrong_decision() {
    let db = TestDb::new().await;
    let here = EventStore::new(db.pool.clone());
    let there = EventStore::new(db.pool.clone());
    let meta = || EventMeta::new(DEFAULT_TENANT_ID, "api");
    let rate = |s: &str| Amount::parse("monthly_rate", s).unwrap();
    let id = meta().new_aggregate_id().to_string();
    here.create::<Company>(&id, register("Acme"), &(), &meta())
        .await
        .unwrap();
    // `there` changes the company; `here` still has the old state cached.
    there
        .execute::<Company>(
            &id,
            CompanyCommand::SetMonthlyRate {
                monthly_rate: rate("200"),
            },
            &(),
            &meta(),
            ConflictPolicy::Report,
        )
        .await
        .unwrap();
    let done = here
        .execute::<Company>(
            &id,
            CompanyCommand::SetMonthlyRate {
                monthly_rate: rate("300"),
            },
            &(),
            &meta(),
            ConflictPolicy::Report,
        )
        .await
        .expect("a stale cache is not the user's conflict");
    assert_eq!(done.version, 3);
    assert!(
        matches!(&done.events[..], [domain::company::CompanyEvent::MonthlyRateSet { previous_rate, .. }] if *previous_rate == rate("200"))
    );

    // A no-op or a refusal decided on a stale cache is checked against the log.
    there
        .execute::<Company>(
            &id,
            CompanyCommand::SetMonthlyRate {
                monthly_rate: rate("400"),
            },
            &(),
            &meta(),
            ConflictPolicy::Report,
        )
        .await
        .unwrap();
    let same = here
        .execute::<Company>(
            &id,
            CompanyCommand::SetMonthlyRate {
                monthly_rate: rate("300"),
            },
            &(),
            &meta(),
            ConflictPolicy::Report,
        )
        .await
        .unwrap();
    assert_eq!(
        same.events.len(),
        1,
        "300 is not the current rate any more (400 is)"
    );
    there
        .execute::<Company>(
            &id,
            CompanyCommand::Archive,
            &(),
            &meta(),
            ConflictPolicy::Report,
        )
        .await
        .unwrap();
    there
        .execute::<Company>(
            &id,
            CompanyCommand::Restore,
            &(),
            &meta(),
            ConflictPolicy::Report,
        )
        .await
        .unwrap();
    // `here` last saw it active; `there` archived and restored it: restoring again is refused
    // on the log's state, not accepted on the cache's.
    let refused = here
        .execute::<Company>(
            &id,
            CompanyCommand::Restore,
            &(),
            &meta(),
            ConflictPolicy::Report,
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(CommandError::Domain(
                domain::company::CompanyError::NotArchived
            ))
        ),
        "{refused:?}"
    );
    assert_eq!(db.count("SELECT count(*) FROM events").await, 7);
}

#[tokio::test]
async fn create_without_a_load_still_finds_an_existing_aggregate() {
    let db = TestDb::new().await;
    let store = EventStore::new(db.pool.clone());
    let other = EventStore::new(db.pool.clone());
    let meta = EventMeta::new(DEFAULT_TENANT_ID, "api");
    let id = meta.new_aggregate_id().to_string();
    let first = store
        .create::<Company>(&id, register("Acme"), &(), &meta)
        .await
        .unwrap();
    // The same command through another process (no cache): the first outcome, nothing new.
    let again = other
        .create::<Company>(&id, register("Acme"), &(), &meta)
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.events, first.events);
    // A different command on the same id: refused as already registered.
    let clash = other
        .create::<Company>(
            &id,
            register("Other"),
            &(),
            &EventMeta::new(DEFAULT_TENANT_ID, "api"),
        )
        .await;
    assert!(
        matches!(
            clash,
            Err(CommandError::Domain(
                domain::company::CompanyError::AlreadyRegistered
            ))
        ),
        "{clash:?}"
    );
    assert_eq!(db.count("SELECT count(*) FROM events").await, 1);
}

#[tokio::test]
async fn numbers_stay_gapless_and_paired_with_their_records_across_processes() {
    // Three processes (stores with their own caches and sequence slots) and six writers in
    // each, all numbering from one sequence; writers of different processes share records,
    // so both the number and the record's next sequence are contended.
    let db = TestDb::new().await;
    let services = std::sync::Arc::new(Interloper {
        pool: db.pool.clone(),
        times: AtomicUsize::new(0),
    });
    let mut tasks = Vec::new();
    for _process in 0..3 {
        let store = EventStore::new(db.pool.clone());
        for writer in 0..6 {
            let (store, services) = (store.clone(), services.clone());
            tasks.push(tokio::spawn(async move {
                let id = format!("tally-{writer}");
                for _ in 0..10 {
                    let meta = EventMeta::new(DEFAULT_TENANT_ID, "test");
                    let done = store
                        .execute_numbered::<Tally>(
                            &id,
                            "test",
                            |number| Add(number as i64),
                            &services,
                            &meta,
                        )
                        .await
                        .expect("numbered");
                    assert!(!done.replayed);
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let issued: Vec<(i64, String)> = sqlx::query_as(
        "SELECT (payload->'NumberIssued'->>'number')::bigint,
                payload->'NumberIssued'->>'aggregate_id'
           FROM events WHERE aggregate_type = 'sequence' ORDER BY sequence",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let numbers: Vec<i64> = issued.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, (1..=180).collect::<Vec<_>>(), "gapless, each once");
    // Each number went to the record it was issued to, in the same append.
    for (number, aggregate_id) in &issued {
        let amounts: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE aggregate_type = 'tally' AND aggregate_id = $1
                AND (payload->'Added'->>'amount')::bigint = $2",
        )
        .bind(aggregate_id)
        .bind(number)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(amounts, 1, "number {number} on {aggregate_id}");
    }
    assert_eq!(
        db.count("SELECT count(*) FROM events WHERE aggregate_type = 'tally'")
            .await,
        180
    );
}

#[tokio::test]
async fn a_number_taken_by_another_process_is_read_again_not_reused() {
    let db = TestDb::new().await;
    let services = Interloper {
        pool: db.pool.clone(),
        times: AtomicUsize::new(0),
    };
    let here = EventStore::new(db.pool.clone());
    let there = EventStore::new(db.pool.clone());
    let take = |store: &EventStore, id: &'static str| {
        let store = store.clone();
        let services = &services;
        async move {
            let meta = EventMeta::new(DEFAULT_TENANT_ID, "test");
            store
                .execute_numbered::<Tally>(id, "test", |n| Add(n as i64), services, &meta)
                .await
                .unwrap()
                .state
                .total
        }
    };
    assert_eq!(take(&here, "a").await, 1);
    // `here` remembers 1 as its last number; `there` takes 2 and 3.
    assert_eq!(take(&there, "b").await, 2);
    assert_eq!(take(&there, "c").await, 3);
    // `here` tries 2, finds it taken, reads the log and takes 4.
    assert_eq!(take(&here, "a").await, 1 + 4);
    assert_eq!(take(&here, "d").await, 5);
}
