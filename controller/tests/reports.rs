//! What a Pi reports after a boot, on the real server: upstream's failure shape, serials
//! that are only short, and a persistent layer that broke (HTTP, a temporary NFS root, the
//! CLI on the same registry).

mod common;

use std::path::Path;

use common::{report_path, spawn_app, spawn_app_with, which};
use serde_json::{json, Value};

const SERIAL: &str = "d83add36";
const MAC: &str = "dc:a6:32:01:02:03";

#[test]
fn upstream_failure_report_on_the_callback_counts_as_install_failed() {
    let app = spawn_app();
    app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs"}));
    let (_, r) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    assert_eq!(r["action"], "nfs_boot", "{r}");
    // Exactly what upstream's Pi side posts: no `mode`.
    let (status, n) = app.post(
        &report_path(&r, false),
        &json!({"success": false, "error": "Base image not found: debian-arm64"}),
    );
    assert_eq!(status, 200, "{n}");
    assert_eq!(n["state"], "install_failed");
    let events = app.node(SERIAL)["events"].as_array().unwrap().clone();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "admin",
            "state_change",
            "boot_request",
            "install_failed",
            "state_change"
        ],
        "the same events as install-failed"
    );
    assert_eq!(
        events[3]["detail"]["error"],
        "Base image not found: debian-arm64"
    );
    assert_eq!(events[4]["detail"]["to"], "install_failed");
    assert_eq!(app.metric("pureboot_node_failures_total"), "1");

    // Without an error text it is still a failure.
    app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    let (status, n) = app.post(&report_path(&r, false), &json!({"success": false}));
    // The answer of the second boot carries a new callback; the old one may be refused.
    if status == 200 {
        assert_eq!(n["state"], "install_failed");
    }
}

/// A report sent again on the same boot id (the controller that committed it died before
/// answering, and the Pi or its agent asked another controller of the registry) is answered
/// as the first one was and stored once; the next boot's report is a new one.
#[test]
fn an_installed_report_sent_again_is_answered_and_stored_once() {
    let app = spawn_app();
    app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs"}));
    let report = json!({"success": true, "mode": "nfs_boot"});
    let (_, r) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    for _ in 0..2 {
        let (status, n) = app.post(&report_path(&r, false), &report);
        assert_eq!((status, n["state"].as_str()), (200, Some("active")), "{n}");
    }
    let installed = |app: &common::TestApp| {
        app.event_kinds(SERIAL)
            .iter()
            .filter(|k| *k == "installed")
            .count()
    };
    assert_eq!(installed(&app), 1);
    let (_, again) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    let (status, n) = app.post(&report_path(&again, false), &report);
    assert_eq!(status, 200, "{n}");
    assert_eq!(installed(&app), 2, "a new boot's report is recorded");
}

#[test]
fn an_8_hex_full_serial_is_a_short_one_and_the_16_digit_form_is_taken_later() {
    let app = spawn_app();
    let short = "0badc0de";
    app.boot(&format!("serial={short}&mac={MAC}&full_serial={short}"));
    let n = app.node(short);
    assert_eq!(
        n["full_serial"],
        Value::Null,
        "8 hex is not recorded as full"
    );
    app.boot(&format!(
        "serial={short}&mac={MAC}&full_serial=100000000BADC0DE"
    ));
    let n = app.node(short);
    assert_eq!(n["conflict"], Value::Null, "no false conflict: {n}");
    assert_eq!(
        n["full_serial"], "100000000badc0de",
        "taken when first seen"
    );
    assert!(!app.event_kinds(short).contains(&"conflict".to_string()));
    // A different 16-digit serial still is another machine: refused, recorded as a
    // conflict event (no flag: it changes nothing of the node).
    let (_, r) = app.boot(&format!(
        "serial={short}&mac={MAC}&full_serial=200000000badc0de"
    ));
    assert_eq!(r["action"], "wait", "{r}");
    let n = app.node(short);
    assert_eq!(n["full_serial"], "100000000badc0de");
    assert!(n["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "conflict"
            && e["detail"]["conflicts"]
                .to_string()
                .contains("200000000badc0de")));
}

fn has_ext4_magic(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.len() > 1082 && bytes[1080..1082] == [0x53, 0xef]
}

