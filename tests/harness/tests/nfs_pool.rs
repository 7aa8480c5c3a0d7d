//! A pool of two NFS servers (`[[nfs.servers]]`) with virtual Pis: two hosts, A (10.0.3.1)
//! and B (10.0.4.1), each a namespace of its own behind a veth pair from the lab's, with its
//! own rpcbind and ganesha on the fixed ports (`pureboot_harness::nfs_pool`, shared with the
//! bench's `pool` section). No NFS version is forced (each host has the rpcbind an NFSv3
//! mount asks; the roots report NFSv4).
//!
//! Six tmpfs nodes (booted together) are placed by weight 2:1 (four and two) and boot from their servers (the console's
//! `booting <server>:<path>`, each tree on its own server's export only); an image missing
//! on the heavier server sends a new node to the other, and `image status` says why; with
//! the second server draining (config change, controller restarted) its `tmpfs` node on an
//! image both hold boots from the first, while the one whose image only the draining server
//! holds stays there. Figures: boot times, each node's server, NFS calls per server (the
//! guests' own counters summed by server) and ganesha's bytes read per server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pureboot_harness::controller::Controller;
use pureboot_harness::guest_root;
use pureboot_harness::lab::{default_hostname, diskless_node, Lab, LabOptions, TINY};
use pureboot_harness::nfs_pool::{Pool, A, B};
use pureboot_harness::nfs_server::NfsServer;
use pureboot_harness::nfs_stats::NfsLoad;
use pureboot_harness::qemu::BootRun;
use pureboot_harness::{pi_init_env, serial};

/// An image imported after the sync and copied to B only.
const ONLY_B: &str = "tiny-b";

/// ganesha's bytes read so far (`rchar` of /proc/<pid>/io): what it served from its tree.
fn rchar(s: &NfsServer) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{}/io", s.ganesha_pid().unwrap_or(0)))
        .unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn serve(lab: &mut Lab) {
    let ns = &lab.ns;
    let c = lab.controller.as_mut().expect("this lab runs a controller");
    c.serve(ns)
        .unwrap_or_else(|e| panic!("{}: the controller with the pool: {e}", lab.name));
}

/// A tiny root carrying `/var/marks/<mark>` (the guest's report lists it).
fn marked_root(lab: &Lab, mark: &str) -> PathBuf {
    let dir = lab.dir.join(&format!("root-{mark}"));
    guest_root::build_tiny_root(&lab.env.busybox, &dir).unwrap();
    std::fs::create_dir_all(dir.join("var/marks")).unwrap();
    std::fs::write(dir.join("var/marks").join(mark), "").unwrap();
    guest_root::tarball(&dir, &lab.dir.join(&format!("root-{mark}.tar"))).unwrap()
}

/// What one boot showed: the server in pi-init's `booting <server>:<path>` line, the
/// guest's NFS calls, the QEMU run's length.
struct Booted {
    serial: String,
    server: String,
    calls: u64,
    secs: f64,
    marks: String,
    /// The root's NFS version, as the guest reports it.
    nfs: String,
}

fn booted(lab: &Lab, pool: &Pool, run: &BootRun) -> Booted {
    let report = lab.expect_report(run);
    let server = pool.server_of(&run.console).map(|s| s.addr.to_string());
    lab.check(
        server.is_some(),
        "pi-init names a pool server and its export in `booting <server>:<path>`",
        run,
    );
    let load = NfsLoad::from_console(&run.console)
        .unwrap_or_else(|e| panic!("{}: NFS counters of {}: {e}", lab.name, run.serial));
    Booted {
        serial: run.serial.clone(),
        server: server.unwrap_or_default(),
        calls: load.total_calls(),
        secs: run.elapsed.as_secs_f64(),
        marks: report.get("marks").to_string(),
        nfs: report.get("nfs").to_string(),
    }
}

/// Boots `serials` together; prints and returns what each showed, with ganesha's bytes
/// read per server during the round.
fn round(lab: &Lab, pool: &Pool, label: &str, serials: &[&str]) -> Vec<Booted> {
    let pis: Vec<_> = serials
        .iter()
        .map(|s| {
            lab.pi(s)
                .unwrap()
                .arg("probe.nfsstats=1")
                .timeout(Duration::from_secs(300))
        })
        .collect();
    let [a, b] = &pool.servers;
    let before = (rchar(&a.nfs), rchar(&b.nfs));
    let out: Vec<Booted> = lab
        .boot_together(&pis)
        .unwrap()
        .iter()
        .map(|run| booted(lab, pool, run))
        .collect();
    let per = |addr: &str| -> u64 {
        out.iter()
            .filter(|b| b.server == addr)
            .map(|b| b.calls)
            .sum()
    };
    println!("nfs_pool {label}:");
    for b in &out {
        println!(
            "  {} from {} (NFS {}) in {:.1} s ({} NFS calls, marks {})",
            b.serial, b.server, b.nfs, b.secs, b.calls, b.marks
        );
    }
    println!(
        "  per server: {A} {} calls, ganesha read {} KiB; {B} {} calls, ganesha read {} KiB",
        per(A),
        (rchar(&a.nfs) - before.0) / 1024,
        per(B),
        (rchar(&b.nfs) - before.1) / 1024
    );
    out
}

fn server_of<'a>(round: &'a [Booted], serial: &str) -> &'a Booted {
    round.iter().find(|b| b.serial == serial).unwrap()
}

fn has_tree(tree: &Path, serial: &str) -> bool {
    tree.join("nodes").join(serial).is_dir()
}

