//! `pureboot-controller nfs exports`, the real binary on a registry the CLI filled: which
//! node gets which export, the two formats, `--output`, and refused arguments.

mod common;

use std::path::{Path, PathBuf};

use common::cli;

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nfsroot");
    let config = dir.path().join("controller.toml");
    std::fs::write(
        &config,
        format!(
            "database = \"{}\"\nworkflows_dir = \"{}\"\nnfs_server = \"10.0.2.2\"\n[nfs]\nroot_path = \"{}\"\n",
            dir.path().join("registry.db").display(),
            common::repo_workflows().display(),
            root.display()
        ),
    )
    .unwrap();
    for serial in ["d83add36", "0000aaaa"] {
        let out = cli(
            &config,
            &["node", "add", serial, "--workflow", "pi-diskless-nfs"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (dir, config, root)
}

fn run(config: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["nfs", "exports"];
    all.extend_from_slice(args);
    let out = cli(config, &all);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn knfsd_rules_give_each_node_its_own_directory_and_base_read_only() {
    let (_dir, config, root) = setup();
    let (ok, out, err) = run(&config, &["--address", "d83add36=10.0.2.15"]);
    assert!(ok, "{err}");
    let r = root.display();
    let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            format!("{r}/base 10.0.2.0/24(ro,no_root_squash,no_subtree_check,sec=sys)"),
            format!("{r}/nodes/d83add36 10.0.2.15(rw,no_root_squash,no_subtree_check,sec=sys)"),
        ],
        "{out}"
    );
    assert!(
        !out.lines()
            .any(|l| l.starts_with(&format!("{r} ")) || l.starts_with(&format!("{r}/nodes "))),
        "the root and nodes/ are not exported: {out}"
    );
    assert!(out.contains("# 0000aaaa: no known address"), "{out}");
    assert!(err.contains("0000aaaa has no known address"), "{err}");
}

#[test]
fn ganesha_rules_carry_the_settings_a_boot_needs_and_go_to_a_file() {
    let (dir, config, root) = setup();
    let file = dir.path().join("pureboot.conf");
    let (ok, out, err) = run(
        &config,
        &[
            "--format",
            "ganesha",
            "--network",
            "192.168.7.0/24",
            "--address",
            "d83add36=192.168.7.20",
            "--address",
            "0000aaaa=192.168.7.21",
            "--output",
            &file.display().to_string(),
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "", "--output: nothing on stdout");
    let text = std::fs::read_to_string(&file).unwrap();
    // ganesha's own directory cache settings: a fresh image has a name of its own.
    assert!(!text.contains("Dir_Chunk"), "{text}");
    for want in [
        "NFSv4 {\n  Only_Numeric_Owners = true;\n}",
        &format!(
            "  Path = {}/base;\n  Pseudo = {}/base;",
            root.display(),
            root.display()
        ),
        "    Clients = 192.168.7.0/24;\n    Access_Type = RO;",
        &format!("  Path = {}/nodes/d83add36;", root.display()),
        "    Clients = 192.168.7.20;\n    Access_Type = RW;",
        "    Clients = 192.168.7.21;\n    Access_Type = RW;",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert_eq!(text.matches("EXPORT {").count(), 3, "{text}");
    assert_eq!(text.matches("Squash = No_Root_Squash;").count(), 3);
    assert_eq!(text.matches("Attr_Expiration_Time = 0;").count(), 3);
    assert_eq!(
        text.matches("Access_Type = None;").count(),
        3,
        "nobody else: {text}"
    );
}

#[test]
fn bad_arguments_are_refused_by_name() {
    let (_dir, config, _root) = setup();
    for (args, says) in [
        (&["--network", "10.0.2.0"][..], "not a network"),
        (&["--address", "d83add36"], "<serial>=<ip>"),
        (&["--address", "d83add36=nope"], "not an IP address"),
        (&["--address", "12345678=10.0.2.9"], "no node 12345678"),
        (&["--format", "nginx"], "export rules format"),
    ] {
        let (ok, _, err) = run(&config, args);
        assert!(!ok, "{args:?} accepted");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
