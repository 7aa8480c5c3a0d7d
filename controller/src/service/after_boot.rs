//! After the boot answer: the booted node's agent asks for its post-boot steps, reports each,
//! then "boot complete"; the operator lists the steps and asks for reruns.
//!
//! Which steps a boot runs is decided here, when the agent asks: `every_boot` steps always;
//! a `first_boot` step unless it already succeeded for this node with this content (its
//! digest) on this writable layer (the boot's, recorded with its answer), after any rerun
//! the operator asked for. The steps' environment is the workflow's rendered variables and
//! its secrets; the secrets travel in this answer only, to the boot's own address.

use std::collections::BTreeMap;
use std::sync::Arc;

use pureboot_contract::after_boot::{
    BootComplete, PlannedStep, RunWhen, StepOutcome, StepsPlan, DEFAULT_STEP_TIMEOUT_SECS,
    DEFAULT_TARGET, MAX_FAILED_UNITS, OUTPUT_TAIL_BYTES,
};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::node_event::event;
use super::{ServiceError, Services};
use crate::domain::ids::NodeRef;
use crate::domain::node::Node;
use crate::domain::workflow::{PostBootStep, Workflow};
use crate::secrets::{Secrets, MASK};
use crate::store::after_boot::{BootRecord, StepDone, StepRun, EVERY_STEP};
use crate::store::events::EventKind;
use crate::store::Tx;

/// A workflow step as `node steps` shows it: the declaration and its last run.
#[derive(Debug, Clone, Serialize)]
pub struct StepStatus {
    pub name: String,
    pub run: RunWhen,
    pub digest: String,
    /// Its last run on this node, if any.
    pub last: Option<StepRun>,
    /// `first_boot` steps: done for the current content on the node's current layer.
    pub done: bool,
    /// Runs again at the next boot (a rerun was asked, content changed, never ran, ...).
    pub runs_next_boot: bool,
}

/// `node steps`: the steps and the node's last boot.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSteps {
    pub serial: String,
    pub steps: Vec<StepStatus>,
    /// The workflow's secret variables, values masked (`***`), unset ones `null`.
    pub secrets: BTreeMap<String, Option<String>>,
    pub last_boot: Option<BootRecord>,
    pub history: Vec<StepRun>,
}

