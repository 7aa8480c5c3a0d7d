//! pi-init as a library: the boot's pieces, each a module of one concern, and the
//! orchestration that runs them ([`boot`]). `main.rs` only decides between PID 1 and a dry
//! run; the fuzz targets and the host tests use the same modules.
//!
//! Data flows one way: the kernel command line ([`cmdline`]) and the controller's answer
//! ([`controller`]) become a [`plan::Decision`]; [`boot`] carries it out through the seams
//! bundled in [`boot::Host`] ([`sys::Sys`] for the kernel, [`net::Network`] for the network
//! step, [`controller::Http`] for HTTP, [`sys::HostPaths`] for the files it reads; the table
//! at the top of `sys.rs` says which call goes where) and [`report`] records each step for
//! the callback.

pub mod background;
pub mod base_mount;
pub mod boot;
pub mod cmdline;
pub mod coldplug;
pub mod controller;
pub mod dry_run;
pub mod log;
pub mod loopdev;
pub mod modules;
pub mod net;
pub mod nfs;
pub mod overlay;
pub mod plan;
pub mod report;
pub mod rpcbind;
pub mod serial;
pub mod switch_root;
pub mod sys;
#[cfg(test)]
mod testutil;
pub mod watchdog;

#[cfg(test)]
mod namespace_test;
