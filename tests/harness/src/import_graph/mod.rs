//! The workspace's import graph, read from the source text: no file imports itself back
//! through others (no circle), and pi-init and pureboot-image take nothing from the controller
//! but its contract crate. Plain text reading, no compiler: `tests/test.sh` runs it with the
//! harness's self-tests on a fresh machine.
//!
//! Each crate root (`src/lib.rs`, `src/main.rs`, `src/bin/…`, `tests/*.rs`, or the paths its
//! Cargo.toml names) is followed through its `mod child;` declarations to map every file to
//! its module path. A file's imports are the paths in its code, comments and strings left out:
//! `use` trees (`pub use` too, grouped `use crate::{a, b::c}`, `self` in a group, `as`), and
//! paths written in the code that start with `crate`, `self`, `super`, a child module, or a
//! name a `use` brought in. Each resolves to the file that defines the longest module prefix
//! of it. A parent's `mod child;` declaration is not an import: it only says where the child
//! lives. Nor is what a module takes from its own ancestors (`super::Error` in a folder's
//! child, `crate::serial` at the root): that is its enclosing scope, whose private items Rust
//! shows it, not a corridor between rooms. Everything else is, between any two files.
//!
//! `house` holds the checks on this workspace; `scan` reads one file, `manifest` the
//! Cargo.toml files.

mod house;
mod manifest;
mod scan;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use scan::{scan, FileScan, PathUse};

/// One file of the house: which crate root's tree it is in, and its module path there.
#[derive(Debug)]
struct SourceFile {
    path: PathBuf,
    root: usize,
    module: Vec<String>,
    scan: FileScan,
}

/// Every file reached from the crate roots, and the imports between them.
#[derive(Debug, Default)]
struct Graph {
    files: Vec<SourceFile>,
    /// (crate root, module path) → the file that defines it (inline modules: their file).
    modules: BTreeMap<(usize, Vec<String>), usize>,
    /// from → to → the paths that tie them.
    edges: BTreeMap<usize, BTreeMap<usize, BTreeSet<String>>>,
    /// What could not be followed: a `mod x;` whose file is nowhere (a `#[path]` is not read),
    /// a root that cannot be read.
    faults: Vec<String>,
}

impl Graph {
    /// Follows each root through its `mod` declarations; `read` gives a file's text.
    fn build(roots: &[PathBuf], read: &dyn Fn(&Path) -> Option<String>) -> Graph {
        let mut g = Graph::default();
        for (root, root_path) in roots.iter().enumerate() {
            let mut queue = vec![(root_path.clone(), Vec::<String>::new(), true)];
            while let Some((path, module, is_root)) = queue.pop() {
                let Some(src) = read(&path) else {
                    g.faults.push(format!("{}: cannot be read", path.display()));
                    continue;
                };
                let scan = scan(&src);
                let id = g.files.len();
                g.modules.insert((root, module.clone()), id);
                for inline in &scan.mod_inline {
                    g.modules
                        .insert((root, [module.clone(), inline.clone()].concat()), id);
                }
                // Children of lib.rs, main.rs and mod.rs sit beside them; of a.rs, in a/.
                let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
                let base = if is_root || path.file_name() == Some("mod.rs".as_ref()) {
                    dir
                } else {
                    dir.join(path.file_stem().unwrap_or_default())
                };
                for (scope, name) in &scan.mod_files {
                    let dir = scope.iter().fold(base.clone(), |d, s| d.join(s));
                    let flat = dir.join(format!("{name}.rs"));
                    let nested = dir.join(name).join("mod.rs");
                    let child = [module.clone(), scope.clone(), vec![name.clone()]].concat();
                    if read(&flat).is_some() {
                        queue.push((flat, child, false));
                    } else if read(&nested).is_some() {
                        queue.push((nested, child, false));
                    } else {
                        g.faults.push(format!(
                            "{}: `mod {name};` has no file ({} or {})",
                            path.display(),
                            flat.display(),
                            nested.display()
                        ));
                    }
                }
                g.files.push(SourceFile {
                    path,
                    root,
                    module,
                    scan,
                });
            }
        }
        for id in 0..g.files.len() {
            g.link(id);
        }
        g
    }

