//! The console's forms through the router: CSRF, errors shown next to their fields with the
//! input kept, redirects with flash messages, 404s.

use axum::http::{Method, StatusCode};
use st_tests::{Reply, TestApp};

async fn post_form(app: &TestApp, path: &str, token: &str, form: &str) -> Reply {
    app.send_body(
        Method::POST,
        path,
        form,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &format!("st_csrf={token}")),
        ],
    )
    .await
}

#[tokio::test]
async fn a_company_is_added_renamed_rated_archived_and_restored_from_the_console() {
    let app = TestApp::new().await;
    let page = app.request(Method::GET, "/companies", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("No companies yet"));
    let token = page.csrf_cookie();
    assert!(page
        .text
        .contains(&format!("name=\"csrf\" value=\"{token}\"")));

    let added = post_form(
        &app,
        "/companies",
        &token,
        &format!("csrf={token}&name=Acme+%26+Sons&monthly_rate=99.5"),
    )
    .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.text);
    let location = added.headers["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/companies/"));
    let flash = added
        .headers
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().starts_with("st_flash=Added"));
    assert!(flash, "a flash message follows the redirect");

    let detail = app
        .send(
            Method::GET,
            &location,
            None,
            &[(
                "cookie",
                &format!("st_csrf={token}; st_flash=Added%20Acme."),
            )],
        )
        .await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(
        detail.text.contains("Acme &#38; Sons"),
        "names are HTML-escaped: {}",
        detail.text
    );
    assert!(detail.text.contains("99.50"));
    assert!(
        detail.text.contains("Added Acme."),
        "the flash message is shown once"
    );

    let renamed = post_form(
        &app,
        &format!("{location}/rename"),
        &token,
        &format!("csrf={token}&name=Acme+Ltd"),
    )
    .await;
    assert_eq!(renamed.status, StatusCode::SEE_OTHER);
    let rated = post_form(
        &app,
        &format!("{location}/rate"),
        &token,
        &format!("csrf={token}&monthly_rate=120"),
    )
    .await;
    assert_eq!(rated.status, StatusCode::SEE_OTHER);
    let archived = post_form(
        &app,
        &format!("{location}/archive"),
        &token,
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(archived.status, StatusCode::SEE_OTHER);
    let detail = app.request(Method::GET, &location, None).await;
    assert!(
        detail.text.contains("Acme Ltd")
            && detail.text.contains("120.00")
            && detail.text.contains("Restore")
    );
    assert!(
        detail
            .text
            .contains("Renamed to Acme Ltd (was Acme &#38; Sons)"),
        "{}",
        detail.text
    );

    // Archived: changes are refused with a page that says why.
    let refused = post_form(
        &app,
        &format!("{location}/rename"),
        &token,
        &format!("csrf={token}&name=Other"),
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.text.contains("archived"), "{}", refused.text);
    let restored = post_form(
        &app,
        &format!("{location}/restore"),
        &token,
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(restored.status, StatusCode::SEE_OTHER);

    let list = app.request(Method::GET, "/companies?q=acme", None).await;
    assert!(list.text.contains("Acme Ltd"));
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM events WHERE aggregate_type = 'company'")
            .await,
        5
    );
}

#[tokio::test]
async fn a_form_with_bad_input_is_shown_again_with_messages_and_input() {
    let app = TestApp::new().await;
    let token = app
        .request(Method::GET, "/companies", None)
        .await
        .csrf_cookie();
    let reply = post_form(
        &app,
        "/companies",
        &token,
        &format!("csrf={token}&name=+++&monthly_rate=12.345"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.text.contains("Name must not be empty"));
    assert!(reply
        .text
        .contains("Monthly rate must have at most 2 decimal places"));
    assert!(reply.text.contains("value=\"12.345\""), "the input is kept");
    assert!(reply.text.contains("aria-invalid=\"true\""));
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM events WHERE aggregate_type = 'company'")
            .await,
        0
    );
}

#[tokio::test]
async fn a_form_without_the_csrf_token_is_refused() {
    let app = TestApp::new().await;
    let token = app
        .request(Method::GET, "/companies", None)
        .await
        .csrf_cookie();
    let missing = app
        .send_body(
            Method::POST,
            "/companies",
            "name=Evil",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", &format!("st_csrf={token}")),
            ],
        )
        .await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let no_cookie = app
        .send_body(
            Method::POST,
            "/companies",
            &format!("csrf={token}&name=Evil"),
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert_eq!(no_cookie.status, StatusCode::FORBIDDEN);
    assert!(no_cookie.text.contains("Reload the page"));
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM events WHERE aggregate_type = 'company'")
            .await,
        0
    );
}

