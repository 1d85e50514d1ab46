//! The `work_orders` projection (issue 5) against real PostgreSQL, fed by real commands: the
//! SLA columns through assignment, work, a pause and its resumption, warnings and breaches;
//! resolution, closing and reopening; time entries and their sums, removal, timers; unbilled
//! time per company; contract minutes of a month; status links and their uses; the list's
//! filters and the dashboard; tenants kept apart; and a rebuild that gives the same rows.

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use commands::{ConflictPolicy, EventMeta};
use domain::asset::AssetDocument;
use domain::business_hours::BusinessHours;
use domain::identity::TimeZone;
use domain::values::Amount;
use domain::workorder::{
    Billing, Changes, Comment, LinkKind, Origin, Priority, SlaPolicy, Status, TimeEntry, WorkOrder,
    WorkOrderCommand as C, WorkOrderDetails, WorkOrderEvent,
};
use projections::rebuild::{rebuild, verify, RebuildOptions};
use projections::work_orders::{self as wo, Filter, WorkOrderRow, WorkOrdersProjection};
use serde_json::json;
use st_tests::{Person, TestApp};
use uuid::Uuid;

fn t(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn hours() -> BusinessHours {
    BusinessHours::standard(TimeZone::parse("America/New_York").unwrap())
}

fn money(text: &str) -> Amount {
    Amount::parse("amount", text).unwrap()
}

fn policy(priority: Priority, response: u32, resolution: u32) -> Option<SlaPolicy> {
    Some(SlaPolicy {
        priority,
        response_minutes: response,
        resolution_minutes: resolution,
    })
}

fn details(title: &str, asset_ids: Vec<Uuid>) -> WorkOrderDetails {
    WorkOrderDetails {
        title: title.to_owned(),
        description: format!("{title}, described"),
        work_type: "repair".to_owned(),
        contact_id: None,
        asset_ids,
    }
}

fn entry(
    technician_id: Uuid,
    work_date: &str,
    minutes: u32,
    billing: Billing,
    rate: &str,
) -> TimeEntry {
    TimeEntry::new(
        Uuid::new_v4(),
        technician_id,
        day(work_date),
        minutes,
        format!("{minutes} minutes"),
        billing,
        false,
        money(rate),
        money("40.00"),
    )
}

async fn company(app: &TestApp, who: &Person, name: &str) -> Uuid {
    let reply = app
        .send_as(
            Some(who),
            Method::POST,
            "/api/v1/companies",
            Some(&json!({"name": name}).to_string()),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json()["id"].as_str().unwrap().parse().unwrap()
}

struct Open {
    number: u64,
    company_id: Uuid,
    details: WorkOrderDetails,
    priority: Priority,
    holds_assets: bool,
    opened_at: DateTime<Utc>,
    policy: Option<SlaPolicy>,
}

async fn open(app: &TestApp, who: &Person, order: Open) -> Uuid {
    let meta = EventMeta::new(who.tenant_id, who.user_id.to_string());
    let id = meta.new_aggregate_id();
    app.store
        .create::<WorkOrder>(
            &id.to_string(),
            C::Open {
                number: order.number,
                company_id: order.company_id,
                details: order.details,
                priority: order.priority,
                origin: Origin::Staff,
                holds_assets: order.holds_assets,
                opened_at: order.opened_at,
                policy: order.policy,
                hours: hours(),
            },
            &(),
            &meta,
        )
        .await
        .unwrap();
    id
}

/// Runs `command` on order `id` as `who` (a fresh command id each time); returns its events.
async fn run(app: &TestApp, who: &Person, id: Uuid, command: C) -> Vec<WorkOrderEvent> {
    let meta = EventMeta::new(who.tenant_id, who.user_id.to_string());
    let done = app
        .store
        .execute::<WorkOrder>(&id.to_string(), command, &(), &meta, ConflictPolicy::Report)
        .await
        .unwrap();
    assert!(!done.events.is_empty(), "the command appended nothing");
    done.events
}

async fn status(app: &TestApp, who: &Person, id: Uuid, status: Status, now: &str) {
    run(
        app,
        who,
        id,
        C::SetStatus {
            status,
            by_staff: true,
            now: t(now),
            hours: hours(),
        },
    )
    .await;
}

async fn log(app: &TestApp, who: &Person, id: Uuid, entries: Vec<TimeEntry>) {
    run(app, who, id, C::LogTime { entries }).await;
}

/// The order's row once every projection has caught up.
async fn row(app: &TestApp, tenant_id: Uuid, id: Uuid) -> WorkOrderRow {
    app.settle().await;
    wo::get(&app.db.pool, tenant_id, id)
        .await
        .unwrap()
        .expect("the order's row")
}

fn numbers(rows: &[WorkOrderRow]) -> Vec<i64> {
    rows.iter().map(|r| r.number).collect()
}

/// Every row of the projection's tables, as JSON text, in a stable order.
async fn snapshot(app: &TestApp) -> Vec<String> {
    let mut out = Vec::new();
    for table in [
        "work_orders",
        "work_order_time_entries",
        "work_order_timers",
        "work_order_links",
        "work_order_materials",
    ] {
        let rows: Option<String> = sqlx::query_scalar(&format!(
            "SELECT string_agg(row_to_json(t)::text, E'\\n' ORDER BY row_to_json(t)::text)
               FROM {table} t"
        ))
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        out.push(format!("{table}:\n{}", rows.unwrap_or_default()));
    }
    out
}

#[tokio::test]
async fn work_orders_projection_follows_an_order_through_its_life() {
    let app = TestApp::new().await;
    let owner = app.owner.clone();
    let tenant = owner.tenant_id;
    let me = owner.user_id;
    let db = &app.db.pool;
    let northwind = company(&app, &owner, "Northwind").await;
    let contoso = company(&app, &owner, "Contoso").await;
    let printer = Uuid::new_v4();

    // Opened Monday 2 March 2026 at 09:00 in New York (14:00 UTC), business hours 9 to 5:
    // response in 60 business minutes (warning after 45), resolution in 480 (warning after 360).
    let a = open(
        &app,
        &owner,
        Open {
            number: 1,
            company_id: northwind,
            details: details("Printer jams", vec![printer]),
            priority: Priority::High,
            holds_assets: true,
            opened_at: t("2026-03-02T14:00:00Z"),
            policy: policy(Priority::High, 60, 480),
        },
    )
    .await;
    let r = row(&app, tenant, a).await;
    assert_eq!(
        (
            r.number,
            r.status.as_str(),
            r.priority.as_str(),
            r.priority_rank
        ),
        (1, "new", "high", 2)
    );
    assert_eq!(
        (r.company_id, r.company_name.as_str()),
        (northwind, "Northwind")
    );
    assert_eq!(
        (r.title.as_str(), r.work_type.as_str()),
        ("Printer jams", "repair")
    );
    assert_eq!(r.origin, "staff");
    assert_eq!((r.asset_ids.clone(), r.holds_assets), (vec![printer], true));
    assert_eq!(r.opened_at, t("2026-03-02T14:00:00Z"));
    assert_eq!(
        (r.response_minutes, r.resolution_minutes),
        (Some(60), Some(480))
    );
    assert_eq!(r.response_warn_at, Some(t("2026-03-02T14:45:00Z")));
    assert_eq!(r.response_due_at, Some(t("2026-03-02T15:00:00Z")));
    assert_eq!(r.resolution_warn_at, Some(t("2026-03-02T20:00:00Z")));
    assert_eq!(r.resolution_due_at, Some(t("2026-03-02T22:00:00Z")));
    assert_eq!((r.paused_minutes, r.sla_paused_since), (0, None));
    assert_eq!(r.sla_state, "ok");
    assert_eq!(r.sla_next_check_at, r.response_warn_at);
    assert_eq!((r.assignee_id, r.assignee_name.clone()), (None, None));
    assert_eq!(
        (r.responded_at, r.resolved_at, r.closed_at),
        (None, None, None)
    );
    assert_eq!(r.billable_amount.to_string(), "0.00");
    assert_eq!(r.version, 1);
    // The scheduler's scan: due once the warning time has come.
    assert!(wo::sla_due(db, t("2026-03-02T14:44:59Z"), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        wo::sla_due(db, t("2026-03-02T14:45:00Z"), 10)
            .await
            .unwrap(),
        [(tenant, a)]
    );

    // Assigned: no response yet. The response warning comes; then work starts (the response).
    run(
        &app,
        &owner,
        a,
        C::Assign {
            assignee_id: Some(me),
            now: t("2026-03-02T14:10:00Z"),
        },
    )
    .await;
    let r = row(&app, tenant, a).await;
    assert_eq!(r.status, "assigned");
    assert_eq!(
        (r.assignee_id, r.assignee_name.as_deref()),
        (Some(me), Some("Olive Owner"))
    );
    assert_eq!(r.responded_at, None);
    assert_eq!(r.sla_next_check_at, Some(t("2026-03-02T14:45:00Z")));
    let raised = run(
        &app,
        &owner,
        a,
        C::CheckSla {
            now: t("2026-03-02T14:50:00Z"),
            escalate_to: None,
        },
    )
    .await;
    assert!(matches!(
        raised[..],
        [WorkOrderEvent::SlaWarningRaised { .. }]
    ));
    let r = row(&app, tenant, a).await;
    assert!(r.response_warned && !r.response_breached);
    assert_eq!(r.sla_state, "warning");
    assert_eq!(
        r.sla_next_check_at,
        Some(t("2026-03-02T15:00:00Z")),
        "warned: the response's due time is next"
    );
    status(&app, &owner, a, Status::InProgress, "2026-03-02T14:55:00Z").await;
    let r = row(&app, tenant, a).await;
    assert_eq!(r.status, "in_progress");
    assert_eq!(r.responded_at, Some(t("2026-03-02T14:55:00Z")));
    assert_eq!(
        r.sla_next_check_at,
        Some(t("2026-03-02T20:00:00Z")),
        "responded: the resolution warning is next"
    );

    // Comments and an attachment.
    for public in [true, false] {
        run(
            &app,
            &owner,
            a,
            C::Comment {
                comment: Comment {
                    comment_id: Uuid::new_v4(),
                    author_id: Some(me),
                    origin: Origin::Staff,
                    public,
                    body: "On it".to_owned(),
                },
                now: t("2026-03-02T14:58:00Z"),
            },
        )
        .await;
    }
    let document = AssetDocument {
        id: Uuid::new_v4(),
        file_name: "jam.jpg".to_owned(),
        content_type: "image/jpeg".to_owned(),
        size: 1234,
        sha256: "ab".repeat(32),
    };
    run(
        &app,
        &owner,
        a,
        C::Attach {
            document: document.clone(),
        },
    )
    .await;
    let r = row(&app, tenant, a).await;
    assert_eq!((r.comments, r.public_comments), (2, 1));
    assert_eq!(r.attachments.0, vec![document]);

    // Waiting on the customer from Monday 10:00 stops the clock; Tuesday 09:00 it runs again,
    // 420 business minutes later: every due time moves by them.
    status(
        &app,
        &owner,
        a,
        Status::WaitingOnCustomer,
        "2026-03-02T15:00:00Z",
    )
    .await;
    let r = row(&app, tenant, a).await;
    assert_eq!(r.sla_state, "paused");
    assert_eq!(r.sla_paused_since, Some(t("2026-03-02T15:00:00Z")));
    assert_eq!(r.sla_next_check_at, None);
    assert!(wo::sla_due(db, t("2026-03-09T00:00:00Z"), 10)
        .await
        .unwrap()
        .is_empty());
    status(&app, &owner, a, Status::InProgress, "2026-03-03T14:00:00Z").await;
    let r = row(&app, tenant, a).await;
    assert_eq!((r.paused_minutes, r.sla_paused_since), (420, None));
    assert_eq!(r.resolution_warn_at, Some(t("2026-03-03T19:00:00Z")));
    assert_eq!(r.resolution_due_at, Some(t("2026-03-03T21:00:00Z")));
    assert_eq!(r.response_due_at, Some(t("2026-03-02T22:00:00Z")));
    assert_eq!(r.sla_state, "warning", "the response warning stays raised");
    assert_eq!(r.sla_next_check_at, Some(t("2026-03-03T19:00:00Z")));

    // Time: two billable entries and a contract one; one removed again.
    let e1 = entry(me, "2026-03-02", 90, Billing::Billable, "120.00");
    let e2 = entry(me, "2026-03-02", 45, Billing::Billable, "100.00");
    let e3 = entry(me, "2026-03-03", 30, Billing::Contract, "120.00");
    log(&app, &owner, a, vec![e1.clone(), e2.clone(), e3.clone()]).await;
    let r = row(&app, tenant, a).await;
    assert_eq!((r.billable_minutes, r.contract_minutes), (135, 30));
    assert_eq!(r.billable_amount.to_string(), "255.00");
    let entries = wo::time_entries(db, tenant, a).await.unwrap();
    assert_eq!(entries.len(), 3);
    let first = entries.iter().find(|e| e.id == e1.entry_id).unwrap();
    assert_eq!(
        (
            first.minutes,
            first.billing.as_str(),
            first.rate.to_string(),
            first.amount.to_string(),
            first.cost.to_string()
        ),
        (
            90,
            "billable",
            "120.00".into(),
            "180.00".into(),
            "60.00".into()
        )
    );
    assert_eq!(first.technician_name, "Olive Owner");
    assert_eq!((first.company_id, first.work_order_id), (northwind, a));
    assert_eq!(first.invoice_id, None);
    let contract = entries.iter().find(|e| e.id == e3.entry_id).unwrap();
    assert_eq!(contract.amount.to_string(), "0.00");
    run(
        &app,
        &owner,
        a,
        C::RemoveTime {
            entry_id: e2.entry_id,
        },
    )
    .await;
    let r = row(&app, tenant, a).await;
    assert_eq!((r.billable_minutes, r.contract_minutes), (90, 30));
    assert_eq!(r.billable_amount.to_string(), "180.00");
    assert_eq!(wo::time_entries(db, tenant, a).await.unwrap().len(), 2);

    // Timers: started, cancelled; started again and stopped into an entry.
    run(
        &app,
        &owner,
        a,
        C::StartTimer {
            technician_id: me,
            now: t("2026-03-03T14:05:00Z"),
        },
    )
    .await;
    app.settle().await;
    let running = wo::running_timers(db, tenant, me).await.unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(
        (
            running[0].work_order_id,
            running[0].work_order_number,
            running[0].work_order_title.as_str(),
            running[0].started_at
        ),
        (a, 1, "Printer jams", t("2026-03-03T14:05:00Z"))
    );
    assert_eq!(running[0].technician_name, "Olive Owner");
    assert_eq!(wo::timers(db, tenant, a).await.unwrap(), running);
    run(&app, &owner, a, C::CancelTimer { technician_id: me }).await;
    app.settle().await;
    assert!(wo::timers(db, tenant, a).await.unwrap().is_empty());
    run(
        &app,
        &owner,
        a,
        C::StartTimer {
            technician_id: me,
            now: t("2026-03-03T14:10:00Z"),
        },
    )
    .await;
    let mut e4 = entry(me, "2026-03-03", 50, Billing::Billable, "120.00");
    e4.started_at = Some(t("2026-03-03T14:10:00Z"));
    e4.ended_at = Some(t("2026-03-03T15:00:00Z"));
    run(
        &app,
        &owner,
        a,
        C::StopTimer {
            technician_id: me,
            entries: vec![e4.clone()],
        },
    )
    .await;
    let r = row(&app, tenant, a).await;
    assert!(wo::running_timers(db, tenant, me).await.unwrap().is_empty());
    assert_eq!(r.billable_minutes, 140);
    assert_eq!(r.billable_amount.to_string(), "280.00");
    let stopped = wo::time_entries(db, tenant, a).await.unwrap();
    let stopped = stopped.iter().find(|e| e.id == e4.entry_id).unwrap();
    assert_eq!(
        (stopped.started_at, stopped.ended_at),
        (e4.started_at, e4.ended_at)
    );

    // The scheduler warns at 19:00 and reports the breach at 21:00; then nothing is left.
    assert_eq!(
        wo::sla_due(db, t("2026-03-03T19:30:00Z"), 10)
            .await
            .unwrap(),
        [(tenant, a)]
    );
    run(
        &app,
        &owner,
        a,
        C::CheckSla {
            now: t("2026-03-03T19:30:00Z"),
            escalate_to: None,
        },
    )
    .await;
    let r = row(&app, tenant, a).await;
    assert!(r.resolution_warned && !r.resolution_breached);
    assert_eq!(r.sla_next_check_at, Some(t("2026-03-03T21:00:00Z")));
    run(
        &app,
        &owner,
        a,
        C::CheckSla {
            now: t("2026-03-03T21:30:00Z"),
            escalate_to: Some(me),
        },
    )
    .await;
    let r = row(&app, tenant, a).await;
    assert!(r.resolution_breached);
    assert_eq!(r.sla_state, "breached");
    assert_eq!(r.sla_next_check_at, None);

    // A technician link: issued, looked up by digest, revoked.
    let tech_link = Uuid::new_v4();
    run(
        &app,
        &owner,
        a,
        C::IssueLink {
            link_id: tech_link,
            kind: LinkKind::Technician,
            token_digest: "digest-a".to_owned(),
            user_id: Some(me),
            now: t("2026-03-03T15:00:00Z"),
        },
    )
    .await;
    app.settle().await;
    let link = wo::link_by_digest(db, "digest-a").await.unwrap().unwrap();
    assert_eq!(
        (
            link.id,
            link.tenant_id,
            link.work_order_id,
            link.kind.as_str()
        ),
        (tech_link, tenant, a, "technician")
    );
    assert_eq!((link.user_id, link.max_uses, link.uses), (Some(me), 20, 0));
    assert_eq!(
        link.expires_at,
        t("2026-03-03T15:00:00Z") + Duration::hours(72)
    );
    assert!(!link.revoked);
    assert!(
        !serde_json::to_string(&link).unwrap().contains("digest-a"),
        "a digest is never serialized"
    );
    run(&app, &owner, a, C::RevokeLink { link_id: tech_link }).await;
    app.settle().await;
    assert!(
        wo::link_by_digest(db, "digest-a")
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(wo::link_by_digest(db, "nothing").await.unwrap().is_none());

    // Order 2: no SLA; its priority changes without a policy, its details change.
    let b = open(
        &app,
        &owner,
        Open {
            number: 2,
            company_id: contoso,
            details: details("New laptop", vec![]),
            priority: Priority::Normal,
            holds_assets: false,
            opened_at: t("2026-03-05T15:00:00Z"),
            policy: None,
        },
    )
    .await;
    run(
        &app,
        &owner,
        b,
        C::Change {
            changes: Changes {
                details: Some(details("New laptop for Ann", vec![])),
                priority: Some(Priority::Low),
            },
            policy: None,
            hours: hours(),
        },
    )
    .await;
    log(
        &app,
        &owner,
        b,
        vec![
            entry(me, "2026-03-05", 60, Billing::Billable, "90.00"),
            entry(me, "2026-02-28", 20, Billing::Contract, "90.00"),
            entry(me, "2026-03-01", 15, Billing::Contract, "90.00"),
            entry(me, "2026-03-31", 25, Billing::Contract, "90.00"),
            entry(me, "2026-04-01", 40, Billing::Contract, "90.00"),
        ],
    )
    .await;
    let r = row(&app, tenant, b).await;
    assert_eq!(
        (r.title.as_str(), r.priority.as_str(), r.priority_rank),
        ("New laptop for Ann", "low", 0)
    );
    assert_eq!(r.sla_state, "none");
    assert_eq!(
        (r.response_minutes, r.response_due_at, r.sla_next_check_at),
        (None, None, None)
    );
    assert_eq!((r.billable_minutes, r.contract_minutes), (60, 100));
    assert_eq!(r.billable_amount.to_string(), "90.00");
    // Contract minutes of a month: its first and last days count, the days around it do not.
    let used = |from: &str, to: &str| {
        let (from, to) = (day(from), day(to));
        async move {
            wo::contract_minutes_used(db, tenant, contoso, from, to)
                .await
                .unwrap()
        }
    };
    assert_eq!(used("2026-03-01", "2026-04-01").await, 40);
    assert_eq!(used("2026-02-01", "2026-03-01").await, 20);
    assert_eq!(used("2026-04-01", "2026-05-01").await, 40);
    assert_eq!(
        wo::contract_minutes_used(db, tenant, northwind, day("2026-03-01"), day("2026-04-01"))
            .await
            .unwrap(),
        30
    );

    // Order 3: its priority changes with a policy (new targets from the opening), then it is
    // resolved (met), rated through a customer link, closed, reopened and cancelled.
    let c = open(
        &app,
        &owner,
        Open {
            number: 3,
            company_id: northwind,
            details: details("Server down", vec![printer]),
            priority: Priority::Normal,
            holds_assets: true,
            opened_at: t("2026-03-04T15:00:00Z"),
            policy: policy(Priority::Normal, 120, 480),
        },
    )
    .await;
    run(
        &app,
        &owner,
        c,
        C::Change {
            changes: Changes {
                details: None,
                priority: Some(Priority::Urgent),
            },
            policy: policy(Priority::Urgent, 30, 120),
            hours: hours(),
        },
    )
    .await;
    let r = row(&app, tenant, c).await;
    assert_eq!((r.priority.as_str(), r.priority_rank), ("urgent", 3));
    assert_eq!(
        (r.response_minutes, r.resolution_minutes),
        (Some(30), Some(120))
    );
    assert_eq!(r.response_warn_at, Some(t("2026-03-04T15:22:00Z")));
    assert_eq!(r.response_due_at, Some(t("2026-03-04T15:30:00Z")));
    assert_eq!(r.resolution_warn_at, Some(t("2026-03-04T16:30:00Z")));
    assert_eq!(r.resolution_due_at, Some(t("2026-03-04T17:00:00Z")));
    assert_eq!(r.sla_next_check_at, Some(t("2026-03-04T15:22:00Z")));
    run(
        &app,
        &owner,
        c,
        C::Assign {
            assignee_id: Some(me),
            now: t("2026-03-04T15:05:00Z"),
        },
    )
    .await;
    status(&app, &owner, c, Status::InProgress, "2026-03-04T15:10:00Z").await;
    status(&app, &owner, c, Status::Resolved, "2026-03-04T15:20:00Z").await;
    let r = row(&app, tenant, c).await;
    assert_eq!(r.status, "resolved");
    assert_eq!(r.resolved_at, Some(t("2026-03-04T15:20:00Z")));
    assert_eq!(r.closed_at, None);
    assert_eq!(r.sla_state, "met");
    assert_eq!(r.sla_next_check_at, None);
    let customer_link = Uuid::new_v4();
    run(
        &app,
        &owner,
        c,
        C::IssueLink {
            link_id: customer_link,
            kind: LinkKind::Customer,
            token_digest: "digest-c".to_owned(),
            user_id: None,
            now: t("2026-03-04T15:21:00Z"),
        },
    )
    .await;
    run(
        &app,
        &owner,
        c,
        C::ViewByLink {
            link_id: customer_link,
            now: t("2026-03-04T15:22:00Z"),
        },
    )
    .await;
    app.settle().await;
    assert_eq!(
        wo::link_by_digest(db, "digest-c")
            .await
            .unwrap()
            .unwrap()
            .uses,
        1
    );
    run(
        &app,
        &owner,
        c,
        C::Rate {
            link_id: customer_link,
            rating: 5,
            comment: "Quick fix".to_owned(),
            now: t("2026-03-04T15:23:00Z"),
        },
    )
    .await;
    status(&app, &owner, c, Status::Closed, "2026-03-04T15:30:00Z").await;
    let r = row(&app, tenant, c).await;
    assert_eq!(
        (r.rating, r.rating_comment.as_str()),
        (Some(5), "Quick fix")
    );
    assert_eq!(r.status, "closed");
    assert_eq!(r.closed_at, Some(t("2026-03-04T15:30:00Z")));
    assert_eq!(r.sla_state, "met");
    let links = wo::links(db, tenant, c).await.unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(
        (
            links[0].kind.as_str(),
            links[0].uses,
            links[0].max_uses,
            links[0].user_id
        ),
        ("customer", 2, 50, None)
    );
    assert_eq!(links[0].expires_at, t("2026-03-11T15:21:00Z"));
    // Reopened 20 business minutes after resolving: the clock runs again from there.
    status(&app, &owner, c, Status::Reopened, "2026-03-04T15:40:00Z").await;
    let r = row(&app, tenant, c).await;
    assert_eq!(r.status, "reopened");
    assert_eq!((r.resolved_at, r.closed_at), (None, None));
    assert_eq!((r.paused_minutes, r.sla_paused_since), (20, None));
    assert_eq!(r.sla_state, "ok");
    assert_eq!(r.sla_next_check_at, Some(t("2026-03-04T16:50:00Z")));
    status(&app, &owner, c, Status::Cancelled, "2026-03-04T15:45:00Z").await;
    let r = row(&app, tenant, c).await;
    assert_eq!(r.status, "cancelled");
    assert_eq!(r.closed_at, Some(t("2026-03-04T15:45:00Z")));
    assert_eq!(r.sla_next_check_at, None);
    assert_eq!(
        r.sla_state, "ok",
        "not breached, not resolved, no longer open"
    );

    // A timer left running on order 2 (so the rebuild below has one to reproduce).
    run(
        &app,
        &owner,
        b,
        C::StartTimer {
            technician_id: me,
            now: t("2026-03-05T15:30:00Z"),
        },
    )
    .await;

    // Unbilled time per company, by name; a company's unbilled entries, oldest first.
    app.settle().await;
    let unbilled = wo::unbilled_by_company(db, tenant).await.unwrap();
    let shown: Vec<_> = unbilled
        .iter()
        .map(|u| {
            (
                u.company_id,
                u.company_name.as_str(),
                u.entries,
                u.minutes,
                u.amount.to_string(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (contoso, "Contoso", 1, 60, "90.00".to_owned()),
            (northwind, "Northwind", 2, 140, "280.00".to_owned())
        ]
    );
    let northwind_entries = wo::unbilled_entries(db, tenant, northwind).await.unwrap();
    assert_eq!(
        northwind_entries.iter().map(|e| e.id).collect::<Vec<_>>(),
        [e1.entry_id, e4.entry_id]
    );

    // The list and its filters, newest first, keyset paged.
    let list = |filter: Filter, before: Option<i64>, limit: i64| async move {
        numbers(&wo::list(db, tenant, &filter, before, limit).await.unwrap())
    };
    assert_eq!(list(Filter::default(), None, 50).await, [3, 2, 1]);
    assert_eq!(list(Filter::default(), Some(3), 1).await, [2]);
    assert_eq!(
        list(Filter::default(), Some(1), 50).await,
        Vec::<i64>::new()
    );
    let by_status = |s: &[&str]| Filter {
        status: s.iter().map(|s| s.to_string()).collect(),
        ..Filter::default()
    };
    assert_eq!(list(by_status(&["open"]), None, 50).await, [2, 1]);
    assert_eq!(list(by_status(&["cancelled"]), None, 50).await, [3]);
    assert_eq!(
        list(by_status(&["new", "cancelled"]), None, 50).await,
        [3, 2]
    );
    let filters = [
        (
            Filter {
                priority: Some("high".into()),
                ..Filter::default()
            },
            vec![1],
        ),
        (
            Filter {
                assignee_id: Some(me),
                ..Filter::default()
            },
            vec![3, 1],
        ),
        (
            Filter {
                unassigned: true,
                ..Filter::default()
            },
            vec![2],
        ),
        (
            Filter {
                company_id: Some(contoso),
                ..Filter::default()
            },
            vec![2],
        ),
        (
            Filter {
                asset_id: Some(printer),
                ..Filter::default()
            },
            vec![3, 1],
        ),
        (
            Filter {
                asset_id: Some(printer),
                status: vec!["open".into()],
                ..Filter::default()
            },
            vec![1],
        ),
        (
            Filter {
                sla_state: Some("breached".into()),
                ..Filter::default()
            },
            vec![1],
        ),
        (
            Filter {
                sla_state: Some("none".into()),
                ..Filter::default()
            },
            vec![2],
        ),
    ];
    for (filter, expected) in filters {
        assert_eq!(list(filter.clone(), None, 50).await, expected, "{filter:?}");
    }
    assert_eq!(
        wo::get_by_number(db, tenant, 2)
            .await
            .unwrap()
            .map(|r| r.id),
        Some(b)
    );
    assert_eq!(
        wo::open_orders_holding_asset(db, tenant, printer)
            .await
            .unwrap(),
        [a],
        "order 3 holds the printer too, but it is cancelled"
    );

    let dashboard = wo::dashboard(db, tenant).await.unwrap();
    assert_eq!(
        dashboard.open_by_status,
        [
            ("new".to_owned(), 1),
            ("assigned".to_owned(), 0),
            ("in_progress".to_owned(), 1),
            ("waiting_on_customer".to_owned(), 0),
            ("reopened".to_owned(), 0),
        ]
    );
    assert_eq!(
        (
            dashboard.open_total,
            dashboard.breaching,
            dashboard.warning,
            dashboard.unassigned_open
        ),
        (2, 1, 0, 1)
    );
    assert_eq!(dashboard.unbilled_minutes, 200);
    assert_eq!(dashboard.unbilled_amount.to_string(), "370.00");

    // Another tenant's order, numbered 1 as well: each tenant sees only its own.
    let stranger = app.other_tenant("Globex", "owner@globex.test").await;
    let globex = company(&app, &stranger, "Globex Labs").await;
    let theirs = open(
        &app,
        &stranger,
        Open {
            number: 1,
            company_id: globex,
            details: details("Their printer", vec![printer]),
            priority: Priority::High,
            holds_assets: true,
            opened_at: t("2026-03-02T14:00:00Z"),
            policy: policy(Priority::High, 60, 480),
        },
    )
    .await;
    log(
        &app,
        &stranger,
        theirs,
        vec![entry(
            stranger.user_id,
            "2026-03-02",
            30,
            Billing::Billable,
            "50.00",
        )],
    )
    .await;
    run(
        &app,
        &stranger,
        theirs,
        C::IssueLink {
            link_id: Uuid::new_v4(),
            kind: LinkKind::Customer,
            token_digest: "digest-globex".to_owned(),
            user_id: None,
            now: t("2026-03-02T15:00:00Z"),
        },
    )
    .await;
    let r = row(&app, stranger.tenant_id, theirs).await;
    assert_eq!(r.company_name, "Globex Labs");
    assert!(wo::get(db, tenant, theirs).await.unwrap().is_none());
    assert_eq!(
        wo::get_by_number(db, tenant, 1)
            .await
            .unwrap()
            .map(|r| r.id),
        Some(a)
    );
    assert_eq!(
        wo::get_by_number(db, stranger.tenant_id, 1)
            .await
            .unwrap()
            .map(|r| r.id),
        Some(theirs)
    );
    assert_eq!(list(Filter::default(), None, 50).await, [3, 2, 1]);
    assert!(wo::time_entries(db, tenant, theirs)
        .await
        .unwrap()
        .is_empty());
    assert!(wo::links(db, tenant, theirs).await.unwrap().is_empty());
    assert_eq!(wo::unbilled_by_company(db, tenant).await.unwrap().len(), 2);
    assert!(wo::unbilled_entries(db, tenant, globex)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        wo::contract_minutes_used(
            db,
            stranger.tenant_id,
            contoso,
            day("2026-03-01"),
            day("2026-04-01")
        )
        .await
        .unwrap(),
        0
    );
    assert_eq!(
        wo::open_orders_holding_asset(db, tenant, printer)
            .await
            .unwrap(),
        [a]
    );
    assert_eq!(wo::dashboard(db, tenant).await.unwrap(), dashboard);
    let their_dashboard = wo::dashboard(db, stranger.tenant_id).await.unwrap();
    assert_eq!(
        (
            their_dashboard.open_total,
            their_dashboard.unbilled_amount.to_string()
        ),
        (1, "25.00".to_owned())
    );
    assert!(wo::running_timers(db, stranger.tenant_id, me)
        .await
        .unwrap()
        .is_empty());
    // The scheduler's scan covers every tenant.
    let due = wo::sla_due(db, t("2026-03-02T14:45:00Z"), 10)
        .await
        .unwrap();
    assert_eq!(due, [(stranger.tenant_id, theirs)]);
    assert_eq!(
        wo::link_by_digest(db, "digest-globex")
            .await
            .unwrap()
            .map(|l| l.tenant_id),
        Some(stranger.tenant_id)
    );

    // A rebuild from the log gives the same rows, byte for byte, and the same index names.
    app.settle().await;
    let before = snapshot(&app).await;
    assert!(before[2].contains(&b.to_string()), "a timer is running");
    let indexes = "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes
                    WHERE tablename LIKE 'work\\_order%'";
    let index_names: String = sqlx::query_scalar(indexes).fetch_one(db).await.unwrap();
    let report = rebuild(
        db,
        &WorkOrdersProjection,
        &RebuildOptions { batch_size: 7 },
        |_, _| {},
    )
    .await
    .unwrap();
    assert!(report.events > 50, "{report:?}");
    assert_eq!(snapshot(&app).await, before);
    let after_names: String = sqlx::query_scalar(indexes).fetch_one(db).await.unwrap();
    assert_eq!(index_names, after_names);
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'work\\_order%\\_\\_%'")
            .await,
        0
    );
    let verified = verify(db, &WorkOrdersProjection).await.unwrap();
    assert!(verified.matches(), "{:?}", verified.differences);
    // The live runner carries on after the swap.
    run(&app, &owner, b, C::CancelTimer { technician_id: me }).await;
    app.settle().await;
    assert!(wo::timers(db, tenant, b).await.unwrap().is_empty());
}

/// Every row of the projection's tables in a plain database, as `snapshot` gives them.
async fn snapshot_of(pool: &sqlx::PgPool) -> Vec<String> {
    let mut out = Vec::new();
    for table in [
        "work_orders",
        "work_order_time_entries",
        "work_order_timers",
        "work_order_links",
        "work_order_materials",
    ] {
        let rows: Option<String> = sqlx::query_scalar(&format!(
            "SELECT string_agg(row_to_json(t)::text, E'\\n' ORDER BY row_to_json(t)::text)
               FROM {table} t"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        out.push(format!("{table}:\n{}", rows.unwrap_or_default()));
    }
    out
}

/// Runs `command` on order `id` straight through the store; returns its events.
async fn exec(store: &commands::EventStore, id: Uuid, command: C) -> Vec<WorkOrderEvent> {
    let meta = EventMeta::new(commands::DEFAULT_TENANT_ID, "test");
    let done = store
        .execute::<WorkOrder>(&id.to_string(), command, &(), &meta, ConflictPolicy::Report)
        .await
        .unwrap();
    assert!(!done.events.is_empty(), "the command appended nothing");
    done.events
}

async fn open_in(store: &commands::EventStore, number: u64, policy: Option<SlaPolicy>) -> Uuid {
    let meta = EventMeta::new(commands::DEFAULT_TENANT_ID, "test");
    let id = meta.new_aggregate_id();
    store
        .create::<WorkOrder>(
            &id.to_string(),
            C::Open {
                number,
                company_id: Uuid::from_u128(7),
                details: details(&format!("Order {number}"), vec![]),
                priority: Priority::Normal,
                origin: Origin::Staff,
                holds_assets: false,
                opened_at: t("2026-03-02T14:00:00Z"),
                policy,
                hours: hours(),
            },
            &(),
            &meta,
        )
        .await
        .unwrap();
    id
}

/// Catches the live `work_orders` tables up in batches of `batch_size`, until nothing lags
/// or it fails. One pass is not enough while another test's transaction is open somewhere on
/// the cluster: xids are cluster-wide, so the guarded reader waits for it.
async fn catch_up_work_orders(
    pool: &sqlx::PgPool,
    batch_size: i64,
) -> projections::runner::CatchUp {
    let mut conn = pool.acquire().await.unwrap();
    let config = projections::runner::RunnerConfig {
        batch_size,
        ..Default::default()
    };
    let mut total = 0;
    loop {
        match projections::runner::catch_up(pool, &mut conn, &WorkOrdersProjection, &config)
            .await
            .unwrap()
        {
            projections::runner::CatchUp::CaughtUp { applied } => total += applied,
            failed => return failed,
        }
        let lag = projections::status::all(pool)
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == "work_orders")
            .map_or(1, |s| s.lag);
        if lag == 0 {
            return projections::runner::CatchUp::CaughtUp { applied: total };
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The projection folds each batch in memory: whatever the batch size (an order's events all
/// in one batch, or spread over many; an entry logged and removed, a timer started, cancelled
/// and started again, a link issued, used and revoked within one batch or across batches),
/// the rows are the same, and the sums exact to the cent.
#[tokio::test]
async fn work_orders_projection_gives_the_same_rows_whatever_the_batches() {
    let db = st_tests::TestDb::new().await;
    let store = commands::EventStore::new(db.pool.clone());
    let me = Uuid::from_u128(42);
    let a = open_in(&store, 1, policy(Priority::Normal, 120, 480)).await;
    let b = open_in(&store, 2, None).await;
    exec(
        &store,
        a,
        C::Assign {
            assignee_id: Some(me),
            now: t("2026-03-02T14:05:00Z"),
        },
    )
    .await;
    for now in ["2026-03-02T14:06:00Z", "2026-03-02T14:08:00Z"] {
        exec(
            &store,
            a,
            C::StartTimer {
                technician_id: me,
                now: t(now),
            },
        )
        .await;
        if now.ends_with("06:00Z") {
            exec(&store, a, C::CancelTimer { technician_id: me }).await;
        }
    }
    let e1 = entry(me, "2026-03-02", 90, Billing::Billable, "120.00");
    let e2 = entry(me, "2026-03-02", 7, Billing::Billable, "99.99");
    let e3 = entry(me, "2026-03-02", 30, Billing::Contract, "120.00");
    assert_eq!(e2.amount.to_string(), "11.67");
    log_in(&store, a, vec![e1.clone(), e2.clone(), e3.clone()]).await;
    // Materials: one added and removed again, one billable, one covered.
    let material = |id: u128, quantity: &str, billing| {
        domain::workorder::Material::new(
            Uuid::from_u128(id),
            "Patch cable",
            "C6",
            quantity.parse().unwrap(),
            money("4.99"),
            billing,
            day("2026-03-02"),
            me,
        )
        .unwrap()
    };
    for command in [
        C::AddMaterial {
            material: material(901, "2.5", Billing::Billable),
        },
        C::AddMaterial {
            material: material(902, "1", Billing::Billable),
        },
        C::RemoveMaterial {
            material_id: Uuid::from_u128(901),
        },
        C::AddMaterial {
            material: material(903, "3", Billing::Contract),
        },
    ] {
        exec(&store, a, command).await;
    }
    exec(
        &store,
        a,
        C::RemoveTime {
            entry_id: e2.entry_id,
        },
    )
    .await;
    let mut e4 = entry(me, "2026-03-02", 50, Billing::Billable, "99.99");
    e4.started_at = Some(t("2026-03-02T14:08:00Z"));
    e4.ended_at = Some(t("2026-03-02T14:58:00Z"));
    exec(
        &store,
        a,
        C::StopTimer {
            technician_id: me,
            entries: vec![e4.clone()],
        },
    )
    .await;
    exec(
        &store,
        a,
        C::Attach {
            document: AssetDocument {
                id: Uuid::from_u128(9),
                file_name: "photo.jpg".to_owned(),
                content_type: "image/jpeg".to_owned(),
                size: 99,
                sha256: "cd".repeat(32),
            },
        },
    )
    .await;
    for public in [true, false, true] {
        exec(
            &store,
            a,
            C::Comment {
                comment: Comment {
                    comment_id: Uuid::new_v4(),
                    author_id: Some(me),
                    origin: Origin::Staff,
                    public,
                    body: "Noted".to_owned(),
                },
                now: t("2026-03-02T14:59:00Z"),
            },
        )
        .await;
    }
    let link = Uuid::from_u128(11);
    exec(
        &store,
        a,
        C::IssueLink {
            link_id: link,
            kind: LinkKind::Customer,
            token_digest: "digest-fold".to_owned(),
            user_id: None,
            now: t("2026-03-02T15:00:00Z"),
        },
    )
    .await;
    for minute in ["01", "02"] {
        exec(
            &store,
            a,
            C::ViewByLink {
                link_id: link,
                now: t(&format!("2026-03-02T15:{minute}:00Z")),
            },
        )
        .await;
    }
    exec(&store, a, C::RevokeLink { link_id: link }).await;
    exec(
        &store,
        a,
        C::Change {
            changes: Changes {
                details: None,
                priority: Some(Priority::Urgent),
            },
            policy: policy(Priority::Urgent, 30, 120),
            hours: hours(),
        },
    )
    .await;
    exec(
        &store,
        a,
        C::StartTimer {
            technician_id: me,
            now: t("2026-03-02T15:10:00Z"),
        },
    )
    .await;
    // Order b: 25 entries of one cent each, 10 of them removed again, some in the batch that
    // logged them and some later.
    let cents: Vec<TimeEntry> = (0..25)
        .map(|_| entry(me, "2026-03-03", 1, Billing::Billable, "0.60"))
        .collect();
    assert_eq!(cents[0].amount.to_string(), "0.01");
    for chunk in cents.chunks(5) {
        log_in(&store, b, chunk.to_vec()).await;
        exec(
            &store,
            b,
            C::RemoveTime {
                entry_id: chunk[0].entry_id,
            },
        )
        .await;
    }
    for gone in cents.iter().skip(1).step_by(5) {
        exec(
            &store,
            b,
            C::RemoveTime {
                entry_id: gone.entry_id,
            },
        )
        .await;
    }
    for (status, now) in [
        (Status::Assigned, "2026-03-03T14:00:00Z"),
        (Status::InProgress, "2026-03-03T14:01:00Z"),
    ] {
        if status == Status::Assigned {
            exec(
                &store,
                b,
                C::Assign {
                    assignee_id: Some(me),
                    now: t(now),
                },
            )
            .await;
        } else {
            exec(
                &store,
                b,
                C::SetStatus {
                    status,
                    by_staff: true,
                    now: t(now),
                    hours: hours(),
                },
            )
            .await;
        }
    }

    // Caught up in batches of up to 10,000 (usually one batch for everything).
    assert!(matches!(
        catch_up_work_orders(&db.pool, 10_000).await,
        projections::runner::CatchUp::CaughtUp { .. }
    ));
    let whole = snapshot_of(&db.pool).await;
    let r = wo::get(&db.pool, commands::DEFAULT_TENANT_ID, a)
        .await
        .unwrap()
        .unwrap();
    // e1 180.00 + e4 83.33 (e2 removed); e3 is contract time.
    assert_eq!(
        (
            r.billable_minutes,
            r.contract_minutes,
            r.billable_amount.to_string()
        ),
        (140, 30, "263.33".to_owned())
    );
    assert_eq!(
        (r.priority.as_str(), r.response_minutes),
        ("urgent", Some(30))
    );
    assert_eq!(r.attachments.0.len(), 1);
    assert_eq!(r.assignee_id, Some(me));
    assert_eq!((r.comments, r.public_comments), (3, 2));
    assert_eq!(r.responded_at, Some(t("2026-03-02T14:59:00Z")));
    let timers = wo::timers(&db.pool, commands::DEFAULT_TENANT_ID, a)
        .await
        .unwrap();
    assert_eq!(
        timers.iter().map(|t| t.started_at).collect::<Vec<_>>(),
        [t("2026-03-02T15:10:00Z")]
    );
    let links = wo::links(&db.pool, commands::DEFAULT_TENANT_ID, a)
        .await
        .unwrap();
    assert_eq!(
        links
            .iter()
            .map(|l| (l.uses, l.revoked))
            .collect::<Vec<_>>(),
        [(2, true)]
    );
    let r = wo::get(&db.pool, commands::DEFAULT_TENANT_ID, b)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            r.billable_minutes,
            r.billable_amount.to_string(),
            r.status.as_str()
        ),
        (15, "0.15".to_owned(), "in_progress")
    );
    assert_eq!(
        wo::time_entries(&db.pool, commands::DEFAULT_TENANT_ID, b)
            .await
            .unwrap()
            .len(),
        15
    );

    // Any other cut of the log gives the same rows.
    for batch_size in [1, 2, 3, 5, 8, 13] {
        rebuild(
            &db.pool,
            &WorkOrdersProjection,
            &RebuildOptions { batch_size },
            |_, _| {},
        )
        .await
        .unwrap();
        assert_eq!(
            snapshot_of(&db.pool).await,
            whole,
            "batches of {batch_size}"
        );
    }
    let verified = verify(&db.pool, &WorkOrdersProjection).await.unwrap();
    assert!(verified.matches(), "{:?}", verified.differences);
    let materials = wo::materials(&db.pool, commands::DEFAULT_TENANT_ID, a)
        .await
        .unwrap();
    assert_eq!(
        materials
            .iter()
            .map(|m| (m.id.as_u128(), m.amount.to_string()))
            .collect::<Vec<_>>(),
        [(902, "4.99".to_owned()), (903, "0.00".to_owned())]
    );
}

async fn log_in(store: &commands::EventStore, id: Uuid, entries: Vec<TimeEntry>) {
    exec(store, id, C::LogTime { entries }).await;
}

/// An event the projection cannot apply stops it at that very event, in the middle of a
/// batch: what precedes it in the batch is applied, nothing after it.
#[tokio::test]
async fn work_orders_projection_stops_at_an_event_for_an_order_it_does_not_have() {
    let db = st_tests::TestDb::new().await;
    let store = commands::EventStore::new(db.pool.clone());
    let a = open_in(&store, 1, None).await;
    exec(
        &store,
        a,
        C::Assign {
            assignee_id: Some(Uuid::from_u128(42)),
            now: t("2026-03-02T14:05:00Z"),
        },
    )
    .await;
    // Order a's events, but recorded under another tenant: there is no such row.
    let stranger = EventMeta::new(Uuid::from_u128(99), "test");
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         VALUES ('work_order', $1, 100, 'WorkOrderResponded', '1', $2, $3)",
    )
    .bind(a.to_string())
    .bind(json!({"WorkOrderResponded": {"at": "2026-03-02T14:06:00Z"}}))
    .bind(serde_json::to_value(&stranger).unwrap())
    .execute(&db.pool)
    .await
    .unwrap();
    let b = open_in(&store, 2, None).await;

    let projections::runner::CatchUp::Failed { position, error } =
        catch_up_work_orders(&db.pool, 1000).await
    else {
        panic!("the projection should stop");
    };
    assert!(
        error.contains("WorkOrderResponded") && error.contains("which has no row"),
        "{error}"
    );
    let status = projections::status::all(&db.pool)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == "work_orders")
        .unwrap();
    assert_eq!(status.failed_position, Some(position.global_position));
    let r = wo::get(&db.pool, commands::DEFAULT_TENANT_ID, a)
        .await
        .unwrap()
        .expect("the events before the failing one are applied");
    assert_eq!((r.status.as_str(), r.version), ("assigned", 3));
    assert!(wo::get(&db.pool, commands::DEFAULT_TENANT_ID, b)
        .await
        .unwrap()
        .is_none());
}
