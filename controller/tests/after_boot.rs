//! After the boot, on the real server with a real registry: the agent's routes as a booted
//! node uses them (its steps with their environment and secret, each outcome, boot
//! complete), `first_boot` against `every_boot` over several boots and layers, reruns, and
//! the same routes against a second machine on the boot network.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{post_from, spawn_app_with, TestApp};
use serde_json::{json, Value};

const SERIAL: &str = "d83add36";
const PI: &str = "127.0.0.2";
const ATTACKER: &str = "127.0.0.3";
const MAC: &str = "dc:a6:32:01:02:03";
const SECRET: &str = "K10-s3cret-token-value";

const WORKFLOW: &str =
    "id: steps\nname: Steps\ninstall_method: nfs\nhostname: \"n-{{ serial }}\"\n\
variables:\n  server: \"https://k3s:6443\"\nsecret_variables: [token]\npost_boot:\n  \
- name: install\n    script: \"echo install $server\"\n  \
- name: every\n    run: every_boot\n    timeout_secs: 30\n    script: \"echo every\"\n";

fn app() -> TestApp {
    app_with(|_| {})
}

fn app_with(more: impl FnOnce(&mut pureboot_controller::config::Config)) -> TestApp {
    spawn_app_with(|c| {
        let dir = c.nfs.root_path.parent().unwrap().to_path_buf();
        let wf = dir.join("workflows");
        std::fs::create_dir_all(&wf).unwrap();
        std::fs::write(wf.join("steps.yaml"), WORKFLOW).unwrap();
        c.workflows_dir = wf;
        let secrets = dir.join("secrets.toml");
        std::fs::write(&secrets, format!("token = \"{SECRET}\"\n")).unwrap();
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        c.secrets_file = Some(secrets);
        more(c);
    })
}

fn add(app: &TestApp, overlay: &str) {
    app.add_node(
        json!({"serial": SERIAL, "workflow_id": "steps", "mac": MAC, "overlay_mode": overlay}),
    );
}

/// A boot of the Pi up to pi-init's report: its answer and the agent's path
/// (`/api/v1/nodes/<boot id>/agent`).
fn boot(app: &TestApp) -> (Value, String) {
    let (status, answer) = app.boot_from(PI, &format!("serial={SERIAL}&mac={MAC}"));
    assert_eq!(status, 200, "{answer}");
    let installed = json!({"success": true, "mode": "nfs_boot", "elapsed_ms": 1500,
        "steps": [{"step": "network", "ms": 400}, {"step": "overlay", "ms": 900}]});
    let (status, body) = post_from(app, PI, &common::report_path(&answer, false), &installed);
    assert_eq!(status, 200, "{body}");
    let url = answer["agent_url"]
        .as_str()
        .expect("an agent_url")
        .to_string();
    let path = url[url.find("/api/").unwrap()..].to_string();
    (answer, path)
}

fn steps(app: &TestApp, from: &str, agent: &str) -> (u16, Value) {
    let a = app.request_from(from, "GET", &format!("{agent}/steps"), None);
    (a.status, a.body)
}

