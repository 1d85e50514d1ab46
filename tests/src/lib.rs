//! Test harness: a database per test cloned from a migrated template on a throwaway private
//! cluster (or on `DATABASE_URL` when set), the router called without a socket, and the real
//! binaries started as processes.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use commands::EventStore;
use http_body_util::BodyExt;
use sqlx::PgPool;
use tower::ServiceExt;
use web::state::{AppState, Settings};

pub mod browser;
pub mod process;
pub mod smtp;
pub mod twilio_fake;

static SERVER: OnceLock<String> = OnceLock::new();

/// The URL of the server the tests use: `DATABASE_URL` (as `make test` sets it, pointing at a
/// fresh throwaway cluster) or a private cluster under the system temp dir.
fn server_url() -> &'static str {
    SERVER.get_or_init(|| {
        let mut options = pgboot::BootOptions::new(std::env::temp_dir().join("st-test-pg-shared"));
        options.fast_unsafe = true;
        let boot = pgboot::PgBoot::start(&options).expect("test PostgreSQL");
        // Kept running for the other test processes; `make test` throws the cluster away.
        let url = boot.url().to_owned();
        std::mem::forget(boot);
        url
    })
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let host_part = path_start.map_or(base, |i| &base[..i]);
    match query {
        Some(q) => format!("{host_part}/{database}?{q}"),
        None => format!("{host_part}/{database}"),
    }
}

fn template_name() -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for migration in commands::db::MIGRATOR.iter() {
        hash.update(migration.version.to_le_bytes());
        hash.update(&*migration.checksum);
    }
    format!("st_template_{}", &hex::encode(hash.finalize())[..12])
}

/// A fresh, migrated database of its own.
pub struct TestDb {
    pub url: String,
    pub name: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn new() -> Self {
        let server = server_url();
        let admin = sqlx::PgPool::connect(&with_database(server, "postgres"))
            .await
            .expect("connect to the test server");
        let template = template_name();
        // One process migrates the template; the others wait for it.
        let mut conn = admin.acquire().await.unwrap();
        sqlx::query("SELECT pg_advisory_lock(4242)")
            .execute(&mut *conn)
            .await
            .unwrap();
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&template)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        if !exists {
            sqlx::query(&format!("CREATE DATABASE {template}_wip"))
                .execute(&mut *conn)
                .await
                .ok();
            let pool = PgPool::connect(&with_database(server, &format!("{template}_wip")))
                .await
                .unwrap();
            commands::db::migrate(&pool)
                .await
                .expect("migrate the template");
            pool.close().await;
            sqlx::query(&format!(
                "ALTER DATABASE {template}_wip RENAME TO {template}"
            ))
            .execute(&mut *conn)
            .await
            .unwrap();
        }
        let name = format!("st_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .execute(&mut *conn)
            .await
            .expect("clone the template");
        sqlx::query("SELECT pg_advisory_unlock(4242)")
            .execute(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        admin.close().await;
        let url = with_database(server, &name);
        let pool = commands::db::connect(&url, 20).await.unwrap();
        Self { url, name, pool }
    }

    /// An empty database (no migrations), for imports.
    pub async fn empty() -> Self {
        let server = server_url();
        let admin = sqlx::PgPool::connect(&with_database(server, "postgres"))
            .await
            .unwrap();
        let name = format!("st_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let url = with_database(server, &name);
        let pool = commands::db::connect(&url, 20).await.unwrap();
        Self { url, name, pool }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }
}

/// A test's database is dropped when the test ends, passed or failed (`ST_KEEP_TEST_DBS=1`
/// keeps them for a look afterwards): 450 tests' databases of 10 MB each and more filled a CI
/// machine's disk once.
impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var_os("ST_KEEP_TEST_DBS").is_some_and(|v| v == "1") {
            return;
        }
        let admin = with_database(server_url(), "postgres");
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread of its own
        // with its own runtime drops the database (WITH (FORCE) ends this test's connections).
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.close().await.ok();
                Ok::<(), String>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop the test database {}: {e}", self.name),
            Err(_) => eprintln!("could not drop the test database {}", self.name),
        }
    }
}

