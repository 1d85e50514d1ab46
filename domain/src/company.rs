//! The customer company: registered, renamed, its monthly contract rate set, archived and
//! restored; its customer status (prospect, active, suspended, former) and its profile
//! (addresses, phone, website, notes, tags). Events stay as they are: fields added to a stored
//! event have defaults, so events recorded before them still load.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::contact::{phone, text};
use crate::values::{Amount, CompanyName};
use crate::{ErrorKind, HasErrorKind, ValidationError};

/// The state of one company, folded from its events.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Company {
    pub registered: bool,
    pub name: String,
    pub monthly_rate: Option<Amount>,
    pub archived: bool,
    #[serde(default)]
    pub customer_status: CustomerStatus,
    #[serde(default)]
    pub profile: CompanyProfile,
    /// What the monthly contract covers (issue 5).
    #[serde(default)]
    pub coverage: crate::coverage::Coverage,
    /// How the contract is billed (issue 7); `None`: not billed by the scheduler.
    #[serde(default)]
    pub billing: Option<BillingTerms>,
    /// Catalogue services it subscribes to, billed with the contract.
    #[serde(default)]
    pub subscriptions: std::collections::BTreeMap<uuid::Uuid, crate::billing::Subscription>,
}

/// How a company's contract is billed; its rate is the company's `monthly_rate`
/// (`billing::ContractTerms` joins the two).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingTerms {
    /// 1–31; clamped to a shorter month's last day without drifting.
    pub billing_day: u32,
    pub start_date: chrono::NaiveDate,
    pub end_date: Option<chrono::NaiveDate>,
    pub payment_terms_days: u32,
    pub prorate: bool,
    /// No tax on its invoices.
    #[serde(default)]
    pub tax_exempt: bool,
    /// The tax rate (percent) of its contract lines; `None`: no tax.
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub tax_rate: Option<rust_decimal::Decimal>,
}

impl Company {
    /// The contract as billing computes it, when it is billed.
    pub fn contract(&self) -> Option<crate::billing::ContractTerms> {
        let b = self.billing.as_ref()?;
        Some(crate::billing::ContractTerms {
            monthly_rate: self.current_rate().value(),
            billing_day: b.billing_day,
            start_date: b.start_date,
            end_date: b.end_date,
            payment_terms_days: b.payment_terms_days,
            prorate: b.prorate,
        })
    }
}

/// Where a company stands as a customer. Independent of `archived`, which only takes a company
/// out of the lists and freezes it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerStatus {
    /// Not a customer yet.
    Prospect,
    /// A customer we serve (new companies are active unless said otherwise).
    #[default]
    Active,
    /// Service paused (unpaid bills, a dispute).
    Suspended,
    /// No longer a customer.
    Former,
}

impl CustomerStatus {
    pub const ALL: [CustomerStatus; 4] = [
        CustomerStatus::Prospect,
        CustomerStatus::Active,
        CustomerStatus::Suspended,
        CustomerStatus::Former,
    ];

    /// The value in JSON, forms and the read model.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prospect => "prospect",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Former => "former",
        }
    }

    /// How people read it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Prospect => "Prospect",
            Self::Active => "Active",
            Self::Suspended => "Suspended",
            Self::Former => "Former customer",
        }
    }

    /// `field` names the input in the error.
    pub fn parse(field: &'static str, input: &str) -> Result<Self, ValidationError> {
        let input = input.trim();
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(input))
            .ok_or_else(|| {
                ValidationError::new(field, "must be one of prospect, active, suspended, former")
            })
    }

    fn is_active(&self) -> bool {
        *self == Self::Active
    }
}

impl std::fmt::Display for CustomerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest billing or site address (characters, several lines).
pub const MAX_ADDRESS_CHARS: usize = 500;
/// The longest website address.
pub const MAX_WEBSITE_CHARS: usize = 300;
/// The longest notes.
pub const MAX_NOTES_CHARS: usize = 4000;
/// How many tags a company may have.
pub const MAX_TAGS: usize = 20;
/// The longest tag.
pub const MAX_TAG_CHARS: usize = 40;

/// What we know about a company besides its name and rate. Every field is checked by
/// `ProfileChanges::parse`; empty means unknown.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompanyProfile {
    /// Several lines.
    #[serde(default)]
    pub billing_address: String,
    /// Where the work happens; several lines.
    #[serde(default)]
    pub site_address: String,
    #[serde(default)]
    pub phone: String,
    /// An `http://` or `https://` address.
    #[serde(default)]
    pub website: String,
    #[serde(default)]
    pub notes: String,
    /// Lowercase, sorted, no duplicates.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl CompanyProfile {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The names of the fields that differ from `other`, in display order.
    pub fn changed_fields(&self, other: &CompanyProfile) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |name: &str, differs: bool| {
            if differs {
                out.push(name.to_owned());
            }
        };
        check(
            "billing_address",
            self.billing_address != other.billing_address,
        );
        check("site_address", self.site_address != other.site_address);
        check("phone", self.phone != other.phone);
        check("website", self.website != other.website);
        check("notes", self.notes != other.notes);
        check("tags", self.tags != other.tags);
        out
    }
}

