//! Faults of the machines a running fleet depends on, with virtual Pis running a write loop
//! (the tiny root's `probe.loop=`): one number a second appended to a file and fsync'd, its
//! number printed on the console only once the fsync has returned. Three nodes: one on the
//! `tmpfs` overlay (its file in RAM, its root's lower layers on NFS), one on the `image`
//! overlay (the file inside `persist.img` on the export), one with a volume (the file inside
//! the volume's ext4 image on the export).
//!
//! - The NFS server restarts (ganesha SIGKILLed, started again 20 s later on the same export
//!   and recovery directory): every node prints new numbers after it, and once the guests
//!   have shut down cleanly the images pass `e2fsck -fn` and hold every number printed
//!   (read with `debugfs`, without mounting: the host kernel need not mount them).
//! - A node loses power mid-write (QEMU SIGKILLed): its next boot mounts its images after
//!   the journal's replay, is not flagged degraded, and finds every number it printed.
//! - The controller is down while the nodes run: their loops go on unchanged; once it is
//!   back it answers for them as before.
//!
//! Each prints its figures (numbers before and after, the longest silence) in the output.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pureboot_harness::controller::{node_state, NodeSpec};
use pureboot_harness::env::TestEnv;
use pureboot_harness::lab::{diskless_node, Lab, LabOptions, TINY};
use pureboot_harness::qemu::{BootRun, Outcome, Running};
use pureboot_harness::wait::poll;
use pureboot_harness::{pi_init_env, process, require, serial};

/// Where the loop writes on the root (the overlay's upper: tmpfs or `persist.img`).
const LOOP_DIR: &str = "/var/lib/loop";
/// The volume's path; the loop writes at its top.
const VOLUME: &str = "/var/lib/vol";
const VOLUME_WORKFLOW: &str = "id: pi-volume\nname: Diskless with a volume\ninstall_method: nfs\n\
                               overlay: tmpfs\nvolumes:\n  - { path: /var/lib/vol, size_mb: 64 }\n";

/// Which writable layer a node's loop writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layer {
    Tmpfs,
    Image,
    Volume,
}

#[derive(Clone, Debug)]
struct Node {
    serial: String,
    layer: Layer,
}

impl Node {
    fn dir(&self) -> &'static str {
        match self.layer {
            Layer::Volume => VOLUME,
            _ => LOOP_DIR,
        }
    }

    /// The ext4 image holding the loop's file on the export, and the file's path inside it.
    fn image(&self, export: &Path) -> Option<(PathBuf, String)> {
        let node = export.join("nodes").join(&self.serial);
        match self.layer {
            Layer::Tmpfs => None,
            Layer::Image => Some((node.join("persist.1.img"), format!("/upper{LOOP_DIR}/seq"))),
            Layer::Volume => Some((node.join("volumes/var-lib-vol.1.img"), "/seq".to_string())),
        }
    }
}

/// One `PUREBOOT-SEQ` line: the number fsync'd and the guest's clock when it returned.
#[derive(Clone, Copy, Debug)]
struct Seq {
    n: u64,
    t: u64,
}

fn seqs(console: &str) -> Vec<Seq> {
    console
        .lines()
        .filter_map(|l| l.find("PUREBOOT-SEQ ").map(|at| &l[at..]))
        .filter_map(|l| {
            let field = |k: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .and_then(|v| v.trim_end_matches('\r').parse().ok())
            };
            Some(Seq {
                n: field("n=")?,
                t: field("t=")?,
            })
        })
        .collect()
}

/// The longest silence between two numbers, in seconds.
fn longest_gap(s: &[Seq]) -> u64 {
    s.windows(2).map(|w| w[1].t - w[0].t).max().unwrap_or(0)
}

/// The `last=` a loop found in its file at start (`PUREBOOT-LOOP dir=... last=N`).
fn found_at_start(console: &str) -> Option<u64> {
    console.lines().find_map(|l| {
        let at = l.find("PUREBOOT-LOOP dir=")?;
        l[at..]
            .split_whitespace()
            .find_map(|w| w.strip_prefix("last="))?
            .trim_end_matches('\r')
            .parse()
            .ok()
    })
}

fn epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
}

