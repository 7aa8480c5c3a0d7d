//! A node's images at boot and after its report: the persist image and the volumes its
//! answer names (made on first need, their current generations named in the answer), the
//! volumes the report says were not mounted (the node flagged degraded), and their repair
//! (a broken image set aside and a fresh one made as the next generation).

use pureboot_contract::volumes::VolumePath;
use pureboot_contract::{InstalledReport, OverlayMode, PiBootResponse, Volume};
use serde_json::json;

use super::node_event::event;
use super::Services;
use crate::domain::boot::NodeTreePlan;
use crate::domain::node::Node;
use crate::domain::volumes::{self, PlannedVolume};
use crate::nfs_tree::error::NfsTreeError;
use crate::nfs_tree::images::ImageState;
use crate::nfs_tree::node::NodeInfo;
use crate::store::events::EventKind;
use crate::store::{StoreError, Tx};

/// The image files a prepared tree holds, as the answer names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeFiles {
    /// Overlay `image`: the current persist image's file name.
    pub persist_image: Option<String>,
    pub volumes: Vec<Volume>,
}

impl TreeFiles {
    /// Names the files in the answer (an `nfs_boot` one).
    pub fn apply(&self, r: &mut PiBootResponse) {
        r.persist_image = self.persist_image.clone();
        r.volumes = self.volumes.clone();
    }
}

/// What a report asks to be repaired once it is committed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repairs {
    /// The persist image (the `image` overlay fell back).
    pub persist: bool,
    /// Volumes that were not mounted.
    pub volumes: Vec<PlannedVolume>,
}

impl Repairs {
    pub fn is_empty(&self) -> bool {
        !self.persist && self.volumes.is_empty()
    }
}

/// A volume as `node show` lists it: declared (by the node or its workflow) and its
/// current image on the export, if made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VolumeView {
    pub path: VolumePath,
    pub size_mb: u64,
    /// `node`, `group <name>` or `workflow <id>`.
    pub from: crate::domain::effective::Source,
    /// Its current image's file name in `nodes/<serial>/volumes/` (none before its first
    /// boot or `overlay create`).
    pub image: Option<String>,
}

/// The image sizes a volume may have (MiB): the persist image's.
fn sizes() -> std::ops::RangeInclusive<u64> {
    crate::nfs_tree::persist::MIN_PERSIST_MB..=crate::nfs_tree::persist::MAX_PERSIST_MB
}

/// `node set --volume` / `--no-volume` (the API's `set_volumes`, `remove_volumes`) on a
/// node's own list: set per path, then removed; checked, alone and with its groups' and
/// workflow's (`wf`, as loaded). Errors name the field.
pub(super) fn update_own_volumes(
    node: &mut Node,
    set: &[volumes::VolumeSpec],
    remove: &[String],
    wf: Option<&crate::domain::workflow::Workflow>,
) -> Result<(), super::ServiceError> {
    let own = edited_volumes(&node.volumes, set, remove, &format!("node {}", node.serial))?;
    let with_own = Node {
        volumes: own,
        ..node.clone()
    };
    if let Some(why) = crate::domain::boot::effective(&with_own, wf, "-").volumes_error {
        return Err(super::ServiceError::Invalid(format!(
            "volumes: node {}: {why}",
            node.serial
        )));
    }
    node.volumes = with_own.volumes;
    Ok(())
}

/// A node's or group's own volume list (`owner` names it in errors) with `set` set per
/// path, then `remove` removed; checked.
pub(super) fn edited_volumes(
    list: &[volumes::VolumeSpec],
    set: &[volumes::VolumeSpec],
    remove: &[String],
    owner: &str,
) -> Result<Vec<volumes::VolumeSpec>, super::ServiceError> {
    let invalid = |(field, message): (String, String)| {
        super::ServiceError::Invalid(format!("{field}: {message}"))
    };
    let set_paths = volumes::check("set_volumes", set, sizes()).map_err(invalid)?;
    let mut own = list.to_vec();
    for (path, spec) in set_paths.iter().zip(set) {
        own.retain(|v| VolumePath::parse(&v.path).ok().as_ref() != Some(path));
        own.push(volumes::VolumeSpec {
            path: path.to_string(),
            size_mb: spec.size_mb,
        });
    }
    for (i, r) in remove.iter().enumerate() {
        let path = VolumePath::parse(r)
            .map_err(|e| invalid((format!("remove_volumes[{i}]"), e.to_string())))?;
        let before = own.len();
        own.retain(|v| VolumePath::parse(&v.path).ok().as_ref() != Some(&path));
        if own.len() == before {
            return Err(invalid((
                format!("remove_volumes[{i}]"),
                format!("{owner} has no volume {path} of its own"),
            )));
        }
    }
    volumes::check("volumes", &own, sizes()).map_err(invalid)?;
    Ok(own)
}

/// A degradation reason of ours about volumes starts so (cleared when they all mount).
const VOLUME_REASON: &str = "volume ";
/// A node's error text is kept this long in the degraded flag.
const REASON_CHARS: usize = 200;

impl Services {
    /// The persist image (overlay `image`) and every planned volume, each made on first
    /// need; their current file names. The caller holds the node's tree lock.
    pub(super) fn prepare_images(
        &self,
        tree: &crate::nfs_tree::NfsTree,
        node: &Node,
        plan: &NodeTreePlan,
    ) -> Result<TreeFiles, NfsTreeError> {
        let mut files = TreeFiles::default();
        if plan.overlay == OverlayMode::Image {
            let path = tree.create_persist_image(&node.serial, self.config.nfs.persist_size_mb)?;
            files.persist_image = path.file_name().map(|n| n.to_string_lossy().into_owned());
        }
        for v in &plan.volumes {
            let image = tree.create_volume_image(&node.serial, &v.path, v.size_mb)?;
            files.volumes.push(Volume {
                path: v.path.to_string(),
                image,
            });
        }
        Ok(files)
    }

