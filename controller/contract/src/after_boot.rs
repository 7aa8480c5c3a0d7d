//! After the switch: what the booted node's agent (pi-init run again from `/run`, see
//! [`AGENT_PATH`]) asks and reports, under the boot's own `agent_url`
//! (`{public_url}/api/v1/nodes/{boot id}/agent`):
//!
//! - `GET {agent_url}/steps` -> [`StepsPlan`]: the workflow's post-boot steps this boot runs,
//!   rendered, with their environment (secrets included: this answer is the only place they
//!   travel, to the machine that asked for the boot);
//! - `POST {agent_url}/step` <- [`StepOutcome`], one per step as it ends;
//! - `POST {agent_url}/complete` <- [`BootComplete`], once the system reached its target.
//!
//! The same boot id and address rules as the installed report hold for each.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::named_enum;

/// Where pi-init leaves itself for the root's systemd to run as the agent (in the root's
/// `/run`: RAM, gone at the next boot, never in the image nor on the export).
pub const AGENT_PATH: &str = "/run/pureboot/agent";
/// The runtime unit that runs it, and the target that wants it.
pub const AGENT_UNIT_PATH: &str = "/run/systemd/system/pureboot-agent.service";
pub const AGENT_WANTS_LINK: &str =
    "/run/systemd/system/multi-user.target.wants/pureboot-agent.service";
/// The first argument that makes pi-init the agent: `agent <agent_url>`.
pub const AGENT_ARG: &str = "agent";
/// The target a boot is complete at when the workflow names none.
pub const DEFAULT_TARGET: &str = "multi-user.target";

/// Routes under `agent_url`.
pub const STEPS_ROUTE: &str = "steps";
pub const STEP_ROUTE: &str = "step";
pub const COMPLETE_ROUTE: &str = "complete";

/// Bytes of a step's output the agent keeps (its tail) and the controller stores.
pub const OUTPUT_TAIL_BYTES: usize = 4096;
/// Longest step timeout a workflow may ask for (and the default).
pub const MAX_STEP_TIMEOUT_SECS: u32 = 6 * 3600;
pub const DEFAULT_STEP_TIMEOUT_SECS: u32 = 600;
/// Failed units a [`BootComplete`] lists at most.
pub const MAX_FAILED_UNITS: usize = 64;

named_enum! {
    /// When a step runs.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum RunWhen: "step run" {
        /// Until it succeeds once for this node, this content and this writable layer.
        #[default]
        FirstBoot = "first_boot",
        EveryBoot = "every_boot",
    }
}

/// `GET {agent_url}/steps`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepsPlan {
    /// In order; only the ones this boot runs.
    #[serde(default)]
    pub steps: Vec<PlannedStep>,
    /// The systemd unit whose activation is "boot complete".
    #[serde(default = "default_target")]
    pub target: String,
}

fn default_target() -> String {
    DEFAULT_TARGET.into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub name: String,
    /// Run by `/bin/sh -c`.
    pub script: String,
    #[serde(default)]
    pub run: RunWhen,
    pub timeout_secs: u32,
    /// The workflow's variables (and secrets), as environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// What the controller knows this content by; sent back with the outcome.
    pub digest: String,
}

/// `POST {agent_url}/step`: how one step ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOutcome {
    pub name: String,
    pub digest: String,
    /// The exit status, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did (a timeout ends it with SIGKILL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default)]
    pub timed_out: bool,
    /// Why it did not run at all (the shell could not be started, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
    /// The last [`OUTPUT_TAIL_BYTES`] of its standard output and error, as text.
    #[serde(default)]
    pub output: String,
    /// Bytes of output before the tail.
    #[serde(default)]
    pub output_dropped: u64,
}

impl StepOutcome {
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && self.error.is_none()
    }

    /// One line: `exit 0`, `exit 3`, `killed by signal 9`, `timed out`, or the error.
    pub fn summary(&self) -> String {
        match (self.timed_out, &self.error, self.exit_code, self.signal) {
            (true, _, _, _) => "timed out".into(),
            (_, Some(e), _, _) => format!("not run: {e}"),
            (_, _, Some(code), _) => format!("exit {code}"),
            (_, _, _, Some(sig)) => format!("killed by signal {sig}"),
            _ => "no status".into(),
        }
    }
}

/// `POST {agent_url}/complete`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootComplete {
    pub target: String,
    /// The target became active (false: the agent gave up waiting, or the system failed).
    pub reached: bool,
    /// Milliseconds from the kernel's start to the target's activation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ms: Option<u64>,
    /// Milliseconds from the kernel's start to this report (after the steps).
    pub uptime_ms: u64,
    /// systemd's own word for the system (`running`, `degraded`, ...).
    #[serde(default)]
    pub system_state: String,
    #[serde(default)]
    pub failed_units: Vec<String>,
    /// The steps of this boot, in order, as they were reported one by one.
    #[serde(default)]
    pub steps: Vec<StepOutcome>,
    /// What went wrong in the agent itself, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl BootComplete {
    /// The boot is what its workflow says: target reached, every step ran and succeeded.
    pub fn healthy(&self) -> bool {
        self.reached && self.error.is_none() && self.steps.iter().all(StepOutcome::succeeded)
    }
}

/// The keep-the-end of a byte stream: what a step's output is reduced to.
#[derive(Debug, Clone, Default)]
pub struct Tail {
    buf: Vec<u8>,
    dropped: u64,
}

impl Tail {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        if self.buf.len() > 2 * OUTPUT_TAIL_BYTES {
            self.trim();
        }
    }

    fn trim(&mut self) {
        if self.buf.len() > OUTPUT_TAIL_BYTES {
            let cut = self.buf.len() - OUTPUT_TAIL_BYTES;
            self.buf.drain(..cut);
            self.dropped += cut as u64;
        }
    }

    /// The kept text (invalid UTF-8 replaced) and the bytes dropped before it.
    pub fn finish(mut self) -> (String, u64) {
        self.trim();
        (
            String::from_utf8_lossy(&self.buf).into_owned(),
            self.dropped,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end() {
        let mut t = Tail::default();
        for _ in 0..1000 {
            t.push(&[b'a'; 100]);
        }
        t.push(b"END");
        let (text, dropped) = t.finish();
        assert_eq!(text.len(), OUTPUT_TAIL_BYTES);
        assert!(text.ends_with("END"));
        assert_eq!(dropped, 100_003 - OUTPUT_TAIL_BYTES as u64);
    }

    #[test]
    fn outcomes_and_health() {
        let ok = StepOutcome {
            exit_code: Some(0),
            ..Default::default()
        };
        assert!(ok.succeeded());
        assert_eq!(ok.summary(), "exit 0");
        let timed_out = StepOutcome {
            signal: Some(9),
            timed_out: true,
            ..Default::default()
        };
        assert!(!timed_out.succeeded());
        assert_eq!(timed_out.summary(), "timed out");
        let mut c = BootComplete {
            reached: true,
            steps: vec![ok],
            ..Default::default()
        };
        assert!(c.healthy());
        c.steps.push(timed_out);
        assert!(!c.healthy());
        let plan: StepsPlan = serde_json::from_str("{}").unwrap();
        assert_eq!(plan.target, DEFAULT_TARGET);
        assert_eq!(
            serde_json::to_string(&RunWhen::EveryBoot).unwrap(),
            "\"every_boot\""
        );
    }
}
