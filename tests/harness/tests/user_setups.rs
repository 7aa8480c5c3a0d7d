//! Virtual Pi boots in the set-ups users have outside pureboot's own: upstream PureBoot's
//! controller and its plain root exports, kernel-style NFS roots on a board without a serial,
//! and an NFS root named by the site's DHCP server (next-server and option 17). Each runs in
//! its own private namespace, bounded, and prints the console and server logs on failure.

use std::path::Path;
use std::time::Duration;

use pureboot_contract::ids::{Hostname, Mac};
use pureboot_harness::console::pi_init_failure;
use pureboot_harness::env::TestEnv;
use pureboot_harness::lab::{default_hostname, Lab, LabOptions};
use pureboot_harness::process::Daemon;
use pureboot_harness::qemu::{Netdev, Outcome, VirtualPi, HOST_FROM_GUEST};
use pureboot_harness::wait::wait_until;
use pureboot_harness::{initramfs, lan, pi_init_env, serial};
use serde_json::Value;

/// A lab with ganesha only: no pureboot controller.
fn nfs_only_lab(name: &str, env: &'static TestEnv) -> Lab {
    let opts = LabOptions {
        controller: false,
        ..Default::default()
    };
    Lab::start(name, env, opts).unwrap_or_else(|e| panic!("{name}: starting the lab: {e}"))
}

/// A guest booting pi-init's initramfs with `params`, no controller URL.
fn guest(env: &TestEnv, serial: &str, params: &[String]) -> VirtualPi {
    let initrd = initramfs::pi_init(env).expect("checked by pi_init_env");
    params.iter().fold(
        VirtualPi::new(serial, &env.kernel().image, &initrd).arg("pureboot.log=debug"),
        |pi, p| pi.arg(p.clone()),
    )
}

const STUB_PORT: u16 = 8090;

/// upstream PureBoot's controller, as far as a Pi sees it, in the lab's namespace.
fn start_upstream_stub(lab: &Lab, nfs_path: &Path, record: &Path) -> Daemon {
    let bin = require_bin(lab.env, "pureboot-upstream-stub");
    let mut cmd = lab.ns.command(bin);
    cmd.args(["--listen", &format!("127.0.0.1:{STUB_PORT}")])
        .args(["--public", &format!("http://{HOST_FROM_GUEST}:{STUB_PORT}")])
        .args(["--nfs-server", HOST_FROM_GUEST])
        .arg("--nfs-path")
        .arg(nfs_path)
        .arg("--record")
        .arg(record);
    let mut stub = Daemon::spawn("upstream stub", cmd, &lab.dir.join("upstream-stub.log"))
        .expect("starting the upstream stub");
    wait_until(Duration::from_secs(10), || {
        lab.ns.tcp_listening(STUB_PORT) || stub.exited().is_some()
    })
    .unwrap_or_else(|_| panic!("the upstream stub did not listen:\n{}", stub.log_tail(20)));
    stub
}

fn require_bin(env: &TestEnv, name: &str) -> std::path::PathBuf {
    env.binary(name)
        .unwrap_or_else(|e| panic!("{name}: {e} (tests/test.sh builds it)"))
}

