//! Assets, the credentials vault and the global search through the API and the binary:
//! gapless tags under concurrent creators, every bad field at once, roles and tenants; secrets
//! never stored in plaintext anywhere in the database, reveals recorded, share links limited;
//! a wrong master key stops start-up; `vault rotate-key` keeps every secret readable while the
//! server runs.

use std::collections::BTreeSet;
use std::process::Command;

use axum::http::{Method, StatusCode};
use domain::identity::Role;
use serde_json::{json, Value};
use st_tests::process::Server;
use st_tests::{bin_path, TestApp, TestDb};

async fn company(app: &TestApp, name: &str) -> String {
    let reply = app
        .request(
            Method::POST,
            "/api/v1/companies",
            Some(&json!({"name": name}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json()["id"].as_str().unwrap().to_owned()
}

async fn contact(app: &TestApp, company: &str, name: &str) -> String {
    let reply = app
        .request(
            Method::POST,
            &format!("/api/v1/companies/{company}/contacts"),
            Some(&json!({"name": name}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json()["id"].as_str().unwrap().to_owned()
}

async fn asset(app: &TestApp, body: Value) -> Value {
    let reply = app
        .request(Method::POST, "/api/v1/assets", Some(&body.to_string()))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json()
}

#[tokio::test]
async fn assets_get_tags_and_are_listed_changed_and_checked() {
    let app = TestApp::new().await;
    let acme = company(&app, "Northwind").await;
    let other = company(&app, "Contoso").await;
    let ann = contact(&app, &acme, "Ann Example").await;
    let bob_elsewhere = contact(&app, &other, "Bob Elsewhere").await;

    let laptop = asset(
        &app,
        json!({"company_id": acme, "name": "Reception laptop", "category": "Laptop",
            "serial_number": "5CD1234XYZ", "mac_address": "00-1a-2b-3c-4d-5e",
            "ip_address": "192.0.2.10", "contact_id": ann}),
    )
    .await;
    // The tenant is "Acme IT": its default prefix is ACME.
    assert_eq!(laptop["tag"], "ACME-00001");
    assert_eq!(laptop["category"], "laptop");
    assert_eq!(laptop["mac_address"], "00:1A:2B:3C:4D:5E");
    assert_eq!(laptop["contact_id"], ann.as_str());
    assert_eq!(laptop["status"], "active");
    let printer = asset(
        &app,
        json!({"company_id": other, "name": "Printer", "category": "printer"}),
    )
    .await;
    assert_eq!(
        printer["tag"], "ACME-00002",
        "numbered per tenant, not per company"
    );

    // Every bad field at once; nothing appended.
    let before = app.db.count("SELECT count(*) FROM events").await;
    let refused = app
        .request(
            Method::POST,
            "/api/v1/assets",
            Some(
                &json!({"company_id": acme, "name": " ", "category": "toaster",
                    "mac_address": "zz", "ip_address": "300.1.1.1", "contact_id": bob_elsewhere,
                    "purchase_date": "2026-02-30"})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    let fields: BTreeSet<String> = refused.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    for field in [
        "name",
        "category",
        "mac_address",
        "ip_address",
        "contact_id",
        "purchase_date",
    ] {
        assert!(
            fields.contains(field),
            "{field} missing in {}",
            refused.text
        );
    }
    let unknown = app
        .request(
            Method::POST,
            "/api/v1/assets",
            Some(
                &json!({"company_id": uuid::Uuid::new_v4(), "name": "x", "category": "other"})
                    .to_string(),
            ),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(unknown.text.contains("company_id"), "{}", unknown.text);
    assert_eq!(app.db.count("SELECT count(*) FROM events").await, before);

    // Listing by company; changing status and assignment; unassigning with null.
    let list = app
        .request(
            Method::GET,
            &format!("/api/v1/assets?company_id={acme}"),
            None,
        )
        .await
        .json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["tag"], "ACME-00001");
    let id = laptop["id"].as_str().unwrap();
    let changed = app
        .request(
            Method::PATCH,
            &format!("/api/v1/assets/{id}"),
            Some(r#"{"status": "in repair", "location": "Bench 2", "contact_id": null}"#),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(changed.json()["status"], "in_repair");
    assert_eq!(changed.json()["location"], "Bench 2");
    assert!(changed.json()["contact_id"].is_null());
    assert_eq!(changed.json()["tag"], "ACME-00001", "a tag never changes");
    let moved = app
        .request(
            Method::PATCH,
            &format!("/api/v1/assets/{id}"),
            Some(&json!({"company_id": other}).to_string()),
        )
        .await;
    assert_eq!(moved.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Paging in tag order.
    let page = app
        .request(Method::GET, "/api/v1/assets?limit=1", None)
        .await
        .json();
    assert_eq!(page["items"][0]["tag"], "ACME-00001");
    let next = page["next"].as_str().unwrap();
    let page2 = app
        .request(
            Method::GET,
            &format!("/api/v1/assets?limit=1&after={next}"),
            None,
        )
        .await
        .json();
    assert_eq!(page2["items"][0]["tag"], "ACME-00002");
    assert!(page2["next"].is_null());

    // Another tenant sees none of it; an accountant may look but not change.
    let stranger = app.other_tenant("Globex", "owner@globex.test").await;
    let probe = app
        .send_as(
            Some(&stranger),
            Method::GET,
            &format!("/api/v1/assets/{id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(probe.status, StatusCode::NOT_FOUND);
    let theirs = app
        .send_as(Some(&stranger), Method::GET, "/api/v1/assets", None, &[])
        .await
        .json();
    assert!(theirs["items"].as_array().unwrap().is_empty());
    let accountant = app
        .person(&app.owner, Role::Accountant, "books@acme.test", None)
        .await;
    assert_eq!(
        app.send_as(
            Some(&accountant),
            Method::GET,
            &format!("/api/v1/assets/{id}"),
            None,
            &[]
        )
        .await
        .status,
        StatusCode::OK
    );
    let refused = app
        .send_body_as(
            Some(&accountant),
            Method::PATCH,
            &format!("/api/v1/assets/{id}"),
            r#"{"name": "x"}"#,
            &[],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn tags_stay_unique_and_gapless_under_eight_concurrent_creators() {
    let app = std::sync::Arc::new(TestApp::new().await);
    let acme = company(&app, "Busy Corp").await;
    let mut tasks = Vec::new();
    for creator in 0..8 {
        let app = app.clone();
        let acme = acme.clone();
        tasks.push(tokio::spawn(async move {
            let mut tags = Vec::new();
            for n in 0..10 {
                let body = json!({"company_id": acme, "name": format!("PC {creator}-{n}"),
                    "category": "computer"});
                let reply = app
                    .request(Method::POST, "/api/v1/assets", Some(&body.to_string()))
                    .await;
                assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
                tags.push(reply.json()["tag"].as_str().unwrap().to_owned());
            }
            tags
        }));
    }
    let mut tags = Vec::new();
    for task in tasks {
        tags.extend(task.await.unwrap());
    }
    let unique: BTreeSet<&String> = tags.iter().collect();
    assert_eq!(unique.len(), 80, "every tag unique");
    let expected: BTreeSet<String> = (1..=80).map(|n| format!("ACME-{n:05}")).collect();
    assert_eq!(
        unique.into_iter().cloned().collect::<BTreeSet<_>>(),
        expected,
        "no gaps"
    );
    // The log agrees: 80 numbers issued, each to one asset.
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM events WHERE aggregate_type = 'sequence'")
            .await,
        80
    );
    assert_eq!(
        app.db
            .count("SELECT count(DISTINCT payload->'NumberIssued'->>'aggregate_id') FROM events WHERE aggregate_type = 'sequence'")
            .await,
        80
    );
}

/// Every row of every table of the public schema, as text.
async fn whole_database(app: &TestApp) -> String {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
          WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    let mut all = String::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM \"{table}\" t"))
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
        all.push_str(&rows.join("\n"));
    }
    all
}

#[tokio::test]
async fn secrets_are_sealed_revealed_with_a_record_and_shared_by_limited_links() {
    let app = TestApp::new().await;
    let acme = company(&app, "Vaulted").await;
    let router = asset(
        &app,
        json!({"company_id": acme, "name": "Edge router", "category": "network"}),
    )
    .await;
    let router_id = router["id"].as_str().unwrap();
    let password = "Plaintext-Secret-4242";
    let added = app
        .request(
            Method::POST,
            &format!("/api/v1/assets/{router_id}/credentials"),
            Some(
                &json!({"label": "Router admin", "username": "admin", "password": password,
                    "url": "https://192.0.2.1", "notes": "Recovery-Code-7777",
                    "totp_secret": "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    assert!(!added.text.contains(password), "{}", added.text);
    let credential = added.json();
    assert_eq!(credential["has_password"], true);
    assert_eq!(credential["has_totp"], true);
    let id = credential["id"].as_str().unwrap();

    // Bad input: every field named, nothing stored.
    let bad = app
        .request(
            Method::POST,
            &format!("/api/v1/assets/{router_id}/credentials"),
            Some(r#"{"label": "", "totp_secret": "not base32!"}"#),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.text.contains("label") && bad.text.contains("totp_secret"),
        "{}",
        bad.text
    );
    assert!(
        !bad.text.contains("not base32!"),
        "the secret is not echoed"
    );

    // No plaintext anywhere in the database: events, read models, vault rows.
    app.settle().await;
    let dump = whole_database(&app).await;
    for secret in [password, "Recovery-Code-7777", "GEZDGNBVGY3TQOJQ"] {
        assert!(!dump.contains(secret), "{secret} found in the database");
    }
    assert!(
        dump.contains("Router admin"),
        "the dump did read the tables"
    );

    // Reveal: the secrets, the current TOTP code, and a record of who and when.
    let revealed = app
        .request(
            Method::POST,
            &format!("/api/v1/credentials/{id}/reveal"),
            None,
        )
        .await;
    assert_eq!(revealed.status, StatusCode::OK, "{}", revealed.text);
    let secrets = revealed.json();
    assert_eq!(secrets["password"], password);
    assert_eq!(secrets["username"], "admin");
    assert_eq!(secrets["notes"], "Recovery-Code-7777");
    assert_eq!(secrets["totp_code"].as_str().unwrap().len(), 6);
    assert_eq!(revealed.headers["cache-control"], "no-store");
    app.settle().await;
    assert_eq!(
        app.db
            .count(&format!(
                "SELECT count(*) FROM events WHERE aggregate_id = '{id}' AND event_type = 'CredentialRevealed'
                   AND metadata->>'actor' = '{}'",
                app.owner.user_id
            ))
            .await,
        1
    );
    let shown = app
        .request(Method::GET, &format!("/api/v1/credentials/{id}"), None)
        .await
        .json();
    assert_eq!(shown["reveals"], 1);
    assert!(!shown.to_string().contains(password));
    let activity = app
        .db
        .count("SELECT count(*) FROM activity WHERE event_type = 'CredentialRevealed'")
        .await;
    assert_eq!(activity, 1, "the reveal is on the audit trail");

    // A new password keeps the other secrets; the old sealed set is gone.
    let changed = app
        .request(
            Method::PATCH,
            &format!("/api/v1/credentials/{id}"),
            Some(r#"{"password": "Second-Secret-5151"}"#),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    let again = app
        .request(
            Method::POST,
            &format!("/api/v1/credentials/{id}/reveal"),
            None,
        )
        .await
        .json();
    assert_eq!(again["password"], "Second-Secret-5151");
    assert_eq!(again["notes"], "Recovery-Code-7777");
    assert_eq!(
        app.db
            .count(&format!(
                "SELECT count(DISTINCT secret_id) FROM vault_secrets WHERE credential_id = '{id}'"
            ))
            .await,
        1
    );

    // Roles: a technician may reveal; an accountant and a client may not, nor see labels.
    let tech = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    assert_eq!(
        app.send_as(
            Some(&tech),
            Method::POST,
            &format!("/api/v1/credentials/{id}/reveal"),
            None,
            &[]
        )
        .await
        .status,
        StatusCode::OK
    );
    let accountant = app
        .person(&app.owner, Role::Accountant, "books@acme.test", None)
        .await;
    for path in [
        format!("/api/v1/credentials/{id}"),
        format!("/api/v1/assets/{router_id}/credentials"),
    ] {
        assert_eq!(
            app.send_as(Some(&accountant), Method::GET, &path, None, &[])
                .await
                .status,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(
        app.send_as(
            Some(&accountant),
            Method::POST,
            &format!("/api/v1/credentials/{id}/reveal"),
            None,
            &[]
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let stranger = app.other_tenant("Globex", "owner@globex.test").await;
    assert_eq!(
        app.send_as(
            Some(&stranger),
            Method::POST,
            &format!("/api/v1/credentials/{id}/reveal"),
            None,
            &[]
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    // A share link: one view, then spent; a revoked link shows nothing.
    let made = app
        .request(
            Method::POST,
            &format!("/api/v1/credentials/{id}/shares"),
            Some(r#"{"expires_in_hours": 2, "max_views": 1}"#),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let url = made.json()["url"].as_str().unwrap().to_owned();
    let path = url
        .split_once("/s/")
        .map(|(_, t)| format!("/s/{t}"))
        .unwrap();
    let token = path.trim_start_matches("/s/").to_owned();
    assert!(
        !whole_database(&app).await.contains(&token),
        "only the link's digest is stored"
    );
    let landing = app.request(Method::GET, &path, None).await;
    assert_eq!(landing.status, StatusCode::OK);
    assert!(
        !landing.text.contains("Second-Secret-5151"),
        "opening the link reveals nothing yet"
    );
    let shown = app.request(Method::POST, &path, None).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(shown.text.contains("Second-Secret-5151"));
    let spent = app.request(Method::POST, &path, None).await;
    assert_eq!(spent.status, StatusCode::NOT_FOUND);
    assert!(!spent.text.contains("Second-Secret-5151"));
    let second = app
        .request(
            Method::POST,
            &format!("/api/v1/credentials/{id}/shares"),
            Some("{}"),
        )
        .await
        .json();
    let share_id = second["id"].as_str().unwrap();
    let second_path = format!(
        "/s/{}",
        second["url"].as_str().unwrap().rsplit('/').next().unwrap()
    );
    let revoked = app
        .request(
            Method::DELETE,
            &format!("/api/v1/credentials/{id}/shares/{share_id}"),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.request(Method::POST, &second_path, None).await.status,
        StatusCode::NOT_FOUND
    );
    let too_long = app
        .request(
            Method::POST,
            &format!("/api/v1/credentials/{id}/shares"),
            Some(r#"{"expires_in_hours": 100000, "max_views": 0}"#),
        )
        .await;
    assert_eq!(too_long.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(too_long.text.contains("expires_in_hours") && too_long.text.contains("max_views"));

    // Removing the credential deletes its sealed secrets.
    let removed = app
        .request(Method::DELETE, &format!("/api/v1/credentials/{id}"), None)
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.db
            .count(&format!(
                "SELECT count(*) FROM vault_secrets WHERE credential_id = '{id}'"
            ))
            .await,
        0
    );
    assert_eq!(
        app.request(
            Method::POST,
            &format!("/api/v1/credentials/{id}/reveal"),
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn search_finds_records_by_identifiers_and_misspelt_names_within_the_tenant() {
    let app = TestApp::new().await;
    let acme = company(&app, "Fabrikam Dental").await;
    let ann = contact(&app, &acme, "Annabel Whitfield").await;
    let laptop = asset(
        &app,
        json!({"company_id": acme, "name": "Reception laptop", "category": "laptop",
            "serial_number": "5CD1234XYZ", "mac_address": "00:1A:2B:3C:4D:5E",
            "ip_address": "192.0.2.10", "contact_id": ann}),
    )
    .await;
    let laptop_id = laptop["id"].as_str().unwrap();
    app.request(
        Method::POST,
        &format!("/api/v1/assets/{laptop_id}/credentials"),
        Some(r#"{"label": "Windows local admin", "password": "Never-Indexed-9999"}"#),
    )
    .await;
    let stranger = app.other_tenant("Globex", "owner@globex.test").await;
    app.settle().await;

    let app = &app;
    let search = |q: &str| {
        let q = q.replace(' ', "%20");
        async move {
            app.request(Method::GET, &format!("/api/v1/search?q={q}"), None)
                .await
                .json()
        }
    };
    let kinds_and_titles = |v: &Value| -> Vec<(String, String)> {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["kind"].as_str().unwrap().to_owned(),
                    r["title"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    for q in [
        "5CD1234XYZ",
        "5cd1234",
        "001a2b3c4d5e",
        "00-1A-2B-3C-4D-5E",
        "192.0.2.10",
        "ACME-00001",
        "recepton laptp",
    ] {
        let found = kinds_and_titles(&search(q).await);
        assert!(
            found.contains(&("asset".into(), "ACME-00001 Reception laptop".into())),
            "{q}: {found:?}"
        );
    }
    let found = kinds_and_titles(&search("Fabrikm").await);
    assert!(
        found.contains(&("company".into(), "Fabrikam Dental".into())),
        "{found:?}"
    );
    let found = kinds_and_titles(&search("anabel").await);
    assert!(
        found.contains(&("contact".into(), "Annabel Whitfield".into())),
        "{found:?}"
    );
    let found = search("windows admin").await;
    assert_eq!(found["results"][0]["kind"], "credential", "{found}");
    assert_eq!(
        found["results"][0]["url"],
        format!(
            "/credentials/{}",
            found["results"][0]["id"].as_str().unwrap()
        )
    );
    let secret = search("Never-Indexed-9999").await;
    assert!(
        secret["results"].as_array().unwrap().is_empty(),
        "secrets are never searched: {secret}"
    );

    // Another tenant finds nothing of it; an accountant finds the asset but no credential.
    let theirs = app
        .send_as(
            Some(&stranger),
            Method::GET,
            "/api/v1/search?q=5CD1234XYZ",
            None,
            &[],
        )
        .await
        .json();
    assert!(theirs["results"].as_array().unwrap().is_empty(), "{theirs}");
    let accountant = app
        .person(&app.owner, Role::Accountant, "books@acme.test", None)
        .await;
    let seen = app
        .send_as(
            Some(&accountant),
            Method::GET,
            "/api/v1/search?q=windows%20admin",
            None,
            &[],
        )
        .await
        .json();
    assert!(
        seen["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["kind"] != "credential"),
        "{seen}"
    );
    let empty = app.request(Method::GET, "/api/v1/search?q=", None).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    let control = app
        .request(Method::GET, "/api/v1/search?q=a%01b", None)
        .await;
    assert_eq!(control.status, StatusCode::BAD_REQUEST, "{}", control.text);
    assert!(control.text.contains("control characters"));
    let page = app.request(Method::GET, "/search?q=5CD%011234", None).await;
    assert_eq!(page.status, StatusCode::OK, "the console drops them");
    let suggest = app
        .request(Method::GET, "/search/suggest?q=%00", None)
        .await;
    assert_eq!(suggest.status, StatusCode::BAD_REQUEST);
    // A NUL in any query string is refused before any handler (PostgreSQL text holds none).
    for path in [
        "/api/v1/companies?q=a%00b",
        "/companies?q=a%00b",
        "/api/v1/assets?category=a%00b",
    ] {
        let reply = app.request(Method::GET, path, None).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            reply.text
        );
    }
}

fn serve_env(db: &TestDb, key: &str) -> Command {
    let mut command = Command::new(bin_path("supporttracker"));
    command
        .env("DATABASE_URL", &db.url)
        .env("ST_LISTEN", "127.0.0.1:0")
        .env("ST_LOG", "warn")
        .env("ST_MASTER_KEY", key);
    command
}

#[tokio::test]
async fn a_wrong_master_key_stops_start_up_with_a_clear_message() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]).with_owner(&db.url).await;
    let client = reqwest::Client::new();
    let company: Value = client
        .post(server.url("/api/v1/companies"))
        .bearer_auth(server.token())
        .json(&json!({"name": "Keyed"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let added = client
        .post(server.url(&format!(
            "/api/v1/companies/{}/credentials",
            company["id"].as_str().unwrap()
        )))
        .bearer_auth(server.token())
        .json(&json!({"label": "Wi-Fi", "password": "Guest-Wifi-1234"}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    server.stop();

    let wrong = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let output = serve_env(&db, wrong).arg("serve").output().unwrap();
    assert!(!output.status.success(), "the server must not start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("master key does not match"), "{stderr}");
    assert!(!stderr.contains(wrong), "the message never shows a key");
    let malformed = serve_env(&db, "not-a-key").arg("serve").output().unwrap();
    assert!(!malformed.status.success());
    assert!(String::from_utf8_lossy(&malformed.stderr).contains("32 bytes"));
}

#[tokio::test]
async fn rotating_the_key_file_keeps_every_secret_readable_while_serving() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("st-rotate-{}", uuid::Uuid::new_v4()));
    let dir_text = dir.display().to_string();
    // No ST_MASTER_KEY: the key lives in ST_DATA_DIR/master.key, generated on first start.
    let env = [("ST_MASTER_KEY", ""), ("ST_DATA_DIR", dir_text.as_str())];
    let server = Server::start(&db.url, &env).with_owner(&db.url).await;
    assert!(dir.join("master.key").exists(), "a key file was generated");
    let client = reqwest::Client::new();
    let company: Value = client
        .post(server.url("/api/v1/companies"))
        .bearer_auth(server.token())
        .json(&json!({"name": "Rotated"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..3 {
        let added: Value = client
            .post(server.url(&format!(
                "/api/v1/companies/{}/credentials",
                company["id"].as_str().unwrap()
            )))
            .bearer_auth(server.token())
            .json(&json!({"label": format!("Login {n}"), "password": format!("Rotate-Me-{n}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(added["id"].as_str().unwrap().to_owned());
    }
    let before: Vec<String> = sqlx::query_scalar("SELECT DISTINCT key_id FROM vault_secrets")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(before.len(), 1);

    let rotated = serve_env(&db, "")
        .env("ST_DATA_DIR", &dir)
        .args(["vault", "rotate-key"])
        .output()
        .unwrap();
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let said = String::from_utf8_lossy(&rotated.stdout);
    assert!(said.contains("3 secret value(s) re-sealed"), "{said}");
    let after: Vec<String> = sqlx::query_scalar("SELECT DISTINCT key_id FROM vault_secrets")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_ne!(after, before, "every secret moved to the new key");

    // The running server reads them without a restart, and seals new ones under the new key.
    for (n, id) in ids.iter().enumerate() {
        let shown: Value = client
            .post(server.url(&format!("/api/v1/credentials/{id}/reveal")))
            .bearer_auth(server.token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(shown["password"], format!("Rotate-Me-{n}"));
    }
    let fresh = client
        .post(server.url(&format!(
            "/api/v1/companies/{}/credentials",
            company["id"].as_str().unwrap()
        )))
        .bearer_auth(server.token())
        .json(&json!({"label": "After rotation", "password": "New-Key-Secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 201);
    let keys: Vec<String> = sqlx::query_scalar("SELECT DISTINCT key_id FROM vault_secrets")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(keys, after, "new secrets are sealed under the new key");
    server.stop();

    // A restart with the rotated file still opens everything.
    let server = Server::start(&db.url, &env);
    let status = serve_env(&db, "")
        .env("ST_DATA_DIR", &dir)
        .args(["vault", "status"])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains("4 secret value(s)"));
    drop(server);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn the_tag_prefix_and_own_categories_are_settings() {
    let app = TestApp::new().await;
    let tenant = app
        .request(Method::GET, "/api/v1/tenant", None)
        .await
        .json();
    assert_eq!(tenant["asset_tag_prefix"], "ACME");
    assert_eq!(tenant["asset_categories"], json!([]));
    let bad = app
        .request(
            Method::PATCH,
            "/api/v1/tenant",
            Some(r#"{"asset_tag_prefix": "AC-ME", "asset_categories": ["kiosk", "a/b"]}"#),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.text.contains("asset_tag_prefix") && bad.text.contains("a/b"),
        "{}",
        bad.text
    );
    let set = app
        .request(
            Method::PATCH,
            "/api/v1/tenant",
            Some(r#"{"asset_tag_prefix": "nw", "asset_categories": ["Kiosk", "laptop", "kiosk"]}"#),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(set.json()["asset_tag_prefix"], "NW");
    assert_eq!(
        set.json()["asset_categories"],
        json!(["kiosk"]),
        "built-ins and duplicates dropped"
    );
    let shop = company(&app, "Shop").await;
    let kiosk = asset(
        &app,
        json!({"company_id": shop, "name": "Till 1", "category": "kiosk"}),
    )
    .await;
    assert_eq!(kiosk["tag"], "NW-00001");
    let refused = app
        .request(
            Method::POST,
            "/api/v1/assets",
            Some(&json!({"company_id": shop, "name": "x", "category": "drone"}).to_string()),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.text.contains("kiosk"),
        "the message lists the allowed ones: {}",
        refused.text
    );
    // Technicians may not change settings.
    let tech = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    let forbidden = app
        .send_body_as(
            Some(&tech),
            Method::PATCH,
            "/api/v1/tenant",
            r#"{"asset_tag_prefix": "X"}"#,
            &[],
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn documents_are_type_checked_kept_outside_the_log_and_downloaded_back() {
    let app = TestApp::new().await;
    let acme = company(&app, "Papers").await;
    let printer = asset(
        &app,
        json!({"company_id": acme, "name": "Printer", "category": "printer"}),
    )
    .await;
    let id = printer["id"].as_str().unwrap();
    let page = app
        .send_as(
            Some(&app.owner),
            Method::GET,
            &format!("/assets/{id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let token = page.csrf_cookie();
    let upload = |name: &'static str, bytes: Vec<u8>| {
        let token = token.clone();
        let app = &app;
        async move {
            let boundary = "----st-doc";
            let mut body = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{token}\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .into_bytes();
            body.extend(bytes);
            body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
            app.send_bytes_as(
                Some(&app.owner),
                Method::POST,
                &format!("/assets/{id}/documents"),
                body,
                &[
                    (
                        "content-type",
                        &format!("multipart/form-data; boundary={boundary}"),
                    ),
                    ("cookie", &format!("st_csrf={token}")),
                ],
            )
            .await
        }
    };
    let pdf = b"%PDF-1.4\n% manual\n".to_vec();
    let attached = upload("../../Manual v2.pdf", pdf.clone()).await;
    assert_eq!(attached.status, StatusCode::SEE_OTHER, "{}", attached.text);
    let refused = upload("tool.exe", b"MZ\x90\x00\x03\x00\x00\x00".to_vec()).await;
    assert_eq!(refused.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    app.settle().await;
    let shown = app
        .request(Method::GET, &format!("/assets/{id}"), None)
        .await;
    assert!(
        shown.text.contains("Manual v2.pdf"),
        "the name is cleaned: {}",
        shown.text
    );
    let row: (serde_json::Value,) =
        sqlx::query_as(&format!("SELECT documents FROM assets WHERE id = '{id}'"))
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    let document = &row.0[0];
    assert_eq!(document["content_type"], "application/pdf");
    assert_eq!(document["size"], pdf.len());
    assert_eq!(document["sha256"].as_str().unwrap().len(), 64);
    // The event carries the hash, not the bytes.
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM events WHERE event_type = 'AssetDocumentAttached' AND payload::text LIKE '%manual%'")
            .await,
        0
    );
    let download = app
        .request(
            Method::GET,
            &format!(
                "/assets/{id}/documents/{}",
                document["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.content_type, "application/pdf");
    assert_eq!(download.text.as_bytes(), pdf.as_slice());
    assert!(download.headers["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment;"));
    let stranger = app.other_tenant("Globex", "owner@globex.test").await;
    let probe = app
        .send_as(
            Some(&stranger),
            Method::GET,
            &format!(
                "/assets/{id}/documents/{}",
                document["id"].as_str().unwrap()
            ),
            None,
            &[],
        )
        .await;
    assert_eq!(probe.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_assets_page_lists_every_company_s_assets_with_filters() {
    let app = TestApp::new().await;
    let north = company(&app, "Northwind").await;
    let south = company(&app, "Southwind").await;
    asset(
        &app,
        json!({"company_id": north, "name": "Front desk PC", "category": "computer"}),
    )
    .await;
    let spare = asset(&app, json!({"company_id": south, "name": "Old printer", "category": "printer", "status": "spare"})).await;
    let stranger = app.other_tenant("Globex", "owner@globex.test").await;
    app.settle().await;
    let page = app
        .send_as(Some(&app.owner), Method::GET, "/assets", None, &[])
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text.contains("Front desk PC") && page.text.contains("Old printer"),
        "{}",
        page.text
    );
    assert!(page.text.contains("Northwind") && page.text.contains("Southwind"));
    let spares = app
        .send_as(
            Some(&app.owner),
            Method::GET,
            "/assets?status=spare",
            None,
            &[],
        )
        .await;
    assert!(spares.text.contains("Old printer") && !spares.text.contains("Front desk PC"));
    let theirs = app
        .send_as(
            Some(&app.owner),
            Method::GET,
            &format!("/assets?company_id={north}&category=computer"),
            None,
            &[],
        )
        .await;
    assert!(theirs.text.contains("Front desk PC") && !theirs.text.contains("Old printer"));
    let other = app
        .send_as(Some(&stranger), Method::GET, "/assets", None, &[])
        .await;
    assert!(
        other.text.contains("No assets match")
            && !other.text.contains(spare["tag"].as_str().unwrap())
    );
    let accountant = app
        .person(&app.owner, Role::Accountant, "books@acme.test", None)
        .await;
    assert_eq!(
        app.send_as(Some(&accountant), Method::GET, "/assets", None, &[])
            .await
            .status,
        StatusCode::OK
    );
}
