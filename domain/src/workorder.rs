//! A work order: a piece of work for a customer company (issue 5). Its events are its
//! timeline: opening, assignment, status moves, comments, attachments, time, SLA warnings and
//! breaches, status links and the customer's rating.
//!
//! The aggregate decides with what its commands carry: the tenant's business hours and SLA
//! targets (for due times), the billing decision of a time entry (made by the command layer
//! from the company's coverage, see `coverage`), the instant (`now`). Nothing here reads a
//! clock.
//!
//! SLA clocks run in business minutes while the order is *active* (new, assigned, in
//! progress, reopened) and stop otherwise (waiting on the customer, resolved, closed, ...).
//! Each due time is `opened_at + target + paused` business minutes, where `paused` counts the
//! business minutes spent stopped; so a pause, a reopening or a change of priority moves a due
//! time by exactly the business time it should, and DST changes and holidays move it not at all.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::asset::AssetDocument;
use crate::business_hours::BusinessHours;
use crate::contact::text;
use crate::values::Amount;
use crate::{ErrorKind, HasErrorKind, ValidationError};

/// How urgent a work order is; each priority has its own SLA targets.
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub const ALL: [Priority; 4] = [Self::Low, Self::Normal, Self::High, Self::Urgent];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
            Self::Urgent => "urgent",
        }
    }

    pub fn parse(field: &'static str, text: &str) -> Result<Self, ValidationError> {
        let wanted = text.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == wanted)
            .ok_or_else(|| ValidationError::new(field, "must be one of low, normal, high, urgent"))
    }
}

/// Where a work order stands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    New,
    Assigned,
    InProgress,
    WaitingOnCustomer,
    Resolved,
    Closed,
    Reopened,
    Cancelled,
    NoFix,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Self::New,
        Self::Assigned,
        Self::InProgress,
        Self::WaitingOnCustomer,
        Self::Resolved,
        Self::Closed,
        Self::Reopened,
        Self::Cancelled,
        Self::NoFix,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Assigned => "assigned",
            Self::InProgress => "in_progress",
            Self::WaitingOnCustomer => "waiting_on_customer",
            Self::Resolved => "resolved",
            Self::Closed => "closed",
            Self::Reopened => "reopened",
            Self::Cancelled => "cancelled",
            Self::NoFix => "no_fix",
        }
    }

    /// As people read it: "waiting on customer".
    pub fn label(self) -> &'static str {
        match self {
            Self::InProgress => "in progress",
            Self::WaitingOnCustomer => "waiting on customer",
            Self::NoFix => "no fix",
            other => other.as_str(),
        }
    }

    pub fn parse(field: &'static str, text: &str) -> Result<Self, ValidationError> {
        let wanted = text.trim().to_ascii_lowercase().replace([' ', '-'], "_");
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == wanted)
            .ok_or_else(|| {
                ValidationError::new(
                    field,
                    "must be one of new, assigned, in_progress, waiting_on_customer, resolved, \
                     closed, reopened, cancelled, no_fix",
                )
            })
    }

    /// Work is still to be done (the board's open columns; assets held in repair).
    pub fn is_open(self) -> bool {
        !matches!(
            self,
            Self::Resolved | Self::Closed | Self::Cancelled | Self::NoFix
        )
    }

    /// The SLA clocks run.
    pub fn clock_runs(self) -> bool {
        matches!(
            self,
            Self::New | Self::Assigned | Self::InProgress | Self::Reopened
        )
    }

    /// Finished for good until someone reopens it: no more time may be logged.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Closed | Self::Cancelled | Self::NoFix)
    }

    /// The statuses a person may move an order to from this one. `assigned` is reached by
    /// assigning someone, `new` by unassigning; neither is a move of its own.
    pub fn moves(self) -> &'static [Status] {
        use Status::*;
        match self {
            New | Reopened => &[InProgress, WaitingOnCustomer, Resolved, Cancelled, NoFix],
            Assigned => &[InProgress, WaitingOnCustomer, Resolved, Cancelled, NoFix],
            InProgress => &[WaitingOnCustomer, Resolved, Cancelled, NoFix],
            WaitingOnCustomer => &[InProgress, Resolved, Cancelled, NoFix],
            Resolved => &[Closed, Reopened],
            Closed | Cancelled | NoFix => &[Reopened],
        }
    }
}

/// The first-response and resolution targets of one priority, in business minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaPolicy {
    pub priority: Priority,
    pub response_minutes: u32,
    pub resolution_minutes: u32,
}

/// The longest SLA target: one year of minutes.
pub const MAX_SLA_MINUTES: u32 = 525_600;

/// The raw policy of a request (`PUT /api/v1/settings/sla-policies`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaPolicyInput {
    pub priority: String,
    pub response_minutes: i64,
    pub resolution_minutes: i64,
}

/// Checks a set of policies: each priority at most once, targets 1 minute to a year, the
/// resolution target not shorter than the response target. All problems at once.
pub fn parse_sla_policies(
    input: &[SlaPolicyInput],
) -> Result<Vec<SlaPolicy>, Vec<ValidationError>> {
    let mut errors = Vec::new();
    let mut policies: Vec<SlaPolicy> = Vec::new();
    let mut seen: Vec<Priority> = Vec::new();
    for (i, raw) in input.iter().enumerate() {
        let n = i + 1;
        let priority = match Priority::parse("policies", &raw.priority) {
            Ok(p) => p,
            Err(_) => {
                errors.push(ValidationError::new(
                    "policies",
                    format!(
                        "policy {n}: priority must be one of low, normal, high, urgent (got {:?})",
                        raw.priority
                    ),
                ));
                continue;
            }
        };
        let minutes = |value: i64, what: &str, errors: &mut Vec<ValidationError>| {
            if (1..=i64::from(MAX_SLA_MINUTES)).contains(&value) {
                Some(value as u32)
            } else {
                errors.push(ValidationError::new(
                    "policies",
                    format!(
                        "policy {n} ({}): {what} must be 1 to {MAX_SLA_MINUTES} minutes",
                        priority.as_str()
                    ),
                ));
                None
            }
        };
        let response = minutes(raw.response_minutes, "response_minutes", &mut errors);
        let resolution = minutes(raw.resolution_minutes, "resolution_minutes", &mut errors);
        if seen.contains(&priority) {
            errors.push(ValidationError::new(
                "policies",
                format!("priority {} appears more than once", priority.as_str()),
            ));
            continue;
        }
        seen.push(priority);
        if let (Some(response_minutes), Some(resolution_minutes)) = (response, resolution) {
            if resolution_minutes < response_minutes {
                errors.push(ValidationError::new(
                    "policies",
                    format!("policy {n} ({}): resolution_minutes must not be shorter than response_minutes", priority.as_str()),
                ));
            }
            policies.push(SlaPolicy {
                priority,
                response_minutes,
                resolution_minutes,
            });
        }
    }
    if errors.is_empty() {
        policies.sort_by_key(|p| std::cmp::Reverse(p.priority));
        Ok(policies)
    } else {
        Err(errors)
    }
}

/// Which SLA clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaTarget {
    Response,
    Resolution,
}

impl SlaTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Response => "response",
            Self::Resolution => "resolution",
        }
    }
}

/// A warning is raised when this share of a target's business minutes has passed.
pub const SLA_WARN_PERCENT: u32 = 75;

/// The SLA of one order: its targets and its clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sla {
    pub response_minutes: u32,
    pub resolution_minutes: u32,
    /// Business minutes the clocks were stopped so far (closed pauses).
    pub paused_minutes: u32,
    /// When the clocks stopped, if they are stopped now.
    pub paused_since: Option<DateTime<Utc>>,
    pub response_due_at: DateTime<Utc>,
    pub resolution_due_at: DateTime<Utc>,
    /// When each warning falls due: `SLA_WARN_PERCENT` of the target's business minutes
    /// after opening, plus the pauses.
    pub response_warn_at: DateTime<Utc>,
    pub resolution_warn_at: DateTime<Utc>,
    /// Warnings and breaches raised (each once per order).
    #[serde(default)]
    pub raised: Vec<(SlaTarget, SlaAlert)>,
}

/// What the scheduler raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaAlert {
    Warning,
    Breach,
}

