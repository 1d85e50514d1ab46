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

/// Hex SHA-256 of any bytes (document contents, file identities).
pub fn token_digest_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
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

/// How long an invitation link works.
pub const INVITATION_LIFETIME: chrono::Duration = chrono::Duration::days(7);

#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    #[error("{0} is already in use")]
    EmailTaken(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

/// An invitation sent: the person's id and the link's secret (it also went to the outbox).
#[derive(Debug, Clone)]
pub struct Invitation {
    pub user_id: Uuid,
    pub token: String,
    pub link: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// What `invite` needs to know about the new person.
pub struct NewPerson {
    pub email: Email,
    pub name: String,
    pub role: domain::identity::Role,
    /// The customer company of a `client` (checked to exist by the caller).
    pub company_id: Option<Uuid>,
}

/// Invites a person into `meta`'s tenant: reserves their address, adds them as a member with
/// their role, creates them with a one-time invitation link and queues the message carrying
/// it. Sent again with the same command id, it creates nothing more.
/// The sealed set holding the link of the message a command sends (an invitation, a password
/// reset): the notifications consumer finds it from the event's command id.
pub fn link_secret_id(command_id: Uuid) -> Uuid {
    Uuid::new_v5(&command_id, b"notification-link")
}

/// Seals `link` for the notification of the command `meta` (before its event is appended, so
/// the consumer never meets the event without its link).
async fn seal_link(
    vault: &crate::secrets::Vault,
    store: &EventStore,
    meta: &EventMeta,
    user_id: Uuid,
    link: &str,
) -> Result<(), String> {
    vault
        .seal_link(
            store.pool(),
            meta.tenant_id,
            user_id,
            link_secret_id(meta.command_id),
            link,
        )
        .await
        .map_err(|e| e.to_string())
}

pub async fn invite(
    store: &EventStore,
    vault: &crate::secrets::Vault,
    meta: &EventMeta,
    person: NewPerson,
    public_url: &str,
) -> Result<Invitation, InviteError> {
    let tenant_id = meta.tenant_id;
    let user_id = meta.new_aggregate_id();
    let failed = |e: String| InviteError::Failed(e);
    match reserve_email(store.pool(), &person.email, user_id, tenant_id).await {
        Ok(()) => {}
        Err(ReserveError::Taken(email)) => return Err(InviteError::EmailTaken(email)),
        Err(ReserveError::Database(e)) => return Err(failed(e.to_string())),
    }
    let member_meta = meta.derived(b"member");
    let added = store
        .execute::<Tenant>(
            &tenant_id.to_string(),
            TenantCommand::AddMember {
                user_id,
                role: person.role,
                company_id: person.company_id,
            },
            &(),
            &member_meta,
            crate::ConflictPolicy::RetryOnce,
        )
        .await;
    if let Err(error) = added {
        if let Err(e) = release_email(store.pool(), &person.email, user_id).await {
            tracing::warn!(error = %e, "could not release an email reservation");
        }
        return Err(match error {
            crate::CommandError::Domain(e) => InviteError::Refused(e.to_string()),
            other => failed(other.to_string()),
        });
    }
    let (token, token_digest) = new_token("iv_");
    let expires_at = chrono::Utc::now() + INVITATION_LIFETIME;
    let link = format!("{public_url}/invitation/{user_id}/{token}");
    seal_link(vault, store, meta, user_id, &link)
        .await
        .map_err(failed)?;
    let created = store
        .create::<User>(
            &user_id.to_string(),
            UserCommand::Invite {
                tenant_id,
                email: person.email.clone(),
                name: person.name.clone(),
                link: domain::user::OneTimeLink {
                    token_digest,
                    expires_at,
                },
            },
            &(),
            meta,
        )
        .await
        .map_err(|e| match e {
            crate::CommandError::Domain(e) => InviteError::Refused(e.to_string()),
            other => failed(other.to_string()),
        })?;
    if created.replayed {
        // The first attempt sent the message; its link's secret is not known any more.
        return Err(InviteError::Refused(
            "this invitation was already sent; use \"send again\" for a new link".into(),
        ));
    }
    send_invitation(
        store.pool(),
        tenant_id,
        &person.email,
        &person.name,
        &link,
        expires_at,
    )
    .await
    .map_err(|e| failed(e.to_string()))?;
    Ok(Invitation {
        user_id,
        token,
        link,
        expires_at,
    })
}

/// A new invitation link for a person who has not accepted yet; the old link stops working.
pub async fn renew_invitation(
    store: &EventStore,
    vault: &crate::secrets::Vault,
    meta: &EventMeta,
    user_id: Uuid,
    public_url: &str,
) -> Result<Invitation, InviteError> {
    let (token, token_digest) = new_token("iv_");
    let expires_at = chrono::Utc::now() + INVITATION_LIFETIME;
    seal_link(
        vault,
        store,
        meta,
        user_id,
        &format!("{public_url}/invitation/{user_id}/{token}"),
    )
    .await
    .map_err(InviteError::Failed)?;
    let done = store
        .execute::<User>(
            &user_id.to_string(),
            UserCommand::RenewInvitation {
                link: domain::user::OneTimeLink {
                    token_digest,
                    expires_at,
                },
            },
            &(),
            meta,
            crate::ConflictPolicy::RetryOnce,
        )
        .await
        .map_err(|e| match e {
            crate::CommandError::Domain(e) => InviteError::Refused(e.to_string()),
            crate::CommandError::NotFound => InviteError::Refused("person not found".into()),
            other => InviteError::Failed(other.to_string()),
        })?;
    let email = Email::parse(&done.state.email).map_err(|e| InviteError::Failed(e.to_string()))?;
    let link = format!("{public_url}/invitation/{user_id}/{token}");
    send_invitation(
        store.pool(),
        meta.tenant_id,
        &email,
        &done.state.name,
        &link,
        expires_at,
    )
    .await
    .map_err(|e| InviteError::Failed(e.to_string()))?;
    Ok(Invitation {
        user_id,
        token,
        link,
        expires_at,
    })
}

async fn send_invitation(
    pool: &PgPool,
    tenant_id: Uuid,
    email: &Email,
    name: &str,
    link: &str,
    expires_at: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    crate::outbox::enqueue(
        pool,
        tenant_id,
        "invitation",
        email.as_str(),
        "You are invited to SupportTracker",
        &format!(
            "Hello {name},\n\nYou are invited to join your team on SupportTracker. Open this \
             link to choose your password (it works until {}):\n{link}\n",
            expires_at.format("%Y-%m-%d %H:%M UTC")
        ),
    )
    .await
    .map(|_| ())
}

/// A token just created. `token` is `None` when the command had run before (same command id):
/// the secret was shown then and is not stored anywhere.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    pub token_id: Uuid,
    pub token: Option<String>,
    /// The person's event version after the creation (for read-your-writes).
    pub version: usize,
}

/// Creates an API token for `user_id`; the token is returned once and stored as a digest.
pub async fn create_api_token(
    store: &EventStore,
    meta: &EventMeta,
    user_id: Uuid,
    name: &str,
) -> Result<CreatedToken, crate::CommandError<domain::user::UserError>> {
    let (token, token_digest) = new_token("st_");
    let token_id = Uuid::new_v5(&meta.command_id, b"api-token");
    let done = store
        .execute::<User>(
            &user_id.to_string(),
            UserCommand::CreateApiToken {
                token_id,
                name: name.to_owned(),
                token_digest,
                now: chrono::Utc::now(),
            },
            &(),
            meta,
            crate::ConflictPolicy::RetryOnce,
        )
        .await?;
    Ok(CreatedToken {
        token_id,
        token: (!done.replayed).then_some(token),
        version: done.version,
    })
}

/// Why a sign-in was refused. `WrongCredentials` is deliberately one answer for an unknown
/// address, a person without a password and a wrong password.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("wrong email or password")]
    WrongCredentials,
    #[error("too many failed sign-ins; try again in {}", crate::throttle::human(*.0))]
    Throttled(chrono::Duration),
    #[error("this account is disabled; ask an administrator of your organisation")]
    Disabled,
    #[error("{0}")]
    Failed(String),
}

