//! The folder a Pi's firmware reads over TFTP: `<root>/<serial>/` for one node, or the
//! TFTP root itself for discovery (the firmware falls back to the root when the serial
//! folder has no start file), so any plain TFTP server (dnsmasq, tftpd-hpa) serves it.
//! Upstream PureBoot keeps `pi-nodes/<serial>/` and needs its own TFTP server to map it.

pub mod from_image;
pub mod model;
mod render;
mod swap;

pub use swap::apply_folder;

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use model::Model;
use pureboot_contract::ids::Serial;

#[derive(Debug, Clone)]
pub enum Target {
    Node(Serial),
    Discovery,
}

/// A file given for every model, or for one: `--initramfs PATH`, `--initramfs pi3=PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerModel {
    pub model: Option<Model>,
    pub path: PathBuf,
}

impl std::str::FromStr for PerModel {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        if let Some((name, path)) = spec.split_once('=') {
            if let Some(model) = Model::from_name(name) {
                if path.is_empty() {
                    return Err(format!("{spec:?}: no path after {name}="));
                }
                return Ok(Self {
                    model: Some(model),
                    path: path.into(),
                });
            }
        }
        if spec.is_empty() {
            return Err("empty path".into());
        }
        Ok(Self {
            model: None,
            path: spec.into(),
        })
    }
}

pub struct Spec {
    pub target: Target,
    pub models: Vec<Model>,
    pub kernel: Vec<PerModel>,
    pub initramfs: Vec<PerModel>,
    pub firmware_dir: PathBuf,
    pub controller_url: String,
    pub consoles: Vec<String>,
    pub cmdline_extra: Vec<String>,
    /// Pin this device tree (`device_tree=`) instead of letting the firmware choose.
    pub device_tree: Option<String>,
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

/// What [`plan`] decided: the files, and notes for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub files: Vec<Placement>,
    pub notes: Vec<String>,
}

/// The marker written as a Pi 5 folder's `start4.elf` when the firmware folder has none.
pub const PI5_PREFIX_MARKER: &str = "pureboot: the Pi 5 EEPROM keeps the TFTP prefix (this \
     serial folder) only when the folder holds start4.elf or start.elf; a Pi 5 never runs it\n";

