//! Time to a usable system and the NFS load of a boot: pi-init and the seed flow (the busybox
//! shell flow, tests/baseline/init) boot the same roots from one lab (ganesha and
//! controller), alternately, 1 vCPU each.
//!
//! - Debian root (the cached debootstrap): a unit ordered after `multi-user.target` prints a
//!   mark, dumps the NFS client's counters and powers off. "Usable" is timed on the host's
//!   clock, from QEMU's spawn to the mark's arrival on the console (the same for both flows;
//!   the kernel's timestamp of the mark and systemd's own time of the target are shown too).
//! - tiny busybox root: its init reports, dumps the counters (`probe.nfsstats=1`), powers off.
//!
//! The counters are the whole boot's, up to the mark: see `pureboot_harness::nfs_stats`; so is
//! the guest's CPU time, busy or waiting (`pureboot_harness::guest_cpu`).
//!
//! The last variant is the floor: pi-init booting the same root from a local virtio disk (an
//! ext4 image of the root with its node layer's files), no NFS at all. What an NFS root boot
//! can save is what lies between the seed flow and that floor.
//! [`variants`] lists what is booted; a variant is a flow with extra command-line parameters,
//! so another mount option set is one more entry there, or `--usable-variant` at run time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pureboot_harness::controller::{NodeSpec, PORT};
use pureboot_harness::env::TestEnv;
use pureboot_harness::guest_cpu::GuestCpu;
use pureboot_harness::guest_root::{self, LSLR_MARK, TARGET_MARK, USABLE_MARK};
use pureboot_harness::lab::{default_hostname, diskless_node, Lab, LabOptions, TINY};
use pureboot_harness::nfs_stats::NfsLoad;
use pureboot_harness::qemu::{Outcome, VirtualPi, HOST_FROM_GUEST};
use pureboot_harness::{initramfs, process, serial};

use crate::stats::{cell, median, range};
use crate::watch;

/// Which init boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    /// The seed's shell flow (busybox), told the export on the command line.
    Seed,
    /// pi-init, asking the controller.
    PiInit,
    /// pi-init, told `local_boot` (the node is not registered), the root on a virtio disk.
    LocalDisk,
}

/// One way to boot: a flow and extra kernel command-line parameters.
struct Variant {
    label: String,
    flow: Flow,
    args: Vec<String>,
    /// The root's base image in the squashfs format (imported as `<image>-sq`).
    squashfs: bool,
}

/// What is booted, the reference (the seed flow) first, then pi-init as it ships, then pi-init
/// with the base on the export's mount, then `extra`'s pi-init variants, each
/// `<label>=<parameters>` (e.g. `v4.0=pureboot.nfs_opts=vers=4.0`), and last the floor (the
/// root on a local disk); the others are compared with the first.
fn variants(extra: &[String]) -> Result<Vec<Variant>, String> {
    let mut v = vec![
        Variant {
            label: "seed flow".into(),
            flow: Flow::Seed,
            args: vec![],
            squashfs: false,
        },
        Variant {
            label: "pi-init".into(),
            flow: Flow::PiInit,
            args: vec![],
            squashfs: false,
        },
        // The same root as one squashfs file, loop-mounted (`image import --format squashfs`).
        Variant {
            label: "pi-init, squashfs base".into(),
            flow: Flow::PiInit,
            args: vec![],
            squashfs: true,
        },
        // The base read through the export's own mount, as before the base got its own
        // caching mount: what that mount saves, operation by operation.
        Variant {
            label: "pi-init, base on the export mount".into(),
            flow: Flow::PiInit,
            args: vec!["pureboot.base_opts=shared".into()],
            squashfs: false,
        },
    ];
    for e in extra {
        let (label, args) = e
            .split_once('=')
            .filter(|(l, a)| !l.is_empty() && !a.is_empty())
            .ok_or_else(|| format!("--usable-variant {e:?}: expected <label>=<parameters>"))?;
        v.push(Variant {
            label: format!("pi-init {label}"),
            flow: Flow::PiInit,
            args: args.split_whitespace().map(String::from).collect(),
            squashfs: false,
        });
    }
    v.push(Variant {
        label: "local disk, no NFS".into(),
        flow: Flow::LocalDisk,
        args: vec!["root=/dev/vda".into(), "rw".into()],
        squashfs: false,
    });
    Ok(v)
}

/// A root both flows boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Root {
    Tiny,
    Debian,
}

