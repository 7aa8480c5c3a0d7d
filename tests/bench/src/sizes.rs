//! Sizes: the pi-init binary and its initramfs (as the tests build it, with busybox for the
//! `shell` failure policy, and without), against the baseline's busybox initramfs.

use std::path::Path;
use std::process::Command;

use pureboot_harness::env::TestEnv;
use pureboot_harness::{initramfs, process};

fn bytes(p: &Path) -> Result<u64, String> {
    std::fs::metadata(p)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// Size of the cpio inside a gzip'ed initramfs.
fn unpacked(p: &Path) -> Result<u64, String> {
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(p)
        .output()
        .map_err(|e| format!("gzip -dc {}: {e}", p.display()))?;
    if !out.status.success() {
        return Err(format!("gzip -dc {}: {}", p.display(), out.status));
    }
    Ok(out.stdout.len() as u64)
}

/// How many kernel modules an initramfs carries.
pub fn modules_in(p: &Path) -> Result<usize, String> {
    let list = process::run(
        Command::new("sh")
            .arg("-c")
            .arg("gzip -dc \"$1\" | cpio -t --quiet")
            .arg("sh")
            .arg(p),
    )?;
    Ok(list.lines().filter(|l| l.ends_with(".ko")).count())
}

fn kb(b: u64) -> String {
    format!("{:.0}", b as f64 / 1024.0)
}

pub fn run(env: &'static TestEnv) -> Result<String, String> {
    let pi_init = env.binary("pi-init")?;
    let with_bb = initramfs::pi_init(env)?;
    // Without busybox: the smallest a deployment can ship.
    let without_bb = initramfs::build_pi_init(
        env,
        env.kernel(),
        "pi-init-no-busybox.cpio.gz",
        &["--preset", "qemu-virt"],
    )?;
    let baseline = initramfs::baseline(env)?;
    let mut s = String::from(
        "## 2. Sizes (KiB)\n\n| | file | gzip'ed initramfs | unpacked cpio | modules |\n|---|---|---|---|---|\n",
    );
    s += &format!(
        "| pi-init binary (static aarch64 musl, stripped) | {} | | | |\n",
        kb(bytes(&pi_init)?)
    );
    s += &format!(
        "| busybox (static arm64, Debian) | {} | | | |\n",
        kb(bytes(&env.busybox)?)
    );
    for (what, p) in [
        ("pi-init initramfs, no busybox", &without_bb),
        (
            "pi-init initramfs + busybox (`shell` policy; as the tests boot it)",
            &with_bb,
        ),
        ("baseline initramfs (busybox + shell flow)", &baseline),
    ] {
        s += &format!(
            "| {what} | | {} | {} | {} |\n",
            kb(bytes(p)?),
            kb(unpacked(p)?),
            modules_in(p)?
        );
    }
    s += "\nModules are stored uncompressed in every image (gzip compresses the whole cpio). \
          pi-init's 23 are 17 loaded at start and 6 on the disk list (loop, ext4 and what they \
          need), loaded only for the image overlay or a local root: the boot above loads 17, as \
          the baseline does.\n";
    Ok(s)
}
