//! The virtual Pi scenarios: pi-init's initramfs (built by pureboot-image) boots QEMU `virt`
//! guests against nfs-ganesha and the controller, each in its own private namespace; two boot
//! QEMU's Pi 3B (`raspi3b`): serial from the device tree, network over USB, and a
//! failure-policy reboot that really resets the board; one finds its NIC drivers by modalias.
//! Each is named for what it shows, asserts, is bounded in time, and prints the guest console
//! and the servers' logs when it fails. They skip (loudly) without root or the set-up cache,
//! or before the binaries are built; tests/test.sh makes a missing piece a failure.

use std::time::{Duration, Instant};

use pureboot_harness::console::{kernel_panicked, pi_init_failure};
use pureboot_harness::controller::{mentions, node_state, objects, NodeSpec};
use pureboot_harness::env::TestEnv;
use pureboot_harness::guest_root;
use pureboot_harness::lab::{default_hostname, diskless_node, Lab, LabOptions, TINY, WORKFLOW};
use pureboot_harness::nfs_server::Protocols;
use pureboot_harness::qemu::{Outcome, HOST_FROM_GUEST};
use pureboot_harness::wait::poll;
use pureboot_harness::{initramfs, pi_init_env, require, serial};
use serde_json::Value;

/// A virtual Pi 3B's prerequisites on top of pi-init's: its initramfs (`--preset rpi3`) and
/// fdtput for the serial in its device tree.
macro_rules! pi3_env {
    ($name:expr) => {{
        let env = pi_init_env!($name);
        require!(
            $name,
            pureboot_harness::host::locate("fdtput")
                .map(|_| ())
                .ok_or("`fdtput` not found: run `sudo tests/setup.sh` (device-tree-compiler)")
        );
        require!($name, initramfs::pi_init_rpi3(env));
        env
    }};
}

/// A lab with the controller serving and the tiny root imported as `tiny`.
fn lab_with_tiny_root(name: &str, env: &'static TestEnv, opts: LabOptions) -> Lab {
    let lab =
        Lab::start(name, env, opts).unwrap_or_else(|e| panic!("{name}: starting the lab: {e}"));
    lab.import_tiny_root(TINY).unwrap_or_else(|e| {
        panic!(
            "{name}: importing the tiny root: {e}\n{}",
            lab.diagnostics()
        )
    });
    lab
}