/// What one step's content is known by: its name, script, run and timeout, and the
/// variables it sees (not the secrets: a digest shown to operators must not be an oracle
/// for a short secret).
pub fn digest(step: &PostBootStep, vars: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for part in [
        step.name.as_str(),
        step.script.as_str(),
        step.run.as_str(),
        &step
            .timeout_secs
            .unwrap_or(DEFAULT_STEP_TIMEOUT_SECS)
            .to_string(),
    ] {
        h.update(part.len().to_le_bytes());
        h.update(part.as_bytes());
    }
    for (k, v) in vars {
        h.update(k.len().to_le_bytes());
        h.update(k.as_bytes());
        h.update(v.len().to_le_bytes());
        h.update(v.as_bytes());
    }
    let out = h.finalize();
    out.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// Whether a `first_boot` step is done: its last success had this content on this layer
/// and came after any rerun asked for it (or for every step).
pub fn is_done(
    name: &str,
    digest: &str,
    layer: &str,
    done: &BTreeMap<String, StepDone>,
    reruns: &BTreeMap<String, i64>,
) -> bool {
    let Some(d) = done.get(name) else {
        return false;
    };
    let after = reruns
        .get(name)
        .copied()
        .max(reruns.get(EVERY_STEP).copied())
        .unwrap_or(0);
    d.digest == digest && d.layer == layer && d.run_id > after
}

/// A step's output as stored and shown: its last [`OUTPUT_TAIL_BYTES`], control
/// characters (terminal escapes) escaped, lines kept.
pub fn stored_output(output: &str) -> String {
    let escaped: String = output
        .split_inclusive('\n')
        .map(|line| {
            let (body, nl) = match line.strip_suffix('\n') {
                Some(b) => (b, "\n"),
                None => (line, ""),
            };
            format!("{}{nl}", crate::text::escape_controls(body))
        })
        .collect();
    let mut start = escaped.len().saturating_sub(OUTPUT_TAIL_BYTES);
    while !escaped.is_char_boundary(start) {
        start += 1;
    }
    escaped[start..].to_string()
}

impl Services {
    /// The node's workflow rendered for it, with its variables (the steps' environment
    /// without the secrets); `None` when it has none that renders.
    fn steps_workflow(&self, node: &Node) -> Option<Workflow> {
        self.rendered_workflow(node).ok().flatten()
    }

    /// `GET {agent_url}/steps`: the steps this boot runs.
    pub fn steps_for_boot(
        &self,
        boot_id: &str,
        peer_ip: Option<&str>,
    ) -> Result<StepsPlan, ServiceError> {
        let (node, boot, done, reruns) = self.store.read(|tx| {
            let (node, _) = self.reporting_node(tx, boot_id, peer_ip)?;
            let boot = tx
                .boot_record(boot_id)?
                .ok_or_else(|| ServiceError::NotFound("no boot with this id".into()))?;
            let done = tx.steps_done(&node.id)?;
            let reruns = tx.step_reruns(&node.id)?;
            Ok::<_, ServiceError>((node, boot, done, reruns))
        })?;
        let Some(wf) = self.steps_workflow(&node) else {
            return Ok(StepsPlan {
                steps: Vec::new(),
                target: DEFAULT_TARGET.into(),
            });
        };
        let secrets = if wf.secret_variables.is_empty() || wf.post_boot.is_empty() {
            Secrets::default()
        } else {
            Secrets::load(&self.config.secrets_path()).map_err(|e| {
                log::error!("node {}: {e}", node.serial);
                ServiceError::Workflows(format!(
                    "the controller's secrets cannot be read ({}); see its log",
                    self.config.secrets_path().display()
                ))
            })?
        };
        let mut env = wf.variables.clone();
        for name in &wf.secret_variables {
            match secrets.get(&node.serial, name) {
                Some(v) => {
                    env.insert(name.clone(), v.to_string());
                }
                None if !wf.post_boot.is_empty() => log::warn!(
                    "node {}: secret {name} has no value in {}; its steps run without it",
                    node.serial,
                    self.config.secrets_path().display()
                ),
                None => {}
            }
        }
        let steps = wf
            .post_boot
            .iter()
            .filter_map(|step| {
                let digest = digest(step, &wf.variables);
                let skip = step.run == RunWhen::FirstBoot
                    && is_done(&step.name, &digest, &boot.layer, &done, &reruns);
                (!skip).then(|| PlannedStep {
                    name: step.name.clone(),
                    script: step.script.clone(),
                    run: step.run,
                    timeout_secs: step.timeout_secs.unwrap_or(DEFAULT_STEP_TIMEOUT_SECS),
                    env: env.clone(),
                    digest,
                })
            })
            .collect();
        Ok(StepsPlan {
            steps,
            target: wf
                .boot_target
                .clone()
                .unwrap_or_else(|| DEFAULT_TARGET.into()),
        })
    }

    /// `POST {agent_url}/step`: one step's outcome, recorded with its output bounded and
    /// escaped; a step the node's workflow does not have is refused.
    pub async fn step_outcome(
        self: &Arc<Self>,
        boot_id: String,
        outcome: StepOutcome,
        peer_ip: Option<String>,
    ) -> Result<bool, ServiceError> {
        let declared = {
            let node = self.store.read(|tx| {
                self.report_target(tx, &boot_id, peer_ip.as_deref())
                    .map(|(n, _)| n)
            })?;
            self.steps_workflow(&node)
                .is_some_and(|wf| wf.post_boot.iter().any(|s| s.name == outcome.name))
        };
        if !declared || outcome.digest.len() > 64 {
            return Err(ServiceError::Unprocessable(format!(
                "no post-boot step {:?} in this node's workflow",
                crate::text::escape_controls(&outcome.name.chars().take(100).collect::<String>())
            )));
        }
        let output = stored_output(&outcome.output);
        self.grouped(move |s, tx| {
            let (node, ip) = s.reporting_node(tx, &boot_id, peer_ip.as_deref())?;
            let layer = tx
                .boot_record(&boot_id)?
                .map(|b| b.layer)
                .unwrap_or_default();
            tx.record_step_run(&node.id, &boot_id, &layer, &outcome, &output)?;
            let ok = outcome.succeeded();
            tx.append_event(&event(
                &node,
                EventKind::PostBootStep,
                Some(ip.as_str()),
                json!({
                    "step": outcome.name, "ok": ok, "outcome": outcome.summary(),
                    "duration_ms": outcome.duration_ms, "digest": outcome.digest,
                }),
            ))?;
            let log_line = format!(
                "node {} step {:?}: {} after {} ms",
                node.serial,
                crate::text::escape_controls(&outcome.name),
                outcome.summary(),
                outcome.duration_ms
            );
            if ok {
                log::info!("{log_line}");
            } else {
                log::warn!("{log_line}");
            }
            Ok(ok)
        })
        .answer()
        .await
    }

    /// `POST {agent_url}/complete`: "boot complete", once per boot; healthy when the target
    /// was reached and every step of the boot succeeded.
    pub async fn boot_complete(
        self: &Arc<Self>,
        boot_id: String,
        mut report: BootComplete,
        peer_ip: Option<String>,
    ) -> Result<bool, ServiceError> {
        // Bounded before it is stored: the steps' outputs are in their own runs already.
        report.failed_units.truncate(MAX_FAILED_UNITS);
        for u in &mut report.failed_units {
            *u = crate::text::escape_controls(&u.chars().take(256).collect::<String>());
        }
        report.target =
            crate::text::escape_controls(&report.target.chars().take(128).collect::<String>());
        report.system_state =
            crate::text::escape_controls(&report.system_state.chars().take(32).collect::<String>());
        report.error = report
            .error
            .map(|e| crate::text::escape_controls(&e.chars().take(512).collect::<String>()));
        if report.steps.len() > 256 {
            return Err(ServiceError::Unprocessable("more than 256 steps".into()));
        }
        for s in &mut report.steps {
            s.output = String::new();
            s.name = crate::text::escape_controls(&s.name.chars().take(100).collect::<String>());
            s.error = s
                .error
                .take()
                .map(|e| crate::text::escape_controls(&e.chars().take(256).collect::<String>()));
        }
        self.grouped(move |s, tx| {
            let (node, ip) = s.reporting_node(tx, &boot_id, peer_ip.as_deref())?;
            let boot = tx
                .boot_record(&boot_id)?
                .ok_or_else(|| ServiceError::NotFound("no boot with this id".into()))?;
            if boot.complete_at.is_some() {
                return Err(ServiceError::Conflict(
                    "this boot reported complete already".into(),
                ));
            }
            let healthy = report.healthy();
            tx.boot_completed(&boot_id, &report, healthy)?;
            let done = tx.boot_record(&boot_id)?;
            let since_answer = done.as_ref().and_then(|b| b.answer_to_complete_ms);
            tx.append_event(&event(
                &node,
                EventKind::BootComplete,
                Some(ip.as_str()),
                json!({
                    "healthy": healthy, "target": report.target, "reached": report.reached,
                    "target_ms": report.target_ms, "since_answer_ms": since_answer,
                    "system_state": report.system_state, "failed_units": report.failed_units,
                    "steps_failed": report.steps.iter().filter(|s| !s.succeeded()).count(),
                    "error": report.error,
                }),
            ))?;
            log::info!(
                "node {} boot complete ({}): {} reached at {} ms, {} since the answer{}",
                node.serial,
                if healthy { "healthy" } else { "NOT healthy" },
                report.target,
                report.target_ms.map_or("?".into(), |v| v.to_string()),
                since_answer.map_or("?".into(), |v| format!("{v} ms")),
                if report.failed_units.is_empty() {
                    String::new()
                } else {
                    format!("; failed units: {}", report.failed_units.join(", "))
                }
            );
            Ok(healthy)
        })
        .answer()
        .await
    }

    /// `node steps`: the workflow's steps with their last runs, the secrets (masked) and
    /// the node's last boot.
    pub fn node_steps(&self, node_ref: &NodeRef) -> Result<NodeSteps, ServiceError> {
        let (node, last_boot, done, reruns, history) = self.store.read(|tx| {
            let node = self.find(tx, node_ref)?;
            Ok::<_, ServiceError>((
                node.clone(),
                tx.last_boot(&node.id)?,
                tx.steps_done(&node.id)?,
                tx.step_reruns(&node.id)?,
                tx.step_runs(&node.id, 20)?,
            ))
        })?;
        let wf = self.steps_workflow(&node);
        let secrets_file = Secrets::load(&self.config.secrets_path());
        let mut secrets = BTreeMap::new();
        let mut steps = Vec::new();
        if let Some(wf) = &wf {
            for name in &wf.secret_variables {
                let set = match &secrets_file {
                    Ok(s) => s.get(&node.serial, name).is_some(),
                    Err(_) => false,
                };
                secrets.insert(name.clone(), set.then(|| MASK.to_string()));
            }
            // The layer the next boot runs on is not known before it; the last boot's is
            // what a `first_boot` step was last judged by.
            let layer = last_boot.as_ref().map(|b| b.layer.as_str()).unwrap_or("");
            let tmpfs_like = layer.starts_with("boot:");
            for step in &wf.post_boot {
                let digest = digest(step, &wf.variables);
                let last = history.iter().find(|r| r.name == step.name).cloned();
                let done = is_done(&step.name, &digest, layer, &done, &reruns);
                let runs_next_boot = match step.run {
                    RunWhen::EveryBoot => true,
                    RunWhen::FirstBoot => !done || tmpfs_like,
                };
                steps.push(StepStatus {
                    name: step.name.clone(),
                    run: step.run,
                    digest,
                    last,
                    done,
                    runs_next_boot,
                });
            }
        }
        Ok(NodeSteps {
            serial: node.serial.to_string(),
            steps,
            secrets,
            last_boot,
            history,
        })
    }

    /// [`after_boot_warnings`] for a node as its settings resolve (`node add`).
    pub fn node_after_boot_warnings(&self, node: &Node) -> Vec<String> {
        let (node, wf) = self.rendered(node);
        let Some(wf) = wf.ok().flatten() else {
            return Vec::new();
        };
        match crate::domain::boot::tree_plan(&node, Some(&wf), &self.config.nfs.default_base_image)
        {
            Ok(plan) => after_boot_warnings(&self.tree, &wf, plan.overlay, &plan.base_image),
            // The boot itself says what is wrong with the node's settings.
            Err(_) => Vec::new(),
        }
    }

    /// `node rerun`: `step` (or every step) runs again at the node's next boot.
    pub fn rerun_steps(
        &self,
        node_ref: &NodeRef,
        step: Option<&str>,
    ) -> Result<Node, ServiceError> {
        let node = self.store.read(|tx| self.find(tx, node_ref))?;
        if let Some(name) = step {
            let known = self
                .steps_workflow(&node)
                .is_some_and(|wf| wf.post_boot.iter().any(|s| s.name == name));
            if !known {
                return Err(ServiceError::NotFound(format!(
                    "node {} has no post-boot step {name:?} (node steps {} lists them)",
                    node.serial, node.serial
                )));
            }
        }
        self.store.write(|tx: &Tx<'_>| {
            tx.rerun_steps(&node.id, step.unwrap_or(EVERY_STEP))?;
            tx.append_event(&event(
                &node,
                EventKind::Admin,
                None,
                json!({"rerun": step.unwrap_or("every step")}),
            ))?;
            Ok::<_, ServiceError>(node.clone())
        })
    }
}

