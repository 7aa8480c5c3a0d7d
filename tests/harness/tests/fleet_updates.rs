//! Fleet updates without fear, on virtual Pis: three QEMU guests follow channel `tiny`; a
//! version whose root has no init is rolled out to one canary, whose boot fails; the
//! controller stops the rollout by itself, the canary's next boot is on the old version
//! again, the two others never got the new one, the version is marked bad and the events and
//! metrics say so. Then a good version: the canary is healthy, the channel moves, the others
//! boot it at their next boot (`node list` shows running vs assigned before and after), and
//! `image rollback` sends them all back in one command. Each version's root carries a mark
//! (`/var/marks/<version>`) the guest's report lists, so the test sees which root it booted.

use std::time::Duration;

use pureboot_harness::controller::{Controller, PORT};
use pureboot_harness::guest_root;
use pureboot_harness::lab::{default_hostname, diskless_node, Lab, LabOptions, TINY};
use pureboot_harness::qemu::{BootRun, Outcome};
use pureboot_harness::wait::poll;
use pureboot_harness::{pi_init_env, process, serial};
use serde_json::Value;

/// A tiny root with `/var/marks/<mark>`; without `/sbin/init` when `broken`.
fn root_tarball(lab: &Lab, mark: &str, broken: bool) -> std::path::PathBuf {
    let dir = lab.dir.join(&format!("root-{mark}"));
    guest_root::build_tiny_root(&lab.env.busybox, &dir).unwrap();
    std::fs::create_dir_all(dir.join("var/marks")).unwrap();
    std::fs::write(dir.join("var/marks").join(mark), "").unwrap();
    if broken {
        std::fs::remove_file(dir.join("sbin/init")).unwrap();
    }
    guest_root::tarball(&dir, &lab.dir.join(&format!("root-{mark}.tar"))).unwrap()
}

/// `(serial, assigned, running)` per node, from `node list --json`.
fn versions(c: &Controller) -> Vec<(String, String, String)> {
    c.cli_json(&["node", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let s = |k: &str| n[k].as_str().unwrap_or("-").to_string();
            (s("serial"), s("assigned_version"), s("running_version"))
        })
        .collect()
}

fn metrics(lab: &Lab) -> String {
    process::run(lab.ns.command("curl").args([
        "-sS",
        "--max-time",
        "10",
        &format!("http://127.0.0.1:{PORT}/metrics"),
    ]))
    .unwrap()
}

/// The rollout's status once the running controller ended it.
fn rollout_end(lab: &Lab) -> Value {
    let mut last = Value::Null;
    let _ = poll(Duration::from_secs(30), Duration::from_millis(500), || {
        last = lab
            .controller()
            .cli_json(&["image", "rollout", "status", TINY]);
        !last["outcome"].is_null()
    });
    last
}

/// The marks the guest's root holds (which version it booted).
fn booted(lab: &Lab, run: &BootRun) -> String {
    lab.expect_report(run).get("marks").to_string()
}

