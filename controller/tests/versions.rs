//! Image versions, channels and rollouts against the real server (HTTP boots and reports),
//! the real CLI and SQLite: what a boot answers while a rollout runs, fails, succeeds and
//! is rolled back; removal and pruning that refuse what nodes use.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{report_path, spawn_app, TestApp};
use serde_json::{json, Value};

const NODES: [&str; 3] = ["a0000001", "a0000002", "a0000003"];

fn mac(i: usize) -> String {
    format!("dc:a6:32:00:00:0{}", i + 1)
}

/// A tar of `entries` (a path ending in `/` is a directory), owned by root.
fn tar_of(dir: &Path, name: &str, entries: &[(&str, &[u8])]) -> PathBuf {
    let path = dir.join(format!("{name}.tar"));
    let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
    for (at, data) in entries {
        let mut h = tar::Header::new_gnu();
        if at.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
        }
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, at, *data).unwrap();
    }
    b.finish().unwrap();
    path
}

/// A tiny root: `sbin/init` holding `text` (so versions differ in content and digest).
pub fn tiny_root(dir: &Path, name: &str, text: &str) -> PathBuf {
    tar_of(dir, name, &[("sbin/init", text.as_bytes())])
}

fn boot(app: &TestApp, i: usize) -> Value {
    let (status, r) = app.boot(&format!("serial={}&mac={}", NODES[i], mac(i)));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["action"], "nfs_boot", "{r}");
    r
}

fn installed(app: &TestApp, i: usize, answer: &Value) {
    let body = json!({"success": true, "mode": "nfs_boot", "serial": NODES[i], "mac": mac(i)});
    let (status, n) = app.post(&report_path(answer, false), &body);
    assert_eq!(status, 200, "{n}");
}

fn rollout_status(app: &TestApp) -> Value {
    serde_json::from_str(&app.cli(&["--json", "image", "rollout", "status", "tiny"])).unwrap()
}

