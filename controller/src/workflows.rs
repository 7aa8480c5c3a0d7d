//! Workflow files: `workflows/*.yaml` (and `.yml`), loaded and checked once into the
//! domain's [`Workflow`]. Unknown fields are refused, so a typo is an error naming file and
//! field instead of a silently ignored key. Every string field is a template, checked for
//! syntax here and rendered per node by [`crate::templates`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::domain::workflow::Workflow;
use crate::templates::Templates;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("workflow {file}: {field}: {message}")]
pub struct WorkflowError {
    pub file: String,
    /// Dotted path of the offending field, or `-` when the file as a whole is wrong.
    pub field: String,
    pub message: String,
}

/// Loaded workflows by id, plus the files that failed (by file stem), so a node assigned
/// to a broken workflow can be told why.
#[derive(Debug, Clone, Default)]
pub struct Workflows {
    by_id: BTreeMap<String, (PathBuf, Workflow)>,
    broken: BTreeMap<String, WorkflowError>,
}

pub enum Lookup<'a> {
    Found(&'a Workflow),
    Broken(&'a WorkflowError),
    Missing,
}

impl Workflows {
    /// Loads every `*.yaml`/`*.yml` in `dir`. A missing directory is an empty set;
    /// broken files are collected, not fatal (see [`Workflows::errors`]).
    pub fn load_dir(dir: &Path, templates: &Templates) -> std::io::Result<Workflows> {
        let mut set = Workflows::default();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::warn!(
                    "workflows directory {} does not exist: no workflows",
                    dir.display()
                );
                return Ok(set);
            }
            Err(e) => return Err(e),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        paths.sort();
        for path in paths {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            match load_file(&path, templates) {
                Ok(wf) => {
                    if let Some((first, _)) = set.by_id.get(&wf.id) {
                        let err = WorkflowError {
                            file: path.display().to_string(),
                            field: "id".into(),
                            message: format!(
                                "duplicate id {:?}, already defined in {}",
                                wf.id,
                                first.display()
                            ),
                        };
                        set.broken.insert(stem, err);
                    } else {
                        set.by_id.insert(wf.id.clone(), (path, wf));
                    }
                }
                Err(err) => {
                    set.broken.insert(stem, err);
                }
            }
        }
        Ok(set)
    }

    /// Leaves out every workflow `check` refuses, as broken (a render over the limits).
    pub fn refuse(&mut self, check: impl Fn(&Workflow) -> Result<(), WorkflowError>) {
        let refused: Vec<(String, WorkflowError)> = self
            .by_id
            .iter()
            .filter_map(|(id, (_, wf))| check(wf).err().map(|e| (id.clone(), e)))
            .collect();
        for (id, err) in refused {
            self.by_id.remove(&id);
            self.broken.insert(id, err);
        }
    }

    pub fn get(&self, id: &str) -> Lookup<'_> {
        if let Some((_, wf)) = self.by_id.get(id) {
            Lookup::Found(wf)
        } else if let Some(err) = self.broken.get(id) {
            Lookup::Broken(err)
        } else {
            Lookup::Missing
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Path, &Workflow)> {
        self.by_id.values().map(|(p, w)| (p.as_path(), w))
    }

    pub fn errors(&self) -> impl Iterator<Item = &WorkflowError> {
        self.broken.values()
    }

    /// Workflows whose `nfs_base_path` names another path than the one nodes are told to
    /// mount (`announced`); see [`base_path_warning`].
    pub fn path_warnings(&self, announced: &Path) -> Vec<String> {
        self.by_id
            .values()
            .filter_map(|(file, wf)| base_path_warning(file, wf, announced))
            .collect()
    }
}

/// Upstream sends a workflow's `nfs_base_path` to the node; pureboot tells nodes the export
/// it prepares their trees in (`announced`), so a workflow naming another path is told so.
pub fn base_path_warning(file: &Path, wf: &Workflow, announced: &Path) -> Option<String> {
    let given = wf.nfs_base_path.as_deref()?.trim_end_matches('/');
    (!given.is_empty() && Path::new(given) != announced).then(|| {
        format!(
            "{}: nfs_base_path {given} is not the export nodes mount ({}): pureboot tells \
             nodes {} (where it prepares their trees; see [nfs] root_path and export_path) \
             and ignores this field",
            file.display(),
            announced.display(),
            announced.display()
        )
    })
}

