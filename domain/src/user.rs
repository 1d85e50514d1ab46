//! A person who signs in: staff of a tenant, or a customer's person using the portal. Their
//! role and whether they are enabled live on the tenant (`tenant.rs`); here live the person's
//! identity, password, one-time links and API tokens.
//!
//! No secret is ever stored here in the clear: passwords arrive as argon2id hashes, link and
//! API tokens as SHA-256 digests of random tokens. Checking a presented link compares digests
//! and times, both given by the caller (the clock is a service of the command layer).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::identity::Email;
use crate::{ErrorKind, HasErrorKind};

/// A one-time link (invitation or password reset): its token's digest and expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneTimeLink {
    pub token_digest: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub name: String,
    pub token_digest: String,
    pub created_at: DateTime<Utc>,
    pub revoked: bool,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub exists: bool,
    pub tenant_id: Uuid,
    pub email: String,
    pub name: String,
    /// The argon2id hash (PHC string); `None` until the person sets a password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    pub invitation: Option<OneTimeLink>,
    pub reset: Option<OneTimeLink>,
    pub api_tokens: BTreeMap<Uuid, ApiToken>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UserCommand {
    /// A person created with a password straight away (the tenant's first owner).
    Register {
        tenant_id: Uuid,
        email: Email,
        name: String,
        password_hash: String,
    },
    /// A person invited by email; they choose a password through the link.
    Invite {
        tenant_id: Uuid,
        email: Email,
        name: String,
        link: OneTimeLink,
    },
    AcceptInvitation {
        token_digest: String,
        password_hash: String,
        now: DateTime<Utc>,
    },
    /// A new invitation link for a person who has not accepted yet (the old one stops working).
    RenewInvitation {
        link: OneTimeLink,
    },
    Rename {
        name: String,
    },
    ChangePassword {
        password_hash: String,
    },
    RequestPasswordReset {
        link: OneTimeLink,
    },
    ResetPassword {
        token_digest: String,
        password_hash: String,
        now: DateTime<Utc>,
    },
    CreateApiToken {
        token_id: Uuid,
        name: String,
        token_digest: String,
        now: DateTime<Utc>,
    },
    RevokeApiToken {
        token_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    UserRegistered {
        tenant_id: Uuid,
        email: Email,
        name: String,
    },
    UserInvited {
        tenant_id: Uuid,
        email: Email,
        name: String,
        link: OneTimeLink,
    },
    InvitationAccepted {},
    InvitationRenewed {
        link: OneTimeLink,
    },
    UserRenamed {
        name: String,
    },
    PasswordSet {
        password_hash: String,
    },
    PasswordResetRequested {
        link: OneTimeLink,
    },
    PasswordResetCompleted {},
    ApiTokenCreated {
        token_id: Uuid,
        name: String,
        token_digest: String,
        created_at: DateTime<Utc>,
    },
    ApiTokenRevoked {
        token_id: Uuid,
    },
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            Self::UserRegistered { .. } => "UserRegistered",
            Self::UserInvited { .. } => "UserInvited",
            Self::InvitationAccepted { .. } => "InvitationAccepted",
            Self::InvitationRenewed { .. } => "InvitationRenewed",
            Self::UserRenamed { .. } => "UserRenamed",
            Self::PasswordSet { .. } => "PasswordSet",
            Self::PasswordResetRequested { .. } => "PasswordResetRequested",
            Self::PasswordResetCompleted { .. } => "PasswordResetCompleted",
            Self::ApiTokenCreated { .. } => "ApiTokenCreated",
            Self::ApiTokenRevoked { .. } => "ApiTokenRevoked",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("this person already exists")]
    AlreadyExists,
    #[error("person not found")]
    NotFound,
    #[error("the name must be 1 to 200 characters")]
    InvalidName,
    #[error("the token name must be 1 to 100 characters")]
    InvalidTokenName,
    /// Deliberately one message for wrong, used and expired links: it tells an attacker nothing.
    #[error("this link is not valid any more; ask for a new one")]
    InvalidLink,
    #[error("the invitation was already accepted")]
    AlreadyAccepted,
    #[error("no such API token")]
    NoSuchToken,
    #[error("this API token is already revoked")]
    AlreadyRevoked,
}

impl HasErrorKind for UserError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound | Self::NoSuchToken => ErrorKind::NotFound,
            Self::InvalidName | Self::InvalidTokenName | Self::InvalidLink => ErrorKind::Invalid,
            Self::AlreadyExists | Self::AlreadyAccepted | Self::AlreadyRevoked => {
                ErrorKind::Conflict
            }
        }
    }
}

fn checked(name: &str, max: usize, error: UserError) -> Result<String, UserError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > max || name.chars().any(char::is_control) {
        Err(error)
    } else {
        Ok(name.to_owned())
    }
}

