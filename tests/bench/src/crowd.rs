//! Many Pis at once against one NFS server: what a site meets after a power cut. `pis`
//! virtual Pis (1 vCPU, `memory_mb` each) boot the Debian root to multi-user.target together
//! from one ganesha and one controller, then one Pi alone, for each format of the base image
//! (a directory tree, one squashfs file); rounds alternate the order so drift in the
//! machine's load hits all alike.
//!
//! Per boot: the time to the root's mark (host clock, QEMU spawned -> the mark on the
//! console), the NFS calls and the bytes its NIC received (the guest's own counters, dumped
//! after the mark: `pureboot_harness::nfs_stats`); per crowd: ganesha's CPU seconds (its
//! /proc) and the bytes through the lab namespace's loopback, where QEMU's user network
//! meets ganesha and the controller (both ways: NFS requests and replies, HTTP), divided by
//! the boots; and the boots that failed. The server's figures are the point: they are what runs out
//! first when a rack boots at once.

use std::path::Path;
use std::time::Duration;

use pureboot_harness::controller::{NodeSpec, PORT};
use pureboot_harness::env::TestEnv;
use pureboot_harness::guest_root::{self, USABLE_MARK};
use pureboot_harness::lab::{default_hostname, diskless_node, Lab, LabOptions};
use pureboot_harness::nfs_stats::NfsLoad;
use pureboot_harness::qemu::{BootRun, Outcome, VirtualPi, HOST_FROM_GUEST};
use pureboot_harness::{initramfs, serial};

use crate::procfs::{dev_sent_bytes, proc_stats};
use crate::stats::{cell, median, min_max};
use crate::watch;

pub struct Params {
    /// Pis booting at once.
    pub pis: usize,
    pub rounds: usize,
    pub memory_mb: u32,
}

/// One base image the crowd boots: a format of the same Debian root.
struct Image {
    label: &'static str,
    name: &'static str,
    /// `image import`'s `--format`.
    format: &'static str,
}

/// One boot's figures.
pub struct Sample {
    pub usable_s: f64,
    pub load: NfsLoad,
}

/// Every crowd of one size on one image, over the rounds.
#[derive(Default)]
struct Series {
    samples: Vec<Sample>,
    failures: Vec<String>,
    boots: usize,
    ganesha_cpu_s: f64,
    server_bytes: u64,
}

impl Series {
    fn per_boot(&self, total: f64) -> Option<f64> {
        (self.boots > 0).then(|| total / self.boots as f64)
    }

    fn figures(&self, f: impl Fn(&Sample) -> Option<f64>) -> Vec<f64> {
        self.samples.iter().filter_map(f).collect()
    }
}

fn node_serial(image: usize, slot: usize) -> String {
    serial(0x6c00 + 0x100 * image as u32 + slot as u32)
}

pub fn run(env: &'static TestEnv, p: &Params) -> Result<String, String> {
    let initrd = initramfs::pi_init(env)?;
    let lab = Lab::start("bench-crowd", env, LabOptions::default())?;
    let images = [
        Image {
            label: "directory",
            name: "debian",
            format: "directory",
        },
        Image {
            label: "squashfs",
            name: "debian-sq",
            format: "squashfs",
        },
    ];
    let formats: Vec<_> = images.iter().map(|i| (i.name, i.format)).collect();
    import_debian(&lab, &formats)?;
    for (i, image) in images.iter().enumerate() {
        for slot in 0..p.pis {
            let s = node_serial(i, slot);
            lab.add_node(
                &s,
                NodeSpec {
                    base_image: Some(image.name.into()),
                    ..diskless_node(&default_hostname(&s))
                },
            )?;
        }
    }
    let companies = [1, p.pis];
    // series[image][company index]
    let mut series: Vec<[Series; 2]> = images.iter().map(|_| Default::default()).collect();
    for round in 0..p.rounds {
        let mut order: Vec<(usize, usize)> = (0..images.len())
            .flat_map(|i| (0..companies.len()).map(move |c| (i, c)))
            .collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for (i, c) in order {
            crowd(&lab, &initrd, i, companies[c], p, round, &mut series[i][c])?;
        }
    }
    Ok(report(&images, &companies, p, &series))
}

