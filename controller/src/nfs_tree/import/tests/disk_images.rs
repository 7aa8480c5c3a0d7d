//! Disk images (`*.img[.gz|.xz|.zst]`) built as Raspberry Pi OS lays them out, by
//! tests/disk-image.sh (sfdisk, mkfs.vfat, mcopy, mkfs.ext4, debugfs: nothing mounted), then
//! imported; and every bad image the import must refuse, each leaving nothing behind: no
//! half image under base/, nothing written outside, no mount (the readers are userspace:
//! the mount table is compared before and after).

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::super::format::ArchiveFormat;
use super::super::test_archives::compress;
use super::{fixture, Fixture};
use crate::nfs_tree::error::NfsTreeError;

const TOOLS: [&str; 5] = ["sfdisk", "mkfs.vfat", "mcopy", "mkfs.ext4", "debugfs"];

/// The tools, or a loud skip naming the missing one (tests/setup.sh installs them).
pub(crate) fn tools_present(test: &str) -> bool {
    let found = |t: &str| {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .any(|d| d.join(t).is_file())
    };
    match TOOLS.iter().find(|t| !found(t)) {
        Some(t) => {
            eprintln!("SKIPPED {test}: `{t}` not found (run `sudo tests/setup.sh`)");
            false
        }
        None => true,
    }
}

pub(crate) fn write(path: &Path, content: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Raspberry Pi OS's fstab (tests/disk-image.sh gives the image Pi OS's disk id and labels).
const FSTAB: &str = "proc            /proc           proc    defaults          0       0
PARTUUID=8a438930-01  /boot/firmware  vfat    defaults          0       2
PARTUUID=8a438930-02  /               ext4    defaults,noatime  0       1
LABEL=bootfs /mnt/b vfat defaults 0 0
";

/// A root and a boot partition's files, shaped like Raspberry Pi OS's.
fn sample(dir: &Path) -> (PathBuf, PathBuf) {
    let (root, boot) = (dir.join("root"), dir.join("boot"));
    write(
        &root.join("etc/os-release"),
        "PRETTY_NAME=\"test\"\n",
        0o644,
    );
    write(&root.join("etc/shadow"), "root:*:1::::::\n", 0o640);
    write(&root.join("etc/fstab"), FSTAB, 0o644);
    write(&root.join("lib/modules/6.1.0-test/modules.dep"), "", 0o644);
    write(&root.join("usr/bin/tool"), "#!/bin/sh\n", 0o755);
    symlink("usr/bin", root.join("bin")).unwrap();
    fs::create_dir_all(root.join("boot/firmware")).unwrap();
    fs::create_dir_all(root.join("tmp")).unwrap();
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    write(&boot.join("kernel8.img"), "kernel8 ", 0o644);
    write(&boot.join("config.txt"), "arm_64bit=1\n", 0o644);
    write(
        &boot.join("cmdline.txt"),
        "root=PARTUUID=8a438930-02 rootwait\n",
        0o644,
    );
    write(&boot.join("bcm2710-rpi-3-b.dtb"), "dtb", 0o644);
    write(&boot.join("overlays/vc4-kms-v3d.dtbo"), "overlay", 0o644);
    (root, boot)
}

/// The raw image tests/disk-image.sh builds from `root` and `boot`.
pub(crate) fn build(dir: &Path, root: &Path, boot: &Path, env: &[(&str, &str)]) -> Vec<u8> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/disk-image.sh");
    let out = dir.join("disk.img");
    let status = Command::new("bash")
        .arg(&script)
        .args([root, boot, &out])
        .envs(env.iter().copied())
        .status()
        .unwrap();
    assert!(status.success(), "{} failed", script.display());
    let bytes = fs::read(&out).unwrap();
    fs::remove_file(&out).unwrap();
    bytes
}

/// Byte offset of MBR partition `n` (1-based).
fn partition_start(img: &[u8], n: usize) -> usize {
    let e = 446 + 16 * (n - 1);
    u32::from_le_bytes(img[e + 8..e + 12].try_into().unwrap()) as usize * 512
}

fn mounts() -> String {
    fs::read_to_string("/proc/self/mountinfo").unwrap()
}

impl Fixture {
    /// The import fails, with an error whose text has `has`, and leaves nothing behind.
    fn assert_disk_refused(&self, image: &[u8], name: &str, has: &str) -> NfsTreeError {
        let before = mounts();
        let err = self.import(image, name).unwrap_err();
        assert!(
            err.to_string().contains(has),
            "{name}: expected {has:?} in: {err}"
        );
        self.assert_nothing_published(name);
        assert_eq!(mounts(), before, "{name}: the mount table changed");
        err
    }
}

