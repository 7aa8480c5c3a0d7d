//! What a Pi asks and reports: the boot request, `register-pi` and the two callbacks.

use std::sync::Arc;

use pureboot_contract::boot_query::BootQuery;
use pureboot_contract::{InstallFailedReport, InstalledReport, PiBootResponse, RegisterPiRequest};
use serde_json::{json, Value};

use super::node_event::event;
use super::pool::ImagesSeen;
use super::rollout::canary_failed;
use super::versions::{pin_decision, BootKernel, ModulesSeen};
use super::volumes::{Repairs, TreeFiles};
use super::{workflow_state, ServiceError, Services};
use crate::domain::boot::{decide, layer_of, refused, unregistered, NodeTreePlan};
use crate::domain::effective::workflow_of;
use crate::domain::group::Group;
use crate::domain::ids::NodeRef;
use crate::domain::node::{full_serial_of_claim, known_model, Node};
use crate::domain::state::NodeState;
use crate::domain::workflow::{InstallMethod, Workflow};
use crate::nfs_tree::error::NfsTreeError;
use crate::nfs_tree::node::NodeFiles;
use crate::nfs_tree::persist_repair::PersistState;
use crate::nfs_tree::squashfs_check::Verdict;
use crate::store::events::{EventKind, NewEvent};
use crate::store::nodes::NewNode;
use crate::store::{StoreError, Tx};
use crate::templates::Vars;
use pureboot_contract::ids::{FullSerial, Mac, Serial};
use pureboot_contract::OverlayMode;

/// `GET /api/v1/boot/pi`: its query, parsed, and the address that asked.
#[derive(Debug, Clone)]
pub struct BootRequest {
    pub query: BootQuery,
    pub ip: Option<String>,
}

/// A callback's result: the node after it, or the transition it asked for that the
/// state machine refused (the report itself is recorded either way).
pub type CallbackOutcome = Result<Node, ServiceError>;

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

/// The blanks an accepted boot request's claim fills in: the MAC, and the full serial (an
/// 8-hex "full serial" is the short one again: recorded as nothing, and the 16-digit form
/// taken the first time it is seen).
fn fill_claim(node: &mut Node, mac: Option<&Mac>, full_serial: Option<&str>) {
    if node
        .full_serial
        .as_deref()
        .and_then(full_serial_of_claim)
        .is_none()
    {
        node.full_serial = full_serial.and_then(full_serial_of_claim);
    }
    if node.mac.is_none() {
        node.mac = mac.cloned();
    }
}

/// What an accepted boot request records before the node's answer is rendered: the
/// identity it claims where none is recorded, and its address as the node's.
fn accept(node: &mut Node, req: &BootRequest) {
    let full_serial = req.query.full_serial.as_ref().map(FullSerial::as_str);
    fill_claim(node, req.query.mac.as_ref(), full_serial);
    if req.ip.is_some() {
        node.last_ip = req.ip.clone();
    }
}

/// An address a client sends, as an address (normalised), or why not.
pub fn checked_ip(s: &str) -> Result<String, ServiceError> {
    s.parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| {
            ServiceError::Unprocessable(format!(
                "ip_address {:?} is not an IPv4 or IPv6 address",
                crate::text::escape_controls(&s.chars().take(64).collect::<String>())
            ))
        })
}

/// A board model as a client names it: short printable text (it reaches the operator's
/// terminal), recorded as one of the known models or `unknown`.
fn checked_model(s: &str) -> Result<String, ServiceError> {
    let ok = !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_graphic() || c == ' ');
    if ok {
        Ok(known_model(s).to_string())
    } else {
        Err(ServiceError::Unprocessable(
            "model must be 1 to 64 printable ASCII characters".into(),
        ))
    }
}

/// What `register-pi` answers: what the Pi sent, as recorded, and the node's state; not the
/// record (its id, machine-id and history are the operator's).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Registered {
    pub serial: Serial,
    pub mac: Option<Mac>,
    pub model: Option<String>,
    pub state: NodeState,
}

impl Registered {
    fn of(node: &Node) -> Registered {
        Registered {
            serial: node.serial.clone(),
            mac: node.mac.clone(),
            model: node.model.clone(),
            state: node.state,
        }
    }
}

/// The prepared plan differs from the committed one by the image version alone (a rollout or
/// rollback moved the channel in between): the node tree does not depend on the version (the
/// base image is mounted beside it, read-only), so the answer stands with the version chosen
/// in the commit, and a boot storm during many channel moves is not sent to prepare again
/// each time. Not when the writable layer follows the version
/// (`[nfs] reset_layer_on_version_change`): that layer was prepared for the other one.
fn only_version_moved(
    config: &crate::config::Config,
    decision: &crate::domain::boot::Decision,
    plan: Option<&NodeTreePlan>,
) -> bool {
    match (decision.tree.as_ref(), plan) {
        (Some(now), Some(prepared)) if !config.nfs.reset_layer_on_version_change => {
            let same_but_version = NodeTreePlan {
                base_image: prepared.base_image.clone(),
                ..now.clone()
            };
            same_but_version == *prepared
        }
        _ => false,
    }
}

