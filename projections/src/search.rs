//! The `search` read model behind the header's search box and `GET /api/v1/search`: one row
//! per company, contact, asset, credential (its label only, never a secret) and work order, with
//! identifiers in `keys` (tags, serials, MAC and IP addresses, emails, phone digits) and names
//! in `words`. A query matches by substring and by trigram word similarity (typos) on both,
//! and by full text on the words; exact identifier matches rank first.

use async_trait::async_trait;
use domain::asset::{AssetDetails, AssetEvent, AssetStatus};
use domain::company::CompanyEvent;
use domain::contact::{ContactDetails, ContactEvent};
use domain::credential::{CredentialDetails, CredentialEvent};
use domain::workorder::{WorkOrderDetails, WorkOrderEvent};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::{ApplyError, Projection, StoredEvent, Tables};

pub struct SearchProjection;

/// What one row says and where it leads.
struct Entry {
    title: String,
    detail: String,
    href: String,
    keys: String,
    words: String,
}

fn asset_entry(id: Uuid, tag: &str, d: &AssetDetails) -> Entry {
    let compact_mac = d.mac_address.replace(':', "");
    let make_model = [d.make.as_str(), d.model.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let mut detail = format!("Asset · {}", d.category);
    for part in [&make_model, &d.serial_number, &d.ip_address] {
        if !part.is_empty() {
            detail.push_str(" · ");
            detail.push_str(part);
        }
    }
    Entry {
        title: format!("{tag} {}", d.name),
        detail,
        href: format!("/assets/{id}"),
        keys: [
            tag,
            &d.serial_number,
            &d.mac_address,
            &compact_mac,
            &d.ip_address,
        ]
        .join(" "),
        words: [
            d.name.as_str(),
            &d.category,
            &make_model,
            &d.operating_system,
            &d.location,
        ]
        .join(" "),
    }
}

fn contact_entry(id: Uuid, d: &ContactDetails) -> Entry {
    let email = d.email.as_ref().map(|e| e.as_str()).unwrap_or("");
    let digits = |phone: &str| {
        phone
            .chars()
            .filter(char::is_ascii_digit)
            .collect::<String>()
    };
    let mut detail = "Contact".to_string();
    for part in [&d.position, &d.department, &email.to_string()] {
        if !part.is_empty() {
            detail.push_str(" · ");
            detail.push_str(part);
        }
    }
    Entry {
        title: d.name.clone(),
        detail,
        href: format!("/contacts/{id}"),
        keys: [email, &digits(&d.office_phone), &digits(&d.cell_phone)].join(" "),
        words: [d.name.as_str(), &d.department, &d.position].join(" "),
    }
}

fn credential_entry(id: Uuid, d: &CredentialDetails) -> Entry {
    Entry {
        title: d.label.clone(),
        detail: if d.username.is_empty() {
            "Credential".into()
        } else {
            format!("Credential · {}", d.username)
        },
        href: format!("/credentials/{id}"),
        keys: d.username.clone(),
        words: d.label.clone(),
    }
}

/// A work order: found by its number (`#12`, `12`) and its title's words; its title is
/// `#12 Printer jams`.
fn work_order_entry(id: Uuid, number: &str, d: &WorkOrderDetails) -> Entry {
    let digits = number.trim_start_matches('#');
    Entry {
        title: format!("#{digits} {}", d.title),
        detail: format!("Work order · {}", d.work_type),
        href: format!("/work-orders/{id}"),
        keys: format!("#{digits} {digits}"),
        // The number among the words too: a query of one or two characters (`#7`) searches
        // the words only.
        words: format!("{digits} {}", d.title),
    }
}

/// What a batch does to one row, folded in event order.
#[derive(Default)]
struct Change {
    /// The row's new contents (`None`: unchanged).
    entry: Option<Entry>,
    /// Its new `inactive` flag (`None`: unchanged).
    inactive: Option<bool>,
    /// Deleted (a later upsert in the same batch brings it back).
    deleted: bool,
}

type Key = (Uuid, &'static str, Uuid);

/// Folds a batch into one change per row, then writes them with a few set-based statements
/// (a rebuild of 1,000,000 events must not cost one statement per event).
#[derive(Default)]
struct Batch {
    changes: std::collections::HashMap<Key, Change>,
    order: Vec<Key>,
    /// Asset updates whose registration is not in this batch: their tag is read back.
    need_tag: Vec<(Key, AssetDetails)>,
    /// The same for work orders changed: their number is read back.
    need_number: Vec<(Key, WorkOrderDetails)>,
}

impl Batch {
    fn change(&mut self, key: Key) -> &mut Change {
        if !self.changes.contains_key(&key) {
            self.order.push(key);
        }
        self.changes.entry(key).or_default()
    }

    fn upsert(&mut self, key: Key, entry: Entry) {
        let change = self.change(key);
        change.entry = Some(entry);
        change.deleted = false;
    }

    fn set_inactive(&mut self, key: Key, inactive: bool) {
        self.change(key).inactive = Some(inactive);
    }

    fn delete(&mut self, key: Key) {
        let change = self.change(key);
        *change = Change {
            deleted: true,
            ..Change::default()
        };
    }

    /// The first word of the titles of rows changed without their first event in the batch
    /// (an asset's tag, a work order's number), from this batch or else from the table.
    async fn read_back<D>(
        &self,
        conn: &mut PgConnection,
        table: &str,
        kind: &str,
        wanted: Vec<(Key, D)>,
    ) -> Result<Vec<(Key, D, String)>, sqlx::Error> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let (tenants, ids): (Vec<Uuid>, Vec<Uuid>) =
            wanted.iter().map(|((t, _, id), _)| (*t, *id)).unzip();
        let stored: Vec<(Uuid, Uuid, String)> = sqlx::query_as(&format!(
            "SELECT s.tenant_id, s.id, split_part(s.title, ' ', 1)
               FROM {table} s JOIN unnest($1::uuid[], $2::uuid[]) AS k(tenant_id, id)
                 ON s.tenant_id = k.tenant_id AND s.kind = $3 AND s.id = k.id"
        ))
        .bind(tenants)
        .bind(ids)
        .bind(kind)
        .fetch_all(&mut *conn)
        .await?;
        let stored: std::collections::HashMap<(Uuid, Uuid), String> = stored
            .into_iter()
            .map(|(t, id, first)| ((t, id), first))
            .collect();
        Ok(wanted
            .into_iter()
            .filter_map(|(key, details)| {
                // A change may follow the first event in this very batch: that one knows.
                let known = self.changes.get(&key).and_then(|c| {
                    c.entry
                        .as_ref()
                        .map(|e| e.title.split(' ').next().unwrap_or("").to_owned())
                });
                let first = known.or_else(|| stored.get(&(key.0, key.2)).cloned())?;
                Some((key, details, first))
            })
            .collect())
    }

    async fn write(mut self, conn: &mut PgConnection, table: &str) -> Result<(), sqlx::Error> {
        let need_tag = std::mem::take(&mut self.need_tag);
        for (key, details, tag) in self.read_back(conn, table, "asset", need_tag).await? {
            self.upsert(key, asset_entry(key.2, &tag, &details));
        }
        let need_number = std::mem::take(&mut self.need_number);
        for (key, details, number) in self
            .read_back(conn, table, "work_order", need_number)
            .await?
        {
            self.upsert(key, work_order_entry(key.2, &number, &details));
        }
        let mut deleted: (Vec<Uuid>, Vec<&str>, Vec<Uuid>) = Default::default();
        let mut upserts: (Vec<Uuid>, Vec<&str>, Vec<Uuid>, Vec<String>) = Default::default();
        let mut upsert_text: (Vec<String>, Vec<String>, Vec<String>, Vec<String>) =
            Default::default();
        let mut upsert_inactive: Vec<bool> = Vec::new();
        let mut flags: (Vec<Uuid>, Vec<&str>, Vec<Uuid>, Vec<bool>) = Default::default();
        for key in &self.order {
            let Some(change) = self.changes.remove(key) else {
                continue;
            };
            let (tenant_id, kind, id) = *key;
            if change.deleted {
                deleted.0.push(tenant_id);
                deleted.1.push(kind);
                deleted.2.push(id);
                continue;
            }
            if let Some(entry) = change.entry {
                upserts.0.push(tenant_id);
                upserts.1.push(kind);
                upserts.2.push(id);
                upserts.3.push(entry.title);
                upsert_text.0.push(entry.detail);
                upsert_text.1.push(entry.href);
                upsert_text.2.push(entry.keys);
                upsert_text.3.push(entry.words);
                upsert_inactive.push(change.inactive.unwrap_or(false));
            }
            if let Some(inactive) = change.inactive {
                flags.0.push(tenant_id);
                flags.1.push(kind);
                flags.2.push(id);
                flags.3.push(inactive);
            }
        }
        if !deleted.0.is_empty() {
            sqlx::query(&format!(
                "DELETE FROM {table} s USING unnest($1::uuid[], $2::text[], $3::uuid[]) AS k(t, kind, id)
                  WHERE s.tenant_id = k.t AND s.kind = k.kind AND s.id = k.id"
            ))
            .bind(deleted.0)
            .bind(deleted.1)
            .bind(deleted.2)
            .execute(&mut *conn)
            .await?;
        }
        if !upserts.0.is_empty() {
            sqlx::query(&format!(
                "INSERT INTO {table} (tenant_id, kind, id, title, detail, href, keys, words, inactive)
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[],
                                      $6::text[], $7::text[], $8::text[], $9::bool[])
                 ON CONFLICT (tenant_id, kind, id) DO UPDATE SET
                    title = excluded.title, detail = excluded.detail, href = excluded.href,
                    keys = excluded.keys, words = excluded.words"
            ))
            .bind(upserts.0)
            .bind(upserts.1)
            .bind(upserts.2)
            .bind(upserts.3)
            .bind(upsert_text.0)
            .bind(upsert_text.1)
            .bind(upsert_text.2)
            .bind(upsert_text.3)
            .bind(upsert_inactive)
            .execute(&mut *conn)
            .await?;
        }
        if !flags.0.is_empty() {
            sqlx::query(&format!(
                "UPDATE {table} s SET inactive = k.inactive
                   FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::bool[]) AS k(t, kind, id, inactive)
                  WHERE s.tenant_id = k.t AND s.kind = k.kind AND s.id = k.id"
            ))
            .bind(flags.0)
            .bind(flags.1)
            .bind(flags.2)
            .bind(flags.3)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Projection for SearchProjection {
    fn name(&self) -> &'static str {
        "search"
    }

    /// 2: work orders (issue 5).
    fn version(&self) -> i32 {
        2
    }

    fn tables(&self) -> &'static [&'static str] {
        &["search_entries"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        tables: &Tables,
        events: &[StoredEvent],
    ) -> Result<(), ApplyError> {
        let mut batch = Batch::default();
        for (index, event) in events.iter().enumerate() {
            let kind: &'static str = match event.aggregate_type.as_str() {
                "company" => "company",
                "contact" => "contact",
                "asset" => "asset",
                "credential" => "credential",
                "work_order" => "work_order",
                _ => continue,
            };
            // Only these work order events change what the search shows of an order.
            if kind == "work_order"
                && !matches!(
                    event.event_type.as_str(),
                    "WorkOrderOpened" | "WorkOrderChanged" | "WorkOrderStatusChanged"
                )
            {
                continue;
            }
            // Only these company events change what the search shows of a company.
            if kind == "company"
                && !matches!(
                    event.event_type.as_str(),
                    "CompanyRegistered" | "CompanyRenamed" | "CompanyArchived" | "CompanyRestored"
                )
            {
                continue;
            }
            let at = |e: String| ApplyError::at(index, e);
            let id = Uuid::parse_str(&event.aggregate_id)
                .map_err(|_| at(format!("{kind} id {:?}", event.aggregate_id)))?;
            let tenant_id = event.meta.as_ref().map_err(|e| at(e.clone()))?.tenant_id;
            let key = (tenant_id, kind, id);
            match kind {
                "company" => {
                    let company: CompanyEvent =
                        serde_json::from_str(event.payload.get()).map_err(|e| at(e.to_string()))?;
                    match company {
                        CompanyEvent::CompanyRegistered { name, .. }
                        | CompanyEvent::CompanyRenamed { name, .. } => batch.upsert(
                            key,
                            Entry {
                                title: name.clone(),
                                detail: "Company".into(),
                                href: format!("/companies/{id}"),
                                keys: String::new(),
                                words: name,
                            },
                        ),
                        CompanyEvent::CompanyArchived {} => batch.set_inactive(key, true),
                        CompanyEvent::CompanyRestored {} => batch.set_inactive(key, false),
                        #[allow(unreachable_patterns)]
                        _ => {}
                    }
                }
                "contact" => match crate::contacts::decode(event).map_err(at)? {
                    ContactEvent::ContactAdded { details, .. }
                    | ContactEvent::ContactUpdated { details } => {
                        batch.upsert(key, contact_entry(id, &details))
                    }
                    ContactEvent::ContactLeft {} => batch.set_inactive(key, true),
                    ContactEvent::ContactReturned {} => batch.set_inactive(key, false),
                    ContactEvent::ContactNotificationsChanged { .. } => {}
                },
                "asset" => match crate::assets::decode(event).map_err(at)? {
                    AssetEvent::AssetRegistered { tag, details, .. } => {
                        batch.upsert(key, asset_entry(id, &tag, &details))
                    }
                    AssetEvent::AssetUpdated { details } => batch.need_tag.push((key, details)),
                    AssetEvent::AssetStatusChanged { status, .. } => batch.set_inactive(
                        key,
                        matches!(status, AssetStatus::Retired | AssetStatus::Lost),
                    ),
                    _ => {}
                },
                "work_order" => match serde_json::from_str::<WorkOrderEvent>(event.payload.get())
                    .map_err(|e| at(e.to_string()))?
                {
                    WorkOrderEvent::WorkOrderOpened {
                        number, details, ..
                    } => batch.upsert(key, work_order_entry(id, &number.to_string(), &details)),
                    WorkOrderEvent::WorkOrderChanged { details } => {
                        batch.need_number.push((key, details))
                    }
                    WorkOrderEvent::WorkOrderStatusChanged { status, .. } => {
                        batch.set_inactive(key, !status.is_open())
                    }
                    _ => {}
                },
                _ => match crate::credentials::decode(event).map_err(at)? {
                    CredentialEvent::CredentialAdded { details, .. }
                    | CredentialEvent::CredentialUpdated { details } => {
                        batch.upsert(key, credential_entry(id, &details))
                    }
                    CredentialEvent::CredentialRemoved {} => batch.delete(key),
                    _ => {}
                },
            }
        }
        batch.write(conn, tables.get(0)).await?;
        Ok(())
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Hit {
    pub kind: String,
    pub id: Uuid,
    pub title: String,
    pub detail: String,
    pub href: String,
    pub inactive: bool,
}

/// The kinds of records, in the order results are grouped.
pub const KINDS: [&str; 5] = ["company", "contact", "asset", "credential", "work_order"];

/// Candidates read from the index before ranking: bounds the cost of a query that matches a
/// large part of a big tenant (such as "laptop" among 100,000 assets).
const CANDIDATES: i64 = 400;

/// Searches `tenant_id`'s records of `kinds` for `q`: at most `per_kind` results of each
/// kind, best first (exact identifiers, then prefix matches, then by similarity), inactive
/// records (archived, former, retired) after active ones.
///
/// A query matches by substring (on names and identifiers) and by full text (on names); only
/// when nothing matches that way does it fall back to trigram word similarity (typos), which
/// is the expensive part: a word shared by many rows (`bench` in every tag `BENCH-…`) makes
/// thousands of rows similar to an exact tag. A query of one or two letters (the header's
/// box suggests from the first letter) cannot use the trigram index: it matches the words
/// that start with it, through the full-text index. See docs/performance.md, "Search".
pub async fn search<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    q: &str,
    kinds: &[&str],
    per_kind: i64,
) -> Result<Vec<Hit>, sqlx::Error> {
    // PostgreSQL text holds no NUL; other control characters match nothing anyway.
    let q: String = q
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .to_lowercase();
    if q.is_empty() || kinds.is_empty() {
        return Ok(Vec::new());
    }
    // A MAC address typed any way matches its stored compact form (`keys` holds both forms;
    // twelve hex digits in a row are far more selective for the trigram index than six
    // two-digit groups).
    let q = domain::asset::normalise_mac(&q)
        .map(|mac| mac.replace(':', "").to_lowercase())
        .unwrap_or(q);
    let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
    let prefix: String = q.chars().filter(|c| c.is_alphanumeric()).collect();
    let (filter, pattern) = if q.chars().count() < 3 && !prefix.is_empty() {
        (
            "to_tsvector('simple', words) @@ to_tsquery('simple', $3)",
            format!("{prefix}:*"),
        )
    } else {
        (
            "lower(words || ' ' || keys) LIKE $3
             OR to_tsvector('simple', words) @@ plainto_tsquery('simple', $2)",
            format!(
                "%{}%",
                q.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            ),
        )
    };
    // `fuzzy` runs only when `precise` found nothing (its one-time filter skips the scan),
    // and never for one or two letters.
    sqlx::query_as(&format!(
        "WITH precise AS (
            SELECT kind, id, title, detail, href, inactive, keys, words
              FROM search_entries
             WHERE tenant_id = $1 AND kind = ANY($5) AND ({filter})
             LIMIT $6
         ), fuzzy AS (
            SELECT kind, id, title, detail, href, inactive, keys, words
              FROM search_entries
             WHERE NOT EXISTS (SELECT FROM precise) AND char_length($2) >= 3
               AND tenant_id = $1 AND kind = ANY($5)
               AND $2 <% lower(words || ' ' || keys)
             LIMIT $6
         ), candidates AS (
            SELECT *, lower(words || ' ' || keys) AS doc FROM precise
            UNION ALL
            SELECT *, lower(words || ' ' || keys) AS doc FROM fuzzy
         ), ranked AS (
            SELECT *, row_number() OVER (
                       PARTITION BY kind
                       ORDER BY inactive,
                                (' ' || lower(keys) || ' ') LIKE '% ' || $2 || ' %' DESC,
                                (' ' || doc) LIKE '% ' || $2 || '%' DESC,
                                word_similarity($2, doc) DESC,
                                title, id) AS n
              FROM candidates
         )
         SELECT kind, id, title, detail, href, inactive FROM ranked
          WHERE n <= $4
          ORDER BY array_position($5, kind), n"
    ))
    .bind(tenant_id)
    .bind(&q)
    .bind(&pattern)
    .bind(per_kind)
    .bind(&kinds)
    .bind(CANDIDATES)
    .fetch_all(db)
    .await
}