impl Sla {
    fn new(policy: SlaPolicy, opened_at: DateTime<Utc>, hours: &BusinessHours) -> Self {
        let mut sla = Self {
            response_minutes: policy.response_minutes,
            resolution_minutes: policy.resolution_minutes,
            paused_minutes: 0,
            paused_since: None,
            response_due_at: opened_at,
            resolution_due_at: opened_at,
            response_warn_at: opened_at,
            resolution_warn_at: opened_at,
            raised: Vec::new(),
        };
        sla.recompute(opened_at, hours);
        sla
    }

    fn recompute(&mut self, opened_at: DateTime<Utc>, hours: &BusinessHours) {
        let at = |minutes: u32| hours.add_minutes(opened_at, minutes + self.paused_minutes);
        self.response_due_at = at(self.response_minutes);
        self.resolution_due_at = at(self.resolution_minutes);
        self.response_warn_at = at(self.response_minutes * SLA_WARN_PERCENT / 100);
        self.resolution_warn_at = at(self.resolution_minutes * SLA_WARN_PERCENT / 100);
    }

    pub fn due_at(&self, target: SlaTarget) -> DateTime<Utc> {
        match target {
            SlaTarget::Response => self.response_due_at,
            SlaTarget::Resolution => self.resolution_due_at,
        }
    }

    pub fn warn_at(&self, target: SlaTarget) -> DateTime<Utc> {
        match target {
            SlaTarget::Response => self.response_warn_at,
            SlaTarget::Resolution => self.resolution_warn_at,
        }
    }

    pub fn was_raised(&self, target: SlaTarget, alert: SlaAlert) -> bool {
        self.raised.contains(&(target, alert))
    }
}

/// How a time entry is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Billing {
    /// Invoiced as ad-hoc work.
    Billable,
    /// Covered by the company's monthly contract.
    Contract,
}

impl Billing {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Billable => "billable",
            Self::Contract => "contract",
        }
    }

    pub fn parse(field: &'static str, text: &str) -> Result<Self, ValidationError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "billable" => Ok(Self::Billable),
            "contract" => Ok(Self::Contract),
            _ => Err(ValidationError::new(field, "must be billable or contract")),
        }
    }
}

/// The longest single time entry: 24 hours.
pub const MAX_ENTRY_MINUTES: u32 = 24 * 60;

/// Rounds money half-up to the minor unit (two places), as every line is rounded.
pub fn round_money(value: Decimal) -> Decimal {
    let mut rounded = value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(2);
    rounded
}

/// `minutes` at `hourly` per hour, rounded half-up to the cent.
pub fn charge(minutes: u32, hourly: Amount) -> Decimal {
    round_money(Decimal::from(minutes) * hourly.value() / Decimal::from(60))
}

/// One stretch of work on an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeEntry {
    pub entry_id: Uuid,
    pub technician_id: Uuid,
    /// The day the work was done, in the tenant's time zone.
    pub work_date: NaiveDate,
    pub minutes: u32,
    #[serde(default)]
    pub note: String,
    pub billing: Billing,
    /// Outside the tenant's business hours (charged at the after-hours rate when billable).
    #[serde(default)]
    pub after_hours: bool,
    /// The hourly rate charged (billable entries; contract entries keep the rate for reports).
    pub rate: Amount,
    /// `minutes × rate`, rounded half-up to the cent; zero for contract entries.
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    /// The technician's hourly labour cost, kept apart from the charge.
    pub cost_rate: Amount,
    #[serde(with = "rust_decimal::serde::str")]
    pub cost: Decimal,
    /// For timer entries: when the timer ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
}

impl TimeEntry {
    /// Builds an entry, computing its charge and its cost.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        entry_id: Uuid,
        technician_id: Uuid,
        work_date: NaiveDate,
        minutes: u32,
        note: String,
        billing: Billing,
        after_hours: bool,
        rate: Amount,
        cost_rate: Amount,
    ) -> Self {
        let amount = match billing {
            Billing::Billable => charge(minutes, rate),
            Billing::Contract => round_money(Decimal::ZERO),
        };
        Self {
            entry_id,
            technician_id,
            work_date,
            minutes,
            note,
            billing,
            after_hours,
            rate,
            amount,
            cost_rate,
            cost: charge(minutes, cost_rate),
            started_at: None,
            ended_at: None,
        }
    }
}

/// The most units of one material line.
pub const MAX_MATERIAL_QUANTITY: i64 = 100_000;

/// Parts and consumables used on an order (a cable, a drive, a licence), billed like time:
/// billable lines go on the company's next invoice, contract lines are covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Material {
    pub material_id: Uuid,
    /// What was used, as it reads on the invoice.
    pub description: String,
    /// The part number or SKU, when there is one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sku: String,
    /// Units used: more than 0, at most 100,000, up to 3 decimals (2.5 m of cable).
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
    /// The price charged per unit (billable lines; contract lines keep it for reports).
    pub unit_price: Amount,
    pub billing: Billing,
    /// `quantity × unit price`, rounded half-up to the cent; zero for contract lines.
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    /// The day it was used, in the tenant's time zone.
    pub used_on: NaiveDate,
    /// Who recorded it.
    pub added_by: Uuid,
}

