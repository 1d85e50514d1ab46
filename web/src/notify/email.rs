//! Email over SMTP: the `ST_SMTP_URL` settings and sending one message with lettre.
//!
//! One transport per message (no pool): notifications are rare, and a fresh connection
//! makes each attempt independent of the last one's failure.

use std::fmt;
use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::SendError;

/// How the connection to the SMTP server is protected.
///
/// There is deliberately no "opportunistic" mode (STARTTLS when the server offers it,
/// plain text otherwise): the offer comes in the server's unprotected EHLO reply, so anyone
/// on the path can strip it, and the client would then send the password (AUTH PLAIN is
/// only base64) and the customers' messages in clear without anyone noticing. `StartTls`
/// *requires* the upgrade and fails loudly instead; plain text has to be asked for with
/// `tls=none` (or is the default only for a server on this machine, where no network sits
/// in between).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Plain text (`tls=none`): only for a relay on this machine or a trusted network.
    None,
    /// Plain connection upgraded with STARTTLS, which is required (`tls=starttls`).
    StartTls,
    /// TLS from the first byte, "implicit TLS" / SMTPS (`smtps://` or `tls=tls`).
    Tls,
}

impl Tls {
    fn name(self) -> &'static str {
        match self {
            Tls::None => "none",
            Tls::StartTls => "starttls",
            Tls::Tls => "tls",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Tls::None => 25,
            Tls::StartTls => 587,
            Tls::Tls => 465,
        }
    }
}

/// Where and how to send email, parsed from `ST_SMTP_URL`.
///
/// `Debug` does not show the password; use [`SmtpSettings::redacted`] in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    /// A host name or an IP address (an IPv6 address without its brackets).
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

const VAR: &str = "ST_SMTP_URL";

