//! The `work_orders` read model (issue 5): work orders for the board, the lists and the API;
//! their time entries (billing, contract hours), running timers and status links.
//!
//! Each event is one statement. Events that touch a second table (time, timers, links) do it
//! in a data-modifying CTE of the statement that moves the order's `version`, so every event
//! costs one round trip and updates exactly one order row. `sla_state` and
//! `sla_next_check_at` are generated columns (migration 0011): PostgreSQL derives them from
//! the SLA columns this projection writes, so no event can leave them stale.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use commands::StoredAggregate;
use domain::asset::AssetDocument;
use domain::workorder::{
    Billing, Origin, Priority, Sla, SlaAlert, SlaTarget, Status, TimeEntry, WorkOrder,
    WorkOrderEvent,
};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, PgExecutor, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

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

/// The SLA columns, in the order `bind_sla` binds them.
const SLA_COLUMNS: &str = "response_minutes, resolution_minutes, paused_minutes, \
    sla_paused_since, response_due_at, resolution_due_at, response_warn_at, \
    resolution_warn_at, response_warned, response_breached, resolution_warned, \
    resolution_breached";

/// Binds an SLA's 12 columns (`None`: no SLA, every column NULL or false).
fn bind_sla(query: PgQuery<'_>, sla: Option<Sla>) -> PgQuery<'_> {
    let raised = |target, alert| sla.as_ref().is_some_and(|s| s.was_raised(target, alert));
    let flags = [
        raised(SlaTarget::Response, SlaAlert::Warning),
        raised(SlaTarget::Response, SlaAlert::Breach),
        raised(SlaTarget::Resolution, SlaAlert::Warning),
        raised(SlaTarget::Resolution, SlaAlert::Breach),
    ];
    let query = query
        .bind(sla.as_ref().map(|s| minutes(s.response_minutes)))
        .bind(sla.as_ref().map(|s| minutes(s.resolution_minutes)))
        .bind(sla.as_ref().map_or(0, |s| minutes(s.paused_minutes)))
        .bind(sla.as_ref().and_then(|s| s.paused_since))
        .bind(sla.as_ref().map(|s| s.response_due_at))
        .bind(sla.as_ref().map(|s| s.resolution_due_at))
        .bind(sla.as_ref().map(|s| s.response_warn_at))
        .bind(sla.as_ref().map(|s| s.resolution_warn_at));
    flags.into_iter().fold(query, |q, flag| q.bind(flag))
}

/// Minutes as an `integer` column holds them (targets are at most a year, entries a day).
fn minutes(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// `$first, $first+1, ... ` for `count` parameters.
fn params(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
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
        ]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        tables: &Tables,
        events: &[StoredEvent],
    ) -> Result<(), ApplyError> {
        let (orders, entries, timers, links) =
            (tables.get(0), tables.get(1), tables.get(2), tables.get(3));
        for (index, event) in events.iter().enumerate() {
            if event.aggregate_type != "work_order" {
                continue;
            }
            let at = |e: String| ApplyError::at(index, e);
            let id = Uuid::parse_str(&event.aggregate_id)
                .map_err(|_| at(format!("work order id {:?}", event.aggregate_id)))?;
            let tenant_id = event.meta.as_ref().map_err(|e| at(e.clone()))?.tenant_id;
            // Every statement but the opening's is an UPDATE of the order row ($1 tenant, $2
            // id, $3 version, $4 recorded at), preceded by `with` (CTEs on the other tables)
            // and setting `set` as well.
            let touch = |with: &str, set: &str| {
                format!(
                    "{with} UPDATE {orders} SET {set}version = $3, updated_at = $4
                      WHERE tenant_id = $1 AND id = $2"
                )
            };
            let keyed = |sql| {
                sqlx::query(sql)
                    .bind(tenant_id)
                    .bind(id)
                    .bind(event.sequence)
                    .bind(event.recorded_at)
            };
            let sql;
            let query = match decode(event).map_err(at)? {
                WorkOrderEvent::WorkOrderOpened {
                    number,
                    company_id,
                    details,
                    priority,
                    origin,
                    holds_assets,
                    opened_at,
                    sla,
                } => {
                    sql = format!(
                        "INSERT INTO {orders} (tenant_id, id, version, created_at, updated_at,
                            number, company_id, contact_id, title, description, work_type,
                            asset_ids, priority, priority_rank, status, origin, holds_assets,
                            opened_at, {SLA_COLUMNS})
                         VALUES ($1, $2, $3, $4, $4, {})",
                        params(5, 13 + 12)
                    );
                    let origin = match origin {
                        Origin::Staff => "staff",
                        Origin::Customer => "customer",
                    };
                    let query = keyed(&sql)
                        .bind(number as i64)
                        .bind(company_id)
                        .bind(details.contact_id)
                        .bind(details.title)
                        .bind(details.description)
                        .bind(details.work_type)
                        .bind(details.asset_ids)
                        .bind(priority.as_str())
                        .bind(priority_rank(priority))
                        .bind(Status::New.as_str())
                        .bind(origin)
                        .bind(holds_assets)
                        .bind(opened_at);
                    bind_sla(query, sla)
                }
                WorkOrderEvent::WorkOrderChanged { details } => {
                    sql = touch(
                        "",
                        "contact_id = $5, title = $6, description = $7, work_type = $8,
                         asset_ids = $9, ",
                    );
                    keyed(&sql)
                        .bind(details.contact_id)
                        .bind(details.title)
                        .bind(details.description)
                        .bind(details.work_type)
                        .bind(details.asset_ids)
                }
                WorkOrderEvent::WorkOrderPriorityChanged { priority, sla, .. } => match sla {
                    Some(sla) => {
                        sql = touch(
                            "",
                            &format!(
                                "priority = $5, priority_rank = $6, ({SLA_COLUMNS}) = ({}), ",
                                params(7, 12)
                            ),
                        );
                        let query = keyed(&sql)
                            .bind(priority.as_str())
                            .bind(priority_rank(priority));
                        bind_sla(query, Some(sla))
                    }
                    // No policy for the new priority: the order keeps the SLA it has.
                    None => {
                        sql = touch("", "priority = $5, priority_rank = $6, ");
                        keyed(&sql)
                            .bind(priority.as_str())
                            .bind(priority_rank(priority))
                    }
                },
                WorkOrderEvent::WorkOrderAssigned { assignee_id, .. } => {
                    sql = touch("", "assignee_id = $5, ");
                    keyed(&sql).bind(assignee_id)
                }
                WorkOrderEvent::WorkOrderStatusChanged { status, at, .. } => {
                    sql = touch(
                        "",
                        "status = $5,
                         resolved_at = CASE WHEN $6 THEN $8 WHEN $5 = 'reopened' THEN NULL
                                            ELSE resolved_at END,
                         closed_at = CASE WHEN $7 THEN $8 WHEN $5 = 'reopened' THEN NULL
                                          ELSE closed_at END, ",
                    );
                    keyed(&sql)
                        .bind(status.as_str())
                        .bind(matches!(status, Status::Resolved | Status::NoFix))
                        .bind(status.is_final())
                        .bind(at)
                }
                WorkOrderEvent::WorkOrderSlaPaused { at } => {
                    sql = touch(
                        "",
                        "sla_paused_since = CASE WHEN response_minutes IS NULL THEN NULL
                                                 ELSE $5 END, ",
                    );
                    keyed(&sql).bind(at)
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
                    sql = touch(
                        "",
                        "sla_paused_since = NULL, paused_minutes = $5, response_due_at = $6,
                         resolution_due_at = $7, response_warn_at = $8,
                         resolution_warn_at = $9, ",
                    );
                    keyed(&sql)
                        .bind(minutes(paused_minutes))
                        .bind(response_due_at)
                        .bind(resolution_due_at)
                        .bind(response_warn_at)
                        .bind(resolution_warn_at)
                }
                WorkOrderEvent::WorkOrderResponded { at } => {
                    sql = touch("", "responded_at = $5, ");
                    keyed(&sql).bind(at)
                }
                WorkOrderEvent::WorkOrderCommented { comment } => {
                    sql = touch(
                        "",
                        "comments = comments + 1, public_comments = public_comments + $5, ",
                    );
                    keyed(&sql).bind(i32::from(comment.public))
                }
                WorkOrderEvent::WorkOrderAttachmentAdded { document } => {
                    let document =
                        serde_json::to_value([document]).map_err(|e| at(e.to_string()))?;
                    sql = touch("", "attachments = attachments || $5, ");
                    keyed(&sql).bind(document)
                }
                WorkOrderEvent::TimerStarted { technician_id, at } => {
                    sql = touch(
                        &format!(
                            "WITH timer AS (INSERT INTO {timers}
                                (tenant_id, work_order_id, technician_id, started_at)
                                VALUES ($1, $2, $5, $6))"
                        ),
                        "",
                    );
                    keyed(&sql).bind(technician_id).bind(at)
                }
                WorkOrderEvent::TimerCancelled { technician_id } => {
                    sql = touch(
                        &format!(
                            "WITH timer AS (DELETE FROM {timers}
                                WHERE tenant_id = $1 AND work_order_id = $2
                                  AND technician_id = $5)"
                        ),
                        "",
                    );
                    keyed(&sql).bind(technician_id)
                }
                WorkOrderEvent::TimeLogged { entry } => {
                    sql = touch(
                        &format!(
                            "WITH entry AS (INSERT INTO {entries} (tenant_id, id,
                                work_order_id, company_id, created_at, {ENTRY_COLUMNS})
                                SELECT $1, $5, $2, o.company_id, $4, {}
                                  FROM {orders} o WHERE o.tenant_id = $1 AND o.id = $2),
                             timer AS (DELETE FROM {timers}
                                WHERE $18 AND tenant_id = $1 AND work_order_id = $2
                                  AND technician_id = $6)",
                            params(6, 12)
                        ),
                        "billable_minutes = billable_minutes + $19,
                         contract_minutes = contract_minutes + $20,
                         billable_amount = billable_amount + $21, ",
                    );
                    let (billable, contract, amount) = match entry.billing {
                        Billing::Billable => (minutes(entry.minutes), 0, entry.amount),
                        Billing::Contract => (0, minutes(entry.minutes), Decimal::ZERO),
                    };
                    let stops_timer = entry.started_at.is_some();
                    bind_entry(keyed(&sql).bind(entry.entry_id), entry)
                        .bind(stops_timer)
                        .bind(billable)
                        .bind(contract)
                        .bind(amount)
                }
                WorkOrderEvent::TimeEntryRemoved { entry_id } => {
                    sql = touch(
                        &format!(
                            "WITH entry AS (DELETE FROM {entries}
                                WHERE tenant_id = $1 AND id = $5 AND work_order_id = $2
                                RETURNING billing, minutes, amount)"
                        ),
                        "billable_minutes = billable_minutes - coalesce((SELECT sum(minutes)
                            FROM entry WHERE billing = 'billable'), 0),
                         contract_minutes = contract_minutes - coalesce((SELECT sum(minutes)
                            FROM entry WHERE billing = 'contract'), 0),
                         billable_amount = billable_amount - coalesce((SELECT sum(amount)
                            FROM entry WHERE billing = 'billable'), 0), ",
                    );
                    keyed(&sql).bind(entry_id)
                }
                WorkOrderEvent::SlaWarningRaised { target, .. } => {
                    sql = touch(
                        "",
                        match target {
                            SlaTarget::Response => "response_warned = true, ",
                            SlaTarget::Resolution => "resolution_warned = true, ",
                        },
                    );
                    keyed(&sql)
                }
                WorkOrderEvent::SlaBreached { target, .. } => {
                    sql = touch(
                        "",
                        match target {
                            SlaTarget::Response => "response_breached = true, ",
                            SlaTarget::Resolution => "resolution_breached = true, ",
                        },
                    );
                    keyed(&sql)
                }
                WorkOrderEvent::StatusLinkIssued {
                    link_id,
                    kind,
                    token_digest,
                    user_id,
                    expires_at,
                    max_uses,
                } => {
                    sql = touch(
                        &format!(
                            "WITH link AS (INSERT INTO {links} (tenant_id, id, work_order_id,
                                kind, token_digest, user_id, expires_at, max_uses, created_at)
                                VALUES ($1, $5, $2, $6, $7, $8, $9, $10, $4))"
                        ),
                        "",
                    );
                    keyed(&sql)
                        .bind(link_id)
                        .bind(kind.as_str())
                        .bind(token_digest)
                        .bind(user_id)
                        .bind(expires_at)
                        .bind(i32::try_from(max_uses).unwrap_or(i32::MAX))
                }
                WorkOrderEvent::StatusLinkRevoked { link_id } => {
                    sql = touch(
                        &format!(
                            "WITH link AS (UPDATE {links} SET revoked = true
                                WHERE tenant_id = $1 AND id = $5 AND work_order_id = $2)"
                        ),
                        "",
                    );
                    keyed(&sql).bind(link_id)
                }
                WorkOrderEvent::StatusLinkUsed { link_id, used } => {
                    sql = touch(
                        &format!(
                            "WITH link AS (UPDATE {links} SET uses = $6
                                WHERE tenant_id = $1 AND id = $5 AND work_order_id = $2)"
                        ),
                        "",
                    );
                    keyed(&sql)
                        .bind(link_id)
                        .bind(i32::try_from(used).unwrap_or(i32::MAX))
                }
                WorkOrderEvent::WorkOrderRated {
                    rating, comment, ..
                } => {
                    sql = touch("", "rating = $5, rating_comment = $6, ");
                    keyed(&sql).bind(i16::from(rating)).bind(comment)
                }
            };
            let done = query
                .execute(&mut *conn)
                .await
                .map_err(|e| at(e.to_string()))?;
            if done.rows_affected() != 1 {
                return Err(at(format!(
                    "{} for work order {id}, which has no row",
                    event.event_type
                )));
            }
        }
        Ok(())
    }
}

