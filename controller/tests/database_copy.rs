//! `database copy`: an SQLite registry into a real PostgreSQL (a private cluster started by
//! the test: tests/postgres), then a controller on the copy: the same nodes and groups, the
//! same events, and a Pi's pending boot id still accepted.

mod common;

use common::{report_path, spawn_app_with};
use serde_json::{json, Value};

const PI_MAC: &str = "dc:a6:32:00:00:01";

#[test]
fn an_sqlite_registry_copied_into_postgres_keeps_every_node_event_and_boot_id() {
    let Some(target) = pureboot_test_postgres::database_or_skip("copy") else {
        return;
    };
    // The source is SQLite whichever engine the suite runs on.
    let old = spawn_app_with(|c| {
        c.database = c.nfs.root_path.parent().unwrap().join("registry.db");
    });
    for (path, body) in [
        ("/api/v1/groups/site", json!({"overlay_mode": "tmpfs"})),
        ("/api/v1/groups/rack2", json!({"parent": "site"})),
    ] {
        let (status, out) = old.admin("POST", path, Some(&body));
        assert_eq!(status, 201, "{path}: {out}");
    }
    old.add_node(json!({"serial": "c0000001", "workflow_id": "pi-diskless-nfs"}));
    let (status, out) = old.admin(
        "PATCH",
        "/api/v1/nodes/c0000001",
        Some(&json!({"group": "rack2"})),
    );
    assert_eq!(status, 200, "{out}");
    old.add_node(json!({"serial": "c0000002", "workflow_id": "pi-diskless-nfs"}));
    // c0000002 booted and reported; c0000001's boot is still pending (its Pi is booting).
    let (_, done) = old.boot("serial=c0000002&mac=dc:a6:32:00:00:02");
    let (status, r) = old.post(
        &report_path(&done, false),
        &json!({"success": true, "mode": "nfs_boot"}),
    );
    assert_eq!(status, 200, "{r}");
    let (status, pending) = old.boot(&format!("serial=c0000001&mac={PI_MAC}"));
    assert_eq!(status, 200, "{pending}");
    let nodes = |app: &common::TestApp| -> Vec<Value> {
        let (status, list) = app.admin_get("/api/v1/nodes");
        assert_eq!(status, 200, "{list}");
        let mut nodes = list["nodes"].as_array().cloned().unwrap_or_default();
        nodes.sort_by_key(|n| n["serial"].as_str().unwrap_or_default().to_string());
        nodes
    };
    let before = nodes(&old);
    let events_before = old.event_kinds("c0000001");

    let out = old.cli(&["database", "copy", "--to", &target]);
    assert!(
        out.contains("nodes") && out.contains("boot_events"),
        "{out}"
    );
    // A second copy into the same database is refused: it is not new any more.
    let again = common::cli(
        &old.dir.path().join("controller.toml"),
        &["database", "copy", "--to", &target],
    );
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("not new") && err.contains("2 rows in nodes"),
        "{err}"
    );

    let root = old.nfs_root();
    let new = spawn_app_with(move |c| {
        c.database = target.into();
        c.nfs.root_path = root;
    });
    assert_eq!(nodes(&new), before, "the same nodes, ids and all");
    assert_eq!(new.event_kinds("c0000001"), events_before);
    let (status, rack2) = new.admin_get("/api/v1/groups/rack2");
    assert_eq!(
        (status, rack2["parent"].as_str()),
        (200, Some("site")),
        "{rack2}"
    );
    // The Pi that was booting reports to the new registry, on its boot id.
    let (status, r) = new.post(
        &report_path(&pending, false),
        &json!({"success": true, "mode": "nfs_boot"}),
    );
    assert_eq!(status, 200, "{r}");
    let events = new.event_kinds("c0000001");
    assert_eq!(
        events[..events_before.len()],
        events_before[..],
        "{events:?}"
    );
    assert!(
        events[events_before.len()..].contains(&"installed".to_string()),
        "{events:?}"
    );
    // New events are numbered after the copied ones.
    let ids: Vec<i64> = new.node("c0000001")["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

#[test]
fn a_copy_names_what_is_wrong_with_its_target() {
    let app = spawn_app_with(|c| {
        c.database = c.nfs.root_path.parent().unwrap().join("registry.db");
    });
    app.cli(&["node", "list"]);
    let config = app.dir.path().join("controller.toml");
    for (to, says) in [
        ("/tmp/other.db", "a postgres:// or postgresql:// URL"),
        (
            "postgres://nobody@127.0.0.1:1/none",
            "postgres://nobody@127.0.0.1:1/none",
        ),
    ] {
        let out = common::cli(&config, &["database", "copy", "--to", to]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{to}: {err}");
    }
}
