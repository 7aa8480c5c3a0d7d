//! IPv4 + UDP framing for DHCP over an AF_PACKET datagram socket, which carries whole IP
//! packets: the client has no address yet, so the kernel's UDP stack cannot be used.

use std::net::Ipv4Addr;

pub const CLIENT_PORT: u16 = 68;
pub const SERVER_PORT: u16 = 67;

const IP_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const PROTO_UDP: u8 = 17;

/// RFC 1071 Internet checksum over `data`, continuing from a partial `sum`.
fn sum_words(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub fn checksum(data: &[u8]) -> u16 {
    fold(sum_words(0, data))
}

/// UDP checksum including the IPv4 pseudo-header; `udp` is header + payload.
fn udp_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let mut sum = sum_words(0, &src.octets());
    sum = sum_words(sum, &dst.octets());
    sum += u32::from(PROTO_UDP) + udp.len() as u32;
    match fold(sum_words(sum, udp)) {
        // 0 means "no checksum" in UDP; a computed 0 is sent as all ones.
        0 => 0xffff,
        c => c,
    }
}

/// An IPv4/UDP packet carrying `payload` from `src:sport` to `dst:dport`, checksums filled.
pub fn build(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = UDP_HEADER + payload.len();
    let total = IP_HEADER + udp_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0x00]); // IPv4, 5-word header, no TOS
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]); // id, no fragmentation
    p.extend_from_slice(&[64, PROTO_UDP, 0, 0]); // TTL, protocol, checksum placeholder
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let ip_sum = checksum(&p[..IP_HEADER]);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());

    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    let udp_sum = udp_checksum(src, dst, &p[IP_HEADER..]);
    p[IP_HEADER + 6..IP_HEADER + 8].copy_from_slice(&udp_sum.to_be_bytes());
    p
}

/// A UDP datagram taken out of an IPv4 packet.
#[derive(Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub payload: &'a [u8],
}

/// Why a received packet was not a usable UDP datagram (the caller just skips it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    Truncated,
    NotIpv4,
    BadIpChecksum,
    Fragment,
    NotUdp,
    BadUdpLength,
    BadUdpChecksum,
}

/// Validate and unwrap an IPv4/UDP packet (fragments refused). The IP header checksum is
/// always verified, the UDP one when `check_udp_sum` (it is not yet filled in for packets a
/// local sender handed to checksum offload).
pub fn parse(packet: &[u8], check_udp_sum: bool) -> Result<Datagram<'_>, FrameError> {
    if packet.len() < IP_HEADER {
        return Err(FrameError::Truncated);
    }
    if packet[0] >> 4 != 4 {
        return Err(FrameError::NotIpv4);
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if ihl < IP_HEADER || total < ihl || total > packet.len() {
        return Err(FrameError::Truncated);
    }
    if checksum(&packet[..ihl]) != 0 {
        return Err(FrameError::BadIpChecksum);
    }
    // More-fragments flag or a fragment offset: DHCP replies fit one packet; do not reassemble.
    if u16::from_be_bytes([packet[6], packet[7]]) & 0x3fff != 0 {
        return Err(FrameError::Fragment);
    }
    if packet[9] != PROTO_UDP {
        return Err(FrameError::NotUdp);
    }
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    let udp = &packet[ihl..total];
    if udp.len() < UDP_HEADER {
        return Err(FrameError::Truncated);
    }
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if udp_len < UDP_HEADER || udp_len > udp.len() {
        return Err(FrameError::BadUdpLength);
    }
    let udp = &udp[..udp_len];
    let sent_sum = u16::from_be_bytes([udp[6], udp[7]]);
    if check_udp_sum && sent_sum != 0 && fold(sum_words(pseudo_sum(src, dst, udp_len), udp)) != 0 {
        return Err(FrameError::BadUdpChecksum);
    }
    Ok(Datagram {
        src,
        dst,
        sport: u16::from_be_bytes([udp[0], udp[1]]),
        dport: u16::from_be_bytes([udp[2], udp[3]]),
        payload: &udp[UDP_HEADER..],
    })
}

fn pseudo_sum(src: Ipv4Addr, dst: Ipv4Addr, udp_len: usize) -> u32 {
    sum_words(sum_words(0, &src.octets()), &dst.octets()) + u32::from(PROTO_UDP) + udp_len as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_matches_the_textbook_example() {
        // The worked example on Wikipedia's "IPv4 header checksum" page: checksum 0xb861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&header), 0xb861);
    }

    #[test]
    fn udp_checksum_matches_an_independent_computation() {
        // 10.0.2.2:67 -> 255.255.255.255:68, payload "pureboot!" (odd length: exercises the
        // padding byte). Expected sums computed with Python's own RFC 1071 implementation
        // (outside this code).
        let p = build(
            Ipv4Addr::new(10, 0, 2, 2),
            Ipv4Addr::BROADCAST,
            SERVER_PORT,
            CLIENT_PORT,
            b"pureboot!",
        );
        assert_eq!(u16::from_be_bytes([p[10], p[11]]), 0x6ec7);
        assert_eq!(u16::from_be_bytes([p[26], p[27]]), 0x1d85);
    }

    #[test]
    fn build_then_parse_round_trips() {
        let payload = vec![7u8; 300];
        let p = build(
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            CLIENT_PORT,
            SERVER_PORT,
            &payload,
        );
        assert_eq!(p.len(), 328);
        let d = parse(&p, true).unwrap();
        assert_eq!(
            (d.src, d.dst, d.sport, d.dport),
            (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 68, 67)
        );
        assert_eq!(d.payload, &payload[..]);
        // Trailing link padding beyond the IP total length is ignored.
        let mut padded = p.clone();
        padded.extend_from_slice(&[0; 18]);
        assert_eq!(parse(&padded, true).unwrap().payload, &payload[..]);
    }

    #[test]
    fn hostile_packets_are_refused_not_panicked_on() {
        let good = build(
            Ipv4Addr::new(10, 0, 2, 2),
            Ipv4Addr::BROADCAST,
            67,
            68,
            b"x",
        );
        for cut in 0..good.len() {
            assert!(parse(&good[..cut], true).is_err(), "truncated to {cut}");
        }
        let mut bad_ip = good.clone();
        bad_ip[8] = 63; // TTL changed, checksum not
        assert_eq!(parse(&bad_ip, true), Err(FrameError::BadIpChecksum));
        let mut bad_udp = good.clone();
        *bad_udp.last_mut().unwrap() ^= 0xff;
        assert_eq!(parse(&bad_udp, true), Err(FrameError::BadUdpChecksum));
        let mut no_udp_sum = bad_udp.clone();
        no_udp_sum[26..28].copy_from_slice(&[0, 0]);
        assert!(
            parse(&no_udp_sum, true).is_ok(),
            "checksum 0 means none was sent"
        );
        assert!(
            parse(&bad_udp, false).is_ok(),
            "offloaded checksum is not checked"
        );
        let mut v6 = good.clone();
        v6[0] = 0x65;
        assert_eq!(parse(&v6, true), Err(FrameError::NotIpv4));
        let mut long_udp = good.clone();
        long_udp[24..26].copy_from_slice(&200u16.to_be_bytes());
        assert_eq!(parse(&long_udp, true), Err(FrameError::BadUdpLength));
        let mut frag = good;
        frag[6] = 0x20; // more fragments
        frag[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum(&frag[..20]);
        frag[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(parse(&frag, true), Err(FrameError::Fragment));
    }
}
