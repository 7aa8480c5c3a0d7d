//! The Raspberry Pi OS path: a disk image laid out as Raspberry Pi OS ships it (MBR; a FAT
//! boot partition with Debian's arm64 kernel as kernel8.img, its device trees, the real
//! bootcode.bin/start*.elf/fixup*.dat of Debian's raspi-firmware, config.txt, cmdline.txt;
//! an ext4 root with the tiny busybox root and the kernel's whole /lib/modules/<version>),
//! compressed with xz, becomes a base image by one `image import disk.img.xz`, and one
//! `pureboot-image tftp --image` per node (no --kernel, no --modules-root) writes the folder
//! a virtual Pi boots: QEMU `virt` and `raspi3b` take the folder's kernel8.img, initramfs
//! and (raspi3b) device tree, and reach the root's init.
//!
//! Then the image's kernel changes version and is imported as a new image; the node, moved
//! to it, gets a folder whose kernel and initramfs modules are the new version's, and boots.
//! The second version is Debian's same kernel build with its release string (banner,
//! `uname -r`, module version magic) rewritten in the kernel and in every module, from
//! 6.1.0-57-arm64 to 6.1.0-99-arm64 (same length), the modules' broken signatures cut (they
//! load unsigned): it boots only if the initramfs carries the modules of the kernel it is
//! booted with (the kernel refuses a module whose version magic is another's), which is the
//! point; it is not a second kernel build.

use std::path::{Path, PathBuf};
use std::process::Command;

use pureboot_harness::controller::PORT;
use pureboot_harness::env::{TestEnv, RASPI_FIRMWARE_FILES};
use pureboot_harness::lab::{diskless_node, Lab, LabOptions};
use pureboot_harness::qemu::{Board, BootRun, VirtualPi, HOST_FROM_GUEST};
use pureboot_harness::{guest_root, pi_init_env, process, require, serial};

const TOOLS: [&str; 7] = [
    "sfdisk",
    "mkfs.vfat",
    "mcopy",
    "mkfs.ext4",
    "xz",
    "fdtput",
    "sed",
];

/// Where a version's ingredients are: the kernel image and its modules directory.
struct KernelFiles {
    image: PathBuf,
    modules: PathBuf,
    version: String,
}

/// The same kernel with its release rewritten (same length) in the image and every module.
fn renamed_kernel(dir: &Path, from: &KernelFiles, version: &str) -> KernelFiles {
    assert_eq!(
        from.version.len(),
        version.len(),
        "the rewrite keeps lengths"
    );
    let modules = dir.join(version);
    let image = dir.join(format!("vmlinuz-{version}"));
    let sed = format!("s/{}/{version}/g", from.version.replace('.', "\\."));
    let script = format!(
        "set -e; cp -a \"$1\" \"$2\"; cp \"$3\" \"$4\"; sed -i '{sed}' \"$4\"; \
         grep -rlF '{old}' \"$2\" | xargs -r sed -i '{sed}'",
        old = from.version
    );
    process::run(Command::new("sh").args(["-c", &script, "sh"]).args([
        &from.modules,
        &modules,
        &from.image,
        &image,
    ]))
    .unwrap();
    // The rewrite broke the modules' appended signatures, which the kernel rejects
    // (EKEYREJECTED); unsigned, they load (tainting the kernel), as a locally built one's do.
    let mut stack = vec![modules.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "ko") {
                strip_signature(&path);
            }
        }
    }
    KernelFiles {
        image,
        modules,
        version: version.into(),
    }
}

/// Cuts a module's appended signature: `<module><signature><struct module_signature, 12
/// bytes, the signature's length big-endian at its end><"~Module signature appended~\n">`.
fn strip_signature(ko: &Path) {
    use std::io::{Read, Seek, SeekFrom};
    const MAGIC: &[u8] = b"~Module signature appended~\n";
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(ko)
        .unwrap();
    let len = f.metadata().unwrap().len();
    let tail = (MAGIC.len() + 12) as u64;
    if len < tail {
        return;
    }
    let mut end = vec![0u8; tail as usize];
    f.seek(SeekFrom::Start(len - tail)).unwrap();
    f.read_exact(&mut end).unwrap();
    if &end[12..] != MAGIC {
        return;
    }
    let sig = u32::from_be_bytes(end[8..12].try_into().unwrap()) as u64;
    f.set_len(len - tail - sig).unwrap();
}

/// How the disk image is shipped.
#[derive(Clone, Copy)]
enum Compressed {
    Xz,
    Zstd,
}

