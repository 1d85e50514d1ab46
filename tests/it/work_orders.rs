//! Work orders through the API (issue 5): raising with SLA due times worked out by hand in
//! business hours, every refused field at once, status moves and their refusals, time entries
//! billed from the company's coverage (included hours running out mid-month), a closed order
//! gaining no time, timers, assets held in repair, the SLA scheduler (claims, warnings,
//! breaches, once only), clients raising work for their own company, other tenants.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Utc};
use commands::{ConflictPolicy, EventMeta};
use domain::business_hours::{BusinessHours, BusinessHoursInput};
use domain::company::{Company, CompanyCommand};
use domain::coverage::Coverage;
use domain::identity::Role;
use domain::tenant::{Tenant, TenantCommand};
use domain::values::Amount;
use domain::workorder::{Priority, SlaPolicy};
use serde_json::{json, Value};
use st_tests::{Person, TestApp};
use uuid::Uuid;
use web::state::{AppState, Settings};

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

fn owner_meta(app: &TestApp) -> EventMeta {
    EventMeta::new(app.owner.tenant_id, app.owner.user_id.to_string())
}

async fn tenant_command(app: &TestApp, command: TenantCommand) {
    let id = app.owner.tenant_id.to_string();
    app.store
        .execute::<Tenant>(&id, command, &(), &owner_meta(app), ConflictPolicy::Report)
        .await
        .unwrap();
}

/// New York business hours, Mon–Fri 09–17, Thanksgiving off; urgent 60/240, normal 240/960.
async fn service_desk(app: &TestApp) {
    let input: BusinessHoursInput = serde_json::from_value(json!({
        "time_zone": "America/New_York",
        "week": {"mon": [["09:00","17:00"]], "tue": [["09:00","17:00"]],
                 "wed": [["09:00","17:00"]], "thu": [["09:00","17:00"]],
                 "fri": [["09:00","17:00"]]},
        "holidays": ["2025-11-27", "2026-11-26"]
    }))
    .unwrap();
    tenant_command(
        app,
        TenantCommand::SetBusinessHours {
            hours: BusinessHours::parse(&input).unwrap(),
        },
    )
    .await;
    tenant_command(
        app,
        TenantCommand::SetSlaPolicies {
            policies: vec![
                SlaPolicy {
                    priority: Priority::Urgent,
                    response_minutes: 60,
                    resolution_minutes: 240,
                },
                SlaPolicy {
                    priority: Priority::Normal,
                    response_minutes: 240,
                    resolution_minutes: 960,
                },
            ],
            escalate_to: Some(app.owner.user_id),
        },
    )
    .await;
    tenant_command(
        app,
        TenantCommand::ChangeWorkSettings {
            work_types: vec![
                domain::coverage::WorkType {
                    name: "repair".into(),
                    hourly_rate: Some(Amount::parse("r", "90").unwrap()),
                },
                domain::coverage::WorkType {
                    name: "install".into(),
                    hourly_rate: None,
                },
            ],
            default_hourly_rate: Amount::parse("r", "100").unwrap(),
        },
    )
    .await;
}

async fn cover(app: &TestApp, company_id: &str, coverage: Coverage) {
    app.store
        .execute::<Company>(
            company_id,
            CompanyCommand::SetCoverage { coverage },
            &(),
            &owner_meta(app),
            ConflictPolicy::Report,
        )
        .await
        .unwrap();
}

async fn raise(app: &TestApp, body: Value) -> Value {
    let reply = app
        .request(Method::POST, "/api/v1/work-orders", Some(&body.to_string()))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json()
}

async fn patch(app: &TestApp, id: &str, body: Value) -> (StatusCode, Value) {
    let reply = app
        .request(
            Method::PATCH,
            &format!("/api/v1/work-orders/{id}"),
            Some(&body.to_string()),
        )
        .await;
    let json = serde_json::from_str(&reply.text).unwrap_or(Value::Null);
    (reply.status, json)
}

