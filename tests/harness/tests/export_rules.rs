//! The export rules `pureboot-controller nfs exports --format ganesha` writes, loaded into the
//! lab's ganesha: two virtual Pis on tap devices of the lab's namespace, each at its own
//! address (static `ip=`), reach the controller and ganesha at the bridge's 10.0.2.2. Pi A
//! boots with the `image` overlay and writes its layer (persist.img through a loop mount);
//! Pi B boots, then from inside its guest mounts the export root over NFSv4 and tries to
//! create a file in Pi A's directory, in `base/` and in the export root: refused, as the errno
//! shows; outside, nothing of Pi B's landed there.

use pureboot_harness::console::GuestReport;
use pureboot_harness::controller::NodeSpec;
use pureboot_harness::lab::{diskless_node, Lab, LabOptions, TINY};
use pureboot_harness::netns::Netns;
use pureboot_harness::process;
use pureboot_harness::qemu::{Netdev, HOST_FROM_GUEST};
use pureboot_harness::{pi_init_env, serial};

const NETWORK: &str = "10.0.2.0/24";
const IP_A: &str = "10.0.2.21";
const IP_B: &str = "10.0.2.22";

/// A bridge holding the address the guests know the host by (10.0.2.2, where the controller
/// and ganesha listen) and one tap device per guest on it.
fn bridge_with_taps(ns: &Netns, taps: &[&str]) -> Result<(), String> {
    let mut steps = vec![
        "link add br0 type bridge".to_string(),
        format!("addr add {HOST_FROM_GUEST}/24 dev br0"),
    ];
    for tap in taps {
        steps.push(format!("tuntap add dev {tap} mode tap"));
        steps.push(format!("link set {tap} master br0"));
        steps.push(format!("link set {tap} up"));
    }
    steps.push("link set br0 up".into());
    for args in &steps {
        process::run(ns.command("ip").args(args.split(' ')))?;
    }
    Ok(())
}

/// `PUREBOOT-TRY path=<p> result=<r>` lines of a console: (path, result).
fn tries(console: &str) -> Vec<(String, String)> {
    console
        .lines()
        .filter_map(|l| l.split("PUREBOOT-TRY ").nth(1))
        .map(|rest| {
            let field = |k: &str| {
                rest.split_whitespace()
                    .find_map(|f| f.strip_prefix(k))
                    .unwrap_or("")
                    .to_string()
            };
            (field("path="), field("result="))
        })
        .collect()
}