impl Root {
    fn image(self) -> &'static str {
        match self {
            Root::Tiny => TINY,
            Root::Debian => "debian",
        }
    }

    /// The same root imported in the squashfs format.
    fn squashfs_image(self) -> String {
        format!("{}-sq", self.image())
    }

    /// The line that says the root is up.
    fn mark(self) -> &'static str {
        match self {
            Root::Tiny => "PUREBOOT-GUEST ",
            Root::Debian => USABLE_MARK,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Root::Tiny => "tiny root: QEMU start → its init's report",
            Root::Debian => "Debian: QEMU start → multi-user.target",
        }
    }

    fn timeout(self) -> Duration {
        Duration::from_secs(match self {
            Root::Tiny => 120,
            // Boots take 45-75 s here under load; a hung one need not cost 5 minutes.
            // (plus the cold `ls -lR /usr` after the mark, tens of seconds over NFS).
            Root::Debian => 300,
        })
    }
}

/// One boot's figures.
struct Sample {
    /// Host clock: QEMU spawned -> the mark on the console.
    usable_s: f64,
    /// Kernel timestamp of the mark (Debian: written through /dev/kmsg).
    kernel_s: Option<f64>,
    /// systemd's ActiveEnterTimestampMonotonic of multi-user.target (Debian).
    target_s: Option<f64>,
    load: NfsLoad,
    /// The guest's CPU time up to the mark (the root prints it just after the mark).
    cpu: Option<GuestCpu>,
    /// A cold `ls -lR /usr` after the mark (Debian), s.
    ls_lr_s: Option<f64>,
}

#[derive(Default)]
struct Series {
    /// The variant's label.
    label: String,
    samples: Vec<Sample>,
    failures: Vec<String>,
}

impl Series {
    fn figures(&self, f: impl Fn(&Sample) -> Option<f64>) -> Vec<f64> {
        self.samples.iter().filter_map(f).collect()
    }
}

fn sample(console: &str, arrival: Duration) -> Result<Sample, String> {
    let target_s = console.lines().find_map(|l| {
        let i = l.find(TARGET_MARK)?;
        let us = l[i..]
            .split_once("active_us=")?
            .1
            .split_whitespace()
            .next()?;
        us.parse::<f64>().ok().map(|us| us / 1e6)
    });
    Ok(Sample {
        usable_s: arrival.as_secs_f64(),
        kernel_s: kernel_time(console, USABLE_MARK),
        target_s,
        load: NfsLoad::from_console(console)?,
        cpu: GuestCpu::from_console(console),
        ls_lr_s: console.lines().find_map(|l| {
            let ms = l[l.find(LSLR_MARK)?..].split_once("ms=")?.1;
            ms.split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
                .map(|ms| ms / 1e3)
        }),
    })
}

/// The kernel timestamp of the `[ t] <mark>` line, also where it follows other text on the
/// same console line (a getty's `login: ` prompt, say).
fn kernel_time(console: &str, mark: &str) -> Option<f64> {
    console.lines().find_map(|l| {
        let before = &l[..l.find(&format!("] {mark}"))?];
        before[before.rfind('[')? + 1..].trim().parse().ok()
    })
}

/// Why a boot that never showed its mark stopped, as far as the console says: the kernel's
/// first hung-task report, with the function it waits in when it is the NFSv4 idmapper.
fn stall(console: &str) -> String {
    let Some(hung) = console
        .lines()
        .find(|l| l.contains("blocked for more than"))
    else {
        return String::new();
    };
    let idmap = if console.contains("nfs_idmap_get_key") {
        " (in nfs_idmap_get_key: the NFSv4 idmapper's request-key upcall)"
    } else {
        ""
    };
    format!("; kernel: {}{idmap}", hung.trim_end_matches('\r').trim())
}

struct Bench<'a> {
    vars: Vec<Variant>,
    lab: Lab,
    env: &'static TestEnv,
    pi_initrd: &'a Path,
    seed_initrd: &'a Path,
    disk_initrd: &'a Path,
    /// Each root as a disk image, for the local-disk floor.
    disks: BTreeMap<Root, PathBuf>,
}

