//! The notification operations the console and the API share: resend, test messages,
//! templates (with previews), the tenant's own providers, a contact's preferences. Each checks
//! its input whole (every field's problem at once) and appends nothing when it refuses.

use std::collections::BTreeMap;

use commands::{ConflictPolicy, EventMeta};
use domain::contact::{Contact, ContactCommand, NotificationPreferences};
use domain::identity::Email;
use domain::notification::{
    sms_number, Channel, Content, EmailProvider, Notification, Recipient, RecipientKind,
    SmsProvider, SECRET_MARK,
};
use domain::template::{Kind, Template};
use domain::tenant::{Tenant, TenantCommand};
use domain::ValidationError;
use uuid::Uuid;

use super::deliver::{provider, Source};
use super::email::SmtpSettings;
use super::queue::{queue, Draft, QueueOutcome};
use super::sms::{BodyFormat, GatewaySettings, Method, SettingsErrors, TwilioSettings};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn load_tenant(state: &AppState, tenant_id: Uuid) -> Result<Tenant, ApiError> {
    Ok(state
        .store
        .load::<Tenant>(tenant_id, &tenant_id.to_string())
        .await?
        .0)
}

/// A notification of the asker's tenant (404 for another tenant's id).
pub async fn load(state: &AppState, me: &Principal, id: Uuid) -> Result<Notification, ApiError> {
    let (notification, _) = state
        .store
        .load::<Notification>(me.tenant_id, &id.to_string())
        .await?;
    if notification.queued.is_some() {
        Ok(notification)
    } else {
        Err(ApiError::NotFound(format!("notification {id} not found")))
    }
}

/// How the log shows a message: its secret link hidden.
pub fn shown(content: &Content) -> Content {
    const HIDDEN: &str = "[link hidden]";
    Content {
        subject: content.subject.replace(SECRET_MARK, HIDDEN),
        text: content.text.replace(SECRET_MARK, HIDDEN),
        html: content.html.replace(SECRET_MARK, HIDDEN),
    }
}

/// Sends a message again: the same person, channel, values and link, worded with the
/// template as it is now. Returns the new notification's id.
pub async fn resend(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    id: Uuid,
) -> Result<Uuid, ApiError> {
    let original = load(state, me, id).await?;
    if !original.status.can_resend() {
        return Err(ApiError::Conflict(format!(
            "this message is {}; it can be sent again once it has an outcome",
            original.status.as_str()
        )));
    }
    let queued = original.queued.expect("loaded notifications are queued");
    if queued.recipient.address.is_empty() {
        return Err(ApiError::Conflict(
            "this message has no address to go to; add an email address or a cell phone to the person first"
                .into(),
        ));
    }
    let tenant = load_tenant(state, me.tenant_id).await?;
    let draft = Draft {
        tenant_id: me.tenant_id,
        kind: queued.kind,
        recipient: queued.recipient,
        cause: queued.cause,
        company_id: queued.company_id,
        work_order_id: queued.work_order_id,
        values: queued.values,
        link_secret: queued.link_secret,
        attachments: queued.attachments,
        resend_of: Some(id),
    };
    let new_id = meta.new_aggregate_id();
    match queue(state, &tenant, &draft, queued.channel, new_id, None, meta)
        .await
        .map_err(ApiError::internal)?
    {
        QueueOutcome::Queued(id) => Ok(id),
        QueueOutcome::Refused(_, reason) => Err(ApiError::Conflict(reason)),
        QueueOutcome::NotForChannel => Err(ApiError::Conflict(format!(
            "the \"{}\" template has no SMS wording any more; add one to send it by SMS",
            queued.kind.as_str()
        ))),
    }
}

