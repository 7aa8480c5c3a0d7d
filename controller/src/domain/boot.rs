//! The boot decision: node + its (rendered) workflow + settings -> the answer to the Pi,
//! the state to move to, and the node tree the answer relies on.

use pureboot_contract::{BootAction, PiBootResponse};

use super::effective::{Effective, Layers};
use super::node::Node;
use super::state::NodeState;
use super::volumes::PlannedVolume;
use super::workflow::{InstallMethod, Workflow};
use pureboot_contract::ids::MachineId;
use pureboot_contract::OverlayMode;

/// Seconds a discovered node waits before asking again.
pub const DISCOVERED_RETRY_SECS: u32 = 5;
/// Seconds a node waits when the controller cannot answer it yet (broken workflow ...).
pub const BLOCKED_RETRY_SECS: u32 = 30;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSettings {
    pub public_url: String,
    pub nfs_server: String,
    /// The export root (holds `base/` and `nodes/`), announced as `nfs_path`.
    pub nfs_path: String,
    pub default_base_image: String,
    pub nfs_options: Option<String>,
    pub nfs_enabled: bool,
}

/// The node's workflow as far as the caller could resolve it.
pub enum WorkflowState<'a> {
    Unassigned,
    /// Rendered for this node.
    Ready(&'a Workflow),
    /// Assigned but unusable: missing, broken file or failed render; the text says which.
    Unusable(String),
}

/// The per-node files and layer an `nfs_boot` answer promises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTreePlan {
    pub base_image: String,
    pub overlay: OverlayMode,
    /// As rendered (a workflow's template may render a name the tree refuses).
    pub hostname: String,
    pub machine_id: MachineId,
    /// The node's volumes, its own, its groups' and its workflow's, parents first.
    pub volumes: Vec<PlannedVolume>,
    /// The pool server the tree is on (`[[nfs.servers]]`; none: the one `[nfs]` tree),
    /// set by the service after placing the node (`controller/src/service/pool.rs`).
    pub nfs_server: Option<String>,
}

impl NodeTreePlan {
    /// The node keeps data on its server's export: a persist image or upper directory,
    /// or volumes. Such a node moves only by `node move`.
    pub fn holds_data(&self) -> bool {
        self.overlay.writes_export() || !self.volumes.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub response: PiBootResponse,
    pub next_state: Option<NodeState>,
    pub tree: Option<NodeTreePlan>,
}

impl Decision {
    fn answer(state: NodeState, action: BootAction, message: String) -> Decision {
        Decision {
            response: PiBootResponse {
                state: state.as_str().into(),
                action: Some(action),
                message: Some(message),
                ..Default::default()
            },
            next_state: None,
            tree: None,
        }
    }

    /// A node the pool cannot place (`why` names the server and the image): it waits and
    /// asks again, nothing prepared.
    pub fn unplaced(state: NodeState, why: &str) -> Decision {
        Decision::wait(
            state,
            BLOCKED_RETRY_SECS,
            format!("Node cannot boot: {why}"),
        )
    }

