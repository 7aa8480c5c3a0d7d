//! A site's LAN inside a lab's namespace, for guests that take their address from a real DHCP
//! server rather than QEMU's: a bridge holding the DHCP server's address and the NFS host's,
//! a tap device for the guest on it, and dnsmasq serving DHCP there, its log (with
//! `--log-dhcp`) kept for the scenario to read.

use std::path::PathBuf;
use std::time::Duration;

use crate::lab::Lab;
use crate::process::{self, Daemon};

/// The DHCP server's address on the bridge.
pub const DHCP_SERVER: &str = "10.0.3.1";
/// The NFS host's address on the bridge (next-server in the DHCP answers).
pub const NFS_HOST: &str = "10.0.3.2";
/// The tap device a guest joins the LAN through (`Netdev::Tap`).
pub const TAP: &str = "tap0";

/// The bridge `br0` with [`DHCP_SERVER`] and [`NFS_HOST`], and [`TAP`] on it.
pub fn bridge_with_tap(lab: &Lab) -> Result<(), String> {
    for args in [
        "link add br0 type bridge".to_string(),
        format!("addr add {DHCP_SERVER}/24 dev br0"),
        format!("addr add {NFS_HOST}/24 dev br0"),
        format!("tuntap add dev {TAP} mode tap"),
        format!("link set {TAP} master br0"),
        format!("link set {TAP} up"),
        "link set br0 up".to_string(),
    ] {
        process::run(lab.ns.command("ip").args(args.split(' ')))?;
    }
    Ok(())
}

/// dnsmasq serving DHCP on the bridge, its log at [`Dhcp::log`].
pub struct Dhcp {
    pub daemon: Daemon,
    pub log: PathBuf,
}

impl Dhcp {
    /// dnsmasq on `br0` handing out 10.0.3.50-60 for `lease` (dnsmasq's own syntax: `1h`,
    /// `120`; it never grants less than two minutes), next-server [`NFS_HOST`], plus `extra`
    /// options. Fails when it exits at once.
    pub fn start(lab: &Lab, lease: &str, extra: &[String]) -> Result<Dhcp, String> {
        let log = lab.dir.join("dnsmasq.log");
        let mut cmd = lab.ns.command("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--port=0",
            "--user=root",
            "--interface=br0",
            "--bind-interfaces",
            "--dhcp-authoritative",
            "--log-dhcp",
            "--log-facility=-",
        ])
        .arg(format!(
            "--dhcp-range=10.0.3.50,10.0.3.60,255.255.255.0,{lease}"
        ))
        // next-server (siaddr) is the NFS host, not the DHCP server itself.
        .arg(format!("--dhcp-boot=pxe,nfshost,{NFS_HOST}"))
        .args(extra)
        .arg(format!(
            "--dhcp-leasefile={}",
            lab.dir.join("leases").display()
        ))
        .arg(format!(
            "--pid-file={}",
            lab.dir.join("dnsmasq.pid").display()
        ));
        let mut daemon =
            Daemon::spawn("dnsmasq", cmd, &log).map_err(|e| format!("dnsmasq: {e}"))?;
        std::thread::sleep(Duration::from_millis(500));
        if daemon.exited().is_some() {
            return Err(format!("dnsmasq exited:\n{}", daemon.log_tail(20)));
        }
        Ok(Dhcp { daemon, log })
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The `DHCP<kind>` lines dnsmasq logged for `mac` (`DHCPACK(br0) 10.0.3.51 52:54:...`), in
/// order: `(kind, address)`.
pub fn exchanges<'a>(log: &'a str, mac: &str) -> Vec<(&'a str, &'a str)> {
    log.lines()
        .filter(|l| l.contains(mac))
        .filter_map(|l| {
            let at = l.find(" DHCP")? + 1;
            let mut words = l[at..].split_whitespace();
            let kind = words.next()?.split('(').next()?;
            let addr = words.next().filter(|a| a.contains('.')).unwrap_or("");
            Some((kind, addr))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchanges_are_read_per_mac_in_order() {
        let log = "dnsmasq-dhcp[9]: 1 available DHCP range: 10.0.3.50 -- 10.0.3.60\n\
                   dnsmasq-dhcp[9]: 77 DHCPDISCOVER(br0) 52:54:00:00:00:01\n\
                   dnsmasq-dhcp[9]: 77 DHCPOFFER(br0) 10.0.3.51 52:54:00:00:00:01\n\
                   dnsmasq-dhcp[9]: 78 DHCPACK(br0) 10.0.3.52 52:54:00:00:00:02 other\n\
                   dnsmasq-dhcp[9]: 77 DHCPREQUEST(br0) 10.0.3.51 52:54:00:00:00:01\n\
                   dnsmasq-dhcp[9]: 77 DHCPACK(br0) 10.0.3.51 52:54:00:00:00:01 pi\n";
        assert_eq!(
            exchanges(log, "52:54:00:00:00:01"),
            [
                ("DHCPDISCOVER", ""),
                ("DHCPOFFER", "10.0.3.51"),
                ("DHCPREQUEST", "10.0.3.51"),
                ("DHCPACK", "10.0.3.51")
            ]
        );
    }
}