/// The application wired as `serve` wires it, called without a socket.
pub struct TestApp {
    pub db: TestDb,
    pub store: EventStore,
    /// The owner of the tenant `new` bootstraps; `request` and `send` act as them.
    pub owner: Person,
    router: axum::Router,
    runners: Vec<tokio::task::JoinHandle<()>>,
}

/// A signed-in person of a test: their API token and console session.
#[derive(Debug, Clone)]
pub struct Person {
    pub tenant_id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub email: String,
    pub password: String,
    pub role: domain::identity::Role,
    pub token: String,
    pub session: String,
}

/// The password every test person gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub headers: axum::http::HeaderMap,
    pub text: String,
}

impl Reply {
    /// The CSRF token the console set on this page (its `st_csrf` cookie).
    pub fn csrf_cookie(&self) -> String {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("st_csrf="))
            .and_then(|v| v.split(';').next())
            .expect("a CSRF cookie")
            .to_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

impl TestApp {
    pub async fn new() -> Self {
        let db = TestDb::new().await;
        let store = EventStore::new(db.pool.clone());
        let wakeups = projections::runner::Wakeups::start(&db.pool, store.subscribe());
        let runners = projections::runner::spawn_all(
            &db.pool,
            projections::all(),
            wakeups,
            projections::runner::RunnerConfig {
                poll_interval: Duration::from_millis(100),
                retry_interval: Duration::from_millis(100),
                max_retry_interval: Duration::from_millis(200),
                ..Default::default()
            },
        );
        let state = AppState::new(
            db.pool.clone(),
            store.clone(),
            Settings::local(Duration::from_secs(2)),
        );
        let owner = bootstrap(&store, "Acme IT", "owner@acme.test").await;
        let app = Self {
            router: web::router(state),
            db,
            store,
            owner,
            runners,
        };
        app.settle().await;
        app
    }

    /// Another tenant with its owner (for probing across tenants).
    pub async fn other_tenant(&self, name: &str, email: &str) -> Person {
        let person = bootstrap(&self.store, name, email).await;
        self.settle().await;
        person
    }

    /// A person of `tenant_of`'s tenant with `role`, invited and accepted through the real
    /// commands, with an API token and a console session.
    pub async fn person(
        &self,
        tenant_of: &Person,
        role: domain::identity::Role,
        email: &str,
        company_id: Option<uuid::Uuid>,
    ) -> Person {
        use commands::identity as ident;
        let meta = commands::EventMeta::new(tenant_of.tenant_id, tenant_of.user_id.to_string());
        let invitation = ident::invite(
            &self.store,
            &commands::secrets::Vault::ephemeral(),
            &meta,
            ident::NewPerson {
                email: domain::identity::Email::parse(email).unwrap(),
                name: email.split('@').next().unwrap().to_owned(),
                role,
                company_id,
            },
            "http://localhost",
        )
        .await
        .unwrap();
        let user_id = invitation.user_id;
        let own = commands::EventMeta::new(tenant_of.tenant_id, user_id.to_string());
        self.store
            .execute::<domain::user::User>(
                &user_id.to_string(),
                domain::user::UserCommand::AcceptInvitation {
                    token_digest: ident::token_digest(&invitation.token),
                    password_hash: ident::hash_password(PASSWORD).unwrap(),
                    now: chrono::Utc::now(),
                },
                &(),
                &own,
                commands::ConflictPolicy::Report,
            )
            .await
            .unwrap();
        let own = commands::EventMeta::new(tenant_of.tenant_id, user_id.to_string());
        let token = ident::create_api_token(&self.store, &own, user_id, "tests")
            .await
            .unwrap()
            .token
            .unwrap();
        let (session, _) =
            commands::sessions::start(&self.db.pool, tenant_of.tenant_id, user_id, "tests", "")
                .await
                .unwrap();
        self.settle().await;
        Person {
            tenant_id: tenant_of.tenant_id,
            user_id,
            email: email.to_owned(),
            password: PASSWORD.to_owned(),
            role,
            token,
            session,
        }
    }

    /// A request as the owner.
    pub async fn request(&self, method: Method, path: &str, body: Option<&str>) -> Reply {
        self.send(method, path, body, &[]).await
    }

    /// A request as the owner (bearer token on the API, session cookie on the console),
    /// unless `headers` carry their own `authorization`.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.send_as(Some(&self.owner), method, path, body, headers)
            .await
    }