#[test]
fn each_pi_writes_only_its_own_directory_under_the_generated_rules() {
    let name = "export-rules";
    let env = pi_init_env!(name);
    let opts = LabOptions {
        serve: false,
        ..Default::default()
    };
    let mut lab = Lab::start(name, env, opts).unwrap_or_else(|e| panic!("{name}: lab: {e}"));
    lab.import_tiny_root(TINY).unwrap();
    bridge_with_taps(&lab.ns, &["tap0", "tap1"])
        .unwrap_or_else(|e| panic!("{name}: the bridge: {e}"));

    let (a, b) = (serial(0x201), serial(0x202));
    lab.add_node(
        &a,
        NodeSpec {
            overlay: Some("image".into()),
            ..diskless_node("pi-rules-a")
        },
    )
    .unwrap();
    lab.add_node(&b, diskless_node("pi-rules-b")).unwrap();
    let nodes = lab.export().join("nodes");
    for s in [&a, &b] {
        assert!(
            nodes.join(s).is_dir(),
            "{name}: node add prepared {s}'s directory (ganesha exports only what exists)"
        );
    }

    // The rules as an operator makes them, loaded in place of the lab's export-everything.
    let rules = lab
        .controller()
        .cli(&[
            "nfs",
            "exports",
            "--format",
            "ganesha",
            "--address",
            &format!("{a}={IP_A}"),
            "--address",
            &format!("{b}={IP_B}"),
            "--network",
            NETWORK,
        ])
        .unwrap_or_else(|e| panic!("{name}: nfs exports: {e}"));
    std::fs::write(lab.dir.join("generated-exports.conf"), &rules).unwrap();
    lab.reload_nfs(&rules)
        .unwrap_or_else(|e| panic!("{name}: ganesha refused the generated rules: {e}"));
    lab.controller().listen_on("0.0.0.0").unwrap();
    let ns = &lab.ns;
    lab.controller
        .as_mut()
        .expect("a controller")
        .serve(ns)
        .unwrap_or_else(|e| panic!("{name}: controller: {e}"));

    let root = lab.export().display().to_string();
    let static_ip =
        |ip: &str, host: &str| format!("ip={ip}::{HOST_FROM_GUEST}:255.255.255.0:{host}:eth0:off");

    // Pi A, at its own address: boots and writes its layer.
    let pi_a = lab
        .pi(&a)
        .unwrap()
        .netdev(Netdev::Tap("tap0".into()))
        .arg(static_ip(IP_A, "pi-rules-a"))
        .arg("probe.write=written-by-a");
    let run_a = lab.boot(&pi_a, "pi-a").unwrap();
    let report_a = lab.expect_report(&run_a);
    lab.check(
        report_a.get("hostname") == "pi-rules-a",
        "Pi A booted with its own layer",
        &run_a,
    );
    lab.check(
        report_a.get("probe") == "written-by-a" && report_a.get("base_file") == "absent",
        "Pi A wrote and deleted in its layer (persist.img, written over NFS)",
        &run_a,
    );
    // From outside: the file Pi A wrote is in its persist image (generation 1) on the export.
    let persist = nodes.join(&a).join("persist.1.img");
    let written = process::run(
        std::process::Command::new("debugfs")
            .args(["-R", "cat /upper/var/probe"])
            .arg(&persist),
    );
    lab.check(
        written.as_deref().is_ok_and(|t| t.trim() == "written-by-a"),
        &format!(
            "Pi A's write is in {} (debugfs): {written:?}",
            persist.display()
        ),
        &run_a,
    );

    // Pi B, at another address: boots, then tries Pi A's directory and base/ over NFS.
    let pi_b = lab
        .pi(&b)
        .unwrap()
        .netdev(Netdev::Tap("tap1".into()))
        .arg(static_ip(IP_B, "pi-rules-b"))
        .arg(format!("probe.nfs={HOST_FROM_GUEST}:{root}"))
        .arg(format!(
            "probe.try=.,nodes,nodes/{a},base,base/{TINY},nodes/{b}"
        ))
        .arg(format!("probe.mount3=nodes/{a},base/{TINY},nodes/{b}"));
    let run_b = lab.boot(&pi_b, "pi-b").unwrap();
    let report_b: GuestReport = lab.expect_report(&run_b);
    lab.check(
        report_b.get("hostname") == "pi-rules-b",
        "Pi B booted with its own layer",
        &run_b,
    );
    let got = tries(&run_b.console);
    let result = |p: &str| {
        got.iter()
            .find(|(path, _)| path == p)
            .map(|(_, r)| r.as_str())
            .unwrap_or("missing")
    };
    eprintln!("{name}: Pi B's tries: {got:?}");
    for p in [format!("nodes/{b}"), format!("v3:nodes/{b}")] {
        lab.check(
            result(&p) == "ok",
            &format!(
                "Pi B can write its own directory, {p} (the probe works): {}",
                result(&p)
            ),
            &run_b,
        );
    }
    // Over NFSv4, ganesha's pseudo file system does not even show Pi B an export it has no
    // access to (ENOENT); a mount of it by path over NFSv3 is refused.
    let other = format!("nodes/{a}");
    lab.check(
        matches!(result(&other), "ENOENT" | "EACCES" | "EPERM" | "EROFS"),
        &format!(
            "Pi B cannot write Pi A's directory over NFSv4: {}",
            result(&other)
        ),
        &run_b,
    );
    let other3 = format!("v3:nodes/{a}");
    lab.check(
        matches!(
            result(&other3),
            "mount-refused:EACCES" | "mount-refused:EPERM" | "EACCES" | "EROFS"
        ),
        &format!(
            "Pi B cannot write Pi A's directory over NFSv3: {}",
            result(&other3)
        ),
        &run_b,
    );
    // The export root and nodes/ are NFSv4's read-only pseudo file system.
    for p in [".", "nodes"] {
        lab.check(
            matches!(result(p), "EROFS" | "EACCES"),
            &format!("Pi B cannot write the export root's {p}: {}", result(p)),
            &run_b,
        );
    }
    for p in [
        "base".to_string(),
        format!("base/{TINY}"),
        format!("v3:base/{TINY}"),
    ] {
        lab.check(
            matches!(result(&p), "EROFS" | "EACCES"),
            &format!("Pi B cannot write {p}: {}", result(&p)),
            &run_b,
        );
    }
    // And from outside: nothing of Pi B's landed anywhere but its own directory.
    for dir in [
        lab.export().to_path_buf(),
        nodes.clone(),
        nodes.join(&a),
        lab.export().join("base"),
        lab.export().join("base").join(TINY),
    ] {
        lab.check(
            !dir.join(format!("probe-{b}")).exists(),
            &format!("no probe file of Pi B's in {}", dir.display()),
            &run_b,
        );
    }
    lab.check(
        nodes.join(&b).join(format!("probe-{b}")).is_file(),
        "Pi B's probe file in its own directory",
        &run_b,
    );
}
