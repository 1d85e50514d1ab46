//! `pgboot`: a private PostgreSQL cluster for SupportTracker's binaries and tests.
//!
//! [`PgBoot::start`] uses `DATABASE_URL` when it is set; otherwise it starts (or attaches to)
//! a private cluster under `<data_dir>/pg` that listens on a Unix socket only, creates the
//! application database if it is missing, and hands back a URL that sqlx 0.8 and psql accept:
//!
//! ```text
//! postgresql://postgres@localhost/supporttracker?host=/abs/data/pg
//! ```
//!
//! Several processes may share one data directory. They coordinate with two flock(2) files in
//! the data directory: `pg.control.lock` (exclusive, held only while starting or stopping) and
//! `pg.users.lock` (shared, held by every attached process for as long as it is attached). The
//! first process starts the server, later ones attach, the last one out stops it. A process
//! killed with `kill -9` loses its shared lock with it, so the next one out still stops it.
//!
//! PostgreSQL refuses to run as root. When this process is root, the server runs as the
//! `postgres` system user; if that user cannot reach the data directory (anything under
//! `/root`, for example), the cluster lives in `/var/tmp/supporttracker-pg/<hash>/pg` instead.

mod bins;
mod sys;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, DirBuilder, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use sys::{LockKind, SysUser};

pub use bins::MIN_MAJOR;

/// The database created when [`BootOptions::database`] is left alone.
pub const DEFAULT_DATABASE: &str = "supporttracker";
/// The port of every private cluster (it only names the socket file; there is no TCP).
pub const PORT: u16 = 5432;
/// Where clusters go when the `postgres` user cannot reach the data directory.
pub const RELOCATED_BASE: &str = "/var/tmp/supporttracker-pg";

const CONTROL_LOCK: &str = "pg.control.lock";
const USERS_LOCK: &str = "pg.users.lock";
const CLUSTER_DIR: &str = "pg";
const CONF_FILE: &str = "supporttracker.conf";
const INCLUDE_LINE: &str = "include 'supporttracker.conf'";
const SERVER_LOG: &str = "server.log";
/// Longest socket file path we accept (the kernel limit is 107 bytes).
const MAX_SOCKET_PATH: usize = 103;
const START_TIMEOUT_SECS: u32 = 60;
const LOG_ROTATE_BYTES: u64 = 16 << 20;

/// The default data directory: `ST_DATA_DIR`, or `./data`.
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("ST_DATA_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from("./data"),
    }
}

/// What to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootOptions {
    /// The application's data directory; the cluster lives in `<data_dir>/pg`.
    pub data_dir: PathBuf,
    /// `fsync=off`, `synchronous_commit=off`, `full_page_writes=off`: for throwaway test
    /// clusters only (a crash can corrupt the cluster). Applies when this process starts the
    /// server; a process that attaches gets whatever the running server has.
    pub fast_unsafe: bool,
    /// The database to create if missing (default `supporttracker`).
    pub database: String,
}

impl BootOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        BootOptions {
            data_dir: data_dir.into(),
            fast_unsafe: false,
            database: DEFAULT_DATABASE.to_string(),
        }
    }
}

/// Why the cluster could not be started, attached to or stopped.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(
        "PostgreSQL >= {min} server binaries (initdb, pg_ctl, postgres) not found: {detail}. \
         Install them with `{install}` (or set ST_PG_BIN_DIR to their bin directory, or set \
         DATABASE_URL to use a running server)",
        min = bins::MIN_MAJOR
    )]
    BinariesNotFound { detail: String, install: String },

    #[error(
        "this process runs as root and PostgreSQL refuses to run as root, so the private \
         cluster must run as the `postgres` system user, which does not exist. Install \
         PostgreSQL (`apt-get install -y postgresql`, which creates it) or create it \
         (`adduser --system --group --home /var/lib/postgresql postgres`), or set DATABASE_URL"
    )]
    NoServerUser,

    #[error("invalid option: {0}")]
    InvalidOption(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error("`{command}` failed ({status}){output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },

    #[error("PostgreSQL did not start in {dir}{output}\n--- last lines of {log} ---\n{log_tail}")]
    StartFailed {
        dir: PathBuf,
        log: PathBuf,
        output: String,
        log_tail: String,
    },

    #[error("{0}")]
    Cluster(String),

    #[error(
        "the PostgreSQL cluster of {data_dir} is in use by {users}; stop those first \
         (the last one to exit stops the server)"
    )]
    InUse { data_dir: PathBuf, users: String },
}

type Result<T, E = BootError> = std::result::Result<T, E>;

fn io_err(context: impl fmt::Display) -> impl FnOnce(io::Error) -> BootError {
    move |source| BootError::Io {
        context: context.to_string(),
        source,
    }
}