/// The machine-id the controller rendered into the node layer.
fn rendered_machine_id(lab: &Lab, serial: &str) -> String {
    let p = lab
        .export()
        .join("nodes")
        .join(serial)
        .join("upper/etc/machine-id");
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The `installed` callback body the controller recorded (an object carrying `success`).
fn installed_report(node: &Value) -> Option<&serde_json::Map<String, Value>> {
    objects(node)
        .into_iter()
        .find(|o| o.get("success") == Some(&Value::Bool(true)))
}

/// Waits until the controller has recorded what `done` looks for (callbacks are asynchronous
/// to the guest powering off only by milliseconds, but the CLI reads the database).
fn node_when(lab: &Lab, serial: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let _ = poll(Duration::from_secs(10), Duration::from_millis(300), || {
        last = lab.controller().node(serial).unwrap_or(Value::Null);
        done(&last)
    });
    last
}

#[test]
fn a_board_whose_clock_starts_in_2001_takes_the_controllers_time() {
    let name = "clock";
    let env = pi_init_env!(name);
    let lab = lab_with_tiny_root(name, env, LabOptions::default());
    let s = serial(0x20);
    lab.add_node(&s, diskless_node(&default_hostname(&s)))
        .unwrap();

    let epoch = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let before = epoch();
    let run = lab
        .boot(&lab.pi(&s).unwrap().rtc_base("2001-01-01"), "boot")
        .unwrap();
    let after = epoch();
    let report = lab.expect_report(&run);
    lab.check(
        run.console.contains("clock set from the controller's"),
        "pi-init says it set the clock",
        &run,
    );
    // The root read its clock during the boot: within the boot's window on the host's clock,
    // give or take the header's second and the tolerance (2001 without pi-init).
    let clock: u64 = report.get("clock").parse().unwrap_or(0);
    lab.check(
        clock + 2 >= before && clock <= after + 2,
        &format!("the root's clock {clock} within [{before}, {after}] of the host's, ±2 s"),
        &run,
    );
}

#[test]
fn tmpfs_overlay_with_identity_from_the_controller() {
    let name = "tmpfs-overlay";
    let env = pi_init_env!(name);
    let lab = lab_with_tiny_root(name, env, LabOptions::default());
    let s = serial(1);
    lab.add_node(&s, diskless_node("pi-tmpfs")).unwrap();

    let run = lab.boot(&lab.pi(&s).unwrap(), "boot").unwrap();
    let report = lab.expect_report(&run);
    lab.check(
        run.console.contains("pi-init: exec "),
        "pi-init's exec line",
        &run,
    );
    lab.check(
        report.get("hostname") == "pi-tmpfs",
        "hostname from the controller",
        &run,
    );
    let mid = rendered_machine_id(&lab, &s);
    lab.check(
        mid.len() == 32 && mid.chars().all(|c| c.is_ascii_hexdigit()),
        "32-hex machine-id",
        &run,
    );
    lab.check(
        report.get("machine_id") == mid,
        "machine-id from the controller's node layer",
        &run,
    );
    lab.check(
        report.get("root_fs") == "overlay",
        "root is an overlay",
        &run,
    );
    lab.check(report.get("nfs").starts_with('4'), "NFSv4 by default", &run);
    lab.check(
        report.get("volumes") == "v3,v4",
        "the base image on a mount of its own, NFSv3, beside the export's v4 mount",
        &run,
    );
    lab.check(
        report.get("ext4") == "absent",
        "a tmpfs boot leaves the disk modules (loop, ext4) unloaded",
        &run,
    );

    let node = node_when(&lab, &s, |n| installed_report(n).is_some());
    let mode = installed_report(&node)
        .and_then(|o| o.get("overlay_mode"))
        .and_then(Value::as_str);
    assert_eq!(
        mode,
        Some("tmpfs"),
        "{name}: callback's overlay_mode: {node:#}"
    );
    let state = node_state(&node).unwrap_or("");
    assert!(
        installed_report(&node).is_some(),
        "{name}: no installed callback recorded: {node:#}"
    );
    assert!(
        matches!(state, "installed" | "active"),
        "{name}: state moved on to installed/active, got {state:?}: {node:#}"
    );
}

/// A squashfs base image (imported with `--format squashfs`) and a directory base in one
/// fleet, one ganesha: the squashfs node boots its file loop-mounted under a tmpfs overlay,
/// and under an image overlay whose writes and deletions stay across boots; the directory
/// node beside it boots as before and loads no squashfs.
#[test]
fn a_squashfs_base_and_a_directory_base_boot_in_one_fleet() {
    let name = "squashfs-base";
    let env = pi_init_env!(name);
    let lab = lab_with_tiny_root(name, env, LabOptions::default());
    let tar = lab.tiny_root_tarball().unwrap();
    let tar = tar.display().to_string();
    let import = ["image", "import", &tar, "tiny-sq", "--format", "squashfs"];
    let out = lab.controller().cli(&import);
    let out = out.unwrap_or_else(|e| panic!("{name}: {e}\n{}", lab.diagnostics()));
    assert!(out.contains("squashfs (zstd)"), "{name}: {out}");
    let dir = lab.export().join("base/tiny-sq");
    let held: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        held.len() == 2 && held.contains(&"root.squashfs".to_string()),
        "{name}: base/tiny-sq holds the file and its digest only: {held:?}"
    );

    let (sq, img, plain) = (serial(0x27), serial(0x28), serial(0x29));
    let on_squashfs = |hostname: &str, overlay: &str| NodeSpec {
        base_image: Some("tiny-sq".into()),
        overlay: Some(overlay.into()),
        ..diskless_node(hostname)
    };
    lab.add_node(&sq, on_squashfs("pi-squashfs", "tmpfs"))
        .unwrap();
    lab.add_node(&img, on_squashfs("pi-squashfs-image", "image"))
        .unwrap();
    lab.add_node(&plain, diskless_node("pi-directory")).unwrap();

    let run = lab.boot(&lab.pi(&sq).unwrap(), "squashfs").unwrap();
    let r = lab.expect_report(&run);
    // What pi-init did for it, for the log of the run.
    run.console
        .lines()
        .filter(|l| l.contains("squashfs") || l.contains("disk modules"))
        .for_each(|l| eprintln!("{name}: {l}"));
    lab.check(
        run.console
            .contains("pi-init: base image tiny-sq: squashfs "),
        "pi-init mounts the squashfs file",
        &run,
    );
    lab.check(
        r.get("root_fs") == "overlay" && r.get("hostname") == "pi-squashfs",
        "an overlay root with the node's identity",
        &run,
    );
    lab.check(
        r.get("squashfs") == "loaded" && r.get("base_file") == "present",
        "the base's files read through the squashfs lower",
        &run,
    );
    lab.check(
        r.get("ext4") == "absent",
        "of the disk list, only loop and squashfs for a tmpfs overlay",
        &run,
    );
    let node = node_when(&lab, &sq, |n| installed_report(n).is_some());
    let base = installed_report(&node).and_then(|o| o.get("base_image"));
    assert_eq!(
        base.and_then(Value::as_str),
        Some("tiny-sq"),
        "{name}: {node:#}"
    );

    // The image overlay on a squashfs lower: writes and deletions kept, the base untouched.
    // The first boot writes and deletes; the second finds both in the node's image.
    for (label, write) in [("squashfs-image1", true), ("squashfs-image2", false)] {
        let pi = lab.pi(&img).unwrap();
        let pi = if write {
            pi.arg("probe.write=kept-on-squashfs")
        } else {
            pi
        };
        let run = lab.boot(&pi, label).unwrap();
        let r = lab.expect_report(&run);
        lab.check(
            r.get("probe") == "kept-on-squashfs" && r.get("base_file") == "absent",
            &format!("{label}: the write and the deletion over the squashfs base"),
            &run,
        );
    }

    let run = lab.boot(&lab.pi(&plain).unwrap(), "directory").unwrap();
    let r = lab.expect_report(&run);
    lab.check(
        r.get("hostname") == "pi-directory" && r.get("base_file") == "present",
        "the directory base beside it boots as before",
        &run,
    );
    lab.check(
        r.get("squashfs") == "absent" && !run.console.contains(": squashfs "),
        "a directory base loads no squashfs",
        &run,
    );
}

