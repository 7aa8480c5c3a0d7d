//! The seams between pi-init and the machine it boots. Every call to the kernel on the boot
//! path goes through one of them, so the whole boot runs in host tests against fakes (the
//! recording [`FakeSys`] here, a fake `Network` and `Http` in `boot`'s tests), and the files
//! it reads come from one root ([`HostPaths`]) that tests point at a temporary directory.
//!
//! | call | seam |
//! |---|---|
//! | mount, umount2, pivot_root, chroot, chdir | [`Sys`] |
//! | finit_module, loop device attach | [`Sys`] |
//! | sethostname, sync + reboot | [`Sys`] |
//! | stat (st_dev), statfs (f_type), deleting the initramfs | [`Sys`] |
//! | /proc/self/mountinfo | [`Sys::mounts`] |
//! | console on fds 0-2 (open, dup2), execv | [`Sys`] |
//! | watchdog WDIOC_SETTIMEOUT | [`Sys`]; the feeding writes are the device file's |
//! | link up, addresses, routes, the DHCP packet socket | `net::Network` as a whole (its real impl is `net::bring_up`); inside it, DHCP's `Transport` |
//! | HTTP GET / POST to the controller | `controller::Http` |
//! | pauses (retries, backoff, `wait` polls) | `boot::Host::sleep` |
//! | plain files (`/proc/cmdline`, serial, module lists, `/sys` identifier, the export) | std::fs under [`HostPaths`] |
//!
//! Left outside on purpose: name resolution of an NFS server given by name (libc's resolver;
//! tests use addresses), the rescue shell (a child process, only after the failure policy
//! chose it), getpid in `main`, and logging's own /dev/kmsg and /dev/console.

use crate::loopdev::LoopDevice;
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::reboot::RebootMode;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

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
    pub fn sysfs(&self) -> PathBuf {
        self.at("/sys")
    }
    pub fn module_list(&self) -> PathBuf {
        self.at(crate::modules::LIST_PATH)
    }
    pub fn disk_module_list(&self) -> PathBuf {
        self.at(crate::modules::DISK_LIST_PATH)
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

/// The real kernel.
pub struct LinuxSys;

/// `WDIOC_SETTIMEOUT` = _IOWR('W', 6, int).
const WDIOC_SETTIMEOUT: libc::c_ulong = 0xC004_5706;

impl Sys for LinuxSys {
    fn mount(&self, m: &MountArgs) -> Result<(), Errno> {
        nix::mount::mount(
            m.source.as_deref(),
            &m.target,
            m.fstype.as_deref(),
            m.flags,
            m.data.as_deref(),
        )
    }

    fn umount(&self, target: &Path, flags: MntFlags) -> Result<(), Errno> {
        nix::mount::umount2(target, flags)
    }

    fn finit_module(&self, path: &Path, params: &str) -> Result<(), Errno> {
        let file = std::fs::File::open(path).map_err(io_errno)?;
        let params = std::ffi::CString::new(params).map_err(|_| Errno::EINVAL)?;
        nix::kmod::finit_module(&file, &params, nix::kmod::ModuleInitFlags::empty())
    }

    fn loop_attach(&self, file: &Path, read_only: bool) -> Result<LoopDevice, Errno> {
        crate::loopdev::attach(file, read_only)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), Errno> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn chroot(&self, path: &Path) -> Result<(), Errno> {
        nix::unistd::chroot(path)
    }

    fn chdir(&self, path: &Path) -> Result<(), Errno> {
        nix::unistd::chdir(path)
    }

    fn sethostname(&self, name: &str) -> Result<(), Errno> {
        nix::unistd::sethostname(name)
    }

    fn reboot(&self, mode: RebootMode) -> Errno {
        nix::unistd::sync();
        match nix::sys::reboot::reboot(mode) {
            Err(e) => e,
            Ok(never) => match never {},
        }
    }

    fn device_of(&self, path: &Path) -> Result<u64, Errno> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).map(|m| m.dev()).map_err(io_errno)
    }

    fn fs_magic(&self, path: &Path) -> Result<i64, Errno> {
        // f_type is signed in glibc (the host's tests) and unsigned in musl (the Pi's build).
        #[allow(clippy::unnecessary_cast)]
        nix::sys::statfs::statfs(path).map(|fs| fs.filesystem_type().0 as i64)
    }

    fn delete_tree(&self, dir: &Path, dev: u64) {
        crate::switch_root::delete_tree(dir, dev)
    }

    fn mounts(&self) -> Vec<MountPoint> {
        parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    }

    fn console_on_stdio(&self, console: &Path) {
        use nix::fcntl::{open, OFlag};
        if let Ok(fd) = open(console, OFlag::O_RDWR, nix::sys::stat::Mode::empty()) {
            for target in 0..3 {
                let _ = nix::unistd::dup2(fd, target);
            }
            if fd > 2 {
                let _ = nix::unistd::close(fd);
            }
        }
    }

    fn exec(&self, argv: &[String]) -> Errno {
        let argv: Result<Vec<std::ffi::CString>, _> = argv
            .iter()
            .map(|a| std::ffi::CString::new(a.as_str()))
            .collect();
        match argv {
            Ok(argv) if !argv.is_empty() => match nix::unistd::execv(&argv[0], &argv) {
                Err(e) => e,
                Ok(never) => match never {},
            },
            // A NUL inside an argument, or nothing to run.
            _ => Errno::EINVAL,
        }
    }

    fn watchdog_timeout(&self, dev: &File, secs: i32) -> Result<i32, Errno> {
        use std::os::fd::AsRawFd;
        let mut secs: libc::c_int = secs;
        // SAFETY: WDIOC_SETTIMEOUT reads and writes one int through the pointer.
        let r = unsafe { libc::ioctl(dev.as_raw_fd(), WDIOC_SETTIMEOUT as _, &mut secs) };
        if r == 0 {
            Ok(secs)
        } else {
            Err(Errno::last())
        }
    }
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
pub use fake::{Call, FakeSys, FAKE_EXEC_ERROR};

