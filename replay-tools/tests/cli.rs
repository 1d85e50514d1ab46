//! The `replay-tools` binary against a real PostgreSQL: events appended through the real
//! command path, then every subcommand but `bench`, including an export imported into an
//! empty database that must rebuild into the very same read model.
//!
//! The server is `DATABASE_URL` when set, else a throwaway private cluster (fsync off) under
//! the system temp dir. Each run works in two scratch databases it creates and drops.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use commands::{ConflictPolicy, EventMeta, EventStore, DEFAULT_TENANT_ID};
use domain::company::{Company, CompanyChanges, CompanyCommand};
use domain::values::{Amount, CompanyName};
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};

fn replay_tools(url: &str, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_replay-tools"))
        .args(args)
        .env("DATABASE_URL", url)
        .env_remove("ST_LOG")
        .output()
        .expect("run replay-tools");
    eprintln!(
        "$ replay-tools {}\n-> {:?}\n{}{}",
        args.join(" "),
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Executes a company command through the real command path.
async fn execute(store: &EventStore, id: &str, command: CompanyCommand, meta: &EventMeta) {
    store
        .execute::<Company>(id, command, &(), meta, ConflictPolicy::Report)
        .await
        .expect("command succeeds");
}

async fn read_model(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT row_to_json(c)::text FROM companies c ORDER BY tenant_id, id")
        .fetch_all(pool)
        .await
        .unwrap()
}

struct Scratch {
    admin_url: String,
    names: Vec<String>,
}

impl Scratch {
    async fn create(&mut self, url_for: impl Fn(&str) -> String) -> String {
        let name = format!(
            "st_rt_it_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut admin = PgConnection::connect(&self.admin_url).await.unwrap();
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        self.names.push(name.clone());
        url_for(&name)
    }

    async fn drop_all(&self) {
        let mut admin = PgConnection::connect(&self.admin_url).await.unwrap();
        for name in &self.names {
            sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .unwrap();
        }
    }
}

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("replay-tools-it-{}-{name}", std::process::id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_against_a_real_database() {
    let mut options = pgboot::BootOptions::new(std::env::temp_dir().join("replay-tools-it-pg"));
    options.fast_unsafe = true;
    let boot = tokio::task::spawn_blocking(move || pgboot::PgBoot::start(&options))
        .await
        .unwrap()
        .expect("PostgreSQL for the test (set DATABASE_URL or install PostgreSQL 15)");
    let mut scratch = Scratch {
        admin_url: boot.url_for("postgres"),
        names: Vec::new(),
    };
    let source = scratch.create(|db| boot.url_for(db)).await;
    let target = scratch.create(|db| boot.url_for(db)).await;
    let export = temp_file("export.jsonl");
    let outcome = {
        let (source, target, export) = (source.clone(), target.clone(), export.clone());
        tokio::spawn(async move { scenario(&source, &target, &export).await }).await
    };
    let _ = std::fs::remove_file(&export);
    scratch.drop_all().await;
    drop(boot);
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

async fn scenario(source: &str, target: &str, export: &Path) {
    // An empty, migrated database: the tools migrate on start.
    let status = replay_tools(source, &["status", "--json"]);
    assert_eq!(code(&status), 0);
    assert_eq!(stdout_json(&status)[0]["status"], "not started");

    // Events through the real command path.
    let pool = commands::db::connect(source, 4).await.unwrap();
    let store = EventStore::new(pool.clone());
    let before_everything = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let meta = EventMeta::new(DEFAULT_TENANT_ID, "user:test");
        let id = meta.new_aggregate_id().to_string();
        let command = CompanyCommand::Register {
            name: CompanyName::parse(&format!("Company {i}")).unwrap(),
            monthly_rate: Amount::parse("monthly_rate", "100").unwrap(),
            customer_status: Default::default(),
            profile: Default::default(),
        };
        execute(&store, &id, command, &meta).await;
        ids.push(id);
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    for (i, id) in ids.iter().enumerate() {
        let meta = EventMeta::new(DEFAULT_TENANT_ID, "user:test");
        let changes = CompanyChanges {
            name: (i % 2 == 0).then(|| CompanyName::parse(&format!("Renamed {i}")).unwrap()),
            monthly_rate: Some(Amount::parse("monthly_rate", &format!("{}.50", 200 + i)).unwrap()),
            archived: Some(i % 3 == 0),
            ..Default::default()
        };
        execute(&store, id, CompanyCommand::Update(changes), &meta).await;
    }
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(events, 12 + 6 + 12 + 4);

    // rebuild
    let unknown = replay_tools(source, &["rebuild", "nope"]);
    assert_eq!(code(&unknown), 2);
    assert!(
        stderr(&unknown).contains("known: companies"),
        "{}",
        stderr(&unknown)
    );
    assert_eq!(code(&replay_tools(source, &["rebuild"])), 2);
    let rebuilt = replay_tools(source, &["rebuild", "--all"]);
    assert_eq!(code(&rebuilt), 0);
    assert!(
        String::from_utf8_lossy(&rebuilt.stdout).contains(&format!("rebuilt from {events} events"))
    );

    // status
    let status = stdout_json(&replay_tools(source, &["status", "--json"]));
    assert_eq!(status[0]["name"], "companies");
    assert_eq!(status[0]["events_applied"], events);
    assert_eq!(status[0]["lag"], 0);
    assert_eq!(status[0]["status"], "running");
    let table = replay_tools(source, &["status"]);
    assert!(String::from_utf8_lossy(&table.stdout).starts_with("PROJECTION"));

    // history
    let history = stdout_json(&replay_tools(
        source,
        &["history", "company", &ids[0], "--json"],
    ));
    let listed = history["events"].as_array().unwrap();
    let types: Vec<&str> = listed
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "CompanyRegistered",
            "CompanyRenamed",
            "MonthlyRateSet",
            "CompanyArchived"
        ]
    );
    assert_eq!(listed[0]["sequence"], 1);
    assert_eq!(listed[0]["actor"], "user:test");
    assert_eq!(
        listed[1]["payload"]["CompanyRenamed"]["previous_name"],
        "Company 0"
    );
    let missing = replay_tools(source, &["history", "company", "no-such-id"]);
    assert_eq!(code(&missing), 2);
    assert!(stderr(&missing).contains("no events for company no-such-id"));
    let unknown = replay_tools(source, &["history", "spaceship", "x"]);
    assert_eq!(code(&unknown), 2);
    assert!(stderr(&unknown).contains("known: company"));

    // replay --as-of
    let then = stdout_json(&replay_tools(
        source,
        &["replay", "--as-of", &rfc3339(between), "company", &ids[0]],
    ));
    assert_eq!(then["events"], 1);
    assert_eq!(then["version"], 1);
    assert_eq!(then["state"]["name"], "Company 0");
    assert_eq!(then["state"]["monthly_rate"], "100.00");
    assert_eq!(then["state"]["archived"], false);
    let now = stdout_json(&replay_tools(
        source,
        &[
            "replay",
            "--as-of",
            &rfc3339(Utc::now()),
            "company",
            &ids[0],
        ],
    ));
    assert_eq!(now["version"], 4);
    assert_eq!(now["state"]["name"], "Renamed 0");
    assert_eq!(now["state"]["monthly_rate"], "200.50");
    assert_eq!(now["state"]["archived"], true);
    let early = replay_tools(
        source,
        &[
            "replay",
            "--as-of",
            &rfc3339(before_everything),
            "company",
            &ids[0],
        ],
    );
    assert_eq!(code(&early), 2);
    assert!(
        stderr(&early).contains("did not exist yet"),
        "{}",
        stderr(&early)
    );
    let bad_time = replay_tools(
        source,
        &["replay", "--as-of", "last tuesday", "company", &ids[0]],
    );
    assert_eq!(code(&bad_time), 2);

    // verify
    let verified = replay_tools(source, &["verify"]);
    assert_eq!(code(&verified), 0);
    assert!(String::from_utf8_lossy(&verified.stdout).contains("verify: OK"));

    // export, import into an empty database, rebuild: the same read model
    let export_arg = export.to_str().unwrap();
    assert_eq!(code(&replay_tools(source, &["export", export_arg])), 0);
    let exported = std::fs::read_to_string(export).unwrap();
    assert_eq!(exported.lines().count() as i64, events);
    let first: Value = serde_json::from_str(exported.lines().next().unwrap()).unwrap();
    assert!(first["recorded_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(first["sequence"], 1);
    let missing_file = replay_tools(target, &["import", "/no/such/file.jsonl"]);
    assert_eq!(code(&missing_file), 2);
    let imported = replay_tools(target, &["import", export_arg, "--rebuild"]);
    assert_eq!(code(&imported), 0);
    let target_pool = commands::db::connect(target, 2).await.unwrap();
    assert_eq!(read_model(&pool).await, read_model(&target_pool).await);
    assert_eq!(read_model(&pool).await.len(), 12);
    assert_eq!(code(&replay_tools(target, &["verify"])), 0);
    let again = replay_tools(target, &["import", export_arg]);
    assert_eq!(code(&again), 2);
    assert!(stderr(&again).contains("import needs an empty events table"));
    // The re-export is byte for byte the same log.
    let reexport = export.with_extension("again");
    assert_eq!(
        code(&replay_tools(
            target,
            &["export", reexport.to_str().unwrap()]
        )),
        0
    );
    assert_eq!(std::fs::read_to_string(&reexport).unwrap(), exported);
    let _ = std::fs::remove_file(&reexport);

    // An invalid line refuses the whole import.
    let broken = export.with_extension("broken");
    let mut lines: Vec<&str> = exported.lines().collect();
    lines[3] = r#"{"aggregate_type":"company"}"#;
    std::fs::write(&broken, lines.join("\n")).unwrap();
    sqlx::query("TRUNCATE events")
        .execute(&target_pool)
        .await
        .unwrap();
    let refused = replay_tools(target, &["import", broken.to_str().unwrap()]);
    let _ = std::fs::remove_file(&broken);
    assert_eq!(code(&refused), 2);
    assert!(stderr(&refused).contains("line 4:"), "{}", stderr(&refused));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&target_pool)
        .await
        .unwrap();
    assert_eq!(left, 0);

    // verify finds a gap, an undecodable event and a tampered read model.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         SELECT aggregate_type, aggregate_id, 9, 'CompanyRenamed', '1', '{\"Nope\": {}}', metadata
           FROM events WHERE aggregate_id = $1 AND sequence = 1",
    )
    .bind(&ids[1])
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE companies SET name = 'Tampered' WHERE id = $1::uuid")
        .bind(&ids[2])
        .execute(&pool)
        .await
        .unwrap();
    let problems = replay_tools(source, &["verify"]);
    assert_eq!(code(&problems), 1);
    let report = String::from_utf8_lossy(&problems.stdout);
    assert!(report.contains("1 do not decode"), "{report}");
    assert!(report.contains("1 not contiguous"), "{report}");
    assert!(report.contains("DIFFERS from a rebuild"), "{report}");
    assert!(report.contains("Tampered"), "{report}");

    pool.close().await;
    target_pool.close().await;
}