/// The raw profile fields of a form or request, before checking; `None` leaves a field as it
/// is (a form sends them all, an API `PATCH` only some).
#[derive(Debug, Default, Clone)]
pub struct ProfileInput<'a> {
    pub billing_address: Option<&'a str>,
    pub site_address: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub website: Option<&'a str>,
    pub notes: Option<&'a str>,
    pub tags: Option<Vec<&'a str>>,
}

/// Checked changes to a profile: every field present is valid and normalised. Made only by
/// `parse`, so a command carrying them needs no second check.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProfileChanges {
    billing_address: Option<String>,
    site_address: Option<String>,
    phone: Option<String>,
    website: Option<String>,
    notes: Option<String>,
    tags: Option<Vec<String>>,
}

/// Multi-line text: Windows line ends become `\n`, then the contact rule (trimmed, bounded,
/// no control characters but line breaks and tabs).
fn multi_line(
    field: &'static str,
    value: &str,
    max: usize,
    errors: &mut Vec<ValidationError>,
) -> String {
    text(field, &value.replace("\r\n", "\n"), max, true, errors)
}

/// An `http` or `https` address; a bare host name (`acme.example`) gets `https://`. The scheme
/// and host are lowercased. No user name or password part, no spaces.
fn website(value: &str, errors: &mut Vec<ValidationError>) -> String {
    let value = value.trim();
    if value.is_empty() {
        return String::new();
    }
    let bad = |errors: &mut Vec<ValidationError>, message: String| {
        errors.push(ValidationError::new("website", message));
        value.to_owned()
    };
    if value.chars().count() > MAX_WEBSITE_CHARS {
        return bad(
            errors,
            format!("must be at most {MAX_WEBSITE_CHARS} characters"),
        );
    }
    let (scheme, rest) = match value.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("https".to_owned(), value),
    };
    if scheme != "http" && scheme != "https" {
        return bad(errors, "must be an http:// or https:// address".into());
    }
    let usable = |c: char| !c.is_whitespace() && !c.is_control() && !"<>\"\\^`{|}".contains(c);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    // `host`, `host:port`, `[v6]` or `[v6]:port` (an unusable port makes the check fail).
    let (host, port) = match authority.strip_prefix('[').and_then(|a| a.split_once(']')) {
        Some((ip6, "")) => (format!("[{ip6}]"), None),
        Some((ip6, rest)) => (
            format!("[{ip6}]"),
            Some(rest.strip_prefix(':').unwrap_or("-")),
        ),
        None => match authority.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (authority.to_owned(), None),
        },
    };
    let host_ok = if let Some(ip6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !ip6.is_empty()
            && ip6
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
    } else {
        !host.is_empty()
            && host.split('.').all(|label| {
                (1..=63).contains(&label.chars().count())
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    };
    let port_ok = port.is_none_or(|p| {
        p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if !host_ok || !port_ok || !path.chars().all(usable) {
        return bad(
            errors,
            "must be a web address such as https://acme.example".into(),
        );
    }
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    format!("{scheme}://{}{port}{path}", host.to_lowercase())
}

/// Splits a comma-separated list of tags as a form sends it (empty pieces are dropped).
pub fn split_tags(input: &str) -> Vec<&str> {
    input
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

/// A tag as it is stored: trimmed, inner runs of spaces made one, lowercased (for filters too).
pub fn normalize_tag(raw: &str) -> String {
    raw.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Tags: normalised (`normalize_tag`), each 1 to 40 letters, digits, spaces, `-` or `_`; at
/// most 20 once duplicates are dropped; sorted.
fn tags(values: &[&str], errors: &mut Vec<ValidationError>) -> Vec<String> {
    let mut out = Vec::with_capacity(values.len());
    let mut bad = Vec::new();
    for raw in values {
        let tag = normalize_tag(raw);
        let chars = tag.chars().count();
        let ok = (1..=MAX_TAG_CHARS).contains(&chars)
            && tag
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_' || c == ' ');
        if ok {
            out.push(tag);
        } else {
            bad.push(format!(
                "{:?}",
                raw.chars().take(MAX_TAG_CHARS).collect::<String>()
            ));
        }
    }
    out.sort();
    out.dedup();
    if !bad.is_empty() {
        errors.push(ValidationError::new(
            "tags",
            format!(
                "must each be 1 to {MAX_TAG_CHARS} letters, digits, spaces, - or _ (not {})",
                bad.join(", ")
            ),
        ));
    } else if out.len() > MAX_TAGS {
        errors.push(ValidationError::new(
            "tags",
            format!("must be at most {MAX_TAGS} tags (got {})", out.len()),
        ));
    }
    out
}

impl ProfileChanges {
    /// Checks every field present; all problems are reported at once.
    pub fn parse(input: &ProfileInput<'_>) -> Result<Self, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let changes = Self {
            billing_address: input
                .billing_address
                .map(|v| multi_line("billing_address", v, MAX_ADDRESS_CHARS, &mut errors)),
            site_address: input
                .site_address
                .map(|v| multi_line("site_address", v, MAX_ADDRESS_CHARS, &mut errors)),
            phone: input.phone.map(|v| phone("phone", v, &mut errors)),
            website: input.website.map(|v| website(v, &mut errors)),
            notes: input
                .notes
                .map(|v| multi_line("notes", v, MAX_NOTES_CHARS, &mut errors)),
            tags: input.tags.as_deref().map(|v| tags(v, &mut errors)),
        };
        if errors.is_empty() {
            Ok(changes)
        } else {
            Err(errors)
        }
    }

    /// True when no field is present.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `profile` with these changes made.
    pub fn applied_to(&self, profile: &CompanyProfile) -> CompanyProfile {
        let pick = |new: &Option<String>, old: &String| new.clone().unwrap_or_else(|| old.clone());
        CompanyProfile {
            billing_address: pick(&self.billing_address, &profile.billing_address),
            site_address: pick(&self.site_address, &profile.site_address),
            phone: pick(&self.phone, &profile.phone),
            website: pick(&self.website, &profile.website),
            notes: pick(&self.notes, &profile.notes),
            tags: self.tags.clone().unwrap_or_else(|| profile.tags.clone()),
        }
    }
}

/// What may be asked of a company.
#[derive(Debug, Clone, PartialEq)]
pub enum CompanyCommand {
    Register {
        name: CompanyName,
        monthly_rate: Amount,
        customer_status: CustomerStatus,
        /// Built with `ProfileChanges::applied_to(&CompanyProfile::default())`.
        profile: CompanyProfile,
    },
    Rename {
        name: CompanyName,
    },
    SetMonthlyRate {
        monthly_rate: Amount,
    },
    Archive,
    Restore,
    SetCustomerStatus {
        status: CustomerStatus,
    },
    /// Changes the fields present; the others stay.
    UpdateProfile(ProfileChanges),
    /// Sets what the monthly contract covers (checked with `Coverage::parse`).
    SetCoverage {
        coverage: crate::coverage::Coverage,
    },
    /// Sets (or with `None` stops) the contract's billing (checked with
    /// `billing::ContractTerms::check`).
    SetBilling {
        billing: Option<BillingTerms>,
    },
    /// Adds or changes a subscription (checked with `Subscription::check`); an end date ends
    /// it.
    SetSubscription {
        subscription_id: uuid::Uuid,
        subscription: crate::billing::Subscription,
    },
    /// Several changes at once (the API's PATCH): all are decided against the same state and
    /// appended together, or none is. Fields equal to the current value change nothing.
    Update(CompanyChanges),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompanyChanges {
    pub name: Option<CompanyName>,
    pub monthly_rate: Option<Amount>,
    pub archived: Option<bool>,
    pub customer_status: Option<CustomerStatus>,
    pub profile: ProfileChanges,
}

/// What happened to a company. Stored forever: never change a variant's meaning; add a new
/// version with an upcaster instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CompanyEvent {
    /// `customer_status` and `profile` were added later: events without them (and
    /// registrations that leave them at their defaults) read as active with an empty profile.
    CompanyRegistered {
        name: String,
        monthly_rate: Amount,
        #[serde(default, skip_serializing_if = "CustomerStatus::is_active")]
        customer_status: CustomerStatus,
        #[serde(default, skip_serializing_if = "CompanyProfile::is_empty")]
        profile: CompanyProfile,
    },
    CompanyRenamed {
        name: String,
        previous_name: String,
    },
    MonthlyRateSet {
        monthly_rate: Amount,
        previous_rate: Amount,
    },
    CompanyArchived {},
    CompanyRestored {},
    /// The whole profile after the change, and the names of the fields that changed.
    CompanyProfileUpdated {
        profile: CompanyProfile,
        #[serde(default)]
        changed: Vec<String>,
    },
    CompanyStatusChanged {
        status: CustomerStatus,
        previous_status: CustomerStatus,
    },
    /// The whole coverage after the change.
    ContractCoverageChanged {
        coverage: crate::coverage::Coverage,
    },
    /// The whole billing terms after the change (`None`: no longer billed).
    ContractBillingChanged {
        billing: Option<BillingTerms>,
    },
    /// The whole subscription after the change.
    SubscriptionSet {
        subscription_id: uuid::Uuid,
        subscription: crate::billing::Subscription,
    },
}

impl DomainEvent for CompanyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CompanyRegistered { .. } => "CompanyRegistered",
            Self::CompanyRenamed { .. } => "CompanyRenamed",
            Self::MonthlyRateSet { .. } => "MonthlyRateSet",
            Self::CompanyArchived { .. } => "CompanyArchived",
            Self::CompanyRestored { .. } => "CompanyRestored",
            Self::CompanyProfileUpdated { .. } => "CompanyProfileUpdated",
            Self::CompanyStatusChanged { .. } => "CompanyStatusChanged",
            Self::ContractCoverageChanged { .. } => "ContractCoverageChanged",
            Self::ContractBillingChanged { .. } => "ContractBillingChanged",
            Self::SubscriptionSet { .. } => "SubscriptionSet",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompanyError {
    #[error("this company is already registered")]
    AlreadyRegistered,
    #[error("company not found")]
    NotFound,
    #[error("this company is archived; restore it before changing it")]
    Archived,
    #[error("this company is already archived")]
    AlreadyArchived,
    #[error("this company is not archived")]
    NotArchived,
}

impl HasErrorKind for CompanyError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound => ErrorKind::NotFound,
            Self::AlreadyRegistered
            | Self::Archived
            | Self::AlreadyArchived
            | Self::NotArchived => ErrorKind::Conflict,
        }
    }
}

impl Company {
    fn require_registered(&self) -> Result<(), CompanyError> {
        if self.registered {
            Ok(())
        } else {
            Err(CompanyError::NotFound)
        }
    }

    fn require_active(&self) -> Result<(), CompanyError> {
        self.require_registered()?;
        if self.archived {
            Err(CompanyError::Archived)
        } else {
            Ok(())
        }
    }

    pub fn current_rate(&self) -> Amount {
        self.monthly_rate.unwrap_or(Amount::ZERO)
    }

    /// Decides the changes of an update one after the other, each against the state the
    /// previous one left, so restore + rename works and rename + archive works.
    fn decide(&self, command: CompanyCommand) -> Result<Vec<CompanyEvent>, CompanyError> {
        use CompanyEvent as E;
        Ok(match command {
            CompanyCommand::Register {
                name,
                monthly_rate,
                customer_status,
                profile,
            } => {
                if self.registered {
                    return Err(CompanyError::AlreadyRegistered);
                }
                vec![E::CompanyRegistered {
                    name: name.as_str().to_owned(),
                    monthly_rate,
                    customer_status,
                    profile,
                }]
            }
            CompanyCommand::SetCustomerStatus { status } => {
                self.require_active()?;
                if status == self.customer_status {
                    vec![]
                } else {
                    vec![E::CompanyStatusChanged {
                        status,
                        previous_status: self.customer_status,
                    }]
                }
            }
            CompanyCommand::UpdateProfile(changes) => {
                self.require_active()?;
                let profile = changes.applied_to(&self.profile);
                let changed = profile.changed_fields(&self.profile);
                if changed.is_empty() {
                    vec![]
                } else {
                    vec![E::CompanyProfileUpdated { profile, changed }]
                }
            }
            CompanyCommand::Rename { name } => {
                self.require_active()?;
                if name.as_str() == self.name {
                    vec![]
                } else {
                    vec![E::CompanyRenamed {
                        name: name.as_str().to_owned(),
                        previous_name: self.name.clone(),
                    }]
                }
            }
            CompanyCommand::SetMonthlyRate { monthly_rate } => {
                self.require_active()?;
                if monthly_rate == self.current_rate() {
                    vec![]
                } else {
                    vec![E::MonthlyRateSet {
                        monthly_rate,
                        previous_rate: self.current_rate(),
                    }]
                }
            }
            CompanyCommand::SetSubscription {
                subscription_id,
                subscription,
            } => {
                self.require_active()?;
                if self.subscriptions.get(&subscription_id) == Some(&subscription) {
                    vec![]
                } else {
                    vec![E::SubscriptionSet {
                        subscription_id,
                        subscription,
                    }]
                }
            }
            CompanyCommand::SetBilling { billing } => {
                self.require_active()?;
                if billing == self.billing {
                    vec![]
                } else {
                    vec![E::ContractBillingChanged { billing }]
                }
            }
            CompanyCommand::SetCoverage { coverage } => {
                self.require_active()?;
                if coverage == self.coverage {
                    vec![]
                } else {
                    vec![E::ContractCoverageChanged { coverage }]
                }
            }
            CompanyCommand::Archive => {
                self.require_registered()?;
                if self.archived {
                    return Err(CompanyError::AlreadyArchived);
                }
                vec![E::CompanyArchived {}]
            }
            CompanyCommand::Restore => {
                self.require_registered()?;
                if !self.archived {
                    return Err(CompanyError::NotArchived);
                }
                vec![E::CompanyRestored {}]
            }
            CompanyCommand::Update(changes) => {
                self.require_registered()?;
                let mut state = self.clone();
                let mut events = Vec::new();
                let mut step = |state: &mut Company, command| -> Result<(), CompanyError> {
                    for event in state.decide(command)? {
                        state.apply(event.clone());
                        events.push(event);
                    }
                    Ok(())
                };
                if changes.archived == Some(false) && state.archived {
                    step(&mut state, CompanyCommand::Restore)?;
                }
                if let Some(name) = changes.name {
                    step(&mut state, CompanyCommand::Rename { name })?;
                }
                if let Some(monthly_rate) = changes.monthly_rate {
                    step(&mut state, CompanyCommand::SetMonthlyRate { monthly_rate })?;
                }
                if let Some(status) = changes.customer_status {
                    step(&mut state, CompanyCommand::SetCustomerStatus { status })?;
                }
                if !changes.profile.is_empty() {
                    step(&mut state, CompanyCommand::UpdateProfile(changes.profile))?;
                }
                if changes.archived == Some(true) && !state.archived {
                    step(&mut state, CompanyCommand::Archive)?;
                }
                events
            }
        })
    }
}

impl Aggregate for Company {
    const TYPE: &'static str = "company";
    type Command = CompanyCommand;
    type Event = CompanyEvent;
    type Error = CompanyError;
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
            CompanyEvent::CompanyRegistered {
                name,
                monthly_rate,
                customer_status,
                profile,
            } => {
                self.registered = true;
                self.name = name;
                self.monthly_rate = Some(monthly_rate);
                self.customer_status = customer_status;
                self.profile = profile;
            }
            CompanyEvent::CompanyRenamed { name, .. } => self.name = name,
            CompanyEvent::MonthlyRateSet { monthly_rate, .. } => {
                self.monthly_rate = Some(monthly_rate)
            }
            CompanyEvent::CompanyArchived {} => self.archived = true,
            CompanyEvent::CompanyRestored {} => self.archived = false,
            CompanyEvent::CompanyProfileUpdated { profile, .. } => self.profile = profile,
            CompanyEvent::CompanyStatusChanged { status, .. } => self.customer_status = status,
            CompanyEvent::ContractCoverageChanged { coverage } => self.coverage = coverage,
            CompanyEvent::ContractBillingChanged { billing } => self.billing = billing,
            CompanyEvent::SubscriptionSet {
                subscription_id,
                subscription,
            } => {
                self.subscriptions.insert(subscription_id, subscription);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Company>;

    fn name(s: &str) -> CompanyName {
        CompanyName::parse(s).unwrap()
    }
    fn rate(s: &str) -> Amount {
        Amount::parse("monthly_rate", s).unwrap()
    }
    fn registered() -> CompanyEvent {
        CompanyEvent::CompanyRegistered {
            name: "Acme".into(),
            monthly_rate: rate("500.00"),
            customer_status: CustomerStatus::Active,
            profile: CompanyProfile::default(),
        }
    }
    fn register(name_: &str, rate_: &str) -> CompanyCommand {
        CompanyCommand::Register {
            name: name(name_),
            monthly_rate: rate(rate_),
            customer_status: CustomerStatus::Active,
            profile: CompanyProfile::default(),
        }
    }

    #[test]
    fn registers_a_new_company() {
        Given::with(())
            .given_no_previous_events()
            .when(register("Acme", "500"))
            .then_expect_events(vec![registered()]);
    }

    #[test]
    fn refuses_to_register_twice() {
        Given::with(())
            .given(vec![registered()])
            .when(register("Acme", "1"))
            .then_expect_error(CompanyError::AlreadyRegistered);
    }

    #[test]
    fn commands_on_a_missing_company_are_not_found() {
        for command in [
            CompanyCommand::Rename { name: name("X") },
            CompanyCommand::Archive,
            CompanyCommand::Restore,
            CompanyCommand::Update(CompanyChanges::default()),
        ] {
            Given::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(CompanyError::NotFound);
        }
    }

    #[test]
    fn renames_and_records_the_previous_name() {
        Given::with(())
            .given(vec![registered()])
            .when(CompanyCommand::Rename {
                name: name("Acme Corp"),
            })
            .then_expect_events(vec![CompanyEvent::CompanyRenamed {
                name: "Acme Corp".into(),
                previous_name: "Acme".into(),
            }]);
    }

    #[test]
    fn renaming_to_the_same_name_appends_nothing() {
        Given::with(())
            .given(vec![registered()])
            .when(CompanyCommand::Rename { name: name("Acme") })
            .then_expect_events(vec![]);
    }

    #[test]
    fn sets_the_monthly_rate_with_the_previous_one() {
        Given::with(())
            .given(vec![registered()])
            .when(CompanyCommand::SetMonthlyRate {
                monthly_rate: rate("650.5"),
            })
            .then_expect_events(vec![CompanyEvent::MonthlyRateSet {
                monthly_rate: rate("650.50"),
                previous_rate: rate("500.00"),
            }]);
    }

    #[test]
    fn an_archived_company_cannot_be_changed_until_restored() {
        Given::with(())
            .given(vec![registered(), CompanyEvent::CompanyArchived {}])
            .when(CompanyCommand::Rename { name: name("New") })
            .then_expect_error(CompanyError::Archived);
        Given::with(())
            .given(vec![registered(), CompanyEvent::CompanyArchived {}])
            .when(CompanyCommand::Archive)
            .then_expect_error(CompanyError::AlreadyArchived);
        Given::with(())
            .given(vec![registered(), CompanyEvent::CompanyArchived {}])
            .when(CompanyCommand::Restore)
            .then_expect_events(vec![CompanyEvent::CompanyRestored {}]);
        Given::with(())
            .given(vec![registered()])
            .when(CompanyCommand::Restore)
            .then_expect_error(CompanyError::NotArchived);
    }

    #[test]
    fn update_restores_before_and_archives_after_other_changes() {
        Given::with(())
            .given(vec![registered(), CompanyEvent::CompanyArchived {}])
            .when(CompanyCommand::Update(CompanyChanges {
                name: Some(name("Acme 2")),
                monthly_rate: Some(rate("10")),
                archived: Some(false),
                ..Default::default()
            }))
            .then_expect_events(vec![
                CompanyEvent::CompanyRestored {},
                CompanyEvent::CompanyRenamed {
                    name: "Acme 2".into(),
                    previous_name: "Acme".into(),
                },
                CompanyEvent::MonthlyRateSet {
                    monthly_rate: rate("10.00"),
                    previous_rate: rate("500.00"),
                },
            ]);
        Given::with(())
            .given(vec![registered()])
            .when(CompanyCommand::Update(CompanyChanges {
                name: Some(name("Gone")),
                monthly_rate: None,
                archived: Some(true),
                ..Default::default()
            }))
            .then_expect_events(vec![
                CompanyEvent::CompanyRenamed {
                    name: "Gone".into(),
                    previous_name: "Acme".into(),
                },
                CompanyEvent::CompanyArchived {},
            ]);
    }

    #[test]
    fn update_of_an_archived_company_without_restore_is_refused_whole() {
        Given::with(())
            .given(vec![registered(), CompanyEvent::CompanyArchived {}])
            .when(CompanyCommand::Update(CompanyChanges {
                name: Some(name("X")),
                ..Default::default()
            }))
            .then_expect_error(CompanyError::Archived);
    }

    #[test]
    fn update_with_nothing_new_appends_nothing() {
        Given::with(())
            .given(vec![registered()])
            .when(CompanyCommand::Update(CompanyChanges {
                name: Some(name("Acme")),
                monthly_rate: Some(rate("500")),
                archived: Some(false),
                customer_status: Some(CustomerStatus::Active),
                profile: ProfileChanges::parse(&ProfileInput {
                    phone: Some(""),
                    tags: Some(vec![]),
                    ..Default::default()
                })
                .unwrap(),
            }))
            .then_expect_events(vec![]);
    }

    #[test]
    fn events_round_trip_through_json_with_money_as_strings() {
        let event = CompanyEvent::MonthlyRateSet {
            monthly_rate: rate("650.5"),
            previous_rate: rate("0"),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"MonthlyRateSet": {"monthly_rate": "650.50", "previous_rate": "0.00"}})
        );
        assert_eq!(serde_json::from_value::<CompanyEvent>(json).unwrap(), event);
    }

    fn profile_input<'a>() -> ProfileInput<'a> {
        ProfileInput {
            billing_address: Some(" Acme Ltd\r\n1 Main St\r\nSpringfield "),
            site_address: Some("Unit 4\nIndustrial Park"),
            phone: Some("+1 (555) 010-0199 x12"),
            website: Some("Acme.Example/about?x=1"),
            notes: Some("Key at reception.\nAsk for Ann."),
            tags: Some(vec![" VIP ", "managed  print", "vip", "24x7", "on-site_ok"]),
        }
    }

    fn profile() -> CompanyProfile {
        ProfileChanges::parse(&profile_input())
            .unwrap()
            .applied_to(&CompanyProfile::default())
    }

    #[test]
    fn a_profile_is_normalised() {
        let p = profile();
        assert_eq!(p.billing_address, "Acme Ltd\n1 Main St\nSpringfield");
        assert_eq!(p.site_address, "Unit 4\nIndustrial Park");
        assert_eq!(p.phone, "+1 (555) 010-0199 x12");
        assert_eq!(p.website, "https://acme.example/about?x=1");
        assert_eq!(p.tags, ["24x7", "managed print", "on-site_ok", "vip"]);
        for (input, expected) in [
            ("http://Acme.Example", "http://acme.example"),
            ("HTTPS://acme.example:8443/x", "https://acme.example:8443/x"),
            ("https://[2001:db8::1]:443/", "https://[2001:db8::1]:443/"),
            ("https://192.0.2.7", "https://192.0.2.7"),
            ("  ", ""),
        ] {
            let changes = ProfileChanges::parse(&ProfileInput {
                website: Some(input),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("{input}: {e:?}"));
            assert_eq!(
                changes.applied_to(&CompanyProfile::default()).website,
                expected
            );
        }
    }

    #[test]
    fn every_bad_profile_field_is_reported_at_once() {
        let long_tags: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
        let long_tags: Vec<&str> = long_tags.iter().map(String::as_str).collect();
        let errors = ProfileChanges::parse(&ProfileInput {
            billing_address: Some(&"x".repeat(501)),
            site_address: Some("Gate\u{7}"),
            phone: Some("call me"),
            website: Some("javascript:alert(1)"),
            notes: Some(&"n".repeat(4001)),
            tags: Some(vec!["ok", "no/slash"]),
        })
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "billing_address",
                "site_address",
                "phone",
                "website",
                "notes",
                "tags"
            ]
        );
        assert!(errors[5].message.contains("\"no/slash\""), "{errors:?}");
        let too_many = ProfileChanges::parse(&ProfileInput {
            tags: Some(long_tags),
            ..Default::default()
        })
        .unwrap_err();
        assert!(too_many[0].message.contains("at most 20"), "{too_many:?}");
        for bad in [
            "ftp://acme.example",
            "https://",
            "https://user:pw@acme.example",
            "https://acme example",
            "https://acme.example:99999",
            "https://-acme.example",
            "https://acme..example",
            "https://acme.example/<script>",
            &format!("https://{}.example", "a".repeat(300)),
        ] {
            let result = ProfileChanges::parse(&ProfileInput {
                website: Some(bad),
                ..Default::default()
            });
            assert!(result.is_err(), "{bad}");
        }
        for bad in ["", " ", &"x".repeat(41), "a,b", "bell\u{7}"] {
            let result = ProfileChanges::parse(&ProfileInput {
                tags: Some(vec![bad]),
                ..Default::default()
            });
            assert!(result.is_err(), "{bad:?}");
        }
        assert!(
            ProfileChanges::parse(&ProfileInput {
                tags: Some(vec!["x"; 25]),
                ..Default::default()
            })
            .is_ok(),
            "duplicates count once"
        );
        assert_eq!(split_tags(" a, ,b ,"), ["a", "b"]);
    }

    #[test]
    fn registers_with_a_status_and_a_profile() {
        Given::with(())
            .given_no_previous_events()
            .when(CompanyCommand::Register {
                name: name("Acme"),
                monthly_rate: rate("500"),
                customer_status: CustomerStatus::Prospect,
                profile: profile(),
            })
            .then_expect_events(vec![CompanyEvent::CompanyRegistered {
                name: "Acme".into(),
                monthly_rate: rate("500"),
                customer_status: CustomerStatus::Prospect,
                profile: profile(),
            }]);
    }

    #[test]
    fn the_profile_changes_only_where_it_differs() {
        let changes = ProfileChanges::parse(&ProfileInput {
            phone: Some("555 0100"),
            tags: Some(vec!["vip"]),
            ..Default::default()
        })
        .unwrap();
        let mut expected = CompanyProfile {
            phone: "555 0100".into(),
            tags: vec!["vip".into()],
            ..Default::default()
        };
        Given::with(())
            .given(vec![registered()])
            .when(CompanyCommand::UpdateProfile(changes.clone()))
            .then_expect_events(vec![CompanyEvent::CompanyProfileUpdated {
                profile: expected.clone(),
                changed: vec!["phone".into(), "tags".into()],
            }]);
        let updated = CompanyEvent::CompanyProfileUpdated {
            profile: expected.clone(),
            changed: vec!["phone".into(), "tags".into()],
        };
        Given::with(())
            .given(vec![registered(), updated.clone()])
            .when(CompanyCommand::UpdateProfile(changes))
            .then_expect_events(vec![]);
        // Absent fields stay as they are.
        let notes = ProfileChanges::parse(&ProfileInput {
            notes: Some("Closed on Fridays"),
            ..Default::default()
        })
        .unwrap();
        expected.notes = "Closed on Fridays".into();
        Given::with(())
            .given(vec![registered(), updated])
            .when(CompanyCommand::UpdateProfile(notes.clone()))
            .then_expect_events(vec![CompanyEvent::CompanyProfileUpdated {
                profile: expected,
                changed: vec!["notes".into()],
            }]);
        Given::with(())
            .given(vec![registered(), CompanyEvent::CompanyArchived {}])
            .when(CompanyCommand::UpdateProfile(notes))
            .then_expect_error(CompanyError::Archived);
    }

    #[test]
    fn the_customer_status_changes_with_the_previous_one() {
        Given::with(())
            .given(vec![registered()])
            .when(CompanyCommand::SetCustomerStatus {
                status: CustomerStatus::Suspended,
            })
            .then_expect_events(vec![CompanyEvent::CompanyStatusChanged {
                status: CustomerStatus::Suspended,
                previous_status: CustomerStatus::Active,
            }]);
        Given::with(())
            .given(vec![registered()])
            .when(CompanyCommand::SetCustomerStatus {
                status: CustomerStatus::Active,
            })
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![registered(), CompanyEvent::CompanyArchived {}])
            .when(CompanyCommand::SetCustomerStatus {
                status: CustomerStatus::Former,
            })
            .then_expect_error(CompanyError::Archived);
        assert_eq!(
            CustomerStatus::parse("customer_status", " Former ").unwrap(),
            CustomerStatus::Former
        );
        assert_eq!(
            CustomerStatus::parse("customer_status", "gone")
                .unwrap_err()
                .field,
            "customer_status"
        );
    }

    #[test]
    fn update_changes_status_and_profile_after_a_restore() {
        let changes = CompanyChanges {
            archived: Some(false),
            customer_status: Some(CustomerStatus::Former),
            profile: ProfileChanges::parse(&ProfileInput {
                website: Some("acme.example"),
                ..Default::default()
            })
            .unwrap(),
            ..Default::default()
        };
        Given::with(())
            .given(vec![registered(), CompanyEvent::CompanyArchived {}])
            .when(CompanyCommand::Update(changes))
            .then_expect_events(vec![
                CompanyEvent::CompanyRestored {},
                CompanyEvent::CompanyStatusChanged {
                    status: CustomerStatus::Former,
                    previous_status: CustomerStatus::Active,
                },
                CompanyEvent::CompanyProfileUpdated {
                    profile: CompanyProfile {
                        website: "https://acme.example".into(),
                        ..Default::default()
                    },
                    changed: vec!["website".into()],
                },
            ]);
    }

    #[test]
    fn events_stored_before_the_profile_still_load() {
        let old =
            serde_json::json!({"CompanyRegistered": {"name": "Acme", "monthly_rate": "500.00"}});
        let event: CompanyEvent = serde_json::from_value(old.clone()).unwrap();
        let mut company = Company::default();
        company.apply(event.clone());
        assert_eq!(company.customer_status, CustomerStatus::Active);
        assert_eq!(company.profile, CompanyProfile::default());
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            old,
            "a plain registration is stored exactly as before"
        );
        let state: Company = serde_json::from_value(
            serde_json::json!({"registered": true, "name": "Acme", "monthly_rate": "1.00", "archived": false}),
        )
        .unwrap();
        assert_eq!(state.customer_status, CustomerStatus::Active);
        let json = serde_json::to_value(CompanyEvent::CompanyStatusChanged {
            status: CustomerStatus::Prospect,
            previous_status: CustomerStatus::Active,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"CompanyStatusChanged": {"status": "prospect", "previous_status": "active"}})
        );
        let updated =
            serde_json::json!({"CompanyProfileUpdated": {"profile": {"phone": "555 0100"}}});
        let CompanyEvent::CompanyProfileUpdated { profile, changed } =
            serde_json::from_value(updated).unwrap()
        else {
            panic!("not a profile update")
        };
        assert_eq!(profile.phone, "555 0100");
        assert!(changed.is_empty() && profile.tags.is_empty());
    }
}
