//! The billing console (issue 7): every page renders for the roles that may see billing and is
//! refused to the others, another tenant's invoices, payments and companies are not found, and
//! the forms — the billing run (preview and run), payments (recorded, unapplied, refunded,
//! reversed), ad-hoc invoices (draft, issue, credit note, void), a company's contract terms,
//! the billing settings — do what the API does, show bad input again next to the fields with
//! nothing appended, and refuse posts without the CSRF token. The aging report's CSV and the
//! PDFs download.

use axum::http::{Method, StatusCode};
use domain::company::Company;
use domain::identity::Role;
use domain::ledger::{ledger_id, Ledger};
use domain::tenant::Tenant;
use serde_json::{json, Value};
use st_tests::{Person, Reply, TestApp};
use uuid::Uuid;

const CSRF: &str = "abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdef";

async fn events(app: &TestApp) -> i64 {
    app.db.count("SELECT count(*) FROM events").await
}

async fn get(app: &TestApp, who: &Person, path: &str) -> Reply {
    app.send_as(Some(who), Method::GET, path, None, &[]).await
}

/// A console form as `who`, with the CSRF token in the cookie and the form.
async fn form(app: &TestApp, who: &Person, path: &str, body: &str) -> Reply {
    app.send_body_as(
        Some(who),
        Method::POST,
        path,
        &format!("csrf={CSRF}&{body}"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &format!("st_csrf={CSRF}")),
        ],
    )
    .await
}

