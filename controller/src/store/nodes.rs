//! The `nodes` table.

use super::db::{params, OptionalExtension, Row};
use pureboot_contract::ids::{Hostname, Mac, MachineId, Serial};
use pureboot_contract::OverlayMode;

use super::{sql, StoreError, Tx, NOW};
use crate::domain::ids::NodeRef;
use crate::domain::node::Node;
use crate::domain::state::NodeState;
use crate::domain::volumes::VolumeSpec;

const COLUMNS: &str =
    "id, serial, full_serial, mac, model, hostname, state, workflow_id, machine_id,
    overlay_mode, base_image, last_boot_at, last_ip, conflict, created_at, updated_at, degraded,
    mac_confirmed, boot_ip, volumes, group_name";

/// Pending boots kept per node (one per address): a node whose address changes keeps a
/// few; more than this means addresses come and go, and the oldest are dropped.
const BOOTS_PER_NODE: i64 = 16;

/// What registration knows; everything else starts empty ([`NewNode::new`]).
#[derive(Debug, Clone)]
pub struct NewNode {
    pub serial: Serial,
    pub full_serial: Option<String>,
    pub mac: Option<Mac>,
    pub model: Option<String>,
    pub hostname: Option<Hostname>,
    pub workflow_id: Option<String>,
    pub overlay_mode: Option<OverlayMode>,
    pub base_image: Option<String>,
    pub last_ip: Option<String>,
    pub state: Option<NodeState>,
    /// The MAC was given by an operator (not learned from a boot).
    pub mac_confirmed: bool,
    /// Its group (a rule's at first contact, or the operator's).
    pub group: Option<String>,
}

