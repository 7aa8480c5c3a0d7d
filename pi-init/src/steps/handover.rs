//! The network hand-over's mechanics: the files [`crate::decide::handover`] renders, written
//! under pi-init's own `/run` (a tmpfs that becomes the new root's `/run` when the early
//! mounts are moved), so the root's network stack finds them when it starts; and a DHCP
//! address given a (very long) lifetime, so NetworkManager sees it came from DHCP
//! ([`crate::steps::net::lifetime`]).

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::decide::handover::{self, Lease, Origin};
use crate::steps::net::{lifetime, NetConfig, NetSource};

/// Which file could not be written, or the address's lifetime not set, and why.
#[derive(Debug)]
pub enum HandoverError {
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    Lifetime {
        iface: String,
        error: std::io::Error,
    },
}

impl fmt::Display for HandoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Write { path, error } => {
                write!(f, "network hand-over: writing {}: {error}", path.display())
            }
            Self::Lifetime { iface, error } => {
                write!(
                    f,
                    "network hand-over: the lifetime of {iface}'s address: {error}"
                )
            }
        }
    }
}

/// What the network step configured, as the hand-over's typed lease; the interface's index
/// read from `sysfs`.
pub fn lease(net: &NetConfig, sysfs: &Path) -> Lease {
    let index = sysfs.join("class/net").join(&net.iface).join("ifindex");
    Lease {
        ifindex: std::fs::read_to_string(index)
            .ok()
            .and_then(|i| i.trim().parse().ok()),
        iface: net.iface.clone(),
        mac: net.mac.clone(),
        addr: net.addr,
        prefix_len: net.prefix_len,
        gateway: net.gateway,
        dns: net.dns.clone(),
        origin: match net.source {
            NetSource::Dhcp => Origin::Dhcp {
                server: net.dhcp_server,
                lease_secs: net.lease_secs,
            },
            NetSource::Static | NetSource::Existing => Origin::Fixed,
        },
    }
}

/// The whole hand-over: the files under `run`, then for a DHCP lease the address's lifetime
/// and, for each of ISC dhclient and dhcpcd the root at `newroot` has, its configuration in
/// the node's layer (the overlay's upper: neither has a runtime directory). Returns how many
/// files were written.
pub fn hand_over(run: &Path, newroot: &Path, lease: &Lease) -> Result<usize, HandoverError> {
    let written = write(run, lease)?.len();
    if !matches!(lease.origin, Origin::Dhcp { .. }) {
        return Ok(written);
    }
    if let Some(ifindex) = lease.ifindex {
        let (addr, prefix) = (lease.addr, lease.prefix_len);
        lifetime::set(ifindex, addr, prefix, lifetime::LONGEST_FINITE).map_err(|error| {
            HandoverError::Lifetime {
                iface: lease.iface.clone(),
                error,
            }
        })?;
    }
    // Last: a read-only root (overlay `none`) refuses them, and nothing else depends on them.
    let mut layer = 0;
    for (client, conf, render) in LAYER_CONFS {
        if newroot.join(client).exists() {
            let path = newroot.join(conf);
            let image = std::fs::read_to_string(&path).unwrap_or_default();
            let text = render(&image, lease);
            std::fs::create_dir_all(path.parent().expect("a file under etc"))
                .and_then(|()| std::fs::write(&path, text))
                .map_err(|error| HandoverError::Write { path, error })?;
            layer += 1;
        }
    }
    Ok(written + layer)
}

/// The DHCP clients with no runtime directory: the client's binary in the root, its
/// configuration file (written into the node's layer, the image's own lines kept), how to
/// render it.
type Render = fn(&str, &Lease) -> String;
const LAYER_CONFS: [(&str, &str, Render); 2] = [
    (
        "sbin/dhclient",
        "etc/dhcp/dhclient.conf",
        handover::dhclient_conf,
    ),
    ("sbin/dhcpcd", "etc/dhcpcd.conf", handover::dhcpcd_conf),
];

/// Writes every hand-over file under `run` (pi-init's `/run`), each with its mode from the
/// start (NetworkManager ignores a profile others can read). Returns the paths written.
pub fn write(run: &Path, lease: &Lease) -> Result<Vec<PathBuf>, HandoverError> {
    handover::files(lease)
        .into_iter()
        .map(|f| {
            let path = run.join(&f.rel);
            write_one(&path, f.text.as_bytes(), f.mode)
                .map(|()| path.clone())
                .map_err(|error| HandoverError::Write { path, error })
        })
        .collect()
}

