//! The notifications' JSON API (issue 6): the delivery log (`/api/v1/notifications`, a message
//! as its recipient saw it with its events, resend, test messages), the message templates
//! (`/api/v1/notification-templates`, with previews) and the organisation's own providers
//! (`/api/v1/settings/notifications/{email,sms}`).
//!
//! Reading the log needs `ViewNotifications` (owners, admins, accountants); everything else
//! `ManageNotifications` (owners, admins). Every operation runs through `super::ops`, which the
//! console shares, and every refusal is a problem document; a 422 names each bad field. No
//! answer ever holds a password, an auth token or an auth header: the providers are shown as
//! `ops::provider_view` shows them.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use domain::authz::Action;
use domain::notification::{Channel, Notification, SmsProvider, Status};
use domain::template::{Kind, Template};
use domain::tenant::Tenant;
use domain::ValidationError;
use projections::notifications::{self as read, Filter, NotificationRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::ops::{self, EmailProviderInput, ProviderView, SmsProviderInput};
use super::sms::{BodyFormat, GatewaySettings, Method, TwilioSettings};
use crate::api::{command_meta, path_id, ApiJson, IdempotencyKey};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::openapi::{
    BadRequest, Conflict, Forbidden, InternalError, NotFound, PayloadTooLarge, Unauthorized,
    Unprocessable, UnsupportedMediaType,
};
use crate::AppState;

/// The projection the log reads.
pub(crate) const VIEWS: &[&str] = &[read::NAME];

/// The longest recipient search accepted.
const MAX_RECIPIENT_CHARS: usize = 200;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/notifications", get(list_notifications))
        .route("/api/v1/notifications/test", post(send_test_notification))
        .route("/api/v1/notifications/{id}", get(get_notification))
        .route(
            "/api/v1/notifications/{id}/resend",
            post(resend_notification),
        )
        .route("/api/v1/notification-templates", get(list_templates))
        .route(
            "/api/v1/notification-templates/{kind}",
            get(get_template).put(set_template).delete(reset_template),
        )
        .route(
            "/api/v1/notification-templates/{kind}/preview",
            post(preview_template),
        )
        .route("/api/v1/settings/notifications", get(get_settings))
        .route(
            "/api/v1/settings/notifications/email",
            put(set_email).delete(remove_email),
        )
        .route(
            "/api/v1/settings/notifications/sms",
            put(set_sms).delete(remove_sms),
        )
        .layer(DefaultBodyLimit::max(crate::api::BODY_LIMIT))
}

// ---------------------------------------------------------------------------------------------
// Shapes

// The values of `domain::notification::Status`, for the OpenAPI document.
/// Where a message is: `queued`, `sending` (handed over, no outcome yet), `sent`, `delivered`
/// and `undelivered` (the provider's report), `retrying` (another attempt follows at
/// `retry_at`), `failed` (given up), `skipped` (not sent on purpose: opted out, no address, no
/// provider), `unconfirmed` (the server stopped while handing it over: it may have gone out).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a description only
pub enum NotificationStatus {
    Queued,
    Sending,
    Sent,
    Delivered,
    Undelivered,
    Retrying,
    Failed,
    Skipped,
    Unconfirmed,
}

// The values of `domain::template::Kind`, for the OpenAPI document.
/// What a message is about (each kind has its own template and placeholders).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a description only
pub enum NotificationKind {
    WorkOrderCreated,
    WorkOrderAssigned,
    WorkOrderStatusChanged,
    InvoiceIssued,
    PaymentReceived,
    PaymentReminder,
    PasswordReset,
    Invitation,
    Test,
}

// The values of `domain::notification::Channel`, for the OpenAPI document.
/// How a message travels.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a description only
pub enum NotificationChannel {
    Email,
    Sms,
}

/// One message of the delivery log.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Notification)]
pub struct NotificationJson {
    id: Uuid,
    #[schema(value_type = NotificationKind)]
    kind: String,
    #[schema(value_type = NotificationChannel)]
    channel: String,
    /// `contact`, `user` or `address` (an address typed in, as for a test message).
    #[schema(example = "contact")]
    recipient_kind: String,
    /// The contact or person, when the recipient is one.
    recipient_id: Option<Uuid>,
    #[schema(example = "Ann Example")]
    recipient_name: String,
    /// The email address or the phone number (E.164).
    #[schema(example = "ann@example.com")]
    address: String,
    company_id: Option<Uuid>,
    work_order_id: Option<Uuid>,
    /// The email's subject, or the start of the SMS.
    subject: String,
    #[schema(value_type = NotificationStatus)]
    status: String,
    attempts: i32,
    /// `smtp`, `twilio` or `gateway`, once an attempt was made.
    provider: Option<String>,
    provider_message_id: Option<String>,
    last_error: Option<String>,
    /// The provider's last delivery report (SMS), as it said it.
    delivery: Option<String>,
    retry_at: Option<DateTime<Utc>>,
    queued_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    /// The message this one sends again.
    resend_of: Option<Uuid>,
    /// The message as its recipient saw it, secret links hidden: only when one message is read.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = ContentJson, required = false)]
    content: Option<ContentJson>,
    /// The message's events from the log, oldest first: only when one message is read.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    events: Option<Vec<NotificationEventJson>>,
}

