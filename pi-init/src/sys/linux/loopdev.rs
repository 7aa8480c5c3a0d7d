//! Attaching a file to a loop device (the image overlay's persistent layer) through the loop
//! ioctls of `ioctl.rs`: LOOP_CTL_GET_FREE, then LOOP_CONFIGURE (Linux 5.8+), else
//! LOOP_SET_FD + LOOP_SET_STATUS64. Written here rather than with sys-mount, whose `loop`
//! feature needs libclang to build.

use super::ioctl::{self, LoopConfig, LoopInfo64};
use crate::sys::{io_errno, LoopDevice};
use nix::errno::Errno;
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LOOP_MAJOR: u64 = 7;

fn info(backing: &Path, read_only: bool) -> LoopInfo64 {
    let mut i = LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: LO_FLAGS_AUTOCLEAR | if read_only { LO_FLAGS_READ_ONLY } else { 0 },
        lo_file_name: [0; 64],
        lo_crypt_name: [0; 64],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    };
    let name = backing.as_os_str().as_encoded_bytes();
    let n = name.len().min(63);
    i.lo_file_name[..n].copy_from_slice(&name[..n]);
    i
}

/// Make `/dev/loopN` if devtmpfs has not (yet) created it.
fn device_node(n: u32) -> Result<PathBuf, Errno> {
    let path = PathBuf::from(format!("/dev/loop{n}"));
    if !path.exists() {
        let dev = nix::sys::stat::makedev(LOOP_MAJOR, n.into());
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o660);
        match nix::sys::stat::mknod(&path, nix::sys::stat::SFlag::S_IFBLK, mode, dev) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(path)
}

pub fn attach(backing: &Path, read_only: bool) -> Result<LoopDevice, Errno> {
    let file = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(backing)
        .map_err(io_errno)?;
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(io_errno)?;
    // Another process may take the free device between GET_FREE and the attach: try again.
    for _ in 0..8 {
        let n = ioctl::loop_get_free(&control)?;
        let path = device_node(n)?;
        let dev = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(&path)
            .map_err(io_errno)?;
        let cfg = LoopConfig {
            fd: file.as_raw_fd() as u32,
            block_size: 0,
            info: info(backing, read_only),
            reserved: [0; 8],
        };
        match ioctl::loop_configure(&dev, &cfg) {
            Ok(()) => {
                return Ok(LoopDevice {
                    path,
                    _held: Some(dev),
                })
            }
            Err(Errno::EBUSY) => continue,
            // Kernels before 5.8 lack LOOP_CONFIGURE.
            Err(Errno::EINVAL | Errno::ENOTTY) => {}
            Err(e) => return Err(e),
        }
        match ioctl::loop_set_fd(&dev, &file) {
            Ok(()) => {}
            Err(Errno::EBUSY) => continue,
            Err(e) => return Err(e),
        }
        let i = info(backing, read_only);
        if let Err(e) = ioctl::loop_set_status64(&dev, &i) {
            let _ = ioctl::loop_clr_fd(&dev);
            return Err(e);
        }
        return Ok(LoopDevice {
            path,
            _held: Some(dev),
        });
    }
    Err(Errno::EBUSY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_layout_matches_the_kernel() {
        // sizeof(struct loop_info64) == 232, sizeof(struct loop_config) == 304 on every arch.
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
        let i = info(Path::new("/mnt/nfs/nodes/d83add36/persist.img"), false);
        assert_eq!(i.lo_flags, LO_FLAGS_AUTOCLEAR);
        assert!(i
            .lo_file_name
            .starts_with(b"/mnt/nfs/nodes/d83add36/persist.img\0"));
        assert_eq!(
            info(Path::new(&"x".repeat(100)), true).lo_file_name[63],
            0,
            "NUL kept"
        );
        assert_eq!(
            info(Path::new("/x"), true).lo_flags,
            LO_FLAGS_AUTOCLEAR | LO_FLAGS_READ_ONLY
        );
    }

    /// Root only: attach a file and see the kernel report it as the backing file.
    #[test]
    fn attaches_a_file_when_root() {
        if !nix::unistd::geteuid().is_root() || !Path::new("/dev/loop-control").exists() {
            eprintln!("SKIPPED attaches_a_file_when_root: needs root and /dev/loop-control");
            return;
        }
        let d = crate::support::testutil::TempDir::new();
        let img = d.path().join("persist.img");
        std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
        let dev = attach(&img, true).expect("loop attach");
        let name = dev.path.file_name().unwrap().to_str().unwrap().to_string();
        let backing =
            std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).unwrap();
        assert_eq!(backing.trim(), img.to_str().unwrap());
        let ro = std::fs::read_to_string(format!("/sys/block/{name}/ro")).unwrap();
        assert_eq!(ro.trim(), "1");
        drop(dev); // autoclear detaches it
    }
}
