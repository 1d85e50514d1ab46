//! The `receivables` read model (issue 7): invoices with their running balances, payments and
//! where they went, credit notes, and the dated movements (`ar_entries`) that the aging report
//! as of a past date and customer statements are computed from. Fed by the `ledger`
//! aggregate (one per customer company: its id is the company's).
//!
//! A batch is folded in memory, like `work_orders` does it: the invoices and payments it
//! touches without creating them (and every allocation of those payments) are loaded with one
//! statement per table, every event is applied to them in order, and the results are written
//! back with a few set-based statements per table (`INSERT ... SELECT FROM unnest(...)`, the
//! same with `ON CONFLICT DO UPDATE` for changed rows, `DELETE ... USING unnest(...)`). The
//! payment allocations are this projection's own table: a reversed payment's allocations are
//! read back from it (reading one's own tables inside `apply` is deterministic; reading
//! another projection's is not).
//!
//! Every amount is taken rounded to the cent (as the `numeric(14,2)` columns store it), so the
//! sums folded in memory are exactly what the columns hold, whatever the batches.
//!
//! What cannot happen in a ledger fails the batch at its event: an event for an invoice or a
//! payment with no row, or of another company; an invoice drafted twice, a payment received
//! twice or a credit note issued twice fail the batch's writes.
//!
//! `ar_entries`: `invoice_id` set moves the invoice's outstanding amount, `invoice_id` NULL
//! moves the company's unapplied credit (migration 0014). So at any date D an invoice's
//! outstanding amount is the sum of its entries dated D or before, a company's credit the sum
//! of its credit entries dated D or before, and its balance the first minus the second.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use commands::StoredAggregate;
use cqrs_es::Aggregate;
use domain::billing::{cents, totals, Line, LineSource};
use domain::ledger::{Ledger, LedgerEvent};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, PgExecutor, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::keyed::{load_keyed, Key};
use crate::{ApplyError, Projection, StoredEvent, Tables};

pub struct ReceivablesProjection;

pub const NAME: &str = "receivables";

/// The tables, in `Projection::tables` order.
const TABLES: &[&str] = &[
    "invoices",
    "payments",
    "payment_allocations",
    "credit_notes",
    "ar_entries",
];

fn decode(event: &StoredEvent) -> Result<LedgerEvent, String> {
    if event.event_version == "1" {
        serde_json::from_str(event.payload.get()).map_err(|e| e.to_string())
    } else {
        let serialized = event.to_serialized().map_err(|e| e.to_string())?;
        commands::store::decode(&commands::store::upcast(serialized, &Ledger::upcasters()))
    }
}

/// Money with its two places: PostgreSQL sends a zero `numeric(14,2)` without its scale, and
/// sqlx reads it as `0`; every amount read is put back to `0.00` form.
fn money(mut value: Decimal) -> Decimal {
    if value.scale() < 2 {
        value.rescale(2);
    }
    value
}

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// Declares the rows of one table as one array per column, for `unnest` (as in `work_orders`):
/// `push` a row, `unnest(first)` gives `unnest($first::type[], ...) AS u(column, ...)`, and
/// `bind` binds the arrays in that order.
macro_rules! column_arrays {
    (
        $name:ident from $row:ident: $row_type:ty {
            $($column:ident: $type:ty = $get:expr => $pg:literal,)*
        }
    ) => {
        #[derive(Default)]
        struct $name {
            $($column: Vec<$type>,)*
        }

        impl $name {
            fn push(&mut self, $row: $row_type) {
                $(self.$column.push($get);)*
            }

            fn is_empty(&self) -> bool {
                self.tenant_id.is_empty()
            }

            fn columns() -> Vec<&'static str> {
                vec![$(stringify!($column)),*]
            }

            /// `INSERT INTO table (columns) SELECT u.columns FROM unnest(...)`.
            fn insert_sql(table: &str) -> String {
                let types: &[&str] = &[$($pg),*];
                let arrays: Vec<String> = types
                    .iter()
                    .enumerate()
                    .map(|(n, t)| format!("${}::{t}[]", n + 1))
                    .collect();
                let columns = Self::columns();
                let select: Vec<String> = columns.iter().map(|c| format!("u.{c}")).collect();
                format!(
                    "INSERT INTO {table} ({}) SELECT {} FROM unnest({}) AS u({})",
                    columns.join(", "),
                    select.join(", "),
                    arrays.join(", "),
                    columns.join(", ")
                )
            }

            /// The insert, updating every column but `key` on a conflict on `key`.
            #[allow(dead_code)]
            fn upsert_sql(table: &str, key: &[&str]) -> String {
                let set: Vec<String> = Self::columns()
                    .into_iter()
                    .filter(|column| !key.contains(column))
                    .map(|column| format!("{column} = excluded.{column}"))
                    .collect();
                format!(
                    "{} ON CONFLICT ({}) DO UPDATE SET {}",
                    Self::insert_sql(table),
                    key.join(", "),
                    set.join(", ")
                )
            }

            fn bind(self, query: PgQuery<'_>) -> PgQuery<'_> {
                $(let query = query.bind(self.$column);)*
                query
            }
        }
    };
}

/// An invoice's row as this projection writes it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Invoice {
    tenant_id: Uuid,
    id: Uuid,
    company_id: Uuid,
    number: Option<i64>,
    status: String,
    issue_date: Option<NaiveDate>,
    due_date: Option<NaiveDate>,
    subtotal: Decimal,
    tax: Decimal,
    total: Decimal,
    paid: Decimal,
    credited: Decimal,
    balance: Decimal,
    line_count: i32,
    period_start: Option<NaiveDate>,
    period_end: Option<NaiveDate>,
    reminders: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

column_arrays! {
    InvoiceColumns from row: Invoice {
        tenant_id: Uuid = row.tenant_id => "uuid",
        id: Uuid = row.id => "uuid",
        company_id: Uuid = row.company_id => "uuid",
        number: Option<i64> = row.number => "int8",
        status: String = row.status => "text",
        issue_date: Option<NaiveDate> = row.issue_date => "date",
        due_date: Option<NaiveDate> = row.due_date => "date",
        subtotal: Decimal = row.subtotal => "numeric",
        tax: Decimal = row.tax => "numeric",
        total: Decimal = row.total => "numeric",
        paid: Decimal = row.paid => "numeric",
        credited: Decimal = row.credited => "numeric",
        balance: Decimal = row.balance => "numeric",
        line_count: i32 = row.line_count => "int4",
        period_start: Option<NaiveDate> = row.period_start => "date",
        period_end: Option<NaiveDate> = row.period_end => "date",
        reminders: i32 = row.reminders => "int4",
        created_at: DateTime<Utc> = row.created_at => "timestamptz",
        updated_at: DateTime<Utc> = row.updated_at => "timestamptz",
    }
}

impl Invoice {
    /// A new invoice of the event's ledger, with no lines yet.
    fn new(at: &At, id: Uuid) -> Self {
        let zero = Decimal::ZERO;
        Self {
            tenant_id: at.tenant_id,
            id,
            company_id: at.company_id,
            number: None,
            status: domain::ledger::InvoiceStatus::Draft.as_str().to_owned(),
            issue_date: None,
            due_date: None,
            subtotal: zero,
            tax: zero,
            total: zero,
            paid: zero,
            credited: zero,
            balance: zero,
            line_count: 0,
            period_start: None,
            period_end: None,
            reminders: 0,
            created_at: at.event.recorded_at,
            updated_at: at.event.recorded_at,
        }
    }

