//! The initramfs pi-init boots from: entries assembled from the inputs, in a fixed order,
//! then a cpio archive, then compression.
//!
//! Layout (agreed with pi-init): `/init`, `/dev/console` (c 5:1), the directories pi-init
//! mounts on, plain `.ko` files under `/lib/modules/<kver>/`, the module list at
//! `/etc/pureboot/modules` (loaded at start, and the drivers loaded by modalias), the disk
//! list at `/etc/pureboot/modules.disk` (loaded when the image overlay or a local root needs
//! a disk filesystem) and the alias table `/etc/pureboot/modules.alias`; their format is
//! `pureboot_contract::modules_list`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use pureboot_contract::modules_list::{self as list, Aliases, When};

use crate::codec::{self, Compression};
use crate::cpio::{self, Entry, Kind};
use crate::kmod::resolve::{LoadPlan, Lookup, Resolved};
use crate::kmod::ModuleDb;

pub const LOAD_LIST: &str = archive(list::LIST_PATH);
pub const DISK_LOAD_LIST: &str = archive(list::DISK_LIST_PATH);
pub const ALIAS_TABLE: &str = archive(list::ALIAS_PATH);
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

/// An absolute path as an archive path (without the leading `/`).
const fn archive(path: &'static str) -> &'static str {
    match path.as_bytes() {
        [b'/', rest @ ..] => match std::str::from_utf8(rest) {
            Ok(s) => s,
            Err(_) => panic!("not UTF-8"),
        },
        _ => panic!("not absolute"),
    }
}

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

/// The modules of one initramfs, resolved; no module is in two plans.
pub struct Plans<'a> {
    pub db: &'a ModuleDb,
    /// Loaded at start, in this order (the NIC driver first).
    pub start: &'a LoadPlan,
    /// Loaded when a device present asks for one by modalias (after `start` on the list).
    pub device: &'a LoadPlan,
    /// Loaded only when a boot needs a disk filesystem (the image overlay, a local root).
    pub disk: &'a LoadPlan,
}

pub struct Inputs<'a> {
    pub pi_init: &'a Path,
    pub plans: Plans<'a>,
    pub extras: &'a [Extra],
    pub busybox: Option<&'a Path>,
}

/// The three files that tell pi-init what to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lists {
    pub modules: String,
    pub disk: String,
    pub aliases: String,
}

