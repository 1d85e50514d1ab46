//! The HTTP API and health through the router, without a socket.

use axum::http::{Method, StatusCode};
use serde_json::json;
use st_tests::TestApp;

async fn create(app: &TestApp, name: &str, rate: &str) -> serde_json::Value {
    let reply = app
        .request(
            Method::POST,
            "/api/v1/companies",
            Some(&json!({"name": name, "monthly_rate": rate}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json()
}

#[tokio::test]
async fn companies_are_created_listed_read_and_changed() {
    let app = TestApp::new().await;
    let acme = create(&app, "  Acme  ", "500").await;
    assert_eq!(acme["name"], "Acme");
    assert_eq!(acme["monthly_rate"], "500.00");
    assert_eq!(acme["status"], "active");
    let id = acme["id"].as_str().unwrap().to_owned();

    // Read-your-writes: the list shows the company right away.
    let list = app.request(Method::GET, "/api/v1/companies", None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json()["items"][0]["id"], id.as_str());

    let one = app
        .request(Method::GET, &format!("/api/v1/companies/{id}"), None)
        .await;
    assert_eq!(one.json()["name"], "Acme");

    let patched = app
        .request(
            Method::PATCH,
            &format!("/api/v1/companies/{id}"),
            Some(r#"{"name": "Acme Corp", "monthly_rate": "650.5"}"#),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.json()["name"], "Acme Corp");
    assert_eq!(patched.json()["monthly_rate"], "650.50");
    assert_eq!(patched.json()["version"], 3);

    let archived = app
        .request(
            Method::PATCH,
            &format!("/api/v1/companies/{id}"),
            Some(r#"{"archived": true}"#),
        )
        .await;
    assert_eq!(archived.json()["status"], "archived");
    let refused = app
        .request(
            Method::PATCH,
            &format!("/api/v1/companies/{id}"),
            Some(r#"{"name": "Nope"}"#),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.json()["detail"]
        .as_str()
        .unwrap()
        .contains("archived"));
    // Archived companies leave the default list but not `status=all`.
    let active = app
        .request(Method::GET, "/api/v1/companies", None)
        .await
        .json();
    assert_eq!(active["items"].as_array().unwrap().len(), 0);
    let all = app
        .request(Method::GET, "/api/v1/companies?status=all", None)
        .await
        .json();
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    // Restore and change in one request.
    let restored = app
        .request(
            Method::PATCH,
            &format!("/api/v1/companies/{id}"),
            Some(r#"{"archived": false, "name": "Acme Again"}"#),
        )
        .await;
    assert_eq!(restored.json()["name"], "Acme Again");
    assert_eq!(restored.json()["status"], "active");
}

#[tokio::test]
async fn search_paging_and_typos() {
    let app = TestApp::new().await;
    for name in [
        "Northwind Traders",
        "Contoso",
        "Fabrikam",
        "Adventure Works",
        "Wide World Importers",
    ] {
        create(&app, name, "1").await;
    }
    let found = app
        .request(Method::GET, "/api/v1/companies?q=world", None)
        .await
        .json();
    assert_eq!(found["items"][0]["name"], "Wide World Importers");
    let typo = app
        .request(Method::GET, "/api/v1/companies?q=Contosso", None)
        .await
        .json();
    assert_eq!(typo["items"][0]["name"], "Contoso");
    let literal = app
        .request(Method::GET, "/api/v1/companies?q=%25", None)
        .await
        .json();
    assert_eq!(
        literal["items"].as_array().unwrap().len(),
        0,
        "% is a character, not a wildcard"
    );

    let page1 = app
        .request(Method::GET, "/api/v1/companies?limit=2", None)
        .await
        .json();
    let names = |page: &serde_json::Value| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&page1), ["Adventure Works", "Contoso"]);
    let next = page1["next_after"].as_str().unwrap();
    let page2 = app
        .request(
            Method::GET,
            &format!("/api/v1/companies?limit=2&after={next}"),
            None,
        )
        .await
        .json();
    assert_eq!(names(&page2), ["Fabrikam", "Northwind Traders"]);
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retry_return_the_first_outcome() {
    let app = TestApp::new().await;
    let body = r#"{"name": "Once", "monthly_rate": "1.00"}"#;
    let headers = [("idempotency-key", "order-7")];
    let first = app
        .send(Method::POST, "/api/v1/companies", Some(body), &headers)
        .await;
    let second = app
        .send(Method::POST, "/api/v1/companies", Some(body), &headers)
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(first.json()["id"], second.json()["id"]);
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM events WHERE aggregate_type = 'company'")
            .await,
        1
    );
}

/// Every kind of bad input: a 4xx problem document that says what is wrong, nothing appended.
#[tokio::test]
async fn bad_input_is_refused_with_a_problem_and_appends_nothing() {
    let app = TestApp::new().await;
    let id = create(&app, "Existing", "1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let company = format!("/api/v1/companies/{id}");
    let huge = format!(r#"{{"name": "{}"}}"#, "x".repeat(1_000_000));
    let long = format!(r#"{{"name": "{}"}}"#, "x".repeat(201));
    let cases: Vec<(Method, String, Option<String>, u16, &str)> = vec![
        (
            Method::POST,
            "/api/v1/companies".into(),
            Some("{not json".into()),
            400,
            "not valid JSON",
        ),
        (
            Method::POST,
            "/api/v1/companies".into(),
            Some("[1,2]".into()),
            422,
            "must be a JSON object",
        ),
        (
            Method::POST,
            "/api/v1/companies".into(),
            Some(r#"{"name": "A", "colour": "red"}"#.into()),
            422,
            "unknown field `colour`",
        ),
        (
            Method::POST,
            "/api/v1/companies".into(),
            Some(r#"{"monthly_rate": "1"}"#.into()),
            422,
            "name: is required",
        ),
        (
            Method::POST,
            "/api/v1/companies".into(),
            Some(r#"{"name": ""}"#.into()),
            422,
            "name: must not be empty",
        ),
        (
            Method::POST,
            "/api/v1/companies".into(),
            Some(r#"{"name": "   "}"#.into()),
            422,
            "name: must not be empty",
        ),
        (
            Method::POST,
            "/api/v1/companies".into(),
            Some(long.clone()),
            422,
            "at most 200 characters",
        ),
        (
            Method::POST,
            "/api/v1/companies".into(),
            Some(huge.clone()),
            413,
            "larger than",
        ),
        (
            Method::POST,
            "/api/v1/companies".into(),
            Some(r#"{"name": 7}"#.into()),
            422,
            "name: must be a string",
        ),
        (
            Method::POST,
            "/api/v1/companies".into(),
            Some(r#"{"name": "A", "monthly_rate": "-5"}"#.into()),
            422,
            "must not be negative",
        ),
        (
            Method::POST,
            "/api/v1/companies".into(),
            Some(r#"{"name": "A", "monthly_rate": "ten"}"#.into()),
            422,
            "decimal amount",
        ),
        (
            Method::POST,
            "/api/v1/companies".into(),
            Some(r#"{"name": "A", "monthly_rate": 500}"#.into()),
            422,
            "not a JSON number",
        ),
        (
            Method::POST,
            "/api/v1/companies".into(),
            Some(r#"{"name": "A", "monthly_rate": "1.005"}"#.into()),
            422,
            "2 decimal places",
        ),
        (
            Method::POST,
            "/api/v1/companies".into(),
            Some(r#"{"name": "A", "monthly_rate": "1e3"}"#.into()),
            422,
            "decimal amount",
        ),
        (
            Method::POST,
            "/api/v1/companies".into(),
            Some(r#"{"name": "", "monthly_rate": "-1"}"#.into()),
            422,
            "name: must not be empty; monthly_rate",
        ),
        (
            Method::GET,
            "/api/v1/companies/not-a-uuid".into(),
            None,
            400,
            "ids are UUIDs",
        ),
        (
            Method::GET,
            "/api/v1/companies/00000000-0000-0000-0000-000000000000".into(),
            None,
            404,
            "not found",
        ),
        (
            Method::GET,
            "/api/v1/companies?limit=0".into(),
            None,
            400,
            "limit",
        ),
        (
            Method::GET,
            "/api/v1/companies?limit=abc".into(),
            None,
            400,
            "bad query string",
        ),
        (
            Method::GET,
            "/api/v1/companies?status=gone".into(),
            None,
            400,
            "bad query string",
        ),
        (
            Method::GET,
            "/api/v1/companies?after=nope".into(),
            None,
            400,
            "after must be the `next` of a previous page",
        ),
        (
            Method::GET,
            "/api/v1/nothing-here".into(),
            None,
            404,
            "no such endpoint",
        ),
        (
            Method::PATCH,
            "/api/v1/companies/not-a-uuid".into(),
            Some("{}".into()),
            400,
            "ids are UUIDs",
        ),
        (
            Method::PATCH,
            "/api/v1/companies/00000000-0000-0000-0000-000000000000".into(),
            Some(r#"{"name": "X"}"#.into()),
            404,
            "not found",
        ),
        (
            Method::PATCH,
            company.clone(),
            Some("{".into()),
            400,
            "not valid JSON",
        ),
        (
            Method::PATCH,
            company.clone(),
            Some(r#"{"nom": "X"}"#.into()),
            422,
            "unknown field `nom`",
        ),
        (
            Method::PATCH,
            company.clone(),
            Some(r#"{"name": ""}"#.into()),
            422,
            "must not be empty",
        ),
        (
            Method::PATCH,
            company.clone(),
            Some(long),
            422,
            "at most 200",
        ),
        (
            Method::PATCH,
            company.clone(),
            Some(huge),
            413,
            "larger than",
        ),
        (
            Method::PATCH,
            company.clone(),
            Some(r#"{"monthly_rate": "-0.01"}"#.into()),
            422,
            "negative",
        ),
        (
            Method::PATCH,
            company.clone(),
            Some(r#"{"monthly_rate": 5.5}"#.into()),
            422,
            "not a JSON number",
        ),
        (
            Method::PATCH,
            company.clone(),
            Some(r#"{"archived": "yes"}"#.into()),
            422,
            "true or false",
        ),
        (
            Method::PUT,
            company.clone(),
            Some("{}".into()),
            405,
            "PUT is not allowed",
        ),
        (
            Method::DELETE,
            "/api/v1/companies".into(),
            None,
            405,
            "DELETE is not allowed",
        ),
    ];
    let events_before = app
        .db
        .count("SELECT count(*) FROM events WHERE aggregate_type = 'company'")
        .await;
    for (method, path, body, status, says) in cases {
        let reply = app.request(method.clone(), &path, body.as_deref()).await;
        assert_eq!(
            reply.status.as_u16(),
            status,
            "{method} {path} {:?}: {}",
            body.as_deref().map(|b| &b[..b.len().min(80)]),
            reply.text
        );
        assert_eq!(
            reply.content_type, "application/problem+json",
            "{method} {path}"
        );
        let problem = reply.json();
        assert_eq!(problem["status"], status);
        assert!(
            problem["detail"].as_str().unwrap().contains(says),
            "{method} {path}: {}",
            reply.text
        );
        assert!(problem["request_id"].is_string(), "{}", reply.text);
    }
    let wrong_type = app
        .send(
            Method::POST,
            "/api/v1/companies",
            None,
            &[("content-type", "text/plain")],
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(wrong_type.json()["detail"]
        .as_str()
        .unwrap()
        .contains("application/json"));
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM events WHERE aggregate_type = 'company'")
            .await,
        events_before,
        "bad input appended nothing"
    );
}

#[tokio::test]
async fn healthz_reports_projections_and_turns_503_when_one_fails() {
    let app = TestApp::new().await;
    create(&app, "Fine", "1").await;
    let health = app.request(Method::GET, "/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text);
    let body = health.json();
    assert_eq!(body["database"]["reachable"], true);
    assert_eq!(body["projections"][0]["name"], "companies");
    assert_eq!(body["projections"][0]["lag"], 0);

    sqlx::query("ALTER TABLE companies ADD CONSTRAINT no_boom CHECK (name <> 'boom')")
        .execute(&app.db.pool)
        .await
        .unwrap();
    // The write succeeds (events are the truth); the projection stops at it.
    let boom = app
        .request(
            Method::POST,
            "/api/v1/companies",
            Some(r#"{"name": "boom"}"#),
        )
        .await;
    assert_eq!(boom.status, StatusCode::CREATED, "{}", boom.text);
    assert_eq!(boom.json()["name"], "boom");
    st_tests::process::eventually(
        std::time::Duration::from_secs(10),
        "healthz to report the failure",
        || async {
            app.request(Method::GET, "/healthz", None).await.status
                == StatusCode::SERVICE_UNAVAILABLE
        },
    )
    .await;
    let body = app.request(Method::GET, "/healthz", None).await.json();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["projections"][0]["status"], "failed");
    assert!(body["projections"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("no_boom"));

    sqlx::query("ALTER TABLE companies DROP CONSTRAINT no_boom")
        .execute(&app.db.pool)
        .await
        .unwrap();
    st_tests::process::eventually(
        std::time::Duration::from_secs(10),
        "the projection to resume",
        || async { app.request(Method::GET, "/healthz", None).await.status == StatusCode::OK },
    )
    .await;
    assert_eq!(app.db.count("SELECT count(*) FROM companies").await, 2);
}
