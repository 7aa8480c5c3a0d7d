//! The HTTP API against the real server (127.0.0.1, port 0, temporary database and NFS root).

mod common;

use common::{report_path, spawn_app, spawn_app_with, which, TOKEN};
use serde_json::{json, Value};

const SERIAL: &str = "d83add36";
const MAC: &str = "dc:a6:32:01:02:03";
/// A well-formed boot id that names no boot.
const BOOT: &str = "5f0c1b2a-0000-4000-8000-00000000abcd";

fn read(path: std::path::PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn unknown_serial_is_registered_as_discovered_and_waits() {
    let app = spawn_app();
    let (status, r) = app.boot(&format!("serial=D83ADD36&mac={MAC}&mode=discovery"));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["state"], "discovered");
    assert_eq!(r["action"], "wait");
    assert_eq!(r["retry_after"], 5);
    let (_, r) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    assert_eq!(r["action"], "wait");

    let (status, nodes) = app.admin_get("/api/v1/nodes");
    assert_eq!(status, 200);
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(nodes[0]["serial"], SERIAL, "serial stored lowercase");
    assert_eq!(nodes[0]["state"], "discovered");
    assert_eq!(nodes[0]["mac"], MAC);
    assert_eq!(
        app.event_kinds(SERIAL),
        ["registered", "boot_request", "boot_request"]
    );
    assert!(
        !app.nfs_root().join("nodes").join(SERIAL).exists(),
        "no tree before a workflow"
    );
}

#[test]
fn unknown_serial_gets_local_boot_when_auto_register_is_off() {
    let app = spawn_app_with(|c| c.auto_register = false);
    let (status, r) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    assert_eq!(status, 200);
    assert_eq!(r["action"], "local_boot");
    assert_eq!(r["state"], "unknown");
    let (_, nodes) = app.admin_get("/api/v1/nodes");
    assert_eq!(nodes, json!([]));
    let (status, _) = app.admin_get(&format!("/api/v1/nodes/{SERIAL}"));
    assert_eq!(status, 404);
}

#[test]
fn a_node_added_or_assigned_has_its_tree_before_its_first_boot() {
    let app = spawn_app();
    let etc = |serial: &str| app.nfs_root().join("nodes").join(serial).join("upper/etc");
    app.add_node(
        json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs", "hostname": "kitchen"}),
    );
    assert_eq!(read(etc(SERIAL).join("hostname")), "kitchen\n");
    assert_eq!(read(etc(SERIAL).join("machine-id")).trim().len(), 32);
    // Without a workflow there is nothing to prepare; assigning one prepares it.
    app.add_node(json!({"serial": "0000cafe"}));
    assert!(!etc("0000cafe").exists(), "no tree without a workflow");
    let (status, _) = app.admin(
        "POST",
        "/api/v1/nodes/0000cafe/assign",
        Some(&json!({"workflow_id": "pi-diskless-nfs"})),
    );
    assert_eq!(status, 200);
    assert_eq!(read(etc("0000cafe").join("hostname")), "pi-0000cafe\n");
}

