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

impl Node {
    /// Why a boot claiming this short serial looks like a different machine: a full serial
    /// or MAC that differs from the one on record. Empty when nothing disagrees.
    pub fn claim_conflicts(&self, mac: Option<&str>, full_serial: Option<&str>) -> Vec<String> {
        let mut out = Vec::new();
        if let (Some(known), Some(claimed)) = (self.full_serial.as_deref(), full_serial) {
            if known != claimed {
                out.push(format!(
                    "full serial {claimed} differs from recorded {known}"
                ));
            }
        }
        if let (Some(known), Some(claimed)) = (self.mac.as_deref(), mac) {
            if known != claimed {
                out.push(format!("MAC {claimed} differs from recorded {known}"));
            }
        }
        out
    }
}

#[cfg(test)]
impl Node {
    /// A registered node with nothing optional set (test fixture).
    pub fn sample(serial: &str, state: NodeState) -> Node {
        Node {
            id: "5f0c1b2a-0000-4000-8000-00000000abcd".into(),
            serial: serial.into(),
            full_serial: None,
            mac: None,
            model: None,
            hostname: None,
            state,
            workflow_id: None,
            machine_id: "0123456789abcdef0123456789abcdef".into(),
            overlay_mode: None,
            base_image: None,
            last_boot_at: None,
            last_ip: None,
            conflict: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicting_claims() {
        let node = Node {
            full_serial: Some("10000000d83add36".into()),
            mac: Some("dc:a6:32:01:02:03".into()),
            ..Node::sample("d83add36", NodeState::Active)
        };
        assert!(node
            .claim_conflicts(Some("dc:a6:32:01:02:03"), Some("10000000d83add36"))
            .is_empty());
        assert!(
            node.claim_conflicts(None, None).is_empty(),
            "nothing claimed, nothing to compare"
        );
        let c = node.claim_conflicts(Some("dc:a6:32:ff:ff:ff"), Some("20000000d83add36"));
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(
            c[0].contains("20000000d83add36") && c[1].contains("dc:a6:32:ff:ff:ff"),
            "{c:?}"
        );
        let mut fresh = node.clone();
        fresh.mac = None;
        fresh.full_serial = None;
        assert!(fresh
            .claim_conflicts(Some("aa:aa:aa:aa:aa:aa"), Some("20000000d83add36"))
            .is_empty());
    }
}
