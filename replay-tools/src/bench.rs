//! `bench`: measures, in one run and in a scratch database on the same server, the command
//! path against raw single-row inserts, the ordered read of the log against a catch-up of the
//! companies projection, a rebuild of every projection, and billing (`bench_billing`: a
//! billing run against the command path's rate, the aging report at 500,000 invoices).
//! Commit latency on these machines varies a lot between runs, so the figures that matter are
//! the ratios of rates measured side by side.
//!
//! The last line printed is one JSON object with every figure.

use std::time::{Duration, Instant};

use anyhow::Context;
use commands::{ConflictPolicy, EventMeta, EventStore, DEFAULT_TENANT_ID};
use domain::company::{Company, CompanyCommand, CompanyEvent};
use domain::values::{Amount, CompanyName};
use projections::companies::CompaniesProjection;
use projections::event::read_batch;
use projections::rebuild::RebuildOptions;
use projections::runner::{catch_up, CatchUp, RunnerConfig};
use projections::work_orders::WorkOrdersProjection;
use projections::{Position, Projection};
use serde_json::json;
use sqlx::{Connection, PgConnection, PgPool};

/// Connections in the benchmark's pool.
const POOL_SIZE: u32 = 10;
/// Concurrent writers of the "many writers" runs.
const WRITERS: usize = 8;
/// Each append / raw-insert run is done this many times; the best rate is kept.
const ROUNDS: usize = 2;
/// Events per seeding statement.
const SEED_CHUNK: u64 = 100_000;

const TARGET_APPEND_RATIO: f64 = 0.8;
const TARGET_CATCHUP_RATIO: f64 = 0.5;
const TARGET_REBUILD_1M_S: f64 = 10.0;

pub async fn bench(
    boot: &pgboot::PgBoot,
    events: u64,
    seconds: f64,
    breakdown: bool,
    mix: Mix,
    keep: bool,
) -> anyhow::Result<u8> {
    in_scratch_database(boot, "bench", keep, |url| {
        run(
            url,
            events,
            Duration::from_secs_f64(seconds),
            breakdown,
            mix,
        )
    })
    .await
}

/// Creates a scratch database on the server of `boot`, runs `body` with its URL (Ctrl-C stops
/// it), drops the database whatever happened (unless `keep`), and prints the figures `body`
/// returns as the last line. Exit code 0, or 130 when interrupted.
pub(crate) async fn in_scratch_database<F, Fut>(
    boot: &pgboot::PgBoot,
    label: &str,
    keep: bool,
    body: F,
) -> anyhow::Result<u8>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<serde_json::Value>>,
{
    let admin_url = boot.url_for("postgres");
    let database = format!(
        "st_bench_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .context("connecting to the `postgres` database to create the scratch database")?;
    sqlx::raw_sql(&format!("CREATE DATABASE {database}"))
        .execute(&mut admin)
        .await
        .with_context(|| format!("creating database {database}"))?;
    admin.close().await.ok();
    eprintln!("{label}: scratch database {database}");

    let body = body(boot.url_for(&database));
    let outcome = tokio::select! {
        result = body => result.map(Some),
        _ = tokio::signal::ctrl_c() => Ok(None),
    };

    if keep {
        eprintln!(
            "{label}: kept {database} ({}); drop it by hand",
            boot.url_for(&database)
        );
    } else {
        // Drop the scratch database whatever happened (FORCE ends connections still open).
        let dropped = async {
            let mut admin = PgConnection::connect(&admin_url).await?;
            sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                .execute(&mut admin)
                .await?;
            admin.close().await
        }
        .await;
        match &dropped {
            Ok(()) => eprintln!("{label}: dropped {database}"),
            Err(error) => {
                eprintln!("{label}: could not drop {database}: {error}; drop it by hand")
            }
        }
    }
    match outcome? {
        Some(figures) => {
            out!("{figures}");
            Ok(0)
        }
        None => {
            eprintln!("replay-tools: {label} interrupted");
            Ok(130)
        }
    }
}

/// A rate measured over a run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rate {
    pub(crate) count: u64,
    pub(crate) elapsed: Duration,
}

