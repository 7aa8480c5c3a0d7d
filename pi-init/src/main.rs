//! pi-init: PID 1 of the pureboot initramfs (see the library's `boot`); not PID 1, a dry
//! run that prints what it would boot (`boot::dry_run`).

use ::log::info;
use pi_init::sys::linux::LinuxSys;
use pi_init::{boot, boot::dry_run, support::log};
use std::time::Instant;

fn main() {
    let start = Instant::now();
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
