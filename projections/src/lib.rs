//! The read side: the catch-up projection runner, rebuild and verification of projections,
//! the read-model tables' projections, and the queries the web layer reads.
//!
//! A projection is a name, a version, the tables it owns and a batch handler. The runner
//! feeds it the log in `(tx_id, global_position)` order through the guarded reader and
//! commits its rows together with its checkpoint.

pub mod activity;
pub mod assets;
pub mod companies;
pub mod contacts;
pub mod contracts;
pub mod credentials;
pub mod event;
pub mod history;
mod keyed;
pub mod notifications;
pub mod projection;
pub mod rebuild;
pub mod receivables;
pub mod runner;
pub mod search;
pub mod status;
pub mod users;
pub mod wait;
pub mod work_orders;

use std::sync::Arc;

pub use event::{Position, StoredEvent};
pub use projection::{ApplyError, Projection, Tables};

/// Every projection of the service, in the order they are started.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(companies::CompaniesProjection),
        Arc::new(users::UsersProjection),
        Arc::new(contacts::ContactsProjection),
        Arc::new(assets::AssetsProjection),
        Arc::new(work_orders::WorkOrdersProjection),
        Arc::new(contracts::ContractsProjection),
        Arc::new(credentials::CredentialsProjection),
        Arc::new(notifications::NotificationsProjection),
        Arc::new(receivables::ReceivablesProjection),
        Arc::new(search::SearchProjection),
        Arc::new(activity::ActivityProjection),
    ]
}

/// The projection named `name`.
pub fn find(name: &str) -> Option<Arc<dyn Projection>> {
    all().into_iter().find(|p| p.name() == name)
}
