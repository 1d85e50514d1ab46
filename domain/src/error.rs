//! How domain errors are classified, so every layer above maps them the same way.

use serde::Serialize;

/// The kind of a refused command, which decides the HTTP status the web layer answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input breaks a rule about its own shape (422).
    Invalid,
    /// The command does not fit the aggregate's current state (409).
    Conflict,
    /// The aggregate does not exist (404).
    NotFound,
}

/// Implemented by every aggregate's error type.
pub trait HasErrorKind {
    fn kind(&self) -> ErrorKind;
}

/// A value that failed validation, naming the field so a form can show the message next to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}
