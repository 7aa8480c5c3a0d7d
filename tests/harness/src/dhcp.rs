//! A minimal DHCP client for tests: sends one DISCOVER shaped like a Raspberry Pi boot ROM's
//! (PXE vendor class, client architecture 0, UUID) from an interface inside a namespace, and
//! parses the OFFERs that come back. Only what the proxy-DHCP test needs.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

pub const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// A DISCOVER from `mac` with transaction id `xid`.
pub fn discover(mac: [u8; 6], xid: u32) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[10] = 0x80; // broadcast flag: the client has no address yet
    p[28..34].copy_from_slice(&mac);
    p.extend(MAGIC);
    let mut option = |code: u8, data: &[u8]| {
        p.push(code);
        p.push(data.len() as u8);
        p.extend_from_slice(data);
    };
    option(53, &[1]); // DISCOVER
    option(60, b"PXEClient:Arch:00000:UNDI:002001");
    option(93, &[0, 0]); // client architecture: 0
    option(94, &[1, 2, 1]); // UNDI 2.1
    let mut uuid = vec![0u8];
    uuid.extend([0x44; 16]);
    option(97, &uuid);
    option(55, &[1, 3, 43, 54, 60, 66, 67]);
    p.push(255);
    p
}

/// A BOOTREPLY: its fields and options.
#[derive(Debug, Clone)]
pub struct Reply {
    pub xid: u32,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub options: BTreeMap<u8, Vec<u8>>,
}

impl Reply {
    pub fn parse(p: &[u8]) -> Option<Reply> {
        if p.len() < 240 || p[0] != 2 || p[236..240] != MAGIC {
            return None;
        }
        let mut options = BTreeMap::new();
        let mut i = 240;
        while i < p.len() {
            match p[i] {
                0 => i += 1,
                255 => break,
                code => {
                    let len = *p.get(i + 1)? as usize;
                    let data = p.get(i + 2..i + 2 + len)?;
                    options.entry(code).or_insert_with(Vec::new).extend(data);
                    i += 2 + len;
                }
            }
        }
        let ip = |at: usize| Ipv4Addr::new(p[at], p[at + 1], p[at + 2], p[at + 3]);
        Some(Reply {
            xid: u32::from_be_bytes(p[4..8].try_into().ok()?),
            yiaddr: ip(16),
            siaddr: ip(20),
            options,
        })
    }

    pub fn message_type(&self) -> Option<u8> {
        self.options.get(&53).and_then(|v| v.first().copied())
    }
}

/// Broadcasts `packet` from port 68 on `interface` (the calling thread's network namespace)
/// and collects the replies with the packet's xid for `wait`. Needs root.
pub fn exchange(interface: &str, packet: &[u8], wait: Duration) -> Result<Vec<Reply>, String> {
    let xid = u32::from_be_bytes(packet[4..8].try_into().unwrap());
    // SAFETY: plain socket calls on a descriptor this function owns; it is handed to
    // UdpSocket (which closes it) right after set-up.
    let socket = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let socket = UdpSocket::from_raw_fd(fd);
        let one: libc::c_int = 1;
        for opt in [libc::SO_BROADCAST, libc::SO_REUSEADDR] {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of_val(&one) as libc::socklen_t,
            );
        }
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            interface.as_ptr() as *const libc::c_void,
            interface.len() as libc::socklen_t,
        );
        if rc != 0 {
            return Err(format!(
                "SO_BINDTODEVICE {interface}: {}",
                std::io::Error::last_os_error()
            ));
        }
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 68u16.to_be(),
            sin_addr: libc::in_addr { s_addr: 0 },
            sin_zero: [0; 8],
        };
        if libc::bind(
            fd,
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of_val(&addr) as libc::socklen_t,
        ) != 0
        {
            return Err(format!("bind :68: {}", std::io::Error::last_os_error()));
        }
        socket
    };
    socket
        .send_to(packet, (Ipv4Addr::BROADCAST, 67))
        .map_err(|e| format!("sending the DISCOVER: {e}"))?;
    let mut replies = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 1500];
    while start.elapsed() < wait {
        let left = wait
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(10));
        socket
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                if let Some(reply) = Reply::parse(&buf[..n]).filter(|r| r.xid == xid) {
                    replies.push(reply);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("receiving: {e}")),
        }
    }
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discover_is_a_pxe_request_and_a_reply_parses() {
        let p = discover([0xb8, 0x27, 0xeb, 1, 2, 3], 0x1234_5678);
        assert_eq!(&p[236..240], &MAGIC);
        assert_eq!(&p[28..34], &[0xb8, 0x27, 0xeb, 1, 2, 3]);
        let text = String::from_utf8_lossy(&p);
        assert!(text.contains("PXEClient:Arch:00000"));
        // Turn it into a reply: op 2, a server address, options 53=2 and 43.
        let mut r = p[..240].to_vec();
        r[0] = 2;
        r[20..24].copy_from_slice(&[10, 99, 0, 1]);
        r.extend([53, 1, 2, 43, 3, b'a', b'b', b'c', 0, 43, 1, b'd', 255]);
        let reply = Reply::parse(&r).unwrap();
        assert_eq!(reply.xid, 0x1234_5678);
        assert_eq!(reply.message_type(), Some(2));
        assert_eq!(reply.siaddr, Ipv4Addr::new(10, 99, 0, 1));
        // A long option split in two is joined (RFC 3396).
        assert_eq!(reply.options[&43], b"abcd");
        assert!(Reply::parse(&p).is_none(), "a request is not a reply");
    }
}
