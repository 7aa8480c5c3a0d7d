//! Operator actions on nodes (HTTP management API and CLI alike).

use pureboot_contract::ids::FullSerial;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::volumes::{update_own_volumes, VolumeView};
use super::{ServiceError, Services};
use crate::domain::ids::NodeRef;
use crate::domain::node::{full_serial_of_claim, Node};
use crate::domain::state::NodeState;
use crate::domain::volumes::VolumeSpec;
use crate::nfs_tree::node::NodeInfo;
use crate::store::events::{Event, EventKind, NewEvent};
use crate::store::nodes::{NewNode, NodeFilter};
use crate::store::Tx;
use pureboot_contract::ids::{Hostname, Mac, Serial};
use pureboot_contract::OverlayMode;

/// `node add` / `POST /api/v1/nodes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub serial: String,
    #[serde(default)]
    pub workflow_id: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub overlay_mode: Option<OverlayMode>,
    #[serde(default)]
    pub base_image: Option<String>,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub full_serial: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
}

/// `PATCH /api/v1/nodes/{id}`: absent = unchanged, `null` = cleared (where clearable).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeUpdate {
    #[serde(default, with = "double_option")]
    pub hostname: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    pub overlay_mode: Option<Option<OverlayMode>>,
    #[serde(default, with = "double_option")]
    pub base_image: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    pub workflow_id: Option<Option<String>>,
    #[serde(default)]
    pub state: Option<String>,
    /// Clears the duplicate-serial flag once an operator has looked at it.
    #[serde(default)]
    pub clear_conflict: bool,
    /// The node's MAC, confirmed by the operator: boots must then carry it, and only then
    /// may a boot be handed a deployment. `null` forgets the MAC (the next boot's is
    /// learned again, unconfirmed). Either way the node's recorded address is forgotten.
    #[serde(default, with = "double_option")]
    pub mac: Option<Option<String>>,
    /// Volumes of the node's own to add, or to resize where it declares the path already
    /// (an image made is never resized: it keeps its size until set aside).
    #[serde(default)]
    pub set_volumes: Vec<VolumeSpec>,
    /// Paths of volumes of its own to drop (their images stay on the export).
    #[serde(default)]
    pub remove_volumes: Vec<String>,
    /// The group it belongs to; `null`: none. A node waiting for a workflow that its new
    /// group gives becomes `pending`.
    #[serde(default, with = "double_option")]
    pub group: Option<Option<String>>,
}

pub(super) mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeDetail {
    #[serde(flatten)]
    pub node: Node,
    /// Most recent events, oldest first.
    pub events: Vec<Event>,
    /// The node's directory on the NFS export, if it has one.
    pub tree: Option<NodeInfo>,
    /// Its post-boot steps, their last runs and its last boot's stages.
    pub after_boot: Option<super::after_boot::NodeSteps>,
    /// Its volumes (its own and its workflow's) with their current images.
    pub volumes: Vec<VolumeView>,
}

pub const RECENT_EVENTS: u32 = 50;

fn checked_hostname(h: Option<&str>) -> Result<Option<Hostname>, ServiceError> {
    Ok(h.map(Hostname::parse).transpose()?)
}

fn checked_image(name: Option<&str>) -> Result<Option<String>, ServiceError> {
    // A channel to follow or a version (`<channel>@<n>`) to pin.
    name.map(|n| {
        crate::domain::versions::ImageRef::parse(n)
            .map(|_| n.to_string())
            .map_err(ServiceError::Invalid)
    })
    .transpose()
}

fn admin_event<'a>(node: &'a Node, detail: serde_json::Value) -> NewEvent<'a> {
    NewEvent {
        node_id: Some(&node.id),
        serial: node.serial.as_str(),
        kind: EventKind::Admin,
        ip: None,
        detail,
    }
}

impl Services {
    pub fn list_nodes(&self, filter: &NodeFilter) -> Result<Vec<Node>, ServiceError> {
        Ok(self.store.read(|tx| tx.list_nodes(filter))?)
    }

