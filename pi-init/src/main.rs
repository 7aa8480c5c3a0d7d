//! pi-init: PID 1 of the pureboot initramfs (see the library's `boot`); `pi-init agent`, the
//! booted root's post-boot agent (`agent`); otherwise a dry run that prints what it would
//! boot (`boot::dry_run`).

use ::log::info;
use pi_init::sys::linux::LinuxSys;
use pi_init::sys::HostPaths;
use pi_init::{agent, boot, boot::dry_run, support::log};
use pureboot_contract::after_boot::AGENT_ARG;
use std::time::Instant;

fn main() {
    let start = Instant::now();
    if std::env::args().nth(1).as_deref() == Some(AGENT_ARG) {
        log::init(false);
        std::process::exit(agent::main(&HostPaths::real()));
    }
    let pid1 = nix::unistd::getpid().as_raw() == 1;
    if pid1 {
        boot::early_mounts(&LinuxSys);
    }
    log::init(pid1);
    info!("start");
    if pid1 {
        boot::init_main(&boot::Host::real(), start)
    }
    std::process::exit(dry_run::run(std::env::args().skip(1).collect()));
}
