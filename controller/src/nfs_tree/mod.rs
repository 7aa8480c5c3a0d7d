//! The NFS export tree the controller prepares and pi-init reads: the layout is the
//! contract's ([`pureboot_contract::layout`]), `base/<image>/` imported from tar archives and
//! `nodes/<serial8>/` rendered per node. Serials, image names, host names and machine ids
//! are parsed by the contract's parsers before they become paths or file contents; base
//! images are imported safely and atomically.

mod base;
mod beneath;
pub mod error;
pub mod exports;
mod fs_util;
mod fsops;
pub mod images;
pub mod import;
pub mod node;
pub mod persist;
pub mod persist_repair;
pub mod replica;
pub mod squashfs_check;
pub mod volumes;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use beneath::Dir;
use error::{NfsTreeError, Result};
use pureboot_contract::ids::{ImageName, Serial};
use pureboot_contract::layout::{ExportLayout, BASE_DIR, NODES_DIR};

/// A node's directory: its layer and persist.img are that node's alone, so nobody else on
/// the controller's host reads them. The Pi mounts as root (`no_root_squash`), which 0700
/// owned by root lets through.
pub const NODE_DIR_MODE: u32 = 0o700;
/// `base/` and `nodes/`: listed by anyone, written by the controller only.
pub const TOP_DIR_MODE: u32 = 0o755;

/// Under the root: a lock file per node tree, for controllers sharing the export
/// ([`NfsTree::lock_node`]).
const LOCKS_DIR: &str = ".locks";

/// A base image name safe as `base/<name>`, or [`NfsTreeError::InvalidImageName`].
pub fn parse_image_name(name: &str) -> Result<ImageName> {
    ImageName::parse(name).map_err(|_| NfsTreeError::InvalidImageName(name.to_string()))
}

/// Paths of one NFS export tree and the operations on it. Cheap to clone and to build per
/// request; all state is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsTree {
    layout: ExportLayout,
    base: PathBuf,
    nodes: PathBuf,
}

impl NfsTree {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let layout = ExportLayout::new(root);
        NfsTree {
            base: layout.base_dir(),
            nodes: layout.nodes_dir(),
            layout,
        }
    }

    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    pub fn layout(&self) -> &ExportLayout {
        &self.layout
    }

    pub fn base_path(&self) -> &Path {
        &self.base
    }

    pub fn nodes_path(&self) -> &Path {
        &self.nodes
    }

    /// Creates `base/` and `nodes/` (and the root) if missing.
    pub fn ensure_directories(&self) -> Result<()> {
        let root = Dir::root(self.root(), true)?;
        for name in [BASE_DIR, NODES_DIR] {
            root.subdir(name, Some(TOP_DIR_MODE))?;
        }
        log::info!("NFS directories ready under {}", self.root().display());
        Ok(())
    }

    /// `base/` or `nodes/`, opened without following a symlink; `None` if missing (and not
    /// `create`, which also makes the root).
    fn top_dir(&self, name: &str, create: bool) -> Result<Option<Dir>> {
        let root = match Dir::root(self.root(), create) {
            Ok(root) => root,
            Err(NfsTreeError::Io { error, .. })
                if !create && error.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        root.subdir(name, create.then_some(TOP_DIR_MODE))
    }

    /// `nodes/<serial>`, opened (or with `create` made, 0700) without following a symlink.
    fn node_dir(&self, serial: &Serial, create: bool) -> Result<Option<Dir>> {
        let Some(nodes) = self.top_dir(NODES_DIR, create)? else {
            return Ok(None);
        };
        let dir = nodes.subdir(serial.as_str(), create.then_some(NODE_DIR_MODE))?;
        if let (Some(d), true) = (&dir, create) {
            // Made 0755 by older controllers.
            d.set_mode(NODE_DIR_MODE)?;
        }
        Ok(dir)
    }

    /// Locks `serial`'s tree against other processes: `flock` on `.locks/<serial>` under the
    /// root (made 0700 if missing, opened without following a symlink: a Pi is root on the
    /// export); released when the file is closed. Waits for the holder.
    pub fn lock_node(&self, serial: &Serial) -> Result<std::fs::File> {
        let missing = |path: PathBuf| NfsTreeError::Io {
            op: "create",
            path,
            error: std::io::ErrorKind::NotFound.into(),
        };
        let root = Dir::root(self.root(), true)?;
        let locks = root
            .subdir(LOCKS_DIR, Some(0o700))?
            .ok_or_else(|| missing(root.child(LOCKS_DIR)))?;
        let name = serial.as_str();
        let file = locks
            .open_file(
                name,
                rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CREATE,
            )?
            .ok_or_else(|| missing(locks.child(name)))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            NfsTreeError::Io {
                op: "flock",
                path: locks.child(name),
                error: e.into(),
            }
        })?;
        Ok(file)
    }

    /// `nodes/<serial8>`; the directory need not exist.
    pub fn node_path(&self, serial: &Serial) -> PathBuf {
        self.layout.node_dir(serial)
    }
}
