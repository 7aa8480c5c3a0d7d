//! The TFTP folders follow the registry (`[tftp] root`): after a change that may move a
//! node to another image (added or assigned with a workflow, its base image or workflow
//! changed, workflows reloaded, an image imported), its `<serial>/` folder is written
//! again for the image its next boot gets; the discovery folder for every board the
//! images can boot. The tool runs after the registry's transaction, never inside it, one
//! run at a time (`tftp_lock`). A folder that cannot be written is a `tftp_folder` event on
//! the node (shown by `node show`) and a log line; the node's registry change stands.

use serde::Serialize;
use serde_json::json;

use super::{ServiceError, Services};
use crate::domain::boot::base_image;
use crate::domain::node::Node;
use crate::store::events::{EventKind, NewEvent};
use crate::store::nodes::NodeFilter;
use crate::tftp::{bootable, Board, Outcome, Writer};

/// One folder's result in a sync.
#[derive(Debug, Clone, Serialize)]
pub struct FolderResult {
    /// The node's serial, or `discovery`.
    pub folder: String,
    pub image: Option<String>,
    pub boards: Vec<&'static str>,
    /// `written`, `unchanged`, `removed`, `none` (nothing to write) or `failed`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FolderResult {
    pub fn failed(&self) -> bool {
        self.outcome == "failed"
    }
}

/// What a node's folder should be built from, or why it has none.
enum Want {
    Folder(Board, String),
    /// No folder (no workflow): it boots from the discovery folder.
    Nothing,
    /// It should have one but cannot: why.
    Cannot(String),
}

impl Services {
    /// The folder writer, when `[tftp] root` is set.
    pub fn tftp_writer(&self) -> Option<Writer> {
        let t = &self.config.tftp;
        Some(Writer {
            root: t.root.clone()?,
            tool: t
                .image_tool
                .clone()
                .unwrap_or_else(|| "pureboot-image".into()),
            pi_init: t.pi_init.clone(),
            controller_url: match &t.controller_urls[..] {
                [] => self.config.public_url(),
                all => all.join(","),
            },
            cmdline_extra: t.cmdline_extra.clone(),
        })
    }

    fn tftp_want(&self, node: &Node) -> Want {
        if crate::domain::effective::workflow_of(node, &node.groups).is_none() {
            return Want::Nothing;
        }
        let (node, wf) = match self.rendered(node) {
            (node, Ok(wf)) => (node, wf),
            (_, Err(why)) => return Want::Cannot(format!("its workflow cannot be used: {why}")),
        };
        let reference = base_image(&node, wf.as_ref(), &self.config.nfs.default_base_image);
        // The folder follows the version the node's next boot gets (a rollout's pin too).
        let image = match self
            .store
            .read(|tx| super::versions::resolve_image(tx, Some(&node.id), &reference))
        {
            Ok(r) => r.dir,
            Err(e) => return Want::Cannot(format!("its base image {reference}: {e}")),
        };
        match node.model.as_deref().map(|m| (m, Board::of_model(m))) {
            Some((_, Some(board))) => Want::Folder(board, image),
            Some((model, None)) => Want::Cannot(format!(
                "model {model} cannot boot a 64-bit kernel over the network (a Pi 3, 4 or 5 can)"
            )),
            None => Want::Cannot(
                "its model is not known: set it (`node add <serial> --model pi4`) so its \
                 folder holds that board's kernel and firmware; until then it boots from the \
                 discovery folder"
                    .into(),
            ),
        }
    }

