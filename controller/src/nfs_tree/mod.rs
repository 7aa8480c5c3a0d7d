//! The NFS export tree the controller prepares and pi-init reads: the layout is the
//! contract's ([`pureboot_contract::layout`]), `base/<image>/` imported from tar archives and
//! `nodes/<serial8>/` rendered per node. Serials, image names, host names and machine ids
//! are parsed by the contract's parsers before they become paths or file contents; base
//! images are imported safely and atomically.

mod base;
pub mod error;
mod fs_util;
pub mod import;
pub mod node;
pub mod persist;
pub mod persist_repair;

#[cfg(test)]
mod tests;

use std::fs;
use std::path::{Path, PathBuf};

use error::{io_err, NfsTreeError, Result};
use pureboot_contract::ids::{ImageName, Serial};
use pureboot_contract::layout::ExportLayout;

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
        for dir in [&self.base, &self.nodes] {
            fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        }
        log::info!("NFS directories ready under {}", self.root().display());
        Ok(())
    }

    /// `nodes/<serial8>`; the directory need not exist.
    pub fn node_path(&self, serial: &Serial) -> PathBuf {
        self.layout.node_dir(serial)
    }
}
