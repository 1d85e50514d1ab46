//! The notifications' console (issue 6): the delivery log (`/notifications`, filters, counts
//! per status, "Older" pages by keyset cursor), a message as its recipient saw it
//! (`/notifications/{id}`, with its timeline and a Resend button), and the organisation's
//! settings (`/settings/notifications`: its own SMTP server and SMS provider, test messages,
//! and the templates with a live preview at `/settings/notifications/templates/{kind}`).
//!
//! The log needs `ViewNotifications`; resending and the settings `ManageNotifications`. Every
//! form runs the operation the API runs (`super::ops`), checks its CSRF token, shows itself
//! again with the messages next to the fields (422) or the refusal on top (409), and redirects
//! with a flash message when it succeeds. A message's HTML part is never put into a page as
//! it is: it is shown in a sandboxed frame (`<iframe sandbox srcdoc>`, escaped), so whatever a
//! template holds cannot run in the console. Passwords, tokens and auth headers are never
//! shown, and never filled into a form.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use domain::authz::Action;
use domain::notification::{Channel, RecipientKind, SmsProvider, Status};
use domain::template::{Kind, Template as MessageTemplate};
use domain::tenant::Tenant;
use domain::ValidationError;
use projections::notifications as read;
use uuid::Uuid;

use super::api::{self, FilterInput};
use super::ops::{self, EmailProviderInput, ProviderView, SmsProviderInput};
use crate::auth::Principal;
use crate::console::{
    bad_address_page, capitalise, csrf_refusal, internal_page, not_found_page, path_uuid,
    percent_encode, redirect_with_flash, Cookies,
};
use crate::error::ApiError;
use crate::AppState;

/// The settings page.
const SETTINGS: &str = "/settings/notifications";
/// Rows a page of the log shows.
const PAGE_SIZE: i64 = 50;
/// How much of an error a row of the log shows.
const SHORT_ERROR: usize = 80;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/notifications", get(log_page))
        .route("/notifications/{id}", get(message_page))
        .route("/notifications/{id}/resend", post(resend))
        .route(SETTINGS, get(settings_page))
        .route("/settings/notifications/email", post(save_email))
        .route("/settings/notifications/email/remove", post(remove_email))
        .route("/settings/notifications/email/test", post(test_email))
        .route("/settings/notifications/sms", post(save_sms))
        .route("/settings/notifications/sms/remove", post(remove_sms))
        .route("/settings/notifications/sms/test", post(test_sms))
        .route(
            "/settings/notifications/templates/{kind}",
            get(template_page).post(save_template),
        )
        .route(
            "/settings/notifications/templates/{kind}/preview",
            post(preview_template),
        )
        .route(
            "/settings/notifications/templates/{kind}/reset",
            post(reset_template),
        )
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

/// The fields of a form sent as name/value pairs.
type Pairs = Vec<(String, String)>;

fn value<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// The CSRF check and the role check of a form (`Some`: the answer instead).
fn refused(
    me: &Principal,
    cookies: &Cookies,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Option<Response> {
    if let Some(refused) = csrf_refusal(cookies, headers, value(pairs, "csrf")) {
        return Some(refused);
    }
    me.require(Action::ManageNotifications)
        .err()
        .map(IntoResponse::into_response)
}

/// The organisation's clock: times are shown in its time zone.
struct Clock(chrono_tz::Tz);

impl Clock {
    fn of(tenant: &Tenant) -> Self {
        Self(
            tenant
                .time_zone
                .unwrap_or_else(|| tenant.business_hours().time_zone)
                .tz(),
        )
    }

    fn time(&self, at: &DateTime<Utc>) -> String {
        at.with_timezone(&self.0)
            .format("%Y-%m-%d %H:%M")
            .to_string()
    }

    fn name(&self) -> &'static str {
        self.0.name()
    }
}

/// A select's option.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

/// Options from `(value, label)` pairs; a current value not among them stays selected (a bad
/// filter is shown as typed, next to its message).
fn choices(values: Vec<(String, String)>, current: &str) -> Vec<Choice> {
    let mut out: Vec<Choice> = values
        .into_iter()
        .map(|(value, label)| Choice {
            selected: value == current,
            value,
            label,
        })
        .collect();
    if !current.is_empty() && !out.iter().any(|c| c.selected) {
        out.push(Choice {
            value: current.to_owned(),
            label: current.to_owned(),
            selected: true,
        });
    }
    out
}

/// "Work order created".
fn kind_label(kind: &str) -> String {
    capitalise(&kind.replace('_', " "))
}

fn channel_label(channel: &str) -> &'static str {
    match channel {
        "sms" => "SMS",
        _ => "Email",
    }
}

/// The badge of a status: failures and messages that may or may not have gone out stand out.
fn badge(status: &str) -> &'static str {
    match status {
        "failed" | "undelivered" => "sla sla-breached",
        "unconfirmed" => "sla sla-warning",
        "queued" | "sending" | "retrying" => "sla sla-met",
        "skipped" => "sla sla-paused",
        _ => "sla",
    }
}

