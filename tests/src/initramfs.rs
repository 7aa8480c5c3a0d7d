//! The two initramfs images a virtual Pi boots, each built once per test run:
//! pi-init's (by `pureboot-image initramfs --preset qemu-virt`) and the busybox baseline
//! (tests/baseline/build.sh, the busybox shell flow).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::env::TestEnv;
use crate::process;

fn out_dir(env: &TestEnv) -> Result<PathBuf, String> {
    let dir = env.target_dir.join("pureboot-e2e");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// `pureboot-image initramfs` with pi-init, the cached kernel's modules and `args`, into
/// `<target>/pureboot-e2e/<name>`.
pub fn build_pi_init(env: &TestEnv, name: &str, args: &[&str]) -> Result<PathBuf, String> {
    let out = out_dir(env)?.join(name);
    process::run(
        Command::new(env.binary("pureboot-image")?)
            .arg("initramfs")
            .arg("--pi-init")
            .arg(env.binary("pi-init")?)
            .arg("--modules-root")
            .arg(&env.modules_root)
            .arg("--kver")
            .arg(&env.kernel_version)
            .args(args)
            .arg("-o")
            .arg(&out),
    )
    .map_err(|e| format!("pureboot-image initramfs {}: {e}", args.join(" ")))?;
    Ok(out)
}

/// pi-init's initramfs for the QEMU virt board.
pub fn pi_init(env: &TestEnv) -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let busybox = env.busybox.display().to_string();
    BUILT
        .get_or_init(|| {
            build_pi_init(
                env,
                "pi-init.cpio.gz",
                &["--preset", "qemu-virt", "--busybox", &busybox],
            )
        })
        .clone()
}

/// pi-init's initramfs with the NIC drivers carried as `device` modules: virtio_pci and
/// virtio_net come by modalias (virtio_net's device appears only once virtio_pci is in, as a
/// Pi's USB NIC appears once its host driver is), the NFS client and overlayfs at start.
pub fn pi_init_by_modalias(env: &TestEnv) -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let mut args = Vec::new();
            for m in ["nfs", "nfsv3", "nfsv4", "overlay"] {
                args.extend(["--module", m]);
            }
            for m in ["loop", "ext4"] {
                args.extend(["--disk-module", m]);
            }
            for m in ["virtio_pci", "virtio_net"] {
                args.extend(["--device-module", m]);
            }
            build_pi_init(env, "pi-init-modalias.cpio.gz", &args)
        })
        .clone()
}

/// pi-init's initramfs for QEMU's `raspi3b`: the `rpi3` preset (phy-generic, dwc2, the Pi 3
/// NICs, bcm2835_wdt) plus cdc_ether, the driver of QEMU's `usb-net` (a real Pi 3 needs
/// smsc95xx or lan78xx instead, which the preset carries).
pub fn pi_init_rpi3(env: &TestEnv) -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let busybox = env.busybox.display().to_string();
    BUILT
        .get_or_init(|| {
            build_pi_init(
                env,
                "pi-init-rpi3.cpio.gz",
                &[
                    "--preset",
                    "rpi3",
                    "--module",
                    "cdc_ether",
                    "--busybox",
                    &busybox,
                ],
            )
        })
        .clone()
}

/// The busybox baseline initramfs.
pub fn baseline(env: &TestEnv) -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = out_dir(env)?.join("baseline.cpio.gz");
            process::run(
                Command::new("bash")
                    .arg(env.repo.join("tests/baseline/build.sh"))
                    .arg("-o")
                    .arg(&out)
                    .arg("--cache")
                    .arg(&env.cache),
            )?;
            Ok(out)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use crate::env::TestEnv;

    /// pi-init must fit in 1 MiB (it is read from the TFTP server and unpacked into RAM at
    /// every boot): the release binary the scenarios boot is measured here.
    #[test]
    fn pi_init_fits_in_one_mebibyte() {
        let env = crate::require!("pi-init size", TestEnv::get());
        let bin = crate::require!("pi-init size", env.binary("pi-init"));
        let size = std::fs::metadata(&bin).unwrap().len();
        println!("pi-init: {size} bytes ({})", bin.display());
        assert!(
            size <= 1024 * 1024,
            "pi-init is {size} bytes, over the 1 MiB limit ({})",
            bin.display()
        );
    }
}