impl Plans<'_> {
    /// Every module's file in the initramfs (archive path) and its bytes, uncompressed.
    pub fn files(&self) -> Result<Vec<(String, &Resolved, Vec<u8>)>> {
        let db = self.db;
        let all = self.start.modules.iter();
        all.chain(&self.device.modules)
            .chain(&self.disk.modules)
            .map(|module| {
                let src = db.dir.join(&module.path);
                let data = codec::decompress_module(&module.path, read(&src, "module")?)
                    .with_context(|| format!("decompressing module {}", src.display()))?;
                let path = self
                    .in_initramfs(module)
                    .trim_start_matches('/')
                    .to_string();
                Ok((path, module, data))
            })
            .collect()
    }

    /// `/lib/modules/<kver>/kernel/…/x.ko`: where pi-init finds the module.
    fn in_initramfs(&self, module: &Resolved) -> String {
        let plain = codec::plain_module_path(&module.path).unwrap_or(&module.path);
        format!("/lib/modules/{}/{plain}", self.db.kver)
    }

    /// The lists and the alias table, with each module's size from `bytes` (by name).
    pub fn lists(&self, bytes: &HashMap<String, u64>) -> Result<Lists> {
        let kver = &self.db.kver;
        let size = |m: &Resolved| bytes.get(&m.name).copied().unwrap_or(0);
        let main = self.entries(
            &[(self.start, When::Start), (self.device, When::Device)],
            size,
        );
        let modules = list::write(
            &format!(
                "pureboot module list for {kver}, written by pureboot-image: loaded at start\n\
                 (start) or when a device asks for the module by modalias (device), each after\n\
                 what it needs\n\
                 <when> <path> <bytes> <needs: earlier names, or -> [<parameters>]"
            ),
            &main,
        )
        .map_err(|e| anyhow!("module list: {e}"))?;
        let disk = list::write(
            &format!(
                "pureboot disk module list for {kver}, written by pureboot-image: loaded only\n\
                 when a boot needs a disk filesystem (the image overlay's ext4, a local root)\n\
                 <when> <path> <bytes> <needs: earlier names, or -> [<parameters>]"
            ),
            &self.entries(&[(self.disk, When::Start)], size),
        )
        .map_err(|e| anyhow!("disk module list: {e}"))?;
        Ok(Lists {
            modules,
            disk,
            aliases: self.device_aliases().write(&format!(
                "pureboot alias table for {kver}, written by pureboot-image: the modalias\n\
                 patterns of the modules the list loads by device"
            )),
        })
    }

    /// One list: the plans' modules in order, each with the modules on it that it needs.
    fn entries(
        &self,
        plans: &[(&LoadPlan, When)],
        size: impl Fn(&Resolved) -> u64,
    ) -> Vec<list::Entry> {
        let mut at: HashMap<&str, usize> = HashMap::new();
        let mut entries = Vec::new();
        for (plan, when) in plans {
            for m in &plan.modules {
                let needs = self
                    .needs(&m.name)
                    .iter()
                    .filter_map(|n| at.get(n.as_str()).copied())
                    .collect();
                entries.push(list::Entry {
                    when: *when,
                    path: self.in_initramfs(m),
                    bytes: size(m),
                    needs,
                    params: m.params.clone().unwrap_or_default(),
                });
                at.insert(&m.name, entries.len() - 1);
            }
        }
        entries
    }

    /// What a module needs loaded first: its `pre:` soft dependencies and its direct
    /// dependencies. modules.dep lists every module in the closure; one that another of them
    /// needs already is left out, so the list names only the direct ones.
    fn needs(&self, name: &str) -> Vec<String> {
        let db = self.db;
        let mut needs: Vec<String> = Vec::new();
        if let Some(soft) = db.softdeps.get(name) {
            for pre in &soft.pre {
                if let Lookup::Modules(names) = db.lookup(pre) {
                    needs.extend(names);
                }
            }
        }
        let deps = db
            .modules
            .get(name)
            .map(|f| f.deps.as_slice())
            .unwrap_or_default();
        let through_another = |d: &String| {
            deps.iter()
                .any(|o| o != d && db.modules.get(o).is_some_and(|f| f.deps.contains(d)))
        };
        // modules.dep order is "load in reverse"; the list keeps the load order.
        needs.extend(deps.iter().rev().filter(|d| !through_another(d)).cloned());
        needs
    }

    /// modules.alias restricted to the `device` modules, and to modaliases (`bus:…`, what
    /// sysfs shows): other aliases (`fs-ext4`, `crypto-…`) name no device.
    pub fn device_aliases(&self) -> Aliases {
        let device: BTreeSet<&str> = self
            .device
            .modules
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        Aliases::from_pairs(
            self.db
                .aliases
                .iter()
                .filter(|(pattern, module)| device.contains(module) && pattern.contains(':'))
                .map(|(p, m)| (p.to_string(), m.to_string())),
        )
    }
}

