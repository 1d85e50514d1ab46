//! `bench-search`: the header's search box at scale. In a scratch database on the same server
//! it seeds one tenant with many assets (and their companies and contacts) plus a second,
//! smaller tenant, rebuilds the `search` projection from the log, then times
//! `projections::search::search` for realistic queries next to two raw ceilings measured in
//! the same run: a primary-key lookup of one `search_entries` row and a plain trigram-indexed
//! `LIKE '%serial%'`. Queries are timed round-robin (every query once per round), so noise
//! from a shared machine spreads evenly over them; compare the ratios.
//!
//! The last line printed is one JSON object with every figure.

use std::time::{Duration, Instant};

use anyhow::Context;
use commands::DEFAULT_TENANT_ID;
use projections::rebuild::RebuildOptions;
use projections::search::{Hit, SearchProjection, KINDS};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::bench::{in_scratch_database, raw_read};

/// The target: every query answers in under this, median and p95.
const TARGET_MS: f64 = 50.0;
/// Results per kind, as the search page asks (`web::search::PER_KIND`).
const PER_KIND: i64 = 20;
/// Untimed runs of every query before the timed rounds.
const WARM_UP: usize = 3;
/// Assets per seeding statement.
const SEED_CHUNK: u64 = 50_000;
/// Contacts per company.
const CONTACTS_PER_COMPANY: u64 = 2;

#[derive(Debug, Clone)]
pub struct Options {
    pub assets: u64,
    pub companies: u64,
    pub runs: usize,
    pub keep: bool,
}

pub async fn bench_search(boot: &pgboot::PgBoot, options: Options) -> anyhow::Result<u8> {
    let keep = options.keep;
    in_scratch_database(boot, "bench-search", keep, |url| run(url, options)).await
}

/// One tenant's seed: ids and identifiers derive from `prefix`, so two tenants never share
/// an aggregate id, a serial number or a MAC address.
struct TenantSeed {
    tenant_id: Uuid,
    prefix: String,
    tag_prefix: &'static str,
    /// First three bytes of every MAC address of the tenant.
    mac_prefix: &'static str,
    companies: u64,
    assets: u64,
}

/// Company names: 40 × 50 distinct "first second" pairs, then numbered.
const COMPANY_FIRST: &str = "ARRAY['Acme','Northwind','Bluebird','Harbor','Summit','Cedar',\
    'Pioneer','Riverside','Granite','Maple','Oakridge','Silverline','Redwood','Lakeside',\
    'Evergreen','Ironbridge','Sunrise','Westfield','Brightwater','Highland','Coastal',\
    'Meadow','Falcon','Keystone','Liberty','Orchard','Pinnacle','Quarry','Stonegate',\
    'Tidewater','Union','Valley','Willow','Yellowstone','Zenith','Aurora','Beacon','Copper',\
    'Driftwood','Elm']";
const COMPANY_SECOND: &str = "ARRAY['Dental','Logistics','Legal','Bakery','Motors','Clinic',\
    'Accounting','Architects','Farms','Hotel','Veterinary','Pharmacy','Plumbing','Roofing',\
    'Realty','Insurance','Printing','Brewing','Catering','Fitness','Optics','Florist',\
    'Engineering','Consulting','Freight','Marine','Media','School','Church','Library',\
    'Garage','Kitchens','Electric','Security','Travel','Studio','Salon','Pediatrics',\
    'Orthodontics','Chiropractic','Surveying','Landscaping','Storage','Bank','Credit Union',\
    'Builders','Cabinetry','Auto Body','Physiotherapy','Opticians']";

/// `count` `CompanyRegistered` events, one statement.
async fn seed_companies(pool: &PgPool, t: &TenantSeed) -> anyhow::Result<()> {
    sqlx::query(&format!(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, recorded_at)
         SELECT 'company', md5($2 || ':company:' || c)::uuid::text, 1, 'CompanyRegistered', '1',
                jsonb_build_object('CompanyRegistered',
                    jsonb_build_object('name', x.name, 'monthly_rate', '500.00')),
                jsonb_build_object('tenant_id', $1::uuid, 'actor', 'bench-seed',
                                   'command_id', x.command_id, 'correlation_id', x.command_id,
                                   'causation_id', NULL),
                now() - interval '3 days' + c * interval '1 millisecond'
           FROM generate_series(0::int8, $3::int8 - 1) AS c,
                LATERAL (SELECT md5($2 || ':command:company:' || c)::uuid AS command_id,
                                ({COMPANY_FIRST})[c % 40 + 1] || ' ' || ({COMPANY_SECOND})[(c / 40) % 50 + 1]
                                || CASE WHEN c >= 2000 THEN ' ' || (c / 2000 + 1) ELSE '' END
                                AS name) x
          ORDER BY c"
    ))
    .bind(t.tenant_id)
    .bind(&t.prefix)
    .bind(t.companies as i64)
    .execute(pool)
    .await
    .context("seeding companies")?;
    Ok(())
}