#[test]
fn a_failed_canary_is_rolled_back_by_itself_and_a_good_version_reaches_everyone() {
    let name = "fleet-updates";
    let env = pi_init_env!(name);
    let lab = Lab::start(name, env, LabOptions::default())
        .unwrap_or_else(|e| panic!("{name}: starting the lab: {e}"));
    let c = lab.controller();
    c.import_image(&root_tarball(&lab, "v1", false), TINY)
        .unwrap();
    let serials: Vec<String> = (0xa1..=0xa3).map(serial).collect();
    for s in &serials {
        lab.add_node(s, diskless_node(&default_hostname(s)))
            .unwrap();
    }
    let pis = |which: &[usize], extra: &[&str]| -> Vec<_> {
        which
            .iter()
            .map(|&i| {
                let mut pi = lab
                    .pi(&serials[i])
                    .unwrap()
                    .timeout(Duration::from_secs(300));
                for a in extra {
                    pi = pi.arg(*a);
                }
                pi
            })
            .collect()
    };
    for run in lab.boot_together(&pis(&[0, 1, 2], &[])).unwrap() {
        lab.check(booted(&lab, &run) == "v1", "every node boots v1", &run);
    }
    let all_on = |v: &str| versions(c).iter().all(|(_, a, r)| a == v && r == v);
    assert!(
        poll(Duration::from_secs(10), Duration::from_millis(300), || {
            all_on("tiny@1")
        })
        .is_ok()
    );

    // v2 has no init. Imported beside v1: the channel stays.
    c.import_image(&root_tarball(&lab, "v2", true), TINY)
        .unwrap();
    let out = c
        .cli(&[
            "image",
            "rollout",
            TINY,
            "tiny@2",
            "--canary",
            "1",
            "--health",
            "installed",
            "--wait",
            "240",
        ])
        .unwrap();
    println!("{name}: {out}");
    // All three boot while it runs: the canary gets v2 and fails (reboot ends the run under
    // QEMU's -no-reboot; one try), the others get v1.
    let runs = lab
        .boot_together(&pis(
            &[0, 1, 2],
            &["pureboot.on_failure=reboot", "pureboot.retries=1"],
        ))
        .unwrap();
    lab.check(
        runs[0].outcome == Outcome::Exited
            && runs[0].console.contains("/sbin/init")
            && runs[0]
                .console
                .contains("pi-init: applying failure policy reboot"),
        "the canary's boot of v2 fails for want of an init",
        &runs[0],
    );
    for run in &runs[1..] {
        lab.check(booted(&lab, run) == "v1", "the others stay on v1", run);
    }
    let st = rollout_end(&lab);
    assert_eq!(
        st["outcome"],
        "failed",
        "{name}: {st:#}\n{}",
        lab.diagnostics()
    );
    println!(
        "{name}: rollout of v2: {} ({})",
        st["outcome"], st["reason"]
    );
    let kinds: Vec<&str> = st["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or(""))
        .collect();
    assert!(kinds.contains(&"rollout_failed"), "{name}: {kinds:?}");
    let show = c.cli_json(&["image", "show", TINY]);
    assert!(
        show["channels"][0]["versions"][1]["bad"].is_string(),
        "{name}: v2 marked bad: {show:#}"
    );
    let m = metrics(&lab);
    assert!(
        m.contains("pureboot_rollouts_total{outcome=\"failed\"} 1"),
        "{m}"
    );
    assert!(m.contains("pureboot_image_versions_bad 1"), "{m}");
    assert!(
        c.log_text().contains("failed: canary"),
        "{name}: the log says why:\n{}",
        c.log_tail(30)
    );
    // The canary's next boot is on v1 again; nobody ever ran v2.
    let run = lab.boot(&pis(&[0], &[])[0], "canary-again").unwrap();
    lab.check(booted(&lab, &run) == "v1", "the canary is back on v1", &run);
    assert!(versions(c).iter().all(|(_, _, r)| r == "tiny@1"));

    // v3 is good: the canary is healthy, the channel moves.
    c.import_image(&root_tarball(&lab, "v3", false), TINY)
        .unwrap();
    c.cli(&[
        "image",
        "rollout",
        TINY,
        "tiny@3",
        "--canary",
        &serials[1],
        "--health",
        "installed",
    ])
    .unwrap();
    let run = lab.boot(&pis(&[1], &[])[0], "canary-v3").unwrap();
    lab.check(booted(&lab, &run) == "v3", "the canary boots v3", &run);
    let st = rollout_end(&lab);
    assert_eq!(st["outcome"], "succeeded", "{name}: {st:#}");
    let before = versions(c);
    println!("{name}: after the rollout, before the reboots: {before:?}");
    assert_eq!(
        before,
        [
            (serials[0].clone(), "tiny@3".into(), "tiny@1".into()),
            (serials[1].clone(), "tiny@3".into(), "tiny@3".into()),
            (serials[2].clone(), "tiny@3".into(), "tiny@1".into()),
        ]
    );
    for run in lab.boot_together(&pis(&[0, 2], &[])).unwrap() {
        lab.check(
            booted(&lab, &run) == "v3",
            "the others boot v3 at their reboot",
            &run,
        );
    }
    assert!(
        poll(Duration::from_secs(10), Duration::from_millis(300), || {
            all_on("tiny@3")
        })
        .is_ok()
    );
    println!("{name}: after the reboots: {:?}", versions(c));

    // One command back to v1.
    let out = c.cli(&["image", "rollback", TINY]).unwrap();
    assert!(out.contains("from tiny@3 to tiny@1"), "{out}");
    for run in lab.boot_together(&pis(&[0, 1, 2], &[])).unwrap() {
        lab.check(
            booted(&lab, &run) == "v1",
            "every node boots v1 again",
            &run,
        );
    }
    assert!(
        poll(Duration::from_secs(10), Duration::from_millis(300), || {
            all_on("tiny@1")
        })
        .is_ok()
    );
}
