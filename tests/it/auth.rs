//! Sign-in, sessions, the throttle, password reset, the role matrix on every route, tenants
//! probing each other, and secrets kept out of the log, the read models and the logs.

use axum::http::{Method, StatusCode};
use domain::authz::{allows, Action};
use domain::identity::Role;
use serde_json::json;
use st_tests::{Person, Reply, TestApp, PASSWORD};

const CSRF: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

fn form_headers(extra_cookie: Option<&str>) -> Vec<(&'static str, String)> {
    let mut cookie = format!("st_csrf={CSRF}");
    if let Some(extra) = extra_cookie {
        cookie = format!("{cookie}; {extra}");
    }
    vec![
        ("content-type", "application/x-www-form-urlencoded".into()),
        ("cookie", cookie),
    ]
}

async fn post_form(app: &TestApp, who: Option<&Person>, path: &str, form: &str) -> Reply {
    let headers = form_headers(None);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    app.send_body_as(who, Method::POST, path, form, &headers)
        .await
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Signs in through the form; returns the reply (303 with the session cookie on success).
async fn sign_in(app: &TestApp, email: &str, password: &str) -> Reply {
    post_form(
        app,
        None,
        "/sign-in",
        &format!(
            "csrf={CSRF}&email={}&password={}&next=%2Fcompanies",
            encode(email),
            encode(password)
        ),
    )
    .await
}

fn session_of(reply: &Reply) -> Option<String> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("st_session="))
        .and_then(|v| v.split(';').next())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn as_session(person: &Person, session: &str) -> Person {
    Person {
        session: session.to_owned(),
        ..person.clone()
    }
}

#[tokio::test]
async fn sign_in_starts_a_server_side_session_and_sign_out_ends_it() {
    let app = TestApp::new().await;
    let anonymous = app
        .send_as(None, Method::GET, "/companies", None, &[])
        .await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers["location"], "/sign-in?next=%2Fcompanies");

    let wrong = sign_in(&app, &app.owner.email, "not the password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.text.contains("Wrong email or password"));
    assert!(
        wrong
            .text
            .contains(&format!("value=\"{}\"", app.owner.email)),
        "the email is kept"
    );
    assert!(session_of(&wrong).is_none());
    let unknown = sign_in(&app, "nobody@acme.test", PASSWORD).await;
    assert_eq!(
        unknown.status,
        StatusCode::UNAUTHORIZED,
        "same answer for an unknown address"
    );
    assert!(unknown.text.contains("Wrong email or password"));

    let ok = sign_in(&app, "  OWNER@acme.test ", PASSWORD).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.text);
    assert_eq!(ok.headers["location"], "/companies");
    let set = ok
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("st_session="))
        .unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain http on localhost: {set}");
    let secret = session_of(&ok).unwrap();
    let stored: i64 = app
        .db
        .count(&format!(
            "SELECT count(*) FROM sessions WHERE secret_digest = '{}'",
            commands::identity::token_digest(&secret)
        ))
        .await;
    assert_eq!(stored, 1, "the session is in PostgreSQL, by digest");
    let me = as_session(&app.owner, &secret);
    let page = app
        .send_as(Some(&me), Method::GET, "/companies", None, &[])
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["cache-control"], "no-store");
    assert!(page.text.contains("Olive Owner") && page.text.contains("Sign out"));

    // Sign-out needs the CSRF token too, and ends the session on the server.
    let forged = app
        .send_body_as(
            Some(&me),
            Method::POST,
            "/sign-out",
            "",
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let out = post_form(&app, Some(&me), "/sign-out", &format!("csrf={CSRF}")).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out
        .headers
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().starts_with("st_session=;")));
    let after = app
        .send_as(Some(&me), Method::GET, "/companies", None, &[])
        .await;
    assert_eq!(
        after.status,
        StatusCode::SEE_OTHER,
        "the old cookie no longer works"
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM sessions WHERE user_id IN (SELECT id FROM users)")
            .await,
        1,
        "only the harness's own session is left"
    );
}