impl Bench<'_> {
    fn serial(v: usize, root: Root) -> String {
        serial(0x5e00 + 0x10 * root as u32 + v as u32)
    }

    /// Registers each variant's node for `root` and renders its tree (the seed flow never asks
    /// the controller, so its node layer is made here: both boot with hostname and machine-id).
    /// The local disk's serial stays unknown: the controller answers it `local_boot`.
    fn add_nodes(&self, root: Root) -> Result<(), String> {
        for (v, var) in self.vars.iter().enumerate() {
            if var.flow == Flow::LocalDisk {
                continue;
            }
            let s = Self::serial(v, root);
            let image = match var.squashfs {
                true => root.squashfs_image(),
                false => root.image().into(),
            };
            self.lab.add_node(
                &s,
                NodeSpec {
                    base_image: Some(image),
                    ..diskless_node(&default_hostname(&s))
                },
            )?;
            if var.flow == Flow::Seed {
                self.lab.controller().cli(&["overlay", "create", &s])?;
            }
        }
        Ok(())
    }

    fn pi(&self, v: usize, var: &Variant, root: Root) -> VirtualPi {
        let s = Self::serial(v, root);
        let url = format!("http://{HOST_FROM_GUEST}:{PORT}");
        let pi = match var.flow {
            Flow::PiInit => VirtualPi::new(&s, &self.env.kernel().image, self.pi_initrd)
                .arg(format!("pureboot.url={url}")),
            Flow::Seed => VirtualPi::new(&s, &self.env.kernel().image, self.seed_initrd)
                .arg(format!("pureboot.nfs_server={HOST_FROM_GUEST}"))
                .arg(format!("pureboot.nfs_path={}", self.lab.export().display()))
                .arg(format!("pureboot.base_image={}", root.image()))
                .arg(format!(
                    "pureboot.callback={url}/api/v1/nodes/{s}/installed"
                )),
            Flow::LocalDisk => VirtualPi::new(&s, &self.env.kernel().image, self.disk_initrd)
                .arg(format!("pureboot.url={url}"))
                .disk(&self.disks[&root]),
        };
        var.args
            .iter()
            .fold(pi, |pi, a| pi.arg(a))
            .arg("probe.nfsstats=1")
            // A task stuck 30 s is reported on the console (default 120 s), so a boot that
            // times out says where it hung.
            .arg("sysctl.kernel.hung_task_timeout_secs=30")
            .timeout(root.timeout())
    }

    fn boot_into(&self, v: usize, var: &Variant, root: Root, i: usize, series: &mut Series) {
        let label = format!("{:?}-{}-{i}", root, var.label.replace(' ', "-")).to_lowercase();
        let got = watch::boot(&self.lab, &self.pi(v, var, root), &label, root.mark()).and_then(
            |(run, arrival)| match (run.outcome, arrival) {
                (Outcome::Exited, Some(t)) => sample(&run.console, t)
                    .map_err(|e| format!("{e} (console {})", run.console_path.display())),
                (outcome, _) => Err(format!(
                    "{outcome:?} without `{}`{} (console {})",
                    root.mark().trim(),
                    stall(&run.console),
                    run.console_path.display()
                )),
            },
        );
        match got {
            Ok(s) => {
                eprintln!(
                    "bench: usable {label}: {:.2} s, {} NFS calls",
                    s.usable_s,
                    s.load.total_calls()
                );
                series.samples.push(s);
            }
            Err(e) => {
                eprintln!("bench: usable {label}: {e}");
                series.failures.push(format!("{label}: {e}"));
            }
        }
    }

    /// `boots` rounds; each round boots every variant once, the order reversed every other
    /// round so drift in the machine's load hits all alike.
    fn series(&self, root: Root, boots: usize) -> Vec<Series> {
        let vars = &self.vars;
        let mut out: Vec<Series> = vars
            .iter()
            .map(|v| Series {
                label: v.label.clone(),
                ..Default::default()
            })
            .collect();
        for i in 0..boots {
            let mut order: Vec<usize> = (0..vars.len()).collect();
            if i % 2 == 1 {
                order.reverse();
            }
            for v in order {
                self.boot_into(v, &vars[v], root, i, &mut out[v]);
            }
        }
        out
    }
}

