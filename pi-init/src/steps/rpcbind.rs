//! Whether a server's NFSv3 mount daemon answers, asked of its rpcbind before the kernel's v3
//! mount.
//!
//! The kernel's v3 mount asks port 111 for the mount daemon's port, then calls it with the
//! mount's own timeouts (60 s and two retries over TCP): a firewall that lets 111 through and
//! drops mountd's port (common where only `nfs` and `rpc-bind` were opened for NFSv4) holds the
//! boot for minutes before the v4 fallback. So pi-init asks first, as the kernel will (PMAP
//! GETPORT, RFC 1833 version 2, over TCP), and checks that mountd's port takes a connection.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// How long each step (connect, one answer, mountd's connect) may take.
pub const WAIT: Duration = Duration::from_millis(300);

const PMAP_PROG: u32 = 100_000;
const MOUNT_PROG: u32 = 100_005;
const IPPROTO_TCP: u32 = 6;

/// GETPORT(prog, vers, TCP) as one record-marked RPC call with AUTH_NULL.
pub fn getport_call(xid: u32, prog: u32, vers: u32) -> [u8; 60] {
    let words = [
        0x8000_0000 | 56, // the last (only) fragment, 56 bytes
        xid,
        0, // CALL
        2, // RPC version
        PMAP_PROG,
        2, // rpcbind's version 2: the portmapper protocol
        3, // PMAPPROC_GETPORT
        0, // credential: AUTH_NULL, no body
        0,
        0, // verifier: AUTH_NULL, no body
        0,
        prog,
        vers,
        IPPROTO_TCP,
        0,
    ];
    let mut out = [0u8; 60];
    for (chunk, w) in out.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// The port in a GETPORT reply (the record without its 4-byte mark) to call `xid`, accepted
/// and successful; None for anything else. 0 means not registered.
pub fn getport_reply(xid: u32, reply: &[u8]) -> Option<u16> {
    let word = |i: usize| {
        let b = reply.get(i * 4..i * 4 + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    // xid, REPLY, MSG_ACCEPTED, then the verifier: flavor and an opaque body padded to 4.
    if (word(0)?, word(1)?, word(2)?) != (xid, 1, 0) {
        return None;
    }
    let at = 5 + (word(4)? as usize).div_ceil(4);
    // accept_stat SUCCESS, then the port.
    if word(at)? != 0 {
        return None;
    }
    u16::try_from(word(at + 1)?).ok()
}

/// One GETPORT call on `s` for `prog` version 3 over TCP; a port of 0 (not registered) is
/// an error of kind NotFound.
fn ask(s: &mut TcpStream, xid: u32, prog: u32) -> io::Result<u16> {
    s.write_all(&getport_call(xid, prog, 3))?;
    // The answer is one 32-byte record: it comes in one segment, so in one read.
    let mut buf = [0u8; 128];
    let n = s.read(&mut buf)?;
    match buf.get(4..n).and_then(|r| getport_reply(xid, r)) {
        Some(0) => Err(io::ErrorKind::NotFound.into()),
        Some(port) => Ok(port),
        None => Err(io::ErrorKind::InvalidData.into()),
    }
}

/// Why mountd cannot be reached.
#[derive(Debug)]
pub enum MountdError {
    /// rpcbind answered that mountd v3 over TCP is not registered.
    NotRegistered,
    /// The port asked or connected to (111, or mountd's) did not answer.
    Port(u16, io::Error),
}

impl fmt::Display for MountdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountdError::NotRegistered => {
                f.write_str("mountd v3 over TCP not registered with rpcbind")
            }
            MountdError::Port(port, e) => write!(f, "port {port}: {e}"),
        }
    }
}

impl std::error::Error for MountdError {}

/// Asks `server`'s rpcbind where mountd v3 listens over TCP, then checks that its port takes
/// a connection; each step waits at most `wait`. Its port, or why not, naming the port.
pub fn mountd_within(server: IpAddr, wait: Duration) -> Result<u16, MountdError> {
    let connect = |port| TcpStream::connect_timeout(&SocketAddr::new(server, port), wait);
    let mut at = 111;
    let mut probe = || -> io::Result<u16> {
        let mut s = connect(111)?;
        // The call is 60 bytes into an empty send buffer: only the answer can stall.
        s.set_read_timeout(Some(wait))?;
        at = ask(&mut s, 1, MOUNT_PROG)?;
        connect(at)?;
        Ok(at)
    };
    probe().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => MountdError::NotRegistered,
        _ => MountdError::Port(at, e),
    })
}

