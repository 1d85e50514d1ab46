//! The `work_orders` read model (issue 5): work orders for the board, the lists and the API;
//! their time entries (billing, contract hours), running timers and status links.
//!
//! A batch is folded in memory, like `companies` and `search` do it: the rows of the orders
//! it touches without opening them (and of the time entries and links it removes or changes)
//! are loaded with one statement per table, every event is applied to them in order, and the
//! results are written back with a few set-based statements per table: `INSERT ... SELECT
//! FROM unnest(...)` for new rows, the same with `ON CONFLICT DO UPDATE` for changed ones,
//! `DELETE ... USING unnest(...)`. A rebuild of 1,000,000 events must not cost one round trip
//! per event (docs/performance.md, "Work orders"). Rows are found by primary-key probes, never
//! by a join PostgreSQL may run as a hash join over the whole table. `sla_state` and
//! `sla_next_check_at` are generated columns (migration 0011): PostgreSQL derives them from
//! the SLA columns this projection writes, so no event can leave them stale, and they are
//! never written here.
//!
//! The ledger's `InvoiceIssued` events are read too: an invoice that bills a time entry
//! (`time/<entry id>` among its `bills`) sets the entry's `invoice_id`, so it leaves the
//! unbilled lists (entries logged in the batch get it in their row; stored ones are updated
//! with one statement per batch).
//!
//! What a statement per event used to check still fails the batch: an event for an order
//! with no row (or of another tenant) fails at that event; an order opened twice, a time
//! entry logged twice, a timer started twice or a reused link digest fails the batch's
//! writes, and the runner narrows the failure down to its event.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use commands::StoredAggregate;
use domain::asset::AssetDocument;
use domain::ledger::LedgerEvent;
// `round_money` rounds as a `numeric(14,2)` column stores a value (half away from zero, two
// places): the order's sums are rounded after every step, as the column did when each event
// was one `UPDATE`.
use domain::workorder::{
    round_money, Billing, Origin, Priority, Sla, SlaAlert, SlaTarget, Status, TimeEntry, WorkOrder,
    WorkOrderEvent,
};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, PgExecutor, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::keyed::{key_arrays, load_keyed, Key};
use crate::{ApplyError, Projection, StoredEvent, Tables};

pub struct WorkOrdersProjection;

pub(crate) fn decode(event: &StoredEvent) -> Result<WorkOrderEvent, String> {
    if event.event_version == "1" {
        serde_json::from_str(event.payload.get()).map_err(|e| e.to_string())
    } else {
        let serialized = event.to_serialized().map_err(|e| e.to_string())?;
        commands::store::decode(&commands::store::upcast(
            serialized,
            &WorkOrder::upcasters(),
        ))
    }
}

/// The statuses in which work remains (the filter value `open`), in lifecycle order.
pub const OPEN_STATUSES: [&str; 5] = [
    "new",
    "assigned",
    "in_progress",
    "waiting_on_customer",
    "reopened",
];

