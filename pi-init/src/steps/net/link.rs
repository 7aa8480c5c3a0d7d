//! Links: which interfaces exist (sysfs), their MAC and carrier, setting IFF_UP, and whether
//! one already holds an IPv4 address (getifaddrs).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::NetError;
use crate::sys::linux::ioctl::ControlSocket;
use pureboot_contract::ids::Mac;

/// How often sysfs is re-read while waiting for a driver to register its interface or for
/// carrier: short, because this wait sits on the boot's critical path.
const POLL: Duration = Duration::from_millis(10);

/// How long an interface seen in sysfs may stay unknown to SIOCGIFFLAGS.
const REGISTER_GRACE: Duration = Duration::from_millis(500);

/// ARPHRD_ETHER: Ethernet and Wi-Fi; excludes tunnels (sit0, tunl0) that modules create.
const ARPHRD_ETHER: &str = "1";

/// Reads `<root>/class/net`, so tests can hand it a fake tree.
pub struct Sysfs {
    net: PathBuf,
}

impl Sysfs {
    pub fn new(root: &Path) -> Self {
        Sysfs {
            net: root.join("class/net"),
        }
    }

    fn attr(&self, iface: &str, name: &str) -> Option<String> {
        std::fs::read_to_string(self.net.join(iface).join(name))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    fn exists(&self, iface: &str) -> bool {
        self.net.join(iface).exists()
    }

    /// Ethernet-type interfaces other than loopback, sorted by name.
    pub fn ethernet_interfaces(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(&self.net) else {
            return Vec::new();
        };
        let mut names: Vec<String> = dir
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n != "lo" && self.attr(n, "type").as_deref() == Some(ARPHRD_ETHER))
            .collect();
        names.sort();
        names
    }

    /// Wait until `wanted` exists, or (when None) until any Ethernet interface does; returns
    /// the interfaces to consider.
    pub fn wait_for_interfaces(
        &self,
        wanted: Option<&str>,
        timeout: Duration,
    ) -> Result<Vec<String>, NetError> {
        let found = poll_until(timeout, || match wanted {
            Some(name) => self.exists(name).then(|| vec![name.to_owned()]),
            None => Some(self.ethernet_interfaces()).filter(|v| !v.is_empty()),
        });
        found.ok_or_else(|| {
            let seen = self.ethernet_interfaces();
            let seen = if seen.is_empty() {
                "none".to_owned()
            } else {
                seen.join(", ")
            };
            let what = wanted.map_or("no Ethernet interface".to_owned(), |n| {
                format!("{n} did not")
            });
            NetError::new(
                "interface",
                wanted,
                format!(
                    "{what} appeared within {} ms (present: {seen})",
                    timeout.as_millis()
                ),
            )
        })
    }

    pub fn has_carrier(&self, iface: &str) -> bool {
        // Reading `carrier` of a down interface fails with EINVAL: that is "no".
        self.attr(iface, "carrier").as_deref() == Some("1")
    }

    /// Wait until one of `candidates` has carrier; the first in order wins.
    pub fn wait_for_carrier(
        &self,
        candidates: &[String],
        timeout: Duration,
    ) -> Result<String, NetError> {
        poll_until(timeout, || {
            candidates.iter().find(|n| self.has_carrier(n)).cloned()
        })
        .ok_or_else(|| {
            let iface = (candidates.len() == 1).then(|| candidates[0].as_str());
            NetError::new(
                "carrier",
                iface,
                format!(
                    "no carrier on {} within {} ms",
                    candidates.join(", "),
                    timeout.as_millis()
                ),
            )
        })
    }

    pub fn mac(&self, iface: &str) -> Result<String, NetError> {
        let raw = self.attr(iface, "address").unwrap_or_default();
        let mac = Mac::parse(raw.trim()).map(|m| m.as_str().to_string());
        mac.map_err(|_| {
            NetError::new(
                "interface",
                Some(iface),
                format!("no usable MAC address in sysfs (read {raw:?})"),
            )
        })
    }
}

