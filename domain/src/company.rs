//! The customer company: registered, renamed, its monthly contract rate set, archived and
//! restored. Later issues extend it (status, addresses, contacts); events stay as they are.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::values::{Amount, CompanyName};
use crate::{ErrorKind, HasErrorKind};

/// The state of one company, folded from its events.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Company {
    pub registered: bool,
    pub name: String,
    pub monthly_rate: Option<Amount>,
    pub archived: bool,
}

/// What may be asked of a company.
#[derive(Debug, Clone, PartialEq)]
pub enum CompanyCommand {
    Register {
        name: CompanyName,
        monthly_rate: Amount,
    },
    Rename {
        name: CompanyName,
    },
    SetMonthlyRate {
        monthly_rate: Amount,
    },
    Archive,
    Restore,
    /// Several changes at once (the API's PATCH): all are decided against the same state and
    /// appended together, or none is. Fields equal to the current value change nothing.
    Update(CompanyChanges),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompanyChanges {
    pub name: Option<CompanyName>,
    pub monthly_rate: Option<Amount>,
    pub archived: Option<bool>,
}

/// What happened to a company. Stored forever: never change a variant's meaning; add a new
/// version with an upcaster instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CompanyEvent {
    CompanyRegistered {
        name: String,
        monthly_rate: Amount,
    },
    CompanyRenamed {
        name: String,
        previous_name: String,
    },
    MonthlyRateSet {
        monthly_rate: Amount,
        previous_rate: Amount,
    },
    CompanyArchived {},
    CompanyRestored {},
}

impl DomainEvent for CompanyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CompanyRegistered { .. } => "CompanyRegistered",
            Self::CompanyRenamed { .. } => "CompanyRenamed",
            Self::MonthlyRateSet { .. } => "MonthlyRateSet",
            Self::CompanyArchived { .. } => "CompanyArchived",
            Self::CompanyRestored { .. } => "CompanyRestored",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompanyError {
    #[error("this company is already registered")]
    AlreadyRegistered,
    #[error("company not found")]
    NotFound,
    #[error("this company is archived; restore it before changing it")]
    Archived,
    #[error("this company is already archived")]
    AlreadyArchived,
    #[error("this company is not archived")]
    NotArchived,
}

impl HasErrorKind for CompanyError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound => ErrorKind::NotFound,
            Self::AlreadyRegistered
            | Self::Archived
            | Self::AlreadyArchived
            | Self::NotArchived => ErrorKind::Conflict,
        }
    }
}

impl Company {
    fn require_registered(&self) -> Result<(), CompanyError> {
        if self.registered {
            Ok(())
        } else {
            Err(CompanyError::NotFound)
        }
    }

    fn require_active(&self) -> Result<(), CompanyError> {
        self.require_registered()?;
        if self.archived {
            Err(CompanyError::Archived)
        } else {
            Ok(())
        }
    }

    fn current_rate(&self) -> Amount {
        self.monthly_rate.unwrap_or(Amount::ZERO)
    }

