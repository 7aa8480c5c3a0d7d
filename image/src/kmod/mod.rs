//! A kernel's module tree as depmod describes it (`lib/modules/<kver>/modules.*`), and the
//! resolution of requested names into an ordered load list. `modules.alias` (other names a
//! module answers to, device patterns with wildcards) is read into the contract's
//! `modules_list::Aliases`: pi-init matches the initramfs's own table with the same code.

mod depfile;
pub mod resolve;
pub mod softdep;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use pureboot_contract::modules_list::Aliases;
use softdep::SoftDep;

#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    #[error(
        "{dir}/modules.dep is missing: generate it with `depmod -b {root} {kver}` \
         (Debian's kernel packages ship none)"
    )]
    MissingModulesDep {
        dir: PathBuf,
        root: PathBuf,
        kver: String,
    },
    #[error("no kernel version under {0}/lib/modules: pass --kver or check --modules-root")]
    NoKernelVersion(PathBuf),
    #[error("several kernel versions under {root}/lib/modules ({found}): pass --kver")]
    SeveralKernelVersions { root: PathBuf, found: String },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {what}")]
    Parse {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error("module {name:?}{wanted_by} not found in {dir} (neither a module name nor an alias in modules.dep / modules.alias / modules.builtin)")]
    NotFound {
        name: String,
        wanted_by: String,
        dir: PathBuf,
    },
    #[error("{module} needs {dep}, which modules.dep does not list as a module: rerun depmod")]
    DanglingDep { module: String, dep: String },
    #[error("module dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// A module file, by its normalized name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    /// Relative to the version directory, as in modules.dep (may end in .ko.xz etc).
    pub path: String,
    /// Normalized names of the modules it needs (modules.dep order).
    pub deps: Vec<String>,
}

/// Everything depmod wrote for one kernel version.
#[derive(Debug, Clone)]
pub struct ModuleDb {
    pub dir: PathBuf,
    pub kver: String,
    pub modules: BTreeMap<String, ModuleFile>,
    pub builtin: BTreeSet<String>,
    pub aliases: Aliases,
    pub builtin_aliases: Aliases,
    pub softdeps: BTreeMap<String, SoftDep>,
}

/// The one version under `<root>/lib/modules`, or an error saying what to pass.
pub fn detect_kver(root: &Path) -> Result<String, KmodError> {
    let base = root.join("lib/modules");
    let read = fs::read_dir(&base).map_err(|source| KmodError::Read {
        path: base.clone(),
        source,
    })?;
    let mut versions: Vec<String> = read
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    versions.sort();
    match versions.len() {
        0 => Err(KmodError::NoKernelVersion(root.to_path_buf())),
        1 => Ok(versions.remove(0)),
        _ => Err(KmodError::SeveralKernelVersions {
            root: root.to_path_buf(),
            found: versions.join(", "),
        }),
    }
}

impl ModuleDb {
    /// Loads `<root>/lib/modules/<kver>`. Only modules.dep is required; softdep, alias and
    /// builtin files are read when present.
    pub fn load(root: &Path, kver: &str) -> Result<Self, KmodError> {
        let dir = root.join("lib/modules").join(kver);
        let dep_path = dir.join("modules.dep");
        if !dep_path.is_file() {
            return Err(KmodError::MissingModulesDep {
                dir,
                root: root.to_path_buf(),
                kver: kver.to_string(),
            });
        }
        let dep_text = read_text(&dep_path)?.unwrap_or_default();
        let lines =
            depfile::parse_modules_dep(&dep_text).map_err(|(line, what)| KmodError::Parse {
                path: dep_path.clone(),
                line,
                what,
            })?;
        let path_to_name: BTreeMap<&str, String> = lines
            .iter()
            .filter_map(|l| Some((l.path.as_str(), module_name(&l.path)?)))
            .collect();
        let mut modules = BTreeMap::new();
        for line in &lines {
            let name = path_to_name[line.path.as_str()].clone();
            let deps =
                line.deps
                    .iter()
                    .map(|dep| {
                        path_to_name.get(dep.as_str()).cloned().ok_or_else(|| {
                            KmodError::DanglingDep {
                                module: name.clone(),
                                dep: dep.clone(),
                            }
                        })
                    })
                    .collect::<Result<_, _>>()?;
            modules.insert(
                name,
                ModuleFile {
                    path: line.path.clone(),
                    deps,
                },
            );
        }
        let optional = |file: &str| read_text(&dir.join(file)).map(Option::unwrap_or_default);
        let builtin_modinfo = match fs::read(dir.join("modules.builtin.modinfo")) {
            Ok(bytes) => depfile::parse_builtin_modinfo_aliases(&bytes),
            Err(_) => Vec::new(),
        };
        Ok(Self {
            builtin: depfile::parse_modules_builtin(&optional("modules.builtin")?)
                .into_iter()
                .collect(),
            aliases: Aliases::parse(&optional("modules.alias")?),
            builtin_aliases: Aliases::from_pairs(builtin_modinfo),
            softdeps: softdep::parse_modules_softdep(&optional("modules.softdep")?),
            modules,
            dir,
            kver: kver.to_string(),
        })
    }
}

fn read_text(path: &Path) -> Result<Option<String>, KmodError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KmodError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The module name of a module file path: basename without `.ko[.xz|.zst|.gz]`, normalized.
pub fn module_name(path: &str) -> Option<String> {
    let base = path.rsplit('/').next()?;
    let stem = ["", ".xz", ".zst", ".gz"]
        .iter()
        .find_map(|suffix| base.strip_suffix(&format!(".ko{suffix}")))?;
    (!stem.is_empty()).then(|| normalize(stem))
}

/// kmod compares names with '-' and '_' treated alike (outside `[...]` classes).
pub fn normalize(name: &str) -> String {
    pureboot_contract::modules_list::normalize(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_from_paths() {
        assert_eq!(
            module_name("kernel/fs/ext4/ext4.ko").as_deref(),
            Some("ext4")
        );
        assert_eq!(
            module_name("kernel/a/mdio-bcm-unimac.ko.xz").as_deref(),
            Some("mdio_bcm_unimac")
        );
        assert_eq!(module_name("x.ko.zst").as_deref(), Some("x"));
        assert_eq!(module_name("kernel/readme.txt"), None);
        assert_eq!(module_name("kernel/.ko"), None);
    }

    #[test]
    fn normalize_keeps_dashes_in_classes() {
        assert_eq!(normalize("crypto-crc32c"), "crypto_crc32c");
        assert_eq!(normalize("tty[0-9]-x"), "tty[0-9]_x");
    }
}
