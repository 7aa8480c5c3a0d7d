//! The image commands: versions and channels, removal and pruning, rollouts.

use anyhow::{bail, Result};

use super::commands::Output;
use super::{print_json, table, ImageCmd, RolloutCmd, RolloutSub};
use crate::domain::rollout::Health;
use crate::nfs_tree::import::progress::TerminalProgress;
use crate::nfs_tree::import::ImportOptions;
use crate::nfs_tree::squashfs_check::Verdict;
use crate::service::rollout::RolloutRequest;
use crate::service::Services;

fn size(v: Option<u64>) -> String {
    v.map_or("-".into(), |b| format!("{:.1} MB", b as f64 / 1e6))
}

impl Output {
    pub fn image(&self, s: &Services, cmd: ImageCmd) -> Result<()> {
        match cmd {
            ImageCmd::Import {
                archive,
                name,
                promote,
                keep_devices,
                keep_setuid,
                max_size,
                format,
            } => {
                let options = ImportOptions {
                    max_bytes: max_size.unwrap_or(0),
                    keep_devices,
                    keep_setid: keep_setuid,
                    format,
                };
                let mut progress = TerminalProgress::for_output(self.json);
                let imported = s.import_version(&archive, &name, &options, promote, &mut |p| {
                    progress.update(p)
                })?;
                progress.finish();
                let summary = &imported.summary;
                if !self.json && summary.devices_skipped > 0 {
                    eprintln!(
                        "import: left out {} device node(s) (--keep-devices creates them)",
                        summary.devices_skipped
                    );
                }
                if !self.json && summary.setid_cleared > 0 {
                    eprintln!(
                        "import: cleared set-uid/set-gid on {} file(s) (--keep-setuid keeps them)",
                        summary.setid_cleared
                    );
                }
                let packed = summary.squashfs.as_ref().map_or(String::new(), |p| {
                    let mb = p.bytes as f64 / 1e6;
                    format!(
                        "; squashfs ({}) {mb:.1} MB, sha256 {}",
                        p.compressor, p.sha256
                    )
                });
                let v = &imported.version;
                let next = if imported.channel_moved {
                    format!("channel {name} points at it")
                } else {
                    format!(
                        "channel {name} still points at its current version; roll it out with \
                         `image rollout {name} {} --canary 1` (or import with --promote)",
                        v.id
                    )
                };
                self.done(
                    &imported,
                    &format!(
                        "imported {} as version {} ({}, {}): {} entries, {:.1} MB in {:.1} s ({:.1} MB/s){packed}; {next}",
                        archive.display(),
                        v.id,
                        summary.path.display(),
                        v.digest.as_deref().unwrap_or("-"),
                        summary.entries,
                        summary.bytes as f64 / 1e6,
                        summary.seconds,
                        summary.mb_per_second()
                    ),
                )
            }
            ImageCmd::List | ImageCmd::Show { .. } => {
                let only = match &cmd {
                    ImageCmd::Show { channel } => Some(channel.as_str()),
                    _ => None,
                };
                let list = s.image_channels(only)?;
                let default = &s.config.nfs.default_base_image;
                if self.json {
                    // `images`: the directories under base/, as before versions.
                    let images = s.base_images()?;
                    return print_json(
                        &serde_json::json!({"channels": list, "images": images, "default": default}),
                    );
                }
                let mut rows = Vec::new();
                for c in &list {
                    for v in &c.versions {
                        let mut marks = Vec::new();
                        if v.current {
                            marks.push("current".to_string());
                        }
                        if v.previous {
                            marks.push("previous".into());
                        }
                        if c.channel.name == *default && v.current {
                            marks.push("default".into());
                        }
                        if !v.version.complete {
                            marks.push("importing".into());
                        }
                        if let Some(why) = &v.version.bad {
                            marks.push(format!("BAD: {why}"));
                        }
                        rows.push(vec![
                            c.channel.name.clone(),
                            v.version.id.clone(),
                            v.version.dir.clone(),
                            v.version
                                .digest
                                .as_deref()
                                .map_or("-".into(), |d| d.chars().take(19).collect()),
                            size(v.version.size),
                            table::opt(&Some(v.version.imported_at.clone())),
                            v.assigned.len().to_string(),
                            v.running.len().to_string(),
                            marks.join(", "),
                        ]);
                    }
                }
                print!(
                    "{}",
                    table::render(
                        &[
                            "CHANNEL",
                            "VERSION",
                            "DIRECTORY",
                            "DIGEST",
                            "SIZE",
                            "IMPORTED",
                            "ASSIGNED",
                            "RUNNING",
                            ""
                        ],
                        &rows
                    )
                );
                if only.is_some() {
                    for c in &list {
                        for v in &c.versions {
                            if !v.assigned.is_empty() || !v.running.is_empty() {
                                println!(
                                    "{}: assigned to {}; running on {}",
                                    v.version.id,
                                    if v.assigned.is_empty() {
                                        "-".into()
                                    } else {
                                        v.assigned.join(" ")
                                    },
                                    if v.running.is_empty() {
                                        "-".into()
                                    } else {
                                        v.running.join(" ")
                                    }
                                );
                            }
                        }
                        if let Some(r) = &c.rollout {
                            println!(
                                "last rollout {}: {} -> {}, {} ({})",
                                r.id,
                                r.from_version,
                                r.version,
                                r.outcome.as_deref().unwrap_or("running"),
                                r.reason.as_deref().unwrap_or("-")
                            );
                        }
                    }
                }
                Ok(())
            }
            ImageCmd::Rm { name } => {
                if !s.remove_image(&name)? {
                    bail!("no base image {name}");
                }
                self.done(
                    &serde_json::json!({"removed": name}),
                    &format!("removed base image {name}"),
                )
            }
            ImageCmd::Prune { keep } => {
                let removed = s.prune_images(keep)?;
                self.done(
                    &serde_json::json!({"removed": removed}),
                    &if removed.is_empty() {
                        "nothing to prune".to_string()
                    } else {
                        format!("removed {}", removed.join(", "))
                    },
                )
            }
            ImageCmd::Verify { dirs } => {
                let found = s.verify_images(&dirs)?;
                if self.json {
                    print_json(&found)?;
                } else {
                    for (dir, verdict) in &found {
                        match verdict {
                            Verdict::Tree => {
                                println!("{dir}: a directory tree (no digest to check)")
                            }
                            Verdict::Intact => println!("{dir}: squashfs intact"),
                            Verdict::Damaged(why) => println!("{dir}: DAMAGED: {why}"),
                        }
                    }
                }
                let damaged = found
                    .iter()
                    .filter(|(_, v)| matches!(v, Verdict::Damaged(_)));
                match damaged.count() {
                    0 => Ok(()),
                    n => bail!("{n} base image(s) damaged"),
                }
            }
            ImageCmd::Status => self.image_status(s),
            ImageCmd::Sync => self.image_sync(s),
            ImageCmd::Rollout(r) => self.rollout(s, r),
            ImageCmd::Rollback { channel } => {
                let (from, to) = s.rollback(&channel)?;
                self.done(
                    &serde_json::json!({"channel": channel, "from": from, "to": to}),
                    &format!(
                        "channel {channel} moved back from {from} to {to}; its nodes boot {to} at their next boot"
                    ),
                )
            }
        }
    }

