//! The real DHCP transport: the raw packet socket of `sys/linux/socket.rs`, waited on with
//! poll(2) until a packet for us arrives or the timeout passes.

use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{Received, Transport};
use crate::sys::linux::socket::PacketSocket;

impl Transport for PacketSocket {
    fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        self.send_broadcast(packet)
    }

    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<Received>> {
        let until = Instant::now() + timeout;
        loop {
            let Some(left) = until
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                return Ok(None);
            };
            let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            if let Some(d) = self.recv_now(buf)? {
                return Ok(Some(Received {
                    len: d.len,
                    csum_pending: d.csum_pending,
                }));
            }
        }
    }
}
