//! The notifications' console and API (issue 6): the delivery log with its filters, a message
//! as its recipient saw it, resend (refused while queued, idempotent with a key), test
//! messages, the organisation's own providers (secrets never answered), the templates with
//! their preview, a contact's preferences; roles, tenants, CSRF, and forms shown again with
//! their messages.
//!
//! The notifier (consumer and delivery worker) does not run here: messages are queued through
//! the API, and moved on (attempted, unconfirmed) through the notification's own commands.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use commands::{ConflictPolicy, EventMeta};
use domain::identity::Role;
use domain::notification::{Notification, NotificationCommand};
use serde_json::{json, Value};
use st_tests::{Person, Reply, TestApp};

const CSRF: &str = "abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdef";
const EMAIL: &str = "/api/v1/settings/notifications/email";
const SMS: &str = "/api/v1/settings/notifications/sms";
const SETTINGS: &str = "/api/v1/settings/notifications";
const LOG: &str = "/api/v1/notifications";
const TEMPLATES: &str = "/api/v1/notification-templates";

/// Secrets sent in the tests: none may come back in any answer or page.
const SMTP_PASSWORD: &str = "smtp-pass-7f3a9c";
const TWILIO_TOKEN: &str = "tw-token-9f8e7d6c5b4a";
const GATEWAY_HEADER: &str = "X-Api-Key: gw-secret-4e1b77";
const SID: &str = "AC0123456789abcdef0123456789abcdef";

async fn events(app: &TestApp) -> i64 {
    app.db.count("SELECT count(*) FROM events").await
}

fn fields(reply: &Reply) -> BTreeSet<String> {
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(
        reply.content_type.starts_with("application/problem+json"),
        "{}",
        reply.content_type
    );
    reply.json()["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors: {}", reply.text))
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

async fn call(
    app: &TestApp,
    who: &Person,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Reply {
    app.send_as(
        Some(who),
        method,
        path,
        body.map(|b| b.to_string()).as_deref(),
        headers,
    )
    .await
}

async fn get(app: &TestApp, who: &Person, path: &str) -> Reply {
    call(app, who, Method::GET, path, None, &[]).await
}

async fn form(app: &TestApp, who: &Person, path: &str, body: &str) -> Reply {
    app.send_body_as(
        Some(who),
        Method::POST,
        path,
        &format!("csrf={CSRF}&{body}"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &format!("st_csrf={CSRF}")),
        ],
    )
    .await
}

fn location(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    reply.headers["location"].to_str().unwrap().to_owned()
}

/// No secret of these tests in `reply`.
fn no_secrets(reply: &Reply) {
    for secret in [
        SMTP_PASSWORD,
        TWILIO_TOKEN,
        GATEWAY_HEADER,
        "gw-secret-4e1b77",
    ] {
        assert!(
            !reply.text.contains(secret),
            "a secret is in the answer: {}",
            reply.text
        );
    }
}

