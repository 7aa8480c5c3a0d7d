//! Image versions and channels: which directory a base image reference means for a node
//! ([`resolve_image`], the one place that decides it: the boot path, the TFTP folders,
//! `image rm` and the status all go through it), imports as new versions, removal and
//! pruning that refuse what a node is assigned or runs, and channel moves.
//!
//! A version is a directory under `base/` that never changes after its import: a node
//! running it never sees a file change under it; a new version is a new directory. The
//! directories of an earlier release (`base/<name>`) are registered as channel `<name>`
//! with one version, that very directory (nothing moves: running nodes see nothing change).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;
use serde_json::json;

use super::{ServiceError, Services};
use crate::domain::boot::base_image;
use crate::domain::node::Node;
use crate::domain::versions::{version_dir, version_id, ImageRef};
use crate::nfs_tree::import::progress::{ImportProgress, ImportSummary};
use crate::nfs_tree::import::ImportOptions;
use crate::store::nodes::NodeFilter;
use crate::store::versions::{Channel, Version};
use crate::store::{StoreError, Tx};

/// A reference resolved for one node: the version (none for a directory the registry does
/// not know, answered by its name as before versions) and the directory the answer names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    pub version: Option<String>,
    pub dir: String,
}

/// The directory and version `reference` means for the node `node_id` (none: no node, e.g.
/// the default for the discovery folder), read in `tx`: a version id is that version; a
/// channel is the version a running rollout pinned the node to, else the channel's; any
/// other name is the directory of that name. An incomplete version (import running) is
/// never answered.
pub fn resolve_image(
    tx: &Tx<'_>,
    node_id: Option<&str>,
    reference: &str,
) -> Result<Resolved, StoreError> {
    let unknown = || Resolved {
        version: None,
        dir: reference.to_string(),
    };
    let id = match ImageRef::parse(reference) {
        Err(_) => return Ok(unknown()),
        Ok(ImageRef::Version { channel, seq }) => version_id(&channel, seq),
        Ok(ImageRef::Channel(channel)) => {
            let pinned = match node_id {
                Some(n) => tx.pinned_version(n, &channel)?,
                None => None,
            };
            match pinned.or(tx.channel(&channel)?.map(|c| c.version)) {
                Some(id) => id,
                None => return Ok(unknown()),
            }
        }
    };
    Ok(match tx.version(&id)? {
        Some(v) if v.complete => Resolved {
            version: Some(v.id),
            dir: v.dir,
        },
        _ => unknown(),
    })
}

/// A node's versions: the one its next boot gets and the one it last reported booting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeVersion {
    pub serial: String,
    pub reference: String,
    pub assigned: Resolved,
    pub running: Option<String>,
}

impl NodeVersion {
    /// Runs another version than the one it is assigned: its next boot changes it.
    pub fn needs_reboot(&self) -> bool {
        self.running.is_some() && self.running != self.assigned.version
    }
}

/// `image import`'s result.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    #[serde(flatten)]
    pub summary: ImportSummary,
    pub version: Version,
    /// The channel points at the new version (a new channel, or `--promote`).
    pub channel_moved: bool,
}

/// One channel with its versions and who uses them.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelInfo {
    pub channel: Channel,
    pub versions: Vec<VersionInfo>,
    pub rollout: Option<crate::store::versions::Rollout>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    #[serde(flatten)]
    pub version: Version,
    pub current: bool,
    pub previous: bool,
    /// Serials of the nodes assigned it and of those running it.
    pub assigned: Vec<String>,
    pub running: Vec<String>,
}

/// At most 20 serials, then how many more.
pub(crate) fn shown(serials: &[String]) -> String {
    match serials.len() {
        0..=20 => serials.join(", "),
        n => format!("{} and {} more", serials[..20].join(", "), n - 20),
    }
}

impl Services {
    /// The base image reference a node's next boot uses (node, else its workflow, else the
    /// default): a workflow that does not render gives the default's.
    pub fn image_reference(&self, node: &Node) -> String {
        // The node with its group chain as rendered: the precedence is `domain::effective`'s.
        let (node, wf) = self.rendered(node);
        base_image(
            &node,
            wf.ok().flatten().as_ref(),
            &self.config.nfs.default_base_image,
        )
    }

