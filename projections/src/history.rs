//! An aggregate's own events, straight from the log, for history tabs and audits, and the
//! sentence that tells a person what each event did.

use chrono::{DateTime, Utc};
use domain::asset::AssetEvent;
use domain::company::{CompanyEvent, CustomerStatus};
use domain::contact::ContactEvent;
use domain::credential::CredentialEvent;
use domain::identity::TimeZone;
use domain::ledger::LedgerEvent;
use domain::notification::{NotificationEvent, SmsProvider};
use domain::sequence::SequenceEvent;
use domain::tenant::TenantEvent;
use domain::user::UserEvent;
use domain::workorder::{Billing, LinkKind, Origin, WorkOrderEvent};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HistoryItem {
    pub sequence: i64,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub actor: String,
    pub recorded_at: DateTime<Utc>,
}

/// The events of one aggregate of `tenant_id`, oldest first (at most `limit`, newest kept).
pub async fn for_aggregate(
    pool: &PgPool,
    tenant_id: Uuid,
    aggregate_type: &str,
    aggregate_id: &str,
    limit: i64,
) -> Result<Vec<HistoryItem>, sqlx::Error> {
    let mut items: Vec<HistoryItem> = sqlx::query_as(
        "SELECT sequence, event_type, payload, coalesce(metadata->>'actor', '?') AS actor, recorded_at
           FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND metadata->>'tenant_id' = $3
          ORDER BY sequence DESC
          LIMIT $4",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(tenant_id.to_string())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    items.reverse();
    Ok(items)
}

/// One sentence that says what an event did, for people: the Activity page and the history
/// of an entity's own page. Event types this function does not know yet read as their name
/// in words ("CompanyRegistered" → "Company registered").
pub fn summary(aggregate_type: &str, event_type: &str, payload: &Value) -> String {
    match aggregate_type {
        "company" => company_summary(event_type, payload),
        "tenant" => match serde_json::from_value::<TenantEvent>(payload.clone()) {
            Ok(event) => tenant_event_summary(&event),
            Err(_) => humanize(event_type),
        },
        "contact" => match serde_json::from_value::<ContactEvent>(payload.clone()) {
            Ok(ContactEvent::ContactAdded { details, .. }) => format!("{} added", details.name),
            Ok(ContactEvent::ContactUpdated { details }) => format!("{} updated", details.name),
            Ok(ContactEvent::ContactLeft {}) => "Left the company".into(),
            Ok(ContactEvent::ContactReturned {}) => "Back at the company".into(),
            Ok(ContactEvent::ContactNotificationsChanged { preferences: p }) => {
                if p.opted_out {
                    "Opted out of notifications".into()
                } else {
                    let channels: Vec<&str> = [(p.email, "email"), (p.sms, "SMS")]
                        .into_iter()
                        .filter_map(|(on, name)| on.then_some(name))
                        .collect();
                    if channels.is_empty() {
                        "Notifications switched off".into()
                    } else {
                        format!("Notifications by {}", channels.join(" and "))
                    }
                }
            }
            Err(_) => humanize(event_type),
        },
        "asset" => match serde_json::from_value::<AssetEvent>(payload.clone()) {
            Ok(event) => asset_event_summary(&event),
            Err(_) => humanize(event_type),
        },
        "credential" => match serde_json::from_value::<CredentialEvent>(payload.clone()) {
            Ok(event) => credential_event_summary(&event),
            Err(_) => humanize(event_type),
        },
        "sequence" => match serde_json::from_value::<SequenceEvent>(payload.clone()) {
            Ok(SequenceEvent::NumberIssued {
                number,
                aggregate_type,
                ..
            }) => format!("Number {number} issued to a new {aggregate_type}"),
            Err(_) => humanize(event_type),
        },
        "user" => match serde_json::from_value::<UserEvent>(payload.clone()) {
            Ok(event) => user_event_summary(&event),
            Err(_) => humanize(event_type),
        },
        "work_order" => match serde_json::from_value::<WorkOrderEvent>(payload.clone()) {
            Ok(event) => work_order_event_summary(&event, None),
            Err(_) => humanize(event_type),
        },
        "notification" => match serde_json::from_value::<NotificationEvent>(payload.clone()) {
            Ok(event) => notification_event_summary(&event),
            Err(_) => humanize(event_type),
        },
        "ledger" => match serde_json::from_value::<LedgerEvent>(payload.clone()) {
            Ok(event) => ledger_event_summary(&event),
            Err(_) => humanize(event_type),
        },
        _ => humanize(event_type),
    }
}

/// The sentence for a tenant event (people are named by id; pages put names on them).
fn tenant_event_summary(event: &TenantEvent) -> String {
    match event {
        TenantEvent::TenantCreated {
            name,
            currency,
            time_zone,
            ..
        } => format!("Organisation {name} created ({currency}, {time_zone})"),
        TenantEvent::TenantRenamed {
            name,
            previous_name,
        } => format!("Organisation renamed to {name} (was {previous_name})"),
        TenantEvent::TenantSettingsChanged {
            currency,
            time_zone,
        } => format!("Settings changed: {currency}, {time_zone}"),
        TenantEvent::MemberAdded { role, .. } => format!("Member added as {role}"),
        TenantEvent::MemberRoleChanged {
            role,
            previous_role,
            ..
        } => format!("Role changed to {role} (was {previous_role})"),
        TenantEvent::MemberDisabled { .. } => "Member disabled".into(),
        TenantEvent::MemberEnabled { .. } => "Member enabled".into(),
        TenantEvent::MemberRemoved { .. } => "Member removed".into(),
        TenantEvent::AssetSettingsChanged {
            tag_prefix,
            categories,
        } => {
            if categories.is_empty() {
                format!("Asset settings changed: tags {tag_prefix}-…")
            } else {
                format!(
                    "Asset settings changed: tags {tag_prefix}-…, own categories {}",
                    categories.join(", ")
                )
            }
        }
        TenantEvent::BusinessHoursChanged { hours } => {
            format!("Business hours changed ({})", hours.time_zone)
        }
        TenantEvent::SlaPoliciesChanged { policies, .. } => {
            let each: Vec<String> = policies
                .iter()
                .map(|p| {
                    format!(
                        "{} {}/{} min",
                        p.priority.as_str(),
                        p.response_minutes,
                        p.resolution_minutes
                    )
                })
                .collect();
            if each.is_empty() {
                "SLA policies removed".into()
            } else {
                format!("SLA policies set: {}", each.join(", "))
            }
        }
        TenantEvent::WorkSettingsChanged {
            work_types,
            default_hourly_rate,
        } => {
            let names: Vec<&str> = work_types.iter().map(|t| t.name.as_str()).collect();
            format!(
                "Work types set to {}; default rate {default_hourly_rate} an hour",
                names.join(", ")
            )
        }
        TenantEvent::LabourCostChanged { hourly_cost, .. } => match hourly_cost {
            Some(cost) => format!("Labour cost set to {cost} an hour"),
            None => "Labour cost cleared".into(),
        },
        TenantEvent::TemplateChanged { kind, template } => match template {
            Some(_) => format!("Message template \"{}\" changed", kind.as_str()),
            None => format!("Message template \"{}\" back to the default", kind.as_str()),
        },
        TenantEvent::EmailProviderChanged { provider } => match provider {
            Some(p) => format!("Email sent through {}", p.url),
            None => "Email back to the deployment's server".into(),
        },
        TenantEvent::SmsProviderChanged { provider } => match provider {
            Some(SmsProvider::Twilio { from, .. }) => {
                format!("SMS sent through Twilio from {from}")
            }
            Some(SmsProvider::Gateway { url, .. }) => format!("SMS sent through {url}"),
            None => "SMS back to the deployment's provider".into(),
        },
        TenantEvent::BillingProfileChanged { .. } => {
            "Billing details (address, tax id, payment instructions) changed".into()
        }
        TenantEvent::ServiceDefined { service, .. } => format!(
            "Service \"{}\" ({}) at {} {}{}",
            service.name,
            service.tier,
            service.price,
            service.period.as_str(),
            if service.retired { ", retired" } else { "" }
        ),
        TenantEvent::LatePaymentChanged { policy } => format!(
            "Overdue invoices: reminders at {} days past due{}",
            if policy.reminder_days.is_empty() {
                "no".to_owned()
            } else {
                policy
                    .reminder_days
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            match &policy.fee {
                Some(fee) if fee.percent => format!(
                    "; a late fee of {}% after {} days",
                    fee.amount.normalize(),
                    fee.after_days
                ),
                Some(fee) => format!(
                    "; a late fee of {} after {} days",
                    fee.amount, fee.after_days
                ),
                None => String::new(),
            }
        ),
    }
}

/// The sentence for a ledger event. Amounts are plain decimals (the tenant's currency is
/// the page's to show); invoices are named by number when the event has it, else by the
/// first 8 digits of their id.
fn ledger_event_summary(event: &LedgerEvent) -> String {
    let invoice = |id: &Uuid| format!("invoice {}", crate::receivables::short_id(*id));
    let why = |reason: &str| {
        let reason = reason.trim();
        if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        }
    };
    let reference = |method: Option<&str>, reference: &str| {
        let parts: Vec<&str> = [method.unwrap_or(""), reference.trim()]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(" "))
        }
    };
    match event {
        LedgerEvent::LedgerOpened { .. } => "Ledger opened".into(),
        LedgerEvent::InvoiceDrafted { lines, total, .. } => format!(
            "Invoice drafted: {total} ({} line{})",
            lines.len(),
            if lines.len() == 1 { "" } else { "s" }
        ),
        LedgerEvent::InvoiceIssued {
            number,
            total,
            due_date,
            ..
        } => format!("Invoice {number} issued: {total} due {due_date}"),
        LedgerEvent::InvoiceVoided {
            invoice_id,
            reason,
            released,
            ..
        } => format!(
            "{} voided{}{}",
            capitalized(&invoice(invoice_id)),
            why(reason),
            match released.len() {
                0 => String::new(),
                1 => " (1 line of work back to unbilled)".to_owned(),
                n => format!(" ({n} lines of work back to unbilled)"),
            }
        ),
        LedgerEvent::CreditNoteIssued {
            number,
            invoice_id,
            amount,
            reason,
            ..
        } => format!(
            "Credit note {number} of {amount} on {}{}",
            invoice(invoice_id),
            why(reason)
        ),
        LedgerEvent::PaymentReceived {
            amount,
            method,
            reference: r,
            ..
        } => format!(
            "Payment of {amount} received{}",
            reference(Some(&method.as_str().replace('_', " ")), r)
        ),
        LedgerEvent::PaymentAllocated {
            invoice_id, amount, ..
        } => format!("{amount} of a payment applied to {}", invoice(invoice_id)),
        LedgerEvent::PaymentUnapplied {
            invoice_id, amount, ..
        } => format!("{amount} of a payment taken off {}", invoice(invoice_id)),
        LedgerEvent::PaymentRefunded {
            amount,
            reference: r,
            ..
        } => format!("{amount} of a payment refunded{}", reference(None, r)),
        LedgerEvent::PaymentReversed { reason, .. } => format!("Payment reversed{}", why(reason)),
        LedgerEvent::OverdueReminderDue {
            invoice_id, days, ..
        } => format!(
            "Reminder due: {} is {days} day{} overdue",
            invoice(invoice_id),
            if *days == 1 { "" } else { "s" }
        ),
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The sentence for a notification event.
fn notification_event_summary(event: &NotificationEvent) -> String {
    match event {
        NotificationEvent::NotificationQueued(q) => format!(
            "{} to {} by {} queued",
            q.kind.as_str().replace('_', " "),
            q.recipient.address,
            q.channel.as_str()
        ),
        NotificationEvent::NotificationRefused { queued, reason, .. } => format!(
            "{} to {} not sent: {reason}",
            queued.kind.as_str().replace('_', " "),
            queued.recipient.address
        ),
        NotificationEvent::NotificationSkipped { reason } => format!("Not sent: {reason}"),
        NotificationEvent::NotificationAttempted {
            attempt, provider, ..
        } => format!("Handed to {provider} (attempt {attempt})"),
        NotificationEvent::NotificationSent {
            provider_message_id,
            ..
        } => format!("Sent ({provider_message_id})"),
        NotificationEvent::NotificationFailed {
            error,
            permanent,
            retry_at,
            ..
        } => match (permanent, retry_at) {
            (false, Some(at)) => format!(
                "Failed: {error}; next try {}",
                at.format("%Y-%m-%d %H:%M UTC")
            ),
            _ => format!("Failed for good: {error}"),
        },
        NotificationEvent::NotificationUnconfirmed { attempt, .. } => format!(
            "Attempt {attempt} was interrupted: it may have gone out; not sent again on its own"
        ),
        NotificationEvent::NotificationDeliveryReported {
            status, error_code, ..
        } => match error_code {
            Some(code) => format!("Provider reports {status} (error {code})"),
            None => format!("Provider reports {status}"),
        },
    }
}

/// The sentence for an asset event (contacts are named by id; pages put names on them).
fn asset_event_summary(event: &AssetEvent) -> String {
    match event {
        AssetEvent::AssetRegistered { tag, details, .. } => {
            format!("{tag} {} registered ({})", details.name, details.category)
        }
        AssetEvent::AssetUpdated { details } => format!("{} updated", details.name),
        AssetEvent::AssetStatusChanged {
            status,
            previous_status,
        } => format!(
            "Status set to {} (was {})",
            status.label(),
            previous_status.label()
        ),
        AssetEvent::AssetAssigned {
            contact_id: Some(_),
            ..
        } => "Assigned to a contact".into(),
        AssetEvent::AssetAssigned {
            contact_id: None, ..
        } => "No longer assigned to anyone".into(),
        AssetEvent::AssetDocumentAttached { document } => {
            format!("Document “{}” attached", document.file_name)
        }
        AssetEvent::AssetDocumentRemoved { file_name, .. } => {
            format!("Document “{file_name}” removed")
        }
    }
}

/// The sentence for a credential event. Never a secret: events hold none.
fn credential_event_summary(event: &CredentialEvent) -> String {
    let from = |address: &str| {
        if address.is_empty() {
            String::new()
        } else {
            format!(" from {address}")
        }
    };
    match event {
        CredentialEvent::CredentialAdded { details, .. } => {
            format!("Credential “{}” added", details.label)
        }
        CredentialEvent::CredentialUpdated { details } => {
            format!("Credential “{}” changed", details.label)
        }
        CredentialEvent::CredentialSecretChanged { .. } => "Credential's secrets changed".into(),
        CredentialEvent::CredentialRevealed { address, .. } => {
            format!("Credential's secrets revealed{}", from(address))
        }
        CredentialEvent::CredentialShared {
            max_views,
            expires_at,
            ..
        } => format!(
            "Share link made ({max_views} view(s), until {})",
            expires_at.format("%Y-%m-%d %H:%M UTC")
        ),
        CredentialEvent::CredentialShareRevoked { .. } => "Share link revoked".into(),
        CredentialEvent::CredentialShareViewed { address, view, .. } => {
            format!("Share link used (view {view}){}", from(address))
        }
        CredentialEvent::CredentialRemoved {} => "Credential removed".into(),
    }
}

/// The sentence for a person's event. Never shows a hash or a digest.
fn user_event_summary(event: &UserEvent) -> String {
    match event {
        UserEvent::UserRegistered { email, name, .. } => format!("{name} <{email}> registered"),
        UserEvent::UserInvited { email, name, .. } => format!("{name} <{email}> invited"),
        UserEvent::InvitationAccepted {} => "Invitation accepted".into(),
        UserEvent::InvitationRenewed { .. } => "Invitation sent again".into(),
        UserEvent::UserRenamed { name } => format!("Renamed to {name}"),
        UserEvent::PasswordSet { .. } => "Password set".into(),
        UserEvent::PasswordResetRequested { .. } => "Password reset requested".into(),
        UserEvent::PasswordResetCompleted {} => "Password reset completed".into(),
        UserEvent::ApiTokenCreated { name, .. } => format!("API token “{name}” created"),
        UserEvent::ApiTokenRevoked { .. } => "API token revoked".into(),
    }
}

/// The sentence for a work order event. People are named by id (pages put names on them);
/// times are shown in `zone` when given, else in UTC (marked so). A comment's text is never
/// part of the sentence: the order's timeline shows it on its own.
pub fn work_order_event_summary(event: &WorkOrderEvent, zone: Option<&TimeZone>) -> String {
    let time = |at: &DateTime<Utc>| match zone {
        Some(zone) => at
            .with_timezone(&zone.tz())
            .format("%H:%M on %Y-%m-%d")
            .to_string(),
        None => at.format("%H:%M UTC on %Y-%m-%d").to_string(),
    };
    let escalated = |to: &Option<Uuid>| match to {
        Some(id) => format!(", escalated to {id}"),
        None => String::new(),
    };
    match event {
        WorkOrderEvent::WorkOrderOpened {
            details,
            priority,
            origin,
            ..
        } => {
            let by = match origin {
                Origin::Staff => "",
                Origin::Customer => " by the customer",
            };
            format!(
                "Opened{by}: {} ({}, {})",
                details.title,
                priority.as_str(),
                details.work_type
            )
        }
        WorkOrderEvent::WorkOrderChanged { details } => {
            format!("Details changed: {} ({})", details.title, details.work_type)
        }
        WorkOrderEvent::WorkOrderPriorityChanged {
            priority,
            previous_priority,
            ..
        } => format!(
            "Priority: {} (was {})",
            priority.as_str(),
            previous_priority.as_str()
        ),
        WorkOrderEvent::WorkOrderAssigned {
            assignee_id: Some(id),
            ..
        } => format!("Assigned to {id}"),
        WorkOrderEvent::WorkOrderAssigned {
            assignee_id: None, ..
        } => "Unassigned".into(),
        WorkOrderEvent::WorkOrderStatusChanged {
            status,
            previous_status,
            link_id,
            ..
        } => {
            let via = if link_id.is_some() {
                " by technician link"
            } else {
                ""
            };
            format!(
                "Status: {} (was {}){via}",
                status.label(),
                previous_status.label()
            )
        }
        WorkOrderEvent::WorkOrderSlaPaused { .. } => "SLA clock paused".into(),
        WorkOrderEvent::WorkOrderSlaResumed {
            resolution_due_at, ..
        } => format!(
            "SLA clock running again: resolution due {}",
            time(resolution_due_at)
        ),
        WorkOrderEvent::WorkOrderResponded { .. } => "First response".into(),
        WorkOrderEvent::WorkOrderCommented { comment } => match (comment.origin, comment.public) {
            (Origin::Customer, _) => "Comment from the customer".into(),
            (Origin::Staff, true) => "Comment (public)".into(),
            (Origin::Staff, false) => "Comment (internal)".into(),
        },
        WorkOrderEvent::WorkOrderAttachmentAdded { document } => {
            format!("Attachment “{}” added", document.file_name)
        }
        WorkOrderEvent::TimerStarted { .. } => "Timer started".into(),
        WorkOrderEvent::TimerCancelled { .. } => "Timer cancelled".into(),
        WorkOrderEvent::TimeLogged { entry } => {
            let after_hours = if entry.after_hours {
                ", after hours"
            } else {
                ""
            };
            match entry.billing {
                Billing::Billable => format!(
                    "{} min logged (billable{after_hours}, {})",
                    entry.minutes, entry.amount
                ),
                Billing::Contract => {
                    format!("{} min logged (contract{after_hours})", entry.minutes)
                }
            }
        }
        WorkOrderEvent::TimeEntryRemoved { .. } => "Time entry removed".into(),
        WorkOrderEvent::MaterialAdded { material, .. } => {
            let sku = if material.sku.is_empty() {
                String::new()
            } else {
                format!(" [{}]", material.sku)
            };
            match material.billing {
                Billing::Billable => format!(
                    "Material added: {} × {}{sku} at {} (billable, {})",
                    material.quantity, material.description, material.unit_price, material.amount
                ),
                Billing::Contract => format!(
                    "Material added: {} × {}{sku} (contract)",
                    material.quantity, material.description
                ),
            }
        }
        WorkOrderEvent::MaterialRemoved { .. } => "Material removed".into(),
        WorkOrderEvent::SlaWarningRaised {
            target,
            due_at,
            escalated_to,
        } => format!(
            "SLA warning: {} due {}{}",
            target.as_str(),
            time(due_at),
            escalated(escalated_to)
        ),
        WorkOrderEvent::SlaBreached {
            target,
            escalated_to,
            ..
        } => format!(
            "SLA breached: {}{}",
            target.as_str(),
            escalated(escalated_to)
        ),
        WorkOrderEvent::StatusLinkIssued { kind, .. } => match kind {
            LinkKind::Technician => "Technician link issued".into(),
            LinkKind::Customer => "Customer link issued".into(),
        },
        WorkOrderEvent::StatusLinkRevoked { .. } => "Status link revoked".into(),
        WorkOrderEvent::StatusLinkUsed { used, .. } => format!("Status link used (use {used})"),
        WorkOrderEvent::WorkOrderRated { rating, .. } => format!("Rated {rating}/5"),
    }
}

fn company_summary(event_type: &str, payload: &Value) -> String {
    match serde_json::from_value::<CompanyEvent>(payload.clone()) {
        Ok(event) => company_event_summary(&event),
        Err(_) => humanize(event_type),
    }
}

/// The sentence for a company event; the one place that words them.
fn company_event_summary(event: &CompanyEvent) -> String {
    match event {
        CompanyEvent::CompanyRegistered {
            name,
            monthly_rate,
            customer_status,
            ..
        } => {
            let status = match customer_status {
                CustomerStatus::Active => String::new(),
                other => format!(" ({})", other.label().to_lowercase()),
            };
            format!("Registered as {name} at {monthly_rate} a month{status}")
        }
        CompanyEvent::CompanyRenamed {
            name,
            previous_name,
        } => format!("Renamed to {name} (was {previous_name})"),
        CompanyEvent::MonthlyRateSet {
            monthly_rate,
            previous_rate,
        } => format!("Monthly rate set to {monthly_rate} (was {previous_rate})"),
        CompanyEvent::CompanyArchived {} => "Archived".into(),
        CompanyEvent::CompanyRestored {} => "Restored".into(),
        CompanyEvent::CompanyStatusChanged {
            status,
            previous_status,
        } => format!(
            "Customer status set to {} (was {})",
            status.label().to_lowercase(),
            previous_status.label().to_lowercase()
        ),
        CompanyEvent::CompanyProfileUpdated { changed, .. } if !changed.is_empty() => {
            let words: Vec<String> = changed.iter().map(|f| f.replace('_', " ")).collect();
            format!("Profile changed: {}", words.join(", "))
        }
        CompanyEvent::CompanyProfileUpdated { .. } => "Profile changed".into(),
        CompanyEvent::ContractCoverageChanged { coverage } => {
            if coverage.covered_work_types.is_empty() {
                "Contract coverage: nothing covered".into()
            } else {
                let hours = match coverage.included_minutes {
                    Some(_) => format!("{} hours a month", coverage.included_hours()),
                    None => "unlimited hours".into(),
                };
                format!(
                    "Contract coverage: {} ({hours})",
                    coverage.covered_work_types.join(", ")
                )
            }
        }
        CompanyEvent::ContractBillingChanged { billing } => match billing {
            Some(b) => format!(
                "Contract billed from {} on day {} of each month{}, payable in {} days{}",
                b.start_date,
                b.billing_day,
                b.end_date
                    .map(|end| format!(" until {end}"))
                    .unwrap_or_default(),
                b.payment_terms_days,
                if b.tax_exempt { ", tax exempt" } else { "" }
            ),
            None => "Contract no longer billed".into(),
        },
        CompanyEvent::SubscriptionSet { subscription, .. } => match subscription.end_date {
            Some(end) => format!(
                "Subscription ({} × service) from {} until {end}",
                subscription.quantity.normalize(),
                subscription.start_date
            ),
            None => format!(
                "Subscription ({} × service) from {}",
                subscription.quantity.normalize(),
                subscription.start_date
            ),
        },
    }
}

/// `CompanyRegistered` → "Company registered", `SLABreached` → "SLA breached",
/// `payment_failed` → "Payment failed".
pub fn humanize(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' || c == '-' || c.is_whitespace() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            continue;
        }
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next = chars.get(i + 1).copied();
        let boundary = c.is_uppercase()
            && !word.is_empty()
            && (prev.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit())
                || (prev.is_some_and(char::is_uppercase) && next.is_some_and(char::is_lowercase)));
        if boundary {
            words.push(std::mem::take(&mut word));
        }
        word.push(c);
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut out = String::with_capacity(name.len() + words.len());
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let acronym = word.chars().count() > 1 && word.chars().all(|c| !c.is_lowercase());
        if acronym {
            out.push_str(word);
        } else if i == 0 {
            let mut cs = word.chars();
            if let Some(first) = cs.next() {
                out.extend(first.to_uppercase());
                out.extend(cs.flat_map(char::to_lowercase));
            }
        } else {
            out.extend(word.chars().flat_map(char::to_lowercase));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_each_company_event() {
        let s = |event_type: &str, payload: Value| summary("company", event_type, &payload);
        assert_eq!(
            s(
                "CompanyRegistered",
                serde_json::json!({"CompanyRegistered": {"name": "Acme", "monthly_rate": "10.00"}})
            ),
            "Registered as Acme at 10.00 a month"
        );
        assert_eq!(
            s(
                "CompanyRenamed",
                serde_json::json!({"CompanyRenamed": {"name": "B", "previous_name": "A"}})
            ),
            "Renamed to B (was A)"
        );
        assert_eq!(
            s(
                "MonthlyRateSet",
                serde_json::json!({"MonthlyRateSet": {"monthly_rate": "2.00", "previous_rate": "1.00"}})
            ),
            "Monthly rate set to 2.00 (was 1.00)"
        );
        assert_eq!(
            s(
                "CompanyArchived",
                serde_json::json!({"CompanyArchived": {}})
            ),
            "Archived"
        );
        assert_eq!(
            s(
                "CompanyRestored",
                serde_json::json!({"CompanyRestored": {}})
            ),
            "Restored"
        );
        assert_eq!(
            s(
                "CompanyStatusChanged",
                serde_json::json!({"CompanyStatusChanged": {"status": "former", "previous_status": "active"}})
            ),
            "Customer status set to former customer (was active)"
        );
        assert_eq!(
            s(
                "CompanyProfileUpdated",
                serde_json::json!({"CompanyProfileUpdated": {"profile": {}, "changed": ["billing_address", "tags"]}})
            ),
            "Profile changed: billing address, tags"
        );
        assert_eq!(
            s(
                "CompanyRegistered",
                serde_json::json!({"CompanyRegistered": {"name": "Acme", "monthly_rate": "0.00", "customer_status": "prospect"}})
            ),
            "Registered as Acme at 0.00 a month (prospect)"
        );
        assert_eq!(s("CompanyMerged", serde_json::json!({})), "Company merged");
    }

    #[test]
    fn describes_work_order_events_without_comment_bodies() {
        use cqrs_es::DomainEvent;
        use domain::workorder::{
            Comment, Priority, SlaTarget, Status, TimeEntry, WorkOrderDetails,
        };
        let s = |event: WorkOrderEvent| {
            let payload = serde_json::to_value(&event).unwrap();
            summary("work_order", &event.event_type(), &payload)
        };
        let at: DateTime<Utc> = "2026-11-16T16:00:00Z".parse().unwrap();
        let opened = WorkOrderEvent::WorkOrderOpened {
            number: 1,
            company_id: Uuid::nil(),
            details: WorkOrderDetails {
                title: "Printer jams".into(),
                work_type: "repair".into(),
                ..Default::default()
            },
            priority: Priority::Urgent,
            origin: Origin::Staff,
            holds_assets: false,
            opened_at: at,
            sla: None,
        };
        assert_eq!(s(opened), "Opened: Printer jams (urgent, repair)");
        let tech = Uuid::from_u128(7);
        assert_eq!(
            s(WorkOrderEvent::WorkOrderAssigned {
                assignee_id: Some(tech),
                previous_assignee_id: None
            }),
            format!("Assigned to {tech}")
        );
        assert_eq!(
            s(WorkOrderEvent::WorkOrderStatusChanged {
                status: Status::InProgress,
                previous_status: Status::Assigned,
                at,
                link_id: None
            }),
            "Status: in progress (was assigned)"
        );
        let comment = WorkOrderEvent::WorkOrderCommented {
            comment: Comment {
                comment_id: Uuid::nil(),
                author_id: Some(tech),
                origin: Origin::Staff,
                public: true,
                body: "secret words".into(),
            },
        };
        assert_eq!(s(comment), "Comment (public)");
        assert_eq!(
            s(WorkOrderEvent::TimerStarted {
                technician_id: tech,
                at
            }),
            "Timer started"
        );
        let entry = TimeEntry::new(
            Uuid::nil(),
            tech,
            at.date_naive(),
            45,
            String::new(),
            Billing::Billable,
            false,
            domain::values::Amount::parse("rate", "95").unwrap(),
            domain::values::Amount::ZERO,
        );
        assert_eq!(
            s(WorkOrderEvent::TimeLogged { entry }),
            "45 min logged (billable, 71.25)"
        );
        let material = |billing| {
            domain::workorder::Material::new(
                Uuid::nil(),
                "Cat6 cable",
                "C6",
                "2.5".parse().unwrap(),
                domain::values::Amount::parse("unit_price", "3.99").unwrap(),
                billing,
                at.date_naive(),
                tech,
            )
            .unwrap()
        };
        assert_eq!(
            s(WorkOrderEvent::MaterialAdded {
                company_id: Uuid::nil(),
                material: material(Billing::Billable)
            }),
            "Material added: 2.5 × Cat6 cable [C6] at 3.99 (billable, 9.98)"
        );
        assert_eq!(
            s(WorkOrderEvent::MaterialAdded {
                company_id: Uuid::nil(),
                material: material(Billing::Contract)
            }),
            "Material added: 2.5 × Cat6 cable [C6] (contract)"
        );
        let warning = WorkOrderEvent::SlaWarningRaised {
            target: SlaTarget::Response,
            due_at: at,
            escalated_to: None,
        };
        assert_eq!(
            s(warning.clone()),
            "SLA warning: response due 16:00 UTC on 2026-11-16"
        );
        let new_york = TimeZone::parse("America/New_York").unwrap();
        assert_eq!(
            work_order_event_summary(&warning, Some(&new_york)),
            "SLA warning: response due 11:00 on 2026-11-16"
        );
        assert_eq!(
            s(WorkOrderEvent::SlaBreached {
                target: SlaTarget::Resolution,
                due_at: at,
                escalated_to: None
            }),
            "SLA breached: resolution"
        );
        assert_eq!(
            s(WorkOrderEvent::StatusLinkIssued {
                link_id: Uuid::nil(),
                kind: LinkKind::Technician,
                token_digest: "d".into(),
                user_id: Some(tech),
                expires_at: at,
                max_uses: 20
            }),
            "Technician link issued"
        );
        assert_eq!(
            s(WorkOrderEvent::WorkOrderRated {
                rating: 4,
                comment: String::new(),
                link_id: Uuid::nil()
            }),
            "Rated 4/5"
        );
    }

    #[test]
    fn describes_ledger_events_with_amounts_and_numbers() {
        use cqrs_es::DomainEvent;
        use domain::ledger::Method;
        use rust_decimal::Decimal;
        let s = |event: LedgerEvent| {
            let payload = serde_json::to_value(&event).unwrap();
            summary("ledger", &event.event_type(), &payload)
        };
        let dec = |text: &str| text.parse::<Decimal>().unwrap();
        let day = |text: &str| text.parse::<chrono::NaiveDate>().unwrap();
        let invoice_id = Uuid::parse_str("1a2b3c4d-0000-4000-8000-000000000001").unwrap();
        assert_eq!(
            s(LedgerEvent::InvoiceIssued {
                invoice_id,
                number: 42,
                issue_date: day("2026-12-01"),
                due_date: day("2026-12-15"),
                lines: None,
                total: dec("1250.00"),
                bills: vec![],
            }),
            "Invoice 42 issued: 1250.00 due 2026-12-15"
        );
        assert_eq!(
            s(LedgerEvent::PaymentReceived {
                payment_id: Uuid::nil(),
                amount: dec("700.00"),
                received_on: day("2026-12-10"),
                method: Method::Check,
                reference: "1234".into(),
            }),
            "Payment of 700.00 received (check 1234)"
        );
        assert_eq!(
            s(LedgerEvent::PaymentReceived {
                payment_id: Uuid::nil(),
                amount: dec("5.00"),
                received_on: day("2026-12-10"),
                method: Method::BankTransfer,
                reference: String::new(),
            }),
            "Payment of 5.00 received (bank transfer)"
        );
        assert_eq!(
            s(LedgerEvent::PaymentAllocated {
                payment_id: Uuid::nil(),
                invoice_id,
                amount: dec("700.00"),
                on: day("2026-12-10"),
            }),
            "700.00 of a payment applied to invoice 1a2b3c4d"
        );
        assert_eq!(
            s(LedgerEvent::InvoiceVoided {
                invoice_id,
                on: day("2026-12-10"),
                reason: "sent twice".into(),
                released: Vec::new(),
            }),
            "Invoice 1a2b3c4d voided: sent twice"
        );
        assert_eq!(
            s(LedgerEvent::InvoiceVoided {
                invoice_id,
                on: day("2026-12-10"),
                reason: "sent twice".into(),
                released: vec!["time/1".into(), "material/2".into()],
            }),
            "Invoice 1a2b3c4d voided: sent twice (2 lines of work back to unbilled)"
        );
        assert_eq!(
            s(LedgerEvent::CreditNoteIssued {
                credit_note_id: Uuid::nil(),
                number: 3,
                invoice_id,
                amount: dec("50.00"),
                date: day("2026-12-11"),
                reason: String::new(),
            }),
            "Credit note 3 of 50.00 on invoice 1a2b3c4d"
        );
        assert_eq!(
            s(LedgerEvent::PaymentReversed {
                payment_id: Uuid::nil(),
                on: day("2026-12-20"),
                reason: "returned by the bank".into(),
            }),
            "Payment reversed: returned by the bank"
        );
        assert_eq!(
            s(LedgerEvent::OverdueReminderDue {
                invoice_id,
                days: 7,
                on: day("2026-12-22"),
            }),
            "Reminder due: invoice 1a2b3c4d is 7 days overdue"
        );
    }

    #[test]
    fn unknown_events_read_as_words() {
        assert_eq!(
            summary("invoice", "InvoiceIssued", &Value::Null),
            "Invoice issued"
        );
        assert_eq!(humanize("CompanyRegistered"), "Company registered");
        assert_eq!(humanize("SLABreached"), "SLA breached");
        assert_eq!(humanize("SmsSent"), "Sms sent");
        assert_eq!(humanize("payment_failed"), "Payment failed");
        assert_eq!(humanize("Probed"), "Probed");
        assert_eq!(humanize("Vat2Applied"), "Vat2 applied");
        assert_eq!(humanize(""), "");
    }
}
