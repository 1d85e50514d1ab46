//! SMS (issue 6): Twilio's Messages API, a generic HTTP gateway for local SMS providers, and
//! Twilio's request signatures (for the delivery-status callbacks Twilio posts back).
//!
//! Sending never retries by itself: it answers `Ok(SmsSent)` or a [`SendError`] whose
//! `permanent` flag tells the caller whether trying again can help (HTTP 429/5xx, timeouts,
//! refused connections and refused credentials are transient; a refused number is not).
//! Secrets (Twilio's auth token, the gateway's auth header value) never appear in error
//! messages nor in `Debug` output.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::SendError;

/// Where Twilio's REST API lives.
pub const DEFAULT_TWILIO_BASE_URL: &str = "https://api.twilio.com";

/// How long one request to a provider may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a provider's answer goes into an error message.
const SNIPPET_CHARS: usize = 200;

/// The placeholders templates may use.
pub const PLACEHOLDERS: [&str; 4] = ["to", "from", "body", "id"];

/// A message the provider took.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SmsSent {
    /// The provider's id of the message (Twilio: its `SM…` sid).
    pub message_id: String,
    /// The provider's status of the message when it answered (Twilio: `queued`, `accepted`…).
    pub status: String,
}

/// One refused setting: the field's name and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingsError {
    pub field: &'static str,
    pub message: String,
}

impl SettingsError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Every refused setting of a `check()`, in field order (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsErrors(pub Vec<SettingsError>);

impl SettingsErrors {
    /// The error about `field`, if any.
    pub fn field(&self, field: &str) -> Option<&SettingsError> {
        self.0.iter().find(|e| e.field == field)
    }

    fn into_result(errors: Vec<SettingsError>) -> Result<(), Self> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Self(errors))
        }
    }
}

impl fmt::Display for SettingsErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SettingsErrors {}

// ---------------------------------------------------------------------------------------------
// Twilio
// ---------------------------------------------------------------------------------------------

/// Twilio's account and sender. `from` is an E.164 number (`+15551234567`) or a Messaging
/// Service SID (`MG…`, sent as `MessagingServiceSid`).
#[derive(Clone, PartialEq, Eq)]
pub struct TwilioSettings {
    pub account_sid: String,
    pub auth_token: String,
    pub from: String,
    /// Without a trailing slash; [`DEFAULT_TWILIO_BASE_URL`] unless testing against a fake.
    pub base_url: String,
}

impl Default for TwilioSettings {
    fn default() -> Self {
        Self {
            account_sid: String::new(),
            auth_token: String::new(),
            from: String::new(),
            base_url: DEFAULT_TWILIO_BASE_URL.to_owned(),
        }
    }
}

impl fmt::Debug for TwilioSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSettings")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &redacted(&self.auth_token))
            .field("from", &self.from)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl TwilioSettings {
    /// Settings against Twilio itself.
    pub fn new(
        account_sid: impl Into<String>,
        auth_token: impl Into<String>,
        from: impl Into<String>,
    ) -> Self {
        Self {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
            from: from.into(),
            base_url: DEFAULT_TWILIO_BASE_URL.to_owned(),
        }
    }

    /// The same settings against another base URL (a fake, a regional edge), trailing slashes
    /// dropped.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into().trim_end_matches('/').to_owned();
        self
    }

    /// Whether `from` names a Messaging Service rather than a number.
    pub fn uses_messaging_service(&self) -> bool {
        self.from.starts_with("MG")
    }

    /// `{base}/2010-04-01/Accounts/{sid}/Messages.json`.
    pub fn messages_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base_url.trim_end_matches('/'),
            self.account_sid
        )
    }

    /// Every refused field, named: `account_sid` (`AC` and 32 hex digits), `auth_token`
    /// (present, no spaces), `from` (E.164: `+` and 8 to 15 digits, or `MG` and 32 hex
    /// digits), `base_url` (http or https).
    pub fn check(&self) -> Result<(), SettingsErrors> {
        let mut errors = Vec::new();
        if !is_sid(&self.account_sid, "AC") {
            errors.push(SettingsError::new(
                "account_sid",
                "must be the account SID: AC followed by 32 hexadecimal digits",
            ));
        }
        if self.auth_token.is_empty() {
            errors.push(SettingsError::new("auth_token", "is required"));
        } else if self
            .auth_token
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            errors.push(SettingsError::new(
                "auth_token",
                "must not contain spaces or line breaks",
            ));
        }
        if self.from.starts_with("MG") {
            if !is_sid(&self.from, "MG") {
                errors.push(SettingsError::new(
                    "from",
                    "a Messaging Service SID is MG followed by 32 hexadecimal digits",
                ));
            }
        } else if !is_e164(&self.from) {
            errors.push(SettingsError::new(
                "from",
                "must be a phone number in E.164 form (+ and 8 to 15 digits, e.g. +15551234567) \
                 or a Messaging Service SID (MG…)",
            ));
        }
        if let Err(message) = check_http_url(&self.base_url, false) {
            errors.push(SettingsError::new("base_url", message));
        }
        SettingsErrors::into_result(errors)
    }
}

/// `prefix` and 32 hexadecimal digits.
fn is_sid(value: &str, prefix: &str) -> bool {
    value
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `+` and 8 to 15 digits, the first not 0.
pub fn is_e164(value: &str) -> bool {
    value.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

fn check_http_url(url: &str, query_allowed: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "must be an http or https URL, not {}:",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("has no host".to_owned());
    }
    if !query_allowed && parsed.query().is_some() {
        return Err("must not have a query string".to_owned());
    }
    if parsed.fragment().is_some() {
        return Err("must not have a #fragment".to_owned());
    }
    Ok(())
}

fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() {
        "<empty>"
    } else {
        "<redacted>"
    }
}

