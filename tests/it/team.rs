//! Team administration through the router: invitations (accepted, then signed in with),
//! role changes, disabling and removing people, the "owners by owners" and last-owner rules,
//! other tenants' ids, and the role matrix on `/team` and `/api/v1/users`.

use axum::http::{Method, StatusCode};
use domain::identity::Role;
use st_tests::{Person, Reply, TestApp};

/// Any 48 hex characters make a CSRF token when the cookie carries the same.
const CSRF: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

async fn post_form(app: &TestApp, who: Option<&Person>, path: &str, form: &str) -> Reply {
    app.send_body_as(
        who,
        Method::POST,
        path,
        form,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &format!("st_csrf={CSRF}")),
        ],
    )
    .await
}

/// A signed-in person of the owner's tenant.
async fn person(app: &TestApp, role: Role, email: &str) -> Person {
    app.person(&app.owner, role, email, None).await
}

async fn get_as(app: &TestApp, who: &Person, path: &str) -> Reply {
    app.send_as(Some(who), Method::GET, path, None, &[]).await
}

async fn events(app: &TestApp) -> i64 {
    app.db.count("SELECT count(*) FROM events").await
}

fn location(reply: &Reply) -> String {
    reply.headers["location"].to_str().unwrap().to_owned()
}

fn flash(reply: &Reply) -> String {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("st_flash="))
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .to_owned()
}

/// The path of the newest invitation link sent to `email` (from the outbox).
async fn invitation_path(app: &TestApp, email: &str) -> String {
    let body: String = sqlx::query_scalar(
        "SELECT body FROM outbox WHERE recipient = $1 AND kind = 'invitation'
          ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(email)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let start = body.find("/invitation/").expect("a link in the message");
    body[start..].split_whitespace().next().unwrap().to_owned()
}

async fn user_id_of(app: &TestApp, email: &str) -> uuid::Uuid {
    sqlx::query_scalar("SELECT user_id FROM user_emails WHERE email = $1")
        .bind(email)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn team_invitation_is_sent_accepted_and_signed_in_with() {
    let app = TestApp::new().await;
    let page = app.request(Method::GET, "/team", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("Invite someone"), "{}", page.text);
    assert!(page.text.contains("owner@acme.test"));
    assert!(page.text.contains(r#"href="/team" aria-current="page""#));

    let invited = post_form(
        &app,
        Some(&app.owner),
        "/team",
        &format!("csrf={CSRF}&email=Tina%40Acme.test&name=Tina+Tech&role=technician&company_id="),
    )
    .await;
    assert_eq!(invited.status, StatusCode::SEE_OTHER, "{}", invited.text);
    assert_eq!(location(&invited), "/team");
    assert!(flash(&invited).starts_with("Invitation%20sent%20to%20tina%40acme.test"));

    // Read-your-writes: the list shows the new person at once, as invited.
    let page = app.request(Method::GET, "/team", None).await;
    assert!(page.text.contains("Tina Tech") && page.text.contains("Invited"));
    let id = user_id_of(&app, "tina@acme.test").await;
    let api = app
        .request(Method::GET, &format!("/api/v1/users/{id}"), None)
        .await;
    assert_eq!(api.status, StatusCode::OK);
    assert_eq!(api.json()["status"], "invited");
    assert_eq!(api.json()["role"], "technician");

    // The link went to the outbox only.
    let link = invitation_path(&app, "tina@acme.test").await;
    assert!(link.starts_with(&format!("/invitation/{id}/iv_")), "{link}");
    let token = link.rsplit('/').next().unwrap();
    assert!(!page.text.contains(token));
    let form = app.send_as(None, Method::GET, &link, None, &[]).await;
    assert_eq!(form.status, StatusCode::OK);
    let accepted = post_form(
        &app,
        None,
        &link,
        &format!("csrf={CSRF}&password=tina+chooses+well&confirm=tina+chooses+well"),
    )
    .await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.text);
    assert_eq!(location(&accepted), "/sign-in");

    let signed_in = post_form(
        &app,
        None,
        "/sign-in",
        &format!("csrf={CSRF}&email=tina%40acme.test&password=tina+chooses+well&next=%2F"),
    )
    .await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.text
    );
    assert!(signed_in
        .headers
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().starts_with("st_session=ss_")));
    let api = app
        .request(Method::GET, &format!("/api/v1/users/{id}"), None)
        .await;
    assert_eq!(api.json()["status"], "active");
}

#[tokio::test]
async fn team_invitation_through_the_api_never_returns_the_link_and_is_idempotent() {
    let app = TestApp::new().await;
    let body = r#"{"email": "ann@acme.test", "name": "Ann", "role": "accountant"}"#;
    let key = [("idempotency-key", "invite-ann-1")];
    let first = app
        .send(Method::POST, "/api/v1/users", Some(body), &key)
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let json = first.json();
    assert_eq!(json["email"], "ann@acme.test");
    assert_eq!(json["role"], "accountant");
    assert_eq!(json["status"], "invited");
    assert!(json["company_id"].is_null());
    assert!(json["invitation_expires_at"].is_string());
    assert!(!first.text.contains("iv_") && !first.text.contains("/invitation/"));
    let before = events(&app).await;
    let again = app
        .send(Method::POST, "/api/v1/users", Some(body), &key)
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    assert_eq!(again.json()["id"], json["id"]);
    assert_eq!(
        events(&app).await,
        before,
        "a retried invitation appends nothing"
    );
    let sent = app
        .db
        .count("SELECT count(*) FROM outbox WHERE recipient = 'ann@acme.test'")
        .await;
    assert_eq!(sent, 1);

    let list = app.request(Method::GET, "/api/v1/users", None).await;
    assert_eq!(list.status, StatusCode::OK);
    let items = list.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|u| u["created_at"].is_string()));

    // "Send again" replaces the link while the person has not accepted.
    let id = json["id"].as_str().unwrap();
    let old = invitation_path(&app, "ann@acme.test").await;
    let renewed = post_form(
        &app,
        Some(&app.owner),
        &format!("/team/{id}/invitation"),
        &format!("csrf={CSRF}"),
    )
    .await;
    assert_eq!(renewed.status, StatusCode::SEE_OTHER, "{}", renewed.text);
    let new = invitation_path(&app, "ann@acme.test").await;
    assert_ne!(old, new);
    let stale = post_form(
        &app,
        None,
        &old,
        &format!("csrf={CSRF}&password=ann+chooses+well&confirm=ann+chooses+well"),
    )
    .await;
    assert_eq!(
        stale.status,
        StatusCode::BAD_REQUEST,
        "the old link stopped working"
    );

    // Once accepted there is nothing to send again.
    let accepted = post_form(
        &app,
        None,
        &new,
        &format!("csrf={CSRF}&password=ann+chooses+well&confirm=ann+chooses+well"),
    )
    .await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER);
    let refused = post_form(
        &app,
        Some(&app.owner),
        &format!("/team/{id}/invitation"),
        &format!("csrf={CSRF}"),
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.text.contains("already accepted"),
        "{}",
        refused.text
    );
}