#[cfg(test)]
mod fake {
    use super::*;
    use std::collections::{HashMap, VecDeque};
    use std::sync::Mutex;

    /// What the fake `exec` answers: it never replaces the test process.
    pub const FAKE_EXEC_ERROR: Errno = Errno::ENOTRECOVERABLE;

    /// One recorded call, with its arguments. Reads (`device_of`, `fs_magic`, `mounts`) are
    /// answered from tables and not recorded.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Call {
        Mount(MountArgs),
        Umount(PathBuf),
        FinitModule(PathBuf, String),
        LoopAttach(PathBuf, bool),
        PivotRoot(PathBuf, PathBuf),
        Chroot(PathBuf),
        Chdir(PathBuf),
        SetHostname(String),
        Reboot(RebootMode),
        DeleteTree(PathBuf, u64),
        ConsoleOnStdio(PathBuf),
        Exec(Vec<String>),
        WatchdogTimeout(i32),
    }

    /// Records every call; mounts answer from a script (default success), modules from a
    /// table; `device_of` and `fs_magic` from tables (ENOENT when absent), with `.` the
    /// directory the last `chdir`s lead to.
    pub struct FakeSys {
        pub calls: Mutex<Vec<Call>>,
        mount_results: Mutex<VecDeque<Result<(), Errno>>>,
        /// Mounts that fail whatever the script says: (source, start of the data, error).
        mount_errors: Mutex<Vec<(String, String, Errno)>>,
        module_errors: Mutex<HashMap<PathBuf, Errno>>,
        devices: Mutex<HashMap<PathBuf, u64>>,
        magics: Mutex<HashMap<PathBuf, i64>>,
        mount_table: Mutex<Vec<MountPoint>>,
        cwd: Mutex<PathBuf>,
    }

    impl Default for FakeSys {
        fn default() -> Self {
            FakeSys {
                calls: Mutex::default(),
                mount_results: Mutex::default(),
                mount_errors: Mutex::default(),
                module_errors: Mutex::default(),
                devices: Mutex::default(),
                magics: Mutex::default(),
                mount_table: Mutex::default(),
                cwd: Mutex::new(PathBuf::from("/")),
            }
        }
    }

    impl FakeSys {
        pub fn new() -> Self {
            Self::default()
        }
        /// The next mounts answer these results, in order; then success.
        pub fn script_mounts(&self, results: impl IntoIterator<Item = Result<(), Errno>>) {
            self.mount_results.lock().unwrap().extend(results);
        }
        /// Every mount of `source` whose data starts with `data` fails with `e` (for mounts
        /// made on several threads at once, where a script's order would be a race).
        pub fn fail_mount(&self, source: &str, data: &str, e: Errno) {
            let m = (source.to_string(), data.to_string(), e);
            self.mount_errors.lock().unwrap().push(m);
        }
        pub fn fail_module(&self, path: &str, e: Errno) {
            self.module_errors.lock().unwrap().insert(path.into(), e);
        }
        /// `path` is on device `dev` (for `device_of`).
        pub fn set_device(&self, path: &Path, dev: u64) {
            self.devices.lock().unwrap().insert(path.into(), dev);
        }
        /// The filesystem holding `path` has type `magic` (for `fs_magic`).
        pub fn set_fs_magic(&self, path: &Path, magic: i64) {
            self.magics.lock().unwrap().insert(path.into(), magic);
        }
        /// What `mounts` answers, as /proc/self/mountinfo text.
        pub fn set_mountinfo(&self, text: &str) {
            *self.mount_table.lock().unwrap() = parse_mountinfo(text);
        }
        pub fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap().clone()
        }
        pub fn mounts(&self) -> Vec<MountArgs> {
            self.calls()
                .into_iter()
                .filter_map(|c| match c {
                    Call::Mount(m) => Some(m),
                    _ => None,
                })
                .collect()
        }
        fn record(&self, c: Call) {
            self.calls.lock().unwrap().push(c);
        }
        /// `path` as the fake's current directory sees it.
        fn resolve(&self, path: &Path) -> PathBuf {
            let cwd = self.cwd.lock().unwrap().clone();
            if path == Path::new(".") {
                cwd
            } else {
                cwd.join(path)
            }
        }
    }

    impl Sys for FakeSys {
        fn mount(&self, m: &MountArgs) -> Result<(), Errno> {
            self.record(Call::Mount(m.clone()));
            let matches = |(src, data, _): &&(String, String, Errno)| {
                m.source.as_deref() == Some(src.as_str())
                    && m.data.as_deref().unwrap_or("").starts_with(data.as_str())
            };
            if let Some((_, _, e)) = self.mount_errors.lock().unwrap().iter().find(matches) {
                return Err(*e);
            }
            self.mount_results
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(()))
        }
        fn umount(&self, target: &Path, _flags: MntFlags) -> Result<(), Errno> {
            self.record(Call::Umount(target.into()));
            Ok(())
        }
        fn finit_module(&self, path: &Path, params: &str) -> Result<(), Errno> {
            self.record(Call::FinitModule(path.into(), params.into()));
            match self.module_errors.lock().unwrap().get(path) {
                Some(e) => Err(*e),
                None => Ok(()),
            }
        }
        fn loop_attach(&self, file: &Path, read_only: bool) -> Result<LoopDevice, Errno> {
            self.record(Call::LoopAttach(file.into(), read_only));
            Ok(LoopDevice::unheld("/dev/loop7".into()))
        }
        fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), Errno> {
            self.record(Call::PivotRoot(new_root.into(), put_old.into()));
            Ok(())
        }
        fn chroot(&self, path: &Path) -> Result<(), Errno> {
            self.record(Call::Chroot(path.into()));
            Ok(())
        }
        fn chdir(&self, path: &Path) -> Result<(), Errno> {
            self.record(Call::Chdir(path.into()));
            let to = self.resolve(path);
            *self.cwd.lock().unwrap() = to;
            Ok(())
        }
        fn sethostname(&self, name: &str) -> Result<(), Errno> {
            self.record(Call::SetHostname(name.into()));
            Ok(())
        }
        fn reboot(&self, mode: RebootMode) -> Errno {
            self.record(Call::Reboot(mode));
            Errno::EPERM
        }
        fn device_of(&self, path: &Path) -> Result<u64, Errno> {
            let p = self.resolve(path);
            self.devices
                .lock()
                .unwrap()
                .get(&p)
                .copied()
                .ok_or(Errno::ENOENT)
        }
        fn fs_magic(&self, path: &Path) -> Result<i64, Errno> {
            let p = self.resolve(path);
            self.magics
                .lock()
                .unwrap()
                .get(&p)
                .copied()
                .ok_or(Errno::ENOENT)
        }
        fn delete_tree(&self, dir: &Path, dev: u64) {
            self.record(Call::DeleteTree(dir.into(), dev));
        }
        fn mounts(&self) -> Vec<MountPoint> {
            self.mount_table.lock().unwrap().clone()
        }
        fn console_on_stdio(&self, console: &Path) {
            self.record(Call::ConsoleOnStdio(console.into()));
        }
        fn exec(&self, argv: &[String]) -> Errno {
            self.record(Call::Exec(argv.to_vec()));
            FAKE_EXEC_ERROR
        }
        fn watchdog_timeout(&self, _dev: &File, secs: i32) -> Result<i32, Errno> {
            self.record(Call::WatchdogTimeout(secs));
            Ok(secs)
        }
    }
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
