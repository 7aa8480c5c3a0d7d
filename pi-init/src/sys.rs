//! Every privileged call pi-init makes goes through [`Sys`], so the boot steps can be tested
//! without root against the recording [`FakeSys`]. Plain file reads and writes are not here:
//! tests give those real temporary directories.

use crate::loopdev::LoopDevice;
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use std::fmt;
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
}

/// The real kernel.
pub struct LinuxSys;

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
pub use fake::{Call, FakeSys};

#[cfg(test)]
mod fake {
    use super::*;
    use std::collections::{HashMap, VecDeque};
    use std::sync::Mutex;

    /// One recorded call, with its arguments.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Call {
        Mount(MountArgs),
        Umount(PathBuf),
        FinitModule(PathBuf, String),
        LoopAttach(PathBuf, bool),
        PivotRoot(PathBuf, PathBuf),
        Chroot(PathBuf),
        Chdir(PathBuf),
    }

    /// Records every call; mounts answer from a script (default success), modules from a table.
    #[derive(Default)]
    pub struct FakeSys {
        pub calls: Mutex<Vec<Call>>,
        mount_results: Mutex<VecDeque<Result<(), Errno>>>,
        module_errors: Mutex<HashMap<PathBuf, Errno>>,
    }

    impl FakeSys {
        pub fn new() -> Self {
            Self::default()
        }
        /// The next mounts answer these results, in order; then success.
        pub fn script_mounts(&self, results: impl IntoIterator<Item = Result<(), Errno>>) {
            self.mount_results.lock().unwrap().extend(results);
        }
        pub fn fail_module(&self, path: &str, e: Errno) {
            self.module_errors.lock().unwrap().insert(path.into(), e);
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
    }

    impl Sys for FakeSys {
        fn mount(&self, m: &MountArgs) -> Result<(), Errno> {
            self.record(Call::Mount(m.clone()));
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
            Ok(())
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