#[test]
fn image_overlay_persists_writes_and_deletions() {
    let name = "image-overlay";
    let env = pi_init_env!(name);
    let lab = lab_with_tiny_root(name, env, LabOptions::default());
    let s = serial(2);
    lab.add_node(
        &s,
        NodeSpec {
            overlay: Some("image".into()),
            ..diskless_node("pi-image")
        },
    )
    .unwrap();

    let first = lab
        .boot(
            &lab.pi(&s).unwrap().arg("probe.write=kept-across-boots"),
            "boot1",
        )
        .unwrap();
    let r1 = lab.expect_report(&first);
    lab.check(
        r1.get("probe") == "kept-across-boots" && r1.get("base_file") == "absent",
        "first boot writes and deletes",
        &first,
    );
    lab.check(
        r1.get("ext4") == "loaded" && first.console.contains("pi-init: disk modules: "),
        "the image overlay loads the disk list",
        &first,
    );
    lab.check(
        lab.export()
            .join("nodes")
            .join(&s)
            .join("persist.1.img")
            .is_file(),
        "persist.1.img (its first generation) on the export",
        &first,
    );

    let second = lab.boot(&lab.pi(&s).unwrap(), "boot2").unwrap();
    let r2 = lab.expect_report(&second);
    lab.check(
        r2.get("probe") == "kept-across-boots",
        "the file written in boot 1 is there in boot 2",
        &second,
    );
    lab.check(
        r2.get("base_file") == "absent",
        "the base file deleted in boot 1 stays deleted",
        &second,
    );
    assert!(
        lab.export()
            .join("base")
            .join(TINY)
            .join(guest_root::BASE_FILE)
            .is_file(),
        "{name}: the shared base must never be written"
    );
}

#[test]
fn nfsv3_only_server_falls_back() {
    let name = "nfsv3-only";
    let env = pi_init_env!(name);
    let lab = lab_with_tiny_root(
        name,
        env,
        LabOptions {
            protocols: Protocols::V3Only,
            ..Default::default()
        },
    );
    let s = serial(3);
    lab.add_node(&s, diskless_node("pi-nfsv3")).unwrap();

    let run = lab.boot(&lab.pi(&s).unwrap(), "boot").unwrap();
    let report = lab.expect_report(&run);
    lab.check(
        report.get("nfs").starts_with('3'),
        "root mounted with NFSv3",
        &run,
    );
    lab.check(
        report.get("volumes") == "v3,v3",
        "the base image on a v3 mount of its own",
        &run,
    );
    lab.check(
        report.get("hostname") == "pi-nfsv3",
        "hostname from the controller",
        &run,
    );
    let node = node_when(&lab, &s, |n| installed_report(n).is_some());
    let vers = installed_report(&node)
        .and_then(|o| o.get("nfs_version"))
        .and_then(Value::as_str)
        .unwrap_or("");
    assert!(
        vers.starts_with('3'),
        "{name}: callback's nfs_version says v3, got {vers:?}: {node:#}"
    );
}

