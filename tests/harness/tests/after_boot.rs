//! A node becomes what its workflow says, on the Debian root booted to systemd by pi-init:
//! post-boot steps run by the agent pi-init leaves in /run (one `first_boot`, one
//! `every_boot`, one that fails at its first run), a secret variable that reaches the steps
//! and no file of the export, and "boot complete" recorded by the controller, over two boots
//! of the same node on its persistent (`image`) layer. Everything is asserted from outside:
//! the controller's records (`node show --json`, `node steps --json`), its log, the export's
//! files and the guest's console.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use pureboot_harness::controller::NodeSpec;
use pureboot_harness::env::TestEnv;
use pureboot_harness::guest_root::{self, Staged};
use pureboot_harness::lab::{Lab, LabOptions};
use pureboot_harness::{pi_init_env, require, serial};
use serde_json::Value;

const SECRET: &str = "K10-e2e-s3cret-9f8e7d6c5b4a";

/// The workflow: `install` once per layer, `every` at each boot, `flaky` fails the first
/// time (it leaves a mark in the node's persistent layer) and works after.
const WORKFLOW: &str = r#"id: day2
name: Day two
install_method: nfs
overlay: image
base_image: debian
variables:
  greeting: "hello from {{ serial }}"
secret_variables: [token]
post_boot:
  - name: install
    script: |
      echo "E2E-STEP install ran: $greeting"
      mkdir -p /var/lib/e2e && date +%s > /var/lib/e2e/installed
  - name: every
    run: every_boot
    timeout_secs: 60
    script: |
      if [ -n "$token" ]; then echo "E2E-STEP every ran, token present ($(printf %s "$token" | wc -c) chars)"; else echo "E2E-STEP every: no token"; exit 4; fi
  - name: flaky
    script: |
      if [ -e /var/lib/e2e/flaky-once ]; then echo "E2E-STEP flaky works now"; exit 0; fi
      touch /var/lib/e2e/flaky-once
      echo "E2E-STEP flaky fails the first time" >&2
      exit 3
"#;

/// Waits for the agent to be done (its unit inactive), then says what the root saw and
/// powers off. `Type=simple`: the boot does not wait for it, so the agent's own wait for
/// start-up to be over cannot wait on it.
const E2E_UNIT: &str = "[Unit]
Description=pureboot e2e: report once the post-boot agent is done, then power off
After=multi-user.target

[Service]
Type=simple
ExecStart=/usr/local/sbin/pureboot-e2e
";

const E2E_SCRIPT: &str = r#"#!/bin/sh
i=0
while [ "$(systemctl is-active pureboot-agent.service)" = active ] && [ $i -lt 600 ]; do
  sleep 1; i=$((i+1))
done
agent=$(systemctl show -P Result pureboot-agent.service)
echo "PUREBOOT-GUEST hostname=$(cat /etc/hostname) agent=${agent:-none} agent_file=$(test -x /run/pureboot/agent && echo present || echo absent) state=$(systemctl is-system-running)" > /dev/console
systemctl poweroff
"#;

