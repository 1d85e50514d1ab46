//! The catch-up runner, rebuild and verify against real PostgreSQL.

use std::time::Duration;

use commands::{ConflictPolicy, EventMeta, EventStore, DEFAULT_TENANT_ID};
use domain::company::{Company, CompanyCommand};
use domain::values::{Amount, CompanyName};
use projections::companies::CompaniesProjection;
use projections::event::read_batch;
use projections::rebuild::{rebuild, verify, RebuildOptions};
use projections::runner::{catch_up, CatchUp, RunnerConfig};
use projections::Position;
use st_tests::TestDb;

pub async fn register(store: &EventStore, name: &str, rate: &str) -> String {
    let meta = EventMeta::new(DEFAULT_TENANT_ID, "test");
    let id = meta.new_aggregate_id().to_string();
    store
        .execute::<Company>(
            &id,
            CompanyCommand::Register {
                name: CompanyName::parse(name).unwrap(),
                monthly_rate: Amount::parse("monthly_rate", rate).unwrap(),
                customer_status: Default::default(),
                profile: Default::default(),
            },
            &(),
            &meta,
            ConflictPolicy::Report,
        )
        .await
        .unwrap();
    id
}

/// Catches up until nothing lags. One pass is not enough when another database of the same
/// cluster has a transaction open: xids are cluster-wide, so the guarded reader waits for it.
async fn run_catch_up(db: &TestDb) -> CatchUp {
    let mut conn = db.pool.acquire().await.unwrap();
    let config = RunnerConfig {
        batch_size: 7,
        ..Default::default()
    };
    let mut total = 0;
    loop {
        match catch_up(&db.pool, &mut conn, &CompaniesProjection, &config)
            .await
            .unwrap()
        {
            CatchUp::CaughtUp { applied } => total += applied,
            failed => return failed,
        }
        let status = &projections::status::all(&db.pool).await.unwrap()[0];
        if status.lag == 0 {
            return CatchUp::CaughtUp { applied: total };
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_reader_never_passes_a_transaction_still_in_flight() {
    let db = TestDb::new().await;
    let insert = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                  VALUES ('probe', $1, 1, 'Probed', '1', '{}',
                          jsonb_build_object('tenant_id', gen_random_uuid(), 'actor', 't',
                                             'command_id', gen_random_uuid(), 'correlation_id', gen_random_uuid()))";
    // A takes its position first and commits last; B commits in between.
    let mut a = db.pool.begin().await.unwrap();
    sqlx::query(insert)
        .bind("a")
        .execute(&mut *a)
        .await
        .unwrap();
    let mut b = db.pool.begin().await.unwrap();
    sqlx::query(insert)
        .bind("b")
        .execute(&mut *b)
        .await
        .unwrap();
    b.commit().await.unwrap();

    let seen = read_batch(&db.pool, Position::START, Position::END, 100)
        .await
        .unwrap();
    assert!(
        seen.is_empty(),
        "B must wait for A, or a checkpoint after B would skip A"
    );

    a.commit().await.unwrap();
    // Other tests' transactions on the same cluster may hold the horizon back a moment.
    let mut seen = Vec::new();
    for _ in 0..500 {
        seen = read_batch(&db.pool, Position::START, Position::END, 100)
            .await
            .unwrap();
        if seen.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ids: Vec<_> = seen.iter().map(|e| e.aggregate_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    // Reading on from A's event returns B: nothing is skipped either way.
    let after_a = read_batch(&db.pool, seen[0].position, Position::END, 100)
        .await
        .unwrap();
    assert_eq!(after_a.len(), 1);
    assert_eq!(after_a[0].aggregate_id, "b");
}

#[tokio::test]
async fn catch_up_builds_the_read_model_in_batches() {
    let db = TestDb::new().await;
    let store = EventStore::new(db.pool.clone());
    for i in 0..20 {
        register(&store, &format!("Company {i:02}"), "10.5").await;
    }
    assert_eq!(run_catch_up(&db).await, CatchUp::CaughtUp { applied: 20 });
    assert_eq!(db.count("SELECT count(*) FROM companies").await, 20);
    assert_eq!(
        db.count("SELECT count(*) FROM companies WHERE monthly_rate = 10.50")
            .await,
        20
    );
    // Nothing new: nothing applied, nothing doubled.
    assert_eq!(run_catch_up(&db).await, CatchUp::CaughtUp { applied: 0 });
    assert_eq!(
        db.count("SELECT events_applied FROM projection_checkpoints WHERE name = 'companies'")
            .await,
        20
    );
}

#[tokio::test]
async fn a_failing_projection_stops_at_the_failing_event_and_resumes_after_the_fix() {
    let db = TestDb::new().await;
    let store = EventStore::new(db.pool.clone());
    // A read-model constraint that one event breaks stands in for any projection fault.
    sqlx::query("ALTER TABLE companies ADD CONSTRAINT no_boom CHECK (name <> 'boom')")
        .execute(&db.pool)
        .await
        .unwrap();
    for name in ["one", "two", "boom", "four"] {
        register(&store, name, "1").await;
    }
    let CatchUp::Failed { position, error } = run_catch_up(&db).await else {
        panic!("the projection should stop");
    };
    assert!(error.contains("no_boom"), "{error}");
    // Everything before the failing event is applied, nothing after it.
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM companies ORDER BY name")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(names, ["one", "two"]);
    let status = &projections::status::all(&db.pool).await.unwrap()[0];
    assert_eq!(status.status, "failed");
    assert_eq!(status.failed_position, Some(position.global_position));
    assert_eq!(status.lag, 2);
    assert!(!status.healthy());

    // Still failing: stays where it is.
    assert!(matches!(run_catch_up(&db).await, CatchUp::Failed { .. }));
    assert_eq!(db.count("SELECT count(*) FROM companies").await, 2);

    sqlx::query("ALTER TABLE companies DROP CONSTRAINT no_boom")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(run_catch_up(&db).await, CatchUp::CaughtUp { applied: 2 });
    assert_eq!(db.count("SELECT count(*) FROM companies").await, 4);
    let status = &projections::status::all(&db.pool).await.unwrap()[0];
    assert_eq!(
        (status.status.as_str(), status.lag, status.events_applied),
        ("running", 0, 4)
    );
    assert!(verify(&db.pool, &CompaniesProjection)
        .await
        .unwrap()
        .matches());
}

#[tokio::test]
async fn a_rebuild_reproduces_the_rows_and_keeps_index_names() {
    let db = TestDb::new().await;
    let store = EventStore::new(db.pool.clone());
    for i in 0..50 {
        let id = register(&store, &format!("C{i}"), "5").await;
        if i % 3 == 0 {
            store
                .execute::<Company>(
                    &id,
                    CompanyCommand::Archive,
                    &(),
                    &EventMeta::new(DEFAULT_TENANT_ID, "t"),
                    ConflictPolicy::Report,
                )
                .await
                .unwrap();
        }
    }
    run_catch_up(&db).await;
    let snapshot = "SELECT string_agg(row_to_json(c)::text, E'\\n' ORDER BY id) FROM companies c";
    let before: String = sqlx::query_scalar(snapshot)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let indexes = "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'companies'";
    let index_names: String = sqlx::query_scalar(indexes)
        .fetch_one(&db.pool)
        .await
        .unwrap();

    let mut calls = 0;
    let report = rebuild(
        &db.pool,
        &CompaniesProjection,
        &RebuildOptions { batch_size: 16 },
        |_, _| calls += 1,
    )
    .await
    .unwrap();
    assert_eq!(report.events, 67);
    assert!(calls >= 5, "progress is reported per batch");
    let after: String = sqlx::query_scalar(snapshot)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        before, after,
        "a rebuild gives the same rows, byte for byte"
    );
    let after_names: String = sqlx::query_scalar(indexes)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(index_names, after_names);
    assert_eq!(
        db.count("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'companies\\_\\_%'")
            .await,
        0
    );

    // The checkpoint moved to the end of the log; a catch-up finds nothing to do.
    assert_eq!(run_catch_up(&db).await, CatchUp::CaughtUp { applied: 0 });
    assert!(verify(&db.pool, &CompaniesProjection)
        .await
        .unwrap()
        .matches());
}

#[tokio::test]
async fn verify_reports_a_read_model_that_drifted() {
    let db = TestDb::new().await;
    let store = EventStore::new(db.pool.clone());
    register(&store, "Acme", "100").await;
    register(&store, "Globex", "200").await;
    run_catch_up(&db).await;
    sqlx::query("UPDATE companies SET monthly_rate = 999 WHERE name = 'Acme'")
        .execute(&db.pool)
        .await
        .unwrap();
    let report = verify(&db.pool, &CompaniesProjection).await.unwrap();
    assert!(!report.matches());
    assert_eq!(report.differences.len(), 2, "{:?}", report.differences);
    assert!(report.differences.iter().any(|d| d.contains("999")));
    // Scratch tables are gone afterwards.
    assert_eq!(
        db.count("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'companies\\_\\_%'")
            .await,
        0
    );
}

#[tokio::test]
async fn a_rebuild_while_the_runner_tails_loses_and_doubles_nothing() {
    let db = TestDb::new().await;
    let store = EventStore::new(db.pool.clone());
    for i in 0..200 {
        register(&store, &format!("Before {i}"), "1").await;
    }
    let wakeups = projections::runner::Wakeups::start(&db.pool, store.subscribe());
    let runners = projections::runner::spawn_all(
        &db.pool,
        projections::all(),
        wakeups,
        RunnerConfig {
            batch_size: 10,
            poll_interval: Duration::from_millis(20),
            ..Default::default()
        },
    );
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                register(&store, &format!("During {i}"), "2").await;
            }
        })
    };
    for _ in 0..3 {
        rebuild(
            &db.pool,
            &CompaniesProjection,
            &RebuildOptions { batch_size: 25 },
            |_, _| {},
        )
        .await
        .unwrap();
    }
    writer.await.unwrap();
    st_tests::settle(&db.pool).await;
    for runner in runners {
        runner.abort();
    }
    assert_eq!(db.count("SELECT count(*) FROM companies").await, 400);
    assert!(verify(&db.pool, &CompaniesProjection)
        .await
        .unwrap()
        .matches());
}