/// What a status means, for the statuses that need saying.
fn status_note(status: &str) -> Option<&'static str> {
    match status {
        "failed" => Some(
            "Given up: the provider refused it for good, every attempt failed, or the message \
             could not be written. The last error says why; fix the cause and resend.",
        ),
        "unconfirmed" => Some(
            "The server stopped while handing the message over: it may have gone out. Check \
             with the recipient before resending.",
        ),
        "undelivered" => Some(
            "The provider took the message but could not deliver it (for example a phone that \
             is off or a number that does not exist).",
        ),
        "retrying" => Some("The last attempt failed; another one follows on its own."),
        "skipped" => Some(
            "Not sent on purpose: the person opted out, has no address for this channel, or \
             no provider is set up.",
        ),
        _ => None,
    }
}

/// A field's message as a sentence: "From must be an email address."
fn sentence(label: &str, message: &str) -> String {
    let message = message.strip_prefix("ST_SMTP_URL: ").unwrap_or(message);
    let text = if label.is_empty() {
        capitalise(message)
    } else {
        format!("{label} {message}")
    };
    if text.ends_with('.') {
        text
    } else {
        format!("{text}.")
    }
}

/// Adds a message to a field's messages.
fn join(slot: &mut Option<String>, message: String) {
    *slot = Some(match slot.take() {
        Some(before) => format!("{before} {message}"),
        None => message,
    });
}

/// A refusal's text for the top of a form.
fn refusal_text(message: &str) -> String {
    format!("{}.", capitalise(message.trim_end_matches('.')))
}

async fn tenant_of(state: &AppState, me: &Principal) -> Result<Tenant, ApiError> {
    ops::load_tenant(state, me.tenant_id).await
}

// ---------------------------------------------------------------------------------------------
// The delivery log

/// The filters as typed in the query string.
#[derive(Debug, Clone, Default)]
struct LogForm {
    status: String,
    kind: String,
    channel: String,
    recipient: String,
    company_id: String,
    work_order_id: String,
    before: String,
}

impl LogForm {
    fn from_pairs(pairs: &[(String, String)]) -> Self {
        let mut form = Self::default();
        for (key, value) in pairs {
            let value = value.trim().to_owned();
            let slot = match key.as_str() {
                "status" => &mut form.status,
                "kind" => &mut form.kind,
                "channel" => &mut form.channel,
                "recipient" => &mut form.recipient,
                "company_id" | "company" => &mut form.company_id,
                "work_order_id" => &mut form.work_order_id,
                "before" => &mut form.before,
                _ => continue,
            };
            if slot.is_empty() {
                *slot = value;
            }
        }
        form
    }

    fn input(&self) -> FilterInput<'_> {
        FilterInput {
            status: &self.status,
            kind: &self.kind,
            channel: &self.channel,
            recipient: &self.recipient,
            company_id: &self.company_id,
            work_order_id: &self.work_order_id,
            before: &self.before,
        }
    }

    fn filtered(&self) -> bool {
        !(self.status.is_empty()
            && self.kind.is_empty()
            && self.channel.is_empty()
            && self.recipient.is_empty()
            && self.company_id.is_empty()
            && self.work_order_id.is_empty())
    }

    /// `/notifications?...` with these filters and, when given, a cursor.
    fn href(&self, before: Option<&str>) -> String {
        let params = [
            ("status", self.status.as_str()),
            ("kind", self.kind.as_str()),
            ("channel", self.channel.as_str()),
            ("recipient", self.recipient.as_str()),
            ("company_id", self.company_id.as_str()),
            ("work_order_id", self.work_order_id.as_str()),
            ("before", before.unwrap_or_default()),
        ];
        let query: Vec<String> = params
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect();
        if query.is_empty() {
            "/notifications".to_owned()
        } else {
            format!("/notifications?{}", query.join("&"))
        }
    }
}

/// The filter's messages, by field.
#[derive(Debug, Default)]
struct LogErrors {
    status: Option<String>,
    kind: Option<String>,
    channel: Option<String>,
    recipient: Option<String>,
    company_id: Option<String>,
    /// About the work order filter or the page link, shown above the table.
    page: Option<String>,
}

impl LogErrors {
    fn of(errors: Vec<ValidationError>) -> Self {
        let mut out = Self::default();
        for e in errors {
            let (slot, label) = match e.field {
                "status" => (&mut out.status, "Status"),
                "kind" => (&mut out.kind, "Kind"),
                "channel" => (&mut out.channel, "Channel"),
                "recipient" => (&mut out.recipient, "Recipient"),
                "company_id" => (&mut out.company_id, "Company"),
                "work_order_id" => (&mut out.page, "The work order"),
                _ => {
                    join(
                        &mut out.page,
                        "This page link is not valid: start again from the newest messages."
                            .to_owned(),
                    );
                    continue;
                }
            };
            join(slot, sentence(label, &e.message.replace('`', "")));
        }
        out
    }

    fn any(&self) -> bool {
        self.status.is_some()
            || self.kind.is_some()
            || self.channel.is_some()
            || self.recipient.is_some()
            || self.company_id.is_some()
            || self.page.is_some()
    }
}

/// One status in the log's header.
struct CountView {
    status: &'static str,
    label: String,
    count: i64,
    class: &'static str,
}

/// One row of the log.
struct RowView {
    id: Uuid,
    at: String,
    when: String,
    kind: String,
    channel: &'static str,
    recipient_name: String,
    address: String,
    subject: String,
    status: String,
    badge: &'static str,
    attempts: i32,
    error: Option<String>,
    error_short: Option<String>,
}

