//! Contacts through the API: added to a company, listed, changed, marked former; every bad
//! field reported at once; roles and tenants enforced.

use axum::http::{Method, StatusCode};
use domain::identity::Role;
use serde_json::json;
use st_tests::TestApp;

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
async fn contacts_are_added_listed_changed_and_marked_former() {
    let app = TestApp::new().await;
    let acme = company(&app, "Acme").await;
    let path = format!("/api/v1/companies/{acme}/contacts");
    let body = json!({"name": " Ann Example ", "email": "Ann@Example.com",
        "office_phone": "+1 555 0100 x12", "cell_phone": "555-0199",
        "department": "Finance", "position": "Controller", "billing": true});
    let added = app
        .request(Method::POST, &path, Some(&body.to_string()))
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    let ann = added.json();
    assert_eq!(ann["name"], "Ann Example");
    assert_eq!(ann["email"], "ann@example.com");
    assert_eq!(ann["billing"], true);
    assert_eq!(ann["primary"], false);
    assert_eq!(ann["status"], "current");
    assert_eq!(ann["company_id"], acme.as_str());
    let id = ann["id"].as_str().unwrap().to_owned();
    app.request(Method::POST, &path, Some(r#"{"name": "Bob"}"#))
        .await;

    let list = app.request(Method::GET, &path, None).await.json();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Ann Example", "Bob"]);

    let changed = app
        .request(
            Method::PATCH,
            &format!("/api/v1/contacts/{id}"),
            Some(r#"{"position": "CFO", "primary": true}"#),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(changed.json()["position"], "CFO");
    assert_eq!(
        changed.json()["department"],
        "Finance",
        "absent fields stay"
    );
    let left = app
        .request(
            Method::PATCH,
            &format!("/api/v1/contacts/{id}"),
            Some(r#"{"status": "former"}"#),
        )
        .await;
    assert_eq!(left.json()["status"], "former");
    let refused = app
        .request(
            Method::PATCH,
            &format!("/api/v1/contacts/{id}"),
            Some(r#"{"position": "CEO"}"#),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert!(refused.json()["detail"]
        .as_str()
        .unwrap()
        .contains("left the company"));
    let back = app
        .request(
            Method::PATCH,
            &format!("/api/v1/contacts/{id}"),
            Some(r#"{"status": "current", "position": "CEO"}"#),
        )
        .await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.text);
    assert_eq!(back.json()["position"], "CEO");
    assert_eq!(back.json()["status"], "current");
    let one = app
        .request(Method::GET, &format!("/api/v1/contacts/{id}"), None)
        .await;
    assert_eq!(one.json()["version"], 5);
}

#[tokio::test]
async fn bad_contacts_are_refused_with_every_field_and_nothing_appended() {
    let app = TestApp::new().await;
    let acme = company(&app, "Acme").await;
    let path = format!("/api/v1/companies/{acme}/contacts");
    let before = app.db.count("SELECT count(*) FROM events").await;
    let bad = app
        .request(
            Method::POST,
            &path,
            Some(r#"{"name": "", "email": "nope", "office_phone": "call me"}"#),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<String> = bad.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["name", "email", "office_phone"]);
    for body in [r#"{"name": "A", "colour": "red"}"#, r#"{"name": 5}"#, "[]"] {
        let reply = app.request(Method::POST, &path, Some(body)).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let missing = app
        .request(
            Method::POST,
            "/api/v1/companies/00000000-0000-0000-0000-000000000001/contacts",
            Some(r#"{"name": "A"}"#),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    app.request(
        Method::PATCH,
        &format!("/api/v1/companies/{acme}"),
        Some(r#"{"archived": true}"#),
    )
    .await;
    let before_archived = app.db.count("SELECT count(*) FROM events").await;
    let archived = app
        .request(Method::POST, &path, Some(r#"{"name": "A"}"#))
        .await;
    assert_eq!(archived.status, StatusCode::CONFLICT);
    assert_eq!(
        app.db.count("SELECT count(*) FROM events").await,
        before_archived
    );
    assert_eq!(before + 1, before_archived, "only the archive was appended");
}

#[tokio::test]
async fn roles_and_tenants_are_enforced_on_contacts() {
    let app = TestApp::new().await;
    let acme = company(&app, "Acme").await;
    let path = format!("/api/v1/companies/{acme}/contacts");
    let ann = app
        .request(Method::POST, &path, Some(r#"{"name": "Ann"}"#))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tech = app
        .person(&app.owner, Role::Technician, "t@acme.test", None)
        .await;
    let books = app
        .person(&app.owner, Role::Accountant, "b@acme.test", None)
        .await;
    let by_tech = app
        .send_as(
            Some(&tech),
            Method::POST,
            &path,
            Some(r#"{"name": "Tom"}"#),
            &[],
        )
        .await;
    assert_eq!(
        by_tech.status,
        StatusCode::CREATED,
        "technicians keep contacts up to date"
    );
    let by_books = app
        .send_as(
            Some(&books),
            Method::POST,
            &path,
            Some(r#"{"name": "Bea"}"#),
            &[],
        )
        .await;
    assert_eq!(by_books.status, StatusCode::FORBIDDEN);
    let seen = app
        .send_as(Some(&books), Method::GET, &path, None, &[])
        .await;
    assert_eq!(seen.status, StatusCode::OK);

    let other = app.other_tenant("Globex IT", "owner@globex.test").await;
    for (method, uri, body) in [
        (Method::GET, path.clone(), None),
        (Method::POST, path.clone(), Some(r#"{"name": "Spy"}"#)),
        (Method::GET, format!("/api/v1/contacts/{ann}"), None),
        (
            Method::PATCH,
            format!("/api/v1/contacts/{ann}"),
            Some(r#"{"name": "Spy"}"#),
        ),
    ] {
        let reply = app
            .send_as(Some(&other), method.clone(), &uri, body, &[])
            .await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{method} {uri}: {}",
            reply.text
        );
    }
    let again = app
        .request(Method::GET, &format!("/api/v1/contacts/{ann}"), None)
        .await;
    assert_eq!(again.json()["name"], "Ann", "nothing changed");
}

const CSRF: &str = "fedcba9876543210fedcba9876543210fedcba9876543210";

async fn form(
    app: &TestApp,
    who: &st_tests::Person,
    path: &str,
    body: &str,
    htmx: bool,
) -> st_tests::Reply {
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

#[tokio::test]
async fn the_company_page_lists_adds_and_retires_contacts() {
    let app = TestApp::new().await;
    let acme = company(&app, "Acme").await;
    let page = format!("/companies/{acme}/contacts");
    let empty = app.request(Method::GET, &page, None).await;
    assert!(empty.text.contains("No contacts yet"));
    assert!(empty
        .text
        .contains(&format!("hx-get=\"/companies/{acme}/contacts/new\"")));
    let fragment = app
        .send(
            Method::GET,
            &format!("/companies/{acme}/contacts/new"),
            None,
            &[("hx-request", "true")],
        )
        .await;
    assert_eq!(fragment.status, StatusCode::OK);
    assert!(!fragment.text.contains("<html") && fragment.text.contains("Add a contact to Acme"));

    let owner = app.owner.clone();
    let bad = form(
        &app,
        &owner,
        &format!("/companies/{acme}/contacts"),
        "name=&email=nope&office_phone=555+0100",
        true,
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains("Name must not be empty"), "{}", bad.text);
    assert!(bad.text.contains("value=\"nope\"") && bad.text.contains("value=\"555 0100\""));
    let added = form(
        &app,
        &owner,
        &format!("/companies/{acme}/contacts"),
        "name=Ann+Example&email=ann%40example.com&position=Controller&billing=on",
        true,
    )
    .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    assert_eq!(
        added.headers["hx-redirect"],
        format!("/companies/{acme}/contacts")
    );
    let shown = app.request(Method::GET, &page, None).await;
    assert!(shown.text.contains("Ann Example") && shown.text.contains("Billing"));
    assert!(shown.text.contains("mailto:ann@example.com"));

    let id = app
        .request(
            Method::GET,
            &format!("/api/v1/companies/{acme}/contacts"),
            None,
        )
        .await
        .json()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let left = form(&app, &owner, &format!("/contacts/{id}/former"), "", false).await;
    assert_eq!(left.status, StatusCode::SEE_OTHER);
    assert!(app
        .request(Method::GET, &page, None)
        .await
        .text
        .contains("Former"));
    let again = form(&app, &owner, &format!("/contacts/{id}/former"), "", false).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.text.contains("already left"));

    // Roles and tenants.
    let books = app
        .person(&app.owner, Role::Accountant, "b@acme.test", None)
        .await;
    let refused = form(
        &app,
        &books,
        &format!("/companies/{acme}/contacts"),
        "name=X",
        false,
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let books_page = app
        .send_as(Some(&books), Method::GET, &page, None, &[])
        .await;
    assert!(
        !books_page.text.contains("Add contact") && !books_page.text.contains("Left the company")
    );
    let other = app.other_tenant("Globex IT", "owner@globex.test").await;
    for path in [
        format!("/companies/{acme}/contacts"),
        format!("/contacts/{id}/current"),
    ] {
        let reply = form(&app, &other, &path, "name=Spy", false).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
}
