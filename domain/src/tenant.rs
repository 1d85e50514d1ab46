//! A tenant: one MSP using the deployment, with its settings and its members. Memberships
//! (role, enabled) live here because the rules about them span members: the last active owner
//! can be neither demoted, disabled nor removed.

use std::collections::BTreeMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::business_hours::BusinessHours;
use crate::coverage::{WorkType, DEFAULT_WORK_TYPES};
use crate::identity::{Currency, Role, TimeZone};
use crate::notification::{EmailProvider, SmsProvider};
use crate::template::{Kind, Template};
use crate::values::Amount;
use crate::workorder::{Priority, SlaPolicy};
use crate::{ErrorKind, HasErrorKind};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub role: Role,
    /// The customer company of a `client` member.
    pub company_id: Option<Uuid>,
    pub enabled: bool,
    /// The member's hourly labour cost (technicians' time entries keep it apart from the
    /// charge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly_cost: Option<Amount>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub created: bool,
    pub name: String,
    pub currency: Option<Currency>,
    pub time_zone: Option<TimeZone>,
    pub members: BTreeMap<Uuid, Member>,
    /// The prefix of new asset tags; `None`: derived from the name (`asset::default_tag_prefix`).
    #[serde(default)]
    pub asset_tag_prefix: Option<String>,
    /// Asset categories this tenant defined, beside the built-in ones.
    #[serde(default)]
    pub asset_categories: Vec<String>,
    /// `None`: Mon–Fri 09:00–17:00 in the tenant's time zone (`business_hours()`).
    #[serde(default)]
    pub business_hours: Option<BusinessHours>,
    /// SLA targets per priority; a priority without one has no SLA.
    #[serde(default)]
    pub sla_policies: Vec<SlaPolicy>,
    /// Who hears of SLA warnings and breaches, beside the assignee.
    #[serde(default)]
    pub sla_escalate_to: Option<Uuid>,
    /// `None`: `coverage::DEFAULT_WORK_TYPES`, without rates.
    #[serde(default)]
    pub work_types: Option<Vec<WorkType>>,
    /// The hourly rate of billable work when neither the company nor the work type has one.
    #[serde(default)]
    pub default_hourly_rate: Option<Amount>,
    /// The tenant's own wording of messages; a kind without one uses `Template::default_for`.
    #[serde(default)]
    pub templates: BTreeMap<Kind, Template>,
    /// The tenant's own SMTP server; `None`: the deployment's (`ST_SMTP_URL`), if any.
    #[serde(default)]
    pub email_provider: Option<EmailProvider>,
    /// The tenant's own SMS provider; `None`: the deployment's (`ST_TWILIO_*`), if any.
    #[serde(default)]
    pub sms_provider: Option<SmsProvider>,
    /// What invoices and statements say of the tenant as the seller.
    #[serde(default)]
    pub billing_profile: BillingProfile,
    /// Reminders and late fees on overdue invoices.
    #[serde(default)]
    pub late_payment: LatePayment,
    /// The services it resells, billed with the contracts of the companies subscribed.
    #[serde(default)]
    pub services: BTreeMap<Uuid, crate::billing::CatalogueService>,
}

/// What happens when invoices are overdue: a reminder to the billing contacts at each of
/// `reminder_days` days past due, and optionally a late fee, charged once per invoice, when
/// an invoice is `fee.after_days` past due.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatePayment {
    pub reminder_days: Vec<u32>,
    pub fee: Option<LateFee>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateFee {
    pub after_days: u32,
    /// A fixed amount, or a percentage of the invoice's balance (rounded to the cent).
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: rust_decimal::Decimal,
    pub percent: bool,
}

impl LateFee {
    /// The rule's name in the ledger (a fee is charged once per invoice and rule).
    pub fn rule(&self) -> String {
        format!(
            "{}d-{}{}",
            self.after_days,
            self.amount.normalize(),
            if self.percent { "pct" } else { "" }
        )
    }