impl RowView {
    fn new(row: read::NotificationRow, clock: &Clock) -> Self {
        let error_short = row.last_error.as_ref().map(|e| {
            let mut chars = e.chars();
            let short: String = chars.by_ref().take(SHORT_ERROR).collect();
            if chars.next().is_some() {
                format!("{short}…")
            } else {
                short
            }
        });
        Self {
            id: row.id,
            at: row.queued_at.to_rfc3339(),
            when: clock.time(&row.queued_at),
            kind: kind_label(&row.kind),
            channel: channel_label(&row.channel),
            recipient_name: row.recipient_name,
            address: row.address,
            subject: api::hidden(&row.subject),
            badge: badge(&row.status),
            status: row.status,
            attempts: row.attempts,
            error: row.last_error,
            error_short,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "notifications.html")]
struct LogPage {
    flash: Option<String>,
    form: LogForm,
    errors: LogErrors,
    statuses: Vec<Choice>,
    kinds: Vec<Choice>,
    channels: Vec<Choice>,
    companies: Vec<Choice>,
    counts: Vec<CountView>,
    total: i64,
    rows: Vec<RowView>,
    older: Option<String>,
    newest: Option<String>,
    time_zone: &'static str,
    may_manage: bool,
}

async fn company_names(
    state: &AppState,
    tenant_id: Uuid,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name FROM companies WHERE tenant_id = $1 ORDER BY lower(name), id LIMIT 1000",
    )
    .bind(tenant_id)
    .fetch_all(&state.pool)
    .await
}

async fn log_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewNotifications) {
        return refused.into_response();
    }
    let Ok(Query(pairs)) = query else {
        return bad_address_page("The filters in this address cannot be read.");
    };
    let form = LogForm::from_pairs(&pairs);
    let loaded = async {
        let tenant = tenant_of(&state, &me).await?;
        let companies = company_names(&state, me.tenant_id).await?;
        let counts = read::counts(&state.pool, me.tenant_id).await?;
        Ok::<_, ApiError>((tenant, companies, counts))
    };
    let (tenant, companies, counts) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let clock = Clock::of(&tenant);
    let counted: HashMap<String, i64> = counts.into_iter().collect();
    let mut statuses = vec![(String::new(), "Any status".to_owned())];
    statuses.extend(
        Status::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), capitalise(s.as_str()))),
    );
    let mut kinds = vec![(String::new(), "Any kind".to_owned())];
    kinds.extend(
        Kind::ALL
            .iter()
            .map(|k| (k.as_str().to_owned(), kind_label(k.as_str()))),
    );
    let mut channels = vec![(String::new(), "Email and SMS".to_owned())];
    channels.extend(
        Channel::ALL
            .iter()
            .map(|c| (c.as_str().to_owned(), channel_label(c.as_str()).to_owned())),
    );
    let mut company_choices = vec![(String::new(), "All companies".to_owned())];
    company_choices.extend(
        companies
            .into_iter()
            .map(|(id, name)| (id.to_string(), name)),
    );
    let mut page = LogPage {
        flash: cookies.flash.clone(),
        errors: LogErrors::default(),
        statuses: choices(statuses, &form.status),
        kinds: choices(kinds, &form.kind),
        channels: choices(channels, &form.channel),
        companies: choices(company_choices, &form.company_id),
        total: counted.values().sum(),
        counts: Status::ALL
            .iter()
            .map(|s| {
                let count = counted.get(s.as_str()).copied().unwrap_or_default();
                CountView {
                    status: s.as_str(),
                    label: s.as_str().to_owned(),
                    count,
                    class: match s.as_str() {
                        "failed" | "undelivered" if count > 0 => "stat-bad",
                        "unconfirmed" if count > 0 => "stat-warn",
                        _ => "",
                    },
                }
            })
            .collect(),
        rows: Vec::new(),
        older: None,
        newest: None,
        time_zone: clock.name(),
        may_manage: me.may(Action::ManageNotifications),
        form,
    };
    let filter = match api::parse_filter(&page.form.input()) {
        Ok(filter) => filter,
        Err(errors) => {
            page.errors = LogErrors::of(errors);
            return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
        }
    };
    let mut rows = match read::list(&state.pool, me.tenant_id, &filter, PAGE_SIZE + 1).await {
        Ok(rows) => rows,
        Err(error) => return internal_page(error),
    };
    if rows.len() as i64 > PAGE_SIZE {
        rows.truncate(PAGE_SIZE as usize);
        page.older = rows
            .last()
            .map(|row| page.form.href(Some(&api::cursor_of(row))));
    }
    if filter.before.is_some() {
        page.newest = Some(page.form.href(None));
    }
    page.rows = rows.into_iter().map(|r| RowView::new(r, &clock)).collect();
    page.into_response()
}

// ---------------------------------------------------------------------------------------------
// One message

struct TimelineItem {
    at: String,
    when: String,
    who: String,
    what: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "notifications_message.html")]
