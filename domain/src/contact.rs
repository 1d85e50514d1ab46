//! A contact: one of a customer company's people (issue 4). Not a user of ours (a contact may
//! later be invited to the portal, which makes a `client` user tied to the same company).
//!
//! Commands carry already-parsed details (`ContactDetails::parse` at the edge reports every
//! bad field at once); the aggregate decides what changed and refuses what its state forbids.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::identity::Email;
use crate::{ErrorKind, HasErrorKind, ValidationError};

/// What we know about a contact. Every text field is trimmed; empty means unknown.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactDetails {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(default)]
    pub office_phone: String,
    #[serde(default)]
    pub cell_phone: String,
    #[serde(default)]
    pub department: String,
    #[serde(default)]
    pub position: String,
    /// The company's main contact.
    #[serde(default)]
    pub primary: bool,
    /// Receives the company's invoices and reminders.
    #[serde(default)]
    pub billing: bool,
    #[serde(default)]
    pub notes: String,
}

/// The raw fields of a contact form or request, before checking.
#[derive(Debug, Default, Clone)]
pub struct ContactInput<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub office_phone: &'a str,
    pub cell_phone: &'a str,
    pub department: &'a str,
    pub position: &'a str,
    pub primary: bool,
    pub billing: bool,
    pub notes: &'a str,
}