impl Rate {
    pub(crate) fn per_s(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub(crate) fn best(a: Option<Rate>, b: Rate) -> Rate {
        match a {
            Some(a) if a.per_s() >= b.per_s() => a,
            _ => b,
        }
    }
}

fn rate(label: &str, value: &str) -> Amount {
    Amount::parse("monthly_rate", value).unwrap_or_else(|e| panic!("{label}: {e}"))
}

/// `writers` tasks, each registering companies (`EventStore::create`) and setting their rate
/// (`EventStore::execute`), alternately, until `duration` is over.
async fn append_run(
    store: &EventStore,
    writers: usize,
    duration: Duration,
) -> anyhow::Result<Rate> {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                let mut registered: Option<String> = None;
                while Instant::now() < deadline {
                    let meta = EventMeta::new(DEFAULT_TENANT_ID, "bench");
                    let executed = match registered.take() {
                        None => {
                            let id = meta.new_aggregate_id().to_string();
                            let command = CompanyCommand::Register {
                                name: CompanyName::parse(&format!(
                                    "Bench company {writer}-{done}"
                                ))?,
                                monthly_rate: rate("register", "500.00"),
                                customer_status: Default::default(),
                                profile: Default::default(),
                            };
                            registered = Some(id.clone());
                            // As the API and the console create companies.
                            store.create::<Company>(&id, command, &(), &meta).await?
                        }
                        Some(id) => {
                            let command = CompanyCommand::SetMonthlyRate {
                                monthly_rate: rate("set rate", "650.50"),
                            };
                            store
                                .execute::<Company>(
                                    &id,
                                    command,
                                    &(),
                                    &meta,
                                    ConflictPolicy::Report,
                                )
                                .await?
                        }
                    };
                    anyhow::ensure!(
                        executed.events.len() == 1,
                        "a bench command appended {} events",
                        executed.events.len()
                    );
                    done += 1;
                }
                Ok::<u64, anyhow::Error>(done)
            })
        })
        .collect();
    let mut count = 0;
    for task in tasks {
        count += task.await??;
    }
    Ok(Rate {
        count,
        elapsed: started.elapsed(),
    })
}

/// Payloads and metadata of the same shapes and sizes as the append runs'.
fn raw_samples() -> anyhow::Result<[(String, serde_json::Value); 2]> {
    Ok([
        (
            "CompanyRegistered".to_string(),
            serde_json::to_value(CompanyEvent::CompanyRegistered {
                name: "Bench company 3-1234".to_string(),
                monthly_rate: rate("raw", "500.00"),
                customer_status: Default::default(),
                profile: Default::default(),
            })?,
        ),
        (
            "MonthlyRateSet".to_string(),
            serde_json::to_value(CompanyEvent::MonthlyRateSet {
                monthly_rate: rate("raw", "650.50"),
                previous_rate: rate("raw", "500.00"),
            })?,
        ),
    ])
}

/// `writers` tasks, each doing BEGIN; INSERT one event; COMMIT into `bench_raw_events`, until
/// `duration` is over. With `load`, each insert is preceded by the SELECT of the aggregate's
/// events that the command path does (postgres-es's load query), outside the transaction.
async fn raw_insert_run(
    pool: &PgPool,
    writers: usize,
    duration: Duration,
    load: bool,
) -> anyhow::Result<Rate> {
    let samples = raw_samples()?;
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let pool = pool.clone();
            let samples = samples.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                let mut id = String::new();
                while Instant::now() < deadline {
                    let meta = EventMeta::new(DEFAULT_TENANT_ID, "bench");
                    let sequence = (done % 2) as i64 + 1;
                    if sequence == 1 {
                        id = meta.new_aggregate_id().to_string();
                    }
                    let (event_type, payload) = &samples[(done % 2) as usize];
                    if load {
                        sqlx::query(
                            "SELECT aggregate_type, aggregate_id, sequence, event_type,
                                    event_version, payload, metadata
                               FROM bench_raw_events
                              WHERE aggregate_type = $1 AND aggregate_id = $2
                              ORDER BY sequence",
                        )
                        .bind("company")
                        .bind(&id)
                        .fetch_all(&pool)
                        .await?;
                    }
                    let mut tx = pool.begin().await?;
                    sqlx::query(
                        "INSERT INTO bench_raw_events (aggregate_type, aggregate_id, sequence,
                                                       event_type, event_version, payload, metadata)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind("company")
                    .bind(&id)
                    .bind(sequence)
                    .bind(event_type)
                    .bind("1")
                    .bind(sqlx::types::Json(payload))
                    .bind(sqlx::types::Json(&meta))
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    done += 1;
                }
                Ok::<u64, anyhow::Error>(done)
            })
        })
        .collect();
    let mut count = 0;
    for task in tasks {
        count += task.await??;
    }
    Ok(Rate {
        count,
        elapsed: started.elapsed(),
    })
}