#[test]
fn controller_down_command_line_root_boots() {
    let name = "controller-down";
    let env = pi_init_env!(name, without_controller);
    let s = serial(4);
    let lab = Lab::without_controller(name, env, &s, "unused").unwrap();
    let root = lab.export().join("base").join(TINY);

    // Nothing listens on 10.0.2.2:8080: pi-init must boot from the kernel's nfsroot= form.
    let pi = lab
        .pi(&s)
        .unwrap()
        .arg("pureboot.timeout=2")
        .arg("root=/dev/nfs")
        .arg(format!("nfsroot={HOST_FROM_GUEST}:{}", root.display()));
    let run = lab.boot(&pi, "boot").unwrap();
    let report = lab.expect_report(&run);
    lab.check(
        !report.get("nfs").is_empty() && report.get("nfs") != "none",
        "root over NFS",
        &run,
    );
    lab.check(report.get("probe") == "none", "a fresh root", &run);
}

#[test]
fn wait_then_nfs_boot() {
    let name = "wait-then-boot";
    let env = pi_init_env!(name);
    let lab = lab_with_tiny_root(name, env, LabOptions::default());
    let s = serial(5);

    // Unknown serial: auto-registered as discovered and told to wait; assign it meanwhile.
    let pi = lab
        .pi(&s)
        .unwrap()
        .arg("pureboot.wait=1")
        .timeout(Duration::from_secs(180));
    let guest = pi
        .start(&lab.ns, &lab.dir.join("console-boot.log"))
        .unwrap();
    let discovered = poll(Duration::from_secs(90), Duration::from_millis(500), || {
        lab.controller()
            .node(&s)
            .map(|n| node_state(&n) == Some("discovered"))
            .unwrap_or(false)
    });
    let assigned = discovered
        .is_ok()
        .then(|| lab.controller().cli(&["node", "assign", &s, WORKFLOW]));
    let run = guest.wait();
    lab.check(
        discovered.is_ok(),
        "the controller registered the unknown Pi as discovered",
        &run,
    );
    if let Some(Err(e)) = assigned {
        lab.check(false, &format!("node assign failed: {e}"), &run);
    }
    lab.expect_report(&run);
    let node = node_when(&lab, &s, |n| installed_report(n).is_some());
    assert!(
        mentions(&node, "wait"),
        "{name}: a wait answer is in the node's history: {node:#}"
    );
    assert!(
        installed_report(&node).is_some(),
        "{name}: booted after waiting: {node:#}"
    );
}

#[test]
fn missing_base_image_reports_install_failed_without_panic() {
    let name = "missing-image";
    let env = pi_init_env!(name);
    let lab = lab_with_tiny_root(name, env, LabOptions::default());
    let s = serial(6);
    let missing = "no-such-image";
    lab.add_node(
        &s,
        NodeSpec {
            base_image: Some(missing.into()),
            ..diskless_node("pi-missing-image")
        },
    )
    .unwrap();

    // `reboot` under QEMU's -no-reboot ends the run; retries=1 keeps it short.
    let pi = lab
        .pi(&s)
        .unwrap()
        .arg("pureboot.on_failure=reboot")
        .arg("pureboot.retries=1");
    let run = lab.boot(&pi, "boot").unwrap();
    lab.check(
        run.outcome == Outcome::Exited,
        "the guest ends by its failure policy, not a timeout",
        &run,
    );
    lab.check(!kernel_panicked(&run.console), "no kernel panic", &run);
    let failure = pi_init_failure(&run.console);
    lab.check(
        failure.as_ref().is_some_and(|(_, e)| e.contains(missing)),
        "FAILED line naming the image",
        &run,
    );
    lab.check(
        run.console
            .contains("pi-init: applying failure policy reboot"),
        "policy line",
        &run,
    );

    let node = node_when(&lab, &s, |n| node_state(n) == Some("install_failed"));
    assert_eq!(
        node_state(&node),
        Some("install_failed"),
        "{name}: {node:#}"
    );
    assert!(
        mentions(&node, missing),
        "{name}: the recorded reason names the image: {node:#}"
    );
}

