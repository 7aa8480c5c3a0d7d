//! A node's volumes on the real server: declared (API, CLI, checked with the field named),
//! made on the export as their first generation, named in the boot answer, flagged when
//! the node could not mount one, and repaired under a new generation's name.

mod common;

use std::path::Path;

use common::{report_path, spawn_app_with, which};
use serde_json::{json, Value};

const SERIAL: &str = "d83add36";
const MAC: &str = "dc:a6:32:01:02:03";

fn has_ext4_magic(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.len() > 1082 && bytes[1080..1082] == [0x53, 0xef]
}

#[test]
fn declarations_are_checked_with_the_field_named() {
    let app = spawn_app_with(|_| {});
    app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs"}));
    let path = format!("/api/v1/nodes/{SERIAL}");
    let table = [
        (
            json!([{"path": "/proc/x", "size_mb": 16}]),
            "set_volumes[0].path",
        ),
        (
            json!([{"path": "data", "size_mb": 16}]),
            "set_volumes[0].path",
        ),
        (
            json!([{"path": "/data", "size_mb": 1}]),
            "set_volumes[0].size_mb",
        ),
        (
            json!([{"path": "/a", "size_mb": 16}, {"path": "/a", "size_mb": 32}]),
            "set_volumes[1].path",
        ),
    ];
    for (set, field) in table {
        let (status, body) = app.admin("PATCH", &path, Some(&json!({"set_volumes": set})));
        assert_eq!(status, 400, "{set}: {body}");
        assert!(body.to_string().contains(field), "{set}: {body}");
    }
    let (status, body) = app.admin(
        "PATCH",
        &path,
        Some(&json!({"remove_volumes": ["/var/lib/rancher"]})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("no volume /var/lib/rancher"),
        "{body}"
    );
    // Nothing was stored by the refused changes.
    assert_eq!(app.node(SERIAL)["volumes"], json!([]));

    // The CLI checks the flag's value before anything is asked.
    app.cli(&["node", "show", SERIAL]); // writes the CLI's configuration
    let config = app.nfs_root().parent().unwrap().join("controller.toml");
    let out = common::cli(&config, &["node", "set", SERIAL, "--volume", "/run/x=64"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--volume") && err.contains("/run"), "{err}");
}

#[test]
fn a_volume_is_made_named_in_the_answer_flagged_and_repaired_under_a_new_name() {
    if which("mkfs.ext4").is_none() {
        eprintln!("SKIP: mkfs.ext4 not installed (apt-get install e2fsprogs)");
        return;
    }
    let app = spawn_app_with(|c| c.nfs.persist_size_mb = 16);
    app.add_node(
        json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs", "overlay_mode": "tmpfs"}),
    );
    let out = app.cli(&["node", "set", SERIAL, "--volume", "/var/lib/rancher=16"]);
    assert!(out.contains("/var/lib/rancher=16"), "{out}");
    let vols = app.nfs_root().join("nodes").join(SERIAL).join("volumes");
    let first = vols.join("var-lib-rancher.1.img");
    assert!(has_ext4_magic(&first), "made when declared");

    let (_, r) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    assert_eq!(
        r["volumes"],
        json!([{"path": "/var/lib/rancher", "image": "var-lib-rancher.1.img"}]),
        "{r}"
    );
    assert_eq!(
        r.get("persist_image"),
        None,
        "overlay tmpfs: no persist image"
    );

    // The node could not mount it (zeroed, as a broken image is): flagged, set aside,
    // and a fresh one made as generation 2.
    let len = std::fs::metadata(&first).unwrap().len();
    std::fs::write(&first, vec![0u8; 4096]).unwrap();
    let report = json!({
        "success": true, "mode": "nfs_boot", "overlay_mode": "tmpfs",
        "volumes": [{"path": "/var/lib/rancher", "image": "var-lib-rancher.1.img",
                     "mounted": false, "error": "mount /dev/loop1: EINVAL\u{1b}[2J"}],
    });
    let (status, n) = app.post(&report_path(&r, false), &report);
    assert_eq!(status, 200, "{n}");
    let flag = n["degraded"].as_str().expect("flagged");
    assert!(
        flag.starts_with("volume /var/lib/rancher not mounted: mount /dev/loop1: EINVAL"),
        "{flag}"
    );
    assert!(!flag.contains('\u{1b}'), "escape codes escaped: {flag:?}");
    assert_eq!(app.metric("pureboot_nodes_degraded"), "1");
    let names: Vec<String> = std::fs::read_dir(&vols)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("var-lib-rancher.1.img.broken-")),
        "{names:?}"
    );
    let second = vols.join("var-lib-rancher.2.img");
    assert!(has_ext4_magic(&second));
    assert_eq!(std::fs::metadata(&second).unwrap().len(), len);
    let events = app.node(SERIAL)["events"].as_array().unwrap().clone();
    let repair = events
        .iter()
        .rev()
        .find(|e| e["kind"] == "degraded")
        .unwrap();
    assert_eq!(repair["detail"]["action"], "fresh image", "{repair}");
    assert_eq!(repair["detail"]["image"], "var-lib-rancher.2.img");

    // The operator sees the volume and its current image.
    let show = app.cli(&["node", "show", SERIAL]);
    assert!(
        show.contains("/var/lib/rancher 16 MiB (node) volumes/var-lib-rancher.2.img"),
        "{show}"
    );
    let detail: Value =
        serde_json::from_str(&app.cli(&["--json", "node", "show", SERIAL])).unwrap();
    assert_eq!(detail["volumes"][0]["image"], "var-lib-rancher.2.img");
    assert_eq!(detail["volumes"][0]["from"], "node");

    // The next answer names the new generation; a boot that mounts it clears the flag.
    let (_, r) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    assert_eq!(r["volumes"][0]["image"], "var-lib-rancher.2.img", "{r}");
    let report = json!({
        "success": true, "mode": "nfs_boot", "overlay_mode": "tmpfs",
        "volumes": [{"path": "/var/lib/rancher", "image": "var-lib-rancher.2.img", "mounted": true}],
    });
    let (status, n) = app.post(&report_path(&r, false), &report);
    assert_eq!(status, 200, "{n}");
    assert_eq!(n["degraded"], Value::Null);

    // Dropped: the answer names it no more; its image stays on the export.
    app.cli(&["node", "set", SERIAL, "--no-volume", "/var/lib/rancher"]);
    let (_, r) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    assert_eq!(r.get("volumes"), None, "{r}");
    assert!(second.exists());
}