/// low 0, normal 1, high 2, urgent 3.
pub fn priority_rank(priority: Priority) -> i16 {
    match priority {
        Priority::Low => 0,
        Priority::Normal => 1,
        Priority::High => 2,
        Priority::Urgent => 3,
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

/// Minutes as an `integer` column holds them (targets are at most a year, entries a day).
fn minutes(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// Declares the rows of one table as one array per column, for `unnest`: `push` a row,
/// `unnest(first)` gives `unnest($first::type[], ...) AS u(column, ...)`, `select()` the
/// select list (`u.column`, or the given expression where a column travels as text), and
/// `bind` binds the arrays in that order.
macro_rules! column_arrays {
    (
        $name:ident from $row:ident: $row_type:ty {
            $($column:ident: $type:ty = $get:expr => $pg:literal $(as $select:literal)?,)*
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

            fn len(&self) -> usize {
                self.tenant_id.len()
            }

            fn columns() -> Vec<&'static str> {
                vec![$(stringify!($column)),*]
            }

            fn unnest(first: usize) -> String {
                let types: &[&str] = &[$($pg),*];
                let arrays: Vec<String> = types
                    .iter()
                    .enumerate()
                    .map(|(n, t)| format!("${}::{t}[]", first + n))
                    .collect();
                format!("unnest({}) AS u({})", arrays.join(", "), Self::columns().join(", "))
            }

            fn select() -> Vec<String> {
                vec![$({
                    #[allow(unused_mut, unused_assignments)]
                    let mut select = concat!("u.", stringify!($column)).to_owned();
                    $(select = $select.to_owned();)?
                    select
                }),*]
            }

            fn bind(self, query: PgQuery<'_>) -> PgQuery<'_> {
                $(let query = query.bind(self.$column);)*
                query
            }
        }
    };
}

/// An order's row as this projection writes it: every column but the generated ones.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Order {
    tenant_id: Uuid,
    id: Uuid,
    number: i64,
    company_id: Uuid,
    contact_id: Option<Uuid>,
    title: String,
    description: String,
    work_type: String,
    priority: String,
    priority_rank: i16,
    status: String,
    origin: String,
    assignee_id: Option<Uuid>,
    asset_ids: Vec<Uuid>,
    holds_assets: bool,
    opened_at: DateTime<Utc>,
    responded_at: Option<DateTime<Utc>>,
    resolved_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
    response_minutes: Option<i32>,
    resolution_minutes: Option<i32>,
    paused_minutes: i32,
    sla_paused_since: Option<DateTime<Utc>>,
    response_due_at: Option<DateTime<Utc>>,
    resolution_due_at: Option<DateTime<Utc>>,
    response_warn_at: Option<DateTime<Utc>>,
    resolution_warn_at: Option<DateTime<Utc>>,
    response_warned: bool,
    response_breached: bool,
    resolution_warned: bool,
    resolution_breached: bool,
    comments: i32,
    public_comments: i32,
    attachments: serde_json::Value,
    rating: Option<i16>,
    rating_comment: String,
    billable_minutes: i32,
    contract_minutes: i32,
    billable_amount: Decimal,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A `uuid[]` as PostgreSQL's text form (`{a,b}`): arrays of arrays must be rectangular, so
/// each row's ids travel as one text.
fn uuid_array_text(ids: &[Uuid]) -> String {
    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    format!("{{{}}}", ids.join(","))
}

column_arrays! {
    OrderColumns from row: Order {
        tenant_id: Uuid = row.tenant_id => "uuid",
        id: Uuid = row.id => "uuid",
        number: i64 = row.number => "int8",
        company_id: Uuid = row.company_id => "uuid",
        contact_id: Option<Uuid> = row.contact_id => "uuid",
        title: String = row.title => "text",
        description: String = row.description => "text",
        work_type: String = row.work_type => "text",
        priority: String = row.priority => "text",
        priority_rank: i16 = row.priority_rank => "int2",
        status: String = row.status => "text",
        origin: String = row.origin => "text",
        assignee_id: Option<Uuid> = row.assignee_id => "uuid",
        asset_ids: String = uuid_array_text(&row.asset_ids) => "text" as "u.asset_ids::uuid[]",
        holds_assets: bool = row.holds_assets => "bool",
        opened_at: DateTime<Utc> = row.opened_at => "timestamptz",
        responded_at: Option<DateTime<Utc>> = row.responded_at => "timestamptz",
        resolved_at: Option<DateTime<Utc>> = row.resolved_at => "timestamptz",
        closed_at: Option<DateTime<Utc>> = row.closed_at => "timestamptz",
        response_minutes: Option<i32> = row.response_minutes => "int4",
        resolution_minutes: Option<i32> = row.resolution_minutes => "int4",
        paused_minutes: i32 = row.paused_minutes => "int4",
        sla_paused_since: Option<DateTime<Utc>> = row.sla_paused_since => "timestamptz",
        response_due_at: Option<DateTime<Utc>> = row.response_due_at => "timestamptz",
        resolution_due_at: Option<DateTime<Utc>> = row.resolution_due_at => "timestamptz",
        response_warn_at: Option<DateTime<Utc>> = row.response_warn_at => "timestamptz",
        resolution_warn_at: Option<DateTime<Utc>> = row.resolution_warn_at => "timestamptz",
        response_warned: bool = row.response_warned => "bool",
        response_breached: bool = row.response_breached => "bool",
        resolution_warned: bool = row.resolution_warned => "bool",
        resolution_breached: bool = row.resolution_breached => "bool",
        comments: i32 = row.comments => "int4",
        public_comments: i32 = row.public_comments => "int4",
        attachments: String = row.attachments.to_string() => "text" as "u.attachments::jsonb",
        rating: Option<i16> = row.rating => "int2",
        rating_comment: String = row.rating_comment => "text",
        billable_minutes: i32 = row.billable_minutes => "int4",
        contract_minutes: i32 = row.contract_minutes => "int4",
        billable_amount: Decimal = row.billable_amount => "numeric",
        version: i64 = row.version => "int8",
        created_at: DateTime<Utc> = row.created_at => "timestamptz",
        updated_at: DateTime<Utc> = row.updated_at => "timestamptz",
    }
}

/// A time entry's row. `invoice_id` stays NULL until an issued invoice bills the entry.
#[derive(Debug, Clone)]
struct Entry {
    tenant_id: Uuid,
    id: Uuid,
    work_order_id: Uuid,
    company_id: Uuid,
    technician_id: Uuid,
    work_date: NaiveDate,
    minutes: i32,
    note: String,
    billing: &'static str,
    after_hours: bool,
    rate: Decimal,
    amount: Decimal,
    cost_rate: Decimal,
    cost: Decimal,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    invoice_id: Option<Uuid>,
    created_at: DateTime<Utc>,
}

column_arrays! {
    EntryColumns from row: Entry {
        tenant_id: Uuid = row.tenant_id => "uuid",
        id: Uuid = row.id => "uuid",
        work_order_id: Uuid = row.work_order_id => "uuid",
        company_id: Uuid = row.company_id => "uuid",
        technician_id: Uuid = row.technician_id => "uuid",
        work_date: NaiveDate = row.work_date => "date",
        minutes: i32 = row.minutes => "int4",
        note: String = row.note => "text",
        billing: &'static str = row.billing => "text",
        after_hours: bool = row.after_hours => "bool",
        rate: Decimal = row.rate => "numeric",
        amount: Decimal = row.amount => "numeric",
        cost_rate: Decimal = row.cost_rate => "numeric",
        cost: Decimal = row.cost => "numeric",
        started_at: Option<DateTime<Utc>> = row.started_at => "timestamptz",
        ended_at: Option<DateTime<Utc>> = row.ended_at => "timestamptz",
        invoice_id: Option<Uuid> = row.invoice_id => "uuid",
        created_at: DateTime<Utc> = row.created_at => "timestamptz",
    }
}

column_arrays! {
    LinkColumns from row: LinkRow {
        tenant_id: Uuid = row.tenant_id => "uuid",
        id: Uuid = row.id => "uuid",
        work_order_id: Uuid = row.work_order_id => "uuid",
        kind: String = row.kind => "text",
        token_digest: String = row.token_digest => "text",
        user_id: Option<Uuid> = row.user_id => "uuid",
        expires_at: DateTime<Utc> = row.expires_at => "timestamptz",
        max_uses: i32 = row.max_uses => "int4",
        uses: i32 = row.uses => "int4",
        revoked: bool = row.revoked => "bool",
        created_at: DateTime<Utc> = row.created_at => "timestamptz",
    }
}

/// What a time entry removed in a batch takes off its order's sums (as stored).
#[derive(Debug, Clone, sqlx::FromRow)]
struct StoredEntry {
    tenant_id: Uuid,
    id: Uuid,
    work_order_id: Uuid,
    billing: String,
    minutes: i32,
    amount: Decimal,
}

/// A timer touched by a batch.
#[derive(Debug, Default)]
struct TimerChange {
    /// The batch stops it before starting it (its row, if any, is deleted first).
    stopped_first: bool,
    /// Running at the end of the batch, since then.
    started_at: Option<DateTime<Utc>>,
}

/// A status link touched by a batch.
struct LinkChange {
    row: LinkRow,
    /// Issued in this batch (inserted), else changed (updated).
    issued: bool,
}

impl Order {
    /// The row of an order opened by `event` (`None` for any other event).
    fn opened((tenant_id, id): Key, event: &StoredEvent, payload: WorkOrderEvent) -> Option<Self> {
        let WorkOrderEvent::WorkOrderOpened {
            number,
            company_id,
            details,
            priority,
            origin,
            holds_assets,
            opened_at,
            sla,
        } = payload
        else {
            return None;
        };
        let mut order = Self {
            tenant_id,
            id,
            number: number as i64,
            company_id,
            contact_id: details.contact_id,
            title: details.title,
            description: details.description,
            work_type: details.work_type,
            priority: priority.as_str().to_owned(),
            priority_rank: priority_rank(priority),
            status: Status::New.as_str().to_owned(),
            origin: match origin {
                Origin::Staff => "staff",
                Origin::Customer => "customer",
            }
            .to_owned(),
            assignee_id: None,
            asset_ids: details.asset_ids,
            holds_assets,
            opened_at,
            responded_at: None,
            resolved_at: None,
            closed_at: None,
            response_minutes: None,
            resolution_minutes: None,
            paused_minutes: 0,
            sla_paused_since: None,
            response_due_at: None,
            resolution_due_at: None,
            response_warn_at: None,
            resolution_warn_at: None,
            response_warned: false,
            response_breached: false,
            resolution_warned: false,
            resolution_breached: false,
            comments: 0,
            public_comments: 0,
            attachments: serde_json::Value::Array(Vec::new()),
            rating: None,
            rating_comment: String::new(),
            billable_minutes: 0,
            contract_minutes: 0,
            billable_amount: Decimal::ZERO,
            version: event.sequence,
            created_at: event.recorded_at,
            updated_at: event.recorded_at,
        };
        order.set_sla(sla.as_ref());
        Some(order)
    }

    /// Every SLA column (`None`: no SLA, every column NULL or false).
    fn set_sla(&mut self, sla: Option<&Sla>) {
        let raised = |target, alert| sla.is_some_and(|s| s.was_raised(target, alert));
        self.response_warned = raised(SlaTarget::Response, SlaAlert::Warning);
        self.response_breached = raised(SlaTarget::Response, SlaAlert::Breach);
        self.resolution_warned = raised(SlaTarget::Resolution, SlaAlert::Warning);
        self.resolution_breached = raised(SlaTarget::Resolution, SlaAlert::Breach);
        self.response_minutes = sla.map(|s| minutes(s.response_minutes));
        self.resolution_minutes = sla.map(|s| minutes(s.resolution_minutes));
        self.paused_minutes = sla.map_or(0, |s| minutes(s.paused_minutes));
        self.sla_paused_since = sla.and_then(|s| s.paused_since);
        self.response_due_at = sla.map(|s| s.response_due_at);
        self.resolution_due_at = sla.map(|s| s.resolution_due_at);
        self.response_warn_at = sla.map(|s| s.response_warn_at);
        self.resolution_warn_at = sla.map(|s| s.resolution_warn_at);
    }

    /// Adds (`sign` 1) or takes off (`sign` -1) an entry's minutes and amount.
    fn count_entry(
        &mut self,
        billing: &str,
        entry_minutes: i32,
        amount: Decimal,
        sign: i32,
    ) -> Result<(), String> {
        let sum = |total: i32| {
            entry_minutes
                .checked_mul(sign)
                .and_then(|m| total.checked_add(m))
                .ok_or_else(|| format!("work order {}: minutes out of range", self.id))
        };
        if billing == Billing::Billable.as_str() {
            self.billable_minutes = sum(self.billable_minutes)?;
            self.billable_amount = round_money(self.billable_amount + amount * Decimal::from(sign));
        } else if billing == Billing::Contract.as_str() {
            self.contract_minutes = sum(self.contract_minutes)?;
        }
        Ok(())
    }
}

/// A batch folded in memory: the rows it ends with, and what to delete.
#[derive(Default)]
struct Fold {
    orders: HashMap<Key, Order>,
    /// Orders whose row existed before the batch (updated; the others are inserted).
    stored_orders: HashSet<Key>,
    /// Time entries logged in this batch, in order (`None`: removed again).
    entries: HashMap<Key, Option<Entry>>,
    entry_order: Vec<Key>,
    /// Entries stored before the batch that it removes (loaded: their sums come off).
    stored_entries: HashMap<Key, StoredEntry>,
    deleted_entries: Vec<Key>,
    timers: HashMap<(Uuid, Uuid, Uuid), TimerChange>,
    links: HashMap<Key, LinkChange>,
    /// Entries stored before the batch that an invoice of the batch bills (the invoice), or
    /// a void returns (`None`).
    billed: HashMap<Key, Option<Uuid>>,
}

impl Fold {
    fn stop_timer(&mut self, tenant_id: Uuid, order: Uuid, technician_id: Uuid) {
        let timer = self
            .timers
            .entry((tenant_id, order, technician_id))
            .or_insert_with(|| TimerChange {
                stopped_first: true,
                started_at: None,
            });
        timer.started_at = None;
    }

    /// An issued invoice bills a time entry (or a void returns it, `None`): in its row when
    /// the batch logged it (and did not remove it again), else in the stored row.
    fn bill(&mut self, tenant_id: Uuid, entry_id: Uuid, invoice_id: Option<Uuid>) {
        let key = (tenant_id, entry_id);
        match self.entries.get_mut(&key) {
            Some(Some(row)) => row.invoice_id = invoice_id,
            Some(None) => {}
            None => {
                self.billed.insert(key, invoice_id);
            }
        }
    }

    /// Applies one event to the folded rows.
    fn apply(
        &mut self,
        tenant_id: Uuid,
        id: Uuid,
        event: &StoredEvent,
        payload: WorkOrderEvent,
    ) -> Result<(), String> {
        let key = (tenant_id, id);
        if matches!(payload, WorkOrderEvent::WorkOrderOpened { .. }) {
            if self.orders.contains_key(&key) {
                return Err(format!("work order {id} opened twice"));
            }
            if let Some(order) = Order::opened(key, event, payload) {
                self.orders.insert(key, order);
            }
            return Ok(());
        }
        let Some(order) = self.orders.get_mut(&key) else {
            return Err(format!(
                "{} for work order {id}, which has no row",
                event.event_type
            ));
        };
        order.version = event.sequence;
        order.updated_at = event.recorded_at;
        match payload {
            WorkOrderEvent::WorkOrderOpened { .. } => unreachable!("handled above"),
            WorkOrderEvent::WorkOrderChanged { details } => {
                order.contact_id = details.contact_id;
                order.title = details.title;
                order.description = details.description;
                order.work_type = details.work_type;
                order.asset_ids = details.asset_ids;
            }
            WorkOrderEvent::WorkOrderPriorityChanged { priority, sla, .. } => {
                order.priority = priority.as_str().to_owned();
                order.priority_rank = priority_rank(priority);
                // No policy for the new priority: the order keeps the SLA it has.
                if let Some(sla) = sla {
                    order.set_sla(Some(&sla));
                }
            }
            WorkOrderEvent::WorkOrderAssigned { assignee_id, .. } => {
                order.assignee_id = assignee_id;
            }
            WorkOrderEvent::WorkOrderStatusChanged { status, at, .. } => {
                let reopened = status == Status::Reopened;
                if matches!(status, Status::Resolved | Status::NoFix) {
                    order.resolved_at = Some(at);
                } else if reopened {
                    order.resolved_at = None;
                }
                if status.is_final() {
                    order.closed_at = Some(at);
                } else if reopened {
                    order.closed_at = None;
                }
                order.status = status.as_str().to_owned();
            }
            WorkOrderEvent::WorkOrderSlaPaused { at } => {
                order.sla_paused_since = order.response_minutes.map(|_| at);
            }
            WorkOrderEvent::WorkOrderSlaResumed {
                paused_minutes,
                response_due_at,
                resolution_due_at,
                response_warn_at,
                resolution_warn_at,
                ..
            } => {
                // Only an order with an SLA pauses and resumes.
                order.sla_paused_since = None;
                order.paused_minutes = minutes(paused_minutes);
                order.response_due_at = Some(response_due_at);
                order.resolution_due_at = Some(resolution_due_at);
                order.response_warn_at = Some(response_warn_at);
                order.resolution_warn_at = Some(resolution_warn_at);
            }
            WorkOrderEvent::WorkOrderResponded { at } => order.responded_at = Some(at),
            WorkOrderEvent::WorkOrderCommented { comment } => {
                order.comments = order
                    .comments
                    .checked_add(1)
                    .ok_or("comments out of range")?;
                order.public_comments = order
                    .public_comments
                    .checked_add(i32::from(comment.public))
                    .ok_or("comments out of range")?;
            }
            WorkOrderEvent::WorkOrderAttachmentAdded { document } => {
                let document = serde_json::to_value(document).map_err(|e| e.to_string())?;
                match &mut order.attachments {
                    serde_json::Value::Array(documents) => documents.push(document),
                    other => {
                        return Err(format!("work order {id}: attachments are {other}"));
                    }
                }
            }
            WorkOrderEvent::TimerStarted { technician_id, at } => {
                let timer = self
                    .timers
                    .entry((tenant_id, id, technician_id))
                    .or_default();
                if timer.started_at.is_some() {
                    return Err(format!(
                        "work order {id}: timer of {technician_id} started twice"
                    ));
                }
                timer.started_at = Some(at);
            }
            WorkOrderEvent::TimerCancelled { technician_id } => {
                self.stop_timer(tenant_id, id, technician_id);
            }
            WorkOrderEvent::TimeLogged { entry } => {
                let entry_key = (tenant_id, entry.entry_id);
                if matches!(self.entries.get(&entry_key), Some(Some(_))) {
                    return Err(format!("time entry {} logged twice", entry.entry_id));
                }
                let row = entry_row(tenant_id, id, order.company_id, event, entry);
                order.count_entry(row.billing, row.minutes, row.amount, 1)?;
                if row.started_at.is_some() {
                    self.stop_timer(tenant_id, id, row.technician_id);
                }
                if self.entries.insert(entry_key, Some(row)).is_none() {
                    self.entry_order.push(entry_key);
                }
            }
            WorkOrderEvent::TimeEntryRemoved { entry_id } => {
                let entry_key = (tenant_id, entry_id);
                match self.entries.get_mut(&entry_key) {
                    Some(slot) => {
                        if let Some(row) = slot.take_if(|row| row.work_order_id == id) {
                            // Taken off as the table stored it.
                            let amount = round_money(row.amount);
                            order.count_entry(row.billing, row.minutes, amount, -1)?;
                        }
                    }
                    None => {
                        let of_this_order = self
                            .stored_entries
                            .get(&entry_key)
                            .is_some_and(|stored| stored.work_order_id == id);
                        let removed = if of_this_order {
                            self.stored_entries.remove(&entry_key)
                        } else {
                            None
                        };
                        if let Some(stored) = removed {
                            self.billed.remove(&entry_key);
                            order.count_entry(
                                &stored.billing,
                                stored.minutes,
                                stored.amount,
                                -1,
                            )?;
                            self.deleted_entries.push(entry_key);
                        }
                    }
                }
            }
            WorkOrderEvent::SlaWarningRaised { target, .. } => match target {
                SlaTarget::Response => order.response_warned = true,
                SlaTarget::Resolution => order.resolution_warned = true,
            },
            WorkOrderEvent::SlaBreached { target, .. } => match target {
                SlaTarget::Response => order.response_breached = true,
                SlaTarget::Resolution => order.resolution_breached = true,
            },
            WorkOrderEvent::StatusLinkIssued {
                link_id,
                kind,
                token_digest,
                user_id,
                expires_at,
                max_uses,
            } => {
                if self.links.contains_key(&(tenant_id, link_id)) {
                    return Err(format!("status link {link_id} issued twice"));
                }
                let row = LinkRow {
                    tenant_id,
                    id: link_id,
                    work_order_id: id,
                    kind: kind.as_str().to_owned(),
                    token_digest,
                    user_id,
                    expires_at,
                    max_uses: i32::try_from(max_uses).unwrap_or(i32::MAX),
                    uses: 0,
                    revoked: false,
                    created_at: event.recorded_at,
                };
                self.links
                    .insert((tenant_id, link_id), LinkChange { row, issued: true });
            }
            WorkOrderEvent::StatusLinkRevoked { link_id } => {
                if let Some(link) = self.link(tenant_id, id, link_id) {
                    link.revoked = true;
                }
            }
            WorkOrderEvent::StatusLinkUsed { link_id, used } => {
                if let Some(link) = self.link(tenant_id, id, link_id) {
                    link.uses = i32::try_from(used).unwrap_or(i32::MAX);
                }
            }
            WorkOrderEvent::WorkOrderRated {
                rating, comment, ..
            } => {
                order.rating = Some(i16::from(rating));
                order.rating_comment = comment;
            }
            // Their rows are written after the fold, one statement each (`MaterialChange`).
            WorkOrderEvent::MaterialAdded { .. } | WorkOrderEvent::MaterialRemoved { .. } => {}
        }
        Ok(())
    }

    /// A link of this order (issued in the batch or loaded), if there is one.
    fn link(&mut self, tenant_id: Uuid, order: Uuid, link_id: Uuid) -> Option<&mut LinkRow> {
        self.links
            .get_mut(&(tenant_id, link_id))
            .map(|link| &mut link.row)
            .filter(|row| row.work_order_id == order)
    }
}

fn entry_row(
    tenant_id: Uuid,
    work_order_id: Uuid,
    company_id: Uuid,
    event: &StoredEvent,
    entry: TimeEntry,
) -> Entry {
    Entry {
        tenant_id,
        id: entry.entry_id,
        work_order_id,
        company_id,
        technician_id: entry.technician_id,
        work_date: entry.work_date,
        minutes: minutes(entry.minutes),
        note: entry.note,
        billing: entry.billing.as_str(),
        after_hours: entry.after_hours,
        rate: entry.rate.value(),
        amount: entry.amount,
        cost_rate: entry.cost_rate.value(),
        cost: entry.cost,
        started_at: entry.started_at,
        ended_at: entry.ended_at,
        invoice_id: None,
        created_at: event.recorded_at,
    }
}

/// Time entries and materials an invoice bills (its id) or a void returns (`None`).
type BilledWork = (Option<Uuid>, Vec<Uuid>, Vec<Uuid>);

/// The time entries and the materials an issued invoice bills (`time/<entry id>` and
/// `material/<material id>` among its `bills`), or a void returns to the unbilled work (its
/// `released`); nothing for any other ledger event.
fn billed_entries(event: &StoredEvent) -> Result<Option<BilledWork>, String> {
    if event.event_type != "InvoiceIssued" && event.event_type != "InvoiceVoided" {
        return Ok(None);
    }
    let payload: LedgerEvent = if event.event_version == "1" {
        serde_json::from_str(event.payload.get()).map_err(|e| e.to_string())?
    } else {
        let serialized = event.to_serialized().map_err(|e| e.to_string())?;
        commands::store::decode(&commands::store::upcast(
            serialized,
            &domain::ledger::Ledger::upcasters(),
        ))?
    };
    let (invoice, bills) = match payload {
        LedgerEvent::InvoiceIssued {
            invoice_id, bills, ..
        } => (Some(invoice_id), bills),
        LedgerEvent::InvoiceVoided { released, .. } => (None, released),
        _ => return Ok(None),
    };
    let ids = |prefix: &str| -> Vec<Uuid> {
        bills
            .iter()
            .filter_map(|bill| bill.strip_prefix(prefix))
            .filter_map(|id| Uuid::parse_str(id).ok())
            .collect()
    };
    let (entries, materials) = (ids("time/"), ids("material/"));
    Ok((!entries.is_empty() || !materials.is_empty()).then_some((invoice, entries, materials)))
}

/// A change to the materials table, applied in the batch's order after the fold.
enum MaterialChange {
    Added(Box<MaterialRow>),
    Removed(Key),
    /// Billed by an invoice, or (`None`) returned to the unbilled work by its void.
    Billed(Key, Option<Uuid>),
}

impl MaterialChange {
    async fn write(self, conn: &mut PgConnection, table: &str) -> Result<(), sqlx::Error> {
        match self {
            Self::Added(row) => {
                sqlx::query(&format!(
                    "INSERT INTO {table} (tenant_id, id, work_order_id, company_id, description,
                        sku, quantity, unit_price, billing, amount, used_on, added_by,
                        invoice_id, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, $13)"
                ))
                .bind(row.tenant_id)
                .bind(row.id)
                .bind(row.work_order_id)
                .bind(row.company_id)
                .bind(&row.description)
                .bind(&row.sku)
                .bind(row.quantity)
                .bind(row.unit_price)
                .bind(&row.billing)
                .bind(row.amount)
                .bind(row.used_on)
                .bind(row.added_by)
                .bind(row.created_at)
                .execute(&mut *conn)
                .await?;
            }
            Self::Removed((tenant_id, id)) => {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant_id)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            }
            Self::Billed((tenant_id, id), invoice_id) => {
                sqlx::query(&format!(
                    "UPDATE {table} SET invoice_id = $3 WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant_id)
                .bind(id)
                .bind(invoice_id)
                .execute(&mut *conn)
                .await?;
            }
        }
        Ok(())
    }
}

/// One event of a batch this projection applies (kept for the batch only: the size of the
/// order events does not matter).
#[allow(clippy::large_enum_variant)]
enum Item {
    Order(Key, WorkOrderEvent),
    /// An issued invoice (of the tenant) that bills these time entries and materials, or
    /// (`None`) a void that returns them to the unbilled work.
    Billed(Uuid, Option<Uuid>, Vec<Uuid>, Vec<Uuid>),
}

/// `INSERT INTO table (columns) SELECT ... FROM unnest(...)`.
fn insert_sql(table: &str, columns: &[&str], select: &[String], unnest: &str) -> String {
    format!(
        "INSERT INTO {table} ({}) SELECT {} FROM {unnest}",
        columns.join(", "),
        select.join(", ")
    )
}

#[async_trait]
impl Projection for WorkOrdersProjection {
    fn name(&self) -> &'static str {
        "work_orders"
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "work_orders",
            "work_order_time_entries",
            "work_order_timers",
            "work_order_links",
            "work_order_materials",
        ]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        tables: &Tables,
        events: &[StoredEvent],
    ) -> Result<(), ApplyError> {
        let (orders, entries, timers, links, materials) = (
            tables.get(0),
            tables.get(1),
            tables.get(2),
            tables.get(3),
            tables.get(4),
        );

        // Decode the batch's events, and find what must be read first: orders whose opening
        // is not in the batch, entries removed and links changed that it did not add.
        let mut mine = Vec::new();
        let mut opened = HashSet::new();
        let mut logged = HashSet::new();
        let mut issued = HashSet::new();
        let (mut load_orders, mut load_entries, mut load_links) =
            (Vec::new(), Vec::new(), Vec::new());
        for (index, event) in events.iter().enumerate() {
            if event.aggregate_type == "ledger" {
                let at = |e: String| ApplyError::at(index, e);
                if let Some((invoice_id, entries, materials)) = billed_entries(event).map_err(at)? {
                    let tenant_id = event.meta.as_ref().map_err(|e| at(e.clone()))?.tenant_id;
                    mine.push((
                        index,
                        event,
                        Item::Billed(tenant_id, invoice_id, entries, materials),
                    ));
                }
                continue;
            }
            if event.aggregate_type != "work_order" {
                continue;
            }
            let at = |e: String| ApplyError::at(index, e);
            let id = Uuid::parse_str(&event.aggregate_id)
                .map_err(|_| at(format!("work order id {:?}", event.aggregate_id)))?;
            let tenant_id = event.meta.as_ref().map_err(|e| at(e.clone()))?.tenant_id;
            let payload = decode(event).map_err(at)?;
            let key = (tenant_id, id);
            match &payload {
                WorkOrderEvent::WorkOrderOpened { .. } => {
                    opened.insert(key);
                }
                _ if !opened.contains(&key) => load_orders.push(key),
                _ => {}
            }
            match &payload {
                WorkOrderEvent::TimeLogged { entry } => {
                    logged.insert((tenant_id, entry.entry_id));
                }
                WorkOrderEvent::TimeEntryRemoved { entry_id }
                    if !logged.contains(&(tenant_id, *entry_id)) =>
                {
                    load_entries.push((tenant_id, *entry_id));
                }
                WorkOrderEvent::StatusLinkIssued { link_id, .. } => {
                    issued.insert((tenant_id, *link_id));
                }
                WorkOrderEvent::StatusLinkRevoked { link_id }
                | WorkOrderEvent::StatusLinkUsed { link_id, .. }
                    if !issued.contains(&(tenant_id, *link_id)) =>
                {
                    load_links.push((tenant_id, *link_id));
                }
                _ => {}
            }
            mine.push((index, event, Item::Order(key, payload)));
        }
        if mine.is_empty() {
            return Ok(());
        }
        for keys in [&mut load_orders, &mut load_entries, &mut load_links] {
            keys.sort_unstable();
            keys.dedup();
        }

        let mut fold = Fold::default();
        let mut material_changes = Vec::new();
        let order_columns: Vec<String> = OrderColumns::columns()
            .into_iter()
            .map(|column| format!("t.{column}"))
            .collect();
        let order_columns = order_columns.join(", ");
        let loaded: Vec<Order> =
            load_keyed(&mut *conn, orders, &order_columns, "id", load_orders).await?;
        for order in loaded {
            let key = (order.tenant_id, order.id);
            fold.stored_orders.insert(key);
            fold.orders.insert(key, order);
        }
        let stored: Vec<StoredEntry> = load_keyed(
            &mut *conn,
            entries,
            "t.tenant_id, t.id, t.work_order_id, t.billing, t.minutes, t.amount",
            "id",
            load_entries,
        )
        .await?;
        fold.stored_entries = stored
            .into_iter()
            .map(|e| ((e.tenant_id, e.id), e))
            .collect();
        let stored: Vec<LinkRow> = load_keyed(&mut *conn, links, "t.*", "id", load_links).await?;
        for row in stored {
            let key = (row.tenant_id, row.id);
            fold.links.insert(key, LinkChange { row, issued: false });
        }

        for (index, event, item) in mine {
            match item {
                Item::Order((tenant_id, id), payload) => {
                    match &payload {
                        WorkOrderEvent::MaterialAdded {
                            company_id,
                            material,
                        } => material_changes.push(MaterialChange::Added(Box::new(
                            MaterialRow::of(tenant_id, id, *company_id, material, event),
                        ))),
                        WorkOrderEvent::MaterialRemoved { material_id } => material_changes
                            .push(MaterialChange::Removed((tenant_id, *material_id))),
                        _ => {}
                    }
                    fold.apply(tenant_id, id, event, payload)
                        .map_err(|e| ApplyError::at(index, e))?
                }
                Item::Billed(tenant_id, invoice_id, entries, billed_materials) => {
                    for entry_id in entries {
                        fold.bill(tenant_id, entry_id, invoice_id);
                    }
                    for material_id in billed_materials {
                        material_changes
                            .push(MaterialChange::Billed((tenant_id, material_id), invoice_id));
                    }
                }
            }
        }
        fold.write(&mut *conn, orders, entries, timers, links)
            .await?;
        // Materials are few next to the orders' other events: a statement each, in order.
        for change in material_changes {
            change.write(&mut *conn, materials).await?;
        }
        Ok(())
    }
}

impl Fold {
    /// Writes the folded rows: per table, one statement for each of insert, update, delete
    /// that has rows.
    async fn write(
        self,
        conn: &mut PgConnection,
        orders: &str,
        entries: &str,
        timers: &str,
        links: &str,
    ) -> Result<(), sqlx::Error> {
        // Orders: opened in the batch are inserted (a second opening fails on the key),
        // the others updated.
        let (mut inserted, mut updated) = (OrderColumns::default(), OrderColumns::default());
        for (key, order) in self.orders {
            if self.stored_orders.contains(&key) {
                updated.push(order);
            } else {
                inserted.push(order);
            }
        }
        if inserted.len() > 0 {
            let sql = insert_sql(
                orders,
                &OrderColumns::columns(),
                &OrderColumns::select(),
                &OrderColumns::unnest(1),
            );
            inserted.bind(sqlx::query(&sql)).execute(&mut *conn).await?;
        }
        if updated.len() > 0 {
            // An upsert finds each row through the primary key (an `UPDATE ... FROM unnest`
            // was planned as a hash join over the whole table).
            let columns = OrderColumns::columns();
            let set: Vec<String> = columns
                .iter()
                .filter(|column| !matches!(**column, "tenant_id" | "id"))
                .map(|column| format!("{column} = excluded.{column}"))
                .collect();
            let sql = format!(
                "{} ON CONFLICT (tenant_id, id) DO UPDATE SET {}",
                insert_sql(
                    orders,
                    &columns,
                    &OrderColumns::select(),
                    &OrderColumns::unnest(1)
                ),
                set.join(", ")
            );
            updated.bind(sqlx::query(&sql)).execute(&mut *conn).await?;
        }

        // Time entries: those stored before and removed go first, so an id logged again
        // after its removal is inserted afresh.
        if !self.deleted_entries.is_empty() {
            let (tenants, ids) = key_arrays(self.deleted_entries);
            sqlx::query(&format!(
                "DELETE FROM {entries} e USING unnest($1::uuid[], $2::uuid[]) AS k(tenant_id, id)
                  WHERE e.tenant_id = k.tenant_id AND e.id = k.id"
            ))
            .bind(tenants)
            .bind(ids)
            .execute(&mut *conn)
            .await?;
        }
        let mut new_entries = EntryColumns::default();
        let mut logged = self.entries;
        for key in self.entry_order {
            if let Some(Some(row)) = logged.remove(&key) {
                new_entries.push(row);
            }
        }
        if new_entries.len() > 0 {
            let sql = insert_sql(
                entries,
                &EntryColumns::columns(),
                &EntryColumns::select(),
                &EntryColumns::unnest(1),
            );
            new_entries
                .bind(sqlx::query(&sql))
                .execute(&mut *conn)
                .await?;
        }
        // Stored entries billed by the batch's invoices. The `ANY` conditions let the primary
        // key find the rows (a bare join with `unnest` may be planned as a hash join over the
        // whole table); an entry that is gone updates nothing.
        if !self.billed.is_empty() {
            let mut billed: Vec<(Key, Option<Uuid>)> = self.billed.into_iter().collect();
            billed.sort_unstable();
            let (keys, invoices): (Vec<Key>, Vec<Option<Uuid>>) = billed.into_iter().unzip();
            let (tenants, ids) = key_arrays(keys);
            sqlx::query(&format!(
                "UPDATE {entries} e SET invoice_id = k.invoice_id
                   FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS k(tenant_id, id, invoice_id)
                  WHERE e.tenant_id = ANY($1) AND e.id = ANY($2)
                    AND e.tenant_id = k.tenant_id AND e.id = k.id"
            ))
            .bind(tenants)
            .bind(ids)
            .bind(invoices)
            .execute(&mut *conn)
            .await?;
        }

        // Timers: rows the batch stopped first are deleted, then the running ones inserted
        // (a timer started twice fails on the key).
        let mut stop = (Vec::new(), Vec::new(), Vec::new());
        let mut start = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((tenant_id, order, technician_id), change) in self.timers {
            if change.stopped_first {
                stop.0.push(tenant_id);
                stop.1.push(order);
                stop.2.push(technician_id);
            }
            if let Some(started_at) = change.started_at {
                start.0.push(tenant_id);
                start.1.push(order);
                start.2.push(technician_id);
                start.3.push(started_at);
            }
        }
        if !stop.0.is_empty() {
            sqlx::query(&format!(
                "DELETE FROM {timers} t
                  USING unnest($1::uuid[], $2::uuid[], $3::uuid[])
                        AS k(tenant_id, work_order_id, technician_id)
                  WHERE t.tenant_id = k.tenant_id AND t.work_order_id = k.work_order_id
                    AND t.technician_id = k.technician_id"
            ))
            .bind(stop.0)
            .bind(stop.1)
            .bind(stop.2)
            .execute(&mut *conn)
            .await?;
        }
        if !start.0.is_empty() {
            sqlx::query(&format!(
                "INSERT INTO {timers} (tenant_id, work_order_id, technician_id, started_at)
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[])"
            ))
            .bind(start.0)
            .bind(start.1)
            .bind(start.2)
            .bind(start.3)
            .execute(&mut *conn)
            .await?;
        }

        // Links: issued in the batch are inserted (a reused digest fails), the others' uses
        // and revocation updated.
        let (mut new_links, mut changed) = (LinkColumns::default(), LinkColumns::default());
        for link in self.links.into_values() {
            if link.issued {
                new_links.push(link.row);
            } else {
                changed.push(link.row);
            }
        }
        if new_links.len() > 0 {
            let sql = insert_sql(
                links,
                &LinkColumns::columns(),
                &LinkColumns::select(),
                &LinkColumns::unnest(1),
            );
            new_links
                .bind(sqlx::query(&sql))
                .execute(&mut *conn)
                .await?;
        }
        if changed.len() > 0 {
            let sql = format!(
                "{} ON CONFLICT (tenant_id, id) DO UPDATE
                    SET uses = excluded.uses, revoked = excluded.revoked",
                insert_sql(
                    links,
                    &LinkColumns::columns(),
                    &LinkColumns::select(),
                    &LinkColumns::unnest(1)
                )
            );
            changed.bind(sqlx::query(&sql)).execute(&mut *conn).await?;
        }
        Ok(())
    }
}
/// One work order as the board, the lists, its page and the API show it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct WorkOrderRow {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub number: i64,
    pub company_id: Uuid,
    /// The company's current name ('' while the companies read model lags).
    pub company_name: String,
    pub contact_id: Option<Uuid>,
    pub title: String,
    pub description: String,
    pub work_type: String,
    pub priority: String,
    pub priority_rank: i16,
    pub status: String,
    pub origin: String,
    pub assignee_id: Option<Uuid>,
    /// The assignee's name (or email when they have no name).
    pub assignee_name: Option<String>,
    pub asset_ids: Vec<Uuid>,
    pub holds_assets: bool,
    pub opened_at: DateTime<Utc>,
    pub responded_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub response_minutes: Option<i32>,
    pub resolution_minutes: Option<i32>,
    pub paused_minutes: i32,
    pub sla_paused_since: Option<DateTime<Utc>>,
    pub response_due_at: Option<DateTime<Utc>>,
    pub resolution_due_at: Option<DateTime<Utc>>,
    pub response_warn_at: Option<DateTime<Utc>>,
    pub resolution_warn_at: Option<DateTime<Utc>>,
    pub response_warned: bool,
    pub response_breached: bool,
    pub resolution_warned: bool,
    pub resolution_breached: bool,
    /// none, ok, warning, paused, met or breached.
    pub sla_state: String,
    pub sla_next_check_at: Option<DateTime<Utc>>,
    pub comments: i32,
    pub public_comments: i32,
    pub attachments: sqlx::types::Json<Vec<AssetDocument>>,
    pub rating: Option<i16>,
    pub rating_comment: String,
    pub billable_minutes: i32,
    pub contract_minutes: i32,
    #[serde(with = "rust_decimal::serde::str")]
    pub billable_amount: Decimal,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WorkOrderRow {
    fn normalized(mut self) -> Self {
        self.billable_amount = money(self.billable_amount);
        self
    }
}

