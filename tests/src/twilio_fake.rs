//! A local fake of Twilio's Messages API (`POST /2010-04-01/Accounts/{sid}/Messages.json`)
//! for the SMS tests: it checks requests as Twilio does (basic auth, form fields, E.164
//! numbers) and answers in Twilio's JSON shapes, records what it saw, and can fail on purpose
//! (`fail_next`) or go away altogether (`set_down`, connections refused, same port after).
//!
//! `sign` computes Twilio's request signature with its own SHA-1, HMAC and base64 (written
//! here from the published algorithm, independently of `web`'s), so tests check the server's
//! verifier against a second implementation.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A message the fake took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeSms {
    /// `SM` and 32 hex digits.
    pub sid: String,
    pub to: String,
    /// `From`, or `MessagingServiceSid` when that was sent instead.
    pub from: String,
    pub body: String,
    pub status_callback: Option<String>,
}

/// A request the fake answered, taken or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRequest {
    pub method: String,
    pub path: String,
    /// Whether `Authorization: Basic` carried the right sid and token.
    pub auth_ok: bool,
    pub content_type: Option<String>,
    /// The form fields, decoded, in order (empty when the body was not a form).
    pub fields: Vec<(String, String)>,
    /// What the fake answered.
    pub status: u16,
}

impl FakeRequest {
    /// The first value of form field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Recorded {
    messages: Vec<FakeSms>,
    requests: Vec<FakeRequest>,
    /// The next `.0` requests are answered with status `.1`.
    failures: (usize, u16),
}

struct Inner {
    account_sid: String,
    auth_token: String,
    recorded: Mutex<Recorded>,
}

/// The fake; the server stops when it is dropped.
pub struct TwilioFake {
    inner: Arc<Inner>,
    addr: SocketAddr,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl TwilioFake {
    /// Starts a fake of the account `account_sid` with `auth_token` on 127.0.0.1, any port.
    pub async fn start(account_sid: &str, auth_token: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Twilio fake");
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            recorded: Mutex::default(),
        });
        let server = serve(listener, inner.clone());
        Self {
            inner,
            addr,
            server: Mutex::new(Some(server)),
        }
    }

    /// `http://127.0.0.1:{port}` (no trailing slash), for `TwilioSettings::base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The messages taken, oldest first.
    pub fn messages(&self) -> Vec<FakeSms> {
        self.inner.recorded.lock().unwrap().messages.clone()
    }

    /// Every request answered, oldest first.
    pub fn requests(&self) -> Vec<FakeRequest> {
        self.inner.recorded.lock().unwrap().requests.clone()
    }

    /// Answers the next `n` requests with HTTP `status` (in Twilio's error shape) whatever
    /// they hold.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.inner.recorded.lock().unwrap().failures = (n, status);
    }

    /// Down: the listener is closed, so connections are refused (every answer says
    /// `Connection: close`, so no kept-alive connection lingers). Up again: listens on the
    /// same port.
    pub async fn set_down(&self, down: bool) {
        let running = self.server.lock().unwrap().take();
        if down {
            if let Some(server) = running {
                server.abort();
                let _ = server.await;
            }
            return;
        }
        if let Some(server) = running {
            // Already up.
            *self.server.lock().unwrap() = Some(server);
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    eprintln!(
                        "Twilio fake: re-binding {} failed ({e}), retrying",
                        self.addr
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!(
                    "the Twilio fake could not listen on {} again: {e}",
                    self.addr
                ),
            }
        };
        *self.server.lock().unwrap() = Some(serve(listener, self.inner.clone()));
    }

    /// Waits until `n` messages were taken and returns them; panics after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<FakeSms> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "the Twilio fake got {} message(s) of {n} within {timeout:?}; requests: {:#?}",
                messages.len(),
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for TwilioFake {
    fn drop(&mut self) {
        if let Some(server) = self.server.lock().unwrap().take() {
            server.abort();
        }
    }
}

fn serve(listener: TcpListener, inner: Arc<Inner>) -> JoinHandle<()> {
    let app =
        Router::new()
            .fallback(handle)
            .with_state(inner)
            .layer(axum::middleware::map_response(
                |mut response: Response| async move {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    response
                },
            ));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

/// Twilio's error shape.
fn twilio_error(status: u16, code: u32, message: &str) -> Response {
    let mut body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    });
    if code == 20003 {
        body["detail"] = json!("Your AccountSid or AuthToken was incorrect.");
    }
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response();
    if status == 401 {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Twilio API\""),
        );
    }
    response
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_form = content_type.as_deref().is_some_and(|c| {
        c.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    let fields = if is_form {
        form_decode(&String::from_utf8_lossy(&body))
    } else {
        Vec::new()
    };
    let expected_auth = format!(
        "Basic {}",
        base64(format!("{}:{}", inner.account_sid, inner.auth_token).as_bytes())
    );
    let auth_ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == expected_auth);

    let mut request = FakeRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        auth_ok,
        content_type,
        fields,
        status: 0,
    };
    let mut recorded = inner.recorded.lock().unwrap();
    let (response, message) = answer(&inner, &mut recorded, &method, &request);
    request.status = response.status().as_u16();
    recorded.requests.push(request);
    if let Some(message) = message {
        recorded.messages.push(message);
    }
    response
}

