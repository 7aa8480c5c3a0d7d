//! Where PostgreSQL's server programs are and which user runs them. Debian puts each major
//! version's `initdb` and `postgres` in `/usr/lib/postgresql/<major>/bin` (package
//! `postgresql-15` on bookworm), off PATH; `PUREBOOT_PG_BIN` names another directory. The
//! server refuses to run as root, so a root test process runs it as Debian's `postgres`
//! user (created by `postgresql-common`, a Depends of `postgresql-15`).

use std::path::{Path, PathBuf};

/// Names a directory holding `initdb` and `postgres` to use instead of Debian's newest.
pub const BIN_ENV: &str = "PUREBOOT_PG_BIN";
const DEBIAN_LIB: &str = "/usr/lib/postgresql";
const PROGRAMS: [&str; 2] = ["initdb", "postgres"];

/// A user the server programs run as (set with setgid/setuid in the child).
#[derive(Clone, Copy, Debug)]
pub struct RunAs {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

/// The server programs found on this machine and who runs them.
#[derive(Clone, Debug)]
pub struct Install {
    pub bin: PathBuf,
    /// `None`: the current user (not root).
    pub run_as: Option<RunAs>,
}

impl Install {
    /// The programs and, when this process is root, the `postgres` user; the error says
    /// what is missing and which package brings it.
    pub fn find() -> Result<Install, String> {
        let bin = bin_dir()?;
        // SAFETY: geteuid has no preconditions.
        let run_as = if unsafe { libc::geteuid() } == 0 {
            Some(postgres_user()?)
        } else {
            None
        };
        Ok(Install { bin, run_as })
    }

    pub fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }
}

fn has_programs(dir: &Path) -> Result<(), String> {
    match PROGRAMS.iter().find(|p| !dir.join(p).is_file()) {
        Some(p) => Err(format!("{} is missing", dir.join(p).display())),
        None => Ok(()),
    }
}

fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os(BIN_ENV) {
        let dir = PathBuf::from(dir);
        has_programs(&dir).map_err(|e| format!("{BIN_ENV}={}: {e}", dir.display()))?;
        return Ok(dir);
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(DEBIAN_LIB)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((version(e.file_name().to_str()?)?, e.path().join("bin"))))
        .collect();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .map(|(_, bin)| bin)
        .find(|bin| has_programs(bin).is_ok())
        .ok_or_else(|| {
            format!(
                "no PostgreSQL server programs ({}) in {DEBIAN_LIB}/<version>/bin \
                 (Debian package postgresql-15: run tests/setup.sh) and {BIN_ENV} is not set",
                PROGRAMS.join(", ")
            )
        })
}

/// `15` → `[15]`, `9.6` → `[9, 6]`; anything else is not a version directory.
fn version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|n| n.parse().ok()).collect()
}

fn postgres_user() -> Result<RunAs, String> {
    // SAFETY: getpwnam_r writes only into `pwd` and `buf`, both live and sized as passed.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            c"postgres".as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        );
        if rc != 0 || found.is_null() {
            return Err(
                "running as root, which PostgreSQL refuses, and there is no user \
                        `postgres` to run it as (Debian package postgresql-common, a Depends \
                        of postgresql-15: run tests/setup.sh)"
                    .into(),
            );
        }
        Ok(RunAs {
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically_and_other_names_are_not_versions() {
        let mut v: Vec<Vec<u32>> = ["9.6", "15", "10"]
            .iter()
            .filter_map(|n| version(n))
            .collect();
        v.sort();
        assert_eq!(v, [vec![9, 6], vec![10], vec![15]]);
        assert_eq!(version("README"), None);
        assert_eq!(version("15.x"), None);
    }

    #[test]
    fn a_directory_without_the_programs_says_which_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("initdb"), "").unwrap();
        let err = has_programs(dir.path()).unwrap_err();
        assert!(err.ends_with("/postgres is missing"), "{err}");
    }
}
