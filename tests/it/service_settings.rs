//! The service desk's settings (business hours, SLA policies, work types and rates, labour
//! costs) and a company's coverage: round trips through the API, every bad field at once with
//! nothing appended, roles and tenants, and the console's forms.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use domain::identity::Role;
use serde_json::{json, Value};
use st_tests::{Person, Reply, TestApp};

const HOURS: &str = "/api/v1/settings/business-hours";
const SLA: &str = "/api/v1/settings/sla-policies";
const WORK: &str = "/api/v1/settings/work-types";
const CSRF: &str = "abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdef";

async fn events(app: &TestApp) -> i64 {
    app.db.count("SELECT count(*) FROM events").await
}

fn fields(reply: &Reply) -> BTreeSet<String> {
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(
        reply.content_type.starts_with("application/problem+json"),
        "{}",
        reply.content_type
    );
    reply.json()["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors: {}", reply.text))
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

async fn put_as(app: &TestApp, who: &Person, path: &str, body: &Value) -> Reply {
    app.send_as(Some(who), Method::PUT, path, Some(&body.to_string()), &[])
        .await
}

async fn put(app: &TestApp, path: &str, body: &Value) -> Reply {
    put_as(app, &app.owner, path, body).await
}

async fn get_as(app: &TestApp, who: &Person, path: &str) -> Reply {
    app.send_as(Some(who), Method::GET, path, None, &[]).await
}

/// A refused request appends nothing: checks `reply` is `status` and the log did not grow.
async fn refused(app: &TestApp, before: i64, reply: &Reply, status: StatusCode) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(events(app).await, before, "a refusal appended events");
}

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

