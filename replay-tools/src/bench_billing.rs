//! The billing section of `bench` (issue 7), run in the bench's scratch database after the
//! other measurements, in a tenant of its own:
//!
//! 1. a fresh tenant (bootstrapped as a person would, with reminders and a late fee set) and
//!    `CONTRACTS` companies with billing terms (billed on the 1st from the 1st of this month,
//!    half of them taxed), their events generated in one statement; the `companies` and
//!    `contracts` projections caught up before anything is timed;
//! 2. one billing run through the real code (`web::billing::run::run`) as of today: exactly
//!    one period is due per contract, so `CONTRACTS` invoices with gapless numbers. Its rate
//!    is compared with `append_per_s_1` measured by the bench in the same run (commands/s
//!    through the command path with one writer), because the machine's commit rate varies
//!    from run to run;
//! 3. `INVOICES` invoices in all over the same customers: 49 months of history per customer
//!    (most paid, some open for 1, 3 or 6 months, some partly paid, some customers in
//!    credit), generated as well-formed ledger events (with the invoice sequence's
//!    `NumberIssued` events) in a few statements, then the `receivables` projection rebuilt
//!    from the log; then the aging report as of today (`projections::receivables::aging`,
//!    which reads the running balances) and, for information, as of a year ago and as of the
//!    last month end (today's balances less the movements since), median of several runs
//!    each, with the year-ago report also summed from every movement (`aging_from_entries`,
//!    the definition every report is checked against).

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{Datelike, NaiveDate, Utc};
use commands::{ConflictPolicy, EventMeta, EventStore};
use domain::identity::{Currency, Email, TimeZone};
use domain::tenant::{LateFee, LatePayment, Tenant, TenantCommand};
use projections::companies::CompaniesProjection;
use projections::contracts::ContractsProjection;
use projections::rebuild::RebuildOptions;
use projections::receivables::ReceivablesProjection;
use projections::runner::{catch_up, CatchUp, RunnerConfig};
use projections::Projection;
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::bench::Rate;

/// Contracts billed by the timed run (one invoice each).
pub(crate) const CONTRACTS: u64 = 10_000;
/// Invoices of the tenant when the aging report is timed (the run's and the history).
pub(crate) const INVOICES: u64 = 500_000;
/// Timed runs of each aging report (after one untimed run); the median is kept.
const AGING_RUNS: usize = 7;
/// Customers per statement that generates the history.
const HISTORY_CHUNK: u64 = 1_000;

pub(crate) const TARGET_BILLING_RATIO: f64 = 0.5;
pub(crate) const TARGET_AGING_MS: f64 = 100.0;

/// Who the run's and the seed's events are recorded as.
const ACTOR: &str = "bench-billing";

/// The figures of the section, ready for the bench's JSON.
pub(crate) struct Figures {
    pub(crate) json: serde_json::Map<String, serde_json::Value>,
}