    fn is_void(&self) -> bool {
        self.status == domain::ledger::InvoiceStatus::Void.as_str()
    }

    /// Status and balance from the sums, as `domain::ledger::Invoice` computes them.
    fn settle(&mut self) {
        let invoice = domain::ledger::Invoice {
            number: self.number.map(|n| n as u64),
            void: self.is_void(),
            total: self.total,
            paid: self.paid,
            credited: self.credited,
            ..Default::default()
        };
        self.status = invoice.status().as_str().to_owned();
        self.balance = invoice.balance();
    }

    /// Line count, subtotal, tax and total, and the contract period, from the lines.
    fn set_lines(&mut self, lines: &[Line]) -> Result<(), String> {
        let (subtotal, tax, total) = totals(lines);
        self.subtotal = subtotal;
        self.tax = tax;
        self.total = total;
        self.line_count = i32::try_from(lines.len()).map_err(|_| "too many lines")?;
        let period = lines.iter().find_map(|line| match line.source {
            Some(LineSource::Contract {
                period_start,
                period_end,
            }) => Some((period_start, period_end)),
            _ => None,
        });
        self.period_start = period.map(|p| p.0);
        self.period_end = period.map(|p| p.1);
        Ok(())
    }
}

/// A payment's row.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Payment {
    tenant_id: Uuid,
    id: Uuid,
    company_id: Uuid,
    amount: Decimal,
    received_on: NaiveDate,
    method: String,
    reference: String,
    allocated: Decimal,
    refunded: Decimal,
    unapplied: Decimal,
    reversed: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

column_arrays! {
    PaymentColumns from row: Payment {
        tenant_id: Uuid = row.tenant_id => "uuid",
        id: Uuid = row.id => "uuid",
        company_id: Uuid = row.company_id => "uuid",
        amount: Decimal = row.amount => "numeric",
        received_on: NaiveDate = row.received_on => "date",
        method: String = row.method => "text",
        reference: String = row.reference => "text",
        allocated: Decimal = row.allocated => "numeric",
        refunded: Decimal = row.refunded => "numeric",
        unapplied: Decimal = row.unapplied => "numeric",
        reversed: bool = row.reversed => "bool",
        created_at: DateTime<Utc> = row.created_at => "timestamptz",
        updated_at: DateTime<Utc> = row.updated_at => "timestamptz",
    }
}

impl Payment {
    /// What of the payment is still credit (`domain::ledger::Payment::unapplied`).
    fn settle(&mut self) {
        self.unapplied = if self.reversed {
            Decimal::ZERO
        } else {
            self.amount - self.allocated - self.refunded
        };
    }
}

/// A row of `payment_allocations`.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Allocation {
    tenant_id: Uuid,
    payment_id: Uuid,
    invoice_id: Uuid,
    company_id: Uuid,
    amount: Decimal,
    on_date: NaiveDate,
}

column_arrays! {
    AllocationColumns from row: Allocation {
        tenant_id: Uuid = row.tenant_id => "uuid",
        payment_id: Uuid = row.payment_id => "uuid",
        invoice_id: Uuid = row.invoice_id => "uuid",
        company_id: Uuid = row.company_id => "uuid",
        amount: Decimal = row.amount => "numeric",
        on_date: NaiveDate = row.on_date => "date",
    }
}

struct CreditNote {
    tenant_id: Uuid,
    id: Uuid,
    company_id: Uuid,
    invoice_id: Uuid,
    number: i64,
    amount: Decimal,
    date: NaiveDate,
    reason: String,
}

column_arrays! {
    CreditNoteColumns from row: CreditNote {
        tenant_id: Uuid = row.tenant_id => "uuid",
        id: Uuid = row.id => "uuid",
        company_id: Uuid = row.company_id => "uuid",
        invoice_id: Uuid = row.invoice_id => "uuid",
        number: i64 = row.number => "int8",
        amount: Decimal = row.amount => "numeric",
        date: NaiveDate = row.date => "date",
        reason: String = row.reason => "text",
    }
}

/// One dated movement.
struct Entry {
    tenant_id: Uuid,
    company_id: Uuid,
    invoice_id: Option<Uuid>,
    payment_id: Option<Uuid>,
    on_date: NaiveDate,
    amount: Decimal,
    kind: &'static str,
    position: i64,
}

column_arrays! {
    EntryColumns from row: Entry {
        tenant_id: Uuid = row.tenant_id => "uuid",
        company_id: Uuid = row.company_id => "uuid",
        invoice_id: Option<Uuid> = row.invoice_id => "uuid",
        payment_id: Option<Uuid> = row.payment_id => "uuid",
        on_date: NaiveDate = row.on_date => "date",
        amount: Decimal = row.amount => "numeric",
        kind: &'static str = row.kind => "text",
        position: i64 = row.position => "int8",
    }
}

type AllocationKey = (Uuid, Uuid, Uuid);

/// A batch folded in memory.
#[derive(Default)]
struct Fold {
    invoices: HashMap<Key, Invoice>,
    /// Invoices whose row existed before the batch (updated; the others are inserted).
    stored_invoices: HashSet<Key>,
    payments: HashMap<Key, Payment>,
    stored_payments: HashSet<Key>,
    /// The allocations of every payment in `payments`, by invoice.
    allocations: HashMap<Key, BTreeMap<Uuid, Allocation>>,
    /// Allocations stored before the batch.
    stored_allocations: HashSet<AllocationKey>,
    /// Allocations the batch changed or removed.
    touched_allocations: HashSet<AllocationKey>,
    credit_notes: Vec<CreditNote>,
    entries: Vec<Entry>,
}

/// The event's context: its tenant, company (the ledger), position and time.
struct At<'a> {
    tenant_id: Uuid,
    company_id: Uuid,
    event: &'a StoredEvent,
}

impl At<'_> {
    fn entry(
        &self,
        invoice_id: Option<Uuid>,
        payment_id: Option<Uuid>,
        on_date: NaiveDate,
        amount: Decimal,
        kind: &'static str,
    ) -> Entry {
        Entry {
            tenant_id: self.tenant_id,
            company_id: self.company_id,
            invoice_id,
            payment_id,
            on_date,
            amount,
            kind,
            position: self.event.position.global_position,
        }
    }
}

fn number(value: u64) -> Result<i64, String> {
    i64::try_from(value).map_err(|_| format!("number {value} out of range"))
}

impl Fold {
    /// The row of an invoice of this ledger.
    fn invoice(&mut self, at: &At, invoice_id: Uuid) -> Result<&mut Invoice, String> {
        let invoice = self
            .invoices
            .get_mut(&(at.tenant_id, invoice_id))
            .ok_or_else(|| {
                format!(
                    "{} for invoice {invoice_id}, which has no row",
                    at.event.event_type
                )
            })?;
        if invoice.company_id != at.company_id {
            return Err(format!(
                "invoice {invoice_id} is of company {}, not {}",
                invoice.company_id, at.company_id
            ));
        }
        invoice.updated_at = at.event.recorded_at;
        Ok(invoice)
    }

    fn payment(&mut self, at: &At, payment_id: Uuid) -> Result<&mut Payment, String> {
        let payment = self
            .payments
            .get_mut(&(at.tenant_id, payment_id))
            .ok_or_else(|| {
                format!(
                    "{} for payment {payment_id}, which has no row",
                    at.event.event_type
                )
            })?;
        if payment.company_id != at.company_id {
            return Err(format!(
                "payment {payment_id} is of company {}, not {}",
                payment.company_id, at.company_id
            ));
        }
        payment.updated_at = at.event.recorded_at;
        Ok(payment)
    }

