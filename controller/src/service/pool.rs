//! The pool of NFS servers (`[[nfs.servers]]`): which server a node boots from, which
//! servers hold which base image, copying images there, and moving a node's data.
//!
//! Without `[[nfs.servers]]` the pool is off and nothing here runs: every answer names
//! `nfs_server` and the `[nfs]` tree, as before. With it, `[nfs] root_path` is the
//! controller's own tree, where images are imported (the source every server's copy is
//! checked against); each node lives on one server (`nfs_homes`), its tree under that
//! server's `local_path`. The pure decision is `crate::domain::pool`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{ServiceError, Services};
use crate::config::{Config, NfsServerConfig, ServerState};
use crate::domain::boot::Decision;
use crate::domain::effective::{nfs_server_pin, Sourced};
use crate::domain::ids::NodeRef;
use crate::domain::node::Node;
use crate::domain::pool::{place, Placement, ServerView};
use crate::domain::state::NodeState;
use crate::domain::workflow::Workflow;
use crate::nfs_tree::error::NfsTreeError;
use crate::nfs_tree::NfsTree;
use crate::store::{StoreError, Tx};

/// One configured server and, when the controller reaches it, its export tree.
#[derive(Debug, Clone)]
pub struct PoolServer {
    pub config: NfsServerConfig,
    pub tree: Option<NfsTree>,
}

/// The configured servers, in configuration order (ties in placement go to the first).
#[derive(Debug, Clone, Default)]
pub struct Pool {
    pub servers: Vec<PoolServer>,
}

impl Pool {
    pub fn from_config(config: &Config) -> Pool {
        Pool {
            servers: config
                .nfs
                .servers
                .iter()
                .map(|s| PoolServer {
                    config: s.clone(),
                    tree: s.local_path.as_ref().map(NfsTree::new),
                })
                .collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.servers.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&PoolServer> {
        self.servers.iter().find(|s| s.config.address == name)
    }
}

/// One server's line in `nfs server list` and the status page.
#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    pub address: String,
    pub export_path: String,
    pub local_path: Option<String>,
    pub weight: u64,
    pub state: &'static str,
    pub nodes: u64,
    /// Nodes placed there whose data (persist image, upper directory, volumes) lives there:
    /// what draining leaves for the operator (`node move`).
    pub data_nodes: Vec<String>,
}

/// One image on one server, as `image status` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ImageOnServer {
    pub image: String,
    pub server: String,
    /// `ok`, `missing`, `differs` (another digest) or `unreachable` (no local_path).
    pub status: &'static str,
    pub detail: String,
}

/// What `image sync` did per image and server.
#[derive(Debug, Clone, Serialize)]
pub struct Synced {
    pub image: String,
    pub server: String,
    /// `copied`, `present`, `skipped` (no local_path, or down) or `failed`.
    pub outcome: &'static str,
    pub detail: String,
}

/// Which pool servers hold which image: (server, image directory, holds it), as a boot's
/// prepare step found (see [`Services::pool_decision`]).
#[derive(Debug, Default, Clone)]
pub(crate) struct ImagesSeen(Vec<(String, String, bool)>);

impl Services {
    /// The tree a node's files are written to: its server's (a plan placed by the pool),
    /// else the `[nfs]` tree.
    pub(crate) fn tree_for(&self, server: Option<&str>) -> Result<&NfsTree, NfsTreeError> {
        let Some(name) = server else {
            return Ok(&self.tree);
        };
        self.pool
            .get(name)
            .and_then(|s| s.tree.as_ref())
            .ok_or_else(|| NfsTreeError::Io {
                op: "reaching the export of NFS server (no local_path)",
                path: name.into(),
                error: std::io::Error::other(format!(
                    "NFS server {name} has no local_path the controller could write to"
                )),
            })
    }

