//! A pool of NFS servers (`[[nfs.servers]]`) on the real server (HTTP, SQLite, the
//! servers' export trees as local directories): nodes placed by weight and sticky, pins by
//! group and node, an image missing on a server never answered there and named by `image
//! status`, copied by `image sync`, draining moving tmpfs nodes and listing data nodes,
//! `node move`, and the operations' views (healthz, metrics, status).

mod common;

use std::path::{Path, PathBuf};

use common::{spawn_app_with, TestApp};
use pureboot_controller::config::{NfsServerConfig, ServerState};
use serde_json::{json, Value};

const A: &str = "10.0.3.1";
const B: &str = "10.0.3.2";
const IMAGE: &str = "debian-arm64";

fn server(address: &str, local: PathBuf, weight: u64, state: ServerState) -> NfsServerConfig {
    NfsServerConfig {
        address: address.into(),
        export_path: format!("/exports/{address}").into(),
        local_path: Some(local),
        weight,
        state,
    }
}

/// The app with servers A (weight 2) and B (weight 1), each with its own tree beside the
/// source tree (`[nfs] root_path`, which holds the base image), all under `dir` (so a test
/// can start the controller again on the same registry and trees); `sync`: the image is
/// copied to both.
fn pool_in(dir: &Path, states: [ServerState; 2], within: u64, sync: bool) -> TestApp {
    let dir = dir.to_path_buf();
    let app = spawn_app_with(move |c| {
        c.database = pureboot_controller::store::test_support::database(&dir, "registry.db");
        c.nfs.root_path = dir.join("nfsroot");
        c.nfs.persist_size_mb = 16;
        c.boot_complete_within_secs = within;
        let image = c.nfs.root_path.join("base").join(IMAGE);
        if !image.exists() {
            std::fs::create_dir_all(image.join("etc")).unwrap();
            std::fs::write(image.join("etc/os-release"), "ID=debian\n").unwrap();
            std::os::unix::fs::symlink("os-release", image.join("etc/release")).unwrap();
        }
        c.nfs.servers = vec![
            server(A, dir.join("srv-a"), 2, states[0]),
            server(B, dir.join("srv-b"), 1, states[1]),
        ];
    });
    if sync {
        let (status, out) = app.admin("POST", "/api/v1/nfs/images/sync", None);
        assert_eq!(status, 200, "{out}");
    }
    app
}

fn pool(dir: &tempfile::TempDir, states: [ServerState; 2], sync: bool) -> TestApp {
    pool_in(dir.path(), states, 900, sync)
}

fn local(app: &TestApp, address: &str) -> PathBuf {
    let s = app.config.nfs.servers.iter().find(|s| s.address == address);
    s.unwrap().local_path.clone().unwrap()
}

fn serial(i: usize) -> String {
    format!("1000000{i}")
}

fn add(app: &TestApp, serial: &str, overlay: &str) {
    app.add_node(
        json!({"serial": serial, "workflow_id": "pi-diskless-nfs", "overlay_mode": overlay}),
    );
}

/// Boots the node; its answer's server, after checking the export path goes with it.
fn boot(app: &TestApp, serial: &str) -> Value {
    let (status, a) = app.boot(&format!("serial={serial}"));
    assert_eq!(status, 200, "{a}");
    if a["action"] == "nfs_boot" {
        let server = a["nfs_server"].as_str().unwrap();
        assert_eq!(a["nfs_path"], format!("/exports/{server}"), "{a}");
    }
    a
}

fn servers(app: &TestApp) -> Vec<Value> {
    let (status, out) = app.admin_get("/api/v1/nfs/servers");
    assert_eq!(status, 200, "{out}");
    out.as_array().unwrap().clone()
}

fn image_status(app: &TestApp) -> Vec<Value> {
    let (status, out) = app.admin_get("/api/v1/nfs/images");
    assert_eq!(status, 200, "{out}");
    out.as_array().unwrap().clone()
}

fn on(p: &Path, serial: &str) -> bool {
    p.join("nodes").join(serial).is_dir()
}

