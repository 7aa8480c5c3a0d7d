//! The controller under test: `pureboot-controller --config <toml> serve` in the scenario's
//! namespace on 127.0.0.1:8080 (the guests reach it as 10.0.2.2:8080), and its admin CLI run
//! against the same config and database.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::netns::Netns;
use crate::process::{self, Daemon};
use crate::qemu::HOST_FROM_GUEST;
use crate::wait::wait_until;

pub const PORT: u16 = 8080;
pub const TOKEN: &str = "e2e-admin-Zq7vN4kP9xR2mW8t";

/// The settings a scenario varies; the rest is fixed by the lab.
#[derive(Clone, Debug)]
pub struct Settings {
    pub nfs_root: PathBuf,
    pub database: PathBuf,
    pub workflows_dir: PathBuf,
    pub auto_register: bool,
    pub default_base_image: String,
}

/// The TOML file, with the agreed keys.
pub fn config_toml(s: &Settings) -> String {
    format!(
        "listen = \"127.0.0.1:{PORT}\"\n\
         public_url = \"http://{HOST_FROM_GUEST}:{PORT}\"\n\
         nfs_server = \"{HOST_FROM_GUEST}\"\n\
         database = \"{db}\"\n\
         workflows_dir = \"{wf}\"\n\
         admin_token = \"{TOKEN}\"\n\
         auto_register = {auto}\n\n\
         [nfs]\n\
         enabled = true\n\
         root_path = \"{root}\"\n\
         default_base_image = \"{base}\"\n\
         persist_size_mb = 64\n",
        db = s.database.display(),
        wf = s.workflows_dir.display(),
        auto = s.auto_register,
        root = s.nfs_root.display(),
        base = s.default_base_image,
    )
}

/// How a scenario registers a node (`node add <serial> --workflow <id> ...`).
#[derive(Clone, Debug, Default)]
pub struct NodeSpec {
    pub workflow: String,
    pub hostname: Option<String>,
    pub overlay: Option<String>,
    pub base_image: Option<String>,
    pub mac: Option<String>,
}

pub struct Controller {
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    daemon: Option<Daemon>,
}

impl Controller {
    pub fn new(bin: &Path, dir: &Path, settings: &Settings) -> Result<Controller, String> {
        let config = dir.join("controller.toml");
        std::fs::write(&config, config_toml(settings))
            .map_err(|e| format!("{}: {e}", config.display()))?;
        Ok(Controller {
            bin: bin.to_path_buf(),
            config,
            log: dir.join("controller.log"),
            daemon: None,
        })
    }

