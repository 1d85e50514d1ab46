//! The aggregate types the tools know by name (`replay-tools history company <id>`), with what
//! they need to fold an aggregate's events into its state.

use cqrs_es::persist::SerializedEvent;

use crate::store::{decode, upcast, StoredAggregate};

/// One aggregate type, type-erased for the CLI and `verify`.
pub struct AggregateKind {
    pub name: &'static str,
    /// Applies this type's upcasters to one stored event.
    pub upcast: fn(SerializedEvent) -> SerializedEvent,
    /// Decodes one event (upcasters applied), or says why it does not.
    pub check: fn(SerializedEvent) -> Result<(), String>,
    /// Folds events into the aggregate's state, as JSON.
    pub fold: fn(Vec<SerializedEvent>) -> Result<serde_json::Value, String>,
}

fn upcast_one<A: StoredAggregate>(event: SerializedEvent) -> SerializedEvent {
    upcast(event, &A::upcasters())
}

fn check<A: StoredAggregate>(event: SerializedEvent) -> Result<(), String> {
    decode::<A::Event>(&upcast(event, &A::upcasters())).map(|_| ())
}

fn fold<A: StoredAggregate>(events: Vec<SerializedEvent>) -> Result<serde_json::Value, String> {
    let upcasters = A::upcasters();
    let mut state = A::default();
    for event in events {
        state.apply(decode::<A::Event>(&upcast(event, &upcasters))?);
    }
    let mut value = serde_json::to_value(&state).map_err(|e| e.to_string())?;
    redact_secrets(&mut value);
    Ok(value)
}

/// Keys whose values are credentials' derivatives (argon2 hashes, token digests): tools that
/// print states or payloads for people show `"[redacted]"` instead.
pub const SECRET_KEYS: &[&str] = &["password_hash", "token_digest"];

/// Replaces the values of `SECRET_KEYS`, at any depth.
pub fn redact_secrets(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if SECRET_KEYS.contains(&key.as_str()) && !inner.is_null() {
                    *inner = serde_json::Value::String("[redacted]".into());
                } else {
                    redact_secrets(inner);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_secrets),
        _ => {}
    }
}

const fn kind<A: StoredAggregate>() -> AggregateKind {
    AggregateKind {
        name: A::TYPE,
        upcast: upcast_one::<A>,
        check: check::<A>,
        fold: fold::<A>,
    }
}

/// Every aggregate type stored in the log.
pub const AGGREGATES: &[AggregateKind] = &[
    kind::<domain::company::Company>(),
    kind::<domain::asset::Asset>(),
    kind::<domain::contact::Contact>(),
    kind::<domain::credential::Credential>(),
    kind::<domain::sequence::NumberSequence>(),
    kind::<domain::tenant::Tenant>(),
    kind::<domain::user::User>(),
    kind::<domain::workorder::WorkOrder>(),
    kind::<domain::notification::Notification>(),
    kind::<domain::ledger::Ledger>(),
];

pub fn find(name: &str) -> Option<&'static AggregateKind> {
    AGGREGATES.iter().find(|k| k.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let mut v = serde_json::json!({
            "PasswordSet": {"password_hash": "$argon2id$x"},
            "api_tokens": {"a": {"name": "n", "token_digest": "abc"}},
            "reset": null,
            "invitation": {"token_digest": "d", "expires_at": "t"}
        });
        redact_secrets(&mut v);
        let text = v.to_string();
        assert!(!text.contains("argon2") && !text.contains("abc") && !text.contains("\"d\""));
        assert_eq!(v["api_tokens"]["a"]["name"], "n");
        assert_eq!(v["invitation"]["expires_at"], "t");
    }
}
