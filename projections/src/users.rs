//! The identity read models: `users` (every person of every tenant, with their membership:
//! role, customer company, enabled) and `api_tokens` (by digest, for bearer authentication).
//!
//! Identity events are few, so each is applied with its own upsert. A person's row is made by
//! whichever comes first, the tenant's `MemberAdded` or the person's own creation event
//! (bootstrap appends the tenant before the person), and completed by the other.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use commands::StoredAggregate;
use domain::identity::Role;
use domain::tenant::{Tenant, TenantEvent};
use domain::user::{User, UserEvent};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::{ApplyError, Projection, StoredEvent, Tables};

pub struct UsersProjection;

fn decode<A: StoredAggregate>(event: &StoredEvent) -> Result<A::Event, String> {
    if event.event_version == "1" {
        serde_json::from_str(event.payload.get()).map_err(|e| e.to_string())
    } else {
        let serialized = event.to_serialized().map_err(|e| e.to_string())?;
        commands::store::decode(&commands::store::upcast(serialized, &A::upcasters()))
    }
}

#[async_trait]
impl Projection for UsersProjection {
    fn name(&self) -> &'static str {
        "users"
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["users", "api_tokens"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        tables: &Tables,
        events: &[StoredEvent],
    ) -> Result<(), ApplyError> {
        let (users, tokens) = (tables.get(0), tables.get(1));
        for (index, event) in events.iter().enumerate() {
            let at = |e: String| ApplyError::at(index, e);
            let result = match event.aggregate_type.as_str() {
                "tenant" => {
                    let payload = decode::<Tenant>(event).map_err(at)?;
                    let tenant_id = Uuid::parse_str(&event.aggregate_id)
                        .map_err(|_| at(format!("tenant id {:?}", event.aggregate_id)))?;
                    apply_tenant(&mut *conn, users, tenant_id, event.recorded_at, payload).await
                }
                "user" => {
                    let payload = decode::<User>(event).map_err(at)?;
                    let user_id = Uuid::parse_str(&event.aggregate_id)
                        .map_err(|_| at(format!("user id {:?}", event.aggregate_id)))?;
                    let tenant_id = event.meta.as_ref().map_err(|e| at(e.clone()))?.tenant_id;
                    apply_user(
                        &mut *conn,
                        (users, tokens),
                        (tenant_id, user_id),
                        event.recorded_at,
                        payload,
                    )
                    .await
                }
                _ => Ok(()),
            };
            result.map_err(|e| ApplyError::at(index, e.to_string()))?;
        }
        Ok(())
    }
}

/// Upserts the person's row, setting `set` (an SQL assignment list over `$3..`).
fn upsert(users: &str, columns: &str, values: &str, set: &str) -> String {
    format!(
        "INSERT INTO {users} (tenant_id, id, created_at, updated_at{columns})
         VALUES ($1, $2, $3, $3{values})
         ON CONFLICT (id) DO UPDATE SET updated_at = $3{set}"
    )
}