fn link_matches(link: &Option<OneTimeLink>, digest: &str, now: DateTime<Utc>) -> bool {
    link.as_ref()
        .is_some_and(|l| l.token_digest == digest && now < l.expires_at)
}

impl User {
    fn decide(&self, command: UserCommand) -> Result<Vec<UserEvent>, UserError> {
        use UserEvent as E;
        let creating = matches!(
            command,
            UserCommand::Register { .. } | UserCommand::Invite { .. }
        );
        if creating && self.exists {
            return Err(UserError::AlreadyExists);
        }
        if !creating && !self.exists {
            return Err(UserError::NotFound);
        }
        Ok(match command {
            UserCommand::Register {
                tenant_id,
                email,
                name,
                password_hash,
            } => vec![
                E::UserRegistered {
                    tenant_id,
                    email,
                    name: checked(&name, 200, UserError::InvalidName)?,
                },
                E::PasswordSet { password_hash },
            ],
            UserCommand::Invite {
                tenant_id,
                email,
                name,
                link,
            } => vec![E::UserInvited {
                tenant_id,
                email,
                name: checked(&name, 200, UserError::InvalidName)?,
                link,
            }],
            UserCommand::AcceptInvitation {
                token_digest,
                password_hash,
                now,
            } => {
                if self.invitation.is_none() && self.password_hash.is_some() {
                    return Err(UserError::AlreadyAccepted);
                }
                if !link_matches(&self.invitation, &token_digest, now) {
                    return Err(UserError::InvalidLink);
                }
                vec![E::InvitationAccepted {}, E::PasswordSet { password_hash }]
            }
            UserCommand::RenewInvitation { link } => {
                if self.invitation.is_none() {
                    return Err(UserError::AlreadyAccepted);
                }
                vec![E::InvitationRenewed { link }]
            }
            UserCommand::Rename { name } => {
                let name = checked(&name, 200, UserError::InvalidName)?;
                if name == self.name {
                    vec![]
                } else {
                    vec![E::UserRenamed { name }]
                }
            }
            UserCommand::ChangePassword { password_hash } => {
                vec![E::PasswordSet { password_hash }]
            }
            UserCommand::RequestPasswordReset { link } => {
                vec![E::PasswordResetRequested { link }]
            }
            UserCommand::ResetPassword {
                token_digest,
                password_hash,
                now,
            } => {
                if !link_matches(&self.reset, &token_digest, now) {
                    return Err(UserError::InvalidLink);
                }
                vec![
                    E::PasswordResetCompleted {},
                    E::PasswordSet { password_hash },
                ]
            }
            UserCommand::CreateApiToken {
                token_id,
                name,
                token_digest,
                now,
            } => vec![E::ApiTokenCreated {
                token_id,
                name: checked(&name, 100, UserError::InvalidTokenName)?,
                token_digest,
                created_at: now,
            }],
            UserCommand::RevokeApiToken { token_id } => {
                let token = self
                    .api_tokens
                    .get(&token_id)
                    .ok_or(UserError::NoSuchToken)?;
                if token.revoked {
                    return Err(UserError::AlreadyRevoked);
                }
                vec![E::ApiTokenRevoked { token_id }]
            }
        })
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "user";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
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
        match event {
            UserEvent::UserRegistered {
                tenant_id,
                email,
                name,
            } => {
                self.exists = true;
                self.tenant_id = tenant_id;
                self.email = email.as_str().to_owned();
                self.name = name;
            }
            UserEvent::UserInvited {
                tenant_id,
                email,
                name,
                link,
            } => {
                self.exists = true;
                self.tenant_id = tenant_id;
                self.email = email.as_str().to_owned();
                self.name = name;
                self.invitation = Some(link);
            }
            UserEvent::InvitationAccepted {} => self.invitation = None,
            UserEvent::InvitationRenewed { link } => self.invitation = Some(link),
            UserEvent::UserRenamed { name } => self.name = name,
            UserEvent::PasswordSet { password_hash } => {
                self.password_hash = Some(password_hash);
                // A new password ends any pending reset link.
                self.reset = None;
            }
            UserEvent::PasswordResetRequested { link } => self.reset = Some(link),
            UserEvent::PasswordResetCompleted {} => self.reset = None,
            UserEvent::ApiTokenCreated {
                token_id,
                name,
                token_digest,
                created_at,
            } => {
                self.api_tokens.insert(
                    token_id,
                    ApiToken {
                        name,
                        token_digest,
                        created_at,
                        revoked: false,
                    },
                );
            }
            UserEvent::ApiTokenRevoked { token_id } => {
                if let Some(token) = self.api_tokens.get_mut(&token_id) {
                    token.revoked = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<User>;

    const TENANT: Uuid = Uuid::from_u128(7);

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap()
            + chrono::Duration::minutes(minutes)
    }

    fn link(digest: &str, expires: i64) -> OneTimeLink {
        OneTimeLink {
            token_digest: digest.into(),
            expires_at: at(expires),
        }
    }

    fn invited() -> UserEvent {
        UserEvent::UserInvited {
            tenant_id: TENANT,
            email: Email::parse("ann@example.com").unwrap(),
            name: "Ann".into(),
            link: link("d1", 60),
        }
    }

    #[test]
    fn an_invitation_is_accepted_once_with_its_token_before_it_expires() {
        Given::with(())
            .given(vec![invited()])
            .when(UserCommand::AcceptInvitation {
                token_digest: "d1".into(),
                password_hash: "$argon2id$h".into(),
                now: at(59),
            })
            .then_expect_events(vec![
                UserEvent::InvitationAccepted {},
                UserEvent::PasswordSet {
                    password_hash: "$argon2id$h".into(),
                },
            ]);
        Given::with(())
            .given(vec![invited()])
            .when(UserCommand::AcceptInvitation {
                token_digest: "d1".into(),
                password_hash: "h".into(),
                now: at(60),
            })
            .then_expect_error(UserError::InvalidLink);
        Given::with(())
            .given(vec![invited()])
            .when(UserCommand::AcceptInvitation {
                token_digest: "wrong".into(),
                password_hash: "h".into(),
                now: at(1),
            })
            .then_expect_error(UserError::InvalidLink);
        Given::with(())
            .given(vec![
                invited(),
                UserEvent::InvitationAccepted {},
                UserEvent::PasswordSet {
                    password_hash: "h".into(),
                },
            ])
            .when(UserCommand::AcceptInvitation {
                token_digest: "d1".into(),
                password_hash: "h2".into(),
                now: at(1),
            })
            .then_expect_error(UserError::AlreadyAccepted);
    }

    #[test]
    fn a_reset_link_works_once_and_a_new_password_voids_it() {
        let requested = vec![
            invited(),
            UserEvent::PasswordResetRequested {
                link: link("r1", 30),
            },
        ];
        Given::with(())
            .given(requested.clone())
            .when(UserCommand::ResetPassword {
                token_digest: "r1".into(),
                password_hash: "new".into(),
                now: at(10),
            })
            .then_expect_events(vec![
                UserEvent::PasswordResetCompleted {},
                UserEvent::PasswordSet {
                    password_hash: "new".into(),
                },
            ]);
        let mut used = requested.clone();
        used.extend([
            UserEvent::PasswordResetCompleted {},
            UserEvent::PasswordSet {
                password_hash: "new".into(),
            },
        ]);
        Given::with(())
            .given(used)
            .when(UserCommand::ResetPassword {
                token_digest: "r1".into(),
                password_hash: "again".into(),
                now: at(11),
            })
            .then_expect_error(UserError::InvalidLink);
        let mut changed = requested;
        changed.push(UserEvent::PasswordSet {
            password_hash: "other".into(),
        });
        Given::with(())
            .given(changed)
            .when(UserCommand::ResetPassword {
                token_digest: "r1".into(),
                password_hash: "x".into(),
                now: at(1),
            })
            .then_expect_error(UserError::InvalidLink);
    }

    #[test]
    fn api_tokens_are_created_named_and_revoked_once() {
        let token = Uuid::from_u128(5);
        Given::with(())
            .given(vec![invited()])
            .when(UserCommand::CreateApiToken {
                token_id: token,
                name: " ".into(),
                token_digest: "t".into(),
                now: at(0),
            })
            .then_expect_error(UserError::InvalidTokenName);
        let created = UserEvent::ApiTokenCreated {
            token_id: token,
            name: "backup script".into(),
            token_digest: "t".into(),
            created_at: at(0),
        };
        Given::with(())
            .given(vec![invited(), created.clone()])
            .when(UserCommand::RevokeApiToken { token_id: token })
            .then_expect_events(vec![UserEvent::ApiTokenRevoked { token_id: token }]);
        Given::with(())
            .given(vec![
                invited(),
                created,
                UserEvent::ApiTokenRevoked { token_id: token },
            ])
            .when(UserCommand::RevokeApiToken { token_id: token })
            .then_expect_error(UserError::AlreadyRevoked);
        Given::with(())
            .given(vec![invited()])
            .when(UserCommand::RevokeApiToken { token_id: token })
            .then_expect_error(UserError::NoSuchToken);
    }

    #[test]
    fn people_are_created_once_and_must_exist_to_change() {
        Given::with(())
            .given(vec![invited()])
            .when(UserCommand::Invite {
                tenant_id: TENANT,
                email: Email::parse("b@example.com").unwrap(),
                name: "B".into(),
                link: link("x", 1),
            })
            .then_expect_error(UserError::AlreadyExists);
        Given::with(())
            .given_no_previous_events()
            .when(UserCommand::ChangePassword {
                password_hash: "h".into(),
            })
            .then_expect_error(UserError::NotFound);
    }
}