/// The process environment pgboot reads, passed explicitly so that tests never have to
/// mutate process-global environment variables.
#[derive(Clone, Debug, Default)]
pub(crate) struct EnvView {
    /// `DATABASE_URL` (None when unset or empty).
    pub database_url: Option<String>,
    /// `ST_PG_BIN_DIR` (None when unset or empty).
    pub bin_dir: Option<OsString>,
}

impl EnvView {
    pub(crate) fn from_process() -> Self {
        EnvView {
            database_url: std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty()),
            bin_dir: pg_bin_dir_from_env(),
        }
    }
}

fn pg_bin_dir_from_env() -> Option<OsString> {
    std::env::var_os("ST_PG_BIN_DIR").filter(|s| !s.is_empty())
}

/// Who runs the server binaries and where they are.
#[derive(Clone, Debug)]
struct Server {
    bin_dir: PathBuf,
    /// Some when this process is root: the unprivileged user the server runs as.
    run_as: Option<SysUser>,
}

impl Server {
    fn resolve(bin_override: Option<&OsStr>) -> Result<Server> {
        let root = sys::euid() == 0;
        let bin_dir = bins::find_bin_dir(bin_override, root)?;
        let run_as = if root {
            match sys::user_by_name("postgres")
                .map_err(io_err("looking up the `postgres` system user"))?
            {
                Some(u) if u.uid != 0 => Some(u),
                _ => return Err(BootError::NoServerUser),
            }
        } else {
            None
        };
        Ok(Server { bin_dir, run_as })
    }

    fn uid(&self) -> u32 {
        self.run_as.as_ref().map_or_else(sys::euid, |u| u.uid)
    }

    fn gid(&self) -> u32 {
        self.run_as.as_ref().map_or_else(sys::egid, |u| u.gid)
    }

    fn user_desc(&self) -> String {
        match &self.run_as {
            Some(u) => format!("the `{}` user (uid {})", u.name, u.uid),
            None => format!("this user (uid {})", sys::euid()),
        }
    }

    /// A command with a clean PostgreSQL environment (no PG* variables, C locale, cwd /).
    fn base_command(program: &Path) -> Command {
        let mut cmd = Command::new(program);
        for (key, _) in std::env::vars_os() {
            if key.as_bytes().starts_with(b"PG") {
                cmd.env_remove(key);
            }
        }
        cmd.env("LC_ALL", "C")
            .env("LANG", "C")
            .current_dir("/")
            .stdin(Stdio::null());
        cmd
    }

    /// A server binary, run as the server user.
    fn command(&self, binary: &str) -> Command {
        let mut cmd = Self::base_command(&self.bin_dir.join(binary));
        if let Some(u) = &self.run_as {
            // std drops all supplementary groups (setgroups(0)) before setuid.
            cmd.uid(u.uid)
                .gid(u.gid)
                .env("HOME", &u.home)
                .env("USER", &u.name)
                .env("LOGNAME", &u.name);
        }
        cmd
    }

    /// psql, run as this process's user (a client needs no privileges).
    fn psql(&self) -> Command {
        let local = self.bin_dir.join("psql");
        let program = if local.is_file() {
            local
        } else {
            PathBuf::from("psql")
        };
        let mut cmd = Self::base_command(&program);
        cmd.arg("-X").arg("-q").arg("-v").arg("ON_ERROR_STOP=1");
        cmd
    }

