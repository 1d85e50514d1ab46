//! The billing run: for every billed contract of a tenant, every period due up to a date that
//! is not billed yet becomes an invoice, dated on the period's billing date (also when caught
//! up after downtime), with the contract line and — on the latest period's invoice — the
//! company's billable time not invoiced yet.
//!
//! Exactly once: the invoice of (company, period) has an id and a command id derived from
//! them, and the company's ledger remembers every period and time entry it billed and refuses
//! a second time. A re-run, a retry, a second instance or two runs racing therefore bill each
//! period once; the one that loses the race appends nothing.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{Duration, NaiveDate, Utc};
use commands::{CommandError, EventMeta};
use domain::billing::{price_lines, LineInput, LineSource, Period};
use domain::company::Company;
use domain::ledger::{ledger_id, Ledger, LedgerCommand, LedgerError, NewInvoice};
use domain::tenant::Tenant;
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use crate::state::AppState;

/// The number sequence of invoices (`NumberIssued` per tenant, gapless).
pub const INVOICE_SEQUENCE: &str = "invoice";

/// Companies one run bills at the same time.
const CONCURRENT_COMPANIES: usize = 8;

/// An invoice a run made (or, previewing, would make).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Billed {
    pub id: Uuid,
    pub company_id: Uuid,
    /// `None` in a preview: numbers are given when invoices are issued.
    pub number: Option<u64>,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "300.00")]
    pub total: Decimal,
    pub lines: usize,
}

/// The id of the invoice of a company's contract period.
pub fn period_invoice_id(company_id: Uuid, period: &Period) -> Uuid {
    Uuid::new_v5(&company_id, format!("invoice/{}", period.key()).as_bytes())
}

/// Today in the tenant's time zone.
pub fn today(tenant: &Tenant) -> NaiveDate {
    let zone = tenant.business_hours().time_zone.tz();
    Utc::now().with_timezone(&zone).date_naive()
}

/// Bills (or with `preview`, lists without billing) every period of the tenant's contracts
/// due up to and including `as_of` and not billed yet. `actor` is recorded on the events.
pub async fn run(
    state: &AppState,
    tenant_id: Uuid,
    as_of: NaiveDate,
    preview: bool,
    actor: &str,
) -> anyhow::Result<Vec<Billed>> {
    let mut companies = projections::contracts::active_of(&state.pool, tenant_id, as_of).await?;
    // Companies with overdue invoices, for reminders and late fees.
    let overdue: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT company_id FROM invoices
          WHERE tenant_id = $1 AND balance > 0 AND due_date < $2",
    )
    .bind(tenant_id)
    .bind(as_of)
    .fetch_all(&state.pool)
    .await?;
    companies.extend(overdue);
    companies.sort_unstable();
    companies.dedup();
    if companies.is_empty() {
        return Ok(Vec::new());
    }
    // The tenant (catalogue, reminder days, late fee) once per run.
    let (tenant, _) = state
        .store
        .load::<Tenant>(tenant_id, &tenant_id.to_string())
        .await?;
    let tenant = Arc::new(tenant);
    // Billable work waits at few companies: one query finds them, instead of two per company.
    let with_work: Arc<HashSet<Uuid>> = Arc::new(
        projections::work_orders::companies_with_unbilled_work(&state.pool, tenant_id)
            .await?
            .into_iter()
            .collect(),
    );
    // Companies are independent (each has its own ledger; the invoice numbers are taken in
    // `execute_numbered`, which decides again when another writer took the number), so a few
    // are billed at the same time: each company costs a dozen round trips to PostgreSQL, and
    // one at a time the run would wait on them in turn. The result keeps the companies' order.
    let mut outcomes: Vec<Option<anyhow::Result<Vec<Billed>>>> =
        (0..companies.len()).map(|_| None).collect();
    let mut tasks = tokio::task::JoinSet::new();
    let mut pending = companies.iter().copied().enumerate();
    loop {
        while tasks.len() < CONCURRENT_COMPANIES {
            let Some((index, company_id)) = pending.next() else {
                break;
            };
            let (state, actor, tenant) = (state.clone(), actor.to_owned(), tenant.clone());
            let has_work = with_work.contains(&company_id);
            tasks.spawn(async move {
                let made = bill_company(
                    &state, tenant_id, &tenant, company_id, has_work, as_of, preview, &actor,
                )
                .await;
                (index, made)
            });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (index, made) = joined.map_err(|e| anyhow::anyhow!("a billing task failed: {e}"))?;
        outcomes[index] = Some(made);
    }
    let mut billed = Vec::new();
    let mut failures = Vec::new();
    for (company_id, outcome) in companies.into_iter().zip(outcomes) {
        match outcome.unwrap_or_else(|| Err(anyhow::anyhow!("not billed"))) {
            Ok(mut made) => billed.append(&mut made),
            Err(error) => {
                tracing::warn!(%tenant_id, %company_id, %error, "billing a company failed");
                failures.push(format!("{company_id}: {error}"));
            }
        }
    }
    if !failures.is_empty() && billed.is_empty() {
        anyhow::bail!("billing failed: {}", failures.join("; "));
    }
    Ok(billed)
}

