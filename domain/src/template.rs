//! Message templates (issue 6, groundwork): what a notification says, per kind of message, with
//! placeholders such as `{company}` or `{view_link}` filled in when it is sent.
//!
//! A template is checked when it is saved: every placeholder must be one its kind provides
//! (`Kind::placeholders`), braces are written `{{` and `}}` when meant literally. Rendering
//! refuses when a value is missing and names every missing one, so a message never goes out
//! with a hole in it. Values are escaped in the HTML part. Every kind has a default, shipped
//! here, that a tenant may replace.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// What a message is about; each kind has its own placeholders and default wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    WorkOrderCreated,
    WorkOrderAssigned,
    WorkOrderStatusChanged,
    InvoiceIssued,
    PaymentReceived,
    PaymentReminder,
    PasswordReset,
    Invitation,
    /// The settings pages' "send a test message".
    Test,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Self::WorkOrderCreated,
        Self::WorkOrderAssigned,
        Self::WorkOrderStatusChanged,
        Self::InvoiceIssued,
        Self::PaymentReceived,
        Self::PaymentReminder,
        Self::PasswordReset,
        Self::Invitation,
        Self::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::WorkOrderCreated => "work_order_created",
            Self::WorkOrderAssigned => "work_order_assigned",
            Self::WorkOrderStatusChanged => "work_order_status_changed",
            Self::InvoiceIssued => "invoice_issued",
            Self::PaymentReceived => "payment_received",
            Self::PaymentReminder => "payment_reminder",
            Self::PasswordReset => "password_reset",
            Self::Invitation => "invitation",
            Self::Test => "test",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text.trim())
    }

    /// The placeholders a message of this kind can fill.
    pub fn placeholders(self) -> &'static [&'static str] {
        const ORGANISATION: &str = "organisation";
        match self {
            Self::WorkOrderCreated => &[
                ORGANISATION,
                "company",
                "contact",
                "work_order",
                "title",
                "priority",
                "view_link",
            ],
            Self::WorkOrderAssigned => &[
                ORGANISATION,
                "company",
                "technician",
                "work_order",
                "title",
                "priority",
                "due",
                "status_link",
            ],
            Self::WorkOrderStatusChanged => &[
                ORGANISATION,
                "company",
                "contact",
                "work_order",
                "title",
                "status",
                "view_link",
            ],
            Self::InvoiceIssued => &[ORGANISATION, "company", "invoice", "amount", "due_date"],
            Self::PaymentReceived => &[ORGANISATION, "company", "amount", "received_on", "balance"],
            Self::PaymentReminder => &[
                ORGANISATION,
                "company",
                "invoice",
                "amount",
                "due_date",
                "days_overdue",
            ],
            Self::PasswordReset => &[ORGANISATION, "name", "link"],
            Self::Invitation => &[ORGANISATION, "name", "link", "role"],
            Self::Test => &[ORGANISATION],
        }
    }
}

/// The parts of a message: the email's subject, text and HTML bodies, and the SMS text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub subject: String,
    pub text: String,
    /// Empty: the email has a text part only.
    #[serde(default)]
    pub html: String,
    /// Empty: this kind is never sent by SMS.
    #[serde(default)]
    pub sms: String,
}

/// One piece of a template: literal text or a placeholder's name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(String),
    Value(&'a str),
}