fn steps(lab: &Lab, serial: &str) -> Value {
    let out = lab
        .controller()
        .cli(&["node", "steps", serial, "--json"])
        .unwrap_or_else(|e| panic!("node steps: {e}"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("node steps --json: {e}: {out}"))
}

/// Runs of `name` recorded for the node (newest first), as `(boot id, summary)`.
fn runs(steps: &Value, name: &str) -> Vec<(String, String)> {
    steps["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["name"] == name)
        .map(|r| {
            (
                r["boot_id"].as_str().unwrap_or("").to_string(),
                r["summary"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn files_holding(root: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                if let Ok(data) = std::fs::read(&p) {
                    if data.windows(needle.len()).any(|w| w == needle) {
                        found.push(p.display().to_string());
                    }
                }
            }
        }
    }
    found
}

/// A lab serving `workflow` (file `<id>.yaml`) with the secret in its secrets file, the
/// Debian root (plus `files`, and the e2e unit) imported as `debian`, and node `s` on the
/// workflow `id`.
fn day2_lab(
    name: &str,
    env: &'static TestEnv,
    debian: &Path,
    (id, workflow): (&str, &str),
    files: &[Staged],
    s: &str,
    before_import: impl FnOnce(&Path),
) -> Lab {
    let mut lab = Lab::start(
        name,
        env,
        LabOptions {
            serve: false,
            default_base_image: "debian".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let workflows = lab.dir.join("workflows");
    std::fs::create_dir_all(&workflows).unwrap();
    std::fs::write(workflows.join(format!("{id}.yaml")), workflow).unwrap();
    let secrets = lab.dir.join("secrets.toml");
    std::fs::write(&secrets, format!("token = \"{SECRET}\"\n")).unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    {
        let c = lab.controller();
        c.set("workflows_dir", &format!("\"{}\"", workflows.display()))
            .unwrap();
        c.set("secrets_file", &format!("\"{}\"", secrets.display()))
            .unwrap();
    }
    lab.controller
        .as_mut()
        .expect("a controller")
        .serve(&lab.ns)
        .unwrap();
    let mut staged: Vec<Staged> = vec![
        Staged {
            rel: "etc/systemd/system/pureboot-e2e.service",
            text: E2E_UNIT.to_string(),
            exec: false,
        },
        Staged {
            rel: "usr/local/sbin/pureboot-e2e",
            text: E2E_SCRIPT.to_string(),
            exec: true,
        },
    ];
    staged.extend(files.iter().cloned());
    let tarball = guest_root::debian_tarball_with(
        debian,
        &lab.dir.join("debian-day2.tar"),
        &staged,
        &["pureboot-e2e.service"],
    )
    .unwrap();
    before_import(&tarball);
    lab.controller().import_image(&tarball, "debian").unwrap();
    lab.add_node(
        s,
        NodeSpec {
            workflow: id.into(),
            ..Default::default()
        },
    )
    .unwrap();
    lab
}

#[test]
fn a_debian_node_runs_its_steps_keeps_its_secret_and_reports_boot_complete() {
    let name = "after-boot";
    let env = pi_init_env!(name);
    let debian = require!(name, env.debian_root());
    let s = serial(24);
    let lab = day2_lab(name, env, &debian, ("day2", WORKFLOW), &[], &s, |_| {});
    let mut consoles = Vec::new();
    for boot in 1..=2 {
        let run = lab
            .boot(
                &lab.pi(&s).unwrap().timeout(Duration::from_secs(420)),
                &format!("boot{boot}"),
            )
            .unwrap();
        let report = lab.expect_report(&run);
        lab.check(
            report.get("agent_file") == "present",
            "pi-init left the agent in the root's /run",
            &run,
        );
        lab.check(
            report.get("agent") == "success",
            "the agent ran and ended well (its unit's result)",
            &run,
        );
        println!(
            "{name}: boot {boot} powered off after {:.1} s",
            run.elapsed.as_secs_f64()
        );
        let st = steps(&lab, &s);
        let last = &st["last_boot"];
        lab.check(
            last["complete"]["reached"] == true && last["complete"]["target_ms"].is_u64(),
            &format!("boot {boot}: boot complete recorded with the target's time: {last}"),
            &run,
        );
        let healthy = last["healthy"] == true;
        lab.check(
            healthy == (boot == 2),
            &format!("boot {boot}: healthy only once flaky works: {last}"),
            &run,
        );
        consoles.push(run.console.clone());
    }

    let st = steps(&lab, &s);
    let install = runs(&st, "install");
    let every = runs(&st, "every");
    let flaky = runs(&st, "flaky");
    assert_eq!(install.len(), 1, "first_boot: once on this layer: {st}");
    assert_eq!(every.len(), 2, "every_boot: at both boots: {st}");
    assert_ne!(every[0].0, every[1].0, "two boots, two ids");
    assert_eq!(
        flaky.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        ["exit 0", "exit 3"],
        "failed at boot 1, ran again and worked at boot 2: {st}"
    );
    let failed_output = st["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "flaky" && r["summary"] == "exit 3")
        .map(|r| r["output"].as_str().unwrap_or("").to_string())
        .unwrap_or_default();
    assert!(
        failed_output.contains("flaky fails the first time"),
        "the failed step's output tail is kept: {failed_output:?}"
    );
    assert_eq!(st["secrets"]["token"], "***");
    // The steps' output reached the console (journal+console).
    assert!(consoles[0].contains("E2E-STEP install ran: hello from"));
    assert!(!consoles[1].contains("E2E-STEP install ran"));
    assert!(consoles[1].contains("E2E-STEP every ran, token present (27 chars)"));

    let node = lab.controller().node(&s).unwrap();
    let kinds: Vec<&str> = node["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "boot_complete").count(),
        2,
        "{kinds:?}"
    );
    assert!(kinds.iter().filter(|k| **k == "post_boot_step").count() >= 5);

    // The secret: in no file of the export (the persist.img included), not in the
    // controller's log nor on the console.
    let holding = files_holding(lab.export(), SECRET.as_bytes());
    assert!(holding.is_empty(), "the secret is in {holding:?}");
    assert!(!lab.controller().log_text().contains(SECRET));
    assert!(consoles.iter().all(|c| !c.contains(SECRET)));
}

/// containerd's state on a volume (ext4, loop-mounted by pi-init outside the overlay), a
/// locally built image imported and run by a post-boot step at every boot.
const CONTAINER_WORKFLOW: &str = r#"id: ctr
name: A container on a diskless node
install_method: nfs
base_image: debian
volumes:
  - path: /var/lib/containerd
    size_mb: 512
post_boot:
  - name: volume
    run: every_boot
    script: |
      echo "E2E-VOLUME fstype=$(findmnt -no FSTYPE /var/lib/containerd)"
      if [ -e /var/lib/containerd/e2e-mark ]; then
        echo "E2E-VOLUME mark=$(cat /var/lib/containerd/e2e-mark)"
      else
        echo boot1 > /var/lib/containerd/e2e-mark; sync; echo "E2E-VOLUME mark=new"
      fi
      mkdir -p /var/tmp/ov/l /var/tmp/ov/u /var/tmp/ov/w /var/tmp/ov/m
      mkdir -p /var/lib/containerd/ov/u /var/lib/containerd/ov/w /var/lib/containerd/ov/m
      if mount -t overlay e2e -o lowerdir=/var/tmp/ov/l,upperdir=/var/lib/containerd/ov/u,workdir=/var/lib/containerd/ov/w /var/lib/containerd/ov/m; then
        echo "E2E-OVERLAY volume=ok"; umount /var/lib/containerd/ov/m
      else
        echo "E2E-OVERLAY volume=refused"
      fi
      if mount -t overlay e2e -o lowerdir=/var/tmp/ov/l,upperdir=/var/tmp/ov/u,workdir=/var/tmp/ov/w /var/tmp/ov/m; then
        echo "E2E-OVERLAY root=ok"; umount /var/tmp/ov/m
      else
        echo "E2E-OVERLAY root=refused"
      fi
  - name: container
    run: every_boot
    timeout_secs: 300
    script: |
      set -e
      systemctl start containerd
      ctr image import /usr/local/share/e2e/busybox-oci.tar
      ctr run --rm docker.io/library/e2e-busybox:latest e2e /bin/echo E2E-CONTAINER says hello
"#;

#[test]
fn a_container_runs_on_a_diskless_node_with_its_state_on_a_volume() {
    let name = "container";
    let env = pi_init_env!(name);
    let debian = require!(name, env.debian_root());
    let s = serial(25);
    let work = std::env::temp_dir().join(format!("pureboot-oci-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let archive = pureboot_harness::oci::busybox_archive(&env.busybox, &work).unwrap();
    // The archive goes into the base image as it is (the staged files are text): appended
    // to the tarball before the import.
    let lab = day2_lab(
        name,
        env,
        &debian,
        ("ctr", CONTAINER_WORKFLOW),
        &[],
        &s,
        |tarball| {
            let stage = tarball.with_extension("oci");
            let share = stage.join("usr/local/share/e2e");
            std::fs::create_dir_all(&share).unwrap();
            std::fs::copy(&archive, share.join("busybox-oci.tar")).unwrap();
            pureboot_harness::process::run(
                std::process::Command::new("tar")
                    .args(["--numeric-owner", "-rf"])
                    .arg(tarball)
                    .arg("-C")
                    .arg(&stage)
                    .args([
                        "./usr/local/share/e2e",
                        "./usr/local/share/e2e/busybox-oci.tar",
                    ]),
            )
            .unwrap();
        },
    );
    let _ = std::fs::remove_dir_all(&work);

    let mut consoles = Vec::new();
    for boot in 1..=2 {
        let pi = lab
            .pi(&s)
            .unwrap()
            .memory(1024)
            .timeout(Duration::from_secs(480));
        let run = lab.boot(&pi, &format!("boot{boot}")).unwrap();
        let report = lab.expect_report(&run);
        lab.check(
            report.get("agent") == "success",
            "the agent ended well",
            &run,
        );
        println!(
            "{name}: boot {boot} powered off after {:.1} s",
            run.elapsed.as_secs_f64()
        );
        let c = &run.console;
        for line in c.lines().filter(|l| l.contains("E2E-")) {
            println!("{name}: boot {boot}: {}", line.trim());
        }
        lab.check(
            c.contains("E2E-VOLUME fstype=ext4"),
            "the volume is ext4 at its path",
            &run,
        );
        let mark = if boot == 1 { "mark=new" } else { "mark=boot1" };
        lab.check(
            c.contains(&format!("E2E-VOLUME {mark}")),
            "what boot 1 wrote on the volume is read at boot 2",
            &run,
        );
        lab.check(
            c.contains("E2E-OVERLAY volume=ok") && c.contains("E2E-OVERLAY root=refused"),
            "an overlayfs upper inside the volume mounts, one on the root is refused",
            &run,
        );
        lab.check(
            c.contains("E2E-CONTAINER says hello"),
            "the container's output reached the console",
            &run,
        );
        let st = steps(&lab, &s);
        lab.check(
            st["last_boot"]["healthy"] == true,
            &format!(
                "boot {boot}: every step ok, boot complete: {}",
                st["last_boot"]
            ),
            &run,
        );
        consoles.push(run.console.clone());
    }
    let st = steps(&lab, &s);
    assert_eq!(runs(&st, "container").len(), 2, "{st}");
    assert!(runs(&st, "container").iter().all(|r| r.1 == "exit 0"));
}