#[tokio::test]
async fn cookies_are_secure_behind_an_https_proxy_that_is_trusted() {
    let app = TestApp::new().await;
    // The harness does not trust proxies: the header changes nothing.
    let reply = app
        .send_body_as(
            None,
            Method::POST,
            "/sign-in",
            &format!(
                "csrf={CSRF}&email=owner%40acme.test&password={}",
                encode(PASSWORD)
            ),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", &format!("st_csrf={CSRF}")),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await;
    let set = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("st_session="))
        .unwrap();
    assert!(!set.contains("Secure"));
    // The rule itself, with a trusting configuration.
    let state = web::AppState::new(
        app.db.pool.clone(),
        app.store.clone(),
        web::state::Settings {
            trust_proxy: true,
            ..web::state::Settings::local(std::time::Duration::from_secs(1))
        },
    );
    let mut headers = axum::http::HeaderMap::new();
    assert!(!web::auth::secure_cookies(&state, &headers));
    headers.insert("x-forwarded-proto", "https".parse().unwrap());
    assert!(web::auth::secure_cookies(&state, &headers));
    let https = web::AppState::new(
        app.db.pool.clone(),
        app.store.clone(),
        web::state::Settings {
            public_url: "https://support.example.com".into(),
            ..web::state::Settings::local(std::time::Duration::from_secs(1))
        },
    );
    assert!(web::auth::secure_cookies(
        &https,
        &axum::http::HeaderMap::new()
    ));
    // Served as https: every cookie the console sets is Secure (CSRF, flash and session).
    use tower::ServiceExt;
    let router = web::router(https);
    let page = router
        .clone()
        .oneshot(
            axum::http::Request::get("/sign-in")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let csrf = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        csrf.starts_with("st_csrf=") && csrf.ends_with("; Secure"),
        "{csrf}"
    );
    let signed_in = router
        .oneshot(
            axum::http::Request::post("/sign-in")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("cookie", format!("st_csrf={CSRF}"))
                .body(axum::body::Body::from(format!(
                    "csrf={CSRF}&email=owner%40acme.test&password={}",
                    encode(PASSWORD)
                )))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let cookies: Vec<String> = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        cookies.iter().any(|c| c.starts_with("st_session=")),
        "{cookies:?}"
    );
    assert!(
        cookies.iter().all(|c| c.matches("Secure").count() == 1),
        "{cookies:?}"
    );
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_account_with_a_clear_wait() {
    let app = TestApp::new().await;
    for attempt in 1..=5 {
        let reply = sign_in(&app, &app.owner.email, "wrong password!").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    // Locked now: even the right password waits, and the page says for how long.
    let locked = sign_in(&app, &app.owner.email, PASSWORD).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.text
    );
    assert!(locked.text.contains("Try again in"), "{}", locked.text);
    let retry: i64 = locked.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    assert!(session_of(&locked).is_none());
    // Another account is not locked by it.
    let other = app
        .person(&app.owner, Role::Technician, "tech@acme.test", None)
        .await;
    let fine = sign_in(&app, &other.email, PASSWORD).await;
    assert_eq!(fine.status, StatusCode::SEE_OTHER);
    // The lock ends: pretend its time has passed.
    sqlx::query("UPDATE sign_in_throttle SET locked_until = now() - interval '1 second'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let ok = sign_in(&app, &app.owner.email, PASSWORD).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM sign_in_throttle WHERE key LIKE 'account:owner%'")
            .await,
        0,
        "a successful sign-in clears the account's failures"
    );
}