    /// Adds `amount` to what `payment_id` paid on `invoice_id` (negative: takes it off).
    fn pay(
        &mut self,
        at: &At,
        payment_id: Uuid,
        invoice_id: Uuid,
        amount: Decimal,
    ) -> Result<(), String> {
        let invoice = self.invoice(at, invoice_id)?;
        invoice.paid += amount;
        invoice.settle();
        let payment = self.payment(at, payment_id)?;
        payment.allocated += amount;
        payment.settle();
        Ok(())
    }

    fn apply(&mut self, at: &At, payload: LedgerEvent) -> Result<(), String> {
        use LedgerEvent as E;
        let (tenant_id, company_id) = (at.tenant_id, at.company_id);
        let recorded_at = at.event.recorded_at;
        match payload {
            E::LedgerOpened { .. } => {}
            E::InvoiceDrafted {
                invoice_id, lines, ..
            } => {
                let key = (tenant_id, invoice_id);
                if self.invoices.contains_key(&key) {
                    return Err(format!("invoice {invoice_id} drafted twice"));
                }
                let mut invoice = Invoice::new(at, invoice_id);
                invoice.set_lines(&lines)?;
                invoice.settle();
                self.invoices.insert(key, invoice);
            }
            E::InvoiceIssued {
                invoice_id,
                number: n,
                issue_date,
                due_date,
                lines,
                total,
                ..
            } => {
                let key = (tenant_id, invoice_id);
                if let std::collections::hash_map::Entry::Vacant(slot) = self.invoices.entry(key) {
                    if lines.is_none() {
                        return Err(format!(
                            "invoice {invoice_id} issued without lines and without a draft"
                        ));
                    }
                    slot.insert(Invoice::new(at, invoice_id));
                }
                let invoice = self.invoice(at, invoice_id)?;
                if let Some(lines) = &lines {
                    invoice.set_lines(lines)?;
                }
                invoice.total = cents(total);
                invoice.number = Some(number(n)?);
                invoice.issue_date = Some(issue_date);
                invoice.due_date = Some(due_date);
                invoice.settle();
                let total = invoice.total;
                self.entries
                    .push(at.entry(Some(invoice_id), None, issue_date, total, "issued"));
            }
            E::InvoiceVoided { invoice_id, on, .. } => {
                let invoice = self.invoice(at, invoice_id)?;
                let outstanding = invoice.balance;
                invoice.status = domain::ledger::InvoiceStatus::Void.as_str().to_owned();
                invoice.settle();
                if !outstanding.is_zero() {
                    self.entries
                        .push(at.entry(Some(invoice_id), None, on, -outstanding, "voided"));
                }
            }
            E::CreditNoteIssued {
                credit_note_id,
                number: n,
                invoice_id,
                amount,
                date,
                reason,
            } => {
                let amount = cents(amount);
                let invoice = self.invoice(at, invoice_id)?;
                invoice.credited += amount;
                invoice.settle();
                self.credit_notes.push(CreditNote {
                    tenant_id,
                    id: credit_note_id,
                    company_id,
                    invoice_id,
                    number: number(n)?,
                    amount,
                    date,
                    reason,
                });
                self.entries
                    .push(at.entry(Some(invoice_id), None, date, -amount, "credit_note"));
            }
            E::PaymentReceived {
                payment_id,
                amount,
                received_on,
                method,
                reference,
            } => {
                let key = (tenant_id, payment_id);
                if self.payments.contains_key(&key) {
                    return Err(format!("payment {payment_id} received twice"));
                }
                let amount = cents(amount);
                let mut payment = Payment {
                    tenant_id,
                    id: payment_id,
                    company_id,
                    amount,
                    received_on,
                    method: method.as_str().to_owned(),
                    reference,
                    allocated: Decimal::ZERO,
                    refunded: Decimal::ZERO,
                    unapplied: Decimal::ZERO,
                    reversed: false,
                    created_at: recorded_at,
                    updated_at: recorded_at,
                };
                payment.settle();
                self.payments.insert(key, payment);
                self.allocations.insert(key, BTreeMap::new());
                self.entries.push(at.entry(
                    None,
                    Some(payment_id),
                    received_on,
                    amount,
                    "received",
                ));
            }
            E::PaymentAllocated {
                payment_id,
                invoice_id,
                amount,
                on,
            } => {
                let amount = cents(amount);
                self.pay(at, payment_id, invoice_id, amount)?;
                let allocation = self
                    .allocations
                    .entry((tenant_id, payment_id))
                    .or_default()
                    .entry(invoice_id)
                    .or_insert_with(|| Allocation {
                        tenant_id,
                        payment_id,
                        invoice_id,
                        company_id,
                        amount: Decimal::ZERO,
                        on_date: on,
                    });
                allocation.amount += amount;
                // The date the allocation reached its amount.
                allocation.on_date = allocation.on_date.max(on);
                self.touched_allocations
                    .insert((tenant_id, payment_id, invoice_id));
                let (invoice, payment) = (Some(invoice_id), Some(payment_id));
                self.entries
                    .push(at.entry(invoice, payment, on, -amount, "allocated"));
                self.entries
                    .push(at.entry(None, payment, on, -amount, "allocated"));
            }
            E::PaymentUnapplied {
                payment_id,
                invoice_id,
                amount,
                on,
            } => {
                let amount = cents(amount);
                self.pay(at, payment_id, invoice_id, -amount)?;
                if let Some(allocations) = self.allocations.get_mut(&(tenant_id, payment_id)) {
                    allocations.remove(&invoice_id);
                }
                self.touched_allocations
                    .insert((tenant_id, payment_id, invoice_id));
                let (invoice, payment) = (Some(invoice_id), Some(payment_id));
                self.entries
                    .push(at.entry(invoice, payment, on, amount, "unapplied"));
                self.entries
                    .push(at.entry(None, payment, on, amount, "unapplied"));
            }
            E::PaymentRefunded {
                payment_id,
                amount,
                on,
                ..
            } => {
                let amount = cents(amount);
                let payment = self.payment(at, payment_id)?;
                payment.refunded += amount;
                payment.settle();
                self.entries
                    .push(at.entry(None, Some(payment_id), on, -amount, "refunded"));
            }
            E::PaymentReversed { payment_id, on, .. } => {
                self.payment(at, payment_id)?;
                let allocations = self
                    .allocations
                    .get_mut(&(tenant_id, payment_id))
                    .map(std::mem::take)
                    .unwrap_or_default();
                let payment = Some(payment_id);
                for (invoice_id, allocation) in allocations {
                    let amount = allocation.amount;
                    self.pay(at, payment_id, invoice_id, -amount)?;
                    self.touched_allocations
                        .insert((tenant_id, payment_id, invoice_id));
                    self.entries
                        .push(at.entry(Some(invoice_id), payment, on, amount, "reversed"));
                    self.entries
                        .push(at.entry(None, payment, on, amount, "reversed"));
                }
                let payment_row = self.payment(at, payment_id)?;
                payment_row.reversed = true;
                payment_row.allocated = Decimal::ZERO;
                payment_row.settle();
                let amount = payment_row.amount;
                self.entries
                    .push(at.entry(None, payment, on, -amount, "reversed"));
            }
            E::OverdueReminderDue { invoice_id, .. } => {
                let invoice = self.invoice(at, invoice_id)?;
                invoice.reminders = invoice
                    .reminders
                    .checked_add(1)
                    .ok_or("reminders out of range")?;
            }
        }
        Ok(())
    }
}

