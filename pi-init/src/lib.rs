//! pi-init as a library: PID 1's boot in four rooms, each importing only the rooms below it.
//! `main.rs` only decides between PID 1 and a dry run; the fuzz targets and the host tests
//! use the same modules.
//!
//! - [`boot`]: the orchestration. It runs the steps in order ([`boot::step::Step`] names each),
//!   times them into the report, turns every error into one failure and applies the failure
//!   policy. Only it imports the steps.
//! - [`steps`]: one module per step's mechanics (network, modules, controller, NFS, the base
//!   image's own mount, overlay, switch root, watchdog). They touch the machine only through
//!   [`sys`] and take their decisions from [`decide`].
//! - [`decide`]: pure decisions: the kernel command line, the board serial, the boot plan, the
//!   NFS options and `ip=`. Text in, typed values out; no I/O beyond reading given files.
//! - [`sys`]: the seam to the kernel ([`sys::Sys`], [`sys::HostPaths`]): the Linux
//!   implementation, where every `unsafe` block lives, and the recording fake for tests.
//! - [`support`]: logging to the console and the kernel log, and named background threads.
//!
//! Beside the boot, [`agent`]: the same binary run again by the booted root's systemd (from
//! the copy `steps::agent_unit` leaves in `/run`), for the post-boot steps and the "boot
//! complete" report. It imports the steps' HTTP client and the rooms below.

pub mod agent;
pub mod boot;
pub mod decide;
pub mod steps;
pub mod support;
pub mod sys;
