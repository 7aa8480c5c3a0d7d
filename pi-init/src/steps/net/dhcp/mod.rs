//! The built-in DHCPv4 client: DISCOVER -> OFFER -> REQUEST -> ACK (a NAK starts over),
//! retransmitting with exponential backoff inside one overall deadline.
//!
//! `exchange` is written against the `Transport` trait so its timing and filtering are tested
//! with a scripted fake; the real transport is the AF_PACKET socket of `sys/linux/socket.rs`
//! (`socket.rs` here makes it one).

mod frame;
pub mod message;
mod socket;

use std::io;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::config::Setting;
use super::NetError;
use crate::decide::ip_param::{classful_netmask, prefix_len};
use message::{Client, MsgType, Reply};

/// First retransmission interval, doubled after each unanswered send (RFC 2131 suggests 4 s
/// doubling; a LAN server answers in milliseconds, so start much lower to keep boots fast).
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(4);

/// What the server granted: the interface setting, plus what only DHCP tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub setting: Setting,
    pub hostname: Option<String>,
    /// Option 17, the NFS root path.
    pub root_path: Option<String>,
    pub lease_secs: Option<u32>,
    /// The server's identifier (option 54): where a renewal goes.
    pub server_id: Option<Ipv4Addr>,
}

/// Sends and receives whole IPv4 packets on one interface.
pub trait Transport {
    fn send(&mut self, packet: &[u8]) -> io::Result<()>;
    /// Wait at most `timeout` for one packet; `Ok(None)` when none came.
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<Received>>;
}

/// One received packet: its length in the buffer, and whether its UDP checksum was left to
/// offload (a sender on this host) and so cannot be checked yet.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub len: usize,
    pub csum_pending: bool,
}

/// Why no lease was had: the phase it was in (`OFFER` or `ACK`) and what stopped it.
#[derive(Debug)]
pub enum DhcpError {
    /// The deadline passed: `(awaiting, requests sent, other packets ignored)`.
    Timeout(&'static str, u32, u32),
    Send(&'static str, std::io::Error),
    Receive(&'static str, std::io::Error),
}

impl std::fmt::Display for DhcpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DhcpError::Timeout(awaiting, sent, ignored) => write!(
                f,
                "no {awaiting} after {sent} attempts ({ignored} other packets ignored) within the DHCP timeout"
            ),
            DhcpError::Send(awaiting, e) => write!(f, "sending for {awaiting}: {e}"),
            DhcpError::Receive(awaiting, e) => write!(f, "receiving {awaiting}: {e}"),
        }
    }
}

impl std::error::Error for DhcpError {}

/// Why a received packet is not a reply to us (logged, then ignored).
#[derive(Debug)]
enum NotOurs {
    Frame(frame::FrameError),
    /// `(source port, destination port)`.
    Ports(u16, u16),
    Message(message::ParseError),
}

impl std::fmt::Display for NotOurs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotOurs::Frame(e) => write!(f, "{e:?}"),
            NotOurs::Ports(from, to) => write!(f, "udp port {from} -> {to}"),
            NotOurs::Message(e) => e.fmt(f),
        }
    }
}

/// Run DHCP on `iface` until a lease is acknowledged or `timeout` passes.
pub fn obtain_lease(
    iface: &str,
    mac: &str,
    hostname: Option<&str>,
    timeout: Duration,
) -> Result<Lease, NetError> {
    let fail = |msg: String| NetError::new("dhcp", Some(iface), msg);
    let mac = super::link::mac_bytes(mac).ok_or_else(|| fail(format!("bad MAC {mac:?}")))?;
    let mut sock = crate::sys::linux::socket::PacketSocket::open(iface)
        .map_err(|e| fail(format!("AF_PACKET socket: {e}")))?;
    let client = Client {
        mac,
        hostname: hostname.map(str::to_owned),
    };
    let started = Instant::now();
    let lease = run(&mut sock, &client, initial_xid(&mac), started + timeout)
        .map_err(|e| fail(e.to_string()))?;
    let s = &lease.setting;
    log::info!(
        "net: dhcp lease {}/{} gateway {:?} dns {:?} from {:?} for {:?} s (name {:?}) in {} ms",
        s.addr,
        s.prefix_len,
        s.gateway,
        s.dns,
        s.server,
        lease.lease_secs,
        lease.hostname,
        started.elapsed().as_millis()
    );
    // Closing a packet socket waits for an RCU grace period (synchronize_net), which takes
    // 100 ms and more while another CPU is deep in a module load: close it off this path.
    // (Without a thread the closure, and the socket, are dropped here.)
    let _ = std::thread::Builder::new().spawn(move || drop(sock));
    Ok(lease)
}