fn sorted(mut keys: Vec<Key>) -> Vec<Key> {
    keys.sort_unstable();
    keys.dedup();
    keys
}

#[async_trait]
impl Projection for ReceivablesProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        tables: &Tables,
        events: &[StoredEvent],
    ) -> Result<(), ApplyError> {
        // Decode the batch's events, and find what must be read first: invoices and payments
        // it refers to before (or without) creating them.
        let mut mine = Vec::new();
        let (mut seen_invoices, mut seen_payments) = (HashSet::new(), HashSet::new());
        let (mut load_invoices, mut load_payments) = (Vec::new(), Vec::new());
        let mut reversed = Vec::new();
        for (index, event) in events.iter().enumerate() {
            if event.aggregate_type != Ledger::TYPE {
                continue;
            }
            let at = |e: String| ApplyError::at(index, e);
            let company_id = Uuid::parse_str(&event.aggregate_id)
                .map_err(|_| at(format!("ledger id {:?}", event.aggregate_id)))?;
            let tenant_id = event.meta.as_ref().map_err(|e| at(e.clone()))?.tenant_id;
            let payload = decode(event).map_err(at)?;
            use LedgerEvent as E;
            let (invoice, payment) = match &payload {
                E::LedgerOpened { .. } => (None, None),
                E::InvoiceDrafted { invoice_id, .. } => {
                    // New: a row stored before fails the insert.
                    seen_invoices.insert((tenant_id, *invoice_id));
                    (None, None)
                }
                E::InvoiceIssued { invoice_id, .. }
                | E::InvoiceVoided { invoice_id, .. }
                | E::CreditNoteIssued { invoice_id, .. }
                | E::OverdueReminderDue { invoice_id, .. } => (Some(*invoice_id), None),
                E::PaymentReceived { payment_id, .. } => {
                    seen_payments.insert((tenant_id, *payment_id));
                    (None, None)
                }
                E::PaymentAllocated {
                    payment_id,
                    invoice_id,
                    ..
                }
                | E::PaymentUnapplied {
                    payment_id,
                    invoice_id,
                    ..
                } => (Some(*invoice_id), Some(*payment_id)),
                E::PaymentRefunded { payment_id, .. } => (None, Some(*payment_id)),
                E::PaymentReversed { payment_id, .. } => {
                    reversed.push((tenant_id, *payment_id));
                    (None, Some(*payment_id))
                }
            };
            if let Some(id) = invoice {
                if seen_invoices.insert((tenant_id, id)) {
                    load_invoices.push((tenant_id, id));
                }
            }
            if let Some(id) = payment {
                if seen_payments.insert((tenant_id, id)) {
                    load_payments.push((tenant_id, id));
                }
            }
            mine.push((index, event, tenant_id, company_id, payload));
        }
        if mine.is_empty() {
            return Ok(());
        }

        let mut fold = Fold::default();
        let load_payments = sorted(load_payments);
        let loaded: Vec<Payment> =
            load_keyed(&mut *conn, tables.get(1), "*", "id", load_payments.clone()).await?;
        for payment in loaded {
            let key = (payment.tenant_id, payment.id);
            fold.stored_payments.insert(key);
            fold.allocations.insert(key, BTreeMap::new());
            fold.payments.insert(key, payment);
        }
        let loaded: Vec<Allocation> =
            load_keyed(&mut *conn, tables.get(2), "*", "payment_id", load_payments).await?;
        // A reversal takes every allocation of its payment off its invoice: those invoices
        // are read too.
        let reversed: HashSet<Key> = reversed.into_iter().collect();
        for allocation in loaded {
            let key = (allocation.tenant_id, allocation.payment_id);
            if reversed.contains(&key) && seen_invoices.insert((key.0, allocation.invoice_id)) {
                load_invoices.push((key.0, allocation.invoice_id));
            }
            fold.stored_allocations
                .insert((key.0, key.1, allocation.invoice_id));
            fold.allocations
                .entry(key)
                .or_default()
                .insert(allocation.invoice_id, allocation);
        }
        let loaded: Vec<Invoice> =
            load_keyed(&mut *conn, tables.get(0), "*", "id", sorted(load_invoices)).await?;
        for invoice in loaded {
            let key = (invoice.tenant_id, invoice.id);
            fold.stored_invoices.insert(key);
            fold.invoices.insert(key, invoice);
        }

        for (index, event, tenant_id, company_id, payload) in mine {
            let at = At {
                tenant_id,
                company_id,
                event,
            };
            fold.apply(&at, payload)
                .map_err(|e| ApplyError::at(index, e))?;
        }
        fold.write(conn, tables).await?;
        Ok(())
    }
}