    fn rollout(&self, s: &Services, cmd: RolloutCmd) -> Result<()> {
        if let Some(RolloutSub::Status { channel }) = cmd.sub {
            let st = s.rollout_status(&channel)?;
            if self.json {
                return print_json(&st);
            }
            let r = &st.rollout;
            println!(
                "rollout {} of {}: {} -> {}, {}{}",
                r.id,
                r.channel,
                r.from_version,
                r.version,
                r.outcome.as_deref().unwrap_or("running"),
                r.reason
                    .as_deref()
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default()
            );
            let rows: Vec<Vec<String>> = st
                .canaries
                .iter()
                .map(|c| {
                    vec![
                        c.serial.clone(),
                        c.state.to_string(),
                        c.why.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print!("{}", table::render(&["CANARY", "STATE", "WHY"], &rows));
            for e in &st.events {
                println!("{}  {}  {}", e.at, e.kind, e.detail);
            }
            return Ok(());
        }
        let (Some(channel), Some(version)) = (cmd.channel, cmd.version) else {
            bail!("image rollout <channel> <version>");
        };
        let health = Health::parse(&cmd.health).map_err(anyhow::Error::msg)?;
        let r = s.start_rollout(&RolloutRequest {
            channel,
            version,
            canary: cmd.canary,
            wait_secs: cmd.wait,
            min_healthy: cmd.min_healthy,
            health,
            force: cmd.force,
        })?;
        self.done(
            &r,
            &format!(
                "rollout {} of {} to {} started: canaries {} are assigned {} (the others stay on {}); \
                 reboot them{} — the running controller moves the channel once {} of them are healthy \
                 within {} s, or sends them back and marks {} bad (image rollout status {})",
                r.id,
                r.channel,
                r.version,
                r.canaries.join(" "),
                r.version,
                r.from_version,
                if s.config.rollout_hook.is_some() { " (rollout_hook was run)" } else { "" },
                r.min_healthy,
                r.wait_secs,
                r.version,
                r.channel
            ),
        )
    }
}
