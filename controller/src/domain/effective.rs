//! A node's effective settings and where each came from: the one precedence of pureboot.
//!
//! | field | lowest ... highest |
//! |---|---|
//! | workflow | none < group chain (root to leaf) < node |
//! | base image, overlay mode, hostname | configured default < workflow < group chain < node |
//! | volumes (per path) | workflow < group chain < node |
//! | variables (per key) | workflow < group chain |
//!
//! Single values: the highest layer that sets one wins. Volumes and variables merge: per
//! path, per key, the highest layer that declares it wins; the rest are kept. The
//! workflow sits just above the defaults: it is what the node runs, chosen by the node or
//! by a group, and its settings are that workflow's defaults; a group (or the node) that
//! sets a value means it for every workflow. A group that picks a workflow and sets nothing
//! else leaves the workflow's settings in force.
//!
//! Pure: the caller loads the chain (root first) and renders the templates (a group's
//! hostname and variables, the workflow) before asking. The answer depends only on the
//! layers' contents, never on the order groups or variables were created in.

use std::collections::BTreeMap;

use pureboot_contract::ids::Hostname;
use pureboot_contract::OverlayMode;
use serde::Serialize;

use super::group::Group;
use super::node::Node;
pub use super::source::Source;
use super::volumes::{self, PlannedVolume, VolumeSpec};
use super::workflow::Workflow;

/// A value and the layer that set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sourced<T> {
    pub value: T,
    pub from: Source,
}

/// What the resolver reads: every layer, already loaded and rendered.
#[derive(Debug, Clone, Copy)]
pub struct Layers<'a> {
    pub default_base_image: &'a str,
    pub node: &'a Node,
    /// The node's group chain, root first (empty: in no group).
    pub groups: &'a [Group],
    /// The node's workflow (the one [`workflow_of`] names), if it has a usable one.
    pub workflow: Option<&'a Workflow>,
}

/// A node's settings as its boots get them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Effective {
    pub workflow: Option<Sourced<String>>,
    /// A reference (an image, or a channel or version name): resolved to a directory later.
    pub base_image: Sourced<String>,
    pub overlay: Sourced<OverlayMode>,
    pub hostname: Sourced<String>,
    /// In path order (a volume inside another after it); each names where it came from.
    pub volumes: Vec<PlannedVolume>,
    /// More volumes together than a node may have: the boot waits with this reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes_error: Option<String>,
    pub variables: BTreeMap<String, Sourced<String>>,
}

/// The workflow a node runs: its own, else the nearest group's that names one.
pub fn workflow_of(node: &Node, groups: &[Group]) -> Option<Sourced<String>> {
    let from_groups = groups
        .iter()
        .rev()
        .map(|g| (g.workflow_id.clone(), Source::Group(g.name.clone())));
    std::iter::once((node.workflow_id.clone(), Source::Node))
        .chain(from_groups)
        .find_map(|(v, from)| v.map(|value| Sourced { value, from }))
}

/// The first value set, highest layer first, else `default`.
fn pick<T>(layers: impl IntoIterator<Item = (Option<T>, Source)>, default: T) -> Sourced<T> {
    layers
        .into_iter()
        .find_map(|(v, from)| v.map(|value| Sourced { value, from }))
        .unwrap_or(Sourced {
            value: default,
            from: Source::Default,
        })
}

/// The NFS server a node is pinned to (`[[nfs.servers]]`, see [`super::pool`]): its own
/// pin, else its groups' (leaf to root), else its workflow's `nfs_server`; none: the pool
/// places it. The pins live beside the node and group rows, so the caller passes them.
pub fn nfs_server_pin(
    node_pin: Option<&str>,
    groups: &[Group],
    group_pins: &BTreeMap<String, String>,
    workflow: Option<&Workflow>,
) -> Option<Sourced<String>> {
    let of_groups = groups.iter().rev().map(|g| {
        (
            group_pins.get(&g.name).cloned(),
            Source::Group(g.name.clone()),
        )
    });
    let of_wf = workflow.map(|w| {
        (
            w.nfs_server.clone().filter(|s| !s.is_empty()),
            Source::Workflow(w.id.clone()),
        )
    });
    std::iter::once((node_pin.map(str::to_string), Source::Node))
        .chain(of_groups)
        .chain(of_wf)
        .find_map(|(v, from)| v.map(|value| Sourced { value, from }))
}