/// The disk image for `kernel`, compressed: returns its path.
fn disk_image(
    env: &TestEnv,
    dir: &Path,
    firmware: &Path,
    kernel: &KernelFiles,
    how: Compressed,
) -> PathBuf {
    let tag = &kernel.version;
    let root = dir.join(format!("root-{tag}"));
    guest_root::build_tiny_root(&env.busybox, &root).unwrap();
    std::fs::create_dir_all(root.join("lib/modules")).unwrap();
    std::fs::create_dir_all(root.join("boot/firmware")).unwrap();
    process::run(
        Command::new("cp")
            .arg("-a")
            .arg(&kernel.modules)
            .arg(root.join("lib/modules").join(tag)),
    )
    .unwrap();

    let boot = dir.join(format!("boot-{tag}"));
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::copy(&kernel.image, boot.join("kernel8.img")).unwrap();
    let lib = env.kernel().modules_root.join("usr/lib");
    let dtbs = std::fs::read_dir(&lib)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("broadcom"))
        .find(|p| p.is_dir())
        .expect("Debian's kernel package ships broadcom/*.dtb");
    for e in std::fs::read_dir(&dtbs).unwrap().flatten() {
        std::fs::copy(e.path(), boot.join(e.file_name())).unwrap();
    }
    for name in RASPI_FIRMWARE_FILES {
        std::fs::copy(firmware.join(name), boot.join(name)).unwrap();
    }
    std::fs::write(boot.join("config.txt"), "arm_64bit=1\nenable_uart=1\n").unwrap();
    std::fs::write(
        boot.join("cmdline.txt"),
        "console=serial0,115200 console=tty1 root=PARTUUID=8a438930-02 rootfstype=ext4 rootwait\n",
    )
    .unwrap();

    let img = dir.join(format!("disk-{tag}.img"));
    process::run(
        Command::new("bash")
            .arg(env.repo.join("tests/disk-image.sh"))
            .args([&root, &boot, &img]),
    )
    .unwrap();
    let (tool, args, ext) = match how {
        Compressed::Xz => ("xz", ["-T2", "-1", "-f"], "xz"),
        Compressed::Zstd => ("zstd", ["-T2", "-3", "--rm"], "zst"),
    };
    process::run(Command::new(tool).args(args).arg("-q").arg(&img)).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&boot).unwrap();
    dir.join(format!("disk-{tag}.img.{ext}"))
}

/// `pureboot-image tftp --image` for one node: nothing but the image, the model and how
/// the virtual board differs from a Pi 3 (`extra`).
fn tftp(lab: &Lab, image: &str, serial: &str, extra: &[&str]) -> PathBuf {
    let out = lab.dir.join("tftp");
    process::run(
        Command::new(lab.env.binary("pureboot-image").unwrap())
            .args(["tftp", "--serial", serial, "--model", "pi3", "--image"])
            .arg(lab.export().join("base").join(image))
            .arg("--pi-init")
            .arg(lab.env.binary("pi-init").unwrap())
            .arg("--controller-url")
            .arg(format!("http://{HOST_FROM_GUEST}:{PORT}"))
            .args(extra)
            .arg("-o")
            .arg(&out),
    )
    .unwrap_or_else(|e| panic!("pureboot-image tftp --image {image}: {e}"));
    out.join(serial)
}

