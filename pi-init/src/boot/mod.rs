//! The boot itself: early mounts, then attempts until one ends in the exec of the new
//! root's init. An attempt reads the serial, loads modules (on their own threads) while the
//! network comes up and the controller is asked, decides, then mounts NFS, assembles the
//! overlay, checks init, moves the early mounts, posts the callback and switches root
//! (`sequence.rs`). Every failure goes through one path: a `FAILED at <step>` line, the
//! failure report to the controller, the failure policy (`policy.rs`). PID 1 never returns
//! and never panics out: a panic is caught and handled like a failure.
//!
//! This is the only room that imports the steps; it knows each by its [`Step`] name and runs
//! it through [`step::run`], never doing a step's work itself.

pub mod dry_run;
pub mod policy;
pub mod report;
mod sequence;
pub mod step;
#[cfg(test)]
mod tests;

use step::{Failure, Step};

use crate::decide::cmdline::{self, Cmdline};
use crate::steps::base_mount::Mountd;
use crate::steps::controller::{self, Http};
use crate::steps::net::{self, Network};
use crate::steps::watchdog;
use crate::support::log;
use crate::sys::{HostPaths, MountArgs, Sys};
use ::log::{error, warn};
use nix::mount::MsFlags;
use pureboot_contract::FailureReport;
use report::Report;
use std::path::Path;
use std::time::{Duration, Instant};

/// proc and sysfs: nothing to execute, no devices.
const KERNEL_FS: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Early mounts, tolerating any already there (source, target, fstype, flags, data).
#[rustfmt::skip]
pub const EARLY_MOUNTS: [(&str, &str, &str, MsFlags, &str); 4] = [
    ("proc", "/proc", "proc", KERNEL_FS, ""),
    ("sysfs", "/sys", "sysfs", KERNEL_FS, ""),
    ("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID, "mode=0755"),
    ("tmpfs", "/run", "tmpfs", MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV), "mode=0755"),
];

/// What the boot runs against: the seams to the machine (see `sys/mod.rs` for which call
/// goes through which) and where its files are. [`Host::real`] on a Pi; fakes in tests.
pub struct Host<'a> {
    pub sys: &'a dyn Sys,
    pub net: &'a dyn Network,
    pub http: &'a dyn Http,
    pub paths: HostPaths,
    /// Every pause of the boot (retries, backoff, `wait` polls, the `panic=` delay).
    pub sleep: fn(Duration),
    /// Whether the server's NFSv3 mountd answers, and at which port (the base mount's v3
    /// check, through its rpcbind).
    pub mountd: Mountd,
    /// Arguments for the new init: those the kernel gave pi-init.
    pub init_args: Vec<String>,
}

impl Host<'static> {
    pub fn real() -> Self {
        Host {
            sys: &crate::sys::linux::LinuxSys,
            net: &net::LinuxNetwork,
            http: &controller::Ureq,
            paths: HostPaths::real(),
            sleep: std::thread::sleep,
            mountd: crate::steps::rpcbind::mountd,
            init_args: std::env::args().skip(1).collect(),
        }
    }
}

pub fn early_mounts(sys: &dyn Sys) {
    for (source, target, fstype, flags, data) in EARLY_MOUNTS {
        if crate::sys::mounted_fstype(&sys.mounts(), target).is_some() {
            continue;
        }
        let _ = std::fs::create_dir_all(target);
        let m = MountArgs::new(source, Path::new(target), fstype, flags, data);
        match sys.mount(&m) {
            Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
            // The logger is not up yet: the kernel console is all there is.
            Err(e) => eprintln!("pi-init: early mount: {m}: {e}"),
        }
    }
}

/// What a failed attempt leaves for the failure path.
struct Attempt {
    report: Report,
    failure: Option<FailureReport>,
}

/// PID 1 from here on: attempts until one execs the new root's init.
pub fn init_main(host: &Host, start: Instant) -> ! {
    let text = std::fs::read_to_string(host.paths.cmdline()).unwrap_or_default();
    let cmd = cmdline::parse(&text);
    log::set_level(cmd.log_level);
    cmd.warnings.iter().for_each(|w| warn!("command line: {w}"));
    if let Some(t) = cmd.watchdog {
        if let Err(e) = watchdog::arm(host.sys, &host.paths.watchdog(), t) {
            error!("{e}; booting without it");
        }
    }
    let mut attempt = 1;
    loop {
        let f = attempt_boot(host, &cmd, start);
        let next = policy::after_failure(&cmd, attempt, f.permanent, host.paths.shell().exists());
        attempt = policy::apply(host, &cmd, f.permanent, next, attempt);
    }
}

/// One attempt, which ends only in failure (success is an exec that does not return): a
/// panic is caught and counts as a failure at `panic`; the `FAILED at` line is printed and
/// the failure reported where the attempt had learnt to report it.
pub fn attempt_boot(host: &Host, cmd: &Cmdline, start: Instant) -> Failure {
    let mut a = Attempt {
        report: Report::new(start),
        failure: None,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sequence::run(host, cmd, &mut a)
    }));
    let f = result.unwrap_or_else(|p| Failure::at(Step::Panic, &panic_message(p.as_ref())));
    error!("{}", f.line());
    if let Some(to) = &a.failure {
        let body = a.report.failed(to, f.step.as_str(), &f.error);
        controller::post_callback(host.http, to.url(), &body);
    }
    f
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}