pub fn run(env: &'static TestEnv, boots: usize, extra: &[String]) -> Result<String, String> {
    let vars = variants(extra)?;
    let debian = env.debian_root()?;
    let pi_initrd = initramfs::pi_init(env)?;
    let seed_initrd = initramfs::baseline(env)?;
    let disk_initrd = initramfs::pi_init_virtio_disk(env)?;
    // Unknown serials get `local_boot`: that is how the floor boots from its disk.
    let opts = LabOptions {
        auto_register: false,
        ..LabOptions::default()
    };
    let lab = Lab::start("bench-usable", env, opts)?;
    lab.import_tiny_root(TINY)?;
    let squashfs = |tar: &Path, root: Root| {
        let tar = tar.display().to_string();
        let name = root.squashfs_image();
        let import = ["image", "import", &tar, &name, "--format", "squashfs"];
        lab.controller().cli(&import).map(drop)
    };
    squashfs(&lab.dir.join("tiny-root.tar"), Root::Tiny)?;
    let local = vars.len() - 1;
    let mut disks = BTreeMap::new();
    let tiny_tar = lab.dir.join("tiny-root.tar");
    let image = disk_image(&tiny_tar, &Bench::serial(local, Root::Tiny), lab.dir.path())?;
    disks.insert(Root::Tiny, image);
    let tar = guest_root::debian_usable_tarball(&debian, &lab.dir.join("debian-usable.tar"))?;
    lab.controller().import_image(&tar, Root::Debian.image())?;
    squashfs(&tar, Root::Debian)?;
    let image = disk_image(&tar, &Bench::serial(local, Root::Debian), lab.dir.path())?;
    disks.insert(Root::Debian, image);
    // The tarball is 290 MB and no longer needed once imported and written to the disk.
    let _ = std::fs::remove_file(&tar);
    let b = Bench {
        vars,
        lab,
        env,
        pi_initrd: &pi_initrd,
        seed_initrd: &seed_initrd,
        disk_initrd: &disk_initrd,
        disks,
    };
    let mut out = format!(
        "## 5. Time to a usable system and NFS load per boot (QEMU virt, TCG, 1 vCPU; {boots} \
         boots each, alternating; median (min–max))\n\n"
    );
    let mut tables = String::new();
    for root in [Root::Debian, Root::Tiny] {
        b.add_nodes(root)?;
        let series = b.series(root, boots);
        out += &time_table(root, boots, &series);
        tables += &load_table(root, &series);
    }
    Ok(out + &tables)
}

/// The root in `tar` as an ext4 image for the local-disk floor, with the files its node layer
/// would give (hostname, machine-id), in `dir`. Written once; each boot runs on a snapshot.
fn disk_image(tar: &Path, serial: &str, dir: &Path) -> Result<PathBuf, String> {
    let out = dir.join(format!("disk-{serial}.img"));
    let stage = dir.join(format!("disk-{serial}.root"));
    let io = |e: std::io::Error| format!("disk image {}: {e}", out.display());
    std::fs::create_dir_all(stage.join("etc")).map_err(io)?;
    process::run(
        Command::new("tar")
            .args(["--numeric-owner", "--xattrs", "-xpf"])
            .arg(tar)
            .arg("-C")
            .arg(&stage),
    )?;
    std::fs::write(
        stage.join("etc/hostname"),
        format!("{}\n", default_hostname(serial)),
    )
    .map_err(io)?;
    std::fs::write(stage.join("etc/machine-id"), format!("{serial:0>32}\n")).map_err(io)?;
    // Room for the root and what the boot writes (journal, logs): half again, plus 64 MiB.
    let size_mib = std::fs::metadata(tar).map_err(io)?.len() * 3 / 2 / (1 << 20) + 64;
    process::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "pureboot-root", "-d"])
            .arg(&stage)
            .arg(&out)
            .arg(format!("{size_mib}M")),
    )?;
    std::fs::remove_dir_all(&stage).map_err(io)?;
    Ok(out)
}

/// A row: each variant's median (min–max), then each other variant's ratio to the first
/// (`-` where the first has none).
fn row(what: &str, per: &[Vec<f64>], decimals: usize) -> String {
    let mut s = format!("| {what} |");
    for v in per {
        s += &format!(" {} ({}) |", cell(median(v), decimals), range(v, decimals));
    }
    let reference = median(&per[0]).filter(|&r| r > 0.0);
    for v in &per[1..] {
        let ratio = reference.zip(median(v)).map(|(r, x)| x / r);
        s += &format!(" {} |", cell(ratio, 2));
    }
    s + "\n"
}