impl From<NotificationRow> for NotificationJson {
    fn from(row: NotificationRow) -> Self {
        Self {
            id: row.id,
            kind: row.kind,
            channel: row.channel,
            recipient_kind: row.recipient_kind,
            recipient_id: row.recipient_id,
            recipient_name: row.recipient_name,
            address: row.address,
            company_id: row.company_id,
            work_order_id: row.work_order_id,
            subject: hidden(&row.subject),
            status: row.status,
            attempts: row.attempts,
            provider: row.provider,
            provider_message_id: row.provider_message_id,
            last_error: row.last_error,
            delivery: row.delivery,
            retry_at: row.retry_at,
            queued_at: row.queued_at,
            sent_at: row.sent_at,
            updated_at: row.updated_at,
            resend_of: row.resend_of,
            content: None,
            events: None,
        }
    }
}

impl NotificationJson {
    /// From the notification's own events, when the read model has not caught up yet.
    fn from_state(id: Uuid, n: &Notification) -> Option<Self> {
        let q = n.queued.as_ref()?;
        let content = &q.content;
        let subject = if content.subject.is_empty() {
            content.text.chars().take(80).collect()
        } else {
            content.subject.clone()
        };
        Some(Self {
            id,
            kind: q.kind.as_str().to_owned(),
            channel: q.channel.as_str().to_owned(),
            recipient_kind: serde_json::to_value(q.recipient.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            recipient_id: q.recipient.id,
            recipient_name: q.recipient.name.clone(),
            address: q.recipient.address.clone(),
            company_id: q.company_id,
            work_order_id: q.work_order_id,
            subject: hidden(&subject),
            status: n.status.as_str().to_owned(),
            attempts: n.attempts as i32,
            provider: None,
            provider_message_id: n.provider_message_id.clone(),
            last_error: n.last_error.clone(),
            delivery: n.delivery.clone(),
            retry_at: n.retry_at,
            queued_at: q.queued_at,
            sent_at: None,
            updated_at: q.queued_at,
            resend_of: q.resend_of,
            content: None,
            events: None,
        })
    }
}

/// Text of the log with its secret link hidden, as `ops::shown` hides it.
pub(crate) fn hidden(text: &str) -> String {
    ops::shown(&domain::notification::Content {
        subject: text.to_owned(),
        ..Default::default()
    })
    .subject
}

/// A message's parts as its recipient saw them, secret links shown as `[link hidden]`. An SMS
/// has its text in `text` (`subject` and `html` empty).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NotificationContent)]
pub struct ContentJson {
    subject: String,
    text: String,
    /// The HTML part (empty: text only). Untrusted markup: never insert it into a page as is.
    html: String,
}

/// One event of a message.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NotificationEvent)]
pub struct NotificationEventJson {
    #[serde(rename = "type")]
    #[schema(example = "NotificationSent")]
    event_type: String,
    recorded_at: DateTime<Utc>,
    /// What happened, in one sentence.
    #[schema(example = "Sent (<0b5c3f8e@mail.example.com>)")]
    summary: String,
}

/// A page of the delivery log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationList {
    notifications: Vec<NotificationJson>,
    /// Pass as `before` for the next (older) page; null on the last page. Opaque.
    next: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// queued, sending, sent, delivered, undelivered, retrying, failed, skipped or unconfirmed.
    #[param(value_type = Option<NotificationStatus>)]
    status: Option<String>,
    /// A kind of message (`work_order_created`, `test`, ...).
    #[param(value_type = Option<NotificationKind>)]
    kind: Option<String>,
    /// `email` or `sms`.
    #[param(value_type = Option<NotificationChannel>)]
    channel: Option<String>,
    /// Part of the recipient's address or name (case-insensitive).
    recipient: Option<String>,
    #[param(value_type = Option<Uuid>)]
    company_id: Option<String>,
    #[param(value_type = Option<Uuid>)]
    work_order_id: Option<String>,
    /// The `next` of the previous page.
    before: Option<String>,
    /// 1 to 500 (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

/// A test message: `to` is an email address or a cell phone number in international form.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TestMessage, example = json!({"channel": "email", "to": "me@example.com"}))]
pub struct TestBody {
    #[serde(default)]
    #[schema(value_type = NotificationChannel, required = true)]
    channel: String,
    #[serde(default)]
    #[schema(required = true, example = "me@example.com")]
    to: String,
}

/// The wording of one kind of message. Placeholders are written `{name}` (the kind's
/// `placeholders`), a literal brace `{{` or `}}`. `subject` and `text` are required; an empty
/// `html` sends a text-only email, an empty `sms` never sends this kind by SMS.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NotificationTemplate, example = json!({
    "subject": "Work order {work_order} received: {title}",
    "text": "Hello {contact},\n\nWe have received \"{title}\". Follow it here: {view_link}\n\n{organisation}",
    "html": "",
    "sms": "{organisation}: work order {work_order} received. {view_link}"
}))]
pub struct TemplateJson {
    #[serde(default)]
    #[schema(required = true)]
    subject: String,
    #[serde(default)]
    #[schema(required = true)]
    text: String,
    #[serde(default)]
    html: String,
    #[serde(default)]
    sms: String,
}

