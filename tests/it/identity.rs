//! Identity on the write side: bootstrap, address reservations, secrets kept out of the log.

use std::process::Command;

use commands::identity::{bootstrap, reserve_email, BootstrapError, NewTenant, ReserveError};
use commands::EventStore;
use domain::identity::{Currency, Email, TimeZone};
use st_tests::{bin_path, TestDb};
use uuid::Uuid;

fn new_tenant(email: &str, password: &str) -> NewTenant {
    NewTenant {
        tenant_name: "Acme IT".into(),
        owner_name: "Ann Owner".into(),
        email: Email::parse(email).unwrap(),
        password: password.into(),
        currency: Currency::parse("EUR").unwrap(),
        time_zone: TimeZone::parse("Europe/Paris").unwrap(),
    }
}

#[tokio::test]
async fn bootstrap_creates_a_tenant_its_owner_and_a_token_and_stores_no_secret() {
    let db = TestDb::new().await;
    let store = EventStore::new(db.pool.clone());
    let password = "correct horse battery staple";
    let done = bootstrap(&store, new_tenant("ann@example.com", password))
        .await
        .unwrap();
    assert!(done.api_token.starts_with("st_"));
    let types: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM events ORDER BY global_position")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        types,
        [
            "TenantCreated",
            "MemberAdded",
            "UserRegistered",
            "PasswordSet",
            "ApiTokenCreated"
        ]
    );
    let everything: String =
        sqlx::query_scalar("SELECT string_agg(payload::text || metadata::text, ' ') FROM events")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(
        !everything.contains(password),
        "the password is not in the log"
    );
    assert!(
        !everything.contains(&done.api_token),
        "the token is not in the log"
    );
    assert!(
        !everything.contains(&done.api_token[3..]),
        "not even without its prefix"
    );
    assert!(everything.contains("$argon2id$"), "only its hash");
    assert!(
        everything.contains(&commands::identity::token_digest(&done.api_token)),
        "only the token's digest"
    );
    let tenant_of_event: String =
        sqlx::query_scalar("SELECT DISTINCT metadata->>'tenant_id' FROM events")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        tenant_of_event,
        done.tenant_id.to_string(),
        "every event belongs to the new tenant"
    );
}

#[tokio::test]
async fn an_address_in_use_creates_nothing() {
    let db = TestDb::new().await;
    let store = EventStore::new(db.pool.clone());
    bootstrap(
        &store,
        new_tenant("ann@example.com", "long enough password"),
    )
    .await
    .unwrap();
    let events = db.count("SELECT count(*) FROM events").await;
    let again = bootstrap(
        &store,
        new_tenant("ANN@Example.com", "another long password"),
    )
    .await;
    assert!(
        matches!(again, Err(BootstrapError::EmailTaken(_))),
        "{again:?}"
    );
    let short = bootstrap(&store, new_tenant("bob@example.com", "short")).await;
    assert!(
        matches!(short, Err(BootstrapError::Invalid(_))),
        "{short:?}"
    );
    assert_eq!(db.count("SELECT count(*) FROM events").await, events);
    assert_eq!(db.count("SELECT count(*) FROM user_emails").await, 1);
}

#[tokio::test]
async fn of_two_people_racing_for_one_address_exactly_one_gets_it() {
    let db = TestDb::new().await;
    let email = Email::parse("race@example.com").unwrap();
    let attempts = (0..8).map(|_| {
        let pool = db.pool.clone();
        let email = email.clone();
        tokio::spawn(
            async move { reserve_email(&pool, &email, Uuid::now_v7(), Uuid::now_v7()).await },
        )
    });
    let results: Vec<_> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(()) | Err(ReserveError::Taken(_)))));
    // The winner may reserve again (a retried creation).
    let (owner, tenant): (Uuid, Uuid) =
        sqlx::query_as("SELECT user_id, tenant_id FROM user_emails")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    reserve_email(&db.pool, &email, owner, tenant)
        .await
        .unwrap();
}

fn run_bootstrap(db: &TestDb, args: &[&str], password: &str) -> std::process::Output {
    let file = std::env::temp_dir().join(format!("st-pw-{}", Uuid::new_v4()));
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let output = Command::new(bin_path("supporttracker"))
        .arg("bootstrap")
        .args(args)
        .arg("--password-file")
        .arg(&file)
        .env("DATABASE_URL", &db.url)
        .env("ST_LOG", "warn")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(file);
    output
}

#[tokio::test]
async fn the_bootstrap_command_prints_json_and_refuses_a_taken_address_with_exit_2() {
    let db = TestDb::new().await;
    let ok = run_bootstrap(
        &db,
        &[
            "--tenant",
            "Acme IT",
            "--email",
            "owner@acme.test",
            "--currency",
            "GBP",
            "--time-zone",
            "Europe/London",
        ],
        "a long enough password",
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    for key in ["tenant_id", "user_id", "api_token"] {
        assert!(printed[key].is_string(), "{key} in {printed}");
    }
    let events = db.count("SELECT count(*) FROM events").await;

    let taken = run_bootstrap(
        &db,
        &["--tenant", "Other", "--email", "Owner@Acme.test"],
        "a long enough password",
    );
    assert_eq!(taken.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&taken.stderr).contains("already in use"));
    let bad_currency = run_bootstrap(
        &db,
        &[
            "--tenant",
            "Other",
            "--email",
            "x@acme.test",
            "--currency",
            "XYZ",
        ],
        "a long enough password",
    );
    assert_eq!(bad_currency.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_currency.stderr).contains("--currency"));
    let bad_zone = run_bootstrap(
        &db,
        &[
            "--tenant",
            "Other",
            "--email",
            "x@acme.test",
            "--time-zone",
            "Mars/Base",
        ],
        "a long enough password",
    );
    assert_eq!(bad_zone.status.code(), Some(2));
    let short = run_bootstrap(
        &db,
        &["--tenant", "Other", "--email", "x@acme.test"],
        "short",
    );
    assert_eq!(short.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 10"));
    assert_eq!(
        db.count("SELECT count(*) FROM events").await,
        events,
        "nothing created by refused runs"
    );
}

#[tokio::test]
async fn history_and_replay_of_a_person_show_no_password_hash_or_token_digest() {
    let db = TestDb::new().await;
    let store = EventStore::new(db.pool.clone());
    let done = bootstrap(
        &store,
        new_tenant("ann@example.com", "correct horse battery staple"),
    )
    .await
    .unwrap();
    let id = done.user_id.to_string();
    let now = chrono::Utc::now().to_rfc3339();
    for args in [
        vec!["history", "user", id.as_str()],
        vec!["history", "--json", "user", id.as_str()],
        vec!["replay", "--as-of", now.as_str(), "user", id.as_str()],
    ] {
        let output = st_tests::process::replay_tools(&db.url, &args);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(text.contains("[redacted]"), "{args:?}: {text}");
        assert!(!text.contains("$argon2id$"), "{args:?}: {text}");
        assert!(
            !text.contains(&commands::identity::token_digest(&done.api_token)),
            "{args:?}: {text}"
        );
    }
}