    fn chown(&self, path: &Path) -> Result<()> {
        if self.run_as.is_some() {
            std::os::unix::fs::chown(path, Some(self.uid()), Some(self.gid()))
                .map_err(io_err(format!("chown {}", path.display())))?;
        }
        Ok(())
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn run(cmd: &mut Command) -> Result<Output> {
    cmd.output()
        .map_err(io_err(format!("could not run `{}`", describe(cmd))))
}

fn output_text(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.trim().is_empty() {
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str(err.trim());
    }
    s
}

fn check(cmd: &mut Command) -> Result<Output> {
    let out = run(cmd)?;
    if out.status.success() {
        Ok(out)
    } else {
        let text = output_text(&out);
        Err(BootError::Command {
            command: describe(cmd),
            status: out.status.to_string(),
            output: if text.is_empty() {
                String::new()
            } else {
                format!(":\n{text}")
            },
        })
    }
}

fn hash16(path: &Path) -> String {
    let digest = Sha256::digest(path.as_os_str().as_bytes());
    hex::encode(digest)[..16].to_string()
}

/// Where one data directory's cluster and socket live.
#[derive(Clone, Debug)]
struct Layout {
    /// Absolute, canonical.
    data_dir: PathBuf,
    cluster_dir: PathBuf,
    socket_dir: PathBuf,
    /// `/var/tmp/supporttracker-pg/<hash>` when the server user cannot reach `data_dir`.
    relocated_root: Option<PathBuf>,
    /// Set when `socket_dir` is a short directory under /tmp (long cluster path).
    short_socket: bool,
}

impl Layout {
    fn compute(data_dir: &Path, server: &Server) -> Result<Layout> {
        let mut relocated_root = None;
        let mut cluster_dir = data_dir.join(CLUSTER_DIR);
        if let Some(u) = &server.run_as {
            let blocker = sys::first_untraversable(data_dir, u.uid, u.gid).map_err(io_err(
                format!("checking the permissions of {}", data_dir.display()),
            ))?;
            if let Some(blocker) = blocker {
                let root = Path::new(RELOCATED_BASE).join(hash16(data_dir));
                cluster_dir = root.join(CLUSTER_DIR);
                tracing::warn!(
                    "the `{}` user cannot traverse {}, so the PostgreSQL cluster for {} lives in {}",
                    u.name,
                    blocker.display(),
                    data_dir.display(),
                    cluster_dir.display()
                );
                relocated_root = Some(root);
            }
        }
        let socket_file_len = cluster_dir.as_os_str().len() + "/.s.PGSQL.5432".len();
        let (socket_dir, short_socket) = if socket_file_len > MAX_SOCKET_PATH {
            let dir = PathBuf::from(format!("/tmp/st-pg-{}", hash16(&cluster_dir)));
            tracing::info!(
                "{} is too long for a Unix socket path; the socket lives in {}",
                cluster_dir.display(),
                dir.display()
            );
            (dir, true)
        } else {
            (cluster_dir.clone(), false)
        };
        Ok(Layout {
            data_dir: data_dir.to_path_buf(),
            cluster_dir,
            socket_dir,
            relocated_root,
            short_socket,
        })
    }

    fn control_lock(&self) -> PathBuf {
        self.data_dir.join(CONTROL_LOCK)
    }

    fn users_lock(&self) -> PathBuf {
        self.data_dir.join(USERS_LOCK)
    }

    fn pid_file(&self) -> PathBuf {
        self.cluster_dir.join("postmaster.pid")
    }

    fn log_file(&self) -> PathBuf {
        self.cluster_dir.join(SERVER_LOG)
    }

    fn initdb_tmp(&self) -> PathBuf {
        let mut name = self
            .cluster_dir
            .file_name()
            .unwrap_or(OsStr::new(CLUSTER_DIR))
            .to_os_string();
        name.push(".initdb-tmp");
        self.cluster_dir.with_file_name(name)
    }
}

/// Resolves `data_dir` to a canonical path, creating it when `create`.
fn canonical_data_dir(data_dir: &Path, create: bool) -> Result<Option<PathBuf>> {
    if create {
        fs::create_dir_all(data_dir).map_err(io_err(format!(
            "creating data directory {}",
            data_dir.display()
        )))?;
    } else if !data_dir.exists() {
        return Ok(None);
    }
    fs::canonicalize(data_dir)
        .map(Some)
        .map_err(io_err(format!("resolving {}", data_dir.display())))
}

/// An open lock file with a lock held through it (released on drop).
struct Locked(#[allow(dead_code)] File);

fn lock_exclusive(path: &Path) -> Result<Locked> {
    let f = sys::open_lock_file(path).map_err(io_err(format!("opening {}", path.display())))?;
    sys::flock(&f, LockKind::Exclusive, false)
        .map_err(io_err(format!("locking {}", path.display())))?;
    Ok(Locked(f))
}

fn describe_holders(path: &Path) -> String {
    let me = std::process::id() as i32;
    let pids: Vec<String> = sys::flock_holders(path)
        .into_iter()
        .filter(|p| *p != me)
        .map(|p| match sys::proc_comm(p) {
            Some(c) => format!("pid {p} ({c})"),
            None => format!("pid {p}"),
        })
        .collect();
    if pids.is_empty() {
        "another process".to_string()
    } else {
        pids.join(", ")
    }
}

// ---------------------------------------------------------------------------------------------
// Server state

#[derive(Debug)]
enum State {
    NotRunning,
    /// postmaster.pid exists but no postmaster of this cluster runs under its pid.
    Stale {
        pid: Option<i32>,
        pid_alive: bool,
    },
    Running {
        pid: i32,
        ready: bool,
        socket_dir: Option<PathBuf>,
    },
}

fn is_postgres_comm(pid: i32) -> bool {
    sys::proc_comm(pid).is_some_and(|c| c.starts_with("postgres") || c.starts_with("postmaster"))
}

/// Whether `pid` is the postmaster of `cluster_dir` (its working directory is the cluster).
fn is_our_postmaster(pid: i32, cluster_dir: &Path) -> bool {
    if !sys::pid_alive(pid) {
        return false;
    }
    if !sys::proc_available() {
        return true;
    }
    match sys::proc_cwd(pid) {
        Ok(cwd) => cwd == cluster_dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        // Not allowed to look (no CAP_SYS_PTRACE): trust the process name.
        Err(_) => is_postgres_comm(pid),
    }
}

fn server_state(layout: &Layout) -> Result<State> {
    let path = layout.pid_file();
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::NotRunning),
        Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
    };
    let lines: Vec<&str> = text.lines().collect();
    let Some(pid) = lines.first().and_then(|l| l.trim().parse::<i32>().ok()) else {
        return Ok(State::Stale {
            pid: None,
            pid_alive: false,
        });
    };
    if !is_our_postmaster(pid, &layout.cluster_dir) {
        return Ok(State::Stale {
            pid: Some(pid),
            pid_alive: sys::pid_alive(pid),
        });
    }
    let socket_dir = lines
        .get(4)
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .map(PathBuf::from);
    let status = lines.get(7).map(|l| l.trim()).unwrap_or("");
    Ok(State::Running {
        pid,
        ready: status == "ready" || status == "standby",
        socket_dir,
    })
}

/// Makes a stale postmaster.pid harmless before a start.
fn clear_stale(layout: &Layout, pid: Option<i32>, pid_alive: bool) -> Result<()> {
    // Backends orphaned by a killed postmaster still use the old shared memory; wait for
    // them to notice and exit (postgres would refuse to start meanwhile).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let orphans: Vec<i32> = sys::pids_with_cwd(&layout.cluster_dir)
            .into_iter()
            .filter(|p| is_postgres_comm(*p))
            .collect();
        if orphans.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(BootError::Cluster(format!(
                "PostgreSQL processes {orphans:?} of the crashed server in {} are still running; \
                 kill them and try again",
                layout.cluster_dir.display()
            )));
        }
        sleep(Duration::from_millis(200));
    }
    match pid {
        // A dead pid is handled by postgres itself (and it checks the old shared memory).
        Some(_) if !pid_alive => Ok(()),
        _ => {
            // The pid was reused by an unrelated process, or the file is garbage: postgres
            // would refuse to start, so remove the lock files.
            tracing::warn!(
                "removing stale {} (pid {:?} is not a PostgreSQL server of this cluster)",
                layout.pid_file().display(),
                pid
            );
            for f in [
                layout.pid_file(),
                layout.socket_dir.join(format!(".s.PGSQL.{PORT}.lock")),
                layout.socket_dir.join(format!(".s.PGSQL.{PORT}")),
            ] {
                match fs::remove_file(&f) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(format!("removing {}", f.display()))(e)),
                }
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cluster creation and start/stop

fn make_dir(path: &Path, mode: u32) -> Result<()> {
    match DirBuilder::new().mode(mode).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(format!("creating {}", path.display()))(e)),
    }
}

