//! The delivery worker: one across all instances (advisory lock `notifier-delivery`). It reads
//! the due messages from the `notifications` read model, decides each from the notification's
//! own events, and hands it to the tenant's provider (its own SMTP server or SMS provider set
//! in the console, else the deployment's from the environment).
//!
//! Each attempt is recorded (`NotificationAttempted`) before the hand-over and its outcome
//! after (`NotificationSent` with the provider's message id, or `NotificationFailed` with the
//! next attempt's time or none). An attempt found without an outcome (the process stopped in
//! between) becomes `unconfirmed` and is not repeated on its own: the provider may have taken
//! it, and a duplicate is worse than a message a person resends from the log. Emails carry the
//! notification's id as their `Message-ID`, so a receiving system can also recognise a resend
//! of the same notification.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use commands::{CommandError, ConflictPolicy, EventMeta};
use domain::notification::{
    retry_at, Channel, EmailProvider, Notification, NotificationCommand, NotificationError,
    SmsProvider, Status, SECRET_MARK,
};
use domain::tenant::Tenant;
use projections::runner::Wakeups;
use uuid::Uuid;

use super::email::{self, Attachment, OutgoingEmail, SmtpSettings};
use super::sms::{self, GatewaySettings, TwilioSettings};
use super::SendError;
use crate::state::AppState;

pub const NAME: &str = "notifier-delivery";

/// What to send with, for one tenant and channel.
#[derive(Debug, Clone)]
pub enum Provider {
    Smtp {
        settings: SmtpSettings,
        from: String,
    },
    Twilio(TwilioSettings),
    Gateway(GatewaySettings),
}

impl Provider {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Smtp { .. } => "smtp",
            Self::Twilio(_) => "twilio",
            Self::Gateway(_) => "gateway",
        }
    }
}

/// Where a tenant's provider for a channel comes from (the settings pages say it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Tenant,
    Environment,
    None,
}

/// The tenant's provider for `channel`: its own, else the deployment's.
pub async fn provider(
    state: &AppState,
    tenant_id: Uuid,
    tenant: &Tenant,
    channel: Channel,
) -> Result<(Option<Provider>, Source), String> {
    let config = &state.settings().notify;
    let secret = |id: Uuid, field: &'static str| async move {
        state
            .settings()
            .vault
            .open_set(&state.pool, tenant_id, id)
            .await
            .map_err(|e| e.to_string())
            .map(|set| set.get(field).cloned())
    };
    match channel {
        Channel::Email => match &tenant.email_provider {
            Some(EmailProvider {
                url,
                from,
                password_secret,
            }) => {
                let mut settings = SmtpSettings::parse(url)?;
                if let Some(id) = password_secret {
                    settings.password = secret(*id, "smtp_password").await?;
                }
                Ok((
                    Some(Provider::Smtp {
                        settings,
                        from: from.clone(),
                    }),
                    Source::Tenant,
                ))
            }
            None => Ok(match (&config.smtp, &config.smtp_from) {
                (Some(settings), Some(from)) => (
                    Some(Provider::Smtp {
                        settings: settings.clone(),
                        from: sender(from, &tenant.name),
                    }),
                    Source::Environment,
                ),
                _ => (None, Source::None),
            }),
        },
        Channel::Sms => match &tenant.sms_provider {
            Some(SmsProvider::Twilio {
                account_sid,
                from,
                base_url,
                secret: id,
            }) => Ok((
                Some(Provider::Twilio(TwilioSettings {
                    account_sid: account_sid.clone(),
                    auth_token: secret(*id, "sms_secret").await?.unwrap_or_default(),
                    from: from.clone(),
                    base_url: base_url.clone(),
                })),
                Source::Tenant,
            )),
            Some(SmsProvider::Gateway {
                url,
                method,
                body,
                template,
                from,
                secret: id,
            }) => {
                let auth_header = match id {
                    Some(id) => secret(*id, "sms_secret").await?,
                    None => None,
                };
                Ok((
                    Some(Provider::Gateway(GatewaySettings {
                        url: url.clone(),
                        method: if method == "get" {
                            sms::Method::Get
                        } else {
                            sms::Method::Post
                        },
                        body: if body == "json" {
                            sms::BodyFormat::Json
                        } else {
                            sms::BodyFormat::Form
                        },
                        template: template.clone(),
                        auth_header,
                        from: from.clone(),
                    })),
                    Source::Tenant,
                ))
            }
            None => Ok(match &config.twilio {
                Some(settings) => (
                    Some(Provider::Twilio(settings.clone())),
                    Source::Environment,
                ),
                None => (None, Source::None),
            }),
        },
    }
}