#[tokio::test]
async fn unknown_pages_and_companies_are_404_pages() {
    let app = TestApp::new().await;
    for path in [
        "/companies/not-a-uuid",
        "/companies/00000000-0000-0000-0000-000000000000",
        "/nowhere",
    ] {
        let reply = app.request(Method::GET, path, None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert!(reply.content_type.starts_with("text/html"), "{path}");
        assert!(reply.text.contains("Page not found"));
    }
}

#[tokio::test]
async fn a_bad_rate_on_the_company_page_keeps_the_input_and_the_other_form() {
    let app = TestApp::new().await;
    let page = app.request(Method::GET, "/companies", None).await;
    let token = page.csrf_cookie();
    let added = post_form(
        &app,
        "/companies",
        &token,
        &format!("csrf={token}&name=Initech&monthly_rate=10"),
    )
    .await;
    let location = added.headers["location"].to_str().unwrap().to_owned();
    let reply = post_form(
        &app,
        &format!("{location}/rate"),
        &token,
        &format!("csrf={token}&monthly_rate=-3"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.text.contains("Monthly rate must not be negative"));
    assert!(reply.text.contains("value=\"-3\""), "the bad input is kept");
    assert!(
        reply.text.contains("value=\"Initech\""),
        "the rename form shows the current name"
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM events WHERE aggregate_type = 'company'")
            .await,
        1
    );
}

#[tokio::test]
async fn the_global_search_finds_companies_and_people_of_the_tenant_only() {
    let app = TestApp::new().await;
    let other = app.other_tenant("Globex IT", "owner@globex.test").await;
    for (who, name) in [(&app.owner, "Initrode Ltd"), (&other, "Initrode Globex")] {
        let reply = app
            .send_as(
                Some(who),
                Method::POST,
                "/api/v1/companies",
                Some(r#"{"name": "NAME"}"#.replace("NAME", name).as_str()),
                &[],
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    let tech = app
        .person(
            &app.owner,
            domain::identity::Role::Technician,
            "initra@acme.test",
            None,
        )
        .await;
    let page = app.request(Method::GET, "/search?q=initr", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("Initrode Ltd"));
    assert!(
        !page.text.contains("Globex"),
        "another tenant's company is not found"
    );
    assert!(
        page.text.contains("initra@acme.test"),
        "the owner finds people too"
    );
    let as_tech = app
        .send_as(Some(&tech), Method::GET, "/search?q=initr", None, &[])
        .await;
    assert!(as_tech.text.contains("Initrode Ltd"));
    assert!(
        !as_tech.text.contains("initra@acme.test"),
        "a technician does not search people"
    );
    let odd = app.request(Method::GET, "/search?q=%25_%5C", None).await;
    assert_eq!(odd.status, StatusCode::OK);
    assert!(odd.text.contains("Nothing matches"));
}

#[tokio::test]
async fn the_new_company_form_works_as_an_htmx_modal_and_as_a_page() {
    let app = TestApp::new().await;
    let token = app
        .request(Method::GET, "/companies", None)
        .await
        .csrf_cookie();
    let list = app.request(Method::GET, "/companies", None).await;
    assert!(list.text.contains("hx-get=\"/companies/new\""));
    assert!(list.text.contains("<dialog id=\"modal\""));
    let fragment = app
        .send(
            Method::GET,
            "/companies/new",
            None,
            &[("hx-request", "true")],
        )
        .await;
    assert_eq!(fragment.status, StatusCode::OK);
    assert!(
        !fragment.text.contains("<html"),
        "a fragment for the dialog"
    );
    assert!(fragment.text.contains("hx-post=\"/companies\""));
    let page = app.request(Method::GET, "/companies/new", None).await;
    assert!(page.text.contains("<html") && page.text.contains("New company"));

    let cookie = format!("st_csrf={token}");
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("cookie", cookie.as_str()),
        ("hx-request", "true"),
    ];
    let refused = app
        .send_body(
            Method::POST,
            "/companies",
            &format!("csrf={token}&name=&monthly_rate=abc"),
            &headers,
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!refused.text.contains("<html"));
    assert!(refused.text.contains("Name must not be empty"));
    assert!(refused.text.contains("value=\"abc\""));
    let added = app
        .send_body(
            Method::POST,
            "/companies",
            &format!("csrf={token}&name=Modal+Co&monthly_rate=5"),
            &headers,
        )
        .await;
    assert_eq!(added.status, StatusCode::OK);
    let to = added.headers["hx-redirect"].to_str().unwrap();
    assert!(to.starts_with("/companies/"), "{to}");
    assert!(added
        .headers
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().starts_with("st_flash=Added")));
    // A technician gets no button and a 403 for the form.
    let tech = app
        .person(
            &app.owner,
            domain::identity::Role::Technician,
            "t@acme.test",
            None,
        )
        .await;
    let list = app
        .send_as(Some(&tech), Method::GET, "/companies", None, &[])
        .await;
    assert!(!list.text.contains("New company"));
    let form = app
        .send_as(Some(&tech), Method::GET, "/companies/new", None, &[])
        .await;
    assert_eq!(form.status, StatusCode::FORBIDDEN);
}
