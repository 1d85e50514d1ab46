//! A notification (issue 6): one message to one person over one channel, and what became of
//! it. The outbox consumer queues it when an event concerns someone (an order raised, assigned,
//! moved; an invitation; a password reset); the delivery worker hands it to the SMTP server or
//! the SMS provider and records each attempt and its outcome. Every step is an event, so the
//! delivery log is a projection and the audit trail says who was told what, when.
//!
//! A notification's id is derived from its cause (the causing event, the recipient and the
//! channel), so the consumer may queue it again after a crash without a second message.
//!
//! Secrets never enter the log: a message that carries a link (a status link, an invitation)
//! is stored with `SECRET_MARK` where the link goes, and names the sealed set that holds the
//! link (`link_secret`); the worker puts the link in just before it sends.
//!
//! At most once per attempt: the worker records `NotificationAttempted` before it hands the
//! message over. An attempt with no outcome (the process died in between) is never repeated
//! on its own, because the provider may have taken it; it becomes `unconfirmed`, which the
//! console shows with a Resend button.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::template::Kind;
use crate::{ErrorKind, HasErrorKind};

/// Where a message's secret link goes until the worker sends it (and what the delivery log
/// shows instead of the link).
pub const SECRET_MARK: &str = "\u{27E6}link\u{27E7}";

/// How many times a message is tried before its failure is final.
pub const MAX_ATTEMPTS: u32 = 8;

/// The longest pause between two attempts.
pub const MAX_BACKOFF_SECONDS: i64 = 3_600;

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Self::Email, Self::Sms];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text.trim())
    }
}

/// Who a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientKind {
    /// A customer's person (`contacts`).
    Contact,
    /// A staff member or a portal user (`users`).
    User,
    /// An address typed in by someone (the settings pages' test message).
    Address,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub kind: RecipientKind,
    pub id: Option<Uuid>,
    pub name: String,
    /// The email address or the phone number (E.164).
    pub address: String,
}

/// The event that caused a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
}

/// A file sent with an email, kept by its SHA-256 in the documents store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    pub file_name: String,
    pub content_type: String,
    pub sha256: String,
    pub size: u64,
}

/// A rendered message: the email's parts, or the SMS text in `text` (`subject` and `html`
/// empty). Secret links appear as `SECRET_MARK`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    pub subject: String,
    pub text: String,
    #[serde(default)]
    pub html: String,
}

/// Where a notification is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Queued,
    /// Handed to the provider; no outcome recorded yet.
    Sending,
    /// The provider took it.
    Sent,
    /// The provider confirmed delivery (SMS status callback).
    Delivered,
    /// The provider could not deliver it after taking it (SMS status callback).
    Undelivered,
    /// The last attempt failed; another follows at `retry_at`.
    Retrying,
    /// Given up: refused for good, or too many attempts, or it could not be rendered.
    Failed,
    /// Not sent, on purpose (no provider set up, the person opted out, no address).
    Skipped,
    /// The process stopped while the message was being handed over: it may have gone out.
    Unconfirmed,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Self::Queued,
        Self::Sending,
        Self::Sent,
        Self::Delivered,
        Self::Undelivered,
        Self::Retrying,
        Self::Failed,
        Self::Skipped,
        Self::Unconfirmed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Unconfirmed => "unconfirmed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text.trim())
    }

    /// Waiting for the worker.
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Queued | Self::Retrying)
    }

    /// Nothing more will happen on its own; a person may resend it.
    pub fn can_resend(self) -> bool {
        matches!(
            self,
            Self::Failed
                | Self::Skipped
                | Self::Unconfirmed
                | Self::Undelivered
                | Self::Sent
                | Self::Delivered
        )
    }
}

/// When attempt `attempt` (1-based) failed at `now`, when the next one runs: `base`, doubled
/// per attempt, at most `MAX_BACKOFF_SECONDS`; `None` after `MAX_ATTEMPTS`.
pub fn retry_at(attempt: u32, now: DateTime<Utc>, base_seconds: i64) -> Option<DateTime<Utc>> {
    if attempt >= MAX_ATTEMPTS {
        return None;
    }
    let factor = 1i64 << attempt.saturating_sub(1).min(20);
    let seconds = base_seconds
        .max(1)
        .saturating_mul(factor)
        .min(MAX_BACKOFF_SECONDS);
    Some(now + Duration::seconds(seconds))
}

