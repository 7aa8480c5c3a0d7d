//! DHCPv4 messages (RFC 2131/2132): building DISCOVER and REQUEST, parsing OFFER, ACK and
//! NAK. Pure code: bytes in, typed values out; malformed input is an error, never a panic.

use std::net::Ipv4Addr;

const OP_REQUEST: u8 = 1;
const OP_REPLY: u8 = 2;
const HTYPE_ETHER: u8 = 1;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// op..file: the fixed BOOTP part before the magic cookie.
const FIXED: usize = 236;
const SNAME: std::ops::Range<usize> = 44..108;
const FILE: std::ops::Range<usize> = 108..236;
/// RFC 2131: a client must accept 576-byte messages; old BOOTP relays drop shorter than 300.
const MIN_LEN: usize = 300;
const FLAG_BROADCAST: u16 = 0x8000;

mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const ROOT_PATH: u8 = 17;
    pub const DOMAIN: u8 = 15;
    pub const BROADCAST: u8 = 28;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MSG_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAM_LIST: u8 = 55;
    pub const MAX_SIZE: u8 = 57;
    pub const CLIENT_ID: u8 = 61;
    pub const END: u8 = 255;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Ack = 5,
    Nak = 6,
}

/// Who is asking: fixed for one exchange.
#[derive(Debug, Clone)]
pub struct Client {
    pub mac: [u8; 6],
    pub hostname: Option<String>,
}

impl Client {
    pub fn discover(&self, xid: u32, secs: u16) -> Vec<u8> {
        self.message(MsgType::Discover, xid, secs, &[])
    }

    /// REQUEST in SELECTING state: names the offered address and the chosen server.
    pub fn request(
        &self,
        xid: u32,
        secs: u16,
        addr: Ipv4Addr,
        server: Option<Ipv4Addr>,
    ) -> Vec<u8> {
        let mut extra = vec![(opt::REQUESTED_IP, addr.octets().to_vec())];
        if let Some(s) = server {
            extra.push((opt::SERVER_ID, s.octets().to_vec()));
        }
        self.message(MsgType::Request, xid, secs, &extra)
    }

    fn message(&self, kind: MsgType, xid: u32, secs: u16, extra: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut m = vec![0u8; FIXED];
        m[0] = OP_REQUEST;
        m[1] = HTYPE_ETHER;
        m[2] = 6;
        m[4..8].copy_from_slice(&xid.to_be_bytes());
        m[8..10].copy_from_slice(&secs.to_be_bytes());
        // Broadcast flag: we cannot receive unicast to an address we do not have yet.
        m[10..12].copy_from_slice(&FLAG_BROADCAST.to_be_bytes());
        m[28..34].copy_from_slice(&self.mac);
        m.extend_from_slice(&MAGIC);

        push_opt(&mut m, opt::MSG_TYPE, &[kind as u8]);
        let mut client_id = vec![HTYPE_ETHER];
        client_id.extend_from_slice(&self.mac);
        push_opt(&mut m, opt::CLIENT_ID, &client_id);
        for (code, data) in extra {
            push_opt(&mut m, *code, data);
        }
        if let Some(h) = self.hostname.as_deref().filter(|h| !h.is_empty()) {
            push_opt(&mut m, opt::HOSTNAME, &h.as_bytes()[..h.len().min(255)]);
        }
        push_opt(&mut m, opt::MAX_SIZE, &1472u16.to_be_bytes()); // 1500 minus IP and UDP headers
        push_opt(
            &mut m,
            opt::PARAM_LIST,
            &[
                opt::SUBNET_MASK,
                opt::ROUTER,
                opt::DNS,
                opt::HOSTNAME,
                opt::DOMAIN,
                opt::ROOT_PATH,
                opt::BROADCAST,
                opt::LEASE_TIME,
                opt::SERVER_ID,
            ],
        );
        m.push(opt::END);
        if m.len() < MIN_LEN {
            m.resize(MIN_LEN, opt::PAD);
        }
        m
    }
}

fn push_opt(m: &mut Vec<u8>, code: u8, data: &[u8]) {
    m.push(code);
    m.push(data.len() as u8);
    m.extend_from_slice(data);
}