/// How a person is shown: their name, else their email (NULL without a `users` row).
const PERSON_NAME: &str = "coalesce(nullif(u.name, ''), u.email)";

fn select_orders() -> String {
    format!(
        "SELECT w.*, coalesce(c.name, '') AS company_name, {PERSON_NAME} AS assignee_name
           FROM work_orders w
           LEFT JOIN companies c ON c.tenant_id = w.tenant_id AND c.id = w.company_id
           LEFT JOIN users u ON u.id = w.assignee_id AND u.tenant_id = w.tenant_id"
    )
}

/// Which orders a list shows. Every field narrows; the default shows all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Any of these statuses (empty: any). `open` stands for every status where work remains
    /// (`OPEN_STATUSES`).
    pub status: Vec<String>,
    pub priority: Option<String>,
    pub assignee_id: Option<Uuid>,
    /// Only orders nobody is assigned to.
    pub unassigned: bool,
    pub company_id: Option<Uuid>,
    /// Only orders naming this asset.
    pub asset_id: Option<Uuid>,
    pub sla_state: Option<String>,
}

impl Filter {
    /// The statuses asked for, `open` expanded, without repeats.
    pub fn statuses(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for status in &self.status {
            let expanded: Vec<&str> = if status == "open" {
                OPEN_STATUSES.to_vec()
            } else {
                vec![status.as_str()]
            };
            for s in expanded {
                if !out.iter().any(|o| o == s) {
                    out.push(s.to_owned());
                }
            }
        }
        out
    }
}

