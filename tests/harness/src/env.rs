//! What a virtual Pi scenario needs from the machine, found once: root, the cache filled by
//! tests/setup.sh, host tools, and the project's built binaries. When something is missing the
//! scenario skips and says which command provides it (the rule: [`crate::skip`]).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The GPU firmware files a Pi 3 and a Pi 4 folder carry, from Debian's raspi-firmware.
pub const RASPI_FIRMWARE_FILES: [&str; 5] = [
    "bootcode.bin",
    "start.elf",
    "fixup.dat",
    "start4.elf",
    "fixup4.dat",
];

#[derive(Clone, Debug)]
pub struct TestEnv {
    pub repo: PathBuf,
    pub cache: PathBuf,
    /// Debian's arm64 kernel, which the tests boot (tests/setup.sh).
    debian: Kernel,
    /// The Pi-like kernel of the benchmarks, or why it is not there.
    pi: Result<Kernel, String>,
    pub busybox: PathBuf,
    pub target_dir: PathBuf,
}

pureboot_contract::named_enum! {
    /// The kernels a virtual Pi can boot; the name is what the benchmark's `--kernels` takes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub enum KernelKind: "kernel" {
        /// Debian's arm64 kernel: the NIC driver and the NFS client are modules.
        Debian = "debian",
        /// Built by tests/bench/pi-kernel.sh as Raspberry Pi OS builds its kernels: the NIC
        /// driver and the NFS client built in, overlayfs a module.
        Pi = "pi",
    }
}

impl KernelKind {
    /// How a report names it.
    pub fn title(self) -> &'static str {
        match self {
            KernelKind::Debian => "Debian's kernel",
            KernelKind::Pi => "the Pi-like kernel",
        }
    }
}

/// A kernel a virtual Pi boots, as the cache holds it: `<dir>/{vmlinuz,version,root/}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    pub kind: KernelKind,
    /// The cache folder it was loaded from.
    pub dir: PathBuf,
    pub image: PathBuf,
    pub version: String,
    /// Holds lib/modules/<version> (for Debian's, the unpacked kernel package).
    pub modules_root: PathBuf,
}

impl Kernel {
    /// The kernel in `dir`; the error says which command puts it there.
    pub fn load(kind: KernelKind, dir: &Path, provider: &str) -> Result<Kernel, String> {
        let version = std::fs::read_to_string(dir.join("version"))
            .map(|s| s.trim().to_string())
            .map_err(|_| format!("no {kind} arm64 kernel in {}: {provider}", dir.display()))?;
        let image = dir.join("vmlinuz");
        if !image.exists() {
            return Err(format!("{} missing: {provider}", image.display()));
        }
        Ok(Kernel {
            kind,
            dir: dir.to_path_buf(),
            image,
            version,
            modules_root: dir.join("root"),
        })
    }

    /// "debian 6.1.0-56-arm64": how reports name it.
    pub fn label(&self) -> String {
        format!("{} {}", self.kind, self.version)
    }
}

