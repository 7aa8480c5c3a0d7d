//! Base images and node overlays on the NFS export, for the CLI and the management API.

use std::path::{Path, PathBuf};

use super::{ServiceError, Services};
use crate::domain::boot::{base_image, tree_plan};
use crate::domain::ids::NodeRef;
use crate::nfs_tree::import::progress::{ImportProgress, ImportSummary};
use crate::nfs_tree::import::ImportOptions;
use crate::nfs_tree::node::NodeInfo;
use crate::nfs_tree::persist_repair::PersistState;
use pureboot_contract::ids::Serial;

/// `overlay info`: the node's tree, the state of its persist.img and the images set aside.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OverlayInfo {
    #[serde(flatten)]
    pub tree: NodeInfo,
    pub persist: PersistState,
    pub set_aside: Vec<PathBuf>,
}
use crate::store::nodes::NodeFilter;

impl Services {
    pub fn base_images(&self) -> Result<Vec<String>, ServiceError> {
        match self.tree.base_images() {
            Ok(list) => Ok(list),
            // No export tree yet: no images, not an error.
            Err(_) if !self.tree.base_path().exists() => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// `options.max_bytes` of 0 means the configured `[nfs] import_max_size_mb`.
    pub fn import_image(
        &self,
        archive: &Path,
        name: &str,
        options: &ImportOptions,
        progress: &mut dyn FnMut(ImportProgress),
    ) -> Result<ImportSummary, ServiceError> {
        self.tree.ensure_directories()?;
        let mut options = *options;
        if options.max_bytes == 0 {
            options.max_bytes = self.config.nfs.import_max_size_mb.saturating_mul(1 << 20);
        }
        let summary = self
            .tree
            .import_base_image_with(archive, name, &options, progress)?;
        // A node's image may be this one (named before it was imported): folders follow.
        self.tftp_sync_logged();
        Ok(summary)
    }

    /// Refuses while a node would boot the image (named for it, by its group or workflow,
    /// or as the default), and while it is the default: its next boot would fail.
    pub fn remove_image(&self, name: &str) -> Result<bool, ServiceError> {
        let default = &self.config.nfs.default_base_image;
        let mut users: Vec<String> = Vec::new();
        for node in self.list_nodes(&NodeFilter::default())? {
            // The image its next boot gets: a workflow that does not render boots nothing.
            let (node, wf) = self.rendered(&node);
            if base_image(&node, wf.ok().flatten().as_ref(), default) == name {
                users.push(node.serial.to_string());
            }
        }
        let shown = match users.len() {
            0..=20 => users.join(", "),
            n => format!("{} and {} more", users[..20].join(", "), n - 20),
        };
        if name == default {
            return Err(ServiceError::Conflict(format!(
                "base image {name} is [nfs] default_base_image, which every node without an image of its own boots{}; name another default first",
                if users.is_empty() { String::new() } else { format!(" (now: {shown})") }
            )));
        }
        if !users.is_empty() {
            return Err(ServiceError::Conflict(format!(
                "base image {name} is used by node(s) {shown}; change their base image first"
            )));
        }
        let removed = self.tree.remove_base_image(name)?;
        // The boards the images boot may be fewer now.
        self.tftp_discovery();
        Ok(removed)
    }

    /// Creates (or refreshes) a registered node's tree as its next boot would.
    pub fn create_overlay(&self, node_ref: &NodeRef) -> Result<PathBuf, ServiceError> {
        let node = self.store.read(|tx| self.find(tx, node_ref))?;
        let (rendered_node, rendered) = self.rendered(&node);
        let plan = tree_plan(
            &rendered_node,
            rendered.ok().flatten().as_ref(),
            &self.config.nfs.default_base_image,
        )
        .map_err(|why| ServiceError::Invalid(format!("node {}: {why}", node.serial)))?;
        self.prepare_node_tree(&node, &plan)?;
        Ok(self.tree.node_path(&node.serial))
    }

    pub fn overlay_info(&self, serial: &Serial) -> Result<Option<OverlayInfo>, ServiceError> {
        let Some(tree) = self.tree.node_info(serial)? else {
            return Ok(None);
        };
        Ok(Some(OverlayInfo {
            persist: self.tree.persist_image_state(serial)?,
            set_aside: [
                self.tree.set_aside_persist_images(serial)?,
                self.tree.set_aside_volume_images(serial)?,
            ]
            .concat(),
            tree,
        }))
    }

    /// `overlay reset`: the node's persist.img moved aside (never deleted) and a fresh one
    /// made; returns where the old one went.
    pub fn reset_persist_image(&self, serial: &Serial) -> Result<Option<PathBuf>, ServiceError> {
        let _guard = self.tree_lock(serial);
        let moved = self
            .tree
            .set_aside_persist_image(serial, self.config.nfs.persist_size_mb)?;
        log::warn!(
            "persist.img of {serial} reset by the operator{}",
            moved
                .as_ref()
                .map(|p| format!("; the old one is {}", p.display()))
                .unwrap_or_default()
        );
        Ok(moved)
    }

    pub fn remove_overlay(&self, serial: &Serial) -> Result<bool, ServiceError> {
        Ok(self.tree.delete_node_overlay(serial)?)
    }
}