impl NewNode {
    pub fn new(serial: Serial) -> NewNode {
        NewNode {
            serial,
            full_serial: None,
            mac: None,
            model: None,
            hostname: None,
            workflow_id: None,
            overlay_mode: None,
            base_image: None,
            last_ip: None,
            state: None,
            mac_confirmed: false,
            group: None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct NodeFilter {
    pub state: Option<NodeState>,
    pub workflow_id: Option<String>,
    /// Only serials after this one (pagination: the last serial of the previous page).
    pub after: Option<Serial>,
    /// At most this many (none: all).
    pub limit: Option<u32>,
    /// Only members of this group (not of its subgroups).
    pub group: Option<String>,
}

/// A row's text columns, before they become a [`Node`]'s typed fields.
struct NodeRow {
    id: String,
    serial: String,
    full_serial: Option<String>,
    mac: Option<String>,
    model: Option<String>,
    hostname: Option<String>,
    state: String,
    workflow_id: Option<String>,
    machine_id: String,
    overlay_mode: Option<String>,
    base_image: Option<String>,
    last_boot_at: Option<String>,
    last_ip: Option<String>,
    conflict: Option<String>,
    created_at: String,
    updated_at: String,
    degraded: Option<String>,
    mac_confirmed: bool,
    boot_ip: Option<String>,
    volumes: Option<String>,
    group: Option<String>,
}

fn from_row(r: &Row<'_>) -> super::db::Result<NodeRow> {
    Ok(NodeRow {
        id: r.get(0)?,
        serial: r.get(1)?,
        full_serial: r.get(2)?,
        mac: r.get(3)?,
        model: r.get(4)?,
        hostname: r.get(5)?,
        state: r.get(6)?,
        workflow_id: r.get(7)?,
        machine_id: r.get(8)?,
        overlay_mode: r.get(9)?,
        base_image: r.get(10)?,
        last_boot_at: r.get(11)?,
        last_ip: r.get(12)?,
        conflict: r.get(13)?,
        created_at: r.get(14)?,
        updated_at: r.get(15)?,
        degraded: r.get(16)?,
        mac_confirmed: r.get(17)?,
        boot_ip: r.get(18)?,
        volumes: r.get(19)?,
        group: r.get(20)?,
    })
}

/// A column's text through its parser; a bad value is reported, not defaulted.
fn column<T, E>(
    what: &'static str,
    value: String,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<T, StoreError> {
    parse(&value).map_err(|_| StoreError::Corrupt { what, value })
}

fn optional<T, E>(
    what: &'static str,
    value: Option<String>,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, StoreError> {
    value.map(|v| column(what, v, &parse)).transpose()
}

/// Text columns to typed fields, once, here.
fn typed(r: NodeRow) -> Result<Node, StoreError> {
    Ok(Node {
        serial: column("serial", r.serial, Serial::parse)?,
        mac: optional("MAC", r.mac, Mac::parse)?,
        hostname: optional("hostname", r.hostname, Hostname::parse)?,
        state: column("node state", r.state, |s| NodeState::parse(s).ok_or(()))?,
        machine_id: column("machine id", r.machine_id, MachineId::parse)?,
        overlay_mode: optional("overlay mode", r.overlay_mode, str::parse::<OverlayMode>)?,
        id: r.id,
        full_serial: r.full_serial,
        model: r.model,
        workflow_id: r.workflow_id,
        base_image: r.base_image,
        last_boot_at: r.last_boot_at,
        last_ip: r.last_ip,
        conflict: r.conflict,
        created_at: r.created_at,
        updated_at: r.updated_at,
        degraded: r.degraded,
        mac_confirmed: r.mac_confirmed,
        boot_ip: r.boot_ip,
        volumes: match r.volumes {
            None => Vec::new(),
            Some(json) => column("volumes", json, |s| serde_json::from_str(s))?,
        },
        group: r.group,
        // Filled in by the reads (see `Tx::with_groups`).
        groups: Vec::new(),
    })
}

/// A node's own volumes as stored: JSON, NULL for none.
fn volumes_column(v: &[VolumeSpec]) -> Option<String> {
    (!v.is_empty()).then(|| serde_json::to_string(v).expect("volumes serialise"))
}

impl Tx<'_> {
    /// The node with a pending boot of this id (the one in its callback URL), and the
    /// address that boot was asked from.
    pub fn find_boot(&self, boot_id: &str) -> Result<Option<(Node, String)>, StoreError> {
        let found: Option<(String, String)> = self
            .tx
            .prepare_cached("SELECT node_id, ip FROM node_boots WHERE boot_id = ?1")
            .and_then(|mut st| {
                st.query_row([boot_id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(sql("find boot"))?;
        let Some((node_id, ip)) = found else {
            return Ok(None);
        };
        Ok(self.find_node(&NodeRef::Id(node_id))?.map(|n| (n, ip)))
    }

    /// Records `boot_id` as the node's pending boot for `ip`, replacing only the one that
    /// address held (and its stages): a boot asked from elsewhere leaves the others' ids
    /// valid. `layer` names the writable layer the boot runs on (`first_boot` steps go by it).
    pub fn bind_boot(
        &self,
        node_id: &str,
        ip: &str,
        boot_id: &str,
        layer: &str,
    ) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO node_boots (boot_id, node_id, ip, at, layer)
                 VALUES (?1, ?2, ?3, {NOW}, ?4)
                 ON CONFLICT (node_id, ip) DO UPDATE SET boot_id = excluded.boot_id,
                   at = excluded.at, layer = excluded.layer, installed_at = NULL,
                   installed_ms = NULL, pi_init_steps = NULL, complete_at = NULL,
                   complete = NULL, healthy = NULL, version = NULL, failed = NULL"
            ))
            .and_then(|mut st| st.execute(params![boot_id, node_id, ip, layer]))
            .map_err(sql("record boot"))?;
        self.tx
            .prepare_cached(
                "DELETE FROM node_boots WHERE node_id = ?1 AND boot_id NOT IN
                   (SELECT boot_id FROM node_boots WHERE node_id = ?1
                    ORDER BY at DESC, rowid DESC LIMIT ?2)",
            )
            .and_then(|mut st| st.execute(params![node_id, BOOTS_PER_NODE]))
            .map_err(sql("drop old boots"))?;
        Ok(())
    }

    pub fn find_node(&self, node: &NodeRef) -> Result<Option<Node>, StoreError> {
        match node {
            NodeRef::Id(id) => self.find_node_where("id", id, "find node"),
            NodeRef::Serial(s) => self.find_node_where("serial", s.as_str(), "find node"),
        }
    }

    /// The one node whose `column` (a unique one) holds `value`.
    fn find_node_where(
        &self,
        column: &'static str,
        value: &str,
        what: &'static str,
    ) -> Result<Option<Node>, StoreError> {
        let row = self
            .tx
            .prepare_cached(&format!("SELECT {COLUMNS} FROM nodes WHERE {column} = ?1"))
            .and_then(|mut st| st.query_row([value], from_row).optional())
            .map_err(sql(what))?;
        row.map(|r| self.with_groups(typed(r)?)).transpose()
    }

    pub fn list_nodes(&self, filter: &NodeFilter) -> Result<Vec<Node>, StoreError> {
        let mut stmt = self
            .tx
            .prepare(&format!(
                "SELECT {COLUMNS} FROM nodes
                 WHERE (CAST(?1 AS TEXT) IS NULL OR state = ?1)
                   AND (CAST(?2 AS TEXT) IS NULL OR workflow_id = ?2)
                   AND (CAST(?3 AS TEXT) IS NULL OR serial > ?3)
                   AND (CAST(?5 AS TEXT) IS NULL OR group_name = ?5)
                 ORDER BY serial LIMIT ?4"
            ))
            .map_err(sql("list nodes"))?;
        let rows = stmt
            .query_map(
                params![
                    filter.state.map(|s| s.as_str()),
                    filter.workflow_id,
                    filter.after.as_ref().map(Serial::as_str),
                    filter.limit.map_or(i64::MAX, i64::from),
                    filter.group,
                ],
                from_row,
            )
            .map_err(sql("list nodes"))?;
        let nodes: Vec<Node> = rows
            .map(|r| r.map_err(sql("list nodes")).and_then(typed))
            .collect::<Result<_, _>>()?;
        // Every group once for the whole list, not once per node.
        let all = if nodes.iter().any(|n| n.group.is_some()) {
            self.all_groups()?
        } else {
            Default::default()
        };
        nodes
            .into_iter()
            .map(|n| super::groups::attach_chain(n, &all))
            .collect()
    }

    /// Inserts a node with a fresh id and machine-id.
    pub fn insert_node(&self, new: &NewNode) -> Result<Node, StoreError> {
        let id = super::new_uuid();
        let machine_id = format!("{:032x}", rand::random::<u128>().max(1));
        let state = new.state.unwrap_or(NodeState::Discovered);
        self.tx
            .execute(
                &format!(
                    "INSERT INTO nodes (id, serial, full_serial, mac, model, hostname, state, workflow_id,
                        machine_id, overlay_mode, base_image, last_ip, mac_confirmed, group_name,
                        created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, {NOW}, {NOW})"
                ),
                params![
                    id,
                    new.serial.as_str(),
                    new.full_serial,
                    new.mac.as_ref().map(Mac::as_str),
                    new.model,
                    new.hostname.as_ref().map(Hostname::as_str),
                    state.as_str(),
                    new.workflow_id,
                    machine_id,
                    new.overlay_mode.map(|m| m.as_str()),
                    new.base_image,
                    new.last_ip,
                    new.mac.is_some() && new.mac_confirmed,
                    new.group,
                ],
            )
            .map_err(sql("insert node"))?;
        self.find_node(&NodeRef::Id(id))
            .map(|n| n.expect("row just inserted"))
    }

    /// Writes every mutable field of `node` (id, serial, machine-id and creation time stay)
    /// and returns the row as stored.
    pub fn save_node(&self, node: &Node) -> Result<Node, StoreError> {
        self.update_node(node, None)
    }

    /// [`Tx::save_node`] and the boot mark in one statement: `last_boot_at` = now (the
    /// database clock), `last_ip` = `ip` when given.
    pub fn save_booted_node(&self, node: &Node, ip: Option<&str>) -> Result<Node, StoreError> {
        self.update_node(node, Some(ip))
    }

    fn update_node(&self, node: &Node, booted: Option<Option<&str>>) -> Result<Node, StoreError> {
        let sql_text = format!(
            "UPDATE nodes SET full_serial = ?2, mac = ?3, model = ?4, hostname = ?5, state = ?6,
                workflow_id = ?7, overlay_mode = ?8, base_image = ?9,
                last_boot_at = CASE WHEN ?16 THEN {NOW} ELSE ?10 END,
                last_ip = COALESCE(?17, ?11), conflict = ?12, degraded = ?13, mac_confirmed = ?14,
                boot_ip = ?15, volumes = ?18, group_name = ?19, updated_at = {NOW}
             WHERE id = ?1
             RETURNING {COLUMNS}"
        );
        let row = self
            .tx
            .prepare_cached(&sql_text)
            .and_then(|mut st| {
                st.query_row(
                    params![
                        node.id,
                        node.full_serial,
                        node.mac.as_ref().map(Mac::as_str),
                        node.model,
                        node.hostname.as_ref().map(Hostname::as_str),
                        node.state.as_str(),
                        node.workflow_id,
                        node.overlay_mode.map(|m| m.as_str()),
                        node.base_image,
                        node.last_boot_at,
                        node.last_ip,
                        node.conflict,
                        node.degraded,
                        node.mac.is_some() && node.mac_confirmed,
                        node.boot_ip,
                        booted.is_some(),
                        booted.flatten(),
                        volumes_column(&node.volumes),
                        node.group,
                    ],
                    from_row,
                )
            })
            .map_err(sql("update node"))?;
        self.with_groups(typed(row)?)
    }

    pub fn count_in_state(&self, state: NodeState) -> Result<i64, StoreError> {
        self.tx
            .query_row(
                "SELECT COUNT(*) FROM nodes WHERE state = ?1",
                [state.as_str()],
                |r| r.get(0),
            )
            .map_err(sql("count nodes"))
    }

    /// Nodes flagged degraded (their persistent layer broke).
    pub fn count_degraded(&self) -> Result<i64, StoreError> {
        self.tx
            .query_row(
                "SELECT COUNT(*) FROM nodes WHERE degraded IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .map_err(sql("count degraded nodes"))
    }

    pub fn delete_node(&self, node_id: &str) -> Result<bool, StoreError> {
        let n = self
            .tx
            .execute("DELETE FROM nodes WHERE id = ?1", [node_id])
            .map_err(sql("delete node"))?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;

    #[test]
    fn a_boot_replaces_only_its_own_address_s_and_goes_with_its_node() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::test_support::database(dir.path(), "b.db")).unwrap();
        store
            .write(|tx| {
                let node = tx.insert_node(&NewNode::new(Serial::parse("d83add36").unwrap()))?;
                tx.bind_boot(&node.id, "10.0.0.2", "boot-a", "")?;
                tx.bind_boot(&node.id, "10.0.0.3", "boot-b", "")?;
                let (found, ip) = tx.find_boot("boot-a")?.expect("its own id");
                assert_eq!(
                    (found.id.as_str(), ip.as_str()),
                    (node.id.as_str(), "10.0.0.2")
                );
                // The same address again spends its previous id, and only that one.
                tx.bind_boot(&node.id, "10.0.0.2", "boot-c", "")?;
                assert!(tx.find_boot("boot-a")?.is_none());
                assert!(tx.find_boot("boot-b")?.is_some() && tx.find_boot("boot-c")?.is_some());
                // Bounded per node: the oldest addresses' boots go first.
                for i in 0..BOOTS_PER_NODE {
                    tx.bind_boot(&node.id, &format!("10.0.1.{i}"), &format!("more-{i}"), "")?;
                }
                assert!(tx.find_boot("boot-b")?.is_none() && tx.find_boot("boot-c")?.is_none());
                assert!(tx
                    .find_boot(&format!("more-{}", BOOTS_PER_NODE - 1))?
                    .is_some());
                tx.delete_node(&node.id)?;
                assert!(tx.find_boot("more-0")?.is_none(), "gone with the node");
                Ok::<_, StoreError>(())
            })
            .unwrap();
    }
}
