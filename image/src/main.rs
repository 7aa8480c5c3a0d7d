//! `pureboot-image initramfs | modules | tftp`: command line in, files out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use pureboot_contract::ids::Serial;
use pureboot_image::codec::Compression;
use pureboot_image::initramfs::{self, Extra, Inputs};
use pureboot_image::kmod::resolve::{LoadPlan, Request};
use pureboot_image::kmod::{self, ModuleDb};
use pureboot_image::presets;
use pureboot_image::tftp::model::Model;
use pureboot_image::tftp::{self, PerModel, Target};

#[derive(Parser)]
#[command(
    name = "pureboot-image",
    version,
    about = "Builds the pureboot initramfs and Pi TFTP folders"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the initramfs: pi-init as /init, kernel modules and their load list.
    Initramfs(InitramfsArgs),
    /// Print the module lists and alias table a build would write, without building.
    Modules(ModuleArgs),
    /// Write a Pi netboot folder: <out>/<serial>/ or, with --discovery, <out>/ itself.
    Tftp(TftpArgs),
    /// Write a dnsmasq configuration: proxy DHCP (option 43 "Raspberry Pi Boot") beside the
    /// site's DHCP server, and TFTP of the root `tftp -o` wrote.
    Dnsmasq(DnsmasqArgs),
}

#[derive(Args)]
struct DnsmasqArgs {
    /// The TFTP root (what `pureboot-image tftp -o` wrote), absolute.
    #[arg(long)]
    tftp_root: PathBuf,
    /// The Pis' network address, e.g. 192.168.1.0 (the proxy range).
    #[arg(long)]
    subnet: std::net::Ipv4Addr,
    /// Answer only on this interface.
    #[arg(long)]
    interface: Option<String>,
    /// Write here (e.g. /etc/dnsmasq.d/pureboot.conf) instead of standard output.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct ModuleArgs {
    /// Directory holding lib/modules/<kver> (a root tree, or an unpacked kernel package).
    #[arg(long)]
    modules_root: PathBuf,
    /// Kernel version; optional when lib/modules holds exactly one.
    #[arg(long)]
    kver: Option<String>,
    /// Named module set, loaded first (NIC driver first).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(presets::names()))]
    preset: Option<String>,
    /// Module name or alias, optionally with parameters ("virtio_net napi_tx=1"); repeatable.
    #[arg(long = "module", value_name = "NAME")]
    modules: Vec<String>,
    /// Like --module, but for the disk list pi-init loads only when a boot needs a disk
    /// filesystem (the image overlay, a local root); repeatable.
    #[arg(long = "disk-module", value_name = "NAME")]
    disk_modules: Vec<String>,
    /// Like --module, but loaded only when a device present asks for it by modalias (a NIC
    /// driver for several boards, each loaded on the board that has the device); repeatable.
    #[arg(long = "device-module", value_name = "NAME")]
    device_modules: Vec<String>,
}

#[derive(Args)]
struct InitramfsArgs {
    #[command(flatten)]
    modules: ModuleArgs,
    /// The pi-init binary (static aarch64), installed as /init. Default: the one the
    /// pureboot-image package installs, lib/pureboot/pi-init beside this program's bin/
    /// (/usr/lib/pureboot/pi-init), else /usr/lib/pureboot/pi-init.
    #[arg(long)]
    pi_init: Option<PathBuf>,
    /// Initramfs compression; the kernel needs the matching CONFIG_RD_GZIP / CONFIG_RD_ZSTD.
    #[arg(long, value_enum, default_value = "gzip")]
    compress: Compression,
    /// Extra file, SRC:DEST (DEST inside the initramfs); repeatable.
    #[arg(long = "extra", value_name = "SRC:DEST")]
    extras: Vec<Extra>,
    /// Static busybox, installed as /bin/busybox with /bin/sh (for the `shell` policy).
    #[arg(long)]
    busybox: Option<PathBuf>,
    /// The initramfs file to write.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
}

