//! The post-boot agent: pi-init run again, by the booted root's systemd, from the copy it
//! left in `/run` (`crate::steps::agent_unit`). It asks the controller for this boot's
//! post-boot steps, runs them in order (each with its timeout; the first that fails ends
//! the run, the later ones wait for the next boot), reports each as it ends, waits until
//! systemd's start-up is over and reports "boot complete": the target's time from the
//! kernel's start, the failed units, the steps' outcomes.
//!
//! It never changes the root: the steps do what their workflow says. Secrets arrive in the
//! steps' environment over HTTP and live only in this process and the steps'.

pub mod step_run;
pub mod systemd;

use std::time::Duration;

use pureboot_contract::after_boot::{
    BootComplete, StepOutcome, StepsPlan, COMPLETE_ROUTE, STEPS_ROUTE, STEP_ROUTE,
};

use crate::steps::agent_unit::{pending_callback, AGENT_URL_FILE, PENDING_CALLBACK_FILE};
use crate::steps::controller::{Http, Ureq};
use crate::sys::HostPaths;

const SHELL: &str = "/bin/sh";
const TIMEOUT: Duration = Duration::from_secs(10);
/// Tries of each request; the waits between them double up to [`MAX_BACKOFF`] (about 4
/// minutes in all: a controller restarting is waited for, one gone for good is not).
const ATTEMPTS: u32 = 12;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the agent asks of the machine it runs on (systemd and the kernel's clock).
pub trait System {
    fn run_step(&self, step: &pureboot_contract::after_boot::PlannedStep) -> StepOutcome;
    /// Blocks until start-up is over; systemd's word for the system.
    fn wait_until_started(&self) -> String;
    fn is_active(&self, target: &str) -> bool;
    fn activated_ms(&self, target: &str) -> Option<u64>;
    fn failed_units(&self) -> Vec<String>;
    fn uptime_ms(&self) -> u64;
    fn sleep(&self, d: Duration);
}

/// The root's systemd and `/bin/sh`.
pub struct Booted;

impl System for Booted {
    fn run_step(&self, step: &pureboot_contract::after_boot::PlannedStep) -> StepOutcome {
        step_run::run(SHELL, step, true)
    }
    fn wait_until_started(&self) -> String {
        systemd::wait_until_started()
    }
    fn is_active(&self, target: &str) -> bool {
        systemd::is_active(target)
    }
    fn activated_ms(&self, target: &str) -> Option<u64> {
        systemd::activated_ms(target)
    }
    fn failed_units(&self) -> Vec<String> {
        systemd::failed_units()
    }
    fn uptime_ms(&self) -> u64 {
        std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|t| systemd::parse_uptime_ms(&t))
            .unwrap_or(0)
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// `pi-init agent`: the URL from the file pi-init left, then [`run`]. The exit status is
/// 0 whatever the steps did (they are reported, not the unit's failure).
pub fn main(paths: &HostPaths) -> i32 {
    let file = paths.at(AGENT_URL_FILE);
    let url = match std::fs::read_to_string(&file) {
        Ok(u) => u.trim().to_string(),
        Err(e) => {
            log::error!("agent: {}: {e}; nothing to do", file.display());
            return 1;
        }
    };
    deliver_pending(&Ureq, &Booted, &paths.at(PENDING_CALLBACK_FILE));
    let done = run(&Ureq, &Booted, &url);
    log::info!(
        "boot complete: {} ({} steps, system {})",
        if done.healthy() {
            "healthy"
        } else {
            "NOT healthy"
        },
        done.steps.len(),
        done.system_state
    );
    0
}

/// pi-init's installed report, if it left one (no controller took it during the boot):
/// sent before anything else, so the controller hears of the boot before its steps; the
/// file goes once the report was taken or refused for good.
pub fn deliver_pending(http: &dyn Http, sys: &dyn System, file: &std::path::Path) {
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    match pending_callback(&text) {
        Some((url, body)) => {
            log::info!("delivering the boot's installed report pi-init could not");
            if !send_text(http, sys, url, body) {
                log::error!("installed report dropped: {url}");
            }
        }
        None => log::error!("{}: not a report pi-init left; dropped", file.display()),
    }
    let _ = std::fs::remove_file(file);
}

/// One boot's post-boot work against `url` (the boot's `agent_url`); the report it sent
/// (or tried to send) last.
pub fn run(http: &dyn Http, sys: &dyn System, url: &str) -> BootComplete {
    let url = url.trim_end_matches('/');
    let mut done = BootComplete::default();
    match fetch_plan(http, sys, &format!("{url}/{STEPS_ROUTE}")) {
        Ok(plan) => {
            done.target = plan.target.clone();
            log::info!("{} post-boot step(s) this boot", plan.steps.len());
            for step in &plan.steps {
                log::info!(
                    "step {:?}: running (timeout {} s)",
                    step.name,
                    step.timeout_secs
                );
                let outcome = sys.run_step(step);
                log::info!(
                    "step {:?}: {} after {} ms",
                    step.name,
                    outcome.summary(),
                    outcome.duration_ms
                );
                send(http, sys, &format!("{url}/{STEP_ROUTE}"), &outcome);
                let failed = !outcome.succeeded();
                // The output went with the step's own report: the complete report stays
                // small whatever the number of steps (the controller bounds bodies).
                done.steps.push(StepOutcome {
                    output: String::new(),
                    ..outcome
                });
                if failed {
                    log::warn!(
                        "step {:?} failed: the later steps wait for the next boot",
                        step.name
                    );
                    break;
                }
            }
        }
        Err(e) => {
            log::error!("{e}");
            done.target = pureboot_contract::after_boot::DEFAULT_TARGET.into();
            done.error = Some(e);
        }
    }
    done.system_state = sys.wait_until_started();
    done.reached = sys.is_active(&done.target);
    done.target_ms = sys.activated_ms(&done.target);
    done.failed_units = sys.failed_units();
    done.uptime_ms = sys.uptime_ms();
    send(http, sys, &format!("{url}/{COMPLETE_ROUTE}"), &done);
    done
}

/// The steps, asked until the controller answers (within [`ATTEMPTS`]).
fn fetch_plan(http: &dyn Http, sys: &dyn System, url: &str) -> Result<StepsPlan, String> {
    let mut backoff = FIRST_BACKOFF;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match http.get(url, TIMEOUT) {
            Ok(r) if (200..300).contains(&r.status) => {
                return serde_json::from_str(&r.body)
                    .map_err(|e| format!("steps from {url}: not a steps plan: {e}"));
            }
            Ok(r) if !retryable(r.status) => {
                return Err(format!(
                    "steps from {url}: HTTP {}: {}",
                    r.status,
                    r.body.trim()
                ));
            }
            Ok(r) => last = format!("HTTP {}", r.status),
            Err(e) if e.permanent => return Err(format!("steps from {url}: {}", e.message)),
            Err(e) => last = e.message,
        }
        if attempt < ATTEMPTS {
            sys.sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    Err(format!(
        "steps from {url}: no answer after {ATTEMPTS} tries ({last})"
    ))
}

/// POSTs `body` until it is taken or refused for good; false (logged) when it was not taken.
fn send(http: &dyn Http, sys: &dyn System, url: &str, body: &impl serde::Serialize) -> bool {
    match serde_json::to_string(body) {
        Ok(text) => send_text(http, sys, url, &text),
        Err(e) => {
            log::error!("{url}: cannot encode: {e}");
            false
        }
    }
}

/// [`send`] for a body already encoded.
fn send_text(http: &dyn Http, sys: &dyn System, url: &str, text: &str) -> bool {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let why = match http.post_json(url, text, TIMEOUT) {
            Ok(code @ 200..=299) => {
                log::info!("{url}: HTTP {code}");
                return true;
            }
            Ok(code) if !retryable(code) => {
                log::error!("{url}: refused, HTTP {code}");
                return false;
            }
            Ok(code) => format!("HTTP {code}"),
            Err(e) if e.permanent => {
                log::error!("{url}: {}", e.message);
                return false;
            }
            Err(e) => e.message,
        };
        if attempt < ATTEMPTS {
            log::warn!("{url}: {why}; trying again in {} s", backoff.as_secs());
            sys.sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        } else {
            log::error!("{url}: {why}; report dropped after {ATTEMPTS} tries");
        }
    }
    false
}

/// Statuses worth asking again: the controller busy, restarting or timing out.
fn retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

#[cfg(test)]
mod tests;
