//! The pool of NFS servers' rows (`nfs_homes`, `node_nfs_pins`, `group_nfs_pins`): which
//! server each node lives on, and the operator's pins. Servers are named by address.

use std::collections::BTreeMap;

use super::db::{params, OptionalExtension};

use super::{sql, StoreError, Tx, NOW};

/// A table of NFS server pins: its name and key column (fixed names, never input) and
/// the operation's name for errors.
#[derive(Clone, Copy)]
struct Pins {
    table: &'static str,
    key_column: &'static str,
    op: &'static str,
}

impl Pins {
    const NODE: Pins = Pins {
        table: "node_nfs_pins",
        key_column: "node_id",
        op: "set node nfs pin",
    };
    const GROUP: Pins = Pins {
        table: "group_nfs_pins",
        key_column: "group_name",
        op: "set group nfs pin",
    };
}

impl Tx<'_> {
    /// The server the node was placed on (none: never placed).
    pub fn nfs_home(&self, node_id: &str) -> Result<Option<String>, StoreError> {
        self.tx
            .prepare_cached("SELECT server FROM nfs_homes WHERE node_id = ?1")
            .and_then(|mut st| st.query_row([node_id], |r| r.get(0)).optional())
            .map_err(sql("read nfs home"))
    }

    /// Places the node on `server` (its data lives there from now on).
    pub fn set_nfs_home(&self, node_id: &str, server: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO nfs_homes (node_id, server, placed_at) VALUES (?1, ?2, {NOW})
                 ON CONFLICT (node_id) DO UPDATE SET server = excluded.server,
                   placed_at = excluded.placed_at"
            ))
            .and_then(|mut st| st.execute(params![node_id, server]))
            .map_err(sql("set nfs home"))?;
        Ok(())
    }

    /// Nodes placed per server.
    pub fn nfs_home_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut st = self
            .tx
            .prepare_cached("SELECT server, COUNT(*) FROM nfs_homes GROUP BY server")
            .map_err(sql("count nfs homes"))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)))
            .map_err(sql("count nfs homes"))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (server, n) = row.map_err(sql("count nfs homes"))?;
            out.insert(server, n.max(0) as u64);
        }
        Ok(out)
    }

    /// Every placed node: (serial, server), by serial.
    pub fn nfs_homes(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut st = self
            .tx
            .prepare_cached(
                "SELECT n.serial, h.server FROM nfs_homes h JOIN nodes n ON n.id = h.node_id
                 ORDER BY n.serial",
            )
            .map_err(sql("list nfs homes"))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql("list nfs homes"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("list nfs homes"))
    }

    /// The node's own pin.
    pub fn node_nfs_pin(&self, node_id: &str) -> Result<Option<String>, StoreError> {
        self.tx
            .prepare_cached("SELECT server FROM node_nfs_pins WHERE node_id = ?1")
            .and_then(|mut st| st.query_row([node_id], |r| r.get(0)).optional())
            .map_err(sql("read node nfs pin"))
    }

    /// Sets (`Some`) or clears the node's pin.
    pub fn set_node_nfs_pin(&self, node_id: &str, server: Option<&str>) -> Result<(), StoreError> {
        self.set_pin(Pins::NODE, node_id, server)
    }

    /// Every group's pin, by group name.
    pub fn group_nfs_pins(&self) -> Result<BTreeMap<String, String>, StoreError> {
        let mut st = self
            .tx
            .prepare_cached("SELECT group_name, server FROM group_nfs_pins")
            .map_err(sql("read group nfs pins"))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql("read group nfs pins"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("read group nfs pins"))
    }

    /// Sets (`Some`) or clears the group's pin.
    pub fn set_group_nfs_pin(&self, group: &str, server: Option<&str>) -> Result<(), StoreError> {
        self.set_pin(Pins::GROUP, group, server)
    }

    /// Sets or clears one pin in `pins` (the node's or the group's table).
    fn set_pin(&self, pins: Pins, key: &str, server: Option<&str>) -> Result<(), StoreError> {
        let Pins {
            table,
            key_column,
            op,
        } = pins;
        match server {
            Some(s) => self.tx.execute(
                &format!(
                    "INSERT INTO {table} ({key_column}, server) VALUES (?1, ?2)
                     ON CONFLICT ({key_column}) DO UPDATE SET server = excluded.server"
                ),
                params![key, s],
            ),
            None => self.tx.execute(
                &format!("DELETE FROM {table} WHERE {key_column} = ?1"),
                [key],
            ),
        }
        .map_err(sql(op))?;
        Ok(())
    }

    /// The node's last boot answer is under `secs` old (it may be booting or running).
    pub fn booted_within(&self, node_id: &str, secs: u64) -> Result<bool, StoreError> {
        self.tx
            .prepare_cached(
                "SELECT COUNT(*) FROM nodes WHERE id = ?1 AND last_boot_at IS NOT NULL
                 AND julianday(last_boot_at) > julianday('now') - ?2 / 86400.0",
            )
            .and_then(|mut st| st.query_row(params![node_id, secs as i64], |r| r.get::<i64>(0)))
            .map(|n| n > 0)
            .map_err(sql("read last boot"))
    }
}
