//! Node lifecycle, as upstream PureBoot's `NodeStateMachine`, plus the edges a diskless
//! node needs: it boots (and so "installs" its overlay) on every power-on, so a node that
//! is `installed`, `active` or `install_failed` may go back to `installing`.

use serde::{Serialize, Serializer};

pureboot_contract::named_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum NodeState: "state" {
        Discovered = "discovered",
        Pending = "pending",
        Installing = "installing",
        InstallFailed = "install_failed",
        Installed = "installed",
        Active = "active",
        Reprovision = "reprovision",
        Deprovisioning = "deprovisioning",
        Migrating = "migrating",
        ServingSource = "serving_source",
        CloningTarget = "cloning_target",
        Retired = "retired",
    }
}

use NodeState::*;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid state transition from '{from}' to '{to}'{}", allowed_list(.from))]
pub struct InvalidTransition {
    pub from: NodeState,
    pub to: NodeState,
}

fn allowed_list(from: &NodeState) -> String {
    let next = from.allowed_next();
    if next.is_empty() {
        format!(" ('{from}' is final)")
    } else {
        let names: Vec<&str> = next.iter().map(|s| s.as_str()).collect();
        format!(" (from '{from}' only: {})", names.join(", "))
    }
}

impl NodeState {
    pub fn parse(s: &str) -> Option<NodeState> {
        s.parse().ok()
    }

    /// Upstream's table (`retired` reachable from anywhere but itself), plus the
    /// diskless re-boot edges back to `installing`.
    fn table(self) -> &'static [NodeState] {
        match self {
            Discovered => &[Pending, CloningTarget],
            Pending => &[Installing],
            Installing => &[Installed, InstallFailed],
            InstallFailed => &[Pending, Installing],
            Installed => &[Active, Reprovision, Installing],
            Active => &[
                Reprovision,
                Deprovisioning,
                Migrating,
                ServingSource,
                CloningTarget,
                Installing,
            ],
            Reprovision => &[Pending],
            Deprovisioning => &[Retired],
            Migrating | ServingSource => &[Active],
            CloningTarget => &[Installed],
            Retired => &[],
        }
    }

    pub fn allowed_next(self) -> Vec<NodeState> {
        let mut next = self.table().to_vec();
        if self != Retired && !next.contains(&Retired) {
            next.push(Retired);
        }
        next
    }

    pub fn can_transition(self, to: NodeState) -> bool {
        self.allowed_next().contains(&to)
    }

    pub fn transition(self, to: NodeState) -> Result<NodeState, InvalidTransition> {
        if self.can_transition(to) {
            Ok(to)
        } else {
            Err(InvalidTransition { from: self, to })
        }
    }

    /// States after an `installed` callback: a diskless node is running once it reports,
    /// so it goes on to `active`. Only an `installing` node may report.
    pub fn on_installed(self, diskless: bool) -> Result<Vec<NodeState>, InvalidTransition> {
        let installed = self.transition(Installed)?;
        if diskless {
            Ok(vec![installed, installed.transition(Active)?])
        } else {
            Ok(vec![installed])
        }
    }
}

impl Serialize for NodeState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for st in NodeState::ALL {
            assert_eq!(NodeState::parse(st.as_str()), Some(st));
        }
        assert_eq!(NodeState::parse("Active"), None);
    }

    #[test]
    fn upstream_lifecycle_and_diskless_edges() {
        let ok = [
            (Discovered, Pending),
            (Pending, Installing),
            (Installing, Installed),
            (Installing, InstallFailed),
            (InstallFailed, Pending),
            (Installed, Active),
            (Active, Reprovision),
            (Reprovision, Pending),
            (Deprovisioning, Retired),
            (Active, Installing),
            (Installed, Installing),
            (InstallFailed, Installing),
            (Pending, Retired),
            (Discovered, Retired),
        ];
        for (from, to) in ok {
            assert_eq!(from.transition(to), Ok(to), "{from} -> {to}");
        }
        let bad = [
            (Discovered, Installing),
            (Discovered, Active),
            (Pending, Active),
            (Installing, Active),
            (Retired, Pending),
            (Retired, Retired),
            (Reprovision, Installing),
        ];
        for (from, to) in bad {
            let err = from.transition(to).unwrap_err();
            assert_eq!(err, InvalidTransition { from, to });
            assert!(err.to_string().contains(from.as_str()), "{err}");
        }
    }

    #[test]
    fn installed_callback() {
        assert_eq!(Installing.on_installed(true), Ok(vec![Installed, Active]));
        assert_eq!(Installing.on_installed(false), Ok(vec![Installed]));
        let err = Active.on_installed(true).unwrap_err();
        assert_eq!(
            err,
            InvalidTransition {
                from: Active,
                to: Installed
            }
        );
        assert!(err.to_string().contains("from 'active' only"), "{err}");
        assert!(Discovered.on_installed(true).is_err());
    }
}
