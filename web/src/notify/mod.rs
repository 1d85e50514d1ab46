//! Notifications (issue 6): messages to customers and staff, driven by events.
//!
//! - `consumer`: the outbox consumer, reading the log and queuing a notification for each
//!   person an event concerns (its own checkpoint `notifier`).
//! - `queue`: rendering a tenant's template and appending `NotificationQueued`.
//! - `deliver`: the delivery worker: attempts, outcomes, retries with back-off.
//! - `email`: SMTP settings (`ST_SMTP_URL`) and sending over SMTP (lettre).
//! - `sms`: Twilio's Messages API, a generic HTTP SMS gateway, and Twilio's request signatures.
//! - `ops`: what the console and the API share (resend, test messages, templates, providers,
//!   a contact's preferences).
//! - `config`: the deployment's settings from the environment.

pub mod api;
pub mod config;
pub mod consumer;
pub mod deliver;
pub mod email;
pub mod ops;
pub mod pages;
pub mod queue;
pub mod sms;
pub mod webhook;

use projections::runner::Wakeups;
use tokio::task::JoinHandle;

use crate::state::AppState;

/// Connections the notifier keeps for its locks (consumer and delivery worker).
pub const LOCK_CONNECTIONS: u32 = 2;

/// Starts the consumer and the delivery worker. They run until the process ends.
pub fn start(state: AppState, wakeups: Wakeups) -> Vec<JoinHandle<()>> {
    let poll = state.settings().notify.poll;
    vec![
        tokio::spawn(consumer::run(state.clone(), wakeups.clone(), poll)),
        tokio::spawn(deliver::run(state, wakeups)),
    ]
}

/// Why a provider did not take a message. `permanent` failures are not retried (a refused
/// address, a rejected number); the others (connection refused, timeouts, 4xx SMTP replies,
/// HTTP 429/5xx) are retried with back-off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub permanent: bool,
    pub message: String,
}

impl SendError {
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            message: message.into(),
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            permanent: false,
            message: message.into(),
        }
    }
}
