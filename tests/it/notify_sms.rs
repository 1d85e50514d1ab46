//! SMS sending (issue 6), the provider part, without a database: `send_twilio` against the
//! local Twilio fake (accepted, refused credentials, refused number, 5xx, outage and
//! recovery), `send_gateway` against a small gateway fake (form, JSON, GET; auth header
//! checked), and Twilio's request signatures computed by the fake's independent
//! implementation and by `web`'s.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use st_tests::twilio_fake::{self, TwilioFake};
use web::notify::sms::{self, BodyFormat, GatewaySettings, Method, SmsSent, TwilioSettings};
use web::notify::SendError;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "f00dfeedf00dfeedf00dfeedf00dfeed";
const FROM: &str = "+15005550006";
const TO: &str = "+15551230000";
const MG: &str = "MG0123456789abcdef0123456789abcdef";

fn settings(fake: &TwilioFake) -> TwilioSettings {
    let settings = TwilioSettings::new(SID, TOKEN, FROM).with_base_url(fake.base_url());
    settings.check().expect("valid settings");
    settings
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn send(client: &reqwest::Client, settings: &TwilioSettings) -> Result<SmsSent, SendError> {
    sms::send_twilio(client, settings, TO, "Your repair is ready", None).await
}

fn is_sm_sid(sid: &str) -> bool {
    sid.strip_prefix("SM")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[tokio::test]
async fn notify_sms_twilio_accepts_a_message() {
    let fake = TwilioFake::start(SID, TOKEN).await;
    let body = "Ticket #42 & \"urgent\" = done ✓ 🎉\nSee you";
    let sent = sms::send_twilio(
        &client(),
        &settings(&fake),
        TO,
        body,
        Some("https://st.example.test/hooks/twilio/status?n=1"),
    )
    .await
    .expect("accepted");

    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    assert!(request.auth_ok, "basic auth with sid:token");
    assert!(request
        .content_type
        .as_deref()
        .unwrap()
        .starts_with("application/x-www-form-urlencoded"));
    assert_eq!(request.field("To"), Some(TO));
    assert_eq!(request.field("From"), Some(FROM));
    assert_eq!(request.field("Body"), Some(body));
    assert_eq!(request.field("MessagingServiceSid"), None);
    assert_eq!(request.status, 201);

    let messages = fake.wait_for(1, Duration::from_secs(1)).await;
    assert_eq!(messages.len(), 1);
    assert!(is_sm_sid(&messages[0].sid), "{}", messages[0].sid);
    assert_eq!(sent.message_id, messages[0].sid);
    assert_eq!(sent.status, "queued");
    assert_eq!(messages[0].to, TO);
    assert_eq!(messages[0].from, FROM);
    assert_eq!(messages[0].body, body);
    assert_eq!(
        messages[0].status_callback.as_deref(),
        Some("https://st.example.test/hooks/twilio/status?n=1")
    );
}

#[tokio::test]
async fn notify_sms_twilio_messaging_service() {
    let fake = TwilioFake::start(SID, TOKEN).await;
    let mut settings = settings(&fake);
    settings.from = MG.into();
    settings.check().unwrap();
    let sent = send(&client(), &settings).await.unwrap();
    let request = &fake.requests()[0];
    assert_eq!(request.field("MessagingServiceSid"), Some(MG));
    assert_eq!(request.field("From"), None);
    assert_eq!(request.field("StatusCallback"), None);
    assert_eq!(sent.status, "accepted");
    assert_eq!(fake.messages()[0].from, MG);
    assert_eq!(fake.messages()[0].status_callback, None);
}

#[tokio::test]
async fn notify_sms_twilio_wrong_token_is_transient_and_named() {
    let fake = TwilioFake::start(SID, TOKEN).await;
    let wrong = "0123456789abcdef0123456789abcdef";
    let mut settings = settings(&fake);
    settings.auth_token = wrong.into();
    let error = send(&client(), &settings).await.unwrap_err();
    assert!(!error.permanent, "{error:?}");
    assert!(
        error.message.contains("account SID / auth token"),
        "{}",
        error.message
    );
    assert!(error.message.contains("401"), "{}", error.message);
    assert!(!error.message.contains(wrong), "{}", error.message);
    assert!(!error.message.contains(TOKEN), "{}", error.message);
    assert!(fake.messages().is_empty());
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert!(!requests[0].auth_ok);
    assert_eq!(requests[0].status, 401);

    // Another account's sid in the path with this account's credentials is refused too.
    let other = TwilioSettings::new("ACffffffffffffffffffffffffffffffff", TOKEN, FROM)
        .with_base_url(fake.base_url());
    let error = send(&client(), &other).await.unwrap_err();
    assert!(!error.permanent);
    assert!(fake.messages().is_empty());
}

#[tokio::test]
async fn notify_sms_twilio_invalid_number_is_permanent() {
    let fake = TwilioFake::start(SID, TOKEN).await;
    let error = sms::send_twilio(&client(), &settings(&fake), "12345", "hi", None)
        .await
        .unwrap_err();
    assert!(error.permanent, "{error:?}");
    assert_eq!(
        error.message,
        "Twilio refused the message (code 21211): The 'To' number 12345 is not a valid phone \
         number."
    );
    let error = sms::send_twilio(&client(), &settings(&fake), "", "hi", None)
        .await
        .unwrap_err();
    assert!(error.permanent);
    assert!(error.message.contains("21604"), "{}", error.message);
    let error = sms::send_twilio(&client(), &settings(&fake), TO, "", None)
        .await
        .unwrap_err();
    assert!(error.permanent);
    assert!(error.message.contains("21602"), "{}", error.message);
    assert!(fake.messages().is_empty());
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn notify_sms_twilio_server_errors_are_transient() {
    let fake = TwilioFake::start(SID, TOKEN).await;
    let client = client();
    let settings = settings(&fake);
    fake.fail_next(2, 500);
    for _ in 0..2 {
        let error = send(&client, &settings).await.unwrap_err();
        assert!(!error.permanent, "{error:?}");
        assert!(error.message.contains("500"), "{}", error.message);
    }
    let sent = send(&client, &settings).await.unwrap();
    assert_eq!(fake.messages().len(), 1);
    assert_eq!(sent.message_id, fake.messages()[0].sid);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 201]);

    for status in [503, 429] {
        fake.fail_next(1, status);
        let error = send(&client, &settings).await.unwrap_err();
        assert!(!error.permanent, "{status}: {error:?}");
        assert!(
            error.message.contains(&status.to_string()),
            "{}",
            error.message
        );
    }
    send(&client, &settings).await.unwrap();
    assert_eq!(fake.messages().len(), 2);
}

#[tokio::test]
async fn notify_sms_twilio_outage_and_recovery() {
    let fake = TwilioFake::start(SID, TOKEN).await;
    // One client throughout, as the app keeps one: no kept-alive connection may hide the
    // outage.
    let client = client();
    let settings = settings(&fake);
    send(&client, &settings).await.unwrap();
    let port = fake.addr().port();

    fake.set_down(true).await;
    let error = send(&client, &settings).await.unwrap_err();
    assert!(!error.permanent, "{error:?}");
    assert!(
        error.message.to_lowercase().contains("connection refused"),
        "{}",
        error.message
    );
    assert!(!error.message.contains(TOKEN));
    assert_eq!(fake.requests().len(), 1, "nothing reached the fake");

    fake.set_down(false).await;
    assert_eq!(fake.addr().port(), port);
    let sent = send(&client, &settings).await.unwrap();
    let messages = fake.wait_for(2, Duration::from_secs(1)).await;
    assert_eq!(sent.message_id, messages[1].sid);
}

#[tokio::test]
async fn notify_sms_twilio_timeout_is_transient() {
    // A listener that never answers: the client's timeout ends the request.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let settings = TwilioSettings::new(SID, TOKEN, FROM).with_base_url(format!("http://{addr}"));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let error = send(&client, &settings).await.unwrap_err();
    assert!(!error.permanent);
    assert!(error.message.contains("timed out"), "{}", error.message);
    holder.abort();
}

// ---------------------------------------------------------------------------------------------
// Generic gateway
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct GatewayHit {
    path: String,
    headers: HeaderMap,
    query: Option<String>,
    body: String,
}

type Hits = Arc<Mutex<Vec<GatewayHit>>>;

/// A small SMS gateway: `/form` wants `X-Api-Key: k3y` and a form, `/json` wants
/// `Authorization: Bearer t0k` and JSON, `/get` takes a query string, `/busy` is down.
async fn start_gateway() -> (String, Hits) {
    async fn form(State(hits): State<Hits>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
        let body = String::from_utf8(body.to_vec()).unwrap();
        record(&hits, "/form", &headers, None, &body);
        if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some("k3y") {
            return (StatusCode::UNAUTHORIZED, "bad api key".to_owned());
        }
        let fields = twilio_fake::form_decode(&body);
        let to = fields
            .iter()
            .find(|(k, _)| k == "to")
            .map(|(_, v)| v.as_str());
        if to == Some("+10000000000") {
            return (
                StatusCode::BAD_REQUEST,
                "invalid destination number".to_owned(),
            );
        }
        (
            StatusCode::OK,
            r#"{"messageId": "gw-form-1", "status": "sent"}"#.to_owned(),
        )
    }
    async fn json(State(hits): State<Hits>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
        let body = String::from_utf8(body.to_vec()).unwrap();
        record(&hits, "/json", &headers, None, &body);
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer t0k") {
            return (
                StatusCode::FORBIDDEN,
                "{\"error\": \"forbidden\"}".to_owned(),
            );
        }
        if serde_json::from_str::<serde_json::Value>(&body).is_err() {
            return (StatusCode::BAD_REQUEST, "not JSON".to_owned());
        }
        (StatusCode::CREATED, r#"{"id": 77}"#.to_owned())
    }
    async fn query(
        State(hits): State<Hits>,
        headers: HeaderMap,
        RawQuery(query): RawQuery,
    ) -> impl IntoResponse {
        record(&hits, "/get", &headers, query, "");
        "OK: queued"
    }
    async fn busy(State(hits): State<Hits>, headers: HeaderMap) -> impl IntoResponse {
        record(&hits, "/busy", &headers, None, "");
        (StatusCode::SERVICE_UNAVAILABLE, "try later")
    }
    fn record(hits: &Hits, path: &str, headers: &HeaderMap, query: Option<String>, body: &str) {
        hits.lock().unwrap().push(GatewayHit {
            path: path.to_owned(),
            headers: headers.clone(),
            query,
            body: body.to_owned(),
        });
    }

    let hits = Hits::default();
    let app = Router::new()
        .route("/form", post(form))
        .route("/json", post(json))
        .route("/get", get(query))
        .route("/busy", post(busy))
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, hits)
}

