//! `replay-tools export-ledger`: the receivables as an hledger / beancount journal, checked by
//! the real tools. Each customer's balance (its `Assets:Receivables:<Name>` account with its
//! `:Credit` sub-account) equals its `total` in the AR aging report, to the cent, for every
//! fact and as of past dates; bad arguments exit 2.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;

use axum::http::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use st_tests::process::replay_tools;
use st_tests::TestApp;
use uuid::Uuid;

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

async fn call(app: &TestApp, method: Method, path: &str, body: Value, expect: StatusCode) -> Value {
    let reply = app.request(method, path, Some(&body.to_string())).await;
    assert_eq!(reply.status, expect, "{path}: {}", reply.text);
    reply.json()
}

async fn company(app: &TestApp, name: &str, rate: &str) -> Uuid {
    let reply = call(
        app,
        Method::POST,
        "/api/v1/companies",
        json!({"name": name, "monthly_rate": rate}),
        StatusCode::CREATED,
    )
    .await;
    reply["id"].as_str().unwrap().parse().unwrap()
}

async fn invoice(app: &TestApp, company: Uuid, issued: &str, lines: Value) -> String {
    let reply = call(
        app,
        Method::POST,
        "/api/v1/invoices",
        json!({"company_id": company, "issue_date": issued, "lines": lines}),
        StatusCode::CREATED,
    )
    .await;
    reply["id"].as_str().unwrap().to_owned()
}

async fn pay(app: &TestApp, company: Uuid, amount: &str, on: &str, method: &str) -> Value {
    call(
        app,
        Method::POST,
        "/api/v1/payments",
        json!({"company_id": company, "amount": amount, "received_on": on,
               "method": method, "reference": "REF-1"}),
        StatusCode::CREATED,
    )
    .await
}

async fn credit_note(app: &TestApp, invoice: &str, amount: &str, on: &str) {
    call(
        app,
        Method::POST,
        &format!("/api/v1/invoices/{invoice}/credit-notes"),
        json!({"amount": amount, "date": on, "reason": "goodwill; \"sorry\""}),
        StatusCode::CREATED,
    )
    .await;
}

/// `customers[].total` of the aging report as of `as_of`, by company.
async fn aging(app: &TestApp, as_of: &str) -> BTreeMap<Uuid, Decimal> {
    let report = call(
        app,
        Method::GET,
        &format!("/api/v1/reports/ar-aging?as_of={as_of}"),
        Value::Null,
        StatusCode::OK,
    )
    .await;
    report["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["company_id"].as_str().unwrap().parse().unwrap(),
                dec(c["total"].as_str().unwrap()),
            )
        })
        .collect()
}

fn short_id(id: Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}

/// Runs a checker; a missing hledger fails the test (`make test` installs it).
fn tool(program: &str, args: &[&str]) -> Option<Output> {
    match Command::new(program).args(args).output() {
        Ok(output) => Some(output),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("cannot run {program}: {e}"),
    }
}

