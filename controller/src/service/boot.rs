//! What a Pi asks and reports: the boot request, `register-pi` and the two callbacks.

use pureboot_contract::{InstallFailedReport, InstalledReport, PiBootResponse, RegisterPiRequest};
use serde_json::{json, Value};

use super::{workflow_state, ServiceError, Services};
use crate::domain::boot::{decide, unregistered, NodeTreePlan};
use crate::domain::{
    full_serial_of, FullSerial, Mac, Node, NodeRef, NodeState, OverlayMode, Serial,
};
use crate::nfs_tree::{NfsTreeError, NodeFiles};
use crate::store::{EventKind, NewEvent, NewNode, StoreError, Tx};
use crate::workflows::{InstallMethod, Lookup};

/// `GET /api/v1/boot/pi`, parsed.
#[derive(Debug, Clone)]
pub struct BootRequest {
    pub serial: Serial,
    pub mac: Option<Mac>,
    pub full_serial: Option<FullSerial>,
    /// Upstream's `mode=discovery`: recorded, answered like any boot.
    pub mode: Option<String>,
    pub ip: Option<String>,
}

/// A callback's result: the node after it, or the transition it asked for that the
/// state machine refused (the report itself is recorded either way).
pub type CallbackOutcome = Result<Node, ServiceError>;

fn event<'a>(node: &'a Node, kind: EventKind, ip: Option<&'a str>, detail: Value) -> NewEvent<'a> {
    NewEvent {
        node_id: Some(&node.id),
        serial: &node.serial,
        kind,
        ip,
        detail,
    }
}

/// Moves `node` through `states`, one recorded event per step.
fn record_transitions(
    tx: &Tx<'_>,
    node: &mut Node,
    states: &[NodeState],
    reason: &str,
) -> Result<(), StoreError> {
    for &to in states {
        let from = node.state;
        node.state = to;
        tx.append_event(&event(
            node,
            EventKind::StateChange,
            None,
            json!({"from": from.as_str(), "to": to.as_str(), "reason": reason}),
        ))?;
    }
    Ok(())
}

/// MAC and full serial from an installed report, where they are well-formed; a malformed
/// one is ignored (the report is still recorded whole).
fn claimed_identity(node: &Node, report: &InstalledReport) -> (Option<Mac>, Option<FullSerial>) {
    let serial = Serial::parse(&node.serial).ok();
    let mac = report.mac.as_deref().and_then(|m| Mac::parse(m).ok());
    let full = match (report.full_serial.as_deref(), serial) {
        (Some(f), Some(s)) => full_serial_of(f, &s).ok().flatten(),
        _ => None,
    };
    (mac, full)
}

