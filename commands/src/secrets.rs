//! The vault as the service uses it: the keyring (from `ST_MASTER_KEY` or a key file) and the
//! `vault_secrets` table that holds each credential's sealed secrets, outside the event log.
//!
//! - **Sealing** reads the key file again when the keys live in one, so a `vault rotate-key`
//!   run by another process takes effect at once in every running server: new secrets are
//!   sealed under the new key, and opening re-reads the file when it meets a key it does not
//!   know. Nothing stops or restarts.
//! - **Start-up check**: every key this database has known left a sealed canary in
//!   `vault_keys`; the configured keys must open the canaries of every key still needed by a
//!   secret, or the service refuses to start with a message naming the key ids (never keys).
//! - **Rotation** re-seals every row under the current key, row by row, each update
//!   conditional on the row being unchanged, so a rotation and live writes can run together.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use sqlx::PgPool;
use uuid::Uuid;

use crate::vault::{self, KeyError, KeySource, Keyring, MasterKey, OpenError, Place};

/// The secrets a credential may hold (the table's CHECK lists the same).
pub const FIELDS: [&str; 3] = ["password", "totp_secret", "notes"];

pub struct Vault {
    ring: RwLock<Keyring>,
    source: KeySource,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Vault(key {} from {})",
            self.current_key_id(),
            self.source
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("vault storage: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Key(#[from] KeyError),
    /// The configured keys cannot open what the database holds.
    #[error("{0}")]
    WrongKey(String),
}

/// How the vault finds its keys (from the environment, see the README).
#[derive(Debug, Clone, Default)]
pub struct KeyConfig {
    pub master_key: Option<String>,
    pub previous_keys: Vec<String>,
    pub key_file: Option<PathBuf>,
    /// Where a key file is generated on first start when nothing else is configured.
    pub default_file: PathBuf,
}

impl Vault {
    pub fn load(config: &KeyConfig) -> Result<Self, KeyError> {
        let (ring, source) = vault::load_or_create(
            config.master_key.as_deref(),
            &config.previous_keys,
            config.key_file.as_deref(),
            &config.default_file,
        )?;
        Ok(Self {
            ring: RwLock::new(ring),
            source,
        })
    }