/// One company's due periods.
#[allow(clippy::too_many_arguments)]
pub async fn bill_company(
    state: &AppState,
    tenant_id: Uuid,
    tenant: &Tenant,
    company_id: Uuid,
    // Whether the company has billable time or materials not invoiced yet.
    has_work: bool,
    as_of: NaiveDate,
    preview: bool,
    actor: &str,
) -> anyhow::Result<Vec<Billed>> {
    let (company, _) = state
        .store
        .load::<Company>(tenant_id, &company_id.to_string())
        .await?;
    if !company.registered || company.archived {
        return Ok(Vec::new());
    }
    let Some(contract) = company.contract() else {
        // No contract billed: only its overdue invoices' reminders and fees.
        let (ledger, _) = state
            .store
            .load::<Ledger>(tenant_id, &ledger_id(company_id))
            .await?;
        return overdue(
            state, tenant_id, tenant, company_id, &ledger, as_of, preview, actor, 14,
        )
        .await;
    };
    let catalogue = tenant;
    let tax_exempt = company.billing.as_ref().is_some_and(|b| b.tax_exempt);
    let tax_rate = company.billing.as_ref().and_then(|b| b.tax_rate);
    let (mut ledger, _) = state
        .store
        .load::<Ledger>(tenant_id, &ledger_id(company_id))
        .await?;
    let due: Vec<Period> = contract
        .periods_until(as_of)
        .into_iter()
        .filter(|p| !ledger.billed.contains(&p.key()))
        .collect();
    let last = due.last().map(|p| p.start);
    // Billable time and materials go on the invoice of the latest period due.
    let work = if due.is_empty() || !has_work {
        Vec::new()
    } else {
        unbilled_work(state, tenant_id, company_id, as_of, &ledger, tax_rate).await?
    };
    let mut made = Vec::new();
    let mut changed_elsewhere = false;
    for period in &due {
        let mut inputs = vec![LineInput {
            description: format!(
                "{} contract, {} to {}{}",
                company.name,
                period.start,
                period.end,
                if period.full { "" } else { " (part month)" }
            ),
            quantity: Decimal::ONE,
            unit_price: period.amount,
            tax_rate,
        }];
        let mut sources = vec![Some(LineSource::Contract {
            period_start: period.start,
            period_end: period.end,
        })];
        let mut bills = vec![period.key()];
        // Catalogue services the company subscribes to, on the billing dates they are due.
        for sub in company.subscriptions.values() {
            let Some(service) = catalogue.services.get(&sub.service_id) else {
                continue;
            };
            let first = domain::billing::billing_date_after(
                sub.start_date - Duration::days(1),
                contract.billing_day,
            );
            if !sub.billed_on(period.start, service.period.months(), first) {
                continue;
            }
            inputs.push(LineInput {
                description: format!(
                    "{}{} ({}), {} from {}",
                    service.name,
                    if service.tier.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", service.tier)
                    },
                    service.period.as_str(),
                    if sub.quantity == Decimal::ONE {
                        "1 unit".to_owned()
                    } else {
                        format!("{} units", sub.quantity.normalize())
                    },
                    period.start
                ),
                quantity: sub.quantity,
                unit_price: sub.price.unwrap_or(service.price),
                tax_rate,
            });
            sources.push(None);
        }
        if Some(period.start) == last {
            // As many as the invoice has room for, oldest first; the rest waits for the next.
            let room = domain::billing::MAX_LINES.saturating_sub(inputs.len());
            for item in work.iter().take(room) {
                inputs.push(item.input.clone());
                sources.push(Some(item.source.clone()));
                bills.push(item.bill.clone());
            }
        }
        let mut lines = price_lines(&inputs, tax_exempt).map_err(|errors| {
            anyhow::anyhow!(
                "lines refused: {}",
                errors
                    .iter()
                    .map(|e| e.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        for (line, source) in lines.iter_mut().zip(sources) {
            line.source = source;
        }
        let invoice_id = period_invoice_id(company_id, period);
        let issue_date = period.billing_date;
        let due_date = issue_date + Duration::days(contract.payment_terms_days as i64);
        let (_, _, total) = domain::billing::totals(&lines);
        if preview {
            made.push(Billed {
                id: invoice_id,
                company_id,
                number: None,
                issue_date,
                due_date,
                period_start: period.start,
                period_end: period.end,
                total,
                lines: lines.len(),
            });
            continue;
        }
        let command_id = Uuid::new_v5(&company_id, format!("bill/{}", period.key()).as_bytes());
        let meta = EventMeta::new(tenant_id, actor)
            .with_command_id(command_id)
            .with_correlation(command_id, None);
        let line_count = lines.len();
        let new_invoice = |number: u64| LedgerCommand::IssueInvoice {
            company_id,
            invoice: NewInvoice {
                invoice_id,
                number,
                issue_date,
                due_date,
                lines: lines.clone(),
                bills: bills.clone(),
                note: "billing run".into(),
            },
        };
        match state
            .store
            .execute_numbered::<Ledger>(
                &ledger_id(company_id),
                INVOICE_SEQUENCE,
                new_invoice,
                &(),
                &meta,
            )
            .await
        {
            Ok(done) if !done.replayed => {
                let number = done.state.invoices.get(&invoice_id).and_then(|i| i.number);
                // The ledger as this command left it, for the next period and the fees.
                ledger = done.state;
                made.push(Billed {
                    id: invoice_id,
                    company_id,
                    number,
                    issue_date,
                    due_date,
                    period_start: period.start,
                    period_end: period.end,
                    total,
                    lines: line_count,
                });
            }
            // Billed by another run meanwhile.
            Ok(_)
            | Err(CommandError::Domain(
                LedgerError::AlreadyBilled(_) | LedgerError::InvoiceExists,
            )) => {
                changed_elsewhere = true;
            }
            Err(error) => return Err(anyhow::anyhow!("{error}")),
        }
    }
    if changed_elsewhere {
        // Another run appended meanwhile: the reminders and the fees decide on its ledger.
        (ledger, _) = state
            .store
            .load::<Ledger>(tenant_id, &ledger_id(company_id))
            .await?;
    }
    made.extend(
        overdue(
            state,
            tenant_id,
            tenant,
            company_id,
            &ledger,
            as_of,
            preview,
            actor,
            contract.payment_terms_days,
        )
        .await?,
    );
    Ok(made)
}

/// One line of billable work not invoiced yet: what it bills, and its ledger key.
#[derive(Debug, Clone)]
pub struct WorkLine {
    pub input: LineInput,
    pub source: LineSource,
    /// `time/<entry id>` or `material/<material id>`: the ledger bills each key once.
    pub bill: String,
}

/// A company's billable time and materials up to `as_of` that its ledger has not billed:
/// time first, then materials, each oldest first.
pub async fn unbilled_work(
    state: &AppState,
    tenant_id: Uuid,
    company_id: Uuid,
    as_of: NaiveDate,
    ledger: &Ledger,
    tax_rate: Option<Decimal>,
) -> anyhow::Result<Vec<WorkLine>> {
    let mut work = Vec::new();
    for entry in
        projections::work_orders::unbilled_entries(&state.pool, tenant_id, company_id).await?
    {
        let bill = format!("time/{}", entry.id);
        if entry.work_date > as_of || ledger.billed.contains(&bill) {
            continue;
        }
        work.push(WorkLine {
            input: LineInput {
                description: format!(
                    "Work order #{} {}: {} on {}, {} h {:02} min at {}/h{}",
                    entry.work_order_number,
                    entry.work_order_title,
                    entry.technician_name,
                    entry.work_date,
                    entry.minutes / 60,
                    entry.minutes % 60,
                    entry.rate,
                    if entry.after_hours {
                        " (after hours)"
                    } else {
                        ""
                    }
                ),
                quantity: Decimal::ONE,
                unit_price: entry.amount,
                tax_rate,
            },
            source: LineSource::TimeEntry {
                work_order_id: entry.work_order_id,
                entry_id: entry.id,
            },
            bill,
        });
    }
    for material in
        projections::work_orders::unbilled_materials(&state.pool, tenant_id, company_id).await?
    {
        let bill = format!("material/{}", material.id);
        if material.used_on > as_of || ledger.billed.contains(&bill) {
            continue;
        }
        work.push(WorkLine {
            input: LineInput {
                description: format!(
                    "Work order #{} {}: {}{} on {}",
                    material.work_order_number,
                    material.work_order_title,
                    material.description,
                    if material.sku.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", material.sku)
                    },
                    material.used_on
                ),
                quantity: material.quantity,
                unit_price: material.unit_price,
                tax_rate,
            },
            source: LineSource::Material {
                work_order_id: material.work_order_id,
                material_id: material.id,
            },
            bill,
        });
    }
    Ok(work)
}

/// The company's overdue invoices: reminders (not when previewing), then late fees.
#[allow(clippy::too_many_arguments)]
async fn overdue(
    state: &AppState,
    tenant_id: Uuid,
    tenant: &Tenant,
    company_id: Uuid,
    ledger: &Ledger,
    as_of: NaiveDate,
    preview: bool,
    actor: &str,
    terms_days: u32,
) -> anyhow::Result<Vec<Billed>> {
    if !preview {
        remind(state, tenant_id, tenant, company_id, ledger, as_of, actor).await?;
    }
    late_fees(
        state, tenant_id, tenant, company_id, ledger, as_of, preview, actor, terms_days,
    )
    .await
}

/// Reminders about the company's overdue invoices: the latest reminder day each invoice has
/// reached by `as_of`, once (a catch-up after downtime sends one, not every missed one).
#[allow(clippy::too_many_arguments)]
async fn remind(
    state: &AppState,
    tenant_id: Uuid,
    tenant: &Tenant,
    company_id: Uuid,
    ledger: &Ledger,
    as_of: NaiveDate,
    actor: &str,
) -> anyhow::Result<()> {
    let days = &tenant.late_payment.reminder_days;
    if days.is_empty() {
        return Ok(());
    }
    for (invoice_id, invoice) in &ledger.invoices {
        let Some(due) = invoice.due_date.filter(|_| invoice.issued()) else {
            continue;
        };
        if invoice.balance() <= Decimal::ZERO {
            continue;
        }
        let late = (as_of - due).num_days();
        let Some(day) = days.iter().rev().find(|d| i64::from(**d) <= late) else {
            continue;
        };
        if ledger
            .reminders
            .iter()
            .any(|(i, d)| i == invoice_id && d >= day)
        {
            continue;
        }
        let command_id = Uuid::new_v5(invoice_id, format!("remind/{day}").as_bytes());
        let meta = EventMeta::new(tenant_id, actor).with_command_id(command_id);
        state
            .store
            .execute::<Ledger>(
                &ledger_id(company_id),
                LedgerCommand::RemindOverdue {
                    invoice_id: *invoice_id,
                    days: *day,
                    on: due + Duration::days(i64::from(*day)),
                },
                &(),
                &meta,
                commands::ConflictPolicy::Busy,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// The late fee of each invoice overdue by the tenant's rule, once per invoice and rule, as
/// an invoice of its own dated the day the fee became due.
#[allow(clippy::too_many_arguments)]
async fn late_fees(
    state: &AppState,
    tenant_id: Uuid,
    tenant: &Tenant,
    company_id: Uuid,
    ledger: &Ledger,
    as_of: NaiveDate,
    preview: bool,
    actor: &str,
    terms_days: u32,
) -> anyhow::Result<Vec<Billed>> {
    let Some(fee) = tenant.late_payment.fee.clone() else {
        return Ok(Vec::new());
    };
    let mut made = Vec::new();
    for (invoice_id, invoice) in &ledger.invoices {
        let Some(due) = invoice.due_date.filter(|_| invoice.issued()) else {
            continue;
        };
        let is_fee = invoice
            .lines
            .iter()
            .any(|l| matches!(l.source, Some(LineSource::LateFee { .. })));
        let key = format!("fee/{invoice_id}/{}", fee.rule());
        let charged_on = due + Duration::days(i64::from(fee.after_days));
        if is_fee
            || invoice.balance() <= Decimal::ZERO
            || charged_on > as_of
            || ledger.billed.contains(&key)
        {
            continue;
        }
        let amount = fee.on(invoice.balance());
        if amount <= Decimal::ZERO {
            continue;
        }
        let mut lines = price_lines(
            &[LineInput {
                description: format!(
                    "Late fee: invoice {} was due on {due}",
                    invoice.number.unwrap_or_default()
                ),
                quantity: Decimal::ONE,
                unit_price: amount,
                tax_rate: None,
            }],
            true,
        )
        .map_err(|_| anyhow::anyhow!("the late fee's line was refused"))?;
        lines[0].source = Some(LineSource::LateFee {
            invoice_id: *invoice_id,
            rule: fee.rule(),
        });
        let fee_id = Uuid::new_v5(&company_id, key.as_bytes());
        let due_date = charged_on + Duration::days(i64::from(terms_days));
        let billed = Billed {
            id: fee_id,
            company_id,
            number: None,
            issue_date: charged_on,
            due_date,
            period_start: charged_on,
            period_end: charged_on,
            total: amount,
            lines: 1,
        };
        if preview {
            made.push(billed);
            continue;
        }
        let command_id = Uuid::new_v5(&company_id, format!("bill/{key}").as_bytes());
        let meta = EventMeta::new(tenant_id, actor).with_command_id(command_id);
        match state
            .store
            .execute_numbered::<Ledger>(
                &ledger_id(company_id),
                INVOICE_SEQUENCE,
                |number| LedgerCommand::IssueInvoice {
                    company_id,
                    invoice: NewInvoice {
                        invoice_id: fee_id,
                        number,
                        issue_date: charged_on,
                        due_date,
                        lines: lines.clone(),
                        bills: vec![key.clone()],
                        note: "late fee".into(),
                    },
                },
                &(),
                &meta,
            )
            .await
        {
            Ok(done) if !done.replayed => made.push(Billed {
                number: done.state.invoices.get(&fee_id).and_then(|i| i.number),
                ..billed
            }),
            Ok(_)
            | Err(CommandError::Domain(
                LedgerError::AlreadyBilled(_) | LedgerError::InvoiceExists,
            )) => {}
            Err(error) => return Err(anyhow::anyhow!("{error}")),
        }
    }
    Ok(made)
}

/// Every tenant's run up to its own today (the scheduler's `billing` job); returns how many
/// invoices were made.
pub async fn run_all(state: &AppState) -> anyhow::Result<usize> {
    // Contracts that started by tomorrow UTC cover every zone's today.
    let latest = Utc::now().date_naive() + Duration::days(1);
    let contracts = projections::contracts::active(&state.pool, latest).await?;
    let mut tenants: BTreeMap<Uuid, ()> = BTreeMap::new();
    for (tenant_id, _) in contracts {
        tenants.insert(tenant_id, ());
    }
    // Tenants with overdue invoices, for reminders and late fees.
    let overdue: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT tenant_id FROM invoices WHERE balance > 0 AND due_date < $1",
    )
    .bind(latest)
    .fetch_all(&state.pool)
    .await?;
    for tenant_id in overdue {
        tenants.insert(tenant_id, ());
    }
    let mut made = 0;
    let mut failures = Vec::new();
    for tenant_id in tenants.into_keys() {
        let (tenant, _) = state
            .store
            .load::<Tenant>(tenant_id, &tenant_id.to_string())
            .await?;
        match run(
            state,
            tenant_id,
            today(&tenant),
            false,
            crate::scheduler::ACTOR,
        )
        .await
        {
            Ok(billed) => made += billed.len(),
            Err(error) => failures.push(format!("{tenant_id}: {error}")),
        }
    }
    if !failures.is_empty() {
        anyhow::bail!("{} (and {made} invoices made)", failures.join("; "));
    }
    Ok(made)
}