#[test]
fn six_nodes_are_placed_by_weight_and_stay_across_boots() {
    let dir = tempfile::tempdir().unwrap();
    let app = pool(&dir, [ServerState::Active, ServerState::Active], true);
    let mut first = Vec::new();
    for i in 0..6 {
        add(&app, &serial(i), "tmpfs");
        let a = boot(&app, &serial(i));
        assert_eq!(a["action"], "nfs_boot", "{a}");
        first.push(a["nfs_server"].as_str().unwrap().to_string());
    }
    let on_a = first.iter().filter(|s| *s == A).count();
    assert_eq!((on_a, 6 - on_a), (4, 2), "weights 2:1: {first:?}");
    // Each tree is on its server's export, not on the other's nor the source.
    for (i, s) in first.iter().enumerate() {
        let (mine, other) = if s == A { (A, B) } else { (B, A) };
        assert!(on(&local(&app, mine), &serial(i)), "{i} on {mine}");
        assert!(!on(&local(&app, other), &serial(i)), "{i} not on {other}");
        assert!(
            !on(&app.nfs_root(), &serial(i)),
            "{i} not in the source tree"
        );
    }
    // Sticky: the same server at every later boot, whatever the counts now.
    for (i, s) in first.iter().enumerate() {
        assert_eq!(boot(&app, &serial(i))["nfs_server"], s.as_str());
    }
    let list = servers(&app);
    assert_eq!(list[0]["nodes"], 4, "{list:?}");
    assert_eq!(list[1]["nodes"], 2, "{list:?}");
    // The operations' views count them per server, with each server's state.
    let (status, health) = app.get("/healthz");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["nfs_servers"][A], "ok", "{health}");
    assert_eq!(health["nfs_servers"][B], "ok", "{health}");
    assert_eq!(
        app.metric(&format!(
            "pureboot_nfs_server_nodes{{server=\"{A}\",state=\"active\"}}"
        )),
        "4"
    );
    assert_eq!(
        app.metric(&format!(
            "pureboot_nfs_server_nodes{{server=\"{B}\",state=\"active\"}}"
        )),
        "2"
    );
    let page = ureq::get(&app.url("/status"))
        .set("Authorization", &format!("Bearer {}", common::TOKEN))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    for (server, n) in [(A, 4), (B, 2)] {
        let row = format!("data-server=\"{server}\" data-state=\"active\" data-nodes=\"{n}\"");
        assert!(page.contains(&row), "{row} in {page}");
    }
}

