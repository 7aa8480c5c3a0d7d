//! Applying an IPv4 setting to an interface (address, netmask, default route,
//! /etc/resolv.conf), and describing one the kernel already applied.

use std::net::Ipv4Addr;
use std::path::Path;

use super::link::{ExistingAddr, Sysfs};
use super::{NetConfig, NetError, NetSource};
use crate::decide::ip_param::StaticIp;
use crate::decide::ip_param::{netmask, prefix_len};
use crate::sys::linux::ioctl::ControlSocket;

/// One interface's IPv4 setting, whatever it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Option<Ipv4Addr>,
    pub domain: Option<String>,
}

impl Setting {
    pub fn from_static(s: &StaticIp) -> Self {
        Setting {
            addr: s.client,
            // parse_ip_param only accepts contiguous masks.
            prefix_len: prefix_len(s.netmask).unwrap_or(32),
            gateway: s.gateway,
            dns: s.dns.clone(),
            server: s.server,
            domain: None,
        }
    }

    fn on_link(&self, other: Ipv4Addr) -> bool {
        let mask = u32::from(netmask(self.prefix_len));
        u32::from(self.addr) & mask == u32::from(other) & mask
    }
}

/// Address and netmask, then the default route, then resolv.conf (when `resolv_conf` is set
/// and there are DNS servers). The link is already up.
pub fn apply(iface: &str, s: &Setting, resolv_conf: Option<&Path>) -> Result<(), NetError> {
    let fail = |stage: &'static str, what: String, e: std::io::Error| {
        NetError::new(stage, Some(iface), format!("{what}: {e}"))
    };
    let sock = ControlSocket::open().map_err(|e| fail("address", "control socket".into(), e))?;
    sock.set_addr(iface, s.addr)
        .map_err(|e| fail("address", format!("SIOCSIFADDR {}", s.addr), e))?;
    let mask = netmask(s.prefix_len);
    sock.set_netmask(iface, mask)
        .map_err(|e| fail("address", format!("SIOCSIFNETMASK {mask}"), e))?;
    log::info!("net: {iface} address {}/{}", s.addr, s.prefix_len);

    if let Some(gw) = s.gateway {
        // A gateway outside the subnet (some hosting DHCP servers hand out /32s) needs a host
        // route first, else SIOCADDRT answers ENETUNREACH.
        if !s.on_link(gw) {
            add_route_tolerating_existing(&sock, iface, gw, Ipv4Addr::BROADCAST, None)
                .map_err(|e| fail("route", format!("host route to gateway {gw}"), e))?;
        }
        let any = Ipv4Addr::UNSPECIFIED;
        add_route_tolerating_existing(&sock, iface, any, any, Some(gw))
            .map_err(|e| fail("route", format!("default route via {gw}"), e))?;
        log::info!("net: default route via {gw} dev {iface}");
    }

    if let (Some(path), false) = (resolv_conf, s.dns.is_empty()) {
        write_resolv_conf(path, &s.dns, s.domain.as_deref())
            .map_err(|e| fail("dns", format!("writing {}", path.display()), e))?;
        log::info!("net: wrote {} ({} servers)", path.display(), s.dns.len());
    }
    Ok(())
}

fn add_route_tolerating_existing(
    sock: &ControlSocket,
    iface: &str,
    dst: Ipv4Addr,
    mask: Ipv4Addr,
    gw: Option<Ipv4Addr>,
) -> std::io::Result<()> {
    match sock.add_route(iface, dst, mask, gw) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

fn write_resolv_conf(path: &Path, dns: &[Ipv4Addr], domain: Option<&str>) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, resolv_conf_text(dns, domain))
}

pub fn resolv_conf_text(dns: &[Ipv4Addr], domain: Option<&str>) -> String {
    let mut text = String::from("# written by pi-init\n");
    if let Some(d) = domain.filter(|d| !d.is_empty()) {
        text.push_str(&format!("search {d}\n"));
    }
    for server in dns {
        text.push_str(&format!("nameserver {server}\n"));
    }
    text
}

