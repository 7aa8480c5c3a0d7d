//! The folder a Pi's firmware reads over TFTP: `<root>/<serial>/` for one node, or the
//! TFTP root itself for discovery (the firmware falls back to the root when the serial
//! folder has no start file), so any plain TFTP server (dnsmasq, tftpd-hpa) serves it.
//! Upstream PureBoot keeps `pi-nodes/<serial>/` and needs its own TFTP server to map it.

mod model;
mod render;

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use model::Model;
pub use pureboot_contract::ids::Serial;

#[derive(Debug, Clone)]
pub enum Target {
    Node(Serial),
    Discovery,
}

pub struct Spec {
    pub target: Target,
    pub models: Vec<Model>,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub firmware_dir: PathBuf,
    pub controller_url: String,
    pub consoles: Vec<String>,
    pub cmdline_extra: Vec<String>,
    pub dtb: Option<String>,
}

/// One file of the folder, relative to the TFTP root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub dest: PathBuf,
    pub content: Content,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Text(String),
    From(PathBuf),
}

/// Everything to write, checked: the sources exist, the URL and extras fit one line.
pub fn plan(spec: &Spec) -> Result<Vec<Placement>> {
    if spec.models.is_empty() {
        bail!("no --model given");
    }
    if !(spec.controller_url.starts_with("http://") || spec.controller_url.starts_with("https://"))
        || spec.controller_url.contains(char::is_whitespace)
    {
        bail!(
            "--controller-url {:?}: expected http://host:port",
            spec.controller_url
        );
    }
    let (folder, label, serial) = match &spec.target {
        Target::Node(serial) => {
            let label = format!("node {serial} ({})", spec.models[0].name());
            (PathBuf::from(serial.to_string()), label, Some(serial))
        }
        Target::Discovery => {
            let names: Vec<&str> = spec.models.iter().map(|m| m.name()).collect();
            (
                PathBuf::new(),
                format!("discovery folder ({})", names.join(", ")),
                None,
            )
        }
    };
    let mut device_trees = Vec::new();
    for model in &spec.models {
        let names = match &spec.dtb {
            Some(dtb) => vec![dtb.as_str()],
            None => model.device_trees().to_vec(),
        };
        let (name, src) = firmware(&spec.firmware_dir, &names)?;
        device_trees.push((*model, name, src));
    }
    let chosen: Vec<(Model, &str)> = device_trees.iter().map(|(m, n, _)| (*m, *n)).collect();
    let mut out = vec![
        text(
            folder.join("config.txt"),
            render::config_txt(&label, &chosen),
        ),
        text(
            folder.join("cmdline.txt"),
            render::cmdline_txt(&render::CmdlineParams {
                consoles: &spec.consoles,
                controller_url: &spec.controller_url,
                serial,
                extra: &spec.cmdline_extra,
            }),
        ),
        from(
            folder.join(render::KERNEL),
            existing(&spec.kernel, "--kernel")?,
        ),
        from(
            folder.join(render::INITRAMFS),
            existing(&spec.initramfs, "--initramfs")?,
        ),
    ];
    let mut files = Vec::new();
    for model in &spec.models {
        for name in model.firmware() {
            files.push((folder.join(name), firmware(&spec.firmware_dir, &[name])?.1));
        }
        for name in model.root_files() {
            files.push((
                PathBuf::from(name),
                firmware(&spec.firmware_dir, &[name])?.1,
            ));
        }
    }
    files.extend(
        device_trees
            .into_iter()
            .map(|(_, name, src)| (folder.join(name), src)),
    );
    for (dest, src) in files {
        // Models share files (one --dtb for all): each destination once.
        if !out.iter().any(|p| p.dest == dest) {
            out.push(from(dest, src));
        }
    }
    Ok(out)
}

fn text(dest: PathBuf, content: String) -> Placement {
    Placement {
        dest,
        content: Content::Text(content),
    }
}

fn from(dest: PathBuf, src: PathBuf) -> Placement {
    Placement {
        dest,
        content: Content::From(src),
    }
}

fn existing(path: &Path, what: &str) -> Result<PathBuf> {
    if !path.is_file() {
        bail!("{what} {}: no such file", path.display());
    }
    Ok(path.to_path_buf())
}