/// The same form without its token.
async fn form_without_csrf(app: &TestApp, who: &Person, path: &str, body: &str) -> Reply {
    app.send_body_as(
        Some(who),
        Method::POST,
        path,
        body,
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

/// The flash message a redirect carries.
fn flash(reply: &Reply) -> String {
    let cookie = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("st_flash="))
        .expect("a flash message")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let mut out = Vec::new();
    let bytes = cookie.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&cookie[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn ok(reply: &Reply, what: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{what}: {}", reply.text);
    assert!(
        reply.content_type.starts_with("text/html"),
        "{what}: {}",
        reply.content_type
    );
}

async fn api(app: &TestApp, method: Method, path: &str, body: Value) -> Value {
    let reply = app.request(method, path, Some(&body.to_string())).await;
    assert!(reply.status.is_success(), "{path}: {}", reply.text);
    reply.json()
}

async fn company(app: &TestApp, name: &str, rate: &str) -> Uuid {
    api(
        app,
        Method::POST,
        "/api/v1/companies",
        json!({"name": name, "monthly_rate": rate}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A company billed monthly from 2026-01-01 (14 days to pay), with its invoices up to `as_of`
/// made by a run; the invoices' ids, oldest first.
async fn billed(app: &TestApp, name: &str, rate: &str, as_of: &str) -> (Uuid, Vec<Uuid>) {
    let id = company(app, name, rate).await;
    api(
        app,
        Method::PUT,
        &format!("/api/v1/companies/{id}/billing"),
        json!({"billing_day": 1, "start_date": "2026-01-01", "payment_terms_days": 14}),
    )
    .await;
    let made = api(
        app,
        Method::POST,
        "/api/v1/billing/runs",
        json!({ "as_of": as_of }),
    )
    .await;
    let invoices = made["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["company_id"] == id.to_string())
        .map(|i| i["id"].as_str().unwrap().parse().unwrap())
        .collect();
    (id, invoices)
}

async fn ledger(app: &TestApp, company_id: Uuid) -> Ledger {
    app.store
        .load::<Ledger>(app.owner.tenant_id, &ledger_id(company_id))
        .await
        .unwrap()
        .0
}

#[tokio::test]
async fn billing_pages_render_for_the_roles_that_see_billing_and_no_one_else() {
    let app = TestApp::new().await;
    let (acme, invoices) = billed(&app, "Acme & Co", "300.00", "2026-02-01").await;
    let payment = api(
        &app,
        Method::POST,
        "/api/v1/payments",
        json!({"company_id": acme, "amount": "450.00", "received_on": "2026-02-10",
               "method": "check", "reference": "1001"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let accountant = app
        .person(&app.owner, Role::Accountant, "acc@acme.test", None)
        .await;
    let admin = app
        .person(&app.owner, Role::Admin, "adm@acme.test", None)
        .await;
    let pages = [
        "/billing".to_owned(),
        "/billing/invoices".to_owned(),
        format!("/billing/invoices?company_id={acme}&status=open"),
        format!("/billing/invoices/{}", invoices[0]),
        format!("/billing/invoices/{}", invoices[1]),
        "/billing/invoices/new".to_owned(),
        format!("/billing/invoices/new?company_id={acme}"),
        "/billing/payments".to_owned(),
        format!("/billing/payments?company_id={acme}"),
        "/billing/payments/new".to_owned(),
        format!("/billing/payments/new?company_id={acme}"),
        format!("/billing/payments/{payment}"),
        "/billing/aging".to_owned(),
        "/billing/aging?as_of=2026-02-05".to_owned(),
        format!("/companies/{acme}/billing"),
        format!("/companies/{acme}/statement"),
        format!("/companies/{acme}/statement?from=2026-01-01&to=2026-03-01"),
        "/settings/billing".to_owned(),
    ];
    for who in [&app.owner, &admin, &accountant] {
        for path in &pages {
            let reply = get(&app, who, path).await;
            ok(&reply, &format!("{:?} {path}", who.role));
            assert!(
                reply.text.contains("<a href=\"/billing\""),
                "{path}: the nav links to Billing"
            );
        }
        let tab = get(&app, who, &format!("/companies/{acme}/billing")).await;
        assert!(tab.text.contains(&format!(
            "<a href=\"/companies/{acme}/billing\" aria-current=\"page\">Billing</a>"
        )));
        assert!(tab.text.contains("Acme &#38; Co"));
        assert!(tab.text.contains("300.00 USD"), "the monthly rate");
        // Two invoices of 300.00, one paid and half of the other: 150.00 owed.
        assert!(tab.text.contains("150.00 USD"), "{}", tab.text);
        // Only those who may run billing get the run form.
        let overview = get(&app, who, "/billing").await;
        assert_eq!(
            overview.text.contains("value=\"run\""),
            who.role != Role::Accountant,
            "{:?}",
            who.role
        );
    }
    // The invoice page: its lines, the payment applied, the PDF link; actions for managers.
    let invoice = get(
        &app,
        &accountant,
        &format!("/billing/invoices/{}", invoices[1]),
    )
    .await;
    for shown in [
        "Invoice 2",
        "Acme &#38; Co contract, 2026-02-01 to 2026-02-28",
        "Partly paid",
        &format!("/billing/invoices/{}/pdf", invoices[1]),
        &format!("/billing/payments/{payment}"),
        "Record a payment for this invoice",
        "Issue a credit note",
        "name=\"amount\" value=\"150.00\"",
    ] {
        assert!(invoice.text.contains(shown), "{shown}\n{}", invoice.text);
    }
    // Technicians and clients see none of it: no nav link, no tab, 403 on every page.
    let technician = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    let client = app
        .person(&app.owner, Role::Client, "c@customer.test", Some(acme))
        .await;
    for who in [&technician, &client] {
        for path in &pages {
            let reply = get(&app, who, path).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{:?} {path}", who.role);
        }
        for path in [
            format!("/billing/invoices/{}/pdf", invoices[0]),
            "/billing/aging.csv".to_owned(),
            format!("/companies/{acme}/statement.pdf"),
        ] {
            let reply = get(&app, who, &path).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        }
    }
    let work = get(&app, &technician, &format!("/companies/{acme}/work-orders")).await;
    ok(&work, "technician's company page");
    assert!(!work.text.contains(&format!("/companies/{acme}/billing\"")));
    assert!(!work.text.contains("<a href=\"/billing\""));
    // Forms too.
    let before = events(&app).await;
    for (path, body) in [
        (
            "/billing/run".to_owned(),
            "action=run&as_of=2026-03-01".to_owned(),
        ),
        (
            "/billing/payments".to_owned(),
            format!("company_id={acme}&amount=10&received_on=2026-03-01&method=cash"),
        ),
        (
            format!("/companies/{acme}/billing"),
            "billing_day=5&start_date=2026-01-01".to_owned(),
        ),
        ("/settings/billing".to_owned(), "tax_id=X".to_owned()),
    ] {
        let reply = form(&app, &technician, &path, &body).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
    }
    // An accountant may record payments but not run billing.
    let reply = form(&app, &accountant, "/billing/run", "action=run").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(events(&app).await, before);
}

#[tokio::test]
async fn another_tenants_invoices_payments_and_companies_are_not_found() {
    let app = TestApp::new().await;
    let (acme, invoices) = billed(&app, "Acme", "100.00", "2026-01-01").await;
    let payment = api(
        &app,
        Method::POST,
        "/api/v1/payments",
        json!({"company_id": acme, "amount": "150.00", "received_on": "2026-01-05",
               "method": "cash"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let invoice = invoices[0];
    let other = app.other_tenant("Rival IT", "owner@rival.test").await;
    for path in [
        format!("/billing/invoices/{invoice}"),
        format!("/billing/invoices/{invoice}/pdf"),
        format!("/billing/payments/{payment}"),
        format!("/billing/payments/new?company_id={acme}"),
        format!("/companies/{acme}/billing"),
        format!("/companies/{acme}/statement"),
        format!("/companies/{acme}/statement.pdf"),
        "/billing/invoices/not-an-id".to_owned(),
        "/billing/payments/not-an-id".to_owned(),
        format!("/billing/invoices/{}", Uuid::new_v4()),
    ] {
        let reply = get(&app, &other, &path).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.text
        );
        assert!(reply.text.contains("Page not found"), "{path}");
    }
    // Its lists do not show them.
    for path in ["/billing/invoices", "/billing/payments", "/billing/aging"] {
        let reply = get(&app, &other, path).await;
        ok(&reply, path);
        assert!(!reply.text.contains(&acme.to_string()), "{path}");
    }
    let before = events(&app).await;
    for (path, body) in [
        (format!("/billing/invoices/{invoice}/void"), "reason=x".to_owned()),
        (
            format!("/billing/invoices/{invoice}/credit-notes"),
            "amount=1".to_owned(),
        ),
        (
            format!("/billing/invoices/{invoice}/issue"),
            "issue_date=2026-01-02".to_owned(),
        ),
        (
            format!("/billing/payments/{payment}/refund"),
            "amount=1&on=2026-01-06".to_owned(),
        ),
        (
            format!("/billing/payments/{payment}/reverse"),
            "on=2026-01-06".to_owned(),
        ),
        (
            format!("/billing/payments/{payment}/unapply"),
            format!("invoice_id={invoice}"),
        ),
        (
            "/billing/payments".to_owned(),
            format!("company_id={acme}&amount=10&received_on=2026-01-06&method=cash"),
        ),
        (
            "/billing/invoices".to_owned(),
            format!(
                "company_id={acme}&rows=1&description_0=Spy&unit_price_0=1&action=issue&issue_date=2026-01-06"
            ),
        ),
        (
            format!("/companies/{acme}/billing"),
            "billing_day=5&start_date=2026-01-01".to_owned(),
        ),
        (format!("/companies/{acme}/billing/stop"), String::new()),
    ] {
        let reply = form(&app, &other, &path, &body).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}: {}", reply.text);
    }
    assert_eq!(events(&app).await, before, "nothing appended");
}

#[tokio::test]
async fn a_payment_recorded_through_the_form_shows_where_it_went() {
    let app = TestApp::new().await;
    let (acme, invoices) = billed(&app, "Acme", "300.00", "2026-03-01").await;
    assert_eq!(invoices.len(), 3);
    // The form lists the open invoices, oldest due first.
    let page = get(
        &app,
        &app.owner,
        &format!("/billing/payments/new?company_id={acme}"),
    )
    .await;
    ok(&page, "payment form");
    for id in &invoices {
        assert!(page.text.contains(&format!("value=\"{id}\"")));
    }
    // Bad input: shown again with the messages, nothing appended.
    let before = events(&app).await;
    let reply = form(
        &app,
        &app.owner,
        "/billing/payments",
        &format!("company_id={acme}&amount=abc&received_on=2026-03-05&method=&reference=r1"),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(
        reply.text.contains("The amount must be a decimal amount"),
        "{}",
        reply.text
    );
    assert!(
        reply.text.contains("The method is required"),
        "{}",
        reply.text
    );
    assert!(reply.text.contains("value=\"abc\""), "the input is kept");
    assert!(reply.text.contains("value=\"r1\""), "the input is kept");
    let reply = form(
        &app,
        &app.owner,
        "/billing/payments",
        &format!("company_id={acme}&amount=-5&received_on=someday&method=barter"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply
        .text
        .contains("The date received must be a date YYYY-MM-DD"));
    assert!(reply.text.contains("The method must be one of"));
    assert_eq!(events(&app).await, before, "nothing appended");

    // 700.00: the two oldest invoices paid, 100.00 on the third.
    let reply = form(
        &app,
        &app.owner,
        "/billing/payments",
        &format!(
            "company_id={acme}&amount=700.00&received_on=2026-03-05&method=check&reference=1234"
        ),
    )
    .await;
    let to = location(&reply);
    assert!(to.starts_with("/billing/payments/"), "{to}");
    assert_eq!(flash(&reply), "Payment of 700.00 USD recorded.");
    let page = get(&app, &app.owner, &to).await;
    ok(&page, "payment page");
    for shown in [
        "Payment of 700.00 USD",
        ">Invoice 1</a>",
        ">Invoice 2</a>",
        ">Invoice 3</a>",
        "Check",
        "1234",
    ] {
        assert!(page.text.contains(shown), "{shown}\n{}", page.text);
    }
    assert_eq!(
        page.text.matches("300.00 USD").count(),
        2,
        "two invoices paid in full"
    );
    assert!(page.text.contains("100.00 USD"));

    // Only the named invoice, the rest as credit.
    let reply = form(
        &app,
        &app.owner,
        "/billing/payments",
        &format!(
            "company_id={acme}&amount=250.00&received_on=2026-03-06&method=bank_transfer&invoice_ids={}",
            invoices[2]
        ),
    )
    .await;
    let to = location(&reply);
    let page = get(&app, &app.owner, &to).await;
    assert!(page.text.contains(">Invoice 3</a>"));
    assert!(!page.text.contains(">Invoice 1</a>"));
    assert!(
        page.text
            .contains("<dd id=\"payment-credit\">50.00 USD</dd>"),
        "{}",
        page.text
    );
    let l = ledger(&app, acme).await;
    assert!(l.invoices.values().all(|i| i.balance().is_zero()));
    assert_eq!(l.unapplied().to_string(), "50.00");

    // Naming a paid invoice is refused next to the checkboxes; from an invoice's page the
    // invoice's page is shown again.
    let before = events(&app).await;
    let reply = form(
        &app,
        &app.owner,
        "/billing/payments",
        &format!(
            "company_id={acme}&amount=10&received_on=2026-03-07&method=cash&invoice_ids={}&back={}",
            invoices[0], invoices[0]
        ),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(
        reply.text.contains("must be issued and open"),
        "{}",
        reply.text
    );
    assert!(reply.text.contains("<h1>Invoice 1"), "{}", reply.text);
    assert_eq!(events(&app).await, before);
}

#[tokio::test]
async fn payments_are_corrected_from_their_page() {
    let app = TestApp::new().await;
    let (acme, invoices) = billed(&app, "Acme", "300.00", "2026-02-01").await;
    let pay = |amount: &'static str| {
        let app = &app;
        async move {
            let reply = form(
                app,
                &app.owner,
                "/billing/payments",
                &format!("company_id={acme}&amount={amount}&received_on=2026-02-10&method=check"),
            )
            .await;
            location(&reply)
        }
    };
    let page = pay("400.00").await;
    // Unapply from the second invoice: 100.00 back to credit.
    let reply = form(
        &app,
        &app.owner,
        &format!("{page}/unapply"),
        &format!("invoice_id={}", invoices[1]),
    )
    .await;
    assert_eq!(location(&reply), page);
    let shown = get(&app, &app.owner, &page).await;
    assert!(shown
        .text
        .contains("<dd id=\"payment-credit\">100.00 USD</dd>"));
    // A refund of more than the credit is refused next to its field.
    let before = events(&app).await;
    let reply = form(
        &app,
        &app.owner,
        &format!("{page}/refund"),
        "amount=150.00&on=2026-02-12",
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(
        reply
            .text
            .contains("at most the payment&#39;s unapplied amount")
            || reply
                .text
                .contains("at most the payment&#x27;s unapplied amount"),
        "{}",
        reply.text
    );
    assert!(reply.text.contains("value=\"150.00\""));
    assert_eq!(events(&app).await, before);
    let reply = form(
        &app,
        &app.owner,
        &format!("{page}/refund"),
        "amount=40.00&on=2026-02-12&reference=wire 9",
    )
    .await;
    assert_eq!(flash(&reply), "Refund of 40.00 USD recorded.");
    let shown = get(&app, &app.owner, &page).await;
    assert!(shown
        .text
        .contains("<dd id=\"payment-credit\">60.00 USD</dd>"));
    // A partly refunded payment cannot be reversed: the page says why (409).
    let reply = form(
        &app,
        &app.owner,
        &format!("{page}/reverse"),
        "on=2026-02-15&reason=bounced",
    )
    .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    assert!(reply.text.contains("id=\"problem\""));
    // Another payment bounces: its invoice is owed again.
    let second = pay("200.00").await;
    let reply = form(&app, &app.owner, &format!("{second}/reverse"), "on=").await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply.text.contains("The date is required"),
        "{}",
        reply.text
    );
    let reply = form(
        &app,
        &app.owner,
        &format!("{second}/reverse"),
        "on=2026-02-20&reason=Check returned",
    )
    .await;
    assert_eq!(location(&reply), second);
    let shown = get(&app, &app.owner, &second).await;
    assert!(shown.text.contains("Reversed"));
    assert!(shown.text.contains("counts as never received"));
    assert!(!shown.text.contains("/reverse\""), "no second reversal");
    let l = ledger(&app, acme).await;
    assert_eq!(l.balance().to_string(), "240.00", "600 − 400 + 40 refunded");
}

#[tokio::test]
async fn invoices_are_raised_issued_credited_and_voided_through_the_forms() {
    let app = TestApp::new().await;
    let acme = company(&app, "Acme", "0.00").await;
    // The form with its empty rows; "Add line" gives one more, keeping what was typed.
    let page = get(
        &app,
        &app.owner,
        &format!("/billing/invoices/new?company_id={acme}"),
    )
    .await;
    ok(&page, "new invoice");
    assert!(page.text.contains("name=\"description_2\""));
    assert!(!page.text.contains("name=\"description_3\""));
    let reply = form(
        &app,
        &app.owner,
        "/billing/invoices",
        &format!("company_id={acme}&rows=3&description_0=Kept&action=add_line"),
    )
    .await;
    ok(&reply, "add line");
    assert!(reply.text.contains("name=\"description_3\""));
    assert!(reply.text.contains("value=\"Kept\""));
    // Bad lines: each message on its row, nothing appended.
    let before = events(&app).await;
    let reply = form(
        &app,
        &app.owner,
        "/billing/invoices",
        &format!(
            "company_id={acme}&rows=3&description_0=Router&quantity_0=two&unit_price_0=80\
             &description_1=&unit_price_1=5&description_2=Cable&unit_price_2=&action=issue&issue_date=2026-03-01"
        ),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(reply
        .text
        .contains("id=\"line-0-error\">The quantity must be a decimal number"));
    assert!(reply
        .text
        .contains("id=\"line-2-error\">The unit price is required."));
    assert!(reply.text.contains("value=\"two\""), "the input is kept");
    // What only pricing finds is put on its row too.
    let reply = form(
        &app,
        &app.owner,
        "/billing/invoices",
        &format!(
            "company_id={acme}&rows=3&description_0=Router&unit_price_0=80\
             &description_1=&unit_price_1=5&action=issue&issue_date=2026-03-01"
        ),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(
        reply
            .text
            .contains("id=\"line-1-error\">Description must be 1 to 500 characters."),
        "{}",
        reply.text
    );
    let reply = form(
        &app,
        &app.owner,
        "/billing/invoices",
        "rows=3&action=issue&issue_date=2026-03-01",
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.text.contains("Choose the company to invoice."));
    assert!(reply
        .text
        .contains("An invoice needs at least one line (or tick the unbilled work"));
    assert_eq!(events(&app).await, before);

    // A draft, then issued.
    let reply = form(
        &app,
        &app.owner,
        "/billing/invoices",
        &format!(
            "company_id={acme}&rows=3&description_0=Router&quantity_0=2&unit_price_0=80&tax_rate_0=20\
             &description_1=Setup&unit_price_1=50&action=draft"
        ),
    )
    .await;
    let draft = location(&reply);
    assert_eq!(flash(&reply), "Draft saved: issue it when it is ready.");
    let page = get(&app, &app.owner, &draft).await;
    for shown in [
        "Draft invoice",
        "Router",
        "Setup",
        "242.00 USD",
        "Issue this draft",
    ] {
        assert!(page.text.contains(shown), "{shown}\n{}", page.text);
    }
    let reply = form(
        &app,
        &app.owner,
        &format!("{draft}/issue"),
        "issue_date=2026-03-10&due_date=2026-03-01",
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply
        .text
        .contains("The due date must not be before the issue date."));
    let reply = form(
        &app,
        &app.owner,
        &format!("{draft}/issue"),
        "issue_date=2026-03-10",
    )
    .await;
    assert_eq!(location(&reply), draft);
    assert_eq!(flash(&reply), "Invoice 1 issued.");
    let page = get(&app, &app.owner, &draft).await;
    assert!(page.text.contains("<h1>Invoice 1"));
    assert!(page.text.contains("2026-03-24"), "due 14 days later");

    // A credit note larger than the balance is refused; a smaller one lowers it.
    let reply = form(
        &app,
        &app.owner,
        &format!("{draft}/credit-notes"),
        "amount=500&reason=too much",
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(reply.text.contains("id=\"credit-amount-error\""));
    let reply = form(
        &app,
        &app.owner,
        &format!("{draft}/credit-notes"),
        "amount=42.00&date=2026-03-12&reason=Goodwill",
    )
    .await;
    assert_eq!(flash(&reply), "Credit note 1 of 42.00 USD issued.");
    let page = get(&app, &app.owner, &draft).await;
    assert!(page.text.contains("Goodwill"));
    assert!(page
        .text
        .contains("<dd id=\"invoice-balance\">200.00 USD</dd>"));

    // Issued at once, then voided.
    let reply = form(
        &app,
        &app.owner,
        "/billing/invoices",
        &format!(
            "company_id={acme}&rows=1&description_0=Oops&unit_price_0=10&action=issue&issue_date=2026-03-11"
        ),
    )
    .await;
    let oops = location(&reply);
    assert_eq!(flash(&reply), "Invoice 2 issued.");
    let reply = form(
        &app,
        &app.owner,
        &format!("{oops}/void"),
        "reason=Raised in error",
    )
    .await;
    assert_eq!(
        flash(&reply),
        "Invoice 2 is void. To bill it again corrected, use Copy to a new invoice."
    );
    let page = get(&app, &app.owner, &oops).await;
    assert!(page.text.contains("id=\"invoice-status\">Void</span>"));
    let reply = form(&app, &app.owner, &format!("{oops}/void"), "reason=again").await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(
        reply.text.contains("This invoice is void."),
        "{}",
        reply.text
    );
}

#[tokio::test]
async fn contract_terms_are_set_and_stopped_from_the_company_tab() {
    let app = TestApp::new().await;
    let acme = company(&app, "Acme", "300.00").await;
    let tab = format!("/companies/{acme}/billing");
    let page = get(&app, &app.owner, &tab).await;
    ok(&page, "billing tab");
    assert!(page.text.contains("Not billed"));
    assert!(page.text.contains("No invoices yet."));
    // A bad billing day (and more) is shown next to its fields, nothing appended.
    let before = events(&app).await;
    let reply = form(
        &app,
        &app.owner,
        &tab,
        "billing_day=40&start_date=2026-01-01&end_date=2025-01-01&payment_terms_days=30&prorate=on",
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(reply
        .text
        .contains("id=\"billing-day-error\">The billing day must be from 1 to 31."));
    assert!(reply
        .text
        .contains("id=\"end-date-error\">The end date must not be before the start date."));
    assert!(reply.text.contains("value=\"40\""), "the input is kept");
    let reply = form(
        &app,
        &app.owner,
        &tab,
        "billing_day=x&start_date=soon&tax_rate=lots",
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.text.contains("id=\"start-date-error\""));
    assert!(reply.text.contains("id=\"tax-rate-error\""));
    assert_eq!(events(&app).await, before);

    let reply = form(
        &app,
        &app.owner,
        &tab,
        "billing_day=15&start_date=2026-01-15&payment_terms_days=30&tax_rate=20&tax_exempt=on",
    )
    .await;
    assert_eq!(location(&reply), tab);
    assert_eq!(flash(&reply), "Contract billing terms saved.");
    let (company, _) = app
        .store
        .load::<Company>(app.owner.tenant_id, &acme.to_string())
        .await
        .unwrap();
    let terms = company.billing.clone().unwrap();
    assert_eq!(terms.billing_day, 15);
    assert_eq!(terms.payment_terms_days, 30);
    assert!(!terms.prorate && terms.tax_exempt);
    assert_eq!(terms.tax_rate.unwrap().to_string(), "20");
    let page = get(&app, &app.owner, &tab).await;
    assert!(page
        .text
        .contains("Billed on day 15 of each month from 2026-01-15"));
    assert!(page.text.contains("Stop billing"));

    let reply = form(&app, &app.owner, &format!("{tab}/stop"), "").await;
    assert_eq!(location(&reply), tab);
    let (company, _) = app
        .store
        .load::<Company>(app.owner.tenant_id, &acme.to_string())
        .await
        .unwrap();
    assert!(company.billing.is_none());
}

#[tokio::test]
async fn billing_runs_from_the_overview_with_a_preview_that_bills_nothing() {
    let app = TestApp::new().await;
    let acme = company(&app, "Acme", "300.00").await;
    api(
        &app,
        Method::PUT,
        &format!("/api/v1/companies/{acme}/billing"),
        json!({"billing_day": 1, "start_date": "2026-01-16"}),
    )
    .await;
    let before = events(&app).await;
    let reply = form(
        &app,
        &app.owner,
        "/billing/run",
        "action=preview&as_of=2026-03-01",
    )
    .await;
    ok(&reply, "preview");
    assert!(reply.text.contains("id=\"preview\""));
    assert!(
        reply.text.contains("A run would make 3 invoices"),
        "{}",
        reply.text
    );
    assert!(
        reply.text.contains("2026-01-16 – 2026-01-31"),
        "the partial first month"
    );
    assert!(reply.text.contains("154.84 USD"), "16 of 31 days of 300.00");
    assert_eq!(events(&app).await, before, "a preview appends nothing");
    assert!(ledger(&app, acme).await.invoices.is_empty());
    // A bad date is shown next to the field.
    let reply = form(&app, &app.owner, "/billing/run", "action=run&as_of=March").await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply
        .text
        .contains("id=\"as-of-error\">The date must be a date YYYY-MM-DD."));
    assert_eq!(events(&app).await, before);

    let reply = form(
        &app,
        &app.owner,
        "/billing/run",
        "action=run&as_of=2026-03-01",
    )
    .await;
    assert_eq!(location(&reply), "/billing/invoices");
    assert_eq!(flash(&reply), "3 invoices made (billing up to 2026-03-01).");
    assert_eq!(ledger(&app, acme).await.invoices.len(), 3);
    let list = get(&app, &app.owner, "/billing/invoices").await;
    assert_eq!(list.text.matches("data-status=\"issued\"").count(), 3);
    // Again: nothing more is due.
    let reply = form(
        &app,
        &app.owner,
        "/billing/run",
        "action=run&as_of=2026-03-01",
    )
    .await;
    assert_eq!(
        flash(&reply),
        "No invoices made: nothing was due up to 2026-03-01."
    );
    let reply = form(
        &app,
        &app.owner,
        "/billing/run",
        "action=preview&as_of=2026-03-01",
    )
    .await;
    assert!(reply.text.contains("a run would make no invoices"));
}

#[tokio::test]
async fn the_invoice_list_filters_and_pages_older_invoices() {
    let app = TestApp::new().await;
    // 60 months: more than a page.
    let (acme, _) = billed(&app, "Acme", "100.00", "2030-12-01").await;
    let (_, other) = billed(&app, "Beta", "50.00", "2026-01-01").await;
    let list = get(
        &app,
        &app.owner,
        &format!("/billing/invoices?company_id={acme}"),
    )
    .await;
    ok(&list, "list");
    assert_eq!(list.text.matches("<tr data-id=").count(), 50);
    assert!(!list.text.contains(&other[0].to_string()));
    let older = list
        .text
        .split("href=\"")
        .find_map(|s| {
            let href = s.split('"').next()?;
            (href.contains("before=") && s.contains("Older")).then(|| href.replace("&#38;", "&"))
        })
        .expect("an Older link");
    let page = get(&app, &app.owner, &older).await;
    ok(&page, "older");
    assert_eq!(page.text.matches("<tr data-id=").count(), 10);
    assert!(page.text.contains("← Newest"));
    // Overdue invoices stand out.
    assert!(page.text.contains("data-overdue=\"true\""));
    assert!(page.text.contains("sla sla-breached\">Overdue"));
    // Bad filters: 422 with the messages.
    for (query, message) in [
        ("status=lost", "Status must be one of"),
        ("company_id=nope", "Company must be one of the list."),
        ("before=garbage", "This page link is not valid"),
    ] {
        let reply = get(&app, &app.owner, &format!("/billing/invoices?{query}")).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(reply.text.contains(message), "{query}: {}", reply.text);
    }
    let open = get(&app, &app.owner, "/billing/invoices?status=paid").await;
    assert!(open.text.contains("No invoices match these filters."));
    let bad = get(&app, &app.owner, "/billing/payments?company_id=nope").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn the_aging_report_shows_each_customer_with_a_chart_and_downloads_as_csv() {
    let app = TestApp::new().await;
    let (acme, _) = billed(&app, "Acme Widgets", "300.00", "2026-02-01").await;
    api(
        &app,
        Method::POST,
        "/api/v1/payments",
        json!({"company_id": acme, "amount": "100.00", "received_on": "2026-02-10",
               "method": "cash"}),
    )
    .await;
    let page = get(&app, &app.owner, "/billing/aging?as_of=2026-02-20").await;
    ok(&page, "aging");
    for shown in [
        "Acme Widgets",
        &format!("/billing/invoices?company_id={acme}&amp;status=open"),
        &format!("/companies/{acme}/statement?to=2026-02-20"),
        "id=\"aging-chart\"",
        "aging-fill aging-current",
        "href=\"/billing/aging.csv?as_of=2026-02-20\"",
        "500.00 USD",
    ] {
        assert!(page.text.contains(shown), "{shown}\n{}", page.text);
    }
    // Jan's invoice (due Jan 15) is 36 days late with 200.00 left; Feb's (due Feb 15) 5 days.
    assert!(page.text.contains("style=\"width:40.0%\""), "{}", page.text);
    assert!(page.text.contains("style=\"width:60.0%\""));
    let csv = get(&app, &app.owner, "/billing/aging.csv?as_of=2026-02-20").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.content_type.starts_with("text/csv"),
        "{}",
        csv.content_type
    );
    assert!(csv.text.starts_with("company_id,company_name,current"));
    assert!(
        csv.text.contains("Acme Widgets,0.00,300.00,200.00"),
        "{}",
        csv.text
    );
    assert!(csv.text.contains("Total as of 2026-02-20"));
    for path in [
        "/billing/aging?as_of=yesterday",
        "/billing/aging.csv?as_of=2026-13-01",
    ] {
        let reply = get(&app, &app.owner, path).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        assert!(reply.text.contains("The date must be a date YYYY-MM-DD."));
    }
}

#[tokio::test]
async fn invoice_and_statement_pdfs_download_and_the_statement_has_a_page() {
    let app = TestApp::new().await;
    let (acme, invoices) = billed(&app, "Acme", "300.00", "2026-02-01").await;
    let pdf = get(
        &app,
        &app.owner,
        &format!("/billing/invoices/{}/pdf", invoices[0]),
    )
    .await;
    assert_eq!(pdf.status, StatusCode::OK);
    assert_eq!(pdf.content_type, "application/pdf");
    assert!(pdf.text.starts_with("%PDF"));
    let statement = get(
        &app,
        &app.owner,
        &format!("/companies/{acme}/statement.pdf?from=2026-01-01&to=2026-02-28"),
    )
    .await;
    assert_eq!(statement.status, StatusCode::OK, "{}", statement.text);
    assert_eq!(statement.content_type, "application/pdf");
    let page = get(
        &app,
        &app.owner,
        &format!("/companies/{acme}/statement?from=2026-01-01&to=2026-02-28"),
    )
    .await;
    ok(&page, "statement");
    assert!(page.text.contains("Opening balance"));
    assert!(page.text.contains("Invoice 1, due 2026-01-15"));
    assert!(page
        .text
        .contains("<strong id=\"statement-closing\">600.00 USD</strong>"));
    assert!(page.text.contains(&format!(
        "/companies/{acme}/statement.pdf?from=2026-01-01&#38;to=2026-02-28"
    )));
    for query in ["from=2026-03-01&to=2026-01-01", "from=then"] {
        for path in ["statement", "statement.pdf"] {
            let reply = get(
                &app,
                &app.owner,
                &format!("/companies/{acme}/{path}?{query}"),
            )
            .await;
            assert_eq!(
                reply.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path}?{query}"
            );
            assert!(reply.text.contains("The start date"), "{}", reply.text);
        }
    }
}

#[tokio::test]
async fn billing_settings_are_saved_through_their_form() {
    let app = TestApp::new().await;
    let before = events(&app).await;
    let reply = form(
        &app,
        &app.owner,
        "/settings/billing",
        "address=1+Main+St&reminder_days=7%2C+soon&fee_kind=percent&fee_amount=150&fee_after_days=0",
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(reply.text.contains("id=\"reminder-days-error\""));
    assert!(reply
        .text
        .contains("id=\"fee-amount-error\">The fee must be a percentage above 0"));
    assert!(reply.text.contains("id=\"fee-after-days-error\""));
    assert!(reply.text.contains("1 Main St"), "the input is kept");
    assert_eq!(events(&app).await, before);
    let reply = form(
        &app,
        &app.owner,
        "/settings/billing",
        "address=1+Main+St%0D%0ASpringfield&tax_id=VAT+123&payment_instructions=IBAN+XX00\
         &contact=billing%40acme.test&reminder_days=30%2C+7&fee_kind=flat&fee_amount=25&fee_after_days=30",
    )
    .await;
    assert_eq!(location(&reply), "/settings/billing");
    let (tenant, _) = app
        .store
        .load::<Tenant>(app.owner.tenant_id, &app.owner.tenant_id.to_string())
        .await
        .unwrap();
    assert_eq!(tenant.billing_profile.tax_id, "VAT 123");
    assert_eq!(tenant.late_payment.reminder_days, [7, 30]);
    let fee = tenant.late_payment.fee.unwrap();
    assert!(!fee.percent && fee.after_days == 30 && fee.amount.to_string() == "25");
    let page = get(&app, &app.owner, "/settings/billing").await;
    assert!(page.text.contains("value=\"7, 30\""));
    assert!(page.text.contains("value=\"flat\" checked"));
    let settings = get(&app, &app.owner, "/settings").await;
    assert!(settings.text.contains("href=\"/settings/billing\""));
}

#[tokio::test]
async fn billing_forms_without_the_csrf_token_are_refused() {
    let app = TestApp::new().await;
    let (acme, invoices) = billed(&app, "Acme", "100.00", "2026-01-01").await;
    let payment = api(
        &app,
        Method::POST,
        "/api/v1/payments",
        json!({"company_id": acme, "amount": "150.00", "received_on": "2026-01-05",
               "method": "cash"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let invoice = invoices[0];
    let before = events(&app).await;
    for (path, body) in [
        (
            "/billing/run".to_owned(),
            "action=run&as_of=2026-03-01".to_owned(),
        ),
        (
            "/billing/payments".to_owned(),
            format!("company_id={acme}&amount=10&received_on=2026-01-06&method=cash"),
        ),
        (
            "/billing/invoices".to_owned(),
            format!("company_id={acme}&rows=1&description_0=X&unit_price_0=1&action=draft"),
        ),
        (
            format!("/billing/invoices/{invoice}/void"),
            "reason=x".to_owned(),
        ),
        (
            format!("/billing/invoices/{invoice}/credit-notes"),
            "amount=1".to_owned(),
        ),
        (format!("/billing/invoices/{invoice}/issue"), String::new()),
        (
            format!("/billing/payments/{payment}/refund"),
            "amount=1&on=2026-01-06".to_owned(),
        ),
        (
            format!("/billing/payments/{payment}/reverse"),
            "on=2026-01-06".to_owned(),
        ),
        (
            format!("/billing/payments/{payment}/unapply"),
            format!("invoice_id={invoice}"),
        ),
        (
            format!("/companies/{acme}/billing"),
            "billing_day=5&start_date=2026-01-01".to_owned(),
        ),
        (format!("/companies/{acme}/billing/stop"), String::new()),
        ("/settings/billing".to_owned(), "tax_id=X".to_owned()),
    ] {
        let reply = form_without_csrf(&app, &app.owner, &path, &body).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        assert!(reply.text.contains("This form has expired"), "{path}");
        let reply =
            form_without_csrf(&app, &app.owner, &path, &format!("csrf=forged&{body}")).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(events(&app).await, before, "nothing appended");
}

#[tokio::test]
async fn services_are_catalogued_and_companies_subscribed_from_their_billing_tab() {
    let app = TestApp::new().await;
    let page = get(&app, &app.owner, "/billing/services").await;
    ok(&page, "catalogue");
    assert!(page.text.contains("No services in the catalogue yet."));
    let overview = get(&app, &app.owner, "/billing").await;
    assert!(overview.text.contains("href=\"/billing/services\""));
    // A bad service is shown again with its messages, nothing appended.
    let before = events(&app).await;
    let reply = form(
        &app,
        &app.owner,
        "/billing/services",
        "name=&tier=premium&price=lots&period=weekly",
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(reply
        .text
        .contains("id=\"name-error\">The name must be 1 to 200 characters."));
    assert!(reply.text.contains("id=\"price-error\">The price must be"));
    assert!(reply
        .text
        .contains("id=\"period-error\">The period must be monthly, quarterly or yearly."));
    assert!(
        reply.text.contains("value=\"premium\""),
        "the input is kept"
    );
    assert_eq!(events(&app).await, before);

    let reply = form(
        &app,
        &app.owner,
        "/billing/services",
        "name=Cloud+backup&tier=premium&price=29&period=quarterly",
    )
    .await;
    assert_eq!(location(&reply), "/billing/services");
    assert_eq!(
        flash(&reply),
        "Service \"Cloud backup\" added to the catalogue."
    );
    let (tenant, _) = app
        .store
        .load::<Tenant>(app.owner.tenant_id, &app.owner.tenant_id.to_string())
        .await
        .unwrap();
    let (&service, saved) = tenant.services.iter().next().unwrap();
    assert_eq!(saved.name, "Cloud backup");
    assert_eq!(saved.period.as_str(), "quarterly");
    let page = get(&app, &app.owner, "/billing/services").await;
    ok(&page, "catalogue");
    assert!(page.text.contains(&format!(
        "<a href=\"/billing/services/{service}\">Cloud backup</a>"
    )));
    assert!(page.text.contains("29.00"));
    // Its page changes it.
    let page = get(&app, &app.owner, &format!("/billing/services/{service}")).await;
    ok(&page, "service page");
    assert!(page.text.contains("value=\"Cloud backup\""));
    let reply = form(
        &app,
        &app.owner,
        &format!("/billing/services/{service}"),
        "name=Cloud+backup&tier=premium&price=-3&period=quarterly",
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.text.contains("id=\"price-error\""));
    let reply = form(
        &app,
        &app.owner,
        &format!("/billing/services/{service}"),
        "name=Cloud+backup&tier=premium&price=30&period=monthly",
    )
    .await;
    assert_eq!(location(&reply), "/billing/services");

    // A company subscribes through its Billing tab.
    let acme = company(&app, "Acme", "100.00").await;
    let tab = format!("/companies/{acme}/billing");
    let page = get(&app, &app.owner, &tab).await;
    ok(&page, "billing tab");
    assert!(page.text.contains("No subscriptions yet."));
    assert!(page.text.contains(&format!("<option value=\"{service}\"")));
    let before = events(&app).await;
    let reply = form(
        &app,
        &app.owner,
        &format!("/companies/{acme}/subscriptions"),
        "service_id=&quantity=lots&start_date=2026-01-01",
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(reply
        .text
        .contains("id=\"sub-service-error\">The service is required."));
    assert!(reply.text.contains("id=\"sub-quantity-error\""));
    assert!(reply.text.contains("value=\"lots\""), "the input is kept");
    assert_eq!(events(&app).await, before);
    let reply = form(
        &app,
        &app.owner,
        &format!("/companies/{acme}/subscriptions"),
        &format!("service_id={service}&quantity=5&start_date=2026-01-01&end_date=&price="),
    )
    .await;
    assert_eq!(location(&reply), format!("{tab}#subscriptions"));
    assert_eq!(flash(&reply), "Subscribed to \"Cloud backup\".");
    let (acme_now, _) = app
        .store
        .load::<Company>(app.owner.tenant_id, &acme.to_string())
        .await
        .unwrap();
    let (&subscription, s) = acme_now.subscriptions.iter().next().unwrap();
    assert_eq!(s.quantity.to_string(), "5");
    assert!(s.end_date.is_none() && s.price.is_none());
    let page = get(&app, &app.owner, &tab).await;
    assert!(page
        .text
        .contains(&format!("<tr data-id=\"{subscription}\">")));
    assert!(page.text.contains("30.00"));

    // Ended: a day before the start is refused next to its form.
    let end = format!("/companies/{acme}/subscriptions/{subscription}/end");
    let reply = form(&app, &app.owner, &end, "end_date=2025-12-31").await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.text.contains(&format!(
        "id=\"end-error-{subscription}\">The end date must not be before the start date."
    )));
    let reply = form(&app, &app.owner, &end, "end_date=2026-06-30").await;
    assert_eq!(location(&reply), format!("{tab}#subscriptions"));
    let (acme_now, _) = app
        .store
        .load::<Company>(app.owner.tenant_id, &acme.to_string())
        .await
        .unwrap();
    let s = &acme_now.subscriptions[&subscription];
    assert_eq!(s.end_date.unwrap().to_string(), "2026-06-30");
    assert_eq!(s.quantity.to_string(), "5");
    let page = get(&app, &app.owner, &tab).await;
    assert!(page.text.contains("2026-06-30"));

    // Technicians see none of it; forms need their CSRF token.
    let technician = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    for path in [
        "/billing/services".to_owned(),
        format!("/billing/services/{service}"),
    ] {
        let reply = get(&app, &technician, &path).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
    }
    let before = events(&app).await;
    let reply = form(&app, &technician, "/billing/services", "name=X&price=1").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    for (path, body) in [
        ("/billing/services".to_owned(), "name=X&price=1".to_owned()),
        (
            format!("/billing/services/{service}"),
            "name=X&price=1".to_owned(),
        ),
        (
            format!("/companies/{acme}/subscriptions"),
            format!("service_id={service}&start_date=2026-01-01"),
        ),
        (end.clone(), "end_date=2026-07-31".to_owned()),
    ] {
        let reply = form_without_csrf(&app, &app.owner, &path, &body).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(events(&app).await, before, "nothing appended");
}

#[tokio::test]
async fn the_invoice_form_bills_a_company_s_unbilled_work_once() {
    let app = TestApp::new().await;
    let acme = company(&app, "Initech", "0").await;
    let order = api(
        &app,
        Method::POST,
        "/api/v1/work-orders",
        json!({"company_id": acme, "title": "Office move"}),
    )
    .await;
    let order_id = order["id"].as_str().unwrap();
    api(
        &app,
        Method::POST,
        &format!("/api/v1/work-orders/{order_id}/materials"),
        json!({"description": "Cat6 patch cable", "quantity": "12", "unit_price": "4.50"}),
    )
    .await;
    let before = events(&app).await;
    // A draft cannot take the work; the box stays ticked and the message says why.
    let reply = form(
        &app,
        &app.owner,
        "/billing/invoices",
        &format!("company_id={acme}&rows=3&unbilled_work=on&action=draft"),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(
        reply
            .text
            .contains("id=\"unbilled-error\">Unbilled work is billed when the invoice is issued"),
        "{}",
        reply.text
    );
    assert!(reply.text.contains("id=\"unbilled_work\" checked"));
    assert_eq!(events(&app).await, before);
    // Issued with no line typed: the material is the invoice.
    let today = page_today(&app).await;
    let reply = form(
        &app,
        &app.owner,
        "/billing/invoices",
        &format!("company_id={acme}&rows=3&unbilled_work=on&issue_date={today}&action=issue"),
    )
    .await;
    let invoice = location(&reply);
    assert_eq!(flash(&reply), "Invoice 1 issued.");
    let page = get(&app, &app.owner, &invoice).await;
    for shown in [
        "Cat6 patch cable on",
        "54.00 USD",
        "Return its 1 line of time and materials to the unbilled work",
    ] {
        assert!(page.text.contains(shown), "{shown}\n{}", page.text);
    }
    // Voided with the box unticked: the work stays billed.
    let reply = form(
        &app,
        &app.owner,
        &format!("{invoice}/void"),
        "work_shown=1&reason=Sent+twice",
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    assert!(ledger(&app, acme)
        .await
        .billed
        .iter()
        .any(|b| b.starts_with("material/")));
    // Nothing is left: the same form now says so, and makes nothing.
    let before = events(&app).await;
    let reply = form(
        &app,
        &app.owner,
        "/billing/invoices",
        &format!("company_id={acme}&rows=3&unbilled_work=on&issue_date={today}&action=issue"),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(
        reply
            .text
            .contains("Initech has no billable time or materials up to"),
        "{}",
        reply.text
    );
    assert_eq!(events(&app).await, before);
}

/// Today in the tenant's zone, as the billing forms see it.
async fn page_today(app: &TestApp) -> String {
    let tenant = app
        .store
        .load::<domain::tenant::Tenant>(app.owner.tenant_id, &app.owner.tenant_id.to_string())
        .await
        .unwrap()
        .0;
    web::billing::run::today(&tenant).to_string()
}

#[tokio::test]
async fn a_void_contract_invoice_is_copied_to_a_new_invoice_and_billed_again() {
    let app = TestApp::new().await;
    let acme = company(&app, "Acme", "700.00").await;
    api(
        &app,
        Method::PUT,
        &format!("/api/v1/companies/{acme}/billing"),
        json!({"billing_day": 1, "start_date": "2026-01-01", "payment_terms_days": 14}),
    )
    .await;
    let order = api(
        &app,
        Method::POST,
        "/api/v1/work-orders",
        json!({"company_id": acme, "title": "Office move"}),
    )
    .await;
    api(
        &app,
        Method::POST,
        &format!(
            "/api/v1/work-orders/{}/materials",
            order["id"].as_str().unwrap()
        ),
        json!({"description": "Cat6 patch cable", "quantity": "12", "unit_price": "4.50"}),
    )
    .await;
    let today = page_today(&app).await;
    let made = api(
        &app,
        Method::POST,
        "/api/v1/billing/runs",
        json!({ "as_of": today }),
    )
    .await;
    // The latest period's invoice has the contract line and the material.
    let last = made["invoices"].as_array().unwrap().last().unwrap().clone();
    let number = last["number"].as_i64().unwrap();
    let invoice = format!("/billing/invoices/{}", last["id"].as_str().unwrap());
    assert_eq!(last["total"], "754.00", "{last}");
    let page = get(&app, &app.owner, &invoice).await;
    assert!(page.text.contains("id=\"invoice-copy\""), "{}", page.text);
    // Voided (the rate was wrong), its material returned to the unbilled work.
    let reply = form(
        &app,
        &app.owner,
        &format!("{invoice}/void"),
        "work_shown=1&release_work=on&reason=Wrong+rate",
    )
    .await;
    assert_eq!(
        flash(&reply),
        format!("Invoice {number} is void. To bill it again corrected, use Copy to a new invoice.")
    );

    // The copy: the company chosen, the contract line filled in, the material left to the box.
    let before = events(&app).await;
    let copy = format!(
        "/billing/invoices/new?copy_of={}",
        last["id"].as_str().unwrap()
    );
    let form_page = get(&app, &app.owner, &copy).await;
    ok(&form_page, "the copy");
    for shown in [
        &format!("Copied from invoice {number} (void): 1 line. Check it, then issue"),
        "Its 1 line of time and materials is not copied",
        &format!("<option value=\"{acme}\" selected>Acme</option>"),
        "name=\"description_0\" value=\"Acme contract, ",
        "name=\"quantity_0\" value=\"1\"",
        "name=\"unit_price_0\" value=\"700.00\"",
        "name=\"description_1\" value=\"\"",
        "name=\"rows\" value=\"2\"",
        "id=\"unbilled_work\" checked",
    ] {
        assert!(
            form_page.text.contains(shown),
            "{shown}\n{}",
            form_page.text
        );
    }
    assert!(!form_page.text.contains("Cat6"), "{}", form_page.text);
    assert_eq!(
        events(&app).await,
        before,
        "showing the copy appends nothing"
    );

    // Sent as corrected: the period at the right rate and the material, billed once again.
    let description = form_page
        .text
        .split("name=\"description_0\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let body = format!(
        "company_id={acme}&rows=2&description_0={}&quantity_0=1&unit_price_0=650.00\
         &unbilled_work=on&issue_date={today}&action=issue",
        description.replace(' ', "+").replace(',', "%2C")
    );
    let reply = form(&app, &app.owner, "/billing/invoices", &body).await;
    let again = location(&reply);
    assert_eq!(flash(&reply), format!("Invoice {} issued.", number + 1));
    let page = get(&app, &app.owner, &again).await;
    for shown in ["Acme contract, ", "Cat6 patch cable on", "704.00 USD"] {
        assert!(page.text.contains(shown), "{shown}\n{}", page.text);
    }
    // The material is billed by the new invoice: a second copy finds no work to add.
    let books = ledger(&app, acme).await;
    let again_id: Uuid = again.rsplit('/').next().unwrap().parse().unwrap();
    assert!(books.invoices[&again_id]
        .lines
        .iter()
        .any(|l| l.description.contains("Cat6 patch cable")));
    let reply = form(
        &app,
        &app.owner,
        "/billing/invoices",
        &format!("company_id={acme}&rows=1&unbilled_work=on&issue_date={today}&action=issue"),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );

    // A copy of the invoice still standing leaves its material to it: the box stays unticked.
    let standing = get(
        &app,
        &app.owner,
        &format!("/billing/invoices/new?copy_of={again_id}"),
    )
    .await;
    ok(&standing, "the copy of a standing invoice");
    for shown in [
        &format!("Copied from invoice {}: 1 line. Check it,", number + 1),
        "Its 1 line of time and materials is not copied: each is billed once, by that invoice.",
        "name=\"unit_price_0\" value=\"650.00\"",
    ] {
        assert!(standing.text.contains(shown), "{shown}\n{}", standing.text);
    }
    assert!(!standing.text.contains("id=\"unbilled_work\" checked"));

    // Nobody else copies it: a technician is refused, another tenant finds nothing, and an
    // address that names no invoice is explained.
    let technician = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    assert_eq!(
        get(&app, &technician, &copy).await.status,
        StatusCode::FORBIDDEN
    );
    let other = app.other_tenant("Rival IT", "owner@rival.test").await;
    let reply = get(&app, &other, &copy).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    assert!(!reply.text.contains("Acme"));
    let reply = get(&app, &app.owner, "/billing/invoices/new?copy_of=12345").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert!(reply
        .text
        .contains("The invoice to copy is not an invoice id."));
    let reply = get(
        &app,
        &app.owner,
        &format!("/billing/invoices/new?copy_of={}", Uuid::new_v4()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
}
