//! The credentials vault's cryptography: AES-256-GCM under a master key, with the key's id
//! stored beside every sealed secret so keys can rotate (a keyring opens secrets sealed under
//! any of its keys and seals new ones under the current key).
//!
//! - A sealed secret reads `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`. The nonce is
//!   96 random bits per secret (never reused with a key at any realistic count of secrets).
//! - The associated data binds a secret to its place (tenant, record, field): a ciphertext
//!   copied onto another record or field does not open.
//! - Nothing here ever puts a plaintext into an error, a log line or a `Debug` output.
//!
//! The master key is 32 random bytes, given as standard base64 (`openssl rand -base64 32`) in
//! `ST_MASTER_KEY`, or in a key file (`ST_MASTER_KEY_FILE`). `load_or_create` makes a key file
//! under the data directory on first start when neither is set.

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

const VERSION: &str = "v1";

/// A 256-bit master key and its id (the first 8 bytes of its SHA-256, in hex: it names the
/// key without revealing it).
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the master key must be 32 bytes in standard base64 (as `openssl rand -base64 32` prints); this one is {0}")]
    Malformed(String),
    #[error("the key file {path}: {message}")]
    File { path: String, message: String },
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let id = hex::encode(&Sha256::digest(bytes)[..8]);
        Self {
            id,
            cipher: Aes256Gcm::new(bytes.into()),
        }
    }

    /// Reads a key written as standard base64 (surrounding white space ignored).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let decoded = STANDARD
            .decode(text.trim())
            .map_err(|_| KeyError::Malformed("not valid base64".into()))?;
        let bytes: [u8; 32] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Malformed(format!("{} bytes long", decoded.len())))?;
        Ok(Self::from_bytes(&bytes))
    }

    /// A new random key, and its base64 text (to write to a key file or show once).
    pub fn generate() -> (Self, String) {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        (Self::from_bytes(&bytes), STANDARD.encode(bytes))
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Where a secret belongs: sealing and opening must name the same place.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub tenant_id: uuid::Uuid,
    /// The record holding the secret (a credential's id).
    pub record: &'a str,
    /// Which of its secrets (`password`, `totp_secret`, `notes`).
    pub field: &'a str,
}

impl Place<'_> {
    fn aad(&self) -> Vec<u8> {
        format!(
            "{VERSION}|{}|{}|{}",
            self.tenant_id, self.record, self.field
        )
        .into_bytes()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("not a sealed secret")]
    Malformed,
    #[error("sealed under key {0}, which is not configured (was ST_MASTER_KEY changed without `vault rotate-key`?)")]
    UnknownKey(String),
    #[error("the secret does not open under key {0}: wrong key, or the stored value was altered or moved")]
    Rejected(String),
}

/// The current key (seals) and older ones (only open, until everything is re-sealed).
#[derive(Debug, Clone)]
pub struct Keyring {
    current: MasterKey,
    older: Vec<MasterKey>,
}

impl Keyring {
    pub fn new(current: MasterKey) -> Self {
        Self {
            current,
            older: Vec::new(),
        }
    }

    /// Also opens secrets sealed under `key` (during a rotation).
    pub fn with_older(mut self, key: MasterKey) -> Self {
        if key.id != self.current.id && !self.older.iter().any(|k| k.id == key.id) {
            self.older.push(key);
        }
        self
    }

    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// The ids of every key, the current one first.
    pub fn key_ids(&self) -> Vec<String> {
        std::iter::once(&self.current)
            .chain(&self.older)
            .map(|k| k.id.clone())
            .collect()
    }

    /// Seals `plaintext` for `place` under the current key.
    pub fn seal(&self, plaintext: &str, place: Place<'_>) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let aad = place.aad();
        let sealed = self
            .current
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut body = Vec::with_capacity(12 + sealed.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&sealed);
        format!(
            "{VERSION}.{}.{}",
            self.current.id,
            URL_SAFE_NO_PAD.encode(body)
        )
    }

    /// The key id a sealed value names (`None`: not a sealed value).
    pub fn key_id_of(sealed: &str) -> Option<&str> {
        let mut parts = sealed.splitn(3, '.');
        (parts.next() == Some(VERSION)).then_some(())?;
        parts.next()
    }

