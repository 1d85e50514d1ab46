//! Billing through the API: contracts billed by runs (month ends, catch-up, re-runs, races),
//! payments applied oldest due first with credit carried to the next invoice, concurrent
//! payments, corrections (unapply, refund, bounced check, credit notes, voids), and bad
//! input refused with nothing appended.

use std::str::FromStr;

use axum::http::{Method, StatusCode};
use domain::ledger::{ledger_id, Ledger};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use st_tests::TestApp;
use uuid::Uuid;

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

async fn company(app: &TestApp, name: &str, rate: &str) -> Uuid {
    let reply = app
        .request(
            Method::POST,
            "/api/v1/companies",
            Some(&json!({"name": name, "monthly_rate": rate}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json()["id"].as_str().unwrap().parse().unwrap()
}

async fn terms(app: &TestApp, company: Uuid, body: Value) {
    let reply = app
        .request(
            Method::PUT,
            &format!("/api/v1/companies/{company}/billing"),
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

async fn run(app: &TestApp, as_of: &str) -> Vec<Value> {
    let reply = app
        .request(
            Method::POST,
            "/api/v1/billing/runs",
            Some(&json!({ "as_of": as_of }).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json()["invoices"].as_array().unwrap().clone()
}

async fn pay(app: &TestApp, company: Uuid, amount: &str, on: &str) -> Value {
    let reply = app
        .request(
            Method::POST,
            "/api/v1/payments",
            Some(
                &json!({"company_id": company, "amount": amount, "received_on": on,
                        "method": "check", "reference": "1234"})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json()
}

async fn ledger(app: &TestApp, company: Uuid) -> Ledger {
    app.store
        .load::<Ledger>(app.owner.tenant_id, &ledger_id(company))
        .await
        .unwrap()
        .0
}

async fn events(app: &TestApp) -> i64 {
    app.db.count("SELECT count(*) FROM events").await
}

#[tokio::test]
async fn billing_day_31_bills_every_month_end_once_without_drifting() {
    let app = TestApp::new().await;
    let acme = company(&app, "Northwind", "300.00").await;
    terms(
        &app,
        acme,
        json!({"billing_day": 31, "start_date": "2026-01-31", "payment_terms_days": 30}),
    )
    .await;
    // Nothing is due before the start.
    assert!(run(&app, "2026-01-30").await.is_empty());
    // Down all year: the first run catches up, each invoice dated on its own billing date.
    let made = run(&app, "2026-12-31").await;
    let dates: Vec<&str> = made
        .iter()
        .map(|i| i["issue_date"].as_str().unwrap())
        .collect();
    assert_eq!(
        dates,
        [
            "2026-01-31",
            "2026-02-28",
            "2026-03-31",
            "2026-04-30",
            "2026-05-31",
            "2026-06-30",
            "2026-07-31",
            "2026-08-31",
            "2026-09-30",
            "2026-10-31",
            "2026-11-30",
            "2026-12-31"
        ]
    );
    let numbers: Vec<u64> = made.iter().map(|i| i["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (1..=12).collect::<Vec<_>>(), "sequential, no gaps");
    assert!(made.iter().all(|i| i["total"] == "300.00"));
    assert_eq!(made[1]["due_date"], "2026-03-30", "30 days after Feb 28");
    // The same run again bills nothing.
    let before = events(&app).await;
    assert!(run(&app, "2026-12-31").await.is_empty());
    assert_eq!(events(&app).await, before, "a re-run appends nothing");
    let l = ledger(&app, acme).await;
    assert_eq!(l.invoices.len(), 12);
    assert_eq!(l.balance(), dec("3600.00"));
}

#[tokio::test]
async fn racing_runs_bill_each_period_once() {
    let app = TestApp::new().await;
    let mut companies = Vec::new();
    for n in 0..5 {
        let c = company(&app, &format!("Customer {n}"), "100.00").await;
        terms(
            &app,
            c,
            json!({"billing_day": 1, "start_date": "2026-09-01"}),
        )
        .await;
        companies.push(c);
    }
    let (a, b, c) = tokio::join!(
        run(&app, "2026-11-30"),
        run(&app, "2026-11-30"),
        run(&app, "2026-11-30")
    );
    assert_eq!(
        a.len() + b.len() + c.len(),
        15,
        "5 companies × 3 months, once each"
    );
    let mut numbers: Vec<u64> = a
        .iter()
        .chain(&b)
        .chain(&c)
        .map(|i| i["number"].as_u64().unwrap())
        .collect();
    numbers.sort();
    assert_eq!(numbers, (1..=15).collect::<Vec<_>>());
    for c in companies {
        assert_eq!(ledger(&app, c).await.invoices.len(), 3);
    }
}

#[tokio::test]
async fn a_partial_first_month_is_prorated_and_previews_bill_nothing() {
    let app = TestApp::new().await;
    let acme = company(&app, "Northwind", "300.00").await;
    terms(
        &app,
        acme,
        json!({"billing_day": 1, "start_date": "2026-11-16", "tax_rate": "20"}),
    )
    .await;
    let preview = app
        .request(
            Method::POST,
            "/api/v1/billing/runs/preview",
            Some(&json!({"as_of": "2026-12-01"}).to_string()),
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
    let would = preview.json()["invoices"].as_array().unwrap().clone();
    assert_eq!(would.len(), 2);
    assert!(would.iter().all(|i| i["number"].is_null()));
    assert_eq!(
        ledger(&app, acme).await.invoices.len(),
        0,
        "a preview bills nothing"
    );
    let made = run(&app, "2026-12-01").await;
    // 15 of 30 days of 300.00 = 150.00, + 20% tax.
    assert_eq!(made[0]["issue_date"], "2026-11-16");
    assert_eq!(made[0]["total"], "180.00");
    assert_eq!(made[1]["issue_date"], "2026-12-01");
    assert_eq!(made[1]["total"], "360.00");
}

#[tokio::test]
async fn payments_pay_the_oldest_due_first_and_credit_pays_the_next_invoice() {
    let app = TestApp::new().await;
    let acme = company(&app, "Northwind", "500.00").await;
    terms(
        &app,
        acme,
        json!({"billing_day": 1, "start_date": "2026-01-01"}),
    )
    .await;
    let made = run(&app, "2026-02-01").await;
    let (jan, feb) = (made[0]["id"].clone(), made[1]["id"].clone());
    let payment = pay(&app, acme, "700.00", "2026-02-10").await;
    assert_eq!(payment["allocations"][0]["invoice_id"], jan);
    assert_eq!(payment["allocations"][0]["amount"], "500.00");
    assert_eq!(payment["allocations"][1]["invoice_id"], feb);
    assert_eq!(payment["allocations"][1]["amount"], "200.00");
    assert_eq!(payment["unapplied"], "0.00");
    let over = pay(&app, acme, "450.00", "2026-02-20").await;
    assert_eq!(
        over["unapplied"], "150.00",
        "300.00 to February, the rest is credit"
    );
    // March's invoice takes the credit when it is issued.
    run(&app, "2026-03-01").await;
    let l = ledger(&app, acme).await;
    assert_eq!(l.unapplied(), dec("0.00"));
    assert_eq!(l.balance(), dec("350.00"));
    let march = l
        .invoices
        .values()
        .find(|i| i.issue_date.unwrap().to_string() == "2026-03-01")
        .unwrap();
    assert_eq!(march.balance(), dec("350.00"));

    // A bounced check: February is owed again.
    let bounced = app
        .request(
            Method::POST,
            &format!(
                "/api/v1/payments/{}/reverse",
                payment["id"].as_str().unwrap()
            ),
            Some(&json!({"on": "2026-03-05", "reason": "returned by the bank"}).to_string()),
        )
        .await;
    assert_eq!(bounced.status, StatusCode::OK, "{}", bounced.text);
    let l = ledger(&app, acme).await;
    assert_eq!(l.balance(), dec("1050.00"));
    // Invoices − credit notes − payments + refunds, exactly.
    let invoices: Decimal = l.invoices.values().map(|i| i.total).sum();
    assert_eq!(l.balance(), invoices - dec("450.00"));
}

#[tokio::test]
async fn eight_concurrent_payments_on_one_company_allocate_every_cent_once() {
    let app = TestApp::new().await;
    let acme = company(&app, "Northwind", "100.00").await;
    terms(
        &app,
        acme,
        json!({"billing_day": 1, "start_date": "2026-01-01"}),
    )
    .await;
    run(&app, "2026-06-01").await; // 6 × 100.00
    let payments = futures::future::join_all((0..8).map(|n| {
        let amount = format!("{}.{:02}", 70 + n, n * 7);
        let app = &app;
        async move { pay(app, acme, &amount, "2026-06-10").await }
    }))
    .await;
    let paid: Decimal = payments
        .iter()
        .map(|p| dec(p["amount"].as_str().unwrap()))
        .sum();
    let l = ledger(&app, acme).await;
    let allocated: Decimal = l.payments.values().map(|p| p.allocated()).sum();
    let unapplied = l.unapplied();
    assert_eq!(allocated + unapplied, paid, "every cent is somewhere, once");
    assert!(l.invoices.values().all(|i| i.paid <= i.total));
    let on_invoices: Decimal = l.invoices.values().map(|i| i.paid).sum();
    assert_eq!(on_invoices, allocated);
    assert_eq!(l.balance(), dec("600.00") - paid);
    // Oldest first: the invoices paid in full are the oldest ones.
    let mut by_date: Vec<_> = l.invoices.values().collect();
    by_date.sort_by_key(|i| i.due_date);
    let first_open = by_date.iter().position(|i| i.balance() > Decimal::ZERO);
    if let Some(open) = first_open {
        assert!(by_date[open + 1..]
            .iter()
            .all(|i| i.paid == Decimal::ZERO || i.balance() == Decimal::ZERO));
    }
}

#[tokio::test]
async fn bad_billing_input_is_refused_naming_each_field_and_appends_nothing() {
    let app = TestApp::new().await;
    let acme = company(&app, "Northwind", "100.00").await;
    let before = events(&app).await;
    let reply = app
        .request(
            Method::POST,
            "/api/v1/payments",
            Some(
                &json!({"company_id": acme, "amount": "-5", "received_on": "2026-13-01",
                         "method": "bitcoin"})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    let text = reply.text.clone();
    for field in ["amount", "received_on", "method"] {
        assert!(text.contains(field), "{field} named: {text}");
    }
    let reply = app
        .request(
            Method::PUT,
            &format!("/api/v1/companies/{acme}/billing"),
            Some(
                &json!({"billing_day": 32, "start_date": "2026-01-01", "end_date": "2025-12-31",
                         "payment_terms_days": 400})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    for field in ["billing_day", "end_date", "payment_terms_days"] {
        assert!(reply.text.contains(field), "{field} named: {}", reply.text);
    }
    let reply = app
        .request(
            Method::POST,
            "/api/v1/billing/runs",
            Some(&json!({"as_of": "yesterday"}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let reply = app
        .request(
            Method::POST,
            "/api/v1/invoices",
            Some(&json!({"company_id": acme, "lines": [{"description": "", "quantity": "0", "unit_price": "x"}]}).to_string()),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert_eq!(events(&app).await, before, "nothing appended");
    // Another tenant's company is not found.
    let other = app.other_tenant("Other MSP", "owner@other.test").await;
    let reply = app
        .send_as(
            Some(&other),
            Method::POST,
            "/api/v1/payments",
            Some(
                &json!({"company_id": acme, "amount": "5.00", "received_on": "2026-01-01",
                         "method": "cash"})
                .to_string(),
            ),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
}

#[tokio::test]
async fn ad_hoc_invoices_drafts_credit_notes_and_voids() {
    let app = TestApp::new().await;
    let acme = company(&app, "Northwind", "0.00").await;
    let reply = app
        .request(
            Method::POST,
            "/api/v1/invoices",
            Some(&json!({"company_id": acme, "lines": [
                {"description": "Router", "quantity": "2", "unit_price": "89.995", "tax_rate": "20"},
                {"description": "Installation", "quantity": "1.5", "unit_price": "85"}
            ]}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let draft = reply.json();
    assert_eq!(draft["status"], "draft");
    assert!(draft["number"].is_null());
    // 179.99 + 36.00 tax + 127.50 = 343.49
    assert_eq!(draft["total"], "343.49");
    let id = draft["id"].as_str().unwrap();
    let issued = app
        .request(
            Method::POST,
            &format!("/api/v1/invoices/{id}/issue"),
            Some(&json!({"issue_date": "2026-11-21"}).to_string()),
        )
        .await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.text);
    assert_eq!(issued.json()["number"], 1);
    let credit = app
        .request(
            Method::POST,
            &format!("/api/v1/invoices/{id}/credit-notes"),
            Some(&json!({"amount": "43.49", "reason": "goodwill"}).to_string()),
        )
        .await;
    assert_eq!(credit.status, StatusCode::CREATED, "{}", credit.text);
    assert_eq!(credit.json()["invoice"]["balance"], "300.00");
    let too_much = app
        .request(
            Method::POST,
            &format!("/api/v1/invoices/{id}/credit-notes"),
            Some(&json!({"amount": "300.01"}).to_string()),
        )
        .await;
    assert_eq!(
        too_much.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        too_much.text
    );
    pay(&app, acme, "100.00", "2026-11-22").await;
    let void = app
        .request(
            Method::POST,
            &format!("/api/v1/invoices/{id}/void"),
            Some(&json!({"reason": "wrong customer"}).to_string()),
        )
        .await;
    assert_eq!(
        void.status,
        StatusCode::CONFLICT,
        "a paid invoice is not voided: {}",
        void.text
    );
    let l = ledger(&app, acme).await;
    assert_eq!(l.balance(), dec("200.00"));
}

/// What accountants read: the invoice list and detail, the PDF (text extractable, branded),
/// the aging report today and as of a past date, its CSV, a statement.
#[tokio::test]
async fn invoices_pdfs_aging_and_statements_read_what_the_ledger_holds() {
    let app = TestApp::new().await;
    let settings = |fee: bool| {
        json!({"address": "1 Main Street\nSpringfield", "tax_id": "VAT GB123",
               "payment_instructions": "IBAN GB00 0000", "reminder_days": [7, 30],
               "late_fee": if fee { json!({"after_days": 30, "amount": "25.00"}) } else { Value::Null }})
        .to_string()
    };
    let reply = app
        .request(
            Method::PUT,
            "/api/v1/settings/billing",
            Some(&settings(false)),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let acme = company(&app, "Société Générale – Müller", "1000.00").await;
    terms(
        &app,
        acme,
        json!({"billing_day": 1, "start_date": "2026-01-01", "payment_terms_days": 14}),
    )
    .await;
    run(&app, "2026-03-01").await; // Jan, Feb, Mar: 1,000.00 each, due on the 15th
    pay(&app, acme, "1500.00", "2026-02-20").await; // Jan paid, Feb half

    let list = app
        .request(
            Method::GET,
            &format!("/api/v1/invoices?company_id={acme}"),
            None,
        )
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let invoices = list.json()["invoices"].as_array().unwrap().clone();
    assert_eq!(invoices.len(), 3);
    let jan = invoices
        .iter()
        .find(|i| i["issue_date"] == "2026-01-01")
        .unwrap();
    assert_eq!(jan["status"], "paid");
    assert_eq!(jan["balance"], "0.00");
    let feb = invoices
        .iter()
        .find(|i| i["issue_date"] == "2026-02-01")
        .unwrap();
    assert_eq!(feb["status"], "partially_paid");
    assert_eq!(feb["balance"], "500.00");
    for field in [
        "id",
        "number",
        "issue_date",
        "due_date",
        "total",
        "balance",
        "status",
    ] {
        assert!(!feb[field].is_null(), "{field}");
    }

    let pdf = app
        .request(
            Method::GET,
            &format!("/api/v1/invoices/{}/pdf", feb["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(pdf.status, StatusCode::OK);
    assert_eq!(pdf.content_type, "application/pdf");
    let bytes = app
        .bytes(
            Method::GET,
            &format!("/api/v1/invoices/{}/pdf", feb["id"].as_str().unwrap()),
        )
        .await;
    let doc = lopdf::Document::load_mem(&bytes).unwrap();
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    let text = doc.extract_text(&pages).unwrap();
    for expected in [
        "Acme IT",
        "1 Main Street",
        "VAT GB123",
        "Société Générale – Müller",
        "1,000.00",
        "500.00",
        "IBAN GB00 0000",
        "2026-02-15",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} in the PDF's text: {text}"
        );
    }

    // A late fee of 25.00 thirty days past due: February's invoice (due Feb 15) gets one,
    // dated March 17, and a reminder at 30 days; March's (due Mar 15) is 5 days late.
    let reply = app
        .request(
            Method::PUT,
            "/api/v1/settings/billing",
            Some(&settings(true)),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let fees = run(&app, "2026-03-20").await;
    assert_eq!(fees.len(), 1, "{fees:?}");
    assert_eq!(fees[0]["issue_date"], "2026-03-17");
    assert_eq!(fees[0]["total"], "25.00");
    assert!(
        run(&app, "2026-03-25").await.is_empty(),
        "a fee is charged once"
    );
    let reminders = app
        .db
        .count("SELECT count(*) FROM events WHERE event_type = 'OverdueReminderDue'")
        .await;
    // Runs on Mar 1 (January at 30 days, February at 7), Mar 20 (February at 30) and
    // Mar 25 (March at 7): one reminder per invoice and reminder day, never repeated.
    assert_eq!(reminders, 4);
    assert!(run(&app, "2026-03-26").await.is_empty());
    let again = app
        .db
        .count("SELECT count(*) FROM events WHERE event_type = 'OverdueReminderDue'")
        .await;
    assert_eq!(again, 4);
    let aging = app
        .request(
            Method::GET,
            "/api/v1/reports/ar-aging?as_of=2026-03-20",
            None,
        )
        .await;
    assert_eq!(aging.status, StatusCode::OK, "{}", aging.text);
    let a = aging.json();
    let row = &a["customers"][0];
    assert_eq!(row["company_name"], "Société Générale – Müller");
    assert_eq!(row["current"], "25.00", "{a}");
    assert_eq!(row["days_1_30"], "1000.00", "{a}");
    assert_eq!(row["days_31_60"], "500.00", "{a}");
    assert_eq!(row["total"], "1525.00", "{a}");
    // As of Feb 10 (before the payment, before March's invoice): Jan 1,000 overdue 26 days,
    // Feb 1,000 current.
    let past = app
        .request(
            Method::GET,
            "/api/v1/reports/ar-aging?as_of=2026-02-10",
            None,
        )
        .await
        .json();
    let row = &past["customers"][0];
    assert_eq!(row["current"], "1000.00", "{past}");
    assert_eq!(row["days_1_30"], "1000.00", "{past}");
    assert_eq!(row["total"], "2000.00", "{past}");
    assert_eq!(past["totals"]["total"], "2000.00");
    let csv = app
        .request(
            Method::GET,
            "/api/v1/reports/ar-aging.csv?as_of=2026-02-10",
            None,
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.text.starts_with("company_id,company_name,current"),
        "{}",
        csv.text
    );
    assert!(csv.text.contains("2000.00"));

    let statement = app
        .request(
            Method::GET,
            &format!("/api/v1/companies/{acme}/statement?from=2026-01-01&to=2026-03-31"),
            None,
        )
        .await;
    assert_eq!(statement.status, StatusCode::OK, "{}", statement.text);
    let s = statement.json();
    assert_eq!(s["opening_balance"], "0.00");
    assert_eq!(s["closing_balance"], "1525.00");
    let balance = app
        .request(
            Method::GET,
            &format!("/api/v1/companies/{acme}/balance"),
            None,
        )
        .await
        .json();
    assert_eq!(balance["balance"], "1525.00");
}

/// The scheduler's job bills up to each tenant's own today: in a zone whose midnight is far
/// from UTC's, a contract starting today (local) is billed today, dated the local date; a
/// billing date on a DST change is just a date.
#[tokio::test]
async fn the_scheduled_run_bills_up_to_the_tenant_s_local_today() {
    use commands::{ConflictPolicy, EventMeta};
    use domain::identity::TimeZone;
    use domain::tenant::{Tenant, TenantCommand};
    let app = TestApp::new().await;
    let zone = "Pacific/Kiritimati"; // UTC+14
    app.store
        .execute::<Tenant>(
            &app.owner.tenant_id.to_string(),
            TenantCommand::ChangeSettings {
                currency: None,
                time_zone: Some(TimeZone::parse(zone).unwrap()),
            },
            &(),
            &EventMeta::new(app.owner.tenant_id, app.owner.user_id.to_string()),
            ConflictPolicy::Report,
        )
        .await
        .unwrap();
    let local_today = chrono::Utc::now()
        .with_timezone(&zone.parse::<chrono_tz::Tz>().unwrap())
        .date_naive();
    let acme = company(&app, "Northwind", "99.00").await;
    terms(
        &app,
        acme,
        json!({"billing_day": 1, "start_date": local_today.to_string(), "prorate": false}),
    )
    .await;
    let state = web::state::AppState::new(
        app.db.pool.clone(),
        app.store.clone(),
        web::state::Settings::local(std::time::Duration::from_secs(2)),
    );
    let made = web::billing::run::run_all(&state).await.unwrap();
    assert_eq!(made, 1);
    let l = ledger(&app, acme).await;
    let invoice = l.invoices.values().next().unwrap();
    assert_eq!(
        invoice.issue_date,
        Some(local_today),
        "dated the tenant's local date"
    );
    assert_eq!(web::billing::run::run_all(&state).await.unwrap(), 0, "once");

    // New York's spring-forward day is a billing date like any other.
    let ny = company(&app, "Gotham", "10.00").await;
    terms(
        &app,
        ny,
        json!({"billing_day": 8, "start_date": "2026-02-08"}),
    )
    .await;
    let made = run(&app, "2026-03-08").await;
    let dates: Vec<&str> = made
        .iter()
        .filter(|i| i["company_id"] == ny.to_string())
        .map(|i| i["issue_date"].as_str().unwrap())
        .collect();
    assert_eq!(dates, ["2026-02-08", "2026-03-08"]);
}

/// Catalogue services subscribed to are billed with the contract: monthly ones on every
/// billing date they are active, quarterly ones every third from the first.
#[tokio::test]
async fn subscriptions_to_catalogue_services_are_billed_with_the_contract() {
    let app = TestApp::new().await;
    let service = |body: Value| {
        let app = &app;
        async move {
            let reply = app
                .request(Method::POST, "/api/v1/services", Some(&body.to_string()))
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
            reply.json()["id"].as_str().unwrap().to_owned()
        }
    };
    let backup =
        service(json!({"name": "Cloud backup", "tier": "premium", "price": "29.00"})).await;
    let audit = service(
        json!({"name": "Security audit", "tier": "standard", "price": "90.00",
                               "period": "quarterly"}),
    )
    .await;
    let bad = app
        .request(
            Method::POST,
            "/api/v1/services",
            Some(&json!({"name": "", "price": "-1", "period": "weekly"}).to_string()),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    for field in ["name", "price", "period"] {
        assert!(bad.text.contains(field), "{field}: {}", bad.text);
    }
    let acme = company(&app, "Northwind", "100.00").await;
    terms(
        &app,
        acme,
        json!({"billing_day": 1, "start_date": "2026-01-01"}),
    )
    .await;
    let subscribe = |body: Value| {
        let app = &app;
        async move {
            app.request(
                Method::POST,
                &format!("/api/v1/companies/{acme}/subscriptions"),
                Some(&body.to_string()),
            )
            .await
        }
    };
    let reply =
        subscribe(json!({"service_id": backup, "quantity": "5", "start_date": "2026-01-15"})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let reply =
        subscribe(json!({"service_id": audit, "start_date": "2026-01-01", "price": "80.00"})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let unknown =
        subscribe(json!({"service_id": Uuid::new_v4(), "start_date": "2026-01-01"})).await;
    assert_eq!(
        unknown.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        unknown.text
    );
    let made = run(&app, "2026-06-01").await;
    let totals: Vec<(&str, &str)> = made
        .iter()
        .map(|i| {
            (
                i["issue_date"].as_str().unwrap(),
                i["total"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        totals,
        [
            ("2026-01-01", "180.00"), // contract + audit (80.00, its own price)
            ("2026-02-01", "245.00"), // contract + 5 × 29.00 backup (from its first billing date)
            ("2026-03-01", "245.00"),
            ("2026-04-01", "325.00"), // + the quarterly audit again
            ("2026-05-01", "245.00"),
            ("2026-06-01", "245.00"),
        ]
    );
    let list = app
        .request(
            Method::GET,
            &format!("/api/v1/companies/{acme}/subscriptions"),
            None,
        )
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json()["subscriptions"].as_array().unwrap().len(), 2);
}

/// Who may do what: accountants read and record payments but do not run billing;
/// technicians and customers' people see no billing at all.
#[tokio::test]
async fn billing_answers_by_role() {
    use domain::identity::Role;
    let app = TestApp::new().await;
    let acme = company(&app, "Northwind", "100.00").await;
    let accountant = app
        .person(&app.owner, Role::Accountant, "acc@acme.test", None)
        .await;
    let technician = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    let client = app
        .person(&app.owner, Role::Client, "ann@northwind.test", Some(acme))
        .await;
    let payment = json!({"company_id": acme, "amount": "10.00", "received_on": "2026-01-01",
                         "method": "cash"})
    .to_string();
    let run = json!({"as_of": "2026-01-01"}).to_string();
    let cases: [(&st_tests::Person, Method, &str, Option<&str>, StatusCode); 9] = [
        (
            &accountant,
            Method::GET,
            "/api/v1/invoices",
            None,
            StatusCode::OK,
        ),
        (
            &accountant,
            Method::GET,
            "/api/v1/reports/ar-aging",
            None,
            StatusCode::OK,
        ),
        (
            &accountant,
            Method::POST,
            "/api/v1/payments",
            Some(&payment),
            StatusCode::CREATED,
        ),
        (
            &accountant,
            Method::POST,
            "/api/v1/billing/runs",
            Some(&run),
            StatusCode::FORBIDDEN,
        ),
        (
            &technician,
            Method::GET,
            "/api/v1/invoices",
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            &technician,
            Method::POST,
            "/api/v1/payments",
            Some(&payment),
            StatusCode::FORBIDDEN,
        ),
        (
            &client,
            Method::GET,
            "/api/v1/invoices",
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            &client,
            Method::GET,
            "/api/v1/reports/ar-aging",
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            &client,
            Method::GET,
            "/api/v1/services",
            None,
            StatusCode::FORBIDDEN,
        ),
    ];
    for (who, method, path, body, expected) in cases {
        let reply = app
            .send_as(Some(who), method.clone(), path, body, &[])
            .await;
        assert_eq!(
            reply.status, expected,
            "{:?} {method} {path}: {}",
            who.role, reply.text
        );
    }
}
