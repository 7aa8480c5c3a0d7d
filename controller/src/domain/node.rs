//! A registered node as the domain sees it.

use serde::Serialize;

use super::state::NodeState;
use pureboot_contract::ids::{Hostname, Mac, MachineId, Serial};
use pureboot_contract::OverlayMode;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub id: String,
    pub serial: Serial,
    /// As recorded: the 16-digit form, or (records from before that rule) an 8-digit one,
    /// which says nothing (see [`full_serial_of_claim`]).
    pub full_serial: Option<String>,
    pub mac: Option<Mac>,
    pub model: Option<String>,
    pub hostname: Option<Hostname>,
    pub state: NodeState,
    pub workflow_id: Option<String>,
    /// Generated once at registration and never changed.
    pub machine_id: MachineId,
    pub overlay_mode: Option<OverlayMode>,
    pub base_image: Option<String>,
    pub last_boot_at: Option<String>,
    pub last_ip: Option<String>,
    /// Set by earlier versions when a second machine claimed this short serial (different
    /// full serial or MAC); such a claim is now refused and recorded as a `conflict` event
    /// only, since anyone could set a flag. Cleared by the operator.
    pub conflict: Option<String>,
    /// Set when the node's persistent layer (`image` overlay) broke and it booted without
    /// it; cleared when a later boot reports the image overlay working.
    pub degraded: Option<String>,
    /// The MAC was set by an operator (`node add --mac`, `node set --mac`), not learned
    /// from a boot: only then may a boot be handed a deployment (`deploy_image`).
    pub mac_confirmed: bool,
    /// The address that asked for the latest boot the controller accepted.
    pub boot_ip: Option<String>,
    /// Its own volumes (`node set --volume`); its groups' and workflow's come on top.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<super::volumes::VolumeSpec>,
    /// The group it belongs to (at most one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Its group's chain, root first, as the store read it with the node (empty: no
    /// group); the boot path swaps in the chain with its templates rendered.
    #[serde(skip)]
    pub groups: Vec<super::group::Group>,
    pub created_at: String,
    pub updated_at: String,
}

impl Node {
    /// The hostname announced to the node: its own, else [`Hostname::for_serial`].
    pub fn effective_hostname(&self) -> Hostname {
        self.hostname
            .clone()
            .unwrap_or_else(|| Hostname::for_serial(&self.serial))
    }
}

/// The full serial worth recording from a claim (or a record): the contract's rule, so 8
/// digits are only the short serial again (a board or a client that knows no more) and say
/// nothing about the machine, and 9 to 15 digits lost their leading zeros.
pub fn full_serial_of_claim(claimed: &str) -> Option<String> {
    pureboot_contract::ids::FullSerial::parse(claimed)
        .ok()
        .map(|f| f.to_string())
}

/// Board models a template may see (`model`), in the names of the firmware's config.txt
/// filters; anything else a client sends is `unknown`.
pub const PI_MODELS: &[&str] = &[
    "pi0", "pi0w", "pi02", "pi1", "pi2", "pi3", "pi3+", "pi4", "pi400", "pi5", "pi500", "cm1",
    "cm3", "cm3+", "cm4", "cm4s", "cm5",
];

/// A client's model name as one of [`PI_MODELS`] (case-insensitive), else `unknown`: the
/// text reaches templates, and there it must be a value the workflow's author can know.
pub fn known_model(claimed: &str) -> &'static str {
    PI_MODELS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(claimed.trim()))
        .copied()
        .unwrap_or("unknown")
}

impl Node {
    /// Why a boot request may not speak for this node: a full serial or MAC that differs
    /// from the recorded one, or no MAC where one is recorded (a boot is bound to the
    /// node's MAC once it has one). Empty: the request may boot the node.
    pub fn refusal(&self, mac: Option<&Mac>, full_serial: Option<&str>) -> Vec<String> {
        let mut why = self.claim_conflicts(mac, full_serial);
        if let (Some(known), None) = (&self.mac, mac) {
            why.push(format!("no MAC given; {known} is recorded"));
        }
        why
    }

    /// The request carries the MAC an operator confirmed for this node.
    pub fn confirmed_mac_is(&self, mac: Option<&Mac>) -> bool {
        self.mac_confirmed && mac.is_some() && self.mac.as_ref() == mac
    }