/// Boots `company` Pis on image `i` at once and adds their figures to `out`.
fn crowd(
    lab: &Lab,
    initrd: &Path,
    i: usize,
    company: usize,
    p: &Params,
    round: usize,
    out: &mut Series,
) -> Result<(), String> {
    let ganesha = lab.nfs.ganesha_pid().ok_or("ganesha is not running")?;
    let pis: Vec<(String, VirtualPi)> = (0..company)
        .map(|slot| {
            let label = format!("crowd-{i}-{company}-{round}-{slot}");
            let pi = crowd_pi(lab, initrd, &node_serial(i, slot), p.memory_mb, company);
            (label, pi)
        })
        .collect();
    let before = proc_stats(ganesha)?;
    let lo_before = dev_sent_bytes(ganesha, "lo")?;
    let runs = boot_at_once(lab, &pis);
    let after = proc_stats(ganesha)?;
    let lo_after = dev_sent_bytes(ganesha, "lo")?;
    out.boots += company;
    out.ganesha_cpu_s += after.cpu_s - before.cpu_s;
    out.server_bytes += lo_after.saturating_sub(lo_before);
    for (label, got) in runs {
        let sample = got.and_then(|(run, arrival)| sample(&run, arrival));
        match sample {
            Ok(s) => {
                eprintln!(
                    "bench: crowd {label}: {:.1} s, {} NFS calls",
                    s.usable_s,
                    s.load.total_calls()
                );
                out.samples.push(s);
            }
            Err(e) => {
                eprintln!("bench: crowd {label}: {e}");
                out.failures.push(format!("{label}: {e}"));
            }
        }
    }
    Ok(())
}

/// Imports the bench's Debian root (multi-user.target prints [`USABLE_MARK`]) as each
/// `(name, format)` (`image import`'s `--format`).
pub fn import_debian(lab: &Lab, images: &[(&str, &str)]) -> Result<(), String> {
    let debian = lab.env.debian_root()?;
    let tar = guest_root::debian_usable_tarball(&debian, &lab.dir.join("debian-usable.tar"))?;
    let tar_arg = tar.display().to_string();
    for (name, format) in images {
        lab.controller()
            .cli(&["image", "import", &tar_arg, name, "--format", format])?;
    }
    // 290 MB, no longer needed once imported.
    let _ = std::fs::remove_file(&tar);
    Ok(())
}

/// A Pi of a crowd of `company`: pi-init at its default level (info, as deployed), its NFS
/// counters dumped after the mark.
pub fn crowd_pi(
    lab: &Lab,
    initrd: &Path,
    serial: &str,
    memory_mb: u32,
    company: usize,
) -> VirtualPi {
    let url = format!("http://{HOST_FROM_GUEST}:{PORT}");
    // A lone boot takes 40-75 s here; a crowd shares 2 cores.
    let timeout = Duration::from_secs(120 + 60 * company as u64);
    VirtualPi::new(serial, &lab.env.kernel().image, initrd)
        .arg(format!("pureboot.url={url}"))
        .arg("probe.nfsstats=1")
        .arg("sysctl.kernel.hung_task_timeout_secs=30")
        .memory(memory_mb)
        .timeout(timeout)
}

/// A boot and the time its console showed [`USABLE_MARK`] (None: never).
pub type Watched = Result<(BootRun, Option<Duration>), String>;

