//! Boot path: the busybox baseline (a busybox shell flow, tests/baseline/init) and pi-init boot the same tiny
//! root from the same ganesha and controller, alternately (so load from other work on the
//! machine hits both alike), and are timed from their own kernel-timestamped lines:
//! init start -> exec of the new root's init. On each kernel asked for: Debian's (the NFS
//! client four modules, loaded whatever the init) and the Pi-like one (built in, as on a Pi),
//! on which the target is judged.
//!
//! On the Pi-like kernel a third boot alternates with them: the kernel alone (`ip=dhcp`,
//! `root=/dev/nfs`, no init in the initramfs) mounting the same root. Its DHCP and NFS mount,
//! with no user space at all, are what any init's network and mount steps cannot go below.

use std::collections::BTreeMap;
use std::time::Duration;

use pureboot_harness::console::{pi_init_steps, time_of, GuestReport};
use pureboot_harness::controller::PORT;
use pureboot_harness::env::{Kernel, KernelKind, TestEnv};
use pureboot_harness::lab::{diskless_node, Lab, LabOptions, TINY};
use pureboot_harness::qemu::{BootRun, Outcome, VirtualPi, HOST_FROM_GUEST};
use pureboot_harness::{initramfs, serial};

use crate::sizes::modules_in;
use crate::stats::{cell, median, range};

/// The baseline's marks, in order; each phase ends at its mark.
const BASELINE_MARKS: [(&str, &str); 5] = [
    ("modules", "baseline: step modules done"),
    ("link + dhcp", "baseline: step dhcp done"),
    ("nfs mount", "baseline: step nfs done"),
    ("overlay", "baseline: step overlay done"),
    ("callback + switch", "baseline: exec"),
];

/// What one boot's console gives.
#[derive(Default)]
struct Sample {
    /// Kernel time of init's first line (kernel start + initramfs unpack).
    start_s: f64,
    /// init start -> exec of the new root's init.
    path_ms: f64,
    /// QEMU start to power off.
    qemu_s: f64,
    phases: Vec<(String, f64)>,
}

impl Sample {
    /// The path less module loading: what the init itself adds once the kernel's module
    /// work is done (pi-init joins its loader thread before mounting NFS, the baseline loads
    /// first), so the part of the path a different init can shorten.
    fn outside_modules(&self) -> f64 {
        let modules: f64 = self
            .phases
            .iter()
            .filter(|(n, _)| n == "modules")
            .map(|(_, ms)| ms)
            .sum();
        self.path_ms - modules
    }
}

#[derive(Default)]
struct Series {
    samples: Vec<Sample>,
    failures: Vec<String>,
}

impl Series {
    fn figures(&self, f: impl Fn(&Sample) -> f64) -> Vec<f64> {
        self.samples.iter().map(f).collect()
    }

    /// Median per phase name, in the order the phases first appeared.
    fn phase_table(&self) -> Vec<(String, Vec<f64>)> {
        let mut order: Vec<String> = Vec::new();
        let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for s in &self.samples {
            for (name, ms) in &s.phases {
                if !order.contains(name) {
                    order.push(name.clone());
                }
                by.entry(name.clone()).or_default().push(*ms);
            }
        }
        order
            .into_iter()
            .map(|n| {
                let v = by.remove(&n).unwrap_or_default();
                (n, v)
            })
            .collect()
    }
}

fn baseline_sample(run: &BootRun) -> Result<Sample, String> {
    let c = &run.console;
    let start = time_of(c, "baseline: start").ok_or("no `baseline: start` line")?;
    let mut phases = Vec::new();
    let mut prev = start;
    for (name, mark) in BASELINE_MARKS {
        let t = time_of(c, mark).ok_or_else(|| format!("no `{mark}` line"))?;
        phases.push((name.to_string(), (t - prev) * 1000.0));
        prev = t;
    }
    Ok(Sample {
        start_s: start,
        path_ms: (prev - start) * 1000.0,
        qemu_s: run.elapsed.as_secs_f64(),
        phases,
    })
}

