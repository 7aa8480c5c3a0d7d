//! Raw packet sockets, the one place that calls socket(2), bind(2), sendto(2) and recvmsg(2)
//! on them: an AF_PACKET/SOCK_DGRAM socket bound to one interface for ETH_P_IP, so IPv4
//! packets flow before the interface has an address (DHCP's transport,
//! `steps/net/dhcp/socket.rs`, is built on it). The kernel adds and strips the Ethernet
//! header; we send to the link broadcast address.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// <linux/if_packet.h>, not in the libc crate.
const PACKET_AUXDATA: libc::c_int = 8;
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;

/// `struct tpacket_auxdata`: the kernel's layout; only `tp_status` is read.
#[repr(C)]
#[allow(dead_code)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// One packet received: its length in the buffer, and whether its UDP checksum may still be
/// unfilled (left to offload by a sender on this host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    pub len: usize,
    pub csum_pending: bool,
}

pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
    /// Whether the kernel reports checksum status with each packet (PACKET_AUXDATA).
    aux: bool,
}

fn eth_p_ip() -> u16 {
    (libc::ETH_P_IP as u16).to_be()
}

fn link_addr(ifindex: i32, dest: [u8; 6]) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = eth_p_ip();
    sa.sll_ifindex = ifindex;
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&dest);
    sa
}

impl PacketSocket {
    pub fn open(iface: &str) -> io::Result<Self> {
        let name = CString::new(iface).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: name is a valid C string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: plain socket(2); the fd is owned immediately below.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                i32::from(eth_p_ip()),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sa = link_addr(ifindex, [0; 6]);
        // SAFETY: sa is a valid sockaddr_ll and the length matches it.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // Ask for each packet's status: a sender on this host (veth, bridges, VMs) may leave
        // the UDP checksum to offload, which a packet socket sees before it is filled in.
        let on: libc::c_int = 1;
        // SAFETY: valid option value pointer and length.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_AUXDATA,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        // Without it (an emulator may refuse the option) no packet's UDP checksum can be
        // trusted to be final; the IP header checksum, xid and MAC checks still apply.
        let aux = rc == 0;
        if !aux {
            log::debug!(
                "net: PACKET_AUXDATA: {}; UDP checksums unchecked",
                io::Error::last_os_error()
            );
        }
        Ok(PacketSocket { fd, ifindex, aux })
    }

    /// One packet without blocking; None for our own outgoing packets and EAGAIN/EINTR.
    pub fn recv_now(&self, buf: &mut [u8]) -> io::Result<Option<Datagram>> {
        // SAFETY: zeroed sockaddr_ll is valid.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        // u64 words keep the control buffer aligned for cmsghdr.
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain old data; fields set below point at live buffers.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: msg describes valid, writable buffers.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
                _ => Err(e),
            };
        }
        // A packet socket also sees what we send ourselves; skip those.
        if from.sll_pkttype == libc::PACKET_OUTGOING {
            return Ok(None);
        }
        let mut csum_pending = !self.aux;
        // SAFETY: walking the control messages the kernel wrote into `control`, per cmsg(3).
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_PACKET && (*cmsg).cmsg_type == PACKET_AUXDATA {
                    let aux: TpacketAuxdata =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    csum_pending = aux.tp_status & TP_STATUS_CSUMNOTREADY != 0;
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        Ok(Some(Datagram {
            len: n as usize,
            csum_pending,
        }))
    }

    /// Send `packet` to the link's broadcast address.
    pub fn send_broadcast(&self, packet: &[u8]) -> io::Result<()> {
        let sa = link_addr(self.ifindex, [0xff; 6]);
        // SAFETY: buffer and address are valid for the given lengths.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
