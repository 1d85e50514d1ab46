//! Materials in the console, through the router: the order page's "Add material" form (the
//! line shown with its amount and the billable total; bad input shown again next to each
//! field with 422 and nothing appended), removing a line (who added it, an owner or an admin;
//! never once invoiced, where the line links to its invoice), a closed order refusing new
//! lines with a message, the unbilled work pages with materials and their totals and the
//! "Invoice this work now" button for the roles that bill, and another tenant's order and
//! company not found.

use axum::http::{Method, StatusCode};
use chrono::{Duration, Utc};
use domain::identity::Role;
use serde_json::{json, Value};
use st_tests::{Person, Reply, TestApp};

const CSRF: &str = "fedcba9876543210fedcba9876543210fedcba9876543210";

async fn events(app: &TestApp) -> i64 {
    app.db.count("SELECT count(*) FROM events").await
}

async fn api(app: &TestApp, method: Method, path: &str, body: Value) -> Value {
    let reply = app.request(method, path, Some(&body.to_string())).await;
    assert!(reply.status.is_success(), "{path}: {}", reply.text);
    reply.json()
}

async fn company(app: &TestApp, name: &str) -> String {
    api(
        app,
        Method::POST,
        "/api/v1/companies",
        json!({"name": name}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// An order of `company_id` raised through the API, as the owner; its page's path.
async fn order(app: &TestApp, company_id: &str, title: &str) -> String {
    let raised = api(
        app,
        Method::POST,
        "/api/v1/work-orders",
        json!({"company_id": company_id, "title": title}),
    )
    .await;
    format!("/work-orders/{}", raised["id"].as_str().unwrap())
}

async fn page(app: &TestApp, who: &Person, path: &str) -> Reply {
    app.send_as(
        Some(who),
        Method::GET,
        path,
        None,
        &[("cookie", &format!("st_csrf={CSRF}"))],
    )
    .await
}

async fn post(app: &TestApp, who: &Person, path: &str, form: &str) -> Reply {
    app.send_body_as(
        Some(who),
        Method::POST,
        path,
        &format!("csrf={CSRF}&{form}"),
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

/// The flash message a redirect carries, decoded.
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

/// The HTML of the element that starts with `id="<id>"`, up to its table's or section's end.
fn part<'a>(reply: &'a Reply, id: &str, end: &str) -> &'a str {
    let start = reply
        .text
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}: {}", reply.text));
    let rest = &reply.text[start..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

/// The material lines' table of an order page.
fn lines(reply: &Reply) -> &str {
    part(reply, "material-lines", "</table>")
}

/// The id of the material line whose row shows `description`.
fn line_id(reply: &Reply, description: &str) -> String {
    let table = lines(reply);
    let at = table
        .find(&format!("<td>{description}</td>"))
        .unwrap_or_else(|| panic!("no line {description}: {table}"));
    let row = table[..at]
        .rfind("<tr id=\"material-")
        .expect("the line's row");
    table[row + "<tr id=\"material-".len()..][..36].to_owned()
}

/// `days` before today (UTC), as the forms write dates.
fn days_ago(days: i64) -> String {
    (Utc::now() - Duration::days(days)).date_naive().to_string()
}

#[tokio::test]
async fn a_material_added_with_the_form_is_shown_with_its_amount() {
    let app = TestApp::new().await;
    let owner = app.owner.clone();
    let acme = company(&app, "Initech").await;
    let path = order(&app, &acme, "New desk switch").await;

    // The empty form: one unit, billable, used today.
    let shown = page(&app, &owner, &path).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    let form = part(&shown, "add-material", "</form>");
    assert!(form.contains(&format!("action=\"{path}/materials\"")));
    assert!(form.contains(&format!("name=\"csrf\" value=\"{CSRF}\"")));
    assert!(form.contains("name=\"quantity\" value=\"1\""), "{form}");
    assert!(
        form.contains("<option value=\"billable\" selected>"),
        "{form}"
    );
    assert!(form.contains("name=\"used_on\" type=\"date\" value=\"20"));
    assert!(shown.text.contains("id=\"no-materials\""));

    let added = post(
        &app,
        &owner,
        &format!("{path}/materials"),
        &format!(
            "description=Cat6+patch+cable%2C+2+m&sku=C6-2M&quantity=3&unit_price=4.50\
             &billing=billable&used_on={}",
            days_ago(1)
        ),
    )
    .await;
    assert_eq!(location(&added), path);
    assert_eq!(
        flash(&added),
        "Material added: 3 × Cat6 patch cable, 2 m, 13.50 USD."
    );
    let covered = post(
        &app,
        &owner,
        &format!("{path}/materials"),
        "description=Rack+screws&quantity=20&unit_price=0.10&billing=contract",
    )
    .await;
    assert_eq!(
        flash(&covered),
        "Material added: 20 × Rack screws, covered by the contract."
    );
    let cable = post(
        &app,
        &owner,
        &format!("{path}/materials"),
        "description=Fibre+cable&quantity=2.5&unit_price=10",
    )
    .await;
    location(&cable);

    let shown = page(&app, &owner, &path).await;
    let table = lines(&shown);
    for text in [
        "<td>Cat6 patch cable, 2 m</td>",
        ">C6-2M</td>",
        "<td class=\"num\">3</td>",
        ">4.50 USD</td>",
        ">13.50 USD</td>",
        "<td>Olive Owner</td>",
        &format!(">{}</td>", days_ago(1)),
        "<td>Rack screws</td>",
        "<td>contract</td>",
        "<td class=\"num\">2.5</td>",
        ">25.00 USD</td>",
    ] {
        assert!(table.contains(text), "{text}: {table}");
    }
    // The contract line is covered: only the billable lines are totalled.
    assert!(
        part(&shown, "materials-total-amount", "</td>").ends_with(">38.50 USD"),
        "{table}"
    );
    assert!(!shown.text.contains("id=\"no-materials\""));
    // The timeline tells it too.
    let timeline = part(&shown, "timeline", "</section>");
    assert!(
        timeline.contains("Material added: 20 × Rack screws (contract)"),
        "{timeline}"
    );

    // The API sees the same lines.
    let listed = api(
        &app,
        Method::GET,
        &format!("/api/v1{path}/materials"),
        json!({}),
    )
    .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn bad_material_input_is_shown_next_to_each_field_and_appends_nothing() {
    let app = TestApp::new().await;
    let owner = app.owner.clone();
    let acme = company(&app, "Initech").await;
    let path = order(&app, &acme, "New desk switch").await;
    let before = events(&app).await;

    let refused = post(
        &app,
        &owner,
        &format!("{path}/materials"),
        "description=++&sku=SW-8&quantity=0&unit_price=abc&billing=contract",
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    for (field, message) in [
        (
            "material_description",
            "Description must say what was used.",
        ),
        (
            "material_quantity",
            "Quantity must be more than 0 and at most 100000.",
        ),
        (
            "material_unit_price",
            "Unit price must be a decimal amount such as",
        ),
    ] {
        assert!(
            refused.text.contains(&format!(
                "aria-invalid=\"true\" aria-describedby=\"{field}-error\""
            )),
            "{field}: {}",
            refused.text
        );
        assert!(
            refused.text.contains(&format!(
                "<p class=\"error\" id=\"{field}-error\">{message}"
            )),
            "{field}: {}",
            refused.text
        );
    }
    // Only the bad fields are marked; the typed values are kept.
    assert!(!refused.text.contains("material_sku-error"));
    assert!(!refused.text.contains("material_billing-error"));
    let form = part(&refused, "add-material", "</form>");
    assert!(form.contains("name=\"sku\" value=\"SW-8\""), "{form}");
    assert!(form.contains("name=\"quantity\" value=\"0\""), "{form}");
    assert!(form.contains("name=\"unit_price\" value=\"abc\""), "{form}");
    assert!(
        form.contains("<option value=\"contract\" selected>"),
        "{form}"
    );
    // The edit form's description and the time form's billing are not the ones refused.
    assert!(!refused.text.contains("id=\"description-error\""));
    assert!(!refused.text.contains("id=\"billing-error\""));
    assert!(!refused.text.contains("id=\"form-problem\""));

    // A quantity that is no number, a day still to come.
    let refused = post(
        &app,
        &owner,
        &format!("{path}/materials"),
        &format!(
            "description=Switch&quantity=lots&unit_price=80&used_on={}",
            (Utc::now() + Duration::days(3)).date_naive()
        ),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused
        .text
        .contains("id=\"material_quantity-error\">Quantity must be a number such as 2 or 2.5."));
    assert!(
        refused
            .text
            .contains("id=\"material_used_on-error\">Date used must not be after today"),
        "{}",
        refused.text
    );
    assert!(part(&refused, "add-material", "</form>").contains("value=\"Switch\""));

    assert_eq!(events(&app).await, before, "a refused form appends nothing");
    let shown = page(&app, &owner, &path).await;
    assert!(shown.text.contains("id=\"no-materials\""));
}

#[tokio::test]
async fn lines_are_removed_by_who_added_them_and_never_once_invoiced() {
    let app = TestApp::new().await;
    let owner = app.owner.clone();
    let acme = company(&app, "Northwind").await;
    let path = order(&app, &acme, "Replace the NAS disks").await;
    let tess = app
        .person(&owner, Role::Technician, "tess@acme.test", None)
        .await;
    let tom = app
        .person(&owner, Role::Technician, "tom@acme.test", None)
        .await;

    // Tess adds a disk: she may remove it, Tom may not (no button, and 403 if he tries).
    let added = post(
        &app,
        &tess,
        &format!("{path}/materials"),
        &format!(
            "description=4+TB+disk&sku=WD40&quantity=2&unit_price=95&used_on={}",
            days_ago(3)
        ),
    )
    .await;
    location(&added);
    let shown = page(&app, &tess, &path).await;
    let disk = line_id(&shown, "4 TB disk");
    assert!(lines(&shown).contains("<td>tess</td>"), "who added it");
    let remove = format!("{path}/materials/{disk}/remove");
    assert!(lines(&shown).contains(&format!("action=\"{remove}\"")));
    let seen_by_tom = page(&app, &tom, &path).await;
    assert!(!seen_by_tom.text.contains(&remove), "no button for Tom");
    let before = events(&app).await;
    let refused = post(&app, &tom, &remove, "").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert!(
        refused
            .text
            .contains("Only who added it, an owner or an admin removes a material line."),
        "{}",
        refused.text
    );
    assert_eq!(events(&app).await, before);
    // The owner sees the button on anyone's line.
    let seen_by_owner = page(&app, &owner, &path).await;
    assert!(seen_by_owner.text.contains(&remove));

    let removed = post(&app, &tess, &remove, "").await;
    assert_eq!(location(&removed), path);
    assert_eq!(flash(&removed), "Material removed.");
    let shown = page(&app, &tess, &path).await;
    assert!(!shown.text.contains("4 TB disk</td>"), "{}", shown.text);
    assert!(shown.text.contains("id=\"no-materials\""));
    let again = post(&app, &tess, &remove, "").await;
    assert_eq!(
        again.status,
        StatusCode::NOT_FOUND,
        "a removed line is gone"
    );

    // Once an invoice bills a line, the line links to it and cannot be removed.
    let added = post(
        &app,
        &tess,
        &format!("{path}/materials"),
        &format!(
            "description=Spare+disk&quantity=1&unit_price=95&used_on={}",
            days_ago(3)
        ),
    )
    .await;
    location(&added);
    let invoice = api(
        &app,
        Method::POST,
        "/api/v1/invoices",
        json!({"company_id": acme, "issue_date": days_ago(1), "unbilled_work": true}),
    )
    .await;
    let invoice_id = invoice["id"].as_str().unwrap().to_owned();
    let number = invoice["number"].as_u64().expect("an issued invoice");
    app.settle().await;
    let shown = page(&app, &owner, &path).await;
    let spare = line_id(&shown, "Spare disk");
    let table = lines(&shown);
    assert!(
        table.contains(&format!(
            "href=\"/billing/invoices/{invoice_id}\" title=\"Billed: credit the invoice to take it back\">invoice {number}</a>"
        )),
        "{table}"
    );
    assert!(!table.contains(&format!("/materials/{spare}/remove")));
    let before = events(&app).await;
    let refused = post(
        &app,
        &owner,
        &format!("{path}/materials/{spare}/remove"),
        "",
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert!(
        refused
            .text
            .contains(&format!("This material is billed on invoice {number}")),
        "{}",
        refused.text
    );
    assert!(refused.text.contains("id=\"problem\""), "the page's banner");
    assert_eq!(events(&app).await, before);
}

#[tokio::test]
async fn a_closed_order_refuses_materials_with_a_message() {
    let app = TestApp::new().await;
    let owner = app.owner.clone();
    let acme = company(&app, "Initech").await;
    let path = order(&app, &acme, "Printer jams").await;
    let added = post(
        &app,
        &owner,
        &format!("{path}/materials"),
        "description=Roller&quantity=1&unit_price=12",
    )
    .await;
    location(&added);
    let roller = line_id(&page(&app, &owner, &path).await, "Roller");
    for status in ["resolved", "closed"] {
        api(
            &app,
            Method::PATCH,
            &format!("/api/v1{path}"),
            json!({ "status": status }),
        )
        .await;
    }
    app.settle().await;

    // No form, no remove button: a note says why.
    let shown = page(&app, &owner, &path).await;
    assert!(!shown.text.contains("id=\"add-material\""));
    assert!(!shown.text.contains(&format!("/materials/{roller}/remove")));
    assert!(
        shown
            .text
            .contains("This order is closed: reopen it to add or remove materials."),
        "{}",
        shown.text
    );

    let before = events(&app).await;
    let refused = post(
        &app,
        &owner,
        &format!("{path}/materials"),
        "description=Another+roller&quantity=1&unit_price=12",
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert!(
        refused
            .text
            .contains("A closed work order cannot gain or lose materials; reopen it first."),
        "{}",
        refused.text
    );
    assert!(refused.text.contains("id=\"problem\""));
    let refused = post(
        &app,
        &owner,
        &format!("{path}/materials/{roller}/remove"),
        "",
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert!(refused.text.contains("reopen it first"));
    assert_eq!(events(&app).await, before);
}

#[tokio::test]
async fn unbilled_pages_show_materials_and_offer_the_invoice_to_billing_roles() {
    let app = TestApp::new().await;
    let owner = app.owner.clone();
    let acme = company(&app, "Initech").await;
    let quiet = company(&app, "Umbrella").await;
    let path = order(&app, &acme, "Office move").await;
    let tess = app
        .person(&owner, Role::Technician, "tess@acme.test", None)
        .await;
    let books = app
        .person(&owner, Role::Accountant, "books@acme.test", None)
        .await;
    let admin = app
        .person(&owner, Role::Admin, "admin@acme.test", None)
        .await;
    api(
        &app,
        Method::POST,
        &format!("/api/v1{path}/time-entries"),
        json!({"minutes": 60, "note": "moved the rack", "billing": "billable"}),
    )
    .await;
    for form in [
        "description=Patch+panel&sku=PP-24&quantity=1&unit_price=80",
        "description=Cat6+cable&quantity=10&unit_price=2.50",
        "description=Cable+ties&quantity=100&unit_price=0.05&billing=contract",
    ] {
        location(&post(&app, &tess, &format!("{path}/materials"), form).await);
    }

    // The list: time and materials per company, and their totals.
    let list = page(&app, &tess, "/unbilled").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let row = part(&list, &format!("unbilled-{acme}"), "</tr>");
    let hourly = row
        .split("<td class=\"num\">")
        .nth(3)
        .and_then(|c| c.split("</td>").next())
        .expect("the time's amount")
        .to_owned();
    assert!(
        row.contains("<td class=\"num\">2</td><td class=\"num\">105.00 USD</td>"),
        "two billable lines, 80.00 + 25.00: {row}"
    );
    assert!(!list.text.contains("Umbrella"), "nothing unbilled there");
    assert!(part(&list, "unbilled-materials-total", "</td>").contains("105.00 USD"));
    let time: rust_decimal::Decimal = hourly.trim_end_matches(" USD").parse().unwrap();
    let total = format!("{:.2} USD", time + rust_decimal::Decimal::from(105));
    assert!(row.contains(&format!("<strong>{total}</strong>")), "{row}");
    assert!(part(&list, "unbilled-total", "</td>").contains(&total));

    // The company's page: the time, the billable materials, the total.
    let drill = page(&app, &tess, &format!("/unbilled/{acme}")).await;
    assert_eq!(drill.status, StatusCode::OK, "{}", drill.text);
    let table = part(&drill, "unbilled-materials", "</table>");
    for text in [
        "#1 Office move",
        "<td>Patch panel</td>",
        ">PP-24</td>",
        ">80.00 USD</td>",
        "<td>Cat6 cable</td>",
        ">25.00 USD</td>",
        "<td>tess</td>",
    ] {
        assert!(table.contains(text), "{text}: {table}");
    }
    assert!(!table.contains("Cable ties"), "contract lines are covered");
    assert!(part(&drill, "unbilled-materials-total", "</td>").ends_with(">105.00 USD"));
    assert!(drill.text.contains("moved the rack"));
    assert!(part(&drill, "unbilled-company-total", "</strong>").contains(&total));

    // Only the roles that bill are offered the invoice.
    let invoice_now = format!(
        "href=\"/billing/invoices/new?company_id={acme}&amp;unbilled_work=on\">Invoice this work now</a>"
    );
    assert!(
        !drill.text.contains("Invoice this work now"),
        "{}",
        drill.text
    );
    for who in [&owner, &admin, &books] {
        let seen = page(&app, who, &format!("/unbilled/{acme}")).await;
        assert_eq!(seen.status, StatusCode::OK, "{}", seen.text);
        assert!(
            seen.text.contains(&invoice_now),
            "{:?}: {}",
            who.role,
            seen.text
        );
    }
    // Where it leads: the invoice form with the unbilled work ticked.
    let form = page(
        &app,
        &books,
        &format!("/billing/invoices/new?company_id={acme}&unbilled_work=on"),
    )
    .await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    assert!(form
        .text
        .contains("name=\"unbilled_work\" id=\"unbilled_work\" checked"));
    // A company with nothing to bill offers nothing.
    let nothing = page(&app, &books, &format!("/unbilled/{quiet}")).await;
    assert_eq!(nothing.status, StatusCode::OK);
    assert!(nothing.text.contains("No unbilled work."));
    assert!(!nothing.text.contains("Invoice this work now"));

    // Invoiced, the work leaves the unbilled pages.
    api(
        &app,
        Method::POST,
        "/api/v1/invoices",
        json!({"company_id": acme, "issue_date": Utc::now().date_naive().to_string(),
            "unbilled_work": true}),
    )
    .await;
    app.settle().await;
    let list = page(&app, &owner, "/unbilled").await;
    assert!(!list.text.contains("Initech"), "{}", list.text);
    let drill = page(&app, &owner, &format!("/unbilled/{acme}")).await;
    assert!(drill.text.contains("id=\"no-unbilled-materials\""));
    assert!(!drill.text.contains("Invoice this work now"));
}

#[tokio::test]
async fn another_tenant_and_roles_without_time_cannot_touch_materials() {
    let app = TestApp::new().await;
    let owner = app.owner.clone();
    let acme = company(&app, "Initech").await;
    let path = order(&app, &acme, "Broken switch").await;
    location(
        &post(
            &app,
            &owner,
            &format!("{path}/materials"),
            "description=Switch&quantity=1&unit_price=80",
        )
        .await,
    );
    let switch = line_id(&page(&app, &owner, &path).await, "Switch");
    let stranger = app.other_tenant("Globex", "owner@globex.test").await;
    let their_tech = app
        .person(&stranger, Role::Technician, "tech@globex.test", None)
        .await;
    let books = app
        .person(&owner, Role::Accountant, "books@acme.test", None)
        .await;
    let before = events(&app).await;

    // Another tenant's owner and technician: not found, for the pages and the forms.
    for who in [&stranger, &their_tech] {
        let probe = page(&app, who, &path).await;
        assert_eq!(probe.status, StatusCode::NOT_FOUND, "{}", probe.text);
        assert!(!probe.text.contains("Switch"));
        let poke = post(
            &app,
            who,
            &format!("{path}/materials"),
            "description=Intruder&quantity=1&unit_price=1",
        )
        .await;
        assert_eq!(poke.status, StatusCode::NOT_FOUND, "{}", poke.text);
        let poke = post(&app, who, &format!("{path}/materials/{switch}/remove"), "").await;
        assert_eq!(poke.status, StatusCode::NOT_FOUND, "{}", poke.text);
        let drill = page(&app, who, &format!("/unbilled/{acme}")).await;
        assert_eq!(drill.status, StatusCode::NOT_FOUND);
        let list = page(&app, who, "/unbilled").await;
        assert!(!list.text.contains("Initech"));
    }
    // A line id that is not one, or of no line: not found either.
    let odd = post(
        &app,
        &owner,
        &format!("{path}/materials/not-an-id/remove"),
        "",
    )
    .await;
    assert_eq!(odd.status, StatusCode::NOT_FOUND);

    // An accountant sees the lines but has no form and may not add or remove.
    let seen = page(&app, &books, &path).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(lines(&seen).contains("<td>Switch</td>"));
    assert!(!seen.text.contains("id=\"add-material\""));
    assert!(!seen.text.contains(&format!("/materials/{switch}/remove")));
    let refused = post(
        &app,
        &books,
        &format!("{path}/materials"),
        "description=x&quantity=1&unit_price=1",
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let refused = post(
        &app,
        &books,
        &format!("{path}/materials/{switch}/remove"),
        "",
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // Without the CSRF token nothing is done.
    let forged = app
        .send_body_as(
            Some(&owner),
            Method::POST,
            &format!("{path}/materials"),
            "description=forged&quantity=1&unit_price=1",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", &format!("st_csrf={CSRF}")),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(events(&app).await, before);
}