#[derive(Args)]
struct TftpArgs {
    /// The Pi's 8-hex serial (its TFTP folder name).
    #[arg(
        long,
        required_unless_present = "discovery",
        conflicts_with = "discovery"
    )]
    serial: Option<Serial>,
    /// Write the shared folder unknown Pis fall back to (the TFTP root).
    #[arg(long)]
    discovery: bool,
    /// Pi model: pi3, pi4 or pi5; for --discovery a comma-separated list.
    #[arg(long, value_parser = tftp::model::parse, value_delimiter = ',', required = true)]
    model: Vec<Model>,
    /// A base image imported from a disk image (`base/<name>` on the export): each model's
    /// kernel, the device trees, overlays and firmware from its boot/firmware/, and an
    /// initramfs built from its lib/modules for that kernel's version, so they always match.
    /// --kernel, --initramfs and --firmware-dir override a part.
    #[arg(long, value_name = "DIR")]
    image: Option<PathBuf>,
    /// Kernel image, served as kernel8.img; `MODEL=PATH` gives one model its own (e.g.
    /// `pi5=kernel_2712.img` in a discovery folder); repeatable.
    #[arg(long, value_name = "[MODEL=]PATH", required_unless_present = "image")]
    kernel: Vec<PerModel>,
    /// Initramfs, served as initramfs.img; `MODEL=PATH` gives one model its own (each
    /// model's preset in a discovery folder); repeatable.
    #[arg(long, value_name = "[MODEL=]PATH", required_unless_present = "image")]
    initramfs: Vec<PerModel>,
    /// Raspberry Pi firmware files (start*.elf, fixup*.dat, bootcode.bin, the boards' *.dtb,
    /// overlays/); device trees may also sit in its broadcom/ (Debian's layout).
    #[arg(long, required_unless_present = "image")]
    firmware_dir: Option<PathBuf>,
    /// With --image: the initramfs preset for every model instead of each model's own
    /// (rpi3, rpi4, rpi5).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(presets::names()))]
    preset: Option<String>,
    /// With --image: one more module in the initramfs (e.g. a USB NIC driver); repeatable.
    #[arg(long = "module", value_name = "NAME")]
    modules: Vec<String>,
    /// With --image: the pi-init binary (default: as for `initramfs`).
    #[arg(long)]
    pi_init: Option<PathBuf>,
    /// With --image: static busybox in the initramfs (for the `shell` failure policy).
    #[arg(long)]
    busybox: Option<PathBuf>,
    /// Controller base URL as the Pi reaches it (pureboot.url=); several controllers of one
    /// registry comma-separated (pi-init asks them in turn).
    #[arg(long)]
    controller_url: String,
    /// More kernel parameters, space-separated (e.g. "pureboot.log=debug pureboot.overlay=image").
    #[arg(long)]
    cmdline_extra: Option<String>,
    /// Kernel console(s); repeatable.
    #[arg(long = "console", default_values = ["serial0,115200", "tty1"])]
    consoles: Vec<String>,
    /// Pin this device tree (config.txt `device_tree=`). Without it the folder holds every
    /// board tree of the model and the firmware picks the board's own.
    #[arg(long = "device-tree", alias = "dtb", value_name = "FILE.dtb")]
    device_tree: Option<String>,
    /// TFTP root.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Initramfs(args) => build_initramfs(&args),
        Command::Modules(args) => print_modules(&args),
        Command::Tftp(args) => write_tftp(args),
        Command::Dnsmasq(args) => write_dnsmasq(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pureboot-image: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The module tree and its resolved plans.
struct Resolution {
    db: ModuleDb,
    start: LoadPlan,
    device: LoadPlan,
    disk: LoadPlan,
}

impl Resolution {
    fn plans(&self) -> initramfs::Plans<'_> {
        initramfs::Plans {
            db: &self.db,
            start: &self.start,
            device: &self.device,
            disk: &self.disk,
        }
    }
}

