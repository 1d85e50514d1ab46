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
    serde_json::to_value(&state).map_err(|e| e.to_string())
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
    kind::<domain::tenant::Tenant>(),
    kind::<domain::user::User>(),
];

pub fn find(name: &str) -> Option<&'static AggregateKind> {
    AGGREGATES.iter().find(|k| k.name == name)
}