/// Adds `count` valid company events (4 per company: registered, rate set, renamed, rate set;
/// contiguous sequences; metadata as `EventMeta`) with a few set-based statements.
async fn seed(pool: &PgPool, count: u64) -> anyhow::Result<()> {
    let prefix = uuid::Uuid::new_v4().simple().to_string();
    let mut start = 0u64;
    while start < count {
        let end = (start + SEED_CHUNK).min(count) - 1;
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                 payload, metadata, recorded_at)
             SELECT 'company', x.id, s.seq,
                    (ARRAY['CompanyRegistered', 'MonthlyRateSet', 'CompanyRenamed', 'MonthlyRateSet'])[s.seq],
                    '1',
                    CASE s.seq
                      WHEN 1 THEN jsonb_build_object('CompanyRegistered',
                             jsonb_build_object('name', x.name, 'monthly_rate', '500.00'))
                      WHEN 2 THEN jsonb_build_object('MonthlyRateSet',
                             jsonb_build_object('monthly_rate', '650.50', 'previous_rate', '500.00'))
                      WHEN 3 THEN jsonb_build_object('CompanyRenamed',
                             jsonb_build_object('name', x.name || ' Ltd', 'previous_name', x.name))
                      ELSE jsonb_build_object('MonthlyRateSet',
                             jsonb_build_object('monthly_rate', '700.00', 'previous_rate', '650.50'))
                    END,
                    jsonb_build_object('tenant_id', $3::uuid, 'actor', 'bench-seed',
                                       'command_id', x.command_id, 'correlation_id', x.command_id,
                                       'causation_id', NULL),
                    now() - interval '1 day' + s.g * interval '1 millisecond'
               FROM (SELECT g, g / 4 AS c, (g % 4 + 1)::int AS seq
                       FROM generate_series($1::int8, $2::int8) AS g) s,
                    LATERAL (SELECT md5($4 || ':' || s.c)::uuid::text AS id,
                                    'Seeded company ' || s.c AS name,
                                    md5($4 || ':command:' || s.g)::uuid AS command_id) x
              ORDER BY s.g",
        )
        .bind(start as i64)
        .bind(end as i64)
        .bind(DEFAULT_TENANT_ID)
        .bind(&prefix)
        .execute(pool)
        .await
        .context("seeding events")?;
        start = end + 1;
    }
    Ok(())
}

/// What the seeded log is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mix {
    /// Company events only (4 per company), as the bench has always seeded.
    Companies,
    /// About half work-order events (11 or 12 per order, the lives of many orders
    /// interleaved), half company events: the log of an MSP at work.
    WorkOrders,
}

impl Mix {
    fn label(self) -> &'static str {
        match self {
            Mix::Companies => "companies",
            Mix::WorkOrders => "work-orders",
        }
    }
}

/// Technicians the seeded orders are assigned to (each is also the actor of its events).
const SEED_TECHNICIANS: u128 = 20;
/// How far apart (in "slots", each about 11 work-order and as many company events) two
/// consecutive events of one seeded order are: an order lives across ~20,000 events of the
/// log, so a rebuild's batch of 10,000 sees it 4 or 5 times and a catch-up's batch of 2,000
/// about once.
const SEED_SPREAD: u64 = 100;
/// Rows per seeding statement of the work-order mix.
const SEED_ROWS: usize = 20_000;

/// The events of one seeded order: opened (with an SLA), assigned, moved to assigned and in
/// progress, responded, two comments, two time entries, for one order in four a resolution
/// warning, resolved, and the SLA clock paused (as `WorkOrder::handle` decides them).
fn order_len(order: u64) -> u64 {
    if order.is_multiple_of(4) {
        12
    } else {
        11
    }
}

fn seed_technician(n: u64) -> uuid::Uuid {
    uuid::Uuid::from_u128(
        0x5eed_7ec4_0000_0000_0000_0000_0000_0000 + u128::from(n) % SEED_TECHNICIANS,
    )
}

