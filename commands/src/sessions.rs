//! Console sessions, stored in PostgreSQL. The browser holds a random secret in an HttpOnly
//! cookie; the table holds only its SHA-256 digest, so reading the table signs nobody in.
//! A session ends at sign-out, after `IDLE` without use, after `LIFETIME` in any case, when
//! its person changes or resets their password, or when they sign out their other sessions.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::identity::{new_token, token_digest};

/// A session unused for this long has ended.
pub const IDLE: Duration = Duration::hours(12);
/// A session ends this long after sign-in whatever happens.
pub const LIFETIME: Duration = Duration::days(14);
/// `last_seen_at` is written at most this often (not on every request).
pub const TOUCH_EVERY: Duration = Duration::minutes(1);

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Session {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub user_agent: String,
    pub address: String,
}

/// Starts a session; returns the cookie's secret (shown to the browser only) and the session.
pub async fn start(
    pool: &PgPool,
    tenant_id: Uuid,
    user_id: Uuid,
    user_agent: &str,
    address: &str,
) -> Result<(String, Session), sqlx::Error> {
    let (secret, digest) = new_token("ss_");
    let now = Utc::now();
    let user_agent: String = user_agent.chars().take(300).collect();
    let session: Session = sqlx::query_as(
        "INSERT INTO sessions (id, secret_digest, tenant_id, user_id, created_at, last_seen_at,
                               expires_at, user_agent, address)
         VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8)
         RETURNING id, tenant_id, user_id, created_at, last_seen_at, expires_at, user_agent, address",
    )
    .bind(Uuid::now_v7())
    .bind(digest)
    .bind(tenant_id)
    .bind(user_id)
    .bind(now)
    .bind(now + LIFETIME)
    .bind(user_agent)
    .bind(address)
    .fetch_one(pool)
    .await?;
    Ok((secret, session))
}

/// The live session whose cookie secret is `secret` (idle and expired ones are not).
pub async fn find(pool: &PgPool, secret: &str) -> Result<Option<Session>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, tenant_id, user_id, created_at, last_seen_at, expires_at, user_agent, address
           FROM sessions
          WHERE secret_digest = $1 AND expires_at > now() AND last_seen_at > now() - $2",
    )
    .bind(token_digest(secret))
    .bind(IDLE)
    .fetch_optional(pool)
    .await
}

/// Records use of the session (at most once per `TOUCH_EVERY`).
pub async fn touch(pool: &PgPool, session: &Session) -> Result<(), sqlx::Error> {
    if Utc::now() - session.last_seen_at < TOUCH_EVERY {
        return Ok(());
    }
    sqlx::query("UPDATE sessions SET last_seen_at = now() WHERE id = $1")
        .bind(session.id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Ends the session with this cookie secret (sign-out).
pub async fn end_by_secret(pool: &PgPool, secret: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE secret_digest = $1")
        .bind(token_digest(secret))
        .execute(pool)
        .await?;
    Ok(())
}

/// Ends one of `user_id`'s sessions; false when they have no such session.
pub async fn end(pool: &PgPool, user_id: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id = $2")
        .bind(user_id)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Ends every session of `user_id` but `keep` (all of them when `keep` is `None`); returns
/// how many ended.
pub async fn end_all(pool: &PgPool, user_id: Uuid, keep: Option<Uuid>) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id IS DISTINCT FROM $2")
        .bind(user_id)
        .bind(keep)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// `user_id`'s live sessions, newest first.
pub async fn list(pool: &PgPool, user_id: Uuid) -> Result<Vec<Session>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, tenant_id, user_id, created_at, last_seen_at, expires_at, user_agent, address
           FROM sessions
          WHERE user_id = $1 AND expires_at > now() AND last_seen_at > now() - $2
          ORDER BY created_at DESC, id",
    )
    .bind(user_id)
    .bind(IDLE)
    .fetch_all(pool)
    .await
}

/// Deletes ended sessions (run from time to time; ended ones are never used anyway).
pub async fn purge(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let done =
        sqlx::query("DELETE FROM sessions WHERE expires_at <= now() OR last_seen_at <= now() - $1")
            .bind(IDLE)
            .execute(pool)
            .await?;
    Ok(done.rows_affected())
}
