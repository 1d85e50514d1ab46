//! A credential in the vault (issue 4): a login to a customer's asset or service. Its secrets
//! (password, TOTP secret, notes) never enter the log: they are sealed under the master key in
//! the `vault_secrets` table, and events only name the sealed set (`secret_id`) and which of
//! the secrets it holds. Revealing secrets, sharing them by link and each view of a link are
//! events, so the audit trail says who saw what, when and from where.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

use crate::contact::text;
use crate::{ErrorKind, HasErrorKind, ValidationError};

/// The visible part of a credential.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialDetails {
    pub label: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub url: String,
}

impl CredentialDetails {
    /// Checks every field; all problems at once. The URL may be any scheme people use for
    /// logins (`https://`, `ssh://`, `rdp://`...), or a bare host.
    pub fn parse(label: &str, username: &str, url: &str) -> Result<Self, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let label = text("label", label, 200, false, &mut errors);
        if label.is_empty() {
            errors.push(ValidationError::new("label", "must not be empty"));
        }
        let username = text("username", username, 200, false, &mut errors);
        let url = text("url", url, 2000, false, &mut errors);
        if url.chars().any(char::is_whitespace) {
            errors.push(ValidationError::new("url", "must not contain spaces"));
        }
        if errors.is_empty() {
            Ok(Self {
                label,
                username,
                url,
            })
        } else {
            Err(errors)
        }
    }
}

/// Which sealed set holds the credential's secrets, and which secrets it has.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    pub secret_id: Uuid,
    pub has_password: bool,
    pub has_totp: bool,
    pub has_notes: bool,
}

/// A link that shows the secrets to someone without an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// SHA-256 of the link's token, hex: the token itself is never stored.
    pub token_digest: String,
    pub expires_at: DateTime<Utc>,
    pub max_views: u32,
    pub views: u32,
    pub revoked: bool,
}

/// The longest a share link may live.
pub const MAX_SHARE_DAYS: i64 = 30;
/// The most views a share link may allow.
pub const MAX_SHARE_VIEWS: u32 = 100;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    pub exists: bool,
    pub company_id: Uuid,
    pub asset_id: Option<Uuid>,
    pub details: CredentialDetails,
    pub secret: SecretRef,
    pub removed: bool,
    pub shares: BTreeMap<Uuid, Share>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CredentialCommand {
    Add {
        company_id: Uuid,
        asset_id: Option<Uuid>,
        details: CredentialDetails,
        secret: SecretRef,
    },
    Update {
        details: CredentialDetails,
    },
    /// The secrets were sealed again as a new set (a new password, say).
    ChangeSecret {
        secret: SecretRef,
    },
    /// Someone is about to see the secrets; `address` is where they asked from.
    Reveal {
        address: String,
    },
    Share {
        share_id: Uuid,
        token_digest: String,
        expires_at: DateTime<Utc>,
        max_views: u32,
        now: DateTime<Utc>,
    },
    RevokeShare {
        share_id: Uuid,
    },
    /// Someone opened a share link and asked to see the secrets.
    ViewShare {
        share_id: Uuid,
        address: String,
        now: DateTime<Utc>,
    },
    Remove,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CredentialEvent {
    CredentialAdded {
        company_id: Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        asset_id: Option<Uuid>,
        details: CredentialDetails,
        secret: SecretRef,
    },
    CredentialUpdated {
        details: CredentialDetails,
    },
    CredentialSecretChanged {
        secret: SecretRef,
    },
    CredentialRevealed {
        address: String,
        secret_id: Uuid,
    },
    CredentialShared {
        share_id: Uuid,
        token_digest: String,
        expires_at: DateTime<Utc>,
        max_views: u32,
    },
    CredentialShareRevoked {
        share_id: Uuid,
    },
    CredentialShareViewed {
        share_id: Uuid,
        address: String,
        /// The view's number (1 for the first).
        view: u32,
    },
    CredentialRemoved {},
}

impl DomainEvent for CredentialEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CredentialAdded { .. } => "CredentialAdded",
            Self::CredentialUpdated { .. } => "CredentialUpdated",
            Self::CredentialSecretChanged { .. } => "CredentialSecretChanged",
            Self::CredentialRevealed { .. } => "CredentialRevealed",
            Self::CredentialShared { .. } => "CredentialShared",
            Self::CredentialShareRevoked { .. } => "CredentialShareRevoked",
            Self::CredentialShareViewed { .. } => "CredentialShareViewed",
            Self::CredentialRemoved { .. } => "CredentialRemoved",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("this credential already exists")]
    AlreadyExists,
    #[error("credential not found")]
    NotFound,
    #[error("this credential was removed")]
    Removed,
    #[error("this credential has no secret to show")]
    NothingToReveal,
    #[error("a share link lives between 1 hour and {MAX_SHARE_DAYS} days")]
    ShareExpiry,
    #[error("a share link allows between 1 and {MAX_SHARE_VIEWS} views")]
    ShareViews,
    #[error("this share link already exists")]
    ShareExists,
    #[error("this link does not exist or was revoked")]
    ShareNotFound,
    #[error("this link has expired")]
    ShareExpired,
    #[error("this link has been used as many times as it allows")]
    ShareUsedUp,
    #[error("this link is already revoked")]
    ShareAlreadyRevoked,
}