    /// Registers the `base/` directories the registry does not know (made by an earlier
    /// release, or by hand) as channels of one version each. Returns the channels made.
    pub fn register_existing_images(&self) -> Result<Vec<String>, ServiceError> {
        let dirs = self.base_images()?;
        if dirs.is_empty() {
            return Ok(Vec::new());
        }
        let made = self.store.write(|tx| -> Result<Vec<String>, ServiceError> {
            let mut made = Vec::new();
            for dir in &dirs {
                if tx.version_by_dir(dir)?.is_some() || tx.channel(dir)?.is_some() {
                    continue;
                }
                let v = Version {
                    id: version_id(dir, 1),
                    channel: dir.clone(),
                    seq: 1,
                    dir: dir.clone(),
                    digest: None,
                    size: None,
                    imported_at: String::new(),
                    complete: true,
                    bad: None,
                };
                if tx.version(&v.id)?.is_some() {
                    continue;
                }
                tx.insert_version(&v)?;
                tx.move_channel(dir, &v.id)?;
                tx.image_event(
                    dir,
                    None,
                    "registered",
                    &json!({"version": v.id, "dir": dir, "why": "a base/ directory the registry did not know (an earlier release's image)"}),
                )?;
                made.push(dir.clone());
            }
            Ok(made)
        })?;
        for c in &made {
            log::info!("base image {c} registered as channel {c} with version {c}@1");
        }
        Ok(made)
    }

    /// Imports `archive` as a new version of `channel`. A new channel points at it; an
    /// existing one only with `promote` (else it is rolled out, `image rollout`).
    pub fn import_version(
        &self,
        archive: &Path,
        channel: &str,
        options: &ImportOptions,
        promote: bool,
        progress: &mut dyn FnMut(ImportProgress),
    ) -> Result<Imported, ServiceError> {
        let ImageRef::Channel(channel) = ImageRef::parse(channel).map_err(ServiceError::Invalid)?
        else {
            return Err(ServiceError::Invalid(format!(
                "{channel}: import into a channel name; the version id is given by the import"
            )));
        };
        self.tree.ensure_directories()?;
        self.register_existing_images()?;
        let on_disk: BTreeSet<String> = self.base_images()?.into_iter().collect();
        let (mut version, created) = self.store.write(|tx| -> Result<(Version, bool), ServiceError> {
            if let Some(v) = tx.version_by_dir(&channel)? {
                if v.channel != channel {
                    return Err(ServiceError::Conflict(format!(
                        "{channel} is the directory of version {} of channel {}; choose another channel name",
                        v.id, v.channel
                    )));
                }
            }
            let existing = tx.versions(Some(&channel))?;
            // An import that died (killed, crashed) left its row and no directory: the next
            // import of the channel takes its place.
            if let Some(v) = existing.last() {
                if !v.complete && !on_disk.contains(&v.dir) {
                    return Ok((v.clone(), false));
                }
            }
            let seq = existing.iter().map(|v| v.seq).max().unwrap_or(0) + 1;
            let mut taken = BTreeSet::new();
            for v in tx.versions(None)? {
                taken.insert(v.dir);
            }
            let dir = version_dir(&channel, seq, &|d| taken.contains(d) || on_disk.contains(d));
            let v = Version {
                id: version_id(&channel, seq),
                channel: channel.clone(),
                seq,
                dir,
                digest: None,
                size: None,
                imported_at: String::new(),
                complete: false,
                bad: None,
            };
            tx.insert_version(&v)?;
            Ok((v, true))
        })?;
        let mut options = *options;
        if options.max_bytes == 0 {
            options.max_bytes = self.config.nfs.import_max_size_mb.saturating_mul(1 << 20);
        }
        let imported =
            self.tree
                .import_base_image_digest(archive, &version.dir, &options, progress);
        let (summary, digest) = match imported {
            Ok(done) => done,
            Err(e) => {
                // Not a row another import (of the same directory, still running) owns.
                if created {
                    let id = version.id.clone();
                    let _ = self.store.write(|tx| tx.delete_version(&id));
                }
                return Err(e.into());
            }
        };
        let moved = self.store.write(|tx| -> Result<bool, StoreError> {
            tx.complete_version(&version.id, &digest, summary.bytes)?;
            let fresh = tx.channel(&channel)?.is_none();
            if fresh || promote {
                tx.move_channel(&channel, &version.id)?;
            }
            tx.image_event(
                &channel,
                None,
                "imported",
                &json!({"version": version.id, "dir": version.dir, "digest": digest,
                        "size": summary.bytes, "channel_moved": fresh || promote}),
            )?;
            Ok(fresh || promote)
        })?;
        version.complete = true;
        version.digest = Some(digest);
        version.size = Some(summary.bytes);
        log::info!(
            "imported {} as version {} ({}) of channel {channel}{}",
            archive.display(),
            version.id,
            version.dir,
            if moved {
                ", which now points at it"
            } else {
                ""
            }
        );
        // Nodes (and the discovery folder) may boot it now.
        if moved {
            self.tftp_sync_logged();
        }
        Ok(Imported {
            summary,
            version,
            channel_moved: moved,
        })
    }

