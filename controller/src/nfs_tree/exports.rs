//! The NFS export rules the controller recommends for its tree, for the kernel's server
//! (`/etc/exports.d/pureboot.exports`) or nfs-ganesha (EXPORT blocks). Pure text from a plan.
//!
//! The shape is the same for both servers. The export root itself is not exported: NFSv4's
//! pseudo file system makes it (and `nodes/`) a read-only directory leading to the exports
//! below, which pi-init mounts. `base/` is exported read-only to the boot network (pi-init
//! also mounts `base/<image>` on its own with NFSv3, a subdirectory of that export). Each
//! `nodes/<serial>` is exported read-write to that node's address alone, with
//! `no_root_squash` (the Pi is root there; the controller made the directory 0700 root).
//! So no client can plant a link in the root, in `base/` or in another node's tree.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use pureboot_contract::ids::Serial;
use pureboot_contract::layout::{BASE_DIR, NODES_DIR};

pureboot_contract::named_enum! {
    /// Which NFS server the rules are written for.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ExportFormat: "export rules format" {
        Knfsd = "knfsd",
        Ganesha = "ganesha",
    }
}

/// An IPv4 or IPv6 network, `10.0.2.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Network, String> {
        let bad = || format!("{s:?} is not a network (address/prefix, e.g. 192.168.1.0/24)");
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Network { addr, prefix })
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What the rules are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPlan<'a> {
    /// The tree as the NFS server sees it (`[nfs] root_path`).
    pub root: &'a Path,
    /// The path clients mount (`[nfs] export_path`, else the root): ganesha's pseudo path.
    pub pseudo_root: &'a Path,
    /// The boot network: it may read `base/`.
    pub network: Network,
    /// Nodes with their address, sorted by serial.
    pub nodes: Vec<(Serial, IpAddr)>,
    /// Nodes without a known address: no export, named in a comment.
    pub unaddressed: Vec<Serial>,
}

/// A path as the server's configuration takes it; `None` if it holds characters neither
/// format can carry safely (whitespace, quotes, control characters, `#`).
fn plain(p: &Path) -> Result<String, String> {
    let s = p
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", p.display()))?;
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '#' | ';' | '\\'))
    {
        return Err(format!(
            "{s:?} holds characters an exports file cannot carry as they are; \
             export a path without whitespace, quotes, '#', ';' or '\\'"
        ));
    }
    Ok(s.to_string())
}

/// Ganesha's `Export_Id` (1..=65535, 0 is its pseudo root) for a node, from its serial so a
/// node keeps its id when others are added (a client's file handles carry it); collisions
/// take the next free id, in serial order. `base/` has 1.
fn ganesha_ids(nodes: &[(Serial, IpAddr)]) -> Vec<u16> {
    const FIRST: u32 = 2;
    const SPAN: u32 = 65_535 - FIRST + 1;
    let mut used = std::collections::HashSet::new();
    nodes
        .iter()
        .map(|(serial, _)| {
            let n = u32::from_str_radix(serial.as_str(), 16).expect("a serial is hex");
            let mut id = FIRST + n % SPAN;
            while !used.insert(id) {
                id = FIRST + (id - FIRST + 1) % SPAN;
            }
            id as u16
        })
        .collect()
}

const HEADER: &str =
    "# Written by `pureboot-controller nfs exports`: base/ read-only for the boot network,\n\
# each node's directory read-write for that node's address only, the export root not\n\
# exported (NFSv4 shows it read-only, as the way to the exports below it).\n";

