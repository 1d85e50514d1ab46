//! The audit trail: the `activity` projection (every event once, with actor and entity; tenant
//! scoping; rebuild and verify), its keyset-paged queries with summaries rendered from the
//! log, and the console's Activity page (filters, paging, bad filters). The plans at 1,000,000
//! events are measured by hand (docs/performance.md).

use std::time::Duration;

use axum::http::{Method, StatusCode};
use chrono::{DateTime, TimeZone, Utc};
use commands::{ConflictPolicy, EventMeta, EventStore, DEFAULT_TENANT_ID};
use domain::company::{Company, CompanyCommand};
use domain::values::{Amount, CompanyName};
use projections::activity::{self, ActivityFilter, ActivityProjection, ActivityRow};
use projections::rebuild::{rebuild, verify, RebuildOptions};
use projections::runner::{catch_up, CatchUp, RunnerConfig};
use sqlx::PgPool;
use st_tests::{TestApp, TestDb};
use uuid::Uuid;

const OTHER_TENANT: Uuid = Uuid::from_u128(0xbad);

/// An event written straight into the log (any aggregate type, any tenant, any time).
struct Raw {
    tenant: Uuid,
    actor: &'static str,
    kind: &'static str,
    id: String,
    sequence: i64,
    event_type: String,
    /// `None`: the transaction's time, shared by every event of one `append_raw`.
    at: Option<DateTime<Utc>>,
}

impl Raw {
    fn new(
        actor: &'static str,
        kind: &'static str,
        id: &str,
        sequence: i64,
        event_type: &str,
    ) -> Self {
        Self {
            tenant: DEFAULT_TENANT_ID,
            actor,
            kind,
            id: id.to_owned(),
            sequence,
            event_type: event_type.to_owned(),
            at: None,
        }
    }

    fn at(mut self, at: DateTime<Utc>) -> Self {
        self.at = Some(at);
        self
    }

    fn tenant(mut self, tenant: Uuid) -> Self {
        self.tenant = tenant;
        self
    }
}

/// Appends `events` in one transaction, in the given order.
async fn append_raw(pool: &PgPool, events: &[Raw]) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, recorded_at)
         SELECT k, i, s, t, '1', '{}'::jsonb,
                jsonb_build_object('tenant_id', tn, 'actor', a, 'command_id', gen_random_uuid(),
                                   'correlation_id', gen_random_uuid(), 'causation_id', null),
                coalesce(at, now())
           FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::uuid[], $6::text[],
                       $7::timestamptz[]) WITH ORDINALITY AS u(k, i, s, t, tn, a, at, n)
          ORDER BY n",
    )
    .bind(events.iter().map(|e| e.kind).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.sequence).collect::<Vec<_>>())
    .bind(
        events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(events.iter().map(|e| e.tenant).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.actor).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.at).collect::<Vec<_>>())
    .execute(pool)
    .await
    .unwrap();
}

