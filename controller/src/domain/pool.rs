//! Which NFS server of the pool a node boots from: pure, over what the service read.
//!
//! A node stays on its home (sticky) while the home can serve it. A node without writable
//! data on the export (a `tmpfs` overlay, no volumes) moves freely: off a draining or down
//! server, off one lacking its image, to a pinned one. A node whose data lives on its home
//! never moves by itself (`node move` moves the data): it boots there while the server
//! is active or draining and has its image, else the boot fails naming server and image.
//! New nodes go to the active server furthest below its share by weight.

use serde::{Deserialize, Serialize};

use super::effective::Sourced;

/// A pool server's state (`[[nfs.servers]] state`): `active` takes new nodes; `draining`
/// keeps the nodes whose data lives there and sends the others elsewhere at their next
/// boot; `down` answers no boot.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    #[default]
    Active,
    Draining,
    Down,
}

impl ServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Active => "active",
            ServerState::Draining => "draining",
            ServerState::Down => "down",
        }
    }
}

/// A server as the decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerView {
    pub name: String,
    pub state: ServerState,
    pub weight: u64,
    /// The node's base image is there, checked by digest (false when the controller cannot
    /// reach the server: it cannot know).
    pub has_image: bool,
    /// Nodes placed there now.
    pub nodes: u64,
}

/// Where the node boots, and whether that places it anew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub server: String,
    /// Its home before (none: a new node); differs from `server` when it moves.
    pub from: Option<String>,
}

/// Where a node boots, or why it cannot boot anywhere. `image` names its base image in
/// the messages. `prefer`: the server a new or moving node was prepared for a moment ago
/// (the boot's first half), kept while it may still take new nodes and one more keeps it
/// within its weighted share, so boots of new nodes racing each other do not undo each
/// other's preparation, and a rack powered on at once (every boot prepared on the same
/// counts, so for the same server) is still spread by the weights: the commits, one after
/// another, send the boots past that server's share elsewhere (prepared again there).
pub fn place(
    home: Option<&str>,
    pin: Option<&Sourced<String>>,
    holds_data: bool,
    image: &str,
    servers: &[ServerView],
    prefer: Option<&str>,
) -> Result<Placement, String> {
    let newcomer = |servers: &[ServerView], image: &str| match prefer
        .and_then(|p| servers.iter().find(|s| s.name == p))
        .filter(|s| takes_new(s) && within_share(s, servers))
    {
        Some(s) => Ok(s.name.clone()),
        None => newcomer(servers, image),
    };
    let find = |name: &str| servers.iter().find(|s| s.name == name);
    let serves = |s: &ServerView| s.state != ServerState::Down && s.has_image;
    let placed = |server: &str| Placement {
        server: server.to_string(),
        from: home.map(str::to_string),
    };
    if let Some(pin) = pin {
        let Some(s) = find(&pin.value) else {
            return Err(format!(
                "pinned to NFS server {} (by {}), which is not in [[nfs.servers]]",
                pin.value, pin.from
            ));
        };
        if holds_data && home.is_some_and(|h| h != s.name) {
            return Err(format!(
                "pinned to NFS server {} (by {}) but its data lives on {}: move it with \
                 `node move <serial> {}`",
                s.name,
                pin.from,
                home.unwrap_or_default(),
                s.name
            ));
        }
        return if serves(s) {
            Ok(placed(&s.name))
        } else {
            Err(why_not(s, image))
        };
    }
    if let Some(h) = home {
        match find(h) {
            Some(s) if serves(s) && (s.state == ServerState::Active || holds_data) => {
                return Ok(placed(h))
            }
            Some(s) if holds_data => {
                return Err(format!("{}; its data lives there", why_not(s, image)))
            }
            None if holds_data => {
                return Err(format!(
                    "its data lives on NFS server {h}, which is no longer in [[nfs.servers]]"
                ))
            }
            // Draining, down, lacking the image or gone, and nothing of the node's there:
            // it moves (or, if no other server can take it, stays on a draining home).
            other => {
                if let Ok(to) = newcomer(servers, image) {
                    return Ok(placed(&to));
                }
                if let Some(s) = other.filter(|s| serves(s)) {
                    return Ok(placed(&s.name));
                }
            }
        }
    }
    newcomer(servers, image).map(|to| placed(&to))
}

/// The active server (with a weight and the image) whose nodes are furthest below its
/// share: the least `(nodes + 1) / weight`, ties to the first configured.
fn newcomer(servers: &[ServerView], image: &str) -> Result<String, String> {
    servers
        .iter()
        .filter(|s| takes_new(s))
        .min_by(|a, b| {
            // (a.nodes + 1) / a.weight < (b.nodes + 1) / b.weight, in integers.
            let lhs = u128::from(a.nodes + 1) * u128::from(b.weight);
            let rhs = u128::from(b.nodes + 1) * u128::from(a.weight);
            lhs.cmp(&rhs)
        })
        .map(|s| s.name.clone())
        .ok_or_else(|| {
            let lacking: Vec<&str> = servers
                .iter()
                .filter(|s| s.state == ServerState::Active && !s.has_image)
                .map(|s| s.name.as_str())
                .collect();
            format!(
                "no active NFS server with a weight has base image {image} (lacking it: {}); \
                 run `image sync`",
                if lacking.is_empty() {
                    "none".to_string()
                } else {
                    lacking.join(", ")
                }
            )
        })
}