    /// A request as `who` (`None`: nobody signed in).
    pub async fn send_as(
        &self,
        who: Option<&Person>,
        method: Method,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        for (k, v) in with_credentials(who, path, headers) {
            builder = builder.header(k, v);
        }
        let request = builder
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
            .unwrap();
        self.reply(request).await
    }

    /// Sends `body` as is, with the given headers (forms, odd content types), as the owner.
    pub async fn send_body(
        &self,
        method: Method,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.send_body_as(Some(&self.owner), method, path, body, headers)
            .await
    }

    /// Sends `body` as is, with the given headers, as `who`.
    pub async fn send_body_as(
        &self,
        who: Option<&Person>,
        method: Method,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        for (k, v) in with_credentials(who, path, headers) {
            builder = builder.header(k, v);
        }
        self.reply(builder.body(Body::from(body.to_owned())).unwrap())
            .await
    }

    /// Sends raw bytes (uploads) with the given headers, as `who`.
    pub async fn send_bytes_as(
        &self,
        who: Option<&Person>,
        method: Method,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        for (k, v) in with_credentials(who, path, headers) {
            builder = builder.header(k, v);
        }
        self.reply(builder.body(Body::from(body)).unwrap()).await
    }

    async fn reply(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            content_type,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// The body of a GET as the owner, as bytes (PDFs, downloads).
    pub async fn bytes(&self, method: Method, path: &str) -> Vec<u8> {
        let mut builder = Request::builder().method(method).uri(path);
        for (k, v) in with_credentials(Some(&self.owner), path, &[]) {
            builder = builder.header(k, v);
        }
        let response = self
            .router
            .clone()
            .oneshot(builder.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    /// Waits until every projection has applied everything in the log.
    pub async fn settle(&self) {
        settle(&self.db.pool).await
    }
}

/// `headers` plus `who`'s credentials: the bearer token on the API (unless an
/// `authorization` header is given), the session cookie elsewhere (added to any `cookie`).
fn with_credentials(
    who: Option<&Person>,
    path: &str,
    headers: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_lowercase(), v.to_string()))
        .collect();
    let Some(who) = who else { return out };
    if path.starts_with("/api/") {
        if !out.iter().any(|(k, _)| k == "authorization") {
            out.push(("authorization".into(), format!("Bearer {}", who.token)));
        }
    } else {
        let session = format!("st_session={}", who.session);
        match out.iter_mut().find(|(k, _)| k == "cookie") {
            Some((_, v)) => *v = format!("{v}; {session}"),
            None => out.push(("cookie".into(), session)),
        }
    }
    out
}

/// Bootstraps a tenant with its owner, and signs the owner in.
pub async fn bootstrap(store: &EventStore, tenant: &str, email: &str) -> Person {
    let done = commands::identity::bootstrap(
        store,
        commands::identity::NewTenant {
            tenant_name: tenant.to_owned(),
            owner_name: "Olive Owner".to_owned(),
            email: domain::identity::Email::parse(email).unwrap(),
            password: PASSWORD.to_owned(),
            currency: domain::identity::Currency::parse("USD").unwrap(),
            time_zone: domain::identity::TimeZone::parse("UTC").unwrap(),
        },
    )
    .await
    .unwrap();
    let (session, _) =
        commands::sessions::start(store.pool(), done.tenant_id, done.user_id, "tests", "")
            .await
            .unwrap();
    Person {
        tenant_id: done.tenant_id,
        user_id: done.user_id,
        email: email.to_owned(),
        password: PASSWORD.to_owned(),
        role: domain::identity::Role::Owner,
        token: done.api_token,
        session,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        for runner in &self.runners {
            runner.abort();
        }
    }
}

/// Waits (up to 60 s) until no projection lags (consumers such as the notifier are not
/// projections: tests that run them wait for what they do).
pub async fn settle(pool: &PgPool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut statuses = projections::status::all(pool).await.unwrap();
        statuses.retain(|s| projections::find(&s.name).is_some());
        if statuses
            .iter()
            .all(|s| s.lag == 0 && s.stored_version.is_some())
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "projections did not catch up: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where cargo put the workspace's binaries (next to the test executable's `deps/`).
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}
