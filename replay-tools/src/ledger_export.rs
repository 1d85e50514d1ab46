//! `export-ledger`: a tenant's receivables as a plain-text accounting journal (hledger or
//! beancount), booked from the `ledger` aggregates' events.
//!
//! One account per customer, `Assets:Receivables:<Name>`, holds what its issued invoices still
//! owe; its sub-account `Assets:Receivables:<Name>:Credit` holds the customer's unapplied
//! payments (negative). The customer's balance (the parent with its sub-account) is
//! `issued invoices − credit notes − payments + refunds`, the `total` of the AR aging report:
//!
//! | event             | postings (debit +)                                                     |
//! |-------------------|------------------------------------------------------------------------|
//! | invoice issued    | Receivables +total, `Income:Sales` −net, `Liabilities:Tax` −tax        |
//! | invoice voided    | Receivables −what it still owed, the rest back on sales and tax        |
//! | credit note       | Receivables −amount, `Income:Sales` +amount                            |
//! | payment received  | `Assets:Bank:<Method>` +amount, Credit −amount                         |
//! | payment allocated | Receivables −amount, Credit +amount (unapplied: the reverse)           |
//! | payment refunded  | Credit +amount, `Assets:Bank:<Method>` −amount                         |
//! | payment reversed  | Receivables +allocated, Credit +(amount − allocated), bank −amount     |
//!
//! Every transaction is dated with its business date, as the receivables projection's dated
//! movements (`ar_entries`) are: so the balances up to any date are the aging report's as of
//! that date. What moves an invoice is dated no earlier than the invoice's issue date (the
//! aging report counts an invoice from its issue date on).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::NaiveDate;
use cqrs_es::persist::SerializedEvent;
use cqrs_es::Aggregate;
use domain::billing::cents;
use domain::company::Company;
use domain::ledger::{Ledger, LedgerEvent, Method};
use domain::tenant::Tenant;
use rust_decimal::Decimal;
use sqlx::{Acquire, PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::common::{upcast, Usage};

/// The journal's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// hledger journal (`decimal-mark`, `commodity` and `account` directives).
    Hledger,
    /// beancount ledger (`bean-check`-clean: `open` directives, operating currency).
    Beancount,
}

/// What `export-ledger` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub tenant: Option<Uuid>,
    pub as_of: Option<NaiveDate>,
    pub format: Format,
    pub file: PathBuf,
}

/// Parses `--as-of` (a calendar date).
pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|e| format!("{e}; expected a date such as 2026-03-31"))
}

pub async fn export_ledger(pool: &PgPool, options: Options) -> anyhow::Result<u8> {
    let file = &options.file;
    let to_stdout = file.as_os_str() == "-";
    if !to_stdout {
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(Usage::new(format!(
                    "cannot write {}: no such directory {}",
                    file.display(),
                    dir.display()
                ))
                .into());
            }
        }
    }
    let mut conn = pool.acquire().await?;
    let journal = read_journal(&mut conn, &options).await?;
    let text = match options.format {
        Format::Hledger => journal.hledger(),
        Format::Beancount => journal.beancount(),
    };
    let summary = format!(
        "{} transactions for {} customers{}",
        journal.transactions.len(),
        journal.customers,
        match options.as_of {
            Some(d) => format!(" (as of {d})"),
            None => String::new(),
        }
    );
    if to_stdout {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        eprintln!("exported {summary} to stdout");
        return Ok(0);
    }
    write_atomically(file, text.as_bytes())?;
    out!("exported {summary} to {}", file.display());
    Ok(0)
}

/// Writes next to the target and renames: a failed export leaves no partial file.
fn write_atomically(file: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let partial = PathBuf::from(format!("{}.partial", file.display()));
    let mut created = File::create(&partial)
        .map_err(|e| Usage::new(format!("cannot create {}: {e}", partial.display())))?;
    let written = created.write_all(bytes).and_then(|()| created.sync_all());
    drop(created);
    if let Err(error) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(error).with_context(|| format!("writing {}", partial.display()));
    }
    std::fs::rename(&partial, file)
        .with_context(|| format!("renaming {} to {}", partial.display(), file.display()))
}

// ---------------------------------------------------------------------------------------------
// Reading the log

/// One stored event, upcast.
struct Loaded {
    position: i64,
    event: SerializedEvent,
}

