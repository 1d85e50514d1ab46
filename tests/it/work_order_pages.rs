//! The technicians' console for work orders through the router: raising an order with the
//! form (every bad field shown, nothing appended), the order's page (timeline with comments,
//! time entries, refused moves shown as messages), tenants and roles (404 for another
//! tenant's order, 403 for an accountant's changes), the list's filters (a bad one is a page
//! with a message, never a 500), the board, "My work", the unbilled work, the home dashboard,
//! the company's Work orders tab and the asset's Work orders section.

use axum::http::{Method, StatusCode};
use chrono::{Duration, Utc};
use commands::{ConflictPolicy, EventMeta};
use domain::identity::Role;
use domain::workorder::{WorkOrder, WorkOrderCommand};
use serde_json::{json, Value};
use st_tests::{Person, Reply, TestApp};

const CSRF: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

async fn events(app: &TestApp) -> i64 {
    app.db.count("SELECT count(*) FROM events").await
}

async fn api(app: &TestApp, method: Method, path: &str, body: Value) -> Value {
    let reply = app.request(method, path, Some(&body.to_string())).await;
    assert!(reply.status.is_success(), "{path}: {}", reply.text);
    reply.json()
}

async fn company(app: &TestApp, name: &str) -> String {
    api(
        app,
        Method::POST,
        "/api/v1/companies",
        json!({"name": name}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn page(app: &TestApp, who: &Person, path: &str) -> Reply {
    app.send_as(
        Some(who),
        Method::GET,
        path,
        None,
        &[("cookie", &format!("st_csrf={CSRF}"))],
    )
    .await
}

async fn post(app: &TestApp, who: &Person, path: &str, form: &str) -> Reply {
    app.send_body_as(
        Some(who),
        Method::POST,
        path,
        &format!("csrf={CSRF}&{form}"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &format!("st_csrf={CSRF}")),
        ],
    )
    .await
}

fn location(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    reply.headers["location"].to_str().unwrap().to_owned()
}

fn flash(reply: &Reply) -> String {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("st_flash="))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
        .unwrap_or_default()
}

/// Raises an order through the API (JSON), as the owner.
async fn raise(app: &TestApp, body: Value) -> Value {
    api(app, Method::POST, "/api/v1/work-orders", body).await
}

#[tokio::test]
async fn an_order_is_raised_with_the_form_and_worked_on_from_its_page() {
    let app = TestApp::new().await;
    let owner = app.owner.clone();
    let acme = company(&app, "Initech").await;
    let printer = api(
        &app,
        Method::POST,
        "/api/v1/assets",
        json!({"company_id": acme, "name": "Office printer", "category": "printer"}),
    )
    .await;
    let printer_id = printer["id"].as_str().unwrap().to_owned();

    // No company yet: the form asks for one first; then offers its assets.
    let form = page(&app, &owner, "/work-orders/new").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.text.contains("Continue"), "{}", form.text);
    let form = page(
        &app,
        &owner,
        &format!("/work-orders/new?company_id={acme}&asset_id={printer_id}"),
    )
    .await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.text.contains("Raise work order"));
    assert!(form.text.contains("Office printer"));
    assert!(
        form.text
            .contains(&format!("value=\"{printer_id}\" checked")),
        "the asset of the link is ticked: {}",
        form.text
    );

    // Every bad field at once, the input kept, nothing appended.
    let before = events(&app).await;
    let refused = post(
        &app,
        &owner,
        "/work-orders/new",
        &format!("company_id={acme}&title=&description=Jams+again&priority=soon&type=juggling"),
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    for message in [
        "Title must not be empty.",
        "Priority must be one of low, normal, high, urgent.",
        "Type must be one of",
    ] {
        assert!(
            refused.text.contains(message),
            "{message}: {}",
            refused.text
        );
    }
    assert!(refused.text.contains("Jams again"), "the input is kept");
    let unknown = post(
        &app,
        &owner,
        "/work-orders/new",
        "company_id=not-a-company&title=x",
    )
    .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(unknown
        .text
        .contains("Company is not one of your companies"));
    assert_eq!(events(&app).await, before, "a refused form appends nothing");

    // A good one: 303 to the order with a flash.
    let raised = post(
        &app,
        &owner,
        "/work-orders/new",
        &format!(
            "company_id={acme}&title=Printer+jams&description=Paper+tray+2&priority=urgent\
             &type=repair&asset_ids={printer_id}&assign_me=1&holds_assets=1"
        ),
    )
    .await;
    let order = location(&raised);
    assert!(order.starts_with("/work-orders/"), "{order}");
    assert_eq!(flash(&raised), "Work%20order%20%231%20raised.");
    let order_id = order.trim_start_matches("/work-orders/").to_owned();

    // Comments (public and internal), time, a timer.
    let commented = post(
        &app,
        &owner,
        &format!("{order}/comments"),
        "body=On+my+way+with+a+new+roller&public=1",
    )
    .await;
    assert_eq!(location(&commented), order);
    let internal = post(
        &app,
        &owner,
        &format!("{order}/comments"),
        "body=Customer+keeps+using+cheap+paper",
    )
    .await;
    assert_eq!(location(&internal), order);
    let empty = post(&app, &owner, &format!("{order}/comments"), "body=++").await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        empty.text.contains("Comment must not be empty"),
        "{}",
        empty.text
    );
    let bad_time = post(
        &app,
        &owner,
        &format!("{order}/time"),
        "minutes=lots&note=x",
    )
    .await;
    assert_eq!(bad_time.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad_time.text.contains("Minutes must be 1 to 1440"),
        "{}",
        bad_time.text
    );
    let logged = post(
        &app,
        &owner,
        &format!("{order}/time"),
        "minutes=45&note=Replaced+roller&billing=billable",
    )
    .await;
    assert_eq!(location(&logged), order);
    let started = post(&app, &owner, &format!("{order}/timer/start"), "").await;
    assert_eq!(location(&started), order);
    let again = post(&app, &owner, &format!("{order}/timer/start"), "").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(again.text.contains("already running"), "{}", again.text);

    let shown = page(&app, &owner, &order).await;
    assert_eq!(shown.status, StatusCode::OK);
    for text in [
        "#1",
        "Printer jams",
        "Opened: Printer jams (urgent, repair)",
        "Assigned to Olive Owner",
        "On my way with a new roller",
        "Customer keeps using cheap paper",
        "Comment (public)",
        "Comment (internal)",
        "45 min logged (billable",
        "Replaced roller",
        "Your timer is running since",
        "Office printer",
        "Timer started",
    ] {
        assert!(shown.text.contains(text), "{text}: {}", shown.text);
    }
    // Moves offered are exactly the allowed ones (assigned: in progress, waiting, resolved,
    // cancelled, no fix).
    for allowed in [
        "in_progress",
        "waiting_on_customer",
        "resolved",
        "cancelled",
        "no_fix",
    ] {
        assert!(
            shown
                .text
                .contains(&format!("name=\"status\" value=\"{allowed}\"")),
            "{allowed}"
        );
    }
    assert!(!shown.text.contains("name=\"status\" value=\"closed\""));

    // A move the lifecycle refuses: the page again with the message, not a 500.
    let before = events(&app).await;
    let refused = post(&app, &owner, &format!("{order}/status"), "status=closed").await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert!(
        refused
            .text
            .contains("cannot move to closed; it can move to"),
        "{}",
        refused.text
    );
    assert!(
        refused.text.contains("Printer jams"),
        "the order's page again"
    );
    let nonsense = post(
        &app,
        &owner,
        &format!("{order}/status"),
        "status=teleported",
    )
    .await;
    assert_eq!(nonsense.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(events(&app).await, before);
    let moved = post(
        &app,
        &owner,
        &format!("{order}/status"),
        "status=in_progress",
    )
    .await;
    assert_eq!(location(&moved), order);
    assert_eq!(flash(&moved), "Status%3A%20in%20progress.");

    // The edit form: a bad title is shown next to the field.
    let bad_edit = post(
        &app,
        &owner,
        &format!("{order}/edit"),
        "title=&description=x&type=repair&priority=urgent",
    )
    .await;
    assert_eq!(bad_edit.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad_edit.text.contains("id=\"title-error\""),
        "{}",
        bad_edit.text
    );

    // The asset's page lists the order; the company's tab too, with a prefilled button.
    let asset_page = page(&app, &owner, &format!("/assets/{printer_id}")).await;
    assert!(
        asset_page.text.contains("Printer jams"),
        "{}",
        asset_page.text
    );
    assert!(asset_page.text.contains(&format!(
        "/work-orders/new?company_id={acme}&amp;asset_id={printer_id}"
    )));
    let tab = page(&app, &owner, &format!("/companies/{acme}/work-orders")).await;
    assert_eq!(tab.status, StatusCode::OK);
    assert!(tab.text.contains("Printer jams"));
    assert!(!tab.text.contains("No work orders yet"));
    assert!(tab
        .text
        .contains(&format!("/work-orders/new?company_id={acme}")));
    let overview = page(&app, &owner, &format!("/companies/{acme}")).await;
    assert!(overview
        .text
        .contains(&format!("/companies/{acme}/coverage")));

    // Links: the technician link's address is shown once; revoking it.
    let issued = post(&app, &owner, &format!("{order}/links"), "kind=technician").await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.text);
    assert!(issued.text.contains("id=\"issued-url\""), "{}", issued.text);
    assert!(issued.text.contains(&format!("/l/{order_id}/")));
    let again = page(&app, &owner, &order).await;
    assert!(!again.text.contains("id=\"issued-url\""), "shown once");
    assert!(again.text.contains("Technician link issued"));

    // Unbilled work: the company with its 45 minutes.
    let unbilled = page(&app, &owner, "/unbilled").await;
    assert_eq!(unbilled.status, StatusCode::OK);
    assert!(unbilled.text.contains("Initech"), "{}", unbilled.text);
    let drill = page(&app, &owner, &format!("/unbilled/{acme}")).await;
    assert_eq!(drill.status, StatusCode::OK);
    assert!(drill.text.contains("#1 Printer jams"), "{}", drill.text);
    assert!(drill.text.contains("45 min"));
    assert!(drill.text.contains("USD"));

    // The home page's dashboard.
    let home = page(&app, &owner, "/").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.text);
    assert!(home.text.contains("open work orders"));
    assert!(home.text.contains("href=\"/unbilled\""));
}

