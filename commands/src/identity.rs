//! Identity services of the write side: password hashing (argon2id), random tokens and their
//! digests, sign-in address reservations, and `bootstrap` (a new tenant with its owner and an
//! API token).
//!
//! Secrets never reach the event log: passwords are stored as argon2id PHC strings, tokens as
//! SHA-256 digests. The plaintext of a token exists only in the response that hands it out.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use domain::identity::{Currency, Email, TimeZone};
use domain::tenant::{Tenant, TenantCommand};
use domain::user::{User, UserCommand};
use domain::ValidationError;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{EventMeta, EventStore};

/// Shortest password accepted (NIST SP 800-63B asks for at least 8; we ask a little more).
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest password accepted: hashing cost grows with length.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Checks a new password's length; says what is wrong without echoing it.
pub fn check_password(password: &str) -> Result<(), ValidationError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(ValidationError::new(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(ValidationError::new(
            "password",
            format!("must be at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    if password.trim().is_empty() {
        return Err(ValidationError::new("password", "must not be only spaces"));
    }
    Ok(())
}

/// Hashes a password with argon2id and a random salt (OWASP's parameters: 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("hashing a password: {e}"))
}

/// True when `password` matches the stored PHC string.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new random token (256 bits, URL-safe) with `prefix`, e.g. `st_…` for API tokens, and its
/// digest, which is what gets stored.
pub fn new_token(prefix: &str) -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let digest = token_digest(&token);
    (token, digest)
}

/// The stored form of a token: hex SHA-256. Tokens are random, so no salt or slow hash is needed.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("{0} is already in use")]
    Taken(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Reserves a sign-in address for `user_id`. Reserving it again for the same person succeeds.
pub async fn reserve_email(
    pool: &PgPool,
    email: &Email,
    user_id: Uuid,
    tenant_id: Uuid,
) -> Result<(), ReserveError> {
    // Two statements, not one: a statement's snapshot cannot see the row whose concurrent
    // insert made ON CONFLICT skip ours, a later statement's can.
    let owner = loop {
        let inserted: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO user_emails (email, user_id, tenant_id) VALUES ($1, $2, $3)
             ON CONFLICT (email) DO NOTHING RETURNING user_id",
        )
        .bind(email.as_str())
        .bind(user_id)
        .bind(tenant_id)
        .fetch_optional(pool)
        .await?;
        if let Some(owner) = inserted {
            break owner;
        }
        let existing: Option<Uuid> =
            sqlx::query_scalar("SELECT user_id FROM user_emails WHERE email = $1")
                .bind(email.as_str())
                .fetch_optional(pool)
                .await?;
        // None: the holder released it in between; try again.
        if let Some(owner) = existing {
            break owner;
        }
    };
    if owner == user_id {
        Ok(())
    } else {
        Err(ReserveError::Taken(email.to_string()))
    }
}

/// Releases a reservation made for `user_id` (after its creation failed).
pub async fn release_email(pool: &PgPool, email: &Email, user_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM user_emails WHERE email = $1 AND user_id = $2")
        .bind(email.as_str())
        .bind(user_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// What `bootstrap` created. The API token is shown once and stored only as a digest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Bootstrapped {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub api_token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    #[error("{0} is already in use: nothing was created")]
    EmailTaken(String),
    #[error("{0}")]
    Failed(String),
}

/// Input of `bootstrap`, already parsed.
pub struct NewTenant {
    pub tenant_name: String,
    pub owner_name: String,
    pub email: Email,
    pub password: String,
    pub currency: Currency,
    pub time_zone: TimeZone,
}

/// Creates a tenant, its owner (with a password) and an API token for the owner.
pub async fn bootstrap(store: &EventStore, new: NewTenant) -> Result<Bootstrapped, BootstrapError> {
    check_password(&new.password)?;
    let tenant_id = Uuid::now_v7();
    let user_id = Uuid::now_v7();
    match reserve_email(store.pool(), &new.email, user_id, tenant_id).await {
        Ok(()) => {}
        Err(ReserveError::Taken(email)) => return Err(BootstrapError::EmailTaken(email)),
        Err(ReserveError::Database(e)) => return Err(BootstrapError::Failed(e.to_string())),
    }
    let result = create_tenant(store, &new, tenant_id, user_id).await;
    if result.is_err() {
        // Nothing of the tenant exists yet (its first command failed): free the address.
        if let Err(e) = release_email(store.pool(), &new.email, user_id).await {
            tracing::warn!(error = %e, "could not release an email reservation");
        }
    }
    result
}

async fn create_tenant(
    store: &EventStore,
    new: &NewTenant,
    tenant_id: Uuid,
    user_id: Uuid,
) -> Result<Bootstrapped, BootstrapError> {
    let failed = |e: String| BootstrapError::Failed(e);
    let password_hash = hash_password(&new.password).map_err(failed)?;
    let meta = EventMeta::new(tenant_id, "bootstrap");
    store
        .create::<Tenant>(
            &tenant_id.to_string(),
            TenantCommand::Create {
                name: new.tenant_name.clone(),
                currency: new.currency,
                time_zone: new.time_zone,
                owner_id: user_id,
            },
            &(),
            &meta,
        )
        .await
        .map_err(|e| failed(e.to_string()))?;
    let meta = EventMeta::new(tenant_id, "bootstrap")
        .with_correlation(meta.correlation_id, Some(meta.command_id));
    store
        .create::<User>(
            &user_id.to_string(),
            UserCommand::Register {
                tenant_id,
                email: new.email.clone(),
                name: new.owner_name.clone(),
                password_hash,
            },
            &(),
            &meta,
        )
        .await
        .map_err(|e| failed(e.to_string()))?;
    let (api_token, token_digest) = new_token("st_");
    let meta = EventMeta::new(tenant_id, user_id.to_string())
        .with_correlation(meta.correlation_id, Some(meta.command_id));
    store
        .execute::<User>(
            &user_id.to_string(),
            UserCommand::CreateApiToken {
                token_id: Uuid::now_v7(),
                name: "bootstrap".into(),
                token_digest,
                now: chrono::Utc::now(),
            },
            &(),
            &meta,
            crate::ConflictPolicy::RetryOnce,
        )
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok(Bootstrapped {
        tenant_id,
        user_id,
        api_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("anything", "not a phc string"));
        // Salted: the same password hashes differently each time.
        assert_ne!(hash, hash_password("correct horse battery").unwrap());
    }

    #[test]
    fn password_rules_say_what_is_wrong() {
        assert!(check_password("short")
            .unwrap_err()
            .message
            .contains("at least 10"));
        assert!(check_password(&"x".repeat(257))
            .unwrap_err()
            .message
            .contains("at most 256"));
        assert!(check_password("          ").is_err());
        assert!(check_password("long enough pass").is_ok());
    }

    #[test]
    fn tokens_are_random_and_stored_as_digests() {
        let (a, digest_a) = new_token("st_");
        let (b, _) = new_token("st_");
        assert!(a.starts_with("st_") && a.len() == 3 + 43, "{a}");
        assert_ne!(a, b);
        assert_eq!(digest_a, token_digest(&a));
        assert_eq!(digest_a.len(), 64);
        assert!(!digest_a.contains(&a[3..]));
    }
}