    /// The absolute module path a path written in `file` (inside `scope`) names, if it is
    /// one of this crate's and not an external crate's.
    fn absolute(
        &self,
        file: &SourceFile,
        p: &PathUse,
        bound: &BTreeMap<String, Vec<String>>,
    ) -> Option<Vec<String>> {
        let here = [file.module.clone(), p.scope.clone()].concat();
        let seg = &p.segments;
        let first = seg.first()?.as_str();
        match first {
            "crate" => Some(seg[1..].to_vec()),
            "self" => Some([here, seg[1..].to_vec()].concat()),
            "super" => {
                let mut m = here;
                let supers = seg.iter().take_while(|s| *s == "super").count();
                for _ in 0..supers {
                    m.pop()?;
                }
                Some([m, seg[supers..].to_vec()].concat())
            }
            _ => {
                let child = [here.clone(), vec![first.to_string()]].concat();
                if self.modules.contains_key(&(file.root, child)) {
                    Some([here, seg.clone()].concat())
                } else {
                    bound
                        .get(first)
                        .map(|abs| [abs.clone(), seg[1..].to_vec()].concat())
                }
            }
        }
    }

    /// The file defining the longest module prefix of an absolute path.
    fn file_of(&self, root: usize, abs: &[String]) -> Option<usize> {
        (0..=abs.len())
            .rev()
            .find_map(|k| self.modules.get(&(root, abs[..k].to_vec())).copied())
    }

    fn link(&mut self, id: usize) {
        let file = &self.files[id];
        let mut bound = BTreeMap::new();
        let mut found = Vec::new();
        for u in &file.scan.uses {
            if let Some(abs) = self.absolute(file, u, &BTreeMap::new()) {
                if let Some(name) = &u.binds {
                    bound.insert(name.clone(), abs.clone());
                }
                found.push((u.segments.join("::"), abs));
            }
        }
        for p in &file.scan.code_paths {
            if let Some(abs) = self.absolute(file, p, &bound) {
                found.push((p.segments.join("::"), abs));
            }
        }
        let root = file.root;
        // What a module takes from its ancestors is its enclosing scope: no edge.
        let enclosing = |to: usize| file.module.starts_with(&self.files[to].module);
        let mut edges = Vec::new();
        for (written, abs) in found {
            if let Some(to) = self.file_of(root, &abs).filter(|&to| !enclosing(to)) {
                edges.push((to, written));
            }
        }
        for (to, written) in edges {
            self.edges
                .entry(id)
                .or_default()
                .entry(to)
                .or_default()
                .insert(written);
        }
    }