const TRICKY: &str = "He said \"hi\" & left;\nback at 5 = 50% {to} ✓ 🎉 a+b\\c";

#[tokio::test]
async fn notify_sms_gateway_form() {
    let (base, hits) = start_gateway().await;
    let mut settings = GatewaySettings {
        url: format!("{base}/form"),
        method: Method::Post,
        body: BodyFormat::Form,
        template: "to={to}&from={from}&text={body}&ref=st-{id}".into(),
        auth_header: Some("X-Api-Key: k3y".into()),
        from: "RepairShop".into(),
    };
    settings.check().unwrap();
    let sent = sms::send_gateway(&client(), &settings, "n-1", TO, TRICKY)
        .await
        .unwrap();
    assert_eq!(sent.message_id, "gw-form-1");
    assert_eq!(sent.status, "sent");
    let hit = hits.lock().unwrap()[0].clone();
    assert_eq!(hit.path, "/form");
    assert_eq!(
        hit.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        twilio_fake::form_decode(&hit.body),
        [
            ("to".to_owned(), TO.to_owned()),
            ("from".to_owned(), "RepairShop".to_owned()),
            ("text".to_owned(), TRICKY.to_owned()),
            ("ref".to_owned(), "st-n-1".to_owned()),
        ]
    );

    // A refused number is permanent, with what the gateway said.
    let error = sms::send_gateway(&client(), &settings, "n-2", "+10000000000", "hi")
        .await
        .unwrap_err();
    assert!(error.permanent);
    assert!(
        error.message.contains("invalid destination number") && error.message.contains("400"),
        "{}",
        error.message
    );

    // A wrong key: the gateway's 401 (permanent, as any 4xx but 408/429); the key is not shown.
    settings.auth_header = Some("X-Api-Key: nope-secret".into());
    let error = sms::send_gateway(&client(), &settings, "n-3", TO, "hi")
        .await
        .unwrap_err();
    assert!(error.message.contains("401"), "{}", error.message);
    assert!(!error.message.contains("nope-secret"));

    // Down for maintenance: transient.
    settings.url = format!("{base}/busy");
    let error = sms::send_gateway(&client(), &settings, "n-4", TO, "hi")
        .await
        .unwrap_err();
    assert!(!error.permanent);
    assert!(error.message.contains("503"), "{}", error.message);
}