    fn wait(state: NodeState, secs: u32, message: String) -> Decision {
        let mut d = Decision::answer(state, BootAction::Wait, message);
        d.response.retry_after = Some(secs);
        d
    }
}

/// Answer to a serial the registry does not know and will not register.
pub fn unregistered() -> PiBootResponse {
    PiBootResponse {
        state: "unknown".into(),
        action: Some(BootAction::LocalBoot),
        message: Some("Node not registered. Auto-registration disabled.".into()),
        ..Default::default()
    }
}

/// Where a boot reports: `{public_url}/api/v1/nodes/{boot_id}/installed`, the boot's own
/// unguessable id in upstream's place of the node id (never the serial).
pub fn callback_url(public_url: &str, boot_id: &str) -> String {
    format!("{public_url}/api/v1/nodes/{boot_id}/installed")
}

/// Where this controller takes a failed boot's [`InstallFailedReport`]; upstream has no such
/// route, and pi-init posts to the callback instead when an answer names none.
///
/// [`InstallFailedReport`]: pureboot_contract::InstallFailedReport
pub fn failure_url(public_url: &str, boot_id: &str) -> String {
    format!("{public_url}/api/v1/nodes/{boot_id}/install-failed")
}

/// Where the booted node's agent asks for its post-boot steps and reports them and "boot
/// complete" (`pureboot_contract::after_boot`): under the same boot id.
pub fn agent_url(public_url: &str, boot_id: &str) -> String {
    format!("{public_url}/api/v1/nodes/{boot_id}/agent")
}

/// The writable layer a boot runs on, as `first_boot` steps count it: a step that succeeded
/// on this layer is done; on a new one it runs again. A `tmpfs` (or no) overlay is a new
/// layer at every boot; an `image` layer is its persist image's generation (`persist_image`,
/// the answer's: a fresh image after a repair or `overlay reset` is a new layer); the `nfs`
/// layer lasts.
pub fn layer_of(plan: &NodeTreePlan, persist_image: Option<&str>, boot_id: &str) -> String {
    match plan.overlay {
        OverlayMode::Image => format!(
            "image:{}",
            persist_image.unwrap_or(pureboot_contract::layout::PERSIST_IMAGE)
        ),
        OverlayMode::Nfs => "nfs:upper".into(),
        OverlayMode::Tmpfs | OverlayMode::None => format!("boot:{boot_id}"),
    }
}

/// Seconds a node waits for an operator to confirm its MAC before a deployment.
pub const CONFIRM_RETRY_SECS: u32 = 60;

/// Answer to a request that does not match the node it names (another MAC, another
/// address where addresses are pinned): it boots nothing of the node's and tells nothing
/// of it (the recorded MAC is in the controller's event, not here).
pub fn refused(state: NodeState) -> PiBootResponse {
    Decision::wait(
        state,
        BLOCKED_RETRY_SECS,
        "This request does not match the node's recorded identity; not booted (recorded as a \
         conflict for the operator)"
            .into(),
    )
    .response
}

/// `boot_id`: the id this boot's reports must name, if the answer asks for a report.
/// `confirmed_mac`: the request carries the MAC an operator confirmed for the node; a
/// deployment (`deploy_image`, its `image_url` and whatever credentials that carries) goes
/// to no other.
pub fn decide(
    node: &Node,
    workflow: WorkflowState<'_>,
    s: &BootSettings,
    boot_id: &str,
    confirmed_mac: bool,
) -> Decision {
    use NodeState::*;
    match node.state {
        Discovered => {
            return Decision::wait(
                node.state,
                DISCOVERED_RETRY_SECS,
                "Awaiting workflow assignment".into(),
            )
        }
        Retired | Deprovisioning | Migrating | ServingSource | CloningTarget => {
            return Decision::answer(
                node.state,
                BootAction::LocalBoot,
                format!("State: {}", node.state),
            )
        }
        Reprovision => {
            return Decision::wait(
                node.state,
                BLOCKED_RETRY_SECS,
                "Marked for reprovisioning; assign a workflow".into(),
            )
        }
        Pending | Installing | InstallFailed | Installed | Active => {}
    }
    let wf = match workflow {
        WorkflowState::Ready(wf) => wf,
        WorkflowState::Unassigned => {
            return Decision::wait(
                node.state,
                BLOCKED_RETRY_SECS,
                "No workflow assigned".into(),
            )
        }
        WorkflowState::Unusable(why) => return Decision::wait(node.state, BLOCKED_RETRY_SECS, why),
    };
    match wf.install_method {
        InstallMethod::Nfs if !s.nfs_enabled => Decision::wait(
            node.state,
            BLOCKED_RETRY_SECS,
            format!(
                "Workflow {} needs NFS, but NFS is disabled in the controller config",
                wf.id
            ),
        ),
        InstallMethod::Nfs => nfs_boot(node, wf, s, boot_id),
        InstallMethod::Image if node.state == Pending && !confirmed_mac => Decision::wait(
            node.state,
            CONFIRM_RETRY_SECS,
            format!(
                "Deployment of {} waits for an operator to confirm this node's MAC \
                 (pureboot-controller node set {} --mac <MAC>)",
                wf.name, node.serial
            ),
        ),
        InstallMethod::Image if node.state == Pending => {
            let mut d = Decision::answer(
                Installing,
                BootAction::DeployImage,
                format!("Deploying {}", wf.name),
            );
            d.response.image_url = wf.image_url.clone();
            d.response.target_device = wf.target_device.clone();
            d.response.callback_url = Some(callback_url(&s.public_url, boot_id));
            d.next_state = Some(Installing);
            d
        }
        InstallMethod::Image => Decision::answer(
            node.state,
            BootAction::LocalBoot,
            "Boot from local storage".into(),
        ),
        other => Decision::answer(
            node.state,
            BootAction::LocalBoot,
            format!("Workflow method '{}' not supported for Pi", other.as_str()),
        ),
    }
}

/// The settings [`super::effective`] gives `node` (its `groups`: the chain, rendered).
pub fn effective(node: &Node, wf: Option<&Workflow>, default_base_image: &str) -> Effective {
    super::effective::resolve(Layers {
        default_base_image,
        node,
        groups: &node.groups,
        workflow: wf,
    })
}

/// The base image reference a node boots (see [`super::effective`]: node, groups,
/// workflow, default).
pub fn base_image(node: &Node, wf: Option<&Workflow>, default_base_image: &str) -> String {
    effective(node, wf, default_base_image).base_image.value
}

/// What a node's tree holds, as [`super::effective`] resolves it.
/// `Err`: the node, its groups and its workflow declare more volumes together than a node
/// may have.
pub fn tree_plan(
    node: &Node,
    wf: Option<&Workflow>,
    default_base_image: &str,
) -> Result<NodeTreePlan, String> {
    let e = effective(node, wf, default_base_image);
    if let Some(why) = e.volumes_error {
        return Err(why);
    }
    Ok(NodeTreePlan {
        base_image: e.base_image.value,
        overlay: e.overlay.value,
        hostname: e.hostname.value,
        machine_id: node.machine_id.clone(),
        volumes: e.volumes,
        nfs_server: None,
    })
}

/// A diskless node gets `nfs_boot` on every boot; each boot is a new `installing` round
/// that its callback completes.
fn nfs_boot(node: &Node, wf: &Workflow, s: &BootSettings, boot_id: &str) -> Decision {
    let plan = match tree_plan(node, Some(wf), &s.default_base_image) {
        Ok(plan) => plan,
        Err(why) => return Decision::wait(node.state, BLOCKED_RETRY_SECS, format!("Node {why}")),
    };
    let callback = callback_url(&s.public_url, boot_id);
    let response = PiBootResponse {
        state: NodeState::Installing.as_str().into(),
        action: Some(BootAction::NfsBoot),
        message: Some(format!("NFS boot: {}", wf.name)),
        nfs_server: Some(
            wf.nfs_server
                .clone()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| s.nfs_server.clone()),
        ),
        nfs_path: Some(s.nfs_path.clone()),
        failure_url: Some(failure_url(&s.public_url, boot_id)),
        callback_url: Some(callback),
        image_url: None,
        target_device: None,
        base_image: Some(plan.base_image.clone()),
        overlay_mode: Some(plan.overlay.as_str().into()),
        hostname: Some(plan.hostname.clone()),
        machine_id: Some(plan.machine_id.to_string()),
        nfs_options: s.nfs_options.clone(),
        retry_after: None,
        agent_url: Some(agent_url(&s.public_url, boot_id)),
        // The files' names are the tree's (their generations): filled in once prepared.
        persist_image: None,
        volumes: Vec::new(),
    };
    let next_state = (node.state != NodeState::Installing).then_some(NodeState::Installing);
    Decision {
        response,
        next_state,
        tree: Some(plan),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BOOT: &str = "9e1d6c3a-1111-4222-8333-444455556666";

    fn settings() -> BootSettings {
        BootSettings {
            public_url: "http://10.0.2.2:8080".into(),
            nfs_server: "10.0.2.2".into(),
            nfs_path: "/srv/nfsroot".into(),
            default_base_image: "debian-arm64".into(),
            nfs_options: Some("rsize=65536".into()),
            nfs_enabled: true,
        }
    }

    fn node(state: NodeState) -> Node {
        Node {
            mac: Some(pureboot_contract::ids::Mac::parse("dc:a6:32:01:02:03").unwrap()),
            workflow_id: Some("pi-diskless-nfs".into()),
            ..Node::sample("d83add36", state)
        }
    }

    fn diskless() -> Workflow {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/pi-diskless-nfs.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut wf: Workflow = serde_norway::from_str(&text).unwrap();
        wf.nfs_server = None;
        wf.overlay = None;
        wf
    }

    #[test]
    fn diskless_node_gets_nfs_boot_in_every_running_state() {
        let wf = diskless();
        for state in [
            NodeState::Pending,
            NodeState::Installing,
            NodeState::InstallFailed,
            NodeState::Installed,
            NodeState::Active,
        ] {
            let d = decide(
                &node(state),
                WorkflowState::Ready(&wf),
                &settings(),
                BOOT,
                true,
            );
            let r = &d.response;
            assert_eq!(r.action, Some(BootAction::NfsBoot), "{state}");
            assert_eq!(r.state, "installing");
            assert_eq!(r.nfs_server.as_deref(), Some("10.0.2.2"));
            assert_eq!(r.nfs_path.as_deref(), Some("/srv/nfsroot"));
            assert_eq!(r.callback_url.as_deref(), Some("http://10.0.2.2:8080/api/v1/nodes/9e1d6c3a-1111-4222-8333-444455556666/installed"));
            assert_eq!(r.failure_url.as_deref(), Some("http://10.0.2.2:8080/api/v1/nodes/9e1d6c3a-1111-4222-8333-444455556666/install-failed"));
            assert_eq!(r.base_image.as_deref(), Some("debian-arm64"));
            assert_eq!(r.overlay_mode.as_deref(), Some("tmpfs"));
            assert_eq!(r.hostname.as_deref(), Some("pi-d83add36"));
            assert_eq!(r.nfs_options.as_deref(), Some("rsize=65536"));
            let expected_next = (state != NodeState::Installing).then_some(NodeState::Installing);
            assert_eq!(d.next_state, expected_next, "{state}");
            if let Some(next) = d.next_state {
                assert!(
                    state.can_transition(next),
                    "{state} -> {next} must be a legal edge"
                );
            }
            assert_eq!(
                d.tree.as_ref().unwrap().machine_id,
                MachineId::parse("0123456789abcdef0123456789abcdef").unwrap()
            );
        }
    }

    #[test]
    fn node_settings_win_over_workflow_and_defaults() {
        let mut wf = diskless();
        wf.base_image = Some("wf-image".into());
        wf.overlay = Some(OverlayMode::Image);
        wf.hostname = Some("wf-host".into());
        wf.nfs_server = Some("192.168.1.10".into());
        let d = decide(
            &node(NodeState::Pending),
            WorkflowState::Ready(&wf),
            &settings(),
            BOOT,
            true,
        );
        assert_eq!(d.response.base_image.as_deref(), Some("wf-image"));
        assert_eq!(d.response.overlay_mode.as_deref(), Some("image"));
        assert_eq!(d.response.hostname.as_deref(), Some("wf-host"));
        assert_eq!(d.response.nfs_server.as_deref(), Some("192.168.1.10"));
        let mut n = node(NodeState::Active);
        n.base_image = Some("mine".into());
        n.overlay_mode = Some(OverlayMode::Nfs);
        n.hostname = Some(pureboot_contract::ids::Hostname::parse("kitchen").unwrap());
        let d = decide(&n, WorkflowState::Ready(&wf), &settings(), BOOT, true);
        assert_eq!(
            d.tree.unwrap(),
            NodeTreePlan {
                base_image: "mine".into(),
                overlay: OverlayMode::Nfs,
                hostname: "kitchen".into(),
                machine_id: n.machine_id.clone(),
                volumes: Vec::new(),
                nfs_server: None,
            }
        );
    }

    #[test]
    fn a_deployment_goes_only_to_the_confirmed_mac() {
        let mut wf = diskless();
        wf.install_method = InstallMethod::Image;
        wf.image_url = Some("http://10.0.2.2/img?token=secret".into());
        let n = node(NodeState::Pending);
        let d = decide(&n, WorkflowState::Ready(&wf), &settings(), BOOT, false);
        assert_eq!(d.response.action, Some(BootAction::Wait));
        assert_eq!(d.response.image_url, None);
        assert_eq!(d.response.callback_url, None);
        assert_eq!((d.next_state, d.tree), (None, None));
        assert!(d
            .response
            .message
            .unwrap()
            .contains("node set d83add36 --mac"));
        let d = decide(&n, WorkflowState::Ready(&wf), &settings(), BOOT, true);
        assert_eq!(d.response.action, Some(BootAction::DeployImage));
        assert_eq!(d.response.image_url, wf.image_url);
        let r = refused(NodeState::Active);
        assert_eq!(r.action, Some(BootAction::Wait));
        assert!(r.callback_url.is_none() && r.machine_id.is_none());
    }

    #[test]
    fn nodes_without_a_usable_workflow_wait() {
        let wf = diskless();
        let d = decide(
            &node(NodeState::Discovered),
            WorkflowState::Ready(&wf),
            &settings(),
            BOOT,
            true,
        );
        assert_eq!(d.response.action, Some(BootAction::Wait));
        assert_eq!(d.response.retry_after, Some(DISCOVERED_RETRY_SECS));
        assert_eq!((d.next_state, d.tree), (None, None));
        let d = decide(
            &node(NodeState::Pending),
            WorkflowState::Unusable("workflow x not found".into()),
            &settings(),
            BOOT,
            true,
        );
        assert_eq!(d.response.action, Some(BootAction::Wait));
        assert_eq!(d.response.message.as_deref(), Some("workflow x not found"));
        let d = decide(
            &node(NodeState::Retired),
            WorkflowState::Ready(&wf),
            &settings(),
            BOOT,
            true,
        );
        assert_eq!(d.response.action, Some(BootAction::LocalBoot));
        let mut off = settings();
        off.nfs_enabled = false;
        let d = decide(
            &node(NodeState::Pending),
            WorkflowState::Ready(&wf),
            &off,
            BOOT,
            true,
        );
        assert_eq!(d.response.action, Some(BootAction::Wait));
        assert!(d.tree.is_none());
    }
}