#[test]
fn assigned_diskless_node_gets_nfs_boot_on_every_boot() {
    let app = spawn_app();
    let node = app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs", "overlay_mode": "tmpfs", "hostname": "kitchen"}));
    let id = node["id"].as_str().unwrap().to_string();
    assert_eq!(node["state"], "pending");
    let root = app.nfs_root();
    let mut machine_ids = Vec::new();
    let mut boot_ids: Vec<String> = Vec::new();
    for round in 0..3 {
        let (status, r) = app.boot(&format!(
            "serial={SERIAL}&mac={MAC}&full_serial=10000000{SERIAL}"
        ));
        assert_eq!(status, 200, "round {round}: {r}");
        assert_eq!(r["action"], "nfs_boot", "round {round}: {r}");
        assert_eq!(r["state"], "installing");
        assert_eq!(
            r["nfs_server"], "10.0.2.2",
            "workflow template rendered from settings"
        );
        assert_eq!(r["nfs_path"], root.display().to_string(), "the export root");
        // A new unguessable id per boot: neither the serial nor the node id.
        let callback = r["callback_url"].as_str().unwrap();
        let boot_id = callback
            .strip_prefix("http://10.0.2.2:8080/api/v1/nodes/")
            .and_then(|c| c.strip_suffix("/installed"))
            .unwrap_or_else(|| panic!("{callback}"));
        assert!(boot_id.len() == 36 && boot_id != id && !boot_id.contains(SERIAL));
        assert!(
            !boot_ids.contains(&boot_id.to_string()),
            "a new id per boot"
        );
        boot_ids.push(boot_id.to_string());
        assert_eq!(
            r["failure_url"],
            format!("http://10.0.2.2:8080/api/v1/nodes/{boot_id}/install-failed")
        );
        assert_eq!(r["base_image"], "debian-arm64", "configured default");
        assert_eq!(
            r["overlay_mode"], "tmpfs",
            "node setting beats the workflow's image"
        );
        assert_eq!(r["hostname"], "kitchen");
        machine_ids.push(r["machine_id"].as_str().unwrap().to_string());
        assert_eq!(app.node(&id)["state"], "installing");

        let (status, n) = app.post(
            &report_path(&r, false),
            &json!({"success": true, "mode": "nfs_boot", "ip_address": "10.0.2.15", "elapsed_ms": 900 + round,
                    "steps": [{"step": "nfs-mount", "ms": 150}]}),
        );
        assert_eq!(status, 200, "round {round}: {n}");
        assert_eq!(n["state"], "active");
        assert_eq!(
            n["last_ip"], "127.0.0.1",
            "the boot's address, not the report's"
        );
        assert!(n["last_boot_at"].as_str().is_some());
    }
    assert!(
        machine_ids
            .iter()
            .all(|m| m == &machine_ids[0] && m.len() == 32),
        "{machine_ids:?}"
    );
    let upper = root.join("nodes").join(SERIAL).join("upper/etc");
    assert_eq!(read(upper.join("hostname")), "kitchen\n");
    assert_eq!(read(upper.join("machine-id")).trim(), machine_ids[0]);

    let detail = app.node(SERIAL);
    let installed: Vec<&Value> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "installed")
        .collect();
    assert_eq!(installed.len(), 3);
    assert_eq!(
        installed[2]["detail"]["steps"][0]["step"], "nfs-mount",
        "full callback body kept"
    );
    assert_eq!(installed[2]["detail"]["elapsed_ms"], 902);
    assert!(detail["tree"]["path"].as_str().unwrap().ends_with(SERIAL));
}

#[test]
fn workflow_templates_and_overlay_image_reach_the_node() {
    let app = spawn_app();
    app.add_node(
        json!({"serial": "0000beef", "workflow_id": "pi-k3s-worker", "base_image": "k3s-base"}),
    );
    let (_, r) = app.boot("serial=0000beef");
    assert_eq!(r["action"], "nfs_boot", "{r}");
    assert_eq!(
        r["hostname"], "k3s-0000beef",
        "workflow hostname template rendered per node"
    );
    assert_eq!(r["base_image"], "k3s-base", "node's base image");
    assert_eq!(
        read(app.nfs_root().join("nodes/0000beef/upper/etc/hostname")),
        "k3s-0000beef\n"
    );

    // pi-diskless-nfs asks for overlay `image`: the node gets a persist.img.
    if which("mkfs.ext4").is_none() {
        eprintln!("SKIP overlay image part: mkfs.ext4 not installed");
        return;
    }
    app.add_node(json!({"serial": "0000cafe", "workflow_id": "pi-diskless-nfs"}));
    let (status, r) = app.boot("serial=0000cafe");
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["overlay_mode"], "image");
    assert_eq!(r["persist_image"], "persist.1.img");
    let img = app.nfs_root().join("nodes/0000cafe/persist.1.img");
    let meta = std::fs::metadata(&img).unwrap_or_else(|e| panic!("{}: {e}", img.display()));
    assert_eq!(meta.len(), 256 * 1024 * 1024, "persist_size_mb default");
}

