//! The initramfs pi-init boots from: entries assembled from the inputs, in a fixed order,
//! then a cpio archive, then compression.
//!
//! Layout (agreed with pi-init): `/init`, `/dev/console` (c 5:1), the directories pi-init
//! mounts on, plain `.ko` files under `/lib/modules/<kver>/`, the load list at
//! `/etc/pureboot/modules` (loaded at start) and the disk list at `/etc/pureboot/modules.disk`
//! (loaded when the image overlay or a local root needs a disk filesystem).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::codec::{self, Compression};
use crate::cpio::{self, Entry, Kind};
use crate::kmod::{LoadPlan, ModuleDb};

pub const LOAD_LIST: &str = "etc/pureboot/modules";
pub const DISK_LOAD_LIST: &str = "etc/pureboot/modules.disk";
const BASE_DIRS: &[&str] = &[
    "dev",
    "proc",
    "sys",
    "run",
    "tmp",
    "etc",
    "mnt",
    "lib/modules",
];

/// A host file to add: `--extra SRC:DEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extra {
    pub src: PathBuf,
    pub dest: String,
}

impl std::str::FromStr for Extra {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let (src, dest) = spec
            .rsplit_once(':')
            .ok_or(format!("{spec:?}: expected SRC:DEST"))?;
        let dest = archive_path(dest)?;
        if src.is_empty() {
            return Err(format!("{spec:?}: empty SRC"));
        }
        Ok(Self {
            src: src.into(),
            dest,
        })
    }
}

/// `/a/b` -> `a/b`, refusing paths that would leave the archive root.
fn archive_path(dest: &str) -> Result<String, String> {
    let parts: Vec<&str> = dest
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() || parts.contains(&"..") {
        return Err(format!("{dest:?}: not a usable path inside the initramfs"));
    }
    Ok(parts.join("/"))
}

pub struct Inputs<'a> {
    pub pi_init: &'a Path,
    pub db: &'a ModuleDb,
    pub plan: &'a LoadPlan,
    /// Modules only some boots need (none of them also in `plan`).
    pub disk_plan: &'a LoadPlan,
    pub extras: &'a [Extra],
    pub busybox: Option<&'a Path>,
}

/// The load list pi-init reads at start: absolute paths in an order that loads (each
/// module after its dependencies; the NIC driver first), parameters after a space.
pub fn load_list(kver: &str, plan: &LoadPlan) -> String {
    list_text(
        &format!(
            "# pureboot module load list for {kver}, written by pureboot-image: loaded at start,\n\
             # in this order where dependencies require it\n"
        ),
        kver,
        plan,
    )
}

/// The disk list: loaded by pi-init only for the image overlay or a local root.
pub fn disk_load_list(kver: &str, plan: &LoadPlan) -> String {
    list_text(
        &format!(
            "# pureboot disk module list for {kver}, written by pureboot-image: loaded only when\n\
             # a boot needs a disk filesystem (the image overlay's ext4, a local root)\n"
        ),
        kver,
        plan,
    )
}

fn list_text(header: &str, kver: &str, plan: &LoadPlan) -> String {
    let mut text = header.to_string();
    for module in &plan.modules {
        let path = codec::plain_module_path(&module.path).unwrap_or(&module.path);
        text.push_str(&format!("/lib/modules/{kver}/{path}"));
        if let Some(params) = &module.params {
            text.push(' ');
            text.push_str(params);
        }
        text.push('\n');
    }
    text
}

/// Every entry of the initramfs, parents before children, sorted by path.
pub fn assemble(inputs: &Inputs) -> Result<Vec<Entry>> {
    let mut tree = Tree::default();
    for dir in BASE_DIRS {
        tree.add(Entry::dir(dir, 0o755), "base layout")?;
    }
    tree.add(Entry::char_dev("dev/console", 0o600, 5, 1), "base layout")?;
    tree.add(
        Entry::file("init", 0o755, read(inputs.pi_init, "pi-init")?),
        "--pi-init",
    )?;

    let kver = &inputs.db.kver;
    for module in inputs.plan.modules.iter().chain(&inputs.disk_plan.modules) {
        let src = inputs.db.dir.join(&module.path);
        let data = codec::decompress_module(&module.path, read(&src, "module")?)
            .with_context(|| format!("decompressing module {}", src.display()))?;
        let plain = codec::plain_module_path(&module.path).unwrap_or(&module.path);
        tree.add(
            Entry::file(&format!("lib/modules/{kver}/{plain}"), 0o644, data),
            &module.name,
        )?;
    }
    tree.add(
        Entry::file(LOAD_LIST, 0o644, load_list(kver, inputs.plan).into_bytes()),
        "load list",
    )?;
    tree.add(
        Entry::file(
            DISK_LOAD_LIST,
            0o644,
            disk_load_list(kver, inputs.disk_plan).into_bytes(),
        ),
        "disk list",
    )?;

    if let Some(busybox) = inputs.busybox {
        tree.add(
            Entry::file("bin/busybox", 0o755, read(busybox, "busybox")?),
            "--busybox",
        )?;
        tree.add(Entry::symlink("bin/sh", "busybox"), "--busybox")?;
    }
    for extra in inputs.extras {
        let perm = fs::metadata(&extra.src)
            .with_context(|| format!("--extra {}", extra.src.display()))?
            .permissions();
        let perm = std::os::unix::fs::PermissionsExt::mode(&perm) & 0o7777;
        let data = read(&extra.src, "--extra")?;
        tree.add(Entry::file(&extra.dest, perm, data), "--extra")?;
    }
    Ok(tree.into_sorted())
}