fn names(plan: &Value) -> Vec<String> {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

fn outcome(step: &Value, exit: i32, output: &str) -> Value {
    json!({"name": step["name"], "digest": step["digest"], "exit_code": exit,
           "duration_ms": 12, "output": output})
}

/// Runs the plan as an agent would (every step exits `exit`), then boot complete.
fn run_boot(app: &TestApp, agent: &str, exit: i32) -> Value {
    let (status, plan) = steps(app, PI, agent);
    assert_eq!(status, 200, "{plan}");
    let mut done = Vec::new();
    for step in plan["steps"].as_array().unwrap() {
        let o = outcome(step, exit, "ran\n");
        let (status, body) = post_from(app, PI, &format!("{agent}/step"), &o);
        assert_eq!(status, 200, "{body}");
        done.push(o);
    }
    let complete = json!({"target": "multi-user.target", "reached": true, "target_ms": 8000,
                          "uptime_ms": 9000, "system_state": "running", "steps": done});
    let (status, body) = post_from(app, PI, &format!("{agent}/complete"), &complete);
    assert_eq!(status, 200, "{body}");
    plan
}

fn no_file_contains(root: &Path, needle: &str) {
    for entry in walk(root) {
        if entry.is_file() {
            let data = std::fs::read(&entry).unwrap();
            assert!(
                !data.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{} holds the secret",
                entry.display()
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

#[test]
fn steps_carry_variables_and_the_secret_and_first_boot_runs_once_per_layer() {
    let app = app();
    add(&app, "image");
    let (_, agent) = boot(&app);
    let plan = run_boot(&app, &agent, 0);
    assert_eq!(names(&plan), ["install", "every"]);
    let env = &plan["steps"][0]["env"];
    assert_eq!(env["server"], "https://k3s:6443");
    assert_eq!(
        env["token"], SECRET,
        "the secret reaches the boot's own steps"
    );
    assert_eq!(plan["steps"][1]["timeout_secs"], 30);
    assert_eq!(plan["target"], "multi-user.target");

    // Second boot on the same (image) layer: only the every_boot step.
    let (_, agent) = boot(&app);
    let plan = run_boot(&app, &agent, 0);
    assert_eq!(names(&plan), ["every"]);

    // A rerun of one step brings it back once.
    app.cli(&["node", "rerun", SERIAL, "install"]);
    let (_, agent) = boot(&app);
    assert_eq!(names(&run_boot(&app, &agent, 0)), ["install", "every"]);
    let (_, agent) = boot(&app);
    assert_eq!(names(&run_boot(&app, &agent, 0)), ["every"]);

    // What the operator sees: outcomes, boot complete, the secret masked.
    let (status, shown) = app.admin_get(&format!("/api/v1/nodes/{SERIAL}/steps"));
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["secrets"]["token"], "***");
    assert_eq!(shown["steps"][0]["last"]["summary"], "exit 0");
    assert_eq!(shown["steps"][0]["runs_next_boot"], false);
    assert_eq!(shown["steps"][1]["runs_next_boot"], true);
    assert_eq!(shown["last_boot"]["healthy"], true);
    assert!(
        shown["last_boot"]["answer_to_complete_ms"].is_u64(),
        "{shown}"
    );
    let detail = app.node(SERIAL);
    assert_eq!(
        detail["after_boot"]["last_boot"]["complete"]["target_ms"],
        8000
    );
    let kinds = app.event_kinds(SERIAL);
    assert!(kinds.iter().any(|k| k == "post_boot_step"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "boot_complete"), "{kinds:?}");
    // The status page draws the last boot: pi-init's steps, the post-boot steps.
    let page = app.status_page();
    for needle in [
        "<svg class=\"tl\"",
        "class=\"seg-pi-init\"",
        "class=\"seg-step-ok\"",
        "step every: exit 0",
        ">complete<",
    ] {
        assert!(
            page.contains(needle),
            "{needle} not in the status page:\n{page}"
        );
    }
    let text = app.cli(&["node", "steps", SERIAL]);
    assert!(
        text.contains("install") && text.contains("exit 0"),
        "{text}"
    );
    assert!(
        !text.contains(SECRET) && text.contains("secret token: ***"),
        "{text}"
    );
    assert_eq!(
        app.metric("pureboot_boot_complete_total{health=\"healthy\"}"),
        "4"
    );

    // The secret is nowhere but in the secrets file and the answer: not in the export, not
    // in the registry (its database and write-ahead log).
    no_file_contains(&app.nfs_root(), SECRET);
    for f in walk(app.dir.path()) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("registry.db") {
            let data = std::fs::read(&f).unwrap();
            assert!(
                !data.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
                "{name}"
            );
        }
    }
}

#[test]
fn on_a_tmpfs_layer_first_boot_steps_run_at_every_boot_and_a_failure_is_retried() {
    let app = app();
    let said = app.cli(&["workflow", "validate"]);
    assert!(
        said.contains("WARNING workflow steps: first_boot step(s) install run at every boot"),
        "{said}"
    );
    add(&app, "tmpfs");
    let (_, agent) = boot(&app);
    run_boot(&app, &agent, 0);
    let (_, agent) = boot(&app);
    assert_eq!(
        names(&run_boot(&app, &agent, 0)),
        ["install", "every"],
        "a new layer at each boot"
    );

    let app = self::app();
    add(&app, "image");
    let (_, agent) = boot(&app);
    run_boot(&app, &agent, 2);
    let (_, shown) = app.admin_get(&format!("/api/v1/nodes/{SERIAL}/steps"));
    assert_eq!(shown["last_boot"]["healthy"], false, "{shown}");
    assert_eq!(shown["steps"][0]["last"]["summary"], "exit 2");
    assert_eq!(
        app.metric("pureboot_post_boot_steps_total{outcome=\"failed\"}"),
        "2"
    );
    let (_, agent) = boot(&app);
    assert_eq!(
        names(&run_boot(&app, &agent, 0)),
        ["install", "every"],
        "retried"
    );
}

#[test]
fn a_boot_that_fell_back_to_tmpfs_does_not_count_a_first_boot_step_as_done() {
    let app = app();
    add(&app, "image");
    let (status, answer) = app.boot_from(PI, &format!("serial={SERIAL}&mac={MAC}"));
    assert_eq!(status, 200);
    let fell_back = json!({"success": true, "mode": "nfs_boot", "overlay_mode": "tmpfs",
        "overlay": {"wanted": "image", "used": "tmpfs", "fallback": "mount failed"}});
    let (status, body) = post_from(&app, PI, &common::report_path(&answer, false), &fell_back);
    assert_eq!(status, 200, "{body}");
    let url = answer["agent_url"].as_str().unwrap();
    let agent = &url[url.find("/api/").unwrap()..];
    assert_eq!(names(&run_boot(&app, agent, 0)), ["install", "every"]);
    // The next boot on the image layer runs the first_boot step: what it did went to tmpfs.
    let (_, agent) = boot(&app);
    assert_eq!(names(&run_boot(&app, &agent, 0)), ["install", "every"]);
}

#[test]
fn output_is_bounded_and_escaped() {
    let app = app();
    add(&app, "image");
    let (_, agent) = boot(&app);
    let (_, plan) = steps(&app, PI, &agent);
    let step = &plan["steps"][0];
    // Over the body limit (4 KiB in the tests): refused whole.
    let huge = outcome(step, 0, &"x".repeat(64 * 1024));
    let (status, _) = post_from(&app, PI, &format!("{agent}/step"), &huge);
    assert_eq!(status, 413);
    let hostile = outcome(step, 1, "line\n\x1b]0;owned\x07\x1b[2J done\n");
    let (status, body) = post_from(&app, PI, &format!("{agent}/step"), &hostile);
    assert_eq!(status, 200, "{body}");
    // A step the agent killed at its timeout is shown as such.
    let mut killed = outcome(&plan["steps"][1], 0, "started\n");
    killed["exit_code"] = Value::Null;
    killed["signal"] = json!(9);
    killed["timed_out"] = json!(true);
    let (status, body) = post_from(&app, PI, &format!("{agent}/step"), &killed);
    assert_eq!((status, &body["ok"]), (200, &json!(false)), "{body}");
    let (_, shown) = app.admin_get(&format!("/api/v1/nodes/{SERIAL}/steps"));
    assert_eq!(shown["history"][0]["summary"], "timed out", "{shown}");
    assert_eq!(shown["history"][0]["timed_out"], true);
    let out = shown["history"][1]["output"].as_str().unwrap();
    assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out:?}");
    assert!(out.starts_with("line\n") && out.contains("done"), "{out:?}");
}

#[test]
fn another_machine_can_neither_read_the_steps_nor_report_for_the_node() {
    let app = app();
    add(&app, "image");
    let (_, agent) = boot(&app);
    let (status, body) = steps(&app, ATTACKER, &agent);
    assert_eq!(status, 403, "{body}");
    assert!(!body.to_string().contains(SECRET));
    let (_, plan) = steps(&app, PI, &agent);
    let o = outcome(&plan["steps"][0], 0, "");
    let (status, _) = post_from(&app, ATTACKER, &format!("{agent}/step"), &o);
    assert_eq!(status, 403);
    let complete = json!({"target": "multi-user.target", "reached": true, "uptime_ms": 1});
    let (status, _) = post_from(&app, ATTACKER, &format!("{agent}/complete"), &complete);
    assert_eq!(status, 403);
    // Not a boot id, or another node's: nothing.
    for bad in [
        "/api/v1/nodes/d83add36/agent",
        "/api/v1/nodes/00000000-0000-4000-8000-000000000000/agent",
    ] {
        let (status, body) = steps(&app, PI, bad);
        assert_eq!(status, 404, "{bad}: {body}");
    }
    // A step the workflow does not have: refused; boot complete once only.
    let made_up = json!({"name": "made up", "digest": "x", "exit_code": 0, "duration_ms": 1});
    let (status, _) = post_from(&app, PI, &format!("{agent}/step"), &made_up);
    assert_eq!(status, 422);
    let (status, _) = post_from(&app, PI, &format!("{agent}/complete"), &complete);
    assert_eq!(status, 200);
    let (status, _) = post_from(&app, PI, &format!("{agent}/complete"), &complete);
    assert_eq!(status, 409);
    let (_, shown) = app.admin_get(&format!("/api/v1/nodes/{SERIAL}/steps"));
    assert!(shown["history"].as_array().unwrap().is_empty(), "{shown}");
}

#[test]
fn a_boot_without_complete_is_stuck_after_the_configured_time() {
    let app = spawn_app_with(|c| c.boot_complete_within_secs = 0);
    app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs", "mac": MAC}));
    assert_eq!(app.metric("pureboot_nodes_stuck"), "0");
    let (status, _) = app.boot_from(PI, &format!("serial={SERIAL}&mac={MAC}"));
    assert_eq!(status, 200);
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(app.metric("pureboot_nodes_stuck"), "1");
    let page = app.status_page();
    assert!(
        page.contains("id=\"stuck-count\""),
        "no stuck count:\n{page}"
    );
    assert!(
        page.contains("stuck at answer sent"),
        "the node's row names its stage:\n{page}"
    );
}

#[test]
fn a_secrets_file_others_can_read_is_refused_with_no_value_shown() {
    let app = app();
    let secrets = app.config.secrets_file.clone().unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();
    add(&app, "image");
    let (_, agent) = boot(&app);
    let (status, body) = steps(&app, PI, &agent);
    assert!(status >= 500, "{status}: {body}");
    assert!(!body.to_string().contains(SECRET), "{body}");
}

#[test]
fn each_agent_request_spends_the_address_budget_once() {
    // A budget of 5: the boot, pi-init's report, the steps and the two outcomes fit; the
    // sixth request from the address waits. A request that spent twice would leave the
    // second outcome refused.
    let app = app_with(|c| c.node_requests_per_minute = 5);
    add(&app, "tmpfs");
    let (_, agent) = boot(&app);
    let (status, plan) = steps(&app, PI, &agent);
    assert_eq!(status, 200, "{plan}");
    for step in plan["steps"].as_array().unwrap() {
        let (status, body) = post_from(&app, PI, &format!("{agent}/step"), &outcome(step, 0, ""));
        assert_eq!(status, 200, "step {}: {body}", step["name"]);
    }
    let (status, body) = post_from(
        &app,
        PI,
        &format!("{agent}/step"),
        &outcome(&plan["steps"][0], 0, ""),
    );
    assert_eq!(status, 429, "the sixth request is over the budget: {body}");
}
