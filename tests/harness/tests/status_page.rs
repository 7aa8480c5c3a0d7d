//! The controller's status page in a real browser: headless Chromium (Debian's `chromium`)
//! loads `/status` from a running controller holding nodes in several states, and the test
//! reads the rendered DOM (states, counts, flags). A screenshot is kept beside the test
//! output (`target/pureboot-e2e/status-page.png`).

use std::path::{Path, PathBuf};

use pureboot_harness::controller::{NodeSpec, PORT, TOKEN};
use pureboot_harness::env::TestEnv;
use pureboot_harness::lab::{Lab, LabOptions, WORKFLOW};
use pureboot_harness::netns::Netns;
use pureboot_harness::{process, require};
use serde_json::Value;

/// `curl` inside the namespace; the body of any answer.
fn curl(ns: &Netns, args: &[&str]) -> String {
    process::run(
        ns.command("curl")
            .args(["-sS", "--max-time", "10"])
            .args(args),
    )
    .unwrap_or_else(|e| panic!("curl {args:?}: {e}"))
}

fn boot(ns: &Netns, serial: &str, mac: &str) -> Value {
    let url = format!("http://127.0.0.1:{PORT}/api/v1/boot/pi?serial={serial}&mac={mac}");
    let body = curl(ns, &[&url]);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("boot answer for {serial}: {e}: {body}"))
}

/// POSTs a report to the answer's callback (from the address that asked, as a Pi would).
fn report(ns: &Netns, answer: &Value, body: &str) {
    let cb = answer["callback_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no callback_url in {answer}"));
    let path = &cb[cb.find("/api/").expect("an API URL")..];
    let url = format!("http://127.0.0.1:{PORT}{path}");
    curl(
        ns,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            &url,
        ],
    );
}

fn chromium(ns: &Netns, profile: &Path, args: &[&str], url: &str) -> String {
    let mut cmd = ns.command("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url);
    process::run(&mut cmd).unwrap_or_else(|e| panic!("chromium {args:?} {url}: {e}"))
}

fn screenshot_path(env: &TestEnv) -> PathBuf {
    env.target_dir.join("pureboot-e2e").join("status-page.png")
}

#[test]
fn status_page_in_a_real_browser() {
    let name = "status-page";
    let env = require!(name, TestEnv::get());
    require!(name, env.binary("pureboot-controller"));
    require!(
        name,
        pureboot_harness::host::locate("chromium")
            .ok_or("`chromium` not found: run `sudo tests/setup.sh`")
    );
    let lab = Lab::start(name, env, LabOptions::default())
        .unwrap_or_else(|e| panic!("{name}: starting the lab: {e}"));
    let ns = &lab.ns;
    let spec = |mac: &str| NodeSpec {
        workflow: WORKFLOW.into(),
        mac: Some(mac.into()),
        overlay: Some("tmpfs".into()),
        ..Default::default()
    };
    let add = |serial: &str, mac: &str| lab.add_node(serial, spec(mac)).unwrap();

    // discovered: an unknown Pi asks.
    boot(ns, "5a000001", "52:54:00:00:00:01");
    // pending: registered, never booted.
    add("5a000002", "52:54:00:00:00:02");
    // installing: booted, no report yet.
    add("5a000003", "52:54:00:00:00:03");
    boot(ns, "5a000003", "52:54:00:00:00:03");
    // active: booted and reported.
    for (serial, mac) in [
        ("5a000004", "52:54:00:00:00:04"),
        ("5a000005", "52:54:00:00:00:05"),
    ] {
        add(serial, mac);
        let a = boot(ns, serial, mac);
        report(
            ns,
            &a,
            r#"{"success":true,"mode":"nfs_boot","overlay_mode":"tmpfs"}"#,
        );
    }
    // install_failed: upstream's failure shape on the callback.
    add("5a000006", "52:54:00:00:00:06");
    let a = boot(ns, "5a000006", "52:54:00:00:00:06");
    report(
        ns,
        &a,
        r#"{"success":false,"error":"nfs-mount: no such export"}"#,
    );
    // conflict: another machine claims a registered serial (refused: it waits, the node
    // stays as it was, the claim is a conflict event).
    add("5a000007", "52:54:00:00:00:07");
    let refused = boot(ns, "5a000007", "52:54:00:00:00:77");
    assert_eq!(refused["action"], "wait", "{refused}");

    let dir = lab.dir.path();
    let base = format!("http://127.0.0.1:{PORT}/status");
    let authed = format!("http://admin:{TOKEN}@127.0.0.1:{PORT}/status");

    // Without the token: refused, with a challenge a browser answers.
    let head = curl(ns, &["-o", "/dev/null", "-D", "-", &base]);
    assert!(
        head.starts_with("HTTP/1.1 401") && head.contains("Basic realm=\"pureboot\""),
        "{head}"
    );

    let dom = chromium(ns, &dir.join("profile"), &["--dump-dom"], &authed);
    let count = |state: &str, n: usize| format!("data-state=\"{state}\" data-count=\"{n}\"");
    for (state, n) in [
        ("discovered", 1),
        // 5a000002, and 5a000007 which the other machine could not boot.
        ("pending", 2),
        ("installing", 1),
        ("active", 2),
        ("install_failed", 1),
    ] {
        assert!(
            dom.contains(&count(state, n)),
            "{name}: {n} {state} in the navigation:\n{dom}"
        );
    }
    assert!(dom.contains("<title>pureboot: 7 nodes</title>"), "{dom}");
    let rows = dom.matches("<tr class=\"node\"").count();
    assert_eq!(rows, 7, "{name}: one row per node:\n{dom}");
    assert!(
        dom.contains("data-serial=\"5a000004\" data-state=\"active\""),
        "{dom}"
    );
    assert!(
        dom.contains("data-serial=\"5a000007\" data-state=\"pending\"")
            && dom.contains(" conflict from ")
            && !dom.contains("class=\"flag conflict\""),
        "{name}: the refused claim is an event, not a flag:\n{dom}"
    );
    assert!(dom.contains("install_failed"), "{dom}");

    // Filtered by state: only the active nodes.
    let dom = chromium(
        ns,
        &dir.join("profile"),
        &["--dump-dom"],
        &format!("{authed}?state=active"),
    );
    assert_eq!(dom.matches("<tr class=\"node\"").count(), 2, "{dom}");
    assert!(
        dom.contains("class=\"current\" data-state=\"active\""),
        "{name}: the filter is marked:\n{dom}"
    );

    let shot = screenshot_path(env);
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&shot);
    chromium(
        ns,
        &dir.join("profile"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,700",
            "--hide-scrollbars",
        ],
        &authed,
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    println!("{name}: screenshot {}", shot.display());
}
