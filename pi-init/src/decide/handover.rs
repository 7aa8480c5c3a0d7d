//! What pi-init hands the booted root's network stack: the interface it configured, its
//! address and the lease behind it, written as files the root's own stack reads from its
//! runtime directory (`/run`, a tmpfs pi-init mounts and moves into the new root: never in
//! the image, never on the export, gone at the next boot). Each stack then keeps the link
//! and the address the NFS root depends on, and renews the lease itself:
//!
//! | stack | file (under `/run`) | what it says |
//! |---|---|---|
//! | udev (for both below) | `systemd/network/10-pureboot-<iface>.link` | this MAC keeps its name, which the other files name: udev's default asks for a new one it cannot give a link that is up, and under systemd 252 networkd then showed the link `pending` (waiting on udev) for good, never starting its DHCP client |
//! | systemd-networkd | `systemd/network/10-pureboot-<iface>.network` | this MAC: DHCP with the client id pi-init used, `KeepConfiguration=yes` (never drop the address, also when the lease ends or networkd stops), no release |
//! | NetworkManager | `NetworkManager/system-connections/pureboot-<iface>.nmconnection` (mode 0600, or NM ignores it) | a profile for this MAC: DHCP with the client id pi-init used, never given up (`may-fail=false`, no timeout) |
//! | NetworkManager | `NetworkManager/devices/<ifindex>` | the device's run state as NM leaves it for itself across a restart: managed, with the profile above active, so NM takes the running connection over (and renews it) without touching the link |
//! | any | `pureboot/network.json` | the lease as pi-init took it, for scripts |
//!
//! A static `ip=` or an address the kernel had configured gets the same files with the
//! address written out (no DHCP).
//!
//! ifupdown's DHCP client, ISC dhclient, has no runtime directory: its configuration is
//! `/etc/dhcp/dhclient.conf` alone. Run by ifupdown (`-i`) it sends a DUID-based client id of
//! its own, and the server, keying leases by client id, hands it a second address while
//! pi-init's lease runs out. [`dhclient_conf`] is the image's file with a block giving the
//! interface pi-init's client id, written into the node's layer (see the step).
//!
//! dhcpcd (Raspberry Pi OS before bookworm) has none either: `/etc/dhcpcd.conf` alone, and
//! Debian's sends a DUID-based client id (`duid`), a second address again. [`dhcpcd_conf`]
//! is the image's file with an `interface` block (options in it win over the global ones
//! for that interface only, whatever block the image's file ends in) that keeps the link and
//! renews pi-init's lease; also written into the node's layer.

use std::fmt::Write;
use std::net::Ipv4Addr;

/// Where the address came from, with what DHCP said of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Dhcp {
        /// The DHCP server's identifier (option 54): who renews it.
        server: Option<Ipv4Addr>,
        lease_secs: Option<u32>,
    },
    /// `ip=` static, or an address already on the interface: no lease to renew.
    Fixed,
}

/// The interface pi-init configured and what it knows of its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub iface: String,
    /// The kernel's index of the interface (NetworkManager's run state is kept by it).
    pub ifindex: Option<u32>,
    /// `aa:bb:cc:dd:ee:ff`, lowercase.
    pub mac: String,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub origin: Origin,
}

/// One file to write under the new root's `/run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFile {
    /// Relative to `/run`.
    pub rel: String,
    pub text: String,
    pub mode: u32,
}

/// Every file the hand-over writes for `l`.
pub fn files(l: &Lease) -> Vec<RunFile> {
    let file = |rel: String, text: String, mode| RunFile { rel, text, mode };
    let mut f = vec![
        file(
            format!("systemd/network/10-pureboot-{}.link", l.iface),
            link(l),
            0o644,
        ),
        file(
            format!("systemd/network/10-pureboot-{}.network", l.iface),
            networkd(l),
            0o644,
        ),
        file(
            format!(
                "NetworkManager/system-connections/pureboot-{}.nmconnection",
                l.iface
            ),
            nm_profile(l),
            0o600,
        ),
    ];
    if let Some(ifindex) = l.ifindex {
        let state = format!(
            "# {HEADER}\n[device]\nmanaged=true\nconnection-uuid={}\n",
            nm_uuid(&l.mac)
        );
        f.push(file(
            format!("NetworkManager/devices/{ifindex}"),
            state,
            0o644,
        ));
    }
    f.push(file("pureboot/network.json".into(), json(l), 0o644));
    f
}