impl From<Template> for TemplateJson {
    fn from(t: Template) -> Self {
        Self {
            subject: t.subject,
            text: t.text,
            html: t.html,
            sms: t.sms,
        }
    }
}

impl From<TemplateJson> for Template {
    fn from(t: TemplateJson) -> Self {
        Self {
            subject: t.subject,
            text: t.text,
            html: t.html,
            sms: t.sms,
        }
    }
}

/// A kind of message and the organisation's wording of it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NotificationTemplateEntry)]
pub struct TemplateEntry {
    #[schema(value_type = NotificationKind)]
    kind: String,
    /// The placeholders this kind can fill, without braces.
    #[schema(example = json!(["organisation", "company", "work_order"]))]
    placeholders: Vec<String>,
    /// False: the shipped wording is used.
    customised: bool,
    template: TemplateJson,
}

/// Every kind of message with its wording.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NotificationTemplateList)]
pub struct TemplateList {
    templates: Vec<TemplateEntry>,
}

/// The email's parts as sent (links shown as an example link).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PreviewEmail)]
pub struct PreviewEmailJson {
    subject: String,
    text: String,
    html: String,
}

/// A template as a message of its kind would read, with example values.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NotificationPreview)]
pub struct PreviewJson {
    email: PreviewEmailJson,
    /// The SMS text; null when the template has no SMS wording.
    sms: Option<String>,
}

/// What sends a channel's messages. Secrets (a password, an auth token, an auth header) are
/// never shown.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NotificationProvider)]
pub struct ProviderJson {
    /// `tenant` (the organisation's own), `environment` (the deployment's) or `none`.
    #[schema(example = "tenant")]
    source: String,
    /// `smtp`, `twilio` or `gateway`; null when nothing is set up.
    provider: Option<String>,
    /// The SMTP URL without its password, Twilio's API base, or the gateway's URL.
    #[schema(example = "smtp://mailer@mail.example.com:587?tls=starttls")]
    url: Option<String>,
    #[schema(example = "Acme IT <support@example.com>")]
    from: Option<String>,
    account_sid: Option<String>,
    /// The organisation's own gateway: `get` or `post`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    method: Option<String>,
    /// The organisation's own gateway: `form` or `json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    body: Option<String>,
    /// The organisation's own gateway: the request template.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    template: Option<String>,
    /// A problem with the stored settings (for example a key that cannot open them).
    problem: Option<String>,
}

impl ProviderJson {
    fn of(view: ProviderView) -> Self {
        Self {
            source: view.source.to_owned(),
            provider: view.provider.map(str::to_owned),
            url: view.url,
            from: view.from,
            account_sid: view.account_sid,
            method: None,
            body: None,
            template: None,
            problem: view.problem,
        }
    }
}

/// The providers of both channels.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NotificationSettings)]
pub struct SettingsJson {
    email: ProviderJson,
    sms: ProviderJson,
}

/// The organisation's own SMTP server.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EmailProviderSettings, example = json!({
    "url": "smtp://mailer@mail.example.com:587?tls=starttls",
    "from": "Acme IT <support@example.com>",
    "password": "s3cret"
}))]
pub struct EmailBody {
    /// `smtp://[user@]host[:port][?tls=starttls|tls|none]` or `smtps://...`.
    #[serde(default)]
    #[schema(required = true)]
    url: String,
    /// The sender: an address, or a name and an address.
    #[serde(default)]
    #[schema(required = true)]
    from: String,
    /// Absent or null: keep the stored password; `""`: no password. Never shown again.
    #[serde(default)]
    #[schema(required = false)]
    password: Option<String>,
}

/// The organisation's own SMS provider: Twilio (`account_sid`, `auth_token`, `from`,
/// `base_url`) or a generic HTTP gateway (`url`, `method`, `body`, `template`, `auth_header`,
/// `from`). A secret left out keeps the stored one (of the same provider).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SmsProviderSettings, example = json!({
    "provider": "twilio",
    "account_sid": "AC0123456789abcdef0123456789abcdef",
    "auth_token": "0123456789abcdef0123456789abcdef",
    "from": "+15550100199"
}))]
pub struct SmsBody {
    /// `twilio` or `gateway`.
    #[serde(default)]
    #[schema(required = true, example = "twilio")]
    provider: Option<String>,
    /// Twilio: `AC` and 32 hexadecimal digits.
    account_sid: Option<String>,
    /// Twilio: absent keeps the stored token.
    auth_token: Option<String>,
    /// The sender number (E.164) or name.
    from: Option<String>,
    /// Twilio: the API's base (default `https://api.twilio.com`).
    base_url: Option<String>,
    /// Gateway: the http(s) URL it is called at.
    url: Option<String>,
    /// Gateway: `get` or `post` (default).
    method: Option<String>,
    /// Gateway: `form` (default) or `json`.
    body: Option<String>,
    /// Gateway: the body (GET: the query string) with `{to}`, `{from}`, `{body}`, `{id}`.
    template: Option<String>,
    /// Gateway: one header line such as `Authorization: Bearer xyz`; absent keeps the
    /// stored one, `""` sends none.
    auth_header: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Shared with the console: the log's filter and its cursor

/// The filter's values as typed (query parameters).
#[derive(Debug, Clone, Default)]
pub(crate) struct FilterInput<'a> {
    pub status: &'a str,
    pub kind: &'a str,
    pub channel: &'a str,
    pub recipient: &'a str,
    pub company_id: &'a str,
    pub work_order_id: &'a str,
    pub before: &'a str,
}