#[derive(serde::Deserialize)]
struct TwilioMessage {
    sid: Option<String>,
    status: Option<String>,
}

#[derive(serde::Deserialize)]
struct TwilioError {
    code: Option<serde_json::Value>,
    message: Option<String>,
}

impl TwilioError {
    fn parse(body: &str) -> Option<Self> {
        serde_json::from_str::<Self>(body)
            .ok()
            .filter(|e| e.code.is_some() || e.message.is_some())
    }

    fn code_text(&self) -> Option<String> {
        self.code.as_ref().map(|c| match c {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// `code 21211: The 'To' number …` or what there is of it.
    fn describe(&self) -> String {
        match (self.code_text(), &self.message) {
            (Some(code), Some(message)) => format!("code {code}: {message}"),
            (Some(code), None) => format!("code {code}"),
            (None, Some(message)) => message.clone(),
            (None, None) => String::new(),
        }
    }
}

/// Sends `body` to `to` (E.164) through Twilio's Messages API, asking Twilio to post status
/// changes to `status_callback` when given.
pub async fn send_twilio(
    client: &reqwest::Client,
    settings: &TwilioSettings,
    to: &str,
    body: &str,
    status_callback: Option<&str>,
) -> Result<SmsSent, SendError> {
    let sender = if settings.uses_messaging_service() {
        "MessagingServiceSid"
    } else {
        "From"
    };
    let mut form: Vec<(&str, &str)> = vec![("To", to), (sender, &settings.from), ("Body", body)];
    if let Some(callback) = status_callback {
        form.push(("StatusCallback", callback));
    }
    let url = settings.messages_url();
    let request = client
        .post(&url)
        .basic_auth(&settings.account_sid, Some(&settings.auth_token))
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&form);
    let result = match exchange(request).await {
        Err(failure) => Err(SendError::transient(format!(
            "Twilio could not be reached at {}: {failure}",
            settings.base_url
        ))),
        Ok((status, text)) => classify_twilio(status, &text),
    };
    result.map_err(|e| scrub(e, &[&settings.auth_token]))
}

/// What Twilio's answer means: 2xx took the message; 401/403 refused the credentials
/// (transient: fixing the settings makes it work); 408/429/5xx are transient; other 4xx
/// refused the message for good.
fn classify_twilio(status: u16, body: &str) -> Result<SmsSent, SendError> {
    match status {
        200..=299 => {
            let parsed = serde_json::from_str::<TwilioMessage>(body).ok();
            let (sid, state) = parsed.map_or((None, None), |m| (m.sid, m.status));
            let message_id = sid.filter(|s| !s.is_empty()).unwrap_or_else(|| {
                tracing::warn!(status, "Twilio took the message without giving its sid");
                status_line(status)
            });
            Ok(SmsSent {
                message_id,
                status: state.unwrap_or_else(|| "queued".to_owned()),
            })
        }
        401 | 403 => {
            let detail = TwilioError::parse(body)
                .map(|e| format!(", {}", e.describe()))
                .unwrap_or_default();
            Err(SendError::transient(format!(
                "Twilio refused the account SID / auth token (HTTP {status}{detail}): \
                 check the Twilio settings"
            )))
        }
        408 | 429 => Err(SendError::transient(format!(
            "Twilio asked to slow down or try again (HTTP {status}){}",
            detail_suffix(body)
        ))),
        500..=599 => Err(SendError::transient(format!(
            "Twilio failed (HTTP {status}){}",
            detail_suffix(body)
        ))),
        400..=499 => {
            let error = TwilioError::parse(body);
            let code = error.as_ref().and_then(TwilioError::code_text);
            let message = error.and_then(|e| e.message).filter(|m| !m.is_empty());
            Err(SendError::permanent(match (code, message) {
                (Some(code), Some(message)) => {
                    format!("Twilio refused the message (code {code}): {message}")
                }
                (Some(code), None) => format!("Twilio refused the message (code {code})"),
                (None, Some(message)) => {
                    format!("Twilio refused the message (HTTP {status}): {message}")
                }
                (None, None) => format!(
                    "Twilio refused the message (HTTP {status}): {}",
                    snippet(body)
                ),
            }))
        }
        _ => Err(SendError::transient(format!(
            "Twilio gave an unexpected answer (HTTP {status}){}",
            detail_suffix(body)
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Generic HTTP gateway
// ---------------------------------------------------------------------------------------------

/// How the gateway is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The template is the query string.
    Get,
    /// The template is the body.
    #[default]
    Post,
}

/// What a POST's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    /// `key=value&key=value` (`application/x-www-form-urlencoded`).
    #[default]
    Form,
    /// A JSON document (`application/json`).
    Json,
}

/// A local SMS provider's HTTP API.
///
/// `template` is the body (for `Get`, the query string) with the placeholders `{to}`,
/// `{from}`, `{body}` and `{id}` (our notification id):
/// - `Form` and `Get`: `key=value&key=value`, written plainly (not url-encoded: keys and
///   values are encoded when sent, after substitution; a `+` stays a `+`); placeholders go in
///   values; blanks around each pair are dropped, so pairs may sit on lines of their own;
/// - `Json`: a JSON document whose string values may hold placeholders; the result is
///   serialized again, so whatever the message holds is escaped properly.
#[derive(Clone, PartialEq, Eq)]
pub struct GatewaySettings {
    pub url: String,
    pub method: Method,
    pub body: BodyFormat,
    pub template: String,
    /// One header line, `Authorization: Bearer xyz` or `X-Api-Key: abc`.
    pub auth_header: Option<String>,
    pub from: String,
}

impl fmt::Debug for GatewaySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = self
            .auth_header
            .as_deref()
            .map(|line| match line.split_once(':') {
                Some((name, value)) => format!("{}: {}", name.trim(), redacted(value.trim())),
                None => redacted(line).to_owned(),
            });
        f.debug_struct("GatewaySettings")
            .field("url", &self.url)
            .field("method", &self.method)
            .field("body", &self.body)
            .field("template", &self.template)
            .field("auth_header", &auth)
            .field("from", &self.from)
            .finish()
    }
}

/// The values of the placeholders for one message.
struct Values<'a> {
    to: &'a str,
    from: &'a str,
    body: &'a str,
    id: &'a str,
}

impl Values<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        match name {
            "to" => Some(self.to),
            "from" => Some(self.from),
            "body" => Some(self.body),
            "id" => Some(self.id),
            _ => None,
        }
    }
}

