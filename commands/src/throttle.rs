//! The sign-in throttle. Failed sign-ins are counted per account (the email asked for, whether
//! or not it exists) and per client address. After `FREE_FAILURES` failures on a key, the key
//! is locked for `BASE_LOCK`, doubling with each further failure up to `MAX_LOCK`; a key left
//! alone for `FORGET_AFTER` starts afresh. A successful sign-in clears its account's count.
//! Stored in PostgreSQL so every server process shares it.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;

/// Failures allowed on an account before it is locked.
pub const ACCOUNT_FREE_FAILURES: i32 = 5;
/// Failures allowed from one address (many people may share one office address).
pub const ADDRESS_FREE_FAILURES: i32 = 20;
pub const BASE_LOCK: Duration = Duration::seconds(30);
pub const MAX_LOCK: Duration = Duration::minutes(15);
pub const FORGET_AFTER: Duration = Duration::hours(1);

/// The throttle keys of a sign-in attempt.
pub fn keys(email: &str, address: &str) -> Vec<(String, i32)> {
    let mut keys = vec![(
        format!("account:{}", email.trim().to_lowercase()),
        ACCOUNT_FREE_FAILURES,
    )];
    if !address.is_empty() {
        keys.push((format!("address:{address}"), ADDRESS_FREE_FAILURES));
    }
    keys
}

/// How long the attempt must wait (`None`: it may go on).
pub async fn wait(pool: &PgPool, keys: &[(String, i32)]) -> Result<Option<Duration>, sqlx::Error> {
    let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    let until: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT max(locked_until) FROM sign_in_throttle
          WHERE key = ANY($1) AND locked_until > now()",
    )
    .bind(&names)
    .fetch_one(pool)
    .await?;
    Ok(until
        .map(|until| until - Utc::now())
        .filter(|d| *d > Duration::zero()))
}

/// Lock length after `failures` failures on a key allowing `free` of them.
pub fn lock_for(failures: i32, free: i32) -> Option<Duration> {
    let over = failures - free;
    if over < 0 {
        return None;
    }
    let doubled = BASE_LOCK * 2i32.saturating_pow(over.min(10) as u32);
    Some(doubled.min(MAX_LOCK))
}

/// Counts a failed attempt on every key; returns the longest lock it caused, if any.
pub async fn failed(
    pool: &PgPool,
    keys: &[(String, i32)],
) -> Result<Option<Duration>, sqlx::Error> {
    let mut longest: Option<Duration> = None;
    for (key, free) in keys {
        let failures: i32 = sqlx::query_scalar(
            "INSERT INTO sign_in_throttle (key, failures, last_failure) VALUES ($1, 1, now())
             ON CONFLICT (key) DO UPDATE SET
               failures = CASE WHEN sign_in_throttle.last_failure < now() - $2 THEN 1
                               ELSE sign_in_throttle.failures + 1 END,
               last_failure = now()
             RETURNING failures",
        )
        .bind(key)
        .bind(FORGET_AFTER)
        .fetch_one(pool)
        .await?;
        if let Some(lock) = lock_for(failures, *free) {
            sqlx::query("UPDATE sign_in_throttle SET locked_until = now() + $2 WHERE key = $1")
                .bind(key)
                .bind(lock)
                .execute(pool)
                .await?;
            longest = Some(longest.map_or(lock, |l| l.max(lock)));
        }
    }
    Ok(longest)
}

/// Clears an account's failures after a successful sign-in.
pub async fn succeeded(pool: &PgPool, email: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sign_in_throttle WHERE key = $1")
        .bind(format!("account:{}", email.trim().to_lowercase()))
        .execute(pool)
        .await?;
    Ok(())
}

/// Forgets keys with no failure for `FORGET_AFTER` and no lock (run from time to time).
pub async fn purge(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM sign_in_throttle
          WHERE last_failure < now() - $1 AND (locked_until IS NULL OR locked_until < now())",
    )
    .bind(FORGET_AFTER)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// "30 s", "2 min 5 s": how long to wait, for people.
pub fn human(wait: Duration) -> String {
    let secs = wait.num_seconds().max(1);
    if secs < 60 {
        format!("{secs} s")
    } else if secs % 60 == 0 {
        format!("{} min", secs / 60)
    } else {
        format!("{} min {} s", secs / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_start_after_the_free_failures_and_double_up_to_the_cap() {
        assert_eq!(lock_for(4, 5), None);
        assert_eq!(lock_for(5, 5), Some(Duration::seconds(30)));
        assert_eq!(lock_for(6, 5), Some(Duration::seconds(60)));
        assert_eq!(lock_for(7, 5), Some(Duration::seconds(120)));
        assert_eq!(lock_for(50, 5), Some(MAX_LOCK));
    }

    #[test]
    fn waits_read_well() {
        assert_eq!(human(Duration::milliseconds(200)), "1 s");
        assert_eq!(human(Duration::seconds(30)), "30 s");
        assert_eq!(human(Duration::seconds(120)), "2 min");
        assert_eq!(human(Duration::seconds(125)), "2 min 5 s");
    }

    #[test]
    fn accounts_are_keyed_case_insensitively() {
        assert_eq!(
            keys(" Ann@Example.com ", "")[0].0,
            "account:ann@example.com"
        );
        assert_eq!(keys("a@b.c", "10.0.0.1").len(), 2);
    }
}