/// A virtual Pi booting what `folder` holds: config.txt's kernel and initramfs, and the
/// `pureboot.*` keys of its cmdline.txt (the consoles are the board's own).
fn pi_from_folder(folder: &Path, serial: &str) -> VirtualPi {
    let config = std::fs::read_to_string(folder.join("config.txt")).unwrap();
    let value = |key: &str| {
        config
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {config}"))
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let kernel = folder.join(value("kernel="));
    let initramfs = folder.join(value("initramfs "));
    let cmdline = std::fs::read_to_string(folder.join("cmdline.txt")).unwrap();
    let mut pi = VirtualPi::new(serial, &kernel, &initramfs).arg("pureboot.log=debug");
    for word in cmdline
        .split_whitespace()
        .filter(|w| w.starts_with("pureboot."))
    {
        pi = pi.arg(word);
    }
    pi
}

/// The folder's own Pi 3B device tree with `/serial-number` set as the firmware sets it.
fn raspi3b(folder: &Path, serial: &str) -> VirtualPi {
    let dtb = folder.join(format!("qemu-{serial}.dtb"));
    std::fs::copy(folder.join("bcm2837-rpi-3-b.dtb"), &dtb).unwrap();
    process::run(Command::new("fdtput").args(["-t", "s"]).arg(&dtb).args([
        "/",
        "serial-number",
        &format!("00000000{serial}"),
    ]))
    .unwrap();
    pi_from_folder(folder, serial)
        .board(Board::Raspi3b { dtb })
        .timeout(std::time::Duration::from_secs(240))
}

fn booted(lab: &Lab, run: &BootRun, hostname: &str, version: &str) {
    let report = lab.expect_report(run);
    lab.check(
        run.console.contains(&format!("Linux version {version} ")),
        &format!("the folder's kernel is Linux {version}"),
        run,
    );
    lab.check(
        report.get("hostname") == hostname && report.get("root_fs") == "overlay",
        "the node booted the imported image's root to its init",
        run,
    );
    lab.check(
        !run.console.contains("version magic") && !run.console.contains("disagrees about"),
        "every module pi-init loaded is the booted kernel's",
        run,
    );
}

#[test]
fn raspberry_pi_os_disk_image_boots_and_its_kernel_follows_the_image() {
    let name = "disk-image";
    let env = pi_init_env!(name);
    let firmware = require!(name, env.raspi_firmware());
    for tool in TOOLS {
        require!(
            name,
            pureboot_harness::host::locate(tool)
                .map(drop)
                .ok_or(format!("`{tool}` not found: run `sudo tests/setup.sh`"))
        );
    }
    let lab = Lab::start(name, env, LabOptions::default())
        .unwrap_or_else(|e| panic!("{name}: starting the lab: {e}"));
    let v1 = KernelFiles {
        image: env.kernel().image.clone(),
        modules: env
            .kernel()
            .modules_root
            .join("lib/modules")
            .join(&env.kernel().version),
        version: env.kernel().version.clone(),
    };
    let started = std::time::Instant::now();
    let disk = disk_image(env, lab.dir.path(), &firmware, &v1, Compressed::Xz);
    println!(
        "{name}: {} ({} MB) built in {:.0} s",
        disk.display(),
        std::fs::metadata(&disk).unwrap().len() / 1_000_000,
        started.elapsed().as_secs_f64()
    );
    let started = std::time::Instant::now();
    lab.controller()
        .import_image(&disk, "raspios")
        .unwrap_or_else(|e| panic!("{name}: image import {}: {e}", disk.display()));
    println!(
        "{name}: imported in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let (virt, pi3) = (serial(0x25), serial(0x26));
    for (s, host) in [(&virt, "disk-virt"), (&pi3, "disk-pi3")] {
        lab.add_node(
            s,
            pureboot_harness::controller::NodeSpec {
                base_image: Some("raspios".into()),
                ..diskless_node(host)
            },
        )
        .unwrap();
    }
    let virt_folder = tftp(&lab, "raspios", &virt, &["--preset", "qemu-virt"]);
    let pi3_folder = tftp(&lab, "raspios", &pi3, &["--module", "cdc_ether"]);
    assert_eq!(
        std::fs::read(virt_folder.join("kernel8.img")).unwrap(),
        std::fs::read(&v1.image).unwrap(),
        "the folder's kernel is the image's kernel8.img"
    );
    assert_eq!(
        std::fs::read(pi3_folder.join("start.elf")).unwrap(),
        std::fs::read(firmware.join("start.elf")).unwrap(),
        "the folder's start.elf is the image's (raspi-firmware's)"
    );
    let runs = lab
        .boot_together(&[
            pi_from_folder(&virt_folder, &virt),
            raspi3b(&pi3_folder, &pi3),
        ])
        .unwrap();
    booted(&lab, &runs[0], "disk-virt", &v1.version);
    booted(&lab, &runs[1], "disk-pi3", &v1.version);
    lab.check(
        runs[1].console.contains("register 'cdc_ether'"),
        "raspi3b's NIC driver came from the image's modules",
        &runs[1],
    );

    // The image's kernel changes version: a new image; the node moves to it.
    let v2_version = {
        let (head, rest) = v1.version.split_once('-').unwrap();
        let (abi, tail) = rest.split_once('-').unwrap();
        let nines = "9".repeat(abi.len());
        let abi = if abi == nines {
            "8".repeat(abi.len())
        } else {
            nines
        };
        format!("{head}-{abi}-{tail}")
    };
    let v2 = renamed_kernel(lab.dir.path(), &v1, &v2_version);
    // zstd this time (a quicker build; the import tells the format by content).
    let disk = disk_image(env, lab.dir.path(), &firmware, &v2, Compressed::Zstd);
    lab.controller()
        .import_image(&disk, "raspios-next")
        .unwrap_or_else(|e| panic!("{name}: image import {}: {e}", disk.display()));
    lab.controller().cli(&["node", "rm", &virt]).unwrap();
    lab.add_node(
        &virt,
        pureboot_harness::controller::NodeSpec {
            base_image: Some("raspios-next".into()),
            ..diskless_node("disk-virt")
        },
    )
    .unwrap();
    let folder = tftp(&lab, "raspios-next", &virt, &["--preset", "qemu-virt"]);
    assert_eq!(folder, virt_folder);
    assert_eq!(
        std::fs::read(folder.join("kernel8.img")).unwrap(),
        std::fs::read(&v2.image).unwrap(),
        "the node's folder now carries the new image's kernel"
    );
    let listing = process::run(
        Command::new("sh")
            .args(["-c", "gzip -dc \"$1\" | cpio -t --quiet", "sh"])
            .arg(folder.join("initramfs.img")),
    )
    .unwrap();
    let has = |version: &str| listing.contains(&format!("lib/modules/{version}/"));
    assert!(
        has(&v2_version) && !has(&v1.version),
        "the initramfs carries the new version's modules only:\n{listing}"
    );
    let run = lab.boot(&pi_from_folder(&folder, &virt), "next").unwrap();
    booted(&lab, &run, "disk-virt", &v2_version);
    println!(
        "{name}: virt and raspi3b booted Linux {} from the imported disk image; virt then Linux {v2_version} from the next one",
        v1.version
    );
}
