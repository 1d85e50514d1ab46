//! The `contacts` read model: a customer company's people, for the company page and the API.
//! Contact events are few per company, so each is applied with its own statement.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use commands::StoredAggregate;
use domain::contact::{Contact, ContactEvent};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::{ApplyError, Projection, StoredEvent, Tables};

pub struct ContactsProjection;

pub(crate) fn decode(event: &StoredEvent) -> Result<ContactEvent, String> {
    if event.event_version == "1" {
        serde_json::from_str(event.payload.get()).map_err(|e| e.to_string())
    } else {
        let serialized = event.to_serialized().map_err(|e| e.to_string())?;
        commands::store::decode(&commands::store::upcast(serialized, &Contact::upcasters()))
    }
}

#[async_trait]
impl Projection for ContactsProjection {
    fn name(&self) -> &'static str {
        "contacts"
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["contacts"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        tables: &Tables,
        events: &[StoredEvent],
    ) -> Result<(), ApplyError> {
        let table = tables.get(0);
        for (index, event) in events.iter().enumerate() {
            if event.aggregate_type != "contact" {
                continue;
            }
            let at = |e: String| ApplyError::at(index, e);
            let id = Uuid::parse_str(&event.aggregate_id)
                .map_err(|_| at(format!("contact id {:?}", event.aggregate_id)))?;
            let tenant_id = event.meta.as_ref().map_err(|e| at(e.clone()))?.tenant_id;
            let sql = match decode(event).map_err(at)? {
                // Preferences live on the aggregate: the notifier loads it.
                ContactEvent::ContactNotificationsChanged { .. } => continue,
                ContactEvent::ContactAdded {
                    company_id,
                    details: d,
                } => {
                    sqlx::query(&format!(
                        "INSERT INTO {table} (tenant_id, id, company_id, name, email, office_phone,
                        cell_phone, department, position, is_primary, billing, notes, version,
                        created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)"
                    ))
                    .bind(tenant_id)
                    .bind(id)
                    .bind(company_id)
                    .bind(d.name)
                    .bind(d.email.map(|e| e.as_str().to_owned()))
                    .bind(d.office_phone)
                    .bind(d.cell_phone)
                    .bind(d.department)
                    .bind(d.position)
                    .bind(d.primary)
                    .bind(d.billing)
                    .bind(d.notes)
                    .bind(event.sequence)
                    .bind(event.recorded_at)
                    .execute(&mut *conn)
                    .await
                }
                ContactEvent::ContactUpdated { details: d } => {
                    sqlx::query(&format!(
                    "UPDATE {table} SET name = $3, email = $4, office_phone = $5, cell_phone = $6,
                        department = $7, position = $8, is_primary = $9, billing = $10,
                        notes = $11, version = $12, updated_at = $13
                      WHERE tenant_id = $1 AND id = $2"
                ))
                    .bind(tenant_id)
                    .bind(id)
                    .bind(d.name)
                    .bind(d.email.map(|e| e.as_str().to_owned()))
                    .bind(d.office_phone)
                    .bind(d.cell_phone)
                    .bind(d.department)
                    .bind(d.position)
                    .bind(d.primary)
                    .bind(d.billing)
                    .bind(d.notes)
                    .bind(event.sequence)
                    .bind(event.recorded_at)
                    .execute(&mut *conn)
                    .await
                }
                ContactEvent::ContactLeft {} | ContactEvent::ContactReturned {} => {
                    let former = event.event_type == "ContactLeft";
                    sqlx::query(&format!(
                        "UPDATE {table} SET former = $3, version = $4, updated_at = $5
                          WHERE tenant_id = $1 AND id = $2"
                    ))
                    .bind(tenant_id)
                    .bind(id)
                    .bind(former)
                    .bind(event.sequence)
                    .bind(event.recorded_at)
                    .execute(&mut *conn)
                    .await
                }
            };
            let done = sql.map_err(|e| at(e.to_string()))?;
            if done.rows_affected() != 1 {
                return Err(at(format!(
                    "{} for contact {id}, which has no row",
                    event.event_type
                )));
            }
        }
        Ok(())
    }
}

/// One contact as the pages and the API show it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ContactRow {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub company_id: Uuid,
    pub name: String,
    pub email: Option<String>,
    pub office_phone: String,
    pub cell_phone: String,
    pub department: String,
    pub position: String,
    pub is_primary: bool,
    pub billing: bool,
    pub notes: String,
    pub former: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A company's contacts: current ones first, then by name.
pub async fn of_company<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    company_id: Uuid,
) -> Result<Vec<ContactRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM contacts WHERE tenant_id = $1 AND company_id = $2
          ORDER BY former, lower(name), id",
    )
    .bind(tenant_id)
    .bind(company_id)
    .fetch_all(db)
    .await
}

/// One contact of a tenant (`None` for another tenant's).
pub async fn get<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<ContactRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM contacts WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The current billing contacts of some of `tenant_id`'s companies, as `(company_id,
/// contact_id)` pairs in name order.
pub async fn billing_of<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    company_ids: &[Uuid],
) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT company_id, id FROM contacts
          WHERE tenant_id = $1 AND company_id = ANY($2) AND billing AND NOT former
          ORDER BY company_id, lower(name), id",
    )
    .bind(tenant_id)
    .bind(company_ids)
    .fetch_all(db)
    .await
}