#[test]
fn callbacks_move_state_or_answer_409() {
    let app = spawn_app();
    // A discovered node has not been told to boot: it has no boot to report on, and the
    // serial names none.
    let (_, r) = app.boot(&format!("serial={SERIAL}"));
    assert_eq!(r["callback_url"], Value::Null, "{r}");
    let (status, e) = app.post(
        &format!("/api/v1/nodes/{SERIAL}/installed"),
        &json!({"success": true, "mode": "nfs_boot"}),
    );
    assert_eq!(status, 404, "{e}");
    assert_eq!(e["error"], "not_found");
    assert_eq!(app.node(SERIAL)["state"], "discovered");

    let (status, n) = app.admin(
        "POST",
        &format!("/api/v1/nodes/{SERIAL}/assign"),
        Some(&json!({"workflow_id": "pi-diskless-nfs"})),
    );
    assert_eq!((status, n["state"].clone()), (200, json!("pending")), "{n}");
    let (_, r) = app.boot(&format!("serial={SERIAL}"));
    let (status, n) = app.post(
        &report_path(&r, true),
        &json!({"error": "Base image not found: debian-arm64", "step": "overlay"}),
    );
    assert_eq!(status, 200, "{n}");
    assert_eq!(n["state"], "install_failed");
    let events = app.node(SERIAL)["events"].clone();
    let failed = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "install_failed")
        .unwrap();
    assert_eq!(
        failed["detail"]["error"],
        "Base image not found: debian-arm64"
    );
    let (status, _) = app.post(&report_path(&r, true), &json!({"error": "again"}));
    assert_eq!(
        status, 409,
        "install_failed -> install_failed is not a transition"
    );
    assert!(
        app.event_kinds(SERIAL)
            .iter()
            .filter(|k| *k == "install_failed")
            .count()
            == 1,
        "a refused report stores nothing"
    );

    // The next boot retries: nfs_boot again, with a new id; the old one names no boot.
    let (_, r2) = app.boot(&format!("serial={SERIAL}"));
    assert_eq!(r2["action"], "nfs_boot");
    let (status, _) = app.post(
        &report_path(&r, false),
        &json!({"success": true, "mode": "nfs_boot"}),
    );
    assert_eq!(status, 404, "the previous boot's id is spent");
    let (status, _) = app.post(
        &report_path(&r2, false),
        &json!({"success": true, "mode": "nfs_boot"}),
    );
    assert_eq!(status, 200);
    let (status, e) = app.admin(
        "PATCH",
        &format!("/api/v1/nodes/{SERIAL}"),
        Some(&json!({"state": "pending"})),
    );
    assert_eq!(status, 409, "active -> pending: {e}");
    let (status, n) = app.admin(
        "PATCH",
        &format!("/api/v1/nodes/{SERIAL}"),
        Some(&json!({"state": "retired"})),
    );
    assert_eq!((status, n["state"].clone()), (200, json!("retired")));
    let (_, r) = app.boot(&format!("serial={SERIAL}"));
    assert_eq!(r["action"], "local_boot", "retired nodes are not served");
}

