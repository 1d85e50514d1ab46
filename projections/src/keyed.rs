//! Reading a batch's rows by `(tenant_id, id)` keys, shared by the projections that fold a
//! batch in memory (work orders, receivables).

use sqlx::PgConnection;
use uuid::Uuid;

/// A row's key: `(tenant_id, id)`.
pub(crate) type Key = (Uuid, Uuid);

/// `(tenant_id, id)` pairs as two arrays, for `unnest($1::uuid[], $2::uuid[])`.
pub(crate) fn key_arrays(keys: impl IntoIterator<Item = Key>) -> (Vec<Uuid>, Vec<Uuid>) {
    keys.into_iter().unzip()
}

/// Rows of `table` (as `t`) whose `(tenant_id, column)` is among `keys`, with `columns`.
///
/// One index probe per key: `OFFSET 0` keeps PostgreSQL from turning the lateral subquery
/// into a join, which it would run as a hash join over a sequential scan of the whole table
/// (a rebuild's shadow tables have no statistics), once per batch.
pub(crate) async fn load_keyed<T>(
    conn: &mut PgConnection,
    table: &str,
    columns: &str,
    column: &str,
    keys: Vec<Key>,
) -> Result<Vec<T>, sqlx::Error>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let (tenants, ids) = key_arrays(keys);
    sqlx::query_as(&format!(
        "SELECT t.* FROM unnest($1::uuid[], $2::uuid[]) AS k(tenant_id, id),
                LATERAL (SELECT {columns} FROM {table} t
                          WHERE t.tenant_id = k.tenant_id AND t.{column} = k.id OFFSET 0) t"
    ))
    .bind(tenants)
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
}
