//! Node groups on the real server (HTTP, SQLite, the export): a rule places a new serial in
//! its group at first contact and its boot answer carries the group chain's settings;
//! `node show --effective` names each value's source; refusals name what is in the way;
//! and a registry made by the release before groups keeps booting the same answers.

mod common;

use common::{spawn_app_with, which};
use serde_json::{json, Value};

const SERIAL: &str = "d83add36";
const MAC: &str = "dc:a6:32:01:02:03";

fn created(app: &common::TestApp, path: &str, body: Value) -> Value {
    let (status, out) = app.admin("POST", path, Some(&body));
    assert_eq!(status, 201, "{path}: {out}");
    out
}

#[test]
fn a_rule_places_a_new_serial_in_its_group_and_it_boots_the_groups_settings() {
    let app = spawn_app_with(|_| {});
    // site: the workflow (whose own overlay is `image`), a base image, a variable.
    created(
        &app,
        "/api/v1/groups/site",
        json!({"workflow_id": "pi-diskless-nfs", "base_image": "site-img",
               "overlay_mode": "tmpfs", "set_variables": {"rack": "r0", "site": "lab"}}),
    );
    // rack2 below it: its overlay, a hostname template over the merged variables.
    created(
        &app,
        "/api/v1/groups/rack2",
        json!({"parent": "site", "overlay_mode": "nfs",
               "hostname": "rack2-{{ serial }}-{{ rack }}-{{ site }}",
               "set_variables": {"rack": "r2"}}),
    );
    created(
        &app,
        "/api/v1/group-rules",
        json!({"priority": 10, "group": "rack2", "mac": "DC:A6:32:*"}),
    );
    created(
        &app,
        "/api/v1/group-rules",
        json!({"priority": 20, "group": "site", "serial": "*"}),
    );

    // First contact: unknown serial, registered in rack2 by the first rule, booted at once.
    let (status, a) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["action"], "nfs_boot", "{a}");
    assert_eq!(a["base_image"], "site-img", "{a}");
    assert_eq!(a["overlay_mode"], "nfs", "{a}");
    assert_eq!(a["hostname"], "rack2-d83add36-r2-lab", "{a}");
    let node = app.node(SERIAL);
    assert_eq!(node["group"], "rack2");
    let registered = node["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "registered")
        .expect("a registered event");
    assert_eq!(registered["detail"]["rule"], 10, "{registered}");
    assert!(app
        .nfs_root()
        .join("nodes")
        .join(SERIAL)
        .join("upper/etc/hostname")
        .exists());

    // Another vendor's MAC: the next rule by priority, the site's settings.
    let (_, b) = app.boot("serial=0badc0de&mac=b8:27:eb:01:02:03");
    assert_eq!(
        (&b["action"], &b["overlay_mode"], &b["hostname"]),
        (&json!("nfs_boot"), &json!("tmpfs"), &json!("pi-0badc0de")),
        "{b}"
    );
    assert_eq!(app.node("0badc0de")["group"], "site");

    // Each effective value names its source.
    let (status, e) = app.admin_get(&format!("/api/v1/nodes/{SERIAL}/effective"));
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["chain"], json!(["site", "rack2"]));
    let from = |field: &str| e[field]["from"].as_str().unwrap().to_string();
    assert_eq!(from("workflow"), "group site");
    assert_eq!(from("base_image"), "group site");
    assert_eq!(from("overlay"), "group rack2");
    assert_eq!(from("hostname"), "group rack2");
    assert_eq!(e["hostname"]["value"], "rack2-d83add36-r2-lab");
    assert_eq!(
        e["variables"]["rack"],
        json!({"value": "r2", "from": "group rack2"})
    );
    assert_eq!(e["variables"]["site"]["from"], "group site");
    // The node's own setting wins, and says so; the CLI shows the same.
    let (status, _) = app.admin(
        "PATCH",
        &format!("/api/v1/nodes/{SERIAL}"),
        Some(&json!({"base_image": "mine"})),
    );
    assert_eq!(status, 200);
    let text = app.cli(&["node", "show", SERIAL, "--effective"]);
    let line = |k: &str| {
        text.lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("base image").ends_with("node"), "{text}");
    assert!(
        line("overlay").contains("nfs") && line("overlay").ends_with("group rack2"),
        "{text}"
    );
    assert!(line("workflow").ends_with("group site"), "{text}");
    let (_, a) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    assert_eq!(a["base_image"], "mine", "{a}");

    // Listing by group; refusals name what is in the way.
    let (_, members) = app.admin_get("/api/v1/nodes?group=rack2");
    let serials: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["serial"].as_str().unwrap())
        .collect();
    assert_eq!(serials, [SERIAL]);
    let (status, body) = app.admin("DELETE", "/api/v1/groups/site", None);
    assert_eq!(status, 409, "{body}");
    let why = body.to_string();
    assert!(
        why.contains("0badc0de") && why.contains("rack2") && why.contains("20"),
        "{why}"
    );
    let (status, body) = app.admin(
        "PATCH",
        "/api/v1/groups/site",
        Some(&json!({"parent": "rack2"})),
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("own ancestor"), "{body}");
    // Emptied, it goes.
    app.admin(
        "PATCH",
        &format!("/api/v1/nodes/{SERIAL}"),
        Some(&json!({"group": null})),
    );
    app.admin("DELETE", "/api/v1/group-rules/10", None);
    let (status, body) = app.admin("DELETE", "/api/v1/groups/rack2", None);
    assert_eq!(status, 200, "{body}");
    // Out of the group, the node boots its workflow's... which it no longer has: it waits.
    let (_, a) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    assert_eq!(a["action"], "wait", "{a}");
}

