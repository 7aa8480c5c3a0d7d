//! Rollouts: a version goes to a few canary nodes first (pinned to it, the rest of the
//! channel unchanged); once enough of them boot it healthy the channel moves for everyone;
//! a failed canary (pi-init's failure report, an unhealthy boot complete, a failed
//! post-boot step, or no health in time) stops it: the pins go (the canaries' next boot is
//! on the channel's version again), the version is marked bad and the reason is in the
//! channel's event stream, the log, the metrics and the status page.
//!
//! The decision is `domain::rollout::next`; the daemon's tick ([`Services::rollout_tick`],
//! every second) gathers its inputs from the registry and carries it out, so a rollout
//! started by the CLI is driven by the daemon and survives restarts (its state is rows).
//! Rebooting nodes is the operator's job, or `rollout_hook`'s.

use serde::Serialize;
use serde_json::json;

use super::versions::shown;
use super::{ServiceError, Services};
use crate::domain::rollout::{next, Canary, Health, Next, Spec};
use crate::domain::versions::ImageRef;
use crate::store::nodes::NodeFilter;
use crate::store::versions::{CanaryBoot, ImageEvent, Rollout};
use crate::store::{StoreError, Tx};

/// What `image rollout` asks.
#[derive(Debug, Clone)]
pub struct RolloutRequest {
    pub channel: String,
    pub version: String,
    /// A number of the channel's nodes, or serials (comma-separated).
    pub canary: String,
    pub wait_secs: u64,
    pub min_healthy: Option<u32>,
    pub health: Health,
    pub force: bool,
}

/// A rollout with its canaries' state now.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutStatus {
    #[serde(flatten)]
    pub rollout: Rollout,
    /// `(serial, waiting | booting | healthy | failed, why)`.
    pub canaries: Vec<CanaryState>,
    pub events: Vec<ImageEvent>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CanaryState {
    pub serial: String,
    pub state: &'static str,
    pub why: Option<String>,
}

fn canary_of(boot: Option<CanaryBoot>) -> Canary {
    let Some(b) = boot else {
        return Canary::NotBooted;
    };
    if let Some(f) = b.failed {
        return Canary::Failed(f);
    }
    if let Some(step) = b.failed_step {
        return Canary::Failed(format!("post-boot step {step} failed"));
    }
    if b.complete {
        return match b.healthy {
            Some(false) => Canary::Failed("boot complete reported unhealthy".into()),
            _ => Canary::Complete,
        };
    }
    if b.installed {
        Canary::Installed
    } else {
        Canary::Booting
    }
}

/// The canaries' state for rollout `r`, read in `tx`.
fn canaries(tx: &Tx<'_>, r: &Rollout) -> Result<Vec<(String, Canary)>, StoreError> {
    let mut out = Vec::new();
    for serial in &r.canaries {
        let node = tx.find_node(&crate::domain::ids::NodeRef::Serial(
            pureboot_contract::ids::Serial::parse(serial).map_err(|_| StoreError::Corrupt {
                what: "canary serial",
                value: serial.clone(),
            })?,
        ))?;
        let c = match node {
            Some(n) => canary_of(tx.canary_boot(&n.id, &r.version, r.started_unix)?),
            None => Canary::Failed("the node was removed".into()),
        };
        out.push((serial.clone(), c));
    }
    Ok(out)
}

/// A canary's state as the rollout's last `canary` event for it says (`waiting`: none).
fn recorded_state(events: &[ImageEvent], serial: &str) -> CanaryState {
    let last = events
        .iter()
        .rev()
        .find(|e| e.kind == "canary" && e.detail["serial"] == serial);
    let state = match last.and_then(|e| e.detail["state"].as_str()) {
        Some("failed") => "failed",
        Some("healthy") => "healthy",
        Some("booting") => "booting",
        _ => "waiting",
    };
    CanaryState {
        serial: serial.to_string(),
        state,
        why: last.and_then(|e| e.detail["why"].as_str().map(String::from)),
    }
}

