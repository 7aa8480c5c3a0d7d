//! The boot's steps by name, and the one helper that runs a step: it times the step into the
//! report (the `STEP <name> <ms>` console line and the callback's `steps`) and turns its error
//! into a [`Failure`] naming the step. Adding a step is a variant here and one [`run`] call in
//! the sequence.

use super::report::Report;
use std::fmt;
use std::time::Instant;

pureboot_contract::named_enum! {
    /// Every step pi-init times or fails at, named as the console lines, the callback's
    /// `steps` and the failure report's `step` show it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Step: "boot step" {
        Serial = "serial",
        Network = "network",
        Controller = "controller",
        Modules = "modules",
        DiskModules = "disk-modules",
        NfsMount = "nfs-mount",
        BaseMount = "base-mount",
        Overlay = "overlay",
        Volumes = "volumes",
        LocalMount = "local-mount",
        InitCheck = "init-check",
        /// The post-boot agent and its unit left in /run.
        Agent = "agent",
        Handover = "handover",
        MoveMounts = "move-mounts",
        Callback = "callback",
        SwitchRoot = "switch-root",
        Exec = "exec",
        /// Not a step: a panic caught anywhere in an attempt.
        Panic = "panic",
    }
}

/// The step that failed and why.
#[derive(Debug)]
pub struct Failure {
    pub step: Step,
    pub error: String,
    /// Follows from the command line and the board alone: another attempt would fail the
    /// same way, so the retry policy goes straight to its last resort.
    pub permanent: bool,
}

impl Failure {
    /// A failure another attempt might not repeat (`&dyn`: one copy for every error type).
    pub fn at(step: Step, error: &dyn fmt::Display) -> Self {
        Failure {
            step,
            error: error.to_string(),
            permanent: false,
        }
    }

    /// The console line every failure prints.
    pub fn line(&self) -> String {
        format!("FAILED at {}: {}", self.step, self.error)
    }
}

/// Run `f` as `step`: timed into `r` whatever it returns, its error a [`Failure`] at `step`.
pub fn run<T, E: fmt::Display>(
    r: &mut Report,
    step: Step,
    f: impl FnOnce(&mut Report) -> Result<T, E>,
) -> Result<T, Failure> {
    time(r, step, f).map_err(|e| Failure::at(step, &e))
}

/// Run `f` as `step`, timed into `r`, for a step that cannot fail the boot (its outcome is
/// the caller's to weigh).
pub fn time<T>(r: &mut Report, step: Step, f: impl FnOnce(&mut Report) -> T) -> T {
    let t = Instant::now();
    let out = f(r);
    r.step(step.as_str(), t.elapsed());
    out
}