/// The rules as text.
pub fn render(format: ExportFormat, plan: &ExportPlan) -> Result<String, String> {
    let root = plan.root;
    let base = plain(&root.join(BASE_DIR))?;
    let node_path = |s: &Serial| plain(&root.join(NODES_DIR).join(s.as_str()));
    let mut out = String::from(HEADER);
    for serial in &plan.unaddressed {
        let _ = writeln!(
            out,
            "# {serial}: no known address, not exported (pass --address {serial}=<ip>, or boot it once)"
        );
    }
    match format {
        ExportFormat::Knfsd => {
            let _ = writeln!(
                out,
                "{base} {}(ro,no_root_squash,no_subtree_check,sec=sys)",
                plan.network
            );
            for (serial, addr) in &plan.nodes {
                let _ = writeln!(
                    out,
                    "{} {addr}(rw,no_root_squash,no_subtree_check,sec=sys)",
                    node_path(serial)?
                );
            }
        }
        ExportFormat::Ganesha => {
            let pseudo_base = plain(&plan.pseudo_root.join(BASE_DIR))?;
            out.push_str(
                "# Once per server (merge into ganesha.conf's own blocks if it has them):\n\
                 # numeric owners as the kernel's server sends them (else a root without an\n\
                 # idmapper sees every file owned by nobody). The directory cache keeps its\n\
                 # defaults: a fresh image always has a new name.\n\
                 NFSv4 {\n  Only_Numeric_Owners = true;\n}\n",
            );
            let mut export = |id: u16, path: &str, pseudo: &str, clients: &str, access: &str| {
                // Attr_Expiration_Time = 0: else ganesha caches directory contents and does
                // not see what the controller creates after it started.
                let _ = write!(
                    out,
                    "EXPORT {{\n  Export_Id = {id};\n  Path = {path};\n  Pseudo = {pseudo};\n  \
                     Protocols = 3, 4;\n  Transports = TCP;\n  SecType = sys;\n  \
                     Access_Type = None;\n  Squash = No_Root_Squash;\n  \
                     Attr_Expiration_Time = 0;\n  FSAL {{\n    Name = VFS;\n  }}\n  \
                     CLIENT {{\n    Clients = {clients};\n    Access_Type = {access};\n  }}\n}}\n"
                );
            };
            export(1, &base, &pseudo_base, &plan.network.to_string(), "RO");
            for ((serial, addr), id) in plan.nodes.iter().zip(ganesha_ids(&plan.nodes)) {
                let pseudo = plain(&plan.pseudo_root.join(NODES_DIR).join(serial.as_str()))?;
                export(id, &node_path(serial)?, &pseudo, &addr.to_string(), "RW");
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan<'a>(root: &'a Path, pseudo: &'a Path) -> ExportPlan<'a> {
        ExportPlan {
            root,
            pseudo_root: pseudo,
            network: "192.168.1.0/24".parse().unwrap(),
            nodes: vec![
                (
                    Serial::parse("0000aaaa").unwrap(),
                    "192.168.1.21".parse().unwrap(),
                ),
                (
                    Serial::parse("d83add36").unwrap(),
                    "192.168.1.20".parse().unwrap(),
                ),
            ],
            unaddressed: vec![Serial::parse("12345678").unwrap()],
        }
    }

    #[test]
    fn knfsd_rules() {
        let root = Path::new("/srv/nfsroot");
        let got = render(ExportFormat::Knfsd, &plan(root, root)).unwrap();
        let want = format!(
            "{HEADER}\
# 12345678: no known address, not exported (pass --address 12345678=<ip>, or boot it once)
/srv/nfsroot/base 192.168.1.0/24(ro,no_root_squash,no_subtree_check,sec=sys)
/srv/nfsroot/nodes/0000aaaa 192.168.1.21(rw,no_root_squash,no_subtree_check,sec=sys)
/srv/nfsroot/nodes/d83add36 192.168.1.20(rw,no_root_squash,no_subtree_check,sec=sys)
"
        );
        assert_eq!(got, want);
    }

    #[test]
    fn ganesha_rules() {
        let got = render(
            ExportFormat::Ganesha,
            &plan(Path::new("/srv/nfsroot"), Path::new("/pb")),
        )
        .unwrap();
        let block = |id: u32, path: &str, pseudo: &str, clients: &str, access: &str| {
            format!(
                "EXPORT {{
  Export_Id = {id};
  Path = {path};
  Pseudo = {pseudo};
  Protocols = 3, 4;
  Transports = TCP;
  SecType = sys;
  Access_Type = None;
  Squash = No_Root_Squash;
  Attr_Expiration_Time = 0;
  FSAL {{
    Name = VFS;
  }}
  CLIENT {{
    Clients = {clients};
    Access_Type = {access};
  }}
}}
"
            )
        };
        let want = format!(
            "{HEADER}\
# 12345678: no known address, not exported (pass --address 12345678=<ip>, or boot it once)
# Once per server (merge into ganesha.conf's own blocks if it has them):
# numeric owners as the kernel's server sends them (else a root without an
# idmapper sees every file owned by nobody). The directory cache keeps its
# defaults: a fresh image always has a new name.
NFSv4 {{
  Only_Numeric_Owners = true;
}}
{}{}{}",
            block(1, "/srv/nfsroot/base", "/pb/base", "192.168.1.0/24", "RO"),
            // 0xaaaa % 65534 + 2
            block(
                43692,
                "/srv/nfsroot/nodes/0000aaaa",
                "/pb/nodes/0000aaaa",
                "192.168.1.21",
                "RW"
            ),
            // 0xd83add36 % 65534 + 2
            block(
                0xd83a_dd36 % 65_534 + 2,
                "/srv/nfsroot/nodes/d83add36",
                "/pb/nodes/d83add36",
                "192.168.1.20",
                "RW"
            ),
        );
        assert_eq!(got, want);
    }

    #[test]
    fn export_ids_are_stable_and_distinct() {
        let at = |s: &str| (Serial::parse(s).unwrap(), "10.0.0.1".parse().unwrap());
        // 0x0000fffe and 0x00000000 fall on the same id: the later one takes the next.
        let ids = ganesha_ids(&[at("00000000"), at("0000fffe"), at("00000001")]);
        assert_eq!(ids, [2, 3, 4]);
        assert_eq!(ganesha_ids(&[at("0000fffe")]), [2], "alone, its own id");
        assert!(ids.iter().all(|&i| i >= 2));
    }

    #[test]
    fn networks_and_unsafe_paths() {
        assert_eq!(
            "10.0.2.0/24".parse::<Network>().unwrap().to_string(),
            "10.0.2.0/24"
        );
        assert!("fd00::/64".parse::<Network>().is_ok());
        for bad in ["10.0.2.0", "10.0.2.0/33", "x/24", "fd00::/129"] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
        let root = Path::new("/srv/nfs root");
        let err = render(ExportFormat::Knfsd, &plan(root, root)).unwrap_err();
        assert!(err.contains("/srv/nfs root"), "{err}");
    }
}
