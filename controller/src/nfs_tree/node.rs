//! Per-node trees: `nodes/<serial8>/{upper,work}` and the files rendered into the upper
//! layer (`etc/hostname`, `etc/machine-id`).

use std::fs;
use std::path::PathBuf;

use serde::Serialize;

use super::error::{io_err, NfsTreeError, Result};
use super::fs_util::write_atomic;
use super::NfsTree;
use pureboot_contract::ids::{Hostname, MachineId, Serial};

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
    pub persist_image: PathBuf,
    pub has_persist_image: bool,
}

impl NfsTree {
    /// Creates (or refreshes) `upper/`, `work/` and the rendered files, without looking at
    /// base images (the boot path, where the base may be provisioned later). Idempotent;
    /// files are replaced atomically. Returns the node's directory.
    pub fn create_node_tree(&self, serial: &Serial, files: &NodeFiles) -> Result<PathBuf> {
        let machine_id = &files.machine_id;
        let hostname = match &files.hostname {
            Some(h) => Hostname::parse(h).map_err(|_| NfsTreeError::InvalidHostname(h.clone()))?,
            None => Hostname::for_serial(serial),
        };

        let l = &self.layout;
        let hostname_file = l.node_hostname_file(serial);
        let id_file = l.node_machine_id_file(serial);
        let work = l.node_work(serial);
        for dir in [
            hostname_file.parent(),
            id_file.parent(),
            Some(work.as_path()),
        ]
        .into_iter()
        .flatten()
        {
            fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        }
        write_atomic(&hostname_file, format!("{hostname}\n").as_bytes(), 0o644)
            .map_err(io_err("write", &hostname_file))?;
        write_atomic(&id_file, format!("{machine_id}\n").as_bytes(), 0o444)
            .map_err(io_err("write", &id_file))?;
        log::info!("node tree ready for {serial} (hostname {hostname})");
        Ok(l.node_dir(serial))
    }

    /// Removes `nodes/<serial8>` entirely (persist.img included); `false` if there was none.
    pub fn delete_node_overlay(&self, serial: &Serial) -> Result<bool> {
        let node = self.node_path(serial);
        match fs::symlink_metadata(&node) {
            Ok(_) => {
                super::fs_util::remove_tree(&node).map_err(io_err("remove", &node))?;
                log::info!("deleted node tree {}", node.display());
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    /// What is on disk for a node, or `None` if it has no tree.
    pub fn node_info(&self, serial: &Serial) -> Result<Option<NodeInfo>> {
        let l = &self.layout;
        let node = l.node_dir(serial);
        if !node.is_dir() {
            return Ok(None);
        }
        let read = |file: PathBuf| fs::read_to_string(file).ok().map(|s| s.trim().to_string());
        let persist_image = l.persist_image(serial);
        Ok(Some(NodeInfo {
            hostname: read(l.node_hostname_file(serial)),
            machine_id: read(l.node_machine_id_file(serial)),
            work_dir: l.node_work(serial),
            has_persist_image: persist_image.is_file(),
            persist_image,
            upper_dir: l.node_upper(serial),
            path: node,
            serial: serial.clone(),
        }))
    }
}
