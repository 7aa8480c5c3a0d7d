//! A base image in the squashfs format: `base/<image>/` holds one file (the contract's
//! `SQUASHFS_IMAGE`) instead of a root tree. The file is read through the base image's
//! mount like any other, attached read-only to a loop device and mounted as squashfs; that
//! mount is the overlay's lower layer in place of the directory.
//!
//! Why: a directory base is read file by file over NFS (a Debian boot: ~1,500 calls, a
//! LOOKUP, GETATTR and READ or more per file), a squashfs base as large reads of one file,
//! the directories and inodes already in the client's page cache after the first. The
//! format is told by what the directory holds, so the boot answer names an image the same
//! way for both and an upstream answer keeps working; a directory base costs one LOOKUP
//! more (the file's absence).
//!
//! The loop device keeps the kernel's defaults: buffered I/O (direct I/O would bypass the
//! NFS client's page cache, which is what makes the second read of a block free) and the
//! block layer's read-ahead.

use super::lower::Lower;
use crate::sys::{MountArgs, Sys};
use nix::errno::Errno;
use nix::mount::MsFlags;
use pureboot_contract::layout::SQUASHFS_IMAGE;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What a squashfs base needs of the disk module list (the kernel's names).
pub const MODULES: &[&str] = &["loop", "squashfs"];

/// Why a squashfs base could not be mounted. Each names the image.
#[derive(Debug)]
pub enum SquashfsError {
    /// The image's directory cannot be looked into: `(image, file, why)`.
    Stat(String, PathBuf, io::Error),
    Mkdir(String, PathBuf, io::Error),
    /// No loop device for the file (no `loop` driver, or none free).
    Loop(String, PathBuf, Errno),
    Mount(String, Box<MountArgs>, Errno),
}

impl fmt::Display for SquashfsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SquashfsError::Stat(i, p, e) => {
                write!(f, "base image {i}: cannot look for {}: {e}", p.display())
            }
            SquashfsError::Mkdir(i, p, e) => {
                write!(f, "base image {i}: mkdir {}: {e}", p.display())
            }
            SquashfsError::Loop(i, p, e) => write!(
                f,
                "base image {i}: no loop device for {}: {e}{}",
                p.display(),
                if *e == Errno::ENOENT {
                    "; no /dev/loop-control: the kernel has no loop driver (built in, or \
                     `loop` in the initramfs' modules.disk)"
                } else {
                    ""
                }
            ),
            SquashfsError::Mount(i, m, e) => write!(
                f,
                "base image {i}: {m}: {e}{}",
                match *e {
                    Errno::ENODEV => {
                        "; the kernel has no squashfs (built in, or `squashfs` in the \
                         initramfs' modules.disk: rebuild it with pureboot-image)"
                    }
                    Errno::EINVAL | Errno::EIO => {
                        "; the file is not a squashfs this kernel reads (damaged, or a \
                         compressor it lacks)"
                    }
                    _ => "",
                }
            ),
        }
    }
}

impl std::error::Error for SquashfsError {}

/// The image's squashfs file when its directory holds one; `None` for a directory base.
pub fn find(base: &Path, image: &str) -> Result<Option<PathBuf>, SquashfsError> {
    let file = base.join(SQUASHFS_IMAGE);
    match std::fs::symlink_metadata(&file) {
        Ok(m) if m.is_file() => Ok(Some(file)),
        // A directory (or anything else) of that name: a root tree's own, not the format's.
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SquashfsError::Stat(image.into(), file, e)),
    }
}

/// `file` attached read-only to a loop device and mounted read-only at `at`. The device
/// detaches itself once the mount is gone (autoclear).
pub fn mount(sys: &dyn Sys, image: &str, file: &Path, at: &Path) -> Result<(), SquashfsError> {
    std::fs::create_dir_all(at).map_err(|e| SquashfsError::Mkdir(image.into(), at.into(), e))?;
    let dev = sys
        .loop_attach(file, true)
        .map_err(|e| SquashfsError::Loop(image.into(), file.into(), e))?;
    let args = MountArgs::new(
        &dev.path.to_string_lossy(),
        at,
        "squashfs",
        MsFlags::MS_RDONLY,
        "",
    );
    sys.mount(&args)
        .map_err(|e| SquashfsError::Mount(image.into(), Box::new(args), e))
}

/// If the base of `lower` is a squashfs image, mounts it at `at` (after `modules`, which
/// loads what the mount needs) and makes that mount the base. Returns whether it was.
pub fn place(
    sys: &dyn Sys,
    lower: &mut Lower,
    at: &Path,
    modules: impl FnOnce(),
) -> Result<bool, SquashfsError> {
    let Some(image) = lower.base_image.as_deref() else {
        return Ok(false);
    };
    let Some(file) = find(&lower.base, image)? else {
        return Ok(false);
    };
    modules();
    mount(sys, image, &file, at)?;
    log::info!(
        "base image {image}: squashfs {} on {}",
        file.display(),
        at.display()
    );
    lower.base = at.to_path_buf();
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::cmdline::RootLayout;
    use crate::support::testutil::TempDir;
    use crate::sys::fake::{Call, FakeSys};

    fn lower(base: &Path) -> Lower {
        Lower {
            layout: RootLayout::Tree,
            base: base.into(),
            base_image: Some("deb".into()),
            node_dir: None,
        }
    }

    #[test]
    fn a_directory_base_is_left_as_it_is() {
        let d = TempDir::new();
        let sys = FakeSys::new();
        let mut l = lower(d.path());
        // A root tree may hold a directory of that name: not the format's file.
        std::fs::create_dir(d.path().join(SQUASHFS_IMAGE)).unwrap();
        let mut loaded = false;
        let placed = place(&sys, &mut l, &d.path().join("sq"), || loaded = true);
        assert!(!placed.unwrap() && !loaded);
        assert_eq!(l.base, d.path());
        assert!(sys.calls().is_empty());
    }

    #[test]
    fn a_squashfs_base_is_attached_read_only_and_mounted_as_the_lower() {
        let d = TempDir::new();
        let file = d.path().join(SQUASHFS_IMAGE);
        std::fs::write(&file, b"hsqs").unwrap();
        let sys = FakeSys::new();
        let mut l = lower(d.path());
        let at = d.path().join("sq");
        let mut loaded = false;
        assert!(place(&sys, &mut l, &at, || loaded = true).unwrap());
        assert!(loaded, "the modules before the mount");
        assert_eq!(l.base, at);
        assert_eq!(
            sys.calls(),
            [
                Call::LoopAttach(file, true),
                Call::Mount(MountArgs::new(
                    "/dev/loop7",
                    &at,
                    "squashfs",
                    MsFlags::MS_RDONLY,
                    ""
                )),
            ]
        );
    }

    #[test]
    fn failures_name_the_image_and_what_the_kernel_lacks() {
        let d = TempDir::new();
        std::fs::write(d.path().join(SQUASHFS_IMAGE), b"hsqs").unwrap();
        let at = d.path().join("sq");
        let sys = FakeSys::new();
        sys.script_mounts([Err(Errno::ENODEV)]);
        let e = place(&sys, &mut lower(d.path()), &at, || {}).unwrap_err();
        let e = e.to_string();
        assert!(
            e.starts_with("base image deb: ") && e.contains("the kernel has no squashfs"),
            "{e}"
        );
        let sys = FakeSys::new();
        sys.script_mounts([Err(Errno::EINVAL)]);
        let e = place(&sys, &mut lower(d.path()), &at, || {}).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
    }
}
