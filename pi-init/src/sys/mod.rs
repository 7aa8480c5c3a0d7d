//! The seams between pi-init and the machine it boots. Every call to the kernel on the boot
//! path goes through one of them, so the whole boot runs in host tests against fakes (the
//! recording `FakeSys` in `sys/fake.rs`, a fake `Network` and `Http` in `boot/tests.rs`), and
//! the files it reads come from one root ([`HostPaths`]) that tests point at a temporary
//! directory. The real kernel is [`linux::LinuxSys`]; the `unsafe` its calls need lives in
//! `sys/linux/ioctl.rs` and `sys/linux/socket.rs` only.
//!
//! This module imports no step: the steps are built on it, never the other way.
//!
//! | call | seam |
//! |---|---|
//! | mount, umount2, pivot_root, chroot, chdir | [`Sys`] |
//! | finit_module, loop device attach | [`Sys`] |
//! | sethostname, clock_settime, sync + reboot | [`Sys`] |
//! | stat (st_dev), statfs (f_type), deleting the initramfs | [`Sys`] |
//! | /proc/self/mountinfo | [`Sys::mounts`] |
//! | console on fds 0-2 (open, dup2), execv | [`Sys`] |
//! | watchdog WDIOC_SETTIMEOUT | [`Sys`]; the feeding writes are the device file's |
//! | link up, addresses, routes, the DHCP packet socket | `steps::net::Network` as a whole (its real impl is `net::bring_up`); inside it, DHCP's `Transport` |
//! | HTTP GET / POST to the controller | `steps::controller::Http` |
//! | pauses (retries, backoff, `wait` polls) | `boot::Host::sleep` |
//! | plain files (`/proc/cmdline`, serial, module lists, `/sys` identifier, the export) | std::fs under [`HostPaths`] |
//!
//! Left outside on purpose: name resolution of an NFS server given by name (libc's resolver;
//! tests use addresses), the rescue shell (a child process, only after the failure policy
//! chose it), getpid in `main`, and logging's own /dev/kmsg and /dev/console.

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::reboot::RebootMode;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

#[cfg(test)]
pub mod fake;
pub mod linux;

/// The arguments of one mount(2) call, kept whole so errors and tests can show all of them
/// (EINVAL alone says nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountArgs {
    pub source: Option<String>,
    pub target: PathBuf,
    pub fstype: Option<String>,
    pub flags: MsFlags,
    pub data: Option<String>,
}

impl MountArgs {
    pub fn new(source: &str, target: &Path, fstype: &str, flags: MsFlags, data: &str) -> Self {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        MountArgs {
            source: opt(source),
            target: target.to_path_buf(),
            fstype: opt(fstype),
            flags,
            data: opt(data),
        }
    }

    /// `mount(MS_MOVE)` of `from` onto `to`.
    pub fn move_mount(from: &Path, to: &Path) -> Self {
        MountArgs {
            source: Some(from.display().to_string()),
            target: to.to_path_buf(),
            fstype: None,
            flags: MsFlags::MS_MOVE,
            data: None,
        }
    }
}

impl fmt::Display for MountArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mount")?;
        if let Some(t) = &self.fstype {
            write!(f, " -t {t}")?;
        }
        if let Some(d) = &self.data {
            write!(f, " -o {d}")?;
        }
        if !self.flags.is_empty() {
            write!(f, " (flags {:?})", self.flags)?;
        }
        let src = self.source.as_deref().unwrap_or("none");
        write!(f, " {src} {}", self.target.display())
    }
}

/// Where the boot finds the host's files: `/` on a Pi, a temporary directory in tests. Every
/// path the boot reads or creates (`/proc`, `/sys`, the module lists, `/mnt`, ...) is made here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    pub root: PathBuf,
}

impl HostPaths {
    pub fn real() -> Self {
        Self::under(Path::new("/"))
    }
    pub fn under(root: &Path) -> Self {
        HostPaths {
            root: root.to_path_buf(),
        }
    }
    /// `abs` (an absolute path on the Pi) under this root.
    pub fn at(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }
    pub fn cmdline(&self) -> PathBuf {
        self.at("/proc/cmdline")
    }
    /// The running kernel's release (`uname -r`), sent with the boot request.
    pub fn kernel_release(&self) -> PathBuf {
        self.at("/proc/sys/kernel/osrelease")
    }

    pub fn sysfs(&self) -> PathBuf {
        self.at("/sys")
    }
    /// The modules loaded at start: the NIC driver, the NFS client, overlayfs.
    pub fn module_list(&self) -> PathBuf {
        self.at(pureboot_contract::modules_list::LIST_PATH)
    }
    /// The modules loaded when the image overlay (a loop-mounted ext4) or a local root
    /// needs them.
    pub fn disk_module_list(&self) -> PathBuf {
        self.at(pureboot_contract::modules_list::DISK_LIST_PATH)
    }
    pub fn module_aliases(&self) -> PathBuf {
        self.at(pureboot_contract::modules_list::ALIAS_PATH)
    }
    /// Where the NFS export, the writable layer and the new root are mounted.
    pub fn mnt(&self) -> PathBuf {
        self.at("/mnt")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.at("/etc/resolv.conf")
    }
    pub fn watchdog(&self) -> PathBuf {
        self.at("/dev/watchdog")
    }
    pub fn shell(&self) -> PathBuf {
        self.at("/bin/sh")
    }
}