#[tokio::test]
async fn tenants_and_roles_are_kept_apart() {
    let app = TestApp::new().await;
    let owner = app.owner.clone();
    let acme = company(&app, "Initech").await;
    let order = raise(&app, json!({"company_id": acme, "title": "Broken switch"})).await;
    let id = order["id"].as_str().unwrap().to_owned();
    let path = format!("/work-orders/{id}");

    // Another tenant: its owner and its technician get the 404 page, for pages and forms.
    let stranger = app.other_tenant("Globex", "owner@globex.test").await;
    let their_tech = app
        .person(&stranger, Role::Technician, "tech@globex.test", None)
        .await;
    for who in [&stranger, &their_tech] {
        let probe = page(&app, who, &path).await;
        assert_eq!(probe.status, StatusCode::NOT_FOUND, "{}", probe.text);
        assert!(!probe.text.contains("Broken switch"));
        let before = events(&app).await;
        let poke = post(
            &app,
            who,
            &format!("{path}/comments"),
            "body=hello&public=1",
        )
        .await;
        assert_eq!(poke.status, StatusCode::NOT_FOUND, "{}", poke.text);
        assert_eq!(events(&app).await, before);
        let list = page(&app, who, "/work-orders?status=all").await;
        assert_eq!(list.status, StatusCode::OK);
        assert!(!list.text.contains("Broken switch"));
    }
    let nonsense = page(&app, &owner, "/work-orders/not-an-id").await;
    assert_eq!(nonsense.status, StatusCode::NOT_FOUND);

    // An accountant sees the order but may not change it.
    let accountant = app
        .person(&owner, Role::Accountant, "books@acme.test", None)
        .await;
    let seen = page(&app, &accountant, &path).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(seen.text.contains("Broken switch"));
    assert!(!seen.text.contains("id=\"comment-body\""), "no comment box");
    let before = events(&app).await;
    for (action, form) in [
        ("comments", "body=hi"),
        ("status", "status=cancelled"),
        ("assign", "assignee_id=me"),
        ("timer/start", ""),
        ("time", "minutes=10"),
        ("edit", "title=x&type=repair&priority=low"),
        ("links", "kind=customer"),
    ] {
        let refused = post(&app, &accountant, &format!("{path}/{action}"), form).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{action}: {}",
            refused.text
        );
    }
    let refused = post(
        &app,
        &accountant,
        "/work-orders/new",
        &format!("company_id={acme}&title=x"),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(events(&app).await, before);

    // A form without the CSRF token is refused before anything else.
    let forged = app
        .send_body_as(
            Some(&owner),
            Method::POST,
            &format!("{path}/comments"),
            "body=forged",
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(events(&app).await, before);

    // A technician of the tenant takes the order.
    let tech = app
        .person(&owner, Role::Technician, "tess@acme.test", None)
        .await;
    let taken = post(&app, &tech, &format!("{path}/assign"), "assignee_id=me").await;
    assert_eq!(location(&taken), path);
    let shown = page(&app, &tech, &path).await;
    assert!(shown.text.contains("Assigned to tess"), "{}", shown.text);
}

#[tokio::test]
async fn the_list_filters_and_refuses_bad_filters_with_a_message() {
    let app = TestApp::new().await;
    let owner = app.owner.clone();
    let acme = company(&app, "Initech").await;
    let other = company(&app, "Umbrella").await;
    api(
        &app,
        Method::PUT,
        "/api/v1/settings/sla-policies",
        json!({"policies": [{"priority": "urgent", "response_minutes": 60, "resolution_minutes": 240}]}),
    )
    .await;
    // Opened a month ago, urgent and mine: long past its due times.
    let late = raise(
        &app,
        json!({"company_id": acme, "title": "Server down", "priority": "urgent",
            "assignee_id": owner.user_id,
            "opened_at": (Utc::now() - Duration::days(30)).to_rfc3339()}),
    )
    .await;
    let unassigned = raise(&app, json!({"company_id": other, "title": "New laptop"})).await;
    let done = raise(&app, json!({"company_id": acme, "title": "Reset password"})).await;
    let done_id = done["id"].as_str().unwrap();
    api(
        &app,
        Method::PATCH,
        &format!("/api/v1/work-orders/{done_id}"),
        json!({"status": "resolved"}),
    )
    .await;
    // The scheduler's check raises the breaches.
    let late_id = late["id"].as_str().unwrap();
    app.store
        .execute::<WorkOrder>(
            late_id,
            WorkOrderCommand::CheckSla {
                now: Utc::now(),
                escalate_to: None,
            },
            &(),
            &EventMeta::new(owner.tenant_id, "scheduler"),
            ConflictPolicy::Report,
        )
        .await
        .unwrap();
    app.settle().await;
    assert_eq!(unassigned["number"], 2);

    let titles = |reply: &Reply| -> Vec<&'static str> {
        ["Server down", "New laptop", "Reset password"]
            .into_iter()
            .filter(|t| reply.text.contains(t))
            .collect()
    };
    let open = page(&app, &owner, "/work-orders").await;
    assert_eq!(open.status, StatusCode::OK, "{}", open.text);
    assert_eq!(
        titles(&open),
        ["Server down", "New laptop"],
        "open by default"
    );
    let explicit = page(&app, &owner, "/work-orders?status=open").await;
    assert_eq!(titles(&explicit), ["Server down", "New laptop"]);
    let mine = page(&app, &owner, "/work-orders?technician=me").await;
    assert_eq!(titles(&mine), ["Server down"]);
    let nobody = page(&app, &owner, "/work-orders?technician=unassigned").await;
    assert_eq!(titles(&nobody), ["New laptop"]);
    let breached = page(&app, &owner, "/work-orders?sla=breached").await;
    assert_eq!(titles(&breached), ["Server down"]);
    assert!(breached.text.contains("sla-breached"), "{}", breached.text);
    let resolved = page(&app, &owner, "/work-orders?status=resolved").await;
    assert_eq!(titles(&resolved), ["Reset password"]);
    let all = page(
        &app,
        &owner,
        &format!("/work-orders?status=all&company={acme}"),
    )
    .await;
    assert_eq!(titles(&all), ["Server down", "Reset password"]);
    let urgent = page(&app, &owner, "/work-orders?priority=urgent").await;
    assert_eq!(titles(&urgent), ["Server down"]);
    let paged = page(&app, &owner, "/work-orders?status=all&before=3").await;
    assert_eq!(titles(&paged), ["Server down", "New laptop"]);

    // Bad values: the page with a message (422), never a 500.
    for (query, message) in [
        ("sla=late", "SLA must be one of"),
        ("status=lost", "Status must be one of"),
        ("priority=huge", "Priority must be one of"),
        ("technician=somebody", "Technician must be"),
        ("company=acme", "Company must be one of your companies"),
        ("before=yesterday", "The page link is not valid"),
    ] {
        let reply = page(&app, &owner, &format!("/work-orders?{query}")).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {}",
            reply.text
        );
        assert!(reply.text.contains(message), "{query}: {}", reply.text);
        assert_eq!(titles(&reply), Vec::<&str>::new());
    }
    let board_bad = page(&app, &owner, "/work-orders/board?sla=late").await;
    assert_eq!(board_bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    // The board: open columns and the resolved one; the same filters.
    let board = page(&app, &owner, "/work-orders/board").await;
    assert_eq!(board.status, StatusCode::OK, "{}", board.text);
    let resolved_column = board
        .text
        .split("id=\"column-resolved\"")
        .nth(1)
        .unwrap_or_default();
    assert!(resolved_column.contains("Reset password"), "{}", board.text);
    let assigned_column = board
        .text
        .split("id=\"column-assigned\"")
        .nth(1)
        .and_then(|rest| rest.split("id=\"column-in_progress\"").next())
        .unwrap_or_default();
    assert!(assigned_column.contains("Server down"));
    assert!(assigned_column.contains("sla-breached"));
    let filtered = page(&app, &owner, "/work-orders/board?technician=unassigned").await;
    assert_eq!(
        titles(&filtered),
        ["New laptop", "Reset password"],
        "the resolved column is filtered too"
    );

    // My work and the dashboard.
    let mine = page(&app, &owner, "/work-orders/mine").await;
    assert_eq!(titles(&mine), ["Server down"]);
    let home = page(&app, &owner, "/").await;
    let breaching = home
        .text
        .split("id=\"stat-breaching\"")
        .nth(1)
        .unwrap_or_default();
    assert!(
        breaching.contains("<span class=\"stat-value\">1</span>"),
        "{}",
        home.text
    );
    let timeline = page(&app, &owner, &format!("/work-orders/{late_id}")).await;
    assert!(
        timeline.text.contains("SLA breached: response"),
        "{}",
        timeline.text
    );
}

