//! Network bring-up: keep an address the kernel already configured, else link up, wait for
//! carrier, then static `ip=` or the built-in DHCP client. Routes and /etc/resolv.conf.
//!
//! Pure parts (`dhcp::message`, `dhcp::frame`, the text parsers; `ip=` itself is parsed in
//! `decide/ip_param.rs`) are separate from the parts that touch the kernel (`link`, `config`,
//! `dhcp::socket`), whose raw calls are in `sys/linux/ioctl.rs` and `sys/linux/socket.rs`.

mod config;
pub mod dhcp;
pub mod lifetime;
pub(crate) mod link;
#[cfg(test)]
mod netns_tests;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::decide::ip_param::IpParam;

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
    pub resolv_conf: Option<PathBuf>,
    /// Sent to the DHCP server (option 12) so its leases and DNS name the node.
    pub hostname: Option<String>,
    /// Where sysfs is mounted (`/sys`); a parameter so tests can point at a fake tree.
    pub sysfs: PathBuf,
}

impl Default for NetRequest {
    fn default() -> Self {
        NetRequest {
            ip: IpParam::Dhcp { device: None },
            iface: None,
            iface_timeout: Duration::from_secs(10),
            carrier_timeout: Duration::from_secs(10),
            dhcp_timeout: Duration::from_secs(30),
            resolv_conf: Some(PathBuf::from("/etc/resolv.conf")),
            hostname: None,
            sysfs: PathBuf::from("/sys"),
        }
    }
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
    /// DHCP next-server (`siaddr`, else the server identifier) or the `ip=` server field.
    pub server: Option<Ipv4Addr>,
    /// DHCP option 17: the NFS root path the network names.
    pub root_path: Option<String>,
    pub source: NetSource,
    /// DHCP only: the server's identifier (option 54), which renews the lease.
    pub dhcp_server: Option<Ipv4Addr>,
    /// DHCP only: how long the lease was granted for (option 51).
    pub lease_secs: Option<u32>,
    /// The host name the network gave (DHCP option 12, or the `ip=` hostname field); a
    /// fallback for when the controller names none.
    pub hostname: Option<String>,
    /// How long each stage took (`net-interface`, `net-link`, `net-dhcp`, `net-address`), so
    /// the boot's report shows which one was slow.
    pub stages: Vec<(&'static str, Duration)>,
}

#[derive(Debug)]
pub struct NetError {
    /// Which part failed: `interface`, `carrier`, `dhcp`, `address`, `route`, ...
    pub stage: &'static str,
    pub iface: Option<String>,
    pub message: String,
}

impl NetError {
    fn new(stage: &'static str, iface: Option<&str>, message: impl Into<String>) -> Self {
        NetError {
            stage,
            iface: iface.map(str::to_owned),
            message: message.into(),
        }
    }
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

/// The network step as one seam: the boot asks for a configured interface and gets one, or
/// why not. Its link, address, route and packet-socket calls stay inside the real one.
pub trait Network: Sync {
    fn bring_up(&self, req: &NetRequest) -> Result<NetConfig, NetError>;
}

/// The kernel's network: [`bring_up`].
pub struct LinuxNetwork;

impl Network for LinuxNetwork {
    fn bring_up(&self, req: &NetRequest) -> Result<NetConfig, NetError> {
        bring_up(req)
    }
}

/// Bring the network up as `req` says. Blocking; bounded by the request's timeouts.
pub fn bring_up(req: &NetRequest) -> Result<NetConfig, NetError> {
    let sys = link::Sysfs::new(&req.sysfs);
    let wanted = wanted_iface(req);

    let mut stages = Vec::new();
    let mut lap = Stopwatch::start();
    let present = sys.wait_for_interfaces(wanted.as_deref(), req.iface_timeout)?;
    log::info!("net: interfaces present: {}", present.join(" "));
    stages.push(("net-interface", lap.lap()));

    // The kernel (ip= with a built-in driver) or an earlier attempt may have configured one.
    let existing_on: Vec<&str> = match &wanted {
        Some(name) => vec![name.as_str()],
        None => present.iter().map(String::as_str).collect(),
    };
    if let Some(found) = link::existing_ipv4(&existing_on)? {
        log::info!(
            "net: {} already has {}/{}; keeping it",
            found.iface,
            found.addr,
            found.prefix_len
        );
        return config::describe_existing(&sys, found).map(|c| NetConfig { stages, ..c });
    }
    if req.ip == IpParam::Off {
        return Err(NetError::new(
            "address",
            wanted.as_deref(),
            format!(
                "ip=off but no IPv4 address is configured on {}",
                existing_on.join(", ")
            ),
        ));
    }

    let iface = bring_link_up(&sys, wanted.as_deref(), &present, req)?;
    let mac = sys.mac(&iface)?;
    log::info!("net: using {iface} (mac {mac})");
    stages.push(("net-link", lap.lap()));

    let (setting, source, hostname, root_path, lease) = match &req.ip {
        IpParam::Static(s) => (
            config::Setting::from_static(s),
            NetSource::Static,
            s.hostname.clone(),
            None,
            (None, None),
        ),
        _ => {
            let lease =
                dhcp::obtain_lease(&iface, &mac, req.hostname.as_deref(), req.dhcp_timeout)?;
            stages.push(("net-dhcp", lap.lap()));
            (
                lease.setting,
                NetSource::Dhcp,
                lease.hostname,
                lease.root_path,
                (lease.server_id, lease.lease_secs),
            )
        }
    };
    config::apply(&iface, &setting, req.resolv_conf.as_deref())?;
    stages.push(("net-address", lap.lap()));
    Ok(NetConfig {
        iface,
        mac,
        addr: setting.addr,
        prefix_len: setting.prefix_len,
        gateway: setting.gateway,
        dns: setting.dns,
        server: setting.server,
        root_path,
        source,
        dhcp_server: lease.0,
        lease_secs: lease.1,
        hostname,
        stages,
    })
}

/// Time since the last lap.
struct Stopwatch(std::time::Instant);

impl Stopwatch {
    fn start() -> Self {
        Self(std::time::Instant::now())
    }