impl Services {
    pub fn boot(&self, req: &BootRequest) -> Result<PiBootResponse, ServiceError> {
        let mac = req.mac.as_ref().map(|m| m.as_str());
        let full_serial = req.full_serial.as_ref().map(|f| f.as_str());
        let ip = req.ip.as_deref();
        let settings = self.boot_settings();
        let (response, plan, node) = self.store.write(|tx| {
            let node = match tx.find_node(&NodeRef::Serial(req.serial.clone()))? {
                Some(n) => n,
                None if !self.config.auto_register => {
                    let response = unregistered();
                    tx.append_event(&NewEvent {
                        node_id: None,
                        serial: req.serial.as_str(),
                        kind: EventKind::BootRequest,
                        ip,
                        detail: json!({"mac": mac, "full_serial": full_serial, "mode": req.mode, "action": "local_boot", "registered": false}),
                    })?;
                    return Ok::<_, ServiceError>((response, None, None));
                }
                None => {
                    let n = tx.insert_node(&NewNode {
                        serial: req.serial.as_str().into(),
                        full_serial: full_serial.map(Into::into),
                        mac: mac.map(Into::into),
                        last_ip: req.ip.clone(),
                        ..Default::default()
                    })?;
                    tx.append_event(&event(&n, EventKind::Registered, ip, json!({"via": "boot", "mac": mac, "full_serial": full_serial})))?;
                    log::info!("registered new node {} ({}) as discovered", n.serial, n.id);
                    n
                }
            };
            let mut node = node;
            self.note_claim(tx, &mut node, mac, full_serial, ip)?;
            let rendered = self.rendered_workflow(&node);
            let decision = decide(&node, workflow_state(&rendered), &settings);
            if let Some(next) = decision.next_state {
                record_transitions(tx, &mut node, &[next], "boot")?;
            }
            let r = &decision.response;
            tx.append_event(&event(&node, EventKind::BootRequest, ip, json!({
                "mac": mac, "full_serial": full_serial, "mode": req.mode,
                "action": r.action, "state": r.state, "message": r.message,
                "base_image": r.base_image, "overlay_mode": r.overlay_mode,
            })))?;
            let node = tx.save_node(&node)?;
            tx.touch_boot(&node.id, ip)?;
            Ok((decision.response, decision.tree, Some(node)))
        })?;
        if let (Some(plan), Some(node)) = (plan, node) {
            self.prepare_node_tree(&node, &plan)
                .map_err(|source| ServiceError::NodeTree {
                    serial: node.serial.clone(),
                    source,
                })?;
        }
        log::info!(
            "boot {} from {}: {:?} ({}){}",
            req.serial,
            ip.unwrap_or("?"),
            response.action,
            response.state,
            response
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
        Ok(response)
    }

    /// First claim fills in full serial and MAC; a later different one flags the node.
    fn note_claim(
        &self,
        tx: &Tx<'_>,
        node: &mut Node,
        mac: Option<&str>,
        full_serial: Option<&str>,
        ip: Option<&str>,
    ) -> Result<(), StoreError> {
        let conflicts = node.claim_conflicts(mac, full_serial);
        if !conflicts.is_empty() {
            let text = conflicts.join("; ");
            log::warn!("serial {} claimed by another machine: {text}", node.serial);
            tx.append_event(&event(
                node,
                EventKind::Conflict,
                ip,
                json!({"conflicts": conflicts, "mac": mac, "full_serial": full_serial}),
            ))?;
            node.conflict = Some(text);
        }
        if node.full_serial.is_none() {
            node.full_serial = full_serial.map(Into::into);
        }
        if node.mac.is_none() {
            node.mac = mac.map(Into::into);
        }
        Ok(())
    }

    /// The node tree an `nfs_boot` answer relies on: created on first need, its files
    /// refreshed on every boot (hostname changes), `persist.img` for overlay `image`.
    /// A missing base image is only a warning: the Pi then reports which one it lacked.
    pub fn prepare_node_tree(&self, node: &Node, plan: &NodeTreePlan) -> Result<(), NfsTreeError> {
        let _guard = self.tree_lock.lock().unwrap_or_else(|p| p.into_inner());
        if !self.tree.nodes_path().is_dir() {
            self.tree.ensure_directories()?;
        }
        let files = NodeFiles {
            hostname: Some(plan.hostname.clone()),
            machine_id: plan.machine_id.clone(),
        };
        self.tree.create_node_tree(&node.serial, &files)?;
        if let Err(e) = self.tree.existing_base_image(&plan.base_image) {
            log::warn!(
                "node {}: {e}; answering anyway, the node will report it",
                node.serial
            );
        }
        if plan.overlay == OverlayMode::Image {
            self.tree
                .create_persist_image(&node.serial, self.config.nfs.persist_size_mb)?;
        }
        Ok(())
    }

    /// `POST /nodes/{id}/installed`: records the whole report, then installing ->
    /// installed (-> active for a diskless node).
    pub fn installed(
        &self,
        node_ref: &NodeRef,
        body: &Value,
        peer_ip: Option<&str>,
    ) -> CallbackOutcome {
        let report: InstalledReport = serde_json::from_value(body.clone())
            .map_err(|e| ServiceError::Unprocessable(format!("installed report: {e}")))?;
        let ip = report.ip_address.clone().or(peer_ip.map(Into::into));
        let outcome = self.store.write(|tx| {
            let mut node = self.find(tx, node_ref)?;
            // The report names the machine too (pi-init sends its full serial and MAC).
            let (mac, full_serial) = claimed_identity(&node, &report);
            self.note_claim(
                tx,
                &mut node,
                mac.as_ref().map(Mac::as_str),
                full_serial.as_ref().map(FullSerial::as_str),
                ip.as_deref(),
            )?;
            tx.append_event(&event(
                &node,
                EventKind::Installed,
                ip.as_deref(),
                body.clone(),
            ))?;
            let diskless = report.mode == "nfs_boot" || self.is_diskless(&node);
            // `success: false` is upstream's other way of reporting a failure.
            let next = if report.success {
                node.state.on_installed(diskless)
            } else {
                node.state
                    .transition(NodeState::InstallFailed)
                    .map(|s| vec![s])
            };
            let states = match next {
                Ok(states) => states,
                // The report stays recorded; only the transition is refused.
                Err(e) => return Ok(Err(ServiceError::Transition(e))),
            };
            record_transitions(tx, &mut node, &states, "installed callback")?;
            node.last_ip = ip.clone();
            let node = tx.save_node(&node)?;
            tx.touch_boot(&node.id, ip.as_deref())?;
            Ok::<_, ServiceError>(Ok(node))
        })?;
        outcome
    }

    /// `POST /nodes/{id}/install-failed`: records the error, installing -> install_failed.
    pub fn install_failed(
        &self,
        node_ref: &NodeRef,
        body: &Value,
        peer_ip: Option<&str>,
    ) -> CallbackOutcome {
        let report: InstallFailedReport = serde_json::from_value(body.clone())
            .map_err(|e| ServiceError::Unprocessable(format!("install-failed report: {e}")))?;
        let outcome = self.store.write(|tx| {
            let mut node = self.find(tx, node_ref)?;
            tx.append_event(&event(
                &node,
                EventKind::InstallFailed,
                peer_ip,
                body.clone(),
            ))?;
            log::warn!(
                "node {} reports failure at {}: {}",
                node.serial,
                report.step.as_deref().unwrap_or("?"),
                report.error
            );
            if let Err(e) = node.state.transition(NodeState::InstallFailed) {
                return Ok(Err(ServiceError::Transition(e)));
            }
            record_transitions(
                tx,
                &mut node,
                &[NodeState::InstallFailed],
                "install-failed callback",
            )?;
            Ok::<_, ServiceError>(Ok(tx.save_node(&node)?))
        })?;
        outcome
    }

    /// `POST /nodes/register-pi`: creates or updates the node (MAC, model, IP).
    pub fn register_pi(
        &self,
        req: &RegisterPiRequest,
        peer_ip: Option<&str>,
    ) -> Result<(Node, bool), ServiceError> {
        let serial = Serial::parse(&req.serial)?;
        let mac = Mac::parse(&req.mac)?;
        let ip = req.ip_address.clone().or(peer_ip.map(Into::into));
        self.store.write(|tx| {
            let detail = json!({"via": "register-pi", "mac": mac.as_str(), "model": req.model, "ip_address": ip});
            match tx.find_node(&NodeRef::Serial(serial.clone()))? {
                Some(mut node) => {
                    self.note_claim(tx, &mut node, Some(mac.as_str()), None, ip.as_deref())?;
                    if req.model.is_some() {
                        node.model = req.model.clone();
                    }
                    node.last_ip = ip.clone().or(node.last_ip);
                    tx.append_event(&event(&node, EventKind::Registered, ip.as_deref(), detail))?;
                    Ok((tx.save_node(&node)?, false))
                }
                None => {
                    let node = tx.insert_node(&NewNode {
                        serial: serial.as_str().into(),
                        mac: Some(mac.as_str().into()),
                        model: req.model.clone(),
                        last_ip: ip.clone(),
                        ..Default::default()
                    })?;
                    tx.append_event(&event(&node, EventKind::Registered, ip.as_deref(), detail))?;
                    Ok((node, true))
                }
            }
        })
    }

    pub(super) fn find(&self, tx: &Tx<'_>, node_ref: &NodeRef) -> Result<Node, ServiceError> {
        tx.find_node(node_ref)?
            .ok_or_else(|| ServiceError::NotFound(format!("no node {node_ref}")))
    }

    fn is_diskless(&self, node: &Node) -> bool {
        let id = node.workflow_id.as_deref().unwrap_or_default();
        matches!(self.workflows().get(id), Lookup::Found(wf) if wf.install_method == InstallMethod::Nfs)
    }
}