#[tokio::test]
async fn notify_sms_gateway_json() {
    let (base, hits) = start_gateway().await;
    let settings = GatewaySettings {
        url: format!("{base}/json"),
        method: Method::Post,
        body: BodyFormat::Json,
        template: r#"{"messages": [{"destinations": [{"to": "{to}"}], "from": "{from}",
                      "text": "{body}"}], "callbackData": "{id}", "flash": false}"#
            .into(),
        auth_header: Some("Authorization: Bearer t0k".into()),
        from: "+4930123456".into(),
    };
    settings.check().unwrap();
    let sent = sms::send_gateway(&client(), &settings, "n-9", TO, TRICKY)
        .await
        .unwrap();
    assert_eq!(sent.message_id, "77");
    assert_eq!(sent.status, "accepted");
    let hit = hits.lock().unwrap()[0].clone();
    assert_eq!(hit.headers["content-type"], "application/json");
    assert_eq!(hit.headers["authorization"], "Bearer t0k");
    let body: serde_json::Value = serde_json::from_str(&hit.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "messages": [{"destinations": [{"to": TO}], "from": "+4930123456", "text": TRICKY}],
            "callbackData": "n-9",
            "flash": false,
        })
    );

    let mut wrong = settings.clone();
    wrong.auth_header = Some("Authorization: Bearer other".into());
    let error = sms::send_gateway(&client(), &wrong, "n-10", TO, "hi")
        .await
        .unwrap_err();
    assert!(error.message.contains("403"), "{}", error.message);
    assert!(!error.message.contains("Bearer other"));
}