/// Polls until the daemon's tick ended the rollout (it runs every second).
fn wait_rollout_end(app: &TestApp) -> Value {
    let t0 = Instant::now();
    loop {
        let st = rollout_status(app);
        if !st["outcome"].is_null() {
            return st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "rollout never ended: {st}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn node_list(app: &TestApp) -> Vec<(String, Value, Value)> {
    let v: Value = serde_json::from_str(&app.cli(&["--json", "node", "list"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["serial"].as_str().unwrap().to_string(),
                n["assigned_version"].clone(),
                n["running_version"].clone(),
            )
        })
        .collect()
}

#[test]
fn a_failed_canary_goes_back_a_healthy_one_moves_the_channel_and_rollback_is_one_command() {
    let app = spawn_app();
    let src = app.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let out = app.cli(&[
        "image",
        "import",
        tiny_root(&src, "v1", "v1").to_str().unwrap(),
        "tiny",
    ]);
    assert!(
        out.contains("tiny@1") && out.contains("channel tiny points at it"),
        "{out}"
    );
    for (i, serial) in NODES.iter().enumerate() {
        app.add_node(json!({"serial": serial, "workflow_id": "pi-diskless-nfs",
                            "base_image": "tiny", "mac": mac(i)}));
        let r = boot(&app, i);
        assert_eq!(
            r["base_image"], "tiny",
            "v1 keeps the channel's directory name"
        );
        installed(&app, i, &r);
    }
    for (_, assigned, running) in node_list(&app) {
        assert_eq!((assigned, running), (json!("tiny@1"), json!("tiny@1")));
    }

    // v2: imported next to v1, the channel stays; its "init" is broken.
    let out = app.cli(&[
        "image",
        "import",
        tiny_root(&src, "v2", "broken").to_str().unwrap(),
        "tiny",
    ]);
    assert!(
        out.contains("tiny@2") && out.contains("image rollout tiny tiny@2"),
        "{out}"
    );
    assert!(app.nfs_root().join("base/tiny.v2/sbin/init").is_file());
    assert_eq!(
        boot(&app, 1)["base_image"],
        "tiny",
        "an import does not move the channel"
    );

    let out = app.cli(&[
        "image",
        "rollout",
        "tiny",
        "tiny@2",
        "--canary",
        "1",
        "--wait",
        "60",
        "--health",
        "installed",
    ]);
    assert!(out.contains("canaries a0000001"), "{out}");
    // The canary gets v2, the others stay on v1.
    let canary = boot(&app, 0);
    assert_eq!(canary["base_image"], "tiny.v2");
    for i in 1..3 {
        assert_eq!(
            boot(&app, i)["base_image"],
            "tiny",
            "node {i} never gets v2"
        );
    }
    let (status, _) = app.post(
        &report_path(&canary, true),
        &json!({"error": "/sbin/init not found in the root", "step": "switch_root"}),
    );
    assert_eq!(status, 200);
    let st = wait_rollout_end(&app);
    assert_eq!(st["outcome"], "failed", "{st}");
    assert!(
        st["reason"].as_str().unwrap().contains("init not found"),
        "{st}"
    );
    assert_eq!(st["canaries"][0]["state"], "failed");
    let kinds: Vec<&str> = st["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"rollout_started") && kinds.contains(&"rollout_failed"),
        "{kinds:?}"
    );
    // Back on v1 at its next boot; v2 marked bad; a second rollout needs --force.
    assert_eq!(boot(&app, 0)["base_image"], "tiny");
    let show: Value = serde_json::from_str(&app.cli(&["--json", "image", "show", "tiny"])).unwrap();
    let v2 = &show["channels"][0]["versions"][1];
    assert_eq!(v2["id"], "tiny@2");
    assert!(
        v2["bad"].as_str().unwrap().contains("init not found"),
        "{show}"
    );
    let again = common::cli(
        &app.dir.path().join("controller.toml"),
        &["image", "rollout", "tiny", "tiny@2"],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(
        app.metric("pureboot_rollouts_total{outcome=\"failed\"}"),
        "1"
    );
    assert_eq!(app.metric("pureboot_image_versions_bad"), "1");
    let page = app.status_page();
    assert!(
        page.contains(r#"data-channel="tiny" data-outcome="failed""#)
            && page.contains(r#"canary-failed" data-serial="a0000001""#),
        "{page}"
    );

    // v3, good: the canary is healthy, the channel moves, the others follow at their reboot.
    app.cli(&[
        "image",
        "import",
        tiny_root(&src, "v3", "v3").to_str().unwrap(),
        "tiny",
    ]);
    app.cli(&[
        "image",
        "rollout",
        "tiny",
        "tiny@3",
        "--canary",
        "a0000002",
        "--health",
        "installed",
    ]);
    let canary = boot(&app, 1);
    assert_eq!(canary["base_image"], "tiny.v3");
    installed(&app, 1, &canary);
    assert_eq!(wait_rollout_end(&app)["outcome"], "succeeded");
    // Before their reboot: assigned v3, running v1.
    let list = node_list(&app);
    assert_eq!(
        list[0],
        ("a0000001".into(), json!("tiny@3"), json!("tiny@1"))
    );
    assert_eq!(
        list[1],
        ("a0000002".into(), json!("tiny@3"), json!("tiny@3"))
    );
    let table = app.cli(&["node", "list"]);
    assert!(table.contains("tiny@1 (reboot)"), "{table}");
    let page = app.status_page();
    assert!(
        page.contains(r#"data-running="tiny@1" data-assigned="tiny@3""#),
        "the status page shows who needs a reboot: {page}"
    );
    for i in [0, 2] {
        let r = boot(&app, i);
        assert_eq!(r["base_image"], "tiny.v3");
        installed(&app, i, &r);
    }
    for (_, assigned, running) in node_list(&app) {
        assert_eq!((assigned, running), (json!("tiny@3"), json!("tiny@3")));
    }
    assert_eq!(
        app.metric("pureboot_nodes_running_version{version=\"tiny@3\"}"),
        "3"
    );

    // Removal refuses what nodes run or are assigned, naming them.
    let rm = common::cli(
        &app.dir.path().join("controller.toml"),
        &["image", "rm", "tiny@3"],
    );
    assert!(!rm.status.success());
    let err = String::from_utf8_lossy(&rm.stderr);
    assert!(err.contains("is what channel tiny points at"), "{err}");

    // Rollback: one command, the nodes boot v1 again.
    let out = app.cli(&["image", "rollback", "tiny"]);
    assert!(out.contains("from tiny@3 to tiny@1"), "{out}");
    for i in 0..3 {
        assert_eq!(boot(&app, i)["base_image"], "tiny", "node {i}");
    }
    // Running v3 (not yet reported on v1): refused, naming the nodes.
    let rm = common::cli(
        &app.dir.path().join("controller.toml"),
        &["image", "rm", "tiny@3"],
    );
    let err = String::from_utf8_lossy(&rm.stderr);
    assert!(
        !rm.status.success() && err.contains("a0000001, a0000002, a0000003"),
        "{err}"
    );
    for i in 0..3 {
        let r = boot(&app, i);
        installed(&app, i, &r);
    }

    // Prune: v4 and v5 imported (not rolled out); keep 2 removes only v2 (unused, bad) and
    // v3 (unused now, but the channel's previous: kept for rollback).
    app.cli(&[
        "image",
        "import",
        tiny_root(&src, "v4", "v4").to_str().unwrap(),
        "tiny",
    ]);
    app.cli(&[
        "image",
        "import",
        tiny_root(&src, "v5", "v5").to_str().unwrap(),
        "tiny",
    ]);
    let out: Value =
        serde_json::from_str(&app.cli(&["--json", "image", "prune", "--keep", "2"])).unwrap();
    assert_eq!(out["removed"], json!(["tiny@2"]));
    assert!(!app.nfs_root().join("base/tiny.v2").exists());
    for kept in ["tiny", "tiny.v3", "tiny.v4", "tiny.v5"] {
        assert!(app.nfs_root().join("base").join(kept).is_dir(), "{kept}");
    }
    // Unused and not the previous: v4 goes by name.
    app.cli(&["image", "rm", "tiny@4"]);
    assert!(!app.nfs_root().join("base/tiny.v4").exists());
}

#[test]
fn a_registry_and_export_of_the_release_before_versions_keep_booting() {
    let old = tempfile::tempdir().unwrap();
    // The registry as that release left it (tests/fixtures/registry-before-versions.sql says how it
    // was made) ...
    let db = old.path().join("registry.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    // The dump creates tables in name order: node_boots (which refers to nodes) first.
    conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
    conn.execute_batch(include_str!("fixtures/registry-before-versions.sql"))
        .unwrap();
    drop(conn);
    // ... and its export: base images as plain base/<name> directories, node trees.
    let root = old.path().join("nfsroot");
    for image in ["debian-arm64", "alpine"] {
        let init = root.join("base").join(image).join("sbin/init");
        std::fs::create_dir_all(init.parent().unwrap()).unwrap();
        std::fs::write(&init, image).unwrap();
    }
    for serial in ["b0000001", "b0000002"] {
        let etc = root.join("nodes").join(serial).join("upper/etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("hostname"), format!("pi-{serial}\n")).unwrap();
        std::fs::create_dir_all(root.join("nodes").join(serial).join("work")).unwrap();
    }
    let (db2, root2) = (db.clone(), root.clone());
    let app = common::spawn_app_with(move |c| {
        c.database = db2;
        c.nfs.root_path = root2;
    });
    // Each directory became a channel with one version, that very directory (nothing moved).
    let list: Value = serde_json::from_str(&app.cli(&["--json", "image", "list"])).unwrap();
    let channels: Vec<(&str, &str, &str)> = list["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let v = &c["versions"][0];
            (
                c["channel"]["name"].as_str().unwrap(),
                v["id"].as_str().unwrap(),
                v["dir"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        channels,
        [
            ("alpine", "alpine@1", "alpine"),
            ("debian-arm64", "debian-arm64@1", "debian-arm64")
        ]
    );
    assert_eq!(
        std::fs::read_to_string(root.join("base/debian-arm64/sbin/init")).unwrap(),
        "debian-arm64"
    );
    // The boot pending from before the upgrade still takes its report.
    let (status, n) = app.post(
        "/api/v1/nodes/1ef088ac-c74e-48f0-b653-d6c0b1bfd7bd/installed",
        &json!({"success": true, "mode": "nfs_boot", "serial": "b0000002", "mac": "dc:a6:32:00:00:12"}),
    );
    assert_eq!(status, 200, "{n}");
    // Both nodes boot the directories they booted before, now as versions.
    for (serial, mac, dir) in [
        ("b0000001", "dc:a6:32:00:00:11", "debian-arm64"),
        ("b0000002", "dc:a6:32:00:00:12", "alpine"),
    ] {
        let (status, r) = app.boot(&format!("serial={serial}&mac={mac}"));
        assert_eq!((status, &r["base_image"]), (200, &json!(dir)), "{r}");
        let body = json!({"success": true, "mode": "nfs_boot", "serial": serial, "mac": mac});
        assert_eq!(app.post(&report_path(&r, false), &body).0, 200);
    }
    // As the daemon sees them (its configuration names the default, debian-arm64).
    let nodes: Vec<(String, Option<String>, Option<String>)> = app
        .services
        .node_versions()
        .unwrap()
        .into_iter()
        .map(|n| (n.serial, n.assigned.version, n.running))
        .collect();
    let on = |v: &str| Some(v.to_string());
    assert_eq!(
        nodes,
        [
            (
                "b0000001".into(),
                on("debian-arm64@1"),
                on("debian-arm64@1")
            ),
            ("b0000002".into(), on("alpine@1"), on("alpine@1")),
        ]
    );
    // A new import of the same name is a second version beside it (refused before).
    let src = old.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let tar = tiny_root(&src, "deb2", "debian 2");
    let out = app.cli(&["image", "import", tar.to_str().unwrap(), "debian-arm64"]);
    assert!(out.contains("debian-arm64@2"), "{out}");
    assert!(root.join("base/debian-arm64.v2/sbin/init").is_file());
    assert_eq!(
        std::fs::read_to_string(root.join("base/debian-arm64/sbin/init")).unwrap(),
        "debian-arm64",
        "the running version's files never change"
    );
}

/// Boots answered in the storm, and rollout/rollback cycles run beside it.
const STORM_BOOTS: usize = 1000;
const CYCLES: usize = 100;

#[test]
fn a_boot_storm_during_rollouts_and_rollbacks_gets_one_existing_version_per_answer() {
    let app = common::spawn_app_with(|c| {
        c.node_requests_per_minute = 0;
        c.boot_requests_per_minute = 0;
    });
    let src = app.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    app.cli(&[
        "image",
        "import",
        tiny_root(&src, "v1", "v1").to_str().unwrap(),
        "tiny",
    ]);
    let v2 = tiny_root(&src, "v2", "v2");
    app.cli(&["image", "import", v2.to_str().unwrap(), "tiny", "--promote"]);
    // Three nodes per client: a node's boots never overlap (a second boot from the same
    // address replaces the first's pending one, whose report is then refused, by design).
    let serials: Vec<String> = (0..24).map(|i| format!("c{i:07x}")).collect();
    for s in &serials {
        app.add_node(json!({"serial": s, "workflow_id": "pi-diskless-nfs", "base_image": "tiny"}));
    }
    // The operator's side: its own registry connections, as the CLI's process has.
    let operator = pureboot_controller::service::Services::open(app.config.clone()).unwrap();
    let done_cycles = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (base, next) = (app.base.clone(), next.clone());
            let serials = serials[c * 3..c * 3 + 3].to_vec();
            std::thread::spawn(move || {
                let mut answered = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= STORM_BOOTS {
                        return answered;
                    }
                    let serial = &serials[i % 3];
                    let url = format!("{base}/api/v1/boot/pi?serial={serial}");
                    let (status, r) = match ureq::get(&url).call() {
                        Ok(r) => (r.status(), r.into_json::<Value>().unwrap()),
                        Err(ureq::Error::Status(s, r)) => (s, r.into_json().unwrap_or_default()),
                        Err(e) => panic!("transport: {e}"),
                    };
                    assert_eq!(status, 200, "boot {i} of {serial}: {r}");
                    let dir = r["base_image"].as_str().unwrap().to_string();
                    let cb = format!("{base}{}", report_path(&r, false));
                    let body = json!({"success": true, "mode": "nfs_boot", "serial": serial});
                    let status = match ureq::post(&cb).send_json(body) {
                        Ok(r) => r.status(),
                        Err(ureq::Error::Status(s, _)) => s,
                        Err(e) => panic!("transport: {e}"),
                    };
                    assert_eq!(status, 200, "report of boot {i} of {serial}");
                    answered.push((serial.clone(), dir));
                }
            })
        })
        .collect();
    let cycles = {
        let done_cycles = done_cycles.clone();
        std::thread::spawn(move || {
            for _ in 0..CYCLES {
                let (_, to) = operator.rollback("tiny").unwrap();
                let other = if to == "tiny@1" { "tiny@2" } else { "tiny@1" };
                operator
                    .start_rollout(&pureboot_controller::service::rollout::RolloutRequest {
                        channel: "tiny".into(),
                        version: other.into(),
                        canary: "5".into(),
                        wait_secs: 600,
                        min_healthy: None,
                        health: pureboot_controller::domain::rollout::Health::Complete,
                        force: true,
                    })
                    .unwrap();
                operator.rollback("tiny").unwrap();
                done_cycles.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let answered: Vec<(String, String)> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("a client failed"))
        .collect();
    let during = done_cycles.load(std::sync::atomic::Ordering::Relaxed);
    cycles
        .join()
        .expect("every rollout and rollback went through");
    assert!(during >= 1, "no cycle ran during the storm");
    assert_eq!(answered.len(), STORM_BOOTS, "none lost");
    assert!(
        answered.iter().all(|(_, d)| d == "tiny" || d == "tiny.v2"),
        "only existing versions"
    );
    for d in ["tiny", "tiny.v2"] {
        assert!(
            answered.iter().any(|(_, a)| a == d),
            "the channel moved during the storm: some answers name {d}"
        );
    }
    assert_eq!(app.metric("pureboot_http_server_errors_total"), "0");
    // Each answer's event names the version chosen in its transaction and the directory
    // answered: always that version's directory, never one of another version.
    let mut events = 0;
    for s in &serials {
        let node = app.node(s);
        let all = app
            .services
            .store
            .read(|tx| tx.events_for_serial(s, 10_000))
            .unwrap();
        for e in all.iter().filter(|e| e.kind == "boot_request") {
            events += 1;
            let (v, d) = (&e.detail["version"], &e.detail["base_image"]);
            let want = match v.as_str() {
                Some("tiny@1") => "tiny",
                Some("tiny@2") => "tiny.v2",
                other => panic!("boot of {s} answered version {other:?}: {e:?}"),
            };
            assert_eq!(d, want, "{node}");
        }
    }
    assert_eq!(events, STORM_BOOTS, "every answered boot is in the log");
    eprintln!(
        "storm: {STORM_BOOTS} boots and reports; {during} of {CYCLES} rollout/rollback cycles \
         done when the storm ended"
    );
}

#[test]
fn the_writable_layer_is_kept_across_versions_unless_the_operator_asks_for_a_reset() {
    for reset in [false, true] {
        let app = common::spawn_app_with(|c| c.nfs.reset_layer_on_version_change = reset);
        let src = app.dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let v1 = tiny_root(&src, "v1", "v1");
        app.cli(&["image", "import", v1.to_str().unwrap(), "tiny"]);
        // The workflow's overlay: image (a persist image per node).
        app.add_node(json!({"serial": NODES[0], "workflow_id": "pi-diskless-nfs",
                            "base_image": "tiny", "mac": mac(0)}));
        let r = boot(&app, 0);
        assert_eq!(r["persist_image"], "persist.1.img", "{r}");
        installed(&app, 0, &r);
        let v2 = tiny_root(&src, "v2", "v2");
        app.cli(&["image", "import", v2.to_str().unwrap(), "tiny", "--promote"]);
        let r = boot(&app, 0);
        assert_eq!(r["base_image"], "tiny.v2");
        let want = if reset {
            "persist.2.img"
        } else {
            "persist.1.img"
        };
        assert_eq!(r["persist_image"], want, "reset {reset}: {r}");
        // Once per change, not at every boot on the new version.
        assert_eq!(boot(&app, 0)["persist_image"], want, "reset {reset}");
        let aside = app
            .services
            .tree
            .set_aside_persist_images(&pureboot_contract::ids::Serial::parse(NODES[0]).unwrap())
            .unwrap();
        assert_eq!(aside.len(), usize::from(reset), "reset {reset}: {aside:?}");
    }
}

#[test]
fn a_group_can_be_the_canary() {
    let app = spawn_app();
    let src = app.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    app.cli(&[
        "image",
        "import",
        tiny_root(&src, "v1", "v1").to_str().unwrap(),
        "tiny",
    ]);
    app.cli(&["group", "add", "rack"]);
    app.cli(&["group", "add", "shelf", "--parent", "rack"]);
    for (i, serial) in NODES.iter().enumerate() {
        app.add_node(json!({"serial": serial, "workflow_id": "pi-diskless-nfs",
                            "base_image": "tiny", "mac": mac(i)}));
    }
    // The second node in the group, the third in its subgroup: both canaries; the first not.
    app.cli(&["node", "set", NODES[1], "--group", "rack"]);
    app.cli(&["node", "set", NODES[2], "--group", "shelf"]);
    app.cli(&[
        "image",
        "import",
        tiny_root(&src, "v2", "v2").to_str().unwrap(),
        "tiny",
    ]);
    // A group none of whose nodes follows the channel: refused, naming it.
    app.cli(&["group", "add", "empty"]);
    let refused = common::cli(
        &app.dir.path().join("controller.toml"),
        &["image", "rollout", "tiny", "tiny@2", "--canary", "empty"],
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("no node of group empty follows channel tiny"),
        "{err}"
    );
    let out = app.cli(&["image", "rollout", "tiny", "tiny@2", "--canary", "rack"]);
    assert!(
        out.contains("a0000002") && out.contains("a0000003"),
        "{out}"
    );
    assert!(!out.contains("a0000001"), "{out}");
    assert_eq!(boot(&app, 0)["base_image"], "tiny");
    assert_eq!(boot(&app, 1)["base_image"], "tiny.v2");
    assert_eq!(boot(&app, 2)["base_image"], "tiny.v2");
}

/// A tiny root with the modules directory of kernel `release`.
fn root_with_modules(dir: &Path, name: &str, release: &str) -> PathBuf {
    let m = format!("lib/modules/{release}/");
    let dep = format!("{m}modules.dep");
    let entries: [(&str, &[u8]); 6] = [
        ("sbin/", b""),
        ("sbin/init", name.as_bytes()),
        ("lib/", b""),
        ("lib/modules/", b""),
        (&m, b""),
        (&dep, b""),
    ];
    tar_of(dir, name, &entries)
}

#[test]
fn a_pi_that_booted_the_old_versions_kernel_gets_the_old_versions_root() {
    let app = spawn_app();
    let src = app.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let v1 = root_with_modules(&src, "v1", "6.1.0-a");
    app.cli(&["image", "import", v1.to_str().unwrap(), "tiny"]);
    app.add_node(json!({"serial": NODES[0], "workflow_id": "pi-diskless-nfs",
                        "base_image": "tiny", "mac": mac(0)}));
    let ask = |kernel: &str| {
        let (status, r) = app.boot(&format!("serial={}&mac={}{kernel}", NODES[0], mac(0)));
        assert_eq!(status, 200, "{r}");
        r
    };
    let r = ask("&kernel=6.1.0-a");
    assert_eq!(r["base_image"], "tiny");
    installed(&app, 0, &r);
    // The channel moves to v2, whose kernel is another; the node's TFTP folder follows
    // only after the move, so a Pi may still have fetched v1's kernel.
    let v2 = root_with_modules(&src, "v2", "6.1.0-b");
    app.cli(&["image", "import", v2.to_str().unwrap(), "tiny", "--promote"]);
    assert_eq!(
        ask("&kernel=6.1.0-a")["base_image"],
        "tiny",
        "v1's kernel gets v1's root, which has its modules"
    );
    assert_eq!(ask("&kernel=6.1.0-b")["base_image"], "tiny.v2");
    assert_eq!(
        ask("")["base_image"],
        "tiny.v2",
        "no kernel named: the channel's"
    );
    assert_eq!(
        ask("&kernel=6.1.0-zz")["base_image"],
        "tiny.v2",
        "a kernel no version has: the channel's"
    );
}