#[tokio::test]
async fn runners_in_other_processes_are_woken_by_notify_not_by_polling() {
    let db = TestDb::new().await;
    let runner_side = EventStore::new(db.pool.clone());
    // Polling every minute: only NOTIFY can wake this runner in time.
    let runners = projections::runner::spawn_all(
        &db.pool,
        projections::all(),
        projections::runner::Wakeups::start(&db.pool, runner_side.subscribe()),
        RunnerConfig {
            poll_interval: Duration::from_secs(60),
            ..Default::default()
        },
    );
    st_tests::process::eventually(Duration::from_secs(10), "the runner to start", || async {
        db.count("SELECT count(*) FROM projection_checkpoints")
            .await
            == projections::all().len() as i64
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Another "process": its own store, whose in-process signal this runner does not hear.
    let writer_side = EventStore::new(db.pool.clone());
    let started = std::time::Instant::now();
    register(&writer_side, "Woken", "1").await;
    st_tests::process::eventually(Duration::from_secs(10), "the company to appear", || async {
        db.count("SELECT count(*) FROM companies").await == 1
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken after {:?}",
        started.elapsed()
    );
    for runner in runners {
        runner.abort();
    }
}

#[tokio::test]
async fn one_runner_per_projection_across_processes() {
    let db = TestDb::new().await;
    let store = EventStore::new(db.pool.clone());
    let config = RunnerConfig {
        poll_interval: Duration::from_millis(20),
        ..Default::default()
    };
    // Two "instances", each with its own pool, as two processes would have.
    // Each runner keeps a connection for its lock and reads through the pool besides: a pool
    // with fewer connections than projections starves them (as `serve` sizes its pool).
    let other_pool = commands::db::connect(&db.url, projections::all().len() as u32 + 5)
        .await
        .unwrap();
    let mut runners = projections::runner::spawn_all(
        &db.pool,
        projections::all(),
        projections::runner::Wakeups::polling_only(),
        config.clone(),
    );
    // The first instance holds the lock (it created the checkpoint) before the second starts.
    st_tests::process::eventually(
        Duration::from_secs(10),
        "the first runner to start",
        || async {
            db.count("SELECT count(*) FROM projection_checkpoints")
                .await
                == projections::all().len() as i64
        },
    )
    .await;
    runners.extend(projections::runner::spawn_all(
        &other_pool,
        projections::all(),
        projections::runner::Wakeups::polling_only(),
        config,
    ));
    for i in 0..300 {
        register(&store, &format!("C{i}"), "1").await;
    }
    st_tests::settle(&db.pool).await;
    let holders: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        holders,
        projections::all().len() as i64,
        "one runner per projection holds its lock"
    );
    assert_eq!(
        db.count("SELECT events_applied FROM projection_checkpoints")
            .await,
        300
    );
    assert!(verify(&db.pool, &CompaniesProjection)
        .await
        .unwrap()
        .matches());

    // The holder's process dies: the standby takes over.
    for runner in runners.drain(..projections::all().len()) {
        runner.abort();
    }
    db.pool.close().await;
    let pool = commands::db::connect(&db.url, 5).await.unwrap();
    let store = EventStore::new(pool.clone());
    register(&store, "After failover", "1").await;
    st_tests::process::eventually(
        Duration::from_secs(20),
        "the standby to take over",
        || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM companies")
                .fetch_one(&pool)
                .await
                .unwrap()
                == 301
        },
    )
    .await;
    for runner in runners {
        runner.abort();
    }
}
