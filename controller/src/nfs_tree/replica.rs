//! A base image on another server of the pool: its digest, its copy, and the stamp that
//! says a copy was checked.
//!
//! The digest of `base/<image>` covers every entry, in name order: its relative path, its
//! kind, its permission bits and owner, a file's content (SHA-256) and a symlink's target;
//! so a root tree and a squashfs image (`root.squashfs` and its `.sha256`) are compared
//! alike. Hashing a whole image is an operator's command's work (`image status`, `image
//! sync`); the boot path reads the stamp `.pureboot-digests/<image>` each checked copy gets
//! (and the source its own): a server has an image when both stamps hold the same digest.
//! Nothing is followed out of the image (symlinks are copied as links).

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::{io_err, NfsTreeError, Result};
use super::fs_util::random_suffix;
use super::NfsTree;
use pureboot_contract::ids::Serial;

/// The stamps' directory, at the export's root beside `base/` and `nodes/`.
pub const STAMPS_DIR: &str = ".pureboot-digests";

impl NfsTree {
    fn stamp_path(&self, image: &str) -> Result<PathBuf> {
        let name = super::parse_image_name(image)?;
        Ok(self.root().join(STAMPS_DIR).join(name.as_str()))
    }

    /// The digest recorded when the image was last checked here (none: never, or gone).
    pub fn image_stamp(&self, image: &str) -> Option<String> {
        let text = fs::read_to_string(self.stamp_path(image).ok()?).ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    }

    /// Records `digest` as checked for `image` (none: forgets it).
    pub fn set_image_stamp(&self, image: &str, digest: Option<&str>) -> Result<()> {
        let path = self.stamp_path(image)?;
        match digest {
            Some(d) => {
                let dir = self.root().join(STAMPS_DIR);
                fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
                let tmp = dir.join(format!(".{image}.{}", random_suffix()));
                fs::write(&tmp, d).map_err(io_err("writing", &tmp))?;
                fs::rename(&tmp, &path).map_err(io_err("renaming into", &path))
            }
            None => match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(io_err("removing", &path)(e))
                }
                _ => Ok(()),
            },
        }
    }

    /// The digest of `base/<image>` (see the module); `None`: no such directory.
    pub fn image_digest(&self, image: &str) -> Result<Option<String>> {
        let dir = self.base_image_path(image)?;
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("reading", &dir)(e)),
        }
        tree_digest(&dir).map(Some)
    }

    /// Copies `base/<image>` from `source` into this tree under a hidden name, then swaps it
    /// in (a copy there before, with another digest, is removed after the swap): a Pi never
    /// sees half an image.
    pub fn copy_image_from(&self, source: &NfsTree, image: &str) -> Result<()> {
        let from = source.existing_base_image(image)?;
        let base = self.base_path().to_path_buf();
        fs::create_dir_all(&base).map_err(io_err("creating", &base))?;
        let tmp = base.join(format!(".sync-{image}.{}", random_suffix()));
        let copied = copy_tree(&from, &tmp);
        if let Err(e) = copied {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        swap_in(&tmp, &self.base_image_path(image)?, &base)
    }
}

impl NfsTree {
    /// Copies `nodes/<serial>` to `other` (a node's move between servers): under a hidden
    /// name, checked by digest, then swapped in (a tree there before is set aside and
    /// removed). `false`: the node has no tree here (nothing to copy).
    pub fn copy_node_tree_to(&self, other: &NfsTree, serial: &Serial) -> Result<bool> {
        let from = self.node_path(serial);
        if !from.is_dir() {
            return Ok(false);
        }
        other.ensure_directories()?;
        let nodes = other.nodes_path().to_path_buf();
        let tmp = nodes.join(format!(".move-{serial}.{}", random_suffix()));
        let checked = copy_tree(&from, &tmp).and_then(|()| {
            let (a, b) = (tree_digest(&from)?, tree_digest(&tmp)?);
            if a == b {
                Ok(())
            } else {
                Err(NfsTreeError::Io {
                    op: "checking the copy of",
                    path: tmp.clone(),
                    error: std::io::Error::other("its digest is not the original's"),
                })
            }
        });
        if let Err(e) = checked {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        swap_in(&tmp, &other.node_path(serial), &nodes)?;
        Ok(true)
    }
}

/// Renames the finished copy `tmp` to `target`; a tree there before is first set aside
/// (hidden, in `dir`) and removed once the new one is in place.
fn swap_in(tmp: &Path, target: &Path, dir: &Path) -> Result<()> {
    let old = dir.join(format!(".old.{}", random_suffix()));
    let had_old = match fs::rename(target, &old) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_err("setting aside", target)(e)),
    };
    fs::rename(tmp, target).map_err(io_err("renaming into", target))?;
    if had_old {
        fs::remove_dir_all(&old).map_err(io_err("removing", &old))?;
    }
    Ok(())
}

