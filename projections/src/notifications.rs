//! The `notifications` read model: the delivery log (one row per notification, what became of
//! it) and the delivery worker's queue. The message itself is not copied here: the log page
//! reads it from the notification's `NotificationQueued` event.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use commands::StoredAggregate;
use domain::notification::{delivery_status, Notification, NotificationEvent, Status};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, QueryBuilder};
use uuid::Uuid;

use crate::{ApplyError, Projection, StoredEvent, Tables};

pub struct NotificationsProjection;

pub const NAME: &str = "notifications";

fn decode(event: &StoredEvent) -> Result<NotificationEvent, String> {
    if event.event_version == "1" {
        serde_json::from_str(event.payload.get()).map_err(|e| e.to_string())
    } else {
        let serialized = event.to_serialized().map_err(|e| e.to_string())?;
        commands::store::decode(&commands::store::upcast(
            serialized,
            &Notification::upcasters(),
        ))
    }
}

#[async_trait]
impl Projection for NotificationsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["notifications"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        tables: &Tables,
        events: &[StoredEvent],
    ) -> Result<(), ApplyError> {
        let table = tables.get(0);
        for (index, event) in events.iter().enumerate() {
            if event.aggregate_type != "notification" {
                continue;
            }
            let at = |e: String| ApplyError::at(index, e);
            let id = Uuid::parse_str(&event.aggregate_id)
                .map_err(|_| at(format!("notification id {:?}", event.aggregate_id)))?;
            let tenant_id = event.meta.as_ref().map_err(|e| at(e.clone()))?.tenant_id;
            let when = event.recorded_at;
            let update = |set: &str| {
                format!(
                    "UPDATE {table} SET {set}, updated_at = $3 WHERE tenant_id = $1 AND id = $2"
                )
            };
            let result = match decode(event).map_err(at)? {
                NotificationEvent::NotificationQueued(queued) => {
                    insert(
                        &mut *conn,
                        table,
                        tenant_id,
                        id,
                        &queued,
                        Status::Queued,
                        None,
                        when,
                    )
                    .await
                }
                NotificationEvent::NotificationRefused {
                    queued,
                    reason,
                    skipped,
                } => {
                    insert(
                        &mut *conn,
                        table,
                        tenant_id,
                        id,
                        &queued,
                        if skipped {
                            Status::Skipped
                        } else {
                            Status::Failed
                        },
                        Some(&reason),
                        when,
                    )
                    .await
                }
                NotificationEvent::NotificationSkipped { reason } => {
                    sqlx::query(&update(
                        "status = 'skipped', last_error = $4, retry_at = NULL",
                    ))
                    .bind(tenant_id)
                    .bind(id)
                    .bind(when)
                    .bind(reason)
                    .execute(&mut *conn)
                    .await
                }
                NotificationEvent::NotificationAttempted {
                    attempt, provider, ..
                } => {
                    sqlx::query(&update(
                        "status = 'sending', attempts = $4, provider = $5, retry_at = NULL",
                    ))
                    .bind(tenant_id)
                    .bind(id)
                    .bind(when)
                    .bind(attempt as i32)
                    .bind(provider)
                    .execute(&mut *conn)
                    .await
                }
                NotificationEvent::NotificationSent {
                    provider_message_id,
                    at: sent_at,
                    ..
                } => sqlx::query(&update(
                    "status = 'sent', provider_message_id = $4, sent_at = $5, last_error = NULL",
                ))
                .bind(tenant_id)
                .bind(id)
                .bind(when)
                .bind(provider_message_id)
                .bind(sent_at)
                .execute(&mut *conn)
                .await,
                NotificationEvent::NotificationFailed {
                    error,
                    permanent,
                    retry_at,
                    ..
                } => {
                    sqlx::query(&update("status = $4, last_error = $5, retry_at = $6"))
                        .bind(tenant_id)
                        .bind(id)
                        .bind(when)
                        .bind(if permanent { "failed" } else { "retrying" })
                        .bind(error)
                        .bind(retry_at)
                        .execute(&mut *conn)
                        .await
                }
                NotificationEvent::NotificationUnconfirmed { .. } => {
                    sqlx::query(&update("status = 'unconfirmed'"))
                        .bind(tenant_id)
                        .bind(id)
                        .bind(when)
                        .execute(&mut *conn)
                        .await
                }
                NotificationEvent::NotificationDeliveryReported {
                    status, error_code, ..
                } => {
                    let next = delivery_status(&status).map(Status::as_str);
                    sqlx::query(&update(
                        "status = coalesce($4, status), delivery = $5,
                         last_error = coalesce($6, last_error)",
                    ))
                    .bind(tenant_id)
                    .bind(id)
                    .bind(when)
                    .bind(next)
                    .bind(status)
                    .bind(error_code.map(|c| format!("provider error {c}")))
                    .execute(&mut *conn)
                    .await
                }
            };
            let done = result.map_err(|e| at(e.to_string()))?;
            if done.rows_affected() != 1 {
                return Err(at(format!(
                    "notification {id} of tenant {tenant_id}: no row to update"
                )));
            }
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
async fn insert(
    conn: &mut PgConnection,
    table: &str,
    tenant_id: Uuid,
    id: Uuid,
    queued: &domain::notification::Queued,
    status: Status,
    error: Option<&str>,
    when: DateTime<Utc>,
) -> Result<sqlx::postgres::PgQueryResult, sqlx::Error> {
    let recipient_kind = serde_json::to_value(queued.recipient.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    sqlx::query(&format!(
        "INSERT INTO {table} (tenant_id, id, kind, channel, recipient_kind, recipient_id,
            recipient_name, address, company_id, work_order_id, subject, status, last_error,
            queued_at, updated_at, resend_of)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15)"
    ))
    .bind(tenant_id)
    .bind(id)
    .bind(queued.kind.as_str())
    .bind(queued.channel.as_str())
    .bind(recipient_kind)
    .bind(queued.recipient.id)
    .bind(&queued.recipient.name)
    .bind(&queued.recipient.address)
    .bind(queued.company_id)
    .bind(queued.work_order_id)
    .bind(summary_subject(queued))
    .bind(status.as_str())
    .bind(error)
    .bind(when)
    .bind(queued.resend_of)
    .execute(conn)
    .await
}

/// The log's one-line subject: the email's subject, or the start of the SMS.
fn summary_subject(queued: &domain::notification::Queued) -> String {
    if !queued.content.subject.is_empty() {
        return queued.content.subject.clone();
    }
    let text = queued.content.text.replace('\n', " ");
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// One row of the delivery log.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct NotificationRow {
    pub id: Uuid,
    pub kind: String,
    pub channel: String,
    pub recipient_kind: String,
    pub recipient_id: Option<Uuid>,
    pub recipient_name: String,
    pub address: String,
    pub company_id: Option<Uuid>,
    pub work_order_id: Option<Uuid>,
    pub subject: String,
    pub status: String,
    pub attempts: i32,
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    pub last_error: Option<String>,
    pub delivery: Option<String>,
    pub retry_at: Option<DateTime<Utc>>,
    pub queued_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub resend_of: Option<Uuid>,
}

const COLUMNS: &str = "id, kind, channel, recipient_kind, recipient_id, recipient_name, address,
    company_id, work_order_id, subject, status, attempts, provider, provider_message_id,
    last_error, delivery, retry_at, queued_at, sent_at, updated_at, resend_of";

/// The delivery log's filters; empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<Status>,
    pub kind: Option<String>,
    pub channel: Option<String>,
    /// Part of the address or the recipient's name (case-insensitive).
    pub recipient: Option<String>,
    pub company_id: Option<Uuid>,
    pub work_order_id: Option<Uuid>,
    /// Rows queued before this one (keyset: `(queued_at, id)`), for "Older".
    pub before: Option<(DateTime<Utc>, Uuid)>,
}

