//! pi-init as a library: the boot's pieces, each a module of one concern, and the
//! orchestration that runs them ([`boot`]). `main.rs` only decides between PID 1 and a dry
//! run; the fuzz targets and the host tests use the same modules.
//!
//! Data flows one way: the kernel command line ([`cmdline`]) and the controller's answer
//! ([`controller`]) become a [`plan::Decision`]; [`boot`] carries it out through the seams
//! ([`sys::Sys`] for the kernel, [`controller::Http`] for HTTP) and [`report`] records each
//! step for the callback.

pub mod background;
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
pub mod serial;
pub mod switch_root;
pub mod sys;
#[cfg(test)]
mod testutil;
pub mod watchdog;

#[cfg(test)]
mod namespace_test;
