//! The kernel's `ip=` parameter (Documentation/admin-guide/nfs/nfsroot.rst), parsed the way
//! the kernel's ipconfig reads it: keywords, else up to ten colon-separated fields, any of
//! which may be empty and trailing ones omitted.

use std::net::Ipv4Addr;

/// The kernel's `ip=` parameter, parsed (`ip=dhcp`, `ip=off`, or the colon form
/// `<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>:<ntp0>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpParam {
    /// `ip=dhcp`, `ip=on`, `ip=any`, `ip=both`, `ip=bootp`, or no `ip=` at all.
    Dhcp {
        device: Option<String>,
    },
    /// `ip=off` / `ip=none`: do not configure; use what is there.
    Off,
    Static(StaticIp),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIp {
    pub client: Ipv4Addr,
    pub server: Option<Ipv4Addr>,
    pub gateway: Option<Ipv4Addr>,
    pub netmask: Ipv4Addr,
    pub hostname: Option<String>,
    pub device: Option<String>,
    pub dns: Vec<Ipv4Addr>,
}

const FIELDS: [&str; 10] = [
    "client", "server", "gateway", "netmask", "hostname", "device", "autoconf", "dns0", "dns1",
    "ntp0",
];

/// What the autoconf field (or a bare keyword) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Autoconf {
    /// Empty field: static when a client address is given, else any protocol.
    Unset,
    Off,
    Dhcp,
}

fn autoconf(word: &str) -> Option<Autoconf> {
    match word {
        "" => Some(Autoconf::Unset),
        "off" | "none" => Some(Autoconf::Off),
        // We only speak DHCP; BOOTP and RARP requests are served by it (DHCP servers answer BOOTP
        // clients, and `on`/`any`/`both` mean "whatever works").
        "on" | "any" | "dhcp" | "bootp" | "rarp" | "both" => Some(Autoconf::Dhcp),
        _ => None,
    }
}

/// Parse the value of `ip=` (without the `ip=` prefix). Errors name the bad field.
pub fn parse_ip_param(value: &str) -> Result<IpParam, String> {
    // The kernel treats an empty `ip=` like `ip=off`.
    match autoconf(value) {
        Some(Autoconf::Unset | Autoconf::Off) => return Ok(IpParam::Off),
        Some(Autoconf::Dhcp) => return Ok(IpParam::Dhcp { device: None }),
        None => {}
    }

    let parts: Vec<&str> = value.split(':').collect();
    if parts.len() > FIELDS.len() {
        return Err(format!(
            "ip=: {} fields, at most {} allowed",
            parts.len(),
            FIELDS.len()
        ));
    }
    let field = |i: usize| parts.get(i).copied().filter(|s| !s.is_empty());

    let client = opt_addr(field(0), 0)?;
    let server = opt_addr(field(1), 1)?;
    let gateway = opt_addr(field(2), 2)?;
    let netmask = opt_addr(field(3), 3)?;
    if let Some(mask) = netmask {
        prefix_len(mask).ok_or_else(|| bad(3, &mask.to_string(), "not a contiguous netmask"))?;
    }
    let hostname = field(4)
        .map(|h| check_hostname(h).map(str::to_owned))
        .transpose()?;
    let device = field(5)
        .map(|d| check_device(d).map(str::to_owned))
        .transpose()?;
    let mode = autoconf(field(6).unwrap_or("")).ok_or_else(|| {
        bad(
            6,
            parts[6],
            "expected off, none, on, any, dhcp, bootp, rarp or both",
        )
    })?;
    let dns: Vec<Ipv4Addr> = [7, 8]
        .into_iter()
        .filter_map(|i| opt_addr(field(i), i).transpose())
        .collect::<Result<_, _>>()?;
    // ntp0 is validated but unused: pi-init runs no NTP client.
    opt_addr(field(9), 9)?;

    match (mode, client) {
        (Autoconf::Dhcp, _) | (Autoconf::Unset, None) => Ok(IpParam::Dhcp { device }),
        (Autoconf::Off, None) => Ok(IpParam::Off),
        (Autoconf::Unset | Autoconf::Off, Some(client)) => Ok(IpParam::Static(StaticIp {
            client,
            server,
            gateway,
            // As the kernel does: no netmask means the address's historic class.
            netmask: netmask.unwrap_or_else(|| classful_netmask(client)),
            hostname,
            device,
            dns,
        })),
    }
}