    /// A vault with a fresh random key kept only in memory (tests, tools that seal nothing).
    pub fn ephemeral() -> Self {
        let (key, _) = MasterKey::generate();
        Self {
            ring: RwLock::new(Keyring::new(key)),
            source: KeySource::Environment,
        }
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    fn ring(&self) -> Keyring {
        self.ring
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn current_key_id(&self) -> String {
        self.ring().current_id().to_owned()
    }

    /// Re-reads the key file (when the keys live in one); a file that cannot be read keeps
    /// the keys already loaded.
    fn reload(&self) {
        let Some(path) = self.source.file() else {
            return;
        };
        match vault::read_key_file(path) {
            Ok(ring) => {
                *self
                    .ring
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = ring
            }
            Err(error) => tracing::warn!(%error, "could not re-read the vault key file"),
        }
    }

    pub fn seal(&self, plaintext: &str, place: Place<'_>) -> String {
        self.reload();
        self.ring().seal(plaintext, place)
    }

    pub fn open(&self, sealed: &str, place: Place<'_>) -> Result<String, OpenError> {
        match self.ring().open(sealed, place) {
            Err(OpenError::UnknownKey(_)) => {
                self.reload();
                self.ring().open(sealed, place)
            }
            other => other,
        }
    }

    /// Seals `fields` (name, plaintext; empty values are not stored) as the set `secret_id`
    /// of `credential_id`. Storing the same set again changes nothing (a retried command).
    pub async fn store(
        &self,
        pool: &PgPool,
        tenant_id: Uuid,
        credential_id: Uuid,
        secret_id: Uuid,
        fields: &[(&str, &str)],
    ) -> Result<(), VaultError> {
        let record = secret_id.to_string();
        let mut tx = pool.begin().await?;
        for (field, plaintext) in fields.iter().filter(|(_, value)| !value.is_empty()) {
            let sealed = self.seal(
                plaintext,
                Place {
                    tenant_id,
                    record: &record,
                    field,
                },
            );
            sqlx::query(
                "INSERT INTO vault_secrets (tenant_id, secret_id, field, credential_id, key_id, sealed)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT DO NOTHING",
            )
            .bind(tenant_id)
            .bind(secret_id)
            .bind(field)
            .bind(credential_id)
            .bind(Keyring::key_id_of(&sealed).unwrap_or_default())
            .bind(&sealed)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Seals the secret link of a message (an invitation, a password reset, a status link) as
    /// the set `secret_id` (field `link`) of the record `owner`. Sealing the same set again
    /// keeps the first link.
    pub async fn seal_link(
        &self,
        pool: &PgPool,
        tenant_id: Uuid,
        owner: Uuid,
        secret_id: Uuid,
        link: &str,
    ) -> Result<(), VaultError> {
        self.store(pool, tenant_id, owner, secret_id, &[("link", link)])
            .await
    }

    /// The link sealed as `secret_id`, if any.
    pub async fn open_link(
        &self,
        pool: &PgPool,
        tenant_id: Uuid,
        secret_id: Uuid,
    ) -> Result<Option<String>, VaultError> {
        Ok(self
            .open_set(pool, tenant_id, secret_id)
            .await?
            .remove("link"))
    }

    /// Opens the set `secret_id` of `tenant_id`: field name → plaintext.
    pub async fn open_set(
        &self,
        pool: &PgPool,
        tenant_id: Uuid,
        secret_id: Uuid,
    ) -> Result<BTreeMap<String, String>, VaultError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT field, sealed FROM vault_secrets WHERE tenant_id = $1 AND secret_id = $2",
        )
        .bind(tenant_id)
        .bind(secret_id)
        .fetch_all(pool)
        .await?;
        let record = secret_id.to_string();
        rows.into_iter()
            .map(|(field, sealed)| {
                let plain = self.open(
                    &sealed,
                    Place {
                        tenant_id,
                        record: &record,
                        field: &field,
                    },
                )?;
                Ok((field, plain))
            })
            .collect()
    }

    /// Deletes the sets of a removed credential except `keep` (none: all of them).
    pub async fn forget(
        pool: &PgPool,
        tenant_id: Uuid,
        credential_id: Uuid,
        keep: Option<Uuid>,
    ) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "DELETE FROM vault_secrets
              WHERE tenant_id = $1 AND credential_id = $2 AND secret_id IS DISTINCT FROM $3",
        )
        .bind(tenant_id)
        .bind(credential_id)
        .bind(keep)
        .execute(pool)
        .await?
        .rows_affected())
    }

