//! The outbox consumer: reads the log like a projection (guarded reader, its own checkpoint
//! `notifier` in `projection_checkpoints`, one runner across instances by advisory lock) and
//! queues a notification for each person an event concerns:
//!
//! | event                                   | who                     | message              |
//! |-----------------------------------------|-------------------------|----------------------|
//! | `WorkOrderOpened`                       | the order's contact     | `work_order_created` with a customer link |
//! | `WorkOrderAssigned` (to someone else)   | the technician          | `work_order_assigned` with a technician link |
//! | `WorkOrderStatusChanged` (not to new/assigned) | the order's contact | `work_order_status_changed` with a customer link |
//! | `UserInvited`, `InvitationRenewed`      | the person              | `invitation` (the link the command sealed) |
//! | `PasswordResetRequested`                | the person              | `password_reset` (idem) |
//!
//! A notification's id is derived from the event, the person and the channel, so a batch
//! queued again after a crash appends nothing new. The checkpoint moves after the batch's
//! notifications are queued: at least once, deduplicated by id. A consumer starting for the
//! first time starts at the end of the log: history is never announced.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use commands::{ConflictPolicy, EventMeta};
use domain::company::Company;
use domain::contact::Contact;
use domain::notification::{sms_number, Cause, Channel, Recipient, RecipientKind};
use domain::template::Kind;
use domain::tenant::Tenant;
use domain::user::{User, UserEvent};
use domain::workorder::{
    LinkKind, Status as OrderStatus, WorkOrder, WorkOrderCommand, WorkOrderEvent,
};
use projections::event::{position_from, read_batch};
use projections::runner::Wakeups;
use projections::{Position, StoredEvent};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::queue::{queue, Draft, QueueOutcome, Refusal};
use crate::state::AppState;

/// The consumer's name (its checkpoint row and lock).
pub const NAME: &str = "notifier";

/// Namespace of notification ids.
const NAMESPACE: Uuid = Uuid::from_u128(0x6e6f_7469_6679_4000_8000_0000_0000_0001);

const BATCH: i64 = 200;

/// Events older than this are not announced: the consumer was stopped for long (a message
/// about a status from days ago, or a reset link that has expired, helps nobody).
const MAX_AGE_HOURS: i64 = 24;