/// Orders matching `filter`, newest number first, `limit` of them below `before_number`
/// (keyset paging: pass the last number of a page to get the next).
///
/// Only the filters in use become predicates, so each shape of filter gets a plan that uses
/// its index (by status, assignee, company or asset).
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    filter: &Filter,
    before_number: Option<i64>,
    limit: i64,
) -> Result<Vec<WorkOrderRow>, sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new(select_orders());
    query.push(" WHERE w.tenant_id = ").push_bind(tenant_id);
    let statuses = filter.statuses();
    match statuses.as_slice() {
        [] => {}
        [one] => {
            query.push(" AND w.status = ").push_bind(one.clone());
        }
        _ => {
            query
                .push(" AND w.status = ANY(")
                .push_bind(statuses)
                .push(")");
        }
    }
    if let Some(priority) = &filter.priority {
        query.push(" AND w.priority = ").push_bind(priority.clone());
    }
    if let Some(assignee_id) = filter.assignee_id {
        query.push(" AND w.assignee_id = ").push_bind(assignee_id);
    }
    if filter.unassigned {
        query.push(" AND w.assignee_id IS NULL");
    }
    if let Some(company_id) = filter.company_id {
        query.push(" AND w.company_id = ").push_bind(company_id);
    }
    if let Some(asset_id) = filter.asset_id {
        query
            .push(" AND w.asset_ids <> '{}' AND w.asset_ids @> ARRAY[")
            .push_bind(asset_id)
            .push("]::uuid[]");
    }
    if let Some(sla_state) = &filter.sla_state {
        query
            .push(" AND w.sla_state = ")
            .push_bind(sla_state.clone());
    }
    if let Some(before) = before_number {
        query.push(" AND w.number < ").push_bind(before);
    }
    query
        .push(" ORDER BY w.number DESC, w.id LIMIT ")
        .push_bind(limit);
    let rows: Vec<WorkOrderRow> = query.build_query_as().fetch_all(db).await?;
    Ok(rows.into_iter().map(WorkOrderRow::normalized).collect())
}