#[test]
fn a_broken_persist_image_is_flagged_set_aside_and_replaced() {
    if which("mkfs.ext4").is_none() {
        eprintln!("SKIP: mkfs.ext4 not installed (apt-get install e2fsprogs)");
        return;
    }
    let app = spawn_app_with(|c| c.nfs.persist_size_mb = 16);
    app.add_node(
        json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs", "overlay_mode": "image"}),
    );
    let (_, r) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    assert_eq!(r["overlay_mode"], "image", "{r}");
    // The answer names the image's file: its first generation.
    assert_eq!(r["persist_image"], "persist.1.img", "{r}");
    let node_dir = app.nfs_root().join("nodes").join(SERIAL);
    let image = node_dir.join("persist.1.img");
    assert!(has_ext4_magic(&image));
    // Zeroed, as seen on a real run: same size, no file system.
    let len = std::fs::metadata(&image).unwrap().len();
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(len)
        .unwrap();

    // pi-init's report of that boot (see pi-init/src/overlay.rs): tmpfs, and why.
    let report = json!({
        "success": true, "mode": "nfs_boot", "serial": SERIAL, "mac": MAC,
        "overlay_mode": "tmpfs",
        "degradations": ["overlay image unavailable (mount /dev/loop0 on /run/pureboot/persist: EINVAL); using tmpfs, writes will not persist"],
    });
    let (status, n) = app.post(&report_path(&r, false), &report);
    assert_eq!(status, 200, "{n}");
    assert_eq!(n["state"], "active");
    let flag = n["degraded"].as_str().expect("flagged in the API answer");
    assert!(flag.contains("overlay image unavailable"), "{flag}");
    assert_eq!(app.metric("pureboot_nodes_degraded"), "1");

    let aside: Vec<_> = std::fs::read_dir(&node_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("persist.1.img.broken-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "moved aside, not deleted: {aside:?}");
    assert_eq!(std::fs::metadata(&aside[0]).unwrap().len(), len);
    assert!(!has_ext4_magic(&aside[0]), "the broken one, kept as it was");
    // The fresh image is the next generation, under a name no earlier file had.
    let image = node_dir.join("persist.2.img");
    assert!(has_ext4_magic(&image), "a fresh ext4 image as generation 2");
    let events = app.node(SERIAL)["events"].as_array().unwrap().clone();
    let degraded: Vec<&Value> = events.iter().filter(|e| e["kind"] == "degraded").collect();
    assert_eq!(degraded.len(), 2, "flag and repair recorded: {degraded:?}");
    assert_eq!(degraded[1]["detail"]["action"], "fresh image");

    // The operator sees it.
    let list = app.cli(&["node", "list"]);
    assert!(list.contains("DEGRADED"), "{list}");
    let show = app.cli(&["node", "show", SERIAL]);
    assert!(
        show.contains("degraded") && show.contains("overlay image unavailable"),
        "{show}"
    );
    let info = app.cli(&["overlay", "info", SERIAL]);
    assert!(
        info.contains("(ext4)") && info.contains("set aside"),
        "{info}"
    );

    // The next boot mounts the fresh image, which its answer names: the flag clears.
    let (_, r) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    assert_eq!(r["persist_image"], "persist.2.img", "{r}");
    let report = json!({"success": true, "mode": "nfs_boot", "overlay_mode": "image"});
    let (status, n) = app.post(&report_path(&r, false), &report);
    assert_eq!(status, 200, "{n}");
    assert_eq!(n["degraded"], Value::Null);
    assert_eq!(app.metric("pureboot_nodes_degraded"), "0");
    assert!(!app.cli(&["node", "list"]).contains("DEGRADED"));

    // `overlay reset` sets an image aside on the operator's word.
    let out = app.cli(&["overlay", "reset", SERIAL]);
    assert!(out.contains("moved"), "{out}");
    let count = std::fs::read_dir(&node_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".img.broken-")
        })
        .count();
    assert_eq!(count, 2);
    assert!(has_ext4_magic(&node_dir.join("persist.3.img")));

    // A pi-init that reports the overlay typed: the controller reads `overlay`, not the
    // notes (an intact image is left in place, so nothing more is set aside).
    let (_, r) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    let report = json!({
        "success": true, "mode": "nfs_boot", "overlay_mode": "tmpfs",
        "overlay": {"wanted": "image", "used": "tmpfs", "fallback": "loop attach: ENXIO"},
    });
    let (status, n) = app.post(&report_path(&r, false), &report);
    assert_eq!(status, 200, "{n}");
    assert_eq!(
        n["degraded"],
        "image overlay not used (booted with tmpfs): loop attach: ENXIO"
    );
    let (_, r) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    let report = json!({
        "success": true, "mode": "nfs_boot", "overlay_mode": "image",
        "overlay": {"wanted": "image", "used": "image"},
    });
    let (status, n) = app.post(&report_path(&r, false), &report);
    assert_eq!(status, 200, "{n}");
    assert_eq!(n["degraded"], Value::Null);
}
