//! What the status page shows: every node (or those in one state), the count per state, and
//! each node's most recent events, read in one snapshot.

use std::collections::BTreeMap;

use serde::Serialize;

use super::timeline::{timeline, Timeline};
use super::{ServiceError, Services};
use crate::domain::node::Node;
use crate::domain::state::NodeState;
use crate::store::after_boot::BootRecord;
use crate::store::events::Event;
use crate::store::nodes::NodeFilter;

/// Events shown per node.
pub const STATUS_EVENTS: u32 = 5;

#[derive(Debug, Serialize)]
pub struct StatusView {
    /// The nodes shown (all, or those in `state`).
    pub nodes: Vec<NodeRow>,
    /// Every state with its node count (over all nodes, whatever the filter).
    pub counts: Vec<(String, usize)>,
    pub total: usize,
    pub state: Option<String>,
    pub degraded: usize,
    pub conflicts: usize,
    /// Nodes whose last boot got an answer but no "boot complete" in time.
    pub stuck: usize,
    pub stuck_after_secs: u64,
    /// Each channel's last rollout with its canaries (service/rollout.rs).
    pub rollouts: Vec<super::rollout::RolloutStatus>,
    /// The pool's servers with their state and nodes (empty: no `[[nfs.servers]]`).
    pub nfs_servers: Vec<super::pool::ServerCount>,
}

#[derive(Debug, Serialize)]
pub struct NodeRow {
    #[serde(flatten)]
    pub node: Node,
    /// Newest last.
    pub events: Vec<Event>,
    /// Its last boot, stage by stage, once pi-init reported.
    pub timeline: Option<Timeline>,
    /// The last stage its last boot reached, when that boot is stuck.
    pub stuck: Option<&'static str>,
    /// The image version its next boot gets and the one it last reported booting.
    pub assigned_version: Option<String>,
    pub running_version: Option<String>,
}

impl Services {
    pub fn status(&self, state: Option<NodeState>) -> Result<StatusView, ServiceError> {
        let within = self.config.boot_complete_within_secs;
        let (all, events, boots) = self.store.read(|tx| {
            let all = tx.list_nodes(&NodeFilter::default())?;
            // Only the nodes shown: each an index lookup, whatever the size of the log.
            let serials: Vec<&str> = all
                .iter()
                .filter(|n| state.is_none_or(|s| n.state == s))
                .map(|n| n.serial.as_str())
                .collect();
            let events = tx.recent_events(&serials, STATUS_EVENTS)?;
            let boots: BTreeMap<String, (BootRecord, bool)> = tx
                .last_boots(within)?
                .into_iter()
                .map(|(node, boot, stuck)| (node, (boot, stuck)))
                .collect();
            Ok::<_, ServiceError>((all, events, boots))
        })?;
        let mut by_serial: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        for e in events {
            by_serial.entry(e.serial.clone()).or_default().push(e);
        }
        let counts = NodeState::ALL
            .iter()
            .map(|s| {
                let n = all.iter().filter(|node| node.state == *s).count();
                (s.as_str().to_string(), n)
            })
            .collect();
        let degraded = all.iter().filter(|n| n.degraded.is_some()).count();
        let conflicts = all.iter().filter(|n| n.conflict.is_some()).count();
        let total = all.len();
        let stuck = boots.values().filter(|(_, stuck)| *stuck).count();
        let versions: BTreeMap<String, super::versions::NodeVersion> = self
            .node_versions()?
            .into_iter()
            .map(|v| (v.serial.clone(), v))
            .collect();
        let nodes = all
            .into_iter()
            .filter(|n| state.is_none_or(|s| n.state == s))
            .map(|node| NodeRow {
                events: by_serial.remove(node.serial.as_str()).unwrap_or_default(),
                timeline: boots.get(&node.id).and_then(|(b, _)| timeline(b)),
                stuck: boots
                    .get(&node.id)
                    .filter(|(_, stuck)| *stuck)
                    .map(|(b, _)| b.stage()),
                assigned_version: versions
                    .get(node.serial.as_str())
                    .map(|v| v.assigned.version.clone().unwrap_or(v.assigned.dir.clone())),
                running_version: versions
                    .get(node.serial.as_str())
                    .and_then(|v| v.running.clone()),
                node,
            })
            .collect();
        Ok(StatusView {
            nodes,
            counts,
            total,
            state: state.map(|s| s.as_str().to_string()),
            degraded,
            conflicts,
            stuck,
            stuck_after_secs: within,
            rollouts: self.last_rollouts()?,
            nfs_servers: self.pool_counts()?,
        })
    }
}