    /// Runs an admin CLI command; returns its stdout.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        process::run(
            Command::new(&self.bin)
                .arg("--config")
                .arg(&self.config)
                .args(args),
        )
    }

    /// `--json <args>`, parsed; panics naming the command (for scenarios).
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend(args);
        let out = self.cli(&all).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// Listens on `addr` (e.g. `0.0.0.0`) instead of 127.0.0.1, for guests on a tap device of
    /// the namespace, which reach it at an address of the namespace's bridge. Before `serve`.
    pub fn listen_on(&self, addr: &str) -> Result<(), String> {
        let text = std::fs::read_to_string(&self.config).map_err(|e| e.to_string())?;
        let text = text.replace(
            &format!("listen = \"127.0.0.1:{PORT}\""),
            &format!("listen = \"{addr}:{PORT}\""),
        );
        std::fs::write(&self.config, text).map_err(|e| e.to_string())
    }

    /// Sets a top-level key of the config (`value` as TOML), replacing its line if there is
    /// one. Before `serve`.
    pub fn set(&self, key: &str, value: &str) -> Result<(), String> {
        let text = std::fs::read_to_string(&self.config).map_err(|e| e.to_string())?;
        let line = format!("{key} = {value}");
        let prefix = format!("{key} = ");
        let text = if text.lines().any(|l| l.starts_with(&prefix)) {
            text.lines()
                .map(|l| {
                    if l.starts_with(&prefix) {
                        line.as_str()
                    } else {
                        l
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        } else {
            text.replacen("\n[nfs]\n", &format!("\n{line}\n\n[nfs]\n"), 1)
        };
        std::fs::write(&self.config, text).map_err(|e| e.to_string())
    }

    /// Rewrites the config file with `f` (e.g. to add `[[nfs.servers]]` after `[nfs]`, the
    /// last table). The daemon reads it at start: `stop` and `serve` again to apply.
    pub fn edit_config(&self, f: impl FnOnce(String) -> String) -> Result<(), String> {
        let text = std::fs::read_to_string(&self.config).map_err(|e| e.to_string())?;
        std::fs::write(&self.config, f(text)).map_err(|e| format!("{}: {e}", self.config.display()))
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn serve(&mut self, ns: &Netns) -> Result<(), String> {
        let mut cmd = ns.command(&self.bin);
        cmd.arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("RUST_LOG", "info");
        let mut daemon = Daemon::spawn("controller", cmd, &self.log).map_err(|e| e.to_string())?;
        let up = wait_until(Duration::from_secs(20), || {
            ns.tcp_listening(PORT) || daemon.exited().is_some()
        });
        if up.is_err() || daemon.exited().is_some() {
            return Err(format!(
                "controller did not listen on {PORT}:\n{}",
                daemon.log_tail(30)
            ));
        }
        self.daemon = Some(daemon);
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.stop(Duration::from_secs(3));
        }
    }

    pub fn import_image(&self, tarball: &Path, name: &str) -> Result<(), String> {
        self.cli(&["image", "import", &tarball.display().to_string(), name])
            .map(drop)
    }

    pub fn add_node(&self, serial: &str, spec: &NodeSpec) -> Result<(), String> {
        let mut args = vec!["node", "add", serial, "--workflow", spec.workflow.as_str()];
        for (flag, value) in [
            ("--hostname", &spec.hostname),
            ("--overlay", &spec.overlay),
            ("--base-image", &spec.base_image),
            ("--mac", &spec.mac),
        ] {
            if let Some(v) = value {
                args.extend([flag, v.as_str()]);
            }
        }
        self.cli(&args).map(drop)
    }

    /// `node show <serial> --json`: the node with its state and recent events.
    pub fn node(&self, serial: &str) -> Result<Value, String> {
        let out = self.cli(&["node", "show", serial, "--json"])?;
        serde_json::from_str(&out).map_err(|e| format!("node show {serial} --json: {e}: {out}"))
    }

    pub fn log_tail(&self, lines: usize) -> String {
        process::tail(&self.log, lines)
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The node's state, wherever `node show --json` puts it (`state` or `node.state`).
pub fn node_state(node: &Value) -> Option<&str> {
    node.get("state")
        .or_else(|| node.get("node").and_then(|n| n.get("state")))
        .and_then(Value::as_str)
}

/// Every JSON object inside `v` (depth first), e.g. to find a callback among events.
pub fn objects(v: &Value) -> Vec<&serde_json::Map<String, Value>> {
    let mut out = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                out.push(m);
                stack.extend(m.values());
            }
            Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    out
}

/// Whether any string in `v` (key or value) contains `needle`.
pub fn mentions(v: &Value, needle: &str) -> bool {
    match v {
        Value::String(s) => s.contains(needle),
        Value::Array(a) => a.iter().any(|x| mentions(x, needle)),
        Value::Object(m) => m
            .iter()
            .any(|(k, x)| k.contains(needle) || mentions(x, needle)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn toml_has_the_agreed_keys() {
        let t = config_toml(&Settings {
            nfs_root: "/x/nfs".into(),
            database: "/x/db".into(),
            workflows_dir: "/r/workflows".into(),
            auto_register: true,
            default_base_image: "tiny".into(),
        });
        for line in [
            "listen = \"127.0.0.1:8080\"",
            "public_url = \"http://10.0.2.2:8080\"",
            "nfs_server = \"10.0.2.2\"",
            "auto_register = true",
            "[nfs]",
            "root_path = \"/x/nfs\"",
            "default_base_image = \"tiny\"",
        ] {
            assert!(t.lines().any(|l| l == line), "missing {line:?} in\n{t}");
        }
    }

    #[test]
    fn state_and_mentions_find_nested_values() {
        let v = json!({"node": {"state": "active"}, "events": [{"kind": "installed", "body": {"nfs_version": "3"}}]});
        assert_eq!(node_state(&v), Some("active"));
        assert!(mentions(&v, "nfs_version") && mentions(&v, "installed"));
        assert!(!mentions(&v, "install_failed"));
        assert_eq!(
            objects(&v)
                .iter()
                .filter(|o| o.contains_key("kind"))
                .count(),
            1
        );
    }
}
