//! The pages of signing in and out, of one's own account (password, sessions), of password
//! reset by emailed one-time link, and of accepting an invitation.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Form, FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use commands::identity::{self as ident, SignInError};
use commands::{sessions, CommandError, ConflictPolicy, EventMeta};
use domain::identity::Email;
use domain::user::{OneTimeLink, User, UserCommand, UserError};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::{self, Principal};
use crate::console::{
    csrf_refusal, display_time, error_page, internal_page, redirect_with_flash, Cookies,
};
use crate::AppState;

/// How long a password-reset link works.
pub const RESET_LINK_LIFETIME: chrono::Duration = chrono::Duration::hours(1);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/account", get(account_page))
        .route("/account/password", post(change_password))
        .route("/account/name", post(change_name))
        .route("/account/sessions/{id}/end", post(end_session))
        .route("/account/sessions/end-others", post(end_other_sessions))
        .route(
            "/password-reset",
            get(reset_request_page).post(request_reset),
        )
        .route(
            "/password-reset/{user}/{token}",
            get(reset_page).post(reset_password),
        )
        .route(
            "/invitation/{user}/{token}",
            get(invitation_page).post(accept_invitation),
        )
}

#[derive(Template, WebTemplate)]
#[template(path = "sign_in.html")]
struct SignInPage {
    flash: Option<String>,
    csrf: String,
    email: String,
    next: String,
    error: Option<String>,
    /// Nobody can sign in yet: the page says how to create the first account.
    first_run: bool,
}

/// True when no one has an account on this deployment yet.
async fn first_run(state: &AppState) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT NOT EXISTS (SELECT 1 FROM user_emails)")
        .fetch_one(&state.pool)
        .await
        .unwrap_or(false)
}

#[derive(Debug, Deserialize, Default)]
struct NextParam {
    next: Option<String>,
}

async fn sign_in_page(
    State(state): State<AppState>,
    me: Option<Principal>,
    axum::Extension(cookies): axum::Extension<Cookies>,
    Query(params): Query<NextParam>,
) -> Response {
    let next = auth::safe_next(params.next.as_deref());
    if me.is_some() {
        return axum::response::Redirect::to(&next).into_response();
    }
    SignInPage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        email: String::new(),
        next,
        error: None,
        first_run: first_run(&state).await,
    }
    .into_response()
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
}

async fn sign_in(
    State(state): State<AppState>,
    axum::Extension(cookies): axum::Extension<Cookies>,
    request: Request,
) -> Response {
    let peer = auth::peer(request.extensions());
    let headers = request.headers().clone();
    let Ok(Form(form)) = Form::<SignInForm>::from_request(request, &state).await else {
        return error_page(
            StatusCode::BAD_REQUEST,
            &cookies,
            "The form could not be read",
            "Reload the sign-in page and try again.",
        );
    };
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    let next = auth::safe_next(form.next.as_deref());
    let address = auth::client_address(&state, &headers, peer);
    let again = |status: StatusCode, error: String| {
        (
            status,
            SignInPage {
                flash: None,
                csrf: cookies.csrf.clone(),
                email: form.email.clone(),
                next: next.clone(),
                error: Some(error),
                first_run: false,
            },
        )
            .into_response()
    };
    let signed_in = match ident::sign_in(&state.store, &form.email, &form.password, &address).await
    {
        Ok(signed_in) => signed_in,
        Err(SignInError::WrongCredentials) => {
            tracing::info!(address, "sign-in refused: wrong email or password");
            return again(StatusCode::UNAUTHORIZED, "Wrong email or password.".into());
        }
        Err(SignInError::Throttled(wait)) => {
            tracing::warn!(address, "sign-in throttled");
            let mut response = again(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many failed sign-ins. Try again in {}.",
                    commands::throttle::human(wait)
                ),
            );
            if let Ok(v) = wait.num_seconds().max(1).to_string().parse() {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return response;
        }
        Err(SignInError::Disabled) => {
            return again(
                StatusCode::FORBIDDEN,
                "This account is disabled. Ask an administrator of your organisation.".into(),
            )
        }
        Err(SignInError::Failed(error)) => return internal_page(error),
    };
    start_session(&state, &headers, &address, &signed_in, &next).await
}

