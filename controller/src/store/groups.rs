//! The `groups` and `group_rules` tables, and each node's group chain read with it.

use std::collections::BTreeMap;

use super::db::{params, OptionalExtension, Row};
use pureboot_contract::OverlayMode;

use super::{sql, StoreError, Tx, NOW};
use crate::domain::group::{self, Group};
use crate::domain::group_rule::GroupRule;
use crate::domain::node::Node;

const COLUMNS: &str =
    "name, parent, workflow_id, base_image, overlay_mode, hostname, volumes, variables";

fn json_column<T: serde::de::DeserializeOwned + Default>(
    what: &'static str,
    value: Option<String>,
) -> Result<T, StoreError> {
    match value {
        None => Ok(T::default()),
        Some(v) => serde_json::from_str(&v).map_err(|_| StoreError::Corrupt { what, value: v }),
    }
}

type GroupRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn from_row(r: &Row<'_>) -> super::db::Result<GroupRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn typed(r: GroupRow) -> Result<Group, StoreError> {
    let (name, parent, workflow_id, base_image, overlay, hostname, volumes, variables) = r;
    Ok(Group {
        overlay_mode: overlay
            .map(|o| {
                o.parse::<OverlayMode>().map_err(|_| StoreError::Corrupt {
                    what: "group overlay mode",
                    value: o,
                })
            })
            .transpose()?,
        volumes: json_column("group volumes", volumes)?,
        variables: json_column("group variables", variables)?,
        name,
        parent,
        workflow_id,
        base_image,
        hostname,
    })
}

/// A JSON column's text; NULL for an empty list or map.
fn json_or_null<T: serde::Serialize>(v: &T, empty: bool) -> Option<String> {
    (!empty).then(|| serde_json::to_string(v).expect("group fields serialise"))
}

/// `node` with its group chain, from every group by name (a chain that cannot be built,
/// which the writes never leave, is reported as a corrupt registry).
pub(super) fn attach_chain(
    mut node: Node,
    all: &BTreeMap<String, Group>,
) -> Result<Node, StoreError> {
    node.groups = match &node.group {
        None => Vec::new(),
        Some(name) => group::chain(name, all).map_err(|why| StoreError::Corrupt {
            what: "group chain",
            value: why,
        })?,
    };
    Ok(node)
}

impl Tx<'_> {
    /// Every group, by name.
    pub fn all_groups(&self) -> Result<BTreeMap<String, Group>, StoreError> {
        let mut st = self
            .tx
            .prepare_cached(&format!("SELECT {COLUMNS} FROM groups ORDER BY name"))
            .map_err(sql("list groups"))?;
        let rows = st.query_map([], from_row).map_err(sql("list groups"))?;
        rows.map(|r| {
            let g = typed(r.map_err(sql("list groups"))?)?;
            Ok((g.name.clone(), g))
        })
        .collect()
    }

    pub fn find_group(&self, name: &str) -> Result<Option<Group>, StoreError> {
        let row = self
            .tx
            .prepare_cached(&format!("SELECT {COLUMNS} FROM groups WHERE name = ?1"))
            .and_then(|mut st| st.query_row([name], from_row).optional())
            .map_err(sql("find group"))?;
        row.map(typed).transpose()
    }

    /// `node` with its group chain (root first), read one parent at a time.
    pub(super) fn with_groups(&self, node: Node) -> Result<Node, StoreError> {
        let Some(name) = node.group.clone() else {
            return Ok(node);
        };
        let mut found = BTreeMap::new();
        let mut next = Some(name);
        while let Some(n) = next.take() {
            if found.contains_key(&n) || found.len() > group::MAX_DEPTH {
                break;
            }
            if let Some(g) = self.find_group(&n)? {
                next = g.parent.clone();
                found.insert(n, g);
            }
        }
        attach_chain(node, &found)
    }

    /// Inserts or replaces `g` (its name is the key).
    pub fn save_group(&self, g: &Group) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO groups ({COLUMNS}, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, {NOW}, {NOW})
                 ON CONFLICT (name) DO UPDATE SET parent = excluded.parent,
                   workflow_id = excluded.workflow_id, base_image = excluded.base_image,
                   overlay_mode = excluded.overlay_mode, hostname = excluded.hostname,
                   volumes = excluded.volumes, variables = excluded.variables,
                   updated_at = excluded.updated_at"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    g.name,
                    g.parent,
                    g.workflow_id,
                    g.base_image,
                    g.overlay_mode.map(|m| m.as_str()),
                    g.hostname,
                    json_or_null(&g.volumes, g.volumes.is_empty()),
                    json_or_null(&g.variables, g.variables.is_empty()),
                ])
            })
            .map_err(sql("save group"))?;
        Ok(())
    }

    pub fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .tx
            .execute("DELETE FROM groups WHERE name = ?1", [name])
            .map_err(sql("delete group"))?;
        Ok(n > 0)
    }

    /// The serials of the group's members (not its subgroups'), in order.
    pub fn group_members(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let mut st = self
            .tx
            .prepare_cached("SELECT serial FROM nodes WHERE group_name = ?1 ORDER BY serial")
            .map_err(sql("list group members"))?;
        let rows = st
            .query_map([name], |r| r.get(0))
            .map_err(sql("list group members"))?;
        rows.map(|r| r.map_err(sql("list group members"))).collect()
    }

    /// Every rule, lowest priority first.
    pub fn group_rules(&self) -> Result<Vec<GroupRule>, StoreError> {
        let mut st = self
            .tx
            .prepare_cached(
                "SELECT priority, group_name, serial, mac, model FROM group_rules
                 ORDER BY priority",
            )
            .map_err(sql("list group rules"))?;
        let rows = st
            .query_map([], |r| {
                Ok(GroupRule {
                    priority: r.get(0)?,
                    group: r.get(1)?,
                    serial: r.get(2)?,
                    mac: r.get(3)?,
                    model: r.get(4)?,
                })
            })
            .map_err(sql("list group rules"))?;
        rows.map(|r| r.map_err(sql("list group rules"))).collect()
    }

    /// Adds a rule; `false`: its priority is taken.
    pub fn insert_group_rule(&self, rule: &GroupRule) -> Result<bool, StoreError> {
        let n = self
            .tx
            .execute(
                &format!(
                    "INSERT INTO group_rules (priority, group_name, serial, mac, model, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, {NOW}) ON CONFLICT (priority) DO NOTHING"
                ),
                params![rule.priority, rule.group, rule.serial, rule.mac, rule.model],
            )
            .map_err(sql("add group rule"))?;
        Ok(n > 0)
    }

    pub fn delete_group_rule(&self, priority: i64) -> Result<bool, StoreError> {
        let n = self
            .tx
            .execute("DELETE FROM group_rules WHERE priority = ?1", [priority])
            .map_err(sql("delete group rule"))?;
        Ok(n > 0)
    }
}