/// The kernel alone: its DHCP (sent → answered) and its NFS mount (configured → root mounted),
/// as the phases; the path is the two together.
fn kernel_sample(run: &BootRun) -> Result<Sample, String> {
    let c = &run.console;
    let at = |mark: &str| time_of(c, mark).ok_or_else(|| format!("no `{mark}` line"));
    let sent = at("Sending DHCP requests")?;
    let configured = at("IP-Config: Complete")?;
    let mounted = at("VFS: Mounted root (nfs")?;
    Ok(Sample {
        start_s: sent,
        path_ms: (mounted - sent) * 1000.0,
        qemu_s: run.elapsed.as_secs_f64(),
        phases: vec![
            ("dhcp".into(), (configured - sent) * 1000.0),
            ("nfs mount".into(), (mounted - configured) * 1000.0),
        ],
    })
}

fn pi_init_sample(run: &BootRun) -> Result<Sample, String> {
    let c = &run.console;
    let start = time_of(c, "pi-init: start").ok_or("no `pi-init: start` line")?;
    let exec = time_of(c, "pi-init: exec").ok_or("no `pi-init: exec` line")?;
    let phases = pi_init_steps(c)
        .into_iter()
        .map(|(n, ms)| (n, ms as f64))
        .collect();
    Ok(Sample {
        start_s: start,
        path_ms: (exec - start) * 1000.0,
        qemu_s: run.elapsed.as_secs_f64(),
        phases,
    })
}

/// Boots `pi` once and adds the sample (or the reason it gave none) to `series`.
fn boot_into(
    lab: &Lab,
    pi: &VirtualPi,
    label: &str,
    read: fn(&BootRun) -> Result<Sample, String>,
    series: &mut Series,
) -> Result<(), String> {
    let run = lab.boot(pi, label)?;
    let reached = run.outcome == Outcome::Exited && GuestReport::find(&run.console).is_some();
    let sample = if reached {
        read(&run)
    } else {
        Err(format!("{:?}, the root's init did not report", run.outcome))
    };
    match sample {
        Ok(s) => {
            eprintln!(
                "bench: boot {label}: {:.0} ms init start -> exec",
                s.path_ms
            );
            series.samples.push(s);
        }
        Err(e) => {
            let why = format!("{label}: {e} (console {})", run.console_path.display());
            eprintln!("bench: boot {why}");
            series.failures.push(why);
        }
    }
    Ok(())
}

/// What the boot section runs.
pub struct Params<'a> {
    pub kernels: &'a [KernelKind],
    /// Boots of each flow per series.
    pub boots: usize,
    /// vCPUs of the virtual Pi, one series each.
    pub cpus: &'a [u32],
    /// pi-init's `pureboot.log=` (None: its default, info, as deployed).
    pub log: Option<&'a str>,
    /// pi-init's command line names the export too (as the baseline's does).
    pub pi_export: bool,
}

/// One series per kernel and vCPU count (a Pi has 4 cores, the tests' guests 1, and the
/// machine 2). A kernel that cannot boot fails its own tables, not the others'.
pub fn run(env: &'static TestEnv, p: &Params) -> (String, bool) {
    let lab = match lab(env) {
        Ok(lab) => lab,
        Err(e) => return (failed("1", "", &e), false),
    };
    let (mut out, mut ok) = (String::new(), true);
    for (k, &kind) in p.kernels.iter().enumerate() {
        let first = k * p.cpus.len() + 1;
        match on_kernel(env, &lab, kind, p, first) {
            Ok(text) => out += &text,
            Err(e) => {
                out += &failed(&format!("1.{first}"), &format!(" on {}", kind.title()), &e);
                ok = false;
            }
        }
    }
    (out, ok)
}

fn failed(number: &str, what: &str, e: &str) -> String {
    format!("## {number} Boot path{what}: FAILED\n\n```\n{e}\n```\n\n")
}