#[test]
fn pins_by_group_and_node_win_over_weights_and_name_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let app = pool(&dir, [ServerState::Active, ServerState::Active], true);
    // rack-b: every new serial (a rule), booted diskless, pinned to B.
    let (status, out) = app.admin(
        "POST",
        "/api/v1/groups/rack-b",
        Some(&json!({"workflow_id": "pi-diskless-nfs", "overlay_mode": "tmpfs"})),
    );
    assert_eq!(status, 201, "{out}");
    let (status, out) = app.admin(
        "POST",
        "/api/v1/group-rules",
        Some(&json!({"priority": 10, "group": "rack-b", "serial": "*"})),
    );
    assert_eq!(status, 201, "{out}");
    let (status, out) = app.admin(
        "PUT",
        "/api/v1/groups/rack-b/nfs-server",
        Some(&json!({"server": B})),
    );
    assert_eq!(status, 200, "{out}");
    for i in 0..3 {
        assert_eq!(
            boot(&app, &serial(i))["nfs_server"],
            B,
            "group pin, at first contact"
        );
    }
    let effective = |serial: &str| {
        let (status, e) = app.admin_get(&format!("/api/v1/nodes/{serial}/effective"));
        assert_eq!(status, 200, "{e}");
        e
    };
    let e = effective(&serial(0));
    assert_eq!(
        e["nfs_server"],
        json!({"value": B, "from": "group rack-b"}),
        "{e}"
    );
    assert_eq!(e["nfs_home"], B, "{e}");
    // The node's own pin over its group's.
    let (status, out) = app.admin(
        "PUT",
        &format!("/api/v1/nodes/{}/nfs-server", serial(0)),
        Some(&json!({"server": A})),
    );
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        boot(&app, &serial(0))["nfs_server"],
        A,
        "node pin, tmpfs: moves"
    );
    let e = effective(&serial(0));
    assert_eq!(e["nfs_server"], json!({"value": A, "from": "node"}), "{e}");
    assert_eq!(e["nfs_home"], A, "{e}");
    // A pin to a server that is not configured is refused, naming the servers.
    let (status, out) = app.admin(
        "PUT",
        &format!("/api/v1/nodes/{}/nfs-server", serial(1)),
        Some(&json!({"server": "10.9.9.9"})),
    );
    assert_eq!(status, 404, "{out}");
    assert!(out.to_string().contains(A), "{out}");
    // A data node pinned away from its data waits and says how to move it.
    add(&app, &serial(7), "image");
    let first = boot(&app, &serial(7))["nfs_server"]
        .as_str()
        .unwrap()
        .to_string();
    let other = if first == A { B } else { A };
    app.admin(
        "PUT",
        &format!("/api/v1/nodes/{}/nfs-server", serial(7)),
        Some(&json!({"server": other})),
    );
    let a = boot(&app, &serial(7));
    assert_eq!(a["action"], "wait", "{a}");
    let msg = a["message"].as_str().unwrap();
    assert!(
        msg.contains("node move") && msg.contains("by node"),
        "{msg}"
    );
}

#[test]
fn an_image_missing_on_a_server_is_never_answered_there_until_copied() {
    // No sync: neither server has the image.
    let dir = tempfile::tempdir().unwrap();
    let app = pool(&dir, [ServerState::Active, ServerState::Active], false);
    add(&app, &serial(0), "tmpfs");
    let a = boot(&app, &serial(0));
    assert_eq!(a["action"], "wait", "{a}");
    let msg = a["message"].as_str().unwrap();
    assert!(
        msg.contains(IMAGE) && msg.contains(A) && msg.contains(B),
        "{msg}"
    );
    // Copy by hand to A only, then `image status` checks it: A ok, B missing.
    let src = app.nfs_root().join("base").join(IMAGE);
    let dst = local(&app, A).join("base").join(IMAGE);
    std::fs::create_dir_all(dst.join("etc")).unwrap();
    std::fs::copy(src.join("etc/os-release"), dst.join("etc/os-release")).unwrap();
    std::os::unix::fs::symlink("os-release", dst.join("etc/release")).unwrap();
    let status = image_status(&app);
    let of = |server: &str| {
        status
            .iter()
            .find(|l| l["server"] == server && l["image"] == IMAGE)
            .unwrap()
            .clone()
    };
    assert_eq!(of(A)["status"], "ok", "{status:?}");
    assert_eq!(of(B)["status"], "missing", "{status:?}");
    assert!(
        of(B)["detail"].as_str().unwrap().contains("srv-b"),
        "{status:?}"
    );
    // Every new node now goes to A (B lacks the image), weights notwithstanding.
    for i in 0..4 {
        if i > 0 {
            add(&app, &serial(i), "tmpfs");
        }
        assert_eq!(boot(&app, &serial(i))["nfs_server"], A, "node {i}");
    }
    // A copy on B that differs is named as such and not used.
    let bad = local(&app, B).join("base").join(IMAGE);
    std::fs::create_dir_all(bad.join("etc")).unwrap();
    std::fs::write(bad.join("etc/os-release"), "ID=tampered\n").unwrap();
    let status = image_status(&app);
    let b = status.iter().find(|l| l["server"] == B).unwrap();
    assert_eq!(b["status"], "differs", "{status:?}");
    add(&app, &serial(5), "tmpfs");
    assert_eq!(boot(&app, &serial(5))["nfs_server"], A);
    // Sync copies it (replacing the bad copy); B then takes new nodes again.
    let (code, out) = app.admin("POST", "/api/v1/nfs/images/sync", None);
    assert_eq!(code, 200, "{out}");
    let copied = out
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["server"] == B)
        .unwrap();
    assert_eq!(copied["outcome"], "copied", "{out}");
    assert_eq!(
        std::fs::read_to_string(bad.join("etc/os-release")).unwrap(),
        "ID=debian\n"
    );
    add(&app, &serial(6), "tmpfs");
    assert_eq!(
        boot(&app, &serial(6))["nfs_server"],
        B,
        "B is far below its share"
    );
    // A data node on a server that lost the image is not sent elsewhere: it waits,
    // naming server and image.
    add(&app, &serial(8), "image");
    let home = boot(&app, &serial(8))["nfs_server"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_dir_all(local(&app, &home).join("base").join(IMAGE)).unwrap();
    let a = boot(&app, &serial(8));
    assert_eq!(a["action"], "wait", "{a}");
    let msg = a["message"].as_str().unwrap();
    assert!(msg.contains(&home) && msg.contains(IMAGE), "{msg}");
}