const HEADER: &str = "pi-init: the NFS root is reached through this interface; keep its \
link and address. In /run: rewritten at every boot.";

fn dhcp(l: &Lease) -> bool {
    matches!(l.origin, Origin::Dhcp { .. })
}

fn joined(dns: &[Ipv4Addr], sep: &str) -> String {
    dns.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

/// udev: the name stays (no `NamePolicy=`, no MAC policy: nothing changes on the link).
fn link(l: &Lease) -> String {
    format!(
        "# {HEADER}\n[Match]\nMACAddress={}\n\n[Link]\nName={}\n",
        l.mac, l.iface
    )
}

/// systemd-networkd: `KeepConfiguration=yes` keeps the address pi-init set and, under DHCP,
/// never drops the lease's address even if it ends; the client sends the same client id
/// (the MAC, as pi-init sent it), so the server hands out and renews the same lease.
fn networkd(l: &Lease) -> String {
    let mut s = format!(
        "# {HEADER}\n[Match]\nMACAddress={}\n\n[Network]\nKeepConfiguration=yes\n\
         LinkLocalAddressing=no\nIPv6AcceptRA=no\n",
        l.mac
    );
    if dhcp(l) {
        s += "DHCP=ipv4\n";
    } else {
        let _ = writeln!(s, "Address={}/{}", l.addr, l.prefix_len);
        if let Some(gw) = l.gateway {
            let _ = writeln!(s, "Gateway={gw}");
        }
    }
    for d in &l.dns {
        let _ = writeln!(s, "DNS={d}");
    }
    if dhcp(l) {
        s += "\n[DHCPv4]\nClientIdentifier=mac\nSendRelease=no\n";
    }
    s
}

/// A stable UUID for the profile: the same MAC gives the same profile at every boot.
fn nm_uuid(mac: &str) -> String {
    format!("70626f6f-7400-4000-8000-{}", mac.replace(':', ""))
}

/// NetworkManager's keyfile profile for the interface.
fn nm_profile(l: &Lease) -> String {
    let mut s = format!(
        "# {HEADER}\n[connection]\nid=pureboot {iface}\nuuid={uuid}\ntype=ethernet\n\
         interface-name={iface}\nautoconnect=true\nautoconnect-priority=100\n\n\
         [ethernet]\nmac-address={mac}\n\n[ipv4]\n",
        iface = l.iface,
        uuid = nm_uuid(&l.mac),
        mac = l.mac,
    );
    if dhcp(l) {
        s += "method=auto\ndhcp-client-id=mac\ndhcp-timeout=2147483647\n";
    } else {
        let gw = l.gateway.map(|g| format!(",{g}")).unwrap_or_default();
        let _ = writeln!(s, "method=manual\naddress1={}/{}{gw}", l.addr, l.prefix_len);
    }
    if !l.dns.is_empty() {
        let _ = writeln!(s, "dns={};", joined(&l.dns, ";"));
    }
    s += "may-fail=false\n\n[ipv6]\nmethod=ignore\n";
    s
}

/// Marks the block [`dhclient_conf`] appends, so the next boot replaces it.
const DHCLIENT_MARK: &str = "# pureboot: pi-init's client id";

/// `image` (the root's dhclient.conf) without an earlier boot's block, plus one sending the
/// client id pi-init sent (type 1, the MAC), so dhclient renews pi-init's lease.
pub fn dhclient_conf(image: &str, l: &Lease) -> String {
    let block = format!(
        "{DHCLIENT_MARK} (written at every boot; the NFS root's lease)\n\
         interface \"{}\" {{\n  send dhcp-client-identifier 1:{};\n}}\n",
        l.iface, l.mac
    );
    with_block(image, DHCLIENT_MARK, &block)
}

/// `image` cut at `mark` (an earlier boot's block and all after it), then `block` (which
/// starts with `mark`) after a blank line.
fn with_block(image: &str, mark: &str, block: &str) -> String {
    let own = image.find(mark).map_or(image, |at| &image[..at]);
    let mut s = own.trim_end().to_string();
    if !s.is_empty() {
        s += "\n\n";
    }
    s + block
}

/// Marks the block [`dhcpcd_conf`] appends, so the next boot replaces it.
const DHCPCD_MARK: &str = "# pureboot: pi-init's lease";

/// `image` (the root's dhcpcd.conf) without an earlier boot's block, plus one for the
/// interface: `persistent` (dhcpcd deconfigures the interface when it exits, the NFS root
/// with it, unless told not to); `clientid` with the bytes pi-init sent (type 1, the MAC;
/// a `clientid` also turns off the image's `duid` in dhcpcd 9), so the server hands out and
/// renews pi-init's lease; `request` of the running address, so the DISCOVER asks for it
/// and the address dhcpcd binds is the one on the interface (found there, dhcpcd neither
/// probes nor re-adds it).
pub fn dhcpcd_conf(image: &str, l: &Lease) -> String {
    let block = format!(
        "{DHCPCD_MARK} (written at every boot; the NFS root's link and lease)\n\
         interface {}\npersistent\nclientid 01:{}\nrequest {}\n",
        l.iface, l.mac, l.addr
    );
    with_block(image, DHCPCD_MARK, &block)
}

fn json(l: &Lease) -> String {
    let (server, lease_secs) = match &l.origin {
        Origin::Dhcp { server, lease_secs } => (*server, *lease_secs),
        Origin::Fixed => (None, None),
    };
    serde_json::json!({
        "interface": l.iface,
        "mac": l.mac,
        "address": l.addr.to_string(),
        "prefix_len": l.prefix_len,
        "gateway": l.gateway.map(|g| g.to_string()),
        "dns": l.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        "dhcp": dhcp(l),
        "dhcp_server": server.map(|s| s.to_string()),
        "lease_secs": lease_secs,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(origin: Origin) -> Lease {
        Lease {
            iface: "eth0".into(),
            ifindex: Some(2),
            mac: "52:54:00:e0:02:51".into(),
            addr: Ipv4Addr::new(10, 0, 3, 53),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(10, 0, 3, 1)),
            dns: vec![Ipv4Addr::new(10, 0, 3, 1), Ipv4Addr::new(9, 9, 9, 9)],
            origin,
        }
    }

    fn dhcp_lease() -> Lease {
        lease(Origin::Dhcp {
            server: Some(Ipv4Addr::new(10, 0, 3, 1)),
            lease_secs: Some(120),
        })
    }

    fn text<'a>(files: &'a [RunFile], rel: &str) -> &'a str {
        &files.iter().find(|f| f.rel == rel).expect(rel).text
    }

    #[test]
    fn every_stack_gets_its_file_in_its_runtime_directory() {
        let f = files(&dhcp_lease());
        let names: Vec<(&str, u32)> = f.iter().map(|f| (f.rel.as_str(), f.mode)).collect();
        assert_eq!(
            names,
            [
                ("systemd/network/10-pureboot-eth0.link", 0o644),
                ("systemd/network/10-pureboot-eth0.network", 0o644),
                (
                    "NetworkManager/system-connections/pureboot-eth0.nmconnection",
                    0o600
                ),
                ("NetworkManager/devices/2", 0o644),
                ("pureboot/network.json", 0o644),
            ]
        );
        // Without the interface's index there is no NetworkManager run state to write.
        let no_index = Lease {
            ifindex: None,
            ..dhcp_lease()
        };
        assert!(files(&no_index).iter().all(|f| !f.rel.contains("devices")));
    }

    #[test]
    fn udev_keeps_the_name_of_the_link_it_cannot_rename() {
        let f = files(&dhcp_lease());
        let l = text(&f, "systemd/network/10-pureboot-eth0.link");
        assert!(
            l.contains("[Match]\nMACAddress=52:54:00:e0:02:51\n\n[Link]\nName=eth0\n"),
            "{l}"
        );
    }

    #[test]
    fn networkd_keeps_the_address_and_renews_the_same_lease() {
        let f = files(&dhcp_lease());
        let n = text(&f, "systemd/network/10-pureboot-eth0.network");
        for line in [
            "[Match]\nMACAddress=52:54:00:e0:02:51\n",
            "KeepConfiguration=yes\n",
            "DHCP=ipv4\n",
            "DNS=10.0.3.1\nDNS=9.9.9.9\n",
            "[DHCPv4]\nClientIdentifier=mac\nSendRelease=no\n",
        ] {
            assert!(n.contains(line), "{line:?} in\n{n}");
        }
        assert!(!n.contains("Address=10.0.3.53/24"), "{n}");
    }

    #[test]
    fn a_fixed_address_is_written_out_without_dhcp() {
        let f = files(&lease(Origin::Fixed));
        let n = text(&f, "systemd/network/10-pureboot-eth0.network");
        assert!(
            n.contains("Address=10.0.3.53/24\nGateway=10.0.3.1\n"),
            "{n}"
        );
        assert!(
            !n.contains("DHCP") && n.contains("KeepConfiguration=yes"),
            "{n}"
        );
        let p = text(
            &f,
            "NetworkManager/system-connections/pureboot-eth0.nmconnection",
        );
        assert!(
            p.contains("method=manual\naddress1=10.0.3.53/24,10.0.3.1\n"),
            "{p}"
        );
    }

    #[test]
    fn network_manager_takes_over_a_dhcp_profile_for_this_mac_only() {
        let f = files(&dhcp_lease());
        let p = text(
            &f,
            "NetworkManager/system-connections/pureboot-eth0.nmconnection",
        );
        for line in [
            "uuid=70626f6f-7400-4000-8000-525400e00251\n",
            "type=ethernet\n",
            "mac-address=52:54:00:e0:02:51\n",
            "[ipv4]\nmethod=auto\ndhcp-client-id=mac\n",
            "dns=10.0.3.1;9.9.9.9;\n",
            "may-fail=false\n",
            "[ipv6]\nmethod=ignore\n",
        ] {
            assert!(p.contains(line), "{line:?} in\n{p}");
        }
        let d = text(&f, "NetworkManager/devices/2");
        assert!(
            d.contains(
                "[device]\nmanaged=true\nconnection-uuid=70626f6f-7400-4000-8000-525400e00251\n"
            ),
            "{d}"
        );
    }

    #[test]
    fn dhclient_sends_pi_inits_client_id_and_the_image_keeps_its_own_lines() {
        let image = "send host-name = gethostname();\nrequest subnet-mask;\n";
        let once = dhclient_conf(image, &dhcp_lease());
        assert_eq!(
            once,
            "send host-name = gethostname();\nrequest subnet-mask;\n\n\
             # pureboot: pi-init's client id (written at every boot; the NFS root's lease)\n\
             interface \"eth0\" {\n  send dhcp-client-identifier 1:52:54:00:e0:02:51;\n}\n"
        );
        // The next boot reads the file it wrote: its block is replaced, not doubled.
        assert_eq!(dhclient_conf(&once, &dhcp_lease()), once);
        assert!(dhclient_conf("", &dhcp_lease()).starts_with("# pureboot"));
    }

    #[test]
    fn dhcpcd_keeps_the_link_and_renews_pi_inits_lease_in_the_last_block() {
        // Debian's file: a DUID client id globally, then (as users add) a block for wlan0.
        let image = "duid\npersistent\ninterface wlan0\nnohook wpa_supplicant\n";
        let once = dhcpcd_conf(image, &dhcp_lease());
        assert_eq!(
            once,
            "duid\npersistent\ninterface wlan0\nnohook wpa_supplicant\n\n\
             # pureboot: pi-init's lease (written at every boot; the NFS root's link and lease)\n\
             interface eth0\npersistent\nclientid 01:52:54:00:e0:02:51\nrequest 10.0.3.53\n"
        );
        // The next boot reads the file it wrote: its block is replaced, not doubled.
        assert_eq!(dhcpcd_conf(&once, &dhcp_lease()), once);
        assert!(dhcpcd_conf("", &dhcp_lease()).starts_with("# pureboot"));
    }

    #[test]
    fn the_json_carries_the_lease() {
        let f = files(&dhcp_lease());
        let v: serde_json::Value = serde_json::from_str(text(&f, "pureboot/network.json")).unwrap();
        assert_eq!(v["address"], "10.0.3.53");
        assert_eq!(v["prefix_len"], 24);
        assert_eq!(v["dhcp_server"], "10.0.3.1");
        assert_eq!(v["lease_secs"], 120);
        assert_eq!(v["dns"][1], "9.9.9.9");
        let f = files(&lease(Origin::Fixed));
        let v: serde_json::Value = serde_json::from_str(text(&f, "pureboot/network.json")).unwrap();
        assert_eq!(
            (v["dhcp"].as_bool(), v["lease_secs"].is_null()),
            (Some(false), true)
        );
    }
}
