//! The deployment's notification settings, from the environment. A tenant may set its own
//! SMTP server and SMS provider in the console (`Tenant::email_provider` / `sms_provider`);
//! without them it uses these.

use std::time::Duration;

use super::email::SmtpSettings;
use super::sms::TwilioSettings;
use crate::config::ConfigError;

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// `ST_SMTP_URL`, e.g. `smtp://user:pass@mail.example.com:587?tls=starttls`.
    pub smtp: Option<SmtpSettings>,
    /// `ST_SMTP_FROM` (required with `ST_SMTP_URL`): `Name <address>` or an address.
    pub smtp_from: Option<String>,
    /// `ST_TWILIO_ACCOUNT_SID`, `ST_TWILIO_AUTH_TOKEN`, `ST_TWILIO_FROM` (all or none) and
    /// `ST_TWILIO_BASE_URL` (default `https://api.twilio.com`).
    pub twilio: Option<TwilioSettings>,
    /// `ST_NOTIFY_RETRY_SECONDS` (default 60): the pause after a message's first failed
    /// attempt; it doubles with each further one, up to an hour, 8 attempts in all.
    pub retry_base_seconds: i64,
    /// `ST_NOTIFY_TIMEOUT_SECONDS` (default 30): how long one hand-over to a provider may take.
    pub send_timeout: Duration,
    /// `ST_NOTIFY_POLL_MS` (default 1000): how often the delivery worker looks for due
    /// messages when nothing wakes it.
    pub poll: Duration,
    /// Testing only: `ST_TEST_EXIT_AFTER_SEND=1` ends the process right after a provider took
    /// a message and before the outcome is recorded (the crash the delivery tests simulate).
    pub exit_after_send: bool,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            smtp: None,
            smtp_from: None,
            twilio: None,
            retry_base_seconds: 60,
            send_timeout: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            exit_after_send: false,
        }
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn error(var: &'static str, value: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        value: value.to_owned(),
        message: message.into(),
    }
}

/// A whole number from `range`, or `default` when unset.
fn number(
    name: &'static str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(value) => match value.trim().parse::<i64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(error(
                name,
                &value,
                format!(
                    "must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        },
    }
}

impl NotifyConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let smtp = match var("ST_SMTP_URL") {
            None => None,
            Some(url) => Some(SmtpSettings::parse(&url).map_err(|message| {
                error(
                    "ST_SMTP_URL",
                    "(not shown: it may hold a password)",
                    message,
                )
            })?),
        };
        let smtp_from = var("ST_SMTP_FROM").map(|v| v.trim().to_owned());
        if smtp.is_some() && smtp_from.is_none() {
            return Err(error(
                "ST_SMTP_FROM",
                "",
                "must be set with ST_SMTP_URL: the sender of the messages, e.g. \"Acme IT <support@acme.example>\"",
            ));
        }
        if let Some(from) = &smtp_from {
            check_mailbox(from).map_err(|message| error("ST_SMTP_FROM", from, message))?;
        }
        let twilio_vars = [
            ("ST_TWILIO_ACCOUNT_SID", var("ST_TWILIO_ACCOUNT_SID")),
            ("ST_TWILIO_AUTH_TOKEN", var("ST_TWILIO_AUTH_TOKEN")),
            ("ST_TWILIO_FROM", var("ST_TWILIO_FROM")),
        ];
        let missing: Vec<&str> = twilio_vars
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(name, _)| *name)
            .collect();
        let twilio = if missing.len() == twilio_vars.len() {
            None
        } else if !missing.is_empty() {
            return Err(error(
                missing[0],
                "",
                format!(
                    "Twilio needs ST_TWILIO_ACCOUNT_SID, ST_TWILIO_AUTH_TOKEN and ST_TWILIO_FROM together; missing: {}",
                    missing.join(", ")
                ),
            ));
        } else {
            let [(_, sid), (_, token), (_, from)] = twilio_vars;
            let settings = TwilioSettings {
                account_sid: sid.unwrap_or_default().trim().to_owned(),
                auth_token: token.unwrap_or_default().trim().to_owned(),
                from: from.unwrap_or_default().trim().to_owned(),
                base_url: var("ST_TWILIO_BASE_URL")
                    .map(|u| u.trim().trim_end_matches('/').to_owned())
                    .unwrap_or_else(|| super::sms::DEFAULT_TWILIO_BASE_URL.to_owned()),
            };
            settings
                .check()
                .map_err(|errors| error("ST_TWILIO_*", "", errors.to_string()))?;
            Some(settings)
        };
        Ok(Self {
            smtp,
            smtp_from,
            twilio,
            retry_base_seconds: number("ST_NOTIFY_RETRY_SECONDS", 60, 1..=3600)?,
            send_timeout: Duration::from_secs(
                number("ST_NOTIFY_TIMEOUT_SECONDS", 30, 1..=600)? as u64
            ),
            poll: Duration::from_millis(number("ST_NOTIFY_POLL_MS", 1000, 50..=60_000)? as u64),
            exit_after_send: var("ST_TEST_EXIT_AFTER_SEND").as_deref() == Some("1"),
        })
    }
}

/// Checks a sender such as `Acme IT <support@acme.example>` or `support@acme.example`.
pub fn check_mailbox(text: &str) -> Result<(), String> {
    text.trim()
        .parse::<lettre::message::Mailbox>()
        .map(|_| ())
        .map_err(|_| {
            "must be an email address, or a name and an address such as \"Acme IT <support@acme.example>\"".into()
        })
}