impl SmtpSettings {
    /// Parses an SMTP URL:
    ///
    /// - `smtp://user:pass@mail.example.com:587?tls=starttls`
    /// - `smtp://127.0.0.1:2525` (a local server: plain text unless `tls=` says otherwise)
    /// - `smtps://user:pass@host` (implicit TLS, port 465 by default)
    /// - `smtp://host?tls=tls`, `smtp://host?tls=none`
    ///
    /// Without `tls=`, `smtp://` means STARTTLS (required) when the port is 587, plain text
    /// when the host is 127.0.0.1, localhost or ::1, and STARTTLS otherwise. The default port
    /// is 587 for STARTTLS, 465 for TLS and 25 for plain text. The user name and the password
    /// are percent-decoded (write `@` as `%40`, `:` as `%3A`, `%` as `%25`, `/` as `%2F`,
    /// `?` as `%3F`, `#` as `%23`). The error is one sentence that never shows the password.
    pub fn parse(url: &str) -> Result<SmtpSettings, String> {
        let url = url.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!(
                "{VAR}: not a URL; expected smtp://[user:password@]host[:port][?tls=starttls|tls|none]"
            ));
        };
        let implicit_tls = match scheme.to_ascii_lowercase().as_str() {
            "smtp" => false,
            "smtps" => true,
            _ => {
                return Err(format!(
                    "{VAR}: the scheme must be smtp or smtps, not \"{scheme}\""
                ))
            }
        };
        if rest.contains('#') {
            return Err(format!(
                "{VAR}: unexpected \"#\" (write it as %23 in a user name or password)"
            ));
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        // The user info ends at the last `@`, so an unencoded `@` in a password still works.
        let (userinfo, host_and_path) = match before_query.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, before_query),
        };
        let (hostport, path) = match host_and_path.find('/') {
            Some(i) => host_and_path.split_at(i),
            None => (host_and_path, ""),
        };
        if !path.is_empty() && path != "/" {
            return Err(format!(
                "{VAR}: unexpected path \"{path}\" (write \"/\" as %2F in a user name or password)"
            ));
        }

        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, pass) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (info, None),
                };
                let user =
                    percent_decode(user).map_err(|why| format!("{VAR}: the user name {why}"))?;
                let pass = pass
                    .map(|p| percent_decode(p).map_err(|why| format!("{VAR}: the password {why}")))
                    .transpose()?;
                if user.is_empty() {
                    return Err(format!("{VAR}: the user name is empty (leave out \"@\" to send without signing in)"));
                }
                (Some(user), pass)
            }
        };

        let (host, port) = split_host_port(hostport)?;

        let mut tls_param = None;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "tls" => {
                    if tls_param.is_some() {
                        return Err(format!("{VAR}: tls is given twice"));
                    }
                    tls_param = Some(match value.to_ascii_lowercase().as_str() {
                        "starttls" => Tls::StartTls,
                        "tls" => Tls::Tls,
                        "none" => Tls::None,
                        _ => {
                            return Err(format!(
                                "{VAR}: unknown tls mode \"{value}\"; use starttls, tls or none"
                            ))
                        }
                    });
                }
                _ => {
                    return Err(format!(
                        "{VAR}: unknown parameter \"{key}\"; the only one is tls=starttls|tls|none"
                    ))
                }
            }
        }

        let tls = match (implicit_tls, tls_param) {
            (true, None | Some(Tls::Tls)) => Tls::Tls,
            (true, Some(other)) => {
                return Err(format!(
                "{VAR}: smtps:// means implicit TLS, which contradicts tls={}; use smtp:// for it",
                other.name()
            ))
            }
            (false, Some(tls)) => tls,
            (false, None) if port == Some(587) => Tls::StartTls,
            (false, None) if is_local(&host) => Tls::None,
            (false, None) => Tls::StartTls,
        };
        Ok(SmtpSettings {
            port: port.unwrap_or_else(|| tls.default_port()),
            host,
            tls,
            username,
            password,
        })
    }

    /// The URL with every setting spelled out; `parse` gives these settings back.
    pub fn to_url(&self) -> String {
        self.url_with_password(self.password.as_deref().map(percent_encode))
    }

    /// The URL with the password replaced by `***`, for logs and the console.
    pub fn redacted(&self) -> String {
        self.url_with_password(self.password.as_ref().map(|_| "***".to_owned()))
    }

    fn url_with_password(&self, password: Option<String>) -> String {
        let mut url = String::from(if self.tls == Tls::Tls {
            "smtps://"
        } else {
            "smtp://"
        });
        if let Some(user) = &self.username {
            url.push_str(&percent_encode(user));
            if let Some(password) = password {
                url.push(':');
                url.push_str(&password);
            }
            url.push('@');
        }
        url.push_str(&self.address());
        if self.tls != Tls::Tls {
            url.push_str("?tls=");
            url.push_str(self.tls.name());
        }
        url
    }

    /// `host:port` (`[v6]:port`), for messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn is_local(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1" || host == "::1"
}

/// `host[:port]` or `[v6][:port]` → (host, port).
fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let Some((v6, after)) = inner.split_once(']') else {
            return Err(format!("{VAR}: the IPv6 address lacks its closing \"]\""));
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{VAR}: \"{v6}\" is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err(format!("{VAR}: unexpected \"{after}\" after the host")),
            },
        };
        (v6.to_owned(), port)
    } else {
        let (host, port) = match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        if port.is_some_and(|p| p.contains(':')) {
            return Err(format!(
                "{VAR}: an IPv6 address needs brackets, as in smtp://[::1]:25"
            ));
        }
        if !host.is_empty()
            && !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(format!("{VAR}: \"{host}\" is not a host name"));
        }
        (host.to_ascii_lowercase(), port)
    };
    if host.is_empty() {
        return Err(format!(
            "{VAR}: the URL needs a host, as in smtp://mail.example.com"
        ));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => {
                return Err(format!(
                    "{VAR}: the port \"{p}\" is not a number between 1 and 65535"
                ))
            }
        },
    };
    Ok((host, port))
}

/// Decodes `%XX`; the error (a phrase completing "the password …") never shows the text.
fn percent_decode(s: &str) -> Result<String, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => out.push(b),
                None => {
                    return Err("has a \"%\" not followed by two hex digits (write \"%\" as %25)")
                }
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8 once percent-decoded")
}

/// Encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A file attached to an email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub file_name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// `Name <addr>` or `addr`.
    pub from: String,
    /// `Name <addr>` or `addr`.
    pub to: String,
    pub reply_to: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// The Message-ID without its angle brackets (`<uuid>@host` → `uuid@host`; brackets
    /// given anyway are dropped). Sent as `Message-ID: <{message_id}>`, so the receiving
    /// side sees the caller's idempotency key.
    pub message_id: String,
    pub attachments: Vec<Attachment>,
    /// Extra headers, e.g. `X-SupportTracker-Notification`.
    pub headers: Vec<(String, String)>,
}

