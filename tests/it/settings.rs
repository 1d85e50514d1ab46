//! The organisation's settings: everyone reads them, only owners change them.

use axum::http::{Method, StatusCode};
use domain::identity::Role;
use st_tests::TestApp;

const CSRF: &str = "abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdef";

async fn form(app: &TestApp, body: &str) -> st_tests::Reply {
    app.send_body(
        Method::POST,
        "/settings",
        &format!("csrf={CSRF}&{body}"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &format!("st_csrf={CSRF}")),
        ],
    )
    .await
}

#[tokio::test]
async fn an_owner_changes_the_settings_and_bad_values_are_explained() {
    let app = TestApp::new().await;
    let page = app.request(Method::GET, "/settings", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("value=\"Acme IT\"") && page.text.contains("value=\"USD\""));
    let before = app.db.count("SELECT count(*) FROM events").await;
    let bad = form(&app, "name=Acme+IT&currency=XYZ&time_zone=Mars%2FOlympus").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.text.contains("not an ISO 4217 currency code"),
        "{}",
        bad.text
    );
    assert!(bad.text.contains("not an IANA time zone name"));
    assert!(
        bad.text.contains("value=\"Mars/Olympus\""),
        "the input is kept"
    );
    assert_eq!(app.db.count("SELECT count(*) FROM events").await, before);
    let ok = form(
        &app,
        "name=Acme+Managed+IT&currency=eur&time_zone=Europe%2FParis",
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.text);
    let json = app
        .request(Method::GET, "/api/v1/tenant", None)
        .await
        .json();
    assert_eq!(json["name"], "Acme Managed IT");
    assert_eq!(json["currency"], "EUR");
    assert_eq!(json["time_zone"], "Europe/Paris");
    assert_eq!(json["id"], app.owner.tenant_id.to_string());
}

#[tokio::test]
async fn staff_read_the_settings_but_only_owners_change_them() {
    let app = TestApp::new().await;
    let admin = app
        .person(&app.owner, Role::Admin, "admin@acme.test", None)
        .await;
    let page = app
        .send_as(Some(&admin), Method::GET, "/settings", None, &[])
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("Only an owner can change these"));
    assert!(!page
        .text
        .contains("<form method=\"post\" action=\"/settings\""));
    let refused = app
        .send_as(
            Some(&admin),
            Method::PATCH,
            "/api/v1/tenant",
            Some(r#"{"name": "Hijacked"}"#),
            &[],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let bad = app
        .request(
            Method::PATCH,
            "/api/v1/tenant",
            Some(r#"{"time_zone": "Nowhere/Land"}"#),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json()["errors"][0]["field"], "time_zone");
    let unknown = app
        .request(
            Method::PATCH,
            "/api/v1/tenant",
            Some(r#"{"colour": "red"}"#),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    let ok = app
        .request(
            Method::PATCH,
            "/api/v1/tenant",
            Some(r#"{"name": "Renamed IT"}"#),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.json()["name"], "Renamed IT");
    assert_eq!(ok.json()["currency"], "USD", "absent fields stay");
}
