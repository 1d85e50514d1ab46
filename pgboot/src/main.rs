//! `st-pg`: run commands against a private PostgreSQL cluster.
//!
//! ```text
//! st-pg exec [--data-dir DIR] [--fresh] [--fast] [--database NAME] -- CMD [ARGS...]
//! st-pg start [--data-dir DIR] [--fast]
//! st-pg stop [--data-dir DIR]
//! st-pg destroy [--data-dir DIR]
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};

use pgboot::{BootOptions, PgBoot};

const USAGE: &str = "\
usage:
  st-pg exec [--data-dir DIR] [--fresh] [--fast] [--database NAME] -- CMD [ARGS...]
      Start (or attach to) the private PostgreSQL cluster of DIR, run CMD with DATABASE_URL
      set to it, then stop the cluster if nobody else uses it; exit with CMD's exit code.
      --fresh  delete DIR before and after (DIR defaults to /tmp/st-test-pg-<pid>)
      --fast   fsync=off, synchronous_commit=off, full_page_writes=off (throwaway clusters)
      If DATABASE_URL is already set, CMD runs with it unchanged and no cluster is started.
  st-pg start [--data-dir DIR] [--fast]
      Start the cluster, print its URL and leave it running.
  st-pg stop [--data-dir DIR]
      Stop the cluster unless a process is using it (then exit 1).
  st-pg destroy [--data-dir DIR]
      Stop (unless in use) and delete the cluster of DIR.
DIR defaults to $ST_DATA_DIR, else ./data. Set ST_PG_BIN_DIR to choose the PostgreSQL binaries.
";

#[derive(Debug, Default)]
struct Args {
    command: String,
    data_dir: Option<PathBuf>,
    fresh: bool,
    fast: bool,
    database: Option<String>,
    rest: Vec<OsString>,
}

