//! The checks on the workspace itself: every crate's files read, no import circle between
//! them, and pi-init and pureboot-image beside the controller only through its contract.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::manifest::{dependencies, normalize, toml_array};
use super::scan::{strip, tokens};
use super::Graph;
use crate::repo_root;

/// The crate roots of a workspace member: the default places and what its Cargo.toml names.
fn crate_roots(dir: &Path) -> Vec<PathBuf> {
    let mut roots = vec![
        dir.join("src/lib.rs"),
        dir.join("src/main.rs"),
        dir.join("build.rs"),
    ];
    let toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
    roots.extend(
        toml.lines()
            .filter_map(|l| l.trim().strip_prefix("path = \""))
            .map(|p| dir.join(p.trim_end_matches('"'))),
    );
    for (folder, nested) in [("src/bin", true), ("tests", false)] {
        for entry in std::fs::read_dir(dir.join(folder))
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "rs") {
                roots.push(p);
            } else if nested && p.join("main.rs").exists() {
                roots.push(p.join("main.rs"));
            }
        }
    }
    let mut roots: Vec<PathBuf> = roots
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| normalize(&p))
        .collect();
    roots.sort();
    roots.dedup();
    roots
}

fn workspace() -> (PathBuf, Vec<String>) {
    let repo = repo_root();
    let toml =
        std::fs::read_to_string(repo.join("Cargo.toml")).expect("the workspace's Cargo.toml");
    let members = toml_array(&toml, "members");
    assert!(members.len() >= 5, "workspace members: {members:?}");
    (repo, members)
}

fn house() -> (PathBuf, Graph) {
    let (repo, members) = workspace();
    let roots: Vec<PathBuf> = members
        .iter()
        .flat_map(|m| crate_roots(&repo.join(m)))
        .collect();
    let g = Graph::build(&roots, &|p| std::fs::read_to_string(p).ok());
    assert!(g.faults.is_empty(), "{}", g.faults.join("\n"));
    (repo, g)
}

#[test]
fn no_import_circle_between_files() {
    let (repo, g) = house();
    assert!(g.files.len() > 100, "only {} files read", g.files.len());
    let circles = g.circles();
    assert!(
        circles.is_empty(),
        "{} import circle(s) between files:\n{}",
        circles.len(),
        g.describe(&circles, &repo)
    );
}

#[test]
fn every_workspace_crate_is_read_and_every_mod_has_its_file() {
    let (repo, g) = house();
    for crate_dir in [
        "pi-init",
        "controller",
        "controller/contract",
        "image",
        "tests/harness",
    ] {
        let lib = repo.join(crate_dir).join("src/lib.rs");
        assert!(
            g.files.iter().any(|f| f.path == lib),
            "{} not read",
            lib.display()
        );
    }
    // Comments and literals read right: every file's code opens as many braces as it closes.
    for f in &g.files {
        let code = strip(&std::fs::read_to_string(&f.path).unwrap());
        let depth = code.chars().fold(0i64, |d, ch| match ch {
            '{' => d + 1,
            '}' => d - 1,
            _ => d,
        });
        assert_eq!(
            depth,
            0,
            "{}: braces unbalanced once stripped",
            f.path.display()
        );
    }
    // This very file, reached from the harness's lib.rs through `mod import_graph;` and `mod house;`, and
    // one import of this crate's: initramfs.rs takes TestEnv from env.rs.
    let id = |p: &str| g.files.iter().position(|f| f.path == repo.join(p));
    let me = id("tests/harness/src/import_graph/house.rs").expect("import_graph/house.rs read");
    assert_eq!(g.files[me].module, ["import_graph", "house"]);
    let (initramfs, env) = (
        id("tests/harness/src/initramfs.rs"),
        id("tests/harness/src/env.rs"),
    );
    let to_env = &g.edges[&initramfs.unwrap()][&env.unwrap()];
    assert!(to_env.contains("crate::env::TestEnv"), "{to_env:?}");
    let edges: usize = g.edges.values().map(BTreeMap::len).sum();
    assert!(edges > 200, "only {edges} imports between files");
}

/// pi-init and pureboot-image take from the controller only its contract crate: no
/// dependency on another crate under controller/, by name or path, and no path into one.
#[test]
fn pi_init_and_image_use_the_controller_only_through_its_contract() {
    let (repo, members) = workspace();
    let root_deps = dependencies(&std::fs::read_to_string(repo.join("Cargo.toml")).unwrap());
    let forbidden: Vec<(String, PathBuf)> = members
        .iter()
        .filter(|m| m.starts_with("controller") && *m != "controller/contract")
        .map(|m| {
            let toml = std::fs::read_to_string(repo.join(m).join("Cargo.toml")).unwrap();
            let name = toml
                .lines()
                .find_map(|l| l.trim().strip_prefix("name = \""))
                .map(|n| n.trim_end_matches('"').to_string())
                .unwrap_or_default();
            (name, repo.join(m))
        })
        .collect();
    assert!(
        forbidden.iter().any(|(n, _)| n == "pureboot-controller"),
        "{forbidden:?}"
    );
    let mut faults = Vec::new();
    for client in ["pi-init", "image"] {
        let dir = repo.join(client);
        let toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        for dep in dependencies(&toml) {
            let path = if dep.workspace {
                root_deps
                    .iter()
                    .find(|d| d.key == dep.key)
                    .and_then(|d| d.path.as_ref().map(|p| normalize(&repo.join(p))))
            } else {
                dep.path.as_ref().map(|p| normalize(&dir.join(p)))
            };
            for (name, crate_dir) in &forbidden {
                if dep.package == *name || path.as_ref() == Some(crate_dir) {
                    faults.push(format!("{client}/Cargo.toml depends on {name}"));
                }
            }
        }
        for root in crate_roots(&dir) {
            let g = Graph::build(&[root], &|p| std::fs::read_to_string(p).ok());
            for f in &g.files {
                let t = tokens(&strip(&std::fs::read_to_string(&f.path).unwrap()));
                for (name, _) in &forbidden {
                    if t.contains(&name.replace('-', "_")) {
                        faults.push(format!("{} names {name}", f.path.display()));
                    }
                }
            }
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

/// The repository paths a document names in backticks: those starting with a top-level folder
/// of the house (`pi-init/src/boot/step.rs`, `tests/harness/`), without any `<placeholder>`.
fn named_paths(doc: &str) -> Vec<String> {
    const TOP: [&str; 7] = [
        "pi-init/",
        "controller/",
        "image/",
        "workflows/",
        "tests/",
        ".ci/",
        "Cargo.toml",
    ];
    doc.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| TOP.iter().any(|t| s.starts_with(t)))
        .filter(|s| !s.contains(['<', '{', '*', ' ']))
        .map(str::to_string)
        .collect()
}

#[test]
fn named_paths_are_the_backticked_repository_paths() {
    let doc = "see `pi-init/src/boot/step.rs` and `tests/harness/`, not `base/<image>`, \
               `nodes/{upper,work}`, `controller/src/{a,b}.rs` or `step::run`";
    assert_eq!(
        named_paths(doc),
        ["pi-init/src/boot/step.rs", "tests/harness/"]
    );
}

#[test]
fn every_path_architecture_md_names_exists() {
    let repo = repo_root();
    let doc = std::fs::read_to_string(repo.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let paths = named_paths(&doc);
    assert!(
        paths.len() > 30,
        "only {} paths found: {paths:?}",
        paths.len()
    );
    let missing: Vec<&String> = paths.iter().filter(|p| !repo.join(p).exists()).collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths the tree does not have: {missing:?}"
    );
}
