//! The console in real headless Chromium: add a company, see a refused form with the input
//! kept, rename it, and a form post without the CSRF token refused.

use std::time::Duration;

use fantoccini::Locator;
use st_tests::browser::Browser;
use st_tests::process::Server;
use st_tests::TestDb;

/// Waits until the element `css` exists and its text contains `needle` (the next page may still
/// be loading after a click: the old page's elements are there until it has).
async fn wait_for_text(browser: &Browser, css: &str, needle: &str) {
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

async fn text_of(browser: &Browser, css: &str) -> String {
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
    let server = Server::start(&db.url, &[]);
    let browser = Browser::start().await;
    let c = &browser.client;

    c.goto(&server.url("/companies")).await.unwrap();
    assert!(text_of(&browser, "main").await.contains("No companies yet"));

    // A bad rate: the page comes back with the message next to the field and the input kept.
    c.find(Locator::Id("name"))
        .await
        .unwrap()
        .send_keys("Initech")
        .await
        .unwrap();
    c.find(Locator::Id("monthly_rate"))
        .await
        .unwrap()
        .send_keys("12.345")
        .await
        .unwrap();
    c.find(Locator::Css("form.inline button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&browser, "#rate-error", "at most 2 decimal places").await;
    let kept = c
        .find(Locator::Id("name"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("Initech"));

    // Corrected: redirected to the company's page with a flash message.
    let rate = c.find(Locator::Id("monthly_rate")).await.unwrap();
    rate.clear().await.unwrap();
    rate.send_keys("1250").await.unwrap();
    c.find(Locator::Css("form.inline button[type=submit]"))
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

    browser.close().await;
    server.stop();
}
