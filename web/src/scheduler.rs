//! The scheduler (DESIGN.md, "Scheduler"): tokio-cron-scheduler ticks in memory on every
//! instance (every `ST_SCHEDULER_TICK_SECONDS`, default a minute); each tick claims `(job, tick time)` in `scheduler_ticks`, and only the instance
//! that wins issues the job's commands, as the actor `scheduler`.
//!
//! Jobs:
//! - `sla-check`, every tick: raises the SLA warnings and breaches that have fallen due
//!   (`projections::work_orders::sla_due`), escalating to the tenant's chosen person. The
//!   command of each order and tick has a deterministic id, and the aggregate raises each
//!   warning and breach once, so a retried or doubled tick appends nothing. After downtime the
//!   first tick raises everything that fell due meanwhile; each event names the due time it
//!   concerns.
//! - `billing`, every `ST_BILLING_TICK_SECONDS` (default an hour) and once at start-up: bills
//!   every contract period due up to each tenant's today (`billing::run::run_all`). Invoice ids
//!   and command ids derive from (company, period) and each ledger bills a period once, so a
//!   doubled, retried or racing run bills nothing twice; after downtime the first run bills
//!   the missed periods, each dated on its own billing date.

use chrono::{DateTime, DurationRound, Utc};
use commands::{ConflictPolicy, EventMeta};
use domain::tenant::Tenant;
use domain::workorder::{WorkOrder, WorkOrderCommand};
use tokio_cron_scheduler::{Job, JobScheduler};
use uuid::Uuid;

use crate::AppState;

/// The actor recorded on the scheduler's events.
pub const ACTOR: &str = "scheduler";

/// The most orders one tick handles (the next tick takes the rest).
const SLA_BATCH: i64 = 2_000;

/// Claims `(job, tick_at)` for this instance; false when another instance (or an earlier run)
/// has it.
pub async fn claim(
    pool: &sqlx::PgPool,
    job: &str,
    tick_at: DateTime<Utc>,
    instance: &str,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO scheduler_ticks (job, tick_at, claimed_by) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(job)
    .bind(tick_at)
    .bind(instance)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Deletes claims older than 30 days (the housekeeping task calls it).
pub async fn purge(pool: &sqlx::PgPool) -> sqlx::Result<u64> {
    Ok(
        sqlx::query("DELETE FROM scheduler_ticks WHERE tick_at < now() - interval '30 days'")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

async fn finish(pool: &sqlx::PgPool, job: &str, tick_at: DateTime<Utc>, outcome: &str) {
    let done = sqlx::query(
        "UPDATE scheduler_ticks SET finished_at = now(), outcome = $3
          WHERE job = $1 AND tick_at = $2",
    )
    .bind(job)
    .bind(tick_at)
    .bind(outcome)
    .execute(pool)
    .await;
    if let Err(error) = done {
        tracing::warn!(%error, job, "could not record the end of a scheduler run");
    }
}

/// Raises what is due at `now` on every tenant's orders; returns how many orders it checked.
pub async fn check_sla(state: &AppState, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let due = projections::work_orders::sla_due(&state.pool, now, SLA_BATCH).await?;
    let mut tenants: std::collections::HashMap<Uuid, Option<Uuid>> = Default::default();
    let mut failures = 0;
    for (tenant_id, order_id) in &due {
        let escalate_to = match tenants.get(tenant_id) {
            Some(person) => *person,
            None => {
                let (tenant, _) = state
                    .store
                    .load::<Tenant>(*tenant_id, &tenant_id.to_string())
                    .await?;
                tenants.insert(*tenant_id, tenant.sla_escalate_to);
                tenant.sla_escalate_to
            }
        };
        let command_id = Uuid::new_v5(
            order_id,
            format!("sla-check:{}", now.timestamp()).as_bytes(),
        );
        let meta = EventMeta::new(*tenant_id, ACTOR).with_command_id(command_id);
        let meta = meta.clone().with_correlation(command_id, None);
        let outcome = state
            .store
            .execute::<WorkOrder>(
                &order_id.to_string(),
                WorkOrderCommand::CheckSla { now, escalate_to },
                &(),
                &meta,
                ConflictPolicy::Busy,
            )
            .await;
        if let Err(error) = outcome {
            failures += 1;
            tracing::warn!(%tenant_id, %order_id, %error, "SLA check of a work order failed");
        }
    }
    if failures > 0 {
        anyhow::bail!("{failures} of {} SLA checks failed", due.len());
    }
    Ok(due.len())
}

/// One tick of `job` at `tick_at`: claimed, run, recorded.
async fn tick(state: AppState, instance: String, job: &'static str, tick_at: DateTime<Utc>) {
    match claim(&state.pool, job, tick_at, &instance).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(error) => {
            tracing::warn!(%error, job, "could not claim a scheduler tick");
            return;
        }
    }
    let outcome = match job {
        "sla-check" => check_sla(&state, tick_at).await,
        "billing" => crate::billing::run::run_all(&state).await,
        _ => Ok(0),
    };
    let text = match &outcome {
        Ok(n) => format!("ok: {n}"),
        Err(error) => {
            tracing::warn!(%error, job, "scheduler run failed");
            format!("failed: {error}")
        }
    };
    finish(&state.pool, job, tick_at, &text).await;
}

/// The tick an instant belongs to: the instant rounded down to a multiple of `every` (so every
/// instance names the same tick, whenever within it its timer fires).
pub fn tick_of(at: DateTime<Utc>, every: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(every)
        .ok()
        .and_then(|step| at.duration_trunc(step).ok())
        .unwrap_or(at)
}

/// Starts the ticker of this instance: every `every` (`ST_SCHEDULER_TICK_SECONDS`), each job
/// claims its tick and runs where the claim wins. Keep the returned scheduler alive; `shutdown`
/// it on the way out.
pub async fn start(
    state: AppState,
    every: std::time::Duration,
    billing_every: std::time::Duration,
) -> anyhow::Result<JobScheduler> {
    let scheduler = JobScheduler::new().await?;
    let instance = format!(
        "{}:{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
        std::process::id()
    );
    for (job_name, period) in [("sla-check", every), ("billing", billing_every)] {
        let state = state.clone();
        let instance = instance.clone();
        let job = Job::new_repeated_async(period, move |_id, _scheduler| {
            let state = state.clone();
            let instance = instance.clone();
            Box::pin(async move {
                tick(state, instance, job_name, tick_of(Utc::now(), period)).await;
            })
        })?;
        scheduler.add(job).await?;
    }
    // Catch up on billing missed while no instance ran (claimed like any tick).
    tokio::spawn(tick(
        state.clone(),
        instance.clone(),
        "billing",
        tick_of(Utc::now(), billing_every),
    ));
    scheduler.start().await?;
    Ok(scheduler)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instance_names_the_same_tick() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let minute = std::time::Duration::from_secs(60);
        assert_eq!(
            tick_of(at("2026-11-16T15:00:37Z"), minute),
            at("2026-11-16T15:00:00Z")
        );
        assert_eq!(
            tick_of(at("2026-11-16T15:00:59.9Z"), minute),
            at("2026-11-16T15:00:00Z")
        );
        let five = std::time::Duration::from_secs(5);
        assert_eq!(
            tick_of(at("2026-11-16T15:00:07Z"), five),
            at("2026-11-16T15:00:05Z")
        );
    }
}