async fn load(
    conn: &mut PgConnection,
    sql: &str,
    tenant: Option<Uuid>,
) -> anyhow::Result<Vec<Loaded>> {
    let query = sqlx::query(sql);
    let query = match tenant {
        Some(tenant) => query.bind(tenant.to_string()),
        None => query,
    };
    let rows = query
        .fetch_all(&mut *conn)
        .await
        .context("reading the events")?;
    rows.iter()
        .map(|row| {
            let sequence: i64 = row.try_get(2)?;
            Ok(Loaded {
                position: row.try_get(7)?,
                event: upcast(SerializedEvent::new(
                    row.try_get(1)?,
                    sequence as usize,
                    row.try_get(0)?,
                    row.try_get(3)?,
                    row.try_get(4)?,
                    row.try_get(5)?,
                    row.try_get(6)?,
                )),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .context("decoding an events row")
}

const SELECT: &str = "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, global_position
                        FROM events";

fn decode<E: cqrs_es::DomainEvent>(loaded: &Loaded) -> anyhow::Result<E> {
    commands::store::decode::<E>(&loaded.event).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Folds events (in sequence order, grouped by aggregate) into states by aggregate id.
fn fold<A: Aggregate + Default>(loaded: &[Loaded]) -> anyhow::Result<BTreeMap<String, A>> {
    let mut states: BTreeMap<String, A> = BTreeMap::new();
    for l in loaded {
        let event = decode::<A::Event>(l)?;
        states
            .entry(l.event.aggregate_id.clone())
            .or_default()
            .apply(event);
    }
    Ok(states)
}

/// The tenant to export: `--tenant`, else the only one.
fn pick_tenant(
    tenants: &BTreeMap<String, Tenant>,
    asked: Option<Uuid>,
) -> Result<(Uuid, Tenant), Usage> {
    let known: Vec<(Uuid, &Tenant)> = tenants
        .iter()
        .filter(|(_, t)| t.created)
        .filter_map(|(id, t)| Some((Uuid::parse_str(id).ok()?, t)))
        .collect();
    let list = || {
        known
            .iter()
            .map(|(id, t)| format!("{id} ({})", t.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match asked {
        Some(asked) => known
            .iter()
            .find(|(id, _)| *id == asked)
            .map(|(id, t)| (*id, (*t).clone()))
            .ok_or_else(|| {
                Usage::new(if known.is_empty() {
                    format!("no tenant {asked}: the log has no tenants")
                } else {
                    format!("no tenant {asked} (tenants: {})", list())
                })
            }),
        None => match known.as_slice() {
            [] => Err(Usage::new("the log has no tenants")),
            [(id, t)] => Ok((*id, (*t).clone())),
            _ => Err(Usage::new(format!(
                "several tenants: pass --tenant with one of {}",
                list()
            ))),
        },
    }
}

async fn read_journal(conn: &mut PgConnection, options: &Options) -> anyhow::Result<Journal> {
    // One consistent snapshot of the log.
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let tenant_events = load(
        &mut tx,
        &format!("{SELECT} WHERE aggregate_type = 'tenant' ORDER BY aggregate_id, sequence"),
        None,
    )
    .await?;
    let tenants = fold::<Tenant>(&tenant_events)?;
    let (tenant_id, tenant) = pick_tenant(&tenants, options.tenant)?;
    let of_tenant = |aggregate_type: &str| {
        format!(
            "{SELECT} WHERE aggregate_type = '{aggregate_type}' AND metadata->>'tenant_id' = $1
              ORDER BY aggregate_id, sequence"
        )
    };
    let companies = fold::<Company>(&load(&mut tx, &of_tenant("company"), Some(tenant_id)).await?)?;
    let ledger_events = load(&mut tx, &of_tenant("ledger"), Some(tenant_id)).await?;
    tx.commit().await?;

    let currency = tenant
        .currency
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| "XXX".to_owned());
    // Every ledger's events, in sequence order.
    let mut ledgers: BTreeMap<Uuid, Vec<(i64, LedgerEvent)>> = BTreeMap::new();
    for l in &ledger_events {
        let company_id = Uuid::parse_str(&l.event.aggregate_id)
            .with_context(|| format!("ledger id {:?}", l.event.aggregate_id))?;
        ledgers
            .entry(company_id)
            .or_default()
            .push((l.position, decode::<LedgerEvent>(l)?));
    }
    let names: BTreeMap<Uuid, String> = ledgers
        .keys()
        .map(|id| {
            let name = companies
                .get(&id.to_string())
                .map(|c| c.name.trim().to_owned())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| format!("Company {}", short_id(*id)));
            (*id, name)
        })
        .collect();
    let slugs = unique_slugs(&names);
    let mut transactions = Vec::new();
    let mut customers = 0;
    for (company_id, events) in &ledgers {
        let customer = Customer {
            name: names[company_id].clone(),
            account: format!("Assets:Receivables:{}", slugs[company_id]),
        };
        let booked = book(&customer, events)?;
        // With every fact, the customer's balance must be its ledger's own, to the cent.
        let mut ledger = Ledger::default();
        for (_, event) in events {
            ledger.apply(event.clone());
        }
        let journal: Decimal = booked
            .iter()
            .flat_map(|t| &t.postings)
            .filter(|(account, _)| customer.owns(account))
            .map(|(_, amount)| *amount)
            .sum();
        anyhow::ensure!(
            cents(journal) == cents(ledger.balance()),
            "the journal's balance of {} ({}) is not its ledger's ({}): a bug in export-ledger",
            customer.name,
            cents(journal),
            cents(ledger.balance())
        );
        let before = transactions.len();
        transactions.extend(
            booked
                .into_iter()
                .filter(|t| options.as_of.is_none_or(|as_of| t.date <= as_of)),
        );
        if transactions.len() > before {
            customers += 1;
        }
    }
    transactions
        .sort_by(|a, b| (a.date, &a.payee, a.position).cmp(&(b.date, &b.payee, b.position)));
    Ok(Journal {
        tenant_id,
        tenant_name: tenant.name,
        currency,
        as_of: options.as_of,
        customers,
        transactions,
    })
}

// ---------------------------------------------------------------------------------------------
// Booking

/// A customer's name and receivables account.
struct Customer {
    name: String,
    account: String,
}

impl Customer {
    fn credit(&self) -> String {
        format!("{}:Credit", self.account)
    }

    /// Whether `account` is this customer's (its balance counts in the customer's).
    fn owns(&self, account: &str) -> bool {
        account == self.account
            || account
                .strip_prefix(self.account.as_str())
                .is_some_and(|rest| rest.starts_with(':'))
    }
}

const SALES: &str = "Income:Sales";
const TAX: &str = "Liabilities:Tax";

fn bank(method: Method) -> String {
    let name = match method {
        Method::Check => "Check",
        Method::Cash => "Cash",
        Method::BankTransfer => "Bank-Transfer",
        Method::Card => "Card",
    };
    format!("Assets:Bank:{name}")
}

/// One transaction of the journal.
#[derive(Debug, Clone)]
struct Txn {
    date: NaiveDate,
    /// Where its event is in the log (orders a day's transactions).
    position: i64,
    code: Option<String>,
    payee: String,
    narration: String,
    /// Ids the transaction is about (`invoice`, `payment`, `credit_note`), and a reason.
    meta: Vec<(&'static str, String)>,
    /// Account and amount (debit positive); they sum to zero, none is zero.
    postings: Vec<(String, Decimal)>,
}

/// What the booking remembers of an invoice.
#[derive(Default)]
struct InvoiceState {
    number: Option<u64>,
    issue_date: Option<NaiveDate>,
    total: Decimal,
    tax: Decimal,
    paid: Decimal,
    credited: Decimal,
    void: bool,
}

impl InvoiceState {
    fn issued(&self) -> bool {
        self.number.is_some() && !self.void
    }

    /// What it still owes (`domain::ledger::Invoice::balance`).
    fn balance(&self) -> Decimal {
        if self.issued() {
            self.total - self.paid - self.credited
        } else {
            Decimal::ZERO
        }
    }

    fn name(&self, id: Uuid) -> String {
        match self.number {
            Some(n) => format!("invoice {n}"),
            None => format!("invoice {}", short_id(id)),
        }
    }

    /// A date that moves this invoice: not before it was issued.
    fn date(&self, on: NaiveDate) -> NaiveDate {
        self.issue_date.map_or(on, |issued| on.max(issued))
    }
}

struct PaymentState {
    amount: Decimal,
    method: Method,
    reference: String,
    allocations: BTreeMap<Uuid, Decimal>,
}

impl PaymentState {
    fn describe(&self) -> String {
        let method = self.method.as_str().replace('_', " ");
        match self.reference.trim() {
            "" => format!("payment ({method})"),
            reference => format!("payment ({method} {reference})"),
        }
    }
}

/// The transactions of one customer's ledger events (in sequence order).
fn book(customer: &Customer, events: &[(i64, LedgerEvent)]) -> anyhow::Result<Vec<Txn>> {
    use LedgerEvent as E;
    let mut invoices: HashMap<Uuid, InvoiceState> = HashMap::new();
    let mut payments: HashMap<Uuid, PaymentState> = HashMap::new();
    let mut txns = Vec::new();
    let receivable = customer.account.clone();
    let credit = customer.credit();
    for (position, event) in events {
        let txn = |date: NaiveDate, code: Option<String>, narration: String| Txn {
            date,
            position: *position,
            code,
            payee: customer.name.clone(),
            narration,
            meta: Vec::new(),
            postings: Vec::new(),
        };
        let missing = |what: &str, id: Uuid| {
            anyhow::anyhow!(
                "ledger of {}: {} for {what} {id}, which it does not have",
                customer.name,
                event_name(event)
            )
        };
        let booked = match event.clone() {
            E::LedgerOpened { .. } | E::OverdueReminderDue { .. } => None,
            E::InvoiceDrafted {
                invoice_id,
                lines,
                total,
            } => {
                let (_, tax, _) = domain::billing::totals(&lines);
                invoices.insert(
                    invoice_id,
                    InvoiceState {
                        total: cents(total),
                        tax,
                        ..InvoiceState::default()
                    },
                );
                None
            }
            E::InvoiceIssued {
                invoice_id,
                number,
                issue_date,
                lines,
                total,
                ..
            } => {
                let invoice = invoices.entry(invoice_id).or_default();
                if let Some(lines) = &lines {
                    invoice.tax = domain::billing::totals(lines).1;
                }
                invoice.total = cents(total);
                invoice.number = Some(number);
                invoice.issue_date = Some(issue_date);
                let mut t = txn(
                    issue_date,
                    Some(number.to_string()),
                    format!("Invoice {number}"),
                );
                t.meta.push(("invoice", invoice_id.to_string()));
                t.postings = vec![
                    (receivable.clone(), invoice.total),
                    (SALES.to_owned(), -(invoice.total - invoice.tax)),
                    (TAX.to_owned(), -invoice.tax),
                ];
                Some(t)
            }
            E::InvoiceVoided {
                invoice_id,
                on,
                reason,
                ..
            } => {
                let invoice = invoices
                    .get_mut(&invoice_id)
                    .ok_or_else(|| missing("invoice", invoice_id))?;
                let outstanding = invoice.balance();
                invoice.void = true;
                (!outstanding.is_zero()).then(|| {
                    let name = invoice.name(invoice_id);
                    let mut t = txn(
                        invoice.date(on),
                        invoice.number.map(|n| n.to_string()),
                        format!("{} voided", capitalized(&name)),
                    );
                    t.meta.push(("invoice", invoice_id.to_string()));
                    t.meta.push(("reason", reason));
                    // The reverse of the invoice's booking, less what credit notes took back.
                    t.postings = vec![
                        (receivable.clone(), -outstanding),
                        (SALES.to_owned(), outstanding - invoice.tax),
                        (TAX.to_owned(), invoice.tax),
                    ];
                    t
                })
            }
            E::CreditNoteIssued {
                credit_note_id,
                number,
                invoice_id,
                amount,
                date,
                reason,
            } => {
                let invoice = invoices
                    .get_mut(&invoice_id)
                    .ok_or_else(|| missing("invoice", invoice_id))?;
                let amount = cents(amount);
                invoice.credited += amount;
                let mut t = txn(
                    invoice.date(date),
                    Some(number.to_string()),
                    format!("Credit note {number} on {}", invoice.name(invoice_id)),
                );
                t.meta.push(("credit_note", credit_note_id.to_string()));
                t.meta.push(("invoice", invoice_id.to_string()));
                t.meta.push(("reason", reason));
                t.postings = vec![(receivable.clone(), -amount), (SALES.to_owned(), amount)];
                Some(t)
            }
            E::PaymentReceived {
                payment_id,
                amount,
                received_on,
                method,
                reference,
            } => {
                let payment = PaymentState {
                    amount: cents(amount),
                    method,
                    reference,
                    allocations: BTreeMap::new(),
                };
                let mut t = txn(received_on, None, capitalized(&payment.describe()));
                t.meta.push(("payment", payment_id.to_string()));
                t.postings = vec![
                    (bank(method), payment.amount),
                    (credit.clone(), -payment.amount),
                ];
                payments.insert(payment_id, payment);
                Some(t)
            }
            E::PaymentAllocated {
                payment_id,
                invoice_id,
                amount,
                on,
            }
            | E::PaymentUnapplied {
                payment_id,
                invoice_id,
                amount,
                on,
            } => {
                let applied = matches!(event, E::PaymentAllocated { .. });
                let amount = cents(amount);
                let payment = payments
                    .get_mut(&payment_id)
                    .ok_or_else(|| missing("payment", payment_id))?;
                let invoice = invoices
                    .get_mut(&invoice_id)
                    .ok_or_else(|| missing("invoice", invoice_id))?;
                // Money between the customer's credit and its invoice: the balance stays.
                let moved = if applied {
                    *payment.allocations.entry(invoice_id).or_default() += amount;
                    invoice.paid += amount;
                    amount
                } else {
                    payment.allocations.remove(&invoice_id);
                    invoice.paid -= amount;
                    -amount
                };
                let narration = if applied {
                    format!(
                        "{} applied to {}",
                        payment.describe(),
                        invoice.name(invoice_id)
                    )
                } else {
                    format!(
                        "{} taken off {}",
                        payment.describe(),
                        invoice.name(invoice_id)
                    )
                };
                let mut t = txn(
                    invoice.date(on),
                    invoice.number.map(|n| n.to_string()),
                    capitalized(&narration),
                );
                t.meta.push(("payment", payment_id.to_string()));
                t.meta.push(("invoice", invoice_id.to_string()));
                t.postings = vec![(receivable.clone(), -moved), (credit.clone(), moved)];
                Some(t)
            }
            E::PaymentRefunded {
                payment_id,
                amount,
                on,
                reference,
            } => {
                let payment = payments
                    .get(&payment_id)
                    .ok_or_else(|| missing("payment", payment_id))?;
                let amount = cents(amount);
                let mut narration = format!("Refund of {}", payment.describe());
                if !reference.trim().is_empty() {
                    let _ = write!(narration, ", {}", reference.trim());
                }
                let mut t = txn(on, None, narration);
                t.meta.push(("payment", payment_id.to_string()));
                t.postings = vec![(credit.clone(), amount), (bank(payment.method), -amount)];
                Some(t)
            }
            E::PaymentReversed {
                payment_id,
                on,
                reason,
            } => {
                let payment = payments
                    .get_mut(&payment_id)
                    .ok_or_else(|| missing("payment", payment_id))?;
                // Its allocations come off the invoices (owed again), then the money goes.
                let mut allocated = Decimal::ZERO;
                for (invoice_id, amount) in std::mem::take(&mut payment.allocations) {
                    if let Some(invoice) = invoices.get_mut(&invoice_id) {
                        invoice.paid -= amount;
                    }
                    allocated += amount;
                }
                let mut t = txn(
                    on,
                    None,
                    format!("{} reversed", capitalized(&payment.describe())),
                );
                t.meta.push(("payment", payment_id.to_string()));
                t.meta.push(("reason", reason));
                t.postings = vec![
                    (receivable.clone(), allocated),
                    (credit.clone(), payment.amount - allocated),
                    (bank(payment.method), -payment.amount),
                ];
                Some(t)
            }
        };
        if let Some(mut t) = booked {
            t.postings.retain(|(_, amount)| !amount.is_zero());
            t.meta.retain(|(_, value)| !value.trim().is_empty());
            debug_assert!(t.postings.iter().map(|p| p.1).sum::<Decimal>().is_zero());
            if !t.postings.is_empty() {
                txns.push(t);
            }
        }
    }
    Ok(txns)
}

fn event_name(event: &LedgerEvent) -> String {
    cqrs_es::DomainEvent::event_type(event)
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The first 8 hex digits of an id.
fn short_id(id: Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}

// ---------------------------------------------------------------------------------------------
// Account names

/// A company name as an account name component valid in both formats: ASCII letters, digits
/// and dashes, starting with a capital letter (`Société Générale – Müller & Co.` →
/// `Societe-Generale-Muller-And-Co`).
fn slug(name: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else if let Some(ascii) = fold_latin(c) {
            word.push_str(ascii);
        } else if matches!(c, '\'' | '’' | '`' | '´') {
            // O'Brien → OBrien
        } else {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            if c == '&' || c == '+' {
                words.push("And".to_owned());
            }
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let slug = words
        .iter()
        .map(|w| capitalized(w))
        .collect::<Vec<_>>()
        .join("-");
    match slug.chars().next() {
        None => "Company".to_owned(),
        Some(c) if !c.is_ascii_uppercase() => format!("Company-{slug}"),
        Some(_) => slug,
    }
}

/// Account components for every company, unique (case-insensitively): companies whose names
/// make the same component get their short id appended.
fn unique_slugs(names: &BTreeMap<Uuid, String>) -> BTreeMap<Uuid, String> {
    let slugs: BTreeMap<Uuid, String> = names.iter().map(|(id, n)| (*id, slug(n))).collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for s in slugs.values() {
        *counts.entry(s.to_lowercase()).or_default() += 1;
    }
    slugs
        .into_iter()
        .map(|(id, s)| {
            if counts[&s.to_lowercase()] > 1 || s == "Company" {
                (id, format!("{s}-{}", short_id(id)))
            } else {
                (id, s)
            }
        })
        .collect()
}

/// Latin-1 and Latin Extended-A letters without their accents.
fn fold_latin(c: char) -> Option<&'static str> {
    Some(match c {
        'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' | 'Ā' | 'Ă' | 'Ą' => "A",
        'Æ' => "AE",
        'Ç' | 'Ć' | 'Ĉ' | 'Ċ' | 'Č' => "C",
        'Ð' | 'Ď' | 'Đ' => "D",
        'È' | 'É' | 'Ê' | 'Ë' | 'Ē' | 'Ĕ' | 'Ė' | 'Ę' | 'Ě' => "E",
        'Ĝ' | 'Ğ' | 'Ġ' | 'Ģ' => "G",
        'Ĥ' | 'Ħ' => "H",
        'Ì' | 'Í' | 'Î' | 'Ï' | 'Ĩ' | 'Ī' | 'Ĭ' | 'Į' | 'İ' => "I",
        'Ĳ' => "IJ",
        'Ĵ' => "J",
        'Ķ' => "K",
        'Ĺ' | 'Ļ' | 'Ľ' | 'Ŀ' | 'Ł' => "L",
        'Ñ' | 'Ń' | 'Ņ' | 'Ň' | 'Ŋ' => "N",
        'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' | 'Ō' | 'Ŏ' | 'Ő' => "O",
        'Œ' => "OE",
        'Ŕ' | 'Ŗ' | 'Ř' => "R",
        'Ś' | 'Ŝ' | 'Ş' | 'Š' => "S",
        'Ţ' | 'Ť' | 'Ŧ' => "T",
        'Þ' => "Th",
        'Ù' | 'Ú' | 'Û' | 'Ü' | 'Ũ' | 'Ū' | 'Ŭ' | 'Ů' | 'Ű' | 'Ų' => "U",
        'Ŵ' => "W",
        'Ý' | 'Ŷ' | 'Ÿ' => "Y",
        'Ź' | 'Ż' | 'Ž' => "Z",
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ð' | 'ď' | 'đ' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĳ' => "ij",
        'ĵ' => "j",
        'ķ' | 'ĸ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' | 'ŉ' | 'ŋ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ſ' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Writing

struct Journal {
    tenant_id: Uuid,
    tenant_name: String,
    currency: String,
    as_of: Option<NaiveDate>,
    /// Customers with a transaction.
    customers: usize,
    /// By date, then customer, then log order.
    transactions: Vec<Txn>,
}

/// Free text on one line, without what ends or splits it in either format.
fn text(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| match c {
            c if c.is_control() => ' ',
            '"' => '\'',
            '\\' => '/',
            ';' => ',',
            '|' => '/',
            c => c,
        })
        .collect();
    one_line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A code without what ends it (`)`) or starts a comment.
fn code(s: &str) -> String {
    text(s).replace([')', '('], "")
}

impl Journal {
    /// Every account used, with the date of its first posting.
    fn accounts(&self) -> BTreeMap<&str, NaiveDate> {
        let mut accounts: BTreeMap<&str, NaiveDate> = BTreeMap::new();
        for t in &self.transactions {
            for (account, _) in &t.postings {
                let first = accounts.entry(account.as_str()).or_insert(t.date);
                *first = (*first).min(t.date);
            }
        }
        accounts
    }

    fn header(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "; Receivables of {} (tenant {}), in {}: exported by `replay-tools export-ledger`.",
            text(&self.tenant_name),
            self.tenant_id,
            self.currency
        );
        let _ = match self.as_of {
            Some(d) => writeln!(out, "; Facts dated up to {d}."),
            None => writeln!(out, "; Every fact of the log."),
        };
        let _ = writeln!(
            out,
            "; Assets:Receivables:<Customer> is what its invoices still owe, its :Credit sub-account\n\
             ; its unapplied payments: together, the customer's total in the AR aging report."
        );
        out
    }

    fn width(&self) -> usize {
        self.transactions
            .iter()
            .flat_map(|t| &t.postings)
            .map(|(a, _)| a.len())
            .max()
            .unwrap_or(0)
            .max(20)
    }

    fn hledger(&self) -> String {
        let mut out = self.header();
        let currency = &self.currency;
        let _ = writeln!(out, "\ndecimal-mark .\ncommodity 1000.00 {currency}\n");
        for account in self.accounts().keys() {
            let _ = writeln!(out, "account {account}");
        }
        let width = self.width();
        for t in &self.transactions {
            let mut description = format!("{} | {}", text(&t.payee), text(&t.narration));
            if description.starts_with('(') {
                description.replace_range(..1, "[");
            }
            let code = match &t.code {
                Some(c) => format!(" ({})", code(c)),
                None => String::new(),
            };
            let _ = writeln!(out, "\n{} *{code} {description}", t.date);
            for (key, value) in &t.meta {
                let _ = writeln!(out, "    ; {key}: {}", text(value).replace(',', " "));
            }
            for (account, amount) in &t.postings {
                let _ = writeln!(
                    out,
                    "    {account:<width$}  {:>12} {currency}",
                    cents(*amount)
                );
            }
        }
        out
    }

    fn beancount(&self) -> String {
        let mut out = self.header();
        let currency = &self.currency;
        let _ = writeln!(
            out,
            "\noption \"title\" \"Receivables of {}\"\noption \"operating_currency\" \"{currency}\"\n",
            text(&self.tenant_name)
        );
        for (account, first) in self.accounts() {
            let _ = writeln!(out, "{first} open {account} {currency}");
        }
        let width = self.width();
        for t in &self.transactions {
            let _ = writeln!(
                out,
                "\n{} * \"{}\" \"{}\"",
                t.date,
                text(&t.payee),
                text(&t.narration)
            );
            if let Some(c) = &t.code {
                let _ = writeln!(out, "  code: \"{}\"", text(c));
            }
            for (key, value) in &t.meta {
                let _ = writeln!(out, "  {}: \"{}\"", key.replace('_', "-"), text(value));
            }
            for (account, amount) in &t.postings {
                let _ = writeln!(
                    out,
                    "  {account:<width$}  {:>12} {currency}",
                    cents(*amount)
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    use domain::billing::{price_lines, LineInput};

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::from_str(s).unwrap()
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn issued(n: u64, price: &str, tax: Option<&str>, on: &str) -> LedgerEvent {
        let lines = price_lines(
            &[LineInput {
                description: "Support".into(),
                quantity: dec("1"),
                unit_price: dec(price),
                tax_rate: tax.map(dec),
            }],
            false,
        )
        .unwrap();
        let total = domain::billing::totals(&lines).2;
        LedgerEvent::InvoiceIssued {
            invoice_id: id(n as u128),
            number: n,
            issue_date: d(on),
            due_date: d(on),
            lines: Some(lines),
            total,
            bills: vec![],
        }
    }

    fn customer() -> Customer {
        Customer {
            name: "Northwind Ltd".into(),
            account: "Assets:Receivables:Northwind-Ltd".into(),
        }
    }

    fn balance_until(txns: &[Txn], c: &Customer, until: &str) -> Decimal {
        txns.iter()
            .filter(|t| t.date <= d(until))
            .flat_map(|t| &t.postings)
            .filter(|(a, _)| c.owns(a))
            .map(|(_, amount)| *amount)
            .sum()
    }

    #[test]
    fn every_fact_is_booked_and_the_balance_is_the_ledgers() {
        use LedgerEvent as E;
        let events = vec![
            issued(1, "500.00", Some("20"), "2026-01-01"),
            issued(2, "100.00", None, "2026-01-05"),
            E::CreditNoteIssued {
                credit_note_id: id(50),
                number: 1,
                invoice_id: id(2),
                amount: dec("30.00"),
                date: d("2026-01-03"), // before the invoice: booked on its issue date
                reason: "goodwill".into(),
            },
            E::InvoiceVoided {
                invoice_id: id(2),
                on: d("2026-01-10"),
                reason: "wrong customer".into(),
                released: Vec::new(),
            },
            E::PaymentReceived {
                payment_id: id(100),
                amount: dec("700.00"),
                received_on: d("2026-01-12"),
                method: Method::Check,
                reference: "1234".into(),
            },
            E::PaymentAllocated {
                payment_id: id(100),
                invoice_id: id(1),
                amount: dec("600.00"),
                on: d("2026-01-12"),
            },
            E::PaymentRefunded {
                payment_id: id(100),
                amount: dec("40.00"),
                on: d("2026-01-13"),
                reference: "transfer".into(),
            },
            E::PaymentUnapplied {
                payment_id: id(100),
                invoice_id: id(1),
                amount: dec("600.00"),
                on: d("2026-01-14"),
            },
            E::PaymentReceived {
                payment_id: id(101),
                amount: dec("550.00"),
                received_on: d("2026-01-15"),
                method: Method::BankTransfer,
                reference: String::new(),
            },
            E::PaymentAllocated {
                payment_id: id(101),
                invoice_id: id(1),
                amount: dec("550.00"),
                on: d("2026-01-15"),
            },
            E::PaymentReversed {
                payment_id: id(101),
                on: d("2026-01-20"),
                reason: "bounced".into(),
            },
        ];
        let c = customer();
        let positioned: Vec<(i64, LedgerEvent)> = events
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, e)| (i as i64, e))
            .collect();
        let txns = book(&c, &positioned).unwrap();
        for t in &txns {
            assert!(
                t.postings.iter().map(|p| p.1).sum::<Decimal>().is_zero(),
                "{t:?}"
            );
        }
        let mut ledger = Ledger::default();
        for e in events {
            ledger.apply(e);
        }
        assert_eq!(balance_until(&txns, &c, "2100-01-01"), ledger.balance());
        // The credit note is dated on the invoice's issue date.
        let note = txns
            .iter()
            .find(|t| t.narration.starts_with("Credit note"))
            .unwrap();
        assert_eq!(note.date, d("2026-01-05"));
        assert_eq!(note.code.as_deref(), Some("1"));
        // As of Jan 12: 600 + (100 − 30 − 70 voided) − 700 + 600 − 600 = −100.
        assert_eq!(balance_until(&txns, &c, "2026-01-12"), dec("-100.00"));
        // The bounced transfer: owed again, and its money gone: 600 − 700 + 40.
        assert_eq!(balance_until(&txns, &c, "2026-01-20"), dec("-60.00"));
        let reversed = txns.last().unwrap();
        assert_eq!(reversed.narration, "Payment (bank transfer) reversed");
        assert_eq!(
            reversed.postings,
            vec![
                ("Assets:Receivables:Northwind-Ltd".to_owned(), dec("550.00")),
                ("Assets:Bank:Bank-Transfer".to_owned(), dec("-550.00")),
            ]
        );
        let invoice = &txns[0];
        assert_eq!(
            invoice.postings,
            vec![
                ("Assets:Receivables:Northwind-Ltd".to_owned(), dec("600.00")),
                ("Income:Sales".to_owned(), dec("-500.00")),
                ("Liabilities:Tax".to_owned(), dec("-100.00")),
            ]
        );
    }

    #[test]
    fn names_become_valid_unique_account_components() {
        assert_eq!(slug("Northwind Ltd."), "Northwind-Ltd");
        assert_eq!(
            slug("Société Générale – Müller & Co."),
            "Societe-Generale-Muller-And-Co"
        );
        assert_eq!(slug("O'Brien's  plumbing"), "OBriens-Plumbing");
        assert_eq!(slug("3M"), "Company-3M");
        assert_eq!(slug("株式会社"), "Company");
        assert_eq!(slug("Œuvre Þór"), "OEuvre-Thor");
        let names: BTreeMap<Uuid, String> = [
            (id(0xa1), "Northwind Ltd".to_owned()),
            (id(0xb2), "northwind, ltd.".to_owned()),
            (id(0xc3), "Contoso".to_owned()),
        ]
        .into();
        let slugs = unique_slugs(&names);
        assert_eq!(slugs[&id(0xc3)], "Contoso");
        assert_eq!(
            slugs[&id(0xa1)],
            format!("Northwind-Ltd-{}", short_id(id(0xa1)))
        );
        assert_eq!(
            slugs[&id(0xb2)],
            format!("Northwind-Ltd-{}", short_id(id(0xb2)))
        );
    }

    #[test]
    fn tenants_are_picked_or_named() {
        let mut tenants = BTreeMap::new();
        assert!(pick_tenant(&tenants, None)
            .unwrap_err()
            .0
            .contains("no tenants"));
        let acme = Tenant {
            created: true,
            name: "Acme IT".into(),
            ..Tenant::default()
        };
        tenants.insert(id(1).to_string(), acme.clone());
        assert_eq!(pick_tenant(&tenants, None).unwrap().0, id(1));
        tenants.insert(
            id(2).to_string(),
            Tenant {
                name: "Other MSP".into(),
                ..acme
            },
        );
        let error = pick_tenant(&tenants, None).unwrap_err().0;
        assert!(
            error.contains("Acme IT") && error.contains("Other MSP"),
            "{error}"
        );
        assert_eq!(
            pick_tenant(&tenants, Some(id(2))).unwrap().1.name,
            "Other MSP"
        );
        let error = pick_tenant(&tenants, Some(id(3))).unwrap_err().0;
        assert!(
            error.contains(&id(3).to_string()) && error.contains("Acme IT"),
            "{error}"
        );
    }
}
