//! The `credentials` read model: the visible part of the vault (labels, usernames, which
//! secrets exist, reveal counts) and its share links. Never a secret: those stay sealed in
//! `vault_secrets`, which no projection reads.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use commands::StoredAggregate;
use domain::credential::{Credential, CredentialEvent};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::{ApplyError, Projection, StoredEvent, Tables};

pub struct CredentialsProjection;

pub(crate) fn decode(event: &StoredEvent) -> Result<CredentialEvent, String> {
    if event.event_version == "1" {
        serde_json::from_str(event.payload.get()).map_err(|e| e.to_string())
    } else {
        let serialized = event.to_serialized().map_err(|e| e.to_string())?;
        commands::store::decode(&commands::store::upcast(
            serialized,
            &Credential::upcasters(),
        ))
    }
}

#[async_trait]
impl Projection for CredentialsProjection {
    fn name(&self) -> &'static str {
        "credentials"
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["credentials", "credential_shares"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        tables: &Tables,
        events: &[StoredEvent],
    ) -> Result<(), ApplyError> {
        let (credentials, shares) = (tables.get(0), tables.get(1));
        for (index, event) in events.iter().enumerate() {
            if event.aggregate_type != "credential" {
                continue;
            }
            let at = |e: String| ApplyError::at(index, e);
            let id = Uuid::parse_str(&event.aggregate_id)
                .map_err(|_| at(format!("credential id {:?}", event.aggregate_id)))?;
            let meta = event.meta.as_ref().map_err(|e| at(e.clone()))?;
            let tenant_id = meta.tenant_id;
            // Every event but a share's changes the credential row's version.
            let touch = |extra: &str| {
                format!(
                    "UPDATE {credentials} SET {extra}version = $3, updated_at = $4
                      WHERE tenant_id = $1 AND id = $2"
                )
            };
            let sql = match decode(event).map_err(at)? {
                CredentialEvent::CredentialAdded {
                    company_id,
                    asset_id,
                    details,
                    secret,
                } => {
                    sqlx::query(&format!(
                        "INSERT INTO {credentials} (tenant_id, id, company_id, asset_id, label,
                            username, url, secret_id, has_password, has_totp, has_notes,
                            version, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)"
                    ))
                    .bind(tenant_id)
                    .bind(id)
                    .bind(company_id)
                    .bind(asset_id)
                    .bind(details.label)
                    .bind(details.username)
                    .bind(details.url)
                    .bind(secret.secret_id)
                    .bind(secret.has_password)
                    .bind(secret.has_totp)
                    .bind(secret.has_notes)
                    .bind(event.sequence)
                    .bind(event.recorded_at)
                    .execute(&mut *conn)
                    .await
                }
                CredentialEvent::CredentialUpdated { details } => {
                    sqlx::query(&touch("label = $5, username = $6, url = $7, "))
                        .bind(tenant_id)
                        .bind(id)
                        .bind(event.sequence)
                        .bind(event.recorded_at)
                        .bind(details.label)
                        .bind(details.username)
                        .bind(details.url)
                        .execute(&mut *conn)
                        .await
                }
                CredentialEvent::CredentialSecretChanged { secret } => {
                    sqlx::query(&touch(
                        "secret_id = $5, has_password = $6, has_totp = $7, has_notes = $8, ",
                    ))
                    .bind(tenant_id)
                    .bind(id)
                    .bind(event.sequence)
                    .bind(event.recorded_at)
                    .bind(secret.secret_id)
                    .bind(secret.has_password)
                    .bind(secret.has_totp)
                    .bind(secret.has_notes)
                    .execute(&mut *conn)
                    .await
                }
                CredentialEvent::CredentialRevealed { .. } => {
                    sqlx::query(&touch(
                        "reveals = reveals + 1, last_revealed_at = $4, last_revealed_by = $5, ",
                    ))
                    .bind(tenant_id)
                    .bind(id)
                    .bind(event.sequence)
                    .bind(event.recorded_at)
                    .bind(&meta.actor)
                    .execute(&mut *conn)
                    .await
                }
                CredentialEvent::CredentialRemoved {} => {
                    sqlx::query(&touch("removed = true, "))
                        .bind(tenant_id)
                        .bind(id)
                        .bind(event.sequence)
                        .bind(event.recorded_at)
                        .execute(&mut *conn)
                        .await
                }
                CredentialEvent::CredentialShared {
                    share_id,
                    token_digest,
                    expires_at,
                    max_views,
                } => {
                    sqlx::query(&format!(
                        "INSERT INTO {shares} (tenant_id, id, credential_id, token_digest,
                            expires_at, max_views, created_by, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    ))
                    .bind(tenant_id)
                    .bind(share_id)
                    .bind(id)
                    .bind(token_digest)
                    .bind(expires_at)
                    .bind(max_views as i32)
                    .bind(&meta.actor)
                    .bind(event.recorded_at)
                    .execute(&mut *conn)
                    .await
                }
                CredentialEvent::CredentialShareRevoked { share_id } => {
                    sqlx::query(&format!(
                        "UPDATE {shares} SET revoked = true WHERE tenant_id = $1 AND id = $2"
                    ))
                    .bind(tenant_id)
                    .bind(share_id)
                    .execute(&mut *conn)
                    .await
                }
                CredentialEvent::CredentialShareViewed { share_id, view, .. } => {
                    sqlx::query(&format!(
                        "UPDATE {shares} SET views = $3 WHERE tenant_id = $1 AND id = $2"
                    ))
                    .bind(tenant_id)
                    .bind(share_id)
                    .bind(view as i32)
                    .execute(&mut *conn)
                    .await
                }
            };
            let done = sql.map_err(|e| at(e.to_string()))?;
            if done.rows_affected() != 1 {
                return Err(at(format!(
                    "{} for credential {id}, which has no row",
                    event.event_type
                )));
            }
        }
        Ok(())
    }
}