#[test]
fn nfs_upper_refused_falls_back_to_tmpfs_and_reports_it() {
    let name = "nfs-upper-refused";
    let env = pi_init_env!(name);
    let lab = lab_with_tiny_root(name, env, LabOptions::default());
    let s = serial(7);
    lab.add_node(
        &s,
        NodeSpec {
            overlay: Some("nfs".into()),
            ..diskless_node("pi-nfs-upper")
        },
    )
    .unwrap();

    let run = lab
        .boot(&lab.pi(&s).unwrap().arg("probe.write=on-tmpfs"), "boot")
        .unwrap();
    let report = lab.expect_report(&run);
    lab.check(
        report.get("probe") == "on-tmpfs" && report.get("hostname") == "pi-nfs-upper",
        "booted with a writable root",
        &run,
    );
    let upper = lab.export().join("nodes").join(&s).join("upper");
    lab.check(
        !upper.join("var/probe").exists(),
        "the write went to tmpfs, not the NFS upper",
        &run,
    );
    let node = node_when(&lab, &s, |n| installed_report(n).is_some());
    let degradations = installed_report(&node)
        .and_then(|o| o.get("degradations"))
        .and_then(Value::as_array)
        .map(|a| a.len())
        .unwrap_or(0);
    assert!(
        degradations > 0,
        "{name}: the callback reports the degradation: {node:#}"
    );
}

#[test]
fn four_pis_at_once_each_with_its_own_identity() {
    let name = "four-pis";
    let env = pi_init_env!(name);
    let lab = lab_with_tiny_root(name, env, LabOptions::default());
    let serials: Vec<String> = (0x81..=0x84).map(serial).collect();
    let pis: Vec<_> = serials
        .iter()
        .map(|s| {
            lab.add_node(s, diskless_node(&default_hostname(s)))
                .unwrap();
            lab.pi(s)
                .unwrap()
                .arg(format!("probe.mark={s}"))
                .timeout(Duration::from_secs(300))
        })
        .collect();

    let started = Instant::now();
    let runs = lab.boot_together(&pis).unwrap();
    println!(
        "{name}: four guests done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for run in &runs {
        // Guests behind one NAT (and real Pis with one nodename) must not share an NFSv4
        // client identity, or the server expires one's state when the next one mounts.
        lab.check(
            !run.console.contains("lease expired"),
            "NFSv4 client identities collide (lost state: 'lease expired'): pi-init must give the \
             NFS client a per-node uniquifier (nfs4_unique_id= when loading nfs.ko, or \
             /sys/fs/nfs/net/nfs_client/identifier) before mounting",
            run,
        );
    }
    let mut machine_ids = Vec::new();
    for (s, run) in serials.iter().zip(&runs) {
        let r = lab.expect_report(run);
        lab.check(
            r.get("hostname") == default_hostname(s),
            "its own hostname",
            run,
        );
        lab.check(
            r.get("marks") == s.as_str(),
            "sees its own write and no other's",
            run,
        );
        machine_ids.push(r.get("machine_id").to_string());
    }
    machine_ids.sort();
    machine_ids.dedup();
    assert_eq!(machine_ids.len(), 4, "{name}: four distinct machine-ids");
    assert!(
        !lab.export()
            .join("base")
            .join(TINY)
            .join("var/marks")
            .exists(),
        "{name}: the shared base was written"
    );
}

#[test]
fn static_ip_instead_of_dhcp() {
    let name = "static-ip";
    let env = pi_init_env!(name);
    let lab = lab_with_tiny_root(name, env, LabOptions::default());
    let s = serial(9);
    lab.add_node(&s, diskless_node("pi-static-ip")).unwrap();

    // An address QEMU's DHCP would not hand out (it gives 10.0.2.15): seeing it in the
    // controller proves the static configuration was used.
    let pi = lab.pi(&s).unwrap().arg(format!(
        "ip=10.0.2.42::{HOST_FROM_GUEST}:255.255.255.0:pi-static-ip:eth0:off"
    ));
    let run = lab.boot(&pi, "boot").unwrap();
    let report = lab.expect_report(&run);
    lab.check(report.get("hostname") == "pi-static-ip", "booted", &run);
    let node = node_when(&lab, &s, |n| mentions(n, "10.0.2.42"));
    assert!(
        mentions(&node, "10.0.2.42"),
        "{name}: the controller saw the static address: {node:#}"
    );
}

