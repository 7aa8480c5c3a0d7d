//! What an unauthenticated client may cost the controller, written as the attacks: template
//! bombs hidden behind a node's optional values, and (below) the event log, the status page,
//! the admin token, the Host header and idle connections.

mod common;

use std::path::Path;
use std::process::Command;

/// A template that is harmless for a node without a MAC and runs over the render limits
/// for one with a MAC (its work grows with the MAC's length).
const MAC_BOMB: &str = "id: mac-bomb\nname: Mac bomb\ninstall_method: nfs\nhostname: \"pi-{% for i in range((mac | default('')) | length) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}\"\n";

#[test]
fn a_template_bomb_behind_mac_fails_validate_and_is_left_out_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let workflows = dir.path().join("workflows");
    std::fs::create_dir(&workflows).unwrap();
    let file = workflows.join("mac-bomb.yaml");
    std::fs::write(&file, MAC_BOMB).unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pureboot-controller"))
        .arg("--config")
        .arg(&config)
        .args(["workflow", "validate"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "validate passed a MAC bomb: {text}");
    assert!(
        text.contains("mac-bomb.yaml") && text.contains("hostname") && text.contains("limits"),
        "{text}"
    );

    // The daemon's start (and every reload: the same function) leaves it out as broken.
    let app = common::spawn_app_with(|c| c.workflows_dir = workflows.clone());
    let (status, r) = app.admin("POST", "/api/v1/workflows/reload", None);
    assert_eq!(status, 200, "{r}");
    assert!(r["workflows"].as_array().unwrap().is_empty(), "{r}");
    let broken = r["broken"].to_string();
    assert!(
        broken.contains("mac-bomb") && broken.contains("limits"),
        "{r}"
    );
    assert!(Path::new(&file).exists());
}