fn spec_of(r: &Rollout) -> Spec {
    Spec {
        wait_secs: r.wait_secs,
        min_healthy: r.min_healthy as usize,
        health: Health::parse(&r.health).unwrap_or(Health::Complete),
        started_at: r.started_unix,
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Ends rollout `r` as failed in `tx`: the canaries' pins go (their next boot is on the
/// channel's version, which never moved), the version is marked bad, and why is in the
/// stream. False if it had already ended.
fn abort_in(tx: &Tx<'_>, r: &Rollout, why: &str) -> Result<bool, StoreError> {
    if !tx.end_rollout(r.id, "failed", why)? {
        return Ok(false);
    }
    tx.unpin_rollout(r.id)?;
    tx.set_version_bad(&r.version, Some(why))?;
    tx.image_event(
        &r.channel,
        Some(r.id),
        "rollout_failed",
        &json!({"version": r.version, "back_to": r.from_version, "why": why,
                "canaries": r.canaries}),
    )?;
    Ok(true)
}

/// Records a canary's state as an event when it changed since the last one recorded (in the
/// registry, not in memory: several controllers, or one restarted, record a change once).
fn note_canary(tx: &Tx<'_>, r: &Rollout, serial: &str, c: &Canary) -> Result<(), StoreError> {
    let label = c.label(spec_of(r).health);
    if tx.last_canary_state(&r.channel, r.id, serial)?.as_deref() == Some(label) {
        return Ok(());
    }
    tx.image_event(
        &r.channel,
        Some(r.id),
        "canary",
        &json!({"serial": serial, "state": label,
                "why": match c { Canary::Failed(w) => Some(w), _ => None }}),
    )
}

/// A failure report of `boot_id`, in its own transaction: when the node is a canary of a
/// running rollout and the failed boot was on the rollout's version, the rollout stops here
/// (not at the next tick): a canary that reboots at once gets the old version, never the
/// failed one again. Returns the rollout stopped and why, for [`Services::after_abort`].
pub(crate) fn canary_failed(
    tx: &Tx<'_>,
    node_id: &str,
    serial: &str,
    boot_id: &str,
    what: &str,
) -> Result<Option<(Rollout, String)>, StoreError> {
    let Some((_, version, rollout)) = tx.pin_of(node_id)? else {
        return Ok(None);
    };
    if tx.boot_version(boot_id)?.as_deref() != Some(version.as_str()) {
        return Ok(None);
    }
    let Some(r) = tx.running_rollouts()?.into_iter().find(|r| r.id == rollout) else {
        return Ok(None);
    };
    note_canary(tx, &r, serial, &Canary::Failed(what.to_string()))?;
    let why = format!("canary {serial} failed: {what}");
    Ok(abort_in(tx, &r, &why)?.then_some((r, why)))
}

impl Services {
    /// After a rollout stopped: the log line, the canaries' TFTP folders, the hook.
    pub(crate) fn after_abort(&self, r: &Rollout, why: &str) {
        log::warn!(
            "rollout {} of channel {} to {} failed: {why}; canaries {} go back to {}, {} marked bad",
            r.id,
            r.channel,
            r.version,
            shown(&r.canaries),
            r.from_version,
            r.version
        );
        self.follow_serials(&r.canaries);
        self.run_hook("aborted", &r.channel, &r.from_version, &r.canaries);
    }

    /// Serials of the nodes that follow `channel` (their reference is the channel's name),
    /// sorted.
    fn channel_followers(&self, channel: &str) -> Result<Vec<(String, String)>, ServiceError> {
        self.followers_in(channel, None)
    }

    /// [`Self::channel_followers`] in `group` (its members and its subgroups' members), or
    /// all of them.
    fn followers_in(
        &self,
        channel: &str,
        group: Option<&str>,
    ) -> Result<Vec<(String, String)>, ServiceError> {
        let mut out: Vec<(String, String)> = self
            .list_nodes(&NodeFilter::default())?
            .iter()
            .filter(|n| group.is_none_or(|g| n.groups.iter().any(|c| c.name == g)))
            .filter(|n| {
                ImageRef::parse(&self.image_reference(n))
                    .is_ok_and(|r| r == ImageRef::Channel(channel.to_string()))
            })
            .map(|n| (n.serial.to_string(), n.id.clone()))
            .collect();
        out.sort();
        Ok(out)
    }

    /// `image rollout`: pins the canaries to the version and records the rollout; the
    /// tick does the rest. Refused: a rollout of the channel running, a version of another
    /// channel or the one it points at, a bad version without `force`, canaries that do not
    /// follow the channel.
    pub fn start_rollout(&self, req: &RolloutRequest) -> Result<Rollout, ServiceError> {
        let followers = self.channel_followers(&req.channel)?;
        let picked: Vec<(String, String)> = match req.canary.parse::<usize>() {
            Ok(0) => {
                return Err(ServiceError::Invalid(
                    "--canary 0: at least one canary".into(),
                ))
            }
            Ok(n) => followers.iter().take(n).cloned().collect(),
            // A group: its nodes (and its subgroups') that follow the channel.
            Err(_) if self.store.read(|tx| tx.find_group(&req.canary))?.is_some() => {
                let members = self.followers_in(&req.channel, Some(&req.canary))?;
                if members.is_empty() {
                    return Err(ServiceError::Conflict(format!(
                        "no node of group {} follows channel {}: no canary",
                        req.canary, req.channel
                    )));
                }
                members
            }
            Err(_) => {
                let mut out = Vec::new();
                for s in req
                    .canary
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    match followers.iter().find(|(serial, _)| serial == s) {
                        Some(f) => out.push(f.clone()),
                        None => {
                            return Err(ServiceError::Invalid(format!(
                                "canary {s} does not follow channel {} (its base image is another, or no such node)",
                                req.channel
                            )))
                        }
                    }
                }
                out
            }
        };
        if picked.is_empty() {
            return Err(ServiceError::Conflict(format!(
                "no node follows channel {}: nothing to roll out to (move it with image import --promote, or image rollback)",
                req.channel
            )));
        }
        let min_healthy = req.min_healthy.unwrap_or(picked.len() as u32);
        if min_healthy as usize > picked.len() || min_healthy == 0 {
            return Err(ServiceError::Invalid(format!(
                "--min-healthy {min_healthy}: between 1 and the {} canaries",
                picked.len()
            )));
        }
        let rollout = self.store.write(|tx| -> Result<Rollout, ServiceError> {
            let Some(channel) = tx.channel(&req.channel)? else {
                return Err(ServiceError::NotFound(format!(
                    "no image channel {}",
                    req.channel
                )));
            };
            let Some(version) = tx.version(&req.version)?.filter(|v| v.complete) else {
                return Err(ServiceError::NotFound(format!(
                    "no image version {}",
                    req.version
                )));
            };
            if version.channel != channel.name {
                return Err(ServiceError::Invalid(format!(
                    "version {} belongs to channel {}, not {}",
                    version.id, version.channel, channel.name
                )));
            }
            if channel.version == version.id {
                return Err(ServiceError::Conflict(format!(
                    "channel {} already points at {}",
                    channel.name, version.id
                )));
            }
            if let Some(why) = version.bad.as_deref().filter(|_| !req.force) {
                return Err(ServiceError::Conflict(format!(
                    "version {} is marked bad ({why}); roll it out again with --force",
                    version.id
                )));
            }
            if let Some(r) = tx
                .running_rollouts()?
                .into_iter()
                .find(|r| r.channel == channel.name)
            {
                return Err(ServiceError::Conflict(format!(
                    "rollout {} of {} to {} is still running (image rollout status {})",
                    r.id, r.channel, r.version, r.channel
                )));
            }
            let mut r = Rollout {
                id: 0,
                channel: channel.name.clone(),
                version: version.id.clone(),
                from_version: channel.version.clone(),
                canaries: picked.iter().map(|(s, _)| s.clone()).collect(),
                wait_secs: req.wait_secs,
                min_healthy,
                health: req.health.as_str().into(),
                started_at: String::new(),
                started_unix: now_unix(),
                outcome: None,
                reason: None,
                ended_at: None,
            };
            r.id = tx.start_rollout(&r)?;
            for (_, node_id) in &picked {
                tx.pin_version(node_id, &r.channel, &r.version, r.id)?;
            }
            tx.image_event(
                &r.channel,
                Some(r.id),
                "rollout_started",
                &json!({"version": r.version, "from": r.from_version, "canaries": r.canaries,
                        "wait_secs": r.wait_secs, "min_healthy": r.min_healthy,
                        "health": r.health, "forced": req.force && version.bad.is_some()}),
            )?;
            Ok(r)
        })?;
        log::info!(
            "rollout {} of channel {} to {}: canaries {} (the others stay on {})",
            rollout.id,
            rollout.channel,
            rollout.version,
            shown(&rollout.canaries),
            rollout.from_version
        );
        self.follow_serials(&rollout.canaries);
        self.run_hook(
            "canaries",
            &rollout.channel,
            &rollout.version,
            &rollout.canaries,
        );
        Ok(rollout)
    }

    /// `image rollback <channel>`: the channel back to its previous version, in one
    /// transaction; a running rollout of it is cancelled (its canaries unpinned).
    pub fn rollback(&self, channel: &str) -> Result<(String, String), ServiceError> {
        let moved = self
            .store
            .write(|tx| -> Result<(String, String), ServiceError> {
                let Some(c) = tx.channel(channel)? else {
                    return Err(ServiceError::NotFound(format!(
                        "no image channel {channel}"
                    )));
                };
                let Some(previous) = c.previous.clone() else {
                    return Err(ServiceError::Conflict(format!(
                        "channel {channel} has no previous version (it never moved)"
                    )));
                };
                if !tx.version(&previous)?.is_some_and(|v| v.complete) {
                    return Err(ServiceError::Conflict(format!(
                        "channel {channel}'s previous version {previous} was removed"
                    )));
                }
                for r in tx
                    .running_rollouts()?
                    .into_iter()
                    .filter(|r| r.channel == channel)
                {
                    tx.end_rollout(r.id, "cancelled", "image rollback")?;
                    tx.unpin_rollout(r.id)?;
                    tx.image_event(
                        channel,
                        Some(r.id),
                        "rollout_cancelled",
                        &json!({"why": "image rollback"}),
                    )?;
                }
                tx.move_channel(channel, &previous)?;
                tx.image_event(
                    channel,
                    None,
                    "rolled_back",
                    &json!({"from": c.version, "to": previous}),
                )?;
                Ok((c.version, previous))
            })?;
        log::warn!(
            "channel {channel} rolled back from {} to {}",
            moved.0,
            moved.1
        );
        self.tftp_sync_logged();
        Ok(moved)
    }

    /// The channel's last rollout, its canaries now and the channel's events since it began.
    pub fn rollout_status(&self, channel: &str) -> Result<RolloutStatus, ServiceError> {
        self.store
            .read(|tx| -> Result<RolloutStatus, ServiceError> {
                let Some(r) = tx.last_rollout(channel)? else {
                    return Err(ServiceError::NotFound(format!(
                        "channel {channel} has had no rollout"
                    )));
                };
                let events: Vec<ImageEvent> = tx
                    .image_events(channel, 1000)?
                    .into_iter()
                    .filter(|e| {
                        e.rollout == Some(r.id) || (e.rollout.is_none() && e.at >= r.started_at)
                    })
                    .collect();
                let canaries = if r.outcome.is_some() {
                    // Ended: as the stream last recorded them (their boots since may be on
                    // the old version, and a boot replaces the one before from its address).
                    r.canaries
                        .iter()
                        .map(|serial| recorded_state(&events, serial))
                        .collect()
                } else {
                    let health = spec_of(&r).health;
                    canaries(tx, &r)?
                        .into_iter()
                        .map(|(serial, c)| CanaryState {
                            serial,
                            state: c.label(health),
                            why: match c {
                                Canary::Failed(why) => Some(why),
                                _ => None,
                            },
                        })
                        .collect()
                };
                Ok(RolloutStatus {
                    rollout: r,
                    canaries,
                    events,
                })
            })
    }

    /// Each channel's last rollout (running or ended), for the status page.
    pub fn last_rollouts(&self) -> Result<Vec<RolloutStatus>, ServiceError> {
        let channels = self.store.read(|tx| tx.channels())?;
        let mut out = Vec::new();
        for c in channels {
            match self.rollout_status(&c.name) {
                Ok(mut st) => {
                    // The page shows the canaries and the outcome; the stream is the CLI's.
                    st.events.clear();
                    out.push(st);
                }
                Err(ServiceError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// One round over the running rollouts (the daemon calls it every second): records a
    /// canary's change of state as an event, then promotes or aborts as
    /// `domain::rollout::next` says. Returns the rollouts that ended.
    pub fn rollout_tick(&self) -> Result<Vec<Rollout>, ServiceError> {
        let now = now_unix();
        let running = self.store.read(|tx| tx.running_rollouts())?;
        let mut ended = Vec::new();
        for r in running {
            let decided = self.store.write(|tx| -> Result<Option<Next>, ServiceError> {
                // Re-read in the write transaction: another process may have ended it.
                let Some(r) = tx.running_rollouts()?.into_iter().find(|x| x.id == r.id) else {
                    return Ok(None);
                };
                let spec = spec_of(&r);
                let states = canaries(tx, &r)?;
                for (serial, c) in &states {
                    note_canary(tx, &r, serial, c)?;
                }
                let decision = next(&spec, &states, now);
                match &decision {
                    Next::Wait => {}
                    Next::Promote => {
                        tx.end_rollout(r.id, "succeeded", "canaries healthy")?;
                        tx.unpin_rollout(r.id)?;
                        tx.move_channel(&r.channel, &r.version)?;
                        tx.set_version_bad(&r.version, None)?;
                        tx.image_event(
                            &r.channel,
                            Some(r.id),
                            "rollout_succeeded",
                            &json!({"version": r.version, "from": r.from_version,
                                    "healthy": states.iter().filter(|(_, c)| c.healthy(spec.health)).count()}),
                        )?;
                    }
                    Next::Abort(why) => {
                        if !abort_in(tx, &r, why)? {
                            return Ok(None);
                        }
                    }
                }
                Ok(Some(decision))
            })?;
            match decided {
                Some(Next::Promote) => {
                    log::info!(
                        "rollout {} succeeded: channel {} now points at {} (was {})",
                        r.id,
                        r.channel,
                        r.version,
                        r.from_version
                    );
                    self.tftp_sync_logged();
                    let others: Vec<String> = self
                        .channel_followers(&r.channel)?
                        .into_iter()
                        .map(|(s, _)| s)
                        .filter(|s| !r.canaries.contains(s))
                        .collect();
                    self.run_hook("promoted", &r.channel, &r.version, &others);
                    ended.push(r);
                }
                Some(Next::Abort(why)) => {
                    self.after_abort(&r, &why);
                    ended.push(r);
                }
                _ => {}
            }
        }
        Ok(ended)
    }

    /// The TFTP folders of these nodes follow their (new) version.
    fn follow_serials(&self, serials: &[String]) {
        for s in serials {
            let Ok(serial) = pureboot_contract::ids::Serial::parse(s) else {
                continue;
            };
            let node = self
                .store
                .read(|tx| tx.find_node(&crate::domain::ids::NodeRef::Serial(serial)));
            if let Ok(Some(node)) = node {
                self.follow_tftp(&node);
            }
        }
    }

    /// Runs `rollout_hook` (if set) with the nodes to reboot; its failure is logged, the
    /// rollout goes on (the operator can reboot them).
    fn run_hook(&self, event: &str, channel: &str, version: &str, serials: &[String]) {
        let Some(hook) = self.config.rollout_hook.as_ref() else {
            if !serials.is_empty() {
                log::info!(
                    "rollout {event}: reboot {} to boot {version} (no rollout_hook set)",
                    shown(serials)
                );
            }
            return;
        };
        let out = std::process::Command::new(hook)
            .arg(event)
            .arg(channel)
            .arg(version)
            .args(serials)
            .stdin(std::process::Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                log::info!(
                    "rollout_hook {} {event} {channel} {version}: done",
                    hook.display()
                )
            }
            Ok(o) => log::warn!(
                "rollout_hook {} {event} {channel} {version}: {}: {}",
                hook.display(),
                o.status,
                crate::text::escape_controls(String::from_utf8_lossy(&o.stderr).trim())
            ),
            Err(e) => log::warn!("rollout_hook {}: {e}", hook.display()),
        }
        let _ = self.store.write(|tx| {
            tx.image_event(
                channel,
                None,
                "hook",
                &json!({"event": event, "version": version, "nodes": serials}),
            )
        });
    }
}