/// The read model's filter, or every bad value named by its field.
pub(crate) fn parse_filter(input: &FilterInput) -> Result<Filter, Vec<ValidationError>> {
    let mut errors = Vec::new();
    let mut filter = Filter::default();
    let text = |s: &str| Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned);
    if let Some(status) = text(input.status) {
        match Status::parse(&status) {
            Some(s) => filter.status = Some(s),
            None => errors.push(ValidationError::new(
                "status",
                format!(
                    "must be one of {}",
                    Status::ALL.map(Status::as_str).join(", ")
                ),
            )),
        }
    }
    if let Some(kind) = text(input.kind) {
        match Kind::parse(&kind) {
            Some(k) => filter.kind = Some(k.as_str().to_owned()),
            None => errors.push(ValidationError::new(
                "kind",
                format!("must be one of {}", Kind::ALL.map(Kind::as_str).join(", ")),
            )),
        }
    }
    if let Some(channel) = text(input.channel) {
        match Channel::parse(&channel) {
            Some(c) => filter.channel = Some(c.as_str().to_owned()),
            None => errors.push(ValidationError::new("channel", "must be email or sms")),
        }
    }
    if let Some(recipient) = text(input.recipient) {
        if recipient.chars().count() > MAX_RECIPIENT_CHARS || recipient.contains('\0') {
            errors.push(ValidationError::new(
                "recipient",
                format!("must be at most {MAX_RECIPIENT_CHARS} characters of text"),
            ));
        } else {
            filter.recipient = Some(recipient);
        }
    }
    for (field, value, slot) in [
        ("company_id", input.company_id, &mut filter.company_id),
        (
            "work_order_id",
            input.work_order_id,
            &mut filter.work_order_id,
        ),
    ] {
        if let Some(raw) = text(value) {
            match Uuid::try_parse(&raw) {
                Ok(id) => *slot = Some(id),
                Err(_) => errors.push(ValidationError::new(field, "must be an id (a UUID)")),
            }
        }
    }
    if let Some(raw) = text(input.before) {
        match decode_cursor(&raw) {
            Some(cursor) => filter.before = Some(cursor),
            None => errors.push(ValidationError::new(
                "before",
                "must be the `next` of a previous page",
            )),
        }
    }
    if errors.is_empty() {
        Ok(filter)
    } else {
        Err(errors)
    }
}

/// The cursor of the page after `row`: `<microseconds>.<id>`, safe in a URL.
pub(crate) fn cursor_of(row: &NotificationRow) -> String {
    format!("{}.{}", row.queued_at.timestamp_micros(), row.id.simple())
}

pub(crate) fn decode_cursor(text: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = text.split_once('.')?;
    if id.len() != 32 {
        return None;
    }
    Some((
        DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        Uuid::try_parse(id).ok()?,
    ))
}

/// A notification of the asker's tenant as the API shows it, with its content and events:
/// the read model's row (waiting a little for it to catch up), else its own events.
pub(crate) async fn notification_detail(
    state: &AppState,
    me: &Principal,
    id: Uuid,
) -> Result<NotificationJson, ApiError> {
    let (notification, version) = state
        .store
        .load::<Notification>(me.tenant_id, &id.to_string())
        .await?;
    let Some(queued) = &notification.queued else {
        return Err(ApiError::NotFound(format!("notification {id} not found")));
    };
    let mut json = row_or_state(state, me, id, &notification, version).await?;
    let shown = ops::shown(&queued.content);
    json.content = Some(ContentJson {
        subject: shown.subject,
        text: shown.text,
        html: shown.html,
    });
    let items = projections::history::for_aggregate(
        &state.pool,
        me.tenant_id,
        "notification",
        &id.to_string(),
        1000,
    )
    .await?;
    json.events = Some(
        items
            .into_iter()
            .map(|item| NotificationEventJson {
                summary: projections::history::summary(
                    "notification",
                    &item.event_type,
                    &item.payload,
                ),
                event_type: item.event_type,
                recorded_at: item.recorded_at,
            })
            .collect(),
    );
    Ok(json)
}