/// The first of `names` in the firmware folder, and where it is; device trees may also sit
/// in `broadcom/`, as in Debian's `/usr/lib/linux-image-*/`.
fn firmware<'a>(dir: &Path, names: &[&'a str]) -> Result<(&'a str, PathBuf)> {
    for name in names {
        for candidate in [dir.join(name), dir.join("broadcom").join(name)] {
            if candidate.is_file() {
                return Ok((name, candidate));
            }
        }
    }
    bail!(
        "{} not found in --firmware-dir {} (nor its broadcom/): \
         copy it from the Raspberry Pi firmware's boot/ folder",
        names.join(" or "),
        dir.display()
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Text,
    Linked,
    Copied,
}

/// Writes the plan under `root`: text files atomically, other files hard-linked when on the
/// same filesystem (no copy, no symlink a chrooted TFTP server could not follow), else copied.
pub fn apply(root: &Path, plan: &[Placement]) -> Result<Vec<(PathBuf, Written)>> {
    let mut done = Vec::new();
    for placement in plan {
        let dest = root.join(&placement.dest);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let how = match &placement.content {
            Content::Text(text) => {
                let tmp = dest.with_extension("tmp-pureboot");
                fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
                fs::rename(&tmp, &dest)
                    .with_context(|| format!("renaming to {}", dest.display()))?;
                Written::Text
            }
            Content::From(src) => link_or_copy(src, &dest)?,
        };
        done.push((placement.dest.clone(), how));
    }
    Ok(done)
}

fn link_or_copy(src: &Path, dest: &Path) -> Result<Written> {
    match fs::remove_file(dest) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("replacing {}", dest.display())),
    }
    if fs::hard_link(src, dest).is_ok() {
        return Ok(Written::Linked);
    }
    fs::copy(src, dest)
        .with_context(|| format!("copying {} to {}", src.display(), dest.display()))?;
    Ok(Written::Copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        _tmp: tempfile::TempDir,
        dir: PathBuf,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let fw = dir.join("fw");
        fs::create_dir_all(fw.join("broadcom")).unwrap();
        for name in [
            "bootcode.bin",
            "start.elf",
            "fixup.dat",
            "start4.elf",
            "fixup4.dat",
        ] {
            fs::write(fw.join(name), format!("firmware {name}")).unwrap();
        }
        fs::write(fw.join("bcm2710-rpi-3-b.dtb"), "dtb3").unwrap();
        fs::write(fw.join("bcm2711-rpi-4-b.dtb"), "dtb4").unwrap();
        // Debian's layout for the Pi 5 tree.
        fs::write(fw.join("broadcom/bcm2712-rpi-5-b.dtb"), "dtb5").unwrap();
        fs::write(dir.join("Image"), "kernel").unwrap();
        fs::write(dir.join("initrd.cpio.gz"), "initramfs").unwrap();
        Fixture { _tmp: tmp, dir }
    }

    fn spec(f: &Fixture, target: Target, models: &[Model]) -> Spec {
        Spec {
            target,
            models: models.to_vec(),
            kernel: f.dir.join("Image"),
            initramfs: f.dir.join("initrd.cpio.gz"),
            firmware_dir: f.dir.join("fw"),
            controller_url: "http://10.0.0.1:8080".into(),
            consoles: vec!["serial0,115200".into()],
            cmdline_extra: vec!["pureboot.log=debug".into()],
            dtb: None,
        }
    }

    fn listing(root: &Path) -> Vec<String> {
        let mut names = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    names.push(path.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        names.sort();
        names
    }

    fn read(path: PathBuf) -> String {
        fs::read_to_string(path).unwrap()
    }

    #[test]
    fn node_folder_per_model() {
        let cases: [(Model, &[&str]); 3] = [
            (
                Model::Pi3,
                &[
                    "bootcode.bin",
                    "d83add36/bcm2710-rpi-3-b.dtb",
                    "d83add36/fixup.dat",
                    "d83add36/start.elf",
                ],
            ),
            (
                Model::Pi4,
                &[
                    "d83add36/bcm2711-rpi-4-b.dtb",
                    "d83add36/fixup4.dat",
                    "d83add36/start4.elf",
                ],
            ),
            (Model::Pi5, &["d83add36/bcm2712-rpi-5-b.dtb"]),
        ];
        for (model, specific) in cases {
            let f = fixture();
            let root = f.dir.join("tftp");
            let serial: Serial = "D83ADD36".parse().unwrap();
            apply(
                &root,
                &plan(&spec(&f, Target::Node(serial), &[model])).unwrap(),
            )
            .unwrap();
            let mut expected: Vec<String> = [
                "d83add36/cmdline.txt",
                "d83add36/config.txt",
                "d83add36/initramfs.img",
                "d83add36/kernel8.img",
            ]
            .iter()
            .chain(specific)
            .map(|s| s.to_string())
            .collect();
            expected.sort();
            assert_eq!(listing(&root), expected, "{model:?}");
            let config = read(root.join("d83add36/config.txt"));
            assert!(
                config.contains(&format!("\ndevice_tree={}\n", model.device_trees()[0])),
                "{config}"
            );
            assert!(
                config.contains("\ninitramfs initramfs.img followkernel\n"),
                "{config}"
            );
            assert!(config.contains("\narm_64bit=1\n") && config.contains("\nenable_uart=1\n"));
            let cmdline = read(root.join("d83add36/cmdline.txt"));
            assert_eq!(cmdline.lines().count(), 1);
            assert!(cmdline.contains("pureboot.url=http://10.0.0.1:8080 pureboot.serial=d83add36"));
            assert_eq!(read(root.join("d83add36/kernel8.img")), "kernel");
            assert_eq!(read(root.join("d83add36/initramfs.img")), "initramfs");
            let dtb = read(root.join("d83add36").join(model.device_trees()[0]));
            assert_eq!(dtb, format!("dtb{}", &model.name()[2..]));
        }
    }

    #[test]
    fn same_filesystem_files_are_hard_links() {
        use std::os::unix::fs::MetadataExt;
        let f = fixture();
        let root = f.dir.join("tftp");
        let serial: Serial = "0123abcd".parse().unwrap();
        let written = apply(
            &root,
            &plan(&spec(&f, Target::Node(serial), &[Model::Pi4])).unwrap(),
        )
        .unwrap();
        assert!(written
            .iter()
            .any(|(p, w)| p.ends_with("kernel8.img") && *w == Written::Linked));
        let linked = fs::metadata(root.join("0123abcd/kernel8.img")).unwrap();
        assert_eq!(
            linked.ino(),
            fs::metadata(f.dir.join("Image")).unwrap().ino()
        );
        // Rewriting replaces, it does not fail on existing files.
        let serial: Serial = "0123abcd".parse().unwrap();
        apply(
            &root,
            &plan(&spec(&f, Target::Node(serial), &[Model::Pi4])).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn discovery_writes_the_root_for_every_model() {
        let f = fixture();
        let root = f.dir.join("tftp");
        let models = [Model::Pi3, Model::Pi4, Model::Pi5];
        apply(&root, &plan(&spec(&f, Target::Discovery, &models)).unwrap()).unwrap();
        let names = listing(&root);
        for name in [
            "config.txt",
            "cmdline.txt",
            "kernel8.img",
            "bootcode.bin",
            "start.elf",
            "start4.elf",
            "bcm2712-rpi-5-b.dtb",
        ] {
            assert!(
                names.contains(&name.to_string()),
                "{name} missing from {names:?}"
            );
        }
        let config = read(root.join("config.txt"));
        assert!(
            config.contains("[pi4]\ndevice_tree=bcm2711-rpi-4-b.dtb\n"),
            "{config}"
        );
        let cmdline = read(root.join("cmdline.txt"));
        assert!(
            cmdline.contains("pureboot.mode=discovery") && !cmdline.contains("pureboot.serial")
        );
    }

    #[test]
    fn device_tree_falls_back_to_mainline_name_or_takes_the_override() {
        let f = fixture();
        fs::remove_file(f.dir.join("fw/bcm2710-rpi-3-b.dtb")).unwrap();
        fs::write(f.dir.join("fw/broadcom/bcm2837-rpi-3-b.dtb"), "mainline").unwrap();
        fs::write(f.dir.join("fw/bcm2710-rpi-3-b-plus.dtb"), "plus").unwrap();
        let serial: Serial = "0123abcd".parse().unwrap();
        let root = f.dir.join("tftp");
        apply(
            &root,
            &plan(&spec(&f, Target::Node(serial.clone()), &[Model::Pi3])).unwrap(),
        )
        .unwrap();
        let config = read(root.join("0123abcd/config.txt"));
        assert!(
            config.contains("\ndevice_tree=bcm2837-rpi-3-b.dtb\n"),
            "{config}"
        );
        assert_eq!(read(root.join("0123abcd/bcm2837-rpi-3-b.dtb")), "mainline");

        let mut plus = spec(&f, Target::Node(serial), &[Model::Pi3]);
        plus.dtb = Some("bcm2710-rpi-3-b-plus.dtb".into());
        apply(&root, &plan(&plus).unwrap()).unwrap();
        let config = read(root.join("0123abcd/config.txt"));
        assert!(
            config.contains("\ndevice_tree=bcm2710-rpi-3-b-plus.dtb\n"),
            "{config}"
        );
        assert!(!config.contains("bcm2837"), "{config}");
    }

    #[test]
    fn missing_inputs_and_bad_url_are_refused() {
        let f = fixture();
        fs::remove_file(f.dir.join("fw/start4.elf")).unwrap();
        let serial: Serial = "0123abcd".parse().unwrap();
        let err = plan(&spec(&f, Target::Node(serial.clone()), &[Model::Pi4])).unwrap_err();
        assert!(
            format!("{err:#}").contains("start4.elf not found"),
            "{err:#}"
        );
        let mut bad = spec(&f, Target::Node(serial.clone()), &[Model::Pi5]);
        bad.controller_url = "10.0.0.1:8080".into();
        assert!(plan(&bad)
            .unwrap_err()
            .to_string()
            .contains("--controller-url"));
        let mut bad = spec(&f, Target::Node(serial), &[Model::Pi5]);
        bad.kernel = f.dir.join("nope");
        assert!(plan(&bad).unwrap_err().to_string().contains("--kernel"));
    }
}