    /// Every node's reference, assigned version and running version.
    pub fn node_versions(&self) -> Result<Vec<NodeVersion>, ServiceError> {
        let nodes = self.list_nodes(&NodeFilter::default())?;
        let refs: Vec<(String, String, String)> = nodes
            .iter()
            .map(|n| (n.id.clone(), n.serial.to_string(), self.image_reference(n)))
            .collect();
        Ok(self.store.read(|tx| -> Result<_, StoreError> {
            let running: BTreeMap<String, Option<String>> = tx
                .running_versions()?
                .into_iter()
                .map(|(id, _, v)| (id, v))
                .collect();
            refs.into_iter()
                .map(|(id, serial, reference)| {
                    Ok(NodeVersion {
                        assigned: resolve_image(tx, Some(&id), &reference)?,
                        running: running.get(&id).cloned().flatten(),
                        serial,
                        reference,
                    })
                })
                .collect()
        })?)
    }

    /// `image list` / `image show`: channels (one with `Some`) with their versions.
    pub fn image_channels(&self, only: Option<&str>) -> Result<Vec<ChannelInfo>, ServiceError> {
        let users = self.node_versions()?;
        let list = self
            .store
            .read(|tx| -> Result<Vec<ChannelInfo>, StoreError> {
                let mut out = Vec::new();
                for channel in tx.channels()? {
                    if only.is_some_and(|o| o != channel.name) {
                        continue;
                    }
                    let versions = tx
                        .versions(Some(&channel.name))?
                        .into_iter()
                        .map(|v| VersionInfo {
                            current: v.id == channel.version,
                            previous: channel.previous.as_deref() == Some(v.id.as_str()),
                            assigned: users
                                .iter()
                                .filter(|u| u.assigned.version.as_deref() == Some(v.id.as_str()))
                                .map(|u| u.serial.clone())
                                .collect(),
                            running: users
                                .iter()
                                .filter(|u| u.running.as_deref() == Some(v.id.as_str()))
                                .map(|u| u.serial.clone())
                                .collect(),
                            version: v,
                        })
                        .collect();
                    out.push(ChannelInfo {
                        rollout: tx.last_rollout(&channel.name)?,
                        channel,
                        versions,
                    });
                }
                Ok(out)
            })?;
        if let Some(name) = only {
            if list.is_empty() {
                return Err(ServiceError::NotFound(format!("no image channel {name}")));
            }
        }
        Ok(list)
    }

    /// `image rm <version | channel>`: a version, or a channel with all its versions. Refused,
    /// naming the nodes, while a node is assigned or runs one of them; a channel's current
    /// version goes only with the channel; the default's channel stays.
    pub fn remove_image(&self, reference: &str) -> Result<bool, ServiceError> {
        self.register_existing_images()?;
        let parsed = ImageRef::parse(reference).map_err(ServiceError::Invalid)?;
        let (targets, channel_goes) = self.store.read(|tx| -> Result<_, ServiceError> {
            Ok(match &parsed {
                ImageRef::Version { channel, seq } => {
                    let Some(v) = tx.version(&version_id(channel, *seq))? else {
                        return Ok((Vec::new(), None));
                    };
                    let c = tx.channel(channel)?;
                    let only = tx.versions(Some(channel))?.len() == 1;
                    if c.as_ref().is_some_and(|c| c.version == v.id) && !only {
                        return Err(ServiceError::Conflict(format!(
                            "version {} is what channel {channel} points at; move the channel first (image rollout / image rollback)",
                            v.id
                        )));
                    }
                    (vec![v], only.then(|| channel.clone()))
                }
                ImageRef::Channel(c) => (tx.versions(Some(c))?, Some(c.clone())),
            })
        })?;
        if targets.is_empty() {
            return Ok(false);
        }
        let ids: BTreeSet<&str> = targets.iter().map(|v| v.id.as_str()).collect();
        let users: Vec<String> = self
            .node_versions()?
            .into_iter()
            .filter(|n| {
                n.assigned
                    .version
                    .as_deref()
                    .is_some_and(|v| ids.contains(v))
                    || n.running.as_deref().is_some_and(|v| ids.contains(v))
                    || channel_goes.as_deref().is_some_and(|c| {
                        ImageRef::parse(&n.reference).is_ok_and(|r| r.channel() == c)
                    })
            })
            .map(|n| n.serial)
            .collect();
        let default = &self.config.nfs.default_base_image;
        let default_hit = self.store.read(|tx| resolve_image(tx, None, default))?;
        if channel_goes.as_deref() == Some(default.as_str())
            || default_hit
                .version
                .as_deref()
                .is_some_and(|v| ids.contains(v))
        {
            return Err(ServiceError::Conflict(format!(
                "base image {reference} is [nfs] default_base_image ({default}), which every node without an image of its own boots{}; name another default first",
                if users.is_empty() { String::new() } else { format!(" (now: {})", shown(&users)) }
            )));
        }
        if !users.is_empty() {
            return Err(ServiceError::Conflict(format!(
                "base image {reference} is assigned to or running on node(s) {}; move them first",
                shown(&users)
            )));
        }
        for v in &targets {
            self.drop_version(v, "removed", json!({}))?;
        }
        if let Some(c) = &channel_goes {
            self.store.write(|tx| tx.delete_channel(c))?;
        }
        // The boards the images boot may be fewer now.
        self.tftp_discovery();
        Ok(true)
    }