impl HasErrorKind for CredentialError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound | Self::ShareNotFound => ErrorKind::NotFound,
            Self::ShareExpiry | Self::ShareViews => ErrorKind::Invalid,
            _ => ErrorKind::Conflict,
        }
    }
}

impl Credential {
    fn has_secret(&self) -> bool {
        self.secret.has_password || self.secret.has_totp || self.secret.has_notes
    }

    fn decide(&self, command: CredentialCommand) -> Result<Vec<CredentialEvent>, CredentialError> {
        use CredentialEvent as E;
        if let CredentialCommand::Add {
            company_id,
            asset_id,
            details,
            secret,
        } = command
        {
            if self.exists {
                return Err(CredentialError::AlreadyExists);
            }
            return Ok(vec![E::CredentialAdded {
                company_id,
                asset_id,
                details,
                secret,
            }]);
        }
        if !self.exists {
            return Err(CredentialError::NotFound);
        }
        if self.removed {
            return Err(CredentialError::Removed);
        }
        Ok(match command {
            CredentialCommand::Add { .. } => unreachable!("handled above"),
            CredentialCommand::Update { details } => {
                if details == self.details {
                    vec![]
                } else {
                    vec![E::CredentialUpdated { details }]
                }
            }
            CredentialCommand::ChangeSecret { secret } => {
                vec![E::CredentialSecretChanged { secret }]
            }
            CredentialCommand::Reveal { address } => {
                if !self.has_secret() && self.details.username.is_empty() {
                    return Err(CredentialError::NothingToReveal);
                }
                vec![E::CredentialRevealed {
                    address,
                    secret_id: self.secret.secret_id,
                }]
            }
            CredentialCommand::Share {
                share_id,
                token_digest,
                expires_at,
                max_views,
                now,
            } => {
                let lifetime = expires_at - now;
                if lifetime < chrono::Duration::hours(1)
                    || lifetime > chrono::Duration::days(MAX_SHARE_DAYS)
                {
                    return Err(CredentialError::ShareExpiry);
                }
                if !(1..=MAX_SHARE_VIEWS).contains(&max_views) {
                    return Err(CredentialError::ShareViews);
                }
                if self.shares.contains_key(&share_id) {
                    return Err(CredentialError::ShareExists);
                }
                vec![E::CredentialShared {
                    share_id,
                    token_digest,
                    expires_at,
                    max_views,
                }]
            }
            CredentialCommand::RevokeShare { share_id } => {
                let share = self
                    .shares
                    .get(&share_id)
                    .ok_or(CredentialError::ShareNotFound)?;
                if share.revoked {
                    return Err(CredentialError::ShareAlreadyRevoked);
                }
                vec![E::CredentialShareRevoked { share_id }]
            }
            CredentialCommand::ViewShare {
                share_id,
                address,
                now,
            } => {
                let share = self
                    .shares
                    .get(&share_id)
                    .filter(|s| !s.revoked)
                    .ok_or(CredentialError::ShareNotFound)?;
                if now >= share.expires_at {
                    return Err(CredentialError::ShareExpired);
                }
                if share.views >= share.max_views {
                    return Err(CredentialError::ShareUsedUp);
                }
                vec![E::CredentialShareViewed {
                    share_id,
                    address,
                    view: share.views + 1,
                }]
            }
            CredentialCommand::Remove => vec![E::CredentialRemoved {}],
        })
    }
}