    /// Opens a sealed value for `place`.
    pub fn open(&self, sealed: &str, place: Place<'_>) -> Result<String, OpenError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(VERSION), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(OpenError::Malformed);
        };
        let key = std::iter::once(&self.current)
            .chain(&self.older)
            .find(|k| k.id == key_id)
            .ok_or_else(|| OpenError::UnknownKey(key_id.to_owned()))?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| OpenError::Malformed)?;
        if body.len() < 12 + 16 {
            return Err(OpenError::Malformed);
        }
        let (nonce, ciphertext) = body.split_at(12);
        let aad = place.aad();
        let plain = key
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Rejected(key_id.to_owned()))?;
        String::from_utf8(plain).map_err(|_| OpenError::Rejected(key_id.to_owned()))
    }

    /// Re-seals a value under the current key (rotation); a value already under it is kept.
    pub fn reseal(&self, sealed: &str, place: Place<'_>) -> Result<String, OpenError> {
        if Self::key_id_of(sealed) == Some(self.current.id.as_str()) {
            self.open(sealed, place)?;
            return Ok(sealed.to_owned());
        }
        let plain = self.open(sealed, place)?;
        Ok(self.seal(&plain, place))
    }
}

/// Where the master key came from (for the start-up log line; never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    File(PathBuf),
    Generated(PathBuf),
}

impl KeySource {
    /// The key file, when the keys live in one (rotation writes the new key there).
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::Environment => None,
            Self::File(path) | Self::Generated(path) => Some(path),
        }
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment => write!(f, "ST_MASTER_KEY"),
            Self::File(path) => write!(f, "the key file {}", path.display()),
            Self::Generated(path) => write!(f, "the key file {} (generated now)", path.display()),
        }
    }
}

/// Reads a key file: one base64 key per line, the current key first and older ones (kept to
/// open secrets not yet re-sealed) after it; blank lines and `#` comments are ignored.
pub fn read_key_file(path: &Path) -> Result<Keyring, KeyError> {
    let file_error = |message: String| KeyError::File {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let mut keys = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| MasterKey::from_base64(line).map_err(|e| file_error(e.to_string())));
    let current = keys
        .next()
        .unwrap_or_else(|| Err(file_error("holds no key".into())))?;
    keys.try_fold(Keyring::new(current), |ring, key| Ok(ring.with_older(key?)))
}

/// Writes a key file for `ring` (current key first) in place of the old one, atomically: a
/// reader sees the old file or the new one, never half of one.
pub fn write_key_file(path: &Path, ring_text: &[String]) -> Result<(), KeyError> {
    let file_error = |message: String| KeyError::File {
        path: path.display().to_string(),
        message,
    };
    let temporary = path.with_extension(format!("new-{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let mut contents = String::from(
        "# SupportTracker master keys: the first seals, the others only open older secrets.\n",
    );
    for line in ring_text {
        contents.push_str(line);
        contents.push('\n');
    }
    write_private(&temporary, &contents).map_err(|e| file_error(e.to_string()))?;
    std::fs::rename(&temporary, path).map_err(|e| file_error(e.to_string()))
}

/// The keys from `ST_MASTER_KEY` (`env_key`, plus `previous`: older keys still needed to open
/// secrets during a rotation), else the file `key_file`, else a new key written to
/// `default_file` (mode 0600) on first start.
pub fn load_or_create(
    env_key: Option<&str>,
    previous: &[String],
    key_file: Option<&Path>,
    default_file: &Path,
) -> Result<(Keyring, KeySource), KeyError> {
    if let Some(text) = env_key {
        let mut ring = Keyring::new(MasterKey::from_base64(text)?);
        for older in previous {
            ring = ring.with_older(MasterKey::from_base64(older)?);
        }
        return Ok((ring, KeySource::Environment));
    }
    if let Some(path) = key_file {
        return Ok((read_key_file(path)?, KeySource::File(path.to_owned())));
    }
    if default_file.exists() {
        return Ok((
            read_key_file(default_file)?,
            KeySource::File(default_file.to_owned()),
        ));
    }
    let (key, text) = MasterKey::generate();
    if let Some(dir) = default_file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| KeyError::File {
            path: default_file.display().to_string(),
            message: e.to_string(),
        })?;
    }
    write_private(default_file, &format!("{text}\n")).map_err(|e| KeyError::File {
        path: default_file.display().to_string(),
        message: e.to_string(),
    })?;
    Ok((
        Keyring::new(key),
        KeySource::Generated(default_file.to_owned()),
    ))
}