struct MessagePage {
    flash: Option<String>,
    csrf: String,
    /// A refusal (of a resend), shown on top.
    problem: Option<String>,
    id: Uuid,
    kind: String,
    channel: &'static str,
    is_sms: bool,
    status: &'static str,
    badge: &'static str,
    status_note: Option<&'static str>,
    subject: String,
    text: String,
    html: String,
    recipient_name: String,
    address: String,
    /// The recipient's own page.
    recipient_href: Option<String>,
    attempts: u32,
    provider: Option<String>,
    provider_message_id: Option<String>,
    delivery: Option<String>,
    last_error: Option<String>,
    retry_at: Option<String>,
    queued_at: String,
    sent_at: Option<String>,
    /// What caused it: the event, in words.
    cause: Option<String>,
    work_order_id: Option<Uuid>,
    company: Option<(Uuid, String)>,
    resend_of: Option<Uuid>,
    attachments: Vec<String>,
    timeline: Vec<TimelineItem>,
    can_resend: bool,
    time_zone: &'static str,
}

async fn company_name(state: &AppState, tenant_id: Uuid, id: Uuid) -> Result<String, sqlx::Error> {
    Ok(projections::companies::get(&state.pool, tenant_id, id)
        .await?
        .map_or_else(|| id.to_string(), |c| c.name))
}

async fn render_message(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    id: Uuid,
    problem: Option<String>,
    status: StatusCode,
) -> Response {
    let notification = match ops::load(state, me, id).await {
        Ok(n) => n,
        Err(ApiError::NotFound(_)) => return not_found_page(),
        Err(error) => return internal_page(error),
    };
    let Some(queued) = notification.queued.clone() else {
        return not_found_page();
    };
    let loaded = async {
        let tenant = tenant_of(state, me).await?;
        let row = read::get(&state.pool, me.tenant_id, id).await?;
        let names = projections::users::actor_names(&state.pool, me.tenant_id).await?;
        let items = projections::history::for_aggregate(
            &state.pool,
            me.tenant_id,
            "notification",
            &id.to_string(),
            500,
        )
        .await?;
        let company = match queued.company_id {
            Some(company_id) => Some((
                company_id,
                company_name(state, me.tenant_id, company_id).await?,
            )),
            None => None,
        };
        Ok::<_, ApiError>((tenant, row, names, items, company))
    };
    let (tenant, row, names, items, company) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let clock = Clock::of(&tenant);
    let shown = ops::shown(&queued.content);
    let is_sms = queued.channel == Channel::Sms;
    let recipient_href = match (queued.recipient.kind, queued.recipient.id) {
        (RecipientKind::Contact, Some(id)) => Some(format!("/contacts/{id}")),
        (RecipientKind::User, Some(id)) => Some(format!("/team/{id}")),
        _ => None,
    };
    let cause = queued.cause.as_ref().map(|c| {
        format!(
            "{} ({} {}, event {})",
            projections::history::humanize(&c.event_type),
            c.aggregate_type.replace('_', " "),
            c.aggregate_id,
            c.sequence
        )
    });
    let timeline = items
        .into_iter()
        .map(|item| TimelineItem {
            at: item.recorded_at.to_rfc3339(),
            when: clock.time(&item.recorded_at),
            what: projections::history::summary("notification", &item.event_type, &item.payload),
            who: projections::users::actor_label(&names, &item.actor),
        })
        .collect();
    let page = MessagePage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        problem,
        id,
        kind: kind_label(queued.kind.as_str()),
        channel: channel_label(queued.channel.as_str()),
        is_sms,
        status: notification.status.as_str(),
        badge: badge(notification.status.as_str()),
        status_note: status_note(notification.status.as_str()),
        subject: shown.subject,
        text: shown.text,
        html: shown.html,
        recipient_name: queued.recipient.name.clone(),
        address: queued.recipient.address.clone(),
        recipient_href,
        attempts: notification.attempts,
        provider: row.as_ref().and_then(|r| r.provider.clone()),
        provider_message_id: notification.provider_message_id.clone(),
        delivery: notification.delivery.clone(),
        last_error: notification.last_error.clone(),
        retry_at: notification.retry_at.map(|at| clock.time(&at)),
        queued_at: clock.time(&queued.queued_at),
        sent_at: row
            .as_ref()
            .and_then(|r| r.sent_at)
            .map(|at| clock.time(&at)),
        cause,
        work_order_id: queued.work_order_id,
        company,
        resend_of: queued.resend_of,
        attachments: queued
            .attachments
            .iter()
            .map(|a| format!("{} ({} bytes)", a.file_name, a.size))
            .collect(),
        timeline,
        can_resend: notification.status.can_resend() && me.may(Action::ManageNotifications),
        time_zone: clock.name(),
    };
    (status, page).into_response()
}

async fn message_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewNotifications) {
        return refused.into_response();
    }
    let Some(id) = path_uuid(path) else {
        return not_found_page();
    };
    render_message(&state, &me, &cookies, id, None, StatusCode::OK).await
}