/// What a rendered template is sent as.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rendered {
    Query(String),
    Form(String),
    Json(String),
}

impl GatewaySettings {
    /// Every refused field, named: `url` (http or https), `template` (parses as the method
    /// and body format want, no unknown placeholders), `auth_header` (`Name: value`),
    /// `method` (a GET has no JSON body).
    pub fn check(&self) -> Result<(), SettingsErrors> {
        let mut errors = Vec::new();
        if let Err(message) = check_http_url(&self.url, self.method == Method::Get) {
            errors.push(SettingsError::new("url", message));
        }
        if self.method == Method::Get && self.body == BodyFormat::Json {
            errors.push(SettingsError::new(
                "method",
                "a GET sends the template as its query string: use POST for a JSON body",
            ));
        } else if let Err(message) = self.check_template() {
            errors.push(SettingsError::new("template", message));
        }
        if let Some(line) = &self.auth_header {
            if let Err(message) = parse_header_line(line) {
                errors.push(SettingsError::new("auth_header", message));
            }
        }
        SettingsErrors::into_result(errors)
    }

    fn check_template(&self) -> Result<(), String> {
        let mut unknown = Vec::new();
        match self.body_kind() {
            BodyFormat::Form => {
                let pairs = form_pairs(&self.template)?;
                for (key, value) in &pairs {
                    if !placeholders(key).is_empty() {
                        return Err(format!("placeholders go in values, not in the key `{key}`"));
                    }
                    unknown.extend(unknown_placeholders(value));
                }
            }
            BodyFormat::Json => {
                let document: serde_json::Value = serde_json::from_str(&self.template)
                    .map_err(|e| format!("is not JSON ({e})"))?;
                walk_strings(&document, &mut |s| unknown.extend(unknown_placeholders(s)));
            }
        }
        if unknown.is_empty() {
            return Ok(());
        }
        unknown.sort();
        unknown.dedup();
        let names: Vec<String> = unknown.iter().map(|n| format!("{{{n}}}")).collect();
        Err(format!(
            "unknown placeholder{} {}: use {{to}}, {{from}}, {{body}} or {{id}}",
            if names.len() > 1 { "s" } else { "" },
            names.join(", ")
        ))
    }

    /// The body format the template is written in (a GET's query string is a form).
    fn body_kind(&self) -> BodyFormat {
        match self.method {
            Method::Get => BodyFormat::Form,
            Method::Post => self.body,
        }
    }

    /// The template with the placeholders replaced and encoded: the query string of a GET,
    /// the body of a POST.
    pub fn render(&self, id: &str, to: &str, body: &str) -> Result<String, SettingsError> {
        Ok(match self.render_request(id, to, body)? {
            Rendered::Query(s) | Rendered::Form(s) | Rendered::Json(s) => s,
        })
    }

    fn render_request(&self, id: &str, to: &str, body: &str) -> Result<Rendered, SettingsError> {
        let values = Values {
            to,
            from: &self.from,
            body,
            id,
        };
        let template_error = |message: String| SettingsError::new("template", message);
        match self.body_kind() {
            BodyFormat::Form => {
                let pairs = form_pairs(&self.template).map_err(template_error)?;
                let mut out = String::new();
                for (key, value) in pairs {
                    if !out.is_empty() {
                        out.push('&');
                    }
                    form_encode(key, &mut out);
                    out.push('=');
                    form_encode(&substitute(value, &values), &mut out);
                }
                Ok(match self.method {
                    Method::Get => Rendered::Query(out),
                    Method::Post => Rendered::Form(out),
                })
            }
            BodyFormat::Json => {
                let mut document: serde_json::Value = serde_json::from_str(&self.template)
                    .map_err(|e| template_error(format!("is not JSON ({e})")))?;
                substitute_json(&mut document, &values);
                Ok(Rendered::Json(document.to_string()))
            }
        }
    }
}

/// The `key=value` pairs of a form template, blanks around each pair dropped.
fn form_pairs(template: &str) -> Result<Vec<(&str, &str)>, String> {
    let mut pairs = Vec::new();
    for segment in template.split('&') {
        let segment = segment.trim();
        if segment.is_empty() {
            continue;
        }
        let Some((key, value)) = segment.split_once('=') else {
            return Err(format!("`{segment}` is not key=value"));
        };
        if key.trim().is_empty() {
            return Err(format!("`{segment}` has no key"));
        }
        pairs.push((key.trim(), value));
    }
    if pairs.is_empty() {
        return Err("is empty: give key=value pairs, e.g. to={to}&text={body}".to_owned());
    }
    Ok(pairs)
}