/// Parses and checks one file: YAML shape, id, and template syntax of every string field.
pub fn load_file(path: &Path, templates: &Templates) -> Result<Workflow, WorkflowError> {
    let file = path.display().to_string();
    let whole = |message: String| WorkflowError {
        file: file.clone(),
        field: "-".into(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| whole(format!("cannot read: {e}")))?;
    let wf: Workflow = serde_norway::from_str(&text).map_err(|e| split_yaml_error(&file, &e))?;
    check(&wf).map_err(|(field, message)| WorkflowError {
        file: file.clone(),
        field,
        message,
    })?;
    templates
        .check_workflow(&wf)
        .map_err(|(field, message)| WorkflowError {
            file: file.clone(),
            field,
            message,
        })?;
    Ok(wf)
}

/// serde_norway says `path.to.field: message at line L column C`; keep the path as the field.
fn split_yaml_error(file: &str, e: &serde_norway::Error) -> WorkflowError {
    let text = e.to_string();
    let (field, message) = match text.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') && path != "." => {
            (path.to_string(), rest.to_string())
        }
        _ => {
            // Missing/unknown top-level fields carry the name in backticks.
            let named = text.split('`').nth(1).filter(|_| text.contains("field `"));
            (named.unwrap_or("-").to_string(), text.clone())
        }
    };
    WorkflowError {
        file: file.into(),
        field,
        message,
    }
}

fn check(wf: &Workflow) -> Result<(), (String, String)> {
    let id_ok = !wf.id.is_empty()
        && wf
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !wf.id.starts_with('.');
    if !id_ok {
        return Err((
            "id".into(),
            format!("{:?}: use letters, digits, '-', '_', '.'", wf.id),
        ));
    }
    if wf.name.trim().is_empty() {
        return Err(("name".into(), "must not be empty".into()));
    }
    for name in wf.variables.keys() {
        if !is_variable_name(name) {
            return Err((
                format!("variables.{name}"),
                "not a valid variable name".into(),
            ));
        }
    }
    let sizes = crate::nfs_tree::persist::MIN_PERSIST_MB..=crate::nfs_tree::persist::MAX_PERSIST_MB;
    crate::domain::volumes::check("volumes", &wf.volumes, sizes)?;
    check_after_boot(wf)
}

