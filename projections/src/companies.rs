//! The `companies` read model: the list (name search, filters, keyset paging) and the detail
//! page, with the company's profile (customer status, addresses, phone, website, notes, tags).
//!
//! A batch is folded in memory first: the rows it touches are loaded once, every event is
//! applied to them in order, and all of them are written back with one upsert. That keeps a
//! catch-up at a few statements per batch instead of one per event.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use commands::StoredAggregate;
use domain::company::{Company, CompanyEvent, CompanyProfile};
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
    /// `prospect`, `active`, `suspended` or `former` (`domain::company::CustomerStatus`).
    pub customer_status: String,
    pub billing_address: String,
    pub site_address: String,
    pub phone: String,
    pub website: String,
    pub notes: String,
    /// Lowercase, sorted.
    pub tags: Vec<String>,
}

impl CompanyRow {
    fn set_profile(&mut self, profile: CompanyProfile) {
        self.billing_address = profile.billing_address;
        self.site_address = profile.site_address;
        self.phone = profile.phone;
        self.website = profile.website;
        self.notes = profile.notes;
        self.tags = profile.tags;
    }
}

pub(crate) fn decode(event: &StoredEvent) -> Result<CompanyEvent, String> {
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

    /// 2: the profile columns (migration 0010).
    fn version(&self) -> i32 {
        2
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
            if let CompanyEvent::CompanyRegistered {
                name,
                monthly_rate,
                customer_status,
                profile,
            } = &payload
            {
                if rows.contains_key(&id) {
                    return Err(ApplyError::at(
                        index,
                        format!("company {id} registered twice"),
                    ));
                }
                let mut row = CompanyRow {
                    tenant_id: meta.tenant_id,
                    id,
                    name: name.clone(),
                    monthly_rate: monthly_rate.value(),
                    archived: false,
                    version: 0,
                    created_at: at,
                    updated_at: at,
                    customer_status: customer_status.as_str().to_owned(),
                    billing_address: String::new(),
                    site_address: String::new(),
                    phone: String::new(),
                    website: String::new(),
                    notes: String::new(),
                    tags: Vec::new(),
                };
                row.set_profile(profile.clone());
                rows.insert(id, row);
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
                CompanyEvent::CompanyProfileUpdated { profile, .. } => row.set_profile(profile),
                CompanyEvent::CompanyStatusChanged { status, .. } => {
                    row.customer_status = status.as_str().to_owned()
                }
                // Coverage is read from the aggregate (work orders, the coverage page).
                CompanyEvent::ContractCoverageChanged { .. }
                | CompanyEvent::ContractBillingChanged { .. }
                | CompanyEvent::SubscriptionSet { .. } => {}
            }
            row.version = event.sequence;
            row.updated_at = at;
        }

        let n = rows.len();
        let mut cols = Columns::with_capacity(n);
        for row in rows.into_values() {
            cols.push(row).map_err(|e| ApplyError {
                index: None,
                message: e.to_string(),
            })?;
        }
        sqlx::query(&format!(
            "INSERT INTO {table} (tenant_id, id, name, monthly_rate, archived, version, created_at,
                                  updated_at, customer_status, billing_address, site_address,
                                  phone, website, notes, tags)
             SELECT u.tenant_id, u.id, u.name, u.monthly_rate, u.archived, u.version,
                    u.created_at, u.updated_at, u.customer_status, u.billing_address,
                    u.site_address, u.phone, u.website, u.notes,
                    CASE WHEN u.tags = '[]' THEN '{{}}'::text[]
                         ELSE ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb)) END
               FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::numeric[], $5::bool[],
                           $6::int8[], $7::timestamptz[], $8::timestamptz[], $9::text[],
                           $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
                           $15::text[])
                 AS u(tenant_id, id, name, monthly_rate, archived, version, created_at,
                      updated_at, customer_status, billing_address, site_address, phone,
                      website, notes, tags)
             ON CONFLICT (tenant_id, id) DO UPDATE SET
                name = excluded.name, monthly_rate = excluded.monthly_rate,
                archived = excluded.archived, version = excluded.version,
                updated_at = excluded.updated_at, customer_status = excluded.customer_status,
                billing_address = excluded.billing_address,
                site_address = excluded.site_address, phone = excluded.phone,
                website = excluded.website, notes = excluded.notes, tags = excluded.tags"
        ))
        .bind(cols.tenant_id)
        .bind(cols.id)
        .bind(cols.name)
        .bind(cols.monthly_rate)
        .bind(cols.archived)
        .bind(cols.version)
        .bind(cols.created_at)
        .bind(cols.updated_at)
        .bind(cols.customer_status)
        .bind(cols.billing_address)
        .bind(cols.site_address)
        .bind(cols.phone)
        .bind(cols.website)
        .bind(cols.notes)
        .bind(cols.tags)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// The rows of a batch as one array per column, for one `unnest` upsert. Tags travel as the
/// JSON text of each row's array (PostgreSQL arrays of arrays must be rectangular).
#[derive(Default)]
struct Columns {
    tenant_id: Vec<Uuid>,
    id: Vec<Uuid>,
    name: Vec<String>,
    monthly_rate: Vec<Decimal>,
    archived: Vec<bool>,
    version: Vec<i64>,
    created_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
    customer_status: Vec<String>,
    billing_address: Vec<String>,
    site_address: Vec<String>,
    phone: Vec<String>,
    website: Vec<String>,
    notes: Vec<String>,
    tags: Vec<String>,
}

