//! Operator actions on groups and their rules, the rules at a node's first contact, and a
//! node's effective settings with their sources (`node show --effective`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ServiceError, Services};
use crate::domain::effective::{workflow_of, Effective};
use crate::domain::group::{self, Group};
use crate::domain::group_rule::{self, GroupRule};
use crate::domain::ids::NodeRef;
use crate::domain::state::NodeState;
use crate::domain::volumes::VolumeSpec;
use crate::store::events::{EventKind, NewEvent};
use crate::store::nodes::NewNode;
use crate::store::Tx;
use pureboot_contract::ids::{Mac, Serial};
use pureboot_contract::OverlayMode;

/// `group add` / `group set` / `POST|PATCH /api/v1/groups[/{name}]`: absent = unchanged,
/// `null` = cleared.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupUpdate {
    #[serde(default, with = "super::nodes::double_option")]
    pub parent: Option<Option<String>>,
    #[serde(default, with = "super::nodes::double_option")]
    pub workflow_id: Option<Option<String>>,
    #[serde(default, with = "super::nodes::double_option")]
    pub base_image: Option<Option<String>>,
    #[serde(default, with = "super::nodes::double_option")]
    pub overlay_mode: Option<Option<OverlayMode>>,
    /// A template, rendered per node like a workflow's `hostname`.
    #[serde(default, with = "super::nodes::double_option")]
    pub hostname: Option<Option<String>>,
    #[serde(default)]
    pub set_volumes: Vec<VolumeSpec>,
    #[serde(default)]
    pub remove_volumes: Vec<String>,
    /// Templates, set per key.
    #[serde(default)]
    pub set_variables: BTreeMap<String, String>,
    #[serde(default)]
    pub remove_variables: Vec<String>,
}

/// A group as `group list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupSummary {
    #[serde(flatten)]
    pub group: Group,
    pub members: usize,
}

/// `group show`: the group, its chain (root first), children, members and rules.
#[derive(Debug, Clone, Serialize)]
pub struct GroupDetail {
    #[serde(flatten)]
    pub group: Group,
    pub chain: Vec<String>,
    pub children: Vec<String>,
    pub members: Vec<String>,
    pub rules: Vec<GroupRule>,
}

/// `node show --effective` / `GET /api/v1/nodes/{id}/effective`.
#[derive(Debug, Clone, Serialize)]
pub struct EffectiveView {
    pub serial: Serial,
    pub group: Option<String>,
    /// The node's group chain, root first.
    pub chain: Vec<String>,
    #[serde(flatten)]
    pub effective: Effective,
    /// With a pool of NFS servers: the server it is pinned to and by whom (none: placed by
    /// weight), and the one it lives on now (service/pool.rs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nfs_server: Option<crate::domain::effective::Sourced<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nfs_home: Option<String>,
    /// Why the node's templates (its groups', its workflow's) do not render: its boots
    /// wait with this reason. The values above are then the stored, unrendered ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where a rule put a node at its first contact.
#[derive(Debug, Clone)]
pub struct Placed {
    pub group: Option<String>,
    /// The matching rule's priority.
    pub rule: Option<i64>,
    /// `pending` when the group's chain names a workflow (the node boots it at once),
    /// else `discovered`.
    pub state: NodeState,
}

impl Default for Placed {
    /// No rule matched: in no group, discovered.
    fn default() -> Placed {
        Placed {
            group: None,
            rule: None,
            state: NodeState::Discovered,
        }
    }
}

impl Placed {
    /// A new node in this group and state.
    pub fn new_node(&self, serial: Serial) -> NewNode {
        NewNode {
            group: self.group.clone(),
            state: Some(self.state),
            ..NewNode::new(serial)
        }
    }
}

fn admin_event(serial: &str, detail: serde_json::Value) -> NewEvent<'_> {
    NewEvent {
        node_id: None,
        serial,
        kind: EventKind::Admin,
        ip: None,
        detail,
    }
}

/// Names, at most 20 shown, for refusals.
fn shown(names: &[String]) -> String {
    match names.len() {
        0..=20 => names.join(", "),
        n => format!("{} and {} more", names[..20].join(", "), n - 20),
    }
}

impl Services {
    /// The group a rule places a node in at its first contact (serial, MAC, model as it
    /// sent them), and the state it starts in there.
    pub(super) fn placed_by_rule(
        &self,
        tx: &Tx<'_>,
        serial: &Serial,
        mac: Option<&Mac>,
        model: Option<&str>,
    ) -> Result<Placed, ServiceError> {
        let rules = tx.group_rules()?;
        let Some(rule) = group_rule::first_match(&rules, serial, mac, model) else {
            return Ok(Placed::default());
        };
        let chain = group::chain(&rule.group, &tx.all_groups()?).map_err(ServiceError::Invalid)?;
        let gives_workflow = chain.iter().any(|g| g.workflow_id.is_some());
        Ok(Placed {
            group: Some(rule.group.clone()),
            rule: Some(rule.priority),
            state: if gives_workflow {
                NodeState::Pending
            } else {
                NodeState::Discovered
            },
        })
    }