#[test]
fn draining_moves_tmpfs_nodes_and_lists_data_nodes_which_node_move_moves() {
    let dir = tempfile::tempdir().unwrap();
    let app = pool(&dir, [ServerState::Active, ServerState::Active], true);
    add(&app, &serial(0), "tmpfs");
    add(&app, &serial(1), "image");
    assert_eq!(boot(&app, &serial(0))["nfs_server"], A);
    assert_eq!(boot(&app, &serial(1))["nfs_server"], A);
    assert!(local(&app, A)
        .join("nodes")
        .join(serial(1))
        .join("persist.1.img")
        .exists());
    drop(app);
    // The same registry and trees, A now draining (the config changed, the daemon restarted).
    let app = pool_in(
        dir.path(),
        [ServerState::Draining, ServerState::Active],
        900,
        false,
    );
    assert_eq!(boot(&app, &serial(0))["nfs_server"], B, "tmpfs node moves");
    assert_eq!(boot(&app, &serial(1))["nfs_server"], A, "data node stays");
    let list = servers(&app);
    assert_eq!(list[0]["state"], "draining");
    assert_eq!(list[0]["data_nodes"], json!([serial(1)]), "{list:?}");
    // node move: refused while it may be running (just booted), even when told it is off.
    let path = format!("/api/v1/nodes/{}/move", serial(1));
    let (status, out) = app.admin("POST", &path, Some(&json!({"server": B})));
    assert_eq!(status, 409, "{out}");
    assert!(out.to_string().contains("--off"), "{out}");
    let (status, out) = app.admin("POST", &path, Some(&json!({"server": B, "off": true})));
    assert_eq!(status, 409, "{out}");
    assert!(out.to_string().contains("booted less than"), "{out}");
    drop(app);
    let app = pool_in(
        dir.path(),
        [ServerState::Draining, ServerState::Active],
        0,
        false,
    );
    let (status, out) = app.admin("POST", &path, Some(&json!({"server": B, "off": true})));
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        (out["from"].as_str(), out["copied"].as_bool()),
        (Some(A), Some(true))
    );
    assert!(local(&app, B)
        .join("nodes")
        .join(serial(1))
        .join("persist.1.img")
        .exists());
    assert!(!on(&local(&app, A), &serial(1)), "the old tree is gone");
    assert_eq!(boot(&app, &serial(1))["nfs_server"], B);
    assert_eq!(servers(&app)[0]["data_nodes"], json!([]));
    // Each node's log says where it went, from where and why.
    let placements = |serial: &str| -> Vec<Value> {
        app.node(serial)["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "nfs_server")
            .map(|e| e["detail"].clone())
            .collect()
    };
    let tmpfs = placements(&serial(0));
    assert_eq!(tmpfs.len(), 2, "{tmpfs:?}");
    assert_eq!(
        (&tmpfs[0]["server"], &tmpfs[0]["from"]),
        (&json!(A), &Value::Null)
    );
    assert_eq!(
        (&tmpfs[1]["server"], &tmpfs[1]["from"]),
        (&json!(B), &json!(A))
    );
    assert!(tmpfs[1]["why"].as_str().unwrap().contains("at its boot"));
    let data = placements(&serial(1));
    assert_eq!(data.len(), 2, "{data:?}");
    assert_eq!(
        (&data[1]["server"], &data[1]["from"]),
        (&json!(B), &json!(A))
    );
    assert!(
        data[1]["why"].as_str().unwrap().contains("operator"),
        "{data:?}"
    );
}

