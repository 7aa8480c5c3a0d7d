//! The rules that place a new node in a group at its first contact: tried by ascending
//! priority, the first whose every criterion (a glob over the serial or the MAC, a board
//! model) matches wins ([`first_match`]).

use pureboot_contract::ids::{Mac, Serial};
use serde::{Deserialize, Serialize};

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
        super::group::check_name(&self.group)?;
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

    #[test]
    fn globs() {
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
