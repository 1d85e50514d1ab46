//! Pieces the subcommands share: the usage-error type, upcasting by aggregate-type name,
//! timestamps.

use chrono::{DateTime, SecondsFormat, Utc};
use commands::registry::{AggregateKind, AGGREGATES};
use cqrs_es::persist::SerializedEvent;

/// A usage or input error: printed as one line, exit code 2.
#[derive(Debug)]
pub struct Usage(pub String);

impl Usage {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// The registry entry of `name`, or a usage error listing the known aggregate types.
pub fn aggregate_kind(name: &str) -> Result<&'static AggregateKind, Usage> {
    commands::registry::find(name).ok_or_else(|| {
        Usage::new(format!(
            "unknown aggregate type {name:?} (known: {})",
            known_aggregate_types()
        ))
    })
}

pub fn known_aggregate_types() -> String {
    AGGREGATES
        .iter()
        .map(|k| k.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Applies the upcasters of the event's aggregate type (none known: unchanged).
pub fn upcast(event: SerializedEvent) -> SerializedEvent {
    match commands::registry::find(&event.aggregate_type) {
        Some(kind) => (kind.upcast)(event),
        None => event,
    }
}

/// RFC 3339 in UTC with microseconds (the precision of `timestamptz`).
pub fn rfc3339(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_aggregate_types_list_the_known_ones() {
        let error = aggregate_kind("nope").err().unwrap();
        assert!(error.0.contains("\"nope\""), "{error}");
        assert!(error.0.contains("company"), "{error}");
    }
}