#[tokio::test]
async fn notify_sms_gateway_get() {
    let (base, hits) = start_gateway().await;
    let settings = GatewaySettings {
        url: format!("{base}/get?user=acme"),
        method: Method::Get,
        body: BodyFormat::Form,
        template: "to={to}&msg={body}".into(),
        auth_header: None,
        from: String::new(),
    };
    settings.check().unwrap();
    let sent = sms::send_gateway(&client(), &settings, "n-1", TO, TRICKY)
        .await
        .unwrap();
    assert_eq!(sent.message_id, "200 OK");
    let hit = hits.lock().unwrap()[0].clone();
    assert_eq!(
        twilio_fake::form_decode(hit.query.as_deref().unwrap()),
        [
            ("user".to_owned(), "acme".to_owned()),
            ("to".to_owned(), TO.to_owned()),
            ("msg".to_owned(), TRICKY.to_owned()),
        ]
    );

    // Nobody listening: transient.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut gone = settings.clone();
    gone.url = format!("http://{addr}/get");
    let error = sms::send_gateway(&client(), &gone, "n-2", TO, "hi")
        .await
        .unwrap_err();
    assert!(!error.permanent);
    assert!(
        error.message.to_lowercase().contains("connection refused"),
        "{}",
        error.message
    );
}

// ---------------------------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------------------------