/// One order of a tenant (`None` for another tenant's).
pub async fn get<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<WorkOrderRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{} WHERE w.tenant_id = $1 AND w.id = $2",
        select_orders()
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(db)
    .await
    .map(|row: Option<WorkOrderRow>| row.map(WorkOrderRow::normalized))
}

/// The order of a tenant with this number.
pub async fn get_by_number<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    number: i64,
) -> Result<Option<WorkOrderRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{} WHERE w.tenant_id = $1 AND w.number = $2 LIMIT 1",
        select_orders()
    ))
    .bind(tenant_id)
    .bind(number)
    .fetch_optional(db)
    .await
    .map(|row: Option<WorkOrderRow>| row.map(WorkOrderRow::normalized))
}

/// One material line of an order, with the name of who added it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct MaterialRow {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub work_order_id: Uuid,
    pub company_id: Uuid,
    pub description: String,
    pub sku: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub unit_price: Decimal,
    /// billable or contract.
    pub billing: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub used_on: NaiveDate,
    pub added_by: Uuid,
    /// Who added it (name or email; '' while the users read model lags).
    pub added_by_name: String,
    /// The order's number and title (for lists across orders).
    pub work_order_number: i64,
    pub work_order_title: String,
    pub invoice_id: Option<Uuid>,
    /// That invoice's number (`None` while the receivables read model lags).
    pub invoice_number: Option<i64>,
    pub created_at: DateTime<Utc>,
}