/// Writes a file only its owner can read (created new: an existing file is never replaced).
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(field: &str) -> Place<'_> {
        Place {
            tenant_id: uuid::Uuid::from_u128(7),
            record: "cred-1",
            field,
        }
    }

    #[test]
    fn a_secret_opens_only_in_its_place_and_never_shows_in_the_sealed_text() {
        let (key, _) = MasterKey::generate();
        let ring = Keyring::new(key);
        let sealed = ring.seal("hunter2 is not a password", place("password"));
        assert!(sealed.starts_with(&format!("v1.{}.", ring.current_id())));
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            ring.open(&sealed, place("password")).unwrap(),
            "hunter2 is not a password"
        );
        // Moved to another field or record: refused, and the error shows no plaintext.
        let moved = ring.open(&sealed, place("totp_secret")).unwrap_err();
        assert!(matches!(moved, OpenError::Rejected(_)));
        assert!(!moved.to_string().contains("hunter2"));
        // Two seals of the same secret differ (fresh nonce).
        assert_ne!(
            sealed,
            ring.seal("hunter2 is not a password", place("password"))
        );
    }

    #[test]
    fn a_wrong_key_or_a_changed_byte_is_refused_not_garbage() {
        let (a, _) = MasterKey::generate();
        let (b, _) = MasterKey::generate();
        let sealed = Keyring::new(a.clone()).seal("s3cret", place("password"));
        assert!(matches!(
            Keyring::new(b).open(&sealed, place("password")),
            Err(OpenError::UnknownKey(_))
        ));
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(Keyring::new(a.clone())
            .open(&tampered, place("password"))
            .is_err());
        assert_eq!(
            Keyring::new(a).open("plain text", place("password")),
            Err(OpenError::Malformed)
        );
    }

    #[test]
    fn rotation_reseals_under_the_new_key_and_keeps_every_secret() {
        let (old, _) = MasterKey::generate();
        let (new, _) = MasterKey::generate();
        let before = Keyring::new(old.clone());
        let secrets: Vec<String> = (0..20).map(|i| format!("secret number {i}")).collect();
        let sealed: Vec<String> = secrets
            .iter()
            .map(|s| before.seal(s, place("password")))
            .collect();
        let during = Keyring::new(new.clone()).with_older(old);
        let resealed: Vec<String> = sealed
            .iter()
            .map(|s| during.reseal(s, place("password")).unwrap())
            .collect();
        let after = Keyring::new(new);
        for (secret, sealed) in secrets.iter().zip(&resealed) {
            assert_eq!(Keyring::key_id_of(sealed), Some(after.current_id()));
            assert_eq!(&after.open(sealed, place("password")).unwrap(), secret);
        }
        // Resealing again changes nothing.
        assert_eq!(
            during.reseal(&resealed[0], place("password")).unwrap(),
            resealed[0]
        );
    }

    #[test]
    fn keys_are_read_from_base64_and_named_by_a_digest() {
        let text = STANDARD.encode([42u8; 32]);
        let key = MasterKey::from_base64(&format!("  {text}\n")).unwrap();
        assert_eq!(key.id().len(), 16);
        assert!(!format!("{key:?}").contains(&text));
        assert!(MasterKey::from_base64("c2hvcnQ=")
            .unwrap_err()
            .to_string()
            .contains("5 bytes long"));
        assert!(MasterKey::from_base64("%%%").is_err());
    }

    #[test]
    fn a_key_file_is_made_once_private_and_then_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("st-vault-{}", uuid::Uuid::new_v4()));
        let file = dir.join("vault.key");
        let (first, source) = load_or_create(None, &[], None, &file).unwrap();
        assert_eq!(source, KeySource::Generated(file.clone()));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, source) = load_or_create(None, &[], None, &file).unwrap();
        assert_eq!(source, KeySource::File(file.clone()));
        assert_eq!(first.current_id(), again.current_id());
        let env = STANDARD.encode([1u8; 32]);
        let old = STANDARD.encode([2u8; 32]);
        let (from_env, source) =
            load_or_create(Some(&env), std::slice::from_ref(&old), None, &file).unwrap();
        assert_eq!(source, KeySource::Environment);
        assert_ne!(from_env.current_id(), first.current_id());
        assert_eq!(from_env.key_ids().len(), 2, "the previous key opens too");
        // A rotated file: the new key first, the old one kept for opening.
        write_key_file(&file, &[env.clone(), old.clone()]).unwrap();
        let ring = read_key_file(&file).unwrap();
        assert_eq!(ring.key_ids(), from_env.key_ids());
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a rewritten key file stays private");
        std::fs::write(&file, "garbage").unwrap();
        let error = load_or_create(None, &[], Some(&file), &file).unwrap_err();
        assert!(error.to_string().contains("vault.key"), "{error}");
        std::fs::write(&file, "# only a comment\n").unwrap();
        assert!(read_key_file(&file).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