/// Twilio's answer to one request, and the message it took if any.
fn answer(
    inner: &Inner,
    recorded: &mut Recorded,
    method: &Method,
    request: &FakeRequest,
) -> (Response, Option<FakeSms>) {
    if recorded.failures.0 > 0 {
        recorded.failures.0 -= 1;
        let status = recorded.failures.1;
        let reason = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Injected failure");
        return (
            twilio_error(status, 20000 + u32::from(status), reason),
            None,
        );
    }
    if !request.auth_ok {
        return (twilio_error(401, 20003, "Authenticate"), None);
    }
    let messages_path = format!("/2010-04-01/Accounts/{}/Messages.json", inner.account_sid);
    if request.path != messages_path {
        return (
            twilio_error(
                404,
                20404,
                &format!("The requested resource {} was not found", request.path),
            ),
            None,
        );
    }
    if *method != Method::POST {
        return (twilio_error(405, 20004, "Method not allowed"), None);
    }
    let to = request.field("To").unwrap_or_default();
    let from = request.field("From").filter(|f| !f.is_empty());
    let service = request
        .field("MessagingServiceSid")
        .filter(|f| !f.is_empty());
    let body = request.field("Body").unwrap_or_default();
    if to.is_empty() {
        return (
            twilio_error(400, 21604, "A 'To' phone number is required."),
            None,
        );
    }
    if !is_e164(to) {
        return (
            twilio_error(
                400,
                21211,
                &format!("The 'To' number {to} is not a valid phone number."),
            ),
            None,
        );
    }
    let Some(sender) = from.or(service) else {
        return (
            twilio_error(
                400,
                21603,
                "A 'From' or 'MessagingServiceSid' parameter is required to send a message.",
            ),
            None,
        );
    };
    if body.is_empty() {
        return (twilio_error(400, 21602, "Message body is required."), None);
    }
    if service.is_none() && !is_e164(sender) {
        return (
            twilio_error(
                400,
                21212,
                &format!("The 'From' number {sender} is not a valid phone number, shortcode, or alphanumeric sender ID."),
            ),
            None,
        );
    }
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    let now = chrono::Utc::now().to_rfc2822();
    let status = if from.is_some() { "queued" } else { "accepted" };
    let answer = json!({
        "account_sid": inner.account_sid,
        "api_version": "2010-04-01",
        "body": body,
        "date_created": now,
        "date_sent": null,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": from,
        "messaging_service_sid": service,
        "num_media": "0",
        "num_segments": "1",
        "price": null,
        "price_unit": "USD",
        "sid": sid,
        "status": status,
        "subresource_uris": {
            "media": format!("/2010-04-01/Accounts/{}/Messages/{sid}/Media.json", inner.account_sid),
        },
        "to": to,
        "uri": format!("/2010-04-01/Accounts/{}/Messages/{sid}.json", inner.account_sid),
    });
    let message = FakeSms {
        sid,
        to: to.to_owned(),
        from: sender.to_owned(),
        body: body.to_owned(),
        status_callback: request
            .field("StatusCallback")
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
    };
    (
        (StatusCode::CREATED, axum::Json(answer)).into_response(),
        Some(message),
    )
}

/// `+` and 8 to 15 digits, the first not 0 (as Twilio wants `To`).
fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

/// Decodes `application/x-www-form-urlencoded` (`+` is a space, `%XX` a byte).
pub fn form_decode(text: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    match s
                        .get(i + 1..i + 3)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        Some(byte) => {
                            out.push(byte);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Twilio's request signature, written again from the published algorithm
// (https://www.twilio.com/docs/usage/security#validating-requests): base64 of HMAC-SHA1 keyed
// with the auth token over the full URL followed by each POST parameter's name and value,
// sorted by name (Unix byte order), then by value.
// ---------------------------------------------------------------------------------------------

/// Twilio's `X-Twilio-Signature` of a POST of `params` to `url`.
pub fn sign<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    sorted.sort_by(|a, b| {
        a.0.as_bytes()
            .cmp(b.0.as_bytes())
            .then(a.1.as_bytes().cmp(b.1.as_bytes()))
    });
    let mut data = url.as_bytes().to_vec();
    for (key, value) in sorted {
        data.extend_from_slice(key.as_bytes());
        data.extend_from_slice(value.as_bytes());
    }
    base64(&hmac_sha1(auth_token.as_bytes(), &data))
}

/// Posts `params` as a form to `url` signed with `auth_token` in `X-Twilio-Signature`, as
/// Twilio posts a status callback; with `tamper`, a field is changed after signing. Returns
/// the HTTP status.
pub async fn post_status_callback<K: AsRef<str>, V: AsRef<str>>(
    url: &str,
    auth_token: &str,
    params: &[(K, V)],
    tamper: bool,
) -> u16 {
    let mut fields: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
        .collect();
    let signature = sign(auth_token, url, &fields);
    if tamper {
        match fields.iter_mut().find(|(k, _)| k == "MessageStatus") {
            Some((_, status)) => {
                *status = if status == "delivered" {
                    "failed"
                } else {
                    "delivered"
                }
                .to_owned()
            }
            None => fields.push(("Tampered".to_owned(), "1".to_owned())),
        }
    }
    reqwest::Client::new()
        .post(url)
        .header("X-Twilio-Signature", signature)
        .header("User-Agent", "TwilioProxy/1.1")
        .form(&fields)
        .send()
        .await
        .unwrap_or_else(|e| panic!("post the status callback to {url}: {e}"))
        .status()
        .as_u16()
}

/// SHA-1 (FIPS 180-4).
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in message.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
            *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        for t in 16..80 {
            w[t] = (w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (t, word) in w.iter().enumerate() {
            let (f, k) = match t {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let temp = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*word);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = temp;
        }
        for (state, value) in h.iter_mut().zip([a, b, c, d, e]) {
            *state = state.wrapping_add(value);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// HMAC-SHA1 (RFC 2104).
pub fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..20].copy_from_slice(&sha1(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(message);
    let mut outer: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&sha1(&inner));
    sha1(&outer)
}

/// Standard base64 with padding (RFC 4648).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(chunk.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(chunk.get(2).copied().unwrap_or(0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
