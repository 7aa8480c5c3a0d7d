//! `nodes/<serial8>/persist.img`: the ext4 image holding a node's writable layer for
//! overlay mode `image`. Made by `mkfs.ext4 -d` from a staging directory holding `upper/`
//! and `work/`, so no loop mount is needed here; built under a temporary name and linked
//! into place, so a Pi never sees a half-made file system and an existing image (a node's
//! data) is never replaced.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::{io_err, NfsTreeError, Result};
use super::fs_util::{random_suffix, remove_tree};
use super::NfsTree;
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

impl NfsTree {
    /// Creates the node's persist.img of `size_mb` MiB (sparse) unless one exists, and
    /// returns its path. An existing image is left untouched, whatever its size.
    pub fn create_persist_image(&self, serial: &Serial, size_mb: u64) -> Result<PathBuf> {
        if !(MIN_PERSIST_MB..=MAX_PERSIST_MB).contains(&size_mb) {
            return Err(NfsTreeError::InvalidPersistSize(size_mb));
        }
        let node = self.layout.node_dir(serial);
        let image = self.layout.persist_image(serial);
        if image.exists() {
            return Ok(image);
        }
        fs::create_dir_all(&node).map_err(io_err("create", &node))?;

        let suffix = random_suffix();
        let staging = node.join(format!(".persist-root-{suffix}"));
        let temp = node.join(format!(".{PERSIST_IMAGE}-{suffix}"));
        let result = build_image(&staging, &temp, size_mb, serial).and_then(|()| {
            // link() fails if the name exists: a concurrent creator's image wins intact.
            match fs::hard_link(&temp, &image) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(NfsTreeError::Io {
                    op: "link into",
                    path: image.clone(),
                    error: e,
                }),
            }
        });
        let _ = remove_tree(&staging);
        let _ = fs::remove_file(&temp);
        result?;
        log::info!("persist image ready: {} ({size_mb} MiB)", image.display());
        Ok(image)
    }
}

fn build_image(staging: &Path, temp: &Path, size_mb: u64, serial: &Serial) -> Result<()> {
    for dir in [UPPER_DIR, WORK_DIR] {
        let d = staging.join(dir);
        fs::create_dir_all(&d).map_err(io_err("create", &d))?;
    }
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)
        .map_err(io_err("create", temp))?;
    file.set_len(size_mb << 20).map_err(io_err("size", temp))?;
    drop(file);

    let mkfs = mkfs_ext4();
    let output = Command::new(&mkfs)
        .args(["-q", "-F", "-m", "0", "-L"])
        .arg(format!("pb-{serial}"))
        .arg("-d")
        .arg(staging)
        .arg(temp)
        .output()
        .map_err(|e| NfsTreeError::Mkfs {
            path: temp.to_path_buf(),
            detail: format!("cannot run {} (install e2fsprogs): {e}", mkfs.display()),
        })?;
    if !output.status.success() {
        return Err(NfsTreeError::Mkfs {
            path: temp.to_path_buf(),
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    let f = fs::File::open(temp).map_err(io_err("open", temp))?;
    f.sync_all().map_err(io_err("sync", temp))
}
