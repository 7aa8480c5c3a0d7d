//! The pool of NFS servers on the command line (`service/pool.rs`): `nfs servers`, `nfs
//! pin`, `image status`, `image sync`, `node move`.

use anyhow::{bail, Result};

use super::commands::Output;
use super::{node_ref, print_json, table};
use crate::service::pool::PinTarget;
use crate::service::Services;

impl Output {
    pub(super) fn nfs_servers(&self, s: &Services) -> Result<()> {
        if !s.pool.enabled() {
            bail!("no [[nfs.servers]] in the configuration: every node uses nfs_server");
        }
        let servers = s.nfs_servers()?;
        let rows = servers
            .iter()
            .map(|r| {
                vec![
                    r.address.clone(),
                    r.state.to_string(),
                    r.weight.to_string(),
                    r.nodes.to_string(),
                    table::opt(&r.local_path),
                    r.data_nodes.join(","),
                ]
            })
            .collect();
        let headers = [
            "SERVER",
            "STATE",
            "WEIGHT",
            "NODES",
            "LOCAL PATH",
            "DATA NODES",
        ];
        self.table_or_json(&servers, &headers, rows)
    }

    pub(super) fn nfs_pin(
        &self,
        s: &Services,
        node: Option<String>,
        group: Option<String>,
        server: Option<String>,
    ) -> Result<()> {
        let (target, what) = match (node, group) {
            (Some(n), _) => (PinTarget::Node(node_ref(&n)?), format!("node {n}")),
            (None, Some(g)) => (PinTarget::Group(g.clone()), format!("group {g}")),
            (None, None) => bail!("name a node (--node) or a group (--group)"),
        };
        s.pin_nfs_server(&target, server.as_deref())?;
        self.done(
            &serde_json::json!({"pinned": what, "server": server}),
            &match &server {
                Some(srv) => format!("{what} pinned to NFS server {srv}"),
                None => format!("{what}: pin cleared"),
            },
        )
    }

    pub(super) fn image_status(&self, s: &Services) -> Result<()> {
        let lines = s.image_status()?;
        let rows = lines
            .iter()
            .map(|l| {
                [&l.image, &l.server, l.status, &l.detail]
                    .map(str::to_string)
                    .to_vec()
            })
            .collect();
        self.table_or_json(&lines, &["IMAGE", "SERVER", "STATUS", "DETAIL"], rows)
    }

    pub(super) fn image_sync(&self, s: &Services) -> Result<()> {
        let lines = s.image_sync()?;
        let rows = lines
            .iter()
            .map(|l| {
                [&l.image, &l.server, l.outcome, &l.detail]
                    .map(str::to_string)
                    .to_vec()
            })
            .collect();
        self.table_or_json(&lines, &["IMAGE", "SERVER", "OUTCOME", "DETAIL"], rows)?;
        if let Some(f) = lines.iter().find(|l| l.outcome == "failed") {
            bail!("{} not copied to {}: {}", f.image, f.server, f.detail);
        }
        Ok(())
    }

    /// `v` as JSON with --json, else `rows` as a table.
    fn table_or_json(
        &self,
        v: &impl serde::Serialize,
        headers: &[&str],
        rows: Vec<Vec<String>>,
    ) -> Result<()> {
        if self.json {
            return print_json(v);
        }
        print!("{}", table::render(headers, &rows));
        Ok(())
    }

    pub(super) fn node_move(&self, s: &Services, id: &str, server: &str, off: bool) -> Result<()> {
        let moved = s.move_node(&node_ref(id)?, server, off)?;
        self.done(
            &moved,
            &format!(
                "node {} moved from {} to {}{}",
                moved.serial,
                moved.from.as_deref().unwrap_or("(no server)"),
                moved.to,
                if moved.copied {
                    ""
                } else {
                    " (it had no tree to copy)"
                }
            ),
        )
    }
}