async fn apply_tenant(
    conn: &mut PgConnection,
    users: &str,
    tenant_id: Uuid,
    at: DateTime<Utc>,
    event: TenantEvent,
) -> Result<(), sqlx::Error> {
    let (user_id, sql, role, company_id, flag) = match event {
        TenantEvent::MemberAdded {
            user_id,
            role,
            company_id,
        } => (
            user_id,
            upsert(
                users,
                ", member, enabled, role, company_id",
                ", true, true, $4, $5",
                ", member = true, enabled = true, role = $4, company_id = $5",
            ),
            Some(role),
            company_id,
            None,
        ),
        TenantEvent::MemberRoleChanged { user_id, role, .. } => (
            user_id,
            upsert(users, ", role", ", $4", ", role = $4"),
            Some(role),
            None,
            None,
        ),
        TenantEvent::MemberDisabled { user_id } => {
            (user_id, flag_sql(users, "enabled"), None, None, Some(false))
        }
        TenantEvent::MemberEnabled { user_id } => {
            (user_id, flag_sql(users, "enabled"), None, None, Some(true))
        }
        TenantEvent::MemberRemoved { user_id } => (
            user_id,
            upsert(
                users,
                ", member, enabled",
                ", false, false",
                ", member = false, enabled = false",
            ),
            None,
            None,
            None,
        ),
        TenantEvent::TenantCreated { .. }
        | TenantEvent::TenantRenamed { .. }
        | TenantEvent::TenantSettingsChanged { .. }
        | TenantEvent::AssetSettingsChanged { .. }
        | TenantEvent::BusinessHoursChanged { .. }
        | TenantEvent::SlaPoliciesChanged { .. }
        | TenantEvent::WorkSettingsChanged { .. }
        | TenantEvent::LabourCostChanged { .. }
        | TenantEvent::TemplateChanged { .. }
        | TenantEvent::EmailProviderChanged { .. }
        | TenantEvent::SmsProviderChanged { .. }
        | TenantEvent::BillingProfileChanged { .. }
        | TenantEvent::LatePaymentChanged { .. }
        | TenantEvent::ServiceDefined { .. } => return Ok(()),
    };
    let mut query = sqlx::query(&sql).bind(tenant_id).bind(user_id).bind(at);
    if let Some(role) = role {
        query = query.bind(role.as_str());
        if sql.contains("$5") {
            query = query.bind(company_id);
        }
    } else if let Some(flag) = flag {
        query = query.bind(flag);
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

fn flag_sql(users: &str, column: &str) -> String {
    upsert(
        users,
        &format!(", {column}"),
        ", $4",
        &format!(", {column} = $4"),
    )
}

async fn apply_user(
    conn: &mut PgConnection,
    (users, tokens): (&str, &str),
    (tenant_id, user_id): (Uuid, Uuid),
    at: DateTime<Utc>,
    event: UserEvent,
) -> Result<(), sqlx::Error> {
    fn bound(
        sql: &str,
        (tenant_id, user_id, at): (Uuid, Uuid, DateTime<Utc>),
    ) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(sql).bind(tenant_id).bind(user_id).bind(at)
    }
    let key = (tenant_id, user_id, at);
    match event {
        UserEvent::UserRegistered { email, name, .. } => {
            bound(
                &upsert(
                    users,
                    ", email, name",
                    ", $4, $5",
                    ", email = $4, name = $5",
                ),
                key,
            )
            .bind(email.as_str())
            .bind(name)
            .execute(&mut *conn)
            .await?;
        }
        UserEvent::UserInvited { email, name, .. } => {
            bound(
                &upsert(
                    users,
                    ", email, name, invited",
                    ", $4, $5, true",
                    ", email = $4, name = $5, invited = true",
                ),
                key,
            )
            .bind(email.as_str())
            .bind(name)
            .execute(&mut *conn)
            .await?;
        }
        UserEvent::InvitationAccepted {} => {
            bound(&flag_sql(users, "invited"), key)
                .bind(false)
                .execute(&mut *conn)
                .await?;
        }
        UserEvent::PasswordSet { .. } => {
            bound(&flag_sql(users, "has_password"), key)
                .bind(true)
                .execute(&mut *conn)
                .await?;
        }
        UserEvent::UserRenamed { name } => {
            bound(&upsert(users, ", name", ", $4", ", name = $4"), key)
                .bind(name)
                .execute(&mut *conn)
                .await?;
        }
        UserEvent::InvitationRenewed { .. }
        | UserEvent::PasswordResetRequested { .. }
        | UserEvent::PasswordResetCompleted {} => {}
        UserEvent::ApiTokenCreated {
            token_id,
            name,
            token_digest,
            created_at,
        } => {
            sqlx::query(&format!(
                "INSERT INTO {tokens} (token_digest, id, tenant_id, user_id, name, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)"
            ))
            .bind(token_digest)
            .bind(token_id)
            .bind(tenant_id)
            .bind(user_id)
            .bind(name)
            .bind(created_at)
            .execute(&mut *conn)
            .await?;
        }
        UserEvent::ApiTokenRevoked { token_id } => {
            sqlx::query(&format!(
                "UPDATE {tokens} SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL"
            ))
            .bind(token_id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// One person of a tenant, as the console and the API list them.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct UserRow {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: String,
    pub company_id: Option<Uuid>,
    pub member: bool,
    pub enabled: bool,
    pub invited: bool,
    pub has_password: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl UserRow {
    pub fn role(&self) -> Option<Role> {
        self.role.parse().ok()
    }

    /// `invited`, `active`, `disabled` or `removed`.
    pub fn status(&self) -> &'static str {
        if !self.member {
            "removed"
        } else if !self.enabled {
            "disabled"
        } else if self.invited && !self.has_password {
            "invited"
        } else {
            "active"
        }
    }
}

/// The members of a tenant (removed people left out), by name.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
) -> Result<Vec<UserRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM users WHERE tenant_id = $1 AND member
          ORDER BY lower(name), id",
    )
    .bind(tenant_id)
    .fetch_all(db)
    .await
}

/// One person of a tenant (`None` for another tenant's person).
pub async fn get<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM users WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(db)
        .await
}

/// One API token as its owner sees it (never its secret, which is not stored).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct TokenRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A person's API tokens, newest first.
pub async fn tokens_of<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    user_id: Uuid,
) -> Result<Vec<TokenRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, tenant_id, user_id, name, created_at, revoked_at FROM api_tokens
          WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at DESC, id",
    )
    .bind(tenant_id)
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// One API token of a tenant (`None` for another tenant's token).
pub async fn token<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<TokenRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, tenant_id, user_id, name, created_at, revoked_at FROM api_tokens
          WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Names to show for the actors of a tenant's events: person id → name (or email). Actors
/// that are not people (`bootstrap`, `scheduler`…) are shown as they are by `actor_label`.
pub async fn actor_names<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
) -> Result<std::collections::HashMap<String, String>, sqlx::Error> {
    let rows: Vec<(Uuid, String, String)> =
        sqlx::query_as("SELECT id, name, email FROM users WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_all(db)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, email)| (id.to_string(), if name.is_empty() { email } else { name }))
        .collect())
}

/// How an actor reads on a page.
pub fn actor_label(names: &std::collections::HashMap<String, String>, actor: &str) -> String {
    names
        .get(actor)
        .cloned()
        .unwrap_or_else(|| actor.to_owned())
}
