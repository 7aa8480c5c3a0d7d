//! Requested names -> the modules to load, in an order the kernel accepts.
//!
//! For each request in the order given: its softdep `pre:` modules, its modules.dep
//! dependencies (each with its own closure first), the module itself, then its softdep
//! `post:` modules. Every module appears once, at its first place. Softdeps name aliases
//! (`crypto-crc32c`), resolved like modprobe does: a module name first, then every module
//! the alias matches.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{normalize, KmodError, ModuleDb};

/// A module asked for by name or alias, with optional parameters for the load list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub name: String,
    pub params: Option<String>,
}

impl Request {
    /// `"name"` or `"name param=value ..."`.
    pub fn parse(spec: &str) -> Self {
        let spec = spec.trim();
        match spec.split_once(char::is_whitespace) {
            Some((name, params)) => Self {
                name: name.to_string(),
                params: Some(params.trim().to_string()),
            },
            None => Self {
                name: spec.to_string(),
                params: None,
            },
        }
    }
}

/// What a name stands for in one module tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Modules(Vec<String>),
    Builtin,
    NotFound,
}

/// One module to load: its normalized name, its file (relative, as in modules.dep).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub name: String,
    pub path: String,
    pub params: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadPlan {
    /// In load order.
    pub modules: Vec<Resolved>,
    /// Requested or soft-depended names the kernel has built in (nothing to load).
    pub builtin: BTreeSet<String>,
    /// Softdeps found nowhere, as "name (softdep of module)": modprobe skips these too.
    pub missing_softdeps: Vec<String>,
}

impl ModuleDb {
    pub fn lookup(&self, name: &str) -> Lookup {
        let name = normalize(name);
        if self.modules.contains_key(&name) {
            return Lookup::Modules(vec![name]);
        }
        if self.builtin.contains(&name) {
            return Lookup::Builtin;
        }
        let targets = self.aliases.lookup(&name);
        let loadable: Vec<String> = targets
            .iter()
            .filter(|m| self.modules.contains_key(*m))
            .cloned()
            .collect();
        if !loadable.is_empty() {
            Lookup::Modules(loadable)
        } else if targets.iter().any(|m| self.builtin.contains(m))
            || !self.builtin_aliases.lookup(&name).is_empty()
        {
            Lookup::Builtin
        } else {
            Lookup::NotFound
        }
    }

    /// The ordered closure of `requests`; a request found nowhere is an error.
    pub fn resolve(&self, requests: &[Request]) -> Result<LoadPlan, KmodError> {
        let mut walk = Walk {
            db: self,
            state: HashMap::new(),
            stack: Vec::new(),
            plan: LoadPlan::default(),
        };
        let mut params: BTreeMap<String, String> = BTreeMap::new();
        for request in requests {
            match self.lookup(&request.name) {
                Lookup::Modules(names) => {
                    for name in names {
                        if let Some(p) = &request.params {
                            params.insert(name.clone(), p.clone());
                        }
                        walk.visit(&name)?;
                    }
                }
                Lookup::Builtin => {
                    walk.plan.builtin.insert(normalize(&request.name));
                }
                Lookup::NotFound => {
                    return Err(KmodError::NotFound {
                        name: request.name.clone(),
                        wanted_by: String::new(),
                        dir: self.dir.clone(),
                    })
                }
            }
        }
        let mut plan = walk.plan;
        for module in &mut plan.modules {
            module.params = params.remove(&module.name);
        }
        Ok(plan)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Visiting,
    Done,
}

struct Walk<'a> {
    db: &'a ModuleDb,
    state: HashMap<String, State>,
    /// The chain being visited, to name a cycle.
    stack: Vec<String>,
    plan: LoadPlan,
}