/// Everything to write, checked: the sources exist, the URL and extras fit one line.
pub fn plan(spec: &Spec) -> Result<Plan> {
    if spec.models.is_empty() {
        bail!("no --model given");
    }
    // One URL, or several controllers of one registry, comma-separated (pi-init asks them
    // in turn).
    let bad_url =
        |u: &str| !u.starts_with("http://") || u.contains(char::is_whitespace) || u.len() < 8;
    if spec.controller_url.split(',').any(bad_url) {
        bail!(
            "--controller-url {:?}: expected http://host:port, or several separated by commas",
            spec.controller_url
        );
    }
    let (folder, label, serial, sections) = match &spec.target {
        Target::Node(serial) => {
            let label = format!("node {serial} ({})", spec.models[0].name());
            (
                PathBuf::from(serial.to_string()),
                label,
                Some(serial),
                false,
            )
        }
        Target::Discovery => {
            let names: Vec<&str> = spec.models.iter().map(|m| m.name()).collect();
            (
                PathBuf::new(),
                format!("discovery folder ({})", names.join(", ")),
                None,
                true,
            )
        }
    };
    if spec.device_tree.is_some() && spec.models.len() > 1 {
        bail!(
            "--device-tree pins one board's tree: a folder for several models lets the \
             firmware choose (leave --device-tree out)"
        );
    }
    let kernels = per_model(&spec.kernel, &spec.models, "--kernel", "kernel8", "img")?;
    let initramfs = per_model(
        &spec.initramfs,
        &spec.models,
        "--initramfs",
        "initramfs",
        "img",
    )?;

    let mut notes = Vec::new();
    let mut files: Vec<(PathBuf, Content)> = Vec::new();
    let mut configs = Vec::new();
    for model in &spec.models {
        let (kernel_name, kernel_src) = &kernels[model];
        let (initramfs_name, initramfs_src) = &initramfs[model];
        files.push((folder.join(kernel_name), Content::From(kernel_src.clone())));
        files.push((
            folder.join(initramfs_name),
            Content::From(initramfs_src.clone()),
        ));
        let mut config = render::ModelConfig {
            model: *model,
            kernel: kernel_name.clone(),
            initramfs: initramfs_name.clone(),
            device_tree: None,
            upstream_kernel: false,
        };
        match &spec.device_tree {
            Some(name) => {
                let (name, src) = firmware(&spec.firmware_dir, &[name.as_str()])?;
                files.push((folder.join(name), Content::From(src)));
                config.device_tree = Some(name.to_string());
            }
            None => {
                let trees = device_trees(&spec.firmware_dir, *model)?;
                config.upstream_kernel = trees.iter().all(|(_, _, mainline)| *mainline);
                files.extend(
                    trees
                        .into_iter()
                        .map(|(name, src, _)| (folder.join(name), Content::From(src))),
                );
            }
        }
        configs.push(config);
        for name in model.firmware() {
            files.push((
                folder.join(name),
                Content::From(firmware(&spec.firmware_dir, &[name])?.1),
            ));
        }
        for name in model.root_files() {
            files.push((
                PathBuf::from(name),
                Content::From(firmware(&spec.firmware_dir, &[name])?.1),
            ));
        }
    }
    for model in &spec.models {
        let Some(keeper) = model.prefix_keeper() else {
            continue;
        };
        let kept = files.iter().any(|(dest, _)| {
            dest.parent() == Some(folder.as_path())
                && matches!(
                    dest.file_name().and_then(|n| n.to_str()),
                    Some("start4.elf" | "start.elf")
                )
        });
        if kept {
            continue;
        }
        match firmware(&spec.firmware_dir, &[keeper]) {
            Ok((_, src)) => files.push((folder.join(keeper), Content::From(src))),
            Err(_) => {
                notes.push(format!(
                    "no {keeper} in --firmware-dir: wrote a marker file in its place, so the \
                     Pi 5 EEPROM keeps reading this folder"
                ));
                files.push((
                    folder.join(keeper),
                    Content::Text(PI5_PREFIX_MARKER.to_string()),
                ));
            }
        }
    }
    let overlays = spec.firmware_dir.join("overlays");
    if overlays.is_dir() {
        for (name, src) in dir_files(&overlays)? {
            files.push((folder.join("overlays").join(name), Content::From(src)));
        }
    } else {
        notes.push(format!(
            "no overlays/ in --firmware-dir {}: dtoverlay= lines in config.txt will find \
             nothing (Debian's kernel package ships none; the Raspberry Pi firmware's boot/ has it)",
            spec.firmware_dir.display()
        ));
    }

    let mut out = vec![
        text(
            folder.join("config.txt"),
            render::config_txt(&label, &configs, sections),
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
    ];
    for (dest, content) in files {
        // Models share files (firmware, overlays, one kernel): each destination once.
        if !out.iter().any(|p| p.dest == dest) {
            out.push(Placement { dest, content });
        }
    }
    Ok(Plan { files: out, notes })
}

/// For each model: the file name in the folder and the source. The file given for every
/// model keeps the plain name (`kernel8.img`); a model's own is `<stem>-<model>.<ext>`.
fn per_model(
    given: &[PerModel],
    models: &[Model],
    flag: &str,
    stem: &str,
    ext: &str,
) -> Result<BTreeMap<Model, (String, PathBuf)>> {
    let mut default = None;
    let mut own: BTreeMap<Model, PathBuf> = BTreeMap::new();
    for g in given {
        match g.model {
            None if default.is_some() => bail!("{flag} given twice for every model"),
            None => default = Some(g.path.clone()),
            Some(m) if !models.contains(&m) => {
                bail!("{flag} {}=…: {} is not among --model", m.name(), m.name())
            }
            Some(m) => {
                if own.insert(m, g.path.clone()).is_some() {
                    bail!("{flag} given twice for {}", m.name());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for model in models {
        let (name, src) = match (own.get(model), &default) {
            (Some(src), _) => (format!("{stem}-{}.{ext}", model.name()), src),
            (None, Some(src)) => (format!("{stem}.{ext}"), src),
            (None, None) => bail!("no {flag} for {}", model.name()),
        };
        out.insert(*model, (name, existing(src, flag)?));
    }
    Ok(out)
}

/// Every device tree of the model's boards in the firmware folder (or its `broadcom/`, as in
/// Debian's `/usr/lib/linux-image-*/`), by name, with whether the name is mainline's.
fn device_trees(dir: &Path, model: Model) -> Result<Vec<(String, PathBuf, bool)>> {
    let mut found: BTreeMap<String, (PathBuf, bool)> = BTreeMap::new();
    for sub in [dir.join("broadcom"), dir.to_path_buf()] {
        if !sub.is_dir() {
            continue;
        }
        for (name, src) in dir_files(&sub)? {
            if !name.ends_with(".dtb") {
                continue;
            }
            if let Some(family) = model
                .dtb_families()
                .iter()
                .find(|f| name.starts_with(f.prefix))
            {
                // The folder itself wins over broadcom/.
                found.insert(name, (src, family.mainline));
            }
        }
    }
    if found.is_empty() {
        let patterns: Vec<String> = model
            .dtb_families()
            .iter()
            .map(|f| format!("{}*.dtb", f.prefix))
            .collect();
        bail!(
            "no device tree for {} ({}) in --firmware-dir {} (nor its broadcom/): copy the \
             kernel's dtbs there",
            model.name(),
            patterns.join(" or "),
            dir.display()
        );
    }
    Ok(found
        .into_iter()
        .map(|(name, (src, mainline))| (name, src, mainline))
        .collect())
}

/// Regular files directly in `dir`, by name, sorted.
fn dir_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        if path.is_file() {
            if let Some(name) = entry.file_name().to_str() {
                files.push((name.to_string(), path));
            }
        }
    }
    files.sort();
    Ok(files)
}

fn text(dest: PathBuf, content: String) -> Placement {
    Placement {
        dest,
        content: Content::Text(content),
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
mod tests;