#[test]
fn debian_root_boots_to_systemd() {
    let name = "debian-root";
    let env = pi_init_env!(name);
    let debian = require!(name, env.debian_root());
    let tarball = guest_root::debian_tarball(&debian, &env.cache).unwrap();
    let lab = Lab::start(
        name,
        env,
        LabOptions {
            default_base_image: "debian".into(),
            ..Default::default()
        },
    )
    .unwrap();
    lab.controller().import_image(&tarball, "debian").unwrap();
    assert!(
        std::fs::symlink_metadata(lab.export().join("base/debian/sbin/init")).is_ok_and(|m| m.file_type().is_symlink()),
        "{name}: /sbin/init in the Debian root is a symlink (the case pi-init must resolve inside the new root)"
    );
    let s = serial(10);
    lab.add_node(
        &s,
        NodeSpec {
            base_image: Some("debian".into()),
            ..diskless_node("pi-debian")
        },
    )
    .unwrap();

    let run = lab
        .boot(
            &lab.pi(&s).unwrap().timeout(Duration::from_secs(300)),
            "boot",
        )
        .unwrap();
    let report = lab.expect_report(&run);
    lab.check(
        report.get("hostname") == "pi-debian",
        "systemd's hostname from the controller",
        &run,
    );
    lab.check(
        report.get("machine_id") == rendered_machine_id(&lab, &s),
        "machine-id from the controller",
        &run,
    );
    lab.check(
        report.get("init").contains("systemd"),
        "PID 1 is systemd",
        &run,
    );
    println!(
        "{name}: Debian root powered off after {:.1} s",
        run.elapsed.as_secs_f64()
    );
}

#[test]
fn raspi3b_serial_from_device_tree_network_over_usb() {
    let name = "raspi3b";
    let env = pi3_env!(name);
    let lab = lab_with_tiny_root(name, env, LabOptions::default());
    let s = serial(0x11);
    lab.add_node(&s, diskless_node("pi-three-b")).unwrap();

    let pi = lab.pi3(&s).unwrap();
    assert!(
        !pi.kernel_cmdline().contains("pureboot.serial"),
        "{name}: the serial must come from the device tree: {}",
        pi.kernel_cmdline()
    );
    let run = lab.boot(&pi, "boot").unwrap();
    let report = lab.expect_report(&run);
    lab.check(
        run.console
            .contains(&format!("serial {s} (00000000{s}, from devicetree)")),
        "pi-init read the serial from the device tree's /serial-number",
        &run,
    );
    lab.check(
        run.console.contains("register 'cdc_ether'"),
        "the NIC is QEMU's usb-net behind dwc2 (cdc_ether)",
        &run,
    );
    lab.check(
        report.get("hostname") == "pi-three-b" && report.get("root_fs") == "overlay",
        "the controller's answer for this serial booted the tiny root",
        &run,
    );
    let node = node_when(&lab, &s, |n| installed_report(n).is_some());
    assert!(
        installed_report(&node).is_some(),
        "{name}: the installed callback for the device tree's serial: {node:#}"
    );
    println!(
        "{name}: raspi3b reached the tiny root and powered off after {:.1} s",
        run.elapsed.as_secs_f64()
    );
}

#[test]
fn raspi3b_failure_policy_reboot_resets_the_board() {
    let name = "raspi3b-reboot";
    let env = pi3_env!(name);
    let lab = lab_with_tiny_root(name, env, LabOptions::default());
    let s = serial(0x12);
    lab.add_node(
        &s,
        NodeSpec {
            base_image: Some("no-such-image".into()),
            ..diskless_node("pi-reboots")
        },
    )
    .unwrap();

    // Under -no-reboot QEMU exits when the board resets. Without the watchdog driver the
    // kernel cannot reset a BCM2837 ("Reboot failed -- System halted") and the run times out.
    let pi = lab
        .pi3(&s)
        .unwrap()
        .arg("pureboot.on_failure=reboot")
        .arg("pureboot.retries=1");
    let run = lab.boot(&pi, "boot").unwrap();
    lab.check(
        run.outcome == Outcome::Exited,
        "the board reset (QEMU exits on reset under -no-reboot), no timeout",
        &run,
    );
    lab.check(
        run.console
            .contains("pi-init: applying failure policy reboot"),
        "pi-init applied the reboot policy",
        &run,
    );
    lab.check(
        run.console.contains("bcm2835-wdt") && run.console.contains("reboot: Restarting system"),
        "bcm2835_wdt bound and the kernel restarted through it",
        &run,
    );
    lab.check(
        !run.console.contains("Reboot failed") && !kernel_panicked(&run.console),
        "no 'Reboot failed -- System halted', no panic",
        &run,
    );
    println!(
        "{name}: raspi3b reset after {:.1} s",
        run.elapsed.as_secs_f64()
    );
}