    /// Why a boot claiming this short serial looks like a different machine: a full serial
    /// or MAC that differs from the one on record. Empty when nothing disagrees. A short
    /// (8-hex) full serial, claimed or on record, is no information.
    pub fn claim_conflicts(&self, mac: Option<&Mac>, full_serial: Option<&str>) -> Vec<String> {
        let mut out = Vec::new();
        let known = self.full_serial.as_deref().and_then(full_serial_of_claim);
        let claimed = full_serial.and_then(full_serial_of_claim);
        if let (Some(known), Some(claimed)) = (known, claimed) {
            if known != claimed {
                out.push(format!(
                    "full serial {claimed} differs from recorded {known}"
                ));
            }
        }
        if let (Some(known), Some(claimed)) = (&self.mac, mac) {
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
            serial: Serial::parse(serial).expect("a test serial"),
            full_serial: None,
            mac: None,
            model: None,
            hostname: None,
            state,
            workflow_id: None,
            machine_id: MachineId::parse("0123456789abcdef0123456789abcdef").unwrap(),
            overlay_mode: None,
            base_image: None,
            last_boot_at: None,
            last_ip: None,
            conflict: None,
            degraded: None,
            mac_confirmed: false,
            boot_ip: None,
            volumes: Vec::new(),
            group: None,
            groups: Vec::new(),
            created_at: String::new(),
            updated_at: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> Mac {
        Mac::parse(s).unwrap()
    }

    #[test]
    fn conflicting_claims() {
        let node = Node {
            full_serial: Some("10000000d83add36".into()),
            mac: Some(mac("dc:a6:32:01:02:03")),
            ..Node::sample("d83add36", NodeState::Active)
        };
        assert!(node
            .claim_conflicts(Some(&mac("dc:a6:32:01:02:03")), Some("10000000d83add36"))
            .is_empty());
        assert!(
            node.claim_conflicts(None, None).is_empty(),
            "nothing claimed, nothing to compare"
        );
        let c = node.claim_conflicts(Some(&mac("dc:a6:32:ff:ff:ff")), Some("20000000d83add36"));
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(
            c[0].contains("20000000d83add36") && c[1].contains("dc:a6:32:ff:ff:ff"),
            "{c:?}"
        );
        let mut fresh = node.clone();
        fresh.mac = None;
        fresh.full_serial = None;
        assert!(fresh
            .claim_conflicts(Some(&mac("aa:aa:aa:aa:aa:aa")), Some("20000000d83add36"))
            .is_empty());
    }

    #[test]
    fn a_request_without_the_recorded_mac_is_refused_and_models_are_known_or_unknown() {
        let mut node = Node::sample("d83add36", NodeState::Active);
        assert!(node.refusal(None, None).is_empty(), "nothing recorded");
        node.mac = Some(mac("dc:a6:32:01:02:03"));
        assert_eq!(node.refusal(None, None).len(), 1, "the MAC is required");
        assert!(node
            .refusal(Some(&mac("dc:a6:32:01:02:03")), None)
            .is_empty());
        assert!(
            !node.confirmed_mac_is(Some(&mac("dc:a6:32:01:02:03"))),
            "learned"
        );
        node.mac_confirmed = true;
        assert!(node.confirmed_mac_is(Some(&mac("dc:a6:32:01:02:03"))));
        assert!(!node.confirmed_mac_is(Some(&mac("dc:a6:32:01:02:04"))));
        assert!(!node.confirmed_mac_is(None));
        assert_eq!(known_model("Pi4"), "pi4");
        assert_eq!(known_model("{{ 7*7 }}"), "unknown");
    }

    #[test]
    fn a_short_full_serial_is_no_claim() {
        assert_eq!(full_serial_of_claim("0badc0de"), None);
        assert_eq!(
            full_serial_of_claim("100000000badc0de").as_deref(),
            Some("100000000badc0de")
        );
        assert_eq!(
            full_serial_of_claim("d83add36d").as_deref(),
            Some("0000000d83add36d")
        );
        // A record made from an 8-hex claim (before this rule) does not conflict.
        let node = Node {
            full_serial: Some("0badc0de".into()),
            mac: Some(mac("dc:a6:32:01:02:03")),
            ..Node::sample("0badc0de", NodeState::Active)
        };
        assert!(node
            .claim_conflicts(Some(&mac("dc:a6:32:01:02:03")), Some("100000000badc0de"))
            .is_empty());
    }
}