pub fn resolve(l: Layers<'_>) -> Effective {
    let Layers {
        node,
        groups,
        workflow: wf,
        ..
    } = l;
    let wf_source = || Source::Workflow(wf.map(|w| w.id.clone()).unwrap_or_default());
    // Highest first: the node, the groups leaf to root, the workflow.
    let single = |own: Option<String>,
                  of_group: &dyn Fn(&Group) -> Option<String>,
                  of_wf: &dyn Fn(&Workflow) -> Option<String>,
                  default: String| {
        let mut layers = vec![(own, Source::Node)];
        layers.extend(
            groups
                .iter()
                .rev()
                .map(|g| (of_group(g), Source::Group(g.name.clone()))),
        );
        layers.push((wf.and_then(of_wf), wf_source()));
        pick(layers, default)
    };
    let base_image = single(
        node.base_image.clone(),
        &|g| g.base_image.clone(),
        &|w| w.base_image.clone(),
        l.default_base_image.to_string(),
    );
    let hostname = single(
        node.hostname.as_ref().map(ToString::to_string),
        &|g| g.hostname.clone(),
        &|w| w.hostname.clone(),
        Hostname::for_serial(&node.serial).to_string(),
    );
    let mut overlay_layers = vec![(node.overlay_mode, Source::Node)];
    overlay_layers.extend(
        groups
            .iter()
            .rev()
            .map(|g| (g.overlay_mode, Source::Group(g.name.clone()))),
    );
    overlay_layers.push((wf.and_then(|w| w.overlay), wf_source()));
    let overlay = pick(overlay_layers, OverlayMode::default());

    let mut volume_layers: Vec<(Source, &[VolumeSpec])> = vec![(Source::Node, &node.volumes)];
    volume_layers.extend(
        groups
            .iter()
            .rev()
            .map(|g| (Source::Group(g.name.clone()), &g.volumes[..])),
    );
    if let Some(w) = wf {
        volume_layers.push((wf_source(), &w.volumes));
    }
    let (volumes, volumes_error) = match volumes::effective(&volume_layers) {
        Ok(v) => (v, None),
        Err(e) => (Vec::new(), Some(e)),
    };

    // Lowest first, each layer's keys over the ones below.
    let mut variables = BTreeMap::new();
    let var_layers = wf.map(|w| (&w.variables, wf_source())).into_iter().chain(
        groups
            .iter()
            .map(|g| (&g.variables, Source::Group(g.name.clone()))),
    );
    for (vars, from) in var_layers {
        for (k, v) in vars {
            variables.insert(
                k.clone(),
                Sourced {
                    value: v.clone(),
                    from: from.clone(),
                },
            );
        }
    }
    Effective {
        workflow: workflow_of(node, groups),
        base_image,
        overlay,
        hostname,
        volumes,
        volumes_error,
        variables,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::state::NodeState;
    use pureboot_contract::ids::Hostname;

    const DEFAULT: &str = "debian-arm64";

    fn wf() -> Workflow {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../workflows/pi-diskless-nfs.yaml"),
        )
        .unwrap();
        let mut wf: Workflow = serde_norway::from_str(&text).unwrap();
        wf.base_image = None;
        wf.overlay = None;
        wf.hostname = None;
        wf.volumes.clear();
        wf.variables.clear();
        wf
    }

    fn vol(path: &str, size_mb: u64) -> VolumeSpec {
        VolumeSpec {
            path: path.into(),
            size_mb,
        }
    }

    /// Which layers set a value: the workflow, the root group, the leaf group, the node.
    #[derive(Debug, Clone, Copy)]
    struct Sets {
        wf: bool,
        root: bool,
        leaf: bool,
        node: bool,
    }

    /// Every combination of the four layers setting a value.
    fn combinations() -> Vec<Sets> {
        (0..16u8)
            .map(|b| Sets {
                wf: b & 1 != 0,
                root: b & 2 != 0,
                leaf: b & 4 != 0,
                node: b & 8 != 0,
            })
            .collect()
    }

    /// The source a single value must come from when `s` say who sets it.
    fn expected(s: Sets) -> Source {
        if s.node {
            Source::Node
        } else if s.leaf {
            Source::Group("leaf".into())
        } else if s.root {
            Source::Group("root".into())
        } else if s.wf {
            Source::Workflow("pi-diskless-nfs".into())
        } else {
            Source::Default
        }
    }

    fn layers(s: Sets, field: &str) -> (Node, Vec<Group>, Workflow) {
        let mut node = Node::sample("d83add36", NodeState::Active);
        let mut root = Group {
            name: "root".into(),
            ..Group::default()
        };
        let mut leaf = Group {
            name: "leaf".into(),
            parent: Some("root".into()),
            ..Group::default()
        };
        let mut w = wf();
        let set = |who: &str| format!("{who}-{field}");
        match field {
            "base_image" => {
                w.base_image = s.wf.then(|| set("wf"));
                root.base_image = s.root.then(|| set("root"));
                leaf.base_image = s.leaf.then(|| set("leaf"));
                node.base_image = s.node.then(|| set("node"));
            }
            "hostname" => {
                w.hostname = s.wf.then(|| set("wf"));
                root.hostname = s.root.then(|| set("root"));
                leaf.hostname = s.leaf.then(|| set("leaf"));
                node.hostname = s.node.then(|| Hostname::parse(&set("node")).unwrap());
            }
            "overlay" => {
                w.overlay = s.wf.then_some(OverlayMode::Image);
                root.overlay_mode = s.root.then_some(OverlayMode::Nfs);
                leaf.overlay_mode = s.leaf.then_some(OverlayMode::None);
                node.overlay_mode = s.node.then_some(OverlayMode::Image);
            }
            "workflow" => {
                node.workflow_id = s.node.then(|| "node-wf".into());
                root.workflow_id = s.root.then(|| "root-wf".into());
                leaf.workflow_id = s.leaf.then(|| "leaf-wf".into());
            }
            "volumes" | "variables" => {
                // One shared key/path every setting layer declares, one of each's own.
                for (on, who) in [
                    (s.wf, "wf"),
                    (s.root, "root"),
                    (s.leaf, "leaf"),
                    (s.node, "node"),
                ] {
                    if !on {
                        continue;
                    }
                    let size = match who {
                        "wf" => 16,
                        "root" => 32,
                        "leaf" => 64,
                        _ => 128,
                    };
                    let list = match who {
                        "wf" => &mut w.volumes,
                        "root" => &mut root.volumes,
                        "leaf" => &mut leaf.volumes,
                        _ => &mut node.volumes,
                    };
                    list.extend([vol("/shared", size), vol(&format!("/{who}"), size)]);
                    let vars = match who {
                        "wf" => Some(&mut w.variables),
                        "root" => Some(&mut root.variables),
                        "leaf" => Some(&mut leaf.variables),
                        // Nodes have no variables of their own.
                        _ => None,
                    };
                    if let Some(vars) = vars {
                        vars.insert("shared".into(), who.into());
                        vars.insert(format!("only_{who}"), who.into());
                    }
                }
            }
            _ => unreachable!(),
        }
        (node, vec![root, leaf], w)
    }

    fn resolved(node: &Node, groups: &[Group], w: &Workflow) -> Effective {
        resolve(Layers {
            default_base_image: DEFAULT,
            node,
            groups,
            workflow: Some(w),
        })
    }

    #[test]
    fn every_field_over_every_combination_of_layers() {
        for s in combinations() {
            let want = expected(s);
            fn name(src: &Source) -> &str {
                match src {
                    Source::Node => "node",
                    Source::Group(g) => g.as_str(),
                    Source::Workflow(_) => "wf",
                    Source::Default => "default",
                }
            }
            // base image and hostname: the value is the setter's.
            for field in ["base_image", "hostname"] {
                let (node, groups, w) = layers(s, field);
                let e = resolved(&node, &groups, &w);
                let got = if field == "base_image" {
                    &e.base_image
                } else {
                    &e.hostname
                };
                assert_eq!(got.from, want, "{field} {s:?}");
                let value = match &want {
                    Source::Default if field == "base_image" => DEFAULT.to_string(),
                    Source::Default => "pi-d83add36".to_string(),
                    src => format!("{}-{field}", name(src)),
                };
                assert_eq!(got.value, value, "{field} {s:?}");
            }
            let (node, groups, w) = layers(s, "overlay");
            let e = resolved(&node, &groups, &w);
            assert_eq!(e.overlay.from, want, "overlay {s:?}");
            let mode = match &want {
                Source::Node | Source::Workflow(_) => OverlayMode::Image,
                Source::Group(g) if g == "root" => OverlayMode::Nfs,
                Source::Group(_) => OverlayMode::None,
                Source::Default => OverlayMode::Tmpfs,
            };
            assert_eq!(e.overlay.value, mode, "overlay {s:?}");
            // The workflow: the workflow layer cannot choose itself.
            let (node, groups, w) = layers(s, "workflow");
            let e = resolved(&node, &groups, &w);
            let want_wf = match expected(Sets { wf: false, ..s }) {
                Source::Default => None,
                src => Some(Sourced {
                    value: format!("{}-wf", name(&src)),
                    from: src,
                }),
            };
            assert_eq!(e.workflow, want_wf, "workflow {s:?}");
            // Volumes: per path the highest declaring layer; every layer's own path kept.
            let (node, groups, w) = layers(s, "volumes");
            let e = resolved(&node, &groups, &w);
            let shared = e.volumes.iter().find(|v| v.path.as_str() == "/shared");
            match &want {
                Source::Default => assert!(shared.is_none(), "{s:?}"),
                src => assert_eq!(shared.map(|v| &v.from), Some(src), "volumes {s:?}"),
            }
            let own: Vec<&str> = e.volumes.iter().map(|v| v.path.as_str()).collect();
            for (on, who) in [
                (s.wf, "/wf"),
                (s.root, "/root"),
                (s.leaf, "/leaf"),
                (s.node, "/node"),
            ] {
                assert_eq!(own.contains(&who), on, "volumes {s:?}: {own:?}");
            }
            // Variables: key by key, nodes have none of their own.
            let want_var = expected(Sets { node: false, ..s });
            match &want_var {
                Source::Default => assert!(e.variables.is_empty(), "{s:?}"),
                src => {
                    assert_eq!(e.variables["shared"].from, *src, "variables {s:?}");
                    assert_eq!(e.variables["shared"].value, name(src), "variables {s:?}");
                }
            }
            for (on, who) in [(s.wf, "wf"), (s.root, "root"), (s.leaf, "leaf")] {
                assert_eq!(
                    e.variables.contains_key(&format!("only_{who}")),
                    on,
                    "{s:?}"
                );
            }
        }
    }

    /// Deterministic permutations (Heap's algorithm): every order of `items`.
    fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
        fn heap<T: Clone>(k: usize, a: &mut Vec<T>, out: &mut Vec<Vec<T>>) {
            if k <= 1 {
                out.push(a.clone());
                return;
            }
            for i in 0..k {
                heap(k - 1, a, out);
                let j = if k & 1 == 0 { i } else { 0 };
                a.swap(j, k - 1);
            }
        }
        let mut a = items.to_vec();
        let mut out = Vec::new();
        heap(a.len(), &mut a, &mut out);
        out
    }

    /// Groups and variables created in any order give the same answer: the chain is
    /// built from the parents (as the store does, from a map by name), and a map's
    /// insertion order is not its contents.
    #[test]
    fn the_answer_does_not_depend_on_creation_order() {
        let mk = |name: &str, parent: Option<&str>, vars: &[(&str, &str)]| Group {
            name: name.into(),
            parent: parent.map(Into::into),
            base_image: (name == "rack").then(|| "rack-img".into()),
            hostname: (name == "site").then(|| "site-host".into()),
            overlay_mode: (name == "k3s").then_some(OverlayMode::Image),
            volumes: vec![vol("/data", if name == "site" { 16 } else { 32 })],
            variables: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Group::default()
        };
        let groups = [
            mk("site", None, &[("a", "site"), ("b", "site"), ("c", "site")]),
            mk("rack", Some("site"), &[("b", "rack"), ("d", "rack")]),
            mk("k3s", Some("rack"), &[("c", "k3s"), ("d", "k3s")]),
            mk("other", Some("site"), &[("a", "other")]),
        ];
        let mut node = Node::sample("d83add36", NodeState::Active);
        node.group = Some("k3s".into());
        let mut w = wf();
        w.variables = [("a", "wf"), ("e", "wf")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut answers = Vec::new();
        for order in permutations(&groups) {
            // Variables inserted in this order's reverse too.
            let order: Vec<Group> = order
                .into_iter()
                .map(|mut g| {
                    let pairs: Vec<_> = g.variables.clone().into_iter().rev().collect();
                    g.variables = pairs.into_iter().collect();
                    g
                })
                .collect();
            let by_name = order.iter().map(|g| (g.name.clone(), g.clone())).collect();
            let chain = crate::domain::group::chain("k3s", &by_name).unwrap();
            answers.push(resolved(&node, &chain, &w));
        }
        assert_eq!(answers.len(), 24);
        assert!(
            answers.windows(2).all(|p| p[0] == p[1]),
            "{:#?}",
            answers[0]
        );
        let e = &answers[0];
        let vars: Vec<(&str, &str, String)> = e
            .variables
            .iter()
            .map(|(k, v)| (k.as_str(), v.value.as_str(), v.from.to_string()))
            .collect();
        assert_eq!(
            vars,
            [
                ("a", "site", "group site".to_string()),
                ("b", "rack", "group rack".into()),
                ("c", "k3s", "group k3s".into()),
                ("d", "k3s", "group k3s".into()),
                ("e", "wf", "workflow pi-diskless-nfs".into()),
            ]
        );
        assert_eq!(
            (e.base_image.value.as_str(), e.base_image.from.to_string()),
            ("rack-img", "group rack".into())
        );
        assert_eq!(e.hostname.from, Source::Group("site".into()));
        assert_eq!(e.overlay.value, OverlayMode::Image);
        assert_eq!(e.volumes[0].size_mb, 32, "the leaf's /data");
    }

    #[test]
    fn too_many_volumes_together_is_an_error_not_a_silent_cut() {
        let node = Node::sample("d83add36", NodeState::Active);
        let g = Group {
            name: "many".into(),
            volumes: (0..=pureboot_contract::volumes::MAX_VOLUMES)
                .map(|i| vol(&format!("/v{i}"), 16))
                .collect(),
            ..Group::default()
        };
        let e = resolved(&node, std::slice::from_ref(&g), &wf());
        assert!(e.volumes_error.unwrap().contains("at most"));
    }

    /// The NFS server pin follows the same precedence as every single value, with its source.
    #[test]
    fn nfs_server_pin_follows_the_precedence() {
        for s in combinations() {
            let (_, groups, mut w) = layers(s, "base_image");
            w.nfs_server = s.wf.then(|| "wf-nfs".to_string());
            let mut pins = BTreeMap::new();
            for (who, on) in [("root", s.root), ("leaf", s.leaf)] {
                if on {
                    pins.insert(who.to_string(), format!("{who}-nfs"));
                }
            }
            let node_pin = s.node.then_some("node-nfs");
            let got = nfs_server_pin(node_pin, &groups, &pins, Some(&w));
            let want = expected(s);
            match got {
                None => assert_eq!(want, Source::Default, "{s:?}"),
                Some(p) => {
                    assert_eq!(p.from, want, "{s:?}");
                    let who = match &want {
                        Source::Node => "node".to_string(),
                        Source::Group(g) => g.clone(),
                        _ => "wf".to_string(),
                    };
                    assert_eq!(p.value, format!("{who}-nfs"), "{s:?}");
                }
            }
        }
    }
}
