//! Per-node trees: `nodes/<serial8>/{upper,work,merged}` and the files rendered into the
//! upper layer (`etc/hostname`, `etc/machine-id`).

use std::fs;
use std::path::PathBuf;

use serde::Serialize;

use super::error::{io_err, NfsTreeError, Result};
use super::fs_util::write_atomic;
use super::persist::PERSIST_IMAGE;
use super::serial::normalize_serial;
use super::NfsTree;

/// What the controller renders into a node's upper layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFiles {
    /// `None` gives `pi-<serial8>`, as the seed does.
    pub hostname: Option<String>,
    /// 32 hex digits; kept in the registry so it is stable across re-creations.
    pub machine_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    pub serial: String,
    pub path: PathBuf,
    pub hostname: Option<String>,
    pub machine_id: Option<String>,
    pub upper_dir: PathBuf,
    pub work_dir: PathBuf,
    pub merged_dir: PathBuf,
    pub persist_image: PathBuf,
    pub has_persist_image: bool,
}

/// A fresh machine-id: 32 lowercase hex digits (systemd's format).
pub fn generate_machine_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn normalize_machine_id(id: &str) -> Result<String> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(NfsTreeError::InvalidMachineId(id.to_string()))
    }
}

/// RFC 1123 host name: dot-separated labels of 1..=63 letters, digits and inner hyphens.
fn validate_hostname(name: &str) -> Result<()> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() <= 253 && name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(NfsTreeError::InvalidHostname(name.to_string()))
    }
}

impl NfsTree {
    /// The seed's `create_node_overlay`: requires `base/<base_image>` to exist
    /// ([`NfsTreeError::BaseImageNotFound`] otherwise), then [`NfsTree::create_node_tree`].
    /// Returns the merged directory.
    pub fn create_node_overlay(
        &self,
        serial: &str,
        base_image: &str,
        files: &NodeFiles,
    ) -> Result<PathBuf> {
        normalize_serial(serial)?;
        self.existing_base_image(base_image)?;
        self.create_node_tree(serial, files)
    }

    /// Creates (or refreshes) `upper/`, `work/`, `merged/` and the rendered files, without
    /// looking at base images (the boot path, where the base may be provisioned later).
    /// Idempotent; files are replaced atomically. Returns the merged directory.
    pub fn create_node_tree(&self, serial: &str, files: &NodeFiles) -> Result<PathBuf> {
        let serial = normalize_serial(serial)?;
        let machine_id = normalize_machine_id(&files.machine_id)?;
        let hostname = files
            .hostname
            .clone()
            .unwrap_or_else(|| format!("pi-{serial}"));
        validate_hostname(&hostname)?;

        let node = self.nodes.join(&serial);
        let (upper, work, merged) = (node.join("upper"), node.join("work"), node.join("merged"));
        let etc = upper.join("etc");
        for dir in [&etc, &work, &merged] {
            fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        }
        let hostname_file = etc.join("hostname");
        write_atomic(&hostname_file, format!("{hostname}\n").as_bytes(), 0o644)
            .map_err(io_err("write", &hostname_file))?;
        let id_file = etc.join("machine-id");
        write_atomic(&id_file, format!("{machine_id}\n").as_bytes(), 0o444)
            .map_err(io_err("write", &id_file))?;
        log::info!("node tree ready for {serial} (hostname {hostname})");
        Ok(merged)
    }

    /// Removes `nodes/<serial8>` entirely (persist.img included); `false` if there was none.
    pub fn delete_node_overlay(&self, serial: &str) -> Result<bool> {
        let node = self.node_path(serial)?;
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
    pub fn node_info(&self, serial: &str) -> Result<Option<NodeInfo>> {
        let serial = normalize_serial(serial)?;
        let node = self.nodes.join(&serial);
        if !node.is_dir() {
            return Ok(None);
        }
        let upper = node.join("upper");
        let read = |name: &str| {
            fs::read_to_string(upper.join("etc").join(name))
                .ok()
                .map(|s| s.trim().to_string())
        };
        let persist_image = node.join(PERSIST_IMAGE);
        Ok(Some(NodeInfo {
            hostname: read("hostname"),
            machine_id: read("machine-id"),
            work_dir: node.join("work"),
            merged_dir: node.join("merged"),
            has_persist_image: persist_image.is_file(),
            persist_image,
            upper_dir: upper,
            path: node,
            serial,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ids_are_32_lowercase_hex_and_differ() {
        let (a, b) = (generate_machine_id(), generate_machine_id());
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
            "{a}"
        );
        assert_ne!(a, b);
        assert_eq!(normalize_machine_id(&a.to_uppercase()).unwrap(), a);
        assert!(normalize_machine_id("1234").is_err());
    }

    #[test]
    fn hostnames() {
        for ok in ["pi-d83add36", "node1.lab", "a"] {
            assert!(validate_hostname(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "x-", "a..b", "a b", "a/b", &"x".repeat(64)] {
            assert!(validate_hostname(bad).is_err(), "{bad}");
        }
    }
}
