//! The real binaries against real PostgreSQL: `kill -9` during catch-up and during a rebuild,
//! export/import, history and replay as of a moment.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use st_tests::process::{eventually, replay_tools, spawn_replay_tools, Server};
use st_tests::TestDb;

/// Seeds `companies × per_company` valid company events in one statement.
async fn seed(pool: &PgPool, companies: i64, per_company: i64) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'company', md5('seed' || c)::uuid::text, s,
                CASE WHEN s = 1 THEN 'CompanyRegistered' ELSE 'MonthlyRateSet' END, '1',
                CASE WHEN s = 1
                     THEN jsonb_build_object('CompanyRegistered', jsonb_build_object('name', 'Seed ' || c, 'monthly_rate', '101.00'))
                     ELSE jsonb_build_object('MonthlyRateSet', jsonb_build_object('monthly_rate', (100 + s) || '.00', 'previous_rate', (99 + s) || '.00'))
                END,
                jsonb_build_object('tenant_id', '00000000-0000-0000-0000-000000000001', 'actor', 'seed',
                                   'command_id', gen_random_uuid(), 'correlation_id', gen_random_uuid(), 'causation_id', null)
           FROM generate_series(1, $1) c, generate_series(1, $2) s
          ORDER BY c, s",
    )
    .bind(companies)
    .bind(per_company)
    .execute(pool)
    .await
    .unwrap();
}

async fn applied(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(events_applied), 0) FROM projection_checkpoints WHERE name = 'companies'")
        .fetch_one(pool)
        .await
        .unwrap()
}

fn assert_success(output: &std::process::Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn kill_9_during_catch_up_then_restart_and_verify() {
    let db = TestDb::new().await;
    let (companies, per_company) = (25_000, 4);
    seed(&db.pool, companies, per_company).await;
    let total = companies * per_company;

    let server = Server::start(&db.url, &[("ST_PROJECTION_BATCH", "100")]);
    eventually(Duration::from_secs(60), "catch-up to start", || async {
        applied(&db.pool).await > 0
    })
    .await;
    server.kill9();
    let at_kill = applied(&db.pool).await;
    assert!(
        at_kill < total,
        "the kill came after catch-up ended ({at_kill} of {total})"
    );

    let server = Server::start(&db.url, &[("ST_PROJECTION_BATCH", "5000")]);
    eventually(Duration::from_secs(120), "catch-up to finish", || async {
        applied(&db.pool).await == total
    })
    .await;
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["projections"][0]["lag"], 0);
    server.stop();

    assert_eq!(db.count("SELECT count(*) FROM companies").await, companies);
    assert_eq!(
        db.count("SELECT count(*) FROM companies WHERE monthly_rate = 104.00 AND version = 4")
            .await,
        companies
    );
    assert_success(
        &replay_tools(&db.url, &["verify"]),
        "verify after kill -9 during catch-up",
    );
}

#[tokio::test]
async fn kill_9_during_rebuild_leaves_the_live_tables_and_a_rerun_succeeds() {
    let db = TestDb::new().await;
    let (companies, per_company) = (50_000, 4);
    seed(&db.pool, companies, per_company).await;
    assert_success(
        &replay_tools(&db.url, &["rebuild", "companies"]),
        "first rebuild",
    );
    let live = "SELECT md5(string_agg(row_to_json(c)::text, '' ORDER BY id)) FROM companies c";
    let before: String = sqlx::query_scalar(live).fetch_one(&db.pool).await.unwrap();

    let mut child = spawn_replay_tools(&db.url, &["rebuild", "companies"]);
    eventually(Duration::from_secs(60), "the rebuild to fill its shadow table", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'companies__rebuild' AND n_tup_ins > 0")
            .fetch_one(&db.pool)
            .await
            .unwrap()
            > 0
    })
    .await;
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the rebuild was killed, not finished");

    let after: String = sqlx::query_scalar(live).fetch_one(&db.pool).await.unwrap();
    assert_eq!(
        before, after,
        "the live table is untouched by an interrupted rebuild"
    );
    assert_success(
        &replay_tools(&db.url, &["verify"]),
        "verify after kill -9 during rebuild",
    );
    assert_success(
        &replay_tools(&db.url, &["rebuild", "--all"]),
        "rebuild again",
    );
    let again: String = sqlx::query_scalar(live).fetch_one(&db.pool).await.unwrap();
    assert_eq!(before, again);
    assert_eq!(
        db.count("SELECT count(*) FROM pg_tables WHERE tablename LIKE '%\\_\\_rebuild'")
            .await,
        0
    );
    assert_success(
        &replay_tools(&db.url, &["verify"]),
        "verify after the second rebuild",
    );
}

async fn post(server: &Server, path: &str, body: serde_json::Value) -> serde_json::Value {
    let client = reqwest::Client::new();
    let reply = client
        .post(server.url(path))
        .bearer_auth(server.token())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success(), "{}", reply.status());
    reply.json().await.unwrap()
}

async fn patch(server: &Server, path: &str, body: serde_json::Value) -> serde_json::Value {
    let client = reqwest::Client::new();
    let reply = client
        .patch(server.url(path))
        .bearer_auth(server.token())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success(), "{}", reply.status());
    reply.json().await.unwrap()
}

