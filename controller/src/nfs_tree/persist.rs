//! `nodes/<serial8>/persist.img`: the ext4 image holding a node's writable layer for
//! overlay mode `image`. Made by `mkfs.ext4 -d` from a staging directory holding `upper/`
//! and `work/`, so no loop mount is needed here; built under a temporary name and linked
//! into place, so a Pi never sees a half-made file system and an existing image (a node's
//! data) is never replaced.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::OFlags;

use super::beneath::Dir;
use super::error::{io_err, NfsTreeError, Result};
use super::fs_util::random_suffix;
use super::{fsops, NfsTree};
use pureboot_contract::ids::Serial;
use pureboot_contract::layout::{PERSIST_IMAGE, UPPER_DIR, WORK_DIR};

pub const MIN_PERSIST_MB: u64 = 16;
pub const MAX_PERSIST_MB: u64 = 1 << 20;

/// `mkfs.ext4` from PATH, else where e2fsprogs installs it (PATH may lack sbin).
fn mkfs_ext4() -> PathBuf {
    let in_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("mkfs.ext4").exists()));
    if !in_path {
        for dir in ["/usr/sbin", "/sbin"] {
            let candidate = Path::new(dir).join("mkfs.ext4");
            if candidate.exists() {
                return candidate;
            }
        }
    }
    PathBuf::from("mkfs.ext4")
}

/// `persist.img` (and any volume of a node): the node's data, nobody else's to read.
pub const PERSIST_MODE: u32 = 0o600;
/// The image's own root and its `upper/`: the node's merged root takes its mode from them.
const STAGING_MODE: u32 = 0o755;

/// A path through which another process (mkfs) reaches what `fd` holds open, whatever has
/// happened to the names leading to it since: the export's names are not trusted.
fn proc_fd_path(fd: BorrowedFd) -> PathBuf {
    PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        fd.as_raw_fd()
    ))
}

impl NfsTree {
    /// Creates the node's persist.img of `size_mb` MiB (sparse, 0600) unless one exists, and
    /// returns its path. An existing image is left untouched, whatever its size (its mode
    /// is made 0600); a symlink or anything but a regular file there is an error naming it.
    pub fn create_persist_image(&self, serial: &Serial, size_mb: u64) -> Result<PathBuf> {
        if !(MIN_PERSIST_MB..=MAX_PERSIST_MB).contains(&size_mb) {
            return Err(NfsTreeError::InvalidPersistSize(size_mb));
        }
        let node = self.node_dir(serial, true)?.expect("created");
        let image = node.child(PERSIST_IMAGE);
        if node.lstat(PERSIST_IMAGE)?.is_some() {
            let f = node
                .open_file(PERSIST_IMAGE, OFlags::RDONLY)?
                .ok_or_else(|| NfsTreeError::NotRegular {
                    path: image.clone(),
                })?;
            fsops::fchmod(f.as_fd(), PERSIST_MODE).map_err(io_err("chmod", &image))?;
            return Ok(image);
        }

        let suffix = random_suffix();
        let staging = format!(".persist-root-{suffix}");
        let temp = format!(".{PERSIST_IMAGE}-{suffix}");
        let result = build_image(&node, &staging, &temp, size_mb, serial).and_then(|()| {
            // link() fails if the name exists: a concurrent creator's image wins intact.
            let (from, to) = (cstr(&temp), cstr(PERSIST_IMAGE));
            match fsops::link_at(node.fd(), &from, node.fd(), &to) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(NfsTreeError::Io {
                    op: "link into",
                    path: image.clone(),
                    error: e,
                }),
            }
        });
        let _ = node.remove_tree(&staging);
        let _ = node.remove_tree(&temp);
        result?;
        log::info!("persist image ready: {} ({size_mb} MiB)", image.display());
        Ok(image)
    }
}

fn cstr(name: &str) -> std::ffi::CString {
    std::ffi::CString::new(name).expect("a constant name has no NUL")
}

fn build_image(node: &Dir, staging: &str, temp: &str, size_mb: u64, serial: &Serial) -> Result<()> {
    let root = node.subdir(staging, Some(STAGING_MODE))?.expect("created");
    for dir in [UPPER_DIR, WORK_DIR] {
        root.subdir(dir, Some(STAGING_MODE))?;
    }
    let temp_path = node.child(temp);
    let file =
        fsops::create_file_at(node.fd(), &cstr(temp)).map_err(io_err("create", &temp_path))?;
    fsops::fchmod(file.as_fd(), PERSIST_MODE).map_err(io_err("chmod", &temp_path))?;
    file.set_len(size_mb << 20)
        .map_err(io_err("size", &temp_path))?;

    let mkfs = mkfs_ext4();
    let output = Command::new(&mkfs)
        .args(["-q", "-F", "-m", "0", "-L"])
        .arg(format!("pb-{serial}"))
        .arg("-d")
        .arg(proc_fd_path(root.fd()))
        .arg(proc_fd_path(file.as_fd()))
        .output()
        .map_err(|e| NfsTreeError::Mkfs {
            path: temp_path.clone(),
            detail: format!("cannot run {} (install e2fsprogs): {e}", mkfs.display()),
        })?;
    if !output.status.success() {
        return Err(NfsTreeError::Mkfs {
            path: temp_path,
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    file.sync_all().map_err(io_err("sync", &temp_path))
}