/// A server's answer, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: MsgType,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub options: Options,
}

/// The options pi-init uses (RFC 2132 codes 1, 3, 6, 12, 15, 17, 28, 51, 54).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub subnet_mask: Option<Ipv4Addr>,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub hostname: Option<String>,
    pub domain: Option<String>,
    /// The NFS root path (`[<server>:]<path>[,<opts>]`), as the kernel reads it.
    pub root_path: Option<String>,
    pub broadcast: Option<Ipv4Addr>,
    pub lease_secs: Option<u32>,
    pub server_id: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Truncated {
        len: usize,
    },
    NotAReply,
    WrongXid {
        got: u32,
    },
    OtherClient,
    NoMagicCookie,
    /// An option's length runs past the end of its field.
    OptionOverrun {
        code: u8,
    },
    BadOptionLength {
        code: u8,
        len: usize,
    },
    NoMessageType,
    UnexpectedType(u8),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Truncated { len } => write!(f, "truncated message ({len} bytes)"),
            ParseError::NotAReply => write!(f, "not a BOOTREPLY"),
            ParseError::WrongXid { got } => write!(f, "transaction id {got:#010x} is not ours"),
            ParseError::OtherClient => write!(f, "addressed to another client's MAC"),
            ParseError::NoMagicCookie => write!(f, "no DHCP magic cookie"),
            ParseError::OptionOverrun { code } => {
                write!(f, "option {code} runs past the end of the message")
            }
            ParseError::BadOptionLength { code, len } => {
                write!(f, "option {code} has invalid length {len}")
            }
            ParseError::NoMessageType => write!(f, "no DHCP message type option"),
            ParseError::UnexpectedType(t) => write!(f, "unexpected DHCP message type {t}"),
        }
    }
}

/// Decode a server reply to transaction `xid` from client `mac`.
pub fn parse_reply(msg: &[u8], xid: u32, mac: &[u8; 6]) -> Result<Reply, ParseError> {
    if msg.len() < FIXED + MAGIC.len() {
        return Err(ParseError::Truncated { len: msg.len() });
    }
    if msg[0] != OP_REPLY {
        return Err(ParseError::NotAReply);
    }
    let got = u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]);
    if got != xid {
        return Err(ParseError::WrongXid { got });
    }
    if msg[1] == HTYPE_ETHER && msg[2] == 6 && msg[28..34] != mac[..] {
        return Err(ParseError::OtherClient);
    }
    if msg[FIXED..FIXED + 4] != MAGIC {
        return Err(ParseError::NoMagicCookie);
    }

    let mut raw = RawOptions::default();
    raw.scan(&msg[FIXED + 4..])?;
    // Option overload (52): the file and/or sname fields hold more options, in that order.
    if let Some(&[overload]) = raw.get(opt::OVERLOAD) {
        if overload & 1 != 0 {
            raw.scan(&msg[FILE])?;
        }
        if overload & 2 != 0 {
            raw.scan(&msg[SNAME])?;
        }
    }

    let kind = match raw.get(opt::MSG_TYPE) {
        None => return Err(ParseError::NoMessageType),
        Some(&[2]) => MsgType::Offer,
        Some(&[5]) => MsgType::Ack,
        Some(&[6]) => MsgType::Nak,
        Some(&[t]) => return Err(ParseError::UnexpectedType(t)),
        Some(v) => {
            return Err(ParseError::BadOptionLength {
                code: opt::MSG_TYPE,
                len: v.len(),
            })
        }
    };
    let addr_at = |i: usize| Ipv4Addr::new(msg[i], msg[i + 1], msg[i + 2], msg[i + 3]);
    Ok(Reply {
        kind,
        yiaddr: addr_at(16),
        siaddr: addr_at(20),
        options: raw.decode()?,
    })
}

/// Options as (code, data), with repeated codes concatenated (RFC 3396).
#[derive(Default)]
struct RawOptions(Vec<(u8, Vec<u8>)>);