/// `CONTACTS_PER_COMPANY` `ContactAdded` events per company, one statement.
async fn seed_contacts(pool: &PgPool, t: &TenantSeed) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, recorded_at)
         SELECT 'contact', md5($2 || ':contact:' || k)::uuid::text, 1, 'ContactAdded', '1',
                jsonb_build_object('ContactAdded', jsonb_build_object(
                    'company_id', md5($2 || ':company:' || (k % $3))::uuid,
                    'details', jsonb_build_object(
                        'name', x.first || ' ' || x.last,
                        'email', lower(x.first || '.' || x.last) || k || '@example.com',
                        'office_phone', '+1 555 ' || lpad(((k * 7919) % 10000000)::text, 7, '0'),
                        'cell_phone', '',
                        'department', (ARRAY['Accounts','Operations','Front office','Management',
                                             'Sales','IT'])[k % 6 + 1],
                        'position', (ARRAY['Office manager','Accountant','Owner','Receptionist',
                                           'Director','Technician','Assistant'])[k % 7 + 1],
                        'primary', k < $3, 'billing', k < $3, 'notes', ''))),
                jsonb_build_object('tenant_id', $1::uuid, 'actor', 'bench-seed',
                                   'command_id', x.command_id, 'correlation_id', x.command_id,
                                   'causation_id', NULL),
                now() - interval '2 days' + k * interval '1 millisecond'
           FROM generate_series(0::int8, $3::int8 * $4::int8 - 1) AS k,
                LATERAL (SELECT md5($2 || ':command:contact:' || k)::uuid AS command_id,
                                (ARRAY['Anna','Ben','Carla','David','Emma','Felix','Grace','Hugo',
                                       'Iris','Jack','Kate','Liam','Maria','Noah','Olivia','Paul',
                                       'Rosa','Sam','Tina','Victor'])[k % 20 + 1] AS first,
                                (ARRAY['Smith','Jones','Garcia','Miller','Brown','Davis','Lopez',
                                       'Wilson','Moore','Taylor','Clark','Hall','Young','King',
                                       'Wright','Green','Baker','Adams','Nelson','Hill','Scott',
                                       'Reed','Cook','Ward'])[(k / 20) % 24 + 1] AS last) x
          ORDER BY k",
    )
    .bind(t.tenant_id)
    .bind(&t.prefix)
    .bind(t.companies as i64)
    .bind(CONTACTS_PER_COMPANY as i64)
    .execute(pool)
    .await
    .context("seeding contacts")?;
    Ok(())
}