/// The module tree and the resolved plans (at start; by device; disk), notes (built-in, not
/// found) to stderr. A module two lists need is loaded at start, else by device.
fn resolve_modules(args: &ModuleArgs) -> Result<Resolution> {
    let kver = match &args.kver {
        Some(kver) => kver.clone(),
        None => kmod::detect_kver(&args.modules_root)?,
    };
    let db = ModuleDb::load(&args.modules_root, &kver)?;
    let (mut requests, mut disk_requests) = (Vec::new(), Vec::new());
    if let Some(name) = &args.preset {
        let preset = presets::find(name).context("unknown preset")?;
        let selection = preset.select(&db)?;
        if !selection.not_found.is_empty() {
            eprintln!(
                "note: preset {name}: not in this kernel: {}",
                selection.not_found.join(", ")
            );
        }
        requests.extend(selection.requests);
        disk_requests.extend(selection.disk_requests);
    }
    requests.extend(args.modules.iter().map(|m| Request::parse(m)));
    disk_requests.extend(args.disk_modules.iter().map(|m| Request::parse(m)));
    let device_requests: Vec<Request> = args
        .device_modules
        .iter()
        .map(|m| Request::parse(m))
        .collect();
    let start = db.resolve(&requests)?;
    let mut device = db.resolve(&device_requests)?;
    device
        .modules
        .retain(|d| !start.modules.iter().any(|m| m.name == d.name));
    let mut disk = db.resolve(&disk_requests)?;
    disk.modules.retain(|d| {
        !start
            .modules
            .iter()
            .chain(&device.modules)
            .any(|m| m.name == d.name)
    });
    let builtin: Vec<&str> = start
        .builtin
        .iter()
        .chain(&device.builtin)
        .chain(&disk.builtin)
        .map(String::as_str)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !builtin.is_empty() {
        eprintln!(
            "note: built into the kernel (nothing to load): {}",
            builtin.join(", ")
        );
    }
    for missing in start
        .missing_softdeps
        .iter()
        .chain(&device.missing_softdeps)
        .chain(&disk.missing_softdeps)
    {
        eprintln!("warning: soft dependency not found, skipped as modprobe would: {missing}");
    }
    Ok(Resolution {
        db,
        start,
        device,
        disk,
    })
}

fn print_modules(args: &ModuleArgs) -> Result<()> {
    let resolved = resolve_modules(args)?;
    let plans = resolved.plans();
    let lists = plans.lists(&initramfs::sizes(&plans.files()?))?;
    for (path, text) in [
        (initramfs::LOAD_LIST, lists.modules),
        (initramfs::DISK_LOAD_LIST, lists.disk),
        (initramfs::ALIAS_TABLE, lists.aliases),
    ] {
        println!("## /{path}");
        print!("{text}");
    }
    Ok(())
}

/// Where the pureboot-image package installs pi-init.
const INSTALLED_PI_INIT: &str = "/usr/lib/pureboot/pi-init";

/// Where to look for pi-init without `--pi-init`: `<prefix>/lib/pureboot/pi-init` for this
/// program in `<prefix>/bin` (a package unpacked elsewhere, a /usr/local install), then the
/// package's own path.
fn pi_init_candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    let prefix = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()));
    if let Some(prefix) = prefix {
        candidates.push(prefix.join("lib/pureboot/pi-init"));
    }
    let installed = PathBuf::from(INSTALLED_PI_INIT);
    if !candidates.contains(&installed) {
        candidates.push(installed);
    }
    candidates
}

/// The first candidate that is a file, or an error naming every place looked in.
fn find_pi_init(candidates: &[PathBuf]) -> Result<PathBuf> {
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    bail!(
        "no --pi-init given and no installed pi-init found (looked in {}): install the \
         pureboot-image package, or build it with `cargo build --release -p pi-init --target \
         aarch64-unknown-linux-musl` and pass --pi-init \
         target/aarch64-unknown-linux-musl/release/pi-init",
        looked.join(", ")
    )
}

