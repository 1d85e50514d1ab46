//! Queuing a notification: render the tenant's template for the channel, keep the secret link
//! sealed outside the log, and append `NotificationQueued` (or `NotificationRefused` when it
//! cannot be rendered or has nowhere to go). Idempotent by the notification's id and command
//! id, so the consumer may queue the same cause again after a crash.

use std::collections::BTreeMap;

use chrono::Utc;
use commands::{CommandError, EventMeta};
use domain::notification::{
    AttachmentRef, Cause, Channel, Content, Notification, NotificationCommand, Queued, Recipient,
    SECRET_MARK,
};
use domain::template::{Kind, Template};
use domain::tenant::Tenant;
use uuid::Uuid;

use crate::state::AppState;

/// The placeholder of a kind that carries a secret link (never stored in the log).
pub fn secret_placeholder(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::WorkOrderCreated | Kind::WorkOrderStatusChanged => Some("view_link"),
        Kind::WorkOrderAssigned => Some("status_link"),
        Kind::PasswordReset | Kind::Invitation => Some("link"),
        _ => None,
    }
}

/// Everything to queue one message but its channel.
#[derive(Debug, Clone)]
pub struct Draft {
    pub tenant_id: Uuid,
    pub kind: Kind,
    pub recipient: Recipient,
    pub cause: Option<Cause>,
    pub company_id: Option<Uuid>,
    pub work_order_id: Option<Uuid>,
    /// Placeholder values (never the secret link).
    pub values: BTreeMap<String, String>,
    /// The sealed set holding the secret link, when the kind has one.
    pub link_secret: Option<Uuid>,
    pub attachments: Vec<AttachmentRef>,
    pub resend_of: Option<Uuid>,
}

/// Renders `template` for `channel`: the email's subject, text and HTML, or the SMS text.
/// `None` when the template has no SMS wording (the kind is not sent by SMS).
pub fn render(
    template: &Template,
    kind: Kind,
    channel: Channel,
    values: &BTreeMap<String, String>,
) -> Option<Result<Content, Vec<String>>> {
    if channel == Channel::Sms && template.sms.trim().is_empty() {
        return None;
    }
    let mut borrowed: BTreeMap<&str, String> = values
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    if let Some(name) = secret_placeholder(kind) {
        borrowed.insert(name, SECRET_MARK.to_owned());
    }
    Some(match template.render(kind, &borrowed) {
        Ok(rendered) => Ok(match channel {
            Channel::Email => Content {
                subject: rendered.subject,
                text: rendered.text,
                html: rendered.html,
            },
            Channel::Sms => Content {
                subject: String::new(),
                text: rendered.sms,
                html: String::new(),
            },
        }),
        Err(missing) => Err(missing.0),
    })
}

/// What became of a queue request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueOutcome {
    Queued(Uuid),
    /// Recorded as failed (it could not be rendered) or skipped (nowhere to go).
    Refused(Uuid, String),
    /// The template has no wording for this channel: nothing recorded.
    NotForChannel,
}

/// Why a message is recorded without being queued: `skipped` (the person opted out, has no
/// address) or failed (something someone must fix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
    pub skipped: bool,
}

/// Queues `draft` on `channel` to its recipient's address under the notification id `id`;
/// with a `refusal`, records it as skipped or failed instead.
pub async fn queue(
    state: &AppState,
    tenant: &Tenant,
    draft: &Draft,
    channel: Channel,
    id: Uuid,
    refusal: Option<Refusal>,
    meta: &EventMeta,
) -> Result<QueueOutcome, String> {
    let template = tenant.template(draft.kind);
    let rendered = match refusal {
        Some(r) => Err((r.reason, r.skipped)),
        None => match render(&template, draft.kind, channel, &draft.values) {
            None => return Ok(QueueOutcome::NotForChannel),
            Some(Ok(content)) => Ok(content),
            Some(Err(missing)) => Err((
                format!(
                    "the \"{}\" template needs a value for {}, which this message does not have; \
                     change the template (Settings → Notifications) and resend",
                    draft.kind.as_str(),
                    missing
                        .iter()
                        .map(|m| format!("{{{m}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                false,
            )),
        },
    };
    let mut queued = Queued {
        kind: draft.kind,
        channel,
        recipient: draft.recipient.clone(),
        cause: draft.cause.clone(),
        company_id: draft.company_id,
        work_order_id: draft.work_order_id,
        values: draft.values.clone(),
        content: Content::default(),
        link_secret: draft.link_secret,
        attachments: if channel == Channel::Email {
            draft.attachments.clone()
        } else {
            Vec::new()
        },
        resend_of: draft.resend_of,
        queued_at: Utc::now(),
    };
    let (command, refused) = match rendered {
        Ok(content) => {
            queued.content = content;
            (NotificationCommand::Queue(Box::new(queued)), None)
        }
        Err((reason, skipped)) => (
            NotificationCommand::Refuse {
                queued: Box::new(queued),
                reason: reason.clone(),
                skipped,
            },
            Some(reason),
        ),
    };
    match state
        .store
        .create::<Notification>(&id.to_string(), command, &(), meta)
        .await
    {
        Ok(_)
        | Err(CommandError::Domain(domain::notification::NotificationError::AlreadyExists)) => {
            Ok(match refused {
                Some(reason) => QueueOutcome::Refused(id, reason),
                None => QueueOutcome::Queued(id),
            })
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The link sealed as `secret_id`, if any.
pub async fn open_link(
    state: &AppState,
    tenant_id: Uuid,
    secret_id: Uuid,
) -> Result<Option<String>, String> {
    state
        .settings()
        .vault
        .open_link(&state.pool, tenant_id, secret_id)
        .await
        .map_err(|e| e.to_string())
}

/// Seals `link` as `secret_id` of the record `owner` (the first link sealed stays).
pub async fn seal_link(
    state: &AppState,
    tenant_id: Uuid,
    owner: Uuid,
    secret_id: Uuid,
    link: &str,
) -> Result<(), String> {
    state
        .settings()
        .vault
        .seal_link(&state.pool, tenant_id, owner, secret_id, link)
        .await
        .map_err(|e| e.to_string())
}