async fn row_or_state(
    state: &AppState,
    me: &Principal,
    id: Uuid,
    notification: &Notification,
    version: usize,
) -> Result<NotificationJson, ApiError> {
    state
        .read_your_writes(VIEWS, "notification", &id.to_string(), version)
        .await;
    match read::get(&state.pool, me.tenant_id, id).await? {
        Some(row) => Ok(row.into()),
        None => NotificationJson::from_state(id, notification)
            .ok_or_else(|| ApiError::NotFound(format!("notification {id} not found"))),
    }
}

/// A just-queued notification as the API shows it (its row once the log shows it).
async fn queued_json(
    state: &AppState,
    me: &Principal,
    id: Uuid,
) -> Result<NotificationJson, ApiError> {
    let notification = ops::load(state, me, id).await?;
    row_or_state(state, me, id, &notification, 1).await
}

/// The kind of a path (404 for a kind that does not exist).
fn path_kind(path: Result<Path<String>, PathRejection>) -> Result<Kind, ApiError> {
    let raw = path.map(|Path(raw)| raw).unwrap_or_default();
    Kind::parse(&raw).ok_or_else(|| ApiError::NotFound(format!("no kind of message {raw:?}")))
}

fn entry(tenant: &Tenant, kind: Kind) -> TemplateEntry {
    TemplateEntry {
        kind: kind.as_str().to_owned(),
        placeholders: kind
            .placeholders()
            .iter()
            .map(|p| (*p).to_owned())
            .collect(),
        customised: tenant.templates.contains_key(&kind),
        template: tenant.template(kind).into(),
    }
}

/// Both channels' providers as the API shows them.
pub(crate) async fn settings_json(
    state: &AppState,
    tenant_id: Uuid,
) -> Result<SettingsJson, ApiError> {
    let tenant = ops::load_tenant(state, tenant_id).await?;
    let email = ops::provider_view(state, tenant_id, &tenant, Channel::Email).await;
    let sms_view = ops::provider_view(state, tenant_id, &tenant, Channel::Sms).await;
    let mut sms = ProviderJson::of(sms_view);
    if let Some(SmsProvider::Gateway {
        method,
        body,
        template,
        ..
    }) = &tenant.sms_provider
    {
        if sms.source == "tenant" {
            sms.method = Some(method.clone());
            sms.body = Some(body.clone());
            sms.template = Some(template.clone());
        }
    }
    Ok(SettingsJson {
        email: ProviderJson::of(email),
        sms,
    })
}

/// `get`/`post` as typed (any case).
pub(crate) fn parse_method(text: &str) -> Option<Method> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "post" => Some(Method::Post),
        "get" => Some(Method::Get),
        _ => None,
    }
}

/// `form`/`json` as typed (any case).
pub(crate) fn parse_body_format(text: &str) -> Option<BodyFormat> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "form" => Some(BodyFormat::Form),
        "json" => Some(BodyFormat::Json),
        _ => None,
    }
}

