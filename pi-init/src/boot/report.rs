//! What the boot did, for the controller: per-step timings, degradations, and the callback
//! bodies built from them.

use pureboot_contract::{
    BootAction, FailureReport, InstallFailedReport, InstalledReport, OverlayOutcome, StepTiming,
    VolumeOutcome,
};
use std::time::{Duration, Instant};

/// Facts about the boot that the callback reports, filled in as steps finish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootFacts {
    pub serial: Option<String>,
    pub full_serial: Option<String>,
    pub mac: Option<String>,
    pub ip_address: Option<String>,
    pub nfs_version: Option<String>,
    pub overlay_mode: Option<String>,
    /// How the overlay step went, typed (the mode asked for, used, and why not).
    pub overlay: Option<OverlayOutcome>,
    pub base_image: Option<String>,
    pub hostname: Option<String>,
    /// Whether the post-boot agent was left for the root, or why not.
    pub agent: Option<String>,
    /// Each volume of the answer, mounted or why not.
    pub volumes: Vec<VolumeOutcome>,
}

#[derive(Debug)]
pub struct Report {
    start: Instant,
    pub steps: Vec<StepTiming>,
    /// What did not go as asked while the boot went on (the overlay step adds them).
    pub degradations: Vec<String>,
    pub facts: BootFacts,
}

impl Report {
    pub fn new(start: Instant) -> Self {
        Report {
            start,
            steps: Vec::new(),
            degradations: Vec::new(),
            facts: BootFacts::default(),
        }
    }

    /// Record a finished step and print the agreed timing line.
    pub fn step(&mut self, name: &str, took: Duration) {
        crate::support::log::step_done(name, took);
        crate::steps::watchdog::progress();
        self.steps.push(StepTiming {
            step: name.to_string(),
            ms: took.as_millis() as u64,
        });
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn installed(&self) -> InstalledReport {
        let f = self.facts.clone();
        InstalledReport {
            success: true,
            mode: BootAction::NfsBoot.as_str().into(),
            serial: f.serial,
            full_serial: f.full_serial,
            mac: f.mac,
            ip_address: f.ip_address,
            nfs_version: f.nfs_version,
            overlay_mode: f.overlay_mode,
            base_image: f.base_image,
            hostname: f.hostname,
            elapsed_ms: Some(self.elapsed_ms()),
            overlay: f.overlay,
            degradations: self.degradations.clone(),
            steps: self.steps.clone(),
            agent: f.agent,
            volumes: f.volumes,
            error: None,
            step: None,
        }
    }

    /// The body of a failure report in the shape its target reads: an install-failed
    /// report, or upstream's `{"success": false, "error": …}` on the callback.
    pub fn failed(&self, to: &FailureReport, step: &str, error: &str) -> FailureBody {
        match to {
            FailureReport::InstallFailed(_) => FailureBody::InstallFailed(InstallFailedReport {
                error: error.to_string(),
                step: Some(step.to_string()),
                serial: self.facts.serial.clone(),
                mac: self.facts.mac.clone(),
            }),
            FailureReport::Callback(_) => FailureBody::Callback(Box::new(InstalledReport {
                success: false,
                error: Some(error.to_string()),
                step: Some(step.to_string()),
                ..self.installed()
            })),
        }
    }
}

/// A failure report's body, serialised as the report it holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum FailureBody {
    InstallFailed(InstallFailedReport),
    Callback(Box<InstalledReport>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_body_carries_what_happened() {
        let mut r = Report::new(Instant::now());
        r.facts.serial = Some("d83add36".into());
        r.facts.nfs_version = Some("3".into());
        r.facts.overlay_mode = Some("tmpfs".into());
        r.step("modules", Duration::from_millis(120));
        r.step("network", Duration::from_millis(3));
        r.degradations
            .push("overlay nfs refused (EINVAL); using tmpfs".into());
        let body = serde_json::to_value(r.installed()).unwrap();
        assert_eq!(body["success"], true);
        assert_eq!(body["mode"], "nfs_boot");
        assert_eq!(body["serial"], "d83add36");
        assert_eq!(body["nfs_version"], "3");
        assert_eq!(body["overlay_mode"], "tmpfs");
        assert_eq!(body["steps"][0]["step"], "modules");
        assert_eq!(body["steps"][0]["ms"], 120);
        assert_eq!(body["steps"][1]["step"], "network");
        assert!(body["degradations"][0].as_str().unwrap().contains("EINVAL"));
        assert!(body["elapsed_ms"].is_u64());

        let ours = FailureReport::InstallFailed("http://c/x/install-failed".into());
        let f = serde_json::to_value(r.failed(&ours, "nfs-mount", "no server")).unwrap();
        assert_eq!(f["error"], "no server");
        assert_eq!(f["step"], "nfs-mount");
        assert_eq!(f["serial"], "d83add36");
        assert!(f.get("success").is_none(), "{f}");
        // Upstream's shape on the callback: success false, the error, and what is known.
        let upstream = FailureReport::Callback("http://c/x/installed".into());
        let f = serde_json::to_value(r.failed(&upstream, "nfs-mount", "no server")).unwrap();
        assert_eq!(f["success"], false);
        assert_eq!(f["error"], "no server");
        assert_eq!(f["step"], "nfs-mount");
        assert_eq!(f["serial"], "d83add36");
    }
}
