//! The pages behind work-order status links (issue 5), without signing in: a technician link
//! moves the order to in progress, resolved, closed (only what the status allows, 20 moves at
//! most); a customer link shows progress and public comments only (50 views at most) and takes
//! one rating once the work is resolved; expired, used-up and revoked links get a page that
//! says which; a token of one tenant with another tenant's order appends nothing anywhere;
//! malformed tokens are a 404, never a 500.

use axum::http::{Method, StatusCode};
use chrono::{Duration, Utc};
use commands::{ConflictPolicy, EventMeta};
use domain::workorder::{LinkKind, WorkOrder, WorkOrderCommand};
use serde_json::{json, Value};
use st_tests::{Person, Reply, TestApp};
use uuid::Uuid;

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

async fn company_of(app: &TestApp, who: &Person, name: &str) -> String {
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
    reply.json()["id"].as_str().unwrap().to_owned()
}

/// An order of `who`'s tenant, assigned to `who`.
async fn order_of(app: &TestApp, who: &Person, company: &str, title: &str) -> String {
    let body = json!({"company_id": company, "title": title, "type": "repair",
        "description": "Paper jams on tray 2", "assignee_id": who.user_id});
    let reply = app
        .send_as(
            Some(who),
            Method::POST,
            "/api/v1/work-orders",
            Some(&body.to_string()),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let order = reply.json();
    assert_eq!(order["status"], "assigned");
    order["id"].as_str().unwrap().to_owned()
}

/// Issues a link through the API; its page's path, token and id.
async fn issue(app: &TestApp, who: &Person, order: &str, kind: &str) -> (String, String, String) {
    let reply = app
        .send_as(
            Some(who),
            Method::POST,
            &format!("/api/v1/work-orders/{order}/links"),
            Some(&json!({"kind": kind}).to_string()),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let link = reply.json();
    let url = link["url"].as_str().unwrap();
    let path = format!("/l/{}", url.split_once("/l/").unwrap().1);
    assert!(path.starts_with(&format!("/l/{order}/")), "{path}");
    let token = path.rsplit('/').next().unwrap().to_owned();
    app.settle().await;
    (path, token, link["id"].as_str().unwrap().to_owned())
}

/// Opens a page as nobody in particular (no session).
async fn open(app: &TestApp, path: &str) -> Reply {
    app.send_as(None, Method::GET, path, None, &[]).await
}

/// Posts a form as a visitor whose page set `csrf` (cookie and field; empty: neither).
async fn post(app: &TestApp, path: &str, body: &str, csrf: &str) -> Reply {
    if csrf.is_empty() {
        return post_raw(app, path, body, "").await;
    }
    post_raw(app, path, &format!("{body}&csrf={csrf}"), csrf).await
}

/// Posts `body` as is, with `cookie` as the CSRF cookie.
async fn post_raw(app: &TestApp, path: &str, body: &str, cookie: &str) -> Reply {
    let cookie = format!("st_csrf={cookie}");
    app.send_body_as(None, Method::POST, path, body, &[FORM, ("cookie", &cookie)])
        .await
}

async fn events_of(app: &TestApp, order: &str) -> i64 {
    app.db
        .count(&format!(
            "SELECT count(*) FROM events WHERE aggregate_type = 'work_order' AND aggregate_id = '{order}'"
        ))
        .await
}

async fn order_json(app: &TestApp, who: &Person, order: &str) -> Value {
    app.settle().await;
    let reply = app
        .send_as(
            Some(who),
            Method::GET,
            &format!("/api/v1/work-orders/{order}"),
            None,
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.json()
}

fn assert_private(reply: &Reply) {
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert_eq!(reply.headers["referrer-policy"], "no-referrer");
    assert!(reply.headers["x-robots-tag"]
        .to_str()
        .unwrap()
        .contains("noindex"));
    assert!(
        reply.content_type.starts_with("text/html"),
        "{}",
        reply.content_type
    );
}

/// Sets the order's status as staff (through the API).
async fn staff_status(app: &TestApp, order: &str, status: &str) {
    let reply = app
        .request(
            Method::PATCH,
            &format!("/api/v1/work-orders/{order}"),
            Some(&json!({"status": status}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn a_technician_link_moves_the_order_through_its_statuses_and_nothing_else() {
    let app = TestApp::new().await;
    let owner = app.owner.clone();
    let acme = company_of(&app, &owner, "Northwind").await;
    let order = order_of(&app, &owner, &acme, "Printer jams").await;
    let (path, token, link_id) = issue(&app, &owner, &order, "technician").await;
    assert_eq!(
        app.db
            .count(&format!(
                "SELECT count(*) FROM events WHERE strpos(payload::text || metadata::text, '{token}') > 0"
            ))
            .await,
        0,
        "the token is stored only as a digest"
    );

    let page = open(&app, &path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_private(&page);
    for shown in [
        "Printer jams",
        "Northwind",
        "Paper jams on tray 2",
        "assigned",
        "normal",
    ] {
        assert!(page.text.contains(shown), "{shown}: {}", page.text);
    }
    assert!(page.text.contains(r#"value="in_progress""#));
    assert!(page.text.contains(r#"value="resolved""#));
    assert!(
        !page.text.contains(r#"value="closed""#),
        "an assigned order cannot be closed"
    );
    assert!(page.text.contains("20 more change"), "{}", page.text);
    let csrf = page.csrf_cookie();
    let before = events_of(&app, &order).await;
    assert_eq!(
        before,
        events_of(&app, &order).await,
        "looking counts nothing"
    );

    // Refusals: nothing appended.
    let closed = post(&app, &path, "status=closed", &csrf).await;
    assert_eq!(closed.status, StatusCode::CONFLICT, "{}", closed.text);
    assert!(
        closed.text.contains("cannot move to closed"),
        "{}",
        closed.text
    );
    let cancelled = post(&app, &path, "status=cancelled", &csrf).await;
    assert_eq!(cancelled.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(cancelled
        .text
        .contains("in progress, resolved or closed only"));
    let bogus = post(&app, &path, "status=teleported", &csrf).await;
    assert_eq!(bogus.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bogus.text.contains("The status must be one of"),
        "{}",
        bogus.text
    );
    let forged = post(&app, &path, "status=in_progress", "").await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "no CSRF token");
    let other_cookie = post_raw(
        &app,
        &path,
        &format!("status=in_progress&csrf={}", "a".repeat(48)),
        &"b".repeat(48),
    )
    .await;
    assert_eq!(other_cookie.status, StatusCode::FORBIDDEN);
    let rating = post(&app, &format!("{path}/rate"), "rating=5", &csrf).await;
    assert_eq!(
        rating.status,
        StatusCode::CONFLICT,
        "a technician link does not rate"
    );
    assert_eq!(events_of(&app, &order).await, before);

    // in progress → resolved → closed; the order follows.
    for status in ["in_progress", "resolved", "closed"] {
        let moved = post(&app, &path, &format!("status={status}"), &csrf).await;
        assert_eq!(
            moved.status,
            StatusCode::SEE_OTHER,
            "{status}: {}",
            moved.text
        );
        assert_eq!(moved.headers["location"], format!("{path}?done=1"));
        assert_eq!(order_json(&app, &owner, &order).await["status"], status);
        let back = open(&app, &format!("{path}?done=1")).await;
        assert_eq!(back.status, StatusCode::OK);
        let label = status.replace('_', " ");
        assert!(
            back.text.contains(&format!("Status set to {label}.")),
            "{}",
            back.text
        );
    }
    let last = open(&app, &path).await;
    assert!(
        !last.text.contains(r#"name="status""#),
        "a closed order offers no move"
    );
    assert!(last.text.contains("17 more change"), "{}", last.text);

    // The moves name the link and its actor; the token is nowhere.
    let by_link = app
        .db
        .count(&format!(
            "SELECT count(*) FROM events WHERE aggregate_id = '{order}'
                AND event_type = 'WorkOrderStatusChanged'
                AND payload->'WorkOrderStatusChanged'->>'link_id' = '{link_id}'
                AND metadata->>'actor' = 'link:{link_id}'"
        ))
        .await;
    assert_eq!(by_link, 3);
    assert_eq!(
        app.db
            .count(&format!(
                "SELECT count(*) FROM events WHERE strpos(payload::text || metadata::text, '{token}') > 0"
            ))
            .await,
        0
    );
}

#[tokio::test]
async fn a_technician_link_allows_twenty_moves() {
    let app = TestApp::new().await;
    let owner = app.owner.clone();
    let acme = company_of(&app, &owner, "Northwind").await;
    let order = order_of(&app, &owner, &acme, "Flaky switch").await;
    let (path, _, _) = issue(&app, &owner, &order, "technician").await;
    let csrf = open(&app, &path).await.csrf_cookie();
    for round in 0..10 {
        for status in ["in_progress", "resolved"] {
            let moved = post(&app, &path, &format!("status={status}"), &csrf).await;
            assert_eq!(
                moved.status,
                StatusCode::SEE_OTHER,
                "{round} {status}: {}",
                moved.text
            );
        }
        staff_status(&app, &order, "reopened").await;
    }
    let before = events_of(&app, &order).await;
    let spent = post(&app, &path, "status=in_progress", &csrf).await;
    assert_eq!(spent.status, StatusCode::GONE, "{}", spent.text);
    assert!(spent.text.contains("used as many times as it allows"));
    let page = open(&app, &path).await;
    assert_eq!(page.status, StatusCode::GONE);
    assert!(
        !page.text.contains("Flaky switch"),
        "a spent link shows nothing"
    );
    assert_private(&page);
    assert_eq!(events_of(&app, &order).await, before);
    assert_eq!(order_json(&app, &owner, &order).await["status"], "reopened");
}

#[tokio::test]
async fn a_customer_link_shows_public_progress_and_takes_one_rating_once_resolved() {
    let app = TestApp::new().await;
    let owner = app.owner.clone();
    let acme = company_of(&app, &owner, "Northwind").await;
    let order = order_of(&app, &owner, &acme, "Email down").await;
    for (body, public) in [
        ("Looking into the mail server now", true),
        ("Internal: customer forgot to pay the domain", false),
    ] {
        let reply = app
            .request(
                Method::POST,
                &format!("/api/v1/work-orders/{order}/comments"),
                Some(&json!({"body": body, "public": public}).to_string()),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    }
    let (path, _, link_id) = issue(&app, &owner, &order, "customer").await;

    let page = open(&app, &path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_private(&page);
    for shown in [
        "Acme IT",
        "Email down",
        "Looking into the mail server now",
        "Olive",
        "aria-current",
    ] {
        assert!(page.text.contains(shown), "{shown}: {}", page.text);
    }
    for hidden in [
        "Internal: customer",
        "forgot to pay",
        "owner@acme.test",
        "Owner",
        "Paper jams",
    ] {
        assert!(!page.text.contains(hidden), "{hidden}: {}", page.text);
    }
    assert!(
        !page.text.contains(r#"id="rate""#),
        "no rating before the work is resolved"
    );
    let csrf = page.csrf_cookie();
    let early = post(&app, &format!("{path}/rate"), "rating=5", &csrf).await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{}", early.text);
    assert!(early.text.contains("once it is resolved"));
    assert!(!early.text.contains("Internal: customer"));
    let status = post(&app, &path, "status=closed", &csrf).await;
    assert_eq!(
        status.status,
        StatusCode::CONFLICT,
        "a customer link moves nothing"
    );
    assert!(!status.text.contains("Email down"));

    staff_status(&app, &order, "resolved").await;
    let resolved = open(&app, &path).await;
    assert!(resolved.text.contains(r#"id="rate""#), "{}", resolved.text);
    assert!(
        resolved.text.contains(r#"aria-current="step">Resolved"#),
        "{}",
        resolved.text
    );

    let rated_events = format!(
        "SELECT count(*) FROM events WHERE aggregate_id = '{order}' AND event_type = 'WorkOrderRated'"
    );
    let rate = format!("{path}/rate");
    let bad = post(&app, &rate, "rating=9&comment=Great", &csrf).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.text.contains("Choose a rating from 1 to 5"),
        "{}",
        bad.text
    );
    assert!(
        bad.text.contains(">Great</textarea>"),
        "the comment is kept"
    );
    let none = post(&app, &rate, "comment=Great", &csrf).await;
    assert_eq!(none.status, StatusCode::UNPROCESSABLE_ENTITY);
    let long = post(
        &app,
        &rate,
        &format!("rating=4&comment={}", "x".repeat(2001)),
        &csrf,
    )
    .await;
    assert_eq!(long.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        long.text.contains("at most 2,000 characters"),
        "{}",
        long.text
    );
    assert_eq!(app.db.count(&rated_events).await, 0);

    let rated = post(&app, &rate, "rating=4&comment=Quick+and+friendly", &csrf).await;
    assert_eq!(rated.status, StatusCode::SEE_OTHER, "{}", rated.text);
    let thanks = open(&app, &format!("{path}?done=1")).await;
    assert!(thanks.text.contains("Thank you"), "{}", thanks.text);
    assert!(thanks.text.contains("You rated this work 4 out of 5."));
    assert!(thanks.text.contains("Quick and friendly"));
    assert!(!thanks.text.contains(r#"id="rate""#));
    let again = post(&app, &rate, "rating=1", &csrf).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.text.contains("already rated"), "{}", again.text);
    assert_eq!(app.db.count(&rated_events).await, 1);
    let json = order_json(&app, &owner, &order).await;
    assert_eq!(json["rating"], 4);

    // Every showing of the page counted a view, under the link's own actor.
    let views = app
        .db
        .count(&format!(
            "SELECT count(*) FROM events WHERE aggregate_id = '{order}'
                AND event_type = 'StatusLinkUsed' AND metadata->>'actor' = 'link:{link_id}'"
        ))
        .await;
    assert!(views >= 8, "{views}");
}

#[tokio::test]
async fn a_customer_link_allows_fifty_views() {
    let app = TestApp::new().await;
    let owner = app.owner.clone();
    let acme = company_of(&app, &owner, "Northwind").await;
    let order = order_of(&app, &owner, &acme, "New laptop").await;
    let (path, _, _) = issue(&app, &owner, &order, "customer").await;
    for n in 1..=50 {
        let page = open(&app, &path).await;
        assert_eq!(page.status, StatusCode::OK, "view {n}");
    }
    let before = events_of(&app, &order).await;
    let spent = open(&app, &path).await;
    assert_eq!(spent.status, StatusCode::GONE);
    assert!(spent.text.contains("used as many times as it allows"));
    assert!(!spent.text.contains("New laptop"));
    assert_eq!(events_of(&app, &order).await, before);
}

#[tokio::test]
async fn expired_revoked_and_foreign_links_show_nothing_and_append_nothing() {
    let app = TestApp::new().await;
    let owner = app.owner.clone();
    let acme = company_of(&app, &owner, "Northwind").await;
    let order = order_of(&app, &owner, &acme, "Backup failing").await;

    // Expired: issued eight days ago (customer links live seven).
    let (token, digest) = commands::identity::new_token("");
    let meta = EventMeta::new(owner.tenant_id, owner.user_id.to_string());
    app.store
        .execute::<WorkOrder>(
            &order,
            WorkOrderCommand::IssueLink {
                link_id: Uuid::new_v4(),
                kind: LinkKind::Customer,
                token_digest: digest,
                user_id: None,
                now: Utc::now() - Duration::days(8),
            },
            &(),
            &meta,
            ConflictPolicy::Report,
        )
        .await
        .unwrap();
    app.settle().await;
    let expired_path = format!("/l/{order}/{token}");
    let before = events_of(&app, &order).await;
    let expired = open(&app, &expired_path).await;
    assert_eq!(expired.status, StatusCode::GONE, "{}", expired.text);
    assert!(expired.text.contains("This link has expired"));
    assert!(!expired.text.contains("Backup failing"));
    assert_private(&expired);
    let csrf = expired.csrf_cookie();
    let rate = post(&app, &format!("{expired_path}/rate"), "rating=5", &csrf).await;
    assert_eq!(rate.status, StatusCode::GONE);
    assert_eq!(events_of(&app, &order).await, before);

    // Revoked.
    let (path, _, link_id) = issue(&app, &owner, &order, "technician").await;
    assert_eq!(open(&app, &path).await.status, StatusCode::OK);
    let revoked = app
        .request(
            Method::DELETE,
            &format!("/api/v1/work-orders/{order}/links/{link_id}"),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text);
    app.settle().await;
    let before = events_of(&app, &order).await;
    let gone = open(&app, &path).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert!(gone.text.contains("does not exist or was revoked"));
    assert!(!gone.text.contains("Backup failing"));
    let moved = post(&app, &path, "status=in_progress", &csrf).await;
    assert_eq!(moved.status, StatusCode::NOT_FOUND);
    assert_eq!(events_of(&app, &order).await, before);

    // A link of one tenant with another tenant's order id, both ways: the same 404 page as an
    // unknown token, and nothing appended on either order.
    let other = app.other_tenant("Globex", "owner@globex.test").await;
    let theirs_company = company_of(&app, &other, "Initech").await;
    let theirs = order_of(&app, &other, &theirs_company, "Globex printer").await;
    let (their_path, their_token, _) = issue(&app, &other, &theirs, "technician").await;
    let (our_path, our_token, _) = issue(&app, &owner, &order, "customer").await;
    let unknown = open(&app, &format!("/l/{order}/{}", "A".repeat(43))).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let (ours_before, theirs_before) = (
        events_of(&app, &order).await,
        events_of(&app, &theirs).await,
    );
    for path in [
        format!("/l/{theirs}/{our_token}"),
        format!("/l/{order}/{their_token}"),
    ] {
        let page = open(&app, &path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            page.text, unknown.text,
            "nothing tells which part was wrong"
        );
        for name in ["Backup failing", "Globex printer", "Acme IT", "Globex"] {
            assert!(!page.text.contains(name), "{name}");
        }
        let moved = post(&app, &path, "status=in_progress", &csrf).await;
        assert_eq!(moved.status, StatusCode::NOT_FOUND);
        let rated = post(&app, &format!("{path}/rate"), "rating=5", &csrf).await;
        assert_eq!(rated.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(events_of(&app, &order).await, ours_before);
    assert_eq!(events_of(&app, &theirs).await, theirs_before);
    // Each link still works on its own order.
    assert_eq!(open(&app, &their_path).await.status, StatusCode::OK);
    assert_eq!(open(&app, &our_path).await.status, StatusCode::OK);

    // Malformed addresses: 404 pages, never a 500.
    let ours_before = events_of(&app, &order).await;
    for bad in [
        format!("/l/{order}/{}", "a".repeat(5000)),
        format!("/l/{order}/bad%20token!"),
        format!("/l/{order}/abc%00def"),
        format!("/l/{order}/%00"),
        format!("/l/{order}/%FF%FE"),
        format!("/l/{order}/..%2F..%2Fetc"),
        format!("/l/not-a-uuid/{our_token}"),
        format!("/l/{}/{our_token}", Uuid::new_v4()),
    ] {
        let page = open(&app, &bad).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{bad}: {}", page.text);
        let posted = post(&app, &bad, "status=in_progress", &csrf).await;
        assert_eq!(posted.status, StatusCode::NOT_FOUND, "{bad}");
        let rated = post(&app, &format!("{bad}/rate"), "rating=5", &csrf).await;
        assert_eq!(rated.status, StatusCode::NOT_FOUND, "{bad}");
    }
    assert_eq!(events_of(&app, &order).await, ours_before);
}