/// `--pi-init` as given, else the installed one (said on stderr).
fn pi_init_path(given: Option<&Path>) -> Result<PathBuf> {
    match given {
        Some(path) => Ok(path.to_path_buf()),
        None => {
            let found = find_pi_init(&pi_init_candidates())?;
            eprintln!("note: pi-init: {}", found.display());
            Ok(found)
        }
    }
}

/// The initramfs archive and the module resolution it carries.
fn initramfs_image(
    pi_init: &Path,
    modules: &ModuleArgs,
    extras: &[Extra],
    busybox: Option<&Path>,
    compress: Compression,
) -> Result<(initramfs::Built, Resolution)> {
    let resolved = resolve_modules(modules)?;
    let mtime = source_date_epoch()?;
    let entries = initramfs::assemble(&Inputs {
        pi_init,
        plans: resolved.plans(),
        extras,
        busybox,
    })?;
    Ok((initramfs::build(&entries, mtime, compress)?, resolved))
}

fn build_initramfs(args: &InitramfsArgs) -> Result<()> {
    let pi_init = pi_init_path(args.pi_init.as_deref())?;
    let (built, resolved) = initramfs_image(
        &pi_init,
        &args.modules,
        &args.extras,
        args.busybox.as_deref(),
        args.compress,
    )?;
    write_atomically(&args.output, &built.bytes)?;
    let by_device = match resolved.device.modules.len() {
        0 => String::new(),
        n => format!(" (+{n} loaded by device)"),
    };
    println!(
        "{}: {} entries ({} files), {} modules for {}{by_device} (+{} on the disk list), {} uncompressed, {} {}",
        args.output.display(),
        built.entries,
        built.files,
        resolved.start.modules.len(),
        resolved.db.kver,
        resolved.disk.modules.len(),
        size(built.uncompressed),
        size(built.bytes.len() as u64),
        args.compress.name(),
    );
    Ok(())
}

/// With `--image`: the kernels and initramfs images the folder takes from the image (those
/// not given on the command line), the firmware folder, and the scratch directory holding
/// the built initramfs images (under the output, so they are hard-linked into place).
struct FromImage {
    kernel: Vec<PerModel>,
    initramfs: Vec<PerModel>,
    firmware_dir: PathBuf,
    scratch: Option<PathBuf>,
}

fn from_image(image: &Path, models: &[Model], args: &TftpArgs) -> Result<FromImage> {
    let firmware_dir = match &args.firmware_dir {
        Some(dir) => dir.clone(),
        None => tftp::from_image::boot_dir(image)?,
    };
    let mut out = FromImage {
        kernel: args.kernel.clone(),
        initramfs: args.initramfs.clone(),
        firmware_dir,
        scratch: None,
    };
    if !args.kernel.is_empty() && !args.initramfs.is_empty() {
        return Ok(out);
    }
    let kernels = models
        .iter()
        .map(|m| Ok((*m, tftp::from_image::kernel_for(image, *m)?)))
        .collect::<Result<Vec<_>>>()?;
    // One file for every model where they share it: the folder keeps the plain names.
    let shared = |m: Model| (models.len() > 1).then_some(m);
    if args.kernel.is_empty() {
        let same = kernels.iter().all(|(_, k)| k.path == kernels[0].1.path);
        for (m, k) in &kernels {
            eprintln!(
                "note: {}: kernel {} (Linux {})",
                m.name(),
                k.path.display(),
                k.version
            );
            out.kernel.push(PerModel {
                model: if same { None } else { Some(*m) },
                path: k.path.clone(),
            });
            if same {
                break;
            }
        }
    }
    if args.initramfs.is_empty() {
        let scratch = args
            .output
            .join(format!(".pureboot-initramfs-{}", std::process::id()));
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("creating {}", scratch.display()))?;
        out.scratch = Some(scratch.clone());
        let pi_init = pi_init_path(args.pi_init.as_deref())?;
        for (m, k) in &kernels {
            let preset = args
                .preset
                .clone()
                .unwrap_or_else(|| m.preset().to_string());
            let modules = ModuleArgs {
                modules_root: image.to_path_buf(),
                kver: Some(k.version.clone()),
                preset: Some(preset.clone()),
                modules: args.modules.clone(),
                disk_modules: Vec::new(),
                device_modules: Vec::new(),
            };
            let (built, resolved) = initramfs_image(
                &pi_init,
                &modules,
                &[],
                args.busybox.as_deref(),
                Compression::Gzip,
            )?;
            let path = scratch.join(format!("initramfs-{}.img", m.name()));
            write_atomically(&path, &built.bytes)?;
            eprintln!(
                "note: {}: initramfs from {} (preset {preset}, {} modules), {}",
                m.name(),
                image.join("lib/modules").join(&k.version).display(),
                resolved.start.modules.len(),
                size(built.bytes.len() as u64)
            );
            out.initramfs.push(PerModel {
                model: shared(*m),
                path,
            });
        }
    }
    Ok(out)
}