/// The SMS body as the operation's input, or every problem with it (its shape and, then, the
/// settings themselves) named by field.
fn sms_input(body: SmsBody) -> Result<SmsProviderInput, ApiError> {
    let mut errors = Vec::new();
    let not_for = |errors: &mut Vec<ValidationError>, fields: &[(&'static str, bool)], who| {
        for (field, given) in fields {
            if *given {
                errors.push(ValidationError::new(
                    field,
                    format!("is not a setting of {who}"),
                ));
            }
        }
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    match body.provider.as_deref().map(str::trim) {
        Some("twilio") => {
            not_for(
                &mut errors,
                &[
                    ("url", body.url.is_some()),
                    ("method", body.method.is_some()),
                    ("body", body.body.is_some()),
                    ("template", body.template.is_some()),
                    ("auth_header", body.auth_header.is_some()),
                ],
                "Twilio",
            );
            let input = SmsProviderInput::Twilio {
                account_sid: text(&body.account_sid),
                auth_token: body.auth_token.clone(),
                from: text(&body.from),
                base_url: text(&body.base_url),
            };
            if errors.is_empty() {
                return Ok(input);
            }
            let check = TwilioSettings {
                account_sid: text(&body.account_sid).trim().to_owned(),
                auth_token: body.auth_token.clone().unwrap_or_else(|| "kept".into()),
                from: text(&body.from).trim().to_owned(),
                base_url: body
                    .base_url
                    .clone()
                    .filter(|u| !u.trim().is_empty())
                    .unwrap_or_else(|| super::sms::DEFAULT_TWILIO_BASE_URL.into()),
            };
            if let Err(e) = check.check() {
                errors.extend(
                    e.0.into_iter()
                        .map(|e| ValidationError::new(e.field, e.message)),
                );
            }
        }
        Some("gateway") => {
            not_for(
                &mut errors,
                &[
                    ("account_sid", body.account_sid.is_some()),
                    ("auth_token", body.auth_token.is_some()),
                    ("base_url", body.base_url.is_some()),
                ],
                "a gateway",
            );
            let method = parse_method(&text(&body.method));
            if method.is_none() {
                errors.push(ValidationError::new("method", "must be get or post"));
            }
            let format = parse_body_format(&text(&body.body));
            if format.is_none() {
                errors.push(ValidationError::new("body", "must be form or json"));
            }
            let input = SmsProviderInput::Gateway {
                url: text(&body.url),
                method: method.unwrap_or_default(),
                body: format.unwrap_or_default(),
                template: text(&body.template),
                from: text(&body.from),
                auth_header: body.auth_header.clone(),
            };
            if errors.is_empty() {
                return Ok(input);
            }
            let check = GatewaySettings {
                url: text(&body.url).trim().to_owned(),
                method: method.unwrap_or_default(),
                body: format.unwrap_or_default(),
                template: text(&body.template),
                auth_header: body.auth_header.clone().filter(|h| !h.trim().is_empty()),
                from: text(&body.from).trim().to_owned(),
            };
            if let Err(e) = check.check() {
                errors.extend(
                    e.0.into_iter()
                        .filter(|e| !(e.field == "method" && method.is_none()))
                        .map(|e| ValidationError::new(e.field, e.message)),
                );
            }
        }
        _ => errors.push(ValidationError::new(
            "provider",
            "must be twilio or gateway",
        )),
    }
    Err(ApiError::Invalid(errors))
}

// ---------------------------------------------------------------------------------------------
// Handlers

fn answer<T: Serialize>(status: StatusCode, outcome: Result<T, ApiError>) -> Response {
    match outcome {
        Ok(json) => (status, Json(json)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// The delivery log, newest first, filtered, keyset paged.
#[utoipa::path(
    get,
    path = "/api/v1/notifications",
    tag = "notifications",
    operation_id = "listNotifications",
    params(ListParams),
    responses(
        (status = 200, description = "A page of the delivery log", body = NotificationList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn list_notifications(
    State(state): State<AppState>,
    me: Principal,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewNotifications) {
        return refused.into_response();
    }
    let outcome = async {
        let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let s = |v: &Option<String>| v.as_deref().unwrap_or_default().to_owned();
        let (status, kind, channel, recipient, company, order, before) = (
            s(&p.status),
            s(&p.kind),
            s(&p.channel),
            s(&p.recipient),
            s(&p.company_id),
            s(&p.work_order_id),
            s(&p.before),
        );
        let parsed = parse_filter(&FilterInput {
            status: &status,
            kind: &kind,
            channel: &channel,
            recipient: &recipient,
            company_id: &company,
            work_order_id: &order,
            before: &before,
        });
        let mut errors = parsed.as_ref().err().cloned().unwrap_or_default();
        let limit = match p.limit.as_deref().map(str::trim) {
            None | Some("") => 100,
            Some(text) => match text.parse::<i64>() {
                Ok(n) if (1..=500).contains(&n) => n,
                _ => {
                    errors.push(ValidationError::new("limit", "must be from 1 to 500"));
                    100
                }
            },
        };
        let filter = match parsed {
            Ok(filter) if errors.is_empty() => filter,
            _ => return Err(ApiError::Invalid(errors)),
        };
        let mut rows = read::list(&state.pool, me.tenant_id, &filter, limit + 1).await?;
        let next = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(cursor_of)
        } else {
            None
        };
        Ok(NotificationList {
            notifications: rows.into_iter().map(NotificationJson::from).collect(),
            next,
        })
    };
    answer(StatusCode::OK, outcome.await)
}

/// One message: its row of the log, what the recipient saw (links hidden) and its events.
#[utoipa::path(
    get,
    path = "/api/v1/notifications/{id}",
    tag = "notifications",
    operation_id = "getNotification",
    params(("id" = Uuid, Path, description = "The notification's id")),
    responses(
        (status = 200, description = "The notification with `content` and `events`", body = NotificationJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn get_notification(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewNotifications) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "notification")?;
        notification_detail(&state, &me, id).await
    };
    answer(StatusCode::OK, outcome.await)
}

/// Send a message again: the same person, channel and values, worded with the template as it
/// is now. Only a message with an outcome (sent, delivered, undelivered, failed, skipped,
/// unconfirmed) can be sent again (409 otherwise). With an `Idempotency-Key`, a retried
/// request sends nothing more and answers with the same new message.
#[utoipa::path(
    post,
    path = "/api/v1/notifications/{id}/resend",
    tag = "notifications",
    operation_id = "resendNotification",
    params(("id" = Uuid, Path, description = "The notification's id"), IdempotencyKey),
    responses(
        (status = 201, description = "The new message, queued", body = NotificationJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn resend_notification(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageNotifications) {
        return refused.into_response();
    }
    let outcome = async {
        let id = path_id(path, "notification")?;
        let meta = command_meta(&me, &headers)?;
        let new_id = ops::resend(&state, &me, &meta, id).await?;
        queued_json(&state, &me, new_id).await
    };
    answer(StatusCode::CREATED, outcome.await)
}

/// Queue the test message to an address through the organisation's provider (409 when the
/// channel has none). The delivery log shows what became of it.
#[utoipa::path(
    post,
    path = "/api/v1/notifications/test",
    tag = "notifications",
    operation_id = "sendTestNotification",
    params(IdempotencyKey),
    request_body(content = TestBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The test message, queued", body = NotificationJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn send_test_notification(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    body: Result<ApiJson<TestBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageNotifications) {
        return refused.into_response();
    }
    let outcome = async {
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        let Some(channel) = Channel::parse(&body.channel) else {
            let mut errors = vec![ValidationError::new("channel", "must be email or sms")];
            if body.to.trim().is_empty() {
                errors.push(ValidationError::new("to", "must not be empty"));
            }
            return Err(ApiError::Invalid(errors));
        };
        let id = ops::send_test(&state, &me, &meta, channel, &body.to).await?;
        queued_json(&state, &me, id).await
    };
    answer(StatusCode::CREATED, outcome.await)
}

/// Every kind of message with its placeholders and the organisation's wording.
#[utoipa::path(
    get,
    path = "/api/v1/notification-templates",
    tag = "notifications",
    operation_id = "listNotificationTemplates",
    responses(
        (status = 200, description = "Every kind of message", body = TemplateList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn list_templates(State(state): State<AppState>, me: Principal) -> Response {
    if let Err(refused) = me.require(Action::ManageNotifications) {
        return refused.into_response();
    }
    let outcome = async {
        let tenant = ops::load_tenant(&state, me.tenant_id).await?;
        Ok(TemplateList {
            templates: Kind::ALL.iter().map(|k| entry(&tenant, *k)).collect(),
        })
    };
    answer(StatusCode::OK, outcome.await)
}

/// One kind of message and its wording.
#[utoipa::path(
    get,
    path = "/api/v1/notification-templates/{kind}",
    tag = "notifications",
    operation_id = "getNotificationTemplate",
    params(("kind" = NotificationKind, Path, description = "The kind of message")),
    responses(
        (status = 200, description = "The kind's wording", body = TemplateEntry),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn get_template(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageNotifications) {
        return refused.into_response();
    }
    let outcome = async {
        let kind = path_kind(path)?;
        let tenant = ops::load_tenant(&state, me.tenant_id).await?;
        Ok(entry(&tenant, kind))
    };
    answer(StatusCode::OK, outcome.await)
}

/// Replace the organisation's wording of a kind of message. Every part is checked against the
/// kind's placeholders; every problem is reported at once.
#[utoipa::path(
    put,
    path = "/api/v1/notification-templates/{kind}",
    tag = "notifications",
    operation_id = "setNotificationTemplate",
    params(("kind" = NotificationKind, Path, description = "The kind of message"), IdempotencyKey),
    request_body(content = TemplateJson, content_type = "application/json"),
    responses(
        (status = 200, description = "The kind's wording after the change", body = TemplateEntry),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn set_template(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<ApiJson<TemplateJson>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageNotifications) {
        return refused.into_response();
    }
    let outcome = async {
        let kind = path_kind(path)?;
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        ops::set_template(&state, &me, &meta, kind, Some(body.into())).await?;
        let tenant = ops::load_tenant(&state, me.tenant_id).await?;
        Ok(entry(&tenant, kind))
    };
    answer(StatusCode::OK, outcome.await)
}

/// Go back to the shipped wording of a kind of message.
#[utoipa::path(
    delete,
    path = "/api/v1/notification-templates/{kind}",
    tag = "notifications",
    operation_id = "resetNotificationTemplate",
    params(("kind" = NotificationKind, Path, description = "The kind of message"), IdempotencyKey),
    responses(
        (status = 200, description = "The kind's (shipped) wording", body = TemplateEntry),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn reset_template(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageNotifications) {
        return refused.into_response();
    }
    let outcome = async {
        let kind = path_kind(path)?;
        let meta = command_meta(&me, &headers)?;
        ops::set_template(&state, &me, &meta, kind, None).await?;
        let tenant = ops::load_tenant(&state, me.tenant_id).await?;
        Ok(entry(&tenant, kind))
    };
    answer(StatusCode::OK, outcome.await)
}

/// How a template would read as a message of its kind, with example values. Saves nothing.
#[utoipa::path(
    post,
    path = "/api/v1/notification-templates/{kind}/preview",
    tag = "notifications",
    operation_id = "previewNotificationTemplate",
    params(("kind" = NotificationKind, Path, description = "The kind of message")),
    request_body(content = TemplateJson, content_type = "application/json"),
    responses(
        (status = 200, description = "The email and the SMS", body = PreviewJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn preview_template(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<String>, PathRejection>,
    body: Result<ApiJson<TemplateJson>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageNotifications) {
        return refused.into_response();
    }
    let outcome = async {
        let kind = path_kind(path)?;
        let ApiJson(body) = body?;
        let tenant = ops::load_tenant(&state, me.tenant_id).await?;
        let (email, sms) = ops::preview(
            kind,
            &body.into(),
            &tenant.name,
            &state.settings().public_url,
        )?;
        Ok(PreviewJson {
            email: PreviewEmailJson {
                subject: email.subject,
                text: email.text,
                html: email.html,
            },
            sms,
        })
    };
    answer(StatusCode::OK, outcome.await)
}

/// Which providers send the organisation's email and SMS (never a secret).
#[utoipa::path(
    get,
    path = "/api/v1/settings/notifications",
    tag = "notifications",
    operation_id = "getNotificationSettings",
    responses(
        (status = 200, description = "The providers", body = SettingsJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn get_settings(State(state): State<AppState>, me: Principal) -> Response {
    if let Err(refused) = me.require(Action::ManageNotifications) {
        return refused.into_response();
    }
    answer(StatusCode::OK, settings_json(&state, me.tenant_id).await)
}

/// Send the organisation's email through its own SMTP server. The password is sealed and never
/// shown again; left out, the stored one is kept.
#[utoipa::path(
    put,
    path = "/api/v1/settings/notifications/email",
    tag = "notifications",
    operation_id = "setEmailProvider",
    params(IdempotencyKey),
    request_body(content = EmailBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The providers after the change", body = SettingsJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn set_email(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    body: Result<ApiJson<EmailBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageNotifications) {
        return refused.into_response();
    }
    let outcome = async {
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        let input = EmailProviderInput {
            url: body.url,
            from: body.from,
            password: body.password,
        };
        ops::set_email_provider(&state, &me, &meta, Some(input)).await?;
        settings_json(&state, me.tenant_id).await
    };
    answer(StatusCode::OK, outcome.await)
}

/// Stop using the organisation's own SMTP server: the deployment's (if any) sends its email.
#[utoipa::path(
    delete,
    path = "/api/v1/settings/notifications/email",
    tag = "notifications",
    operation_id = "removeEmailProvider",
    params(IdempotencyKey),
    responses(
        (status = 200, description = "The providers after the change", body = SettingsJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn remove_email(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = me.require(Action::ManageNotifications) {
        return refused.into_response();
    }
    let outcome = async {
        let meta = command_meta(&me, &headers)?;
        ops::set_email_provider(&state, &me, &meta, None).await?;
        settings_json(&state, me.tenant_id).await
    };
    answer(StatusCode::OK, outcome.await)
}

/// Send the organisation's SMS through its own Twilio account or HTTP gateway. Secrets are
/// sealed and never shown again; left out, the stored one (of the same provider) is kept.
#[utoipa::path(
    put,
    path = "/api/v1/settings/notifications/sms",
    tag = "notifications",
    operation_id = "setSmsProvider",
    params(IdempotencyKey),
    request_body(content = SmsBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The providers after the change", body = SettingsJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn set_sms(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
    body: Result<ApiJson<SmsBody>, ApiError>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageNotifications) {
        return refused.into_response();
    }
    let outcome = async {
        let ApiJson(body) = body?;
        let meta = command_meta(&me, &headers)?;
        let input = sms_input(body)?;
        ops::set_sms_provider(&state, &me, &meta, Some(input)).await?;
        settings_json(&state, me.tenant_id).await
    };
    answer(StatusCode::OK, outcome.await)
}

/// Stop using the organisation's own SMS provider: the deployment's (if any) sends its SMS.
#[utoipa::path(
    delete,
    path = "/api/v1/settings/notifications/sms",
    tag = "notifications",
    operation_id = "removeSmsProvider",
    params(IdempotencyKey),
    responses(
        (status = 200, description = "The providers after the change", body = SettingsJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 500, response = InternalError),
    ),
    security(("bearer" = [])),
)]
pub async fn remove_sms(
    State(state): State<AppState>,
    me: Principal,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = me.require(Action::ManageNotifications) {
        return refused.into_response();
    }
    let outcome = async {
        let meta = command_meta(&me, &headers)?;
        ops::set_sms_provider(&state, &me, &meta, None).await?;
        settings_json(&state, me.tenant_id).await
    };
    answer(StatusCode::OK, outcome.await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let at = DateTime::from_timestamp_micros(1_763_719_200_123_456).unwrap();
        let id = Uuid::now_v7();
        let text = format!("{}.{}", at.timestamp_micros(), id.simple());
        assert_eq!(decode_cursor(&text), Some((at, id)));
        for bad in ["", "x", "1.2", "abc.0123", &format!("x.{}", id.simple())] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_bad_filter_is_named() {
        let errors = parse_filter(&FilterInput {
            status: "lost",
            kind: "postcard",
            channel: "fax",
            company_id: "42",
            before: "yesterday",
            ..Default::default()
        })
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["status", "kind", "channel", "company_id", "before"]
        );
        let filter = parse_filter(&FilterInput {
            status: "unconfirmed",
            channel: " sms ",
            recipient: " ann ",
            ..Default::default()
        })
        .unwrap();
        assert_eq!(filter.status, Some(Status::Unconfirmed));
        assert_eq!(filter.channel.as_deref(), Some("sms"));
        assert_eq!(filter.recipient.as_deref(), Some("ann"));
    }
}