/// Creates the relocation directories (root-owned, 0755) and checks nobody else owns them.
fn prepare_relocated_root(root: &Path) -> Result<()> {
    let base = root.parent().unwrap_or(Path::new(RELOCATED_BASE));
    for dir in [base, root] {
        make_dir(dir, 0o755)?;
        let md =
            fs::symlink_metadata(dir).map_err(io_err(format!("inspecting {}", dir.display())))?;
        if !md.is_dir() || md.uid() != sys::euid() || md.mode() & 0o022 != 0 {
            return Err(BootError::Cluster(format!(
                "{} must be a directory owned by uid {} and writable only by it (it is not); \
                 remove it",
                dir.display(),
                sys::euid()
            )));
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .map_err(io_err(format!("chmod {}", dir.display())))?;
    }
    Ok(())
}

/// Creates the short socket directory under /tmp (server-owned, 0700).
fn prepare_socket_dir(layout: &Layout, server: &Server) -> Result<()> {
    if !layout.short_socket {
        return Ok(());
    }
    let dir = &layout.socket_dir;
    make_dir(dir, 0o700)?;
    let md = fs::symlink_metadata(dir).map_err(io_err(format!("inspecting {}", dir.display())))?;
    if !md.is_dir() {
        return Err(BootError::Cluster(format!(
            "{} is not a directory; remove it",
            dir.display()
        )));
    }
    if md.uid() != server.uid() {
        if md.uid() == sys::euid() {
            server.chown(dir)?;
        } else {
            return Err(BootError::Cluster(format!(
                "socket directory {} belongs to uid {}, not to {}; remove it",
                dir.display(),
                md.uid(),
                server.user_desc()
            )));
        }
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err(format!("chmod {}", dir.display())))?;
    Ok(())
}

fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(format!("removing {}", path.display()))(e)),
    }
}

