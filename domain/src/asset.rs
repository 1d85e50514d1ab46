//! An asset: a piece of a customer's equipment the MSP looks after (issue 4).
//!
//! Each asset has a tag numbered per tenant without gaps (`ACME-00042`). The number is issued
//! by the tenant's `asset-tag` number sequence in the same transaction as `AssetRegistered`
//! (see `commands::store::EventStore::create_numbered`), so the aggregate only receives it.
//! Details are checked all at once at the edge (`AssetDetails::parse`); the aggregate decides
//! what changed and refuses what its state forbids.

use chrono::NaiveDate;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::contact::text;
use crate::{ErrorKind, HasErrorKind, ValidationError};

/// The categories every tenant has; a tenant may define more (`Tenant::asset_categories`).
pub const BUILT_IN_CATEGORIES: [&str; 7] = [
    "computer", "laptop", "server", "printer", "phone", "network", "other",
];

/// Where an asset stands in its life.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetStatus {
    #[default]
    Active,
    InRepair,
    Spare,
    Retired,
    Lost,
}

impl AssetStatus {
    pub const ALL: [AssetStatus; 5] = [
        Self::Active,
        Self::InRepair,
        Self::Spare,
        Self::Retired,
        Self::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::InRepair => "in_repair",
            Self::Spare => "spare",
            Self::Retired => "retired",
            Self::Lost => "lost",
        }
    }

    /// As people read it: "in repair".
    pub fn label(self) -> &'static str {
        match self {
            Self::InRepair => "in repair",
            other => other.as_str(),
        }
    }

    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let wanted = text.trim().to_ascii_lowercase().replace([' ', '-'], "_");
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == wanted)
            .ok_or_else(|| {
                ValidationError::new(
                    "status",
                    "must be one of active, in_repair, spare, retired, lost",
                )
            })
    }
}

/// The tag text: the tenant's prefix and the number, five digits at least.
pub fn format_tag(prefix: &str, number: u64) -> String {
    format!("{prefix}-{number:05}")
}

/// A tag prefix: 1 to 12 upper-case letters or digits (`ACME`).
pub fn parse_tag_prefix(text: &str) -> Result<String, ValidationError> {
    let prefix = text.trim().to_ascii_uppercase();
    if (1..=12).contains(&prefix.len()) && prefix.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(prefix)
    } else {
        Err(ValidationError::new(
            "asset_tag_prefix",
            "must be 1 to 12 letters or digits, such as ACME",
        ))
    }
}

/// The prefix a tenant gets until it chooses one: the letters and digits of its name's first
/// word, at most 6, upper case; `ASSET` when that leaves nothing.
pub fn default_tag_prefix(tenant_name: &str) -> String {
    let word: String = tenant_name
        .split_whitespace()
        .next()
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(6)
        .collect::<String>()
        .to_ascii_uppercase();
    if word.is_empty() {
        "ASSET".into()
    } else {
        word
    }
}

/// A category name: lower case, 1 to 40 letters, digits, spaces or `-`.
pub fn parse_category_name(text: &str) -> Result<String, ValidationError> {
    let name = text.trim().to_lowercase();
    if (1..=40).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || c == '-')
    {
        Ok(name)
    } else {
        Err(ValidationError::new(
            "category",
            "a category is 1 to 40 letters, digits, spaces or dashes",
        ))
    }
}

/// What we know about an asset. Every text field is trimmed; empty means unknown.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetDetails {
    pub name: String,
    pub category: String,
    #[serde(default)]
    pub make: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub serial_number: String,
    /// Upper case, colon separated (`00:1A:2B:3C:4D:5E`); empty when unknown.
    #[serde(default)]
    pub mac_address: String,
    /// An IPv4 or IPv6 address in its canonical text; empty when unknown.
    #[serde(default)]
    pub ip_address: String,
    #[serde(default)]
    pub operating_system: String,
    #[serde(default)]
    pub location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warranty_end: Option<NaiveDate>,
    #[serde(default)]
    pub vendor: String,
    #[serde(default)]
    pub notes: String,
}

