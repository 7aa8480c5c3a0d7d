//! The boot routes against a second machine on the boot network, on the real server: the
//! real Pi asks from 127.0.0.2, the attacker from 127.0.0.3 (all of 127.0.0.0/8 reaches the
//! 127.0.0.1 listener, and the server sees each source address). Each test is the attack;
//! it passes when the attacker can neither speak for the Pi, lock it out, take its
//! deployment, fill the log, nor reach its templates.

mod common;

use std::time::{Duration, Instant};

use common::{post_from, report_path, spawn_app, spawn_app_with, which, TestApp};
use pureboot_controller::store::test_support;
use serde_json::{json, Value};

const SERIAL: &str = "d83add36";
const PI: &str = "127.0.0.2";
const ATTACKER: &str = "127.0.0.3";
const PI_MAC: &str = "dc:a6:32:01:02:03";
const ATTACKER_MAC: &str = "dc:a6:32:66:66:66";

/// The attacker's full repertoire of reports, each with a MAC and a full serial.
fn forged_reports() -> Vec<(bool, Value)> {
    let ids = json!({"serial": SERIAL, "mac": ATTACKER_MAC, "full_serial": format!("20000000{SERIAL}"), "ip_address": "10.6.6.6"});
    let with = |extra: Value| {
        let mut v = ids.clone();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    vec![
        (
            false,
            with(json!({"success": true, "mode": "nfs_boot", "overlay_mode": "image"})),
        ),
        (
            false,
            with(
                json!({"success": true, "mode": "nfs_boot", "overlay_mode": "tmpfs",
                        "degradations": ["overlay image unavailable; using tmpfs"]}),
            ),
        ),
        (true, with(json!({"error": "forged failure"}))),
        (
            false,
            with(json!({"success": false, "error": "forged failure"})),
        ),
    ]
}

/// The attacker asks for `SERIAL`'s boot (with no MAC, and with its own) and posts every
/// forged report to whatever it was handed, and to the Pi's own boot (as if its id
/// leaked). Returns the answers it got.
fn attack(app: &TestApp, pi_boot: &Value) -> Vec<Value> {
    let mut answers = Vec::new();
    for query in [
        format!("serial={SERIAL}"),
        format!("serial={SERIAL}&mac={ATTACKER_MAC}&full_serial=20000000{SERIAL}"),
    ] {
        let (status, r) = app.boot_from(ATTACKER, &query);
        assert_eq!(status, 200, "{r}");
        for (failure, report) in forged_reports() {
            for target in [&r, pi_boot] {
                let key = if failure {
                    "failure_url"
                } else {
                    "callback_url"
                };
                if target[key].is_string() {
                    post_from(app, ATTACKER, &report_path(target, failure), &report);
                }
            }
        }
        answers.push(r);
    }
    answers
}

fn assert_boots_nothing(r: &Value) {
    assert_eq!(r["action"], "wait", "the attacker is booted: {r}");
    for key in [
        "callback_url",
        "failure_url",
        "machine_id",
        "hostname",
        "image_url",
        "nfs_path",
    ] {
        assert_eq!(r[key], Value::Null, "{key} handed to the attacker: {r}");
    }
}

/// The node's fields an attacker must not move.
fn identity(app: &TestApp) -> Value {
    let n = app.node(SERIAL);
    json!({
        "state": n["state"], "mac": n["mac"], "full_serial": n["full_serial"],
        "last_ip": n["last_ip"], "conflict": n["conflict"], "degraded": n["degraded"],
    })
}

#[test]
fn an_attacker_cannot_speak_for_a_pi_from_another_address() {
    if which("mkfs.ext4").is_none() {
        eprintln!("SKIP: mkfs.ext4 not installed (overlay image needs it)");
        return;
    }
    let app = spawn_app();
    // pi-diskless-nfs boots on the image overlay: a report can flag the node degraded.
    app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs"}));
    let pi_query = format!("serial={SERIAL}&mac={PI_MAC}&full_serial=10000000{SERIAL}");
    let (status, pi_boot) = app.boot_from(PI, &pi_query);
    assert_eq!(
        (status, pi_boot["action"].as_str()),
        (200, Some("nfs_boot"))
    );
    let before = identity(&app);
    assert_eq!(before["mac"], PI_MAC, "learned from the accepted boot");
    assert_eq!(before["last_ip"], PI);

    for r in attack(&app, &pi_boot) {
        assert_boots_nothing(&r);
    }
    assert_eq!(identity(&app), before, "the attacker changed the node");
    assert!(app.event_kinds(SERIAL).contains(&"conflict".to_string()));

    // The Pi's own report is still taken: its boot id was neither spent nor replaced.
    let degraded = json!({"success": true, "mode": "nfs_boot", "serial": SERIAL, "mac": PI_MAC,
        "overlay_mode": "tmpfs", "degradations": ["overlay image unavailable (mount: EINVAL); using tmpfs"]});
    let (status, n) = post_from(&app, PI, &report_path(&pi_boot, false), &degraded);
    assert_eq!(status, 200, "{n}");
    assert_eq!(n["state"], "active");
    assert!(n["degraded"].is_string(), "{n}");
    let after = identity(&app);

    // A later forged report does not clear the genuine flag, nor anything else.
    for r in attack(&app, &pi_boot) {
        assert_boots_nothing(&r);
    }
    assert_eq!(identity(&app), after, "the attacker changed the node");
    assert_eq!(after["last_ip"], PI);
}

#[test]
fn a_spoofed_mac_from_another_address_never_replaces_the_pi_s_boot() {
    for pin in [false, true] {
        let app = spawn_app_with(|c| c.pin_boot_address = pin);
        app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-k3s-worker", "mac": PI_MAC}));
        let query = format!("serial={SERIAL}&mac={PI_MAC}");
        let (_, pi_boot) = app.boot_from(PI, &query);
        assert_eq!(pi_boot["action"], "nfs_boot", "{pi_boot}");
        // The attacker learned the MAC (ARP) and sends it from its own address.
        let (_, r) = app.boot_from(ATTACKER, &query);
        if pin {
            // Pinned: only the address of the node's last boot may ask.
            assert_boots_nothing(&r);
            assert_eq!(identity(&app)["last_ip"], PI);
        } else {
            // Not pinned, it gets a boot of its own (what a site pins addresses against),
            // but the Pi's boot id is neither spent nor replaced.
            assert_eq!(r["action"], "nfs_boot", "{r}");
            assert_ne!(report_path(&r, false), report_path(&pi_boot, false));
        }
        let ok = json!({"success": true, "mode": "nfs_boot"});
        let (status, n) = post_from(&app, PI, &report_path(&pi_boot, false), &ok);
        assert_eq!(
            (status, n["last_ip"].as_str()),
            (200, Some(PI)),
            "pin {pin}: {n}"
        );
    }
    // An operator's `node set --mac` lets a Pi that moved back in.
    let app = spawn_app_with(|c| c.pin_boot_address = true);
    app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-k3s-worker", "mac": PI_MAC}));
    let query = format!("serial={SERIAL}&mac={PI_MAC}");
    app.boot_from(PI, &query);
    assert_boots_nothing(&app.boot_from("127.0.0.4", &query).1);
    app.cli(&["node", "set", SERIAL, "--mac", PI_MAC]);
    assert_eq!(app.boot_from("127.0.0.4", &query).1["action"], "nfs_boot");
}

#[test]
fn a_flood_for_a_serial_from_another_address_does_not_lock_the_pi_out() {
    let app = spawn_app_with(|c| c.node_requests_per_minute = 10);
    app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-k3s-worker", "mac": PI_MAC}));
    let query = format!("serial={SERIAL}&mac={PI_MAC}");
    std::thread::scope(|scope| {
        // 10 requests per second for 3 s, for the Pi's serial, with its MAC even.
        let flood = scope.spawn(|| {
            let start = Instant::now();
            let mut limited = Vec::new();
            for i in 0..30u32 {
                let a =
                    app.request_from(ATTACKER, "GET", &format!("/api/v1/boot/pi?{query}"), None);
                if a.status == 429 {
                    limited.push(a.headers);
                }
                let next = start + Duration::from_millis(100 * u64::from(i + 1));
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            limited
        });
        for round in 0..5 {
            std::thread::sleep(Duration::from_millis(500));
            let (status, r) = app.boot_from(PI, &query);
            assert_eq!(status, 200, "round {round}: the Pi is locked out: {r}");
            assert_eq!(r["action"], "nfs_boot", "{r}");
        }
        let limited = flood.join().unwrap();
        assert!(!limited.is_empty(), "the flooding address is limited");
        for headers in &limited {
            assert!(
                headers.to_ascii_lowercase().contains("\r\nretry-after: "),
                "429 without Retry-After: {headers}"
            );
        }
    });
}

fn image_workflows() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pi-image.yaml"),
        "id: pi-image\nname: Image\ninstall_method: image\n\
         image_url: \"http://10.0.2.2/images/pi.img?token=s3cret\"\ntarget_device: /dev/mmcblk0\n",
    )
    .unwrap();
    dir
}