fn ensure_include_line(cluster_dir: &Path) -> Result<()> {
    let conf = cluster_dir.join("postgresql.conf");
    let text = fs::read_to_string(&conf).map_err(io_err(format!("reading {}", conf.display())))?;
    if text.lines().any(|l| l.trim() == INCLUDE_LINE) {
        return Ok(());
    }
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .map_err(io_err(format!("opening {}", conf.display())))?;
    writeln!(
        f,
        "\n# Written by pgboot (SupportTracker) before every start; later settings, \
         ALTER SYSTEM and postgresql.auto.conf override it.\n{INCLUDE_LINE}"
    )
    .map_err(io_err(format!("writing {}", conf.display())))?;
    Ok(())
}

/// Runs initdb if the cluster does not exist yet; fixes ownership of an existing one.
fn ensure_cluster(layout: &Layout, server: &Server, opts: &BootOptions) -> Result<()> {
    let dir = &layout.cluster_dir;
    if let Some(root) = &layout.relocated_root {
        prepare_relocated_root(root)?;
    }
    if dir.join("PG_VERSION").is_file() {
        let md = fs::metadata(dir).map_err(io_err(format!("inspecting {}", dir.display())))?;
        if md.uid() != server.uid() {
            if server.run_as.is_some() {
                tracing::warn!(
                    "{} belongs to uid {}; handing it to {}",
                    dir.display(),
                    md.uid(),
                    server.user_desc()
                );
                sys::chown_recursive(dir, server.uid(), server.gid())
                    .map_err(io_err(format!("chown -R {}", dir.display())))?;
            } else {
                return Err(BootError::Cluster(format!(
                    "the PostgreSQL cluster {} belongs to uid {} but this process runs as uid {}; \
                     run as that user (or as root), or use another ST_DATA_DIR",
                    dir.display(),
                    md.uid(),
                    sys::euid()
                )));
            }
        }
        ensure_include_line(dir)?;
        return Ok(());
    }
    if dir.exists() {
        let empty = fs::read_dir(dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(BootError::Cluster(format!(
                "{} exists but is not a PostgreSQL cluster (no PG_VERSION); move it away",
                dir.display()
            )));
        }
        fs::remove_dir(dir).map_err(io_err(format!("removing {}", dir.display())))?;
    }

    // initdb into a temporary sibling and rename it into place, so that an interrupted
    // initdb never leaves a half-made cluster where a cluster is expected.
    let tmp = layout.initdb_tmp();
    remove_tree(&tmp)?;
    make_dir(&tmp, 0o700)?;
    server.chown(&tmp)?;
    tracing::info!("creating a PostgreSQL cluster in {}", dir.display());
    let mut cmd = server.command("initdb");
    cmd.arg("-D")
        .arg(&tmp)
        .args(["-U", "postgres", "--auth-local=trust", "--auth-host=reject"])
        .args(["-E", "UTF8", "--locale=C", "--no-instructions"]);
    if opts.fast_unsafe {
        cmd.arg("--no-sync");
    }
    if let Err(e) = check(&mut cmd) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    ensure_include_line(&tmp)?;
    fs::rename(&tmp, dir).map_err(io_err(format!(
        "renaming {} to {}",
        tmp.display(),
        dir.display()
    )))?;
    if !opts.fast_unsafe {
        if let Some(parent) = dir.parent() {
            let _ = File::open(parent).and_then(|f| f.sync_all());
        }
    }
    Ok(())
}

/// Quotes a value for postgresql.conf.
fn conf_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

fn write_settings(layout: &Layout, server: &Server, opts: &BootOptions) -> Result<()> {
    let socket_dir = layout.socket_dir.to_string_lossy();
    let onoff = if opts.fast_unsafe { "off" } else { "on" };
    let text = format!(
        "# Written by pgboot before every start; do not edit (use ALTER SYSTEM instead).\n\
         listen_addresses = ''\n\
         port = {PORT}\n\
         unix_socket_directories = {}\n\
         unix_socket_permissions = 0700\n\
         max_connections = 300\n\
         fsync = {onoff}\n\
         synchronous_commit = {onoff}\n\
         full_page_writes = {onoff}\n",
        conf_quote(&format!("\"{}\"", socket_dir.replace('"', "\"\"")))
    );
    let path = layout.cluster_dir.join(CONF_FILE);
    let tmp = layout.cluster_dir.join(format!("{CONF_FILE}.tmp"));
    fs::write(&tmp, text).map_err(io_err(format!("writing {}", tmp.display())))?;
    server.chown(&tmp)?;
    fs::rename(&tmp, &path).map_err(io_err(format!("writing {}", path.display())))?;
    Ok(())
}

fn log_tail(path: &Path, offset: u64, lines: usize) -> String {
    let mut text = String::new();
    let read = File::open(path).and_then(|mut f| {
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(if offset <= len { offset } else { 0 }))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        text = String::from_utf8_lossy(&buf).into_owned();
        Ok(())
    });
    if let Err(e) = read {
        return format!("(could not read {}: {e})", path.display());
    }
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    if tail.is_empty() {
        "(empty)".to_string()
    } else {
        tail.join("\n")
    }
}