impl Walk<'_> {
    fn visit(&mut self, name: &str) -> Result<(), KmodError> {
        match self.state.get(name) {
            Some(State::Done) => return Ok(()),
            Some(State::Visiting) => {
                let start = self.stack.iter().position(|n| n == name).unwrap_or(0);
                let mut chain = self.stack[start..].to_vec();
                chain.push(name.to_string());
                return Err(KmodError::Cycle(chain));
            }
            None => {}
        }
        let db = self.db;
        let file = db.modules.get(name).ok_or_else(|| KmodError::NotFound {
            name: name.to_string(),
            wanted_by: self
                .stack
                .last()
                .map(|by| format!(" (needed by {by})"))
                .unwrap_or_default(),
            dir: db.dir.clone(),
        })?;
        let softdep = db.softdeps.get(name);
        self.state.insert(name.to_string(), State::Visiting);
        self.stack.push(name.to_string());
        for pre in softdep.map(|s| s.pre.as_slice()).unwrap_or_default() {
            self.visit_soft(pre, name)?;
        }
        // depmod lists dependencies so that loading them in reverse works (modprobe does).
        for dep in file.deps.iter().rev() {
            self.visit(dep)?;
        }
        self.stack.pop();
        self.state.insert(name.to_string(), State::Done);
        self.plan.modules.push(Resolved {
            name: name.to_string(),
            path: file.path.clone(),
            params: None,
        });
        // Post softdeps come after the module is loaded, so they cannot form a cycle with it.
        for post in softdep.map(|s| s.post.as_slice()).unwrap_or_default() {
            self.visit_soft(post, name)?;
        }
        Ok(())
    }

    fn visit_soft(&mut self, wanted: &str, by: &str) -> Result<(), KmodError> {
        match self.db.lookup(wanted) {
            Lookup::Modules(names) => names.iter().try_for_each(|m| self.visit(m)),
            Lookup::Builtin => {
                self.plan.builtin.insert(normalize(wanted));
                Ok(())
            }
            Lookup::NotFound => {
                self.plan
                    .missing_softdeps
                    .push(format!("{wanted} (softdep of {by})"));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pureboot_contract::modules_list::Aliases;

    /// A db from (path, deps) pairs, softdep text and alias text, without touching disk.
    fn db(deps: &[(&str, &[&str])], softdep: &str, alias: &str, builtin: &[&str]) -> ModuleDb {
        let modules = deps
            .iter()
            .map(|(path, deps)| {
                let name = crate::kmod::module_name(path).unwrap();
                let deps = deps
                    .iter()
                    .map(|d| crate::kmod::module_name(d).unwrap())
                    .collect();
                (
                    name,
                    crate::kmod::ModuleFile {
                        path: path.to_string(),
                        deps,
                    },
                )
            })
            .collect();
        ModuleDb {
            dir: "/fake/lib/modules/1.0".into(),
            kver: "1.0".into(),
            modules,
            builtin: builtin.iter().map(|s| s.to_string()).collect(),
            aliases: Aliases::parse(alias),
            builtin_aliases: Aliases::default(),
            softdeps: crate::kmod::softdep::parse_modules_softdep(softdep),
        }
    }

    fn names(plan: &LoadPlan) -> Vec<&str> {
        plan.modules.iter().map(|m| m.name.as_str()).collect()
    }

    fn requests(names: &[&str]) -> Vec<Request> {
        names.iter().map(|n| Request::parse(n)).collect()
    }

    #[test]
    fn deps_come_first_in_reverse_depmod_order_and_once() {
        let db = db(
            &[
                ("k/nfsv4.ko", &["k/nfs.ko", "k/sunrpc.ko"]),
                ("k/nfsv3.ko", &["k/nfs_acl.ko", "k/nfs.ko", "k/sunrpc.ko"]),
                ("k/nfs.ko", &["k/sunrpc.ko"]),
                ("k/nfs_acl.ko", &["k/sunrpc.ko"]),
                ("k/sunrpc.ko", &[]),
            ],
            "",
            "",
            &[],
        );
        let plan = db.resolve(&requests(&["nfsv4", "nfsv3"])).unwrap();
        assert_eq!(names(&plan), ["sunrpc", "nfs", "nfsv4", "nfs_acl", "nfsv3"]);
    }

    #[test]
    fn request_order_decides_which_closure_loads_first() {
        let db = db(
            &[
                ("k/virtio_net.ko", &["k/net_failover.ko", "k/failover.ko"]),
                ("k/net_failover.ko", &["k/failover.ko"]),
                ("k/failover.ko", &[]),
                ("k/overlay.ko", &[]),
            ],
            "",
            "",
            &[],
        );
        let nic_first = db.resolve(&requests(&["virtio_net", "overlay"])).unwrap();
        assert_eq!(
            names(&nic_first),
            ["failover", "net_failover", "virtio_net", "overlay"]
        );
        let nic_last = db.resolve(&requests(&["overlay", "virtio_net"])).unwrap();
        assert_eq!(
            names(&nic_last),
            ["overlay", "failover", "net_failover", "virtio_net"]
        );
    }

    #[test]
    fn softdeps_resolve_through_aliases_pre_before_post_after() {
        let db = db(
            &[("k/ext4.ko", &["k/jbd2.ko"]),
              ("k/jbd2.ko", &[]),
              ("k/crc32c_generic.ko", &[]),
              ("k/crc32c-arm64.ko", &[]),
              ("k/after.ko", &[])],
            "softdep ext4 pre: crypto-crc32c post: fs-after\nsoftdep jbd2 pre: crypto-crc32c\n",
            "alias crypto-crc32c crc32c_generic\nalias crypto-crc32c crc32c-arm64\nalias fs-after after\n",
            &[],
        );
        let plan = db.resolve(&requests(&["ext4"])).unwrap();
        assert_eq!(
            names(&plan),
            ["crc32c_generic", "crc32c_arm64", "jbd2", "ext4", "after"]
        );
        assert!(plan.missing_softdeps.is_empty());
    }

    #[test]
    fn builtin_and_missing_softdeps_are_reported_not_fatal() {
        let db = db(
            &[("k/ext4.ko", &[])],
            "softdep ext4 pre: crypto-crc32c post: nowhere\n",
            "alias crypto-crc32c crc32c_generic\n",
            &["crc32c_generic", "overlay"],
        );
        let plan = db.resolve(&requests(&["ext4", "overlay"])).unwrap();
        assert_eq!(names(&plan), ["ext4"]);
        assert_eq!(
            plan.builtin,
            ["crypto_crc32c".to_string(), "overlay".to_string()].into()
        );
        assert_eq!(plan.missing_softdeps, ["nowhere (softdep of ext4)"]);
    }

    #[test]
    fn missing_request_and_missing_dependency_are_errors() {
        let db = db(&[("k/a.ko", &["k/b.ko"])], "", "", &[]);
        let err = db.resolve(&requests(&["nope"])).unwrap_err().to_string();
        assert!(
            err.contains("\"nope\"") && err.contains("/fake/lib/modules/1.0"),
            "{err}"
        );
        let err = db.resolve(&requests(&["a"])).unwrap_err().to_string();
        assert!(err.contains("\"b\" (needed by a)"), "{err}");
    }

    #[test]
    fn softdep_cycle_is_named() {
        let db = db(
            &[("k/a.ko", &[]), ("k/b.ko", &[])],
            "softdep a pre: b\nsoftdep b pre: a\n",
            "",
            &[],
        );
        let err = db.resolve(&requests(&["a"])).unwrap_err().to_string();
        assert!(err.contains("a -> b -> a"), "{err}");
    }

    #[test]
    fn params_stick_to_the_requested_module() {
        let db = db(
            &[
                ("k/virtio_net.ko", &["k/failover.ko"]),
                ("k/failover.ko", &[]),
            ],
            "",
            "",
            &[],
        );
        let plan = db
            .resolve(&requests(&["virtio_net  napi_tx=1 foo=bar"]))
            .unwrap();
        assert_eq!(plan.modules[0].params, None);
        assert_eq!(plan.modules[1].params.as_deref(), Some("napi_tx=1 foo=bar"));
    }
}