    /// Removes `base/<image>` and its stamp from every pool server the controller reaches
    /// (`image rm`, `image prune`). The first that fails stops the removal, naming the
    /// server: the image's row stays, so the command can be run again once it is reachable
    /// (copies already gone are skipped then).
    pub(crate) fn remove_server_copies(&self, image: &str) -> Result<(), ServiceError> {
        for server in &self.pool.servers {
            let Some(tree) = &server.tree else { continue };
            if tree.root() == self.tree.root() {
                continue;
            }
            let address = &server.config.address;
            tree.remove_base_image(image)
                .and_then(|removed| {
                    tree.set_image_stamp(image, None)?;
                    if removed {
                        log::info!("base/{image} removed from NFS server {address}");
                    }
                    Ok(())
                })
                .map_err(|source| ServiceError::NfsServer {
                    server: address.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// The tree where `node`'s data lives (its home server's, else the `[nfs]` tree).
    pub(crate) fn node_tree(&self, node: &Node) -> Result<NfsTree, ServiceError> {
        if !self.pool.enabled() {
            return Ok(self.tree.clone());
        }
        let home = self.store.read(|tx| tx.nfs_home(&node.id))?;
        Ok(self.tree_for(home.as_deref())?.clone())
    }

    /// As [`Services::node_tree`], by serial (an unknown serial: the `[nfs]` tree).
    pub(crate) fn serial_tree(
        &self,
        serial: &pureboot_contract::ids::Serial,
    ) -> Result<NfsTree, ServiceError> {
        if !self.pool.enabled() {
            return Ok(self.tree.clone());
        }
        match self
            .store
            .read(|tx| tx.find_node(&NodeRef::Serial(serial.clone())))?
        {
            Some(node) => self.node_tree(&node),
            None => Ok(self.tree.clone()),
        }
    }

    /// The server holds `image`: the same directory as the source tree, or a copy whose
    /// stamp is the source's (checked by digest when stamped; see `nfs_tree::replica`).
    /// [`Services::server_has_image`], looked at once per boot: the prepare step looks
    /// (outside any lock) and the commit, on the registry's writer thread, reuses what it
    /// found; only a server or image the prepare did not look at (the channel moved in
    /// between) costs the commit a look at the disk.
    fn server_has_image_seen(
        &self,
        server: &PoolServer,
        image: &str,
        seen: &mut ImagesSeen,
    ) -> bool {
        let name = server.config.address.as_str();
        if let Some((.., has)) = seen.0.iter().find(|(s, i, _)| s == name && i == image) {
            return *has;
        }
        let has = self.server_has_image(server, image);
        seen.0.push((name.to_string(), image.to_string(), has));
        has
    }

    pub fn server_has_image(&self, server: &PoolServer, image: &str) -> bool {
        let Some(tree) = &server.tree else {
            return false;
        };
        if tree.existing_base_image(image).is_err() {
            return false;
        }
        if tree.root() == self.tree.root() {
            return true;
        }
        match (self.tree.image_stamp(image), tree.image_stamp(image)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }

    /// Places the node for the decision just made (after the image version is resolved):
    /// the answer and the plan name its server, or the decision becomes a wait naming why
    /// it cannot boot. `None`: the pool is off, or the answer needs no NFS server.
    pub(crate) fn pool_decision(
        &self,
        tx: &Tx<'_>,
        node: &Node,
        workflow: Option<&Workflow>,
        decision: &mut Decision,
        prefer: Option<&str>,
        seen: &mut ImagesSeen,
    ) -> Result<Option<Placement>, StoreError> {
        if !self.pool.enabled() {
            return Ok(None);
        }
        let Some(plan) = decision.tree.as_mut() else {
            return Ok(None);
        };
        let home = tx.nfs_home(&node.id)?;
        let pin = self.pin_in(tx, node, workflow)?;
        let mut views: Vec<ServerView> = self
            .pool
            .servers
            .iter()
            .map(|s| ServerView {
                name: s.config.address.clone(),
                state: s.config.state,
                weight: s.config.weight,
                has_image: self.server_has_image_seen(s, &plan.base_image, seen),
                nodes: 0,
            })
            .collect();
        // The counts (a grouped read over every home) only when the node may be placed
        // anew: not for the usual boot of a node at home on an active server.
        let at_home = home.as_deref().is_some_and(|h| {
            views
                .iter()
                .any(|v| v.name == h && v.state == ServerState::Active && v.has_image)
        });
        if pin.is_some() || !at_home {
            let counts = tx.nfs_home_counts()?;
            for v in &mut views {
                v.nodes = counts.get(&v.name).copied().unwrap_or(0);
            }
        }
        match place(
            home.as_deref(),
            pin.as_ref(),
            plan.holds_data(),
            &plan.base_image,
            &views,
            prefer,
        ) {
            Ok(p) => {
                let server = self
                    .pool
                    .get(&p.server)
                    .expect("placed on a configured server");
                plan.nfs_server = Some(p.server.clone());
                decision.response.nfs_server = Some(server.config.address.clone());
                decision.response.nfs_path = Some(server.config.export_path.display().to_string());
                Ok(Some(p))
            }
            Err(why) => {
                log::warn!("node {}: {why}", node.serial);
                let state = NodeState::parse(&decision.response.state).unwrap_or(node.state);
                *decision = Decision::unplaced(state, &why);
                Ok(None)
            }
        }
    }

    /// The node's pin with its source (`node show --effective`), and its home; none
    /// without a pool.
    pub(crate) fn nfs_pin_of(
        &self,
        node: &Node,
        workflow: Option<&Workflow>,
    ) -> Result<(Option<Sourced<String>>, Option<String>), ServiceError> {
        if !self.pool.enabled() {
            return Ok((None, None));
        }
        Ok(self.store.read(|tx| {
            Ok::<_, StoreError>((self.pin_in(tx, node, workflow)?, tx.nfs_home(&node.id)?))
        })?)
    }

    /// The node's pin (node, then its rendered group chain, then its workflow).
    fn pin_in(
        &self,
        tx: &Tx<'_>,
        node: &Node,
        workflow: Option<&Workflow>,
    ) -> Result<Option<Sourced<String>>, StoreError> {
        // A workflow's `nfs_server` pins only when it names a pool server: the shipped
        // workflows render the top-level `nfs_server` there, which the pool replaces.
        let wf_pin = workflow.filter(|w| {
            w.nfs_server
                .as_deref()
                .is_some_and(|a| self.pool.get(a).is_some())
        });
        Ok(nfs_server_pin(
            tx.node_nfs_pin(&node.id)?.as_deref(),
            &node.groups,
            &tx.group_nfs_pins()?,
            wf_pin,
        ))
    }

    /// Records a committed placement: a new node's home, or a move (logged, and an event).
    pub(crate) fn record_placement(
        &self,
        tx: &Tx<'_>,
        node: &Node,
        p: &Placement,
    ) -> Result<(), StoreError> {
        if p.from.as_deref() == Some(p.server.as_str()) {
            return Ok(());
        }
        let why = match &p.from {
            Some(from) => {
                log::info!(
                    "node {}: moved from NFS server {from} to {} (no data of its there)",
                    node.serial,
                    p.server
                );
                "moved at its boot (no data of its on the server it left)"
            }
            None => {
                log::info!("node {}: placed on NFS server {}", node.serial, p.server);
                "placed at its first boot"
            }
        };
        tx.set_nfs_home(&node.id, &p.server)?;
        placement_event(tx, node, &p.server, p.from.as_deref(), why)
    }

    /// Every server with its nodes, and the nodes whose data lives there.
    pub fn nfs_servers(&self) -> Result<Vec<ServerReport>, ServiceError> {
        let (homes, nodes) = self.store.read(|tx| {
            let homes = tx.nfs_homes()?;
            let mut nodes = BTreeMap::new();
            for (serial, _) in &homes {
                if let Some(n) = tx.find_node(&NodeRef::Serial(
                    pureboot_contract::ids::Serial::parse(serial).map_err(|_| {
                        StoreError::Corrupt {
                            what: "serial",
                            value: serial.clone(),
                        }
                    })?,
                ))? {
                    nodes.insert(serial.clone(), n);
                }
            }
            Ok::<_, StoreError>((homes, nodes))
        })?;
        let mut out = Vec::new();
        for s in &self.pool.servers {
            let here: Vec<&String> = homes
                .iter()
                .filter(|(_, server)| *server == s.config.address)
                .map(|(serial, _)| serial)
                .collect();
            let data_nodes = here
                .iter()
                .filter(|serial| {
                    nodes
                        .get(serial.as_str())
                        .is_some_and(|n| self.holds_data(n))
                })
                .map(|s| s.to_string())
                .collect();
            out.push(ServerReport {
                address: s.config.address.clone(),
                export_path: s.config.export_path.display().to_string(),
                local_path: s
                    .config
                    .local_path
                    .as_ref()
                    .map(|p| p.display().to_string()),
                weight: s.config.weight,
                state: s.config.state.as_str(),
                nodes: here.len() as u64,
                data_nodes,
            });
        }
        Ok(out)
    }

    /// The node's next boot keeps data on its server (see `NodeTreePlan::holds_data`).
    fn holds_data(&self, node: &Node) -> bool {
        let (rendered, wf) = self.rendered(node);
        let wf = wf.ok().flatten();
        crate::domain::boot::tree_plan(&rendered, wf.as_ref(), &self.config.nfs.default_base_image)
            .is_ok_and(|p| p.holds_data())
    }

    /// Every image of the source tree on every server: present with the source's digest,
    /// missing, different, or not reachable. Hashes every copy (an operator's command):
    /// a copy found equal is stamped, so boots may use it; one found different loses its
    /// stamp, so boots stop using it.
    pub fn image_status(&self) -> Result<Vec<ImageOnServer>, ServiceError> {
        let mut out = Vec::new();
        for image in self.tree.base_images()? {
            let Some(digest) = self.tree.image_digest(&image)? else {
                continue;
            };
            self.tree.set_image_stamp(&image, Some(&digest))?;
            for s in &self.pool.servers {
                out.push(self.image_on(s, &image, &digest)?);
            }
        }
        Ok(out)
    }

    fn image_on(
        &self,
        s: &PoolServer,
        image: &str,
        digest: &str,
    ) -> Result<ImageOnServer, ServiceError> {
        let line = |status, detail: String| ImageOnServer {
            image: image.to_string(),
            server: s.config.address.clone(),
            status,
            detail,
        };
        let Some(tree) = &s.tree else {
            return Ok(line(
                "unreachable",
                "no local_path: the controller cannot check this server".into(),
            ));
        };
        Ok(match tree.image_digest(image)? {
            None => {
                tree.set_image_stamp(image, None)?;
                line(
                    "missing",
                    format!("no base/{image} under {}", tree.root().display()),
                )
            }
            Some(d) if d == digest => {
                tree.set_image_stamp(image, Some(&d))?;
                line("ok", format!("sha256 {}", &d[..16]))
            }
            Some(d) => {
                tree.set_image_stamp(image, None)?;
                line(
                    "differs",
                    format!("sha256 {} here, {} on the source", &d[..16], &digest[..16]),
                )
            }
        })
    }

    /// Copies every image a reachable, not-down server lacks (or holds another copy of)
    /// from the source tree, checks the copy's digest and stamps it.
    pub fn image_sync(&self) -> Result<Vec<Synced>, ServiceError> {
        let mut out = Vec::new();
        for line in self.image_status()? {
            let s = self
                .pool
                .get(&line.server)
                .expect("status names configured servers");
            let done = |outcome, detail: String| Synced {
                image: line.image.clone(),
                server: line.server.clone(),
                outcome,
                detail,
            };
            let tree = match (&s.tree, line.status) {
                (_, "ok") => {
                    out.push(done("present", line.detail.clone()));
                    continue;
                }
                (Some(tree), _) if s.config.state != ServerState::Down => tree,
                // No local_path, or down: nothing the controller can do there.
                _ => {
                    out.push(done("skipped", format!("not copied: {}", line.detail)));
                    continue;
                }
            };
            let copied = tree
                .copy_image_from(&self.tree, &line.image)
                .and_then(|()| {
                    let want = self.tree.image_stamp(&line.image);
                    let got = tree.image_digest(&line.image)?;
                    if got.is_some() && got == want {
                        tree.set_image_stamp(&line.image, got.as_deref())?;
                        Ok(true)
                    } else {
                        Ok(false)
                    }
                });
            out.push(match copied {
                Ok(true) => done("copied", format!("to {}", tree.root().display())),
                Ok(false) => done(
                    "failed",
                    "the copy's digest is not the source's (owners or modes not kept?)".into(),
                ),
                Err(e) => done("failed", e.to_string()),
            });
        }
        Ok(out)
    }

    /// Sets (`Some`) or clears the pin of a node or a group (`nfs pin`): its next boot
    /// goes to that server (see `domain::pool` for what a node with data there needs).
    pub fn pin_nfs_server(
        &self,
        target: &PinTarget,
        server: Option<&str>,
    ) -> Result<(), ServiceError> {
        self.pool_on()?;
        if let Some(name) = server {
            self.pool_server(name)?;
        }
        self.store.write(|tx| match target {
            PinTarget::Node(r) => {
                let node = tx
                    .find_node(r)?
                    .ok_or_else(|| ServiceError::NotFound(format!("node {r} not found")))?;
                Ok(tx.set_node_nfs_pin(&node.id, server)?)
            }
            PinTarget::Group(g) => {
                if tx.find_group(g)?.is_none() {
                    return Err(ServiceError::NotFound(format!("group {g} not found")));
                }
                Ok(tx.set_group_nfs_pin(g, server)?)
            }
        })
    }

    /// `node move <serial> <server>`: copies the node's tree (`nodes/<serial>`: its
    /// persist image, upper directory, volumes) to `to`, checks the copy by digest, makes
    /// `to` its home and removes the old tree. Only for a node that is off: the controller
    /// cannot see power, so the operator says so (`off`), and a node whose last boot is
    /// under `boot_complete_within_secs` old is refused anyway (it is booting or just did).
    pub fn move_node(&self, r: &NodeRef, to: &str, off: bool) -> Result<Moved, ServiceError> {
        self.pool_on()?;
        let target = self.pool_server(to)?;
        let Some(to_tree) = target
            .tree
            .clone()
            .filter(|_| target.config.state != ServerState::Down)
        else {
            return Err(ServiceError::Invalid(format!(
                "NFS server {to} is down or has no local_path: the controller cannot write there"
            )));
        };
        let within = self.config.boot_complete_within_secs;
        let (node, home, recent) = self.store.read(|tx| {
            let node = tx
                .find_node(r)?
                .ok_or_else(|| ServiceError::NotFound(format!("node {r} not found")))?;
            let home = tx.nfs_home(&node.id)?;
            let recent = tx.booted_within(&node.id, within)?;
            Ok::<_, ServiceError>((node, home, recent))
        })?;
        if !off {
            return Err(ServiceError::Conflict(format!(
                "node {}: moving its data needs it powered off; power it off, then confirm with \
                 --off",
                node.serial
            )));
        }
        if recent {
            return Err(ServiceError::Conflict(format!(
                "node {} booted less than boot_complete_within_secs ({within} s) ago: it may be \
                 running; power it off and move it after that",
                node.serial
            )));
        }
        if home.as_deref() == Some(to) {
            return Err(ServiceError::Conflict(format!(
                "node {} already lives on {to}",
                node.serial
            )));
        }
        let from_tree = self.tree_for(home.as_deref())?.clone();
        let _guard = self.tree_lock(&node.serial);
        let copied = from_tree.copy_node_tree_to(&to_tree, &node.serial)?;
        self.store.write(|tx| {
            tx.set_nfs_home(&node.id, to)?;
            placement_event(
                tx,
                &node,
                to,
                home.as_deref(),
                "moved by the operator (node move)",
            )
        })?;
        if copied {
            from_tree.delete_node_overlay(&node.serial)?;
        }
        log::warn!(
            "node {} moved by the operator from NFS server {} to {to}",
            node.serial,
            home.as_deref().unwrap_or("(none)")
        );
        Ok(Moved {
            serial: node.serial.to_string(),
            from: home,
            to: to.to_string(),
            copied,
        })
    }

    fn pool_on(&self) -> Result<(), ServiceError> {
        if self.pool.enabled() {
            Ok(())
        } else {
            Err(ServiceError::Invalid(
                "no [[nfs.servers]] in the configuration: every node uses nfs_server".into(),
            ))
        }
    }

    fn pool_server(&self, name: &str) -> Result<&PoolServer, ServiceError> {
        self.pool.get(name).ok_or_else(|| {
            let known: Vec<&str> = self
                .pool
                .servers
                .iter()
                .map(|s| s.config.address.as_str())
                .collect();
            ServiceError::NotFound(format!(
                "NFS server {name:?} is not in [[nfs.servers]] ({})",
                known.join(", ")
            ))
        })
    }
}

/// What a pin is set on.
#[derive(Debug, Clone)]
pub enum PinTarget {
    Node(NodeRef),
    Group(String),
}

/// What `node move` did.
#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    pub serial: String,
    pub from: Option<String>,
    pub to: String,
    /// A tree was there to copy (a node never booted has none).
    pub copied: bool,
}

/// A server's line on the status page and in `/metrics`: its state and how many nodes live
/// there.
#[derive(Debug, Clone, Serialize)]
pub struct ServerCount {
    pub address: String,
    pub state: &'static str,
    pub weight: u64,
    pub nodes: u64,
}

impl Services {
    /// Every server with its node count (one grouped read).
    pub fn pool_counts(&self) -> Result<Vec<ServerCount>, ServiceError> {
        if !self.pool.enabled() {
            return Ok(Vec::new());
        }
        let counts = self.store.read(|tx| tx.nfs_home_counts())?;
        Ok(self
            .pool
            .servers
            .iter()
            .map(|s| ServerCount {
                address: s.config.address.clone(),
                state: s.config.state.as_str(),
                weight: s.config.weight,
                nodes: counts.get(&s.config.address).copied().unwrap_or(0),
            })
            .collect())
    }

    /// `/metrics` lines: nodes per server, labelled with the server's state.
    pub fn pool_metrics(&self) -> Result<String, ServiceError> {
        use std::fmt::Write;
        let mut out = String::new();
        let counts = self.pool_counts()?;
        if counts.is_empty() {
            return Ok(out);
        }
        let _ = writeln!(
            out,
            "# HELP pureboot_nfs_server_nodes Nodes placed on each NFS server of the pool, by \
             the server's configured state."
        );
        let _ = writeln!(out, "# TYPE pureboot_nfs_server_nodes gauge");
        for c in &counts {
            let _ = writeln!(
                out,
                "pureboot_nfs_server_nodes{{server=\"{}\",state=\"{}\"}} {}",
                c.address, c.state, c.nodes
            );
        }
        Ok(out)
    }

    /// `/healthz`: each server's export, where the controller reaches it, takes a write
    /// (`ok`); else why not. A server without local_path, or down, is not checked.
    pub fn pool_health(&self) -> BTreeMap<String, String> {
        self.pool
            .servers
            .iter()
            .map(|s| {
                let verdict = match (&s.tree, s.config.state) {
                    (_, ServerState::Down) => "down (configured; not checked)".to_string(),
                    (None, _) => "not checked (no local_path)".to_string(),
                    (Some(tree), _) => write_check(tree.root()),
                };
                (s.config.address.clone(), verdict)
            })
            .collect()
    }
}

/// A write under `root`, as `/healthz` does on the export: `ok`, or the failure (logged in
/// full; the answer names no path).
pub(crate) fn write_check(root: &std::path::Path) -> String {
    let file = root.join(".pureboot-write-check");
    let stamp = crate::nfs_tree::persist_repair::utc_stamp(std::time::SystemTime::now());
    match std::fs::write(&file, stamp) {
        Ok(()) => "ok".to_string(),
        Err(e) => {
            log::error!("health: writing {}: {e}", file.display());
            "write failed; see the controller log".to_string()
        }
    }
}

/// The node's `nfs_server` event: where it lives now, where from, why.
fn placement_event(
    tx: &Tx<'_>,
    node: &Node,
    server: &str,
    from: Option<&str>,
    why: &str,
) -> Result<(), StoreError> {
    tx.append_event(&crate::store::events::NewEvent {
        node_id: Some(&node.id),
        serial: node.serial.as_str(),
        kind: crate::store::events::EventKind::NfsServer,
        ip: None,
        detail: serde_json::json!({"server": server, "from": from, "why": why}),
    })
    .map(drop)
}