fn write_tftp(args: TftpArgs) -> Result<()> {
    let target = match args.serial.clone() {
        Some(serial) => {
            if args.model.len() != 1 {
                bail!("a node folder is for one --model; several are for --discovery");
            }
            Target::Node(serial)
        }
        None => Target::Discovery,
    };
    let mut models = args.model.clone();
    models.sort();
    models.dedup();
    let parts = match &args.image {
        Some(image) => from_image(image, &models, &args)?,
        None => FromImage {
            kernel: args.kernel.clone(),
            initramfs: args.initramfs.clone(),
            firmware_dir: args.firmware_dir.clone().context("no --firmware-dir")?,
            scratch: None,
        },
    };
    let written = write_folder(&args, target, models, &parts);
    if let Some(scratch) = &parts.scratch {
        if let Err(e) = std::fs::remove_dir_all(scratch) {
            eprintln!("warning: removing {}: {e}", scratch.display());
        }
    }
    written
}

fn write_folder(
    args: &TftpArgs,
    target: Target,
    models: Vec<Model>,
    parts: &FromImage,
) -> Result<()> {
    let spec = tftp::Spec {
        target,
        models,
        kernel: parts.kernel.clone(),
        initramfs: parts.initramfs.clone(),
        firmware_dir: parts.firmware_dir.clone(),
        controller_url: args.controller_url.clone(),
        consoles: args.consoles.clone(),
        cmdline_extra: args
            .cmdline_extra
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        device_tree: args.device_tree.clone(),
    };
    let plan = tftp::plan(&spec)?;
    for note in &plan.notes {
        eprintln!("note: {note}");
    }
    // A node's folder is swapped in whole; the discovery folder is the TFTP root itself.
    let written = match &spec.target {
        Target::Node(serial) => {
            tftp::apply_folder(&args.output, Path::new(&serial.to_string()), &plan.files)?
        }
        Target::Discovery => tftp::apply(&args.output, &plan.files)?,
    };
    for (path, how) in written {
        println!("{:?}\t{}", how, args.output.join(path).display());
    }
    Ok(())
}

fn write_dnsmasq(args: &DnsmasqArgs) -> Result<()> {
    let text = pureboot_image::dnsmasq::render(&pureboot_image::dnsmasq::Settings {
        tftp_root: args.tftp_root.clone(),
        subnet: args.subnet,
        interface: args.interface.clone(),
    })?;
    match &args.output {
        Some(path) => write_atomically(path, text.as_bytes()),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// Reproducible builds: every mtime is SOURCE_DATE_EPOCH, or 0 when unset.
fn source_date_epoch() -> Result<u32> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Err(_) => Ok(0),
        Ok(text) => text.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH={text:?}: expected seconds since 1970 (u32)")
        }),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

fn size(bytes: u64) -> String {
    format!("{:.1} MiB ({bytes} B)", bytes as f64 / (1024.0 * 1024.0))
}