/// A tenant's own SMTP server. The URL has no password; the password is sealed in
/// `vault_secrets` (field `smtp_password`) under `password_secret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailProvider {
    pub url: String,
    pub from: String,
    pub password_secret: Option<Uuid>,
}

/// A tenant's own SMS provider. Secrets (Twilio's auth token, a gateway's auth header) are
/// sealed in `vault_secrets` under `secret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case")]
pub enum SmsProvider {
    Twilio {
        account_sid: String,
        from: String,
        base_url: String,
        secret: Uuid,
    },
    Gateway {
        url: String,
        /// `get` or `post`.
        method: String,
        /// `form` or `json`.
        body: String,
        template: String,
        from: String,
        secret: Option<Uuid>,
    },
}

/// A cell phone number in international form (`+` and 8 to 15 digits), from what people
/// type (`+1 (555) 010-0199`, `0044 20 7946 0000`); `None` when it has no country code.
pub fn sms_number(text: &str) -> Option<String> {
    let text = text.trim();
    let rest = if let Some(rest) = text.strip_prefix('+') {
        rest
    } else {
        text.strip_prefix("00")?
    };
    let mut digits = String::from("+");
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' | '/' => {}
            _ => return None,
        }
    }
    (9..=16).contains(&digits.len()).then_some(digits)
}