impl MaterialRow {
    /// The row `MaterialAdded` writes (the names are read with the row, not stored).
    fn of(
        tenant_id: Uuid,
        work_order_id: Uuid,
        company_id: Uuid,
        material: &domain::workorder::Material,
        event: &StoredEvent,
    ) -> Self {
        Self {
            tenant_id,
            id: material.material_id,
            work_order_id,
            company_id,
            description: material.description.clone(),
            sku: material.sku.clone(),
            quantity: material.quantity,
            unit_price: material.unit_price.value(),
            billing: material.billing.as_str().to_owned(),
            amount: material.amount,
            used_on: material.used_on,
            added_by: material.added_by,
            added_by_name: String::new(),
            work_order_number: 0,
            work_order_title: String::new(),
            invoice_id: None,
            invoice_number: None,
            created_at: event.recorded_at,
        }
    }

    fn normalized(mut self) -> Self {
        self.quantity = self.quantity.normalize();
        self.unit_price = money(self.unit_price);
        self.amount = money(self.amount);
        self
    }
}

fn select_materials() -> String {
    format!(
        "SELECT m.*, coalesce({PERSON_NAME}, '') AS added_by_name,
                w.number AS work_order_number, w.title AS work_order_title,
                i.number AS invoice_number
           FROM work_order_materials m
           JOIN work_orders w ON w.tenant_id = m.tenant_id AND w.id = m.work_order_id
           LEFT JOIN users u ON u.id = m.added_by AND u.tenant_id = m.tenant_id
           LEFT JOIN invoices i ON i.tenant_id = m.tenant_id AND i.id = m.invoice_id"
    )
}