fn write_one(path: &Path, text: &[u8], mode: u32) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A file left by an earlier attempt keeps its old mode through open(O_CREAT).
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?
        .write_all(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_land_under_run_with_their_modes() {
        let dir = crate::support::testutil::TempDir::new();
        let run = dir.path().join("run");
        let lease = Lease {
            iface: "eth0".into(),
            ifindex: Some(2),
            mac: "52:54:00:12:34:56".into(),
            addr: Ipv4Addr::new(10, 0, 2, 15),
            prefix_len: 24,
            gateway: None,
            dns: vec![],
            origin: Origin::Fixed,
        };
        // A stale profile from an earlier attempt, readable by all: replaced, mode 0600.
        let stale = run.join("NetworkManager/system-connections/pureboot-eth0.nmconnection");
        std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
        std::fs::write(&stale, "old").unwrap();
        let written = write(&run, &lease).unwrap();
        assert_eq!(written.len(), handover::files(&lease).len());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&stale), 0o600);
        assert!(std::fs::read_to_string(&stale)
            .unwrap()
            .contains("address1=10.0.2.15/24"));
        let networkd = run.join("systemd/network/10-pureboot-eth0.network");
        assert_eq!(mode(&networkd), 0o644);
        let err = write(&networkd, &lease).unwrap_err();
        assert!(
            err.to_string().starts_with("network hand-over: writing "),
            "{err}"
        );
    }

    /// A DHCP lease with no interface index: no netlink request from a host test.
    fn dhcp_lease() -> Lease {
        Lease {
            iface: "eth0".into(),
            ifindex: None,
            mac: "52:54:00:12:34:56".into(),
            addr: Ipv4Addr::new(10, 0, 2, 15),
            prefix_len: 24,
            gateway: None,
            dns: vec![],
            origin: Origin::Dhcp {
                server: None,
                lease_secs: Some(120),
            },
        }
    }

    #[test]
    fn a_root_with_dhclient_gets_pi_inits_client_id_in_its_layer() {
        let dir = crate::support::testutil::TempDir::new();
        let (run, root) = (dir.path().join("run"), dir.path().join("newroot"));
        std::fs::create_dir_all(root.join("sbin")).unwrap();
        std::fs::create_dir_all(root.join("etc/dhcp")).unwrap();
        std::fs::write(root.join("sbin/dhclient"), "").unwrap();
        std::fs::write(root.join("etc/dhcp/dhclient.conf"), "request routers;\n").unwrap();
        let lease = dhcp_lease();
        let n = hand_over(&run, &root, &lease).unwrap();
        assert_eq!(n, handover::files(&lease).len() + 1);
        let conf = std::fs::read_to_string(root.join("etc/dhcp/dhclient.conf")).unwrap();
        assert!(conf.starts_with("request routers;\n"), "{conf}");
        assert!(
            conf.contains("send dhcp-client-identifier 1:52:54:00:12:34:56;"),
            "{conf}"
        );
        // A root without dhclient is left as it is.
        std::fs::remove_file(root.join("sbin/dhclient")).unwrap();
        std::fs::write(root.join("etc/dhcp/dhclient.conf"), "x\n").unwrap();
        hand_over(&run, &root, &lease).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("etc/dhcp/dhclient.conf")).unwrap(),
            "x\n"
        );
    }

    #[test]
    fn a_root_with_dhcpcd_keeps_the_link_and_pi_inits_lease_in_its_layer() {
        let dir = crate::support::testutil::TempDir::new();
        let (run, root) = (dir.path().join("run"), dir.path().join("newroot"));
        // As in a merged-/usr root: sbin a link to usr/sbin.
        std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("usr/sbin", root.join("sbin")).unwrap();
        std::fs::write(root.join("usr/sbin/dhcpcd"), "").unwrap();
        std::fs::write(root.join("etc/dhcpcd.conf"), "duid\n").unwrap();
        let mut lease = dhcp_lease();
        let n = hand_over(&run, &root, &lease).unwrap();
        assert_eq!(n, handover::files(&lease).len() + 1);
        let conf = std::fs::read_to_string(root.join("etc/dhcpcd.conf")).unwrap();
        assert!(conf.starts_with("duid\n"), "{conf}");
        for line in [
            "\ninterface eth0\n",
            "\npersistent\n",
            "\nclientid 01:52:54:00:12:34:56\n",
        ] {
            assert!(conf.contains(line), "{line:?} in\n{conf}");
        }
        assert!(!root.join("etc/dhcp/dhclient.conf").exists());
        // A fixed address: no DHCP client is configured.
        lease.origin = Origin::Fixed;
        std::fs::write(root.join("etc/dhcpcd.conf"), "duid\n").unwrap();
        hand_over(&run, &root, &lease).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("etc/dhcpcd.conf")).unwrap(),
            "duid\n"
        );
    }
}
