//! Per-node trees: `nodes/<serial8>/{upper,work}` and the files rendered into the upper
//! layer (`etc/hostname`, `etc/machine-id`).

use std::ffi::OsStr;
use std::path::PathBuf;

use rustix::fs::FileType;
use serde::Serialize;

use super::error::{NfsTreeError, Result};
use super::volumes::VolumeImage;
use super::{fsops, images, NfsTree};
use pureboot_contract::ids::{Hostname, MachineId, Serial};
use pureboot_contract::layout::{
    HOSTNAME_FILE, MACHINE_ID_FILE, NODES_DIR, PERSIST_STEM, UPPER_DIR, WORK_DIR,
};

/// What the controller renders into a node's upper layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFiles {
    /// As a workflow template rendered it, checked here; `None` gives
    /// [`Hostname::for_serial`], the name pi-init uses too.
    pub hostname: Option<String>,
    /// Kept in the registry so it is stable across re-creations.
    pub machine_id: MachineId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    pub serial: Serial,
    pub path: PathBuf,
    pub hostname: Option<String>,
    pub machine_id: Option<String>,
    pub upper_dir: PathBuf,
    pub work_dir: PathBuf,
    /// The current persist image (its generation), else where generation 0 would be.
    pub persist_image: PathBuf,
    pub has_persist_image: bool,
    /// The volume images on the export, by path, with their current names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeImage>,
}

/// The upper layer: it becomes the root directory of the node's merged tree (overlayfs takes
/// the root's mode from it), so everyone on the Pi must be able to enter it.
const UPPER_MODE: u32 = 0o755;
/// overlayfs's scratch directory: only the mounter (root) uses it.
const WORK_MODE: u32 = 0o700;
/// Host names and machine ids are one short line; a longer file is not ours.
const SMALL_FILE_LIMIT: u64 = 4096;

/// `etc/hostname` as (directories, file name).
fn split(rel: &str) -> (Vec<&OsStr>, &str) {
    let mut parts: Vec<&str> = rel.split('/').collect();
    let file = parts.pop().expect("a file name");
    (parts.into_iter().map(OsStr::new).collect(), file)
}

impl NfsTree {
    /// Creates (or refreshes) `upper/`, `work/` and the rendered files, without looking at
    /// base images (the boot path, where the base may be provisioned later). Idempotent;
    /// files are replaced atomically. Nothing below the export root is followed if it is a
    /// symlink (see `beneath`). Returns the node's directory.
    pub fn create_node_tree(&self, serial: &Serial, files: &NodeFiles) -> Result<PathBuf> {
        let machine_id = &files.machine_id;
        let hostname = match &files.hostname {
            Some(h) => Hostname::parse(h).map_err(|_| NfsTreeError::InvalidHostname(h.clone()))?,
            None => Hostname::for_serial(serial),
        };

        let node = self.node_dir(serial, true)?.expect("created");
        let upper = node.subdir(UPPER_DIR, Some(UPPER_MODE))?.expect("created");
        node.subdir(WORK_DIR, Some(WORK_MODE))?;
        for (rel, content, mode) in [
            (HOSTNAME_FILE, format!("{hostname}\n"), 0o644),
            (MACHINE_ID_FILE, format!("{machine_id}\n"), 0o444),
        ] {
            let (dirs, file) = split(rel);
            let dir = upper.subdirs(&dirs, Some(0o755))?.expect("created");
            dir.write_atomic(file, content.as_bytes(), mode)?;
        }
        log::info!("node tree ready for {serial} (hostname {hostname})");
        Ok(node.path().to_path_buf())
    }

    /// Removes `nodes/<serial8>` entirely (persist.img included); `false` if there was none.
    /// A symlink there is removed as itself.
    pub fn delete_node_overlay(&self, serial: &Serial) -> Result<bool> {
        let Some(nodes) = self.top_dir(NODES_DIR, false)? else {
            return Ok(false);
        };
        let removed = nodes.remove_tree(serial.as_str())?;
        if removed {
            log::info!(
                "deleted node tree {}",
                nodes.child(serial.as_str()).display()
            );
        }
        Ok(removed)
    }

    /// What is on disk for a node, or `None` if it has no tree. A symlink on the way to a
    /// file it reads is an error naming it, never read through.
    pub fn node_info(&self, serial: &Serial) -> Result<Option<NodeInfo>> {
        let l = &self.layout;
        let node = match self.node_dir(serial, false) {
            Ok(Some(node)) => node,
            Ok(None) => return Ok(None),
            // Something else in the way (a file): no tree, as before it was made.
            Err(NfsTreeError::Io { error, .. }) if error.raw_os_error() == Some(libc::ENOTDIR) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let read = |rel: &str| -> Result<Option<String>> {
            let (dirs, file) = split(rel);
            let mut path = vec![OsStr::new(UPPER_DIR)];
            path.extend(dirs);
            let Some(dir) = node.subdirs(&path, None)? else {
                return Ok(None);
            };
            Ok(dir
                .read_file(file, SMALL_FILE_LIMIT)?
                .map(|b| String::from_utf8_lossy(&b).trim().to_string()))
        };
        let current = images::current(&node, PERSIST_STEM)?;
        let has_persist_image = match &current {
            Some(name) => node
                .lstat(name)?
                .is_some_and(|st| fsops::file_type(&st) == FileType::RegularFile),
            None => false,
        };
        let persist_image = current.map_or_else(|| l.persist_image(serial), |n| node.child(n));
        let volumes = self.volume_images(serial)?;
        Ok(Some(NodeInfo {
            hostname: read(HOSTNAME_FILE)?,
            machine_id: read(MACHINE_ID_FILE)?,
            work_dir: l.node_work(serial),
            has_persist_image,
            persist_image,
            volumes,
            upper_dir: l.node_upper(serial),
            path: node.path().to_path_buf(),
            serial: serial.clone(),
        }))
    }
}
