//! The squashfs format of a base image: the tree an import extracted is packed into one
//! file, `base/<name>/root.squashfs` (the contract's `SQUASHFS_IMAGE`), with its sha256
//! beside it (`SQUASHFS_DIGEST`, `sha256sum`'s format). pi-init attaches the file to a loop
//! device and mounts it under the overlay: a boot then reads one file in large blocks instead
//! of a tree file by file over NFS.
//!
//! Packed by `mksquashfs` (squashfs-tools) rather than a Rust crate (`backhand`): it is the
//! writer the kernel's reader is tested against, it packs on every core, and it keeps what a
//! root needs (owners, modes, set-uid bits, hard links, xattrs such as file capabilities)
//! without new code here. The controller's package recommends squashfs-tools: only this
//! format needs it.
//!
//! The tree and the output are handed to mksquashfs as `/proc/<pid>/fd/<n>/.`, the import's
//! own descriptors, so no path below the export root is resolved again (clients write the
//! export; see `beneath.rs`).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::process::Command;
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::fsops;
use crate::nfs_tree::error::{NfsTreeError, Result};
use pureboot_contract::layout::{SQUASHFS_DIGEST, SQUASHFS_IMAGE};

/// How a base image is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BaseFormat {
    // A root tree, read file by file over NFS. (Plain comments: a doc comment would turn
    // `image import --help` into clap's long layout.)
    #[default]
    Directory,
    // One squashfs file, loop-mounted by pi-init.
    Squashfs,
}

/// zstd at mksquashfs's default level. Measured on the cached Debian arm64 root (446 MB),
/// each packed and then read in full through a fresh loop mount, on the project's x86-64
/// machine: zstd 175.6 MB in 3.1 s, lz4 235.9 MB in 1.7 s, xz 165.1 MB in 22.4 s, gzip
/// 186.0 MB in 2.8 s. xz saves 6% of the bytes for 7x the decompression, which a Pi's
/// (and an emulated) CPU pays at every boot; lz4 sends a third more bytes, which a fleet
/// booting at once shares.
pub const COMPRESSOR: &str = "zstd";

/// What packing made.
#[derive(Debug, Clone, Serialize)]
pub struct Packed {
    pub compressor: &'static str,
    /// The file's size.
    pub bytes: u64,
    /// sha256 of the file, hex.
    pub sha256: String,
    pub seconds: f64,
}

/// `/proc/<pid>/fd/<fd>`: a child process reaches the directory the descriptor holds.
fn proc_path(fd: BorrowedFd) -> String {
    format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd())
}

/// Packs the tree open at `tree` into `out/root.squashfs` and writes its digest beside it;
/// both synced. `name` is the image's, for messages.
pub(crate) fn pack(tree: BorrowedFd, out: BorrowedFd, name: &str) -> Result<Packed> {
    let started = Instant::now();
    let error = |reason: String| NfsTreeError::Squashfs {
        name: name.into(),
        reason,
    };
    let output = Command::new("mksquashfs")
        .arg(format!("{}/.", proc_path(tree)))
        .arg(format!("{}/{SQUASHFS_IMAGE}", proc_path(out)))
        .args(["-comp", COMPRESSOR, "-noappend", "-no-progress", "-quiet"])
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                error("mksquashfs not found: install squashfs-tools (Debian package)".into())
            }
            _ => error(format!("cannot run mksquashfs: {e}")),
        })?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        return Err(error(format!(
            "mksquashfs {}: {}",
            output.status,
            said.trim()
        )));
    }
    let image = File::open(format!("{}/{SQUASHFS_IMAGE}", proc_path(out)))
        .map_err(|e| error(format!("open {SQUASHFS_IMAGE}: {e}")))?;
    let (bytes, sha256) =
        digest(&image).map_err(|e| error(format!("read {SQUASHFS_IMAGE}: {e}")))?;
    let line = format!("{sha256}  {SQUASHFS_IMAGE}\n");
    File::create(format!("{}/{SQUASHFS_DIGEST}", proc_path(out)))
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| error(format!("write {SQUASHFS_DIGEST}: {e}")))?;
    fsops::syncfs(out).map_err(|e| error(format!("sync: {e}")))?;
    Ok(Packed {
        compressor: COMPRESSOR,
        bytes,
        sha256,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Size and sha256 (hex) of what `r` reads.
pub(crate) fn digest(mut r: impl Read) -> io::Result<(u64, String)> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        total += n as u64;
    }
    let hex = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((total, hex))
}

/// Whether the squashfs file `image` holds any of `paths` (relative, as a root tree's),
/// read with `unsquashfs -l`: the checks made on a directory base, for this format.
pub fn contains(image: &std::path::Path, paths: &[&str]) -> io::Result<bool> {
    let out = Command::new("unsquashfs")
        .args(["-l", "-no-progress", "-d", ""])
        .arg(image)
        .args(paths)
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "unsquashfs -l {}: {}",
            image.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let listed = String::from_utf8_lossy(&out.stdout);
    Ok(listed
        .lines()
        .any(|l| paths.iter().any(|p| l.trim_start_matches('/') == *p)))
}