    /// Removes a version's directory (and its copies on the pool's servers), then its row,
    /// with a `kind` event (plus `detail`).
    fn drop_version(
        &self,
        v: &Version,
        kind: &str,
        mut detail: serde_json::Value,
    ) -> Result<(), ServiceError> {
        self.remove_server_copies(&v.dir)?;
        self.tree.remove_base_image(&v.dir)?;
        self.tree.set_image_stamp(&v.dir, None)?;
        detail["version"] = json!(v.id);
        detail["dir"] = json!(v.dir);
        Ok(self.store.write(|tx| -> Result<(), StoreError> {
            tx.delete_version(&v.id)?;
            tx.image_event(&v.channel, None, kind, &detail)
        })?)
    }

    /// `image prune --keep N`: per channel, removes the versions older than its newest `keep`
    /// that nothing uses: not the channel's current or previous one (rollback), not one a
    /// node is assigned, runs or is pinned to, not a running rollout's, not an import in
    /// progress. Returns the versions removed.
    pub fn prune_images(&self, keep: usize) -> Result<Vec<String>, ServiceError> {
        self.register_existing_images()?;
        let nodes = self.node_versions()?;
        let mut used: BTreeSet<String> = BTreeSet::new();
        for n in nodes {
            used.extend(n.assigned.version);
            used.extend(n.running);
        }
        let candidates = self.store.read(|tx| -> Result<Vec<Version>, StoreError> {
            for c in tx.channels()? {
                used.insert(c.version);
                used.extend(c.previous);
            }
            for r in tx.running_rollouts()? {
                used.insert(r.version);
                used.insert(r.from_version);
            }
            let default = resolve_image(tx, None, &self.config.nfs.default_base_image)?;
            used.extend(default.version);
            let mut by_channel: BTreeMap<String, Vec<Version>> = BTreeMap::new();
            for v in tx.versions(None)? {
                by_channel.entry(v.channel.clone()).or_default().push(v);
            }
            Ok(by_channel
                .into_values()
                .flat_map(|mut vs| {
                    vs.sort_by_key(|v| std::cmp::Reverse(v.seq));
                    vs.into_iter().skip(keep)
                })
                .filter(|v| v.complete && !used.contains(&v.id))
                .collect())
        })?;
        let mut removed = Vec::new();
        for v in candidates {
            self.drop_version(&v, "pruned", json!({"keep": keep}))?;
            removed.push(v.id);
        }
        if !removed.is_empty() {
            self.tftp_discovery();
        }
        Ok(removed)
    }
}