#[test]
fn management_api_requires_the_bearer_token() {
    let app = spawn_app();
    for path in [
        "/api/v1/nodes",
        "/api/v1/workflows",
        "/api/v1/images",
        "/api/v1/nodes/d83add36/events",
    ] {
        let (status, e) = app.get(path);
        assert_eq!(status, 401, "{path}: {e}");
        assert_eq!(e["error"], "unauthorized");
        let resp = ureq::get(&app.url(path))
            .set("Authorization", "Bearer wrong")
            .call();
        assert!(matches!(resp, Err(ureq::Error::Status(401, _))), "{path}");
    }
    let (status, w) = app.admin_get("/api/v1/workflows");
    assert_eq!(status, 200);
    let ids: Vec<&str> = w["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["pi-diskless-nfs", "pi-k3s-worker"]);
    assert_eq!(
        app.admin_get("/api/v1/images").1,
        json!({"images": [], "default": "debian-arm64"})
    );

    let no_token = spawn_app_with(|c| c.admin_token = None);
    let resp = ureq::get(&no_token.url("/api/v1/nodes"))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .call();
    assert!(
        matches!(resp, Err(ureq::Error::Status(401, _))),
        "no admin_token configured: API closed"
    );
}

#[test]
fn bad_input_gets_4xx_json_never_500() {
    let app = spawn_app();
    app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs"}));
    let big = format!("{{\"error\": \"{}\"}}", "x".repeat(10_000));
    let cases: Vec<(&str, (u16, Value))> = vec![
        ("no serial", app.get("/api/v1/boot/pi")),
        ("short serial", app.boot("serial=d83add3")),
        ("path serial", app.boot("serial=..%2F..%2Fetc")),
        ("bad mac", app.boot(&format!("serial={SERIAL}&mac=zz:zz"))),
        (
            "foreign full serial",
            app.boot(&format!("serial={SERIAL}&full_serial=10000000aaaaaaaa")),
        ),
        (
            "malformed json",
            app.post_raw(
                &format!("/api/v1/nodes/{BOOT}/installed"),
                "{\"success\": tru",
            ),
        ),
        (
            "wrong json shape",
            app.post_raw(
                &format!("/api/v1/nodes/{BOOT}/installed"),
                "{\"success\": \"yes\", \"mode\": 1}",
            ),
        ),
        (
            "oversized body",
            app.post_raw(&format!("/api/v1/nodes/{BOOT}/install-failed"), &big),
        ),
        (
            "bad node id",
            app.post(
                "/api/v1/nodes/not-a-node/installed",
                &json!({"success": true, "mode": "nfs_boot"}),
            ),
        ),
        (
            "unknown node",
            app.post(
                "/api/v1/nodes/0badc0de/installed",
                &json!({"success": true, "mode": "nfs_boot"}),
            ),
        ),
        (
            "register bad mac",
            app.post(
                "/api/v1/nodes/register-pi",
                &json!({"serial": SERIAL, "mac": "nope"}),
            ),
        ),
        (
            "add bad hostname",
            app.admin(
                "POST",
                "/api/v1/nodes",
                Some(&json!({"serial": "0000aaaa", "hostname": "-bad-"})),
            ),
        ),
        (
            "add unknown workflow",
            app.admin(
                "POST",
                "/api/v1/nodes",
                Some(&json!({"serial": "0000aaaa", "workflow_id": "nope"})),
            ),
        ),
        (
            "add bad image name",
            app.admin(
                "POST",
                "/api/v1/nodes",
                Some(&json!({"serial": "0000aaaa", "base_image": "../etc"})),
            ),
        ),
        (
            "add unknown field",
            app.admin(
                "POST",
                "/api/v1/nodes",
                Some(&json!({"serial": "0000aaaa", "colour": "red"})),
            ),
        ),
        (
            "add existing",
            app.admin("POST", "/api/v1/nodes", Some(&json!({"serial": SERIAL}))),
        ),
        (
            "bad state filter",
            app.admin_get("/api/v1/nodes?state=sleeping"),
        ),
        ("no route", app.get("/api/v2/nothing")),
    ];
    for (what, (status, body)) in &cases {
        assert!((400..500).contains(status), "{what}: {status} {body}");
        assert!(
            body["error"].is_string() && body["detail"].is_string(),
            "{what}: {body}"
        );
    }
    let status_of = |what: &str| cases.iter().find(|(w, _)| *w == what).unwrap().1 .0;
    assert_eq!(status_of("oversized body"), 413);
    assert_eq!(status_of("unknown node"), 404);
    assert_eq!(status_of("add existing"), 409);
    assert_eq!(status_of("wrong json shape"), 422);
    assert_eq!(
        app.node(SERIAL)["state"],
        "pending",
        "nothing above changed the node"
    );
}

/// One boot of abcd0001 with its MAC, from any thread.
fn boot_abcd0001(base: &str) -> Value {
    ureq::get(&format!("{base}/api/v1/boot/pi?serial=abcd0001&mac={MAC}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap()
}

#[test]
fn concurrent_boots_of_one_serial_neither_lose_events_nor_duplicate_the_node() {
    let app = spawn_app();
    let (threads, per_thread) = (8, 6);
    let base = app.base.clone();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let base = base.clone();
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|_| boot_abcd0001(&base)["action"].as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let actions: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(actions.iter().all(|a| a == "wait"), "{actions:?}");
    let (_, nodes) = app.admin_get("/api/v1/nodes");
    assert_eq!(nodes.as_array().unwrap().len(), 1, "one node: {nodes}");
    let (_, events) = app.admin_get("/api/v1/nodes/abcd0001/events?limit=1000");
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "boot_request").count(),
        threads * per_thread
    );
    assert_eq!(kinds.iter().filter(|k| **k == "registered").count(), 1);
    assert_eq!(kinds[0], "registered");

    // The same for an assigned node: each boot is one installing round, nothing interleaves.
    app.admin(
        "POST",
        "/api/v1/nodes/abcd0001/assign",
        Some(&json!({"workflow_id": "pi-k3s-worker"})),
    );
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let base = base.clone();
            std::thread::spawn(move || {
                boot_abcd0001(&base)["machine_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
        })
        .collect();
    let ids: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(ids.iter().all(|i| i == &ids[0]), "{ids:?}");
    let (_, events) = app.admin_get("/api/v1/nodes/abcd0001/events?limit=1000");
    let changes: Vec<(&str, &str)> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "state_change")
        .map(|e| {
            (
                e["detail"]["from"].as_str().unwrap(),
                e["detail"]["to"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [("pending", "installing")],
        "exactly one transition for 8 concurrent boots"
    );
}

#[test]
fn a_second_machine_claiming_a_short_serial_is_flagged() {
    let app = spawn_app();
    let (_, r) = app.boot(&format!(
        "serial={SERIAL}&mac={MAC}&full_serial=10000000{SERIAL}"
    ));
    assert_eq!(r["action"], "wait");
    assert_eq!(app.node(SERIAL)["conflict"], Value::Null);
    // Same machine again: no flag.
    app.boot(&format!(
        "serial={SERIAL}&mac={MAC}&full_serial=10000000{SERIAL}"
    ));
    assert_eq!(app.node(SERIAL)["conflict"], Value::Null);
    // A Pi 5 with the same low 32 bits: refused and recorded as a conflict event; it
    // changes nothing of the node, not even a flag (anyone could set one).
    let before = app.node(SERIAL);
    let (status, r) = app.boot(&format!(
        "serial={SERIAL}&mac=dc:a6:32:ff:ff:ff&full_serial=20000000{SERIAL}"
    ));
    assert_eq!((status, r["action"].as_str()), (200, Some("wait")), "{r}");
    let node = app.node(SERIAL);
    for field in [
        "conflict",
        "full_serial",
        "mac",
        "state",
        "last_ip",
        "last_boot_at",
    ] {
        assert_eq!(node[field], before[field], "{field}");
    }
    let conflict = node["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "conflict")
        .expect("a conflict event");
    let text = conflict["detail"]["conflicts"].to_string();
    assert!(
        text.contains(&format!("20000000{SERIAL}")) && text.contains("dc:a6:32:ff:ff:ff"),
        "{text}"
    );
    let (_, nodes) = app.admin_get("/api/v1/nodes");
    assert_eq!(nodes.as_array().unwrap().len(), 1);
    let (status, n) = app.admin(
        "PATCH",
        &format!("/api/v1/nodes/{SERIAL}"),
        Some(&json!({"clear_conflict": true})),
    );
    assert_eq!((status, n["conflict"].clone()), (200, Value::Null));

    // A report names the machine too, but identity comes only from accepted boot
    // requests: the report's full serial and MAC neither replace, fill nor flag anything.
    app.admin(
        "POST",
        &format!("/api/v1/nodes/{SERIAL}/assign"),
        Some(&json!({"workflow_id": "pi-k3s-worker"})),
    );
    let (_, r) = app.boot(&format!("serial={SERIAL}&mac={MAC}"));
    let report = json!({"success": true, "mode": "nfs_boot", "serial": SERIAL, "full_serial": format!("30000000{SERIAL}"), "mac": "dc:a6:32:ee:ee:ee"});
    let (status, n) = app.post(&report_path(&r, false), &report);
    assert_eq!(status, 200, "{n}");
    assert_eq!(
        (
            n["conflict"].clone(),
            n["full_serial"].clone(),
            n["mac"].clone()
        ),
        (Value::Null, json!(format!("10000000{SERIAL}")), json!(MAC)),
        "{n}"
    );
}

#[test]
fn register_pi_health_metrics_and_delete() {
    let app = spawn_app();
    let req = json!({"serial": "0000abcd", "mac": "DC-A6-32-00-00-01", "model": "pi4", "ip_address": "10.0.2.15"});
    let (status, n) = app.post("/api/v1/nodes/register-pi", &req);
    assert_eq!(
        (status, n["mac"].clone(), n["state"].clone()),
        (201, json!("dc:a6:32:00:00:01"), json!("discovered"))
    );
    let (status, _) = app.post("/api/v1/nodes/register-pi", &req);
    assert_eq!(status, 200, "second registration updates");

    let (status, h) = app.get("/healthz");
    assert_eq!(
        (status, h["status"].clone(), h["workflows"].clone()),
        (200, json!("ok"), json!(2))
    );

    app.boot("serial=0000abcd");
    let text = ureq::get(&app.url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        text.contains("pureboot_boot_requests_total{action=\"wait\"} 1"),
        "{text}"
    );
    let count: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("pureboot_http_request_duration_seconds_count "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(count >= 4, "{count}");

    app.admin(
        "POST",
        "/api/v1/nodes/0000abcd/assign",
        Some(&json!({"workflow_id": "pi-k3s-worker"})),
    );
    app.boot("serial=0000abcd");
    assert!(app.nfs_root().join("nodes/0000abcd").is_dir());
    let (status, r) = app.admin("DELETE", "/api/v1/nodes/0000abcd", None);
    assert_eq!(
        (status, r["tree_removed"].clone()),
        (200, json!(true)),
        "{r}"
    );
    assert!(!app.nfs_root().join("nodes/0000abcd").exists());
    assert_eq!(app.admin_get("/api/v1/nodes/0000abcd").0, 404);
}

#[test]
fn workflow_problems_are_explained_to_the_node() {
    let wf_dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(wf_dir.path().join(name), text).unwrap();
    write(
        "needs-rack.yaml",
        "id: needs-rack\nname: R\ninstall_method: nfs\nbase_image: \"{{ rack }}-image\"\n",
    );
    write(
        "bad-host.yaml",
        "id: bad-host\nname: H\ninstall_method: nfs\nhostname: \"pi_{{ serial }}\"\n",
    );
    let dir = wf_dir.path().to_path_buf();
    let app = spawn_app_with(move |c| c.workflows_dir = dir);

    app.add_node(json!({"serial": "0000000a", "workflow_id": "needs-rack"}));
    let (status, r) = app.boot("serial=0000000a");
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["action"], "wait");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("needs-rack") && msg.contains("base_image") && msg.contains("undefined"),
        "{msg}"
    );
    assert_eq!(
        app.node("0000000a")["state"],
        "pending",
        "nothing to boot, no transition"
    );

    // Renders, but to a hostname that is not one: the node waits, told why; no invalid
    // name is sent.
    app.add_node(json!({"serial": "0000000b", "workflow_id": "bad-host"}));
    let (status, r) = app.boot("serial=0000000b");
    assert_eq!((status, r["action"].as_str()), (200, Some("wait")), "{r}");
    assert_eq!(r["hostname"], Value::Null);
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("bad-host") && msg.contains("hostname") && msg.contains("pi_0000000b"),
        "{msg}"
    );
}

#[test]
fn workflows_reload_without_a_restart_and_keep_the_old_set_when_unreadable() {
    let wf_dir = tempfile::tempdir().unwrap();
    let dir = wf_dir.path().join("workflows");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("first.yaml"),
        "id: first\nname: First\ninstall_method: nfs\n",
    )
    .unwrap();
    let served = dir.clone();
    let app = spawn_app_with(move |c| c.workflows_dir = served);
    assert_eq!(app.admin_get("/api/v1/workflows/second").0, 404);

    // A node assigned to a workflow that does not exist yet is refused ...
    let (status, _) = app.admin(
        "POST",
        "/api/v1/nodes",
        Some(&json!({"serial": "0000000c", "workflow_id": "second"})),
    );
    assert_eq!(status, 400);

    // ... until the file is there and the controller reloads (no restart).
    std::fs::write(
        dir.join("second.yaml"),
        "id: second\nname: Second\ninstall_method: nfs\nbase_image: \"{{ serial }}-image\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("broken.yaml"), "id: [not, a, string]\n").unwrap();
    assert_eq!(
        ureq::post(&app.url("/api/v1/workflows/reload"))
            .call()
            .unwrap_err()
            .into_response()
            .map(|r| r.status()),
        Some(401),
        "reload is a management call"
    );
    let (status, r) = app.admin("POST", "/api/v1/workflows/reload", None);
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["workflows"], json!(["first", "second"]));
    assert_eq!(r["warnings"], json!([]), "no nfs_base_path, nothing to say");
    let broken = r["broken"].as_array().unwrap();
    assert!(
        broken.len() == 1 && broken[0].as_str().unwrap().contains("broken.yaml"),
        "{r}"
    );
    let (status, wf) = app.admin_get("/api/v1/workflows/second");
    assert_eq!((status, wf["name"].as_str()), (200, Some("Second")));
    app.add_node(json!({"serial": "0000000c", "workflow_id": "second"}));
    let (status, boot) = app.boot("serial=0000000c");
    assert_eq!(status, 200, "{boot}");
    assert_eq!(boot["base_image"], "0000000c-image", "{boot}");

    // The directory gone wrong (a file in its place): 500 naming it, the loaded set stays.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, "not a directory").unwrap();
    let (status, e) = app.admin("POST", "/api/v1/workflows/reload", None);
    assert_eq!(status, 500, "{e}");
    let detail = e["detail"].as_str().unwrap();
    assert!(
        !detail.contains(&dir.display().to_string()) && detail.contains("keeping the 2"),
        "the answer names no server path: {detail}"
    );
    assert_eq!(app.admin_get("/api/v1/workflows/second").0, 200);
    assert_eq!(app.get("/healthz").1["workflows"], 2);
}

#[test]
fn nodes_mount_the_export_path_while_the_controller_writes_under_root_path() {
    let app = spawn_app_with(|c| c.nfs.export_path = Some("/exports/pi".into()));
    app.add_node(json!({"serial": "0000000d", "workflow_id": "pi-diskless-nfs"}));
    let (status, r) = app.boot("serial=0000000d");
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["action"], "nfs_boot", "{r}");
    assert_eq!(r["nfs_path"], "/exports/pi", "{r}");
    assert!(
        app.nfs_root().join("nodes/0000000d").is_dir(),
        "the node's tree is prepared under root_path"
    );
}

#[test]
fn a_boot_whose_tree_cannot_be_prepared_changes_nothing_and_names_no_server_path() {
    let wf_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::repo_workflows().join("pi-diskless-nfs.yaml"),
        wf_dir.path().join("pi-diskless-nfs.yaml"),
    )
    .unwrap();
    std::fs::write(
        wf_dir.path().join("bad-host.yaml"),
        "id: bad-host\nname: Bad host\ninstall_method: nfs\nhostname: \"{{ serial }}\\nx\"\n",
    )
    .unwrap();
    let dir = wf_dir.path().to_path_buf();
    let app = spawn_app_with(move |c| c.workflows_dir = dir);
    let root = app.nfs_root().display().to_string();
    app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs"}));
    app.add_node(json!({"serial": "0000aaaa", "workflow_id": "bad-host"}));
    // Something in the way of the node's directory (as a full disk would fail the write).
    let nodes = app.nfs_root().join("nodes");
    std::fs::remove_dir_all(nodes.join(SERIAL)).unwrap(); // prepared when the node was added
    std::fs::write(nodes.join(SERIAL), "in the way").unwrap();
    // A rendered name that is not one fails that node's answer before any file work: it
    // waits, told why.
    let (status, r) = app.boot("serial=0000aaaa");
    assert_eq!((status, r["action"].as_str()), (200, Some("wait")), "{r}");
    assert!(r["message"].as_str().unwrap().contains("hostname"), "{r}");
    {
        let serial = SERIAL;
        let (status, e) = app.boot(&format!("serial={serial}"));
        assert_eq!(status, 500, "{serial}: {e}");
        assert_eq!(e["error"], "internal");
        let text = e.to_string();
        assert!(
            !text.contains(&root) && !text.contains("/nodes/"),
            "{serial}: the answer names a server path: {text}"
        );
        let node = app.node(serial);
        assert_eq!(node["state"], "pending", "{serial}: state unchanged");
        let events = node["events"].as_array().unwrap();
        assert!(
            !events
                .iter()
                .any(|e| e["kind"] == "state_change" || e["detail"]["action"] == "nfs_boot"),
            "{serial}: nothing says the boot happened: {events:?}"
        );
    }
    // Once the export is fixed the same node boots.
    std::fs::remove_file(nodes.join(SERIAL)).unwrap();
    let (status, r) = app.boot(&format!("serial={SERIAL}"));
    assert_eq!(
        (status, r["action"].as_str()),
        (200, Some("nfs_boot")),
        "{r}"
    );
    assert_eq!(app.node(SERIAL)["state"], "installing");
}

