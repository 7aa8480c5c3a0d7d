//! Node groups and the rules that put new nodes in them.
//!
//! A node belongs to at most one group; a group may have a parent, so a node's settings
//! come from a chain of groups, root first ([`chain`]). What a group sets and how it
//! combines with the defaults, the workflow and the node is [`super::effective`]'s.
//! A rule ([`GroupRule`]) places a node in a group at its first contact: rules are tried
//! by ascending priority, the first whose every criterion matches wins ([`first_match`]).

use std::collections::BTreeMap;

use pureboot_contract::ids::{Mac, Serial};
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

/// A rule placing new nodes in a group; every criterion given must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRule {
    /// Lower first; unique.
    pub priority: i64,
    pub group: String,
    /// A glob (`*` any run, `?` one character) over the short serial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// A glob over the MAC as `aa:bb:cc:dd:ee:ff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// One of [`super::node::PI_MODELS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl GroupRule {
    /// Criteria written as the matcher compares them (lower case), or why the rule is
    /// not one: no criterion, a pattern with other characters than a serial's or a MAC's
    /// and the wildcards, an unknown model.
    pub fn checked(mut self) -> Result<GroupRule, String> {
        check_name(&self.group)?;
        if self.serial.is_none() && self.mac.is_none() && self.model.is_none() {
            return Err("a rule needs a serial glob, a MAC glob or a model".into());
        }
        let pattern = |what: &str, p: &mut Option<String>, extra: &str| {
            if let Some(p) = p {
                *p = p.to_ascii_lowercase();
                let ok = !p.is_empty()
                    && p.len() <= 32
                    && p.chars()
                        .all(|c| c.is_ascii_hexdigit() || "*?".contains(c) || extra.contains(c));
                if !ok {
                    return Err(format!(
                        "{what} glob {:?}: hex digits{} with * and ?",
                        crate::text::escape_controls(p),
                        if extra.is_empty() { "" } else { ", ':'" }
                    ));
                }
            }
            Ok(())
        };
        pattern("serial", &mut self.serial, "")?;
        pattern("MAC", &mut self.mac, ":")?;
        if let Some(m) = &mut self.model {
            let known = super::node::known_model(m);
            if known == "unknown" {
                return Err(format!(
                    "model {:?} is not one of {}",
                    crate::text::escape_controls(m),
                    super::node::PI_MODELS.join(", ")
                ));
            }
            *m = known.into();
        }
        Ok(self)
    }

    /// Whether a node with these values at its first contact matches. A criterion on a
    /// value the node did not send (no MAC, no model) does not match.
    pub fn matches(&self, serial: &Serial, mac: Option<&Mac>, model: Option<&str>) -> bool {
        let serial_ok = self
            .serial
            .as_deref()
            .is_none_or(|p| glob(p, serial.as_str()));
        let mac_ok = self
            .mac
            .as_deref()
            .is_none_or(|p| mac.is_some_and(|m| glob(p, &m.as_str().to_ascii_lowercase())));
        let model_ok = self
            .model
            .as_deref()
            .is_none_or(|want| model.is_some_and(|m| super::node::known_model(m) == want));
        serial_ok && mac_ok && model_ok
    }
}

/// The rule that places a new node: the first by priority that matches.
pub fn first_match<'a>(
    rules: &'a [GroupRule],
    serial: &Serial,
    mac: Option<&Mac>,
    model: Option<&str>,
) -> Option<&'a GroupRule> {
    let mut sorted: Vec<&GroupRule> = rules.iter().collect();
    sorted.sort_by_key(|r| r.priority);
    sorted.into_iter().find(|r| r.matches(serial, mac, model))
}

/// `*` matches any run of characters, `?` exactly one; everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Iterative matcher with one backtrack point (the last `*`): linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
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
    fn names_and_globs() {
        assert!(check_name("rack-2.k3s_a").is_ok());
        for bad in ["", "Rack", "-x", "a b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        for (p, t, m) in [
            ("d83a*", "d83add36", true),
            ("*36", "d83add36", true),
            ("d8?add36", "d83add36", true),
            ("d8?add3", "d83add36", false),
            ("*", "", true),
            ("dc:a6:32:*", "dc:a6:32:01:02:03", true),
            ("dc:a6:33:*", "dc:a6:32:01:02:03", false),
            ("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
        ] {
            assert_eq!(glob(p, t), m, "{p} ~ {t}");
        }
    }

    #[test]
    fn the_first_matching_rule_by_priority_wins() {
        let rule = |priority,
                    group: &str,
                    serial: Option<&str>,
                    mac: Option<&str>,
                    model: Option<&str>| {
            GroupRule {
                priority,
                group: group.into(),
                serial: serial.map(Into::into),
                mac: mac.map(Into::into),
                model: model.map(Into::into),
            }
            .checked()
            .unwrap()
        };
        let rules = [
            rule(20, "pi4s", None, None, Some("Pi4")),
            rule(10, "lab", Some("d83a*"), Some("DC:A6:32:*"), None),
            rule(30, "rest", Some("*"), None, None),
        ];
        let s = Serial::parse("d83add36").unwrap();
        let mac = Mac::parse("dc:a6:32:01:02:03").unwrap();
        let pick = |mac: Option<&Mac>, model: Option<&str>| {
            first_match(&rules, &s, mac, model).map(|r| r.group.as_str())
        };
        assert_eq!(pick(Some(&mac), Some("pi4")), Some("lab"));
        // A MAC criterion needs a MAC: the next rule by priority.
        assert_eq!(pick(None, Some("pi4")), Some("pi4s"));
        assert_eq!(pick(None, None), Some("rest"));
        assert_eq!(first_match(&rules[..2], &s, None, None), None);
        let bad = GroupRule {
            priority: 1,
            group: "x".into(),
            serial: None,
            mac: None,
            model: None,
        };
        assert!(bad.clone().checked().is_err());
        assert!(GroupRule {
            serial: Some("zz*".into()),
            ..bad.clone()
        }
        .checked()
        .is_err());
        assert!(GroupRule {
            model: Some("pi9".into()),
            ..bad
        }
        .checked()
        .is_err());
    }
}