impl Aggregate for Credential {
    const TYPE: &'static str = "credential";
    type Command = CredentialCommand;
    type Event = CredentialEvent;
    type Error = CredentialError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use CredentialEvent as E;
        match event {
            E::CredentialAdded {
                company_id,
                asset_id,
                details,
                secret,
            } => {
                self.exists = true;
                self.company_id = company_id;
                self.asset_id = asset_id;
                self.details = details;
                self.secret = secret;
            }
            E::CredentialUpdated { details } => self.details = details,
            E::CredentialSecretChanged { secret } => self.secret = secret,
            E::CredentialRevealed { .. } => {}
            E::CredentialShared {
                share_id,
                token_digest,
                expires_at,
                max_views,
            } => {
                self.shares.insert(
                    share_id,
                    Share {
                        token_digest,
                        expires_at,
                        max_views,
                        views: 0,
                        revoked: false,
                    },
                );
            }
            E::CredentialShareRevoked { share_id } => {
                if let Some(share) = self.shares.get_mut(&share_id) {
                    share.revoked = true;
                }
            }
            E::CredentialShareViewed { share_id, view, .. } => {
                if let Some(share) = self.shares.get_mut(&share_id) {
                    share.views = view;
                }
            }
            E::CredentialRemoved {} => self.removed = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Credential>;
    const SHARE: Uuid = Uuid::from_u128(77);

    fn now() -> DateTime<Utc> {
        "2026-11-21T10:00:00Z".parse().unwrap()
    }

    fn added() -> CredentialEvent {
        CredentialEvent::CredentialAdded {
            company_id: Uuid::from_u128(5),
            asset_id: Some(Uuid::from_u128(6)),
            details: CredentialDetails::parse("Router admin", "admin", "https://192.0.2.1")
                .unwrap(),
            secret: SecretRef {
                secret_id: Uuid::from_u128(8),
                has_password: true,
                has_totp: false,
                has_notes: false,
            },
        }
    }

    fn shared(max_views: u32) -> CredentialEvent {
        CredentialEvent::CredentialShared {
            share_id: SHARE,
            token_digest: "d".repeat(64),
            expires_at: now() + chrono::Duration::days(1),
            max_views,
        }
    }

    #[test]
    fn details_are_checked_all_at_once() {
        let errors = CredentialDetails::parse(" ", &"u".repeat(201), "https://a b").unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["label", "username", "url"]);
    }

    #[test]
    fn a_reveal_is_an_event_naming_the_sealed_set_and_the_address() {
        Given::with(())
            .given(vec![added()])
            .when(CredentialCommand::Reveal {
                address: "198.51.100.7".into(),
            })
            .then_expect_events(vec![CredentialEvent::CredentialRevealed {
                address: "198.51.100.7".into(),
                secret_id: Uuid::from_u128(8),
            }]);
        Given::with(())
            .given(vec![added(), CredentialEvent::CredentialRemoved {}])
            .when(CredentialCommand::Reveal {
                address: "198.51.100.7".into(),
            })
            .then_expect_error(CredentialError::Removed);
    }

    #[test]
    fn share_links_expire_count_their_views_and_can_be_revoked() {
        let view = |at: DateTime<Utc>| CredentialCommand::ViewShare {
            share_id: SHARE,
            address: "203.0.113.5".into(),
            now: at,
        };
        Given::with(())
            .given(vec![added(), shared(2)])
            .when(view(now()))
            .then_expect_events(vec![CredentialEvent::CredentialShareViewed {
                share_id: SHARE,
                address: "203.0.113.5".into(),
                view: 1,
            }]);
        let viewed = |n| CredentialEvent::CredentialShareViewed {
            share_id: SHARE,
            address: "203.0.113.5".into(),
            view: n,
        };
        Given::with(())
            .given(vec![added(), shared(2), viewed(1), viewed(2)])
            .when(view(now()))
            .then_expect_error(CredentialError::ShareUsedUp);
        Given::with(())
            .given(vec![added(), shared(2)])
            .when(view(now() + chrono::Duration::days(1)))
            .then_expect_error(CredentialError::ShareExpired);
        Given::with(())
            .given(vec![
                added(),
                shared(2),
                CredentialEvent::CredentialShareRevoked { share_id: SHARE },
            ])
            .when(view(now()))
            .then_expect_error(CredentialError::ShareNotFound);
        Given::with(())
            .given(vec![added()])
            .when(CredentialCommand::Share {
                share_id: SHARE,
                token_digest: "d".repeat(64),
                expires_at: now() + chrono::Duration::days(31),
                max_views: 1,
                now: now(),
            })
            .then_expect_error(CredentialError::ShareExpiry);
        Given::with(())
            .given(vec![added()])
            .when(CredentialCommand::Share {
                share_id: SHARE,
                token_digest: "d".repeat(64),
                expires_at: now() + chrono::Duration::days(1),
                max_views: 0,
                now: now(),
            })
            .then_expect_error(CredentialError::ShareViews);
    }

    #[test]
    fn events_carry_no_secret_fields() {
        let json = serde_json::to_value(added()).unwrap();
        let text = json.to_string();
        for secret_field in ["\"password\"", "\"totp_secret\"", "\"notes\""] {
            assert!(!text.contains(secret_field), "{text}");
        }
        let back: CredentialEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, added());
    }
}