#[test]
fn a_deployment_goes_only_to_the_mac_an_operator_confirmed() {
    let wf = image_workflows();
    let dir = wf.path().to_path_buf();
    let app = spawn_app_with(move |c| c.workflows_dir = dir);
    app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-image"}));
    let no_deployment = |r: &Value| {
        assert_ne!(r["action"], "deploy_image", "{r}");
        assert_eq!(r["image_url"], Value::Null, "{r}");
        assert!(!r.to_string().contains("s3cret"), "{r}");
    };
    // No MAC recorded: whoever asks first gets no deployment (the attacker here).
    let (_, r) = app.boot_from(ATTACKER, &format!("serial={SERIAL}&mac={ATTACKER_MAC}"));
    no_deployment(&r);
    assert!(
        r["message"].as_str().unwrap().contains("--mac"),
        "the answer says what waits: {r}"
    );
    // The real Pi, with another MAC than the one the first asker announced: none either.
    let (_, r) = app.boot_from(PI, &format!("serial={SERIAL}&mac={PI_MAC}"));
    no_deployment(&r);
    assert_eq!(app.node(SERIAL)["state"], "pending");

    // The operator confirms the Pi's MAC.
    let out = app.cli(&["node", "set", SERIAL, "--mac", PI_MAC]);
    assert!(out.contains(PI_MAC), "{out}");
    let n = app.node(SERIAL);
    assert_eq!(
        (n["mac"].as_str(), n["mac_confirmed"].as_bool()),
        (Some(PI_MAC), Some(true))
    );
    // Another MAC still gets nothing; the confirmed one gets the deployment.
    let (_, r) = app.boot_from(ATTACKER, &format!("serial={SERIAL}&mac={ATTACKER_MAC}"));
    no_deployment(&r);
    let (_, r) = app.boot_from(ATTACKER, &format!("serial={SERIAL}"));
    no_deployment(&r);
    let (status, r) = app.boot_from(PI, &format!("serial={SERIAL}&mac={PI_MAC}"));
    assert_eq!(
        (status, r["action"].as_str(), r["image_url"].as_str()),
        (
            200,
            Some("deploy_image"),
            Some("http://10.0.2.2/images/pi.img?token=s3cret")
        ),
        "{r}"
    );
    assert_eq!(app.node(SERIAL)["state"], "installing");
}