/// The whole exchange; the error names the phase that ran out of time.
pub fn run(
    t: &mut impl Transport,
    client: &Client,
    xid: u32,
    deadline: Instant,
) -> Result<Lease, DhcpError> {
    let mut s = Session {
        t,
        client,
        xid,
        started: Instant::now(),
        deadline,
    };
    loop {
        let offer = s.exchange(
            "OFFER",
            |c, xid, secs| c.discover(xid, secs),
            |r| r.kind == MsgType::Offer,
        )?;
        let server = offer.options.server_id;
        log::debug!("net: dhcp offer {} from {:?}", offer.yiaddr, server);
        let answer = s.exchange(
            "ACK",
            |c, xid, secs| c.request(xid, secs, offer.yiaddr, server),
            // Only the chosen server's answer counts (others may answer the broadcast REQUEST).
            |r| {
                matches!(r.kind, MsgType::Ack | MsgType::Nak)
                    && (server.is_none() || r.options.server_id == server)
            },
        )?;
        if answer.kind == MsgType::Ack {
            return Ok(lease_from(&answer, &offer));
        }
        log::warn!(
            "net: dhcp server {server:?} refused {} (NAK); starting over",
            offer.yiaddr
        );
        s.xid = s.xid.wrapping_add(1);
    }
}

/// One conversation: who asks, the current transaction id, and when to give up.
struct Session<'a, T: Transport> {
    t: &'a mut T,
    client: &'a Client,
    xid: u32,
    started: Instant,
    deadline: Instant,
}

impl<T: Transport> Session<'_, T> {
    /// The `secs` field: seconds since the client began (servers may prioritise by it).
    fn secs(&self) -> u16 {
        self.started.elapsed().as_secs().min(u64::from(u16::MAX)) as u16
    }

    /// Send what `build` makes, retransmitting with backoff, until a reply passes `wanted`.
    fn exchange(
        &mut self,
        awaiting: &'static str,
        build: impl Fn(&Client, u32, u16) -> Vec<u8>,
        wanted: impl Fn(&Reply) -> bool,
    ) -> Result<Reply, DhcpError> {
        let mut buf = vec![0u8; 2048];
        let mut interval = FIRST_RETRY;
        let (mut sent, mut ignored) = (0u32, 0u32);
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                return Err(DhcpError::Timeout(awaiting, sent, ignored));
            }
            let packet = frame::build(
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::BROADCAST,
                frame::CLIENT_PORT,
                frame::SERVER_PORT,
                &build(self.client, self.xid, self.secs()),
            );
            self.t
                .send(&packet)
                .map_err(|e| DhcpError::Send(awaiting, e))?;
            sent += 1;
            let resend_at = (now + interval).min(self.deadline);
            while let Some(left) = resend_at
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            {
                let received = self.t.recv(&mut buf, left);
                let Some(got) = received.map_err(|e| DhcpError::Receive(awaiting, e))? else {
                    break;
                };
                match accept(
                    &buf[..got.len],
                    !got.csum_pending,
                    self.xid,
                    &self.client.mac,
                ) {
                    Ok(reply) if wanted(&reply) => return Ok(reply),
                    Ok(reply) => {
                        log::debug!(
                            "net: dhcp ignoring {:?} while awaiting {awaiting}",
                            reply.kind
                        )
                    }
                    Err(why) => {
                        ignored += 1;
                        log::trace!("net: dhcp ignoring packet: {why}");
                    }
                }
            }
            interval = (interval * 2).min(MAX_RETRY);
        }
    }
}

/// A received packet, if it is a DHCP reply to us.
fn accept(packet: &[u8], check_udp_sum: bool, xid: u32, mac: &[u8; 6]) -> Result<Reply, NotOurs> {
    let d = frame::parse(packet, check_udp_sum).map_err(NotOurs::Frame)?;
    if d.dport != frame::CLIENT_PORT || d.sport != frame::SERVER_PORT {
        return Err(NotOurs::Ports(d.sport, d.dport));
    }
    let reply = message::parse_reply(d.payload, xid, mac).map_err(NotOurs::Message)?;
    log::debug!("net: dhcp {:?} from {} to {}", reply.kind, d.src, d.dst);
    Ok(reply)
}