/// The MIME message: `text/plain`, or `multipart/alternative` (text, HTML) when there is
/// HTML, inside `multipart/mixed` with the attachments (always base64, so their bytes arrive
/// unchanged) when there are any.
pub fn build(email: &OutgoingEmail) -> Result<Message, SendError> {
    let from: Mailbox = parse_mailbox("sender", &email.from)?;
    let to: Mailbox = parse_mailbox("recipient", &email.to)?;
    let id = email.message_id.trim();
    let id = id
        .strip_prefix('<')
        .and_then(|i| i.strip_suffix('>'))
        .unwrap_or(id);
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
    {
        return Err(SendError::permanent(format!(
            "invalid Message-ID {:?}: printable ASCII without spaces or angle brackets expected",
            email.message_id
        )));
    }
    if email.subject.contains(['\r', '\n']) {
        return Err(SendError::permanent(
            "invalid subject: it contains a line break",
        ));
    }

    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(email.subject.clone())
        .message_id(Some(format!("<{id}>")));
    if let Some(reply_to) = &email.reply_to {
        builder = builder.reply_to(parse_mailbox("reply-to", reply_to)?);
    }
    for (name, value) in &email.headers {
        let valid_name =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        let header_name = HeaderName::new_from_ascii(name.clone())
            .ok()
            .filter(|_| valid_name)
            .ok_or_else(|| SendError::permanent(format!("invalid header name {name:?}")))?;
        if value.contains(['\r', '\n']) {
            return Err(SendError::permanent(format!(
                "invalid value of header {name}: it contains a line break"
            )));
        }
        builder = builder.raw_header(HeaderValue::new(header_name, value.clone()));
    }

    let text = SinglePart::plain(email.text.clone());
    let attachments = email
        .attachments
        .iter()
        .map(|a| {
            if a.file_name.is_empty() || a.file_name.chars().any(char::is_control) {
                return Err(SendError::permanent(format!(
                    "invalid attachment file name {:?}",
                    a.file_name
                )));
            }
            let content_type = ContentType::parse(&a.content_type).map_err(|_| {
                SendError::permanent(format!(
                    "invalid content type {:?} of attachment {:?}",
                    a.content_type, a.file_name
                ))
            })?;
            let body = Body::new_with_encoding(a.bytes.clone(), ContentTransferEncoding::Base64)
                .map_err(|_| SendError::permanent("attachment cannot be base64-encoded"))?;
            Ok(lettre::message::Attachment::new(a.file_name.clone()).body(body, content_type))
        })
        .collect::<Result<Vec<_>, SendError>>()?;

    let built = match (&email.html, attachments.is_empty()) {
        (None, true) => builder.singlepart(text),
        (Some(html), true) => builder.multipart(
            MultiPart::alternative()
                .singlepart(text)
                .singlepart(SinglePart::html(html.clone())),
        ),
        (html, false) => {
            let mut mixed = match html {
                None => MultiPart::mixed().singlepart(text),
                Some(html) => MultiPart::mixed().multipart(
                    MultiPart::alternative()
                        .singlepart(text)
                        .singlepart(SinglePart::html(html.clone())),
                ),
            };
            for attachment in attachments {
                mixed = mixed.singlepart(attachment);
            }
            builder.multipart(mixed)
        }
    };
    built.map_err(|e| SendError::permanent(format!("the message cannot be built: {e}")))
}

fn parse_mailbox(role: &str, address: &str) -> Result<Mailbox, SendError> {
    address
        .trim()
        .parse::<Mailbox>()
        .map_err(|e| SendError::permanent(format!("invalid {role} address {address:?}: {e}")))
}