    /// Start-up: the configured keys must open what this database holds. Records a canary
    /// for the current key the first time it is seen.
    pub async fn check(&self, pool: &PgPool) -> Result<(), VaultError> {
        let ring = self.ring();
        let canaries: Vec<(String, String)> =
            sqlx::query_as("SELECT key_id, canary FROM vault_keys")
                .fetch_all(pool)
                .await?;
        let in_use: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT key_id FROM vault_secrets ORDER BY key_id")
                .fetch_all(pool)
                .await?;
        let known = ring.key_ids();
        let needed: Vec<&String> = in_use.iter().filter(|id| !known.contains(id)).collect();
        let mismatch = |detail: String| {
            VaultError::WrongKey(format!(
                "the vault's master key does not match this database: {detail}. The configured \
                 key (from {}) has id {}. Configure the key these secrets were sealed with \
                 (ST_MASTER_KEY, ST_MASTER_KEY_FILE or the key file under ST_DATA_DIR); while \
                 rotating, list the old key in ST_MASTER_KEY_PREVIOUS",
                self.source,
                ring.current_id()
            ))
        };
        if !needed.is_empty() {
            let ids: Vec<&str> = needed.iter().map(|s| s.as_str()).collect();
            return Err(mismatch(format!(
                "secrets are sealed under key id(s) {}, which are not configured",
                ids.join(", ")
            )));
        }
        if in_use.is_empty()
            && !canaries.is_empty()
            && !canaries.iter().any(|(id, _)| known.contains(id))
        {
            // No secret yet, but this database was used with other keys: most likely a typo.
            let ids: Vec<&str> = canaries.iter().map(|(id, _)| id.as_str()).collect();
            return Err(mismatch(format!(
                "it was used with key id(s) {} and none of them is configured",
                ids.join(", ")
            )));
        }
        for (key_id, canary) in &canaries {
            if known.contains(key_id) {
                ring.open(canary, canary_place(key_id)).map_err(|e| {
                    mismatch(format!("the canary of key {key_id} does not open ({e})"))
                })?;
            }
        }
        if !canaries.iter().any(|(id, _)| id == ring.current_id()) {
            let canary = ring.seal(
                &format!("canary {}", ring.current_id()),
                canary_place(ring.current_id()),
            );
            sqlx::query(
                "INSERT INTO vault_keys (key_id, canary) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(ring.current_id())
            .bind(canary)
            .execute(pool)
            .await?;
        }
        Ok(())
    }

    /// Counts of sealed values per key id, for `vault status`.
    pub async fn usage(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as("SELECT key_id, count(*) FROM vault_secrets GROUP BY key_id ORDER BY key_id")
            .fetch_all(pool)
            .await
    }

    /// Re-seals every value not under the current key, in batches, until none is left.
    /// Returns how many were re-sealed. Safe while servers run: each update only applies when
    /// the row still holds what was read.
    pub async fn reseal_all(&self, pool: &PgPool) -> Result<u64, VaultError> {
        let mut done = 0;
        loop {
            self.reload();
            let current = self.current_key_id();
            let rows: Vec<(Uuid, Uuid, String, String)> = sqlx::query_as(
                "SELECT tenant_id, secret_id, field, sealed FROM vault_secrets
                  WHERE key_id <> $1 LIMIT 500",
            )
            .bind(&current)
            .fetch_all(pool)
            .await?;
            if rows.is_empty() {
                return Ok(done);
            }
            let ring = self.ring();
            let mut tx = pool.begin().await?;
            for (tenant_id, secret_id, field, sealed) in rows {
                let record = secret_id.to_string();
                let place = Place {
                    tenant_id,
                    record: &record,
                    field: &field,
                };
                let resealed = ring.reseal(&sealed, place)?;
                let updated = sqlx::query(
                    "UPDATE vault_secrets SET sealed = $5, key_id = $6
                      WHERE tenant_id = $1 AND secret_id = $2 AND field = $3 AND sealed = $4",
                )
                .bind(tenant_id)
                .bind(secret_id)
                .bind(&field)
                .bind(&sealed)
                .bind(&resealed)
                .bind(&current)
                .execute(&mut *tx)
                .await?;
                done += updated.rows_affected();
            }
            tx.commit().await?;
        }
    }

    /// `vault rotate-key` for keys kept in a file: a new key becomes current (written to the
    /// file first, the old keys kept after it to open anything sealed meanwhile), then every
    /// secret is re-sealed under it. With `ST_MASTER_KEY` the operator supplies the new key
    /// (old ones in `ST_MASTER_KEY_PREVIOUS`) and this only re-seals. Returns (new key id,
    /// values re-sealed).
    pub async fn rotate(&self, pool: &PgPool) -> Result<(String, u64), VaultError> {
        self.check(pool).await?;
        if let Some(path) = self.source.file() {
            let (new_key, new_text) = MasterKey::generate();
            let mut lines = vec![new_text];
            lines.extend(old_key_lines(path)?);
            vault::write_key_file(path, &lines)?;
            self.reload();
            if self.current_key_id() != new_key.id() {
                return Err(VaultError::WrongKey(format!(
                    "the key file {} did not take the new key",
                    path.display()
                )));
            }
            // Record the new key's canary before anything is sealed under it.
            self.check(pool).await?;
        }
        let count = self.reseal_all(pool).await?;
        Ok((self.current_key_id(), count))
    }
}

fn canary_place(key_id: &str) -> Place<'_> {
    Place {
        tenant_id: Uuid::nil(),
        record: "canary",
        field: key_id,
    }
}

/// The key lines of a key file, in order (comments and blank lines dropped).
fn old_key_lines(path: &Path) -> Result<Vec<String>, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|e| KeyError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect())
}
