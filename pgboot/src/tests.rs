//! These tests start real throwaway clusters under /tmp. They never read DATABASE_URL (a test
//! run inside `st-pg exec` has it set) and never change the process environment.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A scratch directory under /tmp; on drop, stops/deletes any cluster in it.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!("/tmp/pgboot-test-{}-{n}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for entry in fs::read_dir(&self.0).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.join(USERS_LOCK).exists() {
                let _ = destroy_cluster(&p);
            }
        }
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The real environment minus DATABASE_URL.
fn env() -> EnvView {
    EnvView {
        database_url: None,
        bin_dir: pg_bin_dir_from_env(),
    }
}

fn fast_opts(dir: &Path) -> BootOptions {
    let mut o = BootOptions::new(dir);
    o.fast_unsafe = true;
    o
}

fn psql_bin() -> PathBuf {
    Server::resolve(pg_bin_dir_from_env().as_deref())
        .unwrap()
        .bin_dir
        .join("psql")
}

/// Runs one query through psql using the URL as its connection string.
fn query(url: &str, sql: &str) -> String {
    let out = Command::new(psql_bin())
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .args(["-X", "-At", url, "-c", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn postmaster_pid(cluster_dir: &Path) -> Option<i32> {
    fs::read_to_string(cluster_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn wait_dead(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        // A zombie (PID 1 of a container may never reap it) counts as dead.
        let zombie = fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        });
        if !sys::pid_alive(pid) || zombie {
            return true;
        }
        sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn second_boot_attaches_and_last_one_out_stops() {
    let scratch = Scratch::new("attach");
    let data = scratch.path().join("data");
    let opts = fast_opts(&data);

    let a = PgBoot::start_with(&opts, &env()).unwrap();
    assert!(a.is_private());
    assert!(a.started_server());
    let cluster = a.cluster_dir().unwrap().to_path_buf();
    assert_eq!(cluster, fs::canonicalize(&data).unwrap().join("pg"));
    assert_eq!(
        a.url(),
        format!(
            "postgresql://postgres@localhost/supporttracker?host={}",
            cluster.display()
        )
    );
    assert_eq!(query(a.url(), "select 1"), "1");
    assert_eq!(
        query(a.url(), "select current_database()"),
        "supporttracker"
    );
    assert_eq!(
        query(&a.url_for("postgres"), "select current_database()"),
        "postgres"
    );
    assert_eq!(query(a.url(), "show listen_addresses"), "");
    assert_eq!(query(a.url(), "show max_connections"), "300");
    assert_eq!(query(a.url(), "show fsync"), "off");
    let pid = postmaster_pid(&cluster).unwrap();

    let mut b = PgBoot::start_with(&opts, &env()).unwrap();
    assert!(!b.started_server());
    assert_eq!(a.url(), b.url());
    assert_eq!(postmaster_pid(&cluster), Some(pid), "only one postmaster");

    drop(a);
    assert!(
        sys::pid_alive(pid),
        "the first one out must leave the server running"
    );
    assert_eq!(query(b.url(), "select 1"), "1");

    assert!(
        b.try_shutdown().unwrap(),
        "the last one out stops the server"
    );
    assert!(wait_dead(pid));
    assert!(!cluster.join("postmaster.pid").exists());
    assert!(!b.try_shutdown().unwrap(), "shutdown is idempotent");
    drop(b);

    // A restart reuses the cluster and does not need to create the database again.
    let c = PgBoot::start_with(&opts, &env()).unwrap();
    assert!(c.started_server());
    assert_eq!(
        query(
            c.url(),
            "select count(*) from pg_database where datname = 'supporttracker'"
        ),
        "1"
    );
}

#[test]
fn concurrent_starts_share_one_server() {
    let scratch = Scratch::new("concurrent");
    let data = scratch.path().join("data");
    let n = 4;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let barrier = barrier.clone();
            let opts = fast_opts(&data);
            std::thread::spawn(move || {
                barrier.wait();
                let boot = PgBoot::start_with(&opts, &env()).unwrap();
                assert_eq!(query(boot.url(), "select 1"), "1");
                boot
            })
        })
        .collect();
    let boots: Vec<PgBoot> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(boots.iter().filter(|b| b.started_server()).count(), 1);
    assert!(boots.iter().all(|b| b.url() == boots[0].url()));
    let cluster = boots[0].cluster_dir().unwrap().to_path_buf();
    let pid = postmaster_pid(&cluster).unwrap();
    let mut stopped = 0;
    for mut b in boots {
        if b.try_shutdown().unwrap() {
            stopped += 1;
        }
    }
    assert_eq!(stopped, 1);
    assert!(wait_dead(pid));
}

#[test]
fn external_database_url_starts_nothing() {
    let scratch = Scratch::new("external");
    let data = scratch.path().join("data");
    let env = EnvView {
        database_url: Some("postgres://app:pw@db.example:5433/prod?sslmode=require".into()),
        bin_dir: Some("/nonexistent".into()),
    };
    let mut boot = PgBoot::start_with(&BootOptions::new(&data), &env).unwrap();
    assert!(!boot.is_private());
    assert_eq!(
        boot.url(),
        "postgres://app:pw@db.example:5433/prod?sslmode=require"
    );
    assert_eq!(
        boot.url_for("other"),
        "postgres://app:pw@db.example:5433/other?sslmode=require"
    );
    assert!(!boot.try_shutdown().unwrap());
    assert!(!data.exists());
}

#[test]
fn replaces_database_in_urls() {
    assert_eq!(replace_database("postgres://h/a", "b"), "postgres://h/b");
    assert_eq!(replace_database("postgres://h", "b"), "postgres://h/b");
    assert_eq!(
        replace_database("postgres://h?x=1", "b"),
        "postgres://h/b?x=1"
    );
    assert_eq!(
        replace_database("postgres://u@h:1/a#f", "b c"),
        "postgres://u@h:1/b%20c#f"
    );
    assert_eq!(
        private_url(Path::new("/tmp/a b"), "x"),
        "postgresql://postgres@localhost/x?host=/tmp/a%20b"
    );
}

#[test]
fn missing_binaries_name_the_install_command() {
    let scratch = Scratch::new("nobin");
    let env = EnvView {
        database_url: None,
        bin_dir: Some("/nonexistent".into()),
    };
    let err = PgBoot::start_with(&BootOptions::new(scratch.path().join("data")), &env).unwrap_err();
    let msg = err.to_string();
    let install = if sys::euid() == 0 {
        "`apt-get install -y postgresql`"
    } else {
        "`sudo apt-get install -y postgresql`"
    };
    assert!(msg.contains(install), "{msg}");
    assert!(msg.contains("ST_PG_BIN_DIR=/nonexistent"), "{msg}");
}

#[test]
fn unreachable_data_dir_is_relocated_when_root() {
    let scratch = Scratch::new("private");
    let private = scratch.path().join("private");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    let data = private.join("data");
    let mut opts = fast_opts(&data);
    opts.database = "odd \"name\"".into();
    let boot = PgBoot::start_with(&opts, &env()).unwrap();
    let cluster = boot.cluster_dir().unwrap().to_path_buf();
    if sys::euid() == 0 {
        let canonical = fs::canonicalize(&data).unwrap();
        assert_eq!(
            cluster,
            Path::new(RELOCATED_BASE)
                .join(hash16(&canonical))
                .join("pg")
        );
        assert_eq!(
            fs::metadata(&cluster).unwrap().uid(),
            sys::user_by_name("postgres").unwrap().unwrap().uid
        );
    } else {
        assert!(cluster.starts_with(scratch.path()));
    }
    assert_eq!(
        query(boot.url(), "select current_database()"),
        "odd \"name\""
    );
    drop(boot);
    destroy_cluster(&data).unwrap();
    assert!(!cluster.exists());
    if sys::euid() == 0 {
        assert!(!cluster.parent().unwrap().exists());
    }
}

#[test]
fn long_cluster_path_uses_a_short_socket_dir() {
    let scratch = Scratch::new("long");
    let data = scratch.path().join("d".repeat(100));
    let boot = PgBoot::start_with(&fast_opts(&data), &env()).unwrap();
    let socket_dir = boot.socket_dir().unwrap().to_path_buf();
    assert!(socket_dir.starts_with("/tmp"), "{}", socket_dir.display());
    assert!(socket_dir.to_string_lossy().starts_with("/tmp/st-pg-"));
    assert!(boot
        .url()
        .ends_with(&format!("?host={}", socket_dir.display())));
    assert_eq!(query(boot.url(), "select 1"), "1");
    let md = fs::metadata(&socket_dir).unwrap();
    assert_eq!(md.mode() & 0o777, 0o700);
    drop(boot);
    assert!(
        !socket_dir.exists(),
        "the socket dir goes away with the server"
    );
}

#[test]
fn crashed_server_and_reused_pid_are_handled() {
    let scratch = Scratch::new("stale");
    let data = scratch.path().join("data");
    let opts = fast_opts(&data);
    let a = PgBoot::start_with(&opts, &env()).unwrap();
    let cluster = a.cluster_dir().unwrap().to_path_buf();
    let pid = postmaster_pid(&cluster).unwrap();

    // Crash: the postmaster dies, postmaster.pid stays.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    assert!(wait_dead(pid));
    assert!(cluster.join("postmaster.pid").exists());
    let b = PgBoot::start_with(&opts, &env()).unwrap();
    assert!(
        b.started_server(),
        "a dead postmaster is restarted, not attached to"
    );
    assert_eq!(query(b.url(), "select 1"), "1");
    drop(a);
    drop(b);
    assert!(!cluster.join("postmaster.pid").exists());

    // A postmaster.pid naming a live process that is not this cluster's postmaster.
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    fs::write(
        cluster.join("postmaster.pid"),
        format!("{}\n{}\n", sleeper.id(), cluster.display()),
    )
    .unwrap();
    let c = PgBoot::start_with(&opts, &env());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let c = c.unwrap();
    assert!(c.started_server());
    assert_eq!(query(c.url(), "select 1"), "1");
}

#[test]
fn interrupted_initdb_leaves_no_half_cluster() {
    let scratch = Scratch::new("initdb");
    let data = scratch.path().join("data");
    fs::create_dir_all(&data).unwrap();
    // What an interrupted initdb leaves behind: a partial temp sibling, never `pg` itself.
    let leftover = data.join("pg.initdb-tmp");
    fs::create_dir_all(leftover.join("base")).unwrap();
    let boot = PgBoot::start_with(&fast_opts(&data), &env()).unwrap();
    assert_eq!(query(boot.url(), "select 1"), "1");
    if boot.cluster_dir().unwrap().starts_with(&data) {
        assert!(!leftover.exists());
    }
}