/// The header of [`row`]'s table for `series`.
fn header(first: &str, per_variant: &str, series: &[Series]) -> String {
    let mut h = format!("| {first} |");
    for x in series {
        h += &format!(" {}{per_variant} |", x.label);
    }
    for x in &series[1..] {
        h += &format!(" {} / {} |", x.label, series[0].label);
    }
    let cols = 2 * series.len();
    h + "\n" + &"|---".repeat(cols) + "|\n"
}

/// Whether a median ratio meets a goal, for the report.
fn goal(name: &str, ratio: Option<f64>, met: impl Fn(f64) -> bool) -> String {
    match ratio {
        Some(r) => format!(
            "Goal {name}: **{}** ({r:.2}).\n",
            if met(r) { "met" } else { "not met" }
        ),
        None => format!("Goal {name}: no figure.\n"),
    }
}

fn ratio_of_medians(series: &[Series], f: impl Fn(&Sample) -> Option<f64> + Copy) -> Option<f64> {
    let reference = median(&series[0].figures(f))?;
    median(&series.get(1)?.figures(f)).map(|x| x / reference)
}

fn time_table(root: Root, boots: usize, series: &[Series]) -> String {
    let mut s = header("", "", series);
    let per = |f: fn(&Sample) -> Option<f64>| -> Vec<Vec<f64>> {
        series.iter().map(|x| x.figures(f)).collect()
    };
    s += &row(
        &format!(
            "**{}, s** (host clock: QEMU spawned → the mark on the console)",
            root.what()
        ),
        &per(|x| Some(x.usable_s)),
        2,
    );
    if root == Root::Debian {
        s += &row(
            "  kernel start → the mark (its kernel timestamp), s",
            &per(|x| x.kernel_s),
            2,
        );
        s += &row(
            "  kernel start → multi-user.target active (systemd's monotonic time), s",
            &per(|x| x.target_s),
            2,
        );
        s += &row(
            "  after it: a cold `ls -lR /usr` (caches dropped), s",
            &per(|x| x.ls_lr_s),
            2,
        );
    }
    s += &row(
        "  guest CPU busy, kernel start → the mark (user + system + irq, /proc/stat), s",
        &per(|x| x.cpu.map(|c| c.busy_s)),
        2,
    );
    s += &row(
        "  guest CPU waiting, kernel start → the mark (idle + iowait), s",
        &per(|x| x.cpu.map(|c| c.waiting_s)),
        2,
    );
    s += "\nboots that reached the mark:";
    for x in series {
        s += &format!(" {} {}/{boots};", x.label, x.samples.len());
    }
    s += "\n";
    for x in series {
        for f in &x.failures {
            s += &format!("- failed: {f}\n");
        }
    }
    if root == Root::Debian {
        s += "\n";
        s += &goal(
            &format!(
                "time to multi-user.target ≥ 20% shorter ({} / {} ≤ 0.80)",
                series[1].label, series[0].label
            ),
            ratio_of_medians(series, |x| Some(x.usable_s)),
            |r| r <= 0.80,
        );
    }
    s + "\n"
}