    /// The node's volumes as its next boot gets them (its own, its groups' and its
    /// workflow's).
    fn planned_volumes(&self, node: &Node) -> Vec<PlannedVolume> {
        let wf = self.loaded_workflow(node);
        crate::domain::boot::effective(node, wf.as_ref(), "-").volumes
    }

    /// The node's volumes with their current images (`node show`).
    pub(super) fn volume_views(&self, node: &Node, tree: Option<&NodeInfo>) -> Vec<VolumeView> {
        let on_disk = tree.map_or(&[][..], |t| &t.volumes[..]);
        self.planned_volumes(node)
            .into_iter()
            .map(|p| VolumeView {
                image: on_disk
                    .iter()
                    .find(|v| v.path == p.path)
                    .map(|v| v.image.clone()),
                path: p.path,
                size_mb: p.size_mb,
                from: p.from,
            })
            .collect()
    }

    /// The volumes as the report tells them: any not mounted flags the node degraded
    /// (added to what `image_flagged`, the overlay's own flag of this report, says) and is
    /// returned for repair; a report with every volume mounted clears a flag of ours.
    pub(super) fn note_volumes(
        &self,
        tx: &Tx<'_>,
        node: &mut Node,
        report: &InstalledReport,
        ip: Option<&str>,
        image_flagged: bool,
    ) -> Result<Vec<PlannedVolume>, StoreError> {
        let failed: Vec<_> = report.volumes.iter().filter(|v| !v.mounted).collect();
        if failed.is_empty() {
            let ours = node
                .degraded
                .as_deref()
                .is_some_and(|d| d.starts_with(VOLUME_REASON));
            if !image_flagged && ours && !report.volumes.is_empty() {
                let was = node.degraded.take();
                log::info!("node {}: its volumes mount again", node.serial);
                tx.append_event(&event(
                    node,
                    EventKind::Degraded,
                    ip,
                    json!({"degraded": false, "volumes": "mounted", "was": was}),
                ))?;
            }
            return Ok(Vec::new());
        }
        let text: Vec<String> = failed
            .iter()
            .map(|v| {
                let why: String = v
                    .error
                    .as_deref()
                    .unwrap_or("no reason given")
                    .chars()
                    .take(REASON_CHARS)
                    .collect();
                format!("{VOLUME_REASON}{} not mounted: {why}", v.path)
            })
            .collect();
        let reason = crate::text::escape_controls(&text.join("; "));
        log::warn!("node {} degraded: {reason}", node.serial);
        tx.append_event(&event(
            node,
            EventKind::Degraded,
            ip,
            json!({"degraded": true, "volumes": failed, "reason": reason}),
        ))?;
        node.degraded = Some(match node.degraded.take().filter(|_| image_flagged) {
            Some(image) => format!("{image}; {reason}"),
            None => reason,
        });
        let planned = self.planned_volumes(node);
        Ok(planned
            .into_iter()
            .filter(|p| failed.iter().any(|f| f.path == p.path.as_str()))
            .collect())
    }

    /// After a degraded report: the persist image's repair ([`Services::repair_persist_image`])
    /// and each volume's: a broken one is set aside (never deleted) and a fresh one made as
    /// the next generation, which the next answer names; one that looks intact (an ext4
    /// superblock: the fault may be the node's root, a mount point) is left for the
    /// operator. Failures are logged and recorded; the node stays flagged either way.
    pub fn repair_images(&self, node: &Node, repairs: &Repairs) {
        if repairs.persist {
            self.repair_persist_image(node);
        }
        for v in &repairs.volumes {
            self.repair_volume(node, v);
        }
    }

    fn repair_volume(&self, node: &Node, v: &PlannedVolume) {
        let serial = &node.serial;
        let path: &VolumePath = &v.path;
        let tree = match self.node_tree(node) {
            Ok(t) => t,
            Err(e) => return log::error!("node {serial}: its server's tree: {e}"),
        };
        let _guard = self.tree_lock(serial);
        let detail = match tree.volume_image_state(serial, path) {
            Ok(ImageState::Ext4) => {
                log::warn!(
                    "node {serial}: its volume {path} has an ext4 superblock but the node could \
                     not mount it; left in place"
                );
                json!({"action": "left in place", "volume": path, "image": "ext4"})
            }
            Ok(state) => match tree.set_aside_volume_image(serial, path, v.size_mb) {
                Ok((moved, fresh)) => {
                    let moved = moved
                        .as_ref()
                        .and_then(|p| p.file_name())
                        .map(|n| n.to_string_lossy().into_owned());
                    log::warn!(
                        "node {serial}: volume {path} was {state:?}; set aside as {} and {fresh} made",
                        moved.as_deref().unwrap_or("-")
                    );
                    json!({"action": "fresh image", "volume": path, "was": state,
                           "moved_to": moved, "image": fresh})
                }
                Err(e) => {
                    log::error!("node {serial}: repairing volume {path}: {e}");
                    json!({"action": "repair failed", "volume": path, "was": state})
                }
            },
            Err(e) => {
                log::error!("node {serial}: checking volume {path}: {e}");
                json!({"action": "check failed", "volume": path})
            }
        };
        let logged = self
            .store
            .write(|tx| tx.append_event(&event(node, EventKind::Degraded, None, detail)));
        if let Err(e) = logged {
            log::error!("node {serial}: recording the repair of volume {path}: {e}");
        }
    }
}
