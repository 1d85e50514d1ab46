//! The `assets` read model: a customer's equipment, for the company and contact pages, the
//! assets list and the API. Asset events are few per asset, so each is one statement.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use commands::StoredAggregate;
use domain::asset::{Asset, AssetDetails, AssetEvent};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::{ApplyError, Projection, StoredEvent, Tables};

pub struct AssetsProjection;

pub(crate) fn decode(event: &StoredEvent) -> Result<AssetEvent, String> {
    if event.event_version == "1" {
        serde_json::from_str(event.payload.get()).map_err(|e| e.to_string())
    } else {
        let serialized = event.to_serialized().map_err(|e| e.to_string())?;
        commands::store::decode(&commands::store::upcast(serialized, &Asset::upcasters()))
    }
}

/// The columns of `AssetDetails`, in the order `bind_details` binds them.
const DETAIL_COLUMNS: &str = "name, category, make, model, serial_number, mac_address, \
    ip_address, operating_system, location, purchase_date, warranty_end, vendor, notes";

fn bind_details<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    d: AssetDetails,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(d.name)
        .bind(d.category)
        .bind(d.make)
        .bind(d.model)
        .bind(d.serial_number)
        .bind(d.mac_address)
        .bind(d.ip_address)
        .bind(d.operating_system)
        .bind(d.location)
        .bind(d.purchase_date)
        .bind(d.warranty_end)
        .bind(d.vendor)
        .bind(d.notes)
}

#[async_trait]
impl Projection for AssetsProjection {
    fn name(&self) -> &'static str {
        "assets"
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["assets"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        tables: &Tables,
        events: &[StoredEvent],
    ) -> Result<(), ApplyError> {
        let table = tables.get(0);
        for (index, event) in events.iter().enumerate() {
            if event.aggregate_type != "asset" {
                continue;
            }
            let at = |e: String| ApplyError::at(index, e);
            let id = Uuid::parse_str(&event.aggregate_id)
                .map_err(|_| at(format!("asset id {:?}", event.aggregate_id)))?;
            let tenant_id = event.meta.as_ref().map_err(|e| at(e.clone()))?.tenant_id;
            let sql = match decode(event).map_err(at)? {
                AssetEvent::AssetRegistered {
                    company_id,
                    number,
                    tag,
                    details,
                    status,
                    contact_id,
                } => {
                    let sql = format!(
                        "INSERT INTO {table} (tenant_id, id, company_id, number, tag, status,
                            contact_id, version, created_at, updated_at, {DETAIL_COLUMNS})
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $12, $13,
                            $14, $15, $16, $17, $18, $19, $20, $21, $22)"
                    );
                    let query = sqlx::query(&sql)
                        .bind(tenant_id)
                        .bind(id)
                        .bind(company_id)
                        .bind(number as i64)
                        .bind(tag)
                        .bind(status.as_str())
                        .bind(contact_id)
                        .bind(event.sequence)
                        .bind(event.recorded_at);
                    bind_details(query, details).execute(&mut *conn).await
                }
                AssetEvent::AssetUpdated { details } => {
                    let sql = format!(
                        "UPDATE {table} SET ({DETAIL_COLUMNS}) =
                            ($5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17),
                            version = $3, updated_at = $4
                          WHERE tenant_id = $1 AND id = $2"
                    );
                    let query = sqlx::query(&sql)
                        .bind(tenant_id)
                        .bind(id)
                        .bind(event.sequence)
                        .bind(event.recorded_at);
                    bind_details(query, details).execute(&mut *conn).await
                }
                AssetEvent::AssetStatusChanged { status, .. } => {
                    sqlx::query(&format!(
                        "UPDATE {table} SET status = $5, version = $3, updated_at = $4
                          WHERE tenant_id = $1 AND id = $2"
                    ))
                    .bind(tenant_id)
                    .bind(id)
                    .bind(event.sequence)
                    .bind(event.recorded_at)
                    .bind(status.as_str())
                    .execute(&mut *conn)
                    .await
                }
                AssetEvent::AssetAssigned { contact_id, .. } => {
                    sqlx::query(&format!(
                        "UPDATE {table} SET contact_id = $5, version = $3, updated_at = $4
                          WHERE tenant_id = $1 AND id = $2"
                    ))
                    .bind(tenant_id)
                    .bind(id)
                    .bind(event.sequence)
                    .bind(event.recorded_at)
                    .bind(contact_id)
                    .execute(&mut *conn)
                    .await
                }
                AssetEvent::AssetDocumentAttached { document } => {
                    let document =
                        serde_json::to_value([document]).map_err(|e| at(e.to_string()))?;
                    sqlx::query(&format!(
                        "UPDATE {table} SET documents = documents || $5, version = $3,
                            updated_at = $4
                          WHERE tenant_id = $1 AND id = $2"
                    ))
                    .bind(tenant_id)
                    .bind(id)
                    .bind(event.sequence)
                    .bind(event.recorded_at)
                    .bind(document)
                    .execute(&mut *conn)
                    .await
                }
                AssetEvent::AssetDocumentRemoved { document_id, .. } => {
                    sqlx::query(&format!(
                        "UPDATE {table} SET documents = coalesce((
                                SELECT jsonb_agg(d) FROM jsonb_array_elements(documents) d
                                 WHERE d->>'id' <> $5), '[]'),
                            version = $3, updated_at = $4
                          WHERE tenant_id = $1 AND id = $2"
                    ))
                    .bind(tenant_id)
                    .bind(id)
                    .bind(event.sequence)
                    .bind(event.recorded_at)
                    .bind(document_id.to_string())
                    .execute(&mut *conn)
                    .await
                }
            };
            let done = sql.map_err(|e| at(e.to_string()))?;
            if done.rows_affected() != 1 {
                return Err(at(format!(
                    "{} for asset {id}, which has no row",
                    event.event_type
                )));
            }
        }
        Ok(())
    }
}