/// Who signed in.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedIn {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub role: domain::identity::Role,
    /// The person's event version (for read-your-writes on the `users` projection).
    pub user_version: usize,
}

/// A valid PHC string of a password nobody knows: verifying against it costs the same as a
/// real check, so an unknown address takes as long to refuse as a wrong password.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password("no one has this password").unwrap_or_default());

/// Checks an email and password (argon2id, off the async threads) under the sign-in throttle
/// of the account and of `address`.
pub async fn sign_in(
    store: &EventStore,
    email: &str,
    password: &str,
    address: &str,
) -> Result<SignedIn, SignInError> {
    let pool = store.pool();
    let failed = |e: sqlx::Error| SignInError::Failed(e.to_string());
    let keys = crate::throttle::keys(email, address);
    if let Some(wait) = crate::throttle::wait(pool, &keys).await.map_err(failed)? {
        return Err(SignInError::Throttled(wait));
    }
    let found: Option<(Uuid, Uuid)> = match Email::parse(email) {
        Ok(email) => sqlx::query_as("SELECT user_id, tenant_id FROM user_emails WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(pool)
            .await
            .map_err(failed)?,
        Err(_) => None,
    };
    let user = match found {
        Some((user_id, tenant_id)) => {
            let (user, version) = store
                .load::<User>(tenant_id, &user_id.to_string())
                .await
                .map_err(|e| SignInError::Failed(e.to_string()))?;
            Some((tenant_id, user_id, user, version))
        }
        None => None,
    };
    let stored = user
        .as_ref()
        .and_then(|(_, _, user, _)| user.password_hash.clone())
        .unwrap_or_else(|| DUMMY_HASH.clone());
    let candidate = password.to_owned();
    let matches = tokio::task::spawn_blocking(move || verify_password(&candidate, &stored))
        .await
        .map_err(|e| SignInError::Failed(e.to_string()))?;
    let Some((tenant_id, user_id, user, user_version)) = user.filter(|_| matches) else {
        crate::throttle::failed(pool, &keys).await.map_err(failed)?;
        return Err(SignInError::WrongCredentials);
    };
    if user.password_hash.is_none() {
        return Err(SignInError::WrongCredentials);
    }
    let (tenant, _) = store
        .load::<Tenant>(tenant_id, &tenant_id.to_string())
        .await
        .map_err(|e| SignInError::Failed(e.to_string()))?;
    let Some(role) = tenant.active_role(user_id) else {
        return Err(SignInError::Disabled);
    };
    crate::throttle::succeeded(pool, email)
        .await
        .map_err(failed)?;
    Ok(SignedIn {
        tenant_id,
        user_id,
        role,
        user_version,
    })
}

/// The tenant of a person, from the sign-in address reservations (`None`: no such person).
pub async fn tenant_of(pool: &PgPool, user_id: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT tenant_id FROM user_emails WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await
}

/// Hashes off the async threads (argon2id takes tens of milliseconds of CPU).
pub async fn hash_password_async(password: &str) -> Result<String, String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| e.to_string())?
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
