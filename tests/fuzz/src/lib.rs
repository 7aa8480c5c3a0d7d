//! pi-init is a binary crate: its modules are compiled here a second time, as a library, so
//! the fuzz targets can call the pure ones (command line, `ip=`, DHCP replies, the plan).
//! The list mirrors `mod` in pi-init/src/main.rs (a module added there must be added here
//! if another one names it through `crate::`). Nothing here runs as PID 1.

#![allow(dead_code, unused_imports, unused_macros)]

#[path = "../../../pi-init/src/cmdline.rs"]
pub mod cmdline;
#[path = "../../../pi-init/src/controller.rs"]
pub mod controller;
#[path = "../../../pi-init/src/log.rs"]
pub mod log;
#[path = "../../../pi-init/src/loopdev.rs"]
pub mod loopdev;
#[path = "../../../pi-init/src/modinfo.rs"]
pub mod modinfo;
#[path = "../../../pi-init/src/modules.rs"]
pub mod modules;
#[path = "../../../pi-init/src/net/mod.rs"]
pub mod net;
#[path = "../../../pi-init/src/nfs.rs"]
pub mod nfs;
#[path = "../../../pi-init/src/overlay.rs"]
pub mod overlay;
#[path = "../../../pi-init/src/plan.rs"]
pub mod plan;
#[path = "../../../pi-init/src/report.rs"]
pub mod report;
#[path = "../../../pi-init/src/serial.rs"]
pub mod serial;
#[path = "../../../pi-init/src/switch_root.rs"]
pub mod switch_root;
#[path = "../../../pi-init/src/sys.rs"]
pub mod sys;
#[path = "../../../pi-init/src/watchdog.rs"]
pub mod watchdog;

/// `net::dhcp` is private to `net`; its message codec has no dependencies, so it is
/// compiled once more on its own.
#[path = "../../../pi-init/src/net/dhcp/message.rs"]
pub mod dhcp_message;
