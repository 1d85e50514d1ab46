//! API tokens through the router: created in the console (shown once) and through the API,
//! listed without secrets, revoked (at once), scoped to the tenant and the role; bearer
//! authentication's refusals; `POST /api/v1/sign-in` with its throttle; only digests stored.

use axum::http::{Method, StatusCode};
use domain::identity::Role;
use serde_json::Value;
use st_tests::{Person, Reply, TestApp};

/// A CSRF token of the right shape: the cookie and the hidden field must carry the same.
const CSRF: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

/// A person of the owner's tenant with `role`, signed in.
pub(crate) async fn person(
    app: &TestApp,
    role: Role,
    email: &str,
    company_id: Option<uuid::Uuid>,
) -> Person {
    app.person(&app.owner, role, email, company_id).await
}

async fn post_form(app: &TestApp, who: &Person, path: &str, form: &str) -> Reply {
    app.send_body_as(
        Some(who),
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

async fn get_as(app: &TestApp, who: Option<&Person>, path: &str) -> Reply {
    app.send_as(who, Method::GET, path, None, &[]).await
}

/// A request with an explicit bearer token (`None`: no `Authorization` at all).
async fn with_token(app: &TestApp, token: Option<&str>, method: Method, path: &str) -> Reply {
    match token {
        Some(token) => {
            let auth = format!("Bearer {token}");
            app.send_as(None, method, path, None, &[("authorization", &auth)])
                .await
        }
        None => app.send_as(None, method, path, None, &[]).await,
    }
}

/// The secret shown on the page after creating a token.
fn shown_token(page: &str) -> String {
    let start = page
        .find("<code id=\"new-token\"")
        .unwrap_or_else(|| panic!("no new token on the page: {page}"));
    let rest = &page[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest.find("</code>").unwrap();
    rest[open..close].trim().to_owned()
}

fn assert_problem(reply: &Reply, status: StatusCode) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(
        reply.content_type, "application/problem+json",
        "{}",
        reply.text
    );
    assert_eq!(reply.json()["status"], status.as_u16());
}

fn assert_unauthorized(reply: &Reply) {
    assert_problem(reply, StatusCode::UNAUTHORIZED);
    let challenge = reply.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
}

/// The id of `who`'s token named `name`.
async fn token_id(app: &TestApp, who: &Person, name: &str) -> String {
    let list = get_as(app, Some(who), "/api/v1/tokens").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    list.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no token {name}: {}", list.text))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Creates a token through the API; returns (id, secret).
async fn create_token(app: &TestApp, who: &Person, name: &str) -> (String, String) {
    let body = serde_json::json!({ "name": name }).to_string();
    let created = app
        .send_as(Some(who), Method::POST, "/api/v1/tokens", Some(&body), &[])
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let json = created.json();
    (
        json["id"].as_str().unwrap().to_owned(),
        json["token"].as_str().unwrap().to_owned(),
    )
}

/// Everything stored about tokens, as text: the log and the read model.
async fn stored_text(app: &TestApp) -> String {
    sqlx::query_scalar(
        "SELECT coalesce((SELECT string_agg(payload::text || metadata::text, ' ') FROM events), '')
             || coalesce((SELECT string_agg(t::text, ' ') FROM api_tokens t), '')",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_token_created_in_the_console_is_shown_once_and_works_at_once() {
    let app = TestApp::new().await;
    let tech = person(&app, Role::Technician, "t@acme.test", None).await;

    let page = get_as(&app, Some(&tech), "/account/tokens").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("Create token"));
    assert!(page.text.contains("tests"), "the harness's token is listed");
    assert!(
        !page.text.contains("Everyone's tokens"),
        "technicians see their own only"
    );
    assert!(!page.text.contains(&tech.token), "no secret is ever listed");

    let created = post_form(
        &app,
        &tech,
        "/account/tokens",
        &format!("csrf={CSRF}&name=deploy+script"),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    assert!(
        created.text.contains("will not be shown again"),
        "{}",
        created.text
    );
    let token = shown_token(&created.text);
    assert!(token.starts_with("st_"), "{token}");

    // The very next request may use it: it acts as the technician.
    let mine = with_token(&app, Some(&token), Method::GET, "/api/v1/tokens").await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text);
    let names: Vec<String> = mine.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.contains(&"deploy script".to_owned()) && names.contains(&"tests".to_owned()),
        "{names:?}"
    );
    assert!(!mine.text.contains(&token), "the list never shows a secret");
    for item in mine.json()["items"].as_array().unwrap() {
        let keys: Vec<&String> = item.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["created_at", "id", "name", "revoked_at"], "{item}");
    }
    let companies = with_token(&app, Some(&token), Method::GET, "/api/v1/companies").await;
    assert_eq!(
        companies.status,
        StatusCode::OK,
        "technicians see companies"
    );
    let team = with_token(&app, Some(&token), Method::GET, "/api/v1/companies?limit=1").await;
    assert_eq!(team.status, StatusCode::OK);

    // Shown once: the page afterwards lists it without its secret.
    let again = get_as(&app, Some(&tech), "/account/tokens").await;
    assert!(again.text.contains("deploy script"));
    assert!(!again.text.contains(&token));
    assert!(!again.text.contains("new-token"));

    // Bad names are shown again next to the field.
    for bad in [
        "name=+++",
        &format!("name={}", "x".repeat(101)),
        "name=a%0Ab",
        "",
    ] {
        let refused = post_form(
            &app,
            &tech,
            "/account/tokens",
            &format!("csrf={CSRF}&{bad}"),
        )
        .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            refused.text
        );
        assert!(
            refused.text.contains("id=\"name-error\""),
            "{}",
            refused.text
        );
        assert!(!refused.text.contains("new-token"));
    }

    // Without the CSRF field, nothing is created.
    let before = app.db.count("SELECT count(*) FROM api_tokens").await;
    let forged = post_form(&app, &tech, "/account/tokens", "name=forged").await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    app.settle().await;
    assert_eq!(
        app.db.count("SELECT count(*) FROM api_tokens").await,
        before
    );

    // Not signed in: to the sign-in page.
    let anonymous = get_as(&app, None, "/account/tokens").await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert!(anonymous.headers["location"]
        .to_str()
        .unwrap()
        .starts_with("/sign-in?next="));
}