impl Fold {
    /// Writes the folded rows: per table, one statement for each of insert, update, delete
    /// that has rows.
    async fn write(self, conn: &mut PgConnection, tables: &Tables) -> Result<(), sqlx::Error> {
        let (invoices, payments, allocations, credit_notes, entries) = (
            tables.get(0),
            tables.get(1),
            tables.get(2),
            tables.get(3),
            tables.get(4),
        );

        // Invoices and payments: new ones inserted (created twice fails on the key), the
        // others updated through the primary key.
        let (mut inserted, mut updated) = (InvoiceColumns::default(), InvoiceColumns::default());
        for (key, invoice) in self.invoices {
            if self.stored_invoices.contains(&key) {
                updated.push(invoice);
            } else {
                inserted.push(invoice);
            }
        }
        if !inserted.is_empty() {
            let sql = InvoiceColumns::insert_sql(invoices);
            inserted.bind(sqlx::query(&sql)).execute(&mut *conn).await?;
        }
        if !updated.is_empty() {
            let sql = InvoiceColumns::upsert_sql(invoices, &["tenant_id", "id"]);
            updated.bind(sqlx::query(&sql)).execute(&mut *conn).await?;
        }
        let (mut inserted, mut updated) = (PaymentColumns::default(), PaymentColumns::default());
        for (key, payment) in self.payments {
            if self.stored_payments.contains(&key) {
                updated.push(payment);
            } else {
                inserted.push(payment);
            }
        }
        if !inserted.is_empty() {
            let sql = PaymentColumns::insert_sql(payments);
            inserted.bind(sqlx::query(&sql)).execute(&mut *conn).await?;
        }
        if !updated.is_empty() {
            let sql = PaymentColumns::upsert_sql(payments, &["tenant_id", "id"]);
            updated.bind(sqlx::query(&sql)).execute(&mut *conn).await?;
        }

        // Allocations the batch touched: gone ones deleted, the others upserted.
        let mut current = self.allocations;
        let mut gone = (Vec::new(), Vec::new(), Vec::new());
        let mut kept = AllocationColumns::default();
        let mut touched: Vec<AllocationKey> = self.touched_allocations.into_iter().collect();
        touched.sort_unstable();
        for (tenant_id, payment_id, invoice_id) in touched {
            match current
                .get_mut(&(tenant_id, payment_id))
                .and_then(|of_payment| of_payment.remove(&invoice_id))
            {
                Some(allocation) => kept.push(allocation),
                None if self
                    .stored_allocations
                    .contains(&(tenant_id, payment_id, invoice_id)) =>
                {
                    gone.0.push(tenant_id);
                    gone.1.push(payment_id);
                    gone.2.push(invoice_id);
                }
                None => {}
            }
        }
        if !gone.0.is_empty() {
            sqlx::query(&format!(
                "DELETE FROM {allocations} a
                  USING unnest($1::uuid[], $2::uuid[], $3::uuid[])
                        AS k(tenant_id, payment_id, invoice_id)
                  WHERE a.tenant_id = k.tenant_id AND a.payment_id = k.payment_id
                    AND a.invoice_id = k.invoice_id"
            ))
            .bind(gone.0)
            .bind(gone.1)
            .bind(gone.2)
            .execute(&mut *conn)
            .await?;
        }
        if !kept.is_empty() {
            let sql = AllocationColumns::upsert_sql(
                allocations,
                &["tenant_id", "payment_id", "invoice_id"],
            );
            kept.bind(sqlx::query(&sql)).execute(&mut *conn).await?;
        }

        let mut notes = CreditNoteColumns::default();
        for note in self.credit_notes {
            notes.push(note);
        }
        if !notes.is_empty() {
            let sql = CreditNoteColumns::insert_sql(credit_notes);
            notes.bind(sqlx::query(&sql)).execute(&mut *conn).await?;
        }
        let mut rows = EntryColumns::default();
        for entry in self.entries {
            rows.push(entry);
        }
        if !rows.is_empty() {
            let sql = EntryColumns::insert_sql(entries);
            rows.bind(sqlx::query(&sql)).execute(&mut *conn).await?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Queries. Every one takes the tenant first and reads only its rows.
// ---------------------------------------------------------------------------------------

/// One invoice as lists and its page show it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct InvoiceRow {
    pub id: Uuid,
    pub company_id: Uuid,
    /// The company's current name ('' while the companies read model lags).
    pub company_name: String,
    /// None for a draft.
    pub number: Option<i64>,
    /// draft, issued, partially_paid, paid or void.
    pub status: String,
    pub issue_date: Option<NaiveDate>,
    pub due_date: Option<NaiveDate>,
    #[serde(with = "rust_decimal::serde::str")]
    pub subtotal: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub tax: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    /// Allocated from payments.
    #[serde(with = "rust_decimal::serde::str")]
    pub paid: Decimal,
    /// Credited by credit notes.
    #[serde(with = "rust_decimal::serde::str")]
    pub credited: Decimal,
    /// What is still owed (0 for drafts and void invoices).
    #[serde(with = "rust_decimal::serde::str")]
    pub balance: Decimal,
    pub line_count: i32,
    /// The contract period it bills, if any.
    pub period_start: Option<NaiveDate>,
    pub period_end: Option<NaiveDate>,
    /// Overdue reminders due so far.
    pub reminders: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl InvoiceRow {
    fn normalized(mut self) -> Self {
        for value in [
            &mut self.subtotal,
            &mut self.tax,
            &mut self.total,
            &mut self.paid,
            &mut self.credited,
            &mut self.balance,
        ] {
            *value = money(*value);
        }
        self
    }

    /// The keyset cursor after this row (pass it as `InvoiceFilter::before` for the next page).
    pub fn cursor(&self) -> InvoiceCursor {
        InvoiceCursor {
            issue_date: self.issue_date,
            number: self.number,
            id: self.id,
        }
    }
}

/// A place in the invoice list (newest first): drafts (no date) come before every issued
/// invoice, then by issue date, number and id, each descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvoiceCursor {
    pub issue_date: Option<NaiveDate>,
    pub number: Option<i64>,
    pub id: Uuid,
}

/// Which invoices a list shows. Every field narrows; the default shows all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoiceFilter {
    pub company_id: Option<Uuid>,
    /// draft, issued, partially_paid, paid, void, or `open` (anything still owed).
    pub status: Option<String>,
    /// Only invoices after this one in list order (keyset paging).
    pub before: Option<InvoiceCursor>,
}

/// The list order as a tuple of expressions, descending (drafts, without date or number,
/// first).
const INVOICE_KEY: &str =
    "(coalesce(i.issue_date, 'infinity'::date), coalesce(i.number, 9223372036854775807), i.id)";
const INVOICE_ORDER: &str = "coalesce(i.issue_date, 'infinity'::date) DESC, \
     coalesce(i.number, 9223372036854775807) DESC, i.id DESC";

fn select_invoices() -> &'static str {
    "SELECT i.id, i.company_id, coalesce(c.name, '') AS company_name, i.number, i.status,
            i.issue_date, i.due_date, i.subtotal, i.tax, i.total, i.paid, i.credited,
            i.balance, i.line_count, i.period_start, i.period_end, i.reminders, i.created_at,
            i.updated_at
       FROM invoices i
       LEFT JOIN companies c ON c.tenant_id = i.tenant_id AND c.id = i.company_id"
}

/// Invoices matching `filter`, newest first (drafts first), at most `limit`.
pub async fn list_invoices<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    filter: &InvoiceFilter,
    limit: i64,
) -> Result<Vec<InvoiceRow>, sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new(select_invoices());
    query.push(" WHERE i.tenant_id = ").push_bind(tenant_id);
    if let Some(company_id) = filter.company_id {
        query.push(" AND i.company_id = ").push_bind(company_id);
    }
    match filter.status.as_deref() {
        None | Some("") => {}
        Some("open") => {
            query.push(" AND i.balance <> 0");
        }
        Some(status) => {
            query.push(" AND i.status = ").push_bind(status.to_owned());
        }
    }
    if let Some(before) = filter.before {
        query
            .push(format!(" AND {INVOICE_KEY} < (coalesce("))
            .push_bind(before.issue_date)
            .push("::date, 'infinity'::date), coalesce(")
            .push_bind(before.number)
            .push("::int8, 9223372036854775807), ")
            .push_bind(before.id)
            .push(")");
    }
    query
        .push(format!(" ORDER BY {INVOICE_ORDER} LIMIT "))
        .push_bind(limit);
    let rows: Vec<InvoiceRow> = query.build_query_as().fetch_all(db).await?;
    Ok(rows.into_iter().map(InvoiceRow::normalized).collect())
}

/// One invoice of a tenant (`None` for another tenant's).
pub async fn get_invoice<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    invoice_id: Uuid,
) -> Result<Option<InvoiceRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{} WHERE i.tenant_id = $1 AND i.id = $2",
        select_invoices()
    ))
    .bind(tenant_id)
    .bind(invoice_id)
    .fetch_optional(db)
    .await
    .map(|row: Option<InvoiceRow>| row.map(InvoiceRow::normalized))
}

/// What of a payment went to an invoice, with the payment's date, method and reference.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct AllocationRow {
    pub payment_id: Uuid,
    pub invoice_id: Uuid,
    /// The invoice's number (None while a draft, which is never paid).
    pub invoice_number: Option<i64>,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    /// When the money met the invoice (the later of the payment's and the invoice's dates).
    pub on_date: NaiveDate,
    pub received_on: NaiveDate,
    pub method: String,
    pub reference: String,
}

impl AllocationRow {
    fn normalized(mut self) -> Self {
        self.amount = money(self.amount);
        self
    }
}

fn select_allocations() -> &'static str {
    "SELECT a.payment_id, a.invoice_id, i.number AS invoice_number, a.amount, a.on_date,
            p.received_on, p.method, p.reference
       FROM payment_allocations a
       JOIN payments p ON p.tenant_id = a.tenant_id AND p.id = a.payment_id
       LEFT JOIN invoices i ON i.tenant_id = a.tenant_id AND i.id = a.invoice_id"
}