impl Services {
    /// Before a boot's tree is prepared for `version`: with
    /// `[nfs] reset_layer_on_version_change`, a node on the `image` overlay whose layer was
    /// prepared for another version gets a fresh persist image (the old one set aside, never
    /// deleted); by default the layer is kept. The version the layer now serves is recorded,
    /// so a boot prepared again (its commit raced a change) does not reset it twice.
    pub(crate) fn layer_follows_version(
        &self,
        node: &Node,
        plan: &crate::domain::boot::NodeTreePlan,
        version: Option<&str>,
    ) {
        let Some(version) = version else {
            return;
        };
        let before = match self.store.read(|tx| tx.layer_version(&node.id)) {
            Ok(v) => v,
            Err(e) => return log::warn!("node {}: reading its layer's version: {e}", node.serial),
        };
        if before.as_deref() == Some(version) {
            return;
        }
        let reset = self.config.nfs.reset_layer_on_version_change
            && plan.overlay == pureboot_contract::OverlayMode::Image
            && before.is_some();
        if reset {
            match self.reset_persist_image(&node.serial) {
                Ok(moved) => log::warn!(
                    "node {}: image version {} -> {version}: persist image reset \
                     (reset_layer_on_version_change){}",
                    node.serial,
                    before.as_deref().unwrap_or("-"),
                    moved
                        .map(|p| format!("; the old one is {}", p.display()))
                        .unwrap_or_default()
                ),
                // Not recorded: the next boot tries again.
                Err(e) => {
                    return log::error!("node {}: resetting its layer: {e}", node.serial);
                }
            }
        }
        if let Err(e) = self
            .store
            .write(|tx| tx.set_layer_version(&node.id, version))
        {
            log::warn!("node {}: recording its layer's version: {e}", node.serial);
        }
    }
}

/// Gives a boot's decision the one version it answers: the plan's reference becomes the
/// version's directory, in the plan (what the node tree is prepared for and what the
/// commit compares) and in the answer. Returns the version (none: an unregistered name).
///
/// `kernel`: the release the Pi booted (its boot request's `kernel`) and the export's
/// `base/`. The Pi fetched that kernel from its TFTP folder before it asked, and the folder
/// follows a channel's move only after the move's transaction: a Pi that fetched the old
/// version's kernel and asks after the move would get a root without its modules. So when
/// the version resolved holds `lib/modules` but not that release's, and the version the
/// node runs holds it (and is not marked bad), the answer is the running version: its next
/// boot, from the rewritten folder, gets the new one.
pub(crate) fn pin_decision(
    tx: &Tx<'_>,
    node_id: &str,
    decision: &mut crate::domain::boot::Decision,
    kernel: Option<BootKernel<'_>>,
) -> Result<Option<String>, StoreError> {
    let Some(plan) = decision.tree.as_mut() else {
        return Ok(None);
    };
    let mut r = resolve_image(tx, Some(node_id), &plan.base_image)?;
    if let Some(mut k) = kernel {
        if let Some(booted) = kernel_s_version(tx, node_id, &r, &mut k)? {
            let release = k.release;
            log::info!(
                "node {node_id}: booted kernel {release}, which {} lacks: answered {}, its \
                 folder's version (the next boot gets the new one)",
                r.version.as_deref().unwrap_or(&r.dir),
                booted.dir
            );
            r = booted;
        }
    }
    plan.base_image = r.dir.clone();
    if decision.response.base_image.is_some() {
        decision.response.base_image = Some(r.dir);
    }
    Ok(r.version)
}

/// The kernel a boot names, for [`pin_decision`]: its release, the export's `base/`, and what
/// has been found of that release's modules in version directories so far. A boot's
/// prepare step looks first, outside any lock, and hands what it found to the commit,
/// which runs on the registry's writer thread: there only a directory the prepare did not
/// look at (the channel moved in between) costs a look at the disk.
pub(crate) struct BootKernel<'a> {
    pub release: &'a str,
    pub base: &'a Path,
    pub seen: &'a mut ModulesSeen,
}

/// Directory -> whether it holds the release's modules (see [`BootKernel::has_modules`]).
#[derive(Debug, Default, Clone)]
pub(crate) struct ModulesSeen(Vec<(String, Option<bool>)>);

impl BootKernel<'_> {
    /// Whether `dir` under `base` holds the modules of the release: none when it holds no
    /// `lib/modules` at all (a root made without modules: no answer is wrong for it) or is
    /// not a tree (a squashfs image: not looked into here).
    fn has_modules(&mut self, dir: &str) -> Option<bool> {
        if let Some((_, found)) = self.seen.0.iter().find(|(d, _)| d == dir) {
            return *found;
        }
        let modules = self.base.join(dir).join("lib/modules");
        let found = modules
            .is_dir()
            .then(|| modules.join(self.release).is_dir());
        self.seen.0.push((dir.to_string(), found));
        found
    }
}