/// Up to `limit` rows of the log, newest first.
pub async fn list<'e>(
    executor: impl PgExecutor<'e>,
    tenant_id: Uuid,
    filter: &Filter,
    limit: i64,
) -> Result<Vec<NotificationRow>, sqlx::Error> {
    let mut q = QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM notifications WHERE tenant_id = "
    ));
    q.push_bind(tenant_id);
    if let Some(status) = filter.status {
        q.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(kind) = &filter.kind {
        q.push(" AND kind = ").push_bind(kind.clone());
    }
    if let Some(channel) = &filter.channel {
        q.push(" AND channel = ").push_bind(channel.clone());
    }
    if let Some(text) = filter.recipient.as_deref().filter(|t| !t.trim().is_empty()) {
        let pattern = format!("%{}%", escape_like(text.trim()));
        q.push(" AND (address ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR recipient_name ILIKE ")
            .push_bind(pattern)
            .push(")");
    }
    if let Some(company_id) = filter.company_id {
        q.push(" AND company_id = ").push_bind(company_id);
    }
    if let Some(work_order_id) = filter.work_order_id {
        q.push(" AND work_order_id = ").push_bind(work_order_id);
    }
    if let Some((at, id)) = filter.before {
        q.push(" AND (queued_at, id) < (")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    q.push(" ORDER BY queued_at DESC, id DESC LIMIT ")
        .push_bind(limit);
    q.build_query_as().fetch_all(executor).await
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

pub async fn get<'e>(
    executor: impl PgExecutor<'e>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<NotificationRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM notifications WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(executor)
    .await
}

/// The notification a provider's message id belongs to (status callbacks).
pub async fn by_provider_id<'e>(
    executor: impl PgExecutor<'e>,
    tenant_id: Uuid,
    provider_message_id: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM notifications WHERE tenant_id = $1 AND provider_message_id = $2
          ORDER BY queued_at DESC LIMIT 1",
    )
    .bind(tenant_id)
    .bind(provider_message_id)
    .fetch_optional(executor)
    .await
}

/// A notification the delivery worker should look at.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Due {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub status: String,
    pub attempts: i32,
}

/// Across tenants: messages waiting to be sent (queued, or retrying whose time has come) and
/// messages a worker was handing over (`sending`), oldest first.
pub async fn due<'e>(
    executor: impl PgExecutor<'e>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tenant_id, id, status, attempts FROM notifications
          WHERE status IN ('queued', 'retrying', 'sending')
            AND (retry_at IS NULL OR retry_at <= $1)
          ORDER BY retry_at NULLS FIRST, queued_at
          LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(executor)
    .await
}

/// The earliest `retry_at` still ahead (the worker sleeps until then at most).
pub async fn next_retry<'e>(
    executor: impl PgExecutor<'e>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT min(retry_at) FROM notifications
          WHERE status IN ('queued', 'retrying', 'sending') AND retry_at IS NOT NULL",
    )
    .fetch_one(executor)
    .await
}

/// How many notifications of the tenant are in each status (the log's header).
pub async fn counts<'e>(
    executor: impl PgExecutor<'e>,
    tenant_id: Uuid,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT status, count(*) FROM notifications WHERE tenant_id = $1 GROUP BY status
          ORDER BY status",
    )
    .bind(tenant_id)
    .fetch_all(executor)
    .await
}