fn start_server(layout: &Layout, server: &Server, opts: &BootOptions) -> Result<()> {
    prepare_socket_dir(layout, server)?;
    write_settings(layout, server, opts)?;
    let log = layout.log_file();
    if fs::metadata(&log).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let _ = fs::rename(&log, layout.cluster_dir.join(format!("{SERVER_LOG}.1")));
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let offset = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut cmd = server.command("pg_ctl");
        cmd.arg("start")
            .arg("-w")
            .arg("-t")
            .arg(START_TIMEOUT_SECS.to_string())
            .arg("-s")
            .arg("-D")
            .arg(&layout.cluster_dir)
            .arg("-l")
            .arg(&log);
        let out = run(&mut cmd)?;
        if out.status.success() {
            tracing::info!(
                "started PostgreSQL in {} (socket in {})",
                layout.cluster_dir.display(),
                layout.socket_dir.display()
            );
            return Ok(());
        }
        let tail = log_tail(&log, offset, 20);
        // Orphaned backends of a killed server may hold the old shared memory a little longer.
        if tail.contains("pre-existing shared memory block") && attempt < 10 {
            sleep(Duration::from_secs(1));
            continue;
        }
        let text = output_text(&out);
        return Err(BootError::StartFailed {
            dir: layout.cluster_dir.clone(),
            log,
            output: if text.is_empty() {
                String::new()
            } else {
                format!(": {text}")
            },
            log_tail: tail,
        });
    }
}

fn stop_server(layout: &Layout, server: &Server) -> Result<()> {
    let stop = |mode: &str, timeout: u32| {
        let mut cmd = server.command("pg_ctl");
        cmd.arg("stop")
            .arg("-m")
            .arg(mode)
            .arg("-w")
            .arg("-t")
            .arg(timeout.to_string())
            .arg("-s")
            .arg("-D")
            .arg(&layout.cluster_dir);
        check(&mut cmd).map(|_| ())
    };
    if let Err(e) = stop("fast", 60) {
        tracing::warn!("fast shutdown failed ({e}); trying an immediate shutdown");
        stop("immediate", 30)?;
    }
    if layout.short_socket {
        let _ = fs::remove_dir(&layout.socket_dir);
    }
    tracing::info!("stopped PostgreSQL in {}", layout.cluster_dir.display());
    Ok(())
}

fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn sql_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn ensure_database(server: &Server, socket_dir: &Path, database: &str) -> Result<()> {
    let psql = |sql: String| {
        let mut cmd = server.psql();
        cmd.arg("-h")
            .arg(socket_dir)
            .arg("-p")
            .arg(PORT.to_string())
            .args(["-U", "postgres", "-d", "postgres", "-tAc"])
            .arg(sql);
        check(&mut cmd)
    };
    let out = psql(format!(
        "select 1 from pg_database where datname = {}",
        sql_literal(database)
    ))?;
    if String::from_utf8_lossy(&out.stdout).trim() == "1" {
        return Ok(());
    }
    match psql(format!("CREATE DATABASE {}", sql_ident(database))) {
        Ok(_) => {
            tracing::info!("created database {database}");
            Ok(())
        }
        Err(BootError::Command { output, .. }) if output.contains("already exists") => Ok(()),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// URLs

fn pct_encode(s: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn private_url(socket_dir: &Path, database: &str) -> String {
    format!(
        "postgresql://postgres@localhost/{}?host={}",
        pct_encode(database.as_bytes(), false),
        pct_encode(socket_dir.as_os_str().as_bytes(), true)
    )
}

/// Replaces the database (path) of a `scheme://authority/db?query` URL.
fn replace_database(url: &str, database: &str) -> String {
    let db = pct_encode(database.as_bytes(), false);
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let after_auth = &rest[auth_end..];
    let tail_start = if let Some(path) = after_auth.strip_prefix('/') {
        auth_end + 1 + path.find(['?', '#']).unwrap_or(path.len())
    } else {
        auth_end
    };
    format!(
        "{}/{}{}",
        &url[..rest_start + auth_end],
        db,
        &rest[tail_start..]
    )
}

// ---------------------------------------------------------------------------------------------
// PgBoot

#[derive(Debug)]
struct Private {
    server: Server,
    layout: Layout,
    socket_dir: PathBuf,
    /// Holds LOCK_SH on `pg.users.lock` while attached; None after shutdown/detach.
    users: Option<File>,
    started_server: bool,
}

/// A running PostgreSQL (private or from `DATABASE_URL`). While this guard lives, the private
/// cluster stays up; dropping it (or [`PgBoot::shutdown`]) stops the cluster if this was the
/// last process using it.
#[derive(Debug)]
pub struct PgBoot {
    url: String,
    private: Option<Private>,
}

impl PgBoot {
    /// If env `DATABASE_URL` is set and non-empty: use it, start nothing
    /// ([`PgBoot::is_private`] is false). Otherwise start (or attach to) the private cluster of
    /// `opts.data_dir` and create `opts.database` if it is missing.
    pub fn start(opts: &BootOptions) -> Result<PgBoot> {
        Self::start_with(opts, &EnvView::from_process())
    }

    /// Like [`PgBoot::start`] but always uses the private cluster, whatever `DATABASE_URL` says.
    pub fn start_private(opts: &BootOptions) -> Result<PgBoot> {
        Self::start_with(
            opts,
            &EnvView {
                database_url: None,
                bin_dir: pg_bin_dir_from_env(),
            },
        )
    }

    pub(crate) fn start_with(opts: &BootOptions, env: &EnvView) -> Result<PgBoot> {
        if let Some(url) = &env.database_url {
            return Ok(PgBoot {
                url: url.clone(),
                private: None,
            });
        }
        if opts.database.is_empty() || opts.database.contains('\0') {
            return Err(BootError::InvalidOption(format!(
                "database name {:?} is empty or contains NUL",
                opts.database
            )));
        }
        let server = Server::resolve(env.bin_dir.as_deref())?;
        let data_dir =
            canonical_data_dir(&opts.data_dir, true)?.expect("created data directories exist");
        let layout = Layout::compute(&data_dir, &server)?;

        let control = lock_exclusive(&layout.control_lock())?;
        let users_path = layout.users_lock();
        let users = sys::open_lock_file(&users_path)
            .map_err(io_err(format!("opening {}", users_path.display())))?;
        sys::flock(&users, LockKind::Shared, false)
            .map_err(io_err(format!("locking {}", users_path.display())))?;

        match boot_locked(&layout, &server, opts) {
            Ok((socket_dir, started_server)) => {
                drop(control);
                Ok(PgBoot {
                    url: private_url(&socket_dir, &opts.database),
                    private: Some(Private {
                        server,
                        layout,
                        socket_dir,
                        users: Some(users),
                        started_server,
                    }),
                })
            }
            Err(e) => {
                // Leave as if shut down: stop the server if nobody else uses it.
                if let Err(e2) = leave_locked(&layout, &server, users) {
                    tracing::warn!("cleaning up after a failed start: {e2}");
                }
                drop(control);
                Err(e)
            }
        }
    }

    /// The URL to connect with, e.g.
    /// `postgresql://postgres@localhost/supporttracker?host=/abs/data/pg`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of another database on the same server.
    pub fn url_for(&self, database: &str) -> String {
        match &self.private {
            Some(p) => private_url(&p.socket_dir, database),
            None => replace_database(&self.url, database),
        }
    }

    /// False when the server came from `DATABASE_URL`.
    pub fn is_private(&self) -> bool {
        self.private.is_some()
    }

    /// Whether this guard started the server (false: attached to a running one, or external).
    pub fn started_server(&self) -> bool {
        self.private.as_ref().is_some_and(|p| p.started_server)
    }

    /// The cluster directory (PGDATA) of a private cluster.
    pub fn cluster_dir(&self) -> Option<&Path> {
        self.private
            .as_ref()
            .map(|p| p.layout.cluster_dir.as_path())
    }

    /// The directory holding the server's Unix socket, for a private cluster.
    pub fn socket_dir(&self) -> Option<&Path> {
        self.private.as_ref().map(|p| p.socket_dir.as_path())
    }

    /// Stops the cluster if this process is the last one using it; idempotent.
    /// Errors are logged; see [`PgBoot::try_shutdown`] to get them.
    pub fn shutdown(&mut self) {
        if let Err(e) = self.try_shutdown() {
            tracing::warn!("stopping the private PostgreSQL: {e}");
        }
    }

    /// Like [`PgBoot::shutdown`]; returns whether the server was stopped (false: others still
    /// use it, it was not running, it is external, or this guard was already shut down).
    pub fn try_shutdown(&mut self) -> Result<bool> {
        let Some(p) = self.private.as_mut() else {
            return Ok(false);
        };
        let Some(users) = p.users.take() else {
            return Ok(false);
        };
        let control = lock_exclusive(&p.layout.control_lock())?;
        let result = leave_locked(&p.layout, &p.server, users);
        drop(control);
        result
    }

    /// Leaves the server running without this process counting as a user (`st-pg start`);
    /// the next process to attach and leave will stop it. Returns the URL.
    pub fn detach(mut self) -> String {
        if let Some(p) = self.private.as_mut() {
            p.users = None;
        }
        std::mem::take(&mut self.url)
    }
}

impl Drop for PgBoot {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// With the control lock held: make sure the cluster exists and runs, and the database too.
/// Returns the socket directory and whether this call started the server.
fn boot_locked(layout: &Layout, server: &Server, opts: &BootOptions) -> Result<(PathBuf, bool)> {
    ensure_cluster(layout, server, opts)?;
    let deadline = Instant::now() + Duration::from_secs(START_TIMEOUT_SECS.into());
    loop {
        match server_state(layout)? {
            State::Running {
                ready: true,
                socket_dir,
                pid,
            } => {
                let socket_dir = socket_dir.unwrap_or_else(|| layout.socket_dir.clone());
                tracing::debug!(
                    "attaching to PostgreSQL pid {pid} in {}",
                    layout.cluster_dir.display()
                );
                ensure_database(server, &socket_dir, &opts.database)?;
                return Ok((socket_dir, false));
            }
            State::Running {
                ready: false, pid, ..
            } => {
                if Instant::now() > deadline {
                    return Err(BootError::Cluster(format!(
                        "PostgreSQL (pid {pid}) in {} has not become ready in {START_TIMEOUT_SECS} s; see {}",
                        layout.cluster_dir.display(),
                        layout.log_file().display()
                    )));
                }
                sleep(Duration::from_millis(100));
            }
            State::Stale { pid, pid_alive } => {
                clear_stale(layout, pid, pid_alive)?;
                start_server(layout, server, opts)?;
                ensure_database(server, &layout.socket_dir, &opts.database)?;
                return Ok((layout.socket_dir.clone(), true));
            }
            State::NotRunning => {
                start_server(layout, server, opts)?;
                ensure_database(server, &layout.socket_dir, &opts.database)?;
                return Ok((layout.socket_dir.clone(), true));
            }
        }
    }
}

/// With the control lock held: give up our shared lock; stop the server if nobody else
/// holds one. Returns whether the server was stopped.
fn leave_locked(layout: &Layout, server: &Server, users: File) -> Result<bool> {
    let last = sys::flock(&users, LockKind::Exclusive, true)
        .map_err(io_err(format!("locking {}", layout.users_lock().display())))?;
    if !last {
        return Ok(false);
    }
    let stopped = match server_state(layout)? {
        State::Running { .. } => {
            stop_server(layout, server)?;
            true
        }
        _ => false,
    };
    drop(users);
    Ok(stopped)
}

/// Runs `f` with the control lock and an exclusive users lock held, i.e. only when no process
/// is attached. `Ok(None)` when the data directory does not exist.
fn with_cluster_exclusive<T>(
    data_dir: &Path,
    f: impl FnOnce(&Layout, &Server) -> Result<T>,
) -> Result<Option<T>> {
    let server = Server::resolve(pg_bin_dir_from_env().as_deref())?;
    let Some(data_dir) = canonical_data_dir(data_dir, false)? else {
        return Ok(None);
    };
    let layout = Layout::compute(&data_dir, &server)?;
    let _control = lock_exclusive(&layout.control_lock())?;
    let users_path = layout.users_lock();
    let users = sys::open_lock_file(&users_path)
        .map_err(io_err(format!("opening {}", users_path.display())))?;
    if !sys::flock(&users, LockKind::Exclusive, true)
        .map_err(io_err(format!("locking {}", users_path.display())))?
    {
        return Err(BootError::InUse {
            data_dir: layout.data_dir.clone(),
            users: describe_holders(&users_path),
        });
    }
    f(&layout, &server).map(Some)
}

/// Stops the private cluster of `data_dir` unless some process is attached to it
/// ([`BootError::InUse`]). Returns whether a running server was stopped.
pub fn stop_cluster(data_dir: &Path) -> Result<bool> {
    with_cluster_exclusive(data_dir, |layout, server| match server_state(layout)? {
        State::Running { .. } => {
            stop_server(layout, server)?;
            Ok(true)
        }
        _ => Ok(false),
    })
    .map(|r| r.unwrap_or(false))
}

/// Stops (unless in use, [`BootError::InUse`]) and deletes the private cluster of `data_dir`,
/// wherever it lives (also a relocated one). The data directory itself and its lock files stay.
pub fn destroy_cluster(data_dir: &Path) -> Result<()> {
    with_cluster_exclusive(data_dir, |layout, server| {
        if let State::Running { .. } = server_state(layout)? {
            stop_server(layout, server)?;
        }
        remove_tree(&layout.initdb_tmp())?;
        remove_tree(&layout.cluster_dir)?;
        if let Some(root) = &layout.relocated_root {
            remove_tree(root)?;
        }
        if layout.short_socket {
            remove_tree(&layout.socket_dir)?;
        }
        Ok(())
    })
    .map(|_| ())
}

#[cfg(test)]
mod tests;
