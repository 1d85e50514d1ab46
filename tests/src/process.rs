//! The real binaries as child processes: `supporttracker serve` on port 0 and `replay-tools`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::bin_path;

/// A running `supporttracker serve`.
pub struct Server {
    child: Child,
    pub base: String,
    /// The owner made by `with_owner`: their API token and sign-in.
    pub owner: Option<Owner>,
}

/// A tenant's owner created with `supporttracker bootstrap`.
#[derive(Debug, Clone)]
pub struct Owner {
    pub tenant_id: String,
    pub user_id: String,
    pub api_token: String,
    pub email: String,
    pub password: String,
}

/// Runs `supporttracker bootstrap` against `database_url` (the real CLI, as an operator would).
pub fn bootstrap(database_url: &str, tenant: &str, email: &str) -> Owner {
    let password = crate::PASSWORD;
    let file = std::env::temp_dir().join(format!("st-password-{}", uuid::Uuid::new_v4()));
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let output = Command::new(bin_path("supporttracker"))
        .args([
            "bootstrap",
            "--tenant",
            tenant,
            "--email",
            email,
            "--password-file",
        ])
        .arg(&file)
        .env("DATABASE_URL", database_url)
        .env("ST_LOG", "warn")
        .output()
        .expect("run supporttracker bootstrap");
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "bootstrap failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    Owner {
        tenant_id: json["tenant_id"].as_str().unwrap().to_owned(),
        user_id: json["user_id"].as_str().unwrap().to_owned(),
        api_token: json["api_token"].as_str().unwrap().to_owned(),
        email: email.to_owned(),
        password: password.to_owned(),
    }
}

/// The vault key of test servers (32 bytes of 7, base64).
pub const TEST_MASTER_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

impl Server {
    /// Starts the server against `database_url` and waits for its "listening on" line.
    pub fn start(database_url: &str, env: &[(&str, &str)]) -> Self {
        Self::start_logging(database_url, env, None)
    }

    /// `start`, with the server's log (stderr) written to `log` when given.
    pub fn start_logging(
        database_url: &str,
        env: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> Self {
        let mut command = Command::new(bin_path("supporttracker"));
        command
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("ST_LISTEN", "127.0.0.1:0")
            .env("ST_LOG", "warn")
            // A fixed vault key, so no test writes a key file into the source tree (a test
            // about keys passes its own, or an empty value to use ST_DATA_DIR's key file).
            .env("ST_MASTER_KEY", TEST_MASTER_KEY)
            .stdout(Stdio::piped())
            .stderr(match log {
                Some(path) => Stdio::from(std::fs::File::create(path).expect("the log file")),
                None => Stdio::inherit(),
            });
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start supporttracker");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server did not start listening within 60 s");
        Self {
            child,
            base,
            owner: None,
        }
    }

    /// Bootstraps a tenant and its owner with the CLI; requests of the test use their token.
    /// Waits until the server's read models know the owner (its projections catch up with
    /// the CLI's events within a NOTIFY or a poll).
    pub async fn with_owner(mut self, database_url: &str) -> Self {
        let owner = bootstrap(database_url, "Acme IT", "owner@acme.test");
        let deadline = Instant::now() + Duration::from_secs(15);
        let client = reqwest::Client::new();
        loop {
            let status = client
                .get(self.url("/api/v1/companies"))
                .bearer_auth(&owner.api_token)
                .send()
                .await
                .map(|r| r.status().as_u16());
            if status.as_ref().is_ok_and(|s| *s == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the owner's token never worked: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.owner = Some(owner);
        self
    }

    /// The owner's API token (after `with_owner`).
    pub fn token(&self) -> &str {
        &self
            .owner
            .as_ref()
            .expect("Server::with_owner first")
            .api_token
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill9(mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for the server to end on its own; its exit status, if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait.
    pub fn stop(mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `replay-tools ARGS` against `database_url` to completion.
pub fn replay_tools(database_url: &str, args: &[&str]) -> Output {
    Command::new(bin_path("replay-tools"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("ST_LOG", "warn")
        .output()
        .expect("run replay-tools")
}

/// Starts `replay-tools ARGS` without waiting.
pub fn spawn_replay_tools(database_url: &str, args: &[&str]) -> Child {
    Command::new(bin_path("replay-tools"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("ST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start replay-tools")
}

/// Polls `check` every 20 ms until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