#[tokio::test]
async fn attachments_are_kept_and_time_entries_removed_from_the_page() {
    let app = TestApp::new().await;
    let owner = app.owner.clone();
    let acme = company(&app, "Northwind").await;
    let order = raise(&app, json!({"company_id": acme, "title": "Broken screen"})).await;
    let id = order["id"].as_str().unwrap().to_owned();
    let upload = |name: &'static str, bytes: Vec<u8>, who: Person| {
        let app = &app;
        let id = id.clone();
        async move {
            let boundary = "----st-attach";
            let mut body = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{CSRF}\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .into_bytes();
            body.extend(bytes);
            body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
            app.send_bytes_as(
                Some(&who),
                Method::POST,
                &format!("/work-orders/{id}/attachments"),
                body,
                &[
                    (
                        "content-type",
                        &format!("multipart/form-data; boundary={boundary}"),
                    ),
                    ("cookie", &format!("st_csrf={CSRF}")),
                ],
            )
            .await
        }
    };
    let png = b"\x89PNG\r\n\x1a\nrest-of-a-photo".to_vec();
    let attached = upload("C:\\photos\\screen.png", png.clone(), owner.clone()).await;
    assert_eq!(attached.status, StatusCode::SEE_OTHER, "{}", attached.text);
    let before = events(&app).await;
    let refused = upload("tool.exe", b"MZ\x90\x00".to_vec(), owner.clone()).await;
    assert_eq!(refused.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let empty = upload("nothing.txt", Vec::new(), owner.clone()).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(events(&app).await, before);
    let accountant = app
        .person(&app.owner, Role::Accountant, "books@acme.test", None)
        .await;
    let forbidden = upload("x.txt", b"hello".to_vec(), accountant.clone()).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    app.settle().await;

    let shown = page(&app, &owner, &format!("/work-orders/{id}")).await;
    assert!(shown.text.contains("screen.png"), "{}", shown.text);
    let doc_id = shown
        .text
        .split_once(&format!("/work-orders/{id}/attachments/"))
        .map(|(_, rest)| rest[..36].to_owned())
        .expect("a download link");
    let download = page(
        &app,
        &accountant,
        &format!("/work-orders/{id}/attachments/{doc_id}"),
    )
    .await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.content_type, "image/png");
    assert!(download.headers["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"screen.png\""));
    let other = app.other_tenant("Other MSP", "owner@other.test").await;
    let theirs = page(
        &app,
        &other,
        &format!("/work-orders/{id}/attachments/{doc_id}"),
    )
    .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);

    // A time entry removed from the page; a technician cannot remove the owner's.
    let entry = api(
        &app,
        Method::POST,
        &format!("/api/v1/work-orders/{id}/time-entries"),
        json!({"minutes": 25, "note": "measured the panel"}),
    )
    .await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tech = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    let shown = page(&app, &tech, &format!("/work-orders/{id}")).await;
    assert!(!shown.text.contains(&format!("/time/{entry}/remove")));
    let refused = post(
        &app,
        &tech,
        &format!("/work-orders/{id}/time/{entry}/remove"),
        "",
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    let shown = page(&app, &owner, &format!("/work-orders/{id}")).await;
    assert!(shown.text.contains(&format!("/time/{entry}/remove")));
    let removed = post(
        &app,
        &owner,
        &format!("/work-orders/{id}/time/{entry}/remove"),
        "",
    )
    .await;
    location(&removed);
    app.settle().await;
    let shown = page(&app, &owner, &format!("/work-orders/{id}")).await;
    assert!(!shown.text.contains("measured the panel"));
}