/// The POSTs the stub recorded, in order.
fn posts(record: &Path) -> Vec<Value> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn upstream_controller_and_a_plain_root_export() {
    let name = "upstream-controller";
    let env = pi_init_env!(name, without_controller);
    let lab = nfs_only_lab(name, env);
    let root = lab.stage_plain_root("pi-roots/node1").unwrap();
    let record = lab.dir.join("posts.jsonl");
    let _stub = start_upstream_stub(&lab, &root, &record);
    let s = serial(0x101);
    let url = format!("pureboot.url=http://{HOST_FROM_GUEST}:{STUB_PORT}");

    // An answer with upstream's fields only, a plain root at nfs_path: it boots.
    let run = lab
        .boot(&guest(env, &s, std::slice::from_ref(&url)), "boot")
        .unwrap();
    let report = lab.expect_report(&run);
    lab.check(
        run.console.contains("plain root filesystem found"),
        "pi-init logs which layout it found",
        &run,
    );
    lab.check(report.get("root_fs") == "overlay", "an overlay root", &run);
    lab.check(
        report.get("upper") != "none",
        "a writable upper layer (tmpfs)",
        &run,
    );
    lab.check(
        report.get("hostname") == default_hostname(&s),
        "the node's name in the writable layer, not the base's",
        &run,
    );
    lab.check(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap() == "base-image\n",
        "the export was not written",
        &run,
    );
    let p = posts(&record);
    lab.check(
        p.len() == 1 && p[0]["body"]["success"] == Value::Bool(true),
        &format!("one installed callback (answered 401, boot went on): {p:?}"),
        &run,
    );

    // A boot that fails reports upstream's way: success false on the callback URL.
    drop(_stub);
    std::fs::remove_file(&record).ok();
    let _stub = start_upstream_stub(&lab, &lab.export().join("pi-roots/missing"), &record);
    let pi = guest(
        env,
        &s,
        &[
            url,
            "pureboot.on_failure=halt".into(),
            "pureboot.timeout=2".into(),
        ],
    );
    let run = lab.boot(&pi, "failing").unwrap();
    lab.check(
        run.outcome == Outcome::Exited,
        "the failure policy halted it",
        &run,
    );
    lab.check(
        pi_init_failure(&run.console).is_some_and(|(step, _)| step == "nfs-mount"),
        "FAILED at nfs-mount",
        &run,
    );
    let p = posts(&record);
    let failed = p
        .iter()
        .find(|x| x["body"]["success"] == Value::Bool(false));
    lab.check(
        failed.is_some_and(|f| {
            f["path"]
                .as_str()
                .is_some_and(|u| u.ends_with("/installed"))
                && f["body"]["error"].as_str().is_some_and(|e| !e.is_empty())
                && f["body"]["step"] == "nfs-mount"
        }),
        &format!("success:false with the error, posted to the callback URL: {p:?}"),
        &run,
    );
}

#[test]
fn kernel_nfs_roots_on_a_board_without_a_serial() {
    let name = "no-serial";
    let env = pi_init_env!(name, without_controller);
    let lab = nfs_only_lab(name, env);
    let root = lab.stage_plain_root("roots/x").unwrap();
    let s = serial(0x102);
    let cases = [
        (
            "nfsroot-v3",
            vec![
                "root=/dev/nfs".to_string(),
                format!("nfsroot={HOST_FROM_GUEST}:{},vers=3", root.display()),
                "ip=dhcp".into(),
            ],
            "3",
        ),
        (
            "dracut",
            vec![format!("root=nfs:{HOST_FROM_GUEST}:{}", root.display())],
            "4",
        ),
        (
            "nfs4",
            vec![format!("root=nfs4:{HOST_FROM_GUEST}:{}", root.display())],
            "4",
        ),
    ];
    for (label, params, version) in cases {
        let pi = guest(env, &s, &params).without_serial();
        let run = lab.boot(&pi, label).unwrap();
        let report = lab.expect_report(&run);
        let by_mac = Hostname::for_mac(&Mac::parse(&pi.mac()).unwrap()).to_string();
        lab.check(
            run.console.contains("this node is known by its MAC"),
            &format!("{label}: says the identity comes from the MAC"),
            &run,
        );
        lab.check(
            report.get("hostname") == by_mac,
            &format!("{label}: hostname {by_mac} from the MAC"),
            &run,
        );
        lab.check(
            report.get("nfs").starts_with(version),
            &format!("{label}: NFS v{version}"),
            &run,
        );
        lab.check(
            report.get("machine_id").len() == 32,
            &format!("{label}: a machine id"),
            &run,
        );
    }
}

#[test]
fn nfs_root_from_dhcp_next_server_and_option_17() {
    let name = "dhcp-root";
    let env = pi_init_env!(name, without_controller);
    let lab = nfs_only_lab(name, env);
    let root = lab.stage_plain_root("roots/from-dhcp").unwrap();
    lan::bridge_with_tap(&lab).unwrap_or_else(|e| panic!("{name}: the bridge: {e}"));
    let root_path = format!("--dhcp-option=option:root-path,{}", root.display());
    let dhcp = lan::Dhcp::start(&lab, "1h", &[root_path]).unwrap_or_else(|e| panic!("{name}: {e}"));

    let s = serial(0x103);
    let pi = guest(env, &s, &["root=/dev/nfs".into(), "ip=dhcp".into()])
        .netdev(Netdev::Tap(lan::TAP.into()));
    let run = lab.boot(&pi, "boot").unwrap();
    if run.outcome != Outcome::Exited {
        eprintln!("----- dnsmasq -----\n{}", dhcp.daemon.log_tail(30));
    }
    let report = lab.expect_report(&run);
    lab.check(
        run.console
            .contains(&format!("booting 10.0.3.2:{}", root.display())),
        "server from next-server (10.0.3.2, not the DHCP server 10.0.3.1), path from option 17",
        &run,
    );
    lab.check(report.get("nfs") != "none", "root over NFS", &run);
}