/// With ganesha's default directory cache (the lab sets no `MDCACHE`): a broken image set
/// aside and a fresh one made under the same name was, measured, still resolved to the
/// broken file at the next boot (`mount -t ext4 /dev/loop0 /mnt/rw: EINVAL`, the node left
/// degraded). A fresh image is a new generation under a new name, which the answer carries.
#[test]
fn broken_persist_image_is_set_aside_and_the_next_boot_persists() {
    let name = "broken-persist";
    let env = pi_init_env!(name);
    let lab = lab_with_tiny_root(name, env, LabOptions::default());
    let s = serial(0x14);
    lab.add_node(
        &s,
        NodeSpec {
            overlay: Some("image".into()),
            ..diskless_node("pi-broken-persist")
        },
    )
    .unwrap();
    let node_dir = lab.export().join("nodes").join(&s);
    let img = node_dir.join("persist.1.img");

    // A working image first, then zeroed as a disk fault or a bad copy would leave it.
    let first = lab.boot(&lab.pi(&s).unwrap(), "boot1").unwrap();
    lab.expect_report(&first);
    let len = std::fs::metadata(&img).map(|m| m.len()).unwrap_or(0);
    lab.check(len > 0, "persist.img after the first boot", &first);
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();

    // The broken image: the boot degrades to tmpfs and says so; the node is flagged.
    let second = lab
        .boot(&lab.pi(&s).unwrap().arg("probe.write=lost"), "boot2")
        .unwrap();
    lab.expect_report(&second);
    lab.check(
        second.console.contains("overlay image unavailable"),
        "the degradation is on the console",
        &second,
    );
    // `degraded` holds the reason while flagged, null once cleared.
    let node = node_when(&lab, &s, |n| n["degraded"].is_string());
    lab.check(
        node["degraded"]
            .as_str()
            .is_some_and(|why| why.contains("image overlay")),
        &format!("the controller flags the node degraded: {node:#}"),
        &second,
    );
    let set_aside: Vec<String> = std::fs::read_dir(&node_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("persist.1.img.broken-"))
        .collect();
    lab.check(
        set_aside.len() == 1,
        &format!("the broken image is set aside, not deleted: {set_aside:?}"),
        &second,
    );
    lab.check(
        node_dir.join("persist.2.img").is_file(),
        "the fresh image is the next generation, under a name of its own",
        &second,
    );

    // The next boot is persistent again, on the fresh image, and the flag clears.
    let third = lab
        .boot(&lab.pi(&s).unwrap().arg("probe.write=kept"), "boot3")
        .unwrap();
    lab.expect_report(&third);
    lab.check(
        !third.console.contains("overlay image unavailable"),
        "the fresh image mounts",
        &third,
    );
    let fourth = lab.boot(&lab.pi(&s).unwrap(), "boot4").unwrap();
    let r4 = lab.expect_report(&fourth);
    lab.check(
        r4.get("probe") == "kept",
        "what boot 3 wrote is there in boot 4",
        &fourth,
    );
    let node = node_when(&lab, &s, |n| n["degraded"].is_null());
    lab.check(
        node["degraded"].is_null(),
        &format!("the flag clears once the image overlay works: {node:#}"),
        &fourth,
    );
    lab.check(
        node["tree"]["persist_image"]
            .as_str()
            .is_some_and(|p| p.ends_with("/persist.2.img")),
        &format!("node show names the current generation: {node:#}"),
        &fourth,
    );
}