async fn resend(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs) {
        return refused;
    }
    let Some(id) = path_uuid(path) else {
        return not_found_page();
    };
    match ops::resend(&state, &me, &me.meta(), id).await {
        Ok(new_id) => {
            state
                .read_your_writes(api::VIEWS, "notification", &new_id.to_string(), 1)
                .await;
            redirect_with_flash(
                &format!("/notifications/{new_id}"),
                "Sent again: this is the new message. The log shows what becomes of it.",
            )
        }
        Err(ApiError::NotFound(_)) => not_found_page(),
        Err(ApiError::Conflict(message)) => {
            render_message(
                &state,
                &me,
                &cookies,
                id,
                Some(refusal_text(&message)),
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(error) => internal_page(error),
    }
}

// ---------------------------------------------------------------------------------------------
// Settings: providers and test messages

/// The email form: the organisation's own SMTP server.
#[derive(Default)]
struct EmailForm {
    url: String,
    from: String,
    no_password: bool,
    /// A password is stored (the field is never filled).
    has_password: bool,
    url_error: Option<String>,
    from_error: Option<String>,
    password_error: Option<String>,
    problem: Option<String>,
}

/// The SMS form: Twilio or a gateway.
#[derive(Default)]
struct SmsForm {
    /// `twilio` or `gateway`.
    provider: String,
    account_sid: String,
    twilio_from: String,
    base_url: String,
    /// A Twilio token is stored.
    has_token: bool,
    url: String,
    method: String,
    body: String,
    template: String,
    gateway_from: String,
    /// A gateway auth header is stored.
    has_auth_header: bool,
    no_auth_header: bool,
    provider_error: Option<String>,
    account_sid_error: Option<String>,
    auth_token_error: Option<String>,
    twilio_from_error: Option<String>,
    base_url_error: Option<String>,
    url_error: Option<String>,
    method_error: Option<String>,
    body_error: Option<String>,
    template_error: Option<String>,
    auth_header_error: Option<String>,
    gateway_from_error: Option<String>,
    problem: Option<String>,
}

/// A "send a test message" form.
#[derive(Default)]
struct TestForm {
    to: String,
    error: Option<String>,
    problem: Option<String>,
}

/// A kind of message in the templates table.
struct TemplateRow {
    kind: &'static str,
    label: String,
    customised: bool,
    by_sms: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "notifications_settings.html")]
struct SettingsPage {
    flash: Option<String>,
    csrf: String,
    /// The test message just queued (its link replaces the flash).
    sent: Option<Uuid>,
    email_view: ProviderView,
    sms_view: ProviderView,
    own_email: bool,
    own_sms: bool,
    email: EmailForm,
    email_test: TestForm,
    sms: SmsForm,
    sms_test: TestForm,
    templates: Vec<TemplateRow>,
}

impl SettingsPage {
    fn source_label(view: &ProviderView) -> &'static str {
        match view.source {
            "tenant" => "Your organisation's own settings",
            "environment" => "The deployment's settings",
            _ => "Nothing is set up: messages on this channel are skipped",
        }
    }

    fn email_source(&self) -> &'static str {
        Self::source_label(&self.email_view)
    }

    fn sms_source(&self) -> &'static str {
        Self::source_label(&self.sms_view)
    }
}

/// The settings page filled from the tenant; the caller swaps in the form it handles.
async fn settings_view(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
) -> Result<SettingsPage, ApiError> {
    let tenant = tenant_of(state, me).await?;
    let email_view = ops::provider_view(state, me.tenant_id, &tenant, Channel::Email).await;
    let sms_view = ops::provider_view(state, me.tenant_id, &tenant, Channel::Sms).await;
    let email = match &tenant.email_provider {
        Some(p) => EmailForm {
            url: p.url.clone(),
            from: p.from.clone(),
            has_password: p.password_secret.is_some(),
            ..Default::default()
        },
        None => EmailForm::default(),
    };
    let mut sms = SmsForm {
        provider: "twilio".into(),
        base_url: super::sms::DEFAULT_TWILIO_BASE_URL.into(),
        method: "post".into(),
        body: "form".into(),
        template: "To={to}&From={from}&Body={body}".into(),
        ..Default::default()
    };
    match &tenant.sms_provider {
        Some(SmsProvider::Twilio {
            account_sid,
            from,
            base_url,
            ..
        }) => {
            sms.account_sid = account_sid.clone();
            sms.twilio_from = from.clone();
            sms.base_url = base_url.clone();
            sms.has_token = true;
        }
        Some(SmsProvider::Gateway {
            url,
            method,
            body,
            template,
            from,
            secret,
        }) => {
            sms.provider = "gateway".into();
            sms.url = url.clone();
            sms.method = method.clone();
            sms.body = body.clone();
            sms.template = template.clone();
            sms.gateway_from = from.clone();
            sms.has_auth_header = secret.is_some();
        }
        None => {}
    }
    Ok(SettingsPage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        sent: None,
        own_email: tenant.email_provider.is_some(),
        own_sms: tenant.sms_provider.is_some(),
        email_view,
        sms_view,
        email,
        email_test: TestForm::default(),
        sms,
        sms_test: TestForm::default(),
        templates: Kind::ALL
            .iter()
            .map(|k| TemplateRow {
                kind: k.as_str(),
                label: kind_label(k.as_str()),
                customised: tenant.templates.contains_key(k),
                by_sms: !tenant.template(*k).sms.trim().is_empty(),
            })
            .collect(),
    })
}

async fn settings_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageNotifications) {
        return refused.into_response();
    }
    let pairs = query.map(|Query(p)| p).unwrap_or_default();
    match settings_view(&state, &me, &cookies).await {
        Ok(mut page) => {
            page.sent = Uuid::try_parse(value(&pairs, "sent")).ok();
            page.into_response()
        }
        Err(error) => internal_page(error),
    }
}