#[tokio::test]
async fn a_token_revoked_in_the_console_stops_working_at_once() {
    let app = TestApp::new().await;
    let tech = person(&app, Role::Technician, "t@acme.test", None).await;
    let (id, secret) = create_token(&app, &tech, "laptop").await;
    assert_eq!(
        with_token(&app, Some(&secret), Method::GET, "/api/v1/tokens")
            .await
            .status,
        StatusCode::OK
    );

    let revoked = post_form(
        &app,
        &tech,
        &format!("/account/tokens/{id}/revoke"),
        &format!("csrf={CSRF}"),
    )
    .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.text);
    assert_eq!(revoked.headers["location"], "/account/tokens");
    let flash = revoked
        .headers
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().starts_with("st_flash="));
    assert!(flash, "a flash message follows the redirect");
    assert_unauthorized(&with_token(&app, Some(&secret), Method::GET, "/api/v1/tokens").await);

    let page = get_as(&app, Some(&tech), "/account/tokens").await;
    assert!(page.text.contains("Revoked"), "{}", page.text);
    assert!(
        !page.text.contains(&format!("/account/tokens/{id}/revoke")),
        "no revoke button on a revoked token"
    );

    // Without the CSRF field nothing happens.
    let (other_id, other_secret) = create_token(&app, &tech, "other").await;
    let forged = post_form(
        &app,
        &tech,
        &format!("/account/tokens/{other_id}/revoke"),
        "",
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(
        with_token(&app, Some(&other_secret), Method::GET, "/api/v1/tokens")
            .await
            .status,
        StatusCode::OK
    );

    // Another tenant's token, an unknown id, a malformed id: the 404 page.
    let stranger = app.other_tenant("Globex", "boss@globex.test").await;
    let theirs = token_id(&app, &stranger, "bootstrap").await;
    for id in [theirs.as_str(), &uuid::Uuid::now_v7().to_string(), "nope"] {
        let refused = post_form(
            &app,
            &tech,
            &format!("/account/tokens/{id}/revoke"),
            &format!("csrf={CSRF}"),
        )
        .await;
        assert_eq!(
            refused.status,
            StatusCode::NOT_FOUND,
            "{id}: {}",
            refused.text
        );
        assert!(refused.text.contains("Page not found"));
    }
    assert_eq!(
        get_as(&app, Some(&stranger), "/api/v1/tokens").await.status,
        StatusCode::OK,
        "the stranger's token still works"
    );

    // A technician may not revoke a colleague's token; the owner may, and sees them all.
    let owners = token_id(&app, &app.owner, "bootstrap").await;
    let refused = post_form(
        &app,
        &tech,
        &format!("/account/tokens/{owners}/revoke"),
        &format!("csrf={CSRF}"),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        get_as(&app, Some(&app.owner), "/api/v1/tokens")
            .await
            .status,
        StatusCode::OK
    );
    let all = get_as(&app, Some(&app.owner), "/account/tokens").await;
    assert!(all.text.contains("Everyone's tokens"), "{}", all.text);
    assert!(
        all.text.contains("<td>t</td>"),
        "the person's name: {}",
        all.text
    );
    assert!(all
        .text
        .contains(&format!("/account/tokens/{other_id}/revoke")));
    assert!(!all.text.contains(&theirs), "no token of another tenant");
    let by_owner = post_form(
        &app,
        &app.owner,
        &format!("/account/tokens/{other_id}/revoke"),
        &format!("csrf={CSRF}"),
    )
    .await;
    assert_eq!(by_owner.status, StatusCode::SEE_OTHER, "{}", by_owner.text);
    assert_unauthorized(
        &with_token(&app, Some(&other_secret), Method::GET, "/api/v1/tokens").await,
    );
    let actor: String = sqlx::query_scalar(
        "SELECT metadata->>'actor' FROM events WHERE event_type = 'ApiTokenRevoked'
          ORDER BY global_position DESC LIMIT 1",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        actor,
        app.owner.user_id.to_string(),
        "the revoke is the owner's doing"
    );

    // Revoking again tells so.
    let twice = post_form(
        &app,
        &app.owner,
        &format!("/account/tokens/{other_id}/revoke"),
        &format!("csrf={CSRF}"),
    )
    .await;
    assert_eq!(twice.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn tokens_are_created_listed_and_revoked_through_the_api() {
    let app = TestApp::new().await;
    let tech = person(&app, Role::Technician, "t@acme.test", None).await;
    let (id, secret) = create_token(&app, &tech, "  ci  ").await;
    let listed = with_token(&app, Some(&secret), Method::GET, "/api/v1/tokens").await;
    let item = listed.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(item["name"], "ci", "names are trimmed");
    assert_eq!(item["revoked_at"], Value::Null);
    assert!(chrono::DateTime::parse_from_rfc3339(item["created_at"].as_str().unwrap()).is_ok());

    // Bad bodies.
    for (body, status) in [
        (r#"{"name": ""}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (r#"{"name": 5}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (r#"{}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (
            r#"{"name": "x", "token": "mine"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (r#"["x"]"#, StatusCode::UNPROCESSABLE_ENTITY),
        ("{", StatusCode::BAD_REQUEST),
    ] {
        let reply = app
            .send_as(Some(&tech), Method::POST, "/api/v1/tokens", Some(body), &[])
            .await;
        assert_problem(&reply, status);
    }

    // An idempotent retry creates nothing more and cannot show the secret again.
    let key = [("idempotency-key", "token-retry-1")];
    let first = app
        .send_as(
            Some(&tech),
            Method::POST,
            "/api/v1/tokens",
            Some(r#"{"name": "retry"}"#),
            &key,
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let retry = app
        .send_as(
            Some(&tech),
            Method::POST,
            "/api/v1/tokens",
            Some(r#"{"name": "retry"}"#),
            &key,
        )
        .await;
    assert_problem(&retry, StatusCode::CONFLICT);
    assert!(retry.json()["detail"]
        .as_str()
        .unwrap()
        .contains("cannot be shown again"));
    assert!(retry.json()["detail"]
        .as_str()
        .unwrap()
        .contains(first.json()["id"].as_str().unwrap()));
    let count: usize = get_as(&app, Some(&tech), "/api/v1/tokens").await.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"] == "retry")
        .count();
    assert_eq!(count, 1);

    // A technician may not revoke the owner's token (403); another tenant's is not found (404).
    let owners = token_id(&app, &app.owner, "bootstrap").await;
    let path = format!("/api/v1/tokens/{owners}");
    assert_problem(
        &app.send_as(Some(&tech), Method::DELETE, &path, None, &[])
            .await,
        StatusCode::FORBIDDEN,
    );
    let stranger = app.other_tenant("Globex", "boss@globex.test").await;
    let theirs = token_id(&app, &stranger, "bootstrap").await;
    for who in [&tech, &app.owner] {
        let reply = app
            .send_as(
                Some(who),
                Method::DELETE,
                &format!("/api/v1/tokens/{theirs}"),
                None,
                &[],
            )
            .await;
        assert_problem(&reply, StatusCode::NOT_FOUND);
    }
    let reply = app
        .send_as(
            Some(&tech),
            Method::DELETE,
            &format!("/api/v1/tokens/{}", uuid::Uuid::now_v7()),
            None,
            &[],
        )
        .await;
    assert_problem(&reply, StatusCode::NOT_FOUND);
    let reply = app
        .send_as(Some(&tech), Method::DELETE, "/api/v1/tokens/42", None, &[])
        .await;
    assert_problem(&reply, StatusCode::BAD_REQUEST);
    assert_eq!(
        get_as(&app, Some(&stranger), "/api/v1/tokens").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_as(&app, Some(&app.owner), "/api/v1/tokens")
            .await
            .status,
        StatusCode::OK
    );

    // Revoking one's own: 204, and the token gets 401 at once; again: 409.
    let path = format!("/api/v1/tokens/{id}");
    let revoked = app
        .send_as(Some(&tech), Method::DELETE, &path, None, &[])
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text);
    assert_unauthorized(&with_token(&app, Some(&secret), Method::GET, "/api/v1/tokens").await);
    let listed = get_as(&app, Some(&tech), "/api/v1/tokens").await;
    let item = listed.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert!(item["revoked_at"].is_string(), "{item}");
    assert_problem(
        &app.send_as(Some(&tech), Method::DELETE, &path, None, &[])
            .await,
        StatusCode::CONFLICT,
    );

    // The owner (ManageAllTokens) may revoke the technician's token.
    let techs = token_id(&app, &tech, "tests").await;
    let by_owner = app
        .send_as(
            Some(&app.owner),
            Method::DELETE,
            &format!("/api/v1/tokens/{techs}"),
            None,
            &[],
        )
        .await;
    assert_eq!(by_owner.status, StatusCode::NO_CONTENT, "{}", by_owner.text);
    assert_unauthorized(&get_as(&app, Some(&tech), "/api/v1/tokens").await);

    // Methods the endpoints do not serve are problems too.
    let reply = app
        .send_as(
            Some(&app.owner),
            Method::PUT,
            "/api/v1/tokens",
            Some("{}"),
            &[],
        )
        .await;
    assert_problem(&reply, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn missing_garbage_and_revoked_tokens_get_401_problems() {
    let app = TestApp::new().await;
    let (id, secret) = create_token(&app, &app.owner, "doomed").await;
    let revoked = app
        .send(Method::DELETE, &format!("/api/v1/tokens/{id}"), None, &[])
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    for path in ["/api/v1/tokens", "/api/v1/companies"] {
        assert_unauthorized(&with_token(&app, None, Method::GET, path).await);
        assert_unauthorized(&with_token(&app, Some("st_garbage"), Method::GET, path).await);
        assert_unauthorized(&with_token(&app, Some(&secret), Method::GET, path).await);
        let basic = app
            .send_as(
                None,
                Method::GET,
                path,
                None,
                &[("authorization", "Basic b3duZXI6cHc=")],
            )
            .await;
        assert_unauthorized(&basic);
    }
    assert_unauthorized(
        &app.send_as(
            None,
            Method::POST,
            "/api/v1/tokens",
            Some(r#"{"name": "x"}"#),
            &[],
        )
        .await,
    );
    assert_unauthorized(
        &app.send_as(
            None,
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            None,
            &[],
        )
        .await,
    );
    // The console's session cookie does not open the API.
    let cookie = format!("st_session={}", app.owner.session);
    let by_cookie = app
        .send_as(
            None,
            Method::GET,
            "/api/v1/tokens",
            None,
            &[("cookie", &cookie)],
        )
        .await;
    assert_unauthorized(&by_cookie);

    // A disabled person's tokens stop working.
    let tech = person(&app, Role::Technician, "t@acme.test", None).await;
    assert_eq!(
        get_as(&app, Some(&tech), "/api/v1/tokens").await.status,
        StatusCode::OK
    );
    disable(&app, &tech).await;
    assert_unauthorized(&get_as(&app, Some(&tech), "/api/v1/tokens").await);
}

async fn disable(app: &TestApp, who: &Person) {
    let meta = commands::EventMeta::new(app.owner.tenant_id, app.owner.user_id.to_string());
    app.store
        .execute::<domain::tenant::Tenant>(
            &app.owner.tenant_id.to_string(),
            domain::tenant::TenantCommand::DisableMember {
                user_id: who.user_id,
            },
            &(),
            &meta,
            commands::ConflictPolicy::RetryOnce,
        )
        .await
        .unwrap();
    app.settle().await;
}

async fn api_sign_in(app: &TestApp, email: &str, password: &str) -> Reply {
    let body = serde_json::json!({"email": email, "password": password, "token_name": "cli"});
    app.send_as(
        None,
        Method::POST,
        "/api/v1/sign-in",
        Some(&body.to_string()),
        &[],
    )
    .await
}

#[tokio::test]
async fn signing_in_through_the_api_gives_a_token_under_the_throttle() {
    let app = TestApp::new().await;
    let tech = person(&app, Role::Technician, "t@acme.test", None).await;

    let signed_in = api_sign_in(&app, "T@Acme.test", &tech.password).await;
    assert_eq!(signed_in.status, StatusCode::CREATED, "{}", signed_in.text);
    let json = signed_in.json();
    assert_eq!(json["name"], "cli");
    let token = json["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("st_"));
    let mine = with_token(&app, Some(&token), Method::GET, "/api/v1/tokens").await;
    assert_eq!(
        mine.status,
        StatusCode::OK,
        "the token works at once: {}",
        mine.text
    );
    assert!(mine.text.contains(json["id"].as_str().unwrap()));

    // Malformed requests are not sign-in failures.
    for body in [
        r#"{"email": "t@acme.test"}"#,
        r#"{"email": 1, "password": 2, "token_name": "x"}"#,
        "nope",
    ] {
        let reply = app
            .send_as(None, Method::POST, "/api/v1/sign-in", Some(body), &[])
            .await;
        assert!(
            reply.status == StatusCode::UNPROCESSABLE_ENTITY
                || reply.status == StatusCode::BAD_REQUEST,
            "{}",
            reply.text
        );
        assert_eq!(reply.content_type, "application/problem+json");
    }
    let blank_name =
        serde_json::json!({"email": "t@acme.test", "password": tech.password, "token_name": " "});
    let reply = app
        .send_as(
            None,
            Method::POST,
            "/api/v1/sign-in",
            Some(&blank_name.to_string()),
            &[],
        )
        .await;
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.json()["errors"][0]["field"], "token_name");

    // Wrong password: 401; the fifth failure locks the account: 429 with Retry-After, even
    // for the right password.
    for attempt in 1..=5 {
        let wrong = api_sign_in(&app, "t@acme.test", "not the password").await;
        assert_problem(&wrong, StatusCode::UNAUTHORIZED);
        assert!(
            wrong.headers.contains_key("www-authenticate"),
            "attempt {attempt}"
        );
    }
    for password in ["not the password", tech.password.as_str()] {
        let locked = api_sign_in(&app, "t@acme.test", password).await;
        assert_problem(&locked, StatusCode::TOO_MANY_REQUESTS);
        let wait: i64 = locked.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&wait), "{wait}");
        let detail = locked.json()["detail"].as_str().unwrap().to_owned();
        assert!(
            detail.starts_with("too many failed sign-ins; try again in ") && detail.ends_with(" s"),
            "{detail}"
        );
    }
    // Unknown addresses answer like wrong passwords.
    assert_problem(
        &api_sign_in(&app, "nobody@acme.test", "whatever it is").await,
        StatusCode::UNAUTHORIZED,
    );

    // A portal person cannot have API tokens; a disabled one cannot sign in.
    let company = app
        .request(
            Method::POST,
            "/api/v1/companies",
            Some(r#"{"name": "Initech"}"#),
        )
        .await;
    let company_id: uuid::Uuid = company.json()["id"].as_str().unwrap().parse().unwrap();
    let client = person(&app, Role::Client, "c@initech.test", Some(company_id)).await;
    assert_problem(
        &api_sign_in(&app, &client.email, &client.password).await,
        StatusCode::FORBIDDEN,
    );
    assert_problem(
        &get_as(&app, Some(&client), "/api/v1/tokens").await,
        StatusCode::FORBIDDEN,
    );
    let acct = person(&app, Role::Accountant, "a@acme.test", None).await;
    disable(&app, &acct).await;
    assert_problem(
        &api_sign_in(&app, &acct.email, &acct.password).await,
        StatusCode::FORBIDDEN,
    );
    let tokens_of_client = app
        .db
        .count(&format!(
            "SELECT count(*) FROM api_tokens WHERE user_id = '{}'",
            client.user_id
        ))
        .await;
    assert_eq!(
        tokens_of_client, 1,
        "only the harness's token: the sign-in created none"
    );
}

#[tokio::test]
async fn tokens_are_stored_only_as_digests() {
    let app = TestApp::new().await;
    let tech = person(&app, Role::Technician, "t@acme.test", None).await;
    let created = post_form(
        &app,
        &tech,
        "/account/tokens",
        &format!("csrf={CSRF}&name=console"),
    )
    .await;
    let from_console = shown_token(&created.text);
    let (_, from_api) = create_token(&app, &tech, "api").await;
    let signed_in = api_sign_in(&app, &tech.email, &tech.password).await;
    let from_sign_in = signed_in.json()["token"].as_str().unwrap().to_owned();
    app.settle().await;
    let stored = stored_text(&app).await;
    assert!(
        stored.contains("ApiTokenCreated"),
        "the search covers the log"
    );
    for token in [
        &from_console,
        &from_api,
        &from_sign_in,
        &tech.token,
        &app.owner.token,
    ] {
        assert!(!stored.contains(token.as_str()), "{token} is stored");
        assert!(
            !stored.contains(&token[3..]),
            "{token} is stored without its prefix"
        );
        assert!(
            stored.contains(&commands::identity::token_digest(token)),
            "only the digest of {token}"
        );
    }
}