/// The lease from an ACK; options the ACK leaves out are taken from the OFFER.
fn lease_from(ack: &Reply, offer: &Reply) -> Lease {
    let (a, o) = (&ack.options, &offer.options);
    let mask = a
        .subnet_mask
        .or(o.subnet_mask)
        .unwrap_or_else(|| classful_netmask(ack.yiaddr));
    let routers = if a.routers.is_empty() {
        &o.routers
    } else {
        &a.routers
    };
    let dns = if a.dns.is_empty() { &o.dns } else { &a.dns };
    let siaddr = Some(ack.siaddr).filter(|s| !s.is_unspecified());
    let setting = Setting {
        addr: ack.yiaddr,
        // A non-contiguous mask from a broken server: fall back to the class default.
        prefix_len: prefix_len(mask)
            .or_else(|| prefix_len(classful_netmask(ack.yiaddr)))
            .unwrap_or(24),
        gateway: routers.first().copied(),
        dns: dns.clone(),
        // The boot server is next-server (siaddr), as the kernel's ipconfig takes it: that is
        // how a site's DHCP points netboot clients at another host. The DHCP server's own
        // identifier (option 54) only where next-server is unset.
        server: siaddr.or(a.server_id).or(o.server_id),
        domain: a.domain.clone().or_else(|| o.domain.clone()),
    };
    let derived =
        u32::from(setting.addr) | !u32::from(crate::decide::ip_param::netmask(setting.prefix_len));
    if let Some(b) = a
        .broadcast
        .or(o.broadcast)
        .filter(|b| u32::from(*b) != derived)
    {
        // SIOCSIFNETMASK derives the broadcast address; a server disagreeing is misconfigured.
        log::warn!(
            "net: dhcp broadcast option {b} ignored; using {}",
            Ipv4Addr::from(derived)
        );
    }
    Lease {
        setting,
        hostname: a.hostname.clone().or_else(|| o.hostname.clone()),
        root_path: a.root_path.clone().or_else(|| o.root_path.clone()),
        lease_secs: a.lease_secs.or(o.lease_secs),
        server_id: a.server_id.or(o.server_id),
    }
}

/// Different per machine (MAC) and per boot (clock), without blocking on the entropy pool,
/// which may not be initialised this early.
fn initial_xid(mac: &[u8; 6]) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mac_word = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]) ^ u32::from(mac[1]) << 24;
    mac_word.rotate_left(7) ^ nanos ^ std::process::id()
}

#[cfg(test)]
mod tests {
    use super::message::tests::{reply, slirp_offer_options, MAC, XID};
    use super::*;
    use std::collections::VecDeque;

    /// Answers each send with the next scripted reply (or nothing), recording what was sent.
    struct Scripted {
        answers: VecDeque<Option<Vec<u8>>>,
        sent: Vec<Vec<u8>>,
        pending: Option<Vec<u8>>,
    }

    impl Scripted {
        fn new(answers: Vec<Option<Vec<u8>>>) -> Self {
            Scripted {
                answers: answers.into(),
                sent: Vec::new(),
                pending: None,
            }
        }
        fn sent_types(&self) -> Vec<u8> {
            // option 53 is the first option we write: right after the magic cookie.
            self.sent.iter().map(|p| p[28 + 240 + 2]).collect()
        }
    }

    impl Transport for Scripted {
        fn send(&mut self, packet: &[u8]) -> io::Result<()> {
            assert!(
                frame::parse(packet, true).is_ok(),
                "client sent a malformed frame"
            );
            self.sent.push(packet.to_vec());
            self.pending = self.answers.pop_front().flatten();
            Ok(())
        }
        fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<Received>> {
            match self.pending.take() {
                Some(p) => {
                    buf[..p.len()].copy_from_slice(&p);
                    Ok(Some(Received {
                        len: p.len(),
                        csum_pending: false,
                    }))
                }
                None => {
                    std::thread::sleep(timeout);
                    Ok(None)
                }
            }
        }
    }

    fn from_server(dhcp: Vec<u8>) -> Option<Vec<u8>> {
        Some(frame::build(
            Ipv4Addr::new(10, 0, 2, 2),
            Ipv4Addr::BROADCAST,
            67,
            68,
            &dhcp,
        ))
    }

