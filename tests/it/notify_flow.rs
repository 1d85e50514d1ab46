//! Notifications end to end, as they happen in production: the real `supporttracker serve`
//! (its outbox consumer and delivery worker), a real SMTP server process (aiosmtpd), a local
//! fake of Twilio's API that checks every request, and signed status callbacks. Covers: who
//! hears of what, working links, nothing sent twice, a crash between sending and recording,
//! a provider outage followed by recovery, and messages that cannot go out saying why.

use std::time::Duration;

use serde_json::{json, Value};
use st_tests::process::{eventually, Server};
use st_tests::smtp::SmtpServer;
use st_tests::twilio_fake::{post_status_callback, TwilioFake};
use st_tests::TestDb;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token-for-tests";
const FROM: &str = "+15550001111";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server on a known port (so `ST_PUBLIC_URL`, the base of links and of Twilio's callback
/// URL, is its own address), sending through `smtp` and `twilio`.
fn server(
    db: &TestDb,
    smtp: Option<&str>,
    twilio: Option<&TwilioFake>,
    extra: &[(&str, &str)],
) -> Server {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let public = format!("http://127.0.0.1:{port}");
    let twilio_base = twilio.map(TwilioFake::base_url);
    let mut env: Vec<(&str, &str)> = vec![
        ("ST_LISTEN", &listen),
        ("ST_PUBLIC_URL", &public),
        ("ST_NOTIFY_RETRY_SECONDS", "1"),
        ("ST_NOTIFY_POLL_MS", "100"),
        ("ST_NOTIFY_TIMEOUT_SECONDS", "5"),
    ];
    if let Some(url) = smtp {
        env.push(("ST_SMTP_URL", url));
        env.push(("ST_SMTP_FROM", "support@msp.test"));
    }
    if let Some(base) = &twilio_base {
        env.extend([
            ("ST_TWILIO_ACCOUNT_SID", SID),
            ("ST_TWILIO_AUTH_TOKEN", TOKEN),
            ("ST_TWILIO_FROM", FROM),
            ("ST_TWILIO_BASE_URL", base.as_str()),
        ]);
    }
    env.extend_from_slice(extra);
    Server::start(&db.url, &env)
}

async fn api(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, server.url(path))
        .bearer_auth(server.token());
    if let Some(body) = body {
        request = request.json(&body);
    }
    let reply = request.send().await.unwrap();
    let status = reply.status().as_u16();
    let text = reply.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A company with Ann, who has an email address and a cell phone.
async fn customer(server: &Server, cell_phone: &str) -> (String, String) {
    let (status, company) = api(
        server,
        reqwest::Method::POST,
        "/api/v1/companies",
        Some(json!({"name": "Northwind"})),
    )
    .await;
    assert_eq!(status, 201, "{company}");
    let company_id = company["id"].as_str().unwrap().to_owned();
    let (status, contact) = api(
        server,
        reqwest::Method::POST,
        &format!("/api/v1/companies/{company_id}/contacts"),
        Some(
            json!({"name": "Ann Example", "email": "ann@northwind.test", "cell_phone": cell_phone}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{contact}");
    (company_id, contact["id"].as_str().unwrap().to_owned())
}

async fn raise(server: &Server, company_id: &str, contact_id: &str, title: &str) -> String {
    let (status, order) = api(
        server,
        reqwest::Method::POST,
        "/api/v1/work-orders",
        Some(json!({"company_id": company_id, "contact_id": contact_id, "title": title, "priority": "high"})),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    order["id"].as_str().unwrap().to_owned()
}

/// The notifications' statuses by channel and kind (from the delivery log's read model).
async fn log(db: &TestDb) -> Vec<(String, String, String, String, i32)> {
    sqlx::query_as(
        "SELECT kind, channel, address, status, attempts FROM notifications ORDER BY queued_at, channel",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

async fn wait_status(db: &TestDb, what: &str, sql: &'static str) {
    eventually(Duration::from_secs(30), what, || async {
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap();
        n > 0
    })
    .await;
}

/// The path of the first link in `text` that starts with `base`.
fn link_path(text: &str, base: &str) -> String {
    let start = text
        .find(base)
        .unwrap_or_else(|| panic!("no link to {base} in {text}"));
    let link: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '<')
        .collect();
    link[base.len()..].to_owned()
}

#[tokio::test]
async fn customers_and_staff_hear_of_their_work_once_with_working_links() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start();
    let twilio = TwilioFake::start(SID, TOKEN).await;
    let server = server(&db, Some(&smtp.url()), Some(&twilio), &[])
        .with_owner(&db.url)
        .await;
    let base = server.url("");
    let (company_id, contact_id) = customer(&server, "+1 (555) 010-0199").await;
    let order_id = raise(&server, &company_id, &contact_id, "Printer offline").await;

    // The customer hears by email and SMS, each with a link to follow the order.
    let mails = smtp.wait_for(1, Duration::from_secs(30)).await;
    let mail = &mails[0];
    assert_eq!(mail.rcpt_tos, vec!["ann@northwind.test".to_string()]);
    assert_eq!(
        mail.subject().as_deref(),
        Some("Work order #1 received: Printer offline")
    );
    assert!(mail.header("From").unwrap().contains("support@msp.test"));
    assert!(
        mail.header("From").unwrap().contains("Acme IT"),
        "the tenant's name shows as the sender"
    );
    let text = mail.text().unwrap();
    assert!(text.starts_with("Hello Ann Example,"), "{text}");
    let view = link_path(&text, &base);
    assert!(view.starts_with(&format!("/l/{order_id}/")), "{view}");
    let page = reqwest::get(server.url(&view)).await.unwrap();
    assert_eq!(
        page.status(),
        200,
        "the customer's link opens the order's page"
    );
    let email_id: String = sqlx::query_scalar(
        "SELECT id::text FROM notifications WHERE channel = 'email' AND kind = 'work_order_created'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        mail.message_id().unwrap(),
        format!("{email_id}@127.0.0.1"),
        "the notification's id is the Message-ID"
    );
    let texts = twilio.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(texts[0].to, "+15550100199");
    assert_eq!(texts[0].from, FROM);
    assert!(
        texts[0].body.contains(&format!("{base}/l/{order_id}/")),
        "{}",
        texts[0].body
    );
    let requests = twilio.requests();
    assert!(requests
        .iter()
        .all(|r| r.auth_ok && r.path == format!("/2010-04-01/Accounts/{SID}/Messages.json")));

    // Assigned to the owner by the owner: nobody is told their own doing. Then in progress:
    // the customer hears again.
    let (status, _) = api(
        &server,
        reqwest::Method::PATCH,
        &format!("/api/v1/work-orders/{order_id}"),
        Some(json!({"assignee_id": server.owner.as_ref().unwrap().user_id})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = api(
        &server,
        reqwest::Method::PATCH,
        &format!("/api/v1/work-orders/{order_id}"),
        Some(json!({"status": "in_progress"})),
    )
    .await;
    assert_eq!(status, 200);
    let mails = smtp.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(
        mails[1].subject().as_deref(),
        Some("Work order #1 is now in progress")
    );
    twilio.wait_for(2, Duration::from_secs(30)).await;

    // An invited technician gets the invitation by email; its link works.
    let (status, invited) = api(
        &server,
        reqwest::Method::POST,
        "/api/v1/users",
        Some(json!({"email": "tom@acme.test", "name": "Tom Tech", "role": "technician"})),
    )
    .await;
    assert_eq!(status, 201, "{invited}");
    let mails = smtp.wait_for(3, Duration::from_secs(30)).await;
    let invitation = &mails[2];
    assert_eq!(invitation.rcpt_tos, vec!["tom@acme.test".to_string()]);
    let accept = link_path(&invitation.text().unwrap(), &base);
    assert!(accept.starts_with("/invitation/"), "{accept}");
    let page = reqwest::get(server.url(&accept)).await.unwrap();
    assert_eq!(
        page.status(),
        200,
        "the invitation link opens the password form"
    );

    // Twilio reports delivery: a signed report counts, a tampered one is refused and changes
    // nothing, a repeated one appends nothing.
    let sms_id: String = sqlx::query_scalar(
        "SELECT id::text FROM notifications WHERE channel = 'sms' AND kind = 'work_order_created'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let tenant_id = &server.owner.as_ref().unwrap().tenant_id;
    let callback = texts[0]
        .status_callback
        .clone()
        .expect("a status callback URL");
    assert_eq!(
        callback,
        format!("{base}/webhooks/twilio/{tenant_id}/{sms_id}")
    );
    let report = [
        ("AccountSid", SID),
        ("MessageSid", texts[0].sid.as_str()),
        ("MessageStatus", "delivered"),
        ("To", "+15550100199"),
    ];
    assert_eq!(
        post_status_callback(&callback, TOKEN, &report, true).await,
        403
    );
    assert_eq!(
        post_status_callback(&callback, "not-the-token", &report, false).await,
        403
    );
    assert_eq!(
        post_status_callback(&callback, TOKEN, &report, false).await,
        204
    );
    assert_eq!(
        post_status_callback(&callback, TOKEN, &report, false).await,
        204
    );
    wait_status(
        &db,
        "the delivery report",
        "SELECT count(*) FROM notifications WHERE status = 'delivered'",
    )
    .await;
    let reports = db
        .count("SELECT count(*) FROM events WHERE event_type = 'NotificationDeliveryReported'")
        .await;
    assert_eq!(reports, 1, "a repeated report appends nothing");

    // Nothing more goes out, and each message went once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.messages().len(), 3);
    assert_eq!(twilio.messages().len(), 2);
    let rows = log(&db).await;
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert!(
        rows.iter().all(|r| r.3 == "sent" || r.3 == "delivered"),
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r.4 == 1), "one attempt each: {rows:?}");
    let sent = db
        .count("SELECT count(*) FROM events WHERE event_type = 'NotificationSent'")
        .await;
    assert_eq!(sent, 5);
    // No secret link is in the log or the read models; the message in the log hides it.
    let leaked = db
        .count(&format!(
            "SELECT count(*) FROM events WHERE payload::text LIKE '%{}%'",
            view.rsplit('/').next().unwrap()
        ))
        .await;
    assert_eq!(
        leaked, 0,
        "the customer link's token is not in the event log"
    );
    server.stop();
}

/// The process dies after the SMTP server took a message and before "sent" is recorded: the
/// restarted server does not send it again; it marks it unconfirmed (the log offers a resend)
/// and goes on with the next messages.
#[tokio::test]
async fn a_crash_between_sending_and_recording_never_sends_twice() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start();
    let mut first = server(
        &db,
        Some(&smtp.url()),
        None,
        &[("ST_TEST_EXIT_AFTER_SEND", "1")],
    )
    .with_owner(&db.url)
    .await;
    let (company_id, contact_id) = customer(&first, "").await;
    // The process may stop before it answers: the order is committed before the message
    // goes out, so the answer is not what this test waits for.
    let _ = reqwest::Client::new()
        .post(first.url("/api/v1/work-orders"))
        .bearer_auth(first.token())
        .json(&json!({"company_id": company_id, "contact_id": contact_id,
                      "title": "Server down", "priority": "high"}))
        .send()
        .await;
    smtp.wait_for(1, Duration::from_secs(30)).await;
    let status = first
        .wait_exit(Duration::from_secs(30))
        .expect("the server stops right after the hand-over");
    assert_eq!(status.code(), Some(75));
    let attempted = db
        .count("SELECT count(*) FROM events WHERE event_type = 'NotificationAttempted'")
        .await;
    let sent = db
        .count("SELECT count(*) FROM events WHERE event_type = 'NotificationSent'")
        .await;
    assert_eq!((attempted, sent), (1, 0), "attempt recorded, outcome not");

    let owner = first.owner.clone();
    drop(first);
    let mut second = server(&db, Some(&smtp.url()), None, &[]);
    second.owner = owner;
    wait_status(
        &db,
        "the interrupted attempt marked unconfirmed",
        "SELECT count(*) FROM notifications WHERE status = 'unconfirmed'",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.messages().len(), 1, "not sent a second time");

    // The next message goes out as usual.
    raise(&second, &company_id, &contact_id, "Second problem").await;
    let mails = smtp.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(
        mails[1].subject().as_deref(),
        Some("Work order #2 received: Second problem")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.messages().len(), 2);
    second.stop();
}

/// The SMTP server refuses connections and Twilio answers 500, then both come back: every
/// message goes out exactly once, after retries with back-off.
#[tokio::test]
async fn a_provider_outage_then_recovery_delivers_every_message_once() {
    let db = TestDb::new().await;
    let mut smtp = SmtpServer::start();
    let smtp_url = smtp.url();
    let port = smtp.port;
    smtp.stop();
    let twilio = TwilioFake::start(SID, TOKEN).await;
    twilio.fail_next(1_000, 500);
    let server = server(&db, Some(&smtp_url), Some(&twilio), &[])
        .with_owner(&db.url)
        .await;
    let (company_id, contact_id) = customer(&server, "+44 20 7946 0000").await;
    for title in ["One", "Two", "Three"] {
        raise(&server, &company_id, &contact_id, title).await;
    }
    eventually(Duration::from_secs(30), "six messages retrying", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM notifications WHERE status = 'retrying' AND attempts >= 1",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        n == 6
    })
    .await;
    let errors: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT channel || ': ' || last_error FROM notifications ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("email") && e.contains(&port.to_string())),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("sms") && e.contains("500")),
        "{errors:?}"
    );

    // Recovery.
    let smtp = SmtpServer::start_on(port);
    twilio.fail_next(0, 500);
    let mails = smtp.wait_for(3, Duration::from_secs(60)).await;
    let texts = twilio.wait_for(3, Duration::from_secs(60)).await;
    wait_status(
        &db,
        "all sent",
        "SELECT (count(*) FILTER (WHERE status = 'sent') = 6)::int::int8 FROM notifications",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.messages().len(), 3, "each email once");
    assert_eq!(twilio.messages().len(), 3, "each SMS once");
    let mut ids: Vec<String> = mails.iter().map(|m| m.message_id().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    let mut bodies: Vec<&str> = texts.iter().map(|t| t.body.as_str()).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 3);
    let retried = db
        .count("SELECT count(*) FROM notifications WHERE attempts > 1")
        .await;
    assert_eq!(retried, 6, "every message needed more than one attempt");
    server.stop();
}

/// Without providers, or for people who cannot or do not want to be reached, nothing is sent
/// and the log says why; the rest of the system works as before.
#[tokio::test]
async fn messages_that_cannot_go_out_are_recorded_with_the_reason() {
    let db = TestDb::new().await;
    let server = server(&db, None, None, &[]).with_owner(&db.url).await;
    let (company_id, contact_id) = customer(&server, "555.0100").await;
    let order_id = raise(&server, &company_id, &contact_id, "No mail server").await;
    wait_status(
        &db,
        "the email skipped for want of a server",
        "SELECT count(*) FROM notifications WHERE channel = 'email' AND status = 'skipped'
            AND last_error LIKE 'no SMTP server is set up%'",
    )
    .await;
    // The cell phone has no country code: no SMS was planned for it.
    let sms = db
        .count("SELECT count(*) FROM notifications WHERE channel = 'sms'")
        .await;
    assert_eq!(sms, 0);
    let (status, order) = api(
        &server,
        reqwest::Method::GET,
        &format!("/api/v1/work-orders/{order_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{order}");

    // A contact without any address: skipped, saying so.
    let (status, contact) = api(
        &server,
        reqwest::Method::POST,
        &format!("/api/v1/companies/{company_id}/contacts"),
        Some(json!({"name": "Bob Nomail"})),
    )
    .await;
    assert_eq!(status, 201, "{contact}");
    raise(
        &server,
        &company_id,
        contact["id"].as_str().unwrap(),
        "Nobody to tell",
    )
    .await;
    wait_status(
        &db,
        "the message skipped for want of an address",
        "SELECT count(*) FROM notifications WHERE status = 'skipped'
            AND last_error = 'Bob Nomail has no email address or cell phone'",
    )
    .await;
    server.stop();
}

/// A message with a PDF attached (as invoices will be sent) reaches the SMTP server with the
/// file's bytes intact. The message is queued straight into the log, as the billing consumer
/// will queue it; the running server's delivery worker sends it.
#[tokio::test]
async fn an_attached_pdf_arrives_intact() {
    use domain::notification::{
        AttachmentRef, Channel, Content, Notification, NotificationCommand, Queued, Recipient,
        RecipientKind,
    };
    let db = TestDb::new().await;
    let smtp = SmtpServer::start();
    let server = server(&db, Some(&smtp.url()), None, &[])
        .with_owner(&db.url)
        .await;
    let tenant_id: uuid::Uuid = server.owner.as_ref().unwrap().tenant_id.parse().unwrap();
    let mut pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n".to_vec();
    pdf.extend((0..=255u8).cycle().take(70_000));
    pdf.extend_from_slice(b"\r\n.\r\n%%EOF\n");
    let sha256 = commands::identity::token_digest_bytes(&pdf);
    sqlx::query(
        "INSERT INTO asset_document_blobs (tenant_id, sha256, content) VALUES ($1, $2, $3)",
    )
    .bind(tenant_id)
    .bind(&sha256)
    .bind(&pdf)
    .execute(&db.pool)
    .await
    .unwrap();
    let store = commands::EventStore::new(db.pool.clone());
    let id = uuid::Uuid::new_v4();
    store
        .create::<Notification>(
            &id.to_string(),
            NotificationCommand::Queue(Box::new(Queued {
                kind: domain::template::Kind::InvoiceIssued,
                channel: Channel::Email,
                recipient: Recipient {
                    kind: RecipientKind::Address,
                    id: None,
                    name: "Accounts".into(),
                    address: "accounts@northwind.test".into(),
                },
                cause: None,
                company_id: None,
                work_order_id: None,
                values: Default::default(),
                content: Content {
                    subject: "Invoice 2026-0042 from Acme IT".into(),
                    text: "Please find attached invoice 2026-0042.".into(),
                    html: "<p>Please find attached invoice <b>2026-0042</b>.</p>".into(),
                },
                link_secret: None,
                attachments: vec![AttachmentRef {
                    file_name: "Invoice 2026-0042.pdf".into(),
                    content_type: "application/pdf".into(),
                    sha256,
                    size: pdf.len() as u64,
                }],
                resend_of: None,
                queued_at: chrono::Utc::now(),
            })),
            &(),
            &commands::EventMeta::new(tenant_id, "test"),
        )
        .await
        .unwrap();
    let mails = smtp.wait_for(1, Duration::from_secs(30)).await;
    let attachments = mails[0].attachments();
    assert_eq!(
        attachments.len(),
        1,
        "{:?}",
        mails[0].header("Content-Type")
    );
    assert_eq!(attachments[0].0, "Invoice 2026-0042.pdf");
    assert_eq!(attachments[0].1, "application/pdf");
    assert!(attachments[0].2 == pdf, "the PDF's bytes are intact");
    assert!(mails[0].html().unwrap().contains("<b>2026-0042</b>"));
    wait_status(
        &db,
        "sent",
        "SELECT count(*) FROM notifications WHERE status = 'sent'",
    )
    .await;
    server.stop();
}

/// A template that needs a value the message does not have refuses to send and names it;
/// the log records the message as failed with that reason.
#[tokio::test]
async fn a_message_missing_a_value_is_refused_naming_it() {
    use domain::notification::{Channel, Recipient, RecipientKind};
    use domain::template::Kind;
    use web::notify::queue::{queue, Draft, QueueOutcome};
    let app = st_tests::TestApp::new().await;
    let state = web::state::AppState::new(
        app.db.pool.clone(),
        app.store.clone(),
        web::state::Settings::local(Duration::from_secs(2)),
    );
    let tenant_id = app.owner.tenant_id;
    let (tenant, _) = app
        .store
        .load::<domain::tenant::Tenant>(tenant_id, &tenant_id.to_string())
        .await
        .unwrap();
    let draft = Draft {
        tenant_id,
        kind: Kind::WorkOrderStatusChanged,
        recipient: Recipient {
            kind: RecipientKind::Address,
            id: None,
            name: "Ann".into(),
            address: "ann@northwind.test".into(),
        },
        cause: None,
        company_id: None,
        work_order_id: None,
        // No {status} and no {title}.
        values: [
            ("organisation", "Acme IT"),
            ("company", "Northwind"),
            ("contact", "Ann"),
            ("work_order", "#7"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        link_secret: None,
        attachments: vec![],
        resend_of: None,
    };
    let id = uuid::Uuid::new_v4();
    let outcome = queue(
        &state,
        &tenant,
        &draft,
        Channel::Email,
        id,
        None,
        &commands::EventMeta::new(tenant_id, "test"),
    )
    .await
    .unwrap();
    let QueueOutcome::Refused(_, reason) = outcome else {
        panic!("queued without its values: {outcome:?}");
    };
    assert!(
        reason.contains("{title}") && reason.contains("{status}"),
        "{reason}"
    );
    app.settle().await;
    let (status, error): (String, String) =
        sqlx::query_as("SELECT status, last_error FROM notifications WHERE id = $1")
            .bind(id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(status, "failed");
    assert_eq!(error, reason);
    // Nothing was queued for the worker.
    let queued = app
        .db
        .count("SELECT count(*) FROM events WHERE event_type = 'NotificationQueued'")
        .await;
    assert_eq!(queued, 0);
}

/// An issued invoice reaches the company's billing contact by email with its PDF attached;
/// a payment sends a receipt.
#[tokio::test]
async fn issued_invoices_are_emailed_to_billing_contacts_with_the_pdf() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start();
    let server = server(&db, Some(&smtp.url()), None, &[])
        .with_owner(&db.url)
        .await;
    let (status, company) = api(
        &server,
        reqwest::Method::POST,
        "/api/v1/companies",
        Some(json!({"name": "Northwind", "monthly_rate": "450.00"})),
    )
    .await;
    assert_eq!(status, 201, "{company}");
    let company_id = company["id"].as_str().unwrap().to_owned();
    let (status, contact) = api(
        &server,
        reqwest::Method::POST,
        &format!("/api/v1/companies/{company_id}/contacts"),
        Some(json!({"name": "Bea Billing", "email": "accounts@northwind.test", "billing": true})),
    )
    .await;
    assert_eq!(status, 201, "{contact}");
    let (status, terms) = api(
        &server,
        reqwest::Method::PUT,
        &format!("/api/v1/companies/{company_id}/billing"),
        Some(json!({"billing_day": 1, "start_date": "2026-11-01", "payment_terms_days": 30})),
    )
    .await;
    assert_eq!(status, 200, "{terms}");
    let (status, run) = api(
        &server,
        reqwest::Method::POST,
        "/api/v1/billing/runs",
        Some(json!({"as_of": "2026-11-01"})),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let mails = smtp.wait_for(1, Duration::from_secs(30)).await;
    let mail = &mails[0];
    assert_eq!(mail.rcpt_tos, vec!["accounts@northwind.test".to_string()]);
    assert_eq!(mail.subject().as_deref(), Some("Invoice 1 from Acme IT"));
    let text = mail.text().unwrap();
    assert!(
        text.contains("450.00") && text.contains("2026-12-01"),
        "{text}"
    );
    let attachments = mail.attachments();
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0].0, "Invoice 1.pdf");
    let pdf = &attachments[0].2;
    let (status, _) = api(&server, reqwest::Method::GET, "/api/v1/invoices", None).await;
    assert_eq!(status, 200);
    let document = lopdf::Document::load_mem(pdf).unwrap();
    let pages: Vec<u32> = document.get_pages().keys().copied().collect();
    let content = document.extract_text(&pages).unwrap();
    assert!(
        content.contains("Northwind") && content.contains("450.00"),
        "{content}"
    );

    // A payment sends a receipt with the balance after it.
    let (status, payment) = api(
        &server,
        reqwest::Method::POST,
        "/api/v1/payments",
        Some(
            json!({"company_id": company_id, "amount": "450.00", "received_on": "2026-11-20",
                    "method": "bank_transfer", "reference": "INV 1"}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{payment}");
    let mails = smtp.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(
        mails[1].subject().as_deref(),
        Some("Payment received: 450.00 USD")
    );
    assert!(
        mails[1].text().unwrap().contains("Balance now: 0.00"),
        "{:?}",
        mails[1].text()
    );
    server.stop();
}