    fn lap(&mut self) -> Duration {
        let now = std::time::Instant::now();
        let took = now - self.0;
        self.0 = now;
        took
    }
}

/// `pureboot.iface=` wins over the device named in `ip=`.
fn wanted_iface(req: &NetRequest) -> Option<String> {
    let from_ip = match &req.ip {
        IpParam::Dhcp { device } => device.clone(),
        IpParam::Static(s) => s.device.clone(),
        IpParam::Off => None,
    };
    req.iface.clone().or(from_ip)
}

/// Set the link up and wait for carrier: on the named interface, or on every candidate,
/// taking the first (in name order) that gets carrier.
fn bring_link_up(
    sys: &link::Sysfs,
    wanted: Option<&str>,
    present: &[String],
    req: &NetRequest,
) -> Result<String, NetError> {
    let candidates = set_candidates_up(wanted, present)?;
    match sys.wait_for_carrier(&candidates, req.carrier_timeout) {
        Ok(name) => {
            log::info!("net: carrier on {name}");
            Ok(name)
        }
        // An address can be set without carrier; the controller request retries later.
        Err(e) if matches!(req.ip, IpParam::Static(_)) => {
            log::warn!("{e}; configuring the static address anyway");
            Ok(candidates[0].clone())
        }
        Err(e) => Err(e),
    }
}

/// The named interface must come up. Unnamed, any one will do: one that refuses (a Wi-Fi
/// chip without firmware, rfkill) is left out rather than failing the boot.
fn set_candidates_up(wanted: Option<&str>, present: &[String]) -> Result<Vec<String>, NetError> {
    if let Some(name) = wanted {
        link::set_up(name)?;
        return Ok(vec![name.to_owned()]);
    }
    let mut last_err = None;
    let up: Vec<String> = present
        .iter()
        .filter(|name| match link::set_up(name) {
            Ok(()) => true,
            Err(e) => {
                log::warn!("{e}; skipping it");
                last_err = Some(e);
                false
            }
        })
        .cloned()
        .collect();
    match last_err {
        Some(e) if up.is_empty() => Err(e),
        _ if up.is_empty() => Err(NetError::new("link", None, "no interface to set up")),
        _ => Ok(up),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pureboot_iface_wins_over_ip_device() {
        let mut req = NetRequest {
            ip: IpParam::Dhcp {
                device: Some("eth1".into()),
            },
            ..NetRequest::default()
        };
        assert_eq!(wanted_iface(&req).as_deref(), Some("eth1"));
        req.iface = Some("eth0".into());
        assert_eq!(wanted_iface(&req).as_deref(), Some("eth0"));
        req.iface = None;
        req.ip = IpParam::Off;
        assert_eq!(wanted_iface(&req), None);
    }

    #[test]
    fn unnamed_interfaces_that_cannot_come_up_are_skipped() {
        // Uses the host's lo only when it is already up, so nothing is changed.
        let lo_flags = std::fs::read_to_string("/sys/class/net/lo/flags").unwrap_or_default();
        if u32::from_str_radix(lo_flags.trim().trim_start_matches("0x"), 16)
            .map_or(true, |f| f & 1 == 0)
        {
            eprintln!("SKIP: lo is not up here");
            return;
        }
        let present = ["pbnone0".to_string(), "lo".to_string()];
        assert_eq!(set_candidates_up(None, &present).unwrap(), ["lo"]);
        let err = set_candidates_up(None, &present[..1]).unwrap_err();
        assert_eq!((err.stage, err.iface.as_deref()), ("link", Some("pbnone0")));
        let err = set_candidates_up(Some("pbnone0"), &present).unwrap_err();
        assert_eq!(err.stage, "link");
    }

    #[test]
    fn error_names_stage_and_interface() {
        let e = NetError::new("carrier", Some("eth0"), "no carrier within 10 ms");
        assert_eq!(
            e.to_string(),
            "network carrier on eth0: no carrier within 10 ms"
        );
        let e = NetError::new("interface", None, "none appeared");
        assert_eq!(e.to_string(), "network interface: none appeared");
    }
}