#[tokio::test]
async fn export_then_import_into_an_empty_database_reproduces_the_read_models() {
    let source = TestDb::new().await;
    let server = Server::start(&source.url, &[])
        .with_owner(&source.url)
        .await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let company = post(
            &server,
            "/api/v1/companies",
            json!({"name": format!("Export {i}"), "monthly_rate": format!("{i}.25")}),
        )
        .await;
        ids.push(company["id"].as_str().unwrap().to_owned());
    }
    for id in ids.iter().step_by(4) {
        patch(
            &server,
            &format!("/api/v1/companies/{id}"),
            json!({"name": "Renamed", "archived": true}),
        )
        .await;
    }
    server.stop();
    let file = std::env::temp_dir().join(format!("st-export-{}.jsonl", source.name));
    let file = file.to_str().unwrap();
    assert_success(&replay_tools(&source.url, &["export", file]), "export");
    let lines = std::fs::read_to_string(file).unwrap().lines().count() as i64;
    assert_eq!(lines, source.count("SELECT count(*) FROM events").await);

    let target = TestDb::empty().await;
    assert_success(&replay_tools(&target.url, &["import", file]), "import");
    assert_success(
        &replay_tools(&target.url, &["rebuild", "--all"]),
        "rebuild after import",
    );
    let rows = "SELECT string_agg(row_to_json(c)::text, E'\\n' ORDER BY id) FROM companies c";
    let a: String = sqlx::query_scalar(rows)
        .fetch_one(&source.pool)
        .await
        .unwrap();
    let b: String = sqlx::query_scalar(rows)
        .fetch_one(&target.pool)
        .await
        .unwrap();
    assert_eq!(a, b, "every read-model row is reproduced exactly");
    assert_success(
        &replay_tools(&target.url, &["verify"]),
        "verify the imported log",
    );

    // A second import into a non-empty log is refused and changes nothing.
    let again = replay_tools(&target.url, &["import", file]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(target.count("SELECT count(*) FROM events").await, lines);
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn history_and_replay_as_of_show_the_past() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]).with_owner(&db.url).await;
    let owner_id = server.owner.as_ref().unwrap().user_id.clone();
    let company = post(
        &server,
        "/api/v1/companies",
        json!({"name": "Before", "monthly_rate": "10.00"}),
    )
    .await;
    let id = company["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(50)).await;
    patch(
        &server,
        &format!("/api/v1/companies/{id}"),
        json!({"name": "After", "monthly_rate": "20.00"}),
    )
    .await;
    server.stop();

    let history = replay_tools(&db.url, &["history", "company", &id, "--json"]);
    assert_success(&history, "history");
    let text = String::from_utf8_lossy(&history.stdout);
    assert!(
        text.contains("CompanyRegistered")
            && text.contains("CompanyRenamed")
            && text.contains("MonthlyRateSet"),
        "{text}"
    );
    assert!(
        text.contains(&format!("\"{owner_id}\"")),
        "the actor (the token's person) is shown: {text}"
    );

    let registered_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "SELECT recorded_at FROM events WHERE aggregate_id = $1 AND sequence = 1",
    )
    .bind(&id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let as_of = (registered_at + chrono::Duration::milliseconds(1)).to_rfc3339();
    let replay = replay_tools(&db.url, &["replay", "--as-of", &as_of, "company", &id]);
    assert_success(&replay, "replay as of");
    let state: serde_json::Value = serde_json::from_slice(&replay.stdout).unwrap();
    assert_eq!(state["state"]["name"], "Before");
    assert_eq!(state["state"]["monthly_rate"], "10.00");
    assert_eq!(state["version"], 1);

    let now = replay_tools(
        &db.url,
        &[
            "replay",
            "--as-of",
            &chrono::Utc::now().to_rfc3339(),
            "company",
            &id,
        ],
    );
    let state: serde_json::Value = serde_json::from_slice(&now.stdout).unwrap();
    assert_eq!(state["state"]["name"], "After");

    let before = (registered_at - chrono::Duration::seconds(1)).to_rfc3339();
    assert_eq!(
        replay_tools(&db.url, &["replay", "--as-of", &before, "company", &id])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        replay_tools(&db.url, &["replay", "--as-of", "yesterday", "company", &id])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        replay_tools(&db.url, &["history", "widget", &id])
            .status
            .code(),
        Some(2)
    );

    let status = replay_tools(&db.url, &["status", "--json"]);
    assert_success(&status, "status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("\"companies\""), "{text}");
}

#[tokio::test]
async fn verify_finds_a_gap_in_a_sequence_and_an_undecodable_event() {
    let db = TestDb::new().await;
    seed(&db.pool, 3, 2).await;
    assert_success(&replay_tools(&db.url, &["rebuild", "--all"]), "rebuild");
    assert_success(&replay_tools(&db.url, &["verify"]), "verify a clean log");
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'company', aggregate_id, 5, 'MonthlyRateSet', '1', '{\"MonthlyRateSet\": {\"monthly_rate\": 7}}', metadata
           FROM events WHERE sequence = 1 LIMIT 1",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let report = replay_tools(&db.url, &["verify"]);
    assert_eq!(report.status.code(), Some(1));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&report.stdout),
        String::from_utf8_lossy(&report.stderr)
    );
    assert!(
        text.to_lowercase().contains("sequence") || text.contains("gap"),
        "{text}"
    );
    assert!(text.contains("MonthlyRateSet"), "{text}");
}