/// An order's materials, by day used, then as added.
pub async fn materials<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    work_order_id: Uuid,
) -> Result<Vec<MaterialRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{} WHERE m.tenant_id = $1 AND m.work_order_id = $2
          ORDER BY m.used_on, m.created_at, m.id",
        select_materials()
    ))
    .bind(tenant_id)
    .bind(work_order_id)
    .fetch_all(db)
    .await
    .map(|rows: Vec<MaterialRow>| rows.into_iter().map(MaterialRow::normalized).collect())
}

/// The companies of a tenant with billable time or materials not invoiced yet (through the
/// tables' `unbilled` partial indexes): a billing run looks for work at those only.
pub async fn companies_with_unbilled_work<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT company_id FROM work_order_time_entries
          WHERE tenant_id = $1 AND billing = 'billable' AND invoice_id IS NULL
         UNION
         SELECT company_id FROM work_order_materials
          WHERE tenant_id = $1 AND billing = 'billable' AND invoice_id IS NULL",
    )
    .bind(tenant_id)
    .fetch_all(db)
    .await
}

/// A company's billable materials not invoiced yet, oldest first.
pub async fn unbilled_materials<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    company_id: Uuid,
) -> Result<Vec<MaterialRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{} WHERE m.tenant_id = $1 AND m.company_id = $2
            AND m.billing = 'billable' AND m.invoice_id IS NULL
          ORDER BY m.used_on, m.created_at, m.id",
        select_materials()
    ))
    .bind(tenant_id)
    .bind(company_id)
    .fetch_all(db)
    .await
    .map(|rows: Vec<MaterialRow>| rows.into_iter().map(MaterialRow::normalized).collect())
}

/// One time entry, with its technician's name.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct TimeEntryRow {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub work_order_id: Uuid,
    pub company_id: Uuid,
    pub technician_id: Uuid,
    /// The technician's name (or email; '' while the users read model lags).
    pub technician_name: String,
    /// The order's number and title (for lists of entries across orders).
    pub work_order_number: i64,
    pub work_order_title: String,
    pub work_date: NaiveDate,
    pub minutes: i32,
    pub note: String,
    /// billable or contract.
    pub billing: String,
    pub after_hours: bool,
    #[serde(with = "rust_decimal::serde::str")]
    pub rate: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub cost_rate: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub cost: Decimal,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub invoice_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl TimeEntryRow {
    fn normalized(mut self) -> Self {
        self.rate = money(self.rate);
        self.amount = money(self.amount);
        self.cost_rate = money(self.cost_rate);
        self.cost = money(self.cost);
        self
    }
}

fn entries(rows: Vec<TimeEntryRow>) -> Vec<TimeEntryRow> {
    rows.into_iter().map(TimeEntryRow::normalized).collect()
}

fn select_entries() -> String {
    format!(
        "SELECT e.*, coalesce({PERSON_NAME}, '') AS technician_name,
                w.number AS work_order_number, w.title AS work_order_title
           FROM work_order_time_entries e
           JOIN work_orders w ON w.tenant_id = e.tenant_id AND w.id = e.work_order_id
           LEFT JOIN users u ON u.id = e.technician_id AND u.tenant_id = e.tenant_id"
    )
}

/// An order's time entries, by day of work, then as logged.
pub async fn time_entries<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    work_order_id: Uuid,
) -> Result<Vec<TimeEntryRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{} WHERE e.tenant_id = $1 AND e.work_order_id = $2
          ORDER BY e.work_date, e.created_at, e.id",
        select_entries()
    ))
    .bind(tenant_id)
    .bind(work_order_id)
    .fetch_all(db)
    .await
    .map(entries)
}

/// A running timer, with its technician and its order.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct TimerRow {
    pub tenant_id: Uuid,
    pub work_order_id: Uuid,
    pub work_order_number: i64,
    pub work_order_title: String,
    pub technician_id: Uuid,
    /// The technician's name (or email; '' while the users read model lags).
    pub technician_name: String,
    pub started_at: DateTime<Utc>,
}

fn select_timers() -> String {
    format!(
        "SELECT t.tenant_id, t.work_order_id, w.number AS work_order_number,
                w.title AS work_order_title, t.technician_id,
                coalesce({PERSON_NAME}, '') AS technician_name, t.started_at
           FROM work_order_timers t
           JOIN work_orders w ON w.tenant_id = t.tenant_id AND w.id = t.work_order_id
           LEFT JOIN users u ON u.id = t.technician_id AND u.tenant_id = t.tenant_id"
    )
}

/// The timers running on an order, oldest first.
pub async fn timers<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    work_order_id: Uuid,
) -> Result<Vec<TimerRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{} WHERE t.tenant_id = $1 AND t.work_order_id = $2
          ORDER BY t.started_at, t.technician_id",
        select_timers()
    ))
    .bind(tenant_id)
    .bind(work_order_id)
    .fetch_all(db)
    .await
}

/// The timers a technician has running, on any order, oldest first.
pub async fn running_timers<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    technician_id: Uuid,
) -> Result<Vec<TimerRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{} WHERE t.tenant_id = $1 AND t.technician_id = $2
          ORDER BY t.started_at, t.work_order_id",
        select_timers()
    ))
    .bind(tenant_id)
    .bind(technician_id)
    .fetch_all(db)
    .await
}