/// Sends the `test` message to `to` on `channel` through the tenant's provider.
pub async fn send_test(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    channel: Channel,
    to: &str,
) -> Result<Uuid, ApiError> {
    let address = match channel {
        Channel::Email => Email::parse(to)
            .map(|e| e.as_str().to_owned())
            .map_err(|_| invalid("to", "must be an email address"))?,
        Channel::Sms => sms_number(to).ok_or_else(|| {
            invalid(
                "to",
                "must be a cell phone number in international form, such as +15550100199",
            )
        })?,
    };
    let tenant = load_tenant(state, me.tenant_id).await?;
    if let (None, _) = provider(state, me.tenant_id, &tenant, channel)
        .await
        .map_err(|e| ApiError::Conflict(format!("the provider's settings are unusable: {e}")))?
    {
        return Err(ApiError::Conflict(match channel {
            Channel::Email => "no SMTP server is set up: set one up first".into(),
            Channel::Sms => "no SMS provider is set up: set one up first".into(),
        }));
    }
    let draft = Draft {
        tenant_id: me.tenant_id,
        kind: Kind::Test,
        recipient: Recipient {
            kind: RecipientKind::Address,
            id: None,
            name: String::new(),
            address,
        },
        cause: None,
        company_id: None,
        work_order_id: None,
        values: BTreeMap::from([("organisation".to_string(), tenant.name.clone())]),
        link_secret: None,
        attachments: Vec::new(),
        resend_of: None,
    };
    let id = meta.new_aggregate_id();
    match queue(state, &tenant, &draft, channel, id, None, meta)
        .await
        .map_err(ApiError::internal)?
    {
        QueueOutcome::Queued(id) => Ok(id),
        QueueOutcome::Refused(_, reason) => Err(ApiError::Conflict(reason)),
        QueueOutcome::NotForChannel => Err(ApiError::Conflict(
            "the test template has no SMS wording; add one first".into(),
        )),
    }
}

fn invalid(field: &'static str, message: &str) -> ApiError {
    ApiError::Invalid(vec![ValidationError::new(field, message)])
}

/// Example values for previews: what a real message of the kind would hold.
pub fn sample_values(kind: Kind, organisation: &str) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for name in kind.placeholders() {
        let value = match *name {
            "organisation" => organisation,
            "company" => "Example Dental Ltd",
            "contact" | "name" => "Ann Example",
            "technician" => "Tom Technician",
            "work_order" => "#42",
            "title" => "Printer offline in reception",
            "priority" => "high",
            "status" => "in progress",
            "due" => "Resolution is due by 2026-11-23 17:00 CET.",
            "invoice" => "INV-0042",
            "amount" => "1,250.00 EUR",
            "due_date" => "2026-12-15",
            "received_on" => "2026-11-20",
            "balance" => "0.00 EUR",
            "days_overdue" => "14",
            "role" => "technician",
            _ => continue,
        };
        values.insert((*name).to_string(), value.to_string());
    }
    values
}

/// A template as a message of `kind` would look, with example values: the email's parts and
/// the SMS text (empty when the template has none). A refused template answers 422 naming
/// each field's problem.
pub fn preview(
    kind: Kind,
    template: &Template,
    organisation: &str,
    public_url: &str,
) -> Result<(Content, Option<String>), ApiError> {
    template.check(kind).map_err(ApiError::Invalid)?;
    let values = sample_values(kind, organisation);
    let show_link = |content: Content| {
        let link = format!("{public_url}/l/00000000-0000-0000-0000-000000000000/example");
        Content {
            subject: content.subject.replace(SECRET_MARK, &link),
            text: content.text.replace(SECRET_MARK, &link),
            html: content.html.replace(SECRET_MARK, &link),
        }
    };
    let email = match super::queue::render(template, kind, Channel::Email, &values) {
        Some(Ok(content)) => show_link(content),
        Some(Err(missing)) => return Err(missing_error(&missing)),
        None => Content::default(),
    };
    let sms = match super::queue::render(template, kind, Channel::Sms, &values) {
        Some(Ok(content)) => Some(show_link(content).text),
        Some(Err(missing)) => return Err(missing_error(&missing)),
        None => None,
    };
    Ok((email, sms))
}

