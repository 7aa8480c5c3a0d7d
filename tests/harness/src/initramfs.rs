//! The initramfs images a virtual Pi boots: pi-init's (by `pureboot-image initramfs`, e.g.
//! `--preset qemu-virt`) and the busybox baseline (tests/baseline/build.sh, the busybox shell
//! flow). Each is built once per run and kernel (its modules are that kernel's), into
//! `<target>/pureboot-e2e/<kernel kind>/`. The functions without a kernel argument build for
//! Debian's kernel, the one the tests boot.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::env::{Kernel, KernelKind, TestEnv};
use crate::process;

fn out_dir(env: &TestEnv, kernel: &Kernel) -> Result<PathBuf, String> {
    let dir = env
        .target_dir
        .join("pureboot-e2e")
        .join(kernel.kind.as_str());
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// `build`'s result for (`kernel`, `image`), built by the first caller: concurrent callers
/// of the same image wait for it, other images build meanwhile.
fn once(
    kernel: &Kernel,
    image: &'static str,
    build: impl FnOnce() -> Result<PathBuf, String>,
) -> Result<PathBuf, String> {
    type Slot = Arc<OnceLock<Result<PathBuf, String>>>;
    static BUILT: Mutex<BTreeMap<(KernelKind, &'static str), Slot>> = Mutex::new(BTreeMap::new());
    let slot = BUILT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry((kernel.kind, image))
        .or_default()
        .clone();
    slot.get_or_init(build).clone()
}

/// `pureboot-image initramfs` with pi-init, `kernel`'s modules and `args`, into
/// `<target>/pureboot-e2e/<kernel kind>/<name>` (not cached: each call builds).
pub fn build_pi_init(
    env: &TestEnv,
    kernel: &Kernel,
    name: &str,
    args: &[&str],
) -> Result<PathBuf, String> {
    let out = out_dir(env, kernel)?.join(name);
    process::run(
        Command::new(env.binary("pureboot-image")?)
            .arg("initramfs")
            .arg("--pi-init")
            .arg(env.binary("pi-init")?)
            .arg("--modules-root")
            .arg(&kernel.modules_root)
            .arg("--kver")
            .arg(&kernel.version)
            .args(args)
            .arg("-o")
            .arg(&out),
    )
    .map_err(|e| {
        format!(
            "pureboot-image initramfs {} for kernel {}: {e}",
            args.join(" "),
            kernel.label()
        )
    })?;
    Ok(out)
}

/// pi-init's initramfs for the QEMU virt board, on Debian's kernel.
pub fn pi_init(env: &TestEnv) -> Result<PathBuf, String> {
    pi_init_on(env, env.kernel())
}

/// pi-init's initramfs for the QEMU virt board, with `kernel`'s modules (on a kernel with
/// the NIC driver and the NFS client built in, only overlayfs).
pub fn pi_init_on(env: &TestEnv, kernel: &Kernel) -> Result<PathBuf, String> {
    with_busybox(env, kernel, "pi-init.cpio.gz", &["--preset", "qemu-virt"])
}

/// pi-init's initramfs for the QEMU virt board with a virtio disk as a local root: virtio_blk
/// on its disk list (loaded only when the controller answers `local_boot`), on Debian's kernel.
pub fn pi_init_virtio_disk(env: &TestEnv) -> Result<PathBuf, String> {
    with_busybox(
        env,
        env.kernel(),
        "pi-init-virtio-disk.cpio.gz",
        &["--preset", "qemu-virt", "--disk-module", "virtio_blk"],
    )
}

/// `build_pi_init` once per kernel, with busybox (for the `shell` failure policy the tests
/// exercise).
fn with_busybox(
    env: &TestEnv,
    kernel: &Kernel,
    name: &'static str,
    args: &[&str],
) -> Result<PathBuf, String> {
    once(kernel, name, || {
        let busybox = env.busybox.display().to_string();
        let mut args = args.to_vec();
        args.extend(["--busybox", &busybox]);
        build_pi_init(env, kernel, name, &args)
    })
}

/// pi-init's initramfs with the NIC drivers carried as `device` modules: virtio_pci and
/// virtio_net come by modalias (virtio_net's device appears only once virtio_pci is in, as a
/// Pi's USB NIC appears once its host driver is), the NFS client and overlayfs at start.
pub fn pi_init_by_modalias(env: &TestEnv) -> Result<PathBuf, String> {
    const NAME: &str = "pi-init-modalias.cpio.gz";
    let kernel = env.kernel();
    once(kernel, NAME, || {
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
        build_pi_init(env, kernel, NAME, &args)
    })
}

/// pi-init's initramfs for QEMU's `raspi3b`: the `rpi3` preset (phy-generic, dwc2, the Pi 3
/// NICs, bcm2835_wdt) plus cdc_ether, the driver of QEMU's `usb-net` (a real Pi 3 needs
/// smsc95xx or lan78xx instead, which the preset carries).
pub fn pi_init_rpi3(env: &TestEnv) -> Result<PathBuf, String> {
    with_busybox(
        env,
        env.kernel(),
        "pi-init-rpi3.cpio.gz",
        &["--preset", "rpi3", "--module", "cdc_ether"],
    )
}

/// The busybox baseline initramfs, on Debian's kernel.
pub fn baseline(env: &TestEnv) -> Result<PathBuf, String> {
    baseline_on(env, env.kernel())
}

/// The busybox baseline initramfs with `kernel`'s modules (its built-in ones are not loaded).
pub fn baseline_on(env: &TestEnv, kernel: &Kernel) -> Result<PathBuf, String> {
    const NAME: &str = "baseline.cpio.gz";
    once(kernel, NAME, || {
        let out = out_dir(env, kernel)?.join(NAME);
        process::run(
            Command::new("bash")
                .arg(env.repo.join("tests/baseline/build.sh"))
                .arg("-o")
                .arg(&out)
                .arg("--cache")
                .arg(&env.cache)
                .arg("--kernel")
                .arg(&kernel.dir),
        )
        .map_err(|e| format!("tests/baseline/build.sh for kernel {}: {e}", kernel.label()))?;
        Ok(out)
    })
}

/// Checks every prerequisite of a pi-init boot (skips or, under test.sh, fails); the
/// controller's binary too unless the scenario runs without one.
#[macro_export]
macro_rules! pi_init_env {
    ($name:expr, without_controller) => {{
        let env = $crate::require!($name, $crate::env::TestEnv::get());
        $crate::require!($name, $crate::initramfs::pi_init(env));
        env
    }};
    ($name:expr) => {{
        let env = $crate::pi_init_env!($name, without_controller);
        $crate::require!($name, env.binary("pureboot-controller"));
        env
    }};
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