/// The NetConfig of an address the kernel (ip= autoconfig) or an earlier run set up:
/// gateway from the routing table, DNS and boot server from /proc/net/pnp when present.
pub fn describe_existing(sys: &Sysfs, found: ExistingAddr) -> Result<NetConfig, NetError> {
    let mac = sys.mac(&found.iface)?;
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let pnp = std::fs::read_to_string("/proc/net/pnp").unwrap_or_default();
    let (dns, server) = parse_pnp(&pnp);
    Ok(NetConfig {
        gateway: default_gateway(&routes, &found.iface),
        iface: found.iface,
        mac,
        addr: found.addr,
        prefix_len: found.prefix_len,
        dns,
        server,
        // The kernel keeps DHCP's root path to itself.
        root_path: None,
        source: NetSource::Existing,
        dhcp_server: None,
        lease_secs: None,
        // The kernel's ip= code sets the host name itself; /proc/net/pnp does not carry it.
        hostname: None,
        stages: Vec::new(),
    })
}

/// The default route's gateway on `iface` from /proc/net/route, whose addresses are the raw
/// network-order words printed with %08X (so byte order follows the host).
pub fn default_gateway(routes: &str, iface: &str) -> Option<Ipv4Addr> {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    routes.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dev, dst, gw, mask) = (
            *f.first()?,
            hex(f.get(1)?)?,
            hex(f.get(2)?)?,
            hex(f.get(7)?)?,
        );
        (dev == iface && dst == 0 && mask == 0 && gw != 0).then(|| Ipv4Addr::from(gw.to_ne_bytes()))
    })
}

/// `nameserver` and `bootserver` lines of /proc/net/pnp (written by the kernel's ip= code).
pub fn parse_pnp(text: &str) -> (Vec<Ipv4Addr>, Option<Ipv4Addr>) {
    let mut dns = Vec::new();
    let mut server = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(addr) = value.parse::<Ipv4Addr>() else {
            continue;
        };
        if addr.is_unspecified() {
            continue;
        }
        match key {
            "nameserver" => dns.push(addr),
            "bootserver" => server = Some(addr),
            _ => {}
        }
    }
    (dns, server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_lease_settings_carry_every_field() {
        let s = StaticIp {
            client: Ipv4Addr::new(10, 0, 0, 5),
            server: Some(Ipv4Addr::new(10, 0, 0, 1)),
            gateway: Some(Ipv4Addr::new(10, 0, 0, 254)),
            netmask: Ipv4Addr::new(255, 255, 254, 0),
            hostname: None,
            device: None,
            dns: vec![Ipv4Addr::new(10, 0, 0, 53)],
        };
        let set = Setting::from_static(&s);
        assert_eq!(
            (set.addr, set.prefix_len, set.gateway, set.server),
            (s.client, 23, s.gateway, s.server)
        );
        assert_eq!(set.dns, s.dns);
        assert!(set.on_link(Ipv4Addr::new(10, 0, 1, 200)));
        assert!(!set.on_link(Ipv4Addr::new(10, 0, 2, 1)));
    }

    #[test]
    fn resolv_conf_lists_search_domain_and_servers() {
        let text = resolv_conf_text(
            &[Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)],
            Some("lan"),
        );
        assert_eq!(
            text,
            "# written by pi-init\nsearch lan\nnameserver 10.0.2.3\nnameserver 1.1.1.1\n"
        );
        assert!(!resolv_conf_text(&[], Some("")).contains("search"));
    }

    #[test]
    fn default_gateway_from_proc_net_route() {
        // Captured shape of /proc/net/route (little-endian host): default via 10.0.2.2 on eth0.
        let routes =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth0\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        let want = if cfg!(target_endian = "little") {
            Ipv4Addr::new(10, 0, 2, 2)
        } else {
            Ipv4Addr::new(2, 2, 0, 10)
        };
        assert_eq!(default_gateway(routes, "eth0"), Some(want));
        assert_eq!(default_gateway(routes, "eth1"), None);
        assert_eq!(
            default_gateway("Iface\tDestination\n garbage", "eth0"),
            None
        );
    }

    #[test]
    fn pnp_gives_dns_and_boot_server() {
        let pnp = "#PROTO: DHCP\ndomain example.lan\nnameserver 10.0.2.3\nnameserver 0.0.0.0\nbootserver 10.0.2.2\n";
        assert_eq!(
            parse_pnp(pnp),
            (
                vec![Ipv4Addr::new(10, 0, 2, 3)],
                Some(Ipv4Addr::new(10, 0, 2, 2))
            )
        );
        assert_eq!(parse_pnp(""), (vec![], None));
    }
}