/// The payments allocated to an invoice, oldest first.
pub async fn invoice_payments<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    invoice_id: Uuid,
) -> Result<Vec<AllocationRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{} WHERE a.tenant_id = $1 AND a.invoice_id = $2
          ORDER BY a.on_date, p.received_on, a.payment_id",
        select_allocations()
    ))
    .bind(tenant_id)
    .bind(invoice_id)
    .fetch_all(db)
    .await
    .map(|rows: Vec<AllocationRow>| rows.into_iter().map(AllocationRow::normalized).collect())
}

/// A credit note.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct CreditNoteRow {
    pub id: Uuid,
    pub company_id: Uuid,
    pub invoice_id: Uuid,
    pub number: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub date: NaiveDate,
    pub reason: String,
}

/// The credit notes on an invoice, oldest first.
pub async fn credit_notes_of<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    invoice_id: Uuid,
) -> Result<Vec<CreditNoteRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, company_id, invoice_id, number, amount, date, reason FROM credit_notes
          WHERE tenant_id = $1 AND invoice_id = $2
          ORDER BY date, number, id",
    )
    .bind(tenant_id)
    .bind(invoice_id)
    .fetch_all(db)
    .await
    .map(|rows: Vec<CreditNoteRow>| {
        rows.into_iter()
            .map(|mut row| {
                row.amount = money(row.amount);
                row
            })
            .collect()
    })
}

/// One payment.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct PaymentRow {
    pub id: Uuid,
    pub company_id: Uuid,
    /// The company's current name ('' while the companies read model lags).
    pub company_name: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub received_on: NaiveDate,
    /// check, cash, bank_transfer or card.
    pub method: String,
    pub reference: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub allocated: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub refunded: Decimal,
    /// Still credit (0 once reversed).
    #[serde(with = "rust_decimal::serde::str")]
    pub unapplied: Decimal,
    /// Bounced: counts as never received.
    pub reversed: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl PaymentRow {
    fn normalized(mut self) -> Self {
        for value in [
            &mut self.amount,
            &mut self.allocated,
            &mut self.refunded,
            &mut self.unapplied,
        ] {
            *value = money(*value);
        }
        self
    }
}

fn select_payments() -> &'static str {
    "SELECT p.id, p.company_id, coalesce(c.name, '') AS company_name, p.amount, p.received_on,
            p.method, p.reference, p.allocated, p.refunded, p.unapplied, p.reversed,
            p.created_at, p.updated_at
       FROM payments p
       LEFT JOIN companies c ON c.tenant_id = p.tenant_id AND c.id = p.company_id"
}

/// Payments (of one company, or all), newest first, at most `limit`.
pub async fn list_payments<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    company_id: Option<Uuid>,
    limit: i64,
) -> Result<Vec<PaymentRow>, sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new(select_payments());
    query.push(" WHERE p.tenant_id = ").push_bind(tenant_id);
    if let Some(company_id) = company_id {
        query.push(" AND p.company_id = ").push_bind(company_id);
    }
    query
        .push(" ORDER BY p.received_on DESC, p.created_at DESC, p.id DESC LIMIT ")
        .push_bind(limit);
    let rows: Vec<PaymentRow> = query.build_query_as().fetch_all(db).await?;
    Ok(rows.into_iter().map(PaymentRow::normalized).collect())
}

/// A payment with where it went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaymentDetail {
    pub payment: PaymentRow,
    /// Its allocations, by invoice date.
    pub allocations: Vec<AllocationRow>,
}

/// One payment of a tenant with its allocations (`None` for another tenant's).
pub async fn get_payment(
    pool: &PgPool,
    tenant_id: Uuid,
    payment_id: Uuid,
) -> Result<Option<PaymentDetail>, sqlx::Error> {
    let payment: Option<PaymentRow> = sqlx::query_as(&format!(
        "{} WHERE p.tenant_id = $1 AND p.id = $2",
        select_payments()
    ))
    .bind(tenant_id)
    .bind(payment_id)
    .fetch_optional(pool)
    .await?;
    let Some(payment) = payment else {
        return Ok(None);
    };
    let allocations: Vec<AllocationRow> = sqlx::query_as(&format!(
        "{} WHERE a.tenant_id = $1 AND a.payment_id = $2
          ORDER BY i.issue_date, i.number, a.invoice_id",
        select_allocations()
    ))
    .bind(tenant_id)
    .bind(payment_id)
    .fetch_all(pool)
    .await?;
    Ok(Some(PaymentDetail {
        payment: payment.normalized(),
        allocations: allocations
            .into_iter()
            .map(AllocationRow::normalized)
            .collect(),
    }))
}

/// What a company owes today.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompanyBalance {
    /// The balances of its open invoices.
    #[serde(with = "rust_decimal::serde::str")]
    pub open: Decimal,
    /// Payments not applied to any invoice.
    #[serde(with = "rust_decimal::serde::str")]
    pub unapplied_credit: Decimal,
    /// `open − unapplied_credit` (negative: the company is in credit).
    #[serde(with = "rust_decimal::serde::str")]
    pub balance: Decimal,
}

/// A company's balance from its open invoices and unapplied payments.
pub async fn company_balance<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    company_id: Uuid,
) -> Result<CompanyBalance, sqlx::Error> {
    let (open, credit): (Decimal, Decimal) = sqlx::query_as(
        "SELECT (SELECT coalesce(sum(balance), 0) FROM invoices
                  WHERE tenant_id = $1 AND company_id = $2 AND balance <> 0),
                (SELECT coalesce(sum(unapplied), 0) FROM payments
                  WHERE tenant_id = $1 AND company_id = $2 AND unapplied <> 0)",
    )
    .bind(tenant_id)
    .bind(company_id)
    .fetch_one(db)
    .await?;
    Ok(CompanyBalance {
        open: money(open),
        unapplied_credit: money(credit),
        balance: money(open - credit),
    })
}

/// The amounts of one line of the aging report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AgingAmounts {
    /// Not yet due (due on the report's date or later).
    #[serde(with = "rust_decimal::serde::str")]
    pub current: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub days_1_30: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub days_31_60: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub days_61_90: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub days_over_90: Decimal,
    /// The buckets minus the unapplied credit: the net balance.
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub unapplied_credit: Decimal,
}

impl AgingAmounts {
    fn zero() -> Self {
        let zero = money(Decimal::ZERO);
        Self {
            current: zero,
            days_1_30: zero,
            days_31_60: zero,
            days_61_90: zero,
            days_over_90: zero,
            total: zero,
            unapplied_credit: zero,
        }
    }

    /// Adds what an invoice `days_past_due` still owes.
    fn owe(&mut self, days_past_due: i64, amount: Decimal) {
        let bucket = match days_past_due {
            ..=0 => &mut self.current,
            1..=30 => &mut self.days_1_30,
            31..=60 => &mut self.days_31_60,
            61..=90 => &mut self.days_61_90,
            _ => &mut self.days_over_90,
        };
        *bucket += amount;
        self.total += amount;
    }

    fn credit(&mut self, amount: Decimal) {
        self.unapplied_credit += amount;
        self.total -= amount;
    }

    fn add(&mut self, other: &AgingAmounts) {
        self.current += other.current;
        self.days_1_30 += other.days_1_30;
        self.days_31_60 += other.days_31_60;
        self.days_61_90 += other.days_61_90;
        self.days_over_90 += other.days_over_90;
        self.total += other.total;
        self.unapplied_credit += other.unapplied_credit;
    }