/// A workflow file's volume: an ext4 image of the node's own, loop-mounted at its path,
/// outside the overlay, where an overlayfs upper layer can live (containerd's snapshotter),
/// unlike the root; kept across boots; broken, set aside for a new generation (with
/// ganesha's default directory cache, as the persist image's repair).
#[test]
fn a_volume_is_ext4_at_its_path_keeps_its_data_and_is_repaired_under_a_new_name() {
    let name = "volume";
    let env = pi_init_env!(name);
    let workflow = "id: pi-volume\nname: Diskless with a volume\ninstall_method: nfs\n\
                    overlay: tmpfs\nvolumes:\n  - { path: /var/lib/vol, size_mb: 64 }\n";
    let opts = LabOptions {
        workflows: vec![("pi-volume.yaml".into(), workflow.into())],
        ..LabOptions::default()
    };
    let lab = lab_with_tiny_root(name, env, opts);
    let s = serial(0x21);
    lab.add_node(
        &s,
        NodeSpec {
            workflow: "pi-volume".into(),
            ..diskless_node("pi-volume")
        },
    )
    .unwrap();
    let vols = lab.export().join("nodes").join(&s).join("volumes");
    let probe = |pi: pureboot_harness::qemu::VirtualPi| pi.arg("probe.volume=/var/lib/vol");

    let first = lab
        .boot(
            &probe(lab.pi(&s).unwrap()).arg("probe.vwrite=boot1"),
            "boot1",
        )
        .unwrap();
    let r1 = lab.expect_report(&first);
    lab.check(r1.get("vol_fs") == "ext4", "ext4 at /var/lib/vol", &first);
    lab.check(
        r1.get("vol_read") == "none",
        "a fresh volume is empty",
        &first,
    );
    lab.check(
        r1.get("ov_volume") == "ok",
        "an overlay with its upper in the volume mounts",
        &first,
    );
    lab.check(
        r1.get("ov_root").starts_with("failed:"),
        &format!("the same on the root is refused: {}", r1.get("ov_root")),
        &first,
    );
    lab.check(
        first.console.contains("step volumes done in "),
        "the volumes step is timed",
        &first,
    );
    lab.check(
        vols.join("var-lib-vol.1.img").is_file(),
        "its image in the node's own volumes/",
        &first,
    );

    let second = lab.boot(&probe(lab.pi(&s).unwrap()), "boot2").unwrap();
    let r2 = lab.expect_report(&second);
    lab.check(
        r2.get("vol_read") == "boot1",
        "what boot 1 wrote is there in boot 2",
        &second,
    );

    // Broken (zeroed): the boot goes on without it, the node is flagged, the image set aside
    // and generation 2 made, which the next boot mounts.
    std::fs::write(vols.join("var-lib-vol.1.img"), vec![0u8; 1 << 20]).unwrap();
    let third = lab.boot(&probe(lab.pi(&s).unwrap()), "boot3").unwrap();
    let r3 = lab.expect_report(&third);
    lab.check(
        r3.get("vol_fs") != "ext4" && third.console.contains("volume /var/lib/vol not mounted"),
        "a broken volume is left out, and said",
        &third,
    );
    let node = node_when(&lab, &s, |n| {
        n["volumes"][0]["image"] == "var-lib-vol.2.img" && n["degraded"].is_string()
    });
    lab.check(
        node["degraded"]
            .as_str()
            .is_some_and(|d| d.contains("volume /var/lib/vol not mounted")),
        &format!("flagged, and repaired as generation 2: {node:#}"),
        &third,
    );
    let fourth = lab
        .boot(
            &probe(lab.pi(&s).unwrap()).arg("probe.vwrite=boot4"),
            "boot4",
        )
        .unwrap();
    let r4 = lab.expect_report(&fourth);
    lab.check(
        r4.get("vol_fs") == "ext4" && r4.get("vol_read") == "none",
        "the fresh generation mounts, empty",
        &fourth,
    );
    let node = node_when(&lab, &s, |n| n["degraded"].is_null());
    lab.check(
        node["degraded"].is_null(),
        &format!("the flag clears once the volumes mount: {node:#}"),
        &fourth,
    );
}

/// One initramfs for every board: the NIC driver is not named at start but found by the
/// modalias of the devices present, and the NIC's own device (virtio_net's) appears only once
/// the bus driver is in, like a Pi 3's USB NIC behind dwc2.
#[test]
fn nic_driver_found_by_modalias() {
    let name = "modalias";
    let env = pi_init_env!(name);
    let initrd = require!(name, initramfs::pi_init_by_modalias(env));
    let lab = lab_with_tiny_root(name, env, LabOptions::default());
    let s = serial(0x15);
    lab.add_node(&s, diskless_node("pi-modalias")).unwrap();
    let mut pi = lab.pi(&s).unwrap();
    pi.initrd = initrd;

    let run = lab.boot(&pi, "boot").unwrap();
    let report = lab.expect_report(&run);
    lab.check(
        run.console.contains("; by modalias virtio_pci, virtio_net"),
        "virtio_pci, then virtio_net (a device that appears later) loaded by modalias",
        &run,
    );
    lab.check(
        report.get("hostname") == "pi-modalias",
        "through the controller to the root",
        &run,
    );
    lab.check(
        report.get("ext4") == "absent",
        "the disk modules stay unloaded",
        &run,
    );
}