/// `image status` for `image` on `server`: (status, detail).
fn image_on(c: &Controller, image: &str, server: &str) -> (String, String) {
    let all = c.cli_json(&["image", "status"]);
    let line = all
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["image"] == image && l["server"] == server)
        .unwrap_or_else(|| panic!("no line for {image} on {server}: {all}"));
    let s = |k: &str| line[k].as_str().unwrap_or_default().to_string();
    (s("status"), s("detail"))
}

#[test]
fn two_servers_place_by_weight_skip_a_missing_image_and_drain() {
    let name = "nfs-pool";
    let env = pi_init_env!(name);
    let opts = LabOptions {
        serve: false,
        ..Default::default()
    };
    let mut lab =
        Lab::start(name, env, opts).unwrap_or_else(|e| panic!("{name}: starting the lab: {e}"));
    let pool = Pool::start(&mut lab).unwrap_or_else(|e| panic!("{name}: the pool: {e}"));
    let [tree_a, tree_b] = pool.servers.each_ref().map(|s| s.tree.clone());
    let servers = |b_state: &str| pool.toml([2, 1], ["active", b_state]);
    lab.controller()
        .edit_config(|t| t + &servers("active"))
        .unwrap();
    serve(&mut lab);

    let c = lab.controller();
    c.import_image(&lab.tiny_root_tarball().unwrap(), TINY)
        .unwrap();
    c.cli(&["image", "sync"]).unwrap();
    for tree in [&tree_a, &tree_b] {
        assert!(
            tree.join("base").join(TINY).is_dir(),
            "synced to {}",
            tree.display()
        );
    }
    let s: Vec<String> = (0xb1..=0xb7).map(serial).collect();
    for n in &s[..6] {
        lab.add_node(n, diskless_node(&default_hostname(n)))
            .unwrap();
    }

    // Weights 2:1, the six booting together, as a rack powered on at once: each boot
    // prepares its tree on the counts it read (none recorded yet: A for all), and the
    // commits, one after another, send those past A's share to B (prepared again there).
    let six: Vec<&str> = s[..6].iter().map(String::as_str).collect();
    let first = round(&lab, &pool, "six new nodes together, weights 2:1", &six);
    let mut servers_of: Vec<&str> = first.iter().map(|b| b.server.as_str()).collect();
    servers_of.sort_unstable();
    assert_eq!(
        servers_of,
        [A, A, A, A, B, B],
        "weights 2:1 for nodes booting together"
    );
    for b in &first {
        let (mine, other) = if b.server == A {
            (&tree_a, &tree_b)
        } else {
            (&tree_b, &tree_a)
        };
        assert!(
            has_tree(mine, &b.serial),
            "{}'s tree on its server",
            b.serial
        );
        assert!(
            !has_tree(other, &b.serial),
            "{}: not on the other",
            b.serial
        );
    }
    let on_b = first.iter().find(|b| b.server == B).unwrap().serial.clone();
    let listed = c.cli_json(&["nfs", "servers"]);
    assert_eq!(listed[0]["nodes"], 4, "{listed}");
    assert_eq!(listed[1]["nodes"], 2, "{listed}");

    // An image that A lacks: imported and synced, then A's copy and stamp removed (as on a
    // server added after the sync). A new node would go to A by weight (both at their
    // share, 4/2 = 2/1: the first listed); it goes to B, and `image status` says why.
    c.import_image(&marked_root(&lab, "b-only"), ONLY_B)
        .unwrap();
    c.cli(&["image", "sync"]).unwrap();
    std::fs::remove_dir_all(tree_a.join("base").join(ONLY_B)).unwrap();
    std::fs::remove_file(tree_a.join(".pureboot-digests").join(ONLY_B)).unwrap();
    let mut spec = diskless_node(&default_hostname(&s[6]));
    spec.base_image = Some(ONLY_B.into());
    lab.add_node(&s[6], spec).unwrap();
    let missing = round(&lab, &pool, "image missing on A", &[&s[6]]);
    assert_eq!(missing[0].server, B, "{ONLY_B} is only on B");
    assert_eq!(missing[0].marks, "b-only", "booted {ONLY_B}");
    let (status, detail) = image_on(c, ONLY_B, A);
    assert_eq!(status, "missing", "{detail}");
    assert!(detail.contains(&format!("base/{ONLY_B}")), "{detail}");
    assert_eq!(image_on(c, ONLY_B, B).0, "ok");
    assert_eq!(image_on(c, TINY, A).0, "ok");

    // B draining (the config is read at start: restart). Its tmpfs node on `tiny` boots
    // from A; the node on the image A lacks stays on B (no other server can take it).
    lab.controller_mut().stop();
    lab.controller()
        .edit_config(|t| t.replace(&servers("active"), &servers("draining")))
        .unwrap();
    serve(&mut lab);
    let c = lab.controller();
    assert_eq!(c.cli_json(&["nfs", "servers"])[1]["state"], "draining");
    let drained = round(&lab, &pool, "B draining", &[&on_b, &s[6]]);
    assert_eq!(server_of(&drained, &on_b).server, A, "off the draining B");
    assert!(has_tree(&tree_a, &on_b), "{on_b}'s tree now on A");
    assert_eq!(
        server_of(&drained, &s[6]).server,
        B,
        "{ONLY_B} is on B only: its node stays on the draining B"
    );
    let listed = c.cli_json(&["nfs", "servers"]);
    assert_eq!(listed[0]["nodes"], 5, "{listed}");
    assert_eq!(listed[1]["nodes"], 2, "{listed}");
    // The pool dropped before the lab (declared after it): the servers stop first.
    drop(pool);
}
