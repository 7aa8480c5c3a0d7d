//! What the import checks read from Cargo.toml files: the workspace's members and each
//! crate's dependencies, by plain text (no TOML parser among the harness's dependencies).

use std::path::{Component, Path, PathBuf};

/// `key = "value"` strings of a TOML array `key = [ … ]` (the workspace's members).
pub(super) fn toml_array(toml: &str, key: &str) -> Vec<String> {
    let Some(start) = toml
        .lines()
        .position(|l| l.trim_start().starts_with(key) && l.contains('['))
    else {
        return Vec::new();
    };
    let text: String = toml.lines().skip(start).collect::<Vec<_>>().join("\n");
    let inside = &text[text.find('[').unwrap_or(0) + 1..text.find(']').unwrap_or(text.len())];
    inside
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A dependency a Cargo.toml declares: its key, the package it names, its path if any, and
/// whether it comes from `[workspace.dependencies]`.
#[derive(Debug, PartialEq)]
pub(super) struct Dependency {
    pub(super) key: String,
    pub(super) package: String,
    pub(super) path: Option<String>,
    pub(super) workspace: bool,
}

/// The dependencies of every `*dependencies` table (`[dependencies]`, `[dev-dependencies]`,
/// `[target.'…'.dependencies]`, `[workspace.dependencies]`, `[dependencies.name]`).
pub(super) fn dependencies(toml: &str) -> Vec<Dependency> {
    let value = |s: &str, key: &str| {
        s.split(',').find_map(|part| {
            let (k, v) = part.split_once('=')?;
            (k.trim().trim_start_matches('{').trim() == key).then(|| {
                v.trim()
                    .trim_end_matches('}')
                    .trim()
                    .trim_matches('"')
                    .to_string()
            })
        })
    };
    let mut out: Vec<Dependency> = Vec::new();
    let mut table: Option<String> = None; // "" = a dependencies table; "name" = [dependencies.name]
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            let header = line.trim_matches(|c| c == '[' || c == ']');
            table = if header.ends_with("dependencies") {
                Some(String::new())
            } else if let Some((head, name)) = header.rsplit_once('.') {
                head.ends_with("dependencies").then(|| name.to_string())
            } else {
                None
            };
            if let Some(name) = table.as_ref().filter(|n| !n.is_empty()) {
                out.push(Dependency {
                    key: name.clone(),
                    package: name.clone(),
                    path: None,
                    workspace: false,
                });
            }
            continue;
        }
        let Some(table) = table.as_ref().filter(|_| !line.starts_with('#')) else {
            continue;
        };
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if table.is_empty() {
            let (key, field) = k.split_once('.').unwrap_or((k, ""));
            let inline = if field.is_empty() {
                v.to_string()
            } else {
                format!("{field} = {v}")
            };
            out.push(Dependency {
                key: key.to_string(),
                package: value(&inline, "package").unwrap_or_else(|| key.to_string()),
                path: value(&inline, "path"),
                workspace: value(&inline, "workspace").as_deref() == Some("true"),
            });
        } else if let Some(d) = out.last_mut() {
            match k {
                "package" => d.package = v.trim_matches('"').to_string(),
                "path" => d.path = Some(v.trim_matches('"').to_string()),
                "workspace" => d.workspace = v == "true",
                _ => {}
            }
        }
    }
    out
}

/// `a/b/../c` → `a/c`, without touching the disk.
pub(super) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_of_every_table_shape() {
        let deps = dependencies(
            "[package]\nname = \"x\"\n[dependencies]\npureboot-contract.workspace = true\n\
             ctl = { package = \"pureboot-controller\", path = \"../controller\" }\n\
             libc = \"0.2\"\n[dev-dependencies.other]\npath = \"../other\"\n\
             [workspace.dependencies]\npureboot-contract = { path = \"controller/contract\" }\n",
        );
        let d = |key: &str, package: &str, path: Option<&str>, workspace| Dependency {
            key: key.into(),
            package: package.into(),
            path: path.map(Into::into),
            workspace,
        };
        assert_eq!(
            deps,
            [
                d("pureboot-contract", "pureboot-contract", None, true),
                d("ctl", "pureboot-controller", Some("../controller"), false),
                d("libc", "libc", None, false),
                d("other", "other", Some("../other"), false),
                d(
                    "pureboot-contract",
                    "pureboot-contract",
                    Some("controller/contract"),
                    false
                ),
            ]
        );
        assert_eq!(
            toml_array(
                "[workspace]\nmembers = [\n  \"a\",\n  \"b/c\",\n]\n",
                "members"
            ),
            ["a", "b/c"]
        );
        assert_eq!(normalize(Path::new("a/b/../c/./d")), Path::new("a/c/d"));
    }
}
