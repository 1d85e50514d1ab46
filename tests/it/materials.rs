//! Materials on work orders through the API: recorded and priced exactly, bad input refused
//! field by field with nothing appended, who may remove them, and billing: billable lines go
//! on the company's next contract invoice or on an ad-hoc invoice of its unbilled work, each
//! exactly once, contract lines never.

use axum::http::{Method, StatusCode};
use chrono::{Datelike, Duration, NaiveDate};
use domain::identity::Role;
use serde_json::{json, Value};
use st_tests::TestApp;
use uuid::Uuid;

async fn company(app: &TestApp, name: &str) -> String {
    let reply = app
        .request(
            Method::POST,
            "/api/v1/companies",
            Some(&json!({"name": name, "monthly_rate": "300.00"}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json()["id"].as_str().unwrap().to_owned()
}

async fn order(app: &TestApp, company: &str, title: &str) -> String {
    let owner = app.owner.user_id.to_string();
    let reply = app
        .request(
            Method::POST,
            "/api/v1/work-orders",
            Some(&json!({"company_id": company, "title": title, "assignee_id": owner}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json()["id"].as_str().unwrap().to_owned()
}

async fn add(app: &TestApp, order: &str, body: Value) -> Value {
    let reply = app
        .request(
            Method::POST,
            &format!("/api/v1/work-orders/{order}/materials"),
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json()
}

async fn status(app: &TestApp, order: &str, to: &str) {
    let reply = app
        .request(
            Method::PATCH,
            &format!("/api/v1/work-orders/{order}"),
            Some(&json!({ "status": to }).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

async fn events(app: &TestApp) -> i64 {
    app.db.count("SELECT count(*) FROM events").await
}

fn fields(reply: &Value) -> Vec<String> {
    reply["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn materials_are_priced_exactly_and_bad_input_is_refused_field_by_field() {
    let app = TestApp::new().await;
    let acme = company(&app, "Northwind").await;
    let id = order(&app, &acme, "New switch").await;
    let path = format!("/api/v1/work-orders/{id}/materials");
    let yesterday = (today(&app).await - Duration::days(1)).to_string();
    let cable = add(
        &app,
        &id,
        json!({"description": "Cat6 patch cable, 2 m", "sku": "C6-2M", "quantity": "2.5",
               "unit_price": "3.99", "used_on": yesterday}),
    )
    .await;
    // 2.5 × 3.99 = 9.975, rounded half up.
    assert_eq!(cable["amount"], "9.98");
    assert_eq!(cable["quantity"], "2.5");
    assert_eq!(cable["billing"], "billable");
    assert_eq!(cable["used_on"], yesterday.as_str());
    assert!(cable["invoice_id"].is_null());
    let covered = add(
        &app,
        &id,
        json!({"description": "Rack screws", "unit_price": "0.40", "quantity": "12",
               "billing": "contract"}),
    )
    .await;
    assert_eq!(covered["amount"], "0.00");
    let list = app.request(Method::GET, &path, None).await;
    assert_eq!(list.status, StatusCode::OK);
    let items = list.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["description"], "Cat6 patch cable, 2 m");

    // Every bad field at once, and nothing appended.
    let before = events(&app).await;
    let reply = app
        .request(
            Method::POST,
            &path,
            Some(
                &json!({"description": " ", "sku": "x".repeat(65), "quantity": "0",
                        "unit_price": "abc", "billing": "free",
                        "used_on": (today(&app).await + Duration::days(1)).to_string()})
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
    assert_eq!(
        fields(&reply.json()),
        [
            "description",
            "sku",
            "quantity",
            "unit_price",
            "billing",
            "used_on"
        ]
    );
    for (body, field) in [
        (
            json!({"description": "Drive", "unit_price": "1", "quantity": "two"}),
            "quantity",
        ),
        (
            json!({"description": "Drive", "unit_price": "1", "quantity": "1.0005"}),
            "quantity",
        ),
        (
            json!({"description": "Drive", "unit_price": "-1"}),
            "unit_price",
        ),
        (json!({"description": "Drive"}), "unit_price"),
        (
            json!({"description": "Drive", "unit_price": "1", "used_on": "2026-13-01"}),
            "used_on",
        ),
    ] {
        let reply = app
            .request(Method::POST, &path, Some(&body.to_string()))
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(fields(&reply.json()), [field], "{body}");
    }
    let reply = app
        .request(
            Method::POST,
            &path,
            Some(r#"{"description": "Drive", "colour": "red"}"#),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(
        reply.text.contains("unknown field `colour`"),
        "{}",
        reply.text
    );
    assert_eq!(events(&app).await, before, "refusals append nothing");

    // A retried request records the line once and answers with it.
    let body = json!({"description": "SSD 1 TB", "unit_price": "89.00"}).to_string();
    let headers = [("idempotency-key", "material-retry-1")];
    let first = app.send(Method::POST, &path, Some(&body), &headers).await;
    let again = app.send(Method::POST, &path, Some(&body), &headers).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    assert_eq!(first.json()["id"], again.json()["id"]);
    let list = app.request(Method::GET, &path, None).await;
    assert_eq!(list.json()["items"].as_array().unwrap().len(), 3);

    // Who may remove: not another technician; the owner may; not once the order is closed.
    let tech = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    let one = format!("{path}/{}", cable["id"].as_str().unwrap());
    let reply = app
        .send_as(Some(&tech), Method::DELETE, &one, None, &[])
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    let reply = app
        .request(Method::DELETE, &format!("{path}/{}", Uuid::now_v7()), None)
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    status(&app, &id, "resolved").await;
    status(&app, &id, "closed").await;
    let reply = app.request(Method::DELETE, &one, None).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    assert!(reply.text.contains("reopen"), "{}", reply.text);
    let reply = app
        .request(
            Method::POST,
            &path,
            Some(&json!({"description": "Late part", "unit_price": "1"}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    status(&app, &id, "reopened").await;
    let reply = app.request(Method::DELETE, &one, None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    let list = app.request(Method::GET, &path, None).await;
    assert_eq!(list.json()["items"].as_array().unwrap().len(), 2);

    // Another tenant sees none of it.
    let stranger = app.other_tenant("Other MSP", "boss@other.test").await;
    for (method, body) in [
        (Method::GET, None),
        (
            Method::POST,
            Some(json!({"description": "X", "unit_price": "1"}).to_string()),
        ),
    ] {
        let reply = app
            .send_as(Some(&stranger), method, &path, body.as_deref(), &[])
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    }
}

#[tokio::test]
async fn billable_materials_go_on_the_next_contract_invoice_once() {
    let app = TestApp::new().await;
    let acme = company(&app, "Northwind").await;
    // Billed on the 1st since the 1st of this month; next month's invoice is the second.
    let today = today(&app).await;
    let this_month = today.with_day(1).unwrap();
    let next_month = (this_month + Duration::days(32)).with_day(1).unwrap();
    let reply = app
        .request(
            Method::PUT,
            &format!("/api/v1/companies/{acme}/billing"),
            Some(
                &json!({"billing_day": 1, "start_date": this_month.to_string(),
                        "payment_terms_days": 30, "tax_rate": "10"})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let id = order(&app, &acme, "Office move").await;
    let cable = add(
        &app,
        &id,
        json!({"description": "Cat6 patch cable", "quantity": "3", "unit_price": "4.50"}),
    )
    .await;
    add(
        &app,
        &id,
        json!({"description": "Cable ties", "quantity": "1", "unit_price": "2.00",
               "billing": "contract"}),
    )
    .await;
    let unbilled = app
        .request(Method::GET, "/api/v1/unbilled-work", None)
        .await;
    let row = &unbilled.json()["items"][0];
    assert_eq!(row["materials"], 1);
    assert_eq!(row["materials_amount"], "13.50");
    assert_eq!(row["total"], "13.50");

    // Work goes on the latest period's invoice of a run: next month's.
    let run = json!({ "as_of": next_month.to_string() }).to_string();
    let reply = app
        .request(Method::POST, "/api/v1/billing/runs", Some(&run))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let made = reply.json()["invoices"].as_array().unwrap().clone();
    assert_eq!(made.len(), 2);
    let december = &made[1];
    assert_eq!(december["issue_date"], next_month.to_string().as_str());
    // 300.00 + 13.50, and 10 % tax on each line: 330.00 + 14.85.
    assert_eq!(december["total"], "344.85");
    let invoice = app
        .request(
            Method::GET,
            &format!("/api/v1/invoices/{}", december["id"].as_str().unwrap()),
            None,
        )
        .await;
    let lines = invoice.json()["lines"].as_array().unwrap().clone();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1]["description"]
        .as_str()
        .unwrap()
        .contains(&format!("Cat6 patch cable on {today}")));
    assert_eq!(lines[1]["quantity"], "3");
    assert_eq!(lines[1]["unit_price"], "4.50");
    assert_eq!(lines[1]["net"], "13.50");
    assert_eq!(lines[1]["source"]["kind"], "material");
    // This month's invoice billed no work.
    let november = app
        .request(
            Method::GET,
            &format!("/api/v1/invoices/{}", made[0]["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(november.json()["lines"].as_array().unwrap().len(), 1);

    // Marked invoiced (once the read model has caught up); not removable; nothing left to
    // bill; a re-run bills nothing.
    app.settle().await;
    let list = app
        .request(
            Method::GET,
            &format!("/api/v1/work-orders/{id}/materials"),
            None,
        )
        .await;
    let billed = list.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == cable["id"])
        .unwrap()
        .clone();
    assert_eq!(billed["invoice_id"], december["id"]);
    let reply = app
        .request(
            Method::DELETE,
            &format!(
                "/api/v1/work-orders/{id}/materials/{}",
                cable["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    assert!(
        reply
            .text
            .contains(&format!("invoice {}", december["number"])),
        "{}",
        reply.text
    );
    let unbilled = app
        .request(Method::GET, "/api/v1/unbilled-work", None)
        .await;
    assert_eq!(unbilled.json()["items"].as_array().unwrap().len(), 0);
    let before = events(&app).await;
    let reply = app
        .request(Method::POST, "/api/v1/billing/runs", Some(&run))
        .await;
    assert_eq!(reply.json()["invoices"].as_array().unwrap().len(), 0);
    assert_eq!(events(&app).await, before);
}

#[tokio::test]
async fn an_ad_hoc_invoice_bills_a_company_s_unbilled_work_once() {
    let app = TestApp::new().await;
    // No contract: only an ad-hoc invoice bills its work.
    let acme = company(&app, "Contoso").await;
    let id = order(&app, &acme, "Printer").await;
    let today = today(&app).await;
    let (worked, invoiced) = (today - Duration::days(3), today - Duration::days(1));
    let reply = app
        .request(
            Method::POST,
            &format!("/api/v1/work-orders/{id}/time-entries"),
            Some(
                &json!({"minutes": 90, "billing": "billable", "work_date": worked.to_string()})
                    .to_string(),
            ),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let entry = reply.json()["items"][0]["id"].as_str().unwrap().to_owned();
    let time_amount: rust_decimal::Decimal = reply.json()["items"][0]["amount"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    add(
        &app,
        &id,
        json!({"description": "Toner", "quantity": "2", "unit_price": "61.25",
               "used_on": worked.to_string()}),
    )
    .await;
    // Used after the invoice date: it waits for a later invoice.
    add(
        &app,
        &id,
        json!({"description": "Drum", "unit_price": "80.00"}),
    )
    .await;

    // A draft cannot bill work (work is billed when an invoice is issued).
    let before = events(&app).await;
    let reply = app
        .request(
            Method::POST,
            "/api/v1/invoices",
            Some(&json!({"company_id": acme, "unbilled_work": true}).to_string()),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert_eq!(fields(&reply.json()), ["issue_date"]);
    assert_eq!(events(&app).await, before);

    let reply = app
        .request(
            Method::POST,
            "/api/v1/invoices",
            Some(
                &json!({"company_id": acme, "unbilled_work": true,
                        "issue_date": invoiced.to_string()})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let invoice = reply.json();
    let expected = time_amount + rust_decimal::Decimal::new(12250, 2);
    assert_eq!(invoice["total"], format!("{expected:.2}"));
    assert_eq!(invoice["number"], 1);
    let lines = app
        .request(
            Method::GET,
            &format!("/api/v1/invoices/{}", invoice["id"].as_str().unwrap()),
            None,
        )
        .await
        .json()["lines"]
        .as_array()
        .unwrap()
        .clone();
    let kinds: Vec<&str> = lines
        .iter()
        .map(|l| l["source"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["time_entry", "material"]);
    // Billed time stays: the invoice is credited instead.
    let reply = app
        .request(
            Method::DELETE,
            &format!("/api/v1/work-orders/{id}/time-entries/{entry}"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    assert!(reply.text.contains("billed on invoice 1"), "{}", reply.text);

    // Billed once: asked again for the same date, there is nothing left.
    let before = events(&app).await;
    let reply = app
        .request(
            Method::POST,
            "/api/v1/invoices",
            Some(
                &json!({"company_id": acme, "unbilled_work": true,
                        "issue_date": invoiced.to_string()})
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
    assert_eq!(fields(&reply.json()), ["unbilled_work"]);
    assert!(reply
        .text
        .contains("Contoso has no billable time or materials"));
    assert_eq!(events(&app).await, before);

    // Voided, the work goes back to the unbilled work: it can be removed or billed again.
    let reply = app
        .request(
            Method::POST,
            &format!("/api/v1/invoices/{}/void", invoice["id"].as_str().unwrap()),
            Some(&json!({"reason": "wrong customer"}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    app.settle().await;
    let unbilled = app
        .request(Method::GET, "/api/v1/unbilled-work", None)
        .await;
    let row = &unbilled.json()["items"][0];
    assert_eq!(
        (row["entries"].as_i64(), row["materials"].as_i64()),
        (Some(1), Some(2))
    );
    let again = app
        .request(
            Method::POST,
            "/api/v1/invoices",
            Some(
                &json!({"company_id": acme, "unbilled_work": true,
                        "issue_date": invoiced.to_string()})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    assert_eq!(again.json()["total"], invoice["total"]);
    assert_eq!(again.json()["number"], 2);
    // Voided keeping its work billed (`release_work: false`), nothing comes back.
    let reply = app
        .request(
            Method::POST,
            &format!(
                "/api/v1/invoices/{}/void",
                again.json()["id"].as_str().unwrap()
            ),
            Some(&json!({"release_work": false}).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let reply = app
        .request(
            Method::DELETE,
            &format!("/api/v1/work-orders/{id}/time-entries/{entry}"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    assert!(reply.text.contains("billed on invoice 2"), "{}", reply.text);

    // The drum, used today, is what is left; a typed line goes with it.
    let today = today.to_string();
    let reply = app
        .request(
            Method::POST,
            "/api/v1/invoices",
            Some(
                &json!({"company_id": acme, "unbilled_work": true, "issue_date": today,
                        "lines": [{"description": "Call-out", "unit_price": "35.00"}]})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.json()["total"], "115.00");
    assert_eq!(reply.json()["number"], 3);
}

/// Today in the tenant's zone, as the service sees it.
async fn today(app: &TestApp) -> NaiveDate {
    let tenant = app
        .store
        .load::<domain::tenant::Tenant>(app.owner.tenant_id, &app.owner.tenant_id.to_string())
        .await
        .unwrap()
        .0;
    web::billing::run::today(&tenant)
}
