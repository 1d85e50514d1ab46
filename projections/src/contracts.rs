//! The `contracts` read model: the companies whose contract is billed, for the billing run's
//! scan (`due`). The terms themselves are read from the Company aggregate when billing.

use async_trait::async_trait;
use chrono::NaiveDate;
use domain::company::CompanyEvent;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::{ApplyError, Projection, StoredEvent, Tables};

pub struct ContractsProjection;

#[async_trait]
impl Projection for ContractsProjection {
    fn name(&self) -> &'static str {
        "contracts"
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["billing_contracts"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        tables: &Tables,
        events: &[StoredEvent],
    ) -> Result<(), ApplyError> {
        let table = tables.get(0);
        for (index, event) in events.iter().enumerate() {
            if event.aggregate_type != "company"
                || !matches!(
                    event.event_type.as_str(),
                    "ContractBillingChanged" | "CompanyArchived" | "CompanyRestored"
                )
            {
                continue;
            }
            let at = |e: String| ApplyError::at(index, e);
            let company_id = Uuid::parse_str(&event.aggregate_id).map_err(|e| at(e.to_string()))?;
            let tenant_id = event.meta.as_ref().map_err(|e| at(e.clone()))?.tenant_id;
            let payload = crate::companies::decode(event).map_err(at)?;
            let result = match payload {
                CompanyEvent::ContractBillingChanged { billing: Some(b) } => {
                    sqlx::query(&format!(
                    "INSERT INTO {table} (tenant_id, company_id, billing_day, start_date, end_date,
                        updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (tenant_id, company_id) DO UPDATE SET
                        billing_day = excluded.billing_day, start_date = excluded.start_date,
                        end_date = excluded.end_date, updated_at = excluded.updated_at"
                ))
                    .bind(tenant_id)
                    .bind(company_id)
                    .bind(b.billing_day as i32)
                    .bind(b.start_date)
                    .bind(b.end_date)
                    .bind(event.recorded_at)
                    .execute(&mut *conn)
                    .await
                }
                CompanyEvent::ContractBillingChanged { billing: None } => {
                    sqlx::query(&format!(
                        "DELETE FROM {table} WHERE tenant_id = $1 AND company_id = $2"
                    ))
                    .bind(tenant_id)
                    .bind(company_id)
                    .execute(&mut *conn)
                    .await
                }
                CompanyEvent::CompanyArchived {} | CompanyEvent::CompanyRestored {} => {
                    sqlx::query(&format!(
                        "UPDATE {table} SET archived = $3, updated_at = $4
                          WHERE tenant_id = $1 AND company_id = $2"
                    ))
                    .bind(tenant_id)
                    .bind(company_id)
                    .bind(event.event_type == "CompanyArchived")
                    .bind(event.recorded_at)
                    .execute(&mut *conn)
                    .await
                }
                _ => continue,
            };
            result.map_err(|e| at(e.to_string()))?;
        }
        Ok(())
    }
}

/// Across tenants: the billed contracts that have started by `as_of` (per tenant, the run
/// takes its own local date), oldest first.
pub async fn active<'e>(
    executor: impl PgExecutor<'e>,
    latest_start: NaiveDate,
) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tenant_id, company_id FROM billing_contracts
          WHERE NOT archived AND start_date <= $1
          ORDER BY tenant_id, company_id",
    )
    .bind(latest_start)
    .fetch_all(executor)
    .await
}

/// One tenant's billed contracts that have started by `as_of`.
pub async fn active_of<'e>(
    executor: impl PgExecutor<'e>,
    tenant_id: Uuid,
    as_of: NaiveDate,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT company_id FROM billing_contracts
          WHERE tenant_id = $1 AND NOT archived AND start_date <= $2
          ORDER BY company_id",
    )
    .bind(tenant_id)
    .bind(as_of)
    .fetch_all(executor)
    .await
}