/// Whether one more node on `s` keeps it within its weighted share of the nodes on the
/// servers that take new ones (rounded up): `nodes + 1 ≤ ⌈(all + 1) · weight / weights⌉`.
fn within_share(s: &ServerView, servers: &[ServerView]) -> bool {
    let open = servers.iter().filter(|v| takes_new(v));
    let (all, weights) = open.fold((0u128, 0u128), |(n, w), v| {
        (n + u128::from(v.nodes), w + u128::from(v.weight))
    });
    let (nodes, weight) = (u128::from(s.nodes), u128::from(s.weight));
    (nodes + 1) * weights <= (all + 1) * weight + weights.saturating_sub(1)
}

fn takes_new(s: &ServerView) -> bool {
    s.state == ServerState::Active && s.weight > 0 && s.has_image
}

fn why_not(s: &ServerView, image: &str) -> String {
    if s.state == ServerState::Down {
        format!("NFS server {} is down", s.name)
    } else {
        format!(
            "NFS server {} lacks base image {image} (or the controller cannot check it): run \
             `image sync`",
            s.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::source::Source;
    use ServerState::*;

    fn view(name: &str, state: ServerState, weight: u64, nodes: u64) -> ServerView {
        ServerView {
            name: name.into(),
            state,
            weight,
            has_image: true,
            nodes,
        }
    }

    /// `n` new nodes placed one after another (each counted on its server), each prepared
    /// for `prepared`; the servers they went to.
    fn place_new_nodes(
        servers: &mut [ServerView],
        n: usize,
        prepared: Option<&str>,
    ) -> Vec<String> {
        (0..n)
            .map(|_| {
                let p = place(None, None, false, "img", servers, prepared).unwrap();
                let on = servers.iter_mut().find(|s| s.name == p.server).unwrap();
                on.nodes += 1;
                p.server
            })
            .collect()
    }

    #[test]
    fn new_nodes_follow_the_weights() {
        let mut servers = vec![view("a", Active, 2, 0), view("b", Active, 1, 0)];
        let got = place_new_nodes(&mut servers, 6, None);
        assert_eq!(
            got,
            ["a", "a", "b", "a", "a", "b"],
            "2:1, ties to the first"
        );
    }

    /// New nodes booting at once are all prepared on the same counts, so for the same
    /// server; their commits come one after another and spread them by the weights.
    #[test]
    fn new_nodes_prepared_together_are_spread_by_their_commits() {
        for (weights, boots, want) in [
            ([2, 1], 3, vec!["a", "a", "b"]),
            ([1, 1], 4, vec!["a", "b", "a", "b"]),
            ([2, 1], 6, vec!["a", "a", "b", "a", "a", "b"]),
        ] {
            let mut servers = vec![
                view("a", Active, weights[0], 0),
                view("b", Active, weights[1], 0),
            ];
            let prepared = place(None, None, false, "img", &servers, None)
                .unwrap()
                .server;
            let got = place_new_nodes(&mut servers, boots, Some(&prepared));
            assert_eq!(got, want, "weights {weights:?}");
        }
    }

    #[test]
    fn homes_pins_and_their_limits() {
        let servers = [view("a", Draining, 1, 3), view("b", Active, 1, 1)];
        // Sticky with data, even draining; tmpfs moves off a draining home.
        assert_eq!(
            place(Some("a"), None, true, "i", &servers, None)
                .unwrap()
                .server,
            "a"
        );
        let moved = place(Some("a"), None, false, "i", &servers, None).unwrap();
        assert_eq!(
            (moved.server.as_str(), moved.from.as_deref()),
            ("b", Some("a"))
        );
        // Down home: data nodes fail naming it, tmpfs nodes move.
        let down = [view("a", Down, 1, 3), view("b", Active, 1, 1)];
        let e = place(Some("a"), None, true, "i", &down, None).unwrap_err();
        assert!(
            e.contains("NFS server a is down") && e.contains("data"),
            "{e}"
        );
        // A home lacking the image: a data node fails naming server and image.
        let mut lacking = [view("a", Active, 1, 3), view("b", Active, 1, 1)];
        lacking[0].has_image = false;
        let e = place(Some("a"), None, true, "deb.v2", &lacking, None).unwrap_err();
        assert!(e.contains("a lacks base image deb.v2"), "{e}");
        assert_eq!(
            place(Some("a"), None, false, "i", &lacking, None)
                .unwrap()
                .server,
            "b"
        );
        // Pins: honoured, named with their source when wrong.
        let pin = Sourced {
            value: "a".to_string(),
            from: Source::Group("rack".into()),
        };
        let e = place(Some("b"), Some(&pin), true, "i", &servers, None).unwrap_err();
        assert!(e.contains("node move") && e.contains("rack"), "{e}");
        assert_eq!(
            place(Some("b"), Some(&pin), false, "i", &servers, None)
                .unwrap()
                .server,
            "a"
        );
        let e = place(None, Some(&pin), false, "i", &down, None).unwrap_err();
        assert!(e.contains("down"), "{e}");
        let unknown = Sourced {
            value: "z".to_string(),
            from: Source::Node,
        };
        assert!(place(None, Some(&unknown), false, "i", &servers, None).is_err());
        // A prepared choice that may still take new nodes is kept; one that may not is not.
        let even = [view("a", Active, 1, 0), view("b", Active, 1, 0)];
        assert_eq!(
            place(None, None, false, "i", &even, Some("b"))
                .unwrap()
                .server,
            "b"
        );
        assert_eq!(
            place(None, None, false, "i", &servers, Some("a"))
                .unwrap()
                .server,
            "b"
        );
        // Nowhere to go.
        let e = place(None, None, false, "i", &lacking[..1], None).unwrap_err();
        assert!(e.contains("lacking it: a"), "{e}");
    }
}