/// The settings page again with a refused form (422 for bad fields, 409 for a refusal).
async fn settings_again(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    status: StatusCode,
    fill: impl FnOnce(&mut SettingsPage),
) -> Response {
    match settings_view(state, me, cookies).await {
        Ok(mut page) => {
            fill(&mut page);
            (status, page).into_response()
        }
        Err(error) => internal_page(error),
    }
}

async fn save_email(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs) {
        return refused;
    }
    let no_password = !value(&pairs, "no_password").is_empty();
    let password = value(&pairs, "password");
    let input = EmailProviderInput {
        url: value(&pairs, "url").trim().to_owned(),
        from: value(&pairs, "from").trim().to_owned(),
        password: if no_password {
            Some(String::new())
        } else if password.is_empty() {
            None
        } else {
            Some(password.to_owned())
        },
    };
    let (url, from) = (input.url.clone(), input.from.clone());
    let outcome = ops::set_email_provider(&state, &me, &me.meta(), Some(input)).await;
    let (status, errors, problem) = match outcome {
        Ok(()) => {
            return redirect_with_flash(
                SETTINGS,
                "Email settings saved: your organisation's email goes through this server.",
            )
        }
        Err(ApiError::Invalid(errors)) => (StatusCode::UNPROCESSABLE_ENTITY, errors, None),
        Err(ApiError::Conflict(message)) => (StatusCode::CONFLICT, Vec::new(), Some(message)),
        Err(error) => return internal_page(error),
    };
    settings_again(&state, &me, &cookies, status, |page| {
        let form = &mut page.email;
        form.url = url;
        form.from = from;
        form.no_password = no_password;
        form.problem = problem.as_deref().map(refusal_text);
        for e in errors {
            match e.field {
                "url" => join(&mut form.url_error, sentence("The URL", &e.message)),
                "from" => join(&mut form.from_error, sentence("From", &e.message)),
                "password" => join(
                    &mut form.password_error,
                    sentence("The password", &e.message),
                ),
                _ => join(&mut form.problem, sentence("", &e.message)),
            }
        }
    })
    .await
}

async fn remove_email(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs) {
        return refused;
    }
    match ops::set_email_provider(&state, &me, &me.meta(), None).await {
        Ok(()) => redirect_with_flash(
            SETTINGS,
            "Your own SMTP server is removed: the deployment's server (if any) sends your email.",
        ),
        Err(error) => internal_page(error),
    }
}

/// Sends the test message of `channel` and answers as the settings page does.
async fn send_test(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    pairs: &[(String, String)],
    channel: Channel,
) -> Response {
    let to = value(pairs, "to").trim().to_owned();
    let (status, error, problem) = match ops::send_test(state, me, &me.meta(), channel, &to).await {
        Ok(id) => {
            state
                .read_your_writes(api::VIEWS, "notification", &id.to_string(), 1)
                .await;
            return Redirect::to(&format!("{SETTINGS}?sent={id}")).into_response();
        }
        Err(ApiError::Invalid(errors)) => {
            let text = errors
                .iter()
                .map(|e| sentence("The address", &e.message))
                .collect::<Vec<_>>()
                .join(" ");
            (StatusCode::UNPROCESSABLE_ENTITY, Some(text), None)
        }
        Err(ApiError::Conflict(message)) => {
            (StatusCode::CONFLICT, None, Some(refusal_text(&message)))
        }
        Err(error) => return internal_page(error),
    };
    settings_again(state, me, cookies, status, |page| {
        let form = match channel {
            Channel::Email => &mut page.email_test,
            Channel::Sms => &mut page.sms_test,
        };
        form.to = to;
        form.error = error;
        form.problem = problem;
    })
    .await
}

async fn test_email(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs) {
        return refused;
    }
    send_test(&state, &me, &cookies, &pairs, Channel::Email).await
}

async fn test_sms(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs) {
        return refused;
    }
    send_test(&state, &me, &cookies, &pairs, Channel::Sms).await
}

/// The SMS form as typed (secrets never kept).
fn sms_form(pairs: &[(String, String)]) -> SmsForm {
    let text = |name: &str| value(pairs, name).trim().to_owned();
    SmsForm {
        provider: text("provider"),
        account_sid: text("account_sid"),
        twilio_from: text("twilio_from"),
        base_url: text("base_url"),
        url: text("url"),
        method: text("method"),
        body: text("body"),
        template: value(pairs, "template").to_owned(),
        gateway_from: text("gateway_from"),
        no_auth_header: !value(pairs, "no_auth_header").is_empty(),
        ..Default::default()
    }
}