impl Columns {
    fn with_capacity(n: usize) -> Self {
        let mut c = Self::default();
        c.tenant_id.reserve(n);
        c.id.reserve(n);
        c.name.reserve(n);
        c.monthly_rate.reserve(n);
        c.archived.reserve(n);
        c.version.reserve(n);
        c.created_at.reserve(n);
        c.updated_at.reserve(n);
        c.customer_status.reserve(n);
        c.billing_address.reserve(n);
        c.site_address.reserve(n);
        c.phone.reserve(n);
        c.website.reserve(n);
        c.notes.reserve(n);
        c.tags.reserve(n);
        c
    }

    fn push(&mut self, row: CompanyRow) -> Result<(), serde_json::Error> {
        self.tags.push(serde_json::to_string(&row.tags)?);
        self.tenant_id.push(row.tenant_id);
        self.id.push(row.id);
        self.name.push(row.name);
        self.monthly_rate.push(row.monthly_rate);
        self.archived.push(row.archived);
        self.version.push(row.version);
        self.created_at.push(row.created_at);
        self.updated_at.push(row.updated_at);
        self.customer_status.push(row.customer_status);
        self.billing_address.push(row.billing_address);
        self.site_address.push(row.site_address);
        self.phone.push(row.phone);
        self.website.push(row.website);
        self.notes.push(row.notes);
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
    /// Only companies with this customer status (`prospect`, `active`, ...).
    pub customer_status: Option<&'a str>,
    /// Only companies with this tag (as stored: lowercase).
    pub tag: Option<&'a str>,
    pub limit: i64,
    /// Keyset cursor: the `ListPage::next` of the previous page.
    pub after: Option<Cursor>,
}

/// A position in the companies list: the sort key `(lower(name), id)` of a row, as PostgreSQL
/// computed it (so it compares exactly as the query orders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub name_key: String,
    pub id: Uuid,
}

impl Cursor {
    /// An opaque token for URLs: the id then the name key, hex-encoded.
    pub fn encode(&self) -> String {
        let mut out = self.id.simple().to_string();
        for b in self.name_key.as_bytes() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// `None` when the token was not made by `encode`.
    pub fn decode(token: &str) -> Option<Self> {
        // An id and at least one byte of name (names are never empty).
        if token.len() < 34 || !token.len().is_multiple_of(2) || !token.is_ascii() {
            return None;
        }
        let (id, name) = token.split_at(32);
        let id = Uuid::try_parse(id).ok()?;
        let bytes = (0..name.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&name[i..i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(Self {
            name_key: String::from_utf8(bytes).ok()?,
            id,
        })
    }
}

/// One page of companies and the cursor of the next (`None`: this is the last page).
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub rows: Vec<CompanyRow>,
    pub next: Option<Cursor>,
}

#[derive(sqlx::FromRow)]
struct ListedRow {
    #[sqlx(flatten)]
    row: CompanyRow,
    name_key: String,
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Companies of `tenant_id`, ordered by name, a page at a time.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    query: &ListQuery<'_>,
) -> Result<ListPage, sqlx::Error> {
    let search = query.search.map(str::trim).filter(|s| !s.is_empty());
    let limit = query.limit.clamp(1, 500);
    let (after_name, after_id) = query.after.clone().map(|c| (c.name_key, c.id)).unzip();
    let mut rows: Vec<ListedRow> = sqlx::query_as(
        "SELECT *, lower(name) AS name_key FROM companies
          WHERE tenant_id = $1
            AND ($2::text IS NULL OR name ILIKE '%' || $3 || '%' OR name % $2)
            AND ($4 = 'all' OR archived = ($4 = 'archived'))
            AND ($5::text IS NULL OR (lower(name), id) > ($5, $6))
            AND ($7::text IS NULL OR customer_status = $7)
            AND ($8::text IS NULL OR (tags <> '{}' AND tags @> ARRAY[$8::text]))
          ORDER BY lower(name), id
          LIMIT $9",
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
    .bind(query.customer_status)
    .bind(query.tag)
    .bind(limit + 1)
    .fetch_all(db)
    .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = rows.last().filter(|_| more).map(|last| Cursor {
        name_key: last.name_key.clone(),
        id: last.row.id,
    });
    Ok(ListPage {
        rows: rows.into_iter().map(|r| r.row).collect(),
        next,
    })
}

/// The cursor that continues the list after company `id` (the API's older `after=<id>` form).
pub async fn cursor_after<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<Cursor>, sqlx::Error> {
    let key: Option<String> =
        sqlx::query_scalar("SELECT lower(name) FROM companies WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(db)
            .await?;
    Ok(key.map(|name_key| Cursor { name_key, id }))
}

/// The tags in use by `tenant_id`'s companies, for the list's tag filter.
pub async fn tags_in_use<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT tag FROM companies, unnest(tags) AS tag
          WHERE tenant_id = $1 ORDER BY tag LIMIT 500",
    )
    .bind(tenant_id)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let cursor = Cursor {
            name_key: "acme & söhne".into(),
            id: Uuid::from_u128(7),
        };
        let token = cursor.encode();
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "URL-safe");
        assert_eq!(Cursor::decode(&token), Some(cursor));
        for bad in [
            "",
            "zz",
            &Uuid::from_u128(7).simple().to_string(),
            "0000000000000000000000000000000741",
            "000000000000000000000000000000074",
            "0000000000000000000000000000000zz1",
            "00000000000000000000000000000007ff",
            "00000000000000000000000000000007é1",
        ] {
            let decoded = Cursor::decode(bad);
            if bad == "0000000000000000000000000000000741" {
                assert_eq!(decoded.unwrap().name_key, "A");
            } else {
                assert!(decoded.is_none(), "{bad}");
            }
        }
    }
}