    /// Every set of two or more files that import each other in a loop (strongly
    /// connected components, Tarjan), each sorted, in file order.
    fn circles(&self) -> Vec<Vec<usize>> {
        struct Walk<'a> {
            g: &'a Graph,
            index: Vec<Option<usize>>,
            low: Vec<usize>,
            stack: Vec<usize>,
            on_stack: Vec<bool>,
            next: usize,
            out: Vec<Vec<usize>>,
        }
        impl Walk<'_> {
            fn visit(&mut self, v: usize) {
                self.index[v] = Some(self.next);
                self.low[v] = self.next;
                self.next += 1;
                self.stack.push(v);
                self.on_stack[v] = true;
                let g = self.g;
                for &w in g.edges.get(&v).into_iter().flat_map(|e| e.keys()) {
                    match self.index[w] {
                        None => {
                            self.visit(w);
                            self.low[v] = self.low[v].min(self.low[w]);
                        }
                        Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                        Some(_) => {}
                    }
                }
                if Some(self.low[v]) == self.index[v] {
                    let mut component = Vec::new();
                    while let Some(w) = self.stack.pop() {
                        self.on_stack[w] = false;
                        component.push(w);
                        if w == v {
                            break;
                        }
                    }
                    if component.len() > 1 {
                        component.sort_by(|a, b| g.files[*a].path.cmp(&g.files[*b].path));
                        self.out.push(component);
                    }
                }
            }
        }
        let n = self.files.len();
        let mut walk = Walk {
            g: self,
            index: vec![None; n],
            low: vec![0; n],
            stack: Vec::new(),
            on_stack: vec![false; n],
            next: 0,
            out: Vec::new(),
        };
        for v in 0..n {
            if walk.index[v].is_none() {
                walk.visit(v);
            }
        }
        let mut out = walk.out;
        out.sort_by(|a, b| self.files[a[0]].path.cmp(&self.files[b[0]].path));
        out
    }

    /// Each circle: its files, then every import between them (file -> file: paths).
    fn describe(&self, circles: &[Vec<usize>], repo: &Path) -> String {
        let name = |id: usize| {
            let p = &self.files[id].path;
            p.strip_prefix(repo).unwrap_or(p).display().to_string()
        };
        let mut out = String::new();
        for (k, circle) in circles.iter().enumerate() {
            let files: Vec<String> = circle.iter().map(|&f| name(f)).collect();
            out.push_str(&format!(
                "circle {}: {} files: {}\n",
                k + 1,
                files.len(),
                files.join(", ")
            ));
            for &from in circle {
                for (&to, written) in self.edges.get(&from).into_iter().flatten() {
                    if circle.contains(&to) {
                        let written: Vec<&str> = written.iter().map(String::as_str).collect();
                        out.push_str(&format!(
                            "  {} -> {}: {}\n",
                            name(from),
                            name(to),
                            written.join(", ")
                        ));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph_of(files: &[(&str, &str)]) -> Graph {
        let files: BTreeMap<PathBuf, String> = files
            .iter()
            .map(|(p, s)| (PathBuf::from(p), s.to_string()))
            .collect();
        Graph::build(&[PathBuf::from("src/lib.rs")], &|p| files.get(p).cloned())
    }

    fn edges(g: &Graph) -> Vec<String> {
        g.edges
            .iter()
            .flat_map(|(from, to)| {
                to.keys().map(move |to| {
                    format!(
                        "{} -> {}",
                        g.files[*from].path.display(),
                        g.files[*to].path.display()
                    )
                })
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    #[test]
    fn paths_resolve_to_the_file_of_the_longest_module_prefix() {
        let g = graph_of(&[
            ("src/lib.rs", "mod net; mod sys; pub fn top() {}"),
            (
                "src/net/mod.rs",
                "mod dhcp; pub use dhcp::Lease; pub struct NetError;",
            ),
            (
                "src/net/dhcp.rs",
                "use super::super::sys::Sys; use super::NetError; pub struct Lease;",
            ),
            (
                "src/sys.rs",
                "use crate::net::dhcp; fn f() { dhcp::go(); crate::top(); }\n\
                 mod tests { use super::*; use crate::sys::Sys as S; }",
            ),
        ]);
        assert!(g.faults.is_empty(), "{:?}", g.faults);
        assert_eq!(
            edges(&g),
            [
                "src/net/dhcp.rs -> src/sys.rs",
                "src/net/mod.rs -> src/net/dhcp.rs",
                "src/sys.rs -> src/net/dhcp.rs",
            ]
        );
        // lib.rs only declares its children: no edge from it. What a child takes from its
        // ancestors (dhcp.rs: super::NetError; sys.rs: crate::top) is its enclosing scope:
        // no edge either.
        let circles = g.circles();
        assert_eq!(circles.len(), 1);
        let text = g.describe(&circles, Path::new(""));
        assert_eq!(
            text,
            "circle 1: 2 files: src/net/dhcp.rs, src/sys.rs\n  \
             src/net/dhcp.rs -> src/sys.rs: super::super::sys::Sys\n  \
             src/sys.rs -> src/net/dhcp.rs: crate::net::dhcp, dhcp::go\n"
        );
    }

    #[test]
    fn a_mod_without_its_file_is_a_fault() {
        let g = graph_of(&[("src/lib.rs", "mod gone;")]);
        assert_eq!(g.faults.len(), 1, "{:?}", g.faults);
        assert!(
            g.faults[0].contains("`mod gone;` has no file"),
            "{:?}",
            g.faults
        );
    }
}