async fn save_sms(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs) {
        return refused;
    }
    let typed = sms_form(&pairs);
    let secret = |name: &str| {
        let v = value(&pairs, name).trim();
        (!v.is_empty()).then(|| v.to_owned())
    };
    let mut errors = Vec::new();
    let input = match typed.provider.as_str() {
        "twilio" => Some(SmsProviderInput::Twilio {
            account_sid: typed.account_sid.clone(),
            auth_token: secret("auth_token"),
            from: typed.twilio_from.clone(),
            base_url: typed.base_url.clone(),
        }),
        "gateway" => {
            let method = api::parse_method(&typed.method);
            let body = api::parse_body_format(&typed.body);
            if method.is_none() {
                errors.push(ValidationError::new("method", "must be GET or POST"));
            }
            if body.is_none() {
                errors.push(ValidationError::new("body", "must be form or JSON"));
            }
            Some(SmsProviderInput::Gateway {
                url: typed.url.clone(),
                method: method.unwrap_or_default(),
                body: body.unwrap_or_default(),
                template: typed.template.clone(),
                from: typed.gateway_from.clone(),
                auth_header: if typed.no_auth_header {
                    Some(String::new())
                } else {
                    secret("auth_header")
                },
            })
        }
        _ => {
            errors.push(ValidationError::new(
                "provider",
                "must be chosen: Twilio or an HTTP gateway",
            ));
            None
        }
    };
    let outcome = match input {
        Some(input) if errors.is_empty() => {
            ops::set_sms_provider(&state, &me, &me.meta(), Some(input)).await
        }
        _ => Err(ApiError::Invalid(errors)),
    };
    let (status, errors, problem) = match outcome {
        Ok(()) => {
            return redirect_with_flash(
                SETTINGS,
                "SMS settings saved: your organisation's SMS go through this provider.",
            )
        }
        Err(ApiError::Invalid(errors)) => (StatusCode::UNPROCESSABLE_ENTITY, errors, None),
        Err(ApiError::Conflict(message)) => (StatusCode::CONFLICT, Vec::new(), Some(message)),
        Err(error) => return internal_page(error),
    };
    settings_again(&state, &me, &cookies, status, move |page| {
        let stored = std::mem::take(&mut page.sms);
        let mut form = typed;
        form.has_token = stored.has_token;
        form.has_auth_header = stored.has_auth_header;
        form.problem = problem.as_deref().map(refusal_text);
        let twilio = form.provider == "twilio";
        for e in errors {
            let (slot, label) = match (e.field, twilio) {
                ("provider", _) => (&mut form.provider_error, "The provider"),
                ("account_sid", _) => (&mut form.account_sid_error, "The account SID"),
                ("auth_token", _) => (&mut form.auth_token_error, "The auth token"),
                ("base_url", _) => (&mut form.base_url_error, "The base URL"),
                ("from", true) => (&mut form.twilio_from_error, "From"),
                ("from", false) => (&mut form.gateway_from_error, "From"),
                ("url", _) => (&mut form.url_error, "The URL"),
                ("method", _) => (&mut form.method_error, "The method"),
                ("body", _) => (&mut form.body_error, "The body format"),
                ("template", _) => (&mut form.template_error, "The template"),
                ("auth_header", _) => (&mut form.auth_header_error, "The auth header"),
                _ => (&mut form.problem, ""),
            };
            join(slot, sentence(label, &e.message));
        }
        page.sms = form;
    })
    .await
}

async fn remove_sms(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs) {
        return refused;
    }
    match ops::set_sms_provider(&state, &me, &me.meta(), None).await {
        Ok(()) => redirect_with_flash(
            SETTINGS,
            "Your own SMS provider is removed: the deployment's provider (if any) sends your SMS.",
        ),
        Err(error) => internal_page(error),
    }
}

// ---------------------------------------------------------------------------------------------
// Settings: a template with its live preview

/// What a template makes of the example values, or why it cannot be previewed.
#[derive(Default)]
struct PreviewView {
    subject: String,
    text: String,
    html: String,
    sms: Option<String>,
    errors: Vec<String>,
}

fn field_label(field: &str) -> &'static str {
    match field {
        "subject" => "The subject",
        "text" => "The text",
        "html" => "The HTML",
        "sms" => "The SMS",
        _ => "",
    }
}

fn preview_of(
    kind: Kind,
    template: &MessageTemplate,
    tenant: &Tenant,
    public_url: &str,
) -> PreviewView {
    match ops::preview(kind, template, &tenant.name, public_url) {
        Ok((email, sms)) => PreviewView {
            subject: email.subject,
            text: email.text,
            html: email.html,
            sms,
            errors: Vec::new(),
        },
        Err(ApiError::Invalid(errors)) => PreviewView {
            errors: errors
                .iter()
                .map(|e| sentence(field_label(e.field), &e.message))
                .collect(),
            ..Default::default()
        },
        Err(other) => PreviewView {
            errors: vec![refusal_text(&other.to_string())],
            ..Default::default()
        },
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "notifications_preview.html")]
struct PreviewFragment {
    preview: PreviewView,
}

#[derive(Template, WebTemplate)]
#[template(path = "notifications_template.html")]
struct TemplatePage {
    flash: Option<String>,
    csrf: String,
    kind: &'static str,
    label: String,
    placeholders: Vec<String>,
    customised: bool,
    subject: String,
    text: String,
    html: String,
    sms: String,
    subject_error: Option<String>,
    text_error: Option<String>,
    html_error: Option<String>,
    sms_error: Option<String>,
    problem: Option<String>,
    preview: PreviewView,
}

/// The kind of a console path (`None`: the 404 page).
fn kind_of(path: Result<Path<String>, PathRejection>) -> Option<Kind> {
    path.ok().and_then(|Path(raw)| Kind::parse(&raw))
}