/// Runs the section on `pool` (the bench's scratch database) and prints its lines.
pub(crate) async fn run(pool: &PgPool, append_per_s_1: f64) -> anyhow::Result<Figures> {
    let section = Instant::now();
    let today = Utc::now().date_naive();
    let start = NaiveDate::from_ymd_opt(today.year(), today.month(), 1)
        .context("the first of this month")?;
    let store = EventStore::new(pool.clone());
    let state = web::state::AppState::new(
        pool.clone(),
        store.clone(),
        web::state::Settings::local(Duration::from_secs(2)),
    );

    // 1. The tenant and its contracts.
    let started = Instant::now();
    let prefix = Uuid::new_v4().simple().to_string();
    let tenant_id = bootstrap_tenant(&store, &prefix).await?;
    seed_contracts(pool, tenant_id, &prefix, start).await?;
    sqlx::raw_sql("ANALYZE events").execute(pool).await?;
    let runner = RunnerConfig::default();
    for projection in [
        &CompaniesProjection as &dyn Projection,
        &ContractsProjection,
    ] {
        caught_up(pool, projection, &runner).await?;
    }
    let active = projections::contracts::active_of(pool, tenant_id, today).await?;
    anyhow::ensure!(
        active.len() as u64 == CONTRACTS,
        "the contracts projection has {} active contracts of {CONTRACTS}",
        active.len()
    );
    out!(
        "billing: tenant with {CONTRACTS} contracts (billed monthly from {start}) seeded and \
         projected in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 2. The billing run, as the scheduler's job runs it.
    let started = Instant::now();
    let billed = web::billing::run::run(&state, tenant_id, today, false, ACTOR).await?;
    let billing = Rate {
        count: billed.len() as u64,
        elapsed: started.elapsed(),
    };
    anyhow::ensure!(
        billing.count == CONTRACTS,
        "the billing run made {} invoices for {CONTRACTS} contracts",
        billing.count
    );
    let mut numbers: Vec<u64> = billed.iter().filter_map(|b| b.number).collect();
    numbers.sort_unstable();
    anyhow::ensure!(
        numbers.len() as u64 == CONTRACTS
            && numbers.first() == Some(&1)
            && numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "the run's invoice numbers are not 1..={CONTRACTS} without gaps"
    );
    let billing_ratio = billing.per_s() / append_per_s_1;
    out!(
        "billing run:        {:>8.0} invoices/s ({} invoices in {:.2} s)  append x1 {append_per_s_1:.0}/s  \
         ratio {billing_ratio:.2} (target >= {TARGET_BILLING_RATIO}) {}",
        billing.per_s(),
        billing.count,
        billing.elapsed.as_secs_f64(),
        verdict(billing_ratio >= TARGET_BILLING_RATIO)
    );
    // A second run bills nothing (every period is in its ledger): what a re-run costs.
    let started = Instant::now();
    let again = web::billing::run::run(&state, tenant_id, today, false, ACTOR).await?;
    let rerun_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        again.is_empty(),
        "a second run made {} invoices",
        again.len()
    );
    out!("  re-run (nothing due): {rerun_s:.2} s");
    drop(state);
    drop(store);

    // 3. The history, then the aging report.
    let started = Instant::now();
    let months = INVOICES / CONTRACTS - 1;
    let seeded = seed_history(pool, tenant_id, &prefix, start, today, months).await?;
    let seed_s = started.elapsed().as_secs_f64();
    // As `replay-tools rebuild receivables` fills it (batches of 10,000, indexes built after
    // the fill): twice as fast as the runner's catch-up here, for the same tables.
    let started = Instant::now();
    let report = projections::rebuild::rebuild(
        pool,
        &ReceivablesProjection,
        &RebuildOptions::default(),
        |_, _| {},
    )
    .await
    .context("rebuilding the receivables projection")?;
    let rebuild = Rate {
        count: report.events,
        elapsed: started.elapsed(),
    };
    sqlx::raw_sql("VACUUM (ANALYZE) invoices, payments, payment_allocations, ar_entries")
        .execute(pool)
        .await?;
    let (invoices, open): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE balance <> 0) FROM invoices WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_one(pool)
    .await?;
    anyhow::ensure!(
        invoices as u64 == INVOICES,
        "the receivables projection has {invoices} invoices of the tenant, not {INVOICES}"
    );
    out!(
        "  history: {seeded} ledger and sequence events ({invoices} invoices in all, {open} open) \
         seeded in {seed_s:.1} s; receivables rebuilt from the log in {:.1} s ({:.0} events/s)",
        rebuild.elapsed.as_secs_f64(),
        rebuild.per_s()
    );

    let (aging_ms, today_report) = timed(AGING_RUNS, || {
        projections::receivables::aging(pool, tenant_id, today)
    })
    .await?;
    // Past dates: the report as the API answers it (today's balances less the movements
    // since), and summed from every movement up to the date (the definition) for comparison.
    let past = today - chrono::Duration::days(365);
    let month_end = today.with_day(1).expect("the 1st") - chrono::Duration::days(1);
    let (aging_past_ms, past_report) = timed(AGING_RUNS, || {
        projections::receivables::aging(pool, tenant_id, past)
    })
    .await?;
    let (aging_month_end_ms, month_end_report) = timed(AGING_RUNS, || {
        projections::receivables::aging(pool, tenant_id, month_end)
    })
    .await?;
    let (aging_past_entries_ms, past_from_entries) = timed(AGING_RUNS, || {
        projections::receivables::aging_from_entries(pool, tenant_id, past)
    })
    .await?;
    // Every way must give the report that the dated movements give.
    for (day, report, from_entries) in [
        (today, &today_report, None),
        (past, &past_report, Some(&past_from_entries)),
        (month_end, &month_end_report, None),
    ] {
        let from_entries = match from_entries {
            Some(known) => known.clone(),
            None => projections::receivables::aging_from_entries(pool, tenant_id, day).await?,
        };
        anyhow::ensure!(
            &from_entries == report,
            "the aging report as of {day} differs from the one summed from the dated movements"
        );
    }
    let customers = today_report.customers.len();
    let in_credit = today_report
        .customers
        .iter()
        .filter(|c| c.total < Decimal::ZERO)
        .count();
    out!(
        "aging (today, {customers} customers owing or in credit ({in_credit} in credit), \
         {INVOICES} invoices): {aging_ms:.1} ms median of {AGING_RUNS} (target < {TARGET_AGING_MS} ms) {}; \
         total {}, over 90 days {}",
        verdict(aging_ms < TARGET_AGING_MS),
        today_report.totals.total,
        today_report.totals.days_over_90,
    );
    out!(
        "  aging as of {past} ({} customers): {aging_past_ms:.1} ms median \
         (summed from every movement up to it: {aging_past_entries_ms:.1} ms); \
         as of the last month end {month_end}: {aging_month_end_ms:.1} ms",
        past_report.customers.len()
    );
    let section_s = section.elapsed().as_secs_f64();
    out!("  billing section: {section_s:.1} s");

    let round = |x: f64, places: i32| {
        let factor = 10f64.powi(places);
        (x * factor).round() / factor
    };
    let mut json = serde_json::Map::new();
    for (key, value) in [
        ("billing_contracts", json!(CONTRACTS)),
        ("billing_invoices_per_s", json!(round(billing.per_s(), 0))),
        ("billing_s", json!(round(billing.elapsed.as_secs_f64(), 3))),
        ("billing_ratio", json!(round(billing_ratio, 3))),
        ("billing_rerun_s", json!(round(rerun_s, 3))),
        ("aging_invoices", json!(INVOICES)),
        ("aging_customers", json!(customers)),
        ("aging_ms", json!(round(aging_ms, 2))),
        ("aging_past_ms", json!(round(aging_past_ms, 2))),
        (
            "aging_past_entries_ms",
            json!(round(aging_past_entries_ms, 2)),
        ),
        ("aging_month_end_ms", json!(round(aging_month_end_ms, 2))),
        (
            "receivables_rebuild_s",
            json!(round(rebuild.elapsed.as_secs_f64(), 2)),
        ),
        ("billing_section_s", json!(round(section_s, 1))),
    ] {
        json.insert(key.into(), value);
    }
    Ok(Figures { json })
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "BELOW TARGET"
    }
}