/// Nested loops of 10^10 iterations: minutes of CPU without a fuel limit.
const RUNAWAY: &str =
    "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}x";

#[test]
fn a_runaway_template_stops_neither_the_other_boots_nor_the_controller() {
    let wf_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::repo_workflows().join("pi-diskless-nfs.yaml"),
        wf_dir.path().join("pi-diskless-nfs.yaml"),
    )
    .unwrap();
    // Fine for the sample node a reload renders, runaway for one real node.
    std::fs::write(
        wf_dir.path().join("sly.yaml"),
        format!(
            "id: sly\nname: Sly\ninstall_method: nfs\nhostname: \"{{% if serial == '0000dead' %}}{RUNAWAY}{{% else %}}ok{{% endif %}}\"\n"
        ),
    )
    .unwrap();
    let dir = wf_dir.path().to_path_buf();
    let app = spawn_app_with(move |c| c.workflows_dir = dir);
    app.add_node(json!({"serial": "0000dead", "workflow_id": "sly"}));
    app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs"}));
    let agent = ureq::AgentBuilder::new()
        .timeout(std::time::Duration::from_secs(10))
        .build();
    let get = |path: &str| -> (u16, Value) {
        match agent.get(&app.url(path)).call() {
            Ok(r) => (r.status(), r.into_json().unwrap()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_json().unwrap()),
            Err(e) => panic!("{path}: {e}"),
        }
    };
    let started = std::time::Instant::now();
    let stuck = std::thread::scope(|s| {
        let stuck = s.spawn(|| get("/api/v1/boot/pi?serial=0000dead"));
        // Meanwhile the controller answers everyone else.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (status, r) = get(&format!("/api/v1/boot/pi?serial={SERIAL}"));
        assert_eq!(
            (status, r["action"].as_str()),
            (200, Some("nfs_boot")),
            "{r}"
        );
        assert_eq!(get("/healthz").0, 200);
        stuck.join().unwrap()
    });
    let (status, r) = stuck;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["action"], "wait", "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("hostname") && msg.contains("too long"),
        "{msg}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    // Runaway for every node: a reload leaves it out, with why.
    std::fs::write(
        wf_dir.path().join("greedy.yaml"),
        "id: greedy\nname: Greedy\ninstall_method: nfs\nhostname: \"{{ 'x' * 100000 }}\"\n",
    )
    .unwrap();
    let (status, reloaded) = app.admin("POST", "/api/v1/workflows/reload", None);
    assert_eq!(status, 200, "{reloaded}");
    let broken = reloaded["broken"].to_string();
    assert!(
        broken.contains("greedy") && broken.contains("over the render limits"),
        "{reloaded}"
    );
    assert!(!reloaded["workflows"].to_string().contains("greedy"));
    assert!(reloaded["workflows"].to_string().contains("sly"));
}