fn template_from(pairs: &[(String, String)]) -> MessageTemplate {
    MessageTemplate {
        subject: value(pairs, "subject").to_owned(),
        text: value(pairs, "text").replace("\r\n", "\n"),
        html: value(pairs, "html").replace("\r\n", "\n"),
        sms: value(pairs, "sms").replace("\r\n", "\n"),
    }
}

fn template_view(
    cookies: &Cookies,
    tenant: &Tenant,
    kind: Kind,
    template: MessageTemplate,
    public_url: &str,
) -> TemplatePage {
    TemplatePage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        kind: kind.as_str(),
        label: kind_label(kind.as_str()),
        placeholders: kind
            .placeholders()
            .iter()
            .map(|p| format!("{{{p}}}"))
            .collect(),
        customised: tenant.templates.contains_key(&kind),
        preview: preview_of(kind, &template, tenant, public_url),
        subject: template.subject,
        text: template.text,
        html: template.html,
        sms: template.sms,
        subject_error: None,
        text_error: None,
        html_error: None,
        sms_error: None,
        problem: None,
    }
}

fn editor(kind: Kind) -> String {
    format!("{SETTINGS}/templates/{}", kind.as_str())
}

async fn template_page(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ManageNotifications) {
        return refused.into_response();
    }
    let Some(kind) = kind_of(path) else {
        return not_found_page();
    };
    match tenant_of(&state, &me).await {
        Ok(tenant) => {
            let template = tenant.template(kind);
            template_view(
                &cookies,
                &tenant,
                kind,
                template,
                &state.settings().public_url,
            )
            .into_response()
        }
        Err(error) => internal_page(error),
    }
}

async fn save_template(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs) {
        return refused;
    }
    let Some(kind) = kind_of(path) else {
        return not_found_page();
    };
    let template = template_from(&pairs);
    let (status, errors, problem) =
        match ops::set_template(&state, &me, &me.meta(), kind, Some(template.clone())).await {
            Ok(()) => {
                return redirect_with_flash(
                    &editor(kind),
                    "Template saved: new messages of this kind use it.",
                )
            }
            Err(ApiError::Invalid(errors)) => (StatusCode::UNPROCESSABLE_ENTITY, errors, None),
            Err(ApiError::Conflict(message)) => (
                StatusCode::CONFLICT,
                Vec::new(),
                Some(refusal_text(&message)),
            ),
            Err(error) => return internal_page(error),
        };
    let tenant = match tenant_of(&state, &me).await {
        Ok(tenant) => tenant,
        Err(error) => return internal_page(error),
    };
    let mut page = template_view(
        &cookies,
        &tenant,
        kind,
        template,
        &state.settings().public_url,
    );
    page.problem = problem;
    for e in errors {
        let slot = match e.field {
            "subject" => &mut page.subject_error,
            "text" => &mut page.text_error,
            "html" => &mut page.html_error,
            "sms" => &mut page.sms_error,
            _ => &mut page.problem,
        };
        join(slot, sentence(field_label(e.field), &e.message));
    }
    (status, page).into_response()
}

async fn reset_template(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs) {
        return refused;
    }
    let Some(kind) = kind_of(path) else {
        return not_found_page();
    };
    match ops::set_template(&state, &me, &me.meta(), kind, None).await {
        Ok(()) => redirect_with_flash(&editor(kind), "Back to the default wording."),
        Err(error) => internal_page(error),
    }
}

/// The live preview (htmx): the rendered email and SMS, or the template's problems (422).
async fn preview_template(
    State(state): State<AppState>,
    me: Principal,
    Extension(cookies): Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    Form(pairs): Form<Pairs>,
) -> Response {
    if let Some(refused) = refused(&me, &cookies, &headers, &pairs) {
        return refused;
    }
    let Some(kind) = kind_of(path) else {
        return not_found_page();
    };
    let tenant = match tenant_of(&state, &me).await {
        Ok(tenant) => tenant,
        Err(error) => return internal_page(error),
    };
    let preview = preview_of(
        kind,
        &template_from(&pairs),
        &tenant,
        &state.settings().public_url,
    );
    let status = if preview.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (status, PreviewFragment { preview }).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_links_keep_the_filter() {
        let form = LogForm::from_pairs(&[
            ("status".into(), "failed".into()),
            ("recipient".into(), "ann & co".into()),
            ("company".into(), "x".into()),
            ("unknown".into(), "1".into()),
        ]);
        assert!(form.filtered());
        assert_eq!(
            form.href(Some("1.ab")),
            "/notifications?status=failed&recipient=ann%20%26%20co&company_id=x&before=1.ab"
        );
        assert_eq!(LogForm::default().href(None), "/notifications");
    }

    #[test]
    fn bad_filters_read_as_sentences_next_to_their_fields() {
        let errors = api::parse_filter(&FilterInput {
            status: "lost",
            before: "x",
            ..Default::default()
        })
        .unwrap_err();
        let shown = LogErrors::of(errors);
        assert!(shown
            .status
            .unwrap()
            .starts_with("Status must be one of queued"));
        assert!(shown.page.unwrap().contains("page link is not valid"));
        assert!(shown.kind.is_none());
    }

    #[test]
    fn failures_stand_out() {
        for status in ["failed", "undelivered", "unconfirmed"] {
            assert!(badge(status).contains("sla-"), "{status}");
            assert!(status_note(status).is_some(), "{status}");
        }
        assert_eq!(badge("sent"), "sla");
    }
}