    pub fn node_detail(&self, node_ref: &NodeRef, events: u32) -> Result<NodeDetail, ServiceError> {
        let (node, events) = self.store.read(|tx| {
            let node = self.find(tx, node_ref)?;
            let events = tx.events_for_serial(node.serial.as_str(), events)?;
            Ok::<_, ServiceError>((node, events))
        })?;
        let tree = self.node_tree(&node)?.node_info(&node.serial)?;
        let after_boot = Some(self.node_steps(&NodeRef::Id(node.id.clone()))?);
        let volumes = self.volume_views(&node, tree.as_ref());
        Ok(NodeDetail {
            node,
            events,
            tree,
            after_boot,
            volumes,
        })
    }

    /// Registers a node, or adopts one that is only `discovered` (the operator's fields
    /// win; MAC and full serial already seen are kept).
    pub fn add_node(&self, spec: &NodeSpec) -> Result<Node, ServiceError> {
        let serial = Serial::parse(&spec.serial)?;
        let mac = spec.mac.as_deref().map(Mac::parse).transpose()?;
        let full_serial = spec
            .full_serial
            .as_deref()
            .map(|f| FullSerial::claimed_for(f, &serial))
            .transpose()?
            .flatten();
        let hostname = checked_hostname(spec.hostname.as_deref())?;
        let base_image = checked_image(spec.base_image.as_deref())?;
        if let Some(wf) = &spec.workflow_id {
            self.workflow_exists(wf)?;
        }
        let state = if spec.workflow_id.is_some() {
            NodeState::Pending
        } else {
            NodeState::Discovered
        };
        let node = self.store.write(|tx| {
            if let Some(mut existing) = tx.find_node(&NodeRef::Serial(serial.clone()))? {
                // A node that only announced itself is adopted with the operator's settings;
                // anything further along is already managed.
                if existing.state != NodeState::Discovered {
                    return Err(ServiceError::Conflict(format!(
                        "node {} already registered (state {}); use assign or update",
                        existing.serial, existing.state
                    )));
                }
                let from = existing.state;
                existing.state = if state == from { from } else { from.transition(state)? };
                existing.hostname = hostname.or(existing.hostname);
                existing.base_image = base_image.or(existing.base_image);
                existing.overlay_mode = spec.overlay_mode.or(existing.overlay_mode);
                existing.workflow_id = spec.workflow_id.clone().or(existing.workflow_id);
                existing.model = spec.model.clone().or(existing.model);
                // The operator's MAC wins over one a boot announced, and is confirmed.
                if let Some(mac) = &mac {
                    existing.mac = Some(mac.clone());
                    existing.mac_confirmed = true;
                }
                existing.full_serial = existing.full_serial.or(full_serial.as_ref().and_then(|f| full_serial_of_claim(f.as_str())));
                tx.append_event(&admin_event(
                    &existing,
                    json!({"action": "adopt", "workflow_id": existing.workflow_id, "from": from, "to": existing.state}),
                ))?;
                return Ok(tx.save_node(&existing)?);
            }
            let node = tx.insert_node(&NewNode {
                full_serial: full_serial.as_ref().and_then(|f| full_serial_of_claim(f.as_str())),
                mac_confirmed: mac.is_some(),
                mac,
                model: spec.model.clone(),
                hostname,
                workflow_id: spec.workflow_id.clone(),
                overlay_mode: spec.overlay_mode,
                base_image,
                state: Some(state),
                ..NewNode::new(serial.clone())
            })?;
            tx.append_event(&admin_event(
                &node,
                json!({"action": "add", "workflow_id": node.workflow_id, "state": node.state}),
            ))?;
            Ok(node)
        })?;
        self.prepare_tree_ahead(&node);
        self.follow_tftp(&node);
        Ok(node)
    }

