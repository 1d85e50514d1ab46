//! The console in real headless Chromium: sign in (after a wrong password), add a company, see
//! a refused form with the input kept, rename it, a form post without the CSRF token refused,
//! sign out and the back button showing nothing private; an invited technician refused an
//! owner-only page.

use std::time::Duration;

use fantoccini::Locator;
use st_tests::browser::Browser;
use st_tests::process::Server;
use st_tests::TestDb;

/// Waits until the element `css` exists and its text contains `needle` (the next page may still
/// be loading after a click: the old page's elements are there until it has).
pub(crate) async fn wait_for_text(browser: &Browser, css: &str, needle: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(element) = browser.client.find(Locator::Css(css)).await {
            if element.text().await.is_ok_and(|t| t.contains(needle)) {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{css} never showed {needle:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn text_of(browser: &Browser, css: &str) -> String {
    browser
        .client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_company_is_added_and_renamed_in_a_real_browser() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]).with_owner(&db.url).await;
    let owner = server.owner.clone().unwrap();
    let browser = Browser::start().await;
    let c = &browser.client;

    // Not signed in: the console sends the browser to the sign-in page, then back.
    c.goto(&server.url("/companies")).await.unwrap();
    wait_for_text(&browser, "h1", "Sign in").await;
    sign_in(&browser, &owner.email, "not the password").await;
    wait_for_text(&browser, "#sign-in-error", "Wrong email or password").await;
    let kept = c
        .find(Locator::Id("email"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(
        kept.as_deref(),
        Some(owner.email.as_str()),
        "the email is kept"
    );
    sign_in(&browser, &owner.email, &owner.password).await;
    wait_for_text(&browser, "main", "No companies yet").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/companies");

    // "New company" opens the form in a modal dialog (htmx). A bad rate: the dialog shows
    // the message next to the field, with the input kept.
    c.find(Locator::Id("new-company"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&browser, "dialog#modal", "New company").await;
    let open = c
        .execute("return document.getElementById('modal').open", vec![])
        .await
        .unwrap();
    assert_eq!(open, serde_json::json!(true), "the dialog is open");
    c.find(Locator::Css("#modal-body #name"))
        .await
        .unwrap()
        .send_keys("Initech")
        .await
        .unwrap();
    c.find(Locator::Css("#modal-body #monthly_rate"))
        .await
        .unwrap()
        .send_keys("12.345")
        .await
        .unwrap();
    c.find(Locator::Css("#modal-body button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(
        &browser,
        "#modal-body #rate-error",
        "at most 2 decimal places",
    )
    .await;
    let kept = c
        .find(Locator::Css("#modal-body #name"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("Initech"));
    assert_eq!(
        c.current_url().await.unwrap().path(),
        "/companies",
        "still on the list"
    );

    // Corrected: the company's page with a flash message.
    let rate = c
        .find(Locator::Css("#modal-body #monthly_rate"))
        .await
        .unwrap();
    rate.clear().await.unwrap();
    rate.send_keys("1250").await.unwrap();
    c.find(Locator::Css("#modal-body button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&browser, "p.flash", "Added Initech").await;
    assert!(text_of(&browser, "h1").await.contains("Initech"));
    assert!(text_of(&browser, ".facts").await.contains("1250.00"));
    let page = c.current_url().await.unwrap();

    // Rename through the page's form.
    let name = c
        .find(Locator::Css("form[action$='/rename'] input[name=name]"))
        .await
        .unwrap();
    name.clear().await.unwrap();
    name.send_keys("Initech Ltd").await.unwrap();
    c.find(Locator::Css("form[action$='/rename'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&browser, "p.flash", "Renamed to Initech Ltd").await;
    assert!(text_of(&browser, "h1").await.contains("Initech Ltd"));
    assert!(text_of(&browser, ".history")
        .await
        .contains("Renamed to Initech Ltd (was Initech)"));

    // A post from this page without the token (as a forged form would send) is refused.
    let status = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0], {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'}, body: 'name=Forged'})
               .then(r => done(r.status));",
            vec![serde_json::json!(format!("{}/rename", page.path()))],
        )
        .await
        .unwrap();
    assert_eq!(status, serde_json::json!(403));
    c.goto(page.as_str()).await.unwrap();
    assert!(
        text_of(&browser, "h1").await.contains("Initech Ltd"),
        "the forged rename changed nothing"
    );

    // Sign out; the back button then shows the sign-in page, not the company.
    c.find(Locator::Css("form[action='/sign-out'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&browser, "p.flash", "You are signed out").await;
    c.back().await.unwrap();
    wait_for_text(&browser, "h1", "Sign in").await;
    assert!(!text_of(&browser, "main").await.contains("Initech"));
    c.goto(page.as_str()).await.unwrap();
    wait_for_text(&browser, "h1", "Sign in").await;

    browser.close().await;
    server.stop();
}

/// Fills and sends the sign-in form of the current page.
pub(crate) async fn sign_in(browser: &Browser, email: &str, password: &str) {
    let c = &browser.client;
    let field = c.find(Locator::Id("email")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(email).await.unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    c.find(Locator::Css("form[action='/sign-in'] button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test]
async fn an_invited_technician_joins_and_is_refused_an_owner_page() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]).with_owner(&db.url).await;
    // The owner invites a technician through the API; the link waits in the outbox.
    let invited = reqwest::Client::new()
        .post(server.url("/api/v1/users"))
        .bearer_auth(server.token())
        .json(&serde_json::json!({"email": "tech@acme.test", "name": "Tess Tech", "role": "technician"}))
        .send()
        .await
        .unwrap();
    assert_eq!(invited.status(), 201, "{}", invited.text().await.unwrap());
    let body: String =
        sqlx::query_scalar("SELECT body FROM outbox WHERE recipient = 'tech@acme.test'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let link = body
        .split_whitespace()
        .find(|w| w.contains("/invitation/"))
        .expect("the invitation carries its link");
    let path = &link[link.find("/invitation/").unwrap()..];

    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&server.url(path)).await.unwrap();
    wait_for_text(&browser, "h1", "Welcome").await;
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("tess's long password")
        .await
        .unwrap();
    c.find(Locator::Id("confirm"))
        .await
        .unwrap()
        .send_keys("tess's long password")
        .await
        .unwrap();
    c.find(Locator::Css("main button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&browser, "p.flash", "Your password is set").await;
    sign_in(&browser, "tech@acme.test", "tess's long password").await;
    wait_for_text(&browser, "main", "Companies").await;
    let nav = text_of(&browser, "header").await;
    assert!(nav.contains("Tess Tech"), "{nav}");
    assert!(
        !nav.contains("Team"),
        "the technician's navigation has no Team: {nav}"
    );

    // The owner-only page, typed in the address bar: the friendly 403 with a request id.
    c.goto(&server.url("/team")).await.unwrap();
    wait_for_text(&browser, "h1", "Not allowed").await;
    assert!(text_of(&browser, "main").await.contains("request id"));

    browser.close().await;
    server.stop();
}
