//! Messages for people (invitations, password-reset links) waiting for the notifications
//! service. Until it exists they are kept here and written to the log, where an operator can
//! pass them on. A message's link is a one-time secret that expires.

use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct Message {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Queues a message and logs it.
pub async fn enqueue(
    pool: &PgPool,
    tenant_id: Uuid,
    kind: &str,
    recipient: &str,
    subject: &str,
    body: &str,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO outbox (id, tenant_id, kind, recipient, subject, body)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(kind)
    .bind(recipient)
    .bind(subject)
    .bind(body)
    .execute(pool)
    .await?;
    tracing::info!(target: "outbox", %id, %tenant_id, kind, recipient, subject, body, "message queued (no mail service yet)");
    Ok(id)
}

/// A tenant's unsent messages, newest first.
pub async fn pending(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<Message>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, tenant_id, kind, recipient, subject, body, created_at FROM outbox
          WHERE tenant_id = $1 AND sent_at IS NULL ORDER BY created_at DESC, id DESC",
    )
    .bind(tenant_id)
    .fetch_all(pool)
    .await
}