/// The CLI over a config file with `[[nfs.servers]]`: `image status` names what each
/// server lacks, `image sync` copies it, `nfs pin` and `nfs servers` show the placement, a
/// server without local_path is reported as such and skipped, `node move` moves.
#[test]
fn the_cli_reports_syncs_pins_and_moves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let image = d.join("nfsroot/base").join(IMAGE);
    std::fs::create_dir_all(&image).unwrap();
    // A squashfs image as an import leaves it (boots check the file against its digest).
    let squashfs = b"hsqs not really";
    std::fs::write(image.join("root.squashfs"), squashfs).unwrap();
    let digest = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(squashfs));
    std::fs::write(
        image.join("root.squashfs.sha256"),
        format!("{digest}  root.squashfs\n"),
    )
    .unwrap();
    let config = d.join("controller.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase = \"{db}\"\nworkflows_dir = \"{wf}\"\n\
             [nfs]\nroot_path = \"{root}\"\npersist_size_mb = 16\ndefault_base_image = \"{IMAGE}\"\n\
             [[nfs.servers]]\naddress = \"{A}\"\nexport_path = \"/exports/{A}\"\nlocal_path = \"{a}\"\n\
             [[nfs.servers]]\naddress = \"{B}\"\nexport_path = \"/exports/{B}\"\nlocal_path = \"{b}\"\n\
             [[nfs.servers]]\naddress = \"nfs-c.lab\"\nexport_path = \"/exports/c\"\nweight = 0\n",
            db = d.join("registry.db").display(),
            wf = common::repo_workflows().display(),
            root = d.join("nfsroot").display(),
            a = d.join("srv-a").display(),
            b = d.join("srv-b").display(),
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = common::cli(&config, args);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.success(), text, err)
    };
    let (ok, text, err) = run(&["image", "status"]);
    assert!(ok, "{err}");
    // The line of a table that names `server`.
    fn line(text: &str, server: &str) -> String {
        text.lines()
            .find(|l| l.contains(server))
            .unwrap_or_else(|| panic!("{server} in {text}"))
            .to_string()
    }
    assert!(
        line(&text, A).contains("missing") && line(&text, B).contains("missing"),
        "{text}"
    );
    assert!(line(&text, "nfs-c.lab").contains("unreachable"), "{text}");
    let (ok, text, err) = run(&["image", "sync"]);
    assert!(ok, "{text}{err}");
    assert!(
        line(&text, A).contains("copied") && line(&text, "nfs-c.lab").contains("skipped"),
        "{text}"
    );
    assert!(d
        .join("srv-b/base")
        .join(IMAGE)
        .join("root.squashfs")
        .is_file());
    let (ok, text, err) = run(&["image", "status"]);
    assert!(
        ok && line(&text, A).contains(" ok ") && line(&text, B).contains(" ok "),
        "{text}{err}"
    );
    // A pin by the CLI, then the placement as `nfs servers` shows it.
    let (ok, _, err) = run(&[
        "node",
        "add",
        "20000001",
        "--workflow",
        "pi-diskless-nfs",
        "--overlay",
        "image",
    ]);
    assert!(ok, "{err}");
    let (ok, text, err) = run(&["nfs", "pin", "--node", "20000001", "10.9.9.9"]);
    assert!(!ok && err.contains("not in [[nfs.servers]]"), "{text}{err}");
    let (ok, _, err) = run(&["nfs", "pin", "--node", "20000001", B]);
    assert!(ok, "{err}");
    let app = spawn_app_with(|c| {
        *c = pureboot_controller::config::Config::load(&config).unwrap();
        c.admin_token = Some(common::TOKEN.into());
    });
    assert_eq!(boot(&app, "20000001")["nfs_server"], B);
    drop(app);
    let (ok, text, err) = run(&["nfs", "servers"]);
    assert!(ok, "{err}");
    assert!(
        line(&text, B).contains("20000001") && line(&text, B).contains("active"),
        "{text}"
    );
    // Export rules per server: its export_path, the nodes that live on it.
    let (ok, _, err) = run(&["nfs", "exports"]);
    assert!(!ok && err.contains("--server"), "{err}");
    let (ok, text, err) = run(&["nfs", "exports", "--server", B, "--network", "10.0.3.0/24"]);
    assert!(ok, "{err}");
    assert!(
        text.contains(&format!("/exports/{B}/nodes/20000001")),
        "{text}"
    );
    let (ok, text, err) = run(&["nfs", "exports", "--server", A, "--network", "10.0.3.0/24"]);
    assert!(ok && !text.contains("20000001"), "{text}{err}");
    assert!(text.contains(&format!("/exports/{A}/base")), "{text}");
    // Moving it: refused without --off, and while just booted.
    let (ok, _, err) = run(&["node", "move", "20000001", A]);
    assert!(!ok && err.contains("--off"), "{err}");
    let (ok, _, err) = run(&["node", "move", "20000001", A, "--off"]);
    assert!(!ok && err.contains("booted less than"), "{err}");

    // An image removed goes from every server it was copied to, its stamps too.
    let old = d.join("nfsroot/base/old");
    std::fs::create_dir_all(old.join("etc")).unwrap();
    std::fs::write(old.join("etc/os-release"), "ID=old\n").unwrap();
    let (ok, text, err) = run(&["image", "sync"]);
    assert!(ok, "{text}{err}");
    let copies = |what: &str| -> Vec<bool> {
        ["srv-a", "srv-b"]
            .iter()
            .flat_map(|s| [d.join(s).join(what)])
            .map(|p| p.exists())
            .collect()
    };
    assert_eq!(copies("base/old"), [true, true]);
    assert_eq!(copies(".pureboot-digests/old"), [true, true]);
    let (ok, text, err) = run(&["image", "rm", "old"]);
    assert!(ok, "{text}{err}");
    assert_eq!(copies("base/old"), [false, false], "copies left behind");
    assert_eq!(copies(".pureboot-digests/old"), [false, false]);
    assert!(!old.exists());
    assert_eq!(
        copies(&format!("base/{IMAGE}")),
        [true, true],
        "only that one"
    );
}