async fn register(store: &EventStore, actor: &str, name: &str, rate: &str) -> String {
    let meta = EventMeta::new(DEFAULT_TENANT_ID, actor);
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

async fn company(store: &EventStore, actor: &str, id: &str, command: CompanyCommand) {
    store
        .execute::<Company>(
            id,
            command,
            &(),
            &EventMeta::new(DEFAULT_TENANT_ID, actor),
            ConflictPolicy::Report,
        )
        .await
        .unwrap();
}

fn day(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

/// Events `viewer` appends the first time (tenant created, member added, person registered,
/// password set): unfiltered pages show them too.
const VIEWER_EVENTS: usize = 4;

/// An owner of `DEFAULT_TENANT_ID` (the tenant these tests write to), made through the real
/// commands (their own events are in that tenant's activity too, so counts below take the
/// log as the truth), with a console session.
async fn viewer(app: &TestApp) -> st_tests::Person {
    use domain::tenant::{Tenant, TenantCommand};
    use domain::user::{User, UserCommand};
    let email = domain::identity::Email::parse("viewer@default.test").unwrap();
    let user_id = Uuid::new_v5(&DEFAULT_TENANT_ID, b"viewer");
    commands::identity::reserve_email(&app.db.pool, &email, user_id, DEFAULT_TENANT_ID)
        .await
        .unwrap();
    let meta = EventMeta::new(DEFAULT_TENANT_ID, "viewer-setup");
    let tenant = app
        .store
        .load::<Tenant>(DEFAULT_TENANT_ID, &DEFAULT_TENANT_ID.to_string())
        .await
        .unwrap()
        .0;
    if !tenant.created {
        app.store
            .create::<Tenant>(
                &DEFAULT_TENANT_ID.to_string(),
                TenantCommand::Create {
                    name: "Default".into(),
                    currency: domain::identity::Currency::parse("USD").unwrap(),
                    time_zone: domain::identity::TimeZone::parse("UTC").unwrap(),
                    owner_id: user_id,
                },
                &(),
                &meta,
            )
            .await
            .unwrap();
        app.store
            .create::<User>(
                &user_id.to_string(),
                UserCommand::Register {
                    tenant_id: DEFAULT_TENANT_ID,
                    email,
                    name: "Vera Viewer".into(),
                    password_hash:
                        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
                },
                &(),
                &EventMeta::new(DEFAULT_TENANT_ID, "viewer-setup"),
            )
            .await
            .unwrap();
    }
    let (session, _) =
        commands::sessions::start(&app.db.pool, DEFAULT_TENANT_ID, user_id, "tests", "")
            .await
            .unwrap();
    app.settle().await;
    st_tests::Person {
        tenant_id: DEFAULT_TENANT_ID,
        user_id,
        email: "viewer@default.test".into(),
        password: String::new(),
        role: domain::identity::Role::Owner,
        token: String::new(),
        session,
    }
}

/// The Activity page, through the whole router, as an owner of `DEFAULT_TENANT_ID`.
async fn get_page(app: &TestApp, path: &str) -> (StatusCode, String) {
    let who = viewer(app).await;
    let reply = app.send_as(Some(&who), Method::GET, path, None, &[]).await;
    (reply.status, reply.text)
}

/// The "Older →" link of a page, unescaped.
fn older_link(html: &str) -> Option<String> {
    let end = html.find("\" rel=\"next\">Older")?;
    let start = html[..end].rfind("href=\"")? + "href=\"".len();
    Some(html[start..end].replace("&#38;", "&").replace("&amp;", "&"))
}

/// The number of rows of the page's table.
fn row_count(html: &str) -> usize {
    html.matches("<time datetime=").count()
}

/// The positions of every row of the tenant in page order, straight from the table.
async fn all_rows(pool: &PgPool, tenant: Uuid) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT global_position FROM activity WHERE tenant_id = $1
          ORDER BY recorded_at DESC, global_position DESC",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .unwrap()
}

fn positions(rows: &[ActivityRow]) -> Vec<i64> {
    rows.iter().map(|r| r.global_position).collect()
}

/// One page of `tenant`'s activity.
async fn page(pool: &PgPool, tenant: Uuid, filter: &ActivityFilter<'_>) -> Vec<ActivityRow> {
    let mut conn = pool.acquire().await.unwrap();
    activity::page(&mut conn, tenant, filter).await.unwrap()
}

async fn actors(pool: &PgPool, tenant: Uuid) -> Vec<String> {
    activity::actors(pool, tenant, 100).await.unwrap()
}

/// Every row `filter` selects, fetched `limit` at a time by following the cursor.
async fn paged(pool: &PgPool, tenant: Uuid, filter: &ActivityFilter<'_>) -> Vec<ActivityRow> {
    let mut out: Vec<ActivityRow> = Vec::new();
    let mut filter = filter.clone();
    loop {
        let page = page(pool, tenant, &filter).await;
        assert!(page.len() as i64 <= filter.limit);
        let Some(last) = page.last() else {
            return out;
        };
        filter.before = Some(last.cursor());
        out.extend(page);
    }
}

#[tokio::test]
async fn every_event_appears_once_with_actor_entity_and_summary() {
    let app = TestApp::new().await;
    let acme = register(&app.store, "alice", "Acme & Sons", "10").await;
    let globex = register(&app.store, "bob", "Globex", "20.5").await;
    company(
        &app.store,
        "bob",
        &acme,
        CompanyCommand::Rename {
            name: CompanyName::parse("Acme Ltd").unwrap(),
        },
    )
    .await;
    company(&app.store, "alice", &globex, CompanyCommand::Archive).await;
    append_raw(
        &app.db.pool,
        &[Raw::new("scheduler", "ticket", "T-1", 1, "TicketOpened")],
    )
    .await;
    app.settle().await;

    // (The harness's own tenant, bootstrapped by `TestApp::new`, has events too.)
    let events = app
        .db
        .count(&format!(
            "SELECT count(*) FROM events WHERE metadata->>'tenant_id' = '{DEFAULT_TENANT_ID}'"
        ))
        .await;
    assert_eq!(events, 5);
    assert_eq!(
        all_rows(&app.db.pool, DEFAULT_TENANT_ID).await.len() as i64,
        events,
        "one row per event"
    );
    let rows = page(
        &app.db.pool,
        DEFAULT_TENANT_ID,
        &ActivityFilter {
            limit: 50,
            ..Default::default()
        },
    )
    .await;
    // Every event of every tenant once, with what its metadata says.
    let all_events = app.db.count("SELECT count(*) FROM events").await;
    assert_eq!(
        app.db.count("SELECT count(*) FROM activity").await,
        all_events
    );
    let joined = app
        .db
        .count(
            "SELECT count(*) FROM activity a JOIN events e ON e.global_position = a.global_position
              WHERE a.tenant_id = (e.metadata->>'tenant_id')::uuid AND a.actor = e.metadata->>'actor'
                AND a.aggregate_type = e.aggregate_type AND a.aggregate_id = e.aggregate_id
                AND a.event_type = e.event_type
                AND a.recorded_at = e.recorded_at",
        )
        .await;
    assert_eq!(joined, all_events);
    let summaries: Vec<(&str, &str, &str)> = rows
        .iter()
        .rev()
        .map(|r| {
            (
                r.actor.as_str(),
                r.aggregate_id.as_str(),
                r.summary.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summaries,
        [
            (
                "alice",
                acme.as_str(),
                "Registered as Acme & Sons at 10.00 a month"
            ),
            (
                "bob",
                globex.as_str(),
                "Registered as Globex at 20.50 a month"
            ),
            (
                "bob",
                acme.as_str(),
                "Renamed to Acme Ltd (was Acme & Sons)"
            ),
            ("alice", globex.as_str(), "Archived"),
            ("scheduler", "T-1", "Ticket opened"),
        ]
    );
    assert_eq!(
        actors(&app.db.pool, DEFAULT_TENANT_ID).await,
        ["alice", "bob", "scheduler"]
    );

    let (status, html) = get_page(&app, "/activity").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_eq!(row_count(&html), 5 + VIEWER_EVENTS);
    assert!(
        html.contains("Renamed to Acme Ltd (was Acme &#38; Sons)"),
        "{html}"
    );
    assert!(
        html.contains(&format!("href=\"/companies/{acme}\"")),
        "entities link to their page"
    );
    assert!(html.contains("Ticket T-1"), "{html}");
    assert!(
        html.contains("<option value=\"scheduler\" >scheduler</option>"),
        "{html}"
    );
    // Newest first.
    assert!(html.find("Ticket opened").unwrap() < html.find("Registered as Globex").unwrap());
    assert!(older_link(&html).is_none());
}

#[tokio::test]
async fn the_page_filters_by_person_entity_and_date_range() {
    let app = TestApp::new().await;
    let acme = register(&app.store, "alice", "Acme", "1").await;
    register(&app.store, "bob", "Globex", "1").await;
    company(&app.store, "alice", &acme, CompanyCommand::Archive).await;
    append_raw(
        &app.db.pool,
        &[
            Raw::new("carol", "ticket", "T-1", 1, "TicketOpened").at(day(2024, 3, 1, 9)),
            Raw::new("carol", "ticket", "T-1", 2, "TicketClosed").at(day(2024, 3, 2, 23)),
            Raw::new("alice", "ticket", "T-2", 1, "TicketOpened").at(day(2024, 3, 3, 0)),
            Raw::new("bob", "ticket", "T-2", 2, "TicketEscalated").at(day(2024, 3, 5, 12)),
        ],
    )
    .await;
    app.settle().await;
    let pool = &app.db.pool;
    fn filter(f: ActivityFilter<'_>) -> ActivityFilter<'_> {
        ActivityFilter { limit: 100, ..f }
    }
    let summaries = |rows: Vec<ActivityRow>| -> Vec<String> {
        rows.into_iter()
            .map(|r| format!("{} {} {}", r.actor, r.aggregate_id, r.summary))
            .collect()
    };

    let by_actor = page(
        pool,
        DEFAULT_TENANT_ID,
        &filter(ActivityFilter {
            actor: Some("carol"),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(
        summaries(by_actor),
        ["carol T-1 Ticket closed", "carol T-1 Ticket opened"]
    );

    let by_type = page(
        pool,
        DEFAULT_TENANT_ID,
        &filter(ActivityFilter {
            aggregate_type: Some("company"),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(by_type.len(), 3);
    assert!(by_type.iter().all(|r| r.aggregate_type == "company"));

    let by_entity = page(
        pool,
        DEFAULT_TENANT_ID,
        &filter(ActivityFilter {
            aggregate_type: Some("company"),
            aggregate_id: Some(&acme),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(
        by_entity
            .iter()
            .map(|r| r.summary.as_str())
            .collect::<Vec<_>>(),
        ["Archived", "Registered as Acme at 1.00 a month"]
    );

    let in_range = page(
        pool,
        DEFAULT_TENANT_ID,
        &filter(ActivityFilter {
            from: Some(day(2024, 3, 2, 0)),
            until: Some(day(2024, 3, 4, 0)),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(
        summaries(in_range),
        ["alice T-2 Ticket opened", "carol T-1 Ticket closed"]
    );

    let combined = page(
        pool,
        DEFAULT_TENANT_ID,
        &filter(ActivityFilter {
            actor: Some("alice"),
            aggregate_type: Some("ticket"),
            until: Some(day(2024, 3, 4, 0)),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(summaries(combined), ["alice T-2 Ticket opened"]);

    // The same through the page: dates are whole days in UTC, both ends included.
    let (status, html) = get_page(&app, "/activity?from=2024-03-02&to=2024-03-03").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_eq!(row_count(&html), 2, "{html}");
    assert!(html.contains("Ticket closed") && html.contains("Ticket opened"));
    let (_, html) = get_page(&app, "/activity?person=carol").await;
    assert_eq!(row_count(&html), 2);
    assert!(
        html.contains("<option value=\"carol\" selected>carol</option>"),
        "{html}"
    );
    let (_, html) = get_page(&app, &format!("/activity?entity=company&id={acme}")).await;
    assert_eq!(row_count(&html), 2);
    let (_, html) = get_page(&app, "/activity?entity=ticket&id=T-2&from=2024-03-04").await;
    assert_eq!(row_count(&html), 1);
    assert!(html.contains("Ticket escalated"));
    let (status, html) = get_page(&app, "/activity?person=nobody").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No activity matches this filter."), "{html}");
}

#[tokio::test]
async fn keyset_paging_returns_every_row_once_in_order() {
    let app = TestApp::new().await;
    // 120 events of one transaction share their recorded_at; others come before, between
    // (with the very same instant) and after.
    let shared_at = day(2024, 6, 1, 12);
    let mut events: Vec<Raw> = (1..=120)
        .map(|i| {
            Raw::new(
                if i % 3 == 0 { "bob" } else { "alice" },
                "ticket",
                &format!("T-{}", i % 7),
                i,
                &format!("Step{i:03}Done"),
            )
            .at(shared_at)
        })
        .collect();
    for e in events.iter_mut() {
        e.id = format!("{}-{}", e.id, e.sequence);
        e.sequence = 1;
    }
    append_raw(&app.db.pool, &events).await;
    for i in 0..25 {
        let at = match i % 3 {
            0 => shared_at,
            1 => shared_at - chrono::Duration::minutes(i),
            _ => shared_at + chrono::Duration::seconds(i),
        };
        append_raw(
            &app.db.pool,
            &[Raw::new(
                "alice",
                "ticket",
                &format!("L-{i}"),
                1,
                &format!("Late{i:03}Done"),
            )
            .at(at)],
        )
        .await;
    }
    app.settle().await;
    let pool = &app.db.pool;
    let expected = all_rows(pool, DEFAULT_TENANT_ID).await;
    assert_eq!(expected.len(), 145);

    for limit in [1, 7, 50, 500] {
        let got = paged(
            pool,
            DEFAULT_TENANT_ID,
            &ActivityFilter {
                limit,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            positions(&got),
            expected,
            "limit {limit}: every row once, in order"
        );
    }
    let everything = paged(
        pool,
        DEFAULT_TENANT_ID,
        &ActivityFilter {
            limit: 500,
            ..Default::default()
        },
    )
    .await;
    let alice: Vec<ActivityRow> = everything
        .iter()
        .filter(|r| r.actor == "alice")
        .cloned()
        .collect();
    let got = paged(
        pool,
        DEFAULT_TENANT_ID,
        &ActivityFilter {
            actor: Some("alice"),
            limit: 9,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(got, alice);

    // Through the page: 50 a page, "Older →" carries the cursor and the filter.
    let mut path = "/activity".to_owned();
    let mut shown = Vec::new();
    let mut pages = 0;
    loop {
        let (status, html) = get_page(&app, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        pages += 1;
        shown.push(row_count(&html));
        match older_link(&html) {
            Some(next) => {
                assert!(html.contains("rel=\"next\">Older →</a>"));
                path = next;
            }
            None => break,
        }
    }
    assert_eq!((pages, shown), (3, vec![50, 50, 45 + VIEWER_EVENTS]));
    // Every event's summary appears on exactly one page.
    let mut seen = std::collections::HashMap::new();
    let mut path = Some("/activity?person=alice".to_owned());
    while let Some(p) = path {
        let (_, html) = get_page(&app, &p).await;
        assert!(
            p == "/activity?person=alice" || p.contains("person=alice&before="),
            "{p}"
        );
        for row in &alice {
            if html.contains(&format!("<td>{}</td>", row.summary)) {
                *seen.entry(row.global_position).or_insert(0) += 1;
            }
        }
        path = older_link(&html);
    }
    assert_eq!(seen.len(), alice.len());
    assert!(seen.values().all(|&n| n == 1));
}

#[tokio::test]
async fn another_tenants_activity_never_appears() {
    let app = TestApp::new().await;
    register(&app.store, "alice", "Acme", "1").await;
    append_raw(
        &app.db.pool,
        &[
            Raw::new("mallory", "ticket", "X-1", 1, "TicketOpened").tenant(OTHER_TENANT),
            Raw::new("alice", "ticket", "X-1", 2, "SecretRevealed").tenant(OTHER_TENANT),
        ],
    )
    .await;
    app.settle().await;
    let pool = &app.db.pool;
    assert_eq!(
        app.db
            .count(&format!(
                "SELECT count(*) FROM activity WHERE tenant_id IN ('{DEFAULT_TENANT_ID}', '{OTHER_TENANT}')"
            ))
            .await,
        3
    );
    let mine = paged(
        pool,
        DEFAULT_TENANT_ID,
        &ActivityFilter {
            limit: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].actor, "alice");
    assert_eq!(actors(pool, DEFAULT_TENANT_ID).await, ["alice"]);
    assert_eq!(actors(pool, OTHER_TENANT).await, ["alice", "mallory"]);
    let theirs = page(
        pool,
        OTHER_TENANT,
        &ActivityFilter {
            limit: 10,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(theirs.len(), 2);
    for (path, rows) in [
        ("/activity", 1 + VIEWER_EVENTS),
        ("/activity?person=mallory", 0),
        ("/activity?entity=ticket&id=X-1", 0),
        ("/activity?person=alice&entity=ticket", 0),
    ] {
        let (status, html) = get_page(&app, path).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(row_count(&html), rows, "{path}: {html}");
        assert!(!html.contains("Secret revealed"), "{path}: {html}");
        if !path.contains("mallory") {
            assert!(
                !html.contains("mallory"),
                "the other tenant's people are not offered: {html}"
            );
        }
    }
}

#[tokio::test]
async fn bad_filters_are_shown_next_to_their_field_with_422() {
    let app = TestApp::new().await;
    register(&app.store, "alice", "Acme", "1").await;
    app.settle().await;
    let long_id = "x".repeat(300);
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "/activity?from=2024-13-01".into(),
            "from-error",
            "is not a date",
        ),
        (
            "/activity?from=yesterday".into(),
            "from-error",
            "use YYYY-MM-DD",
        ),
        (
            "/activity?to=2024-02-30".into(),
            "to-error",
            "is not a date",
        ),
        (
            "/activity?from=-5000-01-01".into(),
            "from-error",
            "is not a date",
        ),
        (
            "/activity?from=2024-03-02&to=2024-03-01".into(),
            "to-error",
            "before the start date",
        ),
        (
            "/activity?id=abc".into(),
            "id-error",
            "Choose the kind of entity",
        ),
        (
            format!("/activity?entity=company&id={long_id}"),
            "id-error",
            "at most 200",
        ),
        (
            "/activity?before=garbage".into(),
            "role=\"alert\"",
            "page link is not valid",
        ),
        (
            "/activity?before=1704067200000000.99999999999999999999".into(),
            "role=\"alert\"",
            "page link is not valid",
        ),
        (
            "/activity?before=1704067200000000".into(),
            "role=\"alert\"",
            "page link is not valid",
        ),
    ];
    for (path, field, message) in cases {
        let (status, html) = get_page(&app, &path).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {html}");
        let at = html
            .find(field)
            .unwrap_or_else(|| panic!("{path}: no {field}: {html}"));
        assert!(html[at..].contains(message), "{path}: {html}");
        assert!(html.contains("Correct the filter above"), "{path}");
        assert_eq!(row_count(&html), 0);
    }
    // The input is kept.
    let (_, html) = get_page(&app, "/activity?from=2024-13-01&person=alice").await;
    assert!(html.contains("value=\"2024-13-01\""), "{html}");
    assert!(
        html.contains("<option value=\"alice\" selected>alice</option>"),
        "{html}"
    );
    // Odd but harmless input is not an error.
    for path in [
        "/activity?from=&to=&person=&entity=&id=&before=",
        "/activity?unknown=1&from=2024-01-01&from=nonsense",
        "/activity?person=%FF%FE",
        "/activity?entity=nosuchthing",
        "/activity?before=1704067200000000.5",
    ] {
        let (status, html) = get_page(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
    }
}

#[tokio::test]
async fn an_event_whose_metadata_does_not_decode_stops_the_projection_there() {
    let db = TestDb::new().await;
    append_raw(
        &db.pool,
        &[Raw::new("alice", "ticket", "T-1", 1, "TicketOpened")],
    )
    .await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('ticket', 'T-1', 2, 'TicketClosed', '1', '{}', '{\"actor\": \"no tenant\"}')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    append_raw(
        &db.pool,
        &[Raw::new("alice", "ticket", "T-1", 3, "TicketReopened")],
    )
    .await;
    let bad: i64 = sqlx::query_scalar("SELECT global_position FROM events WHERE sequence = 2")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    let config = RunnerConfig {
        batch_size: 10,
        ..Default::default()
    };
    let outcome = loop {
        // Other tests' transactions on the cluster may hold the reader back a moment.
        match catch_up(&db.pool, &mut conn, &ActivityProjection, &config)
            .await
            .unwrap()
        {
            CatchUp::CaughtUp { .. } => tokio::time::sleep(Duration::from_millis(20)).await,
            failed => break failed,
        }
    };
    let CatchUp::Failed { position, error } = outcome else {
        unreachable!()
    };
    assert_eq!(position.global_position, bad);
    assert!(error.contains("metadata"), "{error}");
    assert_eq!(
        db.count("SELECT count(*) FROM activity").await,
        1,
        "the event before it is applied"
    );
}

#[tokio::test]
async fn rebuild_and_verify_of_activity_match() {
    let app = TestApp::new().await;
    for i in 0..30 {
        let id = register(
            &app.store,
            ["alice", "bob", "carol"][i % 3],
            &format!("C{i}"),
            "5",
        )
        .await;
        if i % 4 == 0 {
            company(&app.store, "dave", &id, CompanyCommand::Archive).await;
        }
    }
    append_raw(
        &app.db.pool,
        &(1..=40)
            .map(|i| Raw::new("scheduler", "ticket", &format!("T-{i}"), 1, "TicketOpened"))
            .collect::<Vec<_>>(),
    )
    .await;
    append_raw(
        &app.db.pool,
        &[Raw::new("eve", "ticket", "O-1", 1, "TicketOpened").tenant(OTHER_TENANT)],
    )
    .await;
    app.settle().await;
    let pool = &app.db.pool;
    let report = verify(pool, &ActivityProjection).await.unwrap();
    assert!(report.matches(), "{:?}", report.differences);
    // 79 events here, and those of the harness's own tenant.
    let events = app.db.count("SELECT count(*) FROM events").await;
    assert!(events >= 79);
    assert_eq!(report.events as i64, events);
    assert_eq!(report.live_rows as i64, events, "one row per event");

    let snapshot = "SELECT string_agg(row_to_json(a)::text, E'\\n' ORDER BY tenant_id, global_position) FROM activity a";
    let indexes = "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename LIKE 'activity%'";
    let before: String = sqlx::query_scalar(snapshot).fetch_one(pool).await.unwrap();
    let index_names: String = sqlx::query_scalar(indexes).fetch_one(pool).await.unwrap();
    let report = rebuild(
        pool,
        &ActivityProjection,
        &RebuildOptions { batch_size: 13 },
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(report.events as i64, events);
    let after: String = sqlx::query_scalar(snapshot).fetch_one(pool).await.unwrap();
    assert_eq!(
        before, after,
        "a rebuild gives the same rows, byte for byte"
    );
    assert_eq!(
        index_names,
        sqlx::query_scalar::<_, String>(indexes)
            .fetch_one(pool)
            .await
            .unwrap()
    );

    // Verify sees a tampered row.
    sqlx::query("UPDATE activity SET actor = 'tampered' WHERE global_position = (SELECT min(global_position) FROM activity)")
        .execute(pool)
        .await
        .unwrap();
    let report = verify(pool, &ActivityProjection).await.unwrap();
    assert!(!report.matches());
    let differences = report.differences.join("\n");
    assert!(differences.contains("tampered"), "{differences}");
}

#[tokio::test]
async fn paging_stays_exact_while_events_are_appended_between_page_loads() {
    let app = TestApp::new().await;
    let acme = register(&app.store, "alice", "Acme", "1").await;
    for i in 0..119 {
        let rate = format!("{}.00", i + 2);
        company(
            &app.store,
            ["alice", "bob"][i % 2],
            &acme,
            CompanyCommand::SetMonthlyRate {
                monthly_rate: Amount::parse("monthly_rate", &rate).unwrap(),
            },
        )
        .await;
    }
    app.settle().await;
    let original = all_rows(&app.db.pool, DEFAULT_TENANT_ID).await;
    assert_eq!(original.len(), 120);

    for (start, filter) in [
        ("/activity", ""),
        ("/activity?person=bob", "person=bob&"),
        (
            &*format!("/activity?entity=company&id={acme}"),
            "entity=company&id=",
        ),
    ] {
        let mut seen: Vec<i64> = Vec::new();
        let mut path = Some(start.to_owned());
        let mut extra = 0;
        while let Some(p) = path {
            let (status, html) = get_page(&app, &p).await;
            assert_eq!(status, StatusCode::OK, "{p}: {html}");
            seen.extend(row_positions(&html));
            // New events land between two page loads.
            company(
                &app.store,
                "carol",
                &acme,
                CompanyCommand::SetMonthlyRate {
                    monthly_rate: Amount::parse("monthly_rate", &format!("{}.50", extra)).unwrap(),
                },
            )
            .await;
            extra += 1;
            app.settle().await;
            path = older_link(&html);
            if let Some(next) = &path {
                assert!(
                    next.contains(&format!("?{filter}")) || filter.is_empty(),
                    "{next}"
                );
            }
        }
        let mut unique = seen.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "{start}: no row twice");
        let wanted: Vec<i64> = match start {
            "/activity" => original.clone(),
            s if s.contains("person=bob") => {
                let bob: Vec<i64> = sqlx::query_scalar(
                    "SELECT global_position FROM activity WHERE actor = 'bob'
                      ORDER BY recorded_at DESC, global_position DESC",
                )
                .fetch_all(&app.db.pool)
                .await
                .unwrap();
                bob
            }
            _ => original.clone(),
        };
        // The first page was loaded before any new event: every row that existed then (of
        // this filter) is on exactly one page, newest first.
        let before_first: Vec<i64> = seen
            .iter()
            .copied()
            .filter(|p| wanted.contains(p))
            .collect();
        assert_eq!(before_first, wanted, "{start}: every row once, in order");
    }
}

/// The positions of a page's rows (`<tr data-position=…>`), in page order.
fn row_positions(html: &str) -> Vec<i64> {
    html.match_indices("data-position=\"")
        .map(|(i, marker)| {
            let rest = &html[i + marker.len()..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}