impl Material {
    /// Checks the description, SKU and quantity (every problem at once) and prices the line.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        material_id: Uuid,
        description: &str,
        sku: &str,
        quantity: Decimal,
        unit_price: Amount,
        billing: Billing,
        used_on: NaiveDate,
        added_by: Uuid,
    ) -> Result<Self, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let description = description.trim();
        if description.is_empty() {
            errors.push(ValidationError::new(
                "description",
                "must say what was used",
            ));
        } else if description.chars().count() > 200 {
            errors.push(ValidationError::new(
                "description",
                "must be at most 200 characters",
            ));
        }
        let sku = sku.trim();
        if sku.chars().count() > 64 {
            errors.push(ValidationError::new("sku", "must be at most 64 characters"));
        }
        if quantity <= Decimal::ZERO || quantity > Decimal::from(MAX_MATERIAL_QUANTITY) {
            errors.push(ValidationError::new(
                "quantity",
                "must be more than 0 and at most 100000",
            ));
        } else if quantity.normalize().scale() > 3 {
            errors.push(ValidationError::new(
                "quantity",
                "must have at most 3 decimals",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let quantity = quantity.normalize();
        let amount = match billing {
            Billing::Billable => round_money(quantity * unit_price.value()),
            Billing::Contract => round_money(Decimal::ZERO),
        };
        Ok(Self {
            material_id,
            description: description.to_owned(),
            sku: sku.to_owned(),
            quantity,
            unit_price,
            billing,
            amount,
            used_on,
            added_by,
        })
    }
}

/// A link that lets someone act on or follow an order without signing in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// The assigned technician: may set in progress, resolved or closed.
    Technician,
    /// The customer: sees progress and public comments, rates the work once resolved.
    Customer,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Technician => "technician",
            Self::Customer => "customer",
        }
    }

    /// How long a link of this kind lives, and how many uses it allows.
    pub fn limits(self) -> (chrono::Duration, u32) {
        match self {
            Self::Technician => (chrono::Duration::hours(72), 20),
            Self::Customer => (chrono::Duration::days(7), 50),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusLink {
    pub kind: LinkKind,
    /// SHA-256 of the token, hex; the token itself is never stored.
    pub token_digest: String,
    /// The technician a technician link was issued to.
    pub user_id: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
    pub max_uses: u32,
    pub uses: u32,
    pub revoked: bool,
}

impl StatusLink {
    fn check(&self, now: DateTime<Utc>) -> Result<(), WorkOrderError> {
        if self.revoked {
            Err(WorkOrderError::LinkNotFound)
        } else if now >= self.expires_at {
            Err(WorkOrderError::LinkExpired)
        } else if self.uses >= self.max_uses {
            Err(WorkOrderError::LinkUsedUp)
        } else {
            Ok(())
        }
    }
}

/// The checked fields of a new or edited order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkOrderDetails {
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub work_type: String,
    #[serde(default)]
    pub contact_id: Option<Uuid>,
    #[serde(default)]
    pub asset_ids: Vec<Uuid>,
}

/// The most assets one order may name.
pub const MAX_ASSETS: usize = 50;

impl WorkOrderDetails {
    /// Checks title, description and type (against the tenant's `work_types`); the ids are
    /// checked against the read models by the caller. All problems at once.
    pub fn parse(
        title: &str,
        description: &str,
        work_type: &str,
        contact_id: Option<Uuid>,
        asset_ids: Vec<Uuid>,
        work_types: &[String],
    ) -> Result<Self, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let title = text("title", title, 200, false, &mut errors);
        if title.is_empty() {
            errors.push(ValidationError::new("title", "must not be empty"));
        }
        let description = text("description", description, 20_000, true, &mut errors);
        let work_type = work_type.trim().to_lowercase();
        if !work_types.contains(&work_type) {
            errors.push(ValidationError::new(
                "type",
                format!("must be one of {}", work_types.join(", ")),
            ));
        }
        let mut ids = Vec::with_capacity(asset_ids.len());
        for id in asset_ids {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if ids.len() > MAX_ASSETS {
            errors.push(ValidationError::new(
                "asset_ids",
                format!("at most {MAX_ASSETS} assets"),
            ));
        }
        if errors.is_empty() {
            Ok(Self {
                title,
                description,
                work_type,
                contact_id,
                asset_ids: ids,
            })
        } else {
            Err(errors)
        }
    }
}

/// A comment's text: 1 to 20,000 characters, line breaks allowed.
pub fn parse_comment(body: &str) -> Result<String, ValidationError> {
    let mut errors = Vec::new();
    let body = text("body", body, 20_000, true, &mut errors);
    if let Some(e) = errors.pop() {
        return Err(e);
    }
    if body.is_empty() {
        return Err(ValidationError::new("body", "must not be empty"));
    }
    Ok(body)
}

/// A time entry's note: at most 2,000 characters, line breaks allowed, may be empty.
pub fn parse_note(note: &str) -> Result<String, ValidationError> {
    let mut errors = Vec::new();
    let note = text("note", note, 2000, true, &mut errors);
    errors.pop().map_or(Ok(note), Err)
}

/// Who raised an order or wrote a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Staff,
    /// A client of the company, through the portal or a customer link.
    Customer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    pub comment_id: Uuid,
    pub author_id: Option<Uuid>,
    pub origin: Origin,
    pub public: bool,
    pub body: String,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkOrder {
    pub exists: bool,
    pub number: u64,
    pub company_id: Uuid,
    pub details: WorkOrderDetails,
    pub priority: Priority,
    pub status: Status,
    pub origin: Option<Origin>,
    pub opened_at: Option<DateTime<Utc>>,
    pub assignee_id: Option<Uuid>,
    /// Put the order's assets in repair while it is open.
    pub holds_assets: bool,
    pub sla: Option<Sla>,
    pub responded_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Running timers: technician → started at.
    pub timers: BTreeMap<Uuid, DateTime<Utc>>,
    pub time_entries: BTreeMap<Uuid, TimeEntry>,
    #[serde(default)]
    pub materials: BTreeMap<Uuid, Material>,
    pub comments: usize,
    pub attachments: Vec<AssetDocument>,
    pub links: BTreeMap<Uuid, StatusLink>,
    pub rating: Option<u8>,
}

/// What changes with a PATCH; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub details: Option<WorkOrderDetails>,
    pub priority: Option<Priority>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WorkOrderCommand {
    Open {
        number: u64,
        company_id: Uuid,
        details: WorkOrderDetails,
        priority: Priority,
        origin: Origin,
        holds_assets: bool,
        opened_at: DateTime<Utc>,
        /// The tenant's policy for this priority, if it has one.
        policy: Option<SlaPolicy>,
        hours: BusinessHours,
    },
    Change {
        changes: Changes,
        policy: Option<SlaPolicy>,
        hours: BusinessHours,
    },
    /// Assigns someone (`None`: nobody). A new or reopened order becomes assigned, an
    /// assigned one with nobody left becomes new again.
    Assign {
        assignee_id: Option<Uuid>,
        now: DateTime<Utc>,
    },
    SetStatus {
        status: Status,
        /// Staff answering count as the first response; customers' moves do not.
        by_staff: bool,
        now: DateTime<Utc>,
        hours: BusinessHours,
    },
    Comment {
        comment: Comment,
        now: DateTime<Utc>,
    },
    Attach {
        document: AssetDocument,
    },
    StartTimer {
        technician_id: Uuid,
        now: DateTime<Utc>,
    },
    /// Stops a technician's timer; the command layer turns the running time into `entries`
    /// (one, or two when included contract hours run out within it), each with `started_at`
    /// set: a logged entry with a start stops its technician's timer.
    StopTimer {
        technician_id: Uuid,
        entries: Vec<TimeEntry>,
    },
    CancelTimer {
        technician_id: Uuid,
    },
    LogTime {
        entries: Vec<TimeEntry>,
    },
    RemoveTime {
        entry_id: Uuid,
    },
    AddMaterial {
        material: Material,
    },
    RemoveMaterial {
        material_id: Uuid,
    },
    /// A scheduler tick: raise what is due at `now`, escalating to `escalate_to`.
    CheckSla {
        now: DateTime<Utc>,
        escalate_to: Option<Uuid>,
    },
    IssueLink {
        link_id: Uuid,
        kind: LinkKind,
        token_digest: String,
        user_id: Option<Uuid>,
        now: DateTime<Utc>,
    },
    RevokeLink {
        link_id: Uuid,
    },
    /// Someone opened a link (counted as a use for customer links).
    ViewByLink {
        link_id: Uuid,
        now: DateTime<Utc>,
    },
    /// A technician link sets a status.
    SetStatusByLink {
        link_id: Uuid,
        status: Status,
        now: DateTime<Utc>,
        hours: BusinessHours,
    },
    /// The customer's satisfaction rating, through a customer link, once resolved.
    Rate {
        link_id: Uuid,
        rating: u8,
        comment: String,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkOrderEvent {
    WorkOrderOpened {
        number: u64,
        company_id: Uuid,
        details: WorkOrderDetails,
        priority: Priority,
        origin: Origin,
        #[serde(default)]
        holds_assets: bool,
        opened_at: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sla: Option<Sla>,
    },
    WorkOrderChanged {
        details: WorkOrderDetails,
    },
    WorkOrderPriorityChanged {
        priority: Priority,
        previous_priority: Priority,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sla: Option<Sla>,
    },
    WorkOrderAssigned {
        assignee_id: Option<Uuid>,
        previous_assignee_id: Option<Uuid>,
    },
    WorkOrderStatusChanged {
        status: Status,
        previous_status: Status,
        at: DateTime<Utc>,
        /// Set when a technician link made the move.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link_id: Option<Uuid>,
    },
    /// The SLA clocks stopped (waiting on the customer, resolved, ...).
    WorkOrderSlaPaused {
        at: DateTime<Utc>,
    },
    /// The clocks run again; the due times moved by the business minutes stopped.
    WorkOrderSlaResumed {
        at: DateTime<Utc>,
        paused_minutes: u32,
        response_due_at: DateTime<Utc>,
        resolution_due_at: DateTime<Utc>,
        response_warn_at: DateTime<Utc>,
        resolution_warn_at: DateTime<Utc>,
    },
    /// The first response of staff (a public comment or a move to work).
    WorkOrderResponded {
        at: DateTime<Utc>,
    },
    WorkOrderCommented {
        comment: Comment,
    },
    WorkOrderAttachmentAdded {
        document: AssetDocument,
    },
    TimerStarted {
        technician_id: Uuid,
        at: DateTime<Utc>,
    },
    TimerCancelled {
        technician_id: Uuid,
    },
    TimeLogged {
        entry: TimeEntry,
    },
    TimeEntryRemoved {
        entry_id: Uuid,
    },
    MaterialAdded {
        /// The order's company, whose invoice the line goes on.
        company_id: Uuid,
        material: Material,
    },
    MaterialRemoved {
        material_id: Uuid,
    },
    SlaWarningRaised {
        target: SlaTarget,
        due_at: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        escalated_to: Option<Uuid>,
    },
    SlaBreached {
        target: SlaTarget,
        due_at: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        escalated_to: Option<Uuid>,
    },
    StatusLinkIssued {
        link_id: Uuid,
        kind: LinkKind,
        token_digest: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_id: Option<Uuid>,
        expires_at: DateTime<Utc>,
        max_uses: u32,
    },
    StatusLinkRevoked {
        link_id: Uuid,
    },
    StatusLinkUsed {
        link_id: Uuid,
        /// The use's number (1 for the first).
        used: u32,
    },
    WorkOrderRated {
        rating: u8,
        #[serde(default)]
        comment: String,
        link_id: Uuid,
    },
}

impl DomainEvent for WorkOrderEvent {
    fn event_type(&self) -> String {
        match self {
            Self::WorkOrderOpened { .. } => "WorkOrderOpened",
            Self::WorkOrderChanged { .. } => "WorkOrderChanged",
            Self::WorkOrderPriorityChanged { .. } => "WorkOrderPriorityChanged",
            Self::WorkOrderAssigned { .. } => "WorkOrderAssigned",
            Self::WorkOrderStatusChanged { .. } => "WorkOrderStatusChanged",
            Self::WorkOrderSlaPaused { .. } => "WorkOrderSlaPaused",
            Self::WorkOrderSlaResumed { .. } => "WorkOrderSlaResumed",
            Self::WorkOrderResponded { .. } => "WorkOrderResponded",
            Self::WorkOrderCommented { .. } => "WorkOrderCommented",
            Self::WorkOrderAttachmentAdded { .. } => "WorkOrderAttachmentAdded",
            Self::TimerStarted { .. } => "TimerStarted",
            Self::TimerCancelled { .. } => "TimerCancelled",
            Self::TimeLogged { .. } => "TimeLogged",
            Self::TimeEntryRemoved { .. } => "TimeEntryRemoved",
            Self::MaterialAdded { .. } => "MaterialAdded",
            Self::MaterialRemoved { .. } => "MaterialRemoved",
            Self::SlaWarningRaised { .. } => "SlaWarningRaised",
            Self::SlaBreached { .. } => "SlaBreached",
            Self::StatusLinkIssued { .. } => "StatusLinkIssued",
            Self::StatusLinkRevoked { .. } => "StatusLinkRevoked",
            Self::StatusLinkUsed { .. } => "StatusLinkUsed",
            Self::WorkOrderRated { .. } => "WorkOrderRated",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkOrderError {
    #[error("this work order already exists")]
    AlreadyExists,
    #[error("work order not found")]
    NotFound,
    #[error("a {from} work order cannot move to {to}; it can move to {allowed}")]
    Move {
        from: &'static str,
        to: &'static str,
        allowed: String,
    },
    #[error("assign a technician before starting work")]
    NobodyAssigned,
    #[error("a {0} work order cannot be changed; reopen it first")]
    Final(&'static str),
    #[error("a {0} work order cannot gain time entries; reopen it first")]
    NoTimeWhenFinal(&'static str),
    #[error("this timer is already running (since {0})")]
    TimerRunning(DateTime<Utc>),
    #[error("no timer of this technician is running on this work order")]
    NoTimer,
    #[error("a time entry lasts 1 minute to 24 hours")]
    EntryLength,
    #[error("this time entry does not exist")]
    NoSuchEntry,
    #[error("this time entry was already logged")]
    EntryExists,
    #[error("a {0} work order cannot gain or lose materials; reopen it first")]
    NoMaterialsWhenFinal(&'static str),
    #[error("this material line does not exist")]
    NoSuchMaterial,
    #[error("this material line was already added")]
    MaterialExists,
    #[error("this link does not exist or was revoked")]
    LinkNotFound,
    #[error("this link has expired")]
    LinkExpired,
    #[error("this link has been used as many times as it allows")]
    LinkUsedUp,
    #[error("this link does not allow that")]
    LinkNotAllowed,
    #[error("a technician link may set in progress, resolved or closed only")]
    LinkStatus,
    #[error("the work can be rated once it is resolved")]
    NotResolved,
    #[error("this work order was already rated")]
    AlreadyRated,
    #[error("a rating is 1 to 5")]
    Rating,
}

impl HasErrorKind for WorkOrderError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound | Self::LinkNotFound | Self::NoSuchEntry | Self::NoSuchMaterial => {
                ErrorKind::NotFound
            }
            Self::EntryLength | Self::Rating | Self::LinkStatus => ErrorKind::Invalid,
            _ => ErrorKind::Conflict,
        }
    }
}

type Events = Vec<WorkOrderEvent>;

impl WorkOrder {
    fn opened_at(&self) -> DateTime<Utc> {
        self.opened_at.unwrap_or_default()
    }

    /// The events of a status move: the move itself, and the SLA clock stopping or starting,
    /// and the first response when staff start work.
    fn move_to(
        &self,
        status: Status,
        by_staff: bool,
        now: DateTime<Utc>,
        hours: &BusinessHours,
        link_id: Option<Uuid>,
    ) -> Result<Events, WorkOrderError> {
        use WorkOrderEvent as E;
        if status == self.status {
            return Ok(vec![]);
        }
        if !self.status.moves().contains(&status) {
            let allowed: Vec<&str> = self.status.moves().iter().map(|s| s.as_str()).collect();
            return Err(WorkOrderError::Move {
                from: self.status.as_str(),
                to: status.as_str(),
                allowed: allowed.join(", "),
            });
        }
        if status == Status::InProgress && self.assignee_id.is_none() {
            return Err(WorkOrderError::NobodyAssigned);
        }
        let mut events = vec![E::WorkOrderStatusChanged {
            status,
            previous_status: self.status,
            at: now,
            link_id,
        }];
        if by_staff
            && self.responded_at.is_none()
            && matches!(
                status,
                Status::InProgress | Status::WaitingOnCustomer | Status::Resolved | Status::NoFix
            )
        {
            events.push(E::WorkOrderResponded { at: now });
        }
        if let Some(sla) = &self.sla {
            let target = if status == Status::Reopened {
                // A reopened order runs its clock again from where it stopped.
                true
            } else {
                status.clock_runs()
            };
            match (sla.paused_since, target) {
                (None, false) => events.push(E::WorkOrderSlaPaused { at: now }),
                (Some(since), true) => {
                    let mut next = sla.clone();
                    next.paused_minutes += hours.minutes_between(since, now);
                    next.recompute(self.opened_at(), hours);
                    events.push(E::WorkOrderSlaResumed {
                        at: now,
                        paused_minutes: next.paused_minutes,
                        response_due_at: next.response_due_at,
                        resolution_due_at: next.resolution_due_at,
                        response_warn_at: next.response_warn_at,
                        resolution_warn_at: next.resolution_warn_at,
                    });
                }
                _ => {}
            }
        }
        Ok(events)
    }

    fn log(&self, entries: Vec<TimeEntry>) -> Result<Events, WorkOrderError> {
        if self.status.is_final() {
            return Err(WorkOrderError::NoTimeWhenFinal(self.status.label()));
        }
        let mut events = Vec::with_capacity(entries.len());
        for entry in entries {
            if !(1..=MAX_ENTRY_MINUTES).contains(&entry.minutes) {
                return Err(WorkOrderError::EntryLength);
            }
            if self.time_entries.contains_key(&entry.entry_id) {
                return Err(WorkOrderError::EntryExists);
            }
            events.push(WorkOrderEvent::TimeLogged { entry });
        }
        Ok(events)
    }

    fn link(
        &self,
        link_id: Uuid,
        kind: LinkKind,
        now: DateTime<Utc>,
    ) -> Result<&StatusLink, WorkOrderError> {
        let link = self
            .links
            .get(&link_id)
            .ok_or(WorkOrderError::LinkNotFound)?;
        link.check(now)?;
        if link.kind != kind {
            return Err(WorkOrderError::LinkNotAllowed);
        }
        Ok(link)
    }

    fn decide(&self, command: WorkOrderCommand) -> Result<Events, WorkOrderError> {
        use WorkOrderCommand as C;
        use WorkOrderEvent as E;
        if let C::Open {
            number,
            company_id,
            details,
            priority,
            origin,
            holds_assets,
            opened_at,
            policy,
            hours,
        } = command
        {
            if self.exists {
                return Err(WorkOrderError::AlreadyExists);
            }
            return Ok(vec![E::WorkOrderOpened {
                number,
                company_id,
                details,
                priority,
                origin,
                holds_assets,
                opened_at,
                sla: policy.map(|p| Sla::new(p, opened_at, &hours)),
            }]);
        }
        if !self.exists {
            return Err(WorkOrderError::NotFound);
        }
        match command {
            C::Open { .. } => unreachable!("handled above"),
            C::Change {
                changes,
                policy,
                hours,
            } => {
                if self.status.is_final() {
                    return Err(WorkOrderError::Final(self.status.label()));
                }
                let mut events = Vec::new();
                if let Some(details) = changes.details.filter(|d| *d != self.details) {
                    events.push(E::WorkOrderChanged { details });
                }
                if let Some(priority) = changes.priority.filter(|p| *p != self.priority) {
                    let sla = policy.map(|p| {
                        let mut sla = match &self.sla {
                            Some(old) => old.clone(),
                            None => Sla::new(p, self.opened_at(), &hours),
                        };
                        sla.response_minutes = p.response_minutes;
                        sla.resolution_minutes = p.resolution_minutes;
                        sla.recompute(self.opened_at(), &hours);
                        sla
                    });
                    events.push(E::WorkOrderPriorityChanged {
                        priority,
                        previous_priority: self.priority,
                        sla,
                    });
                }
                Ok(events)
            }
            C::Assign { assignee_id, now } => {
                if self.status.is_final() {
                    return Err(WorkOrderError::Final(self.status.label()));
                }
                if assignee_id == self.assignee_id {
                    return Ok(vec![]);
                }
                let mut events = vec![E::WorkOrderAssigned {
                    assignee_id,
                    previous_assignee_id: self.assignee_id,
                }];
                let status = match (self.status, assignee_id) {
                    (Status::New | Status::Reopened, Some(_)) => Some(Status::Assigned),
                    (Status::Assigned, None) => Some(Status::New),
                    (Status::InProgress, None) => {
                        return Err(WorkOrderError::NobodyAssigned);
                    }
                    _ => None,
                };
                if let Some(status) = status {
                    events.push(E::WorkOrderStatusChanged {
                        status,
                        previous_status: self.status,
                        at: now,
                        link_id: None,
                    });
                }
                Ok(events)
            }
            C::SetStatus {
                status,
                by_staff,
                now,
                hours,
            } => self.move_to(status, by_staff, now, &hours, None),
            C::Comment { comment, now } => {
                let mut events = Vec::new();
                let first_response = comment.origin == Origin::Staff
                    && comment.public
                    && self.responded_at.is_none();
                events.push(E::WorkOrderCommented { comment });
                if first_response {
                    events.push(E::WorkOrderResponded { at: now });
                }
                Ok(events)
            }
            C::Attach { document } => {
                if self.attachments.iter().any(|d| d.id == document.id) {
                    return Ok(vec![]);
                }
                Ok(vec![E::WorkOrderAttachmentAdded { document }])
            }
            C::StartTimer { technician_id, now } => {
                if self.status.is_final() {
                    return Err(WorkOrderError::NoTimeWhenFinal(self.status.label()));
                }
                if let Some(since) = self.timers.get(&technician_id) {
                    return Err(WorkOrderError::TimerRunning(*since));
                }
                Ok(vec![E::TimerStarted {
                    technician_id,
                    at: now,
                }])
            }
            C::StopTimer {
                technician_id,
                entries,
            } => {
                if !self.timers.contains_key(&technician_id) {
                    return Err(WorkOrderError::NoTimer);
                }
                self.log(entries)
            }
            C::CancelTimer { technician_id } => {
                if !self.timers.contains_key(&technician_id) {
                    return Err(WorkOrderError::NoTimer);
                }
                Ok(vec![E::TimerCancelled { technician_id }])
            }
            C::LogTime { entries } => self.log(entries),
            C::RemoveTime { entry_id } => {
                if !self.time_entries.contains_key(&entry_id) {
                    return Err(WorkOrderError::NoSuchEntry);
                }
                if self.status.is_final() {
                    return Err(WorkOrderError::NoTimeWhenFinal(self.status.label()));
                }
                Ok(vec![E::TimeEntryRemoved { entry_id }])
            }
            C::AddMaterial { material } => {
                if self.status.is_final() {
                    return Err(WorkOrderError::NoMaterialsWhenFinal(self.status.label()));
                }
                if self.materials.contains_key(&material.material_id) {
                    return Err(WorkOrderError::MaterialExists);
                }
                Ok(vec![E::MaterialAdded {
                    company_id: self.company_id,
                    material,
                }])
            }
            C::RemoveMaterial { material_id } => {
                if !self.materials.contains_key(&material_id) {
                    return Err(WorkOrderError::NoSuchMaterial);
                }
                if self.status.is_final() {
                    return Err(WorkOrderError::NoMaterialsWhenFinal(self.status.label()));
                }
                Ok(vec![E::MaterialRemoved { material_id }])
            }
            C::CheckSla { now, escalate_to } => {
                let Some(sla) = &self.sla else {
                    return Ok(vec![]);
                };
                if sla.paused_since.is_some() || !self.status.clock_runs() {
                    return Ok(vec![]);
                }
                let mut events = Vec::new();
                for target in [SlaTarget::Response, SlaTarget::Resolution] {
                    if target == SlaTarget::Response && self.responded_at.is_some() {
                        continue;
                    }
                    let due_at = sla.due_at(target);
                    if now >= due_at {
                        if !sla.was_raised(target, SlaAlert::Breach) {
                            events.push(E::SlaBreached {
                                target,
                                due_at,
                                escalated_to: escalate_to,
                            });
                        }
                    } else if now >= sla.warn_at(target)
                        && !sla.was_raised(target, SlaAlert::Warning)
                        && !sla.was_raised(target, SlaAlert::Breach)
                    {
                        events.push(E::SlaWarningRaised {
                            target,
                            due_at,
                            escalated_to: escalate_to,
                        });
                    }
                }
                Ok(events)
            }
            C::IssueLink {
                link_id,
                kind,
                token_digest,
                user_id,
                now,
            } => {
                if self.links.contains_key(&link_id) {
                    return Ok(vec![]);
                }
                if kind == LinkKind::Technician && self.status.is_final() {
                    return Err(WorkOrderError::Final(self.status.label()));
                }
                let (lifetime, max_uses) = kind.limits();
                Ok(vec![E::StatusLinkIssued {
                    link_id,
                    kind,
                    token_digest,
                    user_id,
                    expires_at: now + lifetime,
                    max_uses,
                }])
            }
            C::RevokeLink { link_id } => {
                let link = self
                    .links
                    .get(&link_id)
                    .ok_or(WorkOrderError::LinkNotFound)?;
                if link.revoked {
                    return Ok(vec![]);
                }
                Ok(vec![E::StatusLinkRevoked { link_id }])
            }
            C::ViewByLink { link_id, now } => {
                let link = self
                    .links
                    .get(&link_id)
                    .ok_or(WorkOrderError::LinkNotFound)?;
                link.check(now)?;
                Ok(match link.kind {
                    LinkKind::Customer => vec![E::StatusLinkUsed {
                        link_id,
                        used: link.uses + 1,
                    }],
                    // Looking does not use up a technician's link; acting does.
                    LinkKind::Technician => vec![],
                })
            }
            C::SetStatusByLink {
                link_id,
                status,
                now,
                hours,
            } => {
                let link = self.link(link_id, LinkKind::Technician, now)?;
                if !matches!(
                    status,
                    Status::InProgress | Status::Resolved | Status::Closed
                ) {
                    return Err(WorkOrderError::LinkStatus);
                }
                let mut events = self.move_to(status, true, now, &hours, Some(link_id))?;
                if !events.is_empty() {
                    events.push(E::StatusLinkUsed {
                        link_id,
                        used: link.uses + 1,
                    });
                }
                Ok(events)
            }
            C::Rate {
                link_id,
                rating,
                comment,
                now,
            } => {
                let link = self.link(link_id, LinkKind::Customer, now)?;
                if !(1..=5).contains(&rating) {
                    return Err(WorkOrderError::Rating);
                }
                if !matches!(self.status, Status::Resolved | Status::Closed) {
                    return Err(WorkOrderError::NotResolved);
                }
                if self.rating.is_some() {
                    return Err(WorkOrderError::AlreadyRated);
                }
                Ok(vec![
                    E::WorkOrderRated {
                        rating,
                        comment,
                        link_id,
                    },
                    E::StatusLinkUsed {
                        link_id,
                        used: link.uses + 1,
                    },
                ])
            }
        }
    }
}

impl Aggregate for WorkOrder {
    const TYPE: &'static str = "work_order";
    type Command = WorkOrderCommand;
    type Event = WorkOrderEvent;
    type Error = WorkOrderError;
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
        use WorkOrderEvent as E;
        match event {
            E::WorkOrderOpened {
                number,
                company_id,
                details,
                priority,
                origin,
                holds_assets,
                opened_at,
                sla,
            } => {
                self.exists = true;
                self.number = number;
                self.company_id = company_id;
                self.details = details;
                self.priority = priority;
                self.origin = Some(origin);
                self.holds_assets = holds_assets;
                self.opened_at = Some(opened_at);
                self.sla = sla;
            }
            E::WorkOrderChanged { details } => self.details = details,
            E::WorkOrderPriorityChanged { priority, sla, .. } => {
                self.priority = priority;
                if sla.is_some() {
                    self.sla = sla;
                }
            }
            E::WorkOrderAssigned { assignee_id, .. } => self.assignee_id = assignee_id,
            E::WorkOrderStatusChanged { status, at, .. } => {
                if matches!(status, Status::Resolved | Status::NoFix) {
                    self.resolved_at = Some(at);
                } else if status == Status::Reopened {
                    self.resolved_at = None;
                }
                self.status = status;
            }
            E::WorkOrderSlaPaused { at } => {
                if let Some(sla) = &mut self.sla {
                    sla.paused_since = Some(at);
                }
            }
            E::WorkOrderSlaResumed {
                paused_minutes,
                response_due_at,
                resolution_due_at,
                response_warn_at,
                resolution_warn_at,
                ..
            } => {
                if let Some(sla) = &mut self.sla {
                    sla.paused_since = None;
                    sla.paused_minutes = paused_minutes;
                    sla.response_due_at = response_due_at;
                    sla.resolution_due_at = resolution_due_at;
                    sla.response_warn_at = response_warn_at;
                    sla.resolution_warn_at = resolution_warn_at;
                }
            }
            E::WorkOrderResponded { at } => self.responded_at = Some(at),
            E::WorkOrderCommented { .. } => self.comments += 1,
            E::WorkOrderAttachmentAdded { document } => self.attachments.push(document),
            E::TimerStarted { technician_id, at } => {
                self.timers.insert(technician_id, at);
            }
            E::TimerCancelled { technician_id } => {
                self.timers.remove(&technician_id);
            }
            E::TimeLogged { entry } => {
                if entry.started_at.is_some() {
                    self.timers.remove(&entry.technician_id);
                }
                self.time_entries.insert(entry.entry_id, entry);
            }
            E::TimeEntryRemoved { entry_id } => {
                self.time_entries.remove(&entry_id);
            }
            E::MaterialAdded { material, .. } => {
                self.materials.insert(material.material_id, material);
            }
            E::MaterialRemoved { material_id } => {
                self.materials.remove(&material_id);
            }
            E::SlaWarningRaised { target, .. } => {
                if let Some(sla) = &mut self.sla {
                    sla.raised.push((target, SlaAlert::Warning));
                }
            }
            E::SlaBreached { target, .. } => {
                if let Some(sla) = &mut self.sla {
                    sla.raised.push((target, SlaAlert::Breach));
                }
            }
            E::StatusLinkIssued {
                link_id,
                kind,
                token_digest,
                user_id,
                expires_at,
                max_uses,
            } => {
                self.links.insert(
                    link_id,
                    StatusLink {
                        kind,
                        token_digest,
                        user_id,
                        expires_at,
                        max_uses,
                        uses: 0,
                        revoked: false,
                    },
                );
            }
            E::StatusLinkRevoked { link_id } => {
                if let Some(link) = self.links.get_mut(&link_id) {
                    link.revoked = true;
                }
            }
            E::StatusLinkUsed { link_id, used } => {
                if let Some(link) = self.links.get_mut(&link_id) {
                    link.uses = used;
                }
            }
            E::WorkOrderRated { rating, .. } => self.rating = Some(rating),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::TimeZone;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<WorkOrder>;

    const TECH: Uuid = Uuid::from_u128(7);
    const LINK: Uuid = Uuid::from_u128(9);

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn hours() -> BusinessHours {
        BusinessHours::standard(TimeZone::parse("America/New_York").unwrap())
    }

    fn policy() -> SlaPolicy {
        SlaPolicy {
            priority: Priority::Urgent,
            response_minutes: 60,
            resolution_minutes: 240,
        }
    }

    /// Opened Monday 2026-11-16 10:00 New York (15:00Z).
    fn opened() -> WorkOrderEvent {
        let opened_at = at("2026-11-16T15:00:00Z");
        WorkOrderEvent::WorkOrderOpened {
            number: 1,
            company_id: Uuid::from_u128(1),
            details: WorkOrderDetails {
                title: "Printer jams".into(),
                work_type: "repair".into(),
                ..Default::default()
            },
            priority: Priority::Urgent,
            origin: Origin::Staff,
            holds_assets: false,
            opened_at,
            sla: Some(Sla::new(policy(), opened_at, &hours())),
        }
    }

    fn assigned() -> Vec<WorkOrderEvent> {
        vec![
            WorkOrderEvent::WorkOrderAssigned {
                assignee_id: Some(TECH),
                previous_assignee_id: None,
            },
            moved(Status::New, Status::Assigned),
        ]
    }

    fn moved(from: Status, to: Status) -> WorkOrderEvent {
        WorkOrderEvent::WorkOrderStatusChanged {
            status: to,
            previous_status: from,
            at: at("2026-11-16T15:00:00Z"),
            link_id: None,
        }
    }

    fn state_at(status: Status) -> WorkOrder {
        let mut order = WorkOrder::default();
        order.apply(opened());
        for e in assigned() {
            order.apply(e);
        }
        order.status = status;
        order
    }

    fn set(status: Status, now: &str) -> WorkOrderCommand {
        WorkOrderCommand::SetStatus {
            status,
            by_staff: true,
            now: at(now),
            hours: hours(),
        }
    }

    #[test]
    fn every_status_move_is_allowed_or_refused_as_the_table_says() {
        use Status::*;
        // Written out by hand from the issue: the lifecycle and its side exits.
        let allowed: &[(Status, &[Status])] = &[
            (
                New,
                &[InProgress, WaitingOnCustomer, Resolved, Cancelled, NoFix],
            ),
            (
                Assigned,
                &[InProgress, WaitingOnCustomer, Resolved, Cancelled, NoFix],
            ),
            (InProgress, &[WaitingOnCustomer, Resolved, Cancelled, NoFix]),
            (WaitingOnCustomer, &[InProgress, Resolved, Cancelled, NoFix]),
            (Resolved, &[Closed, Reopened]),
            (Closed, &[Reopened]),
            (
                Reopened,
                &[InProgress, WaitingOnCustomer, Resolved, Cancelled, NoFix],
            ),
            (Cancelled, &[Reopened]),
            (NoFix, &[Reopened]),
        ];
        let mut checked = 0;
        for (from, targets) in allowed {
            for to in Status::ALL {
                if to == *from {
                    continue;
                }
                let order = state_at(*from);
                let outcome = order.decide(set(to, "2026-11-16T16:00:00Z"));
                if targets.contains(&to) {
                    let events = outcome.unwrap_or_else(|e| panic!("{from:?} → {to:?}: {e}"));
                    assert!(matches!(
                        events[0],
                        WorkOrderEvent::WorkOrderStatusChanged { status, .. } if status == to
                    ));
                } else {
                    let error = outcome.expect_err(&format!("{from:?} → {to:?} must be refused"));
                    let message = error.to_string();
                    assert!(
                        message.contains(from.as_str()) && message.contains(to.as_str()),
                        "{message}"
                    );
                    assert_eq!(error.kind(), ErrorKind::Conflict);
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 9 * 8);
    }

    #[test]
    fn starting_work_needs_someone_assigned() {
        Given::with(())
            .given(vec![opened()])
            .when(set(Status::InProgress, "2026-11-16T16:00:00Z"))
            .then_expect_error(WorkOrderError::NobodyAssigned);
    }

    #[test]
    fn assigning_makes_a_new_order_assigned_and_unassigning_makes_it_new() {
        let mut given = vec![opened()];
        Given::with(())
            .given(given.clone())
            .when(WorkOrderCommand::Assign {
                assignee_id: Some(TECH),
                now: at("2026-11-16T15:10:00Z"),
            })
            .then_expect_events(vec![
                WorkOrderEvent::WorkOrderAssigned {
                    assignee_id: Some(TECH),
                    previous_assignee_id: None,
                },
                WorkOrderEvent::WorkOrderStatusChanged {
                    status: Status::Assigned,
                    previous_status: Status::New,
                    at: at("2026-11-16T15:10:00Z"),
                    link_id: None,
                },
            ]);
        given.extend(assigned());
        Given::with(())
            .given(given)
            .when(WorkOrderCommand::Assign {
                assignee_id: None,
                now: at("2026-11-16T15:20:00Z"),
            })
            .then_expect_events(vec![
                WorkOrderEvent::WorkOrderAssigned {
                    assignee_id: None,
                    previous_assignee_id: Some(TECH),
                },
                WorkOrderEvent::WorkOrderStatusChanged {
                    status: Status::New,
                    previous_status: Status::Assigned,
                    at: at("2026-11-16T15:20:00Z"),
                    link_id: None,
                },
            ]);
    }

    fn entry(id: u128) -> TimeEntry {
        TimeEntry::new(
            Uuid::from_u128(id),
            TECH,
            NaiveDate::from_ymd_opt(2026, 11, 16).unwrap(),
            90,
            String::new(),
            Billing::Billable,
            false,
            Amount::parse("r", "95").unwrap(),
            Amount::parse("r", "30").unwrap(),
        )
    }

    #[test]
    fn a_closed_order_gains_no_time_until_reopened() {
        let mut order = state_at(Status::Closed);
        let refused = order
            .decide(WorkOrderCommand::LogTime {
                entries: vec![entry(1)],
            })
            .unwrap_err();
        assert_eq!(refused, WorkOrderError::NoTimeWhenFinal("closed"));
        assert!(refused.to_string().contains("reopen"));
        assert!(order
            .decide(WorkOrderCommand::StartTimer {
                technician_id: TECH,
                now: at("2026-11-16T16:00:00Z")
            })
            .is_err());
        for e in order
            .decide(set(Status::Reopened, "2026-11-17T15:00:00Z"))
            .unwrap()
        {
            order.apply(e);
        }
        let events = order
            .decide(WorkOrderCommand::LogTime {
                entries: vec![entry(1)],
            })
            .unwrap();
        assert_eq!(events.len(), 1);
        // A resolved order still takes wrap-up time.
        assert!(state_at(Status::Resolved)
            .decide(WorkOrderCommand::LogTime {
                entries: vec![entry(2)]
            })
            .is_ok());
    }

    #[test]
    fn charges_are_rounded_half_up_per_entry_and_cost_is_apart() {
        let e = entry(1);
        assert_eq!(e.amount.to_string(), "142.50");
        assert_eq!(e.cost.to_string(), "45.00");
        // 7 minutes at 100.00: 11.666… → 11.67; at 0.05/h, 30 min → 0.025 → 0.03.
        assert_eq!(
            charge(7, Amount::parse("r", "100").unwrap()).to_string(),
            "11.67"
        );
        assert_eq!(
            charge(30, Amount::parse("r", "0.05").unwrap()).to_string(),
            "0.03"
        );
        let contract = TimeEntry::new(
            Uuid::from_u128(3),
            TECH,
            NaiveDate::from_ymd_opt(2026, 11, 16).unwrap(),
            60,
            String::new(),
            Billing::Contract,
            false,
            Amount::parse("r", "95").unwrap(),
            Amount::ZERO,
        );
        assert_eq!(contract.amount.to_string(), "0.00");
    }

    #[test]
    fn waiting_on_the_customer_pauses_the_clock_by_business_minutes() {
        // Opened Mon 10:00 NY, urgent: response due 11:00, resolution due 14:00 (240 min).
        let mut order = state_at(Status::InProgress);
        let sla = order.sla.clone().unwrap();
        assert_eq!(sla.response_due_at, at("2026-11-16T16:00:00Z"));
        assert_eq!(sla.resolution_due_at, at("2026-11-16T19:00:00Z"));
        assert_eq!(sla.resolution_warn_at, at("2026-11-16T18:00:00Z"));
        // Waiting from Mon 12:00 NY to Tue 10:30 NY: 5 h Monday + 1.5 h Tuesday = 390 min.
        for e in order
            .decide(set(Status::WaitingOnCustomer, "2026-11-16T17:00:00Z"))
            .unwrap()
        {
            order.apply(e);
        }
        assert_eq!(
            order.sla.as_ref().unwrap().paused_since,
            Some(at("2026-11-16T17:00:00Z"))
        );
        let resumed = order
            .decide(set(Status::InProgress, "2026-11-17T15:30:00Z"))
            .unwrap();
        let Some(WorkOrderEvent::WorkOrderSlaResumed {
            paused_minutes,
            resolution_due_at,
            ..
        }) = resumed.last().cloned()
        else {
            panic!("{resumed:?}")
        };
        assert_eq!(paused_minutes, 390);
        // 240 + 390 = 630 business minutes after Mon 10:00: Mon 7 h (420) + Tue 210 min →
        // Tue 12:30 NY = 17:30Z.
        assert_eq!(resolution_due_at, at("2026-11-17T17:30:00Z"));
    }

    #[test]
    fn the_first_response_is_a_public_staff_comment_or_starting_work() {
        let comment = |origin, public| WorkOrderCommand::Comment {
            comment: Comment {
                comment_id: Uuid::from_u128(5),
                author_id: Some(TECH),
                origin,
                public,
                body: "On it".into(),
            },
            now: at("2026-11-16T15:30:00Z"),
        };
        let order = state_at(Status::Assigned);
        assert_eq!(
            order.decide(comment(Origin::Staff, false)).unwrap().len(),
            1
        );
        assert_eq!(
            order.decide(comment(Origin::Customer, true)).unwrap().len(),
            1
        );
        let events = order.decide(comment(Origin::Staff, true)).unwrap();
        assert_eq!(
            events.last(),
            Some(&WorkOrderEvent::WorkOrderResponded {
                at: at("2026-11-16T15:30:00Z")
            })
        );
        let events = order
            .decide(set(Status::InProgress, "2026-11-16T15:40:00Z"))
            .unwrap();
        assert!(events.contains(&WorkOrderEvent::WorkOrderResponded {
            at: at("2026-11-16T15:40:00Z")
        }));
    }

    #[test]
    fn sla_warnings_and_breaches_are_raised_once_and_not_while_paused() {
        let check = |now| WorkOrderCommand::CheckSla {
            now: at(now),
            escalate_to: Some(Uuid::from_u128(99)),
        };
        let mut order = state_at(Status::Assigned);
        // 75% of 60 min after 10:00 NY = 10:45 (15:45Z).
        assert!(order
            .decide(check("2026-11-16T15:44:00Z"))
            .unwrap()
            .is_empty());
        let warned = order.decide(check("2026-11-16T15:45:00Z")).unwrap();
        assert_eq!(
            warned,
            vec![WorkOrderEvent::SlaWarningRaised {
                target: SlaTarget::Response,
                due_at: at("2026-11-16T16:00:00Z"),
                escalated_to: Some(Uuid::from_u128(99)),
            }]
        );
        for e in warned {
            order.apply(e);
        }
        assert!(order
            .decide(check("2026-11-16T15:50:00Z"))
            .unwrap()
            .is_empty());
        let breached = order.decide(check("2026-11-16T16:00:00Z")).unwrap();
        assert!(matches!(
            breached[..],
            [WorkOrderEvent::SlaBreached {
                target: SlaTarget::Response,
                ..
            }]
        ));
        for e in breached {
            order.apply(e);
        }
        assert!(order
            .decide(check("2026-11-16T16:30:00Z"))
            .unwrap()
            .is_empty());
        // Paused: nothing, even long past the resolution due time.
        for e in order
            .decide(set(Status::WaitingOnCustomer, "2026-11-16T16:31:00Z"))
            .unwrap()
        {
            order.apply(e);
        }
        assert!(order
            .decide(check("2026-11-20T16:00:00Z"))
            .unwrap()
            .is_empty());
    }

    fn with_link(kind: LinkKind, status: Status) -> WorkOrder {
        let mut order = state_at(status);
        for e in order
            .decide(WorkOrderCommand::IssueLink {
                link_id: LINK,
                kind,
                token_digest: "d".repeat(64),
                user_id: Some(TECH),
                now: at("2026-11-16T15:00:00Z"),
            })
            .unwrap()
        {
            order.apply(e);
        }
        order
    }

    #[test]
    fn technician_links_expire_after_72_hours_and_set_three_statuses_only() {
        let order = with_link(LinkKind::Technician, Status::Assigned);
        let by_link = |status, now| WorkOrderCommand::SetStatusByLink {
            link_id: LINK,
            status,
            now: at(now),
            hours: hours(),
        };
        let events = order
            .decide(by_link(Status::InProgress, "2026-11-19T14:59:00Z"))
            .unwrap();
        assert!(events.contains(&WorkOrderEvent::StatusLinkUsed {
            link_id: LINK,
            used: 1
        }));
        assert_eq!(
            order
                .decide(by_link(Status::InProgress, "2026-11-19T15:00:00Z"))
                .unwrap_err(),
            WorkOrderError::LinkExpired
        );
        assert_eq!(
            order
                .decide(by_link(Status::Cancelled, "2026-11-16T16:00:00Z"))
                .unwrap_err(),
            WorkOrderError::LinkStatus
        );
        let mut revoked = order.clone();
        revoked.apply(WorkOrderEvent::StatusLinkRevoked { link_id: LINK });
        assert_eq!(
            revoked
                .decide(by_link(Status::InProgress, "2026-11-16T16:00:00Z"))
                .unwrap_err(),
            WorkOrderError::LinkNotFound
        );
        let mut used_up = order.clone();
        used_up.apply(WorkOrderEvent::StatusLinkUsed {
            link_id: LINK,
            used: 20,
        });
        assert_eq!(
            used_up
                .decide(by_link(Status::InProgress, "2026-11-16T16:00:00Z"))
                .unwrap_err(),
            WorkOrderError::LinkUsedUp
        );
    }

    #[test]
    fn customer_links_count_views_and_rate_once_resolved() {
        let order = with_link(LinkKind::Customer, Status::InProgress);
        let view = |now| WorkOrderCommand::ViewByLink {
            link_id: LINK,
            now: at(now),
        };
        assert_eq!(
            order.decide(view("2026-11-23T14:59:00Z")).unwrap(),
            vec![WorkOrderEvent::StatusLinkUsed {
                link_id: LINK,
                used: 1
            }]
        );
        assert_eq!(
            order.decide(view("2026-11-23T15:00:00Z")).unwrap_err(),
            WorkOrderError::LinkExpired
        );
        let rate = |rating| WorkOrderCommand::Rate {
            link_id: LINK,
            rating,
            comment: String::new(),
            now: at("2026-11-17T15:00:00Z"),
        };
        assert_eq!(
            order.decide(rate(5)).unwrap_err(),
            WorkOrderError::NotResolved
        );
        let mut resolved = order.clone();
        resolved.status = Status::Resolved;
        assert_eq!(
            resolved.decide(rate(0)).unwrap_err(),
            WorkOrderError::Rating
        );
        for e in resolved.decide(rate(4)).unwrap() {
            resolved.apply(e);
        }
        assert_eq!(resolved.rating, Some(4));
        assert_eq!(
            resolved.decide(rate(5)).unwrap_err(),
            WorkOrderError::AlreadyRated
        );
        // A customer link cannot set a status.
        assert_eq!(
            order
                .decide(WorkOrderCommand::SetStatusByLink {
                    link_id: LINK,
                    status: Status::Resolved,
                    now: at("2026-11-17T15:00:00Z"),
                    hours: hours(),
                })
                .unwrap_err(),
            WorkOrderError::LinkNotAllowed
        );
    }

    #[test]
    fn sla_policies_are_checked_all_at_once() {
        let input = |p: &str, a, b| SlaPolicyInput {
            priority: p.into(),
            response_minutes: a,
            resolution_minutes: b,
        };
        let ok = parse_sla_policies(&[input("low", 480, 2400), input("urgent", 60, 240)]).unwrap();
        assert_eq!(ok[0].priority, Priority::Urgent);
        let errors = parse_sla_policies(&[
            input("urgent", 0, 240),
            input("urgent", 60, 240),
            input("soon", 1, 1),
            input("high", 120, 60),
        ])
        .unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
    }

    #[test]
    fn events_round_trip_through_json() {
        let e = opened();
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(serde_json::from_value::<WorkOrderEvent>(json).unwrap(), e);
        let t = WorkOrderEvent::TimeLogged { entry: entry(1) };
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["TimeLogged"]["entry"]["amount"], "142.50");
        assert_eq!(serde_json::from_value::<WorkOrderEvent>(json).unwrap(), t);
    }

    fn material(id: u128, quantity: &str, price: &str, billing: Billing) -> Material {
        Material::new(
            Uuid::from_u128(id),
            "Cat6 patch cable",
            "C6-2M",
            quantity.parse().unwrap(),
            Amount::parse("unit_price", price).unwrap(),
            billing,
            NaiveDate::from_ymd_opt(2026, 11, 16).unwrap(),
            TECH,
        )
        .unwrap()
    }

    #[test]
    fn materials_are_priced_exactly_and_contract_lines_cost_the_customer_nothing() {
        let m = material(1, "2.5", "3.99", Billing::Billable);
        // 2.5 × 3.99 = 9.975 → 9.98 (half up).
        assert_eq!(m.amount.to_string(), "9.98");
        assert_eq!(m.quantity.to_string(), "2.5");
        // 0.125 × 0.10 = 0.0125 → 0.01; 0.375 × 0.10 = 0.0375 → 0.04.
        let m = material(2, "0.125", "0.10", Billing::Billable);
        assert_eq!(m.amount.to_string(), "0.01");
        let m = material(2, "0.375", "0.10", Billing::Billable);
        assert_eq!(m.amount.to_string(), "0.04");
        let covered = material(3, "1", "120.00", Billing::Contract);
        assert_eq!(covered.amount.to_string(), "0.00");
        assert_eq!(covered.unit_price.value().to_string(), "120.00");
    }

    #[test]
    fn bad_materials_are_refused_naming_every_field() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 16).unwrap();
        let price = Amount::parse("unit_price", "1").unwrap();
        let errors = Material::new(
            Uuid::nil(),
            "  ",
            &"x".repeat(65),
            Decimal::ZERO,
            price,
            Billing::Billable,
            day,
            TECH,
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["description", "sku", "quantity"]);
        for (quantity, ok) in [
            ("0.001", true),
            ("1.0005", false),
            ("100000", true),
            ("100000.001", false),
            ("-1", false),
        ] {
            let made = Material::new(
                Uuid::nil(),
                "Drive",
                "",
                quantity.parse().unwrap(),
                price,
                Billing::Billable,
                day,
                TECH,
            );
            assert_eq!(made.is_ok(), ok, "{quantity}");
        }
        let long = Material::new(
            Uuid::nil(),
            &"é".repeat(201),
            "",
            Decimal::ONE,
            price,
            Billing::Billable,
            day,
            TECH,
        )
        .unwrap_err();
        assert_eq!(long[0].field, "description");
    }

    #[test]
    fn materials_are_added_and_removed_once_and_not_on_a_final_order() {
        let mut order = state_at(Status::InProgress);
        let m = material(1, "2", "10", Billing::Billable);
        let added = order
            .decide(WorkOrderCommand::AddMaterial {
                material: m.clone(),
            })
            .unwrap();
        assert_eq!(
            added,
            vec![WorkOrderEvent::MaterialAdded {
                company_id: order.company_id,
                material: m.clone()
            }]
        );
        for e in added {
            order.apply(e);
        }
        assert_eq!(
            order.decide(WorkOrderCommand::AddMaterial {
                material: m.clone()
            }),
            Err(WorkOrderError::MaterialExists)
        );
        assert_eq!(
            order.decide(WorkOrderCommand::RemoveMaterial {
                material_id: Uuid::from_u128(9)
            }),
            Err(WorkOrderError::NoSuchMaterial)
        );
        let mut closed = order.clone();
        closed.status = Status::Closed;
        let refused = closed
            .decide(WorkOrderCommand::RemoveMaterial {
                material_id: m.material_id,
            })
            .unwrap_err();
        assert_eq!(refused, WorkOrderError::NoMaterialsWhenFinal("closed"));
        assert!(refused.to_string().contains("reopen"));
        assert_eq!(
            closed.decide(WorkOrderCommand::AddMaterial {
                material: material(2, "1", "1", Billing::Billable)
            }),
            Err(WorkOrderError::NoMaterialsWhenFinal("closed"))
        );
        let removed = order
            .decide(WorkOrderCommand::RemoveMaterial {
                material_id: m.material_id,
            })
            .unwrap();
        for e in removed {
            order.apply(e);
        }
        assert!(order.materials.is_empty());
        let json = serde_json::to_value(WorkOrderEvent::MaterialAdded {
            company_id: order.company_id,
            material: m,
        })
        .unwrap();
        assert_eq!(json["MaterialAdded"]["material"]["amount"], "20.00");
        assert_eq!(json["MaterialAdded"]["material"]["quantity"], "2");
    }
}