/// `AssetRegistered` for assets `start..=end` (and `AssetStatusChanged` to retired for one in
/// 20), one statement. Categories: laptop 40 %, computer 25 %, phone 10 %, printer 8 %,
/// network 7 %, server 5 %, other 5 %; names such as "Reception laptop 1234".
async fn seed_assets(pool: &PgPool, t: &TenantSeed, start: u64, end: u64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, recorded_at)
         SELECT 'asset', a.id, s.seq,
                CASE s.seq WHEN 1 THEN 'AssetRegistered' ELSE 'AssetStatusChanged' END, '1',
                CASE s.seq
                  WHEN 1 THEN jsonb_build_object('AssetRegistered', jsonb_build_object(
                      'company_id', md5($2 || ':company:' || (a.g % $5))::uuid,
                      'number', a.g + 1,
                      'tag', $6 || '-' || lpad((a.g + 1)::text, 5, '0'),
                      'details', jsonb_build_object(
                          'name', a.place || ' ' || a.noun || ' ' || (1000 + a.h3 % 9000),
                          'category', a.category,
                          'make', split_part(a.make_model, '|', 1),
                          'model', split_part(a.make_model, '|', 2),
                          'serial_number', 'SN' || upper(substr(a.m, 20, 6))
                                           || upper(lpad(to_hex(a.g), 6, '0')),
                          'mac_address', $7 || ':' || substr(a.mac, 1, 2) || ':'
                                         || substr(a.mac, 3, 2) || ':' || substr(a.mac, 5, 2),
                          'ip_address', '10.' || (a.g / 65536) % 256 || '.' || (a.g / 256) % 256
                                        || '.' || a.g % 256,
                          'operating_system', a.os,
                          'location', (ARRAY['Head office','Branch office','Warehouse',
                                             'Home office','Floor 2','Floor 3','Basement',
                                             'Shop floor'])[a.h2 % 8 + 1],
                          'vendor', (ARRAY['Ingram Micro','TD Synnex','CDW','Amazon Business',
                                           'Insight'])[a.h3 % 5 + 1],
                          'notes', ''),
                      'status', 'active'))
                  ELSE jsonb_build_object('AssetStatusChanged',
                      jsonb_build_object('status', 'retired', 'previous_status', 'active'))
                END,
                jsonb_build_object('tenant_id', $1::uuid, 'actor', 'bench-seed',
                                   'command_id', md5($2 || ':command:asset:' || a.g || ':' || s.seq)::uuid,
                                   'correlation_id', md5($2 || ':command:asset:' || a.g || ':' || s.seq)::uuid,
                                   'causation_id', NULL),
                now() - interval '1 day' + (a.g * 2 + s.seq) * interval '1 millisecond'
           FROM (SELECT g, m, id, h1, h2, h3, category, make_model,
                        (ARRAY['Reception','Accounts','Warehouse','Boardroom','Workshop','Sales',
                               'Server room','Kitchen','Lab','Front desk','Dispatch','Studio',
                               'Office','Training room','Manager'])[h2 % 15 + 1] AS place,
                        CASE category
                          WHEN 'laptop' THEN 'laptop'
                          WHEN 'computer' THEN (ARRAY['PC','desktop','workstation'])[h3 % 3 + 1]
                          WHEN 'phone' THEN (ARRAY['desk phone','mobile'])[h3 % 2 + 1]
                          WHEN 'printer' THEN 'printer'
                          WHEN 'network' THEN (ARRAY['switch','router','access point',
                                                     'firewall'])[h3 % 4 + 1]
                          WHEN 'server' THEN (ARRAY['server','NAS'])[h3 % 2 + 1]
                          ELSE (ARRAY['UPS','scanner','projector','camera'])[h3 % 4 + 1]
                        END AS noun,
                        CASE
                          WHEN category IN ('laptop', 'computer') AND make_model LIKE 'Apple|%'
                            THEN 'macOS 14'
                          WHEN category IN ('laptop', 'computer')
                            THEN (ARRAY['Windows 11 Pro','Windows 10 Pro','Windows 11 Pro',
                                        'Ubuntu 22.04'])[h3 % 4 + 1]
                          WHEN category = 'server'
                            THEN (ARRAY['Windows Server 2022','Debian 12'])[h3 % 2 + 1]
                          WHEN category = 'phone' AND make_model LIKE 'Apple|%' THEN 'iOS 17'
                          ELSE ''
                        END AS os,
                        lpad(upper(to_hex((g * 10007) % 16777216)), 6, '0') AS mac
                   FROM (SELECT g, m, id, h1, h2, h3, category,
                                (ARRAY['Dell|Latitude 5440','HP|EliteBook 840 G10',
                                       'Lenovo|ThinkPad T14','Apple|MacBook Air M2',
                                       'Dell|OptiPlex 7010','HP|ProDesk 400 G9',
                                       'Lenovo|ThinkCentre M70q','Apple|iMac 24',
                                       'Yealink|T54W','Cisco|CP-8841','Apple|iPhone 14',
                                       'Samsung|Galaxy A54','Brother|HL-L2350DW',
                                       'HP|LaserJet Pro M404','Canon|imageCLASS MF445dw',
                                       'Kyocera|ECOSYS P2040dn','Ubiquiti|UniFi Switch 24',
                                       'Cisco|Catalyst 1000','Netgear|GS308',
                                       'Fortinet|FortiGate 60F','Dell|PowerEdge R650',
                                       'HPE|ProLiant DL380','Synology|DS920+',
                                       'Lenovo|ThinkSystem SR630','APC|Smart-UPS 1500',
                                       'Fujitsu|ScanSnap iX1600','Epson|EB-X49',
                                       'Axis|M3106'])[
                                    array_position(ARRAY['laptop','computer','phone','printer',
                                                         'network','server','other'], category) * 4
                                    - 3 + h3 % 4] AS make_model
                           FROM (SELECT g, m, md5($2 || ':asset:' || g)::uuid::text AS id,
                                        ('x' || substr(m, 1, 7))::bit(28)::int AS h1,
                                        ('x' || substr(m, 8, 7))::bit(28)::int AS h2,
                                        ('x' || substr(m, 15, 5))::bit(20)::int AS h3,
                                        CASE
                                          WHEN ('x' || substr(m, 1, 7))::bit(28)::int % 100 < 40 THEN 'laptop'
                                          WHEN ('x' || substr(m, 1, 7))::bit(28)::int % 100 < 65 THEN 'computer'
                                          WHEN ('x' || substr(m, 1, 7))::bit(28)::int % 100 < 75 THEN 'phone'
                                          WHEN ('x' || substr(m, 1, 7))::bit(28)::int % 100 < 83 THEN 'printer'
                                          WHEN ('x' || substr(m, 1, 7))::bit(28)::int % 100 < 90 THEN 'network'
                                          WHEN ('x' || substr(m, 1, 7))::bit(28)::int % 100 < 95 THEN 'server'
                                          ELSE 'other'
                                        END AS category
                                   FROM (SELECT g, md5($2 || ':hash:' || g) AS m
                                           FROM generate_series($3::int8, $4::int8) AS g) r) q) p) a
                CROSS JOIN LATERAL (VALUES (1), (2)) AS s(seq)
          WHERE s.seq = 1 OR a.g % 20 = 19
          ORDER BY a.g, s.seq",
    )
    .bind(t.tenant_id)
    .bind(&t.prefix)
    .bind(start as i64)
    .bind(end as i64)
    .bind(t.companies as i64)
    .bind(t.tag_prefix)
    .bind(t.mac_prefix)
    .execute(pool)
    .await
    .context("seeding assets")?;
    Ok(())
}