/// Catches `projection` up to the end of the log; returns the events it read.
async fn caught_up(
    pool: &PgPool,
    projection: &dyn Projection,
    runner: &RunnerConfig,
) -> anyhow::Result<u64> {
    let mut conn = pool.acquire().await?;
    match catch_up(pool, &mut conn, projection, runner).await? {
        CatchUp::CaughtUp { applied } => Ok(applied),
        CatchUp::Failed { position, error } => anyhow::bail!(
            "{} catch-up failed at {position}: {error}",
            projection.name()
        ),
    }
}

/// Runs `query` once untimed, then `runs` times; the median in ms and the last result.
async fn timed<T, F, Fut>(runs: usize, query: F) -> anyhow::Result<(f64, T)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let mut last = query().await?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        last = query().await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let n = times.len();
    let median = if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    };
    Ok((median, last))
}

/// A tenant as a person creates it (owner, UTC), with reminders 7 and 30 days past due and a
/// late fee of 25.00 at 30 days past due: the run checks both for every company.
async fn bootstrap_tenant(store: &EventStore, prefix: &str) -> anyhow::Result<Uuid> {
    let done = commands::identity::bootstrap(
        store,
        commands::identity::NewTenant {
            tenant_name: "Billing bench MSP".to_owned(),
            owner_name: "Bench Owner".to_owned(),
            email: Email::parse(&format!("owner-{}@bench.test", &prefix[..12]))?,
            password: "bench-billing-password".to_owned(),
            currency: Currency::parse("USD")?,
            time_zone: TimeZone::parse("UTC")?,
        },
    )
    .await?;
    let tenant_id = done.tenant_id;
    store
        .execute::<Tenant>(
            &tenant_id.to_string(),
            TenantCommand::SetLatePayment {
                policy: LatePayment {
                    reminder_days: vec![7, 30],
                    fee: Some(LateFee {
                        after_days: 30,
                        amount: Decimal::new(2500, 2),
                        percent: false,
                    }),
                },
            },
            &(),
            &EventMeta::new(tenant_id, done.user_id.to_string()),
            ConflictPolicy::Report,
        )
        .await
        .map_err(|e| anyhow::anyhow!("setting the late-payment policy: {e}"))?;
    Ok(tenant_id)
}