/// The `step`-th event of seeded order `order`.
fn work_order_event(
    order: u64,
    step: u64,
    company_id: uuid::Uuid,
    base: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<domain::workorder::WorkOrderEvent> {
    use chrono::Duration as D;
    use domain::workorder::{
        Billing, Comment, Origin, Priority, Sla, SlaTarget, Status, TimeEntry, WorkOrderDetails,
        WorkOrderEvent as E,
    };
    let opened_at = base + D::minutes(order as i64);
    let at = opened_at + D::minutes(10 * step as i64);
    let technician = seed_technician(order);
    let warned = order_len(order) == 12;
    // After the optional warning, the steps are numbered as if it were there.
    let step = if !warned && step >= 9 { step + 1 } else { step };
    let sla = Sla {
        response_minutes: 60,
        resolution_minutes: 480,
        paused_minutes: 0,
        paused_since: None,
        response_due_at: opened_at + D::minutes(60),
        resolution_due_at: opened_at + D::minutes(480),
        response_warn_at: opened_at + D::minutes(45),
        resolution_warn_at: opened_at + D::minutes(360),
        raised: Vec::new(),
    };
    let moved = |status, previous_status| E::WorkOrderStatusChanged {
        status,
        previous_status,
        at,
        link_id: None,
    };
    let comment = |public: bool| E::WorkOrderCommented {
        comment: Comment {
            comment_id: uuid::Uuid::new_v4(),
            author_id: Some(technician),
            origin: Origin::Staff,
            public,
            body: if public {
                "On site now, replacing the fuser unit.".to_owned()
            } else {
                "Part ordered from the usual supplier, ref 4471.".to_owned()
            },
        },
    };
    let time = |minutes: u32, billing: Billing| -> anyhow::Result<E> {
        let rate = Amount::parse("rate", "120.00")?;
        let cost_rate = Amount::parse("cost_rate", "45.00")?;
        Ok(E::TimeLogged {
            entry: TimeEntry::new(
                uuid::Uuid::new_v4(),
                technician,
                at.date_naive(),
                minutes,
                "Diagnosis and repair".to_owned(),
                billing,
                false,
                rate,
                cost_rate,
            ),
        })
    };
    Ok(match step {
        0 => E::WorkOrderOpened {
            number: order + 1,
            company_id,
            details: WorkOrderDetails {
                title: format!("Printer jams at the front desk ({})", order % 1000),
                description: "The printer at reception jams on every second page since Monday."
                    .to_owned(),
                work_type: "repair".to_owned(),
                contact_id: None,
                asset_ids: Vec::new(),
            },
            priority: if order.is_multiple_of(3) {
                Priority::High
            } else {
                Priority::Normal
            },
            origin: Origin::Staff,
            holds_assets: false,
            opened_at,
            sla: Some(sla),
        },
        1 => E::WorkOrderAssigned {
            assignee_id: Some(technician),
            previous_assignee_id: None,
        },
        2 => moved(Status::Assigned, Status::New),
        3 => moved(Status::InProgress, Status::Assigned),
        4 => E::WorkOrderResponded { at },
        5 => comment(true),
        6 => comment(false),
        7 => time(45 + (order % 4) as u32 * 15, Billing::Billable)?,
        8 => time(30, Billing::Contract)?,
        9 => E::SlaWarningRaised {
            target: SlaTarget::Resolution,
            due_at: opened_at + D::minutes(480),
            escalated_to: None,
        },
        10 => moved(Status::Resolved, Status::InProgress),
        _ => E::WorkOrderSlaPaused { at },
    })
}

/// One seeded event, in log order.
struct SeedEvent {
    aggregate_type: &'static str,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    payload: String,
    metadata: String,
}

/// The work-order mix, event by event: company events (4 per company, contiguous as in
/// `seed`) merged evenly with work-order events, whose orders overlap: event `k` of order `o`
/// sits in slot `o + k * SEED_SPREAD`.
struct MixedLog {
    base: chrono::DateTime<chrono::Utc>,
    companies: Vec<uuid::Uuid>,
    company_events: u64,
    company_done: u64,
    orders: u64,
    order_ids: Vec<uuid::Uuid>,
    order_events: u64,
    order_done: u64,
    /// The slot being walked and the next step to look at in it.
    slot: u64,
    step: u64,
}

impl MixedLog {
    fn new(count: u64) -> Self {
        // About half the events are work-order events (11.25 per order on average).
        let orders = (count / 2 * 4 / 45).max(1);
        let order_events: u64 = (0..orders).map(order_len).sum::<u64>().min(count);
        let company_events = count - order_events;
        let companies = company_events.div_ceil(4).max(1);
        Self {
            base: chrono::Utc::now() - chrono::Duration::days(30),
            companies: (0..companies).map(|_| uuid::Uuid::new_v4()).collect(),
            company_events,
            company_done: 0,
            orders,
            order_ids: (0..orders).map(|_| uuid::Uuid::new_v4()).collect(),
            order_events,
            order_done: 0,
            slot: 0,
            step: 0,
        }
    }

    fn meta(actor: String) -> anyhow::Result<String> {
        let mut meta = EventMeta::new(DEFAULT_TENANT_ID, actor);
        meta.command_id = uuid::Uuid::new_v4();
        meta.correlation_id = meta.command_id;
        Ok(serde_json::to_string(&meta)?)
    }

    fn next_company_event(&mut self) -> anyhow::Result<SeedEvent> {
        use cqrs_es::DomainEvent as _;
        let (company, step) = (self.company_done / 4, self.company_done % 4);
        self.company_done += 1;
        let name = format!("Seeded company {company}");
        let event = match step {
            0 => CompanyEvent::CompanyRegistered {
                name,
                monthly_rate: rate("seed", "500.00"),
                customer_status: Default::default(),
                profile: Default::default(),
            },
            1 => CompanyEvent::MonthlyRateSet {
                monthly_rate: rate("seed", "650.50"),
                previous_rate: rate("seed", "500.00"),
            },
            2 => CompanyEvent::CompanyRenamed {
                name: format!("{name} Ltd"),
                previous_name: name,
            },
            _ => CompanyEvent::MonthlyRateSet {
                monthly_rate: rate("seed", "700.00"),
                previous_rate: rate("seed", "650.50"),
            },
        };
        Ok(SeedEvent {
            aggregate_type: "company",
            aggregate_id: self.companies[company as usize].to_string(),
            sequence: step as i64 + 1,
            event_type: event.event_type(),
            payload: serde_json::to_string(&event)?,
            metadata: Self::meta("bench-seed".to_owned())?,
        })
    }

    fn next_order_event(&mut self) -> anyhow::Result<SeedEvent> {
        use cqrs_es::DomainEvent as _;
        loop {
            if self.step >= 12 {
                self.step = 0;
                self.slot += 1;
            }
            let (slot, step) = (self.slot, self.step);
            self.step += 1;
            let Some(order) = slot.checked_sub(step * SEED_SPREAD) else {
                continue;
            };
            if order >= self.orders || step >= order_len(order) {
                continue;
            }
            self.order_done += 1;
            let company_id = self.companies[(order % self.companies.len() as u64) as usize];
            let event = work_order_event(order, step, company_id, self.base)?;
            return Ok(SeedEvent {
                aggregate_type: "work_order",
                aggregate_id: self.order_ids[order as usize].to_string(),
                sequence: step as i64 + 1,
                event_type: event.event_type(),
                payload: serde_json::to_string(&event)?,
                metadata: Self::meta(seed_technician(order).to_string())?,
            });
        }
    }

    /// The next event, or `None` when the log is complete.
    fn next_event(&mut self) -> anyhow::Result<Option<SeedEvent>> {
        let companies_left = self.company_done < self.company_events;
        let orders_left = self.order_done < self.order_events;
        // Even merge: a work-order event whenever they are behind their share.
        let order_next = orders_left
            && (!companies_left
                || self.order_done * self.company_events <= self.company_done * self.order_events);
        if order_next {
            self.next_order_event().map(Some)
        } else if companies_left {
            self.next_company_event().map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Adds `count` events of the work-order mix (`MixedLog`) in statements of `SEED_ROWS` rows.
/// Returns (company events, work-order events, orders).
async fn seed_work_orders(pool: &PgPool, count: u64) -> anyhow::Result<(u64, u64, u64)> {
    let mut log = MixedLog::new(count);
    let mut written = 0u64;
    loop {
        let mut rows = Vec::with_capacity(SEED_ROWS);
        while rows.len() < SEED_ROWS {
            match log.next_event()? {
                Some(event) => rows.push(event),
                None => break,
            }
        }
        if rows.is_empty() {
            break;
        }
        let first = written as i64;
        written += rows.len() as u64;
        let mut types = Vec::with_capacity(rows.len());
        let mut ids = Vec::with_capacity(rows.len());
        let mut sequences = Vec::with_capacity(rows.len());
        let mut event_types = Vec::with_capacity(rows.len());
        let mut payloads = Vec::with_capacity(rows.len());
        let mut metas = Vec::with_capacity(rows.len());
        for row in rows {
            types.push(row.aggregate_type);
            ids.push(row.aggregate_id);
            sequences.push(row.sequence);
            event_types.push(row.event_type);
            payloads.push(row.payload);
            metas.push(row.metadata);
        }
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                 payload, metadata, recorded_at)
             SELECT u.aggregate_type, u.aggregate_id, u.sequence, u.event_type, '1',
                    u.payload::jsonb, u.metadata::jsonb,
                    now() - interval '1 day' + ($7 + u.n) * interval '1 millisecond'
               FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[])
                    WITH ORDINALITY AS u(aggregate_type, aggregate_id, sequence, event_type,
                                         payload, metadata, n)
              ORDER BY u.n",
        )
        .bind(&types)
        .bind(&ids)
        .bind(&sequences)
        .bind(&event_types)
        .bind(&payloads)
        .bind(&metas)
        .bind(first)
        .execute(pool)
        .await
        .context("seeding the work-order mix")?;
    }
    Ok((log.company_done, log.order_done, log.orders))
}

/// Reads the whole log the way the runner does (`read_batch`, `batch` at a time), discarding it.
pub(crate) async fn raw_read(pool: &PgPool, batch: i64) -> anyhow::Result<Rate> {
    let started = Instant::now();
    let mut after = Position::START;
    let mut count = 0u64;
    loop {
        let events = read_batch(pool, after, Position::END, batch).await?;
        let Some(last) = events.last() else { break };
        after = last.position;
        count += events.len() as u64;
    }
    Ok(Rate {
        count,
        elapsed: started.elapsed(),
    })
}

async fn count_events(pool: &PgPool) -> anyhow::Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    Ok(n as u64)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "BELOW TARGET"
    }
}

