//! The technicians' console for work orders in real headless Chromium: a company, a work
//! order raised from its Work orders tab, assigned to oneself, the timer started and stopped
//! (the time entry appears), a public comment, the order resolved, and its card in the
//! board's resolved column. Screenshots of the order page and the board go to /tmp/shots/.

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

/// Saves a PNG of the whole current page to `/tmp/shots/{name}.png` (the window grows to the
/// page's height for the shot, then goes back).
async fn screenshot(browser: &Browser, name: &str) -> String {
    let c = &browser.client;
    let height = c
        .execute("return document.documentElement.scrollHeight", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap_or(900)
        .clamp(900, 6000);
    let (width, old_height) = c.get_window_size().await.unwrap();
    c.set_window_size(width as u32, height as u32 + 140)
        .await
        .unwrap();
    let png = c.screenshot().await.unwrap();
    c.set_window_size(width as u32, old_height as u32)
        .await
        .unwrap();
    std::fs::create_dir_all("/tmp/shots").unwrap();
    let path = format!("/tmp/shots/{name}.png");
    std::fs::write(&path, png).unwrap();
    path
}

#[tokio::test]
async fn a_work_order_is_raised_timed_commented_resolved_and_on_the_board_in_a_real_browser() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]).with_owner(&db.url).await;
    let owner = server.owner.clone().unwrap();
    // `supporttracker bootstrap` names the owner after their address.
    let owner_name = owner.email.split('@').next().unwrap().to_owned();
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

    // Its Work orders tab: nothing yet; "New work order" comes with the company chosen.
    c.goto(&server.url(&format!("{company_path}/work-orders")))
        .await
        .unwrap();
    wait_for_text(&browser, "nav.tabs [aria-current=page]", "Work orders").await;
    wait_for_text(&browser, "main", "No work orders yet").await;
    click(&browser, "#new-work-order").await;
    wait_for_text(&browser, "h1", "New work order").await;
    wait_for_text(&browser, "#new-work-order-form", "Initrode").await;
    fill(&browser, "#wo-title", "Printer jams on the 2nd floor").await;
    fill(
        &browser,
        "#wo-description",
        "Paper tray 2 jams on every job.",
    )
    .await;
    choose(&browser, "#wo-priority", "Urgent").await;
    click(&browser, "#new-work-order-form button[type=submit]").await;
    wait_for_text(&browser, "p.flash", "Work order #1 raised").await;
    assert!(text_of(&browser, "h1")
        .await
        .contains("Printer jams on the 2nd floor"));
    wait_for_text(&browser, "#order-status", "New").await;
    let order = c.current_url().await.unwrap();

    // Assign to me.
    click(&browser, "#assign-me").await;
    wait_for_text(&browser, "p.flash", "Assigned to you").await;
    wait_for_text(&browser, "#order-status", "Assigned").await;
    wait_for_text(&browser, "#order-assignee", &owner_name).await;

    // Start the timer, then stop it: the time entry appears.
    click(&browser, "#timer-start").await;
    wait_for_text(&browser, "p.flash", "Timer started").await;
    wait_for_text(&browser, "#timer-running", "running since").await;
    fill(&browser, "#stop-note", "Cleaned the rollers").await;
    click(&browser, "#timer-stop").await;
    wait_for_text(&browser, "p.flash", "Timer stopped").await;
    wait_for_text(&browser, "#time-entries", "Cleaned the rollers").await;
    assert!(text_of(&browser, "#time-entries").await.contains("1 min"));
    assert!(text_of(&browser, "#timer").await.contains("Start timer"));

    // A public comment.
    fill(
        &browser,
        "#comment-body",
        "The rollers were worn; printing works again.",
    )
    .await;
    click(&browser, "#comment-public").await;
    click(&browser, "#comment-submit").await;
    wait_for_text(&browser, "p.flash", "Public comment added").await;
    wait_for_text(
        &browser,
        "#timeline",
        "The rollers were worn; printing works again.",
    )
    .await;
    assert!(text_of(&browser, "#timeline")
        .await
        .contains("Comment (public)"));

    // Resolve it.
    click(&browser, "#status-moves button[value=resolved]").await;
    wait_for_text(&browser, "p.flash", "Status: resolved").await;
    wait_for_text(&browser, "#order-status", "Resolved").await;
    let timeline = text_of(&browser, "#timeline").await;
    let assigned = format!("Assigned to {owner_name}");
    for line in [
        "Opened: Printer jams on the 2nd floor (urgent, repair)",
        assigned.as_str(),
        "Timer started",
        "1 min logged",
        "Status: resolved (was assigned)",
    ] {
        assert!(timeline.contains(line), "{line}: {timeline}");
    }
    let order_shot = screenshot(&browser, "work_order").await;

    // The board: the card in the resolved column.
    c.goto(&server.url("/work-orders/board")).await.unwrap();
    wait_for_text(&browser, "h1", "Work order board").await;
    wait_for_text(
        &browser,
        "#column-resolved",
        "Printer jams on the 2nd floor",
    )
    .await;
    assert!(text_of(&browser, "#column-resolved").await.contains("#1"));
    assert!(!text_of(&browser, "#column-assigned")
        .await
        .contains("Printer jams"));
    let board_shot = screenshot(&browser, "work_order_board").await;
    assert!(std::path::Path::new(&order_shot).exists());
    assert!(std::path::Path::new(&board_shot).exists());

    // Back on the order, the list knows it too.
    c.goto(&server.url("/work-orders?status=resolved"))
        .await
        .unwrap();
    wait_for_text(&browser, "#work-orders", "Printer jams on the 2nd floor").await;
    c.goto(order.as_str()).await.unwrap();
    wait_for_text(&browser, "h1", "Printer jams").await;

    browser.close().await;
    server.stop();
}