/// Splits `source` into text and placeholders; an unbalanced brace or an unknown name is an
/// error naming it.
fn pieces<'a>(source: &'a str, allowed: &[&str]) -> Result<Vec<Piece<'a>>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = source;
    while let Some(i) = rest.find(['{', '}']) {
        text.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            text.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            text.push('}');
            rest = after;
        } else if tail.starts_with('}') {
            return Err("a lone \"}\" (write \"}}\" for a brace)".into());
        } else {
            let Some(end) = tail.find('}') else {
                return Err("a \"{\" is never closed (write \"{{\" for a brace)".into());
            };
            let name = &tail[1..end];
            if !allowed.contains(&name) {
                return Err(format!(
                    "{{{name}}} is not a placeholder of this message; it may use {}",
                    allowed
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if !text.is_empty() {
                out.push(Piece::Text(std::mem::take(&mut text)));
            }
            out.push(Piece::Value(name));
            rest = &tail[end + 1..];
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

/// The longest part accepted (characters).
pub const MAX_PART_CHARS: usize = 20_000;
/// The longest SMS text accepted before filling (about 4 SMS segments).
pub const MAX_SMS_CHARS: usize = 600;

impl Template {
    /// Checks every part against the kind's placeholders; all problems at once. The subject
    /// and text are required, the HTML and SMS parts optional.
    pub fn check(&self, kind: Kind) -> Result<(), Vec<ValidationError>> {
        let allowed = kind.placeholders();
        let mut errors = Vec::new();
        let parts: [(&'static str, &str, usize, bool); 4] = [
            ("subject", &self.subject, 300, true),
            ("text", &self.text, MAX_PART_CHARS, true),
            ("html", &self.html, MAX_PART_CHARS, false),
            ("sms", &self.sms, MAX_SMS_CHARS, false),
        ];
        for (field, source, max, required) in parts {
            if required && source.trim().is_empty() {
                errors.push(ValidationError::new(field, "must not be empty"));
            } else if source.chars().count() > max {
                errors.push(ValidationError::new(
                    field,
                    format!("must be at most {max} characters"),
                ));
            } else if field == "subject" && source.contains(['\r', '\n']) {
                errors.push(ValidationError::new(field, "must be one line"));
            } else if let Err(message) = pieces(source, allowed) {
                errors.push(ValidationError::new(field, message));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Fills the placeholders. Refuses, naming every placeholder without a value (an empty
    /// value counts as missing), so that no message goes out with a hole in it.
    pub fn render(&self, kind: Kind, values: &BTreeMap<&str, String>) -> Result<Rendered, Missing> {
        let allowed = kind.placeholders();
        let mut missing = Vec::new();
        let mut fill = |source: &str, escape: bool| -> String {
            // A template that no longer passes `check` renders as its own text: the caller
            // checked it when it was saved; an old one must still not lose a message.
            let Ok(pieces) = pieces(source, allowed) else {
                return source.to_owned();
            };
            let mut out = String::with_capacity(source.len());
            for piece in pieces {
                match piece {
                    Piece::Text(text) => out.push_str(&text),
                    Piece::Value(name) => match values.get(name).filter(|v| !v.trim().is_empty()) {
                        Some(value) if escape => out.push_str(&escape_html(value)),
                        Some(value) => out.push_str(value),
                        None => {
                            if !missing.iter().any(|m: &String| m == name) {
                                missing.push(name.to_owned());
                            }
                        }
                    },
                }
            }
            out
        };
        let rendered = Rendered {
            subject: fill(&self.subject, false).replace(['\r', '\n'], " "),
            text: fill(&self.text, false),
            html: fill(&self.html, true),
            sms: fill(&self.sms, false),
        };
        if missing.is_empty() {
            Ok(rendered)
        } else {
            Err(Missing(missing))
        }
    }

    /// The wording every tenant starts with.
    pub fn default_for(kind: Kind) -> Self {
        let (subject, text, sms) = match kind {
            Kind::WorkOrderCreated => (
                "Work order {work_order} received: {title}",
                "Hello {contact},\n\nWe have received your request \"{title}\" for {company}; it \
                 is work order {work_order} ({priority}).\nFollow its progress here: \
                 {view_link}\n\n{organisation}",
                "{organisation}: work order {work_order} \"{title}\" received. Progress: \
                 {view_link}",
            ),
            Kind::WorkOrderAssigned => (
                "Assigned to you: {work_order} {title} ({company})",
                "Hello {technician},\n\nWork order {work_order} \"{title}\" for {company} \
                 ({priority}) is assigned to you. {due}\nSet its status from your phone: \
                 {status_link}\n\n{organisation}",
                "{work_order} {title} ({company}) is yours. Status: {status_link}",
            ),
            Kind::WorkOrderStatusChanged => (
                "Work order {work_order} is now {status}",
                "Hello {contact},\n\nWork order {work_order} \"{title}\" for {company} is now \
                 {status}.\nDetails: {view_link}\n\n{organisation}",
                "{organisation}: work order {work_order} is now {status}. {view_link}",
            ),
            Kind::InvoiceIssued => (
                "Invoice {invoice} from {organisation}",
                "Hello,\n\nPlease find attached invoice {invoice} for {company}: {amount}, due \
                 on {due_date}.\n\nThank you,\n{organisation}",
                "",
            ),
            Kind::PaymentReceived => (
                "Payment received: {amount}",
                "Hello,\n\nWe received {company}'s payment of {amount} on {received_on}. \
                 Balance now: {balance}.\n\nThank you,\n{organisation}",
                "",
            ),
            Kind::PaymentReminder => (
                "Reminder: invoice {invoice} is {days_overdue} days overdue",
                "Hello,\n\nInvoice {invoice} for {company} ({amount}) was due on {due_date} \
                 and is {days_overdue} days overdue. Please arrange payment.\n\n{organisation}",
                "",
            ),
            Kind::PasswordReset => (
                "Reset your {organisation} password",
                "Hello {name},\n\nTo choose a new password, open this link within an hour: \
                 {link}\nIf you did not ask for it, ignore this message.\n\n{organisation}",
                "",
            ),
            Kind::Invitation => (
                "You are invited to {organisation}",
                "Hello {name},\n\nYou are invited to {organisation} as {role}. Open this link \
                 to choose your password: {link}\n\n{organisation}",
                "",
            ),
            Kind::Test => (
                "Test message from {organisation}",
                "This is a test message from {organisation}: sending works.",
                "Test message from {organisation}: sending works.",
            ),
        };
        Self {
            subject: subject.into(),
            text: text.into(),
            html: String::new(),
            sms: sms.into(),
        }
    }
}

/// A message ready to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub sms: String,
}

/// The placeholders a render found without a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the message cannot be sent: no value for {}", .0.iter().map(|n| format!("{{{n}}}")).collect::<Vec<_>>().join(", "))]
pub struct Missing(pub Vec<String>);

/// Text made safe inside HTML.
pub fn escape_html(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn every_default_passes_its_own_check() {
        for kind in Kind::ALL {
            Template::default_for(kind)
                .check(kind)
                .unwrap_or_else(|e| panic!("{kind:?}: {e:?}"));
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn placeholders_are_filled_and_braces_can_be_literal() {
        let t = Template {
            subject: "Invoice {invoice}".into(),
            text: "{{not a placeholder}} {company} owes {amount} by {due_date}.".into(),
            html: "<p>{company} owes <b>{amount}</b></p>".into(),
            sms: String::new(),
        };
        t.check(Kind::InvoiceIssued).unwrap();
        let v = values(&[
            ("invoice", "2026-0042"),
            ("company", "Smith & <Sons>"),
            ("amount", "700.00 USD"),
            ("due_date", "2026-12-01"),
        ]);
        let r = t.render(Kind::InvoiceIssued, &v).unwrap();
        assert_eq!(r.subject, "Invoice 2026-0042");
        assert_eq!(
            r.text,
            "{not a placeholder} Smith & <Sons> owes 700.00 USD by 2026-12-01."
        );
        assert_eq!(
            r.html,
            "<p>Smith &amp; &lt;Sons&gt; owes <b>700.00 USD</b></p>"
        );
    }

    #[test]
    fn a_missing_value_refuses_the_whole_message_and_names_each_one() {
        let t = Template::default_for(Kind::WorkOrderCreated);
        let v = values(&[
            ("organisation", "Acme IT"),
            ("company", "Northwind"),
            ("contact", "Ann"),
            ("work_order", "#12"),
            ("title", "Printer"),
            ("priority", "  "),
        ]);
        let missing = t.render(Kind::WorkOrderCreated, &v).unwrap_err();
        assert_eq!(missing.0, ["priority", "view_link"]);
        assert_eq!(
            missing.to_string(),
            "the message cannot be sent: no value for {priority}, {view_link}"
        );
    }

    #[test]
    fn bad_templates_are_refused_field_by_field() {
        let t = Template {
            subject: "Line one\nline two".into(),
            text: "Dear {customer}".into(),
            html: "<p>{amount</p>".into(),
            sms: "x".repeat(MAX_SMS_CHARS + 1),
        };
        let errors = t.check(Kind::InvoiceIssued).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["subject", "text", "html", "sms"]);
        assert!(errors[1]
            .message
            .contains("{customer} is not a placeholder"));
        assert!(
            errors[1].message.contains("{amount}"),
            "says what may be used"
        );
        assert!(errors[2].message.contains("never closed"));
        let empty = Template {
            subject: " ".into(),
            text: String::new(),
            html: "a } b".into(),
            sms: String::new(),
        };
        let errors = empty.check(Kind::Test).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["subject", "text", "html"]);
    }

    #[test]
    fn a_value_cannot_break_the_subject_into_headers() {
        let t = Template::default_for(Kind::Test);
        let v = values(&[("organisation", "Acme\r\nBcc: someone@example.com")]);
        let r = t.render(Kind::Test, &v).unwrap();
        assert!(!r.subject.contains('\n') && !r.subject.contains('\r'));
    }
}