/// Starts a session for a person who just proved who they are and sends them on.
async fn start_session(
    state: &AppState,
    headers: &HeaderMap,
    address: &str,
    signed_in: &ident::SignedIn,
    next: &str,
) -> Response {
    // The session's person must be in the read model the next request checks.
    state
        .read_your_writes(
            &["users"],
            "user",
            &signed_in.user_id.to_string(),
            signed_in.user_version,
        )
        .await;
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (secret, session) = match sessions::start(
        &state.pool,
        signed_in.tenant_id,
        signed_in.user_id,
        user_agent,
        address,
    )
    .await
    {
        Ok(started) => started,
        Err(error) => return internal_page(error),
    };
    tracing::info!(user_id = %signed_in.user_id, session_id = %session.id, "signed in");
    let mut response = axum::response::Redirect::to(next).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        auth::session_cookie(Some(&secret), auth::secure_cookies(state, headers)),
    );
    response
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(
    State(state): State<AppState>,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    if let Some(secret) = auth::cookie(&headers, auth::SESSION_COOKIE) {
        if let Err(error) = sessions::end_by_secret(&state.pool, secret).await {
            return internal_page(error);
        }
    }
    let mut response = redirect_with_flash("/sign-in", "You are signed out.");
    response.headers_mut().append(
        header::SET_COOKIE,
        auth::session_cookie(None, auth::secure_cookies(&state, &headers)),
    );
    response
}

struct SessionView {
    id: Uuid,
    current: bool,
    started: String,
    last_seen: String,
    device: String,
    address: String,
}

/// The fields of the change-password form (and the name form's message and input).
#[derive(Default)]
struct PasswordForm {
    current_error: Option<String>,
    password_error: Option<String>,
    name_error: Option<String>,
    name_input: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "account.html")]
struct AccountPage {
    flash: Option<String>,
    csrf: String,
    name: String,
    email: String,
    role: &'static str,
    sessions: Vec<SessionView>,
    form: PasswordForm,
}

/// A short description of a browser from its user agent.
fn device(user_agent: &str) -> String {
    let browser = ["Edg/", "Firefox/", "Chrome/", "Safari/", "curl/"]
        .iter()
        .find(|b| user_agent.contains(*b))
        .map(|b| match *b {
            "Edg/" => "Edge",
            "Firefox/" => "Firefox",
            "Chrome/" => "Chrome",
            "Safari/" => "Safari",
            _ => "curl",
        });
    let system = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(k, _)| user_agent.contains(k))
    .map(|(_, v)| *v);
    match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b.to_owned(),
        (None, Some(s)) => s.to_owned(),
        (None, None) if user_agent.is_empty() => "Unknown browser".to_owned(),
        (None, None) => user_agent.chars().take(60).collect(),
    }
}

async fn render_account(
    state: &AppState,
    me: &Principal,
    cookies: &Cookies,
    form: PasswordForm,
    status: StatusCode,
) -> Response {
    let list = match sessions::list(&state.pool, me.user_id).await {
        Ok(list) => list,
        Err(error) => return internal_page(error),
    };
    let current = me.session_id();
    (
        status,
        AccountPage {
            flash: cookies.flash.clone(),
            csrf: cookies.csrf.clone(),
            name: me.name.clone(),
            email: me.email.clone(),
            role: me.role.as_str(),
            sessions: list
                .into_iter()
                .map(|s| SessionView {
                    id: s.id,
                    current: Some(s.id) == current,
                    started: display_time(&s.created_at),
                    last_seen: display_time(&s.last_seen_at),
                    device: device(&s.user_agent),
                    address: if s.address.is_empty() {
                        "—".into()
                    } else {
                        s.address
                    },
                })
                .collect(),
            form,
        },
    )
        .into_response()
}

async fn account_page(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
) -> Response {
    if let Err(refused) = me.require(domain::authz::Action::OwnAccount) {
        return refused.into_response();
    }
    render_account(
        &state,
        &me,
        &cookies,
        PasswordForm::default(),
        StatusCode::OK,
    )
    .await
}

#[derive(Debug, Deserialize)]
struct ChangePasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

/// The message for a new password and its confirmation (`None`: acceptable).
fn new_password_error(password: &str, confirm: &str) -> Option<String> {
    if let Err(e) = ident::check_password(password) {
        return Some(format!("The new password {}.", e.message));
    }
    (password != confirm).then(|| "The two passwords are not the same.".to_owned())
}

