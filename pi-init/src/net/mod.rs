//! Network bring-up: keep an address the kernel already configured, else link up, wait for
//! carrier, then static `ip=` or the built-in DHCP client. Routes and /etc/resolv.conf.
//!
//! Interface agreed between the pi-init modules (stub: filled in by the net work).

use std::net::Ipv4Addr;
use std::time::Duration;

/// The kernel's `ip=` parameter, parsed (`ip=dhcp`, `ip=off`, or the colon form
/// `<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>:<ntp0>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpParam {
    /// `ip=dhcp`, `ip=on`, `ip=any`, `ip=both`, `ip=bootp`, or no `ip=` at all.
    Dhcp { device: Option<String> },
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

/// Parse the value of `ip=` (without the `ip=` prefix). Errors name the bad field.
pub fn parse_ip_param(value: &str) -> Result<IpParam, String> {
    let _ = value;
    Err("ip= parsing not implemented yet".into())
}

/// What the boot asks of the network step.
#[derive(Debug, Clone)]
pub struct NetRequest {
    pub ip: IpParam,
    /// `pureboot.iface=`; else the `ip=` device; else the first interface with carrier.
    pub iface: Option<String>,
    /// How long to wait for a non-loopback interface to appear (its driver may still be loading).
    pub iface_timeout: Duration,
    pub carrier_timeout: Duration,
    pub dhcp_timeout: Duration,
    /// Written to /etc/resolv.conf when set (DHCP or `ip=` DNS servers).
    pub resolv_conf: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetSource {
    /// The interface already had an IPv4 address; nothing was changed.
    Existing,
    Static,
    Dhcp,
}

/// The configured network, for the boot report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    pub iface: String,
    /// `aa:bb:cc:dd:ee:ff`, lowercase.
    pub mac: String,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// DHCP `server identifier` / `siaddr` / `ip=` server field, when known.
    pub server: Option<Ipv4Addr>,
    pub source: NetSource,
}

#[derive(Debug)]
pub struct NetError {
    /// Which part failed: `interface`, `carrier`, `dhcp`, `address`, `route`, ...
    pub stage: &'static str,
    pub iface: Option<String>,
    pub message: String,
}

impl std::fmt::Display for NetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.iface {
            Some(i) => write!(f, "network {} on {i}: {}", self.stage, self.message),
            None => write!(f, "network {}: {}", self.stage, self.message),
        }
    }
}

impl std::error::Error for NetError {}

/// Bring the network up as `req` says. Blocking; bounded by the request's timeouts.
pub fn bring_up(req: &NetRequest) -> Result<NetConfig, NetError> {
    let _ = req;
    Err(NetError { stage: "interface", iface: None, message: "not implemented yet".into() })
}
