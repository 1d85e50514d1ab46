//! The vault and the search box in real headless Chromium: a company, a contact, an asset
//! assigned to that contact, a credential on the asset; the credential revealed in place (and
//! the reveal in the asset's history); the asset found by its serial number from the header's
//! search box with the arrow keys.

use fantoccini::Locator;
use st_tests::browser::Browser;
use st_tests::process::Server;
use st_tests::TestDb;

use crate::browser::{sign_in, text_of, wait_for_text};

async fn fill(browser: &Browser, css: &str, text: &str) {
    let field = browser
        .client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn click(browser: &Browser, css: &str) {
    browser
        .client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Chooses the option of `select_css` whose text contains `text`.
async fn choose(browser: &Browser, select_css: &str, text: &str) {
    let chosen = browser
        .client
        .execute(
            "const s = document.querySelector(arguments[0]);
             const o = Array.from(s.options).find(o => o.text.includes(arguments[1]));
             if (!o) return false;
             s.value = o.value; return true;",
            vec![serde_json::json!(select_css), serde_json::json!(text)],
        )
        .await
        .unwrap();
    assert_eq!(
        chosen,
        serde_json::json!(true),
        "{select_css} has no {text:?}"
    );
}

#[tokio::test]
async fn an_asset_its_credential_a_reveal_and_the_search_box_in_a_real_browser() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]).with_owner(&db.url).await;
    let owner = server.owner.clone().unwrap();
    let browser = Browser::start().await;
    let c = &browser.client;

    c.goto(&server.url("/companies")).await.unwrap();
    wait_for_text(&browser, "h1", "Sign in").await;
    sign_in(&browser, &owner.email, &owner.password).await;
    wait_for_text(&browser, "main", "No companies yet").await;

    // A company, from the "New company" dialog.
    click(&browser, "#new-company").await;
    wait_for_text(&browser, "dialog#modal", "New company").await;
    fill(&browser, "#modal-body #name", "Initrode").await;
    click(&browser, "#modal-body button[type=submit]").await;
    wait_for_text(&browser, "p.flash", "Added Initrode").await;
    let company = c.current_url().await.unwrap();
    let company_path = company.path().trim_end_matches('/').to_owned();

    // A contact, from the contact form.
    c.goto(&server.url(&format!("{company_path}/contacts/new")))
        .await
        .unwrap();
    wait_for_text(&browser, "main", "Add a contact").await;
    fill(&browser, "#contact-name", "Peter Gibbons").await;
    click(&browser, "form[action$='/contacts'] button[type=submit]").await;
    wait_for_text(&browser, "p.flash", "Added Peter Gibbons").await;

    // An asset assigned to him, from the company's Assets tab.
    c.goto(&server.url(&format!("{company_path}/assets")))
        .await
        .unwrap();
    wait_for_text(&browser, "h1", "Initrode").await;
    wait_for_text(&browser, "nav.tabs [aria-current=page]", "Assets").await;
    click(&browser, "#new-asset summary").await;
    fill(&browser, "#asset-name", "Peter's laptop").await;
    choose(&browser, "#asset-category", "Laptop").await;
    fill(&browser, "#asset-serial_number", "SN-TPS-0042").await;
    fill(&browser, "#asset-mac_address", "00:1a:2b:3c:4d:5e").await;
    choose(&browser, "#asset-contact", "Peter Gibbons").await;
    click(&browser, "#new-asset button[type=submit]").await;
    wait_for_text(&browser, "p.flash", "Registered ACME-00001").await;
    assert!(text_of(&browser, "h1")
        .await
        .contains("ACME-00001 Peter's laptop"));
    assert!(text_of(&browser, ".facts").await.contains("Peter Gibbons"));
    assert!(text_of(&browser, ".facts")
        .await
        .contains("00:1A:2B:3C:4D:5E"));
    let asset = c.current_url().await.unwrap();

    // A credential on the asset; a refused form keeps the label and says why.
    click(&browser, "#new-credential summary").await;
    fill(&browser, "#cred-label", "Windows login").await;
    fill(&browser, "#cred-username", "peter").await;
    fill(&browser, "#cred-password", "Sw0rdfish!").await;
    fill(&browser, "#cred-totp_secret", "not base32!").await;
    click(&browser, "#new-credential button[type=submit]").await;
    wait_for_text(&browser, "#cred-totp_secret-error", "base32").await;
    let kept = c
        .find(Locator::Css("#cred-label"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("Windows login"));
    fill(&browser, "#cred-password", "Sw0rdfish!").await;
    fill(&browser, "#cred-totp_secret", "").await;
    click(&browser, "#new-credential button[type=submit]").await;
    wait_for_text(&browser, "p.flash", "Added Windows login").await;
    assert!(
        !text_of(&browser, "main").await.contains("Sw0rdfish!"),
        "the secret stays hidden until revealed"
    );

    // Reveal in place; the reveal shows in the asset's history.
    click(&browser, "button[data-reveal='Windows login']").await;
    wait_for_text(&browser, "[data-secret=password]", "Sw0rdfish!").await;
    c.goto(asset.as_str()).await.unwrap();
    wait_for_text(&browser, "#history", "Credential's secrets revealed").await;
    assert!(text_of(&browser, "#history")
        .await
        .contains("Credential “Windows login” added"));

    // The search box: the serial, then ArrowDown to the suggestion and Enter.
    c.goto(&server.url("/companies")).await.unwrap();
    wait_for_text(&browser, "h1", "Companies").await;
    let search = c.find(Locator::Id("global-search")).await.unwrap();
    search.send_keys("SN-TPS-0042").await.unwrap();
    wait_for_text(&browser, "#search-suggest", "ACME-00001 Peter's laptop").await;
    search.send_keys("\u{E015}").await.unwrap();
    let focused = c
        .execute("return document.activeElement.textContent", vec![])
        .await
        .unwrap();
    assert!(
        focused.as_str().unwrap_or("").contains("ACME-00001"),
        "ArrowDown moves to the first suggestion: {focused}"
    );
    c.active_element()
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    wait_for_text(&browser, "h1", "ACME-00001 Peter's laptop").await;
    assert_eq!(c.current_url().await.unwrap().path(), asset.path());

    browser.close().await;
    server.stop();
}