#[test]
fn a_refused_report_stores_nothing_but_a_count() {
    let app = spawn_app();
    app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-k3s-worker"}));
    let (_, r) = app.boot(&format!("serial={SERIAL}&mac={PI_MAC}"));
    let failure = report_path(&r, true);
    assert_eq!(app.post(&failure, &json!({"error": "first"})).0, 200);
    let events = app.event_kinds(SERIAL).len();
    let size = |app: &TestApp| std::fs::metadata(&app.config.database).map_or(0, |m| m.len());
    let db_before = size(&app);
    // install_failed -> install_failed is no transition: 409, again and again, big bodies.
    let pad = "x".repeat(3000);
    for _ in 0..40 {
        let (status, e) = app.post(&failure, &json!({"error": "again", "pad": pad}));
        assert_eq!(status, 409, "{e}");
    }
    assert_eq!(
        app.event_kinds(SERIAL).len(),
        events,
        "a refused report was stored"
    );
    let events_now = app
        .services
        .store
        .read(|tx| {
            tx.count_events(
                SERIAL,
                pureboot_controller::store::events::EventKind::InstallFailed,
            )
        })
        .unwrap();
    assert_eq!(events_now, 1);
    if !test_support::sqlite_only("the registry's file size") {
        assert!(size(&app) < db_before + 40 * 3000, "the database grew");
    }
    assert_eq!(
        app.metric("pureboot_callbacks_total{kind=\"install_failed\",outcome=\"rejected\"}"),
        "40",
        "counted"
    );
}

fn boot_requests(app: &TestApp, serial: &str) -> i64 {
    app.services
        .store
        .read(|tx| {
            tx.count_events(
                serial,
                pureboot_controller::store::events::EventKind::BootRequest,
            )
        })
        .unwrap()
}