/// Sets the organisation's SMTP server (nothing listens: the worker does not run).
async fn smtp(app: &TestApp) {
    let reply = call(
        app,
        &app.owner,
        Method::PUT,
        EMAIL,
        Some(json!({"url": "smtp://mailer@127.0.0.1:9?tls=none",
            "from": "Acme IT <support@acme.test>", "password": SMTP_PASSWORD})),
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    no_secrets(&reply);
}

/// Queues a test message by email to `to`; its id.
async fn test_message(app: &TestApp, to: &str) -> String {
    let reply = call(
        app,
        &app.owner,
        Method::POST,
        &format!("{LOG}/test"),
        Some(json!({"channel": "email", "to": to})),
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let json = reply.json();
    assert_eq!(json["status"], "queued", "{}", reply.text);
    assert_eq!(json["kind"], "test");
    json["id"].as_str().unwrap().to_owned()
}

/// Moves a queued message on as a worker that stopped mid-attempt would have left it.
async fn unconfirmed(app: &TestApp, id: &str) {
    for command in [
        NotificationCommand::Attempt {
            attempt: 1,
            provider: "smtp".into(),
            at: chrono::Utc::now(),
        },
        NotificationCommand::MarkUnconfirmed {
            attempt: 1,
            at: chrono::Utc::now(),
        },
    ] {
        let meta = EventMeta::new(app.owner.tenant_id, "notifier");
        app.store
            .execute::<Notification>(id, command, &(), &meta, ConflictPolicy::Report)
            .await
            .unwrap();
    }
    app.settle().await;
}

async fn company(app: &TestApp, name: &str) -> String {
    let reply = call(
        app,
        &app.owner,
        Method::POST,
        "/api/v1/companies",
        Some(json!({"name": name})),
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json()["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn notify_pages_the_log_resend_and_who_sees_what() {
    let app = TestApp::new().await;
    // Nothing set up: a test message has nowhere to go.
    let before = events(&app).await;
    let nowhere = call(
        &app,
        &app.owner,
        Method::POST,
        &format!("{LOG}/test"),
        Some(json!({"channel": "email", "to": "ann@example.test"})),
        &[],
    )
    .await;
    assert_eq!(nowhere.status, StatusCode::CONFLICT, "{}", nowhere.text);
    assert_eq!(events(&app).await, before);
    let bad = call(
        &app,
        &app.owner,
        Method::POST,
        &format!("{LOG}/test"),
        Some(json!({"channel": "fax", "to": ""})),
        &[],
    )
    .await;
    assert_eq!(fields(&bad), set(&["channel", "to"]));

    smtp(&app).await;
    let id = test_message(&app, "ann@example.test").await;
    let other = test_message(&app, "bob@example.test").await;
    app.settle().await;

    // The log, newest first, filtered.
    let log = get(&app, &app.owner, LOG).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.text);
    let list = log.json();
    let ids: Vec<&str> = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [other.as_str(), id.as_str()]);
    assert_eq!(list["next"], Value::Null);
    let page = get(&app, &app.owner, &format!("{LOG}?limit=1"))
        .await
        .json();
    assert_eq!(page["notifications"].as_array().unwrap().len(), 1);
    let next = page["next"].as_str().expect("a next page").to_owned();
    let older = get(&app, &app.owner, &format!("{LOG}?limit=1&before={next}"))
        .await
        .json();
    assert_eq!(older["notifications"][0]["id"], id.as_str());
    let ann = get(
        &app,
        &app.owner,
        &format!("{LOG}?recipient=ANN&status=queued&kind=test&channel=email"),
    )
    .await
    .json();
    assert_eq!(ann["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(ann["notifications"][0]["address"], "ann@example.test");
    let none = get(&app, &app.owner, &format!("{LOG}?status=failed"))
        .await
        .json();
    assert_eq!(none["notifications"], json!([]));
    let bad = get(
        &app,
        &app.owner,
        &format!("{LOG}?status=lost&kind=postcard&channel=fax&company_id=42&before=zz&limit=0"),
    )
    .await;
    assert_eq!(
        fields(&bad),
        set(&["status", "kind", "channel", "company_id", "before", "limit"])
    );

    // One message: what the recipient saw, and its events.
    let one = get(&app, &app.owner, &format!("{LOG}/{id}")).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text);
    let one = one.json();
    assert_eq!(one["content"]["subject"], "Test message from Acme IT");
    assert_eq!(one["events"][0]["type"], "NotificationQueued");
    assert!(one["events"][0]["summary"]
        .as_str()
        .unwrap()
        .contains("ann@example.test"));

    // Queued: nothing to resend yet.
    let before = events(&app).await;
    let early = call(
        &app,
        &app.owner,
        Method::POST,
        &format!("{LOG}/{id}/resend"),
        None,
        &[],
    )
    .await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{}", early.text);
    assert!(early.content_type.starts_with("application/problem+json"));
    assert_eq!(events(&app).await, before);

    // Unconfirmed: resent once per key.
    unconfirmed(&app, &id).await;
    let again = |key: Option<&'static str>| {
        let id = id.clone();
        let app = &app;
        async move {
            let headers: Vec<(&str, &str)> =
                key.map(|k| ("idempotency-key", k)).into_iter().collect();
            let reply = call(
                app,
                &app.owner,
                Method::POST,
                &format!("{LOG}/{id}/resend"),
                None,
                &headers,
            )
            .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
            reply.json()
        }
    };
    let first = again(Some("resend-1")).await;
    assert_eq!(first["resend_of"], id.as_str());
    assert_eq!(first["status"], "queued");
    let count = events(&app).await;
    let second = again(Some("resend-1")).await;
    assert_eq!(second["id"], first["id"], "the same key, the same message");
    assert_eq!(events(&app).await, count, "and no second message");
    let third = again(None).await;
    assert_ne!(third["id"], first["id"]);
    app.settle().await;
    let unconfirmed_only = get(&app, &app.owner, &format!("{LOG}?status=unconfirmed"))
        .await
        .json();
    assert_eq!(unconfirmed_only["notifications"][0]["id"], id.as_str());

    // Roles.
    let technician = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    let accountant = app
        .person(&app.owner, Role::Accountant, "books@acme.test", None)
        .await;
    let company_id = company(&app, "Northwind").await;
    let client = app
        .person(
            &app.owner,
            Role::Client,
            "client@northwind.test",
            Some(company_id.parse().unwrap()),
        )
        .await;
    for who in [&technician, &client] {
        assert_eq!(get(&app, who, LOG).await.status, StatusCode::FORBIDDEN);
        assert_eq!(
            get(&app, who, &format!("{LOG}/{id}")).await.status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(get(&app, who, SETTINGS).await.status, StatusCode::FORBIDDEN);
        assert_eq!(
            get(&app, who, "/notifications").await.status,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(get(&app, &accountant, LOG).await.status, StatusCode::OK);
    let before = events(&app).await;
    let denied = call(
        &app,
        &accountant,
        Method::POST,
        &format!("{LOG}/{id}/resend"),
        None,
        &[],
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(
        get(&app, &accountant, SETTINGS).await.status,
        StatusCode::FORBIDDEN
    );
    let page = get(&app, &accountant, &format!("/notifications/{id}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        !page.text.contains("/resend\""),
        "no Resend for an accountant"
    );
    let denied = form(
        &app,
        &accountant,
        &format!("/notifications/{id}/resend"),
        "",
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(events(&app).await, before);
    let nav = get(&app, &accountant, "/").await;
    assert!(
        nav.text.contains("href=\"/notifications\""),
        "Messages in the nav"
    );
    let nav = get(&app, &technician, "/").await;
    assert!(!nav.text.contains("href=\"/notifications\""));

    // Another tenant's message does not exist for them.
    let stranger = app.other_tenant("Other IT", "owner@other.test").await;
    for path in [format!("{LOG}/{id}"), format!("/notifications/{id}")] {
        assert_eq!(
            get(&app, &stranger, &path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let theirs = get(&app, &stranger, LOG).await.json();
    assert_eq!(theirs["notifications"], json!([]));
    let before = events(&app).await;
    let resent = call(
        &app,
        &stranger,
        Method::POST,
        &format!("{LOG}/{id}/resend"),
        None,
        &[],
    )
    .await;
    assert_eq!(resent.status, StatusCode::NOT_FOUND);
    let posted = form(&app, &stranger, &format!("/notifications/{id}/resend"), "").await;
    assert_eq!(posted.status, StatusCode::NOT_FOUND);
    assert_eq!(events(&app).await, before);
    let not_id = get(&app, &app.owner, &format!("{LOG}/42")).await;
    assert_eq!(not_id.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        get(&app, &app.owner, "/notifications/42").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn notify_pages_the_console_log_and_message_pages() {
    let app = TestApp::new().await;
    smtp(&app).await;
    // A message with an HTML part that tries to run a script.
    let html = json!({"subject": "Test from {organisation}", "text": "Hello from {organisation}.",
        "html": "<p onclick=\"steal()\">Hi <b>{organisation}</b></p><script>alert('x')</script>",
        "sms": ""});
    let saved = call(
        &app,
        &app.owner,
        Method::PUT,
        &format!("{TEMPLATES}/test"),
        Some(html),
        &[],
    )
    .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    let id = test_message(&app, "ann@example.test").await;
    let queued = test_message(&app, "bob@example.test").await;
    app.settle().await;
    unconfirmed(&app, &id).await;

    let log = get(&app, &app.owner, "/notifications").await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.text);
    for part in [
        &format!("href=\"/notifications/{id}\""),
        "ann@example.test",
        "Test from Acme IT",
        "sla sla-warning\">unconfirmed",
        "it may have gone out — check with the recipient before resending",
        "id=\"count-unconfirmed\"",
        "aria-current=\"page\">Messages",
    ] {
        assert!(log.text.contains(part), "{part}: {}", log.text);
    }
    let filtered = get(
        &app,
        &app.owner,
        "/notifications?status=queued&recipient=bob",
    )
    .await;
    assert_eq!(filtered.status, StatusCode::OK);
    assert!(
        filtered.text.contains(&queued) && !filtered.text.contains(&format!("data-id=\"{id}\""))
    );
    let bad = get(
        &app,
        &app.owner,
        "/notifications?status=lost&company_id=nope&before=zz",
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    for part in [
        "Status must be one of",
        "id=\"status-error\"",
        "id=\"company-error\"",
        "page link is not valid",
        "value=\"lost\" selected",
    ] {
        assert!(bad.text.contains(part), "{part}: {}", bad.text);
    }

    // The message as the recipient saw it: its HTML only in a sandboxed frame.
    let page = get(&app, &app.owner, &format!("/notifications/{id}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    for part in [
        "Test from Acme IT",
        "Hello from Acme IT.",
        "sandbox srcdoc=\"&#60;p onclick=&#34;steal()",
        "id=\"resend\"",
        "Handed to smtp (attempt 1)",
        "Check with the recipient before resending",
    ] {
        assert!(page.text.contains(part), "{part}: {}", page.text);
    }
    assert!(!page.text.contains("<script>alert"), "{}", page.text);
    assert!(!page.text.contains("<p onclick"), "{}", page.text);

    // Resend: refused while queued (the page again, 409), done once it has an outcome.
    let before = events(&app).await;
    let refused = form(
        &app,
        &app.owner,
        &format!("/notifications/{queued}/resend"),
        "",
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert!(
        refused.text.contains("id=\"message-problem\""),
        "{}",
        refused.text
    );
    assert!(refused
        .text
        .contains("it can be sent again once it has an outcome"));
    assert_eq!(events(&app).await, before);
    let forged = app
        .send_body(
            Method::POST,
            &format!("/notifications/{id}/resend"),
            "",
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(events(&app).await, before);
    let done = form(&app, &app.owner, &format!("/notifications/{id}/resend"), "").await;
    let to = location(&done);
    assert!(
        to.starts_with("/notifications/") && !to.ends_with(&id),
        "{to}"
    );
    let new_page = get(&app, &app.owner, &to).await;
    assert_eq!(new_page.status, StatusCode::OK);
    assert!(new_page
        .text
        .contains(&format!("href=\"/notifications/{id}\"")));
}

#[tokio::test]
async fn notify_pages_providers_are_checked_and_secrets_never_answered() {
    let app = TestApp::new().await;
    let empty = get(&app, &app.owner, SETTINGS).await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.text);
    assert_eq!(empty.json()["email"]["source"], "none");

    let before = events(&app).await;
    let bad = call(
        &app,
        &app.owner,
        Method::PUT,
        EMAIL,
        Some(json!({"url": "http://mail.example.com", "from": "not an address"})),
        &[],
    )
    .await;
    assert_eq!(fields(&bad), set(&["url", "from"]));
    let unknown = call(
        &app,
        &app.owner,
        Method::PUT,
        EMAIL,
        Some(json!({"url": "smtp://x", "from": "a@b.test", "user": "me"})),
        &[],
    )
    .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad_sid = call(
        &app,
        &app.owner,
        Method::PUT,
        SMS,
        Some(json!({"provider": "twilio", "account_sid": "XX123",
            "auth_token": TWILIO_TOKEN, "from": "+15550100199"})),
        &[],
    )
    .await;
    assert_eq!(fields(&bad_sid), set(&["account_sid"]));
    let mixed = call(
        &app,
        &app.owner,
        Method::PUT,
        SMS,
        Some(
            json!({"provider": "gateway", "account_sid": SID, "url": "ftp://x",
            "method": "put", "template": "to={to}&text={body}", "from": "Acme"}),
        ),
        &[],
    )
    .await;
    let named = fields(&mixed);
    for field in ["account_sid", "method", "url"] {
        assert!(named.contains(field), "{field}: {}", mixed.text);
    }
    let nobody = call(&app, &app.owner, Method::PUT, SMS, Some(json!({})), &[]).await;
    assert_eq!(fields(&nobody), set(&["provider"]));
    assert_eq!(events(&app).await, before, "refusals append nothing");

    smtp(&app).await;
    let twilio = call(
        &app,
        &app.owner,
        Method::PUT,
        SMS,
        Some(
            json!({"provider": "twilio", "account_sid": SID, "auth_token": TWILIO_TOKEN,
            "from": "+15550100199"}),
        ),
        &[],
    )
    .await;
    assert_eq!(twilio.status, StatusCode::OK, "{}", twilio.text);
    no_secrets(&twilio);
    let view = twilio.json();
    assert_eq!(view["sms"]["source"], "tenant");
    assert_eq!(view["sms"]["provider"], "twilio");
    assert_eq!(view["sms"]["account_sid"], SID);
    assert_eq!(view["email"]["provider"], "smtp");
    assert_eq!(view["email"]["from"], "Acme IT <support@acme.test>");
    assert!(view["email"]["url"]
        .as_str()
        .unwrap()
        .starts_with("smtp://mailer"));

    // Left out, a secret is kept; the answers never hold it.
    let keep = call(
        &app,
        &app.owner,
        Method::PUT,
        EMAIL,
        Some(json!({"url": "smtp://mailer@127.0.0.1:2525?tls=none", "from": "support@acme.test"})),
        &[],
    )
    .await;
    assert_eq!(keep.status, StatusCode::OK, "{}", keep.text);
    let (tenant, _) = app
        .store
        .load::<domain::tenant::Tenant>(app.owner.tenant_id, &app.owner.tenant_id.to_string())
        .await
        .unwrap();
    assert!(tenant.email_provider.unwrap().password_secret.is_some());
    let gateway = call(
        &app,
        &app.owner,
        Method::PUT,
        SMS,
        Some(
            json!({"provider": "gateway", "url": "https://sms.example.test/send",
            "method": "post", "body": "json",
            "template": "{\"to\": \"{to}\", \"text\": \"{body}\"}",
            "auth_header": GATEWAY_HEADER, "from": "AcmeIT"}),
        ),
        &[],
    )
    .await;
    assert_eq!(gateway.status, StatusCode::OK, "{}", gateway.text);
    assert_eq!(gateway.json()["sms"]["body"], "json");
    for path in [SETTINGS, "/settings/notifications"] {
        let reply = get(&app, &app.owner, path).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        no_secrets(&reply);
    }
    let queued = call(
        &app,
        &app.owner,
        Method::POST,
        &format!("{LOG}/test"),
        Some(json!({"channel": "sms", "to": "+1 555 010 0199"})),
        &[],
    )
    .await;
    assert_eq!(queued.status, StatusCode::CREATED, "{}", queued.text);
    assert_eq!(queued.json()["address"], "+15550100199");
    app.settle().await;
    for path in [
        LOG.to_owned(),
        format!("{LOG}/{}", queued.json()["id"].as_str().unwrap()),
    ] {
        no_secrets(&get(&app, &app.owner, &path).await);
    }

    // Back to the deployment's (none here).
    for path in [EMAIL, SMS] {
        let removed = call(&app, &app.owner, Method::DELETE, path, None, &[]).await;
        assert_eq!(removed.status, StatusCode::OK, "{}", removed.text);
    }
    let view = get(&app, &app.owner, SETTINGS).await.json();
    assert_eq!(view["email"]["source"], "none");
    assert_eq!(view["sms"]["source"], "none");

    // Only owners and admins.
    let admin = app
        .person(&app.owner, Role::Admin, "admin@acme.test", None)
        .await;
    let accountant = app
        .person(&app.owner, Role::Accountant, "books@acme.test", None)
        .await;
    assert_eq!(get(&app, &admin, SETTINGS).await.status, StatusCode::OK);
    let before = events(&app).await;
    let denied = call(
        &app,
        &accountant,
        Method::PUT,
        EMAIL,
        Some(json!({"url": "smtp://127.0.0.1", "from": "a@b.test"})),
        &[],
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(
        get(&app, &accountant, "/settings/notifications")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(events(&app).await, before);
}

#[tokio::test]
async fn notify_pages_the_console_settings_forms() {
    let app = TestApp::new().await;
    let page = get(&app, &app.owner, "/settings/notifications").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    for part in [
        "Email (SMTP)",
        "Send test message",
        "Send test SMS",
        "href=\"/settings/notifications/templates/work_order_created\"",
        "Nothing is set up",
    ] {
        assert!(page.text.contains(part), "{part}: {}", page.text);
    }
    let settings = get(&app, &app.owner, "/settings").await;
    assert!(settings.text.contains("href=\"/settings/notifications\""));

    let before = events(&app).await;
    let bad = form(
        &app,
        &app.owner,
        "/settings/notifications/email",
        &format!("url=http%3A%2F%2Fmail.example.com&from=nope&password={SMTP_PASSWORD}"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    for part in [
        "id=\"smtp-url-error\"",
        "id=\"smtp-from-error\"",
        "value=\"http://mail.example.com\"",
        "value=\"nope\"",
    ] {
        assert!(bad.text.contains(part), "{part}: {}", bad.text);
    }
    no_secrets(&bad);
    assert_eq!(events(&app).await, before);
    let forged = app
        .send_body(
            Method::POST,
            "/settings/notifications/email",
            "url=smtp%3A%2F%2F127.0.0.1&from=a%40b.test",
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(events(&app).await, before);

    let saved = form(
        &app,
        &app.owner,
        "/settings/notifications/email",
        &format!(
            "url=smtp%3A%2F%2Fmailer%40127.0.0.1%3A9%3Ftls%3Dnone&from=support%40acme.test&password={SMTP_PASSWORD}"
        ),
    )
    .await;
    assert_eq!(location(&saved), "/settings/notifications");
    let page = get(&app, &app.owner, "/settings/notifications").await;
    assert!(
        page.text.contains("Your organisation&#39;s own settings")
            || page.text.contains("Your organisation's own settings"),
        "{}",
        page.text
    );
    assert!(page.text.contains("value=\"support@acme.test\""));
    assert!(page.text.contains("one is stored"));
    no_secrets(&page);

    // Test messages: a bad address next to its field, a good one queued with a link.
    let bad = form(
        &app,
        &app.owner,
        "/settings/notifications/email/test",
        "to=nobody",
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    assert!(bad.text.contains("id=\"email-test-error\""));
    assert!(bad.text.contains("value=\"nobody\""));
    let none = form(
        &app,
        &app.owner,
        "/settings/notifications/sms/test",
        "to=%2B15550100199",
    )
    .await;
    assert_eq!(none.status, StatusCode::CONFLICT, "{}", none.text);
    assert!(none.text.contains("id=\"sms-test-problem\""));
    let sent = form(
        &app,
        &app.owner,
        "/settings/notifications/email/test",
        "to=me%40acme.test",
    )
    .await;
    let to = location(&sent);
    let id = to
        .strip_prefix("/settings/notifications?sent=")
        .unwrap()
        .to_owned();
    let page = get(&app, &app.owner, &to).await;
    assert!(page.text.contains("Test message queued"));
    assert!(page.text.contains(&format!("href=\"/notifications/{id}\"")));

    // SMS: every bad field next to itself.
    let before = events(&app).await;
    let bad = form(
        &app,
        &app.owner,
        "/settings/notifications/sms",
        &format!(
            "provider=twilio&account_sid=XX1&auth_token={TWILIO_TOKEN}&twilio_from=&base_url="
        ),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    assert!(
        bad.text.contains("id=\"account-sid-error\""),
        "{}",
        bad.text
    );
    assert!(bad.text.contains("value=\"XX1\""));
    no_secrets(&bad);
    let bad = form(
        &app,
        &app.owner,
        "/settings/notifications/sms",
        "account_sid=x",
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains("id=\"sms-provider-error\""));
    assert_eq!(events(&app).await, before);
    let saved = form(
        &app,
        &app.owner,
        "/settings/notifications/sms",
        &format!(
            "provider=twilio&account_sid={SID}&auth_token={TWILIO_TOKEN}&twilio_from=%2B15550100199&base_url="
        ),
    )
    .await;
    assert_eq!(location(&saved), "/settings/notifications");
    let page = get(&app, &app.owner, "/settings/notifications").await;
    assert!(page.text.contains(SID));
    no_secrets(&page);
    let removed = form(&app, &app.owner, "/settings/notifications/sms/remove", "").await;
    assert_eq!(location(&removed), "/settings/notifications");
    assert_eq!(
        get(&app, &app.owner, SETTINGS).await.json()["sms"]["source"],
        "none"
    );
    let removed = form(&app, &app.owner, "/settings/notifications/email/remove", "").await;
    assert_eq!(location(&removed), "/settings/notifications");

    let technician = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    assert_eq!(
        get(&app, &technician, "/settings/notifications")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let denied = form(
        &app,
        &technician,
        "/settings/notifications/email/remove",
        "",
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn notify_pages_templates_are_saved_previewed_and_reset() {
    let app = TestApp::new().await;
    let all = get(&app, &app.owner, TEMPLATES).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let all = all.json();
    let templates = all["templates"].as_array().unwrap();
    assert_eq!(templates.len(), 9);
    assert!(templates.iter().all(|t| t["customised"] == false));
    let created = &templates[0];
    assert_eq!(created["kind"], "work_order_created");
    assert!(created["placeholders"]
        .as_array()
        .unwrap()
        .contains(&json!("view_link")));
    let path = format!("{TEMPLATES}/work_order_created");

    let before = events(&app).await;
    let bad = call(
        &app,
        &app.owner,
        Method::PUT,
        &path,
        Some(json!({"subject": "Order {unknown}", "text": "", "html": "<p>{", "sms": "{invoice}"})),
        &[],
    )
    .await;
    assert_eq!(fields(&bad), set(&["subject", "text", "html", "sms"]));
    assert!(
        bad.text.contains("{unknown} is not a placeholder"),
        "{}",
        bad.text
    );
    let preview_bad = call(
        &app,
        &app.owner,
        Method::POST,
        &format!("{path}/preview"),
        Some(json!({"subject": "Order {unknown}", "text": "x"})),
        &[],
    )
    .await;
    assert_eq!(fields(&preview_bad), set(&["subject"]));
    assert_eq!(events(&app).await, before);

    let mine = json!({"subject": "We got it: {title}",
        "text": "Hi {contact}, order {work_order} for {company} is in. {view_link}",
        "html": "<p>Hi <b>{contact}</b></p>", "sms": "{organisation}: {work_order} in"});
    let saved = call(
        &app,
        &app.owner,
        Method::PUT,
        &path,
        Some(mine.clone()),
        &[],
    )
    .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    assert_eq!(saved.json()["customised"], true);
    assert_eq!(saved.json()["template"], mine);
    let read = get(&app, &app.owner, &path).await.json();
    assert_eq!(read["template"], mine);

    let preview = call(
        &app,
        &app.owner,
        Method::POST,
        &format!("{path}/preview"),
        Some(mine.clone()),
        &[],
    )
    .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
    let preview = preview.json();
    assert_eq!(
        preview["email"]["subject"],
        "We got it: Printer offline in reception"
    );
    assert_eq!(preview["email"]["html"], "<p>Hi <b>Ann Example</b></p>");
    assert_eq!(preview["sms"], "Acme IT: #42 in");
    assert!(preview["email"]["text"]
        .as_str()
        .unwrap()
        .contains("/l/00000000-0000-0000-0000-000000000000/example"));

    let reset = call(&app, &app.owner, Method::DELETE, &path, None, &[]).await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text);
    assert_eq!(reset.json()["customised"], false);
    assert_eq!(reset.json()["template"], created["template"]);

    for missing in [
        format!("{TEMPLATES}/postcard"),
        format!("{TEMPLATES}/postcard/preview"),
    ] {
        let reply = call(
            &app,
            &app.owner,
            Method::POST,
            &missing,
            Some(mine.clone()),
            &[],
        )
        .await;
        assert!(
            [StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED].contains(&reply.status),
            "{missing}: {}",
            reply.text
        );
    }
    assert_eq!(
        get(&app, &app.owner, &format!("{TEMPLATES}/postcard"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let accountant = app
        .person(&app.owner, Role::Accountant, "books@acme.test", None)
        .await;
    assert_eq!(
        get(&app, &accountant, TEMPLATES).await.status,
        StatusCode::FORBIDDEN
    );

    // The console's editor.
    let editor = "/settings/notifications/templates/work_order_assigned";
    let page = get(&app, &app.owner, editor).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    for part in [
        "hx-post=\"/settings/notifications/templates/work_order_assigned/preview\"",
        "hx-trigger=\"input changed delay:400ms\"",
        "<code>{technician}</code>",
        "<code>{status_link}</code>",
        "id=\"preview-subject\"",
        "Assigned to you: #42 Printer offline in reception (Example Dental Ltd)",
    ] {
        assert!(page.text.contains(part), "{part}: {}", page.text);
    }
    assert_eq!(
        get(
            &app,
            &app.owner,
            "/settings/notifications/templates/postcard"
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let before = events(&app).await;
    let bad = form(
        &app,
        &app.owner,
        editor,
        "subject=Hi+%7Bnobody%7D&text=&html=&sms=",
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    for part in [
        "id=\"subject-error\"",
        "id=\"text-error\"",
        "{nobody} is not a placeholder",
        "value=\"Hi {nobody}\"",
    ] {
        assert!(bad.text.contains(part), "{part}: {}", bad.text);
    }
    assert_eq!(events(&app).await, before);
    let fragment = form(
        &app,
        &app.owner,
        &format!("{editor}/preview"),
        "subject=For+%7Btechnician%7D&text=Go+%7Bstatus_link%7D&html=%3Cem%3Eok%3C%2Fem%3E&sms=",
    )
    .await;
    assert_eq!(fragment.status, StatusCode::OK, "{}", fragment.text);
    assert!(
        fragment.text.starts_with("<div id=\"preview\""),
        "{}",
        fragment.text
    );
    assert!(fragment.text.contains("For Tom Technician"));
    assert!(fragment
        .text
        .contains("srcdoc=\"&#60;em&#62;ok&#60;/em&#62;\""));
    assert!(fragment.text.contains("id=\"preview-no-sms\""));
    let bad_fragment = form(
        &app,
        &app.owner,
        &format!("{editor}/preview"),
        "subject=%7Bx%7D&text=y",
    )
    .await;
    assert_eq!(bad_fragment.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_fragment.text.contains("id=\"preview-errors\""));
    assert_eq!(events(&app).await, before, "previews save nothing");

    let saved = form(
        &app,
        &app.owner,
        editor,
        "subject=Yours%3A+%7Bwork_order%7D&text=Go+%7Bstatus_link%7D&html=&sms=",
    )
    .await;
    assert_eq!(location(&saved), editor);
    let page = get(&app, &app.owner, editor).await;
    assert!(page.text.contains("Back to the default"));
    let listed = get(
        &app,
        &app.owner,
        &format!("{TEMPLATES}/work_order_assigned"),
    )
    .await
    .json();
    assert_eq!(listed["customised"], true);
    assert_eq!(listed["template"]["subject"], "Yours: {work_order}");
    let reset = form(&app, &app.owner, &format!("{editor}/reset"), "").await;
    assert_eq!(location(&reset), editor);
    let listed = get(
        &app,
        &app.owner,
        &format!("{TEMPLATES}/work_order_assigned"),
    )
    .await
    .json();
    assert_eq!(listed["customised"], false);
}

#[tokio::test]
async fn notify_pages_contact_preferences_round_trip() {
    let app = TestApp::new().await;
    let company_id = company(&app, "Northwind").await;
    let contact = call(
        &app,
        &app.owner,
        Method::POST,
        &format!("/api/v1/companies/{company_id}/contacts"),
        Some(json!({"name": "Ann Example", "email": "ann@northwind.test"})),
        &[],
    )
    .await;
    assert_eq!(contact.status, StatusCode::CREATED, "{}", contact.text);
    let id = contact.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/contacts/{id}/notifications");

    let start = get(&app, &app.owner, &path).await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.text);
    assert_eq!(
        start.json(),
        json!({"email": true, "sms": true, "opted_out": false})
    );
    let want = json!({"email": false, "sms": true, "opted_out": true});
    let set_it = call(
        &app,
        &app.owner,
        Method::PUT,
        &path,
        Some(want.clone()),
        &[],
    )
    .await;
    assert_eq!(set_it.status, StatusCode::OK, "{}", set_it.text);
    assert_eq!(set_it.json(), want);
    assert_eq!(get(&app, &app.owner, &path).await.json(), want);

    let before = events(&app).await;
    let bad = call(
        &app,
        &app.owner,
        Method::PUT,
        &path,
        Some(json!({"email": "yes", "sms": null})),
        &[],
    )
    .await;
    assert_eq!(fields(&bad), set(&["email", "sms", "opted_out"]));
    let unknown = call(
        &app,
        &app.owner,
        Method::PUT,
        &path,
        Some(json!({"email": true, "sms": true, "opted_out": false, "fax": true})),
        &[],
    )
    .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(events(&app).await, before);

    // Technicians change them; accountants only read them; another tenant sees nothing.
    let technician = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    let accountant = app
        .person(&app.owner, Role::Accountant, "books@acme.test", None)
        .await;
    let stranger = app.other_tenant("Other IT", "owner@other.test").await;
    let by_tech = call(
        &app,
        &technician,
        Method::PUT,
        &path,
        Some(json!({"email": true, "sms": false, "opted_out": false})),
        &[],
    )
    .await;
    assert_eq!(by_tech.status, StatusCode::OK, "{}", by_tech.text);
    assert_eq!(get(&app, &accountant, &path).await.status, StatusCode::OK);
    let before = events(&app).await;
    let denied = call(
        &app,
        &accountant,
        Method::PUT,
        &path,
        Some(want.clone()),
        &[],
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(
        get(&app, &stranger, &path).await.status,
        StatusCode::NOT_FOUND
    );
    let theirs = call(&app, &stranger, Method::PUT, &path, Some(want.clone()), &[]).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert_eq!(events(&app).await, before);

    // The contact's page: the form, and what it saves.
    let page = get(&app, &app.owner, &format!("/contacts/{id}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page
        .text
        .contains(&format!("action=\"/contacts/{id}/notifications\"")));
    assert!(
        page.text.contains("name=\"email\" value=\"on\" checked"),
        "{}",
        page.text
    );
    let saved = form(
        &app,
        &app.owner,
        &format!("/contacts/{id}/notifications"),
        "sms=on&opted_out=on",
    )
    .await;
    assert_eq!(location(&saved), format!("/contacts/{id}"));
    assert_eq!(
        get(&app, &app.owner, &path).await.json(),
        json!({"email": false, "sms": true, "opted_out": true})
    );
    let page = get(&app, &accountant, &format!("/contacts/{id}")).await;
    assert!(page.text.contains("Opted out of messages"), "{}", page.text);
    assert!(!page
        .text
        .contains(&format!("action=\"/contacts/{id}/notifications\"")));
    let before = events(&app).await;
    let forged = app
        .send_body(
            Method::POST,
            &format!("/contacts/{id}/notifications"),
            "email=on",
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let elsewhere = form(
        &app,
        &stranger,
        &format!("/contacts/{id}/notifications"),
        "email=on",
    )
    .await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    let denied = form(
        &app,
        &accountant,
        &format!("/contacts/{id}/notifications"),
        "email=on",
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(events(&app).await, before);
}
