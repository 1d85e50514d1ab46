//! SupportTracker's domain: aggregates, commands, events, value types and the pure business
//! rules that decide them. Nothing here does I/O or knows about HTTP or SQL; anything from
//! outside an aggregate (clock, ids, crypto) reaches it through the aggregate's `Services`.

pub mod asset;
pub mod authz;
pub mod billing;
pub mod business_hours;
pub mod company;
pub mod contact;
pub mod coverage;
pub mod credential;
pub mod error;
pub mod identity;
pub mod ledger;
pub mod notification;
pub mod sequence;
pub mod template;
pub mod tenant;
pub mod user;
pub mod values;
pub mod workorder;

pub use error::{ErrorKind, HasErrorKind, ValidationError};
