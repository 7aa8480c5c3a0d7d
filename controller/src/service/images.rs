//! Base images and node overlays on the NFS export, for the CLI and the management API.

use std::path::{Path, PathBuf};

use super::{ServiceError, Services};
use crate::domain::boot::tree_plan;
use crate::domain::ids::NodeRef;
use crate::nfs_tree::import::progress::{ImportProgress, ImportSummary};
use crate::nfs_tree::import::ImportOptions;
use crate::nfs_tree::node::NodeInfo;
use crate::nfs_tree::persist_repair::PersistState;
use crate::nfs_tree::squashfs_check::{self, Verdict};
use pureboot_contract::ids::Serial;

/// `overlay info`: the node's tree, the state of its persist.img and the images set aside.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OverlayInfo {
    #[serde(flatten)]
    pub tree: NodeInfo,
    pub persist: PersistState,
    pub set_aside: Vec<PathBuf>,
}

impl Services {
    /// `image verify`: the squashfs base images among `dirs` (all of `base/` when empty)
    /// hashed now against the digests their imports recorded; directory bases have none.
    pub fn verify_images(&self, dirs: &[String]) -> Result<Vec<(String, Verdict)>, ServiceError> {
        let dirs = if dirs.is_empty() {
            self.base_images()?
        } else {
            dirs.to_vec()
        };
        dirs.into_iter()
            .map(|d| {
                Ok((
                    d.clone(),
                    squashfs_check::verify_dir(&self.tree.existing_base_image(&d)?),
                ))
            })
            .collect()
    }

    pub fn base_images(&self) -> Result<Vec<String>, ServiceError> {
        match self.tree.base_images() {
            Ok(list) => Ok(list),
            // No export tree yet: no images, not an error.
            Err(_) if !self.tree.base_path().exists() => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Imports `archive` as a new version of channel `name` (see
    /// [`Services::import_version`]; without `--promote`).
    pub fn import_image(
        &self,
        archive: &Path,
        name: &str,
        options: &ImportOptions,
        progress: &mut dyn FnMut(ImportProgress),
    ) -> Result<ImportSummary, ServiceError> {
        Ok(self
            .import_version(archive, name, options, false, progress)?
            .summary)
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
        Ok(self.node_tree(&node)?.node_path(&node.serial))
    }

    pub fn overlay_info(&self, serial: &Serial) -> Result<Option<OverlayInfo>, ServiceError> {
        let home = self.serial_tree(serial)?;
        let Some(tree) = home.node_info(serial)? else {
            return Ok(None);
        };
        Ok(Some(OverlayInfo {
            persist: home.persist_image_state(serial)?,
            set_aside: [
                home.set_aside_persist_images(serial)?,
                home.set_aside_volume_images(serial)?,
            ]
            .concat(),
            tree,
        }))
    }

    /// `overlay reset`: the node's persist.img moved aside (never deleted) and a fresh one
    /// made; returns where the old one went.
    pub fn reset_persist_image(&self, serial: &Serial) -> Result<Option<PathBuf>, ServiceError> {
        let home = self.serial_tree(serial)?;
        let _guard = self.tree_lock(serial);
        let moved = home.set_aside_persist_image(serial, self.config.nfs.persist_size_mb)?;
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
        Ok(self.serial_tree(serial)?.delete_node_overlay(serial)?)
    }
}