/// The columns of a time entry that `bind_entry` binds (12 of them). `invoice_id` stays NULL
/// until issue 7's invoices bill the entry.
const ENTRY_COLUMNS: &str = "technician_id, work_date, minutes, note, billing, after_hours, \
    rate, amount, cost_rate, cost, started_at, ended_at";

fn bind_entry(query: PgQuery<'_>, entry: TimeEntry) -> PgQuery<'_> {
    query
        .bind(entry.technician_id)
        .bind(entry.work_date)
        .bind(minutes(entry.minutes))
        .bind(entry.note)
        .bind(entry.billing.as_str())
        .bind(entry.after_hours)
        .bind(entry.rate.value())
        .bind(entry.amount)
        .bind(entry.cost_rate.value())
        .bind(entry.cost)
        .bind(entry.started_at)
        .bind(entry.ended_at)
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
        "SELECT e.*, coalesce({PERSON_NAME}, '') AS technician_name
           FROM work_order_time_entries e
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

/// Billable time of one company not invoiced yet.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct UnbilledRow {
    pub company_id: Uuid,
    pub company_name: String,
    pub entries: i64,
    pub minutes: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
}

/// Unbilled billable time per company, by company name.
pub async fn unbilled_by_company<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
) -> Result<Vec<UnbilledRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT e.company_id, coalesce(c.name, '') AS company_name, e.entries, e.minutes,
                e.amount
           FROM (SELECT company_id, count(*) AS entries, sum(minutes)::int8 AS minutes,
                        sum(amount) AS amount
                   FROM work_order_time_entries
                  WHERE tenant_id = $1 AND billing = 'billable' AND invoice_id IS NULL
                  GROUP BY company_id) e
           LEFT JOIN companies c ON c.tenant_id = $1 AND c.id = e.company_id
          ORDER BY lower(coalesce(c.name, '')), e.company_id",
    )
    .bind(tenant_id)
    .fetch_all(db)
    .await
    .map(|rows: Vec<UnbilledRow>| {
        rows.into_iter()
            .map(|mut row| {
                row.amount = money(row.amount);
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
        "SELECT coalesce(sum(minutes), 0)::int8, coalesce(sum(amount), 0)::numeric(14,2)
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
