//! 8 writers × 2,000 commands on distinct and on shared aggregates while the projections tail:
//! afterwards the read model equals a fresh rebuild and every event was applied exactly once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use commands::{CommandError, ConflictPolicy, EventMeta, EventStore, DEFAULT_TENANT_ID};
use domain::company::{Company, CompanyCommand};
use domain::values::Amount;
use projections::runner::{RunnerConfig, Wakeups};
use projections::{ApplyError, Projection, StoredEvent, Tables};
use sqlx::PgConnection;
use st_tests::TestDb;

use crate::projections_it::register;

const WRITERS: usize = 8;
const COMMANDS_PER_WRITER: usize = 2_000;

/// Records each event it is given in a table whose primary key is the event's position: an
/// event applied twice fails the batch, an event skipped is missing from the count.
struct ExactlyOnce;

#[async_trait]
impl Projection for ExactlyOnce {
    fn name(&self) -> &'static str {
        "exactly_once_probe"
    }
    fn version(&self) -> i32 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        &["probe_applied"]
    }
    async fn apply(
        &self,
        conn: &mut PgConnection,
        tables: &Tables,
        events: &[StoredEvent],
    ) -> Result<(), ApplyError> {
        let positions: Vec<i64> = events.iter().map(|e| e.position.global_position).collect();
        sqlx::query(&format!(
            "INSERT INTO {} (global_position) SELECT unnest($1::int8[])",
            tables.get(0)
        ))
        .bind(positions)
        .execute(conn)
        .await?;
        Ok(())
    }
}

fn rate(writer: usize, i: usize) -> Amount {
    // Distinct per command, so no command is a no-op.
    Amount::parse(
        "monthly_rate",
        &format!("{}.{:02}", writer * 10_000 + i / 100, i % 100),
    )
    .unwrap()
}

async fn tail_while<F: std::future::Future<Output = usize>>(
    db: &TestDb,
    store: &EventStore,
    work: F,
) -> usize {
    sqlx::query("CREATE TABLE probe_applied (global_position bigint PRIMARY KEY)")
        .execute(&db.pool)
        .await
        .unwrap();
    let projections: Vec<Arc<dyn Projection>> = vec![
        Arc::new(projections::companies::CompaniesProjection),
        Arc::new(ExactlyOnce),
    ];
    let runners = projections::runner::spawn_all(
        &db.pool,
        projections,
        Wakeups::start(&db.pool, store.subscribe()),
        RunnerConfig {
            batch_size: 500,
            poll_interval: Duration::from_millis(50),
            ..Default::default()
        },
    );
    let appended = work.await;
    st_tests::process::eventually(
        Duration::from_secs(120),
        "the projections to catch up",
        || async {
            let applied: Vec<i64> = sqlx::query_scalar(
                "SELECT events_applied FROM projection_checkpoints ORDER BY name",
            )
            .fetch_all(&db.pool)
            .await
            .unwrap();
            applied.len() == 2 && applied.iter().all(|&n| n as usize == appended)
        },
    )
    .await;
    for runner in runners {
        runner.abort();
    }
    let statuses: Vec<String> = sqlx::query_scalar("SELECT status FROM projection_checkpoints")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert!(statuses.iter().all(|s| s == "running"), "{statuses:?}");
    assert_eq!(
        db.count("SELECT count(*) FROM events").await as usize,
        appended
    );
    assert_eq!(
        db.count("SELECT count(*) FROM probe_applied").await as usize,
        appended,
        "every event applied exactly once"
    );
    let report =
        projections::rebuild::verify(&db.pool, &projections::companies::CompaniesProjection)
            .await
            .unwrap();
    assert!(
        report.matches(),
        "read model differs from a fresh rebuild: {:?}",
        report.differences
    );
    appended
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_on_distinct_aggregates() {
    let db = TestDb::new().await;
    let store = EventStore::new(db.pool.clone());
    let work = async {
        let writers = (0..WRITERS).map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut appended = 0;
                let mut id = String::new();
                for i in 0..COMMANDS_PER_WRITER {
                    if i % 8 == 0 {
                        id = register(&store, &format!("W{w} #{i}"), "1").await;
                    } else {
                        store
                            .execute::<Company>(
                                &id,
                                CompanyCommand::SetMonthlyRate {
                                    monthly_rate: rate(w, i),
                                },
                                &(),
                                &EventMeta::new(DEFAULT_TENANT_ID, format!("writer:{w}")),
                                ConflictPolicy::Report,
                            )
                            .await
                            .expect("no conflicts on aggregates of one writer");
                    }
                    appended += 1;
                }
                appended
            })
        });
        futures::future::join_all(writers)
            .await
            .into_iter()
            .map(Result::unwrap)
            .sum()
    };
    let appended = tail_while(&db, &store, work).await;
    assert_eq!(appended, WRITERS * COMMANDS_PER_WRITER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_on_shared_aggregates() {
    let db = TestDb::new().await;
    let store = EventStore::new(db.pool.clone());
    let mut shared = Vec::new();
    for i in 0..16 {
        shared.push(register(&store, &format!("Shared {i}"), "1").await);
    }
    let shared = Arc::new(shared);
    let work = async {
        let writers = (0..WRITERS).map(|w| {
            let store = store.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                let (mut appended, mut conflicts) = (0, 0);
                for i in 0..COMMANDS_PER_WRITER {
                    let id = &shared[(i * 7 + w) % shared.len()];
                    let result = store
                        .execute::<Company>(
                            id,
                            CompanyCommand::SetMonthlyRate {
                                monthly_rate: rate(w, i),
                            },
                            &(),
                            &EventMeta::new(DEFAULT_TENANT_ID, format!("writer:{w}")),
                            ConflictPolicy::RetryOnce,
                        )
                        .await;
                    match result {
                        Ok(done) => appended += done.events.len(),
                        Err(CommandError::Conflict) => conflicts += 1,
                        Err(other) => panic!("{other}"),
                    }
                }
                (appended, conflicts)
            })
        });
        let results: Vec<(usize, usize)> = futures::future::join_all(writers)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let conflicts: usize = results.iter().map(|r| r.1).sum();
        let appended: usize = results.iter().map(|r| r.0).sum();
        assert_eq!(appended + conflicts, WRITERS * COMMANDS_PER_WRITER);
        appended + 16
    };
    tail_while(&db, &store, work).await;
    // Each company holds the rate of its last event.
    let wrong = db
        .count(
            "SELECT count(*) FROM companies c JOIN LATERAL (
                SELECT payload FROM events e WHERE e.aggregate_id = c.id::text ORDER BY sequence DESC LIMIT 1) last ON true
              WHERE c.monthly_rate <> coalesce((last.payload->'MonthlyRateSet'->>'monthly_rate')::numeric, 1)",
        )
        .await;
    assert_eq!(wrong, 0);
}