const PI_SERIAL: u32 = 0xbe01;
const BASELINE_SERIAL: u32 = 0xbe02;
/// Never registered: the kernel alone asks no controller.
const KERNEL_SERIAL: u32 = 0xbe03;

/// The lab both flows boot from: the tiny root and a node for each flow.
fn lab(env: &'static TestEnv) -> Result<Lab, String> {
    let lab = Lab::start("bench-boot", env, LabOptions::default())?;
    lab.import_tiny_root(TINY)?;
    for (s, host) in [(PI_SERIAL, "pi-bench"), (BASELINE_SERIAL, "pi-baseline")] {
        lab.add_node(&serial(s), diskless_node(host))?;
    }
    Ok(lab)
}

/// The series on one kernel, numbered from `1.<first>`.
fn on_kernel(
    env: &'static TestEnv,
    lab: &Lab,
    kind: KernelKind,
    p: &Params,
    first: usize,
) -> Result<String, String> {
    let kernel = env.kernel_of(kind)?;
    let pi_initrd = initramfs::pi_init_on(env, kernel)?;
    let base_initrd = initramfs::baseline_on(env, kernel)?;
    let modules = [modules_in(&base_initrd)?, modules_in(&pi_initrd)?];
    let (sp, sb) = (serial(PI_SERIAL), serial(BASELINE_SERIAL));
    let url = format!("http://{HOST_FROM_GUEST}:{PORT}");
    // pi-init at its default log level (info), as deployed, unless asked; the tests use debug.
    let mut pi = VirtualPi::new(&sp, &kernel.image, &pi_initrd)
        .arg(format!("pureboot.url={url}"))
        .timeout(Duration::from_secs(120));
    if let Some(level) = p.log {
        pi = pi.arg(format!("pureboot.log={level}"));
    }
    if p.pi_export {
        pi = pi
            .arg(format!("pureboot.nfs_server={HOST_FROM_GUEST}"))
            .arg(format!("pureboot.nfs_path={}", lab.export().display()));
    }
    // The baseline does the same work: modules, DHCP, NFSv4 mount, tmpfs overlay, callback.
    let base = VirtualPi::new(&sb, &kernel.image, &base_initrd)
        .arg(format!("pureboot.nfs_server={HOST_FROM_GUEST}"))
        .arg(format!("pureboot.nfs_path={}", lab.export().display()))
        .arg(format!("pureboot.base_image={TINY}"))
        .arg(format!(
            "pureboot.callback={url}/api/v1/nodes/{sb}/installed"
        ))
        .timeout(Duration::from_secs(120));
    // The kernel alone needs the NFS client built in: on Debian's kernel it is a module.
    let alone = (kind == KernelKind::Pi).then(|| {
        VirtualPi::new(&serial(KERNEL_SERIAL), &kernel.image, &base_initrd)
            .arg("rdinit=/none")
            .arg("root=/dev/nfs")
            .arg(format!(
                "nfsroot={HOST_FROM_GUEST}:{}/base/{TINY},vers=4.2",
                lab.export().display()
            ))
            .arg("ip=dhcp")
            .arg("ro")
            .timeout(Duration::from_secs(120))
    });
    let mut out = String::new();
    for (n, &cpus) in p.cpus.iter().enumerate() {
        let (pi, base) = (pi.clone().cpus(cpus), base.clone().cpus(cpus));
        let alone = alone.clone().map(|k| k.cpus(cpus));
        let run = Run {
            kernel,
            boots: p.boots,
            cpus,
            modules,
            number: first + n,
            pi_export: p.pi_export,
        };
        out += &series(lab, &pi, &base, alone.as_ref(), &run)?;
    }
    Ok(out)
}

/// What one series is: its kernel, boots per flow, vCPUs, and its table number.
struct Run<'a> {
    kernel: &'a Kernel,
    boots: usize,
    cpus: u32,
    /// Kernel modules in the baseline's and pi-init's initramfs.
    modules: [usize; 2],
    number: usize,
    /// pi-init's command line names the export (`--pi-export yes`).
    pi_export: bool,
}