    /// Writes (or removes) `node`'s folder as its next boot needs it, recording the change
    /// or the failure as an event. `None` without `[tftp] root`.
    pub fn follow_tftp(&self, node: &Node) -> Option<FolderResult> {
        let writer = self.tftp_writer()?;
        let _one = self.tftp_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut result = FolderResult {
            folder: node.serial.to_string(),
            image: None,
            boards: Vec::new(),
            outcome: "none",
            error: None,
        };
        let done: Result<&'static str, String> = match self.tftp_want(node) {
            Want::Nothing => match writer.remove_node(&node.serial) {
                Ok(true) => Ok("removed"),
                Ok(false) => Ok("none"),
                Err(e) => Err(e.to_string()),
            },
            Want::Cannot(why) => Err(why),
            Want::Folder(board, image) => {
                result.image = Some(image.clone());
                result.boards = vec![board.name()];
                let dir = self.tree.base_path().join(&image);
                match writer.node(&node.serial, board, &dir) {
                    Ok(Outcome::Written) => Ok("written"),
                    Ok(Outcome::Unchanged) => Ok("unchanged"),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        match done {
            Ok(outcome) => result.outcome = outcome,
            Err(why) => {
                log::warn!("node {}: TFTP folder not written: {why}", node.serial);
                result.outcome = "failed";
                result.error = Some(why);
            }
        }
        if !matches!(result.outcome, "unchanged" | "none") {
            self.record_tftp(node, &result);
        }
        Some(result)
    }

    fn record_tftp(&self, node: &Node, result: &FolderResult) {
        let detail = json!({
            "outcome": result.outcome,
            "image": result.image,
            "board": result.boards.first(),
            "error": result.error,
        });
        let recorded = self.store.write(|tx| {
            tx.append_event(&NewEvent {
                node_id: Some(&node.id),
                serial: node.serial.as_str(),
                kind: EventKind::TftpFolder,
                ip: None,
                detail,
            })
        });
        if let Err(e) = recorded {
            log::error!("node {}: recording its TFTP folder event: {e}", node.serial);
        }
    }

    /// The discovery folder: every board the base images can boot, from the default image
    /// when it boots them all, else from the image that boots the most.
    pub fn tftp_discovery(&self) -> Option<FolderResult> {
        let writer = self.tftp_writer()?;
        let _one = self.tftp_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut result = FolderResult {
            folder: "discovery".into(),
            image: None,
            boards: Vec::new(),
            outcome: "none",
            error: None,
        };
        let images = match self.base_images() {
            Ok(images) => images,
            Err(e) => {
                result.outcome = "failed";
                result.error = Some(e.to_string());
                return Some(result);
            }
        };
        let default = &self.config.nfs.default_base_image;
        let mut best: Option<(String, Vec<Board>)> = None;
        let mut all: Vec<Board> = Vec::new();
        // The default first, so it wins a tie.
        let ordered = images
            .iter()
            .filter(|n| *n == default)
            .chain(images.iter().filter(|n| *n != default));
        for name in ordered {
            let boards = bootable(&self.tree.base_path().join(name));
            all.extend(&boards);
            if boards.len() > best.as_ref().map_or(0, |(_, b)| b.len()) {
                best = Some((name.clone(), boards));
            }
        }
        all.sort();
        all.dedup();
        let Some((image, boards)) = best else {
            return Some(result);
        };
        if boards.len() < all.len() {
            log::warn!(
                "TFTP discovery folder from image {image} ({} boards): no one image boots \
                 every board the images can ({})",
                boards.len(),
                all.len()
            );
        }
        result.image = Some(image.clone());
        result.boards = boards.iter().map(|b| b.name()).collect();
        match writer.discovery(&boards, &self.tree.base_path().join(&image)) {
            Ok(Outcome::Written) => result.outcome = "written",
            Ok(Outcome::Unchanged) => result.outcome = "unchanged",
            Err(e) => {
                log::warn!("TFTP discovery folder not written: {e}");
                result.outcome = "failed";
                result.error = Some(e.to_string());
            }
        }
        Some(result)
    }

    /// `tftp sync`: every node's folder and the discovery folder (empty without `[tftp]
    /// root`).
    pub fn tftp_sync(&self) -> Result<Vec<FolderResult>, ServiceError> {
        if self.tftp_writer().is_none() {
            return Ok(Vec::new());
        }
        let mut results: Vec<FolderResult> = self.tftp_discovery().into_iter().collect();
        for node in self.list_nodes(&NodeFilter::default())? {
            results.extend(self.follow_tftp(&node));
        }
        Ok(results)
    }

    /// After a change that may concern many nodes (an image imported or removed, the
    /// workflows reloaded): failures are in the events and the log.
    pub(crate) fn tftp_sync_logged(&self) {
        if let Err(e) = self.tftp_sync() {
            log::warn!("TFTP folders not followed: {e}");
        }
    }

    /// Removes a removed node's folder.
    pub(crate) fn tftp_forget(&self, node: &Node) {
        let Some(writer) = self.tftp_writer() else {
            return;
        };
        let _one = self.tftp_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = writer.remove_node(&node.serial) {
            log::warn!("node {}: its TFTP folder not removed: {e}", node.serial);
        }
    }
}