/// `CONTRACTS` companies (ids `md5(prefix:company:c)`), each registered with a monthly rate
/// of 100.00 to 1,075.00 and then given billing terms (day 1 from `start`, 30 days to pay,
/// 8.25 % tax for even `c`), in one statement.
async fn seed_contracts(
    pool: &PgPool,
    tenant_id: Uuid,
    prefix: &str,
    start: NaiveDate,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, recorded_at)
         SELECT 'company', x.id, s.seq,
                CASE s.seq WHEN 1 THEN 'CompanyRegistered' ELSE 'ContractBillingChanged' END,
                '1',
                CASE s.seq
                  WHEN 1 THEN jsonb_build_object('CompanyRegistered',
                         jsonb_build_object('name', x.name, 'monthly_rate', x.rate))
                  ELSE jsonb_build_object('ContractBillingChanged',
                         jsonb_build_object('billing', jsonb_build_object(
                             'billing_day', 1, 'start_date', $4::date, 'end_date', NULL,
                             'payment_terms_days', 30, 'prorate', false, 'tax_exempt', false,
                             'tax_rate', x.tax_rate)))
                END,
                jsonb_build_object('tenant_id', $1::uuid, 'actor', $5::text,
                                   'command_id', x.command_id, 'correlation_id', x.command_id,
                                   'causation_id', NULL),
                now() - interval '1 hour' + (c * 2 + s.seq) * interval '1 millisecond'
           FROM generate_series(0::int8, $3::int8 - 1) AS c
                CROSS JOIN (VALUES (1), (2)) AS s(seq),
                LATERAL (SELECT md5($2 || ':company:' || c)::uuid::text AS id,
                                'Billing customer ' || lpad(c::text, 5, '0') AS name,
                                ((100 + (c % 40) * 25)::numeric(14,2))::text AS rate,
                                CASE WHEN c % 2 = 0 THEN '8.25' END AS tax_rate,
                                md5($2 || ':command:' || c || ':' || s.seq)::uuid AS command_id) x
          ORDER BY c, s.seq",
    )
    .bind(tenant_id)
    .bind(prefix)
    .bind(CONTRACTS as i64)
    .bind(start)
    .bind(ACTOR)
    .execute(pool)
    .await
    .context("seeding the billing contracts")?;
    Ok(())
}

