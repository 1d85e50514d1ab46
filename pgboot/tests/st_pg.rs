//! End-to-end tests of the `st-pg` binary against real throwaway clusters under /tmp.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ST_PG: &str = env!("CARGO_BIN_EXE_st-pg");
static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn scratch(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = PathBuf::from(format!("/tmp/st-pg-it-{}-{n}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// st-pg with DATABASE_URL removed (the suite itself may run inside `st-pg exec`).
fn st_pg() -> Command {
    let mut c = Command::new(ST_PG);
    c.env_remove("DATABASE_URL");
    c
}

fn psql() -> PathBuf {
    if let Some(dir) = std::env::var_os("ST_PG_BIN_DIR").filter(|d| !d.is_empty()) {
        return Path::new(&dir).join("psql");
    }
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    versions
        .iter()
        .rev()
        .map(|v| PathBuf::from(format!("/usr/lib/postgresql/{v}/bin/psql")))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("psql"))
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn exec_fresh_runs_the_command_and_cleans_up() {
    let dir = scratch("fresh");
    let out = st_pg()
        .arg("exec")
        .arg("--fresh")
        .arg("--fast")
        .arg("--data-dir")
        .arg(&dir)
        .arg("--")
        .arg("sh")
        .arg("-c")
        .arg(r#""$0" -X -At "$DATABASE_URL" -c 'select current_database()' && exit 7"#)
        .arg(psql())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "supporttracker"
    );
    assert!(!dir.exists(), "--fresh deletes the data dir afterwards");
}

#[test]
fn exec_keeps_an_existing_database_url() {
    let dir = scratch("external");
    let out = st_pg()
        .env("DATABASE_URL", "postgres://u@db.example/app")
        .arg("exec")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--", "sh", "-c", "echo \"$DATABASE_URL\""])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "postgres://u@db.example/app"
    );
    assert!(!dir.exists(), "nothing is started");
}

#[test]
fn start_stop_and_in_use() {
    let dir = scratch("startstop");
    let out = st_pg()
        .args(["start", "--fast", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        url.starts_with("postgresql://postgres@localhost/supporttracker?host=/"),
        "{url}"
    );
    let q = Command::new(psql())
        .args(["-X", "-At", &url, "-c", "select 1"])
        .output()
        .unwrap();
    assert!(q.status.success(), "{}", text(&q));

    // While an `exec` is attached, `stop` refuses; the exec, last out, then stops it.
    let script = format!(
        "\"$0\" stop --data-dir '{}'; echo \"stop=$?\"",
        dir.display()
    );
    let out = st_pg()
        .arg("exec")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--", "sh", "-c", &script, ST_PG])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("stop=1"),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{}",
        text(&out)
    );
    assert!(!dir.join("pg/postmaster.pid").exists(), "{}", text(&out));

    let out = st_pg()
        .args(["start", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = st_pg()
        .args(["stop", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!dir.join("pg/postmaster.pid").exists());
    let out = st_pg()
        .args(["destroy", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!dir.join("pg").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_is_forwarded_and_the_cluster_still_stops() {
    let dir = scratch("signal");
    let marker = dir.with_extension("up");
    let _ = std::fs::remove_file(&marker);
    let script = format!(
        "trap 'exit 42' TERM; touch '{}'; while true; do sleep 0.1; done",
        marker.display()
    );
    let mut child = st_pg()
        .arg("exec")
        .arg("--fresh")
        .arg("--fast")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the command never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    let _ = std::fs::remove_file(&marker);
    assert_eq!(status.code(), Some(42));
    assert!(!dir.exists(), "the cluster was stopped and deleted");
}