#[test]
fn unknown_serials_are_coalesced_and_capped_per_address() {
    let app = spawn_app_with(|c| {
        c.auto_register = false;
        c.unknown_serials_per_minute = 300;
    });
    // One unknown serial, asked for again and again: one event.
    for _ in 0..50 {
        let (status, r) = app.boot_from(ATTACKER, "serial=feedf00d");
        assert_eq!((status, r["action"].as_str()), (200, Some("local_boot")));
    }
    assert_eq!(boot_requests(&app, "feedf00d"), 1, "coalesced");
    // Many unknown serials from one address: capped for that address ...
    let recorded: i64 = (0..100)
        .map(|i| {
            let serial = format!("fee{i:05x}");
            app.boot_from(ATTACKER, &format!("serial={serial}"));
            boot_requests(&app, &serial)
        })
        .sum();
    assert!(
        recorded <= 30,
        "{recorded} unknown serials recorded from one address"
    );
    // ... while another address's unknown serial is still recorded.
    app.boot_from(PI, "serial=0000f00d");
    assert_eq!(boot_requests(&app, "0000f00d"), 1);
}

fn template_workflows() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("by-ip.yaml"),
        "id: by-ip\nname: By address\ninstall_method: nfs\noverlay: tmpfs\n\
         hostname: \"node-{{ ip | replace('.', '-') }}-{{ model | default('none') }}\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad-image.yaml"),
        "id: bad-image\nname: Bad image\ninstall_method: nfs\noverlay: tmpfs\n\
         base_image: \"img/{{ serial }}\"\n",
    )
    .unwrap();
    dir
}

#[test]
fn pi_sent_values_reach_templates_only_checked() {
    let wf = template_workflows();
    let dir = wf.path().to_path_buf();
    let app = spawn_app_with(move |c| c.workflows_dir = dir);
    app.add_node(json!({"serial": SERIAL, "workflow_id": "by-ip"}));
    let query = format!("serial={SERIAL}&mac={PI_MAC}");
    let (_, first) = app.boot_from(PI, &query);
    let (_, r) = app.boot_from(PI, &query);
    assert_eq!(r["hostname"], "node-127-0-0-2-none", "{r}");
    // A forged address in a report, a forged address and model through register-pi.
    let forged = json!({"success": true, "mode": "nfs_boot", "ip_address": "10.6.6.6"});
    assert_eq!(post_from(&app, PI, &report_path(&r, false), &forged).0, 200);
    post_from(
        &app,
        ATTACKER,
        "/api/v1/nodes/register-pi",
        &json!({"serial": SERIAL, "mac": PI_MAC, "model": "evil", "ip_address": "10.6.6.6"}),
    );
    let (_, r) = app.boot_from(PI, &query);
    assert_eq!(
        r["hostname"], "node-127-0-0-2-unknown",
        "renamed by a forged value: {r}"
    );
    assert_eq!(app.node(SERIAL)["last_ip"], PI);
    // The first boot already saw its own address (none was recorded before it).
    assert_eq!(first["hostname"], "node-127-0-0-2-none", "{first}");

    // A rendered base image that is not a name: the node waits, told why; none is sent.
    app.add_node(json!({"serial": "0000beef", "workflow_id": "bad-image"}));
    let (status, r) = app.boot_from(PI, "serial=0000beef");
    assert_eq!((status, r["action"].as_str()), (200, Some("wait")), "{r}");
    assert_eq!(r["base_image"], Value::Null);
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("base_image") && msg.contains("img/0000beef"),
        "{msg}"
    );
    assert_eq!(app.node("0000beef")["state"], "pending");
}

#[test]
fn machine_id_goes_only_to_the_node_s_own_boot() {
    let app = spawn_app();
    app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-k3s-worker", "mac": PI_MAC}));
    let machine_id = app.node(SERIAL)["machine_id"].as_str().unwrap().to_string();
    for query in [
        format!("serial={SERIAL}"),
        format!("serial={SERIAL}&mac={ATTACKER_MAC}"),
    ] {
        let (_, r) = app.boot_from(ATTACKER, &query);
        assert!(!r.to_string().contains(&machine_id), "{r}");
    }
    let (_, r) = app.boot_from(PI, &format!("serial={SERIAL}&mac={PI_MAC}"));
    assert_eq!(r["machine_id"], machine_id.as_str());
    // register-pi answers what the Pi sent, not the record.
    for serial in [SERIAL, "0000abcd"] {
        let (status, n) = post_from(
            &app,
            ATTACKER,
            "/api/v1/nodes/register-pi",
            &json!({"serial": serial, "mac": PI_MAC, "model": "pi4"}),
        );
        assert!(status == 200 || status == 201, "{n}");
        let keys: Vec<&String> = n.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["mac", "model", "serial", "state"], "{n}");
    }
}