    pub fn list_groups(&self) -> Result<Vec<GroupSummary>, ServiceError> {
        Ok(self.store.read(|tx| {
            tx.all_groups()?
                .into_values()
                .map(|g| {
                    let members = tx.group_members(&g.name)?.len();
                    Ok(GroupSummary { group: g, members })
                })
                .collect::<Result<Vec<_>, crate::store::StoreError>>()
        })?)
    }

    pub fn show_group(&self, name: &str) -> Result<GroupDetail, ServiceError> {
        self.store.read(|tx| {
            let all = tx.all_groups()?;
            let g = all
                .get(name)
                .cloned()
                .ok_or_else(|| ServiceError::NotFound(format!("no group {name}")))?;
            let chain = group::chain(name, &all)
                .map_err(ServiceError::Invalid)?
                .into_iter()
                .map(|g| g.name)
                .collect();
            Ok(GroupDetail {
                children: children(&all, name),
                members: tx.group_members(name)?,
                rules: tx
                    .group_rules()?
                    .into_iter()
                    .filter(|r| r.group == name)
                    .collect(),
                group: g,
                chain,
            })
        })
    }

    /// `group add` (`create`) or `group set`: the update applied, checked, stored.
    pub fn save_group(
        &self,
        name: &str,
        upd: &GroupUpdate,
        create: bool,
    ) -> Result<Group, ServiceError> {
        group::check_name(name).map_err(ServiceError::Invalid)?;
        if let Some(Some(wf)) = &upd.workflow_id {
            self.workflow_exists(wf)?;
        }
        if let Some(Some(b)) = &upd.base_image {
            // A channel to follow or a version (`<channel>@<n>`) to pin (domain/versions.rs).
            crate::domain::versions::ImageRef::parse(b).map_err(ServiceError::Invalid)?;
        }
        if let Some(Some(h)) = &upd.hostname {
            self.templates
                .check_str(h)
                .map_err(|e| ServiceError::Invalid(format!("hostname: {e}")))?;
        }
        for (k, v) in &upd.set_variables {
            if !crate::workflows::is_variable_name(k) {
                return Err(ServiceError::Invalid(format!(
                    "variables.{}: not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)",
                    crate::text::escape_controls(k)
                )));
            }
            self.templates
                .check_str(v)
                .map_err(|e| ServiceError::Invalid(format!("variables.{k}: {e}")))?;
        }
        let saved = self.store.write(|tx| {
            let all = tx.all_groups()?;
            let mut g = match (all.get(name), create) {
                (Some(_), true) => {
                    return Err(ServiceError::Conflict(format!(
                        "group {name} already exists (group set changes it)"
                    )))
                }
                (None, false) => return Err(ServiceError::NotFound(format!("no group {name}"))),
                (Some(g), false) => g.clone(),
                (None, true) => Group {
                    name: name.into(),
                    ..Group::default()
                },
            };
            if let Some(p) = &upd.parent {
                if let Some(p) = p {
                    if !all.contains_key(p) {
                        return Err(ServiceError::Invalid(format!(
                            "no group {p} to be the parent"
                        )));
                    }
                    if let Some(why) = group::parent_refusal(name, p, &all) {
                        return Err(ServiceError::Conflict(why));
                    }
                }
                g.parent = p.clone();
            }
            if let Some(w) = &upd.workflow_id {
                g.workflow_id = w.clone();
            }
            if let Some(b) = &upd.base_image {
                g.base_image = b.clone();
            }
            if let Some(o) = upd.overlay_mode {
                g.overlay_mode = o;
            }
            if let Some(h) = &upd.hostname {
                g.hostname = h.clone();
            }
            g.volumes = super::volumes::edited_volumes(
                &g.volumes,
                &upd.set_volumes,
                &upd.remove_volumes,
                &format!("group {name}"),
            )?;
            for (k, v) in &upd.set_variables {
                g.variables.insert(k.clone(), v.clone());
            }
            for k in &upd.remove_variables {
                if g.variables.remove(k).is_none() {
                    return Err(ServiceError::Invalid(format!(
                        "remove_variables: group {name} has no variable {k:?}"
                    )));
                }
            }
            tx.save_group(&g)?;
            tx.append_event(&admin_event(
                "-",
                json!({"action": if create { "group add" } else { "group set" }, "group": g}),
            ))?;
            Ok(g)
        })?;
        // Members' images may have changed: the folders follow.
        if !create {
            self.tftp_sync_logged();
        }
        Ok(saved)
    }