/// [`mountd_within`] with [`WAIT`]: the boot's check.
pub fn mountd(server: IpAddr) -> Result<u16, MountdError> {
    mountd_within(server, WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};
    use std::os::fd::AsRawFd;

    #[test]
    fn the_call_is_getport_over_tcp_with_auth_null() {
        let c = getport_call(7, MOUNT_PROG, 3);
        let w: Vec<u32> = c
            .chunks(4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(
            w,
            [
                0x8000_0038,
                7,
                0,
                2,
                100_000,
                2,
                3,
                0,
                0,
                0,
                0,
                100_005,
                3,
                6,
                0
            ]
        );
    }

    fn words(w: &[u32]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_be_bytes()).collect()
    }

    #[test]
    fn replies_give_the_port_or_nothing() {
        assert_eq!(
            getport_reply(7, &words(&[7, 1, 0, 0, 0, 0, 20048])),
            Some(20048)
        );
        // A verifier with a 5-byte body, padded to 8.
        let r = words(&[7, 1, 0, 1, 5, 0, 0, 0, 2049]);
        assert_eq!(getport_reply(7, &r), Some(2049));
        assert_eq!(getport_reply(7, &words(&[7, 1, 0, 0, 0, 0, 0])), Some(0));
        assert!(getport_reply(8, &words(&[7, 1, 0, 0, 0, 0, 1])).is_none());
        assert!(getport_reply(7, &words(&[7, 1, 1, 0])).is_none());
        assert!(getport_reply(7, &words(&[7, 1, 0, 0, 0, 1])).is_none());
        assert!(getport_reply(7, &words(&[7, 1, 0, 0, 0, 0, 70_000])).is_none());
        assert!(getport_reply(7, &words(&[7, 1, 0, 0, 0, 0])).is_none());
        assert!(getport_reply(7, &words(&[7, 1, 0, 0, 9])).is_none());
    }

    /// A fake rpcbind on 127.0.0.1 that answers `port` to mountd's GETPORT, or, with `answer`
    /// false, takes the call and never replies.
    fn rpcbind(port: u32, answer: bool) -> std::thread::JoinHandle<()> {
        let l = TcpListener::bind("127.0.0.1:111").expect("port 111 free in the test's netns");
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut call = [0u8; 60];
            s.read_exact(&mut call).unwrap();
            assert_eq!(call, getport_call(1, MOUNT_PROG, 3));
            if !answer {
                std::thread::sleep(Duration::from_millis(600));
                return;
            }
            s.write_all(&words(&[0x8000_001c, 1, 1, 0, 0, 0, 0, port]))
                .unwrap();
        })
    }

    /// A listener on 127.0.0.1 with a backlog of 0 and its one queued connection taken, so
    /// that it drops every further SYN; its port, and what keeps it so.
    fn full_listener() -> (u16, std::os::fd::OwnedFd, TcpStream) {
        use nix::sys::socket::*;
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .unwrap();
        bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).unwrap();
        listen(&fd, Backlog::new(0).unwrap()).unwrap();
        let port = getsockname::<SockaddrIn>(fd.as_raw_fd()).unwrap().port();
        let queued = TcpStream::connect(("127.0.0.1", port)).unwrap();
        (port, fd, queued)
    }

    /// Against real sockets: needs its own network namespace for port 111 (root).
    #[test]
    fn the_probe_asks_rpcbind_then_checks_mountd() {
        if !crate::support::testutil::in_new_netns("the rpcbind probe (binds port 111)") {
            return;
        }
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mountd = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = mountd.local_addr().unwrap().port();
        let t = rpcbind(port.into(), true);
        assert_eq!(mountd_within(lo, WAIT).unwrap(), port);
        t.join().unwrap();
        // Registered at a port that drops connections (a listener whose queue is full drops
        // SYNs, as a firewall would): the probe gives up after WAIT, not the kernel's minutes.
        let full = full_listener();
        let dropped = full.0;
        let t = rpcbind(dropped.into(), true);
        let started = std::time::Instant::now();
        let e = mountd_within(lo, WAIT).unwrap_err().to_string();
        assert!(e.starts_with(&format!("port {dropped}: ")), "{e}");
        assert!(started.elapsed() < WAIT * 3, "{:?}", started.elapsed());
        t.join().unwrap();
        drop(full);
        // Registered at a port nothing listens on.
        drop(mountd);
        let t = rpcbind(port.into(), true);
        let e = mountd_within(lo, WAIT).unwrap_err().to_string();
        assert!(e.starts_with(&format!("port {port}: ")), "{e}");
        t.join().unwrap();
        // Not registered.
        let t = rpcbind(0, true);
        let e = mountd_within(lo, WAIT).unwrap_err().to_string();
        assert_eq!(e, "mountd v3 over TCP not registered with rpcbind");
        t.join().unwrap();
        // rpcbind takes the connection and says nothing: the read times out.
        let t = rpcbind(1, false);
        let e = mountd_within(lo, WAIT).unwrap_err().to_string();
        assert!(
            e.starts_with("port 111: ") && e.contains("os error 11"),
            "{e}"
        );
        t.join().unwrap();
        // Nothing on port 111 at all.
        let e = mountd_within(lo, WAIT).unwrap_err().to_string();
        assert!(e.starts_with("port 111: ") && e.contains("refused"), "{e}");
    }
}
