//! What happens after a failed attempt: the decision ([`after_failure`], pure: retry, shell,
//! reboot or power off, and after how long) and carrying it out ([`apply`]).

use super::Host;
use crate::decide::cmdline::{Cmdline, FailurePolicy};
use crate::steps::watchdog;
use ::log::{error, info, warn};
use nix::mount::MntFlags;
use nix::sys::reboot::RebootMode;
use std::path::Path;
use std::time::Duration;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Boot again as this attempt number.
    Retry(u32),
    /// The rescue shell, then boot again.
    Shell,
    /// After the delay (`None`: never by itself, `panic=0`).
    Reboot(Option<Duration>),
    PowerOff(Option<Duration>),
}

/// `pureboot.on_failure=` after attempt `attempt` failed: a pure decision. A permanent
/// failure uses up the remaining attempts; `shell` without a shell reboots; reboots and
/// power-offs wait as `panic=` says.
pub fn after_failure(
    cmd: &Cmdline,
    attempt: u32,
    permanent: bool,
    have_shell: bool,
) -> AfterFailure {
    let delay = reboot_delay(cmd.panic);
    match cmd.on_failure {
        FailurePolicy::Retry if attempt < cmd.retries && !permanent => {
            AfterFailure::Retry(attempt + 1)
        }
        FailurePolicy::Retry => AfterFailure::Reboot(delay),
        FailurePolicy::Shell if have_shell => AfterFailure::Shell,
        FailurePolicy::Shell | FailurePolicy::Reboot => AfterFailure::Reboot(delay),
        FailurePolicy::Halt => AfterFailure::PowerOff(delay),
    }
}

/// Carry out `next`. Returns the next attempt's number when the boot is to be tried again.
pub fn apply(host: &Host, cmd: &Cmdline, permanent: bool, next: AfterFailure, attempt: u32) -> u32 {
    info!("applying failure policy {}", cmd.on_failure.as_str());
    let next_attempt = match next {
        AfterFailure::Retry(n) => {
            info!("boot attempt {n} of {} in 2 s", cmd.retries);
            (host.sleep)(Duration::from_secs(2));
            n
        }
        AfterFailure::Shell => {
            watchdog::keep_fed();
            rescue_shell(&host.paths.shell());
            watchdog::progress();
            info!("shell exited: booting again");
            attempt
        }
        AfterFailure::Reboot(delay) | AfterFailure::PowerOff(delay) => {
            match cmd.on_failure {
                FailurePolicy::Retry if permanent && attempt < cmd.retries => {
                    info!("a permanent failure: another attempt would end the same way")
                }
                FailurePolicy::Retry => info!("{} boot attempts failed", cmd.retries),
                FailurePolicy::Shell => warn!("no /bin/sh in the initramfs: rebooting instead"),
                _ => {}
            }
            let mode = match next {
                AfterFailure::PowerOff(_) => RebootMode::RB_POWER_OFF,
                _ => RebootMode::RB_AUTOBOOT,
            };
            power(host, mode, delay)
        }
    };
    release_mounts(host);
    next_attempt
}

/// Undo a failed attempt's mounts so the next one starts clean.
fn release_mounts(host: &Host) {
    for m in ["root", "rw", "squash", "base", "nfs"] {
        let _ = host
            .sys
            .umount(&host.paths.mnt().join(m), MntFlags::MNT_DETACH);
    }
}

fn rescue_shell(sh: &Path) {
    match std::process::Command::new(sh).status() {
        Ok(s) => info!("shell: {s}"),
        Err(e) => error!("shell: {e}"),
    }
}

/// How long to wait before rebooting after a failure, as the kernel reads `panic=`: negative
/// at once, 0 never (`None`), N after N seconds. Without `panic=`, 5 s, so the reason stays
/// on the console a moment.
pub fn reboot_delay(panic: Option<i64>) -> Option<Duration> {
    match panic {
        None => Some(Duration::from_secs(5)),
        Some(0) => None,
        Some(n) if n < 0 => Some(Duration::ZERO),
        Some(n) => Some(Duration::from_secs(n.unsigned_abs())),
    }
}

/// Reboot or power off after `delay`; with none (`panic=0`), never by itself.
fn power(host: &Host, mode: RebootMode, delay: Option<Duration>) -> ! {
    let what = if mode == RebootMode::RB_POWER_OFF {
        "power off"
    } else {
        "reboot"
    };
    match delay {
        Some(delay) => {
            info!("{what} in {} s", delay.as_secs());
            (host.sleep)(delay);
            let e = host.sys.reboot(mode);
            error!("reboot: {e}");
        }
        None => info!("panic=0: no {what}; waiting for a reset"),
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