/// Call `probe` every POLL until it yields or `timeout` passes (it is always tried once).
pub fn poll_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(POLL.min(deadline - now));
    }
}

/// Parse `aa:bb:cc:dd:ee:ff` into bytes (for DHCP's chaddr and the client identifier).
pub fn mac_bytes(mac: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mac = Mac::parse(mac.trim()).ok()?;
    for (byte, part) in out.iter_mut().zip(mac.as_str().split(':')) {
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    Some(out)
}

/// Set IFF_UP (keeping the other flags).
pub fn set_up(iface: &str) -> Result<(), NetError> {
    let fail =
        |what: &str, e: std::io::Error| NetError::new("link", Some(iface), format!("{what}: {e}"));
    let sock = ControlSocket::open().map_err(|e| fail("control socket", e))?;
    // A driver loading on another thread shows its interface in sysfs an instant before the
    // interface can be looked up by name (ENODEV): give it a moment.
    let flags = poll_until(REGISTER_GRACE, || match sock.flags(iface) {
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => None,
        other => Some(other),
    })
    .unwrap_or_else(|| Err(std::io::Error::from_raw_os_error(libc::ENODEV)))
    .map_err(|e| fail("SIOCGIFFLAGS", e))?;
    if flags & libc::IFF_UP as libc::c_short == 0 {
        sock.set_flags(iface, flags | libc::IFF_UP as libc::c_short)
            .map_err(|e| fail("SIOCSIFFLAGS (up)", e))?;
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingAddr {
    pub iface: String,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

/// The first IPv4 address found on one of `ifaces` (in `ifaces` order).
pub fn existing_ipv4(ifaces: &[&str]) -> Result<Option<ExistingAddr>, NetError> {
    let all = nix::ifaddrs::getifaddrs()
        .map_err(|e| NetError::new("address", None, format!("getifaddrs: {e}")))?
        .filter_map(|ia| {
            let addr = ia.address?.as_sockaddr_in()?.ip();
            let mask = ia.netmask.and_then(|m| m.as_sockaddr_in().map(|s| s.ip()));
            let prefix_len = mask
                .and_then(crate::decide::ip_param::prefix_len)
                .unwrap_or(32);
            Some(ExistingAddr {
                iface: ia.interface_name,
                addr,
                prefix_len,
            })
        })
        .collect::<Vec<_>>();
    Ok(ifaces
        .iter()
        .find_map(|want| all.iter().find(|a| a.iface == *want).cloned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `/sys/class/net` under a temp dir.
    struct FakeSys(PathBuf);

    impl FakeSys {
        fn new(tag: &str) -> Self {
            let root =
                std::env::temp_dir().join(format!("pi-init-link-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(root.join("class/net")).unwrap();
            FakeSys(root)
        }
        fn add(&self, name: &str, kind: &str, mac: &str, carrier: &str) {
            let dir = self.0.join("class/net").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("type"), format!("{kind}\n")).unwrap();
            std::fs::write(dir.join("address"), format!("{mac}\n")).unwrap();
            std::fs::write(dir.join("carrier"), format!("{carrier}\n")).unwrap();
        }
        fn sysfs(&self) -> Sysfs {
            Sysfs::new(&self.0)
        }
    }

    impl Drop for FakeSys {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn lists_ethernet_interfaces_without_lo_and_tunnels() {
        let fake = FakeSys::new("list");
        fake.add("lo", "772", "00:00:00:00:00:00", "1");
        fake.add("sit0", "776", "00:00:00:00", "0");
        fake.add("eth1", "1", "52:54:00:12:34:57", "0");
        fake.add("eth0", "1", "52:54:00:12:34:56", "1");
        assert_eq!(fake.sysfs().ethernet_interfaces(), ["eth0", "eth1"]);
    }

    #[test]
    fn waits_for_an_interface_registered_late() {
        let fake = FakeSys::new("late");
        let root = fake.0.clone();
        let registrar = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(60));
            let dir = root.join("class/net/eth0");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("type"), "1\n").unwrap();
        });
        let started = Instant::now();
        let found = fake
            .sysfs()
            .wait_for_interfaces(None, Duration::from_secs(5))
            .unwrap();
        registrar.join().unwrap();
        assert_eq!(found, ["eth0"]);
        assert!(started.elapsed() >= Duration::from_millis(60));
    }

    #[test]
    fn interface_wait_is_bounded_and_says_what_it_saw() {
        let fake = FakeSys::new("bounded");
        fake.add("eth1", "1", "52:54:00:12:34:57", "0");
        let started = Instant::now();
        let err = fake
            .sysfs()
            .wait_for_interfaces(Some("eth0"), Duration::from_millis(50))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(err.stage, "interface");
        assert_eq!(err.iface.as_deref(), Some("eth0"));
        assert!(err.message.contains("present: eth1"), "{err}");
        // A named interface of any type counts (e.g. a bridge or a USB gadget).
        fake.add("usb0", "65534", "", "1");
        assert_eq!(
            fake.sysfs()
                .wait_for_interfaces(Some("usb0"), Duration::ZERO)
                .unwrap(),
            ["usb0"]
        );
    }

    #[test]
    fn carrier_picks_the_first_candidate_with_link() {
        let fake = FakeSys::new("carrier");
        fake.add("eth0", "1", "52:54:00:12:34:56", "0");
        fake.add("eth1", "1", "52:54:00:12:34:57", "1");
        fake.add("eth2", "1", "52:54:00:12:34:58", "1");
        let all: Vec<String> = ["eth0", "eth1", "eth2"].map(String::from).to_vec();
        assert_eq!(
            fake.sysfs().wait_for_carrier(&all, Duration::ZERO).unwrap(),
            "eth1"
        );
        let err = fake
            .sysfs()
            .wait_for_carrier(&all[..1], Duration::from_millis(30))
            .unwrap_err();
        assert_eq!((err.stage, err.iface.as_deref()), ("carrier", Some("eth0")));
    }

    #[test]
    fn mac_is_read_lowercase_and_validated() {
        let fake = FakeSys::new("mac");
        fake.add("eth0", "1", "DC:A6:32:01:02:0F", "1");
        fake.add("bad0", "1", "dc:a6:32", "1");
        assert_eq!(fake.sysfs().mac("eth0").unwrap(), "dc:a6:32:01:02:0f");
        assert_eq!(fake.sysfs().mac("bad0").unwrap_err().stage, "interface");
        assert_eq!(
            mac_bytes("dc:a6:32:01:02:0f"),
            Some([0xdc, 0xa6, 0x32, 1, 2, 0x0f])
        );
        assert_eq!(mac_bytes("dc:a6:32:01:02:0g"), None);
        assert_eq!(mac_bytes("dc:a6:32:01:02:0f:00"), None);
    }

    #[test]
    fn set_up_on_a_missing_interface_is_a_bounded_link_error() {
        let started = Instant::now();
        let err = set_up("pbnone0").unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!((err.stage, err.iface.as_deref()), ("link", Some("pbnone0")));
        assert!(err.message.starts_with("SIOCGIFFLAGS"), "{err}");
    }

    #[test]
    fn loopback_address_is_found_by_getifaddrs() {
        // Every network namespace has lo; when it is up it carries 127.0.0.1/8.
        match existing_ipv4(&["lo"]).unwrap() {
            Some(found) => assert_eq!((found.addr, found.prefix_len), (Ipv4Addr::LOCALHOST, 8)),
            None => eprintln!("SKIP loopback check: lo has no IPv4 address in this namespace"),
        }
        assert_eq!(existing_ipv4(&["no-such-if0"]).unwrap(), None);
    }
}