/// What was built, for the summary line.
pub struct Built {
    pub bytes: Vec<u8>,
    pub uncompressed: u64,
    pub entries: usize,
    pub files: usize,
}

pub fn build(entries: &[Entry], mtime: u32, compression: Compression) -> Result<Built> {
    let mut archive = Vec::new();
    let uncompressed = cpio::write_archive(entries, mtime, &mut archive).context("writing cpio")?;
    let bytes = compression
        .compress(&archive)
        .with_context(|| format!("{} compression", compression.name()))?;
    let files = entries
        .iter()
        .filter(|e| matches!(e.kind, Kind::File(_)))
        .count();
    Ok(Built {
        bytes,
        uncompressed,
        entries: entries.len(),
        files,
    })
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Entries by path; adding a path twice is an error unless both are directories.
#[derive(Default)]
struct Tree {
    entries: BTreeMap<Vec<String>, (Entry, String)>,
}

impl Tree {
    fn add(&mut self, entry: Entry, origin: &str) -> Result<()> {
        let key: Vec<String> = entry.path.split('/').map(str::to_string).collect();
        for depth in 1..key.len() {
            let parent = key[..depth].join("/");
            match self.entries.get(&key[..depth]) {
                Some((existing, by)) if existing.kind != Kind::Dir => {
                    bail!(
                        "{} ({origin}) needs directory {parent}, which is a file from {by}",
                        entry.path
                    )
                }
                Some(_) => {}
                None => {
                    self.entries.insert(
                        key[..depth].to_vec(),
                        (Entry::dir(&parent, 0o755), origin.into()),
                    );
                }
            }
        }
        if let Some((existing, by)) = self.entries.get(&key) {
            if existing.kind == Kind::Dir && entry.kind == Kind::Dir {
                return Ok(());
            }
            bail!("{} is added twice: by {by} and by {origin}", entry.path);
        }
        self.entries.insert(key, (entry, origin.into()));
        Ok(())
    }

    /// Component-wise order puts every directory right before its contents.
    fn into_sorted(self) -> Vec<Entry> {
        self.entries.into_values().map(|(entry, _)| entry).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmod::Resolved;

    #[test]
    fn extra_specs() {
        let extra: Extra = "/host/a:b:/etc/x.conf".parse().unwrap();
        assert_eq!(
            extra,
            Extra {
                src: "/host/a:b".into(),
                dest: "etc/x.conf".into()
            }
        );
        assert!("nodest".parse::<Extra>().is_err());
        assert!("/a:/../etc/passwd".parse::<Extra>().is_err());
        assert!("/a:/".parse::<Extra>().is_err());
    }

    #[test]
    fn load_list_has_plain_absolute_paths_and_params() {
        let plan = LoadPlan {
            modules: vec![
                Resolved {
                    name: "failover".into(),
                    path: "kernel/net/failover.ko.xz".into(),
                    params: None,
                },
                Resolved {
                    name: "virtio_net".into(),
                    path: "kernel/drivers/net/virtio_net.ko".into(),
                    params: Some("napi_tx=1".into()),
                },
            ],
            ..Default::default()
        };
        let text = load_list("6.1.0-56-arm64", &plan);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "/lib/modules/6.1.0-56-arm64/kernel/net/failover.ko",
                "/lib/modules/6.1.0-56-arm64/kernel/drivers/net/virtio_net.ko napi_tx=1"
            ]
        );
    }

    #[test]
    fn tree_adds_parents_sorts_and_refuses_collisions() {
        let mut tree = Tree::default();
        tree.add(Entry::file("a/b/c", 0o644, vec![1]), "t").unwrap();
        tree.add(Entry::file("a-b", 0o644, vec![2]), "t").unwrap();
        tree.add(Entry::dir("a", 0o700), "t").unwrap();
        let err = tree
            .add(Entry::file("a/b/c", 0o644, vec![3]), "other")
            .unwrap_err();
        assert!(
            err.to_string().contains("added twice: by t and by other"),
            "{err}"
        );
        let err = tree
            .add(Entry::file("a/b/c/d", 0o644, vec![]), "x")
            .unwrap_err();
        assert!(err.to_string().contains("which is a file"), "{err}");
        let paths: Vec<String> = tree.into_sorted().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["a", "a/b", "a/b/c", "a-b"]);
    }
}