#[test]
fn a_down_server_answers_no_boot_its_tmpfs_nodes_move_and_data_nodes_wait() {
    let dir = tempfile::tempdir().unwrap();
    let app = pool(&dir, [ServerState::Active, ServerState::Active], true);
    add(&app, &serial(0), "tmpfs");
    add(&app, &serial(1), "nfs");
    assert_eq!(boot(&app, &serial(0))["nfs_server"], A);
    assert_eq!(boot(&app, &serial(1))["nfs_server"], A);
    drop(app);
    let app = pool_in(
        dir.path(),
        [ServerState::Down, ServerState::Active],
        900,
        false,
    );
    assert_eq!(boot(&app, &serial(0))["nfs_server"], B, "tmpfs node moves");
    let a = boot(&app, &serial(1));
    assert_eq!(a["action"], "wait", "{a}");
    let msg = a["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("NFS server {A} is down")) && msg.contains("data"),
        "{msg}"
    );
    let (_, health) = app.get("/healthz");
    assert!(
        health["nfs_servers"][A]
            .as_str()
            .unwrap()
            .starts_with("down"),
        "{health}"
    );
    assert_eq!(
        app.metric(&format!(
            "pureboot_nfs_server_nodes{{server=\"{A}\",state=\"down\"}}"
        )),
        "1"
    );
}
