//! Finding the PostgreSQL server binaries.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::BootError;

/// Oldest PostgreSQL major version pgboot accepts.
pub const MIN_MAJOR: u32 = 15;

pub(crate) const REQUIRED: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// The command a person should run to get the binaries.
pub(crate) fn install_command(root: bool) -> &'static str {
    if root {
        "apt-get install -y postgresql"
    } else {
        "sudo apt-get install -y postgresql"
    }
}

fn missing_in(dir: &Path) -> Option<&'static str> {
    REQUIRED.into_iter().find(|b| !dir.join(b).is_file())
}

/// Resolves the bin directory: `override_` (the value of ST_PG_BIN_DIR) if given, else the
/// highest `/usr/lib/postgresql/<N>/bin` with N >= 15 holding all the server binaries, else
/// `pg_config --bindir` when `pg_config --version` is >= 15.
pub(crate) fn find_bin_dir(override_: Option<&OsStr>, root: bool) -> Result<PathBuf, BootError> {
    let not_found = |detail: String| BootError::BinariesNotFound {
        detail,
        install: install_command(root).to_string(),
    };
    if let Some(dir) = override_.filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return match missing_in(&dir) {
            None => Ok(dir),
            Some(b) => Err(not_found(format!(
                "ST_PG_BIN_DIR={} has no `{b}`",
                dir.display()
            ))),
        };
    }
    if let Some(dir) = debian_bin_dir(Path::new("/usr/lib/postgresql")) {
        return Ok(dir);
    }
    match pg_config_bin_dir() {
        Some((dir, major)) if major >= MIN_MAJOR && missing_in(&dir).is_none() => Ok(dir),
        Some((dir, major)) => Err(not_found(format!(
            "no /usr/lib/postgresql/<N>/bin with N >= {MIN_MAJOR}; `pg_config` reports version {major} in {}",
            dir.display()
        ))),
        None => Err(not_found(format!(
            "looked in /usr/lib/postgresql/<N>/bin (N >= {MIN_MAJOR}) and `pg_config --bindir`"
        ))),
    }
}

fn debian_bin_dir(base: &Path) -> Option<PathBuf> {
    let mut versions: Vec<u32> = fs::read_dir(base)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|v| *v >= MIN_MAJOR)
        .collect();
    versions.sort_unstable();
    versions
        .into_iter()
        .rev()
        .map(|v| base.join(v.to_string()).join("bin"))
        .find(|dir| missing_in(dir).is_none())
}

fn pg_config(arg: &str) -> Option<String> {
    let out = Command::new("pg_config")
        .arg(arg)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn pg_config_bin_dir() -> Option<(PathBuf, u32)> {
    let dir = PathBuf::from(pg_config("--bindir")?);
    let major = parse_major(&pg_config("--version")?)?;
    Some((dir, major))
}

/// "PostgreSQL 15.18 (Debian 15.18-0+deb12u1)" -> 15; "PostgreSQL 9.6.24" -> 9.
pub(crate) fn parse_major(version: &str) -> Option<u32> {
    let v = version.split_whitespace().nth(1)?;
    let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            parse_major("PostgreSQL 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(parse_major("PostgreSQL 9.6.24"), Some(9));
        assert_eq!(parse_major("PostgreSQL 17devel"), Some(17));
        assert_eq!(parse_major("garbage"), None);
    }

    #[test]
    fn missing_override_names_install_command() {
        let err = find_bin_dir(Some(OsStr::new("/nonexistent")), true).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("apt-get install -y postgresql"), "{msg}");
        assert!(!msg.contains("sudo"), "{msg}");
        assert!(msg.contains("/nonexistent"), "{msg}");
        let msg = find_bin_dir(Some(OsStr::new("/nonexistent")), false)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("sudo apt-get install -y postgresql"), "{msg}");
    }
}