    fn is_zero(&self) -> bool {
        [
            self.current,
            self.days_1_30,
            self.days_31_60,
            self.days_61_90,
            self.days_over_90,
            self.unapplied_credit,
        ]
        .iter()
        .all(Decimal::is_zero)
    }
}

/// One customer of the aging report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgingRow {
    pub company_id: Uuid,
    /// The company's current name ('' while the companies read model lags).
    pub company_name: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub current: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub days_1_30: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub days_31_60: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub days_61_90: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub days_over_90: Decimal,
    /// The buckets minus the unapplied credit: the company's net balance.
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub unapplied_credit: Decimal,
}

/// The aging report as of a date: what each customer owed then, by days past due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Aging {
    pub as_of: NaiveDate,
    /// Customers owing or owed anything, by name.
    pub customers: Vec<AgingRow>,
    /// The sums of every column.
    pub totals: AgingAmounts,
}

/// What a company owed at a date: `(company, Some(due date), outstanding)` per invoice,
/// `(company, None, credit)` per credit.
type Owed = Vec<(Uuid, Option<NaiveDate>, Decimal)>;

/// The aging report as of `as_of`. When nothing of the tenant is dated after `as_of` (the
/// usual "today" report) it reads the running balances (`aging_from_balances`), else it takes
/// the movements dated after `as_of` back off them (`aging_before_later`); both give the
/// report that summing the dated movements up to `as_of` gives (`aging_from_entries`).
pub async fn aging(pool: &PgPool, tenant_id: Uuid, as_of: NaiveDate) -> Result<Aging, sqlx::Error> {
    let later: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM ar_entries WHERE tenant_id = $1 AND on_date > $2)",
    )
    .bind(tenant_id)
    .bind(as_of)
    .fetch_one(pool)
    .await?;
    if later {
        aging_before_later(pool, tenant_id, as_of).await
    } else {
        aging_from_balances(pool, tenant_id, as_of).await
    }
}

/// The aging report from today's balances (`invoices.balance`, `payments.unapplied`): right
/// for any `as_of` on or after the tenant's last dated movement.
pub async fn aging_from_balances(
    pool: &PgPool,
    tenant_id: Uuid,
    as_of: NaiveDate,
) -> Result<Aging, sqlx::Error> {
    let owed: Owed = sqlx::query_as(
        "SELECT company_id, due_date, balance FROM invoices
          WHERE tenant_id = $1 AND balance <> 0
         UNION ALL
         SELECT company_id, NULL::date, unapplied FROM payments
          WHERE tenant_id = $1 AND unapplied <> 0",
    )
    .bind(tenant_id)
    .fetch_all(pool)
    .await?;
    aging_of(pool, tenant_id, as_of, owed).await
}

/// The aging report as of a past date from today's balances less the movements dated after
/// it: what an invoice owed then is its balance now less what moved it since (its movements
/// add up to its balance), and the same for a company's unapplied credit. It reads the open
/// invoices and the movements after `as_of`, so a month-end report reads one month of
/// movements, where `aging_from_entries` reads every movement before it. Any date.
pub async fn aging_before_later(
    pool: &PgPool,
    tenant_id: Uuid,
    as_of: NaiveDate,
) -> Result<Aging, sqlx::Error> {
    // An invoice whose "issued" movement is dated after `as_of` was not issued yet: it is left
    // out without reading it. The settled ones that moved since are read one by one (the
    // lateral probe; a hash join would read every invoice). JIT is off for this statement:
    // the probes' estimated cost switches it on, and compiling took longer (370 ms at 500,000
    // invoices) than running.
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL jit = off").execute(&mut *tx).await?;
    let owed: Owed = sqlx::query_as(
        "WITH later AS (
             SELECT company_id, invoice_id, sum(amount) AS amount,
                    bool_or(kind = 'issued') AS issued_later
               FROM ar_entries
              WHERE tenant_id = $1 AND on_date > $2
              GROUP BY company_id, invoice_id)
         SELECT i.company_id, i.due_date, i.balance - coalesce(l.amount, 0)
           FROM invoices i
           LEFT JOIN later l ON l.invoice_id = i.id
          WHERE i.tenant_id = $1 AND i.balance <> 0 AND i.issue_date <= $2
            AND i.balance <> coalesce(l.amount, 0)
         UNION ALL
         SELECT i.company_id, i.due_date, -l.amount
           FROM later l
          CROSS JOIN LATERAL (
                SELECT company_id, due_date FROM invoices i
                 WHERE i.tenant_id = $1 AND i.id = l.invoice_id
                   AND i.balance = 0 AND i.issue_date <= $2
                OFFSET 0) i
          WHERE l.invoice_id IS NOT NULL AND NOT l.issued_later AND l.amount <> 0
         UNION ALL
         SELECT company_id, NULL::date, sum(amount) FROM (
             SELECT company_id, unapplied AS amount FROM payments
              WHERE tenant_id = $1 AND unapplied <> 0
             UNION ALL
             SELECT company_id, -amount FROM later WHERE invoice_id IS NULL) credit
          GROUP BY company_id
         HAVING sum(amount) <> 0",
    )
    .bind(tenant_id)
    .bind(as_of)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    aging_of(pool, tenant_id, as_of, owed).await
}

/// The aging report from the dated movements up to `as_of` (any date): the definition the
/// other two are checked against (tests, `replay-tools bench`).
pub async fn aging_from_entries(
    pool: &PgPool,
    tenant_id: Uuid,
    as_of: NaiveDate,
) -> Result<Aging, sqlx::Error> {
    let owed: Owed = sqlx::query_as(
        "SELECT e.company_id, i.due_date, e.amount
           FROM (SELECT company_id, invoice_id, sum(amount) AS amount FROM ar_entries
                  WHERE tenant_id = $1 AND on_date <= $2 AND invoice_id IS NOT NULL
                  GROUP BY company_id, invoice_id) e
           JOIN invoices i ON i.tenant_id = $1 AND i.id = e.invoice_id
          WHERE e.amount <> 0 AND i.issue_date <= $2
         UNION ALL
         SELECT company_id, NULL::date, sum(amount) FROM ar_entries
          WHERE tenant_id = $1 AND on_date <= $2 AND invoice_id IS NULL
          GROUP BY company_id
         HAVING sum(amount) <> 0",
    )
    .bind(tenant_id)
    .bind(as_of)
    .fetch_all(pool)
    .await?;
    aging_of(pool, tenant_id, as_of, owed).await
}

