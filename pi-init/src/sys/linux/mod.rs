//! The real kernel behind [`Sys`]: each call one nix (or std) call, but for the loop device
//! attach (`loopdev.rs`) and the initramfs deletion ([`delete_tree`]), which take several.
//! The `unsafe` the kernel interfaces need is in `ioctl.rs` (every ioctl), `socket.rs`
//! (the raw packet socket DHCP uses) and `spawn.rs` (the post-boot agent's fork) only.

pub mod ioctl;
pub mod loopdev;
pub mod socket;
pub mod spawn;

use super::{io_errno, parse_mountinfo, LoopDevice, MountArgs, MountPoint, Sys};
use nix::errno::Errno;
use nix::mount::MntFlags;
use nix::sys::reboot::RebootMode;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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
        loopdev::attach(file, read_only)
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

    fn set_clock(&self, since_epoch: std::time::Duration) -> Result<(), Errno> {
        let t = nix::sys::time::TimeSpec::from_duration(since_epoch);
        nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, t)
    }

    fn reboot(&self, mode: RebootMode) -> Errno {
        nix::unistd::sync();
        match nix::sys::reboot::reboot(mode) {
            Err(e) => e,
            Ok(never) => match never {},
        }
    }

    fn device_of(&self, path: &Path) -> Result<u64, Errno> {
        std::fs::metadata(path).map(|m| m.dev()).map_err(io_errno)
    }

    fn fs_magic(&self, path: &Path) -> Result<i64, Errno> {
        // f_type is signed in glibc (the host's tests) and unsigned in musl (the Pi's build).
        #[allow(clippy::unnecessary_cast)]
        nix::sys::statfs::statfs(path).map(|fs| fs.filesystem_type().0 as i64)
    }

    fn delete_tree(&self, dir: &Path, dev: u64) {
        delete_tree(dir, dev)
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
        ioctl::watchdog_set_timeout(dev, secs)
    }
}

/// Delete everything under `dir` that lives on device `dev`; other filesystems (the new
/// root, the NFS mount) are left alone. Failures are logged: the boot goes on.
pub fn delete_tree(dir: &Path, dev: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.dev() != dev {
            continue;
        }
        let r = if m.is_dir() {
            delete_tree(&p, dev);
            std::fs::remove_dir(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match r {
            // A directory holding a mount point (the new root under /mnt) stays: expected.
            Err(e) if m.is_dir() && e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
            Err(e) => log::debug!("initramfs cleanup: {}: {e}", p.display()),
            Ok(()) => {}
        }
    }
}
