//! Every ioctl(2) pi-init makes, each behind a safe function taking the struct its request
//! expects: the classic interface ioctls (SIOC*, `struct ifreq` / `struct rtentry`) on a
//! throwaway AF_INET datagram socket for the network step, the loop device's (`struct
//! loop_config` / `struct loop_info64`, used by `loopdev.rs`) and the watchdog's timeout.

use nix::errno::Errno;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct ControlSocket(OwnedFd);

impl ControlSocket {
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned immediately.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor we own.
        Ok(ControlSocket(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ioctl<T>(&self, request: libc::c_ulong, arg: &mut T) -> io::Result<()> {
        // SAFETY: every caller passes the struct type the request expects (ifreq or rtentry).
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), request as _, arg as *mut T) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    pub fn flags(&self, iface: &str) -> io::Result<libc::c_short> {
        let mut req = ifreq(iface)?;
        self.ioctl(libc::SIOCGIFFLAGS, &mut req)?;
        // SAFETY: SIOCGIFFLAGS filled ifru_flags.
        Ok(unsafe { req.ifr_ifru.ifru_flags })
    }

    pub fn set_flags(&self, iface: &str, flags: libc::c_short) -> io::Result<()> {
        let mut req = ifreq(iface)?;
        req.ifr_ifru.ifru_flags = flags;
        self.ioctl(libc::SIOCSIFFLAGS, &mut req)
    }

    pub fn set_addr(&self, iface: &str, addr: Ipv4Addr) -> io::Result<()> {
        let mut req = ifreq(iface)?;
        req.ifr_ifru.ifru_addr = sockaddr(addr);
        self.ioctl(libc::SIOCSIFADDR, &mut req)
    }

    pub fn set_netmask(&self, iface: &str, mask: Ipv4Addr) -> io::Result<()> {
        let mut req = ifreq(iface)?;
        req.ifr_ifru.ifru_netmask = sockaddr(mask);
        self.ioctl(libc::SIOCSIFNETMASK, &mut req)
    }

    /// SIOCADDRT: `dst/mask` via `gateway` (or directly on the link when None) on `iface`.
    pub fn add_route(
        &self,
        iface: &str,
        dst: Ipv4Addr,
        mask: Ipv4Addr,
        gateway: Option<Ipv4Addr>,
    ) -> io::Result<()> {
        let mut dev = std::ffi::CString::new(iface)
            .map_err(|_| io::ErrorKind::InvalidInput)?
            .into_bytes_with_nul();
        let mut flags = libc::RTF_UP;
        if gateway.is_some() {
            flags |= libc::RTF_GATEWAY;
        }
        if mask == Ipv4Addr::BROADCAST {
            flags |= libc::RTF_HOST;
        }
        let mut rt = RtEntry {
            rt_dst: sockaddr(dst),
            rt_gateway: sockaddr(gateway.unwrap_or(Ipv4Addr::UNSPECIFIED)),
            rt_genmask: sockaddr(mask),
            rt_flags: flags,
            rt_dev: dev.as_mut_ptr().cast(),
            ..RtEntry::default()
        };
        self.ioctl(libc::SIOCADDRT, &mut rt)
    }
}

fn ifreq(iface: &str) -> io::Result<libc::ifreq> {
    let name = iface.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {iface:?}"),
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

fn sockaddr(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes); this is how the
    // kernel's ioctl ABI expects an IPv4 address in a generic sockaddr slot.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// `struct rtentry` from <net/route.h>: the libc crate defines it for musl but not glibc.
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

impl Default for RtEntry {
    fn default() -> Self {
        // SAFETY: integers, sockaddrs and null pointers: all-zero is valid.
        unsafe { std::mem::zeroed() }
    }
}

/// `WDIOC_SETTIMEOUT` = _IOWR('W', 6, int).
const WDIOC_SETTIMEOUT: libc::c_ulong = 0xC004_5706;

/// WDIOC_SETTIMEOUT on an open watchdog device: the timeout it took (it may round).
pub fn watchdog_set_timeout(dev: &File, secs: i32) -> Result<i32, Errno> {
    let mut secs: libc::c_int = secs;
    // SAFETY: WDIOC_SETTIMEOUT reads and writes one int through the pointer, which is live.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), WDIOC_SETTIMEOUT as _, &mut secs) };
    Errno::result(r).map(|_| secs)
}

const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;

/// `struct loop_info64` of <linux/loop.h>.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct LoopInfo64 {
    pub lo_device: u64,
    pub lo_inode: u64,
    pub lo_rdevice: u64,
    pub lo_offset: u64,
    pub lo_sizelimit: u64,
    pub lo_number: u32,
    pub lo_encrypt_type: u32,
    pub lo_encrypt_key_size: u32,
    pub lo_flags: u32,
    pub lo_file_name: [u8; 64],
    pub lo_crypt_name: [u8; 64],
    pub lo_encrypt_key: [u8; 32],
    pub lo_init: [u64; 2],
}

/// `struct loop_config` of <linux/loop.h>.
#[repr(C)]
pub struct LoopConfig {
    pub fd: u32,
    pub block_size: u32,
    pub info: LoopInfo64,
    pub reserved: [u64; 8],
}

/// A loop request whose argument is an integer (or none).
fn loop_int(fd: &File, req: libc::c_ulong, arg: libc::c_ulong) -> Result<libc::c_int, Errno> {
    // SAFETY: LOOP_CTL_GET_FREE, LOOP_SET_FD and LOOP_CLR_FD read their argument as an
    // integer (a descriptor or nothing); no memory is passed.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg) };
    Errno::result(r)
}

/// LOOP_CTL_GET_FREE on /dev/loop-control: the number of a free loop device.
pub fn loop_get_free(control: &File) -> Result<u32, Errno> {
    loop_int(control, LOOP_CTL_GET_FREE, 0).map(|n| n as u32)
}

/// LOOP_SET_FD: back `dev` with `backing`.
pub fn loop_set_fd(dev: &File, backing: &File) -> Result<(), Errno> {
    loop_int(dev, LOOP_SET_FD, backing.as_raw_fd() as libc::c_ulong).map(drop)
}

/// LOOP_CLR_FD: detach `dev`.
pub fn loop_clr_fd(dev: &File) -> Result<(), Errno> {
    loop_int(dev, LOOP_CLR_FD, 0).map(drop)
}

/// A loop request whose argument is one struct the kernel reads.
trait LoopArg {
    const REQUEST: libc::c_ulong;
}

impl LoopArg for LoopConfig {
    const REQUEST: libc::c_ulong = LOOP_CONFIGURE;
}

impl LoopArg for LoopInfo64 {
    const REQUEST: libc::c_ulong = LOOP_SET_STATUS64;
}

fn loop_struct<T: LoopArg>(dev: &File, arg: &T) -> Result<(), Errno> {
    // SAFETY: LOOP_CONFIGURE reads one struct loop_config and LOOP_SET_STATUS64 one struct
    // loop_info64; `T::REQUEST` pairs each request with its struct (repr(C), sizes checked
    // against the kernel's in loopdev's tests), live for the call.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), T::REQUEST as _, arg as *const T) };
    Errno::result(r).map(drop)
}

/// LOOP_CONFIGURE (Linux 5.8+): back and configure `dev` in one call.
pub fn loop_configure(dev: &File, cfg: &LoopConfig) -> Result<(), Errno> {
    loop_struct(dev, cfg)
}

/// LOOP_SET_STATUS64: set `dev`'s flags and name.
pub fn loop_set_status64(dev: &File, info: &LoopInfo64) -> Result<(), Errno> {
    loop_struct(dev, info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_rejects_names_the_kernel_would_truncate() {
        assert!(ifreq("eth0").is_ok());
        assert!(ifreq("").is_err());
        assert!(ifreq("sixteen-chars-xx").is_err());
        assert!(ifreq("a\0b").is_err());
    }

    #[test]
    fn sockaddr_holds_the_address_in_network_order() {
        let sa = sockaddr(Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(sa.sa_family, libc::AF_INET as libc::sa_family_t);
        // sa_data: 2 bytes port, then the address bytes as on the wire.
        let data: Vec<u8> = sa.sa_data[..6].iter().map(|&b| b as u8).collect();
        assert_eq!(data, [0, 0, 10, 0, 2, 15]);
    }

    #[test]
    fn rtentry_has_the_kernel_layout() {
        // struct rtentry is 120 bytes on LP64 (x86_64, aarch64), 84 on ILP32.
        let want = if cfg!(target_pointer_width = "64") {
            120
        } else {
            84
        };
        assert_eq!(std::mem::size_of::<RtEntry>(), want);
    }
}