/// Puts what was owed into buckets per company, with the companies' names.
async fn aging_of(
    pool: &PgPool,
    tenant_id: Uuid,
    as_of: NaiveDate,
    owed: Owed,
) -> Result<Aging, sqlx::Error> {
    let mut by_company: HashMap<Uuid, AgingAmounts> = HashMap::new();
    for (company_id, due_date, amount) in owed {
        let amounts = by_company
            .entry(company_id)
            .or_insert_with(AgingAmounts::zero);
        match due_date {
            Some(due) => amounts.owe((as_of - due).num_days(), amount),
            None => amounts.credit(amount),
        }
    }
    by_company.retain(|_, amounts| !amounts.is_zero());
    let ids: Vec<Uuid> = by_company.keys().copied().collect();
    let names: HashMap<Uuid, String> = if ids.is_empty() {
        HashMap::new()
    } else {
        sqlx::query_as::<_, (Uuid, String)>(
            "SELECT id, name FROM companies WHERE tenant_id = $1 AND id = ANY($2)",
        )
        .bind(tenant_id)
        .bind(&ids)
        .fetch_all(pool)
        .await?
        .into_iter()
        .collect()
    };
    let mut totals = AgingAmounts::zero();
    let mut customers: Vec<AgingRow> = by_company
        .into_iter()
        .map(|(company_id, a)| {
            totals.add(&a);
            AgingRow {
                company_id,
                company_name: names.get(&company_id).cloned().unwrap_or_default(),
                current: money(a.current),
                days_1_30: money(a.days_1_30),
                days_31_60: money(a.days_31_60),
                days_61_90: money(a.days_61_90),
                days_over_90: money(a.days_over_90),
                total: money(a.total),
                unapplied_credit: money(a.unapplied_credit),
            }
        })
        .collect();
    customers.sort_by(|a, b| {
        (a.company_name.to_lowercase(), a.company_id)
            .cmp(&(b.company_name.to_lowercase(), b.company_id))
    });
    for value in [
        &mut totals.current,
        &mut totals.days_1_30,
        &mut totals.days_31_60,
        &mut totals.days_61_90,
        &mut totals.days_over_90,
        &mut totals.total,
        &mut totals.unapplied_credit,
    ] {
        *value = money(*value);
    }
    Ok(Aging {
        as_of,
        customers,
        totals,
    })
}

/// One movement of a customer statement: what changed the balance, and the balance after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementLine {
    pub date: NaiveDate,
    /// issued, credit_note, voided, received, refunded or reversed.
    pub kind: String,
    pub description: String,
    pub invoice_id: Option<Uuid>,
    pub payment_id: Option<Uuid>,
    /// What the customer owes more (an invoice, a refund, a bounced payment).
    #[serde(with = "rust_decimal::serde::str")]
    pub debit: Decimal,
    /// What the customer owes less (a payment, a credit note, a void).
    #[serde(with = "rust_decimal::serde::str")]
    pub credit: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub balance: Decimal,
}

/// A customer statement for `from`..=`to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    pub company_id: Uuid,
    pub company_name: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The balance at the end of the day before `from`.
    #[serde(with = "rust_decimal::serde::str")]
    pub opening_balance: Decimal,
    /// The movements in the period, by date, as they happened. Allocations of payments to
    /// invoices move nothing and are not listed.
    pub lines: Vec<StatementLine>,
    /// The balance at the end of `to`.
    #[serde(with = "rust_decimal::serde::str")]
    pub closing_balance: Decimal,
}

#[derive(sqlx::FromRow)]
struct Movement {
    on_date: NaiveDate,
    kind: String,
    net: Decimal,
    invoice_id: Option<Uuid>,
    payment_id: Option<Uuid>,
    invoice_number: Option<i64>,
    due_date: Option<NaiveDate>,
    method: Option<String>,
    reference: Option<String>,
}

impl Movement {
    fn description(&self) -> String {
        let invoice = match (self.invoice_number, self.invoice_id) {
            (Some(n), _) => format!("invoice {n}"),
            (None, Some(id)) => format!("invoice {}", short_id(id)),
            (None, None) => "invoice".to_owned(),
        };
        let payment = {
            let method = self.method.as_deref().unwrap_or("").replace('_', " ");
            let reference = self.reference.as_deref().unwrap_or("").trim();
            match (method.is_empty(), reference.is_empty()) {
                (true, true) => String::new(),
                (false, true) => format!(" ({method})"),
                (true, false) => format!(" ({reference})"),
                (false, false) => format!(" ({method} {reference})"),
            }
        };
        match self.kind.as_str() {
            "issued" => match self.due_date {
                Some(due) => format!("{}, due {due}", capitalized(&invoice)),
                None => capitalized(&invoice),
            },
            "credit_note" => format!("Credit note on {invoice}"),
            "voided" => format!("{} voided", capitalized(&invoice)),
            "received" => format!("Payment{payment}"),
            "refunded" => format!("Refund of payment{payment}"),
            "reversed" => format!("Payment{payment} reversed"),
            "allocated" => format!("Payment applied to {invoice}"),
            "unapplied" => format!("Payment taken off {invoice}"),
            other => crate::history::humanize(other),
        }
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The first 8 hex digits of an id (how an invoice without its number is named).
pub fn short_id(id: Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}

/// The net effect of an entry on what the company owes: invoice entries as they are, credit
/// entries negated.
const NET: &str = "CASE WHEN e.invoice_id IS NULL THEN -e.amount ELSE e.amount END";

/// A customer statement: the balance on the day before `from`, then every movement up to
/// `to` with the running balance.
pub async fn statement(
    pool: &PgPool,
    tenant_id: Uuid,
    company_id: Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Statement, sqlx::Error> {
    let opening: Decimal = sqlx::query_scalar(&format!(
        "SELECT coalesce(sum({NET}), 0) FROM ar_entries e
          WHERE e.tenant_id = $1 AND e.company_id = $2 AND e.on_date < $3"
    ))
    .bind(tenant_id)
    .bind(company_id)
    .bind(from)
    .fetch_one(pool)
    .await?;
    // One line per event (a reversal's entries together); allocations net to nothing.
    let movements: Vec<Movement> = sqlx::query_as(&format!(
        "SELECT m.on_date, m.kind, m.net, m.invoice_id, m.payment_id,
                i.number AS invoice_number, i.due_date, p.method, p.reference
           FROM (SELECT e.on_date, e.position, e.kind, sum({NET}) AS net,
                        (array_agg(e.invoice_id ORDER BY e.invoice_id)
                           FILTER (WHERE e.invoice_id IS NOT NULL))[1] AS invoice_id,
                        (array_agg(e.payment_id ORDER BY e.payment_id)
                           FILTER (WHERE e.payment_id IS NOT NULL))[1] AS payment_id
                   FROM ar_entries e
                  WHERE e.tenant_id = $1 AND e.company_id = $2
                    AND e.on_date >= $3 AND e.on_date <= $4
                  GROUP BY e.on_date, e.position, e.kind
                 HAVING sum({NET}) <> 0) m
           LEFT JOIN invoices i ON i.tenant_id = $1 AND i.id = m.invoice_id
           LEFT JOIN payments p ON p.tenant_id = $1 AND p.id = m.payment_id
          ORDER BY m.on_date, m.position, m.kind"
    ))
    .bind(tenant_id)
    .bind(company_id)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let company_name: Option<String> =
        sqlx::query_scalar("SELECT name FROM companies WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(company_id)
            .fetch_optional(pool)
            .await?;
    let opening_balance = money(opening);
    let mut balance = opening_balance;
    let lines = movements
        .into_iter()
        .map(|m| {
            balance += m.net;
            let zero = money(Decimal::ZERO);
            let (debit, credit) = if m.net > Decimal::ZERO {
                (money(m.net), zero)
            } else {
                (zero, money(-m.net))
            };
            StatementLine {
                date: m.on_date,
                kind: m.kind.clone(),
                description: m.description(),
                invoice_id: m.invoice_id,
                payment_id: m.payment_id,
                debit,
                credit,
                balance: money(balance),
            }
        })
        .collect();
    Ok(Statement {
        company_id,
        company_name: company_name.unwrap_or_default(),
        from,
        to,
        opening_balance,
        lines,
        closing_balance: money(balance),
    })
}