/// `months` invoices per customer before `start` (one a month, for the contract's month,
/// 30 days to pay), appended after the run's events of each ledger, with the invoice
/// sequence's `NumberIssued` events (numbers go on after the run's, month by month). Most are
/// paid by one payment each, received 3 to 42 days after the invoice (never after `today`);
/// customers with `c % 10` = 0, 1, 2 leave their last 3, 1, 6 invoices open, `c % 10` = 3 paid
/// its last invoice half; customers with `c % 20` = 7 paid this month's invoice and 50.00
/// more (unapplied credit). Returns the events appended.
async fn seed_history(
    pool: &PgPool,
    tenant_id: Uuid,
    prefix: &str,
    start: NaiveDate,
    today: NaiveDate,
    months: u64,
) -> anyhow::Result<u64> {
    let stream = domain::sequence::sequence_id(tenant_id, web::billing::run::INVOICE_SEQUENCE);
    let last_number: Option<i64> = sqlx::query_scalar(
        "SELECT max(sequence) FROM events WHERE aggregate_type = 'sequence' AND aggregate_id = $1",
    )
    .bind(&stream)
    .fetch_one(pool)
    .await?;
    let mut appended = 0;
    let mut first = 0u64;
    while first < CONTRACTS {
        let last = (first + HISTORY_CHUNK).min(CONTRACTS) - 1;
        let done = sqlx::query(
            "WITH cust AS (
                SELECT c, md5($2 || ':company:' || c)::uuid AS company_id,
                       (100 + (c % 40) * 25)::numeric(14,2) AS rate,
                       CASE WHEN c % 2 = 0 THEN 8.25 END AS tax_rate,
                       CASE c % 10 WHEN 0 THEN 3 WHEN 1 THEN 1 WHEN 2 THEN 6 WHEN 3 THEN 1
                                   ELSE 0 END AS open_n,
                       c % 10 = 3 AS partial
                  FROM generate_series($3::int8, $4::int8) AS c
             ), ledger AS (
                SELECT cust.*,
                       (SELECT coalesce(max(e.sequence), 0) FROM events e
                         WHERE e.aggregate_type = 'ledger'
                           AND e.aggregate_id = cust.company_id::text) AS last_seq
                  FROM cust
             ), inv AS (
                SELECT l.*, k,
                       ($5::date - ($6::int8 - k) * interval '1 month')::date AS issue_date,
                       ($5::date - ($6::int8 - k - 1) * interval '1 month')::date - 1 AS period_end,
                       round(l.rate * coalesce(l.tax_rate, 0) / 100, 2) AS tax,
                       md5($2 || ':invoice:' || l.c || ':' || k)::uuid AS invoice_id,
                       md5($2 || ':payment:' || l.c || ':' || k)::uuid AS payment_id,
                       md5($2 || ':issue:' || l.c || ':' || k)::uuid AS issue_command,
                       md5($2 || ':pay:' || l.c || ':' || k)::uuid AS pay_command,
                       $7::int8 + k * $8::int8 + l.c + 1 AS number
                  FROM ledger l, generate_series(0::int8, $6::int8 - 1) AS k
             ), priced AS (
                SELECT inv.*, rate + tax AS total,
                       CASE WHEN k < $6::int8 - open_n THEN rate + tax
                            WHEN partial THEN round((rate + tax) / 2, 2)
                            ELSE 0 END AS paid,
                       least(issue_date + (3 + (c * 7 + k) % 40)::int, $9::date) AS received_on
                  FROM inv
             ), credit AS (
                SELECT l.c, l.company_id, l.last_seq, cur.invoice_id, cur.total,
                       md5($2 || ':credit:' || l.c)::uuid AS payment_id,
                       md5($2 || ':pay-credit:' || l.c)::uuid AS pay_command
                  FROM ledger l
                  CROSS JOIN LATERAL (
                      SELECT (e.payload->'InvoiceIssued'->>'invoice_id')::uuid AS invoice_id,
                             (e.payload->'InvoiceIssued'->>'total')::numeric(14,2) AS total
                        FROM events e
                       WHERE e.aggregate_type = 'ledger' AND e.aggregate_id = l.company_id::text
                         AND e.event_type = 'InvoiceIssued'
                       ORDER BY e.sequence LIMIT 1) cur
                 WHERE l.c % 20 = 7
             ), rows AS (
                SELECT c, k, 0 AS slot, 'sequence' AS aggregate_type, $10::text AS aggregate_id,
                       number AS fixed_seq, 'NumberIssued' AS event_type,
                       jsonb_build_object('NumberIssued', jsonb_build_object(
                           'number', number, 'aggregate_type', 'ledger',
                           'aggregate_id', company_id::text)) AS payload,
                       issue_command AS command_id, last_seq
                  FROM priced
                UNION ALL
                SELECT c, k, 1, 'ledger', company_id::text, NULL::int8, 'InvoiceIssued',
                       jsonb_build_object('InvoiceIssued', jsonb_build_object(
                           'invoice_id', invoice_id, 'number', number,
                           'issue_date', issue_date, 'due_date', issue_date + 30,
                           'lines', jsonb_build_array(jsonb_build_object(
                               'description', 'Contract, ' || issue_date || ' to ' || period_end,
                               'quantity', '1', 'unit_price', rate::text,
                               'tax_rate', tax_rate::text, 'net', rate::text, 'tax', tax::text,
                               'source', jsonb_build_object('kind', 'contract',
                                   'period_start', issue_date, 'period_end', period_end))),
                           'total', total::text,
                           'bills', jsonb_build_array('contract/' || issue_date))),
                       issue_command, last_seq
                  FROM priced
                UNION ALL
                SELECT c, k, 2, 'ledger', company_id::text, NULL::int8, 'PaymentReceived',
                       jsonb_build_object('PaymentReceived', jsonb_build_object(
                           'payment_id', payment_id, 'amount', paid::text,
                           'received_on', received_on, 'method', 'bank_transfer',
                           'reference', 'TRF ' || number)),
                       pay_command, last_seq
                  FROM priced WHERE paid > 0
                UNION ALL
                SELECT c, k, 3, 'ledger', company_id::text, NULL::int8, 'PaymentAllocated',
                       jsonb_build_object('PaymentAllocated', jsonb_build_object(
                           'payment_id', payment_id, 'invoice_id', invoice_id,
                           'amount', paid::text, 'on', received_on)),
                       pay_command, last_seq
                  FROM priced WHERE paid > 0
                UNION ALL
                SELECT c, $6::int8, 2, 'ledger', company_id::text, NULL::int8, 'PaymentReceived',
                       jsonb_build_object('PaymentReceived', jsonb_build_object(
                           'payment_id', payment_id, 'amount', (total + 50)::text,
                           'received_on', $9::date, 'method', 'card', 'reference', '')),
                       pay_command, last_seq
                  FROM credit
                UNION ALL
                SELECT c, $6::int8, 3, 'ledger', company_id::text, NULL::int8, 'PaymentAllocated',
                       jsonb_build_object('PaymentAllocated', jsonb_build_object(
                           'payment_id', payment_id, 'invoice_id', invoice_id,
                           'amount', total::text, 'on', $9::date)),
                       pay_command, last_seq
                  FROM credit
             )
             INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                 payload, metadata)
             SELECT aggregate_type, aggregate_id,
                    coalesce(fixed_seq, last_seq + row_number() OVER (
                        PARTITION BY c, fixed_seq IS NULL ORDER BY k, slot)),
                    event_type, '1', payload,
                    jsonb_build_object('tenant_id', $1::uuid, 'actor', $11::text,
                                       'command_id', command_id, 'correlation_id', command_id,
                                       'causation_id', NULL)
               FROM rows
              ORDER BY k, c, slot",
        )
        .bind(tenant_id)
        .bind(prefix)
        .bind(first as i64)
        .bind(last as i64)
        .bind(start)
        .bind(months as i64)
        .bind(last_number.unwrap_or(0))
        .bind(CONTRACTS as i64)
        .bind(today)
        .bind(&stream)
        .bind(ACTOR)
        .execute(pool)
        .await
        .context("seeding the ledgers' history")?;
        appended += done.rows_affected();
        first = last + 1;
    }
    sqlx::raw_sql("ANALYZE events").execute(pool).await?;
    Ok(appended)
}
