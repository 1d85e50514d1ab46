//! A company's receivables ledger (issue 7): its invoices, credit notes, payments and how the
//! payments are allocated — one aggregate per customer company, because allocation spans
//! invoices and must never over- or under-apply a cent (DESIGN.md: "one receivables ledger per
//! customer"). Commands on it are decided whole against its state; concurrent payments on
//! one company are serialised by optimistic concurrency.
//!
//! Balance, exactly, at every point: `issued invoices − credit notes − payments + refunds`
//! (reversed payments count as not received). An invoice's balance is its total minus what
//! was allocated to it and credited on it.
//!
//! Exactly once: a contract period (`Period::key`), a time entry and a late-fee rule of an
//! invoice can each be billed once; the ledger remembers them and refuses a second time.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::billing::{allocate, cents, totals, Line, Open};
use crate::{ErrorKind, HasErrorKind};

/// How a payment came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Check,
    Cash,
    BankTransfer,
    Card,
}

impl Method {
    pub const ALL: [Method; 4] = [Self::Check, Self::Cash, Self::BankTransfer, Self::Card];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Check => "check",
            Self::Cash => "cash",
            Self::BankTransfer => "bank_transfer",
            Self::Card => "card",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == text.trim())
    }
}

/// Where an invoice stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    #[default]
    Draft,
    Issued,
    PartiallyPaid,
    Paid,
    Void,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Issued => "issued",
            Self::PartiallyPaid => "partially_paid",
            Self::Paid => "paid",
            Self::Void => "void",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub number: Option<u64>,
    pub void: bool,
    pub lines: Vec<Line>,
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    pub issue_date: Option<NaiveDate>,
    pub due_date: Option<NaiveDate>,
    /// Allocated from payments.
    #[serde(with = "rust_decimal::serde::str")]
    pub paid: Decimal,
    /// Credited by credit notes.
    #[serde(with = "rust_decimal::serde::str")]
    pub credited: Decimal,
    /// What it billed (`NewInvoice::bills`), less the work a void returned.
    #[serde(default)]
    pub bills: Vec<String>,
}

/// Whether a bill key is work of a work order (time or materials), which a void may return
/// to the unbilled work; contract periods, subscriptions and fees stay billed.
pub fn is_work(bill: &str) -> bool {
    bill.starts_with("time/") || bill.starts_with("material/")
}

impl Invoice {
    pub fn issued(&self) -> bool {
        self.number.is_some() && !self.void
    }

    pub fn balance(&self) -> Decimal {
        if self.issued() {
            self.total - self.paid - self.credited
        } else {
            Decimal::ZERO
        }
    }