fn bad(index: usize, value: &str, why: &str) -> String {
    format!(
        "ip=: field {} ({}) {value:?}: {why}",
        index + 1,
        FIELDS[index]
    )
}

/// An address field; `0.0.0.0` counts as absent, as in the kernel's ipconfig (found by
/// fuzzing: `ip=0.0.0.0` was a static configuration with the unspecified address).
fn opt_addr(value: Option<&str>, index: usize) -> Result<Option<Ipv4Addr>, String> {
    value
        .map(|v| {
            v.parse::<Ipv4Addr>()
                .map_err(|_| bad(index, v, "not an IPv4 address"))
        })
        .transpose()
        .map(|a| a.filter(|a| !a.is_unspecified()))
}

/// The contract's host name rule; the kernel truncates a long one, we refuse so the operator
/// sees the typo.
fn check_hostname(h: &str) -> Result<&str, String> {
    pureboot_contract::ids::Hostname::parse(h)
        .map(|_| h)
        .map_err(|e| bad(4, h, &e.expected))
}

fn check_device(d: &str) -> Result<&str, String> {
    // IFNAMSIZ is 16 including the NUL.
    if d.len() > 15 || d.contains(['/', ' ', '\t']) || d == "." || d == ".." {
        return Err(bad(5, d, "not a valid interface name"));
    }
    Ok(d)
}