impl TestEnv {
    /// The base environment every boot needs (root, cache, QEMU, ganesha).
    pub fn get() -> Result<&'static TestEnv, String> {
        static ENV: OnceLock<Result<TestEnv, String>> = OnceLock::new();
        ENV.get_or_init(TestEnv::probe)
            .as_ref()
            .map_err(Clone::clone)
    }

    fn probe() -> Result<TestEnv, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(
                "not root: namespaces, ganesha and mknod need root (run tests/test.sh as root)"
                    .into(),
            );
        }
        let repo = crate::repo_root();
        let cache = std::env::var_os("PUREBOOT_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join(".cache"));
        let setup = "run `sudo tests/setup.sh`";
        let debian = Kernel::load(KernelKind::Debian, &cache.join("kernel"), setup)?;
        // Only the benchmarks boot it: its absence is an error only where it is asked for.
        let pi = Kernel::load(
            KernelKind::Pi,
            &cache.join("pi-kernel"),
            "run `sudo bash tests/bench/pi-kernel.sh` (builds it once)",
        );
        let busybox = cache.join("busybox/busybox");
        if !busybox.exists() {
            return Err(format!("{} missing: {setup}", busybox.display()));
        }
        for tool in [
            "qemu-system-aarch64",
            "ganesha.nfsd",
            "rpcbind",
            "unshare",
            "nsenter",
            "ss",
            "curl",
            "cpio",
            "modinfo",
        ] {
            if crate::host::locate(tool).is_none() {
                return Err(format!("`{tool}` not found: {setup}"));
            }
        }
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("target"));
        Ok(TestEnv {
            repo,
            cache,
            debian,
            pi,
            busybox,
            target_dir,
        })
    }

    /// Debian's arm64 kernel: the one the tests boot.
    pub fn kernel(&self) -> &Kernel {
        &self.debian
    }

    /// The Pi-like kernel (NFS client built in, overlayfs a module) the benchmarks boot too.
    pub fn pi_kernel(&self) -> Result<&Kernel, String> {
        self.pi.as_ref().map_err(Clone::clone)
    }

    pub fn kernel_of(&self, kind: KernelKind) -> Result<&Kernel, String> {
        match kind {
            KernelKind::Debian => Ok(self.kernel()),
            KernelKind::Pi => self.pi_kernel(),
        }
    }

    /// A release binary of the project; the error says how to build it.
    pub fn binary(&self, name: &str) -> Result<PathBuf, String> {
        let (path, build) = if name == "pi-init" {
            (
                self.target_dir
                    .join("aarch64-unknown-linux-musl/release/pi-init"),
                "cargo build --release -p pi-init --target aarch64-unknown-linux-musl",
            )
        } else {
            (
                self.target_dir.join("release").join(name),
                "cargo build --release --workspace",
            )
        };
        // PUREBOOT_CONTROLLER_BIN, PUREBOOT_IMAGE_BIN, PUREBOOT_PI_INIT_BIN
        let short = name.strip_prefix("pureboot-").unwrap_or(name);
        let var = format!("PUREBOOT_{}_BIN", short.to_uppercase().replace('-', "_"));
        if let Some(p) = std::env::var_os(&var) {
            return Ok(PathBuf::from(p));
        }
        if path.exists() {
            Ok(path)
        } else {
            Err(format!(
                "{} not built: run `{build}` (or set {var})",
                path.display()
            ))
        }
    }

    /// The real Raspberry Pi firmware ([`RASPI_FIRMWARE_FILES`] and more) from Debian's
    /// raspi-firmware package, unpacked by tests/setup.sh.
    pub fn raspi_firmware(&self) -> Result<PathBuf, String> {
        let dir = self.cache.join("raspi-firmware");
        if dir.join("start.elf").is_file() && dir.join("bootcode.bin").is_file() {
            Ok(dir)
        } else {
            Err(format!(
                "no raspi-firmware in {}: run `sudo tests/setup.sh`",
                dir.display()
            ))
        }
    }

    /// The cached Debian arm64 root (`debian_root_boots_to_systemd`, the benchmarks).
    pub fn debian_root(&self) -> Result<PathBuf, String> {
        let root = self.cache.join("debian-root");
        if root.join(".complete").exists() {
            Ok(root)
        } else {
            Err(format!(
                "no Debian arm64 root in {}: run `sudo PUREBOOT_DEBIAN_ROOT=1 tests/setup.sh`",
                root.display()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_is_its_cache_folder_or_says_how_to_get_it() {
        let dir = std::env::temp_dir().join(format!("pureboot-kernel-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let e = Kernel::load(KernelKind::Pi, &dir, "run make-it.sh").unwrap_err();
        assert!(
            e.starts_with("no pi arm64 kernel in ") && e.ends_with(": run make-it.sh"),
            "{e}"
        );
        std::fs::write(dir.join("version"), "6.1.158-pureboot-pi\n").unwrap();
        let e = Kernel::load(KernelKind::Pi, &dir, "run make-it.sh").unwrap_err();
        assert!(e.contains("vmlinuz missing: run make-it.sh"), "{e}");
        std::fs::write(dir.join("vmlinuz"), "").unwrap();
        let k = Kernel::load(KernelKind::Pi, &dir, "run make-it.sh").unwrap();
        assert_eq!(k.version, "6.1.158-pureboot-pi");
        assert_eq!(
            (k.image, k.modules_root),
            (dir.join("vmlinuz"), dir.join("root"))
        );
        assert_eq!(k.kind.as_str(), "pi");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