#[tokio::test]
async fn team_bad_input_is_shown_again_with_messages() {
    let app = TestApp::new().await;
    let before = events(&app).await;
    let bad = post_form(
        &app,
        Some(&app.owner),
        "/team",
        &format!("csrf={CSRF}&email=not-an-address&name=++&role=technician&company_id="),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    assert!(bad
        .text
        .contains("Email must be an address such as name@example.com."));
    assert!(bad.text.contains("Name is required."));
    assert!(
        bad.text.contains(r#"value="not-an-address""#),
        "the input is kept"
    );

    let client = post_form(
        &app,
        Some(&app.owner),
        "/team",
        &format!("csrf={CSRF}&email=c%40customer.test&name=Cleo&role=client&company_id="),
    )
    .await;
    assert_eq!(client.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(client
        .text
        .contains("Customer company is required for a client"));

    let taken = post_form(
        &app,
        Some(&app.owner),
        "/team",
        &format!("csrf={CSRF}&email=owner%40acme.test&name=Copy&role=admin&company_id="),
    )
    .await;
    assert_eq!(taken.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        taken.text.contains("Email is already in use"),
        "{}",
        taken.text
    );
    assert_eq!(events(&app).await, before, "nothing appended");

    let api = app
        .request(
            Method::POST,
            "/api/v1/users",
            Some(r#"{"email": "x", "name": "", "role": "boss", "company_id": 7}"#),
        )
        .await;
    assert_eq!(api.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", api.text);
    assert_eq!(api.json()["errors"][0]["field"], "company_id");
    let api = app
        .request(
            Method::POST,
            "/api/v1/users",
            Some(r#"{"email": "x", "name": "", "role": "boss"}"#),
        )
        .await;
    assert_eq!(api.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<_> = api.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["email", "name", "role"]);
    let api = app
        .request(
            Method::POST,
            "/api/v1/users",
            Some(r#"{"email": "s@acme.test", "name": "Sam", "role": "admin", "company_id": "3f0c9a52-8d0e-4b8e-9a57-1f1c2a3b4c5d"}"#),
        )
        .await;
    assert_eq!(api.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(api.text.contains("only a client"), "{}", api.text);
    let taken = app
        .request(
            Method::POST,
            "/api/v1/users",
            Some(r#"{"email": "owner@acme.test", "name": "Copy", "role": "admin"}"#),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    let patch = app
        .request(
            Method::PATCH,
            &format!("/api/v1/users/{}", app.owner.user_id),
            Some(r#"{"role": "chief", "enabled": "no"}"#),
        )
        .await;
    assert_eq!(patch.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(patch.json()["errors"].as_array().unwrap().len(), 2);
    assert_eq!(events(&app).await, before, "nothing appended");
}

#[tokio::test]
async fn team_a_client_is_invited_into_a_customer_company() {
    let app = TestApp::new().await;
    let company = app
        .request(
            Method::POST,
            "/api/v1/companies",
            Some(r#"{"name": "Initech"}"#),
        )
        .await;
    let company_id = company.json()["id"].as_str().unwrap().to_owned();
    let page = app.request(Method::GET, "/team", None).await;
    assert!(page.text.contains("Initech"), "the company is offered");
    let invited = post_form(
        &app,
        Some(&app.owner),
        "/team",
        &format!(
            "csrf={CSRF}&email=peter%40initech.test&name=Peter&role=client&company_id={company_id}"
        ),
    )
    .await;
    assert_eq!(invited.status, StatusCode::SEE_OTHER, "{}", invited.text);
    let id = user_id_of(&app, "peter@initech.test").await;
    let api = app
        .request(Method::GET, &format!("/api/v1/users/{id}"), None)
        .await;
    assert_eq!(api.json()["company_id"], company_id.as_str());
    let page = app.request(Method::GET, &format!("/team/{id}"), None).await;
    assert!(page.text.contains("Initech") && page.text.contains("portal person"));
    // A portal person stays a portal person.
    let switched = app
        .request(
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            Some(r#"{"role": "technician"}"#),
        )
        .await;
    assert_eq!(switched.status, StatusCode::CONFLICT, "{}", switched.text);
}

#[tokio::test]
async fn team_roles_are_changed_on_the_console_and_the_api() {
    let app = TestApp::new().await;
    let tech = person(&app, Role::Technician, "t@acme.test").await;
    let page = app
        .request(Method::GET, &format!("/team/{}", tech.user_id), None)
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("Change role") && page.text.contains("Disable"));

    let changed = post_form(
        &app,
        Some(&app.owner),
        &format!("/team/{}/role", tech.user_id),
        &format!("csrf={CSRF}&role=accountant"),
    )
    .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.text);
    assert_eq!(location(&changed), format!("/team/{}", tech.user_id));
    let api = app
        .request(
            Method::GET,
            &format!("/api/v1/users/{}", tech.user_id),
            None,
        )
        .await;
    assert_eq!(api.json()["role"], "accountant");

    let bad = post_form(
        &app,
        Some(&app.owner),
        &format!("/team/{}/role", tech.user_id),
        &format!("csrf={CSRF}&role=emperor"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains("Role must be one of"), "{}", bad.text);

    let patched = app
        .request(
            Method::PATCH,
            &format!("/api/v1/users/{}", tech.user_id),
            Some(r#"{"role": "admin"}"#),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.json()["role"], "admin");
    // The token acts with the new role on its next request.
    let team = app
        .send_as(Some(&tech), Method::GET, "/api/v1/users", None, &[])
        .await;
    assert_eq!(team.status, StatusCode::OK);

    let no_csrf = app
        .send_body(
            Method::POST,
            &format!("/team/{}/role", tech.user_id),
            "role=technician",
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn team_an_admin_cannot_touch_an_owner_nor_make_one() {
    let app = TestApp::new().await;
    let admin = person(&app, Role::Admin, "a@acme.test").await;
    let tech = person(&app, Role::Technician, "t@acme.test").await;
    let owner = app.owner.user_id;
    let before = events(&app).await;

    let page = get_as(&app, &admin, &format!("/team/{owner}")).await;
    assert_eq!(page.status, StatusCode::OK, "an admin sees owners");
    assert!(
        !page.text.contains("/disable\""),
        "but gets no forms for them"
    );
    for action in ["disable", "remove"] {
        let refused = post_form(
            &app,
            Some(&admin),
            &format!("/team/{owner}/{action}"),
            &format!("csrf={CSRF}"),
        )
        .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{action}");
    }
    let refused = post_form(
        &app,
        Some(&admin),
        &format!("/team/{owner}/role"),
        &format!("csrf={CSRF}&role=technician"),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let refused = post_form(
        &app,
        Some(&admin),
        &format!("/team/{}/role", tech.user_id),
        &format!("csrf={CSRF}&role=owner"),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let refused = post_form(
        &app,
        Some(&admin),
        "/team",
        &format!("csrf={CSRF}&email=o2%40acme.test&name=Other+Owner&role=owner&company_id="),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let page = get_as(&app, &admin, "/team").await;
    assert!(
        !page.text.contains(r#"value="owner""#),
        "owner is not offered to an admin"
    );

    let api = |method: Method, path: String, body: Option<&'static str>| {
        let admin = admin.clone();
        let app = &app;
        async move { app.send_as(Some(&admin), method, &path, body, &[]).await }
    };
    let r = api(
        Method::PATCH,
        format!("/api/v1/users/{owner}"),
        Some(r#"{"enabled": false}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.content_type, "application/problem+json");
    let r = api(
        Method::PATCH,
        format!("/api/v1/users/{}", tech.user_id),
        Some(r#"{"role": "owner"}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api(Method::DELETE, format!("/api/v1/users/{owner}"), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api(
        Method::POST,
        "/api/v1/users".into(),
        Some(r#"{"email": "o2@acme.test", "name": "O2", "role": "owner"}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(events(&app).await, before, "nothing appended");

    // What an admin may do: manage non-owners.
    let r = api(
        Method::PATCH,
        format!("/api/v1/users/{}", tech.user_id),
        Some(r#"{"role": "accountant"}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn team_the_last_owner_cannot_be_demoted_disabled_or_removed() {
    let app = TestApp::new().await;
    let owner = app.owner.user_id;
    let before = events(&app).await;

    let demoted = post_form(
        &app,
        Some(&app.owner),
        &format!("/team/{owner}/role"),
        &format!("csrf={CSRF}&role=admin"),
    )
    .await;
    assert_eq!(demoted.status, StatusCode::CONFLICT, "{}", demoted.text);
    assert!(
        demoted
            .text
            .contains("The last active owner cannot be demoted"),
        "{}",
        demoted.text
    );
    for action in ["disable", "remove"] {
        let refused = post_form(
            &app,
            Some(&app.owner),
            &format!("/team/{owner}/{action}"),
            &format!("csrf={CSRF}"),
        )
        .await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{action}");
        assert!(
            refused.text.contains("yourself") || refused.text.contains("your own"),
            "{}",
            refused.text
        );
    }
    let r = app
        .request(
            Method::PATCH,
            &format!("/api/v1/users/{owner}"),
            Some(r#"{"role": "technician"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("last active owner"));
    let r = app
        .request(
            Method::PATCH,
            &format!("/api/v1/users/{owner}"),
            Some(r#"{"enabled": false}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = app
        .request(Method::DELETE, &format!("/api/v1/users/{owner}"), None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(events(&app).await, before, "nothing appended");

    // With a second owner, the first may step down.
    let second = person(&app, Role::Owner, "o2@acme.test").await;
    let r = app
        .request(
            Method::PATCH,
            &format!("/api/v1/users/{owner}"),
            Some(r#"{"role": "admin"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Now the second owner is the last one: the first (an admin now) cannot touch them.
    let r = app
        .request(
            Method::DELETE,
            &format!("/api/v1/users/{}", second.user_id),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn team_a_disabled_persons_session_and_token_stop_working() {
    let app = TestApp::new().await;
    let tech = person(&app, Role::Technician, "t@acme.test").await;
    assert_eq!(get_as(&app, &tech, "/account").await.status, StatusCode::OK);
    assert_eq!(
        get_as(&app, &tech, "/api/v1/companies").await.status,
        StatusCode::OK
    );

    let disabled = post_form(
        &app,
        Some(&app.owner),
        &format!("/team/{}/disable", tech.user_id),
        &format!("csrf={CSRF}"),
    )
    .await;
    assert_eq!(disabled.status, StatusCode::SEE_OTHER, "{}", disabled.text);
    let sessions = app
        .db
        .count(&format!(
            "SELECT count(*) FROM sessions WHERE user_id = '{}'",
            tech.user_id
        ))
        .await;
    assert_eq!(sessions, 0, "their sessions ended");
    let console = get_as(&app, &tech, "/account").await;
    assert_eq!(console.status, StatusCode::SEE_OTHER);
    assert!(location(&console).starts_with("/sign-in"));
    let api = get_as(&app, &tech, "/api/v1/companies").await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    let page = app
        .request(Method::GET, &format!("/team/{}", tech.user_id), None)
        .await;
    assert!(page.text.contains("Disabled") && page.text.contains("/enable\""));
    let again = post_form(
        &app,
        Some(&app.owner),
        &format!("/team/{}/disable", tech.user_id),
        &format!("csrf={CSRF}"),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "already disabled");

    // Enabling restores the token (not the ended sessions).
    let r = app
        .request(
            Method::PATCH,
            &format!("/api/v1/users/{}", tech.user_id),
            Some(r#"{"enabled": true}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["status"], "active");
    assert_eq!(
        get_as(&app, &tech, "/api/v1/companies").await.status,
        StatusCode::OK
    );

    // Removing ends everything, and the person is gone from the team.
    let r = app
        .request(
            Method::DELETE,
            &format!("/api/v1/users/{}", tech.user_id),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(
        get_as(&app, &tech, "/api/v1/companies").await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .request(
            Method::GET,
            &format!("/api/v1/users/{}", tech.user_id),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let page = app.request(Method::GET, "/team", None).await;
    assert!(!page.text.contains("t@acme.test"));
}

#[tokio::test]
async fn team_another_tenants_person_is_not_found() {
    let app = TestApp::new().await;
    let other = app.other_tenant("Beta IT", "boss@beta.test").await;
    let id = other.user_id;
    let before = events(&app).await;
    assert_eq!(
        app.request(Method::GET, &format!("/team/{id}"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    for action in ["disable", "enable", "remove", "invitation"] {
        let r = post_form(
            &app,
            Some(&app.owner),
            &format!("/team/{id}/{action}"),
            &format!("csrf={CSRF}"),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{action}");
    }
    let r = post_form(
        &app,
        Some(&app.owner),
        &format!("/team/{id}/role"),
        &format!("csrf={CSRF}&role=admin"),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.request(Method::GET, "/team/not-a-uuid", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let path = format!("/api/v1/users/{id}");
    assert_eq!(
        app.request(Method::GET, &path, None).await.status,
        StatusCode::NOT_FOUND
    );
    let r = app
        .request(Method::PATCH, &path, Some(r#"{"enabled": false}"#))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.content_type, "application/problem+json");
    assert_eq!(
        app.request(Method::DELETE, &path, None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.request(Method::GET, "/api/v1/users/42", None)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    for method in [Method::GET, Method::DELETE] {
        let r = app.request(method, "/api/v1/users/%FF", None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.content_type, "application/problem+json");
    }
    assert_eq!(
        app.request(Method::GET, "/team/%FF", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(events(&app).await, before, "nothing appended");
    let list = app.request(Method::GET, "/api/v1/users", None).await;
    assert!(!list.text.contains("boss@beta.test"));
}

#[tokio::test]
async fn team_is_for_owners_and_admins_only() {
    let app = TestApp::new().await;
    let tech = person(&app, Role::Technician, "t@acme.test").await;
    let accountant = person(&app, Role::Accountant, "acc@acme.test").await;
    for who in [&tech, &accountant] {
        let page = get_as(&app, who, "/team").await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        assert!(page.text.contains("Not allowed"));
        assert!(
            !page.text.contains(r#"href="/team""#),
            "no Team link in the navigation"
        );
        let page = get_as(&app, who, &format!("/team/{}", app.owner.user_id)).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        let r = post_form(
            &app,
            Some(who),
            &format!("/team/{}/disable", app.owner.user_id),
            &format!("csrf={CSRF}"),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(
            get_as(&app, who, "/api/v1/users").await.status,
            StatusCode::FORBIDDEN
        );
        let r = app
            .send_as(
                Some(who),
                Method::POST,
                "/api/v1/users",
                Some(r#"{"email": "x@acme.test", "name": "X", "role": "technician"}"#),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    let nobody = app.send_as(None, Method::GET, "/team", None, &[]).await;
    assert_eq!(nobody.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&nobody), "/sign-in?next=%2Fteam");
    let nobody = app
        .send_as(None, Method::GET, "/api/v1/users", None, &[])
        .await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
    let put = app.request(Method::PUT, "/api/v1/users", Some("{}")).await;
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(put.content_type, "application/problem+json");
}
