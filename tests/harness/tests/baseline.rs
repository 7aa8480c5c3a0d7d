//! The busybox baseline (a busybox shell flow, tests/baseline/init) boots a virtual Pi from ganesha. It needs no
//! pureboot binary, so it proves the harness itself (namespace, rpcbind, ganesha, QEMU, the
//! tiny root) and gives the figure pi-init is measured against.

use std::time::Duration;

use pureboot_harness::console::time_of;
use pureboot_harness::env::TestEnv;
use pureboot_harness::lab::{Lab, TINY};
use pureboot_harness::qemu::{VirtualPi, HOST_FROM_GUEST};
use pureboot_harness::{initramfs, require, serial};

#[test]
fn baseline_shell_flow_boots_the_tiny_root_over_nfsv4() {
    let name = "baseline";
    let env = require!(name, TestEnv::get());
    let initrd = require!(name, initramfs::baseline(env));
    let s = serial(0xb);
    let lab = Lab::without_controller(name, env, &s, "pi-baseline").unwrap();

    let pi = VirtualPi::new(&s, &env.kernel().image, &initrd)
        .arg(format!("pureboot.nfs_server={HOST_FROM_GUEST}"))
        .arg(format!("pureboot.nfs_path={}", lab.export().display()))
        .arg(format!("pureboot.base_image={TINY}"))
        .timeout(Duration::from_secs(120));
    let run = lab.boot(&pi, "baseline").unwrap();
    let report = lab.expect_report(&run);

    assert_eq!(
        report.get("hostname"),
        "pi-baseline",
        "hostname from the node layer"
    );
    assert!(
        report.get("nfs").starts_with('4'),
        "NFSv4 root: {:?}",
        report
    );
    assert_eq!(report.get("root_fs"), "overlay");
    let start = time_of(&run.console, "baseline: start");
    let exec = time_of(&run.console, "baseline: exec");
    lab.check(
        start.is_some() && exec.is_some(),
        "baseline markers on the console",
        &run,
    );
    println!(
        "baseline: start -> exec of the new root's init: {:.3} s (QEMU run {:.1} s)",
        exec.unwrap() - start.unwrap(),
        run.elapsed.as_secs_f64()
    );
}