#[test]
fn disk_images_become_the_root_with_the_boot_partition_in_boot_firmware() {
    let name = "disk_images_become_the_root_with_the_boot_partition_in_boot_firmware";
    if !tools_present(name) {
        return;
    }
    let fx = fixture();
    let (root, boot) = sample(fx.tmp.path());
    let raw = build(fx.tmp.path(), &root, &boot, &[]);
    let before = mounts();
    for format in [
        ArchiveFormat::Img,
        ArchiveFormat::ImgGzip,
        ArchiveFormat::ImgXz,
        ArchiveFormat::ImgZstd,
    ] {
        let image = format!("pios-{}", format.as_str().replace('.', "-"));
        let summary = fx.import(&compress(format, &raw), &image).unwrap();
        assert_eq!(summary.format, format);
        let base = fx.tree.base_path().join(&image);
        assert_eq!(
            fs::read_to_string(base.join("etc/os-release")).unwrap(),
            "PRETTY_NAME=\"test\"\n"
        );
        assert!(base.join("lib/modules/6.1.0-test/modules.dep").is_file());
        assert_eq!(
            fs::read_link(base.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        let mode = |p: &str| {
            fs::symlink_metadata(base.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("etc/shadow"), 0o640);
        // The image's own partitions leave fstab (no such device on a netbooted Pi).
        let fstab = fs::read_to_string(base.join("etc/fstab")).unwrap();
        let active: Vec<&str> = fstab.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(active.len(), 1, "{fstab}");
        assert!(active[0].starts_with("proc "), "{fstab}");
        assert!(fstab.contains("# PARTUUID=8a438930-02  /  "), "{fstab}");
        assert!(fstab.contains("# LABEL=bootfs "), "{fstab}");
        assert_eq!(mode("etc/fstab"), 0o644);
        assert!(!base.join("etc/.fstab.pureboot").exists());
        assert_eq!(mode("usr/bin/tool"), 0o755);
        assert_eq!(mode("tmp"), 0o1777);
        let fw = base.join("boot/firmware");
        assert_eq!(
            fs::read_to_string(fw.join("kernel8.img")).unwrap(),
            "kernel8 "
        );
        assert_eq!(
            fs::read_to_string(fw.join("cmdline.txt")).unwrap(),
            "root=PARTUUID=8a438930-02 rootwait\n"
        );
        assert_eq!(
            fs::read_to_string(fw.join("overlays/vc4-kms-v3d.dtbo")).unwrap(),
            "overlay"
        );
        assert_eq!(mode("boot/firmware/kernel8.img"), 0o644);
        assert_eq!(mode("boot/firmware/overlays"), 0o755);
        assert!(summary.entries >= 14, "{summary:?}");
        // Nothing else in base/ (the spooled image had no name).
        let names: Vec<_> = fs::read_dir(fx.tree.base_path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }
    assert_eq!(mounts(), before, "the import mounted something");
}

#[test]
fn bad_disk_images_are_refused_and_leave_nothing() {
    let name = "bad_disk_images_are_refused_and_leave_nothing";
    if !tools_present(name) {
        return;
    }
    let fx = fixture();
    let (root, boot) = sample(fx.tmp.path());
    let raw = build(fx.tmp.path(), &root, &boot, &[]);
    let root_at = partition_start(&raw, 2);

    // A truncated download: the compressed stream cut in half, and the raw image cut inside
    // its root partition.
    let xz = compress(ArchiveFormat::ImgXz, &raw);
    fx.assert_disk_refused(
        &xz[..xz.len() / 2],
        "cut-xz",
        "truncated or damaged download",
    );
    fx.assert_disk_refused(
        &raw[..raw.len() - (1 << 20)],
        "cut-raw",
        "past the end of the image",
    );

    // No partition table: a bare ext4 file system, and zeros.
    let bare = raw[root_at..].to_vec();
    fx.assert_disk_refused(&bare, "bare-ext4", "no partition table");
    fx.assert_disk_refused(&vec![0u8; 8192], "zeros", "no partition table");

    // No ext4 root: partition 2 wiped; then a LUKS header there.
    let mut wiped = raw.clone();
    wiped[root_at..root_at + 65536].fill(0);
    fx.assert_disk_refused(&wiped, "no-root", "no Linux root");
    let mut luks = wiped.clone();
    luks[root_at..root_at + 6].copy_from_slice(b"LUKS\xba\xbe");
    fx.assert_disk_refused(&luks, "luks", "LUKS-encrypted");

    // A root partition pointing past the end of the file.
    let mut past = raw.clone();
    let e = 446 + 16;
    past[e + 12..e + 16].copy_from_slice(&0x0100_0000u32.to_le_bytes());
    fx.assert_disk_refused(&past, "past-end", "partition 2 (MBR type 0x83");

    // Hostile roots. `boot` a symlink out of the image: the boot partition's files would
    // land outside through it.
    let hostile = fx.tmp.path().join("hostile");
    let (hroot, hboot) = sample(&hostile);
    fs::remove_dir_all(hroot.join("boot")).unwrap();
    symlink(
        format!("../../../..{}", fx.outside.display()),
        hroot.join("boot"),
    )
    .unwrap();
    let img = build(&hostile, &hroot, &hboot, &[]);
    let err = fx.assert_disk_refused(&img, "boot-symlink", "is a symlink");
    assert!(matches!(err, NfsTreeError::UnsafeEntry { .. }), "{err}");

    // A directory linked below itself (debugfs `ln`): a loop a tree walk would follow forever.
    let cmds = hostile.join("loop.debugfs");
    fs::write(&cmds, "ln /etc /etc/loop\n").unwrap();
    let img = build(
        &hostile,
        &root,
        &boot,
        &[("ROOT_DEBUGFS", cmds.to_str().unwrap())],
    );
    let err = fx.assert_disk_refused(&img, "dir-loop", "a directory linked below itself");
    assert!(matches!(err, NfsTreeError::UnsafeEntry { .. }), "{err}");
}