/// The key of a client's rate limits: its address.
fn address_key(ip: Option<&str>) -> &str {
    ip.unwrap_or("-")
}

/// Times a boot is prepared and committed before it gives up: the node kept changing
/// (an operator's edit, another boot of the serial) between the two halves.
const BOOT_ATTEMPTS: u32 = 5;

/// A boot's first half (see [`Services::prepare_boot`]): for a registered node, what it was
/// rendered from and to, and the node tree prepared for it.
pub struct PreparedBoot {
    attempt: u32,
    rendered: Option<RenderedBoot>,
    /// The image files of the prepared tree, named in the answer.
    files: TreeFiles,
}

type Rendered = Result<Option<Workflow>, String>;

/// A node's setup rendered for a boot: the template context and group chain (as stored) it
/// was rendered from, the chain and workflow rendered, and the tree a boot would need.
pub struct RenderedBoot {
    vars: Vars,
    chain: Vec<Group>,
    groups: Vec<Group>,
    workflow: Rendered,
    plan: Option<NodeTreePlan>,
    /// The image version the plan's base image is (none: a directory not registered).
    version: Option<String>,
    /// What the version choice found of the booted kernel's modules (for the commit).
    modules: ModulesSeen,
    /// What the placement found of the pool servers' images (for the commit).
    images: ImagesSeen,
}

impl Services {
    /// A boot's first half, outside any lock (file work: the HTTP layer runs it on its I/O
    /// pool, then [`Services::commit_boot`] on the registry's, until that commits): the
    /// workflow is rendered and the node tree prepared for the node as read. A tree that
    /// cannot be prepared fails the boot with the registry unchanged. `attempt` counts
    /// from 1.
    pub fn prepare_boot(
        &self,
        req: &BootRequest,
        attempt: u32,
    ) -> Result<PreparedBoot, ServiceError> {
        let snapshot = self
            .store
            .read(|tx| tx.find_node(&NodeRef::Serial(req.query.serial.clone())))?;
        // The asking address's budget for registered nodes (unknown serials have theirs
        // in the transaction).
        if attempt == 1 && snapshot.is_some() {
            self.spend_budget(req.ip.as_deref())?;
        }
        let mut files = TreeFiles::default();
        let rendered = match snapshot {
            // Refused in the transaction: nothing to render or write for it.
            Some(node) if !self.refusal(&node, req).is_empty() => None,
            Some(mut node) => {
                accept(&mut node, req);
                let rendered = self.render_and_plan(&node, req.query.kernel.as_deref());
                if let Some(plan) = &rendered.plan {
                    if let Some(why) = self.damaged_base(plan) {
                        self.note_failed_boot(&node, req, &why, &why);
                        return Err(ServiceError::Unprocessable(why));
                    }
                    self.layer_follows_version(&node, plan, rendered.version.as_deref());
                    match self.prepare_node_tree(&node, plan) {
                        Ok(prepared) => files = prepared,
                        Err(source) => {
                            let shown =
                                "the node tree could not be prepared; see the controller log";
                            let logged = format!("preparing the node tree: {source}");
                            self.note_failed_boot(&node, req, &logged, shown);
                            return Err(ServiceError::NodeTree {
                                serial: node.serial.to_string(),
                                source,
                            });
                        }
                    }
                }
                Some(rendered)
            }
            None => None,
        };
        Ok(PreparedBoot {
            attempt,
            rendered,
            files,
        })
    }

