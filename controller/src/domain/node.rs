//! A registered node as the domain sees it.

use serde::{Deserialize, Serialize};

use super::state::NodeState;

/// Where a node's writable layer lives (see DESIGN.md, overlay modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverlayMode {
    Tmpfs,
    Image,
    Nfs,
    None,
}

impl OverlayMode {
    pub const ALL: [OverlayMode; 4] = [
        OverlayMode::Tmpfs,
        OverlayMode::Image,
        OverlayMode::Nfs,
        OverlayMode::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OverlayMode::Tmpfs => "tmpfs",
            OverlayMode::Image => "image",
            OverlayMode::Nfs => "nfs",
            OverlayMode::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<OverlayMode> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

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