/// The write paths measured side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// BEGIN; INSERT; COMMIT.
    Raw,
    /// `EventStore::execute` (load, decide, persist, coalesced NOTIFY).
    Append,
    /// Breakdown: the command path's load query, then BEGIN; INSERT; COMMIT.
    RawWithLoad,
    /// Breakdown: `EventStore::execute` with no NOTIFY task.
    AppendWithoutNotify,
}

impl Writer {
    fn label(self) -> &'static str {
        match self {
            Writer::Raw => "raw insert",
            Writer::Append => "append",
            Writer::RawWithLoad => "raw load+insert",
            Writer::AppendWithoutNotify => "append without NOTIFY",
        }
    }
}

/// Best rates per (writer kind, number of writers).
#[derive(Default)]
struct WriteRates(Vec<((Writer, usize), Rate)>);

impl WriteRates {
    fn record(&mut self, key: (Writer, usize), rate: Rate) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, best)) => *best = Rate::best(Some(*best), rate),
            None => self.0.push((key, rate)),
        }
    }

    fn per_s(&self, writer: Writer, writers: usize) -> f64 {
        self.0
            .iter()
            .find(|(k, _)| *k == (writer, writers))
            .map_or(f64::NAN, |(_, r)| r.per_s())
    }
}

async fn run(
    url: String,
    events: u64,
    duration: Duration,
    breakdown: bool,
    mix: Mix,
) -> anyhow::Result<serde_json::Value> {
    // `rebuild_all` holds a connection per projection while a reader and the swap need more.
    let connections = POOL_SIZE.max(projections::all().len() as u32 + 3);
    let pool = commands::db::connect(&url, connections).await?;
    commands::db::migrate(&pool).await?;
    sqlx::query("CREATE TABLE bench_raw_events (LIKE events INCLUDING ALL)")
        .execute(&pool)
        .await?;
    let store = EventStore::new(pool.clone());
    // `EventStore::new` starts its NOTIFY task only inside a runtime: built on a plain thread,
    // the store appends without it.
    let quiet_store = {
        let pool = pool.clone();
        std::thread::spawn(move || EventStore::new(pool))
            .join()
            .map_err(|_| anyhow::anyhow!("building an event store panicked"))?
    };

    // Warm up connections, caches and plans.
    raw_insert_run(&pool, WRITERS, Duration::from_millis(300), false).await?;
    append_run(&store, WRITERS, Duration::from_millis(300)).await?;

    let mut kinds = vec![Writer::Raw, Writer::Append];
    if breakdown {
        kinds.extend([Writer::RawWithLoad, Writer::AppendWithoutNotify]);
    }
    let mut rates = WriteRates::default();
    for round in 1..=ROUNDS {
        let mut line = format!("bench: round {round}:");
        for writers in [1, WRITERS] {
            for &kind in &kinds {
                let rate = match kind {
                    Writer::Raw => raw_insert_run(&pool, writers, duration, false).await?,
                    Writer::RawWithLoad => raw_insert_run(&pool, writers, duration, true).await?,
                    Writer::Append => append_run(&store, writers, duration).await?,
                    Writer::AppendWithoutNotify => {
                        append_run(&quiet_store, writers, duration).await?
                    }
                };
                line.push_str(&format!(
                    " {} x{writers} {:.0}/s;",
                    kind.label(),
                    rate.per_s()
                ));
                rates.record((kind, writers), rate);
            }
        }
        eprintln!("{line}");
    }
    drop(store);
    drop(quiet_store);
    let (raw1, append1) = (rates.per_s(Writer::Raw, 1), rates.per_s(Writer::Append, 1));
    let (raw8, append8) = (
        rates.per_s(Writer::Raw, WRITERS),
        rates.per_s(Writer::Append, WRITERS),
    );
    let append_ratio_1 = append1 / raw1;
    let append_ratio_8 = append8 / raw8;
    out!(
        "append, 1 writer:   {append1:>8.0} commands/s  raw insert {raw1:>8.0}/s  ratio {append_ratio_1:.2} (target >= {TARGET_APPEND_RATIO}) {}",
        verdict(append_ratio_1 >= TARGET_APPEND_RATIO)
    );
    out!(
        "append, {WRITERS} writers:  {append8:>8.0} commands/s  raw insert {raw8:>8.0}/s  ratio {append_ratio_8:.2} (target >= {TARGET_APPEND_RATIO}) {}",
        verdict(append_ratio_8 >= TARGET_APPEND_RATIO)
    );
    let mut breakdown_json = serde_json::Map::new();
    if breakdown {
        for writers in [1, WRITERS] {
            let raw = rates.per_s(Writer::Raw, writers);
            let loaded = rates.per_s(Writer::RawWithLoad, writers);
            let quiet = rates.per_s(Writer::AppendWithoutNotify, writers);
            out!(
                "  breakdown x{writers}: raw load+insert {loaded:.0}/s (ratio {:.2}), append without NOTIFY {quiet:.0}/s (ratio {:.2})",
                loaded / raw,
                quiet / raw
            );
            breakdown_json.insert(
                format!("raw_load_insert_per_s_{writers}"),
                json!(loaded.round()),
            );
            breakdown_json.insert(
                format!("append_no_notify_per_s_{writers}"),
                json!(quiet.round()),
            );
        }
    }

    // Seed the log up to `events`.
    let present = count_events(&pool).await?;
    let started = Instant::now();
    let mut seeded_orders = None;
    if events > present {
        match mix {
            Mix::Companies => seed(&pool, events - present).await?,
            Mix::WorkOrders => {
                seeded_orders = Some(seed_work_orders(&pool, events - present).await?);
            }
        }
    }
    sqlx::raw_sql("VACUUM (ANALYZE) events")
        .execute(&pool)
        .await?;
    let total = count_events(&pool).await?;
    out!(
        "log: {total} events ({} seeded in {:.1} s, mix {}, then VACUUM ANALYZE)",
        total - present,
        started.elapsed().as_secs_f64(),
        mix.label()
    );
    if let Some((company_events, order_events, orders)) = seeded_orders {
        out!(
            "  seeded: {order_events} work-order events ({orders} orders), \
             {company_events} company events"
        );
    }

    // Raw ordered read next to the catch-up, same batch size as the runner.
    let runner = RunnerConfig::default();
    let mut read = raw_read(&pool, runner.batch_size).await?;
    read = Rate::best(Some(read), raw_read(&pool, runner.batch_size).await?);
    let read_10k = raw_read(&pool, RebuildOptions::default().batch_size).await?;

    sqlx::query("DELETE FROM projection_checkpoints WHERE name = 'companies'")
        .execute(&pool)
        .await?;
    sqlx::query("TRUNCATE companies").execute(&pool).await?;
    let mut conn = pool.acquire().await?;
    let started = Instant::now();
    let outcome = catch_up(&pool, &mut conn, &CompaniesProjection, &runner).await?;
    let catchup = Rate {
        count: match outcome {
            CatchUp::CaughtUp { applied } => applied,
            CatchUp::Failed { position, error } => {
                anyhow::bail!("catch-up failed at {position}: {error}")
            }
        },
        elapsed: started.elapsed(),
    };
    drop(conn);
    anyhow::ensure!(
        catchup.count == total,
        "catch-up applied {} events of {total}",
        catchup.count
    );
    let catchup_ratio = catchup.per_s() / read.per_s();
    out!(
        "raw read:           {:>8.0} events/s (batches of {}; {:.0}/s in batches of {})",
        read.per_s(),
        runner.batch_size,
        read_10k.per_s(),
        RebuildOptions::default().batch_size
    );
    out!(
        "catch-up companies: {:>8.0} events/s  ratio {:.2} (target >= {TARGET_CATCHUP_RATIO}) {}",
        catchup.per_s(),
        catchup_ratio,
        verdict(catchup_ratio >= TARGET_CATCHUP_RATIO)
    );

    // The work_orders projection alone, when the log has work orders: caught up by the
    // runner from scratch, then rebuilt by itself (`rebuild work_orders`).
    let mut work_orders_json = serde_json::Map::new();
    if mix == Mix::WorkOrders {
        let projection = WorkOrdersProjection;
        sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1")
            .bind(projection.name())
            .execute(&pool)
            .await?;
        sqlx::raw_sql(&format!("TRUNCATE {}", projection.tables().join(", ")))
            .execute(&pool)
            .await?;
        let mut conn = pool.acquire().await?;
        let started = Instant::now();
        let outcome = catch_up(&pool, &mut conn, &projection, &runner).await?;
        let caught_up = Rate {
            count: match outcome {
                CatchUp::CaughtUp { applied } => applied,
                CatchUp::Failed { position, error } => {
                    anyhow::bail!("work_orders catch-up failed at {position}: {error}")
                }
            },
            elapsed: started.elapsed(),
        };
        drop(conn);
        let ratio = caught_up.per_s() / read.per_s();
        out!(
            "catch-up work_orders: {:>6.0} events/s  ratio {ratio:.2} (target >= {TARGET_CATCHUP_RATIO}) {}",
            caught_up.per_s(),
            verdict(ratio >= TARGET_CATCHUP_RATIO)
        );
        let started = Instant::now();
        let report = projections::rebuild::rebuild(
            &pool,
            &projection,
            &RebuildOptions::default(),
            |_, _| {},
        )
        .await
        .context("rebuilding work_orders")?;
        let alone = Rate {
            count: report.events,
            elapsed: started.elapsed(),
        };
        out!(
            "rebuild work_orders alone: {:.2} s ({:.0} events/s, {:.2} x the raw read in batches of {})",
            alone.elapsed.as_secs_f64(),
            alone.per_s(),
            read_10k.per_s() / alone.per_s(),
            RebuildOptions::default().batch_size
        );
        work_orders_json.insert(
            "work_orders_catchup_per_s".into(),
            json!(caught_up.per_s().round()),
        );
        work_orders_json.insert(
            "work_orders_catchup_ratio".into(),
            json!((ratio * 1000.0).round() / 1000.0),
        );
        work_orders_json.insert(
            "work_orders_rebuild_s".into(),
            json!((alone.elapsed.as_secs_f64() * 1000.0).round() / 1000.0),
        );
    }

    // Rebuild of every projection, as `rebuild --all` does it: one pass over the log.
    let started = Instant::now();
    let all = projections::all();
    let reports =
        projections::rebuild::rebuild_all(&pool, &all, &RebuildOptions::default(), |_, _| {})
            .await
            .context("rebuilding every projection")?;
    let rebuilt = reports.iter().map(|(_, r)| r.events).max().unwrap_or(0);
    let rebuild = Rate {
        count: rebuilt,
        elapsed: started.elapsed(),
    };
    let rebuild_s = rebuild.elapsed.as_secs_f64();
    let rebuild_1m_est_s = rebuild_s * 1_000_000.0 / total.max(1) as f64;
    out!(
        "rebuild (all {} projections): {rebuild_s:.2} s for {total} events ({:.0} events/s, \
         {:.2} x the raw read in batches of {}); 1,000,000 events (linear extrapolation): \
         ~{rebuild_1m_est_s:.1} s (target < {TARGET_REBUILD_1M_S} s) {}",
        projections::all().len(),
        rebuild.per_s(),
        read_10k.per_s() / rebuild.per_s(),
        RebuildOptions::default().batch_size,
        verdict(rebuild_1m_est_s < TARGET_REBUILD_1M_S)
    );
    // Each projection's end (fill, its own index builds, swap), from the rebuild's start.
    let finished: Vec<String> = reports
        .iter()
        .map(|(name, report)| format!("{name} {:.2} s", report.elapsed.as_secs_f64()))
        .collect();
    out!("  each done at: {}", finished.join(", "));
    if mix == Mix::WorkOrders {
        // The same pass without work_orders: what that projection adds to `rebuild --all`.
        let others: Vec<_> = projections::all()
            .into_iter()
            .filter(|p| p.name() != WorkOrdersProjection.name())
            .collect();
        let started = Instant::now();
        projections::rebuild::rebuild_all(&pool, &others, &RebuildOptions::default(), |_, _| {})
            .await
            .context("rebuilding every projection but work_orders")?;
        let without = started.elapsed().as_secs_f64();
        out!(
            "rebuild (the {} others, without work_orders): {without:.2} s ({:.2} x the raw read); \
             work_orders adds {:.2} s",
            others.len(),
            without * read_10k.per_s() / total.max(1) as f64,
            rebuild_s - without
        );
        work_orders_json.insert(
            "rebuild_without_work_orders_s".into(),
            json!((without * 1000.0).round() / 1000.0),
        );
    }

    // Billing (issue 7), last, in a tenant of its own: its events must not weigh on the
    // figures above. Its ratio is over `append_per_s_1` of this run.
    let billing = crate::bench_billing::run(&pool, append1).await?;
    pool.close().await;

    let round = |x: f64, places: i32| {
        let factor = 10f64.powi(places);
        (x * factor).round() / factor
    };
    let mut figures = json!({
        "events": total,
        "seconds_per_run": duration.as_secs_f64(),
        "append_per_s_1": round(append1, 0),
        "append_per_s_8": round(append8, 0),
        "raw_insert_per_s_1": round(raw1, 0),
        "raw_insert_per_s_8": round(raw8, 0),
        "append_ratio_1": round(append_ratio_1, 3),
        "append_ratio_8": round(append_ratio_8, 3),
        "raw_read_per_s": round(read.per_s(), 0),
        "raw_read_per_s_10000": round(read_10k.per_s(), 0),
        "catchup_per_s": round(catchup.per_s(), 0),
        "catchup_ratio": round(catchup_ratio, 3),
        "rebuild_s": round(rebuild_s, 3),
        "rebuild_per_s": round(rebuild.per_s(), 0),
        "rebuild_1m_est_s": round(rebuild_1m_est_s, 2),
        "targets": {
            "append_ratio": TARGET_APPEND_RATIO,
            "catchup_ratio": TARGET_CATCHUP_RATIO,
            "rebuild_1m_s": TARGET_REBUILD_1M_S,
            "billing_ratio": crate::bench_billing::TARGET_BILLING_RATIO,
            "aging_ms": crate::bench_billing::TARGET_AGING_MS,
        },
    });
    if let Some(object) = figures.as_object_mut() {
        object.insert("mix".into(), json!(mix.label()));
        object.extend(breakdown_json);
        object.extend(work_orders_json);
        object.extend(billing.json);
    }
    Ok(figures)
}
