//! Node groups.
//!
//! A node belongs to at most one group; a group may have a parent, so a node's settings
//! come from a chain of groups, root first ([`chain`]). What a group sets and how it
//! combines with the defaults, the workflow and the node is [`super::effective`]'s; the
//! rules that place new nodes in groups are [`super::group_rule`]'s.

use std::collections::BTreeMap;

use pureboot_contract::OverlayMode;
use serde::{Deserialize, Serialize};

use super::volumes::VolumeSpec;

/// Longest group chain (root to leaf) a node may have: deep enough for site / rack /
/// role, short enough that a chain is read in one look.
pub const MAX_DEPTH: usize = 8;

/// What a group sets for its members; `None` (or empty) fields leave the value to the
/// groups above, the workflow or the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    /// A base image reference (an image, channel or version name), never a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay_mode: Option<OverlayMode>,
    /// A hostname template, rendered like a workflow's (`rack2-{{ serial }}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeSpec>,
    /// Templates, rendered like a workflow's `variables`, merged over them key by key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
}

/// A group's name: 1 to 63 of `a-z 0-9 - _ .`, starting with a letter or digit (it is
/// shown in tables and event details, and typed on command lines).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "group name {:?}: 1 to 63 of a-z, 0-9, '-', '_', '.', starting with a letter or digit",
            crate::text::escape_controls(&name.chars().take(64).collect::<String>())
        ))
    }
}

/// The chain of `name`, root first, from every group by name. `Err`: a missing group
/// (named as a parent but gone), a cycle or a chain deeper than [`MAX_DEPTH`]; the store
/// refuses writes that would make one, so this is a guard against a hand-edited registry.
pub fn chain(name: &str, all: &BTreeMap<String, Group>) -> Result<Vec<Group>, String> {
    let mut out: Vec<Group> = Vec::new();
    let mut next = Some(name.to_string());
    while let Some(n) = next {
        if out.iter().any(|g| g.name == n) {
            return Err(format!("group {n} is its own ancestor"));
        }
        if out.len() == MAX_DEPTH {
            return Err(format!("group {name} is more than {MAX_DEPTH} levels deep"));
        }
        let g = all
            .get(&n)
            .ok_or_else(|| format!("group {n} does not exist"))?;
        next = g.parent.clone();
        out.push(g.clone());
    }
    out.reverse();
    Ok(out)
}

/// Why `name` may not take `parent` (None: it may): the parent is the group itself or one
/// of its descendants (a cycle), or the chain would be too deep.
pub fn parent_refusal(name: &str, parent: &str, all: &BTreeMap<String, Group>) -> Option<String> {
    let mut with = all.clone();
    let mut g = with.get(name).cloned().unwrap_or_else(|| Group {
        name: name.into(),
        ..Group::default()
    });
    g.parent = Some(parent.into());
    with.insert(name.into(), g);
    if let Err(e) = chain(name, &with) {
        return Some(if e.contains("own ancestor") {
            format!(
                "{parent} is {name} or one of its descendants: a group cannot be its own ancestor"
            )
        } else {
            e
        });
    }
    // The deepest member of the moved subtree must fit too.
    check_all(&with).err()
}

/// Every group's chain is valid (no cycle, not too deep): what a write must keep.
pub fn check_all(all: &BTreeMap<String, Group>) -> Result<(), String> {
    all.keys().try_for_each(|k| chain(k, all).map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(name: &str, parent: Option<&str>) -> Group {
        Group {
            name: name.into(),
            parent: parent.map(Into::into),
            ..Group::default()
        }
    }

    fn all(groups: &[Group]) -> BTreeMap<String, Group> {
        groups.iter().map(|g| (g.name.clone(), g.clone())).collect()
    }

    #[test]
    fn chains_run_root_first_and_cycles_are_refused() {
        let set = all(&[
            g("site", None),
            g("rack", Some("site")),
            g("k3s", Some("rack")),
        ]);
        let names: Vec<_> = chain("k3s", &set)
            .unwrap()
            .into_iter()
            .map(|g| g.name)
            .collect();
        assert_eq!(names, ["site", "rack", "k3s"]);
        let why = parent_refusal("site", "k3s", &set).unwrap();
        assert!(why.contains("own ancestor"), "{why}");
        assert!(parent_refusal("site", "site", &set).is_some());
        assert_eq!(parent_refusal("k3s", "site", &set), None);
        let deep: Vec<Group> = (0..MAX_DEPTH)
            .map(|i| {
                g(
                    &format!("d{i}"),
                    (i > 0).then(|| format!("d{}", i - 1)).as_deref(),
                )
            })
            .collect();
        let set = all(&deep);
        assert!(check_all(&set).is_ok());
        let why = parent_refusal("d0", "site", &{
            let mut s = set.clone();
            s.insert("site".into(), g("site", None));
            s
        })
        .unwrap();
        assert!(why.contains("levels deep"), "{why}");
        assert!(chain("gone", &set).unwrap_err().contains("does not exist"));
    }

    #[test]
    fn names() {
        assert!(check_name("rack-2.k3s_a").is_ok());
        for bad in ["", "Rack", "-x", "a b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