/// Sends `email` through the server of `settings` and returns the server's reply to the
/// message (e.g. `250 2.0.0 Ok: queued as 4F2…`, lines joined with spaces) for the delivery
/// log.
///
/// `timeout` bounds the whole exchange (connection, TLS, sign-in, the message, the reply):
/// lettre's own timeout only covers opening the TCP connection in its async transport. A
/// timeout after the message was handed over may still mean it was delivered: the
/// Message-ID is what lets a retry be recognised as the same message.
///
/// Errors: an invalid address or message, or a 5xx reply, is permanent; a 4xx reply, a
/// refused connection, a timeout, a TLS failure or anything else is transient. The message
/// names the server's `host:port` and never contains the password.
pub async fn send(
    settings: &SmtpSettings,
    email: &OutgoingEmail,
    timeout: Duration,
) -> Result<String, SendError> {
    let message = build(email)?;
    let address = settings.address();
    let transport = transport(settings, timeout).map_err(|e| {
        SendError::transient(scrub(
            &format!("SMTP server {address}: cannot set up TLS: {}", chain(&e)),
            settings,
        ))
    })?;
    match tokio::time::timeout(timeout, transport.send(message)).await {
        Err(_) => Err(SendError::transient(format!(
            "SMTP server {address}: no complete answer within {} s",
            timeout.as_secs_f64()
        ))),
        Ok(Ok(response)) => {
            let lines: Vec<&str> = response.message().collect();
            Ok(format!("{} {}", response.code(), lines.join(" "))
                .trim_end()
                .to_owned())
        }
        Ok(Err(e)) => Err(classify(&e, settings)),
    }
}

fn transport(
    settings: &SmtpSettings,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, lettre::transport::smtp::Error> {
    let builder = match settings.tls {
        Tls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host),
        Tls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host)?,
        Tls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host)?,
    };
    let mut builder = builder.port(settings.port).timeout(Some(timeout));
    if let Some(user) = &settings.username {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            settings.password.clone().unwrap_or_default(),
        ));
    }
    Ok(builder.build())
}

fn classify(e: &lettre::transport::smtp::Error, settings: &SmtpSettings) -> SendError {
    let address = settings.address();
    // The server's text is the error's source; its code is the status.
    let reply = || {
        let code = e.status().map(|c| c.to_string()).unwrap_or_default();
        let text = std::error::Error::source(e)
            .map(|s| s.to_string())
            .unwrap_or_default();
        format!("{code} {text}").trim().to_owned()
    };
    let code = e.status().map(|c| c.to_string()).unwrap_or_default();
    // 530/534/535: the server refused our sign-in, not the message; once the settings are
    // fixed the same message goes through, so keep retrying.
    let (permanent, message) = if matches!(code.as_str(), "530" | "534" | "535") {
        (
            false,
            format!(
                "SMTP server {address} refused the sign-in (check the user and password): {}",
                reply()
            ),
        )
    } else if e.is_permanent() {
        (
            true,
            format!("SMTP server {address} refused the message: {}", reply()),
        )
    } else if e.is_transient() {
        (
            false,
            format!("SMTP server {address} deferred the message: {}", reply()),
        )
    } else if e.is_timeout() {
        (
            false,
            format!("SMTP server {address} timed out: {}", chain(e)),
        )
    } else if e.is_tls() {
        (
            false,
            format!("TLS with SMTP server {address} failed: {}", chain(e)),
        )
    } else {
        (false, format!("SMTP server {address}: {}", chain(e)))
    };
    let message = scrub(&message, settings);
    if permanent {
        SendError::permanent(message)
    } else {
        SendError::transient(message)
    }
}