/// What to queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    pub kind: Kind,
    pub channel: Channel,
    pub recipient: Recipient,
    pub cause: Option<Cause>,
    /// The company and work order it concerns, for the log's filters.
    pub company_id: Option<Uuid>,
    pub work_order_id: Option<Uuid>,
    /// The placeholder values it was rendered from (never a secret), for resending with a
    /// corrected template.
    pub values: BTreeMap<String, String>,
    pub content: Content,
    /// The sealed set (`vault_secrets`) holding the link that replaces `SECRET_MARK`.
    pub link_secret: Option<Uuid>,
    pub attachments: Vec<AttachmentRef>,
    /// The notification this one sends again.
    pub resend_of: Option<Uuid>,
    pub queued_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NotificationCommand {
    Queue(Box<Queued>),
    /// It could not be rendered (`skipped` false: a failure someone must fix) or is not to be
    /// sent (`skipped`: no address, the person opted out): recorded so the log says why.
    Refuse {
        queued: Box<Queued>,
        reason: String,
        skipped: bool,
    },
    Skip {
        reason: String,
    },
    Attempt {
        attempt: u32,
        provider: String,
        at: DateTime<Utc>,
    },
    RecordSent {
        attempt: u32,
        provider_message_id: String,
        response: String,
        at: DateTime<Utc>,
    },
    RecordFailed {
        attempt: u32,
        error: String,
        permanent: bool,
        /// `None`: no further attempt.
        retry_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// The worker found the attempt without an outcome after a restart.
    MarkUnconfirmed {
        attempt: u32,
        at: DateTime<Utc>,
    },
    /// A provider's report after sending (Twilio's status callback).
    RecordDelivery {
        status: String,
        error_code: Option<String>,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NotificationEvent {
    NotificationQueued(Box<Queued>),
    NotificationRefused {
        queued: Box<Queued>,
        reason: String,
        #[serde(default)]
        skipped: bool,
    },
    NotificationSkipped {
        reason: String,
    },
    NotificationAttempted {
        attempt: u32,
        provider: String,
        at: DateTime<Utc>,
    },
    NotificationSent {
        attempt: u32,
        provider_message_id: String,
        response: String,
        at: DateTime<Utc>,
    },
    NotificationFailed {
        attempt: u32,
        error: String,
        permanent: bool,
        retry_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    NotificationUnconfirmed {
        attempt: u32,
        at: DateTime<Utc>,
    },
    NotificationDeliveryReported {
        status: String,
        error_code: Option<String>,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for NotificationEvent {
    fn event_type(&self) -> String {
        match self {
            Self::NotificationQueued(_) => "NotificationQueued",
            Self::NotificationRefused { .. } => "NotificationRefused",
            Self::NotificationSkipped { .. } => "NotificationSkipped",
            Self::NotificationAttempted { .. } => "NotificationAttempted",
            Self::NotificationSent { .. } => "NotificationSent",
            Self::NotificationFailed { .. } => "NotificationFailed",
            Self::NotificationUnconfirmed { .. } => "NotificationUnconfirmed",
            Self::NotificationDeliveryReported { .. } => "NotificationDeliveryReported",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error("this notification already exists")]
    AlreadyExists,
    #[error("notification not found")]
    NotFound,
    #[error("this notification is {0} and cannot be sent now")]
    NotPending(&'static str),
    #[error("attempt {got} is not the next one (expected {expected})")]
    WrongAttempt { expected: u32, got: u32 },
    #[error("no attempt is waiting for an outcome")]
    NoAttempt,
    #[error("only a sent message can have a delivery report")]
    NotSent,
}

impl HasErrorKind for NotificationError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound => ErrorKind::NotFound,
            _ => ErrorKind::Conflict,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub queued: Option<Queued>,
    pub status: Status,
    pub attempts: u32,
    /// The attempt handed over without an outcome yet.
    pub in_flight: Option<u32>,
    pub provider_message_id: Option<String>,
    pub last_error: Option<String>,
    pub retry_at: Option<DateTime<Utc>>,
    pub delivery: Option<String>,
}

impl Notification {
    fn decide(
        &self,
        command: NotificationCommand,
    ) -> Result<Vec<NotificationEvent>, NotificationError> {
        use NotificationCommand as C;
        use NotificationEvent as E;
        let exists = self.queued.is_some();
        match command {
            C::Queue(queued) if !exists => Ok(vec![E::NotificationQueued(queued)]),
            C::Refuse {
                queued,
                reason,
                skipped,
            } if !exists => Ok(vec![E::NotificationRefused {
                queued,
                reason,
                skipped,
            }]),
            C::Queue(_) | C::Refuse { .. } => Err(NotificationError::AlreadyExists),
            _ if !exists => Err(NotificationError::NotFound),
            C::Skip { reason } => {
                self.pending()?;
                Ok(vec![E::NotificationSkipped { reason }])
            }
            C::Attempt {
                attempt,
                provider,
                at,
            } => {
                self.pending()?;
                if attempt != self.attempts + 1 {
                    return Err(NotificationError::WrongAttempt {
                        expected: self.attempts + 1,
                        got: attempt,
                    });
                }
                Ok(vec![E::NotificationAttempted {
                    attempt,
                    provider,
                    at,
                }])
            }
            C::RecordSent {
                attempt,
                provider_message_id,
                response,
                at,
            } => {
                self.in_flight(attempt)?;
                Ok(vec![E::NotificationSent {
                    attempt,
                    provider_message_id,
                    response,
                    at,
                }])
            }
            C::RecordFailed {
                attempt,
                error,
                permanent,
                retry_at,
                at,
            } => {
                self.in_flight(attempt)?;
                let retry_at = if permanent { None } else { retry_at };
                Ok(vec![E::NotificationFailed {
                    attempt,
                    error,
                    permanent: permanent || retry_at.is_none(),
                    retry_at,
                    at,
                }])
            }
            C::MarkUnconfirmed { attempt, at } => {
                self.in_flight(attempt)?;
                Ok(vec![E::NotificationUnconfirmed { attempt, at }])
            }
            C::RecordDelivery {
                status,
                error_code,
                at,
            } => {
                if !matches!(
                    self.status,
                    Status::Sent | Status::Delivered | Status::Undelivered
                ) {
                    return Err(NotificationError::NotSent);
                }
                if self.delivery.as_deref() == Some(status.as_str()) {
                    return Ok(vec![]);
                }
                Ok(vec![E::NotificationDeliveryReported {
                    status,
                    error_code,
                    at,
                }])
            }
        }
    }

    fn pending(&self) -> Result<(), NotificationError> {
        if self.status.is_pending() {
            Ok(())
        } else {
            Err(NotificationError::NotPending(self.status.as_str()))
        }
    }

    fn in_flight(&self, attempt: u32) -> Result<(), NotificationError> {
        match self.in_flight {
            Some(current) if current == attempt => Ok(()),
            Some(current) => Err(NotificationError::WrongAttempt {
                expected: current,
                got: attempt,
            }),
            None => Err(NotificationError::NoAttempt),
        }
    }
}

/// What a delivery report (an SMS provider's status) means for the notification.
pub fn delivery_status(report: &str) -> Option<Status> {
    match report {
        "delivered" | "read" => Some(Status::Delivered),
        "undelivered" | "failed" => Some(Status::Undelivered),
        "queued" | "accepted" | "sending" | "sent" | "scheduled" => Some(Status::Sent),
        _ => None,
    }
}

impl Aggregate for Notification {
    const TYPE: &'static str = "notification";
    type Command = NotificationCommand;
    type Event = NotificationEvent;
    type Error = NotificationError;
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
        use NotificationEvent as E;
        match event {
            E::NotificationQueued(queued) => {
                self.queued = Some(*queued);
                self.status = Status::Queued;
            }
            E::NotificationRefused {
                queued,
                reason,
                skipped,
            } => {
                self.queued = Some(*queued);
                self.status = if skipped {
                    Status::Skipped
                } else {
                    Status::Failed
                };
                self.last_error = Some(reason);
            }
            E::NotificationSkipped { reason } => {
                self.status = Status::Skipped;
                self.last_error = Some(reason);
            }
            E::NotificationAttempted { attempt, .. } => {
                self.attempts = attempt;
                self.in_flight = Some(attempt);
                self.status = Status::Sending;
                self.retry_at = None;
            }
            E::NotificationSent {
                provider_message_id,
                ..
            } => {
                self.in_flight = None;
                self.status = Status::Sent;
                self.provider_message_id = Some(provider_message_id);
                self.last_error = None;
            }
            E::NotificationFailed {
                error,
                permanent,
                retry_at,
                ..
            } => {
                self.in_flight = None;
                self.status = if permanent {
                    Status::Failed
                } else {
                    Status::Retrying
                };
                self.retry_at = retry_at;
                self.last_error = Some(error);
            }
            E::NotificationUnconfirmed { .. } => {
                self.in_flight = None;
                self.status = Status::Unconfirmed;
            }
            E::NotificationDeliveryReported {
                status, error_code, ..
            } => {
                if let Some(next) = delivery_status(&status) {
                    self.status = next;
                }
                if let Some(code) = error_code {
                    self.last_error = Some(format!("provider error {code}"));
                }
                self.delivery = Some(status);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    fn queued() -> Box<Queued> {
        Box::new(Queued {
            kind: Kind::Test,
            channel: Channel::Email,
            recipient: Recipient {
                kind: RecipientKind::Address,
                id: None,
                name: String::new(),
                address: "ann@example.test".into(),
            },
            cause: None,
            company_id: None,
            work_order_id: None,
            values: BTreeMap::new(),
            content: Content {
                subject: "Hi".into(),
                text: "Hello".into(),
                html: String::new(),
            },
            link_secret: None,
            attachments: vec![],
            resend_of: None,
            queued_at: at(0),
        })
    }

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 10, minute, 0).unwrap()
    }

    type Test = TestFramework<Notification>;

    fn attempted(n: u32) -> NotificationEvent {
        NotificationEvent::NotificationAttempted {
            attempt: n,
            provider: "smtp".into(),
            at: at(1),
        }
    }

    #[test]
    fn an_attempt_follows_the_last_and_needs_a_pending_message() {
        Test::with(())
            .given(vec![NotificationEvent::NotificationQueued(queued())])
            .when(NotificationCommand::Attempt {
                attempt: 2,
                provider: "smtp".into(),
                at: at(1),
            })
            .then_expect_error(NotificationError::WrongAttempt {
                expected: 1,
                got: 2,
            });
        Test::with(())
            .given(vec![
                NotificationEvent::NotificationQueued(queued()),
                attempted(1),
            ])
            .when(NotificationCommand::Attempt {
                attempt: 2,
                provider: "smtp".into(),
                at: at(1),
            })
            .then_expect_error(NotificationError::NotPending("sending"));
    }

    #[test]
    fn an_attempt_without_outcome_is_never_repeated_on_its_own() {
        let mut n = Notification::default();
        n.apply(NotificationEvent::NotificationQueued(queued()));
        n.apply(attempted(1));
        let events = n
            .decide(NotificationCommand::MarkUnconfirmed {
                attempt: 1,
                at: at(2),
            })
            .unwrap();
        for e in events {
            n.apply(e);
        }
        assert_eq!(n.status, Status::Unconfirmed);
        assert!(!n.status.is_pending());
        assert!(n.status.can_resend());
        // A late outcome of the same attempt is refused: nothing is waiting.
        assert_eq!(
            n.decide(NotificationCommand::RecordSent {
                attempt: 1,
                provider_message_id: "x".into(),
                response: String::new(),
                at: at(3),
            }),
            Err(NotificationError::NoAttempt)
        );
    }

    #[test]
    fn a_failure_without_a_next_attempt_is_final() {
        let mut n = Notification::default();
        n.apply(NotificationEvent::NotificationQueued(queued()));
        n.apply(attempted(1));
        let events = n
            .decide(NotificationCommand::RecordFailed {
                attempt: 1,
                error: "550 no such user".into(),
                permanent: false,
                retry_at: None,
                at: at(2),
            })
            .unwrap();
        assert!(matches!(
            events[0],
            NotificationEvent::NotificationFailed {
                permanent: true,
                ..
            }
        ));
        n.apply(events[0].clone());
        assert_eq!(n.status, Status::Failed);
    }

    #[test]
    fn phone_numbers_need_a_country_code() {
        assert_eq!(
            sms_number("+1 (555) 010-0199").as_deref(),
            Some("+15550100199")
        );
        assert_eq!(
            sms_number("0044 20 7946 0000").as_deref(),
            Some("+442079460000")
        );
        assert_eq!(sms_number("555.0100"), None);
        assert_eq!(sms_number("+1 555 0100 x12"), None);
        assert_eq!(sms_number("+123"), None);
        assert_eq!(sms_number(""), None);
    }

    #[test]
    fn backoff_doubles_up_to_an_hour_and_stops_after_the_last_attempt() {
        let now = at(0);
        assert_eq!(retry_at(1, now, 60), Some(now + Duration::seconds(60)));
        assert_eq!(retry_at(2, now, 60), Some(now + Duration::seconds(120)));
        assert_eq!(retry_at(4, now, 60), Some(now + Duration::seconds(480)));
        assert_eq!(retry_at(7, now, 60), Some(now + Duration::seconds(3_600)));
        assert_eq!(retry_at(MAX_ATTEMPTS, now, 60), None);
        assert_eq!(retry_at(1, now, 0), Some(now + Duration::seconds(1)));
    }

    #[test]
    fn delivery_reports_move_a_sent_message_once() {
        let mut n = Notification::default();
        n.apply(NotificationEvent::NotificationQueued(queued()));
        assert_eq!(
            n.decide(NotificationCommand::RecordDelivery {
                status: "delivered".into(),
                error_code: None,
                at: at(1)
            }),
            Err(NotificationError::NotSent)
        );
        n.apply(attempted(1));
        n.apply(NotificationEvent::NotificationSent {
            attempt: 1,
            provider_message_id: "SM1".into(),
            response: "queued".into(),
            at: at(1),
        });
        let report = |status: &str| NotificationCommand::RecordDelivery {
            status: status.into(),
            error_code: None,
            at: at(2),
        };
        let events = n.decide(report("delivered")).unwrap();
        assert_eq!(events.len(), 1);
        n.apply(events[0].clone());
        assert_eq!(n.status, Status::Delivered);
        assert!(n.decide(report("delivered")).unwrap().is_empty());
    }
}