async fn change_password(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Form(form): Form<ChangePasswordForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    let again = |form: PasswordForm| {
        render_account(
            &state,
            &me,
            &cookies,
            form,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    };
    let (user, _) = match state
        .store
        .load::<User>(me.tenant_id, &me.user_id.to_string())
        .await
    {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let current = form.current.clone();
    let stored = user.password_hash.clone().unwrap_or_default();
    let current_ok = tokio::task::spawn_blocking(move || ident::verify_password(&current, &stored))
        .await
        .unwrap_or(false);
    if !current_ok {
        return again(PasswordForm {
            current_error: Some("This is not your current password.".into()),
            ..Default::default()
        })
        .await;
    }
    if let Some(error) = new_password_error(&form.password, &form.confirm) {
        return again(PasswordForm {
            password_error: Some(error),
            ..Default::default()
        })
        .await;
    }
    let password_hash = match ident::hash_password_async(&form.password).await {
        Ok(hash) => hash,
        Err(error) => return internal_page(error),
    };
    if let Err(error) = state
        .store
        .execute::<User>(
            &me.user_id.to_string(),
            UserCommand::ChangePassword { password_hash },
            &(),
            &me.meta(),
            ConflictPolicy::RetryOnce,
        )
        .await
    {
        return internal_page(error);
    }
    let ended = sessions::end_all(&state.pool, me.user_id, me.session_id())
        .await
        .unwrap_or(0);
    redirect_with_flash(
        "/account",
        &match ended {
            0 => "Password changed.".to_owned(),
            1 => "Password changed. Your other session was signed out.".to_owned(),
            n => format!("Password changed. Your {n} other sessions were signed out."),
        },
    )
}

#[derive(Debug, Deserialize)]
struct NameForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

/// One's own name, as colleagues see it (navigation, team, activity).
async fn change_name(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Form(form): Form<NameForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    let result = state
        .store
        .execute::<User>(
            &me.user_id.to_string(),
            UserCommand::Rename {
                name: form.name.clone(),
            },
            &(),
            &me.meta(),
            ConflictPolicy::RetryOnce,
        )
        .await;
    match result {
        Ok(done) if done.events.is_empty() => redirect_with_flash("/account", "Nothing changed."),
        Ok(done) => {
            state
                .read_your_writes(&["users"], "user", &me.user_id.to_string(), done.version)
                .await;
            redirect_with_flash("/account", "Your name is changed.")
        }
        Err(CommandError::Domain(UserError::InvalidName)) => {
            render_account(
                &state,
                &me,
                &cookies,
                PasswordForm {
                    name_error: Some("The name must be 1 to 200 characters.".into()),
                    name_input: Some(form.name),
                    ..Default::default()
                },
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(error) => internal_page(error),
    }
}

async fn end_session(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    let Ok(id) = Uuid::parse_str(&id) else {
        return crate::console::not_found_page();
    };
    match sessions::end(&state.pool, me.user_id, id).await {
        Ok(true) if Some(id) == me.session_id() => {
            let mut response = redirect_with_flash("/sign-in", "You are signed out.");
            response.headers_mut().append(
                header::SET_COOKIE,
                auth::session_cookie(None, auth::secure_cookies(&state, &headers)),
            );
            response
        }
        Ok(true) => redirect_with_flash("/account", "That session is signed out."),
        // Someone else's session, or one already ended: nothing to show of it.
        Ok(false) => crate::console::not_found_page(),
        Err(error) => internal_page(error),
    }
}

async fn end_other_sessions(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    match sessions::end_all(&state.pool, me.user_id, me.session_id()).await {
        Ok(0) => redirect_with_flash("/account", "You had no other sessions."),
        Ok(1) => redirect_with_flash("/account", "Your other session is signed out."),
        Ok(n) => redirect_with_flash(
            "/account",
            &format!("Your {n} other sessions are signed out."),
        ),
        Err(error) => internal_page(error),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "password_reset.html")]
struct ResetRequestPage {
    flash: Option<String>,
    csrf: String,
    email: String,
    error: Option<String>,
}

async fn reset_request_page(axum::Extension(cookies): axum::Extension<Cookies>) -> Response {
    ResetRequestPage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        email: String::new(),
        error: None,
    }
    .into_response()
}

#[derive(Debug, Deserialize)]
struct ResetRequestForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

/// Sends a reset link when the address belongs to an enabled person with a password; the
/// answer is the same either way, so the page does not tell who has an account.
async fn request_reset(
    State(state): State<AppState>,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Form(form): Form<ResetRequestForm>,
) -> Response {
    if let Some(refused) = csrf_refusal(&cookies, &headers, &form.csrf) {
        return refused;
    }
    let email = match Email::parse(&form.email) {
        Ok(email) => email,
        Err(e) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                ResetRequestPage {
                    flash: None,
                    csrf: cookies.csrf.clone(),
                    email: form.email.clone(),
                    error: Some(format!("Email {}.", e.message)),
                },
            )
                .into_response()
        }
    };
    if let Err(error) = send_reset_link(&state, &email).await {
        return internal_page(error);
    }
    redirect_with_flash(
        "/sign-in",
        &format!(
            "If {email} belongs to an account, a link to choose a new password is on its way. It works for {} minutes.",
            RESET_LINK_LIFETIME.num_minutes()
        ),
    )
}

async fn send_reset_link(state: &AppState, email: &Email) -> Result<(), String> {
    let found: Option<(Uuid, Uuid)> =
        sqlx::query_as("SELECT user_id, tenant_id FROM user_emails WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(&state.pool)
            .await
            .map_err(|e| e.to_string())?;
    let Some((user_id, tenant_id)) = found else {
        tracing::info!("password reset asked for an unknown address");
        return Ok(());
    };
    let enabled: Option<bool> = sqlx::query_scalar(
        "SELECT member AND enabled AND has_password FROM users WHERE id = $1 AND tenant_id = $2",
    )
    .bind(user_id)
    .bind(tenant_id)
    .fetch_optional(&state.pool)
    .await
    .map_err(|e| e.to_string())?;
    if enabled != Some(true) {
        tracing::info!(%user_id, "password reset asked for a person who cannot sign in");
        return Ok(());
    }
    let (token, token_digest) = ident::new_token("pr_");
    let expires_at = Utc::now() + RESET_LINK_LIFETIME;
    let link = format!(
        "{}/password-reset/{user_id}/{token}",
        state.settings().public_url
    );
    let meta = EventMeta::new(tenant_id, "password-reset");
    // Sealed before the event, so the notifications consumer always finds it.
    state
        .settings()
        .vault
        .seal_link(
            &state.pool,
            tenant_id,
            user_id,
            ident::link_secret_id(meta.command_id),
            &link,
        )
        .await
        .map_err(|e| e.to_string())?;
    state
        .store
        .execute::<User>(
            &user_id.to_string(),
            UserCommand::RequestPasswordReset {
                link: OneTimeLink {
                    token_digest,
                    expires_at,
                },
            },
            &(),
            &meta,
            ConflictPolicy::RetryOnce,
        )
        .await
        .map_err(|e| e.to_string())?;
    commands::outbox::enqueue(
        &state.pool,
        tenant_id,
        "password_reset",
        email.as_str(),
        "Choose a new SupportTracker password",
        &format!(
            "Someone (hopefully you) asked to choose a new password for {email}.\n\n\
             Open this link within {} minutes to choose it:\n{link}\n\n\
             If it was not you, ignore this message: your password stays as it is.",
            RESET_LINK_LIFETIME.num_minutes()
        ),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(())
}

#[derive(Template, WebTemplate)]
#[template(path = "password_new.html")]
struct NewPasswordPage {
    flash: Option<String>,
    csrf: String,
    heading: &'static str,
    intro: &'static str,
    button: &'static str,
    action: String,
    error: Option<String>,
}

#[derive(Clone, Copy)]
enum LinkKind {
    Reset,
    Invitation,
}

impl LinkKind {
    fn page(self, cookies: &Cookies, action: String, error: Option<String>) -> NewPasswordPage {
        let (heading, intro, button) = match self {
            LinkKind::Reset => (
                "Choose a new password",
                "Choose the password you will sign in with from now on. Every session of your account will be signed out.",
                "Set password",
            ),
            LinkKind::Invitation => (
                "Welcome to SupportTracker",
                "You were invited to join your team. Choose the password you will sign in with.",
                "Join",
            ),
        };
        NewPasswordPage {
            flash: cookies.flash.clone(),
            csrf: cookies.csrf.clone(),
            heading,
            intro,
            button,
            action,
            error,
        }
    }
}

async fn reset_page(
    axum::Extension(cookies): axum::Extension<Cookies>,
    Path((user, token)): Path<(String, String)>,
) -> Response {
    LinkKind::Reset
        .page(&cookies, format!("/password-reset/{user}/{token}"), None)
        .into_response()
}

async fn invitation_page(
    axum::Extension(cookies): axum::Extension<Cookies>,
    Path((user, token)): Path<(String, String)>,
) -> Response {
    LinkKind::Invitation
        .page(&cookies, format!("/invitation/{user}/{token}"), None)
        .into_response()
}

#[derive(Debug, Deserialize)]
struct NewPasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

async fn reset_password(
    State(state): State<AppState>,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Path((user, token)): Path<(String, String)>,
    Form(form): Form<NewPasswordForm>,
) -> Response {
    use_link(
        &state,
        &cookies,
        &headers,
        LinkKind::Reset,
        &user,
        &token,
        form,
    )
    .await
}

async fn accept_invitation(
    State(state): State<AppState>,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    Path((user, token)): Path<(String, String)>,
    Form(form): Form<NewPasswordForm>,
) -> Response {
    use_link(
        &state,
        &cookies,
        &headers,
        LinkKind::Invitation,
        &user,
        &token,
        form,
    )
    .await
}

/// Sets a password through a one-time link (reset or invitation).
async fn use_link(
    state: &AppState,
    cookies: &Cookies,
    headers: &HeaderMap,
    kind: LinkKind,
    user: &str,
    token: &str,
    form: NewPasswordForm,
) -> Response {
    if let Some(refused) = csrf_refusal(cookies, headers, &form.csrf) {
        return refused;
    }
    let action = match kind {
        LinkKind::Reset => format!("/password-reset/{user}/{token}"),
        LinkKind::Invitation => format!("/invitation/{user}/{token}"),
    };
    let invalid = || {
        error_page(
            StatusCode::BAD_REQUEST,
            cookies,
            "This link does not work any more",
            match kind {
                LinkKind::Reset => "The link is wrong, was used already or has expired. Ask for a new one from the sign-in page.",
                LinkKind::Invitation => "The link is wrong, was used already or has expired. Ask the person who invited you to send a new invitation.",
            },
        )
    };
    if let Some(error) = new_password_error(&form.password, &form.confirm) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            kind.page(cookies, action, Some(error)),
        )
            .into_response();
    }
    let Ok(user_id) = Uuid::parse_str(user) else {
        return invalid();
    };
    let tenant_id = match ident::tenant_of(&state.pool, user_id).await {
        Ok(Some(tenant_id)) => tenant_id,
        Ok(None) => return invalid(),
        Err(error) => return internal_page(error),
    };
    let password_hash = match ident::hash_password_async(&form.password).await {
        Ok(hash) => hash,
        Err(error) => return internal_page(error),
    };
    let token_digest = ident::token_digest(token);
    let now = Utc::now();
    let command = match kind {
        LinkKind::Reset => UserCommand::ResetPassword {
            token_digest,
            password_hash,
            now,
        },
        LinkKind::Invitation => UserCommand::AcceptInvitation {
            token_digest,
            password_hash,
            now,
        },
    };
    let result = state
        .store
        .execute::<User>(
            &user_id.to_string(),
            command,
            &(),
            &EventMeta::new(tenant_id, user_id.to_string()),
            ConflictPolicy::Report,
        )
        .await;
    match result {
        Ok(done) => {
            if let Err(error) = sessions::end_all(&state.pool, user_id, None).await {
                return internal_page(error);
            }
            state
                .read_your_writes(&["users"], "user", &user_id.to_string(), done.version)
                .await;
            redirect_with_flash(
                "/sign-in",
                match kind {
                    LinkKind::Reset => "Your password is changed. Sign in with it.",
                    LinkKind::Invitation => "Your password is set. Sign in with your email and it.",
                },
            )
        }
        Err(CommandError::Domain(UserError::InvalidLink | UserError::AlreadyAccepted))
        | Err(CommandError::NotFound)
        | Err(CommandError::Domain(UserError::NotFound))
        | Err(CommandError::Conflict) => invalid(),
        Err(error) => internal_page(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_read_well() {
        assert_eq!(
            device("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0 Safari/537.36"),
            "Chrome on Linux"
        );
        assert_eq!(device("curl/8.5.0"), "curl");
        assert_eq!(device(""), "Unknown browser");
    }

    #[test]
    fn new_passwords_must_be_long_enough_and_confirmed() {
        assert!(new_password_error("short", "short")
            .unwrap()
            .contains("at least"));
        assert!(new_password_error("long enough one", "long enough two")
            .unwrap()
            .contains("not the same"));
        assert_eq!(
            new_password_error("long enough one", "long enough one"),
            None
        );
    }
}