#[tokio::test]
async fn the_session_list_signs_out_other_sessions_and_a_password_change_ends_them() {
    let app = TestApp::new().await;
    let first = session_of(&sign_in(&app, &app.owner.email, PASSWORD).await).unwrap();
    let second = session_of(&sign_in(&app, &app.owner.email, PASSWORD).await).unwrap();
    let me = as_session(&app.owner, &first);
    let page = app
        .send_as(Some(&me), Method::GET, "/account", None, &[])
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("This browser"));
    assert!(page.text.contains("Sign out all other sessions"));
    let headers = form_headers(Some(&format!("st_session={first}")));
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ended = app
        .send_body_as(
            None,
            Method::POST,
            "/account/sessions/end-others",
            &format!("csrf={CSRF}"),
            &headers,
        )
        .await;
    assert_eq!(ended.status, StatusCode::SEE_OTHER);
    let two = as_session(&app.owner, &second);
    assert_eq!(
        app.send_as(Some(&two), Method::GET, "/companies", None, &[])
            .await
            .status,
        StatusCode::SEE_OTHER,
        "the other session is over"
    );
    assert_eq!(
        app.send_as(Some(&me), Method::GET, "/companies", None, &[])
            .await
            .status,
        StatusCode::OK,
        "this one goes on"
    );

    // Password change: wrong current password → the form again; right → others end.
    let third = session_of(&sign_in(&app, &app.owner.email, PASSWORD).await).unwrap();
    let bad = app
        .send_body_as(
            None,
            Method::POST,
            "/account/password",
            &format!(
                "csrf={CSRF}&current=nope&password=a+new+long+password&confirm=a+new+long+password"
            ),
            &headers,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains("This is not your current password"));
    let short = app
        .send_body_as(
            None,
            Method::POST,
            "/account/password",
            &format!(
                "csrf={CSRF}&current={}&password=short&confirm=short",
                encode(PASSWORD)
            ),
            &headers,
        )
        .await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        short.text.contains("at least 10 characters"),
        "{}",
        short.text
    );
    let changed = app
        .send_body_as(
            None,
            Method::POST,
            "/account/password",
            &format!(
                "csrf={CSRF}&current={}&password=a+new+long+password&confirm=a+new+long+password",
                encode(PASSWORD)
            ),
            &headers,
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.text);
    assert_eq!(
        app.send_as(
            Some(&as_session(&app.owner, &third)),
            Method::GET,
            "/companies",
            None,
            &[]
        )
        .await
        .status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        sign_in(&app, &app.owner.email, PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sign_in(&app, &app.owner.email, "a new long password")
            .await
            .status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_password_reset_link_works_once_and_tells_nobody_who_has_an_account() {
    let app = TestApp::new().await;
    let unknown = post_form(
        &app,
        None,
        "/password-reset",
        &format!("csrf={CSRF}&email=nobody%40acme.test"),
    )
    .await;
    let known = post_form(
        &app,
        None,
        "/password-reset",
        &format!("csrf={CSRF}&email=owner%40acme.test"),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::SEE_OTHER);
    assert_eq!(known.status, StatusCode::SEE_OTHER);
    let flash = |r: &Reply| {
        r.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|v| v.starts_with("st_flash="))
            .unwrap()
            .replace("nobody", "X")
            .replace("owner", "X")
    };
    assert_eq!(flash(&unknown), flash(&known), "the same answer either way");
    let bad = post_form(
        &app,
        None,
        "/password-reset",
        &format!("csrf={CSRF}&email=not-an-email"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains("value=\"not-an-email\""));

    let body: String = sqlx::query_scalar("SELECT body FROM outbox WHERE kind = 'password_reset'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let link = body
        .split_whitespace()
        .find(|w| w.contains("/password-reset/"))
        .unwrap();
    let path = &link[link.find("/password-reset/").unwrap()..];
    let page = app.send_as(None, Method::GET, path, None, &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("Choose a new password"));

    let mismatch = post_form(
        &app,
        None,
        path,
        &format!("csrf={CSRF}&password=brand+new+password&confirm=other+password"),
    )
    .await;
    assert_eq!(mismatch.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(mismatch.text.contains("not the same"));
    let tampered = format!("{}x", path);
    let wrong = post_form(
        &app,
        None,
        &tampered,
        &format!("csrf={CSRF}&password=brand+new+password&confirm=brand+new+password"),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.text.contains("does not work any more"));

    let done = post_form(
        &app,
        None,
        path,
        &format!("csrf={CSRF}&password=brand+new+password&confirm=brand+new+password"),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    assert_eq!(
        app.send_as(Some(&app.owner), Method::GET, "/companies", None, &[])
            .await
            .status,
        StatusCode::SEE_OTHER,
        "a reset signs every session out"
    );
    assert_eq!(
        sign_in(&app, &app.owner.email, "brand new password")
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    let again = post_form(
        &app,
        None,
        path,
        &format!("csrf={CSRF}&password=another+new+password&confirm=another+new+password"),
    )
    .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "a link works once");
}

/// One route of the matrix: how to call it and the action it needs.
struct Route {
    method: Method,
    path: String,
    body: Option<String>,
    action: Action,
}

fn route(method: Method, path: &str, body: Option<&str>, action: Action) -> Route {
    Route {
        method,
        path: path.to_owned(),
        body: body.map(str::to_owned),
        action,
    }
}

#[tokio::test]
async fn every_role_against_every_route_of_the_matrix() {
    let app = TestApp::new().await;
    let company = app
        .request(
            Method::POST,
            "/api/v1/companies",
            Some(r#"{"name": "Initech", "monthly_rate": "10"}"#),
        )
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut people = vec![app.owner.clone()];
    for (role, email) in [
        (Role::Admin, "admin@acme.test"),
        (Role::Technician, "tech@acme.test"),
        (Role::Accountant, "books@acme.test"),
    ] {
        people.push(app.person(&app.owner, role, email, None).await);
    }
    let company_id = uuid::Uuid::parse_str(&company).unwrap();
    people.push(
        app.person(
            &app.owner,
            Role::Client,
            "client@initech.test",
            Some(company_id),
        )
        .await,
    );

    let c = format!("/companies/{company}");
    let a = format!("/api/v1/companies/{company}");
    let routes = vec![
        route(Method::GET, "/companies", None, Action::ViewCompanies),
        route(Method::GET, &c, None, Action::ViewCompanies),
        route(
            Method::POST,
            "/companies",
            Some("name=New+Co"),
            Action::EditCompanies,
        ),
        route(
            Method::POST,
            &format!("{c}/rename"),
            Some("name=Initech+2"),
            Action::EditCompanies,
        ),
        route(
            Method::POST,
            &format!("{c}/rate"),
            Some("monthly_rate=11"),
            Action::SetCompanyRate,
        ),
        route(
            Method::GET,
            "/api/v1/companies",
            None,
            Action::ViewCompanies,
        ),
        route(Method::GET, &a, None, Action::ViewCompanies),
        route(
            Method::POST,
            "/api/v1/companies",
            Some(r#"{"name": "Api Co"}"#),
            Action::EditCompanies,
        ),
        route(
            Method::PATCH,
            &a,
            Some(r#"{"name": "Initech 3"}"#),
            Action::EditCompanies,
        ),
        route(
            Method::PATCH,
            &a,
            Some(r#"{"monthly_rate": "12"}"#),
            Action::SetCompanyRate,
        ),
        route(Method::GET, "/account", None, Action::OwnAccount),
        route(Method::GET, "/team", None, Action::ViewUsers),
        route(Method::GET, "/api/v1/users", None, Action::ViewUsers),
        route(Method::GET, "/account/tokens", None, Action::OwnTokens),
        route(Method::GET, "/api/v1/tokens", None, Action::OwnTokens),
        route(Method::GET, "/activity", None, Action::ViewActivity),
        route(Method::GET, "/settings", None, Action::OwnAccount),
        route(Method::GET, "/api/v1/tenant", None, Action::OwnAccount),
        route(
            Method::PATCH,
            "/api/v1/tenant",
            Some(r#"{"time_zone": "Europe/Paris"}"#),
            Action::TenantSettings,
        ),
        route(Method::GET, "/search?q=init", None, Action::ViewCompanies),
        route(
            Method::GET,
            &format!("{a}/contacts"),
            None,
            Action::ViewCompanies,
        ),
        route(
            Method::POST,
            &format!("{a}/contacts"),
            Some(r#"{"name": "Ann"}"#),
            Action::EditContacts,
        ),
        route(Method::GET, "/companies/new", None, Action::EditCompanies),
    ];
    let mut failures = Vec::new();
    for person in &people {
        for r in &routes {
            let api = r.path.starts_with("/api/");
            let reply = match (&r.body, api) {
                (Some(body), false) => {
                    post_form(&app, Some(person), &r.path, &format!("csrf={CSRF}&{body}")).await
                }
                (body, _) => {
                    app.send_as(
                        Some(person),
                        r.method.clone(),
                        &r.path,
                        body.as_deref(),
                        &[],
                    )
                    .await
                }
            };
            let allowed = allows(person.role, r.action);
            let ok = if allowed {
                reply.status.is_success() || reply.status.is_redirection()
            } else {
                reply.status == StatusCode::FORBIDDEN
            };
            if !ok {
                failures.push(format!(
                    "{} {} {}: expected {}, got {}",
                    person.role,
                    r.method,
                    r.path,
                    if allowed { "allowed" } else { "403" },
                    reply.status
                ));
            }
            if !allowed && api && reply.content_type != "application/problem+json" {
                failures.push(format!(
                    "{} {} {}: a 403 that is not problem+json",
                    person.role, r.method, r.path
                ));
            }
            if !allowed && !api && !reply.text.contains("Not allowed") {
                failures.push(format!(
                    "{} {} {}: not the friendly 403 page",
                    person.role, r.method, r.path
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn tenants_cannot_see_or_touch_each_others_records() {
    let app = TestApp::new().await;
    let other = app.other_tenant("Globex IT", "owner@globex.test").await;
    let theirs = app
        .send_as(
            Some(&other),
            Method::POST,
            "/api/v1/companies",
            Some(r#"{"name": "Globex Client"}"#),
            &[],
        )
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ours = app
        .request(
            Method::POST,
            "/api/v1/companies",
            Some(r#"{"name": "Acme Client"}"#),
        )
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = app.db.count("SELECT count(*) FROM events").await;
    for path in [
        format!("/companies/{theirs}"),
        format!("/api/v1/companies/{theirs}"),
    ] {
        let reply = app.request(Method::GET, &path, None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    let patched = app
        .request(
            Method::PATCH,
            &format!("/api/v1/companies/{theirs}"),
            Some(r#"{"name": "Mine now"}"#),
        )
        .await;
    assert_eq!(patched.status, StatusCode::NOT_FOUND);
    for action in ["rename", "rate", "archive", "restore"] {
        let reply = post_form(
            &app,
            Some(&app.owner),
            &format!("/companies/{theirs}/{action}"),
            &format!("csrf={CSRF}&name=Mine&monthly_rate=1"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{action}");
    }
    assert_eq!(
        app.db.count("SELECT count(*) FROM events").await,
        before,
        "nothing appended"
    );
    let list = app
        .request(Method::GET, "/api/v1/companies", None)
        .await
        .json();
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [ours.as_str()]);
    let page = app.request(Method::GET, "/companies", None).await;
    assert!(!page.text.contains("Globex Client"));
    // And the other way round.
    let reply = app
        .send_as(
            Some(&other),
            Method::GET,
            &format!("/api/v1/companies/{ours}"),
            None,
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_api_wants_a_valid_bearer_token_and_never_a_cookie() {
    let app = TestApp::new().await;
    for auth in [
        None,
        Some("Bearer st_nonsense"),
        Some("Basic b3duZXI6cHc="),
        Some("Bearer "),
    ] {
        let headers: Vec<(&str, &str)> =
            auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
        let reply = app
            .send_as(None, Method::GET, "/api/v1/companies", None, &headers)
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(reply.content_type, "application/problem+json");
        assert_eq!(
            reply.headers["www-authenticate"],
            "Bearer realm=\"SupportTracker\""
        );
        assert!(reply.json()["detail"].as_str().unwrap().contains("Bearer"));
    }
    // A console session cookie is not an API credential (no CSRF defence needed on the API).
    let reply = app
        .send_as(
            None,
            Method::POST,
            "/api/v1/companies",
            Some(&json!({"name": "X"}).to_string()),
            &[("cookie", &format!("st_session={}", app.owner.session))],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // A token acts with its person's current role: demoted to technician, the token can no
    // longer create companies.
    let admin = app
        .person(&app.owner, Role::Admin, "admin@acme.test", None)
        .await;
    let created = app
        .send_as(
            Some(&admin),
            Method::POST,
            "/api/v1/companies",
            Some(r#"{"name": "By admin"}"#),
            &[],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let meta = commands::EventMeta::new(app.owner.tenant_id, app.owner.user_id.to_string());
    app.store
        .execute::<domain::tenant::Tenant>(
            &app.owner.tenant_id.to_string(),
            domain::tenant::TenantCommand::ChangeRole {
                user_id: admin.user_id,
                role: Role::Technician,
            },
            &(),
            &meta,
            commands::ConflictPolicy::RetryOnce,
        )
        .await
        .unwrap();
    app.settle().await;
    let refused = app
        .send_as(
            Some(&admin),
            Method::POST,
            "/api/v1/companies",
            Some(r#"{"name": "By tech"}"#),
            &[],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.json()["status"], 403);
}

/// The session cookie's secret from a sign-in reply of a real server.
fn session_from(reply: &reqwest::Response) -> Option<String> {
    reply
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("st_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

#[tokio::test]
async fn no_password_token_or_session_secret_reaches_the_log_the_read_models_or_the_logs() {
    let db = st_tests::TestDb::new().await;
    let log = std::env::temp_dir().join(format!("st-secrets-{}.log", uuid::Uuid::new_v4()));
    let server =
        st_tests::process::Server::start_logging(&db.url, &[("ST_LOG", "debug")], Some(&log))
            .with_owner(&db.url)
            .await;
    let owner = server.owner.clone().unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let sign_in = |password: String| {
        let client = client.clone();
        let url = server.url("/sign-in");
        let email = owner.email.clone();
        async move {
            client
                .post(url)
                .header("cookie", format!("st_csrf={CSRF}"))
                .form(&[
                    ("csrf", CSRF),
                    ("email", email.as_str()),
                    ("password", password.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    // A wrong password, a right one, an API token made through the API, a password change.
    let wrong_password = "this is not the password";
    assert_eq!(sign_in(wrong_password.into()).await.status(), 401);
    let signed_in = sign_in(owner.password.clone()).await;
    assert_eq!(signed_in.status(), 303);
    let session = session_from(&signed_in).unwrap();
    let created: serde_json::Value = client
        .post(server.url("/api/v1/tokens"))
        .bearer_auth(&owner.api_token)
        .json(&json!({"name": "script"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let script_token = created["token"].as_str().expect("the new token").to_owned();
    let new_password = "a completely new passphrase";
    let changed = client
        .post(server.url("/account/password"))
        .header("cookie", format!("st_csrf={CSRF}; st_session={session}"))
        .form(&[
            ("csrf", CSRF),
            ("current", owner.password.as_str()),
            ("password", new_password),
            ("confirm", new_password),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 303);
    let second = session_from(&sign_in(new_password.into()).await).unwrap();
    st_tests::settle(&db.pool).await;
    server.stop();

    let secrets = [
        ("the first password", owner.password.as_str()),
        ("the new password", new_password),
        ("a wrong password", wrong_password),
        ("the bootstrap token", owner.api_token.as_str()),
        ("the bootstrap token's random part", &owner.api_token[3..]),
        ("the script token", script_token.as_str()),
        ("the first session", session.as_str()),
        ("the second session", second.as_str()),
    ];
    // Every table of the database (event log, read models, sessions, throttle, outbox).
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(tables.iter().any(|t| t == "events") && tables.iter().any(|t| t == "sessions"));
    let mut dump = String::new();
    for table in &tables {
        let text: Option<String> = sqlx::query_scalar(&format!(
            "SELECT string_agg(t::text, E'\\n') FROM {table} t"
        ))
        .fetch_one(&db.pool)
        .await
        .unwrap();
        dump.push_str(&text.unwrap_or_default());
    }
    let logs = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(logs.contains("signed in"), "the log was captured: {logs}");
    for (what, secret) in secrets {
        assert!(!dump.contains(secret), "{what} is in the database");
        assert!(!logs.contains(secret), "{what} is in the server's log");
    }
    assert!(
        dump.contains(&commands::identity::token_digest(&script_token)),
        "only digests"
    );
}

#[tokio::test]
async fn people_change_their_own_name_and_a_bad_one_is_explained() {
    let app = TestApp::new().await;
    let before = app.db.count("SELECT count(*) FROM events").await;
    let bad = post_form(
        &app,
        Some(&app.owner),
        "/account/name",
        &format!("csrf={CSRF}&name=+++"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains("The name must be 1 to 200 characters"));
    assert_eq!(app.db.count("SELECT count(*) FROM events").await, before);
    let ok = post_form(
        &app,
        Some(&app.owner),
        "/account/name",
        &format!("csrf={CSRF}&name=Olivia+Owner"),
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let page = app.request(Method::GET, "/account", None).await;
    assert!(
        page.text.contains("Olivia Owner"),
        "the navigation shows the new name at once"
    );
    // The rename waits for the `users` read model only; the activity trail follows.
    app.settle().await;
    let activity = app.request(Method::GET, "/activity", None).await;
    assert!(activity.text.contains("Renamed to Olivia Owner"));
}

#[tokio::test]
async fn the_sign_in_page_of_a_new_server_says_how_to_create_the_first_account() {
    use tower::ServiceExt;
    let db = st_tests::TestDb::new().await;
    let store = commands::EventStore::new(db.pool.clone());
    let router = web::router(web::AppState::new(
        db.pool.clone(),
        store,
        web::state::Settings::local(std::time::Duration::from_secs(1)),
    ));
    let reply = router
        .oneshot(
            axum::http::Request::get("/sign-in")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = axum::body::to_bytes(reply.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("No account exists on this server yet"),
        "{text}"
    );
    assert!(text.contains("supporttracker bootstrap"));
    let app = TestApp::new().await;
    let page = app.send_as(None, Method::GET, "/sign-in", None, &[]).await;
    assert!(!page.text.contains("No account exists"));
}