/// The tiny root imported, a tmpfs, an image and a volume node (in `layers`) registered.
fn fleet(name: &str, env: &'static TestEnv, first: u32, layers: &[Layer]) -> (Lab, Vec<Node>) {
    let opts = LabOptions {
        workflows: vec![("pi-volume.yaml".into(), VOLUME_WORKFLOW.into())],
        ..LabOptions::default()
    };
    let lab = Lab::start(name, env, opts).unwrap_or_else(|e| panic!("{name}: the lab: {e}"));
    lab.import_tiny_root(TINY)
        .unwrap_or_else(|e| panic!("{name}: importing the tiny root: {e}"));
    let nodes: Vec<Node> = layers
        .iter()
        .enumerate()
        .map(|(i, &layer)| Node {
            serial: serial(first + i as u32),
            layer,
        })
        .collect();
    for n in &nodes {
        let host = format!("pi-{}", format!("{:?}", n.layer).to_lowercase());
        let spec = match n.layer {
            Layer::Tmpfs => diskless_node(&host),
            Layer::Image => NodeSpec {
                overlay: Some("image".into()),
                ..diskless_node(&host)
            },
            Layer::Volume => NodeSpec {
                workflow: "pi-volume".into(),
                ..diskless_node(&host)
            },
        };
        lab.add_node(&n.serial, spec)
            .unwrap_or_else(|e| panic!("{name}: node add {}: {e}", n.serial));
    }
    (lab, nodes)
}

/// Starts every node's loop, to run until the guest's clock reads `until`.
fn start_loops(lab: &Lab, nodes: &[Node], until: u64, label: &str) -> Vec<Running> {
    nodes
        .iter()
        .map(|n| {
            let pi = lab
                .pi(&n.serial)
                .unwrap()
                .arg(format!("probe.loop={}", n.dir()))
                .arg(format!("probe.until={until}"))
                .timeout(Duration::from_secs(until.saturating_sub(epoch()) + 240));
            let pi = if n.layer == Layer::Volume {
                pi.arg(format!("probe.volume={VOLUME}"))
            } else {
                pi
            };
            pi.start(
                &lab.ns,
                &lab.dir.join(&format!("console-{label}-{}.log", n.serial)),
            )
            .unwrap_or_else(|e| panic!("{}: starting {}: {e}", lab.name, n.serial))
        })
        .collect()
}

/// The tmpfs, image and volume nodes' loops running for `secs` from now, each past its
/// third number.
fn three_loops(
    name: &str,
    env: &'static TestEnv,
    first: u32,
    secs: u64,
) -> (Lab, Vec<Node>, Vec<Running>) {
    let (lab, nodes) = fleet(
        name,
        env,
        first,
        &[Layer::Tmpfs, Layer::Image, Layer::Volume],
    );
    let running = start_loops(&lab, &nodes, epoch() + secs, "run");
    wait_for_numbers(&lab, &running, 3, 0, Duration::from_secs(180));
    (lab, nodes, running)
}