#[test]
fn healthz_reports_write_health() {
    let app = spawn_app();
    let (status, h) = app.get("/healthz");
    assert_eq!((status, h["status"].as_str()), (200, Some("ok")), "{h}");
    // The export stops taking writes (as on a full disk): healthz says so.
    let root = app.nfs_root();
    let aside = root.with_extension("aside");
    std::fs::rename(&root, &aside).unwrap();
    std::fs::write(&root, "not a directory").unwrap();
    let (status, h) = app.get("/healthz");
    assert_eq!(status, 503, "{h}");
    assert_eq!(h["status"], "error");
    assert_eq!(h["database"], "ok");
    assert!(
        h["export"].as_str().unwrap().contains("write failed"),
        "{h}"
    );
    assert!(!h.to_string().contains(&root.display().to_string()), "{h}");
    std::fs::remove_file(&root).unwrap();
    std::fs::rename(&aside, &root).unwrap();
    assert_eq!(app.get("/healthz").0, 200);
}

/// The boot's two halves (the node tree prepared on the I/O pool, the transaction on the
/// registry's): a node changed in between is not committed with the stale answer but
/// prepared again, and one that keeps changing is refused as a conflict.
#[test]
fn a_boot_whose_node_changes_before_its_commit_is_prepared_again() {
    use pureboot_contract::boot_query::BootQuery;
    use pureboot_contract::ids::Serial;
    use pureboot_controller::domain::ids::NodeRef;
    use pureboot_controller::service::boot::BootRequest;
    use pureboot_controller::service::nodes::NodeUpdate;
    use pureboot_controller::service::ServiceError;
    let app = spawn_app();
    app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs", "overlay_mode": "tmpfs", "hostname": "kitchen"}));
    let s = &app.services;
    let req = BootRequest {
        query: BootQuery::new(Serial::parse(SERIAL).unwrap(), None, None),
        ip: Some("127.0.0.1".into()),
    };
    let node = NodeRef::Serial(Serial::parse(SERIAL).unwrap());
    let rename = |name: &str| {
        let upd = NodeUpdate {
            hostname: Some(Some(name.into())),
            ..Default::default()
        };
        s.update_node(&node, &upd).unwrap();
    };
    let hostname = || {
        read(
            app.nfs_root()
                .join(format!("nodes/{SERIAL}/upper/etc/hostname")),
        )
    };

    // The commit is async (it waits for the registry's group commit without a thread).
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let commit = |prepared| rt.block_on(s.commit_boot(&req, prepared));
    let stale = s.prepare_boot(&req, 1).unwrap();
    assert_eq!(hostname(), "kitchen\n");
    rename("pantry");
    assert!(
        commit(stale).unwrap().is_none(),
        "prepared for the old name: not committed"
    );
    let (_, events) = app.admin_get(&format!("/api/v1/nodes/{SERIAL}/events"));
    assert!(
        !events.to_string().contains("boot_request"),
        "nothing recorded for the stale attempt: {events}"
    );
    let fresh = s.prepare_boot(&req, 2).unwrap();
    let answer = commit(fresh).unwrap().expect("committed");
    assert_eq!(answer.state, "installing");
    assert_eq!(hostname(), "pantry\n", "the tree the answer relies on");

    let last = s.prepare_boot(&req, 5).unwrap();
    rename("cellar");
    match commit(last) {
        Err(ServiceError::Conflict(m)) => assert!(m.contains("kept changing"), "{m}"),
        other => panic!("the last attempt must give up: {other:?}"),
    }
}
