//! The `receivables` projection (issue 7) against real PostgreSQL, fed by real ledger
//! commands: invoices through issue, partial payment, payment, unapplication, credit applied,
//! a bounced check, a credit note, reminders, drafts and voids; payments, refunds and their
//! allocations; the aging report today (running balances) and as of past dates (dated
//! movements), the two giving the same report, at the bucket boundaries too; the ledger's
//! balance formula against the report; a customer statement; billed time leaving the unbilled
//! list; tenants kept apart; and rebuilds that give the same rows whatever the batches.

use axum::http::{Method as HttpMethod, StatusCode};
use chrono::{DateTime, NaiveDate, Utc};
use commands::{ConflictPolicy, EventMeta, EventStore};
use domain::billing::{price_lines, Line, LineInput, LineSource};
use domain::business_hours::BusinessHours;
use domain::identity::TimeZone;
use domain::ledger::{Ledger, LedgerCommand as L, LedgerEvent, Method, NewInvoice};
use domain::values::Amount;
use domain::workorder::{
    Billing, Origin, Priority, TimeEntry, WorkOrder, WorkOrderCommand as C, WorkOrderDetails,
};
use projections::rebuild::{rebuild, verify, RebuildOptions};
use projections::receivables::{
    self as ar, Aging, AgingRow, InvoiceFilter, InvoiceRow, ReceivablesProjection,
};
use projections::runner::{CatchUp, RunnerConfig};
use projections::work_orders::{self as wo, WorkOrdersProjection};
use projections::Projection;
use rust_decimal::Decimal;
use serde_json::json;
use st_tests::{Person, TestApp, TestDb};
use uuid::Uuid;

fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn t(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

/// Priced lines: `(description, amount, tax rate)`, the first with `source`.
fn lines(items: &[(&str, &str, Option<&str>)], source: Option<LineSource>) -> Vec<Line> {
    let inputs: Vec<LineInput> = items
        .iter()
        .map(|(description, amount, rate)| LineInput {
            description: (*description).to_owned(),
            quantity: dec("1"),
            unit_price: dec(amount),
            tax_rate: rate.map(dec),
        })
        .collect();
    let mut lines = price_lines(&inputs, false).unwrap();
    lines[0].source = source;
    lines
}

/// A ledger command on `company`'s ledger as `tenant_id`; returns its events.
async fn ledger(
    store: &EventStore,
    tenant_id: Uuid,
    company: Uuid,
    command: L,
) -> Vec<LedgerEvent> {
    let meta = EventMeta::new(tenant_id, "test");
    store
        .execute::<Ledger>(
            &company.to_string(),
            command,
            &(),
            &meta,
            ConflictPolicy::Busy,
        )
        .await
        .unwrap()
        .events
}

/// A ledger command that takes the tenant's next invoice number.
async fn numbered(
    store: &EventStore,
    tenant_id: Uuid,
    company: Uuid,
    command: impl Fn(u64) -> L,
) -> Vec<LedgerEvent> {
    let meta = EventMeta::new(tenant_id, "test");
    store
        .execute_numbered::<Ledger>(&company.to_string(), "invoice", command, &(), &meta)
        .await
        .unwrap()
        .events
}

/// Issues an invoice with the next number; returns its id.
async fn issue(
    store: &EventStore,
    tenant_id: Uuid,
    company: Uuid,
    invoice_lines: Vec<Line>,
    issued: &str,
    due: &str,
    bills: Vec<String>,
) -> Uuid {
    let invoice_id = Uuid::new_v4();
    numbered(store, tenant_id, company, |number| L::IssueInvoice {
        company_id: company,
        invoice: NewInvoice {
            invoice_id,
            number,
            issue_date: day(issued),
            due_date: day(due),
            lines: invoice_lines.clone(),
            bills: bills.clone(),
            note: String::new(),
        },
    })
    .await;
    invoice_id
}

async fn pay(
    store: &EventStore,
    tenant_id: Uuid,
    company: Uuid,
    amount: &str,
    on: &str,
    method: Method,
    reference: &str,
) -> Uuid {
    let payment_id = Uuid::new_v4();
    ledger(
        store,
        tenant_id,
        company,
        L::ReceivePayment {
            company_id: company,
            payment_id,
            amount: dec(amount),
            received_on: day(on),
            method,
            reference: reference.to_owned(),
            invoices: None,
        },
    )
    .await;
    payment_id
}

async fn company(app: &TestApp, who: &Person, name: &str) -> Uuid {
    let reply = app
        .send_as(
            Some(who),
            HttpMethod::POST,
            "/api/v1/companies",
            Some(&json!({"name": name}).to_string()),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json()["id"].as_str().unwrap().parse().unwrap()
}

async fn invoice(app: &TestApp, tenant_id: Uuid, id: Uuid) -> InvoiceRow {
    app.settle().await;
    ar::get_invoice(&app.db.pool, tenant_id, id)
        .await
        .unwrap()
        .expect("the invoice's row")
}

/// `(status, paid, credited, balance)` of an invoice.
async fn standing(app: &TestApp, tenant_id: Uuid, id: Uuid) -> (String, String, String, String) {
    let row = invoice(app, tenant_id, id).await;
    (
        row.status,
        row.paid.to_string(),
        row.credited.to_string(),
        row.balance.to_string(),
    )
}

fn s(status: &str, paid: &str, credited: &str, balance: &str) -> (String, String, String, String) {
    (
        status.to_owned(),
        paid.to_owned(),
        credited.to_owned(),
        balance.to_owned(),
    )
}

/// `(allocated, refunded, unapplied, reversed)` of a payment.
async fn payment(app: &TestApp, tenant_id: Uuid, id: Uuid) -> (String, String, String, bool) {
    app.settle().await;
    let p = ar::get_payment(&app.db.pool, tenant_id, id)
        .await
        .unwrap()
        .expect("the payment's row")
        .payment;
    (
        p.allocated.to_string(),
        p.refunded.to_string(),
        p.unapplied.to_string(),
        p.reversed,
    )
}

fn p(
    allocated: &str,
    refunded: &str,
    unapplied: &str,
    reversed: bool,
) -> (String, String, String, bool) {
    (
        allocated.to_owned(),
        refunded.to_owned(),
        unapplied.to_owned(),
        reversed,
    )
}

fn customer(
    name: &str,
    buckets: [&str; 5],
    credit: &str,
    total: &str,
) -> (String, [String; 5], String, String) {
    (
        name.to_owned(),
        buckets.map(str::to_owned),
        credit.to_owned(),
        total.to_owned(),
    )
}

/// The report's customers as `(name, buckets, unapplied credit, total)`, amounts as text.
fn rows(aging: &Aging) -> Vec<(String, [String; 5], String, String)> {
    aging
        .customers
        .iter()
        .map(|r: &AgingRow| {
            (
                r.company_name.clone(),
                [
                    r.current.to_string(),
                    r.days_1_30.to_string(),
                    r.days_31_60.to_string(),
                    r.days_61_90.to_string(),
                    r.days_over_90.to_string(),
                ],
                r.unapplied_credit.to_string(),
                r.total.to_string(),
            )
        })
        .collect()
}

/// The report every way (as the API answers it, from today's balances less the movements
/// since, and summed from the movements up to the date); asserts they agree and returns it.
async fn aging_both_ways(pool: &sqlx::PgPool, tenant_id: Uuid, as_of: NaiveDate) -> Aging {
    let chosen = ar::aging(pool, tenant_id, as_of).await.unwrap();
    let dated = ar::aging_from_entries(pool, tenant_id, as_of)
        .await
        .unwrap();
    assert_eq!(chosen, dated, "aging as of {as_of}");
    let taken_back = ar::aging_before_later(pool, tenant_id, as_of)
        .await
        .unwrap();
    assert_eq!(
        taken_back, dated,
        "aging as of {as_of}, taken back from today"
    );
    dated
}

/// The company's balance by the ledger's own formula (issued invoices − credit notes −
/// payments + refunds), from its events.
async fn ledger_balance(store: &EventStore, tenant_id: Uuid, company: Uuid) -> Decimal {
    let (ledger, _) = store
        .load::<Ledger>(tenant_id, &company.to_string())
        .await
        .unwrap();
    ledger.balance()
}

const TABLES: [&str; 6] = [
    "invoices",
    "payments",
    "payment_allocations",
    "credit_notes",
    "ar_entries",
    "work_order_time_entries",
];

/// Every row of the projection's tables (and the time entries), as JSON text, sorted.
async fn snapshot(pool: &sqlx::PgPool) -> Vec<String> {
    let mut out = Vec::new();
    for table in TABLES {
        let rows: Option<String> = sqlx::query_scalar(&format!(
            "SELECT string_agg(row_to_json(t)::text, E'\\n' ORDER BY row_to_json(t)::text)
               FROM {table} t"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        out.push(format!("{table}:\n{}", rows.unwrap_or_default()));
    }
    out
}

fn hours() -> BusinessHours {
    BusinessHours::standard(TimeZone::parse("UTC").unwrap())
}

async fn open_order(store: &EventStore, tenant_id: Uuid, number: u64, company: Uuid) -> Uuid {
    let meta = EventMeta::new(tenant_id, "test");
    let id = meta.new_aggregate_id();
    store
        .create::<WorkOrder>(
            &id.to_string(),
            C::Open {
                number,
                company_id: company,
                details: WorkOrderDetails {
                    title: format!("Order {number}"),
                    description: String::new(),
                    work_type: "repair".to_owned(),
                    contact_id: None,
                    asset_ids: vec![],
                },
                priority: Priority::Normal,
                origin: Origin::Staff,
                holds_assets: false,
                opened_at: t("2026-03-02T14:00:00Z"),
                policy: None,
                hours: hours(),
            },
            &(),
            &meta,
        )
        .await
        .unwrap();
    id
}

/// Logs a billable hour at 90.00 on the order; returns the entry's id.
async fn log_hour(store: &EventStore, tenant_id: Uuid, order: Uuid) -> Uuid {
    let entry = TimeEntry::new(
        Uuid::new_v4(),
        Uuid::from_u128(42),
        day("2026-03-02"),
        60,
        "an hour".to_owned(),
        Billing::Billable,
        false,
        Amount::parse("rate", "90.00").unwrap(),
        Amount::parse("cost", "40.00").unwrap(),
    );
    let id = entry.entry_id;
    let meta = EventMeta::new(tenant_id, "test");
    store
        .execute::<WorkOrder>(
            &order.to_string(),
            C::LogTime {
                entries: vec![entry],
            },
            &(),
            &meta,
            ConflictPolicy::Report,
        )
        .await
        .unwrap();
    id
}

/// A line billing a time entry.
fn time_line(order: Uuid, entry: Uuid) -> Vec<Line> {
    lines(
        &[("Support, 1 hour", "90.00", None)],
        Some(LineSource::TimeEntry {
            work_order_id: order,
            entry_id: entry,
        }),
    )
}

#[tokio::test]
async fn receivables_projection_follows_invoices_and_payments() {
    let app = TestApp::new().await;
    let owner = app.owner.clone();
    let tenant = owner.tenant_id;
    let db = &app.db.pool;
    let store = &app.store;
    let northwind = company(&app, &owner, "Northwind").await;
    let contoso = company(&app, &owner, "Contoso").await;

    // Issued: a contract month with tax.
    let contract = LineSource::Contract {
        period_start: day("2026-01-01"),
        period_end: day("2026-01-31"),
    };
    let inv1 = issue(
        store,
        tenant,
        northwind,
        lines(
            &[("Managed services, January", "1000.00", Some("10"))],
            Some(contract),
        ),
        "2026-01-01",
        "2026-01-15",
        vec!["contract/2026-01-01".into()],
    )
    .await;
    let row = invoice(&app, tenant, inv1).await;
    assert_eq!(row.number, Some(1));
    assert_eq!(row.company_id, northwind);
    assert_eq!(row.company_name, "Northwind");
    assert_eq!(
        (
            row.subtotal.to_string(),
            row.tax.to_string(),
            row.total.to_string()
        ),
        ("1000.00".into(), "100.00".into(), "1100.00".into())
    );
    assert_eq!(
        (row.issue_date, row.due_date),
        (Some(day("2026-01-01")), Some(day("2026-01-15")))
    );
    assert_eq!(
        (row.period_start, row.period_end),
        (Some(day("2026-01-01")), Some(day("2026-01-31")))
    );
    assert_eq!(row.line_count, 1);
    assert_eq!(
        standing(&app, tenant, inv1).await,
        s("issued", "0.00", "0.00", "1100.00")
    );

    // A partial payment, then one that pays it and leaves credit.
    let p1 = pay(
        store,
        tenant,
        northwind,
        "400.00",
        "2026-01-10",
        Method::Check,
        "1234",
    )
    .await;
    assert_eq!(
        standing(&app, tenant, inv1).await,
        s("partially_paid", "400.00", "0.00", "700.00")
    );
    assert_eq!(
        payment(&app, tenant, p1).await,
        p("400.00", "0.00", "0.00", false)
    );
    let p2 = pay(
        store,
        tenant,
        northwind,
        "900.00",
        "2026-01-20",
        Method::BankTransfer,
        "TX-9",
    )
    .await;
    assert_eq!(
        standing(&app, tenant, inv1).await,
        s("paid", "1100.00", "0.00", "0.00")
    );
    assert_eq!(
        payment(&app, tenant, p2).await,
        p("700.00", "0.00", "200.00", false)
    );
    let paid_by: Vec<(Uuid, String, NaiveDate, String, String)> =
        ar::invoice_payments(db, tenant, inv1)
            .await
            .unwrap()
            .into_iter()
            .map(|a| {
                (
                    a.payment_id,
                    a.amount.to_string(),
                    a.on_date,
                    a.method,
                    a.reference,
                )
            })
            .collect();
    assert_eq!(
        paid_by,
        [
            (
                p1,
                "400.00".into(),
                day("2026-01-10"),
                "check".into(),
                "1234".into()
            ),
            (
                p2,
                "700.00".into(),
                day("2026-01-20"),
                "bank_transfer".into(),
                "TX-9".into()
            ),
        ]
    );
    let balance = ar::company_balance(db, tenant, northwind).await.unwrap();
    assert_eq!(
        (
            balance.open.to_string(),
            balance.unapplied_credit.to_string(),
            balance.balance.to_string()
        ),
        ("0.00".into(), "200.00".into(), "-200.00".into())
    );

    // Unapplied: the invoice is owed again, the payment is credit.
    ledger(
        store,
        tenant,
        northwind,
        L::Unapply {
            payment_id: p1,
            invoice_id: inv1,
        },
    )
    .await;
    assert_eq!(
        standing(&app, tenant, inv1).await,
        s("partially_paid", "700.00", "0.00", "400.00")
    );
    assert_eq!(
        payment(&app, tenant, p1).await,
        p("0.00", "0.00", "400.00", false)
    );
    let left: Vec<Uuid> = ar::invoice_payments(db, tenant, inv1)
        .await
        .unwrap()
        .iter()
        .map(|a| a.payment_id)
        .collect();
    assert_eq!(left, [p2]);

    // The credit applied again (oldest payment first): paid.
    ledger(
        store,
        tenant,
        northwind,
        L::ApplyCredit {
            on: day("2026-01-25"),
        },
    )
    .await;
    assert_eq!(
        standing(&app, tenant, inv1).await,
        s("paid", "1100.00", "0.00", "0.00")
    );
    assert_eq!(
        payment(&app, tenant, p1).await,
        p("400.00", "0.00", "0.00", false)
    );
    assert_eq!(
        payment(&app, tenant, p2).await,
        p("700.00", "0.00", "200.00", false)
    );

    // The next invoice takes the remaining credit when issued.
    let inv2 = issue(
        store,
        tenant,
        northwind,
        lines(&[("Cabling", "500.00", None)], None),
        "2026-02-01",
        "2026-02-15",
        vec![],
    )
    .await;
    assert_eq!(
        standing(&app, tenant, inv2).await,
        s("partially_paid", "200.00", "0.00", "300.00")
    );
    assert_eq!(
        payment(&app, tenant, p2).await,
        p("900.00", "0.00", "0.00", false)
    );

    // The check bounces: every allocation of the payment comes off.
    ledger(
        store,
        tenant,
        northwind,
        L::ReversePayment {
            payment_id: p2,
            on: day("2026-02-05"),
            reason: "returned by the bank".into(),
        },
    )
    .await;
    assert_eq!(
        standing(&app, tenant, inv1).await,
        s("partially_paid", "400.00", "0.00", "700.00")
    );
    assert_eq!(
        standing(&app, tenant, inv2).await,
        s("issued", "0.00", "0.00", "500.00")
    );
    assert_eq!(
        payment(&app, tenant, p2).await,
        p("0.00", "0.00", "0.00", true)
    );
    let detail = ar::get_payment(db, tenant, p2).await.unwrap().unwrap();
    assert!(detail.allocations.is_empty());
    let detail = ar::get_payment(db, tenant, p1).await.unwrap().unwrap();
    assert_eq!(detail.payment.company_name, "Northwind");
    assert_eq!(
        detail
            .allocations
            .iter()
            .map(|a| (
                a.invoice_id,
                a.invoice_number,
                a.amount.to_string(),
                a.on_date
            ))
            .collect::<Vec<_>>(),
        [(inv1, Some(1), "400.00".to_owned(), day("2026-01-25"))]
    );

    // A credit note, and a reminder.
    let note = Uuid::new_v4();
    ledger(
        store,
        tenant,
        northwind,
        L::IssueCreditNote {
            credit_note_id: note,
            number: 1,
            invoice_id: inv2,
            amount: dec("50.00"),
            date: day("2026-02-06"),
            reason: "discount".into(),
        },
    )
    .await;
    assert_eq!(
        standing(&app, tenant, inv2).await,
        s("partially_paid", "0.00", "50.00", "450.00")
    );
    let notes = ar::credit_notes_of(db, tenant, inv2).await.unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(
        (
            notes[0].id,
            notes[0].number,
            notes[0].amount.to_string(),
            notes[0].date,
            notes[0].reason.as_str()
        ),
        (note, 1, "50.00".to_owned(), day("2026-02-06"), "discount")
    );
    ledger(
        store,
        tenant,
        northwind,
        L::RemindOverdue {
            invoice_id: inv2,
            days: 7,
            on: day("2026-02-22"),
        },
    )
    .await;
    assert_eq!(invoice(&app, tenant, inv2).await.reminders, 1);

    // A draft (no number) issued later keeps its lines.
    let inv3 = Uuid::new_v4();
    ledger(
        store,
        tenant,
        northwind,
        L::DraftInvoice {
            company_id: northwind,
            invoice_id: inv3,
            lines: lines(
                &[("Laptop", "200.00", None), ("Setup", "100.00", Some("20"))],
                None,
            ),
        },
    )
    .await;
    let draft = invoice(&app, tenant, inv3).await;
    assert_eq!(
        (draft.status.as_str(), draft.number, draft.issue_date),
        ("draft", None, None)
    );
    assert_eq!(
        (
            draft.subtotal.to_string(),
            draft.tax.to_string(),
            draft.total.to_string(),
            draft.balance.to_string()
        ),
        (
            "300.00".into(),
            "20.00".into(),
            "320.00".into(),
            "0.00".into()
        )
    );
    numbered(store, tenant, northwind, |number| L::IssueDraft {
        invoice_id: inv3,
        number,
        issue_date: day("2026-03-01"),
        due_date: day("2026-03-31"),
    })
    .await;
    let issued = invoice(&app, tenant, inv3).await;
    assert_eq!((issued.number, issued.line_count), (Some(3), 2));
    assert_eq!(issued.created_at, draft.created_at);
    assert!(issued.updated_at > draft.updated_at);
    assert_eq!(
        standing(&app, tenant, inv3).await,
        s("issued", "0.00", "0.00", "320.00")
    );

    // Voided: an issued invoice and a draft.
    let inv4 = issue(
        store,
        tenant,
        northwind,
        lines(&[("Sent twice", "75.00", None)], None),
        "2026-03-02",
        "2026-03-16",
        vec![],
    )
    .await;
    let inv5 = Uuid::new_v4();
    ledger(
        store,
        tenant,
        northwind,
        L::DraftInvoice {
            company_id: northwind,
            invoice_id: inv5,
            lines: lines(&[("Never sent", "10.00", None)], None),
        },
    )
    .await;
    for id in [inv4, inv5] {
        ledger(
            store,
            tenant,
            northwind,
            L::VoidInvoice {
                invoice_id: id,
                on: day("2026-03-03"),
                reason: "mistake".into(),
                release_work: true,
            },
        )
        .await;
    }
    assert_eq!(
        standing(&app, tenant, inv4).await,
        s("void", "0.00", "0.00", "0.00")
    );
    assert_eq!(
        standing(&app, tenant, inv5).await,
        s("void", "0.00", "0.00", "0.00")
    );

    // Contoso: credit with nothing to pay, partly refunded, then used by an invoice.
    let p3 = pay(
        store,
        tenant,
        contoso,
        "300.00",
        "2026-02-10",
        Method::Cash,
        "",
    )
    .await;
    ledger(
        store,
        tenant,
        contoso,
        L::Refund {
            payment_id: p3,
            amount: dec("100.00"),
            on: day("2026-02-12"),
            reference: "R1".into(),
        },
    )
    .await;
    assert_eq!(
        payment(&app, tenant, p3).await,
        p("0.00", "100.00", "200.00", false)
    );
    let inv6 = issue(
        store,
        tenant,
        contoso,
        lines(&[("Backup", "150.00", None)], None),
        "2026-04-01",
        "2026-04-30",
        vec![],
    )
    .await;
    assert_eq!(
        standing(&app, tenant, inv6).await,
        s("paid", "150.00", "0.00", "0.00")
    );
    assert_eq!(
        payment(&app, tenant, p3).await,
        p("150.00", "100.00", "50.00", false)
    );

    // Lists: newest first (drafts first), filters, keyset pages.
    app.settle().await;
    let all = ar::list_invoices(db, tenant, &InvoiceFilter::default(), 50)
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|r| r.id).collect::<Vec<_>>(),
        [inv5, inv6, inv4, inv3, inv2, inv1]
    );
    let mut paged = Vec::new();
    let mut filter = InvoiceFilter::default();
    loop {
        let page = ar::list_invoices(db, tenant, &filter, 4).await.unwrap();
        let Some(last) = page.last() else { break };
        filter.before = Some(last.cursor());
        paged.extend(page.iter().map(|r| r.id));
    }
    assert_eq!(paged, all.iter().map(|r| r.id).collect::<Vec<_>>());
    let open = InvoiceFilter {
        company_id: Some(northwind),
        status: Some("open".into()),
        before: None,
    };
    let open: Vec<Uuid> = ar::list_invoices(db, tenant, &open, 50)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(open, [inv3, inv2, inv1]);
    let partly = InvoiceFilter {
        company_id: None,
        status: Some("partially_paid".into()),
        before: None,
    };
    let partly: Vec<Uuid> = ar::list_invoices(db, tenant, &partly, 50)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(partly, [inv2, inv1]);
    let of_contoso = InvoiceFilter {
        company_id: Some(contoso),
        ..Default::default()
    };
    assert_eq!(
        ar::list_invoices(db, tenant, &of_contoso, 50)
            .await
            .unwrap()
            .len(),
        1
    );
    let payments: Vec<Uuid> = ar::list_payments(db, tenant, None, 50)
        .await
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(payments, [p3, p2, p1]);
    let payments: Vec<Uuid> = ar::list_payments(db, tenant, Some(northwind), 1)
        .await
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(payments, [p2]);

    // Aging today: every movement is dated before, so the running balances are read; the
    // dated movements give the same report.
    let today = day("2026-04-20");
    let now = aging_both_ways(db, tenant, today).await;
    assert_eq!(
        now,
        ar::aging_from_balances(db, tenant, today).await.unwrap()
    );
    assert_eq!(
        rows(&now),
        [
            customer(
                "Contoso",
                ["0.00", "0.00", "0.00", "0.00", "0.00"],
                "50.00",
                "-50.00"
            ),
            // inv3 due 03-31 (20 days), inv2 due 02-15 (64), inv1 due 01-15 (95).
            customer(
                "Northwind",
                ["0.00", "320.00", "0.00", "450.00", "700.00"],
                "0.00",
                "1470.00"
            ),
        ]
    );
    assert_eq!(now.totals.total.to_string(), "1420.00");
    assert_eq!(now.totals.unapplied_credit.to_string(), "50.00");
    // The ledger's own balance formula gives each company's total.
    for (company, total) in [(northwind, "1470.00"), (contoso, "-50.00")] {
        assert_eq!(ledger_balance(store, tenant, company).await, dec(total));
        assert_eq!(
            ar::company_balance(db, tenant, company)
                .await
                .unwrap()
                .balance,
            dec(total)
        );
    }

    // As of past dates: what was owed then. On Jan 12 the second payment (Jan 20) and every
    // later invoice are not there; the first payment was unapplied back to Jan 10 (its own
    // date), so it is credit then.
    let then = aging_both_ways(db, tenant, day("2026-01-12")).await;
    assert_ne!(
        then,
        ar::aging_from_balances(db, tenant, day("2026-01-12"))
            .await
            .unwrap()
    );
    assert_eq!(
        rows(&then),
        [customer(
            "Northwind",
            ["1100.00", "0.00", "0.00", "0.00", "0.00"],
            "400.00",
            "700.00"
        )]
    );
    // After the bounced check and the credit note: invoice 1 is 23 days late, invoice 2 due.
    let then = aging_both_ways(db, tenant, day("2026-02-07")).await;
    assert_eq!(
        rows(&then),
        [customer(
            "Northwind",
            ["450.00", "700.00", "0.00", "0.00", "0.00"],
            "0.00",
            "1150.00"
        )]
    );
    assert!(aging_both_ways(db, tenant, day("2025-12-31"))
        .await
        .customers
        .is_empty());

    // A statement: the opening balance, then what moved the balance (allocations do not).
    let statement = ar::statement(db, tenant, northwind, day("2026-01-15"), day("2026-02-10"))
        .await
        .unwrap();
    assert_eq!(statement.company_name, "Northwind");
    assert_eq!(statement.opening_balance.to_string(), "700.00");
    let moves: Vec<(NaiveDate, String, String, String, String)> = statement
        .lines
        .iter()
        .map(|l| {
            (
                l.date,
                l.description.clone(),
                l.debit.to_string(),
                l.credit.to_string(),
                l.balance.to_string(),
            )
        })
        .collect();
    let m = |date: &str, description: &str, debit: &str, credit: &str, balance: &str| {
        (
            day(date),
            description.to_owned(),
            debit.to_owned(),
            credit.to_owned(),
            balance.to_owned(),
        )
    };
    assert_eq!(
        moves,
        [
            m(
                "2026-01-20",
                "Payment (bank transfer TX-9)",
                "0.00",
                "900.00",
                "-200.00"
            ),
            m(
                "2026-02-01",
                "Invoice 2, due 2026-02-15",
                "500.00",
                "0.00",
                "300.00"
            ),
            m(
                "2026-02-05",
                "Payment (bank transfer TX-9) reversed",
                "900.00",
                "0.00",
                "1200.00"
            ),
            m(
                "2026-02-06",
                "Credit note on invoice 2",
                "0.00",
                "50.00",
                "1150.00"
            ),
        ]
    );
    assert_eq!(statement.closing_balance.to_string(), "1150.00");

    // Billed time leaves the unbilled list.
    let order = open_order(store, tenant, 1, northwind).await;
    let hour = log_hour(store, tenant, order).await;
    let other_hour = log_hour(store, tenant, order).await;
    app.settle().await;
    let unbilled =
        |entries: Vec<wo::TimeEntryRow>| entries.iter().map(|e| e.id).collect::<Vec<_>>();
    let before = unbilled(wo::unbilled_entries(db, tenant, northwind).await.unwrap());
    assert_eq!(before.len(), 2);
    let inv7 = issue(
        store,
        tenant,
        northwind,
        time_line(order, hour),
        "2026-04-21",
        "2026-05-05",
        vec![format!("time/{hour}")],
    )
    .await;
    app.settle().await;
    assert_eq!(
        unbilled(wo::unbilled_entries(db, tenant, northwind).await.unwrap()),
        [other_hour]
    );
    let entries = wo::time_entries(db, tenant, order).await.unwrap();
    let billed: Vec<(Uuid, Option<Uuid>)> = entries.iter().map(|e| (e.id, e.invoice_id)).collect();
    assert!(billed.contains(&(hour, Some(inv7))) && billed.contains(&(other_hour, None)));
    assert_eq!(
        ledger_balance(store, tenant, northwind).await,
        dec("1560.00")
    );
    let later = aging_both_ways(db, tenant, day("2026-04-21")).await;
    assert_eq!(later.customers[1].total.to_string(), "1560.00");

    // Another tenant: its own rows, never this tenant's (and the other way round).
    let stranger = app.other_tenant("Globex IT", "owner@globex.test").await;
    let globex = company(&app, &stranger, "Globex Client").await;
    let theirs = issue(
        store,
        stranger.tenant_id,
        globex,
        lines(&[("Theirs", "80.00", None)], None),
        "2026-01-05",
        "2026-01-05",
        vec![],
    )
    .await;
    let their_payment = pay(
        store,
        stranger.tenant_id,
        globex,
        "30.00",
        "2026-01-06",
        Method::Card,
        "",
    )
    .await;
    app.settle().await;
    assert_eq!(
        ar::get_invoice(db, stranger.tenant_id, theirs)
            .await
            .unwrap()
            .map(|r| r.number),
        Some(Some(1)),
        "numbers are per tenant"
    );
    assert!(ar::get_invoice(db, tenant, theirs).await.unwrap().is_none());
    assert!(ar::get_invoice(db, stranger.tenant_id, inv1)
        .await
        .unwrap()
        .is_none());
    assert!(ar::get_payment(db, tenant, their_payment)
        .await
        .unwrap()
        .is_none());
    assert!(ar::invoice_payments(db, tenant, theirs)
        .await
        .unwrap()
        .is_empty());
    let mine = ar::list_invoices(db, tenant, &InvoiceFilter::default(), 50)
        .await
        .unwrap();
    assert!(mine.iter().all(|r| r.id != theirs));
    assert_eq!(
        ar::list_payments(db, tenant, None, 50).await.unwrap().len(),
        3
    );
    let none = ar::company_balance(db, tenant, globex).await.unwrap();
    assert_eq!(none.balance, Decimal::ZERO);
    assert!(
        ar::statement(db, tenant, globex, day("2026-01-01"), day("2026-12-31"))
            .await
            .unwrap()
            .lines
            .is_empty()
    );
    let ours = aging_both_ways(db, tenant, day("2026-04-21")).await;
    assert!(ours.customers.iter().all(|r| r.company_id != globex));
    let other = aging_both_ways(db, stranger.tenant_id, day("2026-04-21")).await;
    assert_eq!(
        rows(&other),
        [customer(
            "Globex Client",
            ["0.00", "0.00", "0.00", "0.00", "50.00"],
            "0.00",
            "50.00"
        )]
    );
    assert_eq!(
        ar::list_invoices(db, stranger.tenant_id, &InvoiceFilter::default(), 50)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        [theirs]
    );

    // A rebuild from the log gives the same rows, byte for byte.
    app.settle().await;
    let before = snapshot(db).await;
    let report = rebuild(
        db,
        &ReceivablesProjection,
        &RebuildOptions { batch_size: 3 },
        |_, _| {},
    )
    .await
    .unwrap();
    assert!(report.events > 50, "{report:?}");
    assert_eq!(snapshot(db).await, before);
    rebuild(
        db,
        &WorkOrdersProjection,
        &RebuildOptions::default(),
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(snapshot(db).await, before);
    for projection in [
        &ReceivablesProjection as &dyn Projection,
        &WorkOrdersProjection,
    ] {
        let verified = verify(db, projection).await.unwrap();
        assert!(
            verified.matches(),
            "{}: {:?}",
            projection.name(),
            verified.differences
        );
    }
    // The live runner carries on after the swap.
    ledger(
        store,
        tenant,
        contoso,
        L::Refund {
            payment_id: p3,
            amount: dec("50.00"),
            on: day("2026-04-22"),
            reference: String::new(),
        },
    )
    .await;
    assert_eq!(
        payment(&app, tenant, p3).await,
        p("150.00", "150.00", "0.00", false)
    );
}

/// Catches `projection` up in batches of `batch_size` until nothing lags (another test's open
/// transaction on the cluster can hold the guarded reader back for a moment).
async fn catch_up(pool: &sqlx::PgPool, projection: &dyn Projection, batch_size: i64) {
    let mut conn = pool.acquire().await.unwrap();
    let config = RunnerConfig {
        batch_size,
        ..Default::default()
    };
    loop {
        match projections::runner::catch_up(pool, &mut conn, projection, &config)
            .await
            .unwrap()
        {
            CatchUp::CaughtUp { .. } => {}
            CatchUp::Failed { position, error } => {
                panic!("{} failed at {position}: {error}", projection.name())
            }
        }
        let lag = projections::status::all(pool)
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == projection.name())
            .map_or(1, |s| s.lag);
        if lag == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The projection folds each batch in memory: one event per batch (every row loaded back
/// each time) or the whole log in one (a payment received, allocated, unapplied and reversed
/// within it), the rows are the same. And the aging buckets at their boundaries.
#[tokio::test]
async fn receivables_projection_gives_the_same_rows_whatever_the_batches() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    let store = EventStore::new(pool.clone());
    let tenant = commands::DEFAULT_TENANT_ID;
    let acme = Uuid::from_u128(7);
    let one_line = |amount: &str| lines(&[("Work", amount, None)], None);

    // A busy ledger: payments spread over invoices, unapplied, reapplied, reversed, refunded.
    let a = issue(
        &store,
        tenant,
        acme,
        one_line("100.00"),
        "2026-01-01",
        "2026-01-31",
        vec![],
    )
    .await;
    let b = issue(
        &store,
        tenant,
        acme,
        one_line("250.50"),
        "2026-01-05",
        "2026-02-04",
        vec![],
    )
    .await;
    let p1 = pay(
        &store,
        tenant,
        acme,
        "300.00",
        "2026-01-10",
        Method::Check,
        "1",
    )
    .await;
    let p2 = pay(
        &store,
        tenant,
        acme,
        "120.00",
        "2026-01-11",
        Method::Card,
        "2",
    )
    .await;
    ledger(
        &store,
        tenant,
        acme,
        L::Unapply {
            payment_id: p1,
            invoice_id: b,
        },
    )
    .await;
    ledger(
        &store,
        tenant,
        acme,
        L::ApplyCredit {
            on: day("2026-01-12"),
        },
    )
    .await;
    let c = issue(
        &store,
        tenant,
        acme,
        one_line("80.00"),
        "2026-01-15",
        "2026-01-15",
        vec![],
    )
    .await;
    ledger(
        &store,
        tenant,
        acme,
        L::ReversePayment {
            payment_id: p1,
            on: day("2026-01-20"),
            reason: "bounced".into(),
        },
    )
    .await;
    ledger(
        &store,
        tenant,
        acme,
        L::IssueCreditNote {
            credit_note_id: Uuid::new_v4(),
            number: 1,
            invoice_id: c,
            amount: dec("10.00"),
            date: day("2026-01-21"),
            reason: String::new(),
        },
    )
    .await;
    ledger(
        &store,
        tenant,
        acme,
        L::RemindOverdue {
            invoice_id: a,
            days: 3,
            on: day("2026-02-03"),
        },
    )
    .await;
    let p3 = pay(
        &store,
        tenant,
        acme,
        "1000.00",
        "2026-01-22",
        Method::BankTransfer,
        "3",
    )
    .await;
    ledger(
        &store,
        tenant,
        acme,
        L::Refund {
            payment_id: p3,
            amount: dec("200.00"),
            on: day("2026-01-23"),
            reference: String::new(),
        },
    )
    .await;
    // Time billed: one entry logged and billed in the same batch when the log is one batch.
    let order = open_order(&store, tenant, 1, acme).await;
    let hour = log_hour(&store, tenant, order).await;
    let unbilled_hour = log_hour(&store, tenant, order).await;
    let billing = issue(
        &store,
        tenant,
        acme,
        time_line(order, hour),
        "2026-03-03",
        "2026-03-17",
        vec![format!("time/{hour}")],
    )
    .await;

    // The aging buckets at their boundaries, on another company's invoices: due on the day
    // (current), 1 and 30 days ago (1–30), 31 and 60 (31–60), 61 and 90 (61–90), 91 (over 90),
    // and later (current).
    let edge = Uuid::from_u128(8);
    let as_of = day("2026-06-30");
    for (days, amount) in [
        (0, "1.00"),
        (1, "2.00"),
        (30, "4.00"),
        (31, "8.00"),
        (60, "16.00"),
        (61, "32.00"),
        (90, "64.00"),
        (91, "128.00"),
        (-5, "256.00"),
    ] {
        let due = as_of - chrono::Duration::days(days);
        let issued = due.min(as_of).to_string();
        issue(
            &store,
            tenant,
            edge,
            one_line(amount),
            &issued,
            &due.to_string(),
            vec![],
        )
        .await;
    }

    catch_up(pool, &ReceivablesProjection, 1).await;
    catch_up(pool, &WorkOrdersProjection, 1).await;
    let one_by_one = snapshot(pool).await;

    // Every invoice's balance and every payment's credit is the sum of its dated movements.
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM invoices i
          WHERE i.balance <> (SELECT coalesce(sum(amount), 0) FROM ar_entries e
                               WHERE e.tenant_id = i.tenant_id AND e.invoice_id = i.id)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(mismatched, 0);
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM payments p
          WHERE p.unapplied <> (SELECT coalesce(sum(amount), 0) FROM ar_entries e
                                 WHERE e.tenant_id = p.tenant_id AND e.payment_id = p.id
                                   AND e.invoice_id IS NULL)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(mismatched, 0);
    let (a_row, p1_row) = (
        ar::get_invoice(pool, tenant, a).await.unwrap().unwrap(),
        ar::get_payment(pool, tenant, p1).await.unwrap().unwrap(),
    );
    assert_eq!(a_row.reminders, 1);
    assert!(p1_row.payment.reversed && p1_row.allocations.is_empty());
    let entries = wo::time_entries(pool, tenant, order).await.unwrap();
    assert!(entries
        .iter()
        .any(|e| e.id == hour && e.invoice_id == Some(billing)));
    assert!(entries
        .iter()
        .any(|e| e.id == unbilled_hour && e.invoice_id.is_none()));

    let aging = aging_both_ways(pool, tenant, as_of).await;
    assert_eq!(
        aging,
        ar::aging_from_balances(pool, tenant, as_of).await.unwrap()
    );
    let edge_row = aging
        .customers
        .iter()
        .find(|r| r.company_id == edge)
        .unwrap();
    assert_eq!(
        [
            edge_row.current,
            edge_row.days_1_30,
            edge_row.days_31_60,
            edge_row.days_61_90,
            edge_row.days_over_90,
            edge_row.total,
        ]
        .map(|d| d.to_string()),
        ["257.00", "6.00", "24.00", "96.00", "128.00", "511.00"]
    );
    for company in [acme, edge] {
        let row = aging
            .customers
            .iter()
            .find(|r| r.company_id == company)
            .unwrap();
        assert_eq!(row.total, ledger_balance(&store, tenant, company).await);
    }
    // A day earlier, the invoices issued on the report's date are not there yet.
    let before = aging_both_ways(pool, tenant, as_of.pred_opt().unwrap()).await;
    let edge_row = before
        .customers
        .iter()
        .find(|r| r.company_id == edge)
        .unwrap();
    assert_eq!(edge_row.total.to_string(), "254.00");
    assert_eq!(edge_row.total, dec("511.00") - dec("1.00") - dec("256.00"));
    // Every day of the history, from the day before its first movement to after its last:
    // payments, reapplied, reversed and refunded credit all land on the same report each way.
    let (first, last): (NaiveDate, NaiveDate) =
        sqlx::query_as("SELECT min(on_date), max(on_date) FROM ar_entries WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_one(pool)
            .await
            .unwrap();
    let mut day = first.pred_opt().unwrap();
    let mut days = 0;
    while day <= last.succ_opt().unwrap() {
        aging_both_ways(pool, tenant, day).await;
        day = day.succ_opt().unwrap();
        days += 1;
    }
    assert!(days > 30, "{first} to {last}");

    // Rebuilt in batches of every size, the rows are the same.
    for batch_size in [10_000, 2, 5] {
        rebuild(
            pool,
            &ReceivablesProjection,
            &RebuildOptions { batch_size },
            |_, _| {},
        )
        .await
        .unwrap();
        rebuild(
            pool,
            &WorkOrdersProjection,
            &RebuildOptions { batch_size },
            |_, _| {},
        )
        .await
        .unwrap();
        assert_eq!(snapshot(pool).await, one_by_one, "batches of {batch_size}");
    }
    let verified = verify(pool, &ReceivablesProjection).await.unwrap();
    assert!(verified.matches(), "{:?}", verified.differences);
    let _ = (b, p2);
}