/// Billable work of one company not invoiced yet: time and materials.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct UnbilledRow {
    pub company_id: Uuid,
    pub company_name: String,
    /// Time entries, their minutes and their amount.
    pub entries: i64,
    pub minutes: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    /// Material lines and their amount.
    pub materials: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub materials_amount: Decimal,
    /// Time and materials.
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
}

/// Unbilled billable time and materials per company, by company name.
pub async fn unbilled_by_company<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
) -> Result<Vec<UnbilledRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT k.company_id, coalesce(c.name, '') AS company_name,
                coalesce(e.entries, 0) AS entries, coalesce(e.minutes, 0) AS minutes,
                coalesce(e.amount, 0) AS amount,
                coalesce(m.materials, 0) AS materials,
                coalesce(m.amount, 0) AS materials_amount,
                coalesce(e.amount, 0) + coalesce(m.amount, 0) AS total
           FROM (SELECT company_id FROM work_order_time_entries
                  WHERE tenant_id = $1 AND billing = 'billable' AND invoice_id IS NULL
                 UNION
                 SELECT company_id FROM work_order_materials
                  WHERE tenant_id = $1 AND billing = 'billable' AND invoice_id IS NULL) k
           LEFT JOIN (SELECT company_id, count(*) AS entries, sum(minutes)::int8 AS minutes,
                             sum(amount) AS amount
                        FROM work_order_time_entries
                       WHERE tenant_id = $1 AND billing = 'billable' AND invoice_id IS NULL
                       GROUP BY company_id) e ON e.company_id = k.company_id
           LEFT JOIN (SELECT company_id, count(*) AS materials, sum(amount) AS amount
                        FROM work_order_materials
                       WHERE tenant_id = $1 AND billing = 'billable' AND invoice_id IS NULL
                       GROUP BY company_id) m ON m.company_id = k.company_id
           LEFT JOIN companies c ON c.tenant_id = $1 AND c.id = k.company_id
          ORDER BY lower(coalesce(c.name, '')), k.company_id",
    )
    .bind(tenant_id)
    .fetch_all(db)
    .await
    .map(|rows: Vec<UnbilledRow>| {
        rows.into_iter()
            .map(|mut row| {
                row.amount = money(row.amount);
                row.materials_amount = money(row.materials_amount);
                row.total = money(row.total);
                row
            })
            .collect()
    })
}

/// A company's unbilled billable entries, oldest day of work first.
pub async fn unbilled_entries<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    company_id: Uuid,
) -> Result<Vec<TimeEntryRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{} WHERE e.tenant_id = $1 AND e.company_id = $2
            AND e.billing = 'billable' AND e.invoice_id IS NULL
          ORDER BY e.work_date, e.created_at, e.id",
        select_entries()
    ))
    .bind(tenant_id)
    .bind(company_id)
    .fetch_all(db)
    .await
    .map(entries)
}

/// Minutes of a company's contract entries worked in `[from, to_exclusive)`.
pub async fn contract_minutes_used<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    company_id: Uuid,
    from: NaiveDate,
    to_exclusive: NaiveDate,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(sum(minutes), 0)::int8 FROM work_order_time_entries
          WHERE tenant_id = $1 AND company_id = $2 AND billing = 'contract'
            AND work_date >= $3 AND work_date < $4",
    )
    .bind(tenant_id)
    .bind(company_id)
    .bind(from)
    .bind(to_exclusive)
    .fetch_one(db)
    .await
}

/// A status link. The digest is for lookups and never serialized.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct LinkRow {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub work_order_id: Uuid,
    /// technician or customer.
    pub kind: String,
    #[serde(skip_serializing)]
    pub token_digest: String,
    pub user_id: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
    pub max_uses: i32,
    pub uses: i32,
    pub revoked: bool,
    pub created_at: DateTime<Utc>,
}

/// The link whose token has this digest, of any tenant (the token is all a visitor has): the
/// caller checks the row's order and tenant.
pub async fn link_by_digest<'e>(
    db: impl PgExecutor<'e>,
    token_digest: &str,
) -> Result<Option<LinkRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM work_order_links WHERE token_digest = $1")
        .bind(token_digest)
        .fetch_optional(db)
        .await
}

/// An order's links, newest first.
pub async fn links<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    work_order_id: Uuid,
) -> Result<Vec<LinkRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM work_order_links WHERE tenant_id = $1 AND work_order_id = $2
          ORDER BY created_at DESC, id",
    )
    .bind(tenant_id)
    .bind(work_order_id)
    .fetch_all(db)
    .await
}

/// The figures of the work orders dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dashboard {
    /// Open orders per status, every open status in lifecycle order (zeros included).
    pub open_by_status: Vec<(String, i64)>,
    pub open_total: i64,
    /// Open orders whose SLA was breached.
    pub breaching: i64,
    /// Open orders with an SLA warning (and no breach).
    pub warning: i64,
    pub unassigned_open: i64,
    /// Billable time not invoiced yet.
    pub unbilled_minutes: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub unbilled_amount: Decimal,
}

/// The dashboard of a tenant: two aggregate queries.
pub async fn dashboard(db: &PgPool, tenant_id: Uuid) -> Result<Dashboard, sqlx::Error> {
    let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT status, count(*),
                count(*) FILTER (WHERE sla_state = 'breached'),
                count(*) FILTER (WHERE sla_state = 'warning'),
                count(*) FILTER (WHERE assignee_id IS NULL)
           FROM work_orders
          WHERE tenant_id = $1 AND status = ANY($2)
          GROUP BY status",
    )
    .bind(tenant_id)
    .bind(&OPEN_STATUSES[..])
    .fetch_all(db)
    .await?;
    let (unbilled_minutes, unbilled_amount): (i64, Decimal) = sqlx::query_as(
        // The amount counts billable materials too: all of it waits for an invoice.
        "SELECT coalesce(sum(minutes), 0)::int8,
                (coalesce(sum(amount), 0) + (SELECT coalesce(sum(amount), 0)
                   FROM work_order_materials
                  WHERE tenant_id = $1 AND billing = 'billable' AND invoice_id IS NULL)
                )::numeric(14,2)
           FROM work_order_time_entries
          WHERE tenant_id = $1 AND billing = 'billable' AND invoice_id IS NULL",
    )
    .bind(tenant_id)
    .fetch_one(db)
    .await?;
    let mut dashboard = Dashboard {
        open_by_status: Vec::new(),
        open_total: 0,
        breaching: 0,
        warning: 0,
        unassigned_open: 0,
        unbilled_minutes,
        unbilled_amount: money(unbilled_amount),
    };
    for status in OPEN_STATUSES {
        let count = match rows.iter().find(|r| r.0 == status) {
            Some((_, count, breaching, warning, unassigned)) => {
                dashboard.breaching += breaching;
                dashboard.warning += warning;
                dashboard.unassigned_open += unassigned;
                *count
            }
            None => 0,
        };
        dashboard.open_total += count;
        dashboard.open_by_status.push((status.to_owned(), count));
    }
    Ok(dashboard)
}

/// Orders whose SLA needs a look at `now`, across tenants, the most overdue first: the
/// scheduler's work list (it runs `CheckSla` on each).
pub async fn sla_due<'e>(
    db: impl PgExecutor<'e>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tenant_id, id FROM work_orders
          WHERE sla_next_check_at IS NOT NULL AND sla_next_check_at <= $1
          ORDER BY sla_next_check_at, tenant_id, id
          LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The open orders that hold this asset in repair, by number.
pub async fn open_orders_holding_asset<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    asset_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM work_orders
          WHERE tenant_id = $1 AND holds_assets AND status = ANY($3)
            AND asset_ids <> '{}' AND asset_ids @> ARRAY[$2]::uuid[]
          ORDER BY number",
    )
    .bind(tenant_id)
    .bind(asset_id)
    .bind(&OPEN_STATUSES[..])
    .fetch_all(db)
    .await
}
