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

/// The application wired as `serve` wires it, called without a socket.
pub struct TestApp {
    pub db: TestDb,
    pub store: EventStore,
    router: axum::Router,
    runners: Vec<tokio::task::JoinHandle<()>>,
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub headers: axum::http::HeaderMap,
    pub text: String,
}

impl Reply {
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
            Settings {
                read_your_writes: Duration::from_secs(2),
            },
        );
        Self {
            router: web::router(state),
            db,
            store,
            runners,
        }
    }

    pub async fn request(&self, method: Method, path: &str, body: Option<&str>) -> Reply {
        self.send(method, path, body, &[]).await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
            .unwrap();
        self.reply(request).await
    }

    /// Sends `body` as is, with exactly the given headers (forms, odd content types).
    pub async fn send_body(
        &self,
        method: Method,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        self.reply(builder.body(Body::from(body.to_owned())).unwrap())
            .await
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

    /// Waits until every projection has applied everything in the log.
    pub async fn settle(&self) {
        settle(&self.db.pool).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        for runner in &self.runners {
            runner.abort();
        }
    }
}

/// Waits (up to 60 s) until no projection lags.
pub async fn settle(pool: &PgPool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let statuses = projections::status::all(pool).await.unwrap();
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