impl RawOptions {
    fn get(&self, code: u8) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, d)| d.as_slice())
    }

    fn scan(&mut self, mut area: &[u8]) -> Result<(), ParseError> {
        while let Some((&code, rest)) = area.split_first() {
            match code {
                opt::PAD => area = rest,
                opt::END => return Ok(()),
                _ => {
                    let (&len, rest) = rest
                        .split_first()
                        .ok_or(ParseError::OptionOverrun { code })?;
                    let data = rest
                        .get(..usize::from(len))
                        .ok_or(ParseError::OptionOverrun { code })?;
                    match self.0.iter_mut().find(|(c, _)| *c == code) {
                        Some((_, d)) => d.extend_from_slice(data),
                        None => self.0.push((code, data.to_vec())),
                    }
                    area = &rest[usize::from(len)..];
                }
            }
        }
        // Running out without END is tolerated: some servers omit it after the last option.
        Ok(())
    }

    fn decode(&self) -> Result<Options, ParseError> {
        Ok(Options {
            subnet_mask: self.one_addr(opt::SUBNET_MASK)?,
            routers: self.addrs(opt::ROUTER)?,
            dns: self.addrs(opt::DNS)?,
            hostname: self.text(opt::HOSTNAME),
            domain: self.text(opt::DOMAIN),
            root_path: self.text(opt::ROOT_PATH),
            broadcast: self.one_addr(opt::BROADCAST)?,
            lease_secs: self.one_addr(opt::LEASE_TIME)?.map(u32::from),
            server_id: self.one_addr(opt::SERVER_ID)?,
        })
    }

    fn one_addr(&self, code: u8) -> Result<Option<Ipv4Addr>, ParseError> {
        match self.get(code) {
            None => Ok(None),
            Some(&[a, b, c, d]) => Ok(Some(Ipv4Addr::new(a, b, c, d))),
            Some(v) => Err(ParseError::BadOptionLength { code, len: v.len() }),
        }
    }

    fn addrs(&self, code: u8) -> Result<Vec<Ipv4Addr>, ParseError> {
        match self.get(code) {
            None => Ok(Vec::new()),
            Some(v) if v.is_empty() || v.len() % 4 != 0 => {
                Err(ParseError::BadOptionLength { code, len: v.len() })
            }
            Some(v) => Ok(v
                .chunks_exact(4)
                .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                .collect()),
        }
    }

    fn text(&self, code: u8) -> Option<String> {
        // Some servers NUL-terminate strings.
        let v = self.get(code)?;
        let s = String::from_utf8_lossy(v)
            .trim_end_matches('\0')
            .trim()
            .to_owned();
        (!s.is_empty()).then_some(s)
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    pub const XID: u32 = 0x1234_abcd;

    /// A server reply built field by field as RFC 2131 lays it out (independent of `Client`).
    pub fn reply(xid: u32, yiaddr: [u8; 4], options: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; FIXED];
        m[0] = OP_REPLY;
        m[1] = 1;
        m[2] = 6;
        m[4..8].copy_from_slice(&xid.to_be_bytes());
        m[16..20].copy_from_slice(&yiaddr);
        m[20..24].copy_from_slice(&[10, 0, 2, 2]);
        m[28..34].copy_from_slice(&MAC);
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(options);
        m
    }

    /// What QEMU's slirp sends: type, server id, lease, mask, router, DNS, end.
    pub fn slirp_offer_options(kind: u8) -> Vec<u8> {
        vec![
            53, 1, kind, 54, 4, 10, 0, 2, 2, 51, 4, 0, 1, 0x51, 0x80, 1, 4, 255, 255, 255, 0, 3, 4,
            10, 0, 2, 2, 6, 4, 10, 0, 2, 3, 255,
        ]
    }

    fn client() -> Client {
        Client {
            mac: MAC,
            hostname: Some("pi-d83add36".into()),
        }
    }

    /// The options of a message we built, as (code, data) pairs, read independently.
    fn options_of(m: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut i = FIXED + 4;
        while m[i] != 255 {
            let (code, len) = (m[i], usize::from(m[i + 1]));
            out.push((code, m[i + 2..i + 2 + len].to_vec()));
            i += 2 + len;
        }
        out
    }

    #[test]
    fn discover_has_the_fields_servers_need() {
        let m = client().discover(XID, 3);
        assert!(m.len() >= MIN_LEN);
        assert_eq!(&m[..4], &[1, 1, 6, 0]);
        assert_eq!(&m[4..8], &XID.to_be_bytes());
        assert_eq!(&m[8..10], &[0, 3], "secs");
        assert_eq!(&m[10..12], &[0x80, 0], "broadcast flag");
        assert_eq!(&m[28..34], &MAC);
        assert_eq!(&m[FIXED..FIXED + 4], &MAGIC);
        let opts = options_of(&m);
        assert_eq!(opts[0], (53, vec![1]));
        assert!(opts.contains(&(61, vec![1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56])));
        assert!(opts.contains(&(12, b"pi-d83add36".to_vec())));
        let prl = &opts.iter().find(|(c, _)| *c == 55).unwrap().1;
        for code in [1, 3, 6, 12, 15, 17, 28, 51, 54] {
            assert!(prl.contains(&code), "parameter request list lacks {code}");
        }
        assert!(
            !opts.iter().any(|(c, _)| *c == 50 || *c == 54),
            "no requested ip / server id in DISCOVER"
        );
    }

    #[test]
    fn request_names_offer_and_server() {
        let m = client().request(
            XID,
            0,
            Ipv4Addr::new(10, 0, 2, 15),
            Some(Ipv4Addr::new(10, 0, 2, 2)),
        );
        let opts = options_of(&m);
        assert_eq!(opts[0], (53, vec![3]));
        assert!(opts.contains(&(50, vec![10, 0, 2, 15])));
        assert!(opts.contains(&(54, vec![10, 0, 2, 2])));
        assert_eq!(
            &m[12..16],
            &[0, 0, 0, 0],
            "ciaddr stays zero while selecting"
        );
        let anonymous = Client {
            mac: MAC,
            hostname: None,
        }
        .discover(XID, 0);
        assert!(!options_of(&anonymous).iter().any(|(c, _)| *c == 12));
    }

    #[test]
    fn parses_an_offer_like_slirp_sends() {
        let r = parse_reply(
            &reply(XID, [10, 0, 2, 15], &slirp_offer_options(2)),
            XID,
            &MAC,
        )
        .unwrap();
        assert_eq!(r.kind, MsgType::Offer);
        assert_eq!(r.yiaddr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(r.siaddr, Ipv4Addr::new(10, 0, 2, 2));
        let o = r.options;
        assert_eq!(o.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(o.routers, [Ipv4Addr::new(10, 0, 2, 2)]);
        assert_eq!(o.dns, [Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!(o.lease_secs, Some(86400));
        assert_eq!(o.server_id, Some(Ipv4Addr::new(10, 0, 2, 2)));
    }

    #[test]
    fn parses_ack_nak_text_options_pads_and_split_options() {
        let opts = [
            0, 0, 53, 1, 5, 12, 5, b'p', b'i', b'-', b'1', 0, 15, 3, b'l', b'a', b'n', 28, 4, 10,
            0, 2, 255, // DNS split across two instances (RFC 3396): concatenated.
            6, 4, 10, 0, 2, 3, 6, 4, 1, 1, 1, 1, 255, 0xde, 0xad,
        ];
        let r = parse_reply(&reply(XID, [10, 0, 2, 15], &opts), XID, &MAC).unwrap();
        assert_eq!(r.kind, MsgType::Ack);
        assert_eq!(r.options.hostname.as_deref(), Some("pi-1"));
        assert_eq!(r.options.domain.as_deref(), Some("lan"));
        assert_eq!(r.options.broadcast, Some(Ipv4Addr::new(10, 0, 2, 255)));
        assert_eq!(
            r.options.dns,
            [Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)]
        );
        let nak = parse_reply(&reply(XID, [0; 4], &[53, 1, 6, 255]), XID, &MAC).unwrap();
        assert_eq!(nak.kind, MsgType::Nak);
    }

    #[test]
    fn overloaded_file_and_sname_fields_hold_options() {
        let mut m = reply(XID, [10, 0, 2, 15], &[53, 1, 2, 52, 1, 3, 255]);
        m[FILE.start..FILE.start + 7].copy_from_slice(&[1, 4, 255, 255, 0, 0, 255]);
        m[SNAME.start..SNAME.start + 7].copy_from_slice(&[3, 4, 192, 168, 0, 1, 255]);
        let r = parse_reply(&m, XID, &MAC).unwrap();
        assert_eq!(r.options.subnet_mask, Some(Ipv4Addr::new(255, 255, 0, 0)));
        assert_eq!(r.options.routers, [Ipv4Addr::new(192, 168, 0, 1)]);
        // Without the overload option the same bytes are just a file name.
        let mut plain = reply(XID, [10, 0, 2, 15], &[53, 1, 2, 255]);
        plain[FILE.start..FILE.start + 7].copy_from_slice(&[1, 4, 255, 255, 0, 0, 255]);
        assert_eq!(
            parse_reply(&plain, XID, &MAC).unwrap().options.subnet_mask,
            None
        );
    }

    #[test]
    fn hostile_replies_are_errors() {
        let good = reply(XID, [10, 0, 2, 15], &slirp_offer_options(2));
        for cut in 0..FIXED + 4 {
            assert_eq!(
                parse_reply(&good[..cut], XID, &MAC),
                Err(ParseError::Truncated { len: cut })
            );
        }
        // Every truncation of the options either parses (cut after a whole option) or errors.
        for cut in FIXED + 4..good.len() {
            let _ = parse_reply(&good[..cut], XID, &MAC);
        }
        assert_eq!(
            parse_reply(&good, XID + 1, &MAC),
            Err(ParseError::WrongXid { got: XID })
        );
        assert_eq!(
            parse_reply(&good, XID, &[0; 6]),
            Err(ParseError::OtherClient)
        );
        let mut request = good.clone();
        request[0] = OP_REQUEST;
        assert_eq!(parse_reply(&request, XID, &MAC), Err(ParseError::NotAReply));
        let mut no_cookie = good.clone();
        no_cookie[FIXED] = 0;
        assert_eq!(
            parse_reply(&no_cookie, XID, &MAC),
            Err(ParseError::NoMagicCookie)
        );

        let case = |opts: &[u8]| parse_reply(&reply(XID, [10, 0, 2, 15], opts), XID, &MAC);
        assert_eq!(
            case(&[1, 4, 255, 255, 255, 0, 255]),
            Err(ParseError::NoMessageType)
        );
        assert_eq!(case(&[]), Err(ParseError::NoMessageType));
        assert_eq!(case(&[53, 1, 1, 255]), Err(ParseError::UnexpectedType(1)));
        assert_eq!(
            case(&[53, 2, 2, 2, 255]),
            Err(ParseError::BadOptionLength { code: 53, len: 2 })
        );
        assert_eq!(
            case(&[53, 1, 2, 1, 3, 255, 255, 255]),
            Err(ParseError::BadOptionLength { code: 1, len: 3 })
        );
        assert_eq!(
            case(&[53, 1, 2, 3, 6, 1, 2, 3, 4, 5, 6]),
            Err(ParseError::BadOptionLength { code: 3, len: 6 })
        );
        assert_eq!(
            case(&[53, 1, 2, 6, 0]),
            Err(ParseError::BadOptionLength { code: 6, len: 0 })
        );
        assert_eq!(
            case(&[53, 1, 2, 51, 2, 0, 1]),
            Err(ParseError::BadOptionLength { code: 51, len: 2 })
        );
        assert_eq!(
            case(&[53, 1, 2, 54, 40, 1]),
            Err(ParseError::OptionOverrun { code: 54 })
        );
        assert_eq!(
            case(&[53, 1, 2, 54]),
            Err(ParseError::OptionOverrun { code: 54 })
        );
    }

    #[test]
    fn garbage_never_panics() {
        // Deterministic pseudo-random bodies behind a valid header: only Ok or Err, no panic.
        let mut state = 0x9e37_79b9_u32;
        for _ in 0..2000 {
            let len = (state % 300) as usize;
            let body: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            let mut m = reply(XID, [10, 0, 2, 15], &body);
            m[FILE.start] = (state >> 8) as u8;
            let _ = parse_reply(&m, XID, &MAC);
        }
    }
}
