//! Giving a DHCP address a lifetime, through rtnetlink (`RTM_NEWADDR` with `NLM_F_REPLACE`
//! and `IFA_CACHEINFO`): the ioctl that set it (`SIOCSIFADDR`) can only make it permanent.
//!
//! Why: NetworkManager takes over a running DHCP connection (as after its own restart, or
//! from an initrd) only when the address on the interface has a finite lifetime; a
//! permanent one reads as "manual", and NetworkManager then wraps it in an external
//! connection that it never renews. The lifetime given is the largest finite one (about 136
//! years), so a root with no DHCP client never loses the address either.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use nix::sys::socket::SockType;
use nix::sys::socket::{self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol};

/// The largest finite lifetime (`0xffffffff` is the kernel's "forever").
pub const LONGEST_FINITE: u32 = u32::MAX - 1;

const RTM_NEWADDR: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_CACHEINFO: u16 = 6;
const AF_INET: u8 = 2;
const NLMSG_ERROR: u16 = 2;

/// The request replacing `addr/prefix` on interface `ifindex` with itself, `valid` and
/// `preferred` seconds of lifetime.
pub fn request(ifindex: u32, addr: Ipv4Addr, prefix: u8, valid: u32, preferred: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(60);
    let attr = |m: &mut Vec<u8>, kind: u16, data: &[u8]| {
        m.extend_from_slice(&(4 + data.len() as u16).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(data);
    };
    // nlmsghdr: length (filled below), type, flags, sequence, port id.
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&RTM_NEWADDR.to_ne_bytes());
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE | NLM_F_CREATE;
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // ifaddrmsg: family, prefix length, flags, scope (universe), index.
    m.extend_from_slice(&[AF_INET, prefix, 0, 0]);
    m.extend_from_slice(&ifindex.to_ne_bytes());
    attr(&mut m, IFA_LOCAL, &addr.octets());
    attr(&mut m, IFA_ADDRESS, &addr.octets());
    // ifa_cacheinfo: preferred, valid, then two timestamps the kernel fills in.
    let mut info = Vec::with_capacity(16);
    for v in [preferred, valid, 0, 0] {
        info.extend_from_slice(&v.to_ne_bytes());
    }
    attr(&mut m, IFA_CACHEINFO, &info);
    let len = m.len() as u32;
    m[..4].copy_from_slice(&len.to_ne_bytes());
    m
}

/// The kernel's answer to a request with `NLM_F_ACK`: `Ok` for an error code of 0.
fn check_ack(reply: &[u8]) -> std::io::Result<()> {
    let kind = reply.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let code = reply
        .get(16..20)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (kind, code) {
        (Some(NLMSG_ERROR), Some(0)) => Ok(()),
        (Some(NLMSG_ERROR), Some(e)) => Err(std::io::Error::from_raw_os_error(-e)),
        _ => Err(std::io::Error::other("no netlink acknowledgement")),
    }
}

/// Gives `addr/prefix` on `ifindex` the lifetime `secs` (valid and preferred).
pub fn set(ifindex: u32, addr: Ipv4Addr, prefix: u8, secs: u32) -> std::io::Result<()> {
    let fd = socket::socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
    let req = request(ifindex, addr, prefix, secs, secs);
    socket::send(fd.as_raw_fd(), &req, MsgFlags::empty())?;
    let mut buf = [0u8; 256];
    let n = socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    check_ack(&buf[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_replaces_the_address_with_a_lifetime() {
        let m = request(2, Ipv4Addr::new(10, 0, 3, 53), 24, LONGEST_FINITE, 7);
        assert_eq!(m.len(), 16 + 8 + 8 + 8 + 20);
        assert_eq!(
            u32::from_ne_bytes(m[..4].try_into().unwrap()),
            m.len() as u32
        );
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), RTM_NEWADDR);
        let flags = u16::from_ne_bytes([m[6], m[7]]);
        assert_eq!(flags & NLM_F_REPLACE, NLM_F_REPLACE);
        assert_eq!(&m[16..20], &[AF_INET, 24, 0, 0]);
        assert_eq!(u32::from_ne_bytes(m[20..24].try_into().unwrap()), 2);
        assert_eq!(&m[28..32], &[10, 0, 3, 53]);
        assert_eq!(&m[36..40], &[10, 0, 3, 53]);
        // IFA_CACHEINFO: preferred first, then valid.
        assert_eq!(u16::from_ne_bytes([m[42], m[43]]), IFA_CACHEINFO);
        assert_eq!(u32::from_ne_bytes(m[44..48].try_into().unwrap()), 7);
        assert_eq!(
            u32::from_ne_bytes(m[48..52].try_into().unwrap()),
            LONGEST_FINITE
        );
    }

    #[test]
    fn acks_are_read_with_their_error() {
        let ack = |code: i32| {
            let mut r = vec![0u8; 36];
            r[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
            r[16..20].copy_from_slice(&code.to_ne_bytes());
            r
        };
        assert!(check_ack(&ack(0)).is_ok());
        let e = check_ack(&ack(-libc::EPERM)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        assert!(check_ack(&[0u8; 3]).is_err());
    }
}
