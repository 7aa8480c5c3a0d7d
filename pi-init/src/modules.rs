//! Kernel modules: the ordered list `pureboot-image` resolved (`/etc/pureboot/modules`),
//! loaded with finit_module(2) in that order. Already loaded (EEXIST) counts as loaded; a
//! missing or failing module is logged and the boot goes on: a later step fails with a
//! clearer error if it really was needed.

use crate::sys::Sys;
use nix::errno::Errno;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const LIST_PATH: &str = "/etc/pureboot/modules";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub path: PathBuf,
    /// Module parameters, space separated (`""` when none).
    pub params: String,
}

/// Parse the list: one module a line, its absolute path then optional parameters; `#` starts
/// a comment; blank lines are ignored. Relative paths are skipped with a warning each.
pub fn parse_list(text: &str) -> (Vec<Module>, Vec<String>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (path, params) = match line.split_once(char::is_whitespace) {
            Some((p, rest)) => (p, rest.split_whitespace().collect::<Vec<_>>().join(" ")),
            None => (line, String::new()),
        };
        if !path.starts_with('/') {
            warnings.push(format!(
                "{LIST_PATH} line {}: {path:?} is not absolute",
                n + 1
            ));
            continue;
        }
        out.push(Module {
            path: path.into(),
            params,
        });
    }
    (out, warnings)
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct LoadSummary {
    pub loaded: usize,
    pub already: usize,
    pub missing: Vec<PathBuf>,
    pub failed: Vec<(PathBuf, Errno)>,
}

impl LoadSummary {
    pub fn line(&self) -> String {
        let mut s = format!("{} loaded, {} already loaded", self.loaded, self.already);
        if !self.missing.is_empty() {
            s += &format!(", {} missing", self.missing.len());
        }
        if !self.failed.is_empty() {
            s += &format!(", {} failed", self.failed.len());
        }
        s
    }
}

/// Load every module in order.
pub fn load_all(sys: &dyn Sys, modules: &[Module]) -> LoadSummary {
    let mut sum = LoadSummary::default();
    for m in modules {
        let t = Instant::now();
        match sys.finit_module(&m.path, &m.params) {
            Ok(()) => {
                sum.loaded += 1;
                log::debug!(
                    "module {} loaded in {} ms",
                    m.path.display(),
                    t.elapsed().as_millis()
                );
            }
            Err(Errno::EEXIST) => sum.already += 1,
            Err(Errno::ENOENT) => {
                log::warn!(
                    "module {} missing from the initramfs; skipped",
                    m.path.display()
                );
                sum.missing.push(m.path.clone());
            }
            Err(e) => {
                log::error!("module {}: finit_module: {e}; continuing", m.path.display());
                sum.failed.push((m.path.clone(), e));
            }
        }
    }
    sum
}

/// Read the list at `path`; a missing list means no modules (a kernel with everything built in).
pub fn read_list(path: &Path) -> Vec<Module> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let (mods, warnings) = parse_list(&text);
            warnings.iter().for_each(|w| log::warn!("{w}"));
            mods
        }
        Err(e) => {
            log::info!("no module list at {} ({e}); loading none", path.display());
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{Call, FakeSys};

    const LIST: &str = "# resolved by pureboot-image\n\
        /lib/modules/6.1.0/kernel/drivers/virtio/virtio_pci.ko\n\
        \n\
        /lib/modules/6.1.0/kernel/fs/nfs/nfs.ko   nfs4_disable_idmapping=1  foo=2  # tuned\n\
        relative/x.ko\n\
        /lib/modules/6.1.0/kernel/fs/overlayfs/overlay.ko\n";

    #[test]
    fn list_parses_params_comments_and_rejects_relative() {
        let (mods, warnings) = parse_list(LIST);
        assert_eq!(mods.len(), 3);
        assert!(mods[0].path.ends_with("virtio_pci.ko") && mods[0].params.is_empty());
        assert_eq!(mods[1].params, "nfs4_disable_idmapping=1 foo=2");
        assert!(mods[2].path.ends_with("overlay.ko"));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("line 5"), "{warnings:?}");
    }

    #[test]
    fn loads_in_order_tolerating_loaded_and_missing() {
        let (mods, _) = parse_list(LIST);
        let sys = FakeSys::new();
        sys.fail_module(
            "/lib/modules/6.1.0/kernel/drivers/virtio/virtio_pci.ko",
            Errno::EEXIST,
        );
        sys.fail_module("/lib/modules/6.1.0/kernel/fs/nfs/nfs.ko", Errno::ENOENT);
        sys.fail_module(
            "/lib/modules/6.1.0/kernel/fs/overlayfs/overlay.ko",
            Errno::ENOEXEC,
        );
        let sum = load_all(&sys, &mods);
        assert_eq!((sum.loaded, sum.already), (0, 1));
        assert_eq!(sum.missing, vec![mods[1].path.clone()]);
        assert_eq!(sum.failed, vec![(mods[2].path.clone(), Errno::ENOEXEC)]);
        let order: Vec<_> = sys
            .calls()
            .into_iter()
            .map(|c| match c {
                Call::FinitModule(p, params) => (p, params),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(order.len(), 3, "every module is tried, in order");
        assert_eq!(order[1], (mods[1].path.clone(), mods[1].params.clone()));
        assert!(sum.line().contains("1 missing") && sum.line().contains("1 failed"));

        let ok = FakeSys::new();
        assert_eq!(load_all(&ok, &mods).loaded, 3);
    }
}