/// A trimmed free-text field: at most `max` characters, no control characters (line breaks and
/// tabs allowed when `multi_line`). Shared with the company profile.
pub(crate) fn text(
    field: &'static str,
    value: &str,
    max: usize,
    multi_line: bool,
    errors: &mut Vec<ValidationError>,
) -> String {
    let value = value.trim();
    if value.chars().count() > max {
        errors.push(ValidationError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    } else if value
        .chars()
        .any(|c| c.is_control() && !(multi_line && (c == '\n' || c == '\r' || c == '\t')))
    {
        errors.push(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    value.to_owned()
}

/// A phone number as people write it: digits with `+ - . ( ) /` and spaces, 3 to 30
/// characters, at least 3 digits; an extension after `x` or `ext`. Shared with the company
/// profile.
pub(crate) fn phone(field: &'static str, value: &str, errors: &mut Vec<ValidationError>) -> String {
    let value = value.trim();
    if value.is_empty() {
        return String::new();
    }
    // The extension starts at the first `x` or `e` (`x12`, `ext. 12`), found on the string
    // itself so the index is a character boundary whatever the input.
    let at = value
        .char_indices()
        .find(|(_, c)| matches!(c.to_ascii_lowercase(), 'x' | 'e'))
        .map(|(i, _)| i);
    let (number, extension_ok) = match at {
        Some(at) => {
            let rest = value[at..].to_ascii_lowercase();
            let digits = ["ext.", "ext", "x"]
                .iter()
                .find_map(|marker| rest.strip_prefix(marker))
                .map(str::trim)
                .unwrap_or("-");
            (
                &value[..at],
                (1..=6).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()),
            )
        }
        None => (value, true),
    };
    let digits = number.chars().filter(char::is_ascii_digit).count();
    let allowed = |c: char| c.is_ascii_digit() || " +-.()/".contains(c);
    let ok = (3..=30).contains(&value.chars().count())
        && digits >= 3
        && number.chars().all(allowed)
        && extension_ok;
    if !ok {
        errors.push(ValidationError::new(
            field,
            "must be a phone number such as +1 555 0100 or (555) 010-0199 x12",
        ));
    }
    value.to_owned()
}

impl ContactDetails {
    /// Checks every field; all problems are reported at once.
    pub fn parse(input: &ContactInput<'_>) -> Result<Self, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let name = text("name", input.name, 200, false, &mut errors);
        if name.is_empty() {
            errors.push(ValidationError::new("name", "must not be empty"));
        }
        let email = match input.email.trim() {
            "" => None,
            raw => match Email::parse(raw) {
                Ok(email) => Some(email),
                Err(e) => {
                    errors.push(ValidationError::new("email", e.message));
                    None
                }
            },
        };
        let details = Self {
            name,
            email,
            office_phone: phone("office_phone", input.office_phone, &mut errors),
            cell_phone: phone("cell_phone", input.cell_phone, &mut errors),
            department: text("department", input.department, 100, false, &mut errors),
            position: text("position", input.position, 100, false, &mut errors),
            primary: input.primary,
            billing: input.billing,
            notes: text("notes", input.notes, 4000, true, &mut errors),
        };
        if errors.is_empty() {
            Ok(details)
        } else {
            Err(errors)
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub exists: bool,
    pub company_id: Uuid,
    pub details: ContactDetails,
    /// Left the customer company: kept for history, not offered for new work.
    pub former: bool,
    /// Which notifications reach this person, and how.
    #[serde(default)]
    pub notifications: NotificationPreferences,
}

/// A person's choice of channels. By default every channel the person has an address for is
/// used (email when there is an email address, SMS when there is a cell phone); a channel
/// switched off is not used, and `opted_out` stops every message about work orders, invoices
/// and payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationPreferences {
    pub email: bool,
    pub sms: bool,
    #[serde(default)]
    pub opted_out: bool,
}

impl Default for NotificationPreferences {
    fn default() -> Self {
        Self {
            email: true,
            sms: true,
            opted_out: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ContactCommand {
    Add {
        company_id: Uuid,
        details: ContactDetails,
    },
    /// Replaces the details (the form shows them all); nothing happens when nothing changed.
    Update {
        details: ContactDetails,
    },
    MarkFormer,
    MarkCurrent,
    SetNotifications {
        preferences: NotificationPreferences,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ContactEvent {
    ContactAdded {
        company_id: Uuid,
        details: ContactDetails,
    },
    ContactUpdated {
        details: ContactDetails,
    },
    ContactLeft {},
    ContactReturned {},
    ContactNotificationsChanged {
        preferences: NotificationPreferences,
    },
}

impl DomainEvent for ContactEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ContactAdded { .. } => "ContactAdded",
            Self::ContactUpdated { .. } => "ContactUpdated",
            Self::ContactLeft { .. } => "ContactLeft",
            Self::ContactReturned { .. } => "ContactReturned",
            Self::ContactNotificationsChanged { .. } => "ContactNotificationsChanged",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    #[error("this contact already exists")]
    AlreadyExists,
    #[error("contact not found")]
    NotFound,
    #[error("this person has left the company: mark them current again to change them")]
    Former,
    #[error("this person has already left the company")]
    AlreadyFormer,
    #[error("this person has not left the company")]
    NotFormer,
}

impl HasErrorKind for ContactError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound => ErrorKind::NotFound,
            Self::AlreadyExists | Self::Former | Self::AlreadyFormer | Self::NotFormer => {
                ErrorKind::Conflict
            }
        }
    }
}

impl Contact {
    fn decide(&self, command: ContactCommand) -> Result<Vec<ContactEvent>, ContactError> {
        use ContactEvent as E;
        match command {
            ContactCommand::Add {
                company_id,
                details,
            } => {
                if self.exists {
                    return Err(ContactError::AlreadyExists);
                }
                Ok(vec![E::ContactAdded {
                    company_id,
                    details,
                }])
            }
            _ if !self.exists => Err(ContactError::NotFound),
            ContactCommand::Update { details } => {
                if self.former {
                    return Err(ContactError::Former);
                }
                Ok(if details == self.details {
                    vec![]
                } else {
                    vec![E::ContactUpdated { details }]
                })
            }
            ContactCommand::MarkFormer => {
                if self.former {
                    return Err(ContactError::AlreadyFormer);
                }
                Ok(vec![E::ContactLeft {}])
            }
            ContactCommand::MarkCurrent => {
                if !self.former {
                    return Err(ContactError::NotFormer);
                }
                Ok(vec![E::ContactReturned {}])
            }
            ContactCommand::SetNotifications { preferences } => {
                Ok(if preferences == self.notifications {
                    vec![]
                } else {
                    vec![E::ContactNotificationsChanged { preferences }]
                })
            }
        }
    }
}

impl Aggregate for Contact {
    const TYPE: &'static str = "contact";
    type Command = ContactCommand;
    type Event = ContactEvent;
    type Error = ContactError;
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
            ContactEvent::ContactAdded {
                company_id,
                details,
            } => {
                self.exists = true;
                self.company_id = company_id;
                self.details = details;
            }
            ContactEvent::ContactUpdated { details } => self.details = details,
            ContactEvent::ContactLeft {} => self.former = true,
            ContactEvent::ContactReturned {} => self.former = false,
            ContactEvent::ContactNotificationsChanged { preferences } => {
                self.notifications = preferences
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Contact>;
    const COMPANY: Uuid = Uuid::from_u128(5);

    fn ann() -> ContactDetails {
        ContactDetails::parse(&ContactInput {
            name: " Ann Example ",
            email: "Ann@Example.com",
            office_phone: "+1 (555) 010-0199 x12",
            cell_phone: "555.0100",
            department: "Finance",
            position: "Controller",
            billing: true,
            notes: "Prefers email.\nNot on Fridays.",
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn details_are_trimmed_and_every_bad_field_is_reported() {
        let d = ann();
        assert_eq!(d.name, "Ann Example");
        assert_eq!(d.email.as_ref().unwrap().as_str(), "ann@example.com");
        assert!(d.notes.contains('\n'), "notes may have several lines");
        let errors = ContactDetails::parse(&ContactInput {
            name: "  ",
            email: "not-an-email",
            office_phone: "call me",
            cell_phone: "12",
            department: &"x".repeat(101),
            position: "Boss\u{7}",
            ..Default::default()
        })
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "name",
                "email",
                "office_phone",
                "cell_phone",
                "department",
                "position"
            ]
        );
        assert!(
            ContactDetails::parse(&ContactInput {
                name: "Bob",
                ..Default::default()
            })
            .is_ok(),
            "only the name is required"
        );
        for ok in ["+44 20 7946 0958", "555-0100 ext. 7", "(555) 010-0199 x12"] {
            let input = ContactInput {
                name: "P",
                office_phone: ok,
                ..Default::default()
            };
            assert!(ContactDetails::parse(&input).is_ok(), "{ok}");
        }
        for bad in [
            "İ5551234",
            "555 0100 xab",
            "++",
            "1234567890123456789012345678901",
        ] {
            let input = ContactInput {
                name: "P",
                office_phone: bad,
                ..Default::default()
            };
            assert!(ContactDetails::parse(&input).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_contact_is_added_updated_and_leaves() {
        let added = ContactEvent::ContactAdded {
            company_id: COMPANY,
            details: ann(),
        };
        Given::with(())
            .given_no_previous_events()
            .when(ContactCommand::Add {
                company_id: COMPANY,
                details: ann(),
            })
            .then_expect_events(vec![added.clone()]);
        let mut changed = ann();
        changed.position = "CFO".into();
        Given::with(())
            .given(vec![added.clone()])
            .when(ContactCommand::Update {
                details: changed.clone(),
            })
            .then_expect_events(vec![ContactEvent::ContactUpdated { details: changed }]);
        Given::with(())
            .given(vec![added.clone()])
            .when(ContactCommand::Update { details: ann() })
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![added.clone(), ContactEvent::ContactLeft {}])
            .when(ContactCommand::Update { details: ann() })
            .then_expect_error(ContactError::Former);
        Given::with(())
            .given(vec![added.clone(), ContactEvent::ContactLeft {}])
            .when(ContactCommand::MarkCurrent)
            .then_expect_events(vec![ContactEvent::ContactReturned {}]);
        Given::with(())
            .given(vec![added])
            .when(ContactCommand::MarkCurrent)
            .then_expect_error(ContactError::NotFormer);
        Given::with(())
            .given_no_previous_events()
            .when(ContactCommand::MarkFormer)
            .then_expect_error(ContactError::NotFound);
    }

    #[test]
    fn events_keep_their_stored_shape() {
        let json = serde_json::to_value(ContactEvent::ContactAdded {
            company_id: COMPANY,
            details: ContactDetails::parse(&ContactInput {
                name: "Bob",
                ..Default::default()
            })
            .unwrap(),
        })
        .unwrap();
        assert_eq!(json["ContactAdded"]["details"]["name"], "Bob");
        assert!(json["ContactAdded"]["details"].get("email").is_none());
        let back: ContactEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back.event_type(), "ContactAdded");
    }
}