/// Whether `name` can be a placeholder's name (`[A-Za-z_][A-Za-z0-9_]*`).
fn is_placeholder_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The `{name}` spans of `text`: (start, end, name), end exclusive. A brace not closing a
/// name is plain text.
fn placeholders(text: &str) -> Vec<(usize, usize, &str)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find('{').map(|i| i + from) {
        match text[open + 1..].find(['{', '}']).map(|i| i + open + 1) {
            Some(close)
                if text.as_bytes()[close] == b'}'
                    && is_placeholder_name(&text[open + 1..close]) =>
            {
                found.push((open, close + 1, &text[open + 1..close]));
                from = close + 1;
            }
            _ => from = open + 1,
        }
    }
    found
}

fn unknown_placeholders(text: &str) -> Vec<String> {
    placeholders(text)
        .into_iter()
        .filter(|(_, _, name)| !PLACEHOLDERS.contains(name))
        .map(|(_, _, name)| name.to_owned())
        .collect()
}

/// `text` with its placeholders replaced, in one pass (a value holding `{to}` stays so);
/// unknown ones are left as they are.
fn substitute(text: &str, values: &Values<'_>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end, name) in placeholders(text) {
        if let Some(value) = values.get(name) {
            out.push_str(&text[last..start]);
            out.push_str(value);
            last = end;
        }
    }
    out.push_str(&text[last..]);
    out
}

fn walk_strings(value: &serde_json::Value, f: &mut impl FnMut(&str)) {
    match value {
        serde_json::Value::String(s) => f(s),
        serde_json::Value::Array(items) => items.iter().for_each(|v| walk_strings(v, f)),
        serde_json::Value::Object(map) => map.values().for_each(|v| walk_strings(v, f)),
        _ => {}
    }
}

fn substitute_json(value: &mut serde_json::Value, values: &Values<'_>) {
    match value {
        serde_json::Value::String(s) => *s = substitute(s, values),
        serde_json::Value::Array(items) => {
            items.iter_mut().for_each(|v| substitute_json(v, values))
        }
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| substitute_json(v, values)),
        _ => {}
    }
}

/// `application/x-www-form-urlencoded` encoding, a space as `%20` (which every decoder reads
/// as a space, in a query string as in a body).
fn form_encode(text: &str, out: &mut String) {
    use fmt::Write as _;
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(byte as char)
            }
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
}

/// `Name: value` → a header.
fn parse_header_line(
    line: &str,
) -> Result<(reqwest::header::HeaderName, reqwest::header::HeaderValue), String> {
    let Some((name, value)) = line.split_once(':') else {
        return Err("must be one header line, Name: value (e.g. Authorization: Bearer …)".into());
    };
    let name = reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("`{}` is not a header name", name.trim()))?;
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("the {name} header has no value"));
    }
    let mut value = reqwest::header::HeaderValue::from_str(value)
        .map_err(|_| format!("the {name} header's value has characters a header cannot hold"))?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// Sends `body` to `to` through the gateway; `id` is our notification's id (`{id}`).
pub async fn send_gateway(
    client: &reqwest::Client,
    settings: &GatewaySettings,
    id: &str,
    to: &str,
    body: &str,
) -> Result<SmsSent, SendError> {
    // The secret part of the auth header, kept out of error messages.
    let secret = settings
        .auth_header
        .as_deref()
        .and_then(|line| line.split_once(':'))
        .map(|(_, value)| value.trim())
        .unwrap_or_default();
    send_gateway_inner(client, settings, id, to, body)
        .await
        .map_err(|e| scrub(e, &[secret]))
}

async fn send_gateway_inner(
    client: &reqwest::Client,
    settings: &GatewaySettings,
    id: &str,
    to: &str,
    body: &str,
) -> Result<SmsSent, SendError> {
    // Settings are checked when saved; a bad one here is fixable, so retrying makes sense.
    let invalid = |e: &dyn fmt::Display| {
        SendError::transient(format!("the SMS gateway settings are invalid: {e}"))
    };
    let request = match settings
        .render_request(id, to, body)
        .map_err(|e| invalid(&e))?
    {
        Rendered::Query(query) => {
            let mut url = reqwest::Url::parse(&settings.url).map_err(|e| invalid(&e))?;
            let joined = match url.query() {
                Some(existing) if !existing.is_empty() => format!("{existing}&{query}"),
                _ => query,
            };
            url.set_query(Some(&joined));
            client.get(url)
        }
        Rendered::Form(form) => client
            .post(&settings.url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form),
        Rendered::Json(json) => client
            .post(&settings.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json),
    };
    let mut request = request;
    if let Some(line) = &settings.auth_header {
        let (name, value) = parse_header_line(line).map_err(|e| invalid(&e))?;
        request = request.header(name, value);
    }
    match exchange(request).await {
        Err(failure) => Err(SendError::transient(format!(
            "the SMS gateway could not be reached: {failure}"
        ))),
        Ok((status, text)) => classify_gateway(status, &text),
    }
}