    /// Assigns a workflow; a node waiting for one (discovered, reprovision, install_failed)
    /// becomes `pending`. A running diskless node keeps its state and picks the workflow
    /// up at its next boot.
    pub fn assign(&self, node_ref: &NodeRef, workflow_id: &str) -> Result<Node, ServiceError> {
        self.workflow_exists(workflow_id)?;
        let node = self.store.write(|tx| {
            let mut node = self.find(tx, node_ref)?;
            let from = node.state;
            if matches!(from, NodeState::Discovered | NodeState::Reprovision | NodeState::InstallFailed | NodeState::Retired) {
                node.state = from.transition(NodeState::Pending)?;
            }
            node.workflow_id = Some(workflow_id.into());
            tx.append_event(&admin_event(&node, json!({"action": "assign", "workflow_id": workflow_id, "from": from, "to": node.state})))?;
            Ok::<_, ServiceError>(tx.save_node(&node)?)
        })?;
        self.prepare_tree_ahead(&node);
        self.follow_tftp(&node);
        Ok(node)
    }

    pub fn update_node(&self, node_ref: &NodeRef, upd: &NodeUpdate) -> Result<Node, ServiceError> {
        let hostname = upd
            .hostname
            .as_ref()
            .map(|h| checked_hostname(h.as_deref()))
            .transpose()?;
        let base_image = upd
            .base_image
            .as_ref()
            .map(|b| checked_image(b.as_deref()))
            .transpose()?;
        if let Some(Some(wf)) = &upd.workflow_id {
            self.workflow_exists(wf)?;
        }
        let mac = upd
            .mac
            .as_ref()
            .map(|m| m.as_deref().map(Mac::parse).transpose())
            .transpose()?;
        let state = upd
            .state
            .as_deref()
            .map(|s| {
                NodeState::parse(s)
                    .ok_or_else(|| ServiceError::Invalid(format!("unknown state {s:?}")))
            })
            .transpose()?;
        let volumes_change = !upd.set_volumes.is_empty() || !upd.remove_volumes.is_empty();
        let node = self.store.write(|tx| {
            let mut node = self.find(tx, node_ref)?;
            let before = node.clone();
            if volumes_change {
                let wf = self.loaded_workflow(&node);
                update_own_volumes(
                    &mut node,
                    &upd.set_volumes,
                    &upd.remove_volumes,
                    wf.as_ref(),
                )?;
            }
            if let Some(h) = hostname {
                node.hostname = h;
            }
            if let Some(b) = base_image {
                node.base_image = b;
            }
            if let Some(o) = upd.overlay_mode {
                node.overlay_mode = o;
            }
            if let Some(w) = &upd.workflow_id {
                node.workflow_id = w.clone();
            }
            if let Some(g) = &upd.group {
                self.join_group(tx, &mut node, g.as_deref())?;
            }
            if upd.clear_conflict {
                node.conflict = None;
            }
            if let Some(mac) = mac {
                node.mac_confirmed = mac.is_some();
                node.mac = mac;
                // A confirmed identity starts over: with `pin_boot_address` the next boot
                // carrying it pins its address anew (a Pi that moved is let back in).
                node.last_ip = None;
            }
            if let Some(to) = state.filter(|s| *s != node.state) {
                node.state = node.state.transition(to)?;
            }
            tx.append_event(&admin_event(
                &node,
                json!({"action": "update", "before": before, "after": node}),
            ))?;
            Ok::<_, ServiceError>(tx.save_node(&node)?)
        })?;
        if volumes_change {
            // The images are made now, so a mistake in the export shows at once.
            self.prepare_tree_ahead(&node);
        }
        // Its image may have changed (base image, workflow): the folder follows.
        self.follow_tftp(&node);
        Ok(node)
    }

    /// Removes the node from the registry (its event history stays) and, unless
    /// `keep_tree`, its directory on the export.
    pub fn remove_node(
        &self,
        node_ref: &NodeRef,
        keep_tree: bool,
    ) -> Result<(Node, bool), ServiceError> {
        let node = self.store.write(|tx: &Tx<'_>| {
            let node = self.find(tx, node_ref)?;
            tx.append_event(&admin_event(
                &node,
                json!({"action": "remove", "keep_tree": keep_tree}),
            ))?;
            tx.delete_node(&node.id)?;
            Ok::<_, ServiceError>(node)
        })?;
        let tree_removed = if keep_tree {
            false
        } else {
            let _guard = self.tree_lock(&node.serial);
            self.node_tree(&node)?.delete_node_overlay(&node.serial)?
        };
        self.tftp_forget(&node);
        Ok((node, tree_removed))
    }
}