async fn seed_tenant(pool: &PgPool, t: &TenantSeed) -> anyhow::Result<()> {
    seed_companies(pool, t).await?;
    seed_contacts(pool, t).await?;
    let mut start = 0;
    while start < t.assets {
        let end = (start + SEED_CHUNK).min(t.assets) - 1;
        seed_assets(pool, t, start, end).await?;
        start = end + 1;
    }
    Ok(())
}

/// One asset's identifiers, read back from the built index.
#[derive(Debug, Clone)]
struct Sample {
    id: Uuid,
    title: String,
    tag: String,
    serial: String,
    mac: String,
    ip: String,
}

async fn sample_asset(pool: &PgPool, tenant_id: Uuid, tag: &str) -> anyhow::Result<Sample> {
    let (id, title, keys): (Uuid, String, String) = sqlx::query_as(
        "SELECT id, title, keys FROM search_entries
          WHERE tenant_id = $1 AND kind = 'asset' AND title LIKE $2 || ' %'",
    )
    .bind(tenant_id)
    .bind(tag)
    .fetch_one(pool)
    .await
    .with_context(|| format!("finding asset {tag}"))?;
    // keys: tag, serial, MAC, MAC without colons, IP.
    let keys: Vec<&str> = keys.split(' ').collect();
    anyhow::ensure!(keys.len() == 5, "unexpected keys {keys:?} of {tag}");
    Ok(Sample {
        id,
        title,
        tag: keys[0].to_string(),
        serial: keys[1].to_string(),
        mac: keys[2].to_string(),
        ip: keys[4].to_string(),
    })
}

/// What a timed query is and what it must find.
struct Case {
    label: &'static str,
    tenant_id: Uuid,
    q: String,
    /// The title the first hit of `kind` must have.
    expect_first: Option<(&'static str, String)>,
    /// The query must find nothing.
    expect_none: bool,
    /// Not in the list (reported, but outside its verdict).
    extra: bool,
}

/// What is timed: the real search, or one of the raw ceilings.
enum Probe {
    Search(Case),
    PrimaryKey { tenant_id: Uuid, id: Uuid },
    Like { tenant_id: Uuid, serial: String },
}

impl Probe {
    fn label(&self) -> &str {
        match self {
            Probe::Search(case) => case.label,
            Probe::PrimaryKey { .. } => "ceiling: primary-key lookup",
            Probe::Like { .. } => "ceiling: LIKE '%serial%' LIMIT 20",
        }
    }