/// The raw fields of an asset form or request, before checking.
#[derive(Debug, Default, Clone)]
pub struct AssetInput<'a> {
    pub name: &'a str,
    pub category: &'a str,
    pub make: &'a str,
    pub model: &'a str,
    pub serial_number: &'a str,
    pub mac_address: &'a str,
    pub ip_address: &'a str,
    pub operating_system: &'a str,
    pub location: &'a str,
    pub purchase_date: &'a str,
    pub warranty_end: &'a str,
    pub vendor: &'a str,
    pub notes: &'a str,
}

/// `00:1a:2b:3c:4d:5e`, `00-1A-2B-3C-4D-5E`, `001a.2b3c.4d5e` or `001A2B3C4D5E` →
/// `00:1A:2B:3C:4D:5E`.
pub fn normalise_mac(text: &str) -> Option<String> {
    let hex: String = text
        .trim()
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    let separators = text
        .trim()
        .chars()
        .filter(|c| !c.is_ascii_hexdigit())
        .count();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) || separators > 5 {
        return None;
    }
    let upper = hex.to_ascii_uppercase();
    Some(
        (0..6)
            .map(|i| &upper[i * 2..i * 2 + 2])
            .collect::<Vec<_>>()
            .join(":"),
    )
}

fn date(field: &'static str, text: &str, errors: &mut Vec<ValidationError>) -> Option<NaiveDate> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(date) => Some(date),
        Err(_) => {
            errors.push(ValidationError::new(
                field,
                "must be a date written YYYY-MM-DD",
            ));
            None
        }
    }
}

impl AssetDetails {
    /// Checks every field; all problems are reported at once. `categories` are the ones the
    /// tenant may use (built-in and its own).
    pub fn parse(
        input: &AssetInput<'_>,
        categories: &[String],
    ) -> Result<Self, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let name = text("name", input.name, 200, false, &mut errors);
        if name.is_empty() {
            errors.push(ValidationError::new("name", "must not be empty"));
        }
        let category = input.category.trim().to_lowercase();
        if category.is_empty() {
            errors.push(ValidationError::new("category", "must not be empty"));
        } else if !categories.contains(&category) {
            errors.push(ValidationError::new(
                "category",
                format!("must be one of {}", categories.join(", ")),
            ));
        }
        let mac_address = match input.mac_address.trim() {
            "" => String::new(),
            raw => normalise_mac(raw).unwrap_or_else(|| {
                errors.push(ValidationError::new(
                    "mac_address",
                    "must be a MAC address such as 00:1A:2B:3C:4D:5E",
                ));
                String::new()
            }),
        };
        let ip_address = match input.ip_address.trim() {
            "" => String::new(),
            raw => match raw.parse::<std::net::IpAddr>() {
                Ok(ip) => ip.to_string(),
                Err(_) => {
                    errors.push(ValidationError::new(
                        "ip_address",
                        "must be an IPv4 or IPv6 address such as 192.0.2.10",
                    ));
                    String::new()
                }
            },
        };
        let purchase_date = date("purchase_date", input.purchase_date, &mut errors);
        let warranty_end = date("warranty_end", input.warranty_end, &mut errors);
        if let (Some(bought), Some(ends)) = (purchase_date, warranty_end) {
            if ends < bought {
                errors.push(ValidationError::new(
                    "warranty_end",
                    "must not be before the purchase date",
                ));
            }
        }
        let details = Self {
            name,
            category,
            make: text("make", input.make, 100, false, &mut errors),
            model: text("model", input.model, 100, false, &mut errors),
            serial_number: text(
                "serial_number",
                input.serial_number,
                100,
                false,
                &mut errors,
            ),
            mac_address,
            ip_address,
            operating_system: text(
                "operating_system",
                input.operating_system,
                100,
                false,
                &mut errors,
            ),
            location: text("location", input.location, 200, false, &mut errors),
            purchase_date,
            warranty_end,
            vendor: text("vendor", input.vendor, 100, false, &mut errors),
            notes: text("notes", input.notes, 4000, true, &mut errors),
        };
        if errors.is_empty() {
            Ok(details)
        } else {
            Err(errors)
        }
    }
}