/// What a workflow's post-boot steps mean for nodes on `overlay` (`workflow validate`,
/// `node add`): a `first_boot` step on a layer that is new at every boot runs at every
/// boot; a base image without systemd runs no steps at all.
pub fn after_boot_warnings(
    tree: &crate::nfs_tree::NfsTree,
    wf: &Workflow,
    overlay: pureboot_contract::OverlayMode,
    base_image: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    if wf.post_boot.is_empty() {
        return out;
    }
    let first_boot: Vec<&str> = wf
        .post_boot
        .iter()
        .filter(|s| s.run == RunWhen::FirstBoot)
        .map(|s| s.name.as_str())
        .collect();
    if !overlay.writes_export() && !first_boot.is_empty() {
        out.push(format!(
            "workflow {}: first_boot step(s) {} run at every boot of a node with overlay {} \
             (its writable layer is new at each boot, so what they install does not stay); \
             use overlay image or nfs to run them once",
            wf.id,
            first_boot.join(", "),
            overlay
        ));
    }
    if let Ok(root) = tree.existing_base_image(base_image) {
        let systemd = ["lib/systemd/systemd", "usr/lib/systemd/systemd"];
        let squashfs = root.join(pureboot_contract::layout::SQUASHFS_IMAGE);
        let has_systemd = if squashfs.is_file() {
            // Unreadable (no unsquashfs here): no warning rather than a wrong one.
            crate::nfs_tree::import::squashfs::contains(&squashfs, &systemd).unwrap_or(true)
        } else {
            systemd
                .iter()
                .any(|p| root.join(p).symlink_metadata().is_ok())
        };
        if !has_systemd {
            out.push(format!(
                "workflow {}: base image {base_image} has no systemd: its post-boot steps \
                 never run there (the agent is a systemd unit; pi-init reports \"not \
                 installed\" at each boot)",
                wf.id
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, script: &str) -> PostBootStep {
        PostBootStep {
            name: name.into(),
            script: script.into(),
            run: RunWhen::FirstBoot,
            timeout_secs: None,
        }
    }

    #[test]
    fn digests_follow_content_and_variables() {
        let vars = BTreeMap::from([("server".to_string(), "a".to_string())]);
        let d = digest(&step("join", "echo $server"), &vars);
        assert_eq!(d.len(), 24);
        assert_eq!(d, digest(&step("join", "echo $server"), &vars));
        assert_ne!(d, digest(&step("join", "echo  $server"), &vars));
        let other = BTreeMap::from([("server".to_string(), "b".to_string())]);
        assert_ne!(d, digest(&step("join", "echo $server"), &other));
        let mut every = step("join", "echo $server");
        every.run = RunWhen::EveryBoot;
        assert_ne!(d, digest(&every, &vars));
    }

    #[test]
    fn first_boot_done_needs_content_layer_and_no_later_rerun() {
        let done = BTreeMap::from([(
            "join".to_string(),
            StepDone {
                digest: "d1".into(),
                layer: "image:persist.img".into(),
                run_id: 10,
            },
        )]);
        let none = BTreeMap::new();
        assert!(is_done("join", "d1", "image:persist.img", &done, &none));
        assert!(!is_done("join", "d2", "image:persist.img", &done, &none));
        assert!(!is_done("join", "d1", "boot:x", &done, &none));
        assert!(!is_done("other", "d1", "image:persist.img", &done, &none));
        let rerun_it = BTreeMap::from([("join".to_string(), 10)]);
        assert!(!is_done(
            "join",
            "d1",
            "image:persist.img",
            &done,
            &rerun_it
        ));
        let rerun_all = BTreeMap::from([(EVERY_STEP.to_string(), 9)]);
        assert!(is_done(
            "join",
            "d1",
            "image:persist.img",
            &done,
            &rerun_all
        ));
        let rerun_all = BTreeMap::from([(EVERY_STEP.to_string(), 12)]);
        assert!(!is_done(
            "join",
            "d1",
            "image:persist.img",
            &done,
            &rerun_all
        ));
    }

    #[test]
    fn output_is_bounded_and_escaped() {
        let out = stored_output("ok\n\x1b[31mred\x1b[0m\n");
        assert!(!out.contains('\x1b'), "{out:?}");
        assert!(
            out.starts_with("ok\n") && out.lines().count() == 2,
            "{out:?}"
        );
        let big = "é".repeat(10_000);
        let out = stored_output(&big);
        assert!(out.len() <= OUTPUT_TAIL_BYTES && out.ends_with('é'));
    }
}