/// One credential as the pages and the API show it (no secret).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct CredentialRow {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub company_id: Uuid,
    pub asset_id: Option<Uuid>,
    pub label: String,
    pub username: String,
    pub url: String,
    pub secret_id: Uuid,
    pub has_password: bool,
    pub has_totp: bool,
    pub has_notes: bool,
    pub reveals: i64,
    pub last_revealed_at: Option<DateTime<Utc>>,
    pub last_revealed_by: Option<String>,
    pub removed: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A share link as its credential's page lists it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ShareRow {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub credential_id: Uuid,
    pub token_digest: String,
    pub expires_at: DateTime<Utc>,
    pub max_views: i32,
    pub views: i32,
    pub revoked: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// The credentials of a company (`asset_id`: only those of that asset), by label; removed
/// ones are left out.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    company_id: Option<Uuid>,
    asset_id: Option<Uuid>,
) -> Result<Vec<CredentialRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM credentials
          WHERE tenant_id = $1 AND NOT removed
            AND ($2::uuid IS NULL OR company_id = $2)
            AND ($3::uuid IS NULL OR asset_id = $3)
          ORDER BY lower(label), id
          LIMIT 1000",
    )
    .bind(tenant_id)
    .bind(company_id)
    .bind(asset_id)
    .fetch_all(db)
    .await
}

/// One credential of a tenant (`None` for another tenant's).
pub async fn get<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<CredentialRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM credentials WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(db)
        .await
}

/// A credential's share links, newest first.
pub async fn shares<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    credential_id: Uuid,
) -> Result<Vec<ShareRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM credential_shares WHERE tenant_id = $1 AND credential_id = $2
          ORDER BY created_at DESC, id",
    )
    .bind(tenant_id)
    .bind(credential_id)
    .fetch_all(db)
    .await
}

/// The share link whose token has this digest (any tenant: the token is all a visitor has).
pub async fn share_by_digest<'e>(
    db: impl PgExecutor<'e>,
    token_digest: &str,
) -> Result<Option<ShareRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM credential_shares WHERE token_digest = $1")
        .bind(token_digest)
        .fetch_optional(db)
        .await
}
