//! A registered node as the domain sees it.

use serde::Serialize;

use super::state::NodeState;

/// Where a node's writable layer lives; the NFS tree's type, shared so the two never drift.
pub use crate::nfs_tree::OverlayMode;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub id: String,
    pub serial: String,
    pub full_serial: Option<String>,
    pub mac: Option<String>,
    pub model: Option<String>,
    pub hostname: Option<String>,
    pub state: NodeState,
    pub workflow_id: Option<String>,
    /// 32 lowercase hex, generated once at registration and never changed.
    pub machine_id: String,
    pub overlay_mode: Option<OverlayMode>,
    pub base_image: Option<String>,
    pub last_boot_at: Option<String>,
    pub last_ip: Option<String>,
    /// Set when a second machine claimed this short serial (different full serial or MAC).
    pub conflict: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Node {
    /// The hostname announced to the node: its own, else `pi-<serial>`.
    pub fn effective_hostname(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(|| format!("pi-{}", self.serial))
    }
}