    fn query(&self) -> String {
        match self {
            Probe::Search(case) => case.q.clone(),
            Probe::PrimaryKey { id, .. } => id.to_string(),
            Probe::Like { serial, .. } => serial.clone(),
        }
    }

    async fn run(&self, pool: &PgPool) -> anyhow::Result<Vec<Hit>> {
        Ok(match self {
            Probe::Search(case) => {
                projections::search::search(pool, case.tenant_id, &case.q, &KINDS, PER_KIND).await?
            }
            Probe::PrimaryKey { tenant_id, id } => {
                sqlx::query_as(
                    "SELECT kind, id, title, detail, href, inactive FROM search_entries
                      WHERE tenant_id = $1 AND kind = 'asset' AND id = $2",
                )
                .bind(tenant_id)
                .bind(id)
                .fetch_all(pool)
                .await?
            }
            Probe::Like { tenant_id, serial } => {
                sqlx::query_as(
                    "SELECT kind, id, title, detail, href, inactive FROM search_entries
                      WHERE tenant_id = $1 AND lower(words || ' ' || keys) LIKE $2 LIMIT 20",
                )
                .bind(tenant_id)
                .bind(format!("%{}%", serial.to_lowercase()))
                .fetch_all(pool)
                .await?
            }
        })
    }
}

/// Nearest-rank percentile of sorted durations, in ms.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

fn median_ms(sorted: &[Duration]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if n % 2 == 1 {
        ms(sorted[n / 2])
    } else {
        (ms(sorted[n / 2 - 1]) + ms(sorted[n / 2])) / 2.0
    }
}

/// What the first result of `kind` is, for the report.
fn first_of(hits: &[Hit], kind: &str) -> Option<String> {
    hits.iter()
        .find(|h| h.kind == kind)
        .map(|h| h.title.clone())
}

fn summary(hits: &[Hit]) -> String {
    let mut parts = Vec::new();
    for kind in KINDS {
        let n = hits.iter().filter(|h| h.kind == kind).count();
        if n > 0 {
            parts.push(format!("{n} {kind}"));
        }
    }
    if parts.is_empty() {
        "no hits".into()
    } else {
        parts.join(", ")
    }
}

async fn run(url: String, options: Options) -> anyhow::Result<serde_json::Value> {
    let pool = commands::db::connect(&url, 4).await?;
    commands::db::migrate(&pool).await?;

    // The tenant under test, and a second one (a fifth of its size) sharing the tables and
    // indexes: its rows must not slow the first tenant's queries down.
    let run_prefix = Uuid::new_v4().simple().to_string();
    let main = TenantSeed {
        tenant_id: DEFAULT_TENANT_ID,
        prefix: format!("{run_prefix}:main"),
        tag_prefix: "BENCH",
        mac_prefix: "3C:52:82",
        companies: options.companies,
        assets: options.assets,
    };
    let other = TenantSeed {
        tenant_id: Uuid::from_u128(0x0b5e_4c4e_0000_4000_8000_0000_0000_0002),
        prefix: format!("{run_prefix}:other"),
        tag_prefix: "ACME",
        mac_prefix: "A4:BB:6D",
        companies: (options.companies / 5).max(1),
        assets: (options.assets / 5).max(1),
    };
    let started = Instant::now();
    seed_tenant(&pool, &main).await?;
    seed_tenant(&pool, &other).await?;
    sqlx::raw_sql("VACUUM (ANALYZE) events")
        .execute(&pool)
        .await?;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await?;
    let seed_s = started.elapsed().as_secs_f64();
    out!(
        "log: {events} events: tenant 1 {} companies, {} contacts, {} assets; tenant 2 {} companies, \
         {} contacts, {} assets (seeded in {seed_s:.1} s, then VACUUM ANALYZE)",
        main.companies,
        main.companies * CONTACTS_PER_COMPANY,
        main.assets,
        other.companies,
        other.companies * CONTACTS_PER_COMPANY,
        other.assets,
    );

    // The raw read of the whole log, next to the rebuild of `search` (which reads it too).
    let options_rebuild = RebuildOptions::default();
    let read = raw_read(&pool, options_rebuild.batch_size).await?;
    let started = Instant::now();
    let report =
        projections::rebuild::rebuild(&pool, &SearchProjection, &options_rebuild, |_, _| {})
            .await
            .context("rebuilding the search projection")?;
    let rebuild_s = started.elapsed().as_secs_f64();
    let read_s = read.elapsed.as_secs_f64();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM search_entries")
        .fetch_one(&pool)
        .await?;
    let rows_main: i64 =
        sqlx::query_scalar("SELECT count(*) FROM search_entries WHERE tenant_id = $1")
            .bind(main.tenant_id)
            .fetch_one(&pool)
            .await?;
    out!(
        "rebuild search: {rebuild_s:.2} s for {} events -> {rows} rows ({rows_main} in tenant 1); \
         raw read of the log {read_s:.2} s; ratio {:.1}x the raw read",
        report.events,
        rebuild_s / read_s.max(1e-9)
    );
    // A rebuild leaves the new table without statistics until autovacuum analyses it.
    let started = Instant::now();
    sqlx::raw_sql("ANALYZE search_entries")
        .execute(&pool)
        .await?;
    out!(
        "ANALYZE search_entries: {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // The samples: an asset in the middle of tenant 1, a company, an asset of tenant 2.
    let pick = |t: &TenantSeed, fraction: f64| {
        let number = ((t.assets as f64 * fraction) as u64).clamp(1, t.assets);
        domain::asset::format_tag(t.tag_prefix, number)
    };
    let asset = sample_asset(&pool, main.tenant_id, &pick(&main, 0.4217)).await?;
    let foreign = sample_asset(&pool, other.tenant_id, &pick(&other, 0.5)).await?;
    let company: String = sqlx::query_scalar(
        "SELECT title FROM search_entries WHERE tenant_id = $1 AND kind = 'company'
          ORDER BY id LIMIT 1 OFFSET $2",
    )
    .bind(main.tenant_id)
    .bind((main.companies / 3) as i64)
    .fetch_one(&pool)
    .await?;
    let ip_host = asset.ip.clone();

    let t1 = main.tenant_id;
    let case = |label, q: &str| Case {
        label,
        tenant_id: t1,
        q: q.to_string(),
        expect_first: None,
        expect_none: false,
        extra: false,
    };
    let probes = vec![
        Probe::PrimaryKey {
            tenant_id: t1,
            id: asset.id,
        },
        Probe::Like {
            tenant_id: t1,
            serial: asset.serial.clone(),
        },
        Probe::Search(Case {
            expect_first: Some(("asset", asset.title.clone())),
            ..case("exact tag", &asset.tag)
        }),
        Probe::Search(Case {
            expect_first: Some(("asset", asset.title.clone())),
            ..case("exact serial", &asset.serial)
        }),
        Probe::Search(Case {
            expect_first: Some(("asset", asset.title.clone())),
            ..case(
                "MAC without colons",
                &asset.mac.replace(':', "").to_lowercase(),
            )
        }),
        Probe::Search(Case {
            expect_first: Some(("asset", asset.title.clone())),
            ..case("IP address", &ip_host)
        }),
        Probe::Search(Case {
            expect_first: Some(("company", company.clone())),
            ..case("company name", &company)
        }),
        Probe::Search(case("common word (40 % of assets)", "laptop")),
        Probe::Search(case("misspelt word", "lapotp")),
        Probe::Search(case("misspelt word", "recepton")),
        Probe::Search(case("two words", "reception laptop")),
        Probe::Search(Case {
            expect_none: true,
            ..case("no match", "xylophone")
        }),
        Probe::Search(Case {
            expect_none: true,
            ..case("serial of the other tenant", &foreign.serial)
        }),
        Probe::Search(Case {
            tenant_id: other.tenant_id,
            ..case("common word, other tenant", "laptop")
        }),
        // The header's box suggests from the first letter typed: queries too short for a
        // trigram index.
        Probe::Search(Case {
            extra: true,
            ..case("extra: one letter (suggest box)", "a")
        }),
        Probe::Search(Case {
            extra: true,
            ..case("extra: two letters, rare", "zq")
        }),
    ];

    // Warm up (and check what each query finds).
    let mut found = Vec::new();
    for probe in &probes {
        let mut hits = Vec::new();
        for _ in 0..WARM_UP {
            hits = probe.run(&pool).await?;
        }
        found.push(hits);
    }
    // Timed rounds: every probe once per round.
    let mut timings: Vec<Vec<Duration>> = probes.iter().map(|_| Vec::new()).collect();
    for _ in 0..options.runs {
        for (probe, times) in probes.iter().zip(&mut timings) {
            let started = Instant::now();
            probe.run(&pool).await?;
            times.push(started.elapsed());
        }
    }
    for times in &mut timings {
        times.sort();
    }
    pool.close().await;

    let pk_median = median_ms(&timings[0]);
    let like_median = median_ms(&timings[1]);
    out!(
        "{} runs per query after {WARM_UP} warm-up runs, round-robin; {} results per kind; \
         ratios are medians over the LIKE ceiling's median ({like_median:.2} ms) and over the \
         primary-key lookup's ({pk_median:.2} ms)",
        options.runs,
        PER_KIND
    );
    out!(
        "{:<34} {:<28} {:>9} {:>9} {:>9} {:>8}  {:<5} hits",
        "query",
        "q",
        "median ms",
        "p95 ms",
        "x LIKE",
        "x PK",
        "<50ms"
    );
    let mut rows_json = Vec::new();
    let mut all_pass = true;
    let mut extra_pass = true;
    let mut wrong = Vec::new();
    for ((probe, times), hits) in probes.iter().zip(&timings).zip(&found) {
        let median = median_ms(times);
        let p95 = percentile_ms(times, 95.0);
        let pass = median < TARGET_MS && p95 < TARGET_MS;
        let is_search = matches!(probe, Probe::Search(_));
        match probe {
            Probe::Search(case) if case.extra => extra_pass &= pass,
            Probe::Search(_) => all_pass &= pass,
            _ => {}
        }
        let mut check = String::new();
        if let Probe::Search(case) = probe {
            if let Some((kind, title)) = &case.expect_first {
                let first = first_of(hits, kind);
                if first.as_deref() != Some(title.as_str()) {
                    check = format!(" WRONG FIRST {kind}: {first:?}, expected {title:?}");
                }
            }
            if case.expect_none && !hits.is_empty() {
                check = format!(" EXPECTED NO HITS: {:?}", hits[0].title);
            }
            if !check.is_empty() {
                wrong.push(format!("{}{check}", case.label));
            }
        }
        let q: String = probe.query().chars().take(28).collect();
        out!(
            "{:<34} {:<28} {median:>9.2} {p95:>9.2} {:>9.1} {:>8.1}  {:<5} {}{check}",
            probe.label(),
            q,
            median / like_median,
            median / pk_median,
            if !is_search {
                "-"
            } else if pass {
                "PASS"
            } else {
                "FAIL"
            },
            summary(hits),
        );
        rows_json.push(json!({
            "query": probe.label(),
            "q": probe.query(),
            "median_ms": (median * 100.0).round() / 100.0,
            "p95_ms": (p95 * 100.0).round() / 100.0,
            "ratio_like": (median / like_median * 100.0).round() / 100.0,
            "ratio_pk": (median / pk_median * 100.0).round() / 100.0,
            "pass": if is_search { json!(pass) } else { json!(null) },
            "hits": hits.len(),
        }));
    }
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    out!(
        "search under {TARGET_MS} ms (median and p95) at {} assets, the issue's queries: {}",
        main.assets,
        verdict(all_pass)
    );
    out!(
        "extra (1-2 letter queries of the suggest box): {}",
        verdict(extra_pass)
    );
    for problem in &wrong {
        out!("result check FAILED: {problem}");
    }

    Ok(json!({
        "assets": main.assets,
        "companies": main.companies,
        "events": events,
        "search_rows": rows,
        "seed_s": (seed_s * 100.0).round() / 100.0,
        "raw_read_s": (read_s * 1000.0).round() / 1000.0,
        "rebuild_search_s": (rebuild_s * 1000.0).round() / 1000.0,
        "runs": options.runs,
        "target_ms": TARGET_MS,
        "pass": all_pass,
        "extra_pass": extra_pass,
        "result_problems": wrong,
        "queries": rows_json,
    }))
}
