//! Billing and receivables (issue 7): contracts billed by the scheduler, ad-hoc invoices,
//! payments applied oldest invoice first, credit notes, the company's ledger.
//!
//! - `run`: the billing run (scheduler job `billing`, `POST /api/v1/billing/runs`).
//! - `ops`: what the API and the console share.
//! - `api`: the write API (contract terms, runs, payments, invoices).
//! - `catalogue`: the service catalogue and companies' subscriptions (API).
//! - `documents`: invoice PDFs from the ledger.
//! - `reports`: the read API (invoices, PDFs, payments, balances, statements, AR aging).
//! - `pages`: the console's billing screens (`/billing`, a company's Billing tab, settings).

pub mod api;
pub mod catalogue;
pub mod documents;
pub mod ops;
pub mod pages;
pub mod reports;
pub mod run;