/// `from` with the tenant's name shown when it names no one (`support@msp.example` →
/// `Acme IT <support@msp.example>`).
fn sender(from: &str, tenant_name: &str) -> String {
    match from.parse::<lettre::message::Mailbox>() {
        Ok(mailbox) if mailbox.name.is_none() && !tenant_name.trim().is_empty() => {
            lettre::message::Mailbox::new(Some(tenant_name.trim().to_owned()), mailbox.email)
                .to_string()
        }
        _ => from.to_owned(),
    }
}

/// An outcome the worker could not record yet (the database was away): recorded first on
/// the next pass, so a sent message is never taken for an interrupted one.
#[derive(Debug, Clone)]
struct Unrecorded {
    tenant_id: Uuid,
    command: NotificationCommand,
}

/// Runs the worker until the process ends.
pub async fn run(state: AppState, mut wakeups: Wakeups) {
    let client = reqwest::Client::builder()
        .timeout(state.settings().notify.send_timeout)
        .build()
        .unwrap_or_default();
    let mut unrecorded: HashMap<Uuid, Unrecorded> = HashMap::new();
    loop {
        let mut conn = match projections::runner::lock(&state.pool, NAME).await {
            Ok(Some(conn)) => conn,
            Ok(None) => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            Err(error) => {
                tracing::warn!(worker = NAME, %error, "cannot take the delivery lock");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tracing::info!(worker = NAME, "notification delivery started");
        loop {
            match pass(&state, &client, &mut unrecorded).await {
                Ok(worked) => {
                    if !worked {
                        let wait = next_wait(&state).await;
                        wakeups.wait(wait).await;
                    }
                }
                Err(error) => {
                    tracing::warn!(worker = NAME, %error, "delivery pass failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    // Is the lock's connection still there?
                    if sqlx::query("SELECT 1").execute(&mut *conn).await.is_err() {
                        let _ = conn.close().await;
                        break;
                    }
                }
            }
        }
    }
}

/// How long to sleep when nothing was due: until the next retry, at most the poll interval.
async fn next_wait(state: &AppState) -> Duration {
    let poll = state.settings().notify.poll;
    match projections::notifications::next_retry(&state.pool).await {
        Ok(Some(at)) => (at - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .clamp(Duration::from_millis(20), poll),
        _ => poll,
    }
}

/// One pass over what is due; true when it did something (look again at once).
async fn pass(
    state: &AppState,
    client: &reqwest::Client,
    unrecorded: &mut HashMap<Uuid, Unrecorded>,
) -> Result<bool, String> {
    let pending: Vec<(Uuid, Unrecorded)> = unrecorded.drain().collect();
    for (id, outcome) in pending {
        if let Err(error) = record(state, outcome.tenant_id, id, outcome.command.clone()).await {
            unrecorded.insert(id, outcome);
            return Err(error);
        }
    }
    let now = Utc::now();
    let due = projections::notifications::due(&state.pool, now, 50)
        .await
        .map_err(|e| e.to_string())?;
    let mut worked = false;
    for row in due {
        if unrecorded.contains_key(&row.id) {
            continue;
        }
        let (notification, _) = state
            .store
            .load::<Notification>(row.tenant_id, &row.id.to_string())
            .await
            .map_err(|e| e.to_string())?;
        match notification.status {
            Status::Sending => {
                // This worker holds the lock and has nothing in flight: the attempt was made
                // by a worker that stopped before it could record the outcome.
                if let Some(attempt) = notification.in_flight {
                    tracing::warn!(notification = %row.id, attempt, "an attempt was interrupted; marking it unconfirmed");
                    record(
                        state,
                        row.tenant_id,
                        row.id,
                        NotificationCommand::MarkUnconfirmed {
                            attempt,
                            at: Utc::now(),
                        },
                    )
                    .await?;
                    worked = true;
                }
            }
            Status::Queued | Status::Retrying
                if notification.retry_at.is_none_or(|at| at <= Utc::now()) =>
            {
                if let Some(outcome) =
                    send_one(state, client, row.tenant_id, row.id, &notification).await?
                {
                    if let Err(error) = record(state, row.tenant_id, row.id, outcome.clone()).await
                    {
                        unrecorded.insert(
                            row.id,
                            Unrecorded {
                                tenant_id: row.tenant_id,
                                command: outcome,
                            },
                        );
                        return Err(error);
                    }
                }
                worked = true;
            }
            _ => {}
        }
    }
    Ok(worked)
}

/// Appends `command` to the notification (idempotent: its command id derives from it).
async fn record(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
    command: NotificationCommand,
) -> Result<(), String> {
    let step = match &command {
        NotificationCommand::Attempt { attempt, .. } => format!("attempt-{attempt}"),
        NotificationCommand::RecordSent { attempt, .. }
        | NotificationCommand::RecordFailed { attempt, .. }
        | NotificationCommand::MarkUnconfirmed { attempt, .. } => format!("outcome-{attempt}"),
        NotificationCommand::Skip { .. } => "skip".into(),
        other => format!("{other:?}"),
    };
    let meta = EventMeta::new(tenant_id, NAME).with_command_id(Uuid::new_v5(&id, step.as_bytes()));
    match state
        .store
        .execute::<Notification>(
            &id.to_string(),
            command,
            &(),
            &meta,
            ConflictPolicy::RetryOnce,
        )
        .await
    {
        Ok(_) => Ok(()),
        // Decided already (another worker, or a late duplicate): nothing to record.
        Err(CommandError::Domain(
            NotificationError::NotPending(_)
            | NotificationError::NoAttempt
            | NotificationError::WrongAttempt { .. },
        )) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Attempts one message; returns the outcome to record (`None`: nothing was attempted).
async fn send_one(
    state: &AppState,
    client: &reqwest::Client,
    tenant_id: Uuid,
    id: Uuid,
    notification: &Notification,
) -> Result<Option<NotificationCommand>, String> {
    let Some(queued) = &notification.queued else {
        return Ok(None);
    };
    let (tenant, _) = state
        .store
        .load::<Tenant>(tenant_id, &tenant_id.to_string())
        .await
        .map_err(|e| e.to_string())?;
    let provider = match provider(state, tenant_id, &tenant, queued.channel).await {
        Ok((Some(provider), _)) => provider,
        Ok((None, _)) => {
            let reason = match queued.channel {
                Channel::Email => {
                    "no SMTP server is set up (ST_SMTP_URL, or Settings → Notifications)"
                }
                Channel::Sms => {
                    "no SMS provider is set up (ST_TWILIO_*, or Settings → Notifications)"
                }
            };
            record(
                state,
                tenant_id,
                id,
                NotificationCommand::Skip {
                    reason: reason.into(),
                },
            )
            .await?;
            return Ok(None);
        }
        Err(problem) => {
            let attempt = notification.attempts + 1;
            record(state, tenant_id, id, attempt_command(attempt, "settings")).await?;
            return Ok(Some(failed(
                state,
                attempt,
                SendError::transient(format!("the provider's settings are unusable: {problem}")),
            )));
        }
    };
    let attempt = notification.attempts + 1;
    // The message's link, put in just before sending.
    let link = match queued.link_secret {
        Some(secret) => match super::queue::open_link(state, tenant_id, secret).await {
            Ok(link) => link,
            Err(problem) => {
                // A key that cannot open the seal, or the database away: try again later
                // rather than hold up the messages behind this one.
                record(
                    state,
                    tenant_id,
                    id,
                    attempt_command(attempt, provider.name()),
                )
                .await?;
                return Ok(Some(failed(
                    state,
                    attempt,
                    SendError::transient(format!("the message's link cannot be opened: {problem}")),
                )));
            }
        },
        None => None,
    };
    let needs_link = [
        &queued.content.subject,
        &queued.content.text,
        &queued.content.html,
    ]
    .iter()
    .any(|part| part.contains(SECRET_MARK));
    if needs_link && link.is_none() {
        record(
            state,
            tenant_id,
            id,
            attempt_command(attempt, provider.name()),
        )
        .await?;
        return Ok(Some(failed(
            state,
            attempt,
            SendError::permanent(
                "the message's link is no longer kept (the server stopped while it was issued); \
                 issue the link or invitation again",
            ),
        )));
    }
    let fill = |part: &str| match &link {
        Some(link) => part.replace(SECRET_MARK, link),
        None => part.to_owned(),
    };
    let html_link = link.as_deref().map(domain::template::escape_html);
    let attachments = match load_attachments(state, tenant_id, queued).await? {
        Ok(files) => files,
        Err(missing) => {
            record(
                state,
                tenant_id,
                id,
                attempt_command(attempt, provider.name()),
            )
            .await?;
            return Ok(Some(failed(state, attempt, SendError::permanent(missing))));
        }
    };
    record(
        state,
        tenant_id,
        id,
        attempt_command(attempt, provider.name()),
    )
    .await?;
    let timeout = state.settings().notify.send_timeout;
    let result = match (&provider, queued.channel) {
        (Provider::Smtp { settings, from }, Channel::Email) => {
            let message = OutgoingEmail {
                from: from.clone(),
                to: queued.recipient.address.clone(),
                reply_to: None,
                subject: fill(&queued.content.subject),
                text: fill(&queued.content.text),
                html: (!queued.content.html.is_empty()).then(|| match &html_link {
                    Some(link) => queued.content.html.replace(SECRET_MARK, link),
                    None => queued.content.html.clone(),
                }),
                message_id: message_id(id, &state.settings().public_url),
                attachments,
                headers: vec![("X-SupportTracker-Notification".into(), id.to_string())],
            };
            email::send(settings, &message, timeout)
                .await
                .map(|response| (message.message_id.clone(), response))
        }
        (Provider::Twilio(settings), Channel::Sms) => {
            let callback = format!(
                "{}/webhooks/twilio/{tenant_id}/{id}",
                state.settings().public_url
            );
            sms::send_twilio(
                client,
                settings,
                &queued.recipient.address,
                &fill(&queued.content.text),
                Some(&callback),
            )
            .await
            .map(|sent| (sent.message_id, sent.status))
        }
        (Provider::Gateway(settings), Channel::Sms) => sms::send_gateway(
            client,
            settings,
            &id.to_string(),
            &queued.recipient.address,
            &fill(&queued.content.text),
        )
        .await
        .map(|sent| (sent.message_id, sent.status)),
        _ => Err(SendError::permanent(
            "this provider cannot carry this channel",
        )),
    };
    if state.settings().notify.exit_after_send && result.is_ok() {
        tracing::error!(notification = %id, "ST_TEST_EXIT_AFTER_SEND: stopping before the outcome is recorded");
        std::process::exit(75);
    }
    Ok(Some(match result {
        Ok((provider_message_id, response)) => NotificationCommand::RecordSent {
            attempt,
            provider_message_id,
            response,
            at: Utc::now(),
        },
        Err(error) => failed(state, attempt, error),
    }))
}

fn attempt_command(attempt: u32, provider: &str) -> NotificationCommand {
    NotificationCommand::Attempt {
        attempt,
        provider: provider.into(),
        at: Utc::now(),
    }
}

fn failed(state: &AppState, attempt: u32, error: SendError) -> NotificationCommand {
    let now: DateTime<Utc> = Utc::now();
    NotificationCommand::RecordFailed {
        attempt,
        error: error.message,
        permanent: error.permanent,
        retry_at: if error.permanent {
            None
        } else {
            retry_at(attempt, now, state.settings().notify.retry_base_seconds)
        },
        at: now,
    }
}

/// `<notification id>@<host of ST_PUBLIC_URL>`.
pub fn message_id(id: Uuid, public_url: &str) -> String {
    let host = public_url
        .split("://")
        .nth(1)
        .unwrap_or(public_url)
        .split(['/', ':'])
        .next()
        .filter(|h| !h.is_empty())
        .unwrap_or("supporttracker.invalid");
    format!("{id}@{host}")
}

/// The message's files; the inner error names a file that is gone (a permanent failure), the
/// outer one is the database's.
async fn load_attachments(
    state: &AppState,
    tenant_id: Uuid,
    queued: &domain::notification::Queued,
) -> Result<Result<Vec<Attachment>, String>, String> {
    let mut files = Vec::new();
    for file in &queued.attachments {
        let bytes: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT content FROM asset_document_blobs WHERE tenant_id = $1 AND sha256 = $2",
        )
        .bind(tenant_id)
        .bind(&file.sha256)
        .fetch_optional(&state.pool)
        .await
        .map_err(|e| e.to_string())?;
        let Some(bytes) = bytes else {
            return Ok(Err(format!("the attachment {} is missing", file.file_name)));
        };
        files.push(Attachment {
            file_name: file.file_name.clone(),
            content_type: file.content_type.clone(),
            bytes,
        });
    }
    Ok(Ok(files))
}