    /// Removes a group nobody refers to: refused naming its members, its subgroups and
    /// the rules that place nodes in it.
    pub fn remove_group(&self, name: &str) -> Result<(), ServiceError> {
        self.store.write(|tx| {
            let all = tx.all_groups()?;
            if !all.contains_key(name) {
                return Err(ServiceError::NotFound(format!("no group {name}")));
            }
            let mut why = Vec::new();
            let members = tx.group_members(name)?;
            if !members.is_empty() {
                why.push(format!(
                    "its members {} (node set <serial> --no-group)",
                    shown(&members)
                ));
            }
            let kids = children(&all, name);
            if !kids.is_empty() {
                why.push(format!(
                    "its subgroups {} (group set <name> --parent none)",
                    shown(&kids)
                ));
            }
            let rules: Vec<String> = tx
                .group_rules()?
                .into_iter()
                .filter(|r| r.group == name)
                .map(|r| r.priority.to_string())
                .collect();
            if !rules.is_empty() {
                why.push(format!(
                    "the rules of priority {} (group rule rm)",
                    shown(&rules)
                ));
            }
            if !why.is_empty() {
                return Err(ServiceError::Conflict(format!(
                    "group {name} is in use: {}",
                    why.join("; ")
                )));
            }
            tx.delete_group(name)?;
            tx.append_event(&admin_event(
                "-",
                json!({"action": "group rm", "group": name}),
            ))?;
            Ok(())
        })
    }

    pub fn list_group_rules(&self) -> Result<Vec<GroupRule>, ServiceError> {
        Ok(self.store.read(|tx| tx.group_rules())?)
    }

    pub fn add_group_rule(&self, rule: GroupRule) -> Result<GroupRule, ServiceError> {
        let rule = rule.checked().map_err(ServiceError::Invalid)?;
        self.store.write(|tx| {
            if tx.find_group(&rule.group)?.is_none() {
                return Err(ServiceError::Invalid(format!("no group {}", rule.group)));
            }
            if !tx.insert_group_rule(&rule)? {
                return Err(ServiceError::Conflict(format!(
                    "a rule of priority {} exists (priorities are unique: first match wins)",
                    rule.priority
                )));
            }
            tx.append_event(&admin_event(
                "-",
                json!({"action": "group rule add", "rule": rule}),
            ))?;
            Ok(rule)
        })
    }

    pub fn remove_group_rule(&self, priority: i64) -> Result<(), ServiceError> {
        self.store.write(|tx| {
            if !tx.delete_group_rule(priority)? {
                return Err(ServiceError::NotFound(format!(
                    "no rule of priority {priority}"
                )));
            }
            tx.append_event(&admin_event(
                "-",
                json!({"action": "group rule rm", "priority": priority}),
            ))?;
            Ok(())
        })
    }

    /// The node's effective settings, each with its source, as its next boot gets them.
    pub fn node_effective(&self, node_ref: &NodeRef) -> Result<EffectiveView, ServiceError> {
        let node = self.store.read(|tx| self.find(tx, node_ref))?;
        let (rendered, wf) = self.rendered(&node);
        let (wf, error) = match wf {
            Ok(wf) => (wf, None),
            Err(why) => (self.loaded_workflow(&node), Some(why)),
        };
        let effective = crate::domain::boot::effective(
            &rendered,
            wf.as_ref(),
            &self.config.nfs.default_base_image,
        );
        let (nfs_server, nfs_home) = self.nfs_pin_of(&rendered, wf.as_ref())?;
        Ok(EffectiveView {
            serial: node.serial.clone(),
            group: node.group.clone(),
            chain: node.groups.iter().map(|g| g.name.clone()).collect(),
            effective,
            nfs_server,
            nfs_home,
            error,
        })
    }

    /// `node set --group` / `--no-group` inside the update's transaction: the group must
    /// exist; a node waiting for a workflow that its new group gives becomes `pending`.
    pub(super) fn join_group(
        &self,
        tx: &Tx<'_>,
        node: &mut crate::domain::node::Node,
        group: Option<&str>,
    ) -> Result<(), ServiceError> {
        node.groups = match group {
            None => Vec::new(),
            Some(g) => {
                let all = tx.all_groups()?;
                if !all.contains_key(g) {
                    return Err(ServiceError::Invalid(format!(
                        "no group {g} (see `group list`)"
                    )));
                }
                group::chain(g, &all).map_err(ServiceError::Invalid)?
            }
        };
        node.group = group.map(Into::into);
        let waiting = matches!(node.state, NodeState::Discovered | NodeState::Reprovision);
        if waiting && workflow_of(node, &node.groups).is_some() {
            node.state = node.state.transition(NodeState::Pending)?;
        }
        Ok(())
    }
}

/// The groups whose parent is `name`.
fn children(all: &BTreeMap<String, Group>, name: &str) -> Vec<String> {
    all.values()
        .filter(|g| g.parent.as_deref() == Some(name))
        .map(|g| g.name.clone())
        .collect()
}