fn owned(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn notify_sms_fake_signs_twilios_published_example() {
    // https://www.twilio.com/docs/usage/security#validating-requests
    let params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ];
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    assert_eq!(
        twilio_fake::sign("12345", url, &params),
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    );
    assert!(sms::verify_twilio_signature(
        "12345",
        url,
        &owned(&params),
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    ));
    // The fake's primitives against known vectors (FIPS 180 "abc", RFC 2202 case 2).
    assert_eq!(
        hex::encode(twilio_fake::sha1(b"abc")),
        "a9993e364706816aba3e25717850c26c9cd0d89d"
    );
    assert_eq!(
        hex::encode(twilio_fake::hmac_sha1(
            b"Jefe",
            b"what do ya want for nothing?"
        )),
        "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
    );
    assert_eq!(
        hex::encode(twilio_fake::hmac_sha1(
            &[0xaa; 80],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "aa4ae5e15272d00e95705637ce8a3b55ed402112"
    );
    assert_eq!(twilio_fake::base64(b"fo"), "Zm8=");
    assert_eq!(twilio_fake::base64(b"foobar"), "Zm9vYmFy");
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter),
        2 => proptest::collection::vec(proptest::char::range('A', 'z'), 0..max)
            .prop_map(String::from_iter),
        1 => proptest::sample::select(vec!["To", "From", "Body", "MessageSid", ""])
            .prop_map(str::to_owned),
    ]
}

#[test]
fn notify_sms_signatures_agree_on_random_params() {
    let mut runner = TestRunner::new(Config {
        cases: 500,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        text(40),
        text(60),
        proptest::collection::vec((text(12), text(30)), 0..12),
        any::<proptest::sample::Index>(),
    );
    let cases = std::cell::Cell::new(0);
    runner
        .run(&strategy, |(token, url, params, pick)| {
            cases.set(cases.get() + 1);
            let fake = twilio_fake::sign(&token, &url, &params);
            let ours = sms::twilio_signature(&token, &url, &params);
            prop_assert_eq!(&fake, &ours);
            prop_assert_eq!(
                sms::verify_twilio_signature(&token, &url, &params, &fake),
                !token.is_empty()
            );
            // Any change of a value, of the URL or of the token breaks it.
            let other_url = format!("{url}/");
            let other_token = format!("{token}x");
            if !params.is_empty() {
                let mut tampered = params.clone();
                tampered[pick.index(params.len())].1.push('x');
                prop_assert!(!sms::verify_twilio_signature(
                    &token, &url, &tampered, &fake
                ));
            }
            prop_assert!(!sms::verify_twilio_signature(
                &token, &other_url, &params, &fake
            ));
            prop_assert!(!sms::verify_twilio_signature(
                &other_token,
                &url,
                &params,
                &fake
            ));
            Ok(())
        })
        .unwrap();
    assert!(cases.get() >= 500, "{} cases ran", cases.get());
}

/// A callback endpoint verifying with `web`'s verifier what the fake's helper posts.
#[tokio::test]
async fn notify_sms_signed_status_callbacks() {
    type Seen = Arc<Mutex<Vec<sms::StatusUpdate>>>;
    #[derive(Clone)]
    struct Callback {
        url: Arc<Mutex<String>>,
        seen: Seen,
    }
    async fn status(State(cb): State<Callback>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let params = twilio_fake::form_decode(&String::from_utf8_lossy(&body));
        let signature = headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let url = cb.url.lock().unwrap().clone();
        if !sms::verify_twilio_signature(TOKEN, &url, &params, signature) {
            return StatusCode::FORBIDDEN;
        }
        match sms::parse_status_callback(&params) {
            Some(update) => {
                cb.seen.lock().unwrap().push(update);
                StatusCode::NO_CONTENT
            }
            None => StatusCode::BAD_REQUEST,
        }
    }
    let callback = Callback {
        url: Arc::default(),
        seen: Seen::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/hooks/twilio/status?n=abc",
        listener.local_addr().unwrap()
    );
    *callback.url.lock().unwrap() = url.clone();
    let app = Router::new()
        .route("/hooks/twilio/status", post(status))
        .with_state(callback.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let params = [
        ("AccountSid", SID),
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30003"),
        ("To", TO),
        ("From", FROM),
    ];
    assert_eq!(
        twilio_fake::post_status_callback(&url, TOKEN, &params, false).await,
        204
    );
    assert_eq!(
        twilio_fake::post_status_callback(&url, TOKEN, &params, true).await,
        403
    );
    assert_eq!(
        twilio_fake::post_status_callback(&url, "another-token", &params, false).await,
        403
    );
    let seen = callback.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [sms::StatusUpdate {
            message_sid: "SM0123456789abcdef0123456789abcdef".into(),
            status: "undelivered".into(),
            error_code: Some("30003".into()),
        }]
    );
    server.abort();
}