#[tokio::test]
async fn business_hours_round_trip_and_every_bad_field_is_reported() {
    let app = TestApp::new().await;
    let standard = app.request(Method::GET, HOURS, None).await;
    assert_eq!(standard.status, StatusCode::OK, "{}", standard.text);
    assert_eq!(
        standard.json(),
        json!({"time_zone": "UTC", "week": {
            "mon": [["09:00", "17:00"]], "tue": [["09:00", "17:00"]], "wed": [["09:00", "17:00"]],
            "thu": [["09:00", "17:00"]], "fri": [["09:00", "17:00"]]}, "holidays": []})
    );

    let hours = json!({
        "time_zone": "America/New_York",
        "week": {"mon": [["13:00", "17:00"], ["08:00", "12:00"]], "sat": [["10:00", "24:00"]]},
        "holidays": ["2026-12-25", "2026-11-26", "2026-12-25"]
    });
    let saved = put(&app, HOURS, &hours).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    let expected = json!({
        "time_zone": "America/New_York",
        "week": {"mon": [["08:00", "12:00"], ["13:00", "17:00"]], "sat": [["10:00", "24:00"]]},
        "holidays": ["2026-11-26", "2026-12-25"]
    });
    assert_eq!(saved.json(), expected);
    // Days in week order, not alphabetical.
    assert!(saved.text.find("\"mon\"").unwrap() < saved.text.find("\"sat\"").unwrap());
    assert_eq!(app.request(Method::GET, HOURS, None).await.json(), expected);
    let before = events(&app).await;
    let again = put(&app, HOURS, &hours).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(events(&app).await, before, "the same hours change nothing");

    let bad = put(
        &app,
        HOURS,
        &json!({"time_zone": "Mars/Olympus",
            "week": {"funday": [["09:00", "17:00"]], "mon": [["09:00", "25:00"]],
                     "tue": [["09:00", "13:00"], ["12:00", "17:00"]], "wed": [["17:00", "09:00"]]},
            "holidays": ["2026-02-30", "soon"]}),
    )
    .await;
    assert_eq!(fields(&bad), set(&["time_zone", "week", "holidays"]));
    let messages = bad.json()["errors"].as_array().unwrap().len();
    assert!(messages >= 7, "every problem is listed: {}", bad.text);
    refused(&app, before, &bad, StatusCode::UNPROCESSABLE_ENTITY).await;

    for body in [
        json!({"time_zone": "UTC", "week": {}}),
        json!({"week": {"mon": [["09:00", "17:00"]]}}),
        json!({"time_zone": "UTC", "week": {"mon": [["09:00"]]}}),
        json!({"time_zone": "UTC", "week": {"mon": [["09:00", "17:00"]]}, "colour": "red"}),
        json!({"time_zone": 5}),
    ] {
        let reply = put(&app, HOURS, &body).await;
        refused(&app, before, &reply, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(reply.content_type.starts_with("application/problem+json"));
    }
    let not_json = app
        .send_body(
            Method::PUT,
            HOURS,
            "time_zone=UTC",
            &[("content-type", "text/plain")],
        )
        .await;
    refused(&app, before, &not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let syntax = app
        .send_body(
            Method::PUT,
            HOURS,
            "{",
            &[("content-type", "application/json")],
        )
        .await;
    refused(&app, before, &syntax, StatusCode::BAD_REQUEST).await;

    // Everyone reads them; only owners and admins change them.
    let technician = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    let admin = app
        .person(&app.owner, Role::Admin, "admin@acme.test", None)
        .await;
    let before = events(&app).await;
    assert_eq!(get_as(&app, &technician, HOURS).await.json(), expected);
    let denied = put_as(&app, &technician, HOURS, &hours).await;
    refused(&app, before, &denied, StatusCode::FORBIDDEN).await;
    let by_admin = put_as(
        &app,
        &admin,
        HOURS,
        &json!({"time_zone": "UTC", "week": {"sun": [["00:00", "24:00"]]}}),
    )
    .await;
    assert_eq!(by_admin.status, StatusCode::OK, "{}", by_admin.text);
    assert_eq!(
        by_admin.json()["week"],
        json!({"sun": [["00:00", "24:00"]]})
    );
    let nobody = app
        .send_as(None, Method::PUT, HOURS, Some(&hours.to_string()), &[])
        .await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sla_policies_round_trip_and_escalations_go_to_active_staff() {
    let app = TestApp::new().await;
    let empty = app.request(Method::GET, SLA, None).await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.text);
    assert_eq!(empty.json(), json!({"policies": [], "escalate_to": null}));

    let admin = app
        .person(&app.owner, Role::Admin, "admin@acme.test", None)
        .await;
    let body = json!({"policies": [
            {"priority": "normal", "response_minutes": 480, "resolution_minutes": 2400},
            {"priority": "Urgent", "response_minutes": 60, "resolution_minutes": 240}],
        "escalate_to": admin.user_id});
    let saved = put(&app, SLA, &body).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    let expected = json!({"policies": [
            {"priority": "urgent", "response_minutes": 60, "resolution_minutes": 240},
            {"priority": "normal", "response_minutes": 480, "resolution_minutes": 2400}],
        "escalate_to": admin.user_id.to_string()});
    assert_eq!(saved.json(), expected);
    assert_eq!(app.request(Method::GET, SLA, None).await.json(), expected);
    // The answer can be sent back as it is.
    let before = events(&app).await;
    let echoed = put(&app, SLA, &expected).await;
    assert_eq!(echoed.status, StatusCode::OK, "{}", echoed.text);
    assert_eq!(events(&app).await, before);

    let bad = put(
        &app,
        SLA,
        &json!({"policies": [
                {"priority": "asap", "response_minutes": 1, "resolution_minutes": 2},
                {"priority": "high", "response_minutes": 0, "resolution_minutes": 600000},
                {"priority": "low", "response_minutes": 90, "resolution_minutes": 30},
                {"priority": "low", "response_minutes": 9, "resolution_minutes": 30}],
            "escalate_to": "nobody"}),
    )
    .await;
    assert_eq!(fields(&bad), set(&["policies", "escalate_to"]));
    assert!(
        bad.json()["errors"].as_array().unwrap().len() >= 6,
        "{}",
        bad.text
    );
    refused(&app, before, &bad, StatusCode::UNPROCESSABLE_ENTITY).await;

    // Escalations go to an active staff member of this tenant only.
    let company_id = company(&app, "Northwind").await;
    let client = app
        .person(
            &app.owner,
            Role::Client,
            "client@northwind.test",
            Some(company_id.parse().unwrap()),
        )
        .await;
    let stranger = app.other_tenant("Other IT", "owner@other.test").await;
    let before = events(&app).await;
    for who in [client.user_id, stranger.user_id, uuid::Uuid::nil()] {
        let reply = put(&app, SLA, &json!({"policies": [], "escalate_to": who})).await;
        assert_eq!(fields(&reply), set(&["escalate_to"]));
        refused(&app, before, &reply, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let unknown = put(&app, SLA, &json!({"policies": [], "escalation": null})).await;
    refused(&app, before, &unknown, StatusCode::UNPROCESSABLE_ENTITY).await;
    let numbers = put(
        &app,
        SLA,
        &json!({"policies": [{"priority": "low", "response_minutes": "60", "resolution_minutes": 90}]}),
    )
    .await;
    refused(&app, before, &numbers, StatusCode::UNPROCESSABLE_ENTITY).await;

    // Clients read them; neither they nor technicians nor accountants change them.
    assert_eq!(get_as(&app, &client, SLA).await.status, StatusCode::OK);
    let accountant = app
        .person(&app.owner, Role::Accountant, "books@acme.test", None)
        .await;
    let technician = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    let before = events(&app).await;
    for who in [&client, &accountant, &technician] {
        let reply = put_as(&app, who, SLA, &json!({"policies": []})).await;
        refused(&app, before, &reply, StatusCode::FORBIDDEN).await;
    }

    // No escalation, no policies: cleared.
    let cleared = put(&app, SLA, &json!({"policies": [], "escalate_to": null})).await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text);
    assert_eq!(cleared.json(), json!({"policies": [], "escalate_to": null}));
}

#[tokio::test]
async fn work_types_and_rates_round_trip_and_are_checked() {
    let app = TestApp::new().await;
    let defaults = app.request(Method::GET, WORK, None).await;
    assert_eq!(defaults.status, StatusCode::OK, "{}", defaults.text);
    let json = defaults.json();
    let names: Vec<&str> = json["work_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "repair",
            "install",
            "maintenance",
            "network",
            "phone service",
            "consulting"
        ]
    );
    assert_eq!(defaults.json()["default_hourly_rate"], Value::Null);

    let saved = put(
        &app,
        WORK,
        &json!({"work_types": [{"name": "Repair", "hourly_rate": "95"}, {"name": "install"},
            {"name": "on-site support", "hourly_rate": null}], "default_hourly_rate": "100.5"}),
    )
    .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    let expected = json!({"work_types": [
            {"name": "repair", "hourly_rate": "95.00"},
            {"name": "install", "hourly_rate": null},
            {"name": "on-site support", "hourly_rate": null}],
        "default_hourly_rate": "100.50"});
    assert_eq!(saved.json(), expected);
    assert_eq!(app.request(Method::GET, WORK, None).await.json(), expected);

    let before = events(&app).await;
    let bad = put(
        &app,
        WORK,
        &json!({"work_types": [{"name": "repair"}, {"name": "REPAIR"}, {"name": "a/b"},
            {"name": "install", "hourly_rate": "-5"}, {"name": "network", "hourly_rate": 90}],
            "default_hourly_rate": "12.345"}),
    )
    .await;
    assert_eq!(fields(&bad), set(&["work_types", "default_hourly_rate"]));
    assert_eq!(
        bad.json()["errors"].as_array().unwrap().len(),
        5,
        "{}",
        bad.text
    );
    refused(&app, before, &bad, StatusCode::UNPROCESSABLE_ENTITY).await;
    for body in [
        json!({"work_types": [], "default_hourly_rate": "100"}),
        json!({"work_types": [{"name": "repair"}]}),
        json!({"work_types": [{"name": "repair"}], "default_hourly_rate": 100}),
        json!({"work_types": [{"name": "repair", "rate": "1"}], "default_hourly_rate": "1"}),
    ] {
        let reply = put(&app, WORK, &body).await;
        refused(&app, before, &reply, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let technician = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    let before = events(&app).await;
    assert_eq!(get_as(&app, &technician, WORK).await.json(), expected);
    let denied = put_as(&app, &technician, WORK, &expected).await;
    refused(&app, before, &denied, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn labour_costs_are_set_by_owners_and_admins_for_their_own_people() {
    let app = TestApp::new().await;
    let technician = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    let admin = app
        .person(&app.owner, Role::Admin, "admin@acme.test", None)
        .await;
    let path = format!("/api/v1/users/{}/labour-cost", technician.user_id);

    let set_cost = put_as(&app, &admin, &path, &json!({"hourly_cost": "35"})).await;
    assert_eq!(set_cost.status, StatusCode::OK, "{}", set_cost.text);
    assert_eq!(set_cost.json(), json!({"hourly_cost": "35.00"}));
    let (tenant, _) = app
        .store
        .load::<domain::tenant::Tenant>(app.owner.tenant_id, &app.owner.tenant_id.to_string())
        .await
        .unwrap();
    assert_eq!(
        tenant.members[&technician.user_id]
            .hourly_cost
            .map(|c| c.to_string()),
        Some("35.00".to_owned())
    );

    let before = events(&app).await;
    for body in [
        json!({"hourly_cost": "x"}),
        json!({"hourly_cost": "-1"}),
        json!({"hourly_cost": 35}),
        json!({}),
        json!({"hourly_cost": "1", "currency": "USD"}),
    ] {
        let reply = put(&app, &path, &body).await;
        refused(&app, before, &reply, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    assert_eq!(
        fields(&put(&app, &path, &json!({"hourly_cost": "x"})).await),
        set(&["hourly_cost"])
    );

    // Another tenant's person, or nobody: 404; not an id: 400; not allowed: 403.
    let stranger = app.other_tenant("Other IT", "owner@other.test").await;
    let before = events(&app).await;
    for id in [stranger.user_id, uuid::Uuid::nil()] {
        let reply = put(
            &app,
            &format!("/api/v1/users/{id}/labour-cost"),
            &json!({"hourly_cost": "1"}),
        )
        .await;
        refused(&app, before, &reply, StatusCode::NOT_FOUND).await;
    }
    let not_id = put(
        &app,
        "/api/v1/users/42/labour-cost",
        &json!({"hourly_cost": "1"}),
    )
    .await;
    refused(&app, before, &not_id, StatusCode::BAD_REQUEST).await;
    let own = put_as(&app, &technician, &path, &json!({"hourly_cost": "500"})).await;
    refused(&app, before, &own, StatusCode::FORBIDDEN).await;

    let cleared = put(&app, &path, &json!({"hourly_cost": null})).await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text);
    assert_eq!(cleared.json(), json!({"hourly_cost": null}));
}

#[tokio::test]
async fn coverage_round_trips_and_is_checked_against_the_work_types() {
    let app = TestApp::new().await;
    let id = company(&app, "Northwind").await;
    let path = format!("/api/v1/companies/{id}/coverage");
    let none = app.request(Method::GET, &path, None).await;
    assert_eq!(none.status, StatusCode::OK, "{}", none.text);
    assert_eq!(
        none.json(),
        json!({"covered_work_types": [], "included_hours": null, "covers_after_hours": false,
            "hourly_rate": null, "after_hours_rate": null})
    );

    // Accountants set contract rates and coverage.
    let accountant = app
        .person(&app.owner, Role::Accountant, "books@acme.test", None)
        .await;
    let body = json!({"covered_work_types": ["Repair", "network", "repair"], "included_hours": "7.5",
        "covers_after_hours": true, "hourly_rate": "90", "after_hours_rate": "150.00"});
    let saved = put_as(&app, &accountant, &path, &body).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    let expected = json!({"covered_work_types": ["network", "repair"], "included_hours": "7.5",
        "covers_after_hours": true, "hourly_rate": "90.00", "after_hours_rate": "150.00"});
    assert_eq!(saved.json(), expected);
    assert_eq!(app.request(Method::GET, &path, None).await.json(), expected);
    let before = events(&app).await;
    let echoed = put(&app, &path, &expected).await;
    assert_eq!(echoed.status, StatusCode::OK, "{}", echoed.text);
    assert_eq!(
        events(&app).await,
        before,
        "the same coverage changes nothing"
    );

    let bad = put(
        &app,
        &path,
        &json!({"covered_work_types": ["painting"], "included_hours": "0.01",
            "hourly_rate": "-1", "after_hours_rate": 150}),
    )
    .await;
    assert_eq!(
        fields(&bad),
        set(&[
            "covered_work_types",
            "included_hours",
            "hourly_rate",
            "after_hours_rate"
        ])
    );
    let order: Vec<String> = bad.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        order,
        [
            "covered_work_types",
            "included_hours",
            "hourly_rate",
            "after_hours_rate"
        ]
    );
    refused(&app, before, &bad, StatusCode::UNPROCESSABLE_ENTITY).await;
    let too_many = put(&app, &path, &json!({"included_hours": "745"})).await;
    assert_eq!(fields(&too_many), set(&["included_hours"]));
    let unknown = put(&app, &path, &json!({"covers_weekends": true})).await;
    refused(&app, before, &unknown, StatusCode::UNPROCESSABLE_ENTITY).await;

    // A work type the tenant adds can be covered.
    let work = put(
        &app,
        WORK,
        &json!({"work_types": [{"name": "repair"}, {"name": "painting"}], "default_hourly_rate": "80"}),
    )
    .await;
    assert_eq!(work.status, StatusCode::OK, "{}", work.text);
    let painted = put(&app, &path, &json!({"covered_work_types": ["painting"]})).await;
    assert_eq!(painted.status, StatusCode::OK, "{}", painted.text);
    assert_eq!(painted.json()["covered_work_types"], json!(["painting"]));
    assert_eq!(painted.json()["included_hours"], Value::Null);

    // Roles: technicians read, never change; clients neither.
    let technician = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    let client = app
        .person(
            &app.owner,
            Role::Client,
            "client@northwind.test",
            Some(id.parse().unwrap()),
        )
        .await;
    let before = events(&app).await;
    assert_eq!(
        get_as(&app, &technician, &path).await.status,
        StatusCode::OK
    );
    let denied = put_as(&app, &technician, &path, &expected).await;
    refused(&app, before, &denied, StatusCode::FORBIDDEN).await;
    assert_eq!(
        get_as(&app, &client, &path).await.status,
        StatusCode::FORBIDDEN
    );
    let denied = put_as(&app, &client, &path, &expected).await;
    refused(&app, before, &denied, StatusCode::FORBIDDEN).await;

    // Another tenant's company, or none: 404 (whatever the body); an archived one: 409.
    let stranger = app.other_tenant("Other IT", "owner@other.test").await;
    let theirs = app
        .send_as(
            Some(&stranger),
            Method::POST,
            "/api/v1/companies",
            Some(r#"{"name": "Theirs"}"#),
            &[],
        )
        .await;
    let theirs = theirs.json()["id"].as_str().unwrap().to_owned();
    let before = events(&app).await;
    for other in [theirs.clone(), uuid::Uuid::nil().to_string()] {
        let other_path = format!("/api/v1/companies/{other}/coverage");
        let read = app.request(Method::GET, &other_path, None).await;
        assert_eq!(read.status, StatusCode::NOT_FOUND, "{}", read.text);
        let write = put(&app, &other_path, &json!({"covered_work_types": ["nope"]})).await;
        refused(&app, before, &write, StatusCode::NOT_FOUND).await;
    }
    let bad_id = app
        .request(Method::GET, "/api/v1/companies/x/coverage", None)
        .await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);

    let archived = app
        .request(
            Method::PATCH,
            &format!("/api/v1/companies/{id}"),
            Some(r#"{"archived": true}"#),
        )
        .await;
    assert_eq!(archived.status, StatusCode::OK, "{}", archived.text);
    let before = events(&app).await;
    let frozen = put(&app, &path, &expected).await;
    refused(&app, before, &frozen, StatusCode::CONFLICT).await;
    assert_eq!(
        app.request(Method::GET, &path, None).await.status,
        StatusCode::OK,
        "an archived company's coverage can still be read"
    );
}

async fn form(app: &TestApp, who: &Person, path: &str, body: &str) -> Reply {
    app.send_body_as(
        Some(who),
        Method::POST,
        path,
        &format!("csrf={CSRF}&{body}"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &format!("st_csrf={CSRF}")),
        ],
    )
    .await
}

#[tokio::test]
async fn the_console_changes_the_service_desk_settings() {
    let app = TestApp::new().await;
    let page = app
        .request(Method::GET, "/settings/service-desk", None)
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    for part in [
        "Business hours",
        "SLA policies",
        "Work types and rates",
        "Labour costs",
        "name=\"mon_from_0\" value=\"09:00\"",
        "action=\"/settings/service-desk/business-hours\"",
    ] {
        assert!(page.text.contains(part), "{part}: {}", page.text);
    }

    // A bad form is shown again with its messages and the input kept; nothing is saved.
    let hours = "/settings/service-desk/business-hours";
    let before = events(&app).await;
    let bad = form(
        &app,
        &app.owner,
        hours,
        "time_zone=Mars%2FOlympus&mon_open=on&mon_from_0=09%3A00&mon_to_0=25%3A00\
         &tue_open=on&holidays=2026-13-01",
    )
    .await;
    refused(&app, before, &bad, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        bad.text.contains("not an IANA time zone name"),
        "{}",
        bad.text
    );
    assert!(
        bad.text.contains("is not a time written HH:MM"),
        "{}",
        bad.text
    );
    assert!(bad.text.contains("Give the opening hours, or untick Open."));
    assert!(bad.text.contains("is not a date written YYYY-MM-DD"));
    assert!(
        bad.text.contains("value=\"Mars/Olympus\""),
        "the input is kept"
    );
    assert!(bad.text.contains("value=\"25:00\""), "the input is kept");

    let good = form(
        &app,
        &app.owner,
        hours,
        "time_zone=Europe%2FParis&mon_open=on&mon_from_0=08%3A00&mon_to_0=12%3A00\
         &mon_from_1=13%3A00&mon_to_1=17%3A00&tue_from_0=09%3A00&tue_to_0=17%3A00\
         &fri_open=on&fri_from_0=09%3A00&fri_to_0=15%3A00&holidays=2026-12-25%0D%0A2026-12-24",
    )
    .await;
    assert_eq!(good.status, StatusCode::SEE_OTHER, "{}", good.text);
    assert_eq!(good.headers["location"], "/settings/service-desk");
    assert_eq!(
        app.request(Method::GET, HOURS, None).await.json(),
        json!({"time_zone": "Europe/Paris",
            "week": {"mon": [["08:00", "12:00"], ["13:00", "17:00"]], "fri": [["09:00", "15:00"]]},
            "holidays": ["2026-12-24", "2026-12-25"]})
    );

    // SLA, work types and labour costs.
    let technician = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    let sla = "/settings/service-desk/sla-policies";
    let before = events(&app).await;
    let bad = form(
        &app,
        &app.owner,
        sla,
        "urgent_response=60&urgent_resolution=&high_response=x&high_resolution=9",
    )
    .await;
    refused(&app, before, &bad, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(bad.text.contains("Give both targets"), "{}", bad.text);
    let saved = form(
        &app,
        &app.owner,
        sla,
        &format!(
            "urgent_response=60&urgent_resolution=240&low_response=&low_resolution=&escalate_to={}",
            technician.user_id
        ),
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.text);
    assert_eq!(
        app.request(Method::GET, SLA, None).await.json(),
        json!({"policies": [{"priority": "urgent", "response_minutes": 60, "resolution_minutes": 240}],
            "escalate_to": technician.user_id.to_string()})
    );

    let work = "/settings/service-desk/work-types";
    let before = events(&app).await;
    let bad = form(
        &app,
        &app.owner,
        work,
        "work_types=repair+%3D+abc&default_hourly_rate=",
    )
    .await;
    refused(&app, before, &bad, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        bad.text.contains("The default rate is required"),
        "{}",
        bad.text
    );
    let saved = form(
        &app,
        &app.owner,
        work,
        "work_types=repair+%3D+95%0D%0Ainstall%0D%0A&default_hourly_rate=100",
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.text);
    assert_eq!(
        app.request(Method::GET, WORK, None).await.json(),
        json!({"work_types": [{"name": "repair", "hourly_rate": "95.00"},
            {"name": "install", "hourly_rate": null}], "default_hourly_rate": "100.00"})
    );

    let costs = "/settings/service-desk/labour-costs";
    let field = format!("cost_{}", technician.user_id);
    let before = events(&app).await;
    let bad = form(&app, &app.owner, costs, &format!("{field}=lots")).await;
    refused(&app, before, &bad, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(bad.text.contains("value=\"lots\""), "{}", bad.text);
    let saved = form(&app, &app.owner, costs, &format!("{field}=42.5")).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.text);
    let page = app
        .request(Method::GET, "/settings/service-desk", None)
        .await;
    assert!(page.text.contains("value=\"42.50\""), "{}", page.text);

    // Technicians see the settings, without forms or labour costs, and cannot post.
    let read_only = app
        .send_as(
            Some(&technician),
            Method::GET,
            "/settings/service-desk",
            None,
            &[],
        )
        .await;
    assert_eq!(read_only.status, StatusCode::OK);
    assert!(
        read_only.text.contains("08:00–12:00, 13:00–17:00"),
        "{}",
        read_only.text
    );
    assert!(!read_only
        .text
        .contains("<form method=\"post\" action=\"/settings/service-desk"));
    assert!(!read_only.text.contains("42.50"));
    let before = events(&app).await;
    let denied = form(
        &app,
        &technician,
        hours,
        "time_zone=UTC&sun_open=on&sun_from_0=10%3A00&sun_to_0=11%3A00",
    )
    .await;
    refused(&app, before, &denied, StatusCode::FORBIDDEN).await;
    // A form without the CSRF token is refused.
    let forged = app
        .send_body(
            Method::POST,
            hours,
            "time_zone=UTC&sun_open=on&sun_from_0=10%3A00&sun_to_0=11%3A00",
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    refused(&app, before, &forged, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn the_console_sets_a_companys_coverage() {
    let app = TestApp::new().await;
    let id = company(&app, "Northwind").await;
    let path = format!("/companies/{id}/coverage");
    let page = app.request(Method::GET, &path, None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("Northwind"));
    assert!(page.text.contains("name=\"covered\" value=\"repair\""));

    let before = events(&app).await;
    let bad = form(
        &app,
        &app.owner,
        &path,
        "covered=repair&covered=painting&included_hours=abc&hourly_rate=-1",
    )
    .await;
    refused(&app, before, &bad, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(bad.text.contains("is not a work type"), "{}", bad.text);
    assert!(bad.text.contains("value=\"abc\""), "the input is kept");
    assert!(
        bad.text.contains("The hourly rate must not be negative"),
        "{}",
        bad.text
    );

    let saved = form(
        &app,
        &app.owner,
        &path,
        "covered=repair&covered=network&included_hours=10&covers_after_hours=on&after_hours_rate=150",
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.text);
    assert_eq!(
        app.request(
            Method::GET,
            &format!("/api/v1/companies/{id}/coverage"),
            None
        )
        .await
        .json(),
        json!({"covered_work_types": ["network", "repair"], "included_hours": "10",
            "covers_after_hours": true, "hourly_rate": null, "after_hours_rate": "150.00"})
    );

    // Technicians read it; another tenant's company is not found.
    let technician = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    let read_only = app
        .send_as(Some(&technician), Method::GET, &path, None, &[])
        .await;
    assert_eq!(read_only.status, StatusCode::OK);
    assert!(
        read_only.text.contains("repair, network"),
        "{}",
        read_only.text
    );
    let before = events(&app).await;
    let denied = form(&app, &technician, &path, "covered=repair").await;
    refused(&app, before, &denied, StatusCode::FORBIDDEN).await;
    let stranger = app.other_tenant("Other IT", "owner@other.test").await;
    let elsewhere = app
        .send_as(Some(&stranger), Method::GET, &path, None, &[])
        .await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    let before = events(&app).await;
    let posted = form(&app, &stranger, &path, "covered=repair").await;
    refused(&app, before, &posted, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn the_service_settings_answer_as_the_openapi_document_says() {
    let app = TestApp::new().await;
    let doc = app
        .request(Method::GET, "/api/v1/openapi.json", None)
        .await
        .json();
    let schemas = &doc["components"]["schemas"];
    for (path, method, schema) in [
        (HOURS, "put", "BusinessHours"),
        (SLA, "put", "SlaPolicies"),
        (WORK, "put", "WorkTypeSettings"),
        ("/api/v1/users/{id}/labour-cost", "put", "LabourCost"),
        ("/api/v1/companies/{id}/coverage", "put", "CompanyCoverage"),
    ] {
        let body = &doc["paths"][path][method]["requestBody"];
        assert_eq!(body["required"], true, "{path}");
        assert_eq!(
            body["content"]["application/json"]["schema"]["$ref"],
            format!("#/components/schemas/{schema}"),
            "{path}"
        );
        assert_eq!(schemas[schema]["additionalProperties"], false, "{schema}");
    }
    assert_eq!(
        schemas["CompanyCoverage"]["properties"]["hourly_rate"]["type"],
        json!(["string", "null"])
    );
}