fn parse_args(mut argv: impl Iterator<Item = OsString>) -> Result<Args, String> {
    let mut args = Args {
        command: match argv.next() {
            Some(c) => c.into_string().map_err(|_| "invalid command".to_string())?,
            None => return Err("missing command".into()),
        },
        ..Args::default()
    };
    while let Some(arg) = argv.next() {
        let Some(s) = arg.to_str() else {
            if args.command == "exec" {
                args.rest.push(arg);
                args.rest.extend(argv);
                break;
            }
            return Err(format!("unexpected argument {arg:?}"));
        };
        let (flag, inline) = match s.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(OsString::from(v))),
            _ => (s, None),
        };
        let mut value = |name: &str| -> Result<OsString, String> {
            inline
                .clone()
                .or_else(|| argv.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag {
            "--data-dir" => args.data_dir = Some(PathBuf::from(value("--data-dir")?)),
            "--database" => {
                args.database = Some(
                    value("--database")?
                        .into_string()
                        .map_err(|_| "invalid --database".to_string())?,
                )
            }
            "--fresh" if args.command == "exec" => args.fresh = true,
            "--fast" if args.command == "exec" || args.command == "start" => args.fast = true,
            "--" if args.command == "exec" => {
                args.rest.extend(argv);
                break;
            }
            "-h" | "--help" => {
                args.command = "help".into();
                return Ok(args);
            }
            _ if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ if args.command == "exec" => {
                args.rest.push(arg);
                args.rest.extend(argv);
                break;
            }
            _ => return Err(format!("unexpected argument {s}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("st-pg: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let code = match args.command.as_str() {
        "exec" => cmd_exec(args),
        "start" => cmd_start(args),
        "stop" => cmd_stop(args),
        "destroy" => cmd_destroy(args),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            0
        }
        other => {
            eprintln!("st-pg: unknown command {other:?}\n{USAGE}");
            2
        }
    };
    std::process::exit(code);
}

fn data_dir(args: &Args) -> PathBuf {
    args.data_dir
        .clone()
        .unwrap_or_else(pgboot::default_data_dir)
}

fn options(args: &Args, dir: &Path) -> BootOptions {
    let mut opts = BootOptions::new(dir);
    opts.fast_unsafe = args.fast;
    if let Some(db) = &args.database {
        opts.database = db.clone();
    }
    opts
}

fn fail(e: impl std::fmt::Display) -> i32 {
    eprintln!("st-pg: {e}");
    1
}

// --- signals -----------------------------------------------------------------------------------

static CHILD: AtomicI32 = AtomicI32::new(0);
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    SIGNALLED.store(sig, Ordering::SeqCst);
    // A signal from the terminal (Ctrl-C) already reached the child, which shares our process
    // group; forward only what was sent to us alone.
    // SAFETY: the kernel passes a valid siginfo_t with SA_SIGINFO.
    let from_terminal = !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL;
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 && !from_terminal {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is valid; the handler only touches atomics and kill().
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// Runs the child, forwarding signals to it; returns its exit code.
fn run_child(args: &Args, database_url: Option<&str>) -> i32 {
    let Some((program, rest)) = args.rest.split_first() else {
        return fail("exec needs a command after --");
    };
    let mut cmd = Command::new(program);
    cmd.args(rest);
    if let Some(url) = database_url {
        cmd.env("DATABASE_URL", url);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("could not run {program:?}: {e}")),
    };
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    // A signal that arrived before the child existed.
    let pending = SIGNALLED.load(Ordering::SeqCst);
    if pending != 0 {
        // SAFETY: plain kill(2) on our own child.
        unsafe {
            libc::kill(child.id() as i32, pending);
        }
    }
    let status = child.wait();
    CHILD.store(0, Ordering::SeqCst);
    match status {
        Ok(s) => exit_code(s),
        Err(e) => fail(format!("waiting for {program:?}: {e}")),
    }
}

fn remove_fresh(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        return Ok(());
    }
    pgboot::destroy_cluster(dir).map_err(|e| e.to_string())?;
    std::fs::remove_dir_all(dir).map_err(|e| format!("removing {}: {e}", dir.display()))
}

fn cmd_exec(args: Args) -> i32 {
    install_signal_handlers();
    if args.rest.is_empty() {
        return fail("exec needs a command after --");
    }
    if std::env::var("DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
        return run_child(&args, None);
    }
    let dir = match (&args.data_dir, args.fresh) {
        (Some(d), _) => d.clone(),
        (None, true) => PathBuf::from(format!("/tmp/st-test-pg-{}", std::process::id())),
        (None, false) => pgboot::default_data_dir(),
    };
    if args.fresh {
        if let Err(e) = remove_fresh(&dir) {
            return fail(format!("--fresh: {e}"));
        }
    }
    let mut boot = match PgBoot::start_private(&options(&args, &dir)) {
        Ok(b) => b,
        Err(e) => {
            if args.fresh {
                let _ = remove_fresh(&dir);
            }
            return fail(e);
        }
    };
    eprintln!(
        "st-pg: PostgreSQL in {} ({}); DATABASE_URL={}",
        boot.cluster_dir().unwrap_or(Path::new("?")).display(),
        if boot.started_server() {
            "started"
        } else {
            "attached"
        },
        boot.url()
    );
    let sig = SIGNALLED.load(Ordering::SeqCst);
    let code = if sig != 0 {
        128 + sig
    } else {
        let url = boot.url().to_string();
        run_child(&args, Some(&url))
    };
    let code = match boot.try_shutdown() {
        Ok(_) => code,
        Err(e) => {
            eprintln!("st-pg: stopping PostgreSQL: {e}");
            if code == 0 {
                1
            } else {
                code
            }
        }
    };
    if args.fresh {
        if let Err(e) = remove_fresh(&dir) {
            eprintln!("st-pg: leaving {} in place: {e}", dir.display());
        }
    }
    code
}

fn cmd_start(args: Args) -> i32 {
    let dir = data_dir(&args);
    match PgBoot::start_private(&options(&args, &dir)) {
        Ok(boot) => {
            eprintln!(
                "st-pg: PostgreSQL in {} is running (stop it with `st-pg stop --data-dir {}`)",
                boot.cluster_dir().unwrap_or(Path::new("?")).display(),
                dir.display()
            );
            println!("{}", boot.detach());
            0
        }
        Err(e) => fail(e),
    }
}

fn cmd_stop(args: Args) -> i32 {
    let dir = data_dir(&args);
    match pgboot::stop_cluster(&dir) {
        Ok(true) => {
            eprintln!("st-pg: stopped PostgreSQL of {}", dir.display());
            0
        }
        Ok(false) => {
            eprintln!("st-pg: PostgreSQL of {} is not running", dir.display());
            0
        }
        // BootError::InUse names the processes that still use it.
        Err(e) => fail(e),
    }
}

fn cmd_destroy(args: Args) -> i32 {
    let dir = data_dir(&args);
    if !dir.exists() {
        eprintln!("st-pg: {} does not exist; nothing to delete", dir.display());
        return 0;
    }
    match pgboot::destroy_cluster(&dir) {
        Ok(()) => {
            eprintln!("st-pg: deleted the PostgreSQL cluster of {}", dir.display());
            0
        }
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn parses_exec() {
        let a = parse(&[
            "exec",
            "--fresh",
            "--fast",
            "--data-dir",
            "/x",
            "--",
            "cargo",
            "--fresh",
        ])
        .unwrap();
        assert!(a.fresh && a.fast);
        assert_eq!(a.data_dir, Some(PathBuf::from("/x")));
        assert_eq!(
            a.rest,
            vec![OsString::from("cargo"), OsString::from("--fresh")]
        );
        let a = parse(&["exec", "--data-dir=/y", "sh", "-c", "true"]).unwrap();
        assert_eq!(a.data_dir, Some(PathBuf::from("/y")));
        assert_eq!(a.rest.len(), 3);
        assert!(parse(&["stop", "--fresh"]).is_err());
        assert!(parse(&["exec", "--data-dir"]).is_err());
    }
}
