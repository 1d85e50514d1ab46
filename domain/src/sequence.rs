//! A per-tenant number sequence without gaps (asset tags now, invoice numbers later).
//!
//! Each number is one event of the sequence's stream, at the sequence number equal to the
//! number itself, appended in the same transaction as the event of the record that receives
//! it (`commands::store::EventStore::create_numbered`). Two writers wanting the same number
//! collide on the stream's `(aggregate, sequence)` key, so numbers are unique; a number is
//! only ever stored together with its record, so there are no gaps.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The stream id of a tenant's sequence called `name` (`asset-tag`).
pub fn sequence_id(tenant_id: Uuid, name: &str) -> String {
    format!("{tenant_id}:{name}")
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumberSequence {
    pub last: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SequenceCommand {
    Issue {
        aggregate_type: String,
        aggregate_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SequenceEvent {
    /// `number` went to the record `aggregate_type`/`aggregate_id`.
    NumberIssued {
        number: u64,
        aggregate_type: String,
        aggregate_id: String,
    },
}

impl DomainEvent for SequenceEvent {
    fn event_type(&self) -> String {
        "NumberIssued".to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {}

impl crate::HasErrorKind for SequenceError {
    fn kind(&self) -> crate::ErrorKind {
        match *self {}
    }
}

impl NumberSequence {
    pub fn next(&self) -> u64 {
        self.last + 1
    }
}

impl Aggregate for NumberSequence {
    const TYPE: &'static str = "sequence";
    type Command = SequenceCommand;
    type Event = SequenceEvent;
    type Error = SequenceError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let SequenceCommand::Issue {
            aggregate_type,
            aggregate_id,
        } = command;
        let number = self.next();
        sink.write(
            SequenceEvent::NumberIssued {
                number,
                aggregate_type,
                aggregate_id,
            },
            self,
        )
        .await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        let SequenceEvent::NumberIssued { number, .. } = event;
        self.last = number;
    }
}