    /// Decides the changes of an update one after the other, each against the state the
    /// previous one left, so restore + rename works and rename + archive works.
    fn decide(&self, command: CompanyCommand) -> Result<Vec<CompanyEvent>, CompanyError> {
        use CompanyEvent as E;
        Ok(match command {
            CompanyCommand::Register { name, monthly_rate } => {
                if self.registered {
                    return Err(CompanyError::AlreadyRegistered);
                }
                vec![E::CompanyRegistered {
                    name: name.as_str().to_owned(),
                    monthly_rate,
                }]
            }
            CompanyCommand::Rename { name } => {
                self.require_active()?;
                if name.as_str() == self.name {
                    vec![]
                } else {
                    vec![E::CompanyRenamed {
                        name: name.as_str().to_owned(),
                        previous_name: self.name.clone(),
                    }]
                }
            }
            CompanyCommand::SetMonthlyRate { monthly_rate } => {
                self.require_active()?;
                if monthly_rate == self.current_rate() {
                    vec![]
                } else {
                    vec![E::MonthlyRateSet {
                        monthly_rate,
                        previous_rate: self.current_rate(),
                    }]
                }
            }
            CompanyCommand::Archive => {
                self.require_registered()?;
                if self.archived {
                    return Err(CompanyError::AlreadyArchived);
                }
                vec![E::CompanyArchived {}]
            }
            CompanyCommand::Restore => {
                self.require_registered()?;
                if !self.archived {
                    return Err(CompanyError::NotArchived);
                }
                vec![E::CompanyRestored {}]
            }
            CompanyCommand::Update(changes) => {
                self.require_registered()?;
                let mut state = self.clone();
                let mut events = Vec::new();
                let mut step = |state: &mut Company, command| -> Result<(), CompanyError> {
                    for event in state.decide(command)? {
                        state.apply(event.clone());
                        events.push(event);
                    }
                    Ok(())
                };
                if changes.archived == Some(false) && state.archived {
                    step(&mut state, CompanyCommand::Restore)?;
                }
                if let Some(name) = changes.name {
                    step(&mut state, CompanyCommand::Rename { name })?;
                }
                if let Some(monthly_rate) = changes.monthly_rate {
                    step(&mut state, CompanyCommand::SetMonthlyRate { monthly_rate })?;
                }
                if changes.archived == Some(true) && !state.archived {
                    step(&mut state, CompanyCommand::Archive)?;
                }
                events
            }
        })
    }
}