#[test]
fn joining_a_group_gives_a_waiting_node_its_workflow_and_the_cli_manages_groups() {
    let app = spawn_app_with(|_| {});
    let (_, a) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    assert_eq!(a["state"], "discovered", "{a}");
    let run = |args: &[&str]| app.cli(args);
    let config = app.dir.path().join("controller.toml");
    run(&[
        "group",
        "add",
        "k3s",
        "--workflow",
        "pi-diskless-nfs",
        "--overlay",
        "tmpfs",
    ]);
    run(&[
        "group",
        "set",
        "k3s",
        "--var",
        "role=worker",
        "--hostname",
        "{{ role }}-{{ serial }}",
    ]);
    run(&["node", "set", SERIAL, "--group", "k3s"]);
    assert_eq!(app.node(SERIAL)["state"], "pending");
    let (_, a) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    assert_eq!(a["action"], "nfs_boot", "{a}");
    assert_eq!(a["hostname"], "worker-d83add36", "{a}");
    let listed = run(&["node", "list", "--group", "k3s"]);
    assert!(listed.contains(SERIAL), "{listed}");
    let groups = run(&["group", "list"]);
    assert!(
        groups
            .lines()
            .any(|l| l.starts_with("k3s") && l.trim_end().ends_with('1')),
        "{groups}"
    );
    // A bad hostname template is refused when set; one that renders an invalid name makes
    // the node wait with the reason (it never boots a name that is not one).
    let out = common::cli(&config, &["group", "set", "k3s", "--hostname", "{{ oops"]);
    assert!(!out.status.success());
    run(&["group", "set", "k3s", "--hostname", "bad_{{ serial }}"]);
    let (_, a) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    assert_eq!(a["action"], "wait", "{a}");
    assert!(a["message"].as_str().unwrap().contains("group k3s"), "{a}");
    let out = common::cli(&config, &["group", "rm", "k3s"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(SERIAL));
}

/// A registry made by the release before groups (schema 9: `sqlite3 .dump` of its database
/// after `node add` of three nodes and one boot each, in `tests/fixtures/`), opened by this
/// one: migrated, and every node boots the answer the old release gave it.
#[test]
fn a_registry_from_before_groups_keeps_booting_the_same_answers() {
    let db_dir = tempfile::tempdir().unwrap();
    let db = db_dir.path().join("registry.db");
    let dump = include_str!("fixtures/registry-schema9.sql");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(dump)
        .unwrap();
    let app = spawn_app_with(|c| c.database = db.clone());
    let (_, health) = app.get("/healthz");
    assert_eq!(health["schema_version"], 12, "{health}");
    let answers: Value =
        serde_json::from_str(include_str!("fixtures/registry-schema9-answers.json")).unwrap();
    let mkfs = which("mkfs.ext4").is_some();
    for (serial, old) in answers.as_object().unwrap() {
        if old["answer"]["volumes"].is_array() && !mkfs {
            eprintln!("SKIP {serial}: its workflow has a volume and mkfs.ext4 is not installed");
            continue;
        }
        let (status, a) = app.boot(&format!(
            "serial={serial}&mac={}",
            old["mac"].as_str().unwrap()
        ));
        assert_eq!(status, 200, "{a}");
        for (k, v) in old["answer"].as_object().unwrap() {
            assert_eq!(
                &a[k], v,
                "{serial}: {k} differs from the old release's answer {a}"
            );
        }
        let node = app.node(serial);
        assert!(node.get("group").is_none(), "{node}");
    }
}

/// A group's variables reach what the workflow's do: its templates and the post-boot steps'
/// environment, over the workflow's own value of the same name.
#[test]
fn a_groups_variables_reach_the_post_boot_steps_over_the_workflows() {
    if which("mkfs.ext4").is_none() {
        eprintln!("SKIP: mkfs.ext4 not installed (pi-k3s-worker has a volume)");
        return;
    }
    let app = spawn_app_with(|_| {});
    let (status, _) = app.get("/api/v1/groups");
    assert_eq!(status, 401, "the group routes are the management API's");
    created(
        &app,
        "/api/v1/groups/k3s",
        json!({"workflow_id": "pi-k3s-worker", "overlay_mode": "tmpfs",
               "set_variables": {"k3s_server": "https://10.9.9.9:6443", "zone": "{{ serial }}-z"}}),
    );
    created(
        &app,
        "/api/v1/group-rules",
        json!({"priority": 1, "group": "k3s", "serial": "d83a????"}),
    );
    let (_, a) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    assert_eq!(a["action"], "nfs_boot", "{a}");
    assert_eq!(
        a["hostname"], "k3s-d83add36",
        "the workflow's template: {a}"
    );
    let installed = json!({"success": true, "mode": "nfs_boot", "elapsed_ms": 1});
    let (status, body) = app.post(&common::report_path(&a, false), &installed);
    assert_eq!(status, 200, "{body}");
    let agent = a["agent_url"].as_str().unwrap();
    let (status, plan) = app.get(&format!("{}/steps", &agent[agent.find("/api/").unwrap()..]));
    assert_eq!(status, 200, "{plan}");
    let env = &plan["steps"][0]["env"];
    assert_eq!(env["k3s_server"], "https://10.9.9.9:6443", "{plan}");
    assert_eq!(env["zone"], "d83add36-z", "{plan}");
}

/// A model criterion matches where the model is known: `register-pi`, at registration or
/// when it first brings the model of a node still discovered and in no group.
#[test]
fn a_model_rule_places_nodes_that_register_with_their_model() {
    let app = spawn_app_with(|_| {});
    created(&app, "/api/v1/groups/pi5s", json!({"overlay_mode": "nfs"}));
    created(
        &app,
        "/api/v1/group-rules",
        json!({"priority": 5, "group": "pi5s", "model": "pi5"}),
    );
    let (status, r) = app.post(
        "/api/v1/nodes/register-pi",
        &json!({"serial": "0badc0de", "mac": "2c:cf:67:00:00:01", "model": "Pi5"}),
    );
    assert_eq!(status, 201, "{r}");
    let n = app.node("0badc0de");
    assert_eq!(
        (&n["group"], &n["state"]),
        (&json!("pi5s"), &json!("discovered")),
        "no workflow in the chain: {n}"
    );
    // First seen at a boot (no model: no rule matched), then register-pi brings the model.
    let (_, a) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    assert_eq!(a["state"], "discovered", "{a}");
    assert!(app.node(SERIAL).get("group").is_none());
    let (status, r) = app.post(
        "/api/v1/nodes/register-pi",
        &json!({"serial": SERIAL, "mac": MAC, "model": "pi5"}),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(app.node(SERIAL)["group"], "pi5s");
    // Another model: no rule, no group.
    app.post(
        "/api/v1/nodes/register-pi",
        &json!({"serial": "1234abcd", "mac": "dc:a6:32:00:00:09", "model": "pi4"}),
    );
    assert!(app.node("1234abcd").get("group").is_none());
}