/// `boots` boots each of `pi`, `base` and the kernel alone (when given), alternating.
fn series(
    lab: &Lab,
    pi: &VirtualPi,
    base: &VirtualPi,
    alone: Option<&VirtualPi>,
    run: &Run,
) -> Result<String, String> {
    let (mut b, mut p, mut k) = (Series::default(), Series::default(), Series::default());
    let tag = format!("{}-{}cpu", run.kernel.kind, run.cpus);
    for i in 0..run.boots {
        // Alternate which goes first so drift in the machine's load hits both alike.
        let (bl, pl) = (format!("baseline-{tag}-{i}"), format!("pi-init-{tag}-{i}"));
        if i % 2 == 0 {
            boot_into(lab, base, &bl, baseline_sample, &mut b)?;
            boot_into(lab, pi, &pl, pi_init_sample, &mut p)?;
        } else {
            boot_into(lab, pi, &pl, pi_init_sample, &mut p)?;
            boot_into(lab, base, &bl, baseline_sample, &mut b)?;
        }
        if let Some(alone) = alone {
            let label = format!("kernel-alone-{tag}-{i}");
            boot_into(lab, alone, &label, kernel_sample, &mut k)?;
        }
    }
    let mut text = report(run, &b, &p);
    if alone.is_some() {
        text += &floor_report(run, &b, &k);
    }
    Ok(text)
}

/// The kernel alone's table: its DHCP and NFS mount against the baseline's path.
fn floor_report(run: &Run, b: &Series, k: &Series) -> String {
    let base = median(&b.figures(|x| x.path_ms));
    let mut s = format!(
        "Reference: the kernel alone mounting the same root (`ip=dhcp root=/dev/nfs \
         nfsroot=<export>/base/tiny,vers=4.2`, no init in the initramfs: no user space, no \
         controller, no overlay), {} boots alternating with the above; its own printk lines.\n\n\
         | | median ms | min–max ms | / baseline's path |\n|---|---|---|---|\n",
        run.boots
    );
    let mut line = |what: &str, v: Vec<f64>| {
        let ratio = median(&v).zip(base).map(|(x, b)| x / b);
        s += &format!(
            "| {what} | {} | {} | {} |\n",
            cell(median(&v), 0),
            range(&v, 0),
            cell(ratio, 2)
        );
    };
    line(
        "**DHCP sent → root mounted** (`Sending DHCP requests` → `VFS: Mounted root`)",
        k.figures(|x| x.path_ms),
    );
    for (name, v) in k.phase_table() {
        line(&format!("  {name}"), v);
    }
    s += &format!(
        "\nboots that reached the root's init: {}/{}\n",
        k.samples.len(),
        run.boots
    );
    for f in &k.failures {
        s += &format!("- failed: {f}\n");
    }
    s + "\n"
}

/// The ≤ 0.5 target is judged where a Pi's kernel puts the NFS client: built in. On Debian's
/// its four modules are kernel time on the path whatever the init does.
fn target(kind: KernelKind, ratio: f64) -> String {
    match kind {
        KernelKind::Pi => format!(
            "\nTarget pi-init ≤ 0.5 × baseline: **{}** ({ratio:.2}).\n",
            if ratio <= 0.5 { "met" } else { "not met" },
        ),
        KernelKind::Debian => format!(
            "\npi-init / baseline: {ratio:.2} (the ≤ 0.5 target is judged on the Pi-like \
             kernel: here the NFS client loads as modules, whatever the init does).\n"
        ),
    }
}

fn row(what: &str, b: &[f64], p: &[f64], decimals: usize) -> String {
    let (mb, mp) = (median(b), median(p));
    let ratio = mb.zip(mp).map(|(b, p)| p / b);
    format!(
        "| {what} | {} ({}) | {} ({}) | {} |\n",
        cell(mb, decimals),
        range(b, decimals),
        cell(mp, decimals),
        range(p, decimals),
        cell(ratio, 2)
    )
}