/// The error and its causes, each once.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// Removes the password should anything (a server echoing a command) contain it.
fn scrub(message: &str, settings: &SmtpSettings) -> String {
    match settings.password.as_deref() {
        Some(password) if !password.is_empty() => message.replace(password, "***"),
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(host: &str, port: u16, tls: Tls) -> SmtpSettings {
        SmtpSettings {
            host: host.to_owned(),
            port,
            tls,
            username: None,
            password: None,
        }
    }

    #[test]
    fn parses_every_form() {
        let s = SmtpSettings::parse("smtp://user:pass@mail.example.com:587?tls=starttls").unwrap();
        assert_eq!(
            s,
            SmtpSettings {
                host: "mail.example.com".into(),
                port: 587,
                tls: Tls::StartTls,
                username: Some("user".into()),
                password: Some("pass".into()),
            }
        );
        assert_eq!(
            SmtpSettings::parse("smtp://127.0.0.1:2525").unwrap(),
            settings("127.0.0.1", 2525, Tls::None)
        );
        let s = SmtpSettings::parse("smtps://user:pass@host").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.tls), ("host", 465, Tls::Tls));
        assert_eq!(s.username.as_deref(), Some("user"));
        assert_eq!(
            SmtpSettings::parse("smtp://host?tls=tls").unwrap(),
            settings("host", 465, Tls::Tls)
        );
        assert_eq!(
            SmtpSettings::parse("smtp://host?tls=none").unwrap(),
            settings("host", 25, Tls::None)
        );
        assert_eq!(
            SmtpSettings::parse("smtp://host:2526?tls=none").unwrap(),
            settings("host", 2526, Tls::None)
        );
        assert_eq!(
            SmtpSettings::parse("smtps://host:4650?tls=tls").unwrap(),
            settings("host", 4650, Tls::Tls)
        );
        assert_eq!(
            SmtpSettings::parse("SMTP://Mail.Example.COM/").unwrap(),
            settings("mail.example.com", 587, Tls::StartTls)
        );
        let s = SmtpSettings::parse("smtp://user@host").unwrap();
        assert_eq!(
            (s.username.as_deref(), s.password.as_deref()),
            (Some("user"), None)
        );
    }

    #[test]
    fn defaults() {
        // No tls=: STARTTLS on 587, plain text on this machine, STARTTLS elsewhere.
        assert_eq!(
            SmtpSettings::parse("smtp://mail.example.com").unwrap(),
            settings("mail.example.com", 587, Tls::StartTls)
        );
        assert_eq!(
            SmtpSettings::parse("smtp://mail.example.com:25").unwrap(),
            settings("mail.example.com", 25, Tls::StartTls)
        );
        assert_eq!(
            SmtpSettings::parse("smtp://localhost:587").unwrap(),
            settings("localhost", 587, Tls::StartTls)
        );
        assert_eq!(
            SmtpSettings::parse("smtp://localhost").unwrap(),
            settings("localhost", 25, Tls::None)
        );
        assert_eq!(
            SmtpSettings::parse("smtp://[::1]:2525").unwrap(),
            settings("::1", 2525, Tls::None)
        );
        assert_eq!(
            SmtpSettings::parse("smtp://127.0.0.1").unwrap(),
            settings("127.0.0.1", 25, Tls::None)
        );
        assert_eq!(
            SmtpSettings::parse("smtp://10.0.0.5").unwrap(),
            settings("10.0.0.5", 587, Tls::StartTls)
        );
    }

    #[test]
    fn percent_decodes_user_and_password() {
        let s = SmtpSettings::parse(
            "smtp://me%40example.com:p%40ss%3Aw%25rd%2F%3F%23@mail.example.com",
        )
        .unwrap();
        assert_eq!(s.username.as_deref(), Some("me@example.com"));
        assert_eq!(s.password.as_deref(), Some("p@ss:w%rd/?#"));
        // An unencoded `@` in the password: the user info ends at the last `@`.
        let s = SmtpSettings::parse("smtp://user:p@ss@host").unwrap();
        assert_eq!(s.password.as_deref(), Some("p@ss"));
        assert_eq!(s.host, "host");
        let s = SmtpSettings::parse("smtp://user:%C3%A9t%C3%A9@host").unwrap();
        assert_eq!(s.password.as_deref(), Some("été"));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = |url: &str| SmtpSettings::parse(url).unwrap_err();
        assert_eq!(
            err("smtp://host?tls=xyz"),
            "ST_SMTP_URL: unknown tls mode \"xyz\"; use starttls, tls or none"
        );
        assert!(
            err("smtp://").contains("needs a host"),
            "{}",
            err("smtp://")
        );
        assert!(err("smtp://user:pw@:25").contains("needs a host"));
        assert!(err("smtp://?tls=none").contains("needs a host"));
        assert!(err("http://host").contains("scheme must be smtp or smtps"));
        assert!(err("mail.example.com").starts_with("ST_SMTP_URL: not a URL"));
        assert!(err("smtp://host?tls=none&verify=no").contains("unknown parameter \"verify\""));
        assert!(err("smtp://host?tls=none&tls=tls").contains("twice"));
        assert!(err("smtp://host:0").contains("port \"0\""));
        assert!(err("smtp://host:99999").contains("port \"99999\""));
        assert!(err("smtp://host:+25").contains("port \"+25\""));
        assert!(err("smtp://host:").contains("port \"\""));
        assert!(err("smtp://host/ehlo").contains("unexpected path"));
        assert!(err("smtp://::1:25").contains("brackets"));
        assert!(err("smtp://[::1").contains("\"]\""));
        assert!(err("smtp://[nope]:25").contains("not an IPv6 address"));
        assert!(err("smtp://ho st").contains("not a host name"));
        assert!(err("smtps://host?tls=starttls").contains("contradicts tls=starttls"));
        assert!(err("smtps://host?tls=none").contains("contradicts tls=none"));
        assert!(err("smtp://:pw@host").contains("user name is empty"));
        assert!(err("smtp://host#x").contains("%23"));
        for url in [
            "smtp://u:secret%zz@host",
            "smtp://u:secret%@host",
            "smtp://u:secret%FF@host",
        ] {
            let e = err(url);
            assert!(e.starts_with("ST_SMTP_URL: the password "), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
        assert!(err("smtp://us%zer@host").contains("the user name"));
    }

    #[test]
    fn redacted_never_shows_the_password() {
        for url in [
            "smtp://user:hunter2@mail.example.com:587?tls=starttls",
            "smtps://user:hunter2@host",
            "smtp://user:hun%40ter2@host",
        ] {
            let s = SmtpSettings::parse(url).unwrap();
            let redacted = s.redacted();
            let password = s.password.clone().unwrap();
            assert!(!redacted.contains(&password), "{redacted}");
            assert!(!redacted.contains("hun"), "{redacted}");
            assert!(redacted.contains(":***@"), "{redacted}");
            assert!(!format!("{s:?}").contains("hun"));
        }
        assert_eq!(
            SmtpSettings::parse("smtp://user:hunter2@mail.example.com")
                .unwrap()
                .redacted(),
            "smtp://user:***@mail.example.com:587?tls=starttls"
        );
        assert_eq!(
            SmtpSettings::parse("smtp://127.0.0.1:2525")
                .unwrap()
                .redacted(),
            "smtp://127.0.0.1:2525?tls=none"
        );
    }

    #[test]
    fn to_url_round_trips() {
        for url in [
            "smtp://user:pass@mail.example.com:587?tls=starttls",
            "smtp://127.0.0.1:2525",
            "smtps://user:pass@host",
            "smtp://host?tls=tls",
            "smtp://host?tls=none",
            "smtp://user@host",
            "smtp://[::1]:2525",
            "smtp://me%40example.com:p%40ss%3Aw%25rd%2F%3F%23%20%C3%A9@mail.example.com:2587",
        ] {
            let parsed = SmtpSettings::parse(url).unwrap();
            let again = SmtpSettings::parse(&parsed.to_url())
                .unwrap_or_else(|e| panic!("{url} → {}: {e}", parsed.to_url()));
            assert_eq!(parsed, again, "{url} → {}", parsed.to_url());
        }
        assert_eq!(
            SmtpSettings::parse("smtps://user:p%40ss@host")
                .unwrap()
                .to_url(),
            "smtps://user:p%40ss@host:465"
        );
    }

    fn email() -> OutgoingEmail {
        OutgoingEmail {
            from: "Acme IT <support@acme.test>".into(),
            to: "Chloé Client <chloe@client.test>".into(),
            reply_to: Some("desk@acme.test".into()),
            subject: "Facture n° 12 — é".into(),
            text: "Bonjour,\nvoici la facture.\n".into(),
            html: Some("<p>Bonjour,</p><p>voici la <b>facture</b>.</p>".into()),
            message_id: "5f0c3a8e-1b2c-4d5e-8f90-123456789abc@acme.test".into(),
            attachments: vec![Attachment {
                file_name: "facture-12.pdf".into(),
                content_type: "application/pdf".into(),
                bytes: b"%PDF-1.4\n\x00\x01\xfe\xff binary\n%%EOF\n".to_vec(),
            }],
            headers: vec![("X-SupportTracker-Notification".into(), "n-42".into())],
        }
    }

    fn formatted(email: &OutgoingEmail) -> String {
        String::from_utf8(build(email).unwrap().formatted()).unwrap()
    }

    #[test]
    fn builds_mixed_alternative_with_attachment() {
        let text = formatted(&email());
        assert!(
            text.contains("Message-ID: <5f0c3a8e-1b2c-4d5e-8f90-123456789abc@acme.test>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("X-SupportTracker-Notification: n-42\r\n"),
            "{text}"
        );
        assert!(text.contains("Reply-To: desk@acme.test\r\n"), "{text}");
        assert!(text.contains("Content-Type: multipart/mixed;"), "{text}");
        assert!(
            text.contains("Content-Type: multipart/alternative;"),
            "{text}"
        );
        assert!(
            text.contains("Content-Type: text/plain; charset=utf-8"),
            "{text}"
        );
        assert!(
            text.contains("Content-Type: text/html; charset=utf-8"),
            "{text}"
        );
        assert!(text.contains("Bonjour,"), "{text}");
        assert!(text.contains("<b>facture</b>"), "{text}");
        assert!(text.contains("filename=\"facture-12.pdf\""), "{text}");
        assert!(text.contains("Content-Type: application/pdf"), "{text}");
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&email().attachments[0].bytes);
        assert!(text.contains("Content-Transfer-Encoding: base64"), "{text}");
        assert!(text.contains(&b64), "{b64} not in {text}");
        // The non-ASCII subject is encoded (RFC 2047), not sent raw.
        let subject = text.lines().find(|l| l.starts_with("Subject: ")).unwrap();
        assert!(subject.contains("=?utf-8?"), "{subject}");
        assert!(text.is_ascii());
    }

    #[test]
    fn builds_simpler_shapes() {
        let mut plain = email();
        plain.html = None;
        plain.attachments.clear();
        let text = formatted(&plain);
        assert!(!text.contains("multipart/"), "{text}");
        assert!(
            text.contains("Content-Type: text/plain; charset=utf-8"),
            "{text}"
        );

        let mut alternative = email();
        alternative.attachments.clear();
        let text = formatted(&alternative);
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(!text.contains("multipart/mixed"), "{text}");

        let mut with_brackets = email();
        with_brackets.message_id = "<abc@acme.test>".into();
        assert!(formatted(&with_brackets).contains("Message-ID: <abc@acme.test>\r\n"));
    }

    #[test]
    fn bad_input_is_a_permanent_error() {
        let mut bad = email();
        bad.to = "not an address".into();
        let e = build(&bad).unwrap_err();
        assert!(e.permanent);
        assert!(e.message.starts_with("invalid recipient address"), "{e}");

        let mut bad = email();
        bad.from = "support@".into();
        let e = build(&bad).unwrap_err();
        assert!(
            e.permanent && e.message.starts_with("invalid sender address"),
            "{e}"
        );

        for (name, value) in [
            ("Bad Name", "x"),
            ("X-Ok", "a\r\nBcc: evil@x.test"),
            ("", "x"),
        ] {
            let mut bad = email();
            bad.headers = vec![(name.into(), value.into())];
            assert!(build(&bad).unwrap_err().permanent);
        }
        let mut bad = email();
        bad.message_id = "has space@x".into();
        assert!(build(&bad).unwrap_err().permanent);
        let mut bad = email();
        bad.attachments[0].content_type = "nonsense".into();
        assert!(build(&bad).unwrap_err().permanent);
    }

    #[tokio::test]
    async fn a_silent_server_times_out_as_transient() {
        // Accepts the connection and never says a word: lettre's own timeout only covers
        // connecting, so `send` must bound the whole exchange itself.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let keep = tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let started = std::time::Instant::now();
        let e = send(
            &settings("127.0.0.1", port, Tls::None),
            &email(),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!e.permanent, "{e}");
        assert!(e.message.contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(e.message.contains("within 0.3 s"), "{e}");
        keep.abort();
    }

    #[tokio::test]
    async fn refused_connection_is_transient_and_names_the_server() {
        // A port nobody listens on: bind, then release it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = settings("127.0.0.1", port, Tls::None);
        s.username = Some("user".into());
        s.password = Some("hunter2".into());
        let e = send(&s, &email(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(!e.permanent, "{e}");
        assert!(e.message.contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(!e.message.contains("hunter2"), "{e}");
    }
}