fn missing_error(missing: &[String]) -> ApiError {
    ApiError::Rejected {
        status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        detail: format!(
            "the template needs values this kind of message never has: {}",
            missing
                .iter()
                .map(|m| format!("{{{m}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Saves the tenant's wording of `kind` (`None`: back to the shipped wording).
pub async fn set_template(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    kind: Kind,
    template: Option<Template>,
) -> Result<(), ApiError> {
    if let Some(t) = &template {
        t.check(kind).map_err(ApiError::Invalid)?;
    }
    state
        .store
        .execute::<Tenant>(
            &me.tenant_id.to_string(),
            TenantCommand::SetTemplate { kind, template },
            &(),
            meta,
            ConflictPolicy::RetryOnce,
        )
        .await?;
    Ok(())
}

/// The tenant's own SMTP server as a form gives it.
#[derive(Debug, Clone, Default)]
pub struct EmailProviderInput {
    /// `smtp://user@host:587?tls=starttls`; a password in it is moved to `password`.
    pub url: String,
    pub from: String,
    /// `None`: keep the stored password; `Some("")`: no password.
    pub password: Option<String>,
}

/// Sets (or with `None` removes) the tenant's own SMTP server.
pub async fn set_email_provider(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    input: Option<EmailProviderInput>,
) -> Result<(), ApiError> {
    let provider = match input {
        None => None,
        Some(input) => {
            let mut errors = Vec::new();
            let parsed = SmtpSettings::parse(input.url.trim());
            if let Err(message) = &parsed {
                errors.push(ValidationError::new("url", message.clone()));
            }
            if let Err(message) = super::config::check_mailbox(&input.from) {
                errors.push(ValidationError::new("from", message));
            }
            let Ok(mut settings) = parsed else {
                return Err(ApiError::Invalid(errors));
            };
            if !errors.is_empty() {
                return Err(ApiError::Invalid(errors));
            }
            let password = settings.password.take().or(input.password);
            let tenant = load_tenant(state, me.tenant_id).await?;
            let password_secret = match password {
                None => tenant
                    .email_provider
                    .as_ref()
                    .and_then(|p| p.password_secret),
                Some(p) if p.is_empty() => None,
                Some(p) => Some(seal(state, me, meta, "smtp_password", &p).await?),
            };
            Some(EmailProvider {
                url: settings.to_url(),
                from: input.from.trim().to_owned(),
                password_secret,
            })
        }
    };
    state
        .store
        .execute::<Tenant>(
            &me.tenant_id.to_string(),
            TenantCommand::SetEmailProvider { provider },
            &(),
            meta,
            ConflictPolicy::RetryOnce,
        )
        .await?;
    Ok(())
}

/// Seals a provider's secret for the tenant; returns the set's id.
async fn seal(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    field: &'static str,
    value: &str,
) -> Result<Uuid, ApiError> {
    let secret_id = Uuid::new_v5(&meta.command_id, field.as_bytes());
    state
        .settings()
        .vault
        .store(
            &state.pool,
            me.tenant_id,
            me.tenant_id,
            secret_id,
            &[(field, value)],
        )
        .await
        .map_err(ApiError::internal)?;
    Ok(secret_id)
}

/// The tenant's own SMS provider as a form gives it. Secrets `None`: keep the stored one.
#[derive(Debug, Clone)]
pub enum SmsProviderInput {
    Twilio {
        account_sid: String,
        auth_token: Option<String>,
        from: String,
        base_url: String,
    },
    Gateway {
        url: String,
        method: Method,
        body: BodyFormat,
        template: String,
        from: String,
        auth_header: Option<String>,
    },
}

fn settings_errors(errors: SettingsErrors) -> ApiError {
    ApiError::Invalid(
        errors
            .0
            .into_iter()
            .map(|e| ValidationError::new(e.field, e.message))
            .collect(),
    )
}

/// Sets (or with `None` removes) the tenant's own SMS provider.
pub async fn set_sms_provider(
    state: &AppState,
    me: &Principal,
    meta: &EventMeta,
    input: Option<SmsProviderInput>,
) -> Result<(), ApiError> {
    let tenant = load_tenant(state, me.tenant_id).await?;
    let stored_secret = match &tenant.sms_provider {
        Some(SmsProvider::Twilio { secret, .. }) => Some(*secret),
        Some(SmsProvider::Gateway { secret, .. }) => *secret,
        None => None,
    };
    let provider = match input {
        None => None,
        Some(SmsProviderInput::Twilio {
            account_sid,
            auth_token,
            from,
            base_url,
        }) => {
            let was_twilio = matches!(tenant.sms_provider, Some(SmsProvider::Twilio { .. }));
            let keep = auth_token.as_deref().is_none_or(str::is_empty) && was_twilio;
            let base_url = if base_url.trim().is_empty() {
                super::sms::DEFAULT_TWILIO_BASE_URL.to_owned()
            } else {
                base_url.trim().trim_end_matches('/').to_owned()
            };
            let settings = TwilioSettings {
                account_sid: account_sid.trim().to_owned(),
                // A kept token is checked as present.
                auth_token: if keep {
                    "kept".into()
                } else {
                    auth_token.clone().unwrap_or_default().trim().to_owned()
                },
                from: from.trim().to_owned(),
                base_url,
            };
            settings.check().map_err(settings_errors)?;
            let secret = match (keep, stored_secret) {
                (true, Some(secret)) => secret,
                _ => seal(state, me, meta, "sms_secret", &settings.auth_token).await?,
            };
            Some(SmsProvider::Twilio {
                account_sid: settings.account_sid,
                from: settings.from,
                base_url: settings.base_url,
                secret,
            })
        }
        Some(SmsProviderInput::Gateway {
            url,
            method,
            body,
            template,
            from,
            auth_header,
        }) => {
            let was_gateway = matches!(tenant.sms_provider, Some(SmsProvider::Gateway { .. }));
            let settings = GatewaySettings {
                url: url.trim().to_owned(),
                method,
                body,
                template,
                auth_header: auth_header.clone().filter(|h| !h.trim().is_empty()),
                from: from.trim().to_owned(),
            };
            settings.check().map_err(settings_errors)?;
            let secret = match &settings.auth_header {
                Some(header) => Some(seal(state, me, meta, "sms_secret", header).await?),
                None if auth_header.is_none() && was_gateway => stored_secret,
                None => None,
            };
            Some(SmsProvider::Gateway {
                url: settings.url,
                method: match settings.method {
                    Method::Get => "get".into(),
                    Method::Post => "post".into(),
                },
                body: match settings.body {
                    BodyFormat::Form => "form".into(),
                    BodyFormat::Json => "json".into(),
                },
                template: settings.template,
                from: settings.from,
                secret,
            })
        }
    };
    state
        .store
        .execute::<Tenant>(
            &me.tenant_id.to_string(),
            TenantCommand::SetSmsProvider { provider },
            &(),
            meta,
            ConflictPolicy::RetryOnce,
        )
        .await?;
    Ok(())
}

/// What the settings pages show of a channel's provider (never a secret).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProviderView {
    /// `tenant` (set in the console), `environment` (the deployment's) or `none`.
    pub source: &'static str,
    /// `smtp`, `twilio` or `gateway`.
    pub provider: Option<&'static str>,
    /// The SMTP URL without its password, Twilio's API base, or the gateway's URL.
    pub url: Option<String>,
    pub from: Option<String>,
    pub account_sid: Option<String>,
    /// A problem with the stored settings (for example a key that cannot open them).
    pub problem: Option<String>,
}

pub async fn provider_view(
    state: &AppState,
    tenant_id: Uuid,
    tenant: &Tenant,
    channel: Channel,
) -> ProviderView {
    use super::deliver::Provider;
    match provider(state, tenant_id, tenant, channel).await {
        Ok((found, source)) => {
            let source = match source {
                Source::Tenant => "tenant",
                Source::Environment => "environment",
                Source::None => "none",
            };
            let mut view = ProviderView {
                source,
                provider: found.as_ref().map(Provider::name),
                url: None,
                from: None,
                account_sid: None,
                problem: None,
            };
            match found {
                Some(Provider::Smtp { settings, from }) => {
                    view.url = Some(settings.redacted());
                    view.from = Some(from);
                }
                Some(Provider::Twilio(t)) => {
                    view.url = Some(t.base_url);
                    view.from = Some(t.from);
                    view.account_sid = Some(t.account_sid);
                }
                Some(Provider::Gateway(g)) => {
                    view.url = Some(g.url);
                    view.from = Some(g.from);
                }
                None => {}
            }
            view
        }
        Err(problem) => ProviderView {
            source: "tenant",
            provider: None,
            url: None,
            from: None,
            account_sid: None,
            problem: Some(problem),
        },
    }
}

/// Sets a contact's channels and opt-out; returns what is stored.
pub async fn set_contact_preferences(
    state: &AppState,
    meta: &EventMeta,
    contact_id: Uuid,
    preferences: NotificationPreferences,
) -> Result<NotificationPreferences, ApiError> {
    let done = state
        .store
        .execute::<Contact>(
            &contact_id.to_string(),
            ContactCommand::SetNotifications { preferences },
            &(),
            meta,
            ConflictPolicy::RetryOnce,
        )
        .await?;
    Ok(done.state.notifications)
}

/// A contact's preferences (404 for another tenant's contact).
pub async fn contact_preferences(
    state: &AppState,
    me: &Principal,
    contact_id: Uuid,
) -> Result<NotificationPreferences, ApiError> {
    let (contact, _) = state
        .store
        .load::<Contact>(me.tenant_id, &contact_id.to_string())
        .await?;
    if contact.exists {
        Ok(contact.notifications)
    } else {
        Err(ApiError::NotFound(format!(
            "contact {contact_id} not found"
        )))
    }
}