impl Aggregate for Company {
    const TYPE: &'static str = "company";
    type Command = CompanyCommand;
    type Event = CompanyEvent;
    type Error = CompanyError;
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
        match event {
            CompanyEvent::CompanyRegistered { name, monthly_rate } => {
                self.registered = true;
                self.name = name;
                self.monthly_rate = Some(monthly_rate);
            }
            CompanyEvent::CompanyRenamed { name, .. } => self.name = name,
            CompanyEvent::MonthlyRateSet { monthly_rate, .. } => {
                self.monthly_rate = Some(monthly_rate)
            }
            CompanyEvent::CompanyArchived {} => self.archived = true,
            CompanyEvent::CompanyRestored {} => self.archived = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Company>;

    fn name(s: &str) -> CompanyName {
        CompanyName::parse(s).unwrap()
    }
    fn rate(s: &str) -> Amount {
        Amount::parse("monthly_rate", s).unwrap()
    }
    fn registered() -> CompanyEvent {
        CompanyEvent::CompanyRegistered {
            name: "Acme".into(),
            monthly_rate: rate("500.00"),
        }
    }

    #[test]
    fn registers_a_new_company() {
        Given::with(())
            .given_no_previous_events()
            .when(CompanyCommand::Register {
                name: name("Acme"),
                monthly_rate: rate("500"),
            })
            .then_expect_events(vec![registered()]);
    }

    #[test]
    fn refuses_to_register_twice() {
        Given::with(())
            .given(vec![registered()])
            .when(CompanyCommand::Register {
                name: name("Acme"),
                monthly_rate: rate("1"),
            })
            .then_expect_error(CompanyError::AlreadyRegistered);
    }

    #[test]
    fn commands_on_a_missing_company_are_not_found() {
        for command in [
            CompanyCommand::Rename { name: name("X") },
            CompanyCommand::Archive,
            CompanyCommand::Restore,
            CompanyCommand::Update(CompanyChanges::default()),
        ] {
            Given::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(CompanyError::NotFound);
        }
    }

    #[test]
    fn renames_and_records_the_previous_name() {
        Given::with(())
            .given(vec![registered()])
            .when(CompanyCommand::Rename {
                name: name("Acme Corp"),
            })
            .then_expect_events(vec![CompanyEvent::CompanyRenamed {
                name: "Acme Corp".into(),
                previous_name: "Acme".into(),
            }]);
    }

    #[test]
    fn renaming_to_the_same_name_appends_nothing() {
        Given::with(())
            .given(vec![registered()])
            .when(CompanyCommand::Rename { name: name("Acme") })
            .then_expect_events(vec![]);
    }

    #[test]
    fn sets_the_monthly_rate_with_the_previous_one() {
        Given::with(())
            .given(vec![registered()])
            .when(CompanyCommand::SetMonthlyRate {
                monthly_rate: rate("650.5"),
            })
            .then_expect_events(vec![CompanyEvent::MonthlyRateSet {
                monthly_rate: rate("650.50"),
                previous_rate: rate("500.00"),
            }]);
    }

    #[test]
    fn an_archived_company_cannot_be_changed_until_restored() {
        Given::with(())
            .given(vec![registered(), CompanyEvent::CompanyArchived {}])
            .when(CompanyCommand::Rename { name: name("New") })
            .then_expect_error(CompanyError::Archived);
        Given::with(())
            .given(vec![registered(), CompanyEvent::CompanyArchived {}])
            .when(CompanyCommand::Archive)
            .then_expect_error(CompanyError::AlreadyArchived);
        Given::with(())
            .given(vec![registered(), CompanyEvent::CompanyArchived {}])
            .when(CompanyCommand::Restore)
            .then_expect_events(vec![CompanyEvent::CompanyRestored {}]);
        Given::with(())
            .given(vec![registered()])
            .when(CompanyCommand::Restore)
            .then_expect_error(CompanyError::NotArchived);
    }

    #[test]
    fn update_restores_before_and_archives_after_other_changes() {
        Given::with(())
            .given(vec![registered(), CompanyEvent::CompanyArchived {}])
            .when(CompanyCommand::Update(CompanyChanges {
                name: Some(name("Acme 2")),
                monthly_rate: Some(rate("10")),
                archived: Some(false),
            }))
            .then_expect_events(vec![
                CompanyEvent::CompanyRestored {},
                CompanyEvent::CompanyRenamed {
                    name: "Acme 2".into(),
                    previous_name: "Acme".into(),
                },
                CompanyEvent::MonthlyRateSet {
                    monthly_rate: rate("10.00"),
                    previous_rate: rate("500.00"),
                },
            ]);
        Given::with(())
            .given(vec![registered()])
            .when(CompanyCommand::Update(CompanyChanges {
                name: Some(name("Gone")),
                monthly_rate: None,
                archived: Some(true),
            }))
            .then_expect_events(vec![
                CompanyEvent::CompanyRenamed {
                    name: "Gone".into(),
                    previous_name: "Acme".into(),
                },
                CompanyEvent::CompanyArchived {},
            ]);
    }

    #[test]
    fn update_of_an_archived_company_without_restore_is_refused_whole() {
        Given::with(())
            .given(vec![registered(), CompanyEvent::CompanyArchived {}])
            .when(CompanyCommand::Update(CompanyChanges {
                name: Some(name("X")),
                ..Default::default()
            }))
            .then_expect_error(CompanyError::Archived);
    }

    #[test]
    fn update_with_nothing_new_appends_nothing() {
        Given::with(())
            .given(vec![registered()])
            .when(CompanyCommand::Update(CompanyChanges {
                name: Some(name("Acme")),
                monthly_rate: Some(rate("500")),
                archived: Some(false),
            }))
            .then_expect_events(vec![]);
    }

    #[test]
    fn events_round_trip_through_json_with_money_as_strings() {
        let event = CompanyEvent::MonthlyRateSet {
            monthly_rate: rate("650.5"),
            previous_rate: rate("0"),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"MonthlyRateSet": {"monthly_rate": "650.50", "previous_rate": "0.00"}})
        );
        assert_eq!(serde_json::from_value::<CompanyEvent>(json).unwrap(), event);
    }
}