/// The digest of the tree at `dir` (see the module).
fn tree_digest(dir: &Path) -> Result<String> {
    let mut h = Sha256::new();
    digest_dir(dir, Path::new(""), &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

fn digest_dir(dir: &Path, rel: &Path, h: &mut Sha256) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(io_err("reading", dir))?
        .collect::<std::io::Result<_>>()
        .map_err(io_err("reading", dir))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let m = fs::symlink_metadata(&path).map_err(io_err("reading", &path))?;
        let name = rel.join(e.file_name());
        let head = format!(
            "{}\0{:o}\0{}\0{}\0",
            name.display(),
            m.mode(),
            m.uid(),
            m.gid()
        );
        h.update(head.as_bytes());
        if m.is_dir() {
            digest_dir(&path, &name, h)?;
        } else if m.file_type().is_symlink() {
            let target = fs::read_link(&path).map_err(io_err("reading", &path))?;
            h.update(target.as_os_str().as_encoded_bytes());
        } else if m.is_file() {
            let mut f = fs::File::open(&path).map_err(io_err("reading", &path))?;
            let mut inner = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f.read(&mut buf).map_err(io_err("reading", &path))?;
                if n == 0 {
                    break;
                }
                inner.update(&buf[..n]);
            }
            h.update(inner.finalize());
        }
        // Devices count by their mode (kind included) and number.
        h.update(m.rdev().to_le_bytes());
        h.update(b"\n");
    }
    Ok(())
}

/// Copies the tree at `from` to `to` (which must not exist): directories, files and
/// symlinks with their modes and owners; anything else is refused, naming it.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let m = fs::symlink_metadata(from).map_err(io_err("reading", from))?;
    if m.is_dir() {
        fs::create_dir(to).map_err(io_err("creating", to))?;
        for e in fs::read_dir(from).map_err(io_err("reading", from))? {
            let e = e.map_err(io_err("reading", from))?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
    } else if m.file_type().is_symlink() {
        let target = fs::read_link(from).map_err(io_err("reading", from))?;
        std::os::unix::fs::symlink(&target, to).map_err(io_err("creating", to))?;
    } else if m.is_file() {
        fs::copy(from, to).map_err(io_err("copying to", to))?;
    } else {
        // An overlay's upper directory holds whiteouts (character devices 0:0); the import
        // may have made device nodes (--keep-devices): made again as they are.
        use std::os::unix::fs::FileTypeExt;
        let ft = m.file_type();
        let kind = if ft.is_char_device() {
            rustix::fs::FileType::CharacterDevice
        } else if ft.is_block_device() {
            rustix::fs::FileType::BlockDevice
        } else if ft.is_fifo() {
            rustix::fs::FileType::Fifo
        } else {
            return Err(NfsTreeError::Io {
                op: "copying (a socket or unknown kind of file)",
                path: from.to_path_buf(),
                error: std::io::Error::other("unsupported file type"),
            });
        };
        rustix::fs::mknodat(
            rustix::fs::CWD,
            to,
            kind,
            rustix::fs::Mode::from_raw_mode(m.mode() & 0o7777),
            m.rdev(),
        )
        .map_err(|e| io_err("making the node", to)(e.into()))?;
    }
    let (uid, gid) = (m.uid(), m.gid());
    let now = fs::symlink_metadata(to).map_err(io_err("reading", to))?;
    if (now.uid(), now.gid()) != (uid, gid) {
        std::os::unix::fs::lchown(to, Some(uid), Some(gid)).map_err(io_err("chown", to))?;
    }
    if !m.file_type().is_symlink() {
        fs::set_permissions(to, fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(io_err("chmod", to))?;
    }
    Ok(())
}