    /// A boot's second half, registry work only, in the registry's next group commit (see
    /// [`Services::grouped`]): it re-reads the node and commits the state change, the events
    /// and the boot id only if the answer is still the one the tree was prepared for.
    /// `Ok(None)`: the node changed in between; prepare again (after [`BOOT_ATTEMPTS`] the
    /// boot is refused as a conflict).
    pub async fn commit_boot(
        self: &Arc<Self>,
        req: &BootRequest,
        prepared: PreparedBoot,
    ) -> Result<Option<PiBootResponse>, ServiceError> {
        let attempt = prepared.attempt;
        let r = req.clone();
        let committed = self
            .grouped(move |s, tx| s.boot_transaction(tx, &r, &prepared))
            .answer()
            .await?;
        let Some(response) = committed else {
            if attempt < BOOT_ATTEMPTS {
                return Ok(None);
            }
            return Err(ServiceError::Conflict(format!(
                "node {} kept changing during its boot; ask again",
                req.query.serial
            )));
        };
        log::info!(
            "boot {} from {}: {:?} ({}){}",
            req.query.serial,
            req.ip.as_deref().unwrap_or("?"),
            response.action,
            response.state,
            response
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
        Ok(Some(response))
    }

    /// [`Services::commit_boot`]'s transaction; `None`: the prepared answer is stale.
    fn boot_transaction(
        &self,
        tx: &Tx<'_>,
        req: &BootRequest,
        prepared: &PreparedBoot,
    ) -> Result<Option<PiBootResponse>, ServiceError> {
        let mac = req.query.mac.as_ref();
        let full_serial = req.query.full_serial.as_ref().map(|f| f.as_str());
        let ip = req.ip.as_deref();
        let mut node = match tx.find_node(&NodeRef::Serial(req.query.serial.clone()))? {
            Some(n) => n,
            None if !self.config.auto_register => {
                self.unregistered_boot(tx, req)?;
                return Ok(Some(unregistered()));
            }
            None => self.discover(tx, req)?,
        };
        let why = self.refusal(&node, req);
        if !why.is_empty() {
            self.note_refused(tx, &node, req, &why)?;
            return Ok(Some(refused(node.state)));
        }
        accept(&mut node, req);
        let no_render = Ok(None);
        let (rendered, plan) = match &prepared.rendered {
            // Rendered from the same context and chain: decided on the rendered chain.
            Some(r) if r.vars == self.template_vars(&node) && r.chain == node.groups => {
                node.groups = r.groups.clone();
                (&r.workflow, r.plan.as_ref())
            }
            // Nothing rendered and nothing to render: a node without a workflow.
            None if workflow_of(&node, &node.groups).is_none() => (&no_render, None),
            _ => return Ok(None),
        };
        let boot_id = crate::store::new_uuid();
        let mut decision = decide(
            &node,
            workflow_state(rendered),
            &self.boot_settings(),
            &boot_id,
            node.confirmed_mac_is(mac),
        );
        // The version is chosen here, once, in the boot's own transaction: a channel that
        // moved since the tree was prepared makes the plans differ, and the boot is
        // prepared again for the new one (never an answer mixing two versions).
        let mut seen =
            (prepared.rendered.as_ref()).map_or_else(Default::default, |r| r.modules.clone());
        let kernel = req.query.kernel.as_deref().map(|release| BootKernel {
            release,
            base: self.tree.base_path(),
            seen: &mut seen,
        });
        let version = pin_decision(tx, &node.id, &mut decision, kernel)?;
        let wf = rendered.as_ref().ok().and_then(Option::as_ref);
        let prepared_on = plan.and_then(|p| p.nfs_server.as_deref());
        let mut images =
            (prepared.rendered.as_ref()).map_or_else(Default::default, |r| r.images.clone());
        let placed = self.pool_decision(tx, &node, wf, &mut decision, prepared_on, &mut images)?;
        if decision.tree.as_ref() != plan && !only_version_moved(&self.config, &decision, plan) {
            return Ok(None);
        }
        if decision.tree.is_some() {
            prepared.files.apply(&mut decision.response);
        }
        if let Some(p) = &placed {
            self.record_placement(tx, &node, p)?;
        }
        if let Some(next) = decision.next_state {
            record_transitions(tx, &mut node, &[next], "boot")?;
        }
        let r = &decision.response;
        if r.callback_url.is_some() {
            let layer = plan
                .map(|p| layer_of(p, r.persist_image.as_deref(), &boot_id))
                .unwrap_or_default();
            tx.bind_boot(&node.id, address_key(ip), &boot_id, &layer)?;
            tx.set_boot_version(&boot_id, version.as_deref())?;
            node.boot_ip = req.ip.clone();
        }
        tx.append_event(&event(
            &node,
            EventKind::BootRequest,
            ip,
            json!({
                "mac": mac, "full_serial": full_serial, "mode": req.query.mode,
                "action": r.action, "state": r.state, "message": r.message,
                "base_image": r.base_image, "version": version, "overlay_mode": r.overlay_mode,
            }),
        ))?;
        tx.save_booted_node(&node, ip)?;
        Ok(Some(decision.response))
    }

    /// The asking address's budget for boots and reports of registered nodes, then
    /// everyone's: 429 with `Retry-After` past either.
    fn spend_budget(&self, ip: Option<&str>) -> Result<(), ServiceError> {
        if !self.address_limiter.allow(address_key(ip)) {
            return Err(ServiceError::Limited {
                detail: format!(
                    "{} asks too often (node_requests_per_minute = {}); try again later",
                    address_key(ip),
                    self.config.node_requests_per_minute
                ),
                retry_after: self.address_limiter.retry_after_secs(),
            });
        }
        if !self.boot_budget.allow("all") {
            return Err(ServiceError::Limited {
                detail: format!(
                    "the controller takes {} boots and reports per minute \
                     (boot_requests_per_minute); try again later",
                    self.config.boot_requests_per_minute
                ),
                retry_after: self.boot_budget.retry_after_secs(),
            });
        }
        Ok(())
    }

    /// Why `req` may not speak for `node` (empty: it may): a MAC or full serial other than
    /// the recorded ones, no MAC where one is recorded, or, with `pin_boot_address`, an
    /// address other than the one of the node's last accepted boot.
    fn refusal(&self, node: &Node, req: &BootRequest) -> Vec<String> {
        let full_serial = req.query.full_serial.as_ref().map(FullSerial::as_str);
        let mut why = node.refusal(req.query.mac.as_ref(), full_serial);
        if self.config.pin_boot_address && self.config.reports_from_boot_address {
            if let (Some(last), Some(ip)) = (node.last_ip.as_deref(), req.ip.as_deref()) {
                if last != ip {
                    why.push(format!(
                        "address {ip} is not the one of its last boot ({last}; pin_boot_address)"
                    ));
                }
            }
        }
        why
    }

    /// A request that may not speak for the node: one conflict event (within the asking
    /// address's budget for them), nothing of the node changed.
    fn note_refused(
        &self,
        tx: &Tx<'_>,
        node: &Node,
        req: &BootRequest,
        why: &[String],
    ) -> Result<(), StoreError> {
        if !self.conflict_limiter.allow(address_key(req.ip.as_deref())) {
            return Ok(());
        }
        let text = crate::text::escape_controls(&why.join("; "));
        log::warn!(
            "boot of {} from {} refused: {text}",
            node.serial,
            address_key(req.ip.as_deref())
        );
        tx.append_event(&event(
            node,
            EventKind::Conflict,
            req.ip.as_deref(),
            json!({
                "conflicts": why, "refused": true,
                "mac": req.query.mac.as_ref().map(Mac::as_str),
                "full_serial": req.query.full_serial.as_ref().map(FullSerial::as_str),
            }),
        ))?;
        Ok(())
    }

    /// An unknown serial with auto-registration off: one event per serial per minute,
    /// within the asking address's and everyone's budget for unknown serials (past it the
    /// answer is the same, unrecorded).
    fn unregistered_boot(&self, tx: &Tx<'_>, req: &BootRequest) -> Result<(), ServiceError> {
        let ip = address_key(req.ip.as_deref());
        if !self.unknown_once.allow(req.query.serial.as_str()) {
            return Ok(());
        }
        if !self.unknown_per_address.allow(ip) || !self.unknown_limiter.allow("unknown") {
            log::debug!(
                "boot of unregistered {} not recorded: over unknown_serials_per_minute",
                req.query.serial
            );
            return Ok(());
        }
        tx.append_event(&NewEvent {
            node_id: None,
            serial: req.query.serial.as_str(),
            kind: EventKind::BootRequest,
            ip: req.ip.as_deref(),
            detail: json!({
                "mac": req.query.mac.as_ref().map(Mac::as_str),
                "full_serial": req.query.full_serial.as_ref().map(FullSerial::as_str),
                "mode": req.query.mode, "action": "local_boot", "registered": false,
            }),
        })?;
        Ok(())
    }

    /// Refuses a new discovered node once `max_discovered_nodes` are waiting, or when
    /// unknown serials come faster than `unknown_serials_per_minute` (a tenth of it from
    /// one address).
    fn check_discovery_cap(&self, tx: &Tx<'_>, ip: Option<&str>) -> Result<(), ServiceError> {
        let max = self.config.max_discovered_nodes;
        if max > 0 && tx.count_in_state(NodeState::Discovered)? >= max as i64 {
            return Err(ServiceError::Limited {
                detail: format!(
                    "{max} discovered nodes are waiting (max_discovered_nodes): assign or \
                     remove some before more are registered"
                ),
                retry_after: 60,
            });
        }
        if !self.unknown_per_address.allow(address_key(ip))
            || !self.unknown_limiter.allow("unknown")
        {
            return Err(ServiceError::Limited {
                detail: format!(
                    "unknown serials arrive faster than unknown_serials_per_minute = {}; try \
                     again later",
                    self.config.unknown_serials_per_minute
                ),
                retry_after: self.unknown_per_address.retry_after_secs(),
            });
        }
        Ok(())
    }

    /// An unknown serial with auto-registration on: a `discovered` node.
    fn discover(&self, tx: &Tx<'_>, req: &BootRequest) -> Result<Node, ServiceError> {
        self.check_discovery_cap(tx, req.ip.as_deref())?;
        let mac = req.query.mac.as_ref();
        let full_serial = req.query.full_serial.as_ref().map(FullSerial::as_str);
        let placed = self.placed_by_rule(tx, &req.query.serial, mac, None)?;
        let n = tx.insert_node(&NewNode {
            full_serial: full_serial.and_then(full_serial_of_claim),
            mac: mac.cloned(),
            last_ip: req.ip.clone(),
            ..placed.new_node(req.query.serial.clone())
        })?;
        tx.append_event(&event(
            &n,
            EventKind::Registered,
            req.ip.as_deref(),
            json!({"via": "boot", "mac": mac, "full_serial": full_serial, "group": n.group, "rule": placed.rule}),
        ))?;
        log::info!(
            "registered new node {} ({}) as {}{}",
            n.serial,
            n.id,
            n.state,
            n.group
                .as_deref()
                .map(|g| format!(" in group {g}"))
                .unwrap_or_default()
        );
        Ok(n)
    }

    /// A boot that could not be answered: `logged` in the log, `recorded` in the node's
    /// events (best effort: the disk may be full), the node's state unchanged.
    fn note_failed_boot(&self, node: &Node, req: &BootRequest, logged: &str, recorded: &str) {
        log::error!("boot {}: {logged}", node.serial);
        let _ = self.store.write(|tx| {
            tx.append_event(&event(
                node,
                EventKind::BootRequest,
                req.ip.as_deref(),
                json!({"mode": req.query.mode, "action": null, "error": recorded}),
            ))
        });
    }

    /// Why the squashfs base image `dir` (a directory of `base/`) must not be booted: its
    /// file no longer matches the digest its import recorded (see `squashfs_check`). None
    /// for an intact file, a tree, or a name that is no image (the boot reports that).
    /// With a pool, the copy on the node's server is the one checked (the one it mounts).
    fn damaged_base(&self, plan: &NodeTreePlan) -> Option<String> {
        let dir = &plan.base_image;
        let tree = self.tree_for(plan.nfs_server.as_deref()).ok()?;
        let path = tree.base_image_path(dir).ok()?;
        match self.squashfs.check(&path) {
            Verdict::Damaged(why) => Some(format!("base image {dir} is damaged: {why}")),
            Verdict::Tree | Verdict::Intact => None,
        }
    }

    /// The node tree an `nfs_boot` answer relies on: created on first need, its files
    /// refreshed on every boot (hostname changes), the persist image for overlay `image`
    /// and the volumes; returns the images' current names. A missing base image is only
    /// a warning: the Pi then reports which one it lacked.
    pub fn prepare_node_tree(
        &self,
        node: &Node,
        plan: &NodeTreePlan,
    ) -> Result<TreeFiles, NfsTreeError> {
        let _guard = self.tree_lock(&node.serial);
        // Its server's tree when the pool placed it (`service/pool.rs`).
        let tree = self.tree_for(plan.nfs_server.as_deref())?;
        if !tree.nodes_path().is_dir() {
            tree.ensure_directories()?;
        }
        let files = NodeFiles {
            hostname: Some(plan.hostname.clone()),
            machine_id: plan.machine_id.clone(),
        };
        tree.create_node_tree(&node.serial, &files)?;
        if let Err(e) = tree.existing_base_image(&plan.base_image) {
            log::warn!(
                "node {}: {e}; answering anyway, the node will report it",
                node.serial
            );
        }
        self.prepare_images(tree, node, plan)
    }

    /// The node's template context, its group chain and workflow rendered with it, the
    /// tree a boot of the node as it is would need (none for a node the boot would not give
    /// one) and the image version that tree is for.
    fn render_and_plan(&self, node: &Node, kernel: Option<&str>) -> RenderedBoot {
        let vars = self.template_vars(node);
        let (groups, workflow) = match self.render_for(&self.workflows(), node, &vars) {
            Ok(r) => (r.groups, Ok(r.workflow)),
            Err(why) => (node.groups.clone(), Err(why)),
        };
        let decided = Node {
            groups: groups.clone(),
            ..node.clone()
        };
        let mut decision = decide(
            &decided,
            workflow_state(&workflow),
            &self.boot_settings(),
            "-",
            false,
        );
        // The version as the registry has it now; the commit resolves it again in its own
        // transaction (see `boot_transaction`).
        let mut modules = ModulesSeen::default();
        let mut images = ImagesSeen::default();
        let version = self
            .store
            .read(|tx| {
                let kernel = kernel.map(|release| BootKernel {
                    release,
                    base: self.tree.base_path(),
                    seen: &mut modules,
                });
                let version = pin_decision(tx, &node.id, &mut decision, kernel)?;
                let wf = workflow.as_ref().ok().and_then(Option::as_ref);
                self.pool_decision(tx, &decided, wf, &mut decision, None, &mut images)?;
                Ok::<_, StoreError>(version)
            })
            .unwrap_or_else(|e| {
                log::warn!("node {}: resolving its base image: {e}", node.serial);
                None
            });
        RenderedBoot {
            vars,
            chain: node.groups.clone(),
            groups,
            workflow,
            plan: decision.tree,
            version,
            modules,
            images,
        }
    }

    /// Prepares the tree of a node the operator just added or gave a workflow, so its first
    /// boot finds it ready and only checks it (what a storm of first boots would otherwise
    /// wait on), and a tree that cannot be written shows in the log at once. Best effort:
    /// every boot prepares the tree again and answers for it.
    pub fn prepare_tree_ahead(&self, node: &Node) {
        let Some(plan) = self.render_and_plan(node, None).plan else {
            return;
        };
        // With a pool, a node is placed by its first boot (in the registry's transaction,
        // by the weights then): a tree written ahead could land on another server.
        if self.pool.enabled()
            && self
                .store
                .read(|tx| tx.nfs_home(&node.id))
                .map_or(true, |home| home.is_none())
        {
            return;
        }
        if let Err(e) = self.prepare_node_tree(node, &plan) {
            log::warn!(
                "node {}: tree not prepared ahead of its boot: {e}",
                node.serial
            );
        }
    }

    /// `POST /nodes/{boot id}/installed`: records the whole report, then installing ->
    /// installed (-> active for a diskless node); a refused transition records nothing. `{"success": false, "error": ...}` is
    /// upstream's way of reporting a failure: recorded and handled as `install-failed`.
    ///
    /// With the node comes what is to be repaired: its persist image, volumes not mounted
    /// ([`Services::repair_images`], file work the caller runs off the registry's).
    pub async fn installed(
        self: &Arc<Self>,
        boot_id: String,
        body: Value,
        report: InstalledReport,
        peer_ip: Option<String>,
    ) -> Result<(Node, Repairs), ServiceError> {
        if let Some(failure) = report.failure() {
            let reason = "installed callback (success: false)";
            return self
                .record_failure(boot_id, body, peer_ip, failure, reason)
                .await
                .map(|node| (node, Repairs::default()));
        }
        // Checked as an address, recorded with the report; the node's address is the one
        // its boot was asked from, never what a report says.
        if let Some(ip) = report.ip_address.as_deref() {
            checked_ip(ip)?;
        }
        let outcome = self.grouped(move |s, tx| {
            let (mut node, boot_ip) = s.reporting_node(tx, &boot_id, peer_ip.as_deref())?;
            // This boot's report is already recorded: the same report sent again (a
            // controller that committed it died before answering, and the Pi or its agent
            // asked another) is answered as the first was, and stored once.
            if tx
                .boot_record(&boot_id)?
                .is_some_and(|b| b.installed_at.is_some())
            {
                log::info!(
                    "node {}: installed report of boot {boot_id} sent again; already recorded",
                    node.serial
                );
                return Ok(Ok((node, Repairs::default())));
            }
            let ip = Some(boot_ip.as_str()).filter(|ip| !ip.is_empty());
            let diskless = report.mode == "nfs_boot" || s.is_diskless(&node);
            let states = match node.state.on_installed(diskless) {
                Ok(states) => states,
                // Refused: nothing stored (the caller counts it).
                Err(e) => return Ok(Err(ServiceError::Transition(e))),
            };
            // Identity (MAC, full serial) is not taken from reports: only a boot request
            // the controller accepted records it.
            tx.append_event(&event(&node, EventKind::Installed, ip, body.clone()))?;
            let steps = serde_json::to_value(&report.steps).unwrap_or_default();
            tx.boot_installed(&boot_id, report.elapsed_ms, &steps)?;
            tx.set_running_version(&node.id, &boot_id)?;
            // A boot that fell back from its planned layer (to tmpfs) runs on a layer of its
            // own: a first_boot step done there is not done on the planned one.
            if report
                .overlay
                .as_ref()
                .is_some_and(|o| o.used != o.wanted || o.fallback.is_some())
            {
                tx.set_boot_layer(&boot_id, &format!("boot:{boot_id}"))?;
            }
            record_transitions(tx, &mut node, &states, "installed callback")?;
            let persist = s.note_image_overlay(tx, &mut node, &report, ip)?;
            let volumes = s.note_volumes(tx, &mut node, &report, ip, persist)?;
            let repair = Repairs { persist, volumes };
            node.last_ip = ip.map(Into::into);
            let node = tx.save_booted_node(&node, ip)?;
            Ok(Ok((node, repair)))
        });
        outcome.answer().await?
    }

    /// The `image` overlay as the report tells it: a node meant to boot on its persist.img
    /// that says it fell back to another upper layer is flagged degraded (true: repair its
    /// image once the report is committed); a boot that says the image overlay works
    /// clears the flag.
    fn note_image_overlay(
        &self,
        tx: &Tx<'_>,
        node: &mut Node,
        report: &InstalledReport,
        ip: Option<&str>,
    ) -> Result<bool, StoreError> {
        // Overlay modes are no templates: the loaded workflow resolves as the rendered one.
        let wf = self.loaded_workflow(node);
        let planned = crate::domain::boot::effective(node, wf.as_ref(), "-")
            .overlay
            .value;
        // Typed from pi-inits that send `overlay`, read from the text of older ones.
        let Some(outcome) = report.overlay_outcome(OverlayMode::Image) else {
            return Ok(false);
        };
        let image_works = outcome.used == OverlayMode::Image && outcome.fallback.is_none();
        let used = outcome.used.as_str();
        if planned == OverlayMode::Image && !image_works {
            let reason = format!(
                "image overlay not used (booted with {used}): {}",
                outcome.fallback.as_deref().unwrap_or("no reason given")
            );
            log::warn!(
                "node {} degraded: {}",
                node.serial,
                crate::text::escape_controls(&reason)
            );
            tx.append_event(&event(
                node,
                EventKind::Degraded,
                ip,
                json!({"degraded": true, "overlay": "image", "used": used, "reason": reason}),
            ))?;
            node.degraded = Some(reason);
            return Ok(true);
        }
        if image_works {
            if let Some(was) = node.degraded.take() {
                log::info!("node {}: image overlay works again", node.serial);
                tx.append_event(&event(
                    node,
                    EventKind::Degraded,
                    ip,
                    json!({"degraded": false, "overlay": "image", "was": was}),
                ))?;
            }
        }
        Ok(false)
    }

    /// After a degraded report: a persist.img that cannot be a file system is moved aside
    /// (never deleted) and a fresh one made, so the next boot is persistent again. One that
    /// looks intact is left for the operator (`overlay reset`). Failures are logged; the
    /// node stays flagged either way.
    pub fn repair_persist_image(&self, node: &Node) {
        let serial = &node.serial;
        let tree = match self.node_tree(node) {
            Ok(t) => t,
            Err(e) => return log::error!("node {serial}: its server's tree: {e}"),
        };
        let _guard = self.tree_lock(serial);
        let detail = match tree.persist_image_state(serial) {
            Ok(PersistState::Ext4) => {
                log::warn!(
                    "node {serial}: its persist.img has an ext4 superblock but the node could not \
                     use it; left in place (`pureboot-controller overlay reset {serial}` sets it \
                     aside and makes a fresh one)"
                );
                json!({"action": "left in place", "persist_image": "ext4"})
            }
            Ok(state) => {
                match tree.set_aside_persist_image(serial, self.config.nfs.persist_size_mb) {
                    Ok(moved) => {
                        let name = moved
                            .as_ref()
                            .and_then(|p| p.file_name())
                            .map(|n| n.to_string_lossy().into_owned());
                        log::warn!(
                        "node {serial}: persist.img was {state:?}; {} and a fresh image created",
                        moved
                            .as_ref()
                            .map(|p| format!("moved aside to {}", p.display()))
                            .unwrap_or_else(|| "none there".into())
                    );
                        json!({"action": "fresh image", "was": state, "moved_to": name})
                    }
                    Err(e) => {
                        log::error!("node {serial}: repairing persist.img: {e}");
                        json!({"action": "repair failed", "was": state})
                    }
                }
            }
            Err(e) => {
                log::error!("node {serial}: checking persist.img: {e}");
                json!({"action": "check failed"})
            }
        };
        let logged = self
            .store
            .write(|tx| tx.append_event(&event(node, EventKind::Degraded, None, detail)));
        if let Err(e) = logged {
            log::error!("node {serial}: recording the persist.img repair: {e}");
        }
    }

    /// `POST /nodes/{id}/install-failed`: records the error, installing -> install_failed.
    pub async fn install_failed(
        self: &Arc<Self>,
        boot_id: String,
        body: Value,
        report: InstallFailedReport,
        peer_ip: Option<String>,
    ) -> CallbackOutcome {
        self.record_failure(boot_id, body, peer_ip, report, "install-failed callback")
            .await
    }

    /// A failure report, whichever route it came by: one `install_failed` event, then
    /// installing -> install_failed. A refused transition stores nothing.
    async fn record_failure(
        self: &Arc<Self>,
        boot_id: String,
        body: Value,
        peer_ip: Option<String>,
        failure: InstallFailedReport,
        reason: &'static str,
    ) -> CallbackOutcome {
        let outcome = self.grouped(move |s, tx| {
            let peer_ip = peer_ip.as_deref();
            let InstallFailedReport { error, step, .. } = &failure;
            let (mut node, _) = s.reporting_node(tx, &boot_id, peer_ip)?;
            if let Err(e) = node.state.transition(NodeState::InstallFailed) {
                return Ok(Err(ServiceError::Transition(e)));
            }
            tx.append_event(&event(
                &node,
                EventKind::InstallFailed,
                peer_ip,
                body.clone(),
            ))?;
            // A rollout's canary that fails this boot stops the rollout (service/rollout.rs).
            let at = step
                .as_deref()
                .map(|s| format!(" at {s}"))
                .unwrap_or_default();
            let what = format!("pi-init reported failure{at}: {error}");
            tx.set_boot_failed(&boot_id, &what)?;
            let stopped = canary_failed(tx, &node.id, node.serial.as_str(), &boot_id, &what)?;
            log::warn!(
                "node {} reports failure at {}: {}",
                node.serial,
                crate::text::escape_controls(step.as_deref().unwrap_or("?")),
                crate::text::escape_controls(error)
            );
            record_transitions(tx, &mut node, &[NodeState::InstallFailed], reason)?;
            Ok(Ok((tx.save_node(&node)?, stopped)))
        });
        let (node, stopped) = outcome.answer().await??;
        if let Some((rollout, why)) = stopped {
            // The log line, the canaries' folders and the hook: after the commit.
            let s = self.clone();
            tokio::task::spawn_blocking(move || s.after_abort(&rollout, &why));
        }
        Ok(node)
    }

    /// `POST /nodes/register-pi`: creates a node (when auto-registration is on), or fills
    /// in the model an existing one lacks. It never changes what is recorded nor sets
    /// identity (MAC) or address on an existing node, nor flags a conflict: anyone on the
    /// boot network can call it, so it must not let one client speak for another's node.
    /// A MAC other than the recorded one is refused. The body's address is recorded in the
    /// event only: a node's address comes from its accepted boots.
    pub async fn register_pi(
        self: &Arc<Self>,
        req: &RegisterPiRequest,
        peer_ip: Option<&str>,
    ) -> Result<(Registered, bool), ServiceError> {
        let peer_ip = peer_ip.map(str::to_string);
        let serial = Serial::parse(&req.serial)?;
        let mac = Mac::parse(&req.mac)?;
        let model = req.model.as_deref().map(checked_model).transpose()?;
        let ip = req.ip_address.as_deref().map(checked_ip).transpose()?;
        let outcome = self.grouped(move |s, tx| {
            let peer = peer_ip.as_deref();
            let detail = json!({"via": "register-pi", "mac": mac.as_str(), "model": model, "ip_address": ip});
            match tx.find_node(&NodeRef::Serial(serial.clone()))? {
                Some(mut node) => {
                    if node.mac.as_ref().is_some_and(|known| *known != mac) {
                        return Err(ServiceError::Conflict(format!(
                            "serial {serial} is registered with another MAC; nothing changed"
                        )));
                    }
                    if node.model.is_some() || model.is_none() {
                        return Ok((Registered::of(&node), false, None));
                    }
                    node.model = model.clone();
                    // Still at its first contact (discovered, in no group): the rules see
                    // the model now.
                    let mut detail = detail;
                    if node.state == NodeState::Discovered && node.group.is_none() {
                        let placed = s.placed_by_rule(tx, &serial, node.mac.as_ref(), model.as_deref())?;
                        if let Some(group) = placed.group {
                            node.group = Some(group);
                            node.state = placed.state;
                            detail["group"] = json!(node.group);
                            detail["rule"] = json!(placed.rule);
                        }
                    }
                    tx.append_event(&event(&node, EventKind::Registered, peer, detail))?;
                    let node = tx.save_node(&node)?;
                    Ok((Registered::of(&node), false, Some(node)))
                }
                None if !s.config.auto_register => Err(ServiceError::Forbidden(
                    "auto_register is off: an operator registers nodes (node add)".into(),
                )),
                None => {
                    s.check_discovery_cap(tx, peer)?;
                    let placed = s.placed_by_rule(tx, &serial, Some(&mac), model.as_deref())?;
                    let node = tx.insert_node(&NewNode {
                        mac: Some(mac.clone()),
                        model: model.clone(),
                        ..placed.new_node(serial.clone())
                    })?;
                    let mut detail = detail;
                    detail["group"] = json!(node.group);
                    detail["rule"] = json!(placed.rule);
                    tx.append_event(&event(&node, EventKind::Registered, peer, detail))?;
                    // A rule's group may give it a workflow: its folder then follows too.
                    let follow = node.group.is_some().then(|| node.clone());
                    Ok((Registered::of(&node), true, follow))
                }
            }
        })
        .answer()
        .await?;
        let (registered, created, learned) = outcome;
        // A model learned now (or a new node a rule put in a group) is the board its TFTP
        // folder is written for: written off the Pi's request (it takes seconds), one folder
        // at a time as every folder write.
        if let Some(node) = learned.filter(|_| self.config.tftp.root.is_some()) {
            let s = Arc::clone(self);
            std::thread::Builder::new()
                .name("tftp-learned-model".into())
                .spawn(move || s.follow_tftp(&node))
                .map_err(|e| log::warn!("TFTP folder for a learned model not written: {e}"))
                .ok();
        }
        Ok((registered, created))
    }

    /// The node a report is for and the address its boot was asked from: the boot with
    /// this id (handed out in the boot answer's callback URL; a serial or node id is no
    /// boot id) and, unless `reports_from_boot_address = false`, only from that address.
    pub(super) fn reporting_node(
        &self,
        tx: &Tx<'_>,
        boot_id: &str,
        peer_ip: Option<&str>,
    ) -> Result<(Node, String), ServiceError> {
        self.spend_budget(peer_ip)?;
        self.report_target(tx, boot_id, peer_ip)
    }

    /// [`Self::reporting_node`] without spending the address's budget: for a check that
    /// comes before the report's own unit (which spends it once).
    pub(super) fn report_target(
        &self,
        tx: &Tx<'_>,
        boot_id: &str,
        peer_ip: Option<&str>,
    ) -> Result<(Node, String), ServiceError> {
        let (node, asked) = tx.find_boot(boot_id)?.ok_or_else(|| {
            ServiceError::NotFound(
                "no boot with this id: reports go to the callback_url of the boot answer".into(),
            )
        })?;
        if self.config.reports_from_boot_address {
            if let Some(peer) = peer_ip {
                if asked != peer {
                    log::warn!(
                        "report for node {}'s boot from {peer}, which did not ask for it ({asked}): refused",
                        node.serial
                    );
                    return Err(ServiceError::Forbidden(
                        "this boot was asked for from another address".into(),
                    ));
                }
            }
        }
        Ok((node, asked))
    }

    pub(super) fn find(&self, tx: &Tx<'_>, node_ref: &NodeRef) -> Result<Node, ServiceError> {
        tx.find_node(node_ref)?
            .ok_or_else(|| ServiceError::NotFound(format!("no node {node_ref}")))
    }

    fn is_diskless(&self, node: &Node) -> bool {
        self.loaded_workflow(node)
            .is_some_and(|wf| wf.install_method == InstallMethod::Nfs)
    }
}
