//! The real binaries as child processes: `supporttracker serve` on port 0 and `replay-tools`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::bin_path;

/// A running `supporttracker serve`.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    /// Starts the server against `database_url` and waits for its "listening on" line.
    pub fn start(database_url: &str, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(bin_path("supporttracker"));
        command
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("ST_LISTEN", "127.0.0.1:0")
            .env("ST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
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
        Self { child, base }
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