fn report(run: &Run, b: &Series, p: &Series) -> String {
    let Run {
        kernel,
        boots,
        cpus,
        modules: [base_modules, pi_modules],
        number,
        pi_export,
    } = *run;
    let mut s = format!(
        "## 1.{number} Boot path on {} ({}; QEMU virt, TCG, {cpus} vCPU; {boots} boots each, \
         alternating; median (min–max))\n\n\
         {}| | busybox baseline | pi-init | pi-init / baseline |\n|---|---|---|---|\n",
        kernel.kind.title(),
        kernel.version,
        if pi_export {
            "pi-init's command line names the export too (`--pi-export yes`: \
             `pureboot.nfs_server=`, `pureboot.nfs_path=`, as the baseline's)\n\n"
        } else {
            ""
        },
    );
    s += &row(
        "**init start → exec of the root's init, ms**",
        &b.figures(|x| x.path_ms),
        &p.figures(|x| x.path_ms),
        0,
    );
    s += &row(
        "  of which outside module loading (path − modules), ms",
        &b.figures(Sample::outside_modules),
        &p.figures(Sample::outside_modules),
        0,
    );
    s += &row(
        "kernel start → init's first line, s",
        &b.figures(|x| x.start_s),
        &p.figures(|x| x.start_s),
        3,
    );
    s += &row(
        "QEMU start → power off, s",
        &b.figures(|x| x.qemu_s),
        &p.figures(|x| x.qemu_s),
        2,
    );
    s += &format!(
        "\nboots that reached the root: baseline {}/{boots}, pi-init {}/{boots}; kernel \
         modules in the initramfs: baseline {base_modules}, pi-init {pi_modules} (with its disk \
         list, loaded only for a disk filesystem)\n",
        b.samples.len(),
        p.samples.len()
    );
    for f in b.failures.iter().chain(&p.failures) {
        s += &format!("- failed: {f}\n");
    }
    if let (Some(mb), Some(mp)) = (
        median(&b.figures(|x| x.path_ms)),
        median(&p.figures(|x| x.path_ms)),
    ) {
        s += &target(kernel.kind, mp / mb);
    }
    for (title, series, note) in [
        (
            "pi-init steps",
            p,
            "(pi-init's own `step <name> done in <ms> ms`; steps may overlap: modules load \
             while the link comes up)",
        ),
        ("baseline phases", b, "(between the baseline's kmsg marks)"),
    ] {
        s += &format!("\n{title} {note}\n\n| step | median ms | min–max ms |\n|---|---|---|\n");
        for (name, v) in series.phase_table() {
            s += &format!("| {name} | {} | {} |\n", cell(median(&v), 0), range(&v, 0));
        }
    }
    s + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(console: &str) -> BootRun {
        BootRun {
            serial: "e2e0be01".into(),
            console: console.into(),
            console_path: "/dev/null".into(),
            outcome: Outcome::Exited,
            elapsed: Duration::from_millis(4500),
        }
    }

    #[test]
    fn baseline_phases_run_from_mark_to_mark() {
        let s = baseline_sample(&run_of(
            "[ 1.000] baseline: start\n[ 1.300] baseline: step modules done\n\
             [ 1.400] baseline: step dhcp done\n[ 1.700] baseline: step nfs done\n\
             [ 1.750] baseline: step overlay done\n[ 1.900] baseline: exec /sbin/init\n",
        ))
        .unwrap();
        assert_eq!(s.start_s, 1.0);
        assert!((s.path_ms - 900.0).abs() < 1e-6);
        let ms: Vec<i64> = s.phases.iter().map(|(_, m)| m.round() as i64).collect();
        assert_eq!(ms, [300, 100, 300, 50, 150]);
        assert!((s.outside_modules() - 600.0).abs() < 1e-6);
        assert!(baseline_sample(&run_of("[ 1.0] baseline: start\n")).is_err());
    }

    #[test]
    fn the_kernel_alone_is_timed_from_its_dhcp_to_its_root_mount() {
        let s = kernel_sample(&run_of(
            "[    0.419866] Sending DHCP requests ., OK\n\
             [    0.437752] IP-Config: Complete:\n\
             [    0.560618] VFS: Mounted root (nfs4 filesystem) readonly on device 0:13.\n",
        ))
        .unwrap();
        assert!((s.path_ms - 140.752).abs() < 1e-6, "{}", s.path_ms);
        let ms: Vec<i64> = s.phases.iter().map(|(_, m)| m.round() as i64).collect();
        assert_eq!(ms, [18, 123]);
        assert!(kernel_sample(&run_of("[ 0.4] Sending DHCP requests ., OK\n")).is_err());
    }

    #[test]
    fn pi_init_path_and_steps_come_from_its_lines() {
        let s = pi_init_sample(&run_of(
            "[ 2.000] pi-init: start\n[ 2.200] pi-init: step network done in 180 ms\n\
             [ 2.500] pi-init: exec /sbin/init\n",
        ))
        .unwrap();
        assert!((s.path_ms - 500.0).abs() < 1e-6);
        assert_eq!(s.phases, [("network".to_string(), 180.0)]);
        assert!(pi_init_sample(&run_of("[ 2.0] pi-init: start\n")).is_err());
    }

    fn series_of(paths_ms: &[f64]) -> Series {
        Series {
            samples: paths_ms
                .iter()
                .map(|&path_ms| Sample {
                    path_ms,
                    ..Default::default()
                })
                .collect(),
            failures: vec![],
        }
    }

    #[test]
    fn each_table_names_its_kernel_and_the_target_is_judged_on_the_pi_like_one() {
        let (b, p) = (series_of(&[1000.0, 1200.0]), series_of(&[400.0, 500.0]));
        for (kind, version, verdict) in [
            (
                KernelKind::Pi,
                "6.1.158-pureboot-pi",
                "Target pi-init ≤ 0.5 × baseline: **met** (0.40)",
            ),
            (
                KernelKind::Debian,
                "6.1.0-56-arm64",
                "pi-init / baseline: 0.40 (the ≤ 0.5 target is judged on the Pi-like kernel",
            ),
        ] {
            let kernel = Kernel {
                kind,
                dir: "/k".into(),
                image: "/k/vmlinuz".into(),
                version: version.into(),
                modules_root: "/k/root".into(),
            };
            let run = Run {
                kernel: &kernel,
                boots: 2,
                cpus: 1,
                modules: [1, 1],
                number: 3,
                pi_export: kind == KernelKind::Pi,
            };
            let text = report(&run, &b, &p);
            let named = text.contains("pi-init's command line names the export too");
            assert_eq!(named, run.pi_export, "{text}");
            let title = format!("## 1.3 Boot path on {} ({version}; QEMU virt", kind.title());
            assert!(text.starts_with(&title), "{text}");
            assert!(text.contains(verdict), "{text}");
            assert!(
                text.contains("initramfs: baseline 1, pi-init 1 (with"),
                "{text}"
            );
            assert_eq!(text.contains("Target"), kind == KernelKind::Pi, "{text}");
        }
        assert!(target(KernelKind::Pi, 0.51).contains("**not met** (0.51)"));
    }

    #[test]
    fn phase_table_keeps_first_seen_order() {
        let mut series = Series::default();
        for (a, b) in [(5.0, 1.0), (7.0, 3.0)] {
            series.samples.push(Sample {
                phases: vec![("zeta".into(), a), ("alpha".into(), b)],
                ..Default::default()
            });
        }
        let t = series.phase_table();
        assert_eq!(t[0], ("zeta".to_string(), vec![5.0, 7.0]));
        assert_eq!(t[1].0, "alpha");
    }
}