/// Boots the labelled `pis` at once, each to its end: per Pi its label and what it showed.
pub fn boot_at_once(lab: &Lab, pis: &[(String, VirtualPi)]) -> Vec<(String, Watched)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = pis
            .iter()
            .map(|(label, pi)| {
                s.spawn(move || (label.clone(), watch::boot(lab, pi, label, USABLE_MARK)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a boot's thread panicked"))
            .collect()
    })
}

/// One boot's figures: it reached the mark and dumped its NFS counters, or why not.
pub fn sample(run: &BootRun, arrival: Option<Duration>) -> Result<Sample, String> {
    match (run.outcome, arrival) {
        (Outcome::Exited, Some(t)) => NfsLoad::from_console(&run.console)
            .map(|load| Sample {
                usable_s: t.as_secs_f64(),
                load,
            })
            .map_err(|e| format!("{e} (console {})", run.console_path.display())),
        (outcome, _) => Err(format!(
            "{outcome:?} without `{USABLE_MARK}` (console {})",
            run.console_path.display()
        )),
    }
}

fn report(images: &[Image], companies: &[usize; 2], p: &Params, series: &[[Series; 2]]) -> String {
    let mut s = format!(
        "## 6. Pis at once from one NFS server (QEMU virt, TCG, 1 vCPU and {} MiB each; \
         Debian root to multi-user.target; {} rounds, alternating)\n\n",
        p.memory_mb, p.rounds
    );
    let cols: Vec<(usize, usize)> = (0..images.len())
        .flat_map(|i| (0..2).map(move |c| (i, c)))
        .collect();
    s += "| per boot |";
    for &(i, c) in &cols {
        s += &format!(" {}, {} at once |", images[i].label, companies[c]);
    }
    for &(i, _) in cols.iter().filter(|(_, c)| *c == 1) {
        s += &format!(" {}: {} / 1 |", images[i].label, companies[1]);
    }
    for image in &images[1..] {
        s += &format!(
            " {} / {}, {} at once |",
            image.label, images[0].label, companies[1]
        );
    }
    s += "\n";
    s += &"|---".repeat(cols.len() + 2 * images.len());
    s += "|\n";
    let row = |what: &str, f: &dyn Fn(&Series) -> Option<f64>, decimals: usize| {
        let mut r = format!("| {what} |");
        for &(i, c) in &cols {
            r += &format!(" {} |", cell(f(&series[i][c]), decimals));
        }
        for [alone, crowd] in series {
            let ratio = f(alone)
                .filter(|&a| a > 0.0)
                .zip(f(crowd))
                .map(|(a, b)| b / a);
            r += &format!(" {} |", cell(ratio, 2));
        }
        let first = f(&series[0][1]).filter(|&a| a > 0.0);
        for [_, crowd] in &series[1..] {
            r += &format!(" {} |", cell(first.zip(f(crowd)).map(|(a, b)| b / a), 2));
        }
        r + "\n"
    };
    s += &row(
        "time to multi-user.target, median s",
        &|x| median(&x.figures(|b| Some(b.usable_s))),
        1,
    );
    s += &row(
        "time to multi-user.target, worst s",
        &|x| min_max(&x.figures(|b| Some(b.usable_s))).map(|(_, hi)| hi),
        1,
    );
    s += &row(
        "NFS calls (guest's counters), median",
        &|x| median(&x.figures(|b| Some(b.load.total_calls() as f64))),
        0,
    );
    s += &row(
        "bytes its NIC received, median MB",
        &|x| median(&x.figures(|b| b.load.nic.map(|n| n.received as f64 / 1e6))),
        1,
    );
    s += &row(
        "ganesha CPU, s per boot",
        &|x| x.per_boot(x.ganesha_cpu_s),
        2,
    );
    s += &row(
        "bytes at the server (its loopback, both ways), MB per boot",
        &|x| x.per_boot(x.server_bytes as f64 / 1e6),
        1,
    );
    s += &row(
        "boots that failed (of all)",
        &|x| Some(x.failures.len() as f64),
        0,
    );
    s += "\n";
    for (i, image) in images.iter().enumerate() {
        for (c, company) in companies.iter().enumerate() {
            let x = &series[i][c];
            s += &format!(
                "{}, {company} at once: {} boots, {} failed{}\n",
                image.label,
                x.boots,
                x.failures.len(),
                x.failures
                    .first()
                    .map(|f| format!(" (first: {f})"))
                    .unwrap_or_default()
            );
        }
    }
    s
}