/// One asset as the pages and the API show it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct AssetRow {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub company_id: Uuid,
    pub number: i64,
    pub tag: String,
    pub name: String,
    pub category: String,
    pub make: String,
    pub model: String,
    pub serial_number: String,
    pub mac_address: String,
    pub ip_address: String,
    pub operating_system: String,
    pub location: String,
    pub purchase_date: Option<NaiveDate>,
    pub warranty_end: Option<NaiveDate>,
    pub vendor: String,
    pub notes: String,
    pub status: String,
    pub contact_id: Option<Uuid>,
    pub documents: sqlx::types::Json<Vec<domain::asset::AssetDocument>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which assets a list shows.
#[derive(Debug, Clone, Default)]
pub struct AssetQuery {
    pub company_id: Option<Uuid>,
    pub contact_id: Option<Uuid>,
    pub status: Option<String>,
    pub category: Option<String>,
    /// Tag number to start after (keyset paging in tag order).
    pub after: Option<i64>,
    pub limit: i64,
}

/// Assets in tag order, filtered, one page (`limit` rows after `after`).
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    query: &AssetQuery,
) -> Result<Vec<AssetRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM assets
          WHERE tenant_id = $1
            AND ($2::uuid IS NULL OR company_id = $2)
            AND ($3::uuid IS NULL OR contact_id = $3)
            AND ($4::text IS NULL OR status = $4)
            AND ($5::text IS NULL OR category = $5)
            AND number > $6
          ORDER BY number
          LIMIT $7",
    )
    .bind(tenant_id)
    .bind(query.company_id)
    .bind(query.contact_id)
    .bind(query.status.as_deref())
    .bind(query.category.as_deref())
    .bind(query.after.unwrap_or(0))
    .bind(query.limit)
    .fetch_all(db)
    .await
}

/// One asset of a tenant (`None` for another tenant's).
pub async fn get<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<AssetRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM assets WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(db)
        .await
}