/// What the gateway's answer means: 2xx took the message (its id from a JSON answer's `id`,
/// `message_id`, `messageId` or `sid`, else the status line); 408/429/5xx are transient;
/// other answers refused the message for good.
fn classify_gateway(status: u16, body: &str) -> Result<SmsSent, SendError> {
    match status {
        200..=299 => {
            let answer = serde_json::from_str::<serde_json::Value>(body).ok();
            let field = |names: &[&str]| {
                let object = answer.as_ref()?.as_object()?;
                names.iter().find_map(|name| match object.get(*name)? {
                    serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
            };
            Ok(SmsSent {
                message_id: field(&["id", "message_id", "messageId", "sid"])
                    .unwrap_or_else(|| status_line(status)),
                status: field(&["status"]).unwrap_or_else(|| "accepted".to_owned()),
            })
        }
        408 | 429 | 500..=599 => Err(SendError::transient(format!(
            "the SMS gateway failed (HTTP {status}){}",
            detail_suffix(body)
        ))),
        400..=499 => Err(SendError::permanent(format!(
            "the SMS gateway refused the message (HTTP {status}): {}",
            snippet(body)
        ))),
        _ => Err(SendError::transient(format!(
            "the SMS gateway gave an unexpected answer (HTTP {status}){}",
            detail_suffix(body)
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// `200 OK`.
fn status_line(status: u16) -> String {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason());
    match reason {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

/// The first characters of an answer, on one line.
fn snippet(body: &str) -> String {
    let flat: String = body
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut out: String = flat.chars().take(SNIPPET_CHARS).collect();
    if flat.chars().count() > SNIPPET_CHARS {
        out.push('…');
    }
    if out.is_empty() {
        out.push_str("(empty answer)");
    }
    out
}

/// `: what the answer said`, or nothing for an empty answer.
fn detail_suffix(body: &str) -> String {
    if body.trim().is_empty() {
        return String::new();
    }
    match TwilioError::parse(body) {
        Some(e) => format!(": {}", e.describe()),
        None => format!(": {}", snippet(body)),
    }
}

/// Sends `request` and reads the answer within [`REQUEST_TIMEOUT`] all told (a shorter
/// timeout of the client's still applies): the status and the body, or the failure in words.
async fn exchange(request: reqwest::RequestBuilder) -> Result<(u16, String), String> {
    let exchange = async {
        let response = request
            .send()
            .await
            .map_err(|e| describe_request_error(&e))?;
        let status = response.status().as_u16();
        // A 2xx whose body breaks off still took the message.
        Ok((status, response.text().await.unwrap_or_default()))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "timed out (no answer within {} s)",
                REQUEST_TIMEOUT.as_secs()
            ))
        })
}

/// A transport failure in words: timed out, connection refused, or the causes in a chain.
fn describe_request_error(error: &reqwest::Error) -> String {
    let mut causes = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !causes.contains(&text) {
            causes.push(text);
        }
        source = cause.source();
    }
    let chain = causes.join(": ");
    let refused = causes
        .iter()
        .any(|c| c.to_lowercase().contains("connection refused"));
    let kind = if error.is_timeout() {
        "timed out"
    } else if refused {
        "connection refused"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_builder() {
        "invalid request"
    } else {
        "request failed"
    };
    if chain.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} ({chain})")
    }
}

/// `error` with every non-empty secret blanked out.
fn scrub(mut error: SendError, secrets: &[&str]) -> SendError {
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if error.message.contains(secret) {
            error.message = error.message.replace(secret, "<redacted>");
        }
    }
    error
}

// ---------------------------------------------------------------------------------------------
// Twilio's request signatures and status callbacks
// ---------------------------------------------------------------------------------------------

/// The MAC of Twilio's scheme: HMAC-SHA1 keyed with the auth token over the URL followed by
/// every POST parameter's name and value, sorted by name (then value), byte order.
fn signature_mac(auth_token: &str, url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac =
        Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(url.as_bytes());
    for (key, value) in sorted {
        mac.update(key.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// Twilio's `X-Twilio-Signature` of a POST to `url` (the full URL Twilio called, query string
/// included) with the form fields `params`: base64 of the HMAC-SHA1.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    base64::engine::general_purpose::STANDARD.encode(
        signature_mac(auth_token, url, params)
            .finalize()
            .into_bytes(),
    )
}

/// Whether `header_value` is Twilio's signature of this request, compared in constant time.
/// An empty auth token verifies nothing.
pub fn verify_twilio_signature(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    header_value: &str,
) -> bool {
    if auth_token.is_empty() {
        return false;
    }
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(header_value.trim()) else {
        return false;
    };
    signature_mac(auth_token, url, params)
        .verify_slice(&given)
        .is_ok()
}

/// The statuses Twilio reports for an outgoing message.
pub const TWILIO_STATUSES: [&str; 13] = [
    "accepted",
    "scheduled",
    "canceled",
    "queued",
    "sending",
    "sent",
    "failed",
    "delivered",
    "undelivered",
    "receiving",
    "received",
    "read",
    "partially_delivered",
];

/// A delivery-status callback of Twilio's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatusUpdate {
    pub message_sid: String,
    /// `queued`, `sent`, `delivered`, `undelivered`, `failed` (or another of
    /// [`TWILIO_STATUSES`]).
    pub status: String,
    /// Twilio's error code of an undelivered or failed message (e.g. `30003`).
    pub error_code: Option<String>,
}

/// The callback's form fields `MessageSid`, `MessageStatus` and `ErrorCode` (Twilio's older
/// `SmsSid` / `SmsStatus` too); `None` without a sid or with a status Twilio does not use.
pub fn parse_status_callback(params: &[(String, String)]) -> Option<StatusUpdate> {
    let field = |names: &[&str]| {
        names.iter().find_map(|name| {
            params
                .iter()
                .find(|(k, v)| k == name && !v.trim().is_empty())
                .map(|(_, v)| v.trim().to_owned())
        })
    };
    let message_sid = field(&["MessageSid", "SmsSid"])?;
    let status = field(&["MessageStatus", "SmsStatus"])?.to_ascii_lowercase();
    if !TWILIO_STATUSES.contains(&status.as_str()) {
        return None;
    }
    Some(StatusUpdate {
        message_sid,
        status,
        error_code: field(&["ErrorCode"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";
    const MG: &str = "MG0123456789abcdef0123456789abcdef";

    fn twilio() -> TwilioSettings {
        TwilioSettings::new(SID, "s3cr3t-t0ken", "+15551234567")
    }

    fn gateway(method: Method, body: BodyFormat, template: &str) -> GatewaySettings {
        GatewaySettings {
            url: "https://sms.example.test/send".into(),
            method,
            body,
            template: template.into(),
            auth_header: Some("Authorization: Bearer hush".into()),
            from: "+4930123456".into(),
        }
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Reads an `application/x-www-form-urlencoded` string back (an independent decoder).
    fn form_decode(text: &str) -> Vec<(String, String)> {
        fn decode(s: &str) -> String {
            let bytes = s.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'+' => out.push(b' '),
                    b'%' => {
                        out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                        i += 2;
                    }
                    b => out.push(b),
                }
                i += 1;
            }
            String::from_utf8(out).unwrap()
        }
        text.split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                (decode(k), decode(v))
            })
            .collect()
    }

    #[test]
    fn twilio_settings_check() {
        assert_eq!(twilio().check(), Ok(()));
        let mut mg = twilio();
        mg.from = MG.into();
        assert_eq!(mg.check(), Ok(()));
        assert!(mg.uses_messaging_service());

        let bad = TwilioSettings {
            account_sid: "AC123".into(),
            auth_token: String::new(),
            from: "5551234567".into(),
            base_url: "ftp://api.twilio.com".into(),
        };
        let errors = bad.check().unwrap_err();
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["account_sid", "auth_token", "from", "base_url"]);
        assert!(errors.to_string().starts_with("account_sid: "), "{errors}");

        for from in [
            "+1234567",
            "+1234567890123456",
            "+0123456789",
            "+1555 123 4567",
            "MG12",
        ] {
            let mut s = twilio();
            s.from = from.into();
            assert!(s.check().unwrap_err().field("from").is_some(), "{from}");
        }
        for from in ["+12345678", "+123456789012345", "+447700900123"] {
            let mut s = twilio();
            s.from = from.into();
            assert_eq!(s.check(), Ok(()), "{from}");
        }
        let mut s = twilio();
        s.account_sid = "AC0123456789abcdef0123456789abcdeg".into();
        assert!(s.check().unwrap_err().field("account_sid").is_some());
        s = twilio();
        s.account_sid = "SK0123456789abcdef0123456789abcdef".into();
        assert!(s.check().unwrap_err().field("account_sid").is_some());
        s = twilio();
        s.auth_token = "abc def".into();
        assert!(s.check().unwrap_err().field("auth_token").is_some());
    }

    #[test]
    fn twilio_settings_urls_and_debug() {
        assert_eq!(TwilioSettings::default().base_url, DEFAULT_TWILIO_BASE_URL);
        assert_eq!(
            twilio().messages_url(),
            format!("https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json")
        );
        let local = twilio().with_base_url("http://127.0.0.1:4010//");
        assert_eq!(local.base_url, "http://127.0.0.1:4010");
        assert_eq!(
            local.messages_url(),
            format!("http://127.0.0.1:4010/2010-04-01/Accounts/{SID}/Messages.json")
        );
        let debug = format!("{:?}", twilio());
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(
            debug.contains(SID) && debug.contains("<redacted>"),
            "{debug}"
        );

        let debug = format!("{:?}", gateway(Method::Post, BodyFormat::Form, "to={to}"));
        assert!(!debug.contains("hush"), "{debug}");
        assert!(debug.contains("Authorization: <redacted>"), "{debug}");
    }

    #[test]
    fn gateway_settings_check() {
        let good = gateway(
            Method::Post,
            BodyFormat::Form,
            "to={to}&from={from}&text={body}",
        );
        assert_eq!(good.check(), Ok(()));
        let good = gateway(
            Method::Post,
            BodyFormat::Json,
            r#"{"to": ["{to}"], "text": "{body}", "ref": "{id}", "n": 1}"#,
        );
        assert_eq!(good.check(), Ok(()));
        let mut get = gateway(Method::Get, BodyFormat::Form, "to={to}&msg={body}");
        get.url = "http://gw.local/api?user=me".into();
        assert_eq!(get.check(), Ok(()));

        let mut bad = gateway(
            Method::Post,
            BodyFormat::Form,
            "to={phone}&text={body}&x={Msg}",
        );
        bad.url = "ftp://gw.local/send".into();
        bad.auth_header = Some("Bearer xyz".into());
        let errors = bad.check().unwrap_err();
        assert!(errors.field("url").unwrap().message.contains("http"));
        let template = &errors.field("template").unwrap().message;
        assert!(
            template.contains("{phone}") && template.contains("{Msg}"),
            "{template}"
        );
        assert!(errors.field("auth_header").is_some());

        let json = gateway(Method::Post, BodyFormat::Json, r#"{"to": "{to}", "#);
        assert!(json.check().unwrap_err().field("template").is_some());
        let json = gateway(Method::Post, BodyFormat::Json, r#"{"to": "{recipient}"}"#);
        let errors = json.check().unwrap_err();
        assert!(errors
            .field("template")
            .unwrap()
            .message
            .contains("{recipient}"));
        let get_json = gateway(Method::Get, BodyFormat::Json, r#"{"to": "{to}"}"#);
        assert!(get_json.check().unwrap_err().field("method").is_some());
        for template in ["", "to", "={to}", "{to}=x"] {
            let s = gateway(Method::Post, BodyFormat::Form, template);
            assert!(
                s.check().unwrap_err().field("template").is_some(),
                "{template}"
            );
        }
        for line in ["X-Api-Key:", "Bad Name: x", "Authorization: a\nb"] {
            let mut s = gateway(Method::Post, BodyFormat::Form, "to={to}");
            s.auth_header = Some(line.into());
            assert!(
                s.check().unwrap_err().field("auth_header").is_some(),
                "{line}"
            );
        }
        let mut s = gateway(Method::Post, BodyFormat::Form, "to={to}");
        s.auth_header = Some("X-Api-Key:abc".into());
        assert_eq!(s.check(), Ok(()));
        // A brace that does not close a name is plain text.
        let s = gateway(
            Method::Post,
            BodyFormat::Form,
            "to={to}&note={ not a placeholder }",
        );
        assert_eq!(s.check(), Ok(()));
    }

    const TRICKY: &str = "He said \"hi\" & left;\nback at 5 = 50% {to} ✓ 🎉 a+b\\c";

    #[test]
    fn form_template_substitution() {
        let s = gateway(
            Method::Post,
            BodyFormat::Form,
            "to={to}&\n from={from} &text={body}&ref=wo-{id}&sender=+Shop",
        );
        let rendered = s.render("n-42", "+15550001111", TRICKY).unwrap();
        assert_eq!(
            rendered,
            "to=%2B15550001111&from=%2B4930123456&text=He%20said%20%22hi%22%20%26%20left%3B%0A\
             back%20at%205%20%3D%2050%25%20%7Bto%7D%20%E2%9C%93%20%F0%9F%8E%89%20a%2Bb%5Cc\
             &ref=wo-n-42&sender=%2BShop"
        );
        assert_eq!(
            form_decode(&rendered),
            pairs(&[
                ("to", "+15550001111"),
                ("from", "+4930123456"),
                ("text", TRICKY),
                ("ref", "wo-n-42"),
                ("sender", "+Shop"),
            ])
        );
        let get = gateway(Method::Get, BodyFormat::Form, "msg={body}&to={to}");
        assert_eq!(
            form_decode(&get.render("1", "+15550001111", TRICKY).unwrap()),
            pairs(&[("msg", TRICKY), ("to", "+15550001111")])
        );
    }

    #[test]
    fn json_template_substitution() {
        let s = gateway(
            Method::Post,
            BodyFormat::Json,
            r#"{"messages": [{"to": ["{to}"], "text": "{body}", "from": "{from}"}],
                "reference": "notification {id}", "{to}": "key stays", "count": 1,
                "flash": false, "literal": "\"{to}\"\n"}"#,
        );
        let rendered = s.render("n-42", "+15550001111", TRICKY).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&rendered).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "messages": [{"to": ["+15550001111"], "text": TRICKY, "from": "+4930123456"}],
                "reference": "notification n-42",
                "{to}": "key stays",
                "count": 1,
                "flash": false,
                "literal": "\"+15550001111\"\n",
            })
        );
        assert!(
            rendered.contains(r#"He said \"hi\" & left;\nback"#),
            "{rendered}"
        );
    }

    #[test]
    fn placeholder_scanning() {
        let values = Values {
            to: "{body}",
            from: "F",
            body: "B",
            id: "I",
        };
        assert_eq!(substitute("{to}/{body}", &values), "{body}/B");
        assert_eq!(substitute("{{to}}", &values), "{{body}}");
        assert_eq!(substitute("{x}{from}{", &values), "{x}F{");
        assert_eq!(substitute("{ body }", &values), "{ body }");
        assert_eq!(unknown_placeholders("{a} {to} {b_2} {3x}"), ["a", "b_2"]);
    }

    #[test]
    fn twilio_classification() {
        let ok = classify_twilio(
            201,
            r#"{"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued", "to": "+1"}"#,
        )
        .unwrap();
        assert_eq!(ok.message_id, "SM0123456789abcdef0123456789abcdef");
        assert_eq!(ok.status, "queued");
        assert_eq!(
            classify_twilio(200, "not json").unwrap().message_id,
            "200 OK"
        );

        let refused = classify_twilio(
            400,
            r#"{"code": 21211, "message": "The 'To' number 12345 is not a valid phone number.",
                "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}"#,
        )
        .unwrap_err();
        assert_eq!(
            refused,
            SendError::permanent(
                "Twilio refused the message (code 21211): The 'To' number 12345 is not a valid \
                 phone number."
            )
        );
        let not_found = classify_twilio(404, r#"{"code": 20404, "message": "Not found"}"#);
        assert!(not_found.unwrap_err().permanent);
        let html = classify_twilio(400, "<html>bad</html>").unwrap_err();
        assert!(html.permanent);
        assert_eq!(
            html.message,
            "Twilio refused the message (HTTP 400): <html>bad</html>"
        );

        for status in [401, 403] {
            let e = classify_twilio(
                status,
                r#"{"code": 20003, "message": "Authenticate", "status": 401}"#,
            )
            .unwrap_err();
            assert!(!e.permanent);
            assert!(
                e.message.contains("account SID / auth token"),
                "{}",
                e.message
            );
            assert!(e.message.contains("20003"), "{}", e.message);
        }
        for status in [408, 429, 500, 502, 503, 504] {
            let e = classify_twilio(status, "").unwrap_err();
            assert!(!e.permanent, "{status}");
            assert!(e.message.contains(&status.to_string()), "{}", e.message);
        }
        assert!(!classify_twilio(302, "").unwrap_err().permanent);
    }

    #[test]
    fn gateway_classification() {
        let ok = |body: &str| classify_gateway(200, body).unwrap();
        assert_eq!(ok(r#"{"id": "abc", "status": "sent"}"#).message_id, "abc");
        assert_eq!(ok(r#"{"id": "abc", "status": "sent"}"#).status, "sent");
        assert_eq!(ok(r#"{"message_id": "m1"}"#).message_id, "m1");
        assert_eq!(ok(r#"{"messageId": 1234}"#).message_id, "1234");
        assert_eq!(ok(r#"{"sid": "s9"}"#).message_id, "s9");
        assert_eq!(ok(r#"{"result": "ok"}"#).message_id, "200 OK");
        assert_eq!(ok("OK").message_id, "200 OK");
        assert_eq!(ok("[1]").status, "accepted");
        assert_eq!(
            classify_gateway(202, "").unwrap().message_id,
            "202 Accepted"
        );

        for status in [408, 429, 500, 503] {
            assert!(
                !classify_gateway(status, "busy").unwrap_err().permanent,
                "{status}"
            );
        }
        let long = format!("invalid number\n{}", "x".repeat(500));
        let e = classify_gateway(400, &long).unwrap_err();
        assert!(e.permanent);
        let shown = e
            .message
            .strip_prefix("the SMS gateway refused the message (HTTP 400): ")
            .unwrap();
        assert_eq!(shown.chars().count(), SNIPPET_CHARS + 1);
        assert!(shown.starts_with("invalid number x"), "{shown}");
        assert!(classify_gateway(422, "").unwrap_err().permanent);
    }

    #[test]
    fn secrets_are_scrubbed() {
        let e = scrub(SendError::transient("token abc123 leaked"), &["abc123", ""]);
        assert_eq!(e.message, "token <redacted> leaked");
    }

    fn twilio_example(caller: &str) -> Vec<(String, String)> {
        pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", caller),
            ("Digits", "1234"),
            ("From", caller),
            ("To", "+18005551212"),
        ])
    }

    const EXAMPLE_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    #[test]
    fn signature_matches_twilios_published_examples() {
        // https://www.twilio.com/docs/usage/security#validating-requests
        let params = twilio_example("+12349013030");
        assert_eq!(
            twilio_signature("12345", EXAMPLE_URL, &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        // The older twilio-php documentation's variant of the same example.
        assert_eq!(
            twilio_signature("12345", EXAMPLE_URL, &twilio_example("+14158675309")),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        // The order the fields arrive in does not matter.
        let mut reversed = params.clone();
        reversed.reverse();
        assert!(verify_twilio_signature(
            "12345",
            EXAMPLE_URL,
            &reversed,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
    }

    #[test]
    fn signature_refusals() {
        let params = twilio_example("+12349013030");
        let good = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
        assert!(verify_twilio_signature("12345", EXAMPLE_URL, &params, good));
        assert!(verify_twilio_signature(
            "12345",
            EXAMPLE_URL,
            &params,
            &format!(" {good}\n")
        ));

        let mut tampered = params.clone();
        tampered[2].1 = "1235".into();
        assert!(!verify_twilio_signature(
            "12345",
            EXAMPLE_URL,
            &tampered,
            good
        ));
        let mut added = params.clone();
        added.push(("Extra".into(), String::new()));
        assert!(!verify_twilio_signature("12345", EXAMPLE_URL, &added, good));
        assert!(!verify_twilio_signature(
            "12346",
            EXAMPLE_URL,
            &params,
            good
        ));
        assert!(!verify_twilio_signature(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &params,
            good
        ));
        for garbage in [
            "",
            "not base64!",
            "AAAA",
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ",
            &good[1..],
        ] {
            assert!(
                !verify_twilio_signature("12345", EXAMPLE_URL, &params, garbage),
                "{garbage}"
            );
        }
        let empty_key = twilio_signature("", EXAMPLE_URL, &params);
        assert!(!verify_twilio_signature(
            "",
            EXAMPLE_URL,
            &params,
            &empty_key
        ));
    }

    #[test]
    fn signature_sorts_repeated_keys_by_value() {
        let a = pairs(&[("To", "b"), ("To", "a"), ("Body", "x")]);
        let b = pairs(&[("Body", "x"), ("To", "a"), ("To", "b")]);
        assert_eq!(
            twilio_signature("t", "https://x.test/cb", &a),
            twilio_signature("t", "https://x.test/cb", &b)
        );
        // Byte order: upper case before lower case.
        let mixed = pairs(&[("b", "1"), ("B", "2")]);
        let mut mac = Hmac::<Sha1>::new_from_slice(b"t").unwrap();
        mac.update(b"https://x.test/cbB2b1");
        assert_eq!(
            twilio_signature("t", "https://x.test/cb", &mixed),
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        );
    }

    #[test]
    fn status_callbacks() {
        let update = parse_status_callback(&pairs(&[
            ("AccountSid", SID),
            ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30003"),
        ]))
        .unwrap();
        assert_eq!(
            update,
            StatusUpdate {
                message_sid: "SM0123456789abcdef0123456789abcdef".into(),
                status: "undelivered".into(),
                error_code: Some("30003".into()),
            }
        );
        let delivered = parse_status_callback(&pairs(&[
            ("SmsSid", "SM1"),
            ("SmsStatus", "delivered"),
            ("ErrorCode", ""),
        ]))
        .unwrap();
        assert_eq!(delivered.status, "delivered");
        assert_eq!(delivered.error_code, None);
        assert_eq!(
            parse_status_callback(&pairs(&[("MessageStatus", "sent")])),
            None
        );
        assert_eq!(
            parse_status_callback(&pairs(&[("MessageSid", "SM1")])),
            None
        );
        assert_eq!(
            parse_status_callback(&pairs(&[("MessageSid", "SM1"), ("MessageStatus", "bogus")])),
            None
        );
    }
}