/// Prefix length of a contiguous netmask (`255.255.255.0` -> 24).
pub fn prefix_len(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// Netmask of a prefix length (24 -> `255.255.255.0`); lengths above 32 saturate.
pub fn netmask(prefix_len: u8) -> Ipv4Addr {
    let len = u32::from(prefix_len.min(32));
    Ipv4Addr::from(u32::MAX.checked_shl(32 - len).unwrap_or(0))
}

/// The pre-CIDR default the kernel falls back to when no netmask is given.
pub fn classful_netmask(addr: Ipv4Addr) -> Ipv4Addr {
    match addr.octets()[0] {
        0..=127 => Ipv4Addr::new(255, 0, 0, 0),
        128..=191 => Ipv4Addr::new(255, 255, 0, 0),
        _ => Ipv4Addr::new(255, 255, 255, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn stat(client: &str, netmask: &str) -> StaticIp {
        StaticIp {
            client: ip(client),
            server: None,
            gateway: None,
            netmask: ip(netmask),
            hostname: None,
            device: None,
            dns: vec![],
        }
    }

    /// Fuzzing regression: the kernel reads 0.0.0.0 in any address field as "not given".
    #[test]
    fn unspecified_addresses_count_as_absent() {
        assert_eq!(
            parse_ip_param("0.0.0.0").unwrap(),
            IpParam::Dhcp { device: None }
        );
        assert_eq!(parse_ip_param("0.0.0.0::::::off").unwrap(), IpParam::Off);
        let p = parse_ip_param("10.0.0.5:0.0.0.0:0.0.0.0:0.0.0.0::::0.0.0.0").unwrap();
        assert_eq!(p, IpParam::Static(stat("10.0.0.5", "255.0.0.0")));
    }

    #[test]
    fn keywords_and_forms() {
        let dhcp = IpParam::Dhcp { device: None };
        let full = StaticIp {
            client: ip("10.0.0.5"),
            server: Some(ip("10.0.0.1")),
            gateway: Some(ip("10.0.0.254")),
            netmask: ip("255.255.255.0"),
            hostname: Some("pi-d83add36".into()),
            device: Some("eth0".into()),
            dns: vec![ip("10.0.0.53"), ip("1.1.1.1")],
        };
        let cases: Vec<(&str, IpParam)> = vec![
            ("dhcp", dhcp.clone()),
            ("on", dhcp.clone()),
            ("any", dhcp.clone()),
            ("both", dhcp.clone()),
            ("bootp", dhcp.clone()),
            ("rarp", dhcp.clone()),
            ("off", IpParam::Off),
            ("none", IpParam::Off),
            ("", IpParam::Off),
            (
                "10.0.0.5:10.0.0.1:10.0.0.254:255.255.255.0:pi-d83add36:eth0:off:10.0.0.53:1.1.1.1:10.0.0.123",
                IpParam::Static(full.clone()),
            ),
            ("10.0.0.5:10.0.0.1:10.0.0.254:255.255.255.0:pi-d83add36:eth0::10.0.0.53:1.1.1.1", IpParam::Static(full)),
            // Trailing fields omitted; no netmask -> classful.
            ("10.1.2.3", IpParam::Static(stat("10.1.2.3", "255.0.0.0"))),
            ("172.16.1.2", IpParam::Static(stat("172.16.1.2", "255.255.0.0"))),
            ("192.168.1.2::", IpParam::Static(stat("192.168.1.2", "255.255.255.0"))),
            ("192.168.1.2::::::none", IpParam::Static(stat("192.168.1.2", "255.255.255.0"))),
            (
                "192.168.1.2::192.168.1.1:255.255.255.128",
                IpParam::Static(StaticIp { gateway: Some(ip("192.168.1.1")), ..stat("192.168.1.2", "255.255.255.128") }),
            ),
            // autoconf dhcp in the colon form, on a device; a client address is then only a hint.
            (":::::eth1:dhcp", IpParam::Dhcp { device: Some("eth1".into()) }),
            ("10.0.0.5:::::eth1:dhcp", IpParam::Dhcp { device: Some("eth1".into()) }),
            (":::::eth1:", IpParam::Dhcp { device: Some("eth1".into()) }),
            (":::::eth1", IpParam::Dhcp { device: Some("eth1".into()) }),
            ("::::::off", IpParam::Off),
            ("::::pi-1:::10.0.0.53", dhcp),
        ];
        for (i, (input, want)) in cases.into_iter().enumerate() {
            assert_eq!(parse_ip_param(input), Ok(want), "case[{i}]: ip={input}");
        }
    }

    #[test]
    fn malformed_input_names_the_field() {
        let cases = [
            ("10.0.0.300", "field 1 (client)"),
            ("10.0.0.5:nfs.example:", "field 2 (server)"),
            ("10.0.0.5::gw", "field 3 (gateway)"),
            ("10.0.0.5:::255.0.255.0", "field 4 (netmask)"),
            ("10.0.0.5:::255.255.255.0:bad host", "field 5 (hostname)"),
            (
                "10.0.0.5:::::a-very-long-interface-name",
                "field 6 (device)",
            ),
            ("10.0.0.5::::::static", "field 7 (autoconf)"),
            ("10.0.0.5:::::::8.8.8", "field 8 (dns0)"),
            ("10.0.0.5::::::::x", "field 9 (dns1)"),
            ("10.0.0.5:::::::::ntp", "field 10 (ntp0)"),
            ("dchp", "field 1 (client)"),
            ("1:2:3:4:5:6:7:8:9:10:11", "11 fields"),
        ];
        for (input, want) in cases {
            let err = parse_ip_param(input).expect_err(input);
            assert!(
                err.contains(want),
                "ip={input}: {err:?} should mention {want:?}"
            );
        }
        let long = format!("10.0.0.5::::{}", "h".repeat(65));
        assert!(parse_ip_param(&long).unwrap_err().contains("hostname"));
    }

    #[test]
    fn netmask_prefix_conversions() {
        for (mask, len) in [
            ("0.0.0.0", 0),
            ("255.0.0.0", 8),
            ("255.255.240.0", 20),
            ("255.255.255.255", 32),
        ] {
            assert_eq!(prefix_len(ip(mask)), Some(len), "{mask}");
            assert_eq!(netmask(len), ip(mask), "/{len}");
        }
        assert_eq!(prefix_len(ip("255.0.255.0")), None);
        assert_eq!(prefix_len(ip("0.0.0.255")), None);
    }
}