    /// The fee on an invoice with `balance` still due.
    pub fn on(&self, balance: rust_decimal::Decimal) -> rust_decimal::Decimal {
        if self.percent {
            crate::billing::cents(balance * self.amount / rust_decimal::Decimal::from(100))
        } else {
            crate::billing::cents(self.amount)
        }
    }
}

impl LatePayment {
    /// Checks the policy; every problem at once.
    pub fn check(&self) -> Result<(), Vec<crate::ValidationError>> {
        let mut errors = Vec::new();
        if self.reminder_days.len() > 10 || self.reminder_days.iter().any(|d| *d == 0 || *d > 365) {
            errors.push(crate::ValidationError::new(
                "reminder_days",
                "at most 10 reminders, each 1 to 365 days past due",
            ));
        }
        if let Some(fee) = &self.fee {
            if fee.after_days == 0 || fee.after_days > 365 {
                errors.push(crate::ValidationError::new(
                    "fee_after_days",
                    "must be 1 to 365 days past due",
                ));
            }
            let max = if fee.percent { 100 } else { 1_000_000 };
            if fee.amount <= rust_decimal::Decimal::ZERO
                || fee.amount > rust_decimal::Decimal::from(max)
                || fee.amount.normalize().scale() > 2
            {
                errors.push(crate::ValidationError::new(
                    "fee_amount",
                    if fee.percent {
                        "must be a percentage above 0 and at most 100"
                    } else {
                        "must be an amount above 0 with at most 2 decimals"
                    },
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// The seller's details on invoices and statements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingProfile {
    /// Postal address, one line per line.
    pub address: String,
    /// VAT or other tax id, shown under the address.
    #[serde(default)]
    pub tax_id: String,
    /// Bank details and how to pay, printed on every invoice.
    #[serde(default)]
    pub payment_instructions: String,
    /// Email and phone for billing questions.
    #[serde(default)]
    pub contact: String,
}

impl BillingProfile {
    /// Checks the lengths; every problem at once.
    pub fn check(&self) -> Result<(), Vec<crate::ValidationError>> {
        let mut errors = Vec::new();
        for (field, value, max) in [
            ("address", &self.address, 500),
            ("tax_id", &self.tax_id, 100),
            ("payment_instructions", &self.payment_instructions, 1000),
            ("contact", &self.contact, 200),
        ] {
            if value.chars().count() > max {
                errors.push(crate::ValidationError::new(
                    field,
                    format!("must be at most {max} characters"),
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum TenantCommand {
    Create {
        name: String,
        currency: Currency,
        time_zone: TimeZone,
        owner_id: Uuid,
    },
    Rename {
        name: String,
    },
    ChangeSettings {
        currency: Option<Currency>,
        time_zone: Option<TimeZone>,
    },
    AddMember {
        user_id: Uuid,
        role: Role,
        company_id: Option<Uuid>,
    },
    ChangeRole {
        user_id: Uuid,
        role: Role,
    },
    DisableMember {
        user_id: Uuid,
    },
    EnableMember {
        user_id: Uuid,
    },
    RemoveMember {
        user_id: Uuid,
    },
    /// Sets the asset tag prefix (for assets registered from now on) and the tenant's own
    /// asset categories (already checked with `asset::parse_tag_prefix` / `parse_category_name`).
    ChangeAssetSettings {
        tag_prefix: String,
        categories: Vec<String>,
    },
    SetBusinessHours {
        hours: BusinessHours,
    },
    /// Checked with `workorder::parse_sla_policies`; `escalate_to` must be a staff member.
    SetSlaPolicies {
        policies: Vec<SlaPolicy>,
        escalate_to: Option<Uuid>,
    },
    /// Work types (names checked with `coverage::parse_work_type_name`) and the default rate.
    ChangeWorkSettings {
        work_types: Vec<WorkType>,
        default_hourly_rate: Amount,
    },
    SetLabourCost {
        user_id: Uuid,
        hourly_cost: Option<Amount>,
    },
    /// Checked with `Template::check`; `None`: back to the shipped wording.
    SetTemplate {
        kind: Kind,
        template: Option<Template>,
    },
    SetEmailProvider {
        provider: Option<EmailProvider>,
    },
    SetSmsProvider {
        provider: Option<SmsProvider>,
    },
    SetBillingProfile {
        profile: BillingProfile,
    },
    SetLatePayment {
        policy: LatePayment,
    },
    /// Adds or changes a catalogue service (checked with `CatalogueService::check`).
    SetService {
        service_id: Uuid,
        service: crate::billing::CatalogueService,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TenantEvent {
    TenantCreated {
        name: String,
        currency: Currency,
        time_zone: TimeZone,
        owner_id: Uuid,
    },
    TenantRenamed {
        name: String,
        previous_name: String,
    },
    TenantSettingsChanged {
        currency: Currency,
        time_zone: TimeZone,
    },
    MemberAdded {
        user_id: Uuid,
        role: Role,
        company_id: Option<Uuid>,
    },
    MemberRoleChanged {
        user_id: Uuid,
        role: Role,
        previous_role: Role,
    },
    MemberDisabled {
        user_id: Uuid,
    },
    MemberEnabled {
        user_id: Uuid,
    },
    MemberRemoved {
        user_id: Uuid,
    },
    AssetSettingsChanged {
        tag_prefix: String,
        categories: Vec<String>,
    },
    BusinessHoursChanged {
        hours: BusinessHours,
    },
    SlaPoliciesChanged {
        policies: Vec<SlaPolicy>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        escalate_to: Option<Uuid>,
    },
    WorkSettingsChanged {
        work_types: Vec<WorkType>,
        default_hourly_rate: Amount,
    },
    LabourCostChanged {
        user_id: Uuid,
        hourly_cost: Option<Amount>,
    },
    TemplateChanged {
        kind: Kind,
        template: Option<Template>,
    },
    EmailProviderChanged {
        provider: Option<EmailProvider>,
    },
    SmsProviderChanged {
        provider: Option<SmsProvider>,
    },
    BillingProfileChanged {
        profile: BillingProfile,
    },
    LatePaymentChanged {
        policy: LatePayment,
    },
    /// The whole service after the change (also its first definition).
    ServiceDefined {
        service_id: Uuid,
        service: crate::billing::CatalogueService,
    },
}

impl DomainEvent for TenantEvent {
    fn event_type(&self) -> String {
        match self {
            Self::TenantCreated { .. } => "TenantCreated",
            Self::TenantRenamed { .. } => "TenantRenamed",
            Self::TenantSettingsChanged { .. } => "TenantSettingsChanged",
            Self::MemberAdded { .. } => "MemberAdded",
            Self::MemberRoleChanged { .. } => "MemberRoleChanged",
            Self::MemberDisabled { .. } => "MemberDisabled",
            Self::MemberEnabled { .. } => "MemberEnabled",
            Self::MemberRemoved { .. } => "MemberRemoved",
            Self::AssetSettingsChanged { .. } => "AssetSettingsChanged",
            Self::BusinessHoursChanged { .. } => "BusinessHoursChanged",
            Self::SlaPoliciesChanged { .. } => "SlaPoliciesChanged",
            Self::WorkSettingsChanged { .. } => "WorkSettingsChanged",
            Self::LabourCostChanged { .. } => "LabourCostChanged",
            Self::TemplateChanged { .. } => "TemplateChanged",
            Self::EmailProviderChanged { .. } => "EmailProviderChanged",
            Self::SmsProviderChanged { .. } => "SmsProviderChanged",
            Self::BillingProfileChanged { .. } => "BillingProfileChanged",
            Self::LatePaymentChanged { .. } => "LatePaymentChanged",
            Self::ServiceDefined { .. } => "ServiceDefined",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("this tenant already exists")]
    AlreadyCreated,
    #[error("tenant not found")]
    NotFound,
    #[error("the tenant name must be 1 to 200 characters")]
    InvalidName,
    #[error("this person is already a member")]
    AlreadyMember,
    #[error("this person is not a member")]
    NotMember,
    #[error("a client must belong to a customer company, and only a client may")]
    ClientCompany,
    #[error("a portal user cannot become staff, nor staff a portal user: invite them again")]
    StaffClientSwitch,
    #[error("the last active owner cannot be demoted, disabled or removed; make someone else owner first")]
    LastOwner,
    #[error("this member is already disabled")]
    AlreadyDisabled,
    #[error("this member is not disabled")]
    NotDisabled,
    #[error("SLA escalations go to an active staff member")]
    EscalateToStaff,
    #[error("there must be at least one work type, each named once")]
    WorkTypes,
    #[error("the template uses a placeholder its kind of message does not have")]
    InvalidTemplate,
}

impl HasErrorKind for TenantError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound | Self::NotMember => ErrorKind::NotFound,
            Self::InvalidName
            | Self::ClientCompany
            | Self::EscalateToStaff
            | Self::WorkTypes
            | Self::InvalidTemplate => ErrorKind::Invalid,
            Self::AlreadyCreated
            | Self::AlreadyMember
            | Self::StaffClientSwitch
            | Self::LastOwner
            | Self::AlreadyDisabled
            | Self::NotDisabled => ErrorKind::Conflict,
        }
    }
}

fn checked_name(name: &str) -> Result<String, TenantError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        Err(TenantError::InvalidName)
    } else {
        Ok(name.to_owned())
    }
}

impl Tenant {
    /// The wording of `kind`'s messages: the tenant's own, or the shipped one.
    pub fn template(&self, kind: Kind) -> Template {
        self.templates
            .get(&kind)
            .cloned()
            .unwrap_or_else(|| Template::default_for(kind))
    }

    fn member(&self, user_id: Uuid) -> Result<&Member, TenantError> {
        self.members.get(&user_id).ok_or(TenantError::NotMember)
    }

    /// True when `user_id` is the only enabled owner.
    fn is_last_owner(&self, user_id: Uuid) -> bool {
        let owners: Vec<_> = self
            .members
            .iter()
            .filter(|(_, m)| m.role == Role::Owner && m.enabled)
            .map(|(id, _)| *id)
            .collect();
        owners == [user_id]
    }

    /// The prefix of the next asset tags.
    pub fn tag_prefix(&self) -> String {
        self.asset_tag_prefix
            .clone()
            .unwrap_or_else(|| crate::asset::default_tag_prefix(&self.name))
    }

    /// Every category an asset of this tenant may have: the built-in ones, then its own.
    pub fn categories(&self) -> Vec<String> {
        crate::asset::BUILT_IN_CATEGORIES
            .iter()
            .map(|c| c.to_string())
            .chain(self.asset_categories.iter().cloned())
            .collect()
    }

    /// The tenant's business hours (Mon–Fri 09:00–17:00 in its zone until it sets its own).
    pub fn business_hours(&self) -> BusinessHours {
        self.business_hours.clone().unwrap_or_else(|| {
            BusinessHours::standard(
                self.time_zone
                    .unwrap_or_else(|| TimeZone::parse("UTC").expect("UTC is an IANA zone")),
            )
        })
    }

    /// The SLA policy of `priority`, if the tenant has one.
    pub fn sla_policy(&self, priority: Priority) -> Option<SlaPolicy> {
        self.sla_policies
            .iter()
            .find(|p| p.priority == priority)
            .copied()
    }

    /// The tenant's work types, the defaults until it defines its own.
    pub fn work_types(&self) -> Vec<WorkType> {
        self.work_types.clone().unwrap_or_else(|| {
            DEFAULT_WORK_TYPES
                .iter()
                .map(|name| WorkType {
                    name: name.to_string(),
                    hourly_rate: None,
                })
                .collect()
        })
    }

    pub fn work_type_names(&self) -> Vec<String> {
        self.work_types().into_iter().map(|t| t.name).collect()
    }

    /// The role of an enabled member (`None`: not a member, or disabled).
    pub fn active_role(&self, user_id: Uuid) -> Option<Role> {
        self.members
            .get(&user_id)
            .filter(|m| m.enabled)
            .map(|m| m.role)
    }

    fn decide(&self, command: TenantCommand) -> Result<Vec<TenantEvent>, TenantError> {
        use TenantEvent as E;
        if !self.created && !matches!(command, TenantCommand::Create { .. }) {
            return Err(TenantError::NotFound);
        }
        Ok(match command {
            TenantCommand::Create {
                name,
                currency,
                time_zone,
                owner_id,
            } => {
                if self.created {
                    return Err(TenantError::AlreadyCreated);
                }
                vec![
                    E::TenantCreated {
                        name: checked_name(&name)?,
                        currency,
                        time_zone,
                        owner_id,
                    },
                    E::MemberAdded {
                        user_id: owner_id,
                        role: Role::Owner,
                        company_id: None,
                    },
                ]
            }
            TenantCommand::Rename { name } => {
                let name = checked_name(&name)?;
                if name == self.name {
                    vec![]
                } else {
                    vec![E::TenantRenamed {
                        name,
                        previous_name: self.name.clone(),
                    }]
                }
            }
            TenantCommand::ChangeSettings {
                currency,
                time_zone,
            } => {
                let currency = currency.or(self.currency).ok_or(TenantError::NotFound)?;
                let time_zone = time_zone.or(self.time_zone).ok_or(TenantError::NotFound)?;
                if Some(currency) == self.currency && Some(time_zone) == self.time_zone {
                    vec![]
                } else {
                    vec![E::TenantSettingsChanged {
                        currency,
                        time_zone,
                    }]
                }
            }
            TenantCommand::AddMember {
                user_id,
                role,
                company_id,
            } => {
                if self.members.contains_key(&user_id) {
                    return Err(TenantError::AlreadyMember);
                }
                if (role == Role::Client) != company_id.is_some() {
                    return Err(TenantError::ClientCompany);
                }
                vec![E::MemberAdded {
                    user_id,
                    role,
                    company_id,
                }]
            }
            TenantCommand::ChangeRole { user_id, role } => {
                let member = self.member(user_id)?;
                if member.role == role {
                    return Ok(vec![]);
                }
                if member.role.is_staff() != role.is_staff() {
                    return Err(TenantError::StaffClientSwitch);
                }
                if member.role == Role::Owner && self.is_last_owner(user_id) {
                    return Err(TenantError::LastOwner);
                }
                vec![E::MemberRoleChanged {
                    user_id,
                    role,
                    previous_role: member.role,
                }]
            }
            TenantCommand::DisableMember { user_id } => {
                if !self.member(user_id)?.enabled {
                    return Err(TenantError::AlreadyDisabled);
                }
                if self.is_last_owner(user_id) {
                    return Err(TenantError::LastOwner);
                }
                vec![E::MemberDisabled { user_id }]
            }
            TenantCommand::EnableMember { user_id } => {
                if self.member(user_id)?.enabled {
                    return Err(TenantError::NotDisabled);
                }
                vec![E::MemberEnabled { user_id }]
            }
            TenantCommand::RemoveMember { user_id } => {
                self.member(user_id)?;
                if self.is_last_owner(user_id) {
                    return Err(TenantError::LastOwner);
                }
                vec![E::MemberRemoved { user_id }]
            }
            TenantCommand::ChangeAssetSettings {
                tag_prefix,
                mut categories,
            } => {
                categories.sort();
                categories.dedup();
                categories.retain(|c| !crate::asset::BUILT_IN_CATEGORIES.contains(&c.as_str()));
                if tag_prefix == self.tag_prefix() && categories == self.asset_categories {
                    vec![]
                } else {
                    vec![E::AssetSettingsChanged {
                        tag_prefix,
                        categories,
                    }]
                }
            }
            TenantCommand::SetBusinessHours { hours } => {
                if self.business_hours.as_ref() == Some(&hours) {
                    vec![]
                } else {
                    vec![E::BusinessHoursChanged { hours }]
                }
            }
            TenantCommand::SetSlaPolicies {
                policies,
                escalate_to,
            } => {
                if let Some(user_id) = escalate_to {
                    if !self.active_role(user_id).is_some_and(|r| r.is_staff()) {
                        return Err(TenantError::EscalateToStaff);
                    }
                }
                if policies == self.sla_policies && escalate_to == self.sla_escalate_to {
                    vec![]
                } else {
                    vec![E::SlaPoliciesChanged {
                        policies,
                        escalate_to,
                    }]
                }
            }
            TenantCommand::ChangeWorkSettings {
                work_types,
                default_hourly_rate,
            } => {
                let mut names: Vec<&str> = work_types.iter().map(|t| t.name.as_str()).collect();
                names.sort_unstable();
                names.dedup();
                if work_types.is_empty() || names.len() != work_types.len() {
                    return Err(TenantError::WorkTypes);
                }
                if Some(&work_types) == self.work_types.as_ref()
                    && Some(default_hourly_rate) == self.default_hourly_rate
                {
                    vec![]
                } else {
                    vec![E::WorkSettingsChanged {
                        work_types,
                        default_hourly_rate,
                    }]
                }
            }
            TenantCommand::SetLabourCost {
                user_id,
                hourly_cost,
            } => {
                if self.member(user_id)?.hourly_cost == hourly_cost {
                    vec![]
                } else {
                    vec![E::LabourCostChanged {
                        user_id,
                        hourly_cost,
                    }]
                }
            }
            TenantCommand::SetTemplate { kind, template } => {
                let template = template.filter(|t| *t != Template::default_for(kind));
                if let Some(t) = &template {
                    t.check(kind).map_err(|_| TenantError::InvalidTemplate)?;
                }
                if self.templates.get(&kind) == template.as_ref() {
                    vec![]
                } else {
                    vec![E::TemplateChanged { kind, template }]
                }
            }
            TenantCommand::SetEmailProvider { provider } => {
                if self.email_provider == provider {
                    vec![]
                } else {
                    vec![E::EmailProviderChanged { provider }]
                }
            }
            TenantCommand::SetSmsProvider { provider } => {
                if self.sms_provider == provider {
                    vec![]
                } else {
                    vec![E::SmsProviderChanged { provider }]
                }
            }
            TenantCommand::SetLatePayment { mut policy } => {
                policy.check().map_err(|_| TenantError::InvalidName)?;
                policy.reminder_days.sort_unstable();
                policy.reminder_days.dedup();
                if self.late_payment == policy {
                    vec![]
                } else {
                    vec![E::LatePaymentChanged { policy }]
                }
            }
            TenantCommand::SetService {
                service_id,
                service,
            } => {
                service.check().map_err(|_| TenantError::InvalidName)?;
                if self.services.get(&service_id) == Some(&service) {
                    vec![]
                } else {
                    vec![E::ServiceDefined {
                        service_id,
                        service,
                    }]
                }
            }
            TenantCommand::SetBillingProfile { profile } => {
                profile.check().map_err(|_| TenantError::InvalidName)?;
                if self.billing_profile == profile {
                    vec![]
                } else {
                    vec![E::BillingProfileChanged { profile }]
                }
            }
        })
    }
}

impl Aggregate for Tenant {
    const TYPE: &'static str = "tenant";
    type Command = TenantCommand;
    type Event = TenantEvent;
    type Error = TenantError;
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
            TenantEvent::TenantCreated {
                name,
                currency,
                time_zone,
                ..
            } => {
                self.created = true;
                self.name = name;
                self.currency = Some(currency);
                self.time_zone = Some(time_zone);
            }
            TenantEvent::TenantRenamed { name, .. } => self.name = name,
            TenantEvent::TenantSettingsChanged {
                currency,
                time_zone,
            } => {
                self.currency = Some(currency);
                self.time_zone = Some(time_zone);
            }
            TenantEvent::MemberAdded {
                user_id,
                role,
                company_id,
            } => {
                self.members.insert(
                    user_id,
                    Member {
                        role,
                        company_id,
                        enabled: true,
                        hourly_cost: None,
                    },
                );
            }
            TenantEvent::MemberRoleChanged { user_id, role, .. } => {
                if let Some(m) = self.members.get_mut(&user_id) {
                    m.role = role;
                }
            }
            TenantEvent::MemberDisabled { user_id } => {
                if let Some(m) = self.members.get_mut(&user_id) {
                    m.enabled = false;
                }
            }
            TenantEvent::MemberEnabled { user_id } => {
                if let Some(m) = self.members.get_mut(&user_id) {
                    m.enabled = true;
                }
            }
            TenantEvent::MemberRemoved { user_id } => {
                self.members.remove(&user_id);
            }
            TenantEvent::AssetSettingsChanged {
                tag_prefix,
                categories,
            } => {
                self.asset_tag_prefix = Some(tag_prefix);
                self.asset_categories = categories;
            }
            TenantEvent::BusinessHoursChanged { hours } => self.business_hours = Some(hours),
            TenantEvent::TemplateChanged { kind, template } => match template {
                Some(template) => {
                    self.templates.insert(kind, template);
                }
                None => {
                    self.templates.remove(&kind);
                }
            },
            TenantEvent::EmailProviderChanged { provider } => self.email_provider = provider,
            TenantEvent::SmsProviderChanged { provider } => self.sms_provider = provider,
            TenantEvent::BillingProfileChanged { profile } => self.billing_profile = profile,
            TenantEvent::LatePaymentChanged { policy } => self.late_payment = policy,
            TenantEvent::ServiceDefined {
                service_id,
                service,
            } => {
                self.services.insert(service_id, service);
            }
            TenantEvent::SlaPoliciesChanged {
                policies,
                escalate_to,
            } => {
                self.sla_policies = policies;
                self.sla_escalate_to = escalate_to;
            }
            TenantEvent::WorkSettingsChanged {
                work_types,
                default_hourly_rate,
            } => {
                self.work_types = Some(work_types);
                self.default_hourly_rate = Some(default_hourly_rate);
            }
            TenantEvent::LabourCostChanged {
                user_id,
                hourly_cost,
            } => {
                if let Some(m) = self.members.get_mut(&user_id) {
                    m.hourly_cost = hourly_cost;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Tenant>;

    const OWNER: Uuid = Uuid::from_u128(1);
    const OTHER: Uuid = Uuid::from_u128(2);
    const COMPANY: Uuid = Uuid::from_u128(9);

    fn created() -> Vec<TenantEvent> {
        vec![
            TenantEvent::TenantCreated {
                name: "Acme IT".into(),
                currency: Currency::parse("USD").unwrap(),
                time_zone: TimeZone::parse("America/New_York").unwrap(),
                owner_id: OWNER,
            },
            TenantEvent::MemberAdded {
                user_id: OWNER,
                role: Role::Owner,
                company_id: None,
            },
        ]
    }

    fn with(mut events: Vec<TenantEvent>, more: Vec<TenantEvent>) -> Vec<TenantEvent> {
        events.extend(more);
        events
    }

    fn added(user_id: Uuid, role: Role) -> TenantEvent {
        TenantEvent::MemberAdded {
            user_id,
            role,
            company_id: (role == Role::Client).then_some(COMPANY),
        }
    }

    #[test]
    fn creating_a_tenant_makes_its_first_user_owner() {
        Given::with(())
            .given_no_previous_events()
            .when(TenantCommand::Create {
                name: " Acme IT ".into(),
                currency: Currency::parse("USD").unwrap(),
                time_zone: TimeZone::parse("America/New_York").unwrap(),
                owner_id: OWNER,
            })
            .then_expect_events(created());
    }

    #[test]
    fn the_last_owner_cannot_be_demoted_disabled_or_removed() {
        for command in [
            TenantCommand::ChangeRole {
                user_id: OWNER,
                role: Role::Admin,
            },
            TenantCommand::DisableMember { user_id: OWNER },
            TenantCommand::RemoveMember { user_id: OWNER },
        ] {
            Given::with(())
                .given(created())
                .when(command)
                .then_expect_error(TenantError::LastOwner);
        }
    }

    #[test]
    fn with_a_second_owner_the_first_can_step_down() {
        Given::with(())
            .given(with(created(), vec![added(OTHER, Role::Owner)]))
            .when(TenantCommand::ChangeRole {
                user_id: OWNER,
                role: Role::Technician,
            })
            .then_expect_events(vec![TenantEvent::MemberRoleChanged {
                user_id: OWNER,
                role: Role::Technician,
                previous_role: Role::Owner,
            }]);
    }

    #[test]
    fn a_disabled_second_owner_does_not_count() {
        Given::with(())
            .given(with(
                created(),
                vec![
                    added(OTHER, Role::Owner),
                    TenantEvent::MemberDisabled { user_id: OTHER },
                ],
            ))
            .when(TenantCommand::RemoveMember { user_id: OWNER })
            .then_expect_error(TenantError::LastOwner);
    }

    #[test]
    fn clients_belong_to_a_company_and_stay_clients() {
        Given::with(())
            .given(created())
            .when(TenantCommand::AddMember {
                user_id: OTHER,
                role: Role::Client,
                company_id: None,
            })
            .then_expect_error(TenantError::ClientCompany);
        Given::with(())
            .given(created())
            .when(TenantCommand::AddMember {
                user_id: OTHER,
                role: Role::Admin,
                company_id: Some(COMPANY),
            })
            .then_expect_error(TenantError::ClientCompany);
        Given::with(())
            .given(with(created(), vec![added(OTHER, Role::Client)]))
            .when(TenantCommand::ChangeRole {
                user_id: OTHER,
                role: Role::Admin,
            })
            .then_expect_error(TenantError::StaffClientSwitch);
    }

    #[test]
    fn members_are_disabled_and_enabled_once() {
        let disabled = with(
            created(),
            vec![
                added(OTHER, Role::Technician),
                TenantEvent::MemberDisabled { user_id: OTHER },
            ],
        );
        Given::with(())
            .given(disabled.clone())
            .when(TenantCommand::DisableMember { user_id: OTHER })
            .then_expect_error(TenantError::AlreadyDisabled);
        Given::with(())
            .given(disabled)
            .when(TenantCommand::EnableMember { user_id: OTHER })
            .then_expect_events(vec![TenantEvent::MemberEnabled { user_id: OTHER }]);
    }

    #[test]
    fn unknown_members_and_tenants_are_not_found() {
        Given::with(())
            .given(created())
            .when(TenantCommand::ChangeRole {
                user_id: OTHER,
                role: Role::Admin,
            })
            .then_expect_error(TenantError::NotMember);
        Given::with(())
            .given_no_previous_events()
            .when(TenantCommand::Rename { name: "X".into() })
            .then_expect_error(TenantError::NotFound);
    }

    #[test]
    fn active_role_ignores_disabled_members() {
        let mut tenant = Tenant::default();
        for event in with(
            created(),
            vec![
                added(OTHER, Role::Admin),
                TenantEvent::MemberDisabled { user_id: OTHER },
            ],
        ) {
            tenant.apply(event);
        }
        assert_eq!(tenant.active_role(OWNER), Some(Role::Owner));
        assert_eq!(tenant.active_role(OTHER), None);
    }
}