/// Runs the consumer until the process ends.
pub async fn run(state: AppState, mut wakeups: Wakeups, poll: Duration) {
    let mut retry = Duration::from_secs(1);
    loop {
        let mut conn = match projections::runner::lock(&state.pool, NAME).await {
            Ok(Some(conn)) => conn,
            Ok(None) => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            Err(error) => {
                tracing::warn!(consumer = NAME, %error, "cannot take the consumer lock");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tracing::info!(consumer = NAME, "notifications consumer started");
        loop {
            match catch_up(&state, &mut conn).await {
                Ok(()) => {
                    retry = Duration::from_secs(1);
                    wakeups.wait(poll).await;
                }
                Err(Failure::Event { position, message }) => {
                    tracing::error!(consumer = NAME, %position, error = %message, "notifications stopped at an event; retrying in {retry:?}");
                    let _ = sqlx::query(
                        "UPDATE projection_checkpoints
                            SET status = 'failed', failed_position = $2, last_error = $3,
                                failed_at = now(), updated_at = now()
                          WHERE name = $1",
                    )
                    .bind(NAME)
                    .bind(position.global_position)
                    .bind(&message)
                    .execute(&mut *conn)
                    .await;
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs(60));
                }
                Err(Failure::Connection(error)) => {
                    tracing::warn!(consumer = NAME, %error, "consumer lost its connection; restarting");
                    let _ = conn.close().await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

enum Failure {
    Event { position: Position, message: String },
    Connection(sqlx::Error),
}

impl From<sqlx::Error> for Failure {
    fn from(error: sqlx::Error) -> Self {
        Self::Connection(error)
    }
}

/// Makes sure the checkpoint exists (at the end of the log when new) and returns it.
pub async fn checkpoint(conn: &mut PgConnection) -> Result<Position, sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, version, tx_id, position)
         SELECT $1, 1, coalesce(max(tx_id), '0'::xid8), coalesce(max(global_position), 0)
           FROM (SELECT tx_id, global_position FROM events
                  ORDER BY tx_id DESC, global_position DESC LIMIT 1) last
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(NAME)
    .execute(&mut *conn)
    .await?;
    let row =
        sqlx::query("SELECT tx_id::text, position FROM projection_checkpoints WHERE name = $1")
            .bind(NAME)
            .fetch_one(&mut *conn)
            .await?;
    Ok(position_from(row.try_get(0)?, row.try_get(1)?))
}

async fn catch_up(state: &AppState, conn: &mut PgConnection) -> Result<(), Failure> {
    let mut from = checkpoint(conn).await?;
    loop {
        let batch = read_batch(&mut *conn, from, Position::END, BATCH).await?;
        let Some(last) = batch.last().map(|e| e.position) else {
            return Ok(());
        };
        for event in &batch {
            if let Err(message) = handle(state, event).await {
                // Everything before this event is queued: keep the checkpoint before it.
                let before = event_before(&batch, event);
                let done = batch
                    .iter()
                    .take_while(|e| e.position != event.position)
                    .count();
                save(conn, from, before, done).await?;
                return Err(Failure::Event {
                    position: event.position,
                    message: format!(
                        "{} {} #{} ({}): {message}",
                        event.aggregate_type, event.aggregate_id, event.sequence, event.event_type
                    ),
                });
            }
        }
        save(conn, from, Some(last), batch.len()).await?;
        from = last;
    }
}

/// The position of the event before `event` in `batch`, if any.
fn event_before(batch: &[StoredEvent], event: &StoredEvent) -> Option<Position> {
    let index = batch.iter().position(|e| e.position == event.position)?;
    index.checked_sub(1).map(|i| batch[i].position)
}

async fn save(
    conn: &mut PgConnection,
    from: Position,
    to: Option<Position>,
    events: usize,
) -> Result<(), sqlx::Error> {
    let Some(to) = to else { return Ok(()) };
    sqlx::query(
        "UPDATE projection_checkpoints
            SET tx_id = $2::int8::text::xid8, position = $3, status = 'running',
                events_applied = events_applied + $6, failed_position = NULL, last_error = NULL,
                failed_at = NULL, updated_at = now()
          WHERE name = $1 AND (tx_id, position) = ($4::int8::text::xid8, $5)",
    )
    .bind(NAME)
    .bind(to.tx_id)
    .bind(to.global_position)
    .bind(from.tx_id)
    .bind(from.global_position)
    .bind(events as i64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Who a message goes to.
#[derive(Debug, Clone, Copy)]
enum Target {
    Contact(Uuid),
    User(Uuid),
}

/// A secret link to issue for a work order before the message is queued.
#[derive(Debug, Clone, Copy)]
struct OrderLink {
    order_id: Uuid,
    kind: LinkKind,
    user_id: Option<Uuid>,
}

struct Planned {
    kind: Kind,
    target: Target,
    values: BTreeMap<String, String>,
    company_id: Option<Uuid>,
    work_order_id: Option<Uuid>,
    order_link: Option<OrderLink>,
    /// A link sealed by the command that caused the event (invitations, resets).
    command_link: Option<Uuid>,
    /// Files to attach to the email (an invoice's PDF).
    attachments: Vec<domain::notification::AttachmentRef>,
}

async fn handle(state: &AppState, event: &StoredEvent) -> Result<(), String> {
    if !matches!(
        event.aggregate_type.as_str(),
        "work_order" | "user" | "ledger"
    ) {
        return Ok(());
    }
    let meta = event.meta.as_ref().map_err(Clone::clone)?;
    let tenant_id = meta.tenant_id;
    let planned = match event.aggregate_type.as_str() {
        "work_order" => plan_work_order(state, event, meta).await?,
        "ledger" => plan_ledger(state, event, meta).await?,
        _ => plan_user(state, event, meta).await?,
    };
    if planned.is_empty() {
        return Ok(());
    }
    if Utc::now() - event.recorded_at > chrono::Duration::hours(MAX_AGE_HOURS) {
        tracing::warn!(
            consumer = NAME,
            aggregate = %event.aggregate_id,
            event = %event.event_type,
            recorded_at = %event.recorded_at,
            "not announcing an event older than {MAX_AGE_HOURS} hours"
        );
        return Ok(());
    }
    let (tenant, _) = state
        .store
        .load::<Tenant>(tenant_id, &tenant_id.to_string())
        .await
        .map_err(|e| e.to_string())?;
    let cause = Cause {
        aggregate_type: event.aggregate_type.clone(),
        aggregate_id: event.aggregate_id.clone(),
        sequence: event.sequence,
        event_type: event.event_type.clone(),
    };
    for mut plan in planned {
        plan.values
            .insert("organisation".into(), tenant.name.clone());
        deliver_plan(state, &tenant, tenant_id, &cause, meta, plan).await?;
    }
    Ok(())
}

async fn plan_work_order(
    state: &AppState,
    event: &StoredEvent,
    meta: &EventMeta,
) -> Result<Vec<Planned>, String> {
    let Ok(payload) = serde_json::from_str::<WorkOrderEvent>(event.payload.get()) else {
        // Event kinds this build does not notify about may be of a newer version.
        return Ok(Vec::new());
    };
    let wanted = match &payload {
        WorkOrderEvent::WorkOrderOpened { .. } => true,
        WorkOrderEvent::WorkOrderAssigned {
            assignee_id: Some(user),
            ..
        } => meta.actor != user.to_string(),
        WorkOrderEvent::WorkOrderStatusChanged { status, .. } => {
            !matches!(status, OrderStatus::New | OrderStatus::Assigned)
        }
        _ => false,
    };
    if !wanted {
        return Ok(Vec::new());
    }
    let tenant_id = meta.tenant_id;
    let order_id = Uuid::parse_str(&event.aggregate_id).map_err(|e| e.to_string())?;
    let (order, _) = state
        .store
        .load::<WorkOrder>(tenant_id, &event.aggregate_id)
        .await
        .map_err(|e| e.to_string())?;
    let (company, _) = state
        .store
        .load::<Company>(tenant_id, &order.company_id.to_string())
        .await
        .map_err(|e| e.to_string())?;
    let mut values = BTreeMap::from([
        ("company".to_string(), company.name.clone()),
        ("work_order".to_string(), format!("#{}", order.number)),
        ("title".to_string(), order.details.title.clone()),
        ("priority".to_string(), order.priority.as_str().to_string()),
    ]);
    let customer = |kind: Kind, values: BTreeMap<String, String>| {
        order.details.contact_id.map(|contact_id| Planned {
            kind,
            target: Target::Contact(contact_id),
            values,
            company_id: Some(order.company_id),
            work_order_id: Some(order_id),
            order_link: Some(OrderLink {
                order_id,
                kind: LinkKind::Customer,
                user_id: None,
            }),
            command_link: None,
            attachments: Vec::new(),
        })
    };
    Ok(match payload {
        WorkOrderEvent::WorkOrderOpened { .. } => customer(Kind::WorkOrderCreated, values)
            .into_iter()
            .collect(),
        WorkOrderEvent::WorkOrderStatusChanged { status, .. } => {
            values.insert("status".into(), status.label().into());
            customer(Kind::WorkOrderStatusChanged, values)
                .into_iter()
                .collect()
        }
        WorkOrderEvent::WorkOrderAssigned {
            assignee_id: Some(user_id),
            ..
        } => {
            let (tenant, _) = state
                .store
                .load::<Tenant>(tenant_id, &tenant_id.to_string())
                .await
                .map_err(|e| e.to_string())?;
            let due = match &order.sla {
                Some(sla) => {
                    let zone = tenant.business_hours().time_zone;
                    format!(
                        "Resolution is due by {}.",
                        sla.resolution_due_at
                            .with_timezone(&zone.tz())
                            .format("%Y-%m-%d %H:%M %Z")
                    )
                }
                None => "No SLA applies.".into(),
            };
            values.insert("due".into(), due);
            vec![Planned {
                kind: Kind::WorkOrderAssigned,
                target: Target::User(user_id),
                values,
                company_id: Some(order.company_id),
                work_order_id: Some(order_id),
                order_link: Some(OrderLink {
                    order_id,
                    kind: LinkKind::Technician,
                    user_id: Some(user_id),
                }),
                command_link: None,
                attachments: Vec::new(),
            }]
        }
        _ => Vec::new(),
    })
}

async fn plan_user(
    state: &AppState,
    event: &StoredEvent,
    meta: &EventMeta,
) -> Result<Vec<Planned>, String> {
    let Ok(payload) = serde_json::from_str::<UserEvent>(event.payload.get()) else {
        return Ok(Vec::new());
    };
    let kind = match payload {
        UserEvent::UserInvited { .. } | UserEvent::InvitationRenewed { .. } => Kind::Invitation,
        UserEvent::PasswordResetRequested { .. } => Kind::PasswordReset,
        _ => return Ok(Vec::new()),
    };
    let user_id = Uuid::parse_str(&event.aggregate_id).map_err(|e| e.to_string())?;
    let mut values = BTreeMap::new();
    if kind == Kind::Invitation {
        let (tenant, _) = state
            .store
            .load::<Tenant>(meta.tenant_id, &meta.tenant_id.to_string())
            .await
            .map_err(|e| e.to_string())?;
        if let Some(member) = tenant.members.get(&user_id) {
            values.insert("role".into(), member.role.as_str().to_string());
        }
    }
    Ok(vec![Planned {
        kind,
        target: Target::User(user_id),
        values,
        company_id: None,
        work_order_id: None,
        order_link: None,
        command_link: Some(commands::identity::link_secret_id(meta.command_id)),
        attachments: Vec::new(),
    }])
}

/// Invoices issued, payments received and overdue reminders go to the company's billing
/// contacts (an issued invoice with its PDF attached).
async fn plan_ledger(
    state: &AppState,
    event: &StoredEvent,
    meta: &EventMeta,
) -> Result<Vec<Planned>, String> {
    use domain::ledger::{Ledger, LedgerEvent};
    let Ok(payload) = serde_json::from_str::<LedgerEvent>(event.payload.get()) else {
        return Ok(Vec::new());
    };
    let kind = match &payload {
        LedgerEvent::InvoiceIssued { .. } => Kind::InvoiceIssued,
        LedgerEvent::PaymentReceived { .. } => Kind::PaymentReceived,
        LedgerEvent::OverdueReminderDue { .. } => Kind::PaymentReminder,
        _ => return Ok(Vec::new()),
    };
    let tenant_id = meta.tenant_id;
    let company_id = Uuid::parse_str(&event.aggregate_id).map_err(|e| e.to_string())?;
    let (ledger, _) = state
        .store
        .load::<Ledger>(tenant_id, &event.aggregate_id)
        .await
        .map_err(|e| e.to_string())?;
    let (company, _) = state
        .store
        .load::<Company>(tenant_id, &event.aggregate_id)
        .await
        .map_err(|e| e.to_string())?;
    let (tenant, _) = state
        .store
        .load::<Tenant>(tenant_id, &tenant_id.to_string())
        .await
        .map_err(|e| e.to_string())?;
    let currency = tenant
        .currency
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default();
    let amount = |value: rust_decimal::Decimal| {
        format!("{} {currency}", crate::billing::documents::money(value))
            .trim()
            .to_owned()
    };
    let mut values = BTreeMap::from([("company".to_string(), company.name.clone())]);
    let mut attachments = Vec::new();
    match &payload {
        LedgerEvent::InvoiceIssued {
            invoice_id,
            number,
            due_date,
            total,
            ..
        } => {
            values.insert("invoice".into(), number.to_string());
            values.insert("amount".into(), amount(*total));
            values.insert("due_date".into(), due_date.to_string());
            // The PDF as it is now (paid from credit already, if it was).
            if let Some(invoice) = ledger.invoices.get(invoice_id) {
                let document =
                    crate::billing::documents::invoice_document(&tenant, &company, invoice);
                let bytes = crate::pdf::invoice_pdf(&document);
                let sha256 = commands::identity::token_digest_bytes(&bytes);
                sqlx::query(
                    "INSERT INTO asset_document_blobs (tenant_id, sha256, content)
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(tenant_id)
                .bind(&sha256)
                .bind(&bytes)
                .execute(&state.pool)
                .await
                .map_err(|e| e.to_string())?;
                attachments.push(domain::notification::AttachmentRef {
                    file_name: format!("Invoice {number}.pdf"),
                    content_type: "application/pdf".into(),
                    sha256,
                    size: bytes.len() as u64,
                });
            }
        }
        LedgerEvent::PaymentReceived {
            amount: paid,
            received_on,
            ..
        } => {
            values.insert("amount".into(), amount(*paid));
            values.insert("received_on".into(), received_on.to_string());
            values.insert("balance".into(), amount(ledger.balance()));
        }
        LedgerEvent::OverdueReminderDue { invoice_id, on, .. } => {
            let Some(invoice) = ledger.invoices.get(invoice_id) else {
                return Ok(Vec::new());
            };
            if invoice.balance() <= rust_decimal::Decimal::ZERO {
                return Ok(Vec::new());
            }
            let due = invoice.due_date.unwrap_or(*on);
            values.insert(
                "invoice".into(),
                invoice.number.unwrap_or_default().to_string(),
            );
            values.insert("amount".into(), amount(invoice.balance()));
            values.insert("due_date".into(), due.to_string());
            values.insert("days_overdue".into(), (*on - due).num_days().to_string());
        }
        _ => {}
    }
    let contacts = projections::contacts::billing_of(&state.pool, tenant_id, &[company_id])
        .await
        .map_err(|e| e.to_string())?;
    Ok(contacts
        .into_iter()
        .map(|(_, contact_id)| Planned {
            kind,
            target: Target::Contact(contact_id),
            values: values.clone(),
            company_id: Some(company_id),
            work_order_id: None,
            order_link: None,
            command_link: None,
            attachments: attachments.clone(),
        })
        .collect())
}

/// The channels a person is reached on, or why none.
struct Reach {
    recipient_name: String,
    recipient_kind: RecipientKind,
    recipient_id: Uuid,
    channels: Vec<(Channel, String)>,
    skip: Option<(String, String)>,
}

async fn reach(state: &AppState, tenant_id: Uuid, target: Target) -> Result<Option<Reach>, String> {
    match target {
        Target::Contact(id) => {
            let (contact, _) = state
                .store
                .load::<Contact>(tenant_id, &id.to_string())
                .await
                .map_err(|e| e.to_string())?;
            if !contact.exists {
                return Ok(None);
            }
            let d = &contact.details;
            let prefs = contact.notifications;
            let email = d.email.as_ref().map(|e| e.as_str().to_owned());
            let phone = sms_number(&d.cell_phone);
            let mut channels = Vec::new();
            if let (Some(email), true) = (&email, prefs.email) {
                channels.push((Channel::Email, email.clone()));
            }
            if let (Some(phone), true) = (&phone, prefs.sms) {
                channels.push((Channel::Sms, phone.clone()));
            }
            let any_address = email
                .clone()
                .or_else(|| phone.clone())
                .unwrap_or_else(|| d.cell_phone.trim().to_owned());
            let skip = if contact.former {
                Some(format!("{} has left the company", d.name))
            } else if prefs.opted_out {
                Some(format!("{} opted out of notifications", d.name))
            } else if channels.is_empty() {
                Some(
                    if email.is_none() && phone.is_none() && !d.cell_phone.trim().is_empty() {
                        format!(
                        "{} has no email address, and the cell phone {} has no country code (+…)",
                        d.name,
                        d.cell_phone.trim()
                    )
                    } else if email.is_none() && phone.is_none() {
                        format!("{} has no email address or cell phone", d.name)
                    } else {
                        format!("{} has switched these notifications off", d.name)
                    },
                )
            } else {
                None
            };
            Ok(Some(Reach {
                recipient_name: d.name.clone(),
                recipient_kind: RecipientKind::Contact,
                recipient_id: id,
                channels: if skip.is_some() { Vec::new() } else { channels },
                skip: skip.map(|reason| (reason, any_address)),
            }))
        }
        Target::User(id) => {
            let (user, _) = state
                .store
                .load::<User>(tenant_id, &id.to_string())
                .await
                .map_err(|e| e.to_string())?;
            if !user.exists {
                return Ok(None);
            }
            Ok(Some(Reach {
                recipient_name: user.name.clone(),
                recipient_kind: RecipientKind::User,
                recipient_id: id,
                channels: vec![(Channel::Email, user.email.clone())],
                skip: None,
            }))
        }
    }
}

/// A stable key of (cause, person): the notification ids and the link derive from it.
fn plan_key(tenant_id: Uuid, cause: &Cause, kind: Kind, person: Uuid) -> Uuid {
    Uuid::new_v5(
        &NAMESPACE,
        format!(
            "{tenant_id}/{}/{}/{}/{}/{person}",
            cause.aggregate_type,
            cause.aggregate_id,
            cause.sequence,
            kind.as_str()
        )
        .as_bytes(),
    )
}

async fn deliver_plan(
    state: &AppState,
    tenant: &Tenant,
    tenant_id: Uuid,
    cause: &Cause,
    cause_meta: &EventMeta,
    mut plan: Planned,
) -> Result<(), String> {
    let person = match plan.target {
        Target::Contact(id) | Target::User(id) => id,
    };
    let Some(reach) = reach(state, tenant_id, plan.target).await? else {
        return Ok(());
    };
    for name in ["contact", "technician", "name"] {
        if plan.values.contains_key(name) || plan.kind.placeholders().contains(&name) {
            plan.values
                .insert(name.to_string(), reach.recipient_name.clone());
        }
    }
    let key = plan_key(tenant_id, cause, plan.kind, person);
    let meta_for = |id: Uuid| {
        EventMeta::new(tenant_id, NAME)
            .with_command_id(Uuid::new_v5(&id, b"queue"))
            .with_correlation(cause_meta.correlation_id, Some(cause_meta.command_id))
    };
    let mut draft = Draft {
        tenant_id,
        kind: plan.kind,
        recipient: Recipient {
            kind: reach.recipient_kind,
            id: Some(reach.recipient_id),
            name: reach.recipient_name.clone(),
            address: String::new(),
        },
        cause: Some(cause.clone()),
        company_id: plan.company_id,
        work_order_id: plan.work_order_id,
        values: plan.values.clone(),
        link_secret: plan.command_link,
        attachments: plan.attachments.clone(),
        resend_of: None,
    };
    if let Some((reason, address)) = reach.skip {
        let id = Uuid::new_v5(&key, b"skipped");
        draft.recipient.address = address;
        let refusal = Refusal {
            reason,
            skipped: true,
        };
        queue(
            state,
            tenant,
            &draft,
            Channel::Email,
            id,
            Some(refusal),
            &meta_for(id),
        )
        .await?;
        return Ok(());
    }
    if let Some(link) = plan.order_link {
        match order_link(state, tenant_id, key, link).await? {
            Ok(secret) => draft.link_secret = Some(secret),
            Err(refused) => {
                // The message cannot carry its link: record it as failed, saying why.
                let id = Uuid::new_v5(&key, b"no-link");
                draft.recipient.address = reach
                    .channels
                    .first()
                    .map(|(_, a)| a.clone())
                    .unwrap_or_default();
                let refusal = Refusal {
                    reason: format!("the work order's status link could not be issued: {refused}"),
                    skipped: false,
                };
                queue(
                    state,
                    tenant,
                    &draft,
                    Channel::Email,
                    id,
                    Some(refusal),
                    &meta_for(id),
                )
                .await?;
                return Ok(());
            }
        }
    }
    for (channel, address) in reach.channels {
        let id = Uuid::new_v5(&key, channel.as_str().as_bytes());
        draft.recipient.address = address;
        match queue(state, tenant, &draft, channel, id, None, &meta_for(id)).await? {
            QueueOutcome::Queued(_) | QueueOutcome::NotForChannel => {}
            QueueOutcome::Refused(id, reason) => {
                tracing::warn!(%id, %reason, "notification refused");
            }
        }
    }
    Ok(())
}

/// Issues the work order's status link for a message (once per cause and person) and seals
/// its address; returns the sealed set's id, or why the order refused the link (outer error:
/// the database failed, try the event again).
async fn order_link(
    state: &AppState,
    tenant_id: Uuid,
    key: Uuid,
    link: OrderLink,
) -> Result<Result<Uuid, String>, String> {
    let secret_id = Uuid::new_v5(&key, b"link");
    let existing = super::queue::open_link(state, tenant_id, secret_id).await?;
    let url = match existing {
        Some(url) => url,
        None => {
            let (token, _) = commands::identity::new_token("");
            let url = format!(
                "{}/l/{}/{token}",
                state.settings().public_url,
                link.order_id
            );
            super::queue::seal_link(state, tenant_id, link.order_id, secret_id, &url).await?;
            // Another consumer run may have sealed first: use what is stored.
            super::queue::open_link(state, tenant_id, secret_id)
                .await?
                .ok_or("the sealed link is missing")?
        }
    };
    let token = url.rsplit('/').next().unwrap_or_default();
    let meta = EventMeta::new(tenant_id, NAME).with_command_id(Uuid::new_v5(&key, b"issue-link"));
    let issued = state
        .store
        .execute::<WorkOrder>(
            &link.order_id.to_string(),
            WorkOrderCommand::IssueLink {
                link_id: Uuid::new_v5(&key, b"status-link"),
                kind: link.kind,
                token_digest: commands::identity::token_digest(token),
                user_id: link.user_id,
                now: Utc::now(),
            },
            &(),
            &meta,
            ConflictPolicy::Busy,
        )
        .await;
    match issued {
        Ok(_) => Ok(Ok(secret_id)),
        Err(commands::CommandError::Domain(refused)) => Ok(Err(refused.to_string())),
        Err(e) => Err(e.to_string()),
    }
}
