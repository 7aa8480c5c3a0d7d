//! The NFS export tree the controller prepares and pi-init reads (DESIGN.md, "NFS tree"):
//!
//! ```text
//! <root>/base/<image>/               shared read-only root trees (imported from tar archives)
//! <root>/nodes/<serial8>/upper/      per-node files (etc/hostname, etc/machine-id)
//! <root>/nodes/<serial8>/work/       overlay workdir (mode nfs)
//! <root>/nodes/<serial8>/merged/     mount point kept from the seed's layout
//! <root>/nodes/<serial8>/persist.img ext4 holding upper/ and work/ (mode image)
//! ```
//!
//! The seed's NFSManager in Rust, with its faults fixed: serials are validated before they
//! become paths, image names too, and base images are imported safely and atomically.

mod base;
mod error;
mod fs_util;
mod import;
mod node;
mod overlay;
mod persist;
mod persist_repair;
mod serial;

#[cfg(test)]
mod tests;

use std::fs;
use std::path::{Path, PathBuf};

pub use base::validate_image_name;
pub use error::{NfsTreeError, Result};
pub use import::{render_progress, ArchiveFormat, ImportProgress, ImportSummary, TerminalProgress};
pub use node::{generate_machine_id, NodeFiles, NodeInfo};
pub use overlay::OverlayMode;
pub use persist::{MAX_PERSIST_MB, MIN_PERSIST_MB};
pub use persist_repair::{utc_stamp, PersistState};
pub use serial::{normalize_serial, validate_serial};

use error::io_err;

/// Paths of one NFS export tree and the operations on it. Cheap to clone and to build per
/// request; all state is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsTree {
    root: PathBuf,
    base: PathBuf,
    nodes: PathBuf,
}

impl NfsTree {
    /// `base_dir` and `nodes_dir` are relative to `root` (the seed's defaults are
    /// `base` and `nodes`, see [`NfsTree::with_default_dirs`]).
    pub fn new(
        root: impl Into<PathBuf>,
        base_dir: impl AsRef<Path>,
        nodes_dir: impl AsRef<Path>,
    ) -> Self {
        let root = root.into();
        let base = root.join(base_dir);
        let nodes = root.join(nodes_dir);
        NfsTree { root, base, nodes }
    }

    pub fn with_default_dirs(root: impl Into<PathBuf>) -> Self {
        Self::new(root, "base", "nodes")
    }

    pub fn root(&self) -> &Path {
        &self.root
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
        log::info!("NFS directories ready under {}", self.root.display());
        Ok(())
    }

    /// `nodes/<serial8>` for a valid serial (any case); the directory need not exist.
    pub fn node_path(&self, serial: &str) -> Result<PathBuf> {
        Ok(self.nodes.join(normalize_serial(serial)?))
    }
}
