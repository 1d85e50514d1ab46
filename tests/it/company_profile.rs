//! The company profile (issue 4): customer status, addresses, phone, website, notes, tags
//! through the API (every bad field at once, filters, keyset paging, tenants) and the console
//! (the company's tabs for each role, the Edit profile dialog, the list's filters and pages,
//! a contact's page and its Edit form).

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use domain::identity::Role;
use serde_json::{json, Value};
use st_tests::{Person, Reply, TestApp};

const CSRF: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

async fn create(app: &TestApp, body: Value) -> Value {
    let reply = app
        .request(Method::POST, "/api/v1/companies", Some(&body.to_string()))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json()
}

async fn patch(app: &TestApp, id: &str, body: Value) -> Reply {
    app.request(
        Method::PATCH,
        &format!("/api/v1/companies/{id}"),
        Some(&body.to_string()),
    )
    .await
}

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors: {problem}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

async fn company_events(app: &TestApp) -> i64 {
    app.db
        .count("SELECT count(*) FROM events WHERE aggregate_type = 'company'")
        .await
}

/// A console form sent as `who`, with the double-submit CSRF token; `htmx` as from a dialog.
async fn form(app: &TestApp, who: &Person, path: &str, body: &str, htmx: bool) -> Reply {
    let cookie = format!("st_csrf={CSRF}");
    let mut headers = vec![
        ("content-type", "application/x-www-form-urlencoded"),
        ("cookie", cookie.as_str()),
    ];
    if htmx {
        headers.push(("hx-request", "true"));
    }
    app.send_body_as(
        Some(who),
        Method::POST,
        path,
        &format!("csrf={CSRF}&{body}"),
        &headers,
    )
    .await
}

async fn page(app: &TestApp, who: &Person, path: &str) -> Reply {
    app.send_as(Some(who), Method::GET, path, None, &[]).await
}