/// A document kept with an asset (a manual, an invoice, a photo). The bytes live outside the
/// log, found by their SHA-256, which the event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetDocument {
    pub id: Uuid,
    pub file_name: String,
    pub content_type: String,
    pub size: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asset {
    pub exists: bool,
    pub company_id: Uuid,
    pub tag: String,
    pub details: AssetDetails,
    pub status: AssetStatus,
    pub contact_id: Option<Uuid>,
    pub documents: Vec<AssetDocument>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AssetCommand {
    /// `number` comes from the tenant's asset-tag sequence, `tag` is its text.
    Register {
        company_id: Uuid,
        number: u64,
        tag: String,
        details: AssetDetails,
        status: AssetStatus,
        contact_id: Option<Uuid>,
    },
    /// Replaces the details (the form shows them all); nothing happens when nothing changed.
    Update {
        details: AssetDetails,
    },
    SetStatus {
        status: AssetStatus,
    },
    /// Assigns the asset to one of the company's contacts, or to nobody.
    Assign {
        contact_id: Option<Uuid>,
    },
    AttachDocument {
        document: AssetDocument,
    },
    RemoveDocument {
        document_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AssetEvent {
    AssetRegistered {
        company_id: Uuid,
        number: u64,
        tag: String,
        details: AssetDetails,
        status: AssetStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contact_id: Option<Uuid>,
    },
    AssetUpdated {
        details: AssetDetails,
    },
    AssetStatusChanged {
        status: AssetStatus,
        previous_status: AssetStatus,
    },
    AssetAssigned {
        contact_id: Option<Uuid>,
        previous_contact_id: Option<Uuid>,
    },
    AssetDocumentAttached {
        document: AssetDocument,
    },
    AssetDocumentRemoved {
        document_id: Uuid,
        file_name: String,
    },
}

impl DomainEvent for AssetEvent {
    fn event_type(&self) -> String {
        match self {
            Self::AssetRegistered { .. } => "AssetRegistered",
            Self::AssetUpdated { .. } => "AssetUpdated",
            Self::AssetStatusChanged { .. } => "AssetStatusChanged",
            Self::AssetAssigned { .. } => "AssetAssigned",
            Self::AssetDocumentAttached { .. } => "AssetDocumentAttached",
            Self::AssetDocumentRemoved { .. } => "AssetDocumentRemoved",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// The most documents one asset keeps.
pub const MAX_DOCUMENTS: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssetError {
    #[error("this asset already exists")]
    AlreadyExists,
    #[error("asset not found")]
    NotFound,
    #[error("the asset is already {0}")]
    SameStatus(&'static str),
    #[error("a retired asset cannot be assigned to anyone: set it active or spare first")]
    RetiredAssignment,
    #[error("this document is already attached")]
    DocumentExists,
    #[error("document not found")]
    DocumentNotFound,
    #[error("an asset keeps at most {MAX_DOCUMENTS} documents: remove one first")]
    TooManyDocuments,
}

impl HasErrorKind for AssetError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound | Self::DocumentNotFound => ErrorKind::NotFound,
            _ => ErrorKind::Conflict,
        }
    }
}

impl Asset {
    fn decide(&self, command: AssetCommand) -> Result<Vec<AssetEvent>, AssetError> {
        use AssetEvent as E;
        match command {
            AssetCommand::Register {
                company_id,
                number,
                tag,
                details,
                status,
                contact_id,
            } => {
                if self.exists {
                    return Err(AssetError::AlreadyExists);
                }
                Ok(vec![E::AssetRegistered {
                    company_id,
                    number,
                    tag,
                    details,
                    status,
                    contact_id,
                }])
            }
            _ if !self.exists => Err(AssetError::NotFound),
            AssetCommand::Update { details } => Ok(if details == self.details {
                vec![]
            } else {
                vec![E::AssetUpdated { details }]
            }),
            AssetCommand::SetStatus { status } => {
                if status == self.status {
                    return Err(AssetError::SameStatus(status.label()));
                }
                Ok(vec![E::AssetStatusChanged {
                    status,
                    previous_status: self.status,
                }])
            }
            AssetCommand::Assign { contact_id } => {
                if contact_id == self.contact_id {
                    return Ok(vec![]);
                }
                if contact_id.is_some() && self.status == AssetStatus::Retired {
                    return Err(AssetError::RetiredAssignment);
                }
                Ok(vec![E::AssetAssigned {
                    contact_id,
                    previous_contact_id: self.contact_id,
                }])
            }
            AssetCommand::AttachDocument { document } => {
                if self
                    .documents
                    .iter()
                    .any(|d| d.id == document.id || d.sha256 == document.sha256)
                {
                    return Err(AssetError::DocumentExists);
                }
                if self.documents.len() >= MAX_DOCUMENTS {
                    return Err(AssetError::TooManyDocuments);
                }
                Ok(vec![E::AssetDocumentAttached { document }])
            }
            AssetCommand::RemoveDocument { document_id } => {
                let document = self
                    .documents
                    .iter()
                    .find(|d| d.id == document_id)
                    .ok_or(AssetError::DocumentNotFound)?;
                Ok(vec![E::AssetDocumentRemoved {
                    document_id,
                    file_name: document.file_name.clone(),
                }])
            }
        }
    }
}

impl Aggregate for Asset {
    const TYPE: &'static str = "asset";
    type Command = AssetCommand;
    type Event = AssetEvent;
    type Error = AssetError;
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
            AssetEvent::AssetRegistered {
                company_id,
                tag,
                details,
                status,
                contact_id,
                ..
            } => {
                self.exists = true;
                self.company_id = company_id;
                self.tag = tag;
                self.details = details;
                self.status = status;
                self.contact_id = contact_id;
            }
            AssetEvent::AssetUpdated { details } => self.details = details,
            AssetEvent::AssetStatusChanged { status, .. } => self.status = status,
            AssetEvent::AssetAssigned { contact_id, .. } => self.contact_id = contact_id,
            AssetEvent::AssetDocumentAttached { document } => self.documents.push(document),
            AssetEvent::AssetDocumentRemoved { document_id, .. } => {
                self.documents.retain(|d| d.id != document_id)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Asset>;
    const COMPANY: Uuid = Uuid::from_u128(5);
    const ANN: Uuid = Uuid::from_u128(6);

    fn categories() -> Vec<String> {
        BUILT_IN_CATEGORIES
            .iter()
            .map(|c| c.to_string())
            .chain(["kiosk".to_string()])
            .collect()
    }

    fn laptop() -> AssetDetails {
        AssetDetails::parse(
            &AssetInput {
                name: " Reception laptop ",
                category: "Laptop",
                serial_number: "SN-123",
                mac_address: "00-1a-2b-3c-4d-5e",
                ip_address: " 192.0.2.10 ",
                purchase_date: "2025-01-31",
                warranty_end: "2028-01-31",
                ..Default::default()
            },
            &categories(),
        )
        .unwrap()
    }

    fn registered() -> AssetEvent {
        AssetEvent::AssetRegistered {
            company_id: COMPANY,
            number: 42,
            tag: format_tag("ACME", 42),
            details: laptop(),
            status: AssetStatus::Active,
            contact_id: None,
        }
    }

    #[test]
    fn details_are_normalised_and_every_bad_field_is_reported() {
        let d = laptop();
        assert_eq!(d.name, "Reception laptop");
        assert_eq!(d.category, "laptop");
        assert_eq!(d.mac_address, "00:1A:2B:3C:4D:5E");
        assert_eq!(d.ip_address, "192.0.2.10");
        for (raw, want) in [
            ("001a.2b3c.4d5e", Some("00:1A:2B:3C:4D:5E")),
            ("001A2B3C4D5E", Some("00:1A:2B:3C:4D:5E")),
            ("00:1A:2B:3C:4D", None),
            ("00:1A:2B:3C:4D:5G", None),
            ("0:0:1:A:2:B:3:C:4:D:5:E", None),
        ] {
            assert_eq!(normalise_mac(raw).as_deref(), want, "{raw}");
        }
        let errors = AssetDetails::parse(
            &AssetInput {
                name: " ",
                category: "toaster",
                mac_address: "nope",
                ip_address: "300.1.1.1",
                purchase_date: "2026-02-30",
                notes: "bell\u{7}",
                ..Default::default()
            },
            &categories(),
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "name",
                "category",
                "mac_address",
                "ip_address",
                "purchase_date",
                "notes"
            ]
        );
        let backwards = AssetDetails::parse(
            &AssetInput {
                name: "x",
                category: "kiosk",
                purchase_date: "2026-02-01",
                warranty_end: "2026-01-31",
                ip_address: "2001:DB8::1",
                ..Default::default()
            },
            &categories(),
        )
        .unwrap_err();
        assert_eq!(backwards[0].field, "warranty_end");
        let v6 = AssetDetails::parse(
            &AssetInput {
                name: "x",
                category: "kiosk",
                ip_address: "2001:DB8::1",
                ..Default::default()
            },
            &categories(),
        )
        .unwrap();
        assert_eq!(
            v6.ip_address, "2001:db8::1",
            "tenant-defined category, canonical IPv6"
        );
    }

    #[test]
    fn tags_and_prefixes() {
        assert_eq!(format_tag("ACME", 42), "ACME-00042");
        assert_eq!(format_tag("ACME", 123_456), "ACME-123456");
        assert_eq!(parse_tag_prefix(" acme1 ").unwrap(), "ACME1");
        assert!(parse_tag_prefix("AC-ME").is_err());
        assert!(parse_tag_prefix("").is_err());
        assert_eq!(default_tag_prefix("Acme Networks Ltd"), "ACME");
        assert_eq!(default_tag_prefix("Northwind-IT"), "NORTHW");
        assert_eq!(default_tag_prefix("  "), "ASSET");
        assert_eq!(
            AssetStatus::parse("In repair").unwrap(),
            AssetStatus::InRepair
        );
        assert!(AssetStatus::parse("broken").is_err());
        assert_eq!(parse_category_name(" Kiosk ").unwrap(), "kiosk");
        assert!(parse_category_name("a/b").is_err());
    }

    #[test]
    fn an_asset_is_registered_changed_assigned_and_documented() {
        Given::with(())
            .given_no_previous_events()
            .when(AssetCommand::Register {
                company_id: COMPANY,
                number: 42,
                tag: format_tag("ACME", 42),
                details: laptop(),
                status: AssetStatus::Active,
                contact_id: None,
            })
            .then_expect_events(vec![registered()]);
        Given::with(())
            .given(vec![registered()])
            .when(AssetCommand::Update { details: laptop() })
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![registered()])
            .when(AssetCommand::SetStatus {
                status: AssetStatus::Active,
            })
            .then_expect_error(AssetError::SameStatus("active"));
        Given::with(())
            .given(vec![registered()])
            .when(AssetCommand::Assign {
                contact_id: Some(ANN),
            })
            .then_expect_events(vec![AssetEvent::AssetAssigned {
                contact_id: Some(ANN),
                previous_contact_id: None,
            }]);
        Given::with(())
            .given(vec![
                registered(),
                AssetEvent::AssetStatusChanged {
                    status: AssetStatus::Retired,
                    previous_status: AssetStatus::Active,
                },
            ])
            .when(AssetCommand::Assign {
                contact_id: Some(ANN),
            })
            .then_expect_error(AssetError::RetiredAssignment);
        let document = AssetDocument {
            id: Uuid::from_u128(9),
            file_name: "manual.pdf".into(),
            content_type: "application/pdf".into(),
            size: 10,
            sha256: "ab".repeat(32),
        };
        let attached = AssetEvent::AssetDocumentAttached {
            document: document.clone(),
        };
        Given::with(())
            .given(vec![registered(), attached.clone()])
            .when(AssetCommand::AttachDocument {
                document: AssetDocument {
                    id: Uuid::from_u128(10),
                    ..document.clone()
                },
            })
            .then_expect_error(AssetError::DocumentExists);
        Given::with(())
            .given(vec![registered(), attached])
            .when(AssetCommand::RemoveDocument {
                document_id: document.id,
            })
            .then_expect_events(vec![AssetEvent::AssetDocumentRemoved {
                document_id: document.id,
                file_name: "manual.pdf".into(),
            }]);
        Given::with(())
            .given_no_previous_events()
            .when(AssetCommand::SetStatus {
                status: AssetStatus::Lost,
            })
            .then_expect_error(AssetError::NotFound);
    }

    #[test]
    fn events_keep_their_stored_shape() {
        let json = serde_json::to_value(registered()).unwrap();
        assert_eq!(json["AssetRegistered"]["tag"], "ACME-00042");
        assert_eq!(json["AssetRegistered"]["status"], "active");
        assert_eq!(
            json["AssetRegistered"]["details"]["purchase_date"],
            "2025-01-31"
        );
        assert!(json["AssetRegistered"].get("contact_id").is_none());
        let back: AssetEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, registered());
    }
}