    pub fn status(&self) -> InvoiceStatus {
        if self.void {
            InvoiceStatus::Void
        } else if self.number.is_none() {
            InvoiceStatus::Draft
        } else if self.balance() <= Decimal::ZERO {
            InvoiceStatus::Paid
        } else if self.paid + self.credited > Decimal::ZERO {
            InvoiceStatus::PartiallyPaid
        } else {
            InvoiceStatus::Issued
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub received_on: NaiveDate,
    pub method: Method,
    pub reference: String,
    pub allocations: BTreeMap<Uuid, Decimal>,
    #[serde(with = "rust_decimal::serde::str")]
    pub refunded: Decimal,
    pub reversed: bool,
}

impl Payment {
    pub fn allocated(&self) -> Decimal {
        self.allocations.values().copied().sum()
    }

    /// What of the payment is still to be applied (credit).
    pub fn unapplied(&self) -> Decimal {
        if self.reversed {
            Decimal::ZERO
        } else {
            self.amount - self.allocated() - self.refunded
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditNote {
    pub number: u64,
    pub invoice_id: Uuid,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub date: NaiveDate,
    pub reason: String,
}

/// An invoice to issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewInvoice {
    pub invoice_id: Uuid,
    pub number: u64,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    pub lines: Vec<Line>,
    /// What it bills once: contract period keys (`contract/2026-11-01`), time entry ids
    /// (`time/<id>`), late fees (`fee/<invoice>/<rule>`).
    pub bills: Vec<String>,
    /// A scheduled billing run, or a person.
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LedgerCommand {
    /// Issues an invoice (with its number) and applies unapplied credit to it.
    IssueInvoice {
        company_id: Uuid,
        invoice: NewInvoice,
    },
    /// A draft with no number yet (ad-hoc invoices a person reviews before issuing).
    DraftInvoice {
        company_id: Uuid,
        invoice_id: Uuid,
        lines: Vec<Line>,
    },
    IssueDraft {
        invoice_id: Uuid,
        number: u64,
        issue_date: NaiveDate,
        due_date: NaiveDate,
    },
    VoidInvoice {
        invoice_id: Uuid,
        on: NaiveDate,
        reason: String,
        /// Return the invoice's time and materials to the unbilled work (billed again by the
        /// next invoice that takes unbilled work).
        release_work: bool,
    },
    IssueCreditNote {
        credit_note_id: Uuid,
        number: u64,
        invoice_id: Uuid,
        amount: Decimal,
        date: NaiveDate,
        reason: String,
    },
    /// Records a payment and allocates it: to `invoices` when named (oldest due first among
    /// them), else across the open invoices; the rest stays as credit.
    ReceivePayment {
        company_id: Uuid,
        payment_id: Uuid,
        amount: Decimal,
        received_on: NaiveDate,
        method: Method,
        reference: String,
        invoices: Option<Vec<Uuid>>,
    },
    /// Takes a payment's allocation off an invoice (it becomes credit again).
    Unapply { payment_id: Uuid, invoice_id: Uuid },
    /// Applies the company's credit to its open invoices, oldest due first.
    ApplyCredit { on: NaiveDate },
    Refund {
        payment_id: Uuid,
        amount: Decimal,
        on: NaiveDate,
        reference: String,
    },
    /// A bounced check: the payment counts as never received; its allocations come off.
    ReversePayment {
        payment_id: Uuid,
        on: NaiveDate,
        reason: String,
    },
    /// A reminder about an overdue invoice, once per (invoice, days past due).
    RemindOverdue {
        invoice_id: Uuid,
        days: u32,
        on: NaiveDate,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LedgerEvent {
    LedgerOpened {
        company_id: Uuid,
    },
    InvoiceDrafted {
        invoice_id: Uuid,
        lines: Vec<Line>,
        #[serde(with = "rust_decimal::serde::str")]
        total: Decimal,
    },
    InvoiceIssued {
        invoice_id: Uuid,
        number: u64,
        issue_date: NaiveDate,
        due_date: NaiveDate,
        /// The lines (absent when a draft is issued: its lines stand).
        lines: Option<Vec<Line>>,
        #[serde(with = "rust_decimal::serde::str")]
        total: Decimal,
        #[serde(default)]
        bills: Vec<String>,
    },
    InvoiceVoided {
        invoice_id: Uuid,
        on: NaiveDate,
        reason: String,
        /// The bills (`time/<id>`, `material/<id>`) returned to the unbilled work.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        released: Vec<String>,
    },
    CreditNoteIssued {
        credit_note_id: Uuid,
        number: u64,
        invoice_id: Uuid,
        #[serde(with = "rust_decimal::serde::str")]
        amount: Decimal,
        date: NaiveDate,
        reason: String,
    },
    PaymentReceived {
        payment_id: Uuid,
        #[serde(with = "rust_decimal::serde::str")]
        amount: Decimal,
        received_on: NaiveDate,
        method: Method,
        reference: String,
    },
    /// `on`: the business date the money met the invoice (the later of the payment's and the
    /// invoice's dates) — what the aging report as of a past date goes by.
    PaymentAllocated {
        payment_id: Uuid,
        invoice_id: Uuid,
        #[serde(with = "rust_decimal::serde::str")]
        amount: Decimal,
        on: NaiveDate,
    },
    PaymentUnapplied {
        payment_id: Uuid,
        invoice_id: Uuid,
        #[serde(with = "rust_decimal::serde::str")]
        amount: Decimal,
        on: NaiveDate,
    },
    PaymentRefunded {
        payment_id: Uuid,
        #[serde(with = "rust_decimal::serde::str")]
        amount: Decimal,
        on: NaiveDate,
        reference: String,
    },
    PaymentReversed {
        payment_id: Uuid,
        on: NaiveDate,
        reason: String,
    },
    OverdueReminderDue {
        invoice_id: Uuid,
        days: u32,
        on: NaiveDate,
    },
}

impl DomainEvent for LedgerEvent {
    fn event_type(&self) -> String {
        match self {
            Self::LedgerOpened { .. } => "LedgerOpened",
            Self::InvoiceDrafted { .. } => "InvoiceDrafted",
            Self::InvoiceIssued { .. } => "InvoiceIssued",
            Self::InvoiceVoided { .. } => "InvoiceVoided",
            Self::CreditNoteIssued { .. } => "CreditNoteIssued",
            Self::PaymentReceived { .. } => "PaymentReceived",
            Self::PaymentAllocated { .. } => "PaymentAllocated",
            Self::PaymentUnapplied { .. } => "PaymentUnapplied",
            Self::PaymentRefunded { .. } => "PaymentRefunded",
            Self::PaymentReversed { .. } => "PaymentReversed",
            Self::OverdueReminderDue { .. } => "OverdueReminderDue",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("invoice not found")]
    InvoiceNotFound,
    #[error("payment not found")]
    PaymentNotFound,
    #[error("this invoice already exists")]
    InvoiceExists,
    #[error("this payment already exists")]
    PaymentExists,
    #[error("{0} is already billed")]
    AlreadyBilled(String),
    #[error("an invoice needs at least one line")]
    NoLines,
    #[error("the due date must not be before the invoice date")]
    DueBeforeIssue,
    #[error("this invoice is {0}")]
    WrongStatus(&'static str),
    #[error("payments are allocated to this invoice: unapply them before voiding it")]
    HasPayments,
    #[error("the amount must be more than 0")]
    NotPositive,
    #[error("the credit note may be at most the invoice's balance, {0}")]
    CreditTooLarge(Decimal),
    #[error("the refund may be at most the payment's unapplied amount, {0}")]
    RefundTooLarge(Decimal),
    #[error("this payment was reversed")]
    Reversed,
    #[error("this payment is not allocated to that invoice")]
    NotAllocated,
    #[error("the named invoices must be issued and open: {0}")]
    NotOpen(String),
    #[error("amounts have at most 2 decimal places")]
    Precision,
}

impl HasErrorKind for LedgerError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::InvoiceNotFound | Self::PaymentNotFound => ErrorKind::NotFound,
            Self::NoLines
            | Self::DueBeforeIssue
            | Self::NotPositive
            | Self::CreditTooLarge(_)
            | Self::RefundTooLarge(_)
            | Self::NotOpen(_)
            | Self::Precision => ErrorKind::Invalid,
            _ => ErrorKind::Conflict,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub opened: bool,
    pub company_id: Uuid,
    pub invoices: BTreeMap<Uuid, Invoice>,
    pub payments: BTreeMap<Uuid, Payment>,
    pub credit_notes: BTreeMap<Uuid, CreditNote>,
    /// Contract periods, time entries and fees billed (see `NewInvoice::bills`).
    pub billed: BTreeSet<String>,
    pub reminders: BTreeSet<(Uuid, u32)>,
}

/// The id of a company's ledger aggregate.
pub fn ledger_id(company_id: Uuid) -> String {
    company_id.to_string()
}

impl Ledger {
    /// `issued invoices − credit notes − payments + refunds`.
    pub fn balance(&self) -> Decimal {
        let invoices: Decimal = self
            .invoices
            .values()
            .filter(|i| i.issued())
            .map(|i| i.total)
            .sum();
        let credits: Decimal = self
            .credit_notes
            .values()
            .filter(|c| {
                self.invoices
                    .get(&c.invoice_id)
                    .is_some_and(Invoice::issued)
            })
            .map(|c| c.amount)
            .sum();
        let payments: Decimal = self
            .payments
            .values()
            .filter(|p| !p.reversed)
            .map(|p| p.amount - p.refunded)
            .sum();
        invoices - credits - payments
    }

    /// Credit not applied to any invoice yet.
    pub fn unapplied(&self) -> Decimal {
        self.payments.values().map(Payment::unapplied).sum()
    }

    fn open(&self, only: Option<&[Uuid]>) -> Vec<Open> {
        self.invoices
            .iter()
            .filter(|(id, _)| only.is_none_or(|ids| ids.contains(id)))
            .filter(|(_, i)| i.issued() && i.balance() > Decimal::ZERO)
            .map(|(id, i)| Open {
                invoice_id: *id,
                due_date: i.due_date.unwrap_or(NaiveDate::MAX),
                issue_date: i.issue_date.unwrap_or(NaiveDate::MAX),
                number: i.number.unwrap_or(u64::MAX),
                balance: i.balance(),
            })
            .collect()
    }

    /// Allocates every payment's credit (oldest payment first) to the open invoices, dated
    /// `on` (or later: the payment's or the invoice's date).
    fn apply_credit(&self, on: NaiveDate) -> Vec<LedgerEvent> {
        let mut state = self.clone();
        let mut events = Vec::new();
        let payments: Vec<(NaiveDate, Uuid)> = state
            .payments
            .iter()
            .filter(|(_, p)| p.unapplied() > Decimal::ZERO)
            .map(|(id, p)| (p.received_on, *id))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for (received_on, payment_id) in payments {
            let credit = state.payments[&payment_id].unapplied();
            let (allocations, _) = allocate(state.open(None), credit);
            for (invoice_id, amount) in allocations {
                let issued = state.invoices[&invoice_id].issue_date.unwrap_or(on);
                let event = LedgerEvent::PaymentAllocated {
                    payment_id,
                    invoice_id,
                    amount,
                    on: on.max(received_on).max(issued),
                };
                state.apply(event.clone());
                events.push(event);
            }
        }
        events
    }

    fn invoice(&self, id: Uuid) -> Result<&Invoice, LedgerError> {
        self.invoices.get(&id).ok_or(LedgerError::InvoiceNotFound)
    }

    fn payment(&self, id: Uuid) -> Result<&Payment, LedgerError> {
        self.payments.get(&id).ok_or(LedgerError::PaymentNotFound)
    }

    fn decide(&self, command: LedgerCommand) -> Result<Vec<LedgerEvent>, LedgerError> {
        use LedgerCommand as C;
        use LedgerEvent as E;
        let mut events = Vec::new();
        let open_ledger = |company_id: Uuid, events: &mut Vec<LedgerEvent>| {
            if !self.opened {
                events.push(E::LedgerOpened { company_id });
            }
        };
        match command {
            C::IssueInvoice {
                company_id,
                invoice,
            } => {
                if self.invoices.contains_key(&invoice.invoice_id) {
                    return Err(LedgerError::InvoiceExists);
                }
                if let Some(done) = invoice.bills.iter().find(|b| self.billed.contains(*b)) {
                    return Err(LedgerError::AlreadyBilled(done.clone()));
                }
                if invoice.lines.is_empty() {
                    return Err(LedgerError::NoLines);
                }
                if invoice.due_date < invoice.issue_date {
                    return Err(LedgerError::DueBeforeIssue);
                }
                open_ledger(company_id, &mut events);
                let (_, _, total) = totals(&invoice.lines);
                events.push(E::InvoiceIssued {
                    invoice_id: invoice.invoice_id,
                    number: invoice.number,
                    issue_date: invoice.issue_date,
                    due_date: invoice.due_date,
                    lines: Some(invoice.lines),
                    total,
                    bills: invoice.bills,
                });
                self.with_credit(events, invoice.issue_date)
            }
            C::DraftInvoice {
                company_id,
                invoice_id,
                lines,
            } => {
                if self.invoices.contains_key(&invoice_id) {
                    return Err(LedgerError::InvoiceExists);
                }
                if lines.is_empty() {
                    return Err(LedgerError::NoLines);
                }
                open_ledger(company_id, &mut events);
                let (_, _, total) = totals(&lines);
                events.push(E::InvoiceDrafted {
                    invoice_id,
                    lines,
                    total,
                });
                Ok(events)
            }
            C::IssueDraft {
                invoice_id,
                number,
                issue_date,
                due_date,
            } => {
                let invoice = self.invoice(invoice_id)?;
                if invoice.status() != InvoiceStatus::Draft {
                    return Err(LedgerError::WrongStatus(invoice.status().as_str()));
                }
                if due_date < issue_date {
                    return Err(LedgerError::DueBeforeIssue);
                }
                events.push(E::InvoiceIssued {
                    invoice_id,
                    number,
                    issue_date,
                    due_date,
                    lines: None,
                    total: invoice.total,
                    bills: Vec::new(),
                });
                self.with_credit(events, issue_date)
            }
            C::VoidInvoice {
                invoice_id,
                on,
                reason,
                release_work,
            } => {
                let invoice = self.invoice(invoice_id)?;
                if invoice.void {
                    return Err(LedgerError::WrongStatus("void"));
                }
                if invoice.paid > Decimal::ZERO {
                    return Err(LedgerError::HasPayments);
                }
                let released = if release_work {
                    invoice
                        .bills
                        .iter()
                        .filter(|b| is_work(b))
                        .cloned()
                        .collect()
                } else {
                    Vec::new()
                };
                Ok(vec![E::InvoiceVoided {
                    invoice_id,
                    on,
                    reason,
                    released,
                }])
            }
            C::IssueCreditNote {
                credit_note_id,
                number,
                invoice_id,
                amount,
                date,
                reason,
            } => {
                let invoice = self.invoice(invoice_id)?;
                if !invoice.issued() {
                    return Err(LedgerError::WrongStatus(invoice.status().as_str()));
                }
                check_amount(amount)?;
                if amount > invoice.balance() {
                    return Err(LedgerError::CreditTooLarge(invoice.balance()));
                }
                if self.credit_notes.contains_key(&credit_note_id) {
                    return Err(LedgerError::InvoiceExists);
                }
                Ok(vec![E::CreditNoteIssued {
                    credit_note_id,
                    number,
                    invoice_id,
                    amount,
                    date,
                    reason,
                }])
            }
            C::ReceivePayment {
                company_id,
                payment_id,
                amount,
                received_on,
                method,
                reference,
                invoices,
            } => {
                if self.payments.contains_key(&payment_id) {
                    return Err(LedgerError::PaymentExists);
                }
                check_amount(amount)?;
                let targets = match &invoices {
                    Some(ids) => {
                        let bad: Vec<String> = ids
                            .iter()
                            .filter(|id| {
                                self.invoices
                                    .get(id)
                                    .is_none_or(|i| !i.issued() || i.balance() <= Decimal::ZERO)
                            })
                            .map(Uuid::to_string)
                            .collect();
                        if !bad.is_empty() {
                            return Err(LedgerError::NotOpen(bad.join(", ")));
                        }
                        self.open(Some(ids))
                    }
                    None => self.open(None),
                };
                open_ledger(company_id, &mut events);
                events.push(E::PaymentReceived {
                    payment_id,
                    amount,
                    received_on,
                    method,
                    reference,
                });
                let (allocations, _) = allocate(targets, amount);
                for (invoice_id, part) in allocations {
                    let issued = self.invoices[&invoice_id].issue_date.unwrap_or(received_on);
                    events.push(E::PaymentAllocated {
                        payment_id,
                        invoice_id,
                        amount: part,
                        on: received_on.max(issued),
                    });
                }
                Ok(events)
            }
            C::Unapply {
                payment_id,
                invoice_id,
            } => {
                let payment = self.payment(payment_id)?;
                if payment.reversed {
                    return Err(LedgerError::Reversed);
                }
                let amount = *payment
                    .allocations
                    .get(&invoice_id)
                    .ok_or(LedgerError::NotAllocated)?;
                let on = self
                    .invoice(invoice_id)?
                    .issue_date
                    .unwrap_or(payment.received_on);
                Ok(vec![E::PaymentUnapplied {
                    payment_id,
                    invoice_id,
                    amount,
                    on: on.max(payment.received_on),
                }])
            }
            C::ApplyCredit { on } => Ok(self.apply_credit(on)),
            C::Refund {
                payment_id,
                amount,
                on,
                reference,
            } => {
                let payment = self.payment(payment_id)?;
                if payment.reversed {
                    return Err(LedgerError::Reversed);
                }
                check_amount(amount)?;
                if amount > payment.unapplied() {
                    return Err(LedgerError::RefundTooLarge(payment.unapplied()));
                }
                Ok(vec![E::PaymentRefunded {
                    payment_id,
                    amount,
                    on,
                    reference,
                }])
            }
            C::ReversePayment {
                payment_id,
                on,
                reason,
            } => {
                let payment = self.payment(payment_id)?;
                if payment.reversed {
                    return Err(LedgerError::Reversed);
                }
                if payment.refunded > Decimal::ZERO {
                    return Err(LedgerError::WrongStatus("partly refunded"));
                }
                Ok(vec![E::PaymentReversed {
                    payment_id,
                    on,
                    reason,
                }])
            }
            C::RemindOverdue {
                invoice_id,
                days,
                on,
            } => {
                let invoice = self.invoice(invoice_id)?;
                if !invoice.issued()
                    || invoice.balance() <= Decimal::ZERO
                    || self.reminders.contains(&(invoice_id, days))
                {
                    return Ok(vec![]);
                }
                Ok(vec![E::OverdueReminderDue {
                    invoice_id,
                    days,
                    on,
                }])
            }
        }
    }

    /// `events` followed by the allocation of the company's credit they make possible.
    fn with_credit(
        &self,
        events: Vec<LedgerEvent>,
        on: NaiveDate,
    ) -> Result<Vec<LedgerEvent>, LedgerError> {
        let mut state = self.clone();
        for event in &events {
            state.apply(event.clone());
        }
        let mut all = events;
        all.extend(state.apply_credit(on));
        Ok(all)
    }
}

fn check_amount(amount: Decimal) -> Result<(), LedgerError> {
    if amount <= Decimal::ZERO {
        return Err(LedgerError::NotPositive);
    }
    if amount.normalize().scale() > 2 {
        return Err(LedgerError::Precision);
    }
    Ok(())
}

impl Aggregate for Ledger {
    const TYPE: &'static str = "ledger";
    type Command = LedgerCommand;
    type Event = LedgerEvent;
    type Error = LedgerError;
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
        use LedgerEvent as E;
        match event {
            E::LedgerOpened { company_id } => {
                self.opened = true;
                self.company_id = company_id;
            }
            E::InvoiceDrafted {
                invoice_id,
                lines,
                total,
            } => {
                self.invoices.insert(
                    invoice_id,
                    Invoice {
                        lines,
                        total,
                        ..Invoice::default()
                    },
                );
            }
            E::InvoiceIssued {
                invoice_id,
                number,
                issue_date,
                due_date,
                lines,
                total,
                bills,
            } => {
                let invoice = self.invoices.entry(invoice_id).or_default();
                invoice.number = Some(number);
                invoice.issue_date = Some(issue_date);
                invoice.due_date = Some(due_date);
                if let Some(lines) = lines {
                    invoice.lines = lines;
                }
                invoice.total = total;
                invoice.bills = bills.clone();
                self.billed.extend(bills);
            }
            E::InvoiceVoided {
                invoice_id,
                released,
                ..
            } => {
                if let Some(i) = self.invoices.get_mut(&invoice_id) {
                    i.void = true;
                    i.bills.retain(|b| !released.contains(b));
                }
                for bill in &released {
                    self.billed.remove(bill);
                }
            }
            E::CreditNoteIssued {
                credit_note_id,
                number,
                invoice_id,
                amount,
                date,
                reason,
            } => {
                if let Some(i) = self.invoices.get_mut(&invoice_id) {
                    i.credited += amount;
                }
                self.credit_notes.insert(
                    credit_note_id,
                    CreditNote {
                        number,
                        invoice_id,
                        amount,
                        date,
                        reason,
                    },
                );
            }
            E::PaymentReceived {
                payment_id,
                amount,
                received_on,
                method,
                reference,
            } => {
                self.payments.insert(
                    payment_id,
                    Payment {
                        amount,
                        received_on,
                        method,
                        reference,
                        allocations: BTreeMap::new(),
                        refunded: Decimal::ZERO,
                        reversed: false,
                    },
                );
            }
            E::PaymentAllocated {
                payment_id,
                invoice_id,
                amount,
                ..
            } => {
                if let Some(p) = self.payments.get_mut(&payment_id) {
                    *p.allocations.entry(invoice_id).or_default() += amount;
                }
                if let Some(i) = self.invoices.get_mut(&invoice_id) {
                    i.paid += amount;
                }
            }
            E::PaymentUnapplied {
                payment_id,
                invoice_id,
                amount,
                ..
            } => {
                if let Some(p) = self.payments.get_mut(&payment_id) {
                    p.allocations.remove(&invoice_id);
                }
                if let Some(i) = self.invoices.get_mut(&invoice_id) {
                    i.paid -= amount;
                }
            }
            E::PaymentRefunded {
                payment_id, amount, ..
            } => {
                if let Some(p) = self.payments.get_mut(&payment_id) {
                    p.refunded += amount;
                }
            }
            E::PaymentReversed { payment_id, .. } => {
                if let Some(p) = self.payments.get_mut(&payment_id) {
                    for (invoice_id, amount) in std::mem::take(&mut p.allocations) {
                        if let Some(i) = self.invoices.get_mut(&invoice_id) {
                            i.paid -= amount;
                        }
                    }
                    p.reversed = true;
                }
            }
            E::OverdueReminderDue {
                invoice_id, days, ..
            } => {
                self.reminders.insert((invoice_id, days));
            }
        }
    }
}

/// Rounds an amount to the cent (re-exported for callers that build ledger commands).
pub fn money(value: Decimal) -> Decimal {
    cents(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::{price_lines, LineInput};
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::from_str(s).unwrap()
    }

    const COMPANY: Uuid = Uuid::from_u128(9);

    fn run(ledger: &mut Ledger, command: LedgerCommand) -> Result<Vec<LedgerEvent>, LedgerError> {
        let events = ledger.decide(command)?;
        for e in &events {
            ledger.apply(e.clone());
        }
        Ok(events)
    }

    fn issue(ledger: &mut Ledger, n: u64, amount: &str, issued: &str, due: &str) -> Uuid {
        let id = Uuid::from_u128(1000 + n as u128);
        let lines = price_lines(
            &[LineInput {
                description: format!("Invoice {n}"),
                quantity: dec("1"),
                unit_price: dec(amount),
                tax_rate: None,
            }],
            false,
        )
        .unwrap();
        run(
            ledger,
            LedgerCommand::IssueInvoice {
                company_id: COMPANY,
                invoice: NewInvoice {
                    invoice_id: id,
                    number: n,
                    issue_date: d(issued),
                    due_date: d(due),
                    lines,
                    bills: vec![format!("contract/{issued}")],
                    note: String::new(),
                },
            },
        )
        .unwrap();
        id
    }

    fn pay(
        ledger: &mut Ledger,
        n: u128,
        amount: &str,
        on: &str,
    ) -> Result<Vec<LedgerEvent>, LedgerError> {
        run(
            ledger,
            LedgerCommand::ReceivePayment {
                company_id: COMPANY,
                payment_id: Uuid::from_u128(n),
                amount: dec(amount),
                received_on: d(on),
                method: Method::Check,
                reference: "1234".into(),
                invoices: None,
            },
        )
    }

    #[test]
    fn a_payment_pays_the_oldest_due_first_and_credit_pays_the_next_invoice() {
        let mut l = Ledger::default();
        let a = issue(&mut l, 1, "500.00", "2026-01-01", "2026-01-15");
        let b = issue(&mut l, 2, "500.00", "2026-02-01", "2026-02-15");
        pay(&mut l, 1, "700.00", "2026-02-20").unwrap();
        assert_eq!(l.invoices[&a].status(), InvoiceStatus::Paid);
        assert_eq!(l.invoices[&b].balance(), dec("300.00"));
        assert_eq!(l.balance(), dec("300.00"));
        pay(&mut l, 2, "400.00", "2026-02-25").unwrap();
        assert_eq!(l.unapplied(), dec("100.00"));
        assert_eq!(l.balance(), dec("-100.00"));
        // The next invoice takes the credit when it is issued.
        let c = issue(&mut l, 3, "250.00", "2026-03-01", "2026-03-15");
        assert_eq!(l.invoices[&c].balance(), dec("150.00"));
        assert_eq!(l.unapplied(), dec("0.00"));
        assert_eq!(l.balance(), dec("150.00"));
    }

    #[test]
    fn a_period_is_billed_once() {
        let mut l = Ledger::default();
        issue(&mut l, 1, "500.00", "2026-01-01", "2026-01-15");
        let again = l.decide(LedgerCommand::IssueInvoice {
            company_id: COMPANY,
            invoice: NewInvoice {
                invoice_id: Uuid::from_u128(77),
                number: 2,
                issue_date: d("2026-01-01"),
                due_date: d("2026-01-15"),
                lines: l.invoices.values().next().unwrap().lines.clone(),
                bills: vec!["contract/2026-01-01".into()],
                note: String::new(),
            },
        });
        assert_eq!(
            again,
            Err(LedgerError::AlreadyBilled("contract/2026-01-01".into()))
        );
    }

    #[test]
    fn a_void_returns_its_work_to_the_unbilled_work_and_keeps_the_period_billed() {
        for release_work in [true, false] {
            let mut l = Ledger::default();
            let id = Uuid::from_u128(5);
            let lines = price_lines(
                &[LineInput {
                    description: "Contract and work".into(),
                    quantity: dec("1"),
                    unit_price: dec("100.00"),
                    tax_rate: None,
                }],
                false,
            )
            .unwrap();
            let bills: Vec<String> = vec![
                "contract/2026-01-01".into(),
                "time/11".into(),
                "material/12".into(),
            ];
            run(
                &mut l,
                LedgerCommand::IssueInvoice {
                    company_id: COMPANY,
                    invoice: NewInvoice {
                        invoice_id: id,
                        number: 1,
                        issue_date: d("2026-01-01"),
                        due_date: d("2026-01-15"),
                        lines,
                        bills: bills.clone(),
                        note: String::new(),
                    },
                },
            )
            .unwrap();
            let voided = run(
                &mut l,
                LedgerCommand::VoidInvoice {
                    invoice_id: id,
                    on: d("2026-01-02"),
                    reason: "wrong work".into(),
                    release_work,
                },
            )
            .unwrap();
            let released: Vec<String> = if release_work {
                vec!["time/11".into(), "material/12".into()]
            } else {
                Vec::new()
            };
            assert_eq!(
                voided,
                vec![LedgerEvent::InvoiceVoided {
                    invoice_id: id,
                    on: d("2026-01-02"),
                    reason: "wrong work".into(),
                    released: released.clone(),
                }]
            );
            // The period stays billed either way; the work only when it was kept.
            assert!(l.billed.contains("contract/2026-01-01"));
            for bill in ["time/11", "material/12"] {
                assert_eq!(l.billed.contains(bill), !release_work, "{bill}");
            }
            assert_eq!(l.balance(), dec("0.00"));
        }
        // An old event without `released` reads as returning nothing.
        let old: LedgerEvent = serde_json::from_value(serde_json::json!({"InvoiceVoided": {
            "invoice_id": Uuid::from_u128(5), "on": "2026-01-02", "reason": ""}}))
        .unwrap();
        assert!(matches!(old, LedgerEvent::InvoiceVoided { released, .. } if released.is_empty()));
    }

    #[test]
    fn a_bounced_check_comes_off_its_invoices_and_refunds_only_credit() {
        let mut l = Ledger::default();
        let a = issue(&mut l, 1, "500.00", "2026-01-01", "2026-01-15");
        pay(&mut l, 1, "600.00", "2026-01-10").unwrap();
        assert_eq!(l.balance(), dec("-100.00"));
        assert_eq!(
            run(
                &mut l,
                LedgerCommand::Refund {
                    payment_id: Uuid::from_u128(1),
                    amount: dec("100.01"),
                    on: d("2026-01-11"),
                    reference: String::new()
                }
            ),
            Err(LedgerError::RefundTooLarge(dec("100.00")))
        );
        run(
            &mut l,
            LedgerCommand::Refund {
                payment_id: Uuid::from_u128(1),
                amount: dec("100.00"),
                on: d("2026-01-11"),
                reference: "transfer".into(),
            },
        )
        .unwrap();
        assert_eq!(l.balance(), dec("0.00"));
        pay(&mut l, 2, "500.00", "2026-01-12").unwrap();
        assert_eq!(l.unapplied(), dec("500.00"), "nothing open: all credit");
        // A check bounces: the invoice is owed again.
        let mut l2 = Ledger::default();
        let b = issue(&mut l2, 1, "500.00", "2026-01-01", "2026-01-15");
        pay(&mut l2, 5, "500.00", "2026-01-10").unwrap();
        run(
            &mut l2,
            LedgerCommand::ReversePayment {
                payment_id: Uuid::from_u128(5),
                on: d("2026-01-20"),
                reason: "returned by the bank".into(),
            },
        )
        .unwrap();
        assert_eq!(l2.invoices[&b].balance(), dec("500.00"));
        assert_eq!(l2.balance(), dec("500.00"));
        let _ = a;
    }

    #[test]
    fn named_invoices_must_be_open_and_amounts_exact() {
        let mut l = Ledger::default();
        issue(&mut l, 1, "500.00", "2026-01-01", "2026-01-15");
        assert_eq!(
            pay(&mut l, 1, "0", "2026-01-10"),
            Err(LedgerError::NotPositive)
        );
        assert_eq!(
            pay(&mut l, 1, "1.001", "2026-01-10"),
            Err(LedgerError::Precision)
        );
        let unknown = Uuid::from_u128(4242);
        assert!(matches!(
            run(
                &mut l,
                LedgerCommand::ReceivePayment {
                    company_id: COMPANY,
                    payment_id: Uuid::from_u128(3),
                    amount: dec("10"),
                    received_on: d("2026-01-10"),
                    method: Method::Card,
                    reference: String::new(),
                    invoices: Some(vec![unknown]),
                }
            ),
            Err(LedgerError::NotOpen(_))
        ));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Step {
            Issue { cents: u32, due_in: u8 },
            Pay { cents: u32, named: Option<u8> },
            Unapply { payment: u8, invoice: u8 },
            Refund { payment: u8, cents: u32 },
            Reverse { payment: u8 },
            Credit { invoice: u8, cents: u32 },
            Void { invoice: u8 },
            ApplyCredit,
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                3 => (1u32..200_000, 0u8..60).prop_map(|(cents, due_in)| Step::Issue { cents, due_in }),
                3 => (1u32..300_000, proptest::option::of(0u8..8)).prop_map(|(cents, named)| Step::Pay { cents, named }),
                1 => (0u8..8, 0u8..8).prop_map(|(payment, invoice)| Step::Unapply { payment, invoice }),
                1 => (0u8..8, 1u32..100_000).prop_map(|(payment, cents)| Step::Refund { payment, cents }),
                1 => (0u8..8).prop_map(|payment| Step::Reverse { payment }),
                1 => (0u8..8, 1u32..100_000).prop_map(|(invoice, cents)| Step::Credit { invoice, cents }),
                1 => (0u8..8).prop_map(|invoice| Step::Void { invoice }),
                1 => Just(Step::ApplyCredit),
            ]
        }

        fn money(cents: u32) -> Decimal {
            Decimal::new(cents as i64, 2)
        }

        /// Every invariant the ledger promises, checked after each step.
        fn check(l: &Ledger) -> Result<(), TestCaseError> {
            for p in l.payments.values() {
                prop_assert!(p.allocations.values().all(|a| *a > Decimal::ZERO));
                prop_assert!(
                    p.unapplied() >= Decimal::ZERO,
                    "over-allocated payment {p:?}"
                );
                if p.reversed {
                    prop_assert!(p.allocations.is_empty());
                }
            }
            for i in l.invoices.values() {
                prop_assert!(i.paid >= Decimal::ZERO);
                prop_assert!(i.paid + i.credited <= i.total, "over-paid invoice {i:?}");
            }
            // Every allocated cent is on an invoice, and back.
            let allocated: Decimal = l.payments.values().map(Payment::allocated).sum();
            let paid: Decimal = l.invoices.values().map(|i| i.paid).sum();
            prop_assert_eq!(allocated, paid);
            // The balance is the ledger's: open invoices minus credit.
            let open: Decimal = l.invoices.values().map(Invoice::balance).sum();
            prop_assert_eq!(l.balance(), open - l.unapplied());
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]
            #[test]
            fn allocation_conserves_every_cent_and_pays_the_oldest_first(steps in proptest::collection::vec(step(), 1..40)) {
                let mut l = Ledger::default();
                let mut invoices: Vec<Uuid> = Vec::new();
                let mut payments: Vec<Uuid> = Vec::new();
                let start = d("2026-01-01");
                for (n, step) in steps.into_iter().enumerate() {
                    let today = start + chrono::Duration::days(n as i64);
                    let pick = |ids: &Vec<Uuid>, i: u8| ids.get(i as usize % ids.len().max(1)).copied();
                    let command = match step {
                        Step::Issue { cents, due_in } => {
                            let id = Uuid::from_u128(10_000 + n as u128);
                            invoices.push(id);
                            LedgerCommand::IssueInvoice {
                                company_id: COMPANY,
                                invoice: NewInvoice {
                                    invoice_id: id,
                                    number: n as u64 + 1,
                                    issue_date: today,
                                    due_date: today + chrono::Duration::days(due_in as i64),
                                    lines: price_lines(&[LineInput {
                                        description: "x".into(),
                                        quantity: dec("1"),
                                        unit_price: money(cents),
                                        tax_rate: None,
                                    }], false).unwrap(),
                                    bills: vec![],
                                    note: String::new(),
                                },
                            }
                        }
                        Step::Pay { cents, named } => {
                            let id = Uuid::from_u128(20_000 + n as u128);
                            payments.push(id);
                            LedgerCommand::ReceivePayment {
                                company_id: COMPANY,
                                payment_id: id,
                                amount: money(cents),
                                received_on: today,
                                method: Method::BankTransfer,
                                reference: String::new(),
                                invoices: named.and_then(|i| pick(&invoices, i)).map(|id| vec![id]),
                            }
                        }
                        Step::Unapply { payment, invoice } => match (pick(&payments, payment), pick(&invoices, invoice)) {
                            (Some(payment_id), Some(invoice_id)) => LedgerCommand::Unapply { payment_id, invoice_id },
                            _ => continue,
                        },
                        Step::Refund { payment, cents } => match pick(&payments, payment) {
                            Some(payment_id) => LedgerCommand::Refund { payment_id, amount: money(cents), on: today, reference: String::new() },
                            None => continue,
                        },
                        Step::Reverse { payment } => match pick(&payments, payment) {
                            Some(payment_id) => LedgerCommand::ReversePayment { payment_id, on: today, reason: String::new() },
                            None => continue,
                        },
                        Step::Credit { invoice, cents } => match pick(&invoices, invoice) {
                            Some(invoice_id) => LedgerCommand::IssueCreditNote {
                                credit_note_id: Uuid::from_u128(30_000 + n as u128),
                                number: n as u64 + 1,
                                invoice_id,
                                amount: money(cents),
                                date: today,
                                reason: String::new(),
                            },
                            None => continue,
                        },
                        Step::Void { invoice } => match pick(&invoices, invoice) {
                            Some(invoice_id) => LedgerCommand::VoidInvoice { invoice_id, on: today, reason: String::new(), release_work: true },
                            None => continue,
                        },
                        Step::ApplyCredit => LedgerCommand::ApplyCredit { on: today },
                    };
                    let is_open_pay = matches!(&command, LedgerCommand::ReceivePayment { invoices: None, .. });
                    let before = l.clone();
                    // A refused command changes nothing; an accepted one keeps every invariant.
                    if let Ok(events) = l.decide(command) {
                        for e in &events {
                            l.apply(e.clone());
                        }
                        if is_open_pay {
                            // Oldest due first: an invoice got money only if every invoice due
                            // before it is now paid.
                            let funded: Vec<Uuid> = events.iter().filter_map(|e| match e {
                                LedgerEvent::PaymentAllocated { invoice_id, .. } => Some(*invoice_id),
                                _ => None,
                            }).collect();
                            for id in &funded {
                                let due = l.invoices[id].due_date;
                                for (other, i) in &l.invoices {
                                    if before.invoices.get(other).is_some_and(|b| b.balance() > Decimal::ZERO)
                                        && i.due_date < due
                                    {
                                        prop_assert_eq!(i.balance(), Decimal::ZERO, "an older invoice was left open");
                                    }
                                }
                            }
                        }
                    }
                    check(&l)?;
                }
            }
        }
    }
}