#[tokio::test]
async fn the_api_creates_and_changes_a_company_profile() {
    let app = TestApp::new().await;
    let acme = create(
        &app,
        json!({
            "name": "Acme",
            "monthly_rate": "500",
            "customer_status": "prospect",
            "billing_address": " Acme Ltd\r\n1 Main St\r\nSpringfield ",
            "site_address": "Unit 4\nIndustrial Park",
            "phone": "+1 (555) 010-0199 x12",
            "website": "Acme.Example/contact",
            "notes": "Key at reception.",
            "tags": ["VIP", " managed  print ", "vip"],
        }),
    )
    .await;
    assert_eq!(
        acme["status"], "active",
        "status still means archived or not"
    );
    assert_eq!(acme["archived"], false);
    assert_eq!(acme["customer_status"], "prospect");
    assert_eq!(acme["billing_address"], "Acme Ltd\n1 Main St\nSpringfield");
    assert_eq!(acme["site_address"], "Unit 4\nIndustrial Park");
    assert_eq!(acme["phone"], "+1 (555) 010-0199 x12");
    assert_eq!(acme["website"], "https://acme.example/contact");
    assert_eq!(acme["notes"], "Key at reception.");
    assert_eq!(acme["tags"], json!(["managed print", "vip"]));
    assert_eq!(acme["billing_contacts"], json!([]));
    assert_eq!(acme["version"], 1, "one registration event");
    let id = acme["id"].as_str().unwrap().to_owned();

    // Absent fields stay; the status change and the profile change are one event each.
    let changed = patch(
        &app,
        &id,
        json!({"customer_status": "active", "phone": "555 0100", "tags": []}),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    let changed = changed.json();
    assert_eq!(changed["customer_status"], "active");
    assert_eq!(changed["phone"], "555 0100");
    assert_eq!(changed["tags"], json!([]));
    assert_eq!(changed["website"], "https://acme.example/contact");
    assert_eq!(changed["version"], 3);

    // The same values again change nothing and append nothing.
    let before = company_events(&app).await;
    let same = patch(
        &app,
        &id,
        json!({"customer_status": "active", "phone": " 555 0100 ", "website": "https://acme.example/contact"}),
    )
    .await;
    assert_eq!(same.status, StatusCode::OK);
    assert_eq!(same.json()["version"], 3);
    assert_eq!(company_events(&app).await, before);

    // Null leaves a field alone; an empty string clears it.
    let cleared = patch(&app, &id, json!({"website": "", "notes": null})).await;
    assert_eq!(cleared.json()["website"], "");
    assert_eq!(cleared.json()["notes"], "Key at reception.");

    // Billing contacts are the current contacts who receive the invoices.
    let contacts = format!("/api/v1/companies/{id}/contacts");
    let ann = app
        .request(
            Method::POST,
            &contacts,
            Some(r#"{"name": "Ann", "billing": true}"#),
        )
        .await
        .json();
    app.request(Method::POST, &contacts, Some(r#"{"name": "Bob"}"#))
        .await;
    let read = app
        .request(Method::GET, &format!("/api/v1/companies/{id}"), None)
        .await
        .json();
    assert_eq!(read["billing_contacts"], json!([ann["id"]]));

    // An archived company refuses profile changes until restored, then takes both at once.
    patch(&app, &id, json!({"archived": true})).await;
    let refused = patch(&app, &id, json!({"customer_status": "former"})).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    let restored = patch(
        &app,
        &id,
        json!({"archived": false, "customer_status": "former"}),
    )
    .await;
    assert_eq!(restored.json()["customer_status"], "former");
    assert_eq!(restored.json()["status"], "active");

    // The history says what happened in words.
    let history = app
        .request(Method::GET, &format!("/companies/{id}"), None)
        .await;
    assert!(history
        .text
        .contains("Registered as Acme at 500.00 a month (prospect)"));
    assert!(history
        .text
        .contains("Customer status set to active (was prospect)"));
    assert!(history.text.contains("Profile changed: phone, tags"));

    // Who may: owners and admins change the profile; technicians and accountants may not.
    let tech = app
        .person(&app.owner, Role::Technician, "t@acme.test", None)
        .await;
    let books = app
        .person(&app.owner, Role::Accountant, "b@acme.test", None)
        .await;
    for who in [&tech, &books] {
        let reply = app
            .send_as(
                Some(who),
                Method::PATCH,
                &format!("/api/v1/companies/{id}"),
                Some(r#"{"tags": ["x"]}"#),
                &[],
            )
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{:?}", who.role);
    }
    let admin = app
        .person(&app.owner, Role::Admin, "a@acme.test", None)
        .await;
    let by_admin = app
        .send_as(
            Some(&admin),
            Method::PATCH,
            &format!("/api/v1/companies/{id}"),
            Some(r#"{"tags": ["x"]}"#),
            &[],
        )
        .await;
    assert_eq!(by_admin.status, StatusCode::OK, "{}", by_admin.text);

    // The read model equals a fresh rebuild of the log.
    app.settle().await;
    let report =
        projections::rebuild::verify(&app.db.pool, &projections::companies::CompaniesProjection)
            .await
            .unwrap();
    assert!(report.matches(), "{:?}", report.differences);
}

#[tokio::test]
async fn every_bad_company_field_is_reported_at_once() {
    let app = TestApp::new().await;
    let id = create(&app, json!({"name": "Existing"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = company_events(&app).await;
    let bad = json!({
        "name": "",
        "monthly_rate": "-1",
        "customer_status": "gone",
        "billing_address": "x".repeat(501),
        "site_address": "Gate\u{7}",
        "phone": "call me",
        "website": "javascript:alert(1)",
        "notes": "n".repeat(4001),
        "tags": ["ok", "no/slash"],
    });
    let all = [
        "name",
        "monthly_rate",
        "customer_status",
        "billing_address",
        "site_address",
        "phone",
        "website",
        "notes",
        "tags",
    ];
    let created = app
        .request(Method::POST, "/api/v1/companies", Some(&bad.to_string()))
        .await;
    assert_eq!(created.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(created.content_type, "application/problem+json");
    assert_eq!(fields(&created.json()), all);
    let patched = patch(&app, &id, bad).await;
    assert_eq!(patched.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&patched.json()), all);

    // Wrong JSON types are field errors too, reported with the others.
    let types = patch(
        &app,
        &id,
        json!({"phone": 5, "tags": "vip", "customer_status": true, "website": "ftp://x.example"}),
    )
    .await;
    assert_eq!(types.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        fields(&types.json()),
        ["customer_status", "phone", "website", "tags"]
    );
    let too_many: Vec<String> = (0..21).map(|i| format!("tag {i}")).collect();
    let many = patch(&app, &id, json!({"tags": too_many})).await;
    assert!(
        many.json()["detail"]
            .as_str()
            .unwrap()
            .contains("at most 20 tags"),
        "{}",
        many.text
    );
    let unknown = patch(&app, &id, json!({"colour": "red"})).await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(company_events(&app).await, before, "nothing appended");
}

#[tokio::test]
async fn the_company_list_filters_by_customer_status_tag_and_name() {
    let app = TestApp::new().await;
    for (name, status, tags) in [
        ("Northwind", "active", vec!["vip", "print"]),
        ("Contoso", "prospect", vec!["print"]),
        ("Fabrikam", "suspended", vec!["VIP"]),
        ("Initech", "former", vec![]),
        ("Wide World", "active", vec![]),
    ] {
        create(
            &app,
            json!({"name": name, "customer_status": status, "tags": tags}),
        )
        .await;
    }
    let names = |reply: Reply| -> Vec<String> {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        reply.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let app = &app;
    let get = |query: &str| {
        let path = format!("/api/v1/companies?{query}");
        async move { app.request(Method::GET, &path, None).await }
    };
    assert_eq!(
        names(get("customer_status=active").await),
        ["Northwind", "Wide World"]
    );
    assert_eq!(names(get("tag=VIP").await), ["Fabrikam", "Northwind"]);
    assert_eq!(
        names(get("tag=vip&customer_status=suspended").await),
        ["Fabrikam"]
    );
    assert_eq!(names(get("q=WIND").await), ["Northwind"]);
    assert_eq!(names(get("q=o&tag=print").await), ["Contoso", "Northwind"]);
    assert!(names(get("tag=nobody").await).is_empty());
    let bad = get("customer_status=gone").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.content_type, "application/problem+json");
}

#[tokio::test]
async fn keyset_paging_over_the_company_list_skips_and_repeats_nothing() {
    let app = TestApp::new().await;
    // Same names on purpose: the id breaks the tie, so no row is skipped or repeated.
    let mut ids = BTreeSet::new();
    for i in 0..23 {
        let name = if i % 4 == 0 {
            "Same Name".to_owned()
        } else {
            format!("Company {:02}", 23 - i)
        };
        ids.insert(
            create(&app, json!({"name": name})).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let all = app
        .request(Method::GET, "/api/v1/companies?limit=500", None)
        .await
        .json();
    assert!(all["next"].is_null(), "one page holds them all");
    let everything: Vec<String> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(everything.len(), 23);

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &after {
            None => "/api/v1/companies?limit=5".to_owned(),
            Some(cursor) => format!("/api/v1/companies?limit=5&after={cursor}"),
        };
        let page = app.request(Method::GET, &path, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let page = page.json();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 5);
        seen.extend(items.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
        pages += 1;
        if pages == 2 {
            // A company renamed behind the cursor and one added ahead of it: the cursor keeps
            // its place (it is not the id of a row whose name moved).
            let first = seen[0].clone();
            patch(&app, &first, json!({"name": "Zz Last"})).await;
        }
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(
                    page["next_after"],
                    *items.last().unwrap().get("id").unwrap()
                );
                after = Some(next.to_owned());
            }
            None => {
                assert!(page.get("next_after").is_none());
                break;
            }
        }
    }
    assert_eq!(
        pages, 5,
        "23 companies in pages of 5, the last one not empty"
    );
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    // The renamed company moved to the end, so it shows up again at its new place; nothing
    // else repeats and nothing is missed.
    assert_eq!(seen.len(), 24, "{seen:?}");
    assert_eq!(unique, ids);
    assert_eq!(
        seen[..23],
        everything[..],
        "the order of the unchanged list"
    );

    // The older form of the cursor (the last id, as in `next_after`) still works.
    let first = app
        .request(Method::GET, "/api/v1/companies?limit=3", None)
        .await
        .json();
    let by_id = app
        .request(
            Method::GET,
            &format!(
                "/api/v1/companies?limit=3&after={}",
                first["next_after"].as_str().unwrap()
            ),
            None,
        )
        .await
        .json();
    let by_cursor = app
        .request(
            Method::GET,
            &format!(
                "/api/v1/companies?limit=3&after={}",
                first["next"].as_str().unwrap()
            ),
            None,
        )
        .await
        .json();
    assert_eq!(by_id["items"], by_cursor["items"]);
    for bad in ["zz", "0123456789abcdef0123456789abcdefzz", "%00"] {
        let reply = app
            .request(Method::GET, &format!("/api/v1/companies?after={bad}"), None)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.text
        );
    }
}

#[tokio::test]
async fn another_tenant_gets_404_for_every_company_page_and_endpoint() {
    let app = TestApp::new().await;
    let id = create(&app, json!({"name": "Acme", "tags": ["secret"]})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let contact = app
        .request(
            Method::POST,
            &format!("/api/v1/companies/{id}/contacts"),
            Some(r#"{"name": "Ann"}"#),
        )
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = app.other_tenant("Globex IT", "owner@globex.test").await;
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/companies/{id}"), None),
        (
            Method::PATCH,
            format!("/api/v1/companies/{id}"),
            Some(r#"{"customer_status": "former"}"#),
        ),
    ] {
        let reply = app
            .send_as(Some(&other), method.clone(), &path, body, &[])
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let listed = app
        .send_as(
            Some(&other),
            Method::GET,
            "/api/v1/companies?tag=secret&status=all",
            None,
            &[],
        )
        .await
        .json();
    assert_eq!(listed["items"], json!([]));
    for path in [
        format!("/companies/{id}"),
        format!("/companies/{id}/contacts"),
        format!("/companies/{id}/work-orders"),
        format!("/companies/{id}/billing"),
        format!("/companies/{id}/profile"),
        format!("/contacts/{contact}"),
        format!("/contacts/{contact}/edit"),
    ] {
        let reply = page(&app, &other, &path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert!(reply.text.contains("Page not found"));
    }
    for path in [
        format!("/companies/{id}/profile"),
        format!("/contacts/{contact}/edit"),
    ] {
        let reply = form(
            &app,
            &other,
            &path,
            "customer_status=former&name=Spy",
            false,
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    let list = page(&app, &other, "/companies?tag=secret").await;
    assert!(!list.text.contains("Acme") && !list.text.contains(">secret</a>"));
}

#[tokio::test]
async fn the_company_tabs_render_for_each_role_that_may_see_them() {
    let app = TestApp::new().await;
    let id = create(
        &app,
        json!({"name": "Acme & Co", "customer_status": "suspended", "website": "acme.example",
               "billing_address": "1 Main St\nSpringfield", "tags": ["vip"], "phone": "555 0100",
               "notes": "Closed on Fridays"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let contacts = format!("/api/v1/companies/{id}/contacts");
    app.request(
        Method::POST,
        &contacts,
        Some(r#"{"name": "Bea Billing", "billing": true}"#),
    )
    .await;
    app.request(
        Method::POST,
        &contacts,
        Some(r#"{"name": "Pat Primary", "primary": true}"#),
    )
    .await;
    let mut people = vec![app.owner.clone()];
    for (role, email) in [
        (Role::Admin, "a@acme.test"),
        (Role::Technician, "t@acme.test"),
        (Role::Accountant, "b@acme.test"),
    ] {
        people.push(app.person(&app.owner, role, email, None).await);
    }
    let tabs = [
        ("", "Overview"),
        ("/contacts", "Contacts"),
        ("/assets", "Assets"),
        ("/credentials", "Credentials"),
        ("/work-orders", "Work orders"),
        ("/billing", "Billing"),
    ];
    for who in &people {
        // Accountants never see the vault, technicians never see billing, not even the tabs.
        let hidden = |tab: &str| {
            (tab == "/credentials" && who.role == Role::Accountant)
                || (tab == "/billing" && who.role == Role::Technician)
        };
        for (suffix, label) in tabs {
            let path = format!("/companies/{id}{suffix}");
            if hidden(suffix) {
                assert_eq!(page(&app, who, &path).await.status, StatusCode::FORBIDDEN);
                continue;
            }
            let reply = page(&app, who, &path).await;
            assert_eq!(reply.status, StatusCode::OK, "{:?} {path}", who.role);
            assert!(reply.text.contains("Acme &#38; Co"), "{path}");
            assert!(
                reply.text.contains(&format!(
                    "<a href=\"{path}\" aria-current=\"page\">{label}</a>"
                )),
                "{:?} {path}: the active tab\n{}",
                who.role,
                reply.text
            );
            for (other, other_label) in tabs {
                if hidden(other) {
                    assert!(!reply
                        .text
                        .contains(&format!("href=\"/companies/{id}{other}\"")));
                    continue;
                }
                assert!(
                    reply.text.contains(&format!(
                        "href=\"/companies/{id}{other}\"{}>{other_label}</a>",
                        if other == suffix {
                            " aria-current=\"page\""
                        } else {
                            ""
                        }
                    )),
                    "{path}: tab {other_label}"
                );
            }
            assert!(reply
                .text
                .contains("<span class=\"tag suspended\">Suspended</span>"));
        }
        let overview = page(&app, who, &format!("/companies/{id}")).await;
        for shown in [
            "href=\"https://acme.example\"",
            "1 Main St\nSpringfield",
            "Closed on Fridays",
            "href=\"tel:555 0100\"",
            ">vip</a>",
            "Bea Billing",
            "Pat Primary",
        ] {
            assert!(overview.text.contains(shown), "{:?}: {shown}", who.role);
        }
        let may_edit = matches!(who.role, Role::Owner | Role::Admin);
        assert_eq!(
            overview.text.contains("Edit profile"),
            may_edit,
            "{:?}",
            who.role
        );
        let work = page(&app, who, &format!("/companies/{id}/work-orders")).await;
        assert!(work
            .text
            .contains("<p class=\"empty\">No work orders yet.</p>"));
        assert!(!work.text.to_lowercase().contains("issue"));
        if !hidden("/billing") {
            let billing = page(&app, who, &format!("/companies/{id}/billing")).await;
            assert!(
                billing.text.contains("No invoices yet."),
                "{}",
                billing.text
            );
        }
        let contacts = page(&app, who, &format!("/companies/{id}/contacts")).await;
        assert!(contacts.text.contains("Bea Billing"));
        assert_eq!(
            contacts.text.contains("Add contact"),
            who.role != Role::Accountant,
            "{:?}",
            who.role
        );
    }
    // The overview's billing contact list leaves out people who left.
    let bea = app.request(Method::GET, &contacts, None).await.json()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.request(
        Method::PATCH,
        &format!("/api/v1/contacts/{bea}"),
        Some(r#"{"status": "former"}"#),
    )
    .await;
    let overview = app
        .request(Method::GET, &format!("/companies/{id}"), None)
        .await;
    assert!(!overview.text.contains("Bea Billing"));
    // A portal person sees none of it.
    let client = app
        .person(
            &app.owner,
            Role::Client,
            "c@customer.test",
            Some(id.parse().unwrap()),
        )
        .await;
    for suffix in ["", "/contacts", "/work-orders", "/billing", "/profile"] {
        let reply = page(&app, &client, &format!("/companies/{id}{suffix}")).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{suffix}");
    }
}

#[tokio::test]
async fn the_company_profile_form_shows_errors_in_place_and_saves() {
    let app = TestApp::new().await;
    let id = create(&app, json!({"name": "Acme"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let owner = app.owner.clone();
    let path = format!("/companies/{id}/profile");
    let overview = page(&app, &owner, &format!("/companies/{id}")).await;
    assert!(overview
        .text
        .contains(&format!("hx-get=\"{path}\" hx-target=\"#modal-body\"")));

    // The dialog's fragment, and a page of its own without JavaScript.
    let fragment = app
        .send(Method::GET, &path, None, &[("hx-request", "true")])
        .await;
    assert_eq!(fragment.status, StatusCode::OK);
    assert!(!fragment.text.contains("<html"));
    assert!(fragment.text.contains(&format!("hx-post=\"{path}\"")));
    assert!(fragment.text.contains("<option value=\"active\" selected>"));
    let full = page(&app, &owner, &path).await;
    assert!(full.text.contains("<html") && full.text.contains("Profile of Acme"));

    // Bad fields: the form again, every message next to its field, the input kept.
    let bad = "customer_status=gone&billing_address=ok&site_address=&phone=call+me\
               &website=ftp%3A%2F%2Fx.example&tags=vip%2C+no%2Fslash&notes=Keep+me";
    for htmx in [true, false] {
        let reply = form(&app, &owner, &path, bad, htmx).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reply.text.contains("<html"), !htmx, "htmx: {htmx}");
        for message in [
            "Customer status must be one of prospect, active, suspended, former.",
            "Phone must be a phone number",
            "Website must be an http:// or https:// address.",
            "Tags must each be 1 to 40 letters",
        ] {
            assert!(reply.text.contains(message), "{message}\n{}", reply.text);
        }
        for kept in [
            "value=\"call me\"",
            "value=\"ftp://x.example\"",
            "value=\"vip, no/slash\"",
            ">Keep me</textarea>",
        ] {
            assert!(reply.text.contains(kept), "{kept}");
        }
        assert!(reply
            .text
            .contains("aria-describedby=\"profile-phone-error\""));
        assert!(!reply.text.contains("profile-notes-error"));
    }
    assert_eq!(company_events(&app).await, 1);

    // No CSRF token, or a role that may not: refused, nothing appended.
    let no_token = app
        .send_body(
            Method::POST,
            &path,
            "customer_status=former",
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    let tech = app
        .person(&app.owner, Role::Technician, "t@acme.test", None)
        .await;
    assert_eq!(page(&app, &tech, &path).await.status, StatusCode::FORBIDDEN);
    let by_tech = form(&app, &tech, &path, "customer_status=former", false).await;
    assert_eq!(by_tech.status, StatusCode::FORBIDDEN);
    assert_eq!(company_events(&app).await, 1);

    // Saved from the dialog: HX-Redirect to the overview, which shows it.
    let good = "customer_status=prospect&billing_address=Acme+Ltd%0D%0A1+Main+St\
                &site_address=Unit+4&phone=555+0100&website=acme.example\
                &tags=VIP%2C+managed+print%2C+&notes=Ring+twice";
    let saved = form(&app, &owner, &path, good, true).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    assert_eq!(saved.headers["hx-redirect"], format!("/companies/{id}"));
    let shown = page(&app, &owner, &format!("/companies/{id}")).await;
    for text in [
        "<span class=\"tag prospect\">Prospect</span>",
        "Acme Ltd\n1 Main St",
        "Unit 4",
        "href=\"https://acme.example\"",
        ">managed print</a>",
        ">vip</a>",
        "Ring twice",
    ] {
        assert!(shown.text.contains(text), "{text}");
    }
    // Saved again unchanged (without JavaScript): a redirect, nothing appended.
    let events = company_events(&app).await;
    let again = form(&app, &owner, &path, good, false).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(again.headers["location"], format!("/companies/{id}"));
    assert_eq!(company_events(&app).await, events);
    let json = app
        .request(Method::GET, &format!("/api/v1/companies/{id}"), None)
        .await
        .json();
    assert_eq!(json["customer_status"], "prospect");
    assert_eq!(json["billing_address"], "Acme Ltd\n1 Main St");
    assert_eq!(json["tags"], json!(["managed print", "vip"]));
}

#[tokio::test]
async fn the_console_company_list_filters_and_pages() {
    let app = TestApp::new().await;
    for i in 0..53 {
        let status = if i % 10 == 0 { "prospect" } else { "active" };
        let tags: Vec<&str> = if i % 5 == 0 { vec!["vip"] } else { vec![] };
        create(
            &app,
            json!({"name": format!("Company {i:02}"), "customer_status": status, "tags": tags}),
        )
        .await;
    }
    let owner = app.owner.clone();
    let first = page(&app, &owner, "/companies").await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.text.contains("Company 00") && first.text.contains("Company 49"));
    assert!(!first.text.contains("Company 50"));
    assert!(first
        .text
        .contains("<span class=\"tag prospect\">Prospect</span>"));
    assert!(
        first.text.contains("<option value=\"vip\">"),
        "the tags in use"
    );
    let next = first
        .text
        .split("rel=\"next\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a Next page link")
        .replace("&#38;", "&");
    let second = page(&app, &owner, &next).await;
    assert_eq!(second.status, StatusCode::OK, "{next}");
    assert!(second.text.contains("Company 50") && second.text.contains("Company 52"));
    assert!(!second.text.contains("Company 49"));
    assert!(!second.text.contains("rel=\"next\""));
    assert!(second.text.contains("First page"));

    let prospects = page(&app, &owner, "/companies?customer_status=prospect").await;
    let shown = prospects.text.matches("<tr>").count() - 1;
    assert_eq!(shown, 6, "companies 00, 10, …, 50");
    assert!(prospects
        .text
        .contains("<option value=\"prospect\" selected>"));
    let vip = page(&app, &owner, "/companies?tag=VIP").await;
    assert!(vip.text.contains("Company 05") && vip.text.contains("Company 50"));
    assert!(!vip.text.contains("Company 11") && !vip.text.contains("Company 52"));
    assert!(
        vip.text.contains("value=\"vip\""),
        "the filter shows the tag"
    );
    let none = page(&app, &owner, "/companies?tag=nobody").await;
    assert!(none.text.contains("No company matches these filters."));
}

#[tokio::test]
async fn a_company_contact_has_a_page_and_an_edit_form() {
    let app = TestApp::new().await;
    let company = create(&app, json!({"name": "Acme"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ann = app
        .request(
            Method::POST,
            &format!("/api/v1/companies/{company}/contacts"),
            Some(
                r#"{"name": "Ann Example", "email": "ann@example.com", "office_phone": "555 0100",
                    "department": "Finance", "position": "Controller", "notes": "Mornings only"}"#,
            ),
        )
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let owner = app.owner.clone();
    let path = format!("/contacts/{ann}");
    let shown = page(&app, &owner, &path).await;
    assert_eq!(shown.status, StatusCode::OK);
    for text in [
        "Ann Example",
        "mailto:ann@example.com",
        "tel:555 0100",
        "Finance",
        "Controller",
        "Mornings only",
        &format!("href=\"/companies/{company}\">Acme</a>"),
        "<section id=\"assigned-assets\"",
        &format!("hx-get=\"{path}/edit\""),
        "Left the company",
        "Ann Example added",
    ] {
        assert!(shown.text.contains(text), "{text}");
    }
    let contacts_tab = page(&app, &owner, &format!("/companies/{company}/contacts")).await;
    assert!(contacts_tab.text.contains(&format!("href=\"{path}\"")));

    // The Edit form: filled in, in the dialog or as a page.
    let fragment = app
        .send(
            Method::GET,
            &format!("{path}/edit"),
            None,
            &[("hx-request", "true")],
        )
        .await;
    assert_eq!(fragment.status, StatusCode::OK);
    assert!(!fragment.text.contains("<html"));
    assert!(fragment.text.contains("Edit Ann Example"));
    assert!(fragment.text.contains("value=\"Controller\""));
    let full = page(&app, &owner, &format!("{path}/edit")).await;
    assert!(
        full.text.contains("<html")
            && full
                .text
                .contains(&format!("href=\"{path}\">Ann Example</a>"))
    );

    // Bad input: the form again with the messages in place and the input kept.
    let bad = form(
        &app,
        &owner,
        &format!("{path}/edit"),
        "name=&email=nope&office_phone=call+me&position=CFO",
        true,
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!bad.text.contains("<html"));
    for text in [
        "Name must not be empty",
        "Office phone must be a phone number",
        "value=\"nope\"",
        "value=\"CFO\"",
    ] {
        assert!(bad.text.contains(text), "{text}\n{}", bad.text);
    }
    let saved = form(
        &app,
        &owner,
        &format!("{path}/edit"),
        "name=Ann+Example&email=ann%40example.com&office_phone=555+0100&position=CFO\
         &department=Finance&notes=Mornings+only&billing=on",
        true,
    )
    .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    assert_eq!(saved.headers["hx-redirect"], path);
    let json = app
        .request(Method::GET, &format!("/api/v1/contacts/{ann}"), None)
        .await
        .json();
    assert_eq!(json["position"], "CFO");
    assert_eq!(json["billing"], true);
    assert_eq!(json["version"], 2);
    let overview = page(&app, &owner, &format!("/companies/{company}")).await;
    assert!(overview.text.contains("id=\"billing-contacts\""));

    // Left the company, from the contact's page: back to it; no Edit until current again.
    let left = form(
        &app,
        &owner,
        &format!("{path}/former"),
        "from=contact",
        false,
    )
    .await;
    assert_eq!(left.status, StatusCode::SEE_OTHER);
    assert_eq!(left.headers["location"], path);
    let former = page(&app, &owner, &path).await;
    assert!(former.text.contains("Mark current") && !former.text.contains("id=\"edit-contact\""));
    let refused = form(
        &app,
        &owner,
        &format!("{path}/edit"),
        "name=Ann+Again",
        false,
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.text.contains("left the company"));

    // An accountant sees the page but cannot edit.
    let books = app
        .person(&app.owner, Role::Accountant, "b@acme.test", None)
        .await;
    let seen = page(&app, &books, &path).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(!seen.text.contains("/edit") && !seen.text.contains("Mark current"));
    assert_eq!(
        page(&app, &books, &format!("{path}/edit")).await.status,
        StatusCode::FORBIDDEN
    );
    let by_books = form(&app, &books, &format!("{path}/edit"), "name=X", false).await;
    assert_eq!(by_books.status, StatusCode::FORBIDDEN);
}

/// A deployment upgraded from the projection's version 1: its rows lack the profile until the
/// rebuild that the version change triggers (the runner calls the same rebuild), which goes
/// through the shadow tables and their indexes (the tag index needs btree_gin) and swaps them in.
#[tokio::test]
async fn the_company_projection_rebuilds_the_profile_after_an_upgrade() {
    let app = TestApp::new().await;
    let id = create(
        &app,
        json!({"name": "Acme", "customer_status": "suspended", "tags": ["vip"], "phone": "555 0100"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    patch(&app, &id, json!({"notes": "Ring twice"})).await;
    app.settle().await;
    sqlx::query(
        "UPDATE companies SET customer_status = 'active', tags = '{}', phone = '', notes = ''",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE projection_checkpoints SET version = 1 WHERE name = 'companies'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    projections::rebuild::rebuild(
        &app.db.pool,
        &projections::companies::CompaniesProjection,
        &projections::rebuild::RebuildOptions::default(),
        |_, _| {},
    )
    .await
    .unwrap();
    let version: i32 =
        sqlx::query_scalar("SELECT version FROM projection_checkpoints WHERE name = 'companies'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(version, 2);
    let json = app
        .request(Method::GET, &format!("/api/v1/companies/{id}"), None)
        .await
        .json();
    assert_eq!(json["customer_status"], "suspended");
    assert_eq!(json["tags"], json!(["vip"]));
    assert_eq!(json["phone"], "555 0100");
    assert_eq!(json["notes"], "Ring twice");
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'companies' ORDER BY 1",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert!(
        indexes.iter().any(|i| i == "companies_by_tag"),
        "{indexes:?}"
    );
    let listed = app
        .request(Method::GET, "/api/v1/companies?tag=vip", None)
        .await
        .json();
    assert_eq!(listed["items"][0]["id"], id.as_str());
}