    fn client() -> Client {
        Client {
            mac: MAC,
            hostname: None,
        }
    }

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[test]
    fn discover_offer_request_ack() {
        let mut t = Scripted::new(vec![
            from_server(reply(XID, [10, 0, 2, 15], &slirp_offer_options(2))),
            from_server(reply(XID, [10, 0, 2, 15], &slirp_offer_options(5))),
        ]);
        let lease = run(&mut t, &client(), XID, soon(5000)).unwrap();
        assert_eq!(t.sent_types(), [1, 3]);
        assert_eq!(lease.setting.addr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(lease.setting.prefix_len, 24);
        assert_eq!(lease.setting.gateway, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(lease.setting.dns, [Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!(lease.setting.server, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(lease.lease_secs, Some(86400));
    }

    #[test]
    fn retransmits_after_silence_and_ignores_foreign_packets() {
        let mut t = Scripted::new(vec![
            None,
            from_server(reply(XID ^ 1, [10, 0, 2, 99], &slirp_offer_options(2))), // someone else's
            from_server(reply(XID, [10, 0, 2, 15], &slirp_offer_options(2))),
            from_server(reply(XID, [10, 0, 2, 15], &slirp_offer_options(5))),
        ]);
        let started = Instant::now();
        let lease = run(&mut t, &client(), XID, soon(5000)).unwrap();
        assert_eq!(t.sent_types(), [1, 1, 1, 3]);
        // Two silent intervals: 250 ms, then 500 ms.
        assert!(
            started.elapsed() >= Duration::from_millis(750),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(lease.setting.addr, Ipv4Addr::new(10, 0, 2, 15));
    }

    #[test]
    fn nak_starts_over_with_a_new_xid() {
        let mut t = Scripted::new(vec![
            from_server(reply(XID, [10, 0, 2, 15], &slirp_offer_options(2))),
            from_server(reply(XID, [0; 4], &[53, 1, 6, 54, 4, 10, 0, 2, 2, 255])),
            from_server(reply(XID + 1, [10, 0, 2, 16], &slirp_offer_options(2))),
            from_server(reply(XID + 1, [10, 0, 2, 16], &slirp_offer_options(5))),
        ]);
        let lease = run(&mut t, &client(), XID, soon(5000)).unwrap();
        assert_eq!(t.sent_types(), [1, 3, 1, 3]);
        assert_eq!(lease.setting.addr, Ipv4Addr::new(10, 0, 2, 16));
    }

    #[test]
    fn ack_from_another_server_is_not_ours() {
        let mut other = slirp_offer_options(5);
        other[5..9].copy_from_slice(&[10, 0, 2, 77]); // server id
        let mut t = Scripted::new(vec![
            from_server(reply(XID, [10, 0, 2, 15], &slirp_offer_options(2))),
            from_server(reply(XID, [10, 0, 2, 15], &other)),
            from_server(reply(XID, [10, 0, 2, 15], &slirp_offer_options(5))),
        ]);
        run(&mut t, &client(), XID, soon(5000)).unwrap();
        assert_eq!(t.sent_types(), [1, 3, 3]);
    }

    #[test]
    fn silence_ends_at_the_deadline_naming_the_phase() {
        let mut t = Scripted::new(vec![]);
        let started = Instant::now();
        let err = run(&mut t, &client(), XID, soon(400))
            .unwrap_err()
            .to_string();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
            "{took:?}"
        );
        assert!(err.starts_with("no OFFER after 2 attempts"), "{err}");
    }

    #[test]
    fn boot_server_is_next_server_and_root_path_is_option_17() {
        // A site DHCP server (10.0.2.3, option 54) pointing at an NFS host (siaddr 10.0.2.9)
        // with a root path, as the kernel's ipconfig reads them.
        let mut m = reply(
            XID,
            [10, 0, 2, 15],
            &[
                53, 1, 5, 54, 4, 10, 0, 2, 3, 17, 13, b'1', b'0', b'.', b'0', b'.', b'2', b'.',
                b'9', b':', b'/', b'r', b'/', 0, 255,
            ],
        );
        m[20..24].copy_from_slice(&[10, 0, 2, 9]);
        let ack = message::parse_reply(&m, XID, &MAC).unwrap();
        let lease = lease_from(&ack, &ack);
        assert_eq!(lease.setting.server, Some(Ipv4Addr::new(10, 0, 2, 9)));
        assert_eq!(lease.root_path.as_deref(), Some("10.0.2.9:/r/"));
        // No next-server: the server identifier.
        m[20..24].copy_from_slice(&[0, 0, 0, 0]);
        let ack = message::parse_reply(&m, XID, &MAC).unwrap();
        assert_eq!(
            lease_from(&ack, &ack).setting.server,
            Some(Ipv4Addr::new(10, 0, 2, 3))
        );
    }

    #[test]
    fn lease_fills_gaps_in_the_ack_from_the_offer() {
        let offer = message::parse_reply(
            &reply(XID, [10, 0, 2, 15], &slirp_offer_options(2)),
            XID,
            &MAC,
        )
        .unwrap();
        let bare_ack =
            message::parse_reply(&reply(XID, [10, 0, 2, 15], &[53, 1, 5, 255]), XID, &MAC).unwrap();
        let lease = lease_from(&bare_ack, &offer);
        assert_eq!(
            (lease.setting.prefix_len, lease.setting.gateway),
            (24, Some(Ipv4Addr::new(10, 0, 2, 2)))
        );
        assert_eq!(lease.setting.server, Some(Ipv4Addr::new(10, 0, 2, 2)));
        let no_mask =
            message::parse_reply(&reply(XID, [172, 16, 0, 9], &[53, 1, 5, 255]), XID, &MAC)
                .unwrap();
        assert_eq!(
            lease_from(&no_mask, &no_mask).setting.prefix_len,
            16,
            "classful fallback"
        );
    }
}
