//! The boot's steps, each one module of mechanics: it touches the machine only through
//! [`crate::sys`] and takes its decisions from [`crate::decide`]. The orchestration in
//! [`crate::boot`] runs them in order; no step calls back into it.
//!
//! In boot order: [`serial`] (the board's serial), [`net`] (link, DHCP or `ip=`), [`modules`]
//! with [`coldplug`] (the kernel modules, on their own threads), [`controller`] (the boot
//! API, whose answers also set the [`clock`] of a board without one), [`nfs`] (the export's
//! mount), [`base_mount`] (the base image's own cached mount,
//! with [`rpcbind`] checking that NFSv3 can answer), [`lower`] (the export's layout and the
//! base image chosen and placed), [`squashfs`] (a squashfs base's loop mount), [`overlay`] (the new root on them), [`volumes`] (the node's
//! ext4 images at their paths in it), or [`local`] (a root on a block device), then
//! [`agent_unit`] (the post-boot agent left in `/run`), [`handover`] (what the root's network
//! stack needs, in `/run`) and [`switch_root`] (into it); [`watchdog`] is armed at start and
//! handed over to the new init.

pub mod agent_unit;
pub mod base_mount;
pub mod clock;
pub mod coldplug;
pub mod controller;
pub mod handover;
pub mod local;
pub mod lower;
pub mod modules;
pub mod net;
pub mod nfs;
pub mod overlay;
pub mod rpcbind;
pub mod serial;
pub mod squashfs;
pub mod switch_root;
pub mod volumes;
pub mod watchdog;

#[cfg(test)]
mod namespace_tests;