/// An attached loop device. It detaches itself (autoclear) once nothing holds it: keep this
/// value alive until the filesystem on it is mounted.
#[derive(Debug)]
pub struct LoopDevice {
    pub path: PathBuf,
    /// The open device, which keeps it attached; none in the fake's answer.
    pub(crate) _held: Option<File>,
}

/// The kernel's calls on the boot path (see the table above); [`linux::LinuxSys`] makes them.
pub trait Sys: Sync {
    fn mount(&self, m: &MountArgs) -> Result<(), Errno>;
    fn umount(&self, target: &Path, flags: MntFlags) -> Result<(), Errno>;
    /// finit_module(2) on the file at `path`, with `params` (space separated).
    fn finit_module(&self, path: &Path, params: &str) -> Result<(), Errno>;
    /// Attach `file` to a free loop device (autoclear: hold the answer until mounted).
    fn loop_attach(&self, file: &Path, read_only: bool) -> Result<LoopDevice, Errno>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), Errno>;
    fn chroot(&self, path: &Path) -> Result<(), Errno>;
    fn chdir(&self, path: &Path) -> Result<(), Errno>;
    fn sethostname(&self, name: &str) -> Result<(), Errno>;
    /// Set the system clock (CLOCK_REALTIME) to this long after the Unix epoch.
    fn set_clock(&self, since_epoch: std::time::Duration) -> Result<(), Errno>;
    /// sync(2), then reboot(2) in `mode`. Returns only when the kernel refused.
    fn reboot(&self, mode: RebootMode) -> Errno;
    /// The device (`st_dev`) `path` is on, following links.
    fn device_of(&self, path: &Path) -> Result<u64, Errno>;
    /// The type (`f_type`) of the filesystem holding `path`.
    fn fs_magic(&self, path: &Path) -> Result<i64, Errno>;
    /// Delete everything under `dir` that is on device `dev`, never crossing into another
    /// mount; failures are logged, not returned (the boot goes on).
    fn delete_tree(&self, dir: &Path, dev: u64);
    /// The mount table, from /proc/self/mountinfo (empty when it cannot be read).
    fn mounts(&self) -> Vec<MountPoint>;
    /// Put `console` on fds 0-2, if it can be opened.
    fn console_on_stdio(&self, console: &Path);
    /// execv(2) `argv[0]` with `argv`. Returns only on failure.
    fn exec(&self, argv: &[String]) -> Errno;
    /// WDIOC_SETTIMEOUT on an open watchdog device; the timeout it took (it may round).
    fn watchdog_timeout(&self, dev: &File, secs: i32) -> Result<i32, Errno>;
}

pub fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// One line of /proc/self/mountinfo: where, and which filesystem type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    pub path: String,
    pub fstype: String,
}

/// Parse /proc/self/mountinfo (`id parent maj:min root mountpoint opts [tags] - fstype src opts`).
/// Octal escapes (`\040` for a space) in the mount point are decoded.
pub fn parse_mountinfo(text: &str) -> Vec<MountPoint> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let path = left.split(' ').nth(4)?;
            let fstype = right.split(' ').next()?;
            Some(MountPoint {
                path: unescape_octal(path),
                fstype: fstype.to_string(),
            })
        })
        .collect()
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The filesystem type mounted last at `path`, if any (later lines overmount earlier ones).
pub fn mounted_fstype(mounts: &[MountPoint], path: &str) -> Option<String> {
    mounts
        .iter()
        .rev()
        .find(|m| m.path == path)
        .map(|m| m.fstype.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_parses_initramfs_and_escapes() {
        let text = "1 1 0:2 / / rw - rootfs rootfs rw\n\
                    22 1 0:21 / /proc rw,relatime shared:5 - proc proc rw\n\
                    30 1 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw\n\
                    31 22 0:41 / /proc rw - tmpfs x rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 4);
        assert_eq!(mounted_fstype(&m, "/").as_deref(), Some("rootfs"));
        assert_eq!(
            mounted_fstype(&m, "/mnt/with space").as_deref(),
            Some("tmpfs")
        );
        // Overmounted: the last one wins.
        assert_eq!(mounted_fstype(&m, "/proc").as_deref(), Some("tmpfs"));
        assert_eq!(mounted_fstype(&m, "/sys"), None);
    }

    #[test]
    fn mount_args_display_names_everything() {
        let m = MountArgs::new(
            "srv:/x",
            Path::new("/mnt/nfs"),
            "nfs4",
            MsFlags::MS_RDONLY,
            "vers=4.2,addr=10.0.2.2",
        );
        let s = m.to_string();
        assert!(
            s.contains("-t nfs4") && s.contains("vers=4.2,addr=10.0.2.2"),
            "{s}"
        );
        assert!(
            s.contains("srv:/x /mnt/nfs") && s.contains("MS_RDONLY"),
            "{s}"
        );
    }
}