/// The size of every module (uncompressed, as in the initramfs), by name.
pub fn sizes(files: &[(String, &Resolved, Vec<u8>)]) -> HashMap<String, u64> {
    files
        .iter()
        .map(|(_, m, data)| (m.name.clone(), data.len() as u64))
        .collect()
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

    let files = inputs.plans.files()?;
    for (path, module, data) in &files {
        tree.add(Entry::file(path, 0o644, data.clone()), &module.name)?;
    }
    let lists = inputs.plans.lists(&sizes(&files))?;
    for (path, text, what) in [
        (LOAD_LIST, lists.modules, "module list"),
        (DISK_LOAD_LIST, lists.disk, "disk list"),
        (ALIAS_TABLE, lists.aliases, "alias table"),
    ] {
        tree.add(Entry::file(path, 0o644, text.into_bytes()), what)?;
    }

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

    fn plan(modules: &[(&str, &str, Option<&str>)]) -> LoadPlan {
        LoadPlan {
            modules: modules
                .iter()
                .map(|(name, path, params)| Resolved {
                    name: name.to_string(),
                    path: path.to_string(),
                    params: params.map(str::to_string),
                })
                .collect(),
            ..Default::default()
        }
    }

    /// A module tree as depmod describes it: modules.dep lists every module in the closure.
    fn db() -> ModuleDb {
        let deps: &[(&str, &[&str])] = &[
            ("failover", &[]),
            ("net_failover", &["failover"]),
            ("virtio_net", &["net_failover", "failover"]),
            ("usb_common", &[]),
            ("usbcore", &["usb_common"]),
            ("mii", &[]),
            ("usbnet", &["mii", "usbcore", "usb_common"]),
            ("smsc95xx", &["usbnet", "mii", "usbcore", "usb_common"]),
            ("crc32c_generic", &[]),
            ("jbd2", &[]),
            ("ext4", &["jbd2"]),
        ];
        ModuleDb {
            dir: "/fake".into(),
            kver: "6.1.0-56-arm64".into(),
            modules: deps
                .iter()
                .map(|(name, deps)| {
                    let file = crate::kmod::ModuleFile {
                        path: format!("kernel/{name}.ko.xz"),
                        deps: deps.iter().map(|d| d.to_string()).collect(),
                    };
                    (name.to_string(), file)
                })
                .collect(),
            builtin: Default::default(),
            aliases: Aliases::parse(
                "alias usb:v0424pEC00d*dc*dsc*dp*ic*isc*ip*in* smsc95xx\n\
                 alias virtio:d00000001v* virtio_net\n\
                 alias net-usb-fake smsc95xx\n\
                 alias crypto-crc32c crc32c_generic\n\
                 alias fs-ext4 ext4\n",
            ),
            builtin_aliases: Aliases::default(),
            softdeps: [(
                "ext4".to_string(),
                crate::kmod::softdep::SoftDep {
                    pre: vec!["crypto-crc32c".into()],
                    post: vec![],
                },
            )]
            .into(),
        }
    }

    #[test]
    fn lists_carry_paths_sizes_direct_needs_and_params() {
        let db = db();
        let start = plan(&[
            ("failover", "kernel/failover.ko.xz", None),
            ("net_failover", "kernel/net_failover.ko.xz", None),
            ("virtio_net", "kernel/virtio_net.ko.xz", Some("napi_tx=1")),
        ]);
        let device = plan(&[
            ("usb_common", "kernel/usb_common.ko.xz", None),
            ("usbcore", "kernel/usbcore.ko.xz", None),
            ("mii", "kernel/mii.ko.xz", None),
            ("usbnet", "kernel/usbnet.ko.xz", None),
            ("smsc95xx", "kernel/smsc95xx.ko.xz", None),
        ]);
        let disk = plan(&[
            ("crc32c_generic", "kernel/crc32c_generic.ko.xz", None),
            ("jbd2", "kernel/jbd2.ko.xz", None),
            ("ext4", "kernel/ext4.ko.xz", None),
        ]);
        let plans = Plans {
            db: &db,
            start: &start,
            device: &device,
            disk: &disk,
        };
        let sizes = [("virtio_net", 108), ("smsc95xx", 60), ("ext4", 900)]
            .map(|(n, b)| (n.to_string(), b))
            .into();
        let lists = plans.lists(&sizes).unwrap();
        let body = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| l.replace("/lib/modules/6.1.0-56-arm64/kernel/", ""))
                .collect()
        };
        assert_eq!(
            body(&lists.modules),
            [
                "start failover.ko 0 -",
                "start net_failover.ko 0 failover",
                "start virtio_net.ko 108 net_failover napi_tx=1",
                "device usb_common.ko 0 -",
                "device usbcore.ko 0 usb_common",
                "device mii.ko 0 -",
                "device usbnet.ko 0 usbcore,mii",
                "device smsc95xx.ko 60 usbnet",
            ]
        );
        assert_eq!(
            body(&lists.disk),
            [
                "start crc32c_generic.ko 0 -",
                "start jbd2.ko 0 -",
                "start ext4.ko 900 crc32c_generic,jbd2",
            ]
        );
        // Only the device modules' modaliases: not virtio_net (loaded at start), not names.
        assert_eq!(
            body(&lists.aliases),
            ["alias usb:v0424pEC00d*dc*dsc*dp*ic*isc*ip*in* smsc95xx"]
        );
        // pi-init's parser reads them back without a warning.
        for text in [&lists.modules, &lists.disk] {
            let (entries, warnings) = list::parse(text);
            assert!(warnings.is_empty(), "{warnings:?}");
            assert!(!entries.is_empty());
        }
        assert_eq!(LOAD_LIST, "etc/pureboot/modules");
        assert_eq!(ALIAS_TABLE, "etc/pureboot/modules.alias");
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