/// A name a template and a shell both take: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_variable_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Post-boot steps (unique printable names, timeouts in range), secret variables (valid,
/// not also plain variables) and the boot target (a systemd unit name).
fn check_after_boot(wf: &Workflow) -> Result<(), (String, String)> {
    use pureboot_contract::after_boot::MAX_STEP_TIMEOUT_SECS;
    let mut seen = std::collections::BTreeSet::new();
    for (i, step) in wf.post_boot.iter().enumerate() {
        let field = |f: &str| format!("post_boot[{i}].{f}");
        let name_ok = !step.name.trim().is_empty()
            && step.name.len() <= 100
            && step.name.chars().all(|c| !c.is_control());
        if !name_ok {
            return Err((field("name"), "1 to 100 printable characters".into()));
        }
        if !seen.insert(step.name.as_str()) {
            return Err((field("name"), format!("{:?} names two steps", step.name)));
        }
        if let Some(t) = step.timeout_secs {
            if !(1..=MAX_STEP_TIMEOUT_SECS).contains(&t) {
                return Err((
                    field("timeout_secs"),
                    format!("{t}: expected 1..={MAX_STEP_TIMEOUT_SECS}"),
                ));
            }
        }
    }
    for (i, name) in wf.secret_variables.iter().enumerate() {
        let field = format!("secret_variables[{i}]");
        if !is_variable_name(name) {
            return Err((field, format!("{name:?} is not a valid variable name")));
        }
        if wf.variables.contains_key(name) {
            return Err((
                field,
                format!(
                    "{name} is also in variables: a secret's value comes from the controller's \
                     secrets file only (remove it from variables)"
                ),
            ));
        }
    }
    if let Some(t) = &wf.boot_target {
        let ok = t.len() <= 128
            && t.contains('.')
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b));
        if !ok {
            return Err((
                "boot_target".into(),
                format!("{t:?} is not a systemd unit name (e.g. multi-user.target)"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_path_other_than_the_announced_export_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, path: &str| {
            std::fs::write(
                dir.path().join(format!("{name}.yaml")),
                format!("id: {name}\nname: N\ninstall_method: nfs\nnfs_base_path: {path}\n"),
            )
            .unwrap()
        };
        write("same", "/srv/nfsroot/");
        write("other", "/srv/nfsroot/k3s");
        let set = Workflows::load_dir(dir.path(), &Templates::new()).unwrap();
        let warnings = set.path_warnings(Path::new("/srv/nfsroot"));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("other") && warnings[0].contains("/srv/nfsroot/k3s"),
            "{warnings:?}"
        );
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn repo_workflows() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows")
    }

    #[test]
    fn seed_workflows_load() {
        let set = Workflows::load_dir(&repo_workflows(), &Templates::new()).unwrap();
        let errors: Vec<String> = set.errors().map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        let Lookup::Found(diskless) = set.get("pi-diskless-nfs") else {
            panic!("pi-diskless-nfs missing")
        };
        assert_eq!(
            diskless.install_method,
            crate::domain::workflow::InstallMethod::Nfs
        );
        assert_eq!(diskless.target_device, None, "target_device: null loads");
        let Lookup::Found(k3s) = set.get("pi-k3s-worker") else {
            panic!("pi-k3s-worker missing")
        };
        assert_eq!(k3s.post_boot.len(), 1);
        assert_eq!(k3s.secret_variables, ["k3s_token"]);
        assert_eq!(k3s.volumes.len(), 1, "containerd's state on a volume");
        assert!(
            !k3s.variables.contains_key("k3s_token"),
            "a secret, not a variable"
        );
    }

    #[test]
    fn broken_workflows_name_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let base = "id: w\nname: W\ninstall_method: nfs\n";
        let cases = [
            ("unknown.yaml", format!("{base}nfs_sever: x\n"), "nfs_sever"),
            (
                "missing.yaml",
                "name: W\ninstall_method: nfs\n".to_string(),
                "id",
            ),
            (
                "method.yaml",
                "id: w\nname: W\ninstall_method: floppy\n".to_string(),
                "install_method",
            ),
            ("overlay.yaml", format!("{base}overlay: zram\n"), "overlay"),
            (
                "vartype.yaml",
                format!("{base}variables:\n  port: [1]\n"),
                "variables.port",
            ),
            (
                "syntax.yaml",
                format!("{base}nfs_server: \"{{{{ nfs_server \"\n"),
                "nfs_server",
            ),
            (
                "badid.yaml",
                "id: ../x\nname: W\ninstall_method: nfs\n".to_string(),
                "id",
            ),
            ("notmap.yaml", "- 1\n".to_string(), "-"),
            (
                "stepname.yaml",
                format!(
                    "{base}post_boot:\n  - {{name: a, script: x}}\n  - {{name: a, script: y}}\n"
                ),
                "post_boot[1].name",
            ),
            (
                "steptimeout.yaml",
                format!("{base}post_boot:\n  - {{name: a, script: x, timeout_secs: 0}}\n"),
                "post_boot[0].timeout_secs",
            ),
            (
                "steprun.yaml",
                format!("{base}post_boot:\n  - {{name: a, script: x, run: sometimes}}\n"),
                "post_boot[0].run",
            ),
            (
                "secretdup.yaml",
                format!("{base}variables: {{token: x}}\nsecret_variables: [token]\n"),
                "secret_variables[0]",
            ),
            (
                "secretname.yaml",
                format!("{base}secret_variables: [\"a-b\"]\n"),
                "secret_variables[0]",
            ),
            (
                "target.yaml",
                format!("{base}boot_target: \"multi user\"\n"),
                "boot_target",
            ),
            (
                "volpath.yaml",
                format!("{base}volumes:\n  - {{ path: /var/lib/x, size_mb: 64 }}\n  - {{ path: /dev/x, size_mb: 64 }}\n"),
                "volumes[1].path",
            ),
            (
                "volsize.yaml",
                format!("{base}volumes:\n  - {{ path: /var/lib/x, size_mb: 4 }}\n"),
                "volumes[0].size_mb",
            ),
            (
                "volkey.yaml",
                format!("{base}volumes:\n  - {{ path: /var/lib/x, size: 64 }}\n"),
                "volumes[0]",
            ),
        ];
        let t = Templates::new();
        for (file, text, field) in &cases {
            let path = write(dir.path(), file, text);
            let err = load_file(&path, &t).expect_err(file);
            assert_eq!(&err.field, field, "{file}: {err}");
            assert!(err.to_string().contains(file), "{err}");
        }
        let set = Workflows::load_dir(dir.path(), &t).unwrap();
        assert_eq!(set.errors().count(), cases.len());
        assert!(
            matches!(set.get("unknown"), Lookup::Broken(_)),
            "broken files are found by stem"
        );
        assert!(matches!(set.get("nothing"), Lookup::Missing));
    }

    #[test]
    fn duplicate_ids_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.yaml",
            "id: same\nname: A\ninstall_method: nfs\n",
        );
        write(
            dir.path(),
            "b.yml",
            "id: same\nname: B\ninstall_method: nfs\n",
        );
        let set = Workflows::load_dir(dir.path(), &Templates::new()).unwrap();
        let Lookup::Found(wf) = set.get("same") else {
            panic!()
        };
        assert_eq!(wf.name, "A");
        let err = set.errors().next().unwrap();
        assert!(err.message.contains("duplicate id"), "{err}");
        assert!(err.file.ends_with("b.yml"), "{err}");
    }

    fn vars(pairs: &[(&str, &str)]) -> crate::templates::Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn seed(name: &str) -> Workflow {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../workflows")
            .join(name);
        load_file(&path, &Templates::new()).unwrap()
    }

    #[test]
    fn seed_workflows_render_per_node() {
        let t = Templates::new();
        let base = vars(&[
            ("nfs_server", "10.0.2.2"),
            ("serial", "d83add36"),
            ("hostname", "pi-d83add36"),
        ]);
        let wf = t
            .render_workflow(&seed("pi-diskless-nfs.yaml"), &base)
            .unwrap();
        assert_eq!(wf.nfs_server.as_deref(), Some("10.0.2.2"));
        assert_eq!(
            wf.install_method,
            crate::domain::workflow::InstallMethod::Nfs
        );

        let k3s = t
            .render_workflow(&seed("pi-k3s-worker.yaml"), &base)
            .unwrap();
        assert_eq!(k3s.nfs_server.as_deref(), Some("10.0.2.2"));
        assert_eq!(k3s.variables["k3s_server"], "https://k3s-master:6443");
        let mut with_server = base.clone();
        with_server.insert("k3s_server".into(), "https://10.0.0.1:6443".into());
        let k3s = t
            .render_workflow(&seed("pi-k3s-worker.yaml"), &with_server)
            .unwrap();
        assert_eq!(k3s.variables["k3s_server"], "https://10.0.0.1:6443");
        assert!(
            k3s.post_boot[0].script.contains("K3S_URL=\"$k3s_server\"")
                && k3s.post_boot[0].script.contains("${k3s_token:-}"),
            "shell syntax untouched"
        );
    }

    #[test]
    fn variables_feed_fields_and_undefined_names_the_field() {
        let t = Templates::new();
        let mut wf = seed("pi-diskless-nfs.yaml");
        wf.variables
            .insert("site".into(), "{{ serial }}-lab".into());
        wf.hostname = Some("{{ site }}".into());
        let out = t
            .render_workflow(&wf, &vars(&[("serial", "d83add36")]))
            .unwrap();
        assert_eq!(out.hostname.as_deref(), Some("d83add36-lab"));

        wf.base_image = Some("{{ image_name }}".into());
        let err = t
            .render_workflow(&wf, &vars(&[("serial", "d83add36")]))
            .unwrap_err();
        assert_eq!(err.field, "base_image");
        assert!(err.to_string().contains("undefined"), "{err}");
        wf.base_image = None;
        wf.variables.insert("token".into(), "{{ secret }}".into());
        let err = t
            .render_workflow(&wf, &vars(&[("serial", "d83add36")]))
            .unwrap_err();
        assert_eq!(err.field, "variables.token");
    }
}