fn fields(reply: &Value) -> BTreeSet<String> {
    reply["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn state(app: &TestApp) -> AppState {
    AppState::new(
        app.db.pool.clone(),
        app.store.clone(),
        Settings::local(Duration::from_secs(2)),
    )
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[tokio::test]
async fn raising_sets_sla_due_times_in_business_hours_and_refuses_bad_fields_at_once() {
    let app = TestApp::new().await;
    service_desk(&app).await;
    let acme = company(&app, "Northwind").await;

    // Opened Wednesday 2025-11-26 16:30 New York (21:30Z), the day before Thanksgiving.
    // Urgent: response 60 business minutes → 30 min Wednesday + 30 min Friday → Fri 09:30
    // (14:30Z); resolution 240 → 30 Wed + 210 Fri → Fri 12:30 (17:30Z).
    let order = raise(
        &app,
        json!({"company_id": acme, "title": "Server down", "priority": "urgent",
               "type": "repair", "opened_at": "2025-11-26T21:30:00Z"}),
    )
    .await;
    assert_eq!(order["number"], 1);
    assert_eq!(order["status"], "new");
    assert_eq!(order["sla"]["response_due_at"], "2025-11-28T14:30:00Z");
    assert_eq!(order["sla"]["resolution_due_at"], "2025-11-28T17:30:00Z");
    assert_eq!(order["company_name"], "Northwind");

    // Low has no policy: no due times, state none.
    let low = raise(
        &app,
        json!({"company_id": acme, "title": "Label the ports", "priority": "low", "type": "install"}),
    )
    .await;
    assert_eq!(low["number"], 2);
    assert_eq!(low["sla"]["state"], "none");
    assert!(low["sla"]["response_due_at"].is_null());

    // Every bad field at once; nothing appended.
    let before = app.db.count("SELECT count(*) FROM events").await;
    let reply = app
        .request(
            Method::POST,
            "/api/v1/work-orders",
            Some(
                &json!({"company_id": acme, "title": " ", "priority": "asap", "type": "painting",
                        "asset_ids": [Uuid::now_v7()], "contact_id": Uuid::now_v7(),
                        "opened_at": "2099-01-01T00:00:00Z"})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    let got = fields(&reply.json());
    for f in [
        "title",
        "priority",
        "type",
        "asset_ids",
        "contact_id",
        "opened_at",
    ] {
        assert!(got.contains(f), "{f} missing in {}", reply.text);
    }
    assert_eq!(app.db.count("SELECT count(*) FROM events").await, before);

    // Another tenant's company is not ours.
    let other = app.other_tenant("Other MSP", "owner@other.test").await;
    let reply = app
        .send_as(
            Some(&other),
            Method::POST,
            "/api/v1/work-orders",
            Some(&json!({"company_id": acme, "title": "x"}).to_string()),
            &[],
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(fields(&reply.json()).contains("company_id"));
    let id = order["id"].as_str().unwrap();
    let reply = app
        .send_as(
            Some(&other),
            Method::GET,
            &format!("/api/v1/work-orders/{id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = app
        .send_as(Some(&other), Method::GET, "/api/v1/work-orders", None, &[])
        .await;
    assert_eq!(reply.json()["items"].as_array().unwrap().len(), 0);

    // A technician may not back-date; a malformed body is a 4xx, never a 500.
    let tech = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    let reply = app
        .send_as(
            Some(&tech),
            Method::POST,
            "/api/v1/work-orders",
            Some(
                &json!({"company_id": acme, "title": "x", "opened_at": "2026-01-01T00:00:00Z"})
                    .to_string(),
            ),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(fields(&reply.json()).contains("opened_at"));
    for body in [r#"{"company_id": 5}"#, r#"[]"#, r#"{"nope": 1}"#, "{"] {
        let reply = app
            .request(Method::POST, "/api/v1/work-orders", Some(body))
            .await;
        assert!(reply.status.is_client_error(), "{body}: {}", reply.status);
    }
}

#[tokio::test]
async fn status_moves_follow_the_lifecycle_and_refusals_say_what_is_allowed() {
    let app = TestApp::new().await;
    service_desk(&app).await;
    let acme = company(&app, "Northwind").await;
    let order = raise(&app, json!({"company_id": acme, "title": "Printer jams"})).await;
    let id = order["id"].as_str().unwrap();

    // Starting work needs an assignee.
    let (status, body) = patch(&app, id, json!({"status": "in_progress"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("assign"),
        "{body}"
    );

    let owner = app.owner.user_id.to_string();
    let (status, body) = patch(&app, id, json!({"assignee_id": owner})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "assigned");
    assert_eq!(body["assignee_id"], owner.as_str());

    // Assign and start in one request; responded_at is set by starting work.
    let (status, body) = patch(&app, id, json!({"status": "in_progress"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["sla"]["responded_at"].is_string());
    let (_, body) = patch(&app, id, json!({"status": "waiting_on_customer"})).await;
    assert_eq!(body["sla"]["state"], "paused");
    assert!(body["sla"]["paused_since"].is_string());
    let (_, body) = patch(&app, id, json!({"status": "resolved"})).await;
    assert_eq!(body["status"], "resolved");
    assert!(body["resolved_at"].is_string());

    // Resolved → in progress is refused, naming what is allowed; nothing appended.
    let before = app.db.count("SELECT count(*) FROM events").await;
    let (status, body) = patch(&app, id, json!({"status": "in_progress"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("closed, reopened"), "{detail}");
    assert_eq!(app.db.count("SELECT count(*) FROM events").await, before);
    let (status, _) = patch(&app, id, json!({"status": "assigned"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = patch(&app, id, json!({"status": "done"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (_, body) = patch(&app, id, json!({"status": "closed"})).await;
    assert_eq!(body["status"], "closed");
    assert!(body["closed_at"].is_string());

    // A closed order gains no time until reopened.
    let time = json!({"minutes": 30}).to_string();
    let path = format!("/api/v1/work-orders/{id}/time-entries");
    let reply = app.request(Method::POST, &path, Some(&time)).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    assert!(reply.json()["detail"].as_str().unwrap().contains("reopen"));
    let (_, body) = patch(&app, id, json!({"status": "reopened"})).await;
    assert_eq!(body["status"], "reopened");
    let reply = app.request(Method::POST, &path, Some(&time)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);

    // Filters of the list.
    let open = app
        .request(
            Method::GET,
            "/api/v1/work-orders?status=open&assignee=me",
            None,
        )
        .await;
    assert_eq!(open.json()["items"].as_array().unwrap().len(), 1);
    let closed = app
        .request(Method::GET, "/api/v1/work-orders?status=closed", None)
        .await;
    assert_eq!(closed.json()["items"].as_array().unwrap().len(), 0);
    for bad in [
        "status=later",
        "assignee=someone",
        "sla=red",
        "limit=0",
        "after=x",
    ] {
        let reply = app
            .request(Method::GET, &format!("/api/v1/work-orders?{bad}"), None)
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }

    // Comments: a public staff comment, an empty one refused.
    let comments = format!("/api/v1/work-orders/{id}/comments");
    let reply = app
        .request(
            Method::POST,
            &comments,
            Some(&json!({"body": "Fuser replaced", "public": true}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.json()["comments"], 1);
    let reply = app
        .request(
            Method::POST,
            &comments,
            Some(&json!({"body": "  "}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn time_is_billed_from_coverage_and_included_hours_run_out_mid_month() {
    let app = TestApp::new().await;
    service_desk(&app).await;
    let acme = company(&app, "Northwind").await;
    cover(
        &app,
        &acme,
        Coverage {
            covered_work_types: vec!["repair".into()],
            included_minutes: Some(120),
            covers_after_hours: false,
            hourly_rate: None,
            after_hours_rate: Some(Amount::parse("r", "150").unwrap()),
        },
    )
    .await;
    let repair = raise(
        &app,
        json!({"company_id": acme, "title": "Fix", "type": "repair"}),
    )
    .await;
    let install = raise(
        &app,
        json!({"company_id": acme, "title": "Set up", "type": "install"}),
    )
    .await;
    let log = |id: &Value, body: Value| {
        let path = format!("/api/v1/work-orders/{}/time-entries", id.as_str().unwrap());
        let body = body.to_string();
        let app = &app;
        async move {
            let reply = app.request(Method::POST, &path, Some(&body)).await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
            reply.json()["items"].as_array().unwrap().clone()
        }
    };
    // 90 of the 120 included minutes in October: contract.
    let e = log(
        &repair["id"],
        json!({"minutes": 90, "work_date": "2026-10-02"}),
    )
    .await;
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0]["billing"].as_str(), e[0]["amount"].as_str()),
        (Some("contract"), Some("0.00"))
    );
    // 60 more: 30 contract + 30 billable at the repair rate 90.00 → 45.00.
    let e = log(
        &repair["id"],
        json!({"minutes": 60, "work_date": "2026-10-10", "note": "part 2"}),
    )
    .await;
    let got: Vec<(String, i64, String)> = e
        .iter()
        .map(|x| {
            (
                x["billing"].as_str().unwrap().to_owned(),
                x["minutes"].as_i64().unwrap(),
                x["amount"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("contract".into(), 30, "0.00".into()),
            ("billable".into(), 30, "45.00".into())
        ]
    );
    // The month is used up: billable. Another month starts afresh (back-dated to September).
    let e = log(
        &repair["id"],
        json!({"minutes": 15, "work_date": "2026-10-31"}),
    )
    .await;
    assert_eq!(e[0]["billing"], "billable");
    let e = log(
        &repair["id"],
        json!({"minutes": 15, "work_date": "2026-09-30"}),
    )
    .await;
    assert_eq!(e[0]["billing"], "contract");
    // Uncovered type: billable at the tenant default 100.00; after hours at 150.00; an
    // override wins.
    let e = log(
        &install["id"],
        json!({"minutes": 45, "work_date": "2026-11-02"}),
    )
    .await;
    assert_eq!(
        (e[0]["billing"].as_str(), e[0]["amount"].as_str()),
        (Some("billable"), Some("75.00"))
    );
    let e = log(&install["id"], json!({"minutes": 20, "after_hours": true})).await;
    assert_eq!(e[0]["amount"], "50.00");
    let e = log(
        &install["id"],
        json!({"minutes": 20, "billing": "contract"}),
    )
    .await;
    assert_eq!(e[0]["billing"], "contract");

    // Unbilled work: 45.00 + 22.50 (15 min at 90) + 75.00 + 50.00 = 192.50.
    app.settle().await;
    let reply = app
        .request(Method::GET, "/api/v1/unbilled-work", None)
        .await;
    let items = reply.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{}", reply.text);
    assert_eq!(items[0]["amount"], "192.50");
    assert_eq!(items[0]["minutes"], 30 + 15 + 45 + 20);

    // Bad entries: all fields at once, no event.
    let before = app.db.count("SELECT count(*) FROM events").await;
    let path = format!(
        "/api/v1/work-orders/{}/time-entries",
        repair["id"].as_str().unwrap()
    );
    let reply = app
        .request(
            Method::POST,
            &path,
            Some(&json!({"minutes": 0, "work_date": "2099-01-01", "billing": "free"}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        fields(&reply.json()),
        ["billing", "minutes", "work_date"].map(String::from).into()
    );
    assert_eq!(app.db.count("SELECT count(*) FROM events").await, before);
}

#[tokio::test]
async fn timers_log_what_they_ran_and_only_one_runs_per_person() {
    let app = TestApp::new().await;
    service_desk(&app).await;
    let acme = company(&app, "Northwind").await;
    let order = raise(&app, json!({"company_id": acme, "title": "Fix"})).await;
    let id = order["id"].as_str().unwrap();
    let start = format!("/api/v1/work-orders/{id}/timer/start");
    let stop = format!("/api/v1/work-orders/{id}/timer/stop");
    let reply = app.request(Method::POST, &stop, Some("{}")).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    let reply = app.request(Method::POST, &start, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let reply = app.request(Method::POST, &start, None).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    assert!(reply.json()["detail"]
        .as_str()
        .unwrap()
        .contains("already running"));
    let reply = app
        .request(
            Method::POST,
            &stop,
            Some(&json!({"note": "looked at it"}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let items = reply.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["minutes"], 1, "at least a minute");
    assert!(items[0]["started_at"].is_string() && items[0]["ended_at"].is_string());
    assert_eq!(items[0]["note"], "looked at it");
    // The timer is gone.
    let reply = app.request(Method::POST, &stop, Some("{}")).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn open_orders_hold_their_assets_in_repair_until_closed() {
    let app = TestApp::new().await;
    let acme = company(&app, "Northwind").await;
    let reply = app
        .request(
            Method::POST,
            "/api/v1/assets",
            Some(&json!({"company_id": acme, "name": "Laptop", "category": "laptop"}).to_string()),
        )
        .await;
    let asset = reply.json()["id"].as_str().unwrap().to_owned();
    async fn status_of_asset(app: &TestApp, asset: &str) -> Value {
        let path = format!("/api/v1/assets/{asset}");
        app.request(Method::GET, &path, None).await.json()["status"].clone()
    }
    let owner = app.owner.user_id.to_string();
    let first = raise(
        &app,
        json!({"company_id": acme, "title": "Screen", "asset_ids": [asset], "holds_assets": true,
               "assignee_id": owner}),
    )
    .await;
    assert_eq!(first["status"], "assigned");
    app.settle().await;
    assert_eq!(status_of_asset(&app, &asset).await, "in_repair");
    let second = raise(
        &app,
        json!({"company_id": acme, "title": "Keyboard", "asset_ids": [asset], "holds_assets": true}),
    )
    .await;
    // Closing the first leaves it in repair: the second still holds it.
    let (s, _) = patch(
        &app,
        first["id"].as_str().unwrap(),
        json!({"status": "resolved"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    app.settle().await;
    assert_eq!(status_of_asset(&app, &asset).await, "in_repair");
    let (s, _) = patch(
        &app,
        second["id"].as_str().unwrap(),
        json!({"status": "cancelled"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    app.settle().await;
    assert_eq!(status_of_asset(&app, &asset).await, "active");
    // Another company's asset cannot be named.
    let other = company(&app, "Contoso").await;
    let reply = app
        .request(
            Method::POST,
            "/api/v1/work-orders",
            Some(&json!({"company_id": other, "title": "x", "asset_ids": [asset]}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn the_scheduler_raises_warnings_and_breaches_once_per_claimed_tick() {
    let app = TestApp::new().await;
    service_desk(&app).await;
    let acme = company(&app, "Northwind").await;
    // Opened Monday 2026-11-16 10:00 NY (15:00Z), urgent: response warn 10:45, due 11:00.
    let order = raise(
        &app,
        json!({"company_id": acme, "title": "Down", "priority": "urgent",
               "opened_at": "2026-11-16T15:00:00Z"}),
    )
    .await;
    let id = order["id"].as_str().unwrap().to_owned();
    app.settle().await;
    let state = state(&app);
    async fn alerts(app: &TestApp) -> i64 {
        app.db
            .count(
                "SELECT count(*) FROM events WHERE event_type IN ('SlaWarningRaised', 'SlaBreached')",
            )
            .await
    }
    assert_eq!(
        web::scheduler::check_sla(&state, at("2026-11-16T15:44:00Z"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        web::scheduler::check_sla(&state, at("2026-11-16T15:45:00Z"))
            .await
            .unwrap(),
        1
    );
    app.settle().await;
    assert_eq!(alerts(&app).await, 1);
    let row = app
        .request(Method::GET, &format!("/api/v1/work-orders/{id}"), None)
        .await;
    assert_eq!(row.json()["sla"]["state"], "warning");
    // The same tick again appends nothing (deterministic command id).
    web::scheduler::check_sla(&state, at("2026-11-16T15:45:00Z"))
        .await
        .unwrap();
    app.settle().await;
    assert_eq!(alerts(&app).await, 1);
    // Long after: the response breach, and the resolution warning (13:00 NY = 18:00Z).
    web::scheduler::check_sla(&state, at("2026-11-16T18:00:00Z"))
        .await
        .unwrap();
    app.settle().await;
    assert_eq!(alerts(&app).await, 3);
    let row = app
        .request(Method::GET, &format!("/api/v1/work-orders/{id}"), None)
        .await;
    assert_eq!(row.json()["sla"]["state"], "breached");
    let breaching = app
        .request(Method::GET, "/api/v1/work-orders?sla=breached", None)
        .await;
    assert_eq!(breaching.json()["items"].as_array().unwrap().len(), 1);
    // The escalation names the chosen person.
    let escalated = app
        .db
        .count(&format!(
            "SELECT count(*) FROM events WHERE event_type = 'SlaBreached'
               AND payload->'SlaBreached'->>'escalated_to' = '{}'",
            app.owner.user_id
        ))
        .await;
    assert_eq!(escalated, 1);

    // Claims: one winner per (job, tick).
    let tick = at("2026-11-16T18:01:00Z");
    assert!(web::scheduler::claim(&app.db.pool, "sla-check", tick, "a")
        .await
        .unwrap());
    assert!(!web::scheduler::claim(&app.db.pool, "sla-check", tick, "b")
        .await
        .unwrap());
}

#[tokio::test]
async fn clients_raise_work_for_their_own_company_only() {
    let app = TestApp::new().await;
    let acme = company(&app, "Northwind").await;
    let other = company(&app, "Contoso").await;
    let acme_id: Uuid = acme.parse().unwrap();
    let client: Person = app
        .person(
            &app.owner,
            Role::Client,
            "ann@northwind.test",
            Some(acme_id),
        )
        .await;
    let reply = app
        .send_as(
            Some(&client),
            Method::POST,
            "/api/v1/work-orders",
            Some(&json!({"title": "My printer is broken", "description": "It beeps"}).to_string()),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let order = reply.json();
    assert_eq!(order["company_id"], acme.as_str());
    assert_eq!(order["origin"], "customer");
    let reply = app
        .send_as(
            Some(&client),
            Method::POST,
            "/api/v1/work-orders",
            Some(&json!({"company_id": other, "title": "Not mine"}).to_string()),
            &[],
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    // Clients do not list or change orders through the staff API.
    let reply = app
        .send_as(Some(&client), Method::GET, "/api/v1/work-orders", None, &[])
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let id = order["id"].as_str().unwrap();
    let reply = app
        .send_as(
            Some(&client),
            Method::PATCH,
            &format!("/api/v1/work-orders/{id}"),
            Some(&json!({"status": "cancelled"}).to_string()),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // An accountant sees orders but does not change them.
    let accountant = app
        .person(&app.owner, Role::Accountant, "books@acme.test", None)
        .await;
    let reply = app
        .send_as(
            Some(&accountant),
            Method::GET,
            &format!("/api/v1/work-orders/{id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = app
        .send_as(
            Some(&accountant),
            Method::POST,
            &format!("/api/v1/work-orders/{id}/time-entries"),
            Some(&json!({"minutes": 5}).to_string()),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn time_entries_are_removed_by_their_technician_or_an_admin_and_not_once_closed() {
    let app = TestApp::new().await;
    let acme = company(&app, "Northwind").await;
    let owner = app.owner.user_id.to_string();
    let order = raise(
        &app,
        json!({"company_id": acme, "title": "Fix", "assignee_id": owner}),
    )
    .await;
    let id = order["id"].as_str().unwrap();
    let path = format!("/api/v1/work-orders/{id}/time-entries");
    let reply = app
        .request(
            Method::POST,
            &path,
            Some(&json!({"minutes": 30}).to_string()),
        )
        .await;
    let entry = reply.json()["items"][0]["id"].as_str().unwrap().to_owned();
    let tech = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    let one = format!("{path}/{entry}");
    let reply = app
        .send_as(Some(&tech), Method::DELETE, &one, None, &[])
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    let reply = app
        .request(Method::DELETE, &format!("{path}/{}", Uuid::now_v7()), None)
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    // Closed: refused until reopened.
    patch(&app, id, json!({"status": "resolved"})).await;
    patch(&app, id, json!({"status": "closed"})).await;
    let reply = app.request(Method::DELETE, &one, None).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    patch(&app, id, json!({"status": "reopened"})).await;
    let reply = app.request(Method::DELETE, &one, None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    let list = app.request(Method::GET, &path, None).await;
    assert_eq!(list.json()["items"].as_array().unwrap().len(), 0);
    let row = app
        .request(Method::GET, &format!("/api/v1/work-orders/{id}"), None)
        .await;
    assert_eq!(row.json()["billable_minutes"], 0);
}

#[tokio::test]
async fn work_orders_are_found_by_number_and_title_and_closed_ones_rank_last() {
    let app = TestApp::new().await;
    let acme = company(&app, "Northwind").await;
    let first = raise(
        &app,
        json!({"company_id": acme, "title": "Replace the fuser"}),
    )
    .await;
    let second = raise(
        &app,
        json!({"company_id": acme, "title": "Fuser noise again"}),
    )
    .await;
    let id = first["id"].as_str().unwrap();
    patch(&app, id, json!({"title": "Replace the printer fuser"})).await;
    patch(
        &app,
        second["id"].as_str().unwrap(),
        json!({"status": "cancelled"}),
    )
    .await;
    app.settle().await;
    let find = |q: &str| {
        let path = format!("/api/v1/search?q={q}");
        let app = &app;
        async move {
            let reply = app.request(Method::GET, &path, None).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            reply.json()["results"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["kind"] == "work_order")
                .map(|r| {
                    (
                        r["title"].as_str().unwrap().to_owned(),
                        r["inactive"].as_bool().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        find("%231").await,
        [("#1 Replace the printer fuser".to_owned(), false)]
    );
    assert_eq!(
        find("fuser").await,
        [
            ("#1 Replace the printer fuser".to_owned(), false),
            ("#2 Fuser noise again".to_owned(), true)
        ]
    );
    assert!(find("printer").await.len() == 1, "the new title is indexed");
}

/// The real binary's scheduler: two servers on one database tick every second; an order
/// opened long ago is breached once, not once per server.
#[tokio::test]
async fn the_servers_scheduler_raises_a_breach_once_across_two_instances() {
    use st_tests::process::{eventually, Server};
    let db = st_tests::TestDb::new().await;
    let env = [("ST_SCHEDULER_TICK_SECONDS", "1")];
    let first = Server::start(&db.url, &env).with_owner(&db.url).await;
    let second = Server::start(&db.url, &env);
    let client = reqwest::Client::new();
    let send = |method: reqwest::Method, path: &str, body: Value| {
        client
            .request(method, first.url(path))
            .bearer_auth(first.token())
            .json(&body)
            .send()
    };
    let reply = send(
        reqwest::Method::PUT,
        "/api/v1/settings/sla-policies",
        json!({"policies": [{"priority": "urgent", "response_minutes": 30, "resolution_minutes": 120}]}),
    )
    .await
    .unwrap();
    assert_eq!(reply.status(), 200, "{}", reply.text().await.unwrap());
    let company: Value = send(
        reqwest::Method::POST,
        "/api/v1/companies",
        json!({"name": "Northwind"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let reply = send(
        reqwest::Method::POST,
        "/api/v1/work-orders",
        json!({"company_id": company["id"], "title": "Down since Monday", "priority": "urgent",
               "opened_at": "2026-01-05T15:00:00Z"}),
    )
    .await
    .unwrap();
    assert_eq!(reply.status(), 201);
    let order: Value = reply.json().await.unwrap();
    let path = format!("/api/v1/work-orders/{}", order["id"].as_str().unwrap());
    eventually(Duration::from_secs(30), "the breach", || {
        let request = client
            .get(first.url(&path))
            .bearer_auth(first.token())
            .send();
        async move {
            let order: Value = request.await.unwrap().json().await.unwrap();
            order["sla"]["state"] == "breached"
        }
    })
    .await;
    // A few more ticks of both servers raise nothing new.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let alerts = db
        .count(
            "SELECT count(*) FROM events WHERE event_type IN ('SlaWarningRaised', 'SlaBreached')",
        )
        .await;
    assert_eq!(
        alerts, 2,
        "one breach per target, whatever the number of servers"
    );
    let claims = db
        .count(
            "SELECT count(*) FROM scheduler_ticks WHERE job = 'sla-check' AND outcome LIKE 'ok%'",
        )
        .await;
    assert!(claims >= 3, "ticks were claimed and recorded: {claims}");
    let doubled = db
        .count("SELECT count(*) FROM (SELECT tick_at FROM scheduler_ticks GROUP BY tick_at HAVING count(*) > 1) d")
        .await;
    assert_eq!(doubled, 0);
    second.stop();
    first.stop();
}

/// Several people (and the scheduler) on one order at once: every comment and time entry is
/// kept, none is refused as a conflict, and the sums add up.
#[tokio::test]
async fn concurrent_work_on_one_order_loses_nothing_and_refuses_nothing() {
    let app = TestApp::new().await;
    service_desk(&app).await;
    let acme = company(&app, "Northwind").await;
    let order = raise(
        &app,
        json!({"company_id": acme, "title": "Busy order", "priority": "urgent",
               "opened_at": "2026-11-16T15:00:00Z"}),
    )
    .await;
    let id = order["id"].as_str().unwrap().to_owned();
    app.settle().await;
    let state = state(&app);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let path = if i % 2 == 0 {
            format!("/api/v1/work-orders/{id}/comments")
        } else {
            format!("/api/v1/work-orders/{id}/time-entries")
        };
        let body = if i % 2 == 0 {
            json!({"body": format!("note {i}")})
        } else {
            json!({"minutes": 10, "billing": "billable"})
        };
        let app = &app;
        tasks.push(async move {
            app.request(Method::POST, &path, Some(&body.to_string()))
                .await
        });
    }
    let sla = web::scheduler::check_sla(&state, at("2026-11-16T16:00:00Z"));
    let (replies, sla) = tokio::join!(futures::future::join_all(tasks), sla);
    sla.unwrap();
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    }
    app.settle().await;
    let row = app
        .request(Method::GET, &format!("/api/v1/work-orders/{id}"), None)
        .await
        .json();
    assert_eq!(row["comments"], 6);
    assert_eq!(row["billable_minutes"], 60);
    // 6 × 10 minutes of repair (the first work type) at its 90.00 an hour: 6 × 15.00.
    assert_eq!(row["billable_amount"], "90.00");
}
