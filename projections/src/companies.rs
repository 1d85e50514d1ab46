//! The `companies` read model: the list (with name search) and the detail page.
//!
//! A batch is folded in memory first: the rows it touches are loaded once, every event is
//! applied to them in order, and all of them are written back with one upsert. That keeps a
//! catch-up at a few statements per batch instead of one per event.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use commands::StoredAggregate;
use domain::company::{Company, CompanyEvent};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::{ApplyError, Projection, StoredEvent, Tables};

pub struct CompaniesProjection;

/// One row of the `companies` table.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct CompanyRow {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub name: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub monthly_rate: Decimal,
    pub archived: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn decode(event: &StoredEvent) -> Result<CompanyEvent, String> {
    if event.event_version == "1" {
        serde_json::from_str(event.payload.get()).map_err(|e| e.to_string())
    } else {
        let serialized = event.to_serialized().map_err(|e| e.to_string())?;
        commands::store::decode(&commands::store::upcast(serialized, &Company::upcasters()))
    }
}

#[async_trait]
impl Projection for CompaniesProjection {
    fn name(&self) -> &'static str {
        "companies"
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["companies"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        tables: &Tables,
        events: &[StoredEvent],
    ) -> Result<(), ApplyError> {
        let table = tables.get(0);
        let mine: Vec<(usize, &StoredEvent, Uuid)> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.aggregate_type == "company")
            .map(|(i, e)| {
                Uuid::parse_str(&e.aggregate_id)
                    .map(|id| (i, e, id))
                    .map_err(|_| {
                        ApplyError::at(i, format!("company id {:?} is not a UUID", e.aggregate_id))
                    })
            })
            .collect::<Result<_, _>>()?;
        if mine.is_empty() {
            return Ok(());
        }

        // Rows that exist already: every company touched in this batch whose registration
        // is not part of it.
        let mut registered_here = std::collections::HashSet::new();
        let mut to_load: Vec<(Uuid, Uuid)> = Vec::new();
        for (index, event, id) in &mine {
            let tenant_id = event
                .meta
                .as_ref()
                .map_err(|e| ApplyError::at(*index, e.clone()))?
                .tenant_id;
            if event.event_type == "CompanyRegistered" {
                registered_here.insert(*id);
            } else if !registered_here.contains(id) {
                to_load.push((tenant_id, *id));
            }
        }
        to_load.sort_unstable();
        to_load.dedup();
        let mut rows: HashMap<Uuid, CompanyRow> = HashMap::with_capacity(mine.len());
        if !to_load.is_empty() {
            let (tenants, ids): (Vec<Uuid>, Vec<Uuid>) = to_load.into_iter().unzip();
            let loaded: Vec<CompanyRow> = sqlx::query_as(&format!(
                "SELECT t.* FROM {table} t
                   JOIN unnest($1::uuid[], $2::uuid[]) AS k(tenant_id, id)
                     ON t.tenant_id = k.tenant_id AND t.id = k.id"
            ))
            .bind(&tenants)
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
            rows.extend(loaded.into_iter().map(|r| (r.id, r)));
        }

        for (index, event, id) in mine {
            let payload = decode(event).map_err(|e| ApplyError::at(index, e))?;
            // Checked in the first loop.
            let Ok(meta) = &event.meta else { continue };
            let at = event.recorded_at;
            if let CompanyEvent::CompanyRegistered { name, monthly_rate } = &payload {
                if rows.contains_key(&id) {
                    return Err(ApplyError::at(
                        index,
                        format!("company {id} registered twice"),
                    ));
                }
                rows.insert(
                    id,
                    CompanyRow {
                        tenant_id: meta.tenant_id,
                        id,
                        name: name.clone(),
                        monthly_rate: monthly_rate.value(),
                        archived: false,
                        version: 0,
                        created_at: at,
                        updated_at: at,
                    },
                );
            }
            let Some(row) = rows.get_mut(&id) else {
                return Err(ApplyError::at(
                    index,
                    format!("{} for company {id}, which has no row", event.event_type),
                ));
            };
            if row.tenant_id != meta.tenant_id {
                return Err(ApplyError::at(
                    index,
                    format!("company {id}: tenant changed"),
                ));
            }
            if event.sequence != row.version + 1 {
                return Err(ApplyError::at(
                    index,
                    format!(
                        "company {id}: event #{} follows #{} (expected #{})",
                        event.sequence,
                        row.version,
                        row.version + 1
                    ),
                ));
            }
            match payload {
                CompanyEvent::CompanyRegistered { .. } => {}
                CompanyEvent::CompanyRenamed { name, .. } => row.name = name,
                CompanyEvent::MonthlyRateSet { monthly_rate, .. } => {
                    row.monthly_rate = monthly_rate.value()
                }
                CompanyEvent::CompanyArchived {} => row.archived = true,
                CompanyEvent::CompanyRestored {} => row.archived = false,
            }
            row.version = event.sequence;
            row.updated_at = at;
        }

        let n = rows.len();
        let mut cols = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for row in rows.into_values() {
            cols.0.push(row.tenant_id);
            cols.1.push(row.id);
            cols.2.push(row.name);
            cols.3.push(row.monthly_rate);
            cols.4.push(row.archived);
            cols.5.push(row.version);
            cols.6.push(row.created_at);
            cols.7.push(row.updated_at);
        }
        sqlx::query(&format!(
            "INSERT INTO {table} (tenant_id, id, name, monthly_rate, archived, version, created_at, updated_at)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::numeric[], $5::bool[],
                                  $6::int8[], $7::timestamptz[], $8::timestamptz[])
             ON CONFLICT (tenant_id, id) DO UPDATE SET
                name = excluded.name, monthly_rate = excluded.monthly_rate,
                archived = excluded.archived, version = excluded.version,
                updated_at = excluded.updated_at"
        ))
        .bind(cols.0)
        .bind(cols.1)
        .bind(cols.2)
        .bind(cols.3)
        .bind(cols.4)
        .bind(cols.5)
        .bind(cols.6)
        .bind(cols.7)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// Which companies a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    #[default]
    Active,
    Archived,
    All,
}

/// A page of the companies list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery<'a> {
    /// Part of the name, case-insensitive; close misspellings match too.
    pub search: Option<&'a str>,
    pub status: StatusFilter,
    pub limit: i64,
    /// Keyset cursor: the `(lower(name), id)` of the last row of the previous page.
    pub after: Option<(String, Uuid)>,
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Companies of `tenant_id`, ordered by name.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    query: &ListQuery<'_>,
) -> Result<Vec<CompanyRow>, sqlx::Error> {
    let search = query.search.map(str::trim).filter(|s| !s.is_empty());
    let (after_name, after_id) = query.after.clone().unzip();
    sqlx::query_as(
        "SELECT * FROM companies
          WHERE tenant_id = $1
            AND ($2::text IS NULL OR name ILIKE '%' || $3 || '%' OR name % $2)
            AND ($4 = 'all' OR archived = ($4 = 'archived'))
            AND ($5::text IS NULL OR (lower(name), id) > ($5, $6))
          ORDER BY lower(name), id
          LIMIT $7",
    )
    .bind(tenant_id)
    .bind(search)
    .bind(search.map(escape_like))
    .bind(match query.status {
        StatusFilter::Active => "active",
        StatusFilter::Archived => "archived",
        StatusFilter::All => "all",
    })
    .bind(after_name)
    .bind(after_id)
    .bind(query.limit.clamp(1, 500))
    .fetch_all(db)
    .await
}

/// One company of `tenant_id`; another tenant's id finds nothing.
pub async fn get<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<CompanyRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM companies WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(db)
        .await
}