fn hledger(args: &[&str]) -> String {
    let output = tool("hledger", args)
        .expect("hledger is missing: run `make test` (scripts/setup.sh installs it)");
    assert!(
        output.status.success(),
        "hledger {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The balance of every `Assets:Receivables:<Customer>` (with its sub-accounts) per hledger,
/// zeros left out; `end`: only transactions before this date.
fn hledger_balances(file: &Path, currency: &str, end: Option<&str>) -> BTreeMap<String, Decimal> {
    let file = file.to_str().unwrap();
    let mut args = vec![
        "-f",
        file,
        "balance",
        "^Assets:Receivables:",
        "--flat",
        "--depth",
        "3",
        "-N",
        "-O",
        "csv",
    ];
    if let Some(end) = end {
        args.extend(["-e", end]);
    }
    let csv = hledger(&args);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("\"account\",\"balance\""), "{csv}");
    lines
        .map(|line| {
            let (account, amount) = line
                .trim_matches('"')
                .split_once("\",\"")
                .unwrap_or_else(|| panic!("{line}"));
            let number = amount
                .strip_suffix(&format!(" {currency}"))
                .unwrap_or_else(|| panic!("{currency} in {line}"));
            (account.to_owned(), dec(number))
        })
        .filter(|(_, amount)| !amount.is_zero())
        .collect()
}

/// `bean-check`s the file (when beancount is installed) and returns the receivables balances
/// per `bean-query` (when that is installed too).
fn beancount_balances(file: &Path) -> Option<BTreeMap<String, Decimal>> {
    let file = file.to_str().unwrap();
    let Some(check) = tool("bean-check", &[file]) else {
        eprintln!("bean-check is not installed: the beancount journal is not checked");
        return None;
    };
    assert!(
        check.status.success(),
        "bean-check: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let query = "SELECT root(account, 3) AS customer, sum(number) AS balance \
                 WHERE account ~ '^Assets:Receivables:' GROUP BY customer";
    let output = tool("bean-query", &["-f", "csv", file, query])?;
    assert!(
        output.status.success(),
        "bean-query: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let csv = String::from_utf8(output.stdout).unwrap();
    Some(
        csv.lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let (account, amount) = line.split_once(',').unwrap_or_else(|| panic!("{line}"));
                (account.trim().to_owned(), dec(amount.trim()))
            })
            .filter(|(_, amount)| !amount.is_zero())
            .collect(),
    )
}

/// Runs `export-ledger` into a fresh file and returns it.
fn export(url: &str, dir: &Path, format: &str, extra: &[&str]) -> PathBuf {
    let file = dir.join(format!("{}.{format}", Uuid::new_v4().simple()));
    let mut args = vec!["export-ledger", "--format", format];
    args.extend_from_slice(extra);
    args.push(file.to_str().unwrap());
    let output = replay_tools(url, &args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "export-ledger {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    file
}

/// What the journal must show: the aging totals by account, zeros left out.
fn expected(
    aging: &BTreeMap<Uuid, Decimal>,
    accounts: &BTreeMap<Uuid, String>,
) -> BTreeMap<String, Decimal> {
    aging
        .iter()
        .filter(|(_, total)| !total.is_zero())
        .map(|(id, total)| {
            let account = accounts
                .get(id)
                .unwrap_or_else(|| panic!("an aging customer {id} the test did not make"));
            (account.clone(), *total)
        })
        .collect()
}

#[tokio::test]
async fn ledger_export_balances_equal_the_aging_report_in_hledger_and_beancount() {
    // Fails (not skips) without hledger.
    hledger(&["--version"]);
    let app = TestApp::new().await;
    let url = app.db.url.clone();
    let dir = std::env::temp_dir().join(format!("st-ledger-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();

    // Northwind: a contract of 500.00 + 20% tax a month, billed Jan, Feb and Mar (600.00 each).
    let northwind = company(&app, "Northwind Ltd", "500.00").await;
    call(
        &app,
        Method::PUT,
        &format!("/api/v1/companies/{northwind}/billing"),
        json!({"billing_day": 1, "start_date": "2026-01-01", "tax_rate": "20"}),
        StatusCode::OK,
    )
    .await;
    let run = call(
        &app,
        Method::POST,
        "/api/v1/billing/runs",
        json!({"as_of": "2026-03-01"}),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(run["invoices"].as_array().unwrap().len(), 3, "{run}");
    // A partial payment (Jan, and 100.00 of Feb) that bounces later; an overpayment (Feb,
    // Mar, 200.00 credit) partly refunded.
    let check = pay(&app, northwind, "700.00", "2026-02-10", "check").await;
    let transfer = pay(&app, northwind, "1300.00", "2026-03-10", "bank_transfer").await;
    assert_eq!(transfer["unapplied"], "200.00", "{transfer}");
    call(
        &app,
        Method::POST,
        &format!(
            "/api/v1/payments/{}/refunds",
            transfer["id"].as_str().unwrap()
        ),
        json!({"amount": "50.00", "on": "2026-03-12", "reference": "refund (wire)"}),
        StatusCode::OK,
    )
    .await;
    call(
        &app,
        Method::POST,
        &format!("/api/v1/payments/{}/reverse", check["id"].as_str().unwrap()),
        json!({"on": "2026-03-15", "reason": "returned by the bank"}),
        StatusCode::OK,
    )
    .await;

    // A name with accents, spaces and punctuation: invoices, credit notes, a void, a card
    // payment.
    let societe = company(&app, "Société Générale – Müller & Co. (Paris)", "0.00").await;
    let audit = invoice(
        &app,
        societe,
        "2026-02-05",
        json!([{"description": "Audit", "quantity": "2", "unit_price": "450.00", "tax_rate": "20"},
               {"description": "Travel", "quantity": "1", "unit_price": "75.50"}]),
    )
    .await;
    credit_note(&app, &audit, "155.50", "2026-02-20").await;
    let wrong = invoice(
        &app,
        societe,
        "2026-02-06",
        json!([{"description": "Wrong customer", "quantity": "1", "unit_price": "300.00"}]),
    )
    .await;
    credit_note(&app, &wrong, "50.00", "2026-02-25").await;
    call(
        &app,
        Method::POST,
        &format!("/api/v1/invoices/{wrong}/void"),
        json!({"on": "2026-03-01", "reason": "wrong customer"}),
        StatusCode::OK,
    )
    .await;
    pay(&app, societe, "400.00", "2026-03-05", "card").await;

    // A name that makes the same account name as Northwind's, in credit.
    let twin = company(&app, "northwind, ltd.", "0.00").await;
    invoice(
        &app,
        twin,
        "2026-01-20",
        json!([{"description": "Setup", "quantity": "1", "unit_price": "100.00"}]),
    )
    .await;
    pay(&app, twin, "250.00", "2026-01-25", "cash").await;
    // A company without a ledger has no account.
    company(&app, "Contoso", "0.00").await;
    app.settle().await;

    let accounts: BTreeMap<Uuid, String> = [
        (
            northwind,
            format!("Assets:Receivables:Northwind-Ltd-{}", short_id(northwind)),
        ),
        (
            societe,
            "Assets:Receivables:Societe-Generale-Muller-And-Co-Paris".to_owned(),
        ),
        (
            twin,
            format!("Assets:Receivables:Northwind-Ltd-{}", short_id(twin)),
        ),
    ]
    .into();

    // Every fact: issued − credit notes − payments + refunds, reversed and voided undone.
    let today = aging(&app, "2030-01-01").await;
    assert_eq!(today[&northwind], dec("550.00"), "1800 − 1300 + 50");
    assert_eq!(today[&societe], dec("600.00"), "1155.50 − 155.50 − 400");
    assert_eq!(today[&twin], dec("-150.00"), "100 − 250");
    let everything = expected(&today, &accounts);
    let journal = export(&url, &dir, "hledger", &[]);
    assert_eq!(hledger_balances(&journal, "USD", None), everything);
    let text = std::fs::read_to_string(&journal).unwrap();
    for expected in [
        "2026-01-01 * (1) Northwind Ltd | Invoice 1",
        "Société Générale – Müller & Co. (Paris) | Credit note",
        "Income:Sales",
        "Liabilities:Tax",
        "Assets:Bank:Check",
        "Assets:Bank:Bank-Transfer",
        "Payment (check REF-1) reversed",
        "voided",
        "USD",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    // Strict: every account and commodity declared, dates in order.
    hledger(&[
        "-f",
        journal.to_str().unwrap(),
        "check",
        "-s",
        "ordereddates",
    ]);
    // Tax is what stays invoiced.
    let totals = hledger(&[
        "-f",
        journal.to_str().unwrap(),
        "balance",
        "-N",
        "--flat",
        "-O",
        "csv",
    ]);
    assert!(
        totals.contains("\"Liabilities:Tax\",\"-480.00 USD\""),
        "3 × 100.00 + 180.00 of tax:\n{totals}"
    );
    let beancount = export(&url, &dir, "beancount", &[]);
    if let Some(balances) = beancount_balances(&beancount) {
        assert_eq!(balances, everything, "per bean-query");
    }

    // As of past dates: the export of the facts up to then, and the whole journal up to then
    // (hledger's end date is exclusive).
    for (as_of, next_day) in [
        ("2025-12-31", "2026-01-01"),
        ("2026-01-31", "2026-02-01"),
        ("2026-02-10", "2026-02-11"),
        ("2026-02-28", "2026-03-01"),
        ("2026-03-01", "2026-03-02"),
        ("2026-03-11", "2026-03-12"),
        ("2026-03-13", "2026-03-14"),
        ("2026-03-15", "2026-03-16"),
    ] {
        let want = expected(&aging(&app, as_of).await, &accounts);
        let past = export(&url, &dir, "hledger", &["--as-of", as_of]);
        assert_eq!(hledger_balances(&past, "USD", None), want, "as of {as_of}");
        assert_eq!(
            hledger_balances(&journal, "USD", Some(next_day)),
            want,
            "the whole journal up to {as_of}"
        );
        let beancount = export(&url, &dir, "beancount", &["--as-of", as_of]);
        if let Some(balances) = beancount_balances(&beancount) {
            assert_eq!(balances, want, "per bean-query as of {as_of}");
        }
    }
    let feb = expected(&aging(&app, "2026-02-28").await, &accounts);
    assert_eq!(
        feb[&accounts[&northwind]],
        dec("500.00"),
        "1200 − 700: {feb:?}"
    );
    assert_eq!(
        feb[&accounts[&societe]],
        dec("1250.00"),
        "1155.50 − 155.50 + 300 − 50: {feb:?}"
    );

    // To stdout.
    let output = replay_tools(&url, &["export-ledger", "--as-of", "2026-01-31", "-"]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("Invoice 1"), "{stdout}");
    assert!(
        !stdout.contains("2026-02-10"),
        "nothing after the date: {stdout}"
    );

    // Bad arguments: exit 2 with a message, no file.
    let missing = dir.join("no-such-dir").join("x.journal");
    let unknown = Uuid::new_v4().to_string();
    for (args, says) in [
        (vec!["export-ledger", "--format", "gnucash", "-"], "gnucash"),
        (
            vec!["export-ledger", "--as-of", "2026-02-30", "-"],
            "2026-02-30",
        ),
        (vec!["export-ledger", "--tenant", "acme", "-"], "acme"),
        (vec!["export-ledger"], "FILE"),
        (
            vec!["export-ledger", "--tenant", &unknown, "-"],
            "no tenant",
        ),
        (
            vec!["export-ledger", missing.to_str().unwrap()],
            "no such directory",
        ),
    ] {
        let output = replay_tools(&url, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let output = replay_tools(&url, &["export-ledger", "--tenant", &unknown, "-"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("Acme IT"), "names the tenants: {stderr}");
    assert!(!missing.parent().unwrap().exists());

    // Two tenants: one must be named.
    let other = app.other_tenant("Other MSP", "owner@other.test").await;
    let output = replay_tools(&url, &["export-ledger", "-"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    for name in ["Acme IT", "Other MSP", &other.tenant_id.to_string()] {
        assert!(stderr.contains(name), "{name} in {stderr}");
    }
    let tenant = other.tenant_id.to_string();
    let empty = export(&url, &dir, "hledger", &["--tenant", &tenant]);
    assert!(hledger_balances(&empty, "USD", None).is_empty());
    let ours = export(
        &url,
        &dir,
        "hledger",
        &["--tenant", &app.owner.tenant_id.to_string()],
    );
    assert_eq!(hledger_balances(&ours, "USD", None), everything);
    let _ = std::fs::remove_dir_all(&dir);
}