/// Waits until every running guest has printed `count` numbers with a clock of `since` or
/// later; panics with the consoles past `limit`.
fn wait_for_numbers(lab: &Lab, running: &[Running], count: usize, since: u64, limit: Duration) {
    let done = poll(limit, Duration::from_millis(500), || {
        running
            .iter()
            .all(|r| seqs(&r.console()).iter().filter(|s| s.t >= since).count() >= count)
    });
    if done.is_err() {
        let consoles: String = running
            .iter()
            .map(|r| {
                let c = r.console();
                let tail: Vec<&str> = c.lines().rev().take(25).collect();
                format!(
                    "----- console of {} (last 25 lines) -----\n{}\n",
                    r.serial(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect();
        panic!(
            "{}: not every node printed {count} numbers since {since} within {limit:?}\n{consoles}{}",
            lab.name,
            lab.diagnostics()
        );
    }
}

/// The guests run to the end of their loops: each must shut its loop down itself.
fn wait_all(lab: &Lab, running: Vec<Running>) -> Vec<BootRun> {
    let runs: Vec<BootRun> = running.into_iter().map(Running::wait).collect();
    for run in &runs {
        lab.check(
            run.outcome == Outcome::Exited && run.console.contains("PUREBOOT-LOOP-END"),
            "the guest ran its loop to the end and powered off",
            run,
        );
    }
    runs
}

/// `e2fsck -fn`: Ok with its summary when the image is clean, Err with its output if not.
fn fsck(image: &Path) -> Result<String, String> {
    process::run(Command::new("e2fsck").arg("-fn").arg(image))
        .map(|out| out.lines().last().unwrap_or_default().to_string())
}

/// The numbers in the loop's file inside `image` (debugfs, no mount).
fn numbers_in(image: &Path, file: &str) -> Vec<u64> {
    let out = process::run(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat {file}"))
            .arg(image),
    )
    .unwrap_or_else(|e| panic!("debugfs on {}: {e}", image.display()));
    out.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Every number printed is in the image's file, which counts 1, 2, 3... with no hole; the
/// file's count and the last number printed.
fn check_numbers(lab: &Lab, node: &Node, run: &BootRun, printed: u64) -> u64 {
    let (image, file) = node
        .image(lab.export())
        .expect("a node writing to the export");
    let summary = fsck(&image)
        .unwrap_or_else(|e| panic!("{}: {} is not clean: {e}", lab.name, image.display()));
    let found = numbers_in(&image, &file);
    let last = found.last().copied().unwrap_or(0);
    println!(
        "{}: {:?} node {}: e2fsck -fn {}: {summary}; {} numbers in {file}, last {last}, last printed {printed}",
        lab.name,
        node.layer,
        node.serial,
        image.file_name().unwrap_or_default().to_string_lossy(),
        found.len(),
    );
    lab.check(
        found.iter().copied().eq(1..=last),
        &format!("{file} counts 1..{last} with no hole: {found:?}"),
        run,
    );
    lab.check(
        last >= printed,
        &format!("every fsync'd number is kept: {printed} printed, the file ends at {last}"),
        run,
    );
    last
}

/// The NFS server killed and back 20 s later: every node carries on, nothing fsync'd is lost.
#[test]
fn nfs_server_restart_under_running_nodes() {
    let name = "fault-nfs-restart";
    let env = pi_init_env!(name);
    require!(
        name,
        ["e2fsck", "debugfs"]
            .iter()
            .find(|t| pureboot_harness::host::locate(t).is_none())
            .map_or(Ok(()), |t| Err(format!(
                "`{t}` not found: run `sudo tests/setup.sh` (e2fsprogs)"
            )))
    );
    // Boots (about a minute for three under TCG), the 20 s outage, the recovery, some more.
    let (mut lab, nodes, running) = three_loops(name, env, 0x2801, 240);
    let before: Vec<u64> = running
        .iter()
        .map(|r| seqs(&r.console()).last().map_or(0, |s| s.n))
        .collect();

    let killed = epoch();
    lab.nfs.kill();
    std::thread::sleep(Duration::from_secs(20));
    let during: Vec<usize> = running
        .iter()
        .map(|r| {
            seqs(&r.console())
                .iter()
                .filter(|s| s.t > killed + 1)
                .count()
        })
        .collect();
    let back = Instant::now();
    let restarted = epoch();
    lab.nfs
        .start_again(&lab.ns)
        .unwrap_or_else(|e| panic!("{name}: ganesha again: {e}"));
    wait_for_numbers(&lab, &running, 3, restarted, Duration::from_secs(150));
    let resumed: Vec<u64> = running
        .iter()
        .map(|r| {
            seqs(&r.console())
                .iter()
                .find(|s| s.t >= restarted)
                .map_or(0, |s| s.t - restarted)
        })
        .collect();
    println!(
        "{name}: ganesha killed at {killed}, started again at {restarted} (ready after {:.1} s)",
        back.elapsed().as_secs_f64()
    );

    let runs = wait_all(&lab, running);
    for (i, (node, run)) in nodes.iter().zip(&runs).enumerate() {
        let s = seqs(&run.console);
        let printed = s.last().map_or(0, |s| s.n);
        println!(
            "{name}: {:?} node {}: last number {} before the kill, {} printed in the outage, \
             first after the restart {} s after it, last {printed}; longest silence {} s",
            node.layer,
            node.serial,
            before[i],
            during[i],
            resumed[i],
            longest_gap(&s)
        );
        // Every node's loop opens files of the export: a server that is away stalls it (a
        // write already past the server may still print in the first second).
        lab.check(
            during[i] <= 2,
            &format!("the outage was felt: {} numbers printed in it", during[i]),
            run,
        );
        lab.check(
            s.iter().any(|x| x.t >= restarted && x.n > before[i]),
            "new numbers after the NFS server came back",
            run,
        );
        if node.layer != Layer::Tmpfs {
            check_numbers(&lab, node, run, printed);
        }
    }
}

/// A node's power cut mid-write: its next boot replays the journal, is not degraded and
/// finds every number it had fsync'd.
#[test]
fn power_cut_mid_write_keeps_what_was_fsynced() {
    let name = "fault-power-cut";
    let env = pi_init_env!(name);
    require!(
        name,
        pureboot_harness::host::locate("debugfs")
            .map(drop)
            .ok_or_else(
                || "`debugfs` not found: run `sudo tests/setup.sh` (e2fsprogs)".to_string()
            )
    );
    let (lab, nodes) = fleet(name, env, 0x2811, &[Layer::Image, Layer::Volume]);
    let running = start_loops(&lab, &nodes, epoch() + 600, "run");
    wait_for_numbers(&lab, &running, 8, 0, Duration::from_secs(180));
    let cut: Vec<BootRun> = running.into_iter().map(Running::power_cut).collect();

    for (node, run) in nodes.iter().zip(&cut) {
        let printed = seqs(&run.console).last().map_or(0, |s| s.n);
        // The loop run with no time left: it reads its file's last number and shuts down.
        let mut pi = lab
            .pi(&node.serial)
            .unwrap()
            .arg(format!("probe.loop={}", node.dir()))
            .arg("probe.until=0");
        if node.layer == Layer::Volume {
            pi = pi.arg(format!("probe.volume={VOLUME}"));
        }
        let next = lab
            .boot(&pi, &format!("after-cut-{}", node.serial))
            .unwrap();
        lab.expect_report(&next);
        let found = found_at_start(&next.console).unwrap_or(0);
        let replayed = next
            .console
            .lines()
            .filter(|l| l.contains("EXT4-fs") && l.contains("recovery complete"))
            .count();
        println!(
            "{name}: {:?} node {}: last number printed before the cut {printed}, found at the \
             next boot {found}; journal replays on its console: {replayed}",
            node.layer, node.serial
        );
        lab.check(
            !next.console.contains("overlay image unavailable")
                && !next.console.contains("not mounted"),
            "the next boot mounts its image (no degradation on the console)",
            &next,
        );
        lab.check(
            found >= printed && found <= printed + 1,
            &format!("every fsync'd number is there: {printed} printed, {found} found"),
            &next,
        );
        lab.check(
            replayed >= 1,
            "the kernel replayed the image's journal at the next boot",
            &next,
        );
        // pi-init posted its report before the switch to the root: recorded by now.
        let shown = lab.controller().node(&node.serial).unwrap();
        lab.check(
            shown["degraded"].is_null(),
            &format!("the controller does not flag the node degraded: {shown:#}"),
            &next,
        );
        check_numbers(&lab, node, &next, printed);
    }
}

/// The controller stopped for 40 s while the nodes run: their loops go on, and it answers
/// for them as before once back.
#[test]
fn controller_down_while_nodes_run() {
    let name = "fault-controller-down";
    let env = pi_init_env!(name);
    let (mut lab, nodes, running) = three_loops(name, env, 0x2821, 200);
    let states_before: Vec<String> = nodes
        .iter()
        .map(|n| {
            node_state(&lab.controller().node(&n.serial).unwrap())
                .unwrap_or("none")
                .to_string()
        })
        .collect();

    let stopped = epoch();
    lab.controller_mut().stop();
    std::thread::sleep(Duration::from_secs(40));
    let back = epoch();
    lab.controller
        .as_mut()
        .expect("a controller")
        .serve(&lab.ns)
        .unwrap_or_else(|e| panic!("{name}: the controller again: {e}"));
    wait_for_numbers(&lab, &running, 2, back, Duration::from_secs(60));

    let runs = wait_all(&lab, running);
    for ((node, run), before) in nodes.iter().zip(&runs).zip(&states_before) {
        let s = seqs(&run.console);
        let down: Vec<Seq> = s
            .iter()
            .copied()
            .filter(|x| x.t > stopped && x.t < back)
            .collect();
        let gap = longest_gap(&s);
        let shown = lab.controller().node(&node.serial).unwrap();
        let after = node_state(&shown).unwrap_or("none");
        println!(
            "{name}: {:?} node {}: {} numbers while the controller was down ({} s), longest \
             silence {gap} s, last {}; state {before} before, {after} after",
            node.layer,
            node.serial,
            down.len(),
            back - stopped,
            s.last().map_or(0, |x| x.n)
        );
        // One a second, plus each write's own time under TCG: a stalled loop prints none.
        lab.check(
            down.len() as u64 >= (back - stopped) / 4,
            "the loop went on while the controller was down",
            run,
        );
        lab.check(
            gap <= 10,
            &format!("no silence longer than 10 s ({gap} s)"),
            run,
        );
        lab.check(
            after == before && shown["degraded"].is_null(),
            &format!("the controller's record is unchanged: {shown:#}"),
            run,
        );
    }
}
