//! Thin, safe wrappers over the few libc calls pgboot needs: user lookup, flock(2),
//! permission checks and /proc inspection.

use std::ffi::{CStr, CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

pub(crate) fn egid() -> u32 {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

/// A system user, as found in the password database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SysUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Looks a user up by name (thread-safe `getpwnam_r`). `Ok(None)` if there is no such user.
pub(crate) fn user_by_name(name: &str) -> io::Result<Option<SysUser>> {
    let cname = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: passwd is plain old data; all pointers handed to getpwnam_r are valid for
        // the duration of the call and `buf.len()` is the true buffer size.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if result.is_null() {
            return Ok(None);
        }
        // SAFETY: on success pw_name/pw_dir point to NUL-terminated strings inside `buf`.
        let (name, home) = unsafe {
            (
                CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned(),
                PathBuf::from(OsStr::from_bytes(CStr::from_ptr(pwd.pw_dir).to_bytes())),
            )
        };
        return Ok(Some(SysUser {
            name,
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
            home,
        }));
    }
}

/// Whether a process running with `uid`/`gid` (and no supplementary groups) may traverse
/// (search, `x`) `dir` and every one of its ancestors. Standard Unix semantics: the owner
/// bits apply to the owner, the group bits to the group, the other bits to everybody else.
/// ACLs are not consulted. Returns the first directory that blocks, if any.
pub(crate) fn first_untraversable(dir: &Path, uid: u32, gid: u32) -> io::Result<Option<PathBuf>> {
    if uid == 0 {
        return Ok(None);
    }
    for d in dir.ancestors() {
        if d.as_os_str().is_empty() {
            continue;
        }
        let md = fs::metadata(d)?;
        let mode = md.mode();
        let ok = if md.uid() == uid {
            mode & 0o100 != 0
        } else if md.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !ok {
            return Ok(Some(d.to_path_buf()));
        }
    }
    Ok(None)
}

/// Opens (creating if needed) a file used only for flock(2). flock works on read-only
/// descriptors too, so a lock file created by another user is still usable.
pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o666)
        .open(path)
    {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => File::open(path),
        Err(e) => Err(e),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockKind {
    Shared,
    Exclusive,
}

/// flock(2). `Ok(false)` when `nonblocking` and the lock is held elsewhere.
/// Note: converting an existing lock is not atomic; if a non-blocking conversion fails, the
/// lock previously held through this descriptor is gone.
pub(crate) fn flock(file: &File, kind: LockKind, nonblocking: bool) -> io::Result<bool> {
    let mut op = match kind {
        LockKind::Shared => libc::LOCK_SH,
        LockKind::Exclusive => libc::LOCK_EX,
    };
    if nonblocking {
        op |= libc::LOCK_NB;
    }
    loop {
        // SAFETY: the descriptor is valid for as long as `file` lives.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if nonblocking => return Ok(false),
            _ => return Err(err),
        }
    }
}

/// Whether a process with this pid exists (it may belong to another user).
pub(crate) fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only performs the existence/permission check.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

pub(crate) fn proc_available() -> bool {
    Path::new("/proc/self/cwd").exists()
}

/// The working directory of a process, from /proc. Postmasters and their backends run with
/// the data directory as their working directory.
pub(crate) fn proc_cwd(pid: i32) -> io::Result<PathBuf> {
    fs::read_link(format!("/proc/{pid}/cwd"))
}

pub(crate) fn proc_comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Pids of all processes whose working directory is `dir` (those we are allowed to see).
pub(crate) fn pids_with_cwd(dir: &Path) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Ok(cwd) = proc_cwd(pid) {
            if cwd == dir {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Pids holding flock(2) locks on `path` (from /proc/locks; best effort).
pub(crate) fn flock_holders(path: &Path) -> Vec<i32> {
    let Ok(md) = fs::metadata(path) else {
        return Vec::new();
    };
    let ino = md.ino();
    let Ok(text) = fs::read_to_string("/proc/locks") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for line in text.lines() {
        // "12: FLOCK  ADVISORY  READ  4242 fd:01:123456 0 EOF"; waiters have "->" after the id.
        let fields: Vec<&str> = line.split_whitespace().filter(|f| *f != "->").collect();
        if fields.len() < 6 || fields[1] != "FLOCK" {
            continue;
        }
        let Some(file_ino) = fields[5]
            .rsplit(':')
            .next()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if file_ino != ino || line.contains("->") {
            continue;
        }
        if let Ok(pid) = fields[4].parse::<i32>() {
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// lchown every entry below (and including) `root`.
pub(crate) fn chown_recursive(root: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(root, Some(uid), Some(gid))?;
    let md = fs::symlink_metadata(root)?;
    if md.is_dir() {
        for entry in fs::read_dir(root)? {
            chown_recursive(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}