/// Per operation: the median calls per boot of each variant and their ratio; then the totals
/// and the NIC's bytes.
fn load_table(root: Root, series: &[Series]) -> String {
    let name = match root {
        Root::Tiny => "tiny root, up to its init's report",
        Root::Debian => "Debian root, up to multi-user.target",
    };
    let mut s =
        format!("### NFS load per boot, {name} (median calls per boot, /proc/net/rpc/nfs)\n\n");
    let mut ops: Vec<&str> = series
        .iter()
        .flat_map(|x| &x.samples)
        .flat_map(|m| m.load.calls.keys().map(String::as_str))
        .collect();
    ops.sort_unstable();
    ops.dedup();
    s += &header("op", " calls", series);
    for op in ops {
        let per: Vec<Vec<f64>> = series
            .iter()
            .map(|x| x.figures(|m| Some(*m.load.calls.get(op).unwrap_or(&0) as f64)))
            .collect();
        s += &row(op, &per, 0);
    }
    let per = |f: fn(&NfsLoad) -> Option<f64>| -> Vec<Vec<f64>> {
        series.iter().map(|x| x.figures(|m| f(&m.load))).collect()
    };
    s += &row("**total RPCs**", &per(|l| Some(l.total_calls() as f64)), 0);
    s += &row(
        "KiB through the NIC, rx + tx (/proc/net/dev: NFS, DHCP and HTTP)",
        &per(|l| l.nic.map(|b| (b.sent + b.received) as f64 / 1024.0)),
        0,
    );
    s += "\nNFS spoken:";
    for x in series {
        if let Some(m) = x.samples.first() {
            s += &format!(" {} {};", x.label, m.load.protocol());
        }
    }
    s += "\n";
    if root == Root::Debian {
        s += "\n";
        s += &goal(
            &format!("Debian boot NFS RPCs ≤ 0.5 × the {}'s", series[0].label),
            ratio_of_medians(series, |x| Some(x.load.total_calls() as f64)),
            |r| r <= 0.5,
        );
    }
    s + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
pi-e2e05e11 login: [   30.500000] PUREBOOT-USABLE target=multi-user.target\r
PUREBOOT-TARGET active_us=30123456\r
PUREBOOT-NFS rpc proc3 22 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\r
PUREBOOT-NFS rpc proc4 69 1 2 0 0 3 0 0 0 0 0 0 0 0 0 0 0 0 4 5 6 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\r
PUREBOOT-LSLR ms=1234\r
";

    #[test]
    fn a_sample_takes_the_marks_times_and_the_counters() {
        let s = sample(CONSOLE, Duration::from_millis(33_250)).unwrap();
        assert_eq!(s.usable_s, 33.25);
        assert_eq!(s.kernel_s, Some(30.5));
        assert_eq!(s.target_s, Some(30.123456));
        assert_eq!(s.load.total_calls(), 21);
        assert_eq!(s.ls_lr_s, Some(1.234));
        assert!(sample("[ 1.0] PUREBOOT-USABLE x\n", Duration::ZERO).is_err());
    }

    #[test]
    fn a_stall_names_the_hung_task_and_the_idmapper() {
        assert_eq!(stall("[ 9.0] reboot: Power down\n"), "");
        let c = "[ 242.8] INFO: task systemd:1 blocked for more than 120 seconds.\r\n\
                 [ 242.9]  nfs_idmap_get_key+0x1b0/0x240 [nfsv4]\r\n";
        let s = stall(c);
        assert!(
            s.contains("task systemd:1 blocked for more than 120 seconds."),
            "{s}"
        );
        assert!(s.ends_with("request-key upcall)"), "{s}");
    }

    #[test]
    fn extra_variants_are_pi_init_with_their_parameters() {
        let v = variants(&["v4.0=pureboot.nfs_opts=vers=4.0 pureboot.log=debug".into()]).unwrap();
        assert_eq!(v.len(), 6);
        assert_eq!((v[0].flow, v[1].flow), (Flow::Seed, Flow::PiInit));
        assert!(v[2].flow == Flow::PiInit && v[2].squashfs && !v[1].squashfs);
        assert_eq!(v[5].flow, Flow::LocalDisk);
        assert_eq!(v[5].args, ["root=/dev/vda", "rw"]);
        assert_eq!(v[3].args, ["pureboot.base_opts=shared"]);
        assert_eq!(v[4].label, "pi-init v4.0");
        assert_eq!(
            v[4].args,
            ["pureboot.nfs_opts=vers=4.0", "pureboot.log=debug"]
        );
        assert!(variants(&["no-parameters".into()]).is_err());
        assert!(variants(&["=x".into()]).is_err());
    }

    #[test]
    fn rows_give_medians_ranges_and_the_ratio_to_the_reference() {
        let r = row("t", &[vec![10.0, 20.0, 30.0], vec![5.0, 10.0, 15.0]], 1);
        assert_eq!(r, "| t | 20.0 (10.0–30.0) | 10.0 (5.0–15.0) | 0.50 |\n");
        let r = row("u", &[vec![0.0], vec![2.0]], 0);
        assert_eq!(r, "| u | 0 (0–0) | 2 (2–2) | - |\n");
        let series = ["seed flow", "pi-init", "pi-init v4.0"].map(|l| Series {
            label: l.into(),
            ..Default::default()
        });
        let h = header("op", " calls", &series);
        assert!(h.contains("| pi-init v4.0 / seed flow |"), "{h}");
        assert_eq!(h.lines().count(), 2);
        assert_eq!(
            h.lines().next().unwrap().matches('|').count(),
            h.lines().nth(1).unwrap().matches('|').count()
        );
        assert!(goal("g", Some(0.4), |r| r <= 0.5).contains("**met**"));
        assert!(goal("g", Some(0.6), |r| r <= 0.5).contains("**not met**"));
    }
}