/// The node's running version when the resolved one lacks the booted kernel's modules and
/// that one has them (see [`pin_decision`]).
fn kernel_s_version(
    tx: &Tx<'_>,
    node_id: &str,
    resolved: &Resolved,
    kernel: &mut BootKernel<'_>,
) -> Result<Option<Resolved>, StoreError> {
    if kernel.has_modules(&resolved.dir) != Some(false) {
        return Ok(None);
    }
    let Some(running) = tx.running_version_of(node_id)? else {
        return Ok(None);
    };
    if Some(&running) == resolved.version.as_ref() {
        return Ok(None);
    }
    Ok(match tx.version(&running)? {
        Some(v) if v.complete && v.bad.is_none() && kernel.has_modules(&v.dir) == Some(true) => {
            Some(Resolved {
                version: Some(v.id),
                dir: v.dir,
            })
        }
        _ => None,
    })
}

impl Services {
    /// The registry's version figures for `/metrics`: nodes per running and per assigned
    /// version, rollouts by outcome (`running` for those under way), bad versions.
    pub fn version_metrics(&self) -> Result<String, ServiceError> {
        use std::fmt::Write;
        let nodes = self.node_versions()?;
        let (outcomes, running, bad) = self.store.read(|tx| -> Result<_, StoreError> {
            let bad = tx
                .versions(None)?
                .iter()
                .filter(|v| v.bad.is_some())
                .count();
            Ok((tx.rollout_outcomes()?, tx.running_rollouts()?.len(), bad))
        })?;
        let mut per_running: BTreeMap<&str, u64> = BTreeMap::new();
        let mut per_assigned: BTreeMap<&str, u64> = BTreeMap::new();
        for n in &nodes {
            *per_running
                .entry(n.running.as_deref().unwrap_or("none"))
                .or_default() += 1;
            let assigned = n.assigned.version.as_deref().unwrap_or("unregistered");
            *per_assigned.entry(assigned).or_default() += 1;
        }
        let mut out = String::new();
        let _ = writeln!(out, "# HELP pureboot_nodes_running_version Nodes by the image version they last reported booting.");
        let _ = writeln!(out, "# TYPE pureboot_nodes_running_version gauge");
        for (v, n) in &per_running {
            let _ = writeln!(out, "pureboot_nodes_running_version{{version=\"{v}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP pureboot_nodes_assigned_version Nodes by the image version their next boot gets.");
        let _ = writeln!(out, "# TYPE pureboot_nodes_assigned_version gauge");
        for (v, n) in &per_assigned {
            let _ = writeln!(
                out,
                "pureboot_nodes_assigned_version{{version=\"{v}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP pureboot_rollouts_total Image rollouts by outcome (running: under way)."
        );
        let _ = writeln!(out, "# TYPE pureboot_rollouts_total gauge");
        let _ = writeln!(
            out,
            "pureboot_rollouts_total{{outcome=\"running\"}} {running}"
        );
        for key in ["succeeded", "failed", "cancelled"] {
            let n = outcomes
                .iter()
                .find(|(o, _)| o == key)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "pureboot_rollouts_total{{outcome=\"{key}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP pureboot_image_versions_bad Image versions a failed rollout marked bad."
        );
        let _ = writeln!(out, "# TYPE pureboot_image_versions_bad gauge");
        let _ = writeln!(out, "pureboot_image_versions_bad {bad}");
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commit (on the registry's writer thread) answers from what the prepare found,
    /// with no look at the disk for a directory the prepare already looked at.
    #[test]
    fn a_directory_looked_at_once_is_not_looked_at_again() {
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(base.path().join("deb/lib/modules/6.1.0-pi")).unwrap();
        std::fs::create_dir_all(base.path().join("tiny")).unwrap();
        let mut seen = ModulesSeen::default();
        let mut prepare = BootKernel {
            release: "6.1.0-pi",
            base: base.path(),
            seen: &mut seen,
        };
        assert_eq!(prepare.has_modules("deb"), Some(true));
        assert_eq!(prepare.has_modules("deb.v2"), None, "no tree");
        assert_eq!(prepare.has_modules("tiny"), None, "no lib/modules");

        // Gone from the disk after the prepare: the commit keeps the prepare's answer,
        // and looks only at what the prepare did not.
        std::fs::remove_dir_all(base.path().join("deb")).unwrap();
        std::fs::create_dir_all(base.path().join("deb.v3/lib/modules")).unwrap();
        let mut seen = seen.clone();
        let mut commit = BootKernel {
            release: "6.1.0-pi",
            base: base.path(),
            seen: &mut seen,
        };
        assert_eq!(commit.has_modules("deb"), Some(true));
        assert_eq!(commit.has_modules("deb.v3"), Some(false));
    }
}
